/* Optimisers: PyTorch reference trajectories (tests/ref/optim_refs.h, made by
 * tools/make_optim_refs.py), hand-computed steps, schedules, clipping, NaN
 * refusal, state naming, no allocation in a step, NULL handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doppel/doppel.h"
#include "ref/optim_refs.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})

/* ------------------------------------------------------------ fixtures */

typedef struct fx {
    dp_ctx *ctx;
    dp_paramset *ps;
    dp_tensor *w, *b, *buf;
} fx;

static void make(fx *f, int threads, const dp_allocator *al) {
    memset(f, 0, sizeof *f);
    dp_ctx_opts o = {.threads = threads, .seed = 1, .allocator = al};
    assert_int_equal(dp_ctx_new(&o, &f->ctx), DP_OK);
    assert_int_equal(dp_paramset_new(f->ctx, &f->ps), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(f->ps, "w", 2, SH(2, 3), DP_PARAM_TRAINABLE, NULL, &f->w), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(f->ps, "bn.running_mean", 1, SH(2), DP_PARAM_BUFFER, NULL, &f->buf), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(f->ps, "b", 1, SH(2), DP_PARAM_TRAINABLE, NULL, &f->b), DP_OK);
    assert_int_equal(dp_tensor_copy_from(f->w, optim_ref_w0, 6), DP_OK);
    assert_int_equal(dp_tensor_copy_from(f->b, optim_ref_b0, 2), DP_OK);
    assert_int_equal(dp_tensor_fill(f->buf, 7.0f), DP_OK);
    assert_non_null(dp_param_grad(f->w));
    assert_non_null(dp_param_grad(f->b));
}

static void unmake(fx *f) {
    dp_paramset_free(f->ps);
    dp_ctx_free(f->ctx);
}

/* The gradients of step t (1-based), the same floats tools/make_optim_refs.py uses. */
static void set_grads(fx *f, int t) {
    float gw[6], gb[2];
    for (int i = 0; i < 6; i++) gw[i] = (float)(sin(1.3 * i + 0.7 * t) * (1.0 + 0.1 * t));
    for (int i = 0; i < 2; i++) gb[i] = (float)(cos(0.9 * i - 0.4 * t) * 0.5);
    assert_int_equal(dp_tensor_copy_from(dp_param_grad(f->w), gw, 6), DP_OK);
    assert_int_equal(dp_tensor_copy_from(dp_param_grad(f->b), gb, 2), DP_OK);
}

static void assert_close(float got, float want, float rtol, const char *what, int step, int i) {
    float tol = rtol * (fabsf(want) > 1.0f ? fabsf(want) : 1.0f);
    if (!(fabsf(got - want) <= tol)) {
        print_error("%s: step %d, element %d: got %.9g, PyTorch %.9g\n", what, step, i, (double)got, (double)want);
        fail();
    }
}

/* ------------------------------------------------------------ references */

static void run_ref(const optim_ref *r, const dp_optim_opts *opts) {
    fx f;
    make(&f, 1, NULL);
    dp_optim *o = NULL;
    assert_int_equal(dp_optim_new(f.ps, opts, &o), DP_OK);
    for (int t = 1; t <= OPTIM_REF_STEPS; t++) {
        set_grads(&f, t);
        assert_int_equal(dp_optim_step(o), DP_OK);
        assert_int_equal(dp_optim_steps(o), t);
        assert_close(dp_optim_last_grad_norm(o), r->norm[t - 1], 1e-6f, r->name, t, -1);
        const float *w = dp_tensor_f32(f.w), *b = dp_tensor_f32(f.b);
        for (int i = 0; i < 6; i++) assert_close(w[i], r->val[t - 1][i], 2e-6f, r->name, t, i);
        for (int i = 0; i < 2; i++) assert_close(b[i], r->val[t - 1][6 + i], 2e-6f, r->name, t, 6 + i);
        for (int i = 0; i < 2; i++) assert_true(dp_tensor_f32(f.buf)[i] == 7.0f); /* buffers are not optimised */
    }
    dp_optim_free(o);
    unmake(&f);
}

