/* Labels of synthetic images: the invisible watermark (round trip with the
 * exact payload, JPEG q80 in memory, contrast change, determinism, no false
 * hit on random and natural-like images made here), the metadata written by
 * dp_write_synthetic (PNG tEXt/iTXt/XMP and JPEG APP1 XMP, parsed back from
 * the bytes and through dp_label_check_file), argument and file errors,
 * `doppel watermark check` (text, --json, a corrupt file among good ones),
 * and ~100 real faces from ../shared (skipped when absent): no false hit. */
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

#include <png.h>

#include "doppel/doppel.h"

static char g_dir[256];

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
    snprintf(g_dir, sizeof g_dir, "/tmp/dp_test_wm_XXXXXX");
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

static void assert_contains(const char *hay, const char *needle) {
    if (!hay || !strstr(hay, needle)) fail_msg("expected \"%s\" in \"%s\"", needle, hay ? hay : "(null)");
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
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

/* ------------------------------------------------------------ test images */
static uint64_t g_rs = 88172645463325252ull;
static double urand(void) {
    g_rs ^= g_rs << 13;
    g_rs ^= g_rs >> 7;
    g_rs ^= g_rs << 17;
    return (double)(g_rs >> 11) * 0x1.0p-53;
}

/* Natural-like: smooth random field (a few random sinusoids and Gaussian
 * blobs), an edge, mild texture noise; channels correlated. Quantised to 8 bits. */
static void natural_image(dp_ctx *ctx, int c, int h, int w, dp_image *out) {
    assert_int_equal(dp_image_alloc(ctx, c, h, w, out), DP_OK);
    double fx[4], fy[4], ph[4], am[4], bx[3], by[3], bs[3], ba[3], tint[3];
    for (int k = 0; k < 4; k++) {
        fx[k] = (urand() - 0.5) * 0.4;
        fy[k] = (urand() - 0.5) * 0.4;
        ph[k] = urand() * 6.28;
        am[k] = 0.05 + 0.1 * urand();
    }
    for (int k = 0; k < 3; k++) {
        bx[k] = urand() * w;
        by[k] = urand() * h;
        bs[k] = 4 + urand() * w / 3.0;
        ba[k] = (urand() - 0.5) * 0.6;
        tint[k] = 0.8 + 0.4 * urand();
    }
    double base = 0.2 + 0.5 * urand(), ex = urand() * w, noise = urand() * 0.03;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double v = base;
            for (int k = 0; k < 4; k++) v += am[k] * sin(fx[k] * x + fy[k] * y + ph[k]);
            for (int k = 0; k < 3; k++) v += ba[k] * exp(-((x - bx[k]) * (x - bx[k]) + (y - by[k]) * (y - by[k])) / (2 * bs[k] * bs[k]));
            if (x > ex + 0.3 * y) v += 0.15;
            v += noise * (urand() - 0.5);
            for (int ch = 0; ch < c; ch++) {
                double u = v * (c == 3 ? tint[ch] : 1.0);
                u = u < 0 ? 0 : u > 1 ? 1 : u;
                out->data[((size_t)ch * h + y) * w + x] = (float)((int)(u * 255 + 0.5) / 255.0);
            }
        }
}

static dp_image copy_image(dp_ctx *ctx, const dp_image *a) {
    dp_image b;
    assert_int_equal(dp_image_alloc(ctx, a->channels, a->height, a->width, &b), DP_OK);
    memcpy(b.data, a->data, sizeof(float) * (size_t)a->channels * a->height * a->width);
    return b;
}

static double psnr(const dp_image *a, const dp_image *b) {
    size_t n = (size_t)a->channels * a->height * a->width;
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = 255.0 * (a->data[i] - b->data[i]);
        se += d * d;
    }
    return se == 0 ? 99.0 : 10 * log10(255.0 * 255.0 / (se / (double)n));
}

