/* Metadata labels of synthetic images, and the writer every generated image
 * goes through.
 *
 * Writing (dp_write_synthetic): watermark, then
 *  - PNG: tEXt "Software", "Source" (model) and "Comment" (ASCII, for old
 *    readers), iTXt "Description" (UTF-8) and iTXt "XML:com.adobe.xmp" (the
 *    XMP packet, uncompressed as the XMP specification asks), all before IDAT;
 *  - JPEG: the XMP packet in APP1 ("http://ns.adobe.com/xap/1.0/\0" header,
 *    jpeg_write_marker right after the JFIF APP0) and the description as a COM
 *    segment;
 * into PATH.tmp-XXXXXX, fsync, rename (no half-written file at PATH).
 *
 * Reading (dp_label_read_meta): walks the PNG chunks / JPEG segments up to
 * the scan / WebP RIFF chunks, bounds-checked, and pulls the fields out of
 * the XMP packet with a small tolerant scanner (attribute or element form).
 * It is not a general XML parser and does not need to be: it never fails on
 * odd metadata, it just finds less. */
#include <ctype.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "doppel/label.h"
#include "io/data_internal.h"

#define XMP_HEADER "http://ns.adobe.com/xap/1.0/"
#define XMP_HEADER_LEN 29 /* with the NUL */
#define DOPPEL_NS "urn:doppel:label:1.0#"
#define MAX_FIELD 240 /* software / model strings are cut to this many bytes */

/* ------------------------------------------------------------ text helpers */
/* Copy s into out (cap bytes), keeping valid UTF-8 (other bytes → '?'),
 * dropping control characters, cut at a character boundary. ascii: also turn
 * every non-ASCII character into '?'. */
static void clean_text(const char *s, char *out, size_t cap, int ascii) {
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p && o + 1 < cap) {
        unsigned c = *p;
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        int ok = len > 0 && !(len == 2 && c < 0xc2) && !(len == 4 && c > 0xf4);
        for (size_t i = 1; ok && i < len; i++) ok = (p[i] & 0xc0) == 0x80;
        if (!ok) {
            out[o++] = '?';
            p++;
            continue;
        }
        if (len == 1) {
            if (c >= 0x20 && c != 0x7f) out[o++] = (char)c;
            p++;
            continue;
        }
        if (ascii) {
            out[o++] = '?';
        } else {
            if (o + len + 1 > cap) break;
            memcpy(out + o, p, len);
            o += len;
        }
        p += len;
    }
    out[o] = 0;
}

/* XML-escaped s appended to buf at *o (cap bytes). 0 if it does not fit. */
static int xml_put(char *buf, size_t cap, size_t *o, const char *s) {
    for (; *s; s++) {
        const char *e = NULL;
        switch (*s) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&quot;"; break;
        default: break;
        }
        size_t n = e ? strlen(e) : 1;
        if (*o + n + 1 > cap) return 0;
        if (e) memcpy(buf + *o, e, n);
        else buf[*o] = *s;
        *o += n;
    }
    buf[*o] = 0;
    return 1;
}

static int raw_put(char *buf, size_t cap, size_t *o, const char *s) {
    size_t n = strlen(s);
    if (*o + n + 1 > cap) return 0;
    memcpy(buf + *o, s, n + 1);
    *o += n;
    return 1;
}

typedef struct label_text {
    char software[MAX_FIELD + 1], model[MAX_FIELD + 1];
    char software_a[MAX_FIELD + 1], model_a[MAX_FIELD + 1]; /* ASCII versions */
    char desc[800], desc_a[800];
    char id_hex[16];
    char xmp[4096];
} label_text;

