/* The vector kernels of the non-GEMM ops (kernels/ew.h) and the ops built on
 * them, for every kernel variant this CPU can run (switched in process with
 * dp_gemm_set_kernel; DP_KERNEL checked in a child process):
 *   - each kernel against a straightforward loop (the ops' previous code),
 *     for odd lengths (every tail), ties and NaN in max-pool windows, special
 *     values of the activations and losses;
 *   - element-wise results bit-identical in every variant;
 *   - the ops through graphs (odd shapes, 3 threads) against reference loops,
 *     forward and input gradients, for the fast paths (same shape, per-channel
 *     broadcast, 2x2 / 4x4 pooling) and the general ones;
 *   - sums independent of the thread count (batch norm, losses, reductions,
 *     broadcast gradients) and repeatable;
 *   - the relu -> batch norm -> max-pool fusion of no_grad graphs: the same
 *     outputs as the unfused graph (Meso-4 and odd shapes), unfused in
 *     training mode, not applied where the pattern does not hold;
 *   - batch norm -> relu / leaky_relu fused in graphs with gradients: every
 *     value and gradient the unfused graph's, bit for bit. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/internal.h"
#include "kernels/ew.h"
#include "kernels/gemm.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the reference loops round as the kernels do */
#endif

static const char *const kernels[] = {"portable", "avx2", "avx512"};
#define N_KERNELS 3
static const int64_t lens[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100, 1031};
#define N_LENS (sizeof lens / sizeof lens[0])

static void fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    dp_rng r;
    dp_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * dp_rng_uniform(&r);
}
static float *fnew(int64_t n) { return malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)); }

/* |got - want| <= rel * |want| + abs, NaN only where NaN is wanted */
static int near(double got, double want, double rel, double abs_) {
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= rel * fabs(want) + abs_;
}
static int check_arr(const char *what, const float *got, const float *want, int64_t n, double rel, double abs_) {
    for (int64_t i = 0; i < n; i++)
        if (!near(got[i], want[i], rel, abs_)) {
            printf("  %s (%s) n=%lld: [%lld] = %.9g, want %.9g\n", what, dp_ew()->name, (long long)n, (long long)i,
                   (double)got[i], (double)want[i]);
            return 0;
        }
    return 1;
}
static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, sizeof(float) * (size_t)n) == 0; }

/* ------------------------------------------------------------ reference loops (the ops' previous code) */
static float ref_unary(int kind, float v, float p) {
    switch (kind) {
    case DP_EW_RELU: return v > 0.0f ? v : 0.0f;
    case DP_EW_LEAKY_RELU: return v > 0.0f ? v : v * p;
    case DP_EW_SCALE: return v * p;
    case DP_EW_TANH: return tanhf(v);
    default: return v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
    }
}
static float ref_unary_der(int kind, float v, float o, float p) {
    switch (kind) {
    case DP_EW_RELU: return v > 0.0f ? 1.0f : 0.0f;
    case DP_EW_LEAKY_RELU: return v > 0.0f ? 1.0f : p;
    case DP_EW_SCALE: return p;
    case DP_EW_TANH: return 1.0f - o * o;
    default: return o * (1.0f - o);
    }
}
static float ref_bin(int kind, float a, float b) {
    switch (kind) {
    case DP_EW_ADD: return a + b;
    case DP_EW_SUB: return a - b;
    case DP_EW_MUL: return a * b;
    default: return a / b;
    }
}
/* the value added to the gradient of operand wrt */
static float ref_bin_term(int kind, int wrt, float g, float a, float b) {
    switch (kind) {
    case DP_EW_ADD: return g;
    case DP_EW_SUB: return wrt ? -g : g;
    case DP_EW_MUL: return wrt ? g * a : g * b;
    default: return wrt ? -(g * a / (b * b)) : g / b;
    }
}
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
static inline float log_clamped(float v) { return fmaxf(logf(v), -100.0f); }
static double ref_loss(int kind, float x, float t) {
    switch (kind) {
    case DP_EW_BCE_LOGITS: return (double)fmaxf(x, 0.0f) - (double)x * t + log1p(exp(-fabs((double)x)));
    case DP_EW_BCE: {
        float p = clampf(x, 0.0f, 1.0f);
        return -((double)t * log_clamped(p) + (1.0 - (double)t) * log_clamped(1.0f - p));
    }
    case DP_EW_MSE: return ((double)x - t) * ((double)x - t);
    default: return fabs((double)x - t);
    }
}
static void ref_loss_der(int kind, float x, float t, float *da, float *db) {
    switch (kind) {
    case DP_EW_BCE_LOGITS: {
        float sig = x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
        *da = sig - t;
        *db = -x;
        break;
    }
    case DP_EW_BCE: {
        float p = clampf(x, 0.0f, 1.0f);
        *da = (p - t) / fmaxf(p * (1.0f - p), 1e-12f);
        *db = log_clamped(1.0f - p) - log_clamped(p);
        break;
    }
    case DP_EW_MSE:
        *da = 2.0f * (x - t);
        *db = -*da;
        break;
    default:
        *da = (x > t) ? 1.0f : (x < t ? -1.0f : 0.0f);
        *db = -*da;
        break;
    }
}
/* k x k / stride k windows: first maximum in row-major order, a NaN wins */
static void ref_maxpool_row(int k, float *y, uint8_t *idx, const float *x, int64_t ldx, int64_t ow, const float *rba) {
    for (int64_t j = 0; j < ow; j++) {
        float bv = 0.0f;
        int best = -1;
        for (int r = 0; r < k; r++)
            for (int c = 0; c < k; c++) {
                float v = x[r * ldx + k * j + c];
                if (rba) v = ((v > 0.0f ? v : 0.0f) - rba[0]) * rba[1] + rba[2];
                if (best < 0 || (!isnan(bv) && (v > bv || isnan(v)))) {
                    bv = v;
                    best = r * k + c;
                }
            }
        y[j] = bv;
        idx[j] = (uint8_t)best;
    }
}

/* ------------------------------------------------------------ kernels, one variant at a time */
typedef int (*kernel_check)(void);

static void for_each_kernel(kernel_check f) {
    int ran = 0;
    for (int k = 0; k < N_KERNELS; k++) {
        if (!dp_gemm_set_kernel(kernels[k])) {
            printf("  (kernel %s not supported on this CPU: skipped)\n", kernels[k]);
            continue;
        }
        assert_string_equal(dp_ew()->name, kernels[k]);
        assert_true(f());
        ran++;
    }
    assert_true(ran >= 1);
}

static int k_unary(void) {
    const dp_ew_kernels *k = dp_ew();
    int ok = 1;
    for (int kind = DP_EW_RELU; kind <= DP_EW_SIGMOID; kind++)
        for (size_t s = 0; s < N_LENS; s++) {
            int64_t n = lens[s];
            float *x = fnew(n), *y = fnew(n), *gx = fnew(n), *gy = fnew(n), *want = fnew(n);
            fill(x, n, 10 + (uint64_t)n, -6.0f, 6.0f);
            const float specials[] = {0.0f, -0.0f, NAN, 100.0f, -100.0f, 1e-30f, -1e-3f, INFINITY, -INFINITY, 0.3f};
            for (int64_t i = 0; i < n && i < 10; i++) x[(i * 7) % n] = specials[i];
            fill(gx, n, 20 + (uint64_t)n, -1.0f, 1.0f);
            fill(gy, n, 30 + (uint64_t)n, -1.0f, 1.0f);
            const float p = kind == DP_EW_SCALE ? -1.7f : 0.1f;
            k->unary_f(kind, y, x, n, p);
            for (int64_t i = 0; i < n; i++) want[i] = ref_unary(kind, x[i], p);
            int exact = kind <= DP_EW_SCALE;
            ok &= check_arr("unary_f", y, want, n, exact ? 0.0 : 1e-6, exact ? 0.0 : 1e-30);
            for (int64_t i = 0; i < n; i++) want[i] = gx[i] + gy[i] * ref_unary_der(kind, x[i], y[i], p);
            k->unary_b(kind, gx, gy, x, y, n, p, 1);
            ok &= check_arr("unary_b", gx, want, n, 0.0, 0.0);
            for (int64_t i = 0; i < n; i++) want[i] = gy[i] * ref_unary_der(kind, x[i], y[i], p), gx[i] = NAN;
            k->unary_b(kind, gx, gy, x, y, n, p, 0); /* store: every element written */
            ok &= check_arr("unary_b store", gx, want, n, 0.0, 0.0);
            free(x), free(y), free(gx), free(gy), free(want);
        }
    return ok;
}

static int k_binary(void) {
    const dp_ew_kernels *k = dp_ew();
    int ok = 1;
    for (int kind = DP_EW_ADD; kind <= DP_EW_DIV; kind++)
        for (int st = 0; st < 4; st++) {
            int sa = st >> 1, sb = st & 1;
            for (size_t s = 0; s < N_LENS; s++) {
                int64_t n = lens[s];
                float *a = fnew(n), *b = fnew(n), *g = fnew(n), *y = fnew(n), *d = fnew(n), *want = fnew(n);
                fill(a, n, 1 + (uint64_t)n, -2.0f, 2.0f);
                fill(b, n, 2 + (uint64_t)n, 0.5f, 2.0f);
                fill(g, n, 3 + (uint64_t)n, -1.0f, 1.0f);
                k->binary_f(kind, y, a, sa, b, sb, n);
                for (int64_t i = 0; i < n; i++) want[i] = ref_bin(kind, a[i * sa], b[i * sb]);
                ok &= check_arr("binary_f", y, want, n, 0.0, 0.0);
                for (int wrt = 0; wrt < 2; wrt++) {
                    fill(d, n, 4 + (uint64_t)n, -1.0f, 1.0f);
                    for (int64_t i = 0; i < n; i++) want[i] = d[i] + ref_bin_term(kind, wrt, g[i], a[i * sa], b[i * sb]);
                    k->binary_b(kind, wrt, d, g, a, sa, b, sb, n);
                    ok &= check_arr("binary_b", d, want, n, 0.0, 0.0);
                    double ref = 0.0, mag = 0.0;
                    for (int64_t i = 0; i < n; i++) {
                        float t = ref_bin_term(kind, wrt, g[i], a[i * sa], b[i * sb]);
                        ref += t;
                        mag += fabs(t);
                    }
                    double got = k->binary_bsum(kind, wrt, g, a, sa, b, sb, n);
                    if (!near(got, ref, 0.0, 1e-12 * mag + 1e-30)) {
                        printf("  binary_bsum (%s) kind %d wrt %d n %lld: %.17g, want %.17g\n", k->name, kind, wrt, (long long)n,
                               got, ref);
                        ok = 0;
                    }
                }
                free(a), free(b), free(g), free(y), free(d), free(want);
            }
        }
    return ok;
}

