/* doppel internals shared by core/, ops/, nn/, optim/, io/. Not installed. */
#ifndef DOPPEL_INTERNAL_H
#define DOPPEL_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "doppel/doppel.h"

#define DP_ALIGN 64

#if defined(__GNUC__)
#define DP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DP_PRINTF(a, b)
#endif

/* ------------------------------------------------------------ arena */
/* A bump allocator made of chunks taken from the context's allocator. */
typedef struct dp_arena_chunk dp_arena_chunk;
typedef struct dp_arena {
    dp_arena_chunk *head;
    const dp_allocator *alloc;
    size_t chunk_size;
    size_t total; /* bytes reserved from the allocator */
} dp_arena;

void dp_arena_init(dp_arena *a, const dp_allocator *alloc, size_t chunk_size);
void *dp_arena_alloc(dp_arena *a, size_t size, size_t align); /* zeroed; NULL on failure */
char *dp_arena_strdup(dp_arena *a, const char *s);
void dp_arena_release(dp_arena *a);

/* ------------------------------------------------------------ thread pool */
typedef struct dp_pool dp_pool;
/* fn(arg, begin, end, tid) is called on [begin,end) ranges that split [0,n) into
 * at most `threads` contiguous parts; part i always goes to the same range, so
 * work that depends only on its range is deterministic. */
typedef void (*dp_range_fn)(void *arg, int64_t begin, int64_t end, int tid);
dp_status dp_pool_new(const dp_allocator *alloc, int threads, dp_pool **out);
void dp_pool_free(dp_pool *p, const dp_allocator *alloc);
void dp_parallel_for(dp_ctx *ctx, int64_t n, dp_range_fn fn, void *arg);
/* Same, but never uses more than max_parts parts (e.g. to keep reductions fixed). */
void dp_parallel_for_n(dp_ctx *ctx, int64_t n, int max_parts, dp_range_fn fn, void *arg);
/* Same, for n items of about `cost` elements of memory traffic each: one part
 * per DP_PAR_GRAIN elements at most, so that small jobs stay on the calling
 * thread (waking the pool costs more than they do). */
#define DP_PAR_GRAIN 32768
void dp_parallel_for_cost(dp_ctx *ctx, int64_t n, int64_t cost, dp_range_fn fn, void *arg);

/* ------------------------------------------------------------ context */
struct dp_ctx {
    dp_allocator alloc;
    int threads;
    uint64_t seed;
    size_t max_tensor_bytes;
    dp_limits limits; /* untrusted input (dp_ctx_set_limits), defaults filled in */
    dp_arena arena; /* tensors, names */
    dp_pool *pool;
    dp_status last_status;
    char err[1024];
    /* The ops' workspace, one for all the graphs of the context: their runs
     * take turns on it (ws_mu), so it costs the largest graph's need, not the
     * sum (DCGAN's D and G steps are two graphs). Freed with the last graph
     * that reserved it. */
    pthread_mutex_t ws_mu;
    void *ws;
    size_t ws_bytes;
    int ws_users;
};

/* Record an error in ctx (printf-style) and return the status, so callers can
 * write `return dp_error(ctx, DP_ERR_SHAPE, "...", ...);`. ctx may be NULL. */
dp_status dp_error(dp_ctx *ctx, dp_status s, const char *fmt, ...) DP_PRINTF(3, 4);
dp_status dp_verror(dp_ctx *ctx, dp_status s, const char *fmt, va_list ap);
void *dp_malloc(dp_ctx *ctx, size_t size);  /* 64-byte aligned, via the ctx allocator; not zeroed */
void *dp_calloc(dp_ctx *ctx, size_t size);  /* zeroed */
void dp_free(dp_ctx *ctx, void *p);
/* The shared workspace: a compiled graph reserves what its ops need (and
 * releases it when freed); a pass locks it and gets its address (NULL when
 * nothing was reserved). The contents are scratch: nothing survives a lock. */
dp_status dp_ctx_ws_reserve(dp_ctx *ctx, size_t bytes);
void dp_ctx_ws_release(dp_ctx *ctx);
void *dp_ctx_ws_lock(dp_ctx *ctx);
void dp_ctx_ws_unlock(dp_ctx *ctx);

/* ------------------------------------------------------------ tensors */
enum {
    DP_TF_BUFFER = 1, /* non-trainable (running stats) */
    DP_TF_PARAM = 2,  /* belongs to a paramset */
};