static int make_labels(const dp_label_info *info, label_text *t) {
    char sw_default[64];
    snprintf(sw_default, sizeof sw_default, "doppel %s", DP_VERSION_STRING);
    const char *sw = info && info->software && info->software[0] ? info->software : sw_default;
    const char *model = info && info->model && info->model[0] ? info->model : "unknown";
    uint32_t id = info ? info->model_id : 0;
    clean_text(sw, t->software, sizeof t->software, 0);
    clean_text(model, t->model, sizeof t->model, 0);
    clean_text(sw, t->software_a, sizeof t->software_a, 1);
    clean_text(model, t->model_a, sizeof t->model_a, 1);
    snprintf(t->id_hex, sizeof t->id_hex, "0x%08x", (unsigned)id);
    const char *fmt = "AI-generated image (synthetic, not a photograph): made by %s with the model \"%s\" "
                      "(model id %s); it carries doppel's invisible watermark";
    snprintf(t->desc, sizeof t->desc, fmt, t->software, t->model, t->id_hex);
    snprintf(t->desc_a, sizeof t->desc_a, fmt, t->software_a, t->model_a, t->id_hex);
    size_t o = 0;
    char *x = t->xmp;
    size_t cap = sizeof t->xmp;
    int ok = raw_put(x, cap, &o,
                     "<?xpacket begin=\"\xef\xbb\xbf\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n"
                     "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n"
                     " <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n"
                     "  <rdf:Description rdf:about=\"\"\n"
                     "    xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\"\n"
                     "    xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\"\n"
                     "    xmlns:dc=\"http://purl.org/dc/elements/1.1/\"\n"
                     "    xmlns:doppel=\"" DOPPEL_NS "\"\n"
                     "    Iptc4xmpExt:DigitalSourceType=\"" DP_IPTC_TRAINED_ALGORITHMIC_MEDIA "\"\n"
                     "    xmp:CreatorTool=\"");
    ok = ok && xml_put(x, cap, &o, t->software) && raw_put(x, cap, &o, "\"\n    Iptc4xmpExt:AISystemUsed=\"");
    ok = ok && xml_put(x, cap, &o, t->software) && raw_put(x, cap, &o, "\"\n    doppel:Model=\"");
    ok = ok && xml_put(x, cap, &o, t->model) && raw_put(x, cap, &o, "\"\n    doppel:ModelID=\"");
    ok = ok && raw_put(x, cap, &o, t->id_hex) &&
         raw_put(x, cap, &o, "\"\n    doppel:Watermark=\"doppel-stdm-dct-v1\">\n"
                             "   <dc:description>\n    <rdf:Alt>\n     <rdf:li xml:lang=\"x-default\">");
    ok = ok && xml_put(x, cap, &o, t->desc) &&
         raw_put(x, cap, &o, "</rdf:li>\n    </rdf:Alt>\n   </dc:description>\n  </rdf:Description>\n"
                             " </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end=\"r\"?>");
    return ok;
}

