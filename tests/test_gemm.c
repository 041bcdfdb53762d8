/* dp_sgemm / dp_sgemm_st against a naive triple loop, for every micro-kernel
 * this CPU can run: odd sizes (edges in every dimension), transposes,
 * alpha/beta, leading dimensions larger than the matrix, beta = 0 over NaN;
 * and the convolution entry points (B rows through offsets, row-tiled
 * products with a bias, unpacked A B^T dot products). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    {37, 1, 300}, /* one column, K >= 64: the dot-product path when B is transposed */
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
            assert_int_equal(check(ctx, t & 1, t >> 1, 1000, 1, 1100, 1.0f, 0.5f, 1, 0), 0); /* threaded dot products */
            assert_int_equal(check(ctx, t & 1, t >> 1, 600, 600, 40, 1.0f, 1.0f, 5, 0), 0);
        }
    }
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ the conv entry points */
/* Rows of a stored matrix scattered in a bigger buffer (with gaps), to be read through offsets. */
static float *scatter_rows(const float *dense, int64_t rows, int64_t cols, int64_t **offs_out, uint64_t seed) {
    dp_rng r;
    dp_rng_seed(&r, seed);
    int64_t *offs = malloc(sizeof(int64_t) * (size_t)rows);
    int64_t pos = 3;
    for (int64_t i = 0; i < rows; i++) {
        offs[i] = pos;
        pos += cols + (int64_t)dp_rng_below(&r, 9);
    }
    float *buf = malloc(sizeof(float) * (size_t)(pos + 1));
    for (int64_t i = 0; i < pos + 1; i++) buf[i] = NAN; /* gaps are never read */
    for (int64_t i = 0; i < rows; i++) memcpy(buf + offs[i], dense + i * cols, sizeof(float) * (size_t)cols);
    *offs_out = offs;
    return buf;
}

static int close_to(const float *got, const float *want, int64_t n, float tol, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= tol)) {
            printf("  %s (%s): [%lld] = %g, want %g\n", what, dp_gemm_kernel_name(), (long long)i, got[i], want[i]);
            return 0;
        }
    return 1;
}

static int check_boff(int tb, int64_t M, int64_t N, int64_t K, float beta) {
    int64_t br = tb ? N : K, bc = tb ? K : N;
    float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(br * bc));
    float *C = malloc(sizeof(float) * (size_t)(M * N)), *R = malloc(sizeof(float) * (size_t)(M * N));
    fill(A, M * K, 5), fill(B, br * bc, 6), fill(C, M * N, 7);
    memcpy(R, C, sizeof(float) * (size_t)(M * N));
    int64_t *offs;
    float *Bs = scatter_rows(B, br, bc, &offs, 8);
    naive(0, tb, M, N, K, 1.0f, A, K, B, bc, beta, R, N);
    dp_sgemm_st_boff(0, tb, M, N, K, 1.0f, A, K, Bs, offs, beta, C, N);
    int ok = close_to(C, R, M * N, 1e-4f * (float)K + 1e-5f, tb ? "boff tb" : "boff");
    free(A), free(B), free(C), free(R), free(Bs), free(offs);
    return ok;
}

static int check_rows(int64_t rows, int64_t M, int64_t N, int64_t K, float beta, int bias) {
    int64_t ldbr = N + 5, ldc = rows * N + 3, ldcr = N; /* C: M rows of stride ldc, each holding rows blocks of N */
    float *A = malloc(sizeof(float) * (size_t)(M * K));
    float *B = malloc(sizeof(float) * (size_t)(K * ldbr * (rows + 1)));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc)), *R = malloc(sizeof(float) * (size_t)(M * ldc));
    float *bv = malloc(sizeof(float) * (size_t)M), *Bd = malloc(sizeof(float) * (size_t)(K * N));
    fill(A, M * K, 9), fill(B, K * ldbr * (rows + 1), 10), fill(C, M * ldc, 11), fill(bv, M, 12);
    if (beta == 0.0f)
        for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN;
    memcpy(R, C, sizeof(float) * (size_t)(M * ldc));
    /* B_r row p = B + r*ldbr + boff[p]; boff[p] = p * (ldbr * 2 + 1) reads overlapping, shifted rows */
    int64_t *boff = malloc(sizeof(int64_t) * (size_t)K);
    for (int64_t p = 0; p < K; p++) boff[p] = (p * 7) % (K * (ldbr / 2)) + p % 3;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t p = 0; p < K; p++) memcpy(Bd + p * N, B + r * ldbr + boff[p], sizeof(float) * (size_t)N);
        naive(0, 0, M, N, K, 1.0f, A, K, Bd, N, beta, R + r * ldcr, ldc);
        if (bias)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) R[i * ldc + r * ldcr + j] += bv[i];
    }
    dp_sgemm_rows_st(rows, M, N, K, A, K, B, ldbr, boff, beta, bias ? bv : NULL, C, ldc, ldcr);
    int ok = 1;
    for (int64_t i = 0; i < M && ok; i++) /* only the written part: the 3 extra floats per row are NaN or untouched */
        ok = close_to(C + i * ldc, R + i * ldc, rows * N, 1e-4f * (float)K + 1e-5f, "rows");
    free(A), free(B), free(C), free(R), free(bv), free(Bd), free(boff);
    return ok;
}

