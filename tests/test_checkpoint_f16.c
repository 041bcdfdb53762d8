/* float16 storage in checkpoints: dp_f32_to_f16 / dp_f16_to_f32 against numpy's
 * astype(float16) (golden values, every half, every tie), dp_checkpoint_save_as(DP_F16)
 * and dp_checkpoint_load round trips (parameters and optimiser state), dp_checkpoint_convert
 * both ways, a truncated F16 file, NaN/Inf and out-of-range values. (A bulk comparison
 * with numpy through the CLI is tools/gan_f16_check.py.) */
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
#include "util/files.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})

static char dir[64];

static const char *in_dir(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* ------------------------------------------------------------ the conversions */

/* numpy 1.24: np.float32(x).astype(np.float16).view(np.uint16) */
static const struct {
    uint32_t f32;
    uint16_t f16;
} golden[] = {
    {0x00000000u, 0x0000u}, /* 0.0 */
    {0x80000000u, 0x8000u}, /* -0.0 */
    {0x3f800000u, 0x3c00u}, /* 1.0 */
    {0xbf800000u, 0xbc00u}, /* -1.0 */
    {0x3dcccccdu, 0x2e66u}, /* 0.1 */
    {0x3eaaaaabu, 0x3555u}, /* 1/3 */
    {0x477fe000u, 0x7bffu}, /* 65504, the largest half */
    {0x477fef00u, 0x7bffu}, /* 65519 */
    {0x477fefffu, 0x7bffu}, /* 65519.996 */
    {0x477ff000u, 0x7c00u}, /* 65520: the tie above 65504 rounds to Inf */
    {0xc77ff000u, 0xfc00u}, /* -65520 */
    {0x47c35000u, 0x7c00u}, /* 1e5 */
    {0x38800000u, 0x0400u}, /* 2^-14, the smallest normal half */
    {0x33800000u, 0x0001u}, /* 2^-24, the smallest subnormal */
    {0x33000000u, 0x0000u}, /* 2^-25: tie, to even (zero) */
    {0x33000001u, 0x0001u}, /* just above 2^-25 */
    {0x32800000u, 0x0000u}, /* 2^-26 */
    {0x33c00000u, 0x0002u}, /* 3 * 2^-25: tie, to even */
    {0x34200000u, 0x0002u}, /* 5 * 2^-25: tie, to even */
    {0x322bcc77u, 0x0000u}, /* 1e-8 */
    {0x387fda40u, 0x03ffu}, /* 6.1e-5: rounds to the largest subnormal */
    {0x3f802000u, 0x3c01u}, /* 1 + 2^-10 */
    {0x3f801000u, 0x3c00u}, /* 1 + 2^-11: tie, to even */
    {0x3f803000u, 0x3c02u}, /* 1 + 3 * 2^-11: tie, to even */
    {0x3f801800u, 0x3c01u}, /* 1 + 1.5 * 2^-11 */
    {0x45001000u, 0x6800u}, /* 2049: tie, to even */
    {0x45003000u, 0x6802u}, /* 2051: tie, to even */
    {0x40490fdbu, 0x4248u}, /* pi */
    {0xc02df854u, 0xc170u}, /* -e */
    {0x00000001u, 0x0000u}, /* the smallest float32 subnormal */
    {0x7f800000u, 0x7c00u}, /* Inf */
    {0xff800000u, 0xfc00u}, /* -Inf */
    {0x387fc000u, 0x03ffu}, /* 6.0975552e-5 */
    {0x7fc00000u, 0x7e00u}, /* NaN */
    {0xffc00000u, 0xfe00u}, /* -NaN */
    {0x7f800001u, 0x7c01u}, /* a NaN whose top payload bits are 0 stays a NaN */
    {0x7fa00000u, 0x7d00u}, /* a signalling NaN keeps its payload */
    {0x7fffe000u, 0x7fffu}, /* NaN, all payload bits */
};

static void golden_values(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        uint16_t h = dp_f32_to_f16(float_of(golden[i].f32));
        if (h != golden[i].f16) fail_msg("0x%08x: 0x%04x, numpy 0x%04x", golden[i].f32, h, golden[i].f16);
    }
    /* and back: exact values (numpy's astype(float32)) */
    assert_true(dp_f16_to_f32(0x7bffu) == 65504.0f);
    assert_true(dp_f16_to_f32(0x0001u) == 0x1p-24f);
    assert_true(dp_f16_to_f32(0x03ffu) == 1023 * 0x1p-24f);
    assert_true(dp_f16_to_f32(0x0400u) == 0x1p-14f);
    assert_true(dp_f16_to_f32(0x3555u) == 0.333251953125f);
    assert_int_equal(bits_of(dp_f16_to_f32(0x8000u)), 0x80000000u);
    assert_int_equal(bits_of(dp_f16_to_f32(0x7c00u)), 0x7f800000u);
    assert_int_equal(bits_of(dp_f16_to_f32(0xfc00u)), 0xff800000u);
    assert_int_equal(bits_of(dp_f16_to_f32(0x7e00u)), 0x7fc00000u);
    assert_int_equal(bits_of(dp_f16_to_f32(0x7c01u)), 0x7f802000u);
}

