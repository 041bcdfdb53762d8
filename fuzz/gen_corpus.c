/* Writes the seed corpora of the fuzz targets: fuzz_gen OUTDIR (make fuzz-corpus
 * regenerates fuzz/corpus/). Every seed is made by doppel's own writers (or, for
 * formats doppel does not write, by the library doppel reads them with), small,
 * and the same on every run (but for the timestamps libhdf5 writes into the Keras file). */
#include "fuzz_common.h" /* first: it asks for _GNU_SOURCE */

#include <errno.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <webp/encode.h>

#include "doppel/detect.h"
#ifdef DP_HAVE_FFMPEG
#include "doppel/video.h"
#endif

static dp_ctx *ctx;
static const char *out_dir;

static void die(const char *what) {
    fprintf(stderr, "fuzz_gen: %s: %s\n", what, ctx ? dp_ctx_error(ctx) : "");
    exit(1);
}

static const char *target_dir(const char *target) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", out_dir, target);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) die(p);
    return p;
}

static const char *seed_path(const char *target, const char *name) {
    static char p[1100];
    snprintf(p, sizeof p, "%s/%s", target_dir(target), name);
    return p;
}

static void write_bytes(const char *target, const char *name, const void *buf, size_t n) {
    const char *p = seed_path(target, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) die(p);
}

static dp_image pattern(int c, int h, int w) {
    dp_image img;
    if (dp_image_alloc(ctx, c, h, w, &img) != DP_OK) die("image");
    for (int i = 0; i < c * h * w; i++) img.data[i] = (float)((i * 29) % 97) / 96.0f;
    return img;
}

static void images(void) {
    dp_image g = pattern(1, 8, 8), rgb = pattern(3, 6, 10);
    if (dp_image_save_png(ctx, seed_path("image", "grey8x8.png"), &g) != DP_OK) die("png");
    if (dp_image_save_png(ctx, seed_path("image", "rgb10x6.png"), &rgb) != DP_OK) die("png");
    dp_label_info info = {0};
    if (dp_write_synthetic(ctx, seed_path("image", "labelled.jpg"), &rgb, &info, 50) != DP_OK) die("jpeg");
    if (dp_write_synthetic(ctx, seed_path("image", "labelled.png"), &g, &info, 0) != DP_OK) die("png");
    dp_image tiny = pattern(3, 8, 8);
    if (dp_write_synthetic(ctx, seed_path("image", "tiny.jpg"), &tiny, &info, 20) != DP_OK) die("jpeg");
    uint8_t px[6 * 10 * 3];
    for (int i = 0; i < 6 * 10 * 3; i++) px[i] = (uint8_t)(i * 7);
    uint8_t *webp = NULL;
    size_t n = WebPEncodeRGB(px, 10, 6, 30, 50.0f, &webp);
    if (!n) die("webp");
    write_bytes("image", "rgb10x6.webp", webp, n);
    WebPFree(webp);
    n = WebPEncodeLosslessRGB(px, 10, 6, 30, &webp);
    if (!n) die("webp");
    write_bytes("image", "lossless.webp", webp, n);
    WebPFree(webp);
    dp_image_free(ctx, &g);
    dp_image_free(ctx, &rgb);
    dp_image_free(ctx, &tiny);
}

static void idx(void) {
    uint8_t d[2 * 3 * 4];
    for (int i = 0; i < 24; i++) d[i] = (uint8_t)i;
    if (dp_idx_write(ctx, seed_path("idx", "images-idx3-ubyte"), 3, (int64_t[]){2, 3, 4}, d) != DP_OK) die("idx");
    if (dp_idx_write(ctx, seed_path("idx", "labels-idx1-ubyte.gz"), 1, (int64_t[]){5}, d) != DP_OK) die("idx");
    if (dp_idx_write(ctx, seed_path("idx", "rank4-idx4-ubyte"), 4, (int64_t[]){1, 2, 3, 2}, d) != DP_OK) die("idx");
}

