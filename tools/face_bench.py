#!/usr/bin/env python3
"""Time `doppel faces --bench` (every vector path) against OpenCV's
detectMultiScale on the same frame, in alternating rounds so that both see the
same machine load. Prints median / fastest milliseconds per frame.

    tools/face_bench.py --doppel build/doppel FRAME.png [--rounds 4] [--min-sizes 0,40,60,80]

Needs python3-opencv (Debian: apt-get install python3-opencv). One thread each.
"""
import argparse
import os
import re
import statistics
import subprocess
import time

import cv2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--doppel", default="build/doppel")
    ap.add_argument("--cascade", default="/usr/share/opencv4/haarcascades/haarcascade_frontalface_alt2.xml")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=20, help="detections per round and path")
    ap.add_argument("--min-sizes", default="0,40,60,80")
    ap.add_argument("--kernels", default="portable,avx2,avx512")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    grey = cv2.cvtColor(cv2.imread(a.image), cv2.COLOR_BGR2GRAY)
    cc = cv2.CascadeClassifier(a.cascade)
    sizes = [int(x) for x in a.min_sizes.split(",")]
    kernels = a.kernels.split(",")
    res = {}
    for _ in range(a.rounds):
        for ms in sizes:
            ts = []
            for _ in range(max(3, a.runs // 4)):
                t0 = time.perf_counter()
                cc.detectMultiScale(grey, 1.1, 3, minSize=(ms, ms))
                ts.append(1000 * (time.perf_counter() - t0))
            res.setdefault(("opencv", ms), []).extend(ts)
            for k in kernels:
                env = dict(os.environ, DP_KERNEL=k)
                cmd = [a.doppel, "faces", "--quiet", "--cascade", a.cascade, "--bench", str(a.runs), a.image]
                if ms:
                    cmd += ["--min-size", str(ms)]
                err = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stderr
                med = float(re.search(r"median ([0-9.]+) ms", err).group(1))
                fast = float(re.search(r"fastest ([0-9.]+) ms", err).group(1))
                res.setdefault((k, ms), []).append((med, fast))
    for ms in sizes:
        o = res[("opencv", ms)]
        line = "min size %3d: opencv %.1f / %.1f" % (ms, statistics.median(o), min(o))
        for k in kernels:
            v = res[(k, ms)]
            line += " | %s %.1f / %.1f" % (k, statistics.median(x[0] for x in v), min(x[1] for x in v))
        print(line + "   (ms per frame: median / fastest)")
    print("load average:", open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
