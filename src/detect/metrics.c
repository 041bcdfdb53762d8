/* Metrics (AUC, AP, ECE, ROC) and logistic regression (IRLS) for the
 * spectral detector, the fusion and Platt scaling. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "doppel/detect.h"

double dp_sigmoid_d(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

float dp_logit(float p) {
    if (!(p >= 1e-7f)) p = 1e-7f; /* NaN → clamp too */
    if (p > 1.0f - 1e-7f) p = 1.0f - 1e-7f;
    return (float)log((double)p / (1.0 - (double)p));
}

typedef struct sl {
    float s;
    int l;
} sl;
static int cmp_desc(const void *a, const void *b) {
    float x = ((const sl *)a)->s, y = ((const sl *)b)->s;
    return x > y ? -1 : x < y ? 1 : 0;
}
/* Sorted by score, descending; NULL on failure. */
static sl *sorted(const float *score, const int *label, int64_t n) {
    sl *v = malloc(sizeof(sl) * (size_t)(n > 0 ? n : 1));
    if (!v) return NULL;
    for (int64_t i = 0; i < n; i++) v[i].s = score[i], v[i].l = label[i] != 0;
    qsort(v, (size_t)n, sizeof(sl), cmp_desc);
    return v;
}

double dp_metric_auc(const float *score, const int *label, int64_t n) {
    sl *v = sorted(score, label, n);
    if (!v) return NAN;
    double pos = 0, neg = 0, area = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        double p = 0, q = 0;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].l) p++;
            else q++;
            j++;
        }
        /* negatives in this tie group: each outranked by all positives before + half of the tied ones */
        area += q * (pos + 0.5 * p);
        pos += p;
        neg += q;
        i = j;
    }
    free(v);
    if (pos == 0 || neg == 0) return NAN;
    return area / (pos * neg);
}

double dp_metric_ap(const float *score, const int *label, int64_t n) {
    sl *v = sorted(score, label, n);
    if (!v) return NAN;
    double P = 0;
    for (int64_t i = 0; i < n; i++) P += v[i].l;
    if (P == 0) {
        free(v);
        return NAN;
    }
    double tp = 0, fp = 0, ap = 0, prev_r = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].l) tp++;
            else fp++;
            j++;
        }
        double r = tp / P, pr = tp / (tp + fp);
        ap += (r - prev_r) * pr;
        prev_r = r;
        i = j;
    }
    free(v);
    return ap;
}

double dp_metric_ece(const float *p, const int *label, int64_t n, int n_bins) {
    if (n <= 0 || n_bins <= 0 || n_bins > 1000) return NAN;
    double sp[1000] = {0}, sy[1000] = {0}, c[1000] = {0};
    for (int64_t i = 0; i < n; i++) {
        double q = p[i];
        if (!(q >= 0)) q = 0;
        if (q > 1) q = 1;
        int b = (int)(q * n_bins);
        if (b >= n_bins) b = n_bins - 1;
        sp[b] += q;
        sy[b] += label[i] != 0;
        c[b]++;
    }
    double e = 0;
    for (int b = 0; b < n_bins; b++)
        if (c[b] > 0) e += fabs(sp[b] - sy[b]) / (double)n;
    return e;
}

int64_t dp_metric_roc(const float *score, const int *label, int64_t n, float *fpr, float *tpr) {
    sl *v = sorted(score, label, n);
    if (!v) return 0;
    double P = 0, N = 0;
    for (int64_t i = 0; i < n; i++) {
        P += v[i].l;
        N += !v[i].l;
    }
    int64_t k = 0;
    fpr[k] = 0, tpr[k] = 0, k++;
    double tp = 0, fp = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].l) tp++;
            else fp++;
            j++;
        }
        fpr[k] = N > 0 ? (float)(fp / N) : 0;
        tpr[k] = P > 0 ? (float)(tp / P) : 0;
        k++;
        i = j;
    }
    free(v);
    return k;
}

