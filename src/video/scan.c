/* The video pipeline (docs/video.md):
 *
 *   decoding thread (source.c): demux, decode, RGB24 + grey, queue
 *   this thread: faces (full search every detect_every analysed frames on
 *                the face-search thread, tracked search around each track
 *                between) → tracks (IoU) → crops
 *   classifier thread: the crops scored in batches (as many frames as are
 *                ready) while this thread prepares the next batch (files;
 *                live sources wait for each batch: no frame is held back)
 *   this thread: per-frame callback, timeline, annotated output, in order
 *   at the end:  per-track trimmed mean of the logits → verdicts, fake spans
 *
 * The scorer is either a doppel detection model (detect.h: the crop policy,
 * Meso-4 + spectral, the fused logit) or an imported MesoNet checkpoint
 * (doppel model import-keras: output P(real), a plain Meso-4/MesoInception-4
 * on a 256x256 crop of 1.6x the face box). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "doppel/import.h"
#include "video/video_internal.h"

#define MAX_FACES 16   /* per frame */
#define MAX_PENDING 16 /* frames waiting for their crops' scores */
#define MESONET_INNER 1.6f
#define LIVE_STALE_S 0.1 /* live: a frame this old is skipped when a newer one waits */

struct dp_video_scanner {
    dp_ctx *ctx;
    /* the models' own context (one thread unless the caller's has more than 4): the classifier thread runs
     * them, so their convolutions do not wait on a worker pool's barriers while the pipeline's other threads
     * (decoding, face search, tracking) keep the cores busy; errors are copied into ctx */
    dp_ctx *cctx;
    dp_face_detector *fd;
    char model_path[1024];
    int batch;
    /* doppel detection model */
    dp_detector *det1, *detB;
    /* imported MesoNet (output P(real)) */
    int mesonet;
    dp_paramset *ps;
    dp_graph *g1, *gB;
    dp_node *x1, *y1, *xB, *yB;
    dp_crop_policy crop;
    float fuse_w[3];
    float t_real, t_fake, ood_threshold;
};

/* ------------------------------------------------------------ scanner */
static dp_status mesonet_graph(dp_video_scanner *s, int batch, const char *arch, dp_graph **g, dp_node **x, dp_node **y) {
    dp_status st = dp_graph_new(s->cctx, g);
    if (st != DP_OK) return st;
    *x = dp_input(*g, "x", 4, (int64_t[]){batch, 3, 256, 256});
    *y = !strcmp(arch, "mesoinception4") ? dp_model_mesoinception4(*g, s->ps, *x) : dp_model_meso4(*g, s->ps, *x);
    dp_graph_mark_output(*g, *y);
    if ((st = dp_graph_set_no_grad(*g)) != DP_OK) return st;
    if ((st = dp_graph_compile(*g)) != DP_OK) return st;
    return dp_graph_set_training(*g, 0);
}

static int is_h5(const char *path) {
    size_t n = strlen(path);
    return n > 3 && !strcmp(path + n - 3, ".h5");
}

/* An imported MesoNet: a doppel checkpoint from `doppel model import-keras` (metadata output =
 * p_real), or the Keras .h5 itself (MesoInception when its name says so, else Meso-4). */
static dp_status load_mesonet(dp_video_scanner *s, const char *path) {
    char arch[64];
    dp_status st = DP_OK;
    if (is_h5(path)) {
        const char *b = strrchr(path, '/');
        snprintf(arch, sizeof arch, "%s", strstr(b ? b : path, "Inception") ? "mesoinception4" : "meso4");
    } else
        st = dp_checkpoint_meta(s->cctx, path, "doppel.arch", arch, sizeof arch);
    if (st != DP_OK || (strcmp(arch, "meso4") && strcmp(arch, "mesoinception4")))
        return dp_error(s->cctx, DP_ERR_FORMAT, "%s: an imported model must be meso4 or mesoinception4", path);
    s->mesonet = 1;
    if ((st = dp_paramset_new(s->cctx, &s->ps)) != DP_OK) return st;
    if ((st = mesonet_graph(s, 1, arch, &s->g1, &s->x1, &s->y1)) != DP_OK) return st;
    if ((st = mesonet_graph(s, s->batch, arch, &s->gB, &s->xB, &s->yB)) != DP_OK) return st;
    if ((st = is_h5(path) ? dp_keras_load_mesonet(s->ps, path, arch, NULL) : dp_checkpoint_load(path, s->ps, NULL)) !=
        DP_OK)
        return st;
    dp_crop_policy_default(&s->crop);
    s->crop.inner = MESONET_INNER;
    s->crop.margin = 0;
    s->crop.shift = 0;
    s->crop.work = 256;
    s->crop.size = 256;
    s->fuse_w[0] = 1, s->fuse_w[1] = 0, s->fuse_w[2] = 0;
    s->t_real = DP_DETECT_T_REAL;
    s->t_fake = DP_DETECT_T_FAKE;
    return DP_OK;
}

dp_status dp_video_scanner_new(dp_ctx *ctx, const char *model_path, const char *source_dir, dp_video_scanner **out) {
    if (!ctx || !out) return dp_error(ctx, DP_ERR_NULL, "dp_video_scanner_new: NULL argument");
    *out = NULL;
    dp_video_scanner *s = calloc(1, sizeof *s);
    if (!s) return dp_error(ctx, DP_ERR_NOMEM, "dp_video_scanner_new: out of memory");
    s->ctx = ctx;
    s->batch = 8;
    dpv_quiet_ffmpeg();
    int ct = dp_ctx_threads(ctx);
    dp_status st = dp_ctx_new(&(dp_ctx_opts){.threads = ct > 4 ? ct - 3 : 1,
                                             .seed = dp_ctx_seed(ctx),
                                             .allocator = &ctx->alloc,
                                             .max_tensor_bytes = ctx->max_tensor_bytes},
                              &s->cctx);
    if (st != DP_OK) {
        free(s);
        return dp_error(ctx, st, "dp_video_scanner_new: cannot make the models' context");
    }
    dp_ctx_set_limits(s->cctx, &ctx->limits);
    if (model_path) snprintf(s->model_path, sizeof s->model_path, "%s", model_path);
    else st = dp_detector_find_default(ctx, source_dir, s->model_path, sizeof s->model_path);
    char out_kind[64] = "";
    if (st == DP_OK && (is_h5(s->model_path) ||
                        (dp_checkpoint_meta(ctx, s->model_path, "output", out_kind, sizeof out_kind) == DP_OK &&
                         !strcmp(out_kind, "p_real"))))
        st = load_mesonet(s, s->model_path);
    else if (st == DP_OK) {
        dp_ctx_clear_error(ctx);
        st = dp_detector_load(s->cctx, s->model_path, 1, &s->det1);
        if (st == DP_OK) st = dp_detector_load(s->cctx, s->model_path, s->batch, &s->detB);
        if (st == DP_OK) {
            const dp_detector_params *p = dp_detector_get_params(s->det1);
            s->crop = p->crop;
            memcpy(s->fuse_w, p->fuse_w, sizeof s->fuse_w);
            s->t_real = p->t_real;
            s->t_fake = p->t_fake;
            s->ood_threshold = p->ood_threshold;
        }
    }
    if (st != DP_OK && dp_ctx_error(s->cctx)[0]) dp_error(ctx, st, "%s", dp_ctx_error(s->cctx));
    if (st == DP_OK) st = dp_face_detector_default(ctx, &s->fd);
    if (st != DP_OK) {
        dp_video_scanner_free(s);
        return st;
    }
    *out = s;
    return DP_OK;
}

