/* Import of the original MesoNet Keras weights (src/io/keras_h5.c).
 *
 * Without ../shared: the conversions (HWIO → OIHW, and the first dense layer's
 * rows from Keras' NHWC flatten order to doppel's NCHW order, checked through a
 * doppel graph), synthetic Keras files written here with libhdf5 (Meso-4 and
 * MesoInception-4 layouts, save_weights() and model.save() styles, a
 * model_config with another batch-norm epsilon), and bad files: not HDF5,
 * empty, truncated at many lengths, HDF5 without a Keras index, a missing
 * layer, a missing weight, a wrong shape, the wrong architecture, a config
 * that describes another model — each a clean status with a message naming the
 * file and the layer, and the paramset left as it was. The CLI too.
 *
 * With ../shared/data/mesonet: the 4 original weight files on the 4 test
 * images against tests/ref/keras_mesonet.txt (tools/make_keras_refs.py: a
 * float64 NHWC re-implementation of the Keras models), |diff| <= 1e-4 on the
 * outputs (and relative 1e-4 on the logits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/internal.h" /* the sigmoid's input node, for the logits */
#include "doppel/doppel.h"

#define TOL 1e-4
#define MESONET_DIR DP_SHARED_DIR "/data/mesonet"
#define REF_FILE DP_SOURCE_DIR "/tests/ref/keras_mesonet.txt"

#define OK(expr)                                                                                  \
    do {                                                                                          \
        dp_status s_ = (expr);                                                                    \
        if (s_ != DP_OK) fail_msg("%s: %s (%s)", #expr, dp_status_name(s_), dp_ctx_error(ctx)); \
    } while (0)

static char g_dir[64];

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

#define assert_contains(h, n)                                           \
    do {                                                                \
        if (!(h) || !strstr((h), (n)))                                  \
            fail_msg("'%s' does not contain '%s'", (h) ? (h) : "(null)", (n)); \
    } while (0)

static dp_ctx *new_ctx(void) {
    dp_ctx *ctx = NULL;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 2, .seed = 7}, &ctx), DP_OK);
    return ctx;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)sz + 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[sz] = 0;
    *n = (size_t)sz;
    return p;
}

static void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* ------------------------------------------------------------ the conversions */

static float val(int id, int w, int64_t i) { /* deterministic synthetic weights in [-0.5, 0.5) */
    uint64_t z = (uint64_t)id * 1000003u + (uint64_t)w * 7919u + (uint64_t)i * 2654435761u;
    z ^= z >> 13;
    z *= 0x9E3779B97F4A7C15ull;
    z ^= z >> 29;
    return (float)((double)(z >> 40) / 16777216.0 - 0.5);
}

static void conv_kernel_layout(void **state) {
    (void)state;
    enum { KH = 2, KW = 3, CI = 4, CO = 5 };
    float hwio[KH * KW * CI * CO], oihw[KH * KW * CI * CO];
    for (int i = 0; i < KH * KW * CI * CO; i++) hwio[i] = (float)i;
    dp_keras_conv_kernel(hwio, KH, KW, CI, CO, oihw);
    for (int o = 0; o < CO; o++)
        for (int c = 0; c < CI; c++)
            for (int y = 0; y < KH; y++)
                for (int x = 0; x < KW; x++)
                    assert_true(oihw[((o * CI + c) * KH + y) * KW + x] == hwio[((y * KW + x) * CI + c) * CO + o]);
}

/* Keras: y = Flatten()(x_nhwc) @ K. doppel: dp_nn_dense(dp_flatten(x_nchw)) with
 * the converted weight. Same x (transposed), same numbers out. */
static void flatten_permutation(void **state) {
    (void)state;
    enum { N = 2, H = 3, W = 2, C = 4, OUT = 5, IN = H * W * C };
    dp_ctx *ctx = new_ctx();
    float x_nhwc[N * H * W * C], x_nchw[N * C * H * W], K[IN * OUT], bias[OUT], Wt[OUT * IN];
    for (int i = 0; i < N * H * W * C; i++) x_nhwc[i] = val(1, 0, i);
    for (int i = 0; i < IN * OUT; i++) K[i] = val(2, 0, i);
    for (int i = 0; i < OUT; i++) bias[i] = val(3, 0, i);
    for (int n = 0; n < N; n++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++) x_nchw[((n * C + c) * H + y) * W + x] = x_nhwc[((n * H + y) * W + x) * C + c];
    double want[N * OUT];
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = bias[o];
            for (int j = 0; j < IN; j++) s += (double)x_nhwc[n * IN + j] * K[j * OUT + o];
            want[n * OUT + o] = s;
        }
    dp_keras_dense_kernel(K, H, W, C, OUT, Wt);
    /* a wrong (plain transpose) conversion must NOT match: the test has teeth */
    double plain_err = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = bias[o];
            for (int j = 0; j < IN; j++) s += (double)x_nchw[n * IN + j] * K[j * OUT + o];
            plain_err = fmax(plain_err, fabs(s - want[n * OUT + o]));
        }
    assert_true(plain_err > 1e-2);

    dp_graph *g;
    dp_paramset *ps;
    OK(dp_graph_new(ctx, &g));
    OK(dp_paramset_new(ctx, &ps));
    dp_node *xin = dp_input(g, "x", 4, (const int64_t[]){N, C, H, W});
    dp_node *y = dp_nn_dense(g, ps, "fc", dp_flatten(g, xin), OUT, 1, NULL);
    OK(dp_graph_mark_output(g, y));
    OK(dp_graph_compile(g));
    OK(dp_tensor_copy_from(dp_paramset_find(ps, "fc.weight"), Wt, OUT * IN));
    OK(dp_tensor_copy_from(dp_paramset_find(ps, "fc.bias"), bias, OUT));
    OK(dp_tensor_copy_from(dp_node_value(xin), x_nchw, N * C * H * W));
    OK(dp_graph_run(g));
    const float *got = dp_tensor_f32(dp_node_value(y));
    for (int i = 0; i < N * OUT; i++) assert_true(fabs(got[i] - want[i]) < 1e-5);
    /* h = w = 1 is the plain transpose */
    float T[IN * OUT];
    dp_keras_dense_kernel(K, 1, 1, IN, OUT, T);
    for (int j = 0; j < IN; j++)
        for (int o = 0; o < OUT; o++) assert_true(T[o * IN + j] == K[j * OUT + o]);
    dp_graph_free(g);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ synthetic Keras files */

