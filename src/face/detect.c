/* Viola–Jones detection as OpenCV 4's CascadeClassifier::detectMultiScale
 * does it (modules/objdetect/src/cascadedetect.cpp), so that both find the
 * same windows:
 *
 *  - scales: factor = scale_factor^k while the window (rounded) fits the image;
 *    those outside [min_size, max_size] are skipped;
 *  - each scale: the grey image is resized to round(W/f) x round(H/f) with
 *    OpenCV's bit-exact bilinear (INTER_LINEAR_EXACT: 8-bit fixed-point
 *    weights, no antialiasing), then its integral, squared integral (32-bit,
 *    wrapping: window sums stay exact) and, for cascades with tilted
 *    features, 45° integral are computed;
 *  - windows at (x, y) with step 2 while f < 2, else 1; a window rejected by
 *    stage 0 skips one more step; a hit is (round(x f), round(y f),
 *    round(win_w f), round(win_h f)); rows are covered as OpenCV's parallel
 *    stripes cover them (ceil(first working width / 32) stripes of a whole
 *    number of steps each), which can leave out a scale's last row;
 *  - Haar: the window's standard deviation is measured on the window less a
 *    one-pixel border; windows with sd <= 10 are rejected; feature values are
 *    sum(weight * rect sum) / (area * sd), compared with the node thresholds
 *    in float; stage sums of leaves in double against (threshold - 1e-5);
 *  - LBP: 8-bit codes from a 3x3 grid of cells, looked up in each node's
 *    256-bit subset;
 *  - grouping: groupRectangles (partition with the eps-similarity, average,
 *    drop small groups and groups inside stronger ones).
 *
 * Checked against OpenCV 4.6 (python3-opencv) on Solvay, a video frame and
 * face crops with alt2, default, fullbody (tilted features), eyeglasses (trees),
 * upperbody and two LBP cascades: the same raw windows, and with grouping the
 * same boxes and neighbour counts (docs/faces.md).
 *
 * The scan has a scalar path (eval_haar, eval_lbp: the reference) and vector
 * paths for Haar cascades (AVX2, AVX-512; see below), chosen from cpuid at each
 * call; DP_KERNEL=portable|avx2|avx512 forces one.
 *
 * Everything a call needs is allocated once per call, sized by the image. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "face/face_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(DP_PORTABLE)
#define FC_X86 1
#include <immintrin.h>
#endif

#define FC_GROUP_EPS 0.2
#define FC_PAD_ELEMS 64 /* slack after the integral planes: vector loads past a row's end stay inside */

typedef struct fc_opt_haar {
    int32_t ofs[3][4];
    float w[3];
} fc_opt_haar;

typedef struct fc_opt_lbp {
    int32_t ofs[16];
} fc_opt_lbp;

/* A growable list of boxes (amortised doubling: not one allocation per hit). */
typedef struct box_list {
    dp_face_box *b;
    int n, cap;
} box_list;

/* The working state of one detection call. */
typedef struct scan {
    const dp_face_detector *d;
    dp_ctx *ctx;
    int stride;           /* row length of the integral planes: max layer width + 1 */
    size_t plane;         /* elements per plane */
    uint32_t *ii;         /* plane 0: sum; 1: squared sum (Haar); 2: tilted sum */
    uint8_t *layer;       /* the scaled image */
    uint16_t *hbuf;       /* resize: two horizontally filtered rows */
    int *xofs, *yofs;     /* resize tables */
    uint16_t *xc, *yc;
    uint32_t *trows;      /* tilted integral: three rows of the extended plane */
    uint32_t *tmp_row;    /* integral: one row of running sums and one of squares */
    void *opt;            /* fc_opt_haar[] or fc_opt_lbp[] for this stride */
    int32_t nofs[4];      /* the normalisation rectangle */
    double norm_area;
    box_list hits;
    /* vector paths (Haar): nodes with their offsets inline, padded leaves,
     * one row of stage-0 results, and the list of windows still alive */
    int avx2;                    /* the CPU has AVX2 (resize) */
    int hoff;                    /* split layout: where the odd columns start in a row */
    const struct fc_vnode *cur_vn; /* this scale's node table (normal or split layout) */
    const int32_t *cur_nofs;
    int32_t nofs2[4];
    struct fc_vnode *vn;         /* [2][n_nodes]: normal, split */
    float *vleaves;
    unsigned *row_ok, *row_pass; /* per block of lanes: not flat; passed stage 0 */
    float *row_vnf;
    int32_t *seg_ofs, *seg_stage; /* segments: 4 neighbouring windows, their stage */
    float *seg_vnf;               /* 4 per segment */
    uint8_t *seg_mask;            /* which of the 4 are alive */
} scan;

typedef struct fc_vnode {
    int32_t ofs[3][4];
    float w[3];
    float thr;
    int32_t left, right;
} fc_vnode;

static inline int round_f(float v) { return (int)lrintf(v); }
static inline int round_d(double v) { return (int)lrint(v); }

static int box_push(scan *S, box_list *L, dp_face_box b) {
    if (L->n == L->cap) {
        int nc = L->cap ? L->cap * 2 : 256;
        if (nc > (1 << 26)) return 0;
        dp_face_box *q = dp_malloc(S->ctx, (size_t)nc * sizeof *q);
        if (!q) return 0;
        if (L->b) memcpy(q, L->b, (size_t)L->n * sizeof *q);
        dp_free(S->ctx, L->b);
        L->b = q;
        L->cap = nc;
    }
    L->b[L->n++] = b;
    return 1;
}

/* ------------------------------------------------------------ resize (INTER_LINEAR_EXACT) */
/* OpenCV's interpolationLinear::getCoeffs: source offset and 8-bit weight of
 * the right/lower neighbour for each destination index; indices before
 * *lo take the first source sample, from *hi on the last. */
static void linear_table(int ssize, int dsize, int *ofs, uint16_t *c1, int *lo, int *hi) {
    const double inv = (double)dsize / ssize;
    const double scale = 1.0 / inv;
    *lo = 0;
    *hi = dsize;
    for (int v = 0; v < dsize; v++) {
        double t = (double)v + 0.5; /* separate statements: no fused multiply-add */
        double m = scale * t;
        double fval = m - 0.5;
        int ival = (int)floor(fval);
        ofs[v] = 0;
        c1[v] = 0;
        if (ival >= 0 && ssize > 1) {
            if (ival < ssize - 1) {
                double frac = fval - (double)ival;
                ofs[v] = ival;
                c1[v] = (uint16_t)nearbyint(frac * 256.0);
            } else {
                ofs[v] = ssize - 1;
                if (v < *hi) *hi = v;
            }
        } else {
            if (v + 1 > *lo) *lo = v + 1;
        }
    }
    if (*lo > *hi) *lo = *hi;
}

#ifdef FC_X86
/* The same, eight outputs at a time: the two neighbours are read as one
 * 32-bit gather (only where the four bytes stay inside the row) and weighted
 * with one multiply-add of 16-bit pairs. */
__attribute__((target("avx2"))) static int hline_avx2(const uint8_t *src, int sw, const int *ofs, const uint16_t *c1,
                                                      int x, int hi, uint16_t *dst) {
    const __m256i lowbyte = _mm256_set1_epi32(0xFF), c256 = _mm256_set1_epi32(256);
    for (; x + 8 <= hi && ofs[x + 7] + 4 <= sw; x += 8) {
        const __m256i o = _mm256_loadu_si256((const __m256i *)(ofs + x));
        const __m256i v = _mm256_i32gather_epi32((const int *)src, o, 1);
        const __m256i pair = _mm256_or_si256(_mm256_and_si256(v, lowbyte),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(v, 8), lowbyte), 16));
        const __m256i w1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(c1 + x)));
        const __m256i w = _mm256_or_si256(_mm256_sub_epi32(c256, w1), _mm256_slli_epi32(w1, 16));
        const __m256i r = _mm256_madd_epi16(pair, w); /* p0 * (256 - c1) + p1 * c1 <= 65280 */
        const __m256i pk = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128((__m128i *)(dst + x), _mm256_castsi256_si128(pk));
    }
    return x;
}

/* d[x] = (h0[x] * c0 + h1[x] * c1 + 2^15) >> 16, sixteen at a time; returns where it stopped. */
__attribute__((target("avx2"))) static int vline_avx2(const uint16_t *h0, const uint16_t *h1, uint32_t c0,
                                                      uint32_t c1, uint8_t *d, int dw) {
    const __m256i w0 = _mm256_set1_epi32((int)c0), w1 = _mm256_set1_epi32((int)c1), half = _mm256_set1_epi32(32768);
    int x = 0;
    for (; x + 16 <= dw; x += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            const __m256i a = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h0 + x + 8 * k)));
            const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h1 + x + 8 * k)));
            r[k] = _mm256_srli_epi32(
                _mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(a, w0), _mm256_mullo_epi32(b, w1)), half), 16);
        }
        /* 16 values <= 255: pack 32 -> 16 -> 8 bits (packs work within 128-bit halves) */
        const __m256i p16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8);
        const __m128i p8 = _mm_packus_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
        _mm_storeu_si128((__m128i *)(d + x), p8);
    }
    return x;
}
#endif

static void hline(const uint8_t *src, int sw, const int *ofs, const uint16_t *c1, int lo, int hi, int dw,
                  uint16_t *dst, int avx2) {
    int x = 0;
    for (; x < lo; x++) dst[x] = (uint16_t)(src[0] << 8);
#ifdef FC_X86
    if (avx2) x = hline_avx2(src, sw, ofs, c1, x, hi, dst);
#else
    (void)avx2;
#endif
    for (; x < hi; x++) {
        const uint8_t *p = src + ofs[x];
        dst[x] = (uint16_t)(p[0] * (256 - c1[x]) + p[1] * c1[x]);
    }
    const uint8_t last = src[dw > 0 ? ofs[dw - 1] : sw - 1];
    for (; x < dw; x++) dst[x] = (uint16_t)(last << 8);
}

