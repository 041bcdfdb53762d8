/* Static graphs: building, memory planning, forward passes and reverse-mode autodiff. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"

/* ------------------------------------------------------------ errors */
void dp_graph_fail(dp_graph *g, dp_status s, const char *fmt, ...) {
    if (!g || g->status != DP_OK) return; /* the first error is the one worth reading */
    g->status = s;
    va_list ap;
    va_start(ap, fmt);
    dp_verror(g->ctx, s, fmt, ap);
    va_end(ap);
}

dp_status dp_node_error(dp_graph *g, dp_node *n, dp_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dp_graph_fail(g, s, "%s (node %d%s%s): %s", dp_op_get(n->op)->name, n->id, n->name ? " " : "", n->name ? n->name : "",
                  msg);
    return s;
}

/* ------------------------------------------------------------ life cycle */
dp_status dp_graph_new(dp_ctx *ctx, dp_graph **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!out) return dp_error(ctx, DP_ERR_NULL, "dp_graph_new: out is NULL");
    dp_graph *g = dp_calloc(ctx, sizeof *g);
    if (!g) return dp_error(ctx, DP_ERR_NOMEM, "out of memory");
    g->ctx = ctx;
    dp_arena_init(&g->arena, &ctx->alloc, 64 << 10);
    dp_rng_stream(&g->rng, ctx->seed, 0x67726170680ull);
    *out = g;
    return DP_OK;
}

/* ------------------------------------------------------------ DP_PROFILE */
static double prof_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One op's forward (dir 0) or backward (dir 1), timed when profiling. */
static void run_op(dp_graph *g, dp_node *n, int dir) {
    const dp_op_def *def = dp_op_get(n->op);
    if (!g->prof) {
        (dir ? def->backward : def->forward)(g, n);
        return;
    }
    double t0 = prof_now();
    (dir ? def->backward : def->forward)(g, n);
    g->prof[4 * n->id + dir] += prof_now() - t0;
    g->prof[4 * n->id + 2 + dir] += 1.0;
}

/* A pass holds the context's workspace while its ops run. */
static void ws_take(dp_graph *g) {
    if (g->ws_bytes) g->ws = dp_ctx_ws_lock(g->ctx);
}
static void ws_give(dp_graph *g) {
    if (!g->ws_bytes) return;
    g->ws = NULL;
    dp_ctx_ws_unlock(g->ctx);
}

static int prof_cmp(const void *a, const void *b, void *arg) {
    const double *p = arg;
    double x = p[4 * *(const int *)a] + p[4 * *(const int *)a + 1], y = p[4 * *(const int *)b] + p[4 * *(const int *)b + 1];
    return (x < y) - (x > y);
}

/* The nodes by total time, slowest first, with their share of the graph's op time. */
static void prof_print(const dp_graph *g) {
    int *order = malloc(sizeof(int) * (size_t)g->n_nodes);
    if (!order) return;
    double total = 0.0;
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->prof[4 * i + 2] + g->prof[4 * i + 3] == 0.0) continue;
        order[n++] = i;
        total += g->prof[4 * i] + g->prof[4 * i + 1];
    }
    /* insertion sort: a few hundred nodes at most, and qsort has no context argument in C11 */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && prof_cmp(&order[j - 1], &order[j], g->prof) > 0; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    fprintf(stderr, "DP_PROFILE: %d nodes, %.3f s in ops\n%5s %-18s %-20s %10s %6s %10s %6s %6s\n", n, total, "node", "op", "shape",
            "fwd ms", "calls", "bwd ms", "calls", "share");
    for (int k = 0; k < n; k++) {
        const dp_node *d = g->nodes[order[k]];
        const double *p = g->prof + 4 * d->id;
        char b[64];
        fprintf(stderr, "%5d %-18s %-20s %10.2f %6.0f %10.2f %6.0f %5.1f%%", d->id, dp_op_get(d->op)->name, DP_SHAPE_STR(&d->val, b),
                1e3 * p[0], p[2], 1e3 * p[1], p[3], total > 0 ? 100.0 * (p[0] + p[1]) / total : 0.0);
        if (d->name && *d->name) fprintf(stderr, "  '%s'", d->name);
        fputc('\n', stderr);
    }
    free(order);
}

void dp_graph_free(dp_graph *g) {
    if (!g) return;
    dp_ctx *ctx = g->ctx;
    if (g->prof) prof_print(g);
    free(g->prof);
    if (g->block && g->ws_bytes) dp_ctx_ws_release(ctx);
    dp_free(ctx, g->block);
    dp_free(ctx, g->cblock);
    dp_free(ctx, g->ckind);
    dp_free(ctx, g->coff);
    dp_free(ctx, g->cfull);
    dp_free(ctx, g->nodes);
    dp_arena_release(&g->arena);
    dp_free(ctx, g);
}

dp_ctx *dp_graph_ctx(dp_graph *g) { return g ? g->ctx : NULL; }
dp_status dp_graph_status(const dp_graph *g) { return g ? g->status : DP_ERR_NULL; }
int dp_graph_node_count(const dp_graph *g) { return g ? g->n_nodes : 0; }
size_t dp_graph_memory_bytes(const dp_graph *g) { return g ? g->block_bytes + g->cblock_bytes : 0; }
int dp_graph_training(const dp_graph *g) { return g ? g->training : 0; }

dp_status dp_graph_set_no_grad(dp_graph *g) {
    if (!g) return DP_ERR_NULL;
    if (g->compiled) return dp_error(g->ctx, DP_ERR_STATE, "dp_graph_set_no_grad: call it before dp_graph_compile");
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->flags & DP_NF_REQ_GRAD)
            return dp_error(g->ctx, DP_ERR_STATE, "dp_graph_set_no_grad: input '%s' asked for its gradient", g->nodes[i]->name);
    g->no_grad = 1;
    return DP_OK;
}

dp_status dp_graph_set_training(dp_graph *g, int training) {
    if (!g) return DP_ERR_NULL;
    g->training = training ? 1 : 0;
    return DP_OK;
}

dp_status dp_graph_set_dropout(dp_graph *g, int enabled) {
    if (!g) return DP_ERR_NULL;
    g->no_dropout = enabled ? 0 : 1;
    return DP_OK;
}

