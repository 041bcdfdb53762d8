/* The DCGAN trainer (gan.h): one static graph holding G(z), D on the real
 * batch, on G(z).detach() and on G(z), the two losses (and for WGAN-GP the
 * penalty's passes); an iteration is two partial passes over it.
 *
 * Memory: G and D live in two paramsets (one optimiser each); a third,
 * "staging" paramset mirrors G, D and both optimisers' moments under the
 * checkpoint's names and is what dp_checkpoint_save writes and
 * dp_checkpoint_load validates — so a failed load changes nothing, and one
 * crash-safe file holds the whole state. It costs one more copy of the
 * parameters and moments (3 floats a parameter: 23 MB for dcgan28, 76 MB for
 * dcgan64), allocated once.
 *
 * WGAN-GP without double backward. With s(x) = Σ_i D(x_i) over a batch and
 * g = ∇x s at x̂, the penalty P(θ) = λ/B Σ_i (‖g_i‖ - 1)² has
 *   ∇θ P = vᵀ ∂g/∂θ,  v_i = ∂P/∂g_i = 2λ/B (‖g_i‖ - 1) g_i/‖g_i‖,
 * and since mixed partial derivatives commute, vᵀ ∂g/∂θ = ∇θ (v·∇x s) — the
 * parameter gradient of the directional derivative of s along v — which a
 * central difference gives from two ordinary backward passes:
 *   ∇θ P ≈ [∇θ s(x̂ + h v) - ∇θ s(x̂ - h v)] / (2h).
 * D's LeakyReLUs make ∇x s jump where a unit changes sign, and a difference
 * across such a jump is not a derivative (it would add jump/2h terms that
 * double backward does not have). So the two difference passes run through a
 * copy of D whose LeakyReLUs are products with masks frozen at x̂ (1 where
 * the unit is positive at x̂, 0.2 elsewhere): the same function at x̂, smooth
 * around it, with the derivatives double backward computes. The graph holds
 * L_fd = c Σ_i (D_m(x̂ + hv)_i - D_m(x̂ - hv)_i), c = 1/(2h) an input; its
 * parameter gradient is added to that of the plain WGAN loss. h is chosen
 * so that h·v moves each pixel by GP_DELTA (RMS). g itself is an exact
 * backward pass to the input x̂. docs/gan.md has the measured agreement with
 * PyTorch's double backward. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/parse.h"
#include "gan/gan_internal.h"

#define GP_DELTA 1e-3f /* RMS pixel displacement of the finite difference (pixels are in [-1,1]) */
/* Random streams (seed, id): distinct ids keep the streams independent. */
#define STREAM_MAIN 0x47414e0000000001ull   /* noise, flips, WGAN-GP ε: one stream, fixed order */
#define STREAM_INIT 0x47414e0100000000ull   /* + tensor index (+ 1<<20 for D) */
#define STREAM_ORDER 0x47414e0200000000ull  /* + epoch: the data order of that pass */

struct dp_gan {
    dp_ctx *ctx;
    dp_gan_opts o;
    int c, h, w;
    dp_paramset *psg, *psd, *psck;
    dp_optim *og, *od;
    dp_graph *g;
    dp_node *z, *x, *ones, *zeros, *fake, *s_real, *s_fake_det, *s_fake, *loss_d, *loss_g;
    dp_node *xhat, *s_hat, *xp, *xm, *coef, *loss_fd; /* WGAN-GP */
    dp_node *pre[GAN_D_MAX_ACT], *mask[GAN_D_MAX_ACT];  /* WGAN-GP: LeakyReLU inputs of D(x̂), frozen masks */
    int n_act;
    dp_node **gparams, **dparams; /* trainable parameter nodes of G, of D */
    int n_gparams, n_dparams;
    float *v; /* WGAN-GP: the penalty's direction, [B,C,H,W] */
    float gp_delta; /* WGAN-GP: RMS pixel step of the finite difference */
    /* checkpoint staging: ck_dst[i] (in psck) mirrors ck_src[i] */
    dp_tensor **ck_src, **ck_dst;
    int n_ck;
    gan_gen gen; /* eval-mode G, for dp_gan_generate */
    /* data */
    const dp_dataset *ds;
    int64_t *perm, perm_cap, data_n; /* data_n: images of the data (set, or from a checkpoint) */
    int64_t epoch, pos;
    dp_rng rng;
    int64_t step;
    int failed;
};

/* ------------------------------------------------------------ options */
static dp_status resolve_opts(dp_ctx *ctx, const dp_gan_opts *in, dp_gan_opts *o) {
    *o = in ? *in : (dp_gan_opts){0};
    if (!dp_gan_arch_shape(o->arch, NULL, NULL, NULL))
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_new: unknown arch %d (DP_GAN_DCGAN28 or DP_GAN_DCGAN64)", (int)o->arch);
    if (o->loss != DP_GAN_NS && o->loss != DP_GAN_HINGE && o->loss != DP_GAN_WGAN_GP)
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_new: unknown loss %d", (int)o->loss);
    if (o->nz == 0) o->nz = 100;
    if (o->batch == 0) o->batch = 64;
    if (o->lr_g == 0.0f) o->lr_g = 2e-4f;
    if (o->lr_d == 0.0f) o->lr_d = 2e-4f;
    if (o->beta1 == 0.0f && o->beta2 == 0.0f) o->beta1 = 0.5f, o->beta2 = 0.999f;
    if (o->gp_weight == 0.0f) o->gp_weight = 10.0f;
    if (o->nz < 1 || o->nz > 4096) return dp_error(ctx, DP_ERR_ARG, "dp_gan_new: nz %d is not in 1..4096", o->nz);
    if (o->batch < 2 || o->batch > 65536)
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_new: batch %d is not in 2..65536 (batch norm needs 2 images)", o->batch);
    if (!(isfinite(o->lr_g) && o->lr_g > 0.0f && isfinite(o->lr_d) && o->lr_d > 0.0f))
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_new: learning rates %g, %g must be finite and > 0", (double)o->lr_g,
                        (double)o->lr_d);
    if (!(o->gp_weight > 0.0f && isfinite(o->gp_weight)))
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_new: gp_weight %g must be finite and > 0", (double)o->gp_weight);
    if (o->flip != 0 && o->flip != 1) return dp_error(ctx, DP_ERR_ARG, "dp_gan_new: flip must be 0 or 1");
    return DP_OK; /* betas are checked by dp_optim_new */
}

