/* doppel — static dataflow graphs with reverse-mode automatic differentiation.
 *
 * Build once, run many times (like TF1 or ggml):
 *
 *   dp_graph *g;  dp_graph_new(ctx, &g);
 *   dp_node *x = dp_input(g, "x", 2, (int64_t[]){32, 784});
 *   dp_node *y = dp_relu(g, dp_dense(g, x, dp_param(g, w), dp_param(g, b)));
 *   ...
 *   if (dp_graph_compile(g) != DP_OK) puts(dp_ctx_error(ctx));
 *
 * Node builders never fail loudly: on a bad argument they return NULL and
 * record the first error in the graph ("sticky"); a NULL input makes them
 * return NULL too. dp_graph_compile() (or dp_graph_status()) reports it. So a
 * whole model can be written without checking each line.
 *
 * Layout: images are NCHW (batch, channels, height, width), as in PyTorch.
 * Parameters are dp_tensors owned by a dp_paramset (see nn.h) and may be
 * shared by several graphs (e.g. batch-1 and batch-32 inference graphs, or the
 * generator and discriminator graphs of a GAN).
 */
#ifndef DOPPEL_GRAPH_H
#define DOPPEL_GRAPH_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_graph dp_graph;
typedef struct dp_node dp_node;

dp_status dp_graph_new(dp_ctx *ctx, dp_graph **out);
void dp_graph_free(dp_graph *g);
dp_ctx *dp_graph_ctx(dp_graph *g);
/* The first error recorded while building (DP_OK if none). */
dp_status dp_graph_status(const dp_graph *g);

/* ------------------------------------------------------------ leaves */
dp_node *dp_input(dp_graph *g, const char *name, int ndim, const int64_t *shape);
/* Ask for d(loss)/d(input), e.g. for saliency maps. Call before compile. */
dp_status dp_input_requires_grad(dp_graph *g, dp_node *input);
/* A parameter node: reads the tensor (shared, not copied). Its gradient is
 * accumulated into the tensor's gradient (dp_param_grad) by dp_graph_backward.
 * Tensors marked as buffers (running statistics) are never trained. */
dp_node *dp_param(dp_graph *g, dp_tensor *t);

/* ------------------------------------------------------------ arithmetic */
/* Broadcasting follows NumPy: shapes are aligned at the right; a dimension of 1 stretches. */
dp_node *dp_add(dp_graph *g, dp_node *a, dp_node *b);
dp_node *dp_sub(dp_graph *g, dp_node *a, dp_node *b);
dp_node *dp_mul(dp_graph *g, dp_node *a, dp_node *b);
dp_node *dp_div(dp_graph *g, dp_node *a, dp_node *b);
dp_node *dp_scale(dp_graph *g, dp_node *a, float s);
/* 2-D matrix product [M,K]x[K,N]; trans_a / trans_b use the transposed operand. */
dp_node *dp_matmul(dp_graph *g, dp_node *a, dp_node *b, int trans_a, int trans_b);
/* Fully connected: x [N,in], w [out,in] (PyTorch layout), b [out] or NULL → [N,out]. */
dp_node *dp_dense(dp_graph *g, dp_node *x, dp_node *w, dp_node *b);

/* ------------------------------------------------------------ convolution */
typedef struct dp_conv_opts {
    int stride_h, stride_w;     /* 0 means 1 */
    int pad_h, pad_w;           /* symmetric zero padding (ignored when same != 0) */
    int dilation_h, dilation_w; /* 0 means 1 */
    int groups;                 /* 0 means 1 */
    int same;                   /* 1: TensorFlow 'same' padding: out = ceil(in/stride); extra pad goes bottom/right */
    int output_pad_h, output_pad_w; /* conv_transpose2d only */
} dp_conv_opts;
/* x [N,Ci,H,W], w [Co, Ci/groups, KH, KW], b [Co] or NULL. opts NULL = stride 1, no padding. */
dp_node *dp_conv2d(dp_graph *g, dp_node *x, dp_node *w, dp_node *b, const dp_conv_opts *opts);
/* x [N,Ci,H,W], w [Ci, Co/groups, KH, KW] (PyTorch layout), b [Co] or NULL.
 * out = (in-1)*stride - 2*pad + dilation*(K-1) + output_pad + 1. */