dp_status dp_graph_seed(dp_graph *g, uint64_t seed) {
    if (!g) return DP_ERR_NULL;
    dp_rng_stream(&g->rng, seed, 0x67726170680ull);
    return DP_OK;
}

/* ------------------------------------------------------------ building */
dp_node *dp_node_begin(dp_graph *g, int op, int n_in, dp_node *const *in) {
    if (!g || g->status != DP_OK) return NULL;
    const dp_op_def *def = dp_op_get(op);
    if (g->compiled) { /* misuse, but the compiled graph stays usable */
        dp_error(g->ctx, DP_ERR_STATE, "%s: the graph is already compiled; build a new graph to add nodes", def->name);
        return NULL;
    }
    for (int i = 0; i < n_in; i++) {
        if (!in || !in[i]) {
            dp_graph_fail(g, DP_ERR_NULL, "%s: input %d is NULL", def->name, i);
            return NULL;
        }
        if (in[i]->id >= g->n_nodes || g->nodes[in[i]->id] != in[i]) {
            dp_graph_fail(g, DP_ERR_ARG, "%s: input %d belongs to another graph", def->name, i);
            return NULL;
        }
    }
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        dp_node **nn = dp_malloc(g->ctx, sizeof(dp_node *) * (size_t)cap);
        if (!nn) {
            dp_graph_fail(g, DP_ERR_NOMEM, "out of memory");
            return NULL;
        }
        if (g->nodes) memcpy(nn, g->nodes, sizeof(dp_node *) * (size_t)g->n_nodes);
        dp_free(g->ctx, g->nodes);
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    dp_node *n = dp_arena_alloc(&g->arena, sizeof *n, 8);
    dp_node **ins = n_in ? dp_arena_alloc(&g->arena, sizeof(dp_node *) * (size_t)n_in, 8) : NULL;
    if (!n || (n_in && !ins)) {
        dp_graph_fail(g, DP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    n->id = g->n_nodes;
    n->op = op;
    n->n_in = n_in;
    n->in = ins;
    for (int i = 0; i < n_in; i++) ins[i] = in[i];
    n->buf = -1;
    n->root = n;
    n->val.ctx = n->grad.ctx = g->ctx;
    n->val.name = n->grad.name = "";
    return n; /* registered by dp_node_finish */
}

dp_node *dp_node_finish(dp_graph *g, dp_node *n) {
    if (!n) return NULL;
    const dp_op_def *def = dp_op_get(n->op);
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->val.dtype != DP_F32) {
            dp_node_error(g, n, DP_ERR_DTYPE, "input %d is %s; only F32 is computed", i, dp_dtype_name(n->in[i]->val.dtype));
            return NULL;
        }
    if (def->shape(g, n) != DP_OK) {
        if (g->status == DP_OK) dp_node_error(g, n, DP_ERR_SHAPE, "shape rule failed");
        return NULL;
    }
    int64_t bytes = dp_numel(&n->val) * (int64_t)sizeof(float);
    if ((size_t)bytes > g->ctx->max_tensor_bytes) {
        dp_node_error(g, n, DP_ERR_NOMEM, "the output would take %lld bytes, over the limit", (long long)bytes);
        return NULL;
    }
    g->nodes[g->n_nodes++] = n;
    return n;
}

static dp_status leaf_shape(dp_graph *g, dp_node *n) {
    (void)g;
    (void)n;
    return DP_OK;
}
static void leaf_forward(dp_graph *g, dp_node *n) {
    (void)g;
    (void)n;
}
const dp_op_def dp_op_input = {"input", leaf_shape, leaf_forward, NULL, DP_OPF_LEAF};
const dp_op_def dp_op_param = {"param", leaf_shape, leaf_forward, NULL, DP_OPF_LEAF};

dp_node *dp_input(dp_graph *g, const char *name, int ndim, const int64_t *shape) {
    dp_node *n = dp_node_begin(g, DP_OP_INPUT, 0, NULL);
    if (!n) return NULL;
    if (ndim < 0 || ndim > DP_MAX_DIMS || (ndim > 0 && !shape)) {
        dp_node_error(g, n, DP_ERR_ARG, "rank %d is outside 0..%d (or shape is NULL)", ndim, DP_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0) {
            dp_node_error(g, n, DP_ERR_SHAPE, "dimension %d of input '%s' is %lld", i, name ? name : "", (long long)shape[i]);
            return NULL;
        }
    n->name = dp_arena_strdup(&g->arena, name ? name : "");
    dp_tensor_set_contiguous(&n->val, DP_F32, ndim, shape);
    n->val.name = n->name;
    return dp_node_finish(g, n);
}

dp_status dp_input_requires_grad(dp_graph *g, dp_node *input) {
    if (!g) return DP_ERR_NULL;
    if (!input) return dp_error(g->ctx, DP_ERR_NULL, "dp_input_requires_grad: node is NULL");
    if (input->op != DP_OP_INPUT) return dp_error(g->ctx, DP_ERR_ARG, "dp_input_requires_grad: node %d is not an input", input->id);
    if (g->compiled) return dp_error(g->ctx, DP_ERR_STATE, "dp_input_requires_grad: call it before dp_graph_compile");
    if (g->no_grad) return dp_error(g->ctx, DP_ERR_STATE, "dp_input_requires_grad: the graph was declared no_grad");
    input->flags |= DP_NF_REQ_GRAD;
    return DP_OK;
}

dp_node *dp_param(dp_graph *g, dp_tensor *t) {
    dp_node *n = dp_node_begin(g, DP_OP_PARAM, 0, NULL);
    if (!n) return NULL;
    if (!t) {
        dp_node_error(g, n, DP_ERR_NULL, "the parameter tensor is NULL");
        return NULL;
    }
    if (t->ctx != g->ctx) {
        dp_node_error(g, n, DP_ERR_ARG, "parameter '%s' belongs to another context", t->name);
        return NULL;
    }
    if (t->dtype != DP_F32) {
        dp_node_error(g, n, DP_ERR_DTYPE, "parameter '%s' is %s; only F32 is computed", t->name, dp_dtype_name(t->dtype));
        return NULL;
    }
    if (!dp_tensor_is_contiguous(t)) {
        dp_node_error(g, n, DP_ERR_ARG, "parameter '%s' is a non-contiguous view", t->name);
        return NULL;
    }
    n->param = t;
    n->name = t->name;
    n->val = *t;
    n->val.grad = NULL;
    return dp_node_finish(g, n);
}

dp_status dp_graph_mark_output(dp_graph *g, dp_node *n) {
    if (!g) return DP_ERR_NULL;
    if (!n) return dp_error(g->ctx, DP_ERR_NULL, "dp_graph_mark_output: node is NULL (an earlier builder failed: %s)",
                            g->status ? dp_ctx_error(g->ctx) : "no error recorded");
    if (g->compiled) return dp_error(g->ctx, DP_ERR_STATE, "dp_graph_mark_output: the graph is already compiled");
    n->flags |= DP_NF_OUTPUT;
    return DP_OK;
}

/* ------------------------------------------------------------ planning */
static int is_trainable_leaf(const dp_graph *g, const dp_node *n) {
    if (g->no_grad) return 0;
    return (n->op == DP_OP_PARAM && !(n->param->flags & DP_TF_BUFFER)) || (n->op == DP_OP_INPUT && (n->flags & DP_NF_REQ_GRAD));
}

#define ALIGN_UP(x) (((x) + DP_ALIGN - 1) / DP_ALIGN * DP_ALIGN)

/* ------------------------------------------------------------ fusion */
/* A compile-time pattern pass (docs/engine.md, "Fusion"). Only no_grad graphs
 * are fused (nothing reads the intermediate values there), and a fused node
 * takes its fused path only in eval mode; in training mode every node runs
 * as built, so the graph stays correct whatever mode it is run in. */
static void fusion_pass(dp_graph *g) {
    if (!g->no_grad) return;
#define SOLE_USE(m, by) ((m)->sole_reader == (by) && !((m)->flags & DP_NF_OUTPUT))
    for (int i = 0; i < g->n_nodes; i++) {
        /* maxpool2d(batchnorm2d(relu(x))) with running statistics: in eval mode
         * the norm is a per-channel affine map, applied while pooling. */
        dp_node *p = g->nodes[i];
        if (p->op != DP_OP_MAXPOOL2D) continue;
        dp_node *bn = p->in[0];
        if (bn->op != DP_OP_BATCHNORM2D || !bn->ext[0] || !bn->ext[1] || !SOLE_USE(bn, p)) continue;
        dp_node *r = bn->in[0];
        if (r->op != DP_OP_RELU || !SOLE_USE(r, bn)) continue;
        p->fuse = DP_FUSE_RELU_BN_POOL;
        p->fuse_in = r->in[0];
        r->fused_into = bn->fused_into = p;
        dp_node *cv = r->in[0];
        if (cv->op == DP_OP_CONV2D && SOLE_USE(cv, r) && dp_maxpool_fast(p) && /* square kernel = stride, no padding */
            dp_conv_pool_ok(g, cv, p->ip[0] /* the pool's kernel side */)) {
            p->fuse = DP_FUSE_CONV_RELU_BN_POOL; /* fuse_in: the conv, whose inputs the pool now reads */
            cv->fused_into = p;
        }
        /* room for the per-channel map {mu, a, b} after the argmax */
        p->aux_bytes = (p->aux_bytes + 3) / 4 * 4 + 3 * (size_t)bn->val.shape[1] * sizeof(float);
    }
#undef SOLE_USE
}

/* Multi-output passes: a node's pass does a reader's work on the data it has
 * in cache (every value is still written; docs/engine.md):
 * relu -> batch norm: the relu's forward takes the norm's batch sums, the
 * norm's backward writes the relu's input gradient; batch norm -> 2x2/4x4
 * max-pool: the norm's forward pools each plane it writes, its backward
 * expands the pool's gradient plane by plane itself. The last needs the
 * pool's own buffer (never shared): graphs with gradients only. An
 * intermediate gradient that such a pass makes needless (the relu's output
 * gradient, the norm's) is not written unless the node is a marked output or
 * in the backward call's wrt list (dp_grad_read). */
static void multi_output_pass(dp_graph *g, int reuse) {
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *b = g->nodes[i];
        b->mo_next = b->mo_prev = b->mo_act = NULL;
        b->mo_flags = 0;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *b = g->nodes[i], *r, *p;
        if (b->op != DP_OP_BATCHNORM2D) continue;
        r = b->in[0];
        if (r->op == DP_OP_RELU && r->sole_reader == b) {
            r->mo_next = b;
            b->mo_prev = r;
            b->aux_bytes = (b->aux_bytes + 7) / 8 * 8 + dp_bn_sums_bytes(b);
        }
        p = b->sole_reader;
        if (!reuse && p && p->op == DP_OP_MAXPOOL2D && dp_maxpool_fast(p)) b->mo_next = p;
        /* its backward may then take the pool's and write the relu's input gradient only */
        if (!reuse && (b->mo_next || b->mo_prev)) dp_bn_plan_scratch(b, g->ctx->threads);
        /* batch norm -> relu / leaky_relu (finite slope): the norm's forward writes both values
         * in one pass, its backward takes the activation's gradient and mask (recomputed from
         * its input); the norm's own gradient is then not written (not for a marked output). */
        if (!reuse && p && !(b->flags & DP_NF_OUTPUT) &&
            (p->op == DP_OP_RELU || (p->op == DP_OP_LEAKY_RELU && isfinite(p->fp[0])))) {
            b->mo_act = p;
            p->mo_prev = b;
        }
    }
}

/* Which node, if any, is the only reader of each value (fusion, and
 * gradients that need no zeroing). */
static int find_sole_readers(dp_graph *g) {
    int *uses = dp_calloc(g->ctx, sizeof(int) * (size_t)g->n_nodes);
    if (!uses) return -1;
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i]->sole_reader = NULL;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++) {
            dp_node *m = g->nodes[i]->in[k];
            m->sole_reader = uses[m->id]++ ? NULL : g->nodes[i];
        }
    dp_free(g->ctx, uses);
    return 0;
}

