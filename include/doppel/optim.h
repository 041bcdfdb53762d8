/* doppel — optimisers, gradient clipping and learning-rate schedules. */
#ifndef DOPPEL_OPTIM_H
#define DOPPEL_OPTIM_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dp_optim_kind { DP_OPTIM_SGD = 0, DP_OPTIM_ADAM, DP_OPTIM_ADAMW } dp_optim_kind;

typedef enum dp_lr_kind {
    DP_LR_CONSTANT = 0,
    DP_LR_STEP,   /* lr * gamma^(floor(step / step_size)) */
    DP_LR_COSINE, /* cosine from lr to min_lr over total_steps */
} dp_lr_kind;

/* Steps count from 0 and include the warm-up: for step < warmup_steps the rate
 * is lr*step/warmup_steps (0 at step 0), afterwards the kind's formula on the
 * same step number; cosine goes from lr at step warmup_steps to min_lr at
 * total_steps and stays there (Hugging Face's convention). */
typedef struct dp_lr_schedule {
    dp_lr_kind kind;
    int warmup_steps; /* linear warm-up from 0 to lr first (any kind) */
    int step_size;    /* DP_LR_STEP: > 0 */
    float gamma;      /* DP_LR_STEP: > 0 */
    int total_steps;  /* DP_LR_COSINE: > 0, warm-up included */
    float min_lr;     /* DP_LR_COSINE: in [0, lr] */
} dp_lr_schedule;

typedef struct dp_optim_opts {
    dp_optim_kind kind;
    float lr;
    float momentum;     /* SGD */
    int nesterov;       /* SGD */
    float weight_decay; /* SGD and Adam: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2; /* Adam/AdamW; 0,0 → 0.9, 0.999 */
    float eps;          /* Adam/AdamW; 0 → 1e-8 */
    float clip_norm;    /* > 0: scale all gradients so their global L2 norm is at most this */
    float clip_value;   /* > 0: clamp each gradient element to [-v, v] */
    dp_lr_schedule schedule;
} dp_optim_opts;

typedef struct dp_optim dp_optim;

/* Optimises every trainable tensor of ps (buffers are skipped) that exists now:
 * build the model first. State is allocated here, once; dp_optim_step allocates
 * nothing. A parameter whose gradient buffer was never made is not updated.
 * Clipping (norm, then value) rewrites the gradient buffers in place. */
dp_status dp_optim_new(dp_paramset *ps, const dp_optim_opts *opts, dp_optim **out);
void dp_optim_free(dp_optim *o);
/* One update from the accumulated gradients; fails with DP_ERR_NUMERIC (and
 * changes nothing) if a gradient is NaN or Inf. */
dp_status dp_optim_step(dp_optim *o);
dp_status dp_optim_zero_grad(dp_optim *o);
int64_t dp_optim_steps(const dp_optim *o);
float dp_optim_lr(const dp_optim *o); /* the rate the next step will use */
/* Global L2 norm of the gradients before clipping, as seen by the last step. */
float dp_optim_last_grad_norm(const dp_optim *o);
const dp_optim_opts *dp_optim_options(const dp_optim *o);
/* The state tensors (moments), for checkpoints: names "<param>.<slot>". */
int dp_optim_state_count(const dp_optim *o);
dp_tensor *dp_optim_state_at(dp_optim *o, int i, const char **name);
dp_status dp_optim_set_steps(dp_optim *o, int64_t steps);
/* The paramset the optimiser was made for (NULL for a NULL handle). */
dp_paramset *dp_optim_paramset(const dp_optim *o);

/* The learning rate a schedule gives at a step (0-based). */
float dp_lr_at(const dp_lr_schedule *s, float base_lr, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