const dp_gan_opts *dp_gan_options(const dp_gan *gan) { return gan ? &gan->o : NULL; }
dp_paramset *dp_gan_generator(dp_gan *gan) { return gan ? gan->psg : NULL; }
dp_paramset *dp_gan_discriminator(dp_gan *gan) { return gan ? gan->psd : NULL; }
dp_optim *dp_gan_optim_g(dp_gan *gan) { return gan ? gan->og : NULL; }
dp_optim *dp_gan_optim_d(dp_gan *gan) { return gan ? gan->od : NULL; }
int64_t dp_gan_steps(const dp_gan *gan) { return gan ? gan->step : 0; }
size_t dp_gan_memory_bytes(const dp_gan *gan) { return gan ? dp_graph_memory_bytes(gan->g) : 0; }
uint32_t dp_gan_model_id(dp_gan *gan) { return gan ? dp_gan_hash_params(gan->psg) : 0; }

/* ------------------------------------------------------------ construction */
/* The DCGAN recipe (PyTorch example's weights_init): conv and transposed-conv
 * weights N(0, 0.02), batch-norm weight N(1, 0.02) and bias 0. Running
 * statistics keep their 0 / 1. */
static dp_status dcgan_init(dp_paramset *ps, uint64_t seed, uint64_t stream0) {
    for (int i = 0; i < dp_paramset_count(ps); i++) {
        if (dp_paramset_is_buffer(ps, i)) continue;
        dp_tensor *t = dp_paramset_at(ps, i);
        size_t len = strlen(t->name);
        dp_init in = {DP_INIT_ZEROS, 0, 0};
        if (len > 7 && !strcmp(t->name + len - 7, ".weight")) in = (dp_init){DP_INIT_NORMAL, t->ndim == 4 ? 0.0f : 1.0f, 0.02f};
        dp_rng r;
        dp_rng_stream(&r, seed, stream0 + (uint64_t)i);
        dp_status s = dp_tensor_init(t, &in, &r);
        if (s) return s;
    }
    return DP_OK;
}

static dp_node *mean_all(dp_graph *g, dp_node *x) { return dp_mean(g, x, DP_AXIS_ALL, 0); }

/* The trainable parameter nodes of the graph whose names start with prefix. */
static dp_status param_nodes(dp_gan *gan, const char *prefix, dp_node ***out, int *n_out) {
    dp_graph *g = gan->g;
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < g->n_nodes; i++) {
            dp_node *nd = g->nodes[i];
            if (nd->op != DP_OP_PARAM || !nd->param || (nd->param->flags & DP_TF_BUFFER) || !nd->grad.data) continue;
            if (strncmp(nd->param->name, prefix, strlen(prefix)) != 0) continue;
            if (pass) (*out)[n] = nd;
            n++;
        }
        if (!pass) {
            if (!n) return dp_error(gan->ctx, DP_ERR_STATE, "dp_gan_new: no trainable '%s*' parameter in the graph", prefix);
            if (!(*out = dp_calloc(gan->ctx, sizeof(dp_node *) * (size_t)n)))
                return dp_error(gan->ctx, DP_ERR_NOMEM, "dp_gan_new: out of memory");
            *n_out = n;
            n = 0;
        }
    }
    return DP_OK;
}

