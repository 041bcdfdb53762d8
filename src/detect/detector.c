/* The detector: Meso-4 on the enlarged crop + the spectral logistic
 * regression, fused and calibrated; its model file; one image end to end;
 * the one JSON serialiser; occlusion maps. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/parse.h"
#include "doppel/detect.h"
#include "doppel/io.h"

struct dp_detector {
    dp_ctx *ctx;
    dp_paramset *ps;
    dp_graph *g;
    dp_node *x, *y, *feat; /* feat: Meso-4's penultimate values [batch, 16] (NULL if not found) */
    /* Grad-CAM: a batch-1 graph with gradients (built on first use) */
    dp_graph *cg;
    dp_node *cx, *clogit, *closs, *cmap;
    int batch;
    dp_detector_params p;
    dp_image tmp_in;
};

const char *dp_verdict_name(dp_verdict v) {
    return v == DP_VERDICT_REAL ? "real" : v == DP_VERDICT_FAKE ? "fake" : "uncertain";
}

static void params_default(dp_detector_params *p) {
    memset(p, 0, sizeof *p);
    dp_crop_policy_default(&p->crop);
    p->use_meso = 1;
    p->n_spec = dp_spectral_count(p->crop.work);
    for (int i = 0; i < DP_SPECTRAL_MAX; i++) {
        p->spec_sigma[i] = 1;
        p->class_sigma[0][i] = p->class_sigma[1][i] = 1;
    }
    p->ood_threshold = 0; /* 0: no out-of-distribution check */
    p->fuse_w[0] = 1;
    p->t_real = DP_DETECT_T_REAL;
    p->t_fake = DP_DETECT_T_FAKE;
}

/* The small tensors that carry the params in the model file. */
typedef struct ptens {
    const char *name;
    int ndim;
    int64_t shape[2];
} ptens;
static const ptens PT[] = {
    {"spectral.weight", 1, {DP_SPECTRAL_MAX, 0}}, {"spectral.bias", 1, {1, 0}},
    {"spectral.mu", 1, {DP_SPECTRAL_MAX, 0}},     {"spectral.sigma", 1, {DP_SPECTRAL_MAX, 0}},
    {"spectral.class_mu", 2, {2, DP_SPECTRAL_MAX}}, {"spectral.class_sigma", 2, {2, DP_SPECTRAL_MAX}},
    {"fusion.weight", 1, {3, 0}},
};
enum { NPT = sizeof PT / sizeof PT[0] };
static float *pt_field(dp_detector_params *p, int i) {
    switch (i) {
    case 0: return p->spec_w;
    case 1: return &p->spec_b;
    case 2: return p->spec_mu;
    case 3: return p->spec_sigma;
    case 4: return &p->class_mu[0][0];
    case 5: return &p->class_sigma[0][0];
    default: return p->fuse_w;
    }
}
static int64_t pt_numel(int i) { return PT[i].ndim == 1 ? PT[i].shape[0] : PT[i].shape[0] * PT[i].shape[1]; }

/* The feature statistics: only in models that have them (doppel.ood_features). */
static const ptens FT[] = {{"ood.mu", 2, {2, DP_DETECT_NFEAT}}, {"ood.prec", 2, {DP_DETECT_NFEAT, DP_DETECT_NFEAT}}};
static float *ft_field(dp_detector_params *p, int i) { return i == 0 ? &p->feat_mu[0][0] : p->feat_prec; }
static dp_status add_feat_tensors(dp_detector *d) {
    for (int i = 0; i < 2; i++) {
        dp_tensor *t;
        dp_status st = dp_paramset_get_or_add(d->ps, FT[i].name, 2, FT[i].shape, DP_PARAM_BUFFER, NULL, &t);
        if (st != DP_OK) return st;
    }
    return DP_OK;
}

/* Meso-4's penultimate node: the LeakyReLU after the first dense layer
 * (sigmoid ← dense c.5 ← dropout ← LeakyReLU), kept as a graph output. */
static dp_node *penultimate(dp_node *y, int batch) {
    if (!y || y->n_in < 1 || !y->in[0] || y->in[0]->n_in < 1) return NULL;
    dp_node *n = y->in[0]->in[0];
    while (n && n->op == DP_OP_DROPOUT && n->n_in >= 1) n = n->in[0];
    if (!n || n->op != DP_OP_LEAKY_RELU || n->val.ndim != 2 || n->val.shape[0] != batch ||
        n->val.shape[1] != DP_DETECT_NFEAT)
        return NULL;
    return n;
}

