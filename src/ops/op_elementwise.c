/* Element-wise ops: broadcasting add/sub/mul/div, scale, activations, dropout.
 * Each op: shape rule, forward, backward side by side. */
#include <math.h>

#include "core/internal.h"

/* ------------------------------------------------------------ broadcasting */
/* Right-aligned NumPy broadcasting of a and b into out (all padded to 4-D). */
typedef struct bcast {
    int64_t shape[4];      /* output */
    int64_t sa[4], sb[4];  /* element strides of a and b in output index space (0 = broadcast) */
} bcast;

static dp_status broadcast_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *a = &n->in[0]->val, *b = &n->in[1]->val;
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t sh[DP_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char x[64], y[64];
            return dp_node_error(g, n, DP_ERR_SHAPE, "shapes %s and %s do not broadcast (dimension %d: %lld vs %lld)",
                                 DP_SHAPE_STR(a, x), DP_SHAPE_STR(b, y), i, (long long)da, (long long)db);
        }
        sh[i] = da > db ? da : db;
    }
    dp_tensor_set_contiguous(&n->val, DP_F32, nd, sh);
    return DP_OK;
}

static void bcast_init(bcast *bc, const dp_tensor *out, const dp_tensor *a, const dp_tensor *b) {
    int off = 4 - out->ndim;
    for (int i = 0; i < 4; i++) {
        bc->shape[i] = i < off ? 1 : out->shape[i - off];
        bc->sa[i] = bc->sb[i] = 0;
    }
    const dp_tensor *ts[2] = {a, b};
    int64_t *ss[2] = {bc->sa, bc->sb};
    for (int t = 0; t < 2; t++) {
        int o = 4 - ts[t]->ndim;
        int64_t s = 1;
        for (int i = 3; i >= o; i--) {
            int64_t d = ts[t]->shape[i - o];
            ss[t][i] = d == 1 ? 0 : s;
            s *= d;
        }
    }
}

enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV };

static inline float bin_apply(int k, float x, float y) {
    switch (k) {
    case BIN_ADD: return x + y;
    case BIN_SUB: return x - y;
    case BIN_MUL: return x * y;
    default: return x / y;
    }
}

static void binary_forward(dp_node *n, int kind) {
    const float *a = dp_f(&n->in[0]->val), *b = dp_f(&n->in[1]->val);
    float *y = dp_f(&n->val);
    int64_t N = dp_numel(&n->val);
    if (dp_numel(&n->in[0]->val) == N && dp_numel(&n->in[1]->val) == N) { /* same shape: the fast path */
        for (int64_t i = 0; i < N; i++) y[i] = bin_apply(kind, a[i], b[i]);
        return;
    }
    bcast bc;
    bcast_init(&bc, &n->val, &n->in[0]->val, &n->in[1]->val);
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < bc.shape[0]; i0++)
        for (int64_t i1 = 0; i1 < bc.shape[1]; i1++)
            for (int64_t i2 = 0; i2 < bc.shape[2]; i2++) {
                const float *pa = a + i0 * bc.sa[0] + i1 * bc.sa[1] + i2 * bc.sa[2];
                const float *pb = b + i0 * bc.sb[0] + i1 * bc.sb[1] + i2 * bc.sb[2];
                for (int64_t i3 = 0; i3 < bc.shape[3]; i3++, k++) y[k] = bin_apply(kind, pa[i3 * bc.sa[3]], pb[i3 * bc.sb[3]]);
            }
}