struct dp_tensor {
    dp_dtype dtype;
    int ndim;
    int64_t shape[DP_MAX_DIMS];
    int64_t stride[DP_MAX_DIMS]; /* elements */
    void *data;
    const char *name;
    dp_ctx *ctx;
    dp_tensor *grad; /* parameters: gradient buffer */
    int flags;
    dp_init init;
};

int64_t dp_shape_numel(int ndim, const int64_t *shape);
void dp_tensor_set_contiguous(dp_tensor *t, dp_dtype dtype, int ndim, const int64_t *shape);
/* "[2,3,4]" into buf. */
const char *dp_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
#define DP_SHAPE_STR(t, buf) dp_shape_str((t)->ndim, (t)->shape, buf, sizeof buf)
/* Allocate storage for t from the ctx arena (checks the size limit). */
dp_status dp_tensor_alloc_storage(dp_ctx *ctx, dp_tensor *t);

/* ------------------------------------------------------------ graph */
#define DP_NODE_IPARAMS 16
#define DP_NODE_FPARAMS 4

typedef struct dp_op_def dp_op_def;

enum {
    DP_NF_OUTPUT = 1 << 0,
    DP_NF_REQ_GRAD = 1 << 1, /* input leaf that asked for its gradient */
    DP_NF_FRESH = 1 << 2,    /* computed in this pass */
    DP_NF_MARK = 1 << 3,     /* scratch mark for graph walks */
    DP_NF_MAY_GRAD = 1 << 4, /* some gradient may flow through (has a grad buffer) */
    DP_NF_BWD = 1 << 5,      /* on the path of the current backward call */
    DP_NF_OWN_GRAD = 1 << 6, /* the grad buffer is this node's own (zeroed before backward) */
    DP_NF_GRAD_STORE = 1 << 7, /* this backward call did not zero the grad buffer: its only reader,
                                * whose op has DP_OPF_GRAD_STORE, stores into it (dp_grad_acc) */
    DP_NF_WRT = 1 << 8,        /* named in the current backward call's wrt list: its gradient is read */
};

struct dp_node {
    int id;
    int op;
    int n_in;
    dp_node **in;
    dp_tensor val;  /* value; data set by the planner */
    dp_tensor grad; /* gradient; data NULL when no gradient passes */
    dp_tensor *param;          /* DP_OP_PARAM: the parameter tensor */
    dp_tensor *ext[2];         /* extra tensors an op updates (batch-norm running stats) */
    int ip[DP_NODE_IPARAMS];   /* integer attributes (meaning per op) */
    float fp[DP_NODE_FPARAMS]; /* float attributes */
    size_t aux_bytes;          /* per-node memory kept from forward to backward */
    void *aux;
    size_t ws_bytes;           /* temporary workspace needed during forward/backward */
    int flags;
    int last_use;              /* planner: index of the last consumer */
    int buf;                   /* planner: storage buffer index (-1: view or leaf) */
    dp_node *root;             /* node whose storage the value lives in (itself unless a view) */
    const char *name;
    /* Fusion (set by dp_graph_compile, see docs/engine.md): */
    int fuse;                  /* the pattern this node computes in eval mode (DP_FUSE_*), 0 = none */
    dp_node *fuse_in;          /* ... reading this value instead of in[0]'s */
    dp_node *fused_into;       /* this node's value is computed inside that node's forward (eval mode) */
    dp_node *sole_reader;      /* the only node that reads this value, once (NULL: none or several) */
    /* Multi-output passes (set by dp_graph_compile; every value is still written): */
    dp_node *mo_next;          /* relu: the batch norm whose batch statistics its forward also sums;
                                * batch norm: the max-pool whose output its forward also computes */
    dp_node *mo_prev;          /* batch norm: the relu whose input gradient its backward also writes;
                                * relu / leaky_relu: the batch norm (its mo_act) that computes it */
    dp_node *mo_act;           /* batch norm: the relu / leaky_relu that is its only reader, whose value its
                                * forward also writes and whose backward its backward does */
    int mo_flags;              /* DP_MO_*: work another node's pass did for this node */
};

enum {
    DP_MO_STATS = 1, /* batch norm: its batch sums are in its aux (summed by its relu's forward) */
    DP_MO_VALUE = 2, /* max-pool: its value (and argmax) was computed by its batch norm's forward */
    DP_MO_GRAD = 4,  /* relu: its input's gradient was written by its batch norm's backward */
    DP_MO_BNACT = 8, /* relu / leaky_relu: its value was written by the batch norm before it in this pass,
                      * and that norm's backward does its backward (reading this node's gradient) */
    DP_MO_POOLGRAD = 16, /* batch norm: its max-pool's backward did not write this node's gradient;
                          * the norm's backward expands it plane by plane from the pool's (argmax kept) */
};
/* A node whose gradient someone reads after dp_graph_backward (marked output or
 * named in wrt): a fused pass must still write it. */