static dp_status build_graph(dp_gan *gan) {
    dp_ctx *ctx = gan->ctx;
    const dp_gan_opts *o = &gan->o;
    int64_t B = o->batch, img[4] = {B, gan->c, gan->h, gan->w};
    dp_status s = dp_graph_new(ctx, &gan->g);
    if (s) return s;
    dp_graph *g = gan->g;
    dp_gan_arch a = o->arch;
    gan->z = dp_input(g, "z", 4, (int64_t[]){B, o->nz, 1, 1});
    gan->x = dp_input(g, "x", 4, img);
    gan->fake = gan_build_g(g, gan->psg, a, gan->z);
    gan->s_real = gan_build_d(g, gan->psd, a, gan->x);
    gan->s_fake_det = gan_build_d(g, gan->psd, a, dp_stop_gradient(g, gan->fake));
    gan->s_fake = gan_build_d(g, gan->psd, a, gan->fake);
    switch (o->loss) {
    case DP_GAN_NS:
        gan->ones = dp_input(g, "ones", 2, (int64_t[]){B, 1});
        gan->zeros = dp_input(g, "zeros", 2, (int64_t[]){B, 1});
        gan->loss_d = dp_add(g, dp_bce_with_logits(g, gan->s_real, gan->ones), dp_bce_with_logits(g, gan->s_fake_det, gan->zeros));
        gan->loss_g = dp_bce_with_logits(g, gan->s_fake, gan->ones);
        break;
    case DP_GAN_HINGE:
        gan->ones = dp_input(g, "ones", 2, (int64_t[]){B, 1});
        gan->loss_d = dp_add(g, mean_all(g, dp_relu(g, dp_sub(g, gan->ones, gan->s_real))),
                             mean_all(g, dp_relu(g, dp_add(g, gan->ones, gan->s_fake_det))));
        gan->loss_g = dp_scale(g, mean_all(g, gan->s_fake), -1.0f);
        break;
    case DP_GAN_WGAN_GP:
        gan->loss_d = dp_sub(g, mean_all(g, gan->s_fake_det), mean_all(g, gan->s_real));
        gan->loss_g = dp_scale(g, mean_all(g, gan->s_fake), -1.0f);
        gan->xhat = dp_input(g, "xhat", 4, img);
        gan->xp = dp_input(g, "xhat_plus", 4, img);
        gan->xm = dp_input(g, "xhat_minus", 4, img);
        gan->coef = dp_input(g, "fd_coef", 2, (int64_t[]){1, 1});
        if (gan->xhat && (s = dp_input_requires_grad(g, gan->xhat)) != DP_OK) return s;
        if (gan->xp && (s = dp_input_requires_grad(g, gan->xp)) != DP_OK) return s; /* for the tests only */
        gan->s_hat = dp_sum(g, gan_build_d_act(g, gan->psd, a, gan->xhat, NULL, gan->pre, &gan->n_act), DP_AXIS_ALL, 0);
        for (int k = 0; k < gan->n_act; k++) {
            char nm[16];
            snprintf(nm, sizeof nm, "mask%d", k);
            const dp_tensor *t = dp_node_value(gan->pre[k]);
            gan->mask[k] = t ? dp_input(g, nm, dp_tensor_ndim(t), dp_tensor_shape(t)) : NULL;
        }
        gan->loss_fd = dp_sum(g,
                              dp_mul(g,
                                     dp_sub(g, gan_build_d_act(g, gan->psd, a, gan->xp, gan->mask, NULL, NULL),
                                            gan_build_d_act(g, gan->psd, a, gan->xm, gan->mask, NULL, NULL)),
                                     gan->coef),
                              DP_AXIS_ALL, 0);
        break;
    }
    if ((s = dp_graph_status(g)) != DP_OK) return s;
    dp_node *outs[] = {gan->loss_d, gan->loss_g, gan->s_real, gan->s_fake_det, gan->s_fake, gan->fake, gan->s_hat, gan->loss_fd};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        if (outs[i] && (s = dp_graph_mark_output(g, outs[i])) != DP_OK) return s;
    if ((s = dp_graph_compile(g)) != DP_OK) return s;
    if ((s = dp_graph_set_training(g, 1)) != DP_OK) return s;
    if (gan->ones) dp_tensor_fill(dp_node_value(gan->ones), 1.0f);
    if (gan->zeros) dp_tensor_fill(dp_node_value(gan->zeros), 0.0f);
    /* The G step differentiates with respect to G's parameters only (D's
     * weight gradients would be computed for nothing), the WGAN-GP difference
     * passes with respect to D's only. */
    if ((s = param_nodes(gan, "G.", &gan->gparams, &gan->n_gparams)) != DP_OK) return s;
    return param_nodes(gan, "D.", &gan->dparams, &gan->n_dparams);
}

/* The staging paramset: G, D and "optim.<state>" for both optimisers. */
static dp_status build_staging(dp_gan *gan) {
    dp_ctx *ctx = gan->ctx;
    dp_status s = dp_paramset_new(ctx, &gan->psck);
    if (s) return s;
    int n = dp_paramset_count(gan->psg) + dp_paramset_count(gan->psd) + dp_optim_state_count(gan->og) + dp_optim_state_count(gan->od);
    gan->ck_src = dp_calloc(ctx, sizeof(dp_tensor *) * (size_t)n);
    gan->ck_dst = dp_calloc(ctx, sizeof(dp_tensor *) * (size_t)n);
    if (!gan->ck_src || !gan->ck_dst) return dp_error(ctx, DP_ERR_NOMEM, "dp_gan_new: out of memory");
    dp_paramset *sets[2] = {gan->psg, gan->psd};
    dp_optim *opts[2] = {gan->og, gan->od};
    char name[512];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < dp_paramset_count(sets[k]); i++) {
            dp_tensor *t = dp_paramset_at(sets[k], i);
            gan->ck_src[gan->n_ck] = t;
            s = dp_paramset_get_or_add(gan->psck, t->name, t->ndim, t->shape,
                                       dp_paramset_is_buffer(sets[k], i) ? DP_PARAM_BUFFER : DP_PARAM_TRAINABLE, NULL,
                                       &gan->ck_dst[gan->n_ck]);
            if (s) return s;
            gan->n_ck++;
        }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < dp_optim_state_count(opts[k]); i++) {
            const char *sn;
            dp_tensor *t = dp_optim_state_at(opts[k], i, &sn);
            if ((size_t)snprintf(name, sizeof name, "optim.%s", sn) >= sizeof name)
                return dp_error(ctx, DP_ERR_ARG, "dp_gan_new: state name '%s' is too long", sn);
            gan->ck_src[gan->n_ck] = t;
            s = dp_paramset_get_or_add(gan->psck, name, t->ndim, t->shape, DP_PARAM_BUFFER, NULL, &gan->ck_dst[gan->n_ck]);
            if (s) return s;
            gan->n_ck++;
        }
    return DP_OK;
}

void dp_gan_free(dp_gan *gan) {
    if (!gan) return;
    dp_ctx *ctx = gan->ctx;
    gan_gen_free(&gan->gen);
    dp_graph_free(gan->g);
    dp_optim_free(gan->og);
    dp_optim_free(gan->od);
    dp_paramset_free(gan->psg);
    dp_paramset_free(gan->psd);
    dp_paramset_free(gan->psck);
    dp_free(ctx, gan->gparams);
    dp_free(ctx, gan->dparams);
    dp_free(ctx, gan->v);
    dp_free(ctx, gan->ck_src);
    dp_free(ctx, gan->ck_dst);
    dp_free(ctx, gan->perm);
    dp_free(ctx, gan);
}

