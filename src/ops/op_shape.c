/* Shape ops: reshape/flatten (views), stop_gradient (view), concat, slice. */
#include "core/internal.h"

/* ------------------------------------------------------------ reshape: shares storage and gradient */
static dp_status reshape_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val;
    int nd = n->ip[0];
    int64_t sh[DP_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < nd; i++) {
        sh[i] = n->ip[1 + i];
        if (sh[i] == -1 && infer < 0) {
            infer = i;
        } else if (sh[i] <= 0) {
            return dp_node_error(g, n, DP_ERR_SHAPE, "dimension %d is %lld (one -1 is allowed)", i, (long long)sh[i]);
        } else {
            known *= sh[i];
        }
    }
    int64_t N = dp_numel(x);
    if (infer >= 0) {
        if (N % known) return dp_node_error(g, n, DP_ERR_SHAPE, "%lld elements do not divide by %lld", (long long)N, (long long)known);
        sh[infer] = N / known;
        known = N;
    }
    if (known != N) {
        char a[64], b[64];
        return dp_node_error(g, n, DP_ERR_SHAPE, "cannot reshape %s (%lld elements) to %s", DP_SHAPE_STR(x, a), (long long)N,
                             dp_shape_str(nd, sh, b, sizeof b));
    }
    dp_tensor_set_contiguous(&n->val, DP_F32, nd, sh);
    return DP_OK;
}
const dp_op_def dp_op_reshape = {"reshape", reshape_shape, NULL, NULL, DP_OPF_VIEW | DP_OPF_GRAD_ALIAS};

dp_node *dp_reshape(dp_graph *g, dp_node *x, int ndim, const int64_t *shape) {
    dp_node *n = dp_node_begin(g, DP_OP_RESHAPE, 1, &x);
    if (!n) return NULL;
    if (ndim < 0 || ndim > DP_MAX_DIMS || (ndim && !shape)) {
        dp_node_error(g, n, DP_ERR_ARG, "rank %d is outside 0..%d (or shape is NULL)", ndim, DP_MAX_DIMS);
        return NULL;
    }
    n->ip[0] = ndim;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > INT32_MAX || shape[i] < -1) {
            dp_node_error(g, n, DP_ERR_SHAPE, "dimension %d is out of range", i);
            return NULL;
        }
        n->ip[1 + i] = (int)shape[i];
    }
    return dp_node_finish(g, n);
}

dp_node *dp_flatten(dp_graph *g, dp_node *x) {
    if (!x) return dp_reshape(g, x, 0, NULL);
    int64_t sh[2] = {x->val.ndim ? x->val.shape[0] : 1, -1};
    return dp_reshape(g, x, 2, sh);
}

/* ------------------------------------------------------------ stop_gradient */
static dp_status identity_shape(dp_graph *g, dp_node *n) {
    (void)g;
    dp_tensor_set_contiguous(&n->val, DP_F32, n->in[0]->val.ndim, n->in[0]->val.shape);
    return DP_OK;
}
static void stop_gradient_bwd(dp_graph *g, dp_node *n) {
    (void)g;
    (void)n; /* by definition: nothing flows back */
}
const dp_op_def dp_op_stop_gradient = {"stop_gradient", identity_shape, NULL, stop_gradient_bwd, DP_OPF_VIEW | DP_OPF_NO_GRAD};
dp_node *dp_stop_gradient(dp_graph *g, dp_node *x) { return dp_node_finish(g, dp_node_begin(g, DP_OP_STOP_GRADIENT, 1, &x)); }

/* ------------------------------------------------------------ concat */
/* The tensors are viewed as [outer, axis*inner] blocks: each input contributes
 * a contiguous run of len_i = shape_i[axis]*inner per outer index. */
static void axis_split(const dp_tensor *t, int axis, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= t->shape[i];
    for (int i = axis + 1; i < t->ndim; i++) *inner *= t->shape[i];
}

