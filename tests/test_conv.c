/* conv2d / conv_transpose2d forward values against naive direct loops (the
 * definitions, written independently of the im2col code), a few values worked
 * out by hand, gradients that must not depend on the thread count (the
 * threaded paths split work differently) nor on the kernel variant, the
 * stride-2 4-wide im2col / col2im row helpers of every variant against their
 * definitions (every start and length), and shape errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doppel/doppel.h"
#include "kernels/dconv.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"
#include "kernels/wino.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})

typedef struct cfg {
    const char *name;
    int transpose;
    int64_t N, Ci, H, W, Co, KH, KW;
    dp_conv_opts o;
    int bias;
} cfg;

typedef struct result {
    int64_t shape[4];
    float *x, *w, *b, *y;      /* inputs and output */
    float *gx, *gw, *gb;       /* gradients of sum(y * R) */
    int64_t nx, nw, nb, ny;
} result;

static int opt(int v, int dflt) { return v ? v : dflt; }

static void fill(float *p, int64_t n, uint64_t seed) {
    dp_rng r;
    dp_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) p[i] = 2.0f * dp_rng_uniform(&r) - 1.0f;
}

static float *dup(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    float *p = malloc(sizeof(float) * (size_t)n);
    memcpy(p, dp_tensor_f32_const(t), sizeof(float) * (size_t)n);
    return p;
}

static void result_free(result *r) {
    free(r->x), free(r->w), free(r->b), free(r->y), free(r->gx), free(r->gw), free(r->gb);
    memset(r, 0, sizeof *r);
}

/* Build, run forward (and backward of sum(y * R) if grads) with `threads` threads. */
static void run(const cfg *c, int threads, int grads, result *r) {
    memset(r, 0, sizeof *r);
    dp_ctx *ctx;
    dp_graph *g;
    dp_ctx_opts co = {.threads = threads, .seed = 1};
    assert_int_equal(dp_ctx_new(&co, &ctx), DP_OK);
    assert_int_equal(dp_graph_new(ctx, &g), DP_OK);
    int groups = opt(c->o.groups, 1);
    dp_node *x = dp_input(g, "x", 4, SH(c->N, c->Ci, c->H, c->W));
    dp_node *w = c->transpose ? dp_input(g, "w", 4, SH(c->Ci, c->Co / groups, c->KH, c->KW))
                              : dp_input(g, "w", 4, SH(c->Co, c->Ci / groups, c->KH, c->KW));
    dp_node *b = c->bias ? dp_input(g, "b", 1, SH(c->Co)) : NULL;
    dp_node *y = c->transpose ? dp_conv_transpose2d(g, x, w, b, &c->o) : dp_conv2d(g, x, w, b, &c->o);
    if (!y) printf("  %s: %s\n", c->name, dp_ctx_error(ctx));
    assert_non_null(y);
    dp_node *R = dp_input(g, "R", 4, dp_tensor_shape(dp_node_value(y)));
    dp_node *loss = dp_sum(g, dp_mul(g, y, R), DP_AXIS_ALL, 0);
    if (grads) {
        dp_input_requires_grad(g, x);
        dp_input_requires_grad(g, w);
        if (b) dp_input_requires_grad(g, b);
    }
    assert_int_equal(dp_graph_mark_output(g, loss), DP_OK);
    assert_int_equal(dp_graph_mark_output(g, y), DP_OK);
    assert_int_equal(dp_graph_compile(g), DP_OK);
    dp_node *leaves[3] = {x, w, b};
    for (int i = 0; i < 3; i++)
        if (leaves[i]) fill(dp_tensor_f32(dp_node_value(leaves[i])), dp_tensor_numel(dp_node_value(leaves[i])), 11 + (uint64_t)i);
    fill(dp_tensor_f32(dp_node_value(R)), dp_tensor_numel(dp_node_value(R)), 99);
    assert_int_equal(dp_graph_run(g), DP_OK);
    memcpy(r->shape, dp_tensor_shape(dp_node_value(y)), sizeof r->shape);
    r->x = dup(dp_node_value(x)), r->nx = dp_tensor_numel(dp_node_value(x));
    r->w = dup(dp_node_value(w)), r->nw = dp_tensor_numel(dp_node_value(w));
    if (b) r->b = dup(dp_node_value(b)), r->nb = c->Co;
    r->y = dup(dp_node_value(y)), r->ny = dp_tensor_numel(dp_node_value(y));
    if (grads) {
        assert_int_equal(dp_graph_backward(g, loss, 0, NULL), DP_OK);
        r->gx = dup(dp_node_grad(x));
        r->gw = dup(dp_node_grad(w));
        if (b) r->gb = dup(dp_node_grad(b));
    }
    dp_graph_free(g);
    dp_ctx_free(ctx);
}

/* TF 'same' front padding, computed here independently of the library. */
static int64_t same_front(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d) {
    int64_t total = (out - 1) * s + (k - 1) * d + 1 - in;
    return total > 0 ? total / 2 : 0;
}

/* The definitions. conv2d gathers: y[n,co,oh,ow] = b + sum x[.., oh*s - p + kh*d, ..] w[co,cl,kh,kw].
 * conv_transpose2d scatters: each x[n,ci,ih,iw] adds x*w[ci,col,kh,kw] to y[n, co, ih*s - p + kh*d, ..]. */
