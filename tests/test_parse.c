/* Numbers read from files (issue 8): the strict parsers of src/core/parse.h, and the loaders that use
 * them on model metadata. A value out of range or followed by garbage is an error naming the file and
 * the key, never undefined behaviour (atoi, sscanf("%d") or (float) of a double beyond float's range
 * was used there before). The CLI's readers (face cache, --scores CSV, resume metadata) are tested
 * through the commands in test_badinput.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/parse.h"
#include "doppel/detect.h"
#include "doppel/doppel.h"
#include "doppel/gan.h"

static char dir[64];
static dp_ctx *ctx;

static const char *P(const char *name) {
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* ------------------------------------------------------------ the parsers */
static void integers(void **st) {
    (void)st;
    int64_t v = 0;
    int i = 0;
    assert_true(dp_parse_i64("42", 0, 100, &v));
    assert_int_equal(v, 42);
    assert_true(dp_parse_i64(" -7", -10, 10, &v)); /* leading blanks, as strtoll */
    assert_int_equal(v, -7);
    assert_true(dp_parse_i64("+9223372036854775807", 0, INT64_MAX, &v));
    assert_true(v == INT64_MAX);
    assert_true(dp_parse_int("-2147483648", INT_MIN, INT_MAX, &i));
    assert_true(i == INT_MIN);
    static const char *const bad[] = {"", " ", "x", "5x", "5 ", "5\n", "0x10", "1e3", "5.0", "--1", "+",
                                      "101", "-11", "99999999999999999999", "-99999999999999999999"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        v = 123;
        if (dp_parse_i64(bad[k], -10, 100, &v) || v != 123) fail_msg("dp_parse_i64 took '%s'", bad[k]);
    }
    i = 5;
    assert_false(dp_parse_int("2147483648", INT_MIN, INT_MAX, &i));
    assert_false(dp_parse_int("-2147483649", INT_MIN, INT_MAX, &i));
    assert_false(dp_parse_int(NULL, 0, 1, &i));
    assert_int_equal(i, 5);
}

static void reals(void **st) {
    (void)st;
    double d = 0;
    float f = 0;
    assert_true(dp_parse_f64("0.5", 0, 1, &d));
    assert_true(d == 0.5);
    assert_true(dp_parse_f64("1e-400", -1, 1, &d)); /* an underflow is a value (0 or a subnormal) */
    assert_true(d >= 0 && d < 1e-300);
    assert_true(dp_parse_f32("3.4e38", -FLT_MAX, FLT_MAX, &f));
    static const char *const bad[] = {"", "x", "0.5x", "0.5 ", "nan", "NAN", "inf", "-inf", "1e400", "-1e400", "1.5", "-0.1", ","};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        d = 7;
        if (dp_parse_f64(bad[k], 0, 1, &d) || d != 7) fail_msg("dp_parse_f64 took '%s'", bad[k]);
    }
    /* beyond float's range: converting it to float would be undefined behaviour */
    f = 7;
    assert_false(dp_parse_f32("1e39", -FLT_MAX, FLT_MAX, &f));
    assert_false(dp_parse_f32("-1e39", -INFINITY, INFINITY, &f));
    assert_true(f == 7);
}

