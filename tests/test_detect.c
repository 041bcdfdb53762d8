/* Detection (src/detect/, doppel detect): the crop policy, the spectral
 * features, metric math against hand-computed cases, logistic regression /
 * Platt scaling, augmentation, the model file (the crop policy travels with
 * it), one image end to end, the JSON shape, and the CLI on bad input (a
 * non-image, a truncated JPEG, a 100000x100000 PNG header, an empty folder:
 * one clear error line each, the rest still processed, exit status 2), a
 * drawn face found by the default cascade, explanations (heat map, explained
 * picture), exit codes 0/1 and --explain on a real photo (python3-skimage's
 * astronaut), cross-source thresholds (detect calibrate).
 * With ../shared/data/faces: the shipped model on a few real and generated
 * faces (skipped visibly when absent). Every skip happens before anything is
 * allocated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

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

/* an RGB test image whose pixel (c,y,x) is a known function */
static float pat(int c, int y, int x) { return (float)((x * 7 + y * 13 + c * 29) % 256) / 255.0f; }
static void fill_pat(dp_image *im) {
    for (int c = 0; c < im->channels; c++)
        for (int y = 0; y < im->height; y++)
            for (int x = 0; x < im->width; x++) im->data[((size_t)c * im->height + y) * im->width + x] = pat(c, y, x);
}

/* ------------------------------------------------------------ crop policy */
static void crop_policy_text(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_crop_policy p, q;
    dp_crop_policy_default(&p);
    assert_true(p.work == DP_CROP_WORK && p.size == DP_CROP_SIZE);
    char buf[160];
    OK(dp_crop_policy_format(&p, buf, sizeof buf));
    assert_string_equal(buf, "inner=0.8,margin=0.05,shift=0.05,work=64,size=256");
    OK(dp_crop_policy_parse(ctx, buf, &q));
    assert_memory_equal(&p, &q, sizeof p);
    OK(dp_crop_policy_parse(ctx, "inner=0.7,margin=0,shift=0,work=32,size=128", &q));
    assert_true(fabsf(q.inner - 0.7f) < 1e-6f && q.work == 32 && q.size == 128 && q.margin == 0);
    assert_int_equal(dp_crop_policy_parse(ctx, "inner=0.8,margin=0.05", &q), DP_ERR_FORMAT);         /* missing keys */
    assert_int_equal(dp_crop_policy_parse(ctx, "inner=0.8,margin=0.05,shift=0,work=63,size=256", &q), DP_ERR_FORMAT); /* odd */
    assert_int_equal(dp_crop_policy_parse(ctx, "inner=x", &q), DP_ERR_FORMAT);
    assert_int_equal(dp_crop_policy_parse(ctx, "zoom=1,inner=0.8,margin=0.05,shift=0,work=64,size=256", &q), DP_ERR_FORMAT);
    /* the optional norm key: written only when set, read back, checked */
    p.norm = DP_CROP_NORM_GREY;
    OK(dp_crop_policy_format(&p, buf, sizeof buf));
    assert_string_equal(buf, "inner=0.8,margin=0.05,shift=0.05,work=64,size=256,norm=2");
    OK(dp_crop_policy_parse(ctx, buf, &q));
    assert_memory_equal(&p, &q, sizeof p);
    OK(dp_crop_policy_parse(ctx, "inner=0.8,margin=0.05,shift=0,work=64,size=256", &q));
    assert_int_equal(q.norm, DP_CROP_NORM_NONE);
    assert_int_equal(dp_crop_policy_parse(ctx, "inner=0.8,margin=0.05,shift=0,work=64,size=256,norm=4", &q), DP_ERR_FORMAT);
    assert_int_equal(dp_crop_policy_parse(ctx, "inner=0.8,margin=0.05,shift=0,work=64,size=256,norm=1.5", &q), DP_ERR_FORMAT);
    assert_int_equal(dp_crop_policy_parse(ctx, "inner=0.8,margin=0.05,shift=0,work=64,size=256,norm=-1", &q), DP_ERR_FORMAT);
    assert_int_equal(dp_crop_policy_format(&p, buf, 52), DP_ERR_ARG); /* no room for ",norm=2" */
    dp_ctx_free(ctx);
}

/* Per-crop normalisation: each plane (CHANNEL) or the luminance (GREY) to mean
 * 0.5, deviation 0.2/(sd+0.02)*sd; a colour cast, brightness and contrast
 * change of the crop leaves the input (nearly) unchanged. */
static void crop_norm(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_image a, b, ia, ib;
    OK(dp_image_alloc(ctx, 3, 16, 16, &a));
    OK(dp_image_alloc(ctx, 3, 16, 16, &b));
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 256; i++) {
            float v = 0.3f + 0.4f * (float)((i * 7 + c * 13) % 31) / 31.0f;
            a.data[c * 256 + i] = v;
            b.data[c * 256 + i] = 0.1f + (0.5f + 0.1f * c) * v; /* per-channel gain and offset */
        }
    dp_crop_policy p = {.inner = 1.0f, .margin = 0, .shift = 0, .work = 16, .size = 16, .norm = DP_CROP_NORM_CHANNEL};
    OK(dp_crop_to_input(ctx, &a, &p, &ia));
    OK(dp_crop_to_input(ctx, &b, &p, &ib));
    for (int c = 0; c < 3; c++) {
        double m = 0, q = 0, sa = 0;
        for (int i = 0; i < 256; i++) m += a.data[c * 256 + i];
        m /= 256;
        for (int i = 0; i < 256; i++) sa += (a.data[c * 256 + i] - m) * (a.data[c * 256 + i] - m);
        sa = sqrt(sa / 256);
        double mo = 0;
        for (int i = 0; i < 256; i++) mo += ia.data[c * 256 + i];
        mo /= 256;
        for (int i = 0; i < 256; i++) q += (ia.data[c * 256 + i] - mo) * (ia.data[c * 256 + i] - mo);
        assert_float_equal(mo, 0.5, 1e-5);
        assert_float_equal(sqrt(q / 256), 0.2 * sa / (sa + 0.02), 1e-5);
    }
    /* the gain changes only the eps term: close, not equal */
    for (int i = 0; i < 3 * 256; i++) assert_float_equal(ia.data[i], ib.data[i], 0.05);
    dp_image_free(ctx, &ia);
    dp_image_free(ctx, &ib);
    p.norm = DP_CROP_NORM_GREY;
    OK(dp_crop_to_input(ctx, &a, &p, &ia));
    for (int i = 0; i < 256; i++) {
        assert_float_equal(ia.data[i], ia.data[256 + i], 0);
        assert_float_equal(ia.data[i], ia.data[512 + i], 0);
    }
    dp_image_free(ctx, &ia);
    /* RESIDUAL: equal channels, the same for a brightness shift of the crop */
    p.norm = DP_CROP_NORM_RESIDUAL;
    p.size = 32;
    OK(dp_crop_to_input(ctx, &a, &p, &ia));
    for (int i = 0; i < 3 * 256; i++) b.data[i] = a.data[i] + 0.1f;
    OK(dp_crop_to_input(ctx, &b, &p, &ib));
    assert_int_equal(ia.width, 32);
    assert_int_equal(ia.channels, 3);
    for (int i = 0; i < 1024; i++) {
        assert_float_equal(ia.data[i], ia.data[1024 + i], 0);
        assert_float_equal(ia.data[i], ia.data[2048 + i], 0);
        assert_float_equal(ia.data[i], ib.data[i], 1e-4);
    }
    dp_image_free(ctx, &ia);
    dp_image_free(ctx, &ib);
    /* a flat crop stays flat at 0.5 */
    for (int i = 0; i < 3 * 256; i++) a.data[i] = 0.7f;
    for (int m = DP_CROP_NORM_CHANNEL; m <= DP_CROP_NORM_RESIDUAL; m++) {
        p.norm = m;
        OK(dp_crop_to_input(ctx, &a, &p, &ia));
        for (int i = 0; i < 3 * ia.width * ia.height; i++) assert_float_equal(ia.data[i], 0.5, 1e-5);
        dp_image_free(ctx, &ia);
    }
    p.norm = 7;
    assert_int_equal(dp_crop_to_input(ctx, &a, &p, &ia), DP_ERR_ARG);
    dp_image_free(ctx, &a);
    dp_image_free(ctx, &b);
    dp_ctx_free(ctx);
}

