/* Measurement prototype (not built by CMake, not used by doppel): Winograd
 * F(2x2, 2x2) for the 4x4 stride-2 padding-1 convolutions of the DCGANs, and
 * the GEMM-only time of F(4x4, 2x2), against doppel's dp_conv2d.
 *
 * Why: on the 2-vCPU AVX2 VM the DCGAN layers already run at the machine's
 * GEMM rate (~110-120 GFLOP/s at 2 threads, docs/bench.md "session 11"), so
 * 2x PyTorch needs fewer FLOPs, not faster kernels. A 4x4 stride-2 conv is the
 * sum of four 2x2 stride-1 convolutions, one per input phase (r, s):
 *   y[o,i,j] = sum_{r,s,c,a,b} w[o,c,2a+r,2b+s] * x[c, 2(i+a)+r-1, 2(j+b)+s-1]
 * and a 2x2 kernel admits Winograd F(2,2) with 0/+-1 transforms (exact up to
 * the additions): per 2x2 output tile 9 products instead of 16; the phase sum
 * folds into the GEMMs' K = 4C. The transposed conv (the generator's forward,
 * a conv's input gradient) splits the same way by output phase.
 *
 *   B^T = [1 -1 0; 0 1 0; 0 -1 1]   G = [1 0; 1 1; 0 1]   A^T = [1 1 0; 0 1 1]
 *
 * Build and run (repository root, after `make build`):
 *   cc -O3 -mavx2 -mfma -Iinclude -Isrc -o /tmp/wg bench/winograd_proto.c build/libdoppel.a \
 *     $(pkg-config --libs libavformat libavcodec libswscale libavutil libpng libjpeg libwebp libxml-2.0 libcjson) \
 *     -lhdf5_serial -lm -lpthread -ldl
 *   /tmp/wg N C H O [THREADS]      e.g. /tmp/wg 64 128 16 256 2  (DCGAN-64's D.5)
 * Variants, run once each per round in a rotated order (15 rounds; the median
 * time and the median of the per-round ratios to dp_conv2d are printed, with
 * the largest difference from dp_conv2d's output): dp_conv2d; separate
 * transforms + 9 threaded GEMMs (and its stages in its best round); the
 * fused form as doppel has it (kernels/wino.c: the input transform written
 * straight into the GEMM's packed B panels by the fill, from a padded copy of
 * a group of images; the output transform reading the chunk from cache; the
 * weights transformed and packed once per call); the fused form with the input split by (row mod 4,
 * column mod 4) and the images innermost (N % 16 == 0, even outputs), so that
 * a panel's 16 tiles are contiguous; the same with the input split by (row
 * mod 4, column mod 4) per image, so that a tile row's patch elements are
 * contiguous runs (no gathers, no transpose). Then the 25 GEMMs of F(4x4, 2x2) on data
 * of the right shape (their transforms not written) against dp_conv2d.
 * dp_conv2d here is always the direct/im2col kernels (dp_wino_min_tiles set
 * out of reach). The transforms here are plain loops (no intrinsics). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "doppel/doppel.h"
#include "kernels/gemm.h"
#include "kernels/wino.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct wg {
    int N, C, H, W, O, OH, OW, TH, TW;
    int64_t T;            /* 2x2 output tiles over the batch */
    const float *x, *w;   /* x [N,C,H,W], w [O,C,4,4] */
    float *U, *V, *M, *y; /* U [9][O][4C], V [9][4C][T], M [9][O][T], y [N,O,OH,OW] */
} wg;

