/* "Nothing is allocated inside a training or inference step."
 *
 * After one warm-up step, steps 2..4 must make no allocation at all, counted
 * two ways:
 *   - through a counting dp_allocator given to the context (every allocation
 *     the library makes on purpose goes through it);
 *   - through the C library itself: this test is linked with
 *     -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=posix_memalign
 *     (tests/CMakeLists.txt), so every such call in the library or the test
 *     lands in a __wrap_ function below, which counts while a flag is set.
 *     Under AddressSanitizer (DP_SANITIZE) the wrap is not linked
 *     (DP_ALLOC_NO_WRAP) and only the allocator count is checked.
 * Workloads: a Meso-4 training step (batch 4, BCE, Adam, dropout on), Meso-4
 * inference (batch 1) and a DCGAN-28 iteration (D on real and fake, then G;
 * two Adam optimisers over two paramsets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doppel/doppel.h"

static atomic_int counting;
static atomic_long n_ctx_allocs, n_libc_allocs;

#ifndef DP_ALLOC_NO_WRAP
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
int __real_posix_memalign(void **p, size_t align, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
int __wrap_posix_memalign(void **p, size_t align, size_t size);

static void note_libc(void) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_libc_allocs, 1);
}
void *__wrap_malloc(size_t size) {
    note_libc();
    return __real_malloc(size);
}
void *__wrap_calloc(size_t n, size_t size) {
    note_libc();
    return __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t size) {
    note_libc();
    return __real_realloc(p, size);
}
void *__wrap_aligned_alloc(size_t align, size_t size) {
    note_libc();
    return __real_aligned_alloc(align, size);
}
int __wrap_posix_memalign(void **p, size_t align, size_t size) {
    note_libc();
    return __real_posix_memalign(p, align, size);
}
#define LIBC_COUNTED 1
#else
#define LIBC_COUNTED 0
#endif

static void *count_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (atomic_load(&counting)) atomic_fetch_add(&n_ctx_allocs, 1);
    if (size == 0) size = 1;
    size = (size + align - 1) / align * align;
    return aligned_alloc(align, size);
}
static void count_free(void *p, void *user) {
    (void)user;
    free(p);
}
static const dp_allocator counting_allocator = {count_alloc, count_free, NULL};

static dp_ctx *new_ctx(void) {
    dp_ctx *ctx = NULL;
    dp_ctx_opts o = {0};
    o.seed = 11;
    o.threads = 2; /* worker threads must not allocate either */
    o.allocator = &counting_allocator;
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    return ctx;
}

