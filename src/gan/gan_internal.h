/* Helpers shared by src/gan/ (train.c, sample.c). Not installed. */
#ifndef DOPPEL_GAN_INTERNAL_H
#define DOPPEL_GAN_INTERNAL_H

#include "core/internal.h"
#include "doppel/gan.h"

#define GAN_GEN_BATCH 64 /* default batch of the eval-mode generator graphs */

/* G (arch's reference generator) and D (its discriminator without the sigmoid). */
dp_node *gan_build_g(dp_graph *g, dp_paramset *ps, dp_gan_arch arch, dp_node *z);
dp_node *gan_build_d(dp_graph *g, dp_paramset *ps, dp_gan_arch arch, dp_node *x);
#define GAN_D_MAX_ACT 4 /* LeakyReLU layers of the discriminators */
/* The same D built block by block: pre (may be NULL) receives the input of
 * each LeakyReLU (*n_pre of them); with masks (one input node per LeakyReLU,
 * the shape of its input) each LeakyReLU becomes a product with its mask —
 * the activation pattern frozen (the WGAN-GP penalty gradient). */
dp_node *gan_build_d_act(dp_graph *g, dp_paramset *ps, dp_gan_arch arch, dp_node *x, dp_node *const *masks, dp_node **pre,
                         int *n_pre);

/* A generator graph in eval mode over ps (which it creates parameters in on
 * first use): z [batch,nz,1,1] → tanh image. */
typedef struct gan_gen {
    dp_graph *g;
    dp_node *z, *out;
    int batch, nz, c, h, w;
} gan_gen;
dp_status gan_gen_build(dp_ctx *ctx, dp_paramset *ps, dp_gan_arch arch, int nz, int batch, gan_gen *out);
void gan_gen_free(gan_gen *gen);
/* z [n,nz] → out [n,C,H,W] in [0,1], in batches. */
dp_status gan_gen_run(gan_gen *gen, const float *z, int64_t n, float *out);

/* Test hooks (tests/test_gan.c): the WGAN-GP x̂ input; the finite-difference
 * step; the penalty at the x̂ set, in a fresh pass (grad: add its parameter
 * gradient to D's gradients, as a training step does). */
float *gan_test_xhat(dp_gan *gan);
void gan_test_set_gp_delta(dp_gan *gan, float delta);
dp_status gan_test_penalty(dp_gan *gan, int grad, float *gp, float *norm);
/* For the tests: the penalty with the activation pattern frozen, at x̂ (in a
 * fresh pass, through the masked copies of D, with the masks of the last
 * gan_test_penalty call): a smooth function of D's weights whose derivative
 * is what double backward computes. */
dp_status gan_test_penalty_frozen(dp_gan *gan, float *gp);

#endif
