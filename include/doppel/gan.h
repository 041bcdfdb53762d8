/* doppel — GANs: a DCGAN trainer, a sampler, noise, image grids.
 *
 * A dp_gan trains a generator G and a discriminator D (the reference DCGANs
 * of nn.h: arch dcgan28 = 28×28×1, dcgan64 = 64×64×3; parameters "G.*" and
 * "D.*" under PyTorch's state_dict names) with two Adam optimisers, over ONE
 * static graph built at dp_gan_new. One dp_gan_step is one iteration of the
 * PyTorch DCGAN example, in its order:
 *
 *   x = a batch of real images, z ~ N(0, 1)
 *   fake = G(z)                                (computed once per iteration)
 *   L_D  = loss on D(x) and D(fake.detach())   → backward → D step
 *   L_G  = loss on D(fake), with the updated D → backward (G only) → G step
 *
 * using dp_graph_forward partial passes: the G step's forward reuses fake and
 * computes only the D(fake) branch. A step allocates nothing.
 *
 * D is built without its final sigmoid (dp_model_dcgan*_d_logits) and the
 * losses read its raw scores s:
 *   DP_GAN_NS      non-saturating GAN loss, as BCE with logits:
 *                  L_D = bce(s(x), 1) + bce(s(G(z)), 0), L_G = bce(s(G(z)), 1)
 *                  (the same function as the reference sigmoid + BCE, without
 *                  the saturation of float32 sigmoid/log at large |s|)
 *   DP_GAN_HINGE   L_D = mean relu(1 - s(x)) + mean relu(1 + s(G(z))), L_G = -mean s(G(z))
 *   DP_GAN_WGAN_GP L_D = mean s(G(z)) - mean s(x) + λ mean_i (‖∇x̂ s(x̂_i)‖ - 1)²,
 *                  x̂ = εx + (1-ε)G(z), ε ~ U(0,1) per image; L_G = -mean s(G(z)).
 *                  The engine has no double backward: the penalty's gradient
 *                  with respect to D's parameters is a central finite difference
 *                  of parameter gradients along the penalty's input direction
 *                  (a Hessian-vector product), see docs/gan.md for the
 *                  derivation and its measured error. One D step per G step.
 *
 * Initialisation is the DCGAN recipe (conv weights N(0, 0.02), batch-norm
 * weights N(1, 0.02), biases 0), from the seed. Same seed, same thread count,
 * same build → the same run bit for bit, and dp_gan_save / dp_gan_load carry
 * everything needed to continue a run exactly (weights, running statistics,
 * both optimisers, the step, the random stream and the data order).
 */
#ifndef DOPPEL_GAN_H
#define DOPPEL_GAN_H

#include "data.h"
#include "io.h"
#include "face.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dp_gan_arch { DP_GAN_DCGAN28 = 0, DP_GAN_DCGAN64 = 1 } dp_gan_arch;
typedef enum dp_gan_loss { DP_GAN_NS = 0, DP_GAN_HINGE = 1, DP_GAN_WGAN_GP = 2 } dp_gan_loss;

const char *dp_gan_arch_name(dp_gan_arch a); /* "dcgan28", "dcgan64" ("?" if unknown) */
const char *dp_gan_loss_name(dp_gan_loss l); /* "ns", "hinge", "wgan-gp" */
/* Parse the names above: 1 on success, 0 if the name is unknown. */
int dp_gan_arch_parse(const char *s, dp_gan_arch *out);
int dp_gan_loss_parse(const char *s, dp_gan_loss *out);
/* The image shape an arch generates and discriminates (1,28,28 or 3,64,64); 0 if unknown. */
int dp_gan_arch_shape(dp_gan_arch a, int *channels, int *height, int *width);

typedef struct dp_gan_opts {
    dp_gan_arch arch;
    dp_gan_loss loss;
    int nz;             /* noise dimensions; 0 → 100 */
    int batch;          /* 0 → 64 */
    float lr_g, lr_d;   /* Adam learning rates; 0 → 2e-4 */
    float beta1, beta2; /* both 0 → 0.5, 0.999 (the DCGAN paper's) */
    float gp_weight;    /* WGAN-GP λ; 0 → 10 */
    int flip;           /* 1: flip each real image horizontally with probability 1/2 */
    uint64_t seed;      /* initialisation, noise, data order, flips */
} dp_gan_opts;

typedef struct dp_gan dp_gan;

/* Builds G, D, the training graph, the optimisers and a sampling graph
 * (eval mode, batch 64). opts NULL = all defaults (dcgan28, ns). */
dp_status dp_gan_new(dp_ctx *ctx, const dp_gan_opts *opts, dp_gan **out);
void dp_gan_free(dp_gan *gan);
/* The options with every default filled in. */
const dp_gan_opts *dp_gan_options(const dp_gan *gan);