/* ------------------------------------------------------------ chunked inference */
/* A no_grad graph whose every computed value is per sample (row i of each
 * value depends only on row i of the inputs, in eval mode) can run a few
 * samples at a time: the intermediate values of one chunk then stay in cache
 * instead of streaming through memory (Meso-4 batch 32: every activation of
 * one image fits in L2, the whole batch's 64 MiB does not). */
#define CHUNK_BYTES ((size_t)2 << 20) /* the largest intermediate value of one chunk (at least one sample) */

/* Is n's value per sample, given that its inputs are (batched[k]) or are not? */
static int per_sample(const dp_node *n, const unsigned char *batched, int64_t N) {
    const dp_tensor *y = &n->val;
    if (y->ndim < 1 || y->shape[0] != N) return 0;
    int nb = 0;
    for (int k = 0; k < n->n_in; k++) nb += batched[n->in[k]->id];
    if (nb == 0) return 0;
    const dp_tensor *x = &n->in[0]->val;
    switch (n->op) {
    case DP_OP_CONV2D:
    case DP_OP_CONV_TRANSPOSE2D:
    case DP_OP_DENSE:
        return batched[n->in[0]->id] && nb == 1; /* weights and bias are not */
    case DP_OP_MATMUL:
        return batched[n->in[0]->id] && nb == 1 && n->ip[0] == 0;
    case DP_OP_BATCHNORM2D: /* eval mode with running statistics: a per-channel affine map */
        return batched[n->in[0]->id] && nb == 1 && n->ext[0] && n->ext[1];
    case DP_OP_MAXPOOL2D:
    case DP_OP_AVGPOOL2D:
    case DP_OP_GLOBAL_AVGPOOL:
    case DP_OP_UPSAMPLE_NEAREST:
    case DP_OP_UPSAMPLE_BILINEAR:
    case DP_OP_RELU:
    case DP_OP_LEAKY_RELU:
    case DP_OP_ELU:
    case DP_OP_TANH:
    case DP_OP_SIGMOID:
    case DP_OP_SCALE:
    case DP_OP_DROPOUT: /* the identity in eval mode */
    case DP_OP_STOP_GRADIENT:
    case DP_OP_RESHAPE: /* keeps dimension 0 (checked above): row i stays row i */
        return x->ndim >= 1 && x->shape[0] == N;
    case DP_OP_CONCAT:
        return nb == n->n_in && n->ip[0] != 0;
    case DP_OP_SLICE:
    case DP_OP_SOFTMAX:
    case DP_OP_LOG_SOFTMAX:
        return n->ip[0] != 0;
    case DP_OP_SUM:
    case DP_OP_MEAN:
        return n->ip[0] != DP_AXIS_ALL && n->ip[0] != 0;
    case DP_OP_ADD:
    case DP_OP_SUB:
    case DP_OP_MUL:
    case DP_OP_DIV:
        for (int k = 0; k < 2; k++) {
            const dp_tensor *t = &n->in[k]->val;
            if (batched[n->in[k]->id] ? (t->ndim != y->ndim) : (t->ndim == y->ndim && t->shape[0] != 1)) return 0;
        }
        return 1;
    default:
        return 0;
    }
}

