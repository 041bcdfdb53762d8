/* GAN quality metrics without downloading anything (docs/gan.md, "Measuring"):
 *
 *  - FID-FMNIST-doppelcnn: the Fréchet distance between Gaussians fitted to
 *    the penultimate-layer features (dense 128 + ReLU) of a classifier doppel
 *    trained itself (`doppel classify train`), NOT Inception features: its
 *    values are not comparable with published FIDs. The matrix square root is
 *    a symmetric eigen-decomposition (cyclic Jacobi, in double) of
 *    S1^{1/2} S2 S1^{1/2}, which has the same trace of square root as S1 S2.
 *  - precision / recall (Kynkäänniemi et al. 2019): k-nearest-neighbour balls
 *    around each real (fake) feature vector approximate the manifolds.
 *  - spectral distance: the azimuthally averaged log power spectrum (Durall
 *    et al. 2020, the same profile as the spectral detector,
 *    dp_spectral_features) averaged over each set; the distance is the MEAN
 *    SQUARED difference of the two 1-D profiles. */
#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/parse.h"
#include "doppel/detect.h"
#include "doppel/gan.h"

/* ------------------------------------------------------------ linear algebra */
dp_status dp_sym_eigen(dp_ctx *ctx, const double *a, int d, double *evals, double *evecs) {
    if (!a || !evals || !evecs) return dp_error(ctx, DP_ERR_NULL, "dp_sym_eigen: NULL argument");
    if (d < 1 || d > 8192) return dp_error(ctx, DP_ERR_ARG, "dp_sym_eigen: dimension %d out of range 1..8192", d);
    size_t dd = (size_t)d * (size_t)d;
    double *A = dp_malloc(ctx, sizeof(double) * dd);
    if (!A) return dp_error(ctx, DP_ERR_NOMEM, "dp_sym_eigen: out of memory (%d x %d)", d, d);
    double norm = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double v = 0.5 * (a[(size_t)i * d + j] + a[(size_t)j * d + i]); /* symmetrise */
            if (!isfinite(v)) {
                dp_free(ctx, A);
                return dp_error(ctx, DP_ERR_NUMERIC, "dp_sym_eigen: the matrix has a non-finite entry at (%d, %d)", i, j);
            }
            A[(size_t)i * d + j] = v;
            norm += v * v;
        }
    for (size_t i = 0; i < dd; i++) evecs[i] = 0;
    for (int i = 0; i < d; i++) evecs[(size_t)i * d + i] = 1;
    double tol = 1e-30 + 1e-26 * norm; /* squared off-diagonal mass considered zero */
    int sweep;
    for (sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) off += A[(size_t)p * d + q] * A[(size_t)p * d + q];
        if (off <= tol) break;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = A[(size_t)p * d + q];
                if (apq == 0) continue;
                double app = A[(size_t)p * d + p], aqq = A[(size_t)q * d + q];
                double theta = (aqq - app) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < d; k++) { /* columns p, q */
                    double akp = A[(size_t)k * d + p], akq = A[(size_t)k * d + q];
                    A[(size_t)k * d + p] = c * akp - s * akq;
                    A[(size_t)k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) { /* rows p, q */
                    double apk = A[(size_t)p * d + k], aqk = A[(size_t)q * d + k];
                    A[(size_t)p * d + k] = c * apk - s * aqk;
                    A[(size_t)q * d + k] = s * apk + c * aqk;
                }
                A[(size_t)p * d + q] = A[(size_t)q * d + p] = 0;
                for (int k = 0; k < d; k++) {
                    double vkp = evecs[(size_t)k * d + p], vkq = evecs[(size_t)k * d + q];
                    evecs[(size_t)k * d + p] = c * vkp - s * vkq;
                    evecs[(size_t)k * d + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < d; i++) evals[i] = A[(size_t)i * d + i];
    dp_free(ctx, A);
    if (sweep == 100) return dp_error(ctx, DP_ERR_NUMERIC, "dp_sym_eigen: Jacobi did not converge in 100 sweeps (d = %d)", d);
    return DP_OK;
}

dp_status dp_sqrtm_psd(dp_ctx *ctx, const double *a, int d, double *out) {
    if (!a || !out) return dp_error(ctx, DP_ERR_NULL, "dp_sqrtm_psd: NULL argument");
    if (d < 1 || d > 8192) return dp_error(ctx, DP_ERR_ARG, "dp_sqrtm_psd: dimension %d out of range 1..8192", d);
    size_t dd = (size_t)d * (size_t)d;
    double *V = dp_malloc(ctx, sizeof(double) * (dd + (size_t)d));
    if (!V) return dp_error(ctx, DP_ERR_NOMEM, "dp_sqrtm_psd: out of memory");
    double *L = V + dd;
    dp_status s = dp_sym_eigen(ctx, a, d, L, V);
    if (s == DP_OK) {
        for (int k = 0; k < d; k++) L[k] = L[k] > 0 ? sqrt(L[k]) : 0; /* rounding can make tiny negatives */
        for (int i = 0; i < d; i++)
            for (int j = i; j < d; j++) {
                double v = 0;
                for (int k = 0; k < d; k++) v += V[(size_t)i * d + k] * L[k] * V[(size_t)j * d + k];
                out[(size_t)i * d + j] = out[(size_t)j * d + i] = v;
            }
    }
    dp_free(ctx, V);
    return s;
}

dp_status dp_mean_cov(dp_ctx *ctx, const float *x, int64_t n, int d, double *mean, double *cov) {
    if (!x || !mean || !cov) return dp_error(ctx, DP_ERR_NULL, "dp_mean_cov: NULL argument");
    if (n < 2 || d < 1) return dp_error(ctx, DP_ERR_ARG, "dp_mean_cov: needs at least 2 vectors of dimension >= 1 (got %lld of %d)", (long long)n, d);
    double *row = dp_malloc(ctx, sizeof(double) * (size_t)d);
    if (!row) return dp_error(ctx, DP_ERR_NOMEM, "dp_mean_cov: out of memory");
    for (int j = 0; j < d; j++) mean[j] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mean[j] += x[i * d + j];
    for (int j = 0; j < d; j++) mean[j] /= (double)n;
    memset(cov, 0, sizeof(double) * (size_t)d * (size_t)d);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) row[j] = x[i * d + j] - mean[j];
        for (int a = 0; a < d; a++) {
            double ra = row[a];
            if (ra == 0) continue;
            double *c = cov + (size_t)a * d;
            for (int b = a; b < d; b++) c[b] += ra * row[b];
        }
    }
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) cov[(size_t)b * d + a] = cov[(size_t)a * d + b] /= (double)(n - 1); /* unbiased, as numpy.cov */
    dp_free(ctx, row);
    return DP_OK;
}

