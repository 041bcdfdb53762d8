/* Vector helpers: one AVX-512, one AVX2 and one portable body per function,
 * picked by dp_kernel_level() (cpuid, or DP_KERNEL). */
#include "kernels/vec.h"

#include "kernels/gemm.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DP_PORTABLE)
#define DP_VEC_X86 1
#include <immintrin.h>
#define T512 __attribute__((target("avx512f,fma")))
#define T256 __attribute__((target("avx2,fma")))
#endif

/* ------------------------------------------------------------ portable */
static void store_bias_c(float *dst, const float *src, int64_t n, float b, int acc) {
    if (acc)
        for (int64_t i = 0; i < n; i++) dst[i] += src[i] + b;
    else
        for (int64_t i = 0; i < n; i++) dst[i] = src[i] + b;
}
static void axpy_c(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}
static float sum_c(const float *x, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k];
    float s = 0.0f;
    for (; i < n; i++) s += x[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}
static float dot_c(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}
static void fill_c(float *y, float v, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = v;
}
static void gather_s_c(float *dst, const float *src, int64_t n, int64_t s) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i * s];
}
static void scatter_add_s_c(float *dst, const float *src, int64_t n, int64_t s) {
    for (int64_t i = 0; i < n; i++) dst[i * s] += src[i];
}
static void gather_idx_c(float *dst, const float *src, const int32_t *idx, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = idx[i] >= 0 ? src[idx[i]] : 0.0f;
}
static void scatter_add_idx_c(float *dst, const float *v, const int32_t *idx, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (idx[i] >= 0) dst[idx[i]] += v[i];
}
static void col2im_s2k4_c(float *row, const float *c0, const float *c1, const float *c2, const float *c3, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        row[2 * j] += c1[j] + (j > 0 ? c3[j - 1] : 0.0f);
        row[2 * j + 1] += (j + 1 < n ? c0[j + 1] : 0.0f) + c2[j];
    }
}
/* The rows loop of every variant: row i of the block (taps ld apart) into
 * image row ih0 + i*ihs when that is inside the plane. Inlined with f known. */
typedef void (*s2k4_row_fn)(float *row, const float *c0, const float *c1, const float *c2, const float *c3, int64_t n);
static inline void col2im_s2k4_rows_with(s2k4_row_fn f, float *plane, int64_t w, int64_t h, int64_t ih0, int64_t ihs,
                                         const float *c, int64_t ld, int64_t n, int64_t rows) {
    for (int64_t i = 0; i < rows; i++) {
        int64_t ih = ih0 + i * ihs;
        const float *ci = c + i * n;
        if (ih >= 0 && ih < h) f(plane + ih * w, ci, ci + ld, ci + 2 * ld, ci + 3 * ld, n);
    }
}
static void col2im_s2k4_rows_c(float *plane, int64_t w, int64_t h, int64_t ih0, int64_t ihs, const float *c,
                                 int64_t ld, int64_t n, int64_t rows) {
    col2im_s2k4_rows_with(col2im_s2k4_c, plane, w, h, ih0, ihs, c, ld, n, rows);
}
static void im2col_s2k4_c(float *c0, float *c1, float *c2, float *c3, const float *row, int64_t w, int64_t j0, int64_t n) {
    float *c[4] = {c0, c1, c2, c3};
    for (int64_t j = 0; j < n; j++)
        for (int k = 0; k < 4; k++) {
            int64_t t = 2 * (j0 + j) + k - 1;
            c[k][j] = t >= 0 && t < w ? row[t] : 0.0f;
        }
}
static void gather_panel_c(float *dst, int nr, int kc, const float *src, int64_t cs, int64_t r0, int64_t kk,
                           const int32_t *idx, int64_t ldi, int n) {
    int64_t c = r0 / kk, t = r0 % kk;
    for (int p = 0; p < kc; p++, dst += nr) {
        const float *x = src + c * cs;
        const int32_t *ix = idx + t * ldi;
        for (int j = 0; j < n; j++) dst[j] = ix[j] >= 0 ? x[ix[j]] : 0.0f;
        for (int j = n; j < nr; j++) dst[j] = 0.0f;
        if (++t == kk) t = 0, c++;
    }
}

#ifdef DP_VEC_X86
/* ------------------------------------------------------------ AVX-512 (masked tails) */
static inline __mmask16 tail16(int64_t r) { return (__mmask16)((1u << r) - 1u); }

