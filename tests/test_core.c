/* Core API: contexts, tensors, views, RNG, and bad use returning errors (never aborting). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "doppel/doppel.h"

static dp_ctx *new_ctx(void) {
    dp_ctx *ctx = NULL;
    dp_ctx_opts o = {.threads = 2, .seed = 1};
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    return ctx;
}

static void test_status_names(void **s) {
    (void)s;
    assert_string_equal(dp_status_name(DP_OK), "DP_OK");
    assert_string_equal(dp_status_name(DP_ERR_SHAPE), "DP_ERR_SHAPE");
    assert_string_equal(dp_status_name((dp_status)999), "DP_ERR_UNKNOWN");
    assert_int_equal(dp_dtype_size(DP_F32), 4);
    assert_string_equal(dp_dtype_name(DP_BF16), "BF16");
}

static void test_null_handles(void **s) {
    (void)s;
    assert_int_equal(dp_ctx_new(NULL, NULL), DP_ERR_NULL);
    dp_ctx_free(NULL);
    dp_graph_free(NULL);
    dp_paramset_free(NULL);
    dp_optim_free(NULL);
    assert_int_equal(dp_graph_compile(NULL), DP_ERR_NULL);
    assert_int_equal(dp_graph_run(NULL), DP_ERR_NULL);
    assert_int_equal(dp_tensor_fill(NULL, 0), DP_ERR_NULL);
    assert_null(dp_relu(NULL, NULL));
    assert_int_equal(dp_tensor_new(NULL, DP_F32, 1, (int64_t[]){1}, NULL), DP_ERR_NULL);
    dp_ctx *ctx = new_ctx();
    assert_int_equal(dp_tensor_new(ctx, DP_F32, 1, (int64_t[]){1}, NULL), DP_ERR_NULL);
    assert_true(strlen(dp_ctx_error(ctx)) > 0);
    dp_ctx_free(ctx);
}

static void test_tensor_errors(void **s) {
    (void)s;
    dp_ctx *ctx = new_ctx();
    dp_tensor *t = NULL;
    assert_int_equal(dp_tensor_new(ctx, DP_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, &t), DP_ERR_ARG);
    assert_int_equal(dp_tensor_new(ctx, DP_F32, 2, (int64_t[]){3, 0}, &t), DP_ERR_SHAPE);
    assert_int_equal(dp_tensor_new(ctx, DP_F32, 2, (int64_t[]){3, -2}, &t), DP_ERR_SHAPE);
    assert_int_equal(dp_tensor_new(ctx, DP_F16, 1, (int64_t[]){3}, &t), DP_ERR_DTYPE);
    /* absurd dimensions: refused before allocating */
    assert_int_equal(dp_tensor_new(ctx, DP_F32, 4, (int64_t[]){1 << 20, 1 << 20, 1 << 20, 1 << 20}, &t), DP_ERR_NOMEM);
    assert_non_null(strstr(dp_ctx_error(ctx), "limit"));
    assert_null(t);
    float buf[6];
    assert_int_equal(dp_tensor_new(ctx, DP_F32, 2, (int64_t[]){2, 3}, &t), DP_OK);
    assert_int_equal(dp_tensor_copy_from(t, buf, 5), DP_ERR_SHAPE);
    assert_int_equal(dp_tensor_copy_from(t, NULL, 6), DP_ERR_NULL);
    dp_ctx_free(ctx);
}

static void test_views(void **s) {
    (void)s;
    dp_ctx *ctx = new_ctx();
    dp_tensor *t, *r, *p, *sl;
    assert_int_equal(dp_tensor_new(ctx, DP_F32, 3, (int64_t[]){2, 3, 4}, &t), DP_OK);
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    dp_tensor_copy_from(t, v, 24);
    assert_int_equal(dp_tensor_reshape(ctx, t, 2, (int64_t[]){-1, 4}, &r), DP_OK);
    assert_int_equal(dp_tensor_dim(r, 0), 6);
    assert_ptr_equal(dp_tensor_f32(r), dp_tensor_f32(t)); /* no copy */
    assert_int_equal(dp_tensor_reshape(ctx, t, 2, (int64_t[]){5, -1}, &r), DP_ERR_SHAPE);
    /* permute [2,3,4] -> [4,2,3] */
    assert_int_equal(dp_tensor_permute(ctx, t, (int[]){2, 0, 1}, &p), DP_OK);
    assert_false(dp_tensor_is_contiguous(p));
    float out[24];
    assert_int_equal(dp_tensor_copy_to(p, out, 24), DP_OK);
    /* out[c][a][b] = v[a][b][c] */
    for (int c = 0; c < 4; c++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 3; b++) assert_true(out[(c * 2 + a) * 3 + b] == v[(a * 3 + b) * 4 + c]);
    assert_int_equal(dp_tensor_reshape(ctx, p, 1, (int64_t[]){24}, &r), DP_ERR_ARG);
    assert_int_equal(dp_tensor_permute(ctx, t, (int[]){0, 0, 1}, &p), DP_ERR_ARG);
    /* slice axis 1 [1,3) */
    assert_int_equal(dp_tensor_slice(ctx, t, 1, 1, 3, &sl), DP_OK);
    assert_int_equal(dp_tensor_copy_to(sl, out, 16), DP_OK);
    assert_true(out[0] == 4.0f && out[4] == 8.0f && out[8] == 16.0f);
    assert_int_equal(dp_tensor_slice(ctx, t, 1, 2, 9, &sl), DP_ERR_ARG);
    assert_null(sl); /* a failed call leaves no half-made view */
    assert_int_equal(dp_tensor_slice(ctx, t, 1, 1, 3, &sl), DP_OK);
    assert_int_equal(dp_tensor_fill(sl, 7.0f), DP_OK);
    assert_true(dp_tensor_f32(t)[4] == 7.0f && dp_tensor_f32(t)[0] == 0.0f && dp_tensor_f32(t)[16] == 7.0f);
    dp_ctx_free(ctx);
}

static void test_rng(void **s) {
    (void)s;
    dp_rng a, b;
    dp_rng_seed(&a, 42);
    dp_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) assert_true(dp_rng_u64(&a) == dp_rng_u64(&b));
    double sum = 0, sq = 0;
    int n = 100000;
    for (int i = 0; i < n; i++) {
        float x = dp_rng_normal(&a);
        sum += x;
        sq += (double)x * x;
    }
    assert_true(sum / n < 0.02 && sum / n > -0.02);
    assert_true(sq / n > 0.97 && sq / n < 1.03);
    for (int i = 0; i < 1000; i++) {
        float u = dp_rng_uniform(&a);
        assert_true(u >= 0.0f && u < 1.0f);
        assert_true(dp_rng_below(&a, 7) < 7);
    }
    dp_rng_stream(&a, 1, 0);
    dp_rng_stream(&b, 1, 1);
    assert_true(dp_rng_u64(&a) != dp_rng_u64(&b));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names), cmocka_unit_test(test_null_handles), cmocka_unit_test(test_tensor_errors),
        cmocka_unit_test(test_views),        cmocka_unit_test(test_rng),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
