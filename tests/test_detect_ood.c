/* Detection, generalisation helpers (src/detect/): the Meso-4 feature
 * out-of-distribution check (Mahalanobis distance of the penultimate
 * features, its statistics in the model file, the combined ood score, the
 * verdict it forces) and self-blended images (dp_self_blend: the same face
 * blended with a changed copy of itself inside a soft mask), a MesoInception-4
 * detector's model file, Grad-CAM. No ../shared. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "doppel/detect.h"
#include "doppel/doppel.h"

#define OK(expr)                                                                                                       \
    do {                                                                                                               \
        dp_status s_ = (expr);                                                                                         \
        if (s_ != DP_OK) fail_msg("%s -> %s: %s", #expr, dp_status_name(s_), dp_ctx_error(ctx));                      \
    } while (0)

static dp_ctx *new_ctx(void) {
    dp_ctx *ctx;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx), DP_OK);
    return ctx;
}

static dp_detector *small_detector(dp_ctx *ctx) {
    dp_detector_params p;
    memset(&p, 0, sizeof p);
    p.crop = (dp_crop_policy){.inner = 0.9f, .margin = 0.1f, .shift = 0, .work = 32, .size = 64};
    p.use_meso = 1;
    p.n_spec = 16;
    for (int i = 0; i < 16; i++) {
        p.spec_sigma[i] = 1;
        p.class_sigma[0][i] = p.class_sigma[1][i] = 1;
    }
    p.ood_threshold = 2.0f;
    p.fuse_w[0] = 1;
    p.t_real = 0.3f;
    p.t_fake = 0.7f;
    dp_detector *d;
    OK(dp_detector_new(ctx, &p, 4, 7, &d));
    return d;
}

/* crop k of a family: smooth gradients with a per-crop phase */
static void fill_crop(dp_image *im, int k, float noise) {
    uint32_t h = 2166136261u + (uint32_t)k * 16777619u;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < im->height; y++)
            for (int x = 0; x < im->width; x++) {
                h = h * 1664525u + 1013904223u;
                float v = 0.5f + 0.3f * sinf(0.2f * (float)x + 0.1f * (float)k + (float)c) * cosf(0.15f * (float)y) +
                          noise * ((float)(h >> 8) / 16777216.0f - 0.5f);
                im->data[((size_t)c * im->height + y) * im->width + x] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
}