dp_node *dp_conv_transpose2d(dp_graph *g, dp_node *x, dp_node *w, dp_node *b, const dp_conv_opts *opts);
/* Depthwise (w_dw [Ci,1,KH,KW], groups = Ci) then pointwise (w_pw [Co,Ci,1,1]) convolution, bias b [Co]. */
dp_node *dp_separable_conv2d(dp_graph *g, dp_node *x, dp_node *w_dw, dp_node *w_pw, dp_node *b,
                             const dp_conv_opts *opts);

/* Batch normalisation over N,H,W per channel. gamma/beta: [C] parameter nodes or NULL
 * (no affine). running_mean/running_var: [C] buffer tensors (may be NULL: then eval
 * mode also uses batch statistics). In training mode the running statistics are
 * updated as r = (1-momentum)*r + momentum*batch (PyTorch convention; the
 * variance is the unbiased one). In eval mode they normalise. */
dp_node *dp_batchnorm2d(dp_graph *g, dp_node *x, dp_node *gamma, dp_node *beta, dp_tensor *running_mean,
                        dp_tensor *running_var, float momentum, float eps);

typedef struct dp_pool_opts {
    int kernel_h, kernel_w;
    int stride_h, stride_w;   /* 0 means = kernel */
    int pad_h, pad_w;
    int same;                 /* TensorFlow 'same' padding (padding never counted by avg) */
    int count_include_pad;    /* avg pool: divide by the full window even over padding */
} dp_pool_opts;
dp_node *dp_maxpool2d(dp_graph *g, dp_node *x, const dp_pool_opts *opts);
dp_node *dp_avgpool2d(dp_graph *g, dp_node *x, const dp_pool_opts *opts);
dp_node *dp_global_avgpool(dp_graph *g, dp_node *x); /* [N,C,H,W] → [N,C] */
dp_node *dp_upsample_nearest(dp_graph *g, dp_node *x, int scale_h, int scale_w);
/* align_corners as in PyTorch's F.interpolate(mode='bilinear'). */
dp_node *dp_upsample_bilinear(dp_graph *g, dp_node *x, int scale_h, int scale_w, int align_corners);

/* ------------------------------------------------------------ activations */
dp_node *dp_relu(dp_graph *g, dp_node *x);
dp_node *dp_leaky_relu(dp_graph *g, dp_node *x, float slope);
dp_node *dp_elu(dp_graph *g, dp_node *x, float alpha);
dp_node *dp_tanh(dp_graph *g, dp_node *x);
dp_node *dp_sigmoid(dp_graph *g, dp_node *x);
dp_node *dp_softmax(dp_graph *g, dp_node *x, int axis);     /* axis < 0 counts from the end */
dp_node *dp_log_softmax(dp_graph *g, dp_node *x, int axis);
/* Inverted dropout: in training mode zeroes with probability p and scales by 1/(1-p); identity in eval. */
dp_node *dp_dropout(dp_graph *g, dp_node *x, float p);

/* ------------------------------------------------------------ shape */
/* Reshape (one entry may be -1); shares memory with x (no copy). */
dp_node *dp_reshape(dp_graph *g, dp_node *x, int ndim, const int64_t *shape);
dp_node *dp_flatten(dp_graph *g, dp_node *x); /* [N, ...] → [N, rest] */
dp_node *dp_concat(dp_graph *g, int n, dp_node *const *xs, int axis);
dp_node *dp_slice(dp_graph *g, dp_node *x, int axis, int64_t start, int64_t end);
/* Identity forward, no gradient backward (PyTorch's .detach(), TF's stop_gradient). Shares memory. */
dp_node *dp_stop_gradient(dp_graph *g, dp_node *x);

/* ------------------------------------------------------------ reductions */
#define DP_AXIS_ALL (-100)
dp_node *dp_sum(dp_graph *g, dp_node *x, int axis, int keepdim);  /* axis = DP_AXIS_ALL → scalar */
dp_node *dp_mean(dp_graph *g, dp_node *x, int axis, int keepdim);

