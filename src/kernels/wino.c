/* Winograd F(2x2, 2x2) for 4x4 stride-2 padding-1 convolutions: see wino.h. */
#include "kernels/wino.h"

#include <string.h>

#include "core/internal.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DP_PORTABLE)
#include <immintrin.h>
#define WINO_AVX2 1
#define T256 __attribute__((target("avx2,fma")))
#endif

int64_t dp_wino_u_floats(int64_t O, int64_t C) { return dp_sgemm_packed_a_floats(O, 4 * C); }

/* U = G g G^T for all 9 products xi = 3u + v, n values at a time (taps
 * g_ab[j], j < n; product xi's at d + xi * ld): row u of G g is g_0b, g_0b +
 * g_1b or g_1b, then the same over b. Over contiguous arrays, 8 lanes at a
 * time with AVX2: the taps gathered per value (or these loops in scalar code,
 * which GCC's -O2 does not vectorise) cost ~14 % of a 1-thread D.8 forward. */
#define G_PRODUCTS_BODY(T, LD, ST, ADD, j)                                                                             \
    const T a0 = LD(g00 + j), a1 = LD(g01 + j), b0 = LD(g10 + j), b1 = LD(g11 + j), s0 = ADD(a0, b0),                  \
            s1 = ADD(a1, b1);                                                                                          \
    ST(d + j, a0), ST(d + ld + j, ADD(a0, a1)), ST(d + 2 * ld + j, a1);                                                \
    ST(d + 3 * ld + j, s0), ST(d + 4 * ld + j, ADD(s0, s1)), ST(d + 5 * ld + j, s1);                                   \
    ST(d + 6 * ld + j, b0), ST(d + 7 * ld + j, ADD(b0, b1)), ST(d + 8 * ld + j, b1);
#define S_LD(p) (*(p))
#define S_ST(p, v) (*(p) = (v))
#define S_ADD(a, b) ((a) + (b))
static void g_products_c(const float *g00, const float *g01, const float *g10, const float *g11, int64_t j0, int64_t n,
                         float *d, int64_t ld) {
    for (int64_t j = j0; j < n; j++) {
        G_PRODUCTS_BODY(float, S_LD, S_ST, S_ADD, j)
    }
}
#ifdef WINO_AVX2
T256 static void g_products_avx2(const float *g00, const float *g01, const float *g10, const float *g11, int64_t n,
                                 float *d, int64_t ld) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        G_PRODUCTS_BODY(__m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, j)
    }
    g_products_c(g00, g01, g10, g11, j, n, d, ld);
}
#endif
static void g_products(const float *g00, const float *g01, const float *g10, const float *g11, int64_t n, float *d,
                       int64_t ld) {
#ifdef WINO_AVX2
    if (dp_kernel_level() >= 1) {
        g_products_avx2(g00, g01, g10, g11, n, d, ld);
        return;
    }
#endif
    g_products_c(g00, g01, g10, g11, 0, n, d, ld);
}

typedef struct wrows {
    const float *w;
    int64_t O, C;
} wrows;

/* Rows o = i0 .. i0 + m - 1 of the 9 products: product xi's row i at tmp + (xi m + i) 4C; the taps of
 * one row, as 16 planes of C, after them (16 C floats). */
static void rows_fwd(void *arg, int64_t i0, int m, float *tmp) {
    const wrows *a = arg;
    const int64_t C = a->C, K = 4 * C;
    float *tp = tmp + 9 * m * K;
    for (int i = 0; i < m; i++) {
        const float *wo = a->w + (i0 + i) * C * 16;
        for (int64_t c = 0; c < C; c++)
            for (int t = 0; t < 16; t++) tp[t * C + c] = wo[c * 16 + t];
        for (int q = 0; q < 4; q++) {
            const int r = q >> 1, s = q & 1;
            g_products(tp + (r * 4 + s) * C, tp + (r * 4 + 2 + s) * C, tp + ((2 + r) * 4 + s) * C,
                       tp + ((2 + r) * 4 + 2 + s) * C, C, tmp + i * K + q * C, m * K);
        }
    }
}

