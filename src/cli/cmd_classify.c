/* doppel classify train|eval — image classifiers on Fashion-MNIST or on a
 * folder of class subfolders.
 *
 * Training uses two graphs over one paramset: a training graph (batch B,
 * training mode: batch statistics, dropout, loss = cross-entropy) and an eval
 * graph (eval mode: running statistics, no dropout) used for validation and
 * test. The eval graph has a fixed batch; the last partial batch is padded
 * with repeats of a real sample and only the real rows are counted, which is
 * exact because eval mode treats every row independently. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/parse.h"
#include "doppel/doppel.h"

#define EVAL_BATCH 64 /* activation memory grows with it (about 1 MiB an image for the CNN) */
#define MAX_CLASSES 1000

static const char *const usage_text =
    "usage: doppel classify train [options]\n"
    "       doppel classify eval --model MODEL.safetensors [options]\n"
    "\n"
    "Train or evaluate an image classifier.\n"
    "\n"
    "data (both commands):\n"
    "  --data fashion-mnist|DIR  Fashion-MNIST (IDX files), or a folder DIR/<class>/*.png|jpg|webp\n"
    "                            (default fashion-mnist)\n"
    "  --data-dir DIR            where the Fashion-MNIST files are (default " DP_FASHION_MNIST_DIR ")\n"
    "  --limit N                 use at most N images of each set (quick tests)\n"
    "  --threads N               worker threads (default: all CPUs)\n"
    "  --batch N                 batch size (default 64)\n"
    "\n"
    "train:\n"
    "  --arch cnn|mlp            cnn: conv32-bn-relu-pool, conv64-bn-relu-pool, dense128, dropout, dense\n"
    "                            (default); mlp: dense256-relu-dropout-dense (faster, less accurate)\n"
    "  --epochs N                passes over the training set (default 3)\n"
    "  --lr X                    learning rate (default 0.001 for adam, 0.05 for sgd)\n"
    "  --optim adam|sgd          optimiser (default adam; sgd uses momentum 0.9)\n"
    "  --schedule cosine|constant  learning-rate schedule (default cosine, to 0 at the end)\n"
    "  --weight-decay X          L2 penalty (default 0)\n"
    "  --dropout P               dropout before the last layer (default 0.25)\n"
    "  --val-split F             fraction of the training set held out for validation (default 0.1)\n"
    "  --seed N                  seed for initialisation, shuffling and dropout (default 1)\n"
    "  --out FILE                checkpoint to write (default RUN/model.safetensors with --run,\n"
    "                            else classifier.safetensors); rewritten after every epoch\n"
    "  --run DIR                 append per-epoch metrics to DIR/metrics.csv\n"
    "  --test-data DIR           folder data only: a test folder evaluated at the end\n"
    "  --size N                  folder data only: model input N x N (default 64)\n"
    "  --grey                    folder data only: greyscale input (default RGB)\n"
    "  --quiet                   no progress bar\n"
    "\n"
    "eval:\n"
    "  --model FILE              checkpoint written by 'doppel classify train'\n"
    "  --json                    print the results as JSON\n"
    "\n"
    "Fashion-MNIST: train uses the 60,000 training images (minus the validation split) and reports\n"
    "the 10,000 test images at the end; eval uses the test images. Exit status: 0 ok, 1 failure,\n"
    "2 bad usage.\n";

typedef struct opts {
    const char *cmd;
    const char *data, *data_dir, *test_data, *out, *run, *arch, *optim, *schedule, *model;
    int epochs, batch, threads, size, grey, json, quiet;
    double lr, weight_decay, dropout, val_split;
    uint64_t seed;
    int64_t limit;
} opts;

/* ------------------------------------------------------------ small helpers */
static int usage_error(const opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const opts *o, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "doppel classify %s: ", o->cmd ? o->cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'doppel classify --help')\n");
    return 2;
}

static int fail(const opts *o, dp_status s, const char *what, const char *msg) {
    int has_what = what && what[0], has_msg = msg && msg[0];
    fprintf(stderr, "doppel classify %s: %s%s%s [%s]\n", o->cmd, has_what ? what : "", has_what && has_msg ? ": " : "",
            has_msg ? msg : "", dp_status_name(s));
    return 1;
}

static int parse_f(const char *s, double lo, double hi, int lo_open, double *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi || (lo_open && v <= lo)) return 0;
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

/* JSON string (with quotes) into f. */
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

/* Class names <-> the checkpoint's "doppel.classes" value, a JSON array of strings. */
static int classes_to_json(char *const *names, int k, char *buf, size_t n) {
    size_t o = 0;
#define PUT(ch)                                                                                                        \
    do {                                                                                                               \
        if (o + 1 >= n) return 0;                                                                                      \
        buf[o++] = (ch);                                                                                               \
    } while (0)
    PUT('[');
    for (int i = 0; i < k; i++) {
        if (i) PUT(',');
        PUT('"');
        for (const char *s = names[i]; *s; s++) {
            unsigned char c = (unsigned char)*s;
            if (c == '"' || c == '\\') {
                PUT('\\');
                PUT((char)c);
            } else if (c < 0x20) {
                char esc[8];
                snprintf(esc, sizeof esc, "\\u%04x", c);
                for (char *e = esc; *e; e++) PUT(*e);
            } else {
                PUT((char)c);
            }
        }
        PUT('"');
    }
    PUT(']');
#undef PUT
    buf[o] = 0;
    return 1;
}