/* ------------------------------------------------------------ watermark */
static void test_roundtrip(void **state) {
    dp_ctx *ctx = *state;
    const uint32_t ids[] = {0xdeadbeefu, 0, 1, 0xffffffffu, 0x12345678u};
    const int shapes[][3] = {{3, 64, 64}, {1, 64, 64}, {3, 48, 48}, {3, 64, 96}, {1, 84, 84}, {3, 200, 150}, {3, 130, 257}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
            dp_image a, b;
            natural_image(ctx, shapes[s][0], shapes[s][1], shapes[s][2], &a);
            b = copy_image(ctx, &a);
            assert_int_equal(dp_watermark_embed(ctx, &b, ids[k]), DP_OK);
            double p = psnr(&a, &b);
            if (p < 38.0) fail_msg("PSNR %.2f dB below 38 for %dx%dx%d", p, shapes[s][0], shapes[s][1], shapes[s][2]);
            dp_watermark_result r;
            assert_int_equal(dp_watermark_detect(ctx, &b, &r), DP_OK);
            if (!r.found || r.model_id != ids[k])
                fail_msg("shape %dx%dx%d id 0x%08x: found %d id 0x%08x score %.3f", shapes[s][0], shapes[s][1], shapes[s][2],
                         ids[k], r.found, r.model_id, r.score);
            assert_true(r.score > 0.8f);
            /* values are 8-bit levels after embedding */
            for (size_t i = 0; i < (size_t)b.channels * b.height * b.width; i++) {
                float v = b.data[i] * 255.0f;
                assert_true(fabsf(v - roundf(v)) < 1e-3f && v >= 0 && v <= 255);
            }
            /* the unmarked original: no hit */
            assert_int_equal(dp_watermark_detect(ctx, &a, &r), DP_OK);
            assert_int_equal(r.found, 0);
            dp_image_free(ctx, &a);
            dp_image_free(ctx, &b);
        }
    }
}

static void test_deterministic(void **state) {
    dp_ctx *ctx = *state;
    dp_image a, b, c;
    natural_image(ctx, 3, 64, 64, &a);
    b = copy_image(ctx, &a);
    c = copy_image(ctx, &a);
    assert_int_equal(dp_watermark_embed(ctx, &b, 77), DP_OK);
    assert_int_equal(dp_watermark_embed(ctx, &c, 77), DP_OK);
    assert_memory_equal(b.data, c.data, sizeof(float) * 3 * 64 * 64);
    /* embedding again with another id: the last one wins */
    assert_int_equal(dp_watermark_embed(ctx, &c, 78), DP_OK);
    dp_watermark_result r;
    assert_int_equal(dp_watermark_detect(ctx, &c, &r), DP_OK);
    assert_true(r.found);
    assert_int_equal(r.model_id, 78);
    dp_image_free(ctx, &a);
    dp_image_free(ctx, &b);
    dp_image_free(ctx, &c);
}

static void test_jpeg_q80(void **state) {
    dp_ctx *ctx = *state;
    int found = 0, n = 40;
    for (int i = 0; i < n; i++) {
        dp_image a, j;
        natural_image(ctx, i % 4 ? 3 : 1, 64, 64, &a);
        uint32_t id = 0x9e3779b9u * (uint32_t)(i + 1);
        assert_int_equal(dp_watermark_embed(ctx, &a, id), DP_OK);
        assert_int_equal(dp_image_jpeg_roundtrip(ctx, &a, 80, &j), DP_OK);
        assert_int_equal(j.channels, a.channels);
        dp_watermark_result r;
        assert_int_equal(dp_watermark_detect(ctx, &j, &r), DP_OK);
        if (r.found) {
            assert_int_equal(r.model_id, id); /* never a wrong payload */
            found++;
        }
        dp_image_free(ctx, &j);
        /* a 10% contrast reduction (around mid-grey): the detector's gain search */
        for (size_t k = 0; k < (size_t)a.channels * 64 * 64; k++) a.data[k] = roundf((0.5f + 0.9f * (a.data[k] - 0.5f)) * 255) / 255;
        assert_int_equal(dp_watermark_detect(ctx, &a, &r), DP_OK);
        assert_true(r.found);
        assert_int_equal(r.model_id, id);
        dp_image_free(ctx, &a);
    }
    printf("JPEG q80: %d/%d found\n", found, n);
    assert_true(found >= n - 1);
    assert_int_equal(dp_image_jpeg_roundtrip(ctx, &(dp_image){0}, 80, &(dp_image){0}), DP_ERR_NULL);
}

