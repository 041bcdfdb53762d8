/* Data layer: IDX files (round trips, truncated/corrupt/absurd files), image
 * decoding (PNG/JPEG/WebP made here with the libraries' encoders), size
 * limits, corrupt images, PNG writing, resize/crop, folder datasets, the real
 * Fashion-MNIST files (skipped when absent), and a `doppel classify` smoke
 * test on a tiny synthetic IDX set. Every file is made in a fresh temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>
#include <zlib.h>

#include "doppel/doppel.h"

static char g_dir[256]; /* the temp dir of the current test */

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void rm_rf(const char *p) {
    struct stat st;
    if (lstat(p, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(p);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char q[1024];
            snprintf(q, sizeof q, "%s/%s", p, e->d_name);
            rm_rf(q);
        }
        if (d) closedir(d);
        rmdir(p);
    } else {
        unlink(p);
    }
}

static int setup(void **state) {
    dp_ctx *ctx;
    snprintf(g_dir, sizeof g_dir, "/tmp/dp_test_data_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx) != DP_OK) return -1;
    *state = ctx;
    return 0;
}
static int teardown(void **state) {
    dp_ctx_free(*state);
    rm_rf(g_dir);
    return 0;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}
static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)sz + 1);
    assert_int_equal(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}
static void write_gz(const char *path, const void *p, size_t n) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, p, (unsigned)n), (int)n);
    gzclose(f);
}
static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}
/* Number of entries in g_dir whose name contains s. */
static int count_files_with(const char *s) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) n += strstr(e->d_name, s) != NULL;
    if (d) closedir(d);
    return n;
}

/* ------------------------------------------------------------ IDX */
static void test_idx_roundtrip(void **state) {
    dp_ctx *ctx = *state;
    uint8_t data[3 * 4 * 5];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + 3);
    const int64_t dims[3] = {3, 4, 5};
    const char *names[2] = {"plain-idx3-ubyte", "packed-idx3-ubyte.gz"};
    for (int k = 0; k < 2; k++) {
        const char *p = tpath(names[k]);
        assert_int_equal(dp_idx_write(ctx, p, 3, dims, data), DP_OK);
        size_t n;
        uint8_t *raw = read_bytes(p, &n);
        if (k == 0) {
            assert_int_equal(n, 4 + 12 + sizeof data);
            assert_memory_equal(raw, "\0\0\x08\x03\0\0\0\x03\0\0\0\x04\0\0\0\x05", 16);
        } else {
            assert_int_equal(raw[0], 0x1f); /* gzip magic */
            assert_int_equal(raw[1], 0x8b);
        }
        free(raw);
        dp_idx idx;
        assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_OK);
        assert_int_equal(idx.ndim, 3);
        assert_int_equal(idx.dims[0], 3);
        assert_int_equal(idx.dims[1], 4);
        assert_int_equal(idx.dims[2], 5);
        assert_int_equal(idx.size, sizeof data);
        assert_memory_equal(idx.data, data, sizeof data);
        dp_idx_free(ctx, &idx);
    }
    assert_int_equal(count_files_with(".tmp-"), 0);
    /* a 1-D label file */
    const int64_t d1[1] = {4};
    assert_int_equal(dp_idx_write(ctx, tpath("l-idx1-ubyte"), 1, d1, (const uint8_t *)"\x01\x02\x03\x09"), DP_OK);
    dp_idx idx;
    assert_int_equal(dp_idx_read(ctx, tpath("l-idx1-ubyte"), 0, &idx), DP_OK);
    assert_int_equal(idx.ndim, 1);
    assert_memory_equal(idx.data, "\x01\x02\x03\x09", 4);
    dp_idx_free(ctx, &idx);
    dp_idx_free(ctx, NULL);
}

