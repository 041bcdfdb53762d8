/* Checkpoints: round trip (values, metadata, optimiser state, step), the file
 * layout, truncation at every byte, header corruption, wrong shapes and dtypes,
 * missing tensors, absurd header lengths, unreadable paths, and failed saves
 * that must leave the previous file intact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "doppel/doppel.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})

static char dir[64]; /* a fresh folder for this run */

static const char *in_dir(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    if (strlen(dir) + strlen(name) + 2 > sizeof buf[k]) return NULL;
    memcpy(buf[k], dir, strlen(dir));
    buf[k][strlen(dir)] = '/';
    strcpy(buf[k] + strlen(dir) + 1, name);
    return buf[k];
}

/* ------------------------------------------------------------ files */

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A safetensors file with the given header text and data_len zero bytes of data. */
static void write_st(const char *path, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *b = calloc(1, 8 + hl + data_len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    write_file(path, b, 8 + hl + data_len);
    free(b);
}

/* Replaces the first occurrence of `from` in the file by `to` (same length). */
static void patch_file(const char *src, const char *dst, const char *from, const char *to) {
    size_t n;
    unsigned char *b = read_file(src, &n);
    assert_non_null(b);
    assert_int_equal(strlen(from), strlen(to));
    size_t fl = strlen(from);
    size_t i = 0;
    while (i + fl <= n && memcmp(b + i, from, fl)) i++;
    assert_true(i + fl <= n);
    memcpy(b + i, to, fl);
    write_file(dst, b, n);
    free(b);
}

static int tmp_files_left(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ a model */

typedef struct model {
    dp_ctx *ctx;
    dp_paramset *ps;
    dp_optim *opt;
} model;

/* conv1 [8,3,k,k] + bias, a batch-norm buffer, fc [2,5]; Adam trained `steps` steps. */
static void model_make(model *m, uint64_t seed, int k, int with_fc, int steps) {
    memset(m, 0, sizeof *m);
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = seed}, &m->ctx), DP_OK);
    assert_int_equal(dp_paramset_new(m->ctx, &m->ps), DP_OK);
    dp_tensor *t;
    const dp_init n = {DP_INIT_NORMAL, 0, 1};
    assert_int_equal(dp_paramset_get_or_add(m->ps, "conv1.weight", 4, SH(8, 3, k, k), 0, &n, &t), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(m->ps, "conv1.bias", 1, SH(8), 0, &n, &t), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(m->ps, "bn1.running_mean", 1, SH(8), DP_PARAM_BUFFER, &n, &t), DP_OK);
    if (with_fc) assert_int_equal(dp_paramset_get_or_add(m->ps, "fc.weight", 2, SH(2, 5), 0, &n, &t), DP_OK);
    for (int i = 0; i < dp_paramset_count(m->ps); i++)
        if (!dp_paramset_is_buffer(m->ps, i)) assert_non_null(dp_param_grad(dp_paramset_at(m->ps, i)));
    dp_optim_opts o = {.kind = DP_OPTIM_ADAM, .lr = 0.01f, .weight_decay = 0.001f,
                       .schedule = {.kind = DP_LR_COSINE, .warmup_steps = 2, .total_steps = 100, .min_lr = 0.001f}};
    assert_int_equal(dp_optim_new(m->ps, &o, &m->opt), DP_OK);
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < dp_paramset_count(m->ps); i++) {
            dp_tensor *p = dp_paramset_at(m->ps, i);
            if (dp_paramset_is_buffer(m->ps, i)) continue;
            float *g = dp_tensor_f32(dp_param_grad(p));
            for (int64_t j = 0; j < dp_tensor_numel(p); j++) g[j] = (float)sin(0.37 * (double)j + s + i);
        }
        assert_int_equal(dp_optim_step(m->opt), DP_OK);
    }
}

static void model_free(model *m) {
    dp_optim_free(m->opt);
    dp_paramset_free(m->ps);
    dp_ctx_free(m->ctx);
}

/* Every value of the model and its optimiser, to check a failed load changed nothing. */
typedef struct snap {
    float *v;
    size_t n;
    int64_t steps;
} snap;

static size_t model_floats(model *m) {
    size_t n = 0;
    for (int i = 0; i < dp_paramset_count(m->ps); i++) n += (size_t)dp_tensor_numel(dp_paramset_at(m->ps, i));
    for (int i = 0; i < dp_optim_state_count(m->opt); i++) n += (size_t)dp_tensor_numel(dp_optim_state_at(m->opt, i, NULL));
    return n;
}