/* The real images: ds->pixels [n,C,H,W] must have the arch's shape and at
 * least one batch of images (labels are ignored). Borrowed, not copied: keep
 * ds alive while training. Images are scaled to [-1,1]. Each pass over the
 * data ("epoch") visits the images in a fresh seeded order; a last partial
 * batch is skipped. */
dp_status dp_gan_set_data(dp_gan *gan, const dp_dataset *ds);

typedef struct dp_gan_stats {
    int64_t step;       /* iterations done, this one included */
    float loss_d;       /* L_D (for wgan-gp including the penalty) */
    float loss_g;
    /* Mean of D on the real batch and on G(z) before the D step, and on G(z)
     * in the G step (after the D step): probabilities sigmoid(s) for ns, raw
     * scores s for hinge and wgan-gp. */
    float d_real, d_fake, d_fake_g;
    float gp;           /* wgan-gp: λ mean (‖∇‖ - 1)², part of loss_d; else 0 */
    float grad_norm;    /* wgan-gp: mean ‖∇x̂ s‖; else 0 */
    float lr_d, lr_g;   /* the rates this step used */
    int64_t epoch;      /* pass over the data the batch came from (0-based) */
} dp_gan_stats;

/* One training iteration (stats may be NULL). A NaN or Inf in a loss or a
 * gradient stops it with DP_ERR_NUMERIC and a message naming the step; the
 * trainer then refuses further steps and dp_gan_save (DP_ERR_STATE), so a
 * checkpoint written before stays the last good one. */
dp_status dp_gan_step(dp_gan *gan, dp_gan_stats *stats);
int64_t dp_gan_steps(const dp_gan *gan);

/* Checkpoint: G, D (with running statistics), both optimisers' moments as
 * "optim.<param>.<slot>" (G.* and D.* names do not collide), and metadata
 * "doppel.task" = "gan", "doppel.gan.*" (arch, loss, nz, batch, rates, betas,
 * gp_weight, flip, seed, step, rng, data_n, epoch, pos) plus the caller's
 * extra pairs (NULL-terminated, may be NULL; keys must not repeat those).
 * "doppel.arch" is "gan-<arch>". Crash-safe (dp_checkpoint_save). Refuses
 * (DP_ERR_NUMERIC) to write weights that are not all finite. */
dp_status dp_gan_save(dp_gan *gan, const char *path, const char *const *extra);
/* Restores everything dp_gan_save wrote into a trainer made with the same
 * arch and nz, the seed included (it fixes the data order). The loss, batch
 * and rates stay the trainer's: dp_gan_read_opts gives the options the run
 * was made with — make the trainer with them to continue the run exactly.
 * The file is fully validated first: on any error the trainer is unchanged.
 * If data is set (before or after), its image count must equal the
 * checkpoint's. Loading also clears a stop on non-finite values. */
dp_status dp_gan_load(dp_gan *gan, const char *path);
/* The options a checkpoint was trained with, and its step (either may be NULL). */
dp_status dp_gan_read_opts(dp_ctx *ctx, const char *path, dp_gan_opts *opts, int64_t *step);

/* The parameter sets and optimisers (for inspection and tests). */
dp_paramset *dp_gan_generator(dp_gan *gan);
dp_paramset *dp_gan_discriminator(dp_gan *gan);
dp_optim *dp_gan_optim_g(dp_gan *gan);
dp_optim *dp_gan_optim_d(dp_gan *gan);
/* Bytes of activation memory of the training graph. */
size_t dp_gan_memory_bytes(const dp_gan *gan);

/* Generate with the current G in eval mode (running statistics, so each
 * image depends only on its own z; training state is not touched):
 * z [n,nz] → out [n,C,H,W] in [0,1]. Any n ≥ 1 (runs in batches of 64). */
dp_status dp_gan_generate(dp_gan *gan, const float *z, int64_t n, float *out);
/* 32-bit id of the current G: dp_gan_hash_params over the generator. */
uint32_t dp_gan_model_id(dp_gan *gan);

/* ------------------------------------------------------------ sampling */
typedef struct dp_gan_sampler dp_gan_sampler;
/* A generator loaded from a dp_gan_save checkpoint (only the G.* tensors are
 * read), in eval mode, generating in batches of `batch` (0 → 64). */