static int k_sums_and_norm(void) {
    const dp_ew_kernels *k = dp_ew();
    int ok = 1;
    for (size_t s = 0; s < N_LENS; s++) {
        int64_t n = lens[s];
        float *x = fnew(n), *y = fnew(n), *gy = fnew(n), *gx = fnew(n), *want = fnew(n);
        fill(x, n, 5 + (uint64_t)n, 99.0f, 103.0f); /* a large mean: the shift matters */
        fill(gy, n, 6 + (uint64_t)n, -1.0f, 1.0f);
        fill(gx, n, 7 + (uint64_t)n, -1.0f, 1.0f);
        double rs = 0.0, ra = 0.0, r1 = 0.0, r2 = 0.0, shift = x[0];
        for (int64_t i = 0; i < n; i++) {
            rs += x[i];
            ra += fabs(x[i]);
            r1 += x[i] - shift;
            r2 += (x[i] - shift) * (x[i] - shift);
        }
        ok &= near(k->sum(x, n), rs, 1e-14, 0.0);
        double s1 = 0.5, s2 = 0.25; /* moments add to what is there */
        k->moments(x, n, shift, &s1, &s2);
        ok &= near(s1 - 0.5, r1, 1e-12, 1e-12 * ra) && near(s2 - 0.25, r2, 1e-12, 1e-12);
        memcpy(y, gx, sizeof(float) * (size_t)n);
        k->adds(y, 0.375f, n);
        for (int64_t i = 0; i < n; i++) want[i] = gx[i] + 0.375f;
        ok &= check_arr("adds", y, want, n, 0.0, 0.0);
        const float mu = 101.0f, a = -0.75f, b = 0.5f, istd = 1.25f, mg = 0.01f, mgx = -0.02f;
        k->affine(y, x, n, mu, a, b);
        for (int64_t i = 0; i < n; i++) want[i] = (x[i] - mu) * a + b;
        ok &= check_arr("affine", y, want, n, 0.0, 0.0);
        double sg = 0.0, sgx = 0.0, rg = 0.0, rgx = 0.0;
        for (int64_t i = 0; i < n; i++) {
            rg += gy[i];
            rgx += (double)gy[i] * ((double)x[i] - mu);
        }
        k->bn_bsums(x, gy, n, mu, &sg, &sgx);
        ok &= near(sg, rg, 1e-12, 1e-12) && near(sgx, rgx, 1e-12, 1e-12);
        for (int64_t i = 0; i < n; i++) want[i] = gx[i] + a * (gy[i] - mg - (x[i] - mu) * istd * mgx);
        k->bn_bapply(gx, x, gy, n, mu, istd, a, mg, mgx, 1);
        ok &= check_arr("bn_bapply", gx, want, n, 0.0, 0.0);
        for (int64_t i = 0; i < n; i++) want[i] = a * (gy[i] - mg - (x[i] - mu) * istd * mgx), gx[i] = NAN;
        k->bn_bapply(gx, x, gy, n, mu, istd, a, mg, mgx, 0);
        ok &= check_arr("bn_bapply store", gx, want, n, 0.0, 0.0);
        if (!ok) printf("  sums/norm (%s) n=%lld\n", k->name, (long long)n);
        free(x), free(y), free(gy), free(gx), free(want);
    }
    return ok;
}

/* relu_moments = unary_f(relu) then moments, and relu_b_nt = unary_b(relu, store), bit for bit,
 * streaming or not, on rows that start on a vector boundary and rows that do not. */
static int k_relu_stream(void) {
    const dp_ew_kernels *k = dp_ew();
    int ok = 1;
    for (size_t s = 0; s < N_LENS; s++)
        for (int off = 0; off < 2; off++)
            for (int nt = 0; nt < 2; nt++) {
                int64_t n = lens[s];
                size_t bytes = (sizeof(float) * (size_t)(n + 16) + 63) / 64 * 64; /* aligned_alloc: a multiple of 64 */
                float *xb = aligned_alloc(64, bytes), *yb = aligned_alloc(64, bytes);
                float *want = fnew(n), *gy = fnew(n);
                assert_non_null(xb), assert_non_null(yb);
                float *x = xb + off, *y = yb + off;
                fill(x, n, 70 + (uint64_t)n, -1.0f, 1.0f);
                fill(gy, n, 71 + (uint64_t)n, -1.0f, 1.0f);
                if (n > 3) x[1] = NAN, x[2] = -0.0f, x[3] = 0.0f;
                k->unary_f(DP_EW_RELU, want, x, n, 0.0f);
                double shift = want[0] + 0.25, a1 = 0.5, a2 = 0.25, b1 = 0.5, b2 = 0.25;
                k->moments(want, n, shift, &a1, &a2);
                k->relu_moments(y, x, n, shift, &b1, &b2, nt);
                ok &= same_bits(y, want, n) && a1 == b1 && a2 == b2;
                k->unary_b(DP_EW_RELU, want, gy, x, x, n, 0.0f, 0);
                k->relu_b_nt(y, gy, x, n);
                ok &= same_bits(y, want, n);
                if (!ok) printf("  relu stream (%s) n=%lld off=%d nt=%d\n", k->name, (long long)n, off, nt);
                free(xb), free(yb), free(want), free(gy);
            }
    return ok;
}

static int k_maxpool(void) {
    const dp_ew_kernels *k = dp_ew();
    const int64_t ows[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 33, 40};
    int ok = 1;
    for (int kk = 2; kk <= 4; kk += 2)
        for (size_t s = 0; s < sizeof ows / sizeof ows[0]; s++)
            for (int mode = 0; mode < 4; mode++) { /* 0 plain, 1 ties, 2 NaNs, 3 relu+affine (negative scale) */
                int64_t ow = ows[s], ldx = kk * ow + 3, nx = ldx * kk;
                float *x = fnew(nx), *y = fnew(ow), *yr = fnew(ow), *gx = fnew(nx), *gr = fnew(nx), *gy = fnew(ow);
                uint8_t *idx = malloc((size_t)ow), *ir = malloc((size_t)ow);
                fill(x, nx, 40 + (uint64_t)(ow * 4 + mode), -2.0f, 2.0f);
                if (mode == 1)
                    for (int64_t i = 0; i < nx; i++) x[i] = floorf(x[i] * 1.5f) / 2.0f; /* few levels: many ties */
                if (mode == 2)
                    for (int64_t i = 0; i < nx; i += 5) x[i] = NAN;
                const float rba[3] = {0.3f, -1.5f, 0.25f};
                const float *t = mode == 3 ? rba : NULL;
                k->maxpool_row(kk, y, idx, x, ldx, ow, t);
                ref_maxpool_row(kk, yr, ir, x, ldx, ow, t);
                ok &= check_arr("maxpool_row", y, yr, ow, 0.0, 0.0);
                if (memcmp(idx, ir, (size_t)ow) != 0) {
                    printf("  maxpool_row (%s) k=%d ow=%lld mode %d: argmax differs\n", k->name, kk, (long long)ow, mode);
                    ok = 0;
                }
                float *y2 = fnew(ow);
                k->maxpool_row(kk, y2, NULL, x, ldx, ow, t); /* without the argmax */
                ok &= same_bits(y, y2, ow);
                free(y2);
                fill(gx, nx, 50 + (uint64_t)ow, -1.0f, 1.0f);
                fill(gy, ow, 60 + (uint64_t)ow, -1.0f, 1.0f);
                memcpy(gr, gx, sizeof(float) * (size_t)nx);
                for (int64_t j = 0; j < ow; j++) gr[(ir[j] / kk) * ldx + kk * j + ir[j] % kk] += gy[j];
                k->maxpool_row_b(kk, gx, ldx, idx, gy, ow, 1);
                ok &= check_arr("maxpool_row_b", gx, gr, nx, 0.0, 0.0);
                /* store: the k*ow columns of each row written (0 off the argmax), the rest untouched */
                for (int64_t i = 0; i < nx; i++) gx[i] = NAN, gr[i] = (i % ldx) < kk * ow ? 0.0f : NAN;
                for (int64_t j = 0; j < ow; j++) gr[(ir[j] / kk) * ldx + kk * j + ir[j] % kk] = gy[j];
                k->maxpool_row_b(kk, gx, ldx, idx, gy, ow, 0);
                ok &= check_arr("maxpool_row_b store", gx, gr, nx, 0.0, 0.0);
                free(x), free(y), free(yr), free(gx), free(gr), free(gy), free(idx), free(ir);
            }
    return ok;
}

static int k_losses(void) {
    const dp_ew_kernels *k = dp_ew();
    int ok = 1;
    for (int kind = DP_EW_BCE_LOGITS; kind <= DP_EW_L1; kind++)
        for (size_t s = 0; s < N_LENS; s++) {
            int64_t n = lens[s];
            float *a = fnew(n), *t = fnew(n), *ga = fnew(n), *gb = fnew(n), *wa = fnew(n), *wb = fnew(n);
            if (kind == DP_EW_BCE) {
                fill(a, n, 70 + (uint64_t)n, -0.2f, 1.2f); /* some outside [0, 1]: clamped */
                if (n > 3) a[1] = 0.0f, a[2] = 1.0f, a[3] = 1e-40f;
            } else {
                fill(a, n, 70 + (uint64_t)n, -30.0f, 30.0f);
            }
            fill(t, n, 80 + (uint64_t)n, 0.0f, 1.0f);
            fill(ga, n, 90 + (uint64_t)n, -1.0f, 1.0f);
            fill(gb, n, 91 + (uint64_t)n, -1.0f, 1.0f);
            double ref = 0.0, mag = 0.0;
            for (int64_t i = 0; i < n; i++) {
                double v = ref_loss(kind, a[i], t[i]);
                ref += v;
                mag += fabs(v);
            }
            double got = k->loss_f(kind, a, t, n);
            if (!near(got, ref, 0.0, 1e-6 * mag + 1e-12)) {
                printf("  loss_f (%s) kind %d n %lld: %.9g, want %.9g\n", k->name, kind, (long long)n, got, ref);
                ok = 0;
            }
            const float sc = 0.37f;
            for (int64_t i = 0; i < n; i++) {
                float da, db;
                ref_loss_der(kind, a[i], t[i], &da, &db);
                wa[i] = ga[i] + sc * da;
                wb[i] = gb[i] + sc * db;
            }
            k->loss_b(kind, ga, gb, a, t, n, sc);
            ok &= check_arr("loss_b a", ga, wa, n, 2e-6, 1e-6);
            ok &= check_arr("loss_b t", gb, wb, n, 2e-6, 1e-6);
            k->loss_b(kind, NULL, gb, a, t, n, 0.0f); /* either side may be absent */
            free(a), free(t), free(ga), free(gb), free(wa), free(wb);
        }
    return ok;
}

static void kernels_unary(void **state) { (void)state, for_each_kernel(k_unary); }
static void kernels_binary(void **state) { (void)state, for_each_kernel(k_binary); }
static void kernels_sums_norm(void **state) { (void)state, for_each_kernel(k_sums_and_norm); }
static void kernels_maxpool(void **state) { (void)state, for_each_kernel(k_maxpool); }
static void kernels_relu_stream(void **state) { (void)state, for_each_kernel(k_relu_stream); }
static void kernels_losses(void **state) { (void)state, for_each_kernel(k_losses); }

/* Element-wise kernels give the same bits in every variant (only sums may differ). */
static void variants_bit_identical(void **state) {
    (void)state;
    const int64_t n = 1000 + 13;
    float *x = fnew(n), *ref = fnew(n), *y = fnew(n), *x4 = fnew(4 * 67 + 5);
    fill(x, n, 99, -9.0f, 9.0f);
    fill(x4, 4 * 67 + 5, 98, -2.0f, 2.0f);
    const dp_ew_kernels *p = dp_ew_level(0);
    for (int lvl = 1; lvl <= 2; lvl++) {
        const dp_ew_kernels *k = dp_ew_level(lvl);
        if (!k || !dp_gemm_set_kernel(kernels[lvl])) continue;
        for (int kind = DP_EW_RELU; kind <= DP_EW_SIGMOID; kind++) {
            p->unary_f(kind, ref, x, n, 0.2f);
            k->unary_f(kind, y, x, n, 0.2f);
            assert_true(same_bits(ref, y, n));
        }
        p->affine(ref, x, n, 0.5f, -3.0f, 1.0f);
        k->affine(y, x, n, 0.5f, -3.0f, 1.0f);
        assert_true(same_bits(ref, y, n));
        uint8_t i0[67], i1[67];
        const float rba[3] = {0.1f, 2.0f, -0.5f};
        p->maxpool_row(2, ref, i0, x4, 2 * 67 + 1, 67, rba);
        k->maxpool_row(2, y, i1, x4, 2 * 67 + 1, 67, rba);
        assert_true(same_bits(ref, y, 67) && !memcmp(i0, i1, 67));
    }
    free(x), free(ref), free(y), free(x4);
}