static void resize_exact(scan *S, const uint8_t *src, int sw, int sh, int sstride, uint8_t *dst, int dw, int dh) {
    int xlo, xhi, ylo, yhi;
    linear_table(sw, dw, S->xofs, S->xc, &xlo, &xhi);
    linear_table(sh, dh, S->yofs, S->yc, &ylo, &yhi);
    uint16_t *h0 = S->hbuf, *h1 = S->hbuf + dw;
    int have0 = -1, have1 = -1; /* source rows held in h0/h1 */
    for (int y = 0; y < dh; y++) {
        uint8_t *d = dst + (size_t)y * dw;
        if (y < ylo || y >= yhi) {
            int r = y < ylo ? 0 : sh - 1;
            hline(src + (size_t)r * sstride, sw, S->xofs, S->xc, xlo, xhi, dw, h0, S->avx2);
            have0 = -1;
            for (int x = 0; x < dw; x++) d[x] = (uint8_t)((h0[x] + 128) >> 8);
            continue;
        }
        int r = S->yofs[y];
        if (have0 != r) {
            if (have1 == r) { /* slide down */
                uint16_t *t = h0;
                h0 = h1;
                h1 = t;
                have0 = r;
                have1 = -1;
            } else {
                hline(src + (size_t)r * sstride, sw, S->xofs, S->xc, xlo, xhi, dw, h0, S->avx2);
                have0 = r;
            }
        }
        if (have1 != r + 1) {
            hline(src + (size_t)(r + 1) * sstride, sw, S->xofs, S->xc, xlo, xhi, dw, h1, S->avx2);
            have1 = r + 1;
        }
        const uint32_t c1 = S->yc[y], c0 = 256 - c1;
        int x = 0;
#ifdef FC_X86
        if (S->avx2) x = vline_avx2(h0, h1, c0, c1, d, dw);
#endif
        for (; x < dw; x++) d[x] = (uint8_t)((h0[x] * c0 + h1[x] * c1 + 32768u) >> 16);
    }
}

/* ------------------------------------------------------------ integral images */
/* split: store each row's even columns first, then its odd ones (the layout
 * the vector paths read step-2 scales in). */
#if defined(__GNUC__) || defined(__clang__)
typedef uint32_t fc_v4u __attribute__((vector_size(16)));
#endif
/* dst[i] = a[i] + b[i] (wrapping) for i < n. */
static void add_rows(uint32_t *dst, const uint32_t *a, const uint32_t *b, int n) {
    int i = 0;
#if defined(__GNUC__) || defined(__clang__)
    for (; i + 8 <= n; i += 8) {
        fc_v4u x0, x1, y0, y1;
        memcpy(&x0, a + i, 16);
        memcpy(&x1, a + i + 4, 16);
        memcpy(&y0, b + i, 16);
        memcpy(&y1, b + i + 4, 16);
        x0 += y0;
        x1 += y1;
        memcpy(dst + i, &x0, 16);
        memcpy(dst + i + 4, &x1, 16);
    }
#endif
    for (; i < n; i++) dst[i] = a[i] + b[i];
}

static void integrals(scan *S, const uint8_t *img, int w, int h, int istride, int split) {
    const int st = S->stride;
    uint32_t *sum = S->ii, *sq = S->ii + S->plane;
    uint32_t *ts = S->tmp_row, *tq = S->tmp_row + st;
    const int haar = S->d->kind == FC_HAAR;
    const int ho = S->hoff;
    memset(sum, 0, (size_t)st * sizeof *sum);
    if (haar) memset(sq, 0, (size_t)st * sizeof *sq);
    ts[0] = tq[0] = 0;
    for (int y = 0; y < h; y++) {
        const uint8_t *p = img + (size_t)y * istride;
        uint32_t *s1 = sum + (size_t)(y + 1) * st, *s0 = s1 - st;
        uint32_t *q1 = sq + (size_t)(y + 1) * st, *q0 = q1 - st;
        /* the row's running sums, in the plane's column order; then add the row above */
        uint32_t rs = 0, rq = 0;
        if (!haar) {
            for (int x = 0; x < w; x++) ts[x + 1] = rs += p[x];
            add_rows(s1, s0, ts, w + 1);
            continue;
        }
        if (!split) {
            for (int x = 0; x < w; x++) {
                const uint32_t v = p[x];
                ts[x + 1] = rs += v;
                tq[x + 1] = rq += v * v;
            }
            add_rows(s1, s0, ts, w + 1);
            add_rows(q1, q0, tq, w + 1);
            continue;
        }
        int x = 0;
        for (; x + 1 < w; x += 2) { /* columns x+1 (odd) and x+2 (even) */
            const int ko = ho + (x >> 1), ke = (x >> 1) + 1;
            uint32_t v = p[x];
            ts[ko] = rs += v;
            tq[ko] = rq += v * v;
            v = p[x + 1];
            ts[ke] = rs += v;
            tq[ke] = rq += v * v;
        }
        if (x < w) {
            const uint32_t v = p[x];
            const int ko = ho + (x >> 1);
            ts[ko] = rs += v;
            tq[ko] = rq += v * v;
        }
        const int ne = w / 2 + 1, no = (w + 1) / 2; /* even columns 0..w, odd columns 1..w */
        add_rows(s1, s0, ts, ne);
        add_rows(q1, q0, tq, ne);
        add_rows(s1 + ho, s0 + ho, ts + ho, no);
        add_rows(q1 + ho, q0 + ho, tq + ho, no);
    }
    if (!S->d->has_tilted) return;
    /* Tilted sum T(X,Y) = sum of I(x,y) over y < Y, |x - X + 1| <= Y - y - 1 (the
     * pixels of an upward triangle whose apex is I(X-1, Y-1)), zero outside the
     * image, by T(X,Y) = T(X-1,Y-1) + T(X+1,Y-1) - T(X,Y-2) + I(X-1,Y-1) + I(X-1,Y-2).
     * Rows are computed on columns [-(h-Y), w+(h-Y)], all that later rows need. */
    uint32_t *tp = S->ii + 2 * S->plane;
    const int ext = h + 1, rw = w + 2 * ext + 1;
    uint32_t *rows[3] = {S->trows, S->trows + rw, S->trows + 2 * (size_t)rw};
    memset(S->trows, 0, 3 * (size_t)rw * sizeof *S->trows);
    memset(tp, 0, (size_t)st * sizeof *tp);
    for (int Y = 1; Y <= h; Y++) {
        uint32_t *cur = rows[Y % 3] + ext, *a = rows[(Y + 2) % 3] + ext, *b = rows[(Y + 1) % 3] + ext;
        const uint8_t *r1 = img + (size_t)(Y - 1) * istride;
        const uint8_t *r2 = Y >= 2 ? img + (size_t)(Y - 2) * istride : NULL;
        const int lo = -(h - Y), hi = w + (h - Y);
        for (int X = lo; X <= hi; X++) {
            uint32_t v = a[X - 1] + a[X + 1] - b[X];
            int px = X - 1;
            if (px >= 0 && px < w) {
                v += r1[px];
                if (r2) v += r2[px];
            }
            cur[X] = v;
        }
        uint32_t *dst = tp + (size_t)Y * st;
        if (!split) memcpy(dst, cur, (size_t)(w + 1) * sizeof *tp);
        else
            for (int X = 0; X <= w; X++) dst[(X & 1) ? S->hoff + (X >> 1) : (X >> 1)] = cur[X];
    }
}

/* ------------------------------------------------------------ per-call feature offsets */
static void prepare_features(scan *S) {
    const dp_face_detector *d = S->d;
    const int st = S->stride;
    if (d->kind == FC_HAAR) {
        fc_opt_haar *o = S->opt;
        const int32_t tofs = (int32_t)(2 * S->plane);
        for (int i = 0; i < d->n_features; i++) {
            const fc_feature *f = &d->features[i];
            memset(&o[i], 0, sizeof o[i]);
            for (int k = 0; k < f->nrect; k++) {
                const fc_rect *r = &f->r[k];
                int32_t *q = o[i].ofs[k];
                o[i].w[k] = r->weight;
                if (f->tilted) {
                    q[0] = tofs + r->x + st * r->y;
                    q[1] = tofs + r->x - r->h + st * (r->y + r->h);
                    q[2] = tofs + r->x + r->w + st * (r->y + r->w);
                    q[3] = tofs + r->x + r->w - r->h + st * (r->y + r->w + r->h);
                } else {
                    q[0] = r->x + st * r->y;
                    q[1] = r->x + r->w + st * r->y;
                    q[2] = r->x + st * (r->y + r->h);
                    q[3] = r->x + r->w + st * (r->y + r->h);
                }
            }
        }
        const int nx = 1, ny = 1, nw = d->win_w - 2, nh = d->win_h - 2;
        S->nofs[0] = nx + st * ny;
        S->nofs[1] = nx + nw + st * ny;
        S->nofs[2] = nx + st * (ny + nh);
        S->nofs[3] = nx + nw + st * (ny + nh);
        S->norm_area = (double)nw * nh;
    } else {
        fc_opt_lbp *o = S->opt;
        for (int i = 0; i < d->n_features; i++) {
            const fc_rect *r = &d->features[i].r[0];
            for (int ry = 0; ry < 4; ry++)
                for (int rx = 0; rx < 4; rx++) o[i].ofs[ry * 4 + rx] = (r->x + rx * r->w) + st * (r->y + ry * r->h);
        }
    }
}

/* ------------------------------------------------------------ evaluation of one window */
#define RSUM(p, o) ((int32_t)((p)[(o)[0]] - (p)[(o)[1]] - (p)[(o)[2]] + (p)[(o)[3]]))

/* 1: face; 0: rejected by stage 0 (the caller skips a step); -k: rejected by
 * stage k; -1 also for flat windows (no skip, as OpenCV). */
