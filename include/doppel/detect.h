/* doppel — deepfake detection on face images: one crop policy, detectors
 * (Meso-4 on the crop, a spectral detector after Durall et al. 2020), a
 * fused and calibrated probability, a three-way verdict, metrics.
 *
 * The data path (docs/detect.md):
 *   image → faces (face.h) → crop policy → "work" crop (RGB, work×work)
 *         → Meso-4 on the crop enlarged to size×size      → logit m
 *         → spectral profile of the grey work crop → LR   → logit s
 *         → fused logit a·m + b·s + c (fitted on a held-out split: Platt
 *           scaling of the stacked scores)                 → p_fake
 *         → verdict: real (p < t_real), fake (p >= t_fake), else uncertain;
 *           uncertain also when the spectral profile is far from both
 *           classes' training distribution, or no face was found.
 *
 * Every resampling goes through dp_image_resize (area-averaging when
 * shrinking, bilinear when enlarging), in training and in inference alike.
 * The crop policy is stored in the model file and read back from it.
 */
#ifndef DOPPEL_DETECT_H
#define DOPPEL_DETECT_H

#include "data.h"
#include "face.h"
#include "label.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ crop policy
 * A square centred on the face box's centre (moved down by shift·h), of
 * side max(w,h) · inner · (1 + 2·margin); parts outside the image are filled
 * by repeating the edge pixels. The square is resampled to work×work (every
 * source ends at this one resolution), and enlarged from there to the
 * model's input size×size. */
typedef struct dp_crop_policy {
    float inner;  /* fraction of the detected box kept: < 1 keeps the inner face (little background) */
    float margin; /* added on each side, as a fraction of the inner side */
    float shift;  /* centre moved down by this fraction of the box height */
    int work;     /* the common resolution every crop is resampled to */
    int size;     /* the model's input side */
    int norm;     /* DP_CROP_NORM_*: what the model input is normalised by, per crop (0: nothing) */
} dp_crop_policy;

/* Per-crop normalisation of the model input (dp_crop_to_input), so that a
 * source's colour, brightness and contrast cannot carry the label:
 * CHANNEL standardises each of R, G, B over the crop (grey world + contrast),
 * GREY keeps only the standardised luminance (ITU-R 601) in all three
 * channels, RESIDUAL only the luminance minus its Gaussian blur (sigma 1 px
 * of the work crop: fine texture, no shading or colour). Each maps to mean
 * 0.5 and deviation 0.2. Stored in the crop policy ("norm=N"; absent = 0). */
#define DP_CROP_NORM_NONE 0
#define DP_CROP_NORM_CHANNEL 1
#define DP_CROP_NORM_GREY 2
#define DP_CROP_NORM_RESIDUAL 3

#define DP_CROP_INNER 0.8f
#define DP_CROP_MARGIN 0.05f
#define DP_CROP_SHIFT 0.05f
#define DP_CROP_WORK 64
#define DP_CROP_SIZE 256

void dp_crop_policy_default(dp_crop_policy *p);
/* "inner=0.8,margin=0.05,shift=0.05,work=64,size=256" (the checkpoint's doppel.crop),
 * with ",norm=N" appended when norm is not 0 (older files have no norm key: 0). */
dp_status dp_crop_policy_format(const dp_crop_policy *p, char *buf, size_t n);
dp_status dp_crop_policy_parse(dp_ctx *ctx, const char *s, dp_crop_policy *p);
/* The square in image coordinates (may reach outside the image). */
void dp_crop_square(const dp_crop_policy *p, const dp_face_box *face, int *x, int *y, int *side);
/* The box used when no face is found: the centred square of side
 * 0.9·min(width, height) (tight face crops such as UTKFace). */
void dp_crop_fallback_box(int width, int height, dp_face_box *box);
/* The work crop (RGB work×work) of one face. img: grey or RGB. */
dp_status dp_crop_face(dp_ctx *ctx, const dp_image *img, const dp_face_box *face, const dp_crop_policy *p,
                       dp_image *out);
/* The model input (size×size) from a work crop, normalised as p->norm says. */
dp_status dp_crop_to_input(dp_ctx *ctx, const dp_image *work, const dp_crop_policy *p, dp_image *out);

/* ------------------------------------------------------------ spectral features
 * Grey (ITU-R 601) crop of side N (N even, 8..256), minus its mean, times a
 * Hann window, 2-D DFT (separable), log power spectrum log(|F|² + 1e-8),
 * azimuthal average over rings r = round(|k|) for r = 1..N/2 → N/2 values,
 * minus their mean (so a change of contrast does not move the profile). */
#define DP_SPECTRAL_MAX 128
int dp_spectral_count(int side); /* N/2 */
dp_status dp_spectral_features(dp_ctx *ctx, const dp_image *crop, float *feat, int n_feat);

