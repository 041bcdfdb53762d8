#!/bin/sh
# Does an ensemble of detectors that each miss one more training source say "uncertain"
# (or "real") on a source none of them saw? (docs/detect.md, "An ensemble of
# leave-one-source-out members".) For one outer held-out source OUTER, trains a member
# with OUTER held out (m0) and one member per inner source with OUTER and that source held
# out (m1...), all with the recipe of tools/detect_loso.sh and the same five folders, so
# that every member splits each source the same way (the held-out sources are shuffled
# too) and every member scores every file of the fold's evaluation set. Then
# tools/detect_ensemble_analyse.py joins the members' --scores files by path.
# Usage (repository root, ../shared next to it, a Release build):
#   tools/detect_ensemble_loso.sh BUILD WORK celeba|stylegan
#   e.g. tools/detect_ensemble_loso.sh build /tmp/ens celeba
# Each member: 1 thread at nice 10, about 70-160 s of CPU on the 2-vCPU VM; two at a time.
set -eu
build=$1 work=$2 outer=$3
F=../shared/data/faces
V=../shared/data/video
mkdir -p "$work"
[ -d "$work/video-real" ] || tools/extract_frames.sh $V/ffpp_real_519.mp4 "$work/video-real" 3
[ -d "$work/video-fake" ] || tools/extract_frames.sh $V/ffpp_deepfakes_519_515.mp4 "$work/video-fake" 3
member() { # NAME VAL-SOURCE...
    name=$1
    shift
    vs=""
    for d in "$@"; do vs="$vs --val-source $d"; done
    # shellcheck disable=SC2086 # vs is a list of options
    OMP_NUM_THREADS=1 nice -n 10 "$build/doppel" detect train --real $F/real-utkface --real $F/real-celeba \
        --real "$work/video-real" --fake $F/fake-stylegan --fake "$work/video-fake" --arch meso4 --work 48 --size 128 \
        --limit 2000 --epochs 4 --seed 1 --threads 1 --quiet --face-cache "$work/faces.cache" $vs \
        --out "$work/$outer-$name.safetensors" --scores "$work/$outer-$name.csv" > "$work/$outer-$name.log"
    echo "$outer-$name done"
}
case $outer in
celeba) o=$F/real-celeba inner="$F/real-utkface $work/video-real $F/fake-stylegan $work/video-fake" ;;
stylegan) o=$F/fake-stylegan inner="$F/real-utkface $F/real-celeba $work/video-real" ;; # the clip's fakes: the only fakes left
*) echo "detect_ensemble_loso.sh: unknown outer source '$outer' (celeba or stylegan)" >&2; exit 2 ;;
esac
member m0 "$o" # alone first: it fills the face cache
i=1
for s in $inner; do
    member "m$i" "$o" "$s" &
    [ $((i % 2)) -eq 0 ] && wait
    i=$((i + 1))
done
wait
n=0
for f in "$work/$outer"-m*.csv; do [ -f "$f" ] && n=$((n + 1)); done
echo "members: $n; now: tools/detect_ensemble_analyse.py $work $outer"