static void crop_square_math(void **st) {
    (void)st;
    dp_crop_policy p = {.inner = 0.8f, .margin = 0.05f, .shift = 0.05f, .work = 64, .size = 256};
    dp_face_box f = {.x = 100, .y = 50, .w = 100, .h = 100};
    int x, y, s;
    dp_crop_square(&p, &f, &x, &y, &s);
    /* side 100*0.8*1.1 = 88; centre (150, 100 + 5) */
    assert_int_equal(s, 88);
    assert_int_equal(x, 150 - 44);
    assert_int_equal(y, 105 - 44);
    /* a non-square box: the longer side counts */
    dp_face_box g = {.x = 0, .y = 0, .w = 50, .h = 100};
    p.shift = 0;
    dp_crop_square(&p, &g, &x, &y, &s);
    assert_int_equal(s, 88);
    assert_int_equal(x, 25 - 44);
    assert_int_equal(y, 50 - 44);
    dp_face_box fb;
    dp_crop_fallback_box(200, 100, &fb);
    assert_int_equal(fb.w, 90);
    assert_int_equal(fb.h, 90);
    assert_int_equal(fb.x, 55);
    assert_int_equal(fb.y, 5);
}

/* The crop is the square cut out and sent through dp_image_resize: the same
 * path as every other resampling. */
static void crop_face_pixels(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_image img, crop, sq, ref, in;
    OK(dp_image_alloc(ctx, 3, 120, 160, &img));
    fill_pat(&img);
    dp_crop_policy p = {.inner = 1.0f, .margin = 0, .shift = 0, .work = 32, .size = 64};
    dp_face_box f = {.x = 40, .y = 20, .w = 64, .h = 64};
    OK(dp_crop_face(ctx, &img, &f, &p, &crop));
    assert_int_equal(crop.width, 32);
    assert_int_equal(crop.channels, 3);
    OK(dp_image_alloc(ctx, 3, 64, 64, &sq));
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++) sq.data[((size_t)c * 64 + y) * 64 + x] = pat(c, 20 + y, 40 + x);
    OK(dp_image_resize(ctx, &sq, 32, 32, &ref));
    for (size_t i = 0; i < (size_t)3 * 32 * 32; i++) assert_float_equal(crop.data[i], ref.data[i], 1e-6);
    OK(dp_crop_to_input(ctx, &crop, &p, &in));
    assert_int_equal(in.width, 64);
    assert_int_equal(in.height, 64);
    dp_image_free(ctx, &in);
    dp_image_free(ctx, &crop);
    dp_image_free(ctx, &ref);
    /* at the border: the missing part repeats the edge pixels */
    dp_face_box e = {.x = -20, .y = -20, .w = 40, .h = 40};
    p.work = 40;
    OK(dp_crop_face(ctx, &img, &e, &p, &crop)); /* 40 px square → 40: identity resampling */
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 40; y++)
            for (int x = 0; x < 40; x++) {
                int sy = y - 20 < 0 ? 0 : y - 20, sx = x - 20 < 0 ? 0 : x - 20;
                assert_float_equal(crop.data[((size_t)c * 40 + y) * 40 + x], pat(c, sy, sx), 1e-5);
            }
    dp_image_free(ctx, &crop);
    /* a grey image gives an RGB crop with equal channels */
    dp_image grey;
    OK(dp_image_alloc(ctx, 1, 50, 50, &grey));
    for (int i = 0; i < 2500; i++) grey.data[i] = (float)(i % 50) / 50.0f;
    dp_face_box gb = {.x = 5, .y = 5, .w = 40, .h = 40};
    OK(dp_crop_face(ctx, &grey, &gb, &p, &crop));
    for (int i = 0; i < 1600; i++) {
        assert_float_equal(crop.data[i], crop.data[1600 + i], 0);
        assert_float_equal(crop.data[i], crop.data[3200 + i], 0);
    }
    dp_image_free(ctx, &crop);
    dp_face_box bad = {.x = 0, .y = 0, .w = 0, .h = 10};
    assert_int_equal(dp_crop_face(ctx, &grey, &bad, &p, &crop), DP_ERR_ARG);
    dp_image_free(ctx, &grey);
    dp_image_free(ctx, &sq);
    dp_image_free(ctx, &img);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ spectral features */
