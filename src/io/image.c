/* Image files: PNG (libpng), JPEG (libjpeg-turbo), WebP (libwebp) → float
 * [C,H,W] in [0,1]; PNG writing; resize and crop.
 *
 * The decoders read from memory, check the header's size against the limits
 * before any pixel is decoded, and turn every library error into
 * DP_ERR_FORMAT naming the file: libpng and libjpeg report fatal errors by
 * calling an error function that must not return, so ours longjmp back here
 * (the libraries' default would print and exit()). State that must survive
 * the longjmp lives in a struct whose address the library holds (so it is in
 * memory, not in registers clobbered by longjmp). */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>

#include "io/data_internal.h"

typedef struct limits {
    int max_side;
    int64_t max_pixels, max_file;
} limits;

/* A field of l that is > 0 wins; else the context's dp_limits (dp_ctx_set_limits). */
static limits get_limits(const dp_ctx *ctx, const dp_image_limits *l) {
    dp_limits c;
    dp_ctx_limits(ctx, &c);
    limits r = {(int)c.max_image_side, c.max_image_pixels, c.max_file_bytes};
    if (l && l->max_side > 0) r.max_side = l->max_side;
    if (l && l->max_pixels > 0) r.max_pixels = l->max_pixels;
    if (l && l->max_file_bytes > 0) r.max_file = l->max_file_bytes;
    return r;
}

const char *dp_image_format_name(dp_image_format f) {
    switch (f) {
    case DP_IMG_PNG: return "png";
    case DP_IMG_JPEG: return "jpeg";
    case DP_IMG_WEBP: return "webp";
    default: return "unknown";
    }
}

dp_image_format dp_image_sniff(const void *buf, size_t n) {
    const uint8_t *p = buf;
    if (!p) return DP_IMG_UNKNOWN;
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return DP_IMG_PNG;
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return DP_IMG_JPEG;
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return DP_IMG_WEBP;
    return DP_IMG_UNKNOWN;
}

static dp_status check_dims(dp_ctx *ctx, const char *name, const char *fmt, int64_t w, int64_t h, const limits *lim) {
    if (w <= 0 || h <= 0) return dp_error(ctx, DP_ERR_FORMAT, "%s: %s header has an empty size %lldx%lld", name, fmt, (long long)w, (long long)h);
    if (w > lim->max_side || h > lim->max_side)
        return dp_error(ctx, DP_ERR_NOMEM, "%s: %s is %lldx%lld, larger than the limit of %d px a side (dp_image_limits.max_side, dp_limits.max_image_side)",
                        name, fmt, (long long)w, (long long)h, lim->max_side);
    if (w * h > lim->max_pixels)
        return dp_error(ctx, DP_ERR_NOMEM, "%s: %s is %lldx%lld = %lld pixels, above the limit of %lld (dp_image_limits.max_pixels, dp_limits.max_image_pixels)",
                        name, fmt, (long long)w, (long long)h, (long long)(w * h), (long long)lim->max_pixels);
    return DP_OK;
}

dp_status dp_image_alloc(dp_ctx *ctx, int channels, int height, int width, dp_image *out) {
    if (!ctx || !out) return dp_error(ctx, DP_ERR_NULL, "dp_image_alloc: NULL argument");
    memset(out, 0, sizeof *out);
    if ((channels != 1 && channels != 3) || height <= 0 || width <= 0)
        return dp_error(ctx, DP_ERR_ARG, "dp_image_alloc: %dx%dx%d (channels must be 1 or 3, sides > 0)", channels, height, width);
    size_t n = (size_t)channels * (size_t)height * (size_t)width;
    if (n > ((size_t)1 << 34) / sizeof(float))
        return dp_error(ctx, DP_ERR_NOMEM, "dp_image_alloc: %dx%dx%d is too large", channels, height, width);
    out->data = dp_calloc(ctx, n * sizeof(float));
    if (!out->data) return dp_error(ctx, DP_ERR_NOMEM, "dp_image_alloc: cannot allocate %zu bytes", n * sizeof(float));
    out->channels = channels;
    out->height = height;
    out->width = width;
    return DP_OK;
}

void dp_image_free(dp_ctx *ctx, dp_image *img) {
    if (!img) return;
    if (img->data && ctx) dp_free(ctx, img->data);
    memset(img, 0, sizeof *img);
}

