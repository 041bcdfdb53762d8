/* Batch normalisation (NCHW, statistics per channel over N,H,W).
 *
 * Inputs: in[0] = x, then gamma and/or beta when given; ip[0] / ip[1] hold
 * their positions in in[] (-1 = absent), so any of the four affine variants
 * works. fp[0] = momentum, fp[1] = eps. ext[0] / ext[1] = running mean / var
 * (buffers, may be NULL). ip[2] is written by forward: 1 when it normalised
 * with the batch statistics, so backward differentiates through them.
 * aux = mean[C] then invstd[C], the statistics forward actually used.
 * Work is split over channels (each channel's sums in a fixed order, so
 * results do not depend on the thread count); rows go to kernels/ew.h. */
#include <assert.h>
#include <math.h>

#include "core/internal.h"
#include "kernels/ew.h"

enum { BN_GAMMA = 0, BN_BETA = 1, BN_BATCH = 2 };

static dp_status check_vec(dp_graph *g, dp_node *n, const dp_tensor *t, const char *what, int64_t C) {
    char b[64];
    if (t->ndim != 1 || t->shape[0] != C)
        return dp_node_error(g, n, DP_ERR_SHAPE, "%s has shape %s, expected [%lld]", what, DP_SHAPE_STR(t, b), (long long)C);
    if (t->dtype != DP_F32) return dp_node_error(g, n, DP_ERR_DTYPE, "%s is %s, expected F32", what, dp_dtype_name(t->dtype));
    if (!dp_tensor_is_contiguous(t)) return dp_node_error(g, n, DP_ERR_ARG, "%s is a non-contiguous view", what);
    return DP_OK;
}

static dp_status bn_shape(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val;
    char b[64];
    if (x->ndim != 4) return dp_node_error(g, n, DP_ERR_SHAPE, "x has shape %s, expected [N,C,H,W]", DP_SHAPE_STR(x, b));
    int64_t C = x->shape[1];
    dp_status s;
    if (n->ip[BN_GAMMA] >= 0 && (s = check_vec(g, n, &n->in[n->ip[BN_GAMMA]]->val, "gamma", C))) return s;
    if (n->ip[BN_BETA] >= 0 && (s = check_vec(g, n, &n->in[n->ip[BN_BETA]]->val, "beta", C))) return s;
    if (n->ext[0] && (s = check_vec(g, n, n->ext[0], "running_mean", C))) return s;
    if (n->ext[1] && (s = check_vec(g, n, n->ext[1], "running_var", C))) return s;
    if (!(n->fp[0] >= 0.0f && n->fp[0] <= 1.0f))
        return dp_node_error(g, n, DP_ERR_ARG, "momentum %g is outside [0, 1]", (double)n->fp[0]);
    if (!(n->fp[1] > 0.0f) || isinf(n->fp[1]))
        return dp_node_error(g, n, DP_ERR_ARG, "eps %g must be positive and finite", (double)n->fp[1]);
    dp_tensor_set_contiguous(&n->val, DP_F32, 4, x->shape);
    n->aux_bytes = 2 * (size_t)C * sizeof(float);
    n->ws_bytes = 3 * (size_t)C * sizeof(double); /* bn_job.st (and mgs after 2C of them in backward) */
    return DP_OK;
}