static dp_status build(dp_detector *d, int batch) {
    dp_status st;
    for (int i = 0; i < NPT; i++) {
        dp_tensor *t;
        if ((st = dp_paramset_get_or_add(d->ps, PT[i].name, PT[i].ndim, PT[i].shape, DP_PARAM_BUFFER, NULL, &t)) != DP_OK)
            return st;
    }
    if (d->p.feat_threshold > 0 && (st = add_feat_tensors(d)) != DP_OK) return st;
    if (!d->p.use_meso) return DP_OK;
    if ((st = dp_graph_new(d->ctx, &d->g)) != DP_OK) return st;
    int S = d->p.crop.size;
    d->batch = batch;
    d->x = dp_input(d->g, "x", 4, (int64_t[]){batch, 3, S, S});
    d->y = d->p.inception ? dp_model_mesoinception4(d->g, d->ps, d->x) : dp_model_meso4(d->g, d->ps, d->x);
    dp_graph_mark_output(d->g, d->y);
    if ((d->feat = penultimate(d->y, batch)) != NULL) dp_graph_mark_output(d->g, d->feat);
    if ((st = dp_graph_set_no_grad(d->g)) != DP_OK) return st;
    if ((st = dp_graph_compile(d->g)) != DP_OK) return st;
    return dp_graph_set_training(d->g, 0);
}

dp_status dp_detector_new(dp_ctx *ctx, const dp_detector_params *params, int batch, uint64_t seed, dp_detector **out) {
    if (!ctx || !out) return dp_error(ctx, DP_ERR_NULL, "dp_detector_new: NULL argument");
    *out = NULL;
    if (batch < 1 || batch > 4096) return dp_error(ctx, DP_ERR_ARG, "dp_detector_new: batch %d", batch);
    dp_detector *d = calloc(1, sizeof *d);
    if (!d) return dp_error(ctx, DP_ERR_NOMEM, "dp_detector_new: out of memory");
    d->ctx = ctx;
    d->batch = batch;
    if (params) d->p = *params;
    else params_default(&d->p);
    if (d->p.n_spec != dp_spectral_count(d->p.crop.work)) d->p.n_spec = dp_spectral_count(d->p.crop.work);
    dp_status st = dp_paramset_new(ctx, &d->ps);
    if (st == DP_OK) st = build(d, batch);
    if (st == DP_OK) st = dp_paramset_init(d->ps, seed);
    if (st != DP_OK) {
        dp_detector_free(d);
        return st;
    }
    *out = d;
    return DP_OK;
}

void dp_detector_free(dp_detector *d) {
    if (!d) return;
    dp_graph_free(d->cg);
    dp_graph_free(d->g);
    dp_paramset_free(d->ps);
    free(d);
}

dp_detector_params *dp_detector_get_params(dp_detector *d) { return d ? &d->p : NULL; }
dp_paramset *dp_detector_paramset(dp_detector *d) { return d ? d->ps : NULL; }
dp_ctx *dp_detector_ctx(dp_detector *d) { return d ? d->ctx : NULL; }

dp_status dp_detector_save(dp_detector *d, const char *path, const char *const *extra) {
    if (!d || !path) return DP_ERR_NULL;
    for (int i = 0; i < NPT; i++) {
        dp_tensor *t = dp_paramset_find(d->ps, PT[i].name);
        if (!t) return dp_error(d->ctx, DP_ERR_STATE, "dp_detector_save: tensor %s missing", PT[i].name);
        memcpy(dp_tensor_f32(t), pt_field(&d->p, i), sizeof(float) * (size_t)pt_numel(i));
    }
    dp_status st;
    if (d->p.feat_threshold > 0) {
        if ((st = add_feat_tensors(d)) != DP_OK) return st;
        for (int i = 0; i < 2; i++)
            memcpy(dp_tensor_f32(dp_paramset_find(d->ps, FT[i].name)), ft_field(&d->p, i),
                   sizeof(float) * (size_t)(FT[i].shape[0] * FT[i].shape[1]));
    }
    char crop[160], thr[64], ood[32], oodf[32], nspec[16], meso[8];
    dp_crop_policy_format(&d->p.crop, crop, sizeof crop);
    snprintf(thr, sizeof thr, "%.6g,%.6g", (double)d->p.t_real, (double)d->p.t_fake);
    snprintf(ood, sizeof ood, "%.6g", (double)d->p.ood_threshold);
    snprintf(nspec, sizeof nspec, "%d", d->p.n_spec);
    snprintf(meso, sizeof meso, "%d", d->p.use_meso);
    const char *kv[64];
    int k = 0;
    const char *base[] = {"doppel.task", "detect", "doppel.crop", crop, "doppel.thresholds", thr, "doppel.ood", ood,
                          "doppel.spectral_features", nspec, "doppel.use_meso", meso,
                          "doppel.cnn", d->p.inception ? "mesoinception4" : "meso4"};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) kv[k++] = base[i];
    if (d->p.feat_threshold > 0) {
        snprintf(oodf, sizeof oodf, "%.6g", (double)d->p.feat_threshold);
        kv[k++] = "doppel.ood_features";
        kv[k++] = oodf;
    }
    for (int i = 0; extra && extra[i] && extra[i + 1] && k < 60; i += 2) {
        kv[k++] = extra[i];
        kv[k++] = extra[i + 1];
    }
    kv[k] = NULL;
    return dp_checkpoint_save(path, d->ps, NULL,
                              !d->p.use_meso ? "detect-spectral" : d->p.inception ? "detect-mesoinception4" : "detect-meso4", kv);
}

