/* Winograd F(2x2, 2x2) for 4x4 stride-2 padding-1 convolutions: see wino.h. */
#include "kernels/wino.h"

#include <stdint.h>
#include <string.h>

#include "core/internal.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DP_PORTABLE)
#include <immintrin.h>
#include "kernels/tr8.h"
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

/* dst[i drs + t ld + k] = src[i 16 + k ss + t] for rows i < m, taps t < 16, items k < n: the 16 taps of n
 * items of m rows into 16 planes a row. With AVX2 8 items x 8 taps a step through an 8x8 transpose, the m rows
 * of 8 items in turn (each item's m rows are 16 m consecutive floats: 8 streams): one float at a time, a row
 * at a time, the stores went ld floats apart (2 KB at O = 512: a few L1 sets) and the loads C 64 bytes apart,
 * ~2 % of a 1-thread DCGAN-64 iteration for the adjoint's transform. */
#ifdef WINO_AVX2
T256 static int64_t taps_planes_avx2(const float *src, int64_t ss, int64_t n, int m, float *dst, int64_t ld,
                                     int64_t drs) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int hi = 0; hi < 2 * m; hi++) {
            const int i = hi >> 1, h = (hi & 1) * 8;
            const float *sr = src + i * 16;
            float *dr = dst + i * drs;
            __m256 r[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(sr + (k + j) * ss + h);
            dp_tr8_avx2(r); /* r[j]: tap h + j of the 8 items */
            for (int j = 0; j < 8; j++) _mm256_storeu_ps(dr + (h + j) * ld + k, r[j]);
        }
    return k;
}
#endif
static void taps_planes(const float *src, int64_t ss, int64_t n, int m, float *dst, int64_t ld, int64_t drs) {
    int64_t k = 0;
#ifdef WINO_AVX2
    if (dp_kernel_level() >= 1) k = taps_planes_avx2(src, ss, n, m, dst, ld, drs);
#endif
    for (int i = 0; i < m; i++)
        for (int64_t kk = k; kk < n; kk++)
            for (int t = 0; t < 16; t++) dst[i * drs + t * ld + kk] = src[i * 16 + kk * ss + t];
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
        taps_planes(a->w + (i0 + i) * C * 16, 16, C, 1, tp, C, 0);
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

/* ------------------------------------------------------------ the input transform's source
 * The fills read each tile's 3x3 patch from a copy of the images padded with
 * 1 row and column of zeros on each side, whose rows are split into S column
 * classes: padded column p is at (p % S) L
 * + p / S of its row (L = ceil((W + 2) / S) floats a class, RS = S L a row).
 * S is the distance between the patches of neighbouring tiles (4 in the
 * forward, 2 in the adjoint), so a patch column of consecutive tiles is
 * consecutive floats: the fill loads them as they are, where the plain padded
 * copy needed a deinterleave per load (3 loads and 3 shuffles a vector: the
 * fills were 15 % of a 1-thread DCGAN-64 iteration). */
/* An odd side of outputs ends in a tile half outside: its V reads zeros
 * (the padded copy goes on to the patches of the last tile), its outputs
 * outside are dropped. So the padded copy is Hp x Wp: S T + 2 for T tiles
 * of S (H + 2, W + 2 when the outputs are even). */
static int64_t wtiles(int64_t n) { return (n + 1) / 2; }
static int64_t split_l(int64_t Wp, int S) { return (Wp + S - 1) / S; }
static int64_t split_plane(int64_t Hp, int64_t Wp, int S) { return Hp * S * split_l(Wp, S); }
/* The planes, then the copy's index table and row buffer (split_copy). */
static int64_t split_floats(int64_t nimg, int64_t C, int64_t Hp, int64_t Wp, int S) {
    return (nimg * C * split_plane(Hp, Wp, S) + 2 * S * split_l(Wp, S) + 16 + 15) / 16 * 16;
}
/* The forward's (and the weight gradient's) copy of H x W images; the adjoint's of OH x OW gradients. */
static int64_t fwd_hp(int64_t H) { return 4 * wtiles(H / 2) + 2; }
static int64_t adj_hp(int64_t OH) { return 2 * wtiles(OH) + 2; }

/* planes of H x W into split padded planes (above), at most as many planes as
 * split_floats was given. Every row has the same pattern: an index table into
 * a padded copy of the row, then a gather with no branch (loops per class, 4
 * or 5 floats each on DCGAN-64's rows, made the copy 15 % of a D.5 forward).
 * The table and the row buffer follow the planes. */
static void split_copy(const float *x, int64_t planes, int64_t H, int64_t W, int64_t Hp, int64_t Wp, int S, float *xz) {
    const int64_t L = split_l(Wp, S), RS = S * L, plane = Hp * RS;
    int32_t *idx = (int32_t *)(void *)(xz + planes * plane);
    float *row = xz + planes * plane + RS;
    for (int64_t m = 0; m < S; m++)
        for (int64_t t = 0; t < L; t++) idx[m * L + t] = (int32_t)(S * t + m); /* the padded column */
    memset(row, 0, sizeof(float) * (size_t)(RS + 1)); /* row[0] and row[W + 1..RS] stay 0 */
    for (int64_t i = 0; i < planes; i++) {
        float *d = xz + i * plane;
        memset(d, 0, sizeof(float) * (size_t)RS);
        for (int64_t h = 0; h < H; h++) {
            float *dr = d + (h + 1) * RS;
            memcpy(row + 1, x + (i * H + h) * W, sizeof(float) * (size_t)W);
            for (int64_t k = 0; k < RS; k++) dr[k] = row[idx[k]];
        }
        memset(d + (H + 1) * RS, 0, sizeof(float) * (size_t)((Hp - H - 1) * RS));
    }
}

static int64_t v9_floats(int64_t T);

int64_t dp_wino_scratch_floats(int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O) {
    const int64_t T = nimg * wtiles(H / 2) * wtiles(W / 2);
    return split_floats(nimg, C, fwd_hp(H), fwd_hp(W), 4) + 9 * O * T + v9_floats(T);
}

typedef struct fill_arg {
    const float *xz;  /* [nimg][C] split padded planes */
    int64_t C;        /* channels of xz per image */
    int64_t L, RS, plane, TH, TW;
    int64_t trs, prs; /* padded rows from one tile row to the next (4, 2) and from one patch row to the next (2, 1) */
    int S, phased;    /* phased (forward): B's row k is phase k / C of channel k % C; else channel k, phase fixed */
    int r0, c0;       /* not phased: the patches' first padded row and column in tile (0, 0) */
    int u, v;
} fill_arg;

/* The tiles' first floats in their (image, channel 0) plane: tiles j0.. of the chunk. */
static void tile_offsets(const fill_arg *f, int64_t j0, int n, int64_t *to) {
    const int64_t per_img = f->TH * f->TW;
    for (int j = 0; j < n; j++) {
        int64_t t = j0 + j, img = t / per_img, ti = t % per_img / f->TW, tj = t % f->TW;
        to[j] = img * f->C * f->plane + ti * f->trs * f->RS + tj;
    }
}

/* Rows of B in order: channel c of phase q (fixed unless phased), the
 * patch's first row in tile (0, 0) at base, its three columns at o[0..2]. */
typedef struct krow {
    int64_t c, q, o[3];
    const float *base;
} krow;

static inline void krow_set(const fill_arg *f, krow *r) {
    const int64_t r0 = f->phased ? r->q >> 1 : f->r0, c0 = f->phased ? r->q & 1 : f->c0;
    for (int b = 0; b < 3; b++) {
        const int64_t pc = c0 + b * (f->S / 2);
        r->o[b] = pc % f->S * f->L + pc / f->S;
    }
    r->base = f->xz + r->c * f->plane + r0 * f->RS;
}
static inline void krow_first(const fill_arg *f, int64_t k, krow *r) {
    r->c = f->phased ? k % f->C : k;
    r->q = f->phased ? k / f->C : 0;
    krow_set(f, r);
}
static inline void krow_next(const fill_arg *f, krow *r) {
    if (f->phased && ++r->c == f->C) {
        r->c = 0, r->q++;
        krow_set(f, r);
    } else {
        if (!f->phased) r->c++;
        r->base += f->plane;
    }
}

/* V at (u, v) of the 3x3 patch at r (rows rs floats apart, columns at o[0..2]):
 * B^T d's row u at patch columns 0, 1, 2, then the column combination v. */
static inline float v_at(const float *r0, int64_t rs, const int64_t o[3], int u, int v) {
    const float *r1 = r0 + rs, *r2 = r0 + 2 * rs;
    float a0, a1, a2;
    if (u == 0)
        a0 = r0[o[0]] - r1[o[0]], a1 = r0[o[1]] - r1[o[1]], a2 = r0[o[2]] - r1[o[2]];
    else if (u == 1)
        a0 = r1[o[0]], a1 = r1[o[1]], a2 = r1[o[2]];
    else
        a0 = r2[o[0]] - r1[o[0]], a1 = r2[o[1]] - r1[o[1]], a2 = r2[o[2]] - r1[o[2]];
    return v == 0 ? a0 - a1 : v == 1 ? a1 : a2 - a1;
}

/* Rows p0.. of V at (f->u, f->v) (ld floats apart), tiles j0..j0 + n - 1 (n <= 32): the weight gradient's. */
static void fill_v_ld(const fill_arg *f, int64_t p0, int kc, int64_t j0, int n, float *dst, int64_t ld) {
    int64_t to[32];
    tile_offsets(f, j0, n, to);
    const int64_t rs = f->prs * f->RS;
    krow r;
    krow_first(f, p0, &r);
    for (int k = 0; k < kc; k++, krow_next(f, &r)) {
        float *d = dst + (int64_t)k * ld;
        for (int j = 0; j < n; j++) d[j] = v_at(r.base + to[j], rs, r.o, f->u, f->v);
    }
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

#ifdef WINO_AVX2
/* 8 tiles' floats at p + to[0..7] that come as a run of 8 (kind 8), two runs of 4 (4) or four runs of 2 (2). */
T256 static inline __m256 ld8(const float *p, const int64_t *to, const int kind) {
    if (kind == 8) return _mm256_loadu_ps(p + to[0]);
    if (kind == 4) return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + to[0])), _mm_loadu_ps(p + to[4]), 1);
    /* _mm_loadu_si64: 8 bytes at any alignment */
    const __m128i lo = _mm_unpacklo_epi64(_mm_loadu_si64(p + to[0]), _mm_loadu_si64(p + to[2]));
    const __m128i hi = _mm_unpacklo_epi64(_mm_loadu_si64(p + to[4]), _mm_loadu_si64(p + to[6]));
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_castsi128_ps(lo)), _mm_castsi128_ps(hi), 1);
}

