/* Import of the original MesoNet Keras weights (HDF5, Keras 2.x) into doppel's
 * reference models. See include/doppel/import.h and docs/keras-import.md.
 *
 * A Keras weight file (model.save_weights, or the model_weights group of
 * model.save) is an index plus one group per layer:
 *   attribute layer_names = [b'input_1', b'conv2d_1', ...]     every layer, in Keras' order
 *   <layer>/ attribute weight_names = [b'conv2d_1/kernel:0', b'conv2d_1/bias:0']
 *   <layer>/conv2d_1/kernel:0  float32 [kh,kw,ci,co]   ...
 * The layers that have weights are taken in layer_names order and matched
 * against the architecture's plan (below); each weight is found by its role
 * (kernel, bias, gamma, beta, moving_mean, moving_variance) in weight_names.
 *
 * Nothing in the paramset changes until the whole file has been read and
 * checked: the values are staged first, then committed. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>
#include <hdf5.h>

#include "core/internal.h"

#define KERAS_DEFAULT_BN_EPS 1e-3 /* keras.layers.BatchNormalization(epsilon=1e-3) */
#define KF_MAX_NAMES 100000       /* entries in a layer_names / weight_names attribute */
#define KF_MAX_STR 65536          /* one fixed-length string */
#define KF_MAX_CONFIG (64u << 20) /* a model_config JSON */
#define KF_MAX_STAGE 128          /* tensors of one architecture */
#define INPUT_SIZE 256

/* ------------------------------------------------------------ the conversions */

void dp_keras_conv_kernel(const float *hwio, int64_t kh, int64_t kw, int64_t ci, int64_t co, float *oihw) {
    for (int64_t y = 0; y < kh; y++)
        for (int64_t x = 0; x < kw; x++)
            for (int64_t i = 0; i < ci; i++)
                for (int64_t o = 0; o < co; o++)
                    oihw[((o * ci + i) * kh + y) * kw + x] = hwio[((y * kw + x) * ci + i) * co + o];
}

void dp_keras_dense_kernel(const float *kernel, int64_t h, int64_t w, int64_t c, int64_t out, float *weight) {
    const int64_t in = h * w * c;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            for (int64_t ch = 0; ch < c; ch++) {
                const float *row = kernel + ((y * w + x) * c + ch) * out; /* Keras: flatten index (y, x, ch) */
                int64_t j = (ch * h + y) * w + x;                         /* doppel: flatten index (ch, y, x) */
                for (int64_t o = 0; o < out; o++) weight[o * in + j] = row[o];
            }
}

/* ------------------------------------------------------------ architectures */

typedef enum { ST_CONV, ST_BN, ST_DENSE, ST_INCEPTION } step_kind;

typedef struct plan_step {
    step_kind kind;
    const char *name;       /* doppel's parameter prefix */
    const char *activation; /* conv/dense: the Keras activation doppel's builder applies */
    int flatten;            /* dense: follows Flatten() of the last feature map */
} plan_step;

typedef struct arch_plan {
    const char *arch;
    const char *title;
    dp_node *(*build)(dp_graph *, dp_paramset *, dp_node *);
    double bn_eps; /* the epsilon doppel's builder uses (src/nn/models.c) */
    int n;
    plan_step steps[12];
} arch_plan;

static const arch_plan plans[] = {
    {"meso4",
     "Meso-4",
     dp_model_meso4,
     1e-5, /* Meso-4 follows the PyTorch peers: BatchNorm2d's eps */
     10,
     {{ST_CONV, "f.0", "relu", 0},
      {ST_BN, "f.2", NULL, 0},
      {ST_CONV, "f.4", "relu", 0},
      {ST_BN, "f.6", NULL, 0},
      {ST_CONV, "f.8", "relu", 0},
      {ST_BN, "f.10", NULL, 0},
      {ST_CONV, "f.12", "relu", 0},
      {ST_BN, "f.14", NULL, 0},
      {ST_DENSE, "c.2", "linear", 1},
      {ST_DENSE, "c.5", "sigmoid", 0}}},
    {"mesoinception4",
     "MesoInception-4",
     dp_model_mesoinception4,
     1e-3, /* MesoInception-4 uses Keras' defaults */
     10,
     {{ST_INCEPTION, "f.0", "relu", 0},
      {ST_BN, "f.1", NULL, 0},
      {ST_INCEPTION, "f.3", "relu", 0},
      {ST_BN, "f.4", NULL, 0},
      {ST_CONV, "f.6", "relu", 0},
      {ST_BN, "f.8", NULL, 0},
      {ST_CONV, "f.10", "relu", 0},
      {ST_BN, "f.12", NULL, 0},
      {ST_DENSE, "c.2", "linear", 1},
      {ST_DENSE, "c.5", "sigmoid", 0}}},
};

/* The 7 convolutions of InceptionLayer(a,b,c,d) in the order the Keras code
 * creates them (classifiers.py): x1 = 1x1(a); x2 = 1x1(b) → 3x3(b);
 * x3 = 1x1(c) → 3x3(c, dilation 2); x4 = 1x1(d) → 3x3(d, dilation 3). */