/* U = G g G^T for each (o, c, phase): g the phase's 2x2 taps */
static void wtrans(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    wg *p = arg;
    const int C = p->C, O = p->O;
    const int64_t K = 4 * (int64_t)C;
    for (int64_t oc = b; oc < e; oc++) {
        int o = (int)(oc / C), c = (int)(oc % C);
        const float *w = p->w + ((int64_t)o * C + c) * 16;
        for (int q = 0; q < 4; q++) {
            int r = q >> 1, s = q & 1;
            float g[2][2], h[3][2];
            for (int a = 0; a < 2; a++)
                for (int bb = 0; bb < 2; bb++) g[a][bb] = w[(2 * a + r) * 4 + 2 * bb + s];
            for (int bb = 0; bb < 2; bb++) h[0][bb] = g[0][bb], h[1][bb] = g[0][bb] + g[1][bb], h[2][bb] = g[1][bb];
            for (int u = 0; u < 3; u++) {
                float v3[3] = {h[u][0], h[u][0] + h[u][1], h[u][1]};
                for (int v = 0; v < 3; v++) p->U[((int64_t)(u * 3 + v) * O + o) * K + q * C + c] = v3[v];
            }
        }
    }
}

/* V = B^T d B for each (image, channel, phase, tile): d the phase image's 3x3
 * patch. Rows first on whole (zero-padded) input rows, then the columns of
 * each phase from the rows' even/odd samples: unit-stride stores into V. */
static void itrans(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    wg *p = arg;
    const int C = p->C, H = p->H, W = p->W, TH = p->TH, TW = p->TW;
    const int64_t K = 4 * (int64_t)C, T = p->T;
    float row[3][4 * 64 + 8], *t[3] = {row[0] + 4, row[1] + 4, row[2] + 4}; /* t[u][-1 .. 4TW+2] */
    for (int64_t nc = b; nc < e; nc++) {
        int n = (int)(nc / C), c = (int)(nc % C);
        const float *x = p->x + ((int64_t)n * C + c) * H * W;
        for (int r = 0; r < 2; r++)
            for (int ti = 0; ti < TH; ti++) {
                /* phase rows 2ti, 2ti+1, 2ti+2 are x rows 4ti+r-1, 4ti+r+1, 4ti+r+3 */
                const float *xr[3];
                for (int u = 0; u < 3; u++) {
                    int ih = 4 * ti + 2 * u + r - 1;
                    xr[u] = ih >= 0 && ih < H ? x + (int64_t)ih * W : NULL;
                }
                for (int j = -1; j < 4 * TW + 3; j++) {
                    int ok = j >= 0 && j < W;
                    float d0 = ok && xr[0] ? xr[0][j] : 0.0f, d1 = ok && xr[1] ? xr[1][j] : 0.0f;
                    float d2 = ok && xr[2] ? xr[2][j] : 0.0f;
                    t[0][j] = d0 - d1, t[1][j] = d1, t[2][j] = d2 - d1;
                }
                int64_t t0 = ((int64_t)n * TH + ti) * TW;
                for (int s = 0; s < 2; s++) {
                    int64_t cp = (int64_t)(r * 2 + s) * C + c;
                    for (int u = 0; u < 3; u++) {
                        float *v0 = p->V + ((int64_t)(u * 3 + 0) * K + cp) * T + t0;
                        float *v1 = p->V + ((int64_t)(u * 3 + 1) * K + cp) * T + t0;
                        float *v2 = p->V + ((int64_t)(u * 3 + 2) * K + cp) * T + t0;
                        const float *tu = t[u] + s - 1; /* phase column j is x column 2j + s - 1 */
                        for (int tj = 0; tj < TW; tj++) {
                            float ev = tu[4 * tj], od = tu[4 * tj + 2], ev1 = tu[4 * tj + 4];
                            v0[tj] = ev - od, v1[tj] = od, v2[tj] = ev1 - od;
                        }
                    }
                }
            }
    }
}

