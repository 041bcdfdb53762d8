#!/usr/bin/python3
"""Interventions on whole images before face finding: which change makes a held-out real
source look real (or a fake one real) to a fold model? (docs/detect.md, "Why an unseen real
source is called fake".)

  make    --scores FOLD.csv --out DIR [VARIANT...]
          from a fold's --scores CSV: every 7th held-out face (up to 280; the held-out source)
          and the first 200 StyleGAN and 200 UTKFace faces of its test split; writes
          DIR/VARIANT/{heldout,stylegan,utk}/*.png with the change applied
  score   --doppel BIN --model M --out DIR [VARIANT...]
          `doppel detect --json --threads 1` on every folder (DIR/scores/VARIANT-SET.jsonl)
  summary --out DIR
          per variant: share of held-out faces with p_fake >= 0.7 and Meso-4 >= 0.5, of UTKFace
          and StyleGAN faces with p_fake >= 0.7, AUC held-out vs StyleGAN and UTKFace vs
          StyleGAN (faces found only)

Run from the repository root (the CSV's paths are relative to it).
"""
import argparse
import csv
import glob
import io
import json
import os
import subprocess

import numpy as np
from PIL import Image, ImageFilter

FACE_PX = {"heldout": 47, "stylegan": 146, "utk": 175}  # median crop side of each set (detect_source_stats.py)


def jpg(im, q):
    b = io.BytesIO()
    im.save(b, "JPEG", quality=q)
    b.seek(0)
    return Image.open(b).convert("RGB")


def luma(a):
    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]


def u8(a):  # clipped and truncated, as the run in docs/detect.md did
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def sat(im, f):
    a = np.asarray(im, dtype=np.float64)
    y = luma(a)[..., None]
    return u8(y + (a - y) * f)


def contrast(im, f):
    a = np.asarray(im, dtype=np.float64)
    return u8(a.mean() + (a - a.mean()) * f)


def chroma_flat(im):
    a = np.asarray(im, dtype=np.float64)
    y = luma(a)
    return u8(y[..., None] + (a - y[..., None]).reshape(-1, 3).mean(0))


def chroma_blur(im, r):
    a = np.asarray(im, dtype=np.float64)
    y = luma(a)[..., None]
    c = u8(a - y + 128).filter(ImageFilter.GaussianBlur(r))
    return u8(y + (np.asarray(c, dtype=np.float64) - 128))


def colour_transfer(im):
    """each channel to the training reals' typical mean / deviation"""
    a = np.asarray(im, dtype=np.float64) / 255
    m, s = a.mean((0, 1)), a.std((0, 1)) + 1e-6
    return u8(np.clip((a - m) / s * np.array([0.2, 0.19, 0.19]) + np.array([0.60, 0.47, 0.40]), 0, 1) * 255 + 0.5)


def up(im, f, res):
    return im.resize((im.width * f, im.height * f), res)


def downup(im, f):
    w, h = im.size
    return im.resize((max(1, int(w * f)), max(1, int(h * f))), Image.BOX).resize((w, h), Image.BILINEAR)


VARIANTS = {
    "orig": lambda im, s: im,
    "grey": lambda im, s: im.convert("L").convert("RGB"),
    "sat0.8": lambda im, s: sat(im, 0.8),
    "contrast0.85": lambda im, s: contrast(im, 0.85),
    "chroma_flat": lambda im, s: chroma_flat(im),
    "chroma_blur2": lambda im, s: chroma_blur(im, 2.0),
    "colour_transfer": lambda im, s: colour_transfer(im),
    "blur0.7": lambda im, s: im.filter(ImageFilter.GaussianBlur(0.7)),
    "sharpen": lambda im, s: im.filter(ImageFilter.UnsharpMask(1.0, 60, 0)),
    "up3_lanczos": lambda im, s: up(im, 3, Image.LANCZOS),
    "up3_bilinear": lambda im, s: up(im, 3, Image.BILINEAR),
    "jpeg60": lambda im, s: jpg(im, 60),
    "downup0.6": lambda im, s: downup(im, 0.6),
    # every set shrunk so that the face is CelebA-sized (~47 px), then JPEG q75: CelebA's file history for all
    "small47": lambda im, s: jpg(im.resize((max(8, round(im.width * 47 / FACE_PX[s])),
                                            max(8, round(im.height * 47 / FACE_PX[s]))), Image.LANCZOS), 75),
}
SETS = ("heldout", "stylegan", "utk")


def make(a):
    rows = list(csv.DictReader(open(a.scores)))
    lists = {"heldout": [r["path"] for r in rows if r["split"] == "heldout"][::7][:280],
             "stylegan": [r["path"] for r in rows if r["split"] == "test" and "stylegan" in r["path"]][:200],
             "utk": [r["path"] for r in rows if r["split"] == "test" and "utkface" in r["path"]][:200]}
    for v in a.variants or list(VARIANTS):
        for s in SETS:
            d = os.path.join(a.out, v, s)
            os.makedirs(d, exist_ok=True)
            for p in lists[s]:
                im = Image.open(p).convert("RGB")
                VARIANTS[v](im, s).save(os.path.join(d, os.path.basename(p).rsplit(".", 1)[0] + ".png"))
        print(v, "made", flush=True)


def score(a):
    os.makedirs(os.path.join(a.out, "scores"), exist_ok=True)
    for v in a.variants or list(VARIANTS):
        for s in SETS:
            with open(os.path.join(a.out, "scores", f"{v}-{s}.jsonl"), "w") as f:
                subprocess.run([a.doppel, "detect", "--json", "--model", a.model, "--threads", "1",
                                os.path.join(a.out, v, s)], stdout=f, stderr=subprocess.DEVNULL, check=False)
        print(v, "scored", flush=True)


def load(f):
    P, M = [], []
    for line in open(f):
        o = json.loads(line)
        if not o.get("faces") or o["faces"][0].get("fallback"):
            continue
        P.append(o["faces"][0]["p_fake"])
        M.append(o["faces"][0]["detectors"]["meso4"])
    return np.array(P), np.array(M)


def auc(neg, pos):
    s = np.r_[neg, pos]
    r = s.argsort().argsort() + 1.0
    return (r[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos))


def summary(a):
    d = os.path.join(a.out, "scores")
    vs = sorted({os.path.basename(f).rsplit("-", 1)[0] for f in glob.glob(d + "/*.jsonl")})
    print(f"{'variant':16s} {'held-out p>=.7':>14s} {'Meso-4>=.5':>10s} {'UTK p>=.7':>10s} {'SG p>=.7':>9s} "
          f"{'AUC H/SG':>9s} {'AUC U/SG':>9s}  faces H/U/SG")
    for v in vs:
        try:
            (h, hm), (s, _), (u, _) = (load(f"{d}/{v}-{k}.jsonl") for k in SETS)
        except FileNotFoundError:
            continue
        if not (len(h) and len(s) and len(u)):
            continue
        print(f"{v:16s} {100 * np.mean(h >= .7):13.1f}% {100 * np.mean(hm >= .5):9.1f}% {100 * np.mean(u >= .7):9.1f}% "
              f"{100 * np.mean(s >= .7):8.1f}% {auc(h, s):9.4f} {auc(u, s):9.4f}  {len(h)}/{len(u)}/{len(s)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "score", "summary"])
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--scores")
    ap.add_argument("--out", required=True)
    ap.add_argument("--doppel", default="build/doppel")
    ap.add_argument("--model")
    a = ap.parse_args()
    {"make": make, "score": score, "summary": summary}[a.cmd](a)


if __name__ == "__main__":
    main()
