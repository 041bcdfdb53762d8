/* PyTorch parity of the reference models: forward values, every parameter
 * gradient and the updated batch-norm statistics, against the float64 PyTorch
 * results stored in tests/ref/ by tools/make_torch_refs.py (run once with
 * /usr/bin/python3; this test needs neither torch nor ../shared).
 *
 * Weights, buffers and inputs are rebuilt here bit for bit from the formula the
 * tool documents (splitmix64 → uniform in [-1,1) → offset + scale*u → float32).
 *
 * Error measure, per tensor (a = doppel, b = reference):
 *   sampled elements:  max_j |a_j - b_j| / max(max|b| over the whole tensor, 1e-6)
 *   whole tensor:      |sum a - sum b| / max(|sum b|, ||b||_2)  and  | ||a||_2 - ||b||_2 | / ||b||_2
 * The tensor's error is the largest of the three; every one must be <= 1e-4.
 * DP_PARITY_VERBOSE=1 prints every tensor's error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doppel/doppel.h"

#define TOL 1e-4
#define REF_DIR DP_SOURCE_DIR "/tests/ref/"

/* ------------------------------------------------------------ reference files */
typedef struct ref_tensor {
    char name[128];
    int ndim;
    int64_t shape[4];
    double offset, scale;
    uint64_t seed;
    int used;
} ref_tensor;

typedef struct ref_values {
    char name[128];
    int n;
    float v[64];
} ref_values;

typedef struct ref_check {
    char label[192];
    int64_t numel;
    int ns;
    double sum, l2, maxabs;
    int64_t *idx;
    double *val;
    int used;
} ref_check;

typedef struct ref_file {
    char name[64];
    int batch;
    int nt, nv, nc;
    ref_tensor t[256];
    ref_values v[8];
    ref_check c[512];
} ref_file;

static void ref_free(ref_file *r) {
    if (!r) return;
    for (int i = 0; i < r->nc; i++) {
        free(r->c[i].idx);
        free(r->c[i].val);
    }
    free(r);
}

static ref_file *ref_load(const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", REF_DIR, file);
    FILE *f = fopen(path, "r");
    if (!f) {
        print_error("cannot open %s (regenerate with /usr/bin/python3 tools/make_torch_refs.py)\n", path);
        return NULL;
    }
    ref_file *r = calloc(1, sizeof *r);
    char line[4096];
    int ok = 1, ended = 0;
    if (!fgets(line, sizeof line, f) || strncmp(line, "doppel-ref 1", 12) != 0) ok = 0;
    while (ok && !ended && fgets(line, sizeof line, f)) {
        int k = 0;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (sscanf(line, "case %63s", r->name) == 1) continue;
        if (sscanf(line, "batch %d", &r->batch) == 1) continue;
        if (!strncmp(line, "end", 3)) {
            ended = 1;
        } else if (!strncmp(line, "tensor ", 7)) {
            if (r->nt == (int)(sizeof r->t / sizeof r->t[0])) { ok = 0; break; }
            ref_tensor *t = &r->t[r->nt++];
            const char *p = line + 7;
            unsigned long long seed;
            if (sscanf(p, "%127s %d%n", t->name, &t->ndim, &k) != 2 || t->ndim < 0 || t->ndim > 4) { ok = 0; break; }
            p += k;
            for (int d = 0; d < t->ndim; d++) {
                long long v;
                if (sscanf(p, "%lld%n", &v, &k) != 1) ok = 0;
                t->shape[d] = v;
                p += k;
            }
            if (!ok || sscanf(p, "%lf %lf %llu", &t->offset, &t->scale, &seed) != 3) { ok = 0; break; }
            t->seed = (uint64_t)seed;
        } else if (!strncmp(line, "values ", 7)) {
            if (r->nv == (int)(sizeof r->v / sizeof r->v[0])) { ok = 0; break; }
            ref_values *v = &r->v[r->nv++];
            const char *p = line + 7;
            if (sscanf(p, "%127s %d%n", v->name, &v->n, &k) != 2 || v->n < 0 || v->n > 64) { ok = 0; break; }
            p += k;
            for (int i = 0; i < v->n; i++) {
                if (sscanf(p, "%f%n", &v->v[i], &k) != 1) ok = 0;
                p += k;
            }
        } else if (!strncmp(line, "check ", 6)) {
            if (r->nc == (int)(sizeof r->c / sizeof r->c[0])) { ok = 0; break; }
            ref_check *c = &r->c[r->nc++];
            long long numel;
            if (sscanf(line + 6, "%191s %lld %d %lf %lf %lf", c->label, &numel, &c->ns, &c->sum, &c->l2, &c->maxabs) != 6 ||
                c->ns < 0 || c->ns > 100000) {
                ok = 0;
                break;
            }
            c->numel = numel;
            c->idx = calloc((size_t)c->ns + 1, sizeof *c->idx);
            c->val = calloc((size_t)c->ns + 1, sizeof *c->val);
            for (int i = 0; ok && i < c->ns; i++) {
                long long ix = 0;
                if (!fgets(line, sizeof line, f) || sscanf(line, "%lld %lf", &ix, &c->val[i]) != 2 || ix < 0 || ix >= numel) ok = 0;
                c->idx[i] = ix;
            }
        } else {
            ok = 0;
        }
    }
    fclose(f);
    if (!ok || !ended) {
        print_error("%s is corrupt or truncated (line: %s)\n", path, line);
        ref_free(r);
        return NULL;
    }
    return r;
}

