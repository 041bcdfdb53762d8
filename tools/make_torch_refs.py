#!/usr/bin/python3
"""Write the PyTorch reference files for doppel's parity test (tests/test_parity.c).

    /usr/bin/python3 tools/make_torch_refs.py [--models ../shared/peers/models.py] [--out tests/ref]

Needs PyTorch (Debian's python3-torch 1.13: run it with /usr/bin/python3) and
numpy. It builds each reference model from ../shared/peers/models.py (Meso-4,
DCGAN 64x64, DCGAN 28x28) or from the PyTorch mirror of the Keras
MesoInception-4 defined below, sets every parameter, buffer and input by a
formula that C reproduces bit for bit, runs the forward and backward passes in
float64 and writes small text files: the outputs and, for every gradient and
updated buffer, a fixed sample of at most 128 elements plus the sum, the L2
norm and the largest magnitude of the whole tensor.

The value formula (tests/test_parity.c has the same code):
    z = seed + (i + 1) * 0x9E3779B97F4A7C15          (mod 2^64; i = flat index)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9          (splitmix64)
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z =  z ^ (z >> 31)
    u = ((z >> 40) - 2^23) / 2^23                     (exact, in [-1, 1))
    value = float32(offset + scale * u)               (double arithmetic, then rounded)

File format (text, one record a line, '#' starts a comment line):
    doppel-ref 1
    case <name>
    batch <N>
    tensor <name> <ndim> <d0> .. <offset> <scale> <seed>     a parameter, buffer or input
    values <name> <n> <v0> ... <vn-1>                        a small tensor given outright
    check <label> <numel> <nsamp> <sum> <l2> <maxabs>        followed by nsamp lines "<index> <value>"
    end
Labels: "<phase>.<what>" where what is an output name, "grad:<param or input>"
or "value:<buffer>" (the buffer after the phase's forward passes).
"""
import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_MODELS = os.path.normpath(os.path.join(REPO, "..", "shared", "peers", "models.py"))
MAX_SAMPLES = 128


def die(msg):
    print("make_torch_refs: " + msg, file=sys.stderr)
    sys.exit(2)


try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError as e:  # pragma: no cover
    die("needs PyTorch and numpy (%s); on Debian: apt-get install python3-torch, run with /usr/bin/python3" % e)


def load_models(path):
    if not os.path.isfile(path):
        die("cannot find the reference model definitions at %s\n"
            "  (they live in ../shared/peers/models.py next to the repository; pass --models PATH)" % path)
    spec = importlib.util.spec_from_file_location("peer_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- MesoInception-4
class Inception(nn.Module):
    """Keras InceptionLayer(a, b, c, d) of Afchar et al. (DariusAf/MesoNet classifiers.py):
    every conv is 'same'-padded and followed by ReLU; the four branches are concatenated."""

    def __init__(s, ci, a, b, c, d):
        super().__init__()
        s.b1 = nn.Conv2d(ci, a, 1)
        s.b2 = nn.Sequential(nn.Conv2d(ci, b, 1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1))
        s.b3 = nn.Sequential(nn.Conv2d(ci, c, 1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=2, dilation=2))
        s.b4 = nn.Sequential(nn.Conv2d(ci, d, 1), nn.ReLU(), nn.Conv2d(d, d, 3, padding=3, dilation=3))

    def forward(s, x):
        r = torch.relu
        return torch.cat([r(s.b1(x)), r(s.b2(x)), r(s.b3(x)), r(s.b4(x))], 1)


class MesoInception4(nn.Module):
    """The Keras MesoInception-4 in PyTorch (NCHW). Keras BatchNormalization defaults:
    eps 1e-3, momentum 0.99 (PyTorch convention: 0.01). 'same' max-pooling equals
    PyTorch's MaxPool2d here because every size divides."""

    def __init__(s):
        super().__init__()

        def bn(c):
            return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

        s.f = nn.Sequential(
            Inception(3, 1, 4, 4, 2), bn(11), nn.MaxPool2d(2),
            Inception(11, 2, 4, 4, 2), bn(12), nn.MaxPool2d(2),
            nn.Conv2d(12, 16, 5, padding=2), nn.ReLU(), bn(16), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 5, padding=2), nn.ReLU(), bn(16), nn.MaxPool2d(4))
        s.c = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * 8 * 8, 16), nn.LeakyReLU(0.1),
                            nn.Dropout(0.5), nn.Linear(16, 1), nn.Sigmoid())

    def forward(s, x):
        return s.c(s.f(x))