static void spectral_features(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_image im;
    OK(dp_image_alloc(ctx, 1, 64, 64, &im));
    float f[32], g[32];
    assert_int_equal(dp_spectral_count(64), 32);
    /* a cosine of 16 cycles across: the profile peaks at ring 16 */
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) im.data[y * 64 + x] = 0.5f + 0.4f * cosf(2 * 3.14159265f * 16 * x / 64.0f);
    OK(dp_spectral_features(ctx, &im, f, 32));
    /* ring 16 (index 15) stands well above rings 8 and 28 */
    assert_true(f[15] > f[7] + 1 && f[15] > f[27] + 1);
    /* the profile has mean 0, and does not move when the contrast changes */
    double m = 0;
    for (int i = 0; i < 32; i++) m += f[i];
    assert_true(fabs(m) < 1e-4);
    /* on a textured image */
    dp_rng rng;
    dp_rng_stream(&rng, 3, 0);
    for (int i = 0; i < 64 * 64; i++) im.data[i] = dp_rng_uniform(&rng);
    OK(dp_spectral_features(ctx, &im, f, 32));
    for (int i = 0; i < 64 * 64; i++) im.data[i] = 0.5f + 0.5f * (im.data[i] - 0.5f);
    OK(dp_spectral_features(ctx, &im, g, 32));
    for (int i = 0; i < 32; i++) assert_float_equal(f[i], g[i], 1e-3);
    /* errors */
    assert_int_equal(dp_spectral_features(ctx, &im, f, 16), DP_ERR_ARG);
    dp_image odd;
    OK(dp_image_alloc(ctx, 1, 64, 32, &odd));
    assert_int_equal(dp_spectral_features(ctx, &odd, f, 32), DP_ERR_ARG);
    dp_image_free(ctx, &odd);
    dp_image_free(ctx, &im);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ metrics */
static void metric_auc_ap(void **st) {
    (void)st;
    /* sklearn's documented example: roc_auc_score = 0.75, average_precision = 0.8333 */
    float s[] = {0.1f, 0.4f, 0.35f, 0.8f};
    int y[] = {0, 0, 1, 1};
    assert_float_equal(dp_metric_auc(s, y, 4), 0.75, 1e-12);
    assert_float_equal(dp_metric_ap(s, y, 4), (1.0 + 2.0 / 3.0) / 2.0, 1e-12);
    /* ties count one half */
    float t[] = {0.5f, 0.5f, 0.5f, 0.9f};
    int z[] = {0, 1, 0, 1};
    /* pairs (pos,neg): 0.9 beats both negatives (2), the tied positive ties both (2 × 0.5) → 3/4 */
    assert_float_equal(dp_metric_auc(t, z, 4), 0.75, 1e-12);
    /* AP with ties: threshold 0.9: R 0.5 P 1; threshold 0.5: R 1 P 2/4 → 0.5 + 0.25 */
    assert_float_equal(dp_metric_ap(t, z, 4), 0.75, 1e-12);
    /* perfect and reversed */
    float u[] = {0.1f, 0.2f, 0.8f, 0.9f};
    int w[] = {0, 0, 1, 1};
    assert_float_equal(dp_metric_auc(u, w, 4), 1.0, 0);
    int wr[] = {1, 1, 0, 0};
    assert_float_equal(dp_metric_auc(u, wr, 4), 0.0, 0);
    int one[] = {1, 1, 1, 1};
    assert_true(isnan(dp_metric_auc(u, one, 4)));
    /* ROC points: (0,0), then one per distinct score */
    float fpr[6], tpr[6];
    assert_int_equal(dp_metric_roc(s, y, 4, fpr, tpr), 5);
    float ef[] = {0, 0, 0.5f, 0.5f, 1}, et[] = {0, 0.5f, 0.5f, 1, 1};
    for (int i = 0; i < 5; i++) {
        assert_float_equal(fpr[i], ef[i], 1e-7);
        assert_float_equal(tpr[i], et[i], 1e-7);
    }
}

static void metric_ece(void **st) {
    (void)st;
    /* bins of 0.1: bin 0 {0.05: y 0} → |0.05 - 0|; bin 9 {0.95, 0.95: y 1, 0} → |1.9 - 1|;
     * bin 5 {0.55: y 1} → |0.55 - 1|; sum / 4 = (0.05 + 0.9 + 0.45) / 4 = 0.35 */
    float p[] = {0.05f, 0.95f, 0.95f, 0.55f};
    int y[] = {0, 1, 0, 1};
    assert_float_equal(dp_metric_ece(p, y, 4, 10), 0.35, 1e-6);
    /* perfectly calibrated: p 0.25 on 4 samples, one positive */
    float q[] = {0.25f, 0.25f, 0.25f, 0.25f};
    int z[] = {1, 0, 0, 0};
    assert_float_equal(dp_metric_ece(q, z, 4, 10), 0.0, 1e-7);
    /* p = 1.0 falls into the last bin */
    float r1[] = {1.0f};
    int r1y[] = {1};
    assert_float_equal(dp_metric_ece(r1, r1y, 1, 10), 0.0, 1e-7);
}

/* Platt scaling recovers a known logistic: at x = -2..2, exactly round(1000·sigmoid(1.5x - 0.5))
 * positives of 1000 — the maximum-likelihood fit is (close to) 1.5, -0.5. */