static void lists(void **st) {
    (void)st;
    int a[5];
    float f[3];
    assert_true(dp_parse_ints("3,64,48", ',', 3, 1, 4096, a));
    assert_true(a[0] == 3 && a[1] == 64 && a[2] == 48);
    assert_true(dp_parse_ints("10 -2 30 40 1", ' ', 5, -100, 100, a));
    assert_true(a[1] == -2 && a[4] == 1);
    static const char *const bad[] = {"",        "3,64",        "3,64,64,1", "3,,64",    "3,64,64x", ",3,64,64",
                                      "3,64,64,", "3,64,5000",  "3 64 64",   "3;64;64",  "3,64,99999999999",
                                      "3,-0x1,4", "3,64,64\n"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        if (dp_parse_ints(bad[k], ',', 3, 1, 4096, a)) fail_msg("dp_parse_ints took '%s'", bad[k]);
    assert_true(dp_parse_f32s("0.5,-0.25,1e3", ',', 3, -FLT_MAX, FLT_MAX, f));
    assert_true(f[0] == 0.5f && f[1] == -0.25f && f[2] == 1000.0f);
    static const char *const fbad[] = {"0.5,nan,1", "1e39,0,0", "0.5,0.25", "0.5,0.25,1,2", "0.5,,1", "0.5,0.25,1x"};
    for (size_t k = 0; k < sizeof fbad / sizeof fbad[0]; k++)
        if (dp_parse_f32s(fbad[k], ',', 3, -FLT_MAX, FLT_MAX, f)) fail_msg("dp_parse_f32s took '%s'", fbad[k]);
    assert_false(dp_parse_ints(NULL, ',', 3, 1, 4096, a));
    assert_false(dp_parse_ints("1", ',', 0, 1, 4096, a));
}

/* ------------------------------------------------------------ model metadata */
/* A checkpoint with one small tensor and the given metadata (NULL-terminated pairs). */
static const char *meta_file(const char *name, const char *arch, const char *const *kv) {
    dp_paramset *ps;
    dp_tensor *t;
    assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(ps, "w", 1, (int64_t[]){4}, 0, NULL, &t), DP_OK);
    const char *path = P(name);
    assert_int_equal(dp_checkpoint_save(path, ps, NULL, arch, kv), DP_OK);
    dp_paramset_free(ps);
    return path;
}

/* The load failed with DP_ERR_FORMAT and a message naming the file and the key. */
static void expect_refused(dp_status s, const char *path, const char *key, const char *value) {
    const char *e = dp_ctx_error(ctx);
    if (s != DP_ERR_FORMAT || !strstr(e, path) || !strstr(e, key))
        fail_msg("%s = '%s': status %s, message '%s'", key, value, dp_status_name(s), e);
}

