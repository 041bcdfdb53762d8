#include "test_ops_grad/cases.h"

static dp_node *sum_all(gc_env *e) { return dp_sum(e->g, GC_IN(e, 2, 3, 4), DP_AXIS_ALL, 0); }
static dp_node *sum_axis(gc_env *e) { return dp_sum(e->g, GC_IN(e, 2, 3, 4), 1, 0); }
static dp_node *mean_axis(gc_env *e) { return dp_mean(e->g, GC_IN(e, 2, 3, 4), -1, 1); }
static dp_node *mean_all(gc_env *e) { return dp_mean(e->g, GC_IN(e, 5, 3), DP_AXIS_ALL, 1); }

const gc_case gc_cases_reduce[] = {
    {"sum", "all", sum_all, 0, 0, 0, 0},
    {"sum", "axis 1", sum_axis, 0, 0, 0, 0},
    {"mean", "axis -1 keepdim", mean_axis, 0, 0, 0, 0},
    {"mean", "all keepdim", mean_all, 0, 0, 0, 0},
    {0},
};
