#!/bin/sh
# valgrind memcheck over doppel (docs/security.md, "Sanitizers and valgrind"). Invalid reads/writes, uses of
# uninitialised values and definite/indirect leaks fail it (exit 1); known noise of the libraries doppel
# uses is suppressed by scripts/valgrind.supp (each entry says why).
#   scripts/valgrind.sh BUILD            the main paths of the CLI (watermark check, faces, detect, model info,
#                                        gan train/--resume/sample, classify train/eval, serve with a heat map
#                                        and a client that leaves early) and two test programs; make valgrind
#                                        (VG_ONLY="serve detect ..." runs only those)
#   scripts/valgrind.sh --suite BUILD [REGEX]
#                                        every ctest test of BUILD (or those matching REGEX) under memcheck,
#                                        with DP_TEST_QUICK=1 and DP_TEST_VALGRIND=1, in ctest's order; logs and a summary (appended
#                                        to) in BUILD/valgrind/. VG_CHILDREN=yes also
#                                        checks the doppel processes the tests start (much slower);
#                                        VG_TIMEOUT (s, default 3600) bounds each test; VG_NICE (default 19).
# BUILD is a build without sanitizers (RelWithDebInfo or Debug: line numbers in the reports).
set -u
suite=0
if [ "${1:-}" = --suite ]; then
    suite=1
    shift
fi
build=${1:?usage: scripts/valgrind.sh [--suite] BUILD [REGEX]}
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd) || exit 2
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 1; }
# libjpeg-turbo's SIMD IDCT/colour code writes pixels in ways memcheck cannot follow (it reports the
# decoded pixels as uninitialised): its plain C paths are used under valgrind.
export JSIMD_FORCENONE=1
vg_opts="--error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
--show-leak-kinds=definite,indirect --track-origins=yes --suppressions=$src/scripts/valgrind.supp"

if [ $suite -eq 1 ]; then
    regex=${2:-}
    logs="$build/valgrind"
    mkdir -p "$logs"
    export DP_TEST_QUICK=1
    # smaller sizes where a test has them for memcheck (the same code paths; test_vec_ops's chunked models)
    export DP_TEST_VALGRIND=1
    list=$(mktemp "${TMPDIR:-/tmp}/doppel-valgrind-tests-XXXXXX") || exit 2
    trap 'rm -f "$list"' EXIT
    # name <TAB> working directory <TAB> command (shell-quoted), from ctest's own description of the tests
    (cd "$build" && ctest --show-only=json-v1) | python3 -c '
import json, shlex, sys, re
rx = re.compile(sys.argv[1]) if sys.argv[1] else None
for t in json.load(sys.stdin)["tests"]:
    if rx and not rx.search(t["name"]):
        continue
    wd = next((p["value"] for p in t.get("properties", []) if p["name"] == "WORKING_DIRECTORY"), ".")
    print(t["name"], wd, " ".join(shlex.quote(a) for a in t["command"]), sep="\t")
' "$regex" >"$list" || exit 2
    n_clean=0 n_bad=0 n_skip=0 n_fail=0 n_time=0
    while IFS="$(printf '\t')" read -r name wd cmd; do
        start=$(date +%s)
        rm -f "$logs/$name".vg.*
        (cd "$wd" && eval "timeout ${VG_TIMEOUT:-3600} nice -n ${VG_NICE:-19} valgrind $vg_opts \
            --trace-children=${VG_CHILDREN:-no} --log-file=$logs/$name.vg.%p $cmd") >"$logs/$name.out" 2>&1 </dev/null
        rc=$?
        secs=$(($(date +%s) - start))
        # an error in any process of the test (children too with VG_CHILDREN=yes)
        errs=$(cat "$logs/$name".vg.* 2>/dev/null | grep -c 'ERROR SUMMARY: [1-9]')
        if [ "$rc" -eq 124 ]; then
            res="TIMEOUT"
            n_time=$((n_time + 1))
        elif [ "$rc" -eq 99 ] || [ "$errs" -gt 0 ]; then
            res="ERRORS (see $logs/$name.vg.*)"
            n_bad=$((n_bad + 1))
        elif [ "$rc" -eq 77 ]; then
            res="skipped by the test ($(grep -m1 -i 'skip' "$logs/$name.out" | cut -c1-100))"
            n_skip=$((n_skip + 1))
        elif [ "$rc" -ne 0 ]; then
            res="test FAILED under valgrind (exit $rc, see $logs/$name.out)"
            n_fail=$((n_fail + 1))
        else
            res="clean"
            n_clean=$((n_clean + 1))
        fi
        printf 'valgrind %-24s %6d s  %s\n' "$name" "$secs" "$res" | tee -a "$logs/summary.txt"
    done <"$list"
    printf 'valgrind suite: %d clean, %d with memcheck errors, %d failed, %d skipped, %d timed out\n' \
        "$n_clean" "$n_bad" "$n_fail" "$n_skip" "$n_time" | tee -a "$logs/summary.txt"
    [ $n_bad -eq 0 ] && [ $n_fail -eq 0 ] && [ $n_time -eq 0 ]
    exit $?
