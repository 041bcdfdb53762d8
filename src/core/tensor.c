/* Tensors: shapes, strides, views, copies. */
#include <stdio.h>

#include "core/internal.h"

static const char *const dtype_names[DP_DTYPE_COUNT] = {"F32", "F16", "BF16", "I8", "I32"};
static const size_t dtype_sizes[DP_DTYPE_COUNT] = {4, 2, 2, 1, 4};

const char *dp_dtype_name(dp_dtype t) { return ((unsigned)t < DP_DTYPE_COUNT) ? dtype_names[t] : "?"; }
size_t dp_dtype_size(dp_dtype t) { return ((unsigned)t < DP_DTYPE_COUNT) ? dtype_sizes[t] : 0; }

int64_t dp_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

const char *dp_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

void dp_tensor_set_contiguous(dp_tensor *t, dp_dtype dtype, int ndim, const int64_t *shape) {
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
    for (int i = ndim; i < DP_MAX_DIMS; i++) {
        t->shape[i] = 1;
        t->stride[i] = 1;
    }
}

/* Checks a shape given by a caller; returns the element count or -1 (message in ctx). */
static int64_t check_shape(dp_ctx *ctx, int ndim, const int64_t *shape, size_t esize) {
    if (ndim < 0 || ndim > DP_MAX_DIMS) {
        dp_error(ctx, DP_ERR_ARG, "tensor rank %d is outside 0..%d", ndim, DP_MAX_DIMS);
        return -1;
    }
    if (ndim > 0 && !shape) {
        dp_error(ctx, DP_ERR_NULL, "shape is NULL");
        return -1;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) {
            dp_error(ctx, DP_ERR_SHAPE, "dimension %d is %lld; dimensions must be positive", i, (long long)shape[i]);
            return -1;
        }
        if (shape[i] > (int64_t)(ctx->max_tensor_bytes / esize) || n > (int64_t)(ctx->max_tensor_bytes / esize) / shape[i]) {
            dp_error(ctx, DP_ERR_NOMEM, "tensor of this shape exceeds the size limit of %zu bytes", ctx->max_tensor_bytes);
            return -1;
        }
        n *= shape[i];
    }
    return n;
}

dp_status dp_tensor_alloc_storage(dp_ctx *ctx, dp_tensor *t) {
    size_t bytes = (size_t)dp_numel(t) * dp_dtype_size(t->dtype);
    if (bytes > ctx->max_tensor_bytes)
        return dp_error(ctx, DP_ERR_NOMEM, "tensor of %zu bytes exceeds the limit of %zu", bytes, ctx->max_tensor_bytes);
    t->data = dp_arena_alloc(&ctx->arena, bytes ? bytes : 1, DP_ALIGN);
    if (!t->data) return dp_error(ctx, DP_ERR_NOMEM, "out of memory allocating %zu bytes for a tensor", bytes);
    return DP_OK;
}

dp_status dp_tensor_new(dp_ctx *ctx, dp_dtype dtype, int ndim, const int64_t *shape, dp_tensor **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!out) return dp_error(ctx, DP_ERR_NULL, "dp_tensor_new: out is NULL");
    *out = NULL;
    if (dtype != DP_F32) return dp_error(ctx, DP_ERR_DTYPE, "dtype %s is not supported yet (only F32)", dp_dtype_name(dtype));
    if (check_shape(ctx, ndim, shape, dp_dtype_size(dtype)) < 0) return ctx->last_status;
    dp_tensor *t = dp_arena_alloc(&ctx->arena, sizeof *t, 8);
    if (!t) return dp_error(ctx, DP_ERR_NOMEM, "out of memory");
    t->ctx = ctx;
    t->name = "";
    dp_tensor_set_contiguous(t, dtype, ndim, shape);
    dp_status s = dp_tensor_alloc_storage(ctx, t);
    if (s != DP_OK) return s;
    *out = t;
    return DP_OK;
}