/* The Adam kernel: the optimizer's scalar update bit for bit, every length (tails). */
static int k_adam(void) {
    const dp_ew_kernels *k = dp_ew();
    for (size_t li = 0; li < N_LENS; li++) {
        int64_t n = lens[li];
        float *p = fnew(n), *g = fnew(n), *m = fnew(n), *v = fnew(n), *rp = fnew(n), *rm = fnew(n), *rv = fnew(n);
        fill(p, n, 61, -1.0f, 1.0f), fill(g, n, 62, -0.1f, 0.1f), fill(m, n, 63, -0.05f, 0.05f), fill(v, n, 64, 0.0f, 0.01f);
        memcpy(rp, p, sizeof(float) * (size_t)n), memcpy(rm, m, sizeof(float) * (size_t)n), memcpy(rv, v, sizeof(float) * (size_t)n);
        const float b1 = 0.5f, b2 = 0.999f, eps = 1e-8f, bc2 = 0.0447101f, ss = 4e-4f;
        for (int64_t i = 0; i < n; i++) { /* optim.c's upd_adam without decay or clipping */
            float mm = b1 * rm[i] + (1.0f - b1) * g[i];
            float vv = b2 * rv[i] + (1.0f - b2) * g[i] * g[i];
            rm[i] = mm, rv[i] = vv;
            float denom = sqrtf(vv) / bc2 + eps;
            rp[i] = rp[i] - ss * (mm / denom);
        }
        k->adam(p, g, m, v, n, b1, b2, eps, bc2, ss);
        assert_true(same_bits(p, rp, n) && same_bits(m, rm, n) && same_bits(v, rv, n));
        free(p), free(g), free(m), free(v), free(rp), free(rm), free(rv);
    }
    return 1;
}
static void kernels_adam(void **state) { (void)state, for_each_kernel(k_adam); }

/* ------------------------------------------------------------ ops through graphs */
typedef struct gx {
    dp_ctx *ctx;
    dp_graph *g;
    dp_paramset *ps;
} gx;

static gx gx_new(int threads) {
    gx e = {0};
    dp_ctx_opts o = {.threads = threads, .seed = 3};
    assert_int_equal(dp_ctx_new(&o, &e.ctx), DP_OK);
    assert_int_equal(dp_graph_new(e.ctx, &e.g), DP_OK);
    assert_int_equal(dp_paramset_new(e.ctx, &e.ps), DP_OK);
    return e;
}
static void gx_free(gx *e) {
    dp_graph_free(e->g);
    dp_paramset_free(e->ps);
    dp_ctx_free(e->ctx);
}
#define OK(e, expr)                                                                                     \
    do {                                                                                                \
        dp_status s_ = (expr);                                                                          \
        if (s_ != DP_OK) fail_msg("%s: %s (%s)", #expr, dp_status_name(s_), dp_ctx_error((e)->ctx));   \
    } while (0)

static dp_node *rand_input(gx *e, const char *name, int nd, const int64_t *sh, uint64_t seed, float lo, float hi, int grad) {
    dp_node *n = dp_input(e->g, name, nd, sh);
    assert_non_null(n);
    if (grad) OK(e, dp_input_requires_grad(e->g, n));
    (void)seed, (void)lo, (void)hi;
    return n;
}
static void fill_node(dp_node *n, uint64_t seed, float lo, float hi) {
    fill(dp_tensor_f32(dp_node_value(n)), dp_tensor_numel(dp_node_value(n)), seed, lo, hi);
}
/* loss = sum(y * r): the gradient reaching y is r exactly */
static dp_node *probe_loss(gx *e, dp_node *y, dp_node **r) {
    dp_tensor *v = dp_node_value(y);
    int64_t sh[4];
    for (int i = 0; i < v->ndim; i++) sh[i] = v->shape[i];
    *r = dp_input(e->g, "r", v->ndim, sh);
    return dp_sum(e->g, dp_mul(e->g, y, *r), DP_AXIS_ALL, 0);
}
static void run_fb(gx *e, dp_node *loss) {
    OK(e, dp_graph_run(e->g));
    OK(e, dp_graph_backward(e->g, loss, 0, NULL));
}
static const float *val(dp_node *n) { return dp_tensor_f32(dp_node_value(n)); }
static const float *grad(dp_node *n) { return dp_tensor_f32(dp_node_grad(n)); }

/* Unary activations on an odd shape, forward and gradient. */
static int op_unary_case(int threads) {
    static const int ops[] = {DP_OP_RELU, DP_OP_LEAKY_RELU, DP_OP_SCALE, DP_OP_TANH, DP_OP_SIGMOID};
    static const int kinds[] = {DP_EW_RELU, DP_EW_LEAKY_RELU, DP_EW_SCALE, DP_EW_TANH, DP_EW_SIGMOID};
    int ok = 1;
    for (int o = 0; o < 5; o++) {
        gx e = gx_new(threads);
        const int64_t sh[4] = {3, 5, 67, 131}; /* 131k elements: several parts, odd tails */
        dp_node *x = rand_input(&e, "x", 4, sh, 0, 0, 0, 1), *r, *y;
        float p = 0.15f;
        switch (ops[o]) {
        case DP_OP_RELU: y = dp_relu(e.g, x); break;
        case DP_OP_LEAKY_RELU: y = dp_leaky_relu(e.g, x, p); break;
        case DP_OP_SCALE: y = dp_scale(e.g, x, p = -2.5f); break;
        case DP_OP_TANH: y = dp_tanh(e.g, x); break;
        default: y = dp_sigmoid(e.g, x); break;
        }
        dp_node *loss = probe_loss(&e, y, &r);
        OK(&e, dp_graph_compile(e.g));
        fill_node(x, 11 + (uint64_t)o, -5.0f, 5.0f);
        fill_node(r, 12, -1.0f, 1.0f);
        run_fb(&e, loss);
        int64_t n = dp_tensor_numel(dp_node_value(x));
        float *wy = fnew(n), *wg = fnew(n);
        for (int64_t i = 0; i < n; i++) {
            wy[i] = ref_unary(kinds[o], val(x)[i], p);
            wg[i] = val(r)[i] * ref_unary_der(kinds[o], val(x)[i], val(y)[i], p);
        }
        ok &= check_arr(dp_op_name(ops[o]), val(y), wy, n, 1e-6, 1e-30);
        ok &= check_arr("unary grad", grad(x), wg, n, 1e-6, 1e-30);
        free(wy), free(wg);
        gx_free(&e);
    }
    return ok;
}

/* Broadcasting binary ops: shapes that take the same-shape, per-channel,
 * row and general paths, both operand orders, both gradients. */
static int op_binary_case(int threads) {
    static const struct { int na, nb; int64_t a[4], b[4]; } shapes[] = {
        {4, 4, {2, 3, 37, 41}, {2, 3, 37, 41}}, /* same shape */
        {4, 4, {4, 3, 37, 41}, {1, 3, 1, 1}},   /* per channel */
        {4, 3, {4, 3, 37, 41}, {3, 1, 1}},
        {3, 4, {3, 1, 1}, {4, 3, 37, 41}},      /* the broadcast operand first */
        {4, 1, {2, 3, 5, 7}, {7}},              /* a row */
        {2, 2, {61, 1}, {1, 53}},               /* both broadcast */
        {4, 1, {2, 3, 5, 7}, {1}},              /* a scalar */
        {4, 4, {2, 1, 5, 1}, {1, 3, 1, 7}},
    };
    int ok = 1;
    for (int kind = DP_EW_ADD; kind <= DP_EW_DIV; kind++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            gx e = gx_new(threads);
            dp_node *a = rand_input(&e, "a", shapes[s].na, shapes[s].a, 0, 0, 0, 1);
            dp_node *b = rand_input(&e, "b", shapes[s].nb, shapes[s].b, 0, 0, 0, 1), *r;
            dp_node *y = kind == DP_EW_ADD ? dp_add(e.g, a, b)
                         : kind == DP_EW_SUB ? dp_sub(e.g, a, b)
                         : kind == DP_EW_MUL ? dp_mul(e.g, a, b)
                                             : dp_div(e.g, a, b);
            dp_node *loss = probe_loss(&e, y, &r);
            OK(&e, dp_graph_compile(e.g));
            fill_node(a, 21, -2.0f, 2.0f);
            fill_node(b, 22, 0.5f, 2.0f);
            fill_node(r, 23, -1.0f, 1.0f);
            run_fb(&e, loss);
            /* reference: 4-D index arithmetic, sums in double */
            dp_tensor *yt = dp_node_value(y), *at = dp_node_value(a), *bt = dp_node_value(b);
            int64_t ys[4], as[4], bs[4];
            for (int i = 0; i < 4; i++) {
                int oy = i - (4 - yt->ndim), oa = i - (4 - at->ndim), ob = i - (4 - bt->ndim);
                ys[i] = oy >= 0 ? yt->shape[oy] : 1;
                as[i] = oa >= 0 ? at->shape[oa] : 1;
                bs[i] = ob >= 0 ? bt->shape[ob] : 1;
            }
            int64_t ny = dp_tensor_numel(yt), na = dp_tensor_numel(at), nb = dp_tensor_numel(bt);
            float *wy = fnew(ny);
            double *wa = calloc((size_t)na, sizeof(double)), *wb = calloc((size_t)nb, sizeof(double));
            int64_t k = 0;
            for (int64_t i0 = 0; i0 < ys[0]; i0++)
                for (int64_t i1 = 0; i1 < ys[1]; i1++)
                    for (int64_t i2 = 0; i2 < ys[2]; i2++)
                        for (int64_t i3 = 0; i3 < ys[3]; i3++, k++) {
                            int64_t ia = (((i0 % as[0]) * as[1] + i1 % as[1]) * as[2] + i2 % as[2]) * as[3] + i3 % as[3];
                            int64_t ib = (((i0 % bs[0]) * bs[1] + i1 % bs[1]) * bs[2] + i2 % bs[2]) * bs[3] + i3 % bs[3];
                            float va = val(a)[ia], vb = val(b)[ib], g = val(r)[k];
                            wy[k] = ref_bin(kind, va, vb);
                            wa[ia] += ref_bin_term(kind, 0, g, va, vb);
                            wb[ib] += ref_bin_term(kind, 1, g, va, vb);
                        }
            ok &= check_arr("binary", val(y), wy, ny, 0.0, 0.0);
            for (int64_t i = 0; i < na; i++) ok &= near(grad(a)[i], wa[i], 1e-5, 1e-5);
            for (int64_t i = 0; i < nb; i++) ok &= near(grad(b)[i], wb[i], 1e-5, 1e-5);
            if (!ok) printf("  binary kind %d shapes %zu (%s)\n", kind, s, dp_ew()->name);
            free(wy), free(wa), free(wb);
            gx_free(&e);
        }
    return ok;
}

/* Max-pool: fast (2x2, 4x4, 'same' on even sizes) and general geometries. */
static int op_maxpool_case(int threads) {
    static const struct { int64_t sh[4]; int k, s, pad, same; } cases[] = {
        {{2, 3, 9, 13}, 2, 0, 0, 0},  {{2, 3, 16, 35}, 4, 0, 0, 0}, {{1, 2, 8, 38}, 2, 0, 0, 1},
        {{2, 2, 9, 11}, 2, 0, 0, 1},  {{2, 3, 11, 12}, 3, 2, 1, 0}, {{1, 4, 64, 64}, 4, 0, 0, 0},
        {{2, 3, 7, 70}, 4, 2, 0, 0},
    };
    int ok = 1;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gx e = gx_new(threads);
        dp_node *x = rand_input(&e, "x", 4, cases[c].sh, 0, 0, 0, 1), *r;
        dp_pool_opts po = {0};
        po.kernel_h = po.kernel_w = cases[c].k;
        po.stride_h = po.stride_w = cases[c].s;
        po.pad_h = po.pad_w = cases[c].pad;
        po.same = cases[c].same;
        dp_node *y = dp_maxpool2d(e.g, x, &po);
        dp_node *loss = probe_loss(&e, y, &r);
        OK(&e, dp_graph_compile(e.g));
        fill_node(x, 31 + c, -3.0f, 3.0f);
        float *xv = dp_tensor_f32(dp_node_value(x));
        int64_t nx = dp_tensor_numel(dp_node_value(x));
        for (int64_t i = 0; i < nx; i++) xv[i] = floorf(xv[i] * 2.0f) / 2.0f; /* ties */
        xv[5] = NAN;
        fill_node(r, 32, -1.0f, 1.0f);
        run_fb(&e, loss);
        /* reference: the previous generic loop */
        const dp_tensor *yt = dp_node_value(y);
        int64_t P = cases[c].sh[0] * cases[c].sh[1], H = cases[c].sh[2], W = cases[c].sh[3], OH = yt->shape[2], OW = yt->shape[3];
        int kk = cases[c].k, ss = cases[c].s ? cases[c].s : kk;
        int top = cases[c].pad, left = cases[c].pad;
        if (cases[c].same) {
            int64_t th = (OH - 1) * ss + kk - H, tw = (OW - 1) * ss + kk - W;
            top = (int)((th > 0 ? th : 0) / 2);
            left = (int)((tw > 0 ? tw : 0) / 2);
        }
        float *wy = fnew(P * OH * OW), *wg = calloc((size_t)nx, sizeof(float));
        for (int64_t pl = 0; pl < P; pl++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t h0 = oh * ss - top, w0 = ow * ss - left, best = -1;
                    float bv = 0.0f;
                    for (int64_t h = h0 < 0 ? 0 : h0; h < h0 + kk && h < H; h++)
                        for (int64_t w = w0 < 0 ? 0 : w0; w < w0 + kk && w < W; w++) {
                            float v = xv[(pl * H + h) * W + w];
                            if (best >= 0 && isnan(bv)) continue;
                            if (best < 0 || v > bv || isnan(v)) {
                                bv = v;
                                best = (pl * H + h) * W + w;
                            }
                        }
                    int64_t o = (pl * OH + oh) * OW + ow;
                    wy[o] = bv;
                    wg[best] += val(r)[o];
                }
        ok &= check_arr("maxpool", val(y), wy, P * OH * OW, 0.0, 0.0);
        ok &= check_arr("maxpool grad", grad(x), wg, nx, 1e-6, 1e-7);
        if (!ok) printf("  maxpool case %zu (%s)\n", c, dp_ew()->name);
        free(wy), free(wg);
        gx_free(&e);
    }
    return ok;
}

