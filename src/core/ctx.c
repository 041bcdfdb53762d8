/* Contexts, errors, allocation and arenas. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/internal.h"

static const char *const status_names[DP_STATUS_COUNT] = {
    "DP_OK",           "DP_ERR_NULL",    "DP_ERR_ARG",     "DP_ERR_SHAPE",       "DP_ERR_DTYPE",     "DP_ERR_NOMEM",
    "DP_ERR_IO",       "DP_ERR_FORMAT",  "DP_ERR_STATE",   "DP_ERR_NUMERIC",     "DP_ERR_UNSUPPORTED", "DP_ERR_NOT_FOUND",
};

const char *dp_status_name(dp_status s) {
    return ((unsigned)s < DP_STATUS_COUNT) ? status_names[s] : "DP_ERR_UNKNOWN";
}

static void *default_alloc(size_t size, size_t align, void *user) {
    (void)user;
    void *p = NULL;
    if (size == 0) size = 1;
    size = (size + align - 1) / align * align; /* aligned_alloc wants a multiple */
    p = aligned_alloc(align, size);
    return p;
}
static void default_free(void *p, void *user) {
    (void)user;
    free(p);
}
static const dp_allocator default_allocator = {default_alloc, default_free, NULL};

dp_status dp_verror(dp_ctx *ctx, dp_status s, const char *fmt, va_list ap) {
    if (ctx) {
        ctx->last_status = s;
        /* Format aside first: callers may pass the previous message as an argument. */
        char msg[sizeof ctx->err];
        vsnprintf(msg, sizeof msg, fmt, ap);
        memcpy(ctx->err, msg, sizeof msg);
    }
    return s;
}

dp_status dp_error(dp_ctx *ctx, dp_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dp_verror(ctx, s, fmt, ap);
    va_end(ap);
    return s;
}

const char *dp_ctx_error(const dp_ctx *ctx) { return ctx ? ctx->err : "no context (NULL)"; }
void dp_ctx_clear_error(dp_ctx *ctx) {
    if (ctx) {
        ctx->err[0] = 0;
        ctx->last_status = DP_OK;
    }
}
int dp_ctx_threads(const dp_ctx *ctx) { return ctx ? ctx->threads : 0; }
uint64_t dp_ctx_seed(const dp_ctx *ctx) { return ctx ? ctx->seed : 0; }

void *dp_malloc(dp_ctx *ctx, size_t size) { return ctx->alloc.alloc(size, DP_ALIGN, ctx->alloc.user); }
void *dp_calloc(dp_ctx *ctx, size_t size) {
    void *p = dp_malloc(ctx, size);
    if (p) memset(p, 0, size);
    return p;
}
void dp_free(dp_ctx *ctx, void *p) {
    if (p) ctx->alloc.free(p, ctx->alloc.user);
}

dp_status dp_ctx_new(const dp_ctx_opts *opts, dp_ctx **out) {
    if (!out) return DP_ERR_NULL;
    *out = NULL;
    const dp_allocator *al = (opts && opts->allocator) ? opts->allocator : &default_allocator;
    if (!al->alloc || !al->free) return DP_ERR_ARG;
    dp_ctx *ctx = al->alloc(sizeof *ctx, DP_ALIGN, al->user);
    if (!ctx) return DP_ERR_NOMEM;
    memset(ctx, 0, sizeof *ctx);
    ctx->alloc = *al;
    int threads = opts ? opts->threads : 0;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads > 256) threads = 256;
    ctx->threads = threads;
    ctx->seed = opts ? opts->seed : 0;
    ctx->max_tensor_bytes = (opts && opts->max_tensor_bytes) ? opts->max_tensor_bytes : ((size_t)16 << 30);
    dp_limits_default(&ctx->limits);
    dp_arena_init(&ctx->arena, &ctx->alloc, (size_t)1 << 20);
    dp_status s = dp_pool_new(&ctx->alloc, threads, &ctx->pool);
    if (s != DP_OK) {
        al->free(ctx, al->user);
        return s;
    }
    if (pthread_mutex_init(&ctx->ws_mu, NULL) != 0) {
        dp_pool_free(ctx->pool, &ctx->alloc);
        al->free(ctx, al->user);
        return DP_ERR_NOMEM;
    }
    *out = ctx;
    return DP_OK;
}

void dp_limits_default(dp_limits *l) {
    if (!l) return;
    l->max_image_side = DP_LIMIT_IMAGE_SIDE;
    l->max_image_pixels = DP_LIMIT_IMAGE_PIXELS;
    l->max_file_bytes = DP_LIMIT_FILE_BYTES;
    l->max_tensor_bytes = DP_LIMIT_TENSOR_BYTES;
    l->max_video_side = DP_LIMIT_VIDEO_SIDE;
    l->max_video_frames = DP_LIMIT_VIDEO_FRAMES;
    l->max_video_seconds = DP_LIMIT_VIDEO_SECONDS;
}