dp_status dp_gan_new(dp_ctx *ctx, const dp_gan_opts *opts, dp_gan **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!out) return dp_error(ctx, DP_ERR_NULL, "dp_gan_new: out is NULL");
    *out = NULL;
    dp_gan_opts o;
    dp_status s = resolve_opts(ctx, opts, &o);
    if (s) return s;
    dp_gan *gan = dp_calloc(ctx, sizeof *gan);
    if (!gan) return dp_error(ctx, DP_ERR_NOMEM, "dp_gan_new: out of memory");
    gan->ctx = ctx;
    gan->o = o;
    dp_gan_arch_shape(o.arch, &gan->c, &gan->h, &gan->w);
    if ((s = dp_paramset_new(ctx, &gan->psg)) || (s = dp_paramset_new(ctx, &gan->psd))) goto fail;
    if ((s = build_graph(gan)) != DP_OK) goto fail;
    if ((s = dcgan_init(gan->psg, o.seed, STREAM_INIT)) || (s = dcgan_init(gan->psd, o.seed, STREAM_INIT + (1u << 20)))) goto fail;
    dp_optim_opts oo = {.kind = DP_OPTIM_ADAM, .beta1 = o.beta1, .beta2 = o.beta2};
    oo.lr = o.lr_g;
    if ((s = dp_optim_new(gan->psg, &oo, &gan->og)) != DP_OK) goto fail;
    oo.lr = o.lr_d;
    if ((s = dp_optim_new(gan->psd, &oo, &gan->od)) != DP_OK) goto fail;
    if ((s = build_staging(gan)) != DP_OK) goto fail;
    if ((s = gan_gen_build(ctx, gan->psg, o.arch, o.nz, GAN_GEN_BATCH, &gan->gen)) != DP_OK) goto fail;
    if (o.loss == DP_GAN_WGAN_GP) {
        gan->v = dp_malloc(ctx, sizeof(float) * (size_t)o.batch * (size_t)(gan->c * gan->h * gan->w));
        if (!gan->v) {
            s = dp_error(ctx, DP_ERR_NOMEM, "dp_gan_new: out of memory");
            goto fail;
        }
    }
    gan->gp_delta = GP_DELTA;
    dp_rng_stream(&gan->rng, o.seed, STREAM_MAIN);
    *out = gan;
    return DP_OK;
fail:
    dp_gan_free(gan);
    return s;
}

/* ------------------------------------------------------------ data */
static void make_perm(dp_gan *gan) {
    for (int64_t i = 0; i < gan->data_n; i++) gan->perm[i] = i;
    dp_rng r;
    dp_rng_stream(&r, gan->o.seed, STREAM_ORDER + (uint64_t)gan->epoch);
    dp_shuffle_i64(&r, gan->perm, gan->data_n);
}

dp_status dp_gan_set_data(dp_gan *gan, const dp_dataset *ds) {
    if (!gan) return DP_ERR_NULL;
    dp_ctx *ctx = gan->ctx;
    if (!ds) return dp_error(ctx, DP_ERR_NULL, "dp_gan_set_data: ds is NULL");
    if (ds->channels != gan->c || ds->height != gan->h || ds->width != gan->w)
        return dp_error(ctx, DP_ERR_SHAPE, "dp_gan_set_data: the images are %dx%dx%d, %s needs %dx%dx%d (channels x height x width)",
                        ds->channels, ds->height, ds->width, dp_gan_arch_name(gan->o.arch), gan->c, gan->h, gan->w);
    if (ds->n < gan->o.batch)
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_set_data: %lld images, fewer than one batch of %d", (long long)ds->n, gan->o.batch);
    if (gan->step > 0 && gan->data_n != ds->n)
        return dp_error(ctx, DP_ERR_ARG,
                        "dp_gan_set_data: the run so far used %lld images, this data has %lld (the data order would differ)",
                        (long long)gan->data_n, (long long)ds->n);
    if (ds->n > gan->perm_cap) {
        int64_t *p = dp_malloc(ctx, sizeof(int64_t) * (size_t)ds->n);
        if (!p) return dp_error(ctx, DP_ERR_NOMEM, "dp_gan_set_data: out of memory for %lld indices", (long long)ds->n);
        dp_free(ctx, gan->perm);
        gan->perm = p;
        gan->perm_cap = ds->n;
    }
    gan->ds = ds;
    gan->data_n = ds->n;
    make_perm(gan);
    return DP_OK;
}

/* The next batch into x, scaled to [-1,1], flipped at random if asked. */
static void next_batch(dp_gan *gan) {
    int64_t B = gan->o.batch;
    if (gan->pos + B > gan->data_n) {
        gan->epoch++;
        gan->pos = 0;
        make_perm(gan);
    }
    static const float half[3] = {0.5f, 0.5f, 0.5f};
    float *x = dp_tensor_f32(dp_node_value(gan->x));
    dp_dataset_batch(gan->ds, gan->perm + gan->pos, B, half, half, x, NULL);
    gan->pos += B;
    if (!gan->o.flip) return;
    int64_t rows = (int64_t)gan->c * gan->h, w = gan->w;
    for (int64_t i = 0; i < B; i++) {
        if (!(dp_rng_u64(&gan->rng) >> 63)) continue;
        float *im = x + i * rows * w;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t a = 0, b = w - 1; a < b; a++, b--) {
                float t = im[r * w + a];
                im[r * w + a] = im[r * w + b];
                im[r * w + b] = t;
            }
    }
}

