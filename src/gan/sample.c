/* GAN sampling: eval-mode generator graphs, the checkpoint sampler, noise,
 * image grids and the model id (a hash of the generator's weights). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/parse.h"
#include "gan/gan_internal.h"

/* ------------------------------------------------------------ names */
const char *dp_gan_arch_name(dp_gan_arch a) {
    switch (a) {
    case DP_GAN_DCGAN28: return "dcgan28";
    case DP_GAN_DCGAN64: return "dcgan64";
    default: return "?";
    }
}
const char *dp_gan_loss_name(dp_gan_loss l) {
    switch (l) {
    case DP_GAN_NS: return "ns";
    case DP_GAN_HINGE: return "hinge";
    case DP_GAN_WGAN_GP: return "wgan-gp";
    default: return "?";
    }
}
int dp_gan_arch_parse(const char *s, dp_gan_arch *out) {
    if (!s || !out) return 0;
    if (!strcmp(s, "dcgan28")) *out = DP_GAN_DCGAN28;
    else if (!strcmp(s, "dcgan64")) *out = DP_GAN_DCGAN64;
    else return 0;
    return 1;
}
int dp_gan_loss_parse(const char *s, dp_gan_loss *out) {
    if (!s || !out) return 0;
    if (!strcmp(s, "ns")) *out = DP_GAN_NS;
    else if (!strcmp(s, "hinge")) *out = DP_GAN_HINGE;
    else if (!strcmp(s, "wgan-gp")) *out = DP_GAN_WGAN_GP;
    else return 0;
    return 1;
}
int dp_gan_arch_shape(dp_gan_arch a, int *c, int *h, int *w) {
    int cc, hh;
    if (a == DP_GAN_DCGAN28) cc = 1, hh = 28;
    else if (a == DP_GAN_DCGAN64) cc = 3, hh = 64;
    else return 0;
    if (c) *c = cc;
    if (h) *h = hh;
    if (w) *w = hh;
    return 1;
}

/* ------------------------------------------------------------ models */
dp_node *gan_build_g(dp_graph *g, dp_paramset *ps, dp_gan_arch arch, dp_node *z) {
    return arch == DP_GAN_DCGAN64 ? dp_model_dcgan64_g(g, ps, z) : dp_model_dcgan28_g(g, ps, z);
}
dp_node *gan_build_d(dp_graph *g, dp_paramset *ps, dp_gan_arch arch, dp_node *x) {
    return arch == DP_GAN_DCGAN64 ? dp_model_dcgan64_d_logits(g, ps, x) : dp_model_dcgan28_d_logits(g, ps, x);
}

/* The same D as dp_model_dcgan*_d_logits (models.c; tests/test_gan.c checks
 * they agree bit for bit), layer by layer, so that the LeakyReLUs can be
 * reached: conv [→ BN] → LeakyReLU(0.2) blocks, then the last conv. */