static dp_status new_view(dp_ctx *ctx, const dp_tensor *t, dp_tensor **out) {
    dp_tensor *v = dp_arena_alloc(&ctx->arena, sizeof *v, 8);
    if (!v) return dp_error(ctx, DP_ERR_NOMEM, "out of memory");
    *v = *t;
    v->grad = NULL;
    v->flags = 0;
    *out = v;
    return DP_OK;
}

dp_status dp_tensor_reshape(dp_ctx *ctx, const dp_tensor *t, int ndim, const int64_t *shape, dp_tensor **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!t || !out) return dp_error(ctx, DP_ERR_NULL, "dp_tensor_reshape: NULL argument");
    *out = NULL;
    if (!dp_tensor_is_contiguous(t))
        return dp_error(ctx, DP_ERR_ARG, "dp_tensor_reshape: the tensor is not contiguous (a permuted view); copy it first");
    int64_t sh[DP_MAX_DIMS];
    if (ndim < 0 || ndim > DP_MAX_DIMS || (ndim && !shape))
        return dp_error(ctx, DP_ERR_ARG, "dp_tensor_reshape: bad rank %d", ndim);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (sh[i] == -1) {
            if (infer >= 0) return dp_error(ctx, DP_ERR_SHAPE, "dp_tensor_reshape: more than one -1");
            infer = i;
        } else if (sh[i] <= 0) {
            return dp_error(ctx, DP_ERR_SHAPE, "dp_tensor_reshape: dimension %d is %lld", i, (long long)sh[i]);
        } else {
            known *= sh[i];
        }
    }
    int64_t n = dp_numel(t);
    if (infer >= 0) {
        if (n % known) return dp_error(ctx, DP_ERR_SHAPE, "dp_tensor_reshape: %lld elements do not divide by %lld", (long long)n, (long long)known);
        sh[infer] = n / known;
        known = n;
    }
    if (known != n) {
        char a[64];
        return dp_error(ctx, DP_ERR_SHAPE, "dp_tensor_reshape: %s has %lld elements, the new shape %lld",
                        DP_SHAPE_STR(t, a), (long long)n, (long long)known);
    }
    dp_status s = new_view(ctx, t, out);
    if (s == DP_OK) dp_tensor_set_contiguous(*out, t->dtype, ndim, sh);
    return s;
}

dp_status dp_tensor_permute(dp_ctx *ctx, const dp_tensor *t, const int *perm, dp_tensor **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!t || !perm || !out) return dp_error(ctx, DP_ERR_NULL, "dp_tensor_permute: NULL argument");
    *out = NULL;
    int seen[DP_MAX_DIMS] = {0};
    for (int i = 0; i < t->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= t->ndim || seen[perm[i]])
            return dp_error(ctx, DP_ERR_ARG, "dp_tensor_permute: entry %d (%d) is not a permutation of 0..%d", i, perm[i], t->ndim - 1);
        seen[perm[i]] = 1;
    }
    dp_status s = new_view(ctx, t, out);
    if (s != DP_OK) return s;
    for (int i = 0; i < t->ndim; i++) {
        (*out)->shape[i] = t->shape[perm[i]];
        (*out)->stride[i] = t->stride[perm[i]];
    }
    return DP_OK;
}

dp_status dp_tensor_slice(dp_ctx *ctx, const dp_tensor *t, int axis, int64_t start, int64_t end, dp_tensor **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!t || !out) return dp_error(ctx, DP_ERR_NULL, "dp_tensor_slice: NULL argument");
    *out = NULL;
    if (axis < 0) axis += t->ndim;
    if (axis < 0 || axis >= t->ndim) return dp_error(ctx, DP_ERR_ARG, "dp_tensor_slice: axis out of range");
    if (start < 0 || end > t->shape[axis] || start >= end)
        return dp_error(ctx, DP_ERR_ARG, "dp_tensor_slice: range [%lld,%lld) is not inside [0,%lld)", (long long)start,
                        (long long)end, (long long)t->shape[axis]);
    dp_status s = new_view(ctx, t, out);
    if (s != DP_OK) return s;
    (*out)->shape[axis] = end - start;
    (*out)->data = (char *)t->data + (size_t)(start * t->stride[axis]) * dp_dtype_size(t->dtype);
    return DP_OK;
}

