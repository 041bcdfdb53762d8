#include "test_ops_grad/cases.h"

static dp_node *sm_last(gc_env *e) { return dp_softmax(e->g, GC_IN(e, 3, 5), -1); }
static dp_node *sm_mid(gc_env *e) { return dp_softmax(e->g, GC_IN(e, 2, 4, 3), 1); }
static dp_node *sm_first(gc_env *e) { return dp_softmax(e->g, GC_IN(e, 4, 3), 0); }
static dp_node *lsm_last(gc_env *e) { return dp_log_softmax(e->g, GC_IN(e, 3, 5), -1); }
static dp_node *lsm_mid(gc_env *e) { return dp_log_softmax(e->g, GC_IN(e, 2, 3, 2, 2), -3); }
/* Large logits: the max shift must keep exp() finite. */
static dp_node *lsm_large(gc_env *e) { return dp_log_softmax(e->g, dp_scale(e->g, GC_IN(e, 2, 4), 3.0f), 1); }

const gc_case gc_cases_softmax[] = {
    {"softmax", "axis -1", sm_last, 0, 0, 0, 0},
    {"softmax", "axis 1 of 3", sm_mid, 0, 0, 0, 0},
    {"softmax", "axis 0", sm_first, 0, 0, 0, 0},
    {"log_softmax", "axis -1", lsm_last, 0, 0, 0, 0},
    {"log_softmax", "axis -3 of 4", lsm_mid, 0, 0, 0, 0},
    {"log_softmax", "shifted logits", lsm_large, 0, 0, 30, 32},
    {0},
};
