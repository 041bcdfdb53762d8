/* doppel model import-keras|info — import the original MesoNet Keras weights,
 * and look inside a doppel checkpoint. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "doppel/doppel.h"

static const char *const usage_text =
    "usage: doppel model import-keras FILE.h5 --arch meso4|mesoinception4 --out MODEL.safetensors\n"
    "       doppel model info MODEL.safetensors [--json]\n"
    "       doppel model convert MODEL.safetensors --f16|--f32 --out OUT.safetensors\n"
    "\n"
    "import-keras  read a Keras 2.x HDF5 weight file of the original MesoNet (DariusAf/MesoNet:\n"
    "              Meso4_DF.h5, Meso4_F2F.h5 with --arch meso4; MesoInception_DF.h5,\n"
    "              MesoInception_F2F.h5 with --arch mesoinception4) and save it as a doppel\n"
    "              checkpoint. The model then computes what Keras computes: its output is\n"
    "              P(real) for an RGB 256x256 image scaled to [0,1] (docs/keras-import.md).\n"
    "info          print a checkpoint's architecture, parameter counts and metadata; for the\n"
    "              reference architectures it also checks that the file loads into the model.\n"
    "convert       rewrite a checkpoint with every tensor stored as float16 (--f16: half the\n"
    "              size, rounded to nearest even; doppel reads F16 files into float32) or as\n"
    "              float32 (--f32); metadata kept. Prints what the rounding did to the values.\n"
    "\n"
    "Exit status: 0 ok, 1 failure, 2 bad usage.\n";

static int usage_error(const char *sub, const char *msg, const char *arg) {
    fprintf(stderr, "doppel model%s%s: %s%s%s\n(see 'doppel model --help')\n", sub ? " " : "", sub ? sub : "", msg,
            arg ? " " : "", arg ? arg : "");
    return 2;
}

static dp_ctx *new_ctx(void) {
    dp_ctx *ctx = NULL;
    dp_ctx_opts o = {0};
    o.threads = 1;
    if (dp_ctx_new(&o, &ctx) != DP_OK) {
        fprintf(stderr, "doppel model: cannot create a context (out of memory)\n");
        return NULL;
    }
    return ctx;
}

/* ------------------------------------------------------------ import-keras */
/* import-keras's options: -1 to go on (*in, *arch, *out set), else the exit status. Also called by
 * fuzz/fuzz_cli.c. */
static int import_parse(int argc, char **argv, const char **in_, const char **arch_, const char **out_) {
    const char *in = NULL, *arch = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(a, "--arch") || !strcmp(a, "--out")) {
            if (i + 1 >= argc) return usage_error("import-keras", "missing value after", a);
            if (!strcmp(a, "--arch")) arch = argv[++i];
            else out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return usage_error("import-keras", "unknown option", a);
        } else if (!in) {
            in = a;
        } else {
            return usage_error("import-keras", "more than one input file:", a);
        }
    }
    if (!in) return usage_error("import-keras", "give the Keras .h5 file to import", NULL);
    if (!arch) return usage_error("import-keras", "give --arch meso4 or --arch mesoinception4", NULL);
    if (strcmp(arch, "meso4") && strcmp(arch, "mesoinception4"))
        return usage_error("import-keras", "--arch must be meso4 or mesoinception4, not", arch);
    if (!out) return usage_error("import-keras", "give the checkpoint to write with --out FILE.safetensors", NULL);
    *in_ = in, *arch_ = arch, *out_ = out;
    return -1;
}