/* ------------------------------------------------------------ 8-bit pixels */
static uint8_t q8(float v) {
    if (!(v > 0.0f)) return 0;
    if (v >= 1.0f) return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

/* Interleaved 8-bit rows of img (C channels). */
static uint8_t *interleave(dp_ctx *ctx, const dp_image *img) {
    int c = img->channels, h = img->height, w = img->width;
    size_t plane = (size_t)h * (size_t)w;
    uint8_t *p = dp_malloc(ctx, plane * (size_t)c);
    if (!p) return NULL;
    for (size_t i = 0; i < plane; i++)
        for (int ch = 0; ch < c; ch++) p[i * (size_t)c + (size_t)ch] = q8(img->data[(size_t)ch * plane + i]);
    return p;
}

/* ------------------------------------------------------------ PNG writer */
typedef struct png_w {
    jmp_buf jb;
    char msg[200];
    uint8_t *pix;
    png_bytep *rows;
    FILE *f;
} png_w;

static void pngw_err(png_structp png, png_const_charp msg) {
    png_w *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "error");
    longjmp(e->jb, 1);
}
static void pngw_warn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static dp_status write_png(dp_ctx *ctx, const char *path, const dp_image *img, label_text *t) {
    int c = img->channels, h = img->height, w = img->width;
    char tmp[4200];
    int fd;
    dp_status st = dp_io_tmp_open(ctx, path, tmp, sizeof tmp, &fd);
    if (st != DP_OK) return st;
    png_w enc;
    memset(&enc, 0, sizeof enc);
    png_w *e = &enc;
    e->pix = interleave(ctx, img);
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
    for (int y = 0; y < h; y++) e->rows[y] = e->pix + (size_t)y * (size_t)w * (size_t)c;
    png_text txt[5];
    memset(txt, 0, sizeof txt);
    char k_sw[] = "Software", k_src[] = "Source", k_com[] = "Comment", k_desc[] = "Description",
         k_xmp[] = "XML:com.adobe.xmp", empty[] = "";
    txt[0].compression = PNG_TEXT_COMPRESSION_NONE;
    txt[0].key = k_sw;
    txt[0].text = t->software_a;
    txt[1].compression = PNG_TEXT_COMPRESSION_NONE;
    txt[1].key = k_src;
    txt[1].text = t->model_a;
    txt[2].compression = PNG_TEXT_COMPRESSION_NONE;
    txt[2].key = k_com;
    txt[2].text = t->desc_a;
    txt[3].compression = PNG_ITXT_COMPRESSION_NONE;
    txt[3].key = k_desc;
    txt[3].text = t->desc;
    txt[3].lang = empty;
    txt[3].lang_key = empty;
    txt[4].compression = PNG_ITXT_COMPRESSION_NONE;
    txt[4].key = k_xmp;
    txt[4].text = t->xmp;
    txt[4].lang = empty;
    txt[4].lang_key = empty;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, pngw_err, pngw_warn);
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
    png_set_text(png, info, txt, 5);
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

/* ------------------------------------------------------------ JPEG encoder (memory) */
typedef struct jpg_w {
    struct jpeg_error_mgr jerr; /* first: the library's error pointer is cast back to this struct */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    struct jpeg_compress_struct ci;
    unsigned char *out;
    unsigned long out_n;
    uint8_t *pix;
} jpg_w;

static void jpgw_error_exit(j_common_ptr ci) {
    jpg_w *e = (jpg_w *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jb, 1);
}
static void jpgw_output_message(j_common_ptr ci) { (void)ci; }

/* JPEG bytes of img in a malloc'd buffer (free()). xmp/comment may be NULL. */
static dp_status encode_jpeg(dp_ctx *ctx, const char *name, const dp_image *img, int quality, const char *xmp,
                             const char *comment, unsigned char **buf, size_t *n) {
    *buf = NULL;
    *n = 0;
    int c = img->channels, h = img->height, w = img->width;
    if (w > JPEG_MAX_DIMENSION || h > JPEG_MAX_DIMENSION)
        return dp_error(ctx, DP_ERR_ARG, "%s: %dx%d is too large for JPEG (at most %d a side)", name, w, h, (int)JPEG_MAX_DIMENSION);
    size_t xmp_n = xmp ? strlen(xmp) : 0;
    if (xmp_n + XMP_HEADER_LEN > 65533) return dp_error(ctx, DP_ERR_ARG, "%s: XMP packet too large for one APP1", name);
    jpg_w enc;
    memset(&enc, 0, sizeof enc);
    jpg_w *e = &enc;
    uint8_t *seg = NULL;
    e->pix = interleave(ctx, img);
    if (xmp) seg = dp_malloc(ctx, xmp_n + XMP_HEADER_LEN);
    if (!e->pix || (xmp && !seg)) {
        dp_free(ctx, e->pix);
        dp_free(ctx, seg);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: cannot allocate the JPEG encoder's buffers", name);
    }
    if (seg) {
        memcpy(seg, XMP_HEADER, XMP_HEADER_LEN);
        memcpy(seg + XMP_HEADER_LEN, xmp, xmp_n);
    }
    e->ci.err = jpeg_std_error(&e->jerr);
    e->jerr.error_exit = jpgw_error_exit;
    e->jerr.output_message = jpgw_output_message;
    if (setjmp(e->jb)) {
        jpeg_destroy_compress(&e->ci);
        free(e->out);
        dp_free(ctx, e->pix);
        dp_free(ctx, seg);
        return dp_error(ctx, DP_ERR_IO, "%s: JPEG encoding failed: %s", name, e->msg);
    }
    jpeg_create_compress(&e->ci);
    jpeg_mem_dest(&e->ci, &e->out, &e->out_n);
    e->ci.image_width = (JDIMENSION)w;
    e->ci.image_height = (JDIMENSION)h;
    e->ci.input_components = c;
    e->ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&e->ci);
    jpeg_set_quality(&e->ci, quality, TRUE);
    jpeg_start_compress(&e->ci, TRUE);
    if (seg) jpeg_write_marker(&e->ci, JPEG_APP0 + 1, seg, (unsigned)(xmp_n + XMP_HEADER_LEN));
    if (comment) jpeg_write_marker(&e->ci, JPEG_COM, (const JOCTET *)comment, (unsigned)strlen(comment));
    while (e->ci.next_scanline < e->ci.image_height) {
        JSAMPROW row = e->pix + (size_t)e->ci.next_scanline * (size_t)w * (size_t)c;
        jpeg_write_scanlines(&e->ci, &row, 1);
    }
    jpeg_finish_compress(&e->ci);
    jpeg_destroy_compress(&e->ci);
    dp_free(ctx, e->pix);
    dp_free(ctx, seg);
    *buf = e->out;
    *n = e->out_n;
    return DP_OK;
}