/* Every half widens exactly and narrows back to itself; halfway points round to the even neighbour,
 * anything nearer to one neighbour goes to it. */
static void every_half(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = dp_f16_to_f32((uint16_t)h);
        int nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
        assert_int_equal(isnan(f) != 0, nan);
        assert_int_equal(dp_f32_to_f16(f), h);
        if ((h & 0x7fffu) >= 0x7bffu) continue; /* the next one up is Inf/NaN */
        /* h and h+1 are adjacent finite halfs of the same sign (magnitude order) */
        double a = dp_f16_to_f32((uint16_t)h), b = dp_f16_to_f32((uint16_t)(h + 1));
        float mid = (float)((a + b) / 2); /* exact: 12 significant bits */
        assert_true((double)mid == (a + b) / 2);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        assert_int_equal(dp_f32_to_f16(mid), even);
        assert_int_equal(dp_f32_to_f16(nextafterf(mid, (float)a)), h);
        assert_int_equal(dp_f32_to_f16(nextafterf(mid, (float)b)), h + 1);
    }
    /* beyond the largest half: the tie at 65520 and above is Inf */
    assert_int_equal(dp_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bffu);
    assert_int_equal(dp_f32_to_f16(65520.0f), 0x7c00u);
    assert_int_equal(dp_f32_to_f16(3e38f), 0x7c00u);
    assert_int_equal(dp_f32_to_f16(-3e38f), 0xfc00u);
}

/* ------------------------------------------------------------ checkpoints */

typedef struct model {
    dp_ctx *ctx;
    dp_paramset *ps;
    dp_optim *opt;
} model;

static void model_make(model *m, int fill) {
    memset(m, 0, sizeof *m);
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 3}, &m->ctx), DP_OK);
    assert_int_equal(dp_paramset_new(m->ctx, &m->ps), DP_OK);
    dp_tensor *t;
    const dp_init n = {DP_INIT_NORMAL, 0, 1};
    assert_int_equal(dp_paramset_get_or_add(m->ps, "conv.weight", 4, SH(32, 16, 3, 3), 0, &n, &t), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(m->ps, "conv.bias", 1, SH(7), 0, &n, &t), DP_OK); /* odd: 14 bytes as F16 */
    assert_int_equal(dp_paramset_get_or_add(m->ps, "bn.running_var", 1, SH(5), DP_PARAM_BUFFER, &n, &t), DP_OK);
    assert_int_equal(dp_optim_new(m->ps, &(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 0.01f}, &m->opt), DP_OK);
    if (!fill) {
        for (int i = 0; i < dp_paramset_count(m->ps); i++) dp_tensor_fill(dp_paramset_at(m->ps, i), 0.0f);
        return;
    }
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < dp_paramset_count(m->ps); i++) {
            if (dp_paramset_is_buffer(m->ps, i)) continue;
            dp_tensor *p = dp_paramset_at(m->ps, i);
            float *g = dp_tensor_f32(dp_param_grad(p));
            for (int64_t j = 0; j < dp_tensor_numel(p); j++) g[j] = (float)sin(0.37 * (double)j + s + i);
        }
        assert_int_equal(dp_optim_step(m->opt), DP_OK);
    }
    /* values across F16's range: normal, subnormal, tiny (flushed), large but representable */
    float *w = dp_tensor_f32(dp_paramset_at(m->ps, 0));
    w[0] = 1e-6f, w[1] = -3e-8f, w[2] = 1e-9f, w[3] = 60000.0f, w[4] = -0.1f;
}