dp_status dp_detector_load(dp_ctx *ctx, const char *path, int batch, dp_detector **out) {
    if (!ctx || !path || !out) return dp_error(ctx, DP_ERR_NULL, "dp_detector_load: NULL argument");
    *out = NULL;
    char buf[256];
    dp_status st = dp_checkpoint_meta(ctx, path, "doppel.task", buf, sizeof buf);
    if (st == DP_ERR_NOT_FOUND || (st == DP_OK && strcmp(buf, "detect")))
        return dp_error(ctx, DP_ERR_FORMAT, "%s: not a doppel detection model (doppel.task is '%s')", path,
                        st == DP_OK ? buf : "");
    if (st != DP_OK) return st;
    dp_detector_params p;
    params_default(&p);
    if ((st = dp_checkpoint_meta(ctx, path, "doppel.crop", buf, sizeof buf)) != DP_OK)
        return dp_error(ctx, DP_ERR_FORMAT, "%s: the model has no crop policy (doppel.crop)", path);
    if ((st = dp_crop_policy_parse(ctx, buf, &p.crop)) != DP_OK)
        return dp_error(ctx, st, "%s: %s", path, dp_ctx_error(ctx));
    p.n_spec = dp_spectral_count(p.crop.work);
    if (dp_checkpoint_meta(ctx, path, "doppel.thresholds", buf, sizeof buf) == DP_OK) {
        float t[2];
        if (!dp_parse_f32s(buf, ',', 2, 0, 1, t) || !(t[0] <= t[1]))
            return dp_error(ctx, DP_ERR_FORMAT, "%s: bad doppel.thresholds '%s' (T_REAL,T_FAKE with 0 <= T_REAL <= T_FAKE <= 1)",
                            path, buf);
        p.t_real = t[0], p.t_fake = t[1];
    }
    /* as dp_detector_save writes them: any finite threshold (0: no OOD check), use_meso an int */
    if (dp_checkpoint_meta(ctx, path, "doppel.ood", buf, sizeof buf) == DP_OK && !dp_parse_f32(buf, -FLT_MAX, FLT_MAX, &p.ood_threshold))
        return dp_error(ctx, DP_ERR_FORMAT, "%s: bad doppel.ood '%s' (a finite number)", path, buf);
    if (dp_checkpoint_meta(ctx, path, "doppel.use_meso", buf, sizeof buf) == DP_OK) {
        if (!dp_parse_int(buf, INT_MIN, INT_MAX, &p.use_meso))
            return dp_error(ctx, DP_ERR_FORMAT, "%s: bad doppel.use_meso '%s' (0 or 1)", path, buf);
        p.use_meso = p.use_meso != 0;
    }
    if (dp_checkpoint_meta(ctx, path, "doppel.cnn", buf, sizeof buf) == DP_OK) {
        if (strcmp(buf, "meso4") && strcmp(buf, "mesoinception4"))
            return dp_error(ctx, DP_ERR_FORMAT, "%s: unknown doppel.cnn '%s' (meso4 or mesoinception4)", path, buf);
        p.inception = !strcmp(buf, "mesoinception4");
    }
    if (dp_checkpoint_meta(ctx, path, "doppel.ood_features", buf, sizeof buf) == DP_OK) {
        if (!dp_parse_f32(buf, 0, FLT_MAX, &p.feat_threshold) || !(p.feat_threshold > 0))
            return dp_error(ctx, DP_ERR_FORMAT, "%s: bad doppel.ood_features '%s'", path, buf);
    }
    dp_detector *d;
    if ((st = dp_detector_new(ctx, &p, batch, 1, &d)) != DP_OK) return st;
    if ((st = dp_checkpoint_load(path, d->ps, NULL)) != DP_OK) {
        dp_detector_free(d);
        return st;
    }
    for (int i = 0; i < NPT; i++)
        memcpy(pt_field(&d->p, i), dp_tensor_f32(dp_paramset_find(d->ps, PT[i].name)), sizeof(float) * (size_t)pt_numel(i));
    if (d->p.feat_threshold > 0) {
        if (!d->feat) {
            dp_detector_free(d);
            return dp_error(ctx, DP_ERR_FORMAT, "%s: the model has feature statistics but no Meso-4 penultimate layer", path);
        }
        for (int i = 0; i < 2; i++)
            memcpy(ft_field(&d->p, i), dp_tensor_f32(dp_paramset_find(d->ps, FT[i].name)),
                   sizeof(float) * (size_t)(FT[i].shape[0] * FT[i].shape[1]));
    }
    *out = d;
    return DP_OK;
}