/* Parses ["a","b",...] into names (each malloc'd); returns the count, or -1. */
static int classes_from_json(const char *s, char ***names_out) {
    char **names = NULL;
    int k = 0;
    while (*s == ' ') s++;
    if (*s++ != '[') return -1;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ']') break;
        if (*s++ != '"' || k >= MAX_CLASSES) goto bad;
        char *v = malloc(strlen(s) + 1), *d = v;
        if (!v) goto bad;
        while (*s && *s != '"') {
            if (*s == '\\') {
                s++;
                if (*s == 'u') {
                    unsigned cp = 0;
                    for (int i = 1; i <= 4; i++) {
                        char h = s[i];
                        if (!h) break;
                        cp = cp * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                    }
                    *d++ = (char)(cp < 0x80 ? cp : '?');
                    s += 5;
                    continue;
                }
                if (!*s) break;
                *d++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
                s++;
                continue;
            }
            *d++ = *s++;
        }
        *d = 0;
        if (*s != '"') {
            free(v);
            goto bad;
        }
        s++;
        char **nn = realloc(names, sizeof(char *) * (size_t)(k + 1));
        if (!nn) {
            free(v);
            goto bad;
        }
        names = nn;
        names[k++] = v;
    }
    *names_out = names;
    return k;
bad:
    for (int i = 0; i < k; i++) free(names[i]);
    free(names);
    return -1;
}

static void free_names(char **names, int k) {
    for (int i = 0; names && i < k; i++) free(names[i]);
    free(names);
}

/* ------------------------------------------------------------ the models */
static int arch_known(const char *a) { return !strcmp(a, "cnn") || !strcmp(a, "mlp"); }

/* The same code builds the training graph and the eval graph: the layer
 * builders create each parameter on first use and reuse it after that. */
static dp_node *build_model(dp_graph *g, dp_paramset *ps, const char *arch, dp_node *x, int n_classes, float dropout) {
    dp_node *h;
    if (!strcmp(arch, "cnn")) {
        dp_conv_opts same = {.same = 1};
        dp_pool_opts pool = {.kernel_h = 2, .kernel_w = 2};
        /* No conv bias: the batch norm that follows would cancel it. */
        h = dp_nn_conv2d(g, ps, "conv1", x, 32, 3, 3, &same, 0, NULL);
        h = dp_maxpool2d(g, dp_relu(g, dp_nn_batchnorm2d(g, ps, "bn1", h, 0.1f, 1e-5f)), &pool);
        h = dp_nn_conv2d(g, ps, "conv2", h, 64, 3, 3, &same, 0, NULL);
        h = dp_maxpool2d(g, dp_relu(g, dp_nn_batchnorm2d(g, ps, "bn2", h, 0.1f, 1e-5f)), &pool);
        h = dp_relu(g, dp_nn_dense(g, ps, "fc1", dp_flatten(g, h), 128, 1, NULL));
    } else {
        h = dp_relu(g, dp_nn_dense(g, ps, "fc1", dp_flatten(g, x), 256, 1, NULL));
    }
    if (dropout > 0) h = dp_dropout(g, h, dropout);
    return dp_nn_dense(g, ps, "fc2", h, n_classes, 1, NULL);
}

typedef struct net {
    dp_graph *g;
    dp_node *x, *y, *logits, *loss;
    int64_t batch;
} net;

static dp_status net_build(dp_ctx *ctx, dp_paramset *ps, const char *arch, int training, int64_t batch, int C, int H,
                           int W, int K, float dropout, uint64_t seed, net *n) {
    memset(n, 0, sizeof *n);
    dp_status s = dp_graph_new(ctx, &n->g);
    if (s != DP_OK) return s;
    n->batch = batch;
    n->x = dp_input(n->g, "x", 4, (int64_t[]){batch, C, H, W});
    n->logits = build_model(n->g, ps, arch, n->x, K, dropout);
    dp_graph_mark_output(n->g, n->logits);
    if (training) {
        n->y = dp_input(n->g, "y", 1, (int64_t[]){batch});
        n->loss = dp_cross_entropy(n->g, n->logits, n->y);
        dp_graph_mark_output(n->g, n->loss);
    }
    if (!training && (s = dp_graph_set_no_grad(n->g)) != DP_OK) return s;
    if ((s = dp_graph_compile(n->g)) != DP_OK) return s;
    if ((s = dp_graph_set_training(n->g, training)) != DP_OK) return s;
    return dp_graph_seed(n->g, seed);
}