/* y tile = A^T m A */
static void otrans(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    wg *p = arg;
    const int O = p->O, OH = p->OH, OW = p->OW, TH = p->TH, TW = p->TW;
    const int64_t T = p->T;
    for (int64_t no = b; no < e; no++) {
        int n = (int)(no / O), o = (int)(no % O);
        float *y = p->y + ((int64_t)n * O + o) * OH * OW;
        for (int ti = 0; ti < TH; ti++)
            for (int tj = 0; tj < TW; tj++) {
                int64_t tt = ((int64_t)n * TH + ti) * TW + tj;
                float m[3][3], z[2][3];
                for (int u = 0; u < 3; u++)
                    for (int v = 0; v < 3; v++) m[u][v] = p->M[((int64_t)(u * 3 + v) * O + o) * T + tt];
                for (int v = 0; v < 3; v++) z[0][v] = m[0][v] + m[1][v], z[1][v] = m[1][v] + m[2][v];
                for (int i = 0; i < 2 && 2 * ti + i < OH; i++) {
                    float r2[2] = {z[i][0] + z[i][1], z[i][1] + z[i][2]};
                    for (int j = 0; j < 2 && 2 * tj + j < OW; j++) y[(2 * ti + i) * OW + 2 * tj + j] = r2[j];
                }
            }
    }
}

/* ---- the fused form: per chunk of TB tiles, each of the 9 GEMMs takes its
 * B panels straight from a zero-padded copy of x (the input transform done
 * while packing, in cache), writes a chunk of M, and the output transform
 * reads that chunk while it is in cache. */
#define TB 96
typedef struct fa { /* the fill's argument, the two split forms */
    const wg *p;
    float *xs; /* batch innermost: [C][a][b][SH][SW][N]; per image: [N][C][a][b][SH][SW] */
    int SH, SW;
    int layout; /* 1 batch innermost (tiles ordered (ti, tj, n)), 2 split per image */
    int64_t t0; /* the chunk's first tile */
    int xi;     /* which of the 9 products */
} fa;

static void split_copy(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    fa *f = arg;
    const wg *p = f->p;
    const int N = p->N, H = p->H, W = p->W;
    for (int64_t cab = b; cab < e; cab++) { /* (c, a, b) */
        int c = (int)(cab / 16), a = (int)(cab / 4 % 4), bb = (int)(cab % 4);
        float *d = f->xs + cab * f->SH * f->SW * N;
        for (int i = 0; i < f->SH; i++)
            for (int j = 0; j < f->SW; j++, d += N) {
                int ih = 4 * i + a - 1, iw = 4 * j + bb - 1;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) {
                    memset(d, 0, sizeof(float) * (size_t)N);
                    continue;
                }
                const float *src = p->x + ((int64_t)c * H + ih) * W + iw;
                for (int n = 0; n < N; n++) d[n] = src[(int64_t)n * p->C * H * W];
            }
    }
}

static void fb_fill(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const fa *f = arg;
    const int C = f->p->C, N = f->p->N, TW = f->p->TW, u = f->xi / 3, v = f->xi % 3;
    const int64_t t = f->t0 + j0, pos = t / N, n0 = t % N;
    const int ti = (int)(pos / TW), tj = (int)(pos % TW);
    const int64_t plane = (int64_t)f->SH * f->SW * N;
    (void)n;
    for (int k = 0; k < kc; k++) {
        int64_t cp = p0 + k;
        int q = (int)(cp / C), c = (int)(cp % C), r = q >> 1, s = q & 1;
        /* patch rows u' (0..2) -> padded row 4ti + 2u' + r; the same for columns */
        const float *run[3][3];
        for (int uu = 0; uu < 3; uu++)
            for (int vv = 0; vv < 3; vv++) {
                int pr = 2 * uu + r, pc = 2 * vv + s;
                run[uu][vv] = f->xs + ((int64_t)c * 16 + (pr & 3) * 4 + (pc & 3)) * plane +
                              (((int64_t)ti + (pr >> 2)) * f->SW + tj + (pc >> 2)) * N + n0;
            }
        /* B^T d B at (u, v): rows u' with signs (u 0: 0 - 1, 1: 1, 2: 2 - 1), the same for columns */
        const float *t[4];
        int nt = 0;
        const int ru[2] = {u == 2 ? 2 : u == 0 ? 0 : 1, 1}, nr_ = u == 1 ? 1 : 2;
        const int cv[2] = {v == 2 ? 2 : v == 0 ? 0 : 1, 1}, nc_ = v == 1 ? 1 : 2;
        for (int x = 0; x < nr_; x++)
            for (int y = 0; y < nc_; y++) {
                t[nt++] = run[ru[x]][cv[y]];
            }
        float *d = dst + (int64_t)k * nr;
        if (nt == 4)
            for (int j = 0; j < 16; j++) d[j] = (t[0][j] - t[2][j]) - (t[1][j] - t[3][j]);
        else if (nt == 2)
            for (int j = 0; j < 16; j++) d[j] = t[0][j] - t[1][j];
        else
            for (int j = 0; j < 16; j++) d[j] = t[0][j];
    }
}