dp_status dp_frechet_distance(dp_ctx *ctx, const double *mu1, const double *cov1, const double *mu2, const double *cov2, int d,
                              double *out) {
    if (!mu1 || !cov1 || !mu2 || !cov2 || !out) return dp_error(ctx, DP_ERR_NULL, "dp_frechet_distance: NULL argument");
    if (d < 1 || d > 8192) return dp_error(ctx, DP_ERR_ARG, "dp_frechet_distance: dimension %d out of range 1..8192", d);
    size_t dd = (size_t)d * (size_t)d;
    double *R = dp_malloc(ctx, sizeof(double) * (3 * dd + (size_t)d));
    if (!R) return dp_error(ctx, DP_ERR_NOMEM, "dp_frechet_distance: out of memory (d = %d)", d);
    double *T = R + dd, *M = T + dd, *L = M + dd;
    dp_status s = dp_sqrtm_psd(ctx, cov1, d, R);
    if (s == DP_OK) {
        /* M = R S2 R (symmetric PSD): tr sqrt(M) = tr sqrt(S1 S2) */
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) {
                double v = 0;
                for (int k = 0; k < d; k++) v += R[(size_t)i * d + k] * cov2[(size_t)k * d + j];
                T[(size_t)i * d + j] = v;
            }
        for (int i = 0; i < d; i++)
            for (int j = i; j < d; j++) {
                double v = 0;
                for (int k = 0; k < d; k++) v += T[(size_t)i * d + k] * R[(size_t)k * d + j];
                M[(size_t)i * d + j] = M[(size_t)j * d + i] = v;
            }
        s = dp_sym_eigen(ctx, M, d, L, T);
    }
    if (s == DP_OK) {
        double dm = 0, tr = 0, trs = 0;
        for (int i = 0; i < d; i++) {
            dm += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
            tr += cov1[(size_t)i * d + i] + cov2[(size_t)i * d + i];
            trs += L[i] > 0 ? sqrt(L[i]) : 0;
        }
        double v = dm + tr - 2 * trs;
        if (v < 0 && v > -1e-9 * (tr + dm + 1e-300)) v = 0; /* rounding around an exact 0 */
        *out = v;
    }
    dp_free(ctx, R);
    return s;
}