static int argmax(const float *v, int k) {
    int best = 0;
    for (int i = 1; i < k; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* -log softmax(v)[t], computed stably. */
static double xent(const float *v, int k, int t) {
    float m = v[0];
    for (int i = 1; i < k; i++) m = v[i] > m ? v[i] : m;
    double s = 0;
    for (int i = 0; i < k; i++) s += exp((double)(v[i] - m));
    return log(s) + (double)(m - v[t]);
}

typedef struct eval_result {
    int64_t n, correct;
    double loss;      /* mean */
    int64_t *confusion; /* K*K (true row, predicted column) or NULL */
} eval_result;

/* Runs the eval graph over the samples idx[0..n) of ds. label_map (may be
 * NULL) maps the dataset's class indices to the model's. */
static dp_status evaluate(net *ev, const dp_dataset *ds, const int64_t *idx, int64_t n, const float *mean,
                          const float *std, const int *label_map, int K, const char *label, int show, eval_result *r) {
    int64_t B = ev->batch, bidx[EVAL_BATCH];
    float *x = dp_tensor_f32(dp_node_value(ev->x));
    const float *lg = dp_tensor_f32(dp_node_value(ev->logits));
    cli_progress pb;
    int64_t steps = (n + B - 1) / B;
    cli_progress_start(&pb, label, steps, "img", show);
    r->n = n;
    r->correct = 0;
    double loss = 0;
    for (int64_t s = 0; s < steps; s++) {
        int64_t off = s * B, m = n - off < B ? n - off : B;
        for (int64_t i = 0; i < B; i++) bidx[i] = idx ? idx[off + (i < m ? i : 0)] : off + (i < m ? i : 0);
        dp_dataset_batch(ds, bidx, B, mean, std, x, NULL);
        dp_status st = dp_graph_run(ev->g);
        if (st != DP_OK) return st;
        for (int64_t i = 0; i < m; i++) {
            const float *row = lg + i * K;
            int t = ds->labels[bidx[i]];
            if (label_map) t = label_map[t];
            int p = argmax(row, K);
            r->correct += p == t;
            loss += xent(row, K, t);
            if (r->confusion) r->confusion[(int64_t)t * K + p]++;
        }
        cli_progress_update(&pb, s + 1, off + m, "acc %.2f%%", 100.0 * (double)r->correct / (double)(off + m));
    }
    r->loss = n ? loss / (double)n : 0;
    cli_progress_finish(&pb, n, "acc %.2f%%", n ? 100.0 * (double)r->correct / (double)n : 0.0);
    return DP_OK;
}

/* ------------------------------------------------------------ options */
static int parse_opts(int argc, char **argv, opts *o) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char name[64];
        if (strncmp(a, "--", 2) != 0) return usage_error(o, "unexpected argument '%s'", a);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len >= sizeof name) return usage_error(o, "unknown option '%s'", a);
        memcpy(name, a, len);
        name[len] = 0;
        int flag = !strcmp(name, "--grey") || !strcmp(name, "--json") || !strcmp(name, "--quiet");
        if (flag) {
            if (eq) return usage_error(o, "%s takes no value", name);
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) return usage_error(o, "%s needs a value", name);
            v = argv[++i];
        }
        int64_t iv;
        double dv;
#define INT_OPT(opt, lo, hi, field)                                                                                    \
    else if (!strcmp(name, opt)) {                                                                                     \
        if (!dp_parse_i64(v, lo, hi, &iv))                                                                                \
            return usage_error(o, "%s must be an integer in [%lld, %lld], got '%s'", opt, (long long)(lo),            \
                               (long long)(hi), v);                                                                    \
        o->field = iv;                                                                                                 \
    }
        if (flag) {
            if (!strcmp(name, "--grey")) o->grey = 1;
            else if (!strcmp(name, "--json")) o->json = 1;
            else o->quiet = 1;
        }
        else if (!strcmp(name, "--data")) o->data = v;
        else if (!strcmp(name, "--data-dir")) o->data_dir = v;
        else if (!strcmp(name, "--test-data")) o->test_data = v;
        else if (!strcmp(name, "--out")) o->out = v;
        else if (!strcmp(name, "--run")) o->run = v;
        else if (!strcmp(name, "--model")) o->model = v;
        else if (!strcmp(name, "--arch")) {
            if (!arch_known(v)) return usage_error(o, "--arch must be cnn or mlp, got '%s'", v);
            o->arch = v;
        } else if (!strcmp(name, "--optim")) {
            if (strcmp(v, "adam") && strcmp(v, "sgd")) return usage_error(o, "--optim must be adam or sgd, got '%s'", v);
            o->optim = v;
        } else if (!strcmp(name, "--schedule")) {
            if (strcmp(v, "cosine") && strcmp(v, "constant"))
                return usage_error(o, "--schedule must be cosine or constant, got '%s'", v);
            o->schedule = v;
        }
        INT_OPT("--epochs", 1, 100000, epochs)
        INT_OPT("--batch", 1, 65536, batch)
        INT_OPT("--threads", 0, 256, threads)
        INT_OPT("--size", 4, 1024, size)
        INT_OPT("--limit", 0, INT64_MAX, limit)
        else if (!strcmp(name, "--seed")) {
            if (!dp_parse_i64(v, 0, INT64_MAX, &iv)) return usage_error(o, "--seed must be a non-negative integer, got '%s'", v);
            o->seed = (uint64_t)iv;
        } else if (!strcmp(name, "--lr")) {
            if (!parse_f(v, 0, 10, 1, &dv)) return usage_error(o, "--lr must be a number in (0, 10], got '%s'", v);
            o->lr = dv;
        } else if (!strcmp(name, "--weight-decay")) {
            if (!parse_f(v, 0, 1, 0, &dv)) return usage_error(o, "--weight-decay must be in [0, 1], got '%s'", v);
            o->weight_decay = dv;
        } else if (!strcmp(name, "--dropout")) {
            if (!parse_f(v, 0, 0.95, 0, &dv)) return usage_error(o, "--dropout must be in [0, 0.95], got '%s'", v);
            o->dropout = dv;
        } else if (!strcmp(name, "--val-split")) {
            if (!parse_f(v, 0, 0.9, 0, &dv)) return usage_error(o, "--val-split must be in [0, 0.9], got '%s'", v);
            o->val_split = dv;
        } else {
            return usage_error(o, "unknown option '%s'", name);
        }