static snap take(model *m) {
    snap s = {malloc(model_floats(m) * sizeof(float)), 0, dp_optim_steps(m->opt)};
    for (int i = 0; i < dp_paramset_count(m->ps); i++) {
        dp_tensor *t = dp_paramset_at(m->ps, i);
        memcpy(s.v + s.n, dp_tensor_f32(t), (size_t)dp_tensor_numel(t) * sizeof(float));
        s.n += (size_t)dp_tensor_numel(t);
    }
    for (int i = 0; i < dp_optim_state_count(m->opt); i++) {
        dp_tensor *t = dp_optim_state_at(m->opt, i, NULL);
        memcpy(s.v + s.n, dp_tensor_f32(t), (size_t)dp_tensor_numel(t) * sizeof(float));
        s.n += (size_t)dp_tensor_numel(t);
    }
    return s;
}

static int same(model *m, const snap *a) {
    snap b = take(m);
    int eq = a->n == b.n && a->steps == b.steps && !memcmp(a->v, b.v, a->n * sizeof(float));
    free(b.v);
    return eq;
}

static const char *meta(dp_ctx *ctx, const char *path, const char *key) {
    static char buf[1024];
    dp_status s = dp_checkpoint_meta(ctx, path, key, buf, sizeof buf);
    return s == DP_OK ? buf : NULL;
}

/* ------------------------------------------------------------ tests */

static void round_trip(void **state) {
    (void)state;
    model a, b;
    model_make(&a, 1, 3, 1, 3);
    model_make(&b, 2, 3, 1, 0);
    const char *path = in_dir("rt.safetensors");
    const char *extra[] = {"dataset", "ff++ c23", "epoch", "3", NULL};
    assert_int_equal(dp_checkpoint_save(path, a.ps, a.opt, "meso4", extra), DP_OK);
    assert_int_equal(tmp_files_left(), 0);

    snap sa = take(&a);
    assert_false(same(&b, &sa));
    assert_int_equal(dp_checkpoint_load(path, b.ps, b.opt), DP_OK);
    assert_true(same(&b, &sa)); /* values, buffers, moments and the step count */
    assert_int_equal(dp_optim_steps(b.opt), 3);
    assert_float_equal(dp_optim_lr(b.opt), dp_optim_lr(a.opt), 0);

    /* Metadata. */
    assert_string_equal(meta(b.ctx, path, "format"), "doppel");
    assert_string_equal(meta(b.ctx, path, "doppel.version"), DP_VERSION_STRING);
    assert_string_equal(meta(b.ctx, path, "doppel.arch"), "meso4");
    assert_string_equal(meta(b.ctx, path, "doppel.step"), "3");
    assert_string_equal(meta(b.ctx, path, "dataset"), "ff++ c23");
    assert_string_equal(meta(b.ctx, path, "epoch"), "3");
    const char *oj = meta(b.ctx, path, "doppel.optim");
    assert_non_null(oj);
    assert_non_null(strstr(oj, "\"kind\":\"adam\""));
    assert_non_null(strstr(oj, "\"lr\":0.01,"));
    assert_non_null(strstr(oj, "\"kind\":\"cosine\""));
    char small[4];
    assert_int_equal(dp_checkpoint_meta(b.ctx, path, "nope", small, sizeof small), DP_ERR_NOT_FOUND);
    assert_non_null(strstr(dp_ctx_error(b.ctx), "nope"));
    assert_int_equal(dp_checkpoint_meta(b.ctx, path, "dataset", small, sizeof small), DP_ERR_ARG);

    /* Training goes on identically from the restored state. */
    for (int i = 0; i < dp_paramset_count(a.ps); i++) {
        if (dp_paramset_is_buffer(a.ps, i)) continue;
        dp_tensor_fill(dp_param_grad(dp_paramset_at(a.ps, i)), 0.5f);
        dp_tensor_fill(dp_param_grad(dp_paramset_at(b.ps, i)), 0.5f);
    }
    assert_int_equal(dp_optim_step(a.opt), DP_OK);
    assert_int_equal(dp_optim_step(b.opt), DP_OK);
    free(sa.v);
    sa = take(&a);
    assert_true(same(&b, &sa));
    free(sa.v);

    /* Without an optimiser: no optimiser tensors, step 0, no arch. */
    const char *p2 = in_dir("noopt.safetensors");
    assert_int_equal(dp_checkpoint_save(p2, a.ps, NULL, NULL, NULL), DP_OK);
    assert_string_equal(meta(b.ctx, p2, "doppel.step"), "0");
    assert_null(meta(b.ctx, p2, "doppel.arch"));
    assert_null(meta(b.ctx, p2, "doppel.optim"));
    assert_int_equal(dp_checkpoint_load(p2, b.ps, NULL), DP_OK);
    sa = take(&b);
    assert_int_equal(dp_checkpoint_load(p2, b.ps, b.opt), DP_ERR_NOT_FOUND);
    assert_non_null(strstr(dp_ctx_error(b.ctx), "'optim.conv1.weight.exp_avg'"));
    assert_true(same(&b, &sa));
    free(sa.v);

    /* Saving over an existing file replaces it. */
    assert_int_equal(dp_checkpoint_save(path, a.ps, NULL, "other", NULL), DP_OK);
    assert_string_equal(meta(b.ctx, path, "doppel.arch"), "other");
    model_free(&a);
    model_free(&b);
}