/* Batch norm (training and eval), global average pool, losses, sum/mean. */
static int op_norm_pool_loss_case(int threads) {
    int ok = 1;
    for (int training = 0; training < 2; training++) {
        gx e = gx_new(threads);
        const int64_t sh[4] = {3, 5, 17, 19}, c1[1] = {5};
        dp_node *x = rand_input(&e, "x", 4, sh, 0, 0, 0, 1), *r;
        dp_tensor *rm, *rv;
        OK(&e, dp_paramset_get_or_add(e.ps, "rm", 1, c1, DP_PARAM_BUFFER, NULL, &rm));
        OK(&e, dp_paramset_get_or_add(e.ps, "rv", 1, c1, DP_PARAM_BUFFER, NULL, &rv));
        dp_node *gam = dp_input(e.g, "gamma", 1, c1), *bet = dp_input(e.g, "beta", 1, c1);
        OK(&e, dp_input_requires_grad(e.g, gam));
        OK(&e, dp_input_requires_grad(e.g, bet));
        dp_node *y = dp_batchnorm2d(e.g, x, gam, bet, rm, rv, 0.1f, 1e-5f);
        dp_node *loss = probe_loss(&e, y, &r);
        OK(&e, dp_graph_compile(e.g));
        OK(&e, dp_graph_set_training(e.g, training));
        fill_node(x, 41, -1.0f, 1.0f);
        float *xv = dp_tensor_f32(dp_node_value(x));
        for (int64_t i = 0; i < dp_tensor_numel(dp_node_value(x)); i++) xv[i] += 1000.0f; /* far from 0 */
        fill_node(gam, 42, -2.0f, 2.0f);
        fill_node(bet, 43, -1.0f, 1.0f);
        fill_node(r, 44, -1.0f, 1.0f);
        fill(dp_tensor_f32(rm), 5, 45, 999.0f, 1001.0f);
        fill(dp_tensor_f32(rv), 5, 46, 0.2f, 2.0f);
        float rm0[5], rv0[5];
        memcpy(rm0, dp_tensor_f32(rm), sizeof rm0);
        memcpy(rv0, dp_tensor_f32(rv), sizeof rv0);
        run_fb(&e, loss);
        const int64_t N = 3, C = 5, HW = 17 * 19, M = N * HW;
        for (int64_t c = 0; c < C; c++) { /* two passes in double, as PyTorch defines it */
            double s = 0.0, v = 0.0;
            for (int64_t i = 0; i < N; i++)
                for (int64_t k = 0; k < HW; k++) s += xv[(i * C + c) * HW + k];
            double m = s / (double)M;
            for (int64_t i = 0; i < N; i++)
                for (int64_t k = 0; k < HW; k++) v += (xv[(i * C + c) * HW + k] - m) * (xv[(i * C + c) * HW + k] - m);
            /* the mean as forward rounds it (float), as PyTorch does */
            double mu = training ? (double)(float)m : rm0[c], var = training ? v / (double)M : rv0[c], istd = 1.0 / sqrt(var + 1e-5);
            double g = val(gam)[c], sg = 0.0, sgx = 0.0;
            for (int64_t i = 0; i < N; i++)
                for (int64_t k = 0; k < HW; k++) {
                    int64_t o = (i * C + c) * HW + k;
                    double xh = (xv[o] - mu) * istd;
                    if (!near(val(y)[o], xh * g + val(bet)[c], 1e-5, 1e-5)) {
                        if (ok) printf("  bn y[%lld] %.9g want %.9g\n", (long long)o, val(y)[o], xh * g + val(bet)[c]);
                        ok = 0;
                    }
                    sg += val(r)[o];
                    sgx += val(r)[o] * xh;
                }
            if (!near(grad(bet)[c], sg, 1e-5, 1e-5) || !near(grad(gam)[c], sgx, 1e-5, 1e-5)) {
                printf("  bn c=%lld: gbeta %.9g want %.9g, ggamma %.9g want %.9g\n", (long long)c, grad(bet)[c], sg, grad(gam)[c], sgx);
                ok = 0;
            }
            for (int64_t i = 0; i < N; i++)
                for (int64_t k = 0; k < HW; k++) {
                    int64_t o = (i * C + c) * HW + k;
                    double xh = (xv[o] - mu) * istd, gy = val(r)[o];
                    double want = training ? g * istd * (gy - sg / M - xh * sgx / M) : g * istd * gy;
                    if (!near(grad(x)[o], want, 1e-4, 1e-5)) {
                        if (ok) printf("  bn gx[%lld] %.9g want %.9g\n", (long long)o, grad(x)[o], want);
                        ok = 0;
                    }
                }
            if (training && !(near(dp_tensor_f32(rm)[c], 0.9 * rm0[c] + 0.1 * m, 1e-6, 0.0) &&
                              near(dp_tensor_f32(rv)[c], 0.9 * rv0[c] + 0.1 * v / (double)(M - 1), 1e-5, 0.0))) {
                printf("  bn running stats c=%lld: %.9g %.9g want %.9g %.9g\n", (long long)c, dp_tensor_f32(rm)[c], dp_tensor_f32(rv)[c],
                       0.9 * rm0[c] + 0.1 * m, 0.9 * rv0[c] + 0.1 * v / (double)(M - 1));
                ok = 0;
            }
            if (!training) ok &= dp_tensor_f32(rm)[c] == rm0[c] && dp_tensor_f32(rv)[c] == rv0[c];
        }
        if (!ok) printf("  batchnorm training=%d (%s)\n", training, dp_ew()->name);
        gx_free(&e);
    }
    { /* global average pool */
        gx e = gx_new(threads);
        const int64_t sh[4] = {3, 7, 13, 11};
        dp_node *x = rand_input(&e, "x", 4, sh, 0, 0, 0, 1), *r;
        dp_node *y = dp_global_avgpool(e.g, x), *loss = probe_loss(&e, y, &r);
        OK(&e, dp_graph_compile(e.g));
        fill_node(x, 51, -1.0f, 3.0f);
        fill_node(r, 52, -1.0f, 1.0f);
        run_fb(&e, loss);
        for (int64_t p = 0; p < 21; p++) {
            double s = 0.0;
            for (int64_t k = 0; k < 143; k++) s += val(x)[p * 143 + k];
            ok &= near(val(y)[p], s / 143.0, 1e-6, 1e-7);
            for (int64_t k = 0; k < 143; k++) ok &= grad(x)[p * 143 + k] == val(r)[p] / 143.0f;
        }
        if (!ok) printf("  global_avgpool (%s)\n", dp_ew()->name);
        gx_free(&e);
    }
    for (int kind = DP_EW_BCE_LOGITS; kind <= DP_EW_L1; kind++) { /* pair losses, 70k elements: several chunks */
        gx e = gx_new(threads);
        const int64_t sh[2] = {701, 101};
        dp_node *a = rand_input(&e, "a", 2, sh, 0, 0, 0, 1), *t = rand_input(&e, "t", 2, sh, 0, 0, 0, 1);
        dp_node *l = kind == DP_EW_BCE_LOGITS ? dp_bce_with_logits(e.g, a, t)
                     : kind == DP_EW_BCE     ? dp_bce(e.g, a, t)
                     : kind == DP_EW_MSE     ? dp_mse(e.g, a, t)
                                             : dp_l1(e.g, a, t);
        OK(&e, dp_graph_compile(e.g));
        fill_node(a, 61, kind == DP_EW_BCE ? 0.01f : -4.0f, kind == DP_EW_BCE ? 0.99f : 4.0f);
        fill_node(t, 62, 0.0f, 1.0f);
        run_fb(&e, l);
        int64_t n = 701 * 101;
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += ref_loss(kind, val(a)[i], val(t)[i]);
        if (!near(val(l)[0], s / (double)n, 1e-6, 0.0)) {
            printf("  loss %.9g want %.9g\n", val(l)[0], s / (double)n);
            ok = 0;
        }
        float sc = 1.0f / (float)n;
        for (int64_t i = 0; i < n && ok; i++) {
            float da, db;
            ref_loss_der(kind, val(a)[i], val(t)[i], &da, &db);
            if (!near(grad(a)[i], sc * da, 2e-6, sc * 1e-6) || !near(grad(t)[i], sc * db, 2e-6, sc * 1e-6)) {
                printf("  loss grads [%lld]: %.9g %.9g want %.9g %.9g\n", (long long)i, grad(a)[i], grad(t)[i], sc * da, sc * db);
                ok = 0;
            }
        }
        if (!ok) printf("  loss kind %d (%s)\n", kind, dp_ew()->name);
        gx_free(&e);
    }
    for (int axis = -1; axis < 3; axis++) { /* sum / mean over all (-1 here) or one axis of [5, 301, 37] */
        for (int mean = 0; mean < 2; mean++) {
            gx e = gx_new(threads);
            const int64_t sh[3] = {5, 301, 37};
            dp_node *x = rand_input(&e, "x", 3, sh, 0, 0, 0, 1), *r;
            int ax = axis < 0 ? DP_AXIS_ALL : axis;
            dp_node *y = mean ? dp_mean(e.g, x, ax, 0) : dp_sum(e.g, x, ax, 0), *loss = probe_loss(&e, y, &r);
            OK(&e, dp_graph_compile(e.g));
            fill_node(x, 71, -1.0f, 2.0f);
            fill_node(r, 72, -1.0f, 1.0f);
            run_fb(&e, loss);
            int64_t outer = 1, len = 5 * 301 * 37, inner = 1;
            if (axis >= 0) {
                outer = axis > 0 ? (axis > 1 ? 5 * 301 : 5) : 1;
                len = sh[axis];
                inner = axis < 2 ? (axis < 1 ? 301 * 37 : 37) : 1;
            }
            float s = mean ? 1.0f / (float)len : 1.0f;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t i = 0; i < inner; i++) {
                    double acc = 0.0;
                    for (int64_t l = 0; l < len; l++) acc += val(x)[(o * len + l) * inner + i];
                    ok &= near(val(y)[o * inner + i], (float)acc * s, 1e-6, 1e-6);
                    for (int64_t l = 0; l < len; l++) ok &= grad(x)[(o * len + l) * inner + i] == val(r)[o * inner + i] * s;
                }
            if (!ok) printf("  reduce axis %d mean %d (%s)\n", axis, mean, dp_ew()->name);
            gx_free(&e);
        }
    }
    return ok;
}

