/* GAN training (gan.h): a few DCGAN-28 steps on a tiny synthetic set for
 * each loss; exact resume (6 steps = 3 + checkpoint + 3, bit for bit: stats,
 * weights, moments); NaN/Inf handling (lr 1e30 → clear error naming the step,
 * the checkpoint intact); no allocation inside a step; the WGAN-GP penalty
 * gradient (finite-difference Hessian-vector product) against a numerical
 * derivative of the penalty; sampling (sampler = trainer, eval-mode
 * independence, truncation, grids, files, both labels read back); folder
 * loading; errors; and the
 * `doppel gan` CLI (train, resume, sample). DP_TEST_QUICK (the sanitizer run)
 * trims the heavier cases; DP_TEST_VALGRIND (memcheck) trains on batches of 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "doppel/doppel.h"
#include "gan/gan_internal.h"

static char g_dir[256];
static int g_quick;
static int g_vg;

/* DP_TEST_VALGRIND (scripts/valgrind.sh --suite): batches of 2 over sets scaled to keep the number of batches
 * per pass over the data, so every step, pass boundary and checkpoint happens as in the full test, with a
 * fraction of the arithmetic (one DCGAN-28 step of batch 8 takes minutes under memcheck). */
static int vb(int batch) { return g_vg ? 2 : batch; }
static int64_t vn(int64_t n, int batch) { return g_vg ? n * 2 / batch : n; }

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void rm_rf(const char *p) {
    struct stat st;
    if (lstat(p, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(p);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char q[1024];
            snprintf(q, sizeof q, "%s/%s", p, e->d_name);
            rm_rf(q);
        }
        if (d) closedir(d);
        rmdir(p);
    } else {
        unlink(p);
    }
}

static int setup(void **state) {
    dp_ctx *ctx;
    snprintf(g_dir, sizeof g_dir, "/tmp/dp_test_gan_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 2, .seed = 1}, &ctx) != DP_OK) return -1;
    *state = ctx;
    return 0;
}
static int teardown(void **state) {
    dp_ctx_free(*state);
    rm_rf(g_dir);
    return 0;
}

#define OK(expr)                                                                                  \
    do {                                                                                          \
        dp_status s_ = (expr);                                                                    \
        if (s_ != DP_OK) fail_msg("%s: %s (%s)", #expr, dp_status_name(s_), dp_ctx_error(ctx)); \
    } while (0)

static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay, needle);
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    p[len] = 0;
    *n = (size_t)len;
    return p;
}

/* A tiny 28x28 set: a bright square (4..9 px) somewhere on a dark, noisy background. */
static dp_dataset make_set(int64_t n, uint64_t seed) {
    dp_dataset ds = {0};
    ds.n = n;
    ds.channels = 1;
    ds.height = ds.width = 28;
    ds.pixels = malloc((size_t)n * 784);
    assert_non_null(ds.pixels);
    dp_rng r;
    dp_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        int s = 4 + (int)dp_rng_below(&r, 6), y0 = (int)dp_rng_below(&r, (uint32_t)(28 - s)), x0 = (int)dp_rng_below(&r, (uint32_t)(28 - s));
        for (int p = 0; p < 784; p++) {
            int y = p / 28, x = p % 28, v = (int)dp_rng_below(&r, 40);
            if (y >= y0 && y < y0 + s && x >= x0 && x < x0 + s) v += 200;
            ds.pixels[i * 784 + p] = (uint8_t)v;
        }
    }
    return ds;
}

static dp_gan *new_gan(dp_ctx *ctx, dp_gan_loss loss, int batch, int flip, const dp_dataset *ds) {
    dp_gan_opts o = {.arch = DP_GAN_DCGAN28, .loss = loss, .batch = batch, .flip = flip, .seed = 7};
    dp_gan *gan = NULL;
    OK(dp_gan_new(ctx, &o, &gan));
    if (ds) OK(dp_gan_set_data(gan, ds));
    return gan;
}

static int stats_finite(const dp_gan_stats *s) {
    return isfinite(s->loss_d) && isfinite(s->loss_g) && isfinite(s->d_real) && isfinite(s->d_fake) && isfinite(s->d_fake_g) &&
           isfinite(s->gp) && isfinite(s->grad_norm);
}

/* ------------------------------------------------------------ a few steps */
static void test_steps_finite(void **state) {
    dp_ctx *ctx = *state;
    dp_dataset ds = make_set(vn(40, 8), 1);
    const dp_gan_loss losses[3] = {DP_GAN_NS, DP_GAN_HINGE, DP_GAN_WGAN_GP};
    for (int li = 0; li < 3; li++) {
        dp_gan *gan = new_gan(ctx, losses[li], vb(8), li == 1, &ds);
        const dp_gan_opts *o = dp_gan_options(gan);
        assert_int_equal(o->nz, 100);
        assert_true(o->lr_g == 2e-4f && o->lr_d == 2e-4f && o->beta1 == 0.5f && o->beta2 == 0.999f);
        dp_tensor *gw = dp_paramset_find(dp_gan_generator(gan), "G.0.weight");
        dp_tensor *dw = dp_paramset_find(dp_gan_discriminator(gan), "D.2.weight");
        dp_tensor *bnw = dp_paramset_find(dp_gan_generator(gan), "G.1.weight");
        assert_non_null(gw);
        assert_non_null(dw);
        assert_non_null(bnw);
        /* DCGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) batch-norm weights */
        double m = 0, v = 0;
        int64_t n = dp_tensor_numel(gw);
        for (int64_t i = 0; i < n; i++) m += dp_tensor_f32(gw)[i], v += (double)dp_tensor_f32(gw)[i] * dp_tensor_f32(gw)[i];
        m /= (double)n;
        v = sqrt(v / (double)n - m * m);
        assert_true(fabs(m) < 1e-3 && fabs(v - 0.02) < 1e-3);
        assert_true(fabs(dp_tensor_f32(bnw)[0] - 1.0f) < 0.1f && dp_tensor_f32(bnw)[0] != 1.0f);
        float g0 = dp_tensor_f32(gw)[5], d0 = dp_tensor_f32(dw)[5];
        dp_gan_stats st;
        int steps = li == 0 ? 6 : 3; /* 40 images, batch 8 (10 and 2): step 6 starts a second pass over the data */
        for (int k = 1; k <= steps; k++) {
            OK(dp_gan_step(gan, &st));
            assert_int_equal(st.step, k);
            if (!stats_finite(&st)) fail_msg("%s step %d: non-finite stats", dp_gan_loss_name(losses[li]), k);
        }
        assert_int_equal(st.epoch, li == 0 ? 1 : 0);
        printf("  %-8s step %d: loss_d %.4f loss_g %.4f D(x) %.3f D(G(z)) %.3f -> %.3f gp %.4f |grad| %.3f\n",
               dp_gan_loss_name(losses[li]), steps, st.loss_d, st.loss_g, st.d_real, st.d_fake, st.d_fake_g, st.gp,
               st.grad_norm);
        if (losses[li] == DP_GAN_NS) {
            assert_true(st.d_real > 0 && st.d_real < 1 && st.d_fake > 0 && st.d_fake < 1);
            assert_true(st.loss_d > 0 && st.loss_g > 0);
        }
        if (losses[li] == DP_GAN_WGAN_GP) assert_true(st.gp > 0 && st.grad_norm > 0);
        else assert_true(st.gp == 0);
        assert_true(dp_tensor_f32(gw)[5] != g0 && dp_tensor_f32(dw)[5] != d0);
        assert_int_equal(dp_optim_steps(dp_gan_optim_g(gan)), steps);
        assert_int_equal(dp_optim_steps(dp_gan_optim_d(gan)), steps);
        assert_int_equal(dp_gan_steps(gan), steps);
        dp_gan_free(gan);
    }
    free(ds.pixels);
}

