/* The reference models: Meso-4 and MesoInception-4 (Afchar et al. 2018), and
 * the DCGANs of ../shared/peers/models.py.
 *
 * Parameter names are the PyTorch state_dict keys of the definitions in
 * models.py (nn.Sequential indices; see docs/models.md), so that weights can
 * be exchanged with PyTorch one to one. The DCGAN halves get a "G." / "D."
 * prefix so that a generator and its discriminator can share one paramset.
 * MesoInception-4 has no PyTorch definition in models.py; its names follow
 * the PyTorch mirror of the Keras model in tools/make_torch_refs.py. */
#include <stdio.h>

#include "core/internal.h"

/* Keras' BatchNormalization defaults, in PyTorch's convention (momentum 0.99 → 0.01). */
#define KERAS_BN_MOMENTUM 0.01f
#define KERAS_BN_EPS 1e-3f
#define TORCH_BN_MOMENTUM 0.1f
#define TORCH_BN_EPS 1e-5f

static int check_input(dp_graph *g, dp_node *x, const char *model, int channels, int64_t h, int64_t w) {
    if (!g || g->status != DP_OK) return 0;
    if (!x) {
        dp_graph_fail(g, DP_ERR_NULL, "%s: the input node is NULL", model);
        return 0;
    }
    const dp_tensor *t = &x->val;
    int ok = t->ndim == 4 && (channels <= 0 || t->shape[1] == channels) && (h <= 0 || t->shape[2] == h) &&
             (w <= 0 || t->shape[3] == w);
    if (!ok) {
        char b[64], want[96], cs[16] = "C", hs[24] = "H", ws[24] = "W";
        if (channels > 0) snprintf(cs, sizeof cs, "%d", channels);
        if (h > 0) snprintf(hs, sizeof hs, "%lld", (long long)h);
        if (w > 0) snprintf(ws, sizeof ws, "%lld", (long long)w);
        snprintf(want, sizeof want, "[N,%s,%s,%s]", cs, hs, ws);
        dp_graph_fail(g, DP_ERR_SHAPE, "%s: the input has shape %s, expected %s", model, DP_SHAPE_STR(t, b), want);
        return 0;
    }
    return 1;
}

static const char *nm(char *buf, size_t n, const char *prefix, int index) {
    snprintf(buf, n, "%s%d", prefix, index);
    return buf;
}

static dp_node *maxpool(dp_graph *g, dp_node *x, int k, int same) {
    dp_pool_opts po = {0};
    po.kernel_h = po.kernel_w = k;
    po.same = same;
    return dp_maxpool2d(g, x, &po);
}

/* ------------------------------------------------------------ Meso-4 */
/* conv(k, 'same') → ReLU → BN → max-pool(p): PyTorch indices i, i+1, i+2, i+3. */
static dp_node *meso_block(dp_graph *g, dp_paramset *ps, dp_node *x, int index, int out_ch, int k, int pool) {
    char a[32], b[32];
    dp_conv_opts co = {0};
    co.pad_h = co.pad_w = k / 2;
    x = dp_nn_conv2d(g, ps, nm(a, sizeof a, "f.", index), x, out_ch, k, k, &co, 1, NULL);
    x = dp_relu(g, x);
    x = dp_nn_batchnorm2d(g, ps, nm(b, sizeof b, "f.", index + 2), x, TORCH_BN_MOMENTUM, TORCH_BN_EPS);
    return maxpool(g, x, pool, 0);
}

/* The classifier head shared by both Meso nets: c.0 Flatten, c.1 Dropout,
 * c.2 Linear(→16), c.3 LeakyReLU(0.1), c.4 Dropout, c.5 Linear(16→1), c.6 Sigmoid. */
static dp_node *meso_head(dp_graph *g, dp_paramset *ps, dp_node *x) {
    x = dp_flatten(g, x);
    x = dp_dropout(g, x, 0.5f);
    x = dp_nn_dense(g, ps, "c.2", x, 16, 1, NULL);
    x = dp_leaky_relu(g, x, 0.1f);
    x = dp_dropout(g, x, 0.5f);
    x = dp_nn_dense(g, ps, "c.5", x, 1, 1, NULL);
    return dp_sigmoid(g, x);
}

dp_node *dp_model_meso4(dp_graph *g, dp_paramset *ps, dp_node *x) {
    if (!check_input(g, x, "dp_model_meso4", 3, 0, 0)) return NULL;
    x = meso_block(g, ps, x, 0, 8, 3, 2);
    x = meso_block(g, ps, x, 4, 8, 5, 2);
    x = meso_block(g, ps, x, 8, 16, 5, 2);
    x = meso_block(g, ps, x, 12, 16, 5, 4);
    return meso_head(g, ps, x);
}

