/* Direct stride-2 convolution, output channels in the lanes (see dconv.h). */
#include "kernels/dconv.h"

#include "kernels/gemm.h"

#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DP_PORTABLE)
#define DP_DCONV_X86 1
#include <immintrin.h>

#include "kernels/tr8.h"
#define T512 __attribute__((target("avx512f,fma")))
#define T256 __attribute__((target("avx2,fma")))
#endif

int dp_dconv_run_block(int64_t O, int64_t OW) { return dp_kernel_level() == 2 ? dp_dconv_block(O, OW) : 16; }

int dp_dconv_wgrad_block(void) { return dp_kernel_level() == 2 ? 64 : 16; }

/* 64 where O allows and the row cuts into pieces of 4 or more: 7 wide one
 * piece, 11-18 wide pieces of up to 6 (DCGAN-64's 16-wide layers: 1.03-1.15
 * over 32-channel tiles of 8); 8-10 wide would make pieces of 4-5. */
int dp_dconv_block(int64_t O, int64_t OW) { return O % 64 == 0 && (OW <= 7 || OW >= 11) ? 64 : 32; }

void dp_dconv_pack_w(const float *w, int64_t O, int64_t K, int B, float *wp) {
    for (int64_t ob = 0; ob < O / B; ob++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < B; j++) wp[(ob * K + k) * B + j] = w[(ob * B + j) * K + k];
}

void dp_dconv_s1_pack_w(const float *w, int64_t O, int64_t K, float *wp) {
    for (int64_t ob = 0; ob < O / 8; ob++)
        for (int64_t k = 0; k < K; k++)
            for (int l = 0; l < 16; l++) wp[(ob * K + k) * 16 + l] = w[(ob * 8 + 4 * (l / 8) + l % 8 / 2) * K + k];
}

/* Whole rows: zero borders (unless already zero), one copy of the image's values. */
static void pad_c(const float *x, int64_t C, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t Hp, int64_t Wp,
                  int borders_zero, float *xp) {
    int64_t n = W < Wp - pl ? W : Wp - pl; /* image values per padded row */
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < Hp; i++) {
            float *d = xp + (c * Hp + i) * Wp;
            int64_t ih = i - pt;
            int inside = ih >= 0 && ih < H && n > 0;
            if (!borders_zero || !inside) {
                if (!inside) {
                    if (!borders_zero) memset(d, 0, sizeof(float) * (size_t)Wp);
                    continue;
                }
                memset(d, 0, sizeof(float) * (size_t)pl);
                memset(d + pl + n, 0, sizeof(float) * (size_t)(Wp - pl - n));
            }
            memcpy(d + pl, x + (c * H + ih) * W, sizeof(float) * (size_t)n);
        }
}

/* The definition, for other CPUs (the convolution does not pick this path
 * there; kept so that the entry point means the same everywhere). */
static void dconv_c(const float *xp, int64_t C, int64_t Hp, int64_t Wp, const float *wp, int64_t KH, int64_t KW, int64_t OH,
                    int64_t OW, int B, int64_t ob0, int64_t ob1, const float *bias, int acc, float *y) {
    int64_t K = C * KH * KW, P = OH * OW;
    for (int64_t ob = ob0; ob < ob1; ob++)
        for (int64_t j = 0; j < B; j++) {
            int64_t o = ob * B + j;
            for (int64_t p = 0; p < P; p++) {
                int64_t oh = p / OW, ow = p % OW;
                float s = 0.0f;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t kh = 0; kh < KH; kh++)
                        for (int64_t kw = 0; kw < KW; kw++)
                            s += wp[(ob * K + (c * KH + kh) * KW + kw) * B + j] * xp[(c * Hp + 2 * oh + kh) * Wp + 2 * ow + kw];
                s += bias ? bias[o] : 0.0f;
                y[o * P + p] = acc ? y[o * P + p] + s : s;
            }
        }
}

static void wgrad_c(const float *xp, int64_t C, int64_t Hp, int64_t Wp, int64_t KH, int64_t KW, int64_t OH, int64_t OW,
                    const float *gyT, int64_t O, float *dwp, int B) {
    int64_t K = C * KH * KW;
    for (int64_t ob = 0; ob < O / B; ob++)
        for (int64_t k = 0; k < K; k++) {
            int64_t c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
            for (int64_t j = 0; j < B; j++) {
                float s = 0.0f;
                for (int64_t oh = 0; oh < OH; oh++)
                    for (int64_t ow = 0; ow < OW; ow++)
                        s += gyT[(oh * OW + ow) * O + ob * B + j] * xp[(c * Hp + 2 * oh + kh) * Wp + 2 * ow + kw];
                dwp[(ob * K + k) * B + j] += s;
            }
        }
}

#ifdef DP_DCONV_X86
/* A tile of RH output rows x RW output columns (RH*RW <= 14) x 32 output
 * channels: 2*RH*RW accumulators and two weight vectors, 30 of the 32 zmm
 * registers at most. x: the tile's first tap in channel 0; rs: floats between
 * the tile's output rows in xp (2*Wp); cs: between channels. buf[r*32 + j]:
 * position r (row-major in the tile), channel j of the block. RH and RW are
 * constants in every instance, so the loops unroll and the broadcasts take
 * immediate offsets. */