static void for_each_kernel_threads(int (*f)(int)) {
    for (int k = 0; k < N_KERNELS; k++) {
        if (!dp_gemm_set_kernel(kernels[k])) continue;
        assert_true(f(3));
    }
    assert_true(dp_gemm_set_kernel("portable"));
    assert_true(f(1));
}
static void ops_unary(void **state) { (void)state, for_each_kernel_threads(op_unary_case); }
static void ops_binary(void **state) { (void)state, for_each_kernel_threads(op_binary_case); }
static void ops_maxpool(void **state) { (void)state, for_each_kernel_threads(op_maxpool_case); }
static void ops_norm_pool_loss(void **state) { (void)state, for_each_kernel_threads(op_norm_pool_loss_case); }

/* A gradient with several contributions is zeroed and added to; one with a
 * single reader is stored by it. Both give the same result: x read by relu,
 * tanh, batch norm and a 2x2 max-pool at once against each read alone. */
static dp_node *branch(gx *e, int which, dp_node *x, dp_tensor *rm, dp_tensor *rv) {
    dp_pool_opts po = {0};
    po.kernel_h = po.kernel_w = 2;
    switch (which) {
    case 0: return dp_relu(e->g, x);
    case 1: return dp_tanh(e->g, x);
    case 2: return dp_batchnorm2d(e->g, x, NULL, NULL, rm, rv, 0.1f, 1e-5f);
    default: return dp_maxpool2d(e->g, x, &po);
    }
}
static void grad_of(int mask, float *out, int64_t n) {
    gx e = gx_new(3);
    const int64_t sh[4] = {2, 3, 33, 35}, c1[1] = {3};
    dp_tensor *rm, *rv;
    OK(&e, dp_paramset_get_or_add(e.ps, "rm", 1, c1, DP_PARAM_BUFFER, NULL, &rm));
    OK(&e, dp_paramset_get_or_add(e.ps, "rv", 1, c1, DP_PARAM_BUFFER, NULL, &rv));
    dp_node *x = rand_input(&e, "x", 4, sh, 0, 0, 0, 1), *loss = NULL, *r[4];
    for (int b = 0; b < 4; b++) {
        if (!(mask & (1 << b))) continue;
        dp_node *l = probe_loss(&e, branch(&e, b, x, rm, rv), &r[b]);
        loss = loss ? dp_add(e.g, loss, l) : l;
    }
    OK(&e, dp_graph_compile(e.g));
    OK(&e, dp_graph_set_training(e.g, 1));
    fill_node(x, 91, -2.0f, 2.0f);
    for (int b = 0; b < 4; b++)
        if (mask & (1 << b)) fill_node(r[b], 92 + (uint64_t)b, -1.0f, 1.0f);
    run_fb(&e, loss);
    if (mask != 15) assert_true((x->flags & DP_NF_GRAD_STORE) != 0); /* one reader: stored */
    else assert_true((x->flags & DP_NF_GRAD_STORE) == 0);
    memcpy(out, grad(x), sizeof(float) * (size_t)n);
    gx_free(&e);
}
static void grads_added_or_stored(void **state) {
    (void)state;
    const int64_t n = 2 * 3 * 33 * 35;
    float *all = fnew(n), *one = fnew(n);
    double *sum = calloc((size_t)n, sizeof(double));
    grad_of(15, all, n);
    for (int b = 0; b < 4; b++) {
        grad_of(1 << b, one, n);
        for (int64_t i = 0; i < n; i++) sum[i] += one[i];
    }
    for (int64_t i = 0; i < n; i++)
        if (!near(all[i], sum[i], 1e-6, 1e-6)) fail_msg("x grad [%lld]: %.9g, want %.9g", (long long)i, (double)all[i], sum[i]);
    free(all), free(one), free(sum);
}

/* ------------------------------------------------------------ determinism */
/* Batch norm, losses, reductions and broadcast gradients sum in an order fixed
 * by the shapes: the same bits with 1, 2 or 3 threads, and run after run. */
typedef struct det_out {
    float y[4], gx_sum;
    float *gx;
    int64_t n;
} det_out;

static void det_run(int threads, det_out *o) {
    gx e = gx_new(threads);
    const int64_t sh[4] = {4, 6, 45, 47}, c1[1] = {6}, cb[3] = {6, 1, 1};
    dp_node *x = rand_input(&e, "x", 4, sh, 0, 0, 0, 1), *b = rand_input(&e, "b", 3, cb, 0, 0, 0, 1);
    dp_tensor *rm, *rv;
    OK(&e, dp_paramset_get_or_add(e.ps, "rm", 1, c1, DP_PARAM_BUFFER, NULL, &rm));
    OK(&e, dp_paramset_get_or_add(e.ps, "rv", 1, c1, DP_PARAM_BUFFER, NULL, &rv));
    dp_node *h = dp_batchnorm2d(e.g, dp_mul(e.g, x, b), NULL, NULL, rm, rv, 0.1f, 1e-5f);
    dp_node *t = dp_input(e.g, "t", 4, sh);
    dp_node *l1 = dp_mse(e.g, h, t), *l2 = dp_bce_with_logits(e.g, h, t), *l3 = dp_mean(e.g, h, 1, 0);
    dp_node *loss = dp_add(e.g, dp_add(e.g, l1, l2), dp_sum(e.g, l3, DP_AXIS_ALL, 0));
    OK(&e, dp_graph_compile(e.g));
    OK(&e, dp_graph_set_training(e.g, 1));
    fill_node(x, 81, -1.0f, 2.0f);
    fill_node(b, 82, 0.5f, 1.5f);
    fill_node(t, 83, 0.0f, 1.0f);
    run_fb(&e, loss);
    o->y[0] = val(l1)[0], o->y[1] = val(l2)[0], o->y[2] = val(loss)[0], o->y[3] = dp_tensor_f32(rv)[3];
    o->n = dp_tensor_numel(dp_node_value(x));
    o->gx = fnew(o->n + 6);
    memcpy(o->gx, grad(x), sizeof(float) * (size_t)o->n);
    memcpy(o->gx + o->n, grad(b), sizeof(float) * 6);
    gx_free(&e);
}

static void thread_count_independent(void **state) {
    (void)state;
    for (int k = 0; k < N_KERNELS; k++) {
        if (!dp_gemm_set_kernel(kernels[k])) continue;
        det_out a, b, c, d;
        det_run(1, &a);
        det_run(3, &b);
        det_run(2, &c);
        det_run(3, &d);
        assert_memory_equal(a.y, b.y, sizeof a.y);
        assert_memory_equal(a.y, c.y, sizeof a.y);
        assert_memory_equal(b.y, d.y, sizeof a.y);
        assert_true(same_bits(a.gx, b.gx, a.n + 6) && same_bits(a.gx, c.gx, a.n + 6) && same_bits(b.gx, d.gx, a.n + 6));
        free(a.gx), free(b.gx), free(c.gx), free(d.gx);
    }
}

/* ------------------------------------------------------------ fusion */
static int count_fused(const dp_graph *g) {
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) k += g->nodes[i]->fuse != DP_FUSE_NONE;
    return k;
}

/* Batch-norm parameters and running statistics that make the fused map
 * matter: negative scales (the max becomes a min), offsets, odd variances. */
static void randomise_bn(dp_paramset *ps, uint64_t seed) {
    for (int i = 0; i < dp_paramset_count(ps); i++) {
        dp_tensor *t = dp_paramset_at(ps, i);
        const char *nm = t->name;
        size_t L = strlen(nm);
        int64_t n = dp_tensor_numel(t);
        if (t->ndim != 1) continue;
        if (L > 12 && !strcmp(nm + L - 12, "running_mean")) fill(dp_tensor_f32(t), n, seed + (uint64_t)i, -0.1f, 0.1f);
        else if (L > 11 && !strcmp(nm + L - 11, "running_var")) fill(dp_tensor_f32(t), n, seed + (uint64_t)i, 0.01f, 2.0f);
        else if (L > 7 && !strcmp(nm + L - 7, ".weight") && strncmp(nm, "c.", 2)) fill(dp_tensor_f32(t), n, seed + (uint64_t)i, -2.0f, 2.0f);
        else if (L > 5 && !strcmp(nm + L - 5, ".bias") && strncmp(nm, "c.", 2)) fill(dp_tensor_f32(t), n, seed + (uint64_t)i, -1.0f, 1.0f);
    }
}

/* Meso-4: a no_grad graph (fused) against a graph with gradients (never
 * fused) over the same parameters, eval mode, then training mode. */
