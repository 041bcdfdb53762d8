/* Matrix products: 2-D matmul with optional transposes, and dense (fully
 * connected) layers. Both are one dp_sgemm forward and one per input
 * gradient backward (beta = 1 accumulates into the gradient). */
#include "core/internal.h"
#include "kernels/vec.h"

/* ------------------------------------------------------------ matmul */
/* ip[0] = trans_a, ip[1] = trans_b. a is [M,K] (or [K,M]), b is [K,N] (or [N,K]). */
static dp_status matmul_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *a = &n->in[0]->val, *b = &n->in[1]->val;
    char x[64], y[64];
    if (a->ndim != 2 || b->ndim != 2)
        return dp_node_error(g, n, DP_ERR_SHAPE, "operands must be 2-D, got %s and %s", DP_SHAPE_STR(a, x),
                             DP_SHAPE_STR(b, y));
    int ta = n->ip[0], tb = n->ip[1];
    int64_t M = ta ? a->shape[1] : a->shape[0], Ka = ta ? a->shape[0] : a->shape[1];
    int64_t N = tb ? b->shape[0] : b->shape[1], Kb = tb ? b->shape[1] : b->shape[0];
    if (Ka != Kb)
        return dp_node_error(g, n, DP_ERR_SHAPE, "inner dimensions differ: %s%s x %s%s (%lld vs %lld)", DP_SHAPE_STR(a, x),
                             ta ? "^T" : "", DP_SHAPE_STR(b, y), tb ? "^T" : "", (long long)Ka, (long long)Kb);
    dp_tensor_set_contiguous(&n->val, DP_F32, 2, (int64_t[]){M, N});
    return DP_OK;
}

static void matmul_fwd(dp_graph *g, dp_node *n) {
    const dp_tensor *a = &n->in[0]->val, *b = &n->in[1]->val;
    int ta = n->ip[0], tb = n->ip[1];
    int64_t M = n->val.shape[0], N = n->val.shape[1], K = ta ? a->shape[0] : a->shape[1];
    dp_sgemm(g->ctx, ta, tb, M, N, K, 1.0f, a->data, a->shape[1], b->data, b->shape[1], 0.0f, n->val.data, N);
}

static void matmul_bwd(dp_graph *g, dp_node *n) {
    dp_node *A = n->in[0], *B = n->in[1];
    int ta = n->ip[0], tb = n->ip[1];
    int64_t M = n->val.shape[0], N = n->val.shape[1], K = ta ? A->val.shape[0] : A->val.shape[1];
    const float *a = A->val.data, *b = B->val.data, *gy = n->grad.data;
    int64_t lda = A->val.shape[1], ldb = B->val.shape[1];
    /* C = op(A) op(B): d op(A) = dC op(B)^T, d op(B) = op(A)^T dC; a stored
     * transpose gets the transposed product. */
    if (dp_wants_grad(A)) {
        float *ga = A->grad.data;
        if (!ta) /* dA [M,K] = dC [M,N] op(B)^T */
            dp_sgemm(g->ctx, 0, !tb, M, K, N, 1.0f, gy, N, b, ldb, 1.0f, ga, lda);
        else /* dA [K,M] = op(B) [K,N] dC^T */
            dp_sgemm(g->ctx, tb, 1, K, M, N, 1.0f, b, ldb, gy, N, 1.0f, ga, lda);
    }
    if (dp_wants_grad(B)) {
        float *gb = B->grad.data;
        if (!tb) /* dB [K,N] = op(A)^T dC */
            dp_sgemm(g->ctx, !ta, 0, K, N, M, 1.0f, a, lda, gy, N, 1.0f, gb, ldb);
        else /* dB [N,K] = dC^T op(A) */
            dp_sgemm(g->ctx, 1, ta, N, K, M, 1.0f, gy, N, a, lda, 1.0f, gb, ldb);
    }
}

const dp_op_def dp_op_matmul = {"matmul", matmul_shape, matmul_fwd, matmul_bwd, 0};

dp_node *dp_matmul(dp_graph *g, dp_node *a, dp_node *b, int trans_a, int trans_b) {
    dp_node *in[2] = {a, b};
    dp_node *n = dp_node_begin(g, DP_OP_MATMUL, 2, in);
    if (n) {
        n->ip[0] = trans_a ? 1 : 0;
        n->ip[1] = trans_b ? 1 : 0;
    }
    return dp_node_finish(g, n);
}

/* ------------------------------------------------------------ dense */
/* x [N,in], w [out,in], optional b [out] (n_in 3) → [N,out] = x w^T + b. */
static dp_status dense_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val, *w = &n->in[1]->val;
    char s1[64], s2[64];
    if (x->ndim != 2) return dp_node_error(g, n, DP_ERR_SHAPE, "x must be [N,in], got %s", DP_SHAPE_STR(x, s1));
    if (w->ndim != 2 || w->shape[1] != x->shape[1])
        return dp_node_error(g, n, DP_ERR_SHAPE, "w must be [out,%lld] for x %s, got %s", (long long)x->shape[1],
                             DP_SHAPE_STR(x, s1), DP_SHAPE_STR(w, s2));
    if (n->n_in == 3) {
        const dp_tensor *b = &n->in[2]->val;
        if (b->ndim != 1 || b->shape[0] != w->shape[0])
            return dp_node_error(g, n, DP_ERR_SHAPE, "bias must be [%lld], got %s", (long long)w->shape[0],
                                 DP_SHAPE_STR(b, s1));
    }
    dp_tensor_set_contiguous(&n->val, DP_F32, 2, (int64_t[]){x->shape[0], w->shape[0]});
    return DP_OK;
}

static void dense_fwd(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val;
    int64_t N = x->shape[0], in = x->shape[1], out = n->val.shape[1];
    float *y = n->val.data;
    float beta = 0.0f;
    if (n->n_in == 3) { /* start from the bias and let the GEMM add to it */
        const float *b = n->in[2]->val.data;
        for (int64_t i = 0; i < N; i++) memcpy(y + i * out, b, sizeof(float) * (size_t)out);
        beta = 1.0f;
    }
    dp_sgemm(g->ctx, 0, 1, N, out, in, 1.0f, x->data, in, n->in[1]->val.data, in, beta, y, out);
}

static void dense_bwd(dp_graph *g, dp_node *n) {
    dp_node *X = n->in[0], *W = n->in[1];
    int64_t N = X->val.shape[0], in = X->val.shape[1], out = n->val.shape[1];
    const float *gy = n->grad.data;
    if (dp_wants_grad(X)) /* dx [N,in] += dy [N,out] w [out,in] */
        dp_sgemm(g->ctx, 0, 0, N, in, out, 1.0f, gy, out, W->val.data, in, 1.0f, X->grad.data, in);
    if (dp_wants_grad(W)) /* dw [out,in] += dy^T x */
        dp_sgemm(g->ctx, 1, 0, out, in, N, 1.0f, gy, out, X->val.data, in, 1.0f, W->grad.data, in);
    if (n->n_in == 3 && dp_wants_grad(n->in[2])) {
        float *gb = n->in[2]->grad.data;
        for (int64_t i = 0; i < N; i++) dp_vec_axpy(gb, 1.0f, gy + i * out, out);
    }
}

const dp_op_def dp_op_dense = {"dense", dense_shape, dense_fwd, dense_bwd, 0};

dp_node *dp_dense(dp_graph *g, dp_node *x, dp_node *w, dp_node *b) {
    dp_node *in[3] = {x, w, b};
    return dp_node_finish(g, dp_node_begin(g, DP_OP_DENSE, b ? 3 : 2, in));
}
