/* GAN quality metrics (src/gan/metrics.c) and the run report (src/gan/report.c):
 * Jacobi eigen-decomposition and matrix square root, Fréchet distance against
 * closed forms, precision/recall on identical and disjoint sets, the spectral
 * profile of pure sinusoids, the feature model on a classify-cnn checkpoint
 * made here, and report.html's sections. No data files needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "doppel/doppel.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static char g_dir[256];

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

static dp_ctx *new_ctx(void) {
    dp_ctx *ctx = NULL;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx), DP_OK);
    return ctx;
}

static double gauss(dp_rng *r) { return (double)dp_rng_normal(r); }

/* A = B Bᵀ + 0.1 I, B d×d standard normal. */
static void random_spd(dp_rng *r, int d, double *A) {
    double *B = malloc(sizeof(double) * (size_t)d * d);
    assert_non_null(B);
    for (int i = 0; i < d * d; i++) B[i] = gauss(r);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double v = 0;
            for (int k = 0; k < d; k++) v += B[i * d + k] * B[j * d + k];
            A[i * d + j] = v + (i == j ? 0.1 : 0);
        }
    free(B);
}

static void test_eigen(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_rng r;
    dp_rng_seed(&r, 7);
    int d = 24;
    double *A = malloc(sizeof(double) * d * d), *V = malloc(sizeof(double) * d * d), L[24];
    random_spd(&r, d, A);
    for (int i = 0; i < d; i++) A[i * d + i] -= 30; /* indefinite too */
    assert_int_equal(dp_sym_eigen(ctx, A, d, L, V), DP_OK);
    double na = 0, err = 0, orth = 0;
    for (int i = 0; i < d * d; i++) na += A[i] * A[i];
    for (int i = 0; i < d; i++)
        for (int k = 0; k < d; k++) {
            double av = 0; /* (A V)[i][k] - L[k] V[i][k] */
            for (int j = 0; j < d; j++) av += A[i * d + j] * V[j * d + k];
            err += (av - L[k] * V[i * d + k]) * (av - L[k] * V[i * d + k]);
            double vv = 0; /* (Vᵀ V)[i][k] */
            for (int j = 0; j < d; j++) vv += V[j * d + i] * V[j * d + k];
            orth = fmax(orth, fabs(vv - (i == k)));
        }
    assert_true(sqrt(err / na) < 1e-12);
    assert_true(orth < 1e-12);
    /* the trace is the sum of the eigenvalues */
    double tr = 0, sl = 0;
    for (int i = 0; i < d; i++) tr += A[i * d + i], sl += L[i];
    assert_true(fabs(tr - sl) < 1e-9 * fabs(tr) + 1e-9);
    /* errors */
    A[3] = NAN;
    assert_int_equal(dp_sym_eigen(ctx, A, d, L, V), DP_ERR_NUMERIC);
    assert_int_equal(dp_sym_eigen(ctx, NULL, d, L, V), DP_ERR_NULL);
    assert_int_equal(dp_sym_eigen(ctx, A, 0, L, V), DP_ERR_ARG);
    free(A);
    free(V);
    dp_ctx_free(ctx);
}

static void test_sqrtm(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_rng r;
    dp_rng_seed(&r, 3);
    for (int d = 1; d <= 40; d += 13) {
        double *A = malloc(sizeof(double) * d * d), *R = malloc(sizeof(double) * d * d);
        random_spd(&r, d, A);
        assert_int_equal(dp_sqrtm_psd(ctx, A, d, R), DP_OK);
        double err = 0, na = 0, asym = 0;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) {
                double v = 0;
                for (int k = 0; k < d; k++) v += R[i * d + k] * R[k * d + j];
                err += (v - A[i * d + j]) * (v - A[i * d + j]);
                na += A[i * d + j] * A[i * d + j];
                asym = fmax(asym, fabs(R[i * d + j] - R[j * d + i]));
            }
        assert_true(sqrt(err / na) < 1e-11);
        assert_true(asym == 0);
        /* R is positive definite: its diagonal is positive */
        for (int i = 0; i < d; i++) assert_true(R[i * d + i] > 0);
        free(A);
        free(R);
    }
    /* a known one: sqrt([[2,1],[1,2]]) = [[a,b],[b,a]], a = (sqrt3+1)/2, b = (sqrt3-1)/2 */
    double A2[4] = {2, 1, 1, 2}, R2[4];
    assert_int_equal(dp_sqrtm_psd(ctx, A2, 2, R2), DP_OK);
    assert_true(fabs(R2[0] - (sqrt(3) + 1) / 2) < 1e-14 && fabs(R2[1] - (sqrt(3) - 1) / 2) < 1e-14);
    dp_ctx_free(ctx);
}