static void checkpoints(void) {
    dp_paramset *ps;
    dp_optim *opt;
    dp_tensor *t;
    if (dp_paramset_new(ctx, &ps) != DP_OK) die("paramset");
    const dp_init init = {.kind = DP_INIT_NORMAL, .a = 0.0f, .b = 1.0f};
    if (dp_paramset_get_or_add(ps, "fc.weight", 2, (int64_t[]){4, 3}, DP_PARAM_TRAINABLE, &init, &t) ||
        dp_paramset_get_or_add(ps, "fc.bias", 1, (int64_t[]){4}, DP_PARAM_TRAINABLE, &init, &t) ||
        dp_paramset_get_or_add(ps, "bn.running_var", 1, (int64_t[]){2}, DP_PARAM_BUFFER, NULL, &t) ||
        dp_paramset_init(ps, 3))
        die("params");
    if (dp_optim_new(ps, &(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 1e-3f}, &opt) != DP_OK) die("optim");
    const char *extra[] = {"dataset", "fuzz seed", NULL};
    if (dp_checkpoint_save(seed_path("safetensors", "model.safetensors"), ps, NULL, "tiny", extra) != DP_OK) die("save");
    if (dp_checkpoint_save(seed_path("safetensors", "with-adam.safetensors"), ps, opt, "tiny", NULL) != DP_OK) die("save");
    dp_optim_free(opt);
    dp_paramset_free(ps);
}

static void models(void) {
    dp_detector_params p;
    dp_detector *d;
    if (dp_detector_new(ctx, NULL, 1, 1, &d) != DP_OK) die("detector");
    p = *dp_detector_get_params(d);
    dp_detector_free(d);
    p.crop.work = 16;
    p.crop.size = 32;
    p.n_spec = dp_spectral_count(p.crop.work);
    if (dp_detector_new(ctx, &p, 1, 1, &d) != DP_OK) die("detector");
    if (dp_detector_save(d, seed_path("model", "small-detector.safetensors"), NULL) != DP_OK) die("detector save");
    dp_detector_free(d);
    static const char policy[] = "inner=0.8,margin=0.05,shift=0.05,work=64,size=256";
    write_bytes("model", "policy.txt", policy, sizeof policy - 1);
}

static void copy_file(const char *src, const char *target, const char *name) {
    uint8_t buf[65536];
    FILE *f = fopen(src, "rb");
    if (!f) die(src);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_bytes(target, name, buf, n);
}

/* ------------------------------------------------------------ Keras HDF5 (the layout of Meso4_DF.h5) */
static void str_attr(hid_t loc, const char *name, const char *const *v, int n) {
    if (n <= 0) { /* h5py writes [] as an empty float64 array */
        hsize_t zero = 0;
        hid_t sp = H5Screate_simple(1, &zero, NULL);
        hid_t a = H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0) die("hdf5 attribute");
        H5Aclose(a);
        H5Sclose(sp);
        return;
    }
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(v[i]) > len) len = strlen(v[i]);
    char *buf = calloc((size_t)n, len);
    if (!buf) die("out of memory");
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * len, v[i], strlen(v[i]));
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hsize_t dn = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dn, NULL);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, t, buf) < 0) die("hdf5 attribute");
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    free(buf);
}

