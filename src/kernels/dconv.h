/* Direct convolution with the output channels in the vector lanes, for
 * stride-2 layers on small images with many channels (DCGAN's 4x4 stride-2
 * convolutions and the input gradients of its transposed convolutions).
 *
 * im2col + GEMM spends a fifth of such a layer gathering the im2col panels
 * (7- or 8-wide output rows: no contiguous run to copy) and packing A. Here
 * there is neither: a tile of output positions x 32 output channels is
 * accumulated in registers; each step of the reduction loads 32 packed
 * weights (two vectors) and broadcasts one input value per position straight
 * from a zero-padded copy of the image. The same arithmetic as the GEMM's
 * micro-kernel (one broadcast per row, two FMAs per broadcast), without the
 * gathers. AVX-512 only; the caller keeps im2col + GEMM elsewhere. Not
 * installed. */
#ifndef DP_KERNELS_DCONV_H
#define DP_KERNELS_DCONV_H

#include <stdint.h>

/* 1 when the AVX-512 kernels are the selected level (dp_kernel_level() == 2). */
int dp_dconv_available(void);

/* w[O][K] (K = C*KH*KW, O a multiple of 32) as wp[O/32][K][32]. */
void dp_dconv_pack_w(const float *w, int64_t O, int64_t K, float *wp);

/* The zero-padded copy the kernel reads: xp[c][i][j] = x[c][i - pt][j - pl]
 * inside the H x W image, 0 outside, for i < Hp, j < Wp (pt, pl >= 0). */
void dp_dconv_pad(const float *x, int64_t C, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t Hp, int64_t Wp, float *xp);

/* One image, output channel blocks [ob0, ob1) of 32:
 *   y[o][oh][ow] = (acc ? y[o][oh][ow] : 0) + (bias ? bias[o] : 0)
 *                  + sum_{c,kh,kw} w[o][c][kh][kw] * xp[c][2*oh + kh][2*ow + kw]
 * for oh < OH, ow < OW (OW <= 16... any OW works, rows are cut into tiles),
 * xp a padded image [C][Hp][Wp] with Hp >= 2*(OH-1) + KH, Wp >= 2*(OW-1) + KW,
 * wp from dp_dconv_pack_w. y is [O][OH][OW]. */
void dp_dconv_s2_image(const float *xp, int64_t C, int64_t Hp, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                       int64_t OH, int64_t OW, int64_t ob0, int64_t ob1, const float *bias, int acc, float *y);

#endif