/* The kind of the 8 tiles at to[0..7] (0: none of those). */
static int run_kind(const int64_t *to) {
    int r2 = 1;
    for (int i = 0; i < 8; i += 2) r2 &= to[i + 1] == to[i] + 1;
    if (!r2) return 0;
    if (to[7] == to[0] + 7) return 8;
    return to[3] == to[0] + 3 && to[7] == to[4] + 3 ? 4 : 2;
}

/* Tiles [0, nv) of to[0..n) go 8 at a time, group g of kind kinds[g] (the same for every row of B). */
static int run_groups(const int64_t *to, int n, int kinds[4]) {
    int nv = 0;
    for (; nv + 8 <= n && (kinds[nv / 8] = run_kind(to + nv)) != 0; nv += 8) {
    }
    return nv;
}

/* V at (u, v) of 8 tiles: the same operations in the same order as v_at. */
T256 static inline __m256 v8(const float *r0, int64_t rs, const int64_t o[3], const int64_t *to, const int kind, const int u,
                             const int v) {
    const float *r1 = r0 + rs, *r2 = r0 + 2 * rs;
    __m256 a0 = _mm256_setzero_ps(), a1, a2 = _mm256_setzero_ps();
    if (u == 1) {
        if (v == 0) a0 = ld8(r1 + o[0], to, kind);
        a1 = ld8(r1 + o[1], to, kind);
        if (v == 2) a2 = ld8(r1 + o[2], to, kind);
    } else {
        const float *ra = u == 0 ? r0 : r2;
        if (v == 0) a0 = _mm256_sub_ps(ld8(ra + o[0], to, kind), ld8(r1 + o[0], to, kind));
        a1 = _mm256_sub_ps(ld8(ra + o[1], to, kind), ld8(r1 + o[1], to, kind));
        if (v == 2) a2 = _mm256_sub_ps(ld8(ra + o[2], to, kind), ld8(r1 + o[2], to, kind));
    }
    return v == 0 ? _mm256_sub_ps(a0, a1) : v == 1 ? a1 : _mm256_sub_ps(a2, a1);
}