static void fusion_meso4(void **state) {
    (void)state;
    for (int k = 0; k < N_KERNELS; k++) {
        if (!dp_gemm_set_kernel(kernels[k])) continue;
        dp_ctx *ctx;
        dp_ctx_opts o = {.threads = 2, .seed = 5};
        assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
        dp_paramset *ps;
        dp_graph *gf, *gu;
        assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
        assert_int_equal(dp_graph_new(ctx, &gf), DP_OK);
        assert_int_equal(dp_graph_new(ctx, &gu), DP_OK);
        const int64_t sh[4] = {3, 3, 64, 72};
        dp_node *xf = dp_input(gf, "x", 4, sh), *xu = dp_input(gu, "x", 4, sh);
        dp_node *yf = dp_model_meso4(gf, ps, xf), *yu = dp_model_meso4(gu, ps, xu);
        assert_int_equal(dp_graph_mark_output(gf, yf), DP_OK);
        assert_int_equal(dp_graph_mark_output(gu, yu), DP_OK);
        assert_int_equal(dp_graph_set_no_grad(gf), DP_OK);
        assert_int_equal(dp_graph_compile(gf), DP_OK);
        assert_int_equal(dp_graph_compile(gu), DP_OK);
        assert_int_equal(count_fused(gf), 4); /* the four conv -> relu -> bn -> pool blocks */
        assert_int_equal(count_fused(gu), 0);
        assert_int_equal(dp_paramset_init(ps, 9), DP_OK);
        randomise_bn(ps, 100);
        fill(dp_tensor_f32(dp_node_value(xf)), dp_tensor_numel(dp_node_value(xf)), 7, -1.0f, 1.0f);
        assert_int_equal(dp_tensor_copy_from(dp_node_value(xu), dp_tensor_f32(dp_node_value(xf)),
                                             (size_t)dp_tensor_numel(dp_node_value(xf))),
                         DP_OK);
        for (int pass = 0; pass < 2; pass++) {
            assert_int_equal(dp_graph_run(gf), DP_OK);
            assert_int_equal(dp_graph_forward(gu, 1, &yu), DP_OK);
            assert_true(check_arr("fused meso4", val(yf), val(yu), 3, 1e-6, 1e-7));
        }
        /* training mode: the no_grad graph runs unfused (batch statistics) */
        dp_graph_set_training(gf, 1), dp_graph_set_training(gu, 1);
        dp_graph_set_dropout(gf, 0), dp_graph_set_dropout(gu, 0);
        assert_int_equal(dp_graph_run(gf), DP_OK);
        assert_int_equal(dp_graph_invalidate(gu), DP_OK);
        assert_int_equal(dp_graph_forward(gu, 1, &yu), DP_OK);
        assert_true(check_arr("meso4 training", val(yf), val(yu), 3, 1e-6, 1e-7));
        dp_graph_free(gf);
        dp_graph_free(gu);
        dp_paramset_free(ps);
        dp_ctx_free(ctx);
    }
}

/* relu -> bn -> maxpool on odd shapes, fast and general pooling, output the
 * pool itself; and a relu with two readers is not fused. */
static void fusion_shapes(void **state) {
    (void)state;
    static const struct { int64_t sh[4]; int k, s; } cases[] = {
        {{2, 3, 9, 13}, 2, 0}, {{3, 2, 17, 36}, 4, 0}, {{2, 3, 11, 12}, 3, 2}, {{1, 5, 64, 66}, 2, 0}};
    for (int kk = 0; kk < N_KERNELS; kk++) {
        if (!dp_gemm_set_kernel(kernels[kk])) continue;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int shared = 0; shared < 2; shared++) {
                dp_ctx *ctx;
                dp_ctx_opts o = {.threads = 3, .seed = 5};
                assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
                dp_paramset *ps;
                assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
                dp_graph *g[2];
                dp_node *x[2], *y[2], *extra[2] = {NULL, NULL};
                dp_pool_opts po = {0};
                po.kernel_h = po.kernel_w = cases[c].k;
                po.stride_h = po.stride_w = cases[c].s;
                for (int v = 0; v < 2; v++) {
                    assert_int_equal(dp_graph_new(ctx, &g[v]), DP_OK);
                    x[v] = dp_input(g[v], "x", 4, cases[c].sh);
                    dp_node *r = dp_relu(g[v], x[v]);
                    dp_node *b = dp_nn_batchnorm2d(g[v], ps, "bn", r, 0.1f, 1e-5f);
                    y[v] = dp_maxpool2d(g[v], b, &po);
                    if (shared) extra[v] = dp_scale(g[v], r, 2.0f); /* relu read twice: no fusion */
                    assert_int_equal(dp_graph_mark_output(g[v], y[v]), DP_OK);
                    if (shared) assert_int_equal(dp_graph_mark_output(g[v], extra[v]), DP_OK);
                    if (v == 0) assert_int_equal(dp_graph_set_no_grad(g[v]), DP_OK);
                    assert_int_equal(dp_graph_compile(g[v]), DP_OK);
                }
                assert_int_equal(count_fused(g[0]), shared ? 0 : 1);
                randomise_bn(ps, 200 + c);
                int64_t nx = dp_tensor_numel(dp_node_value(x[0]));
                fill(dp_tensor_f32(dp_node_value(x[0])), nx, 8 + c, -1.0f, 1.0f);
                dp_tensor_f32(dp_node_value(x[0]))[3] = NAN;
                assert_int_equal(dp_tensor_copy_from(dp_node_value(x[1]), dp_tensor_f32(dp_node_value(x[0])), (size_t)nx), DP_OK);
                for (int v = 0; v < 2; v++) assert_int_equal(dp_graph_run(g[v]), DP_OK);
                int64_t ny = dp_tensor_numel(dp_node_value(y[0]));
                assert_true(check_arr("fused pool", val(y[0]), val(y[1]), ny, 1e-6, 1e-7));
                assert_true(same_bits(val(y[0]), val(y[1]), ny)); /* in fact the same rounding */
                if (shared) assert_true(same_bits(val(extra[0]), val(extra[1]), nx));
                for (int v = 0; v < 2; v++) dp_graph_free(g[v]);
                dp_paramset_free(ps);
                dp_ctx_free(ctx);
            }
    }
}

/* conv -> relu -> bn -> max-pool in eval mode: the conv pools its own output
 * bands (DP_FUSE_CONV_RELU_BN_POOL) where the stride-1 band path applies and
 * the output sides are multiples of the pool; bit for bit the unfused graph's.
 * One image (bands split for the threads), pool 4, a bias, 3 threads; an
 * output width that is no multiple of the pool keeps the plain fusion. The
 * 8- and 16-channel cases take dp_dconv_s1_pool_band with AVX2: 3x3 and 5x5
 * taps (unrolled), 7x7 (the general loop), output rows of 6n, 6n + 2 and
 * 6n + 4 positions, and rows longer than its 240-position segments. */
static void fusion_conv_pool(void **state) {
    (void)state;
    static const struct {
        int64_t sh[4];
        int o, k, pad, pool, conv_fused;
    } cases[] = {{{2, 3, 64, 72}, 8, 3, 1, 2, 1},
                 {{1, 4, 40, 96}, 6, 5, 2, 4, 1},
                 {{3, 2, 24, 32}, 5, 3, 1, 2, 1},
                 {{2, 3, 30, 66}, 4, 3, 1, 4, 0},
                 {{2, 3, 12, 256}, 8, 3, 1, 2, 1},
                 {{1, 8, 10, 26}, 8, 5, 2, 2, 1},
                 {{2, 8, 8, 28}, 16, 5, 2, 2, 1},
                 {{1, 5, 6, 498}, 16, 7, 3, 2, 1}};
    for (int kk = 0; kk < N_KERNELS; kk++) {
        if (!dp_gemm_set_kernel(kernels[kk])) continue;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            dp_ctx *ctx;
            dp_ctx_opts o = {.threads = 3, .seed = 5};
            assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
            dp_paramset *ps;
            assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
            dp_graph *g[2];
            dp_node *x[2], *y[2];
            dp_pool_opts po = {0};
            po.kernel_h = po.kernel_w = cases[c].pool;
            dp_conv_opts co = {0};
            co.pad_h = co.pad_w = cases[c].pad;
            for (int v = 0; v < 2; v++) {
                assert_int_equal(dp_graph_new(ctx, &g[v]), DP_OK);
                x[v] = dp_input(g[v], "x", 4, cases[c].sh);
                dp_node *cv = dp_nn_conv2d(g[v], ps, "conv", x[v], cases[c].o, cases[c].k, cases[c].k, &co, 1, NULL);
                dp_node *b = dp_nn_batchnorm2d(g[v], ps, "bn", dp_relu(g[v], cv), 0.1f, 1e-5f);
                y[v] = dp_maxpool2d(g[v], b, &po);
                assert_int_equal(dp_graph_mark_output(g[v], y[v]), DP_OK);
                if (v == 0) assert_int_equal(dp_graph_set_no_grad(g[v]), DP_OK);
                assert_int_equal(dp_graph_compile(g[v]), DP_OK);
            }
            assert_int_equal(count_fused(g[0]), 1);
            assert_int_equal(y[0]->fuse, cases[c].conv_fused ? DP_FUSE_CONV_RELU_BN_POOL : DP_FUSE_RELU_BN_POOL);
            assert_int_equal(dp_paramset_init(ps, 3 + c), DP_OK);
            randomise_bn(ps, 300 + c);
            int64_t nx = dp_tensor_numel(dp_node_value(x[0]));
            fill(dp_tensor_f32(dp_node_value(x[0])), nx, 18 + c, -1.0f, 1.0f);
            assert_int_equal(dp_tensor_copy_from(dp_node_value(x[1]), dp_tensor_f32(dp_node_value(x[0])), (size_t)nx), DP_OK);
            for (int pass = 0; pass < 2; pass++) /* twice: nothing left over from the first run */
                for (int v = 0; v < 2; v++) assert_int_equal(dp_graph_run(g[v]), DP_OK);
            int64_t ny = dp_tensor_numel(dp_node_value(y[0]));
            assert_true(check_arr("fused conv pool", val(y[0]), val(y[1]), ny, 1e-6, 1e-7));
            assert_true(same_bits(val(y[0]), val(y[1]), ny));
            for (int v = 0; v < 2; v++) dp_graph_free(g[v]);
            dp_paramset_free(ps);
            dp_ctx_free(ctx);
        }
    }
}

/* ------------------------------------------------------------ multi-output passes */
/* relu -> batch norm -> max-pool in a graph with gradients: the relu's forward
 * takes the norm's sums, the norm's forward pools, the norm's backward expands
 * the pool's gradient itself and writes the relu's input gradient. Against the
 * same graph with extra zero-weight readers of the relu and the norm (which
 * turn those passes off): every value, running statistic and gradient the same,
 * in training and eval mode. read: 0, the relu's and the norm's own gradients
 * are read by nobody (the fused graph need not write them); 1, both are marked
 * outputs; 2, both are in the backward call's wrt list (with x): then they are
 * written, the same bits. */
