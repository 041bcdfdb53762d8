/* STUB: not implemented yet (returns DP_ERR_UNSUPPORTED at build time). Replace this whole file. */
#include "core/internal.h"

static dp_status stub_shape(dp_graph *g, dp_node *n) { return dp_node_error(g, n, DP_ERR_UNSUPPORTED, "not implemented yet"); }
static void stub_fwd(dp_graph *g, dp_node *n) { (void)g; (void)n; }

const dp_op_def dp_op_matmul = {"matmul", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_matmul(dp_graph *g, dp_node *a, dp_node *b, int trans_a, int trans_b) {
    dp_node *in[2] = {a, b};
    (void)trans_a; (void)trans_b;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_MATMUL, 2, in));
}
const dp_op_def dp_op_dense = {"dense", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_dense(dp_graph *g, dp_node *x, dp_node *w, dp_node *b) {
    dp_node *in[2] = {x, w};
    (void)b;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_DENSE, 2, in));
}
