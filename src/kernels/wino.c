/* Winograd F(2x2, 2x2) for 4x4 stride-2 padding-1 convolutions: see wino.h. */
#include "kernels/wino.h"

#include <string.h>

#include "kernels/gemm.h"
#include "kernels/vec.h"

int64_t dp_wino_u_floats(int64_t O, int64_t C) { return dp_sgemm_packed_a_floats(O, 4 * C); }

/* U = G g G^T at (u, v) for every (o, c, phase): g the phase's 2x2 taps. Row
 * u of G g: g0, g0 + g1, g1 (a the first tap index); then the same over b. */
void dp_wino_pack_w(const float *w, int64_t O, int64_t C, int xi, float *tmp, float *upk) {
    const int u = xi / 3, v = xi % 3;
    const int64_t K = 4 * C;
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++) {
            const float *wk = w + (o * C + c) * 16;
            for (int q = 0; q < 4; q++) {
                const int r = q >> 1, s = q & 1;
                float h[2]; /* row u of G g, at b = 0 and 1 */
                for (int b = 0; b < 2; b++) {
                    float g0 = wk[r * 4 + 2 * b + s], g1 = wk[(2 + r) * 4 + 2 * b + s];
                    h[b] = u == 0 ? g0 : u == 1 ? g0 + g1 : g1;
                }
                tmp[o * K + q * C + c] = v == 0 ? h[0] : v == 1 ? h[0] + h[1] : h[1];
            }
        }
    dp_sgemm_pack_a(O, K, tmp, K, upk + xi * dp_wino_u_floats(O, C));
}

/* The padded images: 1 row and column of zeros before, 1 after. */
static int64_t pad_floats(int64_t nimg, int64_t C, int64_t H, int64_t W) { return (nimg * C * (H + 2) * (W + 2) + 15) / 16 * 16; }

int64_t dp_wino_scratch_floats(int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O) {
    return pad_floats(nimg, C, H, W) + 9 * O * nimg * (H / 4) * (W / 4);
}

typedef struct fill_arg {
    const float *xp; /* [nimg][C][H + 2][W + 2] */
    int64_t C, WP, plane, TH, TW;
    int u, v;
} fill_arg;

/* The tiles' patch corners in their (image, channel 0) plane: tiles j0.. of the chunk. */
static void tile_offsets(const fill_arg *f, int64_t j0, int n, int64_t *to) {
    const int64_t per_img = f->TH * f->TW;
    for (int j = 0; j < n; j++) {
        int64_t t = j0 + j, img = t / per_img, ti = t % per_img / f->TW, tj = t % f->TW;
        to[j] = img * f->C * f->plane + 4 * ti * f->WP + 4 * tj;
    }
}

/* V at (u, v) of the patch whose corner is r0: B^T d's row u at patch
 * columns 0, 1, 2 (floats 0, 2, 4), then the column combination v. */
static inline float v_at(const float *r0, int64_t WP, int u, int v) {
    const float *r1 = r0 + 2 * WP, *r2 = r0 + 4 * WP;
    float a0, a1, a2;
    if (u == 0)
        a0 = r0[0] - r1[0], a1 = r0[2] - r1[2], a2 = r0[4] - r1[4];
    else if (u == 1)
        a0 = r1[0], a1 = r1[2], a2 = r1[4];
    else
        a0 = r2[0] - r1[0], a1 = r2[2] - r1[2], a2 = r2[4] - r1[4];
    return v == 0 ? a0 - a1 : v == 1 ? a1 : a2 - a1;
}

/* B panel rows p0.. (k = phase * C + c), tiles j0..: V at (u, v) of each
 * tile's 3x3 patch in its phase image, rows first (B^T d), then columns. */
