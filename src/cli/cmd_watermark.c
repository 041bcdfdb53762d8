/* doppel watermark check|eval — look for doppel's labels in image files, and
 * measure the watermark (robustness, image quality, false hits). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <webp/encode.h>

#include "cli/cli.h"
#include "core/parse.h"
#include "doppel/doppel.h"

static const char *const usage_text =
    "usage: doppel watermark check FILE... [--json]\n"
    "       doppel watermark eval [options] PATH...\n"
    "\n"
    "check: look for doppel's invisible watermark and its metadata label (PNG iTXt/tEXt, XMP in PNG,\n"
    "  JPEG APP1 or WebP) in PNG, JPEG and WebP files. Prints, for each file, whether the watermark was\n"
    "  found, its payload (the model id) and its score, and the metadata label if there is one.\n"
    "  A file that cannot be read gets a one-line error; the others are still checked.\n"
    "  --json                 print a JSON array, one object per file\n"
    "  Exit status: 0 every file was processed (found or not), 2 some file could not be read or bad usage.\n"
    "\n"
    "eval: measure the watermark on images (files, or folders searched recursively for .png/.jpg/.jpeg/.webp).\n"
    "  default mode: each image is resized to cover SIZE x SIZE and centre-cropped (a stand-in for a\n"
    "  generator's output), quantised to 8 bits, watermarked with a per-image model id, then detected\n"
    "  as is and after JPEG re-compression at each quality; prints detection rates (payload exact),\n"
    "  PSNR and scores.\n"
    "  --size N               side of the marked images (default 64)\n"
    "  --grey                 grey images instead of RGB\n"
    "  --jpeg Q1,Q2,...       JPEG qualities to re-compress with (default 95,90,80,70,60,50)\n"
    "  --limit N              use at most N images, spread evenly over the sorted list (default all)\n"
    "  --data fashion-mnist   use the Fashion-MNIST test images (28x28, enlarged x3 as dp_write_synthetic does)\n"
    "  --examples DIR         write the first 8 originals and marked images there as PNG\n"
    "  --attacks              also try other changes: WebP q90/q75, brightness +10, contrast x0.9,\n"
    "                         noise (sd 2 and 5), blur 3x3, crop 1 and 8 px, resize to 90%% and 50%%\n"
    "                         and back, flip, and cropping 8 px then re-compressing\n"
    "  --false-hits           instead: detect on every image as is (native size) and resized to cover\n"
    "                         SIZE x SIZE, none of them marked; counts the hits and the score distribution\n";

typedef struct wopts {
    int json, grey, size, limit, false_hits, fmnist, attacks;
    int qual[16], nq;
    const char *examples;
} wopts;

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "doppel watermark%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'doppel watermark --help')\n");
    return 2;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* The message without a leading "PATH: " (the line names the file itself). */
static const char *strip_path(const char *msg, const char *path) {
    size_t n = strlen(path);
    if (!strncmp(msg, path, n) && msg[n] == ':' && msg[n + 1] == ' ') return msg + n + 2;
    return msg;
}

/* ------------------------------------------------------------ check */
/* check's options: -1 to go on (*json set), else the exit status. Also called by fuzz/fuzz_cli.c. */
static int check_parse(int argc, char **argv, int *json) {
    int nfiles = 0;
    *json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) *json = 1;
        else if (!strcmp(argv[i], "--")) {
            nfiles += argc - i - 1;
            break;
        } else if (argv[i][0] == '-' && argv[i][1]) return usage_error("check", "unknown option '%s'", argv[i]);
        else nfiles++;
    }
    if (!nfiles) return usage_error("check", "no FILE given");
    return -1;
}