static const char *const incep_names[7] = {"b1", "b2.0", "b2.2", "b3.0", "b3.2", "b4.0", "b4.2"};
static const int incep_dilation[7] = {1, 1, 1, 1, 2, 1, 3};
/* Keras 2.x lists layers by depth: layer_names holds the block as
 * [b2.0, b3.0, b4.0, b1, b2.2, b3.2, b4.2] (used when the names carry no counter). */
static const int incep_depth_order[7] = {1, 3, 5, 0, 2, 4, 6};

/* ------------------------------------------------------------ an open file */

typedef struct wlayer {
    char *name;
    char **w; /* weight_names */
    int nw;
} wlayer;

typedef struct staged {
    dp_tensor *t;
    float *v;
} staged;

typedef struct kf {
    dp_ctx *ctx;
    const char *path;
    const arch_plan *plan;
    hid_t file, grp; /* grp: the root, or model_weights */
    wlayer *L;       /* layers with weights, in layer_names order */
    int nL;
    cJSON *config;            /* parsed model_config, or NULL */
    const cJSON *cfg_layers;  /* its layer list */
    dp_paramset *ps;
    staged st[KF_MAX_STAGE];
    int nst;
    double eps_max;
    int last_c; /* channels of the last batch norm (the flatten's C) */
    char detail[256];
} kf;

static char *kf_strdup(dp_ctx *ctx, const char *s, size_t n) {
    char *d = dp_malloc(ctx, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void free_strs(dp_ctx *ctx, char **s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++) dp_free(ctx, s[i]);
    dp_free(ctx, s);
}

/* HDF5's innermost error description, for messages: " (HDF5: ...)" or "". */
static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    if (!buf[0] && e->desc && e->desc[0]) snprintf(buf, 200, "%s", e->desc);
    (void)n;
    return 0;
}

static const char *hdf5_detail(kf *f) {
    char d[200] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, d);
    H5Eclear2(H5E_DEFAULT);
    if (d[0]) snprintf(f->detail, sizeof f->detail, " (HDF5: %s)", d);
    else f->detail[0] = 0;
    return f->detail;
}

/* Reads a string attribute (scalar or 1-D, fixed or variable length) into
 * strings allocated from the context. DP_ERR_NOT_FOUND (no message) if absent. */
static dp_status read_str_attr(kf *f, hid_t loc, const char *where, const char *attr, char ***out, int *n_out) {
    dp_ctx *ctx = f->ctx;
    *out = NULL;
    *n_out = 0;
    htri_t ex = H5Aexists(loc, attr);
    if (ex == 0) return DP_ERR_NOT_FOUND;
    if (ex < 0) return dp_error(ctx, DP_ERR_FORMAT, "%s: %s: cannot read its attributes%s", f->path, where, hdf5_detail(f));
    dp_status s = DP_OK;
    hid_t a = H5Aopen(loc, attr, H5P_DEFAULT), t = -1, sp = -1, mt = -1;
    char **strs = NULL, **vl = NULL, *raw = NULL;
    hssize_t n = 0;
    if (a < 0 || (t = H5Aget_type(a)) < 0 || (sp = H5Aget_space(a)) < 0) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: %s: cannot read the attribute '%s'%s", f->path, where, attr, hdf5_detail(f));
        goto done;
    }
    H5S_class_t sc = H5Sget_simple_extent_type(sp);
    n = sc == H5S_NULL ? 0 : H5Sget_simple_extent_npoints(sp);
    if (n < 0 || n > KF_MAX_NAMES || (sc == H5S_SIMPLE && H5Sget_simple_extent_ndims(sp) > 1)) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: %s: the attribute '%s' is not a list of at most %d strings", f->path, where,
                     attr, KF_MAX_NAMES);
        goto done;
    }
    if (n == 0) goto done; /* an empty list (h5py stores [] as an empty float64 array) */
    if (H5Tget_class(t) != H5T_STRING) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: %s: the attribute '%s' is not a string or a list of strings", f->path, where,
                     attr);
        goto done;
    }
    if (!(strs = dp_calloc(ctx, sizeof(char *) * (size_t)n))) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", f->path);
        goto done;
    }
    htri_t is_vl = H5Tis_variable_str(t);
    if (is_vl < 0 || (mt = H5Tcopy(t)) < 0) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: %s: cannot read the attribute '%s'%s", f->path, where, attr, hdf5_detail(f));
        goto done;
    }
    if (is_vl) {
        if (!(vl = dp_calloc(ctx, sizeof(char *) * (size_t)n))) {
            s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", f->path);
            goto done;
        }
        if (H5Aread(a, mt, vl) < 0) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: %s: cannot read the attribute '%s'%s", f->path, where, attr,
                         hdf5_detail(f));
            goto done;
        }
        for (hssize_t i = 0; i < n && s == DP_OK; i++) {
            const char *v = vl[i] ? vl[i] : "";
            size_t len = strlen(v);
            if (len > KF_MAX_CONFIG || !(strs[i] = kf_strdup(ctx, v, len)))
                s = dp_error(ctx, DP_ERR_NOMEM, "%s: %s: the attribute '%s' is too large", f->path, where, attr);
        }
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, vl);
    } else {
        size_t sz = H5Tget_size(t);
        if (sz == 0 || sz > KF_MAX_CONFIG || sz * (size_t)n > KF_MAX_CONFIG || (n > 1 && sz > KF_MAX_STR)) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: %s: the attribute '%s' has strings of %zu bytes", f->path, where, attr, sz);
            goto done;
        }
        if (!(raw = dp_malloc(ctx, sz * (size_t)n))) {
            s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", f->path);
            goto done;
        }
        if (H5Aread(a, mt, raw) < 0) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: %s: cannot read the attribute '%s'%s", f->path, where, attr,
                         hdf5_detail(f));
            goto done;
        }
        for (hssize_t i = 0; i < n && s == DP_OK; i++) {
            const char *v = raw + (size_t)i * sz;
            size_t len = 0;
            while (len < sz && v[len]) len++;
            if (!(strs[i] = kf_strdup(ctx, v, len))) s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", f->path);
        }
    }