/* tr sqrt(S1 S2) for 2×2 SPD matrices: sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)). */
static double fd2_closed(const double *m1, const double *s1, const double *m2, const double *s2) {
    double tr12 = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
    double d1 = s1[0] * s1[3] - s1[1] * s1[2], d2 = s2[0] * s2[3] - s2[1] * s2[2];
    double dm = (m1[0] - m2[0]) * (m1[0] - m2[0]) + (m1[1] - m2[1]) * (m1[1] - m2[1]);
    return dm + s1[0] + s1[3] + s2[0] + s2[3] - 2 * sqrt(tr12 + 2 * sqrt(d1 * d2));
}

static void test_frechet(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_rng r;
    dp_rng_seed(&r, 11);
    /* identical Gaussians: 0 */
    int d = 16;
    double *S = malloc(sizeof(double) * d * d), mu[16], out = -1;
    random_spd(&r, d, S);
    for (int i = 0; i < d; i++) mu[i] = gauss(&r);
    assert_int_equal(dp_frechet_distance(ctx, mu, S, mu, S, d, &out), DP_OK);
    assert_true(fabs(out) < 1e-9);
    /* 2×2, non-commuting covariances, against the closed form */
    double m1[2] = {0.5, -1}, m2[2] = {2, 0.25}, s1[4] = {2, 0.7, 0.7, 1}, s2[4] = {0.5, -0.3, -0.3, 3};
    assert_int_equal(dp_frechet_distance(ctx, m1, s1, m2, s2, 2, &out), DP_OK);
    double want = fd2_closed(m1, s1, m2, s2);
    assert_true(fabs(out - want) < 1e-12 * fabs(want) + 1e-12);
    /* diagonal covariances: |dmu|² + sum (sqrt a - sqrt b)² */
    double a[16 * 16] = {0}, b[16 * 16] = {0}, mb[16], w = 0;
    for (int i = 0; i < d; i++) {
        a[i * d + i] = 0.5 + i, b[i * d + i] = 4.0 / (1 + i);
        mb[i] = mu[i] + 0.1 * i;
        w += 0.01 * i * i + (sqrt(a[i * d + i]) - sqrt(b[i * d + i])) * (sqrt(a[i * d + i]) - sqrt(b[i * d + i]));
    }
    assert_int_equal(dp_frechet_distance(ctx, mu, a, mb, b, d, &out), DP_OK);
    assert_true(fabs(out - w) < 1e-10 * w);
    /* from samples: two sets drawn from one Gaussian give a small distance,
     * a shifted one the shift² (approximately) */
    int64_t n = 20000;
    int dd = 4;
    float *x = malloc(sizeof(float) * n * dd), *y = malloc(sizeof(float) * n * dd), *z = malloc(sizeof(float) * n * dd);
    for (int64_t i = 0; i < n * dd; i++) {
        x[i] = dp_rng_normal(&r);
        y[i] = dp_rng_normal(&r);
        z[i] = dp_rng_normal(&r) + (i % dd == 0 ? 3.0f : 0.0f);
    }
    double same = -1, shifted = -1;
    assert_int_equal(dp_fid_from_features(ctx, x, n, y, n, dd, &same), DP_OK);
    assert_int_equal(dp_fid_from_features(ctx, x, n, z, n, dd, &shifted), DP_OK);
    assert_true(same >= 0 && same < 0.01);
    assert_true(fabs(shifted - 9) < 0.2);
    /* mean/cov against a hand-computed case */
    float v[6] = {1, 2, 3, 6, 5, 4}; /* 3 vectors of 2 */
    double mm[2], cc[4];
    assert_int_equal(dp_mean_cov(ctx, v, 3, 2, mm, cc), DP_OK);
    assert_true(fabs(mm[0] - 3) < 1e-12 && fabs(mm[1] - 4) < 1e-12);
    assert_true(fabs(cc[0] - 4) < 1e-12 && fabs(cc[3] - 4) < 1e-12 && fabs(cc[1] - 2) < 1e-12 && cc[1] == cc[2]);
    assert_int_equal(dp_mean_cov(ctx, v, 1, 2, mm, cc), DP_ERR_ARG);
    free(x);
    free(y);
    free(z);
    free(S);
    dp_ctx_free(ctx);
}

