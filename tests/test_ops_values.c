/* Forward values of the norm / pool / softmax / loss ops against numbers
 * worked out by hand or known from PyTorch, plus their shape-rule messages. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "doppel/doppel.h"

typedef struct fx {
    dp_ctx *ctx;
    dp_graph *g;
    dp_paramset *ps;
} fx;

static int setup(void **state) {
    static fx f;
    memset(&f, 0, sizeof f);
    dp_ctx_opts o = {.threads = 2, .seed = 1};
    if (dp_ctx_new(&o, &f.ctx) != DP_OK || dp_graph_new(f.ctx, &f.g) != DP_OK || dp_paramset_new(f.ctx, &f.ps) != DP_OK)
        return -1;
    *state = &f;
    return 0;
}
static int teardown(void **state) {
    fx *f = *state;
    dp_graph_free(f->g);
    dp_paramset_free(f->ps);
    dp_ctx_free(f->ctx);
    return 0;
}

#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define IN(f, ...) dp_input((f)->g, "x", ND(__VA_ARGS__), SH(__VA_ARGS__))
#define F(...) ((const float[]){__VA_ARGS__})
#define NF(...) (sizeof((const float[]){__VA_ARGS__}) / sizeof(float))

static void compile(fx *f, dp_node *out) {
    if (dp_graph_mark_output(f->g, out) != DP_OK || dp_graph_compile(f->g) != DP_OK) fail_msg("build: %s", dp_ctx_error(f->ctx));
}
static void set(dp_node *n, const float *v, size_t k) {
    assert_int_equal(dp_tensor_numel(dp_node_value(n)), (int64_t)k);
    assert_int_equal(dp_tensor_copy_from(dp_node_value(n), v, k), DP_OK);
}
static void run(fx *f) {
    if (dp_graph_run(f->g) != DP_OK) fail_msg("run: %s", dp_ctx_error(f->ctx));
}
static void expect(const float *got, const float *want, size_t k, double tol) {
    for (size_t i = 0; i < k; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1.0 + fabs(want[i]))))
            fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i], (double)want[i]);
}
#define EXPECT(node, ...)                                                                                \
    do {                                                                                                 \
        assert_int_equal(dp_tensor_numel(dp_node_value(node)), (int64_t)NF(__VA_ARGS__));              \
        expect(dp_tensor_f32(dp_node_value(node)), F(__VA_ARGS__), NF(__VA_ARGS__), 1e-5);               \
    } while (0)
static void expect_error(fx *f, dp_node *n, const char *msg) {
    assert_null(n);
    assert_int_not_equal(dp_graph_status(f->g), DP_OK);
    if (!strstr(dp_ctx_error(f->ctx), msg)) fail_msg("error \"%s\" lacks \"%s\"", dp_ctx_error(f->ctx), msg);
}

/* ------------------------------------------------------------ softmax */
static void softmax_rows(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 2, 3), *y = dp_softmax(f->g, x, -1);
    compile(f, y);
    set(x, F(1, 2, 3, 1000, 1001, 1002), 6); /* the second row must not overflow */
    run(f);
    EXPECT(y, 0.09003057f, 0.24472847f, 0.66524096f, 0.09003057f, 0.24472847f, 0.66524096f);
}
static void softmax_axis0(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 2, 2), *y = dp_softmax(f->g, x, 0);
    compile(f, y);
    set(x, F(1, 2, 3, 4), 4);
    run(f);
    EXPECT(y, 0.11920292f, 0.11920292f, 0.88079708f, 0.88079708f);
}
static void log_softmax_values(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 2, 3), *y = dp_log_softmax(f->g, x, 1);
    compile(f, y);
    set(x, F(1, 2, 3, -1000, 0, 1000), 6);
    run(f);
    EXPECT(y, -2.40760596f, -1.40760596f, -0.40760596f, -2000, -1000, 0);
}
static void softmax_bad_axis(void **state) {
    fx *f = *state;
    expect_error(f, dp_softmax(f->g, IN(f, 2, 3), 2), "axis 2 is out of range for rank 2");
}

