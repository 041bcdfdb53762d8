/* Parameter sets and initialisers. */
#include <math.h>

#include "core/internal.h"

struct dp_paramset {
    dp_ctx *ctx;
    dp_tensor **t;
    int n, cap;
};

dp_status dp_paramset_new(dp_ctx *ctx, dp_paramset **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!out) return dp_error(ctx, DP_ERR_NULL, "dp_paramset_new: out is NULL");
    dp_paramset *ps = dp_calloc(ctx, sizeof *ps);
    if (!ps) return dp_error(ctx, DP_ERR_NOMEM, "out of memory");
    ps->ctx = ctx;
    *out = ps;
    return DP_OK;
}

void dp_paramset_free(dp_paramset *ps) {
    if (!ps) return;
    dp_free(ps->ctx, ps->t);
    dp_free(ps->ctx, ps); /* the tensors live in the context's arena */
}

dp_ctx *dp_paramset_ctx(dp_paramset *ps) { return ps ? ps->ctx : NULL; }
int dp_paramset_count(const dp_paramset *ps) { return ps ? ps->n : 0; }
dp_tensor *dp_paramset_at(dp_paramset *ps, int i) { return (ps && i >= 0 && i < ps->n) ? ps->t[i] : NULL; }
int dp_paramset_is_buffer(const dp_paramset *ps, int i) {
    return (ps && i >= 0 && i < ps->n) ? (ps->t[i]->flags & DP_TF_BUFFER) != 0 : 0;
}

dp_tensor *dp_paramset_find(dp_paramset *ps, const char *name) {
    if (!ps || !name) return NULL;
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->t[i]->name, name) == 0) return ps->t[i];
    return NULL;
}

dp_status dp_paramset_get_or_add(dp_paramset *ps, const char *name, int ndim, const int64_t *shape, int flags,
                                 const dp_init *init, dp_tensor **out) {
    if (!ps) return DP_ERR_NULL;
    dp_ctx *ctx = ps->ctx;
    if (!name || !*name || !out) return dp_error(ctx, DP_ERR_NULL, "dp_paramset_get_or_add: name and out are required");
    *out = NULL;
    dp_tensor *t = dp_paramset_find(ps, name);
    if (t) {
        int same = t->ndim == ndim;
        for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
        if (!same) {
            char a[64], b[64];
            return dp_error(ctx, DP_ERR_SHAPE, "parameter '%s' exists with shape %s, asked for %s", name, DP_SHAPE_STR(t, a),
                            dp_shape_str(ndim, shape, b, sizeof b));
        }
        *out = t;
        return DP_OK;
    }
    dp_status s = dp_tensor_new(ctx, DP_F32, ndim, shape, &t);
    if (s) return s;
    t->name = dp_arena_strdup(&ctx->arena, name);
    t->flags = DP_TF_PARAM | ((flags & DP_PARAM_BUFFER) ? DP_TF_BUFFER : 0);
    if (init) t->init = *init;
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 32;
        dp_tensor **nt = dp_malloc(ctx, sizeof(dp_tensor *) * (size_t)cap);
        if (!nt) return dp_error(ctx, DP_ERR_NOMEM, "out of memory");
        if (ps->t) memcpy(nt, ps->t, sizeof(dp_tensor *) * (size_t)ps->n);
        dp_free(ctx, ps->t);
        ps->t = nt;
        ps->cap = cap;
    }
    ps->t[ps->n++] = t;
    if (init) {
        dp_rng r;
        dp_rng_stream(&r, ctx->seed, (uint64_t)ps->n - 1);
        if ((s = dp_tensor_init(t, init, &r))) return s;
    }
    *out = t;
    return DP_OK;
}

int64_t dp_paramset_numel(const dp_paramset *ps, int trainable_only) {
    int64_t n = 0;
    for (int i = 0; ps && i < ps->n; i++)
        if (!trainable_only || !(ps->t[i]->flags & DP_TF_BUFFER)) n += dp_numel(ps->t[i]);
    return n;
}

dp_status dp_paramset_init(dp_paramset *ps, uint64_t seed) {
    if (!ps) return DP_ERR_NULL;
    for (int i = 0; i < ps->n; i++) {
        dp_rng r;
        dp_rng_stream(&r, seed, (uint64_t)i);
        dp_status s = dp_tensor_init(ps->t[i], &ps->t[i]->init, &r);
        if (s) return s;
    }
    return DP_OK;
}