static void model_free(model *m) {
    dp_optim_free(m->opt);
    dp_paramset_free(m->ps);
    dp_ctx_free(m->ctx);
}

/* Every value of b (parameters and optimiser state) is a's rounded to F16 and widened back. */
static void expect_rounded(const model *a, const model *b) {
    for (int i = 0; i < dp_paramset_count(a->ps); i++) {
        const float *x = dp_tensor_f32(dp_paramset_at(a->ps, i)), *y = dp_tensor_f32(dp_paramset_at(b->ps, i));
        for (int64_t j = 0; j < dp_tensor_numel(dp_paramset_at(a->ps, i)); j++)
            assert_int_equal(bits_of(y[j]), bits_of(dp_f16_to_f32(dp_f32_to_f16(x[j]))));
    }
    for (int i = 0; i < dp_optim_state_count(a->opt); i++) {
        const char *na, *nb;
        dp_tensor *ta = dp_optim_state_at(a->opt, i, &na), *tb = dp_optim_state_at(b->opt, i, &nb);
        assert_string_equal(na, nb);
        for (int64_t j = 0; j < dp_tensor_numel(ta); j++)
            assert_int_equal(bits_of(dp_tensor_f32(tb)[j]), bits_of(dp_f16_to_f32(dp_f32_to_f16(dp_tensor_f32(ta)[j]))));
    }
    assert_int_equal(dp_optim_steps(b->opt), dp_optim_steps(a->opt));
}

static void round_trip(void **state) {
    (void)state;
    model a, b;
    model_make(&a, 1);
    model_make(&b, 0);
    const char *p32 = in_dir("m32.safetensors"), *p16 = in_dir("m16.safetensors");
    const char *extra[] = {"note", "f16", NULL};
    assert_int_equal(dp_checkpoint_save(p32, a.ps, a.opt, "test", extra), DP_OK);
    assert_int_equal(dp_checkpoint_save_as(p16, a.ps, a.opt, "test", extra, DP_F16), DP_OK);
    long s32 = file_size(p32), s16 = file_size(p16);
    assert_true(s16 < s32 * 6 / 10); /* the data halves; the header stays */
    char buf[64];
    assert_int_equal(dp_checkpoint_meta(a.ctx, p16, "note", buf, sizeof buf), DP_OK);
    assert_string_equal(buf, "f16");
    assert_int_equal(dp_checkpoint_load(p16, b.ps, b.opt), DP_OK);
    expect_rounded(&a, &b);
    float *w = dp_tensor_f32(dp_paramset_at(b.ps, 0));
    assert_true(w[2] == 0.0f);                      /* 1e-9 is below half of F16's smallest subnormal */
    assert_true(w[1] != 0.0f && fabsf(w[1]) < 1e-7f); /* -3e-8: a subnormal */
    assert_true(w[3] == 60000.0f);                  /* representable exactly */
    /* F32 -> F16 by conversion is the same file content as saving as F16 */
    const char *c16 = in_dir("c16.safetensors"), *c32 = in_dir("c32.safetensors");
    dp_convert_info ci;
    assert_int_equal(dp_checkpoint_convert(a.ctx, p32, c16, DP_F16, &ci), DP_OK);
    assert_int_equal(ci.tensors, dp_paramset_count(a.ps) + dp_optim_state_count(a.opt));
    assert_true(ci.flushed >= 1 && ci.subnormal >= 1);
    assert_true(ci.max_rel_err > 0 && ci.max_rel_err <= 0x1p-11);
    model_free(&b);
    model_make(&b, 0);
    assert_int_equal(dp_checkpoint_load(c16, b.ps, b.opt), DP_OK);
    expect_rounded(&a, &b);
    assert_int_equal(dp_checkpoint_meta(a.ctx, c16, "note", buf, sizeof buf), DP_OK);
    /* F16 -> F32 widens exactly: the same values, stored as F32 */
    assert_int_equal(dp_checkpoint_convert(a.ctx, c16, c32, DP_F32, &ci), DP_OK);
    assert_true(ci.max_abs_err == 0);
    assert_true(labs(file_size(c32) - s32) < 64); /* the same data; the header lists the tensors in name order */
    model_free(&b);
    model_make(&b, 0);
    assert_int_equal(dp_checkpoint_load(c32, b.ps, b.opt), DP_OK);
    expect_rounded(&a, &b);
    /* in place */
    assert_int_equal(dp_checkpoint_convert(a.ctx, c32, c32, DP_F16, NULL), DP_OK);
    assert_true(file_size(c32) < s32 * 6 / 10);
    model_free(&a);
    model_free(&b);
}

