/* In-process A/B of a code change: one process runs a workload in short rounds,
 * switching an experiment global between rounds, so both variants see the same
 * minutes of a noisy machine (docs/bench.md, "session 9": the median of the
 * per-round ratios moved by ~2 % where alternating processes moved by ~15 %).
 *
 * Not built by CMake. To use it:
 *   1. in the code under test add `int dp_xp = 1;` (one definition, any file of
 *      libdoppel) and take the new path only `if (dp_xp)`; remove both before
 *      committing;
 *   2. cmake --build build --target doppel
 *   3. cc -O2 -Iinclude -Isrc -o /tmp/ab bench/ab_inproc.c build/libdoppel.a \
 *        $(pkg-config --libs libavformat libavcodec libswscale libavutil libpng libjpeg libwebp libxml-2.0 libcjson) \
 *        -lhdf5_serial -lm -lpthread -ldl
 *   4. /tmp/ab meso N THREADS [ROUNDS] | /tmp/ab train N THREADS [ROUNDS] | /tmp/ab sgemm THREADS [ROUNDS]
 *      | /tmp/ab d28|g28|d64|g64 N THREADS [ROUNDS]  (a DCGAN discriminator / generator alone, training
 *        mode, forward + backward: D with BCE on labels, G with the mean square of its output)
 * It prints both rates (medians), the median of B/A (B: dp_xp = 1) with its quartiles, and how far
 * the outputs of the two variants differ. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "doppel/doppel.h"

extern int dp_xp;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    dp_ctx *ctx;
    dp_graph *g;
    dp_node *x, *out, *loss;
    float *a, *b, *c;
    int kind, n; /* 0 meso inference, 1 meso training step (forward + backward), 2 sgemm n^3, 3 a DCGAN net's step */
} work;