static dp_status write_jpeg(dp_ctx *ctx, const char *path, const dp_image *img, int quality, label_text *t) {
    unsigned char *buf;
    size_t n;
    dp_status st = encode_jpeg(ctx, path, img, quality, t->xmp, t->desc_a, &buf, &n);
    if (st != DP_OK) return st;
    char tmp[4200];
    int fd;
    if ((st = dp_io_tmp_open(ctx, path, tmp, sizeof tmp, &fd)) != DP_OK) {
        free(buf);
        return st;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, buf + off, n - off);
        if (k <= 0) {
            free(buf);
            dp_io_abort(fd, tmp);
            return dp_error(ctx, DP_ERR_IO, "%s: write failed (disk full?)", path);
        }
        off += (size_t)k;
    }
    free(buf);
    return dp_io_commit(ctx, fd, tmp, path);
}

dp_status dp_image_jpeg_roundtrip(dp_ctx *ctx, const dp_image *img, int quality, dp_image *out) {
    if (!ctx || !img || !img->data || !out) return dp_error(ctx, DP_ERR_NULL, "dp_image_jpeg_roundtrip: NULL argument");
    memset(out, 0, sizeof *out);
    if ((img->channels != 1 && img->channels != 3) || img->height <= 0 || img->width <= 0)
        return dp_error(ctx, DP_ERR_ARG, "dp_image_jpeg_roundtrip: bad image %dx%dx%d", img->channels, img->height, img->width);
    if (quality < 1 || quality > 100) return dp_error(ctx, DP_ERR_ARG, "dp_image_jpeg_roundtrip: quality %d (1..100)", quality);
    unsigned char *buf;
    size_t n;
    dp_status st = encode_jpeg(ctx, "<memory>", img, quality, NULL, NULL, &buf, &n);
    if (st != DP_OK) return st;
    st = dp_image_decode(ctx, buf, n, "<jpeg roundtrip>", img->channels, NULL, out);
    free(buf);
    return st;
}

/* ------------------------------------------------------------ dp_write_synthetic */
static int ends_with_ci(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    if (m > n) return 0;
    for (size_t i = 0; i < m; i++)
        if (tolower((unsigned char)s[n - m + i]) != suf[i]) return 0;
    return 1;
}

