/* doppel — core: status codes, contexts, tensors, random numbers.
 *
 * Conventions (the whole public API follows them):
 *  - every function that can fail returns a dp_status; DP_OK is 0;
 *  - a human-readable message for the last failure is kept in the context:
 *    dp_ctx_error(ctx);
 *  - every *_free / release function accepts NULL;
 *  - handles are opaque; nothing here reads files (see io.h).
 */
#ifndef DOPPEL_CORE_H
#define DOPPEL_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DP_VERSION_MAJOR 0
#define DP_VERSION_MINOR 1
#define DP_VERSION_PATCH 0
#define DP_VERSION_STRING "0.1.0"

#define DP_MAX_DIMS 4

typedef enum dp_status {
    DP_OK = 0,
    DP_ERR_NULL,        /* a required pointer or handle was NULL */
    DP_ERR_ARG,         /* an argument is out of range or inconsistent */
    DP_ERR_SHAPE,       /* tensor shapes do not fit together */
    DP_ERR_DTYPE,       /* unsupported or mismatched element type */
    DP_ERR_NOMEM,       /* an allocation failed or a size limit was hit */
    DP_ERR_IO,          /* a file could not be opened, read or written */
    DP_ERR_FORMAT,      /* a file or buffer is corrupt, truncated or of the wrong kind */
    DP_ERR_STATE,       /* the call is not allowed in the object's current state */
    DP_ERR_NUMERIC,     /* NaN or Inf where a finite number is required */
    DP_ERR_UNSUPPORTED, /* valid request that this build cannot do */
    DP_ERR_NOT_FOUND,   /* a named item does not exist */
    DP_STATUS_COUNT
} dp_status;

/* A short, static name for a status ("DP_ERR_SHAPE"). Never NULL. */
const char *dp_status_name(dp_status s);

typedef enum dp_dtype {
    DP_F32 = 0,
    DP_F16 = 1, /* reserved: not yet computed with */
    DP_BF16 = 2,
    DP_I8 = 3,
    DP_I32 = 4,
    DP_DTYPE_COUNT
} dp_dtype;

const char *dp_dtype_name(dp_dtype t);
size_t dp_dtype_size(dp_dtype t); /* bytes per element; 0 for an unknown dtype */

/* ---------------------------------------------------------------- context */

typedef struct dp_ctx dp_ctx;

/* Where a context takes its memory from. Every allocation the library makes on
 * behalf of a context goes through these (handy for counting or pooling). */
typedef struct dp_allocator {
    void *(*alloc)(size_t size, size_t align, void *user); /* NULL on failure */
    void (*free)(void *ptr, void *user);
    void *user;
} dp_allocator;

typedef struct dp_ctx_opts {
    int threads;                   /* worker threads incl. the caller; 0 = all online CPUs */
    uint64_t seed;                 /* seed for the context's random streams */
    const dp_allocator *allocator; /* NULL = aligned malloc/free */
    size_t max_tensor_bytes;       /* refuse larger single tensors; 0 = 16 GiB */
} dp_ctx_opts;

dp_status dp_ctx_new(const dp_ctx_opts *opts, dp_ctx **out); /* opts may be NULL */
void dp_ctx_free(dp_ctx *ctx);
/* The message of the last failure in this context ("" if none). Valid until the next call. */
const char *dp_ctx_error(const dp_ctx *ctx);
void dp_ctx_clear_error(dp_ctx *ctx);
int dp_ctx_threads(const dp_ctx *ctx);
uint64_t dp_ctx_seed(const dp_ctx *ctx);

/* Limits on what untrusted input may make doppel allocate (docs/security.md).
 * Every reader checks a file's header against them BEFORE allocating, so a
 * decompression bomb or a header claiming a terabyte costs nothing and fails
 * with a message naming the file and the limit. A zero field means the
 * default (dp_limits_default); negative values are refused. */
