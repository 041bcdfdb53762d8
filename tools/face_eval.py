#!/usr/bin/env python3
"""Score `doppel faces --json` output.

    build/doppel faces --json IMAGE... | tools/face_eval.py [--truth FACES.json]

Without --truth: how many images had no face, one face, two or more (the
measure for folders of face crops: one face per image). With --truth (a file
like ../shared/data/photos/solvay_1927_faces.json: {"faces": [[x, y, w, h],
...]} for the first image): faces found and false hits, under two rules: IoU
>= 0.4 (the ground truth file's rule), and IoU >= 0.3 or the box's centre
inside the true box.
"""
import argparse
import json
import sys


def iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def centre_inside(t, b):
    cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
    return t[0] <= cx < t[0] + t[2] and t[1] <= cy < t[1] + t[3]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth")
    a = ap.parse_args()
    doc = json.load(sys.stdin)
    images = doc["images"]
    if a.truth:
        truth = json.load(open(a.truth))["faces"]
        boxes = [(f["x"], f["y"], f["w"], f["h"]) for f in images[0].get("faces", [])]
        rules = [("IoU >= 0.4", lambda t, b: iou(t, b) >= 0.4),
                 ("IoU >= 0.3 or centre inside", lambda t, b: iou(t, b) >= 0.3 or centre_inside(t, b))]
        for name, match in rules:
            found = sum(1 for t in truth if any(match(t, b) for b in boxes))
            false = sum(1 for b in boxes if not any(match(t, b) for t in truth))
            print("%-28s found %d of %d, false hits %d (%d boxes)" % (name, found, len(truth), false, len(boxes)))
        return
    n = len(images)
    err = sum(1 for i in images if "error" in i)
    counts = [len(i["faces"]) for i in images if "error" not in i]
    zero, one = counts.count(0), counts.count(1)
    print("images %d: one face %d (%.2f%%), none %d, two or more %d, unreadable %d" % (
        n, one, 100.0 * one / n if n else 0, zero, len(counts) - zero - one, err))


if __name__ == "__main__":
    main()