static void matches_pytorch(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof optim_refs / sizeof optim_refs[0]; k++) run_ref(&optim_refs[k], &optim_refs[k].opts);
}

/* beta1 = beta2 = 0 and eps = 0 mean PyTorch's defaults (0.9, 0.999, 1e-8). */
static void adam_defaults(void **state) {
    (void)state;
    const optim_ref *r = NULL;
    for (size_t k = 0; k < sizeof optim_refs / sizeof optim_refs[0]; k++)
        if (!strcmp(optim_refs[k].name, "adam")) r = &optim_refs[k];
    assert_non_null(r);
    dp_optim_opts o = {.kind = DP_OPTIM_ADAM, .lr = r->opts.lr};
    run_ref(r, &o);
    fx f;
    make(&f, 1, NULL);
    dp_optim *opt;
    assert_int_equal(dp_optim_new(f.ps, &o, &opt), DP_OK);
    const dp_optim_opts *got = dp_optim_options(opt);
    assert_true(got->beta1 == 0.9f && got->beta2 == 0.999f && got->eps == 1e-8f);
    dp_optim_free(opt);
    unmake(&f);
}

/* ------------------------------------------------------------ by hand */

static void one_param(fx *f, float p, float g) {
    memset(f, 0, sizeof *f);
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1}, &f->ctx), DP_OK);
    assert_int_equal(dp_paramset_new(f->ctx, &f->ps), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(f->ps, "p", 1, SH(1), DP_PARAM_TRAINABLE, NULL, &f->w), DP_OK);
    dp_tensor_f32(f->w)[0] = p;
    dp_tensor_f32(dp_param_grad(f->w))[0] = g;
}

static float step_once(const dp_optim_opts *opts, float p, float g, int steps) {
    fx f;
    one_param(&f, p, g);
    dp_optim *o;
    assert_int_equal(dp_optim_new(f.ps, opts, &o), DP_OK);
    for (int i = 0; i < steps; i++) assert_int_equal(dp_optim_step(o), DP_OK);
    float r = dp_tensor_f32(f.w)[0];
    dp_optim_free(o);
    unmake(&f);
    return r;
}

static void by_hand(void **state) {
    (void)state;
    /* SGD: 1 - 0.1*0.5 */
    assert_float_equal(step_once(&(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 0.1f}, 1.0f, 0.5f, 1), 0.95f, 1e-7);
    /* SGD + L2: g = 0.5 + 0.1*1 = 0.6 → 0.94 */
    assert_float_equal(step_once(&(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 0.1f, .weight_decay = 0.1f}, 1.0f, 0.5f, 1),
                       0.94f, 1e-7);
    /* Momentum 0.9, constant g = 0.5: buf 0.5, 0.95 → p = 1 - 0.05 - 0.095 */
    assert_float_equal(step_once(&(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 0.1f, .momentum = 0.9f}, 1.0f, 0.5f, 2),
                       0.855f, 1e-6);
    /* Nesterov, first step: buf = g, update g + 0.9 g = 0.95 → 1 - 0.095 */
    assert_float_equal(
        step_once(&(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 0.1f, .momentum = 0.9f, .nesterov = 1}, 1.0f, 0.5f, 1),
        0.905f, 1e-6);
    /* Adam, first step: m̂ = g, v̂ = g², so p -= lr * |g|/(|g| + eps) ≈ lr*sign(g) */
    assert_float_equal(step_once(&(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 0.01f}, 1.0f, -3.0f, 1), 1.01f, 1e-6);
    /* eps outside the square root: g = 1e-4, eps = 1e-4 → p -= lr * 1e-4/(2e-4) */
    assert_float_equal(step_once(&(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 0.01f, .eps = 1e-4f}, 1.0f, 1e-4f, 1),
                       0.995f, 1e-6);
    /* AdamW: p = 1*(1 - 0.01*0.5) - 0.01 */
    assert_float_equal(step_once(&(dp_optim_opts){.kind = DP_OPTIM_ADAMW, .lr = 0.01f, .weight_decay = 0.5f}, 1.0f, 2.0f, 1),
                       0.985f, 1e-6);
    /* Adam's L2 goes through the moments: g = 0 + 0.5*1 → the same ±lr first step */
    assert_float_equal(step_once(&(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 0.01f, .weight_decay = 0.5f}, 1.0f, 0.0f, 1),
                       0.99f, 1e-6);
}