/* fill_v_ld with 8 tiles a vector wherever they come in runs of 2, 4 or 8 (every k alike), u and v constant. */
static inline __attribute__((always_inline)) T256 void fill_v8(const fill_arg *f, int64_t p0, int kc, int64_t j0, int n,
                                                               float *dst, int64_t ld, const int u, const int v) {
    int64_t to[32];
    tile_offsets(f, j0, n, to);
    int kinds[4];
    const int nv = run_groups(to, n, kinds);
    const int64_t rs = f->prs * f->RS;
    krow r;
    krow_first(f, p0, &r);
    for (int k = 0; k < kc; k++, krow_next(f, &r)) {
        float *d = dst + (int64_t)k * ld;
        int j = 0;
        for (; j < nv; j += 8) {
            const int kind = kinds[j / 8];
            __m256 y = kind == 8 ? v8(r.base, rs, r.o, to + j, 8, u, v) : kind == 4 ? v8(r.base, rs, r.o, to + j, 4, u, v)
                                                                                : v8(r.base, rs, r.o, to + j, 2, u, v);
            _mm256_storeu_ps(d + j, y);
        }
        for (; j < n; j++) d[j] = v_at(r.base + to[j], rs, r.o, u, v);
    }
}


T256 static void fill_v_avx2_ld(const fill_arg *f, int64_t p0, int kc, int64_t j0, int n, float *dst, int64_t ld) {
    WINO_SWITCH(3 * f->u + f->v, fill_v8, f, p0, kc, j0, n, dst, ld)
}
#endif