static int cmd_import(int argc, char **argv) {
    const char *in, *arch, *out;
    int prc = import_parse(argc, argv, &in, &arch, &out);
    if (prc >= 0) return prc;
    dp_ctx *ctx = new_ctx();
    if (!ctx) return 1;
    dp_keras_info ki;
    dp_status s = dp_keras_import_mesonet(ctx, in, arch, out, &ki);
    if (s != DP_OK) {
        fprintf(stderr, "doppel model import-keras: %s\n", dp_ctx_error(ctx));
        dp_ctx_free(ctx);
        return 1;
    }
    printf("imported %s (Keras %s%s%s, %d layers with weights%s) as %s\n", in,
           ki.keras_version[0] ? ki.keras_version : "version unknown", ki.backend[0] ? ", " : "", ki.backend,
           ki.n_layers, ki.has_config ? ", model_config checked" : "", arch);
    if (ki.bn_eps != ki.bn_eps_doppel)
        printf("batch norm: Keras eps %g, doppel's %s eps %g: running_var += %.9g (exact)\n", ki.bn_eps, arch,
               ki.bn_eps_doppel, ki.bn_eps - ki.bn_eps_doppel);
    else
        printf("batch norm: eps %g in both\n", ki.bn_eps);
    printf("input: RGB 256x256, pixel/255 (NCHW); output: P(real)\nsaved %s\n", out);
    dp_ctx_free(ctx);
    return 0;
}

/* ------------------------------------------------------------ info */

/* The JSON header of a safetensors file (the CLI only reads it to print it;
 * loading and validation are the library's dp_checkpoint_load). */
static cJSON *read_header(const char *path, char *err, size_t errn) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errn, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char b[8];
    cJSON *j = NULL;
    char *h = NULL;
    if (fread(b, 1, 8, f) != 8) {
        snprintf(err, errn, "%s: not a safetensors file (shorter than 8 bytes)", path);
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n == 0 || n > 100000000u) {
        snprintf(err, errn, "%s: not a safetensors file (header length %llu)", path, (unsigned long long)n);
        goto done;
    }
    if (!(h = malloc((size_t)n + 1)) || fread(h, 1, (size_t)n, f) != (size_t)n) {
        snprintf(err, errn, "%s: truncated safetensors header", path);
        goto done;
    }
    h[n] = 0;
    if (!(j = cJSON_Parse(h)) || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
        snprintf(err, errn, "%s: the safetensors header is not a JSON object", path);
    }
done:
    free(h);
    fclose(f);
    return j;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Build a reference architecture over ps (to check that a checkpoint loads). */
static int build_arch(dp_ctx *ctx, const char *arch, dp_paramset *ps) {
    static const struct {
        const char *name;
        dp_node *(*fn)(dp_graph *, dp_paramset *, dp_node *);
        int64_t shape[4];
    } archs[] = {{"meso4", dp_model_meso4, {1, 3, 256, 256}},       {"mesoinception4", dp_model_mesoinception4, {1, 3, 256, 256}},
                 {"dcgan64_g", dp_model_dcgan64_g, {1, 100, 1, 1}}, {"dcgan64_d", dp_model_dcgan64_d, {1, 3, 64, 64}},
                 {"dcgan28_g", dp_model_dcgan28_g, {1, 100, 1, 1}}, {"dcgan28_d", dp_model_dcgan28_d, {1, 1, 28, 28}}};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        if (strcmp(arch, archs[i].name)) continue;
        dp_graph *g;
        if (dp_graph_new(ctx, &g) != DP_OK) return -1;
        dp_node *y = archs[i].fn(g, ps, dp_input(g, "x", 4, archs[i].shape));
        dp_graph_free(g);
        return y ? 1 : -1;
    }
    return 0;
}

/* Any other checkpoint: every float tensor read into a paramset made from the header (which the library
 * has validated against the file), so that NaN/Inf values and unreadable data fail here as they would in
 * any loader. 1: read, 0: fails (msg set), -1: not checked (a tensor of another dtype or rank). */
static int read_all(dp_ctx *ctx, const cJSON *h, const char *path, char *msg, size_t n) {
    dp_paramset *ps = NULL;
    if (dp_paramset_new(ctx, &ps) != DP_OK) return -1;
    int r = 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (!strcmp(e->string, "__metadata__") || !strncmp(e->string, "optim.", 6)) continue;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *shape = cJSON_GetObjectItemCaseSensitive(e, "shape"), *d;
        int nd = cJSON_GetArraySize(shape);
        int64_t dims[DP_MAX_DIMS];
        if (!cJSON_IsString(dt) || (strcmp(dt->valuestring, "F32") && strcmp(dt->valuestring, "F16")) || nd < 1 ||
            nd > DP_MAX_DIMS) {
            r = -1;
            break;
        }
        int k = 0;
        cJSON_ArrayForEach(d, shape) dims[k++] = (int64_t)d->valuedouble;
        dp_tensor *t;
        if (dp_paramset_get_or_add(ps, e->string, nd, dims, 0, NULL, &t) != DP_OK) {
            r = -1;
            break;
        }
    }
    if (r == 1 && dp_checkpoint_load(path, ps, NULL) != DP_OK) {
        snprintf(msg, n, "FAILS to read: %s", dp_ctx_error(ctx));
        r = 0;
    }
    dp_paramset_free(ps);
    return r;
}