/* The value formula of tools/make_torch_refs.py. */
static void ref_fill(float *dst, int64_t n, double offset, double scale, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        double u = ((double)(z >> 40) - 8388608.0) / 8388608.0;
        double t = scale * u; /* two statements: no fused multiply-add */
        double v = offset + t;
        dst[i] = (float)v;
    }
}

static int same_shape(const ref_tensor *rt, const dp_tensor *t) {
    if (rt->ndim != dp_tensor_ndim(t)) return 0;
    for (int d = 0; d < rt->ndim; d++)
        if (rt->shape[d] != dp_tensor_dim(t, d)) return 0;
    return 1;
}

/* A named tensor of the C side (inputs, outputs, input gradients). */
typedef struct named {
    const char *name;
    dp_tensor *t;
} named;

static dp_tensor *find_named(const named *tab, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (tab[i].name && !strcmp(tab[i].name, name)) return tab[i].t;
    return NULL;
}

/* Set every tensor of the file: parameters and buffers in ps, inputs in tab
 * (an input name may appear several times in tab: one per graph). Every
 * tensor of ps must be set. Returns the number of problems. */
static int ref_apply(ref_file *r, dp_paramset *ps, const named *inputs, int n_inputs) {
    int bad = 0;
    for (int i = 0; i < r->nt; i++) {
        ref_tensor *rt = &r->t[i];
        int hits = 0;
        dp_tensor *p = dp_paramset_find(ps, rt->name);
        if (p) {
            if (!same_shape(rt, p)) {
                print_error("%s: '%s' has another shape in doppel\n", r->name, rt->name);
                bad++;
                continue;
            }
            ref_fill(dp_tensor_f32(p), dp_tensor_numel(p), rt->offset, rt->scale, rt->seed);
            hits++;
        }
        for (int k = 0; k < n_inputs; k++) {
            if (strcmp(inputs[k].name, rt->name)) continue;
            if (!same_shape(rt, inputs[k].t)) {
                print_error("%s: input '%s' has another shape in doppel\n", r->name, rt->name);
                bad++;
                continue;
            }
            ref_fill(dp_tensor_f32(inputs[k].t), dp_tensor_numel(inputs[k].t), rt->offset, rt->scale, rt->seed);
            hits++;
        }
        if (!hits) {
            print_error("%s: the reference sets '%s', which doppel does not have\n", r->name, rt->name);
            bad++;
        }
        rt->used = hits;
    }
    for (int i = 0; i < r->nv; i++) {
        ref_values *v = &r->v[i];
        int hits = 0;
        for (int k = 0; k < n_inputs; k++) {
            if (strcmp(inputs[k].name, v->name)) continue;
            if (dp_tensor_copy_from(inputs[k].t, v->v, (size_t)v->n) != DP_OK) bad++;
            hits++;
        }
        if (!hits) {
            print_error("%s: the reference gives values for '%s', which doppel does not have\n", r->name, v->name);
            bad++;
        }
    }
    for (int i = 0; i < dp_paramset_count(ps); i++) {
        const char *name = dp_tensor_name(dp_paramset_at(ps, i));
        int found = 0;
        for (int k = 0; k < r->nt && !found; k++) found = !strcmp(r->t[k].name, name);
        if (!found) {
            print_error("%s: doppel's tensor '%s' is not in the reference\n", r->name, name);
            bad++;
        }
    }
    return bad;
}