static void test_idx_bad_files(void **state) {
    dp_ctx *ctx = *state;
    dp_idx idx;
    /* header says 10x28x28 = 7840 bytes, file has 100 */
    uint8_t buf[16 + 100] = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28};
    const char *p = tpath("t10k-images-idx3-ubyte");
    write_bytes(p, buf, sizeof buf);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "t10k-images-idx3-ubyte: truncated: expected 7840 bytes of pixels, got 100");
    assert_null(idx.data);
    /* the same, gzipped */
    p = tpath("t10k-images-idx3-ubyte.gz");
    write_gz(p, buf, sizeof buf);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "t10k-images-idx3-ubyte.gz: truncated: expected 7840 bytes of pixels, got 100");
    /* a gzip stream cut in the middle */
    uint8_t *big = calloc(1, 16 + 7840);
    memcpy(big, buf, 16);
    for (int i = 0; i < 7840; i++) big[16 + i] = (uint8_t)(i * 31 % 251);
    write_gz(p, big, 16 + 7840);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_OK);
    dp_idx_free(ctx, &idx);
    size_t n;
    uint8_t *gz = read_bytes(p, &n);
    write_bytes(p, gz, n / 2);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "truncated");
    /* flipped bytes inside the deflate stream: corrupt data or a CRC mismatch */
    for (size_t i = 20; i < n - 8; i += 7) gz[i] ^= 0x5a;
    write_bytes(p, gz, n);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    free(gz);
    free(big);
    /* bad magic */
    p = tpath("bad-magic");
    write_bytes(p, "\x12\x34\x08\x01\0\0\0\x01\x05", 9);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "bad-magic: not an IDX file");
    /* unsupported element type (0x0D = float) */
    write_bytes(p, "\0\0\x0d\x01\0\0\0\x01\0\0\0\0", 12);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_UNSUPPORTED);
    assert_contains(dp_ctx_error(ctx), "0x0d");
    /* rank 0 and rank 9 */
    write_bytes(p, "\0\0\x08\x00", 4);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    write_bytes(p, "\0\0\x08\x09\0\0\0\x01", 8);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "rank 9");
    /* absurd dimensions: 2^96 bytes announced in a 20-byte file */
    write_bytes(p, "\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\0\0\0\0", 20);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_NOMEM);
    assert_contains(dp_ctx_error(ctx), "limit");
    /* 1 GiB announced (under the default limit) in a 20-byte file: a clean truncation error */
    write_bytes(p, "\0\0\x08\x03\0\0\x40\0\0\0\x01\0\0\0\x01\0abcd", 20);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "expected 1073741824 bytes of pixels, got 4");
    /* a caller's limit */
    write_bytes(p, "\0\0\x08\x01\0\0\0\x08" "12345678", 16);
    assert_int_equal(dp_idx_read(ctx, p, 4, &idx), DP_ERR_NOMEM);
    assert_int_equal(dp_idx_read(ctx, p, 8, &idx), DP_OK);
    dp_idx_free(ctx, &idx);
    /* trailing data */
    write_bytes(p, "\0\0\x08\x01\0\0\0\x02" "123", 11);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "after the 2 bytes");
    /* dims cut short, empty file, missing file */
    write_bytes(p, "\0\0\x08\x03\0\0\0\x02\0\0", 10);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "truncated");
    write_bytes(p, "", 0);
    assert_int_equal(dp_idx_read(ctx, p, 0, &idx), DP_ERR_FORMAT);
    assert_int_equal(dp_idx_read(ctx, tpath("nope-idx1-ubyte"), 0, &idx), DP_ERR_IO);
    assert_contains(dp_ctx_error(ctx), "nope-idx1-ubyte: cannot open");
    assert_int_equal(dp_idx_read(ctx, NULL, 0, &idx), DP_ERR_NULL);
    /* writing into a folder that does not exist leaves nothing behind */
    const int64_t d1[1] = {1};
    assert_int_equal(dp_idx_write(ctx, tpath("no/such/dir/x"), 1, d1, (const uint8_t *)"a"), DP_ERR_IO);
}

static void test_idx_dataset(void **state) {
    dp_ctx *ctx = *state;
    uint8_t px[5 * 2 * 3], lb[5] = {2, 0, 1, 2, 2};
    for (int i = 0; i < 30; i++) px[i] = (uint8_t)(i * 8);
    assert_int_equal(dp_idx_write(ctx, tpath("im"), 3, (const int64_t[]){5, 2, 3}, px), DP_OK);
    assert_int_equal(dp_idx_write(ctx, tpath("lb.gz"), 1, (const int64_t[]){5}, lb), DP_OK);
    dp_dataset *ds;
    assert_int_equal(dp_dataset_from_idx(ctx, tpath("im"), tpath("lb.gz"), 0, &ds), DP_OK);
    assert_int_equal(ds->n, 5);
    assert_int_equal(ds->channels, 1);
    assert_int_equal(ds->height, 2);
    assert_int_equal(ds->width, 3);
    assert_int_equal(ds->n_classes, 3);
    assert_string_equal(ds->class_names[2], "2");
    assert_memory_equal(ds->pixels, px, 30);
    assert_int_equal(ds->labels[0], 2);
    /* a batch, normalised and not */
    float x[12], y[2];
    dp_dataset_batch(ds, (const int64_t[]){4, 1}, 2, NULL, NULL, x, y);
    assert_float_equal(x[0], px[24] / 255.0f, 1e-6);
    assert_float_equal(x[6], px[6] / 255.0f, 1e-6);
    assert_float_equal(y[0], 2.0f, 0);
    assert_float_equal(y[1], 0.0f, 0);
    float m, s;
    assert_int_equal(dp_dataset_stats(ds, NULL, 0, &m, &s), DP_OK);
    assert_float_equal(m, 116.0f / 255.0f, 1e-5); /* mean of 0,8,...,232 */
    dp_dataset_batch(ds, (const int64_t[]){0}, 1, &m, &s, x, NULL);
    assert_float_equal(x[0], (0 - m) / s, 1e-5);
    dp_dataset_free(ds);
    /* limit */
    assert_int_equal(dp_dataset_from_idx(ctx, tpath("im"), tpath("lb.gz"), 2, &ds), DP_OK);
    assert_int_equal(ds->n, 2);
    assert_int_equal(ds->n_classes, 3);
    dp_dataset_free(ds);
    /* label count mismatch */
    assert_int_equal(dp_idx_write(ctx, tpath("lb4"), 1, (const int64_t[]){4}, lb), DP_OK);
    assert_int_equal(dp_dataset_from_idx(ctx, tpath("im"), tpath("lb4"), 0, &ds), DP_ERR_SHAPE);
    assert_contains(dp_ctx_error(ctx), "lb4");
    assert_null(ds);
    /* labels given as images */
    assert_int_equal(dp_dataset_from_idx(ctx, tpath("lb.gz"), tpath("lb.gz"), 0, &ds), DP_ERR_SHAPE);
    dp_dataset_free(NULL);
}

