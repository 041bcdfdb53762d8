/* doppel bench — doppel's speed beside PyTorch and ONNX Runtime, measured in
 * the same command on the same machine.
 *
 * For every workload the driver runs, rep after rep, interleaved:
 *     doppel (a child: `doppel bench --worker W`), PyTorch, ONNX Runtime
 * and keeps the median rate of each and the peak resident set of each child
 * (wait4's ru_maxrss: every workload gets a fresh process, so the figure is the
 * workload's own). The driver itself computes nothing and creates no context.
 *
 * Workloads (docs/bench.md): the five of ../shared/peers/torch_bench.py (same
 * batch sizes, optimiser settings, warm-up and timed iterations; random weights
 * and inputs, no data loading), one 1024x1024 sgemm, and every compute layer
 * of Meso-4 (batch 32), DCGAN-64 (batch 64) and DCGAN-28 (batch 128), forward
 * and backward, so a slow layer shows itself. The layer shapes live in one table below; the PyTorch
 * layer peer (bench/torch_layer.py) receives them on its command line.
 *
 * FLOPs are counted from the layer shapes: 2 * multiply-adds for a forward
 * convolution or dense layer; the backward pass costs one forward for the
 * weight gradient and one more for the input gradient (skipped for a
 * network's first layer, whose input needs none). Normalisation, activations
 * and pooling count as zero. */
#define _DEFAULT_SOURCE /* wait4 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "cli/bench_scan.h"
#include "core/internal.h" /* dp_sgemm: the sgemm1024 workload times the kernel itself */
#include "kernels/peak.h"
#include "core/parse.h"
#include "doppel/doppel.h"

#ifndef DP_SOURCE_DIR
#define DP_SOURCE_DIR "."
#endif

#define PEAK_GFLOPS 447.0 /* AVX-512 FMA loop, 2 threads (../shared/peers/README.md) */
#define PYTHON "/usr/bin/python3" /* Debian's python3-torch lives there (not in a pyenv python) */
#define MAX_WORKLOADS 96
#define MAX_TIMED 200

extern char **environ;

static const char *const usage_text =
    "usage: doppel bench [options]\n"
    "\n"
    "Run each workload in doppel and in the peers (PyTorch, ONNX Runtime), interleaved\n"
    "(doppel, pytorch, ort, doppel, ...), and print the median rate of each, the ratio\n"
    "doppel / best peer, doppel's GFLOP/s and share of the machine's peak, and the peak RSS\n"
    "of every process.\n"
    "\n"
    "options:\n"
    "  --only W1,W2,...   run these workloads only (see --list; a name ending in '*' is a prefix)\n"
    "  --list             list the workloads and exit\n"
    "  --threads N        threads for doppel and for every peer (default 2)\n"
    "  --reps N           runs of each workload and peer; the median is reported (default 3)\n"
    "  --no-peers         run doppel only\n"
    "  --json             one JSON object per workload and line on stdout (also every run's\n"
    "                     rate, and each run's ratio to the best peer of the same run)\n"
    "  --peers DIR        the peers' scripts (default " DP_SOURCE_DIR "/../shared/peers)\n"
    "  --bench-dir DIR    doppel's bench folder: layer/sgemm peers, bench/peers/ with\n"
    "                     onnxruntime-node and meso4.onnx (default " DP_SOURCE_DIR "/bench)\n"
    "  --timeout S        stop a process that runs longer than S seconds (default 900)\n"
    "  --peak GFLOPS      the machine's peak for the %peak column (default: measured at the\n"
    "                     start: FMA loop bursts over ~2 s, on --threads threads and on one)\n"
    "\n"
    "The peers run in their fair configuration (../shared/peers/README.md): PyTorch with\n"
    "channels-last, glibc malloc tuned, OpenBLAS told its kernel; ONNX Runtime from\n"
    "onnxruntime-node. 'make bench' installs them (scripts/install-peers.sh) and runs this.\n"
    "A peer that is missing is reported as null with a note. Exit status: 0 ok, 1 a doppel\n"
    "run failed, 2 bad usage.\n";

/* ------------------------------------------------------------ workloads */
typedef enum { L_CONV, L_DECONV, L_BN, L_RELU, L_LRELU, L_MAXPOOL } layer_kind;
static const char *const layer_kind_name[] = {"conv", "deconv", "bn", "relu", "lrelu", "maxpool"};

typedef struct layer_spec {
    const char *name, *what;
    layer_kind kind;
    int n, ci, h, w;              /* input */
    int co, k, stride, pad, bias; /* conv/deconv; maxpool: k (stride = k) */
    float slope;                  /* leaky ReLU */
    int train;                    /* forward in training mode (batch statistics) */
    int first;                    /* the network's first layer: its input needs no gradient */
} layer_spec;

/* Meso-4 at batch 32 (meso_inf32, meso_train32): the four convolutions and the
 * memory-bound layers of the first (largest) block. DCGAN-64 at batch 64: every
 * convolution, the largest batch norms and activation. DCGAN-28 at batch 128:
 * every convolution, both of G's batch norms, D's batch norm and activation.
 * The model workloads' FLOPs are summed from these rows (by name prefix). */