/* ------------------------------------------------------------ exact resume */
static int same_tensors(dp_paramset *a, dp_paramset *b) {
    if (dp_paramset_count(a) != dp_paramset_count(b)) return 0;
    for (int i = 0; i < dp_paramset_count(a); i++) {
        dp_tensor *x = dp_paramset_at(a, i), *y = dp_paramset_at(b, i);
        if (memcmp(dp_tensor_f32(x), dp_tensor_f32(y), sizeof(float) * (size_t)dp_tensor_numel(x))) {
            printf("  tensor %s differs\n", dp_tensor_name(x));
            return 0;
        }
    }
    return 1;
}
static int same_state(dp_optim *a, dp_optim *b) {
    if (dp_optim_state_count(a) != dp_optim_state_count(b) || dp_optim_steps(a) != dp_optim_steps(b)) return 0;
    for (int i = 0; i < dp_optim_state_count(a); i++) {
        dp_tensor *x = dp_optim_state_at(a, i, NULL), *y = dp_optim_state_at(b, i, NULL);
        if (memcmp(dp_tensor_f32(x), dp_tensor_f32(y), sizeof(float) * (size_t)dp_tensor_numel(x))) return 0;
    }
    return 1;
}

static void test_resume_exact(void **state) {
    dp_ctx *ctx = *state;
    dp_dataset ds = make_set(vn(20, 8), 2); /* batch 8: passes over the data at steps 3 and 5 */
    const dp_gan_loss losses[2] = {DP_GAN_NS, DP_GAN_WGAN_GP};
    for (int li = 0; li < (g_quick ? 1 : 2); li++) {
        dp_gan_loss loss = losses[li];
        dp_gan_stats a[6], b[6];
        dp_gan *full = new_gan(ctx, loss, vb(8), 1, &ds);
        for (int k = 0; k < 6; k++) OK(dp_gan_step(full, &a[k]));

        dp_gan *first = new_gan(ctx, loss, vb(8), 1, &ds);
        for (int k = 0; k < 3; k++) OK(dp_gan_step(first, &b[k]));
        const char *ck = tpath("resume.safetensors");
        const char *extra[] = {"note", "test", NULL};
        OK(dp_gan_save(first, ck, extra));
        dp_gan_free(first);

        dp_gan_opts o;
        int64_t step;
        OK(dp_gan_read_opts(ctx, ck, &o, &step));
        assert_int_equal(step, 3);
        assert_int_equal(o.loss, loss);
        assert_int_equal(o.batch, vb(8));
        assert_int_equal(o.flip, 1);
        assert_int_equal(o.seed, 7);
        assert_true(o.lr_g == 2e-4f && o.beta2 == 0.999f);
        char buf[64];
        OK(dp_checkpoint_meta(ctx, ck, "note", buf, sizeof buf));
        assert_string_equal(buf, "test");
        OK(dp_checkpoint_meta(ctx, ck, "doppel.arch", buf, sizeof buf));
        assert_string_equal(buf, "gan-dcgan28");

        /* a new trainer (other seed: everything must come from the file), data set after the load */
        o.seed = 999;
        dp_gan *second = NULL;
        OK(dp_gan_new(ctx, &o, &second));
        OK(dp_gan_load(second, ck));
        assert_int_equal(dp_gan_steps(second), 3);
        OK(dp_gan_set_data(second, &ds));
        for (int k = 3; k < 6; k++) OK(dp_gan_step(second, &b[k]));
        for (int k = 0; k < 6; k++) {
            if (memcmp(&a[k].loss_d, &b[k].loss_d, sizeof(float) * 5) || a[k].gp != b[k].gp)
                fail_msg("%s step %d: resumed %.9g %.9g, uninterrupted %.9g %.9g", dp_gan_loss_name(loss), k + 1, b[k].loss_d,
                         b[k].loss_g, a[k].loss_d, a[k].loss_g);
        }
        assert_true(same_tensors(dp_gan_generator(full), dp_gan_generator(second)));
        assert_true(same_tensors(dp_gan_discriminator(full), dp_gan_discriminator(second)));
        assert_true(same_state(dp_gan_optim_g(full), dp_gan_optim_g(second)));
        assert_true(same_state(dp_gan_optim_d(full), dp_gan_optim_d(second)));
        printf("  %s: steps 4..6 after a checkpoint at 3 equal the uninterrupted run bit for bit (loss_d %.9g)\n",
               dp_gan_loss_name(loss), b[5].loss_d);
        dp_gan_free(full);
        dp_gan_free(second);
    }
    free(ds.pixels);
}