void dp_video_scanner_free(dp_video_scanner *s) {
    if (!s) return;
    dp_detector_free(s->det1);
    dp_detector_free(s->detB);
    dp_graph_free(s->g1);
    dp_graph_free(s->gB);
    dp_paramset_free(s->ps);
    dp_face_detector_free(s->fd);
    dp_ctx_free(s->cctx);
    free(s);
}

/* ------------------------------------------------------------ crops and scores */
/* The work crop of one face from a decoded frame: the policy's square (edge
 * pixels repeated outside the frame), resampled by dp_image_resize — what
 * dp_crop_face does on the float image. The square's pixels come from the
 * planar YUV frame converted here (BT.601, libswscale's default; the chroma
 * sample of each block, values rounded to 8 bits as an RGB24 frame holds them),
 * or from the RGB24 copy for other pixel formats. */
static dp_status crop_frame(dp_video_scanner *s, const dpv_item *it, int W, int H, const dp_face_box *b, dp_image *out) {
    int x0, y0, side;
    dp_crop_square(&s->crop, b, &x0, &y0, &side);
    if (side > 4096) return dp_error(s->ctx, DP_ERR_ARG, "face crop side %d too large", side);
    dp_image sq = {0};
    dp_status st = dp_image_alloc(s->ctx, 3, side, side, &sq);
    if (st != DP_OK) return st;
    const float k = 1.0f / 255.0f;
    size_t pl = (size_t)side * side;
    /* BT.601: limited range (Y 16..235, C 16..240) or full (yuvj) */
    const int full = it->yuv == 2;
    const float ky = full ? 1.0f : 255.0f / 219.0f, oy = full ? 0.0f : 16.0f, kc = full ? 1.0f : 255.0f / 224.0f;
    const float rv = 1.402f * kc, gu = -0.344136f * kc, gv = -0.714136f * kc, bu = 1.772f * kc;
    for (int y = 0; y < side; y++) {
        int yy = y0 + y < 0 ? 0 : y0 + y >= H ? H - 1 : y0 + y;
        float *dr = sq.data + (size_t)y * side, *dg = dr + pl, *db = dg + pl;
        if (it->yuv) {
            const AVFrame *f = it->frame;
            const int cy = yy >> it->csy, sx = it->csx;
            const uint8_t *Y = f->data[0] + (size_t)yy * f->linesize[0], *U = f->data[1] + (size_t)cy * f->linesize[1],
                          *V = f->data[2] + (size_t)cy * f->linesize[2];
            for (int x = 0; x < side; x++) {
                int xx = x0 + x < 0 ? 0 : x0 + x >= W ? W - 1 : x0 + x;
                float l = ((float)Y[xx] - oy) * ky, u = (float)U[xx >> sx] - 128.0f, v = (float)V[xx >> sx] - 128.0f;
                float c[3] = {l + rv * v, l + gu * u + gv * v, l + bu * u};
                for (int j = 0; j < 3; j++) c[j] = c[j] < 0 ? 0 : c[j] > 255 ? 255 : c[j];
                dr[x] = floorf(c[0] + 0.5f) * k;
                dg[x] = floorf(c[1] + 0.5f) * k;
                db[x] = floorf(c[2] + 0.5f) * k;
            }
            continue;
        }
        const uint8_t *row = it->rgb + (size_t)yy * W * 3;
        for (int x = 0; x < side; x++) {
            int xx = x0 + x < 0 ? 0 : x0 + x >= W ? W - 1 : x0 + x;
            const uint8_t *p = row + (size_t)xx * 3;
            dr[x] = p[0] * k;
            dg[x] = p[1] * k;
            db[x] = p[2] * k;
        }
    }
    st = dp_image_resize(s->ctx, &sq, s->crop.work, s->crop.work, out);
    dp_image_free(s->ctx, &sq);
    return st;
}

static dp_status mesonet_run(dp_video_scanner *s, dp_graph *g, dp_node *x, dp_node *y, int batch, const dp_image *c,
                             int n, float *logit) {
    size_t per = (size_t)3 * 256 * 256;
    float *in = dp_tensor_f32(dp_node_value(x));
    for (int i = 0; i < batch; i++) memcpy(in + per * i, c[i < n ? i : 0].data, sizeof(float) * per);
    dp_status st = dp_graph_run(g);
    if (st != DP_OK) return st;
    const float *p = dp_tensor_f32(dp_node_value(y));
    for (int i = 0; i < n; i++) logit[i] = -dp_logit(p[i]); /* P(real) → log-odds of fake */
    return DP_OK;
}

