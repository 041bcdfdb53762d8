# PyTorch peer for doppel bench's single-layer workloads (meso_conv1_fwd, dcgan64_g_deconv2_bwd, ...).
# usage: /usr/bin/python3 torch_layer.py NAME KIND PASS N CI H W CO K STRIDE PAD BIAS FIRST TRAIN SLOPE THREADS
#   KIND: conv deconv bn relu lrelu maxpool;  PASS: fwd | bwd
# doppel bench passes the shapes from its layer table (src/cli/cmd_bench.c), so both sides time the same layer.
#   fwd: forward under torch.no_grad(); batch norm in training mode (batch statistics) when TRAIN=1, else eval.
#   bwd: y = layer(x); l = y.sum() once, then l.backward(retain_graph=True) is timed: dy = 1, the weight and
#        bias gradients, and the input gradient unless FIRST=1 (the network's first layer).
# Timing: 2 warm-up calls, then at least 3 timed calls and at least 1 s (at most 200); the median is printed:
#   NAME th=T <rate> img/s (<ms> ms/iter, <n> iterations)
# Run it in the fair configuration (doppel bench sets it): CL=1 (channels-last module and input),
#   GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184 OPENBLAS_CORETYPE=SkylakeX
import os, sys, time, statistics, torch, torch.nn as nn

name, kind, pas = sys.argv[1:4]
n, ci, h, w, co, k, stride, pad, bias, first, train = (int(v) for v in sys.argv[4:15])
slope, th = float(sys.argv[15]), int(sys.argv[16])
torch.set_num_threads(th); torch.manual_seed(0)
CL = os.environ.get('CL') == '1'
cl = (lambda t: t.to(memory_format=torch.channels_last)) if CL else (lambda t: t)

if kind == 'conv': m = nn.Conv2d(ci, co, k, stride, pad, bias=bool(bias))
elif kind == 'deconv': m = nn.ConvTranspose2d(ci, co, k, stride, pad, bias=bool(bias))
elif kind == 'bn': m = nn.BatchNorm2d(ci)
elif kind == 'relu': m = nn.ReLU()
elif kind == 'lrelu': m = nn.LeakyReLU(slope)
elif kind == 'maxpool': m = nn.MaxPool2d(k)
else: sys.exit(f'torch_layer.py: unknown layer kind {kind}')
m = cl(m); m.train(pas == 'bwd' or bool(train))
x = cl(torch.randn(n, ci, h, w))

if pas == 'fwd':
    def step():
        with torch.no_grad(): m(x)
else:
    if not first: x.requires_grad_(True)
    loss = m(x).sum()
    def step(): loss.backward(retain_graph=True)

for _ in range(2): step()
ts, t_start = [], time.perf_counter()
while len(ts) < 200 and (len(ts) < 3 or time.perf_counter() - t_start < 1.0):
    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
t = statistics.median(ts)
print(f'{name} th={th} {n / t:.6g} img/s ({t * 1e3:.4f} ms/iter, {len(ts)} iterations)')