static const layer_spec layers[] = {
    {"meso_conv1", "f.0 conv 3->8 3x3 pad 1 +bias, 256x256", L_CONV, 32, 3, 256, 256, 8, 3, 1, 1, 1, 0, 0, 1},
    {"meso_relu1", "f.1 ReLU, 8x256x256", L_RELU, 32, 8, 256, 256, 8, 0, 0, 0, 0, 0, 0, 0},
    {"meso_bn1", "f.2 BatchNorm(8), 256x256", L_BN, 32, 8, 256, 256, 8, 0, 0, 0, 0, 0, 0, 0},
    {"meso_pool1", "f.3 max-pool 2, 8x256x256", L_MAXPOOL, 32, 8, 256, 256, 8, 2, 2, 0, 0, 0, 0, 0},
    {"meso_conv2", "f.4 conv 8->8 5x5 pad 2 +bias, 128x128", L_CONV, 32, 8, 128, 128, 8, 5, 1, 2, 1, 0, 0, 0},
    {"meso_conv3", "f.8 conv 8->16 5x5 pad 2 +bias, 64x64", L_CONV, 32, 8, 64, 64, 16, 5, 1, 2, 1, 0, 0, 0},
    {"meso_conv4", "f.12 conv 16->16 5x5 pad 2 +bias, 32x32", L_CONV, 32, 16, 32, 32, 16, 5, 1, 2, 1, 0, 0, 0},
    {"dcgan64_g_deconv1", "G.0 deconv 100->512 4x4 s1 p0, 1x1->4x4", L_DECONV, 64, 100, 1, 1, 512, 4, 1, 0, 0, 0, 1, 1},
    {"dcgan64_g_deconv2", "G.3 deconv 512->256 4x4 s2 p1, 4x4->8x8", L_DECONV, 64, 512, 4, 4, 256, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan64_g_deconv3", "G.6 deconv 256->128 4x4 s2 p1, 8x8->16x16", L_DECONV, 64, 256, 8, 8, 128, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan64_g_deconv4", "G.9 deconv 128->64 4x4 s2 p1, 16x16->32x32", L_DECONV, 64, 128, 16, 16, 64, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan64_g_deconv5", "G.12 deconv 64->3 4x4 s2 p1, 32x32->64x64", L_DECONV, 64, 64, 32, 32, 3, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan64_g_bn4", "G.10 BatchNorm(64), 32x32", L_BN, 64, 64, 32, 32, 64, 0, 0, 0, 0, 0, 1, 0},
    {"dcgan64_d_conv1", "D.0 conv 3->64 4x4 s2 p1, 64x64->32x32", L_CONV, 64, 3, 64, 64, 64, 4, 2, 1, 0, 0, 1, 1},
    {"dcgan64_d_lrelu1", "D.1 LeakyReLU 0.2, 64x32x32", L_LRELU, 64, 64, 32, 32, 64, 0, 0, 0, 0, 0.2f, 1, 0},
    {"dcgan64_d_conv2", "D.2 conv 64->128 4x4 s2 p1, 32x32->16x16", L_CONV, 64, 64, 32, 32, 128, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan64_d_bn2", "D.3 BatchNorm(128), 16x16", L_BN, 64, 128, 16, 16, 128, 0, 0, 0, 0, 0, 1, 0},
    {"dcgan64_d_conv3", "D.5 conv 128->256 4x4 s2 p1, 16x16->8x8", L_CONV, 64, 128, 16, 16, 256, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan64_d_conv4", "D.8 conv 256->512 4x4 s2 p1, 8x8->4x4", L_CONV, 64, 256, 8, 8, 512, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan64_d_conv5", "D.11 conv 512->1 4x4 s1 p0, 4x4->1x1", L_CONV, 64, 512, 4, 4, 1, 4, 1, 0, 0, 0, 1, 0},
    {"dcgan28_g_deconv1", "G.0 deconv 100->256 7x7 s1 p0, 1x1->7x7", L_DECONV, 128, 100, 1, 1, 256, 7, 1, 0, 0, 0, 1, 1},
    {"dcgan28_g_bn1", "G.1 BatchNorm(256), 7x7", L_BN, 128, 256, 7, 7, 256, 0, 0, 0, 0, 0, 1, 0},
    {"dcgan28_g_deconv2", "G.3 deconv 256->128 4x4 s2 p1, 7x7->14x14", L_DECONV, 128, 256, 7, 7, 128, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan28_g_bn2", "G.4 BatchNorm(128), 14x14", L_BN, 128, 128, 14, 14, 128, 0, 0, 0, 0, 0, 1, 0},
    {"dcgan28_g_deconv3", "G.6 deconv 128->1 4x4 s2 p1, 14x14->28x28", L_DECONV, 128, 128, 14, 14, 1, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan28_d_conv1", "D.0 conv 1->64 4x4 s2 p1, 28x28->14x14", L_CONV, 128, 1, 28, 28, 64, 4, 2, 1, 0, 0, 1, 1},
    {"dcgan28_d_lrelu1", "D.1 LeakyReLU 0.2, 64x14x14", L_LRELU, 128, 64, 14, 14, 64, 0, 0, 0, 0, 0.2f, 1, 0},
    {"dcgan28_d_conv2", "D.2 conv 64->128 4x4 s2 p1, 14x14->7x7", L_CONV, 128, 64, 14, 14, 128, 4, 2, 1, 0, 0, 1, 0},
    {"dcgan28_d_bn2", "D.3 BatchNorm(128), 7x7", L_BN, 128, 128, 7, 7, 128, 0, 0, 0, 0, 0, 1, 0},
    {"dcgan28_d_conv3", "D.5 conv 128->1 7x7 s1 p0, 7x7->1x1", L_CONV, 128, 128, 7, 7, 1, 7, 1, 0, 0, 0, 1, 0},
};
#define N_LAYERS ((int)(sizeof layers / sizeof layers[0]))

static int conv_out(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

/* Forward FLOPs (2 * multiply-adds) of a layer, for its whole batch. */
static double layer_fwd_flops(const layer_spec *l) {
    double n = l->n, ci = l->ci, co = l->co, kk = (double)l->k * l->k;
    if (l->kind == L_CONV) {
        double ho = conv_out(l->h, l->k, l->stride, l->pad), wo = conv_out(l->w, l->k, l->stride, l->pad);
        return 2.0 * n * co * ho * wo * ci * kk;
    }
    if (l->kind == L_DECONV) return 2.0 * n * ci * l->h * l->w * co * kk;
    return 0.0;
}
/* Backward: the weight gradient costs one forward, the input gradient another. */
static double layer_bwd_flops(const layer_spec *l) { return layer_fwd_flops(l) * (l->first ? 1.0 : 2.0); }

typedef enum { W_MESO_INF, W_MESO_TRAIN, W_DCGAN64, W_DCGAN28, W_SGEMM, W_LAYER, W_SCAN } wkind;

typedef struct workload {
    char name[48];
    char what[96];
    const char *unit;
    wkind kind;
    int batch;                  /* units per timed iteration (img/s: the batch; it/s: 1) */
    const layer_spec *layer;    /* W_LAYER */
    int bwd;                    /* W_LAYER: time the backward pass */
    double flops;               /* per timed iteration */
    const char *torch_mode;     /* torch_bench.py mode (NULL: the layer/sgemm peer, or none) */
    int torch_layer, torch_sgemm;
    int ort_batch;              /* 0: no ONNX Runtime run */
} workload;

static workload wl[MAX_WORKLOADS];
static int n_wl;

static void sum_flops(const layer_spec *ls, int n, const char *prefix, double *fwd, double *first) {
    *fwd = *first = 0;
    for (int i = 0; i < n; i++) {
        if (prefix && strncmp(ls[i].name, prefix, strlen(prefix)) != 0) continue;
        double f = layer_fwd_flops(&ls[i]);
        *fwd += f;
        if (ls[i].first) *first += f;
    }
}

/* One DCGAN iteration of the PyTorch example: D(real) and D(G(z).detach()) with
 * backward to D (no input gradient at D's first layer), G(z), then D(G(z)) with
 * backward through D's inputs only into G: 8 F_D - 2 F_D1 + 3 F_G - F_G1. The
 * PyTorch example also computes D's weight gradients in that last pass and
 * throws them away (D.zero_grad() comes before they are used); doppel's bench,
 * like doppel's GAN trainer, does not compute them (F_D less). */
static double dcgan_flops(double fd, double fd1, double fg, double fg1) { return 8 * fd - 2 * fd1 + 3 * fg - fg1; }

static void add_workload(const char *name, const char *what, const char *unit, wkind kind, int batch, double flops,
                         const char *torch_mode, int ort_batch) {
    workload *w = &wl[n_wl++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(w->what, sizeof w->what, "%s", what);
    w->unit = unit;
    w->kind = kind;
    w->batch = batch;
    w->flops = flops;
    w->torch_mode = torch_mode;
    w->ort_batch = ort_batch;
}

static void build_workloads(void) {
    double mf, mf1, gf, gf1, df, df1;
    n_wl = 0;
    sum_flops(layers, N_LAYERS, "meso_", &mf, &mf1);
    const double meso_img = (mf + 2.0 * 32 * (1024 * 16 + 16)) / 32; /* + the dense head, per image */
    const double meso_img1 = mf1 / 32;                                 /* f.0, per image */
    add_workload("meso_inf1", "Meso-4 inference, batch 1", "img/s", W_MESO_INF, 1, meso_img, "meso_inf1", 1);
    add_workload("meso_inf32", "Meso-4 inference, batch 32", "img/s", W_MESO_INF, 32, 32 * meso_img, "meso_inf32", 32);
    add_workload("meso_train32", "Meso-4 training step (BCE, Adam 1e-3), batch 32", "img/s", W_MESO_TRAIN, 32,
                 32 * (3 * meso_img - meso_img1), "meso_train32", 0);
    sum_flops(layers, N_LAYERS, "dcgan64_g_", &gf, &gf1);
    sum_flops(layers, N_LAYERS, "dcgan64_d_", &df, &df1);
    add_workload("dcgan64", "DCGAN 64x64 iteration (D real+fake, G; Adam 2e-4 b 0.5), batch 64", "it/s", W_DCGAN64, 1,
                 dcgan_flops(df, df1, gf, gf1), "dcgan64", 0);
    sum_flops(layers, N_LAYERS, "dcgan28_g_", &gf, &gf1);
    sum_flops(layers, N_LAYERS, "dcgan28_d_", &df, &df1);
    add_workload("dcgan28", "DCGAN 28x28x1 iteration, batch 128", "it/s", W_DCGAN28, 1, dcgan_flops(df, df1, gf, gf1),
                 "dcgan28", 0);
    workload *w = &wl[n_wl];
    add_workload("sgemm1024", "C = A B, 1024x1024x1024 float32 (dp_sgemm; peer torch.mm)", "GFLOP/s", W_SGEMM, 0,
                 2.0 * 1024 * 1024 * 1024, NULL, 0);
    w->torch_sgemm = 1;
    for (int i = 0; i < N_LAYERS; i++)
        for (int b = 0; b < 2; b++) {
            char name[48], what[96];
            snprintf(name, sizeof name, "%s_%s", layers[i].name, b ? "bwd" : "fwd");
            snprintf(what, sizeof what, "%s, batch %d, %s%s", layers[i].what, layers[i].n, b ? "backward" : "forward",
                     layers[i].kind != L_BN || b ? "" : layers[i].train ? " (batch statistics)" : " (running statistics)");
            w = &wl[n_wl];
            add_workload(name, what, "img/s", W_LAYER, layers[i].n,
                         b ? layer_bwd_flops(&layers[i]) : layer_fwd_flops(&layers[i]), NULL, 0);
            w->layer = &layers[i];
            w->bwd = b;
            w->torch_layer = 1;
        }
    /* video scanning (src/cli/bench_scan.c) */
    add_workload("scan480", "doppel scan, 640x480 H.264, every frame analysed", "frames/s", W_SCAN, 1, 0, NULL, 0);
    add_workload("scan720", "doppel scan, 1280x720 H.264, every frame analysed", "frames/s", W_SCAN, 1, 0, NULL, 0);
}

static const workload *find_workload(const char *name) {
    for (int i = 0; i < n_wl; i++)
        if (!strcmp(wl[i].name, name)) return &wl[i];
    return NULL;
}

/* ------------------------------------------------------------ the worker: one workload in doppel */
typedef struct worker {
    dp_ctx *ctx;
    dp_graph *g, *g2; /* DCGAN: g = G, g2 = D */
    dp_paramset *ps, *ps2;
    dp_optim *o1, *o2;
    dp_node *x, *z, *out, *loss, *loss_g, *t, *seed;
    dp_rng rng;
    float *a, *b, *c; /* sgemm */
    int n;
    const workload *w;
} worker;

static void fill_normal(dp_rng *r, float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = dp_rng_normal(r);
}
static void fill_tensor(dp_rng *r, dp_tensor *t) { fill_normal(r, dp_tensor_f32(t), dp_tensor_numel(t)); }

static dp_status worker_step(worker *k) {
    dp_status s = DP_OK;
    switch (k->w->kind) {
    case W_MESO_INF: return dp_graph_run(k->g);
    case W_MESO_TRAIN:
        if ((s = dp_graph_invalidate(k->g)) || (s = dp_graph_forward(k->g, 1, &k->loss)) || (s = dp_optim_zero_grad(k->o1)) ||
            (s = dp_graph_backward(k->g, k->loss, 0, NULL)))
            return s;
        return dp_optim_step(k->o1);
    case W_DCGAN64:
    case W_DCGAN28: {
        /* The PyTorch example's order: D on real, D on fake (detached), D step; D on fake, backward into G, G step. */
        dp_tensor *x = dp_node_value(k->x), *t = dp_node_value(k->t), *fake = dp_node_value(k->out);
        const size_t xb = (size_t)dp_tensor_numel(x) * sizeof(float);
        fill_tensor(&k->rng, dp_node_value(k->z)); /* a fresh z each iteration, as the PyTorch example */
        if ((s = dp_graph_invalidate(k->g)) || (s = dp_graph_forward(k->g, 1, &k->out)) || (s = dp_optim_zero_grad(k->o2)))
            return s;
        for (int pass = 0; pass < 3; pass++) { /* real, fake for D, fake for G */
            memcpy(dp_tensor_f32(x), pass == 0 ? k->a : dp_tensor_f32(fake), xb);
            /* The G pass needs only dLoss/dfake, not D's weight gradients (as src/gan/train.c) */
            if ((s = dp_tensor_fill(t, pass == 1 ? 0.0f : 1.0f)) || (s = dp_graph_invalidate(k->g2)) ||
                (s = dp_graph_forward(k->g2, 1, &k->loss)) ||
                (s = pass == 2 ? dp_graph_backward(k->g2, k->loss, 1, &k->x) : dp_graph_backward(k->g2, k->loss, 0, NULL)))
                return s;
            if (pass == 1 && (s = dp_optim_step(k->o2))) return s;
        }
        memcpy(dp_tensor_f32(dp_node_value(k->seed)), dp_tensor_f32(dp_node_grad(k->x)), xb); /* dLoss_G / dfake */
        if ((s = dp_graph_forward(k->g, 1, &k->loss_g)) || (s = dp_optim_zero_grad(k->o1)) ||
            (s = dp_graph_backward(k->g, k->loss_g, 0, NULL)))
            return s;
        return dp_optim_step(k->o1);
    }
    case W_SGEMM:
        dp_sgemm(k->ctx, 0, 0, k->n, k->n, k->n, 1.0f, k->a, k->n, k->b, k->n, 0.0f, k->c, k->n);
        return DP_OK;
    case W_LAYER: return k->w->bwd ? dp_graph_backward(k->g, k->loss, 0, NULL) : dp_graph_run(k->g);
    case W_SCAN: break; /* bench_scan_worker */
    }
    return DP_ERR_ARG;
}

static dp_node *build_layer(dp_graph *g, dp_paramset *ps, const layer_spec *l, dp_node *x) {
    dp_conv_opts co = {0};
    co.stride_h = co.stride_w = l->stride;
    co.pad_h = co.pad_w = l->pad;
    switch (l->kind) {
    case L_CONV: return dp_nn_conv2d(g, ps, "layer", x, l->co, l->k, l->k, &co, l->bias, NULL);
    case L_DECONV: return dp_nn_deconv2d(g, ps, "layer", x, l->co, l->k, l->k, &co, l->bias, NULL);
    case L_BN: return dp_nn_batchnorm2d(g, ps, "layer", x, 0.1f, 1e-5f);
    case L_RELU: return dp_relu(g, x);
    case L_LRELU: return dp_leaky_relu(g, x, l->slope);
    case L_MAXPOOL: {
        dp_pool_opts po = {0};
        po.kernel_h = po.kernel_w = l->k;
        return dp_maxpool2d(g, x, &po);
    }
    }
    return NULL;
}

static dp_status worker_build(worker *k, int threads) {
    const workload *w = k->w;
    dp_status s;
    dp_ctx_opts co = {0};
    co.threads = threads;
    co.seed = 1;
    if ((s = dp_ctx_new(&co, &k->ctx))) return s;
    dp_rng_seed(&k->rng, 7);
    if (w->kind == W_SGEMM) {
        k->n = 1024;
        size_t bytes = (size_t)k->n * k->n * sizeof(float);
        k->a = aligned_alloc(64, bytes);
        k->b = aligned_alloc(64, bytes);
        k->c = aligned_alloc(64, bytes);
        if (!k->a || !k->b || !k->c) return dp_error(k->ctx, DP_ERR_NOMEM, "sgemm: out of memory");
        fill_normal(&k->rng, k->a, (int64_t)k->n * k->n);
        fill_normal(&k->rng, k->b, (int64_t)k->n * k->n);
        memset(k->c, 0, bytes);
        return DP_OK;
    }
    if ((s = dp_paramset_new(k->ctx, &k->ps)) || (s = dp_paramset_new(k->ctx, &k->ps2)) || (s = dp_graph_new(k->ctx, &k->g)))
        return s;
    dp_graph *g = k->g;
    switch (w->kind) {
    case W_MESO_INF:
    case W_MESO_TRAIN: {
        const int64_t n = w->batch;
        k->x = dp_input(g, "x", 4, (int64_t[]){n, 3, 256, 256});
        k->out = dp_model_meso4(g, k->ps, k->x);
        if (w->kind == W_MESO_INF) {
            if ((s = dp_graph_mark_output(g, k->out)) || (s = dp_graph_set_no_grad(g)) || (s = dp_graph_compile(g))) return s;
        } else {
            dp_node *y = dp_input(g, "y", 2, (int64_t[]){n, 1});
            k->loss = dp_bce(g, k->out, y);
            if ((s = dp_graph_mark_output(g, k->loss)) || (s = dp_graph_compile(g)) || (s = dp_graph_set_training(g, 1)))
                return s;
            float *t = dp_tensor_f32(dp_node_value(y));
            for (int64_t i = 0; i < n; i++) t[i] = (float)dp_rng_below(&k->rng, 2);
            dp_optim_opts oo = {0};
            oo.kind = DP_OPTIM_ADAM;
            oo.lr = 1e-3f;
            if ((s = dp_optim_new(k->ps, &oo, &k->o1))) return s;
        }
        fill_tensor(&k->rng, dp_node_value(k->x));
        return DP_OK;
    }
    case W_DCGAN64:
    case W_DCGAN28: {
        /* Two graphs, as PyTorch runs the example: G, and one D that runs three
         * times (real, fake for D, fake for G), so only one D pass's activations
         * and gradients exist at a time. D's input gradient from the third pass
         * seeds G's backward through loss_G = sum(fake * seed) (d/dfake = seed).
         * D's passes compute their input gradient every time (x requires it
         * for the third): 2 x d_conv1's input gradient more than PyTorch. */
        const int big = w->kind == W_DCGAN64;
        const int64_t n = big ? 64 : 128, c = big ? 3 : 1, hw = big ? 64 : 28;
        dp_paramset *pg = k->ps, *pd = k->ps2;
        k->z = dp_input(g, "z", 4, (int64_t[]){n, 100, 1, 1});
        k->out = big ? dp_model_dcgan64_g(g, pg, k->z) : dp_model_dcgan28_g(g, pg, k->z);
        k->seed = dp_input(g, "seed", 4, (int64_t[]){n, c, hw, hw});
        k->loss_g = dp_sum(g, dp_mul(g, k->out, k->seed), DP_AXIS_ALL, 0);
        if ((s = dp_graph_mark_output(g, k->out)) || (s = dp_graph_mark_output(g, k->loss_g)) || (s = dp_graph_compile(g)) ||
            (s = dp_graph_set_training(g, 1)) || (s = dp_graph_new(k->ctx, &k->g2)))
            return s;
        dp_graph *d = k->g2;
        k->x = dp_input(d, "x", 4, (int64_t[]){n, c, hw, hw});
        k->t = dp_input(d, "t", 2, (int64_t[]){n, 1});
        if ((s = dp_input_requires_grad(d, k->x))) return s;
        k->loss = dp_bce(d, big ? dp_model_dcgan64_d(d, pd, k->x) : dp_model_dcgan28_d(d, pd, k->x), k->t);
        if ((s = dp_graph_mark_output(d, k->loss)) || (s = dp_graph_compile(d)) || (s = dp_graph_set_training(d, 1))) return s;
        dp_optim_opts oo = {0};
        oo.kind = DP_OPTIM_ADAM;
        oo.lr = 2e-4f;
        oo.beta1 = 0.5f;
        oo.beta2 = 0.999f;
        if ((s = dp_optim_new(pg, &oo, &k->o1)) || (s = dp_optim_new(pd, &oo, &k->o2))) return s;
        k->a = malloc((size_t)dp_tensor_numel(dp_node_value(k->x)) * sizeof(float)); /* the real batch */
        if (!k->a) return dp_error(k->ctx, DP_ERR_NOMEM, "dcgan: out of memory");
        fill_normal(&k->rng, k->a, dp_tensor_numel(dp_node_value(k->x)));
        return DP_OK;
    }
    case W_LAYER: {
        const layer_spec *l = w->layer;
        k->x = dp_input(g, "x", 4, (int64_t[]){l->n, l->ci, l->h, l->w});
        k->out = build_layer(g, k->ps, l, k->x);
        if (!w->bwd) {
            if ((s = dp_graph_mark_output(g, k->out)) || (s = dp_graph_set_no_grad(g)) || (s = dp_graph_compile(g)) ||
                (s = dp_graph_set_training(g, l->train)))
                return s;
        } else {
            /* backward of loss = sum(y): seeds dy = 1, then the layer's backward
             * (weights, bias, and the input unless it is the network's first layer). */
            k->loss = dp_sum(g, k->out, DP_AXIS_ALL, 0);
            if (!l->first && (s = dp_input_requires_grad(g, k->x))) return s;
            if ((s = dp_graph_mark_output(g, k->loss)) || (s = dp_graph_compile(g)) || (s = dp_graph_set_training(g, 1)))
                return s;
        }
        fill_tensor(&k->rng, dp_node_value(k->x));
        if (w->bwd && ((s = dp_graph_invalidate(g)) || (s = dp_graph_forward(g, 1, &k->loss)))) return s;
        return DP_OK;
    }
    case W_SGEMM: break; /* made above */
    case W_SCAN: break;  /* bench_scan_worker */
    }
    return DP_ERR_ARG;
}

static void worker_free(worker *k) {
    dp_optim_free(k->o1);
    dp_optim_free(k->o2);
    dp_graph_free(k->g);
    dp_graph_free(k->g2);
    dp_paramset_free(k->ps);
    dp_paramset_free(k->ps2);
    dp_ctx_free(k->ctx);
    free(k->a);
    free(k->b);
    free(k->c);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Runs one workload in this process and prints one line:
 *   WORKLOAD th=T RATE UNIT (MS ms/iter)
 * Iterations: those of torch_bench.py for the five models; for sgemm and the
 * layers 2 warm-up calls, then at least 3 timed ones and at least 1 s (at most
 * 200), as bench/torch_layer.py does. The median time is reported. */
static int run_worker(const char *name, int threads) {
    const workload *w = find_workload(name);
    if (!w) {
        fprintf(stderr, "doppel bench --worker: unknown workload '%s'\n", name);
        return 2;
    }
    if (w->kind == W_SCAN) return bench_scan_worker(name, threads);
    worker k;
    memset(&k, 0, sizeof k);
    k.w = w;
    int warm = 2, min_n = 3, max_n = MAX_TIMED;
    double min_time = 1.0;
    switch (w->kind) {
    case W_MESO_INF: warm = w->batch == 1 ? 20 : 3, min_n = max_n = w->batch == 1 ? 200 : 20, min_time = 0; break;
    case W_MESO_TRAIN: warm = 3, min_n = max_n = 15, min_time = 0; break;
    case W_DCGAN64: warm = 2, min_n = max_n = 10, min_time = 0; break;
    case W_DCGAN28: warm = 2, min_n = max_n = 20, min_time = 0; break;
    default: break;
    }
    dp_status s = worker_build(&k, threads);
    for (int i = 0; !s && i < warm; i++) s = worker_step(&k);
    double ts[MAX_TIMED];
    int n = 0;
    double t_start = cli_now();
    while (!s && n < max_n && (n < min_n || cli_now() - t_start < min_time)) {
        double t0 = cli_now();
        s = worker_step(&k);
        ts[n++] = cli_now() - t0;
    }
    if (s) {
        fprintf(stderr, "doppel bench --worker %s: %s [%s]\n", name, k.ctx ? dp_ctx_error(k.ctx) : "no context",
                dp_status_name(s));
        worker_free(&k);
        return 1;
    }
    double t = median(ts, n);
    double per = w->kind == W_SGEMM ? w->flops * 1e-9 : w->batch;
    printf("%s th=%d %.6g %s (%.4f ms/iter, %d iterations)\n", name, threads, per / t, w->unit, t * 1e3, n);
    fflush(stdout);
    worker_free(&k);
    return 0;
}

/* ------------------------------------------------------------ child processes */
typedef struct child_out {
    int started, exited_ok, timed_out;
    double rate;   /* parsed; NAN if none */
    double rss_mb; /* peak resident set of the child */
    char last[240]; /* the last non-empty line of its output */
} child_out;

/* A copy of environ with `set` ("KEY=VALUE", NULL-terminated) replacing or adding entries. */
static char **make_env(const char *const *set) {
    size_t n_env = 0, n_set = 0;
    while (environ && environ[n_env]) n_env++;
    while (set && set[n_set]) n_set++;
    char **e = calloc(n_env + n_set + 1, sizeof *e);
    if (!e) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        int replaced = 0;
        for (size_t j = 0; j < n_set && !replaced; j++) {
            const char *eq = strchr(set[j], '=');
            size_t len = eq ? (size_t)(eq - set[j]) + 1 : strlen(set[j]);
            replaced = !strncmp(environ[i], set[j], len);
        }
        if (!replaced) e[k++] = environ[i];
    }
    for (size_t j = 0; j < n_set; j++) e[k++] = (char *)set[j];
    e[k] = NULL;
    return e;
}

/* The rate in a peer's line. Preferred: "(X ms/...)" times the units per
 * iteration (more digits than the printed rate, e.g. "0.04 it/s"); otherwise the
 * number before the unit ("123.4 img/s"). Returns NAN if the line has neither. */
static double parse_rate(const char *line, const char *unit, double per_iter) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line);
    char *tok[64];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, " \t\r\n", &save); t && n < 64; t = strtok_r(NULL, " \t\r\n", &save))
        tok[n++] = t;
    double by_unit = NAN;
    for (int i = 1; i < n; i++) {
        char *end;
        if (per_iter > 0 && !strncmp(tok[i], "ms/", 3) && tok[i - 1][0] == '(') {
            double ms = strtod(tok[i - 1] + 1, &end);
            if (end != tok[i - 1] + 1 && *end == 0 && isfinite(ms) && ms > 0) return per_iter * 1e3 / ms;
        }
        if (isnan(by_unit) && !strcmp(tok[i], unit)) {
            double v = strtod(tok[i - 1], &end);
            if (end != tok[i - 1] && *end == 0 && isfinite(v) && v > 0) by_unit = v;
        }
    }
    return by_unit;
}

/* Runs path argv (environment: ours with `env` on top), stdout and stderr into
 * one pipe; kills it after timeout_s. out->rate is parsed from the last output
 * line that holds one. */
static void run_child(const char *path, char *const argv[], const char *const *env, double timeout_s, const char *unit,
                      double per_iter, child_out *out) {
    memset(out, 0, sizeof *out);
    out->rate = NAN;
    out->rss_mb = NAN;
    char **envp = make_env(env);
    int fd[2];
    if (!envp || pipe(fd) != 0) {
        snprintf(out->last, sizeof out->last, "cannot start %s: %s", path, strerror(errno));
        free(envp);
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(out->last, sizeof out->last, "fork: %s", strerror(errno));
        close(fd[0]);
        close(fd[1]);
        free(envp);
        return;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        close(fd[1]);
        execve(path, argv, envp);
        dprintf(2, "cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    free(envp);
    close(fd[1]);
    out->started = 1;
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap + 1);
    const double deadline = cli_now() + timeout_s;
    for (;;) {
        double left = deadline - cli_now();
        if (left <= 0) {
            kill(pid, SIGKILL);
            out->timed_out = 1;
            break;
        }
        struct pollfd p = {fd[0], POLLIN, 0};
        int r = poll(&p, 1, left > 1e6 ? 1000000000 : (int)(left * 1e3) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char chunk[4096];
        ssize_t got = read(fd[0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (text) {
            if (len + (size_t)got > cap) { /* keep the tail */
                size_t drop = len + (size_t)got - cap;
                if (drop > len) drop = len;
                memmove(text, text + drop, len - drop);
                len -= drop;
            }
            size_t take = (size_t)got < cap - len ? (size_t)got : cap - len;
            memcpy(text + len, chunk + ((size_t)got - take), take);
            len += take;
        }
    }
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
    }
    out->rss_mb = (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
    out->exited_ok = !out->timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!text) {
        snprintf(out->last, sizeof out->last, "out of memory");
        return;
    }
    text[len] = 0;
    /* Lines: parse each, remember the last non-empty one. */
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\r') line++;
        if (!*line) continue;
        snprintf(out->last, sizeof out->last, "%s", line);
        size_t l = strlen(out->last);
        while (l && (out->last[l - 1] == '\r' || out->last[l - 1] == ' ')) out->last[--l] = 0;
        double v = parse_rate(line, unit, per_iter);
        if (!isnan(v)) out->rate = v;
    }
    if (out->timed_out) snprintf(out->last, sizeof out->last, "stopped after %.0f s (--timeout)", timeout_s);
    else if (!out->exited_ok) {
        char tmp[240];
        snprintf(tmp, sizeof tmp, "%s", out->last[0] ? out->last : "no output");
        if (WIFSIGNALED(status)) snprintf(out->last, sizeof out->last, "killed by signal %d: %.200s", WTERMSIG(status), tmp);
        else snprintf(out->last, sizeof out->last, "exit status %d: %.200s", WEXITSTATUS(status), tmp);
    }
    if (!out->exited_ok) out->rate = NAN;
    free(text);
}

/* ------------------------------------------------------------ the driver */
typedef struct opts {
    int json, no_peers, threads, reps, list;
    double timeout, peak; /* peak 0: measure it (dp_fma_peak_gflops) */
    const char *only, *peers, *bench_dir, *worker;
    const char *peak_src; /* how the peak was found, for the header */
} opts;

typedef enum { P_DOPPEL, P_TORCH, P_ORT, N_PROG } prog;
static const char *const prog_name[N_PROG] = {"doppel", "pytorch", "ort"};

typedef struct env_info {
    char self[4096];
    char peers[4096], bench[4096];
    char torch_bench[4200], torch_layer[4200], torch_sgemm[4200], ort_bench[4200], export_onnx[4200];
    char node[4096], node_path[4200], onnx[4200];
    char torch_note[300], ort_note[300]; /* empty = available */
    int avx512;
} env_info;

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static int find_in_path(const char *prog_, char *out, size_t n) {
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        if (len > 0 && len < n - 2 - strlen(prog_)) {
            snprintf(out, n, "%.*s/%s", (int)len, path, prog_);
            if (access(out, X_OK) == 0 && is_file(out)) return 1;
        }
        path += len + (colon ? 1 : 0);
    }
    return 0;
}

/* The fair configuration (../shared/peers/README.md), plus one setting measured
 * here: OpenBLAS's own threads fight PyTorch's intra-op threads (each of torch's
 * threads calls OpenBLAS, which starts more), so the model and layer peers run
 * with OPENBLAS_NUM_THREADS=1 (Meso-4 batch 32: 151 -> 629 img/s; training
 * 36 -> 94 img/s), while the sgemm peer, where torch.mm is one OpenBLAS call,
 * gives OpenBLAS the threads. OPENBLAS_CORETYPE=SkylakeX only where the CPU has
 * AVX-512 (it names AVX-512 kernels). */
static void torch_env(const env_info *e, int blas_threads, char *blas, size_t n, const char **env) {
    snprintf(blas, n, "OPENBLAS_NUM_THREADS=%d", blas_threads);
    int k = 0;
    env[k++] = "CL=1";
    env[k++] = "GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184";
    env[k++] = blas;
    if (e->avx512) env[k++] = "OPENBLAS_CORETYPE=SkylakeX";
    env[k] = NULL;
}

static void probe(const opts *o, env_info *e, int need_torch, int need_ort) {
    ssize_t n = readlink("/proc/self/exe", e->self, sizeof e->self - 1);
    e->self[n > 0 ? n : 0] = 0;
#if defined(__x86_64__) || defined(__i386__)
    e->avx512 = __builtin_cpu_supports("avx512f");
#endif
    snprintf(e->peers, sizeof e->peers, "%s", o->peers ? o->peers : DP_SOURCE_DIR "/../shared/peers");
    snprintf(e->bench, sizeof e->bench, "%s", o->bench_dir ? o->bench_dir : DP_SOURCE_DIR "/bench");
    snprintf(e->torch_bench, sizeof e->torch_bench, "%s/torch_bench.py", e->peers);
    snprintf(e->ort_bench, sizeof e->ort_bench, "%s/ort_bench.js", e->peers);
    snprintf(e->export_onnx, sizeof e->export_onnx, "%s/export_onnx.py", e->peers);
    snprintf(e->torch_layer, sizeof e->torch_layer, "%s/torch_layer.py", e->bench);
    snprintf(e->torch_sgemm, sizeof e->torch_sgemm, "%s/torch_sgemm.py", e->bench);
    snprintf(e->node_path, sizeof e->node_path, "%s/peers/node_modules", e->bench);
    snprintf(e->onnx, sizeof e->onnx, "%s/peers/meso4.onnx", e->bench);
    if (o->no_peers) {
        snprintf(e->torch_note, sizeof e->torch_note, "pytorch not run (--no-peers)");
        snprintf(e->ort_note, sizeof e->ort_note, "ort not run (--no-peers)");
        return;
    }
    if (!is_file(e->torch_bench))
        snprintf(e->torch_note, sizeof e->torch_note, "peers not found in %.200s: pass --peers DIR", e->peers);
    else if (!is_file(e->torch_layer))
        snprintf(e->torch_note, sizeof e->torch_note, "bench scripts not found in %.200s: pass --bench-dir DIR", e->bench);
    else if (need_torch || need_ort) {
        char *argv[] = {PYTHON, "-c", "import torch", NULL};
        child_out c;
        run_child(PYTHON, argv, NULL, 120, "-", 0, &c);
        if (!c.exited_ok) snprintf(e->torch_note, sizeof e->torch_note, "pytorch not installed: run make bench to install it");
    }
    if (!need_ort) return;
    char modpath[4300];
    snprintf(modpath, sizeof modpath, "%s/onnxruntime-node", e->node_path);
    if (!find_in_path("node", e->node, sizeof e->node))
        snprintf(e->ort_note, sizeof e->ort_note, "ort not installed (no node): run make bench to install it");
    else if (!is_dir(modpath))
        snprintf(e->ort_note, sizeof e->ort_note, "ort not installed: run make bench to install it");
    else if (!is_file(e->ort_bench))
        snprintf(e->ort_note, sizeof e->ort_note, "peers not found in %.200s: pass --peers DIR", e->peers);
    else if (!is_file(e->onnx)) {
        /* The model file is made once by the peers' exporter (needs PyTorch). */
        if (!e->torch_note[0] && is_file(e->export_onnx)) {
            char *argv[] = {PYTHON, e->export_onnx, e->onnx, NULL};
            child_out c;
            fprintf(stderr, "doppel bench: exporting %s\n", e->onnx);
            run_child(PYTHON, argv, NULL, 300, "-", 0, &c);
        }
        if (!is_file(e->onnx))
            snprintf(e->ort_note, sizeof e->ort_note, "ort model missing (%.200s): run make bench to make it", e->onnx);
    }
}

typedef struct result {
    double rate[N_PROG], rss[N_PROG];
    int ran[N_PROG];
    char note[N_PROG][300];
    int failed[N_PROG]; /* the note is a failure (not a missing peer, which the header names) */
    int doppel_failed;
    double run[N_PROG][64]; /* each rep's rate (NAN: none), in the order they ran: doppel, pytorch, ort per rep */
} result;

static void run_one(const opts *o, const env_info *e, const workload *w, int index, int total, result *r) {
    memset(r, 0, sizeof *r);
    double rates[N_PROG][64];
    int nr[N_PROG] = {0};
    for (int p = 0; p < N_PROG; p++) {
        r->rss[p] = NAN;
        for (int k = 0; k < 64; k++) r->run[p][k] = NAN;
    }
    const int has_torch = w->torch_mode || w->torch_layer || w->torch_sgemm;
    const int use_torch = has_torch && !e->torch_note[0], use_ort = w->ort_batch > 0 && !e->ort_note[0];
    if (o->no_peers) snprintf(r->note[P_TORCH], sizeof r->note[P_TORCH], "peers not run (--no-peers)");
    else {
        if (has_torch && !use_torch) snprintf(r->note[P_TORCH], sizeof r->note[P_TORCH], "%s", e->torch_note);
        if (w->ort_batch > 0 && !use_ort) snprintf(r->note[P_ORT], sizeof r->note[P_ORT], "%s", e->ort_note);
    }
    const double per = w->kind == W_SGEMM ? w->flops * 1e-9 : w->batch;
    char th[16], b[16];
    snprintf(th, sizeof th, "%d", o->threads);
    char blas1[40], blas_n[40];
    const char *tenv[6], *tenv_sgemm[6];
    torch_env(e, 1, blas1, sizeof blas1, tenv);
    torch_env(e, o->threads, blas_n, sizeof blas_n, tenv_sgemm);
    for (int rep = 0; rep < o->reps; rep++) {
        for (int p = 0; p < N_PROG; p++) {
            child_out c;
            if (p == P_DOPPEL) {
                if (isatty(2)) fprintf(stderr, "\r\033[K[%d/%d] %s: doppel %d/%d", index + 1, total, w->name, rep + 1, o->reps);
                char *argv[] = {"doppel", "bench", "--worker", (char *)w->name, "--threads", th, NULL};
                run_child(e->self, argv, NULL, o->timeout, w->unit, per, &c);
            } else if (p == P_TORCH) {
                if (!use_torch) continue;
                if (isatty(2)) fprintf(stderr, "\r\033[K[%d/%d] %s: pytorch %d/%d", index + 1, total, w->name, rep + 1, o->reps);
                if (w->torch_mode) {
                    char *argv[] = {PYTHON, (char *)e->torch_bench, (char *)w->torch_mode, th, NULL};
                    run_child(PYTHON, argv, tenv, o->timeout, w->unit, per, &c);
                } else if (w->torch_sgemm) {
                    char *argv[] = {PYTHON, (char *)e->torch_sgemm, "1024", th, NULL};
                    run_child(PYTHON, argv, tenv_sgemm, o->timeout, w->unit, per, &c);
                } else {
                    const layer_spec *l = w->layer;
                    char a[13][24];
                    int v[] = {l->n, l->ci, l->h, l->w, l->co, l->k, l->stride, l->pad, l->bias, l->first, l->train};
                    for (int i = 0; i < 11; i++) snprintf(a[i], sizeof a[i], "%d", v[i]);
                    snprintf(a[11], sizeof a[11], "%g", (double)l->slope);
                    char *argv[] = {PYTHON, (char *)e->torch_layer, (char *)w->name, (char *)layer_kind_name[l->kind],
                                    w->bwd ? "bwd" : "fwd", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
                                    a[10], a[11], th, NULL};
                    run_child(PYTHON, argv, tenv, o->timeout, w->unit, per, &c);
                }
            } else {
                if (!use_ort) continue;
                if (isatty(2)) fprintf(stderr, "\r\033[K[%d/%d] %s: ort %d/%d", index + 1, total, w->name, rep + 1, o->reps);
                snprintf(b, sizeof b, "%d", w->ort_batch);
                char np[4300];
                snprintf(np, sizeof np, "NODE_PATH=%s", e->node_path);
                const char *env[] = {np, NULL};
                char *argv[] = {"node", (char *)e->ort_bench, (char *)e->onnx, b, th, NULL};
                run_child(e->node, argv, env, o->timeout, w->unit, per, &c);
            }
            r->ran[p] = 1;
            if (!isnan(c.rss_mb) && (isnan(r->rss[p]) || c.rss_mb > r->rss[p])) r->rss[p] = c.rss_mb;
            if (!isnan(c.rate)) rates[p][nr[p]++] = c.rate, r->run[p][rep] = c.rate;
            else if (!r->note[p][0]) {
                snprintf(r->note[p], sizeof r->note[p], "%s failed: %.240s", prog_name[p], c.last);
                r->failed[p] = 1;
                if (p == P_DOPPEL) r->doppel_failed = 1;
            }
        }
    }
    if (isatty(2)) fprintf(stderr, "\r\033[K");
    for (int p = 0; p < N_PROG; p++) r->rate[p] = nr[p] ? median(rates[p], nr[p]) : NAN;
}

static void json_num(char *buf, size_t n, double v) {
    if (isnan(v) || !isfinite(v)) snprintf(buf, n, "null");
    else snprintf(buf, n, "%.6g", v);
}
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void fmt_rate(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "-");
    else if (v >= 100) snprintf(buf, n, "%.0f", v);
    else if (v >= 10) snprintf(buf, n, "%.1f", v);
    else snprintf(buf, n, "%.3g", v);
}
static void fmt_rss(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, "%.0f", v);
}