/* A truncated F16 file fails with DP_ERR_FORMAT at every length and changes nothing. */
static void truncated(void **state) {
    (void)state;
    model a, b;
    model_make(&a, 1);
    model_make(&b, 0);
    char p[512], q[512], never[512];
    snprintf(p, sizeof p, "%s", in_dir("t16.safetensors"));
    snprintf(q, sizeof q, "%s", in_dir("t16-cut.safetensors"));
    snprintf(never, sizeof never, "%s", in_dir("never.safetensors"));
    assert_int_equal(dp_checkpoint_save_as(p, a.ps, NULL, "test", NULL, DP_F16), DP_OK);
    size_t n;
    unsigned char *bytes = dp_test_read_file(p, &n);
    assert_non_null(bytes);
    /* every length through the header and the start of the data, then every 97th byte (7th / 397th quick) */
    int quick = getenv("DP_TEST_QUICK") != NULL;
    for (size_t len = 0; len < n; len += len < 1200 ? (quick ? 7 : 1) : (quick ? 397 : 97)) {
        assert_int_equal(dp_test_write_file(q, bytes, len), 0);
        dp_status s = dp_checkpoint_load(q, b.ps, NULL);
        if (s != DP_ERR_FORMAT) fail_msg("length %zu of %zu: %s", len, n, dp_ctx_error(b.ctx));
        s = dp_checkpoint_convert(b.ctx, q, never, DP_F32, NULL);
        if (s != DP_ERR_FORMAT) fail_msg("convert, length %zu of %zu: %s", len, n, dp_ctx_error(b.ctx));
        if (file_size(never) != -1) fail_msg("length %zu: a file was left", len);
    }
    for (int i = 0; i < dp_paramset_count(b.ps); i++)
        for (int64_t j = 0; j < dp_tensor_numel(dp_paramset_at(b.ps, i)); j++)
            assert_true(dp_tensor_f32(dp_paramset_at(b.ps, i))[j] == 0.0f);
    free(bytes);
    unlink(q);
    model_free(&a);
    model_free(&b);
}

/* A safetensors file with one F16 tensor "t" [2] holding the given halfs. */
static void write_f16(const char *path, uint16_t h0, uint16_t h1) {
    const char *hdr = "{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    size_t hl = strlen(hdr);
    unsigned char b[256] = {(unsigned char)hl};
    memcpy(b + 8, hdr, hl);
    unsigned char data[4] = {(unsigned char)h0, (unsigned char)(h0 >> 8), (unsigned char)h1, (unsigned char)(h1 >> 8)};
    memcpy(b + 8 + hl, data, 4);
    assert_int_equal(dp_test_write_file(path, b, 8 + hl + 4), 0);
}

/* A context and a paramset holding one tensor "t" of n values, all v. */
static dp_tensor *one_tensor(dp_ctx **ctx, dp_paramset **ps, int64_t n, float v) {
    dp_tensor *t = NULL;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1}, ctx), DP_OK);
    assert_int_equal(dp_paramset_new(*ctx, ps), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(*ps, "t", 1, SH(n), 0, &(dp_init){DP_INIT_CONSTANT, v, 0}, &t), DP_OK);
    return t;
}