done:
    dp_free(ctx, vl);
    dp_free(ctx, raw);
    if (mt >= 0) H5Tclose(mt);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (s != DP_OK) {
        free_strs(ctx, strs, (int)n);
        return s;
    }
    *out = strs;
    *n_out = (int)n;
    return DP_OK;
}

static void kf_close(kf *f) {
    for (int i = 0; i < f->nL; i++) {
        dp_free(f->ctx, f->L[i].name);
        free_strs(f->ctx, f->L[i].w, f->L[i].nw);
    }
    dp_free(f->ctx, f->L);
    f->L = NULL;
    f->nL = 0;
    for (int i = 0; i < f->nst; i++) dp_free(f->ctx, f->st[i].v);
    f->nst = 0;
    cJSON_Delete(f->config);
    f->config = NULL;
    if (f->grp >= 0 && f->grp != f->file) H5Gclose(f->grp);
    if (f->file >= 0) H5Fclose(f->file);
    f->grp = f->file = -1;
}

/* The model_config attribute (model.save() files): parsed and kept for the checks. */
static dp_status read_config(kf *f) {
    char **cfg = NULL;
    int n = 0;
    dp_status s = read_str_attr(f, f->file, "the file's root", "model_config", &cfg, &n);
    if (s == DP_ERR_NOT_FOUND) return DP_OK;
    if (s) return s;
    if (n != 1) {
        free_strs(f->ctx, cfg, n);
        return dp_error(f->ctx, DP_ERR_FORMAT, "%s: the attribute model_config is not one JSON string", f->path);
    }
    f->config = cJSON_Parse(cfg[0]);
    free_strs(f->ctx, cfg, n);
    const cJSON *c = f->config ? cJSON_GetObjectItemCaseSensitive(f->config, "config") : NULL;
    const cJSON *layers = cJSON_IsArray(c) ? c : c ? cJSON_GetObjectItemCaseSensitive(c, "layers") : NULL;
    if (!cJSON_IsArray(layers))
        return dp_error(f->ctx, DP_ERR_FORMAT, "%s: the attribute model_config is not a Keras model configuration (JSON "
                        "with config.layers)", f->path);
    f->cfg_layers = layers;
    return DP_OK;
}

static dp_status kf_open(kf *f) {
    dp_ctx *ctx = f->ctx;
    FILE *fp = fopen(f->path, "rb");
    if (!fp) return dp_error(ctx, DP_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, fp);
    fclose(fp);
    htri_t is = H5Fis_hdf5(f->path);
    if (is <= 0) {
        hdf5_detail(f);
        return dp_error(ctx, DP_ERR_FORMAT, "%s: not an HDF5 file%s", f->path,
                        got == 0 ? " (it is empty)" : (got == 8 && !memcmp(sig, "\x89HDF\r\n\x1a\n", 8))
                                                          ? " (an HDF5 signature, but no readable superblock: truncated?)"
                                                          : " (Keras .h5 weight files are HDF5)");
    }
    f->file = H5Fopen(f->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->file < 0)
        return dp_error(ctx, DP_ERR_FORMAT, "%s: cannot open as HDF5 (truncated or corrupt)%s", f->path, hdf5_detail(f));
    /* model.save() puts the weights in model_weights; save_weights() at the root. */
    htri_t mw = H5Lexists(f->file, "model_weights", H5P_DEFAULT);
    if (mw > 0) {
        f->grp = H5Gopen2(f->file, "model_weights", H5P_DEFAULT);
        if (f->grp < 0)
            return dp_error(ctx, DP_ERR_FORMAT, "%s: cannot open the group model_weights%s", f->path, hdf5_detail(f));
    } else {
        f->grp = f->file;
    }
    char **names = NULL;
    int n = 0;
    dp_status s = read_str_attr(f, f->grp, mw > 0 ? "model_weights" : "the file's root", "layer_names", &names, &n);
    if (s == DP_ERR_NOT_FOUND)
        return dp_error(ctx, DP_ERR_FORMAT,
                        "%s: not a Keras weight file: no layer_names attribute at the root nor a model_weights group",
                        f->path);
    if (s) return s;
    if (!(f->L = dp_calloc(ctx, sizeof(wlayer) * (size_t)(n ? n : 1)))) {
        free_strs(ctx, names, n);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", f->path);
    }
    for (int i = 0; i < n && s == DP_OK; i++) {
        char where[300];
        snprintf(where, sizeof where, "layer '%.200s'", names[i]);
        hid_t lg = names[i][0] ? H5Gopen2(f->grp, names[i], H5P_DEFAULT) : -1;
        if (lg < 0) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: layer '%s' is listed in layer_names but has no group%s", f->path,
                         names[i], hdf5_detail(f));
            break;
        }
        char **w = NULL;
        int nw = 0;
        s = read_str_attr(f, lg, where, "weight_names", &w, &nw);
        H5Gclose(lg);
        if (s == DP_ERR_NOT_FOUND) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: layer '%s' has no weight_names attribute (not a Keras weight file?)",
                         f->path, names[i]);
            break;
        }
        if (s) break;
        if (nw == 0) {
            free_strs(ctx, w, nw);
            continue;
        }
        f->L[f->nL].name = names[i];
        names[i] = NULL;
        f->L[f->nL].w = w;
        f->L[f->nL].nw = nw;
        f->nL++;
    }
    free_strs(ctx, names, n);
    if (s) return s;
    return read_config(f);
}