#define DC_ALWAYS static inline __attribute__((always_inline))
T512 DC_ALWAYS void dc_tile(const int RH, const int RW, const float *x, int64_t rs, int64_t C, int64_t cs, int64_t KH,
                            int64_t KW, int64_t Wp, const float *wp, float *buf) {
    __m512 a0[14], a1[14];
#pragma GCC unroll 14
    for (int r = 0; r < 14; r++)
        if (r < RH * RW) a0[r] = a1[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; c++, x += cs)
        for (int64_t kh = 0; kh < KH; kh++) {
            const float *xr = x + kh * Wp;
            for (int64_t kw = 0; kw < KW; kw++, xr++, wp += 32) {
                /* Opaque to the optimiser: position r's tap kw + 2 is position r + 1's
                 * tap kw, and GCC would carry such values between iterations in
                 * stack slots (measured: spills) instead of broadcasting from memory. */
                __asm__("" : "+r"(xr));
                __m512 w0 = _mm512_loadu_ps(wp), w1 = _mm512_loadu_ps(wp + 16);
#pragma GCC unroll 14
                for (int r = 0; r < 14; r++)
                    if (r < RH * RW) {
                        __m512 b = _mm512_set1_ps(xr[(r / RW) * rs + (r % RW) * 2]);
                        a0[r] = _mm512_fmadd_ps(b, w0, a0[r]);
                        a1[r] = _mm512_fmadd_ps(b, w1, a1[r]);
                    }
            }
        }
#pragma GCC unroll 14
    for (int r = 0; r < 14; r++)
        if (r < RH * RW) {
            _mm512_storeu_ps(buf + r * 32, a0[r]);
            _mm512_storeu_ps(buf + r * 32 + 16, a1[r]);
        }
}

typedef void (*dc_fn)(const float *x, int64_t rs, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, const float *wp,
                      float *buf);
#define DC_FN(RH, RW)                                                                                                   \
    T512 static void dc_##RH##_##RW(const float *x, int64_t rs, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, \
                                    const float *wp, float *buf) {                                                      \
        dc_tile(RH, RW, x, rs, C, cs, KH, KW, Wp, wp, buf);                                                             \
    }
DC_FN(1, 1) DC_FN(1, 2) DC_FN(1, 3) DC_FN(1, 4) DC_FN(1, 5) DC_FN(1, 6) DC_FN(1, 7)
DC_FN(1, 8) DC_FN(1, 9) DC_FN(1, 10) DC_FN(1, 11) DC_FN(1, 12) DC_FN(1, 13) DC_FN(1, 14)
DC_FN(2, 1) DC_FN(2, 2) DC_FN(2, 3) DC_FN(2, 4) DC_FN(2, 5) DC_FN(2, 6) DC_FN(2, 7)
DC_FN(3, 1) DC_FN(3, 2) DC_FN(3, 3) DC_FN(3, 4)
/* dc_tab[RH][RW] */
static const dc_fn dc_tab[4][15] = {
    {0},
    {0, dc_1_1, dc_1_2, dc_1_3, dc_1_4, dc_1_5, dc_1_6, dc_1_7, dc_1_8, dc_1_9, dc_1_10, dc_1_11, dc_1_12, dc_1_13, dc_1_14},
    {0, dc_2_1, dc_2_2, dc_2_3, dc_2_4, dc_2_5, dc_2_6, dc_2_7},
    {0, dc_3_1, dc_3_2, dc_3_3, dc_3_4},
};

/* One output row piece of RW <= 7 positions x 64 output channels: 4*RW
 * accumulators and four weight vectors. Per step 4 + RW loads for 4*RW FMAs
 * (the 14 x 32 tile: 16 loads for 28). */
T512 DC_ALWAYS void dc_tile64(const int RW, const float *x, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp,
                              const float *wp, float *buf) {
    __m512 a[7][4];
#pragma GCC unroll 7
    for (int r = 0; r < 7; r++)
        if (r < RW) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; c++, x += cs)
        for (int64_t kh = 0; kh < KH; kh++) {
            const float *xr = x + kh * Wp;
            for (int64_t kw = 0; kw < KW; kw++, xr++, wp += 64) {
                __asm__("" : "+r"(xr)); /* as in dc_tile */
                __m512 w0 = _mm512_loadu_ps(wp), w1 = _mm512_loadu_ps(wp + 16), w2 = _mm512_loadu_ps(wp + 32),
                       w3 = _mm512_loadu_ps(wp + 48);
#pragma GCC unroll 7
                for (int r = 0; r < 7; r++)
                    if (r < RW) {
                        __m512 b = _mm512_set1_ps(xr[r * 2]);
                        a[r][0] = _mm512_fmadd_ps(b, w0, a[r][0]);
                        a[r][1] = _mm512_fmadd_ps(b, w1, a[r][1]);
                        a[r][2] = _mm512_fmadd_ps(b, w2, a[r][2]);
                        a[r][3] = _mm512_fmadd_ps(b, w3, a[r][3]);
                    }
            }
        }
#pragma GCC unroll 7
    for (int r = 0; r < 7; r++)
        if (r < RW)
            for (int z = 0; z < 4; z++) _mm512_storeu_ps(buf + r * 64 + z * 16, a[r][z]);
}
typedef void (*dc64_fn)(const float *x, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, const float *wp, float *buf);
#define DC64_FN(RW)                                                                                                     \
    T512 static void dc64_##RW(const float *x, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, const float *wp, \
                               float *buf) {                                                                            \
        dc_tile64(RW, x, C, cs, KH, KW, Wp, wp, buf);                                                                   \
    }
DC64_FN(1) DC64_FN(2) DC64_FN(3) DC64_FN(4) DC64_FN(5) DC64_FN(6) DC64_FN(7)
static const dc64_fn dc64_tab[8] = {0, dc64_1, dc64_2, dc64_3, dc64_4, dc64_5, dc64_6, dc64_7};