/* ------------------------------------------------------------ the step */
static float stat_mean(const dp_gan *gan, dp_node *n) {
    const float *v = dp_tensor_f32(dp_node_value(n));
    int64_t B = gan->o.batch;
    double s = 0;
    for (int64_t i = 0; i < B; i++) s += gan->o.loss == DP_GAN_NS ? 1.0 / (1.0 + exp(-(double)v[i])) : (double)v[i];
    return (float)(s / (double)B);
}

static dp_status numeric_fail(dp_gan *gan, int64_t step, const char *what, double v) {
    gan->failed = 1;
    return dp_error(gan->ctx, DP_ERR_NUMERIC, "step %lld: the %s is %s; training stopped (it diverged: try a lower learning rate)",
                    (long long)step, what, isnan(v) ? "NaN" : "infinite");
}

/* An optimiser refused a non-finite gradient: say so with the step. */
static dp_status optim_fail(dp_gan *gan, int64_t step, const char *who, dp_status s) {
    gan->failed = 1;
    if (s != DP_ERR_NUMERIC) return s;
    char msg[600];
    snprintf(msg, sizeof msg, "%s", dp_ctx_error(gan->ctx));
    return dp_error(gan->ctx, DP_ERR_NUMERIC, "step %lld: %s update refused, %s; training stopped (it diverged: try a lower "
                    "learning rate)", (long long)step, who, msg);
}

/* WGAN-GP at the x̂ now in the "xhat" input, in the current pass: the penalty,
 * the mean gradient norm, and (grad != 0) the penalty's parameter gradient
 * added to D's gradients by the central difference described at the top. */
static dp_status penalty_at(dp_gan *gan, int64_t step, int grad, float *gp_out, float *norm_out) {
    dp_status s;
    int64_t B = gan->o.batch, per = (int64_t)gan->c * gan->h * gan->w;
    if ((s = dp_graph_forward(gan->g, 1, &gan->s_hat)) != DP_OK) return s;
    if ((s = dp_graph_backward(gan->g, gan->s_hat, 1, &gan->xhat)) != DP_OK) return s;
    const float *G = dp_tensor_f32(dp_node_grad(gan->xhat));
    double lam = gan->o.gp_weight, gp = 0, nsum = 0, vv = 0;
    for (int64_t i = 0; i < B; i++) {
        double n2 = 0;
        for (int64_t k = i * per; k < (i + 1) * per; k++) n2 += (double)G[k] * G[k];
        double nrm = sqrt(n2);
        gp += (nrm - 1) * (nrm - 1);
        nsum += nrm;
        double c = nrm > 0 ? 2.0 * lam / (double)B * (nrm - 1) / nrm : 0.0;
        for (int64_t k = i * per; k < (i + 1) * per; k++) {
            gan->v[k] = (float)(c * G[k]);
            vv += (double)gan->v[k] * gan->v[k];
        }
    }
    gp *= lam / (double)B;
    *gp_out = (float)gp;
    *norm_out = (float)(nsum / (double)B);
    if (!isfinite(gp) || !isfinite(vv)) return numeric_fail(gan, step, "gradient penalty", isfinite(gp) ? vv : gp);
    /* the activation pattern at x̂ */
    for (int k = 0; k < gan->n_act; k++) {
        const float *p = dp_tensor_f32(dp_node_value(gan->pre[k]));
        float *m = dp_tensor_f32(dp_node_value(gan->mask[k]));
        int64_t n = dp_tensor_numel(dp_node_value(gan->pre[k]));
        for (int64_t i = 0; i < n; i++) m[i] = p[i] > 0.0f ? 1.0f : 0.2f;
    }
    double rms = sqrt(vv / (double)(B * per));
    if (!grad || !(rms > 0)) return DP_OK; /* every norm exactly 1 (or 0): no gradient */
    double hstep = gan->gp_delta / rms;
    const float *XH = dp_tensor_f32(dp_node_value(gan->xhat));
    float *XP = dp_tensor_f32(dp_node_value(gan->xp)), *XM = dp_tensor_f32(dp_node_value(gan->xm));
    for (int64_t k = 0; k < B * per; k++) {
        float d = (float)(hstep * gan->v[k]);
        XP[k] = XH[k] + d;
        XM[k] = XH[k] - d;
    }
    dp_tensor_f32(dp_node_value(gan->coef))[0] = (float)(0.5 / hstep);
    if ((s = dp_graph_forward(gan->g, 1, &gan->loss_fd)) != DP_OK) return s;
    return dp_graph_backward(gan->g, gan->loss_fd, gan->n_dparams, gan->dparams);
}

/* x̂ = εx + (1-ε)G(z), ε ~ U(0,1) per image, then the penalty with its gradient. */
static dp_status gradient_penalty(dp_gan *gan, int64_t step, float *gp_out, float *norm_out) {
    int64_t B = gan->o.batch, per = (int64_t)gan->c * gan->h * gan->w;
    const float *X = dp_tensor_f32(dp_node_value(gan->x)), *F = dp_tensor_f32(dp_node_value(gan->fake));
    float *XH = dp_tensor_f32(dp_node_value(gan->xhat));
    for (int64_t i = 0; i < B; i++) {
        float e = dp_rng_uniform(&gan->rng);
        for (int64_t k = i * per; k < (i + 1) * per; k++) XH[k] = e * X[k] + (1.0f - e) * F[k];
    }
    return penalty_at(gan, step, 1, gp_out, norm_out);
}