/* ------------------------------------------------------------ reading layers */

/* "conv2d_1/kernel:0" → "kernel" (the weight's role). */
static void role_of(const char *wname, char *buf, size_t n) {
    const char *b = strrchr(wname, '/');
    b = b ? b + 1 : wname;
    size_t len = strcspn(b, ":");
    if (len >= n) len = n - 1;
    memcpy(buf, b, len);
    buf[len] = 0;
}

static void list_weights(const wlayer *L, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < L->nw && k + 1 < n; i++) {
        int w = snprintf(buf + k, n - k, "%s%s", i ? ", " : "", L->w[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

/* Index of the weight with this role; the layer must have exactly the roles of kind. */
static dp_status find_roles(kf *f, const wlayer *L, const char *dname, const char *kind, const char *const *roles,
                            int n_roles, int *idx) {
    char have[512];
    for (int r = 0; r < n_roles; r++) idx[r] = -1;
    for (int i = 0; i < L->nw; i++) {
        char role[64];
        role_of(L->w[i], role, sizeof role);
        for (int r = 0; r < n_roles; r++)
            if (!strcmp(role, roles[r]) && idx[r] < 0) idx[r] = i;
    }
    int ok = L->nw == n_roles;
    for (int r = 0; r < n_roles; r++) ok = ok && idx[r] >= 0;
    if (ok) return DP_OK;
    list_weights(L, have, sizeof have);
    return dp_error(f->ctx, DP_ERR_FORMAT,
                    "%s: layer '%s' has the weights [%s]; doppel's %s %s needs a %s here (is this a %s file?)", f->path,
                    L->name, have, f->plan->title, dname, kind, f->plan->title);
}

static const char *shape_str(int nd, const int64_t *s, char *buf, size_t n) { return dp_shape_str(nd, s, buf, n); }

/* Read weight w of layer L, which must have shape want, as float32 into dst. */
static dp_status read_weight(kf *f, const wlayer *L, int w, int nd, const int64_t *want, const char *what, float *dst) {
    dp_ctx *ctx = f->ctx;
    dp_status s = DP_OK;
    hid_t lg = H5Gopen2(f->grp, L->name, H5P_DEFAULT), d = -1, sp = -1, t = -1;
    if (lg < 0) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: layer '%s': cannot open its group%s", f->path, L->name, hdf5_detail(f));
        goto done;
    }
    d = H5Dopen2(lg, L->w[w], H5P_DEFAULT);
    if (d < 0) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: layer '%s': the weight '%s' named in weight_names is missing%s", f->path,
                     L->name, L->w[w], hdf5_detail(f));
        goto done;
    }
    if ((sp = H5Dget_space(d)) < 0 || (t = H5Dget_type(d)) < 0) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: layer '%s': cannot read '%s'%s", f->path, L->name, L->w[w], hdf5_detail(f));
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[H5S_MAX_RANK];
    int64_t got[H5S_MAX_RANK];
    if (rank < 0 || rank > H5S_MAX_RANK || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: layer '%s': '%s' has no readable shape%s", f->path, L->name, L->w[w],
                     hdf5_detail(f));
        goto done;
    }
    int same = rank == nd;
    for (int i = 0; i < rank; i++) {
        got[i] = (int64_t)dims[i];
        if (same) same = got[i] == want[i];
    }
    if (!same) {
        char a[128], b[128];
        s = dp_error(ctx, DP_ERR_SHAPE, "%s: layer '%s': '%s' has shape %s, doppel's %s %s needs %s", f->path, L->name,
                     L->w[w], shape_str(rank, got, a, sizeof a), f->plan->title, what, shape_str(nd, want, b, sizeof b));
        goto done;
    }
    if (H5Tget_class(t) != H5T_FLOAT) {
        s = dp_error(ctx, DP_ERR_DTYPE, "%s: layer '%s': '%s' is not a floating-point array", f->path, L->name, L->w[w]);
        goto done;
    }
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: layer '%s': cannot read '%s' (truncated or corrupt file)%s", f->path, L->name,
                     L->w[w], hdf5_detail(f));
        goto done;
    }
    int64_t n = dp_shape_numel(nd, want);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: layer '%s': '%s' holds a non-finite value (%g at element %lld)", f->path,
                         L->name, L->w[w], (double)dst[i], (long long)i);
            goto done;
        }
