/* Pooling and upsampling on NCHW images: max/avg pool (PyTorch or TF 'same'
 * padding), global average pool, nearest and bilinear upsampling.
 * Each op: shape rule, forward, backward side by side. Every op works plane by
 * plane ([N*C] independent HxW planes), split over the thread pool.
 *
 * Max-pool with kernel = stride = 2 or 4 and no padding (Meso-4's, and 'same'
 * on even sizes) is the fast path: vector kernels (kernels/ew.h) over rows of
 * windows, the argmax kept as one byte per output (its place in the window).
 * Other geometries keep an int32 offset in the plane per output. Graphs that
 * never take the pool's gradient keep no argmax at all. */
#include <math.h>

#include "core/internal.h"
#include "kernels/ew.h"
#include "kernels/vec.h"

static dp_status need_nchw(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val;
    char b[64];
    if (x->ndim != 4) return dp_node_error(g, n, DP_ERR_SHAPE, "x has shape %s, expected [N,C,H,W]", DP_SHAPE_STR(x, b));
    return DP_OK;
}

/* ------------------------------------------------------------ max / avg pool */
/* ip: 0,1 kernel h,w; 2,3 stride h,w (resolved: never 0); 4,5 the user's
 * symmetric pad h,w; 6 same; 7 count_include_pad; 8,9 the effective top and
 * left pad (set by the shape rule). */
enum { P_KH, P_KW, P_SH, P_SW, P_PH, P_PW, P_SAME, P_CIP, P_TOP, P_LEFT };

/* Output extent and leading pad of one dimension; returns 0 if it is empty. */
static int64_t pool_extent(int64_t in, int k, int s, int pad, int same, int *lead) {
    if (same) {
        int64_t out = (in + s - 1) / s; /* TF: ceil(in / stride) */
        int64_t total = (out - 1) * s + k - in;
        if (total < 0) total = 0;
        *lead = (int)(total / 2); /* the odd pixel goes to the bottom/right */
        return out;
    }
    *lead = pad;
    if (in + 2 * (int64_t)pad < k) return 0;
    return (in + 2 * (int64_t)pad - k) / s + 1;
}

/* kernel = stride = 2 or 4, no padding (so every window lies inside the image). */
static int pool_fast(const dp_node *n) {
    const int *p = n->ip;
    return (p[P_KH] == 2 || p[P_KH] == 4) && p[P_KW] == p[P_KH] && p[P_SH] == p[P_KH] && p[P_SW] == p[P_KW] &&
           p[P_TOP] == 0 && p[P_LEFT] == 0 && n->op == DP_OP_MAXPOOL2D && n->val.shape[2] * p[P_KH] <= n->in[0]->val.shape[2] &&
           n->val.shape[3] * p[P_KW] <= n->in[0]->val.shape[3];
}

