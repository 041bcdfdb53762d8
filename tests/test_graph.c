/* Graph semantics: sticky build errors, state errors, autodiff bookkeeping
 * (accumulation, wrt subsets, stop_gradient), partial forward passes, the
 * memory planner, the workspace the graphs of a context share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "doppel/doppel.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})

typedef struct fx {
    dp_ctx *ctx;
    dp_graph *g;
    dp_paramset *ps;
} fx;

static int setup(void **state) {
    static fx f;
    memset(&f, 0, sizeof f);
    dp_ctx_opts o = {.threads = 2, .seed = 3};
    if (dp_ctx_new(&o, &f.ctx) || dp_graph_new(f.ctx, &f.g) || dp_paramset_new(f.ctx, &f.ps)) return -1;
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

static dp_tensor *param(fx *f, const char *name, int nd, const int64_t *sh, float v) {
    dp_tensor *t = NULL;
    assert_int_equal(dp_paramset_get_or_add(f->ps, name, nd, sh, DP_PARAM_TRAINABLE, NULL, &t), DP_OK);
    dp_tensor_fill(t, v);
    return t;
}

static void sticky_shape_error(void **state) {
    fx *f = *state;
    dp_node *a = dp_input(f->g, "a", 2, SH(2, 3));
    dp_node *b = dp_input(f->g, "b", 2, SH(4, 3));
    dp_node *c = dp_add(f->g, a, b); /* [2,3] + [4,3] does not broadcast */
    assert_null(c);
    assert_null(dp_relu(f->g, c)); /* NULL in, NULL out */
    assert_null(dp_relu(f->g, a)); /* the graph is failed: later builders refuse too */
    assert_int_equal(dp_graph_status(f->g), DP_ERR_SHAPE);
    assert_int_equal(dp_graph_compile(f->g), DP_ERR_SHAPE);
    const char *msg = dp_ctx_error(f->ctx);
    assert_non_null(strstr(msg, "add"));
    assert_non_null(strstr(msg, "[2,3]"));
    assert_non_null(strstr(msg, "[4,3]"));
    assert_int_equal(dp_graph_run(f->g), DP_ERR_SHAPE);
}

static void state_errors(void **state) {
    fx *f = *state;
    dp_graph *other;
    assert_int_equal(dp_graph_new(f->ctx, &other), DP_OK);
    dp_node *x = dp_input(f->g, "x", 1, SH(4));
    dp_node *y = dp_relu(f->g, x);
    assert_int_equal(dp_graph_run(f->g), DP_ERR_STATE); /* not compiled */
    assert_null(dp_relu(other, x));                     /* node of another graph */
    assert_int_equal(dp_graph_status(other), DP_ERR_ARG);
    dp_graph_free(other);
    assert_int_equal(dp_graph_mark_output(f->g, NULL), DP_ERR_NULL);
    assert_int_equal(dp_graph_mark_output(f->g, y), DP_OK);
    assert_int_equal(dp_graph_compile(f->g), DP_OK);
    assert_null(dp_relu(f->g, y)); /* compiled: closed for additions */
    assert_int_equal(dp_graph_backward(f->g, y, 0, NULL), DP_ERR_SHAPE); /* not a scalar */
    assert_int_equal(dp_input_requires_grad(f->g, x), DP_ERR_STATE);
    assert_null(dp_input(f->g, "bad", 2, SH(3, -1)));
}

static void backward_needs_fresh_loss(void **state) {
    fx *f = *state;
    dp_tensor *w = param(f, "w", 1, SH(3), 2.0f);
    dp_node *x = dp_input(f->g, "x", 1, SH(3));
    dp_node *loss = dp_sum(f->g, dp_mul(f->g, x, dp_param(f->g, w)), DP_AXIS_ALL, 0);
    assert_int_equal(dp_graph_compile(f->g), DP_OK);
    assert_int_equal(dp_graph_backward(f->g, loss, 0, NULL), DP_ERR_STATE);
    assert_non_null(strstr(dp_ctx_error(f->ctx), "forward"));
}

