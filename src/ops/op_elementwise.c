/* Element-wise ops: broadcasting add/sub/mul/div, scale, activations, dropout.
 * Each op: shape rule, forward, backward side by side. The loops are the
 * vector kernels of kernels/ew.h, split over the thread pool. */
#include <math.h>

#include "core/internal.h"
#include "kernels/ew.h"

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

enum { BIN_ADD = DP_EW_ADD, BIN_SUB = DP_EW_SUB, BIN_MUL = DP_EW_MUL, BIN_DIV = DP_EW_DIV };

/* The broadcast collapsed to at most 4 dimensions, merging neighbours that
 * both operands step through as one (same shape: one dimension; a
 * per-channel operand of [N,C,H,W]: [N, C, H*W]). The last dimension is the
 * row: each operand steps by 1 or 0 (broadcast) along it, so every row is one
 * vector kernel call. */
typedef struct brows {
    int nd;
    int64_t shape[4], sa[4], sb[4];
    int64_t rows, len; /* rows of len elements (the output, contiguous) */
} brows;

static void brows_init(brows *r, const dp_node *n) {
    bcast bc;
    bcast_init(&bc, &n->val, &n->in[0]->val, &n->in[1]->val);
    r->nd = 0;
    for (int i = 0; i < 4; i++) {
        if (bc.shape[i] == 1) continue;
        int k = r->nd;
        if (k > 0 && r->sa[k - 1] == bc.sa[i] * bc.shape[i] && r->sb[k - 1] == bc.sb[i] * bc.shape[i]) {
            r->shape[k - 1] *= bc.shape[i]; /* merge into the previous dimension */
            r->sa[k - 1] = bc.sa[i];
            r->sb[k - 1] = bc.sb[i];
            continue;
        }
        r->shape[k] = bc.shape[i];
        r->sa[k] = bc.sa[i];
        r->sb[k] = bc.sb[i];
        r->nd++;
    }
    if (r->nd == 0) { /* all ones */
        r->nd = 1;
        r->shape[0] = 1;
        r->sa[0] = r->sb[0] = 1;
    }
    r->len = r->shape[r->nd - 1];
    r->rows = 1;
    for (int i = 0; i < r->nd - 1; i++) r->rows *= r->shape[i];
}

/* Offsets of row `row` in a and b. */
static inline void brows_off(const brows *r, int64_t row, int64_t *oa, int64_t *ob) {
    int64_t a = 0, b = 0;
    for (int i = r->nd - 2; i >= 0; i--) {
        int64_t q = row % r->shape[i];
        row /= r->shape[i];
        a += q * r->sa[i];
        b += q * r->sb[i];
    }
    *oa = a;
    *ob = b;
}

typedef struct bin_job {
    brows r;
    int kind, wrt;
    const float *a, *b, *g;
    float *y;   /* forward: the output; backward: the gradient of operand wrt */
    double *part; /* reductions: one sum per element of the broadcast operand */
} bin_job;

/* Walk output elements [e0, e1) as row segments. */
#define BIN_SEGMENTS(j, e0, e1, BODY)                                                        \
    for (int64_t row = (e0) / (j)->r.len, col = (e0) % (j)->r.len, e = (e0); e < (e1); row++, col = 0) { \
        int64_t cnt = (j)->r.len - col, oa, ob;                                              \
        if (cnt > (e1) - e) cnt = (e1) - e;                                                  \
        brows_off(&(j)->r, row, &oa, &ob);                                                   \
        const int sa = (j)->r.sa[(j)->r.nd - 1] != 0, sb = (j)->r.sb[(j)->r.nd - 1] != 0;      \
        const float *pa = (j)->a + oa + col * sa, *pb = (j)->b + ob + col * sb;              \
        BODY;                                                                                \
        e += cnt;                                                                            \
    }

static void bin_fwd_range(void *arg, int64_t e0, int64_t e1, int tid) {
    (void)tid;
    const bin_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    BIN_SEGMENTS(j, e0, e1, k->binary_f(j->kind, j->y + e, pa, sa, pb, sb, cnt))
}

