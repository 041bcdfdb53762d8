/* Degradations for training (the same for both classes) and for the
 * robustness table: JPEG re-compression in memory, Gaussian blur, down- and
 * up-scaling, flips, colour jitter, cut-out, Gaussian noise. */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "core/internal.h"
#include "doppel/detect.h"

void dp_augment_opts_default(dp_augment_opts *o) {
    o->p_jpeg = 0.5f;
    o->jpeg_lo = 60;
    o->jpeg_hi = 100;
    o->p_blur = 0.3f;
    o->blur_max = 1.5f;
    o->p_scale = 0.4f;
    o->scale_lo = 0.5f;
    o->p_flip = 0.5f;
    o->p_jitter = 0.5f;
    o->p_cutout = 0.25f;
    o->p_noise = 0.3f;
    o->noise_max = 0.03f;
}

typedef struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} jerr;
static void jerr_exit(j_common_ptr c) { longjmp(((jerr *)c->err)->jb, 1); }
static void jerr_quiet(j_common_ptr c, int level) { (void)c, (void)level; }

static inline uint8_t to8(float v) {
    if (!(v > 0)) return 0;
    if (v >= 1) return 255;
    return (uint8_t)lrintf(v * 255.0f);
}

/* Everything the libjpeg round trip changes lives here (in memory, not in
 * registers), so nothing is lost when libjpeg longjmps back on an error. */
typedef struct jstate {
    struct jpeg_compress_struct cc;
    struct jpeg_decompress_struct dc;
    jerr je;
    int cc_made, dc_made;
    unsigned char *mem;
    unsigned long memsize;
    uint8_t *pix;
    int C, H, W, quality;
} jstate;

/* 0 ok, 1 libjpeg error, 2 size mismatch. */
static int jpeg_roundtrip(jstate *s) {
    s->cc.err = jpeg_std_error(&s->je.pub);
    s->dc.err = s->cc.err;
    s->je.pub.error_exit = jerr_exit;
    s->je.pub.emit_message = jerr_quiet;
    if (setjmp(s->je.jb)) return 1;
    jpeg_create_compress(&s->cc);
    s->cc_made = 1;
    jpeg_mem_dest(&s->cc, &s->mem, &s->memsize);
    s->cc.image_width = (JDIMENSION)s->W;
    s->cc.image_height = (JDIMENSION)s->H;
    s->cc.input_components = s->C;
    s->cc.in_color_space = s->C == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&s->cc);
    jpeg_set_quality(&s->cc, s->quality, TRUE);
    jpeg_start_compress(&s->cc, TRUE);
    while (s->cc.next_scanline < s->cc.image_height) {
        JSAMPROW row = s->pix + (size_t)s->cc.next_scanline * s->W * s->C;
        jpeg_write_scanlines(&s->cc, &row, 1);
    }
    jpeg_finish_compress(&s->cc);
    jpeg_create_decompress(&s->dc);
    s->dc_made = 1;
    jpeg_mem_src(&s->dc, s->mem, s->memsize);
    jpeg_read_header(&s->dc, TRUE);
    s->dc.out_color_space = s->C == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_start_decompress(&s->dc);
    if ((int)s->dc.output_width != s->W || (int)s->dc.output_height != s->H || s->dc.output_components != s->C) return 2;
    while (s->dc.output_scanline < s->dc.output_height) {
        JSAMPROW row = s->pix + (size_t)s->dc.output_scanline * s->W * s->C;
        jpeg_read_scanlines(&s->dc, &row, 1);
    }
    jpeg_finish_decompress(&s->dc);
    return 0;
}

