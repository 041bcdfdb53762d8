/* doppel — data: IDX files (MNIST format), images (PNG, JPEG, WebP) and
 * in-memory datasets for classifiers.
 *
 * Every function reports failures through the context (dp_ctx_error) and its
 * messages name the file. Nothing here calls exit(); a corrupt, truncated or
 * oversized file is an ordinary DP_ERR_FORMAT / DP_ERR_NOMEM.
 *
 * Buffers returned in the structs below come from the context's allocator and
 * are released with the matching *_free function (which accepts NULL /
 * zeroed structs).
 */
#ifndef DOPPEL_DATA_H
#define DOPPEL_DATA_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ IDX
 * The format of MNIST and Fashion-MNIST: a 4-byte magic (0,0,dtype,rank),
 * rank big-endian uint32 dimensions, then the data. Only unsigned bytes
 * (dtype 0x08) and ranks 1..4 are supported. Gzip-compressed files are read
 * transparently (the format is detected from the bytes, not the name). */
typedef struct dp_idx {
    int ndim;
    int64_t dims[DP_MAX_DIMS];
    uint8_t *data; /* dims[0]*...*dims[ndim-1] bytes */
    size_t size;
} dp_idx;

/* max_bytes: refuse files whose header announces more data (0 = the context's
 * dp_limits.max_tensor_bytes, default 1 GiB). */
dp_status dp_idx_read(dp_ctx *ctx, const char *path, size_t max_bytes, dp_idx *out);
/* Writes gzip-compressed when path ends in ".gz". Crash-safe (temp + rename). */
dp_status dp_idx_write(dp_ctx *ctx, const char *path, int ndim, const int64_t *dims, const uint8_t *data);
void dp_idx_free(dp_ctx *ctx, dp_idx *idx);

/* ------------------------------------------------------------ images */
typedef enum dp_image_format { DP_IMG_UNKNOWN = 0, DP_IMG_PNG, DP_IMG_JPEG, DP_IMG_WEBP } dp_image_format;

/* Checked from the file's header BEFORE any pixel is decoded (a "decompression
 * bomb" costs nothing). A zero field means the context's dp_limits
 * (core.h: max_image_side, max_image_pixels, max_file_bytes). */
typedef struct dp_image_limits {
    int max_side;           /* widest / tallest accepted (default 16384) */
    int64_t max_pixels;     /* width*height: default 100,000,000 */
    int64_t max_file_bytes; /* default 256 MiB */
} dp_image_limits;

/* A float image, planar [C,H,W], values in [0,1]. C is 1 (grey) or 3 (RGB). */
typedef struct dp_image {
    int channels, height, width;
    float *data;
} dp_image;

/* The format from the first bytes (PNG signature, JPEG SOI, RIFF....WEBP). */
dp_image_format dp_image_sniff(const void *buf, size_t n);
const char *dp_image_format_name(dp_image_format f); /* "png", "jpeg", "webp", "unknown" */

/* Decode a PNG/JPEG/WebP held in memory. channels: 1 (grey, ITU-R 601 luma),
 * 3 (RGB) or 0 (1 if the file is grey, else 3). Alpha is dropped. name is
 * used in messages (may be NULL). Corrupt or truncated data → DP_ERR_FORMAT. */
dp_status dp_image_decode(dp_ctx *ctx, const void *buf, size_t n, const char *name, int channels,
                          const dp_image_limits *lim, dp_image *out);
dp_status dp_image_load(dp_ctx *ctx, const char *path, int channels, const dp_image_limits *lim, dp_image *out);
/* Width/height/format from the header only (no pixel decoded). */
dp_status dp_image_probe(dp_ctx *ctx, const char *path, dp_image_format *fmt, int *width, int *height);

dp_status dp_image_alloc(dp_ctx *ctx, int channels, int height, int width, dp_image *out); /* zeroed */
void dp_image_free(dp_ctx *ctx, dp_image *img);

/* 8-bit PNG (grey or RGB) from values clamped to [0,1] (NaN → 0). Written to
 * PATH.tmp-XXXXXX then renamed, so no half-written file is ever left at PATH. */
dp_status dp_image_save_png(dp_ctx *ctx, const char *path, const dp_image *img);

