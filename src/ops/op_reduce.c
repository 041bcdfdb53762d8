/* Reductions: sum and mean over one axis or all elements. */
#include "core/internal.h"

/* ip[0] = axis (DP_AXIS_ALL for all), ip[1] = keepdim. The input is viewed
 * as [outer, len, inner] with len the reduced extent. */
static void reduce_split(const dp_node *n, int64_t *outer, int64_t *len, int64_t *inner) {
    const dp_tensor *x = &n->in[0]->val;
    int axis = n->ip[0];
    if (axis == DP_AXIS_ALL) {
        *outer = 1;
        *len = dp_numel(x);
        *inner = 1;
        return;
    }
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= x->shape[i];
    *len = x->shape[axis];
    for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
}

static dp_status reduce_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val;
    int axis = n->ip[0], keep = n->ip[1];
    int64_t sh[DP_MAX_DIMS];
    if (axis == DP_AXIS_ALL) {
        int nd = keep ? x->ndim : 0;
        for (int i = 0; i < nd; i++) sh[i] = 1;
        dp_tensor_set_contiguous(&n->val, DP_F32, nd, sh);
        return DP_OK;
    }
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) return dp_node_error(g, n, DP_ERR_ARG, "axis %d is out of range for rank %d", n->ip[0], x->ndim);
    n->ip[0] = axis;
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i == axis) {
            if (keep) sh[nd++] = 1;
        } else {
            sh[nd++] = x->shape[i];
        }
    }
    dp_tensor_set_contiguous(&n->val, DP_F32, nd, sh);
    return DP_OK;
}

static void reduce_fwd(dp_graph *g, dp_node *n) {
    (void)g;
    int64_t outer, len, inner;
    reduce_split(n, &outer, &len, &inner);
    const float *x = dp_f(&n->in[0]->val);
    float *y = dp_f(&n->val);
    float s = n->op == DP_OP_MEAN ? 1.0f / (float)len : 1.0f;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double acc = 0.0; /* double: sums of many floats stay accurate and order-stable */
            for (int64_t l = 0; l < len; l++) acc += x[(o * len + l) * inner + i];
            y[o * inner + i] = (float)acc * s;
        }
}

static void reduce_bwd(dp_graph *g, dp_node *n) {
    (void)g;
    if (!dp_wants_grad(n->in[0])) return;
    int64_t outer, len, inner;
    reduce_split(n, &outer, &len, &inner);
    const float *gy = dp_f(&n->grad);
    float *gx = dp_f(&n->in[0]->grad);
    float s = n->op == DP_OP_MEAN ? 1.0f / (float)len : 1.0f;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t l = 0; l < len; l++)
            for (int64_t i = 0; i < inner; i++) gx[(o * len + l) * inner + i] += gy[o * inner + i] * s;
}

const dp_op_def dp_op_sum = {"sum", reduce_shape, reduce_fwd, reduce_bwd, 0};
const dp_op_def dp_op_mean = {"mean", reduce_shape, reduce_fwd, reduce_bwd, 0};

static dp_node *reduce(dp_graph *g, int op, dp_node *x, int axis, int keepdim) {
    dp_node *n = dp_node_begin(g, op, 1, &x);
    if (n) {
        n->ip[0] = axis;
        n->ip[1] = keepdim ? 1 : 0;
    }
    return dp_node_finish(g, n);
}
dp_node *dp_sum(dp_graph *g, dp_node *x, int axis, int keepdim) { return reduce(g, DP_OP_SUM, x, axis, keepdim); }
dp_node *dp_mean(dp_graph *g, dp_node *x, int axis, int keepdim) { return reduce(g, DP_OP_MEAN, x, axis, keepdim); }