static int eval_haar(const scan *S, const uint32_t *p) {
    const dp_face_detector *d = S->d;
    const uint32_t *pq = p + S->plane;
    const int32_t vs = RSUM(p, S->nofs);
    const uint32_t vq = pq[S->nofs[0]] - pq[S->nofs[1]] - pq[S->nofs[2]] + pq[S->nofs[3]];
    double nf = S->norm_area * (double)vq - (double)vs * (double)vs;
    if (!(nf > 0.)) return -1;
    nf = sqrt(nf);
    const float vnf = (float)(1. / nf);
    if (!(S->norm_area * vnf < 1e-1)) return -1;
    const fc_opt_haar *opt = S->opt;
    const fc_node *nodes = d->nodes;
    const float *leaves = d->leaves;
    for (int si = 0; si < d->n_stages; si++) {
        const fc_stage *stg = &d->stages[si];
        double sum = 0;
        for (int ti = stg->first_tree, te = stg->first_tree + stg->ntrees; ti < te; ti++) {
            const fc_tree *t = &d->trees[ti];
            const fc_node *root = nodes + t->first_node;
            int idx = 0;
            do {
                const fc_node *nd = root + idx;
                const fc_opt_haar *f = &opt[nd->feature];
                float ret = f->w[0] * (float)RSUM(p, f->ofs[0]) + f->w[1] * (float)RSUM(p, f->ofs[1]);
                if (f->w[2] != 0.0f) ret += f->w[2] * (float)RSUM(p, f->ofs[2]);
                const float val = ret * vnf;
                idx = val < nd->threshold ? nd->left : nd->right;
            } while (idx > 0);
            sum += leaves[t->first_leaf - idx];
        }
        if (sum < stg->threshold) return -si;
    }
    return 1;
}

static int eval_lbp(const scan *S, const uint32_t *p) {
    const dp_face_detector *d = S->d;
    const fc_opt_lbp *opt = S->opt;
    for (int si = 0; si < d->n_stages; si++) {
        const fc_stage *stg = &d->stages[si];
        double sum = 0;
        for (int ti = stg->first_tree, te = stg->first_tree + stg->ntrees; ti < te; ti++) {
            const fc_tree *t = &d->trees[ti];
            int idx = 0;
            do {
                const int ni = t->first_node + idx;
                const fc_node *nd = &d->nodes[ni];
                const int32_t *o = opt[nd->feature].ofs;
#define CS(a, b, c, e) ((int32_t)(p[o[a]] - p[o[b]] - p[o[c]] + p[o[e]]))
                const int32_t cval = CS(5, 6, 9, 10);
                const int c = (CS(0, 1, 4, 5) >= cval ? 128 : 0) | (CS(1, 2, 5, 6) >= cval ? 64 : 0) |
                              (CS(2, 3, 6, 7) >= cval ? 32 : 0) | (CS(6, 7, 10, 11) >= cval ? 16 : 0) |
                              (CS(10, 11, 14, 15) >= cval ? 8 : 0) | (CS(9, 10, 13, 14) >= cval ? 4 : 0) |
                              (CS(8, 9, 12, 13) >= cval ? 2 : 0) | (CS(4, 5, 8, 9) >= cval ? 1 : 0);
#undef CS
                const uint32_t *subset = d->subsets + (size_t)ni * FC_LBP_SUBSET;
                idx = (subset[c >> 5] & (1u << (c & 31))) ? nd->left : nd->right;
            } while (idx > 0);
            sum += d->leaves[t->first_leaf - idx];
        }
        if (sum < stg->threshold) return -si;
    }
    return 1;
}

/* ------------------------------------------------------------ vector paths (AVX2, AVX-512) */
/* The same arithmetic as eval_haar, 8 (AVX2) or 16 (AVX-512) windows at a
 * time, with the same operations in the same order (no fused multiply-add),
 * so the results are identical bit for bit (tests/test_face.c compares the
 * paths).
 *
 * One row of windows at a time: the variance normalisation and stage 0 are
 * computed for every window of the step grid, neighbours side by side in
 * the lanes, read with contiguous loads (at step 2 the integral planes are
 * stored with even columns first, then odd ones, so windows 2i..2i+2L-2 are
 * still contiguous). The row is then walked with OpenCV's rule (one more
 * step after a stage-0 rejection) to mark the windows it evaluates that
 * pass. Those continue side by side through stages 1, 2, ... while at least
 * two of the vector's quarters (groups of 4 lanes) hold one; then each quarter
 * with a live window becomes a "segment" (4 neighbouring windows, their
 * factors, which are alive). Segments are finished at the end of the scale,
 * stage by stage, 2 (AVX2) or 4 (AVX-512) to a vector: a corner is read with
 * one 4-lane load per segment, inserted into the vector. (Gathered loads, one
 * window per lane, were tried first: no faster here, and gathers are slow on
 * many CPUs.)
 *
 * A tree is evaluated on all lanes by visiting its nodes in index order
 * (children come after their parent), each lane following its own path; a
 * node no lane reaches is skipped. */
#ifdef FC_X86
#define FC_INLINE __attribute__((always_inline)) inline

/* ---- AVX2: 8 lanes */
#define T_AVX2 __attribute__((target("avx2")))

/* seg 0: lanes are the 8 windows from base on; seg 1: lanes 4j..4j+3 are the
 * 4 windows from sp[j] on (two segments from anywhere in the plane) */
T_AVX2 static FC_INLINE __m256i a2_load(int seg, const uint32_t *base, const uint32_t *const *sp, int32_t o) {
    if (!seg) return _mm256_loadu_si256((const __m256i *)(base + o));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(sp[0] + o))),
                                   _mm_loadu_si128((const __m128i *)(sp[1] + o)), 1);
}
T_AVX2 static FC_INLINE __m256i a2_rsum(int seg, const uint32_t *base, const uint32_t *const *sp, const int32_t *o) {
    __m256i a = a2_load(seg, base, sp, o[0]), b = a2_load(seg, base, sp, o[1]);
    __m256i c = a2_load(seg, base, sp, o[2]), e = a2_load(seg, base, sp, o[3]);
    return _mm256_add_epi32(_mm256_sub_epi32(_mm256_sub_epi32(a, b), c), e);
}
T_AVX2 static FC_INLINE unsigned a2_stage(int seg, const scan *S, int si, const uint32_t *base,
                                         const uint32_t *const *sp, const float *vnf_in) {
    const dp_face_detector *d = S->d;
    const fc_stage *stg = &d->stages[si];
    const __m256 vnf = _mm256_loadu_ps(vnf_in);
    __m256d s_lo = _mm256_setzero_pd(), s_hi = _mm256_setzero_pd();
    for (int ti = stg->first_tree, te = stg->first_tree + stg->ntrees; ti < te; ti++) {
        const fc_tree *t = &d->trees[ti];
        const fc_vnode *nodes = S->cur_vn + t->first_node;
        __m256i at = _mm256_setzero_si256(); /* each lane's current node (> 0), or -leaf (<= 0) */
        for (int j = 0; j < t->node_count; j++) {
            const __m256i here = _mm256_cmpeq_epi32(at, _mm256_set1_epi32(j));
            if (j > 0 && _mm256_testz_si256(here, here)) continue;
            const fc_vnode *nd = &nodes[j];
            const __m256 r0 = _mm256_mul_ps(_mm256_set1_ps(nd->w[0]), _mm256_cvtepi32_ps(a2_rsum(seg, base, sp, nd->ofs[0])));
            const __m256 r1 = _mm256_mul_ps(_mm256_set1_ps(nd->w[1]), _mm256_cvtepi32_ps(a2_rsum(seg, base, sp, nd->ofs[1])));
            __m256 r = _mm256_add_ps(r0, r1);
            if (nd->w[2] != 0.0f)
                r = _mm256_add_ps(r, _mm256_mul_ps(_mm256_set1_ps(nd->w[2]),
                                                   _mm256_cvtepi32_ps(a2_rsum(seg, base, sp, nd->ofs[2]))));
            const __m256 val = _mm256_mul_ps(r, vnf);
            const __m256i lt = _mm256_castps_si256(_mm256_cmp_ps(val, _mm256_set1_ps(nd->thr), _CMP_LT_OQ));
            const __m256i next = _mm256_blendv_epi8(_mm256_set1_epi32(nd->right), _mm256_set1_epi32(nd->left), lt);
            at = j == 0 ? next : _mm256_blendv_epi8(at, next, here);
        }
        const __m256i leaf = _mm256_sub_epi32(_mm256_setzero_si256(), at);
        __m256 lv;
        if (t->node_count < 8) lv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(S->vleaves + t->first_leaf), leaf);
        else lv = _mm256_i32gather_ps(S->vleaves + t->first_leaf, leaf, 4);
        s_lo = _mm256_add_pd(s_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(lv)));
        s_hi = _mm256_add_pd(s_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(lv, 1)));
    }
    const __m256d th = _mm256_set1_pd((double)stg->threshold);
    return (unsigned)(_mm256_movemask_pd(_mm256_cmp_pd(s_lo, th, _CMP_NLT_UQ)) |
                      (_mm256_movemask_pd(_mm256_cmp_pd(s_hi, th, _CMP_NLT_UQ)) << 4));
}
T_AVX2 static unsigned a2_stage_dense(const scan *S, int si, const uint32_t *p, const float *vnf) {
    return a2_stage(0, S, si, p, NULL, vnf);
}
T_AVX2 static unsigned a2_stage_seg(const scan *S, int si, const uint32_t *const *sp, const float *vnf) {
    return a2_stage(1, S, si, NULL, sp, vnf);
}
/* Variance normalisation and stage 0 of the 8 windows at p: vnf_out[i] the
 * factor; bit i of *ok: not flat, of *pass: not flat and passed stage 0. */
