/* doppel gan train|sample — DCGANs on Fashion-MNIST or image folders; every
 * image written goes through dp_write_synthetic (labelled as synthetic).
 *
 * A run lives in one folder: ckpt.safetensors (the whole training state,
 * rewritten crash-safely), metrics.csv (one row a step) and samples/ (a grid
 * from a fixed noise batch every --sample-every steps). --resume continues a
 * run exactly where its checkpoint left it. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/parse.h"
#include "doppel/doppel.h"

#define GRID_N 64                             /* images in a training sample grid (8 x 8) */
#define FIXED_NOISE_STREAM 0x47414e0300000000ull /* (seed, this): the fixed noise of the grids */

static const char *const usage_text =
    "usage: doppel gan train --out RUN [options]\n"
    "       doppel gan sample --model RUN|FILE (--grid FILE | --out DIR) [options]\n"
    "       doppel gan eval (--model RUN|FILE | --images DIR | --untrained | --real-vs-real) --features CLASSIFIER [options]\n"
    "       doppel gan report --run RUN\n"
    "       doppel gan export --model RUN|FILE --out FILE   (the generator alone, to ship)\n"
    "\n"
    "Train a DCGAN, or generate images with one. Every image doppel writes is labelled as\n"
    "AI-generated (metadata + invisible watermark carrying the model id).\n"
    "\n"
    "train:\n"
    "  --data fashion-mnist|DIR  Fashion-MNIST's 60,000 training images, or every .png/.jpg/.webp\n"
    "                            under DIR (any depth), centre-cropped and resized (default fashion-mnist)\n"
    "  --data-dir DIR            where the Fashion-MNIST files are (default " DP_FASHION_MNIST_DIR ")\n"
    "  --arch dcgan28|dcgan64    dcgan28: 28x28 grey (default for fashion-mnist); dcgan64: 64x64 RGB\n"
    "                            (default for folders; CelebA 89x109 becomes its centred 89x89, scaled)\n"
    "  --out RUN                 the run folder: RUN/ckpt.safetensors, RUN/metrics.csv, RUN/samples/\n"
    "  --steps N                 train until step N (default 2000)\n"
    "  --batch N                 images per step (default 128 for dcgan28, 64 for dcgan64)\n"
    "  --loss ns|hinge|wgan-gp   ns: non-saturating BCE (default); hinge; wgan-gp: Wasserstein with\n"
    "                            gradient penalty 10 (finite-difference penalty gradient, see docs/gan.md)\n"
    "  --lr X                    Adam learning rate of both G and D (default 0.0002, betas 0.5, 0.999)\n"
    "  --seed N                  initialisation, noise, data order (default 1)\n"
    "  --threads N               worker threads (default: all CPUs)\n"
    "  --sample-every N          write RUN/samples/step_NNNNNN.png every N steps and at the end (default 500;\n"
    "                            0: only at the end)\n"
    "  --ckpt-every N            rewrite RUN/ckpt.safetensors every N steps and at the end (default 500;\n"
    "                            0: only at the end). Ctrl-C also writes it, then stops.\n"
    "  --resume                  continue the run in RUN from its checkpoint, exactly (same seed, same data;\n"
    "                            with the same --threads the result is bit-identical to a run never stopped)\n"
    "  --flip                    flip real images horizontally at random (augmentation)\n"
    "  --face-crop               folders: cut out the square around the strongest face (Viola-Jones, opencv-data's\n"
    "                            frontal cascade; 1.5x the face box) before fitting; images without a face are left out\n"
    "  --limit N                 use at most N images (quick tests)\n"
    "  --quiet                   no progress bar\n"
    "\n"
    "sample:\n"
    "  --model RUN|FILE          a run folder (its ckpt.safetensors) or a checkpoint file\n"
    "  -n N                      how many images (default 64)\n"
    "  --grid FILE               one grid image of all of them (.png, or .jpg/.jpeg)\n"
    "  --out DIR                 one file each: DIR/sample_NNNNNN.png (or .jpg with --format jpg)\n"
    "  --format png|jpg          format of the --out files (default png)\n"
    "  --quality Q               JPEG quality 1..100 (default 92)\n"
    "  --seed N                  noise seed (default 1)\n"
    "  --truncation T            redraw noise values with |z| > T (a truncated normal; e.g. 1.0)\n"
    "  --threads N               worker threads (default: all CPUs)\n"
    "\n"
    "eval (quality metrics; docs/gan.md, 'Measuring a GAN'):\n"
    "  --model RUN|FILE          the generator to measure (a run folder also gets RUN/eval.json and report.html)\n"
    "  --images DIR              generated images from elsewhere (e.g. another framework's samples): every image\n"
    "                            under DIR, fitted to --arch's shape as training folders are (the first -n of them)\n"
    "  --untrained               calibration: a freshly initialised generator (--arch, --seed) instead\n"
    "  --real-vs-real            calibration: two disjoint halves of the real data instead\n"
    "  --data fashion-mnist|DIR  the real images (default fashion-mnist: the first N training images)\n"
    "  --data-dir DIR            where the Fashion-MNIST files are\n"
    "  --face-crop               fit the real folder images as 'train --face-crop' does\n"
    "  --features FILE           a 'doppel classify train' checkpoint whose penultimate layer gives the features\n"
    "                            of the FID (FID-FMNIST-doppelcnn for a Fashion-MNIST classifier, FID-faces-doppelenc\n"
    "                            for models/doppel-faceenc.safetensors) and precision/recall (without it: spectral only)\n"
    "  -n N                      images of each set (default 2000)\n"
    "  --seed N                  noise seed (default 1); --arch for --untrained (default dcgan28)\n"
    "  --json                    one JSON object: fid_doppelcnn, spectral_distance, precision, recall, n, feature_model, ...\n"
    "  --threads N               worker threads (default: all CPUs)\n"
    "\n"
    "report:\n"
    "  --run RUN                 (re)write RUN/report.html: loss curves, sample grids over time, RUN/eval.json\n"
    "\n"
    "FID-FMNIST-doppelcnn / FID-faces-doppelenc are Frechet distances on the features of doppel's own\n"
    "classifiers, not Inception FID.\n"
    "Exit status: 0 ok, 1 failure, 2 bad usage.\n";