/* ---- the fused form on the input split per image: xs[n][c][a][b][SH][SW] =
 * xpad[n][c][4i + a][4j + b], tiles ordered (n, ti, tj): a tile row's patch
 * elements are contiguous runs of TW floats (no gathers, no transpose). */
static void split_img(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    fa *f = arg;
    const wg *p = f->p;
    const int H = p->H, W = p->W;
    const int64_t sub = (int64_t)f->SH * f->SW;
    for (int64_t nc = b; nc < e; nc++) {
        const float *x = p->x + nc * H * W;
        float *d = f->xs + nc * 16 * sub;
        for (int a = 0; a < 4; a++)
            for (int bb = 0; bb < 4; bb++)
                for (int i = 0; i < f->SH; i++)
                    for (int j = 0; j < f->SW; j++, d++) {
                        int ih = 4 * i + a - 1, iw = 4 * j + bb - 1;
                        *d = ih >= 0 && ih < H && iw >= 0 && iw < W ? x[ih * W + iw] : 0.0f;
                    }
    }
}

static void fs_fill(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const fa *f = arg;
    const wg *p = f->p;
    const int C = p->C, TH = p->TH, TW = p->TW, u = f->xi / 3, v = f->xi % 3;
    const int64_t sub = (int64_t)f->SH * f->SW;
    int rj[32], rl[32], nrun = 0; /* runs of consecutive tiles in one tile row */
    int64_t ro[32];
    for (int j = 0; j < n && nrun < 32;) {
        int64_t t = f->t0 + j0 + j;
        int nn = (int)(t / (TH * TW)), ti = (int)(t / TW % TH), tj = (int)(t % TW);
        int L = TW - tj < n - j ? TW - tj : n - j;
        ro[nrun] = (int64_t)nn * C * 16 * sub + (int64_t)ti * f->SW + tj;
        rj[nrun] = j, rl[nrun++] = L;
        j += L;
    }
    const int ru[2] = {u == 2 ? 2 : u == 0 ? 0 : 1, 1}, nr_ = u == 1 ? 1 : 2;
    const int cv[2] = {v == 2 ? 2 : v == 0 ? 0 : 1, 1}, nc_ = v == 1 ? 1 : 2;
    for (int k = 0; k < kc; k++) {
        int64_t cp = p0 + k;
        int q = (int)(cp / C), c = (int)(cp % C), r = q >> 1, s = q & 1;
        int64_t off[4];
        int nt = 0;
        for (int x = 0; x < nr_; x++)
            for (int y = 0; y < nc_; y++) {
                int pr = 2 * ru[x] + r, pc = 2 * cv[y] + s;
                off[nt++] = ((int64_t)c * 16 + (pr & 3) * 4 + (pc & 3)) * sub + (pr >> 2) * f->SW + (pc >> 2);
            }
        float *d = dst + (int64_t)k * nr;
        for (int g = 0; g < nrun; g++) {
            const float *b0 = f->xs + ro[g] + off[0], *b1 = f->xs + ro[g] + off[nt > 1 ? 1 : 0];
            const float *b2 = f->xs + ro[g] + off[nt > 2 ? 2 : 0], *b3 = f->xs + ro[g] + off[nt > 3 ? 3 : 0];
            float *dd = d + rj[g];
            const int L = rl[g];
            if (nt == 4) /* rows first, as the other forms: (t0 - t2) - (t1 - t3) */
                for (int i = 0; i < L; i++) dd[i] = (b0[i] - b2[i]) - (b1[i] - b3[i]);
            else if (nt == 2)
                for (int i = 0; i < L; i++) dd[i] = b0[i] - b1[i];
            else
                for (int i = 0; i < L; i++) dd[i] = b0[i];
        }
        for (int j = n; j < nr; j++) d[j] = 0.0f;
    }
}