/* The 9 products are made together from each panel of weight rows, a row
 * panel at a time, and packed while in cache (one product at a time over the
 * whole O x 4C block, writing it out and packing it after: 15 % of a
 * 1-thread D.8 forward). */
int64_t dp_wino_pack_panels(int64_t O) { return dp_sgemm_pack_a_panels(O); }

void dp_wino_pack_w(const float *w, int64_t O, int64_t C, int64_t q0, int64_t q1, float *tmp, float *upk) {
    wrows a = {w, O, C};
    dp_sgemm_pack_a_rows(O, 4 * C, q0, q1, 9, rows_fwd, &a, tmp, upk, dp_wino_u_floats(O, C));
}

/* The padded images: 1 row and column of zeros before, 1 after. */
static int64_t pad_floats(int64_t nimg, int64_t C, int64_t H, int64_t W) { return (nimg * C * (H + 2) * (W + 2) + 15) / 16 * 16; }

/* planes of H x W into planes of (H + 2) x (W + 2) with a zero border */
static void pad_copy(const float *x, int64_t planes, int64_t H, int64_t W, float *xp) {
    const int64_t WP = W + 2, plane = (H + 2) * WP;
    for (int64_t i = 0; i < planes; i++) {
        float *d = xp + i * plane;
        memset(d, 0, sizeof(float) * (size_t)WP);
        for (int64_t h = 0; h < H; h++) {
            float *dr = d + (h + 1) * WP;
            dr[0] = dr[W + 1] = 0.0f;
            memcpy(dr + 1, x + (i * H + h) * W, sizeof(float) * (size_t)W);
        }
        memset(d + (H + 1) * WP, 0, sizeof(float) * (size_t)WP);
    }
}

int64_t dp_wino_scratch_floats(int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O) {
    return pad_floats(nimg, C, H, W) + 9 * O * nimg * (H / 4) * (W / 4);
}

typedef struct fill_arg {
    const float *xp;  /* [nimg][C][HP][WP], zero-padded */
    int64_t C;        /* channels of xp */
    int64_t WP, plane, TH, TW;
    int64_t ts;       /* floats from one tile's patch to the next along a row: 4 (forward) or 2 (adjoint) */
    int64_t off;      /* adjoint: the phase's first patch corner in its plane */
    int u, v;
} fill_arg;

/* The tiles' patch corners in their (image, channel 0) plane: tiles j0.. of the chunk. */
static void tile_offsets(const fill_arg *f, int64_t j0, int n, int64_t *to) {
    const int64_t per_img = f->TH * f->TW;
    for (int j = 0; j < n; j++) {
        int64_t t = j0 + j, img = t / per_img, ti = t % per_img / f->TW, tj = t % f->TW;
        to[j] = img * f->C * f->plane + f->ts * (ti * f->WP + tj);
    }
}

/* V at (u, v) of the 3x3 patch whose corner is r0, its rows rs floats apart
 * and its columns cs apart: B^T d's row u at patch columns 0, 1, 2, then the
 * column combination v. */
static inline float v_at(const float *r0, int64_t rs, int64_t cs, int u, int v) {
    const float *r1 = r0 + rs, *r2 = r0 + 2 * rs;
    float a0, a1, a2;
    if (u == 0)
        a0 = r0[0] - r1[0], a1 = r0[cs] - r1[cs], a2 = r0[2 * cs] - r1[2 * cs];
    else if (u == 1)
        a0 = r1[0], a1 = r1[cs], a2 = r1[2 * cs];
    else
        a0 = r2[0] - r1[0], a1 = r2[cs] - r1[cs], a2 = r2[2 * cs] - r1[2 * cs];
    return v == 0 ? a0 - a1 : v == 1 ? a1 : a2 - a1;
}

/* B panel rows p0.. (k = phase * C + c), tiles j0..: V at (u, v) of each
 * tile's 3x3 patch in its phase image, rows first (B^T d), then columns. */