typedef struct opts {
    const char *cmd;
    const char *data, *data_dir, *out, *arch, *loss, *model, *grid, *format;
    int64_t steps, batch, threads, sample_every, ckpt_every, limit, n, quality;
    uint64_t seed;
    double lr, truncation;
    int resume, flip, face_crop, quiet;
    const char *features, *run_dir, *images; /* eval, report */
    int json, untrained, real_vs_real;
    /* which were given (a resumed run refuses changes to these) */
    int set_arch, set_loss, set_batch, set_seed, set_lr, set_data;
} opts;

static int usage_error(const opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const opts *o, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "doppel gan %s: ", o->cmd ? o->cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'doppel gan --help')\n");
    return 2;
}

static int fail(const opts *o, dp_status s, const char *what, const char *msg) {
    int has_what = what && what[0], has_msg = msg && msg[0];
    fprintf(stderr, "doppel gan %s: %s%s%s [%s]\n", o->cmd, has_what ? what : "", has_what && has_msg ? ": " : "",
            has_msg ? msg : "", dp_status_name(s));
    return 1;
}

static int parse_f(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
            buf[i] = c;
        }
    }
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}
static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    if (a < b) return 0;
    for (size_t i = 0; i < b; i++)
        if ((s[a - b + i] | 0x20) != suf[i]) return 0;
    return 1;
}

/* ------------------------------------------------------------ options */
static int parse_opts(int argc, char **argv, opts *o) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char name[64];
        if (!strcmp(a, "-n")) a = "--n";
        if (strncmp(a, "--", 2) != 0) return usage_error(o, "unexpected argument '%s'", a);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len >= sizeof name) return usage_error(o, "unknown option '%s'", a);
        memcpy(name, a, len);
        name[len] = 0;
        int flag = !strcmp(name, "--resume") || !strcmp(name, "--flip") || !strcmp(name, "--face-crop") ||
                   !strcmp(name, "--quiet") || !strcmp(name, "--json") || !strcmp(name, "--untrained") ||
                   !strcmp(name, "--real-vs-real");
        if (flag) {
            if (eq) return usage_error(o, "%s takes no value", name);
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) return usage_error(o, "%s needs a value", !strcmp(name, "--n") ? "-n" : name);
            v = argv[++i];
        }
        int64_t iv;
#define INT_OPT(opt, lo, hi, field)                                                                                    \
    else if (!strcmp(name, opt)) {                                                                                     \
        if (!dp_parse_i64(v, lo, hi, &iv))                                                                                \
            return usage_error(o, "%s must be an integer in [%lld, %lld], got '%s'", !strcmp(opt, "--n") ? "-n" : opt, \
                               (long long)(lo), (long long)(hi), v);                                                   \
        o->field = iv;                                                                                                 \
    }
        if (flag) {
            if (!strcmp(name, "--resume")) o->resume = 1;
            else if (!strcmp(name, "--flip")) o->flip = 1;
            else if (!strcmp(name, "--face-crop")) o->face_crop = 1;
            else if (!strcmp(name, "--json")) o->json = 1;
            else if (!strcmp(name, "--untrained")) o->untrained = 1;
            else if (!strcmp(name, "--real-vs-real")) o->real_vs_real = 1;
            else o->quiet = 1;
        }
        else if (!strcmp(name, "--data")) o->data = v, o->set_data = 1;
        else if (!strcmp(name, "--data-dir")) o->data_dir = v;
        else if (!strcmp(name, "--out")) o->out = v;
        else if (!strcmp(name, "--model")) o->model = v;
        else if (!strcmp(name, "--grid")) o->grid = v;
        else if (!strcmp(name, "--features")) o->features = v;
        else if (!strcmp(name, "--run")) o->run_dir = v;
        else if (!strcmp(name, "--images")) o->images = v;
        else if (!strcmp(name, "--arch")) {
            dp_gan_arch a;
            if (!dp_gan_arch_parse(v, &a)) return usage_error(o, "--arch must be dcgan28 or dcgan64, got '%s'", v);
            o->arch = v;
            o->set_arch = 1;
        } else if (!strcmp(name, "--loss")) {
            dp_gan_loss l;
            if (!dp_gan_loss_parse(v, &l)) return usage_error(o, "--loss must be ns, hinge or wgan-gp, got '%s'", v);
            o->loss = v;
            o->set_loss = 1;
        } else if (!strcmp(name, "--format")) {
            if (strcmp(v, "png") && strcmp(v, "jpg")) return usage_error(o, "--format must be png or jpg, got '%s'", v);
            o->format = v;
        }
        INT_OPT("--steps", 1, 100000000, steps)
        INT_OPT("--threads", 0, 256, threads)
        INT_OPT("--sample-every", 0, 100000000, sample_every)
        INT_OPT("--ckpt-every", 0, 100000000, ckpt_every)
        INT_OPT("--limit", 0, INT64_MAX, limit)
        INT_OPT("--n", 1, 65536, n)
        INT_OPT("--quality", 1, 100, quality)
        else if (!strcmp(name, "--batch")) {
            if (!dp_parse_i64(v, 2, 65536, &iv)) return usage_error(o, "--batch must be an integer in [2, 65536], got '%s'", v);
            o->batch = iv;
            o->set_batch = 1;
        } else if (!strcmp(name, "--seed")) {
            if (!dp_parse_i64(v, 0, INT64_MAX, &iv)) return usage_error(o, "--seed must be a non-negative integer, got '%s'", v);
            o->seed = (uint64_t)iv;
            o->set_seed = 1;
        } else if (!strcmp(name, "--lr")) {
            if (!parse_f(v, 1e-30, 1e30, &o->lr)) return usage_error(o, "--lr must be a positive number, got '%s'", v);
            o->set_lr = 1;
        } else if (!strcmp(name, "--truncation")) {
            if (!parse_f(v, 0.01, 1e6, &o->truncation))
                return usage_error(o, "--truncation must be a number >= 0.01, got '%s'", v);
        } else {
            return usage_error(o, "unknown option '%s'", name);
        }
#undef INT_OPT
    }
    return 0;
}

/* ------------------------------------------------------------ data */
static void folder_warn(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "\r\033[Kwarning: %s\n", msg);
}
static void folder_progress(void *user, int64_t done, int64_t total) {
    cli_progress *pb = user;
    pb->total = total > 0 ? total : 1;
    cli_progress_update(pb, done, done, NULL);
}