static void test_precision_recall(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_rng r;
    dp_rng_seed(&r, 5);
    int64_t n = 300;
    int d = 8;
    float *a = malloc(sizeof(float) * n * d), *b = malloc(sizeof(float) * n * d), *half = malloc(sizeof(float) * n * d);
    for (int64_t i = 0; i < n * d; i++) {
        a[i] = dp_rng_normal(&r);
        b[i] = dp_rng_normal(&r) + 50; /* a far cluster */
    }
    double p = -1, rc = -1;
    assert_int_equal(dp_precision_recall(ctx, a, n, a, n, d, 3, &p, &rc), DP_OK);
    assert_true(p == 1 && rc == 1);
    assert_int_equal(dp_precision_recall(ctx, a, n, b, n, d, 3, &p, &rc), DP_OK);
    assert_true(p == 0 && rc == 0);
    /* mode dropping: generated = half of the real modes → precision high, recall about 1/2 */
    int d2 = 2; /* in 2-d, 150 points a mode cover it well (in 8-d the k-NN balls leave gaps: ~0.84) */
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d2; j++) {
            a[i * d2 + j] = 0.1f * dp_rng_normal(&r) + (i % 2 ? 10.0f : 0.0f);
            half[i * d2 + j] = 0.1f * dp_rng_normal(&r);
        }
    assert_int_equal(dp_precision_recall(ctx, a, n, half, n, d2, 3, &p, &rc), DP_OK);
    print_message("mode dropping (2-d): precision %.3f, recall %.3f\n", p, rc);
    assert_true(p > 0.9);
    assert_true(rc > 0.4 && rc < 0.6);
    assert_int_equal(dp_precision_recall(ctx, a, 3, b, n, d, 3, &p, &rc), DP_ERR_ARG);
    free(a);
    free(b);
    free(half);
    dp_ctx_free(ctx);
}

static void test_spectral(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    int N = 32;
    float *img = malloc(sizeof(float) * N * N * 2);
    /* a horizontal cosine of 5 cycles, and a diagonal one of (3, 4) cycles: both radius 5 */
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            img[y * N + x] = 0.5f + 0.4f * (float)cos(2 * M_PI * 5 * x / N);
            img[N * N + y * N + x] = 0.5f + 0.4f * (float)cos(2 * M_PI * (3.0 * x + 4.0 * y) / N);
        }
    double prof[16], p2[16];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(dp_spectral_profile(ctx, img + k * N * N, 1, 1, N, N, prof), DP_OK);
        int best = 0;
        for (int i = 1; i < N / 2; i++)
            if (prof[i] > prof[best]) best = i;
        assert_int_equal(best + 1, 5); /* profile[i] is ring i+1 */
    }
    /* the mean of two images' profiles; distance 0 to itself, > 0 to another */
    assert_int_equal(dp_spectral_profile(ctx, img, 2, 1, N, N, prof), DP_OK);
    assert_int_equal(dp_spectral_profile(ctx, img, 1, 1, N, N, p2), DP_OK);
    assert_true(dp_spectral_distance(prof, prof, N / 2) == 0);
    assert_true(dp_spectral_distance(prof, p2, N / 2) > 0);
    assert_int_equal(dp_spectral_profile(ctx, img, 1, 1, N, N - 2, prof), DP_ERR_ARG);
    free(img);
    dp_ctx_free(ctx);
}