static void test_no_false_hits(void **state) {
    dp_ctx *ctx = *state;
    int n = 0;
    float max_score = -1;
    const int sizes[][2] = {{64, 64}, {48, 48}, {56, 56}, {84, 84}, {100, 80}, {28, 28}, {256, 256}};
    for (int kind = 0; kind < 7; kind++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int reps = kind == 0 || kind == 6 ? 12 : kind >= 4 ? 1 : 6;
            for (int rep = 0; rep < reps; rep++) {
                int h = sizes[s][0], w = sizes[s][1], c = rep % 2 ? 1 : 3;
                dp_image a;
                if (kind == 0) {
                    natural_image(ctx, c, h, w, &a);
                } else {
                    assert_int_equal(dp_image_alloc(ctx, c, h, w, &a), DP_OK);
                    double g = urand();
                    for (int ch = 0; ch < c; ch++)
                        for (int y = 0; y < h; y++)
                            for (int x = 0; x < w; x++) {
                                double v;
                                switch (kind) {
                                case 1: v = urand(); break;                                   /* white noise */
                                case 2: v = 0.5 + 0.2 * (urand() - 0.5) + 0.3 * sin(0.7 * x); break; /* stripes */
                                case 3: v = (double)(x + y) / (w + h); break;                  /* gradient */
                                case 4: v = 0; break;                                          /* black */
                                case 5: v = 1; break;                                          /* white */
                                default: v = g; break;                                         /* flat */
                                }
                                a.data[((size_t)ch * h + y) * w + x] = (float)v;
                            }
                }
                dp_watermark_result r;
                assert_int_equal(dp_watermark_detect(ctx, &a, &r), DP_OK);
                if (r.found) fail_msg("false hit: kind %d, %dx%dx%d, id 0x%08x score %.3f", kind, c, h, w, r.model_id, r.score);
                if (r.score > max_score) max_score = r.score;
                n++;
                dp_image_free(ctx, &a);
            }
        }
    }
    printf("%d unmarked images: no hit, highest score %.3f (threshold %.2f)\n", n, max_score, DP_WATERMARK_MIN_SCORE);
    /* images without a single 8x8 block: nothing to find, not an error */
    dp_image t;
    assert_int_equal(dp_image_alloc(ctx, 3, 7, 200, &t), DP_OK);
    dp_watermark_result r;
    assert_int_equal(dp_watermark_detect(ctx, &t, &r), DP_OK);
    assert_int_equal(r.found, 0);
    assert_true(r.score == 0.0f);
    dp_image_free(ctx, &t);
}

static void test_too_small_and_args(void **state) {
    dp_ctx *ctx = *state;
    dp_image a;
    natural_image(ctx, 3, 47, 64, &a);
    assert_int_equal(dp_watermark_embed(ctx, &a, 1), DP_ERR_ARG);
    assert_contains(dp_ctx_error(ctx), "64x47");
    assert_contains(dp_ctx_error(ctx), "at least 48x48");
    dp_image_free(ctx, &a);
    natural_image(ctx, 1, 28, 28, &a);
    assert_int_equal(dp_watermark_embed(ctx, &a, 1), DP_ERR_ARG);
    dp_image_free(ctx, &a);
    assert_int_equal(dp_watermark_embed(ctx, NULL, 1), DP_ERR_NULL);
    assert_int_equal(dp_watermark_detect(ctx, NULL, &(dp_watermark_result){0}), DP_ERR_NULL);
    dp_image bad = {2, 64, 64, (float[1]){0}};
    assert_int_equal(dp_watermark_embed(ctx, &bad, 1), DP_ERR_ARG);
    assert_int_equal(dp_watermark_detect(ctx, &bad, &(dp_watermark_result){0}), DP_ERR_ARG);
}

/* ------------------------------------------------------------ metadata */
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* The text of PNG chunk `type` whose keyword is key (tEXt: text; iTXt: the
 * uncompressed text after the language fields). NULL if absent; must precede IDAT. */
