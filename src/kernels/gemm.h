/* SGEMM kernel selection (the GEMM itself is declared in core/internal.h).
 * Not installed. */
#ifndef DP_KERNELS_GEMM_H
#define DP_KERNELS_GEMM_H

/* Name of the micro-kernel dp_sgemm uses now: "portable", "avx2" or "avx512".
 * The default is the best one the CPU supports (cpuid feature flags), unless
 * the DP_KERNEL environment variable names another supported one. */
const char *dp_gemm_kernel_name(void);

/* Switch the micro-kernel (for tests and benchmarks). Returns 1 on success,
 * 0 if the name is unknown or this CPU cannot run it (nothing changes then).
 * Do not call while a GEMM is running on another thread. */
int dp_gemm_set_kernel(const char *name);

#endif