T512 static void store_bias_512(float *dst, const float *src, int64_t n, float b, int acc) {
    __m512 vb = _mm512_set1_ps(b);
    int64_t i = 0;
    if (acc) {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i), _mm512_add_ps(_mm512_loadu_ps(src + i), vb)));
        if (i < n) {
            __mmask16 m = tail16(n - i);
            __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + i), _mm512_add_ps(_mm512_maskz_loadu_ps(m, src + i), vb));
            _mm512_mask_storeu_ps(dst + i, m, v);
        }
    } else {
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(src + i), vb));
        if (i < n) {
            __mmask16 m = tail16(n - i);
            _mm512_mask_storeu_ps(dst + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, src + i), vb));
        }
    }
}
T512 static void axpy_512(float *y, float a, const float *x, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}
T512 static float sum_512(const float *x, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    if (i < n) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(tail16(n - i), x + i));
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
T512 static float dot_512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail16(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
T512 static void fill_512(float *y, float v, int64_t n) {
    __m512 vv = _mm512_set1_ps(v);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, vv);
    if (i < n) _mm512_mask_storeu_ps(y + i, tail16(n - i), vv);
}

/* Stride 2 with permutes: 16 outputs from 31 inputs (the 32nd is never read). */
T512 static void gather_s_512(float *dst, const float *src, int64_t n, int64_t s) {
    if (s != 2) {
        gather_s_c(dst, src, n, s);
        return;
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_loadu_ps(src + 2 * i), b = _mm512_maskz_loadu_ps(0x7FFF, src + 2 * i + 16);
        _mm512_storeu_ps(dst + i, _mm512_permutex2var_ps(a, even, b));
    }
    gather_s_c(dst + i, src + 2 * i, n - i, 2);
}
T512 static void scatter_add_s_512(float *dst, const float *src, int64_t n, int64_t s) {
    if (s != 2) {
        scatter_add_s_c(dst, src, n, s);
        return;
    }
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* even lanes get src, odd lanes add 0 */
        __m512 v = _mm512_loadu_ps(src + i);
        float *d = dst + 2 * i;
        _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_maskz_permutexvar_ps(0x5555, lo, v)));
        _mm512_mask_storeu_ps(d + 16, 0x7FFF,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(0x7FFF, d + 16), _mm512_maskz_permutexvar_ps(0x5555, hi, v)));
    }
    scatter_add_s_c(dst + 2 * i, src + i, n - i, 2);
}

/* Masked gathers: padding taps (index < 0) are neither read nor written. */
T512 static void gather_idx_512(float *dst, const float *src, const int32_t *idx, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i ix = _mm512_loadu_si512(idx + i);
        __mmask16 m = _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512());
        _mm512_storeu_ps(dst + i, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ix, src, 4));
    }
    if (i < n) { /* the tail by a masked gather too (rows of 49: one value in 49 was a scalar loop) */
        __mmask16 lm = tail16(n - i);
        __m512i ix = _mm512_maskz_loadu_epi32(lm, idx + i);
        __mmask16 m = _mm512_mask_cmpge_epi32_mask(lm, ix, _mm512_setzero_si512());
        _mm512_mask_storeu_ps(dst + i, lm, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ix, src, 4));
    }
}
T512 static void scatter_add_idx_512(float *dst, const float *v, const int32_t *idx, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* distinct indices: gather, add, scatter without conflicts */
        __m512i ix = _mm512_loadu_si512(idx + i);
        __mmask16 m = _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512());
        __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ix, dst, 4);
        _mm512_mask_i32scatter_ps(dst, m, ix, _mm512_add_ps(x, _mm512_loadu_ps(v + i)), 4);
    }
    scatter_add_idx_c(dst, v + i, idx + i, n - i);
}

/* 16 output pairs at a time: the even and odd sums, interleaved by two
 * permutes, added to 32 contiguous image values. */
