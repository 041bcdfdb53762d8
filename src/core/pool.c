/* A thread pool that stays warm: a job is split into one contiguous range per
 * worker (deterministic). Between jobs a worker first watches for the next one
 * for a short while (DP_SPIN_US, default 200 microseconds: pausing, then
 * yielding the CPU to anything else runnable), and only then sleeps on a
 * condition variable; the caller waits for the workers the same way. On a
 * 2-vCPU VM a sleeping worker took 40-120 us to wake (the vCPU halts; the
 * wake-up is an inter-processor interrupt through the hypervisor), which is
 * longer than a Meso-4 layer of one image takes on both cores. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/internal.h"

typedef struct worker {
    pthread_t th;
    struct dp_pool *pool;
    int id;
    atomic_int ready; /* 0 starting, 1 running, -1 failed (no GEMM buffers) */
} worker;

struct dp_pool {
    int threads; /* including the caller */
    worker *w;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    _Atomic uint64_t gen;  /* job number: written under mu, read by spinning workers */
    atomic_int pending;    /* workers still running the current job */
    int sleepers;          /* workers asleep on go (under mu) */
    int caller_asleep;     /* the caller asleep on done (under mu) */
    atomic_int stop;
    int64_t spin_ns;
    /* the current job (published by the release store of gen) */
    dp_range_fn fn;
    void *arg;
    int64_t n;
    int parts;
    pthread_mutex_t job_mu; /* one job at a time (callers on several threads) */
};

static void run_part(dp_pool *p, int part) {
    if (part >= p->parts) return;
    int64_t b = p->n * part / p->parts, e = p->n * (part + 1) / p->parts;
    if (b < e) p->fn(p->arg, b, e, part);
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int new_job(dp_pool *p, uint64_t seen) { return atomic_load_explicit(&p->gen, memory_order_acquire) != seen; }
static int job_done(dp_pool *p, uint64_t unused) {
    (void)unused;
    return atomic_load_explicit(&p->pending, memory_order_acquire) == 0;
}

/* Watch until ready(p, arg) (1) or until spin_ns have passed (0): pause for
 * the first 20 us, then yield, so that a busy machine loses little to it. */
static int spin_until(dp_pool *p, int (*ready)(dp_pool *, uint64_t), uint64_t arg) {
    if (p->spin_ns <= 0) return ready(p, arg);
    int64_t t0 = now_ns(), t = t0;
    for (unsigned i = 1;; i++) {
        if (ready(p, arg)) return 1;
        if ((i & 63) == 0) {
            t = now_ns();
            if (t - t0 > p->spin_ns) return 0;
        }
        if (t - t0 < 20000) cpu_relax();
        else sched_yield();
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    dp_pool *p = w->pool;
    uint64_t seen = 0;
    /* The GEMM's packing buffers before any job, so that a failed allocation
     * is dp_pool_new's DP_ERR_NOMEM, not an abort in the middle of one. */
    const int ok = dp_gemm_thread_ready();
    pthread_mutex_lock(&p->mu);
    atomic_store(&w->ready, ok ? 1 : -1);
    pthread_cond_broadcast(&p->done);
    pthread_mutex_unlock(&p->mu);
    if (!ok) return NULL;
    for (;;) {
        if (!spin_until(p, new_job, seen)) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (!atomic_load(&p->stop) && atomic_load(&p->gen) == seen) pthread_cond_wait(&p->go, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        run_part(p, w->id);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            if (p->caller_asleep) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static int64_t spin_setting(void) {
    const char *e = getenv("DP_SPIN_US");
    if (!e || !*e) return 200000;
    char *end;
    long v = strtol(e, &end, 10);
    if (*end || v < 0) return 200000;
    return (int64_t)(v > 100000 ? 100000 : v) * 1000;
}

dp_status dp_pool_new(const dp_allocator *al, int threads, dp_pool **out) {
    *out = NULL;
    dp_pool *p = al->alloc(sizeof *p, DP_ALIGN, al->user);
    if (!p) return DP_ERR_NOMEM;
    memset(p, 0, sizeof *p);
    p->threads = threads;
    p->spin_ns = spin_setting();
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->job_mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    if (threads > 1) {
        p->w = al->alloc(sizeof(worker) * (size_t)threads, DP_ALIGN, al->user);
        if (!p->w) {
            al->free(p, al->user);
            return DP_ERR_NOMEM;
        }
        for (int i = 1; i < threads; i++) {
            p->w[i].pool = p;
            p->w[i].id = i;
            atomic_init(&p->w[i].ready, 0);
            if (pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i]) != 0) {
                p->threads = i; /* keep the ones we have */
                break;
            }
        }
        int failed = 0;
        pthread_mutex_lock(&p->mu);
        for (int i = 1; i < p->threads; i++) {
            while (atomic_load(&p->w[i].ready) == 0) pthread_cond_wait(&p->done, &p->mu);
            failed |= atomic_load(&p->w[i].ready) < 0;
        }
        pthread_mutex_unlock(&p->mu);
        if (failed) {
            dp_pool_free(p, al);
            return DP_ERR_NOMEM;
        }
    }
    *out = p;
    return DP_OK;
}

void dp_pool_free(dp_pool *p, const dp_allocator *al) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->threads; i++) pthread_join(p->w[i].th, NULL);
    if (p->w) al->free(p->w, al->user);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->job_mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    al->free(p, al->user);
}

void dp_parallel_for_n(dp_ctx *ctx, int64_t n, int max_parts, dp_range_fn fn, void *arg) {
    if (n <= 0) return;
    dp_pool *p = ctx->pool;
    int parts = p->threads;
    if (max_parts > 0 && parts > max_parts) parts = max_parts;
    if (parts > n) parts = (int)n;
    if (parts <= 1) {
        fn(arg, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->job_mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->parts = parts;
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->gen, atomic_load_explicit(&p->gen, memory_order_relaxed) + 1, memory_order_release);
    if (p->sleepers) pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_part(p, 0);
    if (!spin_until(p, job_done, 0)) {
        pthread_mutex_lock(&p->mu);
        p->caller_asleep = 1;
        while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) pthread_cond_wait(&p->done, &p->mu);
        p->caller_asleep = 0;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->job_mu);
}

void dp_parallel_for(dp_ctx *ctx, int64_t n, dp_range_fn fn, void *arg) { dp_parallel_for_n(ctx, n, 0, fn, arg); }

void dp_parallel_for_cost(dp_ctx *ctx, int64_t n, int64_t cost, dp_range_fn fn, void *arg) {
    if (n <= 0) return;
    int64_t work = n * (cost > 0 ? cost : 1), parts = work / DP_PAR_GRAIN;
    if (parts > ctx->threads) parts = ctx->threads;
    dp_parallel_for_n(ctx, n, parts < 1 ? 1 : (int)parts, fn, arg);
}