static int cmd_check(int argc, char **argv) {
    int json;
    int prc = check_parse(argc, argv, &json);
    if (prc >= 0) return prc;
    dp_ctx *ctx;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 1}, &ctx) != DP_OK) {
        fprintf(stderr, "doppel watermark check: cannot create a context\n");
        return 2;
    }
    int errors = 0, first = 1, dashdash = 0;
    if (json) printf("[");
    for (int i = 1; i < argc; i++) {
        if (!dashdash && !strcmp(argv[i], "--")) {
            dashdash = 1;
            continue;
        }
        if (!dashdash && !strcmp(argv[i], "--json")) continue;
        const char *path = argv[i];
        dp_label_check r;
        dp_status s = dp_label_check_file(ctx, path, &r);
        if (s != DP_OK) {
            errors++;
            const char *msg = strip_path(dp_ctx_error(ctx), path);
            fprintf(stderr, "doppel watermark check: %s: %s [%s]\n", path, msg, dp_status_name(s));
            if (json) {
                printf("%s\n {\"file\":", first ? "" : ",");
                json_str(stdout, path);
                printf(",\"ok\":false,\"error\":");
                json_str(stdout, msg);
                printf("}");
                first = 0;
            }
            continue;
        }
        const dp_watermark_result *w = &r.watermark;
        const dp_label_meta *m = &r.meta;
        if (json) {
            printf("%s\n {\"file\":", first ? "" : ",");
            json_str(stdout, path);
            printf(",\"ok\":true,\"format\":\"%s\",\"width\":%d,\"height\":%d,", dp_image_format_name(r.format), r.width,
                   r.height);
            printf("\"watermark\":{\"found\":%s,", w->found ? "true" : "false");
            if (w->found) printf("\"model_id\":%u,\"model_id_hex\":\"0x%08x\",", (unsigned)w->model_id, (unsigned)w->model_id);
            printf("\"score\":%.4f},\"label\":{\"present\":%s", w->score, m->present ? "true" : "false");
            if (m->present) {
                printf(",\"ai_generated\":%s,\"source_type\":", m->ai_generated ? "true" : "false");
                json_str(stdout, m->source_type);
                printf(",\"software\":");
                json_str(stdout, m->software);
                printf(",\"model\":");
                json_str(stdout, m->model);
                if (m->has_model_id) printf(",\"model_id\":%u", (unsigned)m->model_id);
                printf(",\"description\":");
                json_str(stdout, m->description);
            }
            printf("}}");
            first = 0;
        } else {
            printf("%s: watermark ", path);
            if (w->found) printf("FOUND: model id 0x%08x (%u), score %.3f", (unsigned)w->model_id, (unsigned)w->model_id, w->score);
            else printf("not found (score %.3f)", w->score);
            printf("; label: ");
            if (!m->present) {
                printf("none\n");
                continue;
            }
            if (m->ai_generated) printf("AI-GENERATED");
            else if (m->source_type[0]) printf("source type");
            else printf("present");
            if (m->source_type[0]) {
                const char *sl = strrchr(m->source_type, '/');
                printf(" (%s)", sl ? sl + 1 : m->source_type);
            }
            if (m->software[0]) printf(", software \"%s\"", m->software);
            if (m->model[0]) printf(", model \"%s\"", m->model);
            if (m->has_model_id) printf(", model id 0x%08x", (unsigned)m->model_id);
            if (!m->software[0] && !m->model[0] && m->description[0]) printf(", \"%s\"", m->description);
            printf("\n");
        }
    }
    if (json) printf("\n]\n");
    dp_ctx_free(ctx);
    return errors ? 2 : 0;
}

/* ------------------------------------------------------------ eval */
typedef struct flist {
    char **v;
    int n, cap;
} flist;

static int has_image_ext(const char *name) {
    const char *d = strrchr(name, '.');
    if (!d) return 0;
    char e[8];
    size_t n = strlen(d + 1);
    if (n >= sizeof e) return 0;
    for (size_t i = 0; i <= n; i++) e[i] = (char)(d[1 + i] >= 'A' && d[1 + i] <= 'Z' ? d[1 + i] + 32 : d[1 + i]);
    return !strcmp(e, "png") || !strcmp(e, "jpg") || !strcmp(e, "jpeg") || !strcmp(e, "webp");
}