/* Decide whether and how g runs in chunks; plan the chunk buffers. Called by
 * dp_graph_compile after the liveness pass; *ws grows to what the ops need
 * at the chunk's shapes. Leaves g->chunk 0 when the graph does not qualify. */
static dp_status plan_chunks(dp_graph *g, size_t *ws) {
    dp_ctx *ctx = g->ctx;
    int64_t N = 0;
    g->chunk = 0;
    if (!g->no_grad) return DP_OK;
    for (int i = 0; i < g->n_nodes; i++) {
        const dp_node *n = g->nodes[i];
        if (n->op != DP_OP_INPUT) continue;
        if (n->val.ndim < 1 || (N && n->val.shape[0] != N)) return DP_OK;
        N = n->val.shape[0];
    }
    if (N < 2) return DP_OK;
    unsigned char *batched = dp_calloc(ctx, (size_t)g->n_nodes);
    if (!batched) return dp_error(ctx, DP_ERR_NOMEM, "out of memory planning the graph");
    size_t biggest = 0;
    int ok = 1;
    for (int i = 0; i < g->n_nodes && ok; i++) {
        const dp_node *n = g->nodes[i];
        if (n->op == DP_OP_PARAM) continue;
        if (n->op != DP_OP_INPUT && !per_sample(n, batched, N)) ok = 0;
        batched[i] = 1;
        size_t per = (size_t)(dp_numel(&n->val) / N) * sizeof(float);
        /* a value computed inside a fused node in eval mode is never written */
        if (n->root == n && n->op != DP_OP_INPUT && !n->fused_into && per > biggest) biggest = per;
    }
    int64_t chunk = biggest ? (int64_t)(CHUNK_BYTES / biggest) : N;
    if (chunk < 1) chunk = 1;
    if (!ok || chunk >= N) {
        dp_free(ctx, batched);
        return DP_OK;
    }
    /* The ops' workspace at the chunk's shapes: run the shape rules again on
     * chunk-sized values (then put every node back as it was). */
    dp_node *saved = dp_malloc(ctx, sizeof(dp_node) * (size_t)g->n_nodes);
    g->ckind = dp_calloc(ctx, (size_t)g->n_nodes);
    g->coff = dp_calloc(ctx, sizeof(size_t) * (size_t)g->n_nodes);
    g->cfull = dp_calloc(ctx, sizeof(void *) * (size_t)g->n_nodes);
    if (!saved || !g->ckind || !g->coff || !g->cfull) {
        dp_free(ctx, saved);
        dp_free(ctx, batched);
        return dp_error(ctx, DP_ERR_NOMEM, "out of memory planning the graph");
    }
    for (int i = 0; i < g->n_nodes; i++) saved[i] = *g->nodes[i];
    dp_status st0 = g->status;
    size_t wsc = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *n = g->nodes[i];
        if (!batched[i]) continue;
        if (n->op == DP_OP_INPUT || (dp_op_get(n->op)->flags & DP_OPF_VIEW)) {
            n->val.shape[0] = chunk;
            continue;
        }
        if (dp_op_get(n->op)->shape(g, n) != DP_OK || g->status != st0 || n->aux_bytes > saved[i].aux_bytes) ok = 0;
        if (n->ws_bytes > wsc) wsc = n->ws_bytes;
        if (!ok) break;
    }
    for (int i = 0; i < g->n_nodes; i++) *g->nodes[i] = saved[i];
    dp_free(ctx, saved);
    if (!ok) { /* a shape rule disagreed (not expected): run whole batches */
        g->status = st0;
        dp_free(ctx, batched);
        return DP_OK;
    }
    if (wsc > *ws) *ws = wsc;
    /* Kinds, then chunk buffers with the planner's greedy reuse (same lifetimes). */
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *n = g->nodes[i];
        if (!batched[i]) g->ckind[i] = DP_CHUNK_NONE;
        else if (n->root != n) g->ckind[i] = DP_CHUNK_VIEW;
        else g->ckind[i] = n->op == DP_OP_INPUT ? DP_CHUNK_FULL : DP_CHUNK_OWN;
    }
    int outs = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->flags & DP_NF_OUTPUT) {
            outs++;
            if (batched[i]) g->ckind[g->nodes[i]->root->id] = DP_CHUNK_FULL;
        }
    if (!outs && batched[g->n_nodes - 1]) /* dp_graph_run computes the last node */
        g->ckind[g->nodes[g->n_nodes - 1]->root->id] = DP_CHUNK_FULL;
    size_t *size = dp_calloc(ctx, sizeof(size_t) * (size_t)g->n_nodes);
    int *free_at = dp_calloc(ctx, sizeof(int) * (size_t)g->n_nodes);
    if (!size || !free_at) {
        dp_free(ctx, size);
        dp_free(ctx, free_at);
        dp_free(ctx, batched);
        return dp_error(ctx, DP_ERR_NOMEM, "out of memory planning the graph");
    }
    int nb = 0; /* buffer index per node in coff first, then its offset */
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *n = g->nodes[i];
        if (g->ckind[i] != DP_CHUNK_OWN) continue;
        size_t need = ALIGN_UP((size_t)(dp_numel(&n->val) / N * chunk) * sizeof(float));
        int best = -1;
        for (int b = 0; b < nb; b++)
            if (free_at[b] >= 0 && free_at[b] < i && size[b] >= need && (best < 0 || size[b] < size[best])) best = b;
        if (best < 0) {
            best = nb++;
            size[best] = need;
        }
        g->coff[i] = (size_t)best;
        free_at[best] = n->last_use >= g->n_nodes ? -1 : n->last_use;
    }
    size_t total = 0;
    for (int b = 0; b < nb; b++) { /* buffer index -> offset */
        size_t sz = size[b];
        size[b] = total;
        total += sz;
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (g->ckind[i] == DP_CHUNK_OWN) g->coff[i] = size[g->coff[i]];
    dp_free(ctx, size);
    dp_free(ctx, free_at);
    dp_free(ctx, batched);
    g->cblock = dp_calloc(ctx, total ? total : 1);
    if (!g->cblock) return dp_error(ctx, DP_ERR_NOMEM, "out of memory: the graph's chunk buffers need %zu bytes", total);
    g->cblock_bytes = total;
    g->batch = N;
    g->chunk = chunk;
    return DP_OK;
}