dp_status dp_write_synthetic(dp_ctx *ctx, const char *path, const dp_image *img, const dp_label_info *info,
                             int jpeg_quality) {
    if (!ctx || !path || !img || !img->data) return dp_error(ctx, DP_ERR_NULL, "dp_write_synthetic: NULL argument");
    int is_png = ends_with_ci(path, ".png"), is_jpg = ends_with_ci(path, ".jpg") || ends_with_ci(path, ".jpeg");
    if (!is_png && !is_jpg)
        return dp_error(ctx, DP_ERR_ARG, "%s: the file name must end in .png, .jpg or .jpeg (the format follows it)", path);
    if (jpeg_quality < 0 || jpeg_quality > 100)
        return dp_error(ctx, DP_ERR_ARG, "%s: JPEG quality %d (1..100, 0 = 92)", path, jpeg_quality);
    int c = img->channels, h = img->height, w = img->width;
    if ((c != 1 && c != 3) || h <= 0 || w <= 0 || h > 1000000 || w > 1000000)
        return dp_error(ctx, DP_ERR_ARG, "%s: cannot write a %dx%dx%d image (channels 1 or 3)", path, c, h, w);
    label_text *t = dp_malloc(ctx, sizeof *t);
    if (!t) return dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
    if (!make_labels(info, t)) {
        dp_free(ctx, t);
        return dp_error(ctx, DP_ERR_ARG, "%s: the label does not fit (model name too long?)", path);
    }
    /* Too small for the watermark: enlarge by an integer factor (nearest neighbour). */
    int f = 1;
    if (h < DP_WATERMARK_MIN_SIDE || w < DP_WATERMARK_MIN_SIDE)
        while (h * f < DP_WATERMARK_ENLARGE_SIDE || w * f < DP_WATERMARK_ENLARGE_SIDE) f++;
    dp_image m;
    dp_status st = dp_image_alloc(ctx, c, h * f, w * f, &m);
    if (st != DP_OK) {
        dp_free(ctx, t);
        return st;
    }
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h * f; y++)
            for (int x = 0; x < w * f; x++)
                m.data[((size_t)ch * m.height + y) * m.width + x] = img->data[((size_t)ch * h + y / f) * w + x / f];
    st = dp_watermark_embed(ctx, &m, info ? info->model_id : 0);
    if (st == DP_OK) {
        if (is_png) st = write_png(ctx, path, &m, t);
        else st = write_jpeg(ctx, path, &m, jpeg_quality ? jpeg_quality : 92, t);
    }
    dp_image_free(ctx, &m);
    dp_free(ctx, t);
    return st;
}

/* ------------------------------------------------------------ reading labels */
static void set_field(char *dst, size_t cap, const char *src, size_t n) {
    if (dst[0]) return; /* the first source wins (XMP is read first) */
    char tmp[1024];
    if (n >= sizeof tmp) n = sizeof tmp - 1;
    memcpy(tmp, src, n);
    tmp[n] = 0;
    clean_text(tmp, dst, cap, 0);
    /* trim */
    size_t k = strlen(dst);
    while (k && isspace((unsigned char)dst[k - 1])) dst[--k] = 0;
    size_t s = 0;
    while (dst[s] && isspace((unsigned char)dst[s])) s++;
    if (s) memmove(dst, dst + s, k - s + 1);
}

/* XML entities decoded in place (&amp; &lt; &gt; &quot; &apos; &#N; &#xN; for N < 128). */
static size_t xml_unescape(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '&') {
            size_t j = i + 1;
            while (j < n && j < i + 10 && s[j] != ';') j++;
            if (j < n && s[j] == ';') {
                char ent[12];
                size_t el = j - i - 1;
                memcpy(ent, s + i + 1, el);
                ent[el] = 0;
                int ch = -1;
                if (!strcmp(ent, "amp")) ch = '&';
                else if (!strcmp(ent, "lt")) ch = '<';
                else if (!strcmp(ent, "gt")) ch = '>';
                else if (!strcmp(ent, "quot")) ch = '"';
                else if (!strcmp(ent, "apos")) ch = '\'';
                else if (ent[0] == '#') {
                    long v = ent[1] == 'x' || ent[1] == 'X' ? strtol(ent + 2, NULL, 16) : strtol(ent + 1, NULL, 10);
                    if (v > 0 && v < 128) ch = (int)v;
                }
                if (ch >= 0) {
                    s[o++] = (char)ch;
                    i = j + 1;
                    continue;
                }
            }
        }
        s[o++] = s[i++];
    }
    return o;
}