static void binary_forward(dp_graph *g, dp_node *n, int kind) {
    bin_job j = {.kind = kind, .a = dp_f(&n->in[0]->val), .b = dp_f(&n->in[1]->val), .y = dp_f(&n->val)};
    brows_init(&j.r, n);
    dp_parallel_for_cost(g->ctx, dp_numel(&n->val), 1, bin_fwd_range, &j);
}

/* The gradient of an operand with the output's shape: element-wise. */
static void bin_bwd_elem_range(void *arg, int64_t e0, int64_t e1, int tid) {
    (void)tid;
    const bin_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    BIN_SEGMENTS(j, e0, e1, k->binary_b(j->kind, j->wrt, j->y + e, j->g + e, pa, sa, pb, sb, cnt))
}

/* The gradient of a broadcast operand: a sum over the rows (and, when it is
 * broadcast along the row too, over each row) that map to each of its
 * elements. Each part owns a range of the operand's elements and visits all
 * rows in order, so the sums do not depend on the thread count. */
static void bin_bwd_red_range(void *arg, int64_t x0, int64_t x1, int tid) {
    (void)tid;
    const bin_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    const int64_t L = j->r.len;
    const int sa = j->r.sa[j->r.nd - 1] != 0, sb = j->r.sb[j->r.nd - 1] != 0;
    const int along = j->wrt ? sb : sa; /* the operand steps along the row */
    if (!along)
        for (int64_t x = x0; x < x1; x++) j->part[x] = 0.0;
    for (int64_t row = 0; row < j->r.rows; row++) {
        int64_t oa, ob;
        brows_off(&j->r, row, &oa, &ob);
        int64_t ox = j->wrt ? ob : oa;
        if (ox < x0 || ox >= x1) continue;
        if (along) /* a whole row of the operand */
            k->binary_b(j->kind, j->wrt, j->y + ox, j->g + row * L, j->a + oa, sa, j->b + ob, sb, L);
        else
            j->part[ox] += k->binary_bsum(j->kind, j->wrt, j->g + row * L, j->a + oa, sa, j->b + ob, sb, L);
    }
    if (!along)
        for (int64_t x = x0; x < x1; x++) j->y[x] += (float)j->part[x];
}

static void binary_backward(dp_graph *g, dp_node *n, int kind) {
    const int64_t N = dp_numel(&n->val);
    for (int wrt = 0; wrt < 2; wrt++) {
        dp_node *X = n->in[wrt];
        if (!dp_wants_grad(X)) continue;
        bin_job j = {.kind = kind, .wrt = wrt, .a = dp_f(&n->in[0]->val), .b = dp_f(&n->in[1]->val), .g = dp_f(&n->grad),
                     .y = dp_f(&X->grad), .part = g->ws};
        brows_init(&j.r, n);
        int64_t nx = dp_numel(&X->val);
        if (nx == N) {
            dp_parallel_for_cost(g->ctx, N, 1, bin_bwd_elem_range, &j);
        } else {
            /* every part reads all rows: split only when the operand is large */
            int64_t cost = nx >= DP_PAR_GRAIN ? N / nx : 0;
            dp_parallel_for_cost(g->ctx, nx, cost, bin_bwd_red_range, &j);
        }
    }
}

/* Workspace: one double per element of a broadcast operand. */
static dp_status binary_shape(dp_graph *g, dp_node *n) {
    dp_status s = broadcast_shape(g, n);
    if (s) return s;
    int64_t N = dp_numel(&n->val), na = dp_numel(&n->in[0]->val), nb = dp_numel(&n->in[1]->val);
    int64_t w = 0;
    if (na < N) w = na;
    if (nb < N && nb > w) w = nb;
    n->ws_bytes = (size_t)w * sizeof(double);
    return DP_OK;
}

#define BINARY_OP(lname, KIND)                                                                           \
    static void lname##_fwd(dp_graph *g, dp_node *n) { binary_forward(g, n, KIND); }                   \
    static void lname##_bwd(dp_graph *g, dp_node *n) { binary_backward(g, n, KIND); }                  \
    const dp_op_def dp_op_##lname = {#lname, binary_shape, lname##_fwd, lname##_bwd, 0};                \
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