/* The bytes follow the safetensors layout other tools read. */
static void layout(void **state) {
    (void)state;
    model a;
    model_make(&a, 1, 3, 1, 1);
    const char *path = in_dir("layout.safetensors");
    assert_int_equal(dp_checkpoint_save(path, a.ps, a.opt, "x", NULL), DP_OK);
    size_t n;
    unsigned char *b = read_file(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    assert_int_equal(hl % 8, 0); /* data 8-byte aligned */
    assert_int_equal(b[8], '{');
    size_t floats = model_floats(&a);
    assert_int_equal(n, 8 + hl + floats * 4);
    /* The first tensor is the first paramset tensor, stored little-endian at offset 0. */
    char *h = malloc(hl + 1);
    memcpy(h, b + 8, hl);
    h[hl] = 0;
    assert_non_null(strstr(h, "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[8,3,3,3],\"data_offsets\":[0,864]}"));
    assert_non_null(strstr(h, "\"optim.fc.weight.exp_avg_sq\""));
    assert_true(strncmp(h, "{\"__metadata__\":{\"format\":\"doppel\"", 34) == 0);
    float first;
    memcpy(&first, b + 8 + hl, 4);
    assert_true(first == dp_tensor_f32(dp_paramset_at(a.ps, 0))[0]);
    free(h);
    free(b);
    model_free(&a);
}

static void truncated_everywhere(void **state) {
    (void)state;
    model a, b;
    model_make(&a, 1, 3, 1, 2);
    model_make(&b, 2, 3, 1, 1);
    const char *path = in_dir("full.safetensors"), *cut = in_dir("cut.safetensors");
    assert_int_equal(dp_checkpoint_save(path, a.ps, a.opt, "meso4", NULL), DP_OK);
    size_t n;
    unsigned char *bytes = read_file(path, &n);
    snap sb = take(&b);
    char buf[64];
    for (size_t k = 0; k < n; k++) {
        write_file(cut, bytes, k);
        dp_status s = dp_checkpoint_load(cut, b.ps, b.opt);
        if (s != DP_ERR_FORMAT) {
            print_error("cut at %zu of %zu: %s (%s)\n", k, n, dp_status_name(s), dp_ctx_error(b.ctx));
            fail();
        }
        assert_non_null(strstr(dp_ctx_error(b.ctx), cut)); /* the message names the file */
        assert_int_equal(dp_checkpoint_meta(b.ctx, cut, "format", buf, sizeof buf), DP_ERR_FORMAT);
        if (k % 97 == 0) assert_true(same(&b, &sb));
    }
    assert_true(same(&b, &sb));
    write_file(cut, bytes, n); /* the whole file still loads */
    assert_int_equal(dp_checkpoint_load(cut, b.ps, b.opt), DP_OK);
    free(sb.v);
    free(bytes);
    model_free(&a);
    model_free(&b);
}

/* Every header byte replaced by a few troublesome values: never a crash, and a
 * failed load changes nothing. */
static void corrupt_bytes(void **state) {
    (void)state;
    model a, b;
    model_make(&a, 1, 3, 0, 1);
    model_make(&b, 2, 3, 0, 1);
    const char *path = in_dir("c.safetensors"), *bad = in_dir("cbad.safetensors");
    assert_int_equal(dp_checkpoint_save(path, a.ps, a.opt, "x", NULL), DP_OK);
    size_t n;
    unsigned char *bytes = read_file(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | bytes[i];
    const unsigned char vals[] = {'"', '}', '9', 0, 0xff, '-'};
    int failed = 0;
    for (size_t k = 0; k < 8 + hl; k++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            if (bytes[k] == vals[v]) continue;
            unsigned char old = bytes[k];
            bytes[k] = vals[v];
            write_file(bad, bytes, n);
            bytes[k] = old;
            snap sb = take(&b);
            if (dp_checkpoint_load(bad, b.ps, b.opt) != DP_OK) {
                failed++;
                assert_true(same(&b, &sb));
                assert_true(strlen(dp_ctx_error(b.ctx)) > 0);
            }
            free(sb.v);
        }
    }
    assert_true(failed > 0);
    free(bytes);
    model_free(&a);
    model_free(&b);
}

static void expect_load(model *m, const char *path, dp_status want, const char *needle) {
    snap s = take(m);
    dp_status got = dp_checkpoint_load(path, m->ps, m->opt);
    if (got != want || (needle && !strstr(dp_ctx_error(m->ctx), needle))) {
        print_error("%s: got %s (%s), want %s with '%s'\n", path, dp_status_name(got), dp_ctx_error(m->ctx),
                    dp_status_name(want), needle ? needle : "");
        fail();
    }
    assert_true(same(m, &s));
    free(s.v);
}

static void corrupt_headers(void **state) {
    (void)state;
    model m;
    memset(&m, 0, sizeof m);
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1}, &m.ctx), DP_OK);
    assert_int_equal(dp_paramset_new(m.ctx, &m.ps), DP_OK);
    dp_tensor *t;
    assert_int_equal(dp_paramset_get_or_add(m.ps, "t", 1, SH(2), 0, &(dp_init){DP_INIT_CONSTANT, 5, 0}, &t), DP_OK);
    assert_int_equal(dp_optim_new(m.ps, &(dp_optim_opts){.kind = DP_OPTIM_SGD, .lr = 0.1f}, &m.opt), DP_OK);
    const char *p = in_dir("h.safetensors");
    static const struct {
        const char *header;
        size_t data;
        dp_status want;
        const char *needle;
    } cases[] = {
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DP_OK, NULL},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}    ", 8, DP_OK, NULL}, /* padding */
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, DP_ERR_FORMAT, "not valid JSON"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, DP_ERR_FORMAT, "after the JSON"},
        {"[1,2]", 8, DP_ERR_FORMAT, "not a JSON object"},
        {"{\"t\":[0,8]}", 8, DP_ERR_FORMAT, "'t'"},
        {"{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DP_ERR_FORMAT, "'t'"},
        {"{\"t\":{\"dtype\":\"Q32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DP_ERR_FORMAT, "unknown dtype"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9]}}", 9, DP_ERR_FORMAT, "need 8"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, DP_ERR_FORMAT, "truncated"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, DP_ERR_FORMAT, "end before"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, DP_ERR_FORMAT, "non-negative"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8.5]}}", 9, DP_ERR_FORMAT, "non-negative"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16, DP_ERR_FORMAT, "pair"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, DP_ERR_FORMAT, "shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, DP_ERR_FORMAT, "need"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, DP_ERR_FORMAT, "shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, DP_ERR_FORMAT, "overlap"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16, DP_ERR_FORMAT, "twice"},
        {"{\"__metadata__\":{\"a\":1},\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DP_ERR_FORMAT,
         "'a'"},
        {"{\"__metadata__\":[],\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DP_ERR_FORMAT, "metadata"},
        /* Right structure, wrong content for this model. */
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, DP_ERR_DTYPE, "'t' is BF16"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]}}", 8, DP_ERR_SHAPE, "[1,2] in the file"},
        {"{\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DP_ERR_NOT_FOUND, "'t' is missing"},
        /* Extra tensors (any dtype) and gaps are fine. */
        {"{\"x\":{\"dtype\":\"BF16\",\"shape\":[3,1],\"data_offsets\":[0,6]},"
         "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16, DP_OK, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(p, cases[i].header, cases[i].data);
        dp_ctx_clear_error(m.ctx);
        /* SGD without momentum has no state: these tests are about tensors. */
        expect_load(&m, p, cases[i].want == DP_OK ? DP_ERR_FORMAT : cases[i].want,
                    cases[i].want == DP_OK ? "doppel.step" : cases[i].needle);
        dp_optim *keep = m.opt;
        m.opt = NULL;
        if (cases[i].want == DP_OK) {
            assert_int_equal(dp_checkpoint_load(p, m.ps, NULL), DP_OK);
            assert_true(dp_tensor_f32(t)[0] == 0.0f); /* the zero data was loaded */
            dp_tensor_fill(t, 5.0f);
        } else {
            expect_load(&m, p, cases[i].want, cases[i].needle);
        }
        m.opt = keep;
    }

    /* Header lengths: absurd, zero, bigger than the file. */
    unsigned char ff[16];
    memset(ff, 0xff, sizeof ff);
    write_file(p, ff, sizeof ff);
    expect_load(&m, p, DP_ERR_FORMAT, "header length");
    const uint64_t lens[] = {0, 1, 100000001ull, 4096};
    for (size_t i = 0; i < 4; i++) {
        unsigned char b[64] = {0};
        for (int k = 0; k < 8; k++) b[k] = (unsigned char)(lens[i] >> (8 * k));
        memcpy(b + 8, "{}", 2);
        write_file(p, b, sizeof b);
        expect_load(&m, p, DP_ERR_FORMAT, p);
    }
    write_file(p, "", 0);
    expect_load(&m, p, DP_ERR_FORMAT, "too short");
    model_free(&m);
}