#undef INT_OPT
    }
    return 0;
}

static int is_fashion(const opts *o) { return !strcmp(o->data, "fashion-mnist"); }

static void folder_warn(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "\r\033[Kwarning: %s\n", msg);
}

typedef struct load_progress {
    cli_progress pb;
} load_progress;
static void folder_progress(void *user, int64_t done, int64_t total) {
    load_progress *lp = user;
    lp->pb.total = total > 0 ? total : 1;
    cli_progress_update(&lp->pb, done, done, NULL);
}

/* Loads a data set: Fashion-MNIST (train or test split) or a folder fitted to C×H×W. */
static dp_status load_data(dp_ctx *ctx, const opts *o, const char *folder, int train, int C, int H, int W,
                           dp_dataset **out) {
    if (!folder) return dp_dataset_fashion_mnist(ctx, o->data_dir, train, o->limit, out);
    dp_folder_opts fo = {.channels = C, .height = H, .width = W, .limit = o->limit, .warn = folder_warn};
    load_progress lp;
    cli_progress_start(&lp.pb, "loading", 1, "img", !o->quiet && !o->json);
    fo.progress = folder_progress;
    fo.progress_user = &lp;
    dp_status s = dp_dataset_from_folder(ctx, folder, &fo, out);
    if (s == DP_OK && !o->quiet && !o->json) {
        lp.pb.total = (*out)->n + (*out)->skipped;
        cli_progress_finish(&lp.pb, lp.pb.total, "%lld images, %lld skipped", (long long)(*out)->n, (long long)(*out)->skipped);
    }
    return s;
}