/* ------------------------------------------------------------ losses */
static dp_node *loss2(fx *f, dp_node *(*op)(dp_graph *, dp_node *, dp_node *), dp_node **a, dp_node **b, int64_t n) {
    *a = dp_input(f->g, "a", 1, &n);
    *b = dp_input(f->g, "b", 1, &n);
    dp_node *l = op(f->g, *a, *b);
    compile(f, l);
    assert_int_equal(dp_tensor_ndim(dp_node_value(l)), 0);
    return l;
}
static void bce_with_logits_values(void **state) {
    fx *f = *state;
    dp_node *a, *b, *l = loss2(f, dp_bce_with_logits, &a, &b, 3);
    set(a, F(0, 2, -3), 3);
    set(b, F(0, 1, 0.5f), 3);
    run(f);
    EXPECT(l, 0.78955418f);
    set(a, F(100, -100, 100), 3); /* stable: no exp overflow, no log(0) */
    set(b, F(0, 0, 1), 3);
    run(f);
    EXPECT(l, 100.0f / 3.0f);
}
static void bce_values(void **state) {
    fx *f = *state;
    dp_node *a, *b, *l = loss2(f, dp_bce, &a, &b, 4);
    set(a, F(0.5f, 0.9f, 0, 1), 4);
    set(b, F(1, 0, 0, 0), 4); /* the last term is -log(0), clamped to 100 as PyTorch */
    run(f);
    EXPECT(l, 25.748933f);
}
static void mse_l1_values(void **state) {
    fx *f = *state;
    dp_node *a = IN(f, 3), *b = IN(f, 3);
    dp_node *m = dp_mse(f->g, a, b), *l = dp_l1(f->g, a, b);
    dp_graph_mark_output(f->g, m);
    compile(f, l);
    set(a, F(1, 2, 3), 3);
    set(b, F(1, 0, 0), 3);
    run(f);
    EXPECT(m, 13.0f / 3.0f);
    EXPECT(l, 5.0f / 3.0f);
}
static void loss_shape_mismatch(void **state) {
    fx *f = *state;
    expect_error(f, dp_mse(f->g, IN(f, 2, 3), IN(f, 3, 2)), "same shape, got [2,3] and [3,2]");
}

static void cross_entropy_values(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 2, 3), *lab = IN(f, 2), *l = dp_cross_entropy(f->g, x, lab);
    dp_input_requires_grad(f->g, x);
    compile(f, l);
    set(x, F(1, 2, 3, 1, 1, 1), 6);
    set(lab, F(2, 0), 2);
    run(f);
    EXPECT(l, 0.75310913f);
    /* d/dx = (softmax - onehot) / N */
    assert_int_equal(dp_graph_backward(f->g, l, 1, &x), DP_OK);
    expect(dp_tensor_f32(dp_node_grad(x)),
           F(0.09003057f / 2, 0.24472847f / 2, (0.66524096f - 1) / 2, (1.0f / 3 - 1) / 2, 1.0f / 6, 1.0f / 6), 6, 1e-5);
    /* 1.9 rounds to class 2; -100 (PyTorch's ignore_index) and 3 are ignored,
     * so the mean is over the one valid row. */
    set(lab, F(1.9f, -100), 2);
    run(f);
    EXPECT(l, 0.40760596f);
    assert_int_equal(dp_graph_backward(f->g, l, 1, &x), DP_OK);
    expect(dp_tensor_f32(dp_node_grad(x)), F(0.09003057f, 0.24472847f, 0.66524096f - 1, 0, 0, 0), 6, 1e-5);
    set(lab, F(3, NAN), 2);
    run(f);
    EXPECT(l, 0.0f);
}
static void cross_entropy_bad_labels(void **state) {
    fx *f = *state;
    expect_error(f, dp_cross_entropy(f->g, IN(f, 4, 3), IN(f, 3)), "labels have shape [3], expected [4]");
}

