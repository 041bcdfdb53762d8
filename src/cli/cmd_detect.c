/* doppel detect — is this face real or made by AI?
 *
 *   doppel detect IMAGE|DIR... [--json] [--csv] [--explain out.png] [--model M]
 *   doppel detect train --real DIR... --fake DIR... --arch meso4 --out M [...]
 *   doppel detect eval  --real DIR... --fake DIR... --model M [--json] [--report out.html]
 *
 * The ML lives in the library (include/doppel/detect.h); this file parses,
 * loops over files, prints. docs/detect.md describes it all. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/parse.h"
#include "detect/draw.h"
#include "doppel/detect.h"
#include "doppel/doppel.h"

#ifndef DP_SOURCE_DIR
#define DP_SOURCE_DIR "."
#endif

#define MAX_DIRS 16

/* ------------------------------------------------------------ file lists */
typedef struct flist {
    char **v;
    int64_t n, cap;
} flist;

static int fl_push(flist *l, const char *s) {
    if (l->n == l->cap) {
        int64_t c = l->cap ? l->cap * 2 : 256;
        char **nv = realloc(l->v, sizeof(char *) * (size_t)c);
        if (!nv) return 0;
        l->v = nv, l->cap = c;
    }
    if (!(l->v[l->n] = strdup(s))) return 0;
    l->n++;
    return 1;
}
static void fl_free(flist *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_ext(const char *name) {
    const char *d = strrchr(name, '.');
    if (!d) return 0;
    return !strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg") || !strcasecmp(d, ".png") || !strcasecmp(d, ".webp");
}

/* Images under dir (recursively, sorted, hidden entries skipped). */
static int walk(const char *dir, flist *out, int depth) {
    if (depth > 32) return 1;
    DIR *d = opendir(dir);
    if (!d) return 0;
    flist names = {0};
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!fl_push(&names, p)) break;
    }
    closedir(d);
    if (names.n > 1) qsort(names.v, (size_t)names.n, sizeof(char *), cmp_str);
    for (int64_t i = 0; i < names.n; i++) {
        struct stat st;
        if (stat(names.v[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) walk(names.v[i], out, depth + 1);
        else if (S_ISREG(st.st_mode) && has_image_ext(names.v[i])) fl_push(out, names.v[i]);
    }
    fl_free(&names);
    return 1;
}

/* ------------------------------------------------------------ options */
typedef struct opts {
    const char *cmd;
    const char *real[MAX_DIRS], *fake[MAX_DIRS], *val_source[MAX_DIRS], *score_files[MAX_DIRS];
    int n_real, n_fake, n_val_source, n_scores;
    const char *out, *model, *arch, *report, *explain, *run, *face_cache, *scores;
    double max_fpr, self_blend, ood_pct;
    float t_real, t_fake; /* --thresholds (train); 0,0: the defaults */
    int aug_heavy;        /* --aug heavy */
    int norm;             /* --norm: DP_CROP_NORM_* */
    int sbi_no_blur;      /* --self-blend-no-blur */
    int gradcam;          /* --explain-method gradcam */
    int epochs, batch, threads, json, csv, quiet, resume, size, work, patience, no_robust, spectral_only;
    int64_t limit, steps;
    double lr;
    uint64_t seed;
} opts;

static int usage_error(const opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const opts *o, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "doppel detect%s%s: ", o->cmd ? " " : "", o->cmd ? o->cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'doppel detect --help')\n");
    return 2;
}

static const char *const usage_text =
    "usage: doppel detect IMAGE|DIR... [--json] [--csv] [--explain OUT.png] [--model M]\n"
    "       doppel detect train --real DIR... --fake DIR... [--arch meso4|mesoinception4|spectral] --out M [options]\n"
    "       doppel detect eval  --real DIR... --fake DIR... [--model M] [--json] [--report OUT.html]\n"
    "       doppel detect calibrate --scores CSV... [--model M] [--max-fpr X] --out M2\n"
    "\n"
    "Says whether each face in each image is real or AI-generated: finds the faces (Viola-Jones),\n"
    "crops each one by the model's crop policy, scores it with Meso-4 and a spectral detector, fuses\n"
    "the two into one calibrated probability p_fake, and gives a verdict: real (p_fake < t_real),\n"
    "fake (p_fake >= t_fake) or uncertain (between, no face found, or unlike the training data).\n"
    "Exit status: 0 every image real, 1 something fake or uncertain, 2 an error (bad file or usage).\n"
    "\n"
    "detect:\n"
    "  --model M         the model (default: $DOPPEL_MODEL, then models/" DP_DETECT_DEFAULT_MODEL "\n"
    "                    of the source tree, then " DP_DETECT_MODEL_DIRS ")\n"
    "  --json            one JSON object per image (one per line)\n"
    "  --csv             file,face,x,y,w,h,p_fake,verdict,meso4,spectral lines\n"
    "  --explain OUT.png the image with the face boxes and a heat map (one image only)\n"
    "  --explain-method occlusion|gradcam  the heat map: occlusion (default) or Grad-CAM on the CNN\n"    "  --thresholds R,F  verdict thresholds instead of the model's: real below R, fake from F\n"
    "train:\n"
    "  --real DIR, --fake DIR   folders of images (recursively; repeat for several sources)\n"
    "  --val-source DIR  one of the folders, held out whole: never trained on, reported on its own\n"
    "                    (leave-one-source-out: the figure that counts)\n"
    "  --arch meso4|mesoinception4|spectral  the CNN fused with the spectral detector (meso4 by\n"
    "                    default); spectral: the spectral detector only\n"
    "  --out M           the model file (best epoch by validation AUC); M.train keeps the last\n"
    "                    epoch with the optimiser state for --resume\n"
    "  --epochs N (10) --batch N (32) --lr X (0.001) --patience N (3) --seed N (1) --threads N\n"
    "  --limit N         at most N images per folder (spread over the sorted list)\n"
    "  --steps N         at most N steps per epoch\n"
    "  --size N          Meso-4 input side (default 256); --work N  common crop resolution (64)\n"
    "  --resume          continue from M.train\n"
    "  --thresholds R,F  verdict thresholds stored in the model: real below R, fake from F (0.3,0.7)\n"
    "  --aug default|heavy  heavy: every degradation more often and stronger (docs/detect.md)\n"
    "  --norm none|channel|grey|residual  per-crop normalisation of the model input, stored in\n"
    "                    the crop policy: each of R,G,B standardised, the standardised luminance\n"
    "                    only, or the luminance minus its blur (fine texture only)\n"
    "  --self-blend-no-blur  self-blended fakes never have a blurred inside (unsharp or nothing)\n"
    "  --face-cache FILE face boxes found earlier (path, size, mtime -> box); read, extended, written\n"
    "                    back, so later runs on the same files skip face finding\n"
    "  --scores CSV      raw scores of the test split and the held-out source, for 'calibrate'\n"
    "  --self-blend P    this share (0..1) of the fake half of each batch are self-blended real\n"
    "                    training faces (Shiohara & Yamasaki 2022: a face blended with a changed\n"
    "                    copy of itself inside a soft face mask; no other identity)\n"
    "  --ood-percentile X  Meso-4 feature distance above this percentile of the clean training\n"
    "                    crops -> uncertain (99.5)\n"
    "calibrate:\n"
    "  --scores CSV      one per leave-one-source-out run; the verdict thresholds are chosen on them\n"
    "                    (each fold also scored with the other folds' choice: the honest figure)\n"
    "  --max-fpr X       at most this share of any real source judged fake (0.05)\n"
    "eval:\n"
    "  --json            one JSON object (auc, ap, accuracy, f1, fpr_real, fnr, ece, uncertain,\n"
    "                    groups, robustness ...)\n"
    "  --report OUT.html a self-contained page with the ROC curve and the reliability diagram\n"
    "  --no-robustness   skip the robustness table (7 passes over the data)\n"
    "  --limit N         at most N images per folder\n";


/* files: positional arguments (detect only). */
static int parse_opts(int argc, char **argv, opts *o, flist *files) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strncmp(a, "--", 2) != 0) {
            if (!files) return usage_error(o, "unexpected argument '%s'", a);
            if (!fl_push(files, a)) return usage_error(o, "out of memory");
            continue;
        }
        static const char *const flags[] = {"--json", "--csv", "--quiet", "--resume", "--no-robustness", "--self-blend-no-blur", NULL};
        int flag = 0;
        for (int k = 0; flags[k]; k++) flag |= !strcmp(a, flags[k]);
        if (flag) {
            if (!strcmp(a, "--json")) o->json = 1;
            else if (!strcmp(a, "--csv")) o->csv = 1;
            else if (!strcmp(a, "--quiet")) o->quiet = 1;
            else if (!strcmp(a, "--resume")) o->resume = 1;
            else if (!strcmp(a, "--self-blend-no-blur")) o->sbi_no_blur = 1;
            else o->no_robust = 1;
            continue;
        }
        if (i + 1 >= argc) return usage_error(o, "%s needs a value", a);
        v = argv[++i];
        int64_t iv;
#define INT_OPT(opt, lo, hi, field)                                                                                    \
    else if (!strcmp(a, opt)) {                                                                                        \
        if (!dp_parse_i64(v, lo, hi, &iv))                                                                                \
            return usage_error(o, "%s must be an integer in [%lld, %lld], got '%s'", opt, (long long)(lo),            \
                               (long long)(hi), v);                                                                    \
        o->field = iv;                                                                                                 \
    }
        if (!strcmp(a, "--real")) {
            if (o->n_real >= MAX_DIRS) return usage_error(o, "at most %d --real folders", MAX_DIRS);
            o->real[o->n_real++] = v;
        } else if (!strcmp(a, "--fake")) {
            if (o->n_fake >= MAX_DIRS) return usage_error(o, "at most %d --fake folders", MAX_DIRS);
            o->fake[o->n_fake++] = v;
        } else if (!strcmp(a, "--val-source")) {
            if (o->n_val_source >= MAX_DIRS) return usage_error(o, "at most %d --val-source folders", MAX_DIRS);
            o->val_source[o->n_val_source++] = v;
        } else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--report")) o->report = v;
        else if (!strcmp(a, "--explain")) o->explain = v;
        else if (!strcmp(a, "--face-cache")) o->face_cache = v;
        else if (!strcmp(a, "--explain-method")) {
            if (strcmp(v, "occlusion") && strcmp(v, "gradcam"))
                return usage_error(o, "--explain-method must be occlusion or gradcam, got '%s'", v);
            o->gradcam = !strcmp(v, "gradcam");
        }
        else if (!strcmp(a, "--norm")) {
            if (!strcmp(v, "none")) o->norm = DP_CROP_NORM_NONE;
            else if (!strcmp(v, "channel")) o->norm = DP_CROP_NORM_CHANNEL;
            else if (!strcmp(v, "grey")) o->norm = DP_CROP_NORM_GREY;
            else if (!strcmp(v, "residual")) o->norm = DP_CROP_NORM_RESIDUAL;
            else return usage_error(o, "--norm must be none, channel, grey or residual, got '%s'", v);
        } else if (!strcmp(a, "--aug")) {
            if (strcmp(v, "default") && strcmp(v, "heavy")) return usage_error(o, "--aug must be default or heavy, got '%s'", v);
            o->aug_heavy = !strcmp(v, "heavy");
        }
        else if (!strcmp(a, "--scores")) {
            if (o->n_scores >= MAX_DIRS) return usage_error(o, "at most %d --scores files", MAX_DIRS);
            o->scores = v;
            o->score_files[o->n_scores++] = v;
        } else if (!strcmp(a, "--self-blend") || !strcmp(a, "--ood-percentile")) {
            char *end;
            int sb = !strcmp(a, "--self-blend");
            double x = strtod(v, &end);
            if (*end || !(sb ? x >= 0 && x <= 1 : x > 50 && x < 100))
                return usage_error(o, "%s must be in %s, got '%s'", a, sb ? "[0, 1]" : "(50, 100)", v);
            *(sb ? &o->self_blend : &o->ood_pct) = x;
        } else if (!strcmp(a, "--max-fpr")) {
            char *end;
            o->max_fpr = strtod(v, &end);
            if (*end || !(o->max_fpr > 0 && o->max_fpr < 1)) return usage_error(o, "--max-fpr must be in (0, 1), got '%s'", v);
        }
        else if (!strcmp(a, "--thresholds")) {
            char *end;
            o->t_real = strtof(v, &end);
            if (*end != ',') return usage_error(o, "--thresholds must be REAL,FAKE (e.g. 0.3,0.7), got '%s'", v);
            o->t_fake = strtof(end + 1, &end);
            if (*end || !(o->t_real > 0 && o->t_real <= o->t_fake && o->t_fake < 1))
                return usage_error(o, "--thresholds must be REAL,FAKE with 0 < REAL <= FAKE < 1, got '%s'", v);
        }
        else if (!strcmp(a, "--arch")) {
            if (strcmp(v, "meso4") && strcmp(v, "mesoinception4") && strcmp(v, "spectral"))
                return usage_error(o, "--arch must be meso4, mesoinception4 or spectral, got '%s'", v);
            o->arch = v;
        } else if (!strcmp(a, "--lr")) {
            char *end;
            o->lr = strtod(v, &end);
            if (*end || !(o->lr > 0 && o->lr <= 1)) return usage_error(o, "--lr must be in (0, 1], got '%s'", v);
        }
        INT_OPT("--epochs", 1, 10000, epochs)
        INT_OPT("--batch", 2, 4096, batch)
        INT_OPT("--threads", 0, 256, threads)
        INT_OPT("--limit", 0, INT64_MAX, limit)
        INT_OPT("--steps", 0, INT64_MAX, steps)
        INT_OPT("--size", 32, 1024, size)
        INT_OPT("--work", 16, 2 * DP_SPECTRAL_MAX, work)
        INT_OPT("--patience", 1, 1000, patience)
        else if (!strcmp(a, "--seed")) {
            if (!dp_parse_i64(v, 0, INT64_MAX, &iv)) return usage_error(o, "--seed must be a non-negative integer");
            o->seed = (uint64_t)iv;
        } else return usage_error(o, "unknown option '%s'", a);