T_AVX2 static void a2_norm0(const scan *S, const uint32_t *p, float *vnf_out, unsigned *ok_out, unsigned *pass_out) {
    const __m256d area = _mm256_set1_pd(S->norm_area);
    const __m256d two31 = _mm256_set1_pd(2147483648.0);
    const __m128i flip = _mm_set1_epi32(INT32_MIN);
    const __m256i vs = a2_rsum(0, p, NULL, S->cur_nofs);
    const __m256i vq = a2_rsum(0, p + S->plane, NULL, S->cur_nofs);
    /* nf = area * (double)vq - (double)vs * (double)vs (vq unsigned), per half */
    const __m256d q0 = _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(_mm256_castsi256_si128(vq), flip)), two31);
    const __m256d q1 = _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(_mm256_extracti128_si256(vq, 1), flip)), two31);
    const __m256d s0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(vs));
    const __m256d s1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(vs, 1));
    const __m256d n0 = _mm256_sub_pd(_mm256_mul_pd(area, q0), _mm256_mul_pd(s0, s0));
    const __m256d n1 = _mm256_sub_pd(_mm256_mul_pd(area, q1), _mm256_mul_pd(s1, s1));
    const __m256d pos0 = _mm256_cmp_pd(n0, _mm256_setzero_pd(), _CMP_GT_OQ);
    const __m256d pos1 = _mm256_cmp_pd(n1, _mm256_setzero_pd(), _CMP_GT_OQ);
    const __m256d one = _mm256_set1_pd(1.0);
    /* flat lanes get nf = 1 (any finite value: they are discarded) */
    const __m256d r0 = _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_blendv_pd(one, n0, pos0)));
    const __m256d r1 = _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_blendv_pd(one, n1, pos1)));
    const __m128 f0 = _mm256_cvtpd_ps(r0), f1 = _mm256_cvtpd_ps(r1);
    _mm256_storeu_ps(vnf_out, _mm256_set_m128(f1, f0));
    const __m256d tiny = _mm256_set1_pd(1e-1);
    const __m256d c0 = _mm256_cmp_pd(_mm256_mul_pd(area, _mm256_cvtps_pd(f0)), tiny, _CMP_LT_OQ);
    const __m256d c1 = _mm256_cmp_pd(_mm256_mul_pd(area, _mm256_cvtps_pd(f1)), tiny, _CMP_LT_OQ);
    const unsigned ok =
        (unsigned)(_mm256_movemask_pd(_mm256_and_pd(pos0, c0)) | (_mm256_movemask_pd(_mm256_and_pd(pos1, c1)) << 4));
    *ok_out = ok;
    *pass_out = ok ? ok & a2_stage(0, S, 0, p, NULL, vnf_out) : 0;
}

/* ---- AVX-512: 16 lanes */
#define T_AVX512 __attribute__((target("avx512f")))

/* seg 1: lanes 4j..4j+3 are the 4 windows from sp[j] on (four segments) */
T_AVX512 static FC_INLINE __m512i a5_load(int seg, const uint32_t *base, const uint32_t *const *sp, int32_t o) {
    if (!seg) return _mm512_loadu_si512((const void *)(base + o));
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(sp[0] + o)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(sp[1] + o)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(sp[2] + o)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(sp[3] + o)), 3);
}
T_AVX512 static FC_INLINE __m512i a5_rsum(int seg, const uint32_t *base, const uint32_t *const *sp, const int32_t *o) {
    __m512i a = a5_load(seg, base, sp, o[0]), b = a5_load(seg, base, sp, o[1]);
    __m512i c = a5_load(seg, base, sp, o[2]), e = a5_load(seg, base, sp, o[3]);
    return _mm512_add_epi32(_mm512_sub_epi32(_mm512_sub_epi32(a, b), c), e);
}
T_AVX512 static FC_INLINE __m512d a5_lo_pd(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
T_AVX512 static FC_INLINE __m512d a5_hi_pd(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
T_AVX512 static FC_INLINE unsigned a5_stage(int seg, const scan *S, int si, const uint32_t *base,
                                           const uint32_t *const *sp, const float *vnf_in) {
    const dp_face_detector *d = S->d;
    const fc_stage *stg = &d->stages[si];
    const __m512 vnf = _mm512_loadu_ps(vnf_in);
    __m512d s_lo = _mm512_setzero_pd(), s_hi = _mm512_setzero_pd();
    for (int ti = stg->first_tree, te = stg->first_tree + stg->ntrees; ti < te; ti++) {
        const fc_tree *t = &d->trees[ti];
        const fc_vnode *nodes = S->cur_vn + t->first_node;
        __m512i at = _mm512_setzero_si512();
        for (int j = 0; j < t->node_count; j++) {
            const __mmask16 here = j == 0 ? (__mmask16)0xFFFF : _mm512_cmpeq_epi32_mask(at, _mm512_set1_epi32(j));
            if (!here) continue;
            const fc_vnode *nd = &nodes[j];
            const __m512 r0 = _mm512_mul_ps(_mm512_set1_ps(nd->w[0]), _mm512_cvtepi32_ps(a5_rsum(seg, base, sp, nd->ofs[0])));
            const __m512 r1 = _mm512_mul_ps(_mm512_set1_ps(nd->w[1]), _mm512_cvtepi32_ps(a5_rsum(seg, base, sp, nd->ofs[1])));
            __m512 r = _mm512_add_ps(r0, r1);
            if (nd->w[2] != 0.0f)
                r = _mm512_add_ps(r, _mm512_mul_ps(_mm512_set1_ps(nd->w[2]),
                                                   _mm512_cvtepi32_ps(a5_rsum(seg, base, sp, nd->ofs[2]))));
            const __m512 val = _mm512_mul_ps(r, vnf);
            const __mmask16 lt = _mm512_cmp_ps_mask(val, _mm512_set1_ps(nd->thr), _CMP_LT_OQ);
            const __m512i next = _mm512_mask_blend_epi32(lt, _mm512_set1_epi32(nd->right), _mm512_set1_epi32(nd->left));
            at = _mm512_mask_blend_epi32(here, at, next);
        }
        const __m512i leaf = _mm512_sub_epi32(_mm512_setzero_si512(), at);
        __m512 lv;
        if (t->node_count < 16) lv = _mm512_permutexvar_ps(leaf, _mm512_loadu_ps(S->vleaves + t->first_leaf));
        else lv = _mm512_i32gather_ps(leaf, S->vleaves + t->first_leaf, 4);
        s_lo = _mm512_add_pd(s_lo, a5_lo_pd(lv));
        s_hi = _mm512_add_pd(s_hi, a5_hi_pd(lv));
    }
    const __m512d th = _mm512_set1_pd((double)stg->threshold);
    return (unsigned)_mm512_cmp_pd_mask(s_lo, th, _CMP_NLT_UQ) |
           ((unsigned)_mm512_cmp_pd_mask(s_hi, th, _CMP_NLT_UQ) << 8);
}
T_AVX512 static unsigned a5_stage_dense(const scan *S, int si, const uint32_t *p, const float *vnf) {
    return a5_stage(0, S, si, p, NULL, vnf);
}
T_AVX512 static unsigned a5_stage_seg(const scan *S, int si, const uint32_t *const *sp, const float *vnf) {
    return a5_stage(1, S, si, NULL, sp, vnf);
}
T_AVX512 static void a5_norm0(const scan *S, const uint32_t *p, float *vnf_out, unsigned *ok_out, unsigned *pass_out) {
    const __m512d area = _mm512_set1_pd(S->norm_area);
    const __m512i vs = a5_rsum(0, p, NULL, S->cur_nofs);
    const __m512i vq = a5_rsum(0, p + S->plane, NULL, S->cur_nofs);
    const __m512d q0 = _mm512_cvtepu32_pd(_mm512_castsi512_si256(vq));
    const __m512d q1 = _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(vq, 1));
    const __m512d s0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(vs));
    const __m512d s1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(vs, 1));
    const __m512d n0 = _mm512_sub_pd(_mm512_mul_pd(area, q0), _mm512_mul_pd(s0, s0));
    const __m512d n1 = _mm512_sub_pd(_mm512_mul_pd(area, q1), _mm512_mul_pd(s1, s1));
    const __mmask8 pos0 = _mm512_cmp_pd_mask(n0, _mm512_setzero_pd(), _CMP_GT_OQ);
    const __mmask8 pos1 = _mm512_cmp_pd_mask(n1, _mm512_setzero_pd(), _CMP_GT_OQ);
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512d r0 = _mm512_div_pd(one, _mm512_sqrt_pd(_mm512_mask_blend_pd(pos0, one, n0)));
    const __m512d r1 = _mm512_div_pd(one, _mm512_sqrt_pd(_mm512_mask_blend_pd(pos1, one, n1)));
    const __m256 f0 = _mm512_cvtpd_ps(r0), f1 = _mm512_cvtpd_ps(r1);
    _mm256_storeu_ps(vnf_out, f0);
    _mm256_storeu_ps(vnf_out + 8, f1);
    const __m512d tiny = _mm512_set1_pd(1e-1);
    const __mmask8 c0 = _mm512_cmp_pd_mask(_mm512_mul_pd(area, _mm512_cvtps_pd(f0)), tiny, _CMP_LT_OQ);
    const __mmask8 c1 = _mm512_cmp_pd_mask(_mm512_mul_pd(area, _mm512_cvtps_pd(f1)), tiny, _CMP_LT_OQ);
    const unsigned ok = (unsigned)(pos0 & c0) | ((unsigned)(pos1 & c1) << 8);
    *ok_out = ok;
    *pass_out = ok ? ok & a5_stage(0, S, 0, p, NULL, vnf_out) : 0;
}
#endif /* FC_X86 */

/* ---- the row and segment logic, for any lane count */
typedef struct fc_kernel {
    const char *name;
    int lanes;
    void (*norm0)(const scan *S, const uint32_t *p, float *vnf_out, unsigned *ok, unsigned *pass);
    unsigned (*stage_dense)(const scan *S, int si, const uint32_t *p, const float *vnf);
    /* lanes / 4 segments of 4 neighbouring windows each, from anywhere in the plane */
    unsigned (*stage_seg)(const scan *S, int si, const uint32_t *const *sp, const float *vnf);
} fc_kernel;