static dp_status concat_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *x0 = &n->in[0]->val;
    int axis = n->ip[0];
    if (axis < 0) axis += x0->ndim;
    if (axis < 0 || axis >= x0->ndim) return dp_node_error(g, n, DP_ERR_ARG, "axis %d is out of range for rank %d", n->ip[0], x0->ndim);
    n->ip[0] = axis;
    int64_t sh[DP_MAX_DIMS];
    memcpy(sh, x0->shape, sizeof sh);
    sh[axis] = 0;
    for (int k = 0; k < n->n_in; k++) {
        const dp_tensor *x = &n->in[k]->val;
        if (x->ndim != x0->ndim) return dp_node_error(g, n, DP_ERR_SHAPE, "input %d has rank %d, input 0 has %d", k, x->ndim, x0->ndim);
        for (int i = 0; i < x->ndim; i++)
            if (i != axis && x->shape[i] != x0->shape[i]) {
                char a[64], b[64];
                return dp_node_error(g, n, DP_ERR_SHAPE, "input %d is %s, input 0 is %s: only axis %d may differ", k,
                                     DP_SHAPE_STR(x, a), DP_SHAPE_STR(x0, b), axis);
            }
        sh[axis] += x->shape[axis];
    }
    dp_tensor_set_contiguous(&n->val, DP_F32, x0->ndim, sh);
    return DP_OK;
}
static void concat_fwd(dp_graph *g, dp_node *n) {
    (void)g;
    int axis = n->ip[0];
    int64_t outer, inner;
    axis_split(&n->val, axis, &outer, &inner);
    int64_t row = n->val.shape[axis] * inner, off = 0;
    float *y = dp_f(&n->val);
    for (int k = 0; k < n->n_in; k++) {
        int64_t len = n->in[k]->val.shape[axis] * inner;
        const float *x = dp_f(&n->in[k]->val);
        for (int64_t o = 0; o < outer; o++) memcpy(y + o * row + off, x + o * len, (size_t)len * sizeof(float));
        off += len;
    }
}
static void concat_bwd(dp_graph *g, dp_node *n) {
    (void)g;
    int axis = n->ip[0];
    int64_t outer, inner;
    axis_split(&n->val, axis, &outer, &inner);
    int64_t row = n->val.shape[axis] * inner, off = 0;
    const float *gy = dp_f(&n->grad);
    for (int k = 0; k < n->n_in; k++) {
        int64_t len = n->in[k]->val.shape[axis] * inner;
        if (dp_wants_grad(n->in[k])) {
            float *gx = dp_f(&n->in[k]->grad);
            for (int64_t o = 0; o < outer; o++)
                for (int64_t j = 0; j < len; j++) gx[o * len + j] += gy[o * row + off + j];
        }
        off += len;
    }
}
const dp_op_def dp_op_concat = {"concat", concat_shape, concat_fwd, concat_bwd, 0};
dp_node *dp_concat(dp_graph *g, int n_in, dp_node *const *xs, int axis) {
    if (g && g->status == DP_OK && (n_in < 1 || !xs)) {
        dp_graph_fail(g, DP_ERR_ARG, "concat: needs at least one input (got %d)", n_in);
        return NULL;
    }
    dp_node *n = dp_node_begin(g, DP_OP_CONCAT, n_in, xs);
    if (n) n->ip[0] = axis;
    return dp_node_finish(g, n);
}

/* ------------------------------------------------------------ slice (copies; a view would break the planner's aliasing rules) */
static dp_status slice_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val;
    int axis = n->ip[0];
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) return dp_node_error(g, n, DP_ERR_ARG, "axis %d is out of range for rank %d", n->ip[0], x->ndim);
    int64_t s = n->ip[1], e = n->ip[2];
    if (s < 0 || e > x->shape[axis] || s >= e)
        return dp_node_error(g, n, DP_ERR_ARG, "range [%lld,%lld) is not a non-empty part of [0,%lld)", (long long)s, (long long)e,
                             (long long)x->shape[axis]);
    n->ip[0] = axis;
    int64_t sh[DP_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[axis] = e - s;
    dp_tensor_set_contiguous(&n->val, DP_F32, x->ndim, sh);
    return DP_OK;
}
static void slice_fwd(dp_graph *g, dp_node *n) {
    (void)g;
    int axis = n->ip[0];
    int64_t outer, inner;
    axis_split(&n->in[0]->val, axis, &outer, &inner);
    int64_t rin = n->in[0]->val.shape[axis] * inner, rout = n->val.shape[axis] * inner, off = n->ip[1] * inner;
    const float *x = dp_f(&n->in[0]->val);
    float *y = dp_f(&n->val);
    for (int64_t o = 0; o < outer; o++) memcpy(y + o * rout, x + o * rin + off, (size_t)rout * sizeof(float));
}
static void slice_bwd(dp_graph *g, dp_node *n) {
    (void)g;
    if (!dp_wants_grad(n->in[0])) return;
    int axis = n->ip[0];
    int64_t outer, inner;
    axis_split(&n->in[0]->val, axis, &outer, &inner);
    int64_t rin = n->in[0]->val.shape[axis] * inner, rout = n->val.shape[axis] * inner, off = n->ip[1] * inner;
    const float *gy = dp_f(&n->grad);
    float *gx = dp_f(&n->in[0]->grad);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < rout; j++) gx[o * rin + off + j] += gy[o * rout + j];
}
const dp_op_def dp_op_slice = {"slice", slice_shape, slice_fwd, slice_bwd, 0};
dp_node *dp_slice(dp_graph *g, dp_node *x, int axis, int64_t start, int64_t end) {
    dp_node *n = dp_node_begin(g, DP_OP_SLICE, 1, &x);
    if (!n) return NULL;
    if (start < 0 || end > INT32_MAX || start > end) {
        dp_node_error(g, n, DP_ERR_ARG, "range [%lld,%lld) is invalid", (long long)start, (long long)end);
        return NULL;
    }
    n->ip[0] = axis;
    n->ip[1] = (int)start;
    n->ip[2] = (int)end;
    return dp_node_finish(g, n);
}