static float *naive(const cfg *c, const result *r) {
    int64_t N = c->N, Ci = c->Ci, H = c->H, W = c->W, Co = c->Co, KH = c->KH, KW = c->KW;
    int64_t sh = opt(c->o.stride_h, 1), sw = opt(c->o.stride_w, 1), dh = opt(c->o.dilation_h, 1), dw = opt(c->o.dilation_w, 1);
    int64_t G = opt(c->o.groups, 1), OH = r->shape[2], OW = r->shape[3];
    double *acc = calloc((size_t)(N * Co * OH * OW), sizeof(double));
    if (!c->transpose) {
        int64_t pt = c->o.pad_h, pl = c->o.pad_w;
        if (c->o.same) pt = same_front(H, OH, KH, sh, dh), pl = same_front(W, OW, KW, sw, dw);
        int64_t Cg = Ci / G, Og = Co / G;
        for (int64_t n = 0; n < N; n++)
            for (int64_t co = 0; co < Co; co++)
                for (int64_t oh = 0; oh < OH; oh++)
                    for (int64_t ow = 0; ow < OW; ow++) {
                        double s = r->b ? r->b[co] : 0.0;
                        for (int64_t cl = 0; cl < Cg; cl++)
                            for (int64_t kh = 0; kh < KH; kh++)
                                for (int64_t kw = 0; kw < KW; kw++) {
                                    int64_t ih = oh * sh - pt + kh * dh, iw = ow * sw - pl + kw * dw;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                    int64_t ci = co / Og * Cg + cl;
                                    s += (double)r->x[((n * Ci + ci) * H + ih) * W + iw] *
                                         r->w[((co * Cg + cl) * KH + kh) * KW + kw];
                                }
                        acc[((n * Co + co) * OH + oh) * OW + ow] = s;
                    }
    } else {
        int64_t pt = c->o.pad_h, pl = c->o.pad_w;
        if (c->o.same) pt = same_front(OH, H, KH, sh, dh), pl = same_front(OW, W, KW, sw, dw);
        int64_t Cig = Ci / G, Cog = Co / G;
        for (int64_t i = 0; i < N * Co * OH * OW; i++) acc[i] = r->b ? r->b[(i / (OH * OW)) % Co] : 0.0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t ci = 0; ci < Ci; ci++)
                for (int64_t ih = 0; ih < H; ih++)
                    for (int64_t iw = 0; iw < W; iw++)
                        for (int64_t col = 0; col < Cog; col++)
                            for (int64_t kh = 0; kh < KH; kh++)
                                for (int64_t kw = 0; kw < KW; kw++) {
                                    int64_t oh = ih * sh - pt + kh * dh, ow = iw * sw - pl + kw * dw;
                                    if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                                    int64_t co = ci / Cig * Cog + col;
                                    acc[((n * Co + co) * OH + oh) * OW + ow] += (double)r->x[((n * Ci + ci) * H + ih) * W + iw] *
                                                                               r->w[((ci * Cog + col) * KH + kh) * KW + kw];
                                }
    }
    float *y = malloc(sizeof(float) * (size_t)(N * Co * OH * OW));
    for (int64_t i = 0; i < N * Co * OH * OW; i++) y[i] = (float)acc[i];
    free(acc);
    return y;
}

/* Expected output size from the documented formulas. */
static void expect_shape(const cfg *c, int64_t *oh, int64_t *ow) {
    int64_t sh = opt(c->o.stride_h, 1), sw = opt(c->o.stride_w, 1), dh = opt(c->o.dilation_h, 1), dw = opt(c->o.dilation_w, 1);
    if (!c->transpose) {
        if (c->o.same) {
            *oh = (c->H + sh - 1) / sh, *ow = (c->W + sw - 1) / sw;
        } else {
            *oh = (c->H + 2 * c->o.pad_h - dh * (c->KH - 1) - 1) / sh + 1;
            *ow = (c->W + 2 * c->o.pad_w - dw * (c->KW - 1) - 1) / sw + 1;
        }
    } else {
        if (c->o.same) {
            *oh = c->H * sh, *ow = c->W * sw;
        } else {
            *oh = (c->H - 1) * sh - 2 * c->o.pad_h + dh * (c->KH - 1) + c->o.output_pad_h + 1;
            *ow = (c->W - 1) * sw - 2 * c->o.pad_w + dw * (c->KW - 1) + c->o.output_pad_w + 1;
        }
    }
}

static int close_arrays(const char *what, const char *name, const float *a, const float *b, int64_t n, float tol) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= tol * (1.0f + fabsf(b[i])))) {
            printf("  %s %s[%lld]: %.7g vs %.7g\n", name, what, (long long)i, a[i], b[i]);
            return 0;
        }
    return 1;
}