fi

cli="$build/doppel"
work=$(mktemp -d "${TMPDIR:-/tmp}/doppel-valgrind-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/imgs/a" "$work/imgs/b"
for f in "$src"/fuzz/corpus/image/*.png "$src"/fuzz/corpus/image/*.jpg; do
    cp "$f" "$work/imgs/a/"
    cp "$f" "$work/imgs/b/x-$(basename "$f")"
done
vg="valgrind -q $vg_opts"
failed=0
report() { # name, seconds, exit status, stderr file
    if [ "$3" -eq 99 ] || grep -q '^==[0-9]*== ' "$4"; then
        echo "valgrind $1: FAILED ($2 s)"
        grep '^==' "$4" | head -40
        failed=1
    else
        echo "valgrind $1: clean (exit $3, $2 s)"
    fi
}
wanted() { [ -z "${VG_ONLY:-}" ] || case " $VG_ONLY " in *" $1 "*) true ;; *) false ;; esac; }
check() { # name, then the command line
    name=$1
    shift
    wanted "$name" || return 0
    start=$(date +%s)
    $vg "$@" >"$work/$name.out" 2>"$work/$name.err"
    rc=$?
    report "$name" $(($(date +%s) - start)) $rc "$work/$name.err"
}
# doppel serve under memcheck: a heat-map request whose client leaves after 2 s (the analysis goes on
# without it), the same request answered, the health route, then SIGTERM; leaks are counted at exit.
check_serve() {
    wanted serve || return 0
    [ -x "$cli" ] && "$cli" serve --help >/dev/null 2>&1 || return 0
    command -v curl >/dev/null || { echo "valgrind serve: skipped (no curl)"; return 0; }
    start=$(date +%s)
    # the small detection model of the fuzz seeds: the heat map (dozens of forward passes) then takes
    # minutes, not an hour, under memcheck
    $vg "$cli" serve --port 0 --workers 1 --quiet --model "$src/fuzz/corpus/model/small-detector.safetensors" \
        >"$work/serve.out" 2>"$work/serve.err" &
    spid=$!
    port=""
    for _ in $(seq 1 600); do
        port=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/serve.out" 2>/dev/null | grep -o '[0-9]*$')
        [ -n "$port" ] && break
        sleep 1
    done
    if [ -z "$port" ]; then
        kill -TERM $spid 2>/dev/null
        wait $spid
        echo "valgrind serve: FAILED (did not start)"
        failed=1
        return
    fi
    png="$src/fuzz/corpus/image/rgb10x6.png"
    url="http://127.0.0.1:$port/api/v1"
    curl -s --max-time 2 -H 'Content-Type: image/png' --data-binary "@$png" "$url/detect?heatmap=1" >/dev/null
    curl -s --max-time 1800 -H 'Content-Type: image/png' --data-binary "@$png" "$url/detect?heatmap=1" \
        >"$work/serve.json"
    curl -s --max-time 60 "$url/health" >/dev/null
    kill -TERM $spid
    wait $spid
    rc=$?
    if ! grep -q '"heatmap"' "$work/serve.json"; then
        echo "valgrind serve: FAILED (no heat map in the answer: $(head -c 200 "$work/serve.json"))"
        failed=1
    fi
    report serve $(($(date +%s) - start)) $rc "$work/serve.err"
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
check_serve
cd "$build/tests" 2>/dev/null && for t in test_checkpoint test_data; do
    [ -x "./$t" ] && check "$t" "./$t"
done
exit $failed