/* Interleaved 8-bit pixels with src_c channels (1 grey, 2 grey+alpha, 3 RGB,
 * 4 RGBA) → planar float with want channels (0 = grey stays grey). */
static dp_status to_float(dp_ctx *ctx, const uint8_t *pix, size_t stride, int w, int h, int src_c, int want,
                          dp_image *out) {
    int grey_src = src_c <= 2;
    int c = want ? want : (grey_src ? 1 : 3);
    dp_status st = dp_image_alloc(ctx, c, h, w, out);
    if (st != DP_OK) return st;
    const float k = 1.0f / 255.0f;
    size_t plane = (size_t)h * (size_t)w;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = pix + (size_t)y * stride;
        float *d = out->data + (size_t)y * (size_t)w;
        for (int x = 0; x < w; x++) {
            const uint8_t *p = row + (size_t)x * (size_t)src_c;
            if (grey_src) {
                float v = p[0] * k;
                for (int ch = 0; ch < c; ch++) d[ch * plane + (size_t)x] = v;
            } else if (c == 3) {
                d[x] = p[0] * k;
                d[plane + (size_t)x] = p[1] * k;
                d[2 * plane + (size_t)x] = p[2] * k;
            } else { /* ITU-R 601 luma, as libjpeg's and PIL's grey conversion */
                d[x] = (0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]) * k;
            }
        }
    }
    return DP_OK;
}

/* ------------------------------------------------------------ PNG */
typedef struct png_dec {
    jmp_buf jb;
    char msg[200];
    const uint8_t *buf;
    size_t n, off;
    uint8_t *pix;
    png_bytep *rows;
    dp_ctx *ctx;
} png_dec;

static void png_err_fn(png_structp png, png_const_charp msg) {
    png_dec *d = png_get_error_ptr(png);
    snprintf(d->msg, sizeof d->msg, "%s", msg ? msg : "error");
    longjmp(d->jb, 1);
}
static void png_warn_fn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* warnings (bad ancillary chunks, ...) do not stop decoding */
}
static void png_read_mem(png_structp png, png_bytep dst, size_t n) {
    png_dec *d = png_get_io_ptr(png);
    if (n > d->n - d->off) {
        snprintf(d->msg, sizeof d->msg, "truncated: needed %zu more bytes at offset %zu of %zu", n, d->off, d->n);
        longjmp(d->jb, 2);
    }
    memcpy(dst, d->buf + d->off, n);
    d->off += n;
}

/* libpng's memory comes from the context's allocator too (counted, and failing like any other). */
static png_voidp png_malloc_fn(png_structp png, png_alloc_size_t n) {
    png_dec *d = png_get_mem_ptr(png);
    return dp_malloc(d->ctx, n ? n : 1);
}
static void png_free_fn(png_structp png, png_voidp p) {
    png_dec *d = png_get_mem_ptr(png);
    dp_free(d->ctx, p);
}

/* The most libpng may allocate for one ancillary chunk (text, XMP, ICC profile), compressed or not. */
#define PNG_CHUNK_MAX ((png_alloc_size_t)8 << 20)

/* Every chunk's declared length must fit in the bytes that are there: libpng allocates a
 * chunk's buffer from its header before reading it, so a 580-byte file whose tEXt chunk
 * claimed 800 MB made it allocate 800 MB (found by fuzz_image; png_set_chunk_malloc_max
 * does not stop it in Debian's libpng). Returns the offset of the first bad chunk, or 0. */
static size_t png_bad_chunk(const uint8_t *buf, size_t n, uint32_t *len) {
    size_t off = 8;
    while (n - off >= 8) {
        const uint8_t *p = buf + off;
        *len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if ((uint64_t)*len + 12 > n - off) return off;
        if (!memcmp(p + 4, "IEND", 4)) return 0;
        off += (size_t)*len + 12;
    }
    return 0; /* a truncated header is libpng's to report */
}