dp_status dp_jpeg_recompress(dp_ctx *ctx, dp_image *img, int quality) {
    if (!img || !img->data) return dp_error(ctx, DP_ERR_NULL, "dp_jpeg_recompress: NULL image");
    if (quality < 1 || quality > 100) return dp_error(ctx, DP_ERR_ARG, "dp_jpeg_recompress: quality %d", quality);
    if (img->channels != 1 && img->channels != 3) return dp_error(ctx, DP_ERR_ARG, "dp_jpeg_recompress: %d channels", img->channels);
    int C = img->channels, H = img->height, W = img->width;
    size_t plane = (size_t)H * W;
    jstate *s = dp_calloc(ctx, sizeof *s);
    uint8_t *pix = dp_malloc(ctx, plane * (size_t)C);
    if (!s || !pix) {
        dp_free(ctx, s);
        dp_free(ctx, pix);
        return dp_error(ctx, DP_ERR_NOMEM, "dp_jpeg_recompress: out of memory");
    }
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < C; c++) pix[i * C + c] = to8(img->data[(size_t)c * plane + i]);
    s->pix = pix, s->C = C, s->H = H, s->W = W, s->quality = quality;
    int r = jpeg_roundtrip(s);
    dp_status st = DP_OK;
    if (r == 0) {
        for (size_t i = 0; i < plane; i++)
            for (int c = 0; c < C; c++) img->data[(size_t)c * plane + i] = pix[i * C + c] * (1.0f / 255.0f);
    } else {
        st = dp_error(ctx, DP_ERR_FORMAT, "dp_jpeg_recompress: libjpeg failed on a %dx%d image", W, H);
    }
    if (s->cc_made) jpeg_destroy_compress(&s->cc);
    if (s->dc_made) jpeg_destroy_decompress(&s->dc);
    free(s->mem); /* jpeg_mem_dest allocates with malloc */
    dp_free(ctx, s);
    dp_free(ctx, pix);
    return st;
}

dp_status dp_gaussian_blur(dp_ctx *ctx, dp_image *img, float sigma) {
    if (!img || !img->data) return dp_error(ctx, DP_ERR_NULL, "dp_gaussian_blur: NULL image");
    if (!(sigma > 0)) return DP_OK;
    if (sigma > 50) return dp_error(ctx, DP_ERR_ARG, "dp_gaussian_blur: sigma %g", (double)sigma);
    int r = (int)ceilf(3 * sigma), K = 2 * r + 1;
    float k[2 * 150 + 1];
    double s = 0;
    for (int i = -r; i <= r; i++) s += k[i + r] = expf(-(float)(i * i) / (2 * sigma * sigma));
    for (int i = 0; i < K; i++) k[i] = (float)(k[i] / s);
    int H = img->height, W = img->width;
    float *tmp = dp_malloc(ctx, sizeof(float) * (size_t)H * W);
    if (!tmp) return dp_error(ctx, DP_ERR_NOMEM, "dp_gaussian_blur: out of memory");
    for (int c = 0; c < img->channels; c++) {
        float *p = img->data + (size_t)c * H * W;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float a = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= W ? W - 1 : x + i;
                    a += k[i + r] * p[(size_t)y * W + xx];
                }
                tmp[(size_t)y * W + x] = a;
            }
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float a = 0;
                for (int i = -r; i <= r; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= H ? H - 1 : y + i;
                    a += k[i + r] * tmp[(size_t)yy * W + x];
                }
                p[(size_t)y * W + x] = a;
            }
    }
    dp_free(ctx, tmp);
    return DP_OK;
}

dp_status dp_image_rescale(dp_ctx *ctx, dp_image *img, double factor) {
    if (!img || !img->data) return dp_error(ctx, DP_ERR_NULL, "dp_image_rescale: NULL image");
    int h = (int)lround(img->height * factor), w = (int)lround(img->width * factor);
    if (h < 1) h = 1;
    if (w < 1) w = 1;
    dp_image r;
    dp_status st = dp_image_resize(ctx, img, h, w, &r);
    if (st != DP_OK) return st;
    dp_image_free(ctx, img);
    *img = r;
    return DP_OK;
}

static float unif(dp_rng *r, float a, float b) { return a + (b - a) * dp_rng_uniform(r); }