static dp_status pool_shape(dp_graph *g, dp_node *n) {
    dp_status s = need_nchw(g, n);
    if (s) return s;
    const dp_tensor *x = &n->in[0]->val;
    int *p = n->ip;
    if (p[P_KH] < 1 || p[P_KW] < 1)
        return dp_node_error(g, n, DP_ERR_ARG, "kernel %dx%d must be at least 1x1", p[P_KH], p[P_KW]);
    if (p[P_SH] < 0 || p[P_SW] < 0) return dp_node_error(g, n, DP_ERR_ARG, "stride %dx%d is negative", p[P_SH], p[P_SW]);
    if (p[P_SH] == 0) p[P_SH] = p[P_KH];
    if (p[P_SW] == 0) p[P_SW] = p[P_KW];
    if (!p[P_SAME]) {
        if (p[P_PH] < 0 || p[P_PW] < 0) return dp_node_error(g, n, DP_ERR_ARG, "pad %dx%d is negative", p[P_PH], p[P_PW]);
        /* As PyTorch: a larger pad could make windows that see only padding. */
        if (p[P_PH] > p[P_KH] / 2 || p[P_PW] > p[P_KW] / 2)
            return dp_node_error(g, n, DP_ERR_ARG, "pad %dx%d must be at most half the kernel %dx%d", p[P_PH], p[P_PW], p[P_KH],
                                 p[P_KW]);
    }
    int64_t oh = pool_extent(x->shape[2], p[P_KH], p[P_SH], p[P_PH], p[P_SAME], &p[P_TOP]);
    int64_t ow = pool_extent(x->shape[3], p[P_KW], p[P_SW], p[P_PW], p[P_SAME], &p[P_LEFT]);
    if (oh < 1 || ow < 1) {
        char b[64];
        return dp_node_error(g, n, DP_ERR_SHAPE, "input %s is smaller than the kernel %dx%d with pad %dx%d", DP_SHAPE_STR(x, b),
                             p[P_KH], p[P_KW], p[P_PH], p[P_PW]);
    }
    int64_t sh[4] = {x->shape[0], x->shape[1], oh, ow};
    dp_tensor_set_contiguous(&n->val, DP_F32, 4, sh);
    if (n->op == DP_OP_MAXPOOL2D) {
        if (x->shape[2] * x->shape[3] > INT32_MAX)
            return dp_node_error(g, n, DP_ERR_SHAPE, "planes over 2^31 elements are not supported");
        /* argmax per output: its place in the window (fast path) or in the plane */
        n->aux_bytes = (size_t)dp_numel(&n->val) * (pool_fast(n) ? sizeof(uint8_t) : sizeof(int32_t));
    }
    return DP_OK;
}

/* The geometry every pool loop needs. */
typedef struct pool_geom {
    int64_t planes, H, W, OH, OW;
    int kh, kw, sh, sw, top, left;
} pool_geom;

static pool_geom pool_geom_of(const dp_node *n) {
    const dp_tensor *x = &n->in[0]->val;
    pool_geom q = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], n->val.shape[2], n->val.shape[3],
                   n->ip[P_KH],                n->ip[P_KW], n->ip[P_SH], n->ip[P_SW],    n->ip[P_TOP],   n->ip[P_LEFT]};
    return q;
}

static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* Work of one max-pool pass. */
typedef struct mp_job {
    pool_geom q;
    int64_t C;
    const float *x, *gy;
    float *y, *gx;
    void *arg;        /* argmax (NULL: not kept) */
    const float *rba; /* fused relu + batch norm: {mu, a, b} per channel (NULL: none) */
    int acc;          /* backward: add into gx (1) or store every element (0) */
} mp_job;

static inline float rba_val(const float *t, float v) { return ((v > 0.0f ? v : 0.0f) - t[0]) * t[1] + t[2]; }

/* Generic geometry, planes [p0, p1). */
static void mp_fwd_planes(void *vj, int64_t p0, int64_t p1, int tid) {
    (void)tid;
    const mp_job *j = vj;
    const pool_geom q = j->q;
    int32_t *arg = j->arg;
    for (int64_t pl = p0; pl < p1; pl++) {
        const float *xp = j->x + pl * q.H * q.W;
        const float *t = j->rba ? j->rba + 3 * (pl % j->C) : NULL;
        float *y = j->y + pl * q.OH * q.OW;
        for (int64_t oh = 0; oh < q.OH; oh++) {
            int64_t h0 = imax(oh * q.sh - q.top, 0), h1 = imin(oh * q.sh - q.top + q.kh, q.H);
            for (int64_t ow = 0; ow < q.OW; ow++) {
                int64_t w0 = imax(ow * q.sw - q.left, 0), w1 = imin(ow * q.sw - q.left + q.kw, q.W);
                /* Windows always hold a real pixel (pad <= kernel/2, or 'same'). */
                int64_t best = h0 * q.W + w0;
                float bv = t ? rba_val(t, xp[best]) : xp[best];
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) {
                        float v = t ? rba_val(t, xp[h * q.W + w]) : xp[h * q.W + w];
                        if (v > bv || isnan(v)) { /* first maximum wins; NaN propagates (PyTorch) */
                            bv = v;
                            best = h * q.W + w;
                            if (isnan(v)) goto found;
                        }
                    }
            found:
                y[oh * q.OW + ow] = bv;
                if (arg) arg[(pl * q.OH + oh) * q.OW + ow] = (int32_t)best;
            }
        }
    }
}

