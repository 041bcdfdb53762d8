/* In-memory labelled image sets: from IDX files (Fashion-MNIST) or from a
 * folder of class subfolders; float batches on demand. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "io/data_internal.h"

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

void dp_dataset_free(dp_dataset *ds) {
    if (!ds) return;
    dp_ctx *ctx = ds->ctx;
    if (ds->class_names) {
        for (int i = 0; i < ds->n_classes; i++) dp_free(ctx, ds->class_names[i]);
        dp_free(ctx, ds->class_names);
    }
    dp_free(ctx, ds->pixels);
    dp_free(ctx, ds->labels);
    dp_free(ctx, ds);
}

static char *xstrdup(dp_ctx *ctx, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = dp_malloc(ctx, n);
    if (p) memcpy(p, s, n);
    return p;
}

static dp_status new_dataset(dp_ctx *ctx, int n_classes, dp_dataset **out) {
    dp_dataset *ds = dp_calloc(ctx, sizeof *ds);
    if (!ds) return dp_error(ctx, DP_ERR_NOMEM, "dataset: out of memory");
    ds->ctx = ctx;
    ds->class_names = dp_calloc(ctx, sizeof(char *) * (size_t)(n_classes > 0 ? n_classes : 1));
    if (!ds->class_names) {
        dp_free(ctx, ds);
        return dp_error(ctx, DP_ERR_NOMEM, "dataset: out of memory");
    }
    ds->n_classes = n_classes;
    *out = ds;
    return DP_OK;
}

static dp_status set_class_names(dp_dataset *ds, const char *const *names) {
    for (int i = 0; i < ds->n_classes; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        ds->class_names[i] = xstrdup(ds->ctx, names ? names[i] : num);
        if (!ds->class_names[i]) return dp_error(ds->ctx, DP_ERR_NOMEM, "dataset: out of memory");
    }
    return DP_OK;
}

/* ------------------------------------------------------------ IDX */
static dp_status idx_dataset(dp_ctx *ctx, const char *images_path, const char *labels_path, int64_t limit,
                             const char *const *names, int n_names, dp_dataset **out) {
    if (!ctx || !images_path || !labels_path || !out) return dp_error(ctx, DP_ERR_NULL, "dp_dataset_from_idx: NULL argument");
    *out = NULL;
    dp_idx im = {0}, lb = {0};
    dp_dataset *ds = NULL;
    dp_status st = dp_idx_read(ctx, images_path, 0, &im);
    if (st != DP_OK) return st;
    if ((st = dp_idx_read(ctx, labels_path, 0, &lb)) != DP_OK) goto fail;
    int C = im.ndim == 4 ? (int)im.dims[3] : 1;
    if ((im.ndim != 3 && im.ndim != 4) || (C != 1 && C != 3) || im.dims[0] <= 0 || im.dims[1] <= 0 || im.dims[2] <= 0) {
        char s[96];
        st = dp_error(ctx, DP_ERR_SHAPE, "%s: images must be [N,H,W] or [N,H,W,C] with C 1 or 3 and N,H,W > 0, got %s",
                      images_path, dp_shape_str(im.ndim, im.dims, s, sizeof s));
        goto fail;
    }
    if (lb.ndim != 1 || lb.dims[0] != im.dims[0]) {
        char s[96];
        st = dp_error(ctx, DP_ERR_SHAPE, "%s: labels must be [%lld] to match %s, got %s", labels_path,
                      (long long)im.dims[0], images_path, dp_shape_str(lb.ndim, lb.dims, s, sizeof s));
        goto fail;
    }
    int64_t n = im.dims[0];
    if (limit > 0 && limit < n) n = limit;
    int maxl = 0;
    for (int64_t i = 0; i < n; i++) maxl = lb.data[i] > maxl ? lb.data[i] : maxl;
    int k = names ? n_names : maxl + 1;
    for (int64_t i = 0; i < n; i++)
        if (lb.data[i] >= k) {
            st = dp_error(ctx, DP_ERR_FORMAT, "%s: label %d at offset %lld is not a class index (0..%d)", labels_path,
                          lb.data[i], (long long)(8 + i), k - 1);
            goto fail;
        }
    if ((st = new_dataset(ctx, k, &ds)) != DP_OK) goto fail;
    if ((st = set_class_names(ds, names)) != DP_OK) goto fail;
    ds->n = n;
    ds->channels = C;
    ds->height = (int)im.dims[1];
    ds->width = (int)im.dims[2];
    ds->labels = dp_malloc(ctx, sizeof(int32_t) * (size_t)n);
    if (!ds->labels) {
        st = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", labels_path);
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) ds->labels[i] = lb.data[i];
    if (C == 1) { /* [N,H,W] is already [N,1,H,W]: keep the buffer */
        ds->pixels = im.data;
        im.data = NULL;
    } else { /* HWC → CHW */
        size_t hw = (size_t)ds->height * (size_t)ds->width;
        ds->pixels = dp_malloc(ctx, (size_t)n * hw * 3);
        if (!ds->pixels) {
            st = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", images_path);
            goto fail;
        }
        for (int64_t i = 0; i < n; i++)
            for (size_t p = 0; p < hw; p++)
                for (int c = 0; c < 3; c++) ds->pixels[((size_t)i * 3 + (size_t)c) * hw + p] = im.data[((size_t)i * hw + p) * 3 + (size_t)c];
    }
    dp_idx_free(ctx, &im);
    dp_idx_free(ctx, &lb);
    *out = ds;
    return DP_OK;
fail:
    dp_idx_free(ctx, &im);
    dp_idx_free(ctx, &lb);
    dp_dataset_free(ds);
    return st;
}