static dp_status spectral_one(dp_detector *d, const dp_image *crop, float *logit, float *ood) {
    float f[DP_SPECTRAL_MAX];
    int n = d->p.n_spec;
    dp_status st = dp_spectral_features(d->ctx, crop, f, n);
    if (st != DP_OK) return st;
    double z = d->p.spec_b, best = INFINITY;
    float zs[DP_SPECTRAL_MAX];
    for (int i = 0; i < n; i++) {
        zs[i] = (f[i] - d->p.spec_mu[i]) / (d->p.spec_sigma[i] > 1e-12f ? d->p.spec_sigma[i] : 1.0f);
        z += d->p.spec_w[i] * zs[i];
    }
    for (int c = 0; c < 2; c++) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            double sg = d->p.class_sigma[c][i] > 1e-6f ? d->p.class_sigma[c][i] : 1.0;
            double t = (zs[i] - d->p.class_mu[c][i]) / sg;
            s += t * t;
        }
        s /= n;
        if (s < best) best = s;
    }
    if (logit) *logit = (float)z;
    if (ood) *ood = (float)best;
    return DP_OK;
}

/* (f - mu_c)' P (f - mu_c) / NFEAT, the smaller over the two classes. */
static float feat_distance(const dp_detector_params *p, const float *f) {
    enum { K = DP_DETECT_NFEAT };
    double best = INFINITY;
    for (int c = 0; c < 2; c++) {
        double v[K], s = 0;
        for (int i = 0; i < K; i++) v[i] = (double)f[i] - p->feat_mu[c][i];
        for (int i = 0; i < K; i++) {
            double r = 0;
            for (int j = 0; j < K; j++) r += (double)p->feat_prec[i * K + j] * v[j];
            s += v[i] * r;
        }
        s /= K;
        if (s < best) best = s;
    }
    return (float)best;
}

dp_status dp_detector_score(dp_detector *d, const dp_image *crops, int n, const dp_detector_scores *o) {
    if (!d || !o || (!crops && n > 0)) return dp_error(d ? d->ctx : NULL, DP_ERR_NULL, "dp_detector_score: NULL argument");
    int W = d->p.crop.work;
    for (int i = 0; i < n; i++)
        if (crops[i].width != W || crops[i].height != W || crops[i].channels != 3)
            return dp_error(d->ctx, DP_ERR_ARG, "dp_detector_raw: crop %d is %dx%dx%d, the model's crops are 3x%dx%d", i,
                            crops[i].channels, crops[i].height, crops[i].width, W, W);
    if (o->features && !d->feat)
        return dp_error(d->ctx, DP_ERR_UNSUPPORTED, "dp_detector_score: this model has no Meso-4 features");
    int want_ood = o->ood || o->ood_spectral || o->ood_features;
    int use_feat = d->feat && d->p.feat_threshold > 0 && want_ood;
    dp_status st;
    for (int i = 0; i < n; i++) {
        float so = 0;
        if ((st = spectral_one(d, &crops[i], o->spec_logit ? &o->spec_logit[i] : NULL, &so)) != DP_OK) return st;
        if (o->ood) o->ood[i] = so;
        if (o->ood_spectral) o->ood_spectral[i] = so;
        if (o->ood_features) o->ood_features[i] = 0;
    }
    if (!o->meso_logit && !o->features && !use_feat) return DP_OK;
    if (!d->p.use_meso) {
        for (int i = 0; o->meso_logit && i < n; i++) o->meso_logit[i] = 0;
        return DP_OK;
    }
    int S = d->p.crop.size;
    size_t per = (size_t)3 * S * S;
    float *x = dp_tensor_f32(dp_node_value(d->x));
    const float *y = dp_tensor_f32(dp_node_value(d->y));
    const float *fv = d->feat ? dp_tensor_f32(dp_node_value(d->feat)) : NULL;
    /* rescaled onto the spectral threshold: one threshold for both checks */
    double scale = d->p.ood_threshold > 0 ? (double)d->p.ood_threshold / (double)d->p.feat_threshold : 1.0;
    for (int off = 0; off < n; off += d->batch) {
        int m = n - off < d->batch ? n - off : d->batch;
        for (int i = 0; i < d->batch; i++) {
            dp_image in;
            if ((st = dp_crop_to_input(d->ctx, &crops[off + (i < m ? i : 0)], &d->p.crop, &in)) != DP_OK) return st;
            memcpy(x + per * i, in.data, sizeof(float) * per);
            dp_image_free(d->ctx, &in);
        }
        if ((st = dp_graph_run(d->g)) != DP_OK) return st;
        for (int i = 0; i < m; i++) {
            int k = off + i;
            if (o->meso_logit) o->meso_logit[k] = dp_logit(y[i]);
            if (o->features) memcpy(o->features + (size_t)k * DP_DETECT_NFEAT, fv + (size_t)i * DP_DETECT_NFEAT,
                                    sizeof(float) * DP_DETECT_NFEAT);
            if (!use_feat) continue;
            float fd = feat_distance(&d->p, fv + (size_t)i * DP_DETECT_NFEAT);
            if (o->ood_features) o->ood_features[k] = fd;
            if (o->ood) {
                float r = (float)(fd * scale);
                if (r > o->ood[k]) o->ood[k] = r;
            }
        }
    }
    return DP_OK;
}

dp_status dp_detector_raw(dp_detector *d, const dp_image *crops, int n, float *meso_logit, float *spec_logit, float *ood) {
    dp_detector_scores o = {.meso_logit = meso_logit, .spec_logit = spec_logit, .ood = ood};
    return dp_detector_score(d, crops, n, &o);
}