/* d/da and d/db of each kind, accumulated (reduced over broadcast dims). */
static void binary_backward(dp_node *n, int kind) {
    dp_node *A = n->in[0], *B = n->in[1];
    const float *a = dp_f(&A->val), *b = dp_f(&B->val), *gy = dp_f(&n->grad);
    float *ga = dp_wants_grad(A) ? dp_f(&A->grad) : NULL, *gb = dp_wants_grad(B) ? dp_f(&B->grad) : NULL;
    bcast bc;
    bcast_init(&bc, &n->val, &A->val, &B->val);
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < bc.shape[0]; i0++)
        for (int64_t i1 = 0; i1 < bc.shape[1]; i1++)
            for (int64_t i2 = 0; i2 < bc.shape[2]; i2++) {
                int64_t oa = i0 * bc.sa[0] + i1 * bc.sa[1] + i2 * bc.sa[2];
                int64_t ob = i0 * bc.sb[0] + i1 * bc.sb[1] + i2 * bc.sb[2];
                for (int64_t i3 = 0; i3 < bc.shape[3]; i3++, k++) {
                    int64_t ja = oa + i3 * bc.sa[3], jb = ob + i3 * bc.sb[3];
                    float g = gy[k];
                    switch (kind) {
                    case BIN_ADD:
                        if (ga) ga[ja] += g;
                        if (gb) gb[jb] += g;
                        break;
                    case BIN_SUB:
                        if (ga) ga[ja] += g;
                        if (gb) gb[jb] -= g;
                        break;
                    case BIN_MUL:
                        if (ga) ga[ja] += g * b[jb];
                        if (gb) gb[jb] += g * a[ja];
                        break;
                    default:
                        if (ga) ga[ja] += g / b[jb];
                        if (gb) gb[jb] -= g * a[ja] / (b[jb] * b[jb]);
                        break;
                    }
                }
            }
}

#define BINARY_OP(lname, KIND)                                                                           \
    static void lname##_fwd(dp_graph *g, dp_node *n) { (void)g; binary_forward(n, KIND); }             \
    static void lname##_bwd(dp_graph *g, dp_node *n) { (void)g; binary_backward(n, KIND); }            \
    const dp_op_def dp_op_##lname = {#lname, broadcast_shape, lname##_fwd, lname##_bwd, 0};             \
    dp_node *dp_##lname(dp_graph *g, dp_node *a, dp_node *b) {                                          \
        dp_node *in[2] = {a, b};                                                                        \
        return dp_node_finish(g, dp_node_begin(g, DP_OP_##KIND##_ID, 2, in));                           \
    }
#define DP_OP_BIN_ADD_ID DP_OP_ADD
#define DP_OP_BIN_SUB_ID DP_OP_SUB
#define DP_OP_BIN_MUL_ID DP_OP_MUL
#define DP_OP_BIN_DIV_ID DP_OP_DIV
BINARY_OP(add, BIN_ADD)
BINARY_OP(sub, BIN_SUB)
BINARY_OP(mul, BIN_MUL)
BINARY_OP(div, BIN_DIV)

/* ------------------------------------------------------------ unary ops */
static dp_status same_shape(dp_graph *g, dp_node *n) {
    (void)g;
    dp_tensor_set_contiguous(&n->val, DP_F32, n->in[0]->val.ndim, n->in[0]->val.shape);
    return DP_OK;
}

/* Each unary op defines f(x) and f'(x, y) (y = f(x), cheaper for tanh/sigmoid). */
#define UNARY_OP(lname, ID, FWD, DER)                                                   \
    static void lname##_fwd(dp_graph *g, dp_node *n) {                                 \
        (void)g;                                                                        \
        const float *x = dp_f(&n->in[0]->val);                                          \
        float *y = dp_f(&n->val);                                                       \
        const float p = n->fp[0];                                                       \
        (void)p;                                                                        \
        for (int64_t i = 0, N = dp_numel(&n->val); i < N; i++) {                        \
            float v = x[i];                                                             \
            y[i] = (FWD);                                                               \
        }                                                                               \
    }                                                                                   \
    static void lname##_bwd(dp_graph *g, dp_node *n) {                                 \
        (void)g;                                                                        \
        if (!dp_wants_grad(n->in[0])) return;                                           \
        const float *x = dp_f(&n->in[0]->val), *y = dp_f(&n->val), *gy = dp_f(&n->grad); \
        float *gx = dp_f(&n->in[0]->grad);                                              \
        const float p = n->fp[0];                                                       \
        (void)p;                                                                        \
        for (int64_t i = 0, N = dp_numel(&n->val); i < N; i++) {                        \
            float v = x[i], o = y[i];                                                   \
            (void)v;                                                                    \
            (void)o;                                                                    \
            gx[i] += gy[i] * (DER);                                                     \
        }                                                                               \
    }                                                                                   \
    const dp_op_def dp_op_##lname = {#lname, same_shape, lname##_fwd, lname##_bwd, 0};