/* dp_graph_run of a chunked graph in eval mode: every needed node, chunk by chunk. */
static dp_status run_chunked(dp_graph *g) {
    int hi = -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->flags & DP_NF_OUTPUT) {
            g->nodes[i]->flags |= DP_NF_MARK;
            hi = i;
        }
    if (hi < 0) {
        hi = g->n_nodes - 1;
        g->nodes[hi]->flags |= DP_NF_MARK;
    }
    for (int i = hi; i >= 0; i--) {
        dp_node *n = g->nodes[i];
        if (!(n->flags & DP_NF_MARK)) continue;
        for (int k = 0; k < n->n_in; k++) n->in[k]->flags |= DP_NF_MARK;
        if (g->ckind[i] != DP_CHUNK_NONE) g->cfull[i] = n->val.data;
    }
    const int64_t N = g->batch;
    ws_take(g);
    for (int64_t c0 = 0; c0 < N; c0 += g->chunk) {
        int64_t cn = N - c0 < g->chunk ? N - c0 : g->chunk;
        for (int i = 0; i <= hi; i++) {
            dp_node *n = g->nodes[i];
            if (!(n->flags & DP_NF_MARK)) continue;
            switch (g->ckind[i]) {
            case DP_CHUNK_FULL:
                n->val.shape[0] = cn;
                n->val.data = (float *)g->cfull[i] + c0 * (dp_numel(&n->val) / cn);
                break;
            case DP_CHUNK_VIEW:
                n->val.shape[0] = cn;
                n->val.data = n->root->val.data;
                break;
            case DP_CHUNK_OWN:
                n->val.shape[0] = cn;
                n->val.data = (char *)g->cblock + g->coff[i];
                break;
            default: break;
            }
            if (n->n_in == 0) continue;
            if (n->fused_into && (n->fused_into->flags & DP_NF_MARK)) continue; /* computed inside it */
            const dp_op_def *def = dp_op_get(n->op);
            if (def->forward) run_op(g, n, 0);
        }
    }
    ws_give(g);
    /* Back to whole-batch tensors; only inputs and outputs (and their views) hold whole values. */
    for (int i = 0; i <= hi; i++) {
        dp_node *n = g->nodes[i];
        if (!(n->flags & DP_NF_MARK)) continue;
        n->flags &= ~DP_NF_MARK;
        if (g->ckind[i] == DP_CHUNK_NONE) {
            n->flags |= DP_NF_FRESH;
            continue;
        }
        n->val.shape[0] = N;
        n->val.data = g->cfull[i];
        int whole = g->ckind[n->root->id] == DP_CHUNK_FULL;
        if (whole) n->flags |= DP_NF_FRESH;
    }
    return DP_OK;
}