static void fill_v(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const fill_arg *f = arg;
    int64_t to[32];
    tile_offsets(f, j0, n, to);
    for (int k = 0; k < kc; k++) {
        const int64_t cp = p0 + k, q = cp / f->C, c = cp % f->C;
        const float *base = f->xp + c * f->plane + (q >> 1) * f->WP + (q & 1);
        float *d = dst + (int64_t)k * nr;
        for (int j = 0; j < n; j++) d[j] = v_at(base + to[j], f->WP, f->u, f->v);
        for (int j = n; j < nr; j++) d[j] = 0.0f;
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DP_PORTABLE)
#include <immintrin.h>
#define WINO_AVX2 1
#define T256 __attribute__((target("avx2,fma")))
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
/* fill_v with runs of 8 tiles of one tile row as vectors: the same operations in the same order. Reads up to
 * 3 floats past a padded row (inside the scratch: the next row, image or the M chunk). */
T256 static void fill_v_avx2(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const fill_arg *f = arg;
    const int64_t WP = f->WP;
    int64_t to[32];
    tile_offsets(f, j0, n, to);
    const int u = f->u, v = f->v;
    int nv = 0; /* tiles [0, nv) go as runs of 8 consecutive tiles of one tile row: the same for every k */
    while (nv + 8 <= n && to[nv + 7] == to[nv] + 28) nv += 8;
    for (int k = 0; k < kc; k++) {
        const int64_t cp = p0 + k, q = cp / f->C, c = cp % f->C;
        const float *base = f->xp + c * f->plane + (q >> 1) * WP + (q & 1);
        float *d = dst + (int64_t)k * nr;
        int j = 0;
        for (; j < nv; j += 8) {
            const float *r0 = base + to[j];
            __m256 a0, a1, a2, x0, x1, x2, y0, y1, y2;
            if (u == 1) {
                cols8(r0 + 2 * WP, &a0, &a1, &a2);
            } else {
                cols8(r0 + (u == 0 ? 0 : 4 * WP), &x0, &x1, &x2);
                cols8(r0 + 2 * WP, &y0, &y1, &y2);
                a0 = _mm256_sub_ps(x0, y0), a1 = _mm256_sub_ps(x1, y1), a2 = _mm256_sub_ps(x2, y2);
            }
            _mm256_storeu_ps(d + j, v == 0 ? _mm256_sub_ps(a0, a1) : v == 1 ? a1 : _mm256_sub_ps(a2, a1));
        }
        for (; j < n; j++) d[j] = v_at(base + to[j], WP, u, v);
        for (j = n; j < nr; j++) d[j] = 0.0f;
    }
}
#endif

void dp_wino_images(const float *upk, const float *x, int64_t nimg, int64_t C, int64_t H, int64_t W, int64_t O,
                    const float *bias, int acc, float *y, float *scratch) {
    const int64_t HP = H + 2, WP = W + 2, plane = HP * WP, OH = H / 2, OW = W / 2, TH = OH / 2, TW = OW / 2;
    const int64_t T = nimg * TH * TW, K = 4 * C, un = dp_wino_u_floats(O, C);
    float *xp = scratch, *M = scratch + pad_floats(nimg, C, H, W);
    for (int64_t i = 0; i < nimg * C; i++) { /* zero-padded copy */
        float *d = xp + i * plane;
        memset(d, 0, sizeof(float) * (size_t)WP);
        for (int64_t h = 0; h < H; h++) {
            float *dr = d + (h + 1) * WP;
            dr[0] = dr[W + 1] = 0.0f;
            memcpy(dr + 1, x + (i * H + h) * W, sizeof(float) * (size_t)W);
        }
        memset(d + (H + 1) * WP, 0, sizeof(float) * (size_t)WP);
    }
    fill_arg f = {xp, C, WP, plane, TH, TW, 0, 0};
    dp_bpanel_fn fill = fill_v;
#ifdef WINO_AVX2
    if (dp_kernel_level() >= 1) fill = fill_v_avx2;
#endif
    for (int xi = 0; xi < 9; xi++) {
        f.u = xi / 3, f.v = xi % 3;
        dp_sgemm_packed_bpanel_st(O, T, K, upk + xi * un, fill, &f, 0.0f, M + xi * O * T, T);
    }
    /* y tile = A^T m A, rows first */
    const int64_t st = O * T;
    for (int64_t n = 0; n < nimg; n++)
        for (int64_t o = 0; o < O; o++) {
            const float b = bias ? bias[o] : 0.0f;
            float *yo = y + (n * O + o) * OH * OW;
            const float *mo = M + o * T + n * TH * TW;
            for (int64_t ti = 0; ti < TH; ti++)
                for (int64_t tj = 0; tj < TW; tj++) {
                    const float *m = mo + ti * TW + tj;
                    float z0[3], z1[3];
                    for (int c3 = 0; c3 < 3; c3++)
                        z0[c3] = m[c3 * st] + m[(3 + c3) * st], z1[c3] = m[(3 + c3) * st] + m[(6 + c3) * st];
                    float *y0 = yo + 2 * ti * OW + 2 * tj, *y1 = y0 + OW;
                    float v00 = z0[0] + z0[1] + b, v01 = z0[1] + z0[2] + b;
                    float v10 = z1[0] + z1[1] + b, v11 = z1[1] + z1[2] + b;
                    if (acc)
                        y0[0] += v00, y0[1] += v01, y1[0] += v10, y1[1] += v11;
                    else
                        y0[0] = v00, y0[1] = v01, y1[0] = v10, y1[1] = v11;
                }
        }
}