/* Returns doppel's GFLOP/s on the workload (NAN: not counted). */
static double print_result(const opts *o, const workload *w, const result *r) {
    double best = NAN;
    for (int p = P_TORCH; p < N_PROG; p++)
        if (!isnan(r->rate[p]) && (isnan(best) || r->rate[p] > best)) best = r->rate[p];
    double ratio = isnan(r->rate[0]) || isnan(best) ? NAN : r->rate[0] / best;
    double iters = w->kind == W_SGEMM ? NAN : r->rate[0] / w->batch;
    double gflops = w->flops <= 0 ? NAN : w->kind == W_SGEMM ? r->rate[0] : w->flops * iters * 1e-9;
    double pct = isnan(gflops) ? NAN : 100.0 * gflops / o->peak;
    char note[1000] = "";
    for (int p = 0; p < N_PROG; p++)
        if (r->note[p][0] && (o->json || r->failed[p])) { /* the table's header already names missing peers */
            size_t l = strlen(note);
            snprintf(note + l, sizeof note - l, "%s%s", l ? "; " : "", r->note[p]);
        }
    if (o->json) {
        char v[N_PROG][32], ra[32], gf[32], pc[32], rs[N_PROG][32];
        for (int p = 0; p < N_PROG; p++) {
            json_num(v[p], sizeof v[p], r->rate[p]);
            json_num(rs[p], sizeof rs[p], r->rss[p]);
        }
        json_num(ra, sizeof ra, ratio);
        json_num(gf, sizeof gf, gflops);
        json_num(pc, sizeof pc, pct);
        printf("{\"workload\": ");
        json_str(stdout, w->name);
        printf(", \"unit\": ");
        json_str(stdout, w->unit);
        char pk[32];
        json_num(pk, sizeof pk, o->peak);
        printf(", \"doppel\": %s, \"pytorch\": %s, \"ort\": %s, \"ratio\": %s, \"gflops\": %s, \"peak_pct\": %s, "
               "\"peak_gflops\": %s, \"rss_mb_doppel\": %s, \"rss_mb_pytorch\": %s, \"rss_mb_ort\": %s, \"threads\": %d, "
               "\"reps\": %d",
               v[0], v[1], v[2], ra, gf, pc, pk, rs[0], rs[1], rs[2], o->threads, o->reps);
        /* every rep, and each rep's ratio to the best peer of the same rep (they ran back to back:
         * the spread of these says how much the machine moved during the command) */
        static const char *const run_key[N_PROG] = {"doppel_runs", "pytorch_runs", "ort_runs"};
        for (int p = 0; p < N_PROG; p++) {
            printf(", \"%s\": [", run_key[p]);
            for (int k = 0; k < o->reps; k++) {
                char x[32];
                json_num(x, sizeof x, r->run[p][k]);
                printf("%s%s", k ? ", " : "", x);
            }
            printf("]");
        }
        printf(", \"ratio_runs\": [");
        for (int k = 0; k < o->reps; k++) {
            double bp = NAN;
            for (int p = P_TORCH; p < N_PROG; p++)
                if (!isnan(r->run[p][k]) && (isnan(bp) || r->run[p][k] > bp)) bp = r->run[p][k];
            char x[32];
            json_num(x, sizeof x, isnan(bp) ? NAN : r->run[P_DOPPEL][k] / bp);
            printf("%s%s", k ? ", " : "", x);
        }
        printf("]");
        if (note[0]) {
            printf(", \"note\": ");
            json_str(stdout, note);
        }
        printf("}\n");
    } else {
        char v[N_PROG][32], rs[N_PROG][32], ra[16], gf[16], pc[16], rss[3 * 32 + 3];
        for (int p = 0; p < N_PROG; p++) {
            fmt_rate(v[p], sizeof v[p], r->rate[p]);
            fmt_rss(rs[p], sizeof rs[p], r->rss[p]);
        }
        if (isnan(ratio)) snprintf(ra, sizeof ra, "-");
        else snprintf(ra, sizeof ra, "%.2f", ratio);
        if (isnan(gflops)) snprintf(gf, sizeof gf, "-");
        else snprintf(gf, sizeof gf, "%.1f", gflops);
        if (isnan(pct)) snprintf(pc, sizeof pc, "-");
        else snprintf(pc, sizeof pc, "%.1f%%", pct);
        snprintf(rss, sizeof rss, "%s/%s/%s", rs[0], rs[1], rs[2]);
        printf("%-26s %-8s %9s %9s %9s %6s %8s %6s  %s\n", w->name, w->unit, v[0], v[1], v[2], ra, gf, pc, rss);
        if (note[0]) printf("    note: %s\n", note);
    }
    fflush(stdout);
    return gflops;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "doppel bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'doppel bench --help')\n");
    return 2;
}

