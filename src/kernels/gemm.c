/* Single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, row-major.
 *
 * GotoBLAS/BLIS structure: the K dimension is cut into slices of the
 * kernel's kc (512 with AVX-512: on a Zen 4, sgemm 1024 at 2 threads 1.047x
 * in-process against 256, Meso-4 and DCGAN steps within noise — not measured
 * on the Zen 5 or the Xeon; 256, the value before, for the others: the AVX2
 * kernel on the Zen 4 gained nothing clear from 512) and N into
 * NC blocks; for each (NC, kc) block op(B) is packed into NR-wide column
 * panels (it stays in L2), op(A) is packed MC rows at a time into MR-high row
 * panels (rows split evenly: 16 rows are 8 + 8, not 14 + 2), and a
 * register-blocked micro-kernel computes one MR x NR tile of C per call with
 * the whole kc slice in registers; the A panel stays in L1 while B panels
 * stream past it. Vectors run along N (the contiguous dimension of C); A
 * values are broadcast. With a single row panel B is not packed at all (it
 * would be read once): the micro-kernel reads B's rows in place.
 *
 * Micro-kernels: AVX-512 (14 x 32, 28 zmm accumulators), AVX2+FMA (6 x 16)
 * and portable C with 4-lane vector extensions (4 x 8). The choice is made
 * once from cpuid feature flags (never the CPU model); DP_KERNEL=portable|
 * avx2|avx512 may force a supported one.
 *
 * Convolution entry points (kernels/gemm.h): B rows at arbitrary offsets, a
 * row-tiled product with a bias epilogue, and unpacked A B^T dot products.
 *
 * The packing buffers: one heap block of about 1.3 MiB per thread that runs a
 * GEMM, made on its first one (dp_gemm_thread_ready) and freed when the
 * thread exits; no allocation after that. */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/internal.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DP_PORTABLE)
#define DP_GEMM_X86 1
#include <immintrin.h>

#include "kernels/tr8.h"
#endif

#define KC_MAX 512 /* K slices: the kernel's kc, at most this */
#define NC 512     /* columns of B packed at once (a multiple of every NR) */
#define MC_MAX 168 /* rows of A packed at once, largest over the kernels (= DP_GEMM_ROWBLOCK) */
#define NR_MAX 32

typedef void (*ukr_fn)(int64_t k, const float *a, const float *b, int64_t ldb, const int64_t *boff, float *c,
                       int64_t ldc, float alpha, float beta, const float *bias, int m, int n);

typedef struct kern {
    const char *name;
    int mr, nr, mc; /* mc: a multiple of mr, <= MC_MAX */
    int kc;         /* K slice, <= KC_MAX */
    ukr_fn ukr;
    /* Optional vector packers for the transposing cases (NULL: generic C):
     * one mr-high panel of a row-major A (m rows, kc columns), and one
     * nr-wide panel of B stored transposed (n rows of kc). */
    void (*pack_a_rows)(const float *A, int64_t lda, int m, int kc, float *dst);
    /* one panel of A stored transposed: m contiguous values per p */
    void (*pack_a_cols)(const float *A, int64_t lda, int m, int kc, float *dst);
    void (*pack_bt_rows)(const float *B, int64_t ldb, const int64_t *offs, int n, int kc, float *dst);
} kern;

/* The micro-kernel contract: C[0..m, 0..n) = alpha * sum_p a[p*mr + i] * B_p[j] + beta * C
 * for k steps, where a is an mr-high packed panel (zero-padded) and B_p, the
 * p-th row of b, is b + p*ldb, or b + boff[p] when boff is not NULL. b is
 * either a packed panel (ldb = nr, zero-padded) or rows of an unpacked B:
 * only the first n columns of each row are read. When beta == 0, C is not
 * read (it may hold NaNs). bias, when not NULL, adds bias[i] to row i. */

/* ------------------------------------------------------------ portable C */
#define P_MR 4
#define P_NR 4

/* GCC/clang vector extensions: plain C, compiled to SSE2 on baseline x86-64
 * (NEON elsewhere). Each multiply-add is rounded once, like the vector
 * kernels' FMAs: the product of two floats is exact in double, the sum is
 * rounded there and then to float precision (equal to fmaf but in rare
 * double-rounding cases), so this kernel gives the FMA kernels' results. A
 * float multiply then add rounds twice: that flipped ReLU masks of
 * test_parity's MesoInception-4 against its float64 reference, and so did
 * summing the whole K slice in double (more accurate, but a near-zero
 * pre-activation landed on the other side of zero than in every float32 path
 * tried); fmaf itself is a library call where the compiler may not emit FMA.
 *
 * The accumulators are 2-lane doubles holding float values. The rounding to
 * float precision is arithmetic, not a conversion (conversions and the
 * shuffles around them queue on one execution port of x86 cores): with
 * c = x * (2^29 + 1), c - (c - x) is x rounded to 53 - 29 = 24 significant
 * bits (Veltkamp's splitting). Unlike a conversion to float it keeps
 * exponents below float's range (a sum under 2^-126 keeps 24 bits where
 * float would have fewer) and never overflows to infinity; no test or model
 * comes near either. 4 x 4 floats are 8 accumulator registers; the B row,
 * the broadcast A value and the rounding's temporaries fill the other 8 of
 * the 16 SSE registers. */
typedef double pd2 __attribute__((vector_size(16)));
typedef double pd4 __attribute__((vector_size(32)));
typedef float pf4 __attribute__((vector_size(16)));

#define DP_ALWAYS_INLINE static inline __attribute__((always_inline))

/* four floats from p (any alignment), widened */
DP_ALWAYS_INLINE void p_ld4(const float *p, pd4 *out) {
    pf4 v;
    memcpy(&v, p, sizeof v);
    *out = __builtin_convertvector(v, pd4);
}

/* x rounded to float precision (24 significant bits, to nearest) */
DP_ALWAYS_INLINE pd2 p_round24(pd2 x) {
    const pd2 split = {536870913.0, 536870913.0}; /* 2^29 + 1 */
    pd2 c = x * split;
    return c - (c - x);
}

/* acc = round24(acc + a * b), the product exact and the sum in double */
DP_ALWAYS_INLINE void p_madd(pd2 acc[2], double a, const pd4 *b) {
    pd2 av = {a, a}, b0 = {(*b)[0], (*b)[1]}, b1 = {(*b)[2], (*b)[3]};
    acc[0] = p_round24(acc[0] + av * b0);
    acc[1] = p_round24(acc[1] + av * b1);
}

/* acc += the k steps; B_p starts at b + boff[p] (use_off) or b + p*ldb; only
 * its first n columns are read unless full (n == P_NR). Specialised by the
 * callers' constants. */
DP_ALWAYS_INLINE void p_steps(int64_t k, const float *a, const float *b, int64_t ldb, const int64_t *boff, int n,
                              int use_off, int full, pd2 acc[P_MR][2]) {
    for (int64_t p = 0; p < k; p++, a += P_MR) {
        const float *br = use_off ? b + boff[p] : b + p * ldb;
        float t[P_NR] = {0};
        if (!full)
            for (int j = 0; j < n; j++) t[j] = br[j];
        pd4 bv, av;
        p_ld4(full ? br : t, &bv);
        p_ld4(a, &av);
        p_madd(acc[0], av[0], &bv);
        p_madd(acc[1], av[1], &bv);
        p_madd(acc[2], av[2], &bv);
        p_madd(acc[3], av[3], &bv);
    }
}