static inline int dp_grad_read(const dp_node *n) { return (n->flags & (DP_NF_OUTPUT | DP_NF_WRT)) != 0; }

/* Fusion patterns (no_grad graphs, applied in eval mode only). */
enum {
    DP_FUSE_NONE = 0,
    /* maxpool2d(batchnorm2d_eval(relu(x))): the pool reads relu(x) through the
     * per-channel affine map of the batch norm; relu and batchnorm do nothing. */
    DP_FUSE_RELU_BN_POOL = 1,
    /* maxpool2d(batchnorm2d_eval(relu(conv2d(x)))): the same, and the conv runs
     * inside the pool too, one band of output rows at a time into scratch, so
     * its full-size output is never written nor read back (Meso-4's 67 MB at
     * batch 32); conv, relu and batchnorm do nothing. fuse_in is the conv. */
    DP_FUSE_CONV_RELU_BN_POOL = 2,
};

struct dp_graph {
    dp_ctx *ctx;
    dp_arena arena; /* nodes and their arrays */
    dp_node **nodes;
    int n_nodes, cap_nodes;
    dp_status status; /* sticky build error */
    int compiled;
    int training;
    int no_grad; /* inference only: no gradient buffers, activation reuse */
    int no_dropout; /* dp_graph_set_dropout(g, 0): dropout is the identity even in training */
    dp_rng rng;
    void *ws;        /* the context's workspace during a pass (dp_ctx_ws_lock), else NULL */
    size_t ws_bytes; /* what the ops need of it; reserved at compile when not 0 */
    void *block;  /* one allocation for all activations/grads/aux */
    size_t block_bytes;
    dp_node **buf_owner; /* planner: which node currently holds each reusable buffer */
    int n_bufs;
    /* Chunked inference (no_grad graphs in eval mode; docs/engine.md): dp_graph_run
     * runs every node on `chunk` samples at a time, so intermediate values stay in cache. */
    int64_t batch, chunk; /* samples in the batch and per chunk (chunk 0: off) */
    void *cblock;         /* chunk-sized buffers of the intermediate values */
    size_t cblock_bytes;
    signed char *ckind;   /* per node: DP_CHUNK_* (allocated, with coff and cfull, when a graph could be chunked) */
    size_t *coff;         /* per node: offset of its chunk buffer in cblock */
    void **cfull;         /* per node: its full-size storage during a chunked pass */
    /* DP_PROFILE=1 (read at compile): seconds and calls of every node's forward
     * and backward, printed to stderr by dp_graph_free (docs/engine.md). */
    double *prof; /* [4 * n_nodes]: forward s, backward s, forward calls, backward calls */
};

/* How a node's value is stored during a chunked pass. */
enum {
    DP_CHUNK_NONE = 0, /* not per sample (parameters): as it is */
    DP_CHUNK_FULL,     /* inputs and outputs: the chunk's rows of the full tensor */
    DP_CHUNK_VIEW,     /* a view of a per-sample value: follows its root */
    DP_CHUNK_OWN,      /* an intermediate value: a chunk-sized buffer of its own */
};

/* Flags of an op. */
enum {
    DP_OPF_VIEW = 1 << 0,       /* the value aliases input 0's storage (no compute) */
    DP_OPF_GRAD_ALIAS = 1 << 1, /* the gradient aliases input 0's gradient (backward is a no-op) */
    DP_OPF_NO_GRAD = 1 << 2,    /* no gradient flows to the inputs */
    DP_OPF_LEAF = 1 << 3,
    DP_OPF_RANDOM = 1 << 4,     /* uses the graph's random stream */
    DP_OPF_GRAD_STORE = 1 << 5, /* backward writes every element of in[0]'s gradient, storing instead of
                                 * adding when dp_grad_acc(in[0]) is 0 (the graph then skips zeroing it) */
};

struct dp_op_def {
    const char *name;
    /* Check inputs and attributes; set n->val's dtype/ndim/shape (contiguous)
     * and n->aux_bytes / n->ws_bytes. Report problems with dp_node_error. */
    dp_status (*shape)(dp_graph *g, dp_node *n);
    /* Compute n->val from the inputs' values. */
    void (*forward)(dp_graph *g, dp_node *n);
    /* ADD d(loss)/d(input) into in[i]->grad for every input with dp_wants_grad(in[i]),
     * from n->grad (and the saved values). NULL for ops without a gradient. */
    void (*backward)(dp_graph *g, dp_node *n);
    unsigned flags;
};

