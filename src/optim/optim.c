/* Optimisers (SGD, Adam, AdamW), gradient clipping and learning-rate schedules.
 *
 * The update rules follow PyTorch's torch.optim (single-tensor code path) so
 * that a model trained here and one trained there move the same way:
 *   SGD   g += wd*p; buf = momentum*buf + g; g = nesterov ? g + momentum*buf : buf; p -= lr*g
 *   Adam  g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
 *         p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   AdamW p *= 1 - lr*wd, then Adam without the L2 term.
 * All state lives in one block allocated by dp_optim_new; a step allocates nothing.
 * One step counter serves every parameter (PyTorch keeps one each); the two differ
 * only for a parameter that had no gradient buffer during earlier steps. */
#include <math.h>
#include <stdio.h>

#include "core/internal.h"
#include "kernels/ew.h"

/* Below this many elements an update runs on the calling thread: waking the
 * pool costs more than it saves. */
#define PAR_MIN 32768
#define DP_PI 3.14159265358979323846 /* M_PI is not in strict C11 */

struct dp_optim {
    dp_ctx *ctx;
    dp_paramset *ps;
    dp_optim_opts opts;
    int n_params;        /* trainable tensors at creation time */
    dp_tensor **params;
    int n_slots;         /* state tensors per parameter: SGD 0 or 1, Adam 2 */
    dp_tensor *state;    /* n_params * n_slots tensors (param-major) */
    char **state_names;  /* "<param>.<slot>" */
    char *names_block;
    void *data;          /* storage of every state tensor */
    int64_t steps;
    float last_norm;
};

/* ------------------------------------------------------------ schedules */

float dp_lr_at(const dp_lr_schedule *s, float base_lr, int64_t step) {
    if (!s || step < 0) return base_lr;
    /* Warm-up ramps linearly from 0 (step 0) towards base_lr; every schedule
     * counts steps from 0 (warm-up included), as Hugging Face's schedulers do. */
    if (s->warmup_steps > 0 && step < s->warmup_steps) return (float)((double)base_lr * (double)step / s->warmup_steps);
    switch (s->kind) {
    case DP_LR_STEP:
        if (s->step_size <= 0) return base_lr;
        return (float)((double)base_lr * pow((double)s->gamma, (double)(step / s->step_size)));
    case DP_LR_COSINE: {
        int64_t w = s->warmup_steps > 0 ? s->warmup_steps : 0;
        int64_t span = (int64_t)s->total_steps - w;
        double progress = span > 0 ? (double)(step - w) / (double)span : 1.0;
        if (progress > 1.0) progress = 1.0;
        double lo = s->min_lr;
        return (float)(lo + ((double)base_lr - lo) * 0.5 * (1.0 + cos(DP_PI * progress)));
    }
    case DP_LR_CONSTANT:
    default: return base_lr;
    }
}

/* ------------------------------------------------------------ options */

static int finite_nonneg(float x) { return isfinite(x) && x >= 0.0f; }

static dp_status check_opts(dp_ctx *ctx, dp_optim_opts *o) {
    if (o->kind != DP_OPTIM_SGD && o->kind != DP_OPTIM_ADAM && o->kind != DP_OPTIM_ADAMW)
        return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: unknown optimiser kind %d", (int)o->kind);
    if (!finite_nonneg(o->lr)) return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: lr %g must be finite and >= 0", (double)o->lr);
    if (!finite_nonneg(o->weight_decay))
        return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: weight_decay %g must be finite and >= 0", (double)o->weight_decay);
    if (!finite_nonneg(o->clip_norm) || !finite_nonneg(o->clip_value))
        return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: clip_norm and clip_value must be finite and >= 0 (0 = off)");
    if (o->kind == DP_OPTIM_SGD) {
        if (!finite_nonneg(o->momentum) || o->momentum >= 1.0f)
            return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: momentum %g must be in [0, 1)", (double)o->momentum);
        if (o->nesterov && o->momentum <= 0.0f)
            return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: Nesterov momentum needs momentum > 0");
    } else {
        if (o->beta1 == 0.0f && o->beta2 == 0.0f) {
            o->beta1 = 0.9f;
            o->beta2 = 0.999f;
        }
        if (o->eps == 0.0f) o->eps = 1e-8f;
        if (!finite_nonneg(o->beta1) || o->beta1 >= 1.0f || !finite_nonneg(o->beta2) || o->beta2 >= 1.0f)
            return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: betas (%g, %g) must be in [0, 1)", (double)o->beta1,
                            (double)o->beta2);
        if (!(isfinite(o->eps) && o->eps > 0.0f)) return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: eps %g must be > 0", (double)o->eps);
    }
    const dp_lr_schedule *s = &o->schedule;
    if (s->warmup_steps < 0) return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: warmup_steps %d is negative", s->warmup_steps);
    switch (s->kind) {
    case DP_LR_CONSTANT: break;
    case DP_LR_STEP:
        if (s->step_size <= 0) return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: the step schedule needs step_size > 0");
        if (!(isfinite(s->gamma) && s->gamma > 0.0f))
            return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: the step schedule needs gamma > 0 (got %g)", (double)s->gamma);
        break;
    case DP_LR_COSINE:
        if (s->total_steps <= 0) return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: the cosine schedule needs total_steps > 0");
        if (!finite_nonneg(s->min_lr) || s->min_lr > o->lr)
            return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: min_lr %g must be in [0, lr]", (double)s->min_lr);
        break;
    default: return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: unknown schedule kind %d", (int)s->kind);
    }
    return DP_OK;
}

