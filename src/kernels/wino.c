/* Winograd F(2x2, 2x2) for 4x4 stride-2 padding-1 convolutions: see wino.h. */
#include "kernels/wino.h"

#include <string.h>

#include "kernels/gemm.h"

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

/* B panel rows p0.. (k = phase * C + c), tiles j0..: V at (u, v) of each
 * tile's 3x3 patch in its phase image, rows first (B^T d), then columns. */
static void fill_v(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const fill_arg *f = arg;
    const int64_t WP = f->WP, per_img = f->TH * f->TW;
    int64_t to[32]; /* the tiles' patch corners in their (image, channel 0) plane */
    for (int j = 0; j < n; j++) {
        int64_t t = j0 + j, img = t / per_img, ti = t % per_img / f->TW, tj = t % f->TW;
        to[j] = img * f->C * f->plane + 4 * ti * WP + 4 * tj;
    }
    const int u = f->u, v = f->v;
    for (int k = 0; k < kc; k++) {
        const int64_t cp = p0 + k, q = cp / f->C, c = cp % f->C;
        const float *base = f->xp + c * f->plane + (q >> 1) * WP + (q & 1);
        float *d = dst + (int64_t)k * nr;
        for (int j = 0; j < n; j++) {
            const float *r0 = base + to[j], *r1 = r0 + 2 * WP, *r2 = r0 + 4 * WP;
            float a0, a1, a2; /* B^T d's row u at patch columns 0, 1, 2 */
            if (u == 0)
                a0 = r0[0] - r1[0], a1 = r0[2] - r1[2], a2 = r0[4] - r1[4];
            else if (u == 1)
                a0 = r1[0], a1 = r1[2], a2 = r1[4];
            else
                a0 = r2[0] - r1[0], a1 = r2[2] - r1[2], a2 = r2[4] - r1[4];
            d[j] = v == 0 ? a0 - a1 : v == 1 ? a1 : a2 - a1;
        }
        for (int j = n; j < nr; j++) d[j] = 0.0f;
    }
}

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
    for (int xi = 0; xi < 9; xi++) {
        f.u = xi / 3, f.v = xi % 3;
        dp_sgemm_packed_bpanel_st(O, T, K, upk + xi * un, fill_v, &f, 0.0f, M + xi * O * T, T);
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
