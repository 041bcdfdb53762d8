#include "test_ops_grad/cases.h"

static dp_node *reshape(gc_env *e) { return dp_reshape(e->g, dp_tanh(e->g, GC_IN(e, 2, 3, 4)), 2, SHAPE(-1, 6)); }
static dp_node *flatten(gc_env *e) { return dp_tanh(e->g, dp_flatten(e->g, GC_IN(e, 2, 3, 2, 2))); }
static dp_node *concat1(gc_env *e) {
    dp_node *xs[3] = {GC_IN(e, 2, 1, 3), GC_IN(e, 2, 2, 3), GC_PARAM(e, 2, 3, 3)};
    return dp_concat(e->g, 3, xs, 1);
}
static dp_node *slice(gc_env *e) { return dp_slice(e->g, GC_IN(e, 3, 5, 2), 1, 1, 4); }
/* The value of stop_gradient(x) depends on x but no gradient flows back, so
 * differences cannot check x; test_graph.c checks that x gets none. */
static dp_node *stopgrad_param(gc_env *e) {
    dp_node *x = dp_tanh(e->g, dp_input(e->g, "c", 2, SHAPE(3, 3)));
    return dp_mul(e->g, dp_stop_gradient(e->g, x), GC_PARAM(e, 3, 3));
}
const gc_case gc_cases_shape[] = {
    {"reshape", "[2,3,4] to [-1,6]", reshape, 0, 0, 0, 0},
    {"reshape", "flatten", flatten, 0, 0, 0, 0},
    {"concat", "axis 1, three inputs", concat1, 0, 0, 0, 0},
    {"slice", "axis 1 [1,4)", slice, 0, 0, 0, 0},
    {"stop_gradient", "gradient reaches the other operand", stopgrad_param, 0, 0, 0, 0},
    {0},
};