/* ------------------------------------------------------------ losses (mean over all elements → scalar) */
dp_node *dp_bce_with_logits(dp_graph *g, dp_node *logits, dp_node *target);
dp_node *dp_bce(dp_graph *g, dp_node *prob, dp_node *target); /* log clamped at -100 as in PyTorch */
dp_node *dp_mse(dp_graph *g, dp_node *a, dp_node *b);
dp_node *dp_l1(dp_graph *g, dp_node *a, dp_node *b);
/* logits [N,C], labels [N] holding class indices as floats; mean over N. */
dp_node *dp_cross_entropy(dp_graph *g, dp_node *logits, dp_node *labels);

/* ------------------------------------------------------------ compile and run */
/* Mark a node whose value you will read after a run. In a graph without
 * gradients the planner reuses activation buffers, so only outputs (and
 * inputs) are sure to hold their values once later nodes have run. */
dp_status dp_graph_mark_output(dp_graph *g, dp_node *n);
/* Validate and plan memory. After this no nodes can be added. Activation
 * buffers are allocated here, once: running the graph allocates nothing.
 * The ops' scratch workspace belongs to the context, shared by all its
 * graphs (it costs the largest need, not the sum): passes of graphs of one
 * context called from several threads at once take turns, one pass
 * (dp_graph_forward / run / backward) at a time. */
dp_status dp_graph_compile(dp_graph *g);
/* Declare, before compiling, that this graph never computes gradients (like
 * torch.no_grad): parameters are read as constants and the planner reuses
 * activation buffers, so an inference graph needs a fraction of the memory. */
dp_status dp_graph_set_no_grad(dp_graph *g);
/* Training mode (batch statistics, dropout on) or eval mode (the default). */
dp_status dp_graph_set_training(dp_graph *g, int training);
int dp_graph_training(const dp_graph *g);
/* Dropout on (1, the default) or off (0). Off makes dropout the identity even in
 * training mode, e.g. to compare gradients with a framework run without dropout
 * while batch norm still uses batch statistics. */
dp_status dp_graph_set_dropout(dp_graph *g, int enabled);
/* Seed of the graph's own random stream (dropout). Defaults to the context seed. */
dp_status dp_graph_seed(dp_graph *g, uint64_t seed);

/* Start a new pass: every node becomes stale. */
dp_status dp_graph_invalidate(dp_graph *g);
/* Compute the stale ancestors of the targets (and the targets). Nodes already
 * computed in this pass are reused: e.g. in a GAN step, G's output computed
 * for the discriminator loss is not recomputed for the generator loss. */
dp_status dp_graph_forward(dp_graph *g, int n_targets, dp_node *const *targets);
/* invalidate + forward of every marked output. */
dp_status dp_graph_run(dp_graph *g);
/* Reverse mode: d(loss)/d(wrt) for a scalar loss computed in this pass.
 * wrt NULL (n_wrt 0) = every trainable parameter and every input that asked
 * for its gradient. Parameter gradients ACCUMULATE (zero them with
 * dp_paramset_zero_grad or the optimizer); input gradients are overwritten. */
dp_status dp_graph_backward(dp_graph *g, dp_node *loss, int n_wrt, dp_node *const *wrt);

/* The value and gradient buffers of a node (valid after compile). The
 * gradient is NULL for nodes that no requested gradient passes through.
 * After dp_graph_backward the gradients of parameters, of inputs that asked
 * for theirs, of the wrt nodes and of marked outputs are written; another
 * intermediate node's may not be (a fused pass skips gradients nobody reads,
 * docs/engine.md): mark the node as an output or name it in wrt to read it. */
dp_tensor *dp_node_value(dp_node *n);
dp_tensor *dp_node_grad(dp_node *n);
const char *dp_node_op_name(const dp_node *n);
/* Bytes of activation memory the planner reserved (values + gradients; not
 * the ops' workspace, which the context's graphs share). */
size_t dp_graph_memory_bytes(const dp_graph *g);
int dp_graph_node_count(const dp_graph *g);
/* Print the graph, one node a line, to a FILE* (void* to keep stdio out of this header). */
void dp_graph_print(const dp_graph *g, void *file);

/* ------------------------------------------------------------ op table */
/* Every op the engine knows (name, and whether it has a gradient) — the
 * per-op test harness walks this table. */
int dp_op_count(void);
const char *dp_op_name(int op);

#ifdef __cplusplus
}
#endif
#endif