/* For the tests (gan_internal.h). */
float *gan_test_xhat(dp_gan *gan) { return gan && gan->xhat ? dp_tensor_f32(dp_node_value(gan->xhat)) : NULL; }
void gan_test_set_gp_delta(dp_gan *gan, float delta) { gan->gp_delta = delta; }
dp_status gan_test_penalty(dp_gan *gan, int grad, float *gp, float *norm) {
    if (!gan || !gan->xhat) return DP_ERR_ARG;
    dp_status s = dp_graph_invalidate(gan->g);
    return s ? s : penalty_at(gan, gan->step + 1, grad, gp, norm);
}
dp_status gan_test_penalty_frozen(dp_gan *gan, float *gp) {
    if (!gan || !gan->xhat) return DP_ERR_ARG;
    int64_t B = gan->o.batch, per = (int64_t)gan->c * gan->h * gan->w;
    dp_status s = dp_graph_invalidate(gan->g);
    if (s) return s;
    memcpy(dp_tensor_f32(dp_node_value(gan->xp)), dp_tensor_f32(dp_node_value(gan->xhat)), sizeof(float) * (size_t)(B * per));
    memcpy(dp_tensor_f32(dp_node_value(gan->xm)), dp_tensor_f32(dp_node_value(gan->xhat)), sizeof(float) * (size_t)(B * per));
    dp_tensor_f32(dp_node_value(gan->coef))[0] = 1.0f;
    if ((s = dp_graph_forward(gan->g, 1, &gan->loss_fd)) || (s = dp_graph_backward(gan->g, gan->loss_fd, 1, &gan->xp))) return s;
    const float *G = dp_tensor_f32(dp_node_grad(gan->xp));
    double p = 0;
    for (int64_t i = 0; i < B; i++) {
        double n2 = 0;
        for (int64_t k = i * per; k < (i + 1) * per; k++) n2 += (double)G[k] * G[k];
        p += (sqrt(n2) - 1) * (sqrt(n2) - 1);
    }
    *gp = (float)(p * gan->o.gp_weight / (double)B);
    return DP_OK;
}

dp_status dp_gan_step(dp_gan *gan, dp_gan_stats *st) {
    if (!gan) return DP_ERR_NULL;
    dp_ctx *ctx = gan->ctx;
    if (gan->failed)
        return dp_error(ctx, DP_ERR_STATE, "dp_gan_step: training stopped at step %lld on non-finite values; "
                        "dp_gan_load a checkpoint to go on", (long long)gan->step + 1);
    if (!gan->ds) return dp_error(ctx, DP_ERR_STATE, "dp_gan_step: no data (dp_gan_set_data first)");
    int64_t step = gan->step + 1;
    float lr_d = dp_optim_lr(gan->od), lr_g = dp_optim_lr(gan->og), gp = 0, gnorm = 0;
    next_batch(gan);
    dp_status s = dp_gan_noise(ctx, &gan->rng, dp_tensor_f32(dp_node_value(gan->z)), (int64_t)gan->o.batch * gan->o.nz, 0.0f);
    if (s) return s;
    dp_graph *g = gan->g;
    /* D step: D on the real batch and on G(z) (detached). */
    if ((s = dp_graph_invalidate(g)) || (s = dp_graph_forward(g, 1, &gan->loss_d))) return s;
    float loss_d = dp_tensor_f32(dp_node_value(gan->loss_d))[0];
    if (!isfinite(loss_d)) return numeric_fail(gan, step, "discriminator loss", loss_d);
    if ((s = dp_optim_zero_grad(gan->od)) || (s = dp_graph_backward(g, gan->loss_d, 0, NULL))) return s;
    if (gan->o.loss == DP_GAN_WGAN_GP) {
        if ((s = gradient_penalty(gan, step, &gp, &gnorm)) != DP_OK) return s;
        loss_d += gp;
    }
    if ((s = dp_optim_step(gan->od)) != DP_OK) return optim_fail(gan, step, "discriminator", s);
    /* G step: same pass, so G(z) is reused; only D(G(z)) runs, with the new D. */
    if ((s = dp_graph_forward(g, 1, &gan->loss_g))) return s;
    float loss_g = dp_tensor_f32(dp_node_value(gan->loss_g))[0];
    if (!isfinite(loss_g)) return numeric_fail(gan, step, "generator loss", loss_g);
    if ((s = dp_optim_zero_grad(gan->og)) || (s = dp_graph_backward(g, gan->loss_g, gan->n_gparams, gan->gparams))) return s;
    if ((s = dp_optim_step(gan->og)) != DP_OK) return optim_fail(gan, step, "generator", s);
    gan->step = step;
    if (st) {
        st->step = step;
        st->loss_d = loss_d;
        st->loss_g = loss_g;
        st->d_real = stat_mean(gan, gan->s_real);
        st->d_fake = stat_mean(gan, gan->s_fake_det);
        st->d_fake_g = stat_mean(gan, gan->s_fake);
        st->gp = gp;
        st->grad_norm = gnorm;
        st->lr_d = lr_d;
        st->lr_g = lr_g;
        st->epoch = gan->epoch;
    }
    return DP_OK;
}

dp_status dp_gan_generate(dp_gan *gan, const float *z, int64_t n, float *out) {
    if (!gan) return DP_ERR_NULL;
    return gan_gen_run(&gan->gen, z, n, out);
}

/* ------------------------------------------------------------ checkpoints */
enum { K_TASK, K_ARCH, K_LOSS, K_NZ, K_BATCH, K_LRG, K_LRD, K_B1, K_B2, K_GPW, K_FLIP, K_SEED, K_STEP, K_RNG, K_DATAN,
       K_EPOCH, K_POS, K_MODEL_ID, K_COUNT };