dp_node *gan_build_d_act(dp_graph *g, dp_paramset *ps, dp_gan_arch arch, dp_node *x, dp_node *const *masks, dp_node **pre,
                         int *n_pre) {
    static const struct blk {
        int index, co, bn;
    } d28[] = {{0, 64, 0}, {2, 128, 1}}, d64[] = {{0, 64, 0}, {2, 128, 1}, {5, 256, 1}, {8, 512, 1}};
    const struct blk *b = arch == DP_GAN_DCGAN64 ? d64 : d28;
    int nb = arch == DP_GAN_DCGAN64 ? 4 : 2;
    char name[16];
    dp_conv_opts o = {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
    for (int i = 0; i < nb; i++) {
        snprintf(name, sizeof name, "D.%d", b[i].index);
        x = dp_nn_conv2d(g, ps, name, x, b[i].co, 4, 4, &o, 0, NULL);
        if (b[i].bn) {
            snprintf(name, sizeof name, "D.%d", b[i].index + 1);
            x = dp_nn_batchnorm2d(g, ps, name, x, 0.1f, 1e-5f);
        }
        if (pre) pre[i] = x;
        x = masks ? dp_mul(g, x, masks[i]) : dp_leaky_relu(g, x, 0.2f);
    }
    if (n_pre) *n_pre = nb;
    int k = arch == DP_GAN_DCGAN64 ? 4 : 7;
    x = dp_nn_conv2d(g, ps, arch == DP_GAN_DCGAN64 ? "D.11" : "D.5", x, 1, k, k, NULL, 0, NULL);
    return dp_flatten(g, x);
}

dp_status gan_gen_build(dp_ctx *ctx, dp_paramset *ps, dp_gan_arch arch, int nz, int batch, gan_gen *gen) {
    memset(gen, 0, sizeof *gen);
    if (!dp_gan_arch_shape(arch, &gen->c, &gen->h, &gen->w))
        return dp_error(ctx, DP_ERR_ARG, "gan: unknown arch %d", (int)arch);
    gen->batch = batch;
    gen->nz = nz;
    dp_status s = dp_graph_new(ctx, &gen->g);
    if (s) return s;
    gen->z = dp_input(gen->g, "z", 4, (int64_t[]){batch, nz, 1, 1});
    gen->out = gan_build_g(gen->g, ps, arch, gen->z);
    if ((s = dp_graph_mark_output(gen->g, gen->out)) == DP_OK) s = dp_graph_compile(gen->g);
    if (s == DP_OK) s = dp_graph_set_training(gen->g, 0);
    if (s) {
        dp_graph_free(gen->g);
        gen->g = NULL;
    }
    return s;
}

void gan_gen_free(gan_gen *gen) {
    if (!gen) return;
    dp_graph_free(gen->g);
    gen->g = NULL;
}

dp_status gan_gen_run(gan_gen *gen, const float *z, int64_t n, float *out) {
    dp_ctx *ctx = dp_graph_ctx(gen->g);
    if (!z || !out) return dp_error(ctx, DP_ERR_NULL, "gan: generate: z and out are required");
    if (n < 1) return dp_error(ctx, DP_ERR_ARG, "gan: generate: n = %lld, at least 1 image", (long long)n);
    float *zb = dp_tensor_f32(dp_node_value(gen->z));
    const float *o = dp_tensor_f32(dp_node_value(gen->out));
    int64_t per = (int64_t)gen->c * gen->h * gen->w, B = gen->batch;
    for (int64_t off = 0; off < n; off += B) {
        int64_t m = n - off < B ? n - off : B;
        memcpy(zb, z + off * gen->nz, sizeof(float) * (size_t)(m * gen->nz));
        if (m < B) memset(zb + m * gen->nz, 0, sizeof(float) * (size_t)((B - m) * gen->nz));
        dp_status s = dp_graph_run(gen->g);
        if (s) return s;
        float *dst = out + off * per;
        for (int64_t i = 0; i < m * per; i++) {
            float v = 0.5f * (o[i] + 1.0f);
            dst[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : (v == v ? v : 0.0f);
        }
    }
    return DP_OK;
}

/* ------------------------------------------------------------ model id */
uint32_t dp_gan_hash_params(dp_paramset *ps) {
    uint32_t h = 2166136261u;
#define FNV(b) (h = (h ^ (uint32_t)(b)) * 16777619u)
    for (int i = 0; i < dp_paramset_count(ps); i++) {
        dp_tensor *t = dp_paramset_at(ps, i);
        for (const char *c = t->name; *c; c++) FNV((unsigned char)*c);
        FNV(0);
        const float *v = dp_tensor_f32(t);
        int64_t n = dp_tensor_numel(t);
        for (int64_t k = 0; v && k < n; k++) {
            uint32_t u;
            memcpy(&u, &v[k], 4);
            FNV(u & 0xff);
            FNV((u >> 8) & 0xff);
            FNV((u >> 16) & 0xff);
            FNV(u >> 24);
        }
    }
#undef FNV
    return h;
}

/* ------------------------------------------------------------ sampler */
struct dp_gan_sampler {
    dp_ctx *ctx;
    dp_paramset *ps;
    gan_gen gen;
    dp_gan_arch arch;
    int64_t step;
    uint32_t model_id;
};

void dp_gan_sampler_free(dp_gan_sampler *s) {
    if (!s) return;
    gan_gen_free(&s->gen);
    dp_paramset_free(s->ps);
    dp_free(s->ctx, s);
}

dp_status dp_gan_sampler_load(dp_ctx *ctx, const char *path, int batch, dp_gan_sampler **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!path || !out) return dp_error(ctx, DP_ERR_NULL, "dp_gan_sampler_load: path and out are required");
    *out = NULL;
    if (batch == 0) batch = GAN_GEN_BATCH;
    if (batch < 1 || batch > 4096) return dp_error(ctx, DP_ERR_ARG, "dp_gan_sampler_load: batch %d is not in 1..4096", batch);
    char buf[64];
    dp_gan_arch arch;
    dp_status s = dp_checkpoint_meta(ctx, path, "doppel.gan.arch", buf, sizeof buf);
    if (s == DP_ERR_NOT_FOUND) {
        /* not written by dp_gan_save: accept doppel.arch "gan-<arch>" */
        s = dp_checkpoint_meta(ctx, path, "doppel.arch", buf, sizeof buf);
        if (s == DP_OK && !strncmp(buf, "gan-", 4)) memmove(buf, buf + 4, strlen(buf + 4) + 1);
        else if (s == DP_OK || s == DP_ERR_NOT_FOUND)
            return dp_error(ctx, DP_ERR_FORMAT, "%s: not a GAN checkpoint (no doppel.gan.arch metadata; doppel.arch '%s')",
                            path, s == DP_OK ? buf : "");
    }
    if (s) return s;
    if (!dp_gan_arch_parse(buf, &arch))
        return dp_error(ctx, DP_ERR_FORMAT, "%s: unknown GAN arch '%s' (dcgan28 or dcgan64)", path, buf);
    int64_t nz = 100, step = 0;
    if ((s = dp_checkpoint_meta(ctx, path, "doppel.gan.nz", buf, sizeof buf)) == DP_OK) {
        if (!dp_parse_i64(buf, 1, 4096, &nz)) return dp_error(ctx, DP_ERR_FORMAT, "%s: doppel.gan.nz '%s' is not valid", path, buf);
    } else if (s != DP_ERR_NOT_FOUND) {
        return s;
    }
    if ((s = dp_checkpoint_meta(ctx, path, "doppel.gan.step", buf, sizeof buf)) == DP_OK) {
        if (!dp_parse_i64(buf, 0, INT64_MAX, &step))
            return dp_error(ctx, DP_ERR_FORMAT, "%s: doppel.gan.step '%s' is not valid", path, buf);
    } else if (s != DP_ERR_NOT_FOUND) {
        return s;
    }
    dp_ctx_clear_error(ctx);

    dp_gan_sampler *sm = dp_calloc(ctx, sizeof *sm);
    if (!sm) return dp_error(ctx, DP_ERR_NOMEM, "dp_gan_sampler_load: out of memory");
    sm->ctx = ctx;
    sm->arch = arch;
    sm->step = step;
    if ((s = dp_paramset_new(ctx, &sm->ps)) != DP_OK || (s = gan_gen_build(ctx, sm->ps, arch, (int)nz, batch, &sm->gen)) != DP_OK ||
        (s = dp_checkpoint_load(path, sm->ps, NULL)) != DP_OK) {
        dp_gan_sampler_free(sm);
        return s;
    }
    sm->model_id = dp_gan_hash_params(sm->ps);
    *out = sm;
    return DP_OK;
}

dp_status dp_gan_sampler_save(dp_gan_sampler *s, const char *path, const char *const *extra) {
    if (!s || !path) return dp_error(s ? s->ctx : NULL, DP_ERR_NULL, "dp_gan_sampler_save: NULL argument");
    char archm[32], nz[32], step[32], id[32];
    snprintf(archm, sizeof archm, "gan-%s", dp_gan_arch_name(s->arch));
    snprintf(nz, sizeof nz, "%d", s->gen.nz);
    snprintf(step, sizeof step, "%lld", (long long)s->step);
    snprintf(id, sizeof id, "%08x", (unsigned)s->model_id);
    const char *meta[40] = {"doppel.task", "gan", "doppel.gan.arch", dp_gan_arch_name(s->arch), "doppel.gan.nz", nz,
                            "doppel.gan.step", step, "doppel.gan.model_id", id, "doppel.gan.generator_only", "1"};
    int k = 12;
    for (int i = 0; extra && extra[i] && extra[i + 1] && k < 38; i += 2) meta[k++] = extra[i], meta[k++] = extra[i + 1];
    meta[k] = NULL;
    return dp_checkpoint_save(path, s->ps, NULL, archm, meta);
}

dp_gan_arch dp_gan_sampler_arch(const dp_gan_sampler *s) { return s ? s->arch : DP_GAN_DCGAN28; }
int dp_gan_sampler_nz(const dp_gan_sampler *s) { return s ? s->gen.nz : 0; }
int64_t dp_gan_sampler_step(const dp_gan_sampler *s) { return s ? s->step : 0; }
uint32_t dp_gan_sampler_model_id(const dp_gan_sampler *s) { return s ? s->model_id : 0; }

dp_status dp_gan_sampler_generate(dp_gan_sampler *s, const float *z, int64_t n, float *out) {
    if (!s) return DP_ERR_NULL;
    return gan_gen_run(&s->gen, z, n, out);
}

/* ------------------------------------------------------------ noise, grids */
dp_status dp_gan_noise(dp_ctx *ctx, dp_rng *r, float *z, int64_t count, float truncation) {
    if (!r || (!z && count > 0)) return dp_error(ctx, DP_ERR_NULL, "dp_gan_noise: r and z are required");
    if (count < 0) return dp_error(ctx, DP_ERR_ARG, "dp_gan_noise: count %lld is negative", (long long)count);
    if (truncation != 0.0f && !(truncation >= 0.01f)) /* also refuses NaN */
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_noise: truncation %g must be 0 (none) or at least 0.01", (double)truncation);
    for (int64_t i = 0; i < count; i++) {
        float v = dp_rng_normal(r);
        if (truncation > 0.0f)
            while (fabsf(v) > truncation) v = dp_rng_normal(r);
        z[i] = v;
    }
    return DP_OK;
}

dp_status dp_gan_grid(dp_ctx *ctx, const float *imgs, int64_t n, int c, int h, int w, int cols, int pad, dp_image *out) {
    if (!ctx) return DP_ERR_NULL;
    if (!imgs || !out) return dp_error(ctx, DP_ERR_NULL, "dp_gan_grid: imgs and out are required");
    memset(out, 0, sizeof *out);
    if (n < 1 || n > 65536 || (c != 1 && c != 3) || h < 1 || w < 1 || h > 4096 || w > 4096 || cols < 0 || pad < 0 || pad > 64)
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_grid: %lld images of %dx%dx%d, %d columns, padding %d: out of range",
                        (long long)n, c, h, w, cols, pad);
    if (cols == 0) {
        cols = (int)ceil(sqrt((double)n));
        if ((int64_t)cols * cols < n) cols++;
    }
    if (cols > n) cols = (int)n;
    int64_t rows = (n + cols - 1) / cols;
    int64_t W = (int64_t)cols * w + (int64_t)(cols + 1) * pad, H = rows * h + (rows + 1) * pad;
    if (W > 16384 || H > 16384)
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_grid: the grid would be %lldx%lld pixels (at most 16384 a side)",
                        (long long)W, (long long)H);
    dp_status s = dp_image_alloc(ctx, c, (int)H, (int)W, out);
    if (s) return s;
    for (int64_t i = 0; i < (int64_t)c * H * W; i++) out->data[i] = 1.0f;
    for (int64_t k = 0; k < n; k++) {
        int64_t r0 = pad + (k / cols) * (h + pad), c0 = pad + (k % cols) * (w + pad);
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++)
                memcpy(out->data + ((int64_t)ch * H + r0 + y) * W + c0, imgs + ((k * c + ch) * h + y) * (int64_t)w,
                       sizeof(float) * (size_t)w);
    }
    return DP_OK;
}