typedef struct dp_limits {
    int64_t max_image_side;    /* widest / tallest image decoded: 16384 */
    int64_t max_image_pixels;  /* width*height of one image: 100,000,000 */
    int64_t max_file_bytes;    /* a media file read whole (image, cascade): 256 MiB */
    int64_t max_tensor_bytes;  /* one tensor / array from a file (safetensors, IDX, HDF5): 1 GiB */
    int64_t max_video_side;    /* widest / tallest video frame: 8192 */
    int64_t max_video_frames;  /* frames read from one video: 1,000,000 */
    int64_t max_video_seconds; /* duration of one video: 86400 (a day) */
} dp_limits;

#define DP_LIMIT_IMAGE_SIDE 16384
#define DP_LIMIT_IMAGE_PIXELS ((int64_t)100000000)
#define DP_LIMIT_FILE_BYTES ((int64_t)256 << 20)
#define DP_LIMIT_TENSOR_BYTES ((int64_t)1 << 30)
#define DP_LIMIT_VIDEO_SIDE 8192
#define DP_LIMIT_VIDEO_FRAMES ((int64_t)1000000)
#define DP_LIMIT_VIDEO_SECONDS ((int64_t)86400)

void dp_limits_default(dp_limits *l);
/* Set the context's limits (zero fields: the default). DP_ERR_ARG for a negative one. */
dp_status dp_ctx_set_limits(dp_ctx *ctx, const dp_limits *l);
/* The context's limits, defaults filled in (ctx NULL: the defaults). */
void dp_ctx_limits(const dp_ctx *ctx, dp_limits *out);

/* ---------------------------------------------------------------- tensors */

/* A tensor is a typed, strided view of memory with up to 4 dimensions.
 * Tensors made by dp_tensor_new own their memory (from the context's arena,
 * released with the context). Views (reshape, permute, slice) share it. */
typedef struct dp_tensor dp_tensor;

dp_status dp_tensor_new(dp_ctx *ctx, dp_dtype dtype, int ndim, const int64_t *shape, dp_tensor **out);
dp_status dp_tensor_reshape(dp_ctx *ctx, const dp_tensor *t, int ndim, const int64_t *shape, dp_tensor **out);
dp_status dp_tensor_permute(dp_ctx *ctx, const dp_tensor *t, const int *perm, dp_tensor **out);
dp_status dp_tensor_slice(dp_ctx *ctx, const dp_tensor *t, int axis, int64_t start, int64_t end, dp_tensor **out);

int dp_tensor_ndim(const dp_tensor *t);
int64_t dp_tensor_dim(const dp_tensor *t, int axis); /* -1 for an invalid axis or NULL */
const int64_t *dp_tensor_shape(const dp_tensor *t);
const int64_t *dp_tensor_strides(const dp_tensor *t); /* in elements */
int64_t dp_tensor_numel(const dp_tensor *t);
dp_dtype dp_tensor_dtype(const dp_tensor *t);
int dp_tensor_is_contiguous(const dp_tensor *t);
const char *dp_tensor_name(const dp_tensor *t); /* "" if unnamed */
/* Pointer to element 0 as float; NULL if the tensor is not DP_F32. */
float *dp_tensor_f32(dp_tensor *t);
const float *dp_tensor_f32_const(const dp_tensor *t);
/* Copies between a (possibly strided) tensor and a dense row-major float array. */
dp_status dp_tensor_copy_from(dp_tensor *t, const float *src, size_t n);
dp_status dp_tensor_copy_to(const dp_tensor *t, float *dst, size_t n);
dp_status dp_tensor_fill(dp_tensor *t, float v);

/* ---------------------------------------------------------------- random */

/* xoshiro256** — small, fast, reproducible on every platform. */
typedef struct dp_rng {
    uint64_t s[4];
    int has_spare;
    float spare;
} dp_rng;

void dp_rng_seed(dp_rng *r, uint64_t seed);
uint64_t dp_rng_u64(dp_rng *r);
uint32_t dp_rng_below(dp_rng *r, uint32_t n); /* uniform in [0, n) */
float dp_rng_uniform(dp_rng *r);              /* [0, 1) */
float dp_rng_normal(dp_rng *r);               /* N(0, 1) */
/* An independent stream derived from a seed and a stream id (e.g. a parameter index). */
void dp_rng_stream(dp_rng *r, uint64_t seed, uint64_t stream);

#ifdef __cplusplus
}
#endif
#endif