static const char *const meta_keys[K_COUNT] = {
    "doppel.task",      "doppel.gan.arch",  "doppel.gan.loss",  "doppel.gan.nz",    "doppel.gan.batch",
    "doppel.gan.lr_g",  "doppel.gan.lr_d",  "doppel.gan.beta1", "doppel.gan.beta2", "doppel.gan.gp_weight",
    "doppel.gan.flip",  "doppel.gan.seed",  "doppel.gan.step",  "doppel.gan.rng",   "doppel.gan.data_n",
    "doppel.gan.epoch", "doppel.gan.pos",   "doppel.gan.model_id"};

static void rng_to_str(const dp_rng *r, char *buf, size_t n) {
    uint32_t sp;
    memcpy(&sp, &r->spare, 4);
    snprintf(buf, n, "%016llx,%016llx,%016llx,%016llx,%d,%08x", (unsigned long long)r->s[0], (unsigned long long)r->s[1],
             (unsigned long long)r->s[2], (unsigned long long)r->s[3], r->has_spare ? 1 : 0, (unsigned)sp);
}
static int rng_from_str(const char *s, dp_rng *r) {
    unsigned long long a[4];
    int hs, used = 0;
    unsigned sp;
    if (sscanf(s, "%16llx,%16llx,%16llx,%16llx,%1d,%8x%n", &a[0], &a[1], &a[2], &a[3], &hs, &sp, &used) != 6 || s[used] ||
        (hs != 0 && hs != 1) || !(a[0] | a[1] | a[2] | a[3]))
        return 0;
    for (int i = 0; i < 4; i++) r->s[i] = a[i];
    r->has_spare = hs;
    uint32_t u = sp;
    memcpy(&r->spare, &u, 4);
    return 1;
}

