/* Losses: each reduces to a scalar (ndim 0), the mean over all elements.
 *
 * Forward cannot fail, so inputs that only their values make invalid are
 * handled deterministically instead of raising (where PyTorch raises):
 *  - bce: prob outside [0,1] is clamped into it; logs are clamped at -100
 *    (as PyTorch), so prob 0 or 1 gives a finite loss.
 *  - cross_entropy: labels are rounded to the nearest integer; a row whose
 *    label is then outside [0, C) or not finite is ignored (no loss, no
 *    gradient), and the mean is over the remaining rows (PyTorch's
 *    ignore_index, whose default -100 thus behaves the same). With no valid
 *    row the loss is 0.
 * Gradients flow to both operands of bce/bce_with_logits/mse/l1 (the target
 * too); labels of cross_entropy get none. */
#include <math.h>

#include "core/internal.h"

static dp_status pair_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *a = &n->in[0]->val, *b = &n->in[1]->val;
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same) {
        char x[64], y[64];
        return dp_node_error(g, n, DP_ERR_SHAPE, "the operands must have the same shape, got %s and %s", DP_SHAPE_STR(a, x),
                             DP_SHAPE_STR(b, y));
    }
    dp_tensor_set_contiguous(&n->val, DP_F32, 0, NULL);
    return DP_OK;
}

enum { L_BCE_LOGITS, L_BCE, L_MSE, L_L1 };

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
static inline float log_clamped(float v) { return fmaxf(logf(v), -100.0f); } /* log(0) = -inf → -100 */

static inline double pair_loss(int kind, float x, float t) {
    switch (kind) {
    case L_BCE_LOGITS: /* stable for any |x|: never exponentiates a positive number */
        return (double)fmaxf(x, 0.0f) - (double)x * t + log1p(exp(-fabs((double)x)));
    case L_BCE: {
        float p = clampf(x, 0.0f, 1.0f);
        return -((double)t * log_clamped(p) + (1.0 - (double)t) * log_clamped(1.0f - p));
    }
    case L_MSE: return ((double)x - t) * ((double)x - t);
    default: return fabs((double)x - t);
    }
}

static void pair_fwd_kind(dp_node *n, int kind) {
    const float *a = dp_f(&n->in[0]->val), *b = dp_f(&n->in[1]->val);
    int64_t N = dp_numel(&n->in[0]->val);
    double s = 0.0;
    for (int64_t i = 0; i < N; i++) s += pair_loss(kind, a[i], b[i]);
    dp_f(&n->val)[0] = (float)(s / (double)N);
}

static void pair_bwd_kind(dp_node *n, int kind) {
    dp_node *A = n->in[0], *B = n->in[1];
    float *ga = dp_wants_grad(A) ? dp_f(&A->grad) : NULL, *gb = dp_wants_grad(B) ? dp_f(&B->grad) : NULL;
    if (!ga && !gb) return;
    const float *a = dp_f(&A->val), *b = dp_f(&B->val);
    int64_t N = dp_numel(&A->val);
    float s = dp_f(&n->grad)[0] / (float)N;
    for (int64_t i = 0; i < N; i++) {
        float x = a[i], t = b[i], da, db;
        switch (kind) {
        case L_BCE_LOGITS: {
            float sig = x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
            da = sig - t;
            db = -x;
            break;
        }
        case L_BCE: {
            float p = clampf(x, 0.0f, 1.0f);
            da = (p - t) / fmaxf(p * (1.0f - p), 1e-12f); /* PyTorch's guard against 0/0 */
            db = log_clamped(1.0f - p) - log_clamped(p);
            break;
        }
        case L_MSE:
            da = 2.0f * (x - t);
            db = -da;
            break;
        default: /* sign(x - t), 0 at 0 */
            da = (x > t) ? 1.0f : (x < t ? -1.0f : 0.0f);
            db = -da;
            break;
        }
        if (ga) ga[i] += s * da;
        if (gb) gb[i] += s * db;
    }
}