/* Work shared by the per-channel workers. */
typedef struct bn_job {
    dp_node *n;
    int64_t N, C, HW;
    int batch;                 /* normalise with batch statistics */
    const float *x, *gy, *gamma, *beta;
    float *y, *gx, *ggamma, *gbeta;
    float *mean, *invstd;      /* aux */
    float *rmean, *rvar;       /* running stats (NULL = none) */
    float momentum, eps;
    int acc; /* backward: add into gx (1) or store (0) */
    const double *sums; /* batch sums already taken by the relu before it (NULL: take them) */
    dp_node *pool;      /* the max-pool after it (NULL: none): forward, its value computed plane by plane
                         * here; backward, gy not written, each plane expanded from the pool's gradient */
    float *gx2;         /* backward: the gradient of the relu's input, written here too (NULL: none) */
    int acc2;
    double *st;         /* workspace: forward {shift, s1, s2} per channel; backward {sum(gy), sum(gy*(x-mu))} */
    float *mgs;         /* backward with gz: {mean(gy), mean(gy*xhat)} per channel for bn_act_bwd_range (workspace) */
    float *z;           /* forward: the value of the activation after it, written here too (NULL: none) */
    const float *gz;    /* backward: that activation's output gradient, read instead of gy (NULL: none) */
    int gx_dead;        /* backward with gx2: nobody reads gx, so each plane of it goes to the scratch only */
    float *scratch;     /* backward: a plane per thread (dp_bn_plan_scratch) */
    int act;            /* its kind (DP_EW_RELU / DP_EW_LEAKY_RELU) */
    float slope;
} bn_job;

static void bn_fwd_range(void *arg, int64_t c0, int64_t c1, int tid) {
    (void)tid;
    const bn_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    const int64_t N = j->N, C = j->C, HW = j->HW, M = N * HW;
    /* One pass in double, shifted by the channel's first value:
     * var = (sum d^2 - (sum d)^2 / M) / M with d = x - shift loses nothing to
     * cancellation unless the mean is far from every value. Image by image,
     * channels c0..c1 within each (contiguous memory: short planes read
     * channel by channel lie too far apart for the hardware prefetcher); each
     * channel's planes are still summed in image order, so the bits are those
     * of a channel-by-channel loop. */
    double *st = j->st; /* {shift, s1, s2} per channel */
    if (j->batch && !j->sums) {
        for (int64_t c = c0; c < c1; c++) st[3 * c] = j->x[c * HW], st[3 * c + 1] = st[3 * c + 2] = 0.0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t c = c0; c < c1; c++) k->moments(j->x + (i * C + c) * HW, HW, st[3 * c], &st[3 * c + 1], &st[3 * c + 2]);
    }
    for (int64_t c = c0; c < c1; c++) {
        float mu, istd;
        if (j->batch) {
            /* the relu's forward summed the same rows in the same order, or the loop above did */
            const double *sm = j->sums ? j->sums : st;
            double shift = sm[3 * c], s1 = sm[3 * c + 1], s2 = sm[3 * c + 2];
            double v = s2 - s1 * s1 / (double)M; /* sum of squared deviations */
            if (v < 0.0) v = 0.0;
            double m = shift + s1 / (double)M;
            double var = v / (double)M; /* biased: what normalises */
            mu = (float)m;
            istd = (float)(1.0 / sqrt(var + (double)j->eps));
            if (j->rmean) {
                float mom = j->momentum;
                /* PyTorch stores the unbiased variance; with one value per
                 * channel (M = 1) it would be inf, so the biased one (0) is used. */
                double uvar = M > 1 ? v / (double)(M - 1) : var;
                j->rmean[c] = (1.0f - mom) * j->rmean[c] + mom * (float)m;
                j->rvar[c] = (1.0f - mom) * j->rvar[c] + mom * (float)uvar;
            }
        } else {
            mu = j->rmean[c];
            istd = (float)(1.0 / sqrt((double)j->rvar[c] + (double)j->eps));
        }
        j->mean[c] = mu;
        j->invstd[c] = istd;
        /* Centre first (not x*a + (beta - mu*a)): a constant channel then
         * gives exactly beta even when invstd is huge. */
        if (j->z) continue; /* bn_act_range writes the values */
        float a = istd * (j->gamma ? j->gamma[c] : 1.0f), b = j->beta ? j->beta[c] : 0.0f;
        for (int64_t i = 0; i < N; i++) {
            k->affine(j->y + (i * C + c) * HW, j->x + (i * C + c) * HW, HW, mu, a, b);
            if (j->pool) dp_maxpool_plane(j->pool, i * C + c); /* the plane just written, from cache */
        }
    }
}

/* Fused with the activation after it: planes p0..p1 in memory order (whole
 * cache lines written once, however short the planes), y and z from the same
 * registers; the map is bn_fwd_range's. */