dp_status dp_ctx_set_limits(dp_ctx *ctx, const dp_limits *l) {
    if (!ctx || !l) return dp_error(ctx, DP_ERR_NULL, "dp_ctx_set_limits: NULL argument");
    int64_t f[7] = {l->max_image_side, l->max_image_pixels, l->max_file_bytes, l->max_tensor_bytes, l->max_video_side,
                    l->max_video_frames, l->max_video_seconds};
    static const char *const names[7] = {"max_image_side", "max_image_pixels", "max_file_bytes", "max_tensor_bytes",
                                         "max_video_side", "max_video_frames", "max_video_seconds"};
    for (int i = 0; i < 7; i++)
        if (f[i] < 0) return dp_error(ctx, DP_ERR_ARG, "dp_ctx_set_limits: %s is negative (%lld)", names[i], (long long)f[i]);
    if (l->max_image_side > INT32_MAX)
        return dp_error(ctx, DP_ERR_ARG, "dp_ctx_set_limits: max_image_side %lld is above 2^31-1", (long long)l->max_image_side);
    dp_limits d;
    dp_limits_default(&d);
    ctx->limits.max_image_side = l->max_image_side ? l->max_image_side : d.max_image_side;
    ctx->limits.max_image_pixels = l->max_image_pixels ? l->max_image_pixels : d.max_image_pixels;
    ctx->limits.max_file_bytes = l->max_file_bytes ? l->max_file_bytes : d.max_file_bytes;
    ctx->limits.max_tensor_bytes = l->max_tensor_bytes ? l->max_tensor_bytes : d.max_tensor_bytes;
    ctx->limits.max_video_side = l->max_video_side ? l->max_video_side : d.max_video_side;
    ctx->limits.max_video_frames = l->max_video_frames ? l->max_video_frames : d.max_video_frames;
    ctx->limits.max_video_seconds = l->max_video_seconds ? l->max_video_seconds : d.max_video_seconds;
    return DP_OK;
}

void dp_ctx_limits(const dp_ctx *ctx, dp_limits *out) {
    if (!out) return;
    if (ctx) *out = ctx->limits;
    else dp_limits_default(out);
}

dp_status dp_ctx_ws_reserve(dp_ctx *ctx, size_t bytes) {
    dp_status st = DP_OK;
    pthread_mutex_lock(&ctx->ws_mu);
    if (bytes > ctx->ws_bytes) {
        /* calloc's zeroes: the same start as the per-graph workspace had */
        void *p = dp_calloc(ctx, bytes);
        if (p) {
            dp_free(ctx, ctx->ws);
            ctx->ws = p;
            ctx->ws_bytes = bytes;
        } else
            st = DP_ERR_NOMEM;
    }
    if (st == DP_OK) ctx->ws_users++;
    pthread_mutex_unlock(&ctx->ws_mu);
    return st;
}

void dp_ctx_ws_release(dp_ctx *ctx) {
    pthread_mutex_lock(&ctx->ws_mu);
    if (--ctx->ws_users == 0) {
        dp_free(ctx, ctx->ws);
        ctx->ws = NULL;
        ctx->ws_bytes = 0;
    }
    pthread_mutex_unlock(&ctx->ws_mu);
}

void *dp_ctx_ws_lock(dp_ctx *ctx) {
    pthread_mutex_lock(&ctx->ws_mu);
    return ctx->ws;
}

void dp_ctx_ws_unlock(dp_ctx *ctx) { pthread_mutex_unlock(&ctx->ws_mu); }

void dp_ctx_free(dp_ctx *ctx) {
    if (!ctx) return;
    dp_free(ctx, ctx->ws); /* still here only if a graph was never freed */
    pthread_mutex_destroy(&ctx->ws_mu);
    dp_pool_free(ctx->pool, &ctx->alloc);
    dp_arena_release(&ctx->arena);
    dp_allocator al = ctx->alloc;
    al.free(ctx, al.user);
}

/* ------------------------------------------------------------ arena */
struct dp_arena_chunk {
    dp_arena_chunk *next;
    size_t size, used;
    /* data follows, 64-byte aligned */
};
#define CHUNK_HDR ((sizeof(dp_arena_chunk) + DP_ALIGN - 1) / DP_ALIGN * DP_ALIGN)

void dp_arena_init(dp_arena *a, const dp_allocator *alloc, size_t chunk_size) {
    a->head = NULL;
    a->alloc = alloc;
    a->chunk_size = chunk_size;
    a->total = 0;
}

void *dp_arena_alloc(dp_arena *a, size_t size, size_t align) {
    if (align < 8) align = 8;
    dp_arena_chunk *c = a->head;
    if (c) {
        size_t off = (c->used + align - 1) / align * align;
        if (off <= c->size && size <= c->size - off) {
            c->used = off + size;
            void *p = (char *)c + CHUNK_HDR + off;
            memset(p, 0, size);
            return p;
        }
    }
    /* A new chunk; big requests get a chunk of their own, put behind the head
     * so the head's free tail stays usable. */
    size_t need = size + align;
    size_t csize = need > a->chunk_size ? need : a->chunk_size;
    if (csize > SIZE_MAX - CHUNK_HDR) return NULL;
    dp_arena_chunk *n = a->alloc->alloc(CHUNK_HDR + csize, DP_ALIGN, a->alloc->user);
    if (!n) return NULL;
    a->total += CHUNK_HDR + csize;
    n->size = csize;
    n->used = 0;
    if (c && csize > a->chunk_size) {
        n->next = c->next;
        c->next = n;
    } else {
        n->next = c;
        a->head = n;
    }
    size_t off = 0;
    n->used = size;
    void *p = (char *)n + CHUNK_HDR + off;
    memset(p, 0, size);
    return p;
}

char *dp_arena_strdup(dp_arena *a, const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *p = dp_arena_alloc(a, n, 1);
    if (p) memcpy(p, s, n);
    return p;
}

void dp_arena_release(dp_arena *a) {
    dp_arena_chunk *c = a->head;
    while (c) {
        dp_arena_chunk *n = c->next;
        a->alloc->free(c, a->alloc->user);
        c = n;
    }
    a->head = NULL;
    a->total = 0;
}