static int flist_add(flist *l, const char *p) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, sizeof(char *) * (size_t)cap);
        if (!v) return 0;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = strdup(p);
    return l->v[l->n++] != NULL;
}

static int walk(flist *l, const char *path, int depth) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "doppel watermark eval: %s: %s\n", path, strerror(errno));
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) return flist_add(l, path);
    if (depth > 16) return 1;
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "doppel watermark eval: %s: %s\n", path, strerror(errno));
        return 0;
    }
    struct dirent *e;
    int ok = 1;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char q[4096];
        if (snprintf(q, sizeof q, "%s/%s", path, e->d_name) >= (int)sizeof q) continue;
        struct stat s2;
        if (stat(q, &s2) != 0) continue;
        if (S_ISDIR(s2.st_mode)) ok = walk(l, q, depth + 1);
        else if (has_image_ext(e->d_name)) ok = flist_add(l, q);
    }
    closedir(d);
    return ok;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double psnr8(const dp_image *a, const dp_image *b) {
    size_t n = (size_t)a->channels * (size_t)a->height * (size_t)a->width;
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)lrintf(a->data[i] * 255.0f) - (double)lrintf(b->data[i] * 255.0f);
        se += d * d;
    }
    if (se == 0) return 99.0;
    return 10.0 * log10(255.0 * 255.0 / (se / (double)n));
}