dp_tensor *dp_param_grad(dp_tensor *p) {
    if (!p) return NULL;
    if (!p->grad) {
        dp_tensor *gt;
        if (dp_tensor_new(p->ctx, DP_F32, p->ndim, p->shape, &gt) != DP_OK) return NULL;
        p->grad = gt;
    }
    return p->grad;
}

dp_status dp_paramset_zero_grad(dp_paramset *ps) {
    if (!ps) return DP_ERR_NULL;
    for (int i = 0; i < ps->n; i++)
        if (ps->t[i]->grad) memset(ps->t[i]->grad->data, 0, (size_t)dp_numel(ps->t[i]) * sizeof(float));
    return DP_OK;
}

/* fan_in/fan_out as PyTorch computes them: dims 1 and 0 times the receptive field. */
static void fans(const dp_tensor *t, double *fan_in, double *fan_out) {
    if (t->ndim < 2) {
        *fan_in = *fan_out = (double)(t->ndim ? t->shape[0] : 1);
        return;
    }
    double rf = 1;
    for (int i = 2; i < t->ndim; i++) rf *= (double)t->shape[i];
    *fan_in = (double)t->shape[1] * rf;
    *fan_out = (double)t->shape[0] * rf;
}

dp_status dp_tensor_init(dp_tensor *t, const dp_init *init, dp_rng *rng) {
    if (!t) return DP_ERR_NULL;
    if (!init || !rng) return dp_error(t->ctx, DP_ERR_NULL, "dp_tensor_init: NULL argument");
    if (t->dtype != DP_F32) return dp_error(t->ctx, DP_ERR_DTYPE, "dp_tensor_init: '%s' is not F32", t->name);
    if (!dp_tensor_is_contiguous(t)) return dp_error(t->ctx, DP_ERR_ARG, "dp_tensor_init: '%s' is not contiguous", t->name);
    float *x = t->data;
    int64_t n = dp_numel(t);
    double fi, fo;
    fans(t, &fi, &fo);
    double a = init->a, b = init->b, bound, std;
    switch (init->kind) {
    case DP_INIT_ZEROS: memset(x, 0, (size_t)n * sizeof(float)); break;
    case DP_INIT_ONES: for (int64_t i = 0; i < n; i++) x[i] = 1.0f; break;
    case DP_INIT_CONSTANT: for (int64_t i = 0; i < n; i++) x[i] = (float)a; break;
    case DP_INIT_NORMAL: for (int64_t i = 0; i < n; i++) x[i] = (float)(a + b * dp_rng_normal(rng)); break;
    case DP_INIT_UNIFORM: for (int64_t i = 0; i < n; i++) x[i] = (float)(a + (b - a) * dp_rng_uniform(rng)); break;
    case DP_INIT_XAVIER_UNIFORM:
        bound = (a > 0 ? a : 1.0) * sqrt(6.0 / (fi + fo));
        for (int64_t i = 0; i < n; i++) x[i] = (float)((2.0 * dp_rng_uniform(rng) - 1.0) * bound);
        break;
    case DP_INIT_XAVIER_NORMAL:
        std = (a > 0 ? a : 1.0) * sqrt(2.0 / (fi + fo));
        for (int64_t i = 0; i < n; i++) x[i] = (float)(std * dp_rng_normal(rng));
        break;
    case DP_INIT_KAIMING_UNIFORM:
        bound = sqrt(2.0 / (1.0 + a * a)) * sqrt(3.0 / fi);
        for (int64_t i = 0; i < n; i++) x[i] = (float)((2.0 * dp_rng_uniform(rng) - 1.0) * bound);
        break;
    case DP_INIT_KAIMING_NORMAL:
        std = sqrt(2.0 / (1.0 + a * a)) / sqrt(fi);
        for (int64_t i = 0; i < n; i++) x[i] = (float)(std * dp_rng_normal(rng));
        break;
    case DP_INIT_TORCH_DEFAULT:
        /* weights: kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in)); biases: U(±1/sqrt(b)) */
        bound = 1.0 / sqrt(t->ndim >= 2 ? fi : (b > 0 ? b : 1.0));
        for (int64_t i = 0; i < n; i++) x[i] = (float)((2.0 * dp_rng_uniform(rng) - 1.0) * bound);
        break;
    default: return dp_error(t->ctx, DP_ERR_ARG, "dp_tensor_init: unknown initialiser %d", (int)init->kind);
    }
    return DP_OK;
}