typedef struct fjob {
    const wg *p;
    fa base;
    float *mc_all; /* per thread: [9][O][TB] */
    float *upk;    /* the 9 U's packed for the micro-kernel, upk_n floats each */
    int64_t upk_n;
} fjob;

/* U packed once per call (per weight update in a real step), not per chunk */
static void pack_u(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    fjob *jb = arg;
    const int64_t O = jb->p->O, K = 4 * (int64_t)jb->p->C;
    for (int64_t xi = b; xi < e; xi++) dp_sgemm_pack_a(O, K, jb->p->U + xi * O * K, K, jb->upk + xi * jb->upk_n);
}

/* Per chunk of TB tiles: the 9 GEMMs with B filled from the input, then the
 * output transform from the chunk of M while it is in cache. */
static void chunks(void *arg, int64_t b, int64_t e, int tid) {
    fjob *jb = arg;
    const wg *p = jb->p;
    const int O = p->O, OH = p->OH, OW = p->OW, TH = p->TH, TW = p->TW, N = p->N;
    const int64_t K = 4 * (int64_t)p->C, st = (int64_t)O * TB;
    fa f = jb->base;
    float *mc = jb->mc_all + (int64_t)tid * 9 * O * TB;
    for (int64_t ch = b; ch < e; ch++) {
        f.t0 = ch * TB;
        int nt = (int)(p->T - f.t0 < TB ? p->T - f.t0 : TB);
        for (f.xi = 0; f.xi < 9; f.xi++)
            dp_sgemm_packed_bpanel_st(O, nt, K, jb->upk + f.xi * jb->upk_n, f.layout == 1 ? fb_fill : fs_fill, &f, 0.0f,
                                      mc + (int64_t)f.xi * O * TB, TB);
        for (int j = 0; j < nt; j++) {
            int64_t t = f.t0 + j;
            int n, ti, tj;
            if (f.layout == 1)
                n = (int)(t % N), ti = (int)(t / N / TW), tj = (int)(t / N % TW);
            else
                n = (int)(t / (TH * TW)), ti = (int)(t / TW % TH), tj = (int)(t % TW);
            for (int o = 0; o < O; o++) {
                const float *m = mc + (int64_t)o * TB + j;
                float z0[3], z1[3];
                for (int v = 0; v < 3; v++)
                    z0[v] = m[v * st] + m[(3 + v) * st], z1[v] = m[(3 + v) * st] + m[(6 + v) * st];
                float *y = p->y + ((int64_t)n * O + o) * OH * OW + (2 * ti) * OW + 2 * tj;
                int w2 = 2 * tj + 1 < OW;
                y[0] = z0[0] + z0[1];
                if (w2) y[1] = z0[1] + z0[2];
                if (2 * ti + 1 < OH) {
                    y[OW] = z1[0] + z1[1];
                    if (w2) y[OW + 1] = z1[1] + z1[2];
                }
            }
        }
    }
}

/* ---- the fused form as doppel has it (kernels/wino.c): weights packed once per
 * call, groups of whole images (~64 tiles) padded in each thread's scratch. */