static void feature_ood(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_detector *d = small_detector(ctx);
    enum { N = 40, K = DP_DETECT_NFEAT };
    dp_image crops[N];
    for (int k = 0; k < N; k++) {
        OK(dp_image_alloc(ctx, 3, 32, 32, &crops[k]));
        fill_crop(&crops[k], k, k < N / 2 ? 0.02f : 0.3f);
    }
    float feat[N * K];
    int label[N];
    for (int k = 0; k < N; k++) label[k] = k >= N / 2;
    dp_detector_scores sc = {.features = feat};
    OK(dp_detector_score(d, crops, N, &sc));
    /* no statistics yet: ood is the spectral distance alone */
    float o1[N], os1[N], of1[N];
    dp_detector_scores s1 = {.ood = o1, .ood_spectral = os1, .ood_features = of1};
    OK(dp_detector_score(d, crops, N, &s1));
    for (int k = 0; k < N; k++) {
        assert_float_equal(o1[k], os1[k], 0);
        assert_float_equal(of1[k], 0, 0);
    }
    /* bad arguments */
    assert_int_equal(dp_detector_fit_features(d, feat, label, N, 100), DP_ERR_ARG);
    int one_class[N] = {0};
    assert_int_equal(dp_detector_fit_features(d, feat, one_class, N, 90), DP_ERR_ARG);
    OK(dp_detector_fit_features(d, feat, label, N, 90));
    const dp_detector_params *p = dp_detector_get_params(d);
    assert_true(p->feat_threshold > 0);
    /* the distance is (f-mu_c)' P (f-mu_c) / K, the smaller over the classes; at
     * most 10 % of the rows lie above the 90th percentile */
    float o2[N], os2[N], of2[N];
    dp_detector_scores s2 = {.ood = o2, .ood_spectral = os2, .ood_features = of2};
    OK(dp_detector_score(d, crops, N, &s2));
    int over = 0;
    for (int k = 0; k < N; k++) {
        double best = INFINITY;
        for (int c = 0; c < 2; c++) {
            double s = 0;
            for (int i = 0; i < K; i++)
                for (int j = 0; j < K; j++)
                    s += ((double)feat[k * K + i] - p->feat_mu[c][i]) * p->feat_prec[i * K + j] *
                         ((double)feat[k * K + j] - p->feat_mu[c][j]);
            best = fmin(best, s / K);
        }
        assert_float_equal(of2[k], best, 1e-3 * fmax(1, best));
        assert_true(of2[k] >= -1e-4f);
        over += of2[k] > p->feat_threshold;
        /* one threshold for both checks: the feature distance rescaled onto the spectral one */
        double r = of2[k] * (double)p->ood_threshold / (double)p->feat_threshold;
        assert_float_equal(o2[k], fmax(os2[k], r), 1e-4 * fmax(1, r));
        assert_int_equal(o2[k] > p->ood_threshold, os2[k] > p->ood_threshold || of2[k] > p->feat_threshold);
    }
    assert_true(over <= N / 10);
    /* the statistics travel with the model */
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/test_detect_ood-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    OK(dp_detector_save(d, path, NULL));
    char buf[64];
    OK(dp_checkpoint_meta(ctx, path, "doppel.ood_features", buf, sizeof buf));
    dp_detector *e;
    OK(dp_detector_load(ctx, path, 3, &e));
    const dp_detector_params *q = dp_detector_get_params(e);
    assert_float_equal(q->feat_threshold, p->feat_threshold, 1e-5 * p->feat_threshold);
    assert_memory_equal(q->feat_mu, p->feat_mu, sizeof p->feat_mu);
    assert_memory_equal(q->feat_prec, p->feat_prec, sizeof p->feat_prec);
    float o3[N], of3[N];
    dp_detector_scores s3 = {.ood = o3, .ood_features = of3};
    OK(dp_detector_score(e, crops, N, &s3));
    for (int k = 0; k < N; k++) {
        assert_float_equal(of3[k], of2[k], 1e-4 * fmax(1, of2[k]));
        assert_float_equal(o3[k], o2[k], 1e-4 * fmax(1, o2[k]));
    }
    /* the verdict: over the threshold is uncertain whatever p_fake says, never fake */
    assert_int_equal(dp_detector_verdict(e, 0.999f, q->ood_threshold * 1.5f), DP_VERDICT_UNCERTAIN);
    assert_int_equal(dp_detector_verdict(e, 0.999f, q->ood_threshold * 0.5f), DP_VERDICT_FAKE);
    /* the spectral-only model has no features to give */
    dp_detector_params sp = *dp_detector_get_params(d);
    sp.use_meso = 0;
    sp.feat_threshold = 0;
    dp_detector *f;
    OK(dp_detector_new(ctx, &sp, 2, 1, &f));
    assert_int_equal(dp_detector_score(f, crops, 2, &sc), DP_ERR_UNSUPPORTED);
    assert_int_equal(dp_detector_fit_features(f, feat, label, N, 90), DP_ERR_UNSUPPORTED);
    dp_detector_free(f);
    dp_detector_free(e);
    dp_detector_free(d);
    unlink(path);
    rmdir(dir);
    for (int k = 0; k < N; k++) dp_image_free(ctx, &crops[k]);
    dp_ctx_free(ctx);
}

/* a and b reset to im, two rng streams of the same seed */
static void fresh_pair(const dp_image *im, dp_image *a, dp_image *b, int seed, dp_rng *r1, dp_rng *r2) {
    size_t n = (size_t)im->channels * im->width * im->height;
    memcpy(a->data, im->data, sizeof(float) * n);
    memcpy(b->data, im->data, sizeof(float) * n);
    dp_rng_stream(r1, (uint64_t)seed, 9);
    dp_rng_stream(r2, (uint64_t)seed, 9);
}