static void bn_act_range(void *arg, int64_t p0, int64_t p1, int tid) {
    (void)tid;
    const bn_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    const int64_t C = j->C, HW = j->HW;
    for (int64_t p = p0; p < p1; p++) {
        int64_t c = p % C;
        float a = j->invstd[c] * (j->gamma ? j->gamma[c] : 1.0f), b = j->beta ? j->beta[c] : 0.0f;
        k->bn_act_f(j->act, j->y + p * HW, j->z + p * HW, j->x + p * HW, HW, j->mean[c], a, b, j->slope);
    }
}

int dp_bn_batch_mode(const dp_graph *g, const dp_node *n) { return g->training || !(n->ext[0] && n->ext[1]); }

/* After mean[C] and invstd[C]: {shift, s1, s2} per channel, when a relu sums for it. */
size_t dp_bn_sums_bytes(const dp_node *n) { return 3 * (size_t)n->in[0]->val.shape[1] * sizeof(double); }
double *dp_bn_sums(const dp_node *n) {
    size_t off = (2 * (size_t)n->in[0]->val.shape[1] * sizeof(float) + 7) / 8 * 8;
    return (double *)(void *)((char *)n->aux + off);
}

void dp_bn_eval_affine(const dp_node *n, float *rba) {
    const int64_t C = n->in[0]->val.shape[1];
    const float *gamma = n->ip[BN_GAMMA] >= 0 ? dp_f(&n->in[n->ip[BN_GAMMA]]->val) : NULL;
    const float *beta = n->ip[BN_BETA] >= 0 ? dp_f(&n->in[n->ip[BN_BETA]]->val) : NULL;
    const float *rmean = dp_f(n->ext[0]), *rvar = dp_f(n->ext[1]);
    for (int64_t c = 0; c < C; c++) { /* as bn_fwd_range's eval path */
        float istd = (float)(1.0 / sqrt((double)rvar[c] + (double)n->fp[1]));
        rba[3 * c] = rmean[c];
        rba[3 * c + 1] = istd * (gamma ? gamma[c] : 1.0f);
        rba[3 * c + 2] = beta ? beta[c] : 0.0f;
    }
}

/* The backward's scratch planes start after the per-channel workspace. */
static size_t scratch_off(int64_t C) { return (3 * (size_t)C * sizeof(double) + 63) / 64 * 64; }
static size_t scratch_need(const dp_node *n, int threads) {
    const dp_tensor *x = &n->in[0]->val;
    return scratch_off(x->shape[1]) + (size_t)threads * (size_t)(x->shape[2] * x->shape[3]) * sizeof(float);
}
static int scratch_ok(const dp_node *n, int threads) { return n->ws_bytes >= scratch_need(n, threads); }

void dp_bn_plan_scratch(dp_node *n, int threads) {
    if (n->ws_bytes < scratch_need(n, threads)) n->ws_bytes = scratch_need(n, threads);
}

int dp_bn_takes_pool_grad(const dp_graph *g, const dp_node *p) {
    const dp_node *n = p->in[0];
    return n->op == DP_OP_BATCHNORM2D && n->mo_next == p && !n->mo_act && !dp_grad_read(n) && (n->flags & DP_NF_BWD) &&
           scratch_ok(n, g->ctx->threads);
}

static void bn_job_init(bn_job *j, dp_node *n) {
    memset(j, 0, sizeof *j);
    const dp_tensor *x = &n->in[0]->val;
    j->n = n;
    j->N = x->shape[0];
    j->C = x->shape[1];
    j->HW = x->shape[2] * x->shape[3];
    j->x = dp_f(&n->in[0]->val);
    j->gamma = n->ip[BN_GAMMA] >= 0 ? dp_f(&n->in[n->ip[BN_GAMMA]]->val) : NULL;
    j->beta = n->ip[BN_BETA] >= 0 ? dp_f(&n->in[n->ip[BN_BETA]]->val) : NULL;
    j->mean = (float *)n->aux;
    j->invstd = j->mean + j->C;
    j->momentum = n->fp[0];
    j->eps = n->fp[1];
}