#undef INT_OPT
    }
    return 0;
}

/* ------------------------------------------------------------ labelled samples */
typedef struct sample {
    const char *path; /* owned by the flist */
    int label;        /* 1 fake */
    int source;       /* index into the source table */
    int split;        /* 0 train, 1 validation, 2 test, 3 held-out source */
    int no_face;
    uint8_t *crop;    /* work crop, [3,W,W] bytes */
} sample;

typedef struct source {
    const char *dir;
    int label, held_out;
    int64_t n, no_face, unreadable;
} source;

typedef struct dataset {
    flist files;
    sample *s;
    int64_t n;
    source src[2 * MAX_DIRS];
    int n_src;
} dataset;

static void ds_free(dataset *d) {
    for (int64_t i = 0; i < d->n; i++) free(d->s[i].crop);
    free(d->s);
    fl_free(&d->files);
}

static void warn_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn_line(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "\r\033[K");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------ face-box cache
 * --face-cache FILE: one line per image, "path<TAB>size<TAB>mtime<TAB>x y w h
 * found" (found 0: the fallback box). An entry counts only while the file's
 * size and mtime are unchanged. Written back whole (temporary file + rename). */
typedef struct bc_entry {
    char *key; /* "path\tsize\tmtime" */
    dp_face_box box;
    int found;
} bc_entry;
typedef struct box_cache {
    bc_entry *e;
    int64_t n, n_sorted, cap;
} box_cache;

static int bc_cmp(const void *a, const void *b) { return strcmp(((const bc_entry *)a)->key, ((const bc_entry *)b)->key); }

static int bc_key(const char *path, char *key, size_t n) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    int k = snprintf(key, n, "%s\t%lld\t%lld", path, (long long)st.st_size, (long long)st.st_mtime);
    return k > 0 && (size_t)k < n;
}

static int bc_add(box_cache *c, const char *key, const dp_face_box *b, int found) {
    if (c->n == c->cap) {
        int64_t cap = c->cap ? c->cap * 2 : 1024;
        bc_entry *ne = realloc(c->e, sizeof *ne * (size_t)cap);
        if (!ne) return 0;
        c->e = ne, c->cap = cap;
    }
    if (!(c->e[c->n].key = strdup(key))) return 0;
    c->e[c->n].box = *b;
    c->e[c->n].found = found;
    c->n++;
    return 1;
}

/* The cache file: one line per image, "PATH<TAB>SIZE<TAB>MTIME<TAB>X Y W H FOUND" (bc_save_free). No
 * file yet: an empty cache. A line that is not such an entry is an error naming the file and the line
 * (0; 1 when loaded). */
static int bc_load(box_cache *c, const char *file, const char *cmd) {
    memset(c, 0, sizeof *c);
    if (!file) return 1;
    FILE *f = fopen(file, "r");
    if (!f) {
        if (errno == ENOENT) return 1; /* a new cache */
        fprintf(stderr, "doppel detect %s: cannot read the face cache %s: %s\n", cmd, file, strerror(errno));
        return 0;
    }
    char line_[8192];
    int64_t ln = 0;
    int ok = 1;
    while (ok && fgets(line_, sizeof line_, f)) {
        ln++;
        size_t L = strlen(line_);
        int whole = L > 0 && line_[L - 1] == '\n';
        line_[strcspn(line_, "\r\n")] = 0;
        char *t = strrchr(line_, '\t');
        dp_face_box b = {0};
        int v[5];
        if (!whole && !feof(f)) {
            ok = 0; /* longer than any entry doppel writes */
        } else if (!t || t == line_ || !dp_parse_ints(t + 1, ' ', 5, -(1 << 24), 1 << 24, v) || v[2] < 1 || v[3] < 1 ||
                   v[4] < 0 || v[4] > 1) {
            ok = 0;
        } else {
            *t = 0;
            b.x = v[0], b.y = v[1], b.w = v[2], b.h = v[3];
            if (!bc_add(c, line_, &b, v[4])) {
                fprintf(stderr, "doppel detect %s: out of memory reading the face cache %s\n", cmd, file);
                fclose(f);
                return 0;
            }
        }
        if (!ok)
            fprintf(stderr,
                    "doppel detect %s: the face cache %s, line %lld: not an entry (PATH<TAB>SIZE<TAB>MTIME<TAB>X Y W H FOUND, "
                    "W and H >= 1, FOUND 0 or 1); delete the file to rebuild it\n",
                    cmd, file, (long long)ln);
    }
    if (ok && ferror(f)) {
        fprintf(stderr, "doppel detect %s: cannot read the face cache %s: %s\n", cmd, file, strerror(errno));
        ok = 0;
    }
    fclose(f);
    if (c->n > 1) qsort(c->e, (size_t)c->n, sizeof *c->e, bc_cmp);
    c->n_sorted = c->n;
    return ok;
}

static const bc_entry *bc_find(const box_cache *c, const char *key) {
    if (!c->n_sorted) return NULL;
    bc_entry k = {.key = (char *)key};
    return bsearch(&k, c->e, (size_t)c->n_sorted, sizeof *c->e, bc_cmp);
}

static void bc_save_free(box_cache *c, const char *file) {
    if (file && c->n > c->n_sorted) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", file);
        FILE *f = fopen(tmp, "w");
        int ok = f != NULL;
        for (int64_t i = 0; ok && i < c->n; i++)
            /* a file name with a line break would not read back as one entry: such files are not cached */
            ok = strpbrk(c->e[i].key, "\r\n") ||
                 fprintf(f, "%s\t%d %d %d %d %d\n", c->e[i].key, c->e[i].box.x, c->e[i].box.y, c->e[i].box.w, c->e[i].box.h,
                            c->e[i].found) > 0;
        if (f && fclose(f) != 0) ok = 0;
        if (!ok || rename(tmp, file) != 0) {
            fprintf(stderr, "doppel detect: cannot write the face cache %s: %s\n", file, strerror(errno));
            unlink(tmp);
        }
    }
    for (int64_t i = 0; i < c->n; i++) free(c->e[i].key);
    free(c->e);
    memset(c, 0, sizeof *c);
}

/* Face → work crop of one file. *no_face set when the fallback box was used.
 * cache (may be NULL): boxes found earlier; new ones are added. */
static dp_status crop_file(dp_ctx *ctx, const dp_face_detector *fd, const char *path, const dp_crop_policy *pol,
                           box_cache *cache, dp_image *crop, int *no_face) {
    dp_image img = {0};
    dp_status s = dp_image_load(ctx, path, 3, NULL, &img);
    if (s != DP_OK) return s;
    dp_face_box box;
    int n = 0;
    char key[4300];
    int have_key = cache && bc_key(path, key, sizeof key);
    const bc_entry *hit = have_key ? bc_find(cache, key) : NULL;
    if (hit) {
        box = hit->box;
        n = hit->found;
    } else {
        dp_face_opts fo = {0};
        fo.pad = DP_FACE_PAD_AUTO;
        s = dp_face_detect(fd, &img, &fo, &box, 1, &n);
    }
    if (s == DP_OK) {
        *no_face = n == 0;
        if (n == 0) dp_crop_fallback_box(img.width, img.height, &box);
        if (have_key && !hit) bc_add(cache, key, &box, n > 0);
        s = dp_crop_face(ctx, &img, &box, pol, crop);
    }
    dp_image_free(ctx, &img);
    return s;
}

static void crop_to_u8(const dp_image *c, uint8_t *u) {
    size_t n = (size_t)3 * c->height * c->width;
    for (size_t i = 0; i < n; i++) {
        float v = c->data[i];
        u[i] = !(v > 0) ? 0 : v >= 1 ? 255 : (uint8_t)lrintf(v * 255.0f);
    }
}
static void u8_to_crop(const uint8_t *u, dp_image *c) {
    size_t n = (size_t)3 * c->height * c->width;
    for (size_t i = 0; i < n; i++) c->data[i] = u[i] * (1.0f / 255.0f);
}