static void self_blend(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    enum { W = 48 };
    dp_image im, a, b;
    OK(dp_image_alloc(ctx, 3, W, W, &im));
    fill_crop(&im, 3, 0.1f);
    OK(dp_image_alloc(ctx, 3, W, W, &a));
    OK(dp_image_alloc(ctx, 3, W, W, &b));
    size_t n = (size_t)3 * W * W, plane = (size_t)W * W;
    int changed_any = 0;
    for (int seed = 1; seed <= 20; seed++) {
        dp_rng r1, r2;
        fresh_pair(&im, &a, &b, seed, &r1, &r2);
        OK(dp_self_blend(ctx, &a, &r1));
        OK(dp_self_blend_ex(ctx, &b, &r2, 0)); /* the same as dp_self_blend */
        assert_int_equal(a.width, W);
        assert_int_equal(a.height, W);
        double centre = 0;
        for (size_t i = 0; i < n; i++) {
            assert_true(a.data[i] >= 0 && a.data[i] <= 1);
            assert_float_equal(a.data[i], b.data[i], 0); /* reproducible */
        }
        /* the corners lie outside the face mask: untouched */
        const int cy[4] = {0, 0, W - 1, W - 1}, cx[4] = {0, W - 1, 0, W - 1};
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 4; k++) {
                size_t i = (size_t)c * plane + (size_t)cy[k] * W + cx[k];
                assert_float_equal(a.data[i], im.data[i], 1e-3);
            }
        /* the centre of the face is changed (colour shift, sharpness, shift) */
        for (int c = 0; c < 3; c++)
            for (int y = W / 2 - 4; y < W / 2 + 4; y++)
                for (int x = W / 2 - 4; x < W / 2 + 4; x++) {
                    size_t i = (size_t)c * plane + (size_t)y * W + x;
                    centre += fabs(a.data[i] - im.data[i]);
                }
        changed_any += centre / (3 * 64) > 1e-3;
    }
    assert_true(changed_any >= 18);
    /* without the blur branch: a valid blend, corners untouched, and some seeds differ from the blurred ones */
    int differs = 0;
    for (int seed = 1; seed <= 20; seed++) {
        dp_rng r1, r2;
        fresh_pair(&im, &a, &b, seed, &r1, &r2);
        OK(dp_self_blend_ex(ctx, &a, &r1, 1));
        OK(dp_self_blend(ctx, &b, &r2));
        int d = 0;
        for (size_t i = 0; i < n; i++) {
            assert_true(a.data[i] >= 0 && a.data[i] <= 1);
            d |= a.data[i] != b.data[i];
        }
        for (int c = 0; c < 3; c++) assert_float_equal(a.data[(size_t)c * plane], im.data[(size_t)c * plane], 1e-3);
        differs += d;
    }
    assert_true(differs >= 1 && differs < 20);
    /* bad input */
    dp_image tiny;
    OK(dp_image_alloc(ctx, 3, 4, 4, &tiny));
    dp_rng r;
    dp_rng_stream(&r, 1, 1);
    assert_int_equal(dp_self_blend(ctx, &tiny, &r), DP_ERR_ARG);
    assert_int_equal(dp_self_blend(ctx, NULL, &r), DP_ERR_NULL);
    dp_image_free(ctx, &tiny);
    dp_image_free(ctx, &a);
    dp_image_free(ctx, &b);
    dp_image_free(ctx, &im);
    dp_ctx_free(ctx);
}

/* --arch mesoinception4: the CNN is named in the file (doppel.cnn) and comes
 * back on load; its penultimate features work the same way */
