/* doppel serve — image analysis on a pool of detector instances.
 *
 * A detector's graph keeps its activations between runs, so one instance
 * runs one image at a time; the pool holds `workers` instances, each with
 * its own context (errors stay with their request) and its own face
 * detector, and a request waits for a free one. Everything here goes
 * through the public detect API (detect.h, label.h), the same calls as
 * `doppel detect --json`. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "doppel/doppel.h"
#include "server/server.h"

/* Crops per detector run. The graph always runs a whole batch, so 1 is the
 * fastest for the usual one or two faces, and the 49 occlusion crops of a
 * heat map cost no more one by one than in batches of 8 (measured: 270 ms /
 * 670 ms per 512x512 image with and without heat map at batch 1, 390 ms /
 * 1050 ms at batch 8, loaded VM); an instance then takes about 30 MB
 * instead of 60 MB (8) or 120 MB (16). */
#define SERVE_BATCH 1

typedef struct slot {
    dp_ctx *ctx;
    dp_detector *det;
    dp_face_detector *fd;
    int busy;
} slot;

struct serve_pool {
    slot *s;
    int n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char model[4096];
    char card[65536]; /* the model card (README.md next to the model), may be empty */
    char *models_json; /* GET /api/v1/models, built once */
};

char *serve_error_json(int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddNumberToObject(e, "status", status);
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* 4 significant decimals, as dp_detect_result_json writes them (no 0.300000011920929). */
static double round4(float v) {
    char b[32];
    snprintf(b, sizeof b, "%.4g", (double)v);
    return strtod(b, NULL);
}

static char *models_json(serve_pool *p);

static void read_card(serve_pool *p) {
    /* the model card: README.md in the model's folder (models/README.md for the shipped model) */
    char path[4200];
    const char *slash = strrchr(p->model, '/');
    if (slash) snprintf(path, sizeof path, "%.*s/README.md", (int)(slash - p->model), p->model);
    else snprintf(path, sizeof path, "README.md");
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t k = fread(p->card, 1, sizeof p->card - 1, f);
    p->card[k] = 0;
    fclose(f);
}

int serve_pool_new(const char *model, const char *source_dir, int workers, int threads, serve_pool **out, char *err,
                   size_t n_err) {
    *out = NULL;
    serve_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->s = calloc((size_t)workers, sizeof(slot)))) {
        free(p);
        snprintf(err, n_err, "out of memory");
        return 0;
    }
    p->n = workers;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < workers; i++) {
        slot *s = &p->s[i];
        if (dp_ctx_new(&(dp_ctx_opts){.threads = threads, .seed = 1}, &s->ctx) != DP_OK) {
            snprintf(err, n_err, "cannot create a context");
            serve_pool_free(p);
            return 0;
        }
        dp_status st = DP_OK;
        if (i == 0) {
            if (model) snprintf(p->model, sizeof p->model, "%s", model);
            else st = dp_detector_find_default(s->ctx, source_dir, p->model, sizeof p->model);
        }
        if (st == DP_OK) st = dp_detector_load(s->ctx, p->model, SERVE_BATCH, &s->det);
        if (st == DP_OK) st = dp_face_detector_default(s->ctx, &s->fd);
        if (st != DP_OK) {
            snprintf(err, n_err, "%s", dp_ctx_error(s->ctx));
            serve_pool_free(p);
            return 0;
        }
    }
    read_card(p);
    if (!(p->models_json = models_json(p))) {
        snprintf(err, n_err, "out of memory");
        serve_pool_free(p);
        return 0;
    }
    *out = p;
    return 1;
}