T512 static void col2im_s2k4_512(float *row, const float *c0, const float *c1, const float *c2, const float *c3, int64_t n) {
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (int64_t j = 0; j < n; j += 16) {
        int w = n - j < 16 ? (int)(n - j) : 16;
        __mmask16 m = (__mmask16)(w == 16 ? 0xFFFFu : (1u << w) - 1u);
        __mmask16 m0 = j + w == n ? (__mmask16)(m >> 1) : m; /* c0[j + 1 + lane]: none past the row */
        /* c3[j - 1 + lane]: at the row start lane 0 is empty, the others come from c3[0..] */
        __m512 v3 = j ? _mm512_maskz_loadu_ps(m, c3 + j - 1) : _mm512_maskz_expandloadu_ps((__mmask16)(m & ~1u), c3);
        __m512 e = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c1 + j), v3);
        __m512 o = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c0 + j + 1), _mm512_maskz_loadu_ps(m, c2 + j));
        __mmask16 ma = (__mmask16)(2 * w >= 16 ? 0xFFFFu : (1u << (2 * w)) - 1u);
        __mmask16 mb = (__mmask16)(2 * w <= 16 ? 0u : 2 * w == 32 ? 0xFFFFu : (1u << (2 * w - 16)) - 1u);
        float *r = row + 2 * j;
        _mm512_mask_storeu_ps(r, ma, _mm512_add_ps(_mm512_maskz_loadu_ps(ma, r), _mm512_permutex2var_ps(e, lo, o)));
        if (mb) _mm512_mask_storeu_ps(r + 16, mb, _mm512_add_ps(_mm512_maskz_loadu_ps(mb, r + 16), _mm512_permutex2var_ps(e, hi, o)));
    }
}

T512 static void col2im_s2k4_rows_512(float *plane, int64_t w, int64_t h, int64_t ih0, int64_t ihs, const float *c,
                                      int64_t ld, int64_t n, int64_t rows) {
    col2im_s2k4_rows_with(col2im_s2k4_512, plane, w, h, ih0, ihs, c, ld, n, rows);
}

/* 16 positions at a time: their 32 image values (two masked loads) split into
 * the even (c1) and odd (c2) ones by two permutes; c3 is c1 one lane on, c0
 * is c2 one lane back, with the value after and before the block. */
T512 static void im2col_s2k4_512(float *c0, float *c1, float *c2, float *c3, const float *row, int64_t w, int64_t j0,
                                 int64_t n) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int64_t j = 0; j < n; j += 16) {
        int64_t t0 = 2 * (j0 + j), avail = w - t0;
        __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFFu : tail16(n - j);
        __mmask16 la = avail >= 16 ? (__mmask16)0xFFFFu : avail <= 0 ? 0u : tail16(avail);
        __mmask16 lb = avail >= 32 ? (__mmask16)0xFFFFu : avail <= 16 ? 0u : tail16(avail - 16);
        __m512 a = _mm512_maskz_loadu_ps(la, row + t0), b = _mm512_maskz_loadu_ps(lb, row + t0 + 16);
        __m512 e = _mm512_permutex2var_ps(a, ev, b), o = _mm512_permutex2var_ps(a, od, b);
        float next = t0 + 32 < w ? row[t0 + 32] : 0.0f, prev = t0 >= 1 && t0 - 1 < w ? row[t0 - 1] : 0.0f;
        __m512i e3 = _mm512_alignr_epi32(_mm512_castps_si512(_mm512_set1_ps(next)), _mm512_castps_si512(e), 1);
        __m512i o0 = _mm512_alignr_epi32(_mm512_castps_si512(o), _mm512_castps_si512(_mm512_set1_ps(prev)), 15);
        _mm512_mask_storeu_ps(c0 + j, m, _mm512_castsi512_ps(o0));
        _mm512_mask_storeu_ps(c1 + j, m, e);
        _mm512_mask_storeu_ps(c2 + j, m, o);
        _mm512_mask_storeu_ps(c3 + j, m, _mm512_castsi512_ps(e3));
    }
}

T512 static void gather_panel_512(float *dst, int nr, int kc, const float *src, int64_t cs, int64_t r0, int64_t kk,
                                  const int32_t *idx, int64_t ldi, int n) {
    if (nr % 16) {
        gather_panel_c(dst, nr, kc, src, cs, r0, kk, idx, ldi, n);
        return;
    }
    int64_t c = r0 / kk, t = r0 % kk;
    const __m512i zero = _mm512_setzero_si512();
    for (int p = 0; p < kc; p++, dst += nr) {
        const float *x = src + c * cs;
        const int32_t *ix = idx + t * ldi;
        for (int j = 0; j < nr; j += 16) {
            __mmask16 lm = (__mmask16)(n - j >= 16 ? 0xFFFFu : n - j <= 0 ? 0u : (1u << (n - j)) - 1u);
            __m512i iv = _mm512_maskz_loadu_epi32(lm, ix + j);
            __mmask16 m = _mm512_mask_cmpge_epi32_mask(lm, iv, zero);
            _mm512_storeu_ps(dst + j, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, iv, x, 4));
        }
        if (++t == kk) t = 0, c++;
    }
}