/* Fast path, output rows [r0, r1) of all planes. */
static void mp_fwd_rows(void *vj, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const mp_job *j = vj;
    const pool_geom q = j->q;
    const dp_ew_kernels *k = dp_ew();
    uint8_t *arg = j->arg;
    for (int64_t r = r0; r < r1; r++) {
        int64_t pl = r / q.OH, oh = r % q.OH;
        k->maxpool_row(q.kh, j->y + r * q.OW, arg ? arg + r * q.OW : NULL, j->x + (pl * q.H + oh * q.kh) * q.W, q.W, q.OW,
                       j->rba ? j->rba + 3 * (pl % j->C) : NULL);
    }
}

int dp_maxpool_fast(const dp_node *p) { return pool_fast(p); }

/* One plane through the fast path's row kernel (a batch norm's forward pools
 * each plane right after writing it, while it is in cache). */
void dp_maxpool_plane(dp_node *n, int64_t pl) {
    const pool_geom q = pool_geom_of(n);
    const dp_ew_kernels *k = dp_ew();
    uint8_t *arg = (n->flags & DP_NF_MAY_GRAD) ? n->aux : NULL;
    const float *x = dp_f(&n->in[0]->val) + pl * q.H * q.W;
    float *y = dp_f(&n->val) + pl * q.OH * q.OW;
    for (int64_t oh = 0; oh < q.OH; oh++)
        k->maxpool_row(q.kh, y + oh * q.OW, arg ? arg + (pl * q.OH + oh) * q.OW : NULL, x + oh * q.kh * q.W, q.W, q.OW, NULL);
}

void dp_maxpool_plane_grad(const dp_node *n, int64_t pl, float *gx) {
    const pool_geom q = pool_geom_of(n);
    const dp_ew_kernels *k = dp_ew();
    const uint8_t *arg = (const uint8_t *)n->aux + pl * q.OH * q.OW;
    const float *gy = (const float *)n->grad.data + pl * q.OH * q.OW;
    for (int64_t oh = 0; oh < q.OH; oh++) {
        float *r = gx + oh * q.kh * q.W;
        k->maxpool_row_b(q.kh, r, q.W, arg + oh * q.OW, gy + oh * q.OW, q.OW, 0);
        if (q.W > q.kh * q.OW) /* the pixels no window covers get 0, as mp_bwd_rows stores */
            for (int64_t h = 0; h < q.kh; h++) memset(r + h * q.W + q.kh * q.OW, 0, (size_t)(q.W - q.kh * q.OW) * sizeof(float));
    }
    if (q.H > q.kh * q.OH) memset(gx + q.kh * q.OH * q.W, 0, (size_t)((q.H - q.kh * q.OH) * q.W) * sizeof(float));
}