static int parse_pos(const char *s, double *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v <= 0) return 0;
    *out = v;
    return 1;
}

/* Marks the selected workloads; returns 0 and prints a usage error for an unknown name. */
static int select_workloads(const char *only, int *sel) {
    for (int i = 0; i < n_wl; i++) sel[i] = only == NULL;
    if (!only) return 1;
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", only);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ') t[--l] = 0;
        if (!l) continue;
        int prefix = t[l - 1] == '*', hit = 0;
        if (prefix) t[--l] = 0;
        for (int i = 0; i < n_wl; i++)
            if (prefix ? !strncmp(wl[i].name, t, l) : !strcmp(wl[i].name, t)) sel[i] = hit = 1;
        if (!hit) {
            fprintf(stderr, "doppel bench: unknown workload '%s%s' (see 'doppel bench --list')\n", t, prefix ? "*" : "");
            return 0;
        }
    }
    return 1;
}

static void cpu_name(char *out, size_t n) {
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ') c++;
                c[strcspn(c, "\n")] = 0;
                snprintf(out, n, "%s", c);
            }
            break;
        }
    fclose(f);
}

/* The options: -1 to go on (*o filled, the workloads built and, unless --worker or --list, the selected
 * ones marked in sel), else the exit status (0 after --help, 2 for bad usage). Runs nothing; also called
 * by fuzz/cli_bench.c. */