/* ------------------------------------------------------------ schedules */

static void schedules(void **state) {
    (void)state;
    const float lr = 0.1f;
    dp_lr_schedule c = {.kind = DP_LR_CONSTANT};
    for (int s = 0; s < 50; s += 7) assert_float_equal(dp_lr_at(&c, lr, s), lr, 0);
    assert_float_equal(dp_lr_at(NULL, lr, 5), lr, 0);

    dp_lr_schedule st = {.kind = DP_LR_STEP, .step_size = 3, .gamma = 0.1f};
    const float want_step[] = {0.1f, 0.1f, 0.1f, 0.01f, 0.01f, 0.01f, 0.001f};
    for (int s = 0; s < 7; s++) assert_float_equal(dp_lr_at(&st, lr, s), want_step[s], 1e-9);

    dp_lr_schedule cs = {.kind = DP_LR_COSINE, .total_steps = 10, .min_lr = 0.01f};
    assert_float_equal(dp_lr_at(&cs, lr, 0), lr, 1e-9);
    assert_float_equal(dp_lr_at(&cs, lr, 5), 0.055f, 1e-7); /* half way: the mean of lr and min_lr */
    assert_float_equal(dp_lr_at(&cs, lr, 10), 0.01f, 1e-9);
    assert_float_equal(dp_lr_at(&cs, lr, 1000), 0.01f, 1e-9); /* stays at min_lr after the end */
    for (int s = 1; s <= 10; s++) {
        double want = 0.01 + 0.09 * 0.5 * (1 + cos(3.14159265358979 * s / 10));
        assert_float_equal(dp_lr_at(&cs, lr, s), want, 1e-7);
        assert_true(dp_lr_at(&cs, lr, s) < dp_lr_at(&cs, lr, s - 1));
    }

    /* Warm-up: lr*step/warmup, then the schedule (which counts warm-up steps too). */
    dp_lr_schedule w = {.kind = DP_LR_CONSTANT, .warmup_steps = 4};
    const float want_w[] = {0.0f, 0.025f, 0.05f, 0.075f, 0.1f, 0.1f};
    for (int s = 0; s < 6; s++) assert_float_equal(dp_lr_at(&w, lr, s), want_w[s], 1e-8);
    dp_lr_schedule wc = {.kind = DP_LR_COSINE, .warmup_steps = 2, .total_steps = 12, .min_lr = 0.0f};
    assert_float_equal(dp_lr_at(&wc, lr, 1), 0.05f, 1e-8);
    assert_float_equal(dp_lr_at(&wc, lr, 2), 0.1f, 1e-8);
    assert_float_equal(dp_lr_at(&wc, lr, 7), 0.05f, 1e-8);
    assert_float_equal(dp_lr_at(&wc, lr, 12), 0.0f, 1e-8);
    dp_lr_schedule ws = {.kind = DP_LR_STEP, .warmup_steps = 2, .step_size = 4, .gamma = 0.5f};
    assert_float_equal(dp_lr_at(&ws, lr, 1), 0.05f, 1e-8);
    assert_float_equal(dp_lr_at(&ws, lr, 3), 0.1f, 1e-8);
    assert_float_equal(dp_lr_at(&ws, lr, 4), 0.05f, 1e-8);

    /* dp_optim_lr follows the step counter, including one set from a checkpoint. */
    fx f;
    one_param(&f, 1.0f, 0.0f);
    dp_optim *o;
    dp_optim_opts opts = {.kind = DP_OPTIM_SGD, .lr = lr, .schedule = st};
    assert_int_equal(dp_optim_new(f.ps, &opts, &o), DP_OK);
    assert_float_equal(dp_optim_lr(o), 0.1f, 1e-9);
    for (int i = 0; i < 3; i++) assert_int_equal(dp_optim_step(o), DP_OK);
    assert_float_equal(dp_optim_lr(o), 0.01f, 1e-9);
    assert_int_equal(dp_optim_set_steps(o, 6), DP_OK);
    assert_float_equal(dp_optim_lr(o), 0.001f, 1e-9);
    assert_int_equal(dp_optim_set_steps(o, -1), DP_ERR_ARG);
    assert_int_equal(dp_optim_steps(o), 6);
    dp_optim_free(o);
    unmake(&f);
}