static char *png_chunk_text(const uint8_t *b, size_t n, const char *type, const char *key) {
    size_t off = 8;
    int seen_idat = 0;
    while (off + 12 <= n) {
        uint32_t len = be32(b + off);
        assert_true(len <= n - off - 12);
        const char *t = (const char *)b + off + 4;
        const uint8_t *d = b + off + 8;
        if (!memcmp(t, "IDAT", 4)) seen_idat = 1;
        if (!memcmp(t, type, 4) && len > strlen(key) && !memcmp(d, key, strlen(key) + 1)) {
            assert_false(seen_idat);
            const uint8_t *p = d + strlen(key) + 1, *end = d + len;
            if (!strcmp(type, "iTXt")) {
                assert_int_equal(p[0], 0); /* not compressed */
                p += 2;
                p = (const uint8_t *)memchr(p, 0, (size_t)(end - p)) + 1; /* language */
                p = (const uint8_t *)memchr(p, 0, (size_t)(end - p)) + 1; /* translated keyword */
            }
            char *s = malloc((size_t)(end - p) + 1);
            memcpy(s, p, (size_t)(end - p));
            s[end - p] = 0;
            return s;
        }
        off += 12 + len;
    }
    return NULL;
}

static const char *k_model = "dcgan64 <celeba> & \"run 7\" — ü";

static void check_meta(const dp_label_meta *m, uint32_t id) {
    assert_true(m->present);
    assert_true(m->ai_generated);
    assert_string_equal(m->source_type, DP_IPTC_TRAINED_ALGORITHMIC_MEDIA);
    assert_string_equal(m->software, "doppel " DP_VERSION_STRING);
    assert_string_equal(m->model, k_model);
    assert_true(m->has_model_id);
    assert_int_equal(m->model_id, id);
    assert_contains(m->description, "AI-generated");
    assert_contains(m->description, k_model);
}

static void test_metadata_png(void **state) {
    dp_ctx *ctx = *state;
    dp_image a;
    natural_image(ctx, 3, 64, 64, &a);
    dp_label_info info = {.model = k_model, .model_id = 0xc0ffee01u};
    const char *path = tpath("g.png");
    dp_image a2 = copy_image(ctx, &a);
    assert_int_equal(dp_write_synthetic(ctx, path, &a, &info, 0), DP_OK);
    assert_memory_equal(a.data, a2.data, sizeof(float) * 3 * 64 * 64); /* the caller's image is untouched */
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    /* the chunks, read straight from the bytes */
    char *xmp = png_chunk_text(b, n, "iTXt", "XML:com.adobe.xmp");
    assert_non_null(xmp);
    assert_contains(xmp, "Iptc4xmpExt:DigitalSourceType=\"" DP_IPTC_TRAINED_ALGORITHMIC_MEDIA "\"");
    assert_contains(xmp, "xmp:CreatorTool=\"doppel " DP_VERSION_STRING "\"");
    assert_contains(xmp, "doppel:Model=\"dcgan64 &lt;celeba&gt; &amp; &quot;run 7&quot; — ü\"");
    assert_contains(xmp, "doppel:ModelID=\"0xc0ffee01\"");
    assert_contains(xmp, "<?xpacket begin=");
    assert_contains(xmp, "<?xpacket end=\"r\"?>");
    free(xmp);
    char *t = png_chunk_text(b, n, "iTXt", "Description");
    assert_non_null(t);
    assert_contains(t, "AI-generated");
    assert_contains(t, "— ü"); /* UTF-8 kept in iTXt */
    free(t);
    t = png_chunk_text(b, n, "tEXt", "Comment");
    assert_non_null(t);
    assert_contains(t, "AI-generated");
    for (char *p = t; *p; p++) assert_true((unsigned char)*p < 0x80); /* tEXt: ASCII only */
    free(t);
    t = png_chunk_text(b, n, "tEXt", "Software");
    assert_non_null(t);
    assert_string_equal(t, "doppel " DP_VERSION_STRING);
    free(t);
    /* the library's reader */
    dp_label_meta m;
    assert_int_equal(dp_label_read_meta(ctx, b, n, path, &m), DP_OK);
    check_meta(&m, 0xc0ffee01u);
    free(b);
    dp_label_check r;
    assert_int_equal(dp_label_check_file(ctx, path, &r), DP_OK);
    assert_int_equal(r.format, DP_IMG_PNG);
    assert_int_equal(r.width, 64);
    assert_int_equal(r.height, 64);
    assert_true(r.watermark.found);
    assert_int_equal(r.watermark.model_id, 0xc0ffee01u);
    check_meta(&r.meta, 0xc0ffee01u);
    /* pixels: the marked image, close to the input */
    dp_image back;
    assert_int_equal(dp_image_load(ctx, path, 3, NULL, &back), DP_OK);
    double p = psnr(&a, &back);
    if (p < 38) fail_msg("PSNR %.2f", p);
    /* no temp file left behind */
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while ((e = readdir(d))) assert_null(strstr(e->d_name, ".tmp-"));
    closedir(d);
    dp_image_free(ctx, &back);
    dp_image_free(ctx, &a);
    dp_image_free(ctx, &a2);
}