static void test_shuffle(void **state) {
    (void)state;
    int64_t a[100], b[100];
    for (int i = 0; i < 100; i++) a[i] = b[i] = i;
    dp_rng r1, r2;
    dp_rng_seed(&r1, 5);
    dp_rng_seed(&r2, 5);
    dp_shuffle_i64(&r1, a, 100);
    dp_shuffle_i64(&r2, b, 100);
    assert_memory_equal(a, b, sizeof a);
    int seen[100] = {0}, moved = 0;
    for (int i = 0; i < 100; i++) {
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
    assert_true(moved > 50);
}

/* ------------------------------------------------------------ images: encoders for the tests */
static dp_image make_pattern(dp_ctx *ctx, int c, int h, int w) {
    dp_image im;
    assert_int_equal(dp_image_alloc(ctx, c, h, w, &im), DP_OK);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                im.data[(ch * h + y) * w + x] = (float)((x * 16 + y * 5 + ch * 80) % 256) / 255.0f;
    return im;
}

/* Interleaved 8-bit pixels of a smooth gradient (lossy codecs keep it well). */
static uint8_t *smooth_rgb(int h, int w, int c) {
    uint8_t *p = malloc((size_t)h * w * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) p[(y * w + x) * c + ch] = (uint8_t)(40 + x * 4 + y * 3 + ch * 30);
    return p;
}

static uint8_t *encode_jpeg(const uint8_t *pix, int h, int w, int c, unsigned long *n) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    jpeg_mem_dest(&ci, &out, n);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 98, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return out;
}

static void test_png_roundtrip(void **state) {
    dp_ctx *ctx = *state;
    for (int c = 1; c <= 3; c += 2) {
        dp_image a = make_pattern(ctx, c, 7, 13), b;
        const char *p = tpath(c == 1 ? "grey.png" : "rgb.png");
        assert_int_equal(dp_image_save_png(ctx, p, &a), DP_OK);
        assert_int_equal(count_files_with(".tmp-"), 0);
        assert_int_equal(dp_image_load(ctx, p, 0, NULL, &b), DP_OK);
        assert_int_equal(b.channels, c);
        assert_int_equal(b.height, 7);
        assert_int_equal(b.width, 13);
        for (int i = 0; i < c * 7 * 13; i++) assert_float_equal(a.data[i], b.data[i], 1e-6); /* exact k/255 values */
        dp_image_format f;
        int w, h;
        assert_int_equal(dp_image_probe(ctx, p, &f, &w, &h), DP_OK);
        assert_int_equal(f, DP_IMG_PNG);
        assert_int_equal(w, 13);
        assert_int_equal(h, 7);
        dp_image_free(ctx, &b);
        /* converted on load: grey → 3 equal channels; RGB → luma */
        assert_int_equal(dp_image_load(ctx, p, c == 1 ? 3 : 1, NULL, &b), DP_OK);
        if (c == 1) {
            assert_int_equal(b.channels, 3);
            for (int i = 0; i < 7 * 13; i++) assert_float_equal(b.data[2 * 7 * 13 + i], a.data[i], 1e-6);
        } else {
            assert_int_equal(b.channels, 1);
            int i = 3 * 13 + 5, pl = 7 * 13;
            float luma = 0.299f * a.data[i] + 0.587f * a.data[pl + i] + 0.114f * a.data[2 * pl + i];
            assert_float_equal(b.data[i], luma, 1e-5);
        }
        dp_image_free(ctx, &b);
        dp_image_free(ctx, &a);
    }
    /* clamping and NaN */
    dp_image im;
    assert_int_equal(dp_image_alloc(ctx, 1, 1, 3, &im), DP_OK);
    im.data[0] = -1.0f;
    im.data[1] = 2.0f;
    im.data[2] = NAN;
    assert_int_equal(dp_image_save_png(ctx, tpath("clamp.png"), &im), DP_OK);
    dp_image b;
    assert_int_equal(dp_image_load(ctx, tpath("clamp.png"), 1, NULL, &b), DP_OK);
    assert_float_equal(b.data[0], 0.0f, 0);
    assert_float_equal(b.data[1], 1.0f, 0);
    assert_float_equal(b.data[2], 0.0f, 0);
    dp_image_free(ctx, &b);
    /* a failed write leaves no file and no temp file */
    assert_int_equal(dp_image_save_png(ctx, tpath("missing/dir/x.png"), &im), DP_ERR_IO);
    im.channels = 2;
    assert_int_equal(dp_image_save_png(ctx, tpath("two.png"), &im), DP_ERR_ARG);
    im.channels = 1;
    assert_int_equal(count_files_with("two.png"), 0);
    dp_image_free(ctx, &im);
}