static void fill_v_ld(const fill_arg *f, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst, int64_t ld) {
    int64_t to[32];
    tile_offsets(f, j0, n, to);
    for (int k = 0; k < kc; k++) {
        const int64_t cp = p0 + k, q = cp / f->C, c = cp % f->C;
        const float *base = f->xp + c * f->plane + (q >> 1) * f->WP + (q & 1);
        float *d = dst + (int64_t)k * ld;
        for (int j = 0; j < n; j++) d[j] = v_at(base + to[j], 2 * f->WP, 2, f->u, f->v);
        for (int j = n; j < nr; j++) d[j] = 0.0f;
    }
}
static void fill_v(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    fill_v_ld(arg, p0, kc, j0, n, nr, dst, nr);
}

#ifdef WINO_AVX2
/* The first float of each 16-byte group of r[0..32): 8 consecutive tiles' value at one patch column. */
T256 static inline __m256 first_of_groups(const float *r, int hi) {
    const __m256 v0 = _mm256_loadu_ps(r), v1 = _mm256_loadu_ps(r + 8), v2 = _mm256_loadu_ps(r + 16),
                 v3 = _mm256_loadu_ps(r + 24);
    __m256 a = hi ? _mm256_unpackhi_ps(v0, v1) : _mm256_unpacklo_ps(v0, v1); /* hi: the third float instead */
    __m256 b = hi ? _mm256_unpackhi_ps(v2, v3) : _mm256_unpacklo_ps(v2, v3);
    __m256 w = _mm256_shuffle_ps(a, b, 0x44); /* tiles 0 2 4 6 | 1 3 5 7 */
    return _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
/* Patch columns 0, 1, 2 (floats 0, 2, 4 of each tile: tiles 4 floats apart) of one patch row, 8 tiles. */
T256 static inline void cols8(const float *r, __m256 *c0, __m256 *c1, __m256 *c2) {
    *c0 = first_of_groups(r, 0), *c1 = first_of_groups(r, 1), *c2 = first_of_groups(r + 4, 0);
}
/* The same for two runs of 4 tiles (a in the low lanes, b in the high ones): rows of 4 tiles (8-wide outputs). */
T256 static inline __m256 pair128(const float *a, const float *b) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a)), _mm_loadu_ps(b), 1);
}
T256 static inline void cols4x2s4(const float *a, const float *b, __m256 *c0, __m256 *c1, __m256 *c2) {
    const __m256 v0 = pair128(a, b), v1 = pair128(a + 4, b + 4), v2 = pair128(a + 8, b + 8),
                 v3 = pair128(a + 12, b + 12), v4 = pair128(a + 16, b + 16);
    *c0 = _mm256_shuffle_ps(_mm256_unpacklo_ps(v0, v1), _mm256_unpacklo_ps(v2, v3), 0x44);
    *c1 = _mm256_shuffle_ps(_mm256_unpackhi_ps(v0, v1), _mm256_unpackhi_ps(v2, v3), 0x44);
    *c2 = _mm256_shuffle_ps(_mm256_unpacklo_ps(v1, v2), _mm256_unpacklo_ps(v3, v4), 0x44);
}
T256 static inline void cols_any(const float *a, const float *b, int run8, __m256 *c0, __m256 *c1, __m256 *c2) {
    if (run8)
        cols8(a, c0, c1, c2);
    else
        cols4x2s4(a, b, c0, c1, c2);
}
/* fill_v with 8 tiles a vector, as a run of 8 tiles of one tile row or as two runs of 4 (rows of 4 tiles pair up
 * across tile rows): the same operations in the same order. Reads up to 3 floats past a padded row (inside the
 * scratch: the next row, image or the M chunk). */