static dp_status decode_png(dp_ctx *ctx, const uint8_t *buf, size_t n, const char *name, int want, const limits *lim,
                            dp_image *out, int *pw, int *ph) {
    uint32_t clen = 0;
    size_t bad = png_bad_chunk(buf, n, &clen);
    if (bad)
        return dp_error(ctx, DP_ERR_FORMAT, "%s: corrupt PNG: the chunk at offset %zu claims %u bytes, the file has %zu left",
                        name, bad, clen, n - bad - 8);
    png_dec dec;
    memset(&dec, 0, sizeof dec);
    png_dec *d = &dec; /* everything touched after setjmp goes through d */
    d->buf = buf;
    d->n = n;
    d->ctx = ctx;
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, d, png_err_fn, png_warn_fn, d, png_malloc_fn,
                                               png_free_fn);
    if (!png) return dp_error(ctx, DP_ERR_NOMEM, "%s: cannot create a PNG decoder", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: cannot create a PNG decoder", name);
    }
    if (setjmp(d->jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        if (d->rows) dp_free(ctx, d->rows);
        if (d->pix) dp_free(ctx, d->pix);
        return dp_error(ctx, DP_ERR_FORMAT, "%s: corrupt PNG: %s", name, d->msg);
    }
    png_set_read_fn(png, d, png_read_mem);
    /* libpng's own limit (1e6 px a side by default) would fire inside
     * png_read_info with a vaguer message; ours is checked right after. */
    png_set_user_limits(png, 0x7fffffffU, 0x7fffffffU);
    png_set_chunk_malloc_max(png, PNG_CHUNK_MAX);
    png_read_info(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    dp_status st = check_dims(ctx, name, "PNG", w, h, lim);
    if (st != DP_OK || !out) {
        png_destroy_read_struct(&png, &info, NULL);
        if (pw) *pw = w;
        if (ph) *ph = h;
        return st;
    }
    png_set_expand(png); /* palette → RGB, grey < 8 bits → 8, tRNS → alpha */
    png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (c < 1 || c > 4 || rowbytes < (size_t)w * (size_t)c) png_error(png, "unexpected channel layout");
    d->pix = dp_malloc(ctx, rowbytes * (size_t)h);
    d->rows = dp_malloc(ctx, sizeof(png_bytep) * (size_t)h);
    if (!d->pix || !d->rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) d->rows[y] = d->pix + (size_t)y * rowbytes;
    png_read_image(png, d->rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    st = to_float(ctx, d->pix, rowbytes, w, h, c, want, out);
    dp_free(ctx, d->rows);
    dp_free(ctx, d->pix);
    return st;
}

/* ------------------------------------------------------------ JPEG */
typedef struct jpeg_dec {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us a pointer to it */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    uint8_t *pix;
} jpeg_dec;

static void jpeg_error_exit_fn(j_common_ptr c) {
    jpeg_dec *d = (jpeg_dec *)c->err;
    c->err->format_message(c, d->msg);
    longjmp(d->jb, 1);
}
/* Warnings: libjpeg pads a truncated file with grey and only warns; we call
 * that corrupt. Other warnings (extraneous bytes, ...) are tolerated. */
static void jpeg_emit_fn(j_common_ptr c, int level) {
    if (level < 0) {
        int code = c->err->msg_code;
        if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) jpeg_error_exit_fn(c);
        c->err->num_warnings++;
    }
}

static dp_status decode_jpeg(dp_ctx *ctx, const uint8_t *buf, size_t n, const char *name, int want, const limits *lim,
                             dp_image *out, int *pw, int *ph) {
    struct jpeg_decompress_struct cinfo;
    jpeg_dec dec;
    memset(&dec, 0, sizeof dec);
    jpeg_dec *d = &dec;
    cinfo.err = jpeg_std_error(&d->pub);
    d->pub.error_exit = jpeg_error_exit_fn;
    d->pub.emit_message = jpeg_emit_fn;
    jpeg_create_decompress(&cinfo);
    struct jpeg_decompress_struct *ci = &cinfo;
    if (setjmp(d->jb)) {
        jpeg_destroy_decompress(ci);
        if (d->pix) dp_free(ctx, d->pix);
        return dp_error(ctx, DP_ERR_FORMAT, "%s: corrupt JPEG: %s", name, d->msg);
    }
    jpeg_mem_src(ci, buf, (unsigned long)n);
    jpeg_read_header(ci, TRUE);
    int w = (int)ci->image_width, h = (int)ci->image_height;
    dp_status st = check_dims(ctx, name, "JPEG", ci->image_width, ci->image_height, lim);
    if (st != DP_OK || !out) {
        jpeg_destroy_decompress(ci);
        if (pw) *pw = w;
        if (ph) *ph = h;
        return st;
    }
    int cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    int grey_src = ci->jpeg_color_space == JCS_GRAYSCALE;
    if (cmyk) ci->out_color_space = JCS_CMYK;
    else if (want == 1 || (want == 0 && grey_src)) ci->out_color_space = JCS_GRAYSCALE;
    else ci->out_color_space = JCS_RGB;
    jpeg_start_decompress(ci);
    int c = ci->output_components;
    size_t stride = (size_t)ci->output_width * (size_t)c;
    d->pix = dp_malloc(ctx, stride * ci->output_height);
    if (!d->pix) {
        snprintf(d->msg, sizeof d->msg, "out of memory");
        longjmp(d->jb, 1);
    }
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW row = d->pix + (size_t)ci->output_scanline * stride;
        jpeg_read_scanlines(ci, &row, 1);
    }
    jpeg_finish_decompress(ci);
    jpeg_destroy_decompress(ci);
    if (cmyk) { /* Adobe-style inverted CMYK (what nearly every CMYK JPEG is) → RGB, in place */
        for (size_t i = 0, npx = (size_t)w * (size_t)h; i < npx; i++) {
            const uint8_t *p = d->pix + 4 * i;
            unsigned k = p[3];
            uint8_t r = (uint8_t)(p[0] * k / 255), g = (uint8_t)(p[1] * k / 255), b = (uint8_t)(p[2] * k / 255);
            d->pix[3 * i] = r;
            d->pix[3 * i + 1] = g;
            d->pix[3 * i + 2] = b;
        }
        c = 3;
        stride = (size_t)w * 3;
    }
    st = to_float(ctx, d->pix, stride, w, h, c, want, out);
    dp_free(ctx, d->pix);
    return st;
}