void serve_pool_free(serve_pool *p) {
    if (!p) return;
    for (int i = 0; p->s && i < p->n; i++) {
        dp_face_detector_free(p->s[i].fd);
        dp_detector_free(p->s[i].det);
        dp_ctx_free(p->s[i].ctx);
    }
    free(p->s);
    free(p->models_json);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

const char *serve_pool_model_path(const serve_pool *p) { return p->model; }

char *serve_pool_models_json(serve_pool *p) { return strdup(p->models_json); }

static slot *acquire(serve_pool *p) {
    pthread_mutex_lock(&p->mu);
    slot *s = NULL;
    for (;;) {
        for (int i = 0; i < p->n && !s; i++)
            if (!p->s[i].busy) s = &p->s[i];
        if (s) break;
        pthread_cond_wait(&p->cv, &p->mu);
    }
    s->busy = 1;
    pthread_mutex_unlock(&p->mu);
    dp_ctx_clear_error(s->ctx);
    return s;
}

static void release(serve_pool *p, slot *s) {
    pthread_mutex_lock(&p->mu);
    s->busy = 0;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static char *models_json(serve_pool *p) {
    slot *s = &p->s[0];
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "models"), *m = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, m);
    const char *slash = strrchr(p->model, '/');
    cJSON_AddStringToObject(m, "name", slash ? slash + 1 : p->model);
    cJSON_AddStringToObject(m, "path", p->model);
    cJSON_AddStringToObject(m, "task", "detect");
    static const char *const keys[] = {"doppel.arch",     "doppel.crop",        "doppel.thresholds", "doppel.ood",
                                       "doppel.test_auc", "doppel.heldout_auc", "doppel.data",       "doppel.command",
                                       "doppel.train_seconds", "doppel.version", NULL};
    cJSON *meta = cJSON_AddObjectToObject(m, "metadata");
    char buf[4096];
    for (int i = 0; keys[i]; i++)
        if (dp_checkpoint_meta(s->ctx, p->model, keys[i], buf, sizeof buf) == DP_OK) cJSON_AddStringToObject(meta, keys[i], buf);
    const dp_detector_params *dp = dp_detector_get_params(s->det);
    cJSON *th = cJSON_AddObjectToObject(m, "thresholds");
    cJSON_AddNumberToObject(th, "real_below", round4(dp->t_real));
    cJSON_AddNumberToObject(th, "fake_from", round4(dp->t_fake));
    cJSON_AddNumberToObject(m, "work", dp->crop.work);
    cJSON_AddNumberToObject(m, "input", dp->crop.size);
    cJSON_AddBoolToObject(m, "meso4", dp->use_meso);
    cJSON_AddStringToObject(m, "card", p->card);
    int ww = 0, wh = 0, ns = 0;
    const char *ft = "";
    dp_face_detector_info(s->fd, &ww, &wh, &ns, &ft);
    cJSON *fdj = cJSON_AddObjectToObject(root, "face_detector");
    cJSON_AddStringToObject(fdj, "kind", "Viola-Jones (OpenCV cascade)");
    cJSON_AddStringToObject(fdj, "cascade", DP_FACE_CASCADE_DEFAULT);
    cJSON_AddStringToObject(fdj, "features", ft ? ft : "");
    cJSON_AddNumberToObject(fdj, "stages", ns);
    cJSON *win = cJSON_AddArrayToObject(fdj, "window");
    cJSON_AddItemToArray(win, cJSON_CreateNumber(ww));
    cJSON_AddItemToArray(win, cJSON_CreateNumber(wh));
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* The occlusion map of one face as a grid of 0..255 (relative to its
 * largest value) over the crop square, in image coordinates. */
static cJSON *heatmap_json(slot *s, const dp_image *img, const dp_detect_face *f) {
    const dp_crop_policy *pol = &dp_detector_get_params(s->det)->crop;
    int W = pol->work;
    float *heat = malloc(sizeof(float) * (size_t)W * W);
    dp_image crop = {0};
    cJSON *h = NULL;
    if (heat && dp_crop_face(s->ctx, img, &f->box, pol, &crop) == DP_OK &&
        dp_detector_occlusion(s->det, &crop, W / 4, heat) == DP_OK) {
        float mx = 0;
        for (int k = 0; k < W * W; k++) mx = heat[k] > mx ? heat[k] : mx;
        int x, y, side;
        dp_crop_square(pol, &f->box, &x, &y, &side);
        h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "method", "occlusion");
        int sq[4] = {x, y, side, side};
        cJSON_AddItemToObject(h, "square", cJSON_CreateIntArray(sq, 4));
        cJSON_AddNumberToObject(h, "side", W);
        cJSON_AddNumberToObject(h, "max", round4(mx));
        int *v = malloc(sizeof(int) * (size_t)W * W);
        if (v) {
            for (int k = 0; k < W * W; k++) v[k] = mx > 0 ? (int)(255.0f * heat[k] / mx + 0.5f) : 0;
            cJSON_AddItemToObject(h, "values", cJSON_CreateIntArray(v, W * W));
            free(v);
        }
    }
    dp_image_free(s->ctx, &crop);
    free(heat);
    return h;
}