static void bn_fwd(dp_graph *g, dp_node *n) {
    bn_job j;
    bn_job_init(&j, n);
    int have_running = n->ext[0] && n->ext[1];
    j.y = dp_f(&n->val);
    j.batch = g->training || !have_running;
    if (have_running) {
        j.rmean = dp_f(n->ext[0]);
        j.rvar = dp_f(n->ext[1]);
    }
    /* Running stats are updated only on the batch-statistics path, which with
     * running stats present means training: eval never changes them. */
    n->ip[BN_BATCH] = j.batch;
    j.st = g->ws;
    if (j.batch && (n->mo_flags & DP_MO_STATS)) j.sums = dp_bn_sums(n);
    n->mo_flags &= ~DP_MO_STATS;
    if (n->mo_next) j.pool = n->mo_next;
    dp_node *a = n->mo_act;
    if (a) { /* fused with the activation when that runs in this pass (marked, not yet computed) */
        a->mo_flags &= ~DP_MO_BNACT;
        if ((a->flags & DP_NF_MARK) && !(a->flags & DP_NF_FRESH)) {
            j.z = dp_f(&a->val);
            j.act = a->op == DP_OP_RELU ? DP_EW_RELU : DP_EW_LEAKY_RELU;
            j.slope = a->op == DP_OP_RELU ? 0.0f : a->fp[0];
        }
    }
    dp_parallel_for_cost(g->ctx, j.C, j.N * j.HW * (j.z ? 1 : j.batch ? 3 : 2), bn_fwd_range, &j);
    if (j.z) dp_parallel_for_cost(g->ctx, j.N * j.C, j.HW * 3, bn_act_range, &j);
    if (j.pool) j.pool->mo_flags |= DP_MO_VALUE;
    if (j.z) a->mo_flags |= DP_MO_BNACT;
}

/* The gradient plane of image i, channel c: in place, or expanded from the pool's into
 * this thread's scratch plane (the bits the pool's backward would have stored). */
static const float *gy_plane(const bn_job *j, int64_t i, int64_t c, int tid) {
    if (!j->pool) return j->gy + (i * j->C + c) * j->HW;
    float *s = j->scratch + (size_t)tid * (size_t)j->HW;
    dp_maxpool_plane_grad(j->pool, i * j->C + c, s);
    return s;
}
/* Where the plane of gx goes: gx itself, or (nobody reads it) the scratch plane,
 * over the expanded gy it is computed from (element by element: in place is safe). */
static float *gx_plane(const bn_job *j, int64_t o, int tid) {
    return j->gx_dead ? j->scratch + (size_t)tid * (size_t)j->HW : j->gx + o;
}

