#!/usr/bin/python3
"""Write the Keras reference outputs for doppel's MesoNet import test (tests/test_keras.c).

    /usr/bin/python3 tools/make_keras_refs.py [--data ../shared/data/mesonet] [--out tests/ref]

Needs numpy, h5py and PIL (Debian: python3-numpy python3-h5py python3-pil; run
with /usr/bin/python3). Keras/TensorFlow are NOT needed: the forward pass of
the original Keras models (DariusAf/MesoNet, classifiers.py: Meso4 and
MesoInception4) is reimplemented here in numpy, float64, in Keras' own NHWC
layout: 'same' padding (symmetric here: every kernel is odd), dilated 3x3
convolutions, ReLU inside the Conv2D, BatchNormalization in inference mode
(x - moving_mean) / sqrt(moving_variance + eps) * gamma + beta with Keras'
default eps 1e-3, 'same' max-pooling, Flatten in (H, W, C) order, Dense(16),
LeakyReLU(0.1), Dense(1) + sigmoid. Dropout is the identity in predict().
The weights are read through the file's own index (the root attribute
`layer_names` and each layer's `weight_names`), as Keras' load_weights does.

Inputs: the 4 test images of the MesoNet repository, in the order of Keras'
flow_from_directory (class folders sorted: df = 0, real = 1; files sorted),
decoded to RGB and resized to 256x256 as Keras 2.1.5's load_img does (PIL
NEAREST; for each output pixel the source index is floor((2i+1)*src/(2*256)),
which this script checks against PIL), then scaled by 1/255 in float32:
x = float32(byte) * float32(1/255) -- bit for bit what doppel's image loader
gives (byte * (1.0f/255.0f)). The reference file records a checksum of every
input tensor ([3,256,256] float32, planar, as doppel feeds it: FNV-1a 64 over
the little-endian bytes), so the C test knows it runs on the same tensor.

File format (text; '#' starts a comment line):
    doppel-keras-ref 1
    image <path under the data folder> <width> <height> <label> <fnv1a64 hex>
    model <weights file> <arch> <bn eps>
    p <output for image 0> ... <output for image 3>
    logit <the same before the final sigmoid> ...
    end
Outputs are Keras' predict() values: the probability that the image is REAL
(class 1 = 'real' of the sorted folders 'df', 'real'). The logits (the input
of the last sigmoid) are there because a probability near 0 or 1 hides
differences that the logit still shows.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mesonet"))

MODELS = [("Meso4_DF.h5", "meso4"), ("Meso4_F2F.h5", "meso4"),
          ("MesoInception_DF.h5", "mesoinception4"), ("MesoInception_F2F.h5", "mesoinception4")]
SIZE = 256
KERAS_BN_EPS = 1e-3  # BatchNormalization() defaults (classifiers.py passes no arguments)


def die(msg):
    print("make_keras_refs: " + msg, file=sys.stderr)
    sys.exit(2)


try:
    import h5py
    import numpy as np
    from PIL import Image
except ImportError as e:  # pragma: no cover
    die("needs numpy, h5py and PIL (%s); on Debian: apt-get install python3-h5py python3-pil, "
        "run with /usr/bin/python3" % e)


# ------------------------------------------------------------ weights

def read_weights(path):
    """[(layer name, [arrays in weight_names order])] for the layers with weights, in layer_names order."""
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        out = []
        for ln in g.attrs["layer_names"]:
            ln = ln.decode() if isinstance(ln, bytes) else ln
            wn = g[ln].attrs["weight_names"]
            ws = [np.array(g[ln][w.decode() if isinstance(w, bytes) else w], dtype=np.float32) for w in wn]
            if ws:
                out.append((ln, ws))
        return out


def suffix(name):
    """Keras' creation counter: conv2d_12 -> 12."""
    return int(name.rsplit("_", 1)[1])


class Weights:
    def __init__(self, layers):
        self.layers = layers
        self.i = 0

    def take(self, n_arrays, what):
        if self.i >= len(self.layers):
            die("ran out of layers looking for " + what)
        name, ws = self.layers[self.i]
        self.i += 1
        if len(ws) != n_arrays:
            die("layer %s: %d arrays, expected %d (%s)" % (name, len(ws), n_arrays, what))
        return name, ws


# ------------------------------------------------------------ Keras layers, NHWC, float64

def conv_same(x, kernel, bias, dilation=1):
    """Conv2D(padding='same', activation='relu'): x [N,H,W,C], kernel [kh,kw,C,O]."""
    kh, kw, ci, co = kernel.shape
    assert x.shape[3] == ci
    # TensorFlow 'same', stride 1: total padding d*(k-1), the smaller half before
    ph, pw = dilation * (kh - 1), dilation * (kw - 1)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    n, h, w, _ = x.shape
    y = np.zeros((n, h, w, co))
    k = kernel.astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            win = xp[:, i * dilation:i * dilation + h, j * dilation:j * dilation + w, :]
            y += np.tensordot(win, k[i, j], axes=([3], [0]))
    y += bias.astype(np.float64)
    return np.maximum(y, 0.0)


def batchnorm(x, gamma, beta, mean, var, eps):
    g, b, m, v = (a.astype(np.float64) for a in (gamma, beta, mean, var))
    return (x - m) / np.sqrt(v + eps) * g + b