/* ------------------------------------------------------------ MesoInception-4 */
/* Keras InceptionLayer(a, b, c, d): four branches, each ending in ReLU,
 * concatenated on channels:
 *   b1: 1x1(a);  b2: 1x1(b) → 3x3(b);  b3: 1x1(c) → 3x3(c), dilation 2;
 *   b4: 1x1(d) → 3x3(d), dilation 3 — 'same' padding, ReLU after every conv.
 * PyTorch names: <p>.b1, <p>.b2.0 / <p>.b2.2, <p>.b3.0 / <p>.b3.2, <p>.b4.0 / <p>.b4.2. */
static dp_node *inception(dp_graph *g, dp_paramset *ps, const char *p, dp_node *x, int a, int b, int c, int d) {
    char n1[64], n2[64];
    dp_node *br[4];
    snprintf(n1, sizeof n1, "%s.b1", p);
    br[0] = dp_relu(g, dp_nn_conv2d(g, ps, n1, x, a, 1, 1, NULL, 1, NULL));
    const int ch[3] = {b, c, d};
    for (int i = 0; i < 3; i++) {
        int dil = i + 1;
        dp_conv_opts co = {0};
        co.dilation_h = co.dilation_w = dil;
        co.pad_h = co.pad_w = dil; /* 'same' for a 3x3 kernel with dilation dil */
        snprintf(n1, sizeof n1, "%s.b%d.0", p, i + 2);
        snprintf(n2, sizeof n2, "%s.b%d.2", p, i + 2);
        dp_node *y = dp_relu(g, dp_nn_conv2d(g, ps, n1, x, ch[i], 1, 1, NULL, 1, NULL));
        br[i + 1] = dp_relu(g, dp_nn_conv2d(g, ps, n2, y, ch[i], 3, 3, &co, 1, NULL));
    }
    return dp_concat(g, 4, br, 1);
}

dp_node *dp_model_mesoinception4(dp_graph *g, dp_paramset *ps, dp_node *x) {
    if (!check_input(g, x, "dp_model_mesoinception4", 3, 0, 0)) return NULL;
    x = inception(g, ps, "f.0", x, 1, 4, 4, 2);
    x = dp_nn_batchnorm2d(g, ps, "f.1", x, KERAS_BN_MOMENTUM, KERAS_BN_EPS);
    x = maxpool(g, x, 2, 1);
    x = inception(g, ps, "f.3", x, 2, 4, 4, 2);
    x = dp_nn_batchnorm2d(g, ps, "f.4", x, KERAS_BN_MOMENTUM, KERAS_BN_EPS);
    x = maxpool(g, x, 2, 1);
    dp_conv_opts co = {0};
    co.pad_h = co.pad_w = 2;
    x = dp_relu(g, dp_nn_conv2d(g, ps, "f.6", x, 16, 5, 5, &co, 1, NULL));
    x = dp_nn_batchnorm2d(g, ps, "f.8", x, KERAS_BN_MOMENTUM, KERAS_BN_EPS);
    x = maxpool(g, x, 2, 1);
    x = dp_relu(g, dp_nn_conv2d(g, ps, "f.10", x, 16, 5, 5, &co, 1, NULL));
    x = dp_nn_batchnorm2d(g, ps, "f.12", x, KERAS_BN_MOMENTUM, KERAS_BN_EPS);
    x = maxpool(g, x, 4, 1);
    return meso_head(g, ps, x);
}

/* ------------------------------------------------------------ DCGAN */
/* ConvTranspose2d(→co, k, stride, pad, bias=False) [→ BatchNorm2d → ReLU]. */
static dp_node *g_block(dp_graph *g, dp_paramset *ps, dp_node *x, int index, int co, int k, int stride, int pad, int bn) {
    char a[32], b[32];
    dp_conv_opts o = {0};
    o.stride_h = o.stride_w = stride;
    o.pad_h = o.pad_w = pad;
    x = dp_nn_deconv2d(g, ps, nm(a, sizeof a, "G.", index), x, co, k, k, &o, 0, NULL);
    if (!bn) return x;
    x = dp_nn_batchnorm2d(g, ps, nm(b, sizeof b, "G.", index + 1), x, TORCH_BN_MOMENTUM, TORCH_BN_EPS);
    return dp_relu(g, x);
}