/* Reads every folder, finds faces, keeps the work crops. */
static int load_dataset(dp_ctx *ctx, const dp_face_detector *fd, const opts *o, const dp_crop_policy *pol, dataset *d) {
    memset(d, 0, sizeof *d);
    int64_t start[2 * MAX_DIRS + 1];
    for (int c = 0; c < 2; c++) {
        int nd = c ? o->n_fake : o->n_real;
        for (int k = 0; k < nd; k++) {
            source *sr = &d->src[d->n_src];
            sr->dir = c ? o->fake[k] : o->real[k];
            sr->label = c;
            for (int j = 0; j < o->n_val_source; j++) sr->held_out |= !strcmp(o->val_source[j], sr->dir);
            flist all = {0};
            struct stat st;
            if (stat(sr->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                fprintf(stderr, "doppel detect %s: %s is not a folder\n", o->cmd, sr->dir);
                fl_free(&all);
                return 0;
            }
            walk(sr->dir, &all, 0);
            if (all.n == 0) {
                fprintf(stderr, "doppel detect %s: %s: no images (.jpg, .jpeg, .png, .webp) in this folder\n", o->cmd, sr->dir);
                fl_free(&all);
                return 0;
            }
            int64_t keep = o->limit > 0 && o->limit < all.n ? o->limit : all.n;
            start[d->n_src] = d->files.n;
            for (int64_t i = 0; i < keep; i++) fl_push(&d->files, all.v[(int64_t)((double)i * all.n / keep)]);
            fl_free(&all);
            d->n_src++;
        }
    }
    start[d->n_src] = d->files.n;
    for (int j = 0; j < o->n_val_source; j++) {
        int found = 0;
        for (int k = 0; k < d->n_src; k++) found |= !strcmp(o->val_source[j], d->src[k].dir);
        if (!found) {
            fprintf(stderr, "doppel detect %s: --val-source %s is not one of the --real/--fake folders\n", o->cmd, o->val_source[j]);
            return 0;
        }
    }
    d->s = calloc((size_t)d->files.n + 1, sizeof(sample));
    if (!d->s) return 0;
    int W = pol->work;
    box_cache cache;
    if (!bc_load(&cache, o->face_cache, o->cmd)) {
        bc_save_free(&cache, NULL);
        return 0;
    }
    if (o->face_cache) printf("face cache %s: %lld boxes\n", o->face_cache, (long long)cache.n);
    cli_progress pb;
    cli_progress_start(&pb, "faces", d->files.n, "img", !o->quiet);
    int64_t done = 0;
    for (int k = 0; k < d->n_src; k++)
        for (int64_t i = start[k]; i < start[k + 1]; i++) {
            dp_image crop = {0};
            int nf = 0;
            dp_status s = crop_file(ctx, fd, d->files.v[i], pol, o->face_cache ? &cache : NULL, &crop, &nf);
            done++;
            if (s != DP_OK) {
                warn_line("warning: %s", dp_ctx_error(ctx));
                d->src[k].unreadable++;
                continue;
            }
            sample *sm = &d->s[d->n];
            sm->path = d->files.v[i];
            sm->label = d->src[k].label;
            sm->source = k;
            sm->no_face = nf;
            sm->crop = malloc((size_t)3 * W * W);
            if (!sm->crop) {
                dp_image_free(ctx, &crop);
                bc_save_free(&cache, NULL);
                return 0;
            }
            crop_to_u8(&crop, sm->crop);
            dp_image_free(ctx, &crop);
            d->src[k].n++;
            d->src[k].no_face += nf;
            d->n++;
            cli_progress_update(&pb, done, done, NULL);
        }
    cli_progress_finish(&pb, done, "%lld crops", (long long)d->n);
    bc_save_free(&cache, o->face_cache);
    for (int k = 0; k < d->n_src; k++)
        printf("data: %-6s %s: %lld images (%lld without a detected face: centre crop; %lld unreadable)%s\n",
               d->src[k].label ? "fake" : "real", d->src[k].dir, (long long)d->src[k].n, (long long)d->src[k].no_face,
               (long long)d->src[k].unreadable, d->src[k].held_out ? " — held out" : "");
    return 1;
}

/* ------------------------------------------------------------ metrics of a scored set */
typedef struct metrics {
    int64_t n, n_real, n_fake;
    double auc, ap, accuracy, f1, fpr_real, fnr, fpr_05, fnr_05, ece, uncertain, no_face;
} metrics;

static void compute_metrics(const float *p, const int *y, const int *verdict, const int *noface, int64_t n, metrics *m) {
    memset(m, 0, sizeof *m);
    m->n = n;
    int64_t tp = 0, fp = 0, fn = 0, tn = 0, vf_real = 0, vr_fake = 0, unc = 0, nf = 0;
    for (int64_t i = 0; i < n; i++) {
        int pred = p[i] >= 0.5f;
        if (y[i]) m->n_fake++, tp += pred, fn += !pred, vr_fake += verdict[i] == DP_VERDICT_REAL;
        else m->n_real++, fp += pred, tn += !pred, vf_real += verdict[i] == DP_VERDICT_FAKE;
        unc += verdict[i] == DP_VERDICT_UNCERTAIN;
        nf += noface ? noface[i] : 0;
    }
    m->auc = dp_metric_auc(p, y, n);
    m->ap = dp_metric_ap(p, y, n);
    m->ece = dp_metric_ece(p, y, n, 10);
    m->accuracy = n ? (double)(tp + tn) / (double)n : NAN;
    m->f1 = tp ? 2.0 * tp / (2.0 * tp + fp + fn) : 0;
    m->fpr_05 = m->n_real ? (double)fp / (double)m->n_real : NAN;
    m->fnr_05 = m->n_fake ? (double)fn / (double)m->n_fake : NAN;
    m->fpr_real = m->n_real ? (double)vf_real / (double)m->n_real : NAN;
    m->fnr = m->n_fake ? (double)vr_fake / (double)m->n_fake : NAN;
    m->uncertain = n ? (double)unc / (double)n : NAN;
    m->no_face = n ? (double)nf / (double)n : NAN;
}

static void print_metrics(const char *what, const metrics *m) {
    printf("%s: %lld images (%lld real, %lld fake): AUC %.4f  AP %.4f  acc@0.5 %.2f%%  F1 %.4f  "
           "FPR(real→fake verdict) %.2f%%  FNR(fake→real verdict) %.2f%%  FPR@0.5 %.2f%%  ECE %.4f  uncertain %.2f%%\n",
           what, (long long)m->n, (long long)m->n_real, (long long)m->n_fake, m->auc, m->ap, 100 * m->accuracy, m->f1,
           100 * m->fpr_real, 100 * m->fnr, 100 * m->fpr_05, m->ece, 100 * m->uncertain);
}

/* ------------------------------------------------------------ scoring stored crops */
/* Raw scores of the samples idx[0..n) (clean crops, or augmented with rng). */
static dp_status score_samples(dp_detector *det, const dataset *d, const int64_t *idx, int64_t n, float *meso, float *spec,
                               float *ood, float *ood_s, float *ood_f, const char *label, int show) {
    dp_ctx *ctx = dp_detector_ctx(det);
    int W = dp_detector_get_params(det)->crop.work;
    enum { CH = 32 };
    dp_image crops[CH];
    memset(crops, 0, sizeof crops);
    dp_status s = DP_OK;
    for (int i = 0; i < CH && s == DP_OK; i++) s = dp_image_alloc(ctx, 3, W, W, &crops[i]);
    cli_progress pb;
    cli_progress_start(&pb, label, n, "img", show);
    for (int64_t off = 0; off < n && s == DP_OK; off += CH) {
        int m = n - off < CH ? (int)(n - off) : CH;
        for (int i = 0; i < m; i++) u8_to_crop(d->s[idx[off + i]].crop, &crops[i]);
        dp_detector_scores sc = {meso ? meso + off : NULL, spec ? spec + off : NULL, ood ? ood + off : NULL,
                                 ood_s ? ood_s + off : NULL, ood_f ? ood_f + off : NULL, NULL};
        s = dp_detector_score(det, crops, m, &sc);
        cli_progress_update(&pb, off + m, off + m, NULL);
    }
    if (s == DP_OK) cli_progress_finish(&pb, n, NULL);
    for (int i = 0; i < CH; i++) dp_image_free(ctx, &crops[i]);
    return s;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* The training augmentation: dp_augment_opts_default, or with --aug heavy
 * every degradation more often and stronger (down-scaling to 0.3x, blur to
 * sigma 2, JPEG from q40, noise), so that sharpness and compression history,
 * which differ between sources, carry less of the label. */
static void train_augment_opts(const opts *o, dp_augment_opts *ao) {
    dp_augment_opts_default(ao);
    if (!o->aug_heavy) return;
    ao->p_scale = 0.7f, ao->scale_lo = 0.3f;
    ao->p_blur = 0.5f, ao->blur_max = 2.0f;
    ao->p_jpeg = 0.7f, ao->jpeg_lo = 40;
    ao->p_noise = 0.5f;
}

/* Spectral logistic regression on the training split (clean + one augmented
 * copy of each crop), per-class statistics and the out-of-distribution
 * threshold (99.5th percentile of the clean training crops' distances). */
static dp_status fit_spectral(dp_ctx *ctx, dp_detector *det, const dataset *d, const int64_t *tr, int64_t n_tr, uint64_t seed,
                              const dp_augment_opts *ao) {
    dp_detector_params *p = dp_detector_get_params(det);
    int F = p->n_spec, W = p->crop.work;
    int64_t N = 2 * n_tr;
    float *x = malloc(sizeof(float) * (size_t)N * F), *dist = malloc(sizeof(float) * (size_t)N);
    int *y = malloc(sizeof(int) * (size_t)N);
    dp_image c = {0};
    dp_status s = dp_image_alloc(ctx, 3, W, W, &c);
    if (!x || !y || !dist) s = DP_ERR_NOMEM;
    dp_rng rng;
    dp_rng_stream(&rng, seed, 77);
    for (int64_t i = 0; i < N && s == DP_OK; i++) {
        const sample *sm = &d->s[tr[i % n_tr]];
        if (c.width != W) { /* dp_augment may replace the image: keep the size */
            dp_image_free(ctx, &c);
            if ((s = dp_image_alloc(ctx, 3, W, W, &c)) != DP_OK) break;
        }
        u8_to_crop(sm->crop, &c);
        if (i >= n_tr && (s = dp_augment(ctx, &c, ao, &rng)) != DP_OK) break;
        s = dp_spectral_features(ctx, &c, x + i * F, F);
        y[i] = sm->label;
    }
    dp_image_free(ctx, &c);
    if (s == DP_OK) {
        for (int j = 0; j < F; j++) {
            double m = 0, v = 0;
            for (int64_t i = 0; i < N; i++) m += x[i * F + j];
            m /= (double)N;
            for (int64_t i = 0; i < N; i++) v += (x[i * F + j] - m) * (x[i * F + j] - m);
            p->spec_mu[j] = (float)m;
            p->spec_sigma[j] = (float)sqrt(v / (double)N) + 1e-6f;
            for (int64_t i = 0; i < N; i++) x[i * F + j] = (float)((x[i * F + j] - m) / p->spec_sigma[j]);
        }
        for (int c2 = 0; c2 < 2; c2++)
            for (int j = 0; j < F; j++) {
                double m = 0, v = 0, k = 0;
                for (int64_t i = 0; i < N; i++)
                    if (y[i] == c2) m += x[i * F + j], k++;
                m = k ? m / k : 0;
                for (int64_t i = 0; i < N; i++)
                    if (y[i] == c2) v += (x[i * F + j] - m) * (x[i * F + j] - m);
                p->class_mu[c2][j] = (float)m;
                p->class_sigma[c2][j] = (float)sqrt(k ? v / k : 1) + 1e-3f;
            }
        float w[DP_SPECTRAL_MAX + 1];
        s = dp_logreg_fit(ctx, x, y, N, F, 1.0, w);
        if (s == DP_OK) {
            memcpy(p->spec_w, w, sizeof(float) * (size_t)F);
            p->spec_b = w[F];
            for (int64_t i = 0; i < N; i++) {
                double best = INFINITY;
                for (int c2 = 0; c2 < 2; c2++) {
                    double t = 0;
                    for (int j = 0; j < F; j++) {
                        double z = (x[i * F + j] - p->class_mu[c2][j]) / p->class_sigma[c2][j];
                        t += z * z;
                    }
                    t /= F;
                    best = t < best ? t : best;
                }
                dist[i] = (float)best;
            }
            /* the 99.5th percentile of the CLEAN training crops (the first n_tr
             * rows): the augmented copies (cut-out, strong blur) have a long tail
             * that put the threshold (23 at work 48) far above every real input
             * (median 0.4), so the check never fired */
            qsort(dist, (size_t)n_tr, sizeof(float), cmp_float);
            p->ood_threshold = dist[(int64_t)(0.995 * (double)(n_tr - 1))];
        }
    }
    free(x);
    free(y);
    free(dist);
    return s;
}

/* Fusion (Platt scaling of the stacked logits) on a held-out split: fw gets
 * p_fake = sigmoid(fw0·meso + fw1·spec + fw2). */
static dp_status fit_fusion_w(dp_ctx *ctx, int use_meso, const float *meso, const float *spec, const int *y, int64_t n,
                              float fw[3]) {
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1) * 2), w[3];
    if (!x) return DP_ERR_NOMEM;
    dp_status s;
    /* The L2 penalty (1.0 on the summed log-loss) keeps the weights finite and
     * moderate when the validation split is (nearly) separable; a detector
     * whose weight comes out negative is dropped and the other refitted alone
     * (a negative weight fits noise of the split, it does not generalise). */
    const double l2 = 1.0;
    fw[0] = fw[1] = fw[2] = 0;
    s = DP_OK;
    int use_m = use_meso, use_s = 1;
    if (use_m) {
        for (int64_t i = 0; i < n; i++) x[2 * i] = meso[i], x[2 * i + 1] = spec[i];
        s = dp_logreg_fit(ctx, x, y, n, 2, l2, w);
        if (s == DP_OK && w[0] > 0 && w[1] > 0) {
            fw[0] = w[0], fw[1] = w[1], fw[2] = w[2];
            free(x);
            return DP_OK;
        }
        if (s == DP_OK && w[1] <= 0) use_s = 0;
        else if (s == DP_OK) use_m = 0;
    }
    if (s == DP_OK) {
        const float *src = use_m && !use_s ? meso : spec;
        for (int64_t i = 0; i < n; i++) x[i] = src[i];
        s = dp_logreg_fit(ctx, x, y, n, 1, l2, w);
        if (s == DP_OK) fw[use_m && !use_s ? 0 : 1] = w[0], fw[2] = w[1];
    }
    free(x);
    return s;
}

static dp_status fit_fusion(dp_ctx *ctx, dp_detector *det, const float *meso, const float *spec, const int *y, int64_t n) {
    dp_detector_params *p = dp_detector_get_params(det);
    return fit_fusion_w(ctx, p->use_meso, meso, spec, y, n, p->fuse_w);
}

/* Fused metrics of the samples idx[0..n). */
/* Share of real faces at or above each threshold (would be called fake) and
 * of fake faces at or above it (caught): how the verdict threshold trades
 * false alarms on these faces against misses. */