/* The tile's n (<= 14) positions are contiguous in every output plane (whole
 * rows, or one piece of a row): channel j gets buf[r*B + j], r < n, at
 * y[j*P + r], through one 16-lane gather and one masked store. */
T512 static void dc_store(const float *buf, int B, int n, float *y, int64_t P, const float *bias, int acc) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(B));
    const __mmask16 m = (__mmask16)((1u << n) - 1u);
    for (int j = 0; j < B; j++, y += P) {
        __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, buf + j, 4);
        if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[j]));
        if (acc) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, y));
        _mm512_mask_storeu_ps(y, m, v);
    }
}

/* Masked vector stores and copies, 16 floats at a time, instead of memsets
 * and a memcpy call per row (DCGAN-28's rows are 16 wide: one of each). */
T512 static void pad_512(const float *x, int64_t C, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t Hp, int64_t Wp,
                         int borders_zero, float *xp) {
    int64_t n = W < Wp - pl ? W : Wp - pl; /* image values per padded row */
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < Hp; i++) {
            float *d = xp + (c * Hp + i) * Wp;
            int64_t ih = i - pt;
            if (!borders_zero)
                for (int64_t j = 0; j < Wp; j += 16)
                    _mm512_mask_storeu_ps(d + j, (__mmask16)(Wp - j >= 16 ? 0xffffu : (1u << (Wp - j)) - 1u), _mm512_setzero_ps());
            if (ih < 0 || ih >= H) continue;
            const float *xr = x + (c * H + ih) * W;
            for (int64_t j = 0; j < n; j += 16) {
                __mmask16 m = (__mmask16)(n - j >= 16 ? 0xffffu : (1u << (n - j)) - 1u);
                _mm512_mask_storeu_ps(d + pl + j, m, _mm512_maskz_loadu_ps(m, xr + j));
            }
        }
}

T512 static void dconv_512(const float *xp, int64_t C, int64_t Hp, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                           int64_t OH, int64_t OW, int B, int64_t ob0, int64_t ob1, const float *bias, int acc, float *y) {
    int64_t K = C * KH * KW, P = OH * OW, cs = Hp * Wp, rs = 2 * Wp;
    /* 64-channel blocks: one row a tile if it is <= 7 wide, else pieces of
     * <= 6 (24 accumulators: a 7th spills one). 32-channel blocks: 3 or
     * 2 whole rows for outputs up to 4 or 7 wide, else pieces of one row, as
     * equal as possible and at most 14 wide. */
    int RH = B == 64 ? 1 : OW <= 4 ? 3 : OW <= 7 ? 2 : 1;
    int64_t pieces = B == 64 ? (OW <= 7 ? 1 : (OW + 5) / 6) : (OW + 13) / 14;
    float buf[14 * 32] __attribute__((aligned(64)));
    for (int64_t ob = ob0; ob < ob1; ob++) {
        const float *wb = wp + ob * K * B;
        float *yb = y + ob * B * P;
        const float *bb = bias ? bias + ob * B : 0;
        for (int64_t oh0 = 0; oh0 < OH; oh0 += RH) {
            int rh = OH - oh0 < RH ? (int)(OH - oh0) : RH;
            for (int64_t pc = 0; pc < pieces; pc++) {
                int64_t ow0 = pc * OW / pieces, ow1 = (pc + 1) * OW / pieces;
                int rw = (int)(ow1 - ow0);
                if (B == 64)
                    dc64_tab[rw](xp + oh0 * rs + 2 * ow0, C, cs, KH, KW, Wp, wb, buf);
                else
                    dc_tab[rh][rw](xp + oh0 * rs + 2 * ow0, rs, C, cs, KH, KW, Wp, wb, buf);
                dc_store(buf, B, rh * rw, yb + oh0 * OW + ow0, P, bb, acc);
            }
        }
    }
}
/* T <= 7 taps (their pointers into xp) x 64 channels of dW, over every output
 * position of one image. */
T512 DC_ALWAYS void dw_tile(const int T, const float *const *xt, int64_t OH, int64_t OW, int64_t Wp, const float *g, int64_t O,
                            float *acc) {
    __m512 a[7][4];
    const float *x0 = xt[0], *x1 = xt[T > 1 ? 1 : 0], *x2 = xt[T > 2 ? 2 : 0], *x3 = xt[T > 3 ? 3 : 0];
    const float *x4 = xt[T > 4 ? 4 : 0], *x5 = xt[T > 5 ? 5 : 0], *x6 = xt[T > 6 ? 6 : 0];
    const float *const x[7] = {x0, x1, x2, x3, x4, x5, x6};
#pragma GCC unroll 7
    for (int t = 0; t < 7; t++)
        if (t < T)
            for (int z = 0; z < 4; z++) a[t][z] = _mm512_loadu_ps(acc + t * 64 + z * 16);
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *gp = g + oh * OW * O;
        for (int64_t ow = 0, off = 2 * oh * Wp; ow < OW; ow++, off += 2, gp += O) {
            __m512 g0 = _mm512_loadu_ps(gp), g1 = _mm512_loadu_ps(gp + 16), g2 = _mm512_loadu_ps(gp + 32),
                   g3 = _mm512_loadu_ps(gp + 48);
#pragma GCC unroll 7
            for (int t = 0; t < 7; t++)
                if (t < T) {
                    __m512 b = _mm512_set1_ps(x[t][off]);
                    a[t][0] = _mm512_fmadd_ps(b, g0, a[t][0]);
                    a[t][1] = _mm512_fmadd_ps(b, g1, a[t][1]);
                    a[t][2] = _mm512_fmadd_ps(b, g2, a[t][2]);
                    a[t][3] = _mm512_fmadd_ps(b, g3, a[t][3]);
                }
        }
    }