/* Fused logits (and ood) of n crops: full batches, then one by one. */
static dp_status score(dp_video_scanner *s, const dp_image *c, int n, float *logit, float *ood) {
    int B = s->batch;
    for (int off = 0; off < n;) {
        int m = n - off >= B ? B : 1;
        dp_status st;
        if (s->mesonet) {
            st = m == B ? mesonet_run(s, s->gB, s->xB, s->yB, B, c + off, m, logit + off)
                        : mesonet_run(s, s->g1, s->x1, s->y1, 1, c + off, 1, logit + off);
            for (int i = 0; i < m; i++) ood[off + i] = 0;
        } else {
            float mm[64], ss[64];
            st = dp_detector_raw(m == B ? s->detB : s->det1, c + off, m, mm, ss, ood + off);
            for (int i = 0; i < m && st == DP_OK; i++)
                logit[off + i] = s->fuse_w[0] * mm[i] + s->fuse_w[1] * ss[i] + s->fuse_w[2];
        }
        if (st != DP_OK) return st;
        off += m;
    }
    return DP_OK;
}

/* Variance of the 4-neighbour Laplacian of the crop's grey (ITU-R 601): low = blurred. */
static float sharpness(const dp_image *c) {
    int W = c->width, H = c->height;
    size_t pl = (size_t)W * H;
    double s = 0, s2 = 0;
    int64_t n = 0;
    for (int y = 1; y + 1 < H; y++)
        for (int x = 1; x + 1 < W; x++) {
            double l = 0;
            static const int dx[5] = {0, -1, 1, 0, 0}, dy[5] = {0, 0, 0, -1, 1};
            for (int k = 0; k < 5; k++) {
                size_t o = (size_t)(y + dy[k]) * W + (x + dx[k]);
                double g = 0.299 * c->data[o] + 0.587 * c->data[pl + o] + 0.114 * c->data[2 * pl + o];
                l += k == 0 ? -4 * g : g;
            }
            s += l, s2 += l * l, n++;
        }
    if (n == 0) return 0;
    double m = s / (double)n;
    return (float)(s2 / (double)n - m * m);
}

/* ------------------------------------------------------------ the scan */
typedef struct pending {
    dpv_item *it;
    int n_faces;
    dp_video_face faces[MAX_FACES];
    int crop_at[MAX_FACES]; /* index into the crop list, -1 not scored */
    float sharp[MAX_FACES];
} pending;

/* The frames of one batch and their crops; scored on the classifier thread (logit, ood, st, err), then handed on
 * in order by this one. */
typedef struct batch {
    pending pend[MAX_PENDING];
    int npend;
    dp_image crops[MAX_PENDING * MAX_FACES];
    int ncrops;
    float logit[MAX_PENDING * MAX_FACES], ood[MAX_PENDING * MAX_FACES];
    dp_status st;
    char err[512];
} batch;

/* A thread that takes jobs under mu: cv says a job (or quit) is there, done_cv that one is done. */
typedef struct job_thread {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    int started, quit;
} job_thread;

/* The classifier thread: one batch at a time (posted, scored, collected). */
typedef struct classifier {
    job_thread jt;
    dp_video_scanner *s;
    batch *job; /* posted, not yet taken */
    int busy;   /* a batch posted and not yet scored */
} classifier;

typedef struct finder finder;
struct finder {
    job_thread jt;
    int has_job, busy, has_result;
    const dp_face_detector *fd;
    uint8_t *gray;
    int gw, gh, d, min_face;
    dp_face_box boxes[MAX_FACES];
    int n;
};

typedef struct scan {
    dp_video_scanner *s;
    dp_video_opts o;
    dpv_source *src;
    const dpv_source_info *info;
    dpv_writer *wr;
    dpv_tracker trk;
    dp_video_result *r;
    batch *bufs;     /* two: one being filled (cur), one being scored (fly) */
    batch *cur, *fly;
    classifier cls;
    dp_video_face last_faces[MAX_FACES]; /* drawn on frames that are not analysed */
    int n_last;
    int64_t analysed, last_full, samples_cap, dropped_late;
    int max_pend; /* frames held per batch: MAX_PENDING, fewer for large frames (<= 64 MiB of them, two batches) */
    double t0, lat_sum;
    finder finder; /* the full search's thread */
    int live, full_pending; /* files: a search posted, taken at frame full_due */
    int64_t full_due;
    int stop;
    char err[512];
} scan;

static dp_status set_err(scan *sc, dp_status st, const char *msg) {
    if (sc->r->status == DP_OK) {
        sc->r->status = st;
        snprintf(sc->r->error, sizeof sc->r->error, "%s", msg);
    }
    return st;
}

/* Face boxes of one analysed frame. */
/* The whole (shrunk) grey frame searched; boxes in frame pixels. */
static dp_status full_search(const dp_face_detector *fd, const uint8_t *gray, int gw, int gh, int d, int min_face,
                             dp_face_box *boxes, int *nb) {
    dp_face_opts fo = {0};
    fo.min_size = min_face / d;
    fo.pad = DP_FACE_PAD_NEVER;
    int n = 0;
    dp_status st = dp_face_detect_gray8(fd, gray, gw, gh, gw, &fo, boxes, MAX_FACES, &n);
    *nb = st == DP_OK ? (n < MAX_FACES ? n : MAX_FACES) : 0;
    for (int i = 0; i < *nb; i++) boxes[i].x *= d, boxes[i].y *= d, boxes[i].w *= d, boxes[i].h *= d;
    return st;
}

/* ------------------------------------------------------------ live: the full search on its own thread
 * so that it never holds up a frame; the boxes it finds join the tracks when
 * they come (a few frames later), the tracked search follows them from there. */

static dp_status job_thread_start(job_thread *j, void *(*fn)(void *), void *arg) {
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    pthread_cond_init(&j->done_cv, NULL);
    if (pthread_create(&j->th, NULL, fn, arg) != 0) {
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
        pthread_cond_destroy(&j->done_cv);
        return DP_ERR_STATE;
    }
    j->started = 1;
    return DP_OK;
}

static void job_thread_stop(job_thread *j) { /* when it has no job left */
    if (!j->started) return;
    pthread_mutex_lock(&j->mu);
    j->quit = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->th, NULL);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    pthread_cond_destroy(&j->done_cv);
    j->started = 0;
}

static void *finder_main(void *arg) {
    finder *f = arg;
    pthread_mutex_lock(&f->jt.mu);
    for (;;) {
        while (!f->has_job && !f->jt.quit) pthread_cond_wait(&f->jt.cv, &f->jt.mu);
        if (f->jt.quit) break;
        f->has_job = 0;
        pthread_mutex_unlock(&f->jt.mu);
        dp_face_box b[MAX_FACES];
        int n = 0;
        if (full_search(f->fd, f->gray, f->gw, f->gh, f->d, f->min_face, b, &n) != DP_OK) n = 0;
        pthread_mutex_lock(&f->jt.mu);
        memcpy(f->boxes, b, sizeof b);
        f->n = n;
        f->has_result = 1;
        f->busy = 0;
        pthread_cond_signal(&f->jt.done_cv);
    }
    pthread_mutex_unlock(&f->jt.mu);
    return NULL;
}