static void test_metadata_jpeg(void **state) {
    dp_ctx *ctx = *state;
    dp_image a;
    natural_image(ctx, 3, 64, 64, &a);
    dp_label_info info = {.model = k_model, .model_id = 42};
    const char *path = tpath("g.JPG");
    assert_int_equal(dp_write_synthetic(ctx, path, &a, &info, 80), DP_OK);
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    assert_int_equal(dp_image_sniff(b, n), DP_IMG_JPEG);
    /* an APP1 segment with the XMP header, before the scan */
    size_t off = 2;
    int found_xmp = 0, found_com = 0;
    while (off + 4 <= n && b[off] == 0xff && b[off + 1] != 0xda) {
        size_t len = (size_t)b[off + 2] << 8 | b[off + 3];
        const char *d = (const char *)b + off + 4;
        if (b[off + 1] == 0xe1 && len > 31 && !memcmp(d, "http://ns.adobe.com/xap/1.0/\0", 29)) {
            found_xmp = 1;
            char *x = strndup(d + 29, len - 2 - 29);
            assert_contains(x, "Iptc4xmpExt:DigitalSourceType=\"http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia\"");
            assert_contains(x, "doppel:ModelID=\"0x0000002a\"");
            free(x);
        }
        if (b[off + 1] == 0xfe) found_com = 1;
        off += 2 + len;
    }
    assert_true(found_xmp);
    assert_true(found_com);
    free(b);
    dp_label_check r;
    assert_int_equal(dp_label_check_file(ctx, path, &r), DP_OK);
    assert_int_equal(r.format, DP_IMG_JPEG);
    assert_true(r.watermark.found);
    assert_int_equal(r.watermark.model_id, 42);
    check_meta(&r.meta, 42);
    /* default quality, .jpeg; grey */
    dp_image g;
    natural_image(ctx, 1, 64, 80, &g);
    assert_int_equal(dp_write_synthetic(ctx, tpath("g.jpeg"), &g, &info, 0), DP_OK);
    assert_int_equal(dp_label_check_file(ctx, tpath("g.jpeg"), &r), DP_OK);
    assert_true(r.watermark.found);
    assert_int_equal(r.width, 80);
    dp_image_free(ctx, &g);
    dp_image_free(ctx, &a);
}

static void test_write_small_and_errors(void **state) {
    dp_ctx *ctx = *state;
    /* a 28x28 Fashion-MNIST-sized sample: enlarged x3, marked */
    dp_image a;
    natural_image(ctx, 1, 28, 28, &a);
    assert_int_equal(dp_write_synthetic(ctx, tpath("s.png"), &a, NULL, 0), DP_OK);
    dp_label_check r;
    assert_int_equal(dp_label_check_file(ctx, tpath("s.png"), &r), DP_OK);
    assert_int_equal(r.width, 84);
    assert_int_equal(r.height, 84);
    assert_true(r.watermark.found);
    assert_int_equal(r.watermark.model_id, 0);
    assert_string_equal(r.meta.model, "unknown");
    dp_image back;
    assert_int_equal(dp_image_load(ctx, tpath("s.png"), 1, NULL, &back), DP_OK);
    double se = 0; /* the enlarged image is the nearest-neighbour copy, plus the mark */
    for (int y = 0; y < 84; y++)
        for (int x = 0; x < 84; x++) {
            double d = 255.0 * (back.data[y * 84 + x] - a.data[(y / 3) * 28 + x / 3]);
            se += d * d;
        }
    assert_true(10 * log10(65025.0 / (se / (84 * 84))) > 36.0);
    dp_image_free(ctx, &back);
    /* errors */
    assert_int_equal(dp_write_synthetic(ctx, tpath("s.gif"), &a, NULL, 0), DP_ERR_ARG);
    assert_contains(dp_ctx_error(ctx), "s.gif");
    assert_int_equal(dp_write_synthetic(ctx, tpath("s.jpg"), &a, NULL, 101), DP_ERR_ARG);
    assert_int_equal(dp_write_synthetic(ctx, tpath("s.jpg"), &a, NULL, -1), DP_ERR_ARG);
    assert_int_equal(dp_write_synthetic(ctx, tpath("no/such/dir/s.png"), &a, NULL, 0), DP_ERR_IO);
    assert_int_equal(dp_write_synthetic(ctx, NULL, &a, NULL, 0), DP_ERR_NULL);
    char *big = malloc(5000);
    memset(big, 'm', 4999);
    big[4999] = 0; /* a very long model name is cut, not refused */
    assert_int_equal(dp_write_synthetic(ctx, tpath("long.png"), &a, &(dp_label_info){.model = big}, 0), DP_OK);
    assert_int_equal(dp_label_check_file(ctx, tpath("long.png"), &r), DP_OK);
    assert_true(strlen(r.meta.model) > 100);
    free(big);
    /* invalid UTF-8 and control characters in the name: replaced / dropped */
    assert_int_equal(dp_write_synthetic(ctx, tpath("u.png"), &a, &(dp_label_info){.model = "a\xff\x01" "b\xc3"}, 0), DP_OK);
    assert_int_equal(dp_label_check_file(ctx, tpath("u.png"), &r), DP_OK);
    assert_string_equal(r.meta.model, "a?b?");
    dp_image_free(ctx, &a);
}


