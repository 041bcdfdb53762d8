/* STUB: not implemented yet (returns DP_ERR_UNSUPPORTED at build time). Replace this whole file. */
#include "core/internal.h"

static dp_status stub_shape(dp_graph *g, dp_node *n) { return dp_node_error(g, n, DP_ERR_UNSUPPORTED, "not implemented yet"); }
static void stub_fwd(dp_graph *g, dp_node *n) { (void)g; (void)n; }

const dp_op_def dp_op_maxpool2d = {"maxpool2d", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_maxpool2d(dp_graph *g, dp_node *x, const dp_pool_opts *opts) {
    dp_node *in[1] = {x};
    (void)opts;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_MAXPOOL2D, 1, in));
}
const dp_op_def dp_op_avgpool2d = {"avgpool2d", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_avgpool2d(dp_graph *g, dp_node *x, const dp_pool_opts *opts) {
    dp_node *in[1] = {x};
    (void)opts;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_AVGPOOL2D, 1, in));
}
const dp_op_def dp_op_global_avgpool = {"global_avgpool", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_global_avgpool(dp_graph *g, dp_node *x) {
    dp_node *in[1] = {x};
    
    return dp_node_finish(g, dp_node_begin(g, DP_OP_GLOBAL_AVGPOOL, 1, in));
}
const dp_op_def dp_op_upsample_nearest = {"upsample_nearest", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_upsample_nearest(dp_graph *g, dp_node *x, int scale_h, int scale_w) {
    dp_node *in[1] = {x};
    (void)scale_h; (void)scale_w;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_UPSAMPLE_NEAREST, 1, in));
}
const dp_op_def dp_op_upsample_bilinear = {"upsample_bilinear", stub_shape, stub_fwd, NULL, 0};
dp_node *dp_upsample_bilinear(dp_graph *g, dp_node *x, int scale_h, int scale_w, int align_corners) {
    dp_node *in[1] = {x};
    (void)scale_h; (void)scale_w; (void)align_corners;
    return dp_node_finish(g, dp_node_begin(g, DP_OP_UPSAMPLE_BILINEAR, 1, in));
}