/* ------------------------------------------------------------ NaN / Inf */
static void test_nan_stops(void **state) {
    dp_ctx *ctx = *state;
    dp_dataset ds = make_set(vn(24, 8), 3);
    dp_gan *gan = new_gan(ctx, DP_GAN_NS, vb(8), 0, &ds);
    for (int k = 0; k < 2; k++) OK(dp_gan_step(gan, NULL));
    const char *ck = tpath("good.safetensors");
    OK(dp_gan_save(gan, ck, NULL));
    dp_gan_free(gan);
    size_t n0, n1;
    uint8_t *before = read_file(ck, &n0);

    /* the same run continued with an absurd learning rate */
    dp_gan_opts o;
    OK(dp_gan_read_opts(ctx, ck, &o, NULL));
    o.lr_d = o.lr_g = 1e30f;
    OK(dp_gan_new(ctx, &o, &gan));
    OK(dp_gan_set_data(gan, &ds));
    OK(dp_gan_load(gan, ck));
    dp_status s = DP_OK;
    int k;
    for (k = 0; k < 5 && s == DP_OK; k++) s = dp_gan_step(gan, NULL);
    assert_int_equal(s, DP_ERR_NUMERIC);
    printf("  lr 1e30: %s\n", dp_ctx_error(ctx));
    char want[32];
    snprintf(want, sizeof want, "step %d:", 2 + k);
    assert_contains(dp_ctx_error(ctx), want);
    assert_true(strstr(dp_ctx_error(ctx), "NaN") || strstr(dp_ctx_error(ctx), "infinite") ||
                strstr(dp_ctx_error(ctx), "not finite"));
    /* stopped for good: no more steps, no checkpoint over the good one */
    assert_int_equal(dp_gan_step(gan, NULL), DP_ERR_STATE);
    assert_int_equal(dp_gan_save(gan, ck, NULL), DP_ERR_STATE);
    assert_contains(dp_ctx_error(ctx), "last good");
    uint8_t *after = read_file(ck, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    /* the checkpoint still loads, into this trainer too, which may then go on */
    OK(dp_gan_load(gan, ck));
    assert_int_equal(dp_gan_steps(gan), 2);
    dp_gan_free(gan);
    o.lr_d = o.lr_g = 2e-4f;
    OK(dp_gan_new(ctx, &o, &gan));
    OK(dp_gan_set_data(gan, &ds));
    OK(dp_gan_load(gan, ck));
    OK(dp_gan_step(gan, NULL));
    dp_gan_free(gan);
    free(before);
    free(after);
    free(ds.pixels);
}

/* ------------------------------------------------------------ no allocation in a step */
static atomic_long n_allocs;
static atomic_int counting;
static void *count_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    if (size == 0) size = 1;
    size = (size + align - 1) / align * align;
    return aligned_alloc(align, size);
}
static void count_free(void *p, void *user) {
    (void)user;
    free(p);
}

static void test_no_alloc(void **state) {
    (void)state;
    static const dp_allocator al = {count_alloc, count_free, NULL};
    dp_ctx *ctx = NULL;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 2, .seed = 1, .allocator = &al}, &ctx), DP_OK);
    dp_dataset ds = make_set(vn(16, 8), 4);
    const dp_gan_loss losses[2] = {DP_GAN_NS, DP_GAN_WGAN_GP};
    for (int li = 0; li < 2; li++) {
        dp_gan *gan = new_gan(ctx, losses[li], vb(8), 1, &ds);
        OK(dp_gan_step(gan, NULL));
        atomic_store(&n_allocs, 0);
        atomic_store(&counting, 1);
        dp_status s = DP_OK;
        for (int k = 0; k < 3; k++) s = s ? s : dp_gan_step(gan, NULL); /* steps 2..4; step 3 starts a new pass */
        atomic_store(&counting, 0);
        OK(s);
        printf("  %s: steps 2..4 made %ld allocations\n", dp_gan_loss_name(losses[li]), atomic_load(&n_allocs));
        assert_int_equal(atomic_load(&n_allocs), 0);
        dp_gan_free(gan);
    }
    free(ds.pixels);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ WGAN-GP penalty gradient */
/* The trainer's gradient of P(θ) = λ/B Σ (‖∇x̂ s‖ - 1)² with respect to D's
 * parameters (a central difference of two backward passes through D with its
 * activation pattern frozen at x̂) against the numerical derivative of P
 * along directions in θ. P is evaluated with the pattern frozen too (it is
 * P itself inside the linear region of θ, and smooth): that is the
 * derivative double backward computes. */
