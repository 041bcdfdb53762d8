/* doppel — parameters, initialisers, layers and the reference models.
 *
 * A dp_paramset is a named, ordered collection of tensors: the trainable
 * parameters of a model and its buffers (batch-norm running statistics).
 * Layer builders create a parameter the first time they see its name and
 * reuse it afterwards, so the same builder code can make several graphs
 * (batch sizes, train/eval, GAN halves) over one set of weights.
 */
#ifndef DOPPEL_NN_H
#define DOPPEL_NN_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_paramset dp_paramset;

typedef enum dp_init_kind {
    DP_INIT_ZEROS = 0,
    DP_INIT_ONES,
    DP_INIT_CONSTANT,       /* a */
    DP_INIT_NORMAL,         /* N(a, b^2) */
    DP_INIT_UNIFORM,        /* U(a, b) */
    DP_INIT_XAVIER_UNIFORM, /* gain a (0 → 1) */
    DP_INIT_XAVIER_NORMAL,
    DP_INIT_KAIMING_UNIFORM, /* a = negative slope of the following leaky ReLU (0 for ReLU), fan_in */
    DP_INIT_KAIMING_NORMAL,
    DP_INIT_TORCH_DEFAULT,   /* PyTorch's Conv/Linear default: kaiming_uniform(a=sqrt(5)); for biases U(±1/sqrt(fan_in)) with fan_in = b */
} dp_init_kind;

typedef struct dp_init {
    dp_init_kind kind;
    float a, b;
} dp_init;

enum { DP_PARAM_TRAINABLE = 0, DP_PARAM_BUFFER = 1 };

dp_status dp_paramset_new(dp_ctx *ctx, dp_paramset **out);
void dp_paramset_free(dp_paramset *ps);
dp_ctx *dp_paramset_ctx(dp_paramset *ps);
/* Create a named tensor, or return the existing one if the name exists with the
 * same shape (DP_ERR_SHAPE if the shape differs). init may be NULL (zeros). */
dp_status dp_paramset_get_or_add(dp_paramset *ps, const char *name, int ndim, const int64_t *shape, int flags,
                                 const dp_init *init, dp_tensor **out);
int dp_paramset_count(const dp_paramset *ps);
dp_tensor *dp_paramset_at(dp_paramset *ps, int i);
dp_tensor *dp_paramset_find(dp_paramset *ps, const char *name);
int dp_paramset_is_buffer(const dp_paramset *ps, int i);
int64_t dp_paramset_numel(const dp_paramset *ps, int trainable_only);
/* (Re)initialise every tensor with its recorded initialiser; tensor i uses the
 * stream (seed, i), so results do not depend on the thread count. */
dp_status dp_paramset_init(dp_paramset *ps, uint64_t seed);
dp_status dp_paramset_zero_grad(dp_paramset *ps);
/* The gradient buffer of a parameter (allocated on first use, same shape). */
dp_tensor *dp_param_grad(dp_tensor *param);
/* Fill one tensor from an initialiser. fan_in/fan_out are computed from the shape
 * ([out,in] or [out,in,kh,kw]; conv-transpose weights [in,out,kh,kw] are
 * treated the PyTorch way, i.e. the same formula on dims 0 and 1). */
dp_status dp_tensor_init(dp_tensor *t, const dp_init *init, dp_rng *rng);

/* ------------------------------------------------------------ layers
 * Parameter names are "<name>.weight", "<name>.bias", and for batch norm
 * "<name>.weight", "<name>.bias", "<name>.running_mean", "<name>.running_var"
 * (PyTorch's names, so checkpoints map one to one). init NULL = PyTorch default
 * (weight and bias U(±1/sqrt(fan_in))); with an init, the weight uses it and the
 * bias starts at 0. Batch norm: weight 1, bias 0, running mean 0, running var 1. */
dp_node *dp_nn_conv2d(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, int out_ch, int kh, int kw,
                      const dp_conv_opts *opts, int bias, const dp_init *init);
dp_node *dp_nn_deconv2d(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, int out_ch, int kh, int kw,
                        const dp_conv_opts *opts, int bias, const dp_init *init);
dp_node *dp_nn_dense(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, int out_features, int bias,
                     const dp_init *init);
/* momentum/eps in PyTorch's convention (0.1, 1e-5 are PyTorch's defaults). */
dp_node *dp_nn_batchnorm2d(dp_graph *g, dp_paramset *ps, const char *name, dp_node *x, float momentum, float eps);

/* ------------------------------------------------------------ reference models
 * Each takes its input node and returns its output node; parameters live in ps
 * under the PyTorch state_dict names of ../shared/peers/models.py (nn.Sequential
 * indices, e.g. Meso-4 "f.0.weight", "f.2.running_mean", "c.2.weight"). The DCGAN
 * halves add a "G." / "D." prefix ("G.0.weight" is PyTorch's "0.weight" of G64())
 * so that G and D can share one paramset. Details and counts: docs/models.md. */
/* Meso-4 (Afchar et al. 2018): x [N,3,256,256] → probability of "fake" [N,1]. */
dp_node *dp_model_meso4(dp_graph *g, dp_paramset *ps, dp_node *x);
/* MesoInception-4: x [N,3,256,256] → [N,1]. */
dp_node *dp_model_mesoinception4(dp_graph *g, dp_paramset *ps, dp_node *x);
/* DCGAN 64×64 (Radford et al.): z [N,nz,1,1] → image [N,3,64,64] in [-1,1]. */
dp_node *dp_model_dcgan64_g(dp_graph *g, dp_paramset *ps, dp_node *z);
/* x [N,3,64,64] → probability [N,1]. */
dp_node *dp_model_dcgan64_d(dp_graph *g, dp_paramset *ps, dp_node *x);
/* DCGAN 28×28×1: z [N,nz,1,1] → [N,1,28,28]; x [N,1,28,28] → [N,1]. */
dp_node *dp_model_dcgan28_g(dp_graph *g, dp_paramset *ps, dp_node *z);
dp_node *dp_model_dcgan28_d(dp_graph *g, dp_paramset *ps, dp_node *x);
/* The same discriminators without the final sigmoid: raw scores (logits) [N,1],
 * same parameters, for BCE-with-logits, hinge and Wasserstein losses (gan.h). */
dp_node *dp_model_dcgan64_d_logits(dp_graph *g, dp_paramset *ps, dp_node *x);
dp_node *dp_model_dcgan28_d_logits(dp_graph *g, dp_paramset *ps, dp_node *x);

#ifdef __cplusplus
}
#endif
#endif