static void ukr_portable(int64_t k, const float *a, const float *b, int64_t ldb, const int64_t *boff, float *c,
                         int64_t ldc, float alpha, float beta, const float *bias, int m, int n) {
    pd2 acc[P_MR][2] = {{{0}}};
    if (n == P_NR) {
        if (boff)
            p_steps(k, a, b, ldb, boff, n, 1, 1, acc);
        else
            p_steps(k, a, b, ldb, NULL, n, 0, 1, acc);
    } else {
        if (boff)
            p_steps(k, a, b, ldb, boff, n, 1, 0, acc);
        else
            p_steps(k, a, b, ldb, NULL, n, 0, 0, acc);
    }
    for (int i = 0; i < m; i++) {
        float *cr = c + (int64_t)i * ldc, bi = bias ? bias[i] : 0.0f;
        float r[P_NR] = {(float)acc[i][0][0], (float)acc[i][0][1], (float)acc[i][1][0], (float)acc[i][1][1]};
        if (beta == 0.0f)
            for (int j = 0; j < n; j++) cr[j] = alpha * r[j] + bi;
        else
            for (int j = 0; j < n; j++) cr[j] = alpha * r[j] + beta * cr[j] + bi;
    }
}

#ifdef DP_GEMM_X86
#define DP_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------ AVX2 + FMA, 6 x 16 */
#define A2_MR 6
#define A2_NR 16
#define T_AVX2 __attribute__((target("avx2,fma")))

/* mask for the first n (0..8) lanes */
T_AVX2 static inline __m256i avx2_mask(int n) {
    static const int32_t tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(tab + 8 - (n < 0 ? 0 : n > 8 ? 8 : n)));
}

/* M (rows) and FULL (n == 16) are constants at every call site. The rows are
 * written out with macros (not loops) so that the accumulators are plain
 * variables the compiler keeps in registers; rows >= M fold away.
 * B's row 8 steps ahead is prefetched (one cache line of a packed panel): on a
 * Zen 3 with 512 KB of L2 the panels come from L3, faster than its prefetcher
 * fetches them; 1024^3 in-process 1.054x at 2 threads, 1.019x at 1 on a quiet
 * VM (1.10x / 1.04-1.16x with a build beside it; 4, 16 or 32 steps ahead: the
 * same as 8). A prefetch never faults past the end. */
#define A2_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define A2_FMA(i)                                                                                                      \
    if (i < M) {                                                                                                       \
        av = _mm256_broadcast_ss(a + i);                                                                               \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                                    \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                                                    \
    }
#define A2_STEP                                                                                                        \
    {                                                                                                                  \
        __m256 b0, b1, av;                                                                                             \
        const float *br = OFFS ? b + boff[p] : b;                                                                      \
        if (!OFFS) _mm_prefetch((const char *)(b + 8 * ldb), _MM_HINT_T0);                                            \
        if (FULL) {                                                                                                    \
            b0 = _mm256_loadu_ps(br);                                                                                  \
            b1 = _mm256_loadu_ps(br + 8);                                                                              \
        } else {                                                                                                       \
            b0 = _mm256_maskload_ps(br, m0);                                                                           \
            b1 = _mm256_maskload_ps(br + 8, m1);                                                                       \
        }                                                                                                              \
        A2_ROWS(A2_FMA)                                                                                                \
        a += A2_MR;                                                                                                    \
        if (!OFFS) b += ldb;                                                                                           \
    }
/* The 6 x 16 tile over packed B, the bulk of every GEMM, has its k loop
 * unrolled 4 times (UNROLL): in-process (bench/ab_inproc.c, random values)
 * sgemm 1024^3 1.036x at 1 thread, 1.04-1.08x at 2, the DCGAN-64 D step
 * 1.075x and G step 1.068x; unrolling the other tiles too changed nothing
 * measurable (Meso-4 0.98-1.00x) and quadruples their code. */
DP_INLINE T_AVX2 void body_avx2(const int UNROLL, const int M, const int FULL, const int OFFS, int64_t k, const float *a,
                                const float *b, int64_t ldb, const int64_t *boff, float *c, int64_t ldc, float alpha,
                                float beta, const float *bias, int n) {
#define A2_DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
    A2_ROWS(A2_DECL)
    const __m256i m0 = avx2_mask(n), m1 = avx2_mask(n - 8);
    if (UNROLL) {
#pragma GCC unroll 4
        for (int64_t p = 0; p < k; p++) A2_STEP
    } else {
        for (int64_t p = 0; p < k; p++) A2_STEP
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#define A2_STORE(i)                                                                      \
    if (i < M) {                                                                         \
        float *cr = c + (int64_t)i * ldc;                                                \
        __m256 r0 = _mm256_mul_ps(va, c##i##0), r1 = _mm256_mul_ps(va, c##i##1);         \
        if (bias) {                                                                      \
            __m256 bv = _mm256_broadcast_ss(bias + i);                                   \
            r0 = _mm256_add_ps(r0, bv);                                                  \
            r1 = _mm256_add_ps(r1, bv);                                                  \
        }                                                                                \
        if (FULL) {                                                                      \
            if (beta != 0.0f) {                                                          \
                r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), r0);                       \
                r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), r1);                   \
            }                                                                            \
            _mm256_storeu_ps(cr, r0);                                                    \
            _mm256_storeu_ps(cr + 8, r1);                                                \
        } else {                                                                         \
            if (beta != 0.0f) {                                                          \
                r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), r0);                \
                r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), r1);            \
            }                                                                            \
            _mm256_maskstore_ps(cr, m0, r0);                                             \
            _mm256_maskstore_ps(cr + 8, m1, r1);                                         \
        }                                                                                \
    }
    A2_ROWS(A2_STORE)
}

#define A2_CASE(M)                                                                    \
    case M:                                                                           \
        if (boff && n == A2_NR)                                                       \
            body_avx2(0, M, 1, 1, k, a, b, ldb, boff, c, ldc, alpha, beta, bias, n);           \
        else if (boff)                                                                \
            body_avx2(0, M, 0, 1, k, a, b, ldb, boff, c, ldc, alpha, beta, bias, n);           \
        else if (n == A2_NR)                                                          \
            body_avx2(M == 6, M, 1, 0, k, a, b, ldb, boff, c, ldc, alpha, beta, bias, n);           \
        else                                                                          \
            body_avx2(0, M, 0, 0, k, a, b, ldb, boff, c, ldc, alpha, beta, bias, n);           \
        break;

T_AVX2 static void ukr_avx2(int64_t k, const float *a, const float *b, int64_t ldb, const int64_t *boff, float *c,
                            int64_t ldc, float alpha, float beta, const float *bias, int m, int n) {
    switch (m) {
        A2_CASE(1) A2_CASE(2) A2_CASE(3) A2_CASE(4) A2_CASE(5) default : A2_CASE(6)
    }
}

/* Panels of A for the 6 x 16 kernel. Row-major A: 8 columns of the m <= 6
 * rows at a time through an 8 x 8 transpose (rows 6, 7 zero), each column
 * stored as 4 + 2 floats. */
T_AVX2 static void pack_a_rows_avx2(const float *A, int64_t lda, int m, int kc, float *dst) {
    const __m256 z = _mm256_setzero_ps();
    for (int pb = 0; pb < kc; pb += 8) {
        int w = kc - pb < 8 ? kc - pb : 8;
        const __m256i lm = avx2_mask(w);
        __m256 r[8];
        for (int i = 0; i < 8; i++)
            r[i] = i >= m ? z : w == 8 ? _mm256_loadu_ps(A + (int64_t)i * lda + pb) : _mm256_maskload_ps(A + (int64_t)i * lda + pb, lm);
        dp_tr8_avx2(r); /* r[j]: column pb + j of the 8 rows */
        for (int j = 0; j < w; j++) {
            float *d = dst + (int64_t)(pb + j) * A2_MR;
            _mm_storeu_ps(d, _mm256_castps256_ps128(r[j]));
            _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(r[j], 1));
        }
    }
}

