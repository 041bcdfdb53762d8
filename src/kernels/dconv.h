/* Direct convolution with the output channels in the vector lanes, for
 * stride-2 layers on small images with many channels (DCGAN's 4x4 stride-2
 * convolutions and the input gradients of its transposed convolutions), and
 * the weight gradient of the same geometries.
 *
 * im2col + GEMM spends a fifth of such a layer gathering the im2col panels
 * (7- or 8-wide output rows: no contiguous run to copy) and packing A. Here
 * there is neither: a tile of output positions x B output channels (B = 32:
 * up to 14 positions; B = 64: up to 7 of one output row) is accumulated in
 * registers; each step of the reduction loads B packed weights (B/16
 * vectors) and broadcasts one input value per position straight from a
 * zero-padded copy of the image. The arithmetic of the GEMM's micro-kernel
 * without the gathers; the 64-wide tile also needs 11 loads per 28 FMAs
 * instead of 16. With AVX2 (no AVX-512) the blocks are 16 channels and a
 * tile is up to 6 consecutive output positions (it may wrap to the next row):
 * 8 loads per 12 FMAs, as the GEMM's 6 x 16 micro-kernel, without the
 * gathers. Portable builds keep im2col + GEMM (the C versions here are the
 * definitions). Not installed. */
#ifndef DP_KERNELS_DCONV_H
#define DP_KERNELS_DCONV_H

#include <stdint.h>

/* The AVX-512 output-channel block for O output channels (a multiple of 32)
 * and outputs OW wide: 64 (tiles of one row x 64 channels) or 32. The same on
 * every CPU: callers size their geometry rules with it. */
int dp_dconv_block(int64_t O, int64_t OW);

/* The block the selected kernels use: dp_dconv_block's with AVX-512, else 16. */
int dp_dconv_run_block(int64_t O, int64_t OW);

/* The weight gradient's block (dp_dconv_s2_wgrad_image): 64 with AVX-512, else 16. */
int dp_dconv_wgrad_block(void);

/* w[O][K] (K = C*KH*KW) as wp[O/B][K][B], B = dp_dconv_run_block's. */
void dp_dconv_pack_w(const float *w, int64_t O, int64_t K, int B, float *wp);

/* The zero-padded copy the kernel reads: xp[c][i][j] = x[c][i - pt][j - pl]
 * inside the H x W image, 0 outside, for i < Hp, j < Wp (pt, pl >= 0).
 * borders_zero: xp already holds such a copy of another image of the same
 * geometry, so only the image's own values are written. */
void dp_dconv_pad(const float *x, int64_t C, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t Hp, int64_t Wp,
                  int borders_zero, float *xp);

/* One image, output channel blocks [ob0, ob1) of B:
 *   y[o][oh][ow] = (acc ? y[o][oh][ow] : 0) + (bias ? bias[o] : 0)
 *                  + sum_{c,kh,kw} w[o][c][kh][kw] * xp[c][2*oh + kh][2*ow + kw]
 * for oh < OH, ow < OW (any OW: rows are cut into tiles of at most 14 or 6),
 * xp a padded image [C][Hp][Wp] with Hp >= 2*(OH-1) + KH, Wp >= 2*(OW-1) + KW,
 * wp from dp_dconv_pack_w. y is [O][OH][OW]. */
void dp_dconv_s2_image(const float *xp, int64_t C, int64_t Hp, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                       int64_t OH, int64_t OW, int B, int64_t ob0, int64_t ob1, const float *bias, int acc, float *y);

/* The weight gradient of the same convolution, one image, B-channel blocks
 * (B = dp_dconv_wgrad_block(), O a multiple of B): dwp[ob][k][j] += sum over
 * positions p = (oh, ow) of gyT[p][ob*B + j] * xp[c][2*oh + kh][2*ow + kw],
 * k = (c*KH + kh)*KW + kw; gyT is the output gradient transposed, [OH*OW][O].
 * AVX-512 tiles of 7 k x 64 channels: per position 4 loads of gyT and 7
 * broadcasts for 28 FMAs (AVX2: 6 k x 16, 2 loads and 6 broadcasts for 12),
 * no im2col. dwp as dp_dconv_pack_w's layout with that B. */
void dp_dconv_s2_wgrad_image(const float *xp, int64_t C, int64_t Hp, int64_t Wp, int64_t KH, int64_t KW, int64_t OH,
                             int64_t OW, const float *gyT, int64_t O, float *dwp);

/* Stride 1 with few output channels (Meso-4's 8 and 16), pooled: for a band of
 * `rows` output rows (even) and OW (even) outputs per row of a convolution
 * with KH x KW taps, stride 1, no dilation, read from `band`, C channels of
 * padded rows (channel stride cs, row stride Wp >= OW + KW - 1),
 *   y[o*ldc + r/2*ldr + ow/2] = max over the 2x2 window of
 *       ((relu(conv + bias[o]) - rba[3o]) * rba[3o+1] + rba[3o+2])
 * (relu -> batch norm in eval -> 2x2 max-pool, as the pool's fused map). O a
 * multiple of 8; wp from dp_dconv_s1_pack_w. With AVX2: tiles of 2 rows x 6
 * positions x 8 channels in registers, two positions per vector, the
 * epilogue in registers too, so neither an im2col nor the conv's output is
 * written. The conv sums run over k = (c, kh, kw) from zero, then add the bias:
 * the GEMM's bits where C*KH*KW <= 256 (one KC slice), rounding apart beyond. */
void dp_dconv_s1_pool_band(const float *band, int64_t C, int64_t cs, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                           int64_t rows, int64_t OW, int64_t O, const float *bias, const float *rba, float *y, int64_t ldc,
                           int64_t ldr);

/* The same convolution without the pool: y[o*ldc + r*ldr + ow] = conv + bias[o]
 * (acc: y += conv + bias[o]) for r < rows, ow < OW, both even. Same tiles,
 * same sums in the same order. */
void dp_dconv_s1_band(const float *band, int64_t C, int64_t cs, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                      int64_t rows, int64_t OW, int64_t O, const float *bias, float *y, int64_t ldc, int64_t ldr, int acc);

/* w[O][K] as both read it: per 8-channel block and k, the channels
 * 0 0 1 1 2 2 3 3 then 4 4 5 5 6 6 7 7 (16 floats). */
void dp_dconv_s1_pack_w(const float *w, int64_t O, int64_t K, float *wp);

#endif