/* Cholesky inverse of a symmetric positive definite K×K matrix (double). */
static int spd_inverse(double *a, int K, double *inv) {
    double L[DP_DETECT_NFEAT * DP_DETECT_NFEAT] = {0};
    for (int i = 0; i < K; i++)
        for (int j = 0; j <= i; j++) {
            double s = a[i * K + j];
            for (int k = 0; k < j; k++) s -= L[i * K + k] * L[j * K + k];
            if (i == j) {
                if (!(s > 0)) return 0;
                L[i * K + i] = sqrt(s);
            } else L[i * K + j] = s / L[j * K + j];
        }
    for (int c = 0; c < K; c++) { /* solve L L' x = e_c */
        double z[DP_DETECT_NFEAT];
        for (int i = 0; i < K; i++) {
            double s = i == c;
            for (int k = 0; k < i; k++) s -= L[i * K + k] * z[k];
            z[i] = s / L[i * K + i];
        }
        for (int i = K - 1; i >= 0; i--) {
            double s = z[i];
            for (int k = i + 1; k < K; k++) s -= L[k * K + i] * inv[k * K + c];
            inv[i * K + c] = s / L[i * K + i];
        }
    }
    return 1;
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

dp_status dp_detector_fit_features(dp_detector *d, const float *f, const int *label, int64_t n, double pct) {
    enum { K = DP_DETECT_NFEAT };
    if (!d || !f || !label) return dp_error(d ? d->ctx : NULL, DP_ERR_NULL, "dp_detector_fit_features: NULL argument");
    if (!d->feat) return dp_error(d->ctx, DP_ERR_UNSUPPORTED, "dp_detector_fit_features: this model has no Meso-4 features");
    if (!(pct > 0 && pct < 100)) return dp_error(d->ctx, DP_ERR_ARG, "dp_detector_fit_features: percentile %g", pct);
    double mu[2][K] = {{0}}, cnt[2] = {0, 0}, cov[K * K] = {0}, inv[K * K];
    for (int64_t r = 0; r < n; r++) {
        int c = label[r] != 0;
        cnt[c]++;
        for (int i = 0; i < K; i++) mu[c][i] += f[r * K + i];
    }
    if (cnt[0] < 2 || cnt[1] < 2)
        return dp_error(d->ctx, DP_ERR_ARG, "dp_detector_fit_features: needs two rows of each class");
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < K; i++) mu[c][i] /= cnt[c];
    for (int64_t r = 0; r < n; r++) {
        int c = label[r] != 0;
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) cov[i * K + j] += (f[r * K + i] - mu[c][i]) * (f[r * K + j] - mu[c][j]);
    }
    double tr = 0;
    for (int i = 0; i < K * K; i++) cov[i] /= (double)(n - 2);
    for (int i = 0; i < K; i++) tr += cov[i * K + i];
    /* shrinkage: dead units (a ReLU-like layer) give a singular covariance */
    for (int i = 0; i < K; i++) cov[i * K + i] += 1e-3 * tr / K + 1e-8;
    if (!spd_inverse(cov, K, inv)) return dp_error(d->ctx, DP_ERR_NUMERIC, "dp_detector_fit_features: singular covariance");
    dp_detector_params *p = &d->p;
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < K; i++) p->feat_mu[c][i] = (float)mu[c][i];
    for (int i = 0; i < K * K; i++) p->feat_prec[i] = (float)inv[i];
    float *dist = malloc(sizeof(float) * (size_t)n);
    if (!dist) return dp_error(d->ctx, DP_ERR_NOMEM, "dp_detector_fit_features: out of memory");
    for (int64_t r = 0; r < n; r++) dist[r] = feat_distance(p, f + r * K);
    qsort(dist, (size_t)n, sizeof(float), cmp_f);
    p->feat_threshold = dist[(int64_t)(pct / 100.0 * (double)(n - 1))];
    free(dist);
    if (!(p->feat_threshold > 0)) p->feat_threshold = 1e-6f;
    return add_feat_tensors(d);
}

float dp_detector_fuse(const dp_detector *d, float m, float s) {
    const float *w = d->p.fuse_w;
    return (float)dp_sigmoid_d((double)w[0] * m + (double)w[1] * s + (double)w[2]);
}

dp_verdict dp_detector_verdict(const dp_detector *d, float p, float ood) {
    if (d->p.ood_threshold > 0 && ood > d->p.ood_threshold) return DP_VERDICT_UNCERTAIN;
    if (p < d->p.t_real) return DP_VERDICT_REAL;
    if (p >= d->p.t_fake) return DP_VERDICT_FAKE;
    return DP_VERDICT_UNCERTAIN;
}