/* Solve A x = b (d×d, symmetric positive definite) by Cholesky; 0 on failure. */
static int chol_solve(double *A, double *b, int d) {
    for (int j = 0; j < d; j++) {
        double s = A[j * d + j];
        for (int k = 0; k < j; k++) s -= A[j * d + k] * A[j * d + k];
        if (!(s > 0)) return 0;
        double l = sqrt(s);
        A[j * d + j] = l;
        for (int i = j + 1; i < d; i++) {
            double t = A[i * d + j];
            for (int k = 0; k < j; k++) t -= A[i * d + k] * A[j * d + k];
            A[i * d + j] = t / l;
        }
    }
    for (int i = 0; i < d; i++) {
        double t = b[i];
        for (int k = 0; k < i; k++) t -= A[i * d + k] * b[k];
        b[i] = t / A[i * d + i];
    }
    for (int i = d - 1; i >= 0; i--) {
        double t = b[i];
        for (int k = i + 1; k < d; k++) t -= A[k * d + i] * b[k];
        b[i] = t / A[i * d + i];
    }
    return 1;
}

dp_status dp_logreg_fit(dp_ctx *ctx, const float *x, const int *y, int64_t n, int d, double l2, float *w) {
    if (!x || !y || !w) return dp_error(ctx, DP_ERR_NULL, "dp_logreg_fit: NULL argument");
    if (d < 1 || d > 256 || n < 2) return dp_error(ctx, DP_ERR_ARG, "dp_logreg_fit: %d features, %lld samples", d, (long long)n);
    int D = d + 1;
    double *wk = calloc((size_t)D * D + 3 * (size_t)D, sizeof(double));
    if (!wk) return dp_error(ctx, DP_ERR_NOMEM, "dp_logreg_fit: out of memory");
    double *H = wk, *g = H + (size_t)D * D, *beta = g + D, *xi = beta + D;
    /* a tiny ridge keeps separable data finite; l2 is the user's penalty */
    double ridge = l2 > 1e-6 ? l2 : 1e-6;
    dp_status st = DP_OK;
    for (int it = 0; it < 100; it++) {
        memset(H, 0, sizeof(double) * (size_t)D * D);
        memset(g, 0, sizeof(double) * (size_t)D);
        for (int64_t i = 0; i < n; i++) {
            for (int j = 0; j < d; j++) xi[j] = x[i * d + j];
            xi[d] = 1;
            double z = 0;
            for (int j = 0; j < D; j++) z += beta[j] * xi[j];
            double p = dp_sigmoid_d(z), r = p - (y[i] != 0), s = p * (1 - p);
            if (s < 1e-10) s = 1e-10;
            for (int j = 0; j < D; j++) {
                g[j] += r * xi[j];
                for (int k = 0; k <= j; k++) H[j * D + k] += s * xi[j] * xi[k];
            }
        }
        for (int j = 0; j < D; j++)
            for (int k = 0; k < j; k++) H[k * D + j] = H[j * D + k];
        for (int j = 0; j < d; j++) {
            g[j] += 2 * ridge * beta[j];
            H[j * D + j] += 2 * ridge;
        }
        H[d * D + d] += 1e-9;
        if (!chol_solve(H, g, D)) {
            st = dp_error(ctx, DP_ERR_NUMERIC, "dp_logreg_fit: singular Hessian");
            break;
        }
        double step = 0;
        for (int j = 0; j < D; j++) {
            beta[j] -= g[j];
            step += g[j] * g[j];
            if (!isfinite(beta[j])) st = dp_error(ctx, DP_ERR_NUMERIC, "dp_logreg_fit: diverged");
        }
        if (st != DP_OK || step < 1e-18) break;
    }
    if (st == DP_OK)
        for (int j = 0; j < D; j++) w[j] = (float)beta[j];
    free(wk);
    return st;
}