/* ------------------------------------------------------------ WebP */
static dp_status decode_webp(dp_ctx *ctx, const uint8_t *buf, size_t n, const char *name, int want, const limits *lim,
                             dp_image *out, int *pw, int *ph) {
    WebPBitstreamFeatures f;
    VP8StatusCode vs = WebPGetFeatures(buf, n, &f);
    if (vs != VP8_STATUS_OK)
        return dp_error(ctx, DP_ERR_FORMAT, "%s: corrupt WebP header (libwebp status %d%s)", name, (int)vs,
                        vs == VP8_STATUS_NOT_ENOUGH_DATA ? ": truncated" : "");
    if (pw) *pw = f.width;
    if (ph) *ph = f.height;
    dp_status st = check_dims(ctx, name, "WebP", f.width, f.height, lim);
    if (st != DP_OK || !out) return st;
    if (f.has_animation) return dp_error(ctx, DP_ERR_UNSUPPORTED, "%s: animated WebP is not supported", name);
    size_t stride = (size_t)f.width * 3, size = stride * (size_t)f.height;
    uint8_t *pix = dp_malloc(ctx, size);
    if (!pix) return dp_error(ctx, DP_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, size);
    if (!WebPDecodeRGBInto(buf, n, pix, size, (int)stride)) {
        dp_free(ctx, pix);
        return dp_error(ctx, DP_ERR_FORMAT, "%s: corrupt or truncated WebP data (%zu bytes)", name, n);
    }
    st = to_float(ctx, pix, stride, f.width, f.height, 3, want, out);
    dp_free(ctx, pix);
    return st;
}