/* Parameter gradients accumulate across backward calls; wrt limits the work. */
static void accumulate_and_wrt(void **state) {
    fx *f = *state;
    dp_tensor *w = param(f, "w", 1, SH(3), 2.0f), *v = param(f, "v", 1, SH(3), 5.0f);
    dp_node *x = dp_input(f->g, "x", 1, SH(3));
    dp_node *pw = dp_param(f->g, w), *pv = dp_param(f->g, v);
    dp_node *loss = dp_sum(f->g, dp_add(f->g, dp_mul(f->g, x, pw), dp_mul(f->g, pv, pv)), DP_AXIS_ALL, 0);
    assert_int_equal(dp_graph_compile(f->g), DP_OK);
    float xs[3] = {1, 2, 3};
    dp_tensor_copy_from(dp_node_value(x), xs, 3);
    assert_int_equal(dp_graph_run(f->g), DP_OK);
    assert_true(fabsf(dp_tensor_f32(dp_node_value(loss))[0] - (12.0f + 75.0f)) < 1e-5f);
    dp_paramset_zero_grad(f->ps);
    assert_int_equal(dp_graph_backward(f->g, loss, 0, NULL), DP_OK);
    assert_int_equal(dp_graph_backward(f->g, loss, 0, NULL), DP_OK);
    const float *gw = dp_tensor_f32(dp_param_grad(w)), *gv = dp_tensor_f32(dp_param_grad(v));
    for (int i = 0; i < 3; i++) {
        assert_true(gw[i] == 2.0f * xs[i]);
        assert_true(gv[i] == 2.0f * 10.0f);
    }
    dp_paramset_zero_grad(f->ps);
    assert_int_equal(dp_graph_backward(f->g, loss, 1, &pv), DP_OK); /* only v */
    for (int i = 0; i < 3; i++) {
        assert_true(gw[i] == 0.0f);
        assert_true(gv[i] == 10.0f);
    }
    /* x did not ask for its gradient */
    assert_int_equal(dp_graph_backward(f->g, loss, 1, &x), DP_ERR_ARG);
}

/* y = stop_gradient(x) * w + 2x: dy/dx = 2, dy/dw = x. */
static void stop_gradient_blocks(void **state) {
    fx *f = *state;
    dp_tensor *w = param(f, "w", 1, SH(2), 3.0f);
    dp_node *x = dp_input(f->g, "x", 1, SH(2));
    assert_int_equal(dp_input_requires_grad(f->g, x), DP_OK);
    dp_node *y = dp_add(f->g, dp_mul(f->g, dp_stop_gradient(f->g, x), dp_param(f->g, w)), dp_scale(f->g, x, 2.0f));
    dp_node *loss = dp_sum(f->g, y, DP_AXIS_ALL, 0);
    assert_int_equal(dp_graph_compile(f->g), DP_OK);
    dp_tensor_copy_from(dp_node_value(x), (float[]){1.5f, -4.0f}, 2);
    assert_int_equal(dp_graph_run(f->g), DP_OK);
    dp_paramset_zero_grad(f->ps);
    assert_int_equal(dp_graph_backward(f->g, loss, 0, NULL), DP_OK);
    const float *gx = dp_tensor_f32(dp_node_grad(x)), *gw = dp_tensor_f32(dp_param_grad(w));
    assert_true(gx[0] == 2.0f && gx[1] == 2.0f);
    assert_true(gw[0] == 1.5f && gw[1] == -4.0f);
    /* input gradients are overwritten, not accumulated */
    assert_int_equal(dp_graph_backward(f->g, loss, 0, NULL), DP_OK);
    assert_true(gx[0] == 2.0f);
}

/* Backward does not run what feeds a stop_gradient: p's product would add
 * +0.0 to p's gradient, which turns a stored -0.0 into +0.0. */
static void stop_gradient_skips_its_inputs(void **state) {
    fx *f = *state;
    dp_tensor *p = param(f, "p", 1, SH(2), 3.0f), *w = param(f, "w", 1, SH(2), 2.0f);
    dp_node *x = dp_input(f->g, "x", 1, SH(2));
    dp_node *a = dp_mul(f->g, dp_param(f->g, p), x);
    dp_node *loss = dp_sum(f->g, dp_mul(f->g, dp_stop_gradient(f->g, a), dp_param(f->g, w)), DP_AXIS_ALL, 0);
    assert_int_equal(dp_graph_compile(f->g), DP_OK);
    dp_tensor_copy_from(dp_node_value(x), (float[]){1.5f, 4.0f}, 2);
    assert_int_equal(dp_graph_run(f->g), DP_OK);
    dp_paramset_zero_grad(f->ps);
    dp_tensor_copy_from(dp_param_grad(p), (float[]){-0.0f, -0.0f}, 2);
    assert_int_equal(dp_graph_backward(f->g, loss, 0, NULL), DP_OK);
    const float *gp = dp_tensor_f32(dp_param_grad(p)), *gw = dp_tensor_f32(dp_param_grad(w));
    assert_true(gw[0] == 4.5f && gw[1] == 12.0f);
    assert_true(gp[0] == 0.0f && signbit(gp[0]) && signbit(gp[1]));
}