static void test_gp_gradient(void **state) {
    dp_ctx *ctx = *state;
    const int batch = vb(4);
    dp_dataset ds = make_set(vn(16, 4), 5);
    dp_gan *gan = new_gan(ctx, DP_GAN_WGAN_GP, batch, 0, &ds);
    for (int k = 0; k < 2; k++) OK(dp_gan_step(gan, NULL)); /* away from the initialisation */
    float *xh = gan_test_xhat(gan);
    assert_non_null(xh);
    dp_rng r;
    dp_rng_seed(&r, 11);
    for (int i = 0; i < batch * 784; i++) xh[i] = 2.0f * dp_rng_uniform(&r) - 1.0f;
    dp_paramset *psd = dp_gan_discriminator(gan);
    int np = dp_paramset_count(psd);
    int64_t total = 0;
    for (int i = 0; i < np; i++)
        if (!dp_paramset_is_buffer(psd, i)) total += dp_tensor_numel(dp_paramset_at(psd, i));
    float *theta = malloc(sizeof(float) * (size_t)total), *grad = malloc(sizeof(float) * (size_t)total),
          *u = malloc(sizeof(float) * (size_t)total);
    assert_true(theta && grad && u);
#define FOR_PARAMS(body)                                                                         \
    do {                                                                                         \
        int64_t off_ = 0;                                                                        \
        for (int i_ = 0; i_ < np; i_++) {                                                        \
            if (dp_paramset_is_buffer(psd, i_)) continue;                                        \
            dp_tensor *t_ = dp_paramset_at(psd, i_);                                             \
            float *p_ = dp_tensor_f32(t_), *g_ = dp_tensor_f32(dp_param_grad(t_));               \
            int64_t n_ = dp_tensor_numel(t_);                                                    \
            (void)g_;                                                                            \
            (void)p_;                                                                            \
            body;                                                                                \
            off_ += n_;                                                                          \
        }                                                                                        \
    } while (0)
    FOR_PARAMS(memcpy(theta + off_, p_, sizeof(float) * (size_t)n_));
    const char *dv = getenv("DP_GP_DELTA"); /* to measure other steps than the trainer's */
    if (dv) gan_test_set_gp_delta(gan, (float)atof(dv));
    float p0, pf, nrm, v;
    OK(dp_paramset_zero_grad(psd));
    OK(gan_test_penalty(gan, 1, &p0, &nrm));
    FOR_PARAMS(memcpy(grad + off_, g_, sizeof(float) * (size_t)n_));
    OK(gan_test_penalty_frozen(gan, &pf));
    printf("  P %.6g (frozen pattern %.6g), mean |grad_x D| %.4g\n", (double)p0, (double)pf, (double)nrm);
    assert_true(fabs(pf - p0) <= 1e-5 * fabs(p0));
    double gn = 0;
    for (int64_t k = 0; k < total; k++) gn += (double)grad[k] * grad[k];
    gn = sqrt(gn);
    double worst = 0;
    for (int trial = 0; trial < 4; trial++) {
        /* directions: the gradient itself, then random unit vectors */
        double un = 0, dot = 0;
        for (int64_t k = 0; k < total; k++) {
            u[k] = trial == 0 ? grad[k] : dp_rng_normal(&r);
            un += (double)u[k] * u[k];
        }
        un = sqrt(un);
        for (int64_t k = 0; k < total; k++) u[k] = (float)(u[k] / un), dot += (double)u[k] * grad[k];
        double eps = 1e-3, pp, pm;
        FOR_PARAMS(for (int64_t k = 0; k < n_; k++) p_[k] = theta[off_ + k] + (float)eps * u[off_ + k]);
        OK(gan_test_penalty_frozen(gan, &v));
        pp = v;
        FOR_PARAMS(for (int64_t k = 0; k < n_; k++) p_[k] = theta[off_ + k] - (float)eps * u[off_ + k]);
        OK(gan_test_penalty_frozen(gan, &v));
        pm = v;
        FOR_PARAMS(memcpy(p_, theta + off_, sizeof(float) * (size_t)n_));
        double num = (pp - pm) / (2 * eps), err = fabs(num - dot) / gn; /* relative to |grad P| */
        if (err > worst) worst = err;
        printf("  %s: dP numeric %.6g, trainer %.6g (error %.1e of |grad P| %.4g)\n", trial ? "random direction" : "along grad P",
               num, dot, err, gn);
    }
    assert_true(worst < 1e-2);
#undef FOR_PARAMS
    free(theta);
    free(grad);
    free(u);
    dp_gan_free(gan);
    free(ds.pixels);
}

/* gan_build_d_act (the penalty's D) is dp_model_dcgan*_d_logits, bit for bit;
 * with masks from its own pattern it computes the same values. */
static void test_d_builders(void **state) {
    dp_ctx *ctx = *state;
    for (int ai = 0; ai < 2; ai++) {
        dp_gan_arch arch = ai ? DP_GAN_DCGAN64 : DP_GAN_DCGAN28;
        int c, h, w;
        dp_gan_arch_shape(arch, &c, &h, &w);
        dp_paramset *ps;
        dp_graph *g;
        OK(dp_paramset_new(ctx, &ps));
        OK(dp_graph_new(ctx, &g));
        int64_t shape[4] = {3, c, h, w};
        dp_node *x = dp_input(g, "x", 4, shape), *pre[GAN_D_MAX_ACT], *mask[GAN_D_MAX_ACT];
        int n_pre = 0;
        dp_node *a = gan_build_d(g, ps, arch, x), *b = gan_build_d_act(g, ps, arch, x, NULL, pre, &n_pre);
        assert_int_equal(n_pre, ai ? 4 : 2);
        for (int k = 0; k < n_pre; k++) {
            const dp_tensor *t = dp_node_value(pre[k]);
            mask[k] = dp_input(g, k ? "m1" : "m0", dp_tensor_ndim(t), dp_tensor_shape(t));
        }
        dp_node *m = gan_build_d_act(g, ps, arch, x, mask, NULL, NULL);
        OK(dp_graph_mark_output(g, a));
        OK(dp_graph_mark_output(g, b));
        OK(dp_graph_mark_output(g, m));
        for (int k = 0; k < n_pre; k++) OK(dp_graph_mark_output(g, pre[k]));
        OK(dp_graph_compile(g));
        OK(dp_graph_set_training(g, 1));
        float *xv = dp_tensor_f32(dp_node_value(x));
        dp_rng r;
        dp_rng_seed(&r, 1);
        for (int64_t i = 0; i < dp_tensor_numel(dp_node_value(x)); i++) xv[i] = dp_rng_normal(&r);
        OK(dp_graph_invalidate(g));
        OK(dp_graph_forward(g, 1, &b));
        for (int k = 0; k < n_pre; k++) {
            const float *p = dp_tensor_f32(dp_node_value(pre[k]));
            float *mv = dp_tensor_f32(dp_node_value(mask[k]));
            for (int64_t i = 0; i < dp_tensor_numel(dp_node_value(pre[k])); i++) mv[i] = p[i] > 0 ? 1.0f : 0.2f;
        }
        OK(dp_graph_forward(g, 1, &a));
        OK(dp_graph_forward(g, 1, &m));
        assert_memory_equal(dp_tensor_f32(dp_node_value(a)), dp_tensor_f32(dp_node_value(b)), 3 * sizeof(float));
        assert_memory_equal(dp_tensor_f32(dp_node_value(a)), dp_tensor_f32(dp_node_value(m)), 3 * sizeof(float));
        dp_graph_free(g);
        dp_paramset_free(ps);
    }
}

