/* Reductions: sum and mean over one axis or all elements, summed in double.
 * Split over the thread pool by output element (or, for one long sum, by
 * chunks fixed by the size), so results do not depend on the thread count. */
#include "core/internal.h"
#include "kernels/ew.h"

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

#define RED_CHUNK 16384
#define RED_MAX_CHUNKS 64
#define RED_BLOCK 256 /* columns summed together when inner > 1 */

typedef struct red_job {
    int64_t outer, len, inner, chunk;
    const float *x, *gy;
    float *y, *gx;
    float s;
    double part[RED_MAX_CHUNKS];
} red_job;

/* inner == 1: one contiguous sum per output */
static void red_rows(void *arg, int64_t o0, int64_t o1, int tid) {
    (void)tid;
    red_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    for (int64_t o = o0; o < o1; o++) j->y[o] = (float)k->sum(j->x + o * j->len, j->len) * j->s;
}
/* one long sum: fixed chunks */
static void red_chunks(void *arg, int64_t c0, int64_t c1, int tid) {
    (void)tid;
    red_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    for (int64_t c = c0; c < c1; c++) {
        int64_t b = c * j->chunk, e = b + j->chunk < j->len ? b + j->chunk : j->len;
        j->part[c] = k->sum(j->x + b, e - b);
    }
}
/* inner > 1: blocks of columns, rows added in order */
static void red_cols(void *arg, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    red_job *j = arg;
    const int64_t nb = (j->inner + RED_BLOCK - 1) / RED_BLOCK;
    double acc[RED_BLOCK];
    for (int64_t b = b0; b < b1; b++) {
        int64_t o = b / nb, i0 = (b % nb) * RED_BLOCK, w = j->inner - i0 < RED_BLOCK ? j->inner - i0 : RED_BLOCK;
        for (int64_t i = 0; i < w; i++) acc[i] = 0.0;
        for (int64_t l = 0; l < j->len; l++) {
            const float *p = j->x + (o * j->len + l) * j->inner + i0;
            for (int64_t i = 0; i < w; i++) acc[i] += p[i];
        }
        for (int64_t i = 0; i < w; i++) j->y[o * j->inner + i0 + i] = (float)acc[i] * j->s;
    }
}

static void reduce_fwd(dp_graph *g, dp_node *n) {
    red_job j = {.x = dp_f(&n->in[0]->val), .y = dp_f(&n->val)};
    reduce_split(n, &j.outer, &j.len, &j.inner);
    j.s = n->op == DP_OP_MEAN ? 1.0f / (float)j.len : 1.0f;
    if (j.inner == 1 && j.outer == 1) {
        j.chunk = (j.len + RED_MAX_CHUNKS - 1) / RED_MAX_CHUNKS;
        if (j.chunk < RED_CHUNK) j.chunk = RED_CHUNK;
        int64_t chunks = (j.len + j.chunk - 1) / j.chunk;
        dp_parallel_for_cost(g->ctx, chunks, j.chunk, red_chunks, &j);
        double acc = 0.0;
        for (int64_t c = 0; c < chunks; c++) acc += j.part[c];
        j.y[0] = (float)acc * j.s;
    } else if (j.inner == 1) {
        dp_parallel_for_cost(g->ctx, j.outer, j.len, red_rows, &j);
    } else {
        int64_t nb = (j.inner + RED_BLOCK - 1) / RED_BLOCK;
        dp_parallel_for_cost(g->ctx, j.outer * nb, j.len * (j.inner < RED_BLOCK ? j.inner : RED_BLOCK), red_cols, &j);
    }
}

static void red_bwd_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    red_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    for (int64_t r = r0; r < r1; r++) {
        if (j->inner == 1) { /* r = o: a whole row gets gy[o] * s */
            k->adds(j->gx + r * j->len, j->gy[r] * j->s, j->len);
        } else { /* r = o * len + l: gx row += gy row * s */
            const float *gy = j->gy + (r / j->len) * j->inner;
            k->unary_b(DP_EW_SCALE, j->gx + r * j->inner, gy, gy, gy, j->inner, j->s, 1);
        }
    }
}

static void reduce_bwd(dp_graph *g, dp_node *n) {
    if (!dp_wants_grad(n->in[0])) return;
    red_job j = {.gy = dp_f(&n->grad), .gx = dp_f(&n->in[0]->grad)};
    reduce_split(n, &j.outer, &j.len, &j.inner);
    j.s = n->op == DP_OP_MEAN ? 1.0f / (float)j.len : 1.0f;
    if (j.inner == 1)
        dp_parallel_for_cost(g->ctx, j.outer, 2 * j.len, red_bwd_rows, &j);
    else
        dp_parallel_for_cost(g->ctx, j.outer * j.len, 3 * j.inner, red_bwd_rows, &j);
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
