#!/usr/bin/env python3
"""Compare `doppel faces` with OpenCV's CascadeClassifier.detectMultiScale.

For each cascade and image, both are run with the same scale factor and
min_neighbors; the boxes (and, when grouped, the neighbour counts) are compared
as multisets. min_neighbors 0 compares the raw windows (no grouping).

    tools/face_vs_opencv.py --doppel build/doppel --min-neighbors 0 \\
        --cascade /usr/share/opencv4/haarcascades/haarcascade_frontalface_alt2.xml \\
        IMAGE...

Needs python3-opencv (Debian: apt-get install python3-opencv). Exit status 1
if any pair differs.
"""
import argparse
import collections
import os
import subprocess
import sys

import cv2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--doppel", default="build/doppel")
    ap.add_argument("--cascade", action="append", required=True, help="may be repeated")
    ap.add_argument("--min-neighbors", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.1)
    ap.add_argument("--min-size", type=int, default=0)
    ap.add_argument("--kernel", help="DP_KERNEL for doppel: portable, avx2 or avx512")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    env = dict(os.environ)
    if a.kernel:
        env["DP_KERNEL"] = a.kernel
    bad = 0
    for casc in a.cascade:
        cc = cv2.CascadeClassifier(casc)
        if cc.empty():
            sys.exit("OpenCV cannot read " + casc)
        for im in a.images:
            grey = cv2.cvtColor(cv2.imread(im), cv2.COLOR_BGR2GRAY)
            size = (a.min_size, a.min_size)
            if a.min_neighbors > 0:
                rects, counts = cc.detectMultiScale2(grey, a.scale, a.min_neighbors, minSize=size)
                ref = collections.Counter(tuple(map(int, r)) + (int(n),) for r, n in zip(rects, counts))
            else:
                rects = cc.detectMultiScale(grey, a.scale, 0, minSize=size)
                ref = collections.Counter(tuple(map(int, r)) for r in rects)
            cmd = [a.doppel, "faces", im, "--cascade", casc, "--pad", "never", "--scale", str(a.scale),
                   "--min-neighbors", str(a.min_neighbors)]
            if a.min_size:
                cmd += ["--min-size", str(a.min_size)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            cols = 6 if a.min_neighbors > 0 else 5
            ours = collections.Counter(tuple(map(int, line.split()[1:cols])) for line in out.splitlines())
            missing, extra = ref - ours, ours - ref
            same = not missing and not extra
            bad += not same
            print("%-40s %-28s opencv %6d  doppel %6d  %s" % (
                os.path.basename(casc), os.path.basename(im), sum(ref.values()), sum(ours.values()),
                "same" if same else "DIFFERENT: missing %s extra %s" % (sorted(missing)[:4], sorted(extra)[:4])))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