static void quantize(dp_image *img) {
    size_t n = (size_t)img->channels * (size_t)img->height * (size_t)img->width;
    for (size_t i = 0; i < n; i++) {
        float v = img->data[i];
        v = !(v > 0.0f) ? 0.0f : v >= 1.0f ? 1.0f : v;
        img->data[i] = (float)((int)(v * 255.0f + 0.5f)) / 255.0f;
    }
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef struct score_stats {
    float *v;
    int n;
} score_stats;

static void stats_print(const char *what, score_stats *s) {
    if (!s->n) return;
    qsort(s->v, (size_t)s->n, sizeof(float), cmp_f);
    double mean = 0;
    for (int i = 0; i < s->n; i++) mean += s->v[i];
    mean /= s->n;
    printf("  %-28s scores: mean %.3f, min %.3f, 1%% %.3f, median %.3f, 99%% %.3f, 99.9%% %.3f, max %.3f\n", what, mean,
           s->v[0], s->v[(int)(0.01 * (s->n - 1))], s->v[(s->n - 1) / 2], s->v[(int)(0.99 * (s->n - 1))],
           s->v[(int)(0.999 * (s->n - 1))], s->v[s->n - 1]);
}

static int run_false_hits(dp_ctx *ctx, const wopts *o, flist *files) {
    int n = files->n, hits_native = 0, hits_small = 0, errors = 0, done = 0;
    score_stats sn = {calloc((size_t)n + 1, sizeof(float)), 0}, ss = {calloc((size_t)n + 1, sizeof(float)), 0};
    if (!sn.v || !ss.v) {
        free(sn.v);
        free(ss.v);
        fprintf(stderr, "doppel watermark eval: out of memory\n");
        return 2;
    }
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        const char *path = files->v[i];
        dp_label_check r;
        dp_status s = dp_label_check_file(ctx, path, &r);
        if (s != DP_OK) {
            fprintf(stderr, "doppel watermark eval: %s\n", dp_ctx_error(ctx));
            errors++;
            continue;
        }
        sn.v[sn.n++] = r.watermark.score;
        if (r.watermark.found) {
            hits_native++;
            printf("  FALSE HIT (native %dx%d): %s id 0x%08x score %.3f\n", r.width, r.height, path,
                   (unsigned)r.watermark.model_id, r.watermark.score);
        }
        dp_image img, small;
        if (dp_image_load(ctx, path, o->grey ? 1 : 3, NULL, &img) != DP_OK) {
            errors++;
            continue;
        }
        s = dp_image_resize_cover(ctx, &img, o->size, o->size, &small);
        dp_image_free(ctx, &img);
        if (s != DP_OK) {
            errors++;
            continue;
        }
        quantize(&small);
        dp_watermark_result w;
        if (dp_watermark_detect(ctx, &small, &w) == DP_OK) {
            ss.v[ss.n++] = w.score;
            if (w.found) {
                hits_small++;
                printf("  FALSE HIT (%dx%d): %s id 0x%08x score %.3f\n", o->size, o->size, path, (unsigned)w.model_id,
                       w.score);
            }
        }
        dp_image_free(ctx, &small);
        done++;
        if (done % 2000 == 0) {
            fprintf(stderr, "  %d/%d images, %.0f s\n", done, n, now_s() - t0);
        }
    }
    printf("false hits over %d unmarked images (%d unreadable), %.1f s:\n", sn.n, errors, now_s() - t0);
    printf("  native size:   %d hits (%.4f%%)\n", hits_native, sn.n ? 100.0 * hits_native / sn.n : 0.0);
    printf("  resized %dx%d: %d hits (%.4f%%)\n", o->size, o->size, hits_small, ss.n ? 100.0 * hits_small / ss.n : 0.0);
    stats_print("native", &sn);
    char what[64];
    snprintf(what, sizeof what, "resized %dx%d", o->size, o->size);
    stats_print(what, &ss);
    int above_n = 0, above_s = 0;
    for (int i = 0; i < sn.n; i++) above_n += sn.v[i] >= DP_WATERMARK_MIN_SCORE;
    for (int i = 0; i < ss.n; i++) above_s += ss.v[i] >= DP_WATERMARK_MIN_SCORE;
    printf("  score alone >= %.2f (the threshold): native %d (%.3f%%), resized %d (%.3f%%); a hit also needs the\n"
           "  tag and the CRC (32 check bits, chance 2^-32 per image)\n",
           DP_WATERMARK_MIN_SCORE, above_n, sn.n ? 100.0 * above_n / sn.n : 0.0, above_s, ss.n ? 100.0 * above_s / ss.n : 0.0);
    free(sn.v);
    free(ss.v);
    return 0;
}

/* One stand-in image: i-th of the set. */
static dp_status load_item(dp_ctx *ctx, const wopts *o, flist *files, dp_dataset *fm, int i, dp_image *out) {
    if (fm) {
        int H = fm->height, W = fm->width, f = 1; /* as dp_write_synthetic enlarges */
        if (H < DP_WATERMARK_MIN_SIDE || W < DP_WATERMARK_MIN_SIDE)
            while (H * f < DP_WATERMARK_ENLARGE_SIDE || W * f < DP_WATERMARK_ENLARGE_SIDE) f++;
        dp_status s = dp_image_alloc(ctx, 1, H * f, W * f, out);
        if (s != DP_OK) return s;
        const uint8_t *p = fm->pixels + (size_t)i * (size_t)H * (size_t)W;
        for (int y = 0; y < H * f; y++)
            for (int x = 0; x < W * f; x++) out->data[(size_t)y * (size_t)(W * f) + x] = p[(y / f) * W + x / f] / 255.0f;
        return DP_OK;
    }
    dp_image img;
    dp_status s = dp_image_load(ctx, files->v[i], o->grey ? 1 : 3, NULL, &img);
    if (s != DP_OK) return s;
    s = dp_image_resize_cover(ctx, &img, o->size, o->size, out);
    dp_image_free(ctx, &img);
    if (s == DP_OK) quantize(out);
    return s;
}