static void test_jpeg_webp_decode(void **state) {
    dp_ctx *ctx = *state;
    int h = 16, w = 24;
    for (int c = 1; c <= 3; c += 2) {
        uint8_t *pix = smooth_rgb(h, w, c);
        unsigned long n = 0;
        uint8_t *jpg = encode_jpeg(pix, h, w, c, &n);
        /* named .png on purpose: the format comes from the bytes */
        const char *p = tpath("really-a-jpeg.png");
        write_bytes(p, jpg, n);
        dp_image im;
        assert_int_equal(dp_image_load(ctx, p, 0, NULL, &im), DP_OK);
        assert_int_equal(im.channels, c);
        assert_int_equal(im.height, h);
        assert_int_equal(im.width, w);
        double maxerr = 0;
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < h * w; i++)
                maxerr = fmax(maxerr, fabs(im.data[ch * h * w + i] - pix[i * c + ch] / 255.0));
        assert_true(maxerr < 0.06);
        dp_image_free(ctx, &im);
        dp_image_format f;
        int pw, ph;
        assert_int_equal(dp_image_probe(ctx, p, &f, &pw, &ph), DP_OK);
        assert_int_equal(f, DP_IMG_JPEG);
        assert_int_equal(pw, w);
        /* truncated: libjpeg would pad with grey and only warn; we refuse */
        assert_int_equal(dp_image_decode(ctx, jpg, n * 2 / 3, "cut.jpg", 0, NULL, &im), DP_ERR_FORMAT);
        assert_contains(dp_ctx_error(ctx), "cut.jpg: corrupt JPEG");
        assert_null(im.data);
        assert_int_equal(dp_image_decode(ctx, jpg, 40, "head.jpg", 0, NULL, &im), DP_ERR_FORMAT);
        /* limits are checked from the header, before decoding */
        dp_image_limits lim = {.max_side = 20};
        assert_int_equal(dp_image_decode(ctx, jpg, n, "big.jpg", 0, &lim, &im), DP_ERR_NOMEM);
        assert_contains(dp_ctx_error(ctx), "big.jpg: JPEG is 24x16");
        free(jpg);
        free(pix);
    }
    /* WebP: lossless round trip is exact; lossy is close */
    uint8_t *pix = smooth_rgb(h, w, 3), *webp = NULL;
    size_t n = WebPEncodeLosslessRGB(pix, w, h, w * 3, &webp);
    assert_true(n > 0);
    write_bytes(tpath("a.webp"), webp, n);
    dp_image im;
    assert_int_equal(dp_image_load(ctx, tpath("a.webp"), 3, NULL, &im), DP_OK);
    assert_int_equal(im.channels, 3);
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < h * w; i++) assert_float_equal(im.data[ch * h * w + i], pix[i * 3 + ch] / 255.0f, 1e-6);
    dp_image_free(ctx, &im);
    assert_int_equal(dp_image_decode(ctx, webp, n / 2, "cut.webp", 0, NULL, &im), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "cut.webp");
    assert_int_equal(dp_image_decode(ctx, webp, 20, "head.webp", 0, NULL, &im), DP_ERR_FORMAT);
    dp_image_limits lim = {.max_pixels = 100};
    assert_int_equal(dp_image_decode(ctx, webp, n, "many.webp", 0, &lim, &im), DP_ERR_NOMEM);
    WebPFree(webp);
    n = WebPEncodeRGB(pix, w, h, w * 3, 95, &webp);
    assert_true(n > 0);
    assert_int_equal(dp_image_decode(ctx, webp, n, "lossy.webp", 1, NULL, &im), DP_OK);
    assert_int_equal(im.channels, 1);
    float luma = (0.299f * pix[0] + 0.587f * pix[1] + 0.114f * pix[2]) / 255.0f;
    assert_float_equal(im.data[0], luma, 0.08);
    dp_image_free(ctx, &im);
    WebPFree(webp);
    free(pix);
}

/* A PNG's IHDR rewritten to claim w×h, with a valid CRC: only the header lies. */
static void patch_ihdr(uint8_t *png, uint32_t w, uint32_t h) {
    uint8_t *d = png + 16;
    d[0] = (uint8_t)(w >> 24), d[1] = (uint8_t)(w >> 16), d[2] = (uint8_t)(w >> 8), d[3] = (uint8_t)w;
    d[4] = (uint8_t)(h >> 24), d[5] = (uint8_t)(h >> 16), d[6] = (uint8_t)(h >> 8), d[7] = (uint8_t)h;
    uint32_t crc = (uint32_t)crc32(0, png + 12, 17);
    uint8_t *c = png + 29;
    c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
}