static void maxpool_fwd(dp_graph *g, dp_node *n) {
    if (n->mo_flags & DP_MO_VALUE) { /* its batch norm computed it */
        n->mo_flags &= ~DP_MO_VALUE;
        return;
    }
    mp_job j = {.q = pool_geom_of(n), .C = n->in[0]->val.shape[1], .x = dp_f(&n->in[0]->val), .y = dp_f(&n->val)};
    /* The argmax is kept only where a gradient may pass (never in no_grad graphs). */
    j.arg = (n->flags & DP_NF_MAY_GRAD) ? n->aux : NULL;
    if (n->fuse == DP_FUSE_CONV_RELU_BN_POOL && !g->training) {
        /* the conv, relu and batch norm did not run: the conv pools its bands itself */
        float *rba = (float *)((char *)n->aux + (n->aux_bytes - (size_t)j.C * 3 * sizeof(float)));
        dp_bn_eval_affine(n->in[0], rba);
        dp_conv_pool_fwd(g, n->fuse_in, n->ip[P_KH], rba, j.y);
        return;
    }
    if (n->fuse == DP_FUSE_RELU_BN_POOL && !g->training) {
        /* relu and the batch norm did not run: pool relu(x) through the norm's affine map */
        float *rba = (float *)((char *)n->aux + (n->aux_bytes - (size_t)j.C * 3 * sizeof(float)));
        dp_bn_eval_affine(n->in[0], rba);
        j.x = dp_f(&n->fuse_in->val);
        j.rba = rba;
    }
    if (pool_fast(n))
        dp_parallel_for_cost(g->ctx, j.q.planes * j.q.OH, j.q.kh * j.q.W, mp_fwd_rows, &j);
    else
        dp_parallel_for_cost(g->ctx, j.q.planes, j.q.H * j.q.W, mp_fwd_planes, &j);
}

static void mp_bwd_planes(void *vj, int64_t p0, int64_t p1, int tid) {
    (void)tid;
    const mp_job *j = vj;
    const int32_t *arg = j->arg;
    const int64_t per = j->q.OH * j->q.OW, HW = j->q.H * j->q.W;
    for (int64_t pl = p0; pl < p1; pl++) {
        if (!j->acc) memset(j->gx + pl * HW, 0, (size_t)HW * sizeof(float));
        for (int64_t i = 0; i < per; i++) j->gx[pl * HW + arg[pl * per + i]] += j->gy[pl * per + i];
    }
}

static void mp_bwd_rows(void *vj, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const mp_job *j = vj;
    const pool_geom q = j->q;
    const dp_ew_kernels *k = dp_ew();
    const uint8_t *arg = j->arg;
    for (int64_t r = r0; r < r1; r++) {
        int64_t pl = r / q.OH, oh = r % q.OH;
        float *gx = j->gx + (pl * q.H + oh * q.kh) * q.W;
        k->maxpool_row_b(q.kh, gx, q.W, arg + r * q.OW, j->gy + r * q.OW, q.OW, j->acc);
        if (!j->acc) { /* storing: the pixels no window covers get 0 */
            if (q.W > q.kh * q.OW)
                for (int64_t h = 0; h < q.kh; h++) memset(gx + h * q.W + q.kh * q.OW, 0, (size_t)(q.W - q.kh * q.OW) * sizeof(float));
            if (oh == q.OH - 1 && q.H > q.kh * q.OH)
                memset(gx + q.kh * q.W, 0, (size_t)((q.H - q.kh * q.OH) * q.W) * sizeof(float));
        }
    }
}

static void maxpool_bwd(dp_graph *g, dp_node *n) {
    if (!dp_wants_grad(n->in[0])) return;
    if (dp_bn_takes_pool_grad(g, n)) { /* the batch norm before expands it plane by plane, from cache */
        n->in[0]->mo_flags |= DP_MO_POOLGRAD;
        return;
    }
    mp_job j = {.q = pool_geom_of(n), .gy = dp_f(&n->grad), .gx = dp_f(&n->in[0]->grad), .arg = n->aux, .acc = dp_grad_acc(n->in[0])};
    if (pool_fast(n))
        dp_parallel_for_cost(g->ctx, j.q.planes * j.q.OH, 3 * j.q.kh * j.q.W, mp_bwd_rows, &j);
    else
        dp_parallel_for_cost(g->ctx, j.q.planes, j.q.H * j.q.W, mp_bwd_planes, &j);
}

/* Divisor of an average window: the real pixels, or (PyTorch's
 * count_include_pad with explicit pad) the window clipped to the padded image. */