dp_status dp_detector_find_default(dp_ctx *ctx, const char *source_dir, char *path, size_t n) {
    const char *env = getenv("DOPPEL_MODEL");
    if (env && *env) {
        if (access(env, R_OK) == 0) {
            snprintf(path, n, "%s", env);
            return DP_OK;
        }
        return dp_error(ctx, DP_ERR_NOT_FOUND, "DOPPEL_MODEL=%s: cannot read that file", env);
    }
    char cand[4096];
    if (source_dir) {
        snprintf(cand, sizeof cand, "%s/models/%s", source_dir, DP_DETECT_DEFAULT_MODEL);
        if (access(cand, R_OK) == 0) {
            snprintf(path, n, "%s", cand);
            return DP_OK;
        }
    }
    const char *dirs = DP_DETECT_MODEL_DIRS;
    while (*dirs) {
        const char *e = strchr(dirs, ':');
        size_t len = e ? (size_t)(e - dirs) : strlen(dirs);
        snprintf(cand, sizeof cand, "%.*s/%s", (int)len, dirs, DP_DETECT_DEFAULT_MODEL);
        if (access(cand, R_OK) == 0) {
            snprintf(path, n, "%s", cand);
            return DP_OK;
        }
        dirs += len + (e ? 1 : 0);
    }
    return dp_error(ctx, DP_ERR_NOT_FOUND, "no detection model found: looked at $DOPPEL_MODEL, %s/models/%s and %s (give --model)",
                    source_dir ? source_dir : ".", DP_DETECT_DEFAULT_MODEL, DP_DETECT_MODEL_DIRS);
}

dp_status dp_detect_image(dp_detector *d, const dp_face_detector *fd, const dp_image *img, dp_detect_result *out) {
    if (!d || !img || !img->data || !out) return dp_error(d ? d->ctx : NULL, DP_ERR_NULL, "dp_detect_image: NULL argument");
    memset(out, 0, sizeof *out);
    dp_face_box boxes[DP_DETECT_MAX_FACES];
    int nf = 0;
    dp_status st;
    if (fd) {
        dp_face_opts fo = {0};
        fo.pad = DP_FACE_PAD_AUTO;
        if ((st = dp_face_detect(fd, img, &fo, boxes, DP_DETECT_MAX_FACES, &nf)) != DP_OK) return st;
        if (nf > DP_DETECT_MAX_FACES) nf = DP_DETECT_MAX_FACES;
    }
    out->n_faces = nf;
    if (nf == 0) {
        dp_crop_fallback_box(img->width, img->height, &boxes[0]);
        nf = 1;
        out->no_face = 1;
    }
    dp_image crops[DP_DETECT_MAX_FACES];
    memset(crops, 0, sizeof crops);
    float m[DP_DETECT_MAX_FACES], s[DP_DETECT_MAX_FACES], o[DP_DETECT_MAX_FACES], os_[DP_DETECT_MAX_FACES],
        of[DP_DETECT_MAX_FACES];
    st = DP_OK;
    for (int i = 0; i < nf && st == DP_OK; i++) st = dp_crop_face(d->ctx, img, &boxes[i], &d->p.crop, &crops[i]);
    dp_detector_scores sc = {.meso_logit = m, .spec_logit = s, .ood = o, .ood_spectral = os_, .ood_features = of};
    if (st == DP_OK) st = dp_detector_score(d, crops, nf, &sc);
    for (int i = 0; i < nf; i++) dp_image_free(d->ctx, &crops[i]);
    if (st != DP_OK) return st;
    out->n_scored = nf;
    int any_fake = 0, any_unc = 0;
    out->p_fake = 0;
    for (int i = 0; i < nf; i++) {
        dp_detect_face *f = &out->faces[i];
        f->box = boxes[i];
        f->p_fake = dp_detector_fuse(d, m[i], s[i]);
        f->p_meso = (float)dp_sigmoid_d(m[i]);
        f->p_spectral = (float)dp_sigmoid_d(s[i]);
        f->ood = o[i];
        f->ood_spectral = os_[i];
        f->ood_features = of[i];
        f->ood_over = (d->p.ood_threshold > 0 && os_[i] > d->p.ood_threshold) |
                      (d->p.feat_threshold > 0 && of[i] > d->p.feat_threshold) << 1;
        f->verdict = out->no_face || f->ood_over ? DP_VERDICT_UNCERTAIN : dp_detector_verdict(d, f->p_fake, f->ood);
        any_fake |= f->verdict == DP_VERDICT_FAKE;
        any_unc |= f->verdict == DP_VERDICT_UNCERTAIN;
        if (f->p_fake > out->p_fake) out->p_fake = f->p_fake;
    }
    out->verdict = any_fake ? DP_VERDICT_FAKE : any_unc ? DP_VERDICT_UNCERTAIN : DP_VERDICT_REAL;
    return DP_OK;
}

/* ------------------------------------------------------------ JSON */
typedef struct sb {
    char *b;
    size_t n, len;
} sb;
static void sb_printf(sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = s->len < s->n ? s->n - s->len : 0;
    int k = vsnprintf(room ? s->b + s->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0) s->len += (size_t)k;
}
static void sb_str(sb *s, const char *t) {
    sb_printf(s, "\"");
    for (; *t; t++) {
        unsigned char c = (unsigned char)*t;
        if (c == '"' || c == '\\') sb_printf(s, "\\%c", c);
        else if (c < 0x20) sb_printf(s, "\\u%04x", c);
        else sb_printf(s, "%c", c);
    }
    sb_printf(s, "\"");
}
static double r4(float v) { return isfinite(v) ? round((double)v * 1e4) / 1e4 : 0; }