static void h5_layer(hid_t root, const char *name, int nw, const char *const *roles, const hsize_t dims[][4],
                     const int *nd) {
    hid_t lg = H5Gcreate2(root, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    char wn[4][96];
    const char *wp[4] = {0};
    for (int w = 0; w < nw; w++) {
        snprintf(wn[w], sizeof wn[w], "%s/%s:0", name, roles[w]);
        wp[w] = wn[w];
    }
    str_attr(lg, "weight_names", wp, nw);
    if (nw) {
        hid_t sub = H5Gcreate2(lg, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        for (int w = 0; w < nw; w++) {
            hsize_t n = 1;
            for (int k = 0; k < nd[w]; k++) n *= dims[w][k];
            float *v = malloc(sizeof(float) * n);
            for (hsize_t k = 0; k < n; k++) v[k] = 0.5f + 0.01f * (float)(k % 13);
            hid_t sp = H5Screate_simple(nd[w], dims[w], NULL);
            char dn[64];
            snprintf(dn, sizeof dn, "%s:0", roles[w]);
            hid_t d = H5Dcreate2(sub, dn, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) die("hdf5 dataset");
            H5Dclose(d);
            H5Sclose(sp);
            free(v);
        }
        H5Gclose(sub);
    }
    H5Gclose(lg);
}

static void keras(void) {
    hid_t f = H5Fcreate(seed_path("keras", "meso4.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) die("hdf5 create");
    const char *names[20];
    int nn = 0;
    char buf[20][40];
    static const char *const conv_roles[2] = {"kernel", "bias"};
    static const char *const bn_roles[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const int k[4] = {3, 5, 5, 5}, ci[4] = {3, 8, 8, 16}, co[4] = {8, 8, 16, 16};
    for (int b = 0; b < 4; b++) {
        snprintf(buf[nn], 40, "conv2d_%d", b + 1);
        names[nn] = buf[nn];
        hsize_t cd[2][4] = {{(hsize_t)k[b], (hsize_t)k[b], (hsize_t)ci[b], (hsize_t)co[b]}, {(hsize_t)co[b]}};
        h5_layer(f, buf[nn++], 2, conv_roles, cd, (int[]){4, 1});
        snprintf(buf[nn], 40, "batch_normalization_%d", b + 1);
        names[nn] = buf[nn];
        hsize_t bd[4][4] = {{(hsize_t)co[b]}, {(hsize_t)co[b]}, {(hsize_t)co[b]}, {(hsize_t)co[b]}};
        h5_layer(f, buf[nn++], 4, bn_roles, bd, (int[]){1, 1, 1, 1});
        snprintf(buf[nn], 40, "max_pooling2d_%d", b + 1);
        names[nn] = buf[nn];
        h5_layer(f, buf[nn++], 0, NULL, NULL, NULL);
    }
    names[nn++] = "flatten_1";
    h5_layer(f, "flatten_1", 0, NULL, NULL, NULL);
    hsize_t d1[2][4] = {{1024, 16}, {16}}, d2[2][4] = {{16, 1}, {1}};
    names[nn++] = "dense_1";
    h5_layer(f, "dense_1", 2, conv_roles, d1, (int[]){2, 1});
    names[nn++] = "dense_2";
    h5_layer(f, "dense_2", 2, conv_roles, d2, (int[]){2, 1});
    str_attr(f, "layer_names", names, nn);
    const char *ver[1] = {"2.1.5"}, *be[1] = {"tensorflow"};
    str_attr(f, "keras_version", ver, 1);
    str_attr(f, "backend", be, 1);
    H5Fclose(f);
}

#define CLI_SEED(name, bytes) {name, bytes, sizeof bytes - 1}
static void cli(void) {
    /* first byte: the command (0 classify train, 1 eval, 2-5 gan train|sample|eval|report,
     * 6 detect, 7 detect train, 8 detect eval, 9 faces, 10-11 watermark check|eval,
     * 12-13 model import-keras|info, 14 scan, 15 serve, 16 model convert, 17 bench), then NUL-separated
     * arguments */
    static const struct {
        const char *name, *bytes;
        size_t n;
    } seeds[] = {
        CLI_SEED("classify-train", "\0--epochs\0002\0--batch=32\0--lr\0000.01\0--data\0fashion-mnist\0--grey"),
        CLI_SEED("gan-train", "\2--steps\00010\0--loss\0wgan-gp\0--out\0run\0--arch\0dcgan28"),
        CLI_SEED("detect", "\6a.png\0--json\0--model\0m.safetensors\0b.jpg"),
        CLI_SEED("detect-train", "\7--real\0r\0--fake\0f\0--out\0m\0--epochs\0001\0--work\00032"),
        CLI_SEED("gan-sample", "\3--model\0run\0-n\0004\0--grid\0g.png"),
        CLI_SEED("faces", "\11a.png\0--min-size\00024\0--scale\0001.2\0--pad\0auto\0--json\0--draw\0out.png"),
        CLI_SEED("watermark-check", "\12--json\0a.png\0--\0-b.png"),
        CLI_SEED("watermark-eval", "\13--size\00064\0--jpeg\00090,50\0--limit\00010\0--attacks\0dir"),
        CLI_SEED("model-import-keras", "\14Meso4_DF.h5\0--arch\0meso4\0--out\0m.safetensors"),
        CLI_SEED("model-info", "\15m.safetensors\0--json"),
        CLI_SEED("scan", "\16clip.mp4\0--json\0--every\0002\0--max-size\0640x480\0--timeout\0002.5\0--csv\0t.csv"),
        CLI_SEED("scan-input-option", "\16rtsp://127.0.0.1/live\0--input-option\0rtsp_flags=listen\0--input-option\0timeout=3\0--live"),
        CLI_SEED("serve", "\17--port\0000\0--bind\0127.0.0.1\0--max-upload\0008\0--token\0t\0--quiet"),
        CLI_SEED("model-convert", "\20m.safetensors\0--f16\0--out\0m16.safetensors"),
        CLI_SEED("bench", "\21--only\0meso_*,dcgan28,sgemm1024\0--reps\0002\0--threads\0001\0--timeout\00030\0--peak\000447\0--json"),
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) write_bytes("cli", seeds[i].name, seeds[i].bytes, seeds[i].n);
}

/* HTTP requests for doppel serve (fuzz_http): the API's routes, a multipart upload, a raw upload. */
static void http(void) {
    static const char get[] = "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    static const char page[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    static const char models[] = "GET /api/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    write_bytes("http", "health", get, sizeof get - 1);
    write_bytes("http", "page", page, sizeof page - 1);
    write_bytes("http", "models", models, sizeof models - 1);
    /* an image upload, raw and as multipart */
    dp_image img = pattern(3, 16, 16);
    const char *png = seed_path("http", "tmp.png");
    if (dp_image_save_png(ctx, png, &img) != DP_OK) die("png");
    dp_image_free(ctx, &img);
    uint8_t pix[4096];
    FILE *f = fopen(png, "rb");
    size_t n = f ? fread(pix, 1, sizeof pix, f) : 0;
    if (f) fclose(f);
    remove(png);
    char req[8192];
    int k = snprintf(req, sizeof req,
                     "POST /api/v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     "Content-Length: %zu\r\n\r\n", n);
    memcpy(req + k, pix, n);
    write_bytes("http", "detect-raw", req, (size_t)k + n);
    static const char b[] = "XyZbOuNdArY";
    char body[6000];
    int bl = snprintf(body, sizeof body,
                      "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                      "Content-Type: image/png\r\n\r\n", b);
    memcpy(body + bl, pix, n);
    bl += (int)n;
    bl += snprintf(body + bl, sizeof body - (size_t)bl, "\r\n--%s--\r\n", b);
    k = snprintf(req, sizeof req,
                 "POST /api/v1/detect?heatmap=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n", b, bl);
    memcpy(req + k, body, (size_t)bl);
    write_bytes("http", "detect-multipart", req, (size_t)k + (size_t)bl);
}

/* Short test videos for fuzz_video (H.264 MP4 written through FFmpeg by dp_video_write_test). */
static void videos(void) {
#ifdef DP_HAVE_FFMPEG
    dp_image img = pattern(3, 32, 32);
    if (dp_video_write_test(ctx, seed_path("video", "still-32x32.mp4"), &img, 3, 5, 0, 0) != DP_OK) die("video");
    if (dp_video_write_test(ctx, seed_path("video", "moving-audio.mp4"), &img, 4, 10, 2, 1) != DP_OK) die("video");
    dp_image_free(ctx, &img);
#endif
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fuzz_gen OUTDIR SOURCE_DIR (writes OUTDIR/<target>/...)\n");
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) die(out_dir);
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx) != DP_OK) die("context");
    char p[2048];
    images();
    idx();
    checkpoints();
    models();
    snprintf(p, sizeof p, "%s/tests/data/face_tiny.xml", argv[2]);
    copy_file(p, "cascade", "face_tiny.xml");
    snprintf(p, sizeof p, "%s/tests/data/face_tiny_lbp.xml", argv[2]);
    copy_file(p, "cascade", "face_tiny_lbp.xml");
    keras();
    cli();
    http();
    videos();
    dp_ctx_free(ctx);
    return 0;
}