static void logreg_platt(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    int n = 5 * 1000;
    float *x = malloc(sizeof(float) * (size_t)n);
    int *y = malloc(sizeof(int) * (size_t)n);
    for (int k = 0; k < 5; k++) {
        double xv = k - 2, p = 1 / (1 + exp(-(1.5 * xv - 0.5)));
        int pos = (int)lround(1000 * p);
        for (int i = 0; i < 1000; i++) {
            x[k * 1000 + i] = (float)xv;
            y[k * 1000 + i] = i < pos;
        }
    }
    float w[2];
    OK(dp_logreg_fit(ctx, x, y, n, 1, 0, w));
    assert_float_equal(w[0], 1.5, 0.01);
    assert_float_equal(w[1], -0.5, 0.01);
    /* separable data stays finite (the small ridge) */
    float xs[] = {-1, -2, 1, 2};
    int ys[] = {0, 0, 1, 1};
    OK(dp_logreg_fit(ctx, xs, ys, 4, 1, 1e-3, w));
    assert_true(isfinite(w[0]) && w[0] > 1);
    assert_int_equal(dp_logreg_fit(ctx, xs, ys, 4, 0, 0, w), DP_ERR_ARG);
    assert_float_equal(dp_logit(0.5f), 0, 1e-7);
    assert_true(isfinite(dp_logit(0.0f)) && isfinite(dp_logit(1.0f)));
    assert_float_equal(dp_sigmoid_d(0), 0.5, 0);
    assert_true(dp_sigmoid_d(-1000) >= 0 && dp_sigmoid_d(1000) <= 1);
    free(x);
    free(y);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ augmentation */
static void augmentation(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_image im;
    OK(dp_image_alloc(ctx, 3, 64, 64, &im));
    fill_pat(&im);
    /* JPEG at q100 stays close */
    dp_image j = im;
    OK(dp_image_alloc(ctx, 3, 64, 64, &j));
    memcpy(j.data, im.data, sizeof(float) * 3 * 64 * 64);
    OK(dp_jpeg_recompress(ctx, &j, 100));
    double err = 0;
    for (int i = 0; i < 3 * 64 * 64; i++) err += fabs(j.data[i] - im.data[i]);
    assert_true(err / (3 * 64 * 64) < 0.06);
    assert_int_equal(dp_jpeg_recompress(ctx, &j, 0), DP_ERR_ARG);
    /* blur keeps a constant image constant */
    for (int i = 0; i < 3 * 64 * 64; i++) j.data[i] = 0.3f;
    OK(dp_gaussian_blur(ctx, &j, 1.5f));
    for (int i = 0; i < 3 * 64 * 64; i++) assert_float_equal(j.data[i], 0.3f, 1e-5);
    OK(dp_image_rescale(ctx, &j, 0.5));
    assert_int_equal(j.width, 32);
    /* the augmentation keeps the size and the range, and is reproducible */
    dp_augment_opts ao;
    dp_augment_opts_default(&ao);
    ao.p_jpeg = ao.p_blur = ao.p_scale = ao.p_flip = ao.p_jitter = ao.p_cutout = 1;
    dp_image a, b;
    OK(dp_image_alloc(ctx, 3, 64, 64, &a));
    OK(dp_image_alloc(ctx, 3, 64, 64, &b));
    memcpy(a.data, im.data, sizeof(float) * 3 * 64 * 64);
    memcpy(b.data, im.data, sizeof(float) * 3 * 64 * 64);
    dp_rng r1, r2;
    dp_rng_stream(&r1, 5, 1);
    dp_rng_stream(&r2, 5, 1);
    OK(dp_augment(ctx, &a, &ao, &r1));
    OK(dp_augment(ctx, &b, &ao, &r2));
    assert_int_equal(a.width, 64);
    assert_int_equal(a.height, 64);
    for (int i = 0; i < 3 * 64 * 64; i++) {
        assert_true(a.data[i] >= 0 && a.data[i] <= 1);
        assert_float_equal(a.data[i], b.data[i], 0);
    }
    dp_image_free(ctx, &a);
    dp_image_free(ctx, &b);
    dp_image_free(ctx, &j);
    dp_image_free(ctx, &im);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ the model file */
static const char *tmpdir(void) {
    static char d[64];
    if (!d[0]) {
        snprintf(d, sizeof d, "/tmp/test_detect-XXXXXX");
        assert_non_null(mkdtemp(d));
    }
    return d;
}

static dp_detector *small_detector(dp_ctx *ctx, int use_meso) {
    dp_detector_params p;
    memset(&p, 0, sizeof p);
    p.crop = (dp_crop_policy){.inner = 0.9f, .margin = 0.1f, .shift = 0, .work = 32, .size = 64};
    p.use_meso = use_meso;
    p.n_spec = 16;
    for (int i = 0; i < 16; i++) {
        p.spec_w[i] = 0.1f * (float)(i - 8);
        p.spec_mu[i] = 0.01f * (float)i;
        p.spec_sigma[i] = 1 + 0.1f * (float)i;
        p.class_mu[0][i] = -0.5f, p.class_mu[1][i] = 0.5f;
        p.class_sigma[0][i] = p.class_sigma[1][i] = 1;
    }
    p.spec_b = 0.25f;
    p.ood_threshold = 50;
    p.fuse_w[0] = use_meso ? 0.7f : 0;
    p.fuse_w[1] = 1.3f;
    p.fuse_w[2] = -0.2f;
    p.t_real = 0.25f;
    p.t_fake = 0.8f;
    dp_detector *d;
    OK(dp_detector_new(ctx, &p, 4, 3, &d));
    return d;
}

static void model_file(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_detector *d = small_detector(ctx, 1);
    char path[128];
    snprintf(path, sizeof path, "%s/m.safetensors", tmpdir());
    OK(dp_detector_save(d, path, (const char *const[]){"doppel.note", "test", NULL}));
    char buf[128];
    OK(dp_checkpoint_meta(ctx, path, "doppel.crop", buf, sizeof buf));
    assert_string_equal(buf, "inner=0.9,margin=0.1,shift=0,work=32,size=64");
    dp_detector *e;
    OK(dp_detector_load(ctx, path, 2, &e));
    const dp_detector_params *a = dp_detector_get_params(d), *b = dp_detector_get_params(e);
    assert_memory_equal(&a->crop, &b->crop, sizeof a->crop);
    assert_int_equal(b->n_spec, 16);
    assert_float_equal(b->t_real, 0.25f, 1e-6);
    assert_float_equal(b->t_fake, 0.8f, 1e-6);
    assert_float_equal(b->ood_threshold, 50, 1e-5);
    assert_memory_equal(a->spec_w, b->spec_w, sizeof a->spec_w);
    assert_memory_equal(a->fuse_w, b->fuse_w, sizeof a->fuse_w);
    /* the same scores from both (Meso-4 weights included) */
    dp_image crops[3];
    for (int k = 0; k < 3; k++) {
        OK(dp_image_alloc(ctx, 3, 32, 32, &crops[k]));
        for (int i = 0; i < 3 * 32 * 32; i++) crops[k].data[i] = (float)((i * (k + 3)) % 97) / 97.0f;
    }
    float m1[3], s1[3], o1[3], m2[3], s2[3], o2[3];
    OK(dp_detector_raw(d, crops, 3, m1, s1, o1));
    OK(dp_detector_raw(e, crops, 3, m2, s2, o2));
    for (int k = 0; k < 3; k++) {
        assert_float_equal(m1[k], m2[k], 1e-5);
        assert_float_equal(s1[k], s2[k], 1e-5);
        assert_float_equal(o1[k], o2[k], 1e-5);
        float p = dp_detector_fuse(e, m2[k], s2[k]);
        assert_float_equal(p, 1 / (1 + exp(-(0.7 * m2[k] + 1.3 * s2[k] - 0.2))), 1e-5);
    }
    /* the verdict thresholds */
    assert_int_equal(dp_detector_verdict(e, 0.1f, 0), DP_VERDICT_REAL);
    assert_int_equal(dp_detector_verdict(e, 0.5f, 0), DP_VERDICT_UNCERTAIN);
    assert_int_equal(dp_detector_verdict(e, 0.8f, 0), DP_VERDICT_FAKE);
    assert_int_equal(dp_detector_verdict(e, 0.99f, 51), DP_VERDICT_UNCERTAIN); /* unlike the training data */
    assert_int_equal(dp_detector_verdict(e, 0.01f, 51), DP_VERDICT_UNCERTAIN);
    assert_string_equal(dp_verdict_name(DP_VERDICT_FAKE), "fake");
    /* a crop of the wrong size is refused */
    dp_image big;
    OK(dp_image_alloc(ctx, 3, 64, 64, &big));
    assert_int_equal(dp_detector_raw(e, &big, 1, m1, s1, o1), DP_ERR_ARG);
    dp_image_free(ctx, &big);
    /* a file that is not a detection model */
    dp_paramset *ps;
    OK(dp_paramset_new(ctx, &ps));
    dp_tensor *t;
    OK(dp_paramset_get_or_add(ps, "w", 1, (int64_t[]){2}, 0, NULL, &t));
    char other[160];
    snprintf(other, sizeof other, "%s/other.safetensors", tmpdir());
    OK(dp_checkpoint_save(other, ps, NULL, "x", NULL));
    dp_detector *z = NULL;
    assert_int_equal(dp_detector_load(ctx, other, 1, &z), DP_ERR_FORMAT);
    assert_non_null(strstr(dp_ctx_error(ctx), "not a doppel detection model"));
    assert_null(z);
    dp_paramset_free(ps);
    for (int k = 0; k < 3; k++) dp_image_free(ctx, &crops[k]);
    dp_detector_free(d);
    dp_detector_free(e);
    dp_ctx_free(ctx);
}

/* One image with no face finder: the centred fallback crop is scored and the
 * verdict is "uncertain"; the JSON has the shape. */
static void image_and_json(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_detector *d = small_detector(ctx, 0);
    dp_image im;
    OK(dp_image_alloc(ctx, 3, 80, 100, &im));
    fill_pat(&im);
    dp_detect_result r;
    OK(dp_detect_image(d, NULL, &im, &r));
    assert_int_equal(r.n_faces, 0);
    assert_int_equal(r.n_scored, 1);
    assert_int_equal(r.no_face, 1);
    assert_int_equal(r.verdict, DP_VERDICT_UNCERTAIN);
    assert_int_equal(r.faces[0].box.w, 72);
    assert_true(r.p_fake >= 0 && r.p_fake <= 1);
    char buf[4096];
    int n = dp_detect_result_json("a \"b\".png", &r, "{\"found\":false}", buf, sizeof buf);
    assert_int_equal(n, (int)strlen(buf));
    assert_non_null(strstr(buf, "{\"file\":\"a \\\"b\\\".png\",\"verdict\":\"uncertain\",\"p_fake\":"));
    assert_non_null(strstr(buf, "\"faces\":[{\"box\":[14,4,72,72],\"p_fake\":"));
    assert_non_null(strstr(buf, "\"detectors\":{\"meso4\":"));
    assert_non_null(strstr(buf, ",\"spectral\":"));
    assert_non_null(strstr(buf, "\"watermark\":{\"found\":false}}"));
    /* a short buffer: the length needed is still returned */
    char small[16];
    assert_int_equal(dp_detect_result_json("a \"b\".png", &r, "{\"found\":false}", small, sizeof small), n);
    /* occlusion map: finite, non-negative */
    float heat[32 * 32];
    dp_image crop;
    OK(dp_crop_face(ctx, &im, &r.faces[0].box, &dp_detector_get_params(d)->crop, &crop));
    OK(dp_detector_occlusion(d, &crop, 8, heat));
    for (int i = 0; i < 32 * 32; i++) assert_true(isfinite(heat[i]) && heat[i] >= 0);
    dp_image_free(ctx, &crop);
    dp_image_free(ctx, &im);
    dp_detector_free(d);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ the CLI on bad input */
static int run(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* The default face cascade is installed (opencv-data); says why not. */
static int have_cascade(void) {
    dp_ctx *ctx = new_ctx();
    dp_face_detector *fd = NULL;
    int ok = dp_face_detector_default(ctx, &fd) == DP_OK;
    if (!ok) printf("skipped: no face cascade (apt-get install opencv-data): %s\n", dp_ctx_error(ctx));
    dp_face_detector_free(fd);
    dp_ctx_free(ctx);
    return ok;
}

static void cli_bad_input(void **st) {
    (void)st;
    const char *cli = DP_CLI_PATH;
    if (access(cli, X_OK) != 0) {
        printf("skipped: the doppel CLI is not at %s\n", cli);
        skip();
    }
    if (!have_cascade()) skip();
    dp_ctx *ctx = new_ctx();
    const char *d = tmpdir();
    char model[160], p[256], cmd[2048], out[16384];
    snprintf(model, sizeof model, "%s/spec.safetensors", d);
    dp_detector *det = small_detector(ctx, 0);
    OK(dp_detector_save(det, model, NULL));
    dp_detector_free(det);
    /* a good image */
    dp_image im;
    OK(dp_image_alloc(ctx, 3, 64, 80, &im));
    fill_pat(&im);
    snprintf(p, sizeof p, "%s/good.png", d);
    OK(dp_image_save_png(ctx, p, &im));
    dp_image_free(ctx, &im);
    /* a non-image */
    snprintf(p, sizeof p, "%s/notes.jpg", d);
    write_file(p, "hello, this is text\n", 20);
    /* a truncated JPEG: the first bytes of one */
    static const unsigned char jpeg_head[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
                                              0xFF, 0xDB, 0x00, 0x43, 0x00};
    snprintf(p, sizeof p, "%s/truncated.jpg", d);
    write_file(p, jpeg_head, sizeof jpeg_head);
    /* a PNG header announcing 100000 x 100000 pixels */
    /* good.png with its IHDR saying 100000 x 100000 (CRC recomputed) */
    {
        char gp[256];
        snprintf(gp, sizeof gp, "%s/good.png", d);
        FILE *g = fopen(gp, "rb");
        assert_non_null(g);
        unsigned char pngc[65536];
        size_t np = fread(pngc, 1, sizeof pngc, g);
        fclose(g);
        assert_true(np > 33);
        for (int k = 0; k < 2; k++) {
            unsigned char *q = pngc + 16 + 4 * k;
            q[0] = 0x00, q[1] = 0x01, q[2] = 0x86, q[3] = 0xA0;
        }
        uLong crc = crc32(0L, pngc + 12, 17);
        pngc[29] = (unsigned char)(crc >> 24), pngc[30] = (unsigned char)(crc >> 16), pngc[31] = (unsigned char)(crc >> 8),
        pngc[32] = (unsigned char)crc;
        snprintf(p, sizeof p, "%s/huge.png", d);
        write_file(p, pngc, np);
    }
    /* an empty folder */
    char empty[200];
    snprintf(empty, sizeof empty, "%s/empty", d);
    mkdir(empty, 0755);
    snprintf(cmd, sizeof cmd,
             "%s detect --model %s %s/notes.jpg %s/truncated.jpg %s/huge.png %s %s/good.png 2>%s/err.txt; echo rc=$?", cli,
             model, d, d, d, empty, d, d);
    run(cmd, out, sizeof out);
    printf("%s", out);
    assert_non_null(strstr(out, "good.png: uncertain")); /* the good image is still processed */
    assert_non_null(strstr(out, "rc=2"));
    char ep[256], err[8192];
    snprintf(ep, sizeof ep, "%s/err.txt", d);
    FILE *f = fopen(ep, "r");
    assert_non_null(f);
    size_t k = fread(err, 1, sizeof err - 1, f);
    err[k] = 0;
    fclose(f);
    printf("%s", err);
    int lines = 0;
    for (char *c = err; *c; c++) lines += *c == '\n';
    assert_int_equal(lines, 4); /* one line per bad input */
    assert_non_null(strstr(err, "notes.jpg: not a PNG, JPEG or WebP image"));
    assert_non_null(strstr(err, "truncated.jpg"));
    assert_non_null(strstr(err, "huge.png"));
    assert_non_null(strstr(err, "100000"));
    assert_non_null(strstr(err, "empty: no images"));
    /* --json on the good image alone: exit 1 (uncertain), the shape */
    snprintf(cmd, sizeof cmd, "%s detect --json --model %s %s/good.png; echo rc=$?", cli, model, d);
    run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "\"verdict\":\"uncertain\""));
    assert_non_null(strstr(out, "\"detectors\":{\"meso4\":"));
    assert_non_null(strstr(out, "rc=1"));
    /* usage errors: 2 */
    snprintf(cmd, sizeof cmd, "%s detect --bogus 2>/dev/null; echo rc=$?", cli);
    run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "rc=2"));
    snprintf(cmd, sizeof cmd, "%s detect train --real %s 2>&1; echo rc=$?", cli, empty);
    run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "rc=2"));
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ a drawn face */
/* A grey cartoon face (shaded oval, brows, eyes, nose shade, mouth) on a dark
 * background: the default cascade (haarcascade_frontalface_alt2) finds it,
 * measured 61 neighbours at [24,25,113,113]; a flat image has none. */
