#!/bin/sh
# The main paths of the doppel CLI under valgrind memcheck: invalid reads/writes, uses of
# uninitialised values and definite/indirect leaks fail it (exit 1). make valgrind runs it on a
# RelWithDebInfo build; inputs are the committed fuzz seeds and what the commands themselves write.
#   scripts/valgrind.sh BUILD
set -u
build=${1:?usage: scripts/valgrind.sh BUILD}
src=$(cd "$(dirname "$0")/.." && pwd)
cli="$build/doppel"
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/doppel-valgrind-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/imgs/a" "$work/imgs/b"
for f in "$src"/fuzz/corpus/image/*.png "$src"/fuzz/corpus/image/*.jpg; do
    cp "$f" "$work/imgs/a/"
    cp "$f" "$work/imgs/b/x-$(basename "$f")"
done
# libjpeg-turbo's SIMD IDCT/colour code writes pixels in ways memcheck cannot follow (it reports the
# decoded pixels as uninitialised): its plain C paths are used under valgrind.
export JSIMD_FORCENONE=1
vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
--show-leak-kinds=definite,indirect --track-origins=yes"
failed=0
check() { # name, then the command line
    name=$1
    shift
    start=$(date +%s)
    $vg "$@" >"$work/$name.out" 2>"$work/$name.err"
    rc=$?
    if [ $rc -eq 99 ] || grep -q '^==[0-9]*== ' "$work/$name.err"; then
        echo "valgrind $name: FAILED ($(($(date +%s) - start)) s)"
        grep '^==' "$work/$name.err" | head -40
        failed=1
    else
        echo "valgrind $name: clean (exit $rc, $(($(date +%s) - start)) s)"
    fi
}
one=$(ls "$work"/imgs/a/*.png | head -1)
check watermark-check "$cli" watermark check "$work"/imgs/a/* "$src/fuzz/corpus/idx/images-idx3-ubyte"
check faces "$cli" faces "$work/imgs/a"
check detect "$cli" detect --model "$src/fuzz/corpus/model/small-detector.safetensors" --json "$one"
check model-info "$cli" model info "$src/models/doppel-detect-meso4.safetensors"
check gan-train "$cli" gan train --data "$work/imgs" --arch dcgan28 --batch 4 --steps 2 --ckpt-every 1 \
    --sample-every 0 --threads 2 --quiet --out "$work/run"
check gan-resume "$cli" gan train --data "$work/imgs" --arch dcgan28 --batch 4 --steps 3 --ckpt-every 1 \
    --sample-every 0 --threads 2 --quiet --out "$work/run" --resume
check gan-sample "$cli" gan sample --model "$work/run" -n 4 --grid "$work/grid.png"
check classify-train "$cli" classify train --data "$work/imgs" --arch mlp --size 8 --epochs 1 --batch 4 \
    --threads 2 --quiet --out "$work/c.safetensors"
check classify-eval "$cli" classify eval --model "$work/c.safetensors" --data "$work/imgs" --threads 2 --quiet
build_abs=$(cd "$build" && pwd)
cd "$build_abs/tests" 2>/dev/null && for t in test_checkpoint test_data; do
    [ -x "./$t" ] && check "$t" "./$t"
done
exit $failed
