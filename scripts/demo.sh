#!/bin/sh
# make demo: a short, real run of doppel's engine on data that Debian ships —
# train a small CNN on part of Fashion-MNIST, then evaluate it on the test set.
set -e
build=${1:-build}
out=${TMPDIR:-/tmp}/doppel-demo
mkdir -p "$out"
"$build/doppel" version
"$build/doppel" classify train --data fashion-mnist --epochs 1 --limit 12000 --out "$out/fmnist.safetensors"
"$build/doppel" classify eval --model "$out/fmnist.safetensors" --data fashion-mnist
echo "demo: model written to $out/fmnist.safetensors"