static void test_corrupt_and_limits(void **state) {
    dp_ctx *ctx = *state;
    dp_image a = make_pattern(ctx, 3, 50, 100), im;
    assert_int_equal(dp_image_save_png(ctx, tpath("p.png"), &a), DP_OK);
    dp_image_free(ctx, &a);
    size_t n;
    uint8_t *png = read_bytes(tpath("p.png"), &n);
    /* limits */
    dp_image_limits lim = {.max_side = 64};
    assert_int_equal(dp_image_load(ctx, tpath("p.png"), 0, &lim, &im), DP_ERR_NOMEM);
    assert_contains(dp_ctx_error(ctx), "p.png: PNG is 100x50, larger than the limit of 64 px a side");
    lim = (dp_image_limits){.max_pixels = 4999};
    assert_int_equal(dp_image_load(ctx, tpath("p.png"), 0, &lim, &im), DP_ERR_NOMEM);
    lim = (dp_image_limits){.max_file_bytes = 100};
    assert_int_equal(dp_image_load(ctx, tpath("p.png"), 0, &lim, &im), DP_ERR_NOMEM);
    lim = (dp_image_limits){.max_pixels = 5000};
    assert_int_equal(dp_image_load(ctx, tpath("p.png"), 0, &lim, &im), DP_OK);
    dp_image_free(ctx, &im);
    /* a "decompression bomb" header: 60000x60000 claimed by a tiny file */
    uint8_t *bomb = malloc(n);
    memcpy(bomb, png, n);
    patch_ihdr(bomb, 60000, 60000);
    assert_int_equal(dp_image_decode(ctx, bomb, n, "bomb.png", 0, NULL, &im), DP_ERR_NOMEM);
    assert_contains(dp_ctx_error(ctx), "bomb.png");
    /* under the limits but inconsistent with the data: corrupt */
    patch_ihdr(bomb, 100, 400);
    assert_int_equal(dp_image_decode(ctx, bomb, n, "short.png", 0, NULL, &im), DP_ERR_FORMAT);
    free(bomb);
    /* truncated at several points */
    size_t cuts[] = {n - 5, n / 2, 40, 20, 9, 3, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(dp_image_decode(ctx, png, cuts[i], "cut.png", 0, NULL, &im), DP_ERR_FORMAT);
        assert_contains(dp_ctx_error(ctx), "cut.png");
        assert_null(im.data);
    }
    /* a flipped byte in the image data: CRC error */
    png[n / 2] ^= 0xff;
    write_bytes(tpath("flip.png"), png, n);
    assert_int_equal(dp_image_load(ctx, tpath("flip.png"), 0, NULL, &im), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "flip.png: corrupt PNG");
    free(png);
    /* not an image at all, and a missing file */
    write_bytes(tpath("text.jpg"), "hello world, not a jpeg", 23);
    assert_int_equal(dp_image_load(ctx, tpath("text.jpg"), 0, NULL, &im), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "text.jpg: not a PNG, JPEG or WebP image");
    assert_int_equal(dp_image_load(ctx, tpath("absent.png"), 0, NULL, &im), DP_ERR_IO);
    assert_contains(dp_ctx_error(ctx), "absent.png");
    assert_int_equal(dp_image_load(ctx, g_dir, 0, NULL, &im), DP_ERR_IO); /* a folder */
    /* garbage after a JPEG signature */
    uint8_t junk[600];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 37 + 11);
    junk[0] = 0xff, junk[1] = 0xd8, junk[2] = 0xff;
    assert_int_equal(dp_image_decode(ctx, junk, sizeof junk, "junk.jpg", 0, NULL, &im), DP_ERR_FORMAT);
    memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
    assert_int_equal(dp_image_decode(ctx, junk, sizeof junk, "junk.png", 0, NULL, &im), DP_ERR_FORMAT);
    memcpy(junk, "RIFF\x50\x02\0\0WEBPVP8 ", 16);
    assert_int_equal(dp_image_decode(ctx, junk, sizeof junk, "junk.webp", 0, NULL, &im), DP_ERR_FORMAT);
    assert_int_equal(dp_image_decode(ctx, junk, sizeof junk, "x", 2, NULL, &im), DP_ERR_ARG);
    assert_int_equal(dp_image_sniff(NULL, 0), DP_IMG_UNKNOWN);
    assert_string_equal(dp_image_format_name(DP_IMG_WEBP), "webp");
}

static void test_resize_crop(void **state) {
    dp_ctx *ctx = *state;
    dp_image a, b;
    /* a constant image stays constant, both ways */
    assert_int_equal(dp_image_alloc(ctx, 3, 9, 13, &a), DP_OK);
    for (int i = 0; i < 3 * 9 * 13; i++) a.data[i] = 0.3f;
    assert_int_equal(dp_image_resize(ctx, &a, 4, 5, &b), DP_OK);
    for (int i = 0; i < 3 * 4 * 5; i++) assert_float_equal(b.data[i], 0.3f, 1e-6);
    dp_image_free(ctx, &b);
    assert_int_equal(dp_image_resize(ctx, &a, 20, 31, &b), DP_OK);
    for (int i = 0; i < 3 * 20 * 31; i++) assert_float_equal(b.data[i], 0.3f, 1e-6);
    dp_image_free(ctx, &b);
    dp_image_free(ctx, &a);
    /* enlarging 2x: bilinear with half-pixel centres, edges clamped */
    assert_int_equal(dp_image_alloc(ctx, 1, 1, 2, &a), DP_OK);
    a.data[0] = 0.0f;
    a.data[1] = 1.0f;
    assert_int_equal(dp_image_resize(ctx, &a, 1, 4, &b), DP_OK);
    assert_float_equal(b.data[0], 0.0f, 1e-6);
    assert_float_equal(b.data[1], 0.25f, 1e-6);
    assert_float_equal(b.data[2], 0.75f, 1e-6);
    assert_float_equal(b.data[3], 1.0f, 1e-6);
    dp_image_free(ctx, &b);
    dp_image_free(ctx, &a);
    /* shrinking averages: a 1-px checkerboard becomes grey, not black or white */
    assert_int_equal(dp_image_alloc(ctx, 1, 16, 16, &a), DP_OK);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) a.data[y * 16 + x] = (float)((x + y) & 1);
    assert_int_equal(dp_image_resize(ctx, &a, 4, 4, &b), DP_OK);
    for (int i = 0; i < 16; i++) assert_float_equal(b.data[i], 0.5f, 0.02);
    dp_image_free(ctx, &b);
    /* same size: identity */
    assert_int_equal(dp_image_resize(ctx, &a, 16, 16, &b), DP_OK);
    assert_memory_equal(a.data, b.data, sizeof(float) * 256);
    dp_image_free(ctx, &b);
    /* centre crop */
    for (int i = 0; i < 256; i++) a.data[i] = (float)i;
    assert_int_equal(dp_image_center_crop(ctx, &a, 2, 4, &b), DP_OK);
    assert_float_equal(b.data[0], 7 * 16 + 6, 0);
    assert_float_equal(b.data[7], 8 * 16 + 9, 0);
    dp_image_free(ctx, &b);
    assert_int_equal(dp_image_center_crop(ctx, &a, 17, 4, &b), DP_ERR_ARG);
    assert_int_equal(dp_image_resize(ctx, &a, 0, 4, &b), DP_ERR_ARG);
    dp_image_free(ctx, &a);
    /* cover: 30x60 → 10x10 keeps the aspect (10x20) then crops the middle */
    assert_int_equal(dp_image_alloc(ctx, 1, 30, 60, &a), DP_OK);
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 60; x++) a.data[y * 60 + x] = x < 9 || x >= 51 ? 1.0f : 0.0f; /* bars at the sides */
    assert_int_equal(dp_image_resize_cover(ctx, &a, 10, 10, &b), DP_OK);
    assert_int_equal(b.height, 10);
    assert_int_equal(b.width, 10);
    for (int i = 0; i < 100; i++) assert_float_equal(b.data[i], 0.0f, 0.01); /* the side bars are cropped away */
    dp_image_free(ctx, &b);
    dp_image_free(ctx, &a);
}