int dp_detect_result_json(const char *file, const dp_detect_result *r, const char *wm, char *buf, size_t n) {
    sb s = {buf, n, 0};
    if (n) buf[0] = 0;
    sb_printf(&s, "{\"file\":");
    sb_str(&s, file ? file : "");
    sb_printf(&s, ",\"verdict\":\"%s\",\"p_fake\":%.4f,\"faces_found\":%d,\"faces\":[", dp_verdict_name(r->verdict),
              r4(r->p_fake), r->n_faces);
    for (int i = 0; i < r->n_scored; i++) {
        const dp_detect_face *f = &r->faces[i];
        sb_printf(&s,
                  "%s{\"box\":[%d,%d,%d,%d],\"p_fake\":%.4f,\"verdict\":\"%s\",\"detectors\":{\"meso4\":%.4f,"
                  "\"spectral\":%.4f},\"ood\":%.3f",
                  i ? "," : "", f->box.x, f->box.y, f->box.w, f->box.h, r4(f->p_fake), dp_verdict_name(f->verdict),
                  r4(f->p_meso), r4(f->p_spectral), r4(f->ood));
        if (f->ood_over)
            sb_printf(&s, ",\"ood_over\":true,\"ood_reason\":\"%s\"",
                      f->ood_over == 3 ? "spectrum+features" : f->ood_over == 2 ? "features" : "spectrum");
        sb_printf(&s, "%s}", r->no_face ? ",\"fallback\":true" : "");
    }
    sb_printf(&s, "]");
    if (wm) sb_printf(&s, ",\"watermark\":%s", wm);
    sb_printf(&s, "}");
    return (int)s.len;
}

int dp_detect_watermark_json(const dp_watermark_result *w, char *buf, size_t n) {
    return snprintf(buf, n, "{\"found\":%s,\"model_id\":%u,\"score\":%.3f}", w->found ? "true" : "false",
                    w->found ? w->model_id : 0u, (double)w->score);
}

/* ------------------------------------------------------------ Grad-CAM */
/* The last feature maps before the head: sigmoid <- dense <- dropout <-
 * LeakyReLU <- dense <- dropout <- flatten <- max-pool <- these (the last
 * block's batch-norm output, [1, C, h, w]: 16x16 at a 128 input). */
static dp_node *last_maps(dp_node *pen) {
    if (!pen || pen->n_in < 1) return NULL;
    dp_node *n = pen->in[0]; /* dense c.2 */
    if (!n || n->op != DP_OP_DENSE || n->n_in < 1) return NULL;
    n = n->in[0];
    while (n && (n->op == DP_OP_DROPOUT || n->op == DP_OP_RESHAPE) && n->n_in >= 1) n = n->in[0];
    if (!n || n->op != DP_OP_MAXPOOL2D || n->n_in < 1) return NULL;
    n = n->in[0];
    return n && n->val.ndim == 4 ? n : NULL;
}

static dp_status gradcam_graph(dp_detector *d) {
    if (d->cg) return DP_OK;
    dp_status st = dp_graph_new(d->ctx, &d->cg);
    if (st != DP_OK) return st;
    int S = d->p.crop.size;
    d->cx = dp_input(d->cg, "x", 4, (int64_t[]){1, 3, S, S});
    dp_node *y = d->p.inception ? dp_model_mesoinception4(d->cg, d->ps, d->cx) : dp_model_meso4(d->cg, d->ps, d->cx);
    dp_node *pen = penultimate(y, 1);
    d->cmap = last_maps(pen);
    d->clogit = y && y->n_in >= 1 ? y->in[0] : NULL;
    if (!d->cmap || !d->clogit) {
        dp_graph_free(d->cg);
        d->cg = NULL;
        return dp_error(d->ctx, DP_ERR_UNSUPPORTED, "Grad-CAM: the CNN's last feature maps were not found");
    }
    d->closs = dp_sum(d->cg, d->clogit, DP_AXIS_ALL, 0);
    dp_graph_mark_output(d->cg, d->cmap);
    dp_graph_mark_output(d->cg, d->closs);
    if ((st = dp_graph_compile(d->cg)) == DP_OK) st = dp_graph_set_training(d->cg, 0);
    if (st != DP_OK) {
        dp_graph_free(d->cg);
        d->cg = NULL;
    }
    return st;
}

