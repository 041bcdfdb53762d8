/* doppel — files: checkpoints (safetensors), datasets. */
#ifndef DOPPEL_IO_H
#define DOPPEL_IO_H

#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Save a model (and optionally its optimiser) as a safetensors file.
 * Tensors are stored under their paramset names, optimiser state under
 * "optim.<param>.<slot>". The header's __metadata__ gets "format":"doppel",
 * "doppel.version", "doppel.arch" (arch, may be NULL), "doppel.step",
 * "doppel.optim" and every key/value of extra (NULL-terminated pairs, may be NULL).
 * Crash-safe: writes PATH.tmp-XXXX, fsyncs, renames over PATH, fsyncs the folder. */
dp_status dp_checkpoint_save(const char *path, dp_paramset *ps, dp_optim *optim, const char *arch,
                             const char *const *extra);
/* The same, with every tensor stored as storage: DP_F32 (what dp_checkpoint_save writes) or DP_F16
 * (IEEE binary16, rounded to nearest even: half the size, about 3 significant decimal digits;
 * a finite value of magnitude 65520 or more, which F16 cannot hold, fails with DP_ERR_NUMERIC). */
dp_status dp_checkpoint_save_as(const char *path, dp_paramset *ps, dp_optim *optim, const char *arch,
                                const char *const *extra, dp_dtype storage);
/* Load into an existing paramset (and optimiser): every tensor of ps must be
 * in the file with the same shape, stored as F32 or F16 (widened to F32 exactly);
 * the message names the first one that is missing or different. NaN/Inf values
 * fail with DP_ERR_NUMERIC. Truncated or corrupt files fail with DP_ERR_FORMAT. */
dp_status dp_checkpoint_load(const char *path, dp_paramset *ps, dp_optim *optim);
/* What dp_checkpoint_convert did to the values (to F16; all 0 for F32). */
typedef struct dp_convert_info {
    int tensors;
    int64_t values;
    double max_abs_err; /* largest |stored - original| */
    double max_rel_err; /* largest relative error over |x| >= 2^-14 (F16's normal range): at most 2^-11 */
    int64_t flushed;    /* nonzero values stored as zero (|x| <= 2^-25) */
    int64_t subnormal;  /* values stored as F16 subnormals (|x| < 2^-14, fewer significant bits) */
} dp_convert_info;
/* Rewrite the safetensors file in (F32 and F16 tensors) as out with every tensor stored as storage
 * (DP_F16 or DP_F32), metadata kept as it is; crash-safe as dp_checkpoint_save (in == out is allowed).
 * Refuses NaN/Inf and values F16 cannot hold (DP_ERR_NUMERIC). info may be NULL. */
dp_status dp_checkpoint_convert(dp_ctx *ctx, const char *in, const char *out, dp_dtype storage, dp_convert_info *info);
/* IEEE binary16 <-> binary32: round to nearest, ties to even; Inf and NaN kept, overflow to Inf,
 * subnormals both ways (numpy's astype(float16) and back). */
uint16_t dp_f32_to_f16(float f);
float dp_f16_to_f32(uint16_t h);
/* Read one metadata value (e.g. "doppel.arch") into buf. DP_ERR_NOT_FOUND if absent. */
dp_status dp_checkpoint_meta(dp_ctx *ctx, const char *path, const char *key, char *buf, size_t buf_size);

#ifdef __cplusplus
}
#endif
#endif