#pragma GCC unroll 7
    for (int t = 0; t < 7; t++)
        if (t < T)
            for (int z = 0; z < 4; z++) _mm512_storeu_ps(acc + t * 64 + z * 16, a[t][z]);
}
typedef void (*dw_fn)(const float *const *xt, int64_t OH, int64_t OW, int64_t Wp, const float *g, int64_t O, float *acc);
#define DW_FN(T)                                                                                                    \
    T512 static void dw_##T(const float *const *xt, int64_t OH, int64_t OW, int64_t Wp, const float *g, int64_t O, \
                            float *acc) {                                                                           \
        dw_tile(T, xt, OH, OW, Wp, g, O, acc);                                                                      \
    }
DW_FN(1) DW_FN(2) DW_FN(3) DW_FN(4) DW_FN(5) DW_FN(6) DW_FN(7)
static const dw_fn dw_tab[8] = {0, dw_1, dw_2, dw_3, dw_4, dw_5, dw_6, dw_7};

/* Tiles of up to tmax taps x B channels over the whole reduction, through tab[T]. */
static void wgrad_tiles(const float *xp, int64_t C, int64_t Hp, int64_t Wp, int64_t KH, int64_t KW, int64_t OH, int64_t OW,
                        const float *gyT, int64_t O, float *dwp, int B, int tmax, const dw_fn *tab) {
    int64_t K = C * KH * KW;
    const float *xt[7];
    for (int64_t ob = 0; ob < O / B; ob++) {
        int64_t c = 0, kh = 0, kw = 0; /* tap k0's, counted on (no divisions per tile) */
        for (int64_t k0 = 0; k0 < K; k0 += tmax) {
            int T = K - k0 < tmax ? (int)(K - k0) : tmax;
            for (int t = 0; t < T; t++) {
                xt[t] = xp + (c * Hp + kh) * Wp + kw;
                if (++kw == KW && (kw = 0, ++kh == KH)) kh = 0, c++;
            }
            tab[T](xt, OH, OW, Wp, gyT + ob * B, O, dwp + (ob * K + k0) * B);
        }
    }
}

/* ------------------------------------------------------------ AVX2: 16-channel blocks */
/* a += b * (w0, w1): one position's (or tap's) two vectors of 16 channels */
T256 DC_ALWAYS void fma2(__m256 a[2], __m256 b, __m256 w0, __m256 w1) {
    a[0] = _mm256_fmadd_ps(b, w0, a[0]);
    a[1] = _mm256_fmadd_ps(b, w1, a[1]);
}
/* the first N rows of 16 accumulated channels to dst[r*16 ..] */
T256 DC_ALWAYS void store_acc2(const int N, __m256 a[6][2], float *dst) {
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++)
        if (r < N) {
            _mm256_storeu_ps(dst + r * 16, a[r][0]);
            _mm256_storeu_ps(dst + r * 16 + 8, a[r][1]);
        }
}

/* A tile of N <= 6 consecutive output positions (row-major over the image, so
 * a tile may wrap to the next row) x 16 output channels: 12 accumulators, two
 * weight vectors and a broadcast, 15 of the 16 ymm registers; per step 8
 * loads for 12 FMAs, as the GEMM's 6 x 16 micro-kernel but without the im2col
 * gathers and the packing. off[r]: position r's first tap, relative to x.
 * buf[r*16 + j]. (A copy for KW = 4 with the taps unrolled by hand spilled
 * accumulators and ran no faster: GCC unrolls this loop itself.) */
T256 DC_ALWAYS void dc2_tile(const int N, const float *x, const int64_t *off, int64_t C, int64_t cs, int64_t KH, int64_t KW,
                             int64_t Wp, const float *wp, float *buf) {
    __m256 a[6][2];
    int64_t o[6];
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++)
        if (r < N) o[r] = off[r], a[r][0] = a[r][1] = _mm256_setzero_ps();
    for (int64_t c = 0; c < C; c++, x += cs)
        for (int64_t kh = 0; kh < KH; kh++) {
            const float *xr = x + kh * Wp;
            for (int64_t kw = 0; kw < KW; kw++, wp += 16) {
                /* the weights' line 8 taps ahead (a 16-channel block of a 64-channel 4x4 conv is
                 * 64 KB, from L2): DCGAN-28's G step 1.04-1.05x in-process, D's even */
                _mm_prefetch((const char *)(wp + 8 * 16), _MM_HINT_T0);
                __m256 w0 = _mm256_loadu_ps(wp), w1 = _mm256_loadu_ps(wp + 8);
#pragma GCC unroll 6
                for (int r = 0; r < 6; r++)
                    if (r < N) fma2(a[r], _mm256_broadcast_ss(xr + o[r] + kw), w0, w1);
            }
        }
    store_acc2(N, a, buf);
}
typedef void (*dc2_fn)(const float *x, const int64_t *off, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp,
                       const float *wp, float *buf);
#define DC2_FN(N)                                                                                                   \
    T256 static void dc2_##N(const float *x, const int64_t *off, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, \
                             const float *wp, float *buf) {                                                             \
        dc2_tile(N, x, off, C, cs, KH, KW, Wp, wp, buf);                                                                \
    }