static void inception_model(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_detector *d = small_detector(ctx);
    dp_detector_params p = *dp_detector_get_params(d);
    dp_detector_free(d);
    p.inception = 1;
    OK(dp_detector_new(ctx, &p, 2, 5, &d));
    enum { N = 6 };
    dp_image crops[N];
    float feat[N * DP_DETECT_NFEAT], m1[N], m2[N];
    int label[N];
    for (int k = 0; k < N; k++) {
        OK(dp_image_alloc(ctx, 3, 32, 32, &crops[k]));
        fill_crop(&crops[k], k, 0.2f);
        label[k] = k & 1;
    }
    dp_detector_scores sc = {.meso_logit = m1, .features = feat};
    OK(dp_detector_score(d, crops, N, &sc));
    OK(dp_detector_fit_features(d, feat, label, N, 90));
    char dir[64], path[128], buf[64];
    snprintf(dir, sizeof dir, "/tmp/test_detect_ood-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/i.safetensors", dir);
    OK(dp_detector_save(d, path, NULL));
    OK(dp_checkpoint_meta(ctx, path, "doppel.cnn", buf, sizeof buf));
    assert_string_equal(buf, "mesoinception4");
    dp_detector *e;
    OK(dp_detector_load(ctx, path, 4, &e));
    assert_int_equal(dp_detector_get_params(e)->inception, 1);
    OK(dp_detector_raw(e, crops, N, m2, NULL, NULL));
    for (int k = 0; k < N; k++) assert_float_equal(m1[k], m2[k], 1e-5);
    dp_detector_free(e);
    dp_detector_free(d);
    unlink(path);
    rmdir(dir);
    for (int k = 0; k < N; k++) dp_image_free(ctx, &crops[k]);
    dp_ctx_free(ctx);
}

/* Grad-CAM on the CNN: the map has the work crop's size, is finite and
 * non-negative; the same through dp_detect_heatmap_ex / dp_detect_explain_ex */
static void gradcam(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    for (int inc = 0; inc < 2; inc++) {
        dp_detector *d = small_detector(ctx);
        dp_detector_params p = *dp_detector_get_params(d);
        dp_detector_free(d);
        p.inception = inc;
        OK(dp_detector_new(ctx, &p, 2, 3, &d));
        dp_image crop;
        OK(dp_image_alloc(ctx, 3, 32, 32, &crop));
        fill_crop(&crop, 1, 0.3f);
        float heat[32 * 32];
        for (int rep = 0; rep < 2; rep++) { /* the graph is built once, then reused */
            OK(dp_detector_gradcam(d, &crop, heat));
            for (int i = 0; i < 32 * 32; i++) assert_true(isfinite(heat[i]) && heat[i] >= 0);
        }
        dp_image big;
        OK(dp_image_alloc(ctx, 3, 40, 40, &big));
        assert_int_equal(dp_detector_gradcam(d, &big, heat), DP_ERR_ARG);
        dp_detect_result r;
        memset(&r, 0, sizeof r);
        OK(dp_detect_image(d, NULL, &big, &r));
        dp_image hm, ex;
        OK(dp_detect_heatmap_ex(d, &big, &r, DP_EXPLAIN_GRADCAM, &hm));
        assert_int_equal(hm.width, 40);
        for (int i = 0; i < 40 * 40; i++) assert_true(hm.data[i] >= 0 && hm.data[i] <= 1);
        OK(dp_detect_explain_ex(d, &big, &r, DP_EXPLAIN_GRADCAM, &ex));
        assert_int_equal(ex.channels, 3);
        dp_image_free(ctx, &hm);
        dp_image_free(ctx, &ex);
        dp_image_free(ctx, &big);
        dp_image_free(ctx, &crop);
        dp_detector_free(d);
    }
    /* a spectral-only model has no CNN to explain */
    dp_detector *d = small_detector(ctx);
    dp_detector_params p = *dp_detector_get_params(d);
    dp_detector_free(d);
    p.use_meso = 0;
    OK(dp_detector_new(ctx, &p, 1, 1, &d));
    dp_image crop;
    OK(dp_image_alloc(ctx, 3, 32, 32, &crop));
    float heat[32 * 32];
    assert_int_equal(dp_detector_gradcam(d, &crop, heat), DP_ERR_UNSUPPORTED);
    dp_image_free(ctx, &crop);
    dp_detector_free(d);
    dp_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(feature_ood), cmocka_unit_test(self_blend),
                                       cmocka_unit_test(inception_model), cmocka_unit_test(gradcam)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