static dp_status finder_start(finder *f, const dp_face_detector *fd, const dpv_source_info *in, int min_face) {
    memset(f, 0, sizeof *f);
    f->fd = fd;
    f->gw = in->gray_w, f->gh = in->gray_h, f->d = in->gray_scale, f->min_face = min_face;
    if (!(f->gray = malloc((size_t)f->gw * f->gh))) return DP_ERR_NOMEM;
    if (job_thread_start(&f->jt, finder_main, f) != DP_OK) {
        free(f->gray);
        f->gray = NULL;
        return DP_ERR_STATE;
    }
    return DP_OK;
}

static void finder_stop(finder *f) {
    if (!f->jt.started) return;
    job_thread_stop(&f->jt);
    free(f->gray);
}

/* Takes the finished search's boxes (0 when none is ready); posts this frame when the finder is idle and post. */
static int finder_poll(finder *f, const uint8_t *gray, int post, dp_face_box *boxes) {
    int n = 0;
    pthread_mutex_lock(&f->jt.mu);
    if (f->has_result && boxes) {
        n = f->n;
        memcpy(boxes, f->boxes, sizeof(dp_face_box) * (size_t)n);
        f->has_result = 0;
    }
    if (post && !f->busy) {
        memcpy(f->gray, gray, (size_t)f->gw * f->gh);
        f->busy = f->has_job = 1;
        pthread_cond_signal(&f->jt.cv);
    } else post = 0;
    pthread_mutex_unlock(&f->jt.mu);
    return post ? n | 0x10000 : n; /* bit 16: posted */
}

/* Waits for the posted search and takes its boxes. */
static int finder_wait(finder *f, dp_face_box *boxes) {
    pthread_mutex_lock(&f->jt.mu);
    while (!f->has_result) pthread_cond_wait(&f->jt.done_cv, &f->jt.mu);
    int n = f->n;
    memcpy(boxes, f->boxes, sizeof(dp_face_box) * (size_t)n);
    f->has_result = 0;
    pthread_mutex_unlock(&f->jt.mu);
    return n;
}

static dp_status tracked_search(scan *sc, const dpv_item *it, dp_face_box *boxes, int *nb);

static dp_status find_faces(scan *sc, const dpv_item *it, dp_face_box *boxes, int *nb, int *full) {
    const dpv_source_info *in = sc->info;
    int alive = 0;
    for (int k = 0; k < sc->trk.n; k++) alive += sc->trk.tr[k].alive;
    /* a full search every detect_every analysed frames; every other frame while nobody is tracked */
    int64_t since = sc->analysed - sc->last_full;
    int want_full = sc->analysed == 0 || since >= sc->o.detect_every || (alive == 0 && since >= 2);
    dp_status st;
    if (sc->finder.jt.started && !sc->live && (alive || sc->full_pending)) {
        /* files, someone tracked: the full search of frame k runs on the finder thread while frames
         * k+1.. are tracked; its boxes are taken at frame k + detect_every - 1 (waiting if need be),
         * so the result does not depend on timing */
        *nb = 0;
        if (alive && (st = tracked_search(sc, it, boxes, nb)) != DP_OK) return st;
        dp_face_box fb[MAX_FACES];
        int nf = 0;
        if (sc->full_pending && (sc->analysed >= sc->full_due || !alive)) {
            nf = finder_wait(&sc->finder, fb);
            sc->full_pending = 0;
        }
        if (want_full && !sc->full_pending && alive) {
            finder_poll(&sc->finder, it->gray, 1, NULL);
            sc->full_pending = 1;
            sc->full_due = sc->analysed + (sc->o.detect_every > 2 ? sc->o.detect_every - 1 : 1);
            sc->last_full = sc->analysed;
        }
        *full = nf > 0;
        for (int i = 0; i < nf && *nb < MAX_FACES; i++) {
            int dup = 0;
            for (int j = 0; j < *nb && !dup; j++) dup = dpv_iou(&fb[i], &boxes[j]) > 0.2;
            if (!dup) boxes[(*nb)++] = fb[i];
        }
        return DP_OK;
    }
    if (sc->finder.jt.started && sc->live) { /* live: tracked search now, the full search's boxes when they come */
        *nb = 0;
        if (alive && (st = tracked_search(sc, it, boxes, nb)) != DP_OK) return st;
        dp_face_box fb[MAX_FACES];
        int r = finder_poll(&sc->finder, it->gray, want_full, fb), nf = r & 0xffff;
        if (r & 0x10000) sc->last_full = sc->analysed;
        *full = nf > 0;
        for (int i = 0; i < nf && *nb < MAX_FACES; i++) {
            int dup = 0;
            for (int j = 0; j < *nb && !dup; j++) dup = dpv_iou(&fb[i], &boxes[j]) > 0.2;
            if (!dup) boxes[(*nb)++] = fb[i];
        }
        return DP_OK;
    }
    *full = want_full;
    if (!*full && alive == 0) {
        *nb = 0;
        return DP_OK;
    }
    if (*full) {
        if ((st = full_search(sc->s->fd, it->gray, in->gray_w, in->gray_h, in->gray_scale, sc->o.min_face, boxes,
                              nb)) != DP_OK)
            return st;
        sc->last_full = sc->analysed;
        return DP_OK;
    }
    return tracked_search(sc, it, boxes, nb);
}

