/* The machine's FMA peak, measured (doppel bench's %peak column). Not installed. */
#ifndef DP_KERNELS_PEAK_H
#define DP_KERNELS_PEAK_H

/* GFLOP/s of `threads` threads each running 24 independent FMA chains of the
 * selected vector width (AVX-512 or AVX2): over ~2 s of ~20 ms bursts, the
 * larger of the best burst on all threads and threads x the best on one (a
 * shared machine's slow moments do not count). 0 when no vector kernels are
 * selected (portable builds, other CPUs). *what: "AVX-512" or "AVX2". */
double dp_fma_peak_gflops(int threads, const char **what);

#endif
