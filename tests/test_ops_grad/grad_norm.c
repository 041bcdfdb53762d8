#include "test_ops_grad/cases.h"

/* x [2,3,3,4]: 24 values per channel, enough for smooth batch statistics. */
static dp_node *bn_train_affine(gc_env *e) {
    dp_tensor *rm = gc_buffer(e, 1, SHAPE(3), 0.0f), *rv = gc_buffer(e, 1, SHAPE(3), 1.0f);
    return dp_batchnorm2d(e->g, GC_IN(e, 2, 3, 3, 4), GC_PARAM(e, 3), GC_PARAM(e, 3), rm, rv, 0.1f, 1e-5f);
}
static dp_node *bn_train_plain(gc_env *e) {
    return dp_batchnorm2d(e->g, GC_IN(e, 2, 3, 3, 4), NULL, NULL, NULL, NULL, 0.1f, 1e-5f);
}
static dp_node *bn_train_gamma_only(gc_env *e) {
    return dp_batchnorm2d(e->g, GC_IN(e, 3, 2, 2, 3), GC_PARAM(e, 2), NULL, NULL, NULL, 0.1f, 1e-3f);
}
static dp_node *bn_train_beta_only(gc_env *e) {
    return dp_batchnorm2d(e->g, GC_IN(e, 3, 2, 2, 3), NULL, GC_PARAM(e, 2), NULL, NULL, 0.1f, 1e-3f);
}
static dp_node *bn_eval_affine(gc_env *e) {
    dp_tensor *rm = gc_buffer(e, 1, SHAPE(3), 0.2f), *rv = gc_buffer(e, 1, SHAPE(3), 0.5f);
    return dp_batchnorm2d(e->g, GC_IN(e, 2, 3, 3, 4), GC_PARAM(e, 3), GC_PARAM(e, 3), rm, rv, 0.1f, 1e-5f);
}
static dp_node *bn_eval_plain(gc_env *e) {
    dp_tensor *rm = gc_buffer(e, 1, SHAPE(4), -0.3f), *rv = gc_buffer(e, 1, SHAPE(4), 2.0f);
    return dp_batchnorm2d(e->g, GC_IN(e, 2, 4, 2, 2), NULL, NULL, rm, rv, 0.1f, 1e-5f);
}
/* Eval without running statistics normalises with the batch's: full gradient. */
static dp_node *bn_eval_batch_stats(gc_env *e) {
    return dp_batchnorm2d(e->g, GC_IN(e, 2, 3, 3, 4), GC_PARAM(e, 3), GC_PARAM(e, 3), NULL, NULL, 0.1f, 1e-5f);
}
/* Followed by a nonlinearity, so d(loss)/d(y) is not just R. */
static dp_node *bn_train_then_tanh(gc_env *e) {
    dp_tensor *rm = gc_buffer(e, 1, SHAPE(2), 0.0f), *rv = gc_buffer(e, 1, SHAPE(2), 1.0f);
    return dp_tanh(e->g, dp_batchnorm2d(e->g, GC_IN(e, 4, 2, 2, 2), GC_PARAM(e, 2), GC_PARAM(e, 2), rm, rv, 0.3f, 1e-5f));
}

/* Followed by relu / leaky_relu: the norm's forward and backward do the
 * activation's too (multi_output_pass in graph.c, bn_act_* in kernels/ew.h). */
static dp_node *bn_train_then_leaky(gc_env *e) {
    dp_tensor *rm = gc_buffer(e, 1, SHAPE(3), 0.0f), *rv = gc_buffer(e, 1, SHAPE(3), 1.0f);
    return dp_leaky_relu(e->g, dp_batchnorm2d(e->g, GC_IN(e, 2, 3, 3, 4), GC_PARAM(e, 3), GC_PARAM(e, 3), rm, rv, 0.1f, 1e-5f),
                         0.2f);
}
static dp_node *bn_train_then_relu(gc_env *e) {
    return dp_relu(e->g, dp_batchnorm2d(e->g, GC_IN(e, 2, 3, 3, 4), GC_PARAM(e, 3), GC_PARAM(e, 3), NULL, NULL, 0.1f, 1e-5f));
}
static dp_node *bn_eval_then_relu(gc_env *e) {
    dp_tensor *rm = gc_buffer(e, 1, SHAPE(3), 0.2f), *rv = gc_buffer(e, 1, SHAPE(3), 0.5f);
    return dp_relu(e->g, dp_batchnorm2d(e->g, GC_IN(e, 2, 3, 3, 4), GC_PARAM(e, 3), GC_PARAM(e, 3), rm, rv, 0.1f, 1e-5f));
}

const gc_case gc_cases_norm[] = {
    {"batchnorm2d", "training, affine, running stats", bn_train_affine, 1, 0, 0, 0},
    {"batchnorm2d", "training, no affine", bn_train_plain, 1, 0, 0, 0},
    {"batchnorm2d", "training, gamma only", bn_train_gamma_only, 1, 0, 0, 0},
    {"batchnorm2d", "training, beta only", bn_train_beta_only, 1, 0, 0, 0},
    {"batchnorm2d", "training, then tanh", bn_train_then_tanh, 1, 0, 0, 0},
    {"batchnorm2d", "training, then leaky_relu (fused)", bn_train_then_leaky, 1, 0, 0, 0},
    {"batchnorm2d", "training, then relu (fused)", bn_train_then_relu, 1, 0, 0, 0},
    {"batchnorm2d", "eval, then relu (fused)", bn_eval_then_relu, 0, 0, 0, 0},
    {"batchnorm2d", "eval, affine, running stats", bn_eval_affine, 0, 0, 0, 0},
    {"batchnorm2d", "eval, no affine", bn_eval_plain, 0, 0, 0, 0},
    {"batchnorm2d", "eval, no running stats", bn_eval_batch_stats, 0, 0, 0, 0},
    {0},
};