/* A second forward in the same pass reuses what was computed (the dropout
 * mask stays); a new pass recomputes it. */
static void partial_forward_reuses(void **state) {
    fx *f = *state;
    dp_node *x = dp_input(f->g, "x", 1, SH(64));
    dp_node *d = dp_dropout(f->g, x, 0.5f);
    dp_node *a = dp_sum(f->g, d, DP_AXIS_ALL, 0);
    dp_node *b = dp_sum(f->g, dp_scale(f->g, d, 2.0f), DP_AXIS_ALL, 0);
    /* Only outputs are sure to keep their values after later ops ran (the planner reuses buffers). */
    dp_graph_mark_output(f->g, a);
    dp_graph_mark_output(f->g, b);
    assert_int_equal(dp_graph_compile(f->g), DP_OK);
    dp_graph_set_training(f->g, 1);
    dp_tensor_fill(dp_node_value(x), 1.0f);
    assert_int_equal(dp_graph_invalidate(f->g), DP_OK);
    assert_int_equal(dp_graph_forward(f->g, 1, &a), DP_OK);
    assert_int_equal(dp_graph_forward(f->g, 1, &b), DP_OK);
    float va = dp_tensor_f32(dp_node_value(a))[0], vb = dp_tensor_f32(dp_node_value(b))[0];
    assert_true(vb == 2.0f * va);
    assert_true(va > 0.0f && va < 128.0f); /* some dropped, some kept */
    int changed = 0;
    for (int i = 0; i < 5 && !changed; i++) {
        dp_graph_run(f->g);
        changed = dp_tensor_f32(dp_node_value(a))[0] != va;
    }
    assert_true(changed);
    dp_graph_set_training(f->g, 0);
    dp_graph_run(f->g);
    assert_true(dp_tensor_f32(dp_node_value(a))[0] == 64.0f); /* eval: identity */
}

/* An inference graph reuses activation buffers: a chain of 12 ops needs ~2 buffers, not 12. */
static void planner_reuses_buffers(void **state) {
    fx *f = *state;
    dp_node *x = dp_input(f->g, "x", 1, SH(1 << 16));
    dp_node *y = x;
    for (int i = 0; i < 12; i++) y = (i & 1) ? dp_relu(f->g, y) : dp_scale(f->g, y, 1.5f);
    assert_int_equal(dp_graph_mark_output(f->g, y), DP_OK);
    assert_int_equal(dp_graph_compile(f->g), DP_OK);
    size_t one = (size_t)(1 << 16) * sizeof(float);
    assert_true(dp_graph_memory_bytes(f->g) < 5 * one);
    dp_tensor_fill(dp_node_value(x), -1.0f);
    dp_tensor_f32(dp_node_value(x))[7] = 2.0f;
    assert_int_equal(dp_graph_run(f->g), DP_OK);
    const float *o = dp_tensor_f32(dp_node_value(y));
    assert_true(o[0] == 0.0f);
    assert_true(fabsf(o[7] - 2.0f * powf(1.5f, 6)) < 1e-4f);
    assert_true(dp_tensor_f32(dp_node_value(x))[7] == 2.0f); /* inputs are never overwritten */
}

/* A no_grad graph over trainable parameters reuses buffers too, and refuses backward. */
static void no_grad_graph(void **state) {
    fx *f = *state;
    dp_tensor *w = param(f, "w", 1, SH(1 << 16), 1.0f);
    dp_node *x = dp_input(f->g, "x", 1, SH(1 << 16));
    dp_node *y = dp_mul(f->g, x, dp_param(f->g, w));
    for (int i = 0; i < 10; i++) y = dp_relu(f->g, dp_scale(f->g, y, 1.0f));
    dp_node *loss = dp_sum(f->g, y, DP_AXIS_ALL, 0);
    assert_int_equal(dp_graph_mark_output(f->g, loss), DP_OK);
    assert_int_equal(dp_graph_set_no_grad(f->g), DP_OK);
    assert_int_equal(dp_input_requires_grad(f->g, x), DP_ERR_STATE);
    assert_int_equal(dp_graph_compile(f->g), DP_OK);
    assert_true(dp_graph_memory_bytes(f->g) < 5 * (size_t)(1 << 16) * sizeof(float));
    dp_tensor_fill(dp_node_value(x), 2.0f);
    assert_int_equal(dp_graph_run(f->g), DP_OK);
    assert_true(dp_tensor_f32(dp_node_value(loss))[0] == 2.0f * (1 << 16));
    assert_int_equal(dp_graph_backward(f->g, loss, 0, NULL), DP_OK); /* nothing to do: no gradient anywhere */
    assert_null(dp_node_grad(x));
}