/* A classify-cnn checkpoint as `doppel classify train` writes it (random weights). */
static void make_classifier(dp_ctx *ctx, const char *path, const char *arch) {
    dp_paramset *ps;
    dp_graph *g;
    assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
    assert_int_equal(dp_graph_new(ctx, &g), DP_OK);
    dp_node *x = dp_input(g, "x", 4, (int64_t[]){2, 1, 28, 28}), *h;
    if (!strcmp(arch, "classify-cnn")) {
        dp_conv_opts same = {.same = 1};
        dp_pool_opts pool = {.kernel_h = 2, .kernel_w = 2};
        h = dp_nn_conv2d(g, ps, "conv1", x, 32, 3, 3, &same, 0, NULL);
        h = dp_maxpool2d(g, dp_relu(g, dp_nn_batchnorm2d(g, ps, "bn1", h, 0.1f, 1e-5f)), &pool);
        h = dp_nn_conv2d(g, ps, "conv2", h, 64, 3, 3, &same, 0, NULL);
        h = dp_maxpool2d(g, dp_relu(g, dp_nn_batchnorm2d(g, ps, "bn2", h, 0.1f, 1e-5f)), &pool);
        h = dp_relu(g, dp_nn_dense(g, ps, "fc1", dp_flatten(g, h), 128, 1, NULL));
    } else {
        h = dp_relu(g, dp_nn_dense(g, ps, "fc1", dp_flatten(g, x), 256, 1, NULL));
    }
    dp_node *y = dp_nn_dense(g, ps, "fc2", h, 10, 1, NULL);
    dp_graph_mark_output(g, y);
    assert_int_equal(dp_graph_compile(g), DP_OK);
    assert_int_equal(dp_paramset_init(ps, 1), DP_OK);
    const char *extra[] = {"doppel.task", "classify", "doppel.input", "1,28,28", "doppel.classes", "[\"a\",\"b\"]",
                           "doppel.norm_mean", "0.286", "doppel.norm_std", "0.353", NULL};
    assert_int_equal(dp_checkpoint_save(path, ps, NULL, arch, extra), DP_OK);
    dp_graph_free(g);
    dp_paramset_free(ps);
}

