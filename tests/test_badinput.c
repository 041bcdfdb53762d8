/* The bad-input corpus (issue 8): files made here at test time — zero-length,
 * truncated, wrong magic, huge dimensions, a header claiming a terabyte, NaN
 * weights, wrong shapes, a non-UTF-8 name, an unreadable file (skipped as
 * root: root reads anything), a folder with very many entries — given to
 * every command of the CLI (scan too, when built with FFmpeg, also --live over HTTP; serve's bad requests are
 * tested by test_serve) next to good inputs. Each bad input must get a
 * clear error on one line naming the file, the command must exit non-zero,
 * leave no partial output file, and still process the good inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "doppel/detect.h"
#include "doppel/doppel.h"
#ifdef DP_HAVE_FFMPEG
#include "doppel/video.h"
#endif
#include "util/files.h"

static char dir[64];
static dp_ctx *ctx;
static int quick;

static const char *P(const char *name) {
    static char buf[16][600];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_file(const char *path, const void *data, size_t n) {
    assert_int_equal(dp_test_write_file(path, data, n), 0);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------ running the CLI */
typedef struct result {
    int rc; /* exit status; 128+signal when killed */
    char *out, *err;
} result;

static void result_free(result *r) {
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static result run(const char *const *args) {
    result r = {0};
    const char *o = P("stdout.txt"), *e = P("stderr.txt");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0 || chdir(dir) != 0) _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        const char *argv[64];
        int n = 0;
        argv[n++] = DP_CLI_PATH;
        for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(DP_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    size_t n;
    r.out = (char *)dp_test_read_file(o, &n);
    r.err = (char *)dp_test_read_file(e, &n);
    assert_non_null(r.out);
    assert_non_null(r.err);
    return r;
}

static void show(const char *what, const result *r) {
    printf("--- %s: exit %d\nstdout:\n%.2000s\nstderr:\n%.3000s\n", what, r->rc, r->out, r->err);
}

/* The lines of err naming name. */
static int lines_naming(const char *err, const char *name) {
    int n = 0;
    for (const char *l = err; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char *line = strndup(l, len);
        n += strstr(line, name) != NULL;
        free(line);
        l = e ? e + 1 : NULL;
    }
    return n;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Every command's answer to bad input: not killed by a signal or a sanitizer, non-zero exit,
 * each bad file named on a line of its own (exactly one line each unless several_ok), no
 * multi-line dumps (stderr has at most a few lines more than there are bad files). */
static void expect_errors_in(const char *what, const result *r, const char *const *bad, int n_bad, const char *where) {
    int ok = r->rc != 0 && r->rc < 128 && !strstr(r->err, "Sanitizer") && !strstr(r->err, "runtime error") &&
             count_lines(r->err) <= n_bad + 3;
    /* stderr: exactly one line per bad file; a report on stdout (model info) names it on its "file:" line too */
    for (int i = 0; ok && i < n_bad; i++) ok = where == r->err ? lines_naming(where, bad[i]) == 1 : lines_naming(where, bad[i]) >= 1;
    if (!ok) {
        show(what, r);
        for (int i = 0; i < n_bad; i++) printf("bad input %s named on %d lines\n", bad[i], lines_naming(where, bad[i]));
        fail_msg("%s: bad input not answered as it must be", what);
    }
}

static void expect_errors(const char *what, const result *r, const char *const *bad, int n_bad) {
    expect_errors_in(what, r, bad, n_bad, r->err);
}

static void expect_in(const char *what, const result *r, const char *text, const char *where) {
    if (!strstr(where, text)) {
        show(what, r);
        fail_msg("%s: '%s' missing (a good input was not processed?)", what, text);
    }
}

/* ------------------------------------------------------------ the corpus */
static const char *bad_images[16];
static int n_bad_images;

static dp_image pattern(int c, int h, int w) {
    dp_image img;
    assert_int_equal(dp_image_alloc(ctx, c, h, w, &img), DP_OK);
    for (int i = 0; i < c * h * w; i++) img.data[i] = (float)((i * 31) % 101) / 100.0f;
    return img;
}

static void be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* A PNG whose IHDR (with a correct CRC) says w x h, followed by nothing but IEND. */
static void huge_png(const char *path, uint32_t w, uint32_t h) {
    unsigned char b[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    be32(b + 8, 13);
    memcpy(b + 12, "IHDR", 4);
    be32(b + 16, w);
    be32(b + 20, h);
    b[24] = 8, b[25] = 2; /* 8-bit RGB */
    be32(b + 29, (uint32_t)crc32(0, b + 12, 17));
    be32(b + 33, 0);
    memcpy(b + 37, "IEND", 4);
    be32(b + 41, (uint32_t)crc32(0, b + 37, 4));
    write_file(path, b, sizeof b);
}

static void add_bad(const char *name) { bad_images[n_bad_images++] = name; }

static void make_images(void) {
    dp_image a = pattern(3, 64, 64), g = pattern(1, 48, 40);
    assert_int_equal(dp_image_save_png(ctx, P("good.png"), &a), DP_OK);
    assert_int_equal(dp_image_save_png(ctx, P("good2.png"), &g), DP_OK);
    dp_label_info info = {0};
    assert_int_equal(dp_write_synthetic(ctx, P("good3.jpg"), &a, &info, 90), DP_OK);
    size_t n;
    unsigned char *png = dp_test_read_file(P("good.png"), &n), *jpg;
    write_file(P("empty.png"), "", 0);
    add_bad("empty.png");
    write_file(P("trunc.png"), png, n / 2);
    add_bad("trunc.png");
    write_file(P("magic.png"), "GIF89a this is not a PNG\n", 25);
    add_bad("magic.png");
    huge_png(P("huge.png"), 100000, 100000);
    add_bad("huge.png");
    /* A real JPEG whose frame header is changed to 60000 x 60000. */
    jpg = dp_test_read_file(P("good3.jpg"), &n);
    for (size_t i = 2; i + 9 < n; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
            jpg[i + 5] = 0xea, jpg[i + 6] = 0x60, jpg[i + 7] = 0xea, jpg[i + 8] = 0x60;
            break;
        }
    write_file(P("huge.jpg"), jpg, n);
    add_bad("huge.jpg");
    write_file(P("trunc.jpg"), jpg, n / 3);
    add_bad("trunc.jpg");
    write_file(P("riff.webp"), "RIFF\x10\0\0\0WEBPVP8 \x04\0\0\0abcd", 24);
    add_bad("riff.webp");
    write_file(P("name-\xff\xfe.png"), "not an image at all", 19);
    add_bad("name-\xff\xfe.png");
    if (geteuid() != 0) {
        write_file(P("noperm.png"), png, n < 100 ? n : 100);
        chmod(P("noperm.png"), 0);
        add_bad("noperm.png");
    } else {
        printf("note: running as root, so the unreadable-file case (chmod 000) is skipped: root reads it anyway\n");
    }
    free(png);
    free(jpg);
    dp_image_free(ctx, &a);
    dp_image_free(ctx, &g);
}

static const char *bad_models[16];
static int n_bad_models;

static void write_st(const char *path, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(len, 1, 8, f);
    fwrite(header, 1, hl, f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    fclose(f);
}

static void make_models(void) {
    dp_detector *d;
    dp_detector_params p;
    assert_int_equal(dp_detector_new(ctx, NULL, 1, 1, &d), DP_OK);
    p = *dp_detector_get_params(d);
    dp_detector_free(d);
    p.crop.work = 16;
    p.crop.size = 32;
    p.n_spec = dp_spectral_count(16);
    assert_int_equal(dp_detector_new(ctx, &p, 1, 1, &d), DP_OK);
    assert_int_equal(dp_detector_save(d, P("small-model.safetensors"), NULL), DP_OK);
    dp_detector_free(d);
    /* NaN / Inf in a weight of an otherwise good model */
    assert_int_equal(dp_detector_new(ctx, NULL, 1, 1, &d), DP_OK);
    dp_paramset *ps = dp_detector_paramset(d);
    dp_tensor *t = dp_paramset_at(ps, 0);
    for (int i = 0; i < dp_paramset_count(ps); i++) dp_tensor_f32(dp_paramset_at(ps, i))[0] = 0.0f / 0.0f;
    char crop[128];
    assert_int_equal(dp_crop_policy_format(&dp_detector_get_params(d)->crop, crop, sizeof crop), DP_OK);
    const char *extra[] = {"doppel.task", "detect", "doppel.crop", crop, NULL};
    assert_int_equal(dp_checkpoint_save(P("nan.safetensors"), ps, NULL, "meso4", extra), DP_OK);
    bad_models[n_bad_models++] = "nan.safetensors";
    for (int i = 0; i < dp_paramset_count(ps); i++) dp_tensor_f32(dp_paramset_at(ps, i))[0] = 1.0f / 0.0f;
    assert_int_equal(dp_checkpoint_save(P("inf.safetensors"), ps, NULL, "meso4", extra), DP_OK);
    bad_models[n_bad_models++] = "inf.safetensors";
    dp_detector_free(d);
    /* the right names, the wrong shape */
    dp_paramset *w;
    dp_tensor *x;
    assert_int_equal(dp_paramset_new(ctx, &w), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(w, dp_tensor_name(t), 2, (int64_t[]){3, 5}, 0, NULL, &x), DP_OK);
    assert_int_equal(dp_checkpoint_save(P("shape.safetensors"), w, NULL, "meso4", extra), DP_OK);
    bad_models[n_bad_models++] = "shape.safetensors";
    dp_paramset_free(w);
    size_t n;
    unsigned char *m = dp_test_read_file(P("small-model.safetensors"), &n);
    write_file(P("trunc.safetensors"), m, n - n / 3);
    bad_models[n_bad_models++] = "trunc.safetensors";
    free(m);
    write_file(P("empty.safetensors"), "", 0);
    bad_models[n_bad_models++] = "empty.safetensors";
    /* a header that declares a 1 TB tensor */
    write_st(P("huge.safetensors"),
             "{\"__metadata__\":{\"doppel.task\":\"detect\",\"doppel.arch\":\"meso4\",\"doppel.crop\":"
             "\"inner=0.8,margin=0.05,shift=0.05,work=16,size=32\"},"
             "\"f.conv1.weight\":{\"dtype\":\"F32\",\"shape\":[250000,1000000],\"data_offsets\":[0,1000000000000]}}",
             16);
    bad_models[n_bad_models++] = "huge.safetensors";
    write_file(P("magic.safetensors"), "PK\3\4 a zip file, say", 21);
    bad_models[n_bad_models++] = "magic.safetensors";
    /* float16 storage (doppel model convert --f16): a good one, then truncated, every value NaN, and a
     * header declaring a 1 TB F16 tensor */
    assert_int_equal(dp_checkpoint_convert(ctx, P("small-model.safetensors"), P("small-f16.safetensors"), DP_F16, NULL), DP_OK);
    m = dp_test_read_file(P("small-f16.safetensors"), &n);
    assert_non_null(m);
    write_file(P("f16-trunc.safetensors"), m, n - n / 4);
    bad_models[n_bad_models++] = "f16-trunc.safetensors";
    size_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (size_t)m[i] << (8 * i);
    assert_true(8 + hl < n && (n - 8 - hl) % 2 == 0);
    for (size_t i = 8 + hl; i + 1 < n; i += 2) m[i] = 0x00, m[i + 1] = 0x7e; /* F16 NaN, little-endian */
    write_file(P("f16-nan.safetensors"), m, n);
    bad_models[n_bad_models++] = "f16-nan.safetensors";
    free(m);
    write_st(P("f16-huge.safetensors"),
             "{\"__metadata__\":{\"doppel.task\":\"detect\",\"doppel.arch\":\"meso4\",\"doppel.crop\":"
             "\"inner=0.8,margin=0.05,shift=0.05,work=16,size=32\"},"
             "\"f.conv1.weight\":{\"dtype\":\"F16\",\"shape\":[500000,1000000],\"data_offsets\":[0,1000000000000]}}",
             16);
    bad_models[n_bad_models++] = "f16-huge.safetensors";
}

/* ------------------------------------------------------------ the commands */
static void image_command(const char *cmd, const char *const *pre, int n_pre) {
    const char *args[64];
    int n = 0;
    for (int i = 0; i < n_pre; i++) args[n++] = pre[i];
    args[n++] = "good.png";
    for (int i = 0; i < n_bad_images; i++) args[n++] = bad_images[i];
    args[n++] = "good2.png";
    args[n] = NULL;
    result r = run(args);
    expect_errors(cmd, &r, bad_images, n_bad_images);
    expect_in(cmd, &r, "good.png", r.out);
    expect_in(cmd, &r, "good2.png", r.out);
    result_free(&r);
}

static void watermark_check(void **s) {
    (void)s;
    image_command("watermark check", (const char *[]){"watermark", "check"}, 2);
}

static int have_cascade(void) {
    dp_face_detector *fd = NULL;
    dp_status st = dp_face_detector_default(ctx, &fd);
    dp_face_detector_free(fd);
    if (st != DP_OK) printf("skipped: no face cascade (apt-get install opencv-data): %s\n", dp_ctx_error(ctx));
    return st == DP_OK;
}

static void faces(void **s) {
    (void)s;
    if (!have_cascade()) skip();
    assert_int_equal(mkdir(P("drawn"), 0755), 0);
    image_command("faces", (const char *[]){"faces", "--json", "--draw", "drawn"}, 4);
    /* drawings only for the good images */
    assert_true(exists(P("drawn/good.faces.png")));
    assert_true(exists(P("drawn/good2.faces.png")));
    assert_false(exists(P("drawn/trunc.faces.png")));
    assert_false(exists(P("drawn/huge.faces.png")));
    /* a bad cascade */
    const char *bad[] = {"bad.xml"};
    write_file(P("bad.xml"), "<opencv_storage><cascade><stageType>BOOST", 41);
    result r = run((const char *[]){"faces", "--cascade", "bad.xml", "good.png", NULL});
    expect_errors("faces --cascade bad.xml", &r, bad, 1);
    result_free(&r);
}

static void detect(void **s) {
    (void)s;
    if (!have_cascade()) skip();
    image_command("detect", (const char *[]){"detect", "--json", "--model", "small-model.safetensors"}, 4);
    for (int i = 0; i < n_bad_models; i++) {
        result r = run((const char *[]){"detect", "--model", bad_models[i], "good.png", NULL});
        expect_errors("detect --model BAD", &r, &bad_models[i], 1);
        result_free(&r);
    }
    /* --explain (occlusion, Grad-CAM) writes nothing for a bad image */
    static const char *const method[2] = {"occlusion", "gradcam"};
    for (int k = 0; k < 2; k++) {
        result r = run((const char *[]){"detect", "--model", "small-model.safetensors", "--explain-method", method[k],
                                        "--explain", "why.png", "trunc.png", NULL});
        expect_errors("detect --explain", &r, (const char *[]){"trunc.png"}, 1);
        assert_false(exists(P("why.png")));
        result_free(&r);
    }
    /* the same model stored as float16 answers as the float32 one does */
    image_command("detect (F16 model)", (const char *[]){"detect", "--json", "--model", "small-f16.safetensors"}, 4);
}

static void model_info_import(void **s) {
    (void)s;
    for (int i = 0; i < n_bad_models; i++) {
        /* model info reports on stdout; its "check: FAILS ..." line (or the error) names the file */
        result r = run((const char *[]){"model", "info", bad_models[i], NULL});
        expect_errors_in("model info BAD", &r, &bad_models[i], 1, r.err[0] ? r.err : r.out);
        if (!r.err[0] && !strstr(r.out, "FAILS")) fail_msg("model info %s: no FAILS line", bad_models[i]);
        result_free(&r);
    }
    const char *h5[] = {"empty.h5", "text.h5", "trunc.h5"};
    write_file(P("empty.h5"), "", 0);
    write_file(P("text.h5"), "not HDF5\n", 9);
    write_file(P("trunc.h5"), "\x89HDF\r\n\x1a\n\0\0\0\0", 12);
    for (int i = 0; i < 3; i++) {
        result r = run((const char *[]){"model", "import-keras", h5[i], "--arch", "meso4", "--out", "imported.safetensors", NULL});
        expect_errors("model import-keras BAD", &r, &h5[i], 1);
        assert_false(exists(P("imported.safetensors")));
        result_free(&r);
    }
}

/* model convert: every file that is not a loadable checkpoint (bad_models but the one with a wrong
 * shape, which convert does not check against any model) fails naming it, and writes nothing. */
static void model_convert(void **s) {
    (void)s;
    for (int i = 0; i < n_bad_models; i++) {
        if (!strcmp(bad_models[i], "shape.safetensors")) continue;
        for (int f16 = 0; f16 < 2; f16++) {
            result r = run((const char *[]){"model", "convert", bad_models[i], f16 ? "--f16" : "--f32", "--out", "conv.safetensors", NULL});
            expect_errors("model convert BAD", &r, &bad_models[i], 1);
            assert_false(exists(P("conv.safetensors")));
            result_free(&r);
        }
    }
    result r = run((const char *[]){"model", "convert", "small-f16.safetensors", "--f32", "--out", "conv.safetensors", NULL});
    if (r.rc != 0 || !exists(P("conv.safetensors"))) {
        show("model convert (good F16)", &r);
        fail_msg("model convert of a good F16 model failed");
    }
    result_free(&r);
}

static void gan_sample(void **s) {
    (void)s;
    for (int i = 0; i < n_bad_models; i++) {
        result r = run((const char *[]){"gan", "sample", "--model", bad_models[i], "--grid", "grid.png", NULL});
        expect_errors("gan sample --model BAD", &r, &bad_models[i], 1);
        assert_false(exists(P("grid.png")));
        result_free(&r);
    }
}

static void classify(void **s) {
    (void)s;
    /* Fashion-MNIST files whose header claims 2^31 images */
    assert_int_equal(mkdir(P("fm"), 0755), 0);
    const unsigned char huge_idx[] = {0, 0, 8, 3, 0x80, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2, 3};
    const unsigned char labels[] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 2};
    write_file(P("fm/train-images-idx3-ubyte"), huge_idx, sizeof huge_idx);
    write_file(P("fm/train-labels-idx1-ubyte"), labels, sizeof labels);
    write_file(P("fm/t10k-images-idx3-ubyte"), huge_idx, sizeof huge_idx);
    write_file(P("fm/t10k-labels-idx1-ubyte"), labels, sizeof labels);
    const char *bad[] = {"train-images-idx3-ubyte"};
    result r = run((const char *[]){"classify", "train", "--data-dir", "fm", "--epochs", "1", "--out", "c.safetensors",
                                    "--quiet", NULL});
    expect_errors("classify train (huge IDX)", &r, bad, 1);
    assert_false(exists(P("c.safetensors")));
    result_free(&r);
    for (int i = 0; i < n_bad_models; i++) {
        r = run((const char *[]){"classify", "eval", "--model", bad_models[i], "--data-dir", "fm", NULL});
        expect_errors("classify eval --model BAD", &r, &bad_models[i], 1);
        result_free(&r);
    }
}

/* Numbers that commands read back from files they wrote (issue 8: parsed strictly, core/parse.h): a
 * value out of range or followed by garbage is an error naming the file (and the line), never
 * undefined behaviour, and nothing is written. */
static void save_meta(const char *path, const char *arch, const char *const *kv) {
    dp_paramset *ps;
    dp_tensor *t;
    assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
    assert_int_equal(dp_paramset_get_or_add(ps, "w", 1, (int64_t[]){4}, 0, NULL, &t), DP_OK);
    assert_int_equal(dp_checkpoint_save(path, ps, NULL, arch, kv), DP_OK);
    dp_paramset_free(ps);
}

static void numbers_in_files(void **s) {
    (void)s;
    /* classify eval: a classifier whose input shape overflows int */
    const char *cls[] = {"cls-input.safetensors"};
    save_meta(P(cls[0]), "classify-cnn", (const char *[]){"doppel.input", "1,28,99999999999", NULL});
    result r = run((const char *[]){"classify", "eval", "--model", cls[0], "--data-dir", "fm", NULL});
    expect_errors("classify eval (doppel.input out of range)", &r, cls, 1);
    expect_in("classify eval (doppel.input out of range)", &r, "doppel.input", r.err);
    result_free(&r);

    /* gan train --resume: the CLI's own metadata (elapsed seconds) out of range */
    assert_int_equal(mkdir(P("ganrun"), 0755), 0);
    const char *gan_kv[] = {"doppel.task",       "gan",      "doppel.gan.arch",  "dcgan28", "doppel.gan.loss", "ns",
                            "doppel.gan.nz",     "100",      "doppel.gan.batch", "64",      "doppel.gan.lr_g", "0.0002",
                            "doppel.gan.lr_d",   "0.0002",   "doppel.gan.beta1", "0.5",     "doppel.gan.beta2", "0.999",
                            "doppel.gan.gp_weight", "10",    "doppel.gan.flip",  "0",       "doppel.gan.seed", "1",
                            "doppel.gan.step",   "1",        "doppel.gan.elapsed", "1e400", NULL};
    save_meta(P("ganrun/ckpt.safetensors"), "gan-dcgan28", gan_kv);
    const char *gan_bad[] = {"ganrun/ckpt.safetensors"};
    r = run((const char *[]){"gan", "train", "--resume", "--out", "ganrun", "--steps", "5", NULL});
    expect_errors("gan train --resume (doppel.gan.elapsed out of range)", &r, gan_bad, 1);
    expect_in("gan train --resume", &r, "doppel.gan.elapsed", r.err);
    assert_false(exists(P("ganrun/metrics.csv")));
    result_free(&r);

    /* detect calibrate: --scores rows with a label out of int's range and a p_fake with garbage after
     * it are skipped, and the warning names the file and the first such line */
    FILE *f = fopen(P("scores.csv"), "w");
    assert_non_null(f);
    fputs("split,label,meso_logit,spectral_logit,ood,ood_over,no_face,p_fake,source,ood_spectral,ood_features,path\n"
          "test,0,-2,-1,0.1,0,0,0.1,real,0.1,0.1,a.png\n"
          "test,99999999999,2,1,0.1,0,0,0.9,fake,0.1,0.1,b.png\n"
          "test,1,2,1,0.1,0,0,0.9x,fake,0.1,0.1,c.png\n"
          "heldout,1,2,1,0.1,0,0,0.95,fake,0.1,0.1,d.png\n",
          f);
    fclose(f);
    r = run((const char *[]){"detect", "calibrate", "--scores", "scores.csv", "--out", "cal.safetensors", "--model",
                             "small-model.safetensors", NULL});
    if (r.rc >= 128 || strstr(r.err, "Sanitizer") || strstr(r.err, "runtime error") ||
        !strstr(r.err, "scores.csv: 2 malformed rows skipped (the first: line 3)")) {
        show("detect calibrate (bad rows)", &r);
        fail_msg("detect calibrate: the malformed rows of scores.csv were not reported");
    }
    result_free(&r);

    /* detect train --face-cache: a cache line whose box does not fit an int */
    if (!have_cascade()) skip();
    assert_int_equal(mkdir(P("fc-real"), 0755), 0);
    assert_int_equal(mkdir(P("fc-fake"), 0755), 0);
    size_t n;
    unsigned char *png = dp_test_read_file(P("good.png"), &n);
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "fc-%s/%d.png", i % 2 ? "fake" : "real", i);
        write_file(P(name), png, n);
    }
    free(png);
    const char *cache[] = {"faces.cache"};
    f = fopen(P(cache[0]), "w");
    assert_non_null(f);
    fprintf(f, "fc-real/0.png\t%zu\t0\t1 2 30 30 1\nfc-real/1.png\t%zu\t0\t0 0 99999999999 10 1\n", n, n);
    fclose(f);
    r = run((const char *[]){"detect", "train", "--real", "fc-real", "--fake", "fc-fake", "--out", "fc.safetensors",
                             "--face-cache", cache[0], "--epochs", "1", "--size", "32", "--work", "16", "--quiet", NULL});
    expect_errors("detect train --face-cache (bad line)", &r, cache, 1);
    expect_in("detect train --face-cache", &r, "line 2", r.err);
    assert_false(exists(P("fc.safetensors")));
    result_free(&r);
}

/* detect train --self-blend on folders holding the bad images next to good ones: each bad image is named
 * once in a warning, the run goes on with the others and writes its model. */
static void self_blend_training(void **s) {
    (void)s;
    if (!have_cascade()) skip();
    assert_int_equal(mkdir(P("sb-real"), 0755), 0);
    assert_int_equal(mkdir(P("sb-fake"), 0755), 0);
    size_t n;
    unsigned char *png = dp_test_read_file(P("good.png"), &n);
    assert_non_null(png);
    for (int i = 0; i < 48; i++) {
        char name[64];
        snprintf(name, sizeof name, "sb-%s/g%02d.png", i % 2 ? "fake" : "real", i);
        write_file(P(name), png, n);
    }
    free(png);
    for (int i = 0; i < n_bad_images; i++) {
        char name[128];
        snprintf(name, sizeof name, "sb-%s/%s", i % 2 ? "fake" : "real", bad_images[i]);
        assert_int_equal(link(P(bad_images[i]), P(name)), 0); /* keeps chmod 000 */
    }
    result r = run((const char *[]){"detect", "train", "--real", "sb-real", "--fake", "sb-fake", "--out", "sb.safetensors",
                                    "--self-blend", "0.5", "--epochs", "1", "--size", "32", "--work", "16", "--quiet", NULL});
    int ok = r.rc == 0 && exists(P("sb.safetensors")) && !strstr(r.err, "Sanitizer") && !strstr(r.err, "runtime error");
    for (int i = 0; ok && i < n_bad_images; i++) ok = lines_naming(r.err, bad_images[i]) == 1;
    if (!ok) {
        show("detect train --self-blend (bad images in the folders)", &r);
        fail_msg("detect train --self-blend did not skip the bad images as it must");
    }
    result_free(&r);
}

#ifdef DP_HAVE_FFMPEG
/* A child process answering every HTTP request on a loopback port with text instead of a video (for at
 * most 30 s); *port gets the port. */
static pid_t text_http_server(int *port) {
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 4), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(30);
        for (;;) {
            int c = accept(ls, NULL, NULL);
            if (c < 0) _exit(0);
            char req[2048];
            if (read(c, req, sizeof req) > 0) {
                static const char ans[] = "HTTP/1.0 200 OK\r\nContent-Type: video/mp4\r\n\r\nthis is not a video\n";
                if (write(c, ans, sizeof ans - 1) < 0) _exit(1);
            }
            close(c);
        }
    }
    close(ls);
    return pid;
}
#endif

