#!/bin/sh
# make demo: doppel's main job — is this face real or made by AI? — on a fresh
# machine, without ../shared:
#   1. real photos that Debian ships (python3-skimage: astronaut.png, a
#      public-domain NASA portrait; camera.png, the cameraman);
#   2. images doppel itself generates: faces from a DCGAN-64 checkpoint in
#      models/ when one is there, else a tiny DCGAN-28 trained here on
#      Fashion-MNIST for a few seconds (not faces: the detector finds none and
#      says uncertain, and doppel's invisible watermark says who made them);
#   3. `doppel detect --json --explain` on each: a JSON verdict and a PNG with
#      the face boxes and the occlusion heat map, in the folder printed at the end.
# Then the short Fashion-MNIST classification run of the engine.
set -e
build=${1:-build}
doppel="$build/doppel"
out=${TMPDIR:-/tmp}/doppel-demo
rm -rf "$out"
mkdir -p "$out/images" "$out/explained"
"$doppel" version

skdata=/usr/lib/python3/dist-packages/skimage/data
for f in astronaut.png camera.png; do
    if [ -r "$skdata/$f" ]; then
        cp "$skdata/$f" "$out/images/real_$f"
    else
        echo "demo: $skdata/$f is missing (apt-get install python3-skimage); skipped"
    fi
done

# Images doppel generates (each labelled in its metadata and by the watermark).
gen=""
for f in models/*dcgan64*.safetensors; do
    [ -e "$f" ] && [ -z "$gen" ] && gen=$f
done
if [ -n "$gen" ]; then
    echo "demo: sampling 3 faces from $gen"
    "$doppel" gan sample --model "$gen" -n 3 --seed 7 --out "$out/gan"
else
    echo "demo: no DCGAN-64 face generator in models/: training a tiny DCGAN-28 on Fashion-MNIST for 30 steps"
    "$doppel" gan train --data fashion-mnist --arch dcgan28 --out "$out/gan-run" --steps 30 --batch 32 \
        --sample-every 0 --ckpt-every 0 --quiet
    "$doppel" gan sample --model "$out/gan-run" -n 2 --seed 7 --out "$out/gan"
fi
for f in "$out"/gan/*.png; do cp "$f" "$out/images/generated_$(basename "$f")"; done

# Detection: one JSON line and one explained PNG per image. Exit status 1
# (something fake or uncertain) is an answer, not a failure; 2 is an error.
status=0
for img in "$out"/images/*.png; do
    name=$(basename "$img" .png)
    rc=0
    "$doppel" detect --json --explain "$out/explained/$name.png" "$img" >"$out/explained/$name.json" || rc=$?
    if [ "$rc" -ge 2 ]; then
        echo "demo: doppel detect failed on $img" >&2
        status=1
    fi
    echo "  $name: $(sed -e 's/.*"verdict":"\([a-z]*\)","p_fake":\([0-9.]*\).*/\1 (p_fake \2)/' "$out/explained/$name.json")$(grep -q '"found":true' "$out/explained/$name.json" && echo "; carries doppel's watermark")"
done
[ "$status" -eq 0 ] || exit 1
echo "demo: explained results (JSON + PNG with boxes and heat map) in $out/explained/"

# The engine on its own: a short Fashion-MNIST classifier run.
"$doppel" classify train --data fashion-mnist --epochs 1 --limit 6000 --out "$out/fmnist.safetensors" --quiet
"$doppel" classify eval --model "$out/fmnist.safetensors" --data fashion-mnist
echo "demo: done; detection results in $out/explained/, classifier in $out/fmnist.safetensors"