/* ------------------------------------------------------------ AVX2 (scalar tails) */
T256 static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
T256 static void store_bias_256(float *dst, const float *src, int64_t n, float b, int acc) {
    __m256 vb = _mm256_set1_ps(b);
    int64_t i = 0;
    if (acc)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_add_ps(_mm256_loadu_ps(src + i), vb)));
    else
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(src + i), vb));
    store_bias_c(dst + i, src + i, n - i, b, acc);
}
T256 static void axpy_256(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
T256 static float sum_256(const float *x, int64_t n) {
    __m256 s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(x + i));
    float t = hsum256(s);
    for (; i < n; i++) t += x[i];
    return t;
}
T256 static float dot_256(const float *a, const float *b, int64_t n) {
    __m256 s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s);
    float t = hsum256(s);
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}
T256 static void fill_256(float *y, float v, int64_t n) {
    __m256 vv = _mm256_set1_ps(v);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, vv);
    for (; i < n; i++) y[i] = v;
}
static void gather_s_256(float *dst, const float *src, int64_t n, int64_t s) { gather_s_c(dst, src, n, s); }
T256 static void gather_idx_256(float *dst, const float *src, const int32_t *idx, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i ix = _mm256_loadu_si256((const __m256i *)(idx + i));
        __m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ix, _mm256_set1_epi32(-1)));
        _mm256_storeu_ps(dst + i, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), src, ix, m, 4));
    }
    gather_idx_c(dst + i, src, idx + i, n - i);
}
static void scatter_add_idx_256(float *dst, const float *v, const int32_t *idx, int64_t n) { scatter_add_idx_c(dst, v, idx, n); }
T256 static void gather_panel_256(float *dst, int nr, int kc, const float *src, int64_t cs, int64_t r0, int64_t kk,
                                  const int32_t *idx, int64_t ldi, int n) {
    if (nr % 8) {
        gather_panel_c(dst, nr, kc, src, cs, r0, kk, idx, ldi, n);
        return;
    }
    int64_t c = r0 / kk, t = r0 % kk;
    const __m256i neg = _mm256_set1_epi32(-1);
    for (int p = 0; p < kc; p++, dst += nr) {
        const float *x = src + c * cs;
        const int32_t *ix = idx + t * ldi;
        for (int j = 0; j < nr; j += 8) {
            __m256i lm = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            __m256i iv = _mm256_maskload_epi32(ix + j, lm);
            __m256 m = _mm256_castsi256_ps(_mm256_and_si256(lm, _mm256_cmpgt_epi32(iv, neg)));
            _mm256_storeu_ps(dst + j, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, iv, m, 4));
        }
        if (++t == kk) t = 0, c++;
    }
}
static void scatter_add_s_256(float *dst, const float *src, int64_t n, int64_t s) { scatter_add_s_c(dst, src, n, s); }
/* 8 output pairs at a time where all their taps exist (j >= 1, j + 9 <= n):
 * the even and odd sums interleaved by unpacks and a lane permute; the
 * first pair and the tail in C. */
T256 static void col2im_s2k4_256(float *row, const float *c0, const float *c1, const float *c2, const float *c3, int64_t n) {
    if (n < 10) {
        col2im_s2k4_c(row, c0, c1, c2, c3, n);
        return;
    }
    row[0] += c1[0];
    row[1] += c0[1] + c2[0];
    int64_t j = 1;
    for (; j + 9 <= n; j += 8) {
        __m256 e = _mm256_add_ps(_mm256_loadu_ps(c1 + j), _mm256_loadu_ps(c3 + j - 1));
        __m256 o = _mm256_add_ps(_mm256_loadu_ps(c0 + j + 1), _mm256_loadu_ps(c2 + j));
        __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o); /* e0 o0 e1 o1 | e4 o4 e5 o5 ... */
        float *r = row + 2 * j;
        _mm256_storeu_ps(r, _mm256_add_ps(_mm256_loadu_ps(r), _mm256_permute2f128_ps(lo, hi, 0x20)));
        _mm256_storeu_ps(r + 8, _mm256_add_ps(_mm256_loadu_ps(r + 8), _mm256_permute2f128_ps(lo, hi, 0x31)));
    }
    for (; j < n; j++) {
        row[2 * j] += c1[j] + c3[j - 1];
        row[2 * j + 1] += (j + 1 < n ? c0[j + 1] : 0.0f) + c2[j];
    }
}
T256 static void col2im_s2k4_rows_256(float *plane, int64_t w, int64_t h, int64_t ih0, int64_t ihs, const float *c,
                                      int64_t ld, int64_t n, int64_t rows) {
    col2im_s2k4_rows_with(col2im_s2k4_256, plane, w, h, ih0, ihs, c, ld, n, rows);
}
/* The even and the odd values of row[t .. t+16), in order. */
T256 static void deint16(const float *r, __m256 *ev, __m256 *od) {
    __m256 a = _mm256_loadu_ps(r), b = _mm256_loadu_ps(r + 8);
    *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}
