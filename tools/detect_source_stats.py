#!/usr/bin/python3
"""Per-source statistics of the face crops as the detector sees them (docs/detect.md,
"Why an unseen real source is called fake").

Reads a `doppel detect train --face-cache` file (path, size, mtime, box, found), rebuilds
each work crop the way src/detect/crop.c does (square of side max(w,h)*inner*(1+2*margin)
around the box centre shifted down by shift*h, edge pixels repeated, area-averaged down /
bilinear up to WORK x WORK) and prints, per source folder, the median and quartiles of:
mean R/G/B, saturation, luminance mean / std / 5th and 95th percentile, sharpness (variance
of the Laplacian of the luminance), noise (Immerkaer's estimate), JPEG blockiness of the
crop's region in the original pixels (8-px grid, the file's own grid), the JPEG quality
(from the luma quantisation table), the crop side in the original pixels, and the
high/low ratio of the azimuthal log power spectrum (as src/detect/spectral.c computes it).

--scores CSV (a fold's `--scores` output): Spearman correlation of every statistic with
the fold model's fused p_fake over the held-out source's faces (which statistics go with
being called fake).
--probe: logistic regression on the standardised statistics, trained on the non-held-out
real vs fake sources, applied to the held-out one: the share it calls fake and the
statistics that push it there (coefficient x mean shift from the training reals).

Usage: tools/detect_source_stats.py CACHE [--limit N] [--work 48] [--scores CSV]
       [--heldout DIR] [--probe] [--json OUT]
"""
import argparse
import io
import json
import math
import os
import sys
from collections import defaultdict

import numpy as np
from PIL import Image

STATS = ["R", "G", "B", "sat", "Y_mean", "Y_std", "Y_p5", "Y_p95", "lap_var", "noise", "blockiness",
         "jpeg_q", "side_px", "spec_hi_lo"]


def read_cache(path):
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            x, y, w, h, found = (int(v) for v in parts[3].split())
            out.append((parts[0], (x, y, w, h), found))
    return out


def crop_square(box, inner=0.8, margin=0.05, shift=0.05):
    x, y, w, h = box
    m = max(w, h)
    s = m * inner * (1 + 2 * margin)
    cx, cy = x + w * 0.5, y + h * 0.5 + shift * h
    si = max(1, int(math.floor(s + 0.5)))
    return int(math.floor(cx - si * 0.5 + 0.5)), int(math.floor(cy - si * 0.5 + 0.5)), si


