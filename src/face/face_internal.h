/* Internals of face/: the cascade as loaded (cascade.c) and evaluated
 * (detect.c). Not installed. */
#ifndef DOPPEL_FACE_INTERNAL_H
#define DOPPEL_FACE_INTERNAL_H

#include "core/internal.h"
#include "doppel/face.h"

enum { FC_HAAR = 1, FC_LBP = 2 };

#define FC_LBP_SUBSET 8 /* 256 categories / 32 bits */

typedef struct fc_rect {
    int x, y, w, h;
    float weight;
} fc_rect;

typedef struct fc_feature {
    fc_rect r[3]; /* Haar: up to 3 weighted rectangles (weight 0 = unused); LBP: r[0] is the cell */
    int nrect;
    int tilted;
} fc_feature;

/* A tree node: left/right > 0 are node indices within the tree, <= 0 are
 * leaves (-index), as in OpenCV's internalNodes. */
typedef struct fc_node {
    int left, right, feature;
    float threshold; /* Haar only */
} fc_node;

typedef struct fc_tree {
    int first_node, node_count, first_leaf;
} fc_tree;

typedef struct fc_stage {
    int first_tree, ntrees;
    float threshold; /* the file's value less 1e-5, as OpenCV */
} fc_stage;

struct dp_face_detector {
    dp_ctx *ctx;
    char *path;
    int kind;
    int win_w, win_h;
    int n_stages, n_trees, n_nodes, n_leaves, n_features;
    fc_stage *stages;
    fc_tree *trees;
    fc_node *nodes;
    uint32_t *subsets; /* LBP: FC_LBP_SUBSET words per node */
    float *leaves;
    fc_feature *features;
    int max_nodes_per_tree;
    int has_tilted;
};

#endif