/* Changes made to a real checkpoint: bad step metadata, wrong dtype. */
static void patched_checkpoints(void **state) {
    (void)state;
    model a, b;
    model_make(&a, 1, 3, 1, 3);
    model_make(&b, 2, 3, 1, 1);
    const char *path = in_dir("p.safetensors"), *bad = in_dir("pbad.safetensors");
    assert_int_equal(dp_checkpoint_save(path, a.ps, a.opt, NULL, NULL), DP_OK);
    patch_file(path, bad, "\"doppel.step\":\"3\"", "\"doppel.step\":\"x\"");
    expect_load(&b, bad, DP_ERR_FORMAT, "doppel.step");
    patch_file(path, bad, "\"doppel.step\":\"3\"", "\"doppel.stop\":\"3\"");
    expect_load(&b, bad, DP_ERR_FORMAT, "doppel.step");
    patch_file(path, bad, "\"doppel.step\":\"3\"", "\"doppel.step\":\"-\"");
    expect_load(&b, bad, DP_ERR_FORMAT, "doppel.step");
    patch_file(path, bad, "\"dtype\":\"F32\"", "\"dtype\":\"I32\"");
    expect_load(&b, bad, DP_ERR_DTYPE, "'conv1.weight' is I32 in the file");
    model_free(&a);
    model_free(&b);
}

