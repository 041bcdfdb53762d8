#include "test_ops_grad/cases.h"

static dp_node *bcel(gc_env *e) { return dp_bce_with_logits(e->g, GC_IN(e, 4, 5), gc_fixed(e, 2, SHAPE(4, 5), 0, 1, 0)); }
/* The target is differentiable too (the loss is linear in it). */
static dp_node *bcel_both(gc_env *e) { return dp_bce_with_logits(e->g, GC_IN(e, 3, 4), GC_IN(e, 3, 4)); }
static dp_node *bce(gc_env *e) {
    return dp_bce(e->g, dp_sigmoid(e->g, GC_IN(e, 4, 5)), gc_fixed(e, 2, SHAPE(4, 5), 0, 1, 0));
}
static dp_node *bce_both(gc_env *e) {
    return dp_bce(e->g, dp_sigmoid(e->g, GC_IN(e, 3, 4)), dp_sigmoid(e->g, GC_IN(e, 3, 4)));
}
static dp_node *mse(gc_env *e) { return dp_mse(e->g, GC_IN(e, 3, 4), GC_IN(e, 3, 4)); }
static dp_node *mse_4d(gc_env *e) { return dp_mse(e->g, GC_IN(e, 2, 1, 2, 3), GC_PARAM(e, 2, 1, 2, 3)); }
/* Leaves in [1,2): a - (-b) >= 2 and -b - a <= -2 stay far from the kink. */
static dp_node *l1_pos(gc_env *e) { return dp_l1(e->g, GC_IN(e, 3, 4), dp_scale(e->g, GC_IN(e, 3, 4), -1.0f)); }
static dp_node *l1_neg(gc_env *e) { return dp_l1(e->g, dp_scale(e->g, GC_IN(e, 3, 4), -1.0f), GC_IN(e, 3, 4)); }
static dp_node *ce(gc_env *e) { return dp_cross_entropy(e->g, GC_IN(e, 4, 5), gc_fixed(e, 1, SHAPE(4), 0, 5, 1)); }
/* Labels in {-1..5} with C = 5: rows labelled -1 or 5 are ignored. */
static dp_node *ce_ignore(gc_env *e) { return dp_cross_entropy(e->g, GC_IN(e, 8, 5), gc_fixed(e, 1, SHAPE(8), -1, 6, 1)); }
/* Sharper logits (|x| up to 4): probabilities near 0 and 1. */
static dp_node *ce_sharp(gc_env *e) {
    return dp_cross_entropy(e->g, dp_scale(e->g, GC_IN(e, 3, 6), 4.0f), gc_fixed(e, 1, SHAPE(3), 0, 6, 1));
}

const gc_case gc_cases_loss[] = {
    {"bce_with_logits", "fixed target", bcel, 0, 0, 0, 0},
    {"bce_with_logits", "logits and target", bcel_both, 0, 0, -3, 3},
    {"bce", "prob via sigmoid, fixed target", bce, 0, 0, -2, 2},
    {"bce", "prob and target via sigmoid", bce_both, 0, 0, -2, 2},
    {"mse", "2-D", mse, 0, 0, 0, 0},
    {"mse", "4-D, param", mse_4d, 0, 0, 0, 0},
    {"l1", "a > b", l1_pos, 0, 0, 1, 2},
    {"l1", "a < b", l1_neg, 0, 0, 1, 2},
    {"cross_entropy", "[4,5]", ce, 0, 0, 0, 0},
    {"cross_entropy", "ignored labels", ce_ignore, 0, 0, 0, 0},
    {"cross_entropy", "sharp logits", ce_sharp, 0, 0, 0, 0},
    {0},
};