/* doppel scan: an empty, a truncated and a text "video" next to a good one; --out is not written for a bad one. */
static void scan(void **s) {
    (void)s;
#ifndef DP_HAVE_FFMPEG
    printf("skipped: this doppel was built without FFmpeg (no doppel scan)\n");
    skip();
#else
    if (!have_cascade()) skip();
    dp_image img = pattern(3, 64, 64);
    dp_status ws = dp_video_write_test(ctx, P("good.mp4"), &img, 6, 10, 1, 0);
    dp_image_free(ctx, &img);
    if (ws != DP_OK) fail_msg("cannot write a test video: %s", dp_ctx_error(ctx));
    size_t n;
    unsigned char *v = dp_test_read_file(P("good.mp4"), &n);
    assert_non_null(v);
    write_file(P("trunc.mp4"), v, n / 3);
    free(v);
    write_file(P("empty.mp4"), "", 0);
    write_file(P("text.mp4"), "this is not a video\n", 20);
    const char *bad[] = {"empty.mp4", "trunc.mp4", "text.mp4"};
    result r = run((const char *[]){"scan", "--json", "--quiet", "--model", "small-model.safetensors", "good.mp4",
                                    "empty.mp4", "trunc.mp4", "text.mp4", NULL});
    expect_errors("scan", &r, bad, 3);
    expect_in("scan", &r, "good.mp4", r.out);
    result_free(&r);
    r = run((const char *[]){"scan", "--quiet", "--model", "small-model.safetensors", "--out", "annotated.mp4",
                             "text.mp4", NULL});
    expect_errors("scan --out", &r, &bad[2], 1);
    assert_false(exists(P("annotated.mp4")));
    result_free(&r);
    /* --live (a network stream): a URL nobody answers (port 1), an HTTP server that sends text as the
     * "video", and a text file, next to a good file */
    int port = 0;
    pid_t srv = text_http_server(&port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/live.mp4", port);
    const char *live_bad[] = {"http://127.0.0.1:1/none.mp4", url, "text.mp4"};
    r = run((const char *[]){"scan", "--json", "--quiet", "--live", "--timeout", "5", "--model", "small-model.safetensors",
                             live_bad[0], live_bad[1], "good.mp4", live_bad[2], NULL});
    kill(srv, SIGTERM);
    waitpid(srv, NULL, 0);
    expect_errors("scan --live", &r, live_bad, 3);
    expect_in("scan --live", &r, "good.mp4", r.out);
    result_free(&r);
#endif
}

/* A folder with very many entries (zero-length "images", subfolders, other files) and two good
 * images (faces reads the images directly inside a folder, detect walks it): each gets through it, names what it could not read,
 * and still answers for the good ones. */
static void many_entries(void **s) {
    (void)s;
    int n = quick ? 300 : 1000;
    assert_int_equal(mkdir(P("many"), 0755), 0);
    assert_int_equal(mkdir(P("many/sub"), 0755), 0);
    char name[128];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "many/%s%05d.%s", i % 3 == 2 ? "sub/" : "", i, i % 2 ? "txt" : "png");
        write_file(P(name), "", 0);
    }
    size_t k;
    unsigned char *png = dp_test_read_file(P("good.png"), &k);
    write_file(P("many/zz-good.png"), png, k);
    write_file(P("many/zz-good2.png"), png, k);
    free(png);
    if (!have_cascade()) skip();
    const char *cmds[2][6] = {{"faces", "--json", "many", NULL}, {"detect", "--json", "--model", "small-model.safetensors", "many", NULL}};
    for (int c = 0; c < 2; c++) {
        result r = run(cmds[c]);
        if (r.rc == 0 || r.rc >= 128 || !strstr(r.out, "zz-good.png") || !strstr(r.out, "zz-good2.png") ||
            lines_naming(r.err, "00000.png") != 1) {
            show(cmds[c][0], &r);
            fail_msg("%s on a folder with %d entries", cmds[c][0], n);
        }
        result_free(&r);
    }
}

static int setup(void **s) {
    (void)s;
    quick = getenv("DP_TEST_QUICK") != NULL;
    if (access(DP_CLI_PATH, X_OK) != 0) {
        printf("skipped: the doppel CLI is not at %s\n", DP_CLI_PATH);
        return -1;
    }
    snprintf(dir, sizeof dir, "/tmp/doppel-bad-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx) != DP_OK) return -1;
    make_images();
    make_models();
    return 0;
}

static int teardown(void **s) {
    (void)s;
    dp_ctx_free(ctx);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s'; rm -rf '%s'", dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(watermark_check), cmocka_unit_test(faces),      cmocka_unit_test(detect),
        cmocka_unit_test(model_info_import), cmocka_unit_test(gan_sample), cmocka_unit_test(classify),
        cmocka_unit_test(scan),              cmocka_unit_test(many_entries),     cmocka_unit_test(model_convert),
        cmocka_unit_test(numbers_in_files),  cmocka_unit_test(self_blend_training),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