static cJSON *label_json(const dp_label_meta *m) {
    cJSON *l = cJSON_CreateObject();
    cJSON_AddBoolToObject(l, "present", m->present);
    cJSON_AddBoolToObject(l, "ai_generated", m->ai_generated);
    cJSON_AddStringToObject(l, "source_type", m->source_type);
    cJSON_AddStringToObject(l, "software", m->software);
    cJSON_AddStringToObject(l, "model", m->model);
    if (m->has_model_id) cJSON_AddNumberToObject(l, "model_id", m->model_id);
    cJSON_AddStringToObject(l, "description", m->description);
    return l;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

void serve_detect(serve_pool *p, const void *buf, size_t n, const char *name, const serve_detect_opts *o,
                  serve_reply *out) {
    out->status = 200;
    out->body = NULL;
    dp_image_format fmt = dp_image_sniff(buf, n);
    if (fmt == DP_IMG_UNKNOWN) {
        out->status = 415;
        out->body = serve_error_json(415, "not_an_image", "%s is not a PNG, JPEG or WebP image (%zu bytes)", name, n);
        return;
    }
    double t0 = now_ms();
    slot *s = acquire(p);
    double t1 = now_ms();
    dp_image img = {0};
    dp_label_meta meta;
    dp_detect_result r;
    dp_image_limits lim = {.max_side = 16384, .max_pixels = 40000000, .max_file_bytes = (int64_t)n + 1};
    dp_status st = dp_label_read_meta(s->ctx, buf, n, name, &meta);
    if (st == DP_OK) st = dp_image_decode(s->ctx, buf, n, name, 3, &lim, &img);
    if (st != DP_OK) {
        int code = st == DP_ERR_NOMEM ? 413 : 422;
        out->status = code;
        out->body = serve_error_json(code, code == 413 ? "image_too_large" : "bad_image", "%s", dp_ctx_error(s->ctx));
        goto done;
    }
    if ((st = dp_detect_image(s->det, s->fd, &img, &r)) != DP_OK) {
        out->status = 500;
        out->body = serve_error_json(500, "detect_failed", "%s", dp_ctx_error(s->ctx));
        goto done;
    }
    dp_watermark_result wr;
    char wm[160] = "";
    if (dp_watermark_detect(s->ctx, &img, &wr) == DP_OK) dp_detect_watermark_json(&wr, wm, sizeof wm);
    char *js = NULL;
    int len = dp_detect_result_json(name, &r, wm[0] ? wm : NULL, NULL, 0);
    if (len > 0 && (js = malloc((size_t)len + 1))) dp_detect_result_json(name, &r, wm[0] ? wm : NULL, js, (size_t)len + 1);
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    free(js);
    if (!root) {
        out->status = 500;
        out->body = serve_error_json(500, "internal", "could not build the answer (out of memory?)");
        goto done;
    }
    cJSON_AddNumberToObject(root, "width", img.width);
    cJSON_AddNumberToObject(root, "height", img.height);
    cJSON_AddStringToObject(root, "format", dp_image_format_name(fmt));
    cJSON_AddItemToObject(root, "label", label_json(&meta));
    cJSON *faces = cJSON_GetObjectItemCaseSensitive(root, "faces");
    if (o->heatmap && cJSON_IsArray(faces)) {
        int i = 0;
        cJSON *f;
        cJSON_ArrayForEach(f, faces) {
            if (i >= r.n_scored) break;
            cJSON *h = heatmap_json(s, &img, &r.faces[i++]);
            if (h) cJSON_AddItemToObject(f, "heatmap", h);
        }
    }
    const dp_detector_params *dpp = dp_detector_get_params(s->det);
    cJSON *th = cJSON_AddObjectToObject(root, "thresholds");
    cJSON_AddNumberToObject(th, "real_below", round4(dpp->t_real));
    cJSON_AddNumberToObject(th, "fake_from", round4(dpp->t_fake));
    double t2 = now_ms();
    cJSON *tm = cJSON_AddObjectToObject(root, "timing_ms");
    cJSON_AddNumberToObject(tm, "queued", (double)(int)(t1 - t0));
    cJSON_AddNumberToObject(tm, "analysis", (double)(int)(t2 - t1));
    out->body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!out->body) {
        out->status = 500;
        out->body = serve_error_json(500, "internal", "out of memory");
    }
done:
    dp_image_free(s->ctx, &img);
    release(p, s);
}