done:
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (lg >= 0) H5Gclose(lg);
    return s;
}

/* A staging buffer for the paramset tensor "<prefix>.<suffix>". */
static dp_status stage(kf *f, const char *prefix, const char *suffix, dp_tensor **t_out, float **v_out) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    dp_tensor *t = dp_paramset_find(f->ps, name);
    if (!t || t->dtype != DP_F32 || !dp_tensor_is_contiguous(t))
        return dp_error(f->ctx, DP_ERR_STATE, "%s: the paramset has no contiguous F32 tensor '%s' for %s", f->path, name,
                        f->plan->title);
    if (f->nst >= KF_MAX_STAGE) return dp_error(f->ctx, DP_ERR_STATE, "%s: too many tensors", f->path);
    float *v = dp_malloc(f->ctx, sizeof(float) * (size_t)dp_numel(t));
    if (!v) return dp_error(f->ctx, DP_ERR_NOMEM, "%s: out of memory", f->path);
    f->st[f->nst].t = t;
    f->st[f->nst].v = v;
    f->nst++;
    *t_out = t;
    *v_out = v;
    return DP_OK;
}

/* ------------------------------------------------------------ model_config checks */

static const cJSON *cfg_find(kf *f, const char *layer, const char **class_name) {
    const cJSON *l;
    cJSON_ArrayForEach(l, f->cfg_layers) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(l, "config");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(c, "name");
        if (!cJSON_IsString(nm)) nm = cJSON_GetObjectItemCaseSensitive(l, "name");
        if (cJSON_IsString(nm) && !strcmp(nm->valuestring, layer)) {
            const cJSON *cn = cJSON_GetObjectItemCaseSensitive(l, "class_name");
            *class_name = cJSON_IsString(cn) ? cn->valuestring : "";
            return c;
        }
    }
    return NULL;
}

static int cfg_pair_is(const cJSON *c, const char *key, int v) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, key);
    if (!a) return 1; /* absent: Keras' default (1) */
    if (!cJSON_IsArray(a)) return cJSON_IsNumber(a) && a->valuedouble == v;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) if (!cJSON_IsNumber(e) || e->valuedouble != v) return 0;
    return 1;
}

static dp_status cfg_layer(kf *f, const wlayer *L, const char *want_class, const cJSON **out) {
    const char *cls = "";
    const cJSON *c = cfg_find(f, L->name, &cls);
    if (!c)
        return dp_error(f->ctx, DP_ERR_FORMAT, "%s: layer '%s' has weights but is not in the file's model_config", f->path,
                        L->name);
    if (strcmp(cls, want_class))
        return dp_error(f->ctx, DP_ERR_UNSUPPORTED, "%s: layer '%s' is a %s in model_config; doppel's %s has a %s here",
                        f->path, L->name, cls, f->plan->title, want_class);
    *out = c;
    return DP_OK;
}

static dp_status cfg_activation(kf *f, const wlayer *L, const cJSON *c, const char *want) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, "activation");
    const char *got = cJSON_IsString(a) ? a->valuestring : "linear";
    if (strcmp(got, want))
        return dp_error(f->ctx, DP_ERR_UNSUPPORTED, "%s: layer '%s' has activation '%s' in model_config; doppel's %s "
                        "applies '%s' here", f->path, L->name, got, f->plan->title, want);
    return DP_OK;
}

static dp_status cfg_conv(kf *f, const wlayer *L, const char *act, int dilation) {
    if (!f->config) return DP_OK;
    const cJSON *c;
    dp_status s = cfg_layer(f, L, "Conv2D", &c);
    if (s) return s;
    if ((s = cfg_activation(f, L, c, act))) return s;
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(c, "padding");
    if (!cJSON_IsString(pad) || strcmp(pad->valuestring, "same"))
        return dp_error(f->ctx, DP_ERR_UNSUPPORTED, "%s: layer '%s': padding is not 'same' in model_config", f->path,
                        L->name);
    if (!cfg_pair_is(c, "strides", 1))
        return dp_error(f->ctx, DP_ERR_UNSUPPORTED, "%s: layer '%s': strides are not 1 in model_config", f->path, L->name);
    if (!cfg_pair_is(c, "dilation_rate", dilation))
        return dp_error(f->ctx, DP_ERR_UNSUPPORTED, "%s: layer '%s': the dilation rate in model_config is not %d", f->path,
                        L->name, dilation);
    return DP_OK;
}

/* Keras' epsilon for a batch-norm layer: model_config, else the default. */
static dp_status cfg_bn_eps(kf *f, const wlayer *L, double *eps) {
    *eps = KERAS_DEFAULT_BN_EPS;
    if (!f->config) return DP_OK;
    const cJSON *c;
    dp_status s = cfg_layer(f, L, "BatchNormalization", &c);
    if (s) return s;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(c, "epsilon"), *ax = cJSON_GetObjectItemCaseSensitive(c, "axis");
    if (e) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !(e->valuedouble < 1))
            return dp_error(f->ctx, DP_ERR_FORMAT, "%s: layer '%s': epsilon in model_config is not a number in (0,1)",
                            f->path, L->name);
        *eps = e->valuedouble;
    }
    if (cJSON_IsArray(ax) && cJSON_GetArraySize(ax) == 1) ax = cJSON_GetArrayItem(ax, 0);
    if (ax && !(cJSON_IsNumber(ax) && (ax->valuedouble == -1 || ax->valuedouble == 3)))
        return dp_error(f->ctx, DP_ERR_UNSUPPORTED, "%s: layer '%s': batch norm over an axis other than channels-last",
                        f->path, L->name);
    return DP_OK;
}

