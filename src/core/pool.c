/* A thread pool that stays warm: workers sleep on a condition variable between
 * jobs; a job is split into one contiguous range per worker (deterministic). */
#include <pthread.h>
#include <stdlib.h>

#include "core/internal.h"

typedef struct worker {
    pthread_t th;
    struct dp_pool *pool;
    int id;
} worker;

struct dp_pool {
    int threads; /* including the caller */
    worker *w;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;
    int pending;
    int stop;
    /* the current job */
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

static void *worker_main(void *arg) {
    worker *w = arg;
    dp_pool *p = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_part(p, w->id);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

dp_status dp_pool_new(const dp_allocator *al, int threads, dp_pool **out) {
    *out = NULL;
    dp_pool *p = al->alloc(sizeof *p, DP_ALIGN, al->user);
    if (!p) return DP_ERR_NOMEM;
    memset(p, 0, sizeof *p);
    p->threads = threads;
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
            if (pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i]) != 0) {
                p->threads = i; /* keep the ones we have */
                break;
            }
        }
    }
    *out = p;
    return DP_OK;
}

void dp_pool_free(dp_pool *p, const dp_allocator *al) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->parts = parts;
    p->pending = p->threads - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_part(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->job_mu);
}

void dp_parallel_for(dp_ctx *ctx, int64_t n, dp_range_fn fn, void *arg) { dp_parallel_for_n(ctx, n, 0, fn, arg); }

void dp_parallel_for_cost(dp_ctx *ctx, int64_t n, int64_t cost, dp_range_fn fn, void *arg) {
    if (n <= 0) return;
    int64_t work = n * (cost > 0 ? cost : 1), parts = work / DP_PAR_GRAIN;
    if (parts > ctx->threads) parts = ctx->threads;
    dp_parallel_for_n(ctx, n, parts < 1 ? 1 : (int)parts, fn, arg);
}
