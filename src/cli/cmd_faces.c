/* doppel faces — find faces in images with a Viola–Jones cascade (face.h).
 *
 * One line per face on stdout (FILE x y w h neighbors), or one JSON document
 * with --json. A file that cannot be read gives one line on stderr naming it;
 * the other files are still processed, and the exit status is then 2. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/parse.h"
#include "doppel/doppel.h"
#include "doppel/face.h"

static const char *const usage_text =
    "usage: doppel faces IMAGE|DIR... [options]\n"
    "\n"
    "Find faces (frontal, upright) with a Viola-Jones cascade from OpenCV's cascade files.\n"
    "A DIR stands for the .png/.jpg/.jpeg/.webp files directly inside it, sorted by name.\n"
    "\n"
    "output:\n"
    "  (default)                 one line per face: FILE x y w h neighbors  (pixels, top-left origin;\n"
    "                            neighbors = raw hits merged into the face: the confidence)\n"
    "  --json                    one JSON document: {\"cascade\":..., \"images\":[{\"file\", \"width\",\n"
    "                            \"height\", \"faces\":[{\"x\",\"y\",\"w\",\"h\",\"neighbors\"}]} or {\"file\",\"error\"}]}\n"
    "  --draw OUT                draw the boxes: OUT.png for one image; with several, OUT is a folder\n"
    "                            receiving NAME.faces.png for each\n"
    "  --summary                 at the end, on stderr: how many images had 0, 1, 2+ faces\n"
    "  --quiet                   no per-face lines (with --summary or --bench)\n"
    "  --bench N                 time N detections of each image (decoding excluded) and print\n"
    "                            ms/frame and frames/s on stderr\n"
    "\n"
    "detection:\n"
    "  --cascade FILE            OpenCV cascade XML (default: " DP_FACE_CASCADE_DEFAULT " of opencv-data,\n"
    "                            or $DP_FACE_CASCADE)\n"
    "  --min-size N              smallest face side in pixels (default: the cascade's window, 20)\n"
    "  --max-size N              largest face side in pixels (default: no limit)\n"
    "  --scale F                 step between scales (default 1.1)\n"
    "  --min-neighbors N         a face needs more than N overlapping hits (default 3); -1: raw hits\n"
    "  --pad auto|never|always   add a border before looking (default auto: only when nothing was\n"
    "                            found without one: tight face crops need it)\n"
    "  --pad-fraction F          the border on each side, as a fraction of the side (default 0.25)\n"
    "  --pad-fill replicate|mean border made of repeated edge pixels (default) or the mean grey\n"
    "  --verify FILE             second cascade that must also find each face (e.g.\n"
    "                            haarcascade_frontalface_default.xml); cuts false hits\n"
    "  --verify-min-neighbors N  hits the second cascade needs, minus one (default 0)\n"
    "\n"
    "Exit status: 0 ok, 1 the cascade could not be loaded, 2 bad usage or a file failed.\n";

typedef struct faces_opts {
    int json, summary, quiet, bench;
    const char *draw, *cascade, *verify;
    dp_face_opts fo;
} faces_opts;

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "doppel faces: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'doppel faces --help')\n");
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

/* ------------------------------------------------------------ the file list */
typedef struct file_list {
    char **v;
    int n, cap;
} file_list;

static int list_add(file_list *L, const char *s) {
    if (L->n == L->cap) {
        int nc = L->cap ? L->cap * 2 : 64;
        char **q = realloc(L->v, (size_t)nc * sizeof *q);
        if (!q) return 0;
        L->v = q;
        L->cap = nc;
    }
    if (!(L->v[L->n] = strdup(s))) return 0;
    L->n++;
    return 1;
}
static void list_free(file_list *L) {
    for (int i = 0; i < L->n; i++) free(L->v[i]);
    free(L->v);
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *n) {
    const char *e = strrchr(n, '.');
    if (!e || n[0] == '.') return 0;
    char x[8];
    size_t k = 0;
    for (e++; *e && k + 1 < sizeof x; e++) x[k++] = (char)(*e >= 'A' && *e <= 'Z' ? *e + 32 : *e);
    x[k] = 0;
    return !strcmp(x, "png") || !strcmp(x, "jpg") || !strcmp(x, "jpeg") || !strcmp(x, "webp");
}