/* Same seed, same thread count: bit-identical training (here: a tiny manual SGD loop with dropout). */
static float train_tiny(uint64_t seed) {
    dp_ctx *ctx;
    dp_ctx_opts o = {.threads = 2, .seed = seed};
    dp_ctx_new(&o, &ctx);
    dp_graph *g;
    dp_paramset *ps;
    dp_graph_new(ctx, &g);
    dp_paramset_new(ctx, &ps);
    dp_tensor *w;
    dp_init init = {DP_INIT_NORMAL, 0.0f, 1.0f};
    dp_paramset_get_or_add(ps, "w", 1, SH(32), DP_PARAM_TRAINABLE, &init, &w);
    dp_node *x = dp_input(g, "x", 1, SH(32));
    dp_node *y = dp_dropout(g, dp_tanh(g, dp_mul(g, x, dp_param(g, w))), 0.25f);
    dp_node *loss = dp_mean(g, dp_mul(g, y, y), DP_AXIS_ALL, 0);
    dp_graph_compile(g);
    dp_graph_set_training(g, 1);
    dp_tensor_fill(dp_node_value(x), 0.7f);
    for (int step = 0; step < 20; step++) {
        dp_graph_run(g);
        dp_paramset_zero_grad(ps);
        dp_graph_backward(g, loss, 0, NULL);
        float *pw = dp_tensor_f32(w), *gw = dp_tensor_f32(dp_param_grad(w));
        for (int i = 0; i < 32; i++) pw[i] -= 0.5f * gw[i];
    }
    dp_graph_run(g);
    float r = dp_tensor_f32(dp_node_value(loss))[0];
    dp_graph_free(g);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
    return r;
}

static void deterministic(void **state) {
    (void)state;
    float a = train_tiny(11), b = train_tiny(11), c = train_tiny(12);
    assert_memory_equal(&a, &b, sizeof a);
    assert_true(a != c);
}


/* Graphs of one context share its workspace: each runs as it does alone,
 * also when two threads run them at once (their passes take turns), and the
 * workspace outlives the first graph freed. */
typedef struct convg {
    dp_graph *g;
    dp_node *x, *y, *loss;
    dp_tensor *w;
} convg;

static void convg_build(dp_ctx *ctx, dp_paramset *ps, const char *wname, int k, convg *c) {
    dp_tensor *w = NULL;
    dp_init init = {DP_INIT_NORMAL, 0.0f, 0.1f};
    assert_int_equal(dp_paramset_get_or_add(ps, wname, 4, SH(16, 8, k, k), DP_PARAM_TRAINABLE, &init, &w), DP_OK);
    assert_int_equal(dp_graph_new(ctx, &c->g), DP_OK);
    c->w = w;
    c->x = dp_input(c->g, "x", 4, SH(4, 8, 20, 20));
    dp_conv_opts o = {.pad_h = k / 2, .pad_w = k / 2};
    c->y = dp_relu(c->g, dp_conv2d(c->g, c->x, dp_param(c->g, w), NULL, &o));
    c->loss = dp_mean(c->g, dp_mul(c->g, c->y, c->y), DP_AXIS_ALL, 0);
    assert_int_equal(dp_graph_mark_output(c->g, c->y), DP_OK);
    assert_int_equal(dp_graph_compile(c->g), DP_OK);
    float *xv = dp_tensor_f32(dp_node_value(c->x));
    for (int64_t i = 0; i < dp_tensor_numel(dp_node_value(c->x)); i++) xv[i] = (float)((i * 37 + k) % 101) / 50.0f - 1.0f;
}

/* One step: forward, backward; returns 0 when y and dL/dw match the reference (when given). */
static int convg_step(convg *c, float *y_ref, float *gw_ref) {
    dp_tensor *gw = dp_param_grad(c->w);
    memset(dp_tensor_f32(gw), 0, sizeof(float) * (size_t)dp_tensor_numel(gw));
    if (dp_graph_run(c->g) != DP_OK || dp_graph_forward(c->g, 1, &c->loss) != DP_OK ||
        dp_graph_backward(c->g, c->loss, 0, NULL) != DP_OK)
        return 1;
    size_t ny = sizeof(float) * (size_t)dp_tensor_numel(dp_node_value(c->y)), nw = sizeof(float) * (size_t)dp_tensor_numel(gw);
    if (!y_ref) return 0;
    return memcmp(y_ref, dp_tensor_f32(dp_node_value(c->y)), ny) != 0 || memcmp(gw_ref, dp_tensor_f32(gw), nw) != 0;
}

typedef struct convg_run {
    convg *c;
    float *y_ref, *gw_ref;
    int rounds, bad;
} convg_run;

