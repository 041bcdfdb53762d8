/* STUB: not implemented yet (returns DP_ERR_UNSUPPORTED at build time). Replace this whole file. */
#include "core/internal.h"

static dp_status stub_shape(dp_graph *g, dp_node *n) { return dp_node_error(g, n, DP_ERR_UNSUPPORTED, "not implemented yet"); }
static void stub_fwd(dp_graph *g, dp_node *n) { (void)g; (void)n; }

const dp_op_def dp_op_softmax = {"softmax", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_softmax(dp_graph *g, dp_node *x, int axis) {
    dp_node *in[1] = {x};
    (void)axis;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_SOFTMAX, 1, in));
}
const dp_op_def dp_op_log_softmax = {"log_softmax", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_log_softmax(dp_graph *g, dp_node *x, int axis) {
    dp_node *in[1] = {x};
    (void)axis;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_LOG_SOFTMAX, 1, in));
}
