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
/* Load into an existing paramset (and optimiser): every tensor of ps must be
 * in the file with the same dtype and shape; the message names the first one
 * that is missing or different. Truncated or corrupt files fail with DP_ERR_FORMAT. */
dp_status dp_checkpoint_load(const char *path, dp_paramset *ps, dp_optim *optim);
/* Read one metadata value (e.g. "doppel.arch") into buf. DP_ERR_NOT_FOUND if absent. */
dp_status dp_checkpoint_meta(dp_ctx *ctx, const char *path, const char *key, char *buf, size_t buf_size);

#ifdef __cplusplus
}
#endif
#endif