static void threshold_table(const float *p, const int *y, int64_t n) {
    static const float T[] = {0.5f, 0.7f, 0.8f, 0.9f, 0.95f, 0.98f, 0.99f, 0.995f, 0.999f};
    printf("  threshold:      ");
    for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) printf(" %7.3f", (double)T[k]);
    for (int c = 0; c < 2; c++) {
        printf(c ? "\n  fake caught:    " : "\n  real -> fake:   ");
        int64_t tot = 0;
        for (int64_t i = 0; i < n; i++) tot += y[i] == c;
        for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) {
            int64_t a = 0;
            for (int64_t i = 0; i < n; i++) a += y[i] == c && p[i] >= T[k];
            printf(" %6.2f%%", tot ? 100.0 * (double)a / (double)tot : 0.0);
        }
    }
    printf("\n");
}

/* scores (may be NULL): one CSV row per sample with the raw scores, for
 * `doppel detect calibrate`, for the samples of split want_split (2 test,
 * 3 held-out source). */
static dp_status eval_split(dp_detector *det, const dataset *d, const int64_t *idx, int64_t n, const char *label, int show,
                            metrics *m, int table, FILE *scores, int want_split) {
    float *me = malloc(sizeof(float) * (size_t)(n ? n : 1) * 6), *sp = me + n, *od = sp + n, *p = od + n, *os_ = p + n,
          *of = os_ + n;
    int *y = malloc(sizeof(int) * (size_t)(n ? n : 1) * 3), *v = y + n, *nf = v + n;
    if (!me || !y) {
        free(me);
        free(y);
        return DP_ERR_NOMEM;
    }
    dp_status s = score_samples(det, d, idx, n, me, sp, od, os_, of, label, show);
    if (s == DP_OK) {
        for (int64_t i = 0; i < n; i++) {
            p[i] = dp_detector_fuse(det, me[i], sp[i]);
            y[i] = d->s[idx[i]].label;
            nf[i] = d->s[idx[i]].no_face;
            v[i] = nf[i] ? DP_VERDICT_UNCERTAIN : (int)dp_detector_verdict(det, p[i], od[i]);
        }
        compute_metrics(p, y, v, nf, n, m);
        if (table) {
            threshold_table(p, y, n);
            const dp_detector_params *pp = dp_detector_get_params(det);
            for (int c = 0; c < 2; c++) {
                int64_t tot = 0, ov_s = 0, ov_f = 0, fk = 0, un = 0;
                for (int64_t i = 0; i < n; i++) {
                    if (y[i] != c) continue;
                    tot++;
                    ov_s += pp->ood_threshold > 0 && os_[i] > pp->ood_threshold;
                    ov_f += pp->feat_threshold > 0 && of[i] > pp->feat_threshold;
                    fk += v[i] == DP_VERDICT_FAKE;
                    un += v[i] == DP_VERDICT_UNCERTAIN;
                }
                if (tot)
                    printf("  %s: %lld faces: verdict fake %.2f%%, uncertain %.2f%%; out of distribution by spectrum "
                           "%.2f%%, by Meso-4 features %.2f%%\n",
                           c ? "fake" : "real", (long long)tot, 100.0 * (double)fk / (double)tot,
                           100.0 * (double)un / (double)tot, 100.0 * (double)ov_s / (double)tot,
                           100.0 * (double)ov_f / (double)tot);
            }
        }
        for (int64_t i = 0; scores && i < n; i++) {
            const sample *sm = &d->s[idx[i]];
            if (sm->split != want_split) continue;
            const char *split = want_split == 3 ? "heldout" : "test";
            fprintf(scores, "%s,%d,%.6g,%.6g,%.6g,%d,%d,%.7g,%s,%.6g,%.6g,%s\n", split, sm->label, (double)me[i],
                    (double)sp[i], (double)od[i],
                    dp_detector_get_params(det)->ood_threshold > 0 && od[i] > dp_detector_get_params(det)->ood_threshold,
                    sm->no_face, (double)p[i], d->src[sm->source].dir, (double)os_[i], (double)of[i], sm->path);
        }
    }
    free(me);
    free(y);
    return s;
}

