#!/usr/bin/python3
"""Compares doppel's WGAN-GP penalty gradient (finite differences through a
pattern-frozen D, src/gan/train.c) with PyTorch's double backward in float64.

    /usr/bin/python3 tools/gan_gp_vs_torch.py OUTDIR      # after tools/gan_gp_dump.c wrote OUTDIR

Needs PyTorch (Debian python3-torch) and numpy; reads ../shared/peers/models.py
(or --models PATH). Prints, per finite-difference step, the relative error
|g_doppel - g_torch| / |g_torch| and the cosine between them.
"""
import argparse, json, os, struct, sys
import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument('dir')
ap.add_argument('--models', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'peers'))
a = ap.parse_args()
sys.path.insert(0, a.models)
from models import D28, D64  # noqa: E402

torch.set_default_dtype(torch.float64)
b = open(os.path.join(a.dir, 'd.safetensors'), 'rb').read()
n, = struct.unpack('<Q', b[:8])
h = json.loads(b[8:8 + n])
meta = h.pop('__metadata__')
data = b[8 + n:]


def tensor(k):
    v = h[k]
    raw = data[v['data_offsets'][0]:v['data_offsets'][1]]
    return torch.from_numpy(np.frombuffer(raw, dtype=np.float32).astype(np.float64).reshape(v['shape']))


big = meta['doppel.gan.arch'] == 'dcgan64'
lam = float(meta['doppel.gan.gp_weight'])
D = (D64() if big else D28()).double().train()
D.load_state_dict({k[2:]: tensor(k) for k in h if k.startswith('D.')}, strict=False)
Dl = torch.nn.Sequential(*list(D.children())[:-2])  # without Sigmoid and Flatten: the raw score
B = 8
shape = (B, 3, 64, 64) if big else (B, 1, 28, 28)
xh = torch.from_numpy(np.fromfile(os.path.join(a.dir, 'xhat.f32'), dtype=np.float32).astype(np.float64).reshape(shape))
xh.requires_grad_(True)
g, = torch.autograd.grad(Dl(xh).sum(), xh, create_graph=True)
P = lam / B * ((g.reshape(B, -1).norm(dim=1) - 1) ** 2).sum()
ref = torch.cat([x.reshape(-1) for x in torch.autograd.grad(P, list(Dl.parameters()))]).numpy()
print('%s: PyTorch float64 double backward: P %.6f, |grad P| %.4f' % (meta['doppel.gan.arch'], P.item(), np.linalg.norm(ref)))
deltas = [float(x) for x in open(os.path.join(a.dir, 'deltas.txt'))]
fd = np.fromfile(os.path.join(a.dir, 'grads.f32'), dtype=np.float32).astype(np.float64).reshape(len(deltas), -1)
for d, row in zip(deltas, fd):
    err = np.linalg.norm(row - ref) / np.linalg.norm(ref)
    cos = row @ ref / np.linalg.norm(row) / np.linalg.norm(ref)
    print('  step %-7g relative error %.1e, cosine %.6f' % (d, err, cos))