/* ------------------------------------------------------------ batch norm */
static void batchnorm_train_then_eval(void **state) {
    fx *f = *state;
    dp_tensor *rm, *rv, *gamma, *beta;
    assert_int_equal(dp_paramset_get_or_add(f->ps, "bn.running_mean", 1, SH(2), DP_PARAM_BUFFER, NULL, &rm), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(f->ps, "bn.running_var", 1, SH(2), DP_PARAM_BUFFER, NULL, &rv), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(f->ps, "bn.weight", 1, SH(2), DP_PARAM_TRAINABLE, NULL, &gamma), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(f->ps, "bn.bias", 1, SH(2), DP_PARAM_TRAINABLE, NULL, &beta), DP_OK);
    dp_tensor_copy_from(rm, F(0, 0), 2);
    dp_tensor_copy_from(rv, F(1, 1), 2);
    dp_tensor_copy_from(gamma, F(1, 2), 2);
    dp_tensor_copy_from(beta, F(0, 1), 2);
    /* x [2,2,1,2]: channel 0 holds 1,2,3,4; channel 1 holds 10 everywhere. */
    dp_node *x = IN(f, 2, 2, 1, 2);
    dp_node *y = dp_batchnorm2d(f->g, x, dp_param(f->g, gamma), dp_param(f->g, beta), rm, rv, 0.1f, 1e-5f);
    compile(f, y);
    set(x, F(1, 2, 10, 10, 3, 4, 10, 10), 8);
    dp_graph_set_training(f->g, 1);
    run(f);
    /* mean 2.5, biased var 1.25; a constant channel normalises to beta. */
    EXPECT(y, -1.34163542f, -0.44721181f, 1, 1, 0.44721181f, 1.34163542f, 1, 1);
    /* running: (1-m) r + m * stat, the variance unbiased (5/3). */
    expect(dp_tensor_f32(rm), F(0.25f, 1.0f), 2, 1e-6);
    expect(dp_tensor_f32(rv), F(1.0666667f, 0.9f), 2, 1e-6);
    dp_graph_set_training(f->g, 0);
    run(f); /* eval: normalise with the running statistics, leave them alone */
    EXPECT(y, 0.72618097f, 1.69442227f, 2 * 9.0f / sqrtf(0.9f + 1e-5f) + 1, 2 * 9.0f / sqrtf(0.9f + 1e-5f) + 1, 2.66266357f,
           3.63090487f, 2 * 9.0f / sqrtf(0.9f + 1e-5f) + 1, 2 * 9.0f / sqrtf(0.9f + 1e-5f) + 1);
    expect(dp_tensor_f32(rm), F(0.25f, 1.0f), 2, 1e-6);
    dp_graph_set_training(f->g, 1);
    run(f); /* each training forward updates once more */
    expect(dp_tensor_f32(rm), F(0.475f, 1.9f), 2, 1e-6);
    expect(dp_tensor_f32(rv), F(1.12666667f, 0.81f), 2, 1e-6);
}
static void batchnorm_no_running_stats(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 2, 1, 1, 2), *y = dp_batchnorm2d(f->g, x, NULL, NULL, NULL, NULL, 0.1f, 1e-5f);
    compile(f, y);
    set(x, F(1, 2, 3, 4), 4);
    run(f); /* eval without running stats: batch statistics */
    EXPECT(y, -1.34163542f, -0.44721181f, 0.44721181f, 1.34163542f);
}
static void batchnorm_bad_gamma(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 2, 8, 3, 3);
    expect_error(f, dp_batchnorm2d(f->g, x, IN(f, 7), NULL, NULL, NULL, 0.1f, 1e-5f), "gamma has shape [7], expected [8]");
}
static void batchnorm_bad_input(void **state) {
    fx *f = *state;
    expect_error(f, dp_batchnorm2d(f->g, IN(f, 2, 8), NULL, NULL, NULL, NULL, 0.1f, 1e-5f), "x has shape [2,8], expected [N,C,H,W]");
}

