/* RUN/report.html: one self-contained page for a GAN run (no network; images
 * inlined as base64 PNG data URIs): the D and G loss curves from
 * RUN/metrics.csv (drawn here into a PNG), the sample grids of RUN/samples/
 * over time, and the metrics of the last `doppel gan eval` (RUN/eval.json).
 * Numbers (axis ranges, final values) are in the HTML, so the plot needs no
 * font. */
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/internal.h"
#include "core/parse.h"
#include "doppel/gan.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The bytes of a file as base64 into f; 0 if it cannot be read. */
static int base64_file(const char *path, FILE *f) {
    FILE *in = fopen(path, "rb");
    if (!in) return 0;
    unsigned char b[3 * 1024];
    size_t k;
    char out[4 * 1024];
    while ((k = fread(b, 1, sizeof b, in)) > 0) {
        size_t o = 0;
        for (size_t i = 0; i < k; i += 3) {
            size_t m = k - i < 3 ? k - i : 3;
            unsigned v = (unsigned)b[i] << 16 | (m > 1 ? (unsigned)b[i + 1] << 8 : 0) | (m > 2 ? b[i + 2] : 0);
            out[o++] = B64[v >> 18 & 63];
            out[o++] = B64[v >> 12 & 63];
            out[o++] = m > 1 ? B64[v >> 6 & 63] : '=';
            out[o++] = m > 2 ? B64[v & 63] : '=';
        }
        fwrite(out, 1, o, f);
    }
    fclose(in);
    return 1;
}

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* ------------------------------------------------------------ metrics.csv */
typedef struct curve {
    int64_t n, cap;
    double *step, *d, *g;
} curve;

static int read_csv(const char *path, curve *c) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[2048];
    int col_step = -1, col_d = -1, col_g = -1;
    if (fgets(line, sizeof line, f)) {
        int i = 0;
        for (char *t = strtok(line, ",\r\n"); t; t = strtok(NULL, ",\r\n"), i++) {
            if (!strcmp(t, "step")) col_step = i;
            else if (!strcmp(t, "loss_d")) col_d = i;
            else if (!strcmp(t, "loss_g")) col_g = i;
        }
    }
    if (col_step < 0 || col_d < 0 || col_g < 0) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        double v[3] = {NAN, NAN, NAN};
        int i = 0;
        char *s = line;
        line[strcspn(line, "\r\n")] = 0;
        for (;;) {
            char *e = strchr(s, ',');
            if (e) *e = 0;
            /* a field that is not a number is a gap in the curve (the row is skipped without a step) */
            int j = i == col_step ? 0 : i == col_d ? 1 : i == col_g ? 2 : -1;
            if (j >= 0 && !dp_parse_f64(s, -DBL_MAX, DBL_MAX, &v[j])) v[j] = NAN;
            if (!e) break;
            s = e + 1;
            i++;
        }
        if (!isfinite(v[0])) continue;
        if (c->n == c->cap) {
            int64_t cap = c->cap ? 2 * c->cap : 1024;
            double *a = realloc(c->step, sizeof(double) * (size_t)cap), *b = a ? realloc(c->d, sizeof(double) * (size_t)cap) : NULL;
            if (a) c->step = a;
            if (b) c->d = b;
            double *g = b ? realloc(c->g, sizeof(double) * (size_t)cap) : NULL;
            if (!g) break;
            c->g = g;
            c->cap = cap;
        }
        c->step[c->n] = v[0], c->d[c->n] = v[1], c->g[c->n] = v[2];
        c->n++;
    }
    fclose(f);
    return c->n > 0;
}

/* ------------------------------------------------------------ drawing */
#define PW 720
#define PH 320
#define PML 10
#define PMR 10
#define PMT 10
#define PMB 10

static void put(dp_image *im, int x, int y, const float *rgb) {
    if (x < 0 || y < 0 || x >= im->width || y >= im->height) return;
    size_t pl = (size_t)im->width * im->height, i = (size_t)y * im->width + x;
    for (int k = 0; k < 3; k++) im->data[k * pl + i] = rgb[k];
}
static void line(dp_image *im, double x0, double y0, double x1, double y1, const float *rgb, int thick) {
    double dx = x1 - x0, dy = y1 - y0, len = sqrt(dx * dx + dy * dy);
    int steps = (int)(len * 2) + 1;
    for (int i = 0; i <= steps; i++) {
        double t = (double)i / steps;
        int x = (int)lround(x0 + t * dx), y = (int)lround(y0 + t * dy);
        for (int a = 0; a < thick; a++)
            for (int b = 0; b < thick; b++) put(im, x + a, y + b, rgb);
    }
}