T256 static void fill_v_avx2_ld(const fill_arg *f, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst,
                                int64_t ld) {
    const int64_t WP = f->WP;
    int64_t to[32];
    tile_offsets(f, j0, n, to);
    const int u = f->u, v = f->v;
    /* tiles [0, nv) go 8 at a time, group g as a run of 8 (run8[g]) or two runs of 4: the same for every k */
    int nv = 0, run8[4];
    for (; nv + 8 <= n; nv += 8) {
        run8[nv / 8] = to[nv + 7] == to[nv] + 28;
        if (!run8[nv / 8] && !(to[nv + 3] == to[nv] + 12 && to[nv + 7] == to[nv + 4] + 12)) break;
    }
    for (int k = 0; k < kc; k++) {
        const int64_t cp = p0 + k, q = cp / f->C, c = cp % f->C;
        const float *base = f->xp + c * f->plane + (q >> 1) * WP + (q & 1);
        float *d = dst + (int64_t)k * ld;
        int j = 0;
        for (; j < nv; j += 8) {
            const float *r0 = base + to[j], *r1 = base + to[j + 4];
            const int r8 = run8[j / 8];
            __m256 a0, a1, a2, x0, x1, x2, y0, y1, y2;
            if (u == 1) {
                cols_any(r0 + 2 * WP, r1 + 2 * WP, r8, &a0, &a1, &a2);
            } else {
                const int64_t e = u == 0 ? 0 : 4 * WP;
                cols_any(r0 + e, r1 + e, r8, &x0, &x1, &x2);
                cols_any(r0 + 2 * WP, r1 + 2 * WP, r8, &y0, &y1, &y2);
                a0 = _mm256_sub_ps(x0, y0), a1 = _mm256_sub_ps(x1, y1), a2 = _mm256_sub_ps(x2, y2);
            }
            _mm256_storeu_ps(d + j, v == 0 ? _mm256_sub_ps(a0, a1) : v == 1 ? a1 : _mm256_sub_ps(a2, a1));
        }
        for (; j < n; j++) d[j] = v_at(base + to[j], 2 * WP, 2, u, v);
        for (j = n; j < nr; j++) d[j] = 0.0f;
    }
}
T256 static void fill_v_avx2(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    fill_v_avx2_ld(arg, p0, kc, j0, n, nr, dst, nr);
}
#endif

/* A^T m A for the tile whose 9 products are m[0], m[st], ..., m[8 st] (rows
 * first): outputs (0,0), (0,1), (1,0), (1,1). */
static inline void out_tile(const float *m, int64_t st, float t[4]) {
    float z0[3], z1[3];
    for (int c3 = 0; c3 < 3; c3++) z0[c3] = m[c3 * st] + m[(3 + c3) * st], z1[c3] = m[(3 + c3) * st] + m[(6 + c3) * st];
    t[0] = z0[0] + z0[1], t[1] = z0[1] + z0[2], t[2] = z1[0] + z1[1], t[3] = z1[1] + z1[2];
}

void dp_wino_images(const float *upk, const float *x, int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O,
                    const float *bias, int acc, float *y, float *scratch) {
    const int64_t HP = H + 2, WP = W + 2, plane = HP * WP, OH = H / 2, OW = W / 2, TH = OH / 2, TW = OW / 2;
    const int64_t T = nimg * TH * TW, K = 4 * C, un = dp_wino_u_floats(O, C);
    float *xp = scratch, *M = scratch + pad_floats(nimg, C, H, W);
    pad_copy(x, nimg * C, H, W, xp);
    fill_arg f = {xp, C, WP, plane, TH, TW, 4, 0, 0, 0};
    dp_bpanel_fn fill = fill_v;
#ifdef WINO_AVX2
    if (dp_kernel_level() >= 1) fill = fill_v_avx2;
#endif
    for (int xi = 0; xi < 9; xi++) {
        f.u = xi / 3, f.v = xi % 3;
        dp_sgemm_packed_bpanel_st(O, T, K, upk + xi * un, fill, &f, 0.0f, M + xi * O * T, T);
    }
    const int64_t st = O * T;
    for (int64_t n = 0; n < nimg; n++)
        for (int64_t o = 0; o < O; o++) {
            const float b = bias ? bias[o] : 0.0f;
            float *yo = y + (n * O + o) * OH * OW;
            const float *mo = M + o * T + n * TH * TW;
            for (int64_t ti = 0; ti < TH; ti++)
                for (int64_t tj = 0; tj < TW; tj++) {
                    float t[4];
                    out_tile(mo + ti * TW + tj, st, t);
                    float *y0 = yo + 2 * ti * OW + 2 * tj, *y1 = y0 + OW;
                    float v00 = t[0] + b, v01 = t[1] + b, v10 = t[2] + b, v11 = t[3] + b;
                    if (acc)
                        y0[0] += v00, y0[1] += v01, y1[0] += v10, y1[1] += v11;
                    else
                        y0[0] = v00, y0[1] = v01, y1[0] = v10, y1[1] = v11;
                }
        }
}

