/* The machine's FMA peak, measured (doppel bench's %peak column). Not installed. */
#ifndef DP_KERNELS_PEAK_H
#define DP_KERNELS_PEAK_H

/* GFLOP/s of `threads` threads each running 24 independent FMA chains of the
 * selected vector width (AVX-512 or AVX2), the best of ~20 ms bursts over
 * ~0.6 s (a shared machine's slow moments do not count). 0 when no vector kernels
 * are selected (portable builds, other CPUs). *what: "AVX-512" or "AVX2". */
double dp_fma_peak_gflops(int threads, const char **what);

#endif