/* Running mean over a window of w points (centred), into out. */
static void smooth(const double *v, int64_t n, int64_t w, double *out) {
    double s = 0;
    int64_t cnt = 0, lo = 0, hi = 0; /* window [lo, hi) */
    for (int64_t i = 0; i < n; i++) {
        int64_t a = i - w / 2 < 0 ? 0 : i - w / 2, b = i + w / 2 + 1 > n ? n : i + w / 2 + 1;
        while (hi < b) {
            if (isfinite(v[hi])) s += v[hi], cnt++;
            hi++;
        }
        while (lo < a) {
            if (isfinite(v[lo])) s -= v[lo], cnt--;
            lo++;
        }
        out[i] = cnt ? s / (double)cnt : NAN;
    }
}

/* The loss plot: x = step, y = loss in [ylo, yhi]; light raw curves, dark running means. */
static dp_status plot_losses(dp_ctx *ctx, const curve *c, double ylo, double yhi, int64_t win, dp_image *im) {
    dp_status s = dp_image_alloc(ctx, 3, PH, PW, im);
    if (s != DP_OK) return s;
    for (size_t i = 0; i < (size_t)3 * PW * PH; i++) im->data[i] = 1;
    double x0 = c->step[0], x1 = c->step[c->n - 1] > x0 ? c->step[c->n - 1] : x0 + 1;
    const float grid[3] = {0.88f, 0.88f, 0.88f}, axis[3] = {0, 0, 0};
    const float dl[3] = {0.65f, 0.75f, 0.95f}, dd[3] = {0.05f, 0.25f, 0.8f};
    const float gl[3] = {0.98f, 0.78f, 0.6f}, gd[3] = {0.85f, 0.35f, 0.0f};
#define X(v) (PML + ((v) - x0) / (x1 - x0) * (PW - PML - PMR - 1))
#define Y(v) (PH - 1 - PMB - ((v) - ylo) / (yhi - ylo) * (PH - PMT - PMB - 1))
    for (int k = 0; k <= 10; k++) {
        double yy = ylo + (yhi - ylo) * k / 10, xx = x0 + (x1 - x0) * k / 10;
        line(im, X(x0), Y(yy), X(x1), Y(yy), grid, 1);
        line(im, X(xx), Y(ylo), X(xx), Y(yhi), grid, 1);
    }
    line(im, X(x0), Y(ylo), X(x1), Y(ylo), axis, 1);
    line(im, X(x0), Y(ylo), X(x0), Y(yhi), axis, 1);
    double *sm = malloc(sizeof(double) * (size_t)c->n * 2);
    if (!sm) return dp_error(ctx, DP_ERR_NOMEM, "report: out of memory");
    smooth(c->d, c->n, win, sm);
    smooth(c->g, c->n, win, sm + c->n);
    for (int pass = 0; pass < 2; pass++)
        for (int which = 0; which < 2; which++) {
            const double *v = pass == 0 ? (which ? c->g : c->d) : sm + (which ? c->n : 0);
            const float *col = pass == 0 ? (which ? gl : dl) : (which ? gd : dd);
            for (int64_t i = 1; i < c->n; i++) {
                if (!isfinite(v[i - 1]) || !isfinite(v[i])) continue;
                double a = fmin(fmax(v[i - 1], ylo), yhi), b = fmin(fmax(v[i], ylo), yhi);
                line(im, X(c->step[i - 1]), Y(a), X(c->step[i]), Y(b), col, pass ? 2 : 1);
            }
        }
#undef X
#undef Y
    free(sm);
    return DP_OK;
}

/* ------------------------------------------------------------ samples/ */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list_grids(const char *dir, char ***out) {
    DIR *d = opendir(dir);
    *out = NULL;
    if (!d) return 0;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t L = strlen(e->d_name);
        if (strncmp(e->d_name, "step_", 5) || L < 9 || strcmp(e->d_name + L - 4, ".png")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, sizeof(char *) * (size_t)cap);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof(char *), cmp_str);
    *out = names;
    return n;
}