static void blob(dp_image *im, double cx, double cy, double rx, double ry, float v) {
    for (int y = 0; y < im->height; y++)
        for (int x = 0; x < im->width; x++) {
            double dx = (x - cx) / rx, dy = (y - cy) / ry;
            if (dx * dx + dy * dy < 1) im->data[(size_t)y * im->width + x] = v;
        }
}
static void draw_face(dp_image *im, double cx, double cy, double r) {
    for (int y = 0; y < im->height; y++)
        for (int x = 0; x < im->width; x++) {
            double dx = (x - cx) / (r * 0.8), dy = (y - cy) / r, q = dx * dx + dy * dy;
            im->data[(size_t)y * im->width + x] = (float)floor(q < 1 ? 185 - 25 * q : 60) / 255.0f;
        }
    double ex = r * 0.36;
    for (int s = -1; s <= 1; s += 2) {
        blob(im, cx + s * ex, cy - r * 0.38, r * 0.22, r * 0.06, 70 / 255.0f); /* brow */
        blob(im, cx + s * ex, cy - r * 0.18, r * 0.15, r * 0.09, 40 / 255.0f); /* eye */
    }
    blob(im, cx, cy + r * 0.15, r * 0.08, r * 0.2, 150 / 255.0f); /* nose shade */
    blob(im, cx, cy + r * 0.5, r * 0.3, r * 0.08, 60 / 255.0f);   /* mouth */
}