typedef struct syn_w {
    const char *role; /* kernel, bias, gamma, beta, moving_mean, moving_variance */
    int nd;
    hsize_t dims[4];
    int omit; /* listed in weight_names, but no dataset */
} syn_w;

typedef struct syn_layer {
    char name[40];
    int id; /* seeds the values */
    int nw;
    syn_w w[4];
} syn_layer;

typedef struct syn_file {
    syn_layer L[64];
    int n;
    int model_weights;  /* model.save() layout: the index in /model_weights */
    const char *config; /* a model_config JSON (root attribute), or NULL */
    int config_fixed;   /* store it as a fixed-length string (Keras 2.1.5 / h5py: numpy bytes) */
} syn_file;

static float syn_val(const syn_layer *l, int w, int64_t i) {
    float v = val(l->id, w, i);
    return strcmp(l->w[w].role, "moving_variance") ? v : 0.75f + v; /* variances > 0 */
}

static void add_plain(syn_file *s, const char *name) {
    syn_layer *l = &s->L[s->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
}

static void add_conv(syn_file *s, const char *name, int id, int k, int ci, int co) {
    syn_layer *l = &s->L[s->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->id = id;
    l->nw = 2;
    l->w[0] = (syn_w){"kernel", 4, {(hsize_t)k, (hsize_t)k, (hsize_t)ci, (hsize_t)co}, 0};
    l->w[1] = (syn_w){"bias", 1, {(hsize_t)co}, 0};
}

static void add_dense(syn_file *s, const char *name, int id, int in, int out) {
    syn_layer *l = &s->L[s->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->id = id;
    l->nw = 2;
    l->w[0] = (syn_w){"kernel", 2, {(hsize_t)in, (hsize_t)out}, 0};
    l->w[1] = (syn_w){"bias", 1, {(hsize_t)out}, 0};
}

static void add_bn(syn_file *s, const char *name, int id, int c) {
    static const char *const roles[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    syn_layer *l = &s->L[s->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->id = id;
    l->nw = 4;
    for (int i = 0; i < 4; i++) l->w[i] = (syn_w){roles[i], 1, {(hsize_t)c}, 0};
}

static syn_layer *find_layer(syn_file *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->L[i].name, name)) return &s->L[i];
    return NULL;
}

/* The layout of Meso4_DF.h5 (keras 2.1.5 save_weights, no LeakyReLU layer listed). */
static void meso4_spec(syn_file *s) {
    memset(s, 0, sizeof *s);
    add_plain(s, "input_1");
    const int k[4] = {3, 5, 5, 5}, ci[4] = {3, 8, 8, 16}, co[4] = {8, 8, 16, 16};
    for (int b = 0; b < 4; b++) {
        char n1[40], n2[40], n3[40];
        snprintf(n1, sizeof n1, "conv2d_%d", b + 1);
        snprintf(n2, sizeof n2, "batch_normalization_%d", b + 1);
        snprintf(n3, sizeof n3, "max_pooling2d_%d", b + 1);
        add_conv(s, n1, 10 + b, k[b], ci[b], co[b]);
        add_bn(s, n2, 20 + b, co[b]);
        add_plain(s, n3);
    }
    add_plain(s, "flatten_1");
    add_plain(s, "dropout_1");
    add_dense(s, "dense_1", 30, 1024, 16);
    add_plain(s, "dropout_2");
    add_dense(s, "dense_2", 31, 16, 1);
}

/* MesoInception-4 as MesoInception_DF.h5 lists it: each block's 7 convs in
 * Keras' depth order [b2.0, b3.0, b4.0, b1, b2.2, b3.2, b4.2]; the counters
 * (conv2d_<n>) follow the creation order b1, b2.0, b2.2, ... With names=0 the
 * convs get names without a counter (the importer then uses the depth order). */
static void inception_spec(syn_file *s, int names) {
    memset(s, 0, sizeof *s);
    add_plain(s, "input_1");
    const int cfg[2][5] = {{3, 1, 4, 4, 2}, {11, 2, 4, 4, 2}};
    static const int depth_order[7] = {1, 3, 5, 0, 2, 4, 6};
    int counter = 1;
    for (int b = 0; b < 2; b++) {
        const int ci = cfg[b][0], a = cfg[b][1], bb = cfg[b][2], c = cfg[b][3], d = cfg[b][4];
        /* creation order: b1, b2.0, b2.2, b3.0, b3.2, b4.0, b4.2 */
        const int ks[7] = {1, 1, 3, 1, 3, 1, 3}, cis[7] = {ci, ci, bb, ci, c, ci, d}, cos[7] = {a, bb, bb, c, c, d, d};
        for (int j = 0; j < 7; j++) {
            int cr = depth_order[j];
            char nm[40];
            if (names) snprintf(nm, sizeof nm, "conv2d_%d", counter + cr);
            else snprintf(nm, sizeof nm, "block%d_layer%c", b + 1, 'a' + j);
            add_conv(s, nm, 100 + b * 10 + cr, ks[cr], cis[cr], cos[cr]);
        }
        counter += 7;
        char nm[40];
        snprintf(nm, sizeof nm, "concatenate_%d", b + 1);
        add_plain(s, nm);
        snprintf(nm, sizeof nm, "batch_normalization_%d", b + 1);
        add_bn(s, nm, 200 + b, a + bb + c + d);
        snprintf(nm, sizeof nm, "max_pooling2d_%d", b + 1);
        add_plain(s, nm);
    }
    add_conv(s, "conv2d_15", 300, 5, 12, 16);
    add_bn(s, "batch_normalization_3", 301, 16);
    add_plain(s, "max_pooling2d_3");
    add_conv(s, "conv2d_16", 302, 5, 16, 16);
    add_bn(s, "batch_normalization_4", 303, 16);
    add_plain(s, "max_pooling2d_4");
    add_plain(s, "flatten_1");
    add_plain(s, "dropout_1");
    add_dense(s, "dense_1", 304, 1024, 16);
    add_plain(s, "leaky_re_lu_1");
    add_plain(s, "dropout_2");
    add_dense(s, "dense_2", 305, 16, 1);
}

static void str_attr(hid_t loc, const char *name, char **v, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(v[i]) > len) len = strlen(v[i]);
    if (n == 0) { /* h5py writes [] as an empty float64 array */
        hsize_t zero = 0;
        hid_t sp = H5Screate_simple(1, &zero, NULL);
        hid_t a = H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(a >= 0);
        H5Aclose(a);
        H5Sclose(sp);
        return;
    }
    size_t nn = n > 0 ? (size_t)n : 1;
    char *buf = calloc(nn, len);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * len, v[i], strlen(v[i]));
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hsize_t dn = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dn, NULL);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, t, buf) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    free(buf);
}