DC2_FN(1) DC2_FN(2) DC2_FN(3) DC2_FN(4) DC2_FN(5) DC2_FN(6)
static const dc2_fn dc2_tab[7] = {0, dc2_1, dc2_2, dc2_3, dc2_4, dc2_5, dc2_6};

T256 static void dconv_256(const float *xp, int64_t C, int64_t Hp, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                           int64_t OH, int64_t OW, int64_t ob0, int64_t ob1, const float *bias, int acc, float *y) {
    int64_t K = C * KH * KW, P = OH * OW, cs = Hp * Wp;
    int64_t tiles = (P + 5) / 6; /* as equal as possible */
    float buf[6 * 16] __attribute__((aligned(32)));
    int64_t off[6];
    for (int64_t t = 0; t < tiles; t++) {
        int64_t p0 = t * P / tiles, p1 = (t + 1) * P / tiles;
        int n = (int)(p1 - p0);
        for (int r = 0; r < n; r++) off[r] = 2 * ((p0 + r) / OW) * Wp + 2 * ((p0 + r) % OW);
        for (int64_t ob = ob0; ob < ob1; ob++) {
            dc2_tab[n](xp, off, C, cs, KH, KW, Wp, wp + ob * K * 16, buf);
            float *yb = y + ob * 16 * P + p0;
            for (int j = 0; j < 16; j++, yb += P) {
                float b = bias ? bias[ob * 16 + j] : 0.0f;
                for (int r = 0; r < n; r++) yb[r] = (acc ? yb[r] : 0.0f) + buf[r * 16 + j] + b;
            }
        }
    }
}

/* T <= 6 taps x 16 channels of dW over every output position of one image:
 * per position 2 loads of gyT and T broadcasts for 2T FMAs. */
T256 DC_ALWAYS void dw2_tile(const int T, const float *const *xt, int64_t OH, int64_t OW, int64_t Wp, const float *g, int64_t O,
                             float *acc) {
    __m256 a[6][2];
    const float *x[6];
#pragma GCC unroll 6
    for (int t = 0; t < 6; t++)
        if (t < T) x[t] = xt[t], a[t][0] = _mm256_loadu_ps(acc + t * 16), a[t][1] = _mm256_loadu_ps(acc + t * 16 + 8);
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *gp = g + oh * OW * O;
        for (int64_t ow = 0, off = 2 * oh * Wp; ow < OW; ow++, off += 2, gp += O) {
            __m256 g0 = _mm256_loadu_ps(gp), g1 = _mm256_loadu_ps(gp + 8);
#pragma GCC unroll 6
            for (int t = 0; t < 6; t++)
                if (t < T) fma2(a[t], _mm256_broadcast_ss(x[t] + off), g0, g1);
        }
    }
    store_acc2(T, a, acc);
}
#define DW2_FN(T)                                                                                                   \
    T256 static void dw2_##T(const float *const *xt, int64_t OH, int64_t OW, int64_t Wp, const float *g, int64_t O, \
                             float *acc) {                                                                          \
        dw2_tile(T, xt, OH, OW, Wp, g, O, acc);                                                                     \
    }
DW2_FN(1) DW2_FN(2) DW2_FN(3) DW2_FN(4) DW2_FN(5) DW2_FN(6)
static const dw_fn dw2_tab[7] = {0, dw2_1, dw2_2, dw2_3, dw2_4, dw2_5, dw2_6};

/* ------------------------------------------------------------ stride 1, 8-channel blocks, pooled (AVX2) */
#define S1_SEG 240 /* output positions per segment of a row pair (40 tiles of 6): 120 pooled vectors buffered */
/* Two output rows x NP (2, 4 or 6) positions x 8 channels, two positions per
 * vector: lane 2c + e holds channel 4h + c (h: which half of the 8 channels)
 * at position 2q + e, so one 8-byte broadcast (vbroadcastsd) feeds 2
 * positions x 4 channels. 12 accumulators at most; per tap 2 weight vectors
 * and NP broadcasts for 2*NP FMAs: 8 loads per 12 FMAs, as the GEMM's 6 x 16
 * kernel. (One position per vector needed 12 single-float broadcasts per 12
 * FMAs; a Zen 3 issues two a cycle, as many as FMAs: this layout made Meso-4
 * inference 1.15-1.21x faster.) No im2col, no packing of the image; KW = 3
 * and 5 unrolled (Meso-4's taps). The sum runs over k = (c, kh, kw) in order
 * from zero, then adds the bias: the GEMM's rounding for a reduction of one
 * KC slice. Then, per lane, the 2x2 window (rows: the two accumulators;
 * columns: the lane pair 2c, 2c + 1): relu(v + bias) as max(v + bias, 0) (a
 * NaN becomes 0, as in mp_val), the window's maximum where the norm's slope
 * a >= 0 and its minimum where a < 0 (r -> (r - mu) * a + b is monotone, and
 * so is its rounding: the value of mapping all four and taking the maximum),
 * then the map, without contraction. out gets NP/2 vectors of channels 0-7.
 * t: per half h, at t + 40h, five vectors in the lane layout: bias, mu, a, b
 * and the mask a < 0. wp from dp_dconv_s1_pack_w. */