/* ------------------------------------------------------------ augmentation
 * Degradations applied the same way to both classes during training (and
 * used by the robustness table). Each is drawn with probability 0.5 unless
 * noted; the parameters are drawn from the given rng. */
typedef struct dp_augment_opts {
    float p_jpeg;    /* JPEG re-compression at quality jpeg_lo..jpeg_hi (60..100) */
    int jpeg_lo, jpeg_hi;
    float p_blur;    /* Gaussian blur, sigma 0.3..blur_max (1.5) */
    float blur_max;
    float p_scale;   /* down to scale_lo..1 of the side (0.5) and back up */
    float scale_lo;
    float p_flip;    /* horizontal flip */
    float p_jitter;  /* brightness ±0.15, contrast ×0.8..1.2, saturation ×0.7..1.3 */
    float p_cutout;  /* one grey square of side 0.15..0.35 of the crop */
    float p_noise;   /* Gaussian noise, sd drawn in 0..noise_max (0.03), clamped to [0,1] (p 0.3) */
    float noise_max;
} dp_augment_opts;
void dp_augment_opts_default(dp_augment_opts *o);
dp_status dp_augment(dp_ctx *ctx, dp_image *img, const dp_augment_opts *o, dp_rng *rng); /* in place */

/* Self-blended image (Shiohara & Yamasaki, CVPR 2022), in place: the work
 * crop blended with a slightly changed copy of itself (scale 0.94..1.06,
 * shift <= 4 %, blur or sharpening, colour shift) inside a soft elliptical
 * face mask, at a blend ratio of 0.25..1 — the same face, no other identity.
 * A training "fake" that teaches blending boundaries (docs/detect.md). */
dp_status dp_self_blend(dp_ctx *ctx, dp_image *img, dp_rng *rng);
/* The same without the blur branch of the sharpness change when no_blur is set
 * (unsharp masking or nothing), so that "softer inside" is not what the pseudo-fakes teach. */
dp_status dp_self_blend_ex(dp_ctx *ctx, dp_image *img, dp_rng *rng, int no_blur);

/* Baseline JPEG at quality q (1..100) in memory (libjpeg) and decoded back. */
dp_status dp_jpeg_recompress(dp_ctx *ctx, dp_image *img, int quality); /* in place */
/* Separable Gaussian blur (kernel radius ceil(3 sigma), edges repeated). */
dp_status dp_gaussian_blur(dp_ctx *ctx, dp_image *img, float sigma); /* in place */
/* Resize by a factor through dp_image_resize (in place: img is replaced). */
dp_status dp_image_rescale(dp_ctx *ctx, dp_image *img, double factor);

/* ------------------------------------------------------------ metrics
 * label 1 = fake (positive), 0 = real. Scores: higher = more likely fake. */
/* Area under the ROC curve (ties count one half). NAN when a class is empty. */
double dp_metric_auc(const float *score, const int *label, int64_t n);
/* Average precision: sum over the distinct thresholds of (R_k - R_{k-1}) P_k. */
double dp_metric_ap(const float *score, const int *label, int64_t n);
/* Expected calibration error over n_bins equal-width bins of p in [0,1]. */
double dp_metric_ece(const float *p, const int *label, int64_t n, int n_bins);
/* ROC points for every distinct threshold, from (0,0) to (1,1): fpr/tpr must
 * hold n+2 values; returns the number of points. */
int64_t dp_metric_roc(const float *score, const int *label, int64_t n, float *fpr, float *tpr);

/* Binary logistic regression by Newton's method (IRLS) with an L2 penalty
 * l2·|w|² (bias not penalised): x [n,d] row-major, y 0/1, w gets d weights
 * then the bias. Returns DP_ERR_NUMERIC if it does not converge to finite
 * values. d <= 256. Platt scaling is the case d = 1. */
dp_status dp_logreg_fit(dp_ctx *ctx, const float *x, const int *y, int64_t n, int d, double l2, float *w);
double dp_sigmoid_d(double z);
/* log(p/(1-p)) with p clamped to [1e-7, 1-1e-7]. */
float dp_logit(float p);

/* ------------------------------------------------------------ the detector */
typedef enum dp_verdict { DP_VERDICT_REAL = 0, DP_VERDICT_UNCERTAIN, DP_VERDICT_FAKE } dp_verdict;
const char *dp_verdict_name(dp_verdict v); /* "real", "uncertain", "fake" */

#define DP_DETECT_T_REAL 0.3f /* p_fake below: real */
#define DP_DETECT_T_FAKE 0.7f /* p_fake at or above: fake (between: uncertain) */