static void vlen_attr(hid_t loc, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, t, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void write_keras(const char *path, const syn_file *s) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t g = s->model_weights ? H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : f;
    char *names[64];
    for (int i = 0; i < s->n; i++) names[i] = (char *)s->L[i].name;
    str_attr(g, "layer_names", names, s->n);
    char *ver[1] = {"2.1.5"}, *be[1] = {"tensorflow"};
    str_attr(f, "keras_version", ver, 1);
    str_attr(f, "backend", be, 1);
    if (s->config && s->config_fixed) str_attr(f, "model_config", (char **)&s->config, 1);
    else if (s->config) vlen_attr(f, "model_config", s->config);
    for (int i = 0; i < s->n; i++) {
        const syn_layer *l = &s->L[i];
        hid_t lg = H5Gcreate2(g, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(lg >= 0);
        char wn[4][96], *wp[4];
        for (int w = 0; w < l->nw; w++) {
            snprintf(wn[w], sizeof wn[w], "%s/%s:0", l->name, l->w[w].role);
            wp[w] = wn[w];
        }
        str_attr(lg, "weight_names", wp, l->nw);
        if (l->nw) {
            hid_t sub = H5Gcreate2(lg, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            for (int w = 0; w < l->nw; w++) {
                if (l->w[w].omit) continue;
                int64_t n = 1;
                for (int d = 0; d < l->w[w].nd; d++) n *= (int64_t)l->w[w].dims[d];
                float *v = malloc(sizeof(float) * (size_t)n);
                for (int64_t k = 0; k < n; k++) v[k] = syn_val(l, w, k);
                hid_t sp = H5Screate_simple(l->w[w].nd, l->w[w].dims, NULL);
                char dn[64];
                snprintf(dn, sizeof dn, "%s:0", l->w[w].role);
                hid_t d = H5Dcreate2(sub, dn, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                assert_true(d >= 0);
                assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
                H5Dclose(d);
                H5Sclose(sp);
                free(v);
            }
            H5Gclose(sub);
        }
        H5Gclose(lg);
    }
    if (g != f) H5Gclose(g);
    H5Fclose(f);
}

/* The doppel tensor `name` holds the Keras conv kernel of layer l (HWIO → OIHW) and its bias. */
static void check_conv(dp_paramset *ps, const char *name, const syn_layer *l) {
    char nm[96];
    snprintf(nm, sizeof nm, "%s.weight", name);
    dp_tensor *t = dp_paramset_find(ps, nm);
    assert_non_null(t);
    const int64_t *sh = dp_tensor_shape(t);
    const int64_t co = sh[0], ci = sh[1], kh = sh[2], kw = sh[3];
    assert_int_equal(l->w[0].dims[0], kh);
    assert_int_equal(l->w[0].dims[3], co);
    const float *v = dp_tensor_f32(t);
    for (int64_t o = 0; o < co; o++)
        for (int64_t i = 0; i < ci; i++)
            for (int64_t y = 0; y < kh; y++)
                for (int64_t x = 0; x < kw; x++)
                    if (v[((o * ci + i) * kh + y) * kw + x] != syn_val(l, 0, ((y * kw + x) * ci + i) * co + o))
                        fail_msg("%s: element [%lld,%lld,%lld,%lld] is not layer %s's kernel", nm, (long long)o,
                                 (long long)i, (long long)y, (long long)x, l->name);
    snprintf(nm, sizeof nm, "%s.bias", name);
    t = dp_paramset_find(ps, nm);
    for (int64_t o = 0; o < co; o++) assert_true(dp_tensor_f32(t)[o] == syn_val(l, 1, o));
}

static void check_bn(dp_paramset *ps, const char *name, const syn_layer *l, double add) {
    static const char *const ours[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int r = 0; r < 4; r++) {
        char nm[96];
        snprintf(nm, sizeof nm, "%s.%s", name, ours[r]);
        dp_tensor *t = dp_paramset_find(ps, nm);
        assert_non_null(t);
        for (int64_t i = 0; i < dp_tensor_numel(t); i++) {
            float want = r == 3 ? (float)((double)syn_val(l, r, i) + add) : syn_val(l, r, i);
            if (dp_tensor_f32(t)[i] != want) fail_msg("%s[%lld] = %.9g, expected %.9g", nm, (long long)i, dp_tensor_f32(t)[i], want);
        }
    }
}

static void check_head(dp_paramset *ps, const syn_layer *d1, const syn_layer *d2) {
    float *w = dp_tensor_f32(dp_paramset_find(ps, "c.2.weight"));
    /* doppel's input j = (c, y, x) of the [16,8,8] map reads Keras row (y, x, c) */
    for (int o = 0; o < 16; o++)
        for (int c = 0; c < 16; c++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++)
                    assert_true(w[o * 1024 + (c * 8 + y) * 8 + x] == syn_val(d1, 0, ((y * 8 + x) * 16 + c) * 16 + o));
    w = dp_tensor_f32(dp_paramset_find(ps, "c.5.weight"));
    for (int j = 0; j < 16; j++) assert_true(w[j] == syn_val(d2, 0, j));
    assert_true(dp_tensor_f32(dp_paramset_find(ps, "c.5.bias"))[0] == syn_val(d2, 1, 0));
}

static void synthetic_meso4(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    syn_file *s = calloc(1, sizeof *s);
    meso4_spec(s);
    write_keras(tpath("m4.h5"), s);
    dp_paramset *ps;
    OK(dp_paramset_new(ctx, &ps));
    dp_keras_info ki;
    OK(dp_keras_load_mesonet(ps, tpath("m4.h5"), "meso4", &ki));
    assert_string_equal(ki.keras_version, "2.1.5");
    assert_string_equal(ki.backend, "tensorflow");
    assert_int_equal(ki.has_config, 0);
    assert_int_equal(ki.n_layers, 10);
    assert_true(ki.bn_eps == 1e-3);
    assert_true(ki.bn_eps_doppel == 1e-5);
    assert_int_equal(dp_paramset_count(ps), 28);
    const char *conv[4] = {"f.0", "f.4", "f.8", "f.12"}, *bn[4] = {"f.2", "f.6", "f.10", "f.14"};
    for (int b = 0; b < 4; b++) {
        char kn[40], bnn[40];
        snprintf(kn, sizeof kn, "conv2d_%d", b + 1);
        snprintf(bnn, sizeof bnn, "batch_normalization_%d", b + 1);
        check_conv(ps, conv[b], find_layer(s, kn));
        check_bn(ps, bn[b], find_layer(s, bnn), 1e-3 - 1e-5); /* Keras eps 1e-3 folded into doppel's 1e-5 */
    }
    check_head(ps, find_layer(s, "dense_1"), find_layer(s, "dense_2"));

    /* the same in a model.save() file: the index in /model_weights */
    s->model_weights = 1;
    write_keras(tpath("m4_full.h5"), s);
    dp_paramset *ps2;
    OK(dp_paramset_new(ctx, &ps2));
    OK(dp_keras_load_mesonet(ps2, tpath("m4_full.h5"), "meso4", NULL));
    for (int i = 0; i < dp_paramset_count(ps); i++)
        assert_memory_equal(dp_tensor_f32(dp_paramset_at(ps, i)), dp_tensor_f32(dp_paramset_at(ps2, i)),
                            sizeof(float) * (size_t)dp_tensor_numel(dp_paramset_at(ps, i)));
    dp_paramset_free(ps2);

    /* a model_config with epsilon 0.01 on the first batch norm: that eps is folded there */
    s->config =
        "{\"class_name\": \"Model\", \"config\": {\"name\": \"model_1\", \"layers\": ["
        "{\"name\": \"conv2d_1\", \"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_1\", \"activation\": \"relu\", "
        "\"padding\": \"same\", \"strides\": [1, 1], \"dilation_rate\": [1, 1]}},"
        "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"batch_normalization_1\", \"epsilon\": 0.01, \"axis\": -1}},"
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_2\", \"activation\": \"relu\", \"padding\": \"same\"}},"
        "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"batch_normalization_2\"}},"
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_3\", \"activation\": \"relu\", \"padding\": \"same\"}},"
        "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"batch_normalization_3\", \"epsilon\": 0.001}},"
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_4\", \"activation\": \"relu\", \"padding\": \"same\"}},"
        "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"batch_normalization_4\", \"epsilon\": 0.001}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_1\", \"activation\": \"linear\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_2\", \"activation\": \"sigmoid\"}}]}}";
    write_keras(tpath("m4_cfg.h5"), s);
    OK(dp_paramset_new(ctx, &ps2));
    OK(dp_keras_load_mesonet(ps2, tpath("m4_cfg.h5"), "meso4", &ki));
    assert_int_equal(ki.has_config, 1);
    assert_true(ki.bn_eps == 0.01);
    check_bn(ps2, "f.2", find_layer(s, "batch_normalization_1"), 0.01 - 1e-5);
    check_bn(ps2, "f.6", find_layer(s, "batch_normalization_2"), 1e-3 - 1e-5); /* no epsilon: Keras' default */
    dp_paramset_free(ps2);
    s->config_fixed = 1; /* the same config as a fixed-length string */
    write_keras(tpath("m4_cfg2.h5"), s);
    OK(dp_paramset_new(ctx, &ps2));
    OK(dp_keras_load_mesonet(ps2, tpath("m4_cfg2.h5"), "meso4", &ki));
    assert_true(ki.has_config && ki.bn_eps == 0.01);
    check_bn(ps2, "f.2", find_layer(s, "batch_normalization_1"), 0.01 - 1e-5);
    dp_paramset_free(ps2);
    s->config_fixed = 0;

    /* a config whose convolution has no ReLU describes another model */
    char *bad = strdup(s->config);
    char *p = strstr(bad, "\"relu\"");
    memcpy(p, "\"tanh\"", 6);
    s->config = bad;
    write_keras(tpath("m4_tanh.h5"), s);
    OK(dp_paramset_new(ctx, &ps2));
    assert_int_equal(dp_keras_load_mesonet(ps2, tpath("m4_tanh.h5"), "meso4", NULL), DP_ERR_UNSUPPORTED);
    assert_contains(dp_ctx_error(ctx), "m4_tanh.h5");
    assert_contains(dp_ctx_error(ctx), "conv2d_1");
    assert_contains(dp_ctx_error(ctx), "tanh");
    dp_paramset_free(ps2);
    free(bad);

    /* import to a checkpoint: metadata, and it loads back */
    OK(dp_keras_import_mesonet(ctx, tpath("m4.h5"), "meso4", tpath("m4.safetensors"), NULL));
    char buf[256];
    OK(dp_checkpoint_meta(ctx, tpath("m4.safetensors"), "doppel.arch", buf, sizeof buf));
    assert_string_equal(buf, "meso4");
    OK(dp_checkpoint_meta(ctx, tpath("m4.safetensors"), "source", buf, sizeof buf));
    assert_string_equal(buf, "keras-h5:m4.h5");
    OK(dp_checkpoint_meta(ctx, tpath("m4.safetensors"), "output", buf, sizeof buf));
    assert_string_equal(buf, "p_real");
    OK(dp_checkpoint_meta(ctx, tpath("m4.safetensors"), "input_size", buf, sizeof buf));
    assert_string_equal(buf, "256");
    OK(dp_checkpoint_meta(ctx, tpath("m4.safetensors"), "keras.bn_eps", buf, sizeof buf));
    assert_string_equal(buf, "0.001");
    OK(dp_paramset_new(ctx, &ps2));
    dp_graph *g;
    OK(dp_graph_new(ctx, &g));
    assert_non_null(dp_model_meso4(g, ps2, dp_input(g, "x", 4, (const int64_t[]){1, 3, 256, 256})));
    OK(dp_checkpoint_load(tpath("m4.safetensors"), ps2, NULL));
    for (int i = 0; i < dp_paramset_count(ps); i++)
        assert_memory_equal(dp_tensor_f32(dp_paramset_at(ps, i)), dp_tensor_f32(dp_paramset_at(ps2, i)),
                            sizeof(float) * (size_t)dp_tensor_numel(dp_paramset_at(ps, i)));
    dp_graph_free(g);
    dp_paramset_free(ps2);
    dp_paramset_free(ps);
    free(s);
    dp_ctx_free(ctx);
}

static void synthetic_inception(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    syn_file *s = calloc(1, sizeof *s);
    static const char *const br[7] = {"b1", "b2.0", "b2.2", "b3.0", "b3.2", "b4.0", "b4.2"};
    for (int names = 1; names >= 0; names--) {
        inception_spec(s, names);
        write_keras(tpath("mi.h5"), s);
        dp_paramset *ps;
        OK(dp_paramset_new(ctx, &ps));
        dp_keras_info ki;
        OK(dp_keras_load_mesonet(ps, tpath("mi.h5"), "mesoinception4", &ki));
        assert_int_equal(ki.n_layers, 22);
        assert_true(ki.bn_eps == ki.bn_eps_doppel); /* MesoInception-4 uses Keras' eps: nothing folded */
        assert_int_equal(dp_paramset_count(ps), 52);
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < 7; j++) {
                /* the layer created j-th in block b has id 100 + 10b + j */
                const syn_layer *l = NULL;
                for (int i = 0; i < s->n; i++)
                    if (s->L[i].id == 100 + b * 10 + j && s->L[i].nw) l = &s->L[i];
                assert_non_null(l);
                char nm[32];
                snprintf(nm, sizeof nm, "f.%d.%s", b ? 3 : 0, br[j]);
                check_conv(ps, nm, l);
            }
        check_bn(ps, "f.1", find_layer(s, "batch_normalization_1"), 0);
        check_bn(ps, "f.4", find_layer(s, "batch_normalization_2"), 0);
        check_conv(ps, "f.6", find_layer(s, "conv2d_15"));
        check_bn(ps, "f.8", find_layer(s, "batch_normalization_3"), 0);
        check_conv(ps, "f.10", find_layer(s, "conv2d_16"));
        check_bn(ps, "f.12", find_layer(s, "batch_normalization_4"), 0);
        check_head(ps, find_layer(s, "dense_1"), find_layer(s, "dense_2"));
        dp_paramset_free(ps);
    }
    free(s);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ bad files */

/* The load fails with `want`, names the file and `needle`, and leaves ps as it was. */
static void expect_fail(dp_ctx *ctx, dp_paramset *ps, const char *file, const char *arch, dp_status want,
                        const char *needle) {
    int n = dp_paramset_count(ps);
    float before[64];
    for (int i = 0; i < n && i < 64; i++) before[i] = dp_tensor_f32(dp_paramset_at(ps, i))[0];
    dp_status s = dp_keras_load_mesonet(ps, file, arch, NULL);
    if (s != want)
        fail_msg("%s: %s, expected %s (%s)", file, dp_status_name(s), dp_status_name(want), dp_ctx_error(ctx));
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    assert_contains(dp_ctx_error(ctx), base);
    if (needle) assert_contains(dp_ctx_error(ctx), needle);
    for (int i = 0; i < n && i < 64; i++) assert_true(dp_tensor_f32(dp_paramset_at(ps, i))[0] == before[i]);
}

static void bad_files(void **state) {
    (void)state;
    dp_ctx *ctx = new_ctx();
    dp_paramset *ps;
    OK(dp_paramset_new(ctx, &ps));
    syn_file *s = calloc(1, sizeof *s);
    meso4_spec(s);
    write_keras(tpath("good.h5"), s);
    OK(dp_keras_load_mesonet(ps, tpath("good.h5"), "meso4", NULL)); /* ps holds the good weights */

    expect_fail(ctx, ps, tpath("absent.h5"), "meso4", DP_ERR_IO, "cannot open");
    write_all(tpath("text.h5"), "this is not HDF5\n", 17);
    expect_fail(ctx, ps, tpath("text.h5"), "meso4", DP_ERR_FORMAT, "not an HDF5 file");
    write_all(tpath("empty.h5"), "", 0);
    expect_fail(ctx, ps, tpath("empty.h5"), "meso4", DP_ERR_FORMAT, "not an HDF5 file");

    /* truncated at many lengths: always a clean DP_ERR_FORMAT */
    size_t n;
    unsigned char *bytes = read_all(tpath("good.h5"), &n);
    assert_non_null(bytes);
    int tried = 0;
    for (size_t len = 0; len < n; len += (len < 4096 ? 97 : n / 29)) {
        write_all(tpath("trunc.h5"), bytes, len);
        expect_fail(ctx, ps, tpath("trunc.h5"), "meso4", DP_ERR_FORMAT, NULL);
        tried++;
    }
    write_all(tpath("trunc.h5"), bytes, n - 1);
    expect_fail(ctx, ps, tpath("trunc.h5"), "meso4", DP_ERR_FORMAT, NULL);
    write_all(tpath("trunc.h5"), bytes, n / 2);
    expect_fail(ctx, ps, tpath("trunc.h5"), "meso4", DP_ERR_FORMAT, "truncated");
    assert_true(tried > 20);
    free(bytes);

    /* HDF5, but not a Keras file: no layer_names, no model_weights */
    hid_t f = H5Fcreate(tpath("plain.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    H5Fclose(f);
    expect_fail(ctx, ps, tpath("plain.h5"), "meso4", DP_ERR_FORMAT, "not a Keras weight file");

    /* a missing layer (the last dense) */
    meso4_spec(s);
    s->n--;
    write_keras(tpath("nolayer.h5"), s);
    expect_fail(ctx, ps, tpath("nolayer.h5"), "meso4", DP_ERR_FORMAT, "c.5");

    /* a layer listed in layer_names without its group */
    meso4_spec(s);
    write_keras(tpath("nogroup.h5"), s);
    f = H5Fopen(tpath("nogroup.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Ldelete(f, "batch_normalization_2", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_fail(ctx, ps, tpath("nogroup.h5"), "meso4", DP_ERR_FORMAT, "batch_normalization_2");

    /* a weight listed in weight_names without its dataset */
    meso4_spec(s);
    find_layer(s, "batch_normalization_3")->w[3].omit = 1;
    write_keras(tpath("noweight.h5"), s);
    expect_fail(ctx, ps, tpath("noweight.h5"), "meso4", DP_ERR_FORMAT, "batch_normalization_3/moving_variance:0");

    /* a wrong shape */
    meso4_spec(s);
    find_layer(s, "conv2d_2")->w[0].dims[3] = 4;
    write_keras(tpath("shape.h5"), s);
    expect_fail(ctx, ps, tpath("shape.h5"), "meso4", DP_ERR_SHAPE, "conv2d_2");
    meso4_spec(s);
    find_layer(s, "dense_1")->w[0].dims[0] = 512;
    write_keras(tpath("shape2.h5"), s);
    expect_fail(ctx, ps, tpath("shape2.h5"), "meso4", DP_ERR_SHAPE, "dense_1");

    /* a batch norm where a convolution belongs */
    meso4_spec(s);
    syn_layer tmp = s->L[1];
    s->L[1] = s->L[2];
    s->L[2] = tmp;
    write_keras(tpath("order.h5"), s);
    expect_fail(ctx, ps, tpath("order.h5"), "meso4", DP_ERR_FORMAT, "batch_normalization_1");

    /* the wrong architecture, both ways (a fresh paramset: ps holds Meso-4's names) */
    dp_paramset *ps_mi;
    OK(dp_paramset_new(ctx, &ps_mi));
    expect_fail(ctx, ps_mi, tpath("good.h5"), "mesoinception4", DP_ERR_FORMAT, "batch_normalization_1");
    assert_contains(dp_ctx_error(ctx), "f.0 (inception block)");
    dp_paramset_free(ps_mi);
    /* a paramset that holds another model under the same names: refused, named */
    assert_int_equal(dp_keras_load_mesonet(ps, tpath("good.h5"), "mesoinception4", NULL), DP_ERR_SHAPE);
    assert_contains(dp_ctx_error(ctx), "f.4.weight");
    inception_spec(s, 1);
    write_keras(tpath("incep.h5"), s);
    expect_fail(ctx, ps, tpath("incep.h5"), "meso4", DP_ERR_SHAPE, "conv2d_2");

    /* a non-finite weight */
    meso4_spec(s);
    write_keras(tpath("nan.h5"), s);
    f = H5Fopen(tpath("nan.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "dense_2/dense_2/bias:0", H5P_DEFAULT);
    float nanv = NAN;
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, &nanv) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    expect_fail(ctx, ps, tpath("nan.h5"), "meso4", DP_ERR_FORMAT, "non-finite");

    /* arguments */
    assert_int_equal(dp_keras_load_mesonet(ps, tpath("good.h5"), "resnet", NULL), DP_ERR_ARG);
    assert_contains(dp_ctx_error(ctx), "resnet");
    assert_int_equal(dp_keras_load_mesonet(ps, NULL, "meso4", NULL), DP_ERR_NULL);
    assert_int_equal(dp_keras_load_mesonet(ps, tpath("good.h5"), NULL, NULL), DP_ERR_NULL);
    assert_int_equal(dp_keras_load_mesonet(NULL, tpath("good.h5"), "meso4", NULL), DP_ERR_NULL);
    assert_int_equal(dp_keras_import_mesonet(NULL, tpath("good.h5"), "meso4", tpath("x.safetensors"), NULL), DP_ERR_NULL);
    assert_int_equal(dp_keras_import_mesonet(ctx, tpath("good.h5"), "meso4", NULL, NULL), DP_ERR_NULL);
    assert_int_equal(dp_keras_import_mesonet(ctx, tpath("text.h5"), "meso4", tpath("x.safetensors"), NULL), DP_ERR_FORMAT);
    assert_int_equal(access(tpath("x.safetensors"), F_OK), -1); /* nothing written */

    /* libhdf5's automatic error printing is restored after the call */
    H5E_auto2_t fn = NULL;
    void *data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    assert_non_null(fn);

    dp_paramset_free(ps);
    free(s);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ the CLI */
#ifdef DP_CLI_PATH
static int run_cli(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s/out.txt' 2> '%s/err.txt'", DP_CLI_PATH, args, g_dir, g_dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *cli_text(const char *name) {
    size_t n;
    return (char *)read_all(tpath(name), &n);
}

static void cli(void **state) {
    (void)state;
    syn_file *s = calloc(1, sizeof *s);
    meso4_spec(s);
    write_keras(tpath("cli.h5"), s);
    free(s);
    char args[2048];
    assert_int_equal(run_cli("model --help"), 0);
    char *o = cli_text("out.txt");
    assert_contains(o, "import-keras");
    free(o);
    assert_int_equal(run_cli("model"), 2);
    assert_int_equal(run_cli("model frobnicate"), 2);
    snprintf(args, sizeof args, "model import-keras '%s' --out '%s'", tpath("cli.h5"), tpath("cli.safetensors"));
    assert_int_equal(run_cli(args), 2); /* no --arch */
    snprintf(args, sizeof args, "model import-keras '%s' --arch vgg --out '%s'", tpath("cli.h5"), tpath("cli.safetensors"));
    assert_int_equal(run_cli(args), 2);
    snprintf(args, sizeof args, "model import-keras '%s' --arch meso4", tpath("cli.h5"));
    assert_int_equal(run_cli(args), 2); /* no --out */
    snprintf(args, sizeof args, "model import-keras '%s' --arch meso4 --out '%s'", tpath("cli.h5"), tpath("cli.safetensors"));
    assert_int_equal(run_cli(args), 0);
    o = cli_text("out.txt");
    assert_contains(o, "Keras 2.1.5");
    assert_contains(o, "running_var += 0.00099");
    free(o);
    o = cli_text("err.txt");
    assert_string_equal(o, ""); /* no HDF5 error stack, no noise */
    free(o);
    snprintf(args, sizeof args, "model info '%s'", tpath("cli.safetensors"));
    assert_int_equal(run_cli(args), 0);
    o = cli_text("out.txt");
    assert_contains(o, "arch:       meso4");
    assert_contains(o, "27977 trainable, 96 in buffers");
    assert_contains(o, "loads into doppel's meso4");
    assert_contains(o, "p_real");
    assert_contains(o, "keras-h5:cli.h5");
    free(o);
    snprintf(args, sizeof args, "model info '%s' --json", tpath("cli.safetensors"));
    assert_int_equal(run_cli(args), 0);
    o = cli_text("out.txt");
    assert_contains(o, "\"output\":\t\"p_real\"");
    free(o);
    /* failures: exit 1, the message on stderr, no HDF5 error stack */
    write_all(tpath("bad.h5"), "nope", 4);
    snprintf(args, sizeof args, "model import-keras '%s' --arch meso4 --out '%s'", tpath("bad.h5"), tpath("bad.safetensors"));
    assert_int_equal(run_cli(args), 1);
    o = cli_text("err.txt");
    assert_contains(o, "bad.h5: not an HDF5 file");
    assert_true(strstr(o, "HDF5-DIAG") == NULL);
    free(o);
    snprintf(args, sizeof args, "model import-keras '%s' --arch mesoinception4 --out '%s'", tpath("cli.h5"),
             tpath("bad.safetensors"));
    assert_int_equal(run_cli(args), 1);
    o = cli_text("err.txt");
    assert_true(strstr(o, "HDF5-DIAG") == NULL);
    free(o);
    snprintf(args, sizeof args, "model info '%s'", tpath("bad.h5"));
    assert_int_equal(run_cli(args), 1);
}
#else
static void cli(void **state) {
    (void)state;
    printf("skipped: DP_CLI_PATH not defined\n");
    skip();
}
#endif

/* ------------------------------------------------------------ the original weights */

typedef struct ref_model {
    char file[128], arch[32];
    double eps, p[4], z[4];
} ref_model;

typedef struct ref_data {
    char img[4][256];
    int w[4], h[4], label[4], n_img;
    unsigned long long sum[4];
    ref_model m[8];
    int n_m;
} ref_data;

static int load_ref(ref_data *r) {
    FILE *f = fopen(REF_FILE, "r");
    if (!f) return 0;
    memset(r, 0, sizeof *r);
    char line[2048];
    int ok = fgets(line, sizeof line, f) && !strncmp(line, "doppel-keras-ref 1", 18);
    while (ok && fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (!strncmp(line, "image ", 6)) {
            int i = r->n_img++;
            ok = i < 4 && sscanf(line + 6, "%255s %d %d %d %llx", r->img[i], &r->w[i], &r->h[i], &r->label[i], &r->sum[i]) == 5;
        } else if (!strncmp(line, "model ", 6)) {
            ok = r->n_m < 8 && sscanf(line + 6, "%127s %31s %lf", r->m[r->n_m].file, r->m[r->n_m].arch, &r->m[r->n_m].eps) == 3;
            r->n_m++;
        } else if (!strncmp(line, "p ", 2) && r->n_m) {
            double *p = r->m[r->n_m - 1].p;
            ok = sscanf(line + 2, "%lf %lf %lf %lf", &p[0], &p[1], &p[2], &p[3]) == 4;
        } else if (!strncmp(line, "logit ", 6) && r->n_m) {
            double *z = r->m[r->n_m - 1].z;
            ok = sscanf(line + 6, "%lf %lf %lf %lf", &z[0], &z[1], &z[2], &z[3]) == 4;
        } else if (!strncmp(line, "end", 3)) {
            break;
        }
    }
    fclose(f);
    return ok && r->n_img == 4 && r->n_m == 4;
}

static unsigned long long fnv1a64(const void *p, size_t n) {
    const unsigned char *b = p;
    unsigned long long h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

/* MesoNet's input: RGB, resized to 256x256 as Keras' load_img (PIL NEAREST:
 * source index floor((2i+1)*src/(2*256))), scaled by 1/255 (the loader's
 * byte * (1.0f/255.0f)). Planar [3,256,256]. */
static void mesonet_input(dp_ctx *ctx, const char *path, float *x, int *w, int *h) {
    dp_image img;
    OK(dp_image_load(ctx, path, 3, NULL, &img));
    *w = img.width;
    *h = img.height;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 256; y++) {
            int sy = (int)((2 * (int64_t)y + 1) * img.height / 512);
            for (int xx = 0; xx < 256; xx++) {
                int sx = (int)((2 * (int64_t)xx + 1) * img.width / 512);
                x[(c * 256 + y) * 256 + xx] = img.data[((size_t)c * img.height + sy) * img.width + sx];
            }
        }
    dp_image_free(ctx, &img);
}

static void original_weights(void **state) {
    (void)state;
    struct stat st;
    if (stat(MESONET_DIR "/Meso4_DF.h5", &st) != 0) {
        printf("skipped: %s not found (the original MesoNet weights live in ../shared/data/mesonet)\n", MESONET_DIR);
        skip();
    }
    ref_data *r = calloc(1, sizeof *r);
    if (!load_ref(r)) fail_msg("cannot read %s (regenerate with /usr/bin/python3 tools/make_keras_refs.py)", REF_FILE);
    dp_ctx *ctx = new_ctx();
    const size_t per = 3 * 256 * 256;
    float *x = malloc(sizeof(float) * per * 4);
    for (int i = 0; i < 4; i++) {
        char path[1024];
        int w, h;
        snprintf(path, sizeof path, "%s/%s", MESONET_DIR, r->img[i]);
        mesonet_input(ctx, path, x + per * (size_t)i, &w, &h);
        assert_int_equal(w, r->w[i]);
        assert_int_equal(h, r->h[i]);
        unsigned long long sum = fnv1a64(x + per * (size_t)i, per * sizeof(float));
        if (sum != r->sum[i])
            fail_msg("%s: the input tensor differs from the reference's (checksum %016llx, reference %016llx): "
                     "another JPEG decoder?", r->img[i], sum, r->sum[i]);
    }
    double worst_p = 0, worst_z = 0;
    for (int m = 0; m < r->n_m; m++) {
        const ref_model *rm = &r->m[m];
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", MESONET_DIR, rm->file);
        dp_paramset *ps;
        OK(dp_paramset_new(ctx, &ps));
        if (m == 0) {
            /* through the checkpoint, as the CLI does */
            char out[600];
            snprintf(out, sizeof out, "%s", tpath("orig.safetensors"));
            OK(dp_keras_import_mesonet(ctx, path, rm->arch, out, NULL));
            dp_graph *g0;
            OK(dp_graph_new(ctx, &g0));
            assert_non_null(dp_model_meso4(g0, ps, dp_input(g0, "x", 4, (const int64_t[]){1, 3, 256, 256})));
            dp_graph_free(g0);
            OK(dp_checkpoint_load(out, ps, NULL));
        } else {
            OK(dp_keras_load_mesonet(ps, path, rm->arch, NULL));
        }
        dp_graph *g;
        OK(dp_graph_new(ctx, &g));
        dp_node *in = dp_input(g, "x", 4, (const int64_t[]){4, 3, 256, 256});
        dp_node *y = strcmp(rm->arch, "meso4") ? dp_model_mesoinception4(g, ps, in) : dp_model_meso4(g, ps, in);
        assert_non_null(y);
        assert_string_equal(dp_node_op_name(y), "sigmoid");
        dp_node *z = y->in[0];
        OK(dp_graph_mark_output(g, y));
        OK(dp_graph_mark_output(g, z));
        OK(dp_graph_compile(g));
        OK(dp_tensor_copy_from(dp_node_value(in), x, per * 4));
        OK(dp_graph_run(g));
        const float *pv = dp_tensor_f32(dp_node_value(y)), *zv = dp_tensor_f32(dp_node_value(z));
        double dp_max = 0, dz_max = 0;
        for (int i = 0; i < 4; i++) {
            double dp = fabs(pv[i] - rm->p[i]), dz = fabs(zv[i] - rm->z[i]) / fmax(1.0, fabs(rm->z[i]));
            dp_max = fmax(dp_max, dp);
            dz_max = fmax(dz_max, dz);
            if (dp > TOL || dz > TOL)
                fail_msg("%s, %s: doppel %.9f (logit %.7f), Keras %.9f (logit %.7f)", rm->file, r->img[i], pv[i], zv[i],
                         rm->p[i], rm->z[i]);
        }
        printf("%-22s P(real) %.6f %.6f %.6f %.6f  max |diff| %.2e, logits max rel. diff %.2e\n", rm->file, pv[0], pv[1],
               pv[2], pv[3], dp_max, dz_max);
        worst_p = fmax(worst_p, dp_max);
        worst_z = fmax(worst_z, dz_max);
        /* the real images score higher than the deepfakes with the DF weights (output = P(real)) */
        if (strstr(rm->file, "_DF")) assert_true(fmin(pv[2], pv[3]) > fmax(pv[0], pv[1]));
        dp_graph_free(g);
        dp_paramset_free(ps);
    }
    printf("largest difference to Keras: outputs %.2e, logits %.2e (tolerance %.0e)\n", worst_p, worst_z, TOL);
    free(x);
    free(r);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ main */

static int rm_dir(void) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tpath(e->d_name));
    if (d) closedir(d);
    return rmdir(g_dir);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dp_test_keras_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv_kernel_layout),
        cmocka_unit_test(flatten_permutation),
        cmocka_unit_test(synthetic_meso4),
        cmocka_unit_test(synthetic_inception),
        cmocka_unit_test(bad_files),
        cmocka_unit_test(cli),
        cmocka_unit_test(original_weights),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rm_dir();
    return rc;
}