static const char *memfind(const char *h, size_t hn, const char *needle) {
    size_t nn = strlen(needle);
    if (nn == 0 || nn > hn) return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == needle[0] && !memcmp(h + i, needle, nn)) return h + i;
    return NULL;
}

/* The value of XMP property qname (e.g. "xmp:CreatorTool"): attribute form
 * qname="v" / qname='v', or element form <qname ...>v</qname> where v may be
 * wrapped in rdf:Alt/Seq/Bag + rdf:li (the first li's text is taken). */
static int xmp_get(const char *x, size_t n, const char *qname, char *out, size_t cap) {
    char pat[128];
    size_t ql = strlen(qname);
    if (ql + 3 > sizeof pat) return 0;
    const char *end = x + n, *p = x;
    while (p < end) {
        const char *hit = memfind(p, (size_t)(end - p), qname);
        if (!hit) return 0;
        const char *a = hit + ql;
        int name_start = hit == x || hit[-1] == '<' || isspace((unsigned char)hit[-1]);
        if (name_start && a < end) {
            const char *q = a;
            while (q < end && isspace((unsigned char)*q)) q++;
            if (hit > x && hit[-1] != '<' && q < end && *q == '=') { /* attribute */
                q++;
                while (q < end && isspace((unsigned char)*q)) q++;
                if (q < end && (*q == '"' || *q == '\'')) {
                    char quote = *q++;
                    const char *v = q;
                    while (q < end && *q != quote) q++;
                    if (q < end) {
                        char tmp[1024];
                        size_t vn = (size_t)(q - v) < sizeof tmp ? (size_t)(q - v) : sizeof tmp - 1;
                        memcpy(tmp, v, vn);
                        vn = xml_unescape(tmp, vn);
                        set_field(out, cap, tmp, vn);
                        return 1;
                    }
                }
            } else if (hit > x && hit[-1] == '<' && (*a == '>' || isspace((unsigned char)*a))) { /* element */
                const char *q2 = a;
                while (q2 < end && *q2 != '>') q2++;
                if (q2 < end && q2[-1] == '/') { /* <qname/>: empty */
                    p = q2;
                    continue;
                }
                q2++;
                /* skip nested tags and whitespace up to the first text */
                for (;;) {
                    while (q2 < end && isspace((unsigned char)*q2)) q2++;
                    if (q2 < end && *q2 == '<') {
                        if (q2 + 1 < end && q2[1] == '/') break; /* closing tag: empty value */
                        while (q2 < end && *q2 != '>') q2++;
                        if (q2 < end) q2++;
                        continue;
                    }
                    break;
                }
                const char *v = q2;
                while (q2 < end && *q2 != '<') q2++;
                if (q2 > v) {
                    char tmp[1024];
                    size_t vn = (size_t)(q2 - v) < sizeof tmp ? (size_t)(q2 - v) : sizeof tmp - 1;
                    memcpy(tmp, v, vn);
                    vn = xml_unescape(tmp, vn);
                    set_field(out, cap, tmp, vn);
                    return 1;
                }
            }
        }
        p = hit + 1;
    }
    return 0;
}

