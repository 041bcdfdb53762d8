/* Winograd F(2x2, 2x2) for 4x4 stride-2 padding-1 convolutions (DCGAN's).
 *
 * Such a convolution is the sum of four 2x2 stride-1 convolutions, one per
 * input phase (r, s):
 *   y[o,i,j] = sum_{r,s,c,a,b} w[o,c,2a+r,2b+s] x[c, 2(i+a)+r-1, 2(j+b)+s-1]
 * and a 2x2 kernel admits F(2,2) with 0/+-1 transforms
 *   B^T = [1 -1 0; 0 1 0; 0 -1 1]   G = [1 0; 1 1; 0 1]   A^T = [1 1 0; 0 1 1]
 * so each 2x2 output tile takes 9 products instead of 16: 9 GEMMs of
 * O x 4C (the transformed weights U, the phase sum in K = 4C) by 4C x tiles
 * (the transformed input V). On a 2-vCPU Zen 3 the GEMMs alone took 0.40-0.44
 * of the direct kernels' time on DCGAN-64's D layers (bench/winograd_proto.c,
 * docs/bench.md "session 11"). V is made one K slice at a time for all 9
 * products at once, straight into the GEMM's packed B panels, from a
 * zero-padded copy of the images whose rows are split into column classes (a
 * patch column of consecutive tiles is consecutive floats: plain vector
 * loads, for runs of 2, 4 or 8 tiles), and the output
 * transform reads each chunk of M while it is in cache. Sums differ from the
 * direct convolution's by rounding only (the transforms add and subtract).
 * The same transforms serve the other two passes (below): the adjoint (the
 * input gradient, the transposed convolution's forward) and the weight
 * gradient. Not installed. */
#ifndef DP_KERNELS_WINO_H
#define DP_KERNELS_WINO_H

#include <stdint.h>

/* The convolution op takes it for batches of at least this many 2x2 output
 * tiles (src/ops/op_conv.c: below, the per-call weight transform does not
 * pay); dp_wino_min_tiles is the value in use, which tests lower to reach
 * the path on small shapes. */
#define DP_WINO_MIN_TILES 256
extern int64_t dp_wino_min_tiles;

/* Floats of the packed transformed weights for O outputs and C inputs (the
 * current GEMM kernel's layout: pack and use with the same kernel). */
int64_t dp_wino_u_floats(int64_t O, int64_t C);

/* U of weights w [O][C][4][4] for the 9 products, packed for the GEMM: xi's
 * at upk + xi * dp_wino_u_floats(O, C), made by row panels q0..q1 - 1 of the
 * dp_wino_pack_panels(O) (give threads disjoint ranges); tmp holds
 * 9 * DP_GEMM_MR_MAX * 4C + 16 C floats. */
int64_t dp_wino_pack_panels(int64_t O);
void dp_wino_pack_w(const float *w, int64_t O, int64_t C, int64_t q0, int64_t q1, float *tmp, float *upk);

/* Per-call scratch for nimg images of C x H x W with O outputs. */
int64_t dp_wino_scratch_floats(int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O);

/* y[n] (+)= conv(x[n]) (+ bias) for nimg consecutive images (x, y advanced by
 * the caller): H, W even, output H/2 x W/2 (an odd side ends in a tile half
 * outside: zeros in, its outside half dropped). upk from
 * dp_wino_pack_w for all 9 products; scratch: dp_wino_scratch_floats.
 * Single-threaded. */
void dp_wino_images(const float *upk, const float *x, int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O,
                    const float *bias, int acc, float *y, float *scratch);

/* The adjoint, x_grad[n] += conv^T(y_grad[n]) (the input gradient of such a
 * convolution, the forward of the transposed one): each of the 4 input phases
 * of x is a 2x2 correlation of y_grad padded by one, so F(2x2, 2x2) again,
 * 9 GEMMs of C x O by O x tiles per phase. Floats per (phase, product) of
 * the packed weights: */
int64_t dp_wino_t_u_floats(int64_t O, int64_t C);

/* U of the 4 phases and 9 products: (phase, xi)'s at upk + (phase * 9 + xi) *
 * dp_wino_t_u_floats(O, C), by row panels q0..q1 - 1 of the
 * dp_wino_t_pack_panels(C); tmp holds 52 * DP_GEMM_MR_MAX * O floats. */
int64_t dp_wino_t_pack_panels(int64_t C);
void dp_wino_t_pack_w(const float *w, int64_t O, int64_t C, int64_t q0, int64_t q1, float *tmp, float *upk);

int64_t dp_wino_t_scratch_floats(int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O);

/* gx[n] += conv^T(gy[n]) for nimg images: gy O x H/2 x W/2 (odd sides as above), gx
 * C x H x W. Single-threaded. */
void dp_wino_t_images(const float *upk, const float *gy, int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O,
                      float *gx, float *scratch);

/* The weight gradient: M (dp_wino_w_m_floats floats: for each product xi and
 * phase q a C x O block, at (4 xi + q) C O) holds the sums over the N images
 * of gy (O x H/2 x W/2 each) and x (C x H x W each); dp_wino_w_pairs writes
 * the blocks p0..p1 - 1 (p = 4 xi + q: give threads disjoint ranges), with
 * dp_wino_w_scratch_floats of its own scratch; then dp_wino_w_out adds
 * A^T M A into dw [O][C][4][4] for outputs o0..o1 - 1. */
int64_t dp_wino_w_m_floats(int64_t O, int64_t C);
/* Tiles a GEMM of it sums at most (whole images; half a K slice of the GEMM);
 * tests lower dp_wino_w_chunk to reach several chunks on small batches. */
#define DP_WINO_W_CHUNK 128
extern int64_t dp_wino_w_chunk;
int64_t dp_wino_w_scratch_floats(int64_t C, int64_t H, int64_t W, int64_t O);
void dp_wino_w_pairs(const float *gy, const float *x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                     int64_t p0, int64_t p1, float *M, float *scratch);
void dp_wino_w_out(const float *M, int64_t O, int64_t C, int64_t o0, int64_t o1, float *dw);

#endif
