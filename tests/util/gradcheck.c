#include "util/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill(dp_tensor *t, dp_rng *r, float lo, float hi, int as_int) {
    float *x = dp_tensor_f32(t);
    for (int64_t i = 0; i < dp_tensor_numel(t); i++) {
        float v = lo + (hi - lo) * dp_rng_uniform(r);
        x[i] = as_int ? floorf(v) : v;
    }
}

dp_node *gc_input(gc_env *e, int ndim, const int64_t *shape) {
    dp_node *n = dp_input(e->g, "x", ndim, shape);
    if (n && dp_input_requires_grad(e->g, n) == DP_OK && e->n_leaves < 16) e->leaves[e->n_leaves++] = n;
    return n;
}

dp_node *gc_param(gc_env *e, int ndim, const int64_t *shape) {
    char name[32];
    snprintf(name, sizeof name, "p%d", e->n_leaves);
    dp_tensor *t = NULL;
    if (dp_paramset_get_or_add(e->ps, name, ndim, shape, DP_PARAM_TRAINABLE, NULL, &t) != DP_OK) return NULL;
    fill(t, &e->rng, e->lo, e->hi, 0);
    dp_node *n = dp_param(e->g, t);
    if (n && e->n_leaves < 16) e->leaves[e->n_leaves++] = n;
    return n;
}

dp_tensor *gc_buffer(gc_env *e, int ndim, const int64_t *shape, float value) {
    char name[32];
    static int k = 0;
    snprintf(name, sizeof name, "buf%d", k++);
    dp_tensor *t = NULL;
    if (dp_paramset_get_or_add(e->ps, name, ndim, shape, DP_PARAM_BUFFER, NULL, &t) != DP_OK) return NULL;
    dp_tensor_fill(t, value);
    return t;
}

dp_node *gc_fixed(gc_env *e, int ndim, const int64_t *shape, float lo, float hi, int as_int) {
    dp_node *n = dp_input(e->g, "fixed", ndim, shape);
    if (n && e->n_fixed < 8) {
        e->fixed_lo[e->n_fixed] = lo;
        e->fixed_hi[e->n_fixed] = hi;
        e->fixed_int[e->n_fixed] = as_int;
        e->fixed[e->n_fixed++] = n;
    }
    return n;
}

/* sum(out * R) in double */
static double loss_of(dp_graph *g, dp_node *out, const float *R, int64_t n) {
    dp_graph_seed(g, 4242); /* same dropout mask every run */
    if (dp_graph_run(g) != DP_OK) return NAN;
    const float *y = dp_tensor_f32(dp_node_value(out));
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)y[i] * R[i];
    return s;
}

int gc_run(const gc_case *c) {
    gc_env e;
    memset(&e, 0, sizeof e);
    dp_ctx_opts o = {.threads = 1, .seed = 7};
    if (dp_ctx_new(&o, &e.ctx) != DP_OK) return 1;
    dp_graph_new(e.ctx, &e.g);
    dp_paramset_new(e.ctx, &e.ps);
    dp_rng_seed(&e.rng, 1234);
    e.lo = (c->lo || c->hi) ? c->lo : -1.0f;
    e.hi = (c->lo || c->hi) ? c->hi : 1.0f;
    int fail = 0;
    dp_node *out = c->build(&e);
    dp_node *R = out ? dp_input(e.g, "R", dp_tensor_ndim(dp_node_value(out)), dp_tensor_shape(dp_node_value(out))) : NULL;
    dp_node *loss = dp_sum(e.g, dp_mul(e.g, out, R), DP_AXIS_ALL, 0);
    if (dp_graph_mark_output(e.g, loss) != DP_OK || dp_graph_compile(e.g) != DP_OK) {
        printf("  [%s/%s] build failed: %s\n", c->op, c->label, dp_ctx_error(e.ctx));
        fail = 1;
        goto done;
    }
    dp_graph_set_training(e.g, c->training);
    /* Fill the leaves: inputs here (params were filled at creation). */
    for (int i = 0; i < e.n_leaves; i++)
        if (strcmp(dp_node_op_name(e.leaves[i]), "input") == 0) fill(dp_node_value(e.leaves[i]), &e.rng, e.lo, e.hi, 0);
    for (int i = 0; i < e.n_fixed; i++) fill(dp_node_value(e.fixed[i]), &e.rng, e.fixed_lo[i], e.fixed_hi[i], e.fixed_int[i]);
    int64_t nout = dp_tensor_numel(dp_node_value(out));
    float *Rv = dp_tensor_f32(dp_node_value(R));
    fill(dp_node_value(R), &e.rng, -1.0f, 1.0f, 0);
    dp_paramset_zero_grad(e.ps);
    dp_graph_seed(e.g, 4242);
    if (dp_graph_run(e.g) != DP_OK || dp_graph_backward(e.g, loss, e.n_leaves, e.leaves) != DP_OK) {
        printf("  [%s/%s] run failed: %s\n", c->op, c->label, dp_ctx_error(e.ctx));
        fail = 1;
        goto done;
    }
    float eps = c->eps > 0 ? c->eps : 1e-3f;
    int checked = 0;
    for (int l = 0; l < e.n_leaves && !fail; l++) {
        dp_tensor *v = dp_node_value(e.leaves[l]);
        dp_tensor *gt = dp_node_grad(e.leaves[l]);
        if (!gt) {
            printf("  [%s/%s] leaf %d got no gradient\n", c->op, c->label, l);
            fail = 1;
            break;
        }
        int64_t n = dp_tensor_numel(v);
        float *an = malloc(sizeof(float) * (size_t)n);
        memcpy(an, dp_tensor_f32(gt), sizeof(float) * (size_t)n); /* forward runs below must not disturb it */
        float *x = dp_tensor_f32(v);
        int64_t step = n > 48 ? n / 48 : 1;
        for (int64_t i = 0; i < n; i += step) {
            float keep = x[i];
            x[i] = keep + eps;
            double lp = loss_of(e.g, out, Rv, nout);
            x[i] = keep - eps;
            double lm = loss_of(e.g, out, Rv, nout);
            x[i] = keep;
            double num = (lp - lm) / (2.0 * eps), ana = an[i];
            double tol = 2e-3 + 2e-2 * fmax(fabs(num), fabs(ana));
            checked++;
            if (!(fabs(num - ana) <= tol)) {
                printf("  [%s/%s] leaf %d element %lld: analytic %.6g, numeric %.6g\n", c->op, c->label, l, (long long)i, ana, num);
                fail = 1;
                break;
            }
        }
        free(an);
    }
    if (!fail) printf("  gradient ok: %-18s %-28s (%d elements checked)\n", c->op, c->label, checked);
done:
    dp_graph_free(e.g);
    dp_paramset_free(e.ps);
    dp_ctx_free(e.ctx);
    return fail;
}