/* A folder of images fitted to C×H×W (with --face-crop: around the face). */
static dp_status load_folder(dp_ctx *ctx, const char *dir, int C, int H, int W, int64_t limit, int face_crop, int quiet,
                             dp_dataset **out) {
    dp_folder_opts fo = {.channels = C, .height = H, .width = W, .limit = limit, .warn = folder_warn};
    dp_face_detector *det = NULL;
    dp_gan_face_crop fc = {0};
    dp_status s;
    if (face_crop) {
        if ((s = dp_face_detector_default(ctx, &det)) != DP_OK) return s;
        fc.det = det;
    }
    cli_progress pb;
    cli_progress_start(&pb, face_crop ? "faces" : "loading", 1, "img", !quiet);
    fo.progress = folder_progress;
    fo.progress_user = &pb;
    s = dp_gan_images_from_folder_faces(ctx, dir, &fo, face_crop ? &fc : NULL, out);
    if (s == DP_OK && !quiet) {
        pb.total = (*out)->n + (*out)->skipped + fc.no_face;
        if (face_crop)
            cli_progress_finish(&pb, pb.total, "%lld faces, %lld images without one left out, %lld unreadable", (long long)(*out)->n,
                                (long long)fc.no_face, (long long)(*out)->skipped);
        else
            cli_progress_finish(&pb, pb.total, "%lld images, %lld skipped", (long long)(*out)->n, (long long)(*out)->skipped);
    } else if (s == DP_OK && face_crop && fc.no_face) {
        fprintf(stderr, "note: %s: %lld images without a face left out\n", dir, (long long)fc.no_face);
    }
    dp_face_detector_free(det);
    return s;
}

static dp_status load_data(dp_ctx *ctx, const opts *o, dp_gan_arch arch, dp_dataset **out) {
    int C, H, W;
    dp_gan_arch_shape(arch, &C, &H, &W);
    if (!strcmp(o->data, "fashion-mnist")) return dp_dataset_fashion_mnist(ctx, o->data_dir, 1, o->limit, out);
    return load_folder(ctx, o->data, C, H, W, o->limit, o->face_crop, o->quiet, out);
}

/* ------------------------------------------------------------ metrics.csv */
static const char *const csv_header = "step,time,loss_d,loss_g,d_real,d_fake,lr,img_per_s\n";

/* Keeps the header and the rows of steps <= keep (a resumed run rewrites what
 * came after its checkpoint). Creates the file with its header if absent. */