/* A 16x16 grey PNG with compressed text chunks (zTXt Comment, compressed iTXt XMP), by libpng. */
static void write_png_ztxt(const char *path, const char *xmp) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng error");
    png_init_io(png, f);
    png_set_IHDR(png, info, 16, 16, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    char k1[] = "Comment", k2[] = "XML:com.adobe.xmp", t1[] = "made by hand", empty[] = "";
    char *t2 = strdup(xmp);
    png_text txt[2];
    memset(txt, 0, sizeof txt);
    txt[0].compression = PNG_TEXT_COMPRESSION_zTXt;
    txt[0].key = k1;
    txt[0].text = t1;
    txt[1].compression = PNG_ITXT_COMPRESSION_zTXt;
    txt[1].key = k2;
    txt[1].text = t2;
    txt[1].lang = empty;
    txt[1].lang_key = empty;
    png_set_text(png, info, txt, 2);
    png_write_info(png, info);
    uint8_t row[16] = {0};
    for (int y = 0; y < 16; y++) png_write_row(png, row);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    free(t2);
}

static void test_check_file_errors(void **state) {
    dp_ctx *ctx = *state;
    dp_label_check r;
    write_bytes(tpath("junk.png"), "this is not an image", 20);
    assert_int_equal(dp_label_check_file(ctx, tpath("junk.png"), &r), DP_ERR_FORMAT);
    assert_contains(dp_ctx_error(ctx), "junk.png");
    assert_int_equal(dp_label_check_file(ctx, tpath("absent.png"), &r), DP_ERR_IO);
    assert_contains(dp_ctx_error(ctx), "absent.png");
    /* a truncated labelled PNG / JPEG */
    dp_image a;
    natural_image(ctx, 3, 64, 64, &a);
    assert_int_equal(dp_write_synthetic(ctx, tpath("t.png"), &a, NULL, 0), DP_OK);
    assert_int_equal(dp_write_synthetic(ctx, tpath("t.jpg"), &a, NULL, 0), DP_OK);
    dp_image_free(ctx, &a);
    const char *names[] = {"t.png", "t.jpg"};
    for (int k = 0; k < 2; k++) {
        size_t n;
        uint8_t *b = read_bytes(tpath(names[k]), &n);
        for (size_t cut = 1; cut < n; cut += n / 37 + 1) {
            write_bytes(tpath("cut"), b, cut);
            dp_status s = dp_label_check_file(ctx, tpath("cut"), &r); /* error or not: no crash, no leak */
            if (s != DP_OK) assert_contains(dp_ctx_error(ctx), "cut");
            dp_label_meta m;
            assert_int_equal(dp_label_read_meta(ctx, b, cut, "x", &m),
                             dp_image_sniff(b, cut) != DP_IMG_UNKNOWN ? DP_OK : DP_ERR_FORMAT);
        }
        /* flipped bytes in the metadata area: still no crash */
        for (size_t i = 8; i < n && i < 3000; i += 7) {
            uint8_t save = b[i];
            b[i] ^= 0x5a;
            dp_label_meta m;
            dp_label_read_meta(ctx, b, n, "x", &m);
            b[i] = save;
        }
        free(b);
    }
    /* WebP: an XMP chunk is read (RIFF container built here) */
    const char *x = "<x:xmpmeta><rdf:Description Iptc4xmpExt:DigitalSourceType='http://cv.iptc.org/newscodes/"
                    "digitalsourcetype/trainedAlgorithmicMedia'><xmp:CreatorTool>tool &amp; co</xmp:CreatorTool>"
                    "</rdf:Description></x:xmpmeta>";
    size_t xl = strlen(x), tot = 12 + 8 + xl + (xl & 1);
    uint8_t *w = calloc(1, tot);
    memcpy(w, "RIFF", 4);
    uint32_t rs = (uint32_t)(tot - 8);
    memcpy(w + 4, (uint8_t[4]){(uint8_t)rs, (uint8_t)(rs >> 8), (uint8_t)(rs >> 16), (uint8_t)(rs >> 24)}, 4);
    memcpy(w + 8, "WEBPXMP ", 8);
    memcpy(w + 16, (uint8_t[4]){(uint8_t)xl, (uint8_t)(xl >> 8), 0, 0}, 4);
    memcpy(w + 20, x, xl);
    dp_label_meta m;
    assert_int_equal(dp_label_read_meta(ctx, w, tot, "w.webp", &m), DP_OK);
    assert_true(m.ai_generated);
    assert_string_equal(m.software, "tool & co");
    assert_false(m.has_model_id);
    free(w);
    assert_int_equal(dp_label_read_meta(ctx, "GIF89a", 6, "g.gif", &m), DP_ERR_FORMAT);
    /* compressed PNG text chunks; a 40 KB XMP packet (padding first, as editors write it) */
    char *big = malloc(50000);
    size_t o = (size_t)sprintf(big, "<x:xmpmeta><rdf:Description>");
    while (o < 40000) o += (size_t)sprintf(big + o, "<pad:x>%05zu</pad:x>\n", o);
    sprintf(big + o, "<doppel:Model>zipped</doppel:Model><doppel:ModelID>0x10</doppel:ModelID></rdf:Description></x:xmpmeta>");
    write_png_ztxt(tpath("z.png"), big);
    free(big);
    dp_label_check r2;
    assert_int_equal(dp_label_check_file(ctx, tpath("z.png"), &r2), DP_OK);
    assert_true(r2.meta.present);
    assert_false(r2.meta.ai_generated);
    assert_string_equal(r2.meta.model, "zipped");
    assert_true(r2.meta.has_model_id);
    assert_int_equal(r2.meta.model_id, 16);
    assert_string_equal(r2.meta.description, "made by hand");
    assert_false(r2.watermark.found);
}

