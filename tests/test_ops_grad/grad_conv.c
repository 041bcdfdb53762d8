#include "test_ops_grad/cases.h"

#define OPTS(...) (&(dp_conv_opts){__VA_ARGS__})

/* ---------------------------------------------------------------- conv2d */
static dp_node *c_basic(gc_env *e) {
    return dp_conv2d(e->g, GC_IN(e, 2, 2, 5, 5), GC_PARAM(e, 3, 2, 3, 3), GC_PARAM(e, 3), NULL);
}
static dp_node *c_nobias_s2p1(gc_env *e) {
    return dp_conv2d(e->g, GC_IN(e, 1, 2, 6, 6), GC_PARAM(e, 2, 2, 3, 3), NULL, OPTS(.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1));
}
static dp_node *c_rect(gc_env *e) { /* non-square everything */
    return dp_conv2d(e->g, GC_IN(e, 1, 2, 5, 7), GC_PARAM(e, 2, 2, 2, 3), GC_PARAM(e, 2),
                     OPTS(.stride_h = 1, .stride_w = 2, .pad_h = 0, .pad_w = 1));
}
static dp_node *c_same_even_s2(gc_env *e) { /* k4 s2 on 7: total pad 3, 1 top/left and 2 bottom/right */
    return dp_conv2d(e->g, GC_IN(e, 1, 2, 7, 7), GC_PARAM(e, 2, 2, 4, 4), GC_PARAM(e, 2), OPTS(.stride_h = 2, .stride_w = 2, .same = 1));
}
static dp_node *c_same_even_s1(gc_env *e) { /* k2 s1: all the padding on the bottom/right */
    return dp_conv2d(e->g, GC_IN(e, 1, 1, 5, 5), GC_PARAM(e, 2, 1, 2, 2), NULL, OPTS(.same = 1));
}
static dp_node *c_dilation(gc_env *e) {
    return dp_conv2d(e->g, GC_IN(e, 1, 2, 7, 7), GC_PARAM(e, 2, 2, 3, 3), GC_PARAM(e, 2),
                     OPTS(.dilation_h = 2, .dilation_w = 2, .pad_h = 2, .pad_w = 1));
}
static dp_node *c_groups(gc_env *e) {
    return dp_conv2d(e->g, GC_IN(e, 1, 4, 5, 5), GC_PARAM(e, 4, 2, 3, 3), GC_PARAM(e, 4), OPTS(.groups = 2, .pad_h = 1, .pad_w = 1));
}
static dp_node *c_depthwise(gc_env *e) {
    return dp_conv2d(e->g, GC_IN(e, 2, 3, 5, 5), GC_PARAM(e, 3, 1, 3, 3), GC_PARAM(e, 3),
                     OPTS(.groups = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1));
}
static dp_node *c_depthwise_same(gc_env *e) {
    return dp_conv2d(e->g, GC_IN(e, 1, 2, 6, 6), GC_PARAM(e, 2, 1, 4, 4), NULL, OPTS(.groups = 2, .same = 1, .dilation_h = 2));
}
static dp_node *c_pointwise(gc_env *e) { /* 1x1: im2col skipped */
    return dp_conv2d(e->g, GC_IN(e, 2, 3, 4, 4), GC_PARAM(e, 2, 3, 1, 1), GC_PARAM(e, 2), NULL);
}
static dp_node *c_separable(gc_env *e) {
    return dp_separable_conv2d(e->g, GC_IN(e, 1, 3, 5, 5), GC_PARAM(e, 3, 1, 3, 3), GC_PARAM(e, 4, 3, 1, 1), GC_PARAM(e, 4),
                               OPTS(.same = 1));
}
/* 23x23 outputs = 529 positions: the image is cut into pieces (mid-row). */
static dp_node *c_pieces(gc_env *e) {
    return dp_conv2d(e->g, GC_IN(e, 1, 1, 25, 25), GC_PARAM(e, 2, 1, 3, 3), GC_PARAM(e, 2), NULL);
}
static dp_node *c_pieces_pointwise(gc_env *e) {
    return dp_conv2d(e->g, GC_IN(e, 2, 2, 23, 23), GC_PARAM(e, 2, 2, 1, 1), NULL, NULL);
}

static dp_node *c_whole_image(gc_env *e) { /* k4 on 4x4, no padding: a matrix product (DCGAN D's last layer) */
    return dp_conv2d(e->g, GC_IN(e, 3, 2, 4, 4), GC_PARAM(e, 2, 2, 4, 4), GC_PARAM(e, 2), NULL);
}

static dp_node *c_kslices(gc_env *e) { /* 32 images of 4x4 and 288 im2col rows: the GEMM's K is cut in slices */
    return dp_conv2d(e->g, GC_IN(e, 32, 32, 4, 4), GC_PARAM(e, 2, 32, 3, 3), GC_PARAM(e, 2), OPTS(.pad_h = 1, .pad_w = 1));
}