static int all_finite(dp_tensor *t) {
    const float *v = dp_tensor_f32(t);
    int64_t n = dp_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

dp_status dp_gan_save(dp_gan *gan, const char *path, const char *const *extra) {
    if (!gan) return DP_ERR_NULL;
    dp_ctx *ctx = gan->ctx;
    if (!path || !*path) return dp_error(ctx, DP_ERR_NULL, "dp_gan_save: path is NULL or empty");
    if (gan->failed)
        return dp_error(ctx, DP_ERR_STATE, "%s: not saved: training stopped on non-finite values at step %lld (the file "
                        "keeps the last good state)", path, (long long)gan->step + 1);
    for (int i = 0; i < gan->n_ck; i++)
        if (!all_finite(gan->ck_src[i]))
            return dp_error(ctx, DP_ERR_NUMERIC, "%s: not saved: tensor '%s' holds NaN or Inf", path, gan->ck_src[i]->name);
    int n_extra = 0;
    while (extra && extra[n_extra]) n_extra += 2;
    const dp_gan_opts *o = &gan->o;
    char v[K_COUNT][128];
    snprintf(v[K_TASK], 128, "gan");
    snprintf(v[K_ARCH], 128, "%s", dp_gan_arch_name(o->arch));
    snprintf(v[K_LOSS], 128, "%s", dp_gan_loss_name(o->loss));
    snprintf(v[K_NZ], 128, "%d", o->nz);
    snprintf(v[K_BATCH], 128, "%d", o->batch);
    snprintf(v[K_LRG], 128, "%.9g", (double)o->lr_g);
    snprintf(v[K_LRD], 128, "%.9g", (double)o->lr_d);
    snprintf(v[K_B1], 128, "%.9g", (double)o->beta1);
    snprintf(v[K_B2], 128, "%.9g", (double)o->beta2);
    snprintf(v[K_GPW], 128, "%.9g", (double)o->gp_weight);
    snprintf(v[K_FLIP], 128, "%d", o->flip);
    snprintf(v[K_SEED], 128, "%llu", (unsigned long long)o->seed);
    snprintf(v[K_STEP], 128, "%lld", (long long)gan->step);
    rng_to_str(&gan->rng, v[K_RNG], 128);
    snprintf(v[K_DATAN], 128, "%lld", (long long)gan->data_n);
    snprintf(v[K_EPOCH], 128, "%lld", (long long)gan->epoch);
    snprintf(v[K_POS], 128, "%lld", (long long)gan->pos);
    snprintf(v[K_MODEL_ID], 128, "%08x", (unsigned)dp_gan_hash_params(gan->psg));
    const char **kv = dp_malloc(ctx, sizeof(char *) * (size_t)(2 * K_COUNT + n_extra + 1));
    if (!kv) return dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
    for (int k = 0; k < K_COUNT; k++) {
        kv[2 * k] = meta_keys[k];
        kv[2 * k + 1] = v[k];
    }
    for (int i = 0; i < n_extra; i++) kv[2 * K_COUNT + i] = extra[i];
    kv[2 * K_COUNT + n_extra] = NULL;
    for (int i = 0; i < gan->n_ck; i++)
        memcpy(gan->ck_dst[i]->data, gan->ck_src[i]->data, sizeof(float) * (size_t)dp_tensor_numel(gan->ck_src[i]));
    char arch[32];
    snprintf(arch, sizeof arch, "gan-%s", dp_gan_arch_name(o->arch));
    dp_status s = dp_checkpoint_save(path, gan->psck, NULL, arch, kv);
    dp_free(ctx, (void *)kv);
    return s;
}

/* Reads key into buf; a missing key is a format error naming it. */
static dp_status meta(dp_ctx *ctx, const char *path, const char *key, char *buf, size_t n) {
    dp_status s = dp_checkpoint_meta(ctx, path, key, buf, n);
    if (s == DP_ERR_NOT_FOUND)
        return dp_error(ctx, DP_ERR_FORMAT, "%s: metadata '%s' is missing (not a checkpoint written by dp_gan_save?)", path, key);
    return s;
}
/* metadata values as dp_gan_save writes them (core/parse.h: strict, in range; floats finite) */
static int parse_f32(const char *v, float *out) { return dp_parse_f32(v, -FLT_MAX, FLT_MAX, out); }

dp_status dp_gan_read_opts(dp_ctx *ctx, const char *path, dp_gan_opts *opts, int64_t *step) {
    if (!ctx) return DP_ERR_NULL;
    if (!path) return dp_error(ctx, DP_ERR_NULL, "dp_gan_read_opts: path is NULL");
    char v[K_COUNT][128];
    dp_status s;
    for (int k = 0; k <= K_STEP; k++)
        if ((s = meta(ctx, path, meta_keys[k], v[k], sizeof v[k])) != DP_OK) return s;
    if (strcmp(v[K_TASK], "gan")) return dp_error(ctx, DP_ERR_FORMAT, "%s: doppel.task is '%s', not a GAN run", path, v[K_TASK]);
    dp_gan_opts o = {0};
    int64_t nz, batch, flip, st;
    const char *bad = NULL;
    unsigned long long seed;
    char *end;
    if (!dp_gan_arch_parse(v[K_ARCH], &o.arch)) bad = meta_keys[K_ARCH];
    else if (!dp_gan_loss_parse(v[K_LOSS], &o.loss)) bad = meta_keys[K_LOSS];
    else if (!dp_parse_i64(v[K_NZ], 1, 4096, &nz)) bad = meta_keys[K_NZ];
    else if (!dp_parse_i64(v[K_BATCH], 2, 65536, &batch)) bad = meta_keys[K_BATCH];
    else if (!parse_f32(v[K_LRG], &o.lr_g)) bad = meta_keys[K_LRG];
    else if (!parse_f32(v[K_LRD], &o.lr_d)) bad = meta_keys[K_LRD];
    else if (!parse_f32(v[K_B1], &o.beta1)) bad = meta_keys[K_B1];
    else if (!parse_f32(v[K_B2], &o.beta2)) bad = meta_keys[K_B2];
    else if (!parse_f32(v[K_GPW], &o.gp_weight)) bad = meta_keys[K_GPW];
    else if (!dp_parse_i64(v[K_FLIP], 0, 1, &flip)) bad = meta_keys[K_FLIP];
    else if (!dp_parse_i64(v[K_STEP], 0, INT64_MAX, &st)) bad = meta_keys[K_STEP];
    else {
        errno = 0;
        seed = strtoull(v[K_SEED], &end, 10);
        if (!v[K_SEED][0] || *end || errno || v[K_SEED][0] == '-') bad = meta_keys[K_SEED];
    }
    if (bad) return dp_error(ctx, DP_ERR_FORMAT, "%s: metadata '%s' has an invalid value", path, bad);
    o.nz = (int)nz;
    o.batch = (int)batch;
    o.flip = (int)flip;
    o.seed = seed;
    if (opts) *opts = o;
    if (step) *step = st;
    return DP_OK;
}

dp_status dp_gan_load(dp_gan *gan, const char *path) {
    if (!gan) return DP_ERR_NULL;
    dp_ctx *ctx = gan->ctx;
    if (!path || !*path) return dp_error(ctx, DP_ERR_NULL, "dp_gan_load: path is NULL or empty");
    dp_gan_opts o;
    int64_t step, data_n, epoch, pos;
    dp_status s = dp_gan_read_opts(ctx, path, &o, &step);
    if (s) return s;
    if (o.arch != gan->o.arch || o.nz != gan->o.nz)
        return dp_error(ctx, DP_ERR_ARG, "%s: the checkpoint is %s with nz %d, this trainer %s with nz %d", path,
                        dp_gan_arch_name(o.arch), o.nz, dp_gan_arch_name(gan->o.arch), gan->o.nz);
    char v[3][128], rs[128];
    for (int k = 0; k < 3; k++)
        if ((s = meta(ctx, path, meta_keys[K_DATAN + k], v[k], sizeof v[k])) != DP_OK) return s;
    if ((s = meta(ctx, path, meta_keys[K_RNG], rs, sizeof rs)) != DP_OK) return s;
    dp_rng rng;
    if (!dp_parse_i64(v[0], 0, INT64_MAX, &data_n) || !dp_parse_i64(v[1], 0, INT64_MAX, &epoch) || !dp_parse_i64(v[2], 0, data_n, &pos) ||
        !rng_from_str(rs, &rng))
        return dp_error(ctx, DP_ERR_FORMAT, "%s: the data-order or random-stream metadata is invalid", path);
    if (gan->ds && data_n != gan->ds->n && step > 0)
        return dp_error(ctx, DP_ERR_ARG, "%s: the run was trained on %lld images, the data given has %lld", path,
                        (long long)data_n, (long long)gan->ds->n);
    /* Validates the whole file and stages it: nothing of the trainer changes on failure. */
    if ((s = dp_checkpoint_load(path, gan->psck, NULL)) != DP_OK) return s;
    for (int i = 0; i < gan->n_ck; i++)
        memcpy(gan->ck_src[i]->data, gan->ck_dst[i]->data, sizeof(float) * (size_t)dp_tensor_numel(gan->ck_src[i]));
    dp_optim_set_steps(gan->og, step);
    dp_optim_set_steps(gan->od, step);
    gan->step = step;
    gan->o.seed = o.seed; /* it fixes the data order of every pass */
    gan->rng = rng;
    gan->epoch = epoch;
    gan->pos = pos;
    gan->failed = 0;
    if (gan->ds) make_perm(gan);
    else gan->data_n = data_n;
    return DP_OK;
}