static int bench_parse(int argc, char **argv, opts *o, int *sel) {
    memset(o, 0, sizeof *o);
    o->threads = 2;
    o->reps = 3;
    o->timeout = 900;
    o->peak = 0.0;
    o->peak_src = "given";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--no-peers")) o->no_peers = 1;
        else if (!strcmp(a, "--list")) o->list = 1;
        else if (!strcmp(a, "--threads")) {
            if (!dp_parse_int(v, 1, 1024, &o->threads)) return usage_error("--threads needs a number from 1 to 1024");
            i++;
        } else if (!strcmp(a, "--reps")) {
            if (!dp_parse_int(v, 1, 64, &o->reps)) return usage_error("--reps needs a number from 1 to 64");
            i++;
        } else if (!strcmp(a, "--timeout")) {
            if (!parse_pos(v, &o->timeout)) return usage_error("--timeout needs a positive number of seconds");
            i++;
        } else if (!strcmp(a, "--peak")) {
            if (!parse_pos(v, &o->peak)) return usage_error("--peak needs a positive number of GFLOP/s");
            i++;
        } else if (!strcmp(a, "--only") || !strcmp(a, "--peers") || !strcmp(a, "--bench-dir") || !strcmp(a, "--worker")) {
            if (!v || !*v) return usage_error("%s needs a value", a);
            if (!strcmp(a, "--only")) o->only = v;
            else if (!strcmp(a, "--peers")) o->peers = v;
            else if (!strcmp(a, "--bench-dir")) o->bench_dir = v;
            else o->worker = v;
            i++;
        } else return usage_error("unknown option '%s'", a);
    }
    build_workloads();
    if (o->worker || o->list) return -1;
    if (!select_workloads(o->only, sel)) return 2;
    int n_sel = 0;
    for (int i = 0; i < n_wl; i++) n_sel += sel[i];
    if (n_sel == 0) return usage_error("--only selects no workload");
    return -1;
}

