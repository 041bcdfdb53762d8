#!/usr/bin/python3
"""The PyTorch side of doppel's GAN comparison (docs/gan.md, "doppel vs PyTorch").

Trains ../shared/peers/models.py's DCGAN-28 (Fashion-MNIST) or DCGAN-64 (a folder
of images, e.g. ../shared/data/faces/real-celeba) with the same recipe as
`doppel gan train --loss ns`: the PyTorch DCGAN example's step order (D on real
and on G(z).detach(), Adam step of D; G through the updated D, Adam step of G),
BCE on D's sigmoid, DCGAN initialisation, Adam lr 2e-4, betas (0.5, 0.999),
pixels in [-1, 1], a fresh shuffle every pass, the last partial batch dropped,
with --flip each real image flipped horizontally with probability 1/2 (doppel's --flip). Then it writes N samples of G in eval mode as PNG files (8-bit), which
`doppel gan eval --images DIR` measures with the same metrics as doppel's own
generators.

  OPENBLAS_NUM_THREADS=1 nice -n 10 /usr/bin/python3 tools/gan_torch_train.py \
      --arch dcgan28 --data fashion-mnist --steps 1000 --batch 64 --seed 1 --out runs/torch28-s1

Writes OUT/metrics.csv (step,time,loss_d,loss_g,d_real,d_fake: `doppel gan report
--run OUT` draws it), OUT/samples/step_NNNNNN.png (8x8 grids of a fixed noise batch,
G in eval mode, every --sample-every steps and at the end, as doppel's runs),
OUT/png/sample_NNNNNN.png (--n, default 1000: `doppel gan eval --images OUT/png`),
OUT/G.pt (and OUT/G_stepNNNNNN.pt every --ckpt-every steps) and OUT/run.json (configuration, training wall time in seconds without the
grids, steps per second).
"""
import argparse, csv, gzip, json, os, struct, sys, time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "peers"))


def load_fmnist(d):
    p = os.path.join(d, "train-images-idx3-ubyte")
    f = gzip.open(p + ".gz", "rb") if os.path.exists(p + ".gz") else open(p, "rb")
    with f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise SystemExit(f"{p}: not an IDX image file")
        x = np.frombuffer(f.read(n * h * w), np.uint8).reshape(n, 1, h, w)
    return torch.from_numpy(x.copy())


def load_folder(d, side):
    """Every image under d (sorted by path), scaled to cover side x side, centre-cropped."""
    files = []
    for root, dirs, names in os.walk(d):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        files += [os.path.join(root, n) for n in names
                  if not n.startswith(".") and n.lower().rsplit(".", 1)[-1] in ("png", "jpg", "jpeg", "webp")]
    files.sort()
    out = np.empty((len(files), 3, side, side), np.uint8)
    for i, p in enumerate(files):
        im = Image.open(p).convert("RGB")
        w, h = im.size
        s = max(side / w, side / h)
        rw, rh = max(side, round(w * s)), max(side, round(h * s))
        im = im.resize((rw, rh), Image.BILINEAR)  # PIL's bilinear widens its support when shrinking
        l, t = (rw - side) // 2, (rh - side) // 2
        out[i] = np.asarray(im.crop((l, t, l + side, t + side))).transpose(2, 0, 1)
    return torch.from_numpy(out)