def maxpool_same(x, p):
    n, h, w, c = x.shape
    assert h % p == 0 and w % p == 0  # 'same' pads nothing when the size divides
    return x.reshape(n, h // p, p, w // p, p, c).max(axis=(2, 4))


def head(x, wt):
    y = x.reshape(x.shape[0], -1)  # Keras Flatten of NHWC: (h, w, c) order
    _, (k, b) = wt.take(2, "dense_1")
    y = y @ k.astype(np.float64) + b
    y = np.where(y > 0, y, 0.1 * y)  # LeakyReLU(alpha=0.1)
    _, (k, b) = wt.take(2, "dense_2")
    return y @ k.astype(np.float64) + b  # the logit; Dense(1, activation='sigmoid') applies the sigmoid


def meso4(x, layers, eps):
    wt = Weights(layers)
    for pool in (2, 2, 2, 4):
        _, (k, b) = wt.take(2, "conv")
        x = conv_same(x, k, b)
        _, bn = wt.take(4, "batch norm")
        x = batchnorm(x, *bn, eps)
        x = maxpool_same(x, pool)
    y = head(x, wt)
    assert wt.i == len(layers)
    return y


def inception(x, convs):
    """convs: the block's 7 Conv2D layers sorted by creation: b1, b2 1x1, b2 3x3, b3 1x1, b3 3x3, b4 1x1, b4 3x3."""
    (k1, c1), (k2a, c2a), (k2b, c2b), (k3a, c3a), (k3b, c3b), (k4a, c4a), (k4b, c4b) = convs
    x1 = conv_same(x, k1, c1)
    x2 = conv_same(conv_same(x, k2a, c2a), k2b, c2b)
    x3 = conv_same(conv_same(x, k3a, c3a), k3b, c3b, dilation=2)
    x4 = conv_same(conv_same(x, k4a, c4a), k4b, c4b, dilation=3)
    return np.concatenate([x1, x2, x3, x4], axis=3)  # Concatenate(axis=-1)([x1, x2, x3, x4])


def mesoinception4(x, layers, eps):
    wt = Weights(layers)
    for _ in range(2):
        block = [wt.take(2, "inception conv") for _ in range(7)]
        block.sort(key=lambda nw: suffix(nw[0]))  # layer_names is in depth order; creation order = branch order
        x = inception(x, [tuple(ws) for _, ws in block])
        _, bn = wt.take(4, "batch norm")
        x = batchnorm(x, *bn, eps)
        x = maxpool_same(x, 2)
    for pool in (2, 4):
        _, (k, b) = wt.take(2, "conv")
        x = conv_same(x, k, b)
        _, bn = wt.take(4, "batch norm")
        x = batchnorm(x, *bn, eps)
        x = maxpool_same(x, pool)
    y = head(x, wt)
    assert wt.i == len(layers)
    return y


# ------------------------------------------------------------ inputs

def nearest_index(src, dst):
    return (2 * np.arange(dst) + 1) * src // (2 * dst)


def load_image(path):
    im = Image.open(path).convert("RGB")
    px = np.asarray(im, dtype=np.uint8)  # [H, W, 3]
    h, w = px.shape[:2]
    out = px[nearest_index(h, SIZE)][:, nearest_index(w, SIZE)]
    pil = np.asarray(im.resize((SIZE, SIZE), Image.NEAREST), dtype=np.uint8)
    if not np.array_equal(out, pil):
        die("%s: the nearest-neighbour formula differs from PIL's NEAREST resize" % path)
    x = out.astype(np.float32) * (np.float32(1.0) / np.float32(255.0))
    return w, h, x  # NHWC float32, [256, 256, 3]


def fnv1a64(data):
    hsh = 0xCBF29CE484222325
    for byte in data:
        hsh ^= byte
        hsh = (hsh * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return hsh


def checksum(x_hwc):
    planar = np.ascontiguousarray(x_hwc.transpose(2, 0, 1)).astype("<f4")
    # FNV-1a over 786,432 bytes in pure Python is slow (~1 s each); fine here.
    return fnv1a64(planar.tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="the mesonet folder of ../shared/data")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "ref"))
    args = ap.parse_args()
    if not os.path.isdir(args.data):
        die("no MesoNet data folder at %s (give --data)" % args.data)
    imgdir = os.path.join(args.data, "test_images")
    classes = sorted(d for d in os.listdir(imgdir) if os.path.isdir(os.path.join(imgdir, d)))
    if classes != ["df", "real"]:
        die("expected the class folders df/ and real/ in %s, found %s" % (imgdir, classes))
    images = []
    for label, c in enumerate(classes):
        for fn in sorted(os.listdir(os.path.join(imgdir, c))):
            rel = "test_images/%s/%s" % (c, fn)
            w, h, x = load_image(os.path.join(args.data, rel))
            images.append((rel, w, h, label, x, checksum(x)))
    xb = np.stack([im[4] for im in images]).astype(np.float64)

    lines = ["doppel-keras-ref 1",
             "# generated by tools/make_keras_refs.py from ../shared/data/mesonet (DariusAf/MesoNet, Apache-2.0);",
             "# outputs = Keras predict() = P(real), from a float64 NHWC re-implementation of the Keras models"]
    for rel, w, h, label, _, cs in images:
        lines.append("image %s %d %d %d %016x" % (rel, w, h, label, cs))
    for fn, arch in MODELS:
        path = os.path.join(args.data, fn)
        layers = read_weights(path)
        fwd = meso4 if arch == "meso4" else mesoinception4
        z = fwd(xb, layers, KERAS_BN_EPS)[:, 0]
        y = 1.0 / (1.0 + np.exp(-z))
        lines.append("model %s %s %g" % (fn, arch, KERAS_BN_EPS))
        lines.append("p %s" % " ".join("%.9e" % v for v in y))
        lines.append("logit %s" % " ".join("%.9e" % v for v in z))
        msg = "  ".join("%s=%.6f" % (os.path.basename(im[0]), v) for im, v in zip(images, y))
        print("%-22s P(real): %s" % (fn, msg))
    lines.append("end")
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "keras_mesonet.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