def fallback_box(W, H):
    m = min(W, H)
    s = max(1, int(math.floor(0.9 * m + 0.5)))
    return ((W - s) // 2, (H - s) // 2, s, s)


def jpeg_quality(img):
    q = getattr(img, "quantization", None)
    if not q or 0 not in q:
        return float("nan")
    t = np.array(q[0], dtype=np.float64)
    # libjpeg's standard luma table scaled by the quality factor
    std = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
    scale = np.median(np.sort(t) / np.sort(std)) * 100  # order-free estimate
    q = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return float(min(100, max(1, q)))


def blockiness(Y):
    """Mean |difference| across the file's 8-px JPEG grid over the mean inside blocks, on
    the crop's region (original pixels). 1 = no block edges."""
    H, W = Y.shape
    dx = np.abs(np.diff(Y, axis=1))  # dx[:, i] between column i and i+1
    cols = np.arange(W - 1)
    on = (cols % 8) == 7
    dy = np.abs(np.diff(Y, axis=0))
    rows = np.arange(H - 1)
    onr = (rows % 8) == 7
    a = dx[:, on].mean() + dy[onr, :].mean()
    b = dx[:, ~on].mean() + dy[~onr, :].mean()
    return float(a / max(b, 1e-6))


def noise_immerkaer(Y):
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    H, W = Y.shape
    acc = np.zeros((H - 2, W - 2))
    for i in range(3):
        for j in range(3):
            acc += k[i, j] * Y[i:i + H - 2, j:j + W - 2]
    return float(math.sqrt(math.pi / 2) * np.abs(acc).sum() / (6 * (W - 2) * (H - 2)))


def laplacian_var(Y):
    L = Y[1:-1, :-2] + Y[1:-1, 2:] + Y[:-2, 1:-1] + Y[2:, 1:-1] - 4 * Y[1:-1, 1:-1]
    return float(L.var())


def spectrum(Y):
    n = Y.shape[0]
    g = Y - Y.mean()
    w = 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(n) + 0.5) / n)
    g = g * np.outer(w, w)
    P = np.abs(np.fft.fft2(g)) ** 2
    P = np.log(P + 1e-10)
    fy = np.fft.fftfreq(n) * n
    r = np.sqrt(fy[:, None] ** 2 + fy[None, :] ** 2)
    ri = np.floor(r + 0.5).astype(int)
    prof = np.array([P[ri == k].mean() for k in range(1, n // 2 + 1)])
    return prof - prof.mean()


def work_crop(img, box, work):
    x0, y0, s = crop_square(box)
    a = np.asarray(img, dtype=np.float32) / 255.0
    H, W = a.shape[:2]
    ys = np.clip(np.arange(y0, y0 + s), 0, H - 1)
    xs = np.clip(np.arange(x0, x0 + s), 0, W - 1)
    sq = a[ys][:, xs]
    im = Image.fromarray((sq * 255 + 0.5).astype(np.uint8))
    im = im.resize((work, work), Image.BOX if s >= work else Image.BILINEAR)
    return np.asarray(im, dtype=np.float64) / 255.0, (x0, y0, s), a


def luma(a):
    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]


def stats_of(path, box, found, work):
    img = Image.open(path)
    q = jpeg_quality(img)
    img = img.convert("RGB")
    if not found:
        box = fallback_box(img.width, img.height)
    c, (x0, y0, s), full = work_crop(img, box, work)
    Y = luma(c)
    mx, mn = c.max(axis=2), c.min(axis=2)
    sat = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0).mean()
    # blockiness on the crop's region of the original image, inside the image
    Yf = luma(full)
    H, W = Yf.shape
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + s), min(H, y0 + s)
    reg = Yf[ya:yb, xa:xb]
    # keep the file's grid: start the region on a multiple of 8
    xa8, ya8 = (8 - xa % 8) % 8, (8 - ya % 8) % 8
    reg = reg[ya8:, xa8:]
    blk = blockiness(reg) if reg.shape[0] > 16 and reg.shape[1] > 16 else float("nan")
    prof = spectrum(Y)
    k = len(prof)
    hi_lo = float(prof[2 * k // 3:].mean() - prof[k // 6:k // 3].mean())
    v = dict(R=c[..., 0].mean(), G=c[..., 1].mean(), B=c[..., 2].mean(), sat=sat, Y_mean=Y.mean(), Y_std=Y.std(),
             Y_p5=np.percentile(Y, 5), Y_p95=np.percentile(Y, 95), lap_var=laplacian_var(Y), noise=noise_immerkaer(Y),
             blockiness=blk, jpeg_q=q, side_px=s, spec_hi_lo=hi_lo)
    return {k2: float(x) for k2, x in v.items()}, prof, found


def spread(paths, limit):
    if limit <= 0 or len(paths) <= limit:
        return paths
    return [paths[(i * len(paths)) // limit] for i in range(limit)]


def rankdata(a):
    o = np.argsort(a, kind="mergesort")
    r = np.empty(len(a))
    r[o] = np.arange(len(a))
    return r


def spearman(a, b):
    a, b = np.asarray(a), np.asarray(b)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    return float(np.corrcoef(rankdata(a[ok]), rankdata(b[ok]))[0, 1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--work", type=int, default=48)
    ap.add_argument("--scores")
    ap.add_argument("--heldout", default="real-celeba")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    by = defaultdict(list)
    for p, box, found in read_cache(a.cache):
        by[os.path.dirname(p)].append((p, box, found))
    rows, profs = {}, {}
    for src in sorted(by):
        items = spread(sorted(by[src]), a.limit)
        vals, ps = [], []
        for p, box, found in items:
            try:
                v, prof, _ = stats_of(p, box, found, a.work)
            except (OSError, ValueError) as e:
                print(f"{p}: {e}", file=sys.stderr)
                continue
            v["path"] = p
            vals.append(v)
            ps.append(prof)
        rows[src] = vals
        profs[src] = np.array(ps)
    names = [os.path.basename(s) for s in rows]
    print(f"work crops at {a.work} px, up to {a.limit} faces per source (median [25th, 75th percentile])")
    print(f"{'statistic':12s}" + "".join(f"{n[:16]:>26s}" for n in names))
    for k in STATS:
        line = f"{k:12s}"
        for s in rows:
            x = np.array([r[k] for r in rows[s]])
            x = x[np.isfinite(x)]
            line += f"{np.median(x):10.4g} [{np.percentile(x, 25):6.3g},{np.percentile(x, 75):6.3g}]" if len(x) else f"{'-':>26s}"
        print(line)
    print("azimuthal log power profile (rings 1..N/2, minus its mean), median per source, every 3rd ring:")
    for s in rows:
        m = np.median(profs[s], axis=0)
        print(f"  {os.path.basename(s)[:16]:16s}" + " ".join(f"{v:6.2f}" for v in m[::3]))
    if a.scores:
        import csv
        p_of = {}
        with open(a.scores) as f:
            for r in csv.DictReader(f):
                if r["split"] == "heldout":
                    p_of[r["path"]] = float(r["p_fake"])
        for s in rows:
            rr = [r for r in rows[s] if r["path"] in p_of]
            if len(rr) < 20:
                continue
            pf = [p_of[r["path"]] for r in rr]
            print(f"Spearman correlation with the fold model's p_fake over {len(rr)} faces of {os.path.basename(s)} "
                  f"({100 * np.mean(np.array(pf) >= 0.7):.1f} % at p >= 0.7):")
            for k in STATS:
                print(f"  {k:12s} {spearman([r[k] for r in rr], pf):+.3f}")
    if a.probe:
        feats = [k for k in STATS if k not in ("jpeg_q",)]
        tr_x, tr_y = [], []
        held = None
        for s in rows:
            X = np.array([[r[k] for k in feats] for r in rows[s]])
            X = np.nan_to_num(X, nan=np.nanmedian(X, axis=0)[None, :].repeat(len(X), 0))
            lab = 1 if "fake" in os.path.basename(s) else 0
            if a.heldout in s:
                held = X
                continue
            if "dcgan" in s:
                continue
            tr_x.append(X)
            tr_y += [lab] * len(X)
        X = np.vstack(tr_x)
        y = np.array(tr_y, dtype=np.float64)
        mu, sd = X.mean(0), X.std(0) + 1e-9
        Z = (X - mu) / sd
        w = np.zeros(Z.shape[1] + 1)
        Zb = np.hstack([Z, np.ones((len(Z), 1))])
        for _ in range(50):  # Newton, L2 1.0
            p = 1 / (1 + np.exp(-Zb @ w))
            g = Zb.T @ (p - y) + np.r_[w[:-1], 0]
            Hm = (Zb * (p * (1 - p))[:, None]).T @ Zb + np.diag(np.r_[np.ones(len(w) - 1), 0])
            w -= np.linalg.solve(Hm, g)
        acc = np.mean((Zb @ w > 0) == (y > 0.5))
        print(f"probe: logistic regression on {len(feats)} statistics, training sources (not {a.heldout}, no DCGAN): "
              f"accuracy {100 * acc:.1f} %")
        if held is not None:
            Zh = (held - mu) / sd
            ph = 1 / (1 + np.exp(-(np.hstack([Zh, np.ones((len(Zh), 1))]) @ w)))
            print(f"  {a.heldout} held out: {100 * np.mean(ph >= 0.5):.1f} % called fake by the statistics alone")
            real_mu = Z[y == 0].mean(0)
            contrib = w[:-1] * (Zh.mean(0) - real_mu)
            for i in np.argsort(-contrib):
                print(f"    {feats[i]:12s} coef {w[i]:+.3f}  shift of the held-out mean from the training reals "
                      f"{Zh.mean(0)[i] - real_mu[i]:+.3f} sd  -> {contrib[i]:+.3f} logit")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({os.path.basename(s): rows[s] for s in rows}, f)


if __name__ == "__main__":
    main()