def weights_init(m):  # the PyTorch DCGAN example's
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def save_png(a, path):  # a: [C,H,W] float in [-1,1]
    u8 = ((a.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).numpy()
    Image.fromarray(u8[0] if u8.shape[0] == 1 else u8.transpose(1, 2, 0)).save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["dcgan28", "dcgan64"], required=True)
    ap.add_argument("--data", required=True, help="fashion-mnist or a folder of images")
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=1000, help="samples written for doppel gan eval")
    ap.add_argument("--sample-every", type=int, default=0, help="a grid every N steps (0: at the end only)")
    ap.add_argument("--ckpt-every", type=int, default=0, help="also write G every N steps as OUT/G_stepNNNNNN.pt")
    ap.add_argument("--flip", action="store_true", help="flip each real image horizontally with probability 1/2")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    import models  # ../shared/peers/models.py
    if a.arch == "dcgan28":
        G, D, side = models.G28(), models.D28(), 28
    else:
        G, D, side = models.G64(), models.D64(), 64
    G.apply(weights_init)
    D.apply(weights_init)
    data = load_fmnist(a.data_dir) if a.data == "fashion-mnist" else load_folder(a.data, side)
    if data.shape[2] != side:
        raise SystemExit(f"data is {data.shape[2]}x{data.shape[3]}, {a.arch} needs {side}x{side}")
    os.makedirs(os.path.join(a.out, "samples"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "png"), exist_ok=True)
    crit = nn.BCELoss()
    oD = torch.optim.Adam(D.parameters(), lr=a.lr, betas=(0.5, 0.999))
    oG = torch.optim.Adam(G.parameters(), lr=a.lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(a.seed)
    n, B = data.shape[0], a.batch
    per_pass = n // B
    order, pos = None, per_pass
    ones, zeros = torch.ones(B), torch.zeros(B)
    log = open(os.path.join(a.out, "metrics.csv"), "w", newline="")
    w = csv.writer(log)
    w.writerow(["step", "time", "loss_d", "loss_g", "d_real", "d_fake"])
    fixed = torch.randn(64, 100, 1, 1, generator=torch.Generator().manual_seed(2000 + a.seed))
    t_grids = 0.0

    def write_grid(step):
        G.eval()
        with torch.no_grad():
            g = G(fixed)
        G.train()
        c, h, wd = g.shape[1:]
        grid = torch.ones(c, 8 * (h + 2) + 2, 8 * (wd + 2) + 2)
        for i in range(64):
            r, q = divmod(i, 8)
            grid[:, 2 + r * (h + 2):2 + r * (h + 2) + h, 2 + q * (wd + 2):2 + q * (wd + 2) + wd] = g[i]
        save_png(grid, os.path.join(a.out, "samples", f"step_{step:06d}.png"))

    t0 = time.time()
    for step in range(1, a.steps + 1):
        if pos == per_pass:
            order, pos = torch.randperm(n, generator=gen), 0
        x = data[order[pos * B:(pos + 1) * B]].float() / 127.5 - 1
        pos += 1
        if a.flip:
            m = torch.rand(B, generator=gen) < 0.5
            x[m] = x[m].flip(-1)
        z = torch.randn(B, 100, 1, 1, generator=gen)
        fake = G(z)
        D.zero_grad()
        out_r = D(x).view(-1)
        out_f = D(fake.detach()).view(-1)
        ld = crit(out_r, ones) + crit(out_f, zeros)
        ld.backward()
        oD.step()
        G.zero_grad()
        lg = crit(D(fake).view(-1), ones)
        lg.backward()
        oG.step()
        w.writerow([step, f"{time.time() - t0:.3f}", f"{ld.item():.9g}", f"{lg.item():.9g}",
                    f"{out_r.mean().item():.6g}", f"{out_f.mean().item():.6g}"])
        if a.ckpt_every and step % a.ckpt_every == 0:
            torch.save(G.state_dict(), os.path.join(a.out, f"G_step{step:06d}.pt"))
        if (a.sample_every and step % a.sample_every == 0) or step == a.steps:
            tg = time.time()
            write_grid(step)
            t_grids += time.time() - tg
        if step % max(1, a.steps // 10) == 0 or step == a.steps:
            el = time.time() - t0
            print(f"step {step}/{a.steps}  {step * B / el:.1f} img/s  D {ld.item():.3f}  G {lg.item():.3f}  "
                  f"D(x) {out_r.mean().item():.3f}  D(G(z)) {out_f.mean().item():.3f}  {el:.0f} s", flush=True)
    train_s = time.time() - t0 - t_grids
    log.close()
    G.eval()
    zg = torch.Generator().manual_seed(1000 + a.seed)
    with torch.no_grad():
        imgs = torch.cat([G(torch.randn(min(250, a.n - i), 100, 1, 1, generator=zg)) for i in range(0, a.n, 250)])
    for i in range(a.n):
        save_png(imgs[i], os.path.join(a.out, "png", f"sample_{i:06d}.png"))
    torch.save(G.state_dict(), os.path.join(a.out, "G.pt"))
    info = dict(vars(a), train_wall_s=round(train_s, 1), steps_per_s=round(a.steps / train_s, 4),
                torch=torch.__version__, images=n)
    with open(os.path.join(a.out, "run.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"trained {a.steps} steps in {train_s:.1f} s; {a.n} samples in {a.out}/png", flush=True)


if __name__ == "__main__":
    main()