static void multi_output_case(int k, int training, int threads, int read) {
    dp_ctx *ctx;
    dp_ctx_opts o = {.threads = threads, .seed = 5};
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    dp_paramset *ps[2];
    dp_graph *g[2];
    dp_node *x[2], *r[2], *b[2], *p[2], *w[2], *loss[2];
    const int64_t sh[4] = {3, 4, 4 * k + 2 * k, 4 * k + 3 * k + 1}; /* odd width: a column no window covers */
    for (int v = 0; v < 2; v++) {
        assert_int_equal(dp_paramset_new(ctx, &ps[v]), DP_OK);
        assert_int_equal(dp_graph_new(ctx, &g[v]), DP_OK);
        x[v] = dp_input(g[v], "x", 4, sh);
        assert_int_equal(dp_input_requires_grad(g[v], x[v]), DP_OK);
        r[v] = dp_relu(g[v], x[v]);
        b[v] = dp_nn_batchnorm2d(g[v], ps[v], "bn", r[v], 0.1f, 1e-5f);
        dp_pool_opts po = {0};
        po.kernel_h = po.kernel_w = k;
        p[v] = dp_maxpool2d(g[v], b[v], &po);
        dp_tensor *pv = dp_node_value(p[v]);
        w[v] = dp_input(g[v], "w", 4, pv->shape);
        loss[v] = dp_sum(g[v], dp_mul(g[v], p[v], w[v]), DP_AXIS_ALL, 0);
        if (v == 1) { /* zero-weight second readers */
            dp_node *z1 = dp_sum(g[v], dp_scale(g[v], r[v], 0.0f), DP_AXIS_ALL, 0);
            dp_node *z2 = dp_sum(g[v], dp_scale(g[v], b[v], 0.0f), DP_AXIS_ALL, 0);
            loss[v] = dp_add(g[v], loss[v], dp_add(g[v], z1, z2));
        }
        assert_int_equal(dp_graph_mark_output(g[v], loss[v]), DP_OK);
        if (read == 1) {
            assert_int_equal(dp_graph_mark_output(g[v], r[v]), DP_OK);
            assert_int_equal(dp_graph_mark_output(g[v], b[v]), DP_OK);
        }
        assert_int_equal(dp_graph_compile(g[v]), DP_OK);
        assert_int_equal(dp_graph_set_training(g[v], training), DP_OK);
        assert_int_equal(dp_paramset_init(ps[v], 1), DP_OK);
        randomise_bn(ps[v], 400);
        fill(dp_tensor_f32(dp_node_value(x[v])), dp_tensor_numel(dp_node_value(x[v])), 21, -1.0f, 1.0f);
        fill(dp_tensor_f32(dp_node_value(w[v])), dp_tensor_numel(dp_node_value(w[v])), 22, -1.0f, 1.0f);
    }
    assert_ptr_equal(r[0]->mo_next, b[0]);
    assert_ptr_equal(b[0]->mo_next, p[0]);
    assert_ptr_equal(b[0]->mo_prev, r[0]);
    assert_null(r[1]->mo_next);
    assert_null(b[1]->mo_next);
    for (int step = 0; step < 2; step++) {
        for (int v = 0; v < 2; v++) {
            assert_int_equal(dp_graph_run(g[v]), DP_OK);
            assert_int_equal(dp_paramset_zero_grad(ps[v]), DP_OK);
            /* in the fused graph the unread gradients keep whatever they held: make that visible */
            fill(dp_tensor_f32(dp_node_grad(r[v])), dp_tensor_numel(dp_node_value(r[v])), 30 + step, -1.0f, 1.0f);
            fill(dp_tensor_f32(dp_node_grad(b[v])), dp_tensor_numel(dp_node_value(b[v])), 40 + step, -1.0f, 1.0f);
            dp_node *const wrt[3] = {x[v], r[v], b[v]};
            assert_int_equal(dp_graph_backward(g[v], loss[v], read == 2 ? 3 : 0, read == 2 ? wrt : NULL), DP_OK);
        }
        dp_node *const nodes[2][4] = {{r[0], b[0], p[0], x[0]}, {r[1], b[1], p[1], x[1]}};
        for (int q = 0; q < 3; q++)
            assert_true(same_bits(val(nodes[0][q]), val(nodes[1][q]), dp_tensor_numel(dp_node_value(nodes[0][q]))));
        assert_true(check_arr("x grad", grad(x[0]), grad(x[1]), dp_tensor_numel(dp_node_value(x[0])), 0.0, 0.0));
        if (read) {
            assert_true(check_arr("relu grad", grad(r[0]), grad(r[1]), dp_tensor_numel(dp_node_value(r[0])), 0.0, 0.0));
            assert_true(check_arr("norm grad", grad(b[0]), grad(b[1]), dp_tensor_numel(dp_node_value(b[0])), 0.0, 0.0));
        }
        if (!read) { /* the fused graph did not write them (the passes ran): what was put there is still there */
            int64_t nr = dp_tensor_numel(dp_node_value(r[0]));
            float *want = malloc(sizeof(float) * (size_t)nr);
            assert_non_null(want);
            fill(want, nr, 30 + step, -1.0f, 1.0f);
            assert_true(same_bits(grad(r[0]), want, nr));
            fill(want, nr, 40 + step, -1.0f, 1.0f);
            assert_true(same_bits(grad(b[0]), want, nr));
            free(want);
        }
        if (read == 2) continue; /* no parameter gradients asked for */
        for (int i = 0; i < dp_paramset_count(ps[0]); i++) {
            dp_tensor *t0 = dp_paramset_at(ps[0], i), *t1 = dp_paramset_at(ps[1], i);
            assert_true(same_bits(dp_tensor_f32(t0), dp_tensor_f32(t1), dp_tensor_numel(t0))); /* running stats */
            if (!dp_paramset_is_buffer(ps[0], i))
                assert_true(same_bits(dp_tensor_f32(dp_param_grad(t0)), dp_tensor_f32(dp_param_grad(t1)), dp_tensor_numel(t0)));
        }
    }
    for (int v = 0; v < 2; v++) {
        dp_graph_free(g[v]);
        dp_paramset_free(ps[v]);
    }
    dp_ctx_free(ctx);
}
static void multi_output_passes(void **state) {
    (void)state;
    for (int kk = 0; kk < N_KERNELS; kk++) {
        if (!dp_gemm_set_kernel(kernels[kk])) continue;
        for (int k = 2; k <= 4; k += 2)
            for (int training = 0; training < 2; training++)
                for (int read = 0; read < 3; read++) multi_output_case(k, training, 3, read);
    }
    multi_output_case(2, 1, 1, 0);
    /* the streaming stores of large tensors (the relu's output, its input gradient), taken on this small graph */
    const int64_t keep = dp_stream_bytes;
    dp_stream_bytes = 0;
    multi_output_case(2, 1, 2, 0);
    multi_output_case(2, 1, 2, 2);
    dp_stream_bytes = keep;
}

/* batch norm -> relu / leaky_relu in a graph with gradients: the norm's forward
 * writes both values (planes in memory order), its backward takes the
 * activation's gradient and mask (recomputed from its input) and the activation
 * does nothing. Against the same graph with a zero-weight second reader of the
 * norm (which turns the fusion off): every value, running statistic and
 * gradient bit for bit, in training and eval mode, planes of 7x7 (the vector
 * tails), with a relu before the norm too (its multi-output pass alongside). */