static void wrong_shape_and_missing(void **state) {
    (void)state;
    model big, m, nofc;
    model_make(&big, 1, 5, 1, 1);
    model_make(&m, 2, 3, 1, 1);
    model_make(&nofc, 3, 3, 0, 1);
    const char *p = in_dir("model.st");
    assert_int_equal(dp_checkpoint_save(p, big.ps, big.opt, NULL, NULL), DP_OK);
    char want[512];
    snprintf(want, sizeof want, "%s: tensor 'conv1.weight' has shape [8,3,5,5] in the file, the model expects [8,3,3,3]", p);
    expect_load(&m, p, DP_ERR_SHAPE, want);
    assert_string_equal(dp_ctx_error(m.ctx), want);

    /* A tensor the model has and the file lacks. */
    assert_int_equal(dp_checkpoint_save(p, nofc.ps, nofc.opt, NULL, NULL), DP_OK);
    expect_load(&m, p, DP_ERR_NOT_FOUND, "'fc.weight' is missing");
    /* The other way round the extra tensors are ignored. */
    assert_int_equal(dp_checkpoint_save(p, m.ps, m.opt, NULL, NULL), DP_OK);
    assert_int_equal(dp_checkpoint_load(p, nofc.ps, nofc.opt), DP_OK);
    assert_true(dp_tensor_f32(dp_paramset_find(nofc.ps, "conv1.bias"))[3] ==
                dp_tensor_f32(dp_paramset_find(m.ps, "conv1.bias"))[3]);
    model_free(&big);
    model_free(&m);
    model_free(&nofc);
}

static void unreadable_paths(void **state) {
    (void)state;
    model m;
    model_make(&m, 1, 3, 1, 0);
    expect_load(&m, in_dir("does-not-exist.safetensors"), DP_ERR_IO, "does-not-exist");
    expect_load(&m, dir, DP_ERR_IO, "not a regular file");
    char buf[8];
    assert_int_equal(dp_checkpoint_meta(m.ctx, in_dir("nope"), "format", buf, sizeof buf), DP_ERR_IO);
    model_free(&m);
}