/* Around each live track (half its size on each side), at 0.75-1.33 times its size. */
static dp_status tracked_search(scan *sc, const dpv_item *it, dp_face_box *boxes, int *nb) {
    const dpv_source_info *in = sc->info;
    const int d = in->gray_scale, gw = in->gray_w, gh = in->gray_h;
    dp_status st;
    int n = 0;
    for (int k = 0; k < sc->trk.n && n < MAX_FACES; k++) {
        const dpv_track *tr = &sc->trk.tr[k];
        if (!tr->alive) continue;
        const dp_face_box *b = &tr->box;
        dp_face_box bs = {b->x / d, b->y / d, b->w / d, b->h / d, 0}; /* in the shrunk frame */
        int m = bs.w > bs.h ? bs.w : bs.h;
        int x0 = bs.x - m / 2, y0 = bs.y - m / 2, x1 = bs.x + bs.w + m / 2, y1 = bs.y + bs.h + m / 2;
        if (x0 < 0) x0 = 0;
        if (y0 < 0) y0 = 0;
        if (x1 > gw) x1 = gw;
        if (y1 > gh) y1 = gh;
        if (x1 - x0 < 24 || y1 - y0 < 24) continue;
        dp_face_opts fo = {0};
        fo.min_size = (int)(m * 0.75);
        if (fo.min_size < 20) fo.min_size = 20;
        fo.max_size = (int)(m * 1.33) + 1;
        fo.min_neighbors = 2;
        fo.pad = DP_FACE_PAD_NEVER;
        dp_face_box found[8];
        int nf = 0;
        st = dp_face_detect_gray8(sc->s->fd, it->gray + (size_t)y0 * gw + x0, x1 - x0, y1 - y0, gw, &fo, found, 8, &nf);
        if (st != DP_OK) return st;
        if (nf > 8) nf = 8;
        double best = 0.1;
        int bi = -1;
        for (int i = 0; i < nf; i++) {
            found[i].x = (found[i].x + x0) * d, found[i].y = (found[i].y + y0) * d;
            found[i].w *= d, found[i].h *= d;
            double v = dpv_iou(&found[i], b);
            if (v > best) best = v, bi = i;
        }
        for (int i = 0; i < n && bi >= 0; i++) /* two tracks on one face: the older keeps it */
            if (dpv_iou(&found[bi], &boxes[i]) > 0.5) bi = -1;
        if (bi >= 0) boxes[n++] = found[bi];
    }
    *nb = n;
    return DP_OK;
}

/* ------------------------------------------------------------ the classifier thread */
static void score_batch(dp_video_scanner *s, batch *b) {
    b->st = score(s, b->crops, b->ncrops, b->logit, b->ood);
    snprintf(b->err, sizeof b->err, "%s", b->st == DP_OK ? "" : dp_ctx_error(s->cctx));
}

static void *classifier_main(void *arg) {
    classifier *c = arg;
    pthread_mutex_lock(&c->jt.mu);
    for (;;) {
        while (!c->job && !c->jt.quit) pthread_cond_wait(&c->jt.cv, &c->jt.mu);
        if (!c->job) break; /* quit, nothing left */
        batch *b = c->job;
        c->job = NULL;
        pthread_mutex_unlock(&c->jt.mu);
        score_batch(c->s, b);
        pthread_mutex_lock(&c->jt.mu);
        c->busy = 0;
        pthread_cond_signal(&c->jt.done_cv);
    }
    pthread_mutex_unlock(&c->jt.mu);
    return NULL;
}

static dp_status classifier_start(classifier *c, dp_video_scanner *s) {
    memset(c, 0, sizeof *c);
    c->s = s;
    return job_thread_start(&c->jt, classifier_main, c);
}

static void classifier_post(classifier *c, batch *b) {
    pthread_mutex_lock(&c->jt.mu);
    c->job = b;
    c->busy = 1;
    pthread_cond_signal(&c->jt.cv);
    pthread_mutex_unlock(&c->jt.mu);
}

static void classifier_wait(classifier *c) {
    pthread_mutex_lock(&c->jt.mu);
    while (c->busy) pthread_cond_wait(&c->jt.done_cv, &c->jt.mu);
    pthread_mutex_unlock(&c->jt.mu);
}


static void fill_frame(scan *sc, const pending *p, dp_video_frame *f) {
    memset(f, 0, sizeof *f);
    f->index = p->it->index;
    f->time_s = p->it->t;
    f->n_faces = p->n_faces;
    f->faces = p->faces;
    f->frames_decoded = dpv_source_decoded(sc->src);
    f->frames_analysed = sc->analysed;
    f->frames_dropped = dpv_source_dropped(sc->src) + sc->dropped_late;
    f->frames_total = sc->info->frames_total;
    f->duration_s = sc->info->duration_s;
    f->elapsed_s = dpv_now() - sc->t0;
    f->fps = f->elapsed_s > 0 ? sc->analysed / f->elapsed_s : 0;
    f->latency_s = dpv_now() - p->it->t_wall;
    f->live = sc->info->live;
}

/* Hands each frame of a scored batch on in order (scores into its faces and tracks, the timeline, the annotated
 * output, the callback) and gives the frames back to the decoder. On a scoring error the frames are given back
 * unreported. */