static void bn_bwd_range(void *arg, int64_t c0, int64_t c1, int tid) {
    const bn_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    const int64_t N = j->N, C = j->C, HW = j->HW, M = N * HW;
    const int nt = (int64_t)sizeof(float) * N * C * HW > dp_stream_bytes;
    /* sum(gy), sum(gy * (x - mean)) per channel; sum(gy * xhat) = the second * invstd.
     * Image by image as bn_fwd_range's sums (each channel still in image order).
     * With an activation after it (gz): gy = gz * f'(y), y recomputed from x (bn_act_*). */
    double *sb = j->st;
    for (int64_t c = c0; c < c1; c++) sb[2 * c] = sb[2 * c + 1] = 0.0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t c = c0; c < c1; c++) {
            int64_t o = (i * C + c) * HW;
            const float mu = j->mean[c];
            if (j->gz) {
                float a = (j->gamma ? j->gamma[c] : 1.0f) * j->invstd[c], bb = j->beta ? j->beta[c] : 0.0f;
                k->bn_act_bsums(j->act, j->x + o, j->gz + o, HW, mu, a, bb, j->slope, &sb[2 * c], &sb[2 * c + 1]);
            } else {
                k->bn_bsums(j->x + o, gy_plane(j, i, c, tid), HW, mu, &sb[2 * c], &sb[2 * c + 1]);
            }
        }
    for (int64_t c = c0; c < c1; c++) {
        const float mu = j->mean[c], istd = j->invstd[c];
        float gam = j->gamma ? j->gamma[c] : 1.0f, a = gam * istd;
        double sg = sb[2 * c], sgd = sb[2 * c + 1];
        double sgx = sgd * (double)istd;
        if (j->ggamma) j->ggamma[c] += (float)sgx;
        if (j->gbeta) j->gbeta[c] += (float)sg;
        if (!j->gx) continue;
        if (j->gz) { /* bn_act_bwd_range writes gx */
            j->mgs[2 * c] = j->batch ? (float)(sg / (double)M) : 0.0f;
            j->mgs[2 * c + 1] = j->batch ? (float)(sgx / (double)M) : 0.0f;
            continue;
        }
        if (j->batch) {
            /* dx = gamma*invstd * (gy - mean(gy) - xhat * mean(gy*xhat)):
             * the mean and variance depend on every x of the channel. */
            float mg = (float)(sg / (double)M), mgx = (float)(sgx / (double)M);
            for (int64_t i = 0; i < N; i++) {
                int64_t o = (i * C + c) * HW;
                const float *gy = gy_plane(j, i, c, tid);
                float *gx = gx_plane(j, o, tid);
                k->bn_bapply(gx, j->x + o, gy, HW, mu, istd, a, mg, mgx, j->gx_dead ? 0 : j->acc);
                /* the relu before: d/d(its input) = this where its output (x here) > 0 (a large
                 * one streamed: the conv's backward reads it after all of this) */
                if (j->gx2 && !j->acc2 && nt) k->relu_b_nt(j->gx2 + o, gx, j->x + o, HW);
                else if (j->gx2) k->unary_b(DP_EW_RELU, j->gx2 + o, gx, j->x + o, j->x + o, HW, 0.0f, j->acc2);
            }
        } else {
            /* Fixed (running) statistics: a plain per-channel affine map. */
            for (int64_t i = 0; i < N; i++) {
                int64_t o = (i * C + c) * HW;
                const float *gy = gy_plane(j, i, c, tid);
                float *gx = gx_plane(j, o, tid);
                k->unary_b(DP_EW_SCALE, gx, gy, gy, gy, HW, a, j->gx_dead ? 0 : j->acc);
                if (j->gx2) k->unary_b(DP_EW_RELU, j->gx2 + o, gx, j->x + o, j->x + o, HW, 0.0f, j->acc2);
            }
        }
    }
}

/* With the activation after it: gx for planes p0..p1 in memory order (whole cache lines
 * written once), from bn_bwd_range's per-channel means; the same terms as there. */
static void bn_act_bwd_range(void *arg, int64_t p0, int64_t p1, int tid) {
    (void)tid;
    const bn_job *j = arg;
    const dp_ew_kernels *k = dp_ew();
    const int64_t C = j->C, HW = j->HW;
    for (int64_t p = p0; p < p1; p++) {
        int64_t c = p % C, o = p * HW;
        const float mu = j->mean[c], istd = j->invstd[c];
        float gam = j->gamma ? j->gamma[c] : 1.0f, a = gam * istd, bb = j->beta ? j->beta[c] : 0.0f;
        k->bn_act_bapply(j->act, j->batch, j->gx + o, j->x + o, j->gz + o, HW, mu, a, bb, j->slope, istd, j->mgs[2 * c],
                         j->mgs[2 * c + 1], j->acc);
        /* the relu before: d/d(its input) = this where its output (x here) > 0 */
        if (j->gx2) k->unary_b(DP_EW_RELU, j->gx2 + o, j->gx + o, j->x + o, j->x + o, HW, 0.0f, j->acc2);
    }
}

