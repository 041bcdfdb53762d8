/* The invisible watermark: spread-transform dither modulation (STDM) in the
 * 8x8 block DCT of the luminance, a rate-1/2 convolutional code, soft
 * decisions and a Viterbi decoder. docs/watermark.md explains the choices
 * and gives the measurements.
 *
 * Payload (64 bits): 16-bit tag | 32-bit model id | CRC-16 of the first six
 * bytes. Coded with the K=7 (171,133) convolutional code, terminated: 140
 * coded bits.
 *
 * Layout: the image is cut into full 8x8 blocks from the top-left corner;
 * the blocks are shared out into tiles of TW x TH blocks, as many tiles of at
 * least 8 blocks a side as fit (so 8..15 blocks; the whole image when it has
 * fewer than 8 blocks a side); the few blocks left over at the right and
 * bottom carry nothing. A tile has TW*TH*NBAND "chips" (the zig-zag
 * coefficients 1..14 of its blocks, the lowest AC frequencies, which JPEG
 * quantises most finely); a fixed key assigns each chip to a coded bit (every
 * bit gets about the same number, spread over blocks and frequencies) and a
 * +-1 sign. For coded bit j of a tile with chips S, the statistic is the
 * projection
 *     y = sum_{c in S} sign_c * X_c / sqrt(|S|)
 * and the embedder moves y to the nearest point of the lattice
 *     DELTA * (Z + dither_j + b_j / 2)
 * (b_j the coded bit). The change is split over the chips in proportion to a
 * perceptual weight of each chip's block (its local standard deviation,
 * lowered near black and white where changes would clip), which leaves y
 * exactly where it must be whatever the split. The detector needs no
 * weights: it projects, turns the distance to the two lattices into a soft
 * decision in [-1,1], adds them over tiles and decodes. Because a contrast
 * change scales every projection, it tries a range of gains (1.025^-14 ..
 * 1.025^10) and keeps the best hit.
 *
 * Pixel rounding and clipping move the projections a little, so the
 * embedder iterates: embed, round to 8 bits, clip, measure again, correct. */
#include <math.h>

#include "core/internal.h"
#include "doppel/label.h"

#define WM_PI 3.14159265358979323846 /* M_PI is not in strict C11 */
#define WM_N 8     /* DCT block side */
#define WM_TILE 8  /* tiles are 8..15 blocks a side (the whole image when it has fewer than 8) */
#ifndef WM_BAND_LO /* the band: zig-zag indices [LO, HI) */
#define WM_BAND_LO 1
#endif
#ifndef WM_BAND_HI
#define WM_BAND_HI 15
#endif
#define WM_NBAND (WM_BAND_HI - WM_BAND_LO)
#define WM_MAX_TILE (2 * WM_TILE - 1)
#define WM_MAX_CHIPS (WM_MAX_TILE * WM_MAX_TILE * WM_NBAND)
#define WM_MSG_BITS 64
#define WM_K 7 /* constraint length */
#define WM_STEPS (WM_MSG_BITS + WM_K - 1)
#define WM_CODED (2 * WM_STEPS) /* 140 */
#define WM_TAG 0xD0E1u
#define WM_KEY UINT64_C(0x646f7070656c5731) /* "doppelW1" */
#ifndef WM_DELTA /* lattice step of the projections, in 0..255 luminance units */
#define WM_DELTA 30.0
#endif
#ifndef WM_GAIN_LO /* gains tried by the detector: 1.025^-LO .. 1.025^HI */
#define WM_GAIN_LO 14
#endif
#ifndef WM_GAIN_HI
#define WM_GAIN_HI 10
#endif
#ifndef WM_ITERS
#define WM_ITERS 6
#endif

/* ------------------------------------------------------------ DCT */
typedef struct wm_dct {
    double cos[WM_N][WM_N]; /* orthonormal DCT-II basis: cos[k][n] */
    int bv[WM_NBAND], bu[WM_NBAND]; /* (row, column) frequency of each band coefficient */
} wm_dct;

static void dct_init(wm_dct *d) {
    for (int k = 0; k < WM_N; k++)
        for (int n = 0; n < WM_N; n++)
            d->cos[k][n] = (k == 0 ? sqrt(1.0 / WM_N) : sqrt(2.0 / WM_N)) * cos((2 * n + 1) * k * WM_PI / (2.0 * WM_N));
    int i = 0; /* zig-zag order, as JPEG's */
    for (int s = 0; s < 2 * WM_N - 1; s++)
        for (int t = 0; t <= s; t++) {
            int r = s & 1 ? t : s - t, c = s - r;
            if (r >= WM_N || c >= WM_N) continue;
            if (i >= WM_BAND_LO && i < WM_BAND_HI) {
                d->bv[i - WM_BAND_LO] = r;
                d->bu[i - WM_BAND_LO] = c;
            }
            i++;
        }
}

