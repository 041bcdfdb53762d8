/* doppel — importing weights trained elsewhere: the original MesoNet Keras files.
 *
 * The Keras 2.x HDF5 weight files of DariusAf/MesoNet (Afchar et al. 2018:
 * Meso4_DF.h5, Meso4_F2F.h5, MesoInception_DF.h5, MesoInception_F2F.h5) are
 * read with libhdf5 into doppel's reference models (dp_model_meso4,
 * dp_model_mesoinception4), so that doppel computes what Keras computes on the
 * same input tensor. What is converted (details: docs/keras-import.md):
 *  - conv kernels HWIO → OIHW, dense kernels (in,out) → (out,in);
 *  - the first dense layer's rows, from Keras' NHWC flatten order (h,w,c)
 *    to doppel's NCHW order (c,h,w);
 *  - batch norm gamma/beta/moving_mean/moving_variance → weight/bias/
 *    running_mean/running_var, with the difference between Keras' epsilon
 *    (the file's model_config, else Keras' default 1e-3) and the epsilon of
 *    doppel's builder folded into running_var (exact: var + eps_keras is kept).
 * The models output Keras' predict() value: P(real) for these files (the
 * classes were the sorted folders 'df' = 0, 'real' = 1).
 *
 * Weights are found through the file's own index (the layer_names and
 * weight_names attributes, as Keras' load_weights does), both in
 * save_weights() files (the index at the root) and in model.save() files
 * (the index in the model_weights group). Every failure is a status with a
 * message naming the file and the layer: DP_ERR_IO (cannot open),
 * DP_ERR_FORMAT (not HDF5, truncated, not a Keras file, missing layer or
 * weight, wrong shape, non-finite value), DP_ERR_UNSUPPORTED (a model_config
 * that describes another model). libhdf5's own error printing is switched
 * off during the call and restored after it; libhdf5 is not hardened against
 * deliberately malformed files: import files you trust.
 */
#ifndef DOPPEL_IMPORT_H
#define DOPPEL_IMPORT_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What an import found in the file. */
typedef struct dp_keras_info {
    char keras_version[32]; /* root attribute keras_version ("" if absent) */
    char backend[32];       /* root attribute backend ("" if absent) */
    int has_config;         /* 1: the file had a model_config (its layers were checked) */
    int n_layers;           /* layers with weights that were read */
    double bn_eps;          /* Keras' batch-norm epsilon (the largest if layers differ) */
    double bn_eps_doppel;   /* the epsilon of doppel's builder for this architecture */
} dp_keras_info;

/* Read a MesoNet Keras HDF5 file into ps for arch "meso4" or "mesoinception4".
 * The architecture's parameters are created in ps if absent (ps may be
 * empty); build the model over ps before or after, as for any paramset.
 * Nothing in ps changes unless the whole file was read and checked.
 * info may be NULL. */
dp_status dp_keras_load_mesonet(dp_paramset *ps, const char *h5_path, const char *arch, dp_keras_info *info);

/* Import h5_path and save it as a doppel checkpoint at out_path, with the
 * metadata doppel.arch, source ("keras-h5:<file name>"), doppel.input
 * ("3,256,256"), input_size ("256"), preprocess, doppel.norm_mean/norm_std,
 * output ("p_real"), keras.version, keras.bn_eps and doppel.bn_eps_fold.
 * info may be NULL. */
dp_status dp_keras_import_mesonet(dp_ctx *ctx, const char *h5_path, const char *arch, const char *out_path,
                                  dp_keras_info *info);

/* The conversions, exposed for tests and other importers.
 * Keras Conv2D kernel [kh,kw,ci,co] (HWIO) → doppel weight [co,ci,kh,kw] (OIHW). */
void dp_keras_conv_kernel(const float *hwio, int64_t kh, int64_t kw, int64_t ci, int64_t co, float *oihw);
/* Keras Dense kernel [h*w*c, out] that follows Flatten() of an NHWC [h,w,c]
 * tensor → doppel dense weight [out, c*h*w] that follows dp_flatten of the
 * NCHW [c,h,w] tensor (h = w = 1 gives the plain transpose). */
void dp_keras_dense_kernel(const float *kernel, int64_t h, int64_t w, int64_t c, int64_t out, float *weight);

#ifdef __cplusplus
}
#endif
#endif