static int check_dot(int64_t M, int64_t N, int64_t K, int use_offs) {
    float *A = malloc(sizeof(float) * (size_t)(M * (K + 2))), *B = malloc(sizeof(float) * (size_t)(N * (K + 1)));
    float *C = malloc(sizeof(float) * (size_t)(M * (N + 1))), *R = malloc(sizeof(float) * (size_t)(M * (N + 1)));
    fill(A, M * (K + 2), 13), fill(B, N * (K + 1), 14), fill(C, M * (N + 1), 15);
    memcpy(R, C, sizeof(float) * (size_t)(M * (N + 1)));
    naive(0, 1, M, N, K, 1.0f, A, K + 2, B, K + 1, 1.0f, R, N + 1);
    int64_t *offs = NULL;
    float *Bs = NULL;
    if (use_offs) {
        float *Bd = malloc(sizeof(float) * (size_t)(N * K));
        for (int64_t n = 0; n < N; n++) memcpy(Bd + n * K, B + n * (K + 1), sizeof(float) * (size_t)K);
        Bs = scatter_rows(Bd, N, K, &offs, 16);
        free(Bd);
        dp_sgemm_nt_dot_st(M, N, K, A, K + 2, Bs, 0, offs, C, N + 1);
    } else {
        dp_sgemm_nt_dot_st(M, N, K, A, K + 2, B, K + 1, NULL, C, N + 1);
    }
    int ok = close_to(C, R, M * (N + 1), 1e-4f * (float)K + 1e-5f, "dot");
    free(A), free(B), free(C), free(R), free(Bs), free(offs);
    return ok;
}

/* dp_sgemm_rowblocks_st: every block of rows handed over is op(A) B's, in order, and covers M. */
typedef struct rb_check {
    const float *R; /* the reference product, M x N */
    const float *C; /* the block buffer */
    int64_t N, ldc, next;
    int ok;
} rb_check;

static void rb_done(void *arg, int64_t i0, int64_t m) {
    rb_check *r = arg;
    if (i0 != r->next || m < 1 || m > DP_GEMM_ROWBLOCK) r->ok = 0;
    for (int64_t i = 0; i < m && r->ok; i++)
        for (int64_t j = 0; j < r->N; j++) {
            float want = r->R[(i0 + i) * r->N + j], got = r->C[i * r->ldc + j];
            if (!(fabsf(got - want) <= 1e-4f * (1.0f + fabsf(want)))) {
                printf("  rowblocks row %lld col %lld: %g vs %g\n", (long long)(i0 + i), (long long)j, got, want);
                r->ok = 0;
                break;
            }
        }
    r->next = i0 + m;
}