static const cfg configs[] = {
    /* name                      T  N  Ci  H   W  Co KH KW  opts                                                      bias */
    {"conv basic pad 1", 0, 2, 3, 8, 8, 4, 3, 3, {.pad_h = 1, .pad_w = 1}, 1},
    {"conv same k4 s2", 0, 2, 3, 9, 9, 5, 4, 4, {.stride_h = 2, .stride_w = 2, .same = 1}, 1},
    {"conv same k2 s1", 0, 1, 2, 6, 6, 3, 2, 2, {.same = 1}, 0},
    {"conv same k5 s1 (Meso)", 0, 2, 8, 12, 12, 8, 5, 5, {.same = 1}, 1},
    {"conv rect s(1,2) p(0,2)", 0, 2, 3, 7, 11, 2, 2, 3, {.stride_w = 2, .pad_w = 2}, 1},
    {"conv dil 2 groups 2", 0, 2, 4, 10, 9, 6, 3, 3, {.dilation_h = 2, .dilation_w = 2, .pad_h = 2, .pad_w = 2, .groups = 2}, 1},
    {"conv depthwise s2", 0, 2, 6, 11, 11, 6, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 6}, 1},
    {"conv depthwise x2 mult", 0, 2, 3, 6, 6, 6, 3, 3, {.groups = 3, .pad_h = 1, .pad_w = 1}, 1},
    {"conv 1x1", 0, 3, 5, 7, 7, 4, 1, 1, {0}, 1},
    {"conv 1x1 stride 2", 0, 2, 4, 7, 7, 3, 1, 1, {.stride_h = 2, .stride_w = 2}, 0},
    {"conv k4 s2 p1 (DCGAN D)", 0, 3, 3, 16, 16, 8, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    {"conv pieces (70x70, k3)", 0, 2, 3, 70, 70, 8, 3, 3, {.same = 1}, 1},
    {"conv pieces k5 (Meso 32x32)", 0, 2, 8, 32, 32, 8, 5, 5, {.same = 1}, 1},
    {"conv pieces stride 2", 0, 1, 1, 182, 182, 2, 3, 3, {.stride_h = 2, .stride_w = 2, .same = 1}, 1},
    {"conv pieces 1x1", 0, 2, 3, 95, 95, 2, 1, 1, {0}, 1},
    {"conv single image", 0, 1, 3, 9, 9, 4, 3, 3, {.pad_h = 1, .pad_w = 1}, 1},
    {"conv k4 on 4x4 (DCGAN D last)", 0, 5, 8, 4, 4, 1, 4, 4, {0}, 1},
    {"conv k3 on 3x3 groups 2", 0, 3, 4, 3, 3, 6, 3, 3, {.groups = 2}, 1},
    {"conv 4-wide rows (im2col)", 0, 3, 4, 6, 6, 5, 3, 3, {0}, 1},
    {"conv K cut into slices", 0, 32, 32, 8, 8, 4, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv pieces k4 s2 p1 (whole-row pieces, stride-2 col2im)", 0, 2, 8, 90, 90, 3, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv batch-folded panels (DCGAN-28 D)", 0, 45, 8, 14, 14, 16, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    /* the direct stride-2 kernel (kernels/dconv.h; AVX-512: 32- or 64-channel blocks, outputs 7-16 wide, K 256-1024 or -2048) */
    {"conv direct k4 s2 p1 7-wide (DCGAN-28 D.2)", 0, 3, 16, 14, 14, 64, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv direct k3 s2 16-wide (two pieces a row)", 0, 2, 32, 32, 32, 32, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    {"conv direct 64-channel tiles, K 1152", 0, 2, 72, 14, 13, 64, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv direct 64-channel tiles, 13 wide (pieces 5+4+4)", 0, 2, 16, 9, 26, 64, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv direct k4 s2 p0 11-wide, one image", 0, 1, 20, 24, 24, 32, 4, 4, {.stride_h = 2, .stride_w = 2}, 1},
    {"conv direct k4 s2 same 9-wide", 0, 2, 16, 17, 17, 32, 4, 4, {.stride_h = 2, .stride_w = 2, .same = 1}, 1},
    /* AVX2's rule (16-channel blocks, tiles wrapping rows): K to 4096, O a multiple of 16 */
    {"conv direct AVX2 8-wide K 2048 (DCGAN-64 D.5)", 0, 2, 128, 16, 16, 32, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv direct AVX2 48 channels, weight gradient", 0, 2, 16, 14, 14, 48, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv basic", 1, 2, 3, 4, 4, 2, 3, 3, {0}, 1},
    {"tconv s2 p1 outpad 1", 1, 2, 4, 5, 5, 3, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .output_pad_h = 1, .output_pad_w = 1}, 0},
    {"tconv groups 2 s2 outpad", 1, 2, 4, 4, 5, 6, 3, 3, {.groups = 2, .stride_h = 2, .stride_w = 2, .output_pad_h = 1}, 1},
    {"tconv dilation 2", 1, 2, 2, 4, 3, 3, 3, 2, {.dilation_h = 2, .dilation_w = 2, .pad_h = 1, .stride_w = 3, .output_pad_w = 1}, 1},
    {"tconv k4 s2 p1 (DCGAN G)", 1, 3, 8, 8, 8, 4, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv k4 from 1x1 (DCGAN G)", 1, 4, 10, 1, 1, 6, 4, 4, {0}, 1},
    {"tconv depthwise s2", 1, 2, 4, 5, 5, 4, 3, 3, {.groups = 4, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv same s2 k4", 1, 1, 3, 5, 5, 2, 4, 4, {.stride_h = 2, .stride_w = 2, .same = 1}, 0},
    {"tconv 1x1", 1, 2, 3, 6, 6, 4, 1, 1, {0}, 1},
    {"tconv pieces", 1, 1, 2, 91, 91, 2, 2, 2, {.stride_h = 2, .stride_w = 2}, 1},
    {"tconv single image", 1, 1, 3, 5, 5, 2, 3, 3, {.stride_h = 2, .stride_w = 2}, 1},
    {"tconv from 1x1 groups 2", 1, 3, 4, 1, 1, 6, 3, 3, {.groups = 2}, 1},
    {"tconv pieces k4 s2 p1 (whole-row pieces, stride-2 col2im)", 1, 1, 8, 45, 45, 8, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv k4 s2 p1 odd rows (stride-2 col2im tails)", 1, 3, 6, 5, 19, 5, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv batch-folded panels (DCGAN-28 G)", 1, 45, 16, 7, 7, 8, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    {"tconv dx by the direct kernel (DCGAN-28 G.3)", 1, 2, 32, 7, 7, 16, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv K cut into slices", 1, 32, 4, 4, 4, 32, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .output_pad_h = 1}, 1},
    /* Winograd F(2x2, 2x2) with AVX2 (kernels/wino.c): 4x4 s2 p1, even outputs, C >= 64, O >= 256 (main()
     * lowers dp_wino_min_tiles so that these small batches take it; O >= 128 with outputs >= 16 wide too) */
    {"conv Winograd 8x8 outputs (DCGAN-64 D.5, fewer channels; pairs of 4-tile runs)", 0, 3, 64, 16, 16, 256, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv Winograd 4x4 outputs, images grouped, 264 outputs (runs of 2 tiles)", 0, 5, 64, 8, 8, 264, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    {"conv Winograd 2x2 outputs, one image, K over two slices", 0, 1, 96, 4, 4, 257, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv Winograd 4x6 outputs, rectangular", 0, 2, 64, 8, 12, 256, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv dx by Winograd (DCGAN-64 G.6)", 1, 2, 256, 8, 8, 64, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv Winograd 2x16 outputs, 128 outputs (runs of 8 tiles in the fill)", 0, 2, 64, 4, 32, 128, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv Winograd 4x20 outputs (a run of 8 and a scalar tail per row)", 0, 1, 64, 8, 40, 256, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    /* the adjoint (dp_wino_t_images: the transposed conv's forward, the conv's input gradient, also taken by the
     * conv configurations above with O >= 128 and outputs >= 8 wide): tconv outputs >= 64, inputs >= 128 x 8 wide */
    {"tconv Winograd 8x8 inputs (DCGAN-64 G.6 forward, pairs of 4-tile runs)", 1, 2, 256, 8, 8, 64, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv Winograd 8x10 inputs, 65 outputs (runs cut by the rows: scalar fill; M tail)", 1, 3, 128, 8, 10, 65, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    /* the weight gradient (dp_wino_w_images): C >= 128, O >= 256, outputs >= 8 wide; main() sets chunks of 32 tiles */
    {"conv Winograd weight gradient (D.5's shape, chunks of 2 images + 1)", 0, 3, 128, 16, 16, 256, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv Winograd weight gradient, 8x10 inputs (one image a chunk)", 1, 2, 256, 8, 10, 128, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    {"tconv Winograd 12x16 inputs, K over two slices (runs, then scalar)", 1, 1, 300, 12, 16, 64, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    /* odd output sides (O >= 256): the last tile of a row or column half outside (zeros in, its outside half
     * dropped) */
    {"conv Winograd 7x7 outputs (DCGAN-28 G.3's sides)", 0, 2, 64, 14, 14, 256, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"conv Winograd 3x9 outputs, odd both ways", 0, 3, 64, 6, 18, 256, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
    {"conv Winograd 9x9 outputs with the weight gradient (runs of 4 + a half tile)", 0, 2, 128, 18, 18, 256, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv Winograd 7x7 inputs (DCGAN-28 G.3 forward)", 1, 2, 256, 7, 7, 64, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1},
    {"tconv Winograd 5x9 inputs, 4-tile vector rows then halves", 1, 2, 256, 5, 9, 64, 4, 4, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 0},
};
#define N_CONFIGS (sizeof configs / sizeof configs[0])

static void forward_matches_naive(void **state) {
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < N_CONFIGS; i++) {
        const cfg *c = &configs[i];
        for (int threads = 1; threads <= 3; threads += 2) {
            result r;
            run(c, threads, 0, &r);
            int64_t oh, ow;
            expect_shape(c, &oh, &ow);
            if (r.shape[0] != c->N || r.shape[1] != c->Co || r.shape[2] != oh || r.shape[3] != ow) {
                printf("  %s: shape [%lld,%lld,%lld,%lld], want [%lld,%lld,%lld,%lld]\n", c->name, (long long)r.shape[0],
                       (long long)r.shape[1], (long long)r.shape[2], (long long)r.shape[3], (long long)c->N, (long long)c->Co,
                       (long long)oh, (long long)ow);
                bad++;
            } else {
                float *want = naive(c, &r);
                bad += !close_arrays("y", c->name, r.y, want, r.ny, 1e-4f);
                free(want);
            }
            result_free(&r);
        }
    }
    assert_int_equal(bad, 0);
}

/* The threaded paths (per-thread weight-gradient blocks, multithreaded GEMMs
 * when there are fewer chunks than threads, parallel scatters) must give the
 * single-thread gradients up to rounding. */
static void gradients_independent_of_threads(void **state) {
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < N_CONFIGS; i++) {
        const cfg *c = &configs[i];
        result r1, r2, r3, r8;
        run(c, 1, 1, &r1);
        run(c, 2, 1, &r2);
        run(c, 3, 1, &r3);
        run(c, 8, 1, &r8); /* more threads than work items in most configurations */
        const result *rs[3] = {&r2, &r3, &r8};
        for (int k = 0; k < 3; k++) {
            bad += !close_arrays("y", c->name, rs[k]->y, r1.y, r1.ny, 1e-5f);
            bad += !close_arrays("dx", c->name, rs[k]->gx, r1.gx, r1.nx, 1e-4f);
            bad += !close_arrays("dw", c->name, rs[k]->gw, r1.gw, r1.nw, 1e-4f);
            if (c->bias) bad += !close_arrays("db", c->name, rs[k]->gb, r1.gb, r1.nb, 1e-4f);
        }
        result_free(&r1);
        result_free(&r2);
        result_free(&r3);
        result_free(&r8);
    }
    assert_int_equal(bad, 0);
}

/* Every kernel variant (AVX-512, AVX2, portable: GEMM, band GEMM, dot
 * products and vector helpers) gives the same forward and gradients. */
static void kernels_agree(void **state) {
    (void)state;
    static const char *const names[] = {"portable", "avx2", "avx512"};
    char first[32];
    snprintf(first, sizeof first, "%s", dp_gemm_kernel_name());
    int bad = 0;
    for (size_t i = 0; i < N_CONFIGS; i++) {
        const cfg *c = &configs[i];
        result ref;
        assert_true(dp_gemm_set_kernel(first));
        run(c, 2, 1, &ref);
        for (size_t k = 0; k < 3; k++) {
            if (!strcmp(names[k], first) || !dp_gemm_set_kernel(names[k])) continue;
            result r;
            run(c, 2, 1, &r);
            char what[96];
            snprintf(what, sizeof what, "%s [%s]", c->name, names[k]);
            bad += !close_arrays("y", what, r.y, ref.y, ref.ny, 1e-4f);
            bad += !close_arrays("dx", what, r.gx, ref.gx, ref.nx, 1e-4f);
            bad += !close_arrays("dw", what, r.gw, ref.gw, ref.nw, 1e-4f);
            if (c->bias) bad += !close_arrays("db", what, r.gb, ref.gb, ref.nb, 1e-4f);
            result_free(&r);
        }
        result_free(&ref);
    }
    assert_true(dp_gemm_set_kernel(first));
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------ stride-2 row helpers */
/* dp_vec_im2col_s2k4 and dp_vec_col2im_s2k4_rows, every kernel variant, against
 * their definitions: every image width up to 70, every start j0 and length n. */
static void s2k4_row_helpers(void **state) {
    (void)state;
    static const char *const names[] = {"portable", "avx2", "avx512"};
    char first[32];
    snprintf(first, sizeof first, "%s", dp_gemm_kernel_name());
    float row[72], c[4][40], want[4][40];
    for (int i = 0; i < 72; i++) row[i] = (float)(i + 1) * 0.25f - 3.0f;
    int bad = 0;
    for (size_t k = 0; k < 3; k++) {
        if (!dp_gemm_set_kernel(names[k])) continue;
        for (int w = 2; w <= 70 && !bad; w += 2) {
            int ow = w / 2;
            for (int j0 = 0; j0 < ow; j0++)
                for (int n = 1; j0 + n <= ow; n++) {
                    for (int t = 0; t < 4; t++)
                        for (int j = 0; j < n; j++) {
                            int x = 2 * (j0 + j) + t - 1;
                            want[t][j] = x >= 0 && x < w ? row[x] : 0.0f;
                            c[t][j] = NAN;
                        }
                    dp_vec_im2col_s2k4(c[0], c[1], c[2], c[3], row, w, j0, n);
                    for (int t = 0; t < 4; t++)
                        for (int j = 0; j < n; j++)
                            if (!(c[t][j] == want[t][j])) {
                                if (!bad) printf("  im2col_s2k4 [%s] w=%d j0=%d n=%d tap %d [%d]: %g, want %g\n", names[k], w, j0, n, t, j, (double)c[t][j], (double)want[t][j]);
                                bad++;
                            }
                }
            /* col2im over 3 output rows into a 4-row plane, rows 2 apart from -1 (the first is outside) */
            float tap[4][3 * 35], plane[4 * 70], ref[4 * 70];
            for (int t = 0; t < 4; t++)
                for (int j = 0; j < 3 * ow; j++) tap[t][j] = (float)((t * 7 + j * 3) % 11) - 5.0f;
            for (int i = 0; i < 4 * w; i++) plane[i] = ref[i] = (float)(i % 5);
            for (int r = 0; r < 3; r++) {
                int ih = -1 + 2 * r;
                if (ih < 0 || ih >= 4) continue;
                for (int j = 0; j < ow; j++)
                    for (int t = 0; t < 4; t++) {
                        int x = 2 * j + t - 1;
                        if (x >= 0 && x < w) ref[ih * w + x] += tap[t][r * ow + j];
                    }
            }
            dp_vec_col2im_s2k4_rows(plane, w, 4, -1, 2, tap[0], 3 * 35, ow, 3);
            for (int i = 0; i < 4 * w; i++)
                if (fabsf(plane[i] - ref[i]) > 1e-5f) {
                    if (!bad) printf("  col2im_s2k4_rows [%s] w=%d [%d]: %g, want %g\n", names[k], w, i, (double)plane[i], (double)ref[i]);
                    bad++;
                }
        }
    }
    assert_true(dp_gemm_set_kernel(first));
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------ values by hand */
typedef struct hand {
    dp_ctx *ctx;
    dp_graph *g;
} hand;

static dp_node *hand_in(hand *h, const char *name, int64_t n, int64_t c, int64_t H, int64_t W, const float *v) {
    dp_node *x = dp_input(h->g, name, 4, SH(n, c, H, W));
    assert_non_null(x);
    (void)v;
    return x;
}

static void set_and_run(hand *h, dp_node *x, const float *xv, dp_node *w, const float *wv, dp_node *y) {
    assert_int_equal(dp_graph_mark_output(h->g, y), DP_OK);
    assert_int_equal(dp_graph_compile(h->g), DP_OK);
    memcpy(dp_tensor_f32(dp_node_value(x)), xv, sizeof(float) * (size_t)dp_tensor_numel(dp_node_value(x)));
    memcpy(dp_tensor_f32(dp_node_value(w)), wv, sizeof(float) * (size_t)dp_tensor_numel(dp_node_value(w)));
    assert_int_equal(dp_graph_run(h->g), DP_OK);
}

static void hand_begin(hand *h) {
    dp_ctx_opts o = {.threads = 2};
    assert_int_equal(dp_ctx_new(&o, &h->ctx), DP_OK);
    assert_int_equal(dp_graph_new(h->ctx, &h->g), DP_OK);
}
static void hand_end(hand *h) {
    dp_graph_free(h->g);
    dp_ctx_free(h->ctx);
}

static void check_values(dp_node *y, const float *want, int64_t n) {
    const float *got = dp_tensor_f32_const(dp_node_value(y));
    assert_int_equal(dp_tensor_numel(dp_node_value(y)), n);
    for (int64_t i = 0; i < n; i++) assert_float_equal(got[i], want[i], 1e-5f);
}

static const float ones9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};

static void hand_conv_window_sums(void **state) {
    (void)state;
    hand h;
    hand_begin(&h);
    /* x = 1..16 (4x4), w = ones 3x3: each output is a 3x3 window sum. */
    float xv[16];
    for (int i = 0; i < 16; i++) xv[i] = (float)(i + 1);
    dp_node *x = hand_in(&h, "x", 1, 1, 4, 4, xv), *w = hand_in(&h, "w", 1, 1, 3, 3, ones9);
    dp_node *y = dp_conv2d(h.g, x, w, NULL, NULL);
    set_and_run(&h, x, xv, w, ones9, y);
    check_values(y, (const float[]){54, 63, 90, 99}, 4);
    hand_end(&h);
}

static void hand_conv_same_even(void **state) {
    (void)state;
    hand h;
    hand_begin(&h);
    /* x = 1..9 (3x3), w = ones 2x2, TF 'same': the one padding row/column is at the bottom/right. */
    float xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    dp_node *x = hand_in(&h, "x", 1, 1, 3, 3, xv), *w = hand_in(&h, "w", 1, 1, 2, 2, ones9);
    dp_node *y = dp_conv2d(h.g, x, w, NULL, &(dp_conv_opts){.same = 1});
    set_and_run(&h, x, xv, w, ones9, y);
    check_values(y, (const float[]){12, 16, 9, 24, 28, 15, 15, 17, 9}, 9);
    hand_end(&h);
}

static void hand_conv_stride2_same(void **state) {
    (void)state;
    hand h;
    hand_begin(&h);
    /* 4x4 input, k3 s2 'same': out 2x2, total pad 1 → 0 on top/left, 1 at the bottom/right. */
    float xv[16];
    for (int i = 0; i < 16; i++) xv[i] = (float)(i + 1);
    dp_node *x = hand_in(&h, "x", 1, 1, 4, 4, xv), *w = hand_in(&h, "w", 1, 1, 3, 3, ones9);
    dp_node *y = dp_conv2d(h.g, x, w, NULL, &(dp_conv_opts){.stride_h = 2, .stride_w = 2, .same = 1});
    set_and_run(&h, x, xv, w, ones9, y);
    /* windows rows 0-2/cols 0-2 = 54; rows 0-2/cols 2-3 = 3+4+7+8+11+12 = 45;
     * rows 2-3/cols 0-2 = 9+10+11+13+14+15 = 72; rows 2-3/cols 2-3 = 11+12+15+16 = 54 */
    check_values(y, (const float[]){54, 45, 72, 54}, 4);
    hand_end(&h);
}

static void hand_tconv(void **state) {
    (void)state;
    float xv[4] = {1, 2, 3, 4};
    {
        hand h;
        hand_begin(&h);
        /* stride 2, k2: every input pixel becomes a 2x2 block */
        dp_node *x = hand_in(&h, "x", 1, 1, 2, 2, xv), *w = hand_in(&h, "w", 1, 1, 2, 2, ones9);
        dp_node *y = dp_conv_transpose2d(h.g, x, w, NULL, &(dp_conv_opts){.stride_h = 2, .stride_w = 2});
        set_and_run(&h, x, xv, w, ones9, y);
        check_values(y, (const float[]){1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}, 16);
        hand_end(&h);
    }
    {
        hand h;
        hand_begin(&h);
        /* stride 1, k2: overlapping blocks add up */
        dp_node *x = hand_in(&h, "x", 1, 1, 2, 2, xv), *w = hand_in(&h, "w", 1, 1, 2, 2, ones9);
        dp_node *y = dp_conv_transpose2d(h.g, x, w, NULL, NULL);
        set_and_run(&h, x, xv, w, ones9, y);
        check_values(y, (const float[]){1, 3, 2, 4, 10, 6, 3, 7, 4}, 9);
        hand_end(&h);
    }
    {
        hand h;
        hand_begin(&h);
        /* k3 s2 p1 output_padding 1: out = (2-1)*2 - 2 + 2 + 1 + 1 = 4; the extra row/column gets
         * only what reaches it: y[3][3] = x[1][1] * w[2][2]. */
        float wv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
        dp_node *x = hand_in(&h, "x", 1, 1, 2, 2, xv), *w = hand_in(&h, "w", 1, 1, 3, 3, wv);
        dp_node *y = dp_conv_transpose2d(h.g, x, w, NULL,
                                         &(dp_conv_opts){.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .output_pad_h = 1, .output_pad_w = 1});
        set_and_run(&h, x, xv, w, wv, y);
        const dp_tensor *v = dp_node_value(y);
        assert_int_equal(dp_tensor_dim(v, 2), 4);
        assert_int_equal(dp_tensor_dim(v, 3), 4);
        const float *yv = dp_tensor_f32_const(v);
        assert_float_equal(yv[15], 4.0f * 9.0f, 1e-5f);
        assert_float_equal(yv[0], 1.0f * 5.0f, 1e-5f); /* y[0][0] = x[0][0] * w[1][1] */
        hand_end(&h);
    }
}

/* ------------------------------------------------------------ shape errors */
/* dp_dconv_s1_band (conv + bias) and dp_dconv_s1_pool_band against the
 * definition written out (conv, bias, relu, the norm's map, 2x2 max), for every
 * kernel level the CPU has (the C
 * definition where it has none): 3x3, 5x5 and 2x2 taps, 8 and 16 channels,
 * rows of 6n, 6n + 2 and 6n + 4 outputs, one longer than a 240-output
 * segment, norm slopes of both signs and none negative. */
static void s1_pool_band_matches_definition(void **state) {
    (void)state;
    static const struct { int64_t C, K, rows, OW, O; } cases[] = {
        {3, 3, 4, 12, 8}, {8, 5, 6, 26, 8}, {5, 5, 2, 28, 16}, {2, 2, 4, 250, 8}, {1, 3, 2, 2, 8}};
    static const char *kernels[] = {"portable", "avx2", "avx512"};
    char first[32];
    snprintf(first, sizeof first, "%s", dp_gemm_kernel_name());
    for (size_t kk = 0; kk < 3; kk++) {
        if (!dp_gemm_set_kernel(kernels[kk])) continue;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const int64_t C = cases[c].C, K = cases[c].K, rows = cases[c].rows, OW = cases[c].OW, O = cases[c].O;
            const int64_t Wp = OW + K - 1 + 3, BR = rows + K - 1, cs = BR * Wp + 5, KK = C * K * K;
            const int64_t PW = OW / 2, PH = rows / 2, ldc = PH * PW + 7, ldr = PW;
            float *band = malloc(sizeof(float) * (size_t)(C * cs)), *w = malloc(sizeof(float) * (size_t)(O * KK));
            float *wp = malloc(sizeof(float) * (size_t)(2 * O * KK)), *y = calloc((size_t)(O * ldc), sizeof(float));
            float *bias = malloc(sizeof(float) * (size_t)O), *rba = malloc(sizeof(float) * (size_t)(3 * O));
            assert_non_null(band), assert_non_null(w), assert_non_null(wp), assert_non_null(y), assert_non_null(bias),
                assert_non_null(rba);
            fill(band, C * cs, 40 + c), fill(w, O * KK, 50 + c), fill(bias, O, 60 + c), fill(rba, 3 * O, 70 + c);
            dp_dconv_s1_pack_w(w, O, KK, wp);
            /* without the pool first: conv + bias at every output */
            float *yc = malloc(sizeof(float) * (size_t)(O * (rows * OW + 3)));
            assert_non_null(yc);
            dp_dconv_s1_band(band, C, cs, Wp, wp, K, K, rows, OW, O, bias, yc, rows * OW + 3, OW, 0);
            for (int64_t o = 0; o < O; o++)
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t q = 0; q < OW; q++) {
                        double v = bias[o];
                        for (int64_t ci = 0; ci < C; ci++)
                            for (int64_t kh = 0; kh < K; kh++)
                                for (int64_t kw = 0; kw < K; kw++)
                                    v += (double)w[(o * C + ci) * K * K + kh * K + kw] * band[ci * cs + (r + kh) * Wp + q + kw];
                        float got = yc[o * (rows * OW + 3) + r * OW + q];
                        if (fabs(got - v) > 2e-5 * (1 + fabs(v)))
                            fail_msg("%s case %zu (no pool): o %lld (%lld, %lld): %g, want %g", kernels[kk], c, (long long)o,
                                     (long long)r, (long long)q, (double)got, v);
                    }
            /* acc: adds to what y holds (the stride-1 input gradient's use): v + v, exactly 2v */
            const int64_t ny = O * (rows * OW + 3);
            float *y2 = malloc(sizeof(float) * (size_t)ny);
            assert_non_null(y2);
            memcpy(y2, yc, sizeof(float) * (size_t)ny);
            dp_dconv_s1_band(band, C, cs, Wp, wp, K, K, rows, OW, O, bias, y2, rows * OW + 3, OW, 1);
            for (int64_t o = 0; o < O; o++)
                for (int64_t i = 0; i < rows * OW; i++)
                    assert_true(y2[o * (rows * OW + 3) + i] == 2.0f * yc[o * (rows * OW + 3) + i]);
            free(y2);
            free(yc);
            /* slopes of both signs, then none negative (the kernel's maximum-only epilogue) */
            for (int pos = 0; pos < 2; pos++) {
            if (pos)
                for (int64_t o = 0; o < O; o++) rba[3 * o + 1] = fabsf(rba[3 * o + 1]);
            dp_dconv_s1_pool_band(band, C, cs, Wp, wp, K, K, rows, OW, O, bias, rba, y, ldc, ldr);
            for (int64_t o = 0; o < O; o++)
                for (int64_t pr = 0; pr < PH; pr++)
                    for (int64_t pw = 0; pw < PW; pw++) {
                        double best = -INFINITY;
                        for (int i = 0; i < 4; i++) {
                            int64_t r = 2 * pr + i / 2, q = 2 * pw + i % 2;
                            double v = bias[o];
                            for (int64_t ci = 0; ci < C; ci++)
                                for (int64_t kh = 0; kh < K; kh++)
                                    for (int64_t kw = 0; kw < K; kw++)
                                        v += (double)w[(o * C + ci) * K * K + kh * K + kw] * band[ci * cs + (r + kh) * Wp + q + kw];
                            v = ((v > 0 ? v : 0) - rba[3 * o]) * rba[3 * o + 1] + rba[3 * o + 2];
                            if (v > best) best = v;
                        }
                        float got = y[o * ldc + pr * ldr + pw];
                        if (fabs(got - best) > 2e-5 * (1 + fabs(best)))
                            fail_msg("%s case %zu%s: o %lld (%lld, %lld): %g, want %g", kernels[kk], c, pos ? " (slopes >= 0)" : "",
                                     (long long)o, (long long)pr, (long long)pw, (double)got, best);
                    }
            }
            free(band), free(w), free(wp), free(y), free(bias), free(rba);
        }
    }
    dp_gemm_set_kernel(first);
}

static void shape_errors(void **state) {
    (void)state;
    dp_ctx *ctx;
    dp_ctx_opts o = {.threads = 1};
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    struct {
        int transpose;
        int64_t xs[4], ws[4], bs;
        dp_conv_opts o;
        dp_status want;
    } bad[] = {
        {0, {1, 3, 8, 8}, {4, 2, 3, 3}, 0, {0}, DP_ERR_SHAPE},                           /* Ci mismatch */
        {0, {1, 3, 8, 8}, {4, 1, 3, 3}, 0, {.groups = 2}, DP_ERR_SHAPE},                /* 3 % 2 */
        {0, {1, 3, 2, 2}, {4, 3, 3, 3}, 0, {0}, DP_ERR_SHAPE},                           /* kernel > input */
        {0, {1, 3, 8, 8}, {4, 3, 3, 3}, 5, {0}, DP_ERR_SHAPE},                           /* bias size */
        {0, {1, 3, 8, 8}, {4, 3, 3, 3}, 0, {.stride_h = -1}, DP_ERR_ARG},                /* stride */
        {0, {1, 3, 8, 8}, {4, 3, 3, 3}, 0, {.output_pad_h = 1}, DP_ERR_ARG},             /* conv has none */
        {1, {1, 4, 3, 3}, {4, 2, 3, 3}, 0, {.stride_h = 2, .output_pad_h = 2}, DP_ERR_ARG}, /* op >= stride */
        {1, {1, 4, 3, 3}, {3, 2, 3, 3}, 0, {0}, DP_ERR_SHAPE},                           /* w[0] != Ci */
        {1, {1, 4, 3, 3}, {4, 2, 3, 3}, 0, {.same = 1, .output_pad_w = 1}, DP_ERR_ARG},   /* same + op */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dp_graph *g;
        assert_int_equal(dp_graph_new(ctx, &g), DP_OK);
        dp_node *x = dp_input(g, "x", 4, bad[i].xs), *w = dp_input(g, "w", 4, bad[i].ws);
        dp_node *b = bad[i].bs ? dp_input(g, "b", 1, SH(bad[i].bs)) : NULL;
        dp_node *y = bad[i].transpose ? dp_conv_transpose2d(g, x, w, b, &bad[i].o) : dp_conv2d(g, x, w, b, &bad[i].o);
        assert_null(y);
        assert_int_equal(dp_graph_status(g), bad[i].want);
        assert_non_null(strstr(dp_ctx_error(ctx), bad[i].transpose ? "conv_transpose2d" : "conv2d"));
        dp_graph_free(g);
    }
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ Winograd kernels, portable level */
/* The op takes Winograd with AVX2 or AVX-512 only, so the configurations above never run
 * kernels/wino.c's portable code (its scalar fills and transform loops, what
 * a CPU without AVX2 gets). Here the three passes are called directly with
 * each kernel forced and compared: portable against AVX2, against the naive
 * sums through the op's tests above. 8x8 outputs: AVX2 runs its vector pairs;
 * 7x5: half tiles. */
static float *wino_buf(int64_t n) {
    float *p = calloc((size_t)n, sizeof(float));
    assert_non_null(p);
    return p;
}
static int wino_levels(int64_t H, int64_t W);
static void wino_portable_matches_avx2(void **state) {
    (void)state;
    char first[32];
    snprintf(first, sizeof first, "%s", dp_gemm_kernel_name());
    if (!dp_gemm_set_kernel("avx2")) {
        printf("  (no AVX2: the Winograd kernels' two levels not compared, skipped)\n");
        return;
    }
    int bad = 0;
    for (int gi = 0; gi < 2; gi++) /* 8 x 8 outputs; 7 x 5 (the half tiles) */
        bad += wino_levels(16 - 2 * gi, 16 - 6 * gi);
    assert_true(dp_gemm_set_kernel(first));
    assert_int_equal(bad, 0);
}
static int wino_levels(int64_t H, int64_t W) {
    enum { N = 3, C = 8, O = 12 };
    const int64_t nx = N * C * H * W, ny = N * O * (H / 2) * (W / 2), nw = O * C * 16;
    float *x = wino_buf(nx), *gy = wino_buf(ny), *w = wino_buf(nw), *y[2], *gx[2], *dw[2];
    fill(x, nx, 31), fill(gy, ny, 32), fill(w, nw, 33);
    const int64_t tmpn = DP_GEMM_MR_MAX * (36 * (O > 4 * C ? O : 4 * C) + 16 * (O > C ? O : C));
    for (int k = 0; k < 2; k++) {
        assert_true(dp_gemm_set_kernel(k ? "portable" : "avx2"));
        y[k] = wino_buf(ny), gx[k] = wino_buf(nx), dw[k] = wino_buf(nw);
        float *tmp = wino_buf(tmpn), *u = wino_buf(36 * (O + 32) * (C + 32));
        float *scr = wino_buf(dp_wino_scratch_floats(N, C, H, W, O));
        dp_wino_pack_w(w, O, C, 0, dp_wino_pack_panels(O), tmp, u);
        dp_wino_images(u, x, N, C, H, W, O, NULL, 0, y[k], scr);
        free(scr);
        scr = wino_buf(dp_wino_t_scratch_floats(N, C, H, W, O));
        dp_wino_t_pack_w(w, O, C, 0, dp_wino_t_pack_panels(C), tmp, u);
        dp_wino_t_images(u, gy, N, C, H, W, O, gx[k], scr);
        free(scr);
        scr = wino_buf(dp_wino_w_scratch_floats(C, H, W, O));
        float *M = wino_buf(dp_wino_w_m_floats(O, C));
        dp_wino_w_pairs(gy, x, N, C, H, W, O, 0, 36, M, scr);
        dp_wino_w_out(M, O, C, 0, O, dw[k]);
        free(scr), free(M), free(tmp), free(u);
    }
    int bad = !close_arrays("y", "Winograd portable vs AVX2", y[1], y[0], ny, 1e-5f);
    bad += !close_arrays("dx", "Winograd portable vs AVX2", gx[1], gx[0], nx, 1e-5f);
    bad += !close_arrays("dw", "Winograd portable vs AVX2", dw[1], dw[0], nw, 1e-5f);
    for (int k = 0; k < 2; k++) free(y[k]), free(gx[k]), free(dw[k]);
    free(x), free(gy), free(w);
    return bad;
}

int main(void) {
    dp_wino_min_tiles = 0; /* the Winograd configurations are small batches */
    dp_wino_w_chunk = 32;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_naive),
        cmocka_unit_test(gradients_independent_of_threads),
        cmocka_unit_test(kernels_agree),
        cmocka_unit_test(s2k4_row_helpers),
        cmocka_unit_test(hand_conv_window_sums),
        cmocka_unit_test(hand_conv_same_even),
        cmocka_unit_test(hand_conv_stride2_same),
        cmocka_unit_test(hand_tconv),
        cmocka_unit_test(s1_pool_band_matches_definition),
        cmocka_unit_test(shape_errors),
        cmocka_unit_test(wino_portable_matches_avx2),
    };
    return cmocka_run_group_tests_name("conv", tests, NULL, NULL);
}