/* Everything a detector is besides the Meso-4 weights. Stored in the model
 * file (tensors "spectral.*", "fusion.*"; metadata doppel.crop,
 * doppel.thresholds, doppel.ood). */
typedef struct dp_detector_params {
    dp_crop_policy crop;
    int use_meso;                  /* 0: spectral detector only */
    int inception;                 /* the CNN: 0 Meso-4, 1 MesoInception-4 (doppel.cnn in the file) */
    int n_spec;                    /* spectral features (crop.work / 2) */
    float spec_w[DP_SPECTRAL_MAX]; /* on standardised features */
    float spec_b;
    float spec_mu[DP_SPECTRAL_MAX], spec_sigma[DP_SPECTRAL_MAX];
    /* per class (0 real, 1 fake): mean and sd of the standardised features */
    float class_mu[2][DP_SPECTRAL_MAX], class_sigma[2][DP_SPECTRAL_MAX];
    float ood_threshold;           /* mean squared z-score to the nearer class above this → uncertain */
    float fuse_w[3];               /* p = sigmoid(w0·meso_logit + w1·spec_logit + w2) */
    float t_real, t_fake;
    /* Out of distribution for what Meso-4 sees: the Mahalanobis distance of
     * its penultimate features (the DP_DETECT_NFEAT values after the first
     * dense layer) to the nearer class mean, with the pooled within-class
     * covariance of the clean training crops (Lee et al. 2018), divided by
     * DP_DETECT_NFEAT. feat_threshold 0: no such check (older models).
     * Stored as tensors "ood.mu", "ood.prec" and metadata doppel.ood_features. */
    float feat_threshold;
    float feat_mu[2][16];
    float feat_prec[16 * 16];
} dp_detector_params;
#define DP_DETECT_NFEAT 16

typedef struct dp_detector dp_detector;

/* A new, untrained detector (Meso-4 initialised from seed) whose eval graph
 * takes batch crops. params may be NULL (defaults: policy, thresholds,
 * fusion = meso only). */
dp_status dp_detector_new(dp_ctx *ctx, const dp_detector_params *params, int batch, uint64_t seed,
                          dp_detector **out);
/* Load a model written by dp_detector_save ("doppel.task" = "detect"). */
dp_status dp_detector_load(dp_ctx *ctx, const char *path, int batch, dp_detector **out);
/* Write the model (safetensors, crash-safe) with its params; extra:
 * NULL-terminated key/value pairs added to the metadata (may be NULL). */
dp_status dp_detector_save(dp_detector *d, const char *path, const char *const *extra);
void dp_detector_free(dp_detector *d);
dp_detector_params *dp_detector_get_params(dp_detector *d); /* mutable: fitting writes here */
dp_paramset *dp_detector_paramset(dp_detector *d);          /* Meso-4 weights: "f.*", "c.*" */
dp_ctx *dp_detector_ctx(dp_detector *d);

/* Raw scores of n work crops: Meso-4 logit, spectral logit, and the
 * out-of-distribution score (any may be NULL). ood is the spectral
 * profile's distance; when the model also has feature statistics
 * (feat_threshold > 0) it is the larger of that and the feature distance
 * rescaled so that both checks share the one threshold ood_threshold:
 * ood > ood_threshold exactly when either check fires. */
dp_status dp_detector_raw(dp_detector *d, const dp_image *crops, int n, float *meso_logit, float *spec_logit,
                          float *ood);
/* Everything dp_detector_raw computes, and the parts of ood (any may be
 * NULL): ood_spectral and ood_features (0 without feature statistics), and
 * features: n × DP_DETECT_NFEAT penultimate values of Meso-4. */
typedef struct dp_detector_scores {
    float *meso_logit, *spec_logit, *ood, *ood_spectral, *ood_features, *features;
} dp_detector_scores;
dp_status dp_detector_score(dp_detector *d, const dp_image *crops, int n, const dp_detector_scores *out);
/* Fits the feature statistics (class means, pooled covariance, its inverse)
 * on n feature rows (labels 0/1) and sets feat_threshold to the given
 * percentile (e.g. 99.5) of their own distances. */
dp_status dp_detector_fit_features(dp_detector *d, const float *features, const int *label, int64_t n, double percentile);
/* Fused probability and verdict from raw scores. */
float dp_detector_fuse(const dp_detector *d, float meso_logit, float spec_logit);
dp_verdict dp_detector_verdict(const dp_detector *d, float p_fake, float ood);

/* Where dp_detector_find_default looks (after $DOPPEL_MODEL): */
#define DP_DETECT_DEFAULT_MODEL "doppel-detect-meso4.safetensors"
#define DP_DETECT_MODEL_DIRS "/usr/local/share/doppel/models:/usr/share/doppel/models"
/* Finds the default model: $DOPPEL_MODEL, then source_dir/models (may be
 * NULL), then DP_DETECT_MODEL_DIRS. DP_ERR_NOT_FOUND names the places. */
