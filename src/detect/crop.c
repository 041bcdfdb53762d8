/* The crop policy: one square around the face, one resampling path
 * (dp_image_resize), one working resolution for every source. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "doppel/detect.h"

void dp_crop_policy_default(dp_crop_policy *p) {
    p->inner = DP_CROP_INNER;
    p->margin = DP_CROP_MARGIN;
    p->shift = DP_CROP_SHIFT;
    p->work = DP_CROP_WORK;
    p->size = DP_CROP_SIZE;
    p->norm = DP_CROP_NORM_NONE;
}

dp_status dp_crop_policy_format(const dp_crop_policy *p, char *buf, size_t n) {
    if (!p || !buf) return DP_ERR_NULL;
    int k = snprintf(buf, n, "inner=%g,margin=%g,shift=%g,work=%d,size=%d", (double)p->inner, (double)p->margin,
                     (double)p->shift, p->work, p->size);
    if (k >= 0 && (size_t)k < n && p->norm) k += snprintf(buf + k, n - (size_t)k, ",norm=%d", p->norm);
    return k < 0 || (size_t)k >= n ? DP_ERR_ARG : DP_OK;
}

static int policy_ok(const dp_crop_policy *p) {
    return p->inner > 0.1f && p->inner <= 3.0f && p->margin >= 0 && p->margin <= 1.0f && p->shift >= -0.5f &&
           p->shift <= 0.5f && p->work >= 8 && p->work <= 2 * DP_SPECTRAL_MAX && p->work % 2 == 0 && p->size >= 8 &&
           p->size <= 1024 && p->norm >= DP_CROP_NORM_NONE && p->norm <= DP_CROP_NORM_RESIDUAL;
}

dp_status dp_crop_policy_parse(dp_ctx *ctx, const char *s, dp_crop_policy *p) {
    if (!s || !p) return dp_error(ctx, DP_ERR_NULL, "dp_crop_policy_parse: NULL argument");
    dp_crop_policy r;
    dp_crop_policy_default(&r);
    int seen = 0;
    const char *q = s;
    while (*q) {
        char key[16];
        size_t k = 0;
        while (*q && *q != '=' && k + 1 < sizeof key) key[k++] = *q++;
        key[k] = 0;
        if (*q != '=') return dp_error(ctx, DP_ERR_FORMAT, "crop policy '%s': expected key=value", s);
        q++;
        char *end;
        double v = strtod(q, &end);
        if (end == q) return dp_error(ctx, DP_ERR_FORMAT, "crop policy '%s': '%s' has no number", s, key);
        q = end;
        /* work and size become ints: a value outside int's range (1e300, nan) would be undefined to convert */
        if ((!strcmp(key, "work") || !strcmp(key, "size") || !strcmp(key, "norm")) && !(v >= 0 && v <= 65536))
            return dp_error(ctx, DP_ERR_FORMAT, "crop policy '%s': %s is out of range", s, key);
        if (!strcmp(key, "inner")) r.inner = (float)v, seen |= 1;
        else if (!strcmp(key, "margin")) r.margin = (float)v, seen |= 2;
        else if (!strcmp(key, "shift")) r.shift = (float)v, seen |= 4;
        else if (!strcmp(key, "work")) r.work = (int)v, seen |= 8;
        else if (!strcmp(key, "size")) r.size = (int)v, seen |= 16;
        else if (!strcmp(key, "norm") && v == (int)v) r.norm = (int)v; /* optional: absent = 0 */
        else return dp_error(ctx, DP_ERR_FORMAT, "crop policy '%s': unknown key '%s'", s, key);
        if (*q == ',') q++;
        else if (*q) return dp_error(ctx, DP_ERR_FORMAT, "crop policy '%s': expected ',' after %s", s, key);
    }
    if (seen != 31) return dp_error(ctx, DP_ERR_FORMAT, "crop policy '%s': needs inner, margin, shift, work and size", s);
    if (!policy_ok(&r)) return dp_error(ctx, DP_ERR_FORMAT, "crop policy '%s': a value is out of range", s);
    *p = r;
    return DP_OK;
}

void dp_crop_square(const dp_crop_policy *p, const dp_face_box *f, int *x, int *y, int *side) {
    double m = f->w > f->h ? f->w : f->h;
    double s = m * p->inner * (1.0 + 2.0 * p->margin);
    double cx = f->x + f->w * 0.5, cy = f->y + f->h * 0.5 + p->shift * f->h;
    int si = (int)lround(s);
    if (si < 1) si = 1;
    *side = si;
    *x = (int)lround(cx - si * 0.5);
    *y = (int)lround(cy - si * 0.5);
}