typedef struct lib_job {
    const wg *p;
    float *upk, *tmp, *scr;
    int64_t tmpn, scrn, g;
} lib_job;
static void lib_pack(void *arg, int64_t b, int64_t e, int tid) {
    lib_job *J = arg;
    dp_wino_pack_w(J->p->w, J->p->O, J->p->C, b, e, J->tmp + tid * J->tmpn, J->upk);
}
static void lib_imgs(void *arg, int64_t b, int64_t e, int tid) {
    lib_job *J = arg;
    const wg *p = J->p;
    for (int64_t it = b; it < e; it++) {
        int64_t n0 = it * J->g, n1 = n0 + J->g < p->N ? n0 + J->g : p->N;
        dp_wino_images(J->upk, p->x + n0 * p->C * p->H * p->W, n1 - n0, p->C, p->H, p->W, p->O, NULL, 0,
                       p->y + n0 * p->O * p->OH * p->OW, J->scr + tid * J->scrn);
    }
}

static float urand(void) { return (float)rand() / (float)RAND_MAX - 0.5f; }

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

enum { V_DIRECT, V_UNFUSED, V_FUSED, V_BATCH, V_SPLIT, NV, ROUNDS = 15 };

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s N C H O [THREADS]\n", argv[0]);
        return 2;
    }
    const int N = atoi(argv[1]), C = atoi(argv[2]), H = atoi(argv[3]), O = atoi(argv[4]);
    const int th = argc > 5 ? atoi(argv[5]) : 2, nth = th < 1 ? 1 : th;
    if (N < 1 || C < 1 || H < 2 || H > 256 || O < 1) return 2;
    dp_wino_min_tiles = INT64_MAX; /* dp_conv2d: the kernels Winograd is measured against */
    dp_ctx *ctx;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = th, .seed = 1}, &ctx) != DP_OK) return 1;
    wg p = {N, C, H, H, O, H / 2, H / 2, (H / 2 + 1) / 2, (H / 2 + 1) / 2, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    p.T = (int64_t)N * p.TH * p.TW;
    const int64_t K = 4 * (int64_t)C, nx = (int64_t)N * C * H * H, ny = (int64_t)N * O * p.OH * p.OW;
    const int batch_ok = N % 16 == 0 && p.OH % 2 == 0 && p.OW % 2 == 0;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)O * C * 16);
    float *yv[NV];
    for (int v = 0; v < NV; v++) yv[v] = calloc((size_t)ny, sizeof(float));
    p.U = malloc(sizeof(float) * 9 * (size_t)(O * K));
    p.V = malloc(sizeof(float) * 9 * (size_t)(K * p.T));
    p.M = malloc(sizeof(float) * 9 * (size_t)(O * p.T));
    fa f = {&p, NULL, p.TH + 1, p.TW + 1, 0, 0, 0};
    float *mc = malloc(sizeof(float) * (size_t)nth * 9 * O * TB);
    float *xs = malloc(sizeof(float) * (size_t)C * 16 * f.SH * f.SW * N);
    const int even = p.OH % 2 == 0 && p.OW % 2 == 0; /* kernels/wino.c's condition */
    lib_job lj = {&p, NULL, NULL, NULL, O * K, 0, 0};
    lj.g = (64 + p.TH * p.TW - 1) / (p.TH * p.TW), lj.g = lj.g < N ? lj.g : N;
    lj.scrn = dp_wino_scratch_floats(lj.g, C, H, H, O);
    lj.upk = malloc(sizeof(float) * 9 * (size_t)dp_wino_u_floats(O, C));
    lj.tmp = malloc(sizeof(float) * (size_t)(nth * lj.tmpn));
    lj.scr = malloc(sizeof(float) * (size_t)(nth * lj.scrn));
    if (!x || !w || !p.U || !p.V || !p.M || !mc || !xs || !lj.upk || !lj.tmp || !lj.scr) return 1;
    for (int v = 0; v < NV; v++)
        if (!yv[v]) return 1;
    for (int64_t i = 0; i < nx; i++) x[i] = urand();
    for (int64_t i = 0; i < (int64_t)O * C * 16; i++) w[i] = 0.1f * urand();
    p.x = x, p.w = w;
    f.xs = xs;
    const int64_t upk_n = dp_sgemm_packed_a_floats(O, K);
    float *upk = malloc(sizeof(float) * 9 * (size_t)upk_n);
    if (!upk) return 1;
    fjob jb = {&p, f, mc, upk, upk_n};
    jb.base.layout = 1;
    fjob js = {&p, f, mc, upk, upk_n};
    js.base.layout = 2;

    dp_graph *g; /* doppel's convolution */
    if (dp_graph_new(ctx, &g) != DP_OK) return 1;
    dp_node *xn = dp_input(g, "x", 4, (int64_t[]){N, C, H, H}), *wn = dp_input(g, "w", 4, (int64_t[]){O, C, 4, 4});
    dp_node *yn = dp_conv2d(g, xn, wn, NULL, &(dp_conv_opts){.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1});
    dp_graph_mark_output(g, yn);
    if (dp_graph_set_no_grad(g) != DP_OK || dp_graph_compile(g) != DP_OK) return 1;
    memcpy(dp_tensor_f32(dp_node_value(xn)), x, sizeof(float) * (size_t)nx);
    memcpy(dp_tensor_f32(dp_node_value(wn)), w, sizeof(float) * (size_t)O * C * 16);

    /* rounds: every variant once per round, in a rotated order; ratios taken within a round */
    double tm[NV][ROUNDS], stage[4] = {0}, best_unfused = 1e9;
    for (int rd = -2; rd < ROUNDS; rd++)
        for (int k = 0; k < NV; k++) {
            int v = (k + (rd < 0 ? 0 : rd)) % NV;
            if (v == V_BATCH && !batch_ok) continue;
            double t0 = now(), s1 = 0, s2 = 0, s3 = 0;
            if (v == V_DIRECT) {
                if (dp_graph_invalidate(g) != DP_OK || dp_graph_forward(g, 1, &yn) != DP_OK) return 1;
                memcpy(yv[v], dp_tensor_f32(dp_node_value(yn)), sizeof(float) * (size_t)ny);
            } else if (v == V_UNFUSED) {
                p.y = yv[v];
                dp_parallel_for(ctx, (int64_t)O * C, wtrans, &p);
                s1 = now();
                dp_parallel_for(ctx, (int64_t)N * C, itrans, &p);
                s2 = now();
                for (int xi = 0; xi < 9; xi++)
                    dp_sgemm(ctx, 0, 0, O, p.T, K, 1.0f, p.U + xi * O * K, K, p.V + xi * K * p.T, p.T, 0.0f,
                             p.M + xi * O * p.T, p.T);
                s3 = now();
                dp_parallel_for(ctx, (int64_t)N * O, otrans, &p);
            } else if (v == V_FUSED) { /* doppel's own (kernels/wino.c), as op_conv runs it */
                if (!even) continue;
                p.y = yv[v];
                dp_parallel_for(ctx, dp_wino_pack_panels(O), lib_pack, &lj);
                dp_parallel_for(ctx, (N + lj.g - 1) / lj.g, lib_imgs, &lj);
            } else if (v == V_BATCH) {
                p.y = yv[v];
                dp_parallel_for(ctx, (int64_t)O * C, wtrans, &p);
                dp_parallel_for(ctx, 9, pack_u, &jb);
                dp_parallel_for(ctx, (int64_t)C * 16, split_copy, &f);
                dp_parallel_for(ctx, (p.T + TB - 1) / TB, chunks, &jb);
            } else {
                p.y = yv[v];
                dp_parallel_for(ctx, (int64_t)O * C, wtrans, &p);
                dp_parallel_for(ctx, 9, pack_u, &js);
                dp_parallel_for(ctx, (int64_t)N * C, split_img, &f);
                dp_parallel_for(ctx, (p.T + TB - 1) / TB, chunks, &js);
            }
            double t1 = now();
            if (rd < 0) continue;
            tm[v][rd] = t1 - t0;
            if (v == V_UNFUSED && t1 - t0 < best_unfused)
                best_unfused = t1 - t0, stage[0] = s1 - t0, stage[1] = s2 - s1, stage[2] = s3 - s2, stage[3] = t1 - s3;
        }
    const double flop = 2.0 * N * O * p.OH * p.OW * C * 16; /* the direct convolution's */
    static const char *const name[NV] = {"dp_conv2d", "F(2x2,2x2) separate", "F(2x2,2x2) fused (kernels/wino.c)",
                                         "F(2x2,2x2) fused, batch innermost", "F(2x2,2x2) fused, split per image"};
    double ratio[ROUNDS], tcopy[ROUNDS];
    printf("N=%d C=%d H=%d O=%d, %d threads, %d rounds (median time; median of the per-round ratios to dp_conv2d):\n",
           N, C, H, O, th, ROUNDS);
    for (int v = 0; v < NV; v++) {
        if ((v == V_BATCH && !batch_ok) || (v == V_FUSED && !even)) continue;
        for (int r = 0; r < ROUNDS; r++) ratio[r] = tm[v][r] / tm[V_DIRECT][r], tcopy[r] = tm[v][r];
        double md = 0;
        for (int64_t i = 0; i < ny; i++) md = fmax(md, fabs((double)yv[v][i] - (double)yv[V_DIRECT][i]));
        double mt = median(tcopy, ROUNDS);
        printf("  %-34s %7.2f ms (%6.1f direct-equivalent GFLOP/s)  ratio %.3f  max |y - dp_conv2d| %.3g\n", name[v],
               mt * 1e3, flop / mt * 1e-9, median(ratio, ROUNDS), md);
    }
    printf("  separate form's stages (its best round): weights %.2f, input %.2f, 9 GEMMs %.2f (%.1f GFLOP/s), output "
           "%.2f ms\n",
           stage[0] * 1e3, stage[1] * 1e3, stage[2] * 1e3, 2.0 * 9 * O * K * p.T / stage[2] * 1e-9, stage[3] * 1e3);

    { /* F(4x4, 2x2): 25 GEMMs over a quarter of the tiles (the bound, transforms not written) */
        int64_t T4 = (int64_t)N * ((p.OH + 3) / 4) * ((p.OW + 3) / 4);
        float *U4 = malloc(sizeof(float) * 25 * (size_t)(O * K)), *V4 = malloc(sizeof(float) * 25 * (size_t)(K * T4));
        float *M4 = malloc(sizeof(float) * 25 * (size_t)(O * T4));
        if (!U4 || !V4 || !M4) return 1;
        for (int64_t i = 0; i < 25 * K * T4; i++) V4[i] = urand();
        for (int64_t i = 0; i < 25 * O * K; i++) U4[i] = urand();
        for (int r = 0; r < ROUNDS; r++) {
            double t0 = now();
            if (dp_graph_invalidate(g) != DP_OK || dp_graph_forward(g, 1, &yn) != DP_OK) return 1;
            double t1 = now();
            for (int xi = 0; xi < 25; xi++)
                dp_sgemm(ctx, 0, 0, O, T4, K, 1.0f, U4 + xi * O * K, K, V4 + xi * K * T4, T4, 0.0f, M4 + xi * O * T4,
                         T4);
            double t2 = now();
            ratio[r] = (t2 - t1) / (t1 - t0), tcopy[r] = t2 - t1;
        }
        printf("  F(4x4,2x2): the 25 GEMMs alone %.2f ms, ratio %.3f\n", median(tcopy, ROUNDS) * 1e3,
               median(ratio, ROUNDS));
        free(U4), free(V4), free(M4);
    }
    dp_graph_free(g);
    dp_ctx_free(ctx);
    for (int v = 0; v < NV; v++) free(yv[v]);
    free(x), free(w), free(p.U), free(p.V), free(p.M), free(mc), free(xs), free(upk);
    free(lj.upk), free(lj.tmp), free(lj.scr);
    return 0;
}