#define OK(expr)                                                                                  \
    do {                                                                                          \
        dp_status s_ = (expr);                                                                    \
        if (s_ != DP_OK) fail_msg("%s: %s (%s)", #expr, dp_status_name(s_), dp_ctx_error(ctx)); \
    } while (0)

/* Inside the counted region nothing may print or assert: statuses are OR-ed. */
#define STEP(expr) (st = st ? st : (expr))

static void begin_count(void) {
    atomic_store(&n_ctx_allocs, 0);
    atomic_store(&n_libc_allocs, 0);
    atomic_store(&counting, 1);
}

static void end_count(const char *what) {
    atomic_store(&counting, 0);
    long a = atomic_load(&n_ctx_allocs), b = atomic_load(&n_libc_allocs);
    printf("  %-34s allocator calls %ld, libc calls %ld%s\n", what, a, b, LIBC_COUNTED ? "" : " (not counted: sanitizer build)");
    assert_int_equal(a, 0);
    assert_int_equal(b, 0);
}

static void fill_batch(dp_tensor *t, int step) {
    float *x = dp_tensor_f32(t);
    for (int64_t i = 0; i < dp_tensor_numel(t); i++) x[i] = (float)((i * 7 + step * 13) % 29) / 14.5f - 1.0f;
}

static void meso4_training_step(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_paramset *ps = NULL;
    dp_graph *g = NULL;
    OK(dp_paramset_new(ctx, &ps));
    OK(dp_graph_new(ctx, &g));
    const int64_t N = 4;
    dp_node *x = dp_input(g, "x", 4, (int64_t[]){N, 3, 256, 256});
    dp_node *y = dp_input(g, "y", 2, (int64_t[]){N, 1});
    dp_node *loss = dp_bce(g, dp_model_meso4(g, ps, x), y);
    OK(dp_graph_mark_output(g, loss));
    OK(dp_graph_compile(g));
    OK(dp_graph_set_training(g, 1));
    dp_optim_opts oo = {0};
    oo.kind = DP_OPTIM_ADAM;
    oo.lr = 1e-3f;
    dp_optim *opt = NULL;
    OK(dp_optim_new(ps, &oo, &opt));
    const float labels[4] = {1, 0, 1, 0};
    OK(dp_tensor_copy_from(dp_node_value(y), labels, 4));

    dp_status st = DP_OK;
    float first = 0.0f;
    for (int step = 0; step < 4; step++) {
        if (step == 1) begin_count();
        fill_batch(dp_node_value(x), step % 2);
        STEP(dp_graph_invalidate(g));
        STEP(dp_graph_forward(g, 1, &loss));
        STEP(dp_optim_zero_grad(opt));
        STEP(dp_graph_backward(g, loss, 0, NULL));
        STEP(dp_optim_step(opt));
        if (step == 0) first = dp_tensor_f32(dp_node_value(loss))[0];
    }
    end_count("Meso-4 training steps 2..4");
    OK(st);
    float last = dp_tensor_f32(dp_node_value(loss))[0];
    printf("  Meso-4 loss: step 1 %.4f, step 4 %.4f\n", first, last);
    assert_int_equal(dp_optim_steps(opt), 4);
    dp_optim_free(opt);
    dp_graph_free(g);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

static void meso4_inference(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_paramset *ps = NULL;
    dp_graph *g = NULL;
    OK(dp_paramset_new(ctx, &ps));
    OK(dp_graph_new(ctx, &g));
    dp_node *x = dp_input(g, "x", 4, (int64_t[]){1, 3, 256, 256});
    dp_node *p = dp_model_meso4(g, ps, x);
    OK(dp_graph_mark_output(g, p));
    OK(dp_graph_compile(g));
    dp_status st = DP_OK;
    for (int step = 0; step < 4; step++) {
        if (step == 1) begin_count();
        fill_batch(dp_node_value(x), step);
        STEP(dp_graph_run(g));
    }
    end_count("Meso-4 inference runs 2..4");
    OK(st);
    dp_graph_free(g);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

static void dcgan28_iteration(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_paramset *psg = NULL, *psd = NULL;
    dp_graph *g = NULL;
    OK(dp_paramset_new(ctx, &psg));
    OK(dp_paramset_new(ctx, &psd));
    OK(dp_graph_new(ctx, &g));
    const int64_t N = 8;
    dp_node *z = dp_input(g, "z", 4, (int64_t[]){N, 100, 1, 1});
    dp_node *x = dp_input(g, "x", 4, (int64_t[]){N, 1, 28, 28});
    dp_node *ones = dp_input(g, "ones", 2, (int64_t[]){N, 1});
    dp_node *zeros = dp_input(g, "zeros", 2, (int64_t[]){N, 1});
    dp_node *fake = dp_model_dcgan28_g(g, psg, z);
    dp_node *loss_d = dp_add(g, dp_bce(g, dp_model_dcgan28_d(g, psd, x), ones),
                             dp_bce(g, dp_model_dcgan28_d(g, psd, dp_stop_gradient(g, fake)), zeros));
    dp_node *loss_g = dp_bce(g, dp_model_dcgan28_d(g, psd, fake), ones);
    OK(dp_graph_mark_output(g, loss_d));
    OK(dp_graph_mark_output(g, loss_g));
    OK(dp_graph_compile(g));
    OK(dp_graph_set_training(g, 1));
    OK(dp_tensor_fill(dp_node_value(ones), 1.0f));
    OK(dp_tensor_fill(dp_node_value(zeros), 0.0f));
    dp_optim_opts oo = {0};
    oo.kind = DP_OPTIM_ADAM;
    oo.lr = 2e-4f;
    oo.beta1 = 0.5f;
    oo.beta2 = 0.999f;
    dp_optim *od = NULL, *og = NULL;
    OK(dp_optim_new(psd, &oo, &od));
    OK(dp_optim_new(psg, &oo, &og));

    dp_status st = DP_OK;
    for (int step = 0; step < 4; step++) {
        if (step == 1) begin_count();
        fill_batch(dp_node_value(x), step);
        fill_batch(dp_node_value(z), step + 5);
        STEP(dp_graph_invalidate(g));
        STEP(dp_graph_forward(g, 1, &loss_d));
        STEP(dp_optim_zero_grad(od));
        STEP(dp_graph_backward(g, loss_d, 0, NULL)); /* reaches D only (G's output is detached there) */
        STEP(dp_optim_step(od));
        /* Same pass: G's output is reused, D(fake) is computed with the updated D (the PyTorch example's order). */
        STEP(dp_graph_forward(g, 1, &loss_g));
        STEP(dp_optim_zero_grad(og));
        STEP(dp_graph_backward(g, loss_g, 0, NULL));
        STEP(dp_optim_step(og));
    }
    end_count("DCGAN-28 iterations 2..4");
    OK(st);
    dp_optim_free(od);
    dp_optim_free(og);
    dp_graph_free(g);
    dp_paramset_free(psg);
    dp_paramset_free(psd);
    dp_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(meso4_training_step),
        cmocka_unit_test(meso4_inference),
        cmocka_unit_test(dcgan28_iteration),
    };
    return cmocka_run_group_tests_name("no allocation inside a step", tests, NULL, NULL);
}