static void parse_xmp(const char *x, size_t n, dp_label_meta *m) {
    char id[32] = "";
    xmp_get(x, n, "Iptc4xmpExt:DigitalSourceType", m->source_type, sizeof m->source_type);
    xmp_get(x, n, "xmp:CreatorTool", m->software, sizeof m->software);
    xmp_get(x, n, "doppel:Model", m->model, sizeof m->model);
    xmp_get(x, n, "dc:description", m->description, sizeof m->description);
    if (xmp_get(x, n, "doppel:ModelID", id, sizeof id)) {
        char *e;
        unsigned long v = strtoul(id, &e, 0);
        if (e != id && !*e && v <= 0xffffffffUL) {
            m->has_model_id = 1;
            m->model_id = (uint32_t)v;
        }
    }
}

/* PNG text chunks. Keyword, then the (maybe compressed) text. */
#define MAX_INFLATED ((size_t)1 << 20)
static void png_text_chunk(dp_ctx *ctx, const char *type, const uint8_t *d, size_t n, dp_label_meta *m) {
    const uint8_t *z = memchr(d, 0, n < 80 ? n : 80);
    if (!z || z == d) return;
    char key[80];
    size_t kl = (size_t)(z - d);
    memcpy(key, d, kl);
    key[kl] = 0;
    const uint8_t *p = z + 1, *end = d + n;
    int compressed = 0;
    if (!strcmp(type, "zTXt")) {
        if (p >= end) return;
        p++; /* method */
        compressed = 1;
    } else if (!strcmp(type, "iTXt")) {
        if (end - p < 2) return;
        compressed = p[0];
        p += 2;
        const uint8_t *l = memchr(p, 0, (size_t)(end - p)); /* language */
        if (!l) return;
        p = l + 1;
        l = memchr(p, 0, (size_t)(end - p)); /* translated keyword */
        if (!l) return;
        p = l + 1;
    }
    char *inflated = NULL;
    const char *text = (const char *)p;
    size_t tn = (size_t)(end - p);
    if (compressed) {
        /* Inflate into a buffer that grows up to MAX_INFLATED; larger or corrupt: ignored. */
        for (size_t cap = 16384; cap <= MAX_INFLATED && !inflated; cap *= 4) {
            char *buf = dp_malloc(ctx, cap);
            if (!buf) return;
            uLongf out_n = (uLongf)cap;
            int zr = uncompress((Bytef *)buf, &out_n, p, (uLong)(end - p));
            if (zr == Z_OK) {
                inflated = buf;
                tn = out_n;
            } else {
                dp_free(ctx, buf);
                if (zr != Z_BUF_ERROR) return;
            }
        }
        if (!inflated) return;
        text = inflated;
    }
    if (!strcmp(key, "XML:com.adobe.xmp")) parse_xmp(text, tn, m);
    else if (!strcmp(key, "Software")) set_field(m->software, sizeof m->software, text, tn);
    else if (!strcmp(key, "Source")) set_field(m->model, sizeof m->model, text, tn);
    else if (!strcmp(key, "Description") || !strcmp(key, "Comment"))
        set_field(m->description, sizeof m->description, text, tn);
    dp_free(ctx, inflated);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }

static void meta_png(dp_ctx *ctx, const uint8_t *b, size_t n, dp_label_meta *m) {
    /* XMP first: collect the chunks, then read XMP before the plain texts. */
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 8;
        while (off + 12 <= n) {
            uint32_t len = be32(b + off);
            if (len > n - off - 12) break;
            char type[5];
            memcpy(type, b + off + 4, 4);
            type[4] = 0;
            const uint8_t *d = b + off + 8;
            if (!strcmp(type, "IEND")) break;
            if (!strcmp(type, "tEXt") || !strcmp(type, "zTXt") || !strcmp(type, "iTXt")) {
                int is_xmp = len > 18 && !memcmp(d, "XML:com.adobe.xmp", 18);
                if (is_xmp == (pass == 0)) png_text_chunk(ctx, type, d, len, m);
            }
            off += 12 + (size_t)len;
        }
    }
}