static void bn_act_case(int act, int relu_before, int training, int threads, int64_t hw) {
    dp_ctx *ctx;
    dp_ctx_opts o = {.threads = threads, .seed = 5};
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    dp_paramset *ps[2];
    dp_graph *g[2];
    dp_node *x[2], *b[2], *a[2], *w[2], *loss[2];
    const int64_t sh[4] = {5, 6, hw, hw + 1};
    for (int v = 0; v < 2; v++) {
        assert_int_equal(dp_paramset_new(ctx, &ps[v]), DP_OK);
        assert_int_equal(dp_graph_new(ctx, &g[v]), DP_OK);
        x[v] = dp_input(g[v], "x", 4, sh);
        assert_int_equal(dp_input_requires_grad(g[v], x[v]), DP_OK);
        dp_node *in = relu_before ? dp_relu(g[v], x[v]) : x[v];
        b[v] = dp_nn_batchnorm2d(g[v], ps[v], "bn", in, 0.1f, 1e-5f);
        a[v] = act ? dp_leaky_relu(g[v], b[v], 0.2f) : dp_relu(g[v], b[v]);
        w[v] = dp_input(g[v], "w", 4, sh);
        loss[v] = dp_sum(g[v], dp_mul(g[v], a[v], w[v]), DP_AXIS_ALL, 0);
        if (v == 1) /* a zero-weight second reader of the norm */
            loss[v] = dp_add(g[v], loss[v], dp_sum(g[v], dp_scale(g[v], b[v], 0.0f), DP_AXIS_ALL, 0));
        assert_int_equal(dp_graph_mark_output(g[v], loss[v]), DP_OK);
        assert_int_equal(dp_graph_compile(g[v]), DP_OK);
        assert_int_equal(dp_graph_set_training(g[v], training), DP_OK);
        assert_int_equal(dp_paramset_init(ps[v], 1), DP_OK);
        randomise_bn(ps[v], 500);
        fill(dp_tensor_f32(dp_node_value(x[v])), dp_tensor_numel(dp_node_value(x[v])), 31, -1.0f, 1.0f);
        fill(dp_tensor_f32(dp_node_value(w[v])), dp_tensor_numel(dp_node_value(w[v])), 32, -1.0f, 1.0f);
    }
    assert_ptr_equal(b[0]->mo_act, a[0]);
    assert_null(b[1]->mo_act);
    const int64_t nx = dp_tensor_numel(dp_node_value(x[0]));
    for (int step = 0; step < 2; step++) {
        for (int v = 0; v < 2; v++) {
            assert_int_equal(dp_graph_run(g[v]), DP_OK);
            assert_int_equal(dp_paramset_zero_grad(ps[v]), DP_OK);
            assert_int_equal(dp_graph_backward(g[v], loss[v], 0, NULL), DP_OK);
        }
        assert_true(a[0]->mo_flags & DP_MO_BNACT);
        assert_true(same_bits(val(b[0]), val(b[1]), nx)); /* the norm's value is still written */
        assert_true(same_bits(val(a[0]), val(a[1]), nx));
        assert_true(check_arr("x grad", grad(x[0]), grad(x[1]), nx, 0.0, 0.0));
        for (int i = 0; i < dp_paramset_count(ps[0]); i++) {
            dp_tensor *t0 = dp_paramset_at(ps[0], i), *t1 = dp_paramset_at(ps[1], i);
            assert_true(same_bits(dp_tensor_f32(t0), dp_tensor_f32(t1), dp_tensor_numel(t0))); /* running stats */
            if (!dp_paramset_is_buffer(ps[0], i))
                assert_true(same_bits(dp_tensor_f32(dp_param_grad(t0)), dp_tensor_f32(dp_param_grad(t1)), dp_tensor_numel(t0)));
        }
    }
    /* the norm alone asked for: computed unfused, the activation then on its own */
    for (int v = 0; v < 2; v++) assert_int_equal(dp_graph_invalidate(g[v]), DP_OK);
    assert_int_equal(dp_graph_forward(g[0], 1, &b[0]), DP_OK);
    assert_false(a[0]->mo_flags & DP_MO_BNACT);
    assert_int_equal(dp_graph_forward(g[0], 1, &loss[0]), DP_OK);
    assert_int_equal(dp_graph_forward(g[1], 1, &loss[1]), DP_OK);
    assert_true(same_bits(val(a[0]), val(a[1]), nx));
    assert_int_equal(dp_paramset_zero_grad(ps[0]), DP_OK);
    assert_int_equal(dp_paramset_zero_grad(ps[1]), DP_OK);
    for (int v = 0; v < 2; v++) assert_int_equal(dp_graph_backward(g[v], loss[v], 1, &x[v]), DP_OK); /* x only */
    assert_true(check_arr("x grad (unfused pass)", grad(x[0]), grad(x[1]), nx, 0.0, 0.0));
    /* a fused pass, the norm's own gradient asked for by name: the activation's backward writes it */
    for (int v = 0; v < 2; v++) {
        assert_int_equal(dp_graph_run(g[v]), DP_OK);
        dp_node *const wrt[2] = {x[v], b[v]};
        assert_int_equal(dp_graph_backward(g[v], loss[v], 2, wrt), DP_OK);
    }
    assert_true(a[0]->mo_flags & DP_MO_BNACT);
    assert_true(check_arr("norm grad (wrt)", grad(b[0]), grad(b[1]), nx, 0.0, 0.0));
    assert_true(check_arr("x grad (wrt)", grad(x[0]), grad(x[1]), nx, 0.0, 0.0));
    for (int v = 0; v < 2; v++) {
        dp_graph_free(g[v]);
        dp_paramset_free(ps[v]);
    }
    dp_ctx_free(ctx);
}
static void bn_act_fused(void **state) {
    (void)state;
    for (int kk = 0; kk < N_KERNELS; kk++) {
        if (!dp_gemm_set_kernel(kernels[kk])) continue;
        for (int act = 0; act < 2; act++)
            for (int training = 0; training < 2; training++) {
                bn_act_case(act, 0, training, 3, 7);
                bn_act_case(act, 1, training, 2, 4);
            }
    }
    bn_act_case(1, 0, 1, 1, 14);
    /* no fusion: an output norm, a leaky_relu with a slope that is not finite */
    dp_ctx *ctx;
    dp_ctx_opts o = {.threads = 1, .seed = 5};
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    for (int c = 0; c < 2; c++) {
        dp_paramset *ps;
        dp_graph *g;
        assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
        assert_int_equal(dp_graph_new(ctx, &g), DP_OK);
        dp_node *x = dp_input(g, "x", 4, (const int64_t[]){2, 3, 4, 4});
        dp_node *b = dp_nn_batchnorm2d(g, ps, "bn", x, 0.1f, 1e-5f);
        dp_node *a = dp_leaky_relu(g, b, c ? INFINITY : 0.2f);
        assert_int_equal(dp_graph_mark_output(g, c ? a : b), DP_OK);
        assert_int_equal(dp_graph_mark_output(g, a), DP_OK);
        assert_int_equal(dp_graph_compile(g), DP_OK);
        assert_null(b->mo_act);
        dp_graph_free(g);
        dp_paramset_free(ps);
    }
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ chunked inference */
typedef dp_node *(*model_fn)(dp_graph *, dp_paramset *, dp_node *);

/* A no_grad graph runs in chunks of samples; the same model in a graph with
 * gradients never does: the outputs agree, in eval mode and in training mode
 * (whole batches there), and an intermediate value asked for after a chunked
 * run is computed again whole. */
static void chunked_case(model_fn model, const int64_t *sh, int64_t want_chunk) {
    dp_ctx *ctx;
    dp_ctx_opts o = {.threads = 3, .seed = 5};
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    dp_paramset *ps;
    dp_graph *gc, *gw;
    assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
    assert_int_equal(dp_graph_new(ctx, &gc), DP_OK);
    assert_int_equal(dp_graph_new(ctx, &gw), DP_OK);
    dp_node *xc = dp_input(gc, "x", 4, sh), *xw = dp_input(gw, "x", 4, sh);
    dp_node *yc = model(gc, ps, xc), *yw = model(gw, ps, xw);
    assert_int_equal(dp_graph_mark_output(gc, yc), DP_OK);
    assert_int_equal(dp_graph_mark_output(gw, yw), DP_OK);
    assert_int_equal(dp_graph_set_no_grad(gc), DP_OK);
    assert_int_equal(dp_graph_compile(gc), DP_OK);
    assert_int_equal(dp_graph_compile(gw), DP_OK);
    assert_int_equal(gc->chunk, want_chunk);
    assert_int_equal(gw->chunk, 0);
    assert_int_equal(dp_paramset_init(ps, 9), DP_OK);
    randomise_bn(ps, 300);
    int64_t nx = dp_tensor_numel(dp_node_value(xc)), ny = dp_tensor_numel(dp_node_value(yc));
    fill(dp_tensor_f32(dp_node_value(xc)), nx, 17, -1.0f, 1.0f);
    assert_int_equal(dp_tensor_copy_from(dp_node_value(xw), dp_tensor_f32(dp_node_value(xc)), (size_t)nx), DP_OK);
    assert_int_equal(dp_graph_forward(gw, 1, &yw), DP_OK);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(dp_graph_run(gc), DP_OK);
        assert_true(check_arr("chunked", val(yc), val(yw), ny, 1e-5, 1e-6));
    }
    /* an intermediate node (the second convolution's output) on demand */
    int conv = 0;
    for (int i = 0; i < gc->n_nodes && conv < 2; i++) {
        dp_node *nc = gc->nodes[i], *nw = gw->nodes[i];
        if (nc->op != DP_OP_CONV2D && nc->op != DP_OP_CONV_TRANSPOSE2D) continue;
        if (++conv < 2) continue;
        assert_int_equal(dp_graph_forward(gc, 1, &nc), DP_OK);
        assert_true(check_arr("intermediate", val(nc), val(nw), dp_tensor_numel(dp_node_value(nc)), 1e-5, 1e-6));
    }
    /* training mode: whole batches, batch statistics */
    dp_graph_set_training(gc, 1), dp_graph_set_training(gw, 1);
    dp_graph_set_dropout(gc, 0), dp_graph_set_dropout(gw, 0);
    assert_int_equal(dp_graph_run(gc), DP_OK);
    assert_int_equal(dp_graph_invalidate(gw), DP_OK);
    assert_int_equal(dp_graph_forward(gw, 1, &yw), DP_OK);
    assert_true(check_arr("training", val(yc), val(yw), ny, 1e-5, 1e-6));
    dp_graph_free(gc);
    dp_graph_free(gw);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

static void chunked_models(void **state) {
    (void)state;
    /* DP_TEST_VALGRIND=1 (memcheck, docs/security.md): the smallest batches that still run in several
     * chunks with a partial last one where there was one (the same code paths, ~40 % of the work) */
    const int vg = getenv("DP_TEST_VALGRIND") != NULL;
    /* Meso-4: 4 + 1. The largest value written is the first pool's, 512 KiB per image (conv1's 2 MiB
     * output is never written: the conv pools its own bands, DP_FUSE_CONV_RELU_BN_POOL) */
    chunked_case(dp_model_meso4, (const int64_t[]){5, 3, 256, 256}, 4);
    chunked_case(dp_model_mesoinception4, (const int64_t[]){vg ? 2 : 3, 3, 160, 192}, 1);
    chunked_case(dp_model_dcgan64_g, (const int64_t[]){vg ? 9 : 12, 100, 1, 1}, 8); /* 8 + 4 (8 + 1) */
    chunked_case(dp_model_dcgan64_d, (const int64_t[]){vg ? 9 : 10, 3, 64, 64}, 8);
}

/* Graphs that must run whole batches. */
static void not_chunked(void **state) {
    (void)state;
    for (int c = 0; c < 5; c++) {
        dp_ctx *ctx;
        dp_ctx_opts o = {.threads = 2, .seed = 5};
        assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
        dp_graph *g;
        assert_int_equal(dp_graph_new(ctx, &g), DP_OK);
        const int64_t sh[4] = {c == 4 ? 1 : 8, 4, 256, 256};
        dp_node *x = dp_input(g, "x", 4, sh), *y = dp_relu(g, x);
        switch (c) {
        case 0: y = dp_sum(g, y, DP_AXIS_ALL, 0); break;                     /* over the batch */
        case 1: y = dp_softmax(g, y, 0); break;                              /* along the batch */
        case 2: y = dp_batchnorm2d(g, y, NULL, NULL, NULL, NULL, 0.1f, 1e-5f); break; /* batch statistics */
        case 3: y = dp_mean(g, y, 0, 1); break;
        default: y = dp_tanh(g, y); break;                                   /* one sample */
        }
        assert_int_equal(dp_graph_mark_output(g, y), DP_OK);
        assert_int_equal(dp_graph_set_no_grad(g), DP_OK);
        assert_int_equal(dp_graph_compile(g), DP_OK);
        assert_int_equal(g->chunk, 0);
        dp_graph_free(g);
        dp_ctx_free(ctx);
    }
    /* without a marked output, dp_graph_run computes the last node: whole */
    {
        dp_ctx *ctx;
        dp_ctx_opts o = {.threads = 2, .seed = 5};
        assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
        dp_graph *g;
        assert_int_equal(dp_graph_new(ctx, &g), DP_OK);
        dp_node *x = dp_input(g, "x", 4, (const int64_t[]){5, 4, 256, 256});
        dp_node *y = dp_mean(g, dp_tanh(g, dp_relu(g, x)), 1, 0);
        assert_int_equal(dp_graph_set_no_grad(g), DP_OK);
        assert_int_equal(dp_graph_compile(g), DP_OK);
        assert_int_equal(g->chunk, 2);
        fill(dp_tensor_f32(dp_node_value(x)), dp_tensor_numel(dp_node_value(x)), 3, -1.0f, 1.0f);
        assert_int_equal(dp_graph_run(g), DP_OK);
        const float *xv = val(x), *yv = val(y);
        for (int64_t i = 0; i < 5; i++)
            for (int64_t p = 0; p < 256 * 256; p += 4099) {
                double s = 0.0;
                for (int c = 0; c < 4; c++) s += tanhf(fmaxf(xv[(i * 4 + c) * 65536 + p], 0.0f));
                assert_true(near(yv[i * 65536 + p], s / 4.0, 1e-6, 1e-7));
            }
        dp_graph_free(g);
        dp_ctx_free(ctx);
    }
    /* and the same graph without the offending op does run in chunks */
    dp_ctx *ctx;
    dp_ctx_opts o = {.threads = 2, .seed = 5};
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    dp_graph *g;
    assert_int_equal(dp_graph_new(ctx, &g), DP_OK);
    dp_node *y = dp_mean(g, dp_relu(g, dp_input(g, "x", 4, (const int64_t[]){8, 4, 256, 256})), 1, 1);
    assert_int_equal(dp_graph_mark_output(g, y), DP_OK);
    assert_int_equal(dp_graph_set_no_grad(g), DP_OK);
    assert_int_equal(dp_graph_compile(g), DP_OK);
    assert_int_equal(g->chunk, 2); /* relu's output: 1 MiB per sample */
    dp_graph_free(g);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ DP_KERNEL */
static void env_var_picks_tables(void **state) {
    (void)state;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        printf("  (no /proc/self/exe: skipped)\n");
        return;
    }
    self[len] = 0;
    for (int k = 0; k < N_KERNELS; k++) {
        if (!dp_gemm_set_kernel(kernels[k])) continue;
        char cmd[4200], got[64] = "";
        snprintf(cmd, sizeof cmd, "DP_KERNEL=%s '%s' --ew-name", kernels[k], self);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        if (!fgets(got, sizeof got, f)) got[0] = 0;
        pclose(f);
        got[strcspn(got, "\n")] = 0;
        assert_string_equal(got, kernels[k]);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--ew-name")) { /* for env_var_picks_tables */
        puts(dp_ew()->name);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kernels_unary),
        cmocka_unit_test(kernels_binary),
        cmocka_unit_test(kernels_sums_norm),
        cmocka_unit_test(kernels_maxpool),
        cmocka_unit_test(kernels_relu_stream),
        cmocka_unit_test(kernels_losses),
        cmocka_unit_test(kernels_adam),
        cmocka_unit_test(variants_bit_identical),
        cmocka_unit_test(ops_unary),
        cmocka_unit_test(ops_binary),
        cmocka_unit_test(ops_maxpool),
        cmocka_unit_test(ops_norm_pool_loss),
        cmocka_unit_test(grads_added_or_stored),
        cmocka_unit_test(thread_count_independent),
        cmocka_unit_test(fusion_meso4),
        cmocka_unit_test(fusion_shapes),
        cmocka_unit_test(fusion_conv_pool),
        cmocka_unit_test(multi_output_passes),
        cmocka_unit_test(bn_act_fused),
        cmocka_unit_test(chunked_models),
        cmocka_unit_test(not_chunked),
        cmocka_unit_test(env_var_picks_tables),
    };
    return cmocka_run_group_tests_name("vector ops", tests, NULL, NULL);
}
