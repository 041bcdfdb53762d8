/* STUB: not implemented yet (returns DP_ERR_UNSUPPORTED at build time). Replace this whole file. */
#include "core/internal.h"

static dp_status stub_shape(dp_graph *g, dp_node *n) { return dp_node_error(g, n, DP_ERR_UNSUPPORTED, "not implemented yet"); }
static void stub_fwd(dp_graph *g, dp_node *n) { (void)g; (void)n; }

const dp_op_def dp_op_batchnorm2d = {"batchnorm2d", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_batchnorm2d(dp_graph *g, dp_node *x, dp_node *gamma, dp_node *beta, dp_tensor *running_mean, dp_tensor *running_var, float momentum, float eps) {
    dp_node *in[1] = {x};
    (void)gamma; (void)beta; (void)running_mean; (void)running_var; (void)momentum; (void)eps;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_BATCHNORM2D, 1, in));
}