#ifdef FC_X86
static const fc_kernel fc_k_avx2 = {"avx2", 8, a2_norm0, a2_stage_dense, a2_stage_seg};
static const fc_kernel fc_k_avx512 = {"avx512", 16, a5_norm0, a5_stage_dense, a5_stage_seg};
#endif

static int push_hit(scan *S, int k, int y, int step, float f, int ww, int wh) {
    dp_face_box bx = {round_f((float)(k * step) * f), round_f((float)y * f), ww, wh, 1};
    return box_push(S, &S->hits, bx);
}

/* Quarters (groups of 4 lanes) of mask with an alive lane. */
static inline int quarters(unsigned mask, int lanes) {
    int q = 0;
    for (int i = 0; i < lanes; i += 4) q += ((mask >> i) & 15u) != 0;
    return q;
}

/* One row of windows (y, at step 1 or 2). Window x is element x/step of the
 * row (the planes are split by parity at step 2). A block stays side by side
 * while two quarters of it or more are alive (a segment batch costs about
 * twice a contiguous vector per lane slot); then its alive quarters become
 * segments. Returns 0 when out of memory. */
static int k_row(scan *S, const fc_kernel *K, int y, int step, int xend, float f, int ww, int wh, size_t *n_seg) {
    const dp_face_detector *d = S->d;
    const int L = K->lanes;
    const size_t rofs = (size_t)y * S->stride;
    const uint32_t *row = S->ii + rofs;
    const int npos = (xend + step - 1) / step, nblk = (npos + L - 1) / L;
    unsigned *ok = S->row_ok, *pass = S->row_pass;
    for (int b = 0; b < nblk; b++) K->norm0(S, row + (size_t)b * L, S->row_vnf + b * L, &ok[b], &pass[b]);
    /* OpenCV's walk (window x = k * step): after a stage-0 rejection the next
     * window is skipped; pass[b] becomes the windows it evaluates that passed */
    int skip = 0;
    for (int b = 0; b < nblk; b++) {
        const unsigned rej = ok[b] & ~pass[b];
        if (!rej && !skip) continue;
        unsigned alive = 0;
        const int end = npos - b * L < L ? npos - b * L : L;
        for (int i = 0; i < end; i++) {
            if (skip) {
                skip = 0;
                continue;
            }
            if ((rej >> i) & 1) skip = 1;
            else alive |= pass[b] & (1u << i);
        }
        pass[b] = alive;
    }
    if (npos % L) pass[nblk - 1] &= (1u << (npos % L)) - 1; /* past the row's end */
    for (int b = 0; b < nblk; b++) {
        unsigned mask = pass[b];
        if (!mask) continue;
        const uint32_t *p = row + (size_t)b * L;
        const float *vnf = S->row_vnf + b * L;
        int s = 1;
        for (; s < d->n_stages && mask && quarters(mask, L) >= 2; s++) mask &= K->stage_dense(S, s, p, vnf);
        for (int q = 0; q < L; q += 4) {
            const unsigned m = (mask >> q) & 15u;
            if (!m) continue;
            if (s >= d->n_stages) {
                for (int i = 0; i < 4; i++)
                    if ((m >> i) & 1 && !push_hit(S, b * L + q + i, y, step, f, ww, wh)) return 0;
                continue;
            }
            const size_t n = (*n_seg)++;
            S->seg_ofs[n] = (int32_t)(rofs + (size_t)(b * L + q));
            memcpy(S->seg_vnf + 4 * n, vnf + q, 4 * sizeof *vnf);
            S->seg_mask[n] = (uint8_t)m;
            S->seg_stage[n] = s;
        }
    }
    return 1;
}

/* Finish the segments: stage by stage, lanes / 4 of them at a time. */
static int k_segs(scan *S, const fc_kernel *K, size_t n, int step, float f, int ww, int wh) {
    const dp_face_detector *d = S->d;
    const int per = K->lanes / 4;
    const uint32_t *sp[4];
    float vb[16];
    size_t bi[4];
    for (int si = 1; si < d->n_stages && n > 0; si++) {
        int nb = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i < n && S->seg_stage[i] == si) bi[nb++] = i;
            if (nb == per || (i == n && nb > 0)) {
                for (int j = 0; j < per; j++) {
                    const size_t e = bi[j < nb ? j : 0];
                    sp[j] = S->ii + S->seg_ofs[e];
                    memcpy(vb + 4 * j, S->seg_vnf + 4 * e, 4 * sizeof *vb);
                }
                const unsigned pass = K->stage_seg(S, si, sp, vb);
                for (int j = 0; j < nb; j++) {
                    const unsigned m = S->seg_mask[bi[j]] & (pass >> (4 * j)) & 15u;
                    S->seg_mask[bi[j]] = (uint8_t)m;
                    S->seg_stage[bi[j]] = m ? si + 1 : -1;
                }
                nb = 0;
            }
        }
        size_t out = 0; /* drop the dead, keep the order */
        for (size_t i = 0; i < n; i++) {
            if (S->seg_stage[i] < 0) continue;
            S->seg_ofs[out] = S->seg_ofs[i];
            memmove(S->seg_vnf + 4 * out, S->seg_vnf + 4 * i, 4 * sizeof *S->seg_vnf);
            S->seg_mask[out] = S->seg_mask[i];
            S->seg_stage[out] = S->seg_stage[i];
            out++;
        }
        n = out;
    }
    for (size_t i = 0; i < n; i++) {
        const int y = S->seg_ofs[i] / S->stride, k = S->seg_ofs[i] % S->stride;
        for (int l = 0; l < 4; l++)
            if ((S->seg_mask[i] >> l) & 1 && !push_hit(S, k + l, y, step, f, ww, wh)) return 0;
    }
    return 1;
}

/* Offset of the corner (cx, cy) of a window from the window's own element, in
 * plane k; split: the layout of step-2 scales (even columns first), where the
 * window at x = 2i is element i of its row. */
static int32_t plane_ofs(const scan *S, int k, int cx, int cy, int split) {
    const int32_t col = !split ? cx : (cx & 1) ? S->hoff + (cx >> 1) : (cx >> 1);
    return (int32_t)((size_t)k * S->plane) + cy * S->stride + col;
}

/* The vector paths' tables: node offsets in both layouts, padded leaves, row
 * buffers and the list (per call: the offsets depend on the stride). */
static int simd_prepare(scan *S, int w0, int h0) {
    const dp_face_detector *d = S->d;
    const size_t row = (size_t)w0 + 64;
    S->vn = dp_malloc(S->ctx, 2 * (size_t)d->n_nodes * sizeof *S->vn);
    S->vleaves = dp_calloc(S->ctx, ((size_t)d->n_leaves + 32) * sizeof *S->vleaves);
    S->row_ok = dp_malloc(S->ctx, row / 8 * sizeof *S->row_ok);
    S->row_pass = dp_malloc(S->ctx, row / 8 * sizeof *S->row_pass);
    S->row_vnf = dp_malloc(S->ctx, row * sizeof *S->row_vnf);
    const size_t cap = ((size_t)(w0 + 1 + 16) / 4 + 1) * (size_t)(h0 + 1); /* segments of a scale, at most */
    S->seg_ofs = dp_malloc(S->ctx, cap * sizeof *S->seg_ofs);
    S->seg_stage = dp_malloc(S->ctx, cap * sizeof *S->seg_stage);
    S->seg_vnf = dp_malloc(S->ctx, 4 * cap * sizeof *S->seg_vnf);
    S->seg_mask = dp_malloc(S->ctx, cap);
    if (!S->vn || !S->vleaves || !S->row_ok || !S->row_pass || !S->row_vnf || !S->seg_ofs || !S->seg_stage ||
        !S->seg_vnf || !S->seg_mask)
        return 0;
    for (int split = 0; split < 2; split++) {
        for (int i = 0; i < d->n_nodes; i++) {
            const fc_node *nd = &d->nodes[i];
            fc_vnode *v = &S->vn[(size_t)split * d->n_nodes + i];
            const fc_feature *f = &d->features[nd->feature];
            memset(v, 0, sizeof *v);
            for (int k = 0; k < f->nrect; k++) {
                const fc_rect *r = &f->r[k];
                v->w[k] = r->weight;
                if (f->tilted) {
                    v->ofs[k][0] = plane_ofs(S, 2, r->x, r->y, split);
                    v->ofs[k][1] = plane_ofs(S, 2, r->x - r->h, r->y + r->h, split);
                    v->ofs[k][2] = plane_ofs(S, 2, r->x + r->w, r->y + r->w, split);
                    v->ofs[k][3] = plane_ofs(S, 2, r->x + r->w - r->h, r->y + r->w + r->h, split);
                } else {
                    v->ofs[k][0] = plane_ofs(S, 0, r->x, r->y, split);
                    v->ofs[k][1] = plane_ofs(S, 0, r->x + r->w, r->y, split);
                    v->ofs[k][2] = plane_ofs(S, 0, r->x, r->y + r->h, split);
                    v->ofs[k][3] = plane_ofs(S, 0, r->x + r->w, r->y + r->h, split);
                }
            }
            v->thr = nd->threshold;
            v->left = nd->left;
            v->right = nd->right;
        }
    }
    const int nw = d->win_w - 2, nh = d->win_h - 2;
    S->nofs2[0] = plane_ofs(S, 0, 1, 1, 1);
    S->nofs2[1] = plane_ofs(S, 0, 1 + nw, 1, 1);
    S->nofs2[2] = plane_ofs(S, 0, 1, 1 + nh, 1);
    S->nofs2[3] = plane_ofs(S, 0, 1 + nw, 1 + nh, 1);
    memcpy(S->vleaves, d->leaves, (size_t)d->n_leaves * sizeof *S->vleaves);
    return 1;
}