/* ------------------------------------------------------------ the CLI */
#ifdef DP_CLI_PATH
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
static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_cli_check(void **state) {
    dp_ctx *ctx = *state;
    dp_image a;
    natural_image(ctx, 3, 64, 64, &a);
    assert_int_equal(dp_write_synthetic(ctx, tpath("m.png"), &a, &(dp_label_info){.model = "dcgan64 test", .model_id = 7}, 0), DP_OK);
    assert_int_equal(dp_image_save_png(ctx, tpath("plain.png"), &a), DP_OK);
    dp_image_free(ctx, &a);
    write_bytes(tpath("bad.jpg"), "\xff\xd8\xff\xe0 truncated", 15);
    char args[2048];
    snprintf(args, sizeof args, "watermark check '%s' '%s' '%s'", tpath("m.png"), tpath("bad.jpg"), tpath("plain.png"));
    assert_int_equal(run_cli(args), 2);
    char *o = cli_out("out.txt"), *e = cli_out("err.txt");
    assert_int_equal(count_lines(o), 2);
    assert_contains(o, "m.png: watermark FOUND: model id 0x00000007");
    assert_contains(o, "AI-GENERATED (trainedAlgorithmicMedia)");
    assert_contains(o, "model \"dcgan64 test\"");
    assert_contains(o, "plain.png: watermark not found");
    assert_contains(o, "label: none");
    assert_int_equal(count_lines(e), 1);
    assert_contains(e, "bad.jpg");
    free(o);
    free(e);
    /* all good → 0 */
    snprintf(args, sizeof args, "watermark check '%s' '%s'", tpath("m.png"), tpath("plain.png"));
    assert_int_equal(run_cli(args), 0);
    /* --json */
    snprintf(args, sizeof args, "watermark check --json '%s' '%s'", tpath("m.png"), tpath("bad.jpg"));
    assert_int_equal(run_cli(args), 2);
    o = cli_out("out.txt");
    assert_contains(o, "\"found\":true,\"model_id\":7,\"model_id_hex\":\"0x00000007\"");
    assert_contains(o, "\"ai_generated\":true");
    assert_contains(o, "\"model\":\"dcgan64 test\"");
    assert_contains(o, "\"ok\":false,\"error\":");
    assert_true(o[0] == '[');
    free(o);
    /* usage */
    assert_int_equal(run_cli("watermark check"), 2);
    assert_int_equal(run_cli("watermark check --bogus x"), 2);
    assert_int_equal(run_cli("watermark frobnicate"), 2);
    assert_int_equal(run_cli("watermark --help"), 0);
    o = cli_out("out.txt");
    assert_contains(o, "doppel watermark check FILE");
    free(o);
}
#else
static void test_cli_check(void **state) {
    (void)state;
    printf("skipped: DP_CLI_PATH not defined\n");
    skip();
}
#endif

