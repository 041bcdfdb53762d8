/* Explanations: where the detector looked. The per-face occlusion maps
 * (dp_detector_occlusion) put back onto the image, and the explained
 * picture: the image with the heat map, the face boxes and p_fake bars. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "detect/draw.h"
#include "doppel/detect.h"

void dp_draw_put(dp_image *im, int x, int y, float r, float g, float b, float a) {
    if (x < 0 || y < 0 || x >= im->width || y >= im->height || im->channels != 3) return;
    size_t pl = (size_t)im->width * im->height, i = (size_t)y * im->width + x;
    float c[3] = {r, g, b};
    for (int k = 0; k < 3; k++) im->data[k * pl + i] = (1 - a) * im->data[k * pl + i] + a * c[k];
}

void dp_draw_line(dp_image *im, double x0, double y0, double x1, double y1, float r, float g, float b, int thick) {
    double dx = x1 - x0, dy = y1 - y0, len = sqrt(dx * dx + dy * dy);
    int steps = (int)(len * 2) + 1;
    for (int i = 0; i <= steps; i++) {
        double t = (double)i / steps;
        int x = (int)lround(x0 + t * dx), y = (int)lround(y0 + t * dy);
        for (int a = -thick / 2; a <= thick / 2; a++)
            for (int c = -thick / 2; c <= thick / 2; c++) dp_draw_put(im, x + a, y + c, r, g, b, 1);
    }
}

void dp_draw_rect(dp_image *im, int x, int y, int w, int h, float r, float g, float b, int thick) {
    dp_draw_line(im, x, y, x + w, y, r, g, b, thick);
    dp_draw_line(im, x + w, y, x + w, y + h, r, g, b, thick);
    dp_draw_line(im, x + w, y + h, x, y + h, r, g, b, thick);
    dp_draw_line(im, x, y + h, x, y, r, g, b, thick);
}

dp_status dp_detect_heatmap(dp_detector *d, const dp_image *img, const dp_detect_result *r, dp_image *heat) {
    return dp_detect_heatmap_ex(d, img, r, DP_EXPLAIN_OCCLUSION, heat);
}

dp_status dp_detect_heatmap_ex(dp_detector *d, const dp_image *img, const dp_detect_result *r, dp_explain_method method,
                               dp_image *heat) {
    dp_ctx *ctx = dp_detector_ctx(d);
    if (!d || !img || !img->data || !r || !heat) return dp_error(ctx, DP_ERR_NULL, "dp_detect_heatmap: NULL argument");
    if (r->n_scored < 0 || r->n_scored > DP_DETECT_MAX_FACES)
        return dp_error(ctx, DP_ERR_ARG, "dp_detect_heatmap: the result has %d faces", r->n_scored);
    const dp_crop_policy *pol = &dp_detector_get_params(d)->crop;
    int W = pol->work, H = img->height, IW = img->width;
    dp_status s = dp_image_alloc(ctx, 1, H, IW, heat);
    if (s != DP_OK) return s;
    memset(heat->data, 0, sizeof(float) * (size_t)H * IW);
    float *m = malloc(sizeof(float) * (size_t)W * W);
    if (!m) s = dp_error(ctx, DP_ERR_NOMEM, "dp_detect_heatmap: out of memory");
    for (int i = 0; i < r->n_scored && s == DP_OK; i++) {
        const dp_detect_face *f = &r->faces[i];
        dp_image crop = {0}, hm = {0}, hs = {0};
        if ((s = dp_crop_face(ctx, img, &f->box, pol, &crop)) != DP_OK) break;
        s = method == DP_EXPLAIN_GRADCAM ? dp_detector_gradcam(d, &crop, m)
                                         : dp_detector_occlusion(d, &crop, W / 4 > 2 ? W / 4 : 2, m);
        dp_image_free(ctx, &crop);
        if (s != DP_OK) break;
        float mx = 0;
        for (int k = 0; k < W * W; k++) mx = m[k] > mx ? m[k] : mx;
        if (mx <= 0) continue; /* hiding nothing lowered p_fake: no heat */
        int x0, y0, side;
        dp_crop_square(pol, &f->box, &x0, &y0, &side);
        if (side > 16384) continue;
        if ((s = dp_image_alloc(ctx, 1, W, W, &hm)) != DP_OK) break;
        for (int k = 0; k < W * W; k++) hm.data[k] = m[k] / mx;
        s = dp_image_resize(ctx, &hm, side, side, &hs);
        dp_image_free(ctx, &hm);
        if (s != DP_OK) break;
        for (int y = 0; y < side; y++) {
            int iy = y0 + y;
            if (iy < 0 || iy >= H) continue;
            for (int x = 0; x < side; x++) {
                int ix = x0 + x;
                if (ix < 0 || ix >= IW) continue;
                float a = hs.data[(size_t)y * side + x];
                a = a < 0 ? 0 : a > 1 ? 1 : a;
                float *h = &heat->data[(size_t)iy * IW + ix];
                if (a > *h) *h = a;
            }
        }
        dp_image_free(ctx, &hs);
    }
    free(m);
    if (s != DP_OK) dp_image_free(ctx, heat);
    return s;
}