static void test_feature_model(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    const char *p = tpath("cnn.safetensors");
    make_classifier(ctx, p, "classify-cnn");
    dp_feature_model *fm = NULL;
    assert_int_equal(dp_feature_model_load(ctx, p, &fm), DP_OK);
    assert_int_equal(dp_feature_model_dim(fm), 128);
    int c, h, w;
    dp_feature_model_shape(fm, &c, &h, &w);
    assert_true(c == 1 && h == 28 && w == 28);
    int64_t n = 70; /* more than one batch of 64, a partial last batch */
    float *img = malloc(sizeof(float) * n * 784), *f = malloc(sizeof(float) * n * 128), *f1 = malloc(sizeof(float) * 128);
    dp_rng r;
    dp_rng_seed(&r, 2);
    for (int64_t i = 0; i < n * 784; i++) img[i] = dp_rng_uniform(&r);
    assert_int_equal(dp_feature_model_run(fm, img, n, f), DP_OK);
    int pos = 0;
    for (int64_t i = 0; i < n * 128; i++) {
        assert_true(f[i] >= 0 && isfinite(f[i])); /* after the ReLU */
        pos += f[i] > 0;
    }
    assert_true(pos > 0);
    /* eval mode: an image's features do not depend on its batch */
    assert_int_equal(dp_feature_model_run(fm, img + 66 * 784, 1, f1), DP_OK);
    for (int j = 0; j < 128; j++) assert_true(fabsf(f1[j] - f[66 * 128 + j]) <= 1e-5f * (1 + fabsf(f1[j])));
    /* all metrics on images: a set against itself */
    dp_gan_eval ev;
    assert_int_equal(dp_gan_eval_images(ctx, fm, img, n, img, n, 1, 28, 28, &ev), DP_OK);
    assert_true(fabs(ev.fid) < 1e-6 && ev.spectral_distance == 0 && ev.precision == 1 && ev.recall == 1);
    char json[2048];
    assert_true(dp_gan_eval_json(&ev, "m \"x\".safetensors", NULL, "d", json, sizeof json));
    assert_non_null(strstr(json, "\"fid_doppelcnn\":"));
    assert_string_equal(ev.fid_name, "FID-FMNIST-doppelcnn"); /* no doppel.dataset: a Fashion-MNIST classifier */
    assert_non_null(strstr(json, "\"fid_name\":\"FID-FMNIST-doppelcnn\""));
    assert_non_null(strstr(json, "\"spectral_distance\":0"));
    assert_non_null(strstr(json, "\"precision\":1,\"recall\":1,\"n\":70"));
    assert_non_null(strstr(json, "\"feature_model\":\"m \\\"x\\\".safetensors\""));
    assert_non_null(strstr(json, "\"generator\":null"));
    assert_false(dp_gan_eval_json(&ev, NULL, NULL, NULL, json, 20));
    /* without features: spectral only, the rest null */
    assert_int_equal(dp_gan_eval_images(ctx, NULL, img, n, img + 784, n - 1, 1, 28, 28, &ev), DP_OK);
    assert_true(isnan(ev.fid) && isnan(ev.precision) && ev.spectral_distance >= 0);
    assert_true(dp_gan_eval_json(&ev, NULL, NULL, NULL, json, sizeof json));
    assert_non_null(strstr(json, "\"fid_doppelcnn\":null"));
    /* wrong image shape */
    assert_int_equal(dp_gan_eval_images(ctx, fm, img, 4, img, 4, 1, 14, 14, &ev), DP_ERR_SHAPE);
    assert_int_equal(dp_gan_eval_images(ctx, fm, img, 4, img, 4, 1, 42, 42, &ev), DP_ERR_SHAPE);
    /* images twice the model's side are shrunk by 2x2 means: the same FID as shrinking them here */
    {
        int64_t m = 20;
        float *big = malloc(sizeof(float) * m * 56 * 56), *sm = malloc(sizeof(float) * m * 784);
        for (int64_t i = 0; i < m * 56 * 56; i++) big[i] = dp_rng_uniform(&r);
        for (int64_t k = 0; k < m; k++)
            for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++) {
                    const float *b = big + k * 3136 + 2 * y * 56 + 2 * x;
                    sm[k * 784 + y * 28 + x] = (b[0] + b[1] + b[56] + b[57]) * 0.25f;
                }
        dp_gan_eval e2, e1;
        assert_int_equal(dp_gan_eval_images(ctx, fm, big, m / 2, big + m / 2 * 3136, m / 2, 1, 56, 56, &e2), DP_OK);
        assert_int_equal(dp_gan_eval_images(ctx, fm, sm, m / 2, sm + m / 2 * 784, m / 2, 1, 28, 28, &e1), DP_OK);
        assert_true(fabs(e2.fid - e1.fid) <= 1e-4 * (1 + fabs(e1.fid)));
        assert_true(e2.precision == e1.precision && e2.recall == e1.recall);
        free(big);
        free(sm);
    }
    dp_feature_model_free(fm);
    /* the MLP gives 256 features; a GAN checkpoint is refused */
    make_classifier(ctx, p, "classify-mlp");
    assert_int_equal(dp_feature_model_load(ctx, p, &fm), DP_OK);
    assert_int_equal(dp_feature_model_dim(fm), 256);
    dp_feature_model_free(fm);
    fm = NULL;
    make_classifier(ctx, p, "gan-dcgan28");
    assert_int_equal(dp_feature_model_load(ctx, p, &fm), DP_ERR_ARG);
    assert_non_null(strstr(dp_ctx_error(ctx), "classify"));
    assert_null(fm);
    free(img);
    free(f);
    free(f1);
    unlink(p);
    dp_ctx_free(ctx);
}