/* Split over elements; the kernels (kernels/ew.h) do the rows. */
typedef struct un_job {
    int kind;
    float p;
    const float *x, *y, *gy;
    float *out; /* forward: y; backward: gx */
    int acc;    /* backward: add (1) or store (0) */
} un_job;

static void un_fwd_range(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const un_job *j = arg;
    dp_ew()->unary_f(j->kind, j->out + b, j->x + b, e - b, j->p);
}
static void un_bwd_range(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const un_job *j = arg;
    dp_ew()->unary_b(j->kind, j->out + b, j->gy + b, j->x + b, j->y + b, e - b, j->p, j->acc);
}

/* The batch norm before this activation computed it in its forward and does its
 * backward too, unless that norm's own gradient is read (then it is written here). */
static int bnact_bwd(const dp_node *n) { return (n->mo_flags & DP_MO_BNACT) && !dp_grad_read(n->mo_prev); }

#define UNARY_OP(lname, KIND)                                                                           \
    static void lname##_fwd(dp_graph *g, dp_node *n) {                                                 \
        if (n->mo_flags & DP_MO_BNACT) return; /* the batch norm before it wrote it */                  \
        un_job j = {.kind = KIND, .p = n->fp[0], .x = dp_f(&n->in[0]->val), .out = dp_f(&n->val)};      \
        dp_parallel_for_cost(g->ctx, dp_numel(&n->val), 2, un_fwd_range, &j);                           \
    }                                                                                                   \
    static void lname##_bwd(dp_graph *g, dp_node *n) {                                                 \
        if (!dp_wants_grad(n->in[0]) || bnact_bwd(n)) return; /* or the norm does it */               \
        un_job j = {.kind = KIND, .p = n->fp[0], .x = dp_f(&n->in[0]->val), .y = dp_f(&n->val),        \
                    .gy = dp_f(&n->grad), .out = dp_f(&n->in[0]->grad), .acc = dp_grad_acc(n->in[0])};   \
        dp_parallel_for_cost(g->ctx, dp_numel(&n->val), 4, un_bwd_range, &j);                           \
    }                                                                                                   \
    const dp_op_def dp_op_##lname = {#lname, same_shape, lname##_fwd, lname##_bwd, DP_OPF_GRAD_STORE};

UNARY_OP(scale, DP_EW_SCALE)
UNARY_OP(leaky_relu, DP_EW_LEAKY_RELU)
UNARY_OP(tanh, DP_EW_TANH)
UNARY_OP(sigmoid, DP_EW_SIGMOID)

/* relu: when a batch norm in batch mode reads it (alone), its forward also
 * takes that norm's sums, channel by channel, from each row just written
 * (the same rows, order and kernel as the norm would use: the same bits);
 * and when that norm's backward already wrote this relu's input gradient,
 * its backward has nothing left to do. */
