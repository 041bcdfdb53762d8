/* Small vector loops for the ops' hot paths (bias adds, channel sums, the
 * depthwise and col2im inner loops). The library is built for baseline
 * x86-64, so loops in plain C get SSE2 at best; these use the same AVX-512 /
 * AVX2 / portable choice as the GEMM (dp_kernel_level). Not installed. */
#ifndef DP_KERNELS_VEC_H
#define DP_KERNELS_VEC_H

#include <stdint.h>

/* dst[i] = src[i] + b, or dst[i] += src[i] + b when acc. */
void dp_vec_store_bias(float *dst, const float *src, int64_t n, float b, int acc);
/* y[i] += a * x[i] */
void dp_vec_axpy(float *y, float a, const float *x, int64_t n);
/* sum of x[i] (in float, lanes summed at the end) */
float dp_vec_sum(const float *x, int64_t n);
/* sum of a[i] * b[i] */
float dp_vec_dot(const float *a, const float *b, int64_t n);
/* y[i] = v */
void dp_vec_fill(float *y, float v, int64_t n);
/* dst[i] = src[i*s] (im2col of a strided convolution); never reads past src[(n-1)*s] */
void dp_vec_gather_s(float *dst, const float *src, int64_t n, int64_t s);
/* dst[i*s] += src[i] (col2im); never touches past dst[(n-1)*s] */
void dp_vec_scatter_add_s(float *dst, const float *src, int64_t n, int64_t s);
/* dst[i] = idx[i] >= 0 ? src[idx[i]] : 0 (im2col of a small image through an index table) */
void dp_vec_gather_idx(float *dst, const float *src, const int32_t *idx, int64_t n);
/* src[idx[i]] += v[i] for idx[i] >= 0; the valid indices must be distinct (col2im) */
void dp_vec_scatter_add_idx(float *dst, const float *v, const int32_t *idx, int64_t n);
/* The col2im of a stride-2 convolution with a 4-wide kernel and padding 1
 * (DCGAN's), `rows` output rows of n positions at a time: output row i, whose
 * four tap rows (kw = 0..3) are ck = c + i*n + k*ld, goes into image row
 * ih0 + i*ihs of plane (rows w = 2n values apart; skipped where outside
 * [0, h)) as row[2j] += c1[j] + c3[j-1], row[2j+1] += c0[j+1] + c2[j]
 * (c3[-1] = c0[n] = 0): contiguous loads and stores instead of a gather and a
 * scatter per tap, and one call per channel and kernel row (7-wide rows: the
 * calls cost). */
void dp_vec_col2im_s2k4_rows(float *plane, int64_t w, int64_t h, int64_t ih0, int64_t ihs, const float *c, int64_t ld,
                             int64_t n, int64_t rows);
/* Its adjoint, the im2col: output positions [j0, j0+n) of a row whose image
 * row `row` holds w values get the four taps ck[j] = row[2(j0+j) + k - 1],
 * k = 0..3, and 0 where that index is outside [0, w). Two loads and four
 * permutes per 16 positions; used for rows of 32 or more (small images take
 * the index-table gathers, measured faster on 7- and 8-wide rows). */
void dp_vec_im2col_s2k4(float *c0, float *c1, float *c2, float *c3, const float *row, int64_t w, int64_t j0, int64_t n);

/* An im2col panel through an index table: for p < kc, row r = r0 + p reads
 * channel c = r / kk at src + c*cs and tap t = r % kk; dst[p*nr + j] =
 * idx[t*ldi + j] >= 0 ? that channel[idx[t*ldi + j]] : 0 for j < n, and 0
 * for n <= j < nr. */
void dp_vec_gather_panel(float *dst, int nr, int kc, const float *src, int64_t cs, int64_t r0, int64_t kk,
                         const int32_t *idx, int64_t ldi, int n);

#endif