/* ------------------------------------------------------------ folders */
typedef struct warn_log {
    int n;
    char last[1300];
} warn_log;
static void record_warn(void *user, const char *msg) {
    warn_log *w = user;
    w->n++;
    snprintf(w->last, sizeof w->last, "%s", msg);
}

static void test_folder_dataset(void **state) {
    dp_ctx *ctx = *state;
    mkdir(tpath("set"), 0777);
    mkdir(tpath("set/b_real"), 0777);
    mkdir(tpath("set/a_fake"), 0777);
    mkdir(tpath("set/a_fake/deeper"), 0777);
    mkdir(tpath("set/.hidden"), 0777);
    /* a_fake: dark images (PNG, a WebP in a subfolder, a JPEG); b_real: bright ones and a corrupt file */
    dp_image im;
    assert_int_equal(dp_image_alloc(ctx, 3, 20, 30, &im), DP_OK);
    for (int i = 0; i < 3 * 600; i++) im.data[i] = 0.1f;
    assert_int_equal(dp_image_save_png(ctx, tpath("set/a_fake/1.png"), &im), DP_OK);
    uint8_t *pix = calloc(600, 3);
    memset(pix, 26, 1800);
    uint8_t *webp;
    size_t wn = WebPEncodeLosslessRGB(pix, 30, 20, 90, &webp);
    write_bytes(tpath("set/a_fake/deeper/2.WEBP"), webp, wn);
    WebPFree(webp);
    unsigned long jn;
    uint8_t *jpg = encode_jpeg(pix, 20, 30, 3, &jn);
    write_bytes(tpath("set/a_fake/3.jpeg"), jpg, jn);
    free(jpg);
    free(pix);
    for (int i = 0; i < 3 * 600; i++) im.data[i] = 0.9f;
    assert_int_equal(dp_image_save_png(ctx, tpath("set/b_real/x.png"), &im), DP_OK);
    assert_int_equal(dp_image_save_png(ctx, tpath("set/b_real/y.jpg"), &im), DP_OK); /* a PNG named .jpg */
    dp_image_free(ctx, &im);
    write_bytes(tpath("set/b_real/broken.png"), "\x89PNG\r\n\x1a\nnot really", 18);
    write_bytes(tpath("set/b_real/notes.txt"), "ignored", 7);
    write_bytes(tpath("set/.hidden/z.png"), "ignored", 7);
    write_bytes(tpath("set/README.png"), "not a class", 11);

    warn_log wl = {0};
    dp_folder_opts fo = {.channels = 1, .height = 8, .width = 8, .warn = record_warn, .warn_user = &wl};
    dp_dataset *ds;
    assert_int_equal(dp_dataset_from_folder(ctx, tpath("set"), &fo, &ds), DP_OK);
    assert_int_equal(ds->n_classes, 2);
    assert_string_equal(ds->class_names[0], "a_fake");
    assert_string_equal(ds->class_names[1], "b_real");
    assert_int_equal(ds->n, 5);
    assert_int_equal(ds->skipped, 1);
    assert_int_equal(wl.n, 1);
    assert_contains(wl.last, "broken.png");
    assert_int_equal(ds->channels, 1);
    assert_int_equal(ds->height, 8);
    /* sorted: a_fake/1.png, a_fake/3.jpeg, a_fake/deeper/2.WEBP, b_real/x.png, b_real/y.jpg */
    int want[5] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ds->labels[i], want[i]);
        int v = ds->pixels[i * 64 + 27];
        if (want[i] == 0) assert_true(v >= 24 && v <= 28);
        else assert_true(v >= 228 && v <= 231);
    }
    dp_dataset_free(ds);
    /* limit spreads over both classes */
    fo.limit = 3; /* of the 6 files: 1.png, deeper/2.WEBP, x.png */
    fo.channels = 3;
    assert_int_equal(dp_dataset_from_folder(ctx, tpath("set"), &fo, &ds), DP_OK);
    assert_int_equal(ds->n, 3);
    assert_int_equal(ds->channels, 3);
    assert_int_equal(ds->labels[0], 0);
    assert_int_equal(ds->labels[1], 0);
    assert_int_equal(ds->labels[2], 1);
    dp_dataset_free(ds);
    /* errors */
    assert_int_equal(dp_dataset_from_folder(ctx, tpath("nowhere"), &fo, &ds), DP_ERR_IO);
    assert_contains(dp_ctx_error(ctx), "nowhere");
    assert_int_equal(dp_dataset_from_folder(ctx, tpath("set/b_real"), &fo, &ds), DP_ERR_NOT_FOUND); /* no subfolders */
    mkdir(tpath("bad"), 0777);
    mkdir(tpath("bad/only"), 0777);
    write_bytes(tpath("bad/only/a.png"), "junk", 4);
    assert_int_equal(dp_dataset_from_folder(ctx, tpath("bad"), &fo, &ds), DP_ERR_FORMAT);
    assert_int_equal(wl.n, 2);
    fo.height = 0;
    assert_int_equal(dp_dataset_from_folder(ctx, tpath("set"), &fo, &ds), DP_ERR_ARG);
}