/* ------------------------------------------------------------ clipping */

static void clipping(void **state) {
    (void)state;
    fx f;
    make(&f, 1, NULL);
    float gw[6] = {3, 0, 0, 0, 0, 0}, gb[2] = {0, 4}; /* global norm 5 across two tensors */
    dp_optim *o;
    assert_int_equal(dp_optim_new(f.ps, &(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 1.0f, .clip_norm = 1.0f}, &o), DP_OK);
    dp_tensor_copy_from(dp_param_grad(f.w), gw, 6);
    dp_tensor_copy_from(dp_param_grad(f.b), gb, 2);
    assert_int_equal(dp_optim_step(o), DP_OK);
    assert_float_equal(dp_optim_last_grad_norm(o), 5.0f, 1e-6);
    /* clip_grad_norm_'s factor 1/(5 + 1e-6), applied to the gradients in place */
    assert_float_equal(dp_tensor_f32(dp_param_grad(f.w))[0], 0.6f, 1e-6);
    assert_float_equal(dp_tensor_f32(dp_param_grad(f.b))[1], 0.8f, 1e-6);
    assert_float_equal(dp_tensor_f32(f.w)[0], optim_ref_w0[0] - 0.6f, 1e-6);
    assert_float_equal(dp_tensor_f32(f.b)[1], optim_ref_b0[1] - 0.8f, 1e-6);
    /* Below the limit nothing is scaled. */
    float small[6] = {0.3f, 0, 0, 0, 0, 0}, zero[2] = {0, 0};
    dp_tensor_copy_from(dp_param_grad(f.w), small, 6);
    dp_tensor_copy_from(dp_param_grad(f.b), zero, 2);
    assert_int_equal(dp_optim_step(o), DP_OK);
    assert_true(dp_tensor_f32(dp_param_grad(f.w))[0] == 0.3f);
    dp_optim_free(o);

    /* Value clipping clamps each element. */
    assert_int_equal(dp_optim_new(f.ps, &(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 1.0f, .clip_value = 0.5f}, &o), DP_OK);
    float gv[6] = {2, -2, 0.25f, -0.25f, 0.5f, -9}, before[6];
    dp_tensor_copy_to(f.w, before, 6);
    dp_tensor_copy_from(dp_param_grad(f.w), gv, 6);
    assert_int_equal(dp_optim_step(o), DP_OK);
    const float want[6] = {0.5f, -0.5f, 0.25f, -0.25f, 0.5f, -0.5f};
    for (int i = 0; i < 6; i++) {
        assert_float_equal(dp_tensor_f32(dp_param_grad(f.w))[i], want[i], 0);
        assert_float_equal(dp_tensor_f32(f.w)[i], before[i] - want[i], 1e-6);
    }
    assert_float_equal(dp_optim_last_grad_norm(o), sqrtf(4 + 4 + 0.0625f + 0.0625f + 0.25f + 81), 1e-5);
    dp_optim_free(o);
    unmake(&f);
}

/* ------------------------------------------------------------ NaN / Inf */

