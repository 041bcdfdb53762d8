/* STUB: not implemented yet (returns DP_ERR_UNSUPPORTED at build time). Replace this whole file. */
#include "core/internal.h"

static dp_status stub_shape(dp_graph *g, dp_node *n) { return dp_node_error(g, n, DP_ERR_UNSUPPORTED, "not implemented yet"); }
static void stub_fwd(dp_graph *g, dp_node *n) { (void)g; (void)n; }

const dp_op_def dp_op_bce_with_logits = {"bce_with_logits", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_bce_with_logits(dp_graph *g, dp_node *logits, dp_node *target) {
    dp_node *in[2] = {logits, target};
    
    return dp_node_finish(g, dp_node_begin(g, DP_OP_BCE_WITH_LOGITS, 2, in));
}
const dp_op_def dp_op_bce = {"bce", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_bce(dp_graph *g, dp_node *prob, dp_node *target) {
    dp_node *in[2] = {prob, target};
    
    return dp_node_finish(g, dp_node_begin(g, DP_OP_BCE, 2, in));
}
const dp_op_def dp_op_mse = {"mse", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_mse(dp_graph *g, dp_node *a, dp_node *b) {
    dp_node *in[2] = {a, b};
    
    return dp_node_finish(g, dp_node_begin(g, DP_OP_MSE, 2, in));
}
const dp_op_def dp_op_l1 = {"l1", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_l1(dp_graph *g, dp_node *a, dp_node *b) {
    dp_node *in[2] = {a, b};
    
    return dp_node_finish(g, dp_node_begin(g, DP_OP_L1, 2, in));
}
const dp_op_def dp_op_cross_entropy = {"cross_entropy", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_cross_entropy(dp_graph *g, dp_node *logits, dp_node *labels) {
    dp_node *in[2] = {logits, labels};
    
    return dp_node_finish(g, dp_node_begin(g, DP_OP_CROSS_ENTROPY, 2, in));
}