/* ------------------------------------------------------------ the steps */

static dp_status do_conv(kf *f, const wlayer *L, const char *dname, const char *act, int dilation) {
    static const char *const roles[2] = {"kernel", "bias"};
    int idx[2];
    dp_status s = find_roles(f, L, dname, "convolution (kernel, bias)", roles, 2, idx);
    if (s || (s = cfg_conv(f, L, act, dilation))) return s;
    dp_tensor *w, *b;
    float *wv, *bv;
    if ((s = stage(f, dname, "weight", &w, &wv)) || (s = stage(f, dname, "bias", &b, &bv))) return s;
    const int64_t co = w->shape[0], ci = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    const int64_t hwio[4] = {kh, kw, ci, co};
    char what[160];
    snprintf(what, sizeof what, "%s.weight [%lld,%lld,%lld,%lld] (as Keras HWIO)", dname, (long long)co, (long long)ci,
             (long long)kh, (long long)kw);
    float *tmp = dp_malloc(f->ctx, sizeof(float) * (size_t)dp_numel(w));
    if (!tmp) return dp_error(f->ctx, DP_ERR_NOMEM, "%s: out of memory", f->path);
    s = read_weight(f, L, idx[0], 4, hwio, what, tmp);
    if (!s) dp_keras_conv_kernel(tmp, kh, kw, ci, co, wv);
    dp_free(f->ctx, tmp);
    if (s) return s;
    snprintf(what, sizeof what, "%s.bias", dname);
    return read_weight(f, L, idx[1], 1, b->shape, what, bv);
}