/* ------------------------------------------------------------ the adjoint
 * x_grad (+)= conv^T(y_grad), the transposed convolution's forward. Each
 * input phase (r, s) of x is a 2x2 correlation of y padded by one on every
 * side, with the phase's taps flipped:
 *   gx[c, 2p+r-1, 2q+s-1] = sum_{o,a,b} f[o,c,a,b] yp[o, p+a, q+b],  f[a][b] = w[o, c, 2(1-a)+r, 2(1-b)+s]
 * for p in [1-r, OH-r]: OH outputs (even), so F(2x2, 2x2) again, with its
 * 2x2 tiles' 3x3 patches two floats apart; 9 GEMMs C x O by O x tiles per
 * phase (36 in all: the forward's flops), M reused from phase to phase. */
int64_t dp_wino_t_u_floats(int64_t O, int64_t C) { return dp_sgemm_packed_a_floats(C, O); }

/* Rows c = i0 .. i0 + m - 1 of the 36 (phase q, product xi) matrices: (q, xi)'s row i at tmp + ((9q + xi) m + i) O;
 * f[a][b] = w[o, c, 2(1-a)+r, 2(1-b)+s]: f[0][b] is tap row 2 + r, f[1][b] row r. The taps of one row as 16
 * planes of O after them (16 O floats). */
static void rows_adj(void *arg, int64_t i0, int m, float *tmp) {
    const wrows *a = arg;
    const int64_t O = a->O, C = a->C;
    float *tp = tmp + 36 * m * O;
    for (int i = 0; i < m; i++) {
        for (int64_t o = 0; o < O; o++) {
            const float *wk = a->w + (o * C + i0 + i) * 16;
            for (int t = 0; t < 16; t++) tp[t * O + o] = wk[t];
        }
        for (int q = 0; q < 4; q++) {
            const int r = q >> 1, s = q & 1;
            g_products(tp + ((2 + r) * 4 + 2 + s) * O, tp + ((2 + r) * 4 + s) * O, tp + (r * 4 + 2 + s) * O,
                       tp + (r * 4 + s) * O, O, tmp + (q * 9 * m + i) * O, m * O);
        }
    }
}

int64_t dp_wino_t_pack_panels(int64_t C) { return dp_sgemm_pack_a_panels(C); }

void dp_wino_t_pack_w(const float *w, int64_t O, int64_t C, int64_t q0, int64_t q1, float *tmp, float *upk) {
    wrows a = {w, O, C};
    dp_sgemm_pack_a_rows(C, O, q0, q1, 36, rows_adj, &a, tmp, upk, dp_wino_t_u_floats(O, C));
}

int64_t dp_wino_t_scratch_floats(int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O) {
    return pad_floats(nimg, O, H / 2, W / 2) + 9 * C * nimg * (H / 4) * (W / 4);
}

/* B panel rows p0.. (k = o), tiles j0..: V at (u, v) of each tile's patch in y's padded plane. */
static void fill_t_v(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const fill_arg *f = arg;
    int64_t to[32];
    tile_offsets(f, j0, n, to);
    for (int k = 0; k < kc; k++) {
        const float *base = f->xp + (p0 + k) * f->plane + f->off;
        float *d = dst + (int64_t)k * nr;
        for (int j = 0; j < n; j++) d[j] = v_at(base + to[j], f->WP, 1, f->u, f->v);
        for (int j = n; j < nr; j++) d[j] = 0.0f;
    }
}