/* A^T m A for the tile whose 9 products are m[0], m[st], ..., m[8 st] (rows
 * first): outputs (0,0), (0,1), (1,0), (1,1). */
static inline void out_tile(const float *m, int64_t st, float t[4]) {
    float z0[3], z1[3];
    for (int c3 = 0; c3 < 3; c3++) z0[c3] = m[c3 * st] + m[(3 + c3) * st], z1[c3] = m[(3 + c3) * st] + m[(6 + c3) * st];
    t[0] = z0[0] + z0[1], t[1] = z0[1] + z0[2], t[2] = z1[0] + z1[1], t[3] = z1[1] + z1[2];
}

/* ------------------------------------------------------------ the 9 products of a K slice at once
 * The forward and the adjoint fill the B panels of all 9 products for one K
 * slice in one pass over the patches (each patch row read once, B^T d's rows
 * shared by the 3 products of a u), then run the 9 GEMMs on them
 * (dp_sgemm_packed_ab_st). Product xi's panels at vb + xi * vs: panel q at
 * + q kc nr, row k at + k nr. Same operations as v_at, so the same bits. */
/* sized by the largest K slice: the kernel may change between sizing and running (tests switch it) */
static int64_t v9_stride(int64_t T) { return (int64_t)dp_sgemm_kc_max() * ((T + 31) / 32 * 32); }
static int64_t v9_floats(int64_t T) { return 9 * v9_stride(T); }

static inline void v9_at(const float *r0, int64_t rs, const int64_t o[3], float *d, int64_t vs) {
    for (int xi = 0; xi < 9; xi++) d[xi * vs] = v_at(r0, rs, o, xi / 3, xi % 3);
}

static void fill9(const fill_arg *f, int64_t p0, int kc, int64_t T, int nr, float *vb, int64_t vs) {
    const int64_t rs = f->prs * f->RS;
    for (int64_t j0 = 0; j0 < T; j0 += nr) {
        const int n = (int)(T - j0 < nr ? T - j0 : nr);
        int64_t to[32];
        tile_offsets(f, j0, n, to);
        float *dst = vb + j0 / nr * kc * nr;
        krow r;
        krow_first(f, p0, &r);
        for (int k = 0; k < kc; k++, krow_next(f, &r)) {
            float *d = dst + (int64_t)k * nr;
            for (int j = 0; j < n; j++) v9_at(r.base + to[j], rs, r.o, d + j, vs);
            for (int j = n; j < nr; j++)
                for (int xi = 0; xi < 9; xi++) d[xi * vs + j] = 0.0f;
        }
    }
}

#ifdef WINO_AVX2
/* The 9 products of 8 tiles from their patches' 3 rows. */
T256 static inline void v9_8(const float *r0, int64_t rs, const int64_t o[3], const int64_t *to, const int kind, float *d,
                             int64_t vs) {
    const float *r1 = r0 + rs, *r2 = r0 + 2 * rs;
    __m256 a[3][3];
    for (int b = 0; b < 3; b++) {
        const __m256 x0 = ld8(r0 + o[b], to, kind), x1 = ld8(r1 + o[b], to, kind), x2 = ld8(r2 + o[b], to, kind);
        a[0][b] = _mm256_sub_ps(x0, x1), a[1][b] = x1, a[2][b] = _mm256_sub_ps(x2, x1);
    }
    for (int u = 0; u < 3; u++) {
        _mm256_storeu_ps(d + (3 * u) * vs, _mm256_sub_ps(a[u][0], a[u][1]));
        _mm256_storeu_ps(d + (3 * u + 1) * vs, a[u][1]);
        _mm256_storeu_ps(d + (3 * u + 2) * vs, _mm256_sub_ps(a[u][2], a[u][1]));
    }
}