UNARY_OP(scale, DP_OP_SCALE, v * p, p)
UNARY_OP(relu, DP_OP_RELU, v > 0.0f ? v : 0.0f, v > 0.0f ? 1.0f : 0.0f)
UNARY_OP(leaky_relu, DP_OP_LEAKY_RELU, v > 0.0f ? v : v * p, v > 0.0f ? 1.0f : p)
UNARY_OP(elu, DP_OP_ELU, v > 0.0f ? v : p * expm1f(v), v > 0.0f ? 1.0f : o + p)
UNARY_OP(tanh, DP_OP_TANH, tanhf(v), 1.0f - o * o)
UNARY_OP(sigmoid, DP_OP_SIGMOID, v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v)), o * (1.0f - o))

static dp_node *unary(dp_graph *g, int op, dp_node *x, float p) {
    dp_node *n = dp_node_begin(g, op, 1, &x);
    if (n) n->fp[0] = p;
    return dp_node_finish(g, n);
}
dp_node *dp_scale(dp_graph *g, dp_node *a, float s) { return unary(g, DP_OP_SCALE, a, s); }
dp_node *dp_relu(dp_graph *g, dp_node *x) { return unary(g, DP_OP_RELU, x, 0); }
dp_node *dp_leaky_relu(dp_graph *g, dp_node *x, float slope) { return unary(g, DP_OP_LEAKY_RELU, x, slope); }
dp_node *dp_elu(dp_graph *g, dp_node *x, float alpha) { return unary(g, DP_OP_ELU, x, alpha); }
dp_node *dp_tanh(dp_graph *g, dp_node *x) { return unary(g, DP_OP_TANH, x, 0); }
dp_node *dp_sigmoid(dp_graph *g, dp_node *x) { return unary(g, DP_OP_SIGMOID, x, 0); }

/* ------------------------------------------------------------ dropout */
/* Inverted dropout. aux holds the per-element factor (0 or 1/(1-p)) drawn in
 * forward, so backward applies exactly the same mask. */
static dp_status dropout_shape(dp_graph *g, dp_node *n) {
    if (!(n->fp[0] >= 0.0f && n->fp[0] < 1.0f)) return dp_node_error(g, n, DP_ERR_ARG, "p = %g is outside [0, 1)", n->fp[0]);
    same_shape(g, n);
    n->aux_bytes = (size_t)dp_numel(&n->val) * sizeof(float);
    return DP_OK;
}
static void dropout_fwd(dp_graph *g, dp_node *n) {
    const float *x = dp_f(&n->in[0]->val);
    float *y = dp_f(&n->val), *m = n->aux;
    int64_t N = dp_numel(&n->val);
    float p = n->fp[0], keep = 1.0f / (1.0f - p);
    n->ip[0] = g->training && !g->no_dropout && p > 0.0f; /* remember which mode forward used */
    if (!n->ip[0]) {
        memcpy(y, x, (size_t)N * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < N; i++) {
        m[i] = dp_rng_uniform(&g->rng) < p ? 0.0f : keep;
        y[i] = x[i] * m[i];
    }
}
static void dropout_bwd(dp_graph *g, dp_node *n) {
    (void)g;
    if (!dp_wants_grad(n->in[0])) return;
    const float *gy = dp_f(&n->grad), *m = n->aux;
    float *gx = dp_f(&n->in[0]->grad);
    for (int64_t i = 0, N = dp_numel(&n->val); i < N; i++) gx[i] += n->ip[0] ? gy[i] * m[i] : gy[i];
}
const dp_op_def dp_op_dropout = {"dropout", dropout_shape, dropout_fwd, dropout_bwd, DP_OPF_RANDOM};
dp_node *dp_dropout(dp_graph *g, dp_node *x, float p) { return unary(g, DP_OP_DROPOUT, x, p); }