/* ------------------------------------------------------------ life cycle */

void dp_optim_free(dp_optim *o) {
    if (!o) return;
    dp_ctx *ctx = o->ctx;
    dp_free(ctx, o->data);
    dp_free(ctx, o->names_block);
    dp_free(ctx, o->state_names);
    dp_free(ctx, o->state);
    dp_free(ctx, o->params);
    dp_free(ctx, o);
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

dp_status dp_optim_new(dp_paramset *ps, const dp_optim_opts *opts, dp_optim **out) {
    if (!ps) return DP_ERR_NULL;
    dp_ctx *ctx = dp_paramset_ctx(ps);
    if (!opts || !out) return dp_error(ctx, DP_ERR_NULL, "dp_optim_new: opts and out are required");
    *out = NULL;
    dp_optim_opts o = *opts;
    dp_status s = check_opts(ctx, &o);
    if (s) return s;

    int n = 0;
    for (int i = 0; i < dp_paramset_count(ps); i++) n += !dp_paramset_is_buffer(ps, i);
    if (n == 0) return dp_error(ctx, DP_ERR_ARG, "dp_optim_new: the paramset has no trainable tensor");

    dp_optim *opt = dp_calloc(ctx, sizeof *opt);
    if (!opt) return dp_error(ctx, DP_ERR_NOMEM, "dp_optim_new: out of memory");
    opt->ctx = ctx;
    opt->ps = ps;
    opt->opts = o;
    opt->n_params = n;
    opt->n_slots = o.kind == DP_OPTIM_SGD ? (o.momentum > 0.0f ? 1 : 0) : 2;
    static const char *const sgd_slots[] = {"momentum_buffer"}; /* PyTorch's state keys */
    static const char *const adam_slots[] = {"exp_avg", "exp_avg_sq"};
    const char *const *slot_names = o.kind == DP_OPTIM_SGD ? sgd_slots : adam_slots;

    opt->params = dp_calloc(ctx, sizeof(dp_tensor *) * (size_t)n);
    if (!opt->params) goto nomem;
    size_t data_bytes = 0, name_bytes = 0;
    for (int i = 0, k = 0; i < dp_paramset_count(ps); i++) {
        if (dp_paramset_is_buffer(ps, i)) continue;
        dp_tensor *p = dp_paramset_at(ps, i);
        if (p->dtype != DP_F32 || !dp_tensor_is_contiguous(p)) {
            dp_optim_free(opt);
            return dp_error(ctx, DP_ERR_DTYPE, "dp_optim_new: parameter '%s' is not a contiguous F32 tensor", p->name);
        }
        opt->params[k++] = p;
        for (int j = 0; j < opt->n_slots; j++) {
            data_bytes += align_up((size_t)dp_numel(p) * sizeof(float), DP_ALIGN);
            name_bytes += strlen(p->name) + 1 + strlen(slot_names[j]) + 1;
        }
    }
    int n_state = n * opt->n_slots;
    if (n_state > 0) {
        opt->state = dp_calloc(ctx, sizeof(dp_tensor) * (size_t)n_state);
        opt->state_names = dp_calloc(ctx, sizeof(char *) * (size_t)n_state);
        opt->names_block = dp_malloc(ctx, name_bytes);
        opt->data = dp_calloc(ctx, data_bytes); /* moments start at zero, as in PyTorch */
        if (!opt->state || !opt->state_names || !opt->names_block || !opt->data) goto nomem;
        char *np = opt->names_block, *dp = opt->data;
        for (int k = 0; k < n; k++) {
            dp_tensor *p = opt->params[k];
            for (int j = 0; j < opt->n_slots; j++) {
                dp_tensor *t = &opt->state[k * opt->n_slots + j];
                dp_tensor_set_contiguous(t, DP_F32, p->ndim, p->shape);
                t->ctx = ctx;
                t->data = dp;
                dp += align_up((size_t)dp_numel(p) * sizeof(float), DP_ALIGN);
                int len = sprintf(np, "%s.%s", p->name, slot_names[j]);
                t->name = np;
                opt->state_names[k * opt->n_slots + j] = np;
                np += len + 1;
            }
        }
    }
    *out = opt;
    return DP_OK;
nomem:
    dp_optim_free(opt);
    return dp_error(ctx, DP_ERR_NOMEM, "dp_optim_new: out of memory for the optimiser state");
}

/* ------------------------------------------------------------ accessors */

int64_t dp_optim_steps(const dp_optim *o) { return o ? o->steps : 0; }
float dp_optim_lr(const dp_optim *o) { return o ? dp_lr_at(&o->opts.schedule, o->opts.lr, o->steps) : 0.0f; }
float dp_optim_last_grad_norm(const dp_optim *o) { return o ? o->last_norm : 0.0f; }
const dp_optim_opts *dp_optim_options(const dp_optim *o) { return o ? &o->opts : NULL; }
int dp_optim_state_count(const dp_optim *o) { return o ? o->n_params * o->n_slots : 0; }

dp_tensor *dp_optim_state_at(dp_optim *o, int i, const char **name) {
    if (name) *name = NULL;
    if (!o || i < 0 || i >= o->n_params * o->n_slots) return NULL;
    if (name) *name = o->state_names[i];
    return &o->state[i];
}

dp_status dp_optim_set_steps(dp_optim *o, int64_t steps) {
    if (!o) return DP_ERR_NULL;
    if (steps < 0) return dp_error(o->ctx, DP_ERR_ARG, "dp_optim_set_steps: %lld is negative", (long long)steps);
    o->steps = steps;
    return DP_OK;
}

dp_status dp_optim_zero_grad(dp_optim *o) {
    if (!o) return DP_ERR_NULL;
    for (int k = 0; k < o->n_params; k++) {
        dp_tensor *g = o->params[k]->grad;
        if (g) memset(g->data, 0, (size_t)dp_numel(g) * sizeof(float));
    }
    return DP_OK;
}

/* ------------------------------------------------------------ the step */

typedef struct upd_args {
    const dp_optim_opts *o;
    float *p, *g, *s0, *s1;
    float lr, scale;    /* scale: norm-clipping factor (1 = none) */
    float step_size;    /* Adam: lr / (1 - b1^t) */
    float bc2_sqrt;     /* Adam: sqrt(1 - b2^t) */
} upd_args;

/* Clipping is applied to the gradient buffers in place (as torch's clip_grad_*_
 * do), so callers see the gradients the update used. */
static inline float clip_grad(const upd_args *a, int64_t i) {
    float g = a->g[i];
    if (a->scale != 1.0f) a->g[i] = g = g * a->scale;
    float cv = a->o->clip_value;
    if (cv > 0.0f) {
        if (g > cv) g = cv;
        if (g < -cv) g = -cv;
        a->g[i] = g;
    }
    return g;
}

static void upd_sgd(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const upd_args *a = arg;
    const float wd = a->o->weight_decay, mom = a->o->momentum, lr = a->lr;
    const int nesterov = a->o->nesterov;
    for (int64_t i = begin; i < end; i++) {
        float g = clip_grad(a, i);
        if (wd != 0.0f) g += wd * a->p[i];
        if (mom != 0.0f) {
            /* The buffer starts at zero, so the first step gives buf = g exactly
             * as PyTorch's "buf = clone(grad)" does (dampening is 0). */
            float buf = mom * a->s0[i] + g;
            a->s0[i] = buf;
            g = nesterov ? g + mom * buf : buf;
        }
        a->p[i] -= lr * g;
    }
}

static void upd_adam(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const upd_args *a = arg;
    const dp_optim_opts *o = a->o;
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = o->weight_decay;
    const int decoupled = o->kind == DP_OPTIM_ADAMW;
    const float decay = 1.0f - a->lr * wd;
    if (wd == 0.0f && a->scale == 1.0f && !(o->clip_value > 0.0f)) { /* the plain update: vector kernel, same bits */
        dp_ew()->adam(a->p + begin, a->g + begin, a->s0 + begin, a->s1 + begin, end - begin, b1, b2, eps, a->bc2_sqrt,
                      a->step_size);
        return;
    }
    for (int64_t i = begin; i < end; i++) {
        float g = clip_grad(a, i);
        float p = a->p[i];
        if (wd != 0.0f) {
            if (decoupled)
                p *= decay;
            else
                g += wd * p;
        }
        float m = b1 * a->s0[i] + (1.0f - b1) * g;
        float v = b2 * a->s1[i] + (1.0f - b2) * g * g;
        a->s0[i] = m;
        a->s1[i] = v;
        float denom = sqrtf(v) / a->bc2_sqrt + eps; /* eps outside the sqrt, after bias correction (PyTorch) */
        a->p[i] = p - a->step_size * (m / denom);
    }
}

dp_status dp_optim_step(dp_optim *o) {
    if (!o) return DP_ERR_NULL;
    dp_ctx *ctx = o->ctx;
    const dp_optim_opts *opt = &o->opts;

    /* Pass 1: check every gradient and measure the global norm before touching
     * anything, so a bad gradient leaves parameters, state and counters as they were.
     * A per-tensor sum of squares in double is non-finite exactly when the tensor
     * holds a NaN or Inf (float values cannot overflow it). */
    double total = 0.0;
    for (int k = 0; k < o->n_params; k++) {
        dp_tensor *gt = o->params[k]->grad;
        if (!gt) continue;
        const float *g = gt->data;
        int64_t n = dp_numel(gt);
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
        if (!isfinite(ss)) {
            int64_t bad = 0;
            while (bad < n && isfinite(g[bad])) bad++;
            return dp_error(ctx, DP_ERR_NUMERIC,
                            "dp_optim_step: the gradient of '%s' is not finite (element %lld is %g); nothing was updated",
                            o->params[k]->name, (long long)bad, bad < n ? (double)g[bad] : (double)NAN);
        }
        total += ss;
    }
    float norm = (float)sqrt(total);
    o->last_norm = norm;

    upd_args a = {0};
    a.o = opt;
    a.lr = dp_lr_at(&opt->schedule, opt->lr, o->steps);
    a.scale = 1.0f;
    if (opt->clip_norm > 0.0f) {
        /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), only ever shrinks. */
        float coef = (float)((double)opt->clip_norm / ((double)norm + 1e-6));
        if (coef < 1.0f) a.scale = coef;
    }
    int64_t t = o->steps + 1;
    if (opt->kind != DP_OPTIM_SGD) {
        /* Bias corrections in double, as PyTorch computes them in Python floats. */
        double bc1 = 1.0 - pow((double)opt->beta1, (double)t);
        double bc2 = 1.0 - pow((double)opt->beta2, (double)t);
        a.step_size = (float)((double)a.lr / bc1);
        a.bc2_sqrt = (float)sqrt(bc2);
    }

    for (int k = 0; k < o->n_params; k++) {
        dp_tensor *p = o->params[k];
        if (!p->grad) continue; /* no gradient yet: untouched, like PyTorch's grad None */
        a.p = p->data;
        a.g = p->grad->data;
        a.s0 = o->n_slots > 0 ? o->state[k * o->n_slots].data : NULL;
        a.s1 = o->n_slots > 1 ? o->state[k * o->n_slots + 1].data : NULL;
        dp_range_fn fn = opt->kind == DP_OPTIM_SGD ? upd_sgd : upd_adam;
        int64_t n = dp_numel(p);
        if (n >= PAR_MIN)
            dp_parallel_for(ctx, n, fn, &a);
        else
            fn(&a, 0, n, 0);
    }
    o->steps = t;
    return DP_OK;
}

dp_paramset *dp_optim_paramset(const dp_optim *o) { return o ? o->ps : NULL; }
