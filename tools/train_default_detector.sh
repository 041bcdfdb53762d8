#!/bin/sh
# Reproduces models/doppel-detect-meso4.safetensors (models/README.md):
#   1. frames of the two FaceForensics++ clips (tools/extract_frames.sh, ffmpeg CLI);
#   2. four leave-one-source-out runs (CelebA, UTKFace, the real video, StyleGAN
#      held out), each writing the raw scores of the source it never saw;
#   3. the model on every source;
#   4. its fusion and thresholds fitted on the held-out scores (detect calibrate).
# Run from the repository root with ../shared next to it, after a Release build:
#   tools/train_default_detector.sh [BUILD] [WORK]     (defaults: build, /tmp/doppel-detect-train)
# About 25 minutes on a loaded 2-vCPU VM (face finding, done once and cached, is a third of it).
set -eu
build=${1:-build}
work=${2:-/tmp/doppel-detect-train}
F=../shared/data/faces
V=../shared/data/video
mkdir -p "$work"
[ -d "$work/video-real" ] || tools/extract_frames.sh $V/ffpp_real_519.mp4 "$work/video-real" 3
[ -d "$work/video-fake" ] || tools/extract_frames.sh $V/ffpp_deepfakes_519_515.mp4 "$work/video-fake" 3

train() { # OUT [extra options]
    out=$1
    shift
    nice -n 10 "$build/doppel" detect train --real $F/real-utkface --real $F/real-celeba --real "$work/video-real" \
        --fake $F/fake-stylegan --fake "$work/video-fake" --arch meso4 --work 48 --size 128 --limit 2000 \
        --epochs 4 --seed 1 --threads 2 --quiet --face-cache "$work/faces.cache" --out "$out" "$@"
}
for held in $F/real-celeba $F/real-utkface "$work/video-real" $F/fake-stylegan; do
    name=$(basename "$held")
    train "$work/fold-$name.safetensors" --val-source "$held" --scores "$work/fold-$name.csv" | tee "$work/fold-$name.log"
done
train "$work/all.safetensors" | tee "$work/all.log"
"$build/doppel" detect calibrate --model "$work/all.safetensors" --out models/doppel-detect-meso4.safetensors \
    --scores "$work/fold-real-celeba.csv" --scores "$work/fold-real-utkface.csv" \
    --scores "$work/fold-video-real.csv" --scores "$work/fold-fake-stylegan.csv" | tee "$work/calibrate.log"