dp_status dp_graph_compile(dp_graph *g) {
    if (!g) return DP_ERR_NULL;
    if (g->status != DP_OK) return g->status; /* message already in ctx */
    if (g->compiled) return DP_OK;
    if (g->n_nodes == 0) return dp_error(g->ctx, DP_ERR_STATE, "dp_graph_compile: the graph is empty");
    dp_ctx *ctx = g->ctx;
    const char *prof = getenv("DP_PROFILE");
    if (prof && *prof && strcmp(prof, "0") && !g->prof) g->prof = calloc(4 * (size_t)g->n_nodes, sizeof(double));
    if (find_sole_readers(g) != 0) return dp_error(ctx, DP_ERR_NOMEM, "out of memory planning the graph");
    fusion_pass(g);

    /* Which nodes may carry a gradient: reachable from a trainable leaf. */
    int any_grad = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *n = g->nodes[i];
        const dp_op_def *def = dp_op_get(n->op);
        int may = is_trainable_leaf(g, n);
        if (!(def->flags & DP_OPF_NO_GRAD) && def->backward)
            for (int k = 0; k < n->n_in; k++) may |= (n->in[k]->flags & DP_NF_MAY_GRAD) != 0;
        if (def->flags & DP_OPF_GRAD_ALIAS) may = (n->in[0]->flags & DP_NF_MAY_GRAD) != 0;
        if (may) n->flags |= DP_NF_MAY_GRAD;
        any_grad |= may;
        if (def->flags & DP_OPF_VIEW) n->root = n->in[0]->root;
        n->last_use = i;
    }
    multi_output_pass(g, !any_grad);
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *n = g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            dp_node *r = n->in[k]->root;
            if (r->last_use < i) r->last_use = i;
        }
        if (n->fuse_in && n->fuse_in->root->last_use < i) n->fuse_in->root->last_use = i; /* a fused node reads it */
        if (n->fuse == DP_FUSE_CONV_RELU_BN_POOL) /* ... and the conv's inputs */
            for (int k = 0; k < n->fuse_in->n_in; k++)
                if (n->fuse_in->in[k]->root->last_use < i) n->fuse_in->in[k]->root->last_use = i;
        /* Outputs live to the end; so do inputs: the caller fills them once and may run several passes. */
        if ((n->flags & DP_NF_OUTPUT) || n->op == DP_OP_INPUT) n->root->last_use = g->n_nodes;
    }
    size_t ws = 0;
    dp_status cs = plan_chunks(g, &ws);
    if (cs) return cs;

    /* Value storage. A graph that computes gradients keeps every activation
     * (backward reads them); an inference graph reuses buffers whose last
     * reader has run (greedy best fit). Sizes are in bytes, 64-aligned. */
    int nb = 0, cap = g->n_nodes;
    size_t *buf_size = dp_calloc(ctx, sizeof(size_t) * (size_t)cap);
    int *buf_free_at = dp_calloc(ctx, sizeof(int) * (size_t)cap); /* node index after which it is free; -1 = busy */
    if (!buf_size || !buf_free_at) {
        dp_free(ctx, buf_size);
        dp_free(ctx, buf_free_at);
        return dp_error(ctx, DP_ERR_NOMEM, "out of memory planning the graph");
    }
    size_t aux = 0, grads = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *n = g->nodes[i];
        if (n->ws_bytes > ws) ws = n->ws_bytes;
        aux += ALIGN_UP(n->aux_bytes);
        if ((n->flags & DP_NF_MAY_GRAD) && n->op != DP_OP_PARAM && !(dp_op_get(n->op)->flags & DP_OPF_GRAD_ALIAS))
            grads += ALIGN_UP((size_t)dp_numel(&n->val) * sizeof(float));
        if (n->op == DP_OP_PARAM || n->root != n) continue;
        size_t need = ALIGN_UP((size_t)dp_numel(&n->val) * sizeof(float));
        int best = -1;
        if (!any_grad)
            for (int b = 0; b < nb; b++)
                if (buf_free_at[b] >= 0 && buf_free_at[b] < i && buf_size[b] >= need &&
                    (best < 0 || buf_size[b] < buf_size[best]))
                    best = b;
        if (best < 0) {
            best = nb++;
            buf_size[best] = need;
        }
        n->buf = best;
        buf_free_at[best] = n->last_use >= g->n_nodes ? -1 : n->last_use; /* busy until its last reader has run */
    }
    /* Note: a buffer freed after node j is reusable by nodes > j only, and a
     * node never gets a buffer still read by a later node (free_at < i). */
    size_t vals = 0;
    size_t *buf_off = dp_calloc(ctx, sizeof(size_t) * (size_t)(nb ? nb : 1));
    if (!buf_off) {
        dp_free(ctx, buf_size);
        dp_free(ctx, buf_free_at);
        return dp_error(ctx, DP_ERR_NOMEM, "out of memory planning the graph");
    }
    for (int b = 0; b < nb; b++) {
        buf_off[b] = vals;
        vals += buf_size[b];
    }
    if (ws && dp_ctx_ws_reserve(ctx, ws) != DP_OK) {
        dp_free(ctx, buf_size);
        dp_free(ctx, buf_free_at);
        dp_free(ctx, buf_off);
        return dp_error(ctx, DP_ERR_NOMEM, "out of memory: the graph's ops need %zu bytes of workspace", ws);
    }
    size_t total = vals + grads + aux + (size_t)nb * sizeof(dp_node *) + DP_ALIGN;
    g->block = dp_calloc(ctx, total);
    if (!g->block) {
        if (ws) dp_ctx_ws_release(ctx);
        dp_free(ctx, buf_size);
        dp_free(ctx, buf_free_at);
        dp_free(ctx, buf_off);
        return dp_error(ctx, DP_ERR_NOMEM, "out of memory: the graph needs %zu bytes of activations", total);
    }
    g->block_bytes = total;
    char *p = g->block;
    char *gp = p + vals, *ap = gp + grads, *wp = ap + aux;
    g->ws = NULL;
    g->ws_bytes = ws;
    g->buf_owner = (dp_node **)wp;
    g->n_bufs = nb;
    for (int i = 0; i < g->n_nodes; i++) {
        dp_node *n = g->nodes[i];
        const dp_op_def *def = dp_op_get(n->op);
        if (n->op == DP_OP_PARAM) {
            n->val.data = n->param->data;
        } else if (n->root != n) {
            n->val.data = n->root->val.data; /* views come after their root */
        } else {
            n->val.data = p + buf_off[n->buf];
        }
        if (n->aux_bytes) {
            n->aux = ap;
            ap += ALIGN_UP(n->aux_bytes);
        }
        n->grad.data = NULL;
        if (n->flags & DP_NF_MAY_GRAD) {
            dp_tensor_set_contiguous(&n->grad, DP_F32, n->val.ndim, n->val.shape);
            if (n->op == DP_OP_PARAM) {
                dp_tensor *gt = dp_param_grad(n->param);
                if (!gt) {
                    dp_free(ctx, buf_size);
                    dp_free(ctx, buf_free_at);
                    dp_free(ctx, buf_off);
                    return dp_error(ctx, DP_ERR_NOMEM, "out of memory for the gradient of '%s'", n->param->name);
                }
                n->grad.data = gt->data;
            } else if (def->flags & DP_OPF_GRAD_ALIAS) {
                n->grad.data = n->in[0]->grad.data;
            } else {
                n->grad.data = gp;
                n->flags |= DP_NF_OWN_GRAD;
                gp += ALIGN_UP((size_t)dp_numel(&n->val) * sizeof(float));
            }
        }
    }
    dp_free(ctx, buf_size);
    dp_free(ctx, buf_free_at);
    dp_free(ctx, buf_off);
    g->compiled = 1;
    return DP_OK;
}

