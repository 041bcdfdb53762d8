/* Layer builders and reference models: parameter names, shapes and counts
 * (equal to PyTorch's), initialisers, reuse of parameters across graphs,
 * output shapes, a forward pass, error reporting, the dropout switch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "doppel/doppel.h"

#define OK(expr)                                                                                  \
    do {                                                                                          \
        dp_status s_ = (expr);                                                                    \
        if (s_ != DP_OK) fail_msg("%s: %s (%s)", #expr, dp_status_name(s_), dp_ctx_error(ctx)); \
    } while (0)

typedef dp_node *(*model_fn)(dp_graph *, dp_paramset *, dp_node *);

typedef struct model_case {
    const char *name;
    model_fn fn;
    int64_t in[4];   /* input shape, batch 2 */
    int64_t out[4];  /* output shape */
    int out_ndim;
    int64_t trainable, buffers; /* PyTorch's counts */
    int n_tensors;   /* tensors in the paramset */
    float lo, hi;    /* output range */
} model_case;

/* Parameter counts from PyTorch 1.13, written by
 *   /usr/bin/python3 tools/make_torch_refs.py   (also into tests/ref/param_counts.txt)
 * i.e. sum(p.numel() for p in m.parameters()) and the buffers without
 * num_batches_tracked, for Meso4(), G64(), D64(), G28(), D28() of
 * ../shared/peers/models.py and the MesoInception4 mirror in that tool. */
static const model_case cases[] = {
    {"meso4", dp_model_meso4, {2, 3, 256, 256}, {2, 1}, 2, 27977, 96, 4 * 6 + 4, 0.0f, 1.0f},
    {"mesoinception4", dp_model_mesoinception4, {2, 3, 256, 256}, {2, 1}, 2, 28615, 110, 2 * 14 + 4 * 4 + 2 * 2 + 4, 0.0f, 1.0f},
    {"dcgan64_g", dp_model_dcgan64_g, {2, 100, 1, 1}, {2, 3, 64, 64}, 4, 3576704, 1920, 5 + 4 * 4, -1.0f, 1.0f},
    {"dcgan64_d", dp_model_dcgan64_d, {2, 3, 64, 64}, {2, 1}, 2, 2765568, 1792, 5 + 3 * 4, 0.0f, 1.0f},
    {"dcgan28_g", dp_model_dcgan28_g, {2, 100, 1, 1}, {2, 1, 28, 28}, 4, 1781504, 768, 3 + 2 * 4, -1.0f, 1.0f},
    {"dcgan28_d", dp_model_dcgan28_d, {2, 1, 28, 28}, {2, 1}, 2, 138624, 256, 3 + 4, 0.0f, 1.0f},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static dp_ctx *new_ctx(void) {
    dp_ctx *ctx = NULL;
    dp_ctx_opts o = {0};
    o.seed = 42;
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    return ctx;
}

static void param_counts(void **state) {
    (void)state;
    for (int c = 0; c < N_CASES; c++) {
        const model_case *mc = &cases[c];
        dp_ctx *ctx = new_ctx();
        dp_paramset *ps = NULL;
        dp_graph *g = NULL;
        OK(dp_paramset_new(ctx, &ps));
        OK(dp_graph_new(ctx, &g));
        dp_node *y = mc->fn(g, ps, dp_input(g, "x", 4, mc->in));
        if (!y) fail_msg("%s: %s", mc->name, dp_ctx_error(ctx));
        int64_t tr = dp_paramset_numel(ps, 1), all = dp_paramset_numel(ps, 0);
        printf("  %-16s %8lld trainable, %5lld buffer elements, %2d tensors\n", mc->name, (long long)tr, (long long)(all - tr),
               dp_paramset_count(ps));
        assert_int_equal(tr, mc->trainable);
        assert_int_equal(all - tr, mc->buffers);
        assert_int_equal(dp_paramset_count(ps), mc->n_tensors);
        /* Building the model again (another graph, another batch) adds nothing. */
        dp_graph *g2 = NULL;
        OK(dp_graph_new(ctx, &g2));
        int64_t in2[4] = {5, mc->in[1], mc->in[2], mc->in[3]};
        assert_non_null(mc->fn(g2, ps, dp_input(g2, "x", 4, in2)));
        assert_int_equal(dp_paramset_numel(ps, 0), all);
        dp_graph_free(g2);
        dp_graph_free(g);
        dp_paramset_free(ps);
        dp_ctx_free(ctx);
    }
}

static void expect_tensor(dp_paramset *ps, const char *name, int ndim, const int64_t *shape, int buffer) {
    dp_tensor *t = dp_paramset_find(ps, name);
    if (!t) fail_msg("no parameter '%s'", name);
    assert_int_equal(dp_tensor_ndim(t), ndim);
    for (int d = 0; d < ndim; d++)
        if (dp_tensor_dim(t, d) != shape[d]) fail_msg("'%s' dim %d is %lld, expected %lld", name, d, (long long)dp_tensor_dim(t, d), (long long)shape[d]);
    int idx = -1;
    for (int i = 0; i < dp_paramset_count(ps); i++)
        if (dp_paramset_at(ps, i) == t) idx = i;
    assert_int_equal(dp_paramset_is_buffer(ps, idx), buffer);
}
#define EXPECT(ps, name, buffer, ...) \
    expect_tensor(ps, name, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}, buffer)