int cmd_bench(int argc, char **argv) {
    opts o;
    int sel[MAX_WORKLOADS];
    int rc = bench_parse(argc, argv, &o, sel);
    if (rc >= 0) return rc;
    if (o.worker) return run_worker(o.worker, o.threads);
    if (o.list) {
        for (int i = 0; i < n_wl; i++) printf("%-26s %-8s %s\n", wl[i].name, wl[i].unit, wl[i].what);
        return 0;
    }
    int need_torch = 0, need_ort = 0, n_sel = 0;
    for (int i = 0; i < n_wl; i++)
        if (sel[i]) {
            n_sel++;
            need_torch |= wl[i].torch_mode || wl[i].torch_layer || wl[i].torch_sgemm;
            need_ort |= wl[i].ort_batch > 0;
        }
    env_info *e = calloc(1, sizeof *e);
    if (!e) {
        fprintf(stderr, "doppel bench: out of memory\n");
        return 1;
    }
    if (o.peak <= 0.0) { /* measured here, before any child runs */
        const char *what;
        o.peak = dp_fma_peak_gflops(o.threads, &what);
        static char src[64];
        snprintf(src, sizeof src, "measured: %s FMA loop, %d threads", what, o.threads);
        o.peak_src = src;
        if (o.peak <= 0.0) o.peak = PEAK_GFLOPS, o.peak_src = "the peers README's AVX-512 figure; no vector kernels here";
    }
    probe(&o, e, need_torch, need_ort);
    if (!e->self[0]) {
        fprintf(stderr, "doppel bench: cannot find my own executable (/proc/self/exe)\n");
        free(e);
        return 1;
    }
    if (!o.json) {
        char cpu[256], date[64];
        time_t now = time(NULL);
        strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&now));
        cpu_name(cpu, sizeof cpu);
        printf("doppel bench %s — %s, %s, %d threads, median of %d runs each; peak %.0f GFLOP/s (%s)\n", DP_VERSION_STRING,
               date, cpu, o.threads, o.reps, o.peak, o.peak_src);
        if (e->torch_note[0]) printf("  %s\n", e->torch_note);
        if (need_ort && e->ort_note[0]) printf("  %s\n", e->ort_note);
        printf("%-26s %-8s %9s %9s %9s %6s %8s %6s  %s\n", "workload", "unit", "doppel", "pytorch", "ort", "ratio", "GFLOP/s",
               "%peak", "RSS MB d/p/o");
        fflush(stdout);
    }
    int failed = 0, k = 0;
    double top = 0.0;
    const char *top_name = NULL;
    for (int i = 0; i < n_wl; i++) {
        if (!sel[i]) continue;
        result r;
        run_one(&o, e, &wl[i], k++, n_sel, &r);
        double gf = print_result(&o, &wl[i], &r);
        if (!isnan(gf) && gf > top) top = gf, top_name = wl[i].name;
        failed |= r.doppel_failed;
    }
    if (top_name && top > o.peak) /* the machine was slower while the peak was measured (shared VMs) */
        fprintf(o.json ? stderr : stdout,
                "note: %s reached %.1f GFLOP/s, above the peak of %.0f (%s): %%peak is overstated (the machine was slower "
                "while the peak was measured, or --peak is too low)\n",
                top_name, top, o.peak, o.peak_src);
    free(e);
    return failed ? 1 : 0;
}