static void verdict_colour(dp_verdict v, float rgb[3]) {
    rgb[0] = v == DP_VERDICT_REAL ? 0.1f : 1.0f;
    rgb[1] = v == DP_VERDICT_FAKE ? 0.1f : v == DP_VERDICT_REAL ? 0.9f : 0.8f;
    rgb[2] = 0.1f;
}

dp_status dp_detect_explain(dp_detector *d, const dp_image *img, const dp_detect_result *r, dp_image *out) {
    return dp_detect_explain_ex(d, img, r, DP_EXPLAIN_OCCLUSION, out);
}

dp_status dp_detect_explain_ex(dp_detector *d, const dp_image *img, const dp_detect_result *r, dp_explain_method method,
                               dp_image *out) {
    dp_ctx *ctx = dp_detector_ctx(d);
    if (!d || !img || !img->data || !r || !out) return dp_error(ctx, DP_ERR_NULL, "dp_detect_explain: NULL argument");
    dp_image heat = {0};
    dp_status s = dp_detect_heatmap_ex(d, img, r, method, &heat);
    if (s != DP_OK) return s;
    if ((s = dp_image_alloc(ctx, 3, img->height, img->width, out)) != DP_OK) {
        dp_image_free(ctx, &heat);
        return s;
    }
    size_t pl = (size_t)img->width * img->height;
    for (int c = 0; c < 3; c++)
        memcpy(out->data + c * pl, img->data + (img->channels == 3 ? c * pl : 0), sizeof(float) * pl);
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++) {
            float a = heat.data[(size_t)y * img->width + x];
            if (a > 0.05f) dp_draw_put(out, x, y, 1, 0.1f, 0, 0.6f * a);
        }
    dp_image_free(ctx, &heat);
    int th = img->width / 200 + 2;
    for (int i = 0; i < r->n_scored; i++) {
        const dp_detect_face *f = &r->faces[i];
        float c[3];
        verdict_colour(f->verdict, c);
        dp_draw_rect(out, f->box.x, f->box.y, f->box.w, f->box.h, c[0], c[1], c[2], th);
        int bw = (int)lround(f->box.w * (double)(f->p_fake < 0 ? 0 : f->p_fake > 1 ? 1 : f->p_fake));
        int by = f->box.y - 3 * th >= 0 ? f->box.y - 3 * th : f->box.y + th; /* above the box, or inside at the top */
        for (int k = 0; k < th * 2; k++) dp_draw_line(out, f->box.x, by + k, f->box.x + bw, by + k, c[0], c[1], c[2], 1);
    }
    return DP_OK;
}