/* info's options: -1 to go on (*path_, *json set), else the exit status. Also called by fuzz/fuzz_cli.c. */
static int info_parse(int argc, char **argv, const char **path_, int *json) {
    const char *path = NULL;
    *json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json")) *json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error("info", "unknown option", argv[i]);
        else if (!path) path = argv[i];
        else return usage_error("info", "more than one file:", argv[i]);
    }
    if (!path) return usage_error("info", "give the checkpoint to describe", NULL);
    *path_ = path;
    return -1;
}

static int cmd_info(int argc, char **argv) {
    const char *path;
    int json;
    int prc = info_parse(argc, argv, &path, &json);
    if (prc >= 0) return prc;
    char err[1200];
    /* The library validates the whole file first (every shape and offset against the file's size), so a
     * truncated or corrupt checkpoint is an error here too, and the sums below cannot overflow. */
    dp_ctx *vctx = new_ctx();
    if (vctx) {
        dp_status vs = dp_checkpoint_meta(vctx, path, "format", err, sizeof err);
        if (vs != DP_OK && vs != DP_ERR_NOT_FOUND && vs != DP_ERR_ARG) {
            fprintf(stderr, "doppel model info: %s [%s]\n", dp_ctx_error(vctx), dp_status_name(vs));
            dp_ctx_free(vctx);
            return 1;
        }
        dp_ctx_free(vctx);
    }
    cJSON *h = read_header(path, err, sizeof err);
    if (!h) {
        fprintf(stderr, "doppel model info: %s\n", err);
        return 1;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(meta, "doppel.arch");
    const char *arch = cJSON_IsString(a) ? a->valuestring : NULL;
    long long n_t = 0, n_opt = 0, values = 0, trainable = 0, buffers = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (!strcmp(e->string, "__metadata__")) continue;
        if (!strncmp(e->string, "optim.", 6)) {
            n_opt++;
            continue;
        }
        long long k = 1;
        const cJSON *d, *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        cJSON_ArrayForEach(d, shape) k *= (long long)d->valuedouble;
        n_t++;
        values += k;
        if (ends_with(e->string, ".running_mean") || ends_with(e->string, ".running_var")) buffers += k;
        else trainable += k;
    }
    /* For the reference architectures: does the file load into doppel's model? */
    const char *check = "not checked (no reference architecture of that name)";
    char checkbuf[1200];
    dp_ctx *ctx = new_ctx();
    if (ctx) {
        dp_paramset *ps = NULL;
        int b = dp_paramset_new(ctx, &ps) != DP_OK ? -1 : arch ? build_arch(ctx, arch, ps) : 0;
        if (b > 0) {
            if (dp_checkpoint_load(path, ps, NULL) == DP_OK) {
                snprintf(checkbuf, sizeof checkbuf, "loads into doppel's %s (%lld trainable values, %lld in buffers)", arch,
                         (long long)dp_paramset_numel(ps, 1), (long long)(dp_paramset_numel(ps, 0) - dp_paramset_numel(ps, 1)));
            } else {
                snprintf(checkbuf, sizeof checkbuf, "FAILS to load into doppel's %s: %s", arch, dp_ctx_error(ctx));
            }
            check = checkbuf;
        } else if (b < 0) {
            check = "not checked (could not build the architecture)";
        } else {
            int rd = read_all(ctx, h, path, checkbuf, sizeof checkbuf);
            if (rd == 1) check = "every tensor reads (no reference architecture of that name to load it into)";
            else if (rd == 0) check = checkbuf;
        }
        dp_paramset_free(ps);
        dp_ctx_free(ctx);
    }
    int fails = !strncmp(check, "FAILS", 5);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", path);
        if (arch) cJSON_AddStringToObject(o, "arch", arch);
        else cJSON_AddNullToObject(o, "arch");
        cJSON_AddNumberToObject(o, "tensors", (double)n_t);
        cJSON_AddNumberToObject(o, "values", (double)values);
        cJSON_AddNumberToObject(o, "trainable", (double)trainable);
        cJSON_AddNumberToObject(o, "buffers", (double)buffers);
        cJSON_AddNumberToObject(o, "optimiser_tensors", (double)n_opt);
        cJSON_AddStringToObject(o, "check", check);
        cJSON_AddItemToObject(o, "metadata", meta ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
        char *s = cJSON_Print(o);
        if (s) puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("file:       %s\n", path);
        printf("arch:       %s\n", arch ? arch : "(no doppel.arch metadata)");
        printf("parameters: %lld values in %lld tensors: %lld trainable, %lld in buffers (batch-norm statistics)\n",
               values, n_t, trainable, buffers);
        if (n_opt) printf("optimiser:  %lld state tensors\n", n_opt);
        printf("check:      %s\n", check);
        printf("metadata:\n");
        cJSON_ArrayForEach(e, meta) printf("  %-20s %s\n", e->string, cJSON_IsString(e) ? e->valuestring : "(not a string)");
    }
    cJSON_Delete(h);
    return fails ? 1 : 0;
}

