#!/bin/sh
# Leave-one-source-out folds of one detector recipe, and the honest FaceForensics++ test
# (docs/detect.md, "Generalisation"): the recipe of tools/train_default_detector.sh plus
# EXTRA options (e.g. "--self-blend 0.5"), one run per RUN:
#   celeba | utkface | video | stylegan   that source held out (--val-source), its scores
#                                         in WORK/fold-NAME.csv for `detect calibrate`
#   dcgan     doppel's DCGAN-64 faces (DCGAN=DIR) as a sixth, held-out folder
#   all       every source (the model a recipe would ship)
#   novideo   UTKFace + CelebA vs StyleGAN only, NO frame of either FF++ clip, then
#             `detect eval` on the two clips' frames (WORK/novideo-ffpp.json): does the
#             deepfake score higher than the real?
# Usage (repository root, ../shared next to it, a Release build):
#   tools/detect_loso.sh BUILD WORK "EXTRA" RUN...
#   e.g. tools/detect_loso.sh build /tmp/sbi "--self-blend 0.5" celeba utkface video stylegan novideo all
# FRAMES=DIR: take the FF++ frames from DIR/video-real and DIR/video-fake (extracted there
# if missing) instead of WORK, so that several WORK folders share one face cache (copy it
# to WORK/faces.cache).
# Each run: 1 thread at nice 10, about 70 s of CPU (4 min wall on the loaded 2-vCPU VM,
# 9 min when it was busier), face boxes cached in WORK/faces.cache after the first.
set -eu
build=$1 work=$2 extra=$3
shift 3
F=../shared/data/faces
V=../shared/data/video
fr=${FRAMES:-$work}
mkdir -p "$work" "$fr"
[ -d "$fr/video-real" ] || tools/extract_frames.sh $V/ffpp_real_519.mp4 "$fr/video-real" 3
[ -d "$fr/video-fake" ] || tools/extract_frames.sh $V/ffpp_deepfakes_519_515.mp4 "$fr/video-fake" 3
train() { # OUT [options]
    out=$1
    shift
    # shellcheck disable=SC2086 # EXTRA is a list of options
    OMP_NUM_THREADS=1 nice -n 10 "$build/doppel" detect train --real $F/real-utkface --real $F/real-celeba \
        --real "$fr/video-real" --fake $F/fake-stylegan --fake "$fr/video-fake" --arch meso4 --work 48 --size 128 \
        --limit 2000 --epochs 4 --seed 1 --threads 1 --quiet --face-cache "$work/faces.cache" $extra --out "$out" "$@"
}
fold() { # NAME DIR [options]
    name=$1 dir=$2
    shift 2
    train "$work/fold-$name.safetensors" --val-source "$dir" --scores "$work/fold-$name.csv" "$@" > "$work/fold-$name.log"
}
for run in "$@"; do
    case $run in
    celeba) fold real-celeba $F/real-celeba ;;
    utkface) fold real-utkface $F/real-utkface ;;
    video) fold video-real "$fr/video-real" ;;
    stylegan) fold fake-stylegan $F/fake-stylegan ;;
    dcgan) fold fake-dcgan64 "${DCGAN:?set DCGAN to a folder of doppel gan sample faces}" --fake "$DCGAN" ;;
    all) train "$work/all.safetensors" > "$work/all.log" ;;
    novideo)
        # shellcheck disable=SC2086
        OMP_NUM_THREADS=1 nice -n 10 "$build/doppel" detect train --real $F/real-utkface --real $F/real-celeba \
            --fake $F/fake-stylegan --arch meso4 --work 48 --size 128 --limit 2000 --epochs 4 --seed 1 --threads 1 \
            --quiet --face-cache "$work/faces.cache" $extra --out "$work/novideo.safetensors" > "$work/novideo.log"
        OMP_NUM_THREADS=1 nice -n 10 "$build/doppel" detect eval --real "$fr/video-real" --fake "$fr/video-fake" \
            --model "$work/novideo.safetensors" --threads 1 --json --no-robustness > "$work/novideo-ffpp.json" ;;
    *) echo "detect_loso.sh: unknown run '$run'" >&2; exit 2 ;;
    esac
    echo "$run done"
done