static void non_finite_and_range(void **state) {
    (void)state;
    dp_ctx *ctx;
    dp_paramset *ps;
    dp_tensor *t = one_tensor(&ctx, &ps, 2, 5.0f);
    const char *p = in_dir("nf.safetensors");
    /* reading: little-endian halfs; Inf and NaN are refused as for F32 */
    write_f16(p, 0x3c00u, 0xc000u);
    assert_int_equal(dp_checkpoint_load(p, ps, NULL), DP_OK);
    assert_true(dp_tensor_f32(t)[0] == 1.0f && dp_tensor_f32(t)[1] == -2.0f);
    write_f16(p, 0x3c00u, 0x7c00u);
    assert_int_equal(dp_checkpoint_load(p, ps, NULL), DP_ERR_NUMERIC);
    assert_non_null(strstr(dp_ctx_error(ctx), "non-finite value (Inf) at element 1"));
    write_f16(p, 0xfe00u, 0x0000u);
    assert_int_equal(dp_checkpoint_load(p, ps, NULL), DP_ERR_NUMERIC);
    assert_non_null(strstr(dp_ctx_error(ctx), "NaN"));
    assert_true(dp_tensor_f32(t)[0] == 1.0f); /* unchanged by the failed loads */
    /* writing: a finite value F16 cannot hold is refused, the old file kept, no temporary left */
    write_f16(p, 0x3c00u, 0xc000u);
    long before = file_size(p);
    dp_tensor_f32(t)[1] = 70000.0f;
    assert_int_equal(dp_checkpoint_save_as(p, ps, NULL, NULL, NULL, DP_F16), DP_ERR_NUMERIC);
    assert_non_null(strstr(dp_ctx_error(ctx), "beyond float16's range"));
    assert_int_equal(file_size(p), before);
    assert_int_equal(dp_checkpoint_save_as(p, ps, NULL, NULL, NULL, DP_F32), DP_OK); /* F32 holds it */
    assert_int_equal(dp_checkpoint_convert(ctx, p, in_dir("nf16.safetensors"), DP_F16, NULL), DP_ERR_NUMERIC);
    assert_int_equal(file_size(in_dir("nf16.safetensors")), -1);
    dp_tensor_f32(t)[1] = 65504.0f; /* the largest half is fine */
    assert_int_equal(dp_checkpoint_save_as(p, ps, NULL, NULL, NULL, DP_F16), DP_OK);
    /* storage types other than F32/F16 */
    assert_int_equal(dp_checkpoint_save_as(p, ps, NULL, NULL, NULL, DP_BF16), DP_ERR_ARG);
    assert_int_equal(dp_checkpoint_convert(ctx, p, p, DP_I8, NULL), DP_ERR_ARG);
    assert_int_equal(dp_checkpoint_convert(NULL, p, p, DP_F16, NULL), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_convert(ctx, NULL, p, DP_F16, NULL), DP_ERR_NULL);
    /* a file with a tensor of another dtype cannot be converted */
    const char *hdr = "{\"x\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    unsigned char b[256] = {(unsigned char)strlen(hdr)};
    memcpy(b + 8, hdr, strlen(hdr));
    assert_int_equal(dp_test_write_file(p, b, 8 + strlen(hdr) + 4), 0);
    assert_int_equal(dp_checkpoint_convert(ctx, p, in_dir("i32.safetensors"), DP_F16, NULL), DP_ERR_DTYPE);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

/* dp_limits.max_tensor_bytes counts the bytes in the file; widening F16 to an F32 file is checked too. */
static void limits(void **state) {
    (void)state;
    dp_ctx *ctx;
    dp_paramset *ps;
    one_tensor(&ctx, &ps, 6, 0.5f);
    const char *p = in_dir("lim16.safetensors"), *q = in_dir("lim32.safetensors");
    assert_int_equal(dp_checkpoint_save_as(p, ps, NULL, NULL, NULL, DP_F16), DP_OK); /* 12 bytes of data */
    dp_limits l;
    dp_ctx_limits(ctx, &l);
    l.max_tensor_bytes = 16;
    assert_int_equal(dp_ctx_set_limits(ctx, &l), DP_OK);
    assert_int_equal(dp_checkpoint_load(p, ps, NULL), DP_OK);
    assert_int_equal(dp_checkpoint_convert(ctx, p, q, DP_F32, NULL), DP_ERR_NOMEM); /* 24 bytes as F32 */
    assert_non_null(strstr(dp_ctx_error(ctx), "max_tensor_bytes"));
    assert_int_equal(file_size(q), -1);
    l.max_tensor_bytes = 8;
    assert_int_equal(dp_ctx_set_limits(ctx, &l), DP_OK);
    assert_int_equal(dp_checkpoint_load(p, ps, NULL), DP_ERR_NOMEM);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

static int make_dir(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/doppel-f16-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    (void)state;
    dp_test_remove_dir(dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(golden_values),        cmocka_unit_test(every_half),
        cmocka_unit_test(round_trip),           cmocka_unit_test(truncated),
        cmocka_unit_test(non_finite_and_range), cmocka_unit_test(limits),
    };
    return cmocka_run_group_tests_name("checkpoint_f16", tests, make_dir, remove_dir);
}