T256 static void fill9_avx2(const fill_arg *f, int64_t p0, int kc, int64_t T, int nr, float *vb, int64_t vs) {
    const int64_t rs = f->prs * f->RS;
    for (int64_t j0 = 0; j0 < T; j0 += nr) {
        const int n = (int)(T - j0 < nr ? T - j0 : nr);
        int64_t to[32];
        tile_offsets(f, j0, n, to);
        int kinds[4];
        const int nv = run_groups(to, n, kinds);
        float *dst = vb + j0 / nr * kc * nr;
        krow r;
        krow_first(f, p0, &r);
        for (int k = 0; k < kc; k++, krow_next(f, &r)) {
            float *d = dst + (int64_t)k * nr;
            int j = 0;
            for (; j < nv; j += 8) {
                const int kind = kinds[j / 8];
                if (kind == 8)
                    v9_8(r.base, rs, r.o, to + j, 8, d + j, vs);
                else if (kind == 4)
                    v9_8(r.base, rs, r.o, to + j, 4, d + j, vs);
                else
                    v9_8(r.base, rs, r.o, to + j, 2, d + j, vs);
            }
            for (; j < n; j++) v9_at(r.base + to[j], rs, r.o, d + j, vs);
            for (j = n; j < nr; j++)
                for (int xi = 0; xi < 9; xi++) d[xi * vs + j] = 0.0f;
        }
    }
}
#endif

/* M + xi Mr T (Mr x T) = U_xi (Mr x K, packed: u[xi]) x V_xi (K x T) for the 9 products. */
static void gemm9(const fill_arg *f, int64_t K, int64_t T, int64_t Mr, const float *const u[9], float *M, float *vb) {
    const int64_t kcmax = dp_sgemm_kc(), vs = v9_stride(T);
    const int nr = dp_sgemm_nr();
    for (int64_t p0 = 0; p0 < K; p0 += kcmax) {
        const int kc = (int)(K - p0 < kcmax ? K - p0 : kcmax);
#ifdef WINO_AVX2
        if (dp_kernel_level() >= 1)
            fill9_avx2(f, p0, kc, T, nr, vb, vs);
        else
#endif
            fill9(f, p0, kc, T, nr, vb, vs);
        for (int xi = 0; xi < 9; xi++)
            dp_sgemm_packed_ab_st(Mr, T, kc, dp_sgemm_packed_a_slice(u[xi], Mr, p0), vb + xi * vs, p0 ? 1.0f : 0.0f,
                                  M + xi * Mr * T, T);
    }
}

/* One output plane of the forward: tiles of M at mo (products st apart), TH x TW of them, into yo (OH x OW;
 * a last tile half outside writes its half inside). */
static inline __attribute__((always_inline)) void fwd_out_tail(const float *mo, int64_t st, int64_t ti, int64_t tj,
                                                               int64_t TW, int64_t OH, int64_t OW, float b, int acc,
                                                               float *yo) {
    const int r1 = 2 * ti + 1 < OH;
    for (; tj < TW; tj++) {
        float t[4];
        out_tile(mo + ti * TW + tj, st, t);
        float *y0 = yo + 2 * ti * OW + 2 * tj;
        const float v[4] = {t[0] + b, t[1] + b, t[2] + b, t[3] + b};
        const int n = 2 * tj + 1 < OW ? 2 : 1;
        for (int e = 0; e < n; e++) {
            y0[e] = acc ? y0[e] + v[e] : v[e];
            if (r1) y0[OW + e] = acc ? y0[OW + e] + v[2 + e] : v[2 + e];
        }
    }
}
static void fwd_out_plane(const float *mo, int64_t st, int64_t TH, int64_t TW, int64_t OH, int64_t OW, float b, int acc,
                          float *yo) {
    for (int64_t ti = 0; ti < TH; ti++) fwd_out_tail(mo, st, ti, 0, TW, OH, OW, b, acc, yo);
}

/* One plane of the adjoint's phase: tile (ti, tj) adds at g[4 ti W + 4 tj + {0, 2}] and 2 W further (g: the
 * phase's first pixel, column 1 - s of its row), the phase OH x OW pixels (a tile half outside adds its half). */