/* The band coefficients of the 8x8 block at (x0,y0) of plane p (stride w). */
static void block_band(const wm_dct *d, const float *p, int w, int x0, int y0, double *out) {
    double tmp[WM_N][WM_N]; /* rows transformed: tmp[y][u] */
    for (int y = 0; y < WM_N; y++) {
        const float *row = p + (size_t)(y0 + y) * (size_t)w + x0;
        for (int u = 0; u < WM_N; u++) {
            double a = 0;
            for (int x = 0; x < WM_N; x++) a += d->cos[u][x] * row[x];
            tmp[y][u] = a;
        }
    }
    for (int k = 0; k < WM_NBAND; k++) {
        int v = d->bv[k], u = d->bu[k];
        double a = 0;
        for (int y = 0; y < WM_N; y++) a += d->cos[v][y] * tmp[y][u];
        out[k] = a;
    }
}

/* ------------------------------------------------------------ layout */
typedef struct wm_layout {
    wm_dct dct;
    int tw, th, nchips;           /* tile size in blocks */
    uint8_t bit[WM_MAX_CHIPS];    /* coded bit of chip c = block_in_tile * NBAND + k */
    int8_t sign[WM_MAX_CHIPS];
    double dither[WM_CODED];      /* in units of DELTA, [0,1) */
} wm_layout;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void layout_init(wm_layout *L, int tw, int th) {
    uint64_t s = WM_KEY ^ ((uint64_t)tw << 32) ^ (uint64_t)th;
    dct_init(&L->dct);
    L->tw = tw;
    L->th = th;
    L->nchips = tw * th * WM_NBAND;
    uint16_t perm[WM_MAX_CHIPS];
    for (int i = 0; i < L->nchips; i++) perm[i] = (uint16_t)i;
    for (int i = L->nchips - 1; i > 0; i--) {
        int j = (int)(splitmix(&s) % (uint64_t)(i + 1));
        uint16_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    /* Bit j gets the chips at ranks j, j+CODED, ...: the counts differ by at most one. */
    for (int i = 0; i < L->nchips; i++) L->bit[perm[i]] = (uint8_t)(i % WM_CODED);
    for (int i = 0; i < L->nchips; i++) L->sign[i] = (int8_t)(splitmix(&s) >> 63 ? 1 : -1);
    /* Dithers do not depend on the tile size: the same bit sits on the same lattice everywhere. */
    uint64_t s2 = WM_KEY * 3 + 1;
    for (int j = 0; j < WM_CODED; j++) L->dither[j] = (double)(splitmix(&s2) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------ payload and code */
static uint16_t crc16(const uint8_t *p, size_t n) { /* CRC-16/CCITT-FALSE */
    uint16_t c = 0xffff;
    for (size_t i = 0; i < n; i++) {
        c ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++) c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
    }
    return c;
}

static uint16_t payload_crc(uint16_t tag, uint32_t id) {
    uint8_t b[6] = {(uint8_t)(tag >> 8), (uint8_t)tag, (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    return crc16(b, 6);
}

static void make_message(uint32_t id, uint8_t msg[WM_MSG_BITS]) {
    uint64_t m = ((uint64_t)WM_TAG << 48) | ((uint64_t)id << 16) | payload_crc(WM_TAG, id);
    for (int i = 0; i < WM_MSG_BITS; i++) msg[i] = (uint8_t)((m >> (63 - i)) & 1);
}

#define G1 0171
#define G2 0133
static int parity7(unsigned v) {
    v &= 0x7f;
    v ^= v >> 4;
    v ^= v >> 2;
    v ^= v >> 1;
    return (int)(v & 1);
}

static void conv_encode(const uint8_t msg[WM_MSG_BITS], uint8_t coded[WM_CODED]) {
    unsigned reg = 0;
    for (int t = 0; t < WM_STEPS; t++) {
        unsigned b = t < WM_MSG_BITS ? msg[t] : 0; /* K-1 zero tail bits end in state 0 */
        reg = ((reg << 1) | b) & 0x7f;
        coded[2 * t] = (uint8_t)parity7(reg & G1);
        coded[2 * t + 1] = (uint8_t)parity7(reg & G2);
    }
}

/* Soft Viterbi: soft[i] > 0 favours coded bit 0. Decodes the message bits. */
static void viterbi(const double soft[WM_CODED], uint8_t msg[WM_MSG_BITS]) {
    enum { NS = 1 << (WM_K - 1) };
    double pm[NS], nm[NS];
    uint8_t dec[WM_STEPS][NS]; /* which predecessor (its top bit) won */
    uint8_t outs[128];         /* the two coded bits of each 7-bit register */
    for (unsigned reg = 0; reg < 128; reg++) outs[reg] = (uint8_t)(parity7(reg & G1) << 1 | parity7(reg & G2));
    for (int s = 0; s < NS; s++) pm[s] = s ? -1e300 : 0.0;
    for (int t = 0; t < WM_STEPS; t++) {
        double a = soft[2 * t], b = soft[2 * t + 1];
        double bm[4] = {a + b, a - b, -a + b, -a - b}; /* branch metric of coded bits 00, 01, 10, 11 */
        int nb = t >= WM_MSG_BITS ? 1 : 2; /* the tail carries zeros */
        for (int ns = 0; ns < NS; ns++) {
            if ((ns & 1) >= nb) {
                nm[ns] = -1e300;
                dec[t][ns] = 0;
                continue;
            }
            unsigned s0 = (unsigned)ns >> 1, s1 = s0 | (1u << (WM_K - 2));
            double m0 = pm[s0] + bm[outs[((s0 << 1) | ((unsigned)ns & 1)) & 0x7f]];
            double m1 = pm[s1] + bm[outs[((s1 << 1) | ((unsigned)ns & 1)) & 0x7f]];
            nm[ns] = m1 > m0 ? m1 : m0;
            dec[t][ns] = (uint8_t)(m1 > m0);
        }
        memcpy(pm, nm, sizeof pm);
    }
    unsigned st = 0;
    for (int t = WM_STEPS - 1; t >= 0; t--) {
        if (t < WM_MSG_BITS) msg[t] = (uint8_t)(st & 1);
        st = (st >> 1) | ((unsigned)dec[t][st] << (WM_K - 2));
    }
}

/* ------------------------------------------------------------ geometry */
typedef struct wm_geom {
    int nbx, nby;   /* blocks used (full 8x8 blocks from the top-left corner, whole tiles) */
    int tw, th;     /* tile size in blocks */
    int ntx, nty;   /* tiles */
    int ntiles, nblocks;
} wm_geom;

static void geom_init(wm_geom *g, int w, int h) {
    g->nbx = w / WM_N;
    g->nby = h / WM_N;
    /* As many tiles of at least WM_TILE blocks as fit, sharing the blocks
     * evenly; the few blocks left at the right and bottom carry nothing. */
    g->ntx = g->nbx >= WM_TILE ? g->nbx / WM_TILE : g->nbx > 0;
    g->nty = g->nby >= WM_TILE ? g->nby / WM_TILE : g->nby > 0;
    g->tw = g->ntx ? g->nbx / g->ntx : 0;
    g->th = g->nty ? g->nby / g->nty : 0;
    g->nbx = g->ntx * g->tw; /* the blocks used */
    g->nby = g->nty * g->th;
    g->ntiles = g->ntx * g->nty;
    g->nblocks = g->nbx * g->nby;
}

/* Tile of block (bx,by) and the chip index of its first band coefficient. */
static inline void block_place(const wm_geom *g, int bx, int by, int *tile, int *chip0) {
    *tile = (by / g->th) * g->ntx + bx / g->tw;
    *chip0 = ((by % g->th) * g->tw + bx % g->tw) * WM_NBAND;
}

/* Luminance in 0..255 (float) of an image whose values are in 0..255. */
static void luma(const float *pix, int c, size_t plane, float *y) {
    if (c == 1) {
        memcpy(y, pix, plane * sizeof(float));
        return;
    }
    for (size_t i = 0; i < plane; i++) y[i] = 0.299f * pix[i] + 0.587f * pix[plane + i] + 0.114f * pix[2 * plane + i];
}

/* Band coefficients of every block; per (tile, bit): projection sums. */
static void project(const wm_geom *g, const wm_layout *L, const float *y, int w, double *coef, double *proj) {
    memset(proj, 0, sizeof(double) * (size_t)g->ntiles * WM_CODED);
    for (int by = 0; by < g->nby; by++)
        for (int bx = 0; bx < g->nbx; bx++) {
            double *cf = coef + ((size_t)by * g->nbx + bx) * WM_NBAND;
            block_band(&L->dct, y, w, bx * WM_N, by * WM_N, cf);
            int t, c0;
            block_place(g, bx, by, &t, &c0);
            double *pr = proj + (size_t)t * WM_CODED;
            for (int k = 0; k < WM_NBAND; k++) pr[L->bit[c0 + k]] += L->sign[c0 + k] * cf[k];
        }
}

static void count_chips(const wm_geom *g, const wm_layout *L, int *cnt) {
    memset(cnt, 0, sizeof(int) * (size_t)g->ntiles * WM_CODED);
    for (int by = 0; by < g->nby; by++)
        for (int bx = 0; bx < g->nbx; bx++) {
            int t, c0;
            block_place(g, bx, by, &t, &c0);
            for (int k = 0; k < WM_NBAND; k++) cnt[(size_t)t * WM_CODED + L->bit[c0 + k]]++;
        }
}

static uint8_t q8(float v) { /* as the PNG writer: clamp to [0,1] (NaN -> 0), round */
    if (!(v > 0.0f)) return 0;
    if (v >= 1.0f) return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

/* ------------------------------------------------------------ embed */
dp_status dp_watermark_embed(dp_ctx *ctx, dp_image *img, uint32_t model_id) {
    if (!ctx || !img || !img->data) return dp_error(ctx, DP_ERR_NULL, "dp_watermark_embed: NULL argument");
    int C = img->channels, H = img->height, W = img->width;
    if ((C != 1 && C != 3) || H <= 0 || W <= 0)
        return dp_error(ctx, DP_ERR_ARG, "dp_watermark_embed: bad image %dx%dx%d (channels 1 or 3)", C, H, W);
    if (H < DP_WATERMARK_MIN_SIDE || W < DP_WATERMARK_MIN_SIDE)
        return dp_error(ctx, DP_ERR_ARG,
                        "dp_watermark_embed: a %dx%d image is too small for the watermark: it needs at least %dx%d "
                        "pixels (enlarge it first; dp_write_synthetic does)",
                        W, H, DP_WATERMARK_MIN_SIDE, DP_WATERMARK_MIN_SIDE);
    wm_geom g;
    geom_init(&g, W, H);
    wm_layout *L = dp_malloc(ctx, sizeof *L);
    size_t plane = (size_t)H * (size_t)W, nt = (size_t)g.ntiles * WM_CODED;
    float *pix = dp_malloc(ctx, sizeof(float) * plane * (size_t)C), *y = dp_malloc(ctx, sizeof(float) * plane);
    double *coef = dp_malloc(ctx, sizeof(double) * (size_t)g.nblocks * WM_NBAND);
    double *proj = dp_malloc(ctx, sizeof(double) * nt), *target = dp_malloc(ctx, sizeof(double) * nt);
    double *wsum = dp_malloc(ctx, sizeof(double) * nt), *wblk = dp_malloc(ctx, sizeof(double) * (size_t)g.nblocks);
    int *cnt = dp_malloc(ctx, sizeof(int) * nt);
    dp_status st = DP_OK;
    if (!L || !pix || !y || !coef || !proj || !target || !wsum || !wblk || !cnt) {
        st = dp_error(ctx, DP_ERR_NOMEM, "dp_watermark_embed: out of memory for a %dx%d image", W, H);
        goto done;
    }
    layout_init(L, g.tw, g.th);
    uint8_t msg[WM_MSG_BITS], coded[WM_CODED];
    make_message(model_id, msg);
    conv_encode(msg, coded);
    for (size_t i = 0; i < plane * (size_t)C; i++) pix[i] = (float)q8(img->data[i]);
    luma(pix, C, plane, y);
    count_chips(&g, L, cnt);

    /* Perceptual weight of each block: its standard deviation (a masking
     * estimate), bounded so that flat blocks still carry some of the mark,
     * and reduced near black and white, where changes would be clipped. */
    for (int by = 0; by < g.nby; by++)
        for (int bx = 0; bx < g.nbx; bx++) {
            double s = 0, s2 = 0;
            for (int yy = 0; yy < WM_N; yy++)
                for (int xx = 0; xx < WM_N; xx++) {
                    double v = y[(size_t)(by * WM_N + yy) * W + bx * WM_N + xx];
                    s += v;
                    s2 += v * v;
                }
            double mean = s / 64, sd = sqrt(fmax(0.0, s2 / 64 - mean * mean));
            double wgt = (sd + 2.0) / 10.0;
            if (wgt < 0.3) wgt = 0.3;
            if (wgt > 3.0) wgt = 3.0;
            double room = fmin(mean, 255.0 - mean) / 24.0;
            if (room < 1.0) wgt *= fmax(0.15, room);
            wblk[(size_t)by * g.nbx + bx] = wgt;
        }
    memset(wsum, 0, sizeof(double) * nt);
    for (int by = 0; by < g.nby; by++)
        for (int bx = 0; bx < g.nbx; bx++) {
            int t, c0;
            block_place(&g, bx, by, &t, &c0);
            for (int k = 0; k < WM_NBAND; k++) wsum[(size_t)t * WM_CODED + L->bit[c0 + k]] += wblk[(size_t)by * g.nbx + bx];
        }

    const double D = WM_DELTA;
    for (int it = 0; it < WM_ITERS; it++) {
        project(&g, L, y, W, coef, proj);
        double worst = 0;
        for (size_t i = 0; i < nt; i++) {
            if (!cnt[i]) continue;
            int j = (int)(i % WM_CODED);
            double v = proj[i] / sqrt((double)cnt[i]);
            if (it == 0) { /* the nearest point of the lattice of this bit's value */
                double off = (L->dither[j] + 0.5 * coded[j]) * D;
                target[i] = off + D * floor((v - off) / D + 0.5);
            }
            proj[i] = target[i] - v; /* now: the change the projection needs */
            if (fabs(proj[i]) > worst) worst = fabs(proj[i]);
        }
        if (it > 0 && worst < 0.25) break;
        /* Change of chip c in tile t, bit j: delta * w_b * sign_c * sqrt(cnt) / wsum. */
        for (int by = 0; by < g.nby; by++)
            for (int bx = 0; bx < g.nbx; bx++) {
                int t, c0;
                block_place(&g, bx, by, &t, &c0);
                double wb = wblk[(size_t)by * g.nbx + bx], dc[WM_NBAND];
                int any = 0;
                for (int k = 0; k < WM_NBAND; k++) {
                    size_t i = (size_t)t * WM_CODED + L->bit[c0 + k];
                    dc[k] = proj[i] * wb * L->sign[c0 + k] * sqrt((double)cnt[i]) / wsum[i];
                    any |= dc[k] != 0;
                }
                if (!any) continue;
                for (int yy = 0; yy < WM_N; yy++) {
                    size_t row = (size_t)(by * WM_N + yy) * W + (size_t)bx * WM_N;
                    for (int xx = 0; xx < WM_N; xx++) {
                        double d = 0;
                        for (int k = 0; k < WM_NBAND; k++)
                            d += dc[k] * L->dct.cos[L->dct.bv[k]][yy] * L->dct.cos[L->dct.bu[k]][xx];
                        for (int ch = 0; ch < C; ch++) {
                            float *p = pix + (size_t)ch * plane + row + xx;
                            double v = floor(*p + d + 0.5);
                            *p = (float)(v < 0 ? 0 : v > 255 ? 255 : v);
                        }
                    }
                }
            }
        luma(pix, C, plane, y);
    }
    for (size_t i = 0; i < plane * (size_t)C; i++) img->data[i] = pix[i] / 255.0f;
done:
    dp_free(ctx, L);
    dp_free(ctx, pix);
    dp_free(ctx, y);
    dp_free(ctx, coef);
    dp_free(ctx, proj);
    dp_free(ctx, target);
    dp_free(ctx, wsum);
    dp_free(ctx, wblk);
    dp_free(ctx, cnt);
    return st;
}

/* ------------------------------------------------------------ detect */
typedef struct wm_result {
    int found;
    uint32_t id;
    double score;
} wm_result;

/* Soft decisions from the normalised projections (proj / sqrt(cnt) / DELTA)
 * times gain, Viterbi, checks. */
static void decode(const wm_layout *L, const wm_geom *g, const double *proj, const int *cnt, double gain, wm_result *r) {
    double soft[WM_CODED] = {0}, wtot = 0;
    for (size_t i = 0, nt = (size_t)g->ntiles * WM_CODED; i < nt; i++) {
        if (!cnt[i]) continue;
        int j = (int)(i % WM_CODED);
        double f = proj[i] * gain - L->dither[j];
        f -= floor(f);
        double d0 = f < 0.5 ? f : 1.0 - f; /* distance to the lattice of bit 0, in [0, 1/2] */
        soft[j] += 1.0 - 4.0 * d0;
        wtot += 1.0;
    }
    uint8_t msg[WM_MSG_BITS], coded[WM_CODED];
    viterbi(soft, msg);
    conv_encode(msg, coded);
    double corr = 0;
    for (int j = 0; j < WM_CODED; j++) corr += coded[j] ? -soft[j] : soft[j];
    r->score = wtot > 0 ? corr / wtot : 0.0;
    uint64_t m = 0;
    for (int i = 0; i < WM_MSG_BITS; i++) m = (m << 1) | msg[i];
    uint16_t tag = (uint16_t)(m >> 48), crc = (uint16_t)m;
    r->id = (uint32_t)(m >> 16);
    r->found = tag == WM_TAG && crc == payload_crc(tag, r->id) && r->score >= DP_WATERMARK_MIN_SCORE;
}

dp_status dp_watermark_detect(dp_ctx *ctx, const dp_image *img, dp_watermark_result *out) {
    if (!ctx || !img || !img->data || !out) return dp_error(ctx, DP_ERR_NULL, "dp_watermark_detect: NULL argument");
    memset(out, 0, sizeof *out);
    int C = img->channels, H = img->height, W = img->width;
    if ((C != 1 && C != 3) || H <= 0 || W <= 0)
        return dp_error(ctx, DP_ERR_ARG, "dp_watermark_detect: bad image %dx%dx%d (channels 1 or 3)", C, H, W);
    wm_geom g;
    geom_init(&g, W, H);
    if (g.nblocks == 0) return DP_OK;
    wm_layout *L = dp_malloc(ctx, sizeof *L);
    size_t plane = (size_t)H * (size_t)W, nt = (size_t)g.ntiles * WM_CODED;
    float *y = dp_malloc(ctx, sizeof(float) * plane);
    double *coef = dp_malloc(ctx, sizeof(double) * (size_t)g.nblocks * WM_NBAND);
    double *proj = dp_malloc(ctx, sizeof(double) * nt);
    int *cnt = dp_malloc(ctx, sizeof(int) * nt);
    dp_status st = DP_OK;
    if (!L || !y || !coef || !proj || !cnt) {
        st = dp_error(ctx, DP_ERR_NOMEM, "dp_watermark_detect: out of memory for a %dx%d image", W, H);
        goto done;
    }
    layout_init(L, g.tw, g.th);
    if (C == 1) {
        for (size_t i = 0; i < plane; i++) y[i] = img->data[i] * 255.0f;
    } else {
        const float *r = img->data, *gg = r + plane, *b = gg + plane;
        for (size_t i = 0; i < plane; i++) y[i] = (0.299f * r[i] + 0.587f * gg[i] + 0.114f * b[i]) * 255.0f;
    }
    for (size_t i = 0; i < plane; i++)
        if (!isfinite(y[i])) y[i] = 0;
    count_chips(&g, L, cnt);
    project(&g, L, y, W, coef, proj);
    for (size_t i = 0; i < nt; i++) proj[i] = cnt[i] ? proj[i] / sqrt((double)cnt[i]) / WM_DELTA : 0.0;
    /* Gains: the image's contrast may have been changed (levels, auto-contrast),
     * which scales every projection; a lattice code cannot see through that, so
     * the decoder tries gains 1.025^k and keeps the best hit. Gain 1 first. */
    out->score = -1.0f;
    for (int gi = 0; gi < WM_GAIN_LO + WM_GAIN_HI + 1; gi++) {
        int k = gi == 0 ? 0 : gi <= WM_GAIN_LO ? -gi : gi - WM_GAIN_LO;
        double gain = pow(1.025, (double)k);
        wm_result r;
        decode(L, &g, proj, cnt, 1.0 / gain, &r);
        if (r.found && (!out->found || r.score > out->score)) {
            out->found = 1;
            out->model_id = r.id;
            out->score = (float)r.score;
        } else if (!out->found && r.score > out->score) {
            out->score = (float)r.score;
        }
        if (gi == 0 && out->found) break;
    }
done:
    dp_free(ctx, L);
    dp_free(ctx, y);
    dp_free(ctx, coef);
    dp_free(ctx, proj);
    dp_free(ctx, cnt);
    return st;
}