/* ---------------------------------------------------------------- conv_transpose2d */
static dp_node *t_basic(gc_env *e) {
    return dp_conv_transpose2d(e->g, GC_IN(e, 2, 2, 3, 3), GC_PARAM(e, 2, 3, 3, 3), GC_PARAM(e, 3), NULL);
}
static dp_node *t_s2_outpad(gc_env *e) {
    return dp_conv_transpose2d(e->g, GC_IN(e, 1, 2, 3, 3), GC_PARAM(e, 2, 2, 3, 3), NULL,
                               OPTS(.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .output_pad_h = 1, .output_pad_w = 1));
}
static dp_node *t_groups(gc_env *e) { /* groups 2, stride 2, output padding (rows only) */
    return dp_conv_transpose2d(e->g, GC_IN(e, 1, 4, 3, 3), GC_PARAM(e, 4, 2, 3, 3), GC_PARAM(e, 4),
                               OPTS(.groups = 2, .stride_h = 2, .stride_w = 2, .output_pad_h = 1));
}
static dp_node *t_depthwise(gc_env *e) {
    return dp_conv_transpose2d(e->g, GC_IN(e, 1, 3, 3, 3), GC_PARAM(e, 3, 1, 3, 3), GC_PARAM(e, 3),
                               OPTS(.groups = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1));
}
static dp_node *t_dilation(gc_env *e) {
    return dp_conv_transpose2d(e->g, GC_IN(e, 1, 2, 3, 4), GC_PARAM(e, 2, 2, 3, 2), NULL,
                               OPTS(.dilation_h = 2, .dilation_w = 3, .stride_w = 2, .output_pad_w = 2));
}
static dp_node *t_dcgan(gc_env *e) { /* k4 s2 p1 doubles the size */
    return dp_conv_transpose2d(e->g, GC_IN(e, 2, 3, 3, 3), GC_PARAM(e, 3, 2, 4, 4), GC_PARAM(e, 2),
                               OPTS(.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1));
}
static dp_node *t_from_1x1(gc_env *e) { /* DCGAN's first layer: k4 s1 p0 from a 1x1 input */
    return dp_conv_transpose2d(e->g, GC_IN(e, 3, 5, 1, 1), GC_PARAM(e, 5, 2, 4, 4), GC_PARAM(e, 2), NULL);
}
static dp_node *t_same(gc_env *e) {
    return dp_conv_transpose2d(e->g, GC_IN(e, 1, 2, 3, 3), GC_PARAM(e, 2, 2, 4, 4), NULL, OPTS(.stride_h = 2, .stride_w = 2, .same = 1));
}
static dp_node *t_pointwise(gc_env *e) {
    return dp_conv_transpose2d(e->g, GC_IN(e, 2, 3, 2, 3), GC_PARAM(e, 3, 2, 1, 1), GC_PARAM(e, 2), NULL);
}
static dp_node *t_pieces(gc_env *e) { /* 23x23 input positions: cut into pieces */
    return dp_conv_transpose2d(e->g, GC_IN(e, 1, 1, 23, 23), GC_PARAM(e, 1, 2, 2, 2), GC_PARAM(e, 2), NULL);
}

static dp_node *t_kslices(gc_env *e) { /* 288 rows of W^T x cols, in slices */
    return dp_conv_transpose2d(e->g, GC_IN(e, 32, 2, 4, 4), GC_PARAM(e, 2, 32, 3, 3), GC_PARAM(e, 32), OPTS(.pad_h = 1, .pad_w = 1));
}

const gc_case gc_cases_conv[] = {
    {"conv2d", "basic with bias", c_basic, 0, 0, 0, 0},
    {"conv2d", "stride 2 pad 1, no bias", c_nobias_s2p1, 0, 0, 0, 0},
    {"conv2d", "rectangular kernel/stride/pad", c_rect, 0, 0, 0, 0},
    {"conv2d", "same, k4 s2 (asymmetric)", c_same_even_s2, 0, 0, 0, 0},
    {"conv2d", "same, k2 s1 (asymmetric)", c_same_even_s1, 0, 0, 0, 0},
    {"conv2d", "dilation 2", c_dilation, 0, 0, 0, 0},
    {"conv2d", "groups 2", c_groups, 0, 0, 0, 0},
    {"conv2d", "depthwise s2", c_depthwise, 0, 0, 0, 0},
    {"conv2d", "depthwise same k4 dil 2", c_depthwise_same, 0, 0, 0, 0},
    {"conv2d", "1x1 pointwise", c_pointwise, 0, 0, 0, 0},
    {"conv2d", "separable (dw + pw)", c_separable, 0, 0, 0, 0},
    {"conv2d", "image cut into pieces", c_pieces, 0, 0, 0, 0},
    {"conv2d", "1x1 cut into pieces", c_pieces_pointwise, 0, 0, 0, 0},
    {"conv2d", "kernel = whole image", c_whole_image, 0, 0, 0, 0},
    {"conv2d", "im2col in K slices", c_kslices, 0, 0.05f, 0, 0}, /* linear in each leaf: a large eps is exact and rounds less */
    {"conv_transpose2d", "basic with bias", t_basic, 0, 0, 0, 0},
    {"conv_transpose2d", "s2 p1 output_padding 1", t_s2_outpad, 0, 0, 0, 0},
    {"conv_transpose2d", "groups 2 s2 output_padding", t_groups, 0, 0, 0, 0},
    {"conv_transpose2d", "depthwise s2 p1", t_depthwise, 0, 0, 0, 0},
    {"conv_transpose2d", "dilation 2x3, output_padding", t_dilation, 0, 0, 0, 0},
    {"conv_transpose2d", "k4 s2 p1 (DCGAN)", t_dcgan, 0, 0, 0, 0},
    {"conv_transpose2d", "k4 from 1x1 (DCGAN)", t_from_1x1, 0, 0, 0, 0},
    {"conv_transpose2d", "same s2", t_same, 0, 0, 0, 0},
    {"conv_transpose2d", "1x1", t_pointwise, 0, 0, 0, 0},
    {"conv_transpose2d", "input cut into pieces", t_pieces, 0, 0, 0, 0},
    {"conv_transpose2d", "W^T x cols in K slices", t_kslices, 0, 0.05f, 0, 0},
    {0},
};