dp_status dp_gan_sampler_load(dp_ctx *ctx, const char *path, int batch, dp_gan_sampler **out);
void dp_gan_sampler_free(dp_gan_sampler *s);
dp_gan_arch dp_gan_sampler_arch(const dp_gan_sampler *s);
int dp_gan_sampler_nz(const dp_gan_sampler *s);
int64_t dp_gan_sampler_step(const dp_gan_sampler *s); /* the checkpoint's step */
uint32_t dp_gan_sampler_model_id(const dp_gan_sampler *s); /* computed from the loaded weights */
/* z [n,nz] → out [n,C,H,W] in [0,1]. */
dp_status dp_gan_sampler_generate(dp_gan_sampler *s, const float *z, int64_t n, float *out);
/* Write G alone (its tensors with their G.* names, batch-norm running
 * statistics included; no D, no optimiser): a generator to ship
 * (`doppel gan export`). dp_gan_sampler_load reads it back with the same
 * model id. extra: more metadata key/value pairs, NULL-terminated (may be NULL). */
dp_status dp_gan_sampler_save(dp_gan_sampler *s, const char *path, const char *const *extra);

/* count values of N(0,1) into z. truncation > 0: every value with
 * |z| > truncation is redrawn (a truncated normal); 0 = none. Values below
 * 0.01 are refused (DP_ERR_ARG, ctx may be NULL). */
dp_status dp_gan_noise(dp_ctx *ctx, dp_rng *r, float *z, int64_t count, float truncation);
/* n images [n,C,H,W] in [0,1] side by side, cols per row (0 → ceil(sqrt n)),
 * pad pixels between and around them (value 1, white). out is allocated
 * (dp_image_free). */
dp_status dp_gan_grid(dp_ctx *ctx, const float *imgs, int64_t n, int channels, int height, int width, int cols,
                      int pad, dp_image *out);
/* FNV-1a (32-bit) over every tensor of ps in order: its name, a zero byte,
 * then its float32 values as little-endian bytes. The model id doppel writes
 * into the watermark of the images a generator makes. */
uint32_t dp_gan_hash_params(dp_paramset *ps);

/* ------------------------------------------------------------ data */
/* Every .png/.jpg/.jpeg/.webp under dir (any depth, class subfolders or not,
 * hidden entries skipped), sorted by path, each resized to cover
 * channels×height×width and centre-cropped (for CelebA's 89×109 at 64×64:
 * the centred 89×89 square scaled to 64×64). One class, "images". opts:
 * channels/height/width required; limit, image_limits, warn, progress as
 * for dp_dataset_from_folder. Unreadable files are skipped (->skipped). */
dp_status dp_gan_images_from_folder(dp_ctx *ctx, const char *dir, const dp_folder_opts *opts, dp_dataset **out);
/* The same with a face crop first (`doppel gan train --face-crop`): in each
 * image the strongest face of det (dp_face_detect, default options) is taken,
 * the square of side (1 + 2 margin) × the face box's longer side around its
 * centre (moved inside the image; at most the image's shorter side) is cut
 * out and fitted as above. Images without a face are left out and counted in
 * fc->no_face (not warned about one by one); none with a face at all is
 * DP_ERR_NOT_FOUND. fc NULL: dp_gan_images_from_folder. */
#define DP_GAN_FACE_MARGIN 0.25f /* margin 0 → this */
typedef struct dp_gan_face_crop {
    const dp_face_detector *det; /* required (dp_face_detector_default) */
    float margin;                /* 0 → DP_GAN_FACE_MARGIN; at most 4 */
    int64_t no_face;             /* out: images without a face, left out */
} dp_gan_face_crop;
dp_status dp_gan_images_from_folder_faces(dp_ctx *ctx, const char *dir, const dp_folder_opts *opts, dp_gan_face_crop *fc,
                                          dp_dataset **out);

/* ------------------------------------------------------------ quality metrics (metrics.c)
 * Measured without downloading anything (docs/gan.md, "Measuring a GAN").
 * FID here is "FID-FMNIST-doppelcnn": the Fréchet distance of Gaussians fitted
 * to the penultimate features of a classifier doppel trained itself (`doppel
 * classify train`), NOT Inception features — not comparable with published
 * FIDs. */
#define DP_PR_K 3 /* neighbours of the precision/recall manifolds (Kynkäänniemi et al. 2019) */

/* Eigen-decomposition of a symmetric d×d matrix (row-major; only its
 * symmetric part is used) by cyclic Jacobi rotations, in double:
 * A = V diag(evals) Vᵀ, eigenvector k in column k of evecs (d×d). */
dp_status dp_sym_eigen(dp_ctx *ctx, const double *a, int d, double *evals, double *evecs);
/* The symmetric square root of a symmetric positive semi-definite matrix
 * (eigenvalues below 0, from rounding, count as 0). */