dp_status dp_fid_from_features(dp_ctx *ctx, const float *a, int64_t na, const float *b, int64_t nb, int d, double *out) {
    if (!a || !b || !out) return dp_error(ctx, DP_ERR_NULL, "dp_fid_from_features: NULL argument");
    if (d < 1 || d > 8192) return dp_error(ctx, DP_ERR_ARG, "dp_fid_from_features: dimension %d out of range 1..8192", d);
    size_t dd = (size_t)d * (size_t)d;
    double *m1 = dp_malloc(ctx, sizeof(double) * (2 * dd + 2 * (size_t)d));
    if (!m1) return dp_error(ctx, DP_ERR_NOMEM, "dp_fid_from_features: out of memory");
    double *m2 = m1 + d, *c1 = m2 + d, *c2 = c1 + dd;
    dp_status s = dp_mean_cov(ctx, a, na, d, m1, c1);
    if (s == DP_OK) s = dp_mean_cov(ctx, b, nb, d, m2, c2);
    if (s == DP_OK) s = dp_frechet_distance(ctx, m1, c1, m2, c2, d, out);
    dp_free(ctx, m1);
    return s;
}

/* ------------------------------------------------------------ precision / recall */
static double sqdist(const float *x, const float *y, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) {
        double t = (double)x[j] - (double)y[j];
        s += t * t;
    }
    return s;
}

/* radius2[i] = squared distance from x_i to its k-th nearest neighbour in x (itself excluded). */
static void knn_radii(const float *x, int64_t n, int d, int k, double *radius2, double *best) {
    for (int64_t i = 0; i < n; i++) {
        int m = 0; /* best[0..m) ascending, the k smallest so far */
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double v = sqdist(x + i * d, x + j * d, d);
            if (m == k && v >= best[k - 1]) continue;
            int p = m < k ? m++ : k - 1;
            while (p > 0 && best[p - 1] > v) {
                best[p] = best[p - 1];
                p--;
            }
            best[p] = v;
        }
        radius2[i] = best[k - 1];
    }
}

/* Share of the points y that lie inside at least one ball (x_i, radius_i). */
static double coverage(const float *x, const double *r2, int64_t nx, const float *y, int64_t ny, int d) {
    int64_t in = 0;
    for (int64_t j = 0; j < ny; j++)
        for (int64_t i = 0; i < nx; i++)
            if (sqdist(x + i * d, y + j * d, d) <= r2[i]) {
                in++;
                break;
            }
    return (double)in / (double)ny;
}

dp_status dp_precision_recall(dp_ctx *ctx, const float *real, int64_t nr, const float *fake, int64_t nf, int d, int k,
                              double *precision, double *recall) {
    if (!real || !fake || !precision || !recall) return dp_error(ctx, DP_ERR_NULL, "dp_precision_recall: NULL argument");
    if (k < 1 || d < 1 || nr <= k || nf <= k)
        return dp_error(ctx, DP_ERR_ARG, "dp_precision_recall: needs k >= 1 and more than k vectors in each set (k %d, %lld real, %lld generated)",
                        k, (long long)nr, (long long)nf);
    double *r_real = dp_malloc(ctx, sizeof(double) * (size_t)(nr + nf + k));
    if (!r_real) return dp_error(ctx, DP_ERR_NOMEM, "dp_precision_recall: out of memory");
    double *r_fake = r_real + nr, *best = r_fake + nf;
    knn_radii(real, nr, d, k, r_real, best);
    knn_radii(fake, nf, d, k, r_fake, best);
    *precision = coverage(real, r_real, nr, fake, nf, d); /* generated images on the real manifold */
    *recall = coverage(fake, r_fake, nf, real, nr, d);    /* real images on the generated manifold */
    dp_free(ctx, r_real);
    return DP_OK;
}