/* ------------------------------------------------------------ eval.json */
static void eval_section(FILE *f, const char *path) {
    fputs("<h2 id=metrics>Quality metrics</h2>\n", f);
    FILE *in = fopen(path, "rb");
    char *buf = NULL;
    long len = 0;
    if (in && fseek(in, 0, SEEK_END) == 0 && (len = ftell(in)) > 0 && len < (1 << 20) && fseek(in, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, in) == (size_t)len)
        buf[len] = 0;
    else {
        free(buf);
        buf = NULL;
    }
    if (in) fclose(in);
    cJSON *j = buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    if (!j || !cJSON_IsObject(j)) {
        fputs("<p>No metrics yet: run <code>doppel gan eval --model RUN --features CLASSIFIER.safetensors</code> "
              "(it writes RUN/eval.json and refreshes this page).</p>\n", f);
        cJSON_Delete(j);
        return;
    }
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(j, "fid_name");
    const char *fid_name = cJSON_IsString(fn) && fn->valuestring[0] ? fn->valuestring : "FID-FMNIST-doppelcnn";
    fputs("<p>From the last <code>doppel gan eval</code> (RUN/eval.json). <b>", f);
    html_text(f, fid_name);
    fputs("</b> is a Fréchet "
          "distance on the features of a classifier doppel trained itself, <b>not</b> Inception FID: compare it only "
          "with the same feature model (real-vs-real and untrained-generator calibrations are in docs/gan.md). "
          "Spectral distance: mean squared difference of the mean azimuthal log power spectra. Precision/recall: "
          "Kynkäänniemi et al. 2019, k-NN manifolds in the same feature space.</p>\n<table>\n",
          f);
    for (cJSON *it = j->child; it; it = it->next) {
        if (!it->string) continue;
        fputs("<tr><th>", f);
        if (!strcmp(it->string, "fid_doppelcnn")) {
            html_text(f, fid_name);
            fputs(" (fid_doppelcnn)", f);
        } else {
            html_text(f, it->string);
        }
        fputs("</th><td>", f);
        if (cJSON_IsNumber(it)) fprintf(f, "%.6g", it->valuedouble);
        else if (cJSON_IsString(it)) html_text(f, it->valuestring);
        else if (cJSON_IsNull(it)) fputs("—", f);
        else if (cJSON_IsBool(it)) fputs(cJSON_IsTrue(it) ? "true" : "false", f);
        else {
            char *p = cJSON_PrintUnformatted(it);
            if (p) html_text(f, p);
            free(p);
        }
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
    cJSON_Delete(j);
}

/* ------------------------------------------------------------ the page */
dp_status dp_gan_report(dp_ctx *ctx, const char *run_dir, char *path, size_t path_size) {
    if (!run_dir) return dp_error(ctx, DP_ERR_NULL, "dp_gan_report: NULL run folder");
    size_t L = strlen(run_dir) + 64;
    char *out = malloc(L), *tmp = malloc(L), *csv = malloc(L), *sdir = malloc(L), *ev = malloc(L), *plot = malloc(L);
    char *gp = NULL;
    char **grids = NULL;
    int ngrids = 0;
    curve c = {0};
    dp_image im = {0};
    FILE *f = NULL;
    dp_status s = DP_OK;
    if (!out || !tmp || !csv || !sdir || !ev || !plot) {
        s = dp_error(ctx, DP_ERR_NOMEM, "dp_gan_report: out of memory");
        goto done;
    }
    snprintf(out, L, "%s/report.html", run_dir);
    snprintf(tmp, L, "%s/report.html.tmp", run_dir);
    snprintf(csv, L, "%s/metrics.csv", run_dir);
    snprintf(sdir, L, "%s/samples", run_dir);
    snprintf(ev, L, "%s/eval.json", run_dir);
    snprintf(plot, L, "%s/.report-losses.png", run_dir);
    if (!(f = fopen(tmp, "w"))) {
        s = dp_error(ctx, DP_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    fputs("<!doctype html><html><head><meta charset=utf-8><title>doppel GAN run</title><style>"
          "body{font-family:sans-serif;max-width:62em;margin:2em auto;padding:0 1em}td,th{padding:2px 8px;text-align:left}"
          "figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:90%;color:#444}img{image-rendering:pixelated}"
          ".d{color:#0d40cc}.g{color:#d95900}</style></head><body>\n<h1>doppel GAN run: ",
          f);
    html_text(f, run_dir);
    fputs("</h1>\n<p>Every image on this page was generated by doppel and is labelled as AI-generated (metadata and "
          "invisible watermark). Sections: <a href=#losses>losses</a> · <a href=#samples>samples over time</a> · "
          "<a href=#metrics>quality metrics</a>.</p>\n<h2 id=losses>Losses</h2>\n",
          f);
    if (!read_csv(csv, &c)) {
        fputs("<p>No metrics.csv (or no rows) in this run folder.</p>\n", f);
    } else {
        /* y range: the 1st..99th percentile of both curves, widened a little, so a spike does not flatten the plot */
        double *all = malloc(sizeof(double) * (size_t)c.n * 2);
        int64_t m = 0;
        for (int64_t i = 0; all && i < c.n; i++) {
            if (isfinite(c.d[i])) all[m++] = c.d[i];
            if (isfinite(c.g[i])) all[m++] = c.g[i];
        }
        double ylo = 0, yhi = 1;
        if (m) {
            qsort(all, (size_t)m, sizeof(double), cmp_double);
            ylo = all[(int64_t)(0.01 * (double)(m - 1))];
            yhi = all[(int64_t)(0.99 * (double)(m - 1))];
            ylo = ylo > 0 && ylo < 0.25 * yhi ? 0 : ylo;
            double pad = 0.05 * (yhi - ylo);
            ylo -= pad, yhi += pad;
            if (all[0] >= 0 && ylo < 0) ylo = 0; /* losses that are never negative start at 0 */
            if (yhi - ylo < 1e-6) yhi = ylo + 1;
        }
        free(all);
        int64_t win = c.n / 50 > 1 ? c.n / 50 : 1;
        if ((s = plot_losses(ctx, &c, ylo, yhi, win, &im)) != DP_OK) goto done;
        if ((s = dp_image_save_png(ctx, plot, &im)) != DP_OK) goto done;
        fprintf(f, "<p><span class=d>■ D loss</span> and <span class=g>■ G loss</span> per step (light), with their "
                   "running means over %lld steps (dark). x: step %.0f … %.0f (grid every tenth); y: loss %.4g … %.4g "
                   "(grid every %.4g; values outside are clipped).</p>\n<img alt=\"loss curves\" src=\"data:image/png;base64,",
                (long long)win, c.step[0], c.step[c.n - 1], ylo, yhi, (yhi - ylo) / 10);
        base64_file(plot, f);
        unlink(plot);
        fputs("\">\n<table><tr><th>step</th><th>D loss</th><th>G loss</th></tr>\n", f);
        int64_t marks[6];
        for (int k = 0; k < 6; k++) marks[k] = (int64_t)((double)(c.n - 1) * k / 5);
        for (int k = 0; k < 6; k++) {
            if (k && marks[k] == marks[k - 1]) continue;
            int64_t i = marks[k];
            fprintf(f, "<tr><td>%.0f</td><td>%.4f</td><td>%.4f</td></tr>\n", c.step[i], c.d[i], c.g[i]);
        }
        fputs("</table>\n", f);
    }
    fputs("<h2 id=samples>Samples over time</h2>\n", f);
    ngrids = list_grids(sdir, &grids);
    if (!ngrids) fputs("<p>No sample grids (RUN/samples/step_*.png).</p>\n", f);
    else
        fputs("<p>The same 64 latent points at each step (fixed noise), G in eval mode.</p>\n", f);
    for (int i = 0; i < ngrids; i++) {
        size_t gl = strlen(sdir) + strlen(grids[i]) + 2;
        free(gp);
        if (!(gp = malloc(gl))) break;
        snprintf(gp, gl, "%s/%s", sdir, grids[i]);
        fprintf(f, "<figure><img alt=\"%s\" src=\"data:image/png;base64,", grids[i]);
        base64_file(gp, f);
        fprintf(f, "\"><figcaption>step %lld</figcaption></figure>\n", strtoll(grids[i] + 5, NULL, 10)); /* step_N.png */
    }
    eval_section(f, ev);
    fputs("<p style=\"color:#666;font-size:85%\">Written by <code>doppel gan report</code>.</p></body></html>\n", f);
    if (ferror(f) | fclose(f)) {
        f = NULL;
        s = dp_error(ctx, DP_ERR_IO, "cannot write %s", tmp);
        goto done;
    }
    f = NULL;
    if (rename(tmp, out) != 0) {
        s = dp_error(ctx, DP_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
        goto done;
    }
    if (path && path_size) snprintf(path, path_size, "%s", out);
done:
    if (f) fclose(f);
    if (s != DP_OK && tmp) unlink(tmp);
    for (int i = 0; i < ngrids; i++) free(grids[i]);
    free(grids);
    free(gp);
    dp_image_free(ctx, &im);
    free(c.step), free(c.d), free(c.g);
    free(out), free(tmp), free(csv), free(sdir), free(ev), free(plot);
    return s;
}