T256 DC_ALWAYS void s1_tile(const int POOL, const int NP, const int KW_, const int CK_, const float *x, int64_t C,
                            int64_t cs, int64_t KH, int64_t KW, int64_t Wp, const float *wp, const float *t, float *out) {
    const int64_t kwn = KW_ ? KW_ : KW;
    if (CK_) C = KH = CK_; /* C = KH = CK_ known: every loop unrolled */
    __m256 a[2][3][2]; /* [row][pair][half] */
#pragma GCC unroll 3
    for (int q = 0; q < 3; q++)
        if (2 * q < NP) a[0][q][0] = a[0][q][1] = a[1][q][0] = a[1][q][1] = _mm256_setzero_ps();
#pragma GCC unroll 3
    for (int64_t c = 0; c < C; c++, x += cs)
#pragma GCC unroll 3
        for (int64_t kh = 0; kh < KH; kh++) {
            const float *r0 = x + kh * Wp;
#pragma GCC unroll 5
            for (int64_t kw = 0; kw < kwn; kw++, r0++, wp += 16) {
                /* as in dc_tile; it also keeps GCC from holding the
                 * broadcasts that the next tap shares in registers (spills) */
                __asm__("" : "+r"(r0));
                __m256 w0 = _mm256_loadu_ps(wp), w1 = _mm256_loadu_ps(wp + 8);
#pragma GCC unroll 3
                for (int q = 0; q < 3; q++)
                    if (2 * q < NP) {
                        __m256 b0 = _mm256_castpd_ps(_mm256_broadcast_sd((const double *)(r0 + 2 * q)));
                        __m256 b1 = _mm256_castpd_ps(_mm256_broadcast_sd((const double *)(r0 + Wp + 2 * q)));
                        a[0][q][0] = _mm256_fmadd_ps(b0, w0, a[0][q][0]);
                        a[0][q][1] = _mm256_fmadd_ps(b0, w1, a[0][q][1]);
                        a[1][q][0] = _mm256_fmadd_ps(b1, w0, a[1][q][0]);
                        a[1][q][1] = _mm256_fmadd_ps(b1, w1, a[1][q][1]);
                    }
            }
        }
    if (!POOL) { /* conv + bias, channels in order per position: out[row * S1_SEG + position][8] */
        const __m256 b0 = _mm256_load_ps(t), b1 = _mm256_load_ps(t + 40);
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++)
#pragma GCC unroll 3
            for (int q = 0; q < 3; q++)
                if (2 * q < NP) {
                    __m256 v0 = _mm256_add_ps(a[r][q][0], b0), v1 = _mm256_add_ps(a[r][q][1], b1);
                    __m256 e = _mm256_shuffle_ps(v0, v1, 0x88), o = _mm256_shuffle_ps(v0, v1, 0xDD);
                    float *d = out + (r * S1_SEG + 2 * q) * 8;
                    _mm256_store_ps(d, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
                    _mm256_store_ps(d + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
                }
        return;
    }
    const __m256 z = _mm256_setzero_ps();
#pragma GCC unroll 3
    for (int q = 0; q < 3; q++)
        if (2 * q < NP) {
            __m256 m[2];
#pragma GCC unroll 2 /* constant indices: the accumulators stay in registers */
            for (int h = 0; h < 2; h++) {
                const float *th = t + 40 * h;
                const __m256 bias = _mm256_load_ps(th);
                __m256 r0 = _mm256_max_ps(_mm256_add_ps(a[0][q][h], bias), z);
                __m256 r1 = _mm256_max_ps(_mm256_add_ps(a[1][q][h], bias), z);
                __m256 hi = _mm256_max_ps(r0, r1);
                hi = _mm256_max_ps(hi, _mm256_permute_ps(hi, 0xB1));
                __m256 v = hi;
                if (POOL == 1) { /* some slope of the block < 0: the minimum there (POOL 2: none, the maximum only) */
                    __m256 lo = _mm256_min_ps(r0, r1);
                    lo = _mm256_min_ps(lo, _mm256_permute_ps(lo, 0xB1));
                    v = _mm256_blendv_ps(hi, lo, _mm256_load_ps(th + 32));
                }
                m[h] = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, _mm256_load_ps(th + 8)), _mm256_load_ps(th + 16)),
                                     _mm256_load_ps(th + 24));
            }
            /* the even lanes of both halves: channels 0 1 4 5 2 3 6 7, then in order */
            __m256 e = _mm256_shuffle_ps(m[0], m[1], 0x88);
            _mm256_store_ps(out + q * 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
        }
}
typedef void (*s1_fn)(const float *x, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, const float *wp,
                      const float *t, float *out);
#define S1_FN(NP, KW_, CK_)                                                                                      \
    T256 static void s1_##NP##_##KW_##_##CK_(const float *x, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, \
                                             const float *wp, const float *t, float *out) {                        \
        s1_tile(1, NP, KW_, CK_, x, C, cs, KH, KW, Wp, wp, t, out);                                                 \
    }                                                                                                               \
    T256 static void s1c_##NP##_##KW_##_##CK_(const float *x, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, \
                                              const float *wp, const float *t, float *out) {                       \
        s1_tile(0, NP, KW_, CK_, x, C, cs, KH, KW, Wp, wp, t, out);                                                 \
    }                                                                                                               \
    T256 static void s1p_##NP##_##KW_##_##CK_(const float *x, int64_t C, int64_t cs, int64_t KH, int64_t KW, int64_t Wp, \
                                              const float *wp, const float *t, float *out) {                       \
        s1_tile(2, NP, KW_, CK_, x, C, cs, KH, KW, Wp, wp, t, out);                                                 \
    }