int dp_tensor_ndim(const dp_tensor *t) { return t ? t->ndim : -1; }
int64_t dp_tensor_dim(const dp_tensor *t, int axis) {
    if (!t) return -1;
    if (axis < 0) axis += t->ndim;
    return (axis >= 0 && axis < t->ndim) ? t->shape[axis] : -1;
}
const int64_t *dp_tensor_shape(const dp_tensor *t) { return t ? t->shape : NULL; }
const int64_t *dp_tensor_strides(const dp_tensor *t) { return t ? t->stride : NULL; }
int64_t dp_tensor_numel(const dp_tensor *t) { return t ? dp_numel(t) : 0; }
dp_dtype dp_tensor_dtype(const dp_tensor *t) { return t ? t->dtype : DP_DTYPE_COUNT; }
const char *dp_tensor_name(const dp_tensor *t) { return (t && t->name) ? t->name : ""; }
float *dp_tensor_f32(dp_tensor *t) { return (t && t->dtype == DP_F32) ? (float *)t->data : NULL; }
const float *dp_tensor_f32_const(const dp_tensor *t) { return (t && t->dtype == DP_F32) ? (const float *)t->data : NULL; }

int dp_tensor_is_contiguous(const dp_tensor *t) {
    if (!t) return 0;
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

/* Walk all elements of a strided tensor in row-major order. */
static void strided_copy(const dp_tensor *t, float *dense, int to_dense) {
    int64_t sh[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    int off = 4 - t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        sh[off + i] = t->shape[i];
        st[off + i] = t->stride[i];
    }
    float *base = t->data;
    int64_t k = 0;
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++) {
                float *row = base + a * st[0] + b * st[1] + c * st[2];
                for (int64_t d = 0; d < sh[3]; d++, k++) {
                    if (to_dense)
                        dense[k] = row[d * st[3]];
                    else
                        row[d * st[3]] = dense[k];
                }
            }
}

static dp_status check_copy(const dp_tensor *t, const void *p, size_t n) {
    if (!t || !p) return t ? dp_error(t->ctx, DP_ERR_NULL, "tensor copy: NULL buffer") : DP_ERR_NULL;
    if (t->dtype != DP_F32) return dp_error(t->ctx, DP_ERR_DTYPE, "tensor copy: tensor is %s, not F32", dp_dtype_name(t->dtype));
    if ((int64_t)n != dp_numel(t))
        return dp_error(t->ctx, DP_ERR_SHAPE, "tensor copy: %zu floats given for a tensor of %lld elements", n,
                        (long long)dp_numel(t));
    return DP_OK;
}

dp_status dp_tensor_copy_from(dp_tensor *t, const float *src, size_t n) {
    dp_status s = check_copy(t, src, n);
    if (s != DP_OK) return s;
    if (dp_tensor_is_contiguous(t))
        memcpy(t->data, src, n * sizeof(float));
    else
        strided_copy(t, (float *)src, 0);
    return DP_OK;
}

dp_status dp_tensor_copy_to(const dp_tensor *t, float *dst, size_t n) {
    dp_status s = check_copy(t, dst, n);
    if (s != DP_OK) return s;
    if (dp_tensor_is_contiguous(t))
        memcpy(dst, t->data, n * sizeof(float));
    else
        strided_copy(t, dst, 1);
    return DP_OK;
}

dp_status dp_tensor_fill(dp_tensor *t, float v) {
    if (!t) return DP_ERR_NULL;
    if (t->dtype != DP_F32) return dp_error(t->ctx, DP_ERR_DTYPE, "dp_tensor_fill: tensor is not F32");
    int64_t sh[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    int off = 4 - t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        sh[off + i] = t->shape[i];
        st[off + i] = t->stride[i];
    }
    float *base = t->data;
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++) {
                float *row = base + a * st[0] + b * st[1] + c * st[2];
                for (int64_t d = 0; d < sh[3]; d++) row[d * st[3]] = v;
            }
    return DP_OK;
}