/* 8 positions at a time where every tap is inside the row: c1/c2 the even and
 * odd values from 2*(j0+j), c3 the even ones from two on, c0 the odd ones
 * from two back; the edges in C. */
T256 static void im2col_s2k4_256(float *c0, float *c1, float *c2, float *c3, const float *row, int64_t w, int64_t j0, int64_t n) {
    int64_t j = 0;
    while (j < n && 2 * (j0 + j) < 2) j++; /* the first tap 2*(j0+j)-2 must be >= 0 */
    if (j) im2col_s2k4_c(c0, c1, c2, c3, row, w, j0, j);
    for (; j + 8 <= n && 2 * (j0 + j) + 18 <= w; j += 8) {
        const float *r = row + 2 * (j0 + j);
        __m256 e, o, e2, o2;
        deint16(r, &e, &o);
        _mm256_storeu_ps(c1 + j, e);
        _mm256_storeu_ps(c2 + j, o);
        deint16(r + 2, &e2, &o2);
        _mm256_storeu_ps(c3 + j, e2);
        deint16(r - 2, &e2, &o2);
        _mm256_storeu_ps(c0 + j, o2);
    }
    if (j < n) im2col_s2k4_c(c0 + j, c1 + j, c2 + j, c3 + j, row, w, j0 + j, n - j);
}
#define PICK(f, ...)                        \
    switch (dp_kernel_level()) {            \
    case 2: return f##_512(__VA_ARGS__);    \
    case 1: return f##_256(__VA_ARGS__);    \
    default: return f##_c(__VA_ARGS__);     \
    }
#define PICKV(f, ...)                       \
    switch (dp_kernel_level()) {            \
    case 2: f##_512(__VA_ARGS__); return;   \
    case 1: f##_256(__VA_ARGS__); return;   \
    default: f##_c(__VA_ARGS__); return;    \
    }
#else
#define PICK(f, ...) return f##_c(__VA_ARGS__);
#define PICKV(f, ...) f##_c(__VA_ARGS__);
#endif

void dp_vec_store_bias(float *dst, const float *src, int64_t n, float b, int acc) { PICKV(store_bias, dst, src, n, b, acc) }
void dp_vec_axpy(float *y, float a, const float *x, int64_t n) { PICKV(axpy, y, a, x, n) }
float dp_vec_sum(const float *x, int64_t n) { PICK(sum, x, n) }
float dp_vec_dot(const float *a, const float *b, int64_t n) { PICK(dot, a, b, n) }
void dp_vec_fill(float *y, float v, int64_t n) { PICKV(fill, y, v, n) }
void dp_vec_gather_s(float *dst, const float *src, int64_t n, int64_t s) { PICKV(gather_s, dst, src, n, s) }
void dp_vec_scatter_add_s(float *dst, const float *src, int64_t n, int64_t s) { PICKV(scatter_add_s, dst, src, n, s) }
void dp_vec_gather_idx(float *dst, const float *src, const int32_t *idx, int64_t n) { PICKV(gather_idx, dst, src, idx, n) }
void dp_vec_scatter_add_idx(float *dst, const float *v, const int32_t *idx, int64_t n) { PICKV(scatter_add_idx, dst, v, idx, n) }
void dp_vec_col2im_s2k4_rows(float *plane, int64_t w, int64_t h, int64_t ih0, int64_t ihs, const float *c, int64_t ld,
                             int64_t n, int64_t rows) {
    PICKV(col2im_s2k4_rows, plane, w, h, ih0, ihs, c, ld, n, rows)
}
void dp_vec_im2col_s2k4(float *c0, float *c1, float *c2, float *c3, const float *row, int64_t w, int64_t j0, int64_t n) {
    PICKV(im2col_s2k4, c0, c1, c2, c3, row, w, j0, n)
}
void dp_vec_gather_panel(float *dst, int nr, int kc, const float *src, int64_t cs, int64_t r0, int64_t kk,
                         const int32_t *idx, int64_t ldi, int n) {
    PICKV(gather_panel, dst, nr, kc, src, cs, r0, kk, idx, ldi, n)
}
