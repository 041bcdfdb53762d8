#!/bin/sh
# Data preparation for `doppel detect train`: every Nth frame of a video as PNG,
# with the ffmpeg command-line tool (Debian package ffmpeg). Used for the real
# and the face-swapped FaceForensics++ clips of ../shared/data/video, which
# doppel's own code cannot decode yet (src/video/ is not in git).
#
#   tools/extract_frames.sh VIDEO OUTDIR [EVERY]      (EVERY: default 3)
#
# Writes OUTDIR/frame_00001.png ... (frame k of the output is frame (k-1)*EVERY
# of the video). PNG keeps the decoded pixels as they are: the training
# augmentation adds the JPEG history, the same for both classes.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 VIDEO OUTDIR [EVERY]" >&2
    exit 2
fi
video=$1
out=$2
every=${3:-3}
case $every in '' | *[!0-9]*) echo "$0: EVERY must be a positive integer" >&2; exit 2 ;; esac
[ "$every" -ge 1 ] || { echo "$0: EVERY must be >= 1" >&2; exit 2; }
command -v ffmpeg >/dev/null || { echo "$0: ffmpeg is not installed (apt-get install ffmpeg)" >&2; exit 2; }
[ -r "$video" ] || { echo "$0: cannot read $video" >&2; exit 2; }
mkdir -p "$out"
ffmpeg -v error -nostdin -i "$video" -vf "select=not(mod(n\,$every))" -fps_mode vfr "$out/frame_%05d.png"
n=0
for f in "$out"/frame_*.png; do [ -e "$f" ] && n=$((n + 1)); done
echo "$out: $n frames"