/* ------------------------------------------------------------ spectral profile */
dp_status dp_spectral_profile(dp_ctx *ctx, const float *imgs, int64_t n, int c, int h, int w, double *profile) {
    if (!imgs || !profile) return dp_error(ctx, DP_ERR_NULL, "dp_spectral_profile: NULL argument");
    if (n < 1 || (c != 1 && c != 3) || h != w || h < 8 || h % 2 || h > 2 * DP_SPECTRAL_MAX)
        return dp_error(ctx, DP_ERR_ARG, "dp_spectral_profile: needs n >= 1 square images with an even side in 8..%d and 1 or 3 channels (got %lld of %dx%dx%d)",
                        2 * DP_SPECTRAL_MAX, (long long)n, c, h, w);
    int nb = h / 2;
    float feat[DP_SPECTRAL_MAX];
    for (int r = 0; r < nb; r++) profile[r] = 0;
    for (int64_t i = 0; i < n; i++) {
        dp_image im = {.channels = c, .height = h, .width = w, .data = (float *)imgs + i * (int64_t)c * h * w};
        dp_status s = dp_spectral_features(ctx, &im, feat, nb);
        if (s != DP_OK) return s;
        for (int r = 0; r < nb; r++) profile[r] += feat[r];
    }
    for (int r = 0; r < nb; r++) profile[r] /= (double)n;
    return DP_OK;
}

double dp_spectral_distance(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return n > 0 ? s / n : 0;
}

/* ------------------------------------------------------------ the feature model */
struct dp_feature_model {
    dp_ctx *ctx;
    dp_paramset *ps;
    dp_graph *g;
    dp_node *x, *feat;
    int c, h, w, dim, batch;
    float mean[3], std[3];
    char fid_name[96];
};

#define FEAT_BATCH 64

