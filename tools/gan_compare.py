#!/usr/bin/python3
"""Summarise doppel-vs-PyTorch GAN runs (docs/gan.md, "doppel vs PyTorch").

  tools/gan_compare.py --title "DCGAN-28, Fashion-MNIST" --doppel runs/d28-s1 runs/d28-s2 runs/d28-s3 \
      --torch runs/t28-s1 runs/t28-s2 runs/t28-s3 --html runs/compare28.html

Each run folder holds metrics.csv (step,time,...: the training wall time is the last row's
time) and eval.json: `doppel gan eval --model RUN --json` for doppel, and for PyTorch the
same on its generator converted by tools/gan_torch_to_doppel.py (`doppel gan eval --model
RUN/G.safetensors --json > RUN/eval.json`: the same noise and float pipeline). Optional:
RUN/eval-png.json (`doppel gan eval --images RUN/png --json`: the generator's 8-bit PNG
samples), RUN/cpu_s.txt (user + system CPU seconds of the training process, /usr/bin/time). Prints a Markdown table (one row a
run) and the verdict the issue asks for: doppel's FID inside the range of PyTorch's, or
within 10 % of PyTorch's median. --html also writes a self-contained page with the last
grid of every run (samples/step_*.png, inlined) and the same table.
"""
import argparse, base64, csv, glob, html, json, os, statistics


def run_info(d):
    ev = json.load(open(os.path.join(d, "eval.json")))
    rows = list(csv.DictReader(open(os.path.join(d, "metrics.csv"))))
    grids = sorted(glob.glob(os.path.join(d, "samples", "step_*.png")))
    png = os.path.join(d, "eval-png.json")
    fid_png = json.load(open(png))["fid_doppelcnn"] if os.path.exists(png) else None
    cpu = os.path.join(d, "cpu_s.txt")
    cpu_s = float(open(cpu).read()) if os.path.exists(cpu) else None
    return dict(dir=d, steps=int(rows[-1]["step"]), wall=float(rows[-1]["time"]), fid=ev["fid_doppelcnn"],
                fid_png=fid_png, cpu=cpu_s,
                fid_name=ev.get("fid_name") or "FID", spec=ev["spectral_distance"], prec=ev["precision"],
                rec=ev["recall"], n=ev["n"], grid=grids[-1] if grids else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", required=True)
    ap.add_argument("--doppel", nargs="+", required=True)
    ap.add_argument("--torch", nargs="+", required=True)
    ap.add_argument("--html")
    a = ap.parse_args()
    runs = [("doppel", run_info(d)) for d in a.doppel] + [("PyTorch", run_info(d)) for d in a.torch]
    name = runs[0][1]["fid_name"]
    lines = [f"| framework | run | steps | {name} | spectral distance | precision | recall | {name} via PNG files "
             "| training wall | process CPU |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for fw, r in runs:
        png = f"{r['fid_png']:.1f}" if r["fid_png"] is not None else "—"
        cpu = f"{r['cpu']:.0f} s" if r["cpu"] is not None else "—"
        lines.append(f"| {fw} | `{os.path.basename(r['dir'].rstrip('/'))}` | {r['steps']} | {r['fid']:.1f} | "
                     f"{r['spec']:.4f} | {r['prec']:.3f} | {r['rec']:.3f} | {png} | {r['wall']:.0f} s | {cpu} |")
    tf = [r["fid"] for fw, r in runs if fw == "PyTorch"]
    df = [r["fid"] for fw, r in runs if fw == "doppel"]
    med, lo, hi = statistics.median(tf), min(tf), max(tf)
    tw = statistics.median(r["wall"] for fw, r in runs if fw == "PyTorch")
    dw = statistics.median(r["wall"] for fw, r in runs if fw == "doppel")
    verdict = []
    for f in df:
        inside = lo <= f <= hi
        near = abs(f - med) <= 0.1 * med
        verdict.append(f"{f:.1f}: " + ("inside PyTorch's range" if inside else "outside PyTorch's range") + ", " +
                       (f"within 10 % of its median ({100 * (f - med) / med:+.1f} %)" if near
                        else f"not within 10 % of its median ({100 * (f - med) / med:+.1f} %)"))
    summary = (f"PyTorch {name}: median {med:.1f}, range [{lo:.1f}, {hi:.1f}] (n = {runs[0][1]['n']}); doppel median "
               f"{statistics.median(df):.1f}. Per doppel seed: " + "; ".join(verdict) +
               f". Median training wall time: doppel {dw:.0f} s, PyTorch {tw:.0f} s.")
    print(f"### {a.title}\n")
    print("\n".join(lines))
    print("\n" + summary)
    if a.html:
        with open(a.html, "w") as f:
            f.write(f"<!doctype html><meta charset=utf-8><title>{html.escape(a.title)}</title>"
                    "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px;"
                    "border-bottom:1px solid #ddd}img{image-rendering:pixelated;width:256px}</style>")
            f.write(f"<h1>{html.escape(a.title)}: doppel vs PyTorch</h1><p>{html.escape(summary)}</p><table>")
            for i, l in enumerate(lines):
                if i == 1:
                    continue
                cells = [c.strip().strip("`") for c in l.strip("|").split("|")]
                tag = "th" if i == 0 else "td"
                f.write("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
            f.write("</table><h2>Last grid of each run (G in eval mode)</h2><div>")
            for fw, r in runs:
                if not r["grid"]:
                    continue
                b64 = base64.b64encode(open(r["grid"], "rb").read()).decode()
                f.write(f"<figure style='display:inline-block'><img src='data:image/png;base64,{b64}'>"
                        f"<figcaption>{fw} {html.escape(os.path.basename(r['dir'].rstrip('/')))}, step {r['steps']}"
                        f"</figcaption></figure>")
            f.write("</div><p>Loss curves and grids over time: each run's report.html.</p>")


if __name__ == "__main__":
    main()