typedef enum dp_op_id {
#define DP_OP(id, def) id,
#include "ops/op_list.h"
#undef DP_OP
    DP_OP_COUNT
} dp_op_id;

const dp_op_def *dp_op_get(int op);

/* Builders: start a node (checks g, the inputs and the sticky status), set
 * attributes, then finish (runs the shape rule). Both return NULL on error. */
dp_node *dp_node_begin(dp_graph *g, int op, int n_in, dp_node *const *in);
dp_node *dp_node_finish(dp_graph *g, dp_node *n);
/* Record a build error naming the node's op (returns s). */
dp_status dp_node_error(dp_graph *g, dp_node *n, dp_status s, const char *fmt, ...) DP_PRINTF(4, 5);
/* Record a sticky error in the graph (first one wins). */
void dp_graph_fail(dp_graph *g, dp_status s, const char *fmt, ...) DP_PRINTF(3, 4);

/* op_norm.c: the eval-mode affine map of a batch-norm node, y = (x - mu) * a + b,
 * as rba[3c..3c+2] = {mu, a, b} for each channel c (rounded as its forward does). */
void dp_bn_eval_affine(const dp_node *bn, float *rba);
/* op_norm.c: whether a batch norm normalises with batch statistics now, and
 * where a relu's forward leaves them for it ({shift, s1, s2} per channel). */
int dp_bn_batch_mode(const dp_graph *g, const dp_node *bn);
double *dp_bn_sums(const dp_node *bn);
size_t dp_bn_sums_bytes(const dp_node *bn);
/* op_pool.c: max-pool on the fast path (kernel = stride = 2 or 4, no padding),
 * and one plane of it computed outside its forward (argmax kept as forward does). */
int dp_maxpool_fast(const dp_node *p);
void dp_maxpool_plane(dp_node *p, int64_t plane);
/* ... and the gradient of its input's plane, written whole into gx (HW floats):
 * the pool's output gradient at each window's argmax, 0 elsewhere (the values
 * its backward stores). */
void dp_maxpool_plane_grad(const dp_node *p, int64_t plane, float *gx);
/* op_norm.c: a batch norm's workspace when its backward may fuse the pool's or
 * the relu's (multi-output passes, graphs with gradients): a plane per thread. */
void dp_bn_plan_scratch(dp_node *bn, int threads);
/* Whether the batch norm this max-pool reads takes the pool's backward (then the
 * pool writes nothing and sets DP_MO_POOLGRAD on it). */
int dp_bn_takes_pool_grad(const dp_graph *g, const dp_node *pool);
/* op_conv.c: a conv2d whose eval-mode output a k x k max-pool (stride k, no
 * padding) can take band by band (the stride-1 path, output sides multiples
 * of k), and that forward: y = maxpool_k(rba(relu(conv(x)))), rba the batch
 * norm's map as dp_bn_eval_affine writes it, y the pool's value. The conv's
 * own value is never written. */
int dp_conv_pool_ok(const dp_graph *g, const dp_node *conv, int k);
void dp_conv_pool_fwd(dp_graph *g, const dp_node *conv, int k, const float *rba, float *y);

static inline float *dp_f(dp_tensor *t) { return (float *)t->data; }
static inline int dp_wants_grad(const dp_node *n) { return (n->flags & DP_NF_BWD) && n->grad.data; }
/* 1: add into n's gradient; 0: store (the reader of a DP_NF_GRAD_STORE node). */
static inline int dp_grad_acc(const dp_node *n) { return !(n->flags & DP_NF_GRAD_STORE); }
static inline int64_t dp_numel(const dp_tensor *t) { return dp_shape_numel(t->ndim, t->shape); }

/* ------------------------------------------------------------ kernels */
/* C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major with leading dims. */
/* This thread's GEMM packing buffers (a heap block of ~1.3 MiB, freed when
 * the thread exits): 1 when there, 0 when they could not be allocated. Every
 * GEMM makes them on first use and aborts if it cannot; the graph's passes
 * and the pool's workers (dp_pool_new) call this first and report
 * DP_ERR_NOMEM. */
int dp_gemm_thread_ready(void);
void dp_sgemm(dp_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* Single-threaded variant (for callers that already parallelise). */
void dp_sgemm_st(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

#endif
