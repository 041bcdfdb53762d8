/* GEMM extras: the entry points the convolutions use and the kernel choice
 * (dp_sgemm / dp_sgemm_st themselves are declared in core/internal.h).
 * Not installed. */
#ifndef DP_KERNELS_GEMM_H
#define DP_KERNELS_GEMM_H

#include <stdint.h>

/* dp_sgemm_st where the stored B's row r starts at B + boff[r] instead of
 * B + r*ldb (K rows of N when !trans_b, N rows of K when trans_b). Lets a
 * convolution read a padded image in place as its im2col matrix: row
 * (c, kh, kw) is the image shifted by a fixed offset. */
void dp_sgemm_st_boff(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, const int64_t *boff, float beta, float *C, int64_t ldc);

/* C[M,N] += A[M,K] B^T where B is stored as N rows of K (row n at
 * B + boff[n], or B + n*ldb when boff is NULL). Unpacked dot products, for
 * small M and long K (weight gradients). Single-threaded. */
void dp_sgemm_nt_dot_st(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                        const int64_t *boff, float *C, int64_t ldc);

/* Stride-1 convolution rows: for r in [0, rows), the M x N matrix at
 * C + r*ldcr (row stride ldc) = A (M x K, lda) x B_r + beta * C (+ bias[i] on
 * row i when bias != NULL), where row p of B_r starts at B + r*ldbr + boff[p].
 * A is packed once; B is read in place. Single-threaded; K >= 1. */
void dp_sgemm_rows_st(int64_t rows, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                      int64_t ldbr, const int64_t *boff, float beta, const float *bias, float *C, int64_t ldc,
                      int64_t ldcr);

/* B produced panel by panel instead of read from memory: fill dst[p*nr + j]
 * for p < kc, j < nr with op(B)[p0 + p][j0 + j] (zeros for j >= n). */
typedef void (*dp_bpanel_fn)(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst);

/* C[M,N] = A[M,K] (row-major, lda) x B + beta * C, B given by `fill` (an
 * im2col written straight into the packed layout). Single-threaded. */
void dp_sgemm_bpanel_st(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, dp_bpanel_fn fill, void *arg,
                        float beta, float *C, int64_t ldc);

/* A (M x K, row-major, lda) packed once for many products with the same A
 * (weights used for every chunk of a batch): dp_sgemm_packed_a_floats floats
 * at dst, in the micro-kernel's layout. The packing belongs to the kernel
 * chosen when it was made: dp_gemm_set_kernel in between makes it garbage. */
int64_t dp_sgemm_packed_a_floats(int64_t M, int64_t K);
void dp_sgemm_pack_a(int64_t M, int64_t K, const float *A, int64_t lda, float *dst);
/* The same layout made one row panel at a time, for matrices computed on the
 * way (the panel stays in cache between the two): for panels q0..q1 - 1 of
 * the dp_sgemm_pack_a_panels(M) (disjoint ranges may go to different
 * threads), fn writes rows i0..i0+m-1 (m <= DP_GEMM_MR_MAX) of nmat M x K
 * matrices, matrix j's at tmp + j m K (row-major, K floats a row), and they
 * are packed at dst + j dst_stride. */
#define DP_GEMM_MR_MAX 14
typedef void (*dp_arows_fn)(void *arg, int64_t i0, int m, float *tmp);
int64_t dp_sgemm_pack_a_panels(int64_t M);
void dp_sgemm_pack_a_rows(int64_t M, int64_t K, int64_t q0, int64_t q1, int nmat, dp_arows_fn fn, void *arg,
                          float *tmp, float *dst, int64_t dst_stride);
/* Both sides packed by the caller, one K slice at a time: K <= dp_sgemm_kc();
 * A the slice of rows p0.. of a matrix packed by dp_sgemm_pack_a(_rows)
 * (dp_sgemm_packed_a_slice, p0 a multiple of dp_sgemm_kc()); B in panels of
 * dp_sgemm_nr() columns, panel q at bpacked + q K nr, row p of it at + p nr
 * (zeros past N). Single-threaded. */
int dp_sgemm_kc(void);
/* The largest K slice of any kernel: for sizing buffers that must fit whichever kernel runs. */
int dp_sgemm_kc_max(void);
int dp_sgemm_nr(void);
const float *dp_sgemm_packed_a_slice(const float *apacked, int64_t M, int64_t p0);
void dp_sgemm_packed_ab_st(int64_t M, int64_t N, int64_t K, const float *apacked, const float *bpacked, float beta,
                           float *C, int64_t ldc);

/* C = op(A) (M x K) x B (K x N, row-major, ldb), one block of rows at a
 * time: each block of m rows starting at row i0 is written to C rows [0, m)
 * (ldc) and passed to done(arg, i0, m) before the next block overwrites it;
 * C needs room for DP_GEMM_ROWBLOCK rows. B is packed once when K <= 256
 * and N <= 512. Single-threaded. */
#define DP_GEMM_ROWBLOCK 168
void dp_sgemm_rowblocks_st(int trans_a, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                           int64_t ldb, float *C, int64_t ldc, void (*done)(void *arg, int64_t i0, int64_t m), void *arg);
/* The same with B given by `fill` (as dp_sgemm_bpanel_st), packed once in the
 * one-panel case, panel by panel for every block otherwise. */
void dp_sgemm_rowblocks_fill_st(int trans_a, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, dp_bpanel_fn fill,
                                void *farg, float *C, int64_t ldc, void (*done)(void *arg, int64_t i0, int64_t m), void *arg);

/* Name of the micro-kernel dp_sgemm uses now: "portable", "avx2" or "avx512".
 * The default is the best one the CPU supports (cpuid feature flags), unless
 * the DP_KERNEL environment variable names another supported one. */
const char *dp_gemm_kernel_name(void);

/* Switch the micro-kernel (for tests and benchmarks). Returns 1 on success,
 * 0 if the name is unknown or this CPU cannot run it (nothing changes then).
 * Do not call while a GEMM is running on another thread. */
int dp_gemm_set_kernel(const char *name);

/* The instruction-set level of the chosen kernel: 0 portable, 1 AVX2+FMA,
 * 2 AVX-512 (the vector helpers in vec.h follow the same choice). */
int dp_kernel_level(void);

#endif