static int check_rowblocks(int ta, int64_t M, int64_t N, int64_t K) {
    int64_t lda = (ta ? M : K) + 3, ldb = N + 1, ldc = N + 5;
    float *A = malloc(sizeof(float) * (size_t)((ta ? K : M) * lda));
    float *B = malloc(sizeof(float) * (size_t)(K * ldb));
    float *R = malloc(sizeof(float) * (size_t)(M * N));
    float *C = malloc(sizeof(float) * (size_t)(DP_GEMM_ROWBLOCK * ldc));
    fill(A, (ta ? K : M) * lda, 5 + (uint64_t)M);
    fill(B, K * ldb, 6 + (uint64_t)N);
    for (int64_t i = 0; i < DP_GEMM_ROWBLOCK * ldc; i++) C[i] = NAN; /* never read */
    naive(ta, 0, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, R, N);
    rb_check r = {R, C, N, ldc, 0, 1};
    dp_sgemm_rowblocks_st(ta, M, N, K, A, lda, B, ldb, C, ldc, rb_done, &r);
    int ok = r.ok && r.next == M;
    if (!ok) printf("  rowblocks ta=%d M=%lld N=%lld K=%lld failed\n", ta, (long long)M, (long long)N, (long long)K);
    free(A), free(B), free(R), free(C);
    return ok;
}

/* B panels from a dense K x N matrix, for the fill entry points */
typedef struct dense_b {
    const float *B;
    int64_t N;
} dense_b;
static void dense_fill(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const dense_b *d = arg;
    for (int p = 0; p < kc; p++)
        for (int j = 0; j < nr; j++) dst[p * nr + j] = j < n ? d->B[(p0 + p) * d->N + j0 + j] : 0.0f;
}

/* dp_sgemm_pack_a, then dp_sgemm_packed_ab_st over K slices with B packed here: the same bits
 * as dp_sgemm_bpanel_st (the same packing, made once), and the naive product's values. */
typedef struct rows_src {
    const float *A;
    int64_t K;
} rows_src;
static void copy_rows(void *arg, int64_t i0, int m, float *tmp) {
    const rows_src *s = arg;
    memcpy(tmp, s->A + i0 * s->K, sizeof(float) * (size_t)(m * s->K));
}

static int check_packed_a(int64_t M, int64_t N, int64_t K, float beta) {
    float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
    float *C = malloc(sizeof(float) * (size_t)(M * N)), *C2 = malloc(sizeof(float) * (size_t)(M * N));
    float *R = malloc(sizeof(float) * (size_t)(M * N));
    int64_t np = dp_sgemm_packed_a_floats(M, K);
    float *Ap = malloc(sizeof(float) * (size_t)np);
    fill(A, M * K, 21), fill(B, K * N, 22), fill(C, M * N, 23);
    memcpy(C2, C, sizeof(float) * (size_t)(M * N));
    memcpy(R, C, sizeof(float) * (size_t)(M * N));
    assert_true(np >= M * K);
    naive(0, 0, M, N, K, 1.0f, A, K, B, N, beta, R, N);
    dense_b d = {B, N};
    dp_sgemm_pack_a(M, K, A, K, Ap);
    const int kcmax = dp_sgemm_kc(), nr = dp_sgemm_nr();
    const int64_t np_b = (N + nr - 1) / nr;
    float *Bp = malloc(sizeof(float) * (size_t)(np_b * nr * kcmax));
    for (int64_t p0 = 0; p0 < K; p0 += kcmax) {
        const int kc = (int)(K - p0 < kcmax ? K - p0 : kcmax);
        for (int64_t q = 0; q < np_b; q++)
            dense_fill(&d, p0, kc, q * nr, (int)(N - q * nr < nr ? N - q * nr : nr), nr, Bp + q * kc * nr);
        dp_sgemm_packed_ab_st(M, N, kc, dp_sgemm_packed_a_slice(Ap, M, p0), Bp, p0 ? 1.0f : beta, C, N);
    }
    free(Bp);
    dp_sgemm_bpanel_st(M, N, K, A, K, dense_fill, &d, beta, C2, N);
    int ok = close_to(C, R, M * N, 1e-4f * (float)K + 1e-5f, "packed A");
    if (ok && memcmp(C, C2, sizeof(float) * (size_t)(M * N)) != 0) {
        printf("  packed A (%s): not the bits of dp_sgemm_bpanel_st\n", dp_gemm_kernel_name());
        ok = 0;
    }
    /* made a row panel at a time: the same floats */
    float *Ap3 = malloc(sizeof(float) * (size_t)np), *rows = malloc(sizeof(float) * (size_t)(DP_GEMM_MR_MAX * K));
    rows_src rs = {A, K};
    const int64_t npan = dp_sgemm_pack_a_panels(M); /* in two ranges */
    dp_sgemm_pack_a_rows(M, K, 0, npan / 2, 1, copy_rows, &rs, rows, Ap3, 0);
    dp_sgemm_pack_a_rows(M, K, npan / 2, npan, 1, copy_rows, &rs, rows, Ap3, 0);
    if (ok && memcmp(Ap, Ap3, sizeof(float) * (size_t)np) != 0) {
        printf("  packed A (%s): dp_sgemm_pack_a_rows packs differently\n", dp_gemm_kernel_name());
        ok = 0;
    }
    free(Ap3), free(rows);
    free(A), free(B), free(C), free(C2), free(R), free(Ap);
    return ok;
}