dp_status dp_augment(dp_ctx *ctx, dp_image *img, const dp_augment_opts *o, dp_rng *rng) {
    if (!img || !img->data || !o || !rng) return dp_error(ctx, DP_ERR_NULL, "dp_augment: NULL argument");
    int H = img->height, W = img->width, C = img->channels;
    size_t plane = (size_t)H * W;
    dp_status st = DP_OK;
    if (dp_rng_uniform(rng) < o->p_scale) { /* down and back up through the one resampling path */
        float f = unif(rng, o->scale_lo, 1.0f);
        int h = (int)lroundf(H * f), w = (int)lroundf(W * f);
        if (h >= 4 && w >= 4 && h < H) {
            dp_image a, b;
            if ((st = dp_image_resize(ctx, img, h, w, &a)) != DP_OK) return st;
            st = dp_image_resize(ctx, &a, H, W, &b);
            dp_image_free(ctx, &a);
            if (st != DP_OK) return st;
            dp_image_free(ctx, img);
            *img = b;
        }
    }
    if (dp_rng_uniform(rng) < o->p_blur && (st = dp_gaussian_blur(ctx, img, unif(rng, 0.3f, o->blur_max))) != DP_OK)
        return st;
    if (dp_rng_uniform(rng) < o->p_flip)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++) {
                float *row = img->data + (size_t)c * plane + (size_t)y * W;
                for (int x = 0; x < W / 2; x++) {
                    float t = row[x];
                    row[x] = row[W - 1 - x];
                    row[W - 1 - x] = t;
                }
            }
    if (dp_rng_uniform(rng) < o->p_jitter) {
        float br = unif(rng, -0.15f, 0.15f), ct = unif(rng, 0.8f, 1.2f), sat = unif(rng, 0.7f, 1.3f);
        for (size_t i = 0; i < plane; i++) {
            float v[3], gy;
            for (int c = 0; c < C; c++) v[c] = img->data[(size_t)c * plane + i];
            gy = C == 3 ? 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2] : v[0];
            for (int c = 0; c < C; c++) {
                float t = C == 3 ? gy + sat * (v[c] - gy) : v[c];
                t = (t - 0.5f) * ct + 0.5f + br;
                img->data[(size_t)c * plane + i] = t < 0 ? 0 : t > 1 ? 1 : t;
            }
        }
    }
    if (dp_rng_uniform(rng) < o->p_cutout) {
        int s = (int)lroundf(unif(rng, 0.15f, 0.35f) * (float)(H < W ? H : W));
        if (s < 1) s = 1;
        int y0 = (int)dp_rng_below(rng, (uint32_t)(H - s + 1)), x0 = (int)dp_rng_below(rng, (uint32_t)(W - s + 1));
        for (int c = 0; c < C; c++)
            for (int y = y0; y < y0 + s; y++)
                for (int x = x0; x < x0 + s; x++) img->data[(size_t)c * plane + (size_t)y * W + x] = 0.5f;
    }
    if (dp_rng_uniform(rng) < o->p_noise && o->noise_max > 0) { /* sensor noise, the same sigma in every channel */
        float sd = unif(rng, 0.0f, o->noise_max);
        for (size_t i = 0; i < (size_t)C * plane; i++) {
            float t = img->data[i] + sd * dp_rng_normal(rng);
            img->data[i] = t < 0 ? 0 : t > 1 ? 1 : t;
        }
    }
    if (dp_rng_uniform(rng) < o->p_jpeg) {
        int q = o->jpeg_lo + (int)dp_rng_below(rng, (uint32_t)(o->jpeg_hi - o->jpeg_lo + 1));
        if ((st = dp_jpeg_recompress(ctx, img, q)) != DP_OK) return st;
    }
    return DP_OK;
}

/* ------------------------------------------------------------ self-blended images
 * Shiohara & Yamasaki, CVPR 2022, on a work crop: the face blended with a
 * slightly changed copy of ITSELF inside a soft face-region mask. No second
 * identity is involved; what the detector learns is the blending boundary and
 * the colour/sharpness mismatch inside it. */
static float bilinear(const float *p, int H, int W, float y, float x) {
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x > W - 1) x = (float)(W - 1);
    if (y > H - 1) y = (float)(H - 1);
    int x0 = (int)x, y0 = (int)y, x1 = x0 + 1 < W ? x0 + 1 : x0, y1 = y0 + 1 < H ? y0 + 1 : y0;
    float fx = x - (float)x0, fy = y - (float)y0;
    float a = p[(size_t)y0 * W + x0] + fx * (p[(size_t)y0 * W + x1] - p[(size_t)y0 * W + x0]);
    float b = p[(size_t)y1 * W + x0] + fx * (p[(size_t)y1 * W + x1] - p[(size_t)y1 * W + x0]);
    return a + fy * (b - a);
}

dp_status dp_self_blend(dp_ctx *ctx, dp_image *img, dp_rng *rng) { return dp_self_blend_ex(ctx, img, rng, 0); }