dp_status dp_feature_model_load(dp_ctx *ctx, const char *path, dp_feature_model **out) {
    if (!path || !out) return dp_error(ctx, DP_ERR_NULL, "dp_feature_model_load: NULL argument");
    *out = NULL;
    char arch[64], input[64], nm[128], nsd[128];
    int chw[3];
    dp_status s = dp_checkpoint_meta(ctx, path, "doppel.arch", arch, sizeof arch);
    if (s == DP_ERR_NOT_FOUND) return dp_error(ctx, s, "%s: no doppel.arch metadata (not a doppel classifier)", path);
    if (s != DP_OK) return s;
    if (strcmp(arch, "classify-cnn") && strcmp(arch, "classify-mlp"))
        return dp_error(ctx, DP_ERR_ARG, "%s: model arch is '%s'; the features come from a classifier written by 'doppel classify train' (classify-cnn or classify-mlp)",
                        path, arch);
    dp_feature_model *m = dp_calloc(ctx, sizeof *m);
    if (!m) return dp_error(ctx, DP_ERR_NOMEM, "dp_feature_model_load: out of memory");
    m->ctx = ctx;
    m->batch = FEAT_BATCH;
    if (dp_checkpoint_meta(ctx, path, "doppel.input", input, sizeof input) != DP_OK ||
        !dp_parse_ints(input, ',', 3, 1, 4096, chw) || (chw[0] != 1 && chw[0] != 3) ||
        dp_checkpoint_meta(ctx, path, "doppel.norm_mean", nm, sizeof nm) != DP_OK ||
        dp_checkpoint_meta(ctx, path, "doppel.norm_std", nsd, sizeof nsd) != DP_OK ||
        !dp_parse_f32s(nm, ',', chw[0], -FLT_MAX, FLT_MAX, m->mean) ||
        !dp_parse_f32s(nsd, ',', chw[0], -FLT_MAX, FLT_MAX, m->std)) {
        dp_free(ctx, m);
        return dp_error(ctx, DP_ERR_FORMAT, "%s: missing or invalid doppel.input / doppel.norm_mean / doppel.norm_std metadata", path);
    }
    m->c = chw[0], m->h = chw[1], m->w = chw[2];
    /* The metric's name says whose features it uses: FID-FMNIST-doppelcnn for a
     * classifier of Fashion-MNIST, FID-<folder>-doppelenc for one trained on a
     * folder (e.g. FID-faces-doppelenc, models/doppel-faceenc.safetensors). */
    char dsn[4096];
    if (dp_checkpoint_meta(ctx, path, "doppel.dataset", dsn, sizeof dsn) == DP_OK && strcmp(dsn, "fashion-mnist")) {
        size_t L = strlen(dsn);
        while (L > 1 && dsn[L - 1] == '/') dsn[--L] = 0;
        const char *b = strrchr(dsn, '/');
        b = b ? b + 1 : dsn;
        char clean[48];
        size_t k = 0;
        for (; *b && k + 1 < sizeof clean; b++)
            if (isalnum((unsigned char)*b) || *b == '-' || *b == '_') clean[k++] = *b;
        clean[k] = 0;
        snprintf(m->fid_name, sizeof m->fid_name, "FID-%s-doppelenc", k ? clean : "folder");
    } else {
        snprintf(m->fid_name, sizeof m->fid_name, "FID-FMNIST-doppelcnn");
    }
    dp_ctx_clear_error(ctx);
    /* The classifier of `doppel classify` up to its penultimate layer (same
     * parameter names; fc2 is in the file but not needed). */
    if ((s = dp_paramset_new(ctx, &m->ps)) != DP_OK || (s = dp_graph_new(ctx, &m->g)) != DP_OK) goto fail;
    m->x = dp_input(m->g, "x", 4, (int64_t[]){m->batch, m->c, m->h, m->w});
    dp_node *h;
    if (!strcmp(arch, "classify-cnn")) {
        dp_conv_opts same = {.same = 1};
        dp_pool_opts pool = {.kernel_h = 2, .kernel_w = 2};
        h = dp_nn_conv2d(m->g, m->ps, "conv1", m->x, 32, 3, 3, &same, 0, NULL);
        h = dp_maxpool2d(m->g, dp_relu(m->g, dp_nn_batchnorm2d(m->g, m->ps, "bn1", h, 0.1f, 1e-5f)), &pool);
        h = dp_nn_conv2d(m->g, m->ps, "conv2", h, 64, 3, 3, &same, 0, NULL);
        h = dp_maxpool2d(m->g, dp_relu(m->g, dp_nn_batchnorm2d(m->g, m->ps, "bn2", h, 0.1f, 1e-5f)), &pool);
        m->feat = dp_relu(m->g, dp_nn_dense(m->g, m->ps, "fc1", dp_flatten(m->g, h), 128, 1, NULL));
        m->dim = 128;
    } else {
        m->feat = dp_relu(m->g, dp_nn_dense(m->g, m->ps, "fc1", dp_flatten(m->g, m->x), 256, 1, NULL));
        m->dim = 256;
    }
    dp_graph_mark_output(m->g, m->feat);
    if ((s = dp_graph_set_no_grad(m->g)) != DP_OK || (s = dp_graph_compile(m->g)) != DP_OK ||
        (s = dp_graph_set_training(m->g, 0)) != DP_OK)
        goto fail;
    if ((s = dp_checkpoint_load(path, m->ps, NULL)) != DP_OK) goto fail;
    *out = m;
    return DP_OK;
fail:
    dp_feature_model_free(m);
    return s;
}