/* The names are PyTorch's state_dict keys (DCGANs with a G./D. prefix). */
static void param_names(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_paramset *ps = NULL;
    dp_graph *g = NULL;
    OK(dp_paramset_new(ctx, &ps));
    OK(dp_graph_new(ctx, &g));
    assert_non_null(dp_model_meso4(g, ps, dp_input(g, "x", 4, (int64_t[]){1, 3, 256, 256})));
    const char *meso_order[] = {"f.0.weight", "f.0.bias", "f.2.weight", "f.2.bias", "f.2.running_mean", "f.2.running_var",
                                "f.4.weight", "f.4.bias", "f.6.weight"};
    for (int i = 0; i < 9; i++) assert_string_equal(dp_tensor_name(dp_paramset_at(ps, i)), meso_order[i]);
    EXPECT(ps, "f.0.weight", 0, 8, 3, 3, 3);
    EXPECT(ps, "f.2.running_mean", 1, 8);
    EXPECT(ps, "f.2.running_var", 1, 8);
    EXPECT(ps, "f.12.weight", 0, 16, 16, 5, 5);
    EXPECT(ps, "f.14.running_var", 1, 16);
    EXPECT(ps, "c.2.weight", 0, 16, 1024);
    EXPECT(ps, "c.2.bias", 0, 16);
    EXPECT(ps, "c.5.weight", 0, 1, 16);
    EXPECT(ps, "c.5.bias", 0, 1);

    /* Generator and discriminator in one paramset, without clashes. */
    dp_node *fake = dp_model_dcgan64_g(g, ps, dp_input(g, "z", 4, (int64_t[]){1, 100, 1, 1}));
    assert_non_null(dp_model_dcgan64_d(g, ps, fake));
    EXPECT(ps, "G.0.weight", 0, 100, 512, 4, 4);
    EXPECT(ps, "G.1.weight", 0, 512);
    EXPECT(ps, "G.1.running_mean", 1, 512);
    EXPECT(ps, "G.3.weight", 0, 512, 256, 4, 4);
    EXPECT(ps, "G.10.running_var", 1, 64);
    EXPECT(ps, "G.12.weight", 0, 64, 3, 4, 4);
    EXPECT(ps, "D.0.weight", 0, 64, 3, 4, 4);
    EXPECT(ps, "D.3.bias", 0, 128);
    EXPECT(ps, "D.9.running_mean", 1, 512);
    EXPECT(ps, "D.11.weight", 0, 1, 512, 4, 4);
    assert_null(dp_paramset_find(ps, "G.12.bias")); /* bias=False */
    dp_graph_free(g);
    dp_paramset_free(ps);

    OK(dp_paramset_new(ctx, &ps));
    OK(dp_graph_new(ctx, &g));
    assert_non_null(dp_model_mesoinception4(g, ps, dp_input(g, "x", 4, (int64_t[]){1, 3, 256, 256})));
    EXPECT(ps, "f.0.b1.weight", 0, 1, 3, 1, 1);
    EXPECT(ps, "f.0.b2.0.weight", 0, 4, 3, 1, 1);
    EXPECT(ps, "f.0.b2.2.weight", 0, 4, 4, 3, 3);
    EXPECT(ps, "f.0.b4.2.bias", 0, 2);
    EXPECT(ps, "f.1.running_var", 1, 11);
    EXPECT(ps, "f.3.b1.weight", 0, 2, 11, 1, 1);
    EXPECT(ps, "f.4.weight", 0, 12);
    EXPECT(ps, "f.6.weight", 0, 16, 12, 5, 5);
    EXPECT(ps, "f.12.running_mean", 1, 16);
    EXPECT(ps, "c.2.weight", 0, 16, 1024);
    dp_graph_free(g);
    dp_paramset_free(ps);

    OK(dp_paramset_new(ctx, &ps));
    OK(dp_graph_new(ctx, &g));
    fake = dp_model_dcgan28_g(g, ps, dp_input(g, "z", 4, (int64_t[]){1, 100, 1, 1}));
    assert_non_null(dp_model_dcgan28_d(g, ps, fake));
    EXPECT(ps, "G.0.weight", 0, 100, 256, 7, 7);
    EXPECT(ps, "G.4.running_var", 1, 128);
    EXPECT(ps, "G.6.weight", 0, 128, 1, 4, 4);
    EXPECT(ps, "D.0.weight", 0, 64, 1, 4, 4);
    EXPECT(ps, "D.3.weight", 0, 128);
    EXPECT(ps, "D.5.weight", 0, 1, 128, 7, 7);
    dp_graph_free(g);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

static void minmax(dp_tensor *t, float *lo, float *hi) {
    const float *x = dp_tensor_f32(t);
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < dp_tensor_numel(t); i++) {
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
}

/* PyTorch default init: |w| <= 1/sqrt(fan_in), bias likewise, BN 1/0, stats 0/1. */
static void layer_inits(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_paramset *ps = NULL;
    dp_graph *g = NULL;
    OK(dp_paramset_new(ctx, &ps));
    OK(dp_graph_new(ctx, &g));
    dp_node *x = dp_input(g, "x", 4, (int64_t[]){2, 6, 8, 8});
    dp_conv_opts co = {0};
    co.pad_h = co.pad_w = 1;
    dp_node *y = dp_nn_conv2d(g, ps, "conv", x, 10, 3, 3, &co, 1, NULL);
    assert_non_null(y);
    co.stride_h = co.stride_w = 2;
    dp_node *d = dp_nn_deconv2d(g, ps, "deconv", y, 5, 4, 4, &co, 1, NULL);
    assert_non_null(d);
    assert_int_equal(dp_tensor_dim(dp_node_value(d), 2), 16); /* (8-1)*2 - 2 + 4 = 16 */
    dp_node *bn = dp_nn_batchnorm2d(g, ps, "bn", d, 0.1f, 1e-5f);
    assert_non_null(bn);
    dp_node *f = dp_nn_dense(g, ps, "fc", dp_flatten(g, bn), 7, 1, NULL);
    assert_non_null(f);
    assert_int_equal(dp_tensor_dim(dp_node_value(f), 1), 7);
    dp_init custom = {DP_INIT_NORMAL, 0.0f, 0.02f};
    assert_non_null(dp_nn_dense(g, ps, "fc2", f, 3, 1, &custom));

    struct {
        const char *name;
        double bound;
    } bounds[] = {{"conv.weight", 1 / sqrt(6 * 9.0)}, {"conv.bias", 1 / sqrt(6 * 9.0)},
                  {"deconv.weight", 1 / sqrt(5 * 16.0)}, /* PyTorch: fan_in from dim 1 of [Ci, Co, kh, kw] */
                  {"deconv.bias", 1 / sqrt(5 * 16.0)},   {"fc.weight", 1 / sqrt(5 * 256.0)},
                  {"fc.bias", 1 / sqrt(5 * 256.0)}};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        float lo, hi;
        dp_tensor *t = dp_paramset_find(ps, bounds[i].name);
        assert_non_null(t);
        minmax(t, &lo, &hi);
        if (lo < -bounds[i].bound || hi > bounds[i].bound || hi - lo < 0.2 * bounds[i].bound)
            fail_msg("%s in [%g, %g], expected to fill U(±%g)", bounds[i].name, lo, hi, bounds[i].bound);
    }
    float lo, hi;
    minmax(dp_paramset_find(ps, "bn.weight"), &lo, &hi);
    assert_true(lo == 1.0f && hi == 1.0f);
    minmax(dp_paramset_find(ps, "bn.bias"), &lo, &hi);
    assert_true(lo == 0.0f && hi == 0.0f);
    minmax(dp_paramset_find(ps, "bn.running_mean"), &lo, &hi);
    assert_true(lo == 0.0f && hi == 0.0f);
    minmax(dp_paramset_find(ps, "bn.running_var"), &lo, &hi);
    assert_true(lo == 1.0f && hi == 1.0f);
    minmax(dp_paramset_find(ps, "fc2.bias"), &lo, &hi); /* a custom init leaves the bias at zero */
    assert_true(lo == 0.0f && hi == 0.0f);
    minmax(dp_paramset_find(ps, "fc2.weight"), &lo, &hi);
    assert_true(lo < 0.0f && hi > 0.0f && hi < 0.2f);

    /* Reuse: same name, same shape → same tensor; another shape → sticky DP_ERR_SHAPE. */
    int n = dp_paramset_count(ps);
    dp_node *y2 = dp_nn_conv2d(g, ps, "conv", x, 10, 3, 3, NULL, 1, NULL);
    assert_non_null(y2);
    assert_int_equal(dp_paramset_count(ps), n);
    assert_null(dp_nn_conv2d(g, ps, "conv", x, 11, 3, 3, NULL, 1, NULL));
    assert_int_equal(dp_graph_status(g), DP_ERR_SHAPE);
    assert_non_null(strstr(dp_ctx_error(ctx), "conv.weight"));
    dp_graph_free(g);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

static void bad_arguments(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_paramset *ps = NULL;
    OK(dp_paramset_new(ctx, &ps));
    dp_graph *g = NULL;

    OK(dp_graph_new(ctx, &g));
    assert_null(dp_model_dcgan64_d(g, ps, dp_input(g, "x", 4, (int64_t[]){1, 3, 32, 32})));
    assert_int_equal(dp_graph_status(g), DP_ERR_SHAPE);
    assert_non_null(strstr(dp_ctx_error(ctx), "[N,3,64,64]"));
    dp_graph_free(g);

    OK(dp_graph_new(ctx, &g));
    assert_null(dp_model_meso4(g, ps, dp_input(g, "x", 4, (int64_t[]){1, 1, 256, 256})));
    assert_int_equal(dp_graph_status(g), DP_ERR_SHAPE);
    dp_graph_free(g);

    OK(dp_graph_new(ctx, &g));
    assert_null(dp_model_dcgan28_g(g, ps, dp_input(g, "z", 2, (int64_t[]){1, 100})));
    assert_int_equal(dp_graph_status(g), DP_ERR_SHAPE);
    dp_graph_free(g);

    OK(dp_graph_new(ctx, &g));
    assert_null(dp_model_meso4(g, ps, NULL));
    assert_int_equal(dp_graph_status(g), DP_ERR_NULL);
    dp_graph_free(g);

    OK(dp_graph_new(ctx, &g));
    dp_node *x = dp_input(g, "x", 2, (int64_t[]){4, 8});
    assert_null(dp_nn_conv2d(g, ps, "c", x, 4, 3, 3, NULL, 1, NULL)); /* rank 2 */
    assert_int_equal(dp_graph_status(g), DP_ERR_SHAPE);
    dp_graph_free(g);

    OK(dp_graph_new(ctx, &g));
    x = dp_input(g, "x", 2, (int64_t[]){4, 8});
    assert_null(dp_nn_dense(g, ps, NULL, x, 4, 1, NULL));
    assert_int_equal(dp_graph_status(g), DP_ERR_NULL);
    assert_null(dp_nn_dense(g, ps, "after", x, 4, 1, NULL)); /* sticky */
    dp_graph_free(g);

    OK(dp_graph_new(ctx, &g));
    x = dp_input(g, "x", 4, (int64_t[]){1, 6, 8, 8});
    dp_conv_opts co = {0};
    co.groups = 4; /* 6 channels do not split into 4 groups */
    assert_null(dp_nn_conv2d(g, ps, "grp", x, 8, 3, 3, &co, 1, NULL));
    assert_int_equal(dp_graph_status(g), DP_ERR_ARG);
    dp_graph_free(g);

    /* A paramset of another context. */
    dp_ctx *ctx2 = new_ctx();
    dp_paramset *ps2 = NULL;
    assert_int_equal(dp_paramset_new(ctx2, &ps2), DP_OK);
    OK(dp_graph_new(ctx, &g));
    x = dp_input(g, "x", 2, (int64_t[]){4, 8});
    assert_null(dp_nn_dense(g, ps2, "fc", x, 4, 1, NULL));
    assert_int_equal(dp_graph_status(g), DP_ERR_ARG);
    dp_graph_free(g);
    dp_paramset_free(ps2);
    dp_ctx_free(ctx2);
    assert_int_equal(dp_paramset_count(ps), 0);

    assert_null(dp_nn_batchnorm2d(NULL, ps, "bn", NULL, 0.1f, 1e-5f));
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

/* Every model compiles and runs (eval and training mode); outputs have the
 * documented shape and range. */
static void forward_passes(void **state) {
    (void)state;
    for (int c = 0; c < N_CASES; c++) {
        const model_case *mc = &cases[c];
        dp_ctx *ctx = new_ctx();
        dp_paramset *ps = NULL;
        dp_graph *g = NULL;
        OK(dp_paramset_new(ctx, &ps));
        OK(dp_graph_new(ctx, &g));
        dp_node *x = dp_input(g, "x", 4, mc->in);
        dp_node *y = mc->fn(g, ps, x);
        OK(dp_graph_mark_output(g, y));
        OK(dp_graph_compile(g));
        dp_tensor *yt = dp_node_value(y);
        assert_int_equal(dp_tensor_ndim(yt), mc->out_ndim);
        for (int d = 0; d < mc->out_ndim; d++) assert_int_equal(dp_tensor_dim(yt, d), mc->out[d]);
        dp_rng r;
        dp_rng_seed(&r, 3);
        float *xv = dp_tensor_f32(dp_node_value(x));
        for (int64_t i = 0; i < dp_tensor_numel(dp_node_value(x)); i++) xv[i] = 2.0f * dp_rng_uniform(&r) - 1.0f;
        for (int training = 0; training < 2; training++) {
            OK(dp_graph_set_training(g, training));
            OK(dp_graph_run(g));
            float lo, hi;
            minmax(yt, &lo, &hi);
            if (!(lo >= mc->lo && hi <= mc->hi && isfinite(lo) && isfinite(hi)))
                fail_msg("%s (%s): output in [%g, %g]", mc->name, training ? "training" : "eval", lo, hi);
        }
        dp_graph_free(g);
        dp_paramset_free(ps);
        dp_ctx_free(ctx);
    }
}

/* dp_graph_set_dropout(g, 0) makes dropout the identity in training mode. */
static void dropout_switch(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_graph *g = NULL;
    OK(dp_graph_new(ctx, &g));
    dp_node *x = dp_input(g, "x", 2, (int64_t[]){4, 256});
    dp_node *y = dp_dropout(g, x, 0.5f);
    OK(dp_graph_mark_output(g, y));
    OK(dp_graph_compile(g));
    OK(dp_tensor_fill(dp_node_value(x), 1.0f));
    OK(dp_graph_set_training(g, 1));
    float lo, hi;
    OK(dp_graph_run(g));
    minmax(dp_node_value(y), &lo, &hi);
    assert_true(lo == 0.0f && hi == 2.0f);
    OK(dp_graph_set_dropout(g, 0));
    OK(dp_graph_run(g));
    minmax(dp_node_value(y), &lo, &hi);
    assert_true(lo == 1.0f && hi == 1.0f);
    OK(dp_graph_set_dropout(g, 1));
    OK(dp_graph_run(g));
    minmax(dp_node_value(y), &lo, &hi);
    assert_true(lo == 0.0f && hi == 2.0f);
    assert_int_equal(dp_graph_set_dropout(NULL, 0), DP_ERR_NULL);
    dp_graph_free(g);
    dp_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(param_counts), cmocka_unit_test(param_names),    cmocka_unit_test(layer_inits),
        cmocka_unit_test(bad_arguments), cmocka_unit_test(dropout_switch), cmocka_unit_test(forward_passes),
    };
    return cmocka_run_group_tests_name("layers and reference models", tests, NULL, NULL);
}