static dp_status do_bn(kf *f, const wlayer *L, const char *dname) {
    static const char *const roles[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    static const char *const ours[4] = {"weight", "bias", "running_mean", "running_var"};
    int idx[4];
    double eps;
    dp_status s = find_roles(f, L, dname, "batch norm (gamma, beta, moving_mean, moving_variance)", roles, 4, idx);
    if (s || (s = cfg_bn_eps(f, L, &eps))) return s;
    if (eps > f->eps_max) f->eps_max = eps;
    for (int r = 0; r < 4; r++) {
        dp_tensor *t;
        float *v;
        char what[128];
        if ((s = stage(f, dname, ours[r], &t, &v))) return s;
        snprintf(what, sizeof what, "%s.%s", dname, ours[r]);
        if ((s = read_weight(f, L, idx[r], 1, t->shape, what, v))) return s;
        if (r == 3) {
            /* doppel computes (x - mean) / sqrt(var' + eps_doppel); Keras (x - mean) / sqrt(var + eps):
             * var' = var + eps - eps_doppel gives the same denominator. */
            double fold = eps - f->plan->bn_eps;
            for (int64_t i = 0; i < dp_numel(t); i++) {
                if (!(v[i] >= 0))
                    return dp_error(f->ctx, DP_ERR_FORMAT, "%s: layer '%s': moving_variance[%lld] = %g is negative",
                                    f->path, L->name, (long long)i, (double)v[i]);
                double nv = (double)v[i] + fold;
                if (!(nv + f->plan->bn_eps > 0))
                    return dp_error(f->ctx, DP_ERR_UNSUPPORTED,
                                    "%s: layer '%s': Keras' epsilon %g is too small to fold into doppel's %g", f->path,
                                    L->name, eps, f->plan->bn_eps);
                v[i] = (float)nv;
            }
            f->last_c = (int)dp_numel(t);
        }
    }
    return DP_OK;
}

static dp_status do_dense(kf *f, const wlayer *L, const plan_step *p) {
    static const char *const roles[2] = {"kernel", "bias"};
    int idx[2];
    dp_status s = find_roles(f, L, p->name, "dense layer (kernel, bias)", roles, 2, idx);
    if (s) return s;
    if (f->config) {
        const cJSON *c;
        if ((s = cfg_layer(f, L, "Dense", &c)) || (s = cfg_activation(f, L, c, p->activation))) return s;
    }
    dp_tensor *w, *b;
    float *wv, *bv;
    if ((s = stage(f, p->name, "weight", &w, &wv)) || (s = stage(f, p->name, "bias", &b, &bv))) return s;
    const int64_t out = w->shape[0], in = w->shape[1];
    int64_t c = in, h = 1; /* a plain dense layer: [in,out] → [out,in] */
    if (p->flatten) {
        /* Flatten() of the last feature map [h,w,c]: c from the last batch norm, h = w. */
        c = f->last_c > 0 ? f->last_c : 1;
        h = (int64_t)llround(sqrt((double)(in / c)));
        if (in % c || h * h * c != in)
            return dp_error(f->ctx, DP_ERR_STATE, "%s: %s.weight [%lld,%lld] does not follow a square %lld-channel map",
                            f->path, p->name, (long long)out, (long long)in, (long long)c);
    }
    const int64_t kshape[2] = {in, out};
    char what[160];
    snprintf(what, sizeof what, "%s.weight [%lld,%lld] (as Keras [in,out])", p->name, (long long)out, (long long)in);
    float *tmp = dp_malloc(f->ctx, sizeof(float) * (size_t)dp_numel(w));
    if (!tmp) return dp_error(f->ctx, DP_ERR_NOMEM, "%s: out of memory", f->path);
    s = read_weight(f, L, idx[0], 2, kshape, what, tmp);
    if (!s) dp_keras_dense_kernel(tmp, h, h, c, out, wv);
    dp_free(f->ctx, tmp);
    if (s) return s;
    snprintf(what, sizeof what, "%s.bias", p->name);
    return read_weight(f, L, idx[1], 1, b->shape, what, bv);
}

/* Keras' creation counter at the end of an automatic name: "conv2d_12" → 12 (-1 if none). */
static long name_counter(const char *s) {
    const char *u = strrchr(s, '_');
    if (!u || !u[1]) return -1;
    char *end;
    errno = 0;
    long v = strtol(u + 1, &end, 10);
    return (*end || errno || v < 0) ? -1 : v;
}

static dp_status do_inception(kf *f, int first, const plan_step *p) {
    static const char *const roles[2] = {"kernel", "bias"};
    const wlayer *B[7];
    long cnt[7];
    int by_counter = 1, idx[2];
    char what[64];
    snprintf(what, sizeof what, "%s (inception block)", p->name);
    for (int i = 0; i < 7; i++) { /* 7 convolutions in a row, before telling the branches apart */
        dp_status s = find_roles(f, &f->L[first + i], what, "convolution (kernel, bias)", roles, 2, idx);
        if (s) return s;
    }
    for (int i = 0; i < 7; i++) {
        cnt[i] = name_counter(f->L[first + i].name);
        if (cnt[i] < 0) by_counter = 0;
        for (int j = 0; j < i; j++)
            if (cnt[j] == cnt[i]) by_counter = 0;
    }
    if (by_counter) {
        /* The branches in creation order: sort the block by the counter. */
        int order[7];
        for (int i = 0; i < 7; i++) order[i] = i;
        for (int i = 1; i < 7; i++)
            for (int j = i; j > 0 && cnt[order[j - 1]] > cnt[order[j]]; j--) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        for (int i = 0; i < 7; i++) B[i] = &f->L[first + order[i]];
    } else {
        for (int i = 0; i < 7; i++) B[incep_depth_order[i]] = &f->L[first + i];
    }
    for (int i = 0; i < 7; i++) {
        char dname[64];
        snprintf(dname, sizeof dname, "%s.%s", p->name, incep_names[i]);
        dp_status s = do_conv(f, B[i], dname, p->activation, incep_dilation[i]);
        if (s) return s;
    }
    return DP_OK;
}

static const char *step_what(const plan_step *p) {
    switch (p->kind) {
    case ST_CONV: return "convolution";
    case ST_BN: return "batch norm";
    case ST_DENSE: return "dense layer";
    default: return "inception block (7 convolutions)";
    }
}

static dp_status run_plan(kf *f) {
    int li = 0;
    for (int k = 0; k < f->plan->n; k++) {
        const plan_step *p = &f->plan->steps[k];
        int need = p->kind == ST_INCEPTION ? 7 : 1;
        if (li + need > f->nL)
            return dp_error(f->ctx, DP_ERR_FORMAT,
                            "%s: the file has %d layers with weights; doppel's %s needs a %s for %s after them (missing "
                            "layer; is this a %s file?)",
                            f->path, f->nL, f->plan->title, step_what(p), p->name, f->plan->title);
        dp_status s;
        switch (p->kind) {
        case ST_CONV: s = do_conv(f, &f->L[li], p->name, p->activation, 1); break;
        case ST_BN: s = do_bn(f, &f->L[li], p->name); break;
        case ST_DENSE: s = do_dense(f, &f->L[li], p); break;
        default: s = do_inception(f, li, p); break;
        }
        if (s) return s;
        li += need;
    }
    if (li < f->nL)
        return dp_error(f->ctx, DP_ERR_FORMAT, "%s: layer '%s' has weights that doppel's %s has no place for (%d layers with "
                        "weights, %s has %d; is this a %s file?)",
                        f->path, f->L[li].name, f->plan->title, f->nL, f->plan->title, li, f->plan->title);
    return DP_OK;
}

static const arch_plan *find_plan(const char *arch) {
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++)
        if (!strcmp(arch, plans[i].arch)) return &plans[i];
    return NULL;
}

/* Build the architecture over ps once, so that every parameter exists with its shape. */
static dp_status make_params(dp_ctx *ctx, dp_paramset *ps, const arch_plan *plan) {
    dp_graph *g;
    dp_status s = dp_graph_new(ctx, &g);
    if (s) return s;
    dp_node *x = dp_input(g, "x", 4, (const int64_t[]){1, 3, INPUT_SIZE, INPUT_SIZE});
    dp_node *y = plan->build(g, ps, x);
    s = g->status;
    if (!s && !y) s = dp_error(ctx, DP_ERR_STATE, "%s: the builder returned no output", plan->title);
    else if (s) dp_error(ctx, s, "%s: %s", plan->title, dp_ctx_error(ctx));
    dp_graph_free(g);
    return s;
}