void dp_feature_model_free(dp_feature_model *m) {
    if (!m) return;
    dp_graph_free(m->g);
    dp_paramset_free(m->ps);
    dp_free(m->ctx, m);
}
int dp_feature_model_dim(const dp_feature_model *m) { return m ? m->dim : 0; }
const char *dp_feature_model_fid_name(const dp_feature_model *m) { return m ? m->fid_name : "FID"; }
void dp_feature_model_shape(const dp_feature_model *m, int *c, int *h, int *w) {
    if (c) *c = m ? m->c : 0;
    if (h) *h = m ? m->h : 0;
    if (w) *w = m ? m->w : 0;
}

dp_status dp_feature_model_run(dp_feature_model *m, const float *imgs, int64_t n, float *out) {
    if (!m || !imgs || !out) return dp_error(m ? m->ctx : NULL, DP_ERR_NULL, "dp_feature_model_run: NULL argument");
    int64_t px = (int64_t)m->h * m->w, per = m->c * px;
    float *x = dp_tensor_f32(dp_node_value(m->x));
    for (int64_t off = 0; off < n; off += m->batch) {
        int64_t b = n - off < m->batch ? n - off : m->batch;
        for (int64_t i = 0; i < m->batch; i++) {
            const float *src = imgs + (off + (i < b ? i : 0)) * per; /* pad with repeats: eval mode is per row */
            for (int c = 0; c < m->c; c++)
                for (int64_t p = 0; p < px; p++)
                    x[i * per + c * px + p] = (src[c * px + p] - m->mean[c]) / m->std[c];
        }
        dp_status s = dp_graph_run(m->g);
        if (s != DP_OK) return s;
        memcpy(out + off * m->dim, dp_tensor_f32(dp_node_value(m->feat)), sizeof(float) * (size_t)(b * m->dim));
    }
    return DP_OK;
}

/* ------------------------------------------------------------ all of them */
/* planes [np,h,w] → [np,h/f,w/f], each output pixel the mean of an f×f block. */
static void box_shrink(const float *src, int64_t np, int h, int w, int f, float *dst) {
    int oh = h / f, ow = w / f;
    float inv = 1.0f / (float)(f * f);
    for (int64_t p = 0; p < np; p++) {
        const float *s = src + p * h * w;
        float *d = dst + p * oh * ow;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                float acc = 0;
                for (int dy = 0; dy < f; dy++)
                    for (int dx = 0; dx < f; dx++) acc += s[(y * f + dy) * w + x * f + dx];
                d[y * ow + x] = acc * inv;
            }
    }
}

dp_status dp_gan_eval_images(dp_ctx *ctx, dp_feature_model *fm, const float *real, int64_t nr, const float *fake, int64_t nf,
                             int c, int h, int w, dp_gan_eval *out) {
    if (!real || !fake || !out) return dp_error(ctx, DP_ERR_NULL, "dp_gan_eval_images: NULL argument");
    out->fid = out->spectral_distance = out->precision = out->recall = NAN;
    out->fid_name[0] = 0;
    out->n_real = nr;
    out->n_fake = nf;
    int nb = h / 2;
    double pr[DP_SPECTRAL_MAX], pf[DP_SPECTRAL_MAX];
    dp_status s = dp_spectral_profile(ctx, real, nr, c, h, w, pr);
    if (s == DP_OK) s = dp_spectral_profile(ctx, fake, nf, c, h, w, pf);
    if (s != DP_OK) return s;
    out->spectral_distance = dp_spectral_distance(pr, pf, nb);
    if (!fm) return DP_OK;
    int fc, fh, fw;
    dp_feature_model_shape(fm, &fc, &fh, &fw);
    snprintf(out->fid_name, sizeof out->fid_name, "%s", dp_feature_model_fid_name(fm));
    /* Images an integer factor larger than the model's input are shrunk by
     * averaging f×f blocks (64×64 generators, 32×32 face encoder). */
    int f = fh > 0 ? h / fh : 0;
    if (fc != c || f < 1 || fh * f != h || fw * f != w)
        return dp_error(ctx, DP_ERR_SHAPE, "the feature model takes %dx%dx%d images (or an integer multiple of that side), these are %dx%dx%d",
                        fc, fh, fw, c, h, w);
    int d = dp_feature_model_dim(fm);
    int64_t small = (int64_t)c * fh * fw;
    float *fr = dp_malloc(ctx, sizeof(float) * (size_t)(nr + nf) * (size_t)d);
    float *tmp = f > 1 ? dp_malloc(ctx, sizeof(float) * (size_t)((nr > nf ? nr : nf) * small)) : NULL;
    if (!fr || (f > 1 && !tmp)) {
        dp_free(ctx, fr);
        dp_free(ctx, tmp);
        return dp_error(ctx, DP_ERR_NOMEM, "dp_gan_eval_images: out of memory for %lld feature vectors", (long long)(nr + nf));
    }
    float *ff = fr + nr * d;
    const float *sets[2] = {real, fake};
    int64_t ns[2] = {nr, nf};
    float *outs[2] = {fr, ff};
    for (int k = 0; k < 2 && s == DP_OK; k++) {
        const float *in = sets[k];
        if (f > 1) {
            box_shrink(sets[k], ns[k] * c, h, w, f, tmp);
            in = tmp;
        }
        s = dp_feature_model_run(fm, in, ns[k], outs[k]);
    }
    if (s == DP_OK && (s = dp_fid_from_features(ctx, fr, nr, ff, nf, d, &out->fid)) == DP_OK)
        s = dp_precision_recall(ctx, fr, nr, ff, nf, d, DP_PR_K, &out->precision, &out->recall);
    dp_free(ctx, tmp);
    dp_free(ctx, fr);
    return s;
}