/* Files of a directory (images directly inside it), sorted. */
static int add_dir(file_list *L, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    file_list tmp = {0};
    struct dirent *e;
    int ok = 1;
    while (ok && (e = readdir(d))) {
        if (!is_image_name(e->d_name)) continue;
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        ok = list_add(&tmp, p);
    }
    closedir(d);
    if (tmp.n) qsort(tmp.v, (size_t)tmp.n, sizeof *tmp.v, cmp_str);
    for (int i = 0; ok && i < tmp.n; i++) ok = list_add(L, tmp.v[i]);
    list_free(&tmp);
    return ok;
}

/* ------------------------------------------------------------ drawing */
static void draw_box(dp_image *im, const dp_face_box *b) {
    const int t = b->w >= 100 ? 3 : 2;
    const float col[3] = {0.1f, 1.0f, 0.2f};
    const int H = im->height, W = im->width;
    for (int y = b->y - t + 1; y < b->y + b->h + t - 1; y++) {
        if (y < 0 || y >= H) continue;
        for (int x = b->x - t + 1; x < b->x + b->w + t - 1; x++) {
            if (x < 0 || x >= W) continue;
            int edge = y < b->y + 1 || y >= b->y + b->h - 1 || x < b->x + 1 || x >= b->x + b->w - 1;
            if (!edge) continue;
            for (int c = 0; c < im->channels; c++) im->data[((size_t)c * H + y) * W + x] = col[c];
        }
    }
}

static dp_status draw_faces(dp_ctx *ctx, const dp_image *img, const dp_face_box *b, int n, const char *out) {
    dp_image rgb;
    dp_status st = dp_image_alloc(ctx, 3, img->height, img->width, &rgb);
    if (st) return st;
    const size_t hw = (size_t)img->height * img->width;
    for (int c = 0; c < 3; c++) memcpy(rgb.data + c * hw, img->data + (img->channels == 3 ? c * hw : 0), hw * sizeof(float));
    for (int i = 0; i < n; i++) draw_box(&rgb, &b[i]);
    st = dp_image_save_png(ctx, out, &rgb);
    dp_image_free(ctx, &rgb);
    return st;
}

static void draw_path(const char *draw, int many, const char *file, char *out, size_t n) {
    if (!many) {
        snprintf(out, n, "%s", draw);
        return;
    }
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    const char *dot = strrchr(base, '.');
    int len = dot ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, n, "%s/%.*s.faces.png", draw, len, base);
}

/* ------------------------------------------------------------ options */
/* Parses argv into o and files (directories listed); nothing is opened but those. Returns -1 to go on,
 * else the exit status (0 after --help, 2 for a usage error; files is then freed). Also called by
 * fuzz/fuzz_cli.c. */