/* ------------------------------------------------------------ running */
static dp_status need_compiled(dp_graph *g, const char *fn) {
    if (!g) return DP_ERR_NULL;
    if (g->status != DP_OK) return dp_error(g->ctx, g->status, "%s: the graph failed to build: %s", fn, g->ctx->err);
    if (!g->compiled) return dp_error(g->ctx, DP_ERR_STATE, "%s: call dp_graph_compile first", fn);
    if (!dp_gemm_thread_ready()) /* the ops' GEMMs on this thread */
        return dp_error(g->ctx, DP_ERR_NOMEM, "%s: out of memory for this thread's GEMM packing buffers", fn);
    return DP_OK;
}

dp_status dp_graph_invalidate(dp_graph *g) {
    dp_status s = need_compiled(g, "dp_graph_invalidate");
    if (s) return s;
    for (int i = 0; i < g->n_nodes; i++) {
        g->nodes[i]->flags &= ~DP_NF_FRESH;
        g->nodes[i]->mo_flags = 0; /* a new pass: nothing is done ahead */
    }
    return DP_OK;
}

static dp_status check_target(dp_graph *g, dp_node *t, const char *fn) {
    if (!t) return dp_error(g->ctx, DP_ERR_NULL, "%s: target node is NULL", fn);
    if (t->id >= g->n_nodes || g->nodes[t->id] != t) return dp_error(g->ctx, DP_ERR_ARG, "%s: node belongs to another graph", fn);
    return DP_OK;
}

dp_status dp_graph_forward(dp_graph *g, int n_targets, dp_node *const *targets) {
    dp_status s = need_compiled(g, "dp_graph_forward");
    if (s) return s;
    if (n_targets < 0 || (n_targets > 0 && !targets)) return dp_error(g->ctx, DP_ERR_ARG, "dp_graph_forward: bad target list");
    int hi = -1;
    for (int i = 0; i < n_targets; i++) {
        if ((s = check_target(g, targets[i], "dp_graph_forward"))) return s;
        targets[i]->flags |= DP_NF_MARK;
        if (targets[i]->id > hi) hi = targets[i]->id;
    }
    /* Mark ancestors (walk down in reverse topological order). */
    for (int i = hi; i >= 0; i--) {
        dp_node *n = g->nodes[i];
        if (!(n->flags & DP_NF_MARK)) continue;
        for (int k = 0; k < n->n_in; k++) n->in[k]->flags |= DP_NF_MARK;
    }
    ws_take(g);
    for (int i = 0; i <= hi; i++) {
        dp_node *n = g->nodes[i];
        if (!(n->flags & DP_NF_MARK)) continue;
        n->flags &= ~DP_NF_MARK;
        if (n->flags & DP_NF_FRESH) continue;
        if (n->fused_into && !g->training && (n->fused_into->flags & DP_NF_MARK) && !(n->fused_into->flags & DP_NF_FRESH)) {
            n->flags |= DP_NF_FRESH; /* computed inside the fused node, which runs in this pass: no value of its own */
            continue;
        }
        const dp_op_def *def = dp_op_get(n->op);
        if (n->buf >= 0 && g->n_bufs) {
            /* Taking a shared buffer evicts its previous holder (and views of it). */
            dp_node *prev = g->buf_owner[n->buf];
            if (prev && prev != n) prev->flags &= ~DP_NF_FRESH;
            g->buf_owner[n->buf] = n;
        }
        if (n->root != n && !(n->root->flags & DP_NF_FRESH)) {
            /* cannot happen: inputs are computed first */
        }
        if (!(def->flags & DP_OPF_VIEW) || def->forward) run_op(g, n, 0);
        n->flags |= DP_NF_FRESH;
    }
    ws_give(g);
    /* Views whose root was evicted are stale too. */
    if (g->n_bufs)
        for (int i = 0; i < g->n_nodes; i++) {
            dp_node *n = g->nodes[i];
            if (n->root != n && !(n->root->flags & DP_NF_FRESH)) n->flags &= ~DP_NF_FRESH;
        }
    return DP_OK;
}

dp_status dp_graph_run(dp_graph *g) {
    dp_status s = dp_graph_invalidate(g);
    if (s) return s;
    if (g->chunk && !g->training) return run_chunked(g);
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->flags & DP_NF_OUTPUT) n++;
    if (n == 0) return dp_graph_forward(g, 1, &g->nodes[g->n_nodes - 1]);
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->flags & DP_NF_OUTPUT) {
            s = dp_graph_forward(g, 1, &g->nodes[i]);
            if (s) return s;
        }
    return DP_OK;
}

static void zero_range(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    memset((float *)arg + b, 0, (size_t)(e - b) * sizeof(float));
}
static void zero_floats(dp_ctx *ctx, float *p, int64_t n) { dp_parallel_for_cost(ctx, n, 1, zero_range, p); }