/* Resample to height×width: bilinear when enlarging; when shrinking the
 * triangle filter widens with the scale so every source pixel is averaged in
 * (area-style antialiasing, as PIL's BILINEAR resize). */
dp_status dp_image_resize(dp_ctx *ctx, const dp_image *src, int height, int width, dp_image *out);
/* The centred height×width window (must fit inside src). */
dp_status dp_image_center_crop(dp_ctx *ctx, const dp_image *src, int height, int width, dp_image *out);
/* Resize keeping the aspect ratio so the image covers height×width, then
 * centre-crop: the usual "resize shorter side + center crop" of classifiers. */
dp_status dp_image_resize_cover(dp_ctx *ctx, const dp_image *src, int height, int width, dp_image *out);

/* ------------------------------------------------------------ datasets
 * Labelled images kept in memory as bytes (4× smaller than floats), turned
 * into normalised float batches on demand. Read the fields; do not modify. */
typedef struct dp_dataset {
    int64_t n;
    int channels, height, width;
    uint8_t *pixels;  /* [n,C,H,W], 0..255 */
    int32_t *labels;  /* [n], each in [0, n_classes) */
    int n_classes;
    char **class_names;
    int64_t skipped;  /* folder datasets: files that could not be read */
    dp_ctx *ctx;
} dp_dataset;

/* IDX image file ([N,H,W] or [N,H,W,C] with C 1 or 3) + IDX label file ([N]).
 * limit > 0 keeps the first limit samples. Class names are "0".."K-1". */
dp_status dp_dataset_from_idx(dp_ctx *ctx, const char *images_path, const char *labels_path, int64_t limit,
                              dp_dataset **out);
/* Fashion-MNIST from dir (NULL = DP_FASHION_MNIST_DIR): train=1 the 60,000
 * training images, train=0 the 10,000 test images. Files may be gzipped
 * ("...-ubyte.gz") or not. Class names are set ("T-shirt/top", ...). */
#define DP_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
dp_status dp_dataset_fashion_mnist(dp_ctx *ctx, const char *dir, int train, int64_t limit, dp_dataset **out);

typedef struct dp_folder_opts {
    int channels, height, width; /* the model input every image is fitted to (required) */
    /* > 0: keep about this many images, spread evenly over the sorted list
     * (so every class keeps its share). */
    int64_t limit;
    dp_image_limits image_limits;
    /* Called once per skipped file with a one-line message (no newline);
     * NULL prints "warning: ..." lines to stderr. */
    void (*warn)(void *user, const char *msg);
    void *warn_user;
    /* Called now and then while loading (may be NULL). */
    void (*progress)(void *user, int64_t done, int64_t total);
    void *progress_user;
} dp_folder_opts;
/* dir/<class>/ ... (any depth) *.png|jpg|jpeg|webp: one class per subfolder (sorted by
 * name; hidden ones ignored), files found recursively and sorted by path for
 * determinism. Each image is resized to cover channels×height×width and
 * centre-cropped. Unreadable images are skipped with a warning and counted in
 * ->skipped; it fails only if no image at all could be read. */
dp_status dp_dataset_from_folder(dp_ctx *ctx, const char *dir, const dp_folder_opts *opts, dp_dataset **out);
void dp_dataset_free(dp_dataset *ds);

/* Per-channel mean and standard deviation of the pixel values in [0,1] over
 * the samples idx[0..n) (idx NULL = all). mean/std have ds->channels floats. */
dp_status dp_dataset_stats(const dp_dataset *ds, const int64_t *idx, int64_t n, float *mean, float *std);
/* Fill x (dense [n,C,H,W]) with (pixel/255 - mean[c]) / std[c] (mean/std NULL:
 * just pixel/255) and y ([n], may be NULL) with the labels as floats, for the
 * samples idx[0..n). Indices must be in [0, ds->n). */
void dp_dataset_batch(const dp_dataset *ds, const int64_t *idx, int64_t n, const float *mean, const float *std,
                      float *x, float *y);
/* Fisher–Yates shuffle with the given stream (reproducible for a seed). */
void dp_shuffle_i64(dp_rng *r, int64_t *a, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