/* ------------------------------------------------------------ train */
static int cmd_train(int argc, char **argv) {
    opts o = {.cmd = "train", .arch = "meso4", .epochs = 10, .batch = 32, .lr = 1e-3, .seed = 1, .patience = 3};
    int rc = parse_opts(argc, argv, &o, NULL);
    if (rc) return rc;
    if (!o.n_real || !o.n_fake) return usage_error(&o, "give at least one --real and one --fake folder");
    if (!o.out) return usage_error(&o, "--out is required");
    if (o.model || o.report || o.explain || o.json || o.csv) return usage_error(&o, "--model, --report, --explain, --json and --csv are not for 'train'");
    int meso = strcmp(o.arch, "spectral") != 0, inception = !strcmp(o.arch, "mesoinception4");
    dp_detector_params par;
    memset(&par, 0, sizeof par);
    dp_crop_policy_default(&par.crop);
    if (o.size) par.crop.size = o.size;
    if (o.work) par.crop.work = o.work & ~1;
    par.crop.norm = o.norm;
    par.use_meso = meso;
    par.inception = inception;
    par.n_spec = dp_spectral_count(par.crop.work);
    par.fuse_w[0] = 1;
    par.t_real = DP_DETECT_T_REAL;
    par.t_fake = DP_DETECT_T_FAKE;
    if (o.t_fake > 0) par.t_real = o.t_real, par.t_fake = o.t_fake;
    for (int i = 0; i < DP_SPECTRAL_MAX; i++) par.spec_sigma[i] = par.class_sigma[0][i] = par.class_sigma[1][i] = 1;
    if (meso && par.crop.size % 32) return usage_error(&o, "--size must be a multiple of 32 for Meso-4 and MesoInception-4");

    dp_ctx *ctx = NULL;
    dp_face_detector *fd = NULL;
    dp_detector *det = NULL;
    dp_graph *g = NULL;
    dp_optim *opt = NULL;
    dataset d = {0};
    int64_t *idx = NULL;
    rc = 1;
    double t_start = cli_now();
    dp_status s = dp_ctx_new(&(dp_ctx_opts){.threads = o.threads, .seed = o.seed}, &ctx);
    if (s != DP_OK) return 1;
    if ((s = dp_face_detector_default(ctx, &fd)) != DP_OK) {
        fprintf(stderr, "doppel detect train: %s\n", dp_ctx_error(ctx));
        goto done;
    }
    char crop_s[160];
    dp_crop_policy_format(&par.crop, crop_s, sizeof crop_s);
    printf("crop policy: %s\n", crop_s);
    if (!load_dataset(ctx, fd, &o, &par.crop, &d)) goto done;

    /* ---- split by source image, per folder: 80 % train, 10 % validation, 10 % test */
    idx = malloc(sizeof(int64_t) * (size_t)d.n * 2 + 16);
    if (!idx) goto done;
    dp_rng rng;
    dp_rng_stream(&rng, o.seed, 1);
    for (int k = 0; k < d.n_src; k++) {
        int64_t m = 0;
        for (int64_t i = 0; i < d.n; i++)
            if (d.s[i].source == k) idx[m++] = i;
        dp_shuffle_i64(&rng, idx, m);
        int64_t nv = m / 10, nt = m / 10;
        for (int64_t j = 0; j < m; j++)
            d.s[idx[j]].split = d.src[k].held_out ? 3 : j < nv ? 1 : j < nv + nt ? 2 : 0;
    }
    int64_t *sp_idx[4], sp_n[4] = {0};
    for (int64_t i = 0; i < d.n; i++) sp_n[d.s[i].split]++;
    sp_idx[0] = idx;
    for (int k = 1; k < 4; k++) sp_idx[k] = sp_idx[k - 1] + sp_n[k - 1];
    {
        int64_t fill[4] = {0};
        for (int64_t i = 0; i < d.n; i++) sp_idx[d.s[i].split][fill[d.s[i].split]++] = i;
    }
    /* held-out report: the held-out sources plus the test split's other class */
    int64_t *ho_idx = idx + d.n, n_ho = 0;
    int ho_has[2] = {0, 0};
    for (int64_t i = 0; i < sp_n[3]; i++) ho_has[d.s[sp_idx[3][i]].label] = 1;
    if (sp_n[3]) {
        for (int64_t i = 0; i < sp_n[3]; i++) ho_idx[n_ho++] = sp_idx[3][i];
        for (int64_t i = 0; i < sp_n[2]; i++)
            if (!ho_has[d.s[sp_idx[2][i]].label]) ho_idx[n_ho++] = sp_idx[2][i];
    }
    printf("split by image: %lld train, %lld validation, %lld test, %lld held out\n", (long long)sp_n[0],
           (long long)sp_n[1], (long long)sp_n[2], (long long)sp_n[3]);
    int64_t cls_n[2] = {0, 0};
    for (int64_t i = 0; i < sp_n[0]; i++) cls_n[d.s[sp_idx[0][i]].label]++;
    if (!cls_n[0] || !cls_n[1] || sp_n[1] < 4) {
        fprintf(stderr, "doppel detect train: the training split needs both classes and a validation split\n");
        goto done;
    }

    if ((s = dp_detector_new(ctx, &par, 32, o.seed, &det)) != DP_OK) {
        fprintf(stderr, "doppel detect train: building the detector: %s\n", dp_ctx_error(ctx));
        goto done;
    }
    double t0 = cli_now();
    dp_augment_opts ao_train;
    train_augment_opts(&o, &ao_train);
    if ((s = fit_spectral(ctx, det, &d, sp_idx[0], sp_n[0], o.seed, &ao_train)) != DP_OK) {
        fprintf(stderr, "doppel detect train: fitting the spectral detector: %s\n", dp_ctx_error(ctx));
        goto done;
    }
    {
        int64_t nv = sp_n[1];
        float *sp = malloc(sizeof(float) * (size_t)nv);
        int *yy = malloc(sizeof(int) * (size_t)nv);
        if (sp && yy && score_samples(det, &d, sp_idx[1], nv, NULL, sp, NULL, NULL, NULL, "  spectral val", 0) == DP_OK) {
            for (int64_t i = 0; i < nv; i++) yy[i] = d.s[sp_idx[1][i]].label;
            printf("spectral detector: %d features, fitted in %.1f s; validation AUC %.4f; OOD threshold %.3f\n",
                   dp_detector_get_params(det)->n_spec, cli_now() - t0, dp_metric_auc(sp, yy, nv),
                   (double)dp_detector_get_params(det)->ood_threshold);
        }
        free(sp);
        free(yy);
    }

    char train_path[4200];
    snprintf(train_path, sizeof train_path, "%s.train", o.out);
    char cmdline[2048] = "doppel detect train";
    for (int i = 0; i < argc; i++) { /* argv[0] is the first option: "train" was taken off */
        size_t l = strlen(cmdline);
        snprintf(cmdline + l, sizeof cmdline - l, " %s", argv[i]);
    }
    char best_s[32] = "", epoch_s[16] = "0", data_s[1024] = "";
    for (int k = 0; k < d.n_src; k++) {
        size_t l = strlen(data_s);
        snprintf(data_s + l, sizeof data_s - l, "%s%s:%s%s", k ? ";" : "", d.src[k].label ? "fake" : "real", d.src[k].dir,
                 d.src[k].held_out ? "(held out)" : "");
    }

    int best_epoch = 0;
    double best_auc = -1;
    if (meso) {
        dp_paramset *ps = dp_detector_paramset(det);
        int S = par.crop.size, B = o.batch;
        if ((s = dp_graph_new(ctx, &g)) != DP_OK) goto done;
        dp_node *x = dp_input(g, "x", 4, (int64_t[]){B, 3, S, S}), *t = dp_input(g, "t", 2, (int64_t[]){B, 1});
        dp_node *y = inception ? dp_model_mesoinception4(g, ps, x) : dp_model_meso4(g, ps, x), *loss = dp_bce(g, y, t);
        dp_graph_mark_output(g, loss);
        if ((s = dp_graph_compile(g)) != DP_OK || (s = dp_graph_set_training(g, 1)) != DP_OK ||
            (s = dp_graph_seed(g, o.seed)) != DP_OK) {
            fprintf(stderr, "doppel detect train: building the training graph: %s\n", dp_ctx_error(ctx));
            goto done;
        }
        int64_t steps = sp_n[0] / B;
        if (o.steps > 0 && o.steps < steps) steps = o.steps;
        dp_optim_opts oo = {.kind = DP_OPTIM_ADAM, .lr = (float)o.lr};
        oo.schedule = (dp_lr_schedule){.kind = DP_LR_COSINE, .total_steps = (int)(steps * o.epochs), .min_lr = (float)o.lr * 0.05f};
        if ((s = dp_optim_new(ps, &oo, &opt)) != DP_OK) goto done;
        int first = 1;
        if (o.resume) {
            char buf[64];
            if ((s = dp_checkpoint_load(train_path, ps, opt)) != DP_OK) {
                fprintf(stderr, "doppel detect train: --resume: %s\n", dp_ctx_error(ctx));
                goto done;
            }
            /* as this command writes them; a value that is not is an error naming the file and the key */
            static const char *const rk[3] = {"doppel.epoch", "doppel.best_auc", "doppel.best_epoch"};
            for (int k = 0; k < 3; k++) {
                if (dp_checkpoint_meta(ctx, train_path, rk[k], buf, sizeof buf) != DP_OK) continue;
                int ok = k == 0 ? dp_parse_int(buf, 0, 10000, &first)
                         : k == 1 ? dp_parse_f64(buf, -1, 1, &best_auc)
                                  : dp_parse_int(buf, 0, 10000, &best_epoch);
                if (k == 0 && ok) first++; /* the epoch after the one saved */
                if (!ok) {
                    fprintf(stderr, "doppel detect train: --resume: %s: metadata '%s' is '%s', not a%s\n", train_path, rk[k], buf,
                            k == 1 ? "n AUC" : "n epoch number");
                    goto done;
                }
            }
            printf("resumed from %s after epoch %d (best validation AUC %.4f at epoch %d)\n", train_path, first - 1,
                   best_auc, best_epoch);
        }
        printf("%s: %lld parameters, input %dx%d, batch %d (half real, half fake), %lld steps/epoch, Adam lr %g "
               "cosine, %d threads\n",
               inception ? "MesoInception-4" : "Meso-4", (long long)dp_paramset_numel(ps, 1), S, S, B, (long long)steps, o.lr, dp_ctx_threads(ctx));
        fflush(stdout);
        /* per-class index lists for balanced batches */
        int64_t *cl[2];
        cl[0] = malloc(sizeof(int64_t) * (size_t)cls_n[0]);
        cl[1] = malloc(sizeof(int64_t) * (size_t)cls_n[1]);
        int64_t cn[2] = {0, 0}, cpos[2] = {0, 0};
        for (int64_t i = 0; i < sp_n[0]; i++) {
            int64_t j = sp_idx[0][i];
            cl[d.s[j].label][cn[d.s[j].label]++] = j;
        }
        float *xb = dp_tensor_f32(dp_node_value(x)), *tb = dp_tensor_f32(dp_node_value(t));
        const float *lv = dp_tensor_f32(dp_node_value(loss));
        const dp_augment_opts ao = ao_train;
        int W = par.crop.work;
        size_t per = (size_t)3 * S * S;
        float *vm = malloc(sizeof(float) * (size_t)sp_n[1]);
        int *vy = malloc(sizeof(int) * (size_t)sp_n[1]);
        for (int64_t i = 0; i < sp_n[1]; i++) vy[i] = d.s[sp_idx[1][i]].label;
        int bad = 0;
        for (int ep = first; ep <= o.epochs && !bad; ep++) {
            dp_rng er;
            dp_rng_stream(&er, o.seed, 100 + (uint64_t)ep);
            dp_shuffle_i64(&er, cl[0], cn[0]);
            dp_shuffle_i64(&er, cl[1], cn[1]);
            cpos[0] = cpos[1] = 0;
            dp_optim_set_steps(opt, (int64_t)(ep - 1) * steps);
            char label[64];
            snprintf(label, sizeof label, "epoch %d/%d", ep, o.epochs);
            cli_progress pb;
            cli_progress_start(&pb, label, steps, "img", !o.quiet);
            double te = cli_now(), lsum = 0;
            for (int64_t st = 0; st < steps && !bad; st++) {
                for (int i = 0; i < B; i++) {
                    int c = i & 1;
                    /* a self-blended real face in a fake slot (--self-blend) */
                    int sbi = c == 1 && o.self_blend > 0 && dp_rng_uniform(&er) < o.self_blend;
                    const sample *sm;
                    if (sbi) sm = &d.s[cl[0][dp_rng_below(&er, (uint32_t)cn[0])]];
                    else {
                        if (cpos[c] >= cn[c]) cpos[c] = 0;
                        sm = &d.s[cl[c][cpos[c]++]];
                    }
                    dp_image cimg, in;
                    if ((s = dp_image_alloc(ctx, 3, W, W, &cimg)) != DP_OK) break;
                    u8_to_crop(sm->crop, &cimg);
                    s = sbi ? dp_self_blend_ex(ctx, &cimg, &er, o.sbi_no_blur) : DP_OK;
                    if (s == DP_OK) s = dp_augment(ctx, &cimg, &ao, &er);
                    if (s == DP_OK) s = dp_crop_to_input(ctx, &cimg, &par.crop, &in);
                    dp_image_free(ctx, &cimg);
                    if (s != DP_OK) break;
                    memcpy(xb + per * i, in.data, sizeof(float) * per);
                    dp_image_free(ctx, &in);
                    tb[i] = (float)c;
                }
                if (s == DP_OK && (s = dp_graph_run(g)) == DP_OK && (s = dp_optim_zero_grad(opt)) == DP_OK &&
                    (s = dp_graph_backward(g, loss, 0, NULL)) == DP_OK)
                    s = dp_optim_step(opt);
                if (s != DP_OK) {
                    fprintf(stderr, "\ndoppel detect train: training step failed: %s\n",
                            s == DP_ERR_NUMERIC ? "the loss diverged; try a lower --lr" : dp_ctx_error(ctx));
                    bad = 1;
                    break;
                }
                lsum += lv[0];
                cli_progress_update(&pb, st + 1, (st + 1) * B, "loss %.4f", lsum / (double)(st + 1));
            }
            if (bad) break;
            cli_progress_finish(&pb, steps * B, "loss %.4f", lsum / (double)steps);
            double secs = cli_now() - te;
            if ((s = score_samples(det, &d, sp_idx[1], sp_n[1], vm, NULL, NULL, NULL, NULL, "  validation", !o.quiet)) != DP_OK) {
                fprintf(stderr, "doppel detect train: validation: %s\n", dp_ctx_error(ctx));
                bad = 1;
                break;
            }
            double auc = dp_metric_auc(vm, vy, sp_n[1]);
            printf("epoch %d/%d: train loss %.4f, validation AUC (Meso-4) %.4f, %.0f s (%.1f img/s)%s\n", ep, o.epochs,
                   lsum / (double)steps, auc, secs, (double)(steps * B) / secs, auc > best_auc ? " — best" : "");
            fflush(stdout);
            if (auc > best_auc) {
                best_auc = auc, best_epoch = ep;
                snprintf(best_s, sizeof best_s, "%.6f", best_auc);
                snprintf(epoch_s, sizeof epoch_s, "%d", ep);
                const char *ex[] = {"doppel.epochs", epoch_s, NULL};
                if ((s = dp_detector_save(det, o.out, ex)) != DP_OK) {
                    fprintf(stderr, "doppel detect train: saving %s: %s\n", o.out, dp_ctx_error(ctx));
                    bad = 1;
                    break;
                }
            }
            char eps[16], bes[16], bas[32];
            snprintf(eps, sizeof eps, "%d", ep);
            snprintf(bes, sizeof bes, "%d", best_epoch);
            snprintf(bas, sizeof bas, "%.6f", best_auc);
            const char *ex2[] = {"doppel.task", "detect-train", "doppel.epoch", eps, "doppel.best_epoch", bes,
                                 "doppel.best_auc", bas, NULL};
            if ((s = dp_checkpoint_save(train_path, dp_detector_paramset(det), opt, "detect-meso4", ex2)) != DP_OK) {
                fprintf(stderr, "doppel detect train: saving %s: %s\n", train_path, dp_ctx_error(ctx));
                bad = 1;
                break;
            }
            if (ep - best_epoch >= o.patience) {
                printf("early stop: no better validation AUC for %d epochs\n", o.patience);
                break;
            }
        }
        free(cl[0]);
        free(cl[1]);
        free(vm);
        free(vy);
        if (bad) goto done;
        /* back to the best epoch's weights */
        if (best_epoch > 0 && (s = dp_checkpoint_load(o.out, dp_detector_paramset(det), NULL)) != DP_OK) {
            fprintf(stderr, "doppel detect train: reloading the best epoch: %s\n", dp_ctx_error(ctx));
            goto done;
        }
        /* dp_checkpoint_load overwrote the spectral tensors with what was saved: the params struct is unchanged */

        /* ---- what Meso-4 sees: feature statistics of the clean training crops, for the OOD check */
        int64_t nt = sp_n[0];
        float *fe = malloc(sizeof(float) * (size_t)(nt ? nt : 1) * DP_DETECT_NFEAT);
        int *fy = malloc(sizeof(int) * (size_t)(nt ? nt : 1));
        enum { CH = 32 };
        dp_image cr[CH];
        memset(cr, 0, sizeof cr);
        s = fe && fy ? DP_OK : DP_ERR_NOMEM;
        for (int i = 0; i < CH && s == DP_OK; i++) s = dp_image_alloc(ctx, 3, W, W, &cr[i]);
        for (int64_t off = 0; off < nt && s == DP_OK; off += CH) {
            int m = nt - off < CH ? (int)(nt - off) : CH;
            for (int i = 0; i < m; i++) {
                u8_to_crop(d.s[sp_idx[0][off + i]].crop, &cr[i]);
                fy[off + i] = d.s[sp_idx[0][off + i]].label;
            }
            dp_detector_scores sc = {.features = fe + off * DP_DETECT_NFEAT};
            s = dp_detector_score(det, cr, m, &sc);
        }
        for (int i = 0; i < CH; i++) dp_image_free(ctx, &cr[i]);
        double pct = o.ood_pct > 0 ? o.ood_pct : 99.5;
        if (s == DP_OK) s = dp_detector_fit_features(det, fe, fy, nt, pct);
        if (s == DP_OK) {
            const dp_detector_params *pp = dp_detector_get_params(det);
            printf("Meso-4 features: %d values, Mahalanobis to the nearer class on %lld clean training crops; "
                   "OOD threshold %.3f (percentile %g)\n",
                   DP_DETECT_NFEAT, (long long)nt, (double)pp->feat_threshold, pct);
        }
        free(fe);
        free(fy);
        if (s != DP_OK) {
            fprintf(stderr, "doppel detect train: feature statistics: %s\n", dp_ctx_error(ctx));
            goto done;
        }
    }

    /* ---- fusion + calibration on the validation split */
    {
        int64_t nv = sp_n[1];
        float *me = malloc(sizeof(float) * (size_t)nv * 2), *sp = me + nv;
        int *yy = malloc(sizeof(int) * (size_t)nv);
        s = me && yy ? score_samples(det, &d, sp_idx[1], nv, me, sp, NULL, NULL, NULL, "  calibration", !o.quiet) : DP_ERR_NOMEM;
        for (int64_t i = 0; s == DP_OK && i < nv; i++) yy[i] = d.s[sp_idx[1][i]].label;
        if (s == DP_OK) s = fit_fusion(ctx, det, me, sp, yy, nv);
        free(me);
        free(yy);
        if (s != DP_OK) {
            fprintf(stderr, "doppel detect train: calibration: %s\n", dp_ctx_error(ctx));
            goto done;
        }
        const float *w = dp_detector_get_params(det)->fuse_w;
        printf("fusion (Platt scaling on the validation split): p_fake = sigmoid(%.4f·meso4 + %.4f·spectral + %.4f)\n",
               (double)w[0], (double)w[1], (double)w[2]);
    }
    metrics mt = {0}, mh = {0};
    FILE *scores = NULL;
    if (o.scores && !(scores = fopen(o.scores, "w"))) {
        fprintf(stderr, "doppel detect train: cannot write %s: %s\n", o.scores, strerror(errno));
        goto done;
    }
    if (scores)
        fprintf(scores, "split,label,meso_logit,spectral_logit,ood,ood_over,no_face,p_fake,source,ood_spectral,"
                        "ood_features,path\n");
    s = eval_split(det, &d, sp_idx[2], sp_n[2], "  test", !o.quiet, &mt, 0, scores, 2);
    if (s == DP_OK) print_metrics("test split (by image)", &mt);
    if (s == DP_OK && n_ho) s = eval_split(det, &d, ho_idx, n_ho, "  held out", !o.quiet, &mh, 1, scores, 3);
    if (scores && fclose(scores) != 0) {
        fprintf(stderr, "doppel detect train: writing %s: %s\n", o.scores, strerror(errno));
        goto done;
    }
    if (s != DP_OK) goto done;
    if (n_ho) print_metrics("held-out source(s) + test split of the other class", &mh);
    {
        char tm[64], ho[256], ts[32];
        snprintf(tm, sizeof tm, "%.4f", mt.auc);
        if (n_ho) snprintf(ho, sizeof ho, "%.4f", mh.auc);
        else snprintf(ho, sizeof ho, "none");
        snprintf(ts, sizeof ts, "%.0f", cli_now() - t_start);
        if (!best_s[0]) snprintf(best_s, sizeof best_s, "n/a");
        snprintf(epoch_s, sizeof epoch_s, "%d", best_epoch);
        const char *ex[] = {"doppel.command", cmdline, "doppel.data", data_s, "doppel.epochs", epoch_s,
                            "doppel.val_auc_meso4", best_s, "doppel.test_auc", tm, "doppel.heldout_auc", ho,
                            "doppel.train_seconds", ts, NULL};
        if ((s = dp_detector_save(det, o.out, ex)) != DP_OK) {
            fprintf(stderr, "doppel detect train: saving %s: %s\n", o.out, dp_ctx_error(ctx));
            goto done;
        }
    }
    printf("saved %s (%.0f s in all)\n", o.out, cli_now() - t_start);
    rc = 0;
done:
    dp_optim_free(opt);
    dp_graph_free(g);
    dp_detector_free(det);
    dp_face_detector_free(fd);
    free(idx);
    ds_free(&d);
    dp_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------ calibrate
 * Cross-source thresholds: the verdict thresholds chosen on the held-out
 * scores of leave-one-source-out runs (`detect train --val-source DIR
 * --scores CSV`), so that they reflect faces from sources the CNN never saw
 * rather than its own training sources. Each CSV is one fold, scored by its
 * own model's fused p_fake; the fusion of the model itself is kept (refitting
 * it on pooled folds was measured worse: a fold whose generator is unseen
 * scores its fakes low and flattens the slope for everything). The estimate
 * printed for a fold uses thresholds chosen on the other folds only. */