/* ------------------------------------------------------------ pooling */
static void fill_iota(dp_node *n) {
    dp_tensor *t = dp_node_value(n);
    float *p = dp_tensor_f32(t);
    for (int64_t i = 0; i < dp_tensor_numel(t); i++) p[i] = (float)i;
}
static void maxpool_values(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 1, 1, 4, 4), *x5 = IN(f, 1, 1, 5, 5);
    dp_pool_opts k2 = {.kernel_h = 2, .kernel_w = 2};
    dp_pool_opts pad = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
    dp_pool_opts same = {.kernel_h = 2, .kernel_w = 2, .same = 1};
    dp_node *a = dp_maxpool2d(f->g, x, &k2), *b = dp_maxpool2d(f->g, x, &pad), *c = dp_maxpool2d(f->g, x5, &same);
    dp_graph_mark_output(f->g, a);
    dp_graph_mark_output(f->g, b);
    compile(f, c);
    fill_iota(x);
    fill_iota(x5);
    run(f);
    EXPECT(a, 5, 7, 13, 15);
    EXPECT(b, 5, 7, 13, 15);
    /* TF 'same': out 3x3, the extra pad row/column goes bottom/right. */
    EXPECT(c, 6, 8, 9, 16, 18, 19, 21, 23, 24);
}
static void maxpool_keras_same_pool4(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 1, 2, 32, 32);
    dp_pool_opts o = {.kernel_h = 4, .kernel_w = 4, .same = 1};
    dp_node *y = dp_maxpool2d(f->g, x, &o);
    compile(f, y);
    assert_int_equal(dp_tensor_dim(dp_node_value(y), 2), 8);
    assert_int_equal(dp_tensor_dim(dp_node_value(y), 3), 8);
    fill_iota(x);
    run(f);
    const float *v = dp_tensor_f32(dp_node_value(y));
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++) assert_float_equal(v[(c * 8 + i) * 8 + j], c * 1024 + (4 * i + 3) * 32 + 4 * j + 3, 0);
}
/* Ties: the first maximum of a window takes the gradient (as PyTorch). */
static void maxpool_ties_backward(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 1, 1, 2, 4);
    dp_input_requires_grad(f->g, x);
    dp_pool_opts o = {.kernel_h = 2, .kernel_w = 2};
    dp_node *l = dp_sum(f->g, dp_maxpool2d(f->g, x, &o), DP_AXIS_ALL, 0);
    compile(f, l);
    set(x, F(3, 3, 1, 2, 3, 3, 2, 2), 8);
    run(f);
    EXPECT(l, 5);
    assert_int_equal(dp_graph_backward(f->g, l, 1, &x), DP_OK);
    expect(dp_tensor_f32(dp_node_grad(x)), F(1, 0, 0, 1, 0, 0, 0, 0), 8, 0);
}
static void avgpool_values(void **state) {
    fx *f = *state;
    dp_node *ones = IN(f, 1, 1, 3, 3), *x = IN(f, 1, 1, 3, 3);
    dp_pool_opts incl = {.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1, .count_include_pad = 1};
    dp_pool_opts excl = incl;
    excl.count_include_pad = 0;
    dp_pool_opts same = {.kernel_h = 2, .kernel_w = 2, .stride_h = 1, .stride_w = 1, .same = 1, .count_include_pad = 1};
    dp_node *a = dp_avgpool2d(f->g, ones, &incl), *b = dp_avgpool2d(f->g, ones, &excl), *c = dp_avgpool2d(f->g, x, &same);
    dp_node *gap = dp_global_avgpool(f->g, x);
    dp_graph_mark_output(f->g, a);
    dp_graph_mark_output(f->g, b);
    dp_graph_mark_output(f->g, c);
    compile(f, gap);
    set(ones, F(1, 1, 1, 1, 1, 1, 1, 1, 1), 9);
    set(x, F(1, 2, 3, 4, 5, 6, 7, 8, 9), 9);
    run(f);
    EXPECT(a, 4.f / 9, 6.f / 9, 4.f / 9, 6.f / 9, 1, 6.f / 9, 4.f / 9, 6.f / 9, 4.f / 9);
    EXPECT(b, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    /* 'same' never counts its padding, whatever count_include_pad says. */
    EXPECT(c, 3, 4, 4.5f, 6, 7, 7.5f, 7.5f, 8.5f, 9);
    EXPECT(gap, 5);
    assert_int_equal(dp_tensor_ndim(dp_node_value(gap)), 2);
}
static void pool_errors(void **state) {
    fx *f = *state;
    dp_pool_opts o = {.kernel_h = 2, .kernel_w = 2, .pad_h = 2};
    expect_error(f, dp_maxpool2d(f->g, IN(f, 1, 1, 4, 4), &o), "pad 2x0 must be at most half the kernel 2x2");
}
static void pool_too_small(void **state) {
    fx *f = *state;
    dp_pool_opts o = {.kernel_h = 5, .kernel_w = 5};
    expect_error(f, dp_avgpool2d(f->g, IN(f, 1, 1, 4, 4), &o), "smaller than the kernel");
}

/* ------------------------------------------------------------ upsampling */
static void upsample_values(void **state) {
    fx *f = *state;
    dp_node *x = IN(f, 1, 1, 2, 2), *r = IN(f, 1, 1, 1, 2);
    dp_node *nn = dp_upsample_nearest(f->g, x, 2, 2);
    dp_node *bl = dp_upsample_bilinear(f->g, x, 2, 2, 0), *ac = dp_upsample_bilinear(f->g, x, 2, 2, 1);
    dp_node *b3 = dp_upsample_bilinear(f->g, r, 1, 3, 0);
    dp_graph_mark_output(f->g, nn);
    dp_graph_mark_output(f->g, bl);
    dp_graph_mark_output(f->g, ac);
    compile(f, b3);
    set(x, F(1, 2, 3, 4), 4);
    set(r, F(1, 2), 2);
    run(f);
    EXPECT(nn, 1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4);
    /* PyTorch F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False / True) */
    EXPECT(bl, 1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4);
    EXPECT(ac, 1, 4.f / 3, 5.f / 3, 2, 5.f / 3, 2, 7.f / 3, 8.f / 3, 7.f / 3, 8.f / 3, 3, 10.f / 3, 3, 10.f / 3, 11.f / 3, 4);
    /* source index clamped at 0 on the left, the last pixel repeated on the right */
    EXPECT(b3, 1, 1, 4.f / 3, 5.f / 3, 2, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(softmax_rows),
        T(softmax_axis0),
        T(log_softmax_values),
        T(softmax_bad_axis),
        T(bce_with_logits_values),
        T(bce_values),
        T(mse_l1_values),
        T(loss_shape_mismatch),
        T(cross_entropy_values),
        T(cross_entropy_bad_labels),
        T(batchnorm_train_then_eval),
        T(batchnorm_no_running_stats),
        T(batchnorm_bad_gamma),
        T(batchnorm_bad_input),
        T(maxpool_values),
        T(maxpool_keras_same_pool4),
        T(maxpool_ties_backward),
        T(avgpool_values),
        T(pool_errors),
        T(pool_too_small),
        T(upsample_values),
#undef T
    };
    return cmocka_run_group_tests_name("op values", tests, NULL, NULL);
}
