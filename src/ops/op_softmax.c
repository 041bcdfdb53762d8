/* Softmax and log-softmax along any axis (ip[0], normalised by the shape rule).
 * The input is viewed as [outer, len, inner] with len the softmax axis. Both
 * subtract the maximum first, so large logits never overflow. */
#include <math.h>

#include "core/internal.h"

static dp_status softmax_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val;
    int axis = n->ip[0];
    if (x->ndim == 0) return dp_node_error(g, n, DP_ERR_SHAPE, "x is a scalar; softmax needs at least one dimension");
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim)
        return dp_node_error(g, n, DP_ERR_ARG, "axis %d is out of range for rank %d", n->ip[0], x->ndim);
    n->ip[0] = axis;
    dp_tensor_set_contiguous(&n->val, DP_F32, x->ndim, x->shape);
    return DP_OK;
}

static void split(const dp_node *n, int64_t *outer, int64_t *len, int64_t *inner) {
    const dp_tensor *x = &n->in[0]->val;
    int axis = n->ip[0];
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= x->shape[i];
    *len = x->shape[axis];
    for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
}

/* Lines (o, i) are independent: split them over the thread pool. */
typedef struct sm_job {
    int64_t len, inner;
    int log_;
    const float *x, *y, *gy;
    float *out;
} sm_job;

static void sm_fwd_lines(void *arg, int64_t l0, int64_t l1, int tid) {
    (void)tid;
    const sm_job *j = arg;
    const int64_t len = j->len, inner = j->inner;
    for (int64_t line = l0; line < l1; line++) {
        int64_t o = line / inner, i = line % inner;
        const float *xp = j->x + o * len * inner + i;
        float *yp = j->out + o * len * inner + i;
        float m = xp[0];
        for (int64_t l = 1; l < len; l++)
            if (xp[l * inner] > m) m = xp[l * inner];
        double s = 0.0;
        for (int64_t l = 0; l < len; l++) {
            float e = expf(xp[l * inner] - m);
            if (!j->log_) yp[l * inner] = e;
            s += e;
        }
        if (j->log_) {
            float ls = (float)log(s);
            for (int64_t l = 0; l < len; l++) yp[l * inner] = xp[l * inner] - m - ls;
        } else {
            float r = (float)(1.0 / s);
            for (int64_t l = 0; l < len; l++) yp[l * inner] *= r;
        }
    }
}

static void softmax_any_fwd(dp_graph *g, dp_node *n, int log_) {
    int64_t outer;
    sm_job j = {.log_ = log_, .x = dp_f(&n->in[0]->val), .out = dp_f(&n->val)};
    split(n, &outer, &j.len, &j.inner);
    dp_parallel_for_cost(g->ctx, outer * j.inner, 8 * j.len, sm_fwd_lines, &j);
}

/* softmax: dx = y * (dy - sum(dy * y));  log_softmax: dx = dy - exp(y) * sum(dy). */
static void sm_bwd_lines(void *arg, int64_t l0, int64_t l1, int tid) {
    (void)tid;
    const sm_job *j = arg;
    const int64_t len = j->len, inner = j->inner;
    const float *y = j->y, *gy = j->gy;
    for (int64_t line = l0; line < l1; line++) {
        int64_t base = (line / inner) * len * inner + line % inner;
        double s = 0.0;
        for (int64_t l = 0; l < len; l++) {
            int64_t k = base + l * inner;
            s += j->log_ ? (double)gy[k] : (double)gy[k] * y[k];
        }
        float sf = (float)s;
        for (int64_t l = 0; l < len; l++) {
            int64_t k = base + l * inner;
            j->out[k] += j->log_ ? gy[k] - expf(y[k]) * sf : y[k] * (gy[k] - sf);
        }
    }
}

static void softmax_any_bwd(dp_graph *g, dp_node *n, int log_) {
    if (!dp_wants_grad(n->in[0])) return;
    int64_t outer;
    sm_job j = {.log_ = log_, .y = dp_f(&n->val), .gy = dp_f(&n->grad), .out = dp_f(&n->in[0]->grad)};
    split(n, &outer, &j.len, &j.inner);
    dp_parallel_for_cost(g->ctx, outer * j.inner, 8 * j.len, sm_bwd_lines, &j);
}

static void softmax_fwd(dp_graph *g, dp_node *n) { softmax_any_fwd(g, n, 0); }
static void softmax_bwd(dp_graph *g, dp_node *n) { softmax_any_bwd(g, n, 0); }
static void log_softmax_fwd(dp_graph *g, dp_node *n) { softmax_any_fwd(g, n, 1); }
static void log_softmax_bwd(dp_graph *g, dp_node *n) { softmax_any_bwd(g, n, 1); }

const dp_op_def dp_op_softmax = {"softmax", softmax_shape, softmax_fwd, softmax_bwd, 0};
const dp_op_def dp_op_log_softmax = {"log_softmax", softmax_shape, log_softmax_fwd, log_softmax_bwd, 0};

static dp_node *softmax_node(dp_graph *g, int op, dp_node *x, int axis) {
    dp_node *n = dp_node_begin(g, op, 1, &x);
    if (n) n->ip[0] = axis;
    return dp_node_finish(g, n);
}
dp_node *dp_softmax(dp_graph *g, dp_node *x, int axis) { return softmax_node(g, DP_OP_SOFTMAX, x, axis); }
dp_node *dp_log_softmax(dp_graph *g, dp_node *x, int axis) { return softmax_node(g, DP_OP_LOG_SOFTMAX, x, axis); }