/* out NULL: header only (probe). */
static dp_status decode_any(dp_ctx *ctx, const void *buf, size_t n, const char *name, int channels,
                            const dp_image_limits *l, dp_image *out, dp_image_format *pf, int *pw, int *ph) {
    if (!name) name = "<memory>";
    if (!ctx || !buf) return dp_error(ctx, DP_ERR_NULL, "%s: dp_image_decode: NULL argument", name);
    if (channels != 0 && channels != 1 && channels != 3)
        return dp_error(ctx, DP_ERR_ARG, "%s: channels %d (0, 1 or 3)", name, channels);
    limits lim = get_limits(ctx, l);
    dp_image_format f = dp_image_sniff(buf, n);
    if (pf) *pf = f;
    switch (f) {
    case DP_IMG_PNG: return decode_png(ctx, buf, n, name, channels, &lim, out, pw, ph);
    case DP_IMG_JPEG: return decode_jpeg(ctx, buf, n, name, channels, &lim, out, pw, ph);
    case DP_IMG_WEBP: return decode_webp(ctx, buf, n, name, channels, &lim, out, pw, ph);
    default: {
        const uint8_t *p = buf;
        return dp_error(ctx, DP_ERR_FORMAT,
                        "%s: not a PNG, JPEG or WebP image (%zu bytes, starting %02x %02x %02x %02x; "
                        "the format is taken from the bytes, not the file name)",
                        name, n, n > 0 ? p[0] : 0, n > 1 ? p[1] : 0, n > 2 ? p[2] : 0, n > 3 ? p[3] : 0);
    }
    }
}

dp_status dp_image_decode(dp_ctx *ctx, const void *buf, size_t n, const char *name, int channels,
                          const dp_image_limits *lim, dp_image *out) {
    if (!out) return dp_error(ctx, DP_ERR_NULL, "dp_image_decode: out is NULL");
    memset(out, 0, sizeof *out);
    return decode_any(ctx, buf, n, name, channels, lim, out, NULL, NULL, NULL);
}

dp_status dp_image_load(dp_ctx *ctx, const char *path, int channels, const dp_image_limits *l, dp_image *out) {
    if (!ctx || !path || !out) return dp_error(ctx, DP_ERR_NULL, "dp_image_load: NULL argument");
    memset(out, 0, sizeof *out);
    limits lim = get_limits(ctx, l);
    uint8_t *buf;
    size_t n;
    dp_status st = dp_io_read_file(ctx, path, (size_t)lim.max_file, &buf, &n);
    if (st != DP_OK) return st;
    st = decode_any(ctx, buf, n, path, channels, l, out, NULL, NULL, NULL);
    dp_free(ctx, buf);
    return st;
}

dp_status dp_image_probe(dp_ctx *ctx, const char *path, dp_image_format *fmt, int *width, int *height) {
    if (!ctx || !path) return dp_error(ctx, DP_ERR_NULL, "dp_image_probe: NULL argument");
    uint8_t *buf;
    size_t n;
    dp_status st = dp_io_read_file(ctx, path, (size_t)get_limits(ctx, NULL).max_file, &buf, &n);
    if (st != DP_OK) return st;
    /* No size limit applies to a probe: it only reads the header. */
    dp_image_limits big = {INT32_MAX, INT64_MAX, 0};
    int w = 0, h = 0;
    st = decode_any(ctx, buf, n, path, 0, &big, NULL, fmt, &w, &h);
    dp_free(ctx, buf);
    if (width) *width = w;
    if (height) *height = h;
    return st;
}

/* ------------------------------------------------------------ PNG writing */
typedef struct png_enc {
    jmp_buf jb;
    char msg[200];
    uint8_t *pix;
    png_bytep *rows;
    FILE *f;
} png_enc;

static void png_enc_err(png_structp png, png_const_charp msg) {
    png_enc *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "error");
    longjmp(e->jb, 1);
}

static uint8_t quantize(float v) {
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 1.0f) return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

