#!/usr/bin/python3
"""A PyTorch DCGAN generator (G.pt from tools/gan_torch_train.py, a state_dict of
../shared/peers/models.py's G28/G64) as a doppel generator checkpoint, so that
`doppel gan eval --model` / `doppel gan sample --model` run it: the same noise, the same
float pipeline and metrics as doppel's own generators (no 8-bit PNG round trip).

  /usr/bin/python3 tools/gan_torch_to_doppel.py --arch dcgan28 runs/t28-s1/G.pt runs/t28-s1/G.safetensors

Tensor names get doppel's "G." prefix (docs/gan.md, *Checkpoints*); num_batches_tracked
is dropped (doppel keeps none). Written as safetensors (F32, little-endian).
"""
import argparse, json, struct

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["dcgan28", "dcgan64"], required=True)
    ap.add_argument("--step", type=int, default=0, help="the training step, for the metadata")
    ap.add_argument("src")
    ap.add_argument("dst")
    a = ap.parse_args()
    sd = torch.load(a.src, map_location="cpu")
    header, blobs, off = {}, [], 0
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        b = v.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header["G." + k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"doppel.arch": "gan-" + a.arch, "doppel.task": "gan", "doppel.gan.arch": a.arch,
                              "doppel.gan.nz": "100", "doppel.gan.step": str(a.step),
                              "doppel.gan.source": "PyTorch " + torch.__version__ + " state_dict " + a.src}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(a.dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