# ---------------------------------------------------------------- the value formula
M64 = (1 << 64) - 1


def formula(n, offset, scale, seed):
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    m = (z >> np.uint64(40)).astype(np.float64)
    u = (m - 8388608.0) / 8388608.0
    t = scale * u
    return (offset + t).astype(np.float32)


class Ref:
    def __init__(s, case, batch):
        s.lines = ["doppel-ref 1", "case %s" % case, "batch %d" % batch]
        s.seed = 1000
        s.rng = np.random.default_rng(12345)

    def tensor(s, name, t, offset, scale):
        """Fill t (a torch tensor, any dtype) by the formula and record how."""
        s.seed += 7919
        vals = formula(t.numel(), offset, scale, s.seed)
        with torch.no_grad():
            t.copy_(torch.from_numpy(vals).reshape(t.shape).to(t.dtype))
        dims = " ".join(str(d) for d in t.shape)
        s.lines.append("tensor %s %d %s %.17g %.17g %d" % (name, t.dim(), dims, offset, scale, s.seed))

    def values(s, name, vals):
        s.lines.append("values %s %d %s" % (name, len(vals), " ".join("%.9g" % v for v in vals)))

    def check(s, label, t):
        a = t.detach().to(torch.float64).flatten().numpy()
        n = a.size
        if n <= MAX_SAMPLES:
            idx = np.arange(n)
        else:
            idx = np.sort(s.rng.choice(n, MAX_SAMPLES, replace=False))
        s.lines.append("check %s %d %d %.17g %.17g %.17g" % (label, n, idx.size, a.sum(), np.sqrt((a * a).sum()),
                                                             np.abs(a).max() if n else 0.0))
        for k in idx:
            s.lines.append("%d %.9g" % (k, a[k]))

    def write(s, path):
        s.lines.append("end")
        with open(path, "w") as f:
            f.write("\n".join(s.lines) + "\n")
        print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