/* ------------------------------------------------------------ real Fashion-MNIST */
static void test_fashion_mnist(void **state) {
    dp_ctx *ctx = *state;
    struct stat st;
    if (stat(DP_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", &st) != 0) {
        printf("skipped: " DP_FASHION_MNIST_DIR " not installed\n");
        skip();
    }
    dp_dataset *tr, *te;
    assert_int_equal(dp_dataset_fashion_mnist(ctx, NULL, 1, 0, &tr), DP_OK);
    assert_int_equal(dp_dataset_fashion_mnist(ctx, NULL, 0, 0, &te), DP_OK);
    assert_int_equal(tr->n, 60000);
    assert_int_equal(te->n, 10000);
    assert_int_equal(tr->height, 28);
    assert_int_equal(tr->width, 28);
    assert_int_equal(tr->channels, 1);
    assert_int_equal(tr->n_classes, 10);
    assert_string_equal(tr->class_names[9], "Ankle boot");
    int cnt[10] = {0};
    for (int64_t i = 0; i < te->n; i++) cnt[te->labels[i]]++;
    for (int k = 0; k < 10; k++) assert_int_equal(cnt[k], 1000); /* balanced test set */
    assert_int_equal(tr->labels[0], 9); /* the first training image is an ankle boot */
    float m, s;
    assert_int_equal(dp_dataset_stats(tr, NULL, 0, &m, &s), DP_OK);
    assert_float_equal(m, 0.2860f, 0.001); /* the usual Fashion-MNIST normalisation constants */
    assert_float_equal(s, 0.3530f, 0.001);
    /* a truncated copy of the real test images gives the promised message */
    dp_idx idx;
    assert_int_equal(dp_idx_read(ctx, DP_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", 0, &idx), DP_OK);
    uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0x27, 0x10, 0, 0, 0, 28, 0, 0, 0, 28};
    gzFile f = gzopen(tpath("t10k-images-idx3-ubyte.gz"), "wb");
    gzwrite(f, hdr, 16);
    gzwrite(f, idx.data, 1000);
    gzclose(f);
    dp_idx_free(ctx, &idx);
    dp_dataset *none;
    assert_int_equal(dp_dataset_fashion_mnist(ctx, g_dir, 0, 0, &none), DP_ERR_IO); /* no label file there */
    assert_contains(dp_ctx_error(ctx), "t10k-labels-idx1-ubyte");
    assert_int_equal(dp_dataset_fashion_mnist(ctx, g_dir, 1, 0, &none), DP_ERR_IO);
    assert_int_equal(dp_idx_read(ctx, tpath("t10k-images-idx3-ubyte.gz"), 0, &idx), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "t10k-images-idx3-ubyte.gz: truncated: expected 7840000 bytes of pixels, got 1000");
    dp_dataset_free(te);
    dp_dataset_free(tr);
    assert_int_equal(dp_dataset_fashion_mnist(ctx, NULL, 0, 10, &te), DP_OK);
    assert_int_equal(te->n, 10);
    assert_int_equal(te->n_classes, 10);
    dp_dataset_free(te);
    assert_int_equal(dp_dataset_fashion_mnist(ctx, tpath("empty"), 1, 0, &te), DP_ERR_IO);
    assert_contains(dp_ctx_error(ctx), "dataset-fashion-mnist");
}

/* ------------------------------------------------------------ CLI smoke test */
#ifdef DP_CLI_PATH
/* A tiny Fashion-MNIST look-alike: class k is a bright horizontal band at rows
 * 2k+4..2k+6 over faint noise — easy, so a few steps must learn it. */
static void make_synthetic_idx(dp_ctx *ctx, const char *dir, const char *pre, int n, uint32_t seed) {
    uint8_t *px = malloc((size_t)n * 784), *lb = malloc((size_t)n);
    dp_rng r;
    dp_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int k = (int)dp_rng_below(&r, 10);
        lb[i] = (uint8_t)k;
        for (int p = 0; p < 784; p++) {
            int y = p / 28, v = (int)dp_rng_below(&r, 60);
            if (y >= 2 * k + 4 && y < 2 * k + 7) v += 180;
            px[i * 784 + p] = (uint8_t)v;
        }
    }
    char p[600];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, pre);
    assert_int_equal(dp_idx_write(ctx, p, 3, (const int64_t[]){n, 28, 28}, px), DP_OK);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, pre); /* plain, to cover both */
    assert_int_equal(dp_idx_write(ctx, p, 1, (const int64_t[]){n}, lb), DP_OK);
    free(px);
    free(lb);
}

