#include "test_ops_grad/cases.h"

static dp_node *mm_nn(gc_env *e) { return dp_matmul(e->g, GC_IN(e, 3, 4), GC_PARAM(e, 4, 5), 0, 0); }
static dp_node *mm_tn(gc_env *e) { return dp_matmul(e->g, GC_IN(e, 4, 3), GC_PARAM(e, 4, 5), 1, 0); }
static dp_node *mm_nt(gc_env *e) { return dp_matmul(e->g, GC_PARAM(e, 3, 4), GC_IN(e, 5, 4), 0, 1); }
static dp_node *mm_tt(gc_env *e) { return dp_matmul(e->g, GC_IN(e, 4, 3), GC_IN(e, 5, 4), 1, 1); }
/* Wider than one micro-kernel tile in every dimension (edges in M, N and K). */
static dp_node *mm_edges(gc_env *e) { return dp_matmul(e->g, GC_IN(e, 17, 9), GC_PARAM(e, 9, 35), 0, 0); }
static dp_node *dense_bias(gc_env *e) { return dp_dense(e->g, GC_IN(e, 3, 5), GC_PARAM(e, 4, 5), GC_PARAM(e, 4)); }
static dp_node *dense_nobias(gc_env *e) { return dp_dense(e->g, GC_IN(e, 2, 6), GC_PARAM(e, 3, 6), NULL); }
static dp_node *dense_wide(gc_env *e) { return dp_dense(e->g, GC_IN(e, 5, 7), GC_PARAM(e, 33, 7), GC_PARAM(e, 33)); }

const gc_case gc_cases_matmul[] = {
    {"matmul", "[3,4]x[4,5]", mm_nn, 0, 0, 0, 0},
    {"matmul", "trans_a", mm_tn, 0, 0, 0, 0},
    {"matmul", "trans_b", mm_nt, 0, 0, 0, 0},
    {"matmul", "trans_a and trans_b", mm_tt, 0, 0, 0, 0},
    {"matmul", "[17,9]x[9,35] (tile edges)", mm_edges, 0, 0, 0, 0},
    {"dense", "with bias", dense_bias, 0, 0, 0, 0},
    {"dense", "without bias", dense_nobias, 0, 0, 0, 0},
    {"dense", "33 outputs (tile edges)", dense_wide, 0, 0, 0, 0},
    {0},
};