static dp_status finish_batch(scan *sc, batch *b) {
    dp_status st = DP_OK;
    for (int i = 0; i < b->ncrops; i++) dp_image_free(sc->s->ctx, &b->crops[i]);
    if (b->ncrops > 0 && b->st != DP_OK) {
        st = set_err(sc, b->st, b->err);
        for (int k = 0; k < b->npend; k++) dpv_source_release(sc->src, b->pend[k].it);
        b->npend = b->ncrops = 0;
        return st;
    }
    for (int k = 0; k < b->npend && b->ncrops > 0; k++)
        for (int i = 0; i < b->pend[k].n_faces; i++) {
            int c = b->pend[k].crop_at[i];
            if (c < 0) continue;
            dp_video_face *f = &b->pend[k].faces[i];
            f->logit = b->logit[c];
            f->p_fake = (float)dp_sigmoid_d(b->logit[c]);
            f->ood = b->ood[c];
        }
    b->ncrops = 0;
    dp_video_result *r = sc->r;
    for (int k = 0; k < b->npend; k++) {
        pending *p = &b->pend[k];
        if (sc->stop) { /* the callback asked to stop: the frames after it are not reported */
            dpv_source_release(sc->src, p->it);
            p->it = NULL;
            continue;
        }
        for (int i = 0; i < p->n_faces && st == DP_OK; i++) {
            dp_video_face *f = &p->faces[i];
            if (!f->scored) continue;
            dpv_track *tr = NULL;
            for (int j = 0; j < sc->trk.n; j++)
                if (sc->trk.tr[j].id == f->track_id) tr = &sc->trk.tr[j];
            int ood = sc->s->ood_threshold > 0 && f->ood > sc->s->ood_threshold;
            if (tr && dpv_track_add_score(tr, p->it->t, f->logit, p->sharp[i], ood) != DP_OK) st = DP_ERR_NOMEM;
            r->faces_scored++;
            if (r->n_samples < sc->o.max_samples) {
                if (r->n_samples == sc->samples_cap) {
                    int64_t c = sc->samples_cap ? sc->samples_cap * 2 : 1024;
                    if (c > sc->o.max_samples) c = sc->o.max_samples;
                    dp_video_sample *ns = realloc(r->samples, sizeof *ns * (size_t)c);
                    if (!ns) {
                        st = DP_ERR_NOMEM;
                        break;
                    }
                    r->samples = ns, sc->samples_cap = c;
                }
                dp_video_sample *sm = &r->samples[r->n_samples++];
                sm->frame = p->it->index;
                sm->time_s = p->it->t;
                sm->track_id = f->track_id;
                sm->box = f->box;
                sm->logit = f->logit;
                sm->p_fake = f->p_fake;
            }
        }
        if (st != DP_OK) {
            for (; k < b->npend; k++) dpv_source_release(sc->src, b->pend[k].it);
            b->npend = 0;
            return set_err(sc, st, "out of memory");
        }
        memcpy(sc->last_faces, p->faces, sizeof(dp_video_face) * (size_t)p->n_faces);
        sc->n_last = p->n_faces;
        if (sc->wr && st == DP_OK) {
            st = dpv_writer_frame(sc->wr, p->it->rgb, p->it->pts, p->faces, p->n_faces, sc->s->t_real,
                                  sc->s->t_fake, sc->err, sizeof sc->err);
            if (st != DP_OK) set_err(sc, st, sc->err);
        }
        dp_video_frame fr;
        fill_frame(sc, p, &fr);
        sc->lat_sum += fr.latency_s;
        if (fr.latency_s > r->latency_max_s) r->latency_max_s = fr.latency_s;
        r->frames_analysed++;
        r->seconds_analysed = p->it->t;
        if (sc->o.on_frame && !sc->stop && sc->o.on_frame(&fr, sc->o.user)) sc->stop = 1;
        dpv_source_release(sc->src, p->it);
        p->it = NULL;
    }
    b->npend = 0;
    return st;
}

/* Scores the frames gathered so far and hands them on, after the batch the classifier has: with wait = 0 the
 * new batch goes to the classifier thread and this one goes on (files), else it is scored and handed on before
 * returning (live sources, the end, frames written but not analysed). */
static dp_status flush(scan *sc, int wait) {
    dp_status st = DP_OK;
    if (sc->fly) { /* the earlier batch first */
        classifier_wait(&sc->cls);
        st = finish_batch(sc, sc->fly);
        sc->fly = NULL;
    }
    batch *b = sc->cur;
    if (b->npend == 0) return st;
    if (b->ncrops > 0 && !wait && sc->cls.jt.started) {
        classifier_post(&sc->cls, b);
        sc->fly = b;
        sc->cur = b == &sc->bufs[0] ? &sc->bufs[1] : &sc->bufs[0];
        return st;
    }
    if (b->ncrops > 0) {
        if (sc->cls.jt.started) {
            classifier_post(&sc->cls, b);
            classifier_wait(&sc->cls);
        } else
            score_batch(sc->s, b);
    }
    dp_status fs = finish_batch(sc, b);
    return st != DP_OK ? st : fs;
}

static dp_status analyse(scan *sc, dpv_item *it) {
    const dpv_source_info *in = sc->info;
    dp_face_box boxes[MAX_FACES];
    int nb = 0, full = 0, ids[MAX_FACES];
    dp_status st = find_faces(sc, it, boxes, &nb, &full);
    if (st == DP_OK && (st = dpv_tracker_update(&sc->trk, boxes, nb, full, it->t, ids)) != DP_OK)
        dp_error(sc->s->ctx, st, "out of memory");
    if (st != DP_OK) {
        dpv_source_release(sc->src, it);
        return set_err(sc, st, dp_ctx_error(sc->s->ctx));
    }
    sc->analysed++;
    batch *b = sc->cur;
    pending *p = &b->pend[b->npend++];
    p->it = it;
    p->n_faces = 0;
    for (int i = 0; i < nb; i++) {
        if (ids[i] < 0) continue;
        dp_video_face *f = &p->faces[p->n_faces];
        memset(f, 0, sizeof *f);
        f->track_id = sc->trk.tr[ids[i]].id;
        f->box = boxes[i];
        p->crop_at[p->n_faces] = -1;
        int side = boxes[i].w > boxes[i].h ? boxes[i].w : boxes[i].h;
        if (side >= sc->o.min_face_scored) {
            st = crop_frame(sc->s, it, in->width, in->height, &boxes[i], &b->crops[b->ncrops]);
            if (st != DP_OK) return set_err(sc, st, dp_ctx_error(sc->s->ctx));
            p->sharp[p->n_faces] = sharpness(&b->crops[b->ncrops]);
            p->crop_at[p->n_faces] = b->ncrops++;
            f->scored = 1;
        }
        p->n_faces++;
    }
    /* classify now when a batch is full, the list is full, or (live) no newer frame waits: files fill whole
     * batches (the classifier thread scores one while this thread gathers the next; a batch of 8 costs less
     * per crop than 8 of one), live sources never hold a frame back */
    if (b->ncrops >= sc->s->batch || b->npend >= sc->max_pend || b->ncrops + MAX_FACES > MAX_PENDING * MAX_FACES ||
        (sc->live && dpv_source_pending(sc->src) == 0))
        return flush(sc, sc->live);
    return DP_OK;
}

static int cmp_range(const void *a, const void *b) {
    const dp_video_range *x = a, *y = b;
    return (x->t_start > y->t_start) - (x->t_start < y->t_start);
}