static void detector_metadata(void **st) {
    (void)st;
    /* a real model first: what dp_detector_save writes loads back */
    dp_detector *d;
    assert_int_equal(dp_detector_new(ctx, NULL, 1, 1, &d), DP_OK);
    dp_detector_params p = *dp_detector_get_params(d);
    dp_detector_free(d);
    p.crop.work = 16, p.crop.size = 32, p.n_spec = dp_spectral_count(16);
    p.t_real = 0.25f, p.t_fake = 0.875f, p.ood_threshold = 3.5f;
    assert_int_equal(dp_detector_new(ctx, &p, 1, 1, &d), DP_OK);
    assert_int_equal(dp_detector_save(d, P("good.safetensors"), NULL), DP_OK);
    dp_detector_free(d);
    assert_int_equal(dp_detector_load(ctx, P("good.safetensors"), 1, &d), DP_OK);
    const dp_detector_params *q = dp_detector_get_params(d);
    assert_true(q->t_real == 0.25f && q->t_fake == 0.875f && q->ood_threshold == 3.5f && q->use_meso == 1);
    dp_detector_free(d);

    char crop[160];
    assert_int_equal(dp_crop_policy_format(&p.crop, crop, sizeof crop), DP_OK);
    static const char *const bad[][2] = {
        {"doppel.thresholds", "0.3,0.9x"}, {"doppel.thresholds", "0.3"},         {"doppel.thresholds", "1e999,1"},
        {"doppel.thresholds", "0.9,0.3"},  {"doppel.thresholds", "nan,1"},       {"doppel.thresholds", "0.3,0.9,0.5"},
        {"doppel.ood", "abc"},             {"doppel.ood", "nan"},                {"doppel.ood", "1e39"},
        {"doppel.ood", "2 "},              {"doppel.use_meso", "99999999999999999999"}, {"doppel.use_meso", "1x"},
        {"doppel.use_meso", ""},           {"doppel.ood_features", "-1"},        {"doppel.ood_features", "0"},
        {"doppel.ood_features", "inf"},    {"doppel.ood_features", "2e40"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const char *kv[] = {"doppel.task", "detect", "doppel.crop", crop, bad[k][0], bad[k][1], NULL};
        const char *path = meta_file("bad-detector.safetensors", "detect-meso4", kv);
        d = NULL;
        expect_refused(dp_detector_load(ctx, path, 1, &d), path, bad[k][0], bad[k][1]);
        assert_null(d);
    }
}

static void feature_model_metadata(void **st) {
    (void)st;
    static const char *const bad[][3] = {
        /* doppel.input, doppel.norm_mean, doppel.norm_std */
        {"1,28,99999999999", "0.5", "0.5"}, {"1,28", "0.5", "0.5"},    {"1,28,28x", "0.5", "0.5"},
        {"2,28,28", "0.5,0.5", "0.5,0.5"},  {"1,0,28", "0.5", "0.5"},  {"3,28,28", "0.5,0.5", "0.5,0.5,0.5"},
        {"1,28,28", "nan", "0.5"},          {"1,28,28", "0.5", "1e39"}, {"1,28,28", "0.5", "0.5,"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const char *kv[] = {"doppel.input", bad[k][0], "doppel.norm_mean", bad[k][1], "doppel.norm_std", bad[k][2], NULL};
        const char *path = meta_file("bad-classifier.safetensors", "classify-cnn", kv);
        dp_feature_model *m = NULL;
        dp_status s = dp_feature_model_load(ctx, path, &m);
        if (s != DP_ERR_FORMAT || !strstr(dp_ctx_error(ctx), path) || !strstr(dp_ctx_error(ctx), "doppel.input"))
            fail_msg("input '%s', mean '%s', std '%s': status %s, message '%s'", bad[k][0], bad[k][1], bad[k][2],
                     dp_status_name(s), dp_ctx_error(ctx));
        assert_null(m);
    }
}

static void gan_metadata(void **st) {
    (void)st;
    /* what dp_gan_read_opts reads, all valid, then one value at a time made bad */
    const char *kv[] = {"doppel.task",      "gan",    "doppel.gan.arch",  "dcgan28", "doppel.gan.loss",      "ns",
                        "doppel.gan.nz",    "100",    "doppel.gan.batch", "64",      "doppel.gan.lr_g",      "0.0002",
                        "doppel.gan.lr_d",  "0.0002", "doppel.gan.beta1", "0.5",     "doppel.gan.beta2",     "0.999",
                        "doppel.gan.gp_weight", "10", "doppel.gan.flip",  "0",       "doppel.gan.seed",      "7",
                        "doppel.gan.step",  "5",      NULL};
    dp_gan_opts o;
    int64_t step = 0;
    assert_int_equal(dp_gan_read_opts(ctx, meta_file("gan.safetensors", "gan-dcgan28", kv), &o, &step), DP_OK);
    assert_true(step == 5 && o.nz == 100 && o.batch == 64 && o.lr_g == 0.0002f && o.seed == 7);
    static const char *const bad[][2] = {{"doppel.gan.lr_g", "1e39"},   {"doppel.gan.beta2", "-1e300"},
                                         {"doppel.gan.lr_d", "nan"},    {"doppel.gan.nz", "99999999999999999999"},
                                         {"doppel.gan.batch", "64x"},   {"doppel.gan.flip", "2"},
                                         {"doppel.gan.step", "-1"},     {"doppel.gan.gp_weight", "10 10"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const char *kb[sizeof kv / sizeof kv[0]];
        memcpy(kb, kv, sizeof kv);
        for (int i = 0; kb[i]; i += 2)
            if (!strcmp(kb[i], bad[k][0])) kb[i + 1] = bad[k][1];
        const char *path = meta_file("bad-gan.safetensors", "gan-dcgan28", kb);
        expect_refused(dp_gan_read_opts(ctx, path, &o, &step), path, bad[k][0], bad[k][1]);
    }
}

static int setup(void **s) {
    (void)s;
    snprintf(dir, sizeof dir, "/tmp/doppel-parse-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    return dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx) == DP_OK ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    dp_ctx_free(ctx);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(integers),          cmocka_unit_test(reals),                  cmocka_unit_test(lists),
        cmocka_unit_test(detector_metadata), cmocka_unit_test(feature_model_metadata), cmocka_unit_test(gan_metadata),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