void dp_crop_fallback_box(int width, int height, dp_face_box *box) {
    int m = width < height ? width : height;
    int s = (int)lround(0.9 * m);
    if (s < 1) s = 1;
    box->x = (width - s) / 2;
    box->y = (height - s) / 2;
    box->w = box->h = s;
    box->neighbors = 0;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

dp_status dp_crop_face(dp_ctx *ctx, const dp_image *img, const dp_face_box *face, const dp_crop_policy *p,
                       dp_image *out) {
    if (!img || !img->data || !face || !p || !out) return dp_error(ctx, DP_ERR_NULL, "dp_crop_face: NULL argument");
    if (!policy_ok(p)) return dp_error(ctx, DP_ERR_ARG, "dp_crop_face: the crop policy is out of range");
    if (face->w <= 0 || face->h <= 0) return dp_error(ctx, DP_ERR_ARG, "dp_crop_face: empty face box");
    /* a box from a file (a face cache) may say anything: within 2^24 px no sum below overflows an int */
    if (face->w > 1 << 24 || face->h > 1 << 24 || face->x < -(1 << 24) || face->x > 1 << 24 ||
        face->y < -(1 << 24) || face->y > 1 << 24)
        return dp_error(ctx, DP_ERR_ARG, "dp_crop_face: face box %d,%d %dx%d is out of range (2^24 px)", face->x, face->y,
                        face->w, face->h);
    int x0, y0, s;
    dp_crop_square(p, face, &x0, &y0, &s);
    if (s > 16384) return dp_error(ctx, DP_ERR_ARG, "dp_crop_face: crop side %d is too large", s);
    dp_image sq = {0};
    dp_status st = dp_image_alloc(ctx, 3, s, s, &sq);
    if (st != DP_OK) return st;
    int C = img->channels, H = img->height, W = img->width;
    size_t plane = (size_t)H * W, splane = (size_t)s * s;
    for (int c = 0; c < 3; c++) {
        const float *src = img->data + (C == 3 ? (size_t)c * plane : 0);
        float *d = sq.data + (size_t)c * splane;
        for (int y = 0; y < s; y++) {
            const float *row = src + (size_t)clampi(y0 + y, 0, H - 1) * W;
            for (int x = 0; x < s; x++) d[(size_t)y * s + x] = row[clampi(x0 + x, 0, W - 1)];
        }
    }
    st = dp_image_resize(ctx, &sq, p->work, p->work, out);
    dp_image_free(ctx, &sq);
    return st;
}

/* Mean 0.5, deviation 0.2 per plane (eps: a flat crop stays flat, not noise blown up). */
static void standardise(float *v, size_t n, const float *src) {
    double m = 0, q = 0;
    for (size_t i = 0; i < n; i++) m += src[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++) q += (src[i] - m) * (src[i] - m);
    double k = 0.2 / (sqrt(q / (double)n) + 0.02);
    for (size_t i = 0; i < n; i++) v[i] = (float)(0.5 + (src[i] - m) * k);
}

/* RESIDUAL: the grey work crop minus its Gaussian blur (sigma 1 px), enlarged,
 * standardised, in every channel. */
static dp_status residual_input(dp_ctx *ctx, const dp_image *work, const dp_crop_policy *p, dp_image *out) {
    dp_image g = {0}, b = {0};
    size_t n = (size_t)work->width * work->height;
    dp_status st = dp_image_alloc(ctx, 1, work->height, work->width, &g);
    if (st == DP_OK) st = dp_image_alloc(ctx, 1, work->height, work->width, &b);
    if (st == DP_OK) {
        const float *R = work->data, *G = work->channels == 3 ? R + n : R, *B = work->channels == 3 ? R + 2 * n : R;
        for (size_t i = 0; i < n; i++) b.data[i] = g.data[i] = 0.299f * R[i] + 0.587f * G[i] + 0.114f * B[i];
        st = dp_gaussian_blur(ctx, &b, 1.0f);
    }
    if (st == DP_OK) {
        for (size_t i = 0; i < n; i++) g.data[i] -= b.data[i];
        dp_image big = {0};
        if ((st = dp_image_resize(ctx, &g, p->size, p->size, &big)) == DP_OK &&
            (st = dp_image_alloc(ctx, 3, p->size, p->size, out)) == DP_OK) {
            size_t m = (size_t)p->size * p->size;
            standardise(out->data, m, big.data);
            for (int c = 1; c < 3; c++) memcpy(out->data + (size_t)c * m, out->data, sizeof(float) * m);
        }
        dp_image_free(ctx, &big);
    }
    dp_image_free(ctx, &g);
    dp_image_free(ctx, &b);
    return st;
}

dp_status dp_crop_to_input(dp_ctx *ctx, const dp_image *work, const dp_crop_policy *p, dp_image *out) {
    if (!work || !p || !out) return dp_error(ctx, DP_ERR_NULL, "dp_crop_to_input: NULL argument");
    if (p->norm < DP_CROP_NORM_NONE || p->norm > DP_CROP_NORM_RESIDUAL)
        return dp_error(ctx, DP_ERR_ARG, "dp_crop_to_input: unknown normalisation %d", p->norm);
    if (p->norm == DP_CROP_NORM_RESIDUAL) return residual_input(ctx, work, p, out);
    dp_status st = dp_image_resize(ctx, work, p->size, p->size, out);
    if (st != DP_OK || p->norm == DP_CROP_NORM_NONE) return st;
    size_t n = (size_t)out->width * out->height;
    float *d = out->data;
    if (p->norm == DP_CROP_NORM_CHANNEL || out->channels == 1) {
        for (int c = 0; c < out->channels; c++) standardise(d + (size_t)c * n, n, d + (size_t)c * n);
        return DP_OK;
    }
    /* GREY: luminance into the first plane, standardised, copied to the others */
    for (size_t i = 0; i < n; i++) d[i] = 0.299f * d[i] + 0.587f * d[n + i] + 0.114f * d[2 * n + i];
    standardise(d, n, d);
    for (int c = 1; c < out->channels; c++) memcpy(d + (size_t)c * n, d, sizeof(float) * n);
    return DP_OK;
}
