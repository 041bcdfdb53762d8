/* STUB: not implemented yet (returns DP_ERR_UNSUPPORTED at build time). Replace this whole file. */
#include "core/internal.h"

static dp_status stub_shape(dp_graph *g, dp_node *n) { return dp_node_error(g, n, DP_ERR_UNSUPPORTED, "not implemented yet"); }
static void stub_fwd(dp_graph *g, dp_node *n) { (void)g; (void)n; }

const dp_op_def dp_op_conv2d = {"conv2d", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_conv2d(dp_graph *g, dp_node *x, dp_node *w, dp_node *b, const dp_conv_opts *opts) {
    dp_node *in[2] = {x, w};
    (void)b; (void)opts;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_CONV2D, 2, in));
}
const dp_op_def dp_op_conv_transpose2d = {"conv_transpose2d", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_conv_transpose2d(dp_graph *g, dp_node *x, dp_node *w, dp_node *b, const dp_conv_opts *opts) {
    dp_node *in[2] = {x, w};
    (void)b; (void)opts;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_CONV_TRANSPOSE2D, 2, in));
}
dp_node *dp_separable_conv2d(dp_graph *g, dp_node *x, dp_node *w_dw, dp_node *w_pw, dp_node *b, const dp_conv_opts *opts) {
    (void)w_pw; (void)b; (void)opts; dp_node *in[2] = {x, w_dw};
    return dp_node_finish(g, dp_node_begin(g, DP_OP_CONV2D, 2, in));
}