/* ------------------------------------------------------------ real faces */
static int list_dir(const char *dir, char ***out) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".jpg")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            v = realloc(v, sizeof(char *) * (size_t)cap);
        }
        v[n] = malloc(strlen(dir) + l + 2);
        sprintf(v[n], "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    *out = v;
    return n;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_real_faces(void **state) {
    dp_ctx *ctx = *state;
    const char *dirs[] = {DP_SHARED_DIR "/data/faces/real-celeba", DP_SHARED_DIR "/data/faces/real-utkface",
                          DP_SHARED_DIR "/data/faces/fake-stylegan"};
    struct stat st;
    if (stat(dirs[0], &st) != 0) {
        printf("skipped: %s absent (the shared data folder is not there)\n", dirs[0]);
        skip();
    }
    int checked = 0, marked_ok = 0;
    for (int k = 0; k < 3; k++) {
        char **files;
        int n = list_dir(dirs[k], &files);
        if (!n) continue;
        qsort(files, (size_t)n, sizeof(char *), cmp_str);
        for (int i = 0; i < 34; i++) {
            const char *p = files[(size_t)i * (size_t)n / 34];
            dp_label_check r;
            assert_int_equal(dp_label_check_file(ctx, p, &r), DP_OK);
            if (r.watermark.found) fail_msg("false hit on %s (native): id 0x%08x score %.3f", p, r.watermark.model_id, r.watermark.score);
            assert_false(r.meta.ai_generated);
            dp_image img, small;
            assert_int_equal(dp_image_load(ctx, p, 3, NULL, &img), DP_OK);
            assert_int_equal(dp_image_resize_cover(ctx, &img, 64, 64, &small), DP_OK);
            dp_watermark_result w;
            assert_int_equal(dp_watermark_detect(ctx, &small, &w), DP_OK);
            if (w.found) fail_msg("false hit on %s (64x64): id 0x%08x score %.3f", p, w.model_id, w.score);
            /* and the same face marked, through JPEG q80: found */
            assert_int_equal(dp_watermark_embed(ctx, &small, (uint32_t)i), DP_OK);
            dp_image j;
            assert_int_equal(dp_image_jpeg_roundtrip(ctx, &small, 80, &j), DP_OK);
            assert_int_equal(dp_watermark_detect(ctx, &j, &w), DP_OK);
            marked_ok += w.found && w.model_id == (uint32_t)i;
            dp_image_free(ctx, &j);
            dp_image_free(ctx, &img);
            dp_image_free(ctx, &small);
            checked++;
        }
        for (int i = 0; i < n; i++) free(files[i]);
        free(files);
    }
    printf("%d real/StyleGAN faces: no false hit (native and 64x64); marked + JPEG q80: %d/%d found\n", checked,
           marked_ok, checked);
    assert_true(checked >= 90);
    assert_true(marked_ok >= checked * 95 / 100);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jpeg_q80, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_false_hits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_small_and_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata_png, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata_jpeg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_small_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_faces, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