static int parse_opts(int argc, char **argv, faces_opts *o, file_list *files) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            list_free(files);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--summary")) {
            o->summary = 1;
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
        } else if (!strcmp(a, "--draw") || !strcmp(a, "--cascade") || !strcmp(a, "--verify")) {
            if (!v || !*v) {
                list_free(files);
                return usage_error("%s needs a value", a);
            }
            if (!strcmp(a, "--draw")) o->draw = v;
            else if (!strcmp(a, "--cascade")) o->cascade = v;
            else o->verify = v;
            i++;
        } else if (!strcmp(a, "--bench")) {
            if (!dp_parse_int(v, 1, 1000000, &o->bench)) goto bad_value;
            i++;
        } else if (!strcmp(a, "--min-size")) {
            if (!dp_parse_int(v, 0, 1 << 20, &o->fo.min_size)) goto bad_value;
            i++;
        } else if (!strcmp(a, "--max-size")) {
            if (!dp_parse_int(v, 0, 1 << 20, &o->fo.max_size)) goto bad_value;
            i++;
        } else if (!strcmp(a, "--min-neighbors")) {
            int k;
            if (!dp_parse_int(v, -1, 100000, &k)) goto bad_value;
            o->fo.min_neighbors = k == 0 ? -1 : k; /* 0 in the option means what OpenCV means: no grouping */
            i++;
        } else if (!strcmp(a, "--verify-min-neighbors")) {
            if (!dp_parse_int(v, 0, 100000, &o->fo.verify_min_neighbors)) goto bad_value;
            i++;
        } else if (!strcmp(a, "--scale")) {
            if (!dp_parse_f64(v, 1.0001, 100, &o->fo.scale_factor)) goto bad_value;
            i++;
        } else if (!strcmp(a, "--pad-fraction")) {
            if (!dp_parse_f64(v, 1e-6, 2, &d)) goto bad_value;
            o->fo.pad_fraction = (float)d;
            i++;
        } else if (!strcmp(a, "--pad")) {
            if (v && !strcmp(v, "auto")) o->fo.pad = DP_FACE_PAD_AUTO;
            else if (v && !strcmp(v, "never")) o->fo.pad = DP_FACE_PAD_NEVER;
            else if (v && !strcmp(v, "always")) o->fo.pad = DP_FACE_PAD_ALWAYS;
            else goto bad_value;
            i++;
        } else if (!strcmp(a, "--pad-fill")) {
            if (v && !strcmp(v, "replicate")) o->fo.pad_fill = DP_FACE_FILL_REPLICATE;
            else if (v && !strcmp(v, "mean")) o->fo.pad_fill = DP_FACE_FILL_MEAN;
            else goto bad_value;
            i++;
        } else if (a[0] == '-' && a[1]) {
            list_free(files);
            return usage_error("unknown option '%s'", a);
        } else {
            struct stat st;
            int ok = (stat(a, &st) == 0 && S_ISDIR(st.st_mode)) ? add_dir(files, a) : list_add(files, a);
            if (!ok) {
                list_free(files);
                fprintf(stderr, "doppel faces: %s: cannot list: %s\n", a, strerror(errno));
                return 2;
            }
        }
        continue;
    bad_value:
        list_free(files);
        if (!v) return usage_error("%s needs a value", a);
        fprintf(stderr, "doppel faces: bad value '%s' for %s (see 'doppel faces --help')\n", v, a);
        return 2;
    }
    if (files->n == 0) {
        list_free(files);
        return usage_error("%s", "no image given");
    }
    return -1;
}