dp_status dp_dataset_from_idx(dp_ctx *ctx, const char *images_path, const char *labels_path, int64_t limit,
                              dp_dataset **out) {
    return idx_dataset(ctx, images_path, labels_path, limit, NULL, 0, out);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/base.gz if it exists, else dir/base if it exists, else an error naming both. */
static dp_status find_idx(dp_ctx *ctx, const char *dir, const char *base, char *path, size_t n) {
    snprintf(path, n, "%s/%s.gz", dir, base);
    if (file_exists(path)) return DP_OK;
    snprintf(path, n, "%s/%s", dir, base);
    if (file_exists(path)) return DP_OK;
    return dp_error(ctx, DP_ERR_IO,
                    "%s/%s(.gz): not found (Debian/Ubuntu: apt install dataset-fashion-mnist; or point --data-dir "
                    "at a folder with the four Fashion-MNIST IDX files)",
                    dir, base);
}

dp_status dp_dataset_fashion_mnist(dp_ctx *ctx, const char *dir, int train, int64_t limit, dp_dataset **out) {
    if (!ctx || !out) return dp_error(ctx, DP_ERR_NULL, "dp_dataset_fashion_mnist: NULL argument");
    *out = NULL;
    if (!dir) dir = DP_FASHION_MNIST_DIR;
    char ip[4200], lp[4200];
    const char *pre = train ? "train" : "t10k";
    char base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", pre);
    dp_status st = find_idx(ctx, dir, base, ip, sizeof ip);
    if (st != DP_OK) return st;
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", pre);
    if ((st = find_idx(ctx, dir, base, lp, sizeof lp)) != DP_OK) return st;
    return idx_dataset(ctx, ip, lp, limit, fashion_names, 10, out);
}

/* ------------------------------------------------------------ folders */
typedef struct strvec {
    char **s;
    size_t n, cap;
} strvec;

static int sv_push(dp_ctx *ctx, strvec *v, const char *s) {
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 64;
        char **ns = dp_malloc(ctx, sizeof(char *) * ncap);
        if (!ns) return 0;
        if (v->n) memcpy(ns, v->s, sizeof(char *) * v->n);
        dp_free(ctx, v->s);
        v->s = ns;
        v->cap = ncap;
    }
    if (!(v->s[v->n] = xstrdup(ctx, s))) return 0;
    v->n++;
    return 1;
}
static void sv_free(dp_ctx *ctx, strvec *v) {
    for (size_t i = 0; i < v->n; i++) dp_free(ctx, v->s[i]);
    dp_free(ctx, v->s);
    memset(v, 0, sizeof *v);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    static const char *const ext[] = {"png", "jpg", "jpeg", "webp"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        const char *a = dot + 1, *b = ext[i];
        while (*a && *b && (*a | 0x20) == *b) a++, b++;
        if (!*a && !*b) return 1;
    }
    return 0;
}

/* Files with an image extension under dir, any depth (max 32 levels, so a
 * symlink loop ends). Hidden entries are skipped. */