/* The committed face encoder (models/doppel-faceenc.safetensors, F16 tensors): its FID is
 * named FID-faces-doppelenc, it takes 32x32 RGB (64x64 images are shrunk), and
 * on CelebA (when ../shared is there) two halves of real faces are far closer
 * than real faces and flat grey images (an untrained generator's look). */
static void test_face_encoder(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    const char *mp = DP_SOURCE_DIR "/models/doppel-faceenc.safetensors";
    struct stat mst;
    /* committed as float16 storage (1.1 MB; the repository keeps files under 2 MiB) */
    assert_int_equal(stat(mp, &mst), 0);
    assert_true(mst.st_size < 2 * 1024 * 1024);
    dp_feature_model *fm = NULL;
    assert_int_equal(dp_feature_model_load(ctx, mp, &fm), DP_OK);
    assert_string_equal(dp_feature_model_fid_name(fm), "FID-faces-doppelenc");
    assert_int_equal(dp_feature_model_dim(fm), 128);
    int c, h, w;
    dp_feature_model_shape(fm, &c, &h, &w);
    assert_true(c == 3 && h == 32 && w == 32);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/data/faces/real-celeba", DP_SHARED_DIR);
    struct stat st;
    if (stat(dir, &st) != 0) {
        dp_feature_model_free(fm);
        dp_ctx_free(ctx);
        printf("skipped: %s is absent (the CelebA part of this test)\n", dir);
        skip();
    }
    int64_t n = getenv("DP_TEST_QUICK") ? 60 : 150, per = 3 * 64 * 64;
    dp_folder_opts fo = {.channels = 3, .height = 64, .width = 64, .limit = 2 * n};
    dp_dataset *ds = NULL;
    assert_int_equal(dp_gan_images_from_folder(ctx, dir, &fo, &ds), DP_OK);
    assert_int_equal(ds->n, 2 * n);
    float *x = malloc(sizeof(float) * (size_t)(3 * n * per));
    for (int64_t i = 0; i < 2 * n * per; i++) x[i] = ds->pixels[i] / 255.0f;
    float *grey = x + 2 * n * per;
    dp_rng r;
    dp_rng_seed(&r, 5);
    for (int64_t i = 0; i < n * per; i++) grey[i] = 0.5f + 0.02f * (dp_rng_uniform(&r) - 0.5f);
    dp_gan_eval rr, rg;
    assert_int_equal(dp_gan_eval_images(ctx, fm, x, n, x + n * per, n, 3, 64, 64, &rr), DP_OK);
    assert_int_equal(dp_gan_eval_images(ctx, fm, x, n, grey, n, 3, 64, 64, &rg), DP_OK);
    printf("FID-faces-doppelenc, n = %lld: real vs real %.2f, real vs grey %.1f; precision/recall %.3f/%.3f vs %.3f/%.3f\n",
           (long long)n, rr.fid, rg.fid, rr.precision, rr.recall, rg.precision, rg.recall);
    assert_string_equal(rr.fid_name, "FID-faces-doppelenc");
    assert_true(rr.fid >= 0 && rr.fid * 20 < rg.fid);
    assert_true(rr.recall > 0.5 && rg.recall < 0.1);
    free(x);
    dp_dataset_free(ds);
    dp_feature_model_free(fm);
    dp_ctx_free(ctx);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static void test_report(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    const char *run = tpath("run");
    char samples[600], p[700];
    snprintf(samples, sizeof samples, "%s/samples", run);
    assert_int_equal(mkdir(run, 0777), 0);
    /* an empty run folder: a page that says what is missing */
    char out[700];
    assert_int_equal(dp_gan_report(ctx, run, out, sizeof out), DP_OK);
    char *h = slurp(out);
    assert_non_null(h);
    assert_non_null(strstr(h, "No metrics.csv"));
    assert_non_null(strstr(h, "No sample grids"));
    assert_non_null(strstr(h, "No metrics yet"));
    free(h);
    /* a run: metrics.csv, two grids, eval.json */
    assert_int_equal(mkdir(samples, 0777), 0);
    snprintf(p, sizeof p, "%s/metrics.csv", run);
    FILE *f = fopen(p, "w");
    fputs("step,time,loss_d,loss_g,d_real,d_fake,lr,img_per_s\n", f);
    for (int i = 1; i <= 300; i++) fprintf(f, "%d,%.3f,%.6f,%.6f,0.5,0.5,0.0002,100\n", i, i * 0.5, 1.4 - i * 0.002, 0.7 + i * 0.004);
    fclose(f);
    for (int k = 1; k <= 2; k++) {
        dp_image im;
        assert_int_equal(dp_image_alloc(ctx, 1, 20, 20, &im), DP_OK);
        for (int i = 0; i < 400; i++) im.data[i] = (float)((i * k) % 7) / 6.0f;
        snprintf(p, sizeof p, "%s/step_%06d.png", samples, k * 150);
        assert_int_equal(dp_image_save_png(ctx, p, &im), DP_OK);
        dp_image_free(ctx, &im);
    }
    snprintf(p, sizeof p, "%s/eval.json", run);
    f = fopen(p, "w");
    fputs("{\"fid_doppelcnn\":123.5,\"spectral_distance\":0.01,\"precision\":0.7,\"recall\":null,\"n\":1000,"
          "\"feature_model\":\"<cnn>.safetensors\"}\n", f);
    fclose(f);
    assert_int_equal(dp_gan_report(ctx, run, out, sizeof out), DP_OK);
    h = slurp(out);
    assert_non_null(h);
    assert_non_null(strstr(h, "<h2 id=losses>"));
    assert_non_null(strstr(h, "<h2 id=samples>"));
    assert_non_null(strstr(h, "<h2 id=metrics>"));
    assert_non_null(strstr(h, "alt=\"loss curves\" src=\"data:image/png;base64,iVBORw0KGgo")); /* a PNG */
    const char *s150 = strstr(h, "step 150</figcaption>"), *s300 = strstr(h, "step 300</figcaption>");
    assert_true(s150 && s300 && s150 < s300); /* in step order */
    assert_non_null(strstr(h, "FID-FMNIST-doppelcnn"));
    assert_non_null(strstr(h, "123.5"));
    assert_non_null(strstr(h, "&lt;cnn&gt;.safetensors")); /* escaped */
    assert_non_null(strstr(h, "x: step 1 … 300"));
    /* self-contained: nothing fetched from elsewhere */
    assert_null(strstr(h, "src=\"http"));
    assert_null(strstr(h, "<script"));
    assert_null(strstr(h, "<link"));
    free(h);
    snprintf(p, sizeof p, "%s/.report-losses.png", run);
    assert_int_equal(access(p, F_OK), -1); /* the temporary plot is gone */
    /* a folder that cannot be written */
    assert_int_equal(dp_gan_report(ctx, tpath("no/such/folder"), NULL, 0), DP_ERR_IO);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
    assert_int_equal(system(cmd), 0);
    dp_ctx_free(ctx);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/test_gan_metrics-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eigen),         cmocka_unit_test(test_sqrtm),         cmocka_unit_test(test_frechet),
        cmocka_unit_test(test_precision_recall), cmocka_unit_test(test_spectral), cmocka_unit_test(test_feature_model),
        cmocka_unit_test(test_report),        cmocka_unit_test(test_face_encoder),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(g_dir);
    return rc;
}