static void refuses_non_finite(void **state) {
    (void)state;
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        fx f;
        make(&f, 1, NULL);
        dp_optim *o;
        dp_optim_opts opts = {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .clip_norm = 0.1f, .clip_value = 0.01f};
        assert_int_equal(dp_optim_new(f.ps, &opts, &o), DP_OK);
        set_grads(&f, 1);
        assert_int_equal(dp_optim_step(o), DP_OK);
        set_grads(&f, 2);
        dp_tensor_f32(dp_param_grad(f.b))[1] = bad[k];
        float w[6], b[2], gw[6], st[4][6];
        dp_tensor_copy_to(f.w, w, 6);
        dp_tensor_copy_to(f.b, b, 2);
        dp_tensor_copy_to(dp_param_grad(f.w), gw, 6);
        assert_int_equal(dp_optim_state_count(o), 4);
        for (int i = 0; i < 4; i++) memcpy(st[i], dp_tensor_f32(dp_optim_state_at(o, i, NULL)), sizeof(float) * (i < 2 ? 6 : 2));
        float norm = dp_optim_last_grad_norm(o);

        assert_int_equal(dp_optim_step(o), DP_ERR_NUMERIC);
        const char *msg = dp_ctx_error(f.ctx);
        assert_non_null(strstr(msg, "'b'"));
        assert_int_equal(dp_optim_steps(o), 1);
        assert_memory_equal(w, dp_tensor_f32(f.w), sizeof w);
        assert_memory_equal(b, dp_tensor_f32(f.b), sizeof b);
        assert_memory_equal(gw, dp_tensor_f32(dp_param_grad(f.w)), sizeof gw); /* not clipped either */
        for (int i = 0; i < 4; i++)
            assert_memory_equal(st[i], dp_tensor_f32(dp_optim_state_at(o, i, NULL)), sizeof(float) * (i < 2 ? 6 : 2));
        assert_true(dp_optim_last_grad_norm(o) == norm);
        dp_optim_free(o);
        unmake(&f);
    }
}

/* ------------------------------------------------------------ state */

static void state_names(void **state) {
    (void)state;
    fx f;
    make(&f, 1, NULL);
    dp_optim *o;
    const char *name;
    assert_int_equal(dp_optim_new(f.ps, &(dp_optim_opts){.kind = DP_OPTIM_ADAMW, .lr = 0.1f}, &o), DP_OK);
    assert_int_equal(dp_optim_state_count(o), 4);
    assert_ptr_equal(dp_optim_paramset(o), f.ps);
    const char *want[] = {"w.exp_avg", "w.exp_avg_sq", "b.exp_avg", "b.exp_avg_sq"};
    for (int i = 0; i < 4; i++) {
        dp_tensor *t = dp_optim_state_at(o, i, &name);
        assert_non_null(t);
        assert_string_equal(name, want[i]);
        assert_string_equal(dp_tensor_name(t), want[i]);
        assert_int_equal(dp_tensor_numel(t), i < 2 ? 6 : 2);
        assert_int_equal(dp_tensor_ndim(t), i < 2 ? 2 : 1);
        for (int k = 0; k < dp_tensor_numel(t); k++) assert_true(dp_tensor_f32(t)[k] == 0.0f);
    }
    assert_null(dp_optim_state_at(o, 4, &name));
    assert_null(name);
    assert_null(dp_optim_state_at(o, -1, NULL));
    dp_optim_free(o);

    assert_int_equal(dp_optim_new(f.ps, &(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 0.1f}, &o), DP_OK);
    assert_int_equal(dp_optim_state_count(o), 0); /* plain SGD keeps nothing */
    dp_optim_free(o);
    assert_int_equal(dp_optim_new(f.ps, &(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 0.1f, .momentum = 0.9f}, &o), DP_OK);
    assert_int_equal(dp_optim_state_count(o), 2);
    dp_optim_state_at(o, 1, &name);
    assert_string_equal(name, "b.momentum_buffer");
    /* After a step the buffer holds the first gradient (PyTorch's first-step rule). */
    set_grads(&f, 1);
    assert_int_equal(dp_optim_step(o), DP_OK);
    assert_memory_equal(dp_tensor_f32(dp_optim_state_at(o, 1, NULL)), dp_tensor_f32(dp_param_grad(f.b)), 2 * sizeof(float));
    /* zero_grad clears every gradient. */
    assert_int_equal(dp_optim_zero_grad(o), DP_OK);
    for (int i = 0; i < 6; i++) assert_true(dp_tensor_f32(dp_param_grad(f.w))[i] == 0.0f);
    dp_optim_free(o);
    unmake(&f);
}