static void bn_bwd(dp_graph *g, dp_node *n) {
    bn_job j;
    bn_job_init(&j, n);
    j.batch = n->ip[BN_BATCH];
    j.gy = dp_f(&n->grad);
    j.gx = dp_wants_grad(n->in[0]) ? dp_f(&n->in[0]->grad) : NULL;
    j.acc = dp_grad_acc(n->in[0]);
    if (n->ip[BN_GAMMA] >= 0 && dp_wants_grad(n->in[n->ip[BN_GAMMA]])) j.ggamma = dp_f(&n->in[n->ip[BN_GAMMA]]->grad);
    if (n->ip[BN_BETA] >= 0 && dp_wants_grad(n->in[n->ip[BN_BETA]])) j.gbeta = dp_f(&n->in[n->ip[BN_BETA]]->grad);
    const int pool_grad = (n->mo_flags & DP_MO_POOLGRAD) != 0; /* the pool's backward left it to this one */
    n->mo_flags &= ~DP_MO_POOLGRAD;
    if (!j.gx && !j.ggamma && !j.gbeta) return;
    dp_node *act = n->mo_act;
    if (act && (act->mo_flags & DP_MO_BNACT) && (act->flags & DP_NF_BWD) && !dp_grad_read(n)) {
        /* its forward computed the activation, and nobody reads this node's own gradient */
        j.gz = dp_f(&act->grad);
        j.act = act->op == DP_OP_RELU ? DP_EW_RELU : DP_EW_LEAKY_RELU;
        j.slope = act->op == DP_OP_RELU ? 0.0f : act->fp[0];
    }
    j.st = g->ws;
    j.mgs = (float *)(void *)(j.st + 2 * j.C);
    const int scratch = scratch_ok(n, g->ctx->threads); /* a plane per thread: dp_bn_plan_scratch */
    if (scratch) j.scratch = (float *)(void *)((char *)g->ws + scratch_off(j.C));
    if (pool_grad) {
        assert(!j.gz && n->mo_next); /* the pool was this node's only reader */
        j.pool = n->mo_next;
        j.gy = NULL;
    }
    dp_node *r = n->mo_prev;
    if (j.gx && r && dp_wants_grad(r->in[0]) && (r->flags & DP_NF_BWD)) { /* the relu's backward, done here */
        j.gx2 = dp_f(&r->in[0]->grad);
        j.acc2 = dp_grad_acc(r->in[0]);
        /* the relu's own gradient (gx) is then read by nobody: keep each plane in the scratch */
        j.gx_dead = !dp_grad_read(r) && !j.gz && scratch;
    }
    dp_parallel_for_cost(g->ctx, j.C, j.N * j.HW * (j.gz ? 2 : 5), bn_bwd_range, &j);
    if (j.gz && j.gx) dp_parallel_for_cost(g->ctx, j.N * j.C, j.HW * 3, bn_act_bwd_range, &j);
    if (j.gx2) r->mo_flags |= DP_MO_GRAD;
}

const dp_op_def dp_op_batchnorm2d = {"batchnorm2d", bn_shape, bn_fwd, bn_bwd, DP_OPF_GRAD_STORE};

dp_node *dp_batchnorm2d(dp_graph *g, dp_node *x, dp_node *gamma, dp_node *beta, dp_tensor *running_mean,
                        dp_tensor *running_var, float momentum, float eps) {
    dp_node *in[3] = {x, NULL, NULL};
    int k = 1, ig = -1, ib = -1;
    if (gamma) {
        ig = k;
        in[k++] = gamma;
    }
    if (beta) {
        ib = k;
        in[k++] = beta;
    }
    dp_node *n = dp_node_begin(g, DP_OP_BATCHNORM2D, k, in);
    if (!n) return NULL;
    if (!running_mean != !running_var) {
        dp_node_error(g, n, DP_ERR_ARG, "running_mean and running_var must both be given or both be NULL");
        return NULL;
    }
    n->ip[BN_GAMMA] = ig;
    n->ip[BN_BETA] = ib;
    n->ext[0] = running_mean;
    n->ext[1] = running_var;
    n->fp[0] = momentum;
    n->fp[1] = eps;
    return dp_node_finish(g, n);
}