dp_status dp_detector_find_default(dp_ctx *ctx, const char *source_dir, char *path, size_t n);

/* ------------------------------------------------------------ one image */
#define DP_DETECT_MAX_FACES 32
typedef struct dp_detect_face {
    dp_face_box box;       /* in the image; the fallback box when no face was found */
    float p_fake;
    float p_meso, p_spectral; /* each detector on its own (calibrated on its own by the fusion's bias-free part) */
    float ood;
    float ood_spectral, ood_features; /* the two parts of ood (ood_features 0 without feature statistics) */
    int ood_over;                     /* 1 spectral, 2 features, 3 both over their thresholds: verdict uncertain */
    dp_verdict verdict;
} dp_detect_face;

typedef struct dp_detect_result {
    int n_faces;           /* faces found (0: one fallback entry is scored, verdict uncertain) */
    int n_scored;          /* entries in faces[] */
    dp_detect_face faces[DP_DETECT_MAX_FACES];
    float p_fake;          /* the highest face p_fake */
    dp_verdict verdict;    /* fake if any face is fake, else uncertain if any is, else real */
    int no_face;
} dp_detect_result;

/* Find the faces (fd may be NULL: the whole image is one fallback face),
 * crop, score, fuse, judge. */
dp_status dp_detect_image(dp_detector *d, const dp_face_detector *fd, const dp_image *img, dp_detect_result *out);
/* The one JSON serialiser (CLI and server): {"file":…, "verdict":…, "p_fake":…,
 * "faces":[{"box":[x,y,w,h], "p_fake":…, "verdict":…, "detectors":{"meso4":…,
 * "spectral":…}}], …}. watermark_json: an extra member's value for
 * "watermark" (raw JSON, may be NULL). Returns the length (like snprintf). */
int dp_detect_result_json(const char *file, const dp_detect_result *r, const char *watermark_json, char *buf,
                          size_t n);
/* The "watermark" member's value for dp_detect_result_json (CLI and server):
 * {"found":…,"model_id":…,"score":…}; model_id is 0 when not found.
 * Returns the length (like snprintf). */
int dp_detect_watermark_json(const dp_watermark_result *w, char *buf, size_t n);

/* Occlusion map of one work crop: a grey patch of side patch (stride
 * patch/2) is slid over the crop; heat[y*work+x] = how much the fused
 * logit (log-odds of p_fake) drops when that pixel is hidden, averaged over
 * the patches covering it, clamped at 0. heat has work*work floats. */
dp_status dp_detector_occlusion(dp_detector *d, const dp_image *crop, int patch, float *heat);

/* Grad-CAM (Selvaraju et al. 2017) of one work crop on the CNN alone: the
 * last feature maps before the head (16x16 at a 128 input) weighted by
 * their mean gradient of Meso-4's logit, summed, ReLU, resampled to
 * work x work into heat (unnormalised, >= 0). DP_ERR_UNSUPPORTED for a
 * spectral-only model. The gradient graph is built on first use. */
dp_status dp_detector_gradcam(dp_detector *d, const dp_image *crop, float *heat);

/* ------------------------------------------------------------ explanations
 * Where the detector looked, for a result of dp_detect_image on img.
 * dp_detect_heatmap: heat gets a 1-channel image of img's size, values in
 * [0,1]: each scored face's occlusion map (patch = a quarter of the work
 * crop), normalised to its own maximum and resampled onto the face's crop
 * square; 0 outside the faces and where hiding a patch lowers nothing.
 * dp_detect_explain: out gets an RGB copy of img with the heat map blended
 * in red, each face box (green real, yellow uncertain, red fake) and a bar
 * above the box whose length is p_fake (what `doppel detect --explain`
 * writes). The caller frees heat/out with dp_image_free. */
dp_status dp_detect_heatmap(dp_detector *d, const dp_image *img, const dp_detect_result *r, dp_image *heat);
dp_status dp_detect_explain(dp_detector *d, const dp_image *img, const dp_detect_result *r, dp_image *out);
/* The same with the map of the given method (doppel detect --explain-method). */
typedef enum dp_explain_method { DP_EXPLAIN_OCCLUSION = 0, DP_EXPLAIN_GRADCAM = 1 } dp_explain_method;
dp_status dp_detect_heatmap_ex(dp_detector *d, const dp_image *img, const dp_detect_result *r, dp_explain_method m,
                               dp_image *heat);
dp_status dp_detect_explain_ex(dp_detector *d, const dp_image *img, const dp_detect_result *r, dp_explain_method m,
                               dp_image *out);

#ifdef __cplusplus
}
#endif
#endif