/* The vector kernel to use, or NULL for the scalar path. DP_KERNEL=portable|
 * avx2|avx512 forces one (if the CPU has it). */
static const fc_kernel *pick_kernel(const dp_face_detector *d) {
#ifdef FC_X86
    if (d->kind != FC_HAAR) return NULL;
    /* no cached flags: concurrent first calls must not race (these read a table
     * the compiler's runtime fills at start-up) */
    const int has2 = __builtin_cpu_supports("avx2"), has5 = __builtin_cpu_supports("avx512f");
    const char *k = getenv("DP_KERNEL");
    if (k && !strcmp(k, "portable")) return NULL;
    if (k && !strcmp(k, "avx2")) return has2 ? &fc_k_avx2 : NULL;
    if (has5) return &fc_k_avx512;
    return has2 ? &fc_k_avx2 : NULL;
#else
    (void)d;
    return NULL;
#endif
}

/* ------------------------------------------------------------ one image, all scales */
typedef struct fc_params {
    double scale_factor;
    int min_w, min_h, max_w, max_h;
} fc_params;

/* The scales OpenCV would use (detectMultiScaleNoGrouping); returns the count,
 * writes at most cap of them. */
static int list_scales(const dp_face_detector *d, int W, int H, const fc_params *P, float *out, int cap) {
    int n = 0;
    if (W < d->win_w || H < d->win_h) return 0;
    const int maxw = P->max_w > 0 ? P->max_w : W, maxh = P->max_h > 0 ? P->max_h : H;
    for (double factor = 1;; factor *= P->scale_factor) {
        const int ww = round_d(d->win_w * factor), wh = round_d(d->win_h * factor);
        if (ww > W || wh > H) break;
        const float f = (float)factor;
        const int fw = round_f((float)d->win_w * f), fh = round_f((float)d->win_h * f);
        if (fw > maxw || fh > maxh) break;
        if (fw < P->min_w || fh < P->min_h) continue;
        if (n < cap) out[n] = f;
        n++;
    }
    return n;
}

static void scan_free(scan *S) {
    dp_ctx *ctx = S->ctx;
    dp_free(ctx, S->ii);
    dp_free(ctx, S->layer);
    dp_free(ctx, S->hbuf);
    dp_free(ctx, S->xofs);
    dp_free(ctx, S->yofs);
    dp_free(ctx, S->xc);
    dp_free(ctx, S->yc);
    dp_free(ctx, S->trows);
    dp_free(ctx, S->tmp_row);
    dp_free(ctx, S->opt);
    dp_free(ctx, S->hits.b);
    dp_free(ctx, S->vn);
    dp_free(ctx, S->vleaves);
    dp_free(ctx, S->row_ok);
    dp_free(ctx, S->row_pass);
    dp_free(ctx, S->seg_stage);
    dp_free(ctx, S->seg_mask);
    dp_free(ctx, S->row_vnf);
    dp_free(ctx, S->seg_ofs);
    dp_free(ctx, S->seg_vnf);
    memset(S, 0, sizeof *S);
}

/* Raw hits of the cascade on the grey image (W x H, row stride gstride) into S->hits. */
static dp_status scan_image(scan *S, const dp_face_detector *d, const uint8_t *grey, int W, int H, int gstride,
                            const fc_params *P) {
    dp_ctx *ctx = d->ctx;
    memset(S, 0, sizeof *S);
    S->d = d;
    S->ctx = ctx;
    const int nsc = list_scales(d, W, H, P, NULL, 0);
    if (nsc == 0) return DP_OK;
    float *scales = dp_malloc(ctx, (size_t)nsc * sizeof *scales);
    if (!scales) return dp_error(ctx, DP_ERR_NOMEM, "face detection: out of memory");
    list_scales(d, W, H, P, scales, nsc);
    /* The largest layer is the first one. */
    const int w0 = round_f((float)W / scales[0]), h0 = round_f((float)H / scales[0]);
    S->stride = w0 + 1;
    S->plane = (size_t)S->stride * (size_t)(h0 + 1);
    const int nplanes = d->kind == FC_HAAR ? (d->has_tilted ? 3 : 2) : 1;
    const size_t opt_size = d->kind == FC_HAAR ? sizeof(fc_opt_haar) : sizeof(fc_opt_lbp);
    dp_status st = DP_OK;
    if (S->plane * nplanes > (size_t)INT32_MAX) {
        st = dp_error(ctx, DP_ERR_NOMEM, "face detection: a %dx%d image is too large for the integral images", W, H);
        goto done;
    }
    S->ii = dp_calloc(ctx, (S->plane * nplanes + FC_PAD_ELEMS) * sizeof *S->ii);
    S->layer = dp_malloc(ctx, (size_t)w0 * h0);
    S->hbuf = dp_malloc(ctx, 2 * (size_t)w0 * sizeof *S->hbuf);
    S->xofs = dp_malloc(ctx, (size_t)w0 * sizeof *S->xofs);
    S->xc = dp_malloc(ctx, (size_t)w0 * sizeof *S->xc);
    S->yofs = dp_malloc(ctx, (size_t)h0 * sizeof *S->yofs);
    S->yc = dp_malloc(ctx, (size_t)h0 * sizeof *S->yc);
    S->opt = dp_malloc(ctx, (size_t)d->n_features * opt_size);
    S->tmp_row = dp_malloc(ctx, 2 * (size_t)S->stride * sizeof *S->tmp_row);
    if (d->has_tilted) S->trows = dp_malloc(ctx, 3 * ((size_t)w0 + 2 * ((size_t)h0 + 1) + 1) * sizeof *S->trows);
    if (!S->ii || !S->layer || !S->hbuf || !S->xofs || !S->xc || !S->yofs || !S->yc || !S->opt || !S->tmp_row ||
        (d->has_tilted && !S->trows)) {
        st = dp_error(ctx, DP_ERR_NOMEM, "face detection: out of memory for a %dx%d image", W, H);
        goto done;
    }
    prepare_features(S);
    const int nstripes = (w0 + 1 - d->win_w + 31) / 32; /* cvCeil(working width of the first scale / 32.) */
    const fc_kernel *K = pick_kernel(d);
    S->avx2 = K != NULL; /* AVX2 at least (LBP cascades: scalar throughout) */
    S->hoff = (S->stride + 1) / 2;
    if (K && !simd_prepare(S, w0, h0)) {
        st = dp_error(ctx, DP_ERR_NOMEM, "face detection: out of memory for a %dx%d image", W, H);
        goto done;
    }
    for (int si = 0; si < nsc; si++) {
        const float f = scales[si];
        const int sw = round_f((float)W / f), sh = round_f((float)H / f);
        if (sw < d->win_w || sh < d->win_h || sw > w0 || sh > h0) continue;
        const uint8_t *img = grey;
        int istride = gstride;
        if (sw != W || sh != H) {
            resize_exact(S, grey, W, H, gstride, S->layer, sw, sh);
            img = S->layer;
            istride = sw;
        }
        const int step = f >= 2 ? 1 : 2;
        integrals(S, img, sw, sh, istride, K && step == 2);
        const int ww = round_f((float)d->win_w * f), wh = round_f((float)d->win_h * f);
        const int xend = sw + 1 - d->win_w;
        /* OpenCV scans the rows in nstripes stripes of a whole number of steps,
         * which can leave out the last row of windows; so does this. */
        const int yrows = sh + 1 - d->win_h, stripe = ((yrows / step + nstripes - 1) / nstripes > 1 ? (yrows / step + nstripes - 1) / nstripes : 1) * step;
        const int yend = nstripes * stripe < yrows ? nstripes * stripe : yrows;
        if (K) {
            const int split = step == 2;
            S->cur_vn = S->vn + (split ? d->n_nodes : 0);
            S->cur_nofs = split ? S->nofs2 : S->nofs;
            size_t n = 0;
            int ok = 1;
            for (int y = 0; y < yend && ok; y += step) ok = k_row(S, K, y, step, xend, f, ww, wh, &n);
            if (!ok || !k_segs(S, K, n, step, f, ww, wh)) {
                st = dp_error(ctx, DP_ERR_NOMEM, "face detection: out of memory for the hits");
                goto done;
            }
            continue;
        }
        for (int y = 0; y < yend; y += step) {
            const uint32_t *row = S->ii + (size_t)y * S->stride;
            for (int x = 0; x < xend; x += step) {
                const int r = d->kind == FC_HAAR ? eval_haar(S, row + x) : eval_lbp(S, row + x);
                if (r > 0) {
                    dp_face_box b = {round_f((float)x * f), round_f((float)y * f), ww, wh, 1};
                    if (!box_push(S, &S->hits, b)) {
                        st = dp_error(ctx, DP_ERR_NOMEM, "face detection: out of memory for the hits");
                        goto done;
                    }
                } else if (r == 0) {
                    x += step;
                }
            }
        }
    }
done:
    dp_free(ctx, scales);
    return st;
}

/* ------------------------------------------------------------ grouping (groupRectangles) */
static int similar(const dp_face_box *a, const dp_face_box *b, double eps) {
    const double delta = eps * ((a->w < b->w ? a->w : b->w) + (a->h < b->h ? a->h : b->h)) * 0.5;
    return abs(a->x - b->x) <= delta && abs(a->y - b->y) <= delta && abs(a->x + a->w - b->x - b->w) <= delta &&
           abs(a->y + a->h - b->y - b->h) <= delta;
}

static int find_root(int *parent, int i) {
    int r = i;
    while (parent[r] >= 0) r = parent[r];
    while (parent[i] >= 0) { /* path compression */
        int p = parent[i];
        parent[i] = r;
        i = p;
    }
    return r;
}

typedef struct idx_x {
    int x, i;
} idx_x;
static int cmp_idx_x(const void *a, const void *b) {
    const idx_x *p = a, *q = b;
    return p->x != q->x ? (p->x < q->x ? -1 : 1) : (p->i < q->i ? -1 : p->i > q->i);
}