/* ------------------------------------------------------------ other changes than JPEG */
enum {
    AT_WEBP90, AT_WEBP75, AT_BRIGHT, AT_CONTRAST, AT_NOISE2, AT_NOISE5, AT_BLUR, AT_CROP1, AT_CROP8, AT_RESIZE90,
    AT_RESIZE50, AT_FLIP, AT_CROP8_JPEG80, AT_COUNT
};
static const char *const attack_names[AT_COUNT] = {
    "WebP q90", "WebP q75", "brightness +10", "contrast x0.9", "noise sd 2", "noise sd 5", "blur 3x3 box",
    "crop 1 px (left, top)", "crop 8 px (left, top)", "resize 90% and back", "resize 50% and back",
    "horizontal flip", "crop 8 px + JPEG q80"};

static float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

static uint64_t g_noise = 0x9e3779b97f4a7c15u;
static float gauss(void) { /* Box-Muller on a small LCG: reproducible noise for the measurement */
    double u1, u2;
    g_noise = g_noise * 6364136223846793005u + 1442695040888963407u;
    u1 = ((g_noise >> 11) + 1.0) * 0x1.0p-53;
    g_noise = g_noise * 6364136223846793005u + 1442695040888963407u;
    u2 = (g_noise >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static dp_status crop_at(dp_ctx *ctx, const dp_image *a, int x0, int y0, dp_image *out) {
    dp_status s = dp_image_alloc(ctx, a->channels, a->height - y0, a->width - x0, out);
    if (s != DP_OK) return s;
    for (int c = 0; c < a->channels; c++)
        for (int y = 0; y < out->height; y++)
            memcpy(out->data + ((size_t)c * out->height + y) * out->width,
                   a->data + ((size_t)c * a->height + y + y0) * a->width + x0, sizeof(float) * (size_t)out->width);
    return DP_OK;
}

static dp_status webp_roundtrip(dp_ctx *ctx, const dp_image *a, int q, dp_image *out) {
    size_t plane = (size_t)a->height * (size_t)a->width;
    uint8_t *rgb = malloc(plane * 3), *enc = NULL;
    if (!rgb) return DP_ERR_NOMEM;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = a->data[(size_t)(a->channels == 3 ? c : 0) * plane + i];
            rgb[3 * i + (size_t)c] = (uint8_t)(clamp01(v) * 255.0f + 0.5f);
        }
    size_t n = WebPEncodeRGB(rgb, a->width, a->height, a->width * 3, (float)q, &enc);
    free(rgb);
    if (!n) return DP_ERR_IO;
    dp_status s = dp_image_decode(ctx, enc, n, "<webp>", a->channels, NULL, out);
    WebPFree(enc);
    return s;
}

static dp_status attack(dp_ctx *ctx, int k, const dp_image *a, dp_image *out) {
    int C = a->channels, H = a->height, W = a->width;
    size_t n = (size_t)C * (size_t)H * (size_t)W;
    dp_status s;
    switch (k) {
    case AT_WEBP90: return webp_roundtrip(ctx, a, 90, out);
    case AT_WEBP75: return webp_roundtrip(ctx, a, 75, out);
    case AT_CROP1: return crop_at(ctx, a, 1, 1, out);
    case AT_CROP8: return crop_at(ctx, a, 8, 8, out);
    case AT_CROP8_JPEG80: {
        dp_image t;
        if ((s = crop_at(ctx, a, 8, 8, &t)) != DP_OK) return s;
        s = dp_image_jpeg_roundtrip(ctx, &t, 80, out);
        dp_image_free(ctx, &t);
        return s;
    }
    case AT_RESIZE90:
    case AT_RESIZE50: {
        dp_image t;
        int h2 = k == AT_RESIZE90 ? H * 9 / 10 : H / 2, w2 = k == AT_RESIZE90 ? W * 9 / 10 : W / 2;
        if ((s = dp_image_resize(ctx, a, h2, w2, &t)) != DP_OK) return s;
        s = dp_image_resize(ctx, &t, H, W, out);
        dp_image_free(ctx, &t);
        return s;
    }
    default: break;
    }
    if ((s = dp_image_alloc(ctx, C, H, W, out)) != DP_OK) return s;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                size_t i = ((size_t)c * H + y) * W + x;
                float v = a->data[i];
                if (k == AT_BRIGHT) v += 10.0f / 255.0f;
                else if (k == AT_CONTRAST) v = 0.5f + 0.9f * (v - 0.5f);
                else if (k == AT_NOISE2) v += 2.0f / 255.0f * gauss();
                else if (k == AT_NOISE5) v += 5.0f / 255.0f * gauss();
                else if (k == AT_FLIP) v = a->data[((size_t)c * H + y) * W + (W - 1 - x)];
                else if (k == AT_BLUR) {
                    float acc = 0;
                    int cnt = 0;
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++) {
                            int yy = y + dy, xx = x + dx;
                            if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                            acc += a->data[((size_t)c * H + yy) * W + xx];
                            cnt++;
                        }
                    v = acc / (float)cnt;
                }
                out->data[i] = clamp01(v);
            }
    (void)n;
    quantize(out);
    return DP_OK;
}