dp_status dp_sqrtm_psd(dp_ctx *ctx, const double *a, int d, double *out);
/* Mean and unbiased covariance (divided by n-1) of n vectors x [n,d]. */
dp_status dp_mean_cov(dp_ctx *ctx, const float *x, int64_t n, int d, double *mean, double *cov);
/* Squared Fréchet distance between N(mu1, cov1) and N(mu2, cov2):
 * |mu1-mu2|² + tr cov1 + tr cov2 - 2 tr sqrt(cov1^½ cov2 cov1^½). */
dp_status dp_frechet_distance(dp_ctx *ctx, const double *mu1, const double *cov1, const double *mu2, const double *cov2, int d,
                              double *out);
/* The same between Gaussians fitted to two sets of feature vectors. */
dp_status dp_fid_from_features(dp_ctx *ctx, const float *a, int64_t na, const float *b, int64_t nb, int d, double *out);
/* Kynkäänniemi et al. precision (share of generated vectors inside the
 * union of the balls around each real vector reaching its k-th nearest real
 * neighbour) and recall (real vectors inside the generated balls). Exact
 * O(n²d) search. Needs more than k vectors in each set. */
dp_status dp_precision_recall(dp_ctx *ctx, const float *real, int64_t nr, const float *fake, int64_t nf, int d, int k,
                              double *precision, double *recall);
/* Mean over n images [n,c,h,w] in [0,1] (square, even side 8..256) of the
 * azimuthally averaged log power spectrum (dp_spectral_features of detect.h:
 * grey, Hann window, rings 1..h/2, the profile's mean removed): h/2 values. */
dp_status dp_spectral_profile(dp_ctx *ctx, const float *imgs, int64_t n, int c, int h, int w, double *profile);
/* Mean squared difference of two profiles of n values. */
double dp_spectral_distance(const double *a, const double *b, int n);

/* A feature extractor: a `doppel classify` checkpoint (classify-cnn: the
 * 128-d output of dense fc1 + ReLU; classify-mlp: the 256-d one) in eval
 * mode, with the checkpoint's input normalisation. */
typedef struct dp_feature_model dp_feature_model;
dp_status dp_feature_model_load(dp_ctx *ctx, const char *path, dp_feature_model **out);
void dp_feature_model_free(dp_feature_model *m);
int dp_feature_model_dim(const dp_feature_model *m);
void dp_feature_model_shape(const dp_feature_model *m, int *c, int *h, int *w);
/* The name of the FID measured on this model's features: "FID-FMNIST-doppelcnn"
 * for a classifier of Fashion-MNIST, "FID-<folder>-doppelenc" for one trained on
 * a folder (the committed face encoder: "FID-faces-doppelenc"). Never "FID". */
const char *dp_feature_model_fid_name(const dp_feature_model *m);
/* imgs [n,C,H,W] in [0,1] → out [n,dim]. */
dp_status dp_feature_model_run(dp_feature_model *m, const float *imgs, int64_t n, float *out);

typedef struct dp_gan_eval {
    double fid;               /* FID on the feature model's features, named fid_name (NaN without a feature model) */
    char fid_name[96];        /* dp_feature_model_fid_name, "" without a feature model */
    double spectral_distance; /* mean squared difference of the mean spectral profiles */
    double precision, recall; /* k = DP_PR_K (NaN without a feature model) */
    int64_t n_real, n_fake;
} dp_gan_eval;
/* All the metrics between real and generated images (both [n,c,h,w] in
 * [0,1]); fm NULL: the spectral distance only. Images whose side is an
 * integer multiple f of the feature model's are shrunk for it by averaging
 * f×f blocks (the spectral distance uses the full images). */
dp_status dp_gan_eval_images(dp_ctx *ctx, dp_feature_model *fm, const float *real, int64_t nr, const float *fake, int64_t nf,
                             int c, int h, int w, dp_gan_eval *out);
/* One JSON object: fid_doppelcnn, fid_name, spectral_distance, precision, recall, n,
 * n_real, n_generated, k, feature_model, generator, data (NaN → null; the
 * strings may be NULL → null). 0 if buf is too small. */
int dp_gan_eval_json(const dp_gan_eval *e, const char *feature_model, const char *generator, const char *data, char *buf,
                     size_t n);

/* ------------------------------------------------------------ the run report (report.c)
 * RUN/report.html, self-contained (images inlined as base64 PNG data URIs, no
 * network): loss curves from RUN/metrics.csv, the grids of RUN/samples/ over
 * time, the metrics of RUN/eval.json (written by `doppel gan eval`). Missing
 * parts are said to be missing; only an unwritable file is an error. path
 * (may be NULL) receives the report's path. */
dp_status dp_gan_report(dp_ctx *ctx, const char *run_dir, char *path, size_t path_size);

#ifdef __cplusplus
}
#endif
#endif