/* A parameter without a gradient buffer is left alone (PyTorch's grad None). */
static void skips_params_without_grad(void **state) {
    (void)state;
    dp_ctx *ctx;
    dp_paramset *ps;
    dp_tensor *a, *b;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1}, &ctx), DP_OK);
    assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(ps, "a", 1, SH(3), 0, &(dp_init){DP_INIT_CONSTANT, 1, 0}, &a), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(ps, "b", 1, SH(3), 0, &(dp_init){DP_INIT_CONSTANT, 1, 0}, &b), DP_OK);
    dp_tensor_fill(dp_param_grad(a), 1.0f);
    dp_optim *o;
    assert_int_equal(dp_optim_new(ps, &(dp_optim_opts){.kind = DP_OPTIM_ADAMW, .lr = 0.1f, .weight_decay = 0.1f}, &o), DP_OK);
    assert_int_equal(dp_optim_step(o), DP_OK);
    assert_float_equal(dp_tensor_f32(a)[0], 1.0f * (1 - 0.01f) - 0.1f, 1e-6);
    assert_true(dp_tensor_f32(b)[0] == 1.0f);
    dp_optim_free(o);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ allocation, threads */

static long n_allocs;
static void *count_alloc(size_t size, size_t align, void *user) {
    (void)user;
    n_allocs++;
    size = (size + align - 1) / align * align;
    return aligned_alloc(align, size ? size : align);
}
static void count_free(void *p, void *user) {
    (void)user;
    free(p);
}

static void step_allocates_nothing(void **state) {
    (void)state;
    dp_allocator al = {count_alloc, count_free, NULL};
    const dp_optim_kind kinds[] = {DP_OPTIM_SGD, DP_OPTIM_ADAM, DP_OPTIM_ADAMW};
    for (int k = 0; k < 3; k++) {
        fx f;
        make(&f, 2, &al);
        dp_optim *o;
        dp_optim_opts opts = {.kind = kinds[k], .lr = 0.01f, .momentum = 0.9f, .clip_norm = 1.0f, .clip_value = 1.0f,
                              .schedule = {.kind = DP_LR_COSINE, .warmup_steps = 1, .total_steps = 10}};
        assert_int_equal(dp_optim_new(f.ps, &opts, &o), DP_OK);
        set_grads(&f, 1);
        long before = n_allocs;
        for (int i = 0; i < 5; i++) assert_int_equal(dp_optim_step(o), DP_OK);
        dp_tensor_f32(dp_param_grad(f.w))[0] = NAN;
        assert_int_equal(dp_optim_step(o), DP_ERR_NUMERIC);
        assert_int_equal(n_allocs, before);
        dp_optim_free(o);
        unmake(&f);
    }
}

/* Big tensors are updated in parallel; the result must not depend on the thread count. */
static void threads_do_not_change_results(void **state) {
    (void)state;
    enum { N = 100003 };
    float *res[2];
    const int threads[2] = {1, 4};
    for (int r = 0; r < 2; r++) {
        dp_ctx *ctx;
        dp_paramset *ps;
        dp_tensor *p;
        assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = threads[r], .seed = 9}, &ctx), DP_OK);
        assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
        assert_int_equal(dp_paramset_get_or_add(ps, "big", 1, SH(N), 0, &(dp_init){DP_INIT_NORMAL, 0, 1}, &p), DP_OK);
        dp_optim *o;
        assert_int_equal(dp_optim_new(ps, &(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 0.01f, .clip_norm = 10.0f}, &o), DP_OK);
        for (int t = 0; t < 3; t++) {
            float *g = dp_tensor_f32(dp_param_grad(p));
            for (int i = 0; i < N; i++) g[i] = (float)sin(0.001 * i + t);
            assert_int_equal(dp_optim_step(o), DP_OK);
        }
        res[r] = malloc(sizeof(float) * N);
        memcpy(res[r], dp_tensor_f32(p), sizeof(float) * N);
        dp_optim_free(o);
        dp_paramset_free(ps);
        dp_ctx_free(ctx);
    }
    assert_memory_equal(res[0], res[1], sizeof(float) * N);
    free(res[0]);
    free(res[1]);
}

/* ------------------------------------------------------------ arguments */

