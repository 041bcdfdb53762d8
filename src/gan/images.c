/* Unlabelled image folders for GAN training (CelebA-style flat folders, or
 * any tree): every image under a folder, fitted to one size, as a one-class
 * dp_dataset (so dp_dataset_free releases it). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "gan/gan_internal.h"

typedef struct pathvec {
    char **s;
    size_t n, cap;
} pathvec;

static int pv_push(dp_ctx *ctx, pathvec *v, const char *s) {
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 256;
        char **ns = dp_malloc(ctx, sizeof(char *) * ncap);
        if (!ns) return 0;
        if (v->n) memcpy(ns, v->s, sizeof(char *) * v->n);
        dp_free(ctx, v->s);
        v->s = ns;
        v->cap = ncap;
    }
    size_t len = strlen(s) + 1;
    if (!(v->s[v->n] = dp_malloc(ctx, len))) return 0;
    memcpy(v->s[v->n++], s, len);
    return 1;
}
static void pv_free(dp_ctx *ctx, pathvec *v) {
    for (size_t i = 0; i < v->n; i++) dp_free(ctx, v->s[i]);
    dp_free(ctx, v->s);
    memset(v, 0, sizeof *v);
}
static int cmp_path(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int image_name(const char *name) {
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

/* Depth limited to 32 so that a symlink loop ends. */
static dp_status scan(dp_ctx *ctx, const char *dir, int depth, pathvec *out) {
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
            if ((st = scan(ctx, path, depth + 1, out)) != DP_OK) break;
        } else if (S_ISREG(sb.st_mode) && image_name(e->d_name) && !pv_push(ctx, out, path)) {
            st = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory listing files", dir);
            break;
        }
    }
    closedir(d);
    return st;
}

static void default_warn(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "warning: %s\n", msg);
}

/* The square around the strongest face (side × (1 + 2 margin), moved inside
 * the image, at most its shorter side), cropped. DP_ERR_NOT_FOUND: no face. */
static dp_status crop_face(dp_ctx *ctx, const dp_image *img, const dp_gan_face_crop *fc, dp_image *out) {
    dp_face_box box;
    int nf = 0;
    dp_status s = dp_face_detect(fc->det, img, NULL, &box, 1, &nf);
    if (s != DP_OK) return s;
    if (nf == 0) return DP_ERR_NOT_FOUND;
    double m = fc->margin > 0 ? fc->margin : DP_GAN_FACE_MARGIN;
    double side = (box.w > box.h ? box.w : box.h) * (1.0 + 2.0 * m);
    int lim = img->width < img->height ? img->width : img->height;
    int sd = (int)lround(side);
    if (sd > lim) sd = lim;
    if (sd < 1) sd = 1;
    int x0 = (int)lround(box.x + box.w / 2.0 - sd / 2.0), y0 = (int)lround(box.y + box.h / 2.0 - sd / 2.0);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x0 > img->width - sd) x0 = img->width - sd;
    if (y0 > img->height - sd) y0 = img->height - sd;
    if ((s = dp_image_alloc(ctx, img->channels, sd, sd, out)) != DP_OK) return s;
    for (int c = 0; c < img->channels; c++)
        for (int y = 0; y < sd; y++)
            memcpy(out->data + ((size_t)c * sd + y) * sd,
                   img->data + ((size_t)c * img->height + y0 + y) * img->width + x0, sizeof(float) * (size_t)sd);
    return DP_OK;
}

dp_status dp_gan_images_from_folder(dp_ctx *ctx, const char *dir, const dp_folder_opts *opts, dp_dataset **out) {
    return dp_gan_images_from_folder_faces(ctx, dir, opts, NULL, out);
}