dp_status dp_image_save_png(dp_ctx *ctx, const char *path, const dp_image *img) {
    if (!ctx || !path || !img || !img->data) return dp_error(ctx, DP_ERR_NULL, "dp_image_save_png: NULL argument");
    int c = img->channels, h = img->height, w = img->width;
    if ((c != 1 && c != 3) || h <= 0 || w <= 0 || w > 1000000 || h > 1000000)
        return dp_error(ctx, DP_ERR_ARG, "%s: cannot write a %dx%dx%d image as PNG (channels 1 or 3)", path, c, h, w);
    char tmp[4200];
    int fd;
    dp_status st = dp_io_tmp_open(ctx, path, tmp, sizeof tmp, &fd);
    if (st != DP_OK) return st;
    png_enc enc;
    memset(&enc, 0, sizeof enc);
    png_enc *e = &enc;
    size_t plane = (size_t)h * (size_t)w;
    e->pix = dp_malloc(ctx, plane * (size_t)c);
    e->rows = dp_malloc(ctx, sizeof(png_bytep) * (size_t)h);
    int fd2 = dup(fd);
    e->f = fd2 >= 0 ? fdopen(fd2, "wb") : NULL;
    if (!e->pix || !e->rows || !e->f) {
        if (e->f) fclose(e->f);
        else if (fd2 >= 0) close(fd2);
        dp_free(ctx, e->pix);
        dp_free(ctx, e->rows);
        dp_io_abort(fd, tmp);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: cannot allocate the PNG encoder's buffers", path);
    }
    for (int y = 0; y < h; y++) {
        uint8_t *row = e->pix + (size_t)y * (size_t)w * (size_t)c;
        e->rows[y] = row;
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) row[x * c + ch] = quantize(img->data[ch * plane + (size_t)y * (size_t)w + (size_t)x]);
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, png_enc_err, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(e->jb)) {
        png_destroy_write_struct(&png, &info);
        fclose(e->f);
        dp_free(ctx, e->pix);
        dp_free(ctx, e->rows);
        dp_io_abort(fd, tmp);
        return dp_error(ctx, DP_ERR_IO, "%s: PNG write failed: %s", path, e->msg[0] ? e->msg : "out of memory");
    }
    png_init_io(png, e->f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, e->rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    int bad = fclose(e->f) != 0;
    dp_free(ctx, e->pix);
    dp_free(ctx, e->rows);
    if (bad) {
        dp_io_abort(fd, tmp);
        return dp_error(ctx, DP_ERR_IO, "%s: write failed (disk full?)", path);
    }
    return dp_io_commit(ctx, fd, tmp, path);
}

/* ------------------------------------------------------------ resize / crop */
/* Filter taps of a separable resampler (PIL's ImagingResample scheme): output
 * i is centred at (i+0.5)*scale in the input; the triangle filter has support
 * 1 input pixel when enlarging and `scale` pixels when shrinking. */
typedef struct taps {
    int *start, *count;
    float *w;
    int ksize;
} taps;

static dp_status make_taps(dp_ctx *ctx, int in, int out, taps *t) {
    double scale = (double)in / out, fscale = scale > 1.0 ? scale : 1.0, support = fscale;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->start = dp_malloc(ctx, sizeof(int) * (size_t)out);
    t->count = dp_malloc(ctx, sizeof(int) * (size_t)out);
    t->w = dp_malloc(ctx, sizeof(float) * (size_t)out * (size_t)t->ksize);
    if (!t->start || !t->count || !t->w) return dp_error(ctx, DP_ERR_NOMEM, "resize: out of memory");
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        if (hi - lo > t->ksize) hi = lo + t->ksize;
        float *w = t->w + (size_t)i * (size_t)t->ksize;
        double sum = 0;
        for (int x = lo; x < hi; x++) {
            double v = fabs((x - center + 0.5) / fscale);
            v = v < 1.0 ? 1.0 - v : 0.0;
            w[x - lo] = (float)v;
            sum += v;
        }
        if (sum <= 0) { /* cannot happen for in >= 1, but never divide by 0 */
            lo = (int)fmin(in - 1, fmax(0, floor(center)));
            hi = lo + 1;
            w[0] = 1;
            sum = 1;
        }
        for (int x = 0; x < hi - lo; x++) w[x] = (float)(w[x] / sum);
        t->start[i] = lo;
        t->count[i] = hi - lo;
    }
    return DP_OK;
}

static void free_taps(dp_ctx *ctx, taps *t) {
    dp_free(ctx, t->start);
    dp_free(ctx, t->count);
    dp_free(ctx, t->w);
}

static dp_status check_img(dp_ctx *ctx, const dp_image *src, int height, int width, const char *fn) {
    if (!ctx || !src || !src->data) return dp_error(ctx, DP_ERR_NULL, "%s: NULL image", fn);
    if ((src->channels != 1 && src->channels != 3) || src->height <= 0 || src->width <= 0)
        return dp_error(ctx, DP_ERR_ARG, "%s: bad source image %dx%dx%d", fn, src->channels, src->height, src->width);
    if (height <= 0 || width <= 0 || height > 1 << 20 || width > 1 << 20)
        return dp_error(ctx, DP_ERR_ARG, "%s: bad target size %dx%d", fn, height, width);
    return DP_OK;
}