typedef struct cal_row {
    int file, label, heldout, ood_over, no_face, group;
    float p; /* the fold model's fused p_fake */
} cal_row;

typedef struct cal_set {
    cal_row *r;
    int64_t n, cap;
    char group_name[64][160];
    int group_label[64], group_file[64], n_groups;
} cal_set;

static int cal_read(const char *path, int file, cal_set *cs) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "doppel detect calibrate: cannot read %s: %s\n", path, strerror(errno));
        return 0;
    }
    char line_[8192];
    int64_t ln = 0, bad = 0, first_bad = 0;
    int extra = 0; /* columns between source and path (ood_spectral, ood_features in newer files) */
    while (fgets(line_, sizeof line_, f)) {
        if (ln++ == 0) { /* header */
            extra = strstr(line_, ",ood_features,") ? 2 : 0;
            continue;
        }
        char *fld[10], *q = line_;
        int k = 0;
        for (; k < 9 && q; k++) {
            fld[k] = q;
            q = strchr(q, ',');
            if (q) *q++ = 0;
        }
        if (k < 9 || !q) {
            if (!bad++) first_bad = ln;
            continue;
        }
        for (int e = 0; e < extra && q; e++) {
            q = strchr(q, ',');
            if (q) q++;
        }
        if (!q) {
            if (!bad++) first_bad = ln;
            continue;
        }
        fld[9] = q;
        q[strcspn(q, "\r\n")] = 0;
        if (cs->n == cs->cap) {
            int64_t c = cs->cap ? cs->cap * 2 : 4096;
            cal_row *nr = realloc(cs->r, sizeof *nr * (size_t)c);
            if (!nr) break;
            cs->r = nr, cs->cap = c;
        }
        cal_row *r = &cs->r[cs->n];
        r->file = file;
        r->heldout = !strcmp(fld[0], "heldout");
        /* label, ood_over, no_face 0 or 1 and p_fake in [0,1], as detect train --scores writes them */
        if (!dp_parse_int(fld[1], 0, 1, &r->label) || !dp_parse_int(fld[5], 0, 1, &r->ood_over) ||
            !dp_parse_int(fld[6], 0, 1, &r->no_face) || !dp_parse_f32(fld[7], 0, 1, &r->p)) {
            if (!bad++) first_bad = ln;
            continue;
        }
        int g;
        for (g = 0; g < cs->n_groups; g++)
            if (cs->group_file[g] == file && !strcmp(cs->group_name[g], fld[8])) break;
        if (g == cs->n_groups) {
            if (g == 64) {
                if (!bad++) first_bad = ln;
                continue;
            }
            snprintf(cs->group_name[g], sizeof cs->group_name[g], "%s", fld[8]);
            cs->group_file[g] = file;
            cs->group_label[g] = r->label;
            cs->n_groups++;
        }
        r->group = g;
        cs->n++;
    }
    fclose(f);
    if (bad)
        fprintf(stderr, "doppel detect calibrate: %s: %lld malformed rows skipped (the first: line %lld)\n", path, (long long)bad,
                (long long)first_bad);
    return 1;
}

static const float CAL_T[] = {0.5f,  0.55f, 0.6f,  0.65f, 0.7f,   0.75f,   0.8f,   0.85f,   0.9f,   0.92f,  0.94f,
                              0.95f, 0.96f, 0.97f, 0.98f, 0.99f, 0.995f, 0.998f, 0.999f, 0.9995f, 0.9998f, 0.9999f};

/* The smallest t_fake of the grid for which no real source (of the files
 * other than skip_file; -1: all) has more than max_fpr of its faces judged
 * fake (p >= t, a face found, not out of distribution); t_real stays 0.3
 * (or t_fake if lower). */
static void cal_fit(const cal_set *cs, int skip_file, double max_fpr, float *t_real, float *t_fake) {
    int64_t tot[64] = {0};
    for (int64_t i = 0; i < cs->n; i++)
        if (cs->r[i].file != skip_file) tot[cs->r[i].group]++;
    *t_fake = CAL_T[sizeof CAL_T / sizeof CAL_T[0] - 1];
    for (size_t k = 0; k < sizeof CAL_T / sizeof CAL_T[0]; k++) {
        int64_t fp[64] = {0};
        double worst = 0;
        for (int64_t i = 0; i < cs->n; i++) {
            const cal_row *r = &cs->r[i];
            if (r->file == skip_file || r->label) continue;
            fp[r->group] += !r->no_face && !r->ood_over && r->p >= CAL_T[k];
        }
        for (int g = 0; g < cs->n_groups; g++)
            if (!cs->group_label[g] && tot[g]) worst = fmax(worst, (double)fp[g] / (double)tot[g]);
        if (worst <= max_fpr) {
            *t_fake = CAL_T[k];
            break;
        }
    }
    *t_real = *t_fake < DP_DETECT_T_REAL ? *t_fake : DP_DETECT_T_REAL;
}

/* Metrics of fold f (its held-out rows + its test rows of the other class)
 * under the given calibration. */
static void cal_eval(const cal_set *cs, int f, float t_real, float t_fake, metrics *mt) {
    int has[2] = {0, 0};
    for (int64_t i = 0; i < cs->n; i++)
        if (cs->r[i].file == f && cs->r[i].heldout) has[cs->r[i].label] = 1;
    float *p = malloc(sizeof(float) * (size_t)(cs->n + 1));
    int *y = malloc(sizeof(int) * (size_t)(cs->n + 1) * 3), *v = y + cs->n + 1, *nf = v + cs->n + 1;
    int64_t n = 0;
    memset(mt, 0, sizeof *mt);
    if (!p || !y) goto out;
    for (int64_t i = 0; i < cs->n; i++) {
        const cal_row *r = &cs->r[i];
        if (r->file != f || !(r->heldout || !has[r->label])) continue;
        p[n] = r->p;
        y[n] = r->label;
        nf[n] = r->no_face;
        v[n] = r->no_face || r->ood_over ? DP_VERDICT_UNCERTAIN
               : p[n] < t_real           ? DP_VERDICT_REAL
               : p[n] >= t_fake          ? DP_VERDICT_FAKE
                                         : DP_VERDICT_UNCERTAIN;
        n++;
    }
    compute_metrics(p, y, v, nf, n, mt);
out:
    free(p);
    free(y);
}

static dp_status open_model(dp_ctx *ctx, const opts *o, dp_detector **det, char *path, size_t n);

static int cmd_calibrate(int argc, char **argv) {
    opts o = {.cmd = "calibrate", .max_fpr = 0.05};
    int rc = parse_opts(argc, argv, &o, NULL);
    if (rc) return rc;
    if (!o.n_scores) return usage_error(&o, "give at least one --scores CSV (from detect train --val-source ... --scores)");
    if (!o.out) return usage_error(&o, "--out is required");
    cal_set cs = {0};
    dp_ctx *ctx = NULL;
    dp_detector *det = NULL;
    rc = 1;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx) != DP_OK) return 1;
    for (int k = 0; k < o.n_scores; k++)
        if (!cal_read(o.score_files[k], k, &cs)) goto done;
    printf("calibration rows: %lld from %d file(s); at most %.1f%% of any real source judged fake\n", (long long)cs.n,
           o.n_scores, 100 * o.max_fpr);
    float tr, tf;
    if (o.n_scores > 1) {
        printf("each fold scored with the thresholds chosen on the other folds only:\n");
        for (int f = 0; f < o.n_scores; f++) {
            metrics mt;
            cal_fit(&cs, f, o.max_fpr, &tr, &tf);
            cal_eval(&cs, f, tr, tf, &mt);
            char what[400] = "";
            for (int g = 0; g < cs.n_groups; g++) {
                int held = 0;
                for (int64_t i = 0; i < cs.n && !held; i++) held = cs.r[i].group == g && cs.r[i].heldout;
                if (cs.group_file[g] == f && held) {
                    size_t l = strlen(what);
                    snprintf(what + l, sizeof what - l, "%s%s held out", l ? ", " : "", cs.group_name[g]);
                }
            }
            printf("  fold %d (%s): thresholds %.3f/%.3f\n  ", f + 1, what, (double)tr, (double)tf);
            print_metrics("  held-out source + test split of the other class", &mt);
        }
    }
    cal_fit(&cs, -1, o.max_fpr, &tr, &tf);
    printf("thresholds from all folds: real below %.4f, fake from %.4f\n", (double)tr, (double)tf);
    char mpath[4096];
    if (open_model(ctx, &o, &det, mpath, sizeof mpath) != DP_OK) {
        fprintf(stderr, "doppel detect calibrate: %s\n", dp_ctx_error(ctx));
        goto done;
    }
    dp_detector_params *p = dp_detector_get_params(det);
    p->t_real = tr, p->t_fake = tf;
    {
        static const char *const keep[] = {"doppel.command", "doppel.data", "doppel.epochs", "doppel.val_auc_meso4",
                                           "doppel.test_auc", "doppel.heldout_auc", "doppel.train_seconds"};
        enum { NK = sizeof keep / sizeof keep[0] };
        char vals[NK][2048], cal[2048], cmdline[2048] = "doppel detect calibrate";
        const char *ex[2 * NK + 5];
        int k = 0;
        for (int i = 0; i < NK; i++)
            if (dp_checkpoint_meta(ctx, mpath, keep[i], vals[i], sizeof vals[i]) == DP_OK) ex[k++] = keep[i], ex[k++] = vals[i];
        for (int i = 0; i < argc; i++) {
            size_t l = strlen(cmdline);
            snprintf(cmdline + l, sizeof cmdline - l, " %s", argv[i]);
        }
        snprintf(cal, sizeof cal, "thresholds chosen on the held-out scores of %d leave-one-source-out run(s), max FPR %g",
                 o.n_scores, o.max_fpr);
        ex[k++] = "doppel.calibration";
        ex[k++] = cal;
        ex[k++] = "doppel.calibrate_command";
        ex[k++] = cmdline;
        ex[k] = NULL;
        if (dp_detector_save(det, o.out, ex) != DP_OK) {
            fprintf(stderr, "doppel detect calibrate: saving %s: %s\n", o.out, dp_ctx_error(ctx));
            goto done;
        }
    }
    printf("saved %s\n", o.out);
    rc = 0;
done:
    free(cs.r);
    dp_detector_free(det);
    dp_ctx_free(ctx);
    return rc;
}

static int cmd_eval(int argc, char **argv);
static int cmd_use(int argc, char **argv);

int cmd_detect(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(argv[1], "calibrate")) return cmd_calibrate(argc - 2, argv + 2);
    return cmd_use(argc - 1, argv + 1);
}