/* A stored transposed: each p is m contiguous floats. */
T_AVX2 static void pack_a_cols_avx2(const float *A, int64_t lda, int m, int kc, float *dst) {
    for (int p = 0; p < kc; p++) {
        const float *src = A + (int64_t)p * lda;
        float *d = dst + (int64_t)p * A2_MR;
        if (m == A2_MR) {
            _mm_storeu_ps(d, _mm_loadu_ps(src));
            _mm_storel_pi((__m64 *)(d + 4), _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(src + 4)));
        } else {
            for (int i = 0; i < A2_MR; i++) d[i] = i < m ? src[i] : 0.0f;
        }
    }
}

/* ------------------------------------------------------------ AVX-512, 14 x 32 */
#define A5_MR 14
#define A5_NR 32
#define T_AVX512 __attribute__((target("avx512f,fma")))

#define A5_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
DP_INLINE T_AVX512 void body_avx512(const int M, const int FULL, const int OFFS, int64_t k, const float *a,
                                    const float *b, int64_t ldb, const int64_t *boff, float *c, int64_t ldc, float alpha,
                                    float beta, const float *bias, int n) {
#define A5_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
    A5_ROWS(A5_DECL)
    const __mmask16 m0 = (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
    const __mmask16 m1 = (__mmask16)(n >= 32 ? 0xFFFFu : n <= 16 ? 0u : (1u << (n - 16)) - 1u);
#define A5_PF(i)                                                                \
    if (i < M) {                                                                \
        _mm_prefetch((const char *)(c + (int64_t)i * ldc), _MM_HINT_T0);        \
        _mm_prefetch((const char *)(c + (int64_t)i * ldc + 16), _MM_HINT_T0);   \
    }
    A5_ROWS(A5_PF)
    for (int64_t p = 0; p < k; p++) {
        __m512 b0, b1, av;
        const float *br = OFFS ? b + boff[p] : b;
        if (FULL) {
            b0 = _mm512_loadu_ps(br);
            b1 = _mm512_loadu_ps(br + 16);
        } else {
            b0 = _mm512_maskz_loadu_ps(m0, br);
            b1 = _mm512_maskz_loadu_ps(m1, br + 16);
        }
#define A5_FMA(i)                                        \
    if (i < M) {                                         \
        av = _mm512_set1_ps(a[i]);                       \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);      \
        c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);      \
    }
        A5_ROWS(A5_FMA)
        a += A5_MR;
        if (!OFFS) b += ldb;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#define A5_STORE(i)                                                                      \
    if (i < M) {                                                                         \
        float *cr = c + (int64_t)i * ldc;                                                \
        __m512 r0 = _mm512_mul_ps(va, c##i##0), r1 = _mm512_mul_ps(va, c##i##1);         \
        if (bias) {                                                                      \
            __m512 bv = _mm512_set1_ps(bias[i]);                                         \
            r0 = _mm512_add_ps(r0, bv);                                                  \
            r1 = _mm512_add_ps(r1, bv);                                                  \
        }                                                                                \
        if (FULL) {                                                                      \
            if (beta != 0.0f) {                                                          \
                r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), r0);                       \
                r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16), r1);                  \
            }                                                                            \
            _mm512_storeu_ps(cr, r0);                                                    \
            _mm512_storeu_ps(cr + 16, r1);                                               \
        } else {                                                                         \
            if (beta != 0.0f) {                                                          \
                r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), r0);             \
                r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), r1);        \
            }                                                                            \
            _mm512_mask_storeu_ps(cr, m0, r0);                                           \
            _mm512_mask_storeu_ps(cr + 16, m1, r1);                                      \
        }                                                                                \
    }
    A5_ROWS(A5_STORE)
}

#define A5_CASE(M)                                                                    \
    case M:                                                                           \
        if (boff) {                                                                   \
            if (n == A5_NR)                                                           \
                body_avx512(M, 1, 1, k, a, b, ldb, boff, c, ldc, alpha, beta, bias, n);     \
            else                                                                      \
                body_avx512(M, 0, 1, k, a, b, ldb, boff, c, ldc, alpha, beta, bias, n);     \
        } else if (n == A5_NR) {                                                      \
            body_avx512(M, 1, 0, k, a, b, ldb, boff, c, ldc, alpha, beta, bias, n);         \
        } else {                                                                      \
            body_avx512(M, 0, 0, k, a, b, ldb, boff, c, ldc, alpha, beta, bias, n);         \
        }                                                                             \
        break;

T_AVX512 static void ukr_avx512(int64_t k, const float *a, const float *b, int64_t ldb, const int64_t *boff, float *c,
                                int64_t ldc, float alpha, float beta, const float *bias, int m, int n) {
    switch (m) {
        A5_CASE(1) A5_CASE(2) A5_CASE(3) A5_CASE(4) A5_CASE(5) A5_CASE(6) A5_CASE(7)
        A5_CASE(8) A5_CASE(9) A5_CASE(10) A5_CASE(11) A5_CASE(12) A5_CASE(13) default : A5_CASE(14)
    }
}

/* In-register 16x16 transpose: afterwards r[j] holds column j. */
#define TR16_DECL __m512 r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15
#define UNLO(a, b) _mm512_unpacklo_ps(a, b)
#define UNHI(a, b) _mm512_unpackhi_ps(a, b)
#define UNLOD(a, b) _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
#define UNHID(a, b) _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
#define SHUF(a, b, imm) _mm512_shuffle_f32x4(a, b, imm)
#define TR16()                                                                                                     \
    do {                                                                                                           \
        __m512 t0 = UNLO(r0, r1), t1 = UNHI(r0, r1), t2 = UNLO(r2, r3), t3 = UNHI(r2, r3);                          \
        __m512 t4 = UNLO(r4, r5), t5 = UNHI(r4, r5), t6 = UNLO(r6, r7), t7 = UNHI(r6, r7);                          \
        __m512 t8 = UNLO(r8, r9), t9 = UNHI(r8, r9), t10 = UNLO(r10, r11), t11 = UNHI(r10, r11);                    \
        __m512 t12 = UNLO(r12, r13), t13 = UNHI(r12, r13), t14 = UNLO(r14, r15), t15 = UNHI(r14, r15);              \
        r0 = UNLOD(t0, t2), r1 = UNHID(t0, t2), r2 = UNLOD(t1, t3), r3 = UNHID(t1, t3);                             \
        r4 = UNLOD(t4, t6), r5 = UNHID(t4, t6), r6 = UNLOD(t5, t7), r7 = UNHID(t5, t7);                             \
        r8 = UNLOD(t8, t10), r9 = UNHID(t8, t10), r10 = UNLOD(t9, t11), r11 = UNHID(t9, t11);                       \
        r12 = UNLOD(t12, t14), r13 = UNHID(t12, t14), r14 = UNLOD(t13, t15), r15 = UNHID(t13, t15);                 \
        t0 = SHUF(r0, r4, 0x88), t1 = SHUF(r1, r5, 0x88), t2 = SHUF(r2, r6, 0x88), t3 = SHUF(r3, r7, 0x88);         \
        t4 = SHUF(r0, r4, 0xdd), t5 = SHUF(r1, r5, 0xdd), t6 = SHUF(r2, r6, 0xdd), t7 = SHUF(r3, r7, 0xdd);         \
        t8 = SHUF(r8, r12, 0x88), t9 = SHUF(r9, r13, 0x88), t10 = SHUF(r10, r14, 0x88), t11 = SHUF(r11, r15, 0x88); \
        t12 = SHUF(r8, r12, 0xdd), t13 = SHUF(r9, r13, 0xdd), t14 = SHUF(r10, r14, 0xdd);                          \
        t15 = SHUF(r11, r15, 0xdd);                                                                                \
        r0 = SHUF(t0, t8, 0x88), r1 = SHUF(t1, t9, 0x88), r2 = SHUF(t2, t10, 0x88), r3 = SHUF(t3, t11, 0x88);       \
        r4 = SHUF(t4, t12, 0x88), r5 = SHUF(t5, t13, 0x88), r6 = SHUF(t6, t14, 0x88), r7 = SHUF(t7, t15, 0x88);     \
        r8 = SHUF(t0, t8, 0xdd), r9 = SHUF(t1, t9, 0xdd), r10 = SHUF(t2, t10, 0xdd), r11 = SHUF(t3, t11, 0xdd);     \
        r12 = SHUF(t4, t12, 0xdd), r13 = SHUF(t5, t13, 0xdd), r14 = SHUF(t6, t14, 0xdd), r15 = SHUF(t7, t15, 0xdd); \
    } while (0)