dp_status dp_gan_images_from_folder_faces(dp_ctx *ctx, const char *dir, const dp_folder_opts *opts, dp_gan_face_crop *fc,
                                          dp_dataset **out) {
    if (!ctx) return DP_ERR_NULL;
    if (!dir || !opts || !out) return dp_error(ctx, DP_ERR_NULL, "dp_gan_images_from_folder: NULL argument");
    if (fc && !fc->det) return dp_error(ctx, DP_ERR_NULL, "dp_gan_images_from_folder_faces: no face detector");
    if (fc && !(fc->margin >= 0 && fc->margin <= 4))
        return dp_error(ctx, DP_ERR_ARG, "dp_gan_images_from_folder_faces: margin %g is outside [0, 4]", (double)fc->margin);
    if (fc) fc->no_face = 0;
    *out = NULL;
    int C = opts->channels, H = opts->height, W = opts->width;
    if ((C != 1 && C != 3) || H <= 0 || W <= 0 || H > 4096 || W > 4096)
        return dp_error(ctx, DP_ERR_ARG, "%s: image size %dx%dx%d is not valid (channels 1 or 3, sides 1..4096)", dir, C, H, W);
    struct stat sb;
    if (stat(dir, &sb) != 0) return dp_error(ctx, DP_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return dp_error(ctx, DP_ERR_ARG, "%s: not a folder", dir);
    pathvec files = {0};
    dp_dataset *ds = NULL;
    dp_status st = scan(ctx, dir, 0, &files);
    if (st) goto done;
    if (files.n == 0) {
        st = dp_error(ctx, DP_ERR_NOT_FOUND, "%s: no .png/.jpg/.jpeg/.webp files in it or its subfolders", dir);
        goto done;
    }
    qsort(files.s, files.n, sizeof(char *), cmp_path);
    int64_t total = (int64_t)files.n, want = opts->limit > 0 && opts->limit < total ? opts->limit : total;
    size_t per = (size_t)C * (size_t)H * (size_t)W;
    ds = dp_calloc(ctx, sizeof *ds);
    if (!ds) {
        st = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    ds->ctx = ctx;
    ds->channels = C;
    ds->height = H;
    ds->width = W;
    ds->n_classes = 1;
    ds->class_names = dp_calloc(ctx, sizeof(char *));
    if (ds->class_names && (ds->class_names[0] = dp_malloc(ctx, 7))) memcpy(ds->class_names[0], "images", 7);
    ds->pixels = dp_malloc(ctx, per * (size_t)want);
    ds->labels = dp_calloc(ctx, sizeof(int32_t) * (size_t)want);
    if (!ds->class_names || !ds->class_names[0] || !ds->pixels || !ds->labels) {
        st = dp_error(ctx, DP_ERR_NOMEM, "%s: cannot allocate %zu bytes for %lld images", dir, per * (size_t)want, (long long)want);
        goto done;
    }
    void (*warn)(void *, const char *) = opts->warn ? opts->warn : default_warn;
    for (int64_t j = 0; j < want; j++) {
        size_t i = (size_t)(want == total ? j : (int64_t)((double)j * (double)total / (double)want));
        dp_image img = {0}, fit = {0}, face = {0};
        dp_status s = dp_image_load(ctx, files.s[i], C, &opts->image_limits, &img);
        if (s == DP_OK && fc) {
            s = crop_face(ctx, &img, fc, &face);
            if (s == DP_ERR_NOT_FOUND) { /* no face: not an error, counted */
                fc->no_face++;
                dp_image_free(ctx, &img);
                if (opts->progress && ((j + 1) % 64 == 0 || j + 1 == want)) opts->progress(opts->progress_user, j + 1, want);
                continue;
            }
        }
        if (s == DP_OK) s = dp_image_resize_cover(ctx, fc ? &face : &img, H, W, &fit);
        if (s == DP_OK) {
            uint8_t *dst = ds->pixels + per * (size_t)ds->n;
            for (size_t p = 0; p < per; p++) {
                float v = fit.data[p] * 255.0f + 0.5f;
                dst[p] = (uint8_t)(v <= 0.0f ? 0.0f : v >= 255.0f ? 255.0f : v);
            }
            ds->n++;
        } else {
            char msg[1200];
            snprintf(msg, sizeof msg, "skipped (%s): %s", dp_status_name(s), dp_ctx_error(ctx));
            warn(opts->warn_user, msg);
            dp_ctx_clear_error(ctx);
            ds->skipped++;
        }
        dp_image_free(ctx, &img);
        dp_image_free(ctx, &fit);
        dp_image_free(ctx, &face);
        if (opts->progress && ((j + 1) % 64 == 0 || j + 1 == want)) opts->progress(opts->progress_user, j + 1, want);
    }
    if (ds->n == 0 && fc && fc->no_face) {
        st = dp_error(ctx, DP_ERR_NOT_FOUND, "%s: no face found in any of the %lld images (%lld had none, %lld were unreadable)",
                      dir, (long long)want, (long long)fc->no_face, (long long)ds->skipped);
        goto done;
    }
    if (ds->n == 0) {
        st = dp_error(ctx, DP_ERR_FORMAT, "%s: none of the %lld images could be read (see the warnings)", dir, (long long)want);
        goto done;
    }
    *out = ds;
    ds = NULL;
done:
    dp_dataset_free(ds);
    pv_free(ctx, &files);
    return st;
}