/* Per-track scores, verdicts, the video's verdict and the fake spans. */
static dp_status aggregate(scan *sc) {
    dp_video_result *r = sc->r;
    dp_video_scanner *s = sc->s;
    r->n_tracks = 0;
    if (sc->trk.n > 0 && !(r->tracks = calloc((size_t)sc->trk.n, sizeof *r->tracks))) return DP_ERR_NOMEM;
    int64_t longest = 0;
    for (int k = 0; k < sc->trk.n; k++)
        if (sc->trk.tr[k].n > longest) longest = sc->trk.tr[k].n;
    const float t_video = s->t_fake < DP_VIDEO_T_FAKE ? s->t_fake : DP_VIDEO_T_FAKE; /* the fake ranges' bar */
    float lt_fake = dp_logit(s->t_fake);
    int any_conf = 0, any_fake = 0, any_unc = 0;
    float best_conf = -INFINITY, best_any = -INFINITY;
    int cap = 0;
    for (int k = 0; k < sc->trk.n; k++) {
        const dpv_track *tr = &sc->trk.tr[k];
        dp_video_track *t = &r->tracks[r->n_tracks++];
        t->id = tr->id;
        t->t_start = tr->t_start;
        t->t_end = tr->t_end;
        t->n_seen = tr->n_seen;
        t->n_scored = tr->n;
        t->mean_side = tr->n_seen ? (float)(tr->side_sum / (double)tr->n_seen) : 0;
        t->logit = dpv_track_logit(tr, &t->n_used);
        t->ood_share = tr->n ? (float)tr->n_ood / (float)tr->n : 0;
        t->p_fake = (float)dp_sigmoid_d(t->logit);
        int64_t nf = 0;
        for (int64_t i = 0; i < tr->n; i++) nf += tr->logit[i] >= lt_fake;
        t->fake_share = tr->n ? (float)nf / (float)tr->n : 0;
        /* enough frames, and not a stray detection next to a much longer track */
        t->confident = tr->n >= DP_VIDEO_MIN_TRACK_FRAMES && tr->n * 10 >= longest;
        t->verdict = dpv_track_verdict(t->logit, nf, tr->n, t->confident, t->ood_share, s->t_real, s->t_fake);
        if (tr->n > 0 && t->p_fake > best_any) best_any = t->p_fake;
        if (t->confident) {
            any_conf = 1;
            any_fake |= t->verdict == DP_VERDICT_FAKE;
            any_unc |= t->verdict == DP_VERDICT_UNCERTAIN;
            if (t->p_fake > best_conf) best_conf = t->p_fake;
            dp_status st = dpv_track_ranges(tr, t_video, &r->ranges, &r->n_ranges, &cap);
            if (st != DP_OK) return st;
        }
    }
    r->verdict = !any_conf ? DP_VERDICT_UNCERTAIN : any_fake ? DP_VERDICT_FAKE : any_unc ? DP_VERDICT_UNCERTAIN : DP_VERDICT_REAL;
    r->p_fake = any_conf ? best_conf : best_any > -INFINITY ? best_any : 0.5f;
    if (r->n_ranges > 1) qsort(r->ranges, (size_t)r->n_ranges, sizeof *r->ranges, cmp_range);
    return DP_OK;
}

static void opts_defaults(dp_video_opts *o, int live) {
    if (o->every < 1) o->every = 1;
    if (o->fps < 0) o->fps = 0;
    if (o->max_width <= 0) o->max_width = 3840;
    if (o->max_height <= 0) o->max_height = 2160;
    if (o->max_seconds <= 0) o->max_seconds = live ? 0 : 6 * 3600;
    if (o->timeout_s <= 0) o->timeout_s = 10;
    if (o->min_face_scored <= 0) o->min_face_scored = 40;
    if (o->batch <= 0) o->batch = 8;
    /* files: 0, the source chooses (two frame threads for streams heavy to decode); live: one, frame threading
     * would delay every frame by one */
    if (o->decode_threads <= 0) o->decode_threads = live ? 1 : 0;
    if (o->max_samples <= 0) o->max_samples = 1000000;
}