static void run(work *w) {
    if (w->kind == 0) dp_graph_run(w->g);
    else if (w->kind == 1 || w->kind == 3) {
        dp_graph_invalidate(w->g);
        dp_graph_forward(w->g, 1, &w->loss);
        dp_graph_backward(w->g, w->loss, 0, NULL);
    } else
        dp_sgemm(w->ctx, 0, 0, w->n, w->n, w->n, 1.0f, w->a, w->n, w->b, w->n, 0.0f, w->c, w->n);
}
static const float *result(const work *w, long *len) {
    if (w->kind == 2) return *len = (long)w->n * w->n, w->c;
    const dp_node *o = w->kind ? w->loss : w->out;
    *len = (long)dp_tensor_numel(dp_node_value((dp_node *)o));
    return dp_tensor_f32(dp_node_value((dp_node *)o));
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s meso|train|d28|g28|d64|g64 N THREADS [ROUNDS] | sgemm THREADS [ROUNDS]\n", argv[0]);
        return 2;
    }
    work w = {0};
    w.kind = !strcmp(argv[1], "train") ? 1 : !strcmp(argv[1], "sgemm") ? 2 : 0;
    const int gan = argv[1][0] == 'd' ? 1 : argv[1][0] == 'g' ? 2 : 0, big = gan && argv[1][1] == '6';
    if (gan) w.kind = 3;
    int k = 2, T, rounds;
    if (w.kind == 2) w.n = 1024;
    else w.n = atoi(argv[k++]);
    T = atoi(argv[k++]);
    rounds = argc > k ? atoi(argv[k]) : 12;
    if (rounds < 2 || rounds > 200 || T < 1 || w.n < 1) return 2;
    dp_ctx_opts o = {0};
    o.threads = T, o.seed = 1;
    if (dp_ctx_new(&o, &w.ctx)) return 1;
    if (w.kind == 2) {
        size_t bytes = sizeof(float) * (size_t)w.n * (size_t)w.n;
        w.a = malloc(bytes), w.b = malloc(bytes), w.c = malloc(bytes);
        if (!w.a || !w.b || !w.c) return 1;
        /* random values, as the bench's sgemm1024 has: a Zen 3 VM ran repeating
         * values (i % 13) ~15 % faster at 1 thread (80 against 68 GFLOP/s) */
        uint64_t r = 88172645463325252ull;
        for (long i = 0; i < 2 * (long)w.n * w.n; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            float v = (float)(r >> 40) * (2.0f / 16777216.0f) - 1.0f;
            if (i & 1) w.b[i / 2] = v;
            else w.a[i / 2] = v;
        }
    } else if (gan) {
        dp_paramset *ps;
        if (dp_paramset_new(w.ctx, &ps) || dp_graph_new(w.ctx, &w.g)) return 1;
        int64_t sh[4] = {w.n, gan == 1 ? (big ? 3 : 1) : 100, gan == 1 ? (big ? 64 : 28) : 1, gan == 1 ? (big ? 64 : 28) : 1};
        w.x = dp_input(w.g, "x", 4, sh);
        dp_node *y = NULL;
        if (gan == 1) {
            w.out = big ? dp_model_dcgan64_d(w.g, ps, w.x) : dp_model_dcgan28_d(w.g, ps, w.x);
            y = dp_input(w.g, "y", 2, (int64_t[]){w.n, 1});
            w.loss = dp_bce(w.g, w.out, y);
        } else {
            w.out = big ? dp_model_dcgan64_g(w.g, ps, w.x) : dp_model_dcgan28_g(w.g, ps, w.x);
            dp_tensor *ov = dp_node_value(w.out);
            dp_node *t = dp_input(w.g, "t", ov->ndim, ov->shape); /* zeros */
            w.loss = dp_mse(w.g, w.out, t);
        }
        if (dp_graph_mark_output(w.g, w.loss) || dp_graph_compile(w.g)) return 1;
        dp_graph_set_training(w.g, 1);
        dp_paramset_init(ps, 3);
        if (y)
            for (int i = 0; i < w.n; i++) dp_tensor_f32(dp_node_value(y))[i] = (float)(i & 1);
        float *xd = dp_tensor_f32(dp_node_value(w.x));
        for (long i = 0; i < (long)dp_tensor_numel(dp_node_value(w.x)); i++) xd[i] = (float)(i % 17) * 0.05f - 0.4f;
    } else {
        dp_paramset *ps;
        if (dp_paramset_new(w.ctx, &ps) || dp_graph_new(w.ctx, &w.g)) return 1;
        w.x = dp_input(w.g, "x", 4, (int64_t[]){w.n, 3, 256, 256});
        w.out = dp_model_meso4(w.g, ps, w.x);
        if (w.kind == 1) {
            dp_node *y = dp_input(w.g, "y", 2, (int64_t[]){w.n, 1});
            w.loss = dp_bce(w.g, w.out, y);
            if (dp_graph_mark_output(w.g, w.loss) || dp_graph_compile(w.g)) return 1;
            dp_graph_set_training(w.g, 1);
            dp_graph_set_dropout(w.g, 0);
            float *yd = dp_tensor_f32(dp_node_value(y));
            for (int i = 0; i < w.n; i++) yd[i] = (float)(i & 1);
        } else if (dp_graph_mark_output(w.g, w.out) || dp_graph_set_no_grad(w.g) || dp_graph_compile(w.g)) {
            return 1;
        }
        dp_paramset_init(ps, 3);
        float *xd = dp_tensor_f32(dp_node_value(w.x));
        for (long i = 0; i < (long)w.n * 3 * 256 * 256; i++) xd[i] = (float)(i % 17) * 0.05f - 0.4f;
    }
    double *r[2] = {calloc((size_t)rounds, sizeof(double)), calloc((size_t)rounds, sizeof(double))};
    double *q = calloc((size_t)rounds, sizeof(double)), diff = 0.0;
    float *first = NULL;
    if (!r[0] || !r[1] || !q) return 1;
    for (int i = 0; i < 4; i++) dp_xp = i & 1, run(&w); /* warm both */
    for (int i = 0; i < rounds; i++)
        for (int v = 0; v < 2; v++) {
            dp_xp = v;
            int it = 0;
            double t0 = now(), t;
            do {
                run(&w);
                it++;
                t = now() - t0;
            } while (t < 0.15);
            r[v][i] = (w.kind == 2 ? 2.0 * w.n * w.n * w.n * 1e-9 : w.n) * it / t;
            long len;
            const float *res = result(&w, &len);
            if (i == 0 && v == 0) {
                first = malloc(sizeof(float) * (size_t)len);
                if (first) memcpy(first, res, sizeof(float) * (size_t)len);
            } else if (i == 0 && first) {
                for (long e = 0; e < len; e++) {
                    double d = (double)res[e] - first[e];
                    if ((d < 0 ? -d : d) > diff) diff = d < 0 ? -d : d;
                }
            }
        }
    for (int i = 0; i < rounds; i++) q[i] = r[1][i] / r[0][i];
    qsort(q, (size_t)rounds, sizeof(double), cmpd);
    qsort(r[0], (size_t)rounds, sizeof(double), cmpd);
    qsort(r[1], (size_t)rounds, sizeof(double), cmpd);
    printf("%s n=%d threads=%d: A %.4g, B %.4g %s; B/A median %.3f (q25 %.3f, q75 %.3f), %d rounds; max |B - A| %.3g\n",
           argv[1], w.n, T, r[0][rounds / 2], r[1][rounds / 2], w.kind == 2 ? "GFLOP/s" : "img/s", q[rounds / 2],
           q[rounds / 4], q[3 * rounds / 4], rounds, diff);
    return 0;
}