static int verbose(void) {
    const char *v = getenv("DP_PARITY_VERBOSE");
    return v && *v && strcmp(v, "0");
}

/* The error of one tensor against one check (see the header comment). */
static double tensor_error(const ref_check *c, const dp_tensor *t) {
    const float *a = dp_tensor_f32_const(t);
    double sum = 0.0, sq = 0.0, worst = 0.0;
    for (int64_t i = 0; i < c->numel; i++) {
        sum += a[i];
        sq += (double)a[i] * a[i];
    }
    for (int j = 0; j < c->ns; j++) {
        double d = fabs((double)a[c->idx[j]] - c->val[j]);
        if (!(d <= worst)) worst = d; /* NaN sticks */
    }
    double e_el = worst / fmax(c->maxabs, 1e-6);
    double e_sum = fabs(sum - c->sum) / fmax(fmax(fabs(c->sum), c->l2), 1e-30);
    double e_l2 = fabs(sqrt(sq) - c->l2) / fmax(c->l2, 1e-30);
    double e = fmax(e_el, fmax(e_sum, e_l2));
    return isnan(e) || isnan(worst) || isnan(sum) ? INFINITY : e;
}

/* Check every "<phase>." record of the file. what: an output or input name in
 * tab, "grad:<param or input>", "value:<buffer>". Returns the number of
 * tensors over the tolerance (or not found); *worst gets the largest error. */
static int ref_check_phase(ref_file *r, const char *phase, dp_paramset *ps, const named *outputs, int n_out,
                           const named *grads, int n_grads, double *worst_out, int *n_checked) {
    size_t pl = strlen(phase);
    int bad = 0, n = 0;
    double worst = 0.0;
    const char *worst_label = "";
    for (int i = 0; i < r->nc; i++) {
        ref_check *c = &r->c[i];
        if (strncmp(c->label, phase, pl) || c->label[pl] != '.') continue;
        const char *what = c->label + pl + 1;
        dp_tensor *t = NULL;
        if (!strncmp(what, "grad:", 5)) {
            t = find_named(grads, n_grads, what + 5);
            if (!t) {
                dp_tensor *p = dp_paramset_find(ps, what + 5);
                t = p ? dp_param_grad(p) : NULL;
            }
        } else if (!strncmp(what, "value:", 6)) {
            t = dp_paramset_find(ps, what + 6);
        } else {
            t = find_named(outputs, n_out, what);
        }
        c->used = 1;
        if (!t || dp_tensor_numel(t) != c->numel) {
            print_error("%s: %s: %s\n", r->name, c->label, t ? "has another size in doppel" : "no such tensor in doppel");
            bad++;
            continue;
        }
        double e = tensor_error(c, t);
        n++;
        if (verbose() || !(e <= TOL))
            printf("    %-14s %-40s rel.err %.3g%s\n", r->name, c->label, e, e <= TOL ? "" : "   <-- over 1e-4");
        if (!(e <= TOL)) bad++;
        if (!(e <= worst)) {
            worst = e;
            worst_label = c->label;
        }
    }
    printf("  %-14s %-6s %3d tensors, largest relative error %.3g (%s)\n", r->name, phase, n, worst, worst_label);
    if (worst_out) *worst_out = fmax(*worst_out, worst);
    if (n_checked) *n_checked += n;
    return bad;
}