dp_status dp_image_resize(dp_ctx *ctx, const dp_image *src, int height, int width, dp_image *out) {
    dp_status st = check_img(ctx, src, height, width, "dp_image_resize");
    if (st != DP_OK) return st;
    int C = src->channels, H = src->height, W = src->width;
    taps tx = {0}, ty = {0};
    float *tmp = NULL;
    dp_image r = {0};
    if ((st = make_taps(ctx, W, width, &tx)) != DP_OK || (st = make_taps(ctx, H, height, &ty)) != DP_OK) goto done;
    tmp = dp_malloc(ctx, sizeof(float) * (size_t)H * (size_t)width);
    if (!tmp) {
        st = dp_error(ctx, DP_ERR_NOMEM, "dp_image_resize: out of memory");
        goto done;
    }
    if ((st = dp_image_alloc(ctx, C, height, width, &r)) != DP_OK) goto done;
    for (int c = 0; c < C; c++) {
        const float *s = src->data + (size_t)c * H * W;
        for (int y = 0; y < H; y++) { /* horizontal pass: [H,W] → [H,width] */
            const float *row = s + (size_t)y * W;
            for (int x = 0; x < width; x++) {
                const float *k = tx.w + (size_t)x * tx.ksize;
                const float *p = row + tx.start[x];
                float acc = 0;
                for (int j = 0; j < tx.count[x]; j++) acc += k[j] * p[j];
                tmp[(size_t)y * width + x] = acc;
            }
        }
        float *d = r.data + (size_t)c * height * width;
        for (int y = 0; y < height; y++) { /* vertical pass: [H,width] → [height,width] */
            const float *k = ty.w + (size_t)y * ty.ksize;
            float *drow = d + (size_t)y * width;
            for (int x = 0; x < width; x++) drow[x] = 0;
            for (int j = 0; j < ty.count[y]; j++) {
                const float *srow = tmp + (size_t)(ty.start[y] + j) * width;
                for (int x = 0; x < width; x++) drow[x] += k[j] * srow[x];
            }
        }
    }
    *out = r;
    r.data = NULL;
done:
    free_taps(ctx, &tx);
    free_taps(ctx, &ty);
    dp_free(ctx, tmp);
    dp_image_free(ctx, &r);
    return st;
}

dp_status dp_image_center_crop(dp_ctx *ctx, const dp_image *src, int height, int width, dp_image *out) {
    dp_status st = check_img(ctx, src, height, width, "dp_image_center_crop");
    if (st != DP_OK) return st;
    if (height > src->height || width > src->width)
        return dp_error(ctx, DP_ERR_ARG, "dp_image_center_crop: %dx%d does not fit in a %dx%d image", height, width,
                        src->height, src->width);
    dp_image r;
    if ((st = dp_image_alloc(ctx, src->channels, height, width, &r)) != DP_OK) return st;
    int top = (src->height - height) / 2, left = (src->width - width) / 2;
    for (int c = 0; c < src->channels; c++)
        for (int y = 0; y < height; y++)
            memcpy(r.data + ((size_t)c * height + y) * width,
                   src->data + ((size_t)c * src->height + top + y) * src->width + left, sizeof(float) * (size_t)width);
    *out = r;
    return DP_OK;
}

dp_status dp_image_resize_cover(dp_ctx *ctx, const dp_image *src, int height, int width, dp_image *out) {
    dp_status st = check_img(ctx, src, height, width, "dp_image_resize_cover");
    if (st != DP_OK) return st;
    double sy = (double)height / src->height, sx = (double)width / src->width, s = sy > sx ? sy : sx;
    int rh = (int)lround(src->height * s), rw = (int)lround(src->width * s);
    if (rh < height) rh = height;
    if (rw < width) rw = width;
    if (rh == src->height && rw == src->width) return dp_image_center_crop(ctx, src, height, width, out);
    dp_image tmp;
    if ((st = dp_image_resize(ctx, src, rh, rw, &tmp)) != DP_OK) return st;
    if (rh == height && rw == width) {
        *out = tmp;
        return DP_OK;
    }
    st = dp_image_center_crop(ctx, &tmp, height, width, out);
    dp_image_free(ctx, &tmp);
    return st;
}