S1_FN(2, 0, 0) S1_FN(4, 0, 0) S1_FN(6, 0, 0) S1_FN(2, 3, 0) S1_FN(4, 3, 0) S1_FN(6, 3, 0) S1_FN(2, 5, 0) S1_FN(4, 5, 0)
S1_FN(6, 5, 0) S1_FN(2, 3, 3) S1_FN(4, 3, 3) S1_FN(6, 3, 3)
/* s1_tab[pooled, plain, pooled with no negative norm slope][KW 3, 5, other, or 3x3 taps of 3 channels][NP / 2]:
 * the last kind (an RGB input's 3x3 conv, Meso-4's first: 27 taps) unrolled whole, 1.03-1.04x on Meso-4
 * inference. The third row's epilogue takes the window's maximum only (a block whose slopes are all >= 0 or
 * NaN has no lane where the blend would take the minimum: the same bits). */
static const s1_fn s1_tab[3][4][4] = {{{0, s1_2_3_0, s1_4_3_0, s1_6_3_0},
                                       {0, s1_2_5_0, s1_4_5_0, s1_6_5_0},
                                       {0, s1_2_0_0, s1_4_0_0, s1_6_0_0},
                                       {0, s1_2_3_3, s1_4_3_3, s1_6_3_3}},
                                      {{0, s1c_2_3_0, s1c_4_3_0, s1c_6_3_0},
                                       {0, s1c_2_5_0, s1c_4_5_0, s1c_6_5_0},
                                       {0, s1c_2_0_0, s1c_4_0_0, s1c_6_0_0},
                                       {0, s1c_2_3_3, s1c_4_3_3, s1c_6_3_3}},
                                      {{0, s1p_2_3_0, s1p_4_3_0, s1p_6_3_0},
                                       {0, s1p_2_5_0, s1p_4_5_0, s1p_6_5_0},
                                       {0, s1p_2_0_0, s1p_4_0_0, s1p_6_0_0},
                                       {0, s1p_2_3_3, s1p_4_3_3, s1p_6_3_3}}};
static int s1_kind(int64_t C, int64_t KH, int64_t KW) { return KW == 3 && KH == 3 && C == 3 ? 3 : KW == 3 ? 0 : KW == 5 ? 1 : 2; }

/* n pooled 8-channel vectors (v[q][8]) into 8 rows of y (row stride ldc): 8 x 8 transposes. */
T256 DC_ALWAYS void st8(float *y, int acc, __m256 v) { _mm256_storeu_ps(y, acc ? _mm256_add_ps(_mm256_loadu_ps(y), v) : v); }
/* acc: y += instead of y = */
T256 static void store_t8(const float *v, int64_t n, float *y, int64_t ldc, int acc) {
    int64_t q = 0;
    for (; q + 8 <= n; q += 8) {
        const float *s = v + q * 8;
        __m256 r[8];
        for (int j = 0; j < 8; j++) r[j] = _mm256_load_ps(s + 8 * j);
        dp_tr8_avx2(r);
        for (int j = 0; j < 8; j++) st8(y + j * ldc + q, acc, r[j]);
    }
    for (; q < n; q++)
        for (int j = 0; j < 8; j++) y[j * ldc + q] = acc ? y[j * ldc + q] + v[q * 8 + j] : v[q * 8 + j];
}

/* rba != NULL: pooled (dp_dconv_s1_pool_band); NULL: conv + bias (dp_dconv_s1_band),
 * pairs of output rows into a channel-ordered buffer. Either way 8 x 8
 * transposes into y. */
T256 static void s1_run_256(const float *band, int64_t C, int64_t cs, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                            int64_t rows, int64_t OW, int64_t O, const float *bias, const float *rba, float *y, int64_t ldc,
                            int64_t ldr, int acc) {
    const int pool = rba != NULL, kind = s1_kind(C, KH, KW);
    int64_t K = C * KH * KW;
    const s1_fn *tab = s1_tab[!pool][kind];
    float t[80] __attribute__((aligned(32))), out[2 * S1_SEG * 8] __attribute__((aligned(32)));
    for (int64_t ob = 0; ob < O / 8; ob++) {
        /* s1_tile's lane layout: lane 2c + e of half h is channel ob*8 + 4h + c */
        int neg = 0;
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 8; l++) {
                int64_t o = ob * 8 + 4 * h + l / 2;
                float *th = t + 40 * h + l;
                th[0] = bias ? bias[o] : 0.0f;
                if (!pool) continue;
                th[8] = rba[3 * o], th[16] = rba[3 * o + 1], th[24] = rba[3 * o + 2];
                int32_t m = rba[3 * o + 1] < 0.0f ? -1 : 0;
                memcpy(th + 32, &m, sizeof m);
                neg |= m;
            }
        if (pool) tab = s1_tab[neg ? 0 : 2][kind]; /* 2: Meso-4 inference in-process 1.02-1.06x */
        const float *w = wp + ob * K * 16;
        for (int64_t r = 0; r < rows; r += 2)
            for (int64_t s0 = 0; s0 < OW; s0 += S1_SEG) {
                int64_t s1 = OW - s0 < S1_SEG ? OW : s0 + S1_SEG;
                for (int64_t ow = s0; ow < s1; ow += 6) {
                    int np = s1 - ow < 6 ? (int)(s1 - ow) : 6;
                    tab[np / 2](band + r * Wp + ow, C, cs, KH, KW, Wp, w, t, out + (ow - s0) * (pool ? 4 : 8));
                }
                if (pool) store_t8(out, (s1 - s0) / 2, y + ob * 8 * ldc + r / 2 * ldr + s0 / 2, ldc, 0);
                else
                    for (int rr = 0; rr < 2; rr++)
                        store_t8(out + rr * S1_SEG * 8, s1 - s0, y + ob * 8 * ldc + (r + rr) * ldr + s0, ldc, acc);
            }
    }
}
#endif