static inline float avg_div(const dp_node *n, const pool_geom *q, int64_t oh, int64_t ow) {
    int64_t hs = oh * q->sh - q->top, ws = ow * q->sw - q->left;
    if (n->ip[P_CIP] && !n->ip[P_SAME]) {
        int64_t he = imin(hs + q->kh, q->H + n->ip[P_PH]), we = imin(ws + q->kw, q->W + n->ip[P_PW]);
        return (float)((he - hs) * (we - ws));
    }
    return (float)((imin(hs + q->kh, q->H) - imax(hs, 0)) * (imin(ws + q->kw, q->W) - imax(ws, 0)));
}

typedef struct ap_job {
    const dp_node *n;
    pool_geom q;
    const float *x, *gy;
    float *y, *gx;
} ap_job;

static void ap_fwd_planes(void *vj, int64_t p0, int64_t p1, int tid) {
    (void)tid;
    const ap_job *j = vj;
    const pool_geom q = j->q;
    for (int64_t pl = p0; pl < p1; pl++) {
        const float *xp = j->x + pl * q.H * q.W;
        float *y = j->y + pl * q.OH * q.OW;
        for (int64_t oh = 0; oh < q.OH; oh++) {
            int64_t h0 = imax(oh * q.sh - q.top, 0), h1 = imin(oh * q.sh - q.top + q.kh, q.H);
            for (int64_t ow = 0; ow < q.OW; ow++) {
                int64_t w0 = imax(ow * q.sw - q.left, 0), w1 = imin(ow * q.sw - q.left + q.kw, q.W);
                float s = 0.0f;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) s += xp[h * q.W + w];
                *y++ = s / avg_div(j->n, &q, oh, ow);
            }
        }
    }
}

static void avgpool_fwd(dp_graph *g, dp_node *n) {
    ap_job j = {.n = n, .q = pool_geom_of(n), .x = dp_f(&n->in[0]->val), .y = dp_f(&n->val)};
    dp_parallel_for_cost(g->ctx, j.q.planes, j.q.H * j.q.W, ap_fwd_planes, &j);
}

static void ap_bwd_planes(void *vj, int64_t p0, int64_t p1, int tid) {
    (void)tid;
    const ap_job *j = vj;
    const pool_geom q = j->q;
    for (int64_t pl = p0; pl < p1; pl++) {
        float *gp = j->gx + pl * q.H * q.W;
        const float *gy = j->gy + pl * q.OH * q.OW;
        for (int64_t oh = 0; oh < q.OH; oh++) {
            int64_t h0 = imax(oh * q.sh - q.top, 0), h1 = imin(oh * q.sh - q.top + q.kh, q.H);
            for (int64_t ow = 0; ow < q.OW; ow++) {
                int64_t w0 = imax(ow * q.sw - q.left, 0), w1 = imin(ow * q.sw - q.left + q.kw, q.W);
                float v = *gy++ / avg_div(j->n, &q, oh, ow);
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) gp[h * q.W + w] += v;
            }
        }
    }
}

static void avgpool_bwd(dp_graph *g, dp_node *n) {
    if (!dp_wants_grad(n->in[0])) return;
    ap_job j = {.n = n, .q = pool_geom_of(n), .gy = dp_f(&n->grad), .gx = dp_f(&n->in[0]->grad)};
    dp_parallel_for_cost(g->ctx, j.q.planes, 2 * j.q.H * j.q.W, ap_bwd_planes, &j);
}

const dp_op_def dp_op_maxpool2d = {"maxpool2d", pool_shape, maxpool_fwd, maxpool_bwd, DP_OPF_GRAD_STORE};
const dp_op_def dp_op_avgpool2d = {"avgpool2d", pool_shape, avgpool_fwd, avgpool_bwd, 0};