static void drawn_face(void **st) {
    (void)st;
    if (!have_cascade()) skip();
    dp_ctx *ctx = new_ctx();
    dp_face_detector *fd;
    OK(dp_face_detector_default(ctx, &fd));
    dp_image im;
    OK(dp_image_alloc(ctx, 1, 160, 160, &im));
    draw_face(&im, 80, 80, 55);
    dp_face_box b[4];
    int n = 0;
    dp_face_opts fo = {0};
    OK(dp_face_detect(fd, &im, &fo, b, 4, &n));
    printf("drawn face: %d box(es), first [%d,%d,%d,%d] %d neighbours\n", n, b[0].x, b[0].y, b[0].w, b[0].h, b[0].neighbors);
    assert_int_equal(n, 1);
    assert_true(fabs(b[0].x + b[0].w / 2.0 - 80) < 10 && fabs(b[0].y + b[0].h / 2.0 - 80) < 10);
    assert_true(b[0].w >= 80 && b[0].w <= 140);
    /* the crop policy on that box, and the whole path: one face found, not the fallback */
    dp_detector *d = small_detector(ctx, 0);
    dp_detect_result r;
    OK(dp_detect_image(d, fd, &im, &r));
    assert_int_equal(r.n_faces, 1);
    assert_int_equal(r.no_face, 0);
    assert_memory_equal(&r.faces[0].box, &b[0], sizeof b[0]);
    /* a flat image: nothing */
    for (size_t i = 0; i < (size_t)160 * 160; i++) im.data[i] = 0.5f;
    OK(dp_face_detect(fd, &im, &fo, b, 4, &n));
    assert_int_equal(n, 0);
    dp_detector_free(d);
    dp_image_free(ctx, &im);
    dp_face_detector_free(fd);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ explanations */
static void explain_maps(void **st) {
    (void)st;
    dp_ctx *ctx = new_ctx();
    dp_detector *d = small_detector(ctx, 0);
    dp_image im, heat, vis;
    OK(dp_image_alloc(ctx, 3, 80, 100, &im));
    fill_pat(&im);
    dp_detect_result r;
    OK(dp_detect_image(d, NULL, &im, &r)); /* the fallback box [14,4,72,72] */
    OK(dp_detect_heatmap(d, &im, &r, &heat));
    assert_int_equal(heat.channels, 1);
    assert_int_equal(heat.height, 80);
    assert_int_equal(heat.width, 100);
    /* crop square: side round(72*0.9*1.2) = 78 around (50,40): x 11..88, y 1..78 */
    int x0, y0, side;
    dp_crop_square(&dp_detector_get_params(d)->crop, &r.faces[0].box, &x0, &y0, &side);
    assert_true(x0 == 11 && y0 == 1 && side == 78);
    float mx = 0;
    for (int y = 0; y < 80; y++)
        for (int x = 0; x < 100; x++) {
            float v = heat.data[y * 100 + x];
            assert_true(isfinite(v) && v >= 0 && v <= 1);
            if (x < x0 || x >= x0 + side || y < y0 || y >= y0 + side) assert_true(v == 0);
            mx = v > mx ? v : mx;
        }
    assert_true(mx == 0 || mx > 0.9f); /* normalised to the face's own maximum */
    OK(dp_detect_explain(d, &im, &r, &vis));
    assert_true(vis.channels == 3 && vis.height == 80 && vis.width == 100);
    /* the box's left edge (x = 14, thickness 2) in the uncertain colour */
    size_t pl = 80 * 100, i = 40 * 100 + 14;
    assert_true(vis.data[i] == 1.0f && fabsf(vis.data[pl + i] - 0.8f) < 1e-6f && fabsf(vis.data[2 * pl + i] - 0.1f) < 1e-6f);
    /* far from the face: the image unchanged */
    assert_true(vis.data[79 * 100 + 99] == im.data[79 * 100 + 99]);
    assert_int_equal(dp_detect_heatmap(d, NULL, &r, &heat), DP_ERR_NULL);
    dp_image_free(ctx, &vis);
    dp_image_free(ctx, &heat);
    dp_image_free(ctx, &im);
    dp_detector_free(d);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ exit codes on a real photo */
/* Debian's python3-skimage ships a public-domain NASA portrait; the model
 * here is forced real or fake by its fusion bias (no learnt weights). */
static void cli_exit_codes(void **st) {
    (void)st;
    const char *cli = DP_CLI_PATH;
    const char *photo = "/usr/lib/python3/dist-packages/skimage/data/astronaut.png";
    if (access(cli, X_OK) != 0 || access(photo, R_OK) != 0) {
        printf("skipped: needs %s and %s (apt-get install python3-skimage)\n", cli, photo);
        skip();
    }
    if (!have_cascade()) skip();
    dp_ctx *ctx = new_ctx();
    const char *d = tmpdir();
    char real_m[200], fake_m[200], cmd[2048], out[16384], png[200];
    snprintf(real_m, sizeof real_m, "%s/real.safetensors", d);
    snprintf(fake_m, sizeof fake_m, "%s/fake.safetensors", d);
    snprintf(png, sizeof png, "%s/explained.png", d);
    for (int k = 0; k < 2; k++) {
        dp_detector *det = small_detector(ctx, 0);
        dp_detector_params *p = dp_detector_get_params(det);
        p->fuse_w[0] = p->fuse_w[1] = 0;
        p->fuse_w[2] = k ? 8.0f : -8.0f; /* p_fake 0.99966 or 0.00034 */
        p->ood_threshold = 0;
        OK(dp_detector_save(det, k ? fake_m : real_m, NULL));
        dp_detector_free(det);
    }
    unlink(png);
    snprintf(cmd, sizeof cmd, "%s detect --model %s --explain %s %s; echo rc=$?", cli, real_m, png, photo);
    run(cmd, out, sizeof out);
    printf("%s", out);
    assert_non_null(strstr(out, "astronaut.png: real (p_fake 0.0003, 1 face)"));
    assert_non_null(strstr(out, "rc=0"));
    dp_image im;
    OK(dp_image_load(ctx, png, 3, NULL, &im)); /* the explained picture: the photo's size */
    assert_true(im.width == 512 && im.height == 512);
    dp_image_free(ctx, &im);
    snprintf(cmd, sizeof cmd, "%s detect --json --model %s %s; echo rc=$?", cli, fake_m, photo);
    run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "\"verdict\":\"fake\""));
    assert_non_null(strstr(out, "rc=1"));
    /* --thresholds overrides the model's: 0.00034 is now at or above "fake from 0.0002" */
    snprintf(cmd, sizeof cmd, "%s detect --thresholds 0.0001,0.0002 --model %s %s; echo rc=$?", cli, real_m, photo);
    run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "rc=1"));
    snprintf(cmd, sizeof cmd, "%s detect --thresholds 0.9,0.1 --model %s %s 2>&1; echo rc=$?", cli, real_m, photo);
    run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "rc=2"));
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ cross-source thresholds (detect calibrate) */
/* Two folds of synthetic scores: the chosen t_fake must be the smallest
 * threshold of the grid at which no real source has more than 5 % of its
 * faces (found, in distribution) at or above it; the fusion is kept. */
