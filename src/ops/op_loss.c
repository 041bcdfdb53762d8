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
#include "kernels/ew.h"

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

enum { L_BCE_LOGITS = DP_EW_BCE_LOGITS, L_BCE = DP_EW_BCE, L_MSE = DP_EW_MSE, L_L1 = DP_EW_L1 };

/* The per-element terms and derivatives are the vector kernels of
 * kernels/ew.h (bce: -(t log p + (1-t) log(1-p)) with the logs clamped at
 * -100; bce_with_logits: max(x,0) - x t + log1p(exp(-|x|)), never
 * exponentiating a positive number), summed in double.
 * The sum is split into fixed chunks (by size, not by thread count) whose
 * partial sums are added in order: the same result with any thread count. */
#define LOSS_CHUNK 16384
#define LOSS_MAX_CHUNKS 64

typedef struct loss_job {
    int kind;
    int64_t n, chunk;
    const float *a, *b;
    float *ga, *gb;
    float s;
    double part[LOSS_MAX_CHUNKS];
} loss_job;

static void loss_fwd_chunks(void *arg, int64_t c0, int64_t c1, int tid) {
    (void)tid;
    loss_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    for (int64_t c = c0; c < c1; c++) {
        int64_t b = c * j->chunk, e = b + j->chunk < j->n ? b + j->chunk : j->n;
        j->part[c] = k->loss_f(j->kind, j->a + b, j->b + b, e - b);
    }
}

static void pair_fwd_kind(dp_graph *g, dp_node *n, int kind) {
    loss_job j = {.kind = kind, .n = dp_numel(&n->in[0]->val), .a = dp_f(&n->in[0]->val), .b = dp_f(&n->in[1]->val)};
    j.chunk = (j.n + LOSS_MAX_CHUNKS - 1) / LOSS_MAX_CHUNKS;
    if (j.chunk < LOSS_CHUNK) j.chunk = LOSS_CHUNK;
    int64_t chunks = (j.n + j.chunk - 1) / j.chunk;
    dp_parallel_for_cost(g->ctx, chunks, j.chunk * 4, loss_fwd_chunks, &j);
    double s = 0.0;
    for (int64_t c = 0; c < chunks; c++) s += j.part[c];
    dp_f(&n->val)[0] = (float)(s / (double)j.n);
}

static void loss_bwd_range(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const loss_job *j = arg;
    dp_ew()->loss_b(j->kind, j->ga ? j->ga + b : NULL, j->gb ? j->gb + b : NULL, j->a + b, j->b + b, e - b, j->s);
}

static void pair_bwd_kind(dp_graph *g, dp_node *n, int kind) {
    dp_node *A = n->in[0], *B = n->in[1];
    loss_job j = {.kind = kind, .n = dp_numel(&A->val), .a = dp_f(&A->val), .b = dp_f(&B->val)};
    j.ga = dp_wants_grad(A) ? dp_f(&A->grad) : NULL;
    j.gb = dp_wants_grad(B) ? dp_f(&B->grad) : NULL;
    if (!j.ga && !j.gb) return;
    j.s = dp_f(&n->grad)[0] / (float)j.n;
    dp_parallel_for_cost(g->ctx, j.n, 8, loss_bwd_range, &j);
}

#define PAIR_LOSS(lname, ID, KIND)                                                                        \
    static void lname##_fwd(dp_graph *g, dp_node *n) { pair_fwd_kind(g, n, KIND); }                      \
    static void lname##_bwd(dp_graph *g, dp_node *n) { pair_bwd_kind(g, n, KIND); }                      \
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