static dp_node *pool(dp_graph *g, int op, dp_node *x, const dp_pool_opts *o) {
    dp_node *n = dp_node_begin(g, op, 1, &x);
    if (!n) return NULL;
    if (!o) {
        dp_node_error(g, n, DP_ERR_NULL, "opts is NULL (the kernel size is required)");
        return NULL;
    }
    n->ip[P_KH] = o->kernel_h;
    n->ip[P_KW] = o->kernel_w;
    n->ip[P_SH] = o->stride_h;
    n->ip[P_SW] = o->stride_w;
    n->ip[P_PH] = o->same ? 0 : o->pad_h;
    n->ip[P_PW] = o->same ? 0 : o->pad_w;
    n->ip[P_SAME] = o->same ? 1 : 0;
    n->ip[P_CIP] = o->count_include_pad ? 1 : 0;
    return dp_node_finish(g, n);
}
dp_node *dp_maxpool2d(dp_graph *g, dp_node *x, const dp_pool_opts *opts) { return pool(g, DP_OP_MAXPOOL2D, x, opts); }
dp_node *dp_avgpool2d(dp_graph *g, dp_node *x, const dp_pool_opts *opts) { return pool(g, DP_OP_AVGPOOL2D, x, opts); }

/* ------------------------------------------------------------ global average pool */
static dp_status gap_shape(dp_graph *g, dp_node *n) {
    dp_status s = need_nchw(g, n);
    if (s) return s;
    const dp_tensor *x = &n->in[0]->val;
    dp_tensor_set_contiguous(&n->val, DP_F32, 2, x->shape);
    return DP_OK;
}
typedef struct gap_job {
    int64_t HW;
    int acc;
    const float *x, *gy;
    float *y, *gx;
} gap_job;
static void gap_fwd_planes(void *vj, int64_t p0, int64_t p1, int tid) {
    (void)tid;
    const gap_job *j = vj;
    const dp_ew_kernels *k = dp_ew();
    for (int64_t pl = p0; pl < p1; pl++) j->y[pl] = (float)(k->sum(j->x + pl * j->HW, j->HW) / (double)j->HW); /* double: large planes stay accurate */
}
static void gap_fwd(dp_graph *g, dp_node *n) {
    const dp_tensor *xt = &n->in[0]->val;
    gap_job j = {.HW = xt->shape[2] * xt->shape[3], .x = dp_f(&n->in[0]->val), .y = dp_f(&n->val)};
    dp_parallel_for_cost(g->ctx, xt->shape[0] * xt->shape[1], j.HW, gap_fwd_planes, &j);
}
static void gap_bwd_planes(void *vj, int64_t p0, int64_t p1, int tid) {
    (void)tid;
    const gap_job *j = vj;
    const dp_ew_kernels *k = dp_ew();
    for (int64_t pl = p0; pl < p1; pl++) {
        float v = j->gy[pl] / (float)j->HW;
        if (j->acc) k->adds(j->gx + pl * j->HW, v, j->HW);
        else dp_vec_fill(j->gx + pl * j->HW, v, j->HW);
    }
}
static void gap_bwd(dp_graph *g, dp_node *n) {
    if (!dp_wants_grad(n->in[0])) return;
    const dp_tensor *xt = &n->in[0]->val;
    gap_job j = {.HW = xt->shape[2] * xt->shape[3], .acc = dp_grad_acc(n->in[0]), .gy = dp_f(&n->grad), .gx = dp_f(&n->in[0]->grad)};
    dp_parallel_for_cost(g->ctx, xt->shape[0] * xt->shape[1], 2 * j.HW, gap_bwd_planes, &j);
}
const dp_op_def dp_op_global_avgpool = {"global_avgpool", gap_shape, gap_fwd, gap_bwd, DP_OPF_GRAD_STORE};
dp_node *dp_global_avgpool(dp_graph *g, dp_node *x) { return dp_node_finish(g, dp_node_begin(g, DP_OP_GLOBAL_AVGPOOL, 1, &x)); }