/* Runs the CLI; returns its exit status; stdout goes to g_dir/out.txt. */
static int run_cli(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s/out.txt' 2> '%s/err.txt'", DP_CLI_PATH, args, g_dir, g_dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
static char *cli_out(const char *name) {
    size_t n;
    uint8_t *p = read_bytes(tpath(name), &n);
    p[n] = 0;
    return (char *)p;
}

static void test_cli_smoke(void **state) {
    dp_ctx *ctx = *state;
    const char *d = tpath("fm");
    mkdir(d, 0777);
    make_synthetic_idx(ctx, d, "train", 600, 1);
    make_synthetic_idx(ctx, d, "t10k", 300, 2);
    char args[2048];
    assert_int_equal(run_cli("classify --help"), 0);
    char *o = cli_out("out.txt");
    assert_contains(o, "doppel classify train");
    free(o);
    /* bad options: exit status 2 and a message */
    assert_int_equal(run_cli("classify train --epochs -1"), 2);
    o = cli_out("err.txt");
    assert_contains(o, "--epochs must be an integer");
    free(o);
    assert_int_equal(run_cli("classify train --arch resnet"), 2);
    assert_int_equal(run_cli("classify train --bogus 1"), 2);
    assert_int_equal(run_cli("classify frobnicate"), 2);
    assert_int_equal(run_cli("classify eval"), 2);
    /* missing data */
    snprintf(args, sizeof args, "classify train --data-dir '%s/none' --quiet", g_dir);
    assert_int_equal(run_cli(args), 1);
    o = cli_out("err.txt");
    assert_contains(o, "not found");
    free(o);
    /* train: mlp, 3 epochs over 540 images */
    snprintf(args, sizeof args,
             "classify train --data fashion-mnist --data-dir '%s' --limit 600 --arch mlp --epochs 3 --lr 0.005 "
             "--batch 32 --threads 2 --run '%s/run' --out '%s/m.safetensors' --quiet",
             d, g_dir, g_dir);
    int rc = run_cli(args);
    if (rc != 0) {
        o = cli_out("err.txt");
        fail_msg("classify train exited %d: %s", rc, o);
    }
    o = cli_out("out.txt");
    assert_contains(o, "epoch 3/3");
    assert_contains(o, "test: accuracy");
    free(o);
    o = cli_out("run/metrics.csv");
    assert_contains(o, "epoch,train_loss,train_acc,val_loss,val_acc");
    assert_contains(o, "\n3,");
    free(o);
    /* eval --json */
    snprintf(args, sizeof args, "classify eval --model '%s/m.safetensors' --data-dir '%s' --json", g_dir, d);
    assert_int_equal(run_cli(args), 0);
    o = cli_out("out.txt");
    assert_contains(o, "\"images\":300");
    assert_contains(o, "\"confusion\":[[");
    const char *acc = strstr(o, "\"accuracy\":");
    assert_non_null(acc);
    double a = atof(acc + 11);
    if (!(a > 0.8)) fail_msg("synthetic test accuracy %.3f; the tiny task should be learnt: %s", a, o);
    free(o);
    /* eval in text form; wrong arch; missing model; not a model */
    snprintf(args, sizeof args, "classify eval --model '%s/m.safetensors' --data-dir '%s' --quiet", g_dir, d);
    assert_int_equal(run_cli(args), 0);
    o = cli_out("out.txt");
    assert_contains(o, "confusion matrix");
    assert_contains(o, "Ankle boot");
    free(o);
    snprintf(args, sizeof args, "classify eval --model '%s/m.safetensors' --arch cnn --data-dir '%s'", g_dir, d);
    assert_int_equal(run_cli(args), 1);
    o = cli_out("err.txt");
    assert_contains(o, "not --arch cnn");
    free(o);
    snprintf(args, sizeof args, "classify eval --model '%s/absent.safetensors' --data-dir '%s'", g_dir, d);
    assert_int_equal(run_cli(args), 1);
    snprintf(args, sizeof args, "classify eval --model '%s/fm/t10k-labels-idx1-ubyte' --data-dir '%s'", g_dir, d);
    assert_int_equal(run_cli(args), 1);
}
#else
static void test_cli_smoke(void **state) {
    (void)state;
    printf("skipped: DP_CLI_PATH not defined\n");
    skip();
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idx_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idx_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idx_dataset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shuffle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_png_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jpeg_webp_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resize_crop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_dataset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fashion_mnist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_smoke, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