/* ------------------------------------------------------------ convert */
/* convert's options: -1 to go on (*in, *out, *f16 set), else the exit status. Also called by
 * fuzz/fuzz_cli.c. */
static int convert_parse(int argc, char **argv, const char **in_, const char **out_, int *f16_) {
    const char *in = NULL, *out = NULL;
    int f16 = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(a, "--f16") || !strcmp(a, "--f32")) {
            int v = a[3] == '1';
            if (f16 >= 0 && f16 != v) return usage_error("convert", "give one of --f16 and --f32, not both", NULL);
            f16 = v;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) return usage_error("convert", "missing value after", a);
            out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return usage_error("convert", "unknown option", a);
        } else if (!in) {
            in = a;
        } else {
            return usage_error("convert", "more than one input file:", a);
        }
    }
    if (!in) return usage_error("convert", "give the checkpoint to convert", NULL);
    if (f16 < 0) return usage_error("convert", "give --f16 or --f32", NULL);
    if (!out) return usage_error("convert", "give the file to write with --out FILE.safetensors", NULL);
    *in_ = in, *out_ = out, *f16_ = f16;
    return -1;
}

static int cmd_convert(int argc, char **argv) {
    const char *in, *out;
    int f16;
    int rc = convert_parse(argc, argv, &in, &out, &f16);
    if (rc >= 0) return rc;
    dp_ctx *ctx = new_ctx();
    if (!ctx) return 1;
    dp_convert_info ci;
    dp_status s = dp_checkpoint_convert(ctx, in, out, f16 ? DP_F16 : DP_F32, &ci);
    if (s != DP_OK) {
        fprintf(stderr, "doppel model convert: %s [%s]\n", dp_ctx_error(ctx), dp_status_name(s));
        dp_ctx_free(ctx);
        return 1;
    }
    printf("wrote %s: %lld values in %d tensors stored as %s\n", out, (long long)ci.values, ci.tensors, f16 ? "F16" : "F32");
    if (f16)
        printf("rounding: largest absolute error %.3g, largest relative error %.3g (|x| >= 2^-14), %lld values stored as "
               "subnormals, %lld flushed to zero\n",
               ci.max_abs_err, ci.max_rel_err, (long long)ci.subnormal, (long long)ci.flushed);
    dp_ctx_free(ctx);
    return 0;
}

int cmd_model(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "import-keras")) return cmd_import(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc - 1, argv + 1);
    return usage_error(NULL, "unknown subcommand", argv[1]);
}
