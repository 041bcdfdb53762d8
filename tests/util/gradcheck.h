/* Finite-difference gradient checking for doppel ops (tests only).
 *
 * A case builds a small graph from random leaves and returns one output node.
 * The harness then compares d(sum(out * R))/d(leaf) from dp_graph_backward
 * with central differences of the same sum, computed in double, for a sample
 * of the elements of every leaf. */
#ifndef DP_TEST_GRADCHECK_H
#define DP_TEST_GRADCHECK_H

#include <stdint.h>

#include "doppel/doppel.h"

typedef struct gc_env {
    dp_ctx *ctx;
    dp_graph *g;
    dp_paramset *ps;
    dp_rng rng;
    int n_leaves;
    dp_node *leaves[16];
    int n_fixed; /* inputs without gradient (labels, targets): filled by the harness too */
    dp_node *fixed[8];
    float fixed_lo[8], fixed_hi[8];
    int fixed_int[8];
    float lo, hi; /* range of leaf values (default -1..1) */
} gc_env;

/* A leaf input whose gradient is checked. */
dp_node *gc_input(gc_env *e, int ndim, const int64_t *shape);
/* A parameter (in e->ps) whose gradient is checked. */
dp_node *gc_param(gc_env *e, int ndim, const int64_t *shape);
/* A parameter tensor not used as a node (e.g. batch-norm running stats). */
dp_tensor *gc_buffer(gc_env *e, int ndim, const int64_t *shape, float value);
/* An input without gradient, uniform in [lo, hi) (integer-valued if as_int). */
dp_node *gc_fixed(gc_env *e, int ndim, const int64_t *shape, float lo, float hi, int as_int);

typedef struct gc_case {
    const char *op;                      /* the op-table name this case covers */
    const char *label;                   /* what variant it checks */
    dp_node *(*build)(gc_env *e);
    int training;                        /* run the graph in training mode */
    float eps;                           /* 0 = 1e-3 */
    float lo, hi;                        /* leaf value range; both 0 = -1..1 */
} gc_case;

/* Runs one case; returns 0 on success, else prints what differs and returns 1. */
int gc_run(const gc_case *c);

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define GC_IN(e, ...) gc_input(e, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))
#define GC_PARAM(e, ...) gc_param(e, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

#endif
