#!/bin/sh
# Installs the Debian packages doppel needs to build and test, if missing.
# Usage: scripts/install-deps.sh [build|test|demo|torch]
set -e
what=${1:-build}
pkgs="build-essential cmake pkg-config zlib1g-dev libpng-dev libjpeg-dev libwebp-dev libcjson-dev libcmocka-dev libhdf5-dev libxml2-dev opencv-data libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libswresample-dev libavdevice-dev libmicrohttpd-dev"
case "$what" in
  # ffmpeg and the GStreamer RTSP server: the network-video tests (test_scan: UDP, RTSP push and pull)
  test) pkgs="$pkgs clang libclang-rt-14-dev valgrind dataset-fashion-mnist python3-skimage ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good" ;;
  demo) pkgs="$pkgs dataset-fashion-mnist python3-skimage" ;;
  torch) pkgs="$pkgs python3-torch python3-numpy python3-h5py python3-pil" ;;
esac
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