static void json_num(char **p, char *end, const char *key, double v, int first) {
    if (*p >= end) return;
    int k = isfinite(v) ? snprintf(*p, (size_t)(end - *p), "%s\"%s\":%.6g", first ? "" : ",", key, v)
                        : snprintf(*p, (size_t)(end - *p), "%s\"%s\":null", first ? "" : ",", key);
    *p += k > 0 ? k : 0;
}
static void json_strv(char **p, char *end, const char *key, const char *v) {
    if (*p >= end) return;
    int k = snprintf(*p, (size_t)(end - *p), ",\"%s\":", key);
    *p += k > 0 ? k : 0;
    if (!v) {
        k = *p < end ? snprintf(*p, (size_t)(end - *p), "null") : 0;
        *p += k > 0 ? k : 0;
        return;
    }
    if (*p < end) *(*p)++ = '"';
    for (; *v && *p < end - 7; v++) {
        unsigned char ch = (unsigned char)*v;
        if (ch == '"' || ch == '\\') *(*p)++ = '\\', *(*p)++ = (char)ch;
        else if (ch < 0x20) *p += snprintf(*p, 7, "\\u%04x", ch);
        else *(*p)++ = (char)ch;
    }
    if (*p < end) *(*p)++ = '"';
}

int dp_gan_eval_json(const dp_gan_eval *e, const char *feature_model, const char *generator, const char *data, char *buf,
                     size_t n) {
    if (!e || !buf || n < 2) return 0;
    char *p = buf, *end = buf + n - 2;
    *p++ = '{';
    json_num(&p, end, "fid_doppelcnn", e->fid, 1);
    json_strv(&p, end, "fid_name", e->fid_name[0] ? e->fid_name : NULL);
    json_num(&p, end, "spectral_distance", e->spectral_distance, 0);
    json_num(&p, end, "precision", e->precision, 0);
    json_num(&p, end, "recall", e->recall, 0);
    json_num(&p, end, "n", (double)(e->n_fake < e->n_real ? e->n_fake : e->n_real), 0);
    json_num(&p, end, "n_real", (double)e->n_real, 0);
    json_num(&p, end, "n_generated", (double)e->n_fake, 0);
    json_num(&p, end, "k", DP_PR_K, 0);
    json_strv(&p, end, "feature_model", feature_model);
    json_strv(&p, end, "generator", generator);
    json_strv(&p, end, "data", data);
    if (p >= end) return 0;
    *p++ = '}';
    *p = 0;
    return 1;
}