#define PAIR_LOSS(lname, ID, KIND)                                                                        \
    static void lname##_fwd(dp_graph *g, dp_node *n) { (void)g; pair_fwd_kind(n, KIND); }                \
    static void lname##_bwd(dp_graph *g, dp_node *n) { (void)g; pair_bwd_kind(n, KIND); }                \
    const dp_op_def dp_op_##lname = {#lname, pair_shape, lname##_fwd, lname##_bwd, 0};                    \
    dp_node *dp_##lname(dp_graph *g, dp_node *a, dp_node *b) {                                           \
        dp_node *in[2] = {a, b};                                                                         \
        return dp_node_finish(g, dp_node_begin(g, ID, 2, in));                                           \
    }
PAIR_LOSS(bce_with_logits, DP_OP_BCE_WITH_LOGITS, L_BCE_LOGITS)
PAIR_LOSS(bce, DP_OP_BCE, L_BCE)
PAIR_LOSS(mse, DP_OP_MSE, L_MSE)
PAIR_LOSS(l1, DP_OP_L1, L_L1)

/* ------------------------------------------------------------ cross entropy */
/* logits [N,C], labels [N]. aux = logsumexp of each row (for backward);
 * ip[0] = number of valid rows, written by forward. */
static dp_status ce_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val, *l = &n->in[1]->val;
    char a[64], b[64];
    if (x->ndim != 2) return dp_node_error(g, n, DP_ERR_SHAPE, "logits have shape %s, expected [N,C]", DP_SHAPE_STR(x, a));
    if (l->ndim != 1 || l->shape[0] != x->shape[0])
        return dp_node_error(g, n, DP_ERR_SHAPE, "labels have shape %s, expected [%lld] (one class index per row of logits %s)",
                             DP_SHAPE_STR(l, a), (long long)x->shape[0], DP_SHAPE_STR(x, b));
    dp_tensor_set_contiguous(&n->val, DP_F32, 0, NULL);
    n->aux_bytes = (size_t)x->shape[0] * sizeof(float);
    return DP_OK;
}

/* The class of a label value, or -1 if the row is to be ignored. */
static inline int64_t ce_class(float v, int64_t C) {
    if (!isfinite(v)) return -1;
    float r = floorf(v + 0.5f);
    return (r >= 0.0f && r < (float)C) ? (int64_t)r : -1;
}

static void ce_fwd(dp_graph *g, dp_node *n) {
    (void)g;
    const dp_tensor *xt = &n->in[0]->val;
    int64_t N = xt->shape[0], C = xt->shape[1];
    const float *x = dp_f(&n->in[0]->val), *lab = dp_f(&n->in[1]->val);
    float *lse = n->aux;
    double s = 0.0;
    int valid = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *r = x + i * C;
        float m = r[0];
        for (int64_t c = 1; c < C; c++)
            if (r[c] > m) m = r[c];
        double e = 0.0;
        for (int64_t c = 0; c < C; c++) e += expf(r[c] - m);
        lse[i] = m + (float)log(e);
        int64_t k = ce_class(lab[i], C);
        if (k < 0) continue;
        s += (double)lse[i] - r[k];
        valid++;
    }
    n->ip[0] = valid;
    dp_f(&n->val)[0] = valid ? (float)(s / valid) : 0.0f;
}

static void ce_bwd(dp_graph *g, dp_node *n) {
    (void)g;
    if (!dp_wants_grad(n->in[0]) || n->ip[0] == 0) return;
    const dp_tensor *xt = &n->in[0]->val;
    int64_t N = xt->shape[0], C = xt->shape[1];
    const float *x = dp_f(&n->in[0]->val), *lab = dp_f(&n->in[1]->val), *lse = n->aux;
    float *gx = dp_f(&n->in[0]->grad);
    float s = dp_f(&n->grad)[0] / (float)n->ip[0];
    for (int64_t i = 0; i < N; i++) {
        int64_t k = ce_class(lab[i], C);
        if (k < 0) continue;
        /* d/dx = softmax(x) - onehot(k), per valid row. */
        for (int64_t c = 0; c < C; c++) gx[i * C + c] += s * (expf(x[i * C + c] - lse[i]) - (c == k ? 1.0f : 0.0f));
    }
}

const dp_op_def dp_op_cross_entropy = {"cross_entropy", ce_shape, ce_fwd, ce_bwd, 0};
dp_node *dp_cross_entropy(dp_graph *g, dp_node *logits, dp_node *labels) {
    dp_node *in[2] = {logits, labels};
    return dp_node_finish(g, dp_node_begin(g, DP_OP_CROSS_ENTROPY, 2, in));
}