dp_status dp_graph_backward(dp_graph *g, dp_node *loss, int n_wrt, dp_node *const *wrt) {
    dp_status s = need_compiled(g, "dp_graph_backward");
    if (s) return s;
    dp_ctx *ctx = g->ctx;
    if ((s = check_target(g, loss, "dp_graph_backward"))) return s;
    if (dp_numel(&loss->val) != 1) {
        char b[64];
        return dp_error(ctx, DP_ERR_SHAPE, "dp_graph_backward: the loss must be a scalar, node %d (%s) is %s", loss->id,
                        dp_op_get(loss->op)->name, DP_SHAPE_STR(&loss->val, b));
    }
    if (!(loss->flags & DP_NF_FRESH))
        return dp_error(ctx, DP_ERR_STATE, "dp_graph_backward: the loss was not computed in this pass; call dp_graph_forward first");
    if (n_wrt < 0 || (n_wrt > 0 && !wrt)) return dp_error(ctx, DP_ERR_ARG, "dp_graph_backward: bad wrt list");
    for (int i = 0; i < n_wrt; i++) {
        if ((s = check_target(g, wrt[i], "dp_graph_backward"))) return s;
        if (!wrt[i]->grad.data)
            return dp_error(ctx, DP_ERR_ARG,
                            "dp_graph_backward: no gradient can reach node %d (%s%s%s): a buffer, a detached value, or an "
                            "input without dp_input_requires_grad",
                            wrt[i]->id, dp_op_get(wrt[i]->op)->name, wrt[i]->name ? " " : "", wrt[i]->name ? wrt[i]->name : "");
    }
    /* 1. Nodes that depend on a requested leaf (forward sweep). */
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i]->flags &= ~(DP_NF_BWD | DP_NF_MARK | DP_NF_WRT);
    for (int i = 0; i < n_wrt; i++) wrt[i]->flags |= DP_NF_BWD | DP_NF_WRT;
    for (int i = 0; i <= loss->id; i++) {
        dp_node *n = g->nodes[i];
        if (!(n->flags & DP_NF_MAY_GRAD)) continue;
        if (n->n_in == 0) {
            if (n_wrt == 0 && is_trainable_leaf(g, n)) n->flags |= DP_NF_BWD;
            continue;
        }
        const dp_op_def *def = dp_op_get(n->op);
        if ((def->flags & DP_OPF_NO_GRAD) || !(def->backward || (def->flags & DP_OPF_GRAD_ALIAS))) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k]->flags & DP_NF_BWD) n->flags |= DP_NF_BWD;
    }
    /* 2. Keep those that are also ancestors of the loss (backward sweep). */
    loss->flags |= DP_NF_MARK;
    for (int i = loss->id; i >= 0; i--) {
        dp_node *n = g->nodes[i];
        if (!(n->flags & DP_NF_MARK)) {
            n->flags &= ~DP_NF_BWD;
            continue;
        }
        n->flags &= ~DP_NF_MARK;
        /* Only a node on the gradient path passes a gradient to its inputs:
         * what feeds a detached value (stop_gradient) gets none from it. */
        if (n->flags & DP_NF_BWD)
            for (int k = 0; k < n->n_in; k++) n->in[k]->flags |= DP_NF_MARK;
        if ((n->flags & DP_NF_BWD) && !(n->flags & DP_NF_FRESH))
            return dp_error(ctx, DP_ERR_STATE, "dp_graph_backward: node %d (%s) on the gradient path is stale; run forward first",
                            n->id, dp_op_get(n->op)->name);
    }
    if (!(loss->flags & DP_NF_BWD)) return DP_OK; /* the loss does not depend on what was asked: zero gradient */
    /* 3. Zero the intermediate gradients (parameters accumulate), seed the loss.
     * A gradient whose only contribution comes from a reader that can store
     * it (DP_OPF_GRAD_STORE) is not zeroed: that reader writes all of it. */
    for (int i = 0; i <= loss->id; i++) {
        dp_node *n = g->nodes[i], *r = n->sole_reader;
        n->flags &= ~DP_NF_GRAD_STORE;
        n->mo_flags &= ~(DP_MO_GRAD | DP_MO_POOLGRAD); /* backward work done ahead is for this call only */
        if (!(n->flags & DP_NF_BWD) || !(n->flags & DP_NF_OWN_GRAD)) continue;
        if (n != loss && r && r->id <= loss->id && (r->flags & DP_NF_BWD) && r->in[0] == n &&
            (dp_op_get(r->op)->flags & DP_OPF_GRAD_STORE))
            n->flags |= DP_NF_GRAD_STORE;
        else
            zero_floats(ctx, dp_f(&n->grad), dp_numel(&n->grad));
    }
    dp_f(&loss->grad)[0] += 1.0f;
    /* 4. Reverse sweep. */
    ws_take(g);
    for (int i = loss->id; i >= 0; i--) {
        dp_node *n = g->nodes[i];
        if (!(n->flags & DP_NF_BWD) || n->n_in == 0) continue;
        const dp_op_def *def = dp_op_get(n->op);
        if (def->backward && !(def->flags & DP_OPF_GRAD_ALIAS)) run_op(g, n, 1);
    }
    ws_give(g);
    return DP_OK;
}

dp_tensor *dp_node_value(dp_node *n) { return n ? &n->val : NULL; }
dp_tensor *dp_node_grad(dp_node *n) { return (n && n->grad.data) ? &n->grad : NULL; }
const char *dp_node_op_name(const dp_node *n) { return n ? dp_op_get(n->op)->name : "?"; }

void dp_graph_print(const dp_graph *g, void *file) {
    FILE *f = file ? file : stdout;
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) {
        const dp_node *n = g->nodes[i];
        char b[64];
        fprintf(f, "%4d %-20s %-18s", n->id, dp_op_get(n->op)->name, DP_SHAPE_STR(&n->val, b));
        for (int k = 0; k < n->n_in; k++) fprintf(f, " %d", n->in[k]->id);
        if (n->name && *n->name) fprintf(f, "  '%s'", n->name);
        if (n->flags & DP_NF_OUTPUT) fprintf(f, "  [output]");
        fputc('\n', f);
    }
}