/* ------------------------------------------------------------ sampling */
static void test_sample(void **state) {
    dp_ctx *ctx = *state;
    dp_dataset ds = make_set(vn(16, 8), 6);
    dp_gan *gan = new_gan(ctx, DP_GAN_NS, vb(8), 0, &ds);
    for (int k = 0; k < 2; k++) OK(dp_gan_step(gan, NULL));
    const char *ck = tpath("s.safetensors");
    OK(dp_gan_save(gan, ck, NULL));
    dp_gan_sampler *sm = NULL;
    OK(dp_gan_sampler_load(ctx, ck, 4, &sm));
    assert_int_equal(dp_gan_sampler_arch(sm), DP_GAN_DCGAN28);
    assert_int_equal(dp_gan_sampler_nz(sm), 100);
    assert_int_equal(dp_gan_sampler_step(sm), 2);
    assert_int_equal(dp_gan_sampler_model_id(sm), dp_gan_model_id(gan));
    char idhex[16], want[16];
    OK(dp_checkpoint_meta(ctx, ck, "doppel.gan.model_id", idhex, sizeof idhex));
    snprintf(want, sizeof want, "%08x", (unsigned)dp_gan_model_id(gan));
    assert_string_equal(idhex, want);

    enum { N = 7 };
    float z[N * 100], a[N * 784], b[N * 784], one[784];
    dp_rng r;
    dp_rng_seed(&r, 3);
    OK(dp_gan_noise(ctx, &r, z, N * 100, 0.5f));
    for (int i = 0; i < N * 100; i++) assert_true(fabsf(z[i]) <= 0.5f);
    assert_int_equal(dp_gan_noise(ctx, &r, z, 10, 0.001f), DP_ERR_ARG);
    dp_rng_seed(&r, 3);
    OK(dp_gan_noise(ctx, &r, z, N * 100, 0.0f));
    OK(dp_gan_sampler_generate(sm, z, N, a)); /* batches of 4: 4 + 3 */
    OK(dp_gan_generate(gan, z, N, b));        /* batch 64 */
    for (int i = 0; i < N * 784; i++) {
        assert_true(a[i] >= 0.0f && a[i] <= 1.0f);
        if (fabsf(a[i] - b[i]) > 1e-5f) fail_msg("element %d: sampler %g, trainer %g", i, a[i], b[i]);
    }
    /* eval mode: an image depends on its own z only */
    OK(dp_gan_sampler_generate(sm, z + 5 * 100, 1, one));
    for (int i = 0; i < 784; i++) assert_true(fabsf(one[i] - a[5 * 784 + i]) < 1e-5f);
    /* sampling does not touch the training state */
    dp_gan_stats s1;
    OK(dp_gan_step(gan, &s1));
    assert_true(isfinite(s1.loss_d));

    dp_image grid = {0};
    OK(dp_gan_grid(ctx, a, N, 1, 28, 28, 0, 2, &grid));
    assert_int_equal(grid.width, 3 * 28 + 4 * 2);
    assert_int_equal(grid.height, 3 * 28 + 4 * 2);
    assert_true(grid.data[0] == 1.0f);
    assert_true(grid.data[2 * grid.width + 2] == a[0]);
    dp_label_info info = {.model = "dcgan28 test step 2", .model_id = dp_gan_sampler_model_id(sm)};
    OK(dp_write_synthetic(ctx, tpath("grid.png"), &grid, &info, 0));
    dp_image im = {.channels = 1, .height = 28, .width = 28, .data = a};
    OK(dp_write_synthetic(ctx, tpath("one.jpg"), &im, &info, 90));
    dp_image back = {0};
    OK(dp_image_load(ctx, tpath("grid.png"), 0, NULL, &back));
    assert_int_equal(back.width, grid.width);
    dp_image_free(ctx, &back);
    /* both labels: the metadata and the watermark carry the generator's id */
    dp_label_check lc;
    OK(dp_label_check_file(ctx, tpath("grid.png"), &lc));
    assert_true(lc.watermark.found && lc.watermark.model_id == dp_gan_sampler_model_id(sm));
    assert_true(lc.meta.ai_generated && lc.meta.has_model_id && lc.meta.model_id == dp_gan_sampler_model_id(sm));
    assert_string_equal(lc.meta.model, "dcgan28 test step 2");
    struct stat st;
    assert_int_equal(stat(tpath("one.jpg"), &st), 0);
    dp_image_free(ctx, &grid);
    assert_int_equal(dp_gan_grid(ctx, a, 0, 1, 28, 28, 0, 2, &grid), DP_ERR_ARG);
    dp_gan_sampler_free(sm);

    /* not a GAN checkpoint */
    dp_paramset *ps;
    OK(dp_paramset_new(ctx, &ps));
    dp_tensor *t;
    OK(dp_paramset_get_or_add(ps, "w", 1, (int64_t[]){3}, 0, NULL, &t));
    OK(dp_checkpoint_save(tpath("other.safetensors"), ps, NULL, "meso4", NULL));
    assert_int_equal(dp_gan_sampler_load(ctx, tpath("other.safetensors"), 0, &sm), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "not a GAN checkpoint");
    assert_int_equal(dp_gan_load(gan, tpath("other.safetensors")), DP_ERR_FORMAT);
    assert_int_equal(dp_gan_sampler_load(ctx, tpath("missing.safetensors"), 0, &sm), DP_ERR_IO);
    dp_paramset_free(ps);
    dp_gan_free(gan);
    free(ds.pixels);
}

