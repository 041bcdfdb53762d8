/* Layer builders: a graph node plus its named parameters, created on first
 * use in the paramset and reused afterwards (so several graphs share weights).
 *
 * Initialisation follows PyTorch's defaults unless the caller passes one:
 *   conv / conv-transpose / dense weight: kaiming_uniform(a = sqrt(5)) = U(±1/sqrt(fan_in))
 *   their bias: U(±1/sqrt(fan_in)), fan_in taken from the weight (dim 1 × kernel, also for
 *   conv-transpose, whose weight is [Ci, Co/groups, KH, KW] — PyTorch does the same)
 *   batch norm: weight 1, bias 0, running_mean 0, running_var 1 (buffers).
 * With a caller's init, the weight uses it and the bias starts at zero. */
#include <stdio.h>

#include "core/internal.h"

/* "<prefix>.<suffix>" into buf; records a graph error if it does not fit. */
static int param_name(dp_graph *g, char *buf, size_t n, const char *prefix, const char *suffix) {
    int k = snprintf(buf, n, "%s.%s", prefix, suffix);
    if (k < 0 || (size_t)k >= n) {
        dp_graph_fail(g, DP_ERR_ARG, "layer name '%s' is too long", prefix);
        return 0;
    }
    return 1;
}

/* Get or create a parameter and return its node (NULL, with the graph's sticky error set, on failure). */
static dp_node *param_node(dp_graph *g, dp_paramset *ps, const char *prefix, const char *suffix, int ndim,
                           const int64_t *shape, int flags, const dp_init *init, dp_tensor **out_t) {
    char name[256];
    if (!param_name(g, name, sizeof name, prefix, suffix)) return NULL;
    dp_tensor *t = NULL;
    dp_status s = dp_paramset_get_or_add(ps, name, ndim, shape, flags, init, &t);
    if (s != DP_OK) {
        /* The paramset wrote the message into the context; make it the graph's sticky error. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dp_ctx_error(g->ctx));
        dp_graph_fail(g, s, "%s", msg);
        return NULL;
    }
    if (out_t) *out_t = t;
    if (flags & DP_PARAM_BUFFER) return NULL; /* buffers are not graph nodes */
    return dp_param(g, t);
}

/* Common argument checks; returns 0 (with a sticky error recorded) when building must stop. */
static int layer_args(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, int min_ndim, int max_ndim,
                      const char *fn) {
    if (!g || g->status != DP_OK) return 0;
    if (!ps || !name || !*name) {
        dp_graph_fail(g, DP_ERR_NULL, "%s: the paramset and a non-empty name are required", fn);
        return 0;
    }
    if (!x) {
        dp_graph_fail(g, DP_ERR_NULL, "%s '%s': the input node is NULL", fn, name);
        return 0;
    }
    if (dp_paramset_ctx(ps) != g->ctx) {
        dp_graph_fail(g, DP_ERR_ARG, "%s '%s': the paramset belongs to another context", fn, name);
        return 0;
    }
    if (x->val.ndim < min_ndim || x->val.ndim > max_ndim) {
        char b[64];
        dp_graph_fail(g, DP_ERR_SHAPE, "%s '%s': the input has shape %s, expected rank %d%s", fn, name, DP_SHAPE_STR(&x->val, b),
                      min_ndim, min_ndim == max_ndim ? "" : " or more");
        return 0;
    }
    return 1;
}

static const dp_init torch_default = {DP_INIT_TORCH_DEFAULT, 0.0f, 0.0f};
static const dp_init zeros_init = {DP_INIT_ZEROS, 0.0f, 0.0f};
static const dp_init ones_init = {DP_INIT_ONES, 0.0f, 0.0f};

/* The bias initialiser that goes with a weight of the given fan_in. */
static dp_init bias_init(const dp_init *init, int64_t fan_in) {
    if (init) return zeros_init;
    dp_init b = torch_default;
    b.b = (float)fan_in;
    return b;
}

static int groups_of(const dp_conv_opts *o) { return (o && o->groups > 0) ? o->groups : 1; }

dp_node *dp_nn_conv2d(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, int out_ch, int kh, int kw,
                      const dp_conv_opts *opts, int bias, const dp_init *init) {
    if (!layer_args(g, ps, name, x, 4, 4, "dp_nn_conv2d")) return NULL;
    int64_t ci = x->val.shape[1];
    int groups = groups_of(opts);
    if (out_ch < 1 || kh < 1 || kw < 1 || ci % groups || out_ch % groups) {
        dp_graph_fail(g, DP_ERR_ARG, "dp_nn_conv2d '%s': %lld -> %d channels, kernel %dx%d, groups %d do not fit", name,
                      (long long)ci, out_ch, kh, kw, groups);
        return NULL;
    }
    int64_t wshape[4] = {out_ch, ci / groups, kh, kw};
    dp_node *w = param_node(g, ps, name, "weight", 4, wshape, DP_PARAM_TRAINABLE, init ? init : &torch_default, NULL);
    if (!w) return NULL; /* stop at the first problem: its message stays in the context */
    dp_node *b = NULL;
    if (bias) {
        dp_init bi = bias_init(init, wshape[1] * kh * kw);
        int64_t bshape[1] = {out_ch};
        b = param_node(g, ps, name, "bias", 1, bshape, DP_PARAM_TRAINABLE, &bi, NULL);
        if (!b) return NULL;
    }
    return dp_conv2d(g, x, w, b, opts);
}

dp_node *dp_nn_deconv2d(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, int out_ch, int kh, int kw,
                        const dp_conv_opts *opts, int bias, const dp_init *init) {
    if (!layer_args(g, ps, name, x, 4, 4, "dp_nn_deconv2d")) return NULL;
    int64_t ci = x->val.shape[1];
    int groups = groups_of(opts);
    if (out_ch < 1 || kh < 1 || kw < 1 || ci % groups || out_ch % groups) {
        dp_graph_fail(g, DP_ERR_ARG, "dp_nn_deconv2d '%s': %lld -> %d channels, kernel %dx%d, groups %d do not fit", name,
                      (long long)ci, out_ch, kh, kw, groups);
        return NULL;
    }
    int64_t wshape[4] = {ci, out_ch / groups, kh, kw};
    dp_node *w = param_node(g, ps, name, "weight", 4, wshape, DP_PARAM_TRAINABLE, init ? init : &torch_default, NULL);
    if (!w) return NULL; /* stop at the first problem: its message stays in the context */
    dp_node *b = NULL;
    if (bias) {
        dp_init bi = bias_init(init, wshape[1] * kh * kw); /* PyTorch: fan_in from dim 1 of the weight */
        int64_t bshape[1] = {out_ch};
        b = param_node(g, ps, name, "bias", 1, bshape, DP_PARAM_TRAINABLE, &bi, NULL);
        if (!b) return NULL;
    }
    return dp_conv_transpose2d(g, x, w, b, opts);
}

dp_node *dp_nn_dense(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, int out_features, int bias,
                     const dp_init *init) {
    if (!layer_args(g, ps, name, x, 2, 2, "dp_nn_dense")) return NULL;
    int64_t in = x->val.shape[1];
    if (out_features < 1) {
        dp_graph_fail(g, DP_ERR_ARG, "dp_nn_dense '%s': %d output features", name, out_features);
        return NULL;
    }
    int64_t wshape[2] = {out_features, in};
    dp_node *w = param_node(g, ps, name, "weight", 2, wshape, DP_PARAM_TRAINABLE, init ? init : &torch_default, NULL);
    if (!w) return NULL; /* stop at the first problem: its message stays in the context */
    dp_node *b = NULL;
    if (bias) {
        dp_init bi = bias_init(init, in);
        int64_t bshape[1] = {out_features};
        b = param_node(g, ps, name, "bias", 1, bshape, DP_PARAM_TRAINABLE, &bi, NULL);
        if (!b) return NULL;
    }
    return dp_dense(g, x, w, b);
}

dp_node *dp_nn_batchnorm2d(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, float momentum, float eps) {
    if (!layer_args(g, ps, name, x, 4, 4, "dp_nn_batchnorm2d")) return NULL;
    int64_t c[1] = {x->val.shape[1]};
    dp_tensor *rm = NULL, *rv = NULL;
    dp_node *w = param_node(g, ps, name, "weight", 1, c, DP_PARAM_TRAINABLE, &ones_init, NULL);
    if (!w) return NULL;
    dp_node *b = param_node(g, ps, name, "bias", 1, c, DP_PARAM_TRAINABLE, &zeros_init, NULL);
    if (!b) return NULL;
    param_node(g, ps, name, "running_mean", 1, c, DP_PARAM_BUFFER, &zeros_init, &rm);
    if (!rm) return NULL;
    param_node(g, ps, name, "running_var", 1, c, DP_PARAM_BUFFER, &ones_init, &rv);
    if (!rv) return NULL;
    return dp_batchnorm2d(g, x, w, b, rm, rv, momentum, eps);
}
