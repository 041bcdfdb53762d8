#include "test_ops_grad/cases.h"

static dp_node *add_same(gc_env *e) { return dp_add(e->g, GC_IN(e, 2, 3, 4), GC_IN(e, 2, 3, 4)); }
static dp_node *add_bcast(gc_env *e) { return dp_add(e->g, GC_IN(e, 2, 3, 4, 5), GC_PARAM(e, 3, 1, 1)); }
static dp_node *sub_bcast(gc_env *e) { return dp_sub(e->g, GC_IN(e, 4, 1), GC_IN(e, 3)); }
static dp_node *mul_bcast(gc_env *e) { return dp_mul(e->g, GC_IN(e, 2, 3, 4), GC_IN(e, 1, 4)); }
static dp_node *div_bcast(gc_env *e) {
    dp_node *b = dp_add(e->g, dp_mul(e->g, GC_IN(e, 3, 1), GC_IN(e, 3, 1)), GC_PARAM(e, 1)); /* keep it away from 0 */
    return dp_div(e->g, GC_IN(e, 3, 4), dp_add(e->g, b, dp_scale(e->g, GC_PARAM(e, 1), 0.0f)));
}
static dp_node *div_pos(gc_env *e) { return dp_div(e->g, GC_IN(e, 2, 5), dp_sigmoid(e->g, GC_IN(e, 2, 5))); }
static dp_node *scale(gc_env *e) { return dp_scale(e->g, GC_IN(e, 3, 5), -2.5f); }
static dp_node *relu(gc_env *e) { return dp_relu(e->g, GC_IN(e, 4, 6)); }
static dp_node *leaky(gc_env *e) { return dp_leaky_relu(e->g, GC_IN(e, 4, 6), 0.1f); }
static dp_node *elu(gc_env *e) { return dp_elu(e->g, GC_IN(e, 4, 6), 1.0f); }
static dp_node *tanh_(gc_env *e) { return dp_tanh(e->g, GC_IN(e, 4, 6)); }
static dp_node *sigmoid(gc_env *e) { return dp_sigmoid(e->g, GC_IN(e, 4, 6)); }
static dp_node *dropout_train(gc_env *e) { return dp_dropout(e->g, GC_IN(e, 8, 8), 0.3f); }

const gc_case gc_cases_elementwise[] = {
    {"add", "same shape", add_same, 0, 0, 0, 0},
    {"add", "broadcast per channel", add_bcast, 0, 0, 0, 0},
    {"sub", "broadcast [4,1]-[3]", sub_bcast, 0, 0, 0, 0},
    {"mul", "broadcast [2,3,4]*[1,4]", mul_bcast, 0, 0, 0, 0},
    {"div", "broadcast", div_bcast, 0, 0, 0.5f, 1.5f},
    {"div", "same shape", div_pos, 0, 0, 0, 0},
    {"scale", "-2.5", scale, 0, 0, 0, 0},
    {"relu", "", relu, 0, 0, 0, 0},
    {"leaky_relu", "slope 0.1", leaky, 0, 0, 0, 0},
    {"elu", "alpha 1", elu, 0, 0, 0, 0},
    {"tanh", "", tanh_, 0, 0, 0, 0},
    {"sigmoid", "", sigmoid, 0, 0, 0, 0},
    {"dropout", "p 0.3, training", dropout_train, 1, 0, 0, 0},
    {0},
};
