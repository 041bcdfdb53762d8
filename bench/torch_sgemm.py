# PyTorch peer for doppel bench's sgemm1024: C = A B with torch.mm, float32, N x N x N.
# usage: /usr/bin/python3 torch_sgemm.py N THREADS   (doppel bench runs it with OPENBLAS_CORETYPE=SkylakeX)
# Timing as doppel's worker: 2 warm-up calls, then at least 3 timed calls and at least 1 s (at most 200);
# prints: sgemmN th=T <GFLOP/s> GFLOP/s (<ms> ms/iter, <n> iterations)
import sys, time, statistics, torch
n, th = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(th); torch.manual_seed(0)
a, b = torch.randn(n, n), torch.randn(n, n)
c = torch.empty(n, n)
for _ in range(2): torch.mm(a, b, out=c)
ts, t_start = [], time.perf_counter()
while len(ts) < 200 and (len(ts) < 3 or time.perf_counter() - t_start < 1.0):
    t0 = time.perf_counter(); torch.mm(a, b, out=c); ts.append(time.perf_counter() - t0)
t = statistics.median(ts)
print(f'sgemm{n} th={th} {2 * n ** 3 / t * 1e-9:.6g} GFLOP/s ({t * 1e3:.4f} ms/iter, {len(ts)} iterations)')