typedef struct relu_stats_job {
    int64_t N, C, HW;
    const float *x;
    float *y;
    double *sums;
} relu_stats_job;
static void relu_stats_range(void *arg, int64_t c0, int64_t c1, int tid) {
    (void)tid;
    const relu_stats_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    const int nt = (int64_t)sizeof(float) * j->N * j->C * j->HW > dp_stream_bytes; /* read back by the norm much later */
    for (int64_t c = c0; c < c1; c++) {
        const float x0 = j->x[c * j->HW];
        double shift = x0 > 0.0f ? x0 : 0.0f, s1 = 0.0, s2 = 0.0; /* the first value written (relu: NaN -> 0) */
        for (int64_t i = 0; i < j->N; i++) {
            int64_t o = (i * j->C + c) * j->HW;
            k->relu_moments(j->y + o, j->x + o, j->HW, shift, &s1, &s2, nt);
        }
        j->sums[3 * c] = shift, j->sums[3 * c + 1] = s1, j->sums[3 * c + 2] = s2;
    }
}
static void relu_fwd(dp_graph *g, dp_node *n) {
    if (n->mo_flags & DP_MO_BNACT) return; /* the batch norm before it wrote it */
    dp_node *bn = n->mo_next;
    if (bn && dp_bn_batch_mode(g, bn)) {
        const dp_tensor *t = &n->val;
        relu_stats_job j = {t->shape[0], t->shape[1], t->shape[2] * t->shape[3], dp_f(&n->in[0]->val), dp_f(&n->val), dp_bn_sums(bn)};
        dp_parallel_for_cost(g->ctx, j.C, 3 * j.N * j.HW, relu_stats_range, &j);
        bn->mo_flags |= DP_MO_STATS;
        return;
    }
    un_job j = {.kind = DP_EW_RELU, .x = dp_f(&n->in[0]->val), .out = dp_f(&n->val)};
    dp_parallel_for_cost(g->ctx, dp_numel(&n->val), 2, un_fwd_range, &j);
}
static void relu_bwd(dp_graph *g, dp_node *n) {
    if (n->mo_flags & DP_MO_GRAD) { /* the batch norm after it did it */
        n->mo_flags &= ~DP_MO_GRAD;
        return;
    }
    if (!dp_wants_grad(n->in[0]) || bnact_bwd(n)) return; /* or the batch norm before it does it */
    un_job j = {.kind = DP_EW_RELU, .x = dp_f(&n->in[0]->val), .y = dp_f(&n->val), .gy = dp_f(&n->grad),
                .out = dp_f(&n->in[0]->grad), .acc = dp_grad_acc(n->in[0])};
    dp_parallel_for_cost(g->ctx, dp_numel(&n->val), 4, un_bwd_range, &j);
}
const dp_op_def dp_op_relu = {"relu", same_shape, relu_fwd, relu_bwd, DP_OPF_GRAD_STORE};

/* elu: libm's expm1f, element by element. */
static void elu_fwd_range(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const un_job *j = arg;
    for (int64_t i = b; i < e; i++) {
        float v = j->x[i];
        j->out[i] = v > 0.0f ? v : j->p * expm1f(v);
    }
}
static void elu_bwd_range(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const un_job *j = arg;
    for (int64_t i = b; i < e; i++) {
        float t = j->gy[i] * (j->x[i] > 0.0f ? 1.0f : j->y[i] + j->p);
        j->out[i] = j->acc ? j->out[i] + t : t;
    }
}
static void elu_fwd(dp_graph *g, dp_node *n) {
    un_job j = {.p = n->fp[0], .x = dp_f(&n->in[0]->val), .out = dp_f(&n->val)};
    dp_parallel_for_cost(g->ctx, dp_numel(&n->val), 8, elu_fwd_range, &j);
}
static void elu_bwd(dp_graph *g, dp_node *n) {
    if (!dp_wants_grad(n->in[0])) return;
    un_job j = {.p = n->fp[0], .x = dp_f(&n->in[0]->val), .y = dp_f(&n->val), .gy = dp_f(&n->grad), .out = dp_f(&n->in[0]->grad),
                .acc = dp_grad_acc(n->in[0])};
    dp_parallel_for_cost(g->ctx, dp_numel(&n->val), 4, elu_bwd_range, &j);
}
const dp_op_def dp_op_elu = {"elu", same_shape, elu_fwd, elu_bwd, DP_OPF_GRAD_STORE};

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
    const int acc = dp_grad_acc(n->in[0]);
    for (int64_t i = 0, N = dp_numel(&n->val); i < N; i++) {
        float t = n->ip[0] ? gy[i] * m[i] : gy[i];
        gx[i] = acc ? gx[i] + t : t;
    }
}
const dp_op_def dp_op_dropout = {"dropout", dropout_shape, dropout_fwd, dropout_bwd, DP_OPF_RANDOM | DP_OPF_GRAD_STORE};
dp_node *dp_dropout(dp_graph *g, dp_node *x, float p) { return unary(g, DP_OP_DROPOUT, x, p); }