/* ------------------------------------------------------------ upsampling */
/* ip[0], ip[1] = integer scale h, w; ip[2] = align_corners (bilinear). */
static dp_status upsample_shape(dp_graph *g, dp_node *n) {
    dp_status s = need_nchw(g, n);
    if (s) return s;
    if (n->ip[0] < 1 || n->ip[1] < 1)
        return dp_node_error(g, n, DP_ERR_ARG, "scale %dx%d must be at least 1x1", n->ip[0], n->ip[1]);
    const dp_tensor *x = &n->in[0]->val;
    int64_t sh[4] = {x->shape[0], x->shape[1], x->shape[2] * n->ip[0], x->shape[3] * n->ip[1]};
    dp_tensor_set_contiguous(&n->val, DP_F32, 4, sh);
    return DP_OK;
}

static void nearest_fwd(dp_graph *g, dp_node *n) {
    (void)g;
    const dp_tensor *xt = &n->in[0]->val;
    int64_t planes = xt->shape[0] * xt->shape[1], H = xt->shape[2], W = xt->shape[3];
    int64_t OH = n->val.shape[2], OW = n->val.shape[3], sh = n->ip[0], sw = n->ip[1];
    const float *x = dp_f(&n->in[0]->val);
    float *y = dp_f(&n->val);
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *xr = x + (pl * H + oh / sh) * W;
            for (int64_t ow = 0; ow < OW; ow++) *y++ = xr[ow / sw];
        }
}
static void nearest_bwd(dp_graph *g, dp_node *n) {
    (void)g;
    if (!dp_wants_grad(n->in[0])) return;
    const dp_tensor *xt = &n->in[0]->val;
    int64_t planes = xt->shape[0] * xt->shape[1], H = xt->shape[2], W = xt->shape[3];
    int64_t OH = n->val.shape[2], OW = n->val.shape[3], sh = n->ip[0], sw = n->ip[1];
    const float *gy = dp_f(&n->grad);
    float *gx = dp_f(&n->in[0]->grad);
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oh = 0; oh < OH; oh++) {
            float *gr = gx + (pl * H + oh / sh) * W;
            for (int64_t ow = 0; ow < OW; ow++) gr[ow / sw] += *gy++;
        }
}
const dp_op_def dp_op_upsample_nearest = {"upsample_nearest", upsample_shape, nearest_fwd, nearest_bwd, 0};
dp_node *dp_upsample_nearest(dp_graph *g, dp_node *x, int scale_h, int scale_w) {
    dp_node *n = dp_node_begin(g, DP_OP_UPSAMPLE_NEAREST, 1, &x);
    if (n) {
        n->ip[0] = scale_h;
        n->ip[1] = scale_w;
    }
    return dp_node_finish(g, n);
}

/* Source taps of output index dst along one dimension, as PyTorch's
 * upsample_bilinear2d with scale_factor given: align_corners maps the corner
 * pixels onto each other, scale (in-1)/(out-1); otherwise half-pixel centres,
 * src = (dst + 0.5) / scale - 0.5, clamped at 0. Computed in float as PyTorch. */
typedef struct lin_tap {
    int32_t i0, i1; /* the two source pixels (equal at the last one) */
    float l0, l1;   /* their weights */
} lin_tap;
static void lin_taps(int64_t dst, int64_t in, int64_t out, int scale, int align, lin_tap *t) {
    float src;
    if (align) {
        float r = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
        src = r * (float)dst;
    } else {
        float r = (float)(1.0 / (double)scale);
        src = r * ((float)dst + 0.5f) - 0.5f;
        if (src < 0.0f) src = 0.0f;
    }
    int64_t k = (int64_t)src;
    if (k > in - 1) k = in - 1;
    float lam = src - (float)k;
    if (lam < 0.0f) lam = 0.0f;
    if (lam > 1.0f) lam = 1.0f;
    t->i0 = (int32_t)k;
    t->i1 = (int32_t)(k + (k < in - 1 ? 1 : 0));
    t->l1 = lam;
    t->l0 = 1.0f - lam;
}