/* Conv2d(→co, k, stride, pad, bias=False) [→ BatchNorm2d] → LeakyReLU(0.2). */
static dp_node *d_block(dp_graph *g, dp_paramset *ps, dp_node *x, int index, int co, int k, int stride, int pad, int bn) {
    char a[32], b[32];
    dp_conv_opts o = {0};
    o.stride_h = o.stride_w = stride;
    o.pad_h = o.pad_w = pad;
    x = dp_nn_conv2d(g, ps, nm(a, sizeof a, "D.", index), x, co, k, k, &o, 0, NULL);
    if (bn) x = dp_nn_batchnorm2d(g, ps, nm(b, sizeof b, "D.", index + 1), x, TORCH_BN_MOMENTUM, TORCH_BN_EPS);
    return dp_leaky_relu(g, x, 0.2f);
}

dp_node *dp_model_dcgan64_g(dp_graph *g, dp_paramset *ps, dp_node *z) {
    if (!check_input(g, z, "dp_model_dcgan64_g", 0, 1, 1)) return NULL;
    const int w = 64;
    z = g_block(g, ps, z, 0, w * 8, 4, 1, 0, 1);  /* G.0, G.1: 4x4 */
    z = g_block(g, ps, z, 3, w * 4, 4, 2, 1, 1);  /* G.3, G.4: 8x8 */
    z = g_block(g, ps, z, 6, w * 2, 4, 2, 1, 1);  /* G.6, G.7: 16x16 */
    z = g_block(g, ps, z, 9, w, 4, 2, 1, 1);      /* G.9, G.10: 32x32 */
    z = g_block(g, ps, z, 12, 3, 4, 2, 1, 0);     /* G.12: 64x64 */
    return dp_tanh(g, z);
}

/* The discriminators end in a sigmoid (as models.py); the _logits builders
 * stop before it, for BCE-with-logits, hinge or Wasserstein losses. */
static dp_node *dcgan64_d(dp_graph *g, dp_paramset *ps, dp_node *x, const char *who, int logits) {
    if (!check_input(g, x, who, 3, 64, 64)) return NULL;
    const int d = 64;
    x = d_block(g, ps, x, 0, d, 4, 2, 1, 0);      /* D.0: 32x32 */
    x = d_block(g, ps, x, 2, d * 2, 4, 2, 1, 1);  /* D.2, D.3: 16x16 */
    x = d_block(g, ps, x, 5, d * 4, 4, 2, 1, 1);  /* D.5, D.6: 8x8 */
    x = d_block(g, ps, x, 8, d * 8, 4, 2, 1, 1);  /* D.8, D.9: 4x4 */
    x = dp_nn_conv2d(g, ps, "D.11", x, 1, 4, 4, NULL, 0, NULL); /* 1x1 */
    return dp_flatten(g, logits ? x : dp_sigmoid(g, x));
}
dp_node *dp_model_dcgan64_d(dp_graph *g, dp_paramset *ps, dp_node *x) { return dcgan64_d(g, ps, x, "dp_model_dcgan64_d", 0); }
dp_node *dp_model_dcgan64_d_logits(dp_graph *g, dp_paramset *ps, dp_node *x) {
    return dcgan64_d(g, ps, x, "dp_model_dcgan64_d_logits", 1);
}

dp_node *dp_model_dcgan28_g(dp_graph *g, dp_paramset *ps, dp_node *z) {
    if (!check_input(g, z, "dp_model_dcgan28_g", 0, 1, 1)) return NULL;
    z = g_block(g, ps, z, 0, 256, 7, 1, 0, 1);  /* G.0, G.1: 7x7 */
    z = g_block(g, ps, z, 3, 128, 4, 2, 1, 1);  /* G.3, G.4: 14x14 */
    z = g_block(g, ps, z, 6, 1, 4, 2, 1, 0);    /* G.6: 28x28 */
    return dp_tanh(g, z);
}

static dp_node *dcgan28_d(dp_graph *g, dp_paramset *ps, dp_node *x, const char *who, int logits) {
    if (!check_input(g, x, who, 1, 28, 28)) return NULL;
    x = d_block(g, ps, x, 0, 64, 4, 2, 1, 0);   /* D.0: 14x14 */
    x = d_block(g, ps, x, 2, 128, 4, 2, 1, 1);  /* D.2, D.3: 7x7 */
    x = dp_nn_conv2d(g, ps, "D.5", x, 1, 7, 7, NULL, 0, NULL); /* 1x1 */
    return dp_flatten(g, logits ? x : dp_sigmoid(g, x));
}
dp_node *dp_model_dcgan28_d(dp_graph *g, dp_paramset *ps, dp_node *x) { return dcgan28_d(g, ps, x, "dp_model_dcgan28_d", 0); }
dp_node *dp_model_dcgan28_d_logits(dp_graph *g, dp_paramset *ps, dp_node *x) {
    return dcgan28_d(g, ps, x, "dp_model_dcgan28_d_logits", 1);
}