static dp_status scan_dir(dp_ctx *ctx, const char *dir, int depth, strvec *out) {
    if (depth > 32) return DP_OK;
    DIR *d = opendir(dir);
    if (!d) return dp_error(ctx, DP_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    dp_status st = DP_OK;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int k = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (k < 0 || (size_t)k >= sizeof path) continue;
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            if ((st = scan_dir(ctx, path, depth + 1, out)) != DP_OK) break;
        } else if (S_ISREG(sb.st_mode) && is_image_name(e->d_name)) {
            if (!sv_push(ctx, out, path)) {
                st = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory listing files", dir);
                break;
            }
        }
    }
    closedir(d);
    return st;
}

static void default_warn(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "warning: %s\n", msg);
}

dp_status dp_dataset_from_folder(dp_ctx *ctx, const char *dir, const dp_folder_opts *opts, dp_dataset **out) {
    if (!ctx || !dir || !opts || !out) return dp_error(ctx, DP_ERR_NULL, "dp_dataset_from_folder: NULL argument");
    *out = NULL;
    int C = opts->channels, H = opts->height, W = opts->width;
    if ((C != 1 && C != 3) || H <= 0 || W <= 0 || H > 4096 || W > 4096)
        return dp_error(ctx, DP_ERR_ARG, "%s: model input %dx%dx%d is not valid (channels 1 or 3, sides 1..4096)", dir, C, H, W);
    strvec classes = {0}, files = {0};
    int32_t *flabel = NULL;
    dp_dataset *ds = NULL;
    dp_status st = DP_OK;

    DIR *d = opendir(dir);
    if (!d) return dp_error(ctx, DP_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        struct stat sb;
        int k = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (k < 0 || (size_t)k >= sizeof path || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;
        if (!sv_push(ctx, &classes, e->d_name)) {
            closedir(d);
            st = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", dir);
            goto done;
        }
    }
    closedir(d);
    if (classes.n == 0) {
        st = dp_error(ctx, DP_ERR_NOT_FOUND, "%s: no class subfolders (expected %s/<class>/<images>)", dir, dir);
        goto done;
    }
    if (classes.n > 100000) {
        st = dp_error(ctx, DP_ERR_ARG, "%s: %zu class subfolders is too many", dir, classes.n);
        goto done;
    }
    qsort(classes.s, classes.n, sizeof(char *), cmp_str);
    /* Files of each class, sorted; flabel[i] is the class of files.s[i]. */
    size_t flcap = 0;
    for (size_t c = 0; c < classes.n; c++) {
        size_t first = files.n;
        snprintf(path, sizeof path, "%s/%s", dir, classes.s[c]);
        if ((st = scan_dir(ctx, path, 0, &files)) != DP_OK) goto done;
        qsort(files.s + first, files.n - first, sizeof(char *), cmp_str);
        if (files.n > flcap) {
            size_t ncap = files.cap;
            int32_t *nl = dp_malloc(ctx, sizeof(int32_t) * ncap);
            if (!nl) {
                st = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", dir);
                goto done;
            }
            if (first) memcpy(nl, flabel, sizeof(int32_t) * first);
            dp_free(ctx, flabel);
            flabel = nl;
            flcap = ncap;
        }
        for (size_t i = first; i < files.n; i++) flabel[i] = (int32_t)c;
    }
    if (files.n == 0) {
        st = dp_error(ctx, DP_ERR_NOT_FOUND, "%s: no .png/.jpg/.jpeg/.webp files in its %zu class subfolders", dir, classes.n);
        goto done;
    }
    int64_t total = (int64_t)files.n, want = total;
    if (opts->limit > 0 && opts->limit < total) want = opts->limit;
    size_t per = (size_t)C * (size_t)H * (size_t)W;
    if ((st = new_dataset(ctx, (int)classes.n, &ds)) != DP_OK) goto done;
    for (size_t c = 0; c < classes.n; c++) {
        ds->class_names[c] = classes.s[c]; /* move the strings */
        classes.s[c] = NULL;
    }
    ds->channels = C;
    ds->height = H;
    ds->width = W;
    ds->pixels = dp_malloc(ctx, per * (size_t)want);
    ds->labels = dp_malloc(ctx, sizeof(int32_t) * (size_t)want);
    if (!ds->pixels || !ds->labels) {
        st = dp_error(ctx, DP_ERR_NOMEM, "%s: cannot allocate %zu bytes for %lld images", dir, per * (size_t)want, (long long)want);
        goto done;
    }
    void (*warn)(void *, const char *) = opts->warn ? opts->warn : default_warn;
    for (int64_t j = 0; j < want; j++) {
        /* An even spread over the sorted list keeps every class's share. */
        size_t i = (size_t)(want == total ? j : (int64_t)((double)j * (double)total / (double)want));
        dp_image img = {0}, fit = {0};
        dp_status s = dp_image_load(ctx, files.s[i], C, &opts->image_limits, &img);
        if (s == DP_OK) s = dp_image_resize_cover(ctx, &img, H, W, &fit);
        if (s == DP_OK) {
            uint8_t *dst = ds->pixels + per * (size_t)ds->n;
            for (size_t p = 0; p < per; p++) {
                float v = fit.data[p] * 255.0f + 0.5f;
                dst[p] = (uint8_t)(v <= 0.0f ? 0.0f : v >= 255.0f ? 255.0f : v);
            }
            ds->labels[ds->n++] = flabel[i];
        } else {
            char msg[1200];
            snprintf(msg, sizeof msg, "skipped (%s): %s", dp_status_name(s), dp_ctx_error(ctx));
            warn(opts->warn_user, msg);
            dp_ctx_clear_error(ctx);
            ds->skipped++;
        }
        dp_image_free(ctx, &img);
        dp_image_free(ctx, &fit);
        if (opts->progress && ((j + 1) % 64 == 0 || j + 1 == want)) opts->progress(opts->progress_user, j + 1, want);
    }
    if (ds->n == 0) {
        st = dp_error(ctx, DP_ERR_FORMAT, "%s: none of the %lld images could be read (see the warnings)", dir, (long long)want);
        goto done;
    }
    *out = ds;
    ds = NULL;
done:
    dp_dataset_free(ds);
    sv_free(ctx, &classes);
    sv_free(ctx, &files);
    dp_free(ctx, flabel);
    return st;
}

/* ------------------------------------------------------------ batches */
dp_status dp_dataset_stats(const dp_dataset *ds, const int64_t *idx, int64_t n, float *mean, float *std) {
    if (!ds || !mean || !std) return DP_ERR_NULL;
    if (!idx) n = ds->n;
    if (n <= 0) return dp_error(ds->ctx, DP_ERR_ARG, "dp_dataset_stats: no samples");
    size_t hw = (size_t)ds->height * (size_t)ds->width;
    for (int c = 0; c < ds->channels; c++) {
        /* Integer sums are exact and order-independent. */
        uint64_t s = 0, s2 = 0;
        for (int64_t k = 0; k < n; k++) {
            int64_t i = idx ? idx[k] : k;
            const uint8_t *p = ds->pixels + ((size_t)i * (size_t)ds->channels + (size_t)c) * hw;
            for (size_t j = 0; j < hw; j++) {
                s += p[j];
                s2 += (uint64_t)p[j] * p[j];
            }
        }
        double cnt = (double)n * (double)hw, m = (double)s / cnt, var = (double)s2 / cnt - m * m;
        mean[c] = (float)(m / 255.0);
        std[c] = (float)(sqrt(var > 0 ? var : 0) / 255.0);
        if (!(std[c] > 1e-6f)) std[c] = 1.0f; /* a constant channel: do not blow it up */
    }
    return DP_OK;
}

void dp_dataset_batch(const dp_dataset *ds, const int64_t *idx, int64_t n, const float *mean, const float *std,
                      float *x, float *y) {
    size_t hw = (size_t)ds->height * (size_t)ds->width, per = hw * (size_t)ds->channels;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = idx[k];
        const uint8_t *p = ds->pixels + (size_t)i * per;
        float *d = x + (size_t)k * per;
        for (int c = 0; c < ds->channels; c++) {
            float a = 1.0f / 255.0f, b = 0.0f;
            if (mean && std) { /* (v/255 - m)/s = v*a + b */
                a = 1.0f / (255.0f * std[c]);
                b = -mean[c] / std[c];
            }
            for (size_t j = 0; j < hw; j++) d[(size_t)c * hw + j] = (float)p[(size_t)c * hw + j] * a + b;
        }
        if (y) y[k] = (float)ds->labels[i];
    }
}

void dp_shuffle_i64(dp_rng *r, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t m = (uint64_t)i + 1;
        int64_t j = m <= UINT32_MAX ? (int64_t)dp_rng_below(r, (uint32_t)m) : (int64_t)(dp_rng_u64(r) % m);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