static void cli_calibrate(void **st) {
    (void)st;
    const char *cli = DP_CLI_PATH;
    if (access(cli, X_OK) != 0) {
        printf("skipped: the doppel CLI is not at %s\n", cli);
        skip();
    }
    dp_ctx *ctx = new_ctx();
    const char *d = tmpdir();
    char model[200], out_m[200], csv[2][200], cmd[2048], out[16384];
    snprintf(model, sizeof model, "%s/cal_in.safetensors", d);
    snprintf(out_m, sizeof out_m, "%s/cal_out.safetensors", d);
    dp_detector *det = small_detector(ctx, 1);
    float fw[3];
    memcpy(fw, dp_detector_get_params(det)->fuse_w, sizeof fw);
    OK(dp_detector_save(det, model, (const char *[]){"doppel.command", "doppel detect train (test)", NULL}));
    dp_detector_free(det);
    /* fold k: 200 held-out real faces of source "realK" (p_fake = sigmoid of a
     * logit around k), some of them without a face or out of distribution
     * (never judged fake), 100 test fakes, a bad row */
    enum { NR = 200, NF = 100 };
    float rp[2][NR];
    int excl[2][NR];
    dp_rng rng;
    dp_rng_seed(&rng, 5);
    for (int k = 0; k < 2; k++) {
        snprintf(csv[k], sizeof csv[k], "%s/fold%d.csv", d, k);
        FILE *f = fopen(csv[k], "w");
        assert_non_null(f);
        fprintf(f, "split,label,meso_logit,spectral_logit,ood,ood_over,no_face,p_fake,source,path\n");
        for (int i = 0; i < NR; i++) {
            char pb[32];
            snprintf(pb, sizeof pb, "%.7g", dp_sigmoid_d(k + 1.5 * dp_rng_normal(&rng)));
            rp[k][i] = strtof(pb, NULL);
            excl[k][i] = i % 25 == 0;
            fprintf(f, "heldout,0,0,0,1,%d,%d,%s,real%d,/x/r%d_%d.jpg\n", i % 50 == 0, i % 50 == 25, pb, k, k, i);
        }
        for (int i = 0; i < NF; i++)
            fprintf(f, "test,1,0,0,1,0,0,%.7g,fake,/x/f%d_%d.jpg\n", dp_sigmoid_d(5 + 1.5 * dp_rng_normal(&rng)), k, i);
        fprintf(f, "heldout,0,not-a-number\n");
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "%s detect calibrate --scores %s --scores %s --model %s --out %s 2>&1; echo rc=$?", cli,
             csv[0], csv[1], model, out_m);
    run(cmd, out, sizeof out);
    printf("%s", out);
    assert_non_null(strstr(out, "rc=0"));
    assert_non_null(strstr(out, "fold 1 (real0 held out)"));
    assert_non_null(strstr(out, "fold 2 (real1 held out)"));
    assert_non_null(strstr(out, "1 malformed rows skipped"));
    OK(dp_detector_load(ctx, out_m, 4, &det));
    const dp_detector_params *p = dp_detector_get_params(det);
    assert_memory_equal(p->fuse_w, fw, sizeof fw);
    static const float T[] = {0.5f,  0.55f, 0.6f,  0.65f, 0.7f,  0.75f,  0.8f,   0.85f,  0.9f,    0.92f,   0.94f,
                              0.95f, 0.96f, 0.97f, 0.98f, 0.99f, 0.995f, 0.998f, 0.999f, 0.9995f, 0.9998f, 0.9999f};
    int nt = (int)(sizeof T / sizeof T[0]), want = nt - 1;
    for (int t = 0; t < nt; t++) {
        double worst = 0;
        for (int k = 0; k < 2; k++) {
            int fp = 0;
            for (int i = 0; i < NR; i++) fp += !excl[k][i] && rp[k][i] >= T[t];
            worst = fmax(worst, fp / (double)NR);
        }
        if (worst <= 0.05) {
            want = t;
            break;
        }
    }
    printf("expected t_fake %.4f, got %.4f\n", (double)T[want], (double)p->t_fake);
    assert_true(want > 0 && want < nt - 1); /* the data put the answer inside the grid */
    assert_true(fabsf(p->t_fake - T[want]) < 1e-6f);
    assert_true(fabsf(p->t_real - fminf(0.3f, T[want])) < 1e-6f);
    char buf[256];
    OK(dp_checkpoint_meta(ctx, out_m, "doppel.command", buf, sizeof buf)); /* kept from the input model */
    assert_string_equal(buf, "doppel detect train (test)");
    OK(dp_checkpoint_meta(ctx, out_m, "doppel.calibration", buf, sizeof buf));
    dp_detector_free(det);
    /* no --scores: a usage error */
    snprintf(cmd, sizeof cmd, "%s detect calibrate --model %s --out %s 2>&1; echo rc=$?", cli, model, out_m);
    run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "rc=2"));
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ the shipped model on shared faces */
static void shipped_model(void **st) {
    (void)st;
    const char *model = DP_SOURCE_DIR "/models/" DP_DETECT_DEFAULT_MODEL;
    const char *faces = DP_SHARED_DIR "/data/faces";
    if (access(model, R_OK) != 0) {
        printf("skipped: %s not present\n", model);
        skip();
    }
    if (access(faces, R_OK) != 0) {
        printf("skipped: %s absent (the data is not in the repository)\n", faces);
        skip();
    }
    dp_ctx *ctx = new_ctx();
    dp_detector *d;
    dp_face_detector *fd;
    OK(dp_detector_load(ctx, model, 8, &d));
    if (dp_face_detector_default(ctx, &fd) != DP_OK) {
        printf("skipped: no face cascade: %s\n", dp_ctx_error(ctx));
        dp_detector_free(d);
        dp_ctx_free(ctx);
        skip();
    }
    /* the crop policy comes from the file */
    char cs[160];
    dp_crop_policy cp;
    OK(dp_checkpoint_meta(ctx, model, "doppel.crop", cs, sizeof cs));
    OK(dp_crop_policy_parse(ctx, cs, &cp));
    assert_memory_equal(&cp, &dp_detector_get_params(d)->crop, sizeof cp);
    const char *files[] = {"real-celeba/000001.jpg", "real-celeba/000002.jpg", "fake-stylegan/gen_00001.jpg",
                           "fake-stylegan/gen_00002.jpg"};
    float p[4];
    for (int i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", faces, files[i]);
        dp_image im;
        dp_detect_result r;
        OK(dp_image_load(ctx, path, 3, NULL, &im));
        OK(dp_detect_image(d, fd, &im, &r));
        p[i] = r.p_fake;
        printf("%s: p_fake %.3f %s\n", files[i], (double)r.p_fake, dp_verdict_name(r.verdict));
        dp_image_free(ctx, &im);
    }
    assert_true(p[2] > p[0] && p[2] > p[1] && p[3] > p[0] && p[3] > p[1]);
    dp_face_detector_free(fd);
    dp_detector_free(d);
    dp_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crop_policy_text), cmocka_unit_test(crop_norm), cmocka_unit_test(crop_square_math), cmocka_unit_test(crop_face_pixels),
        cmocka_unit_test(spectral_features), cmocka_unit_test(metric_auc_ap),   cmocka_unit_test(metric_ece),
        cmocka_unit_test(logreg_platt),     cmocka_unit_test(augmentation),     cmocka_unit_test(model_file),
        cmocka_unit_test(image_and_json),   cmocka_unit_test(cli_bad_input),    cmocka_unit_test(explain_maps),
        cmocka_unit_test(cli_exit_codes),   cmocka_unit_test(cli_calibrate),    cmocka_unit_test(drawn_face),    cmocka_unit_test(shipped_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