static int run_embed(dp_ctx *ctx, const wopts *o, flist *files, dp_dataset *fm) {
    int n = fm ? (int)fm->n : files->n, used = 0, errors = 0;
    int found_clean = 0, exact_clean = 0, found_q[16] = {0}, wrong_q[16] = {0};
    int found_a[AT_COUNT] = {0}, wrong_a[AT_COUNT] = {0}, tried_a[AT_COUNT] = {0};
    double psnr_sum = 0, psnr_min = 1e9, t_embed = 0, t_detect = 0;
    score_stats sc = {calloc((size_t)n + 1, sizeof(float)), 0}, sp = {calloc((size_t)n + 1, sizeof(float)), 0};
    score_stats sq[16];
    for (int q = 0; q < o->nq; q++) sq[q] = (score_stats){calloc((size_t)n + 1, sizeof(float)), 0};
    for (int i = 0; i < n; i++) {
        dp_image orig, marked = {0};
        if (load_item(ctx, o, files, fm, i, &orig) != DP_OK) {
            fprintf(stderr, "doppel watermark eval: %s\n", dp_ctx_error(ctx));
            errors++;
            continue;
        }
        uint32_t id = (uint32_t)(2654435761u * (uint32_t)(i + 1)) ^ 0x5bd1e995u;
        dp_status s = dp_image_alloc(ctx, orig.channels, orig.height, orig.width, &marked);
        if (s == DP_OK) {
            memcpy(marked.data, orig.data, sizeof(float) * (size_t)orig.channels * orig.height * orig.width);
            double t0 = now_s();
            s = dp_watermark_embed(ctx, &marked, id);
            t_embed += now_s() - t0;
        }
        if (s != DP_OK) {
            fprintf(stderr, "doppel watermark eval: %s\n", dp_ctx_error(ctx));
            dp_image_free(ctx, &orig);
            dp_image_free(ctx, &marked);
            errors++;
            continue;
        }
        used++;
        double p = psnr8(&orig, &marked);
        psnr_sum += p;
        if (p < psnr_min) psnr_min = p;
        sp.v[sp.n++] = (float)p;
        if (o->examples && used <= 8) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%02d_orig.png", o->examples, used);
            dp_status ws = dp_image_save_png(ctx, path, &orig);
            if (ws == DP_OK) {
                snprintf(path, sizeof path, "%s/%02d_marked.png", o->examples, used);
                ws = dp_image_save_png(ctx, path, &marked);
            }
            if (ws != DP_OK) fprintf(stderr, "doppel watermark eval: %s\n", dp_ctx_error(ctx));
        }
        dp_watermark_result w;
        double t0 = now_s();
        dp_watermark_detect(ctx, &marked, &w);
        t_detect += now_s() - t0;
        sc.v[sc.n++] = w.score;
        found_clean += w.found;
        exact_clean += w.found && w.model_id == id;
        for (int q = 0; q < o->nq; q++) {
            dp_image jp;
            if (dp_image_jpeg_roundtrip(ctx, &marked, o->qual[q], &jp) != DP_OK) continue;
            dp_watermark_detect(ctx, &jp, &w);
            sq[q].v[sq[q].n++] = w.score;
            found_q[q] += w.found && w.model_id == id;
            wrong_q[q] += w.found && w.model_id != id;
            dp_image_free(ctx, &jp);
        }
        for (int k = 0; o->attacks && k < AT_COUNT; k++) {
            dp_image at;
            if (attack(ctx, k, &marked, &at) != DP_OK) continue;
            dp_watermark_detect(ctx, &at, &w);
            tried_a[k]++;
            found_a[k] += w.found && w.model_id == id;
            wrong_a[k] += w.found && w.model_id != id;
            dp_image_free(ctx, &at);
        }
        dp_image_free(ctx, &orig);
        dp_image_free(ctx, &marked);
    }
    if (!used) {
        fprintf(stderr, "doppel watermark eval: no image could be used\n");
        free(sc.v);
        free(sp.v);
        for (int q = 0; q < o->nq; q++) free(sq[q].v);
        return 2;
    }
    int side = fm ? fm->height : o->size;
    printf("watermark on %d images (%s%s %dx%d%s; %d unreadable)\n", used, fm ? "Fashion-MNIST " : "",
           o->grey || fm ? "grey" : "RGB", side, side, fm ? ", enlarged by an integer factor" : "", errors);
    qsort(sp.v, (size_t)sp.n, sizeof(float), cmp_f);
    int below38 = 0;
    for (int i = 0; i < sp.n; i++) below38 += sp.v[i] < 38.0f;
    printf("  PSNR of the marked image (8-bit, all channels): mean %.2f dB, min %.2f dB, 1%% %.2f dB, median %.2f dB; "
           "%d below 38 dB\n",
           psnr_sum / used, psnr_min, sp.v[(int)(0.01 * (sp.n - 1))], sp.v[(sp.n - 1) / 2], below38);
    printf("  embed %.2f ms, detect %.2f ms per image\n", 1e3 * t_embed / used, 1e3 * t_detect / used);
    printf("  unmodified:  found with the exact payload %d/%d (%.2f%%), found %d\n", exact_clean, used,
           100.0 * exact_clean / used, found_clean);
    for (int q = 0; q < o->nq; q++)
        printf("  JPEG q%-3d:   found with the exact payload %d/%d (%.2f%%), wrong payload %d\n", o->qual[q], found_q[q],
               sq[q].n, sq[q].n ? 100.0 * found_q[q] / sq[q].n : 0.0, wrong_q[q]);
    for (int k = 0; o->attacks && k < AT_COUNT; k++)
        printf("  %-26s found with the exact payload %d/%d (%.2f%%), wrong payload %d\n", attack_names[k], found_a[k],
               tried_a[k], tried_a[k] ? 100.0 * found_a[k] / tried_a[k] : 0.0, wrong_a[k]);
    stats_print("unmodified", &sc);
    for (int q = 0; q < o->nq; q++) {
        char what[32];
        snprintf(what, sizeof what, "JPEG q%d", o->qual[q]);
        stats_print(what, &sq[q]);
    }
    free(sc.v);
    free(sp.v);
    for (int q = 0; q < o->nq; q++) free(sq[q].v);
    return 0;
}

