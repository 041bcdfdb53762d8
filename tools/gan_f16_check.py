#!/usr/bin/python3
"""Checks doppel's float16 checkpoint storage against numpy, bit for bit, through the CLI
(`doppel model convert`), as used to ship models/doppel-faceenc.safetensors as F16.

  /usr/bin/python3 tools/gan_f16_check.py build/doppel [--random 4000000]

1. F32 -> F16: a safetensors file of float32 values -- every tie between two adjacent
   finite halfs (and the floats one ulp either side), the subnormal and overflow edges,
   and --random float32 bit patterns below 65520 in magnitude -- is converted with
   `doppel model convert --f16`; every stored half must equal numpy's astype(float16).
2. F16 -> F32: a file holding every finite half (63,488 bit patterns) is converted with
   `--f32`; every float must equal numpy's astype(float32).
3. Refusals: 65520 (rounds to Inf) and NaN are refused with exit status 1, no file left.
Prints the counts; exit status 0 only if everything matched.
"""
import json, os, struct, subprocess, sys, tempfile

import numpy as np


def write_st(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "doppel"}}, [], 0
    for name, a in tensors.items():
        b = a.tobytes()
        header[name] = {"dtype": {"<f4": "F32", "<f2": "F16"}[a.dtype.str], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h, d = json.loads(b[8:8 + n]), b[8 + n:]
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], {"F32": "<f4", "F16": "<f2"}[v["dtype"]])
            for k, v in h.items() if k != "__metadata__"}


def main():
    doppel = sys.argv[1]
    n_random = int(sys.argv[sys.argv.index("--random") + 1]) if "--random" in sys.argv else 4000000
    rng = np.random.default_rng(1)
    ok = True
    with tempfile.TemporaryDirectory() as d:
        halfs = np.arange(0x7c00, dtype=np.uint16).view(np.float16).astype(np.float64)  # +0 .. 65504
        mids = ((halfs[:-1] + halfs[1:]) / 2).astype(np.float32)  # exact ties (12 significant bits)
        ties = np.concatenate([mids, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(np.inf))])
        edges = np.array([0, 2.0 ** -25, 2.0 ** -24, 2.0 ** -14, 65504, 65519.99, 1e-45, 1e-40, 1.17e-38], np.float32)
        bits = rng.integers(0, 2 ** 32, n_random, dtype=np.uint64).astype(np.uint32).view(np.float32)
        bits = bits[np.isfinite(bits) & (np.abs(bits) < 65520)]
        x = np.concatenate([ties, -ties, edges, -edges, bits]).astype("<f4")
        write_st(f"{d}/a.safetensors", {"x": x})
        subprocess.run([doppel, "model", "convert", f"{d}/a.safetensors", "--f16", "--out", f"{d}/a16.safetensors"],
                       check=True, stdout=subprocess.DEVNULL)
        got = read_st(f"{d}/a16.safetensors")["x"].view(np.uint16)
        want = x.astype(np.float16).view(np.uint16)
        bad = int((got != want).sum())
        print(f"F32 -> F16: {x.size} values ({ties.size * 2} at or next to ties, {bits.size} random bit patterns): "
              f"{bad} differ from numpy")
        ok &= bad == 0
        h = np.arange(0x10000, dtype=np.uint16)
        h = h[(h & 0x7c00) != 0x7c00].view("<f2")  # every finite half
        write_st(f"{d}/b.safetensors", {"h": h})
        subprocess.run([doppel, "model", "convert", f"{d}/b.safetensors", "--f32", "--out", f"{d}/b32.safetensors"],
                       check=True, stdout=subprocess.DEVNULL)
        got = read_st(f"{d}/b32.safetensors")["h"].view(np.uint32)
        bad = int((got != h.astype(np.float32).view(np.uint32)).sum())
        print(f"F16 -> F32: {h.size} finite halfs: {bad} differ from numpy")
        ok &= bad == 0
        for v in (65520.0, float("nan")):
            write_st(f"{d}/c.safetensors", {"c": np.array([1.0, v], "<f4")})
            r = subprocess.run([doppel, "model", "convert", f"{d}/c.safetensors", "--f16", "--out", f"{d}/c16.safetensors"],
                               capture_output=True, text=True)
            left = os.path.exists(f"{d}/c16.safetensors")
            print(f"{v}: exit {r.returncode}, {r.stderr.strip()!r}, file left: {left}")
            ok &= r.returncode == 1 and not left
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
