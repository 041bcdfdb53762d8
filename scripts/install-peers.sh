#!/bin/sh
# Installs the peers that 'doppel bench' compares against, if missing (make bench runs it):
#   - PyTorch: Debian's python3-torch, run with /usr/bin/python3, and OpenBLAS
#     (without it python3-torch computes its matrix products with the reference BLAS,
#     ~1 GFLOP/s: not the peer's fair configuration). The OpenMP build
#     (libopenblas0-openmp) shares PyTorch's OpenMP runtime; doppel bench also runs
#     the model and layer peers with OPENBLAS_NUM_THREADS=1 (docs/bench.md);
#   - ONNX Runtime: npm onnxruntime-node@1.30.0 (CPU binaries bundled; the install
#     script that fetches GPU files is skipped) into bench/peers/node_modules, and
#     Meso-4 exported as ONNX into bench/peers/meso4.onnx by ../shared/peers/export_onnx.py.
# Usage: scripts/install-peers.sh [PEERS_DIR]   (default: ../shared/peers beside the repository)
# bench/peers/ is git-ignored. A step that fails is reported and skipped: the bench
# then reports that peer as null with a note.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${1:-$root/../shared/peers}
dest=$root/bench/peers
ORT_VERSION=1.30.0
status=0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
missing=""
for p in python3-torch libopenblas0-openmp nodejs npm; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node/npm from elsewhere (nvm, a tarball) are fine too.
case "$missing" in *nodejs*) command -v node >/dev/null 2>&1 && missing=$(echo "$missing" | sed 's/ nodejs//') ;; esac
case "$missing" in *npm*) command -v npm >/dev/null 2>&1 && missing=$(echo "$missing" | sed 's/ npm//') ;; esac
if [ -n "$missing" ]; then
  echo "install-peers: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing || { echo "install-peers: apt-get failed" >&2; status=1; }
fi

if ! /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  echo "install-peers: PyTorch does not import in /usr/bin/python3: the bench will report it as null" >&2
  status=1
fi

mkdir -p "$dest"
if [ ! -d "$dest/node_modules/onnxruntime-node" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "install-peers: npm install onnxruntime-node@$ORT_VERSION into $dest"
    [ -f "$dest/package.json" ] || echo '{"name": "doppel-bench-peers", "private": true}' > "$dest/package.json"
    (cd "$dest" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --loglevel=error \
        "onnxruntime-node@$ORT_VERSION") || { echo "install-peers: npm install failed" >&2; status=1; }
  else
    echo "install-peers: no npm: ONNX Runtime will be reported as null" >&2
    status=1
  fi
fi

if [ ! -s "$dest/meso4.onnx" ]; then
  if [ -f "$peers/export_onnx.py" ]; then
    echo "install-peers: exporting Meso-4 to $dest/meso4.onnx"
    if ! { /usr/bin/python3 "$peers/export_onnx.py" "$dest/meso4.onnx.tmp" >/dev/null &&
           mv "$dest/meso4.onnx.tmp" "$dest/meso4.onnx"; }; then
      rm -f "$dest/meso4.onnx.tmp"
      echo "install-peers: ONNX export failed" >&2
      status=1
    fi
  else
    echo "install-peers: $peers/export_onnx.py not found: pass the peers folder as the first argument" >&2
    status=1
  fi
fi
exit $status
