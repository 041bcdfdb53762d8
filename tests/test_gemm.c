/* dp_sgemm / dp_sgemm_st against a naive triple loop, for every micro-kernel
 * this CPU can run: odd sizes (edges in every dimension), transposes,
 * alpha/beta, leading dimensions larger than the matrix, beta = 0 over NaN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "kernels/gemm.h"

static const char *const kernels[] = {"portable", "avx2", "avx512"};

static void naive(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t p = 0; p < K; p++) {
                double a = ta ? A[p * lda + i] : A[i * lda + p];
                double b = tb ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
            }
            double c = beta == 0.0f ? 0.0 : (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)(alpha * s + c);
        }
}

static void fill(float *x, int64_t n, uint64_t seed) {
    dp_rng r;
    dp_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = 2.0f * dp_rng_uniform(&r) - 1.0f;
}

/* One comparison; pad > 0 makes every leading dimension larger than needed. */
static int check(dp_ctx *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, int pad,
                 int nan_c) {
    int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int64_t lda = ac + pad, ldb = bc + pad, ldc = N + pad;
    float *A = malloc(sizeof(float) * (size_t)(ar * lda + 1));
    float *B = malloc(sizeof(float) * (size_t)(br * ldb + 1));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    float *R = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    fill(A, ar * lda, 1 + (uint64_t)M);
    fill(B, br * ldb, 2 + (uint64_t)N);
    fill(C, M * ldc, 3 + (uint64_t)K);
    if (nan_c)
        for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN;
    memcpy(R, C, sizeof(float) * (size_t)(M * ldc));
    naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    if (ctx)
        dp_sgemm(ctx, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        dp_sgemm_st(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    int bad = 0;
    for (int64_t i = 0; i < M && !bad; i++)
        for (int64_t j = 0; j < ldc; j++) {
            float got = C[i * ldc + j], want = R[i * ldc + j];
            if (j >= N) { /* the padding must be untouched */
                if (memcmp(&got, &want, sizeof got) != 0) bad = 1;
            } else if (!(fabsf(got - want) <= 1e-4f * (float)K + 1e-5f)) {
                bad = 1;
            }
            if (bad) {
                printf("  %s ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%d: C[%lld,%lld] = %g, want %g\n",
                       dp_gemm_kernel_name(), ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta, pad,
                       (long long)i, (long long)j, got, want);
                break;
            }
        }
    free(A);
    free(B);
    free(C);
    free(R);
    return bad;
}

static const int64_t sizes[][3] = {
    {1, 1, 1},   {7, 13, 5},   {65, 33, 129}, {14, 32, 256}, {15, 33, 257}, {3, 100, 2},
    {29, 17, 1}, {1, 70, 300}, {200, 9, 31},  {13, 31, 17},  {170, 530, 20}, {40, 1030, 7},
};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

static void run_kernel(const char *name, dp_ctx *ctx) {
    if (!dp_gemm_set_kernel(name)) {
        printf("  (kernel %s not supported on this CPU: skipped)\n", name);
        return;
    }
    int fails = 0;
    for (size_t s = 0; s < N_SIZES; s++)
        for (int t = 0; t < 4; t++) {
            int ta = t & 1, tb = t >> 1;
            int64_t M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
            fails += check(ctx, ta, tb, M, N, K, 1.0f, 0.0f, 0, 0);
            fails += check(ctx, ta, tb, M, N, K, -0.5f, 1.0f, 3, 0);
            fails += check(ctx, ta, tb, M, N, K, 2.0f, 0.25f, 1, 0);
            fails += check(ctx, ta, tb, M, N, K, 1.5f, 0.0f, 2, 1); /* beta 0: C's NaNs are never read */
        }
    /* Degenerate cases: K = 0 and alpha = 0 scale C by beta. */
    fails += check(ctx, 0, 0, 5, 7, 0, 1.0f, 0.5f, 1, 0);
    fails += check(ctx, 1, 1, 5, 7, 3, 0.0f, 0.0f, 1, 1);
    assert_string_equal(dp_gemm_kernel_name(), name);
    assert_int_equal(fails, 0);
}

static void kernel_st(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) run_kernel(kernels[k], NULL);
}

static void kernel_mt(void **state) {
    (void)state;
    dp_ctx *ctx = NULL;
    dp_ctx_opts o = {.threads = 3};
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) run_kernel(kernels[k], ctx);
    /* Large enough to take the threaded path, both ways of splitting. */
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
        if (!dp_gemm_set_kernel(kernels[k])) continue;
        for (int t = 0; t < 4; t++) {
            assert_int_equal(check(ctx, t & 1, t >> 1, 300, 97, 260, 1.0f, 0.5f, 1, 0), 0);
            assert_int_equal(check(ctx, t & 1, t >> 1, 45, 700, 130, 0.5f, 0.0f, 0, 1), 0);
            assert_int_equal(check(ctx, t & 1, t >> 1, 600, 600, 40, 1.0f, 1.0f, 5, 0), 0);
        }
    }
    dp_ctx_free(ctx);
}

static void unknown_kernel_refused(void **state) {
    (void)state;
    const char *before = dp_gemm_kernel_name();
    assert_int_equal(dp_gemm_set_kernel("sse9"), 0);
    assert_int_equal(dp_gemm_set_kernel(NULL), 0);
    assert_string_equal(dp_gemm_kernel_name(), before);
    assert_int_equal(dp_gemm_set_kernel("portable"), 1); /* always available */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kernel_st),
        cmocka_unit_test(kernel_mt),
        cmocka_unit_test(unknown_kernel_refused),
    };
    return cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
}