static void meta_jpeg(const uint8_t *b, size_t n, dp_label_meta *m) {
    const uint8_t *com = NULL;
    size_t com_n = 0;
    size_t off = 2;
    while (off + 4 <= n) {
        if (b[off] != 0xff) break;
        uint8_t mk = b[off + 1];
        if (mk == 0xff) { /* fill byte */
            off++;
            continue;
        }
        if (mk == 0xd8 || (mk >= 0xd0 && mk <= 0xd7) || mk == 0x01) {
            off += 2;
            continue;
        }
        if (mk == 0xda || mk == 0xd9) break; /* start of scan / end: no metadata after */
        size_t len = (size_t)b[off + 2] << 8 | b[off + 3];
        if (len < 2 || len > n - off - 2) break;
        const uint8_t *d = b + off + 4;
        size_t dn = len - 2;
        if (mk == 0xe1 && dn > XMP_HEADER_LEN && !memcmp(d, XMP_HEADER, XMP_HEADER_LEN))
            parse_xmp((const char *)d + XMP_HEADER_LEN, dn - XMP_HEADER_LEN, m);
        else if (mk == 0xfe && !com) {
            com = d;
            com_n = dn;
        }
        off += 2 + len;
    }
    if (com) set_field(m->description, sizeof m->description, (const char *)com, com_n);
}

static void meta_webp(const uint8_t *b, size_t n, dp_label_meta *m) {
    size_t end = n;
    if (n >= 8 && (size_t)le32(b + 4) + 8 < end) end = (size_t)le32(b + 4) + 8;
    size_t off = 12;
    while (off + 8 <= end) {
        uint32_t len = le32(b + off + 4);
        if (len > end - off - 8) break;
        if (!memcmp(b + off, "XMP ", 4)) parse_xmp((const char *)b + off + 8, len, m);
        off += 8 + (size_t)len + (len & 1);
    }
}

dp_status dp_label_read_meta(dp_ctx *ctx, const void *buf, size_t n, const char *name, dp_label_meta *out) {
    if (!name) name = "<memory>";
    if (!ctx || !buf || !out) return dp_error(ctx, DP_ERR_NULL, "%s: dp_label_read_meta: NULL argument", name);
    memset(out, 0, sizeof *out);
    switch (dp_image_sniff(buf, n)) {
    case DP_IMG_PNG: meta_png(ctx, buf, n, out); break;
    case DP_IMG_JPEG: meta_jpeg(buf, n, out); break;
    case DP_IMG_WEBP: meta_webp(buf, n, out); break;
    default: return dp_error(ctx, DP_ERR_FORMAT, "%s: not a PNG, JPEG or WebP image", name);
    }
    const char *st = out->source_type, *slash = strrchr(st, '/');
    const char *code = slash ? slash + 1 : st;
    out->ai_generated = !strcmp(code, "trainedAlgorithmicMedia") || !strcmp(code, "compositeWithTrainedAlgorithmicMedia");
    out->present = out->source_type[0] || out->software[0] || out->model[0] || out->description[0] || out->has_model_id;
    return DP_OK;
}

dp_status dp_label_check_file(dp_ctx *ctx, const char *path, dp_label_check *out) {
    if (!ctx || !path || !out) return dp_error(ctx, DP_ERR_NULL, "dp_label_check_file: NULL argument");
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t n;
    dp_status st = dp_io_read_file(ctx, path, (size_t)256 << 20, &buf, &n);
    if (st != DP_OK) return st;
    dp_image img = {0};
    /* Grey: the detector reads the luminance, which a JPEG holds as is. */
    st = dp_image_decode(ctx, buf, n, path, 1, NULL, &img);
    if (st == DP_OK) st = dp_label_read_meta(ctx, buf, n, path, &out->meta);
    if (st == DP_OK) st = dp_watermark_detect(ctx, &img, &out->watermark);
    if (st == DP_OK) {
        out->format = dp_image_sniff(buf, n);
        out->width = img.width;
        out->height = img.height;
    }
    dp_image_free(ctx, &img);
    dp_free(ctx, buf);
    return st;
}