dp_status dp_self_blend_ex(dp_ctx *ctx, dp_image *img, dp_rng *rng, int no_blur) {
    if (!img || !img->data || !rng) return dp_error(ctx, DP_ERR_NULL, "dp_self_blend: NULL argument");
    int H = img->height, W = img->width, C = img->channels;
    if (H < 8 || W < 8) return dp_error(ctx, DP_ERR_ARG, "dp_self_blend: %dx%d is too small", W, H);
    size_t plane = (size_t)H * W;
    dp_image src = {0}, mask = {0};
    dp_status st = dp_image_alloc(ctx, C, H, W, &src);
    if (st == DP_OK) st = dp_image_alloc(ctx, 1, H, W, &mask);
    if (st != DP_OK) goto out;
    /* the source: the same face, scaled by 0.94..1.06 about the centre and
     * shifted by up to 4 % of the side (bilinear, edges repeated) */
    float sc = unif(rng, 0.94f, 1.06f), dx = unif(rng, -0.04f, 0.04f) * W, dy = unif(rng, -0.04f, 0.04f) * H;
    float cx = 0.5f * (W - 1), cy = 0.5f * (H - 1);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                src.data[c * plane + (size_t)y * W + x] =
                    bilinear(img->data + c * plane, H, W, cy + ((float)y - cy - dy) / sc, cx + ((float)x - cx - dx) / sc);
    /* sharpness: blur (sigma 0.4..1.2) or unsharp masking (amount 0.3..1) */
    float u = dp_rng_uniform(rng);
    if (u < 0.35f) {
        if (!no_blur && (st = dp_gaussian_blur(ctx, &src, unif(rng, 0.4f, 1.2f))) != DP_OK) goto out;
    } else if (u < 0.7f) {
        dp_image bl = {0};
        if ((st = dp_image_alloc(ctx, C, H, W, &bl)) != DP_OK) goto out;
        memcpy(bl.data, src.data, sizeof(float) * plane * C);
        if ((st = dp_gaussian_blur(ctx, &bl, 1.0f)) == DP_OK) {
            float amt = unif(rng, 0.3f, 1.0f);
            for (size_t i = 0; i < plane * C; i++) {
                float t = src.data[i] + amt * (src.data[i] - bl.data[i]);
                src.data[i] = t < 0 ? 0 : t > 1 ? 1 : t;
            }
        }
        dp_image_free(ctx, &bl);
        if (st != DP_OK) goto out;
    }
    /* colour: a shift per channel (±0.06), brightness ±0.08, contrast ×0.9..1.1 */
    {
        float sh[3], br = unif(rng, -0.08f, 0.08f), ct = unif(rng, 0.9f, 1.1f);
        for (int c = 0; c < C && c < 3; c++) sh[c] = unif(rng, -0.06f, 0.06f);
        for (int c = 0; c < C; c++)
            for (size_t i = 0; i < plane; i++) {
                float t = (src.data[c * plane + i] - 0.5f) * ct + 0.5f + br + sh[c < 3 ? c : 0];
                src.data[c * plane + i] = t < 0 ? 0 : t > 1 ? 1 : t;
            }
    }
    /* the mask: an ellipse over the inner face (the work crop is centred on
     * it), jittered, its edge softened by a blur of 1..4 % of the side... */
    {
        float ex = cx + unif(rng, -0.04f, 0.04f) * W, ey = cy + unif(rng, 0.0f, 0.06f) * H;
        float rx = unif(rng, 0.26f, 0.40f) * W, ry = unif(rng, 0.32f, 0.46f) * H;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float a = ((float)x - ex) / rx, b = ((float)y - ey) / ry;
                mask.data[(size_t)y * W + x] = a * a + b * b <= 1.0f ? 1.0f : 0.0f;
            }
        if ((st = dp_gaussian_blur(ctx, &mask, unif(rng, 0.01f, 0.05f) * (float)W)) != DP_OK) goto out;
    }
    /* ... and scaled by a blend ratio: 1 (half the time) or 0.25..1 */
    float ratio = dp_rng_uniform(rng) < 0.5f ? 1.0f : unif(rng, 0.25f, 1.0f);
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < plane; i++) {
            float m = ratio * mask.data[i];
            img->data[c * plane + i] = m * src.data[c * plane + i] + (1 - m) * img->data[c * plane + i];
        }
out:
    dp_image_free(ctx, &src);
    dp_image_free(ctx, &mask);
    return st;
}