static void read_info(kf *f, const char *attr, char *buf, size_t n) {
    char **v = NULL;
    int nv = 0;
    buf[0] = 0;
    if (read_str_attr(f, f->file, "the file's root", attr, &v, &nv) == DP_OK && nv == 1) snprintf(buf, n, "%s", v[0]);
    free_strs(f->ctx, v, nv);
    dp_ctx_clear_error(f->ctx);
}

dp_status dp_keras_load_mesonet(dp_paramset *ps, const char *h5_path, const char *arch, dp_keras_info *info) {
    if (!ps) return DP_ERR_NULL;
    dp_ctx *ctx = dp_paramset_ctx(ps);
    if (!h5_path || !*h5_path) return dp_error(ctx, DP_ERR_NULL, "dp_keras_load_mesonet: the file path is NULL or empty");
    if (!arch) return dp_error(ctx, DP_ERR_NULL, "dp_keras_load_mesonet: arch is NULL (meso4 or mesoinception4)");
    const arch_plan *plan = find_plan(arch);
    if (!plan)
        return dp_error(ctx, DP_ERR_ARG, "dp_keras_load_mesonet: unknown architecture '%s' (meso4 or mesoinception4)",
                        arch);
    dp_status s = make_params(ctx, ps, plan);
    if (s) return s;

    /* libhdf5 prints its error stack to stderr by default: off for this call. */
    H5E_auto2_t old_fn = NULL;
    void *old_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    kf *f = dp_calloc(ctx, sizeof *f);
    if (!f) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", h5_path);
        goto out;
    }
    f->ctx = ctx;
    f->path = h5_path;
    f->plan = plan;
    f->ps = ps;
    f->file = f->grp = -1;
    if ((s = kf_open(f)) == DP_OK && (s = run_plan(f)) == DP_OK) {
        for (int i = 0; i < f->nst && s == DP_OK; i++)
            s = dp_tensor_copy_from(f->st[i].t, f->st[i].v, (size_t)dp_numel(f->st[i].t));
        if (info) {
            memset(info, 0, sizeof *info);
            read_info(f, "keras_version", info->keras_version, sizeof info->keras_version);
            read_info(f, "backend", info->backend, sizeof info->backend);
            info->has_config = f->config != NULL;
            info->n_layers = f->nL;
            info->bn_eps = f->eps_max;
            info->bn_eps_doppel = plan->bn_eps;
        }
    }
    kf_close(f);
    dp_free(ctx, f);
out:
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    return s;
}

/* ------------------------------------------------------------ import to a checkpoint */

dp_status dp_keras_import_mesonet(dp_ctx *ctx, const char *h5_path, const char *arch, const char *out_path,
                                  dp_keras_info *info) {
    if (!ctx) return DP_ERR_NULL;
    if (!out_path || !*out_path)
        return dp_error(ctx, DP_ERR_NULL, "dp_keras_import_mesonet: the output path is NULL or empty");
    dp_paramset *ps;
    dp_keras_info ki;
    dp_status s = dp_paramset_new(ctx, &ps);
    if (s) return s;
    if ((s = dp_keras_load_mesonet(ps, h5_path, arch, &ki)) == DP_OK) {
        const char *base = strrchr(h5_path, '/');
        base = base ? base + 1 : h5_path;
        char source[512], eps[32], fold[160], ver[128];
        snprintf(source, sizeof source, "keras-h5:%s", base);
        snprintf(eps, sizeof eps, "%.9g", ki.bn_eps);
        double add = ki.bn_eps - ki.bn_eps_doppel;
        if (add != 0)
            snprintf(fold, sizeof fold, "running_var += %.9g (Keras eps %.9g, doppel eps %.9g)", add, ki.bn_eps,
                     ki.bn_eps_doppel);
        else
            snprintf(fold, sizeof fold, "none (Keras eps = doppel eps = %.9g)", ki.bn_eps);
        snprintf(ver, sizeof ver, "%s%s%s", ki.keras_version[0] ? ki.keras_version : "unknown",
                 ki.backend[0] ? ", backend " : "", ki.backend);
        const char *extra[] = {"doppel.task", "detect",
                               "source", source,
                               "keras.version", ver,
                               "keras.bn_eps", eps,
                               "doppel.bn_eps_fold", fold,
                               "doppel.input", "3,256,256",
                               "input_size", "256",
                               "preprocess", "RGB, resized to 256x256 (Keras load_img: nearest neighbour), "
                                             "x = pixel/255 (ImageDataGenerator rescale=1/255), planar NCHW",
                               "doppel.norm_mean", "0,0,0",
                               "doppel.norm_std", "1,1,1",
                               "output", "p_real",
                               NULL};
        s = dp_checkpoint_save(out_path, ps, NULL, arch, extra);
        if (info) *info = ki;
    }
    dp_paramset_free(ps);
    return s;
}