static void conv_entry_points(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
        if (!dp_gemm_set_kernel(kernels[k])) continue;
        int ok = 1;
        for (int tb = 0; tb < 2; tb++) {
            ok &= check_boff(tb, 3, 37, 29, 0.0f);   /* one row panel: B read in place */
            ok &= check_boff(tb, 9, 70, 300, 1.0f);  /* K over one slice */
            ok &= check_boff(tb, 40, 33, 17, 0.5f);  /* several panels: B packed through the offsets */
        }
        ok &= check_rows(3, 8, 37, 27, 0.0f, 1);
        ok &= check_rows(2, 16, 32, 200, 1.0f, 0);
        ok &= check_rows(4, 5, 9, 300, 0.0f, 1); /* K over one slice: the bias only once */
        ok &= check_rows(1, 30, 64, 40, 1.0f, 1);
        ok &= check_dot(8, 27, 1500, 1);
        ok &= check_dot(16, 200, 100, 1);
        ok &= check_dot(3, 2, 17, 0);
        ok &= check_dot(13, 7, 1, 0);
        ok &= check_dot(1, 1, 2049, 1);
        for (int ta = 0; ta < 2; ta++) {
            ok &= check_rowblocks(ta, 400, 490, 128); /* B packed once, three blocks of rows */
            ok &= check_rowblocks(ta, 16, 37, 5);
            ok &= check_rowblocks(ta, 200, 70, 300);  /* K over one slice: products per block */
            ok &= check_rowblocks(ta, 50, 600, 64);   /* N over one block */
        }
        ok &= check_packed_a(300, 70, 600, 0.0f); /* a partial row block, K over two slices and a part */
        ok &= check_packed_a(169, 33, 257, 0.5f);
        ok &= check_packed_a(6, 16, 256, 1.0f);
        ok &= check_packed_a(1, 1, 1, 0.0f);
        ok &= check_packed_a(40, 600, 20, 0.0f);  /* N over one block: A reused, not repacked */
        assert_true(ok);
    }
}

/* DP_KERNEL picks the kernel when the process starts: run this test binary
 * again with it set and ask which kernel it got. */
static void env_var_forces_kernel(void **state) {
    (void)state;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        printf("  (no /proc/self/exe: skipped)\n");
        return;
    }
    self[len] = 0;
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
        if (!dp_gemm_set_kernel(kernels[k])) continue; /* not on this CPU */
        char cmd[4200], got[64] = "";
        snprintf(cmd, sizeof cmd, "DP_KERNEL=%s '%s' --kernel-name", kernels[k], self);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        if (!fgets(got, sizeof got, f)) got[0] = 0;
        pclose(f);
        got[strcspn(got, "\n")] = 0;
        assert_string_equal(got, kernels[k]);
    }
}

static void unknown_kernel_refused(void **state) {
    (void)state;
    const char *before = dp_gemm_kernel_name();
    assert_int_equal(dp_gemm_set_kernel("sse9"), 0);
    assert_int_equal(dp_gemm_set_kernel(NULL), 0);
    assert_string_equal(dp_gemm_kernel_name(), before);
    assert_int_equal(dp_gemm_set_kernel("portable"), 1); /* always available */
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--kernel-name")) { /* for env_var_forces_kernel */
        puts(dp_gemm_kernel_name());
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kernel_st),
        cmocka_unit_test(kernel_mt),
        cmocka_unit_test(conv_entry_points),
        cmocka_unit_test(env_var_forces_kernel),
        cmocka_unit_test(unknown_kernel_refused),
    };
    return cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
}