static void failed_save_keeps_old_file(void **state) {
    (void)state;
    model a, b;
    model_make(&a, 1, 3, 1, 2);
    model_make(&b, 2, 3, 1, 2);
    const char *path = in_dir("keep.safetensors");
    assert_int_equal(dp_checkpoint_save(path, a.ps, a.opt, "first", NULL), DP_OK);
    size_t n0, n1;
    unsigned char *before = read_file(path, &n0);

    /* 1. A folder that does not exist: nothing is created. */
    assert_int_equal(dp_checkpoint_save(in_dir("no/such/dir/x.safetensors"), b.ps, b.opt, NULL, NULL), DP_ERR_IO);
    assert_non_null(strstr(dp_ctx_error(b.ctx), "no/such/dir"));

    /* 2. The temp file is written, then the rename fails (the target is a folder). */
    const char *sub = in_dir("a-folder");
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(dp_checkpoint_save(sub, b.ps, b.opt, NULL, NULL), DP_ERR_IO);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(tmp_files_left(), 0);
    rmdir(sub);

    /* 3. The disk "fills up" half-way through the data (a file size limit works as root too). */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 1000;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    dp_status s = dp_checkpoint_save(path, b.ps, b.opt, "second", NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(s, DP_ERR_IO);
    assert_non_null(strstr(dp_ctx_error(b.ctx), "cannot write"));
    assert_int_equal(tmp_files_left(), 0);
    unsigned char *after = read_file(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(after);
    assert_string_equal(meta(b.ctx, path, "doppel.arch"), "first");

    /* 4. Refused before any file is touched. */
    const char *reserved[] = {"doppel.step", "9", NULL};
    const char *novalue[] = {"k", NULL};
    const char *twice[] = {"k", "1", "k", "2", NULL};
    assert_int_equal(dp_checkpoint_save(path, b.ps, b.opt, NULL, reserved), DP_ERR_ARG);
    assert_int_equal(dp_checkpoint_save(path, b.ps, b.opt, NULL, novalue), DP_ERR_ARG);
    assert_int_equal(dp_checkpoint_save(path, b.ps, b.opt, NULL, twice), DP_ERR_ARG);
    assert_int_equal(dp_checkpoint_save(path, b.ps, a.opt, NULL, NULL), DP_ERR_ARG); /* another model's optimiser */
    assert_non_null(strstr(dp_ctx_error(b.ctx), "another paramset"));
    assert_int_equal(dp_checkpoint_load(path, b.ps, a.opt), DP_ERR_ARG);
    after = read_file(path, &n1);
    assert_memory_equal(before, after, n0);
    assert_int_equal(tmp_files_left(), 0);
    free(after);
    free(before);
    model_free(&a);
    model_free(&b);
}

static void null_handles(void **state) {
    (void)state;
    model m;
    model_make(&m, 1, 3, 1, 0);
    const char *p = in_dir("null.safetensors");
    char buf[16];
    assert_int_equal(dp_checkpoint_save(p, NULL, NULL, NULL, NULL), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_save(NULL, m.ps, NULL, NULL, NULL), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_save("", m.ps, NULL, NULL, NULL), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_load(p, NULL, NULL), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_load(NULL, m.ps, NULL), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_meta(NULL, p, "format", buf, sizeof buf), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_meta(m.ctx, NULL, "format", buf, sizeof buf), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_meta(m.ctx, p, NULL, buf, sizeof buf), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_meta(m.ctx, p, "format", NULL, 4), DP_ERR_NULL);
    assert_int_equal(dp_checkpoint_meta(m.ctx, p, "format", buf, 0), DP_ERR_ARG);
    model_free(&m);
}

static int make_dir(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/doppel-ckpt-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    (void)state;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(in_dir(e->d_name));
    if (d) closedir(d);
    rmdir(dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(layout),
        cmocka_unit_test(truncated_everywhere),
        cmocka_unit_test(corrupt_bytes),
        cmocka_unit_test(corrupt_headers),
        cmocka_unit_test(patched_checkpoints),
        cmocka_unit_test(wrong_shape_and_missing),
        cmocka_unit_test(unreadable_paths),
        cmocka_unit_test(failed_save_keeps_old_file),
        cmocka_unit_test(null_handles),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, make_dir, remove_dir);
}