/* ------------------------------------------------------------ shared by eval and use */
static dp_status open_model(dp_ctx *ctx, const opts *o, dp_detector **det, char *path, size_t n) {
    if (o->model) snprintf(path, n, "%s", o->model);
    else {
        dp_status s = dp_detector_find_default(ctx, DP_SOURCE_DIR, path, n);
        if (s != DP_OK) return s;
    }
    dp_status s = dp_detector_load(ctx, path, 16, det);
    if (s == DP_OK && o->t_fake > 0) { /* --thresholds: try other verdict thresholds without retraining */
        dp_detector_get_params(*det)->t_real = o->t_real;
        dp_detector_get_params(*det)->t_fake = o->t_fake;
    }
    return s;
}

/* Drawing (lines, rectangles) comes from the library (detect/draw.h). */
#define line dp_draw_line
#define rect dp_draw_rect

/* A 400×400 plot frame: white, grid every 0.1, axes, diagonal. Plot (u,v) in [0,1]². */
#define PL 400
#define PM 30
static double px(double u) { return PM + u * (PL - 2 * PM); }
static double py(double v) { return PL - PM - v * (PL - 2 * PM); }
static dp_status plot_frame(dp_ctx *ctx, dp_image *im) {
    dp_status s = dp_image_alloc(ctx, 3, PL, PL, im);
    if (s != DP_OK) return s;
    for (size_t i = 0; i < (size_t)3 * PL * PL; i++) im->data[i] = 1;
    for (int k = 0; k <= 10; k++) {
        line(im, px(k / 10.0), py(0), px(k / 10.0), py(1), 0.9f, 0.9f, 0.9f, 1);
        line(im, px(0), py(k / 10.0), px(1), py(k / 10.0), 0.9f, 0.9f, 0.9f, 1);
    }
    line(im, px(0), py(0), px(1), py(1), 0.6f, 0.6f, 0.6f, 1);
    rect(im, (int)px(0), (int)py(1), (int)(px(1) - px(0)), (int)(py(0) - py(1)), 0, 0, 0, 1);
    return DP_OK;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/* Writes the PNG of im as a data: URI into f. */
static int png_data_uri(dp_ctx *ctx, const dp_image *im, FILE *f) {
    char tmp[] = "/tmp/doppel-plot-XXXXXX";
    int fdn = mkstemp(tmp);
    if (fdn < 0) return 0;
    close(fdn);
    char path[64];
    snprintf(path, sizeof path, "%s.png", tmp);
    unlink(tmp);
    if (dp_image_save_png(ctx, path, im) != DP_OK) return 0;
    FILE *in = fopen(path, "rb");
    if (!in) return 0;
    fprintf(f, "data:image/png;base64,");
    unsigned char b[3];
    size_t k;
    while ((k = fread(b, 1, 3, in)) > 0) {
        unsigned v = (unsigned)b[0] << 16 | (k > 1 ? (unsigned)b[1] << 8 : 0) | (k > 2 ? b[2] : 0);
        fputc(B64[v >> 18 & 63], f);
        fputc(B64[v >> 12 & 63], f);
        fputc(k > 1 ? B64[v >> 6 & 63] : '=', f);
        fputc(k > 2 ? B64[v & 63] : '=', f);
    }
    fclose(in);
    unlink(path);
    return 1;
}

/* ------------------------------------------------------------ eval */
typedef struct cond {
    const char *name;
    int kind; /* 0 clean, 1 jpeg, 2 resize, 3 blur */
    double v;
} cond;
static const cond CONDS[] = {{"clean", 0, 0},      {"jpeg_q90", 1, 90},    {"jpeg_q75", 1, 75}, {"jpeg_q50", 1, 50},
                             {"resize_0.5x", 2, 0.5}, {"resize_2x", 2, 2.0}, {"blur_sigma1", 3, 1.0}};
enum { NCOND = sizeof CONDS / sizeof CONDS[0] };

static dp_status degrade(dp_ctx *ctx, dp_image *img, const cond *c) {
    switch (c->kind) {
    case 1: return dp_jpeg_recompress(ctx, img, (int)c->v);
    case 2: return dp_image_rescale(ctx, img, c->v);
    case 3: return dp_gaussian_blur(ctx, img, (float)c->v);
    default: return DP_OK;
    }
}

/* Per-group false-positive rates from DIR/manifest.csv (real folders). */
typedef struct group {
    char key[96];
    int64_t n, fp;
} group;

static void manifest_groups(const char *dir, char **files, const int *verdict, int64_t n, group *g, int *ng, int max) {
    char mp[4200];
    snprintf(mp, sizeof mp, "%s/manifest.csv", dir);
    FILE *f = fopen(mp, "r");
    if (!f) return;
    char line_[1024], cols[16][32];
    int nc = 0;
    if (!fgets(line_, sizeof line_, f)) {
        fclose(f);
        return;
    }
    for (char *t = strtok(line_, ",\r\n"); t && nc < 16; t = strtok(NULL, ",\r\n")) snprintf(cols[nc++], 32, "%s", t);
    size_t dl = strlen(dir);
    while (fgets(line_, sizeof line_, f)) {
        char *v[16];
        int k = 0;
        for (char *t = strtok(line_, ",\r\n"); t && k < 16; t = strtok(NULL, ",\r\n")) v[k++] = t;
        if (k < nc || nc < 2) continue;
        /* find the file among the evaluated ones */
        int64_t hit = -1;
        for (int64_t i = 0; i < n && hit < 0; i++) {
            const char *p = files[i];
            if (!strncmp(p, dir, dl) && p[dl] == '/' && !strcmp(p + dl + 1, v[0])) hit = i;
        }
        if (hit < 0) continue;
        for (int c = 1; c < nc; c++) {
            if (!strcmp(cols[c], "age")) {
                int a;
                const char *bin = !dp_parse_int(v[c], 0, 200, &a) ? "unknown" : a < 20 ? "0-19" : a < 40 ? "20-39" : a < 60 ? "40-59" : "60+";
                char key[96];
                snprintf(key, sizeof key, "age=%s", bin);
                int j;
                for (j = 0; j < *ng && strcmp(g[j].key, key); j++) {}
                if (j == *ng && *ng < max) snprintf(g[(*ng)++].key, sizeof g[0].key, "%s", key);
                if (j < *ng) g[j].n++, g[j].fp += verdict[hit] == DP_VERDICT_FAKE;
                continue;
            }
            char key[96];
            snprintf(key, sizeof key, "%.40s=%.40s", cols[c], v[c]);
            int j;
            for (j = 0; j < *ng && strcmp(g[j].key, key); j++) {}
            if (j == *ng && *ng < max) snprintf(g[(*ng)++].key, sizeof g[0].key, "%s", key);
            if (j < *ng) g[j].n++, g[j].fp += verdict[hit] == DP_VERDICT_FAKE;
        }
    }
    fclose(f);
}

static int cmd_eval(int argc, char **argv) {
    opts o = {.cmd = "eval"};
    int rc = parse_opts(argc, argv, &o, NULL);
    if (rc) return rc;
    if (!o.n_real || !o.n_fake) return usage_error(&o, "give at least one --real and one --fake folder");
    if (o.out || o.explain || o.resume) return usage_error(&o, "--out, --explain and --resume are not for 'eval'");
    dp_ctx *ctx = NULL;
    dp_detector *det = NULL;
    dp_face_detector *fd = NULL;
    flist files = {0};
    int *label = NULL, *dir_of = NULL;
    float *P[NCOND] = {0};
    int *V = NULL, *NF = NULL;
    rc = 1;
    char mpath[4096];
    if (dp_ctx_new(&(dp_ctx_opts){.threads = o.threads, .seed = 1}, &ctx) != DP_OK) return 1;
    if (open_model(ctx, &o, &det, mpath, sizeof mpath) != DP_OK || dp_face_detector_default(ctx, &fd) != DP_OK) {
        fprintf(stderr, "doppel detect eval: %s\n", dp_ctx_error(ctx));
        goto done;
    }
    const char *dirs[2 * MAX_DIRS];
    int nd = 0;
    for (int i = 0; i < o.n_real; i++) dirs[nd++] = o.real[i];
    for (int i = 0; i < o.n_fake; i++) dirs[nd++] = o.fake[i];
    int64_t cap = 0;
    for (int k = 0; k < nd; k++) {
        flist all = {0};
        walk(dirs[k], &all, 0);
        if (all.n == 0) {
            fprintf(stderr, "doppel detect eval: %s: no images in this folder (or not a folder)\n", dirs[k]);
            fl_free(&all);
            goto done;
        }
        int64_t keep = o.limit > 0 && o.limit < all.n ? o.limit : all.n;
        if (files.n + keep > cap) {
            cap = (files.n + keep) * 2;
            label = realloc(label, sizeof(int) * (size_t)cap);
            dir_of = realloc(dir_of, sizeof(int) * (size_t)cap);
        }
        for (int64_t i = 0; i < keep; i++) {
            fl_push(&files, all.v[(int64_t)((double)i * all.n / keep)]);
            label[files.n - 1] = k >= o.n_real;
            dir_of[files.n - 1] = k;
        }
        fl_free(&all);
    }
    int64_t n = files.n;
    for (int c = 0; c < NCOND; c++) P[c] = calloc((size_t)n, sizeof(float));
    V = calloc((size_t)n, sizeof(int));
    NF = calloc((size_t)n, sizeof(int));
    char *ok = calloc((size_t)n, 1);
    int nconds = o.no_robust ? 1 : NCOND;
    double t0 = cli_now();
    for (int c = 0; c < nconds; c++) {
        cli_progress pb;
        char lab[64];
        snprintf(lab, sizeof lab, "%s", CONDS[c].name);
        cli_progress_start(&pb, lab, n, "img", !o.quiet);
        for (int64_t i = 0; i < n; i++) {
            dp_image img = {0};
            dp_detect_result r;
            dp_status s = dp_image_load(ctx, files.v[i], 3, NULL, &img);
            if (s == DP_OK) s = degrade(ctx, &img, &CONDS[c]);
            if (s == DP_OK) s = dp_detect_image(det, fd, &img, &r);
            dp_image_free(ctx, &img);
            if (s != DP_OK) {
                if (c == 0) warn_line("warning: %s: %s", files.v[i], dp_ctx_error(ctx));
                continue;
            }
            if (c == 0) ok[i] = 1, V[i] = (int)r.verdict, NF[i] = r.no_face;
            P[c][i] = r.p_fake;
            cli_progress_update(&pb, i + 1, i + 1, NULL);
        }
        cli_progress_finish(&pb, n, NULL);
    }
    /* keep the readable files only */
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (ok[i]) {
            for (int c = 0; c < NCOND; c++) P[c][m] = P[c][i];
            V[m] = V[i], NF[m] = NF[i], label[m] = label[i], dir_of[m] = dir_of[i];
            char *t = files.v[m];
            files.v[m] = files.v[i];
            files.v[i] = t;
            m++;
        }
    free(ok);
    metrics mt;
    compute_metrics(P[0], label, V, NF, m, &mt);
    double rob[NCOND];
    for (int c = 0; c < nconds; c++) rob[c] = dp_metric_auc(P[c], label, m);
    group grp[128];
    int ng = 0;
    for (int k = 0; k < o.n_real; k++) {
        /* files of this folder only */
        int64_t a = -1, b = -1;
        for (int64_t i = 0; i < m; i++)
            if (dir_of[i] == k) {
                if (a < 0) a = i;
                b = i + 1;
            }
        if (a >= 0) manifest_groups(dirs[k], files.v + a, V + a, b - a, grp, &ng, 128);
    }
    if (o.json) {
        printf("{\"model\":\"%s\",\"images\":%lld,\"real\":%lld,\"fake\":%lld,\"auc\":%.4f,\"ap\":%.4f,\"accuracy\":%.4f,"
               "\"f1\":%.4f,\"fpr_real\":%.4f,\"fnr\":%.4f,\"fpr_at_0.5\":%.4f,\"fnr_at_0.5\":%.4f,\"ece\":%.4f,"
               "\"uncertain\":%.4f,\"no_face\":%.4f,\"thresholds\":{\"real_below\":%.4f,\"fake_from\":%.4f},\"groups\":{",
               mpath, (long long)m, (long long)mt.n_real, (long long)mt.n_fake, mt.auc, mt.ap, mt.accuracy, mt.f1,
               mt.fpr_real, mt.fnr, mt.fpr_05, mt.fnr_05, mt.ece, mt.uncertain, mt.no_face,
               (double)dp_detector_get_params(det)->t_real, (double)dp_detector_get_params(det)->t_fake);
        for (int j = 0; j < ng; j++)
            printf("%s\"%s\":{\"n\":%lld,\"fpr\":%.4f}", j ? "," : "", grp[j].key, (long long)grp[j].n,
                   grp[j].n ? (double)grp[j].fp / (double)grp[j].n : 0.0);
        printf("},\"robustness\":{");
        for (int c = 1; c < nconds; c++)
            printf("%s\"%s\":{\"auc\":%.4f,\"drop\":%.4f}", c > 1 ? "," : "", CONDS[c].name, rob[c], rob[0] - rob[c]);
        printf("},\"seconds\":%.1f}\n", cli_now() - t0);
    } else {
        printf("model: %s\n", mpath);
        print_metrics("all", &mt);
        if (ng) {
            printf("false positives (verdict fake) on real faces by group:\n");
            for (int j = 0; j < ng; j++)
                printf("  %-24s %6lld  FPR %.2f%%\n", grp[j].key, (long long)grp[j].n,
                       grp[j].n ? 100.0 * (double)grp[j].fp / (double)grp[j].n : 0.0);
        }
        if (nconds > 1) {
            printf("robustness (AUC after degrading the whole image):\n");
            for (int c = 0; c < nconds; c++) printf("  %-12s AUC %.4f  drop %+.4f\n", CONDS[c].name, rob[c], rob[0] - rob[c]);
        }
    }
    if (o.report) {
        FILE *f = fopen(o.report, "w");
        if (!f) {
            fprintf(stderr, "doppel detect eval: cannot write %s: %s\n", o.report, strerror(errno));
            goto done;
        }
        dp_image roc = {0}, rel = {0};
        float *fx = malloc(sizeof(float) * (size_t)(m + 2)), *fy = malloc(sizeof(float) * (size_t)(m + 2));
        int64_t np = fx && fy ? dp_metric_roc(P[0], label, m, fx, fy) : 0;
        plot_frame(ctx, &roc);
        for (int64_t i = 1; i < np; i++) line(&roc, px(fx[i - 1]), py(fy[i - 1]), px(fx[i]), py(fy[i]), 0.1f, 0.3f, 0.9f, 3);
        free(fx);
        free(fy);
        plot_frame(ctx, &rel);
        double bs[10] = {0}, bp[10] = {0}, bn[10] = {0};
        for (int64_t i = 0; i < m; i++) {
            int b = (int)(P[0][i] * 10);
            b = b < 0 ? 0 : b > 9 ? 9 : b;
            bs[b] += label[i], bp[b] += P[0][i], bn[b]++;
        }
        for (int b = 0; b < 10; b++) {
            if (!bn[b]) continue;
            double frac = bs[b] / bn[b];
            for (int x = (int)px(b / 10.0) + 3; x < (int)px((b + 1) / 10.0) - 3; x++)
                line(&rel, x, py(0), x, py(frac), 0.2f, 0.6f, 0.3f, 1);
            double mp = bp[b] / bn[b];
            line(&rel, px(mp) - 5, py(frac), px(mp) + 5, py(frac), 0.8f, 0.1f, 0.1f, 3);
        }
        fprintf(f, "<!doctype html><html><head><meta charset=utf-8><title>doppel detect eval</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 8px;text-align:right}th{text-align:left}</style></head><body>\n");
        fprintf(f, "<h1>doppel detect eval</h1><p>model <code>%s</code>; %lld images (%lld real, %lld fake)</p>\n", mpath,
                (long long)m, (long long)mt.n_real, (long long)mt.n_fake);
        fprintf(f, "<table><tr><th>AUC</th><td>%.4f</td></tr><tr><th>AP</th><td>%.4f</td></tr><tr><th>accuracy at 0.5</th><td>%.2f%%</td></tr>"
                   "<tr><th>F1 at 0.5</th><td>%.4f</td></tr><tr><th>real faces judged fake (FPR)</th><td>%.2f%%</td></tr>"
                   "<tr><th>fake faces judged real (FNR)</th><td>%.2f%%</td></tr><tr><th>FPR / FNR at 0.5</th><td>%.2f%% / %.2f%%</td></tr>"
                   "<tr><th>ECE (10 bins)</th><td>%.4f</td></tr><tr><th>uncertain</th><td>%.2f%%</td></tr><tr><th>no face found</th><td>%.2f%%</td></tr></table>\n",
                mt.auc, mt.ap, 100 * mt.accuracy, mt.f1, 100 * mt.fpr_real, 100 * mt.fnr, 100 * mt.fpr_05, 100 * mt.fnr_05,
                mt.ece, 100 * mt.uncertain, 100 * mt.no_face);
        fprintf(f, "<h2>ROC curve</h2><p>x: false-positive rate, y: true-positive rate (grid 0.1)</p><img alt=ROC src=\"");
        png_data_uri(ctx, &roc, f);
        fprintf(f, "\"><h2>Reliability diagram</h2><p>bars: share of fakes per p_fake bin (0.1 wide); red marks: the bin's mean p_fake; grey: perfect calibration</p><img alt=reliability src=\"");
        png_data_uri(ctx, &rel, f);
        fprintf(f, "\">\n");
        if (nconds > 1) {
            fprintf(f, "<h2>Robustness</h2><table><tr><th>condition</th><th>AUC</th><th>drop</th></tr>\n");
            for (int c = 0; c < nconds; c++) fprintf(f, "<tr><th>%s</th><td>%.4f</td><td>%+.4f</td></tr>\n", CONDS[c].name, rob[c], rob[0] - rob[c]);
            fprintf(f, "</table>\n");
        }
        if (ng) {
            fprintf(f, "<h2>False positives on real faces by group</h2><table><tr><th>group</th><th>n</th><th>FPR</th></tr>\n");
            for (int j = 0; j < ng; j++)
                fprintf(f, "<tr><th>%s</th><td>%lld</td><td>%.2f%%</td></tr>\n", grp[j].key, (long long)grp[j].n,
                        grp[j].n ? 100.0 * (double)grp[j].fp / (double)grp[j].n : 0.0);
            fprintf(f, "</table>\n");
        }
        fprintf(f, "</body></html>\n");
        fclose(f);
        dp_image_free(ctx, &roc);
        dp_image_free(ctx, &rel);
        if (!o.json) printf("report: %s\n", o.report);
    }
    rc = 0;
done:
    for (int c = 0; c < NCOND; c++) free(P[c]);
    free(V);
    free(NF);
    free(label);
    free(dir_of);
    fl_free(&files);
    dp_face_detector_free(fd);
    dp_detector_free(det);
    dp_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------ use */
static dp_status explain(dp_ctx *ctx, dp_detector *det, const dp_image *img, const dp_detect_result *r, const char *out,
                         int gradcam) {
    dp_image vis = {0};
    dp_status s = dp_detect_explain_ex(det, img, r, gradcam ? DP_EXPLAIN_GRADCAM : DP_EXPLAIN_OCCLUSION, &vis);
    if (s == DP_OK) s = dp_image_save_png(ctx, out, &vis);
    dp_image_free(ctx, &vis);
    return s;
}

static int cmd_use(int argc, char **argv) {
    opts o = {.cmd = NULL};
    flist args = {0}, files = {0};
    int rc = parse_opts(argc, argv, &o, &args);
    if (rc) {
        fl_free(&args);
        return rc;
    }
    if (o.n_real || o.n_fake || o.out || o.report || o.resume) {
        fl_free(&args);
        return usage_error(&o, "--real, --fake, --out, --report, --resume belong to 'detect train' / 'detect eval'");
    }
    if (!args.n) {
        fl_free(&args);
        return usage_error(&o, "give an image or a folder");
    }
    if (o.json && o.csv) {
        fl_free(&args);
        return usage_error(&o, "--json and --csv exclude each other");
    }
    int errors = 0, flagged = 0;
    for (int64_t i = 0; i < args.n; i++) {
        struct stat st;
        if (stat(args.v[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            int64_t before = files.n;
            walk(args.v[i], &files, 0);
            if (files.n == before) {
                fprintf(stderr, "doppel detect: %s: no images (.jpg, .jpeg, .png, .webp) in this folder\n", args.v[i]);
                errors++;
            }
        } else fl_push(&files, args.v[i]);
    }
    fl_free(&args);
    if (o.explain && files.n != 1) {
        fl_free(&files);
        return usage_error(&o, "--explain needs exactly one image");
    }
    dp_ctx *ctx = NULL;
    dp_detector *det = NULL;
    dp_face_detector *fd = NULL;
    char mpath[4096];
    if (dp_ctx_new(&(dp_ctx_opts){.threads = o.threads, .seed = 1}, &ctx) != DP_OK) return 2;
    if (open_model(ctx, &o, &det, mpath, sizeof mpath) != DP_OK) {
        fprintf(stderr, "doppel detect: %s\n", dp_ctx_error(ctx));
        rc = 2;
        goto done;
    }
    if (dp_face_detector_default(ctx, &fd) != DP_OK) {
        fprintf(stderr, "doppel detect: %s\n", dp_ctx_error(ctx));
        rc = 2;
        goto done;
    }
    if (o.csv) printf("file,face,x,y,w,h,p_fake,verdict,meso4,spectral,image_verdict\n");
    for (int64_t i = 0; i < files.n; i++) {
        const char *path = files.v[i];
        dp_image img = {0};
        dp_detect_result r;
        dp_status s = dp_image_load(ctx, path, 3, NULL, &img);
        if (s == DP_OK) s = dp_detect_image(det, fd, &img, &r);
        if (s != DP_OK) {
            const char *msg = dp_ctx_error(ctx);
            /* messages usually name the file already */
            if (strstr(msg, path)) fprintf(stderr, "doppel detect: %s\n", msg);
            else fprintf(stderr, "doppel detect: %s: %s\n", path, msg);
            dp_image_free(ctx, &img);
            errors++;
            continue;
        }
        dp_watermark_result wr;
        char wm[160] = "";
        dp_status ws = dp_watermark_detect(ctx, &img, &wr);
        if (ws == DP_OK) dp_detect_watermark_json(&wr, wm, sizeof wm);
        flagged += r.verdict != DP_VERDICT_REAL;
        if (o.json) {
            char buf[16384];
            dp_detect_result_json(path, &r, wm[0] ? wm : NULL, buf, sizeof buf);
            printf("%s\n", buf);
        } else if (o.csv) {
            for (int k = 0; k < r.n_scored; k++) {
                const dp_detect_face *f = &r.faces[k];
                printf("%s,%d,%d,%d,%d,%d,%.4f,%s,%.4f,%.4f,%s\n", path, k + 1, f->box.x, f->box.y, f->box.w, f->box.h,
                       (double)f->p_fake, dp_verdict_name(f->verdict), (double)f->p_meso, (double)f->p_spectral,
                       dp_verdict_name(r.verdict));
            }
        } else {
            for (int k = 0; k < r.n_scored; k++) {
                const dp_detect_face *f = &r.faces[k];
                printf("%s: face %d [%d,%d,%d,%d]%s p_fake %.4f %s (meso4 %.3f, spectral %.3f%s)\n", path, k + 1,
                       f->box.x, f->box.y, f->box.w, f->box.h, r.no_face ? " (no face found: centre crop)" : "",
                       (double)f->p_fake, dp_verdict_name(f->verdict), (double)f->p_meso, (double)f->p_spectral,
                       f->ood_over == 3   ? "; unlike the training data (spectrum and Meso-4 features)"
                       : f->ood_over == 2 ? "; unlike the training data (Meso-4 features)"
                       : f->ood_over      ? "; unlike the training data (spectrum)"
                                          : "");
            }
            printf("%s: %s (p_fake %.4f, %d face%s)%s\n", path, dp_verdict_name(r.verdict), (double)r.p_fake, r.n_faces,
                   r.n_faces == 1 ? "" : "s",
                   ws == DP_OK && wr.found ? "; carries doppel's watermark: generated by doppel" : "");
            if (ws == DP_OK && wr.found) printf("%s: doppel watermark: model id %u, score %.3f\n", path, wr.model_id, (double)wr.score);
        }
        if (o.explain) {
            if ((s = explain(ctx, det, &img, &r, o.explain, o.gradcam)) != DP_OK) {
                fprintf(stderr, "doppel detect: --explain %s: %s\n", o.explain, dp_ctx_error(ctx));
                errors++;
            } else if (!o.json && !o.csv) printf("explained: %s\n", o.explain);
        }
        dp_image_free(ctx, &img);
        fflush(stdout);
    }
    rc = errors ? 2 : flagged ? 1 : 0;
done:
    fl_free(&files);
    dp_face_detector_free(fd);
    dp_detector_free(det);
    dp_ctx_free(ctx);
    return rc;
}