/* ------------------------------------------------------------ errors */
static void test_errors(void **state) {
    dp_ctx *ctx = *state;
    dp_gan *gan = NULL;
    assert_int_equal(dp_gan_new(ctx, &(dp_gan_opts){.batch = 1}, &gan), DP_ERR_ARG);
    assert_contains(dp_ctx_error(ctx), "batch");
    assert_int_equal(dp_gan_new(ctx, &(dp_gan_opts){.arch = (dp_gan_arch)7}, &gan), DP_ERR_ARG);
    assert_int_equal(dp_gan_new(ctx, &(dp_gan_opts){.loss = (dp_gan_loss)9}, &gan), DP_ERR_ARG);
    assert_int_equal(dp_gan_new(ctx, &(dp_gan_opts){.lr_d = -1}, &gan), DP_ERR_ARG);
    assert_int_equal(dp_gan_new(ctx, &(dp_gan_opts){.beta1 = 1.5f, .beta2 = 0.9f}, &gan), DP_ERR_ARG);
    assert_null(gan);
    assert_int_equal(dp_gan_new(NULL, NULL, &gan), DP_ERR_NULL);
    gan = new_gan(ctx, DP_GAN_NS, 8, 0, NULL);
    assert_int_equal(dp_gan_step(gan, NULL), DP_ERR_STATE);
    assert_contains(dp_ctx_error(ctx), "no data");
    dp_dataset ds = make_set(6, 7);
    assert_int_equal(dp_gan_set_data(gan, &ds), DP_ERR_ARG); /* fewer images than a batch */
    ds.height = 27;
    ds.n = 4;
    assert_int_equal(dp_gan_set_data(gan, &ds), DP_ERR_SHAPE);
    assert_contains(dp_ctx_error(ctx), "1x28x28");
    free(ds.pixels);
    /* a checkpoint of another noise size */
    dp_gan *g50 = NULL;
    OK(dp_gan_new(ctx, &(dp_gan_opts){.nz = 50, .batch = 4}, &g50));
    OK(dp_gan_save(g50, tpath("nz50.safetensors"), NULL));
    assert_int_equal(dp_gan_load(gan, tpath("nz50.safetensors")), DP_ERR_ARG);
    assert_contains(dp_ctx_error(ctx), "nz 50");
    /* reserved metadata keys */
    assert_int_equal(dp_gan_save(g50, tpath("x.safetensors"), (const char *[]){"doppel.gan.step", "5", NULL}), DP_ERR_ARG);
    dp_gan_free(g50);
    /* names */
    dp_gan_arch a;
    dp_gan_loss l;
    assert_true(dp_gan_arch_parse("dcgan64", &a) && a == DP_GAN_DCGAN64);
    assert_false(dp_gan_arch_parse("dcgan32", &a));
    assert_true(dp_gan_loss_parse("wgan-gp", &l) && l == DP_GAN_WGAN_GP);
    assert_false(dp_gan_loss_parse("wgan", &l));
    assert_string_equal(dp_gan_loss_name(DP_GAN_HINGE), "hinge");
    int c, h, w;
    assert_true(dp_gan_arch_shape(DP_GAN_DCGAN64, &c, &h, &w) && c == 3 && h == 64 && w == 64);
    dp_gan_free(gan);
    dp_gan_free(NULL);
}

/* ------------------------------------------------------------ folders */
static void write_png(dp_ctx *ctx, const char *path, int c, int h, int w, float v) {
    dp_image im;
    OK(dp_image_alloc(ctx, c, h, w, &im));
    for (int i = 0; i < c * h * w; i++) im.data[i] = v * (float)((i % w) + 1) / (float)w;
    OK(dp_image_save_png(ctx, path, &im));
    dp_image_free(ctx, &im);
}

static void quiet_warn(void *user, const char *msg) {
    (void)msg;
    (*(int *)user)++;
}

static void test_folder(void **state) {
    dp_ctx *ctx = *state;
    mkdir(tpath("faces"), 0777);
    mkdir(tpath("faces/sub"), 0777);
    write_png(ctx, tpath("faces/a.png"), 3, 109, 89, 0.9f); /* CelebA's shape */
    write_png(ctx, tpath("faces/sub/b.png"), 1, 40, 60, 0.5f);
    write_png(ctx, tpath("faces/.hidden.png"), 3, 10, 10, 0.5f);
    FILE *f = fopen(tpath("faces/c.jpg"), "wb");
    fputs("not a jpeg", f);
    fclose(f);
    int warned = 0;
    dp_folder_opts fo = {.channels = 3, .height = 64, .width = 64, .warn = quiet_warn, .warn_user = &warned};
    dp_dataset *ds = NULL;
    OK(dp_gan_images_from_folder(ctx, tpath("faces"), &fo, &ds));
    assert_int_equal(ds->n, 2);
    assert_int_equal(ds->skipped, 1);
    assert_int_equal(warned, 1);
    assert_int_equal(ds->channels, 3);
    assert_int_equal(ds->height, 64);
    assert_int_equal(ds->n_classes, 1);
    /* 89x109 → the centred 89x89 square scaled to 64: the columns keep their ramp */
    assert_true(ds->pixels[63] > ds->pixels[0]);
    dp_dataset_free(ds);
    fo.limit = 1;
    OK(dp_gan_images_from_folder(ctx, tpath("faces"), &fo, &ds));
    assert_int_equal(ds->n + ds->skipped, 1);
    dp_dataset_free(ds);
    mkdir(tpath("empty"), 0777);
    assert_int_equal(dp_gan_images_from_folder(ctx, tpath("empty"), &fo, &ds), DP_ERR_NOT_FOUND);
    assert_int_equal(dp_gan_images_from_folder(ctx, tpath("nowhere"), &fo, &ds), DP_ERR_IO);
    assert_int_equal(dp_gan_images_from_folder(ctx, tpath("faces/a.png"), &fo, &ds), DP_ERR_ARG);
}

/* --face-crop: a CelebA photo keeps its face (cut out around it), a flat image
 * without a face is left out and counted; the crop differs from the plain fit. */