dp_status dp_detector_gradcam(dp_detector *d, const dp_image *crop, float *heat) {
    if (!d || !crop || !heat) return dp_error(d ? d->ctx : NULL, DP_ERR_NULL, "dp_detector_gradcam: NULL argument");
    int W = d->p.crop.work;
    if (crop->width != W || crop->height != W || crop->channels != 3)
        return dp_error(d->ctx, DP_ERR_ARG, "dp_detector_gradcam: the crop is %dx%dx%d, the model's crops are 3x%dx%d",
                        crop->channels, crop->height, crop->width, W, W);
    if (!d->p.use_meso) return dp_error(d->ctx, DP_ERR_UNSUPPORTED, "dp_detector_gradcam: a spectral-only model has no CNN");
    dp_status st = gradcam_graph(d);
    if (st != DP_OK) return st;
    dp_image in;
    if ((st = dp_crop_to_input(d->ctx, crop, &d->p.crop, &in)) != DP_OK) return st;
    int S = d->p.crop.size;
    memcpy(dp_tensor_f32(dp_node_value(d->cx)), in.data, sizeof(float) * 3 * (size_t)S * S);
    dp_image_free(d->ctx, &in);
    if ((st = dp_graph_run(d->cg)) != DP_OK) return st;
    if ((st = dp_graph_backward(d->cg, d->closs, 1, &d->cmap)) != DP_OK) return st;
    const dp_tensor *A = dp_node_value(d->cmap), *G = dp_node_grad(d->cmap);
    int C = (int)A->shape[1], h = (int)A->shape[2], w = (int)A->shape[3];
    const float *a = dp_tensor_f32((dp_tensor *)A), *g = dp_tensor_f32((dp_tensor *)G);
    dp_image cam;
    if ((st = dp_image_alloc(d->ctx, 1, h, w, &cam)) != DP_OK) return st;
    size_t hw = (size_t)h * w;
    for (int c = 0; c < C; c++) { /* alpha_c: the channel's mean gradient */
        double al = 0;
        for (size_t i = 0; i < hw; i++) al += g[c * hw + i];
        al /= (double)hw;
        for (size_t i = 0; i < hw; i++) cam.data[i] += (float)(al * a[c * hw + i]);
    }
    for (size_t i = 0; i < hw; i++) cam.data[i] = cam.data[i] > 0 ? cam.data[i] : 0;
    dp_image up;
    st = dp_image_resize(d->ctx, &cam, W, W, &up);
    dp_image_free(d->ctx, &cam);
    if (st != DP_OK) return st;
    for (size_t i = 0; i < (size_t)W * W; i++) heat[i] = up.data[i] > 0 ? up.data[i] : 0;
    dp_image_free(d->ctx, &up);
    return DP_OK;
}

/* ------------------------------------------------------------ occlusion */
dp_status dp_detector_occlusion(dp_detector *d, const dp_image *crop, int patch, float *heat) {
    if (!d || !crop || !heat) return dp_error(d ? d->ctx : NULL, DP_ERR_NULL, "dp_detector_occlusion: NULL argument");
    int W = d->p.crop.work;
    if (patch < 2 || patch > W) return dp_error(d->ctx, DP_ERR_ARG, "dp_detector_occlusion: patch %d", patch);
    int stride = patch / 2, np = (W - patch) / stride + 1, total = np * np;
    dp_image *cr = calloc((size_t)total + 1, sizeof *cr);
    float *m = calloc((size_t)(total + 1) * 3, sizeof(float)), *cnt = calloc((size_t)W * W, sizeof(float));
    dp_status st = DP_OK;
    if (!cr || !m || !cnt) {
        st = dp_error(d->ctx, DP_ERR_NOMEM, "dp_detector_occlusion: out of memory");
        goto done;
    }
    size_t plane = (size_t)W * W;
    for (int k = 0; k <= total && st == DP_OK; k++) {
        if ((st = dp_image_alloc(d->ctx, 3, W, W, &cr[k])) != DP_OK) break;
        memcpy(cr[k].data, crop->data, sizeof(float) * plane * 3);
        if (k == total) break;
        int py = (k / np) * stride, px = (k % np) * stride;
        for (int c = 0; c < 3; c++)
            for (int y = py; y < py + patch; y++)
                for (int x = px; x < px + patch; x++) cr[k].data[c * plane + (size_t)y * W + x] = 0.5f;
    }
    if (st == DP_OK) st = dp_detector_raw(d, cr, total + 1, m, m + total + 1, NULL);
    if (st == DP_OK) {
        /* in the fused logit, not the probability: near p 0 or 1 the sigmoid is
         * flat and every drop would vanish */
        const float *w = d->p.fuse_w;
        float base = w[0] * m[total] + w[1] * m[total + 1 + total];
        memset(heat, 0, sizeof(float) * plane);
        for (int k = 0; k < total; k++) {
            float drop = base - (w[0] * m[k] + w[1] * m[total + 1 + k]);
            int py = (k / np) * stride, px = (k % np) * stride;
            for (int y = py; y < py + patch; y++)
                for (int x = px; x < px + patch; x++) {
                    heat[(size_t)y * W + x] += drop;
                    cnt[(size_t)y * W + x] += 1;
                }
        }
        for (size_t i = 0; i < plane; i++) heat[i] = cnt[i] > 0 && heat[i] > 0 ? heat[i] / cnt[i] : 0;
    }
done:
    if (cr)
        for (int k = 0; k <= total; k++) dp_image_free(d->ctx, &cr[k]);
    free(cr);
    free(m);
    free(cnt);
    return st;
}