#ifdef WINO_AVX2
/* Patch columns 0, 1, 2 of one patch row for two runs of 4 consecutive tiles
 * (patches 2 floats apart): run a in the low lanes, run b in the high ones. */
T256 static inline void cols4x2(const float *a, const float *b, __m256 *c0, __m256 *c1, __m256 *c2) {
    const __m256 lo = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a)), _mm_loadu_ps(b), 1);
    const __m256 hi = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a + 4)), _mm_loadu_ps(b + 4), 1);
    const __m256 lo2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a + 2)), _mm_loadu_ps(b + 2), 1);
    const __m256 hi2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a + 6)), _mm_loadu_ps(b + 6), 1);
    *c0 = _mm256_shuffle_ps(lo, hi, 0x88), *c1 = _mm256_shuffle_ps(lo, hi, 0xDD);
    *c2 = _mm256_shuffle_ps(lo2, hi2, 0x88);
}
/* fill_t_v with pairs of runs of 4 tiles of one tile row as vectors (rows of
 * 4 tiles pair up across tile rows): the same operations in the same order.
 * Reads 1 float past a padded row (the next row, or the M chunk after the
 * last plane). */
T256 static void fill_t_v_avx2(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const fill_arg *f = arg;
    const int64_t WP = f->WP;
    int64_t to[32];
    tile_offsets(f, j0, n, to);
    const int u = f->u, v = f->v;
    int nv = 0; /* tiles [0, nv) go 8 at a time: two runs of 4 consecutive tiles; the same for every k */
    while (nv + 8 <= n && to[nv + 3] == to[nv] + 6 && to[nv + 7] == to[nv + 4] + 6) nv += 8;
    for (int k = 0; k < kc; k++) {
        const float *base = f->xp + (p0 + k) * f->plane + f->off;
        float *d = dst + (int64_t)k * nr;
        int j = 0;
        for (; j < nv; j += 8) {
            const float *ra = base + to[j], *rb = base + to[j + 4];
            __m256 a0, a1, a2, x0, x1, x2, y0, y1, y2;
            if (u == 1) {
                cols4x2(ra + WP, rb + WP, &a0, &a1, &a2);
            } else {
                const int64_t e = u == 0 ? 0 : 2 * WP;
                cols4x2(ra + e, rb + e, &x0, &x1, &x2);
                cols4x2(ra + WP, rb + WP, &y0, &y1, &y2);
                a0 = _mm256_sub_ps(x0, y0), a1 = _mm256_sub_ps(x1, y1), a2 = _mm256_sub_ps(x2, y2);
            }
            _mm256_storeu_ps(d + j, v == 0 ? _mm256_sub_ps(a0, a1) : v == 1 ? a1 : _mm256_sub_ps(a2, a1));
        }
        for (; j < n; j++) d[j] = v_at(base + to[j], WP, 1, u, v);
        for (j = n; j < nr; j++) d[j] = 0.0f;
    }
}
#endif