#define R16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

/* Row-major A panel (m <= 14 rows) into [p][14]: 16 columns at a time
 * through a transpose, instead of one strided scalar store per element. */
T_AVX512 static void pack_a_rows_avx512(const float *A, int64_t lda, int m, int kc, float *dst) {
    for (int pb = 0; pb < kc; pb += 16) {
        int w = kc - pb < 16 ? kc - pb : 16;
        __mmask16 lm = (__mmask16)((1u << w) - 1u);
        TR16_DECL;
#define PA_LD(i) r##i = (i < m) ? _mm512_maskz_loadu_ps(lm, A + (int64_t)(i)*lda + pb) : _mm512_setzero_ps();
        R16(PA_LD)
        TR16();
#define PA_ST(j) \
    if (j < w) _mm512_mask_storeu_ps(dst + (int64_t)(pb + j) * A5_MR, (__mmask16)((1u << A5_MR) - 1u), r##j);
        R16(PA_ST)
    }
}

/* A stored transposed: each p is m contiguous floats; one masked load and store. */
T_AVX512 static void pack_a_cols_avx512(const float *A, int64_t lda, int m, int kc, float *dst) {
    __mmask16 lm = (__mmask16)((1u << m) - 1u), sm = (__mmask16)((1u << A5_MR) - 1u);
    for (int p = 0; p < kc; p++) {
        const float *src = A + (int64_t)p * lda;
        _mm_prefetch((const char *)(src + 8 * lda), _MM_HINT_T0);
        _mm512_mask_storeu_ps(dst + (int64_t)p * A5_MR, sm, _mm512_maskz_loadu_ps(lm, src));
    }
}

/* B stored transposed (n <= 32 rows of kc) into a [p][32] panel, zero-padded. */
T_AVX512 static void pack_bt_rows_avx512(const float *B, int64_t ldb, const int64_t *offs, int n, int kc, float *dst) {
    int64_t ro[A5_NR]; /* row starts */
    for (int i = 0; i < A5_NR; i++) ro[i] = i < n ? (offs ? offs[i] : i * ldb) : 0;
    for (int pb = 0; pb < kc; pb += 16) {
        int w = kc - pb < 16 ? kc - pb : 16;
        __mmask16 lm = (__mmask16)((1u << w) - 1u);
        for (int h = 0; h < 2; h++) {
            const float *src = B + pb;
            const int64_t *o = ro + h * 16;
            int nh = n - h * 16;
            TR16_DECL;
#define PB_LD(i) r##i = (i < nh) ? _mm512_maskz_loadu_ps(lm, src + o[i]) : _mm512_setzero_ps();
            R16(PB_LD)
            TR16();
#define PB_ST(j) \
    if (j < w) _mm512_storeu_ps(dst + (int64_t)(pb + j) * A5_NR + h * 16, r##j);
            R16(PB_ST)
        }
    }
}
#endif /* DP_GEMM_X86 */

/* ------------------------------------------------------------ kernel choice */
static const kern k_portable = {"portable", P_MR, P_NR, 128, 256, ukr_portable, NULL, NULL, NULL};
#ifdef DP_GEMM_X86
static const kern k_avx2 = {"avx2", A2_MR, A2_NR, 168, 256, ukr_avx2, pack_a_rows_avx2, pack_a_cols_avx2, NULL};
static const kern k_avx512 = {"avx512",           A5_MR, A5_NR, 168, 512, ukr_avx512, pack_a_rows_avx512, pack_a_cols_avx512,
                              pack_bt_rows_avx512};
#endif

static const kern *const all_kernels[] = {
#ifdef DP_GEMM_X86
    &k_avx512, &k_avx2,
#endif
    &k_portable,
};

static int cpu_can(const kern *k) {
#ifdef DP_GEMM_X86
    __builtin_cpu_init();
    if (k == &k_avx512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    if (k == &k_avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return k == &k_portable;
}

static const kern *find_kernel(const char *name) {
    for (size_t i = 0; i < sizeof all_kernels / sizeof all_kernels[0]; i++)
        if (name && !strcmp(all_kernels[i]->name, name)) return all_kernels[i];
    return NULL;
}

static const kern *volatile g_kern;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* dp_kernel_level's answer, cached: the vector helpers ask once per short row. */
static _Atomic int g_level = -1;

static int level_of(const kern *k) {
#ifdef DP_GEMM_X86
    if (k == &k_avx512) return 2;
    if (k == &k_avx2) return 1;
#endif
    (void)k;
    return 0;
}

static void pick_kernel(void) {
    const kern *best = &k_portable;
    for (size_t i = 0; i < sizeof all_kernels / sizeof all_kernels[0]; i++)
        if (cpu_can(all_kernels[i])) {
            best = all_kernels[i]; /* the list is ordered best first */
            break;
        }
    const kern *forced = find_kernel(getenv("DP_KERNEL"));
    if (forced && cpu_can(forced)) best = forced;
    g_kern = best;
    atomic_store_explicit(&g_level, level_of(best), memory_order_relaxed);
}

static const kern *current(void) {
    pthread_once(&g_once, pick_kernel);
    return g_kern;
}

const char *dp_gemm_kernel_name(void) { return current()->name; }

int dp_kernel_level(void) {
    int l = atomic_load_explicit(&g_level, memory_order_relaxed);
    return l >= 0 ? l : level_of(current());
}

int dp_gemm_set_kernel(const char *name) {
    current();
    const kern *k = find_kernel(name);
    if (!k || !cpu_can(k)) return 0;
    g_kern = k;
    atomic_store_explicit(&g_level, level_of(k), memory_order_relaxed);
    return 1;
}

/* ------------------------------------------------------------ packing */
/* A then B's packing buffer of this thread, on the heap: as _Thread_local
 * arrays they were 650 KiB of static TLS, which glibc puts on every thread's
 * stack — a process linking doppel could then create no thread with a stack
 * under ~1 MiB (measured: 512 KiB failed). The key's destructor frees a
 * thread's block when it exits. */
#define PACK_A_FLOATS (MC_MAX * KC_MAX)
#define PACK_FLOATS (PACK_A_FLOATS + KC_MAX * NC)
static _Thread_local float *tl_pack;
static pthread_key_t g_pack_key;
static pthread_once_t g_pack_once = PTHREAD_ONCE_INIT;
static int g_pack_key_ok;
static void pack_key_make(void) { g_pack_key_ok = pthread_key_create(&g_pack_key, free) == 0; }

int dp_gemm_thread_ready(void) {
    if (tl_pack) return 1;
    pthread_once(&g_pack_once, pack_key_make);
    float *p = aligned_alloc(64, sizeof(float) * PACK_FLOATS);
    if (!p) return 0;
    if (!g_pack_key_ok || pthread_setspecific(g_pack_key, p) != 0) {
        free(p);
        return 0;
    }
    tl_pack = p;
    return 1;
}

/* The graph's passes and the pool's workers (at dp_pool_new) call
 * dp_gemm_thread_ready first and report DP_ERR_NOMEM; this is for the other
 * callers (tools, tests), where nothing could carry the failure back. */
static float *pack_buffers(void) {
    if (!tl_pack && !dp_gemm_thread_ready()) {
        fprintf(stderr, "doppel: out of memory for the GEMM's packing buffers (%zu KiB)\n",
                sizeof(float) * PACK_FLOATS / 1024);
        abort();
    }
    return tl_pack;
}

/* mc rows split into ceil(mc/mr) panels of nearly equal height (16 rows are
 * two panels of 8, not 14 + 2: a 2-row micro-kernel is load-bound). */
static void panel(int mc, int mr, int i, int *start, int *h) {
    int np = (mc + mr - 1) / mr, base = mc / np, rem = mc % np;
    *start = i * base + (i < rem ? i : rem);
    *h = base + (i < rem);
}

/* op(A)[i0.., p0..] (mc x kc) into mr-high panels: dst[panel][p][i], zero-padded. */
static void pack_a(const kern *kr, int ta, const float *A, int64_t lda, int64_t i0, int mc, int64_t p0, int kc, float *dst) {
    const int mr = kr->mr, np = (mc + mr - 1) / mr;
    for (int pi = 0; pi < np; pi++, dst += (int64_t)kc * mr) {
        int ip, m;
        panel(mc, mr, pi, &ip, &m);
        if (!ta && kr->pack_a_rows) {
            kr->pack_a_rows(A + (i0 + ip) * lda + p0, lda, m, kc, dst);
            continue;
        }
        if (ta && kr->pack_a_cols) {
            kr->pack_a_cols(A + p0 * lda + i0 + ip, lda, m, kc, dst);
            continue;
        }
        if (!ta) {
            /* One cache line of every row at a time (and a prefetch a few
             * lines ahead): the rows' misses overlap instead of queueing. */
            for (int pb = 0; pb < kc; pb += 16) {
                int pe = kc - pb < 16 ? kc : pb + 16;
                for (int i = 0; i < m; i++) {
                    const float *src = A + (i0 + ip + i) * lda + p0;
                    __builtin_prefetch(src + pb + 128, 0, 2);
                    for (int p = pb; p < pe; p++) dst[p * mr + i] = src[p];
                }
            }
        } else {
            for (int p = 0; p < kc; p++) {
                const float *src = A + (p0 + p) * lda + i0 + ip;
                for (int i = 0; i < m; i++) dst[p * mr + i] = src[i];
            }
        }
        if (m < mr)
            for (int p = 0; p < kc; p++)
                for (int i = m; i < mr; i++) dst[p * mr + i] = 0.0f;
    }
}

/* Start of row r of the stored B. */
static inline const float *brow(const float *B, int64_t ldb, const int64_t *boff, int64_t r) {
    return boff ? B + boff[r] : B + r * ldb;
}

/* op(B)[p0.., j0..] (kc x nc) into nr-wide panels: dst[panel][p][j], zero-padded. */
static void pack_b(const kern *kr, int tb, const float *B, int64_t ldb, const int64_t *boff, int64_t p0, int kc,
                   int64_t j0, int nc, float *dst) {
    const int nr = kr->nr;
    for (int jp = 0; jp < nc; jp += nr, dst += (int64_t)kc * nr) {
        int n = nc - jp < nr ? nc - jp : nr;
        if (tb && kr->pack_bt_rows) {
            if (boff)
                kr->pack_bt_rows(B + p0, 0, boff + j0 + jp, n, kc, dst);
            else
                kr->pack_bt_rows(B + (j0 + jp) * ldb + p0, ldb, NULL, n, kc, dst);
            continue;
        }
        if (!tb) {
            for (int p = 0; p < kc; p++) {
                const float *src = brow(B, ldb, boff, p0 + p) + j0 + jp;
                float *d = dst + p * nr;
                memcpy(d, src, sizeof(float) * (size_t)n);
                for (int j = n; j < nr; j++) d[j] = 0.0f;
            }
        } else {
            /* Four source rows at a time keep four read streams and write whole
             * 16-byte groups of each packed row. */
            int j = 0;
            for (; j + 4 <= n; j += 4) {
                const float *s0 = brow(B, ldb, boff, j0 + jp + j) + p0, *s1 = brow(B, ldb, boff, j0 + jp + j + 1) + p0;
                const float *s2 = brow(B, ldb, boff, j0 + jp + j + 2) + p0, *s3 = brow(B, ldb, boff, j0 + jp + j + 3) + p0;
                for (int p = 0; p < kc; p++) {
                    float *d = dst + p * nr + j;
                    d[0] = s0[p];
                    d[1] = s1[p];
                    d[2] = s2[p];
                    d[3] = s3[p];
                }
            }
            for (; j < n; j++) {
                const float *s = brow(B, ldb, boff, j0 + jp + j) + p0;
                for (int p = 0; p < kc; p++) dst[p * nr + j] = s[p];
            }
            if (n < nr)
                for (int p = 0; p < kc; p++)
                    for (int jj = n; jj < nr; jj++) dst[p * nr + jj] = 0.0f;
        }
    }
}

/* C = beta * C (beta 0 writes zeros, never reads C). */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    if (beta == 1.0f) return;
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            memset(c, 0, sizeof(float) * (size_t)N);
        else
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
}

/* ------------------------------------------------------------ driver */
/* Rows of A as packed: every full block of mc rows, then the last block's panels of mr. */
static int64_t packed_rows(const kern *kr, int64_t M) {
    int64_t full = M / kr->mc * kr->mc;
    return full + (M - full + kr->mr - 1) / kr->mr * kr->mr;
}

/* B's stored rows start at B + r*ldb, or at B + boff[r] when boff != NULL.
 * apk: A packed beforehand by dp_sgemm_pack_a (then A is not read): the block
 * of K slice pc and row block ic starts at pc * packed_rows + ic * kc. */
static void gemm_st_cb(const kern *kr, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, const int64_t *boff, dp_bpanel_fn fill, void *arg,
                       const float *apk, const float *bpk, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    float *ap = pack_buffers(), *bp = ap + PACK_A_FLOATS;
    const int mr = kr->mr, nr = kr->nr;
    /* With a single row panel, packed B would be read only once: let the
     * micro-kernel read B's rows in place instead. */
    const int direct_b = !fill && !bpk && !tb && M <= mr;
    for (int64_t jc = 0; jc < N; jc += NC) {
        int nc = (int)(N - jc < NC ? N - jc : NC);
        for (int64_t pc = 0; pc < K; pc += kr->kc) {
            int kc = (int)(K - pc < kr->kc ? K - pc : kr->kc);
            float bet = pc == 0 ? beta : 1.0f;
            const float *bsrc = bpk ? bpk + jc * kc : bp; /* bpk: packed by the caller, one K slice (K <= kc) */
            if (fill)
                for (int jp = 0; jp < nc; jp += nr) fill(arg, pc, kc, jc + jp, nc - jp < nr ? nc - jp : nr, nr, bp + (int64_t)(jp / nr) * kc * nr);
            else if (!direct_b && !bpk)
                pack_b(kr, tb, B, ldb, boff, pc, kc, jc, nc, bp);
            for (int64_t ic = 0; ic < M; ic += kr->mc) {
                int mc = (int)(M - ic < kr->mc ? M - ic : kr->mc), np = (mc + mr - 1) / mr;
                const float *apan = ap;
                if (apk)
                    apan = apk + pc * packed_rows(kr, M) + ic * kc;
                else
                    pack_a(kr, ta, A, lda, ic, mc, pc, kc, ap);
                for (int pi = 0; pi < np; pi++) {
                    int ir, m;
                    panel(mc, mr, pi, &ir, &m);
                    const float *a = apan + (int64_t)pi * kc * mr;
                    float *c = C + (ic + ir) * ldc + jc;
                    for (int jr = 0; jr < nc; jr += nr) {
                        int n = nc - jr < nr ? nc - jr : nr;
                        if (direct_b)
                            kr->ukr(kc, a, boff ? B + jc + jr : B + pc * ldb + jc + jr, ldb, boff ? boff + pc : NULL,
                                    c + jr, ldc, alpha, bet, NULL, m, n);
                        else
                            kr->ukr(kc, a, bsrc + (int64_t)(jr / nr) * kc * nr, nr, NULL, c + jr, ldc, alpha, bet, NULL, m,
                                    n);
                    }
                }
            }
        }
    }
}

static void gemm_st(const kern *kr, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, const int64_t *boff, float beta, float *C, int64_t ldc) {
    gemm_st_cb(kr, ta, tb, M, N, K, alpha, A, lda, B, ldb, boff, NULL, NULL, NULL, NULL, beta, C, ldc);
}

void dp_sgemm_bpanel_st(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, dp_bpanel_fn fill, void *arg,
                        float beta, float *C, int64_t ldc) {
    gemm_st_cb(current(), 0, 0, M, N, K, 1.0f, A, lda, NULL, 0, NULL, fill, arg, NULL, NULL, beta, C, ldc);
}

int64_t dp_sgemm_packed_a_floats(int64_t M, int64_t K) { return M > 0 && K > 0 ? packed_rows(current(), M) * K : 0; }

void dp_sgemm_pack_a(int64_t M, int64_t K, const float *A, int64_t lda, float *dst) {
    const kern *kr = current();
    const int64_t rows = packed_rows(kr, M);
    for (int64_t pc = 0; pc < K; pc += kr->kc) {
        int kc = (int)(K - pc < kr->kc ? K - pc : kr->kc);
        for (int64_t ic = 0; ic < M; ic += kr->mc) {
            int mc = (int)(M - ic < kr->mc ? M - ic : kr->mc);
            pack_a(kr, 0, A, lda, ic, mc, pc, kc, dst + pc * rows + ic * kc);
        }
    }
}

int64_t dp_sgemm_pack_a_panels(int64_t M) {
    const kern *kr = current();
    return M <= 0 ? 0 : M / kr->mc * ((kr->mc + kr->mr - 1) / kr->mr) + (M % kr->mc + kr->mr - 1) / kr->mr;
}

void dp_sgemm_pack_a_rows(int64_t M, int64_t K, int64_t q0, int64_t q1, int nmat, dp_arows_fn fn, void *arg,
                          float *tmp, float *dst, int64_t dst_stride) {
    const kern *kr = current();
    const int64_t rows = packed_rows(kr, M);
    assert(kr->mr <= DP_GEMM_MR_MAX);
    int64_t g = 0; /* the panel's number */
    for (int64_t ic = 0; ic < M; ic += kr->mc) {
        const int mc = (int)(M - ic < kr->mc ? M - ic : kr->mc), np = (mc + kr->mr - 1) / kr->mr;
        for (int pi = 0; pi < np; pi++, g++) {
            if (g < q0 || g >= q1) continue;
            int ip, m;
            panel(mc, kr->mr, pi, &ip, &m);
            fn(arg, ic + ip, m, tmp);
            for (int j = 0; j < nmat; j++)
                for (int64_t pc = 0; pc < K; pc += kr->kc) { /* one panel: pack_a of an m-row block */
                    const int kc = (int)(K - pc < kr->kc ? K - pc : kr->kc);
                    pack_a(kr, 0, tmp + (int64_t)j * m * K, K, 0, m, pc, kc,
                           dst + j * dst_stride + pc * rows + ic * kc + (int64_t)pi * kc * kr->mr);
                }
        }
    }
}

int dp_sgemm_kc(void) { return current()->kc; }
int dp_sgemm_kc_max(void) { return KC_MAX; }
int dp_sgemm_nr(void) { return current()->nr; }
const float *dp_sgemm_packed_a_slice(const float *apacked, int64_t M, int64_t p0) {
    return apacked + p0 * packed_rows(current(), M);
}
void dp_sgemm_packed_ab_st(int64_t M, int64_t N, int64_t K, const float *apacked, const float *bpacked, float beta,
                           float *C, int64_t ldc) {
    assert(K <= current()->kc);
    gemm_st_cb(current(), 0, 0, M, N, K, 1.0f, NULL, 0, NULL, 0, NULL, NULL, NULL, apacked, bpacked, beta, C, ldc);
}

void dp_sgemm_st(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_st(current(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
}

void dp_sgemm_st_boff(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, const int64_t *boff, float beta, float *C, int64_t ldc) {
    gemm_st(current(), trans_a, trans_b, M, N, K, alpha, A, lda, B, 0, boff, beta, C, ldc);
}

/* C = op(A) B one block of rows at a time, for a product consumed row block
 * by row block (the col2im of a convolution's input gradient): B (K x N,
 * K <= kc, N <= NC) is packed once, each block of up to mc rows is written to
 * C rows [0, m) and handed to done(arg, i0, m) before the next overwrites it.
 * Without this, a caller that cuts M into slices re-packs B for each slice. */
static void rowblocks_st(int trans_a, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                         int64_t ldb, dp_bpanel_fn fill, void *farg, float *C, int64_t ldc,
                         void (*done)(void *arg, int64_t i0, int64_t m), void *arg) {
    const kern *kr = current();
    _Static_assert(MC_MAX == DP_GEMM_ROWBLOCK, "row blocks are at most MC_MAX rows");
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || K > kr->kc || N > NC) { /* outside the one-panel case: plain products per block */
        for (int64_t i0 = 0; i0 < M; i0 += kr->mc) {
            int64_t m = M - i0 < kr->mc ? M - i0 : kr->mc;
            gemm_st_cb(kr, trans_a, 0, m, N, K, 1.0f, trans_a ? A + i0 : A + i0 * lda, lda, B, ldb, NULL, fill, farg,
                       NULL, NULL, 0.0f, C, ldc);
            done(arg, i0, m);
        }
        return;
    }
    float *ap = pack_buffers(), *bp = ap + PACK_A_FLOATS;
    const int mr = kr->mr, nr = kr->nr, kc = (int)K, nc = (int)N;
    if (fill)
        for (int jp = 0; jp < nc; jp += nr) fill(farg, 0, kc, jp, nc - jp < nr ? nc - jp : nr, nr, bp + (int64_t)(jp / nr) * kc * nr);
    else
        pack_b(kr, 0, B, ldb, NULL, 0, kc, 0, nc, bp);
    for (int64_t ic = 0; ic < M; ic += kr->mc) {
        int mc = (int)(M - ic < kr->mc ? M - ic : kr->mc), np = (mc + mr - 1) / mr;
        pack_a(kr, trans_a, A, lda, ic, mc, 0, kc, ap);
        for (int pi = 0; pi < np; pi++) {
            int ir, m;
            panel(mc, mr, pi, &ir, &m);
            for (int jr = 0; jr < nc; jr += nr)
                kr->ukr(kc, ap + (int64_t)pi * kc * mr, bp + (int64_t)(jr / nr) * kc * nr, nr, NULL, C + ir * ldc + jr, ldc,
                        1.0f, 0.0f, NULL, m, nc - jr < nr ? nc - jr : nr);
        }
        done(arg, ic, mc);
    }
}

void dp_sgemm_rowblocks_st(int trans_a, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                           int64_t ldb, float *C, int64_t ldc, void (*done)(void *arg, int64_t i0, int64_t m), void *arg) {
    rowblocks_st(trans_a, M, N, K, A, lda, B, ldb, NULL, NULL, C, ldc, done, arg);
}

void dp_sgemm_rowblocks_fill_st(int trans_a, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, dp_bpanel_fn fill,
                                void *farg, float *C, int64_t ldc, void (*done)(void *arg, int64_t i0, int64_t m), void *arg) {
    rowblocks_st(trans_a, M, N, K, A, lda, NULL, 0, fill, farg, C, ldc, done, arg);
}

/* Row-tiled variant for stride-1 convolutions: for each r < rows,
 * C + r*ldcr (M x N, row stride ldc) = alpha A B_r + beta C + bias, where row p
 * of B_r starts at B + r*ldbr + boff[p]. A is packed once for all rows, B is
 * read in place (its rows are a padded image band, already in cache) and the
 * tiles never cross r, so C can be the strided output itself. */
static void rows_st(const kern *kr, int64_t rows, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldbr, const int64_t *boff, float beta, const float *bias,
                    float *C, int64_t ldc, int64_t ldcr) {
    float *ap = pack_buffers();
    const int mr = kr->mr, nr = kr->nr;
    for (int64_t ic = 0; ic < M; ic += kr->mc) {
        int mc = (int)(M - ic < kr->mc ? M - ic : kr->mc), np = (mc + mr - 1) / mr;
        for (int64_t pc = 0; pc < K; pc += kr->kc) {
            int kc = (int)(K - pc < kr->kc ? K - pc : kr->kc);
            float bet = pc == 0 ? beta : 1.0f;
            const float *bi = pc == 0 && bias ? bias + ic : NULL;
            pack_a(kr, 0, A, lda, ic, mc, pc, kc, ap);
            for (int64_t r = 0; r < rows; r++) {
                const float *br = B + r * ldbr;
                float *cr = C + r * ldcr + ic * ldc;
                for (int64_t jr = 0; jr < N; jr += nr) {
                    int n = N - jr < nr ? (int)(N - jr) : nr;
                    for (int pi = 0; pi < np; pi++) { /* the B tile stays in L1 across the panels */
                        int ir, m;
                        panel(mc, mr, pi, &ir, &m);
                        kr->ukr(kc, ap + (int64_t)pi * kc * mr, br + jr, 0, boff + pc, cr + ir * ldc + jr, ldc, alpha, bet,
                                bi ? bi + ir : NULL, m, n);
                    }
                }
            }
        }
    }
}

void dp_sgemm_rows_st(int64_t rows, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                      int64_t ldbr, const int64_t *boff, float beta, const float *bias, float *C, int64_t ldc,
                      int64_t ldcr) {
    if (rows <= 0 || M <= 0 || N <= 0 || K <= 0) return;
    rows_st(current(), rows, M, N, K, 1.0f, A, lda, B, ldbr, boff, beta, bias, C, ldc, ldcr);
}

/* ------------------------------------------------------------ C += A B^T, small M */
/* For a weight gradient like dW[o][k] += sum_j dY[o][j] X_k[j], both operands
 * are contiguous along the reduction: dot products need no packing (a packed
 * B^T would cost a transpose per element, as much as the FMAs for small M).
 * Blocks of DM rows of A and DN rows of B keep DM*DN vector accumulators;
 * the reduction runs in chunks that keep the A rows in L1. */
#define DOT_KCH 1024

/* 2 rows of A by 2 of B at a time, products exact and summed in double (see
 * the portable micro-kernel); a row past M or N repeats the last one and is
 * computed, not stored. */
static void dot_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                         const int64_t *boff, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i += 2) {
        const float *a0 = A + i * lda, *a1 = i + 1 < M ? a0 + lda : a0;
        for (int64_t n = 0; n < N; n += 2) {
            const float *b0 = brow(B, ldb, boff, n), *b1 = n + 1 < N ? brow(B, ldb, boff, n + 1) : b0;
            pd4 s00 = {0}, s01 = {0}, s10 = {0}, s11 = {0};
            int64_t j = 0;
            for (; j + 4 <= K; j += 4) {
                pd4 x0, x1, y0, y1;
                p_ld4(a0 + j, &x0);
                p_ld4(a1 + j, &x1);
                p_ld4(b0 + j, &y0);
                p_ld4(b1 + j, &y1);
                s00 += x0 * y0;
                s01 += x0 * y1;
                s10 += x1 * y0;
                s11 += x1 * y1;
            }
            double r00 = (s00[0] + s00[2]) + (s00[1] + s00[3]), r01 = (s01[0] + s01[2]) + (s01[1] + s01[3]);
            double r10 = (s10[0] + s10[2]) + (s10[1] + s10[3]), r11 = (s11[0] + s11[2]) + (s11[1] + s11[3]);
            for (; j < K; j++) {
                r00 += (double)a0[j] * b0[j];
                r01 += (double)a0[j] * b1[j];
                r10 += (double)a1[j] * b0[j];
                r11 += (double)a1[j] * b1[j];
            }
            float *c0 = C + i * ldc + n;
            c0[0] += (float)r00;
            if (n + 1 < N) c0[1] += (float)r01;
            if (i + 1 < M) {
                c0[ldc] += (float)r10;
                if (n + 1 < N) c0[ldc + 1] += (float)r11;
            }
        }
    }
}

#ifdef DP_GEMM_X86
#define D5_M 8
#define D5_N 3
#define D5_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
/* rows of A past M and of B past N point at row 0 and are computed, not stored */
T_AVX512 static void dot_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                                int64_t ldb, const int64_t *boff, float *C, int64_t ldc) {
    for (int64_t k0 = 0; k0 < K; k0 += DOT_KCH) {
        int64_t kc = K - k0 < DOT_KCH ? K - k0 : DOT_KCH;
        for (int64_t i0 = 0; i0 < M; i0 += D5_M) {
            const float *ar[D5_M];
            for (int i = 0; i < D5_M; i++) ar[i] = A + (i0 + i < M ? i0 + i : i0) * lda + k0;
            for (int64_t n0 = 0; n0 < N; n0 += D5_N) {
                const float *b0 = brow(B, ldb, boff, n0) + k0;
                const float *b1 = brow(B, ldb, boff, n0 + 1 < N ? n0 + 1 : n0) + k0;
                const float *b2 = brow(B, ldb, boff, n0 + 2 < N ? n0 + 2 : n0) + k0;
#define D5_DECL(i) __m512 s##i##0 = _mm512_setzero_ps(), s##i##1 = _mm512_setzero_ps(), s##i##2 = _mm512_setzero_ps();
                D5_ROWS(D5_DECL)
                for (int64_t j = 0; j < kc; j += 16) {
                    __mmask16 m = (__mmask16)(kc - j >= 16 ? 0xFFFFu : (1u << (kc - j)) - 1u);
                    __m512 v0 = _mm512_maskz_loadu_ps(m, b0 + j), v1 = _mm512_maskz_loadu_ps(m, b1 + j);
                    __m512 v2 = _mm512_maskz_loadu_ps(m, b2 + j), av;
#define D5_FMA(i)                                       \
    av = _mm512_maskz_loadu_ps(m, ar[i] + j);           \
    s##i##0 = _mm512_fmadd_ps(av, v0, s##i##0);         \
    s##i##1 = _mm512_fmadd_ps(av, v1, s##i##1);         \
    s##i##2 = _mm512_fmadd_ps(av, v2, s##i##2);
                    D5_ROWS(D5_FMA)
                }
#define D5_ST(i)                                                                       \
    if (i0 + i < M) {                                                                  \
        float *cr = C + (i0 + i) * ldc + n0;                                           \
        cr[0] += _mm512_reduce_add_ps(s##i##0);                                        \
        if (n0 + 1 < N) cr[1] += _mm512_reduce_add_ps(s##i##1);                       \
        if (n0 + 2 < N) cr[2] += _mm512_reduce_add_ps(s##i##2);                        \
    }
                D5_ROWS(D5_ST)
            }
        }
    }
}

#define D2_M 4
#define D2_N 3
#define D2_ROWS(X) X(0) X(1) X(2) X(3)
T_AVX2 static float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
T_AVX2 static void dot_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                            const int64_t *boff, float *C, int64_t ldc) {
    for (int64_t k0 = 0; k0 < K; k0 += DOT_KCH) {
        int64_t kc = K - k0 < DOT_KCH ? K - k0 : DOT_KCH;
        for (int64_t i0 = 0; i0 < M; i0 += D2_M) {
            const float *ar[D2_M];
            for (int i = 0; i < D2_M; i++) ar[i] = A + (i0 + i < M ? i0 + i : i0) * lda + k0;
            for (int64_t n0 = 0; n0 < N; n0 += D2_N) {
                const float *b0 = brow(B, ldb, boff, n0) + k0;
                const float *b1 = brow(B, ldb, boff, n0 + 1 < N ? n0 + 1 : n0) + k0;
                const float *b2 = brow(B, ldb, boff, n0 + 2 < N ? n0 + 2 : n0) + k0;
#define D2_DECL(i) __m256 s##i##0 = _mm256_setzero_ps(), s##i##1 = _mm256_setzero_ps(), s##i##2 = _mm256_setzero_ps();
                D2_ROWS(D2_DECL)
                int64_t j = 0;
                for (; j + 8 <= kc; j += 8) {
                    __m256 v0 = _mm256_loadu_ps(b0 + j), v1 = _mm256_loadu_ps(b1 + j), v2 = _mm256_loadu_ps(b2 + j), av;
#define D2_FMA(i)                                       \
    av = _mm256_loadu_ps(ar[i] + j);                    \
    s##i##0 = _mm256_fmadd_ps(av, v0, s##i##0);         \
    s##i##1 = _mm256_fmadd_ps(av, v1, s##i##1);         \
    s##i##2 = _mm256_fmadd_ps(av, v2, s##i##2);
                    D2_ROWS(D2_FMA)
                }
#define D2_ST(i)                                                                            \
    if (i0 + i < M) {                                                                       \
        float *cr = C + (i0 + i) * ldc + n0, t0 = hsum_avx2(s##i##0), t1 = hsum_avx2(s##i##1); \
        float t2 = hsum_avx2(s##i##2);                                                      \
        for (int64_t q = j; q < kc; q++) {                                                  \
            t0 += ar[i][q] * b0[q], t1 += ar[i][q] * b1[q], t2 += ar[i][q] * b2[q];         \
        }                                                                                   \
        cr[0] += t0;                                                                        \
        if (n0 + 1 < N) cr[1] += t1;                                                        \
        if (n0 + 2 < N) cr[2] += t2;                                                        \
    }
                D2_ROWS(D2_ST)
            }
        }
    }
}
#endif

void dp_sgemm_nt_dot_st(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                        const int64_t *boff, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    switch (dp_kernel_level()) {
#ifdef DP_GEMM_X86
    case 2: dot_avx512(M, N, K, A, lda, B, ldb, boff, C, ldc); return;
    case 1: dot_avx2(M, N, K, A, lda, B, ldb, boff, C, ldc); return;
#endif
    default: dot_portable(M, N, K, A, lda, B, ldb, boff, C, ldc); return;
    }
}

/* ------------------------------------------------------------ threads */
typedef struct mt_job {
    const kern *kr;
    int ta, tb, split_n;
    int64_t M, N, K, blk;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
} mt_job;

/* Each part computes a slab of C: a range of columns (split_n) or rows. */
static void mt_part(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const mt_job *j = arg;
    if (j->split_n) {
        int64_t j0 = b * j->blk, j1 = e * j->blk < j->N ? e * j->blk : j->N;
        const float *B = j->tb ? j->B + j0 * j->ldb : j->B + j0;
        gemm_st(j->kr, j->ta, j->tb, j->M, j1 - j0, j->K, j->alpha, j->A, j->lda, B, j->ldb, NULL, j->beta, j->C + j0,
                j->ldc);
    } else {
        int64_t i0 = b * j->blk, i1 = e * j->blk < j->M ? e * j->blk : j->M;
        const float *A = j->ta ? j->A + i0 : j->A + i0 * j->lda;
        gemm_st(j->kr, j->ta, j->tb, i1 - i0, j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb, NULL, j->beta,
                j->C + i0 * j->ldc, j->ldc);
    }
}

/* One output column with both operands' rows contiguous (A x b, b a row of B^T:
 * a discriminator's last conv or a one-unit dense layer over the batch): dot
 * products. Packing A for the micro-kernel copied all of it for one column
 * (DCGAN-28's D.5 forward, K = 6272: 4.6x). Only for K >= 64: shorter rows
 * were not measured, so they stay on the GEMM. */
typedef struct gemv_job {
    const float *A, *B;
    float *C;
    int64_t K, lda, ldc;
    float alpha, beta;
} gemv_job;

static void gemv_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const gemv_job *j = arg;
    for (int64_t i = b; i < e; i++) {
        float v = j->alpha * dp_vec_dot(j->A + i * j->lda, j->B, j->K);
        j->C[i * j->ldc] = j->beta == 0.0f ? v : v + j->beta * j->C[i * j->ldc];
    }
}

void dp_sgemm(dp_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const kern *kr = current();
    int T = ctx ? ctx->threads : 1;
    if (N == 1 && !trans_a && trans_b && K >= 64) {
        gemv_job j = {A, B, C, K, lda, ldc, alpha, beta};
        if (T <= 1 || (double)M * (double)K < 1e6)
            gemv_rows(&j, 0, M, 0);
        else
            dp_parallel_for(ctx, M, gemv_rows, &j);
        return;
    }
    /* Below ~2 MFLOP the wake-up of the workers costs more than it saves. */
    if (T <= 1 || (double)M * (double)N * (double)K < 1e6) {
        gemm_st(kr, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
        return;
    }
    mt_job j = {kr, trans_a, trans_b, 0, M, N, K, 0, alpha, beta, A, B, lda, ldb, ldc, C};
    /* Each part packs all of the operand that is not split: pick the split
     * that packs less (the N-split repacks A once per NC block of its slab). */
    double nblk_n = (double)((N / T + NC - 1) / NC);
    double cost_n = (double)M * (double)K * nblk_n + (double)K * (double)N / T;
    double cost_m = (double)M * (double)K / T * (double)((N + NC - 1) / NC) + (double)K * (double)N;
    if ((cost_n <= cost_m && N >= 2 * kr->nr) || M < 2 * kr->mr) {
        j.split_n = 1;
        j.blk = kr->nr;
        dp_parallel_for(ctx, (N + j.blk - 1) / j.blk, mt_part, &j);
    } else {
        j.blk = kr->mr;
        dp_parallel_for(ctx, (M + j.blk - 1) / j.blk, mt_part, &j);
    }
}