/* ------------------------------------------------------------ train */
static int cmd_train(int argc, char **argv) {
    opts o = {.cmd = "train", .data = "fashion-mnist", .arch = "cnn", .optim = "adam", .schedule = "cosine",
              .epochs = 3, .batch = 64, .seed = 1, .dropout = 0.25, .val_split = 0.1, .size = 0};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    if (o.model) return usage_error(&o, "--model is for 'eval' (train writes --out)");
    if (o.json) return usage_error(&o, "--json is for 'eval'");
    int fashion = is_fashion(&o);
    if (fashion && (o.size || o.grey || o.test_data))
        return usage_error(&o, "--size, --grey and --test-data apply to folder data, not fashion-mnist");
    if (!fashion && o.data_dir) return usage_error(&o, "--data-dir applies to --data fashion-mnist");
    if (o.lr == 0) o.lr = strcmp(o.optim, "sgd") ? 1e-3 : 0.05;
    char outbuf[4096];
    if (o.run && mkdir_p(o.run) != 0) {
        fprintf(stderr, "doppel classify train: cannot create the run folder %s: %s\n", o.run, strerror(errno));
        return 1;
    }
    if (!o.out) {
        if (o.run) snprintf(outbuf, sizeof outbuf, "%s/model.safetensors", o.run);
        else snprintf(outbuf, sizeof outbuf, "classifier.safetensors");
        o.out = outbuf;
    }

    dp_ctx *ctx = NULL;
    dp_dataset *train = NULL, *test = NULL;
    dp_paramset *ps = NULL;
    dp_optim *opt = NULL;
    net tn = {0}, ev = {0};
    int64_t *idx = NULL;
    FILE *csv = NULL;
    rc = 1;
    dp_status s = dp_ctx_new(&(dp_ctx_opts){.threads = o.threads, .seed = o.seed}, &ctx);
    if (s != DP_OK) return fail(&o, s, "cannot create a context", "");

    /* ---- data */
    int C = o.grey ? 1 : 3, H = o.size ? o.size : 64, W = H;
    const char *folder = fashion ? NULL : o.data;
    double t_load = cli_now();
    if ((s = load_data(ctx, &o, folder, 1, C, H, W, &train)) != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
        goto done;
    }
    C = train->channels, H = train->height, W = train->width;
    int K = train->n_classes;
    if (fashion) s = load_data(ctx, &o, NULL, 0, C, H, W, &test);
    else if (o.test_data) s = load_data(ctx, &o, o.test_data, 0, C, H, W, &test);
    if (s != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
        goto done;
    }
    if (test && !fashion) { /* the test folder must hold the same classes, in the same order */
        int same = test->n_classes == K;
        for (int i = 0; same && i < K; i++) same = !strcmp(test->class_names[i], train->class_names[i]);
        if (!same) {
            fprintf(stderr, "doppel classify train: %s and %s do not have the same class subfolders\n", o.data, o.test_data);
            goto done;
        }
    }
    if (K < 2 || K > MAX_CLASSES) {
        fprintf(stderr, "doppel classify train: %s has %d classes; a classifier needs 2..%d\n", o.data, K, MAX_CLASSES);
        goto done;
    }

    /* ---- split (seeded shuffle, then the first part is validation) */
    int64_t N = train->n, n_val = (int64_t)llround(o.val_split * (double)N);
    if (n_val >= N) n_val = N - 1;
    int64_t n_tr = N - n_val;
    idx = malloc(sizeof(int64_t) * (size_t)N);
    if (!idx) {
        fail(&o, DP_ERR_NOMEM, "out of memory", "");
        goto done;
    }
    for (int64_t i = 0; i < N; i++) idx[i] = i;
    dp_rng rng;
    dp_rng_stream(&rng, o.seed, 1);
    dp_shuffle_i64(&rng, idx, N);
    int64_t *val_idx = idx, *tr_idx = idx + n_val;
    int64_t B = o.batch;
    if (B > n_tr) {
        fprintf(stderr, "note: --batch %lld is larger than the %lld training images; using %lld\n", (long long)B,
                (long long)n_tr, (long long)n_tr);
        B = n_tr;
    }
    float mean[3], std[3];
    dp_dataset_stats(train, tr_idx, n_tr, mean, std);
    printf("data: %s, %lld train + %lld validation images", fashion ? "fashion-mnist" : o.data, (long long)n_tr,
           (long long)n_val);
    if (test) printf(" + %lld test images", (long long)test->n);
    printf(", %dx%dx%d, %d classes (%.1f s to load)\n", C, H, W, K, cli_now() - t_load);
    if (train->skipped) printf("data: %lld unreadable files skipped\n", (long long)train->skipped);

    /* ---- model, graphs, optimiser */
    if ((s = dp_paramset_new(ctx, &ps)) != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
        goto done;
    }
    s = net_build(ctx, ps, o.arch, 1, B, C, H, W, K, (float)o.dropout, o.seed, &tn);
    if (s == DP_OK) s = dp_paramset_init(ps, o.seed);
    int64_t EB = EVAL_BATCH;
    if (s == DP_OK) s = net_build(ctx, ps, o.arch, 0, EB, C, H, W, K, (float)o.dropout, o.seed, &ev);
    if (s != DP_OK) {
        fail(&o, s, "building the model", dp_ctx_error(ctx));
        goto done;
    }
    int64_t steps = n_tr / B; /* the partial last batch is dropped; the shuffle changes it each epoch */
    dp_optim_opts oo = {.kind = strcmp(o.optim, "sgd") ? DP_OPTIM_ADAM : DP_OPTIM_SGD, .lr = (float)o.lr,
                        .momentum = 0.9f, .weight_decay = (float)o.weight_decay};
    if (!strcmp(o.schedule, "cosine"))
        oo.schedule = (dp_lr_schedule){.kind = DP_LR_COSINE, .total_steps = (int)(steps * o.epochs), .min_lr = 0};
    if ((s = dp_optim_new(ps, &oo, &opt)) != DP_OK) {
        fail(&o, s, "creating the optimiser", dp_ctx_error(ctx));
        goto done;
    }
    printf("model: %s, %lld parameters; optimiser %s lr %g (%s), batch %lld, %d threads; activations %.0f MiB "
           "(training graph) + %.0f MiB (eval graph)\n",
           o.arch, (long long)dp_paramset_numel(ps, 1), o.optim, o.lr, o.schedule, (long long)B, dp_ctx_threads(ctx),
           (double)dp_graph_memory_bytes(tn.g) / 1048576.0, (double)dp_graph_memory_bytes(ev.g) / 1048576.0);
    fflush(stdout);

    if (o.run) {
        char p[4200];
        snprintf(p, sizeof p, "%s/metrics.csv", o.run);
        struct stat st;
        int fresh = stat(p, &st) != 0 || st.st_size == 0;
        csv = fopen(p, "a");
        if (!csv) {
            fprintf(stderr, "doppel classify train: cannot open %s: %s\n", p, strerror(errno));
            goto done;
        }
        if (fresh) fprintf(csv, "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s\n");
    }

    /* ---- metadata for the checkpoint */
    char arch_meta[32], input[64], norm_m[96], norm_s[96], epochs_s[32], *classes_json = malloc(65536);
    if (!classes_json || !classes_to_json(train->class_names, K, classes_json, 65536)) {
        fprintf(stderr, "doppel classify train: the class names are too long to store\n");
        free(classes_json);
        goto done;
    }
    snprintf(arch_meta, sizeof arch_meta, "classify-%s", o.arch);
    snprintf(input, sizeof input, "%d,%d,%d", C, H, W);
    if (C == 1) {
        snprintf(norm_m, sizeof norm_m, "%.6f", mean[0]);
        snprintf(norm_s, sizeof norm_s, "%.6f", std[0]);
    } else {
        snprintf(norm_m, sizeof norm_m, "%.6f,%.6f,%.6f", mean[0], mean[1], mean[2]);
        snprintf(norm_s, sizeof norm_s, "%.6f,%.6f,%.6f", std[0], std[1], std[2]);
    }

    /* ---- train */
    float *xb = dp_tensor_f32(dp_node_value(tn.x)), *yb = dp_tensor_f32(dp_node_value(tn.y));
    const float *lg = dp_tensor_f32(dp_node_value(tn.logits)), *lossv = dp_tensor_f32(dp_node_value(tn.loss));
    double t_train = cli_now();
    eval_result vr = {0};
    for (int ep = 1; ep <= o.epochs; ep++) {
        dp_shuffle_i64(&rng, tr_idx, n_tr);
        char label[64];
        snprintf(label, sizeof label, "epoch %d/%d", ep, o.epochs);
        cli_progress pb;
        cli_progress_start(&pb, label, steps, "img", !o.quiet);
        double t0 = cli_now(), loss_sum = 0, lr0 = dp_optim_lr(opt);
        int64_t correct = 0, seen = 0;
        for (int64_t st = 0; st < steps; st++) {
            const int64_t *bi = tr_idx + st * B;
            dp_dataset_batch(train, bi, B, mean, std, xb, yb);
            if ((s = dp_graph_run(tn.g)) == DP_OK && (s = dp_optim_zero_grad(opt)) == DP_OK &&
                (s = dp_graph_backward(tn.g, tn.loss, 0, NULL)) == DP_OK)
                s = dp_optim_step(opt);
            if (s != DP_OK) {
                if (!o.quiet) fputc('\n', stderr);
                fail(&o, s, "training step failed",
                     s == DP_ERR_NUMERIC ? "the loss diverged (NaN/Inf gradients); try a lower --lr" : dp_ctx_error(ctx));
                free(classes_json);
                goto done;
            }
            loss_sum += lossv[0] * (double)B;
            for (int64_t i = 0; i < B; i++) correct += argmax(lg + i * K, K) == (int)yb[i];
            seen += B;
            cli_progress_update(&pb, st + 1, seen, "loss %.4f  acc %.2f%%", loss_sum / (double)seen,
                                100.0 * (double)correct / (double)seen);
        }
        cli_progress_finish(&pb, seen, "loss %.4f  acc %.2f%%", loss_sum / (double)seen, 100.0 * (double)correct / (double)seen);
        double secs = cli_now() - t0;
        if (n_val > 0) {
            snprintf(label, sizeof label, "  validation");
            if ((s = evaluate(&ev, train, val_idx, n_val, mean, std, NULL, K, label, !o.quiet, &vr)) != DP_OK) {
                fail(&o, s, "validation failed", dp_ctx_error(ctx));
                free(classes_json);
                goto done;
            }
        }
        double tl = loss_sum / (double)seen, ta = (double)correct / (double)seen;
        printf("epoch %d/%d: train loss %.4f acc %.2f%%", ep, o.epochs, tl, 100 * ta);
        if (n_val > 0) printf(", validation loss %.4f acc %.2f%%", vr.loss, 100.0 * (double)vr.correct / (double)vr.n);
        printf(", %.1f s (%.0f img/s)\n", secs, (double)seen / secs);
        fflush(stdout);
        if (csv) {
            fprintf(csv, "%d,%.6f,%.6f,", ep, tl, ta);
            if (n_val > 0) fprintf(csv, "%.6f,%.6f,", vr.loss, (double)vr.correct / (double)vr.n);
            else fprintf(csv, ",,");
            fprintf(csv, "%g,%.3f,%.1f\n", lr0, secs, (double)seen / secs);
            fflush(csv);
        }
        snprintf(epochs_s, sizeof epochs_s, "%d", ep);
        const char *extra[] = {"doppel.task", "classify", "doppel.input", input, "doppel.classes", classes_json,
                               "doppel.norm_mean", norm_m, "doppel.norm_std", norm_s, "doppel.dataset",
                               fashion ? "fashion-mnist" : o.data, "doppel.epochs", epochs_s, NULL};
        if ((s = dp_checkpoint_save(o.out, ps, NULL, arch_meta, extra)) != DP_OK) {
            fail(&o, s, "saving the checkpoint", dp_ctx_error(ctx));
            free(classes_json);
            goto done;
        }
    }
    free(classes_json);
    printf("trained %d epoch%s in %.1f s; saved %s\n", o.epochs, o.epochs == 1 ? "" : "s", cli_now() - t_train, o.out);
    if (test) {
        eval_result tr = {0};
        if ((s = evaluate(&ev, test, NULL, test->n, mean, std, NULL, K, "  test", !o.quiet, &tr)) != DP_OK) {
            fail(&o, s, "test evaluation failed", dp_ctx_error(ctx));
            goto done;
        }
        printf("test: accuracy %.2f%% (%lld/%lld), loss %.4f\n", 100.0 * (double)tr.correct / (double)tr.n,
               (long long)tr.correct, (long long)tr.n, tr.loss);
    }
    rc = 0;
done:
    if (csv) fclose(csv);
    free(idx);
    dp_optim_free(opt);
    dp_graph_free(tn.g);
    dp_graph_free(ev.g);
    dp_paramset_free(ps);
    dp_dataset_free(train);
    dp_dataset_free(test);
    dp_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------ eval */
static int cmd_eval(int argc, char **argv) {
    opts o = {.cmd = "eval", .data = "fashion-mnist", .batch = EVAL_BATCH};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    if (!o.model) return usage_error(&o, "--model FILE is required");
    if (o.epochs || o.out || o.run || o.test_data || o.size || o.grey || o.lr || o.seed || o.dropout || o.val_split ||
        o.optim || o.schedule || o.weight_decay)
        return usage_error(&o, "training options are not used by eval (the model file has what it needs)");
    int fashion = is_fashion(&o);
    if (!fashion && o.data_dir) return usage_error(&o, "--data-dir applies to --data fashion-mnist");
    if (o.batch > EVAL_BATCH) o.batch = EVAL_BATCH;

    dp_ctx *ctx = NULL;
    dp_dataset *ds = NULL;
    dp_paramset *ps = NULL;
    net ev = {0};
    char **names = NULL;
    int K = 0, *label_map = NULL;
    int64_t *confusion = NULL;
    rc = 1;
    dp_status s = dp_ctx_new(&(dp_ctx_opts){.threads = o.threads, .seed = 1}, &ctx);
    if (s != DP_OK) return fail(&o, s, "cannot create a context", "");

    /* ---- what the checkpoint says it is */
    char arch[64], input[64], nm[128], nsd[128];
    char *cls = malloc(65536);
    if (!cls) goto done;
    if ((s = dp_checkpoint_meta(ctx, o.model, "doppel.arch", arch, sizeof arch)) != DP_OK) {
        fail(&o, s, "", s == DP_ERR_NOT_FOUND ? "the model file has no doppel.arch metadata (not written by doppel?)"
                                                : dp_ctx_error(ctx));
        goto done;
    }
    if (strncmp(arch, "classify-", 9) != 0 || !arch_known(arch + 9)) {
        fprintf(stderr,
                "doppel classify eval: %s: model arch is '%s', not a classifier of this command "
                "(classify-cnn or classify-mlp, as written by 'doppel classify train')\n",
                o.model, arch);
        goto done;
    }
    if (o.arch && strcmp(arch + 9, o.arch)) {
        fprintf(stderr, "doppel classify eval: %s: the model is %s, not --arch %s\n", o.model, arch, o.arch);
        goto done;
    }
    int chw[3] = {1, 1, 1};
    const char *bad = NULL;
    if (dp_checkpoint_meta(ctx, o.model, "doppel.input", input, sizeof input) != DP_OK ||
        !dp_parse_ints(input, ',', 3, 1, 4096, chw) || (chw[0] != 1 && chw[0] != 3))
        bad = "doppel.input";
    else if (dp_checkpoint_meta(ctx, o.model, "doppel.classes", cls, 65536) != DP_OK ||
             (K = classes_from_json(cls, &names)) < 2)
        bad = "doppel.classes";
    float mean[3], std[3];
    if (!bad && (dp_checkpoint_meta(ctx, o.model, "doppel.norm_mean", nm, sizeof nm) != DP_OK ||
                 dp_checkpoint_meta(ctx, o.model, "doppel.norm_std", nsd, sizeof nsd) != DP_OK ||
                 !dp_parse_f32s(nm, ',', chw[0], -FLT_MAX, FLT_MAX, mean) ||
                 !dp_parse_f32s(nsd, ',', chw[0], -FLT_MAX, FLT_MAX, std)))
        bad = "doppel.norm_mean/doppel.norm_std";
    int C = chw[0], H = chw[1], W = chw[2];
    if (bad) {
        fprintf(stderr, "doppel classify eval: %s: missing or invalid %s metadata\n", o.model, bad);
        if (K < 0) K = 0;
        goto done;
    }

    /* ---- the model: build the graph (creates the parameters), then fill them */
    if ((s = dp_paramset_new(ctx, &ps)) != DP_OK ||
        (s = net_build(ctx, ps, arch + 9, 0, o.batch, C, H, W, K, 0.0f, 1, &ev)) != DP_OK) {
        fail(&o, s, "building the model", dp_ctx_error(ctx));
        goto done;
    }
    if ((s = dp_checkpoint_load(o.model, ps, NULL)) != DP_OK) {
        fail(&o, s, o.model, dp_ctx_error(ctx));
        goto done;
    }

    /* ---- data, with its classes mapped onto the model's by name */
    if ((s = load_data(ctx, &o, fashion ? NULL : o.data, 0, C, H, W, &ds)) != DP_OK) {
        fail(&o, s, "", dp_ctx_error(ctx));
        goto done;
    }
    if (ds->channels != C || ds->height != H || ds->width != W) {
        fprintf(stderr, "doppel classify eval: %s has %dx%dx%d images but the model takes %dx%dx%d\n", o.data,
                ds->channels, ds->height, ds->width, C, H, W);
        goto done;
    }
    label_map = malloc(sizeof(int) * (size_t)ds->n_classes);
    confusion = calloc((size_t)K * (size_t)K, sizeof(int64_t));
    if (!label_map || !confusion) goto done;
    for (int i = 0; i < ds->n_classes; i++) {
        label_map[i] = -1;
        for (int j = 0; j < K; j++)
            if (!strcmp(ds->class_names[i], names[j])) label_map[i] = j;
        if (label_map[i] < 0) {
            fprintf(stderr, "doppel classify eval: %s: class '%s' is not one of the model's %d classes\n", o.data,
                    ds->class_names[i], K);
            goto done;
        }
    }

    eval_result r = {.confusion = confusion};
    if ((s = evaluate(&ev, ds, NULL, ds->n, mean, std, label_map, K, "evaluating", !o.quiet && !o.json, &r)) != DP_OK) {
        fail(&o, s, "evaluation failed", dp_ctx_error(ctx));
        goto done;
    }

    /* ---- report */
    const char *dname = fashion ? "fashion-mnist test" : o.data;
    if (o.json) {
        printf("{\"model\":");
        json_str(stdout, o.model);
        printf(",\"arch\":");
        json_str(stdout, arch);
        printf(",\"data\":");
        json_str(stdout, dname);
        printf(",\"images\":%lld,\"skipped\":%lld,\"correct\":%lld,\"accuracy\":%.6f,\"loss\":%.6f,\"classes\":[",
               (long long)r.n, (long long)ds->skipped, (long long)r.correct, (double)r.correct / (double)r.n, r.loss);
        for (int i = 0; i < K; i++) {
            int64_t n = 0;
            for (int j = 0; j < K; j++) n += confusion[i * K + j];
            printf("%s{\"name\":", i ? "," : "");
            json_str(stdout, names[i]);
            printf(",\"images\":%lld,\"correct\":%lld,\"accuracy\":", (long long)n, (long long)confusion[i * K + i]);
            if (n) printf("%.6f}", (double)confusion[i * K + i] / (double)n);
            else printf("null}");
        }
        printf("],\"confusion\":[");
        for (int i = 0; i < K; i++) {
            printf("%s[", i ? "," : "");
            for (int j = 0; j < K; j++) printf("%s%lld", j ? "," : "", (long long)confusion[i * K + j]);
            printf("]");
        }
        printf("]}\n");
    } else {
        printf("model: %s (%s, input %dx%dx%d, %d classes)\n", o.model, arch, C, H, W, K);
        printf("data: %s, %lld images", dname, (long long)r.n);
        if (ds->skipped) printf(" (%lld unreadable files skipped)", (long long)ds->skipped);
        printf("\naccuracy: %.2f%% (%lld/%lld), loss %.4f\n\nper class:\n", 100.0 * (double)r.correct / (double)r.n,
               (long long)r.correct, (long long)r.n, r.loss);
        int wname = 5;
        for (int i = 0; i < K; i++) wname = (int)strlen(names[i]) > wname ? (int)strlen(names[i]) : wname;
        if (wname > 24) wname = 24;
        for (int i = 0; i < K; i++) {
            int64_t n = 0;
            for (int j = 0; j < K; j++) n += confusion[i * K + j];
            printf("  %2d %-*.*s ", i, wname, wname, names[i]);
            if (n) printf("%6.2f%%  (%lld/%lld)\n", 100.0 * (double)confusion[i * K + i] / (double)n,
                          (long long)confusion[i * K + i], (long long)n);
            else printf("     -  (no images)\n");
        }
        if (K <= 30) {
            printf("\nconfusion matrix (rows: true class, columns: predicted):\n    ");
            for (int j = 0; j < K; j++) printf(" %5d", j);
            printf("\n");
            for (int i = 0; i < K; i++) {
                printf("  %2d", i);
                for (int j = 0; j < K; j++) printf(" %5lld", (long long)confusion[i * K + j]);
                printf("\n");
            }
        }
    }
    rc = 0;
done:
    free(cls);
    free(label_map);
    free(confusion);
    free_names(names, K);
    dp_graph_free(ev.g);
    dp_paramset_free(ps);
    dp_dataset_free(ds);
    dp_ctx_free(ctx);
    return rc;
}

int cmd_classify(int argc, char **argv) {
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
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
    fprintf(stderr, "doppel classify: unknown subcommand '%s' (train or eval; see 'doppel classify --help')\n", argv[1]);
    return 2;
}