static void bad_options(void **state) {
    (void)state;
    fx f;
    make(&f, 1, NULL);
    dp_optim *o = (dp_optim *)&f; /* must be reset to NULL on failure */
    const dp_optim_opts bad[] = {
        {.kind = DP_OPTIM_SGD, .lr = -1.0f},
        {.kind = DP_OPTIM_SGD, .lr = NAN},
        {.kind = (dp_optim_kind)7, .lr = 0.1f},
        {.kind = DP_OPTIM_SGD, .lr = 0.1f, .nesterov = 1},
        {.kind = DP_OPTIM_SGD, .lr = 0.1f, .momentum = 1.0f},
        {.kind = DP_OPTIM_SGD, .lr = 0.1f, .weight_decay = -0.1f},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .beta1 = 1.0f, .beta2 = 0.9f},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .eps = -1.0f},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .clip_norm = -1.0f},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .schedule = {.kind = DP_LR_STEP, .step_size = 0, .gamma = 0.5f}},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .schedule = {.kind = DP_LR_STEP, .step_size = 2, .gamma = 0.0f}},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .schedule = {.kind = DP_LR_COSINE, .total_steps = 0}},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .schedule = {.kind = DP_LR_COSINE, .total_steps = 5, .min_lr = 1.0f}},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .schedule = {.kind = DP_LR_CONSTANT, .warmup_steps = -1}},
        {.kind = DP_OPTIM_ADAM, .lr = 0.1f, .schedule = {.kind = (dp_lr_kind)9}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dp_ctx_clear_error(f.ctx);
        assert_int_equal(dp_optim_new(f.ps, &bad[i], &o), DP_ERR_ARG);
        assert_null(o);
        assert_true(strlen(dp_ctx_error(f.ctx)) > 0);
    }
    /* A paramset with only buffers has nothing to optimise. */
    dp_paramset *ps;
    dp_tensor *t;
    assert_int_equal(dp_paramset_new(f.ctx, &ps), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(ps, "rm", 1, SH(2), DP_PARAM_BUFFER, NULL, &t), DP_OK);
    assert_int_equal(dp_optim_new(ps, &(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 0.1f}, &o), DP_ERR_ARG);
    dp_paramset_free(ps);
    unmake(&f);
}

static void null_handles(void **state) {
    (void)state;
    fx f;
    make(&f, 1, NULL);
    dp_optim *o;
    dp_optim_opts opts = {.kind = DP_OPTIM_SGD, .lr = 0.1f};
    assert_int_equal(dp_optim_new(NULL, &opts, &o), DP_ERR_NULL);
    assert_int_equal(dp_optim_new(f.ps, NULL, &o), DP_ERR_NULL);
    assert_int_equal(dp_optim_new(f.ps, &opts, NULL), DP_ERR_NULL);
    assert_int_equal(dp_optim_step(NULL), DP_ERR_NULL);
    assert_int_equal(dp_optim_zero_grad(NULL), DP_ERR_NULL);
    assert_int_equal(dp_optim_set_steps(NULL, 3), DP_ERR_NULL);
    assert_int_equal(dp_optim_steps(NULL), 0);
    assert_true(dp_optim_lr(NULL) == 0.0f);
    assert_true(dp_optim_last_grad_norm(NULL) == 0.0f);
    assert_null(dp_optim_options(NULL));
    assert_int_equal(dp_optim_state_count(NULL), 0);
    const char *name = "x";
    assert_null(dp_optim_state_at(NULL, 0, &name));
    assert_null(name);
    assert_null(dp_optim_paramset(NULL));
    dp_optim_free(NULL);
    unmake(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_pytorch),
        cmocka_unit_test(adam_defaults),
        cmocka_unit_test(by_hand),
        cmocka_unit_test(schedules),
        cmocka_unit_test(clipping),
        cmocka_unit_test(refuses_non_finite),
        cmocka_unit_test(state_names),
        cmocka_unit_test(skips_params_without_grad),
        cmocka_unit_test(step_allocates_nothing),
        cmocka_unit_test(threads_do_not_change_results),
        cmocka_unit_test(bad_options),
        cmocka_unit_test(null_handles),
    };
    return cmocka_run_group_tests_name("optim", tests, NULL, NULL);
}