/* eval's options: -1 to go on, else the exit status (2). PATHs are searched into files, or only
 * counted when files is NULL (fuzz/fuzz_cli.c calls it so, to parse without walking folders). */
static int eval_parse(int argc, char **argv, wopts *o, flist *files) {
    int npaths = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--grey")) o->grey = 1;
        else if (!strcmp(a, "--false-hits")) o->false_hits = 1;
        else if (!strcmp(a, "--attacks")) o->attacks = 1;
        else if (!strcmp(a, "--size") || !strcmp(a, "--limit") || !strcmp(a, "--jpeg") || !strcmp(a, "--data") ||
                 !strcmp(a, "--examples")) {
            if (!v) return usage_error("eval", "%s needs a value", a);
            i++;
            if (!strcmp(a, "--size") && !dp_parse_int(v, DP_WATERMARK_MIN_SIDE, 4096, &o->size))
                return usage_error("eval", "--size %s (%d..4096)", v, DP_WATERMARK_MIN_SIDE);
            if (!strcmp(a, "--limit") && !dp_parse_int(v, 1, 1 << 30, &o->limit)) return usage_error("eval", "--limit %s", v);
            if (!strcmp(a, "--examples")) o->examples = v;
            if (!strcmp(a, "--data")) {
                if (strcmp(v, "fashion-mnist"))
                    return usage_error("eval", "--data %s (only fashion-mnist; give folders as PATH)", v);
                o->fmnist = 1;
            }
            if (!strcmp(a, "--jpeg")) {
                o->nq = 0;
                char buf[256];
                snprintf(buf, sizeof buf, "%s", v);
                for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                    if (o->nq == 16 || !dp_parse_int(t, 1, 100, &o->qual[o->nq]))
                        return usage_error("eval", "--jpeg %s (up to 16 qualities 1..100, comma-separated)", v);
                    o->nq++;
                }
            }
        } else if (a[0] == '-') {
            return usage_error("eval", "unknown option '%s'", a);
        } else if (files && !walk(files, a, 0)) {
            return 2;
        } else {
            npaths++;
        }
    }
    if (!(files ? files->n : npaths) && !o->fmnist) return usage_error("eval", "no image given (files or folders, or --data fashion-mnist)");
    return -1;
}