void dp_wino_t_images(const float *upk, const float *gy, int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O,
                      float *gx, float *scratch) {
    const int64_t OH = H / 2, OW = W / 2, WP = OW + 2, plane = (OH + 2) * WP, TH = OH / 2, TW = OW / 2;
    const int64_t T = nimg * TH * TW, un = dp_wino_t_u_floats(O, C), st = C * T;
    float *yp = scratch, *M = scratch + pad_floats(nimg, O, OH, OW);
    pad_copy(gy, nimg * O, OH, OW, yp);
    fill_arg f = {yp, O, WP, plane, TH, TW, 2, 0, 0, 0};
    dp_bpanel_fn fill = fill_t_v;
#ifdef WINO_AVX2
    if (dp_kernel_level() >= 1) fill = fill_t_v_avx2;
#endif
    for (int q = 0; q < 4; q++) {
        const int r = q >> 1, s = q & 1;
        f.off = (1 - r) * WP + (1 - s);
        for (int xi = 0; xi < 9; xi++) {
            f.u = xi / 3, f.v = xi % 3;
            dp_sgemm_packed_bpanel_st(C, T, O, upk + (q * 9 + xi) * un, fill, &f, 0.0f, M + xi * st, T);
        }
        /* each tile added at rows 1 - r + 4ti + {0, 2} and columns 1 - s + 4tj + {0, 2} */
        for (int64_t n = 0; n < nimg; n++)
            for (int64_t c = 0; c < C; c++) {
                float *g = gx + (n * C + c) * H * W + (1 - r) * W + (1 - s);
                const float *mo = M + c * T + n * TH * TW;
                for (int64_t ti = 0; ti < TH; ti++)
                    for (int64_t tj = 0; tj < TW; tj++) {
                        float t[4];
                        out_tile(mo + ti * TW + tj, st, t);
                        float *g0 = g + 4 * ti * W + 4 * tj, *g1 = g0 + 2 * W;
                        g0[0] += t[0], g0[2] += t[1], g1[0] += t[2], g1[2] += t[3];
                    }
            }
    }
}

/* ------------------------------------------------------------ the weight gradient
 * dw[o, c, 2a+r, 2b+s] += sum_{n,i,j} gy[n,o,i,j] X_rs[n,c,i+a,j+b] (X_rs the
 * phase images of x padded by one). Over one 2x2 tile g of gy this is
 * F(2x2, 2x2) with g as the filter and (a, b) as the output, so the sum over
 * tiles goes into the transformed domain:
 *   M[xi][rs, c][o] = sum_t (B^T d_t B)[xi] (G g_t G^T)[xi]
 * (d_t the forward's patches: the same V and fill), one GEMM C x tiles by
 * tiles x O per product and phase over chunks of about dp_wino_w_chunk
 * tiles, then dw += A^T M A. */
int64_t dp_wino_w_chunk = DP_WINO_W_CHUNK;
static int64_t w_chunk_imgs(int64_t H, int64_t W) {
    int64_t per = (H / 4) * (W / 4), g = dp_wino_w_chunk / per;
    return g > 0 ? g : 1;
}

int64_t dp_wino_w_m_floats(int64_t O, int64_t C) { return 36 * C * O; }

int64_t dp_wino_w_scratch_floats(int64_t C, int64_t H, int64_t W, int64_t O) {
    const int64_t g = w_chunk_imgs(H, W), tg = g * (H / 4) * (W / 4);
    return pad_floats(g, C, H, W) + C * tg + O * tg + 32;
}

/* f(..., u, v) for product xi = 3u + v, inlined with u and v constant: the
 * selections fold away. */
#define WINO_SWITCH(xi, f, ...)                                                                                        \
    switch (xi) {                                                                                                      \
    case 0: f(__VA_ARGS__, 0, 0); break;                                                                               \
    case 1: f(__VA_ARGS__, 0, 1); break;                                                                               \
    case 2: f(__VA_ARGS__, 0, 2); break;                                                                               \
    case 3: f(__VA_ARGS__, 1, 0); break;                                                                               \
    case 4: f(__VA_ARGS__, 1, 1); break;                                                                               \
    case 5: f(__VA_ARGS__, 1, 2); break;                                                                               \
    case 6: f(__VA_ARGS__, 2, 0); break;                                                                               \
    case 7: f(__VA_ARGS__, 2, 1); break;                                                                               \
    default: f(__VA_ARGS__, 2, 2); break;                                                                              \
    }