static int csv_prepare(const char *path, int64_t keep, char *err, size_t errn) {
    FILE *in = fopen(path, "r");
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *outf = fopen(tmp, "w");
    if (!outf) {
        snprintf(err, errn, "cannot write %s: %s", tmp, strerror(errno));
        if (in) fclose(in);
        return -1;
    }
    fputs(csv_header, outf);
    if (in) {
        char line[1024];
        int first = 1;
        while (fgets(line, sizeof line, in)) {
            if (first) {
                first = 0;
                if (!strncmp(line, "step,", 5)) continue;
            }
            char *end;
            long long st = strtoll(line, &end, 10);
            if (end != line && *end == ',' && st >= 1 && st <= keep) fputs(line, outf);
        }
        fclose(in);
    }
    if (fclose(outf) != 0 || rename(tmp, path) != 0) {
        snprintf(err, errn, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ Ctrl-C */
static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

/* ------------------------------------------------------------ train */
typedef struct run {
    const opts *o;
    dp_ctx *ctx;
    dp_gan *gan;
    char ckpt[4200], csv[4200], samples[4200];
    const char *data_name;
    float *fixed_z, *grid_px;
    double elapsed0; /* seconds of the run before this session */
    double t0;
} run;

static dp_status write_grid(run *r, int64_t step, char *path, size_t pn) {
    dp_ctx *ctx = r->ctx;
    const dp_gan_opts *go = dp_gan_options(r->gan);
    int C, H, W;
    dp_gan_arch_shape(go->arch, &C, &H, &W);
    dp_status s = dp_gan_generate(r->gan, r->fixed_z, GRID_N, r->grid_px);
    if (s) return s;
    dp_image grid = {0};
    if ((s = dp_gan_grid(ctx, r->grid_px, GRID_N, C, H, W, 8, 2, &grid)) != DP_OK) return s;
    char model[4400];
    snprintf(model, sizeof model, "%s run %s step %lld", dp_gan_arch_name(go->arch), r->o->out, (long long)step);
    dp_label_info info = {.software = NULL, .model = model, .model_id = dp_gan_model_id(r->gan)};
    snprintf(path, pn, "%s/step_%06lld.png", r->samples, (long long)step);
    s = dp_write_synthetic(ctx, path, &grid, &info, 0);
    dp_image_free(ctx, &grid);
    return s;
}

/* The CLI's own metadata: where the data came from (so --resume finds it), time, threads. */
static dp_status save_ckpt(run *r) {
    char elapsed[64], threads[32], limit[32];
    snprintf(elapsed, sizeof elapsed, "%.3f", r->elapsed0 + (cli_now() - r->t0));
    snprintf(threads, sizeof threads, "%d", dp_ctx_threads(r->ctx));
    snprintf(limit, sizeof limit, "%lld", (long long)r->o->limit);
    const char *extra[14] = {"doppel.gan.data", r->data_name, "doppel.gan.elapsed", elapsed, "doppel.gan.threads", threads,
                             "doppel.gan.limit", limit, "doppel.gan.face_crop", r->o->face_crop ? "1" : "0", NULL};
    if (r->o->data_dir) extra[10] = "doppel.gan.data_dir", extra[11] = r->o->data_dir, extra[12] = NULL;
    return dp_gan_save(r->gan, r->ckpt, extra);
}

static int cmd_train(int argc, char **argv) {
    opts o = {.cmd = "train", .data = "fashion-mnist", .loss = "ns", .steps = 2000, .seed = 1, .sample_every = 500,
              .ckpt_every = 500, .lr = 2e-4};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    if (o.model || o.grid || o.n || o.format || o.quality || o.truncation)
        return usage_error(&o, "--model, --grid, -n, --format, --quality and --truncation are for 'sample'");
    if (o.features || o.run_dir || o.json || o.untrained || o.real_vs_real)
        return usage_error(&o, "--features, --run, --json, --untrained and --real-vs-real are for 'eval' and 'report'");
    if (!o.out) return usage_error(&o, "--out RUN (the run folder) is required");
    if (o.images) return usage_error(&o, "--images is for 'eval'");
    run r = {.o = &o};
    snprintf(r.ckpt, sizeof r.ckpt, "%s/ckpt.safetensors", o.out);
    snprintf(r.csv, sizeof r.csv, "%s/metrics.csv", o.out);
    snprintf(r.samples, sizeof r.samples, "%s/samples", o.out);
    int have_ckpt = exists(r.ckpt);
    if (o.resume && !have_ckpt) {
        fprintf(stderr, "doppel gan train: --resume: %s does not exist (nothing to resume)\n", r.ckpt);
        return 1;
    }
    if (!o.resume && have_ckpt) {
        fprintf(stderr, "doppel gan train: %s already holds a run (%s); continue it with --resume, or choose another --out\n",
                o.out, r.ckpt);
        return 1;
    }

    dp_ctx *ctx = NULL;
    dp_dataset *ds = NULL;
    dp_gan *gan = NULL;
    FILE *csv = NULL;
    rc = 1;
    dp_status s = dp_ctx_new(&(dp_ctx_opts){.threads = (int)o.threads, .seed = o.seed}, &ctx);
    if (s != DP_OK) return fail(&o, s, "cannot create a context", "");
    r.ctx = ctx;

    /* ---- the configuration: from the options, or the run's checkpoint */
    dp_gan_opts go = {0};
    int64_t start = 0;
    char stored_data[4200] = "", stored_dir[4200] = "", buf[64];
    if (o.resume) {
        if ((s = dp_gan_read_opts(ctx, r.ckpt, &go, &start)) != DP_OK) {
            fail(&o, s, "--resume", dp_ctx_error(ctx));
            goto done;
        }
        const char *conflict = NULL;
        dp_gan_arch a;
        dp_gan_loss l;
        if (o.set_arch && dp_gan_arch_parse(o.arch, &a) && a != go.arch) conflict = "--arch";
        else if (o.set_loss && dp_gan_loss_parse(o.loss, &l) && l != go.loss) conflict = "--loss";
        else if (o.set_batch && o.batch != go.batch) conflict = "--batch";
        else if (o.set_seed && o.seed != go.seed) conflict = "--seed";
        else if (o.set_lr && (float)o.lr != go.lr_g) conflict = "--lr";
        else if (o.flip && !go.flip) conflict = "--flip";
        if (conflict) {
            fprintf(stderr,
                    "doppel gan train: --resume continues the run as it was made (%s, loss %s, batch %d, seed %llu, lr %g%s); "
                    "%s differs — leave it out\n",
                    dp_gan_arch_name(go.arch), dp_gan_loss_name(go.loss), go.batch, (unsigned long long)go.seed,
                    (double)go.lr_g, go.flip ? ", --flip" : "", conflict);
            rc = 2;
            goto done;
        }
        if (dp_checkpoint_meta(ctx, r.ckpt, "doppel.gan.data", stored_data, sizeof stored_data) == DP_OK && !o.set_data)
            o.data = stored_data;
        if (!o.data_dir && !o.set_data &&
            dp_checkpoint_meta(ctx, r.ckpt, "doppel.gan.data_dir", stored_dir, sizeof stored_dir) == DP_OK)
            o.data_dir = stored_dir;
        /* the CLI's own metadata (save_ckpt): a value it cannot have written is an error naming the file */
        const char *bad = NULL;
        int threads = 0;
        if (!o.limit && dp_checkpoint_meta(ctx, r.ckpt, "doppel.gan.limit", buf, sizeof buf) == DP_OK &&
            !dp_parse_i64(buf, 0, INT64_MAX, &o.limit))
            bad = "doppel.gan.limit";
        if (dp_checkpoint_meta(ctx, r.ckpt, "doppel.gan.face_crop", buf, sizeof buf) == DP_OK && !strcmp(buf, "1"))
            o.face_crop = 1;
        if (dp_checkpoint_meta(ctx, r.ckpt, "doppel.gan.elapsed", buf, sizeof buf) == DP_OK &&
            !dp_parse_f64(buf, 0, 1e12, &r.elapsed0))
            bad = "doppel.gan.elapsed";
        if (dp_checkpoint_meta(ctx, r.ckpt, "doppel.gan.threads", buf, sizeof buf) == DP_OK &&
            !dp_parse_int(buf, 1, 1 << 20, &threads))
            bad = "doppel.gan.threads";
        if (bad) {
            fprintf(stderr, "doppel gan train: --resume: %s: metadata '%s' has an invalid value\n", r.ckpt, bad);
            goto done;
        }
        if (threads && threads != dp_ctx_threads(ctx))
            printf("note: the run used %d threads, this session %d: it continues correctly, but not bit for bit as an "
                   "uninterrupted run would\n",
                   threads, dp_ctx_threads(ctx));
        dp_ctx_clear_error(ctx);
        if (start >= o.steps) {
            printf("the run in %s is at step %lld already (--steps %lld): nothing to do\n", o.out, (long long)start,
                   (long long)o.steps);
            rc = 0;
            goto done;
        }
    } else {
        int fashion = !strcmp(o.data, "fashion-mnist");
        if (!o.arch) o.arch = fashion ? "dcgan28" : "dcgan64";
        dp_gan_arch_parse(o.arch, &go.arch);
        dp_gan_loss_parse(o.loss, &go.loss);
        go.batch = (int)(o.batch ? o.batch : go.arch == DP_GAN_DCGAN28 ? 128 : 64);
        go.lr_g = go.lr_d = (float)o.lr;
        go.flip = o.flip;
        go.seed = o.seed;
    }
    if (strcmp(o.data, "fashion-mnist") && o.data_dir) {
        usage_error(&o, "--data-dir applies to --data fashion-mnist");
        rc = 2;
        goto done;
    }
    if (!strcmp(o.data, "fashion-mnist") && go.arch != DP_GAN_DCGAN28) {
        usage_error(&o, "fashion-mnist is 28x28 grey: use --arch dcgan28 (dcgan64 needs 64x64 RGB images)");
        rc = 2;
        goto done;
    }
    if (!strcmp(o.data, "fashion-mnist") && o.face_crop) {
        usage_error(&o, "--face-crop applies to folders of photos, not fashion-mnist");
        rc = 2;
        goto done;
    }
    r.data_name = o.data;

    /* ---- data */
    double t_load = cli_now();
    if ((s = load_data(ctx, &o, go.arch, &ds)) != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
        goto done;
    }
    printf("data: %s, %lld images %dx%dx%d", o.data, (long long)ds->n, ds->channels, ds->height, ds->width);
    if (ds->skipped) printf(" (%lld unreadable files skipped)", (long long)ds->skipped);
    printf(", %.1f s to load\n", cli_now() - t_load);

    /* ---- trainer */
    if ((s = dp_gan_new(ctx, &go, &gan)) != DP_OK || (s = dp_gan_set_data(gan, ds)) != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
        goto done;
    }
    r.gan = gan;
    go = *dp_gan_options(gan);
    if (o.resume && (s = dp_gan_load(gan, r.ckpt)) != DP_OK) {
        fail(&o, s, "--resume", dp_ctx_error(ctx));
        goto done;
    }
    if (mkdir_p(o.out) != 0 || mkdir_p(r.samples) != 0) {
        fprintf(stderr, "doppel gan train: cannot create the run folder %s: %s\n", r.samples, strerror(errno));
        goto done;
    }
    char err[4400];
    if (csv_prepare(r.csv, start, err, sizeof err) != 0 || !(csv = fopen(r.csv, "a"))) {
        fprintf(stderr, "doppel gan train: %s\n", csv ? err : strerror(errno));
        goto done;
    }
    int C, H, W;
    dp_gan_arch_shape(go.arch, &C, &H, &W);
    r.fixed_z = malloc(sizeof(float) * GRID_N * (size_t)go.nz);
    r.grid_px = malloc(sizeof(float) * GRID_N * (size_t)(C * H * W));
    if (!r.fixed_z || !r.grid_px) {
        fail(&o, DP_ERR_NOMEM, "out of memory", "");
        goto done;
    }
    dp_rng fr;
    dp_rng_stream(&fr, go.seed, FIXED_NOISE_STREAM);
    dp_gan_noise(ctx, &fr, r.fixed_z, (int64_t)GRID_N * go.nz, 0.0f);

    printf("model: %s, G %lld + D %lld parameters; loss %s; batch %d; Adam lr %g betas (%g, %g); seed %llu; %d threads; "
           "activations %.0f MiB\n",
           dp_gan_arch_name(go.arch), (long long)dp_paramset_numel(dp_gan_generator(gan), 1),
           (long long)dp_paramset_numel(dp_gan_discriminator(gan), 1), dp_gan_loss_name(go.loss), go.batch,
           (double)go.lr_g, (double)go.beta1, (double)go.beta2, (unsigned long long)go.seed, dp_ctx_threads(ctx),
           (double)dp_gan_memory_bytes(gan) / 1048576.0);
    if (o.resume) printf("resuming %s at step %lld\n", o.out, (long long)start);
    fflush(stdout);

    /* ---- train */
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    g_stop = 0;

    char label[64], path[4400] = "";
    if (start) snprintf(label, sizeof label, "steps %lld..%lld", (long long)start + 1, (long long)o.steps);
    else snprintf(label, sizeof label, "train");
    cli_progress pb;
    int64_t todo = o.steps - start, last_ckpt = start, done_steps = 0;
    cli_progress_start(&pb, label, todo, "img", !o.quiet);
    r.t0 = cli_now();
    double t_steps = 0, t_prev = r.t0;
    dp_gan_stats st = {0};
    int stopped = 0;
    for (int64_t k = start + 1; k <= o.steps; k++) {
        double ts = cli_now();
        s = dp_gan_step(gan, &st);
        double te = cli_now();
        if (s != DP_OK) {
            if (!o.quiet) fputc('\n', stderr);
            fprintf(stderr, "doppel gan train: %s [%s]\n", dp_ctx_error(ctx), dp_status_name(s));
            if (last_ckpt > 0)
                fprintf(stderr, "doppel gan train: the last good checkpoint, %s (step %lld), is unchanged; --resume "
                                "continues from it\n", r.ckpt, (long long)last_ckpt);
            else
                fprintf(stderr, "doppel gan train: no checkpoint was written\n");
            goto done;
        }
        t_steps += te - ts;
        done_steps++;
        fprintf(csv, "%lld,%.3f,%.9g,%.9g,%.9g,%.9g,%g,%.1f\n", (long long)k, r.elapsed0 + (te - r.t0), (double)st.loss_d,
                (double)st.loss_g, (double)st.d_real, (double)st.d_fake, (double)st.lr_d, (double)go.batch / (te - t_prev));
        t_prev = te;
        cli_progress_update(&pb, k - start, (k - start) * go.batch, "D %.3f  G %.3f  D(x) %.2f  D(G(z)) %.2f",
                            (double)st.loss_d, (double)st.loss_g, (double)st.d_real, (double)st.d_fake);
        int last = k == o.steps || g_stop;
        if ((o.sample_every && k % o.sample_every == 0) || last) {
            if ((s = write_grid(&r, k, path, sizeof path)) != DP_OK) {
                fail(&o, s, "writing the sample grid", dp_ctx_error(ctx));
                goto done;
            }
        }
        if ((o.ckpt_every && k % o.ckpt_every == 0) || last) {
            fflush(csv);
            if ((s = save_ckpt(&r)) != DP_OK) {
                fail(&o, s, "saving the checkpoint", dp_ctx_error(ctx));
                goto done;
            }
            last_ckpt = k;
        }
        if (g_stop) {
            stopped = 1;
            break;
        }
    }
    sigaction(SIGINT, &old_sa, NULL);
    if (!stopped) cli_progress_finish(&pb, done_steps * go.batch, "D %.3f  G %.3f  D(x) %.2f  D(G(z)) %.2f", (double)st.loss_d,
                                      (double)st.loss_g, (double)st.d_real, (double)st.d_fake);
    else if (!o.quiet) fputc('\n', stderr);
    double wall = cli_now() - r.t0;
    printf("%s %lld step%s (%lld..%lld) in %.1f s: %.0f img/s overall, %.0f img/s in the steps alone (%.1f ms a step)\n",
           stopped ? "interrupted after" : "trained", (long long)done_steps, done_steps == 1 ? "" : "s", (long long)start + 1, (long long)(start + done_steps),
           wall, (double)(done_steps * go.batch) / wall, (double)(done_steps * go.batch) / t_steps,
           1e3 * t_steps / (double)(done_steps ? done_steps : 1));
    printf("checkpoint %s (step %lld), metrics %s, last grid %s\n", r.ckpt, (long long)last_ckpt, r.csv, path);
    if (dp_gan_report(ctx, o.out, NULL, 0) == DP_OK) printf("report %s/report.html\n", o.out); /* loss curves + grids */
    rc = stopped ? 130 : 0;
done:
    if (csv) fclose(csv);
    free(r.fixed_z);
    free(r.grid_px);
    dp_gan_free(gan);
    dp_dataset_free(ds);
    dp_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------ sample */
static int cmd_sample(int argc, char **argv) {
    opts o = {.cmd = "sample", .seed = 1, .n = 64};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    if (!o.model) return usage_error(&o, "--model RUN|FILE is required");
    if (!o.grid && !o.out) return usage_error(&o, "say where the images go: --grid FILE and/or --out DIR");
    if (o.set_data || o.data_dir || o.set_arch || o.set_loss || o.set_batch || o.set_lr || o.steps || o.sample_every ||
        o.ckpt_every || o.resume || o.flip || o.face_crop || o.limit || o.images)
        return usage_error(&o, "training options are not used by sample (the checkpoint has what it needs)");
    if (o.grid && !(ends_with(o.grid, ".png") || ends_with(o.grid, ".jpg") || ends_with(o.grid, ".jpeg")))
        return usage_error(&o, "--grid must end in .png, .jpg or .jpeg");
    const char *fmt = o.format ? o.format : "png";
    int quality = (int)o.quality;

    char model[4200];
    if (is_dir(o.model)) snprintf(model, sizeof model, "%s/ckpt.safetensors", o.model);
    else snprintf(model, sizeof model, "%s", o.model);

    dp_ctx *ctx = NULL;
    dp_gan_sampler *sm = NULL;
    float *z = NULL, *px = NULL;
    dp_image grid = {0};
    rc = 1;
    dp_status s = dp_ctx_new(&(dp_ctx_opts){.threads = (int)o.threads, .seed = o.seed}, &ctx);
    if (s != DP_OK) return fail(&o, s, "cannot create a context", "");
    if ((s = dp_gan_sampler_load(ctx, model, 0, &sm)) != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
        goto done;
    }
    dp_gan_arch arch = dp_gan_sampler_arch(sm);
    int C, H, W, nz = dp_gan_sampler_nz(sm);
    dp_gan_arch_shape(arch, &C, &H, &W);
    z = malloc(sizeof(float) * (size_t)o.n * (size_t)nz);
    px = malloc(sizeof(float) * (size_t)o.n * (size_t)(C * H * W));
    if (!z || !px) {
        fail(&o, DP_ERR_NOMEM, "out of memory", "");
        goto done;
    }
    dp_rng r;
    dp_rng_seed(&r, o.seed);
    if ((s = dp_gan_noise(ctx, &r, z, o.n * nz, (float)o.truncation)) != DP_OK ||
        (s = dp_gan_sampler_generate(sm, z, o.n, px)) != DP_OK) {
        fail(&o, s, "generating", dp_ctx_error(ctx));
        goto done;
    }
    char name[4400], path[4400];
    snprintf(name, sizeof name, "%s run %s step %lld", dp_gan_arch_name(arch), o.model, (long long)dp_gan_sampler_step(sm));
    dp_label_info info = {.software = NULL, .model = name, .model_id = dp_gan_sampler_model_id(sm)};
    if (o.grid) {
        if ((s = dp_gan_grid(ctx, px, o.n, C, H, W, 0, 2, &grid)) != DP_OK ||
            (s = dp_write_synthetic(ctx, o.grid, &grid, &info, quality)) != DP_OK) {
            fail(&o, s, o.grid, dp_ctx_error(ctx));
            goto done;
        }
    }
    if (o.out) {
        if (mkdir_p(o.out) != 0) {
            fprintf(stderr, "doppel gan sample: cannot create %s: %s\n", o.out, strerror(errno));
            goto done;
        }
        for (int64_t i = 0; i < o.n; i++) {
            dp_image im = {.channels = C, .height = H, .width = W, .data = px + i * (int64_t)(C * H * W)};
            snprintf(path, sizeof path, "%s/sample_%06lld.%s", o.out, (long long)i, fmt);
            if ((s = dp_write_synthetic(ctx, path, &im, &info, quality)) != DP_OK) {
                fail(&o, s, path, dp_ctx_error(ctx));
                goto done;
            }
        }
    }
    printf("%lld images from %s (%s, step %lld, model id %08x, seed %llu", (long long)o.n, model, dp_gan_arch_name(arch),
           (long long)dp_gan_sampler_step(sm), (unsigned)dp_gan_sampler_model_id(sm), (unsigned long long)o.seed);
    if (o.truncation > 0) printf(", truncation %g", o.truncation);
    printf(")");
    if (o.grid) printf("; grid %s", o.grid);
    if (o.out) printf("; files %s/sample_*.%s", o.out, fmt);
    printf("\n");
    rc = 0;
done:
    dp_image_free(ctx, &grid);
    free(z);
    free(px);
    dp_gan_sampler_free(sm);
    dp_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------ eval */
static void print_metric(const char *name, double v, const char *note) {
    if (isfinite(v)) printf("  %-22s %10.5g   %s\n", name, v, note);
    else printf("  %-22s %10s   %s\n", name, "-", note);
}

static int cmd_eval(int argc, char **argv) {
    opts o = {.cmd = "eval", .data = "fashion-mnist", .seed = 1, .n = 2000};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    int modes = !!o.model + !!o.images + o.untrained + o.real_vs_real;
    if (modes != 1)
        return usage_error(&o, "say what to measure: exactly one of --model RUN|FILE, --images DIR, --untrained, --real-vs-real");
    if (o.grid || o.out || o.format || o.quality || o.truncation || o.steps || o.set_batch || o.set_loss || o.set_lr ||
        o.sample_every || o.ckpt_every || o.resume || o.flip || o.limit || o.run_dir)
        return usage_error(&o, "eval takes --model/--images/--untrained/--real-vs-real, --data, --data-dir, --face-crop, "
                               "--features, -n, --seed, --arch, --threads, --json");
    if (o.set_arch && o.model) return usage_error(&o, "--arch is for --untrained (a checkpoint knows its arch)");
    int fashion = !strcmp(o.data, "fashion-mnist");
    if (!fashion && o.data_dir) return usage_error(&o, "--data-dir applies to --data fashion-mnist");
    if (fashion && o.face_crop) return usage_error(&o, "--face-crop applies to folders of photos, not fashion-mnist");

    dp_ctx *ctx = NULL;
    dp_gan_sampler *sm = NULL;
    dp_gan *gan = NULL;
    dp_dataset *ds = NULL, *gen_ds = NULL;
    dp_feature_model *fm = NULL;
    float *real = NULL, *fake = NULL, *z = NULL;
    rc = 1;
    dp_status s = dp_ctx_new(&(dp_ctx_opts){.threads = (int)o.threads, .seed = o.seed}, &ctx);
    if (s != DP_OK) return fail(&o, s, "cannot create a context", "");

    /* ---- the generator (or none) and the image shape */
    char model[4200] = "", gen_name[4400] = "";
    dp_gan_arch arch;
    if (o.model) {
        if (is_dir(o.model)) snprintf(model, sizeof model, "%s/ckpt.safetensors", o.model);
        else snprintf(model, sizeof model, "%s", o.model);
        if ((s = dp_gan_sampler_load(ctx, model, 0, &sm)) != DP_OK) {
            fail(&o, s, "", dp_ctx_error(ctx));
            goto done;
        }
        arch = dp_gan_sampler_arch(sm);
        snprintf(gen_name, sizeof gen_name, "%s step %lld (%s)", o.model, (long long)dp_gan_sampler_step(sm),
                 dp_gan_arch_name(arch));
    } else {
        if (!o.arch) o.arch = fashion ? "dcgan28" : "dcgan64";
        dp_gan_arch_parse(o.arch, &arch);
        if (o.untrained) {
            dp_gan_opts go = {.arch = arch, .batch = 2, .seed = o.seed};
            if ((s = dp_gan_new(ctx, &go, &gan)) != DP_OK) {
                fail(&o, s, "", dp_ctx_error(ctx));
                goto done;
            }
            snprintf(gen_name, sizeof gen_name, "untrained %s (DCGAN initialisation, seed %llu)", dp_gan_arch_name(arch),
                     (unsigned long long)o.seed);
        } else if (o.images) {
            snprintf(gen_name, sizeof gen_name, "images in %s (fitted to %s)", o.images, dp_gan_arch_name(arch));
        } else {
            snprintf(gen_name, sizeof gen_name, "real-vs-real (second half of the real images)");
        }
    }
    int C, H, W;
    dp_gan_arch_shape(arch, &C, &H, &W);
    if (fashion && arch != DP_GAN_DCGAN28) {
        usage_error(&o, "fashion-mnist is 28x28 grey: the generator must be dcgan28");
        rc = 2;
        goto done;
    }

    /* ---- real images: the first n (2n for --real-vs-real) */
    int64_t n = o.n, need = o.real_vs_real ? 2 * n : n;
    if (fashion) s = dp_dataset_fashion_mnist(ctx, o.data_dir, 1, need, &ds);
    else s = load_folder(ctx, o.data, C, H, W, need, o.face_crop, 1, &ds);
    if (s != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
        goto done;
    }
    if (o.images) { /* the first n images of the folder, sorted by path */
        dp_folder_opts fo = {.channels = C, .height = H, .width = W, .warn = folder_warn};
        if ((s = dp_gan_images_from_folder(ctx, o.images, &fo, &gen_ds)) != DP_OK) {
            fail(&o, s, "--images", dp_ctx_error(ctx));
            goto done;
        }
        if (gen_ds->n < n) {
            fprintf(stderr, "note: %s has %lld images; using n = %lld\n", o.images, (long long)gen_ds->n, (long long)gen_ds->n);
            n = gen_ds->n;
        }
    }
    if (ds->n < need) {
        int64_t m = o.real_vs_real ? ds->n / 2 : ds->n;
        fprintf(stderr, "note: %s has %lld images; using n = %lld\n", o.data, (long long)ds->n, (long long)m);
        n = m;
    }
    if (n <= DP_PR_K + 1) {
        fprintf(stderr, "doppel gan eval: too few images (%lld) to measure\n", (long long)n);
        goto done;
    }
    int64_t per = (int64_t)C * H * W;
    real = malloc(sizeof(float) * (size_t)(n * per));
    fake = malloc(sizeof(float) * (size_t)(n * per));
    if (!real || !fake) {
        fail(&o, DP_ERR_NOMEM, "out of memory", "");
        goto done;
    }
    for (int64_t i = 0; i < n * per; i++) real[i] = ds->pixels[i] / 255.0f;

    /* ---- generated images (or the other half) */
    double t0 = cli_now();
    if (o.real_vs_real) {
        for (int64_t i = 0; i < n * per; i++) fake[i] = ds->pixels[n * per + i] / 255.0f;
    } else if (o.images) {
        for (int64_t i = 0; i < n * per; i++) fake[i] = gen_ds->pixels[i] / 255.0f;
    } else {
        int nz = sm ? dp_gan_sampler_nz(sm) : dp_gan_options(gan)->nz;
        z = malloc(sizeof(float) * (size_t)n * (size_t)nz);
        if (!z) {
            fail(&o, DP_ERR_NOMEM, "out of memory", "");
            goto done;
        }
        dp_rng r;
        dp_rng_seed(&r, o.seed);
        if ((s = dp_gan_noise(ctx, &r, z, n * nz, 0.0f)) == DP_OK)
            s = sm ? dp_gan_sampler_generate(sm, z, n, fake) : dp_gan_generate(gan, z, n, fake);
        if (s != DP_OK) {
            fail(&o, s, "generating", dp_ctx_error(ctx));
            goto done;
        }
    }
    double t_gen = cli_now() - t0;

    /* ---- features and metrics */
    if (o.features && (s = dp_feature_model_load(ctx, o.features, &fm)) != DP_OK) {
        fail(&o, s, "--features", dp_ctx_error(ctx));
        goto done;
    }
    if (!o.features && !o.json)
        fprintf(stderr, "note: no --features classifier: only the spectral distance is measured (FID-FMNIST-doppelcnn and "
                        "precision/recall need one, e.g. from 'doppel classify train')\n");
    dp_gan_eval ev;
    t0 = cli_now();
    if ((s = dp_gan_eval_images(ctx, fm, real, n, fake, n, C, H, W, &ev)) != DP_OK) {
        fail(&o, s, "measuring", dp_ctx_error(ctx));
        goto done;
    }
    double t_eval = cli_now() - t0;
    char data_name[4400];
    snprintf(data_name, sizeof data_name, "%s (%s images [0, %lld)%s%s)", o.data, fashion ? "training" : "the first",
             (long long)n, o.real_vs_real ? " vs [n, 2n)" : "", o.face_crop ? ", face-cropped" : "");
    char json[16384];
    if (!dp_gan_eval_json(&ev, o.features, gen_name, data_name, json, sizeof json)) {
        fail(&o, DP_ERR_ARG, "the JSON result does not fit (paths too long?)", "");
        goto done;
    }
    if (o.json) {
        printf("%s\n", json);
    } else {
        printf("generator: %s\nreal data: %s\nfeatures:  %s\n", gen_name, data_name,
               o.features ? o.features : "(none: spectral distance only)");
        printf("n = %lld real vs %lld generated; %.1f s to generate, %.1f s to measure\n\n", (long long)n, (long long)n,
               t_gen, t_eval);
        print_metric(ev.fid_name[0] ? ev.fid_name : "FID", ev.fid, "Frechet distance on doppel classifier features (not Inception FID)");
        print_metric("spectral distance", ev.spectral_distance, "mean squared difference of the mean log-power profiles");
        print_metric("precision (k=3)", ev.precision, "generated images inside the real k-NN manifold");
        print_metric("recall (k=3)", ev.recall, "real images inside the generated k-NN manifold");
    }
    if (o.model && is_dir(o.model)) {
        char ep[4400], rp[4400];
        snprintf(ep, sizeof ep, "%s/eval.json", o.model);
        FILE *f = fopen(ep, "w");
        if (!f || fprintf(f, "%s\n", json) < 0 || fclose(f) != 0) {
            fprintf(stderr, "doppel gan eval: cannot write %s: %s\n", ep, strerror(errno));
            goto done;
        }
        if ((s = dp_gan_report(ctx, o.model, rp, sizeof rp)) != DP_OK) {
            fail(&o, s, "report", dp_ctx_error(ctx));
            goto done;
        }
        if (!o.json) printf("\nsaved %s; report %s\n", ep, rp);
    }
    rc = 0;
done:
    free(real);
    free(fake);
    free(z);
    dp_feature_model_free(fm);
    dp_dataset_free(ds);
    dp_dataset_free(gen_ds);
    dp_gan_sampler_free(sm);
    dp_gan_free(gan);
    dp_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------ export */
static int cmd_export(int argc, char **argv) {
    opts o = {.cmd = "export"};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    if (!o.model || !o.out) return usage_error(&o, "--model RUN|FILE and --out FILE are required");
    if (argc != 4) return usage_error(&o, "export takes only --model and --out");
    if (!ends_with(o.out, ".safetensors")) return usage_error(&o, "--out must end in .safetensors");
    char model[4200];
    if (is_dir(o.model)) snprintf(model, sizeof model, "%s/ckpt.safetensors", o.model);
    else snprintf(model, sizeof model, "%s", o.model);
    dp_ctx *ctx = NULL;
    dp_gan_sampler *sm = NULL;
    dp_status s = dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx);
    if (s != DP_OK) return fail(&o, s, "cannot create a context", "");
    rc = 1;
    char data[4200] = "";
    const char *extra[3] = {NULL};
    if (dp_checkpoint_meta(ctx, model, "doppel.gan.data", data, sizeof data) == DP_OK)
        extra[0] = "doppel.gan.data", extra[1] = data;
    dp_ctx_clear_error(ctx);
    if ((s = dp_gan_sampler_load(ctx, model, 1, &sm)) != DP_OK || (s = dp_gan_sampler_save(sm, o.out, extra)) != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
    } else {
        printf("%s: %s generator of %s (step %lld, model id %08x), no discriminator or optimiser\n", o.out,
               dp_gan_arch_name(dp_gan_sampler_arch(sm)), model, (long long)dp_gan_sampler_step(sm),
               (unsigned)dp_gan_sampler_model_id(sm));
        rc = 0;
    }
    dp_gan_sampler_free(sm);
    dp_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------ report */
static int cmd_report(int argc, char **argv) {
    opts o = {.cmd = "report"};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    if (!o.run_dir) return usage_error(&o, "--run RUN (the run folder) is required");
    if (argc != 2) return usage_error(&o, "report takes only --run RUN");
    if (!is_dir(o.run_dir)) {
        fprintf(stderr, "doppel gan report: %s is not a folder\n", o.run_dir);
        return 1;
    }
    dp_ctx *ctx = NULL;
    dp_status s = dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx);
    if (s != DP_OK) return fail(&o, s, "cannot create a context", "");
    char path[4400];
    if ((s = dp_gan_report(ctx, o.run_dir, path, sizeof path)) != DP_OK) rc = fail(&o, s, "", dp_ctx_error(ctx));
    else printf("report %s\n", path);
    dp_ctx_free(ctx);
    return rc;
}

int cmd_gan(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(argv[1], "sample")) return cmd_sample(argc - 2, argv + 2);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(argv[1], "report")) return cmd_report(argc - 2, argv + 2);
    if (!strcmp(argv[1], "export")) return cmd_export(argc - 2, argv + 2);
    fprintf(stderr, "doppel gan: unknown subcommand '%s' (train, sample, eval, report or export; see 'doppel gan --help')\n",
            argv[1]);
    return 2;
}