/* aux: one tap per output row, then one per output column, filled by forward
 * (cheap) and reused by backward. */
static dp_status bilinear_shape(dp_graph *g, dp_node *n) {
    dp_status s = upsample_shape(g, n);
    if (s) return s;
    if (n->in[0]->val.shape[2] > INT32_MAX || n->in[0]->val.shape[3] > INT32_MAX)
        return dp_node_error(g, n, DP_ERR_SHAPE, "images over 2^31 pixels a side are not supported");
    n->aux_bytes = (size_t)(n->val.shape[2] + n->val.shape[3]) * sizeof(lin_tap);
    return DP_OK;
}

static void bilinear_fwd(dp_graph *g, dp_node *n) {
    (void)g;
    const dp_tensor *xt = &n->in[0]->val;
    int64_t planes = xt->shape[0] * xt->shape[1], H = xt->shape[2], W = xt->shape[3];
    int64_t OH = n->val.shape[2], OW = n->val.shape[3];
    lin_tap *th = n->aux, *tw = th + OH;
    for (int64_t i = 0; i < OH; i++) lin_taps(i, H, OH, n->ip[0], n->ip[2], &th[i]);
    for (int64_t i = 0; i < OW; i++) lin_taps(i, W, OW, n->ip[1], n->ip[2], &tw[i]);
    const float *x = dp_f(&n->in[0]->val);
    float *y = dp_f(&n->val);
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = xp + th[oh].i0 * W, *r1 = xp + th[oh].i1 * W;
            float a0 = th[oh].l0, a1 = th[oh].l1;
            for (int64_t ow = 0; ow < OW; ow++) {
                const lin_tap *t = &tw[ow];
                *y++ = a0 * (t->l0 * r0[t->i0] + t->l1 * r0[t->i1]) + a1 * (t->l0 * r1[t->i0] + t->l1 * r1[t->i1]);
            }
        }
    }
}
static void bilinear_bwd(dp_graph *g, dp_node *n) {
    (void)g;
    if (!dp_wants_grad(n->in[0])) return;
    const dp_tensor *xt = &n->in[0]->val;
    int64_t planes = xt->shape[0] * xt->shape[1], H = xt->shape[2], W = xt->shape[3];
    int64_t OH = n->val.shape[2], OW = n->val.shape[3];
    const lin_tap *th = n->aux, *tw = th + OH;
    const float *gy = dp_f(&n->grad);
    float *gx = dp_f(&n->in[0]->grad);
    for (int64_t pl = 0; pl < planes; pl++) {
        float *gp = gx + pl * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            float *r0 = gp + th[oh].i0 * W, *r1 = gp + th[oh].i1 * W;
            float a0 = th[oh].l0, a1 = th[oh].l1;
            for (int64_t ow = 0; ow < OW; ow++) {
                const lin_tap *t = &tw[ow];
                float v = *gy++;
                r0[t->i0] += a0 * t->l0 * v;
                r0[t->i1] += a0 * t->l1 * v;
                r1[t->i0] += a1 * t->l0 * v;
                r1[t->i1] += a1 * t->l1 * v;
            }
        }
    }
}
const dp_op_def dp_op_upsample_bilinear = {"upsample_bilinear", bilinear_shape, bilinear_fwd, bilinear_bwd, 0};
dp_node *dp_upsample_bilinear(dp_graph *g, dp_node *x, int scale_h, int scale_w, int align_corners) {
    dp_node *n = dp_node_begin(g, DP_OP_UPSAMPLE_BILINEAR, 1, &x);
    if (n) {
        n->ip[0] = scale_h;
        n->ip[1] = scale_w;
        n->ip[2] = align_corners ? 1 : 0;
    }
    return dp_node_finish(g, n);
}