static void test_face_crop(void **state) {
    dp_ctx *ctx = *state;
    char src[600];
    snprintf(src, sizeof src, "%s/data/faces/real-celeba/000001.jpg", DP_SHARED_DIR);
    dp_face_detector *det = NULL;
    struct stat st;
    if (stat(src, &st) != 0 || dp_face_detector_default(ctx, &det) != DP_OK) {
        printf("skipped: needs %s and opencv-data's frontal face cascade\n", src);
        dp_ctx_clear_error(ctx);
        skip();
    }
    mkdir(tpath("fc"), 0777);
    size_t n;
    uint8_t *jpg = read_file(src, &n);
    FILE *f = fopen(tpath("fc/a.jpg"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(jpg, 1, n, f), n);
    fclose(f);
    free(jpg);
    write_png(ctx, tpath("fc/b.png"), 3, 109, 89, 0.0f); /* black: no face */
    dp_folder_opts fo = {.channels = 3, .height = 64, .width = 64};
    dp_gan_face_crop fc = {.det = det};
    dp_dataset *ds = NULL, *plain = NULL;
    OK(dp_gan_images_from_folder_faces(ctx, tpath("fc"), &fo, &fc, &ds));
    assert_int_equal(ds->n, 1);
    assert_int_equal(fc.no_face, 1);
    assert_int_equal(ds->skipped, 0);
    fo.limit = 1; /* a.jpg alone */
    OK(dp_gan_images_from_folder(ctx, tpath("fc"), &fo, &plain));
    assert_int_equal(plain->n, 1);
    long diff = 0;
    for (int i = 0; i < 3 * 64 * 64; i++) diff += labs((long)ds->pixels[i] - (long)plain->pixels[i]);
    assert_true(diff > 3 * 64 * 64); /* the face crop zooms in: a different picture */
    dp_dataset_free(ds);
    dp_dataset_free(plain);
    /* a folder with no face at all; bad margins */
    fo.limit = 0;
    unlink(tpath("fc/a.jpg"));
    assert_int_equal(dp_gan_images_from_folder_faces(ctx, tpath("fc"), &fo, &fc, &ds), DP_ERR_NOT_FOUND);
    assert_non_null(strstr(dp_ctx_error(ctx), "no face"));
    fc.margin = -1;
    assert_int_equal(dp_gan_images_from_folder_faces(ctx, tpath("fc"), &fo, &fc, &ds), DP_ERR_ARG);
    fc.det = NULL;
    assert_int_equal(dp_gan_images_from_folder_faces(ctx, tpath("fc"), &fo, &fc, &ds), DP_ERR_NULL);
    dp_face_detector_free(det);
}

/* ------------------------------------------------------------ the CLI */
#ifdef DP_CLI_PATH
static int run_cli(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s/out.txt' 2> '%s/err.txt'", DP_CLI_PATH, args, g_dir, g_dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
static char *cli_text(const char *name) {
    size_t n;
    return (char *)read_file(tpath(name), &n);
}
static void expect_cli(const char *args, int status, const char *file, const char *needle) {
    int st = run_cli(args);
    char *o = cli_text("out.txt"), *e = cli_text("err.txt");
    if (st != status) fail_msg("doppel %s: exit %d, expected %d\nstdout: %s\nstderr: %s", args, st, status, o, e);
    if (needle) assert_contains(!strcmp(file, "out.txt") ? o : e, needle);
    free(o);
    free(e);
}

/* The loss columns of metrics.csv (step, loss_d, loss_g, d_real, d_fake), without time and rate. */
static char *csv_losses(const char *path) {
    size_t n;
    char *t = (char *)read_file(path, &n), *out = calloc(n + 1, 1), *o = out;
    for (char *line = t; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int col = 0;
        for (char *f = line, *c; f; f = c ? c + 1 : NULL, col++) {
            c = strchr(f, ',');
            size_t len = c ? (size_t)(c - f) : strlen(f);
            if (col == 0 || (col >= 2 && col <= 5)) {
                if (col) *o++ = ',';
                memcpy(o, f, len);
                o += len;
            }
        }
        *o++ = '\n';
        if (!nl) break;
        line = nl + 1;
    }
    *o = 0;
    free(t);
    return out;
}

static void test_cli(void **state) {
    dp_ctx *ctx = *state;
    /* Fashion-MNIST look-alike in a --data-dir */
    mkdir(tpath("fm"), 0777);
    dp_dataset ds = make_set(48, 8);
    char p[700];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", tpath("fm"));
    OK(dp_idx_write(ctx, p, 3, (const int64_t[]){48, 28, 28}, ds.pixels));
    memset(ds.pixels, 0, 48);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", tpath("fm"));
    OK(dp_idx_write(ctx, p, 1, (const int64_t[]){48}, ds.pixels));
    free(ds.pixels);

    expect_cli("gan --help", 0, "out.txt", "doppel gan train");
    expect_cli("gan", 2, "err.txt", "usage");
    expect_cli("gan frobnicate", 2, "err.txt", "unknown subcommand");
    expect_cli("gan train --steps 5", 2, "err.txt", "--out RUN");
    expect_cli("gan train --out x --arch dcgan32", 2, "err.txt", "--arch must be");
    expect_cli("gan train --out x --loss wgan", 2, "err.txt", "--loss must be");
    expect_cli("gan train --out x --batch 1", 2, "err.txt", "--batch");
    expect_cli("gan train --out x --face-crop", 2, "err.txt", "--face-crop applies to folders");
    expect_cli("gan train --out x --images y", 2, "err.txt", "--images is for 'eval'");
    expect_cli("gan eval --images x --untrained", 2, "err.txt", "exactly one of");
    expect_cli("gan train --out x --arch dcgan64", 2, "err.txt", "use --arch dcgan28");
    expect_cli("gan sample --model x", 2, "err.txt", "--grid FILE and/or --out DIR");

    char args[2048], run1[600], run2[600];
    snprintf(run1, sizeof run1, "%s", tpath("run1"));
    snprintf(run2, sizeof run2, "%s", tpath("run2"));
    const char *common = "--batch 8 --threads 2 --quiet --flip --sample-every 3 --ckpt-every 2";
    snprintf(args, sizeof args, "gan train --data-dir %s --out %s --steps 6 %s", tpath("fm"), run1, common);
    expect_cli(args, 0, "out.txt", "trained 6 steps");
    snprintf(args, sizeof args, "gan train --data-dir %s --out %s --steps 3 %s", tpath("fm"), run2, common);
    expect_cli(args, 0, "out.txt", "trained 3 steps");
    /* an existing run needs --resume; a resumed run refuses other settings */
    expect_cli(args, 1, "err.txt", "--resume");
    snprintf(args, sizeof args, "gan train --data-dir %s --out %s --steps 6 --resume --batch 16", tpath("fm"), run2);
    expect_cli(args, 2, "err.txt", "--batch differs");
    snprintf(args, sizeof args, "gan train --out %s --steps 6 --resume --threads 2 --quiet", run2); /* data from the checkpoint */
    expect_cli(args, 0, "out.txt", "resuming");
    char m1[700], m2[700];
    snprintf(m1, sizeof m1, "%s/metrics.csv", run1);
    snprintf(m2, sizeof m2, "%s/metrics.csv", run2);
    char *a = csv_losses(m1), *b = csv_losses(m2);
    assert_string_equal(a, b);
    assert_contains(a, "step,loss_d,loss_g,d_real,d_fake\n1,");
    assert_contains(a, "\n6,");
    free(a);
    free(b);
    struct stat st;
    snprintf(p, sizeof p, "%s/samples/step_000003.png", run1);
    assert_int_equal(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/samples/step_000006.png", run2);
    assert_int_equal(stat(p, &st), 0);
    dp_label_check lc; /* training grids are labelled: "dcgan28 run RUN step N", G's id */
    OK(dp_label_check_file(ctx, p, &lc));
    assert_true(lc.watermark.found && lc.meta.ai_generated);
    assert_contains(lc.meta.model, "step 6");
    dp_gan_sampler *sm = NULL;
    snprintf(p, sizeof p, "%s/ckpt.safetensors", run2);
    OK(dp_gan_sampler_load(ctx, p, 0, &sm));
    assert_int_equal(lc.watermark.model_id, dp_gan_sampler_model_id(sm));
    dp_gan_sampler_free(sm);
    snprintf(args, sizeof args, "gan train --data-dir %s --out %s --steps 6 --resume --quiet", tpath("fm"), run2);
    expect_cli(args, 0, "out.txt", "nothing to do");

    /* sample: a grid and single files from the run folder */
    snprintf(args, sizeof args, "gan sample --model %s -n 5 --grid %s --out %s --format jpg --truncation 1.5 --seed 4", run1,
             tpath("g.png"), tpath("singles"));
    expect_cli(args, 0, "out.txt", "5 images");
    assert_int_equal(stat(tpath("g.png"), &st), 0);
    assert_int_equal(stat(tpath("singles/sample_000004.jpg"), &st), 0);
    snprintf(args, sizeof args, "gan sample --model %s -n 3 --grid %s", tpath("nothing"), tpath("g2.png"));
    expect_cli(args, 1, "err.txt", "nothing");
    snprintf(args, sizeof args, "gan sample --model %s -n 3 --grid %s", run1, tpath("g.gif"));
    expect_cli(args, 2, "err.txt", "--grid must end");
    /* export: G alone, the same model id, and sample reads it */
    snprintf(args, sizeof args, "gan export --model %s --out %s", run1, tpath("g.safetensors"));
    expect_cli(args, 0, "out.txt", "no discriminator");
    snprintf(args, sizeof args, "gan export --model %s --out %s", run1, tpath("g.bin"));
    expect_cli(args, 2, "err.txt", "--out must end in .safetensors");
    {
        dp_gan_sampler *s1 = NULL, *s2 = NULL;
        snprintf(p, sizeof p, "%s/ckpt.safetensors", run1);
        OK(dp_gan_sampler_load(ctx, p, 0, &s1));
        OK(dp_gan_sampler_load(ctx, tpath("g.safetensors"), 0, &s2));
        assert_int_equal(dp_gan_sampler_model_id(s1), dp_gan_sampler_model_id(s2));
        assert_int_equal(dp_gan_sampler_step(s1), dp_gan_sampler_step(s2));
        dp_gan_sampler_free(s1);
        dp_gan_sampler_free(s2);
    }
    snprintf(args, sizeof args, "gan sample --model %s -n 2 --grid %s", tpath("g.safetensors"), tpath("g3.png"));
    expect_cli(args, 0, "out.txt", "2 images");

    /* an image folder (grey 28x28 for dcgan28) */
    mkdir(tpath("imgs"), 0777);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%d.png", tpath("imgs"), i);
        write_png(ctx, p, 3, 30 + i, 32, 0.2f * (float)(i + 1));
    }
    snprintf(args, sizeof args, "gan train --data %s --arch dcgan28 --out %s --steps 2 --batch 4 --quiet", tpath("imgs"),
             tpath("run3"));
    expect_cli(args, 0, "out.txt", "4 images 1x28x28");
    /* eval --images: generated images from a folder (here: the same images as the real data) */
    mkdir(tpath("imgs6"), 0777);
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%d.png", tpath("imgs6"), i);
        write_png(ctx, p, 1, 28, 28, 0.1f * (float)(i + 1));
    }
    snprintf(args, sizeof args, "gan eval --images %s --data %s --arch dcgan28 -n 6 --json --threads 1", tpath("imgs6"),
             tpath("imgs6"));
    expect_cli(args, 0, "out.txt", "\"spectral_distance\":0,");
    expect_cli(args, 0, "out.txt", "\"generator\":\"images in ");
}
#else
static void test_cli(void **state) {
    (void)state;
    printf("skipped: DP_CLI_PATH not defined\n");
    skip();
}
#endif

int main(void) {
    g_quick = getenv("DP_TEST_QUICK") != NULL;
    g_vg = getenv("DP_TEST_VALGRIND") != NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_steps_finite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_stops, setup, teardown),
        cmocka_unit_test(test_no_alloc),
        cmocka_unit_test_setup_teardown(test_gp_gradient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_d_builders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_face_crop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