dp_status dp_face_group(dp_ctx *ctx, dp_face_box *boxes, int n, int min_neighbors, double eps, int *n_out) {
    if (!n_out || (n > 0 && !boxes)) return dp_error(ctx, DP_ERR_NULL, "dp_face_group: NULL argument");
    if (n < 0 || !(eps >= 0) || !isfinite(eps))
        return dp_error(ctx, DP_ERR_ARG, "dp_face_group: n %d, eps %g out of range", n, eps);
    *n_out = 0;
    if (n == 0) return DP_OK;
    if (min_neighbors <= 0) { /* OpenCV: no grouping at all */
        for (int i = 0; i < n; i++) boxes[i].neighbors = 1;
        *n_out = n;
        return DP_OK;
    }
    /* partition(): connected components of the similarity graph. The pairs are
     * found through a sort by x (similar boxes have |x1 - x2| <= delta <=
     * eps*(w1+h1)/2), which gives the same components as OpenCV's all-pairs
     * loop; classes are numbered in the order of their first box, as there. */
    int *parent = dp_malloc(ctx, (size_t)n * sizeof *parent);
    int *label = dp_malloc(ctx, (size_t)n * sizeof *label);
    idx_x *ord = dp_malloc(ctx, (size_t)n * sizeof *ord);
    int64_t *acc = dp_calloc(ctx, (size_t)n * 4 * sizeof *acc);
    int *cnt = dp_calloc(ctx, (size_t)n * sizeof *cnt);
    dp_face_box *rr = dp_malloc(ctx, (size_t)n * sizeof *rr);
    dp_status st = DP_OK;
    if (!parent || !label || !ord || !acc || !cnt || !rr) {
        st = dp_error(ctx, DP_ERR_NOMEM, "dp_face_group: out of memory for %d boxes", n);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        parent[i] = -1;
        ord[i] = (idx_x){boxes[i].x, i};
    }
    qsort(ord, (size_t)n, sizeof *ord, cmp_idx_x);
    for (int k = 0; k < n; k++) {
        const dp_face_box *a = &boxes[ord[k].i];
        const double reach = eps * ((double)a->w + a->h) * 0.5;
        for (int j = k + 1; j < n && (double)(ord[j].x - ord[k].x) <= reach; j++) {
            const dp_face_box *b = &boxes[ord[j].i];
            if (!similar(a, b, eps)) continue;
            int r1 = find_root(parent, ord[k].i), r2 = find_root(parent, ord[j].i);
            if (r1 != r2) parent[r1 > r2 ? r1 : r2] = r1 < r2 ? r1 : r2;
        }
    }
    int ncls = 0;
    for (int i = 0; i < n; i++) {
        int r = find_root(parent, i);
        if (r == i) label[i] = ncls++;
        else label[i] = label[r]; /* r < i: already labelled (roots are the smallest index) */
    }
    for (int i = 0; i < n; i++) {
        int c = label[i];
        acc[4 * c] += boxes[i].x;
        acc[4 * c + 1] += boxes[i].y;
        acc[4 * c + 2] += boxes[i].w;
        acc[4 * c + 3] += boxes[i].h;
        cnt[c]++;
    }
    for (int c = 0; c < ncls; c++) {
        const float s = 1.f / (float)cnt[c];
        rr[c] = (dp_face_box){round_f((float)acc[4 * c] * s), round_f((float)acc[4 * c + 1] * s),
                              round_f((float)acc[4 * c + 2] * s), round_f((float)acc[4 * c + 3] * s), cnt[c]};
    }
    int m = 0;
    for (int i = 0; i < ncls; i++) {
        const dp_face_box r1 = rr[i];
        const int n1 = cnt[i];
        if (n1 <= min_neighbors) continue;
        int j;
        for (j = 0; j < ncls; j++) {
            const int n2 = cnt[j];
            if (j == i || n2 <= min_neighbors) continue;
            const dp_face_box r2 = rr[j];
            const int dx = round_d(r2.w * eps), dy = round_d(r2.h * eps);
            if (r1.x >= r2.x - dx && r1.y >= r2.y - dy && r1.x + r1.w <= r2.x + r2.w + dx &&
                r1.y + r1.h <= r2.y + r2.h + dy && (n2 > (n1 > 3 ? n1 : 3) || n1 < 3))
                break;
        }
        if (j == ncls) boxes[m++] = r1;
    }
    *n_out = m;
done:
    dp_free(ctx, parent);
    dp_free(ctx, label);
    dp_free(ctx, ord);
    dp_free(ctx, acc);
    dp_free(ctx, cnt);
    dp_free(ctx, rr);
    return st;
}

/* ------------------------------------------------------------ the public calls */
typedef struct fc_resolved {
    fc_params p;
    int min_neighbors; /* -1: raw */
    dp_face_pad_mode pad;
    float pad_fraction;
    dp_face_pad_fill fill;
    const dp_face_detector *verify;
    int verify_min_neighbors;
} fc_resolved;

static dp_status resolve_opts(const dp_face_detector *d, const dp_face_opts *o, fc_resolved *r) {
    dp_ctx *ctx = d->ctx;
    dp_face_opts z = {0};
    if (!o) o = &z;
    memset(r, 0, sizeof *r);
    r->p.scale_factor = o->scale_factor == 0 ? 1.1 : o->scale_factor;
    if (!(r->p.scale_factor >= 1.0001 && r->p.scale_factor <= 100))
        return dp_error(ctx, DP_ERR_ARG, "face detection: scale factor %g out of range (1.0001 to 100)", o->scale_factor);
    if (o->min_neighbors < -1 || o->min_neighbors > 100000)
        return dp_error(ctx, DP_ERR_ARG, "face detection: min_neighbors %d out of range (-1 to 100000)",
                        o->min_neighbors);
    r->min_neighbors = o->min_neighbors == 0 ? 3 : o->min_neighbors;
    if (o->min_size < 0 || o->max_size < 0 || (o->max_size && o->max_size < o->min_size))
        return dp_error(ctx, DP_ERR_ARG, "face detection: sizes min %d, max %d out of range", o->min_size, o->max_size);
    r->p.min_w = r->p.min_h = o->min_size;
    r->p.max_w = r->p.max_h = o->max_size;
    if ((unsigned)o->pad > DP_FACE_PAD_ALWAYS || (unsigned)o->pad_fill > DP_FACE_FILL_MEAN)
        return dp_error(ctx, DP_ERR_ARG, "face detection: unknown pad mode %d or fill %d", (int)o->pad,
                        (int)o->pad_fill);
    r->pad = o->pad;
    r->fill = o->pad_fill;
    r->pad_fraction = o->pad_fraction == 0 ? 0.25f : o->pad_fraction;
    if (!(r->pad_fraction > 0 && r->pad_fraction <= 2))
        return dp_error(ctx, DP_ERR_ARG, "face detection: pad fraction %g out of range (0 to 2]",
                        (double)o->pad_fraction);
    r->verify = o->verify;
    r->verify_min_neighbors = o->verify_min_neighbors;
    if (r->verify_min_neighbors < 0 || r->verify_min_neighbors > 100000)
        return dp_error(ctx, DP_ERR_ARG, "face detection: verify_min_neighbors %d out of range",
                        o->verify_min_neighbors);
    return DP_OK;
}

/* Detect + group on one grey image; results (in its coordinates) into *out. */
static dp_status detect_grouped(const dp_face_detector *d, const uint8_t *g, int W, int H, int stride,
                                const fc_params *P, int min_neighbors, box_list *out, dp_ctx *ctx) {
    scan S;
    dp_status st = scan_image(&S, d, g, W, H, stride, P);
    if (st == DP_OK && S.hits.n) {
        int m;
        st = dp_face_group(ctx, S.hits.b, S.hits.n, min_neighbors < 0 ? 0 : min_neighbors, FC_GROUP_EPS, &m);
        if (st == DP_OK) S.hits.n = m;
    }
    if (st == DP_OK) {
        *out = S.hits;
        S.hits = (box_list){0};
    }
    scan_free(&S);
    return st;
}

/* The second opinion: does the verify cascade find a face, at about this
 * size, whose centre lies inside b? */
static dp_status verify_box(const fc_resolved *R, const uint8_t *g, int W, int H, int stride, const dp_face_box *b,
                            int *ok, dp_ctx *ctx) {
    const dp_face_detector *v = R->verify;
    *ok = 0;
    const int mx = b->w / 4, my = b->h / 4;
    int x0 = b->x - mx, y0 = b->y - my, x1 = b->x + b->w + mx, y1 = b->y + b->h + my;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > W) x1 = W;
    if (y1 > H) y1 = H;
    if (x1 - x0 < v->win_w || y1 - y0 < v->win_h) return DP_OK;
    fc_params P = R->p;
    P.min_w = (int)(b->w * 0.7);
    P.min_h = (int)(b->h * 0.7);
    P.max_w = (int)(b->w * 1.4) + 1;
    P.max_h = (int)(b->h * 1.4) + 1;
    box_list L = {0};
    dp_status st = detect_grouped(v, g + (size_t)y0 * stride + x0, x1 - x0, y1 - y0, stride, &P,
                                  R->verify_min_neighbors, &L, ctx);
    for (int i = 0; st == DP_OK && i < L.n; i++) {
        const int cx = x0 + L.b[i].x + L.b[i].w / 2, cy = y0 + L.b[i].y + L.b[i].h / 2;
        if (cx >= b->x && cx < b->x + b->w && cy >= b->y && cy < b->y + b->h) *ok = 1;
    }
    dp_free(ctx, L.b);
    return st;
}