/* Ug = (G g G^T)[u][v] of every 2x2 tile of gy[n][o] for nimg images: ug[o][tile], ld floats a row. */
static inline __attribute__((always_inline)) void w_fill_g(const float *gy, int64_t nimg, int64_t O, int64_t OH,
                                                           int64_t OW, float *ug, int64_t ld, const int u, const int v) {
    const int64_t TW = OW / 2, TH = OH / 2, per = TH * TW;
    for (int64_t n = 0; n < nimg; n++)
        for (int64_t o = 0; o < O; o++) {
            float *d = ug + o * ld + n * per;
            for (int64_t ti = 0; ti < TH; ti++) {
                const float *g0 = gy + ((n * O + o) * OH + 2 * ti) * OW, *g1 = g0 + OW;
                for (int64_t tj = 0; tj < TW; tj++) {
                    float h0 = u == 0 ? g0[2 * tj] : u == 1 ? g0[2 * tj] + g1[2 * tj] : g1[2 * tj];
                    float h1 = u == 0 ? g0[2 * tj + 1] : u == 1 ? g0[2 * tj + 1] + g1[2 * tj + 1] : g1[2 * tj + 1];
                    d[ti * TW + tj] = v == 0 ? h0 : v == 1 ? h0 + h1 : h1;
                }
            }
        }
}

void dp_wino_w_pairs(const float *gy, const float *x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                     int64_t p0, int64_t p1, float *M, float *scratch) {
    const int64_t OH = H / 2, OW = W / 2, WP = W + 2, plane = (H + 2) * WP, TH = OH / 2, TW = OW / 2, per = TH * TW;
    const int64_t g = w_chunk_imgs(H, W), tg = g * per;
    float *xp = scratch, *vt = xp + pad_floats(g, C, H, W), *ug = vt + C * tg;
    for (int64_t n0 = 0; n0 < N; n0 += g) {
        const int64_t n1 = n0 + g < N ? n0 + g : N, k = (n1 - n0) * per;
        pad_copy(x + n0 * C * H * W, (n1 - n0) * C, H, W, xp);
        fill_arg f = {xp, C, WP, plane, TH, TW, 4, 0, 0, 0};
        for (int64_t p = p0, xi = -1; p < p1; p++) {
            const int64_t q = p % 4;
            if (p / 4 != xi) { /* Ug once per product */
                xi = p / 4, f.u = (int)xi / 3, f.v = (int)xi % 3;
                WINO_SWITCH(xi, w_fill_g, gy + n0 * O * OH * OW, n1 - n0, O, OH, OW, ug, k)
            }
            for (int64_t j0 = 0; j0 < k; j0 += 32) { /* V's rows of phase q */
                const int n = (int)(k - j0 < 32 ? k - j0 : 32);
#ifdef WINO_AVX2
                if (dp_kernel_level() >= 1)
                    fill_v_avx2_ld(&f, q * C, (int)C, j0, n, n, vt + j0, k);
                else
#endif
                    fill_v_ld(&f, q * C, (int)C, j0, n, n, vt + j0, k);
            }
            dp_sgemm_st(0, 1, C, O, k, 1.0f, vt, k, ug, k, n0 == 0 ? 0.0f : 1.0f, M + (xi * 4 + q) * C * O, O);
        }
    }
}

/* Outputs 16 at a time: M's rows are read a cache line at a time, dw's 16
 * rows advance together. With o outermost (M read 4 O bytes apart) it took
 * 16.7 % of a 1-thread D.8 backward (4x4 outputs, tried and not taken), 8.8 %
 * like this; 2.4 % of D.5's. */
void dp_wino_w_out(const float *M, int64_t O, int64_t C, int64_t o0, int64_t o1, float *dw) {
    const int64_t st = 4 * C * O;
    for (int64_t ob = o0; ob < o1; ob += 16) {
        const int64_t oe = ob + 16 < o1 ? ob + 16 : o1;
        for (int64_t c = 0; c < C; c++)
            for (int64_t q = 0; q < 4; q++)
                for (int64_t o = ob; o < oe; o++) {
                    float t[4];
                    out_tile(M + (q * C + c) * O + o, st, t);
                    float *d = dw + (o * C + c) * 16 + (q >> 1) * 4 + (q & 1);
                    d[0] += t[0], d[2] += t[1], d[8] += t[2], d[10] += t[3];
                }
    }
}