/* ------------------------------------------------------------ main */
int cmd_faces(int argc, char **argv) {
    faces_opts o = {0};
    file_list files = {0};
    int rc = parse_opts(argc, argv, &o, &files);
    if (rc >= 0) return rc;
    rc = 0;
    const int many = files.n > 1;
    if (o.draw && many) {
        size_t k = strlen(o.draw);
        if (k >= 4 && !strcmp(o.draw + k - 4, ".png")) {
            list_free(&files);
            return usage_error("--draw %s: with several images, give a folder", o.draw);
        }
        if (mkdir(o.draw, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "doppel faces: %s: cannot create the folder: %s\n", o.draw, strerror(errno));
            list_free(&files);
            return 2;
        }
    }

    dp_ctx *ctx = NULL;
    dp_face_detector *det = NULL, *ver = NULL;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx) != DP_OK) {
        fprintf(stderr, "doppel faces: cannot create a context\n");
        list_free(&files);
        return 1;
    }
    dp_status st = o.cascade ? dp_face_detector_load(ctx, o.cascade, &det) : dp_face_detector_default(ctx, &det);
    if (st == DP_OK && o.verify) st = dp_face_detector_load(ctx, o.verify, &ver);
    if (st) {
        fprintf(stderr, "doppel faces: %s [%s]\n", dp_ctx_error(ctx), dp_status_name(st));
        dp_face_detector_free(det);
        dp_ctx_free(ctx);
        list_free(&files);
        return 1;
    }
    o.fo.verify = ver;
    int cap = 256;
    dp_face_box *boxes = malloc((size_t)cap * sizeof *boxes);
    if (!boxes) {
        fprintf(stderr, "doppel faces: out of memory\n");
        dp_face_detector_free(det);
        dp_face_detector_free(ver);
        dp_ctx_free(ctx);
        list_free(&files);
        return 1;
    }
    if (o.json) {
        printf("{\"cascade\":");
        json_str(stdout, o.cascade ? o.cascade : "(default)");
        printf(",\"images\":[");
    }
    int64_t n_failed = 0, n_zero = 0, n_one = 0, n_many = 0;
    double bench_total = 0;
    int64_t bench_frames = 0;
    for (int fi = 0; fi < files.n; fi++) {
        const char *file = files.v[fi];
        dp_image img = {0};
        int n = 0;
        st = dp_image_load(ctx, file, 0, NULL, &img);
        if (st == DP_OK) {
            const int reps = o.bench > 0 ? o.bench : 1;
            double *times = o.bench > 0 ? malloc((size_t)reps * sizeof *times) : NULL;
            double total = 0;
            for (int r = 0; r < reps && st == DP_OK; r++) {
                double t0 = cli_now();
                st = dp_face_detect(det, &img, &o.fo, boxes, cap, &n);
                if (st == DP_OK && n > cap) { /* more than the buffer holds: grow it, look again */
                    dp_face_box *nb = realloc(boxes, (size_t)n * sizeof *nb);
                    if (nb) {
                        boxes = nb;
                        cap = n;
                        st = dp_face_detect(det, &img, &o.fo, boxes, cap, &n);
                    }
                }
                double dt = cli_now() - t0;
                total += dt;
                if (times) times[r] = dt;
            }
            if (st == DP_OK && times) {
                qsort(times, (size_t)reps, sizeof *times, cmp_double);
                bench_total += total;
                bench_frames += reps;
                fprintf(stderr,
                        "%s: %dx%d, %d runs: median %.2f ms/frame (%.1f frames/s), fastest %.2f ms, mean %.2f ms; "
                        "%d face%s\n",
                        file, img.width, img.height, reps, 1e3 * times[reps / 2], 1.0 / times[reps / 2],
                        1e3 * times[0], 1e3 * total / reps, n, n == 1 ? "" : "s");
            }
            free(times);
        }
        if (o.json && fi) putchar(',');
        if (st) {
            n_failed++;
            fprintf(stderr, "doppel faces: %s [%s]\n", dp_ctx_error(ctx), dp_status_name(st));
            if (o.json) {
                printf("\n{\"file\":");
                json_str(stdout, file);
                printf(",\"error\":");
                json_str(stdout, dp_ctx_error(ctx));
                putchar('}');
            }
            dp_image_free(ctx, &img);
            continue;
        }
        const int shown = n < cap ? n : cap;
        if (n == 0) n_zero++;
        else if (n == 1) n_one++;
        else n_many++;
        if (o.json) {
            printf("\n{\"file\":");
            json_str(stdout, file);
            printf(",\"width\":%d,\"height\":%d,\"faces\":[", img.width, img.height);
            for (int k = 0; k < shown; k++)
                printf("%s{\"x\":%d,\"y\":%d,\"w\":%d,\"h\":%d,\"neighbors\":%d}", k ? "," : "", boxes[k].x,
                       boxes[k].y, boxes[k].w, boxes[k].h, boxes[k].neighbors);
            printf("]}");
        } else if (!o.quiet) {
            for (int k = 0; k < shown; k++)
                printf("%s %d %d %d %d %d\n", file, boxes[k].x, boxes[k].y, boxes[k].w, boxes[k].h,
                       boxes[k].neighbors);
        }
        if (o.draw) {
            char out[4096];
            draw_path(o.draw, many, file, out, sizeof out);
            dp_status ds = draw_faces(ctx, &img, boxes, shown, out);
            if (ds) {
                n_failed++;
                fprintf(stderr, "doppel faces: %s: drawing: %s [%s]\n", file, dp_ctx_error(ctx), dp_status_name(ds));
            }
        }
        dp_image_free(ctx, &img);
    }
    if (o.json) printf("\n]}\n");
    fflush(stdout);
    if (o.bench > 0 && bench_frames > 0 && files.n > 1)
        fprintf(stderr, "all: %lld frames: %.2f ms/frame (%.1f frames/s)\n", (long long)bench_frames,
                1e3 * bench_total / (double)bench_frames, (double)bench_frames / bench_total);
    if (o.summary)
        fprintf(stderr, "images %d: no face %lld, one face %lld (%.2f%%), 2+ faces %lld, failed %lld\n", files.n,
                (long long)n_zero, (long long)n_one, files.n ? 100.0 * (double)n_one / files.n : 0.0,
                (long long)n_many, (long long)n_failed);
    if (n_failed) rc = 2;
    free(boxes);
    dp_face_detector_free(det);
    dp_face_detector_free(ver);
    dp_ctx_free(ctx);
    list_free(&files);
    return rc;
}