# ---------------------------------------------------------------- deterministic weights
def effective_fan_in(m):
    """Inputs that reach one output: used to scale the weights so activations stay near unit size."""
    if isinstance(m, nn.Conv2d):
        return m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    if isinstance(m, nn.ConvTranspose2d):
        k = m.kernel_size[0] * m.kernel_size[1] / (m.stride[0] * m.stride[1])
        return max(1.0, m.in_channels // m.groups * k)
    if isinstance(m, nn.Linear):
        return m.in_features
    return None


def fill_module(ref, model, prefix):
    """Set every parameter and buffer of model (state_dict order) by the formula."""
    mods = dict(model.named_modules())
    sd = model.state_dict(keep_vars=True)
    for key, t in sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        mname, _, leaf = key.rpartition(".")
        m = mods[mname]
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            off, sc = {"weight": (1.0, 0.2), "bias": (0.0, 0.1), "running_mean": (0.0, 0.1),
                       "running_var": (1.0, 0.3)}[leaf]
        elif leaf == "bias":
            off, sc = 0.0, 0.1
        else:
            gain = 1.0 if isinstance(m, nn.Linear) else 2.0 ** 0.5
            off, sc = 0.0, gain * 3.0 ** 0.5 / effective_fan_in(m) ** 0.5  # U(-1,1) has variance 1/3
        ref.tensor(prefix + key, t.data, off, sc)


def trainable(model, prefix):
    return [(prefix + k, p) for k, p in model.named_parameters()]


def buffers(model, prefix):
    return [(prefix + k, b) for k, b in model.named_buffers() if not k.endswith("num_batches_tracked")]


# ---------------------------------------------------------------- cases
def case_meso(name, model, batch, out_dir):
    """Eval-mode forward; then training mode without dropout: forward, BCE against
    fixed targets, backward to every parameter and to the input."""
    ref = Ref(name, batch)
    model = model.double()
    fill_module(ref, model, "")
    x = torch.zeros(batch, 3, 256, 256, dtype=torch.float64)
    ref.tensor("x", x, 0.0, 1.0)
    y = [float((i + 1) % 2) for i in range(batch)]  # 1, 0, 1, ...
    ref.values("y", y)
    yt = torch.tensor(y, dtype=torch.float64).reshape(batch, 1)

    model.eval()
    with torch.no_grad():
        ref.check("eval.out", model(x))

    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # dropout off, batch norm on batch statistics
    x.requires_grad_(True)
    out = model(x)
    loss = nn.functional.binary_cross_entropy(out, yt)
    loss.backward()
    ref.check("train.out", out)
    ref.check("train.loss", loss.reshape(1))
    ref.check("train.grad:x", x.grad)
    for n, p in trainable(model, ""):
        ref.check("train.grad:" + n, p.grad)
    for n, b in buffers(model, ""):
        ref.check("train.value:" + n, b)
    ref.write(os.path.join(out_dir, name + ".txt"))


def case_gan(name, G, D, batch, nz, img, out_dir):
    """One DCGAN iteration in training mode, as the PyTorch example does it:
    fake = G(z); lossD = BCE(D(x), 1) + BCE(D(fake.detach()), 0) → D's gradients;
    lossG = BCE(D(fake), 1) → G's gradients. Batch norm uses batch statistics and
    updates its running statistics at each of the 1 + 3 passes."""
    ref = Ref(name, batch)
    G, D = G.double(), D.double()
    fill_module(ref, G, "G.")
    fill_module(ref, D, "D.")
    z = torch.zeros(batch, nz, 1, 1, dtype=torch.float64)
    x = torch.zeros(batch, *img, dtype=torch.float64)
    ref.tensor("z", z, 0.0, 1.0)
    ref.tensor("x", x, 0.0, 1.0)
    ones = torch.ones(batch, 1, dtype=torch.float64)
    zeros = torch.zeros(batch, 1, dtype=torch.float64)
    G.train()
    D.train()
    bce = nn.functional.binary_cross_entropy

    fake = G(z)
    p_real = D(x)
    p_fake = D(fake.detach())
    loss_d = bce(p_real, ones) + bce(p_fake, zeros)
    loss_d.backward()
    for n, p in trainable(D, "D."):
        ref.check("lossD.grad:" + n, p.grad)
    G.zero_grad()
    D.zero_grad()
    p_gen = D(fake)
    loss_g = bce(p_gen, ones)
    loss_g.backward()
    for n, p in trainable(G, "G."):
        ref.check("lossG.grad:" + n, p.grad)
    ref.check("fwd.fake", fake)
    ref.check("fwd.p_real", p_real)
    ref.check("fwd.p_fake", p_fake)
    ref.check("fwd.p_gen", p_gen)
    ref.check("fwd.lossD", loss_d.reshape(1))
    ref.check("fwd.lossG", loss_g.reshape(1))
    for n, b in buffers(G, "G.") + buffers(D, "D."):
        ref.check("fwd.value:" + n, b)
    ref.write(os.path.join(out_dir, name + ".txt"))


def count(model):
    return (sum(p.numel() for p in model.parameters()),
            sum(b.numel() for k, b in model.named_buffers() if not k.endswith("num_batches_tracked")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help="path of models.py (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "ref"), help="output folder (default: %(default)s)")
    args = ap.parse_args()
    mp = load_models(args.models)
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    lines = ["# parameter counts of the PyTorch reference models (trainable, buffers without num_batches_tracked)",
             "# written by tools/make_torch_refs.py"]
    for name, m in [("meso4", mp.Meso4()), ("mesoinception4", MesoInception4()), ("dcgan64_g", mp.G64()),
                    ("dcgan64_d", mp.D64()), ("dcgan28_g", mp.G28()), ("dcgan28_d", mp.D28())]:
        t, b = count(m)
        lines.append("%s %d %d" % (name, t, b))
        print("%-16s %9d trainable %6d buffer elements" % (name, t, b))
    with open(os.path.join(args.out, "param_counts.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    case_meso("meso4", mp.Meso4(), 3, args.out)
    case_meso("mesoinception4", MesoInception4(), 3, args.out)
    case_gan("dcgan64", mp.G64(), mp.D64(), 3, 100, (3, 64, 64), args.out)
    case_gan("dcgan28", mp.G28(), mp.D28(), 3, 100, (1, 28, 28), args.out)


if __name__ == "__main__":
    main()