static void *convg_thread(void *arg) {
    convg_run *r = arg;
    for (int i = 0; i < r->rounds; i++) r->bad += convg_step(r->c, r->y_ref, r->gw_ref);
    return NULL;
}

static void graphs_share_workspace(void **state) {
    (void)state;
    dp_ctx *ctx;
    dp_paramset *ps;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 2, .seed = 5}, &ctx), DP_OK);
    assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
    convg c[2];
    convg_run r[2];
    for (int i = 0; i < 2; i++) {
        convg_build(ctx, ps, i ? "w5" : "w3", i ? 5 : 3, &c[i]);
        size_t ny = sizeof(float) * (size_t)dp_tensor_numel(dp_node_value(c[i].y));
        size_t nw = sizeof(float) * (size_t)dp_tensor_numel(c[i].w);
        r[i] = (convg_run){.c = &c[i], .y_ref = malloc(ny), .gw_ref = malloc(nw), .rounds = 40};
        assert_non_null(r[i].y_ref);
        assert_non_null(r[i].gw_ref);
    }
    for (int i = 0; i < 2; i++) { /* each alone: the reference */
        assert_int_equal(convg_step(&c[i], NULL, NULL), 0);
        memcpy(r[i].y_ref, dp_tensor_f32(dp_node_value(c[i].y)), sizeof(float) * (size_t)dp_tensor_numel(dp_node_value(c[i].y)));
        memcpy(r[i].gw_ref, dp_tensor_f32(dp_param_grad(c[i].w)), sizeof(float) * (size_t)dp_tensor_numel(c[i].w));
    }
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, convg_thread, &r[1]), 0);
    convg_thread(&r[0]);
    pthread_join(th, NULL);
    assert_int_equal(r[0].bad, 0);
    assert_int_equal(r[1].bad, 0);
    dp_graph_free(c[0].g); /* the other keeps the workspace */
    assert_int_equal(convg_step(&c[1], r[1].y_ref, r[1].gw_ref), 0);
    dp_graph_free(c[1].g); /* the workspace goes; a new graph reserves it again */
    convg_build(ctx, ps, "w3", 3, &c[0]);
    assert_int_equal(convg_step(&c[0], r[0].y_ref, r[0].gw_ref), 0);
    dp_graph_free(c[0].g);
    for (int i = 0; i < 2; i++) free(r[i].y_ref), free(r[i].gw_ref);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

/* The GEMM's packing buffers live on the heap, one block per thread: as
 * _Thread_local arrays they were 650 KiB of static TLS on every thread of a
 * process linking doppel, and pthread_create failed for stacks under ~1 MiB.
 * A thread with a 512 KiB stack starts and runs a conv graph's passes to the
 * same bits as the main thread. */
static void small_stack_threads(void **state) {
    (void)state;
    dp_ctx *ctx;
    dp_paramset *ps;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 6}, &ctx), DP_OK);
    assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
    convg c;
    convg_build(ctx, ps, "w3", 3, &c);
    size_t ny = sizeof(float) * (size_t)dp_tensor_numel(dp_node_value(c.y)), nw = sizeof(float) * (size_t)dp_tensor_numel(c.w);
    convg_run r = {.c = &c, .y_ref = malloc(ny), .gw_ref = malloc(nw), .rounds = 2};
    assert_non_null(r.y_ref);
    assert_non_null(r.gw_ref);
    assert_int_equal(convg_step(&c, NULL, NULL), 0);
    memcpy(r.y_ref, dp_tensor_f32(dp_node_value(c.y)), ny);
    memcpy(r.gw_ref, dp_tensor_f32(dp_param_grad(c.w)), nw);
    pthread_attr_t at;
    pthread_t th;
    assert_int_equal(pthread_attr_init(&at), 0);
    assert_int_equal(pthread_attr_setstacksize(&at, 512 << 10), 0);
    assert_int_equal(pthread_create(&th, &at, convg_thread, &r), 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&at);
    assert_int_equal(r.bad, 0);
    dp_graph_free(c.g);
    free(r.y_ref), free(r.gw_ref);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sticky_shape_error, setup, teardown),
        cmocka_unit_test_setup_teardown(state_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(backward_needs_fresh_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(accumulate_and_wrt, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_gradient_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(partial_forward_reuses, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_gradient_skips_its_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(planner_reuses_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(no_grad_graph, setup, teardown),
        cmocka_unit_test(deterministic),
        cmocka_unit_test(graphs_share_workspace),
        cmocka_unit_test(small_stack_threads),
    };
    return cmocka_run_group_tests_name("graph", tests, NULL, NULL);
}
