#include "test_ops_grad/cases.h"

/* Max pool: leaves in [-50,50) and eps 1e-2, so the maxima of a window are
 * far apart compared with the step (no argmax flips); the op is linear
 * between flips, so the larger step costs no accuracy. */
static dp_node *max_2x2(gc_env *e) {
    dp_pool_opts o = {.kernel_h = 2, .kernel_w = 2};
    return dp_maxpool2d(e->g, GC_IN(e, 2, 2, 4, 6), &o);
}
static dp_node *max_pad(gc_env *e) {
    dp_pool_opts o = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
    return dp_maxpool2d(e->g, GC_IN(e, 1, 2, 5, 5), &o);
}
static dp_node *max_same(gc_env *e) {
    dp_pool_opts o = {.kernel_h = 2, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .same = 1};
    return dp_maxpool2d(e->g, GC_IN(e, 1, 2, 5, 7), &o);
}
static dp_node *max_overlap(gc_env *e) {
    dp_pool_opts o = {.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1};
    return dp_maxpool2d(e->g, GC_IN(e, 1, 1, 5, 5), &o);
}
static dp_node *avg_2x2(gc_env *e) {
    dp_pool_opts o = {.kernel_h = 2, .kernel_w = 2};
    return dp_avgpool2d(e->g, GC_IN(e, 2, 2, 4, 6), &o);
}
static dp_node *avg_pad_incl(gc_env *e) {
    dp_pool_opts o = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .count_include_pad = 1};
    return dp_avgpool2d(e->g, GC_IN(e, 1, 2, 5, 6), &o);
}
static dp_node *avg_pad_excl(gc_env *e) {
    dp_pool_opts o = {.kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 1};
    return dp_avgpool2d(e->g, GC_IN(e, 1, 2, 5, 6), &o);
}
static dp_node *avg_same(gc_env *e) {
    dp_pool_opts o = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .same = 1};
    return dp_avgpool2d(e->g, GC_IN(e, 2, 1, 6, 5), &o);
}
static dp_node *gap(gc_env *e) { return dp_global_avgpool(e->g, GC_IN(e, 2, 3, 3, 4)); }
static dp_node *nearest(gc_env *e) { return dp_upsample_nearest(e->g, GC_IN(e, 1, 2, 3, 4), 2, 3); }
static dp_node *bilinear(gc_env *e) { return dp_upsample_bilinear(e->g, GC_IN(e, 1, 2, 3, 4), 2, 2, 0); }
static dp_node *bilinear_ac(gc_env *e) { return dp_upsample_bilinear(e->g, GC_IN(e, 2, 1, 3, 4), 3, 2, 1); }

const gc_case gc_cases_pool[] = {
    {"maxpool2d", "2x2", max_2x2, 0, 1e-2f, -50, 50},
    {"maxpool2d", "3x3 stride 2 pad 1", max_pad, 0, 1e-2f, -50, 50},
    {"maxpool2d", "2x3 stride 2 same", max_same, 0, 1e-2f, -50, 50},
    {"maxpool2d", "3x3 stride 1 overlapping", max_overlap, 0, 1e-2f, -50, 50},
    {"avgpool2d", "2x2", avg_2x2, 0, 0, 0, 0},
    {"avgpool2d", "3x3 s2 pad 1 count_include_pad", avg_pad_incl, 0, 0, 0, 0},
    {"avgpool2d", "3x2 s2x1 pad 1 exclude pad", avg_pad_excl, 0, 0, 0, 0},
    {"avgpool2d", "3x3 stride 2 same", avg_same, 0, 0, 0, 0},
    {"global_avgpool", "", gap, 0, 0, 0, 0},
    {"upsample_nearest", "2x3", nearest, 0, 0, 0, 0},
    {"upsample_bilinear", "2x2 half-pixel", bilinear, 0, 0, 0, 0},
    {"upsample_bilinear", "3x2 align_corners", bilinear_ac, 0, 0, 0, 0},
    {0},
};