dp_status dp_video_scan(dp_video_scanner *s, const char *source, const dp_video_opts *opts, dp_video_result **out) {
    if (!s || !source || !out) return dp_error(s ? s->ctx : NULL, DP_ERR_NULL, "dp_video_scan: NULL argument");
    *out = NULL;
    scan sc;
    memset(&sc, 0, sizeof sc);
    sc.s = s;
    if (opts) sc.o = *opts;
    int live = sc.o.live > 0 || (sc.o.live == 0 && dp_video_source_is_live(source));
    opts_defaults(&sc.o, live);
    if (sc.o.batch != s->batch) sc.o.batch = s->batch; /* the graphs were built for this batch */
    dp_video_result *r = calloc(1, sizeof *r);
    if (!r) return dp_error(s->ctx, DP_ERR_NOMEM, "dp_video_scan: out of memory");
    sc.r = r;
    snprintf(r->source, sizeof r->source, "%s", source);
    r->live = live;
    r->duration_s = -1;
    r->verdict = DP_VERDICT_UNCERTAIN;
    r->p_fake = 0.5f;
    *out = r;
    if (!(sc.bufs = calloc(2, sizeof *sc.bufs))) {
        set_err(&sc, DP_ERR_NOMEM, "out of memory");
        return dp_error(s->ctx, DP_ERR_NOMEM, "dp_video_scan: out of memory");
    }
    sc.cur = &sc.bufs[0];
    sc.t0 = dpv_now();
    sc.live = live;

    dpv_source_opts so = {.live = live,
                          .every = sc.o.every,
                          .decode_threads = sc.o.decode_threads,
                          .writing = sc.o.out_path != NULL,
                          .fps = sc.o.fps,
                          .max_seconds = sc.o.max_seconds,
                          .timeout_s = sc.o.timeout_s,
                          .max_width = sc.o.max_width,
                          .max_height = sc.o.max_height,
                          .input_options = sc.o.input_options};
    dp_limits lim;
    dp_ctx_limits(s->ctx, &lim);
    so.lim_side = lim.max_video_side;
    so.lim_frames = lim.max_video_frames;
    so.lim_seconds = (double)lim.max_video_seconds;
    dp_status st = dpv_source_open(source, &so, &sc.src, sc.err, sizeof sc.err);
    const int de_auto = sc.o.detect_every <= 0;
    if (de_auto) sc.o.detect_every = 5; /* replaced below from the stream's frame rate */
    if (st == DP_OK) {
        sc.info = dpv_source_get_info(sc.src);
        r->width = sc.info->width;
        r->height = sc.info->height;
        r->stream_fps = sc.info->fps;
        r->duration_s = sc.info->duration_s;
        r->has_audio = sc.info->has_audio;
        if (sc.o.min_face <= 0) {
            int sh = r->width < r->height ? r->width : r->height;
            sc.o.min_face = sh / 12 > 40 ? sh / 12 : 40;
        }
        if (de_auto) { /* the full search about every 0.4 s of video (1..10 analysed frames) */
            double per_s = sc.info->fps > 0 ? sc.info->fps / sc.o.every : 0;
            if (sc.o.fps > 0 && (per_s <= 0 || sc.o.fps < per_s)) per_s = sc.o.fps;
            int de = per_s > 0 ? (int)(per_s * 0.4) : 5;
            sc.o.detect_every = de < 1 ? 1 : de > 10 ? 10 : de;
        }
        sc.trk.max_misses = sc.o.detect_every * 2;
        int64_t fb = (int64_t)r->width * r->height * 4;
        sc.max_pend = (int)((64LL << 20) / fb);
        sc.max_pend = sc.max_pend < 2 ? 2 : sc.max_pend > MAX_PENDING ? MAX_PENDING : sc.max_pend;
        /* face finding on the grey frame shrunk so that the smallest face is about the cascade's window (20) */
        int d = sc.o.min_face / 20;
        dpv_source_set_gray_scale(sc.src, d < 1 ? 1 : d > 4 ? 4 : d);
        if (sc.o.out_path)
            st = dpv_writer_open(sc.o.out_path, r->width, r->height, sc.info->time_base, sc.info->fps, sc.info->audio,
                                 sc.info->audio_time_base, &sc.wr, sc.err, sizeof sc.err);
        if (st == DP_OK && finder_start(&sc.finder, s->fd, sc.info, sc.o.min_face) != DP_OK)
            st = dpv_fail(sc.err, sizeof sc.err, DP_ERR_STATE, "cannot start the face-search thread");
        if (st == DP_OK && classifier_start(&sc.cls, s) != DP_OK)
            st = dpv_fail(sc.err, sizeof sc.err, DP_ERR_STATE, "cannot start the classifier thread");
        if (st == DP_OK) st = dpv_source_start(sc.src, sc.err, sizeof sc.err);
    }
    if (st != DP_OK) set_err(&sc, st, sc.err);
    double last_item = dpv_now();
    while (st == DP_OK && !sc.stop) {
        if (sc.o.should_stop && sc.o.should_stop(sc.o.user)) {
            sc.stop = 1;
            break;
        }
        dpv_item *it;
        int k = dpv_source_next(sc.src, &it, 0.05);
        if (k < 0) { /* nothing yet: score what waits, then wait on */
            if ((sc.cur->npend > 0 || sc.fly) && (st = flush(&sc, 1)) != DP_OK) break;
            if (dpv_now() - last_item > sc.o.timeout_s + 5) { /* the decoder itself is stuck */
                st = set_err(&sc, DP_ERR_IO, "the source stopped delivering frames");
                break;
            }
            continue;
        }
        if (k == 0) break;
        last_item = dpv_now();
        if (it->kind == 1) {
            if (sc.wr && (st = dpv_writer_audio(sc.wr, it->pkt, sc.err, sizeof sc.err)) != DP_OK) set_err(&sc, st, sc.err);
            dpv_source_release(sc.src, it);
            continue;
        }
        if (live && it->analyse && dpv_now() - it->t_wall > LIVE_STALE_S && dpv_source_pending(sc.src) > 0) {
            it->analyse = 0; /* live: a newer frame waits, this one is already late — skip it */
            sc.dropped_late++;
        }
        if (!it->analyse) { /* only written (--out): after the frames before it */
            if (!sc.wr) {
                dpv_source_release(sc.src, it);
                continue;
            }
            if ((sc.cur->npend > 0 || sc.fly) && (st = flush(&sc, 1)) != DP_OK) {
                dpv_source_release(sc.src, it);
                break;
            }
            if (sc.wr && (st = dpv_writer_frame(sc.wr, it->rgb, it->pts, sc.last_faces, sc.n_last, s->t_real, s->t_fake,
                                                sc.err, sizeof sc.err)) != DP_OK)
                set_err(&sc, st, sc.err);
            dpv_source_release(sc.src, it);
            continue;
        }
        st = analyse(&sc, it);
    }
    if (sc.cur->npend > 0 || sc.fly) {
        dp_status fs = flush(&sc, 1);
        if (st == DP_OK) st = fs;
    }
    finder_stop(&sc.finder);
    job_thread_stop(&sc.cls.jt); /* after the flush: nothing is posted */
    for (int b = 0; b < 2; b++) { /* after an error: frames and crops not handed on */
        for (int i = 0; i < sc.bufs[b].ncrops; i++) dp_image_free(s->ctx, &sc.bufs[b].crops[i]);
        for (int k = 0; k < sc.bufs[b].npend; k++) dpv_source_release(sc.src, sc.bufs[b].pend[k].it);
    }
    free(sc.bufs);
    if (sc.src) {
        int limit = 0;
        char e[512];
        dp_status ss = dpv_source_status(sc.src, e, sizeof e, &limit);
        if (sc.stop || limit) r->stopped = 1;
        else if (ss != DP_OK) set_err(&sc, ss, e);
        else if (st == DP_OK) r->complete = 1;
        r->frames_decoded = dpv_source_decoded(sc.src);
        r->frames_dropped = dpv_source_dropped(sc.src) + sc.dropped_late;
        dpv_source_close(sc.src);
    }
    if (sc.wr) { /* keep what was analysed, even when the source broke mid-way */
        dp_status ws = dpv_writer_close(sc.wr, r->frames_analysed > 0, sc.err, sizeof sc.err);
        if (ws != DP_OK && r->frames_analysed > 0) set_err(&sc, ws, sc.err);
    }
    if (aggregate(&sc) != DP_OK) set_err(&sc, DP_ERR_NOMEM, "out of memory");
    dpv_tracker_free(&sc.trk);
    r->wall_s = dpv_now() - sc.t0;
    r->latency_mean_s = r->frames_analysed ? sc.lat_sum / (double)r->frames_analysed : 0;
    if (r->status != DP_OK) return dp_error(s->ctx, r->status, "%s", r->error);
    return DP_OK;
}

void dp_video_result_free(dp_video_result *r) {
    if (!r) return;
    free(r->tracks);
    free(r->ranges);
    free(r->samples);
    free(r);
}