static int cmd_eval(int argc, char **argv) {
    wopts o = {.size = 64, .qual = {95, 90, 80, 70, 60, 50}, .nq = 6};
    flist files = {0};
    int rc = eval_parse(argc, argv, &o, &files);
    dp_ctx *ctx = NULL;
    dp_dataset *fm = NULL;
    if (rc >= 0) goto out;
    rc = 2;
    if (files.n) qsort(files.v, (size_t)files.n, sizeof(char *), cmp_str);
    if (o.limit && o.limit < files.n) { /* spread evenly over the sorted list */
        for (int i = 0; i < o.limit; i++) {
            int k = (int)((long long)i * files.n / o.limit);
            char *t = files.v[i];
            files.v[i] = files.v[k];
            files.v[k] = t;
        }
        for (int i = o.limit; i < files.n; i++) free(files.v[i]);
        files.n = o.limit;
    }
    if (o.examples && mkdir(o.examples, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "doppel watermark eval: cannot create %s: %s\n", o.examples, strerror(errno));
        goto out;
    }
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx) != DP_OK) goto out;
    if (o.fmnist) {
        if (dp_dataset_fashion_mnist(ctx, NULL, 0, o.limit ? o.limit : 0, &fm) != DP_OK) {
            fprintf(stderr, "doppel watermark eval: %s\n", dp_ctx_error(ctx));
            goto out;
        }
    }
    rc = o.false_hits ? run_false_hits(ctx, &o, &files) : run_embed(ctx, &o, &files, fm);
out:
    dp_dataset_free(fm);
    dp_ctx_free(ctx);
    for (int i = 0; i < files.n; i++) free(files.v[i]);
    free(files.v);
    return rc;
}

int cmd_watermark(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "check")) return cmd_check(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 1, argv + 1);
    return usage_error(NULL, "unknown subcommand '%s'", argv[1]);
}