static int cmp_box(const void *a, const void *b) {
    const dp_face_box *p = a, *q = b;
    if (p->neighbors != q->neighbors) return p->neighbors > q->neighbors ? -1 : 1;
    const long ap = (long)p->w * p->h, aq = (long)q->w * q->h;
    if (ap != aq) return ap > aq ? -1 : 1;
    if (p->y != q->y) return p->y < q->y ? -1 : 1;
    return p->x < q->x ? -1 : p->x > q->x;
}

/* One pass: optional border, detection, optional verification, mapping back. */
static dp_status detect_pass(const dp_face_detector *d, const fc_resolved *R, const uint8_t *g, int W, int H,
                             int stride, int pad, box_list *res) {
    dp_ctx *ctx = d->ctx;
    const uint8_t *img = g;
    int iw = W, ih = H, is = stride, px = 0, py = 0;
    uint8_t *padded = NULL;
    if (pad) {
        px = (int)lrintf(R->pad_fraction * (float)W);
        py = (int)lrintf(R->pad_fraction * (float)H);
        if ((int64_t)(W + 2 * px) * (H + 2 * py) > (int64_t)1 << 31)
            return dp_error(ctx, DP_ERR_NOMEM, "face detection: the padded image would be too large");
        iw = W + 2 * px;
        ih = H + 2 * py;
        is = iw;
        padded = dp_malloc(ctx, (size_t)iw * ih);
        if (!padded) return dp_error(ctx, DP_ERR_NOMEM, "face detection: out of memory for the border");
        uint8_t meanv = 0;
        if (R->fill == DP_FACE_FILL_MEAN) {
            uint64_t s = 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) s += g[(size_t)y * stride + x];
            meanv = (uint8_t)((s + (uint64_t)W * H / 2) / ((uint64_t)W * H));
        }
        for (int y = 0; y < ih; y++) {
            uint8_t *row = padded + (size_t)y * iw;
            int sy = y - py;
            if (R->fill == DP_FACE_FILL_MEAN && (sy < 0 || sy >= H)) {
                memset(row, meanv, (size_t)iw);
                continue;
            }
            sy = sy < 0 ? 0 : sy >= H ? H - 1 : sy;
            const uint8_t *src = g + (size_t)sy * stride;
            memset(row, R->fill == DP_FACE_FILL_MEAN ? meanv : src[0], (size_t)px);
            memcpy(row + px, src, (size_t)W);
            memset(row + px + W, R->fill == DP_FACE_FILL_MEAN ? meanv : src[W - 1], (size_t)px);
        }
        img = padded;
    }
    box_list L = {0};
    dp_status st = detect_grouped(d, img, iw, ih, is, &R->p, R->min_neighbors, &L, ctx);
    int m = 0;
    for (int i = 0; st == DP_OK && i < L.n; i++) {
        dp_face_box b = L.b[i];
        if (R->verify) {
            int ok;
            st = verify_box(R, img, iw, ih, is, &b, &ok, ctx);
            if (st || !ok) continue;
        }
        /* Back to the caller's image: drop boxes centred in the border, clip the rest. */
        b.x -= px;
        b.y -= py;
        const int cx = b.x + b.w / 2, cy = b.y + b.h / 2;
        if (cx < 0 || cy < 0 || cx >= W || cy >= H) continue;
        int x1 = b.x + b.w, y1 = b.y + b.h;
        if (b.x < 0) b.x = 0;
        if (b.y < 0) b.y = 0;
        if (x1 > W) x1 = W;
        if (y1 > H) y1 = H;
        b.w = x1 - b.x;
        b.h = y1 - b.y;
        L.b[m++] = b;
    }
    dp_free(ctx, padded);
    if (st) {
        dp_free(ctx, L.b);
        return st;
    }
    L.n = m;
    *res = L;
    return DP_OK;
}

dp_status dp_face_detect_gray8(const dp_face_detector *d, const uint8_t *pixels, int width, int height, int stride,
                               const dp_face_opts *opts, dp_face_box *out, int max, int *n) {
    if (!d) return DP_ERR_NULL;
    dp_ctx *ctx = d->ctx;
    if (!pixels || !n || (max > 0 && !out)) return dp_error(ctx, DP_ERR_NULL, "dp_face_detect: NULL argument");
    *n = 0;
    if (width < 1 || height < 1 || stride < width || max < 0 || (int64_t)width * height > ((int64_t)1 << 30))
        return dp_error(ctx, DP_ERR_ARG, "dp_face_detect: image %dx%d (stride %d), max %d out of range", width,
                        height, stride, max);
    fc_resolved R;
    dp_status st = resolve_opts(d, opts, &R);
    if (st) return st;
    box_list L = {0};
    const int short_side = width < height ? width : height;
    /* AUTO: a small picture is most likely a crop around one face: border at once */
    const int pad_first = R.pad == DP_FACE_PAD_ALWAYS || (R.pad == DP_FACE_PAD_AUTO && short_side <= DP_FACE_PAD_AUTO_SIDE);
    st = detect_pass(d, &R, pixels, width, height, stride, pad_first, &L);
    if (st == DP_OK && R.pad == DP_FACE_PAD_AUTO && !pad_first) {
        /* Look again with a border when nothing was found, or when a face fills
         * the frame (a side at least half the image's shorter side: a tight
         * crop, where the border gives the cascade the context it was trained with). */
        int fills = L.n == 0;
        for (int i = 0; i < L.n && !fills; i++) fills = 2 * (L.b[i].w > L.b[i].h ? L.b[i].w : L.b[i].h) >= short_side;
        if (fills) {
            box_list P = {0};
            st = detect_pass(d, &R, pixels, width, height, stride, 1, &P);
            if (st == DP_OK && P.n > 0) {
                dp_free(ctx, L.b);
                L = P;
            } else {
                dp_free(ctx, P.b);
            }
        }
    } else if (st == DP_OK && R.pad == DP_FACE_PAD_AUTO && L.n == 0) {
        /* a crop with no face found: once more with a border twice as wide, flat */
        fc_resolved R2 = R;
        R2.pad_fraction = 2 * R.pad_fraction;
        R2.fill = DP_FACE_FILL_MEAN;
        dp_free(ctx, L.b);
        L = (box_list){0};
        st = detect_pass(d, &R2, pixels, width, height, stride, 1, &L);
    }
    if (st == DP_OK) {
        if (L.n > 1) qsort(L.b, (size_t)L.n, sizeof *L.b, cmp_box);
        for (int i = 0; i < L.n && i < max; i++) out[i] = L.b[i];
        *n = L.n;
    }
    dp_free(ctx, L.b);
    return st;
}

static inline uint8_t to_u8(float v) {
    if (!(v > 0.f)) return 0; /* NaN too */
    if (v >= 1.f) return 255;
    return (uint8_t)(v * 255.f + 0.5f);
}

#ifdef FC_X86
/* to_u8 (and the BGR2GRAY formula when g, b are given) eight pixels at a time;
 * returns how many pixels were done. */
__attribute__((target("avx2"))) static size_t grey_avx2(const float *r, const float *g, const float *b, uint8_t *out,
                                                        size_t n) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f), k255 = _mm256_set1_ps(255.f),
                 half = _mm256_set1_ps(0.5f);
#define FC_U8(v) _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_min_ps(_mm256_max_ps((v), zero), one), k255), half))
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i y = FC_U8(_mm256_loadu_ps(r + i)); /* max(NaN, 0) is 0 */
        if (g) {
            const __m256i gg = FC_U8(_mm256_loadu_ps(g + i)), bb = FC_U8(_mm256_loadu_ps(b + i));
            y = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(y, _mm256_set1_epi32(9798)),
                                                                    _mm256_mullo_epi32(gg, _mm256_set1_epi32(19235))),
                                                   _mm256_add_epi32(_mm256_mullo_epi32(bb, _mm256_set1_epi32(3735)),
                                                                    _mm256_set1_epi32(16384))),
                                  15);
        }
        const __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
        _mm_storel_epi64((__m128i *)(out + i), _mm_packus_epi16(p16, p16));
    }
#undef FC_U8
    return i;
}
#endif

dp_status dp_face_detect(const dp_face_detector *d, const dp_image *img, const dp_face_opts *opts, dp_face_box *out,
                         int max, int *n) {
    if (!d) return DP_ERR_NULL;
    dp_ctx *ctx = d->ctx;
    if (!img || !img->data || !n) return dp_error(ctx, DP_ERR_NULL, "dp_face_detect: NULL argument");
    *n = 0;
    if ((img->channels != 1 && img->channels != 3) || img->width < 1 || img->height < 1 ||
        (int64_t)img->width * img->height > ((int64_t)1 << 30))
        return dp_error(ctx, DP_ERR_ARG, "dp_face_detect: a %d-channel %dx%d image (1 or 3 channels expected)",
                        img->channels, img->width, img->height);
    const size_t hw = (size_t)img->width * img->height;
    uint8_t *g = dp_malloc(ctx, hw);
    if (!g) return dp_error(ctx, DP_ERR_NOMEM, "dp_face_detect: out of memory for a %dx%d image", img->width, img->height);
    const float *p = img->data;
    size_t i0 = 0;
#ifdef FC_X86
    if (pick_kernel(d)) i0 = grey_avx2(p, img->channels == 3 ? p + hw : NULL, img->channels == 3 ? p + 2 * hw : NULL, g, hw);
#endif
    if (img->channels == 1) {
        for (size_t i = i0; i < hw; i++) g[i] = to_u8(p[i]);
    } else {
        /* OpenCV 4's 8-bit BGR2GRAY: (R*9798 + G*19235 + B*3735 + 2^14) >> 15 */
        for (size_t i = i0; i < hw; i++) {
            uint32_t r = to_u8(p[i]), gg = to_u8(p[hw + i]), b = to_u8(p[2 * hw + i]);
            g[i] = (uint8_t)((r * 9798u + gg * 19235u + b * 3735u + 16384u) >> 15);
        }
    }
    dp_status st = dp_face_detect_gray8(d, g, img->width, img->height, img->width, opts, out, max, n);
    dp_free(ctx, g);
    return st;
}