static int ref_all_used(const ref_file *r) {
    int missing = 0;
    for (int i = 0; i < r->nc; i++)
        if (!r->c[i].used) {
            print_error("%s: check '%s' was never compared\n", r->name, r->c[i].label);
            missing++;
        }
    return missing;
}

#define OK(expr)                                                                                  \
    do {                                                                                          \
        dp_status s_ = (expr);                                                                    \
        if (s_ != DP_OK) fail_msg("%s: %s (%s)", #expr, dp_status_name(s_), dp_ctx_error(ctx)); \
    } while (0)

static dp_ctx *new_ctx(void) {
    dp_ctx *ctx = NULL;
    dp_ctx_opts o = {0};
    o.seed = 7;
    assert_int_equal(dp_ctx_new(&o, &ctx), DP_OK);
    return ctx;
}

/* ------------------------------------------------------------ Meso-4 and MesoInception-4 */
typedef dp_node *(*model_fn)(dp_graph *, dp_paramset *, dp_node *);

static void run_meso(const char *file, model_fn model) {
    ref_file *r = ref_load(file);
    assert_non_null(r);
    const int64_t N = r->batch;
    dp_ctx *ctx = new_ctx();
    dp_paramset *ps = NULL;
    OK(dp_paramset_new(ctx, &ps));

    /* Eval graph and training graph over the same parameters. */
    dp_graph *ge = NULL, *gt = NULL;
    OK(dp_graph_new(ctx, &ge));
    OK(dp_graph_new(ctx, &gt));
    const int64_t xs[4] = {N, 3, 256, 256}, ys[2] = {N, 1};
    dp_node *xe = dp_input(ge, "x", 4, xs);
    dp_node *oute = model(ge, ps, xe);
    OK(dp_graph_mark_output(ge, oute));
    OK(dp_graph_compile(ge));

    dp_node *xt = dp_input(gt, "x", 4, xs);
    dp_node *y = dp_input(gt, "y", 2, ys);
    OK(dp_input_requires_grad(gt, xt));
    dp_node *outt = model(gt, ps, xt);
    dp_node *loss = dp_bce(gt, outt, y);
    OK(dp_graph_mark_output(gt, outt));
    OK(dp_graph_mark_output(gt, loss));
    OK(dp_graph_compile(gt));
    OK(dp_graph_set_training(gt, 1));
    OK(dp_graph_set_dropout(gt, 0));

    named inputs[] = {{"x", dp_node_value(xe)}, {"x", dp_node_value(xt)}, {"y", dp_node_value(y)}};
    assert_int_equal(ref_apply(r, ps, inputs, 3), 0);

    int bad = 0, n = 0;
    double worst = 0.0;
    OK(dp_graph_run(ge));
    named oe[] = {{"out", dp_node_value(oute)}};
    bad += ref_check_phase(r, "eval", ps, oe, 1, NULL, 0, &worst, &n);

    OK(dp_graph_invalidate(gt));
    OK(dp_graph_forward(gt, 1, &loss));
    OK(dp_paramset_zero_grad(ps));
    OK(dp_graph_backward(gt, loss, 0, NULL));
    named ot[] = {{"out", dp_node_value(outt)}, {"loss", dp_node_value(loss)}};
    named gx[] = {{"x", dp_node_grad(xt)}};
    bad += ref_check_phase(r, "train", ps, ot, 2, gx, 1, &worst, &n);
    bad += ref_all_used(r);

    dp_graph_free(ge);
    dp_graph_free(gt);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
    ref_free(r);
    assert_int_equal(bad, 0);
    assert_true(n > 0);
}

static void meso4_parity(void **state) {
    (void)state;
    run_meso("meso4.txt", dp_model_meso4);
}

static void mesoinception4_parity(void **state) {
    (void)state;
    run_meso("mesoinception4.txt", dp_model_mesoinception4);
}

/* ------------------------------------------------------------ DCGANs */
static void run_gan(const char *file, model_fn gen, model_fn dis, int nz, int ch, int hw) {
    ref_file *r = ref_load(file);
    assert_non_null(r);
    const int64_t N = r->batch;
    dp_ctx *ctx = new_ctx();
    dp_paramset *ps = NULL;
    OK(dp_paramset_new(ctx, &ps));
    dp_graph *g = NULL;
    OK(dp_graph_new(ctx, &g));
    const int64_t zs[4] = {N, nz, 1, 1}, xs[4] = {N, ch, hw, hw}, ls[2] = {N, 1};
    dp_node *z = dp_input(g, "z", 4, zs);
    dp_node *x = dp_input(g, "x", 4, xs);
    dp_node *ones = dp_input(g, "ones", 2, ls);
    dp_node *zeros = dp_input(g, "zeros", 2, ls);
    /* The PyTorch DCGAN example's iteration, in the same order. */
    dp_node *fake = gen(g, ps, z);
    dp_node *p_real = dis(g, ps, x);
    dp_node *p_fake = dis(g, ps, dp_stop_gradient(g, fake));
    dp_node *loss_d = dp_add(g, dp_bce(g, p_real, ones), dp_bce(g, p_fake, zeros));
    dp_node *p_gen = dis(g, ps, fake);
    dp_node *loss_g = dp_bce(g, p_gen, ones);
    dp_node *outs[] = {fake, p_real, p_fake, p_gen, loss_d, loss_g};
    for (int i = 0; i < 6; i++) OK(dp_graph_mark_output(g, outs[i]));
    OK(dp_graph_compile(g));
    OK(dp_graph_set_training(g, 1));
    OK(dp_tensor_fill(dp_node_value(ones), 1.0f));
    OK(dp_tensor_fill(dp_node_value(zeros), 0.0f));

    named inputs[] = {{"z", dp_node_value(z)}, {"x", dp_node_value(x)}};
    assert_int_equal(ref_apply(r, ps, inputs, 2), 0);

    int bad = 0, n = 0;
    double worst = 0.0;
    OK(dp_graph_invalidate(g));
    dp_node *targets[2] = {loss_d, loss_g};
    OK(dp_graph_forward(g, 2, targets));
    named of[] = {{"fake", dp_node_value(fake)},     {"p_real", dp_node_value(p_real)}, {"p_fake", dp_node_value(p_fake)},
                  {"p_gen", dp_node_value(p_gen)},   {"lossD", dp_node_value(loss_d)},  {"lossG", dp_node_value(loss_g)}};
    bad += ref_check_phase(r, "fwd", ps, of, 6, NULL, 0, &worst, &n);

    OK(dp_paramset_zero_grad(ps));
    OK(dp_graph_backward(g, loss_d, 0, NULL));
    bad += ref_check_phase(r, "lossD", ps, NULL, 0, NULL, 0, &worst, &n);
    OK(dp_paramset_zero_grad(ps));
    OK(dp_graph_backward(g, loss_g, 0, NULL));
    bad += ref_check_phase(r, "lossG", ps, NULL, 0, NULL, 0, &worst, &n);
    bad += ref_all_used(r);

    dp_graph_free(g);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
    ref_free(r);
    assert_int_equal(bad, 0);
    assert_true(n > 0);
}

static void dcgan64_parity(void **state) {
    (void)state;
    run_gan("dcgan64.txt", dp_model_dcgan64_g, dp_model_dcgan64_d, 100, 3, 64);
}

static void dcgan28_parity(void **state) {
    (void)state;
    run_gan("dcgan28.txt", dp_model_dcgan28_g, dp_model_dcgan28_d, 100, 1, 28);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(meso4_parity),
        cmocka_unit_test(mesoinception4_parity),
        cmocka_unit_test(dcgan28_parity),
        cmocka_unit_test(dcgan64_parity),
    };
    return cmocka_run_group_tests_name("PyTorch parity of the reference models", tests, NULL, NULL);
}