static inline __attribute__((always_inline)) void adj_out_tail(const float *mo, int64_t st, int64_t ti, int64_t tj,
                                                               int64_t TW, int64_t OH, int64_t OW, int64_t W, float *g) {
    const int r1 = 2 * ti + 1 < OH;
    for (; tj < TW; tj++) {
        float t[4];
        out_tile(mo + ti * TW + tj, st, t);
        float *g0 = g + 4 * ti * W + 4 * tj;
        const int c1 = 2 * tj + 1 < OW;
        g0[0] += t[0];
        if (c1) g0[2] += t[1];
        if (r1) {
            g0[2 * W] += t[2];
            if (c1) g0[2 * W + 2] += t[3];
        }
    }
}
static void adj_out_plane(const float *mo, int64_t st, int64_t TH, int64_t TW, int64_t OH, int64_t OW, int64_t W, int s,
                          float *g) {
    (void)s;
    for (int64_t ti = 0; ti < TH; ti++) adj_out_tail(mo, st, ti, 0, TW, OH, OW, W, g);
}

#ifdef WINO_AVX2
/* out_tile of 4 consecutive tiles (lanes): the same sums in the same order. */
T256 static inline void out_tile4(const float *m, int64_t st, __m128 t[4]) {
    __m128 z0[3], z1[3];
    for (int c3 = 0; c3 < 3; c3++) {
        const __m128 a = _mm_loadu_ps(m + c3 * st), b = _mm_loadu_ps(m + (3 + c3) * st), c = _mm_loadu_ps(m + (6 + c3) * st);
        z0[c3] = _mm_add_ps(a, b), z1[c3] = _mm_add_ps(b, c);
    }
    t[0] = _mm_add_ps(z0[0], z0[1]), t[1] = _mm_add_ps(z0[1], z0[2]);
    t[2] = _mm_add_ps(z1[0], z1[1]), t[3] = _mm_add_ps(z1[1], z1[2]);
}
/* The 4 tiles' pairs (a_j, b_j) in tile order: a_0 b_0 a_1 b_1 ... a_3 b_3. */
T256 static inline __m256 pairs8(__m128 a, __m128 b) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_unpacklo_ps(a, b)), _mm_unpackhi_ps(a, b), 1);
}
/* fwd_out_plane, 4 whole tiles of a whole row at a time: 8 consecutive floats of each output row. */
T256 static void fwd_out_plane_avx2(const float *mo, int64_t st, int64_t TH, int64_t TW, int64_t OH, int64_t OW, float b,
                                    int acc, float *yo) {
    const __m128 vb = _mm_set1_ps(b);
    for (int64_t ti = 0; ti < TH; ti++) {
        const int64_t tv = 2 * ti + 1 < OH ? OW / 2 : 0;
        int64_t tj = 0;
        for (; tj + 4 <= tv; tj += 4) {
            __m128 t[4];
            out_tile4(mo + ti * TW + tj, st, t);
            float *y0 = yo + 2 * ti * OW + 2 * tj;
            __m256 v0 = pairs8(_mm_add_ps(t[0], vb), _mm_add_ps(t[1], vb));
            __m256 v1 = pairs8(_mm_add_ps(t[2], vb), _mm_add_ps(t[3], vb));
            if (acc) v0 = _mm256_add_ps(_mm256_loadu_ps(y0), v0), v1 = _mm256_add_ps(_mm256_loadu_ps(y0 + OW), v1);
            _mm256_storeu_ps(y0, v0);
            _mm256_storeu_ps(y0 + OW, v1);
        }
        fwd_out_tail(mo, st, ti, tj, TW, OH, OW, b, acc, yo);
    }
}
/* e (pairs8) added at r[par], r[par + 2], ..., r[par + 14]; the other floats
 * of r[0..16) are stored back as they were (the same row of the same plane:
 * the same thread). */
T256 static inline void add_row4_s2(float *r, __m256 e, const int par) {
    const __m256 lo = _mm256_permutevar8x32_ps(e, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
    const __m256 hi = _mm256_permutevar8x32_ps(e, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7));
    const __m256 r0 = _mm256_loadu_ps(r), r1 = _mm256_loadu_ps(r + 8);
    if (par) { /* the blend's mask must be a literal */
        _mm256_storeu_ps(r, _mm256_blend_ps(r0, _mm256_add_ps(r0, lo), 0xAA));
        _mm256_storeu_ps(r + 8, _mm256_blend_ps(r1, _mm256_add_ps(r1, hi), 0xAA));
    } else {
        _mm256_storeu_ps(r, _mm256_blend_ps(r0, _mm256_add_ps(r0, lo), 0x55));
        _mm256_storeu_ps(r + 8, _mm256_blend_ps(r1, _mm256_add_ps(r1, hi), 0x55));
    }
}
/* adj_out_plane, 4 whole tiles of a whole row at a time: 16 floats of each of the two rows from the row's
 * column 4 tj. */