void dp_dconv_pad(const float *x, int64_t C, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t Hp, int64_t Wp,
                  int borders_zero, float *xp) {
#ifdef DP_DCONV_X86
    if (dp_kernel_level() == 2) {
        pad_512(x, C, H, W, pt, pl, Hp, Wp, borders_zero, xp);
        return;
    }
#endif
    pad_c(x, C, H, W, pt, pl, Hp, Wp, borders_zero, xp);
}

void dp_dconv_s2_image(const float *xp, int64_t C, int64_t Hp, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                       int64_t OH, int64_t OW, int B, int64_t ob0, int64_t ob1, const float *bias, int acc, float *y) {
#ifdef DP_DCONV_X86
    if (dp_kernel_level() == 2) {
        dconv_512(xp, C, Hp, Wp, wp, KH, KW, OH, OW, B, ob0, ob1, bias, acc, y);
        return;
    }
    if (dp_kernel_level() == 1 && B == 16) {
        dconv_256(xp, C, Hp, Wp, wp, KH, KW, OH, OW, ob0, ob1, bias, acc, y);
        return;
    }
#endif
    dconv_c(xp, C, Hp, Wp, wp, KH, KW, OH, OW, B, ob0, ob1, bias, acc, y);
}

void dp_dconv_s2_wgrad_image(const float *xp, int64_t C, int64_t Hp, int64_t Wp, int64_t KH, int64_t KW, int64_t OH,
                             int64_t OW, const float *gyT, int64_t O, float *dwp) {
#ifdef DP_DCONV_X86
    if (dp_kernel_level() == 2) {
        wgrad_tiles(xp, C, Hp, Wp, KH, KW, OH, OW, gyT, O, dwp, 64, 7, dw_tab);
        return;
    }
    if (dp_kernel_level() == 1) {
        wgrad_tiles(xp, C, Hp, Wp, KH, KW, OH, OW, gyT, O, dwp, 16, 6, dw2_tab);
        return;
    }
#endif
    wgrad_c(xp, C, Hp, Wp, KH, KW, OH, OW, gyT, O, dwp, dp_dconv_wgrad_block());
}

/* The definition (other CPUs never take this path; see dconv.h). */
static float s1_rba_c(float v, const float *t) { return ((v > 0.0f ? v : 0.0f) - t[0]) * t[1] + t[2]; }
/* Output channel o at (r, ow) of the band, wp in dp_dconv_s1_pack_w's layout. */
static float s1_sum_c(const float *band, int64_t C, int64_t cs, int64_t Wp, const float *wp, int64_t KH, int64_t KW, int64_t o,
                      int64_t r, int64_t ow) {
    int64_t K = C * KH * KW;
    float s = 0.0f;
    for (int64_t c = 0; c < C; c++)
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++)
                s += wp[((o / 8) * K + (c * KH + kh) * KW + kw) * 16 + 8 * (o % 8 / 4) + 2 * (o % 4)] *
                     band[c * cs + (r + kh) * Wp + ow + kw];
    return s;
}
static void s1_pool_c(const float *band, int64_t C, int64_t cs, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                      int64_t rows, int64_t OW, int64_t O, const float *bias, const float *rba, float *y, int64_t ldc,
                      int64_t ldr) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t r = 0; r < rows; r += 2)
            for (int64_t ow = 0; ow < OW; ow += 2) {
                float m = 0.0f;
                for (int i = 0; i < 4; i++) {
                    int64_t rr = r + i / 2, cc = ow + i % 2;
                    float v = s1_rba_c(s1_sum_c(band, C, cs, Wp, wp, KH, KW, o, rr, cc) + (bias ? bias[o] : 0.0f), rba + 3 * o);
                    if (i == 0 || v > m || v != v) m = v;
                }
                y[o * ldc + r / 2 * ldr + ow / 2] = m;
            }
}

void dp_dconv_s1_pool_band(const float *band, int64_t C, int64_t cs, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                           int64_t rows, int64_t OW, int64_t O, const float *bias, const float *rba, float *y, int64_t ldc,
                           int64_t ldr) {
#ifdef DP_DCONV_X86
    if (dp_kernel_level() >= 1) {
        s1_run_256(band, C, cs, Wp, wp, KH, KW, rows, OW, O, bias, rba, y, ldc, ldr, 0);
        return;
    }
#endif
    s1_pool_c(band, C, cs, Wp, wp, KH, KW, rows, OW, O, bias, rba, y, ldc, ldr);
}

static void s1_band_c(const float *band, int64_t C, int64_t cs, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                      int64_t rows, int64_t OW, int64_t O, const float *bias, float *y, int64_t ldc, int64_t ldr, int acc) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float v = s1_sum_c(band, C, cs, Wp, wp, KH, KW, o, r, ow) + (bias ? bias[o] : 0.0f);
                y[o * ldc + r * ldr + ow] = acc ? y[o * ldc + r * ldr + ow] + v : v;
            }
}

void dp_dconv_s1_band(const float *band, int64_t C, int64_t cs, int64_t Wp, const float *wp, int64_t KH, int64_t KW,
                      int64_t rows, int64_t OW, int64_t O, const float *bias, float *y, int64_t ldc, int64_t ldr, int acc) {
#ifdef DP_DCONV_X86
    if (dp_kernel_level() >= 1) {
        s1_run_256(band, C, cs, Wp, wp, KH, KW, rows, OW, O, bias, NULL, y, ldc, ldr, acc);
        return;
    }
#endif
    s1_band_c(band, C, cs, Wp, wp, KH, KW, rows, OW, O, bias, y, ldc, ldr, acc);
}