static inline __attribute__((always_inline)) T256 void adj_plane4(const float *mo, int64_t st, int64_t TH, int64_t TW,
                                                                  int64_t OH, int64_t OW, int64_t W, const int par,
                                                                  float *g) {
    for (int64_t ti = 0; ti < TH; ti++) {
        const int64_t tv = 2 * ti + 1 < OH ? OW / 2 : 0;
        int64_t tj = 0;
        for (; tj + 4 <= tv; tj += 4) {
            __m128 t[4];
            out_tile4(mo + ti * TW + tj, st, t);
            float *r = g + 4 * ti * W + 4 * tj - par;
            add_row4_s2(r, pairs8(t[0], t[1]), par);
            add_row4_s2(r + 2 * W, pairs8(t[2], t[3]), par);
        }
        adj_out_tail(mo, st, ti, tj, TW, OH, OW, W, g);
    }
}
T256 static void adj_out_plane_avx2(const float *mo, int64_t st, int64_t TH, int64_t TW, int64_t OH, int64_t OW,
                                    int64_t W, int s, float *g) {
    if (s)
        adj_plane4(mo, st, TH, TW, OH, OW, W, 0, g);
    else
        adj_plane4(mo, st, TH, TW, OH, OW, W, 1, g);
}
#endif

void dp_wino_images(const float *upk, const float *x, int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O,
                    const float *bias, int acc, float *y, float *scratch) {
    const int64_t OH = H / 2, OW = W / 2, TH = wtiles(OH), TW = wtiles(OW), Hp = fwd_hp(H), Wp = fwd_hp(W);
    const int64_t T = nimg * TH * TW, K = 4 * C, un = dp_wino_u_floats(O, C);
    float *xz = scratch, *M = scratch + split_floats(nimg, C, Hp, Wp, 4);
    split_copy(x, nimg * C, H, W, Hp, Wp, 4, xz);
    fill_arg f = {.xz = xz, .C = C, .L = split_l(Wp, 4), .RS = 4 * split_l(Wp, 4), .plane = split_plane(Hp, Wp, 4),
                  .TH = TH, .TW = TW, .trs = 4, .prs = 2, .S = 4, .phased = 1};
    const float *u[9];
    for (int xi = 0; xi < 9; xi++) u[xi] = upk + xi * un;
    gemm9(&f, K, T, O, u, M, M + 9 * O * T);
    const int64_t st = O * T;
    void (*plane)(const float *, int64_t, int64_t, int64_t, int64_t, int64_t, float, int, float *) = fwd_out_plane;
#ifdef WINO_AVX2
    if (dp_kernel_level() >= 1) plane = fwd_out_plane_avx2;
#endif
    for (int64_t n = 0; n < nimg; n++)
        for (int64_t o = 0; o < O; o++)
            plane(M + o * T + n * TH * TW, st, TH, TW, OH, OW, bias ? bias[o] : 0.0f, acc, y + (n * O + o) * OH * OW);
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
 * f[a][b] = w[o, c, 2(1-a)+r, 2(1-b)+s]: f[0][b] is tap row 2 + r, f[1][b] row r. The taps of the m rows as 16
 * planes of O each after them (16 m O floats). */
static void rows_adj(void *arg, int64_t i0, int m, float *tmp) {
    const wrows *a = arg;
    const int64_t O = a->O, C = a->C;
    float *taps = tmp + 36 * m * O;
    taps_planes(a->w + i0 * 16, C * 16, O, m, taps, O, 16 * O);
    for (int i = 0; i < m; i++) {
        const float *tp = taps + i * 16 * O;
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
    const int64_t T = nimg * wtiles(H / 2) * wtiles(W / 2);
    return split_floats(nimg, O, adj_hp(H / 2), adj_hp(W / 2), 2) + 9 * C * T + v9_floats(T);
}

void dp_wino_t_images(const float *upk, const float *gy, int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O,
                      float *gx, float *scratch) {
    const int64_t OH = H / 2, OW = W / 2, TH = wtiles(OH), TW = wtiles(OW), Hp = adj_hp(OH), Wp = adj_hp(OW);
    const int64_t T = nimg * TH * TW, un = dp_wino_t_u_floats(O, C), st = C * T;
    float *yz = scratch, *M = scratch + split_floats(nimg, O, Hp, Wp, 2);
    split_copy(gy, nimg * O, OH, OW, Hp, Wp, 2, yz);
    /* phase (r, s): the patches' rows at 1 - r + 2 ti + {0, 1, 2}, columns at 1 - s + 2 tj + {0, 1, 2} */
    fill_arg f = {.xz = yz, .C = O, .L = split_l(Wp, 2), .RS = 2 * split_l(Wp, 2), .plane = split_plane(Hp, Wp, 2),
                  .TH = TH, .TW = TW, .trs = 2, .prs = 1, .S = 2};
    void (*plane)(const float *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, float *) = adj_out_plane;
#ifdef WINO_AVX2
    if (dp_kernel_level() >= 1) plane = adj_out_plane_avx2;
#endif
    for (int q = 0; q < 4; q++) {
        const int r = q >> 1, s = q & 1;
        f.r0 = 1 - r, f.c0 = 1 - s;
        const float *u[9];
        for (int xi = 0; xi < 9; xi++) u[xi] = upk + (q * 9 + xi) * un;
        gemm9(&f, O, T, C, u, M, M + 9 * st);
        /* each tile added at rows 1 - r + 4ti + {0, 2} and columns 1 - s + 4tj + {0, 2} */
        for (int64_t n = 0; n < nimg; n++)
            for (int64_t c = 0; c < C; c++)
                plane(M + c * T + n * TH * TW, st, TH, TW, OH, OW, W, s, gx + (n * C + c) * H * W + (1 - r) * W + (1 - s));
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
    int64_t per = wtiles(H / 2) * wtiles(W / 2), g = dp_wino_w_chunk / per;
    return g > 0 ? g : 1;
}

int64_t dp_wino_w_m_floats(int64_t O, int64_t C) { return 36 * C * O; }

int64_t dp_wino_w_scratch_floats(int64_t C, int64_t H, int64_t W, int64_t O) {
    const int64_t g = w_chunk_imgs(H, W), tg = g * wtiles(H / 2) * wtiles(W / 2);
    return split_floats(g, C, fwd_hp(H), fwd_hp(W), 4) + C * tg + O * tg + 32;
}


/* Ug = (G g G^T)[u][v] of every 2x2 tile of gy[n][o] for nimg images: ug[o][tile], ld floats a row (a tile
 * half outside: zeros there). */
static inline __attribute__((always_inline)) float w_g_at(const float *g0, const float *g1, int64_t j, int64_t OW,
                                                          const int u) {
    const float a = j < OW ? g0[j] : 0.0f, b = g1 && j < OW ? g1[j] : 0.0f;
    return u == 0 ? a : u == 1 ? a + b : b;
}
static inline __attribute__((always_inline)) void w_fill_g(const float *gy, int64_t nimg, int64_t O, int64_t OH,
                                                           int64_t OW, float *ug, int64_t ld, const int u, const int v) {
    const int64_t TW = wtiles(OW), TH = wtiles(OH), per = TH * TW;
    for (int64_t n = 0; n < nimg; n++)
        for (int64_t o = 0; o < O; o++) {
            float *d = ug + o * ld + n * per;
            for (int64_t ti = 0; ti < TH; ti++) {
                const float *g0 = gy + ((n * O + o) * OH + 2 * ti) * OW, *g1 = 2 * ti + 1 < OH ? g0 + OW : NULL;
                for (int64_t tj = 0; tj < TW; tj++) {
                    const float h0 = w_g_at(g0, g1, 2 * tj, OW, u), h1 = w_g_at(g0, g1, 2 * tj + 1, OW, u);
                    d[ti * TW + tj] = v == 0 ? h0 : v == 1 ? h0 + h1 : h1;
                }
            }
        }
}

void dp_wino_w_pairs(const float *gy, const float *x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                     int64_t p0, int64_t p1, float *M, float *scratch) {
    const int64_t OH = H / 2, OW = W / 2, TH = wtiles(OH), TW = wtiles(OW), per = TH * TW, Hp = fwd_hp(H), Wp = fwd_hp(W);
    const int64_t g = w_chunk_imgs(H, W), tg = g * per;
    float *xz = scratch, *vt = xz + split_floats(g, C, Hp, Wp, 4), *ug = vt + C * tg;
    for (int64_t n0 = 0; n0 < N; n0 += g) {
        const int64_t n1 = n0 + g < N ? n0 + g : N, k = (n1 - n0) * per;
        split_copy(x + n0 * C * H * W, (n1 - n0) * C, H, W, Hp, Wp, 4, xz);
        fill_arg f = {.xz = xz, .C = C, .L = split_l(Wp, 4), .RS = 4 * split_l(Wp, 4), .plane = split_plane(Hp, Wp, 4),
                      .TH = TH, .TW = TW, .trs = 4, .prs = 2, .S = 4, .phased = 1};
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
                    fill_v_avx2_ld(&f, q * C, (int)C, j0, n, vt + j0, k);
                else
#endif
                    fill_v_ld(&f, q * C, (int)C, j0, n, vt + j0, k);
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
