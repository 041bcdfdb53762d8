/* doppel serve — video scan jobs (POST /api/v1/scan, GET /api/v1/jobs/ID).
 *
 * A scan runs on its own thread with its own scanner (video.h); scans run
 * one at a time (the machine's cores go to one pipeline). The upload is
 * written to a private folder (mkdtemp, mode 0700) under a fixed name,
 * because FFmpeg reads files; the folder is deleted as soon as the scan
 * ends. Only uploads whose first bytes are an MP4/MOV, Matroska/WebM or AVI
 * container are accepted (no playlists or other formats that make FFmpeg
 * open further files or URLs). Finished jobs are kept (newest max_kept, at
 * most an hour) for GET /api/v1/jobs/ID.
 *
 * Without video support in this build the scan endpoint answers 501. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"

#ifndef DP_HAVE_FFMPEG
struct serve_jobs {
    int unused;
};

int serve_jobs_supported(void) { return 0; }

int serve_jobs_new(serve_pool *pool, int max_kept, serve_jobs **out) {
    (void)pool, (void)max_kept;
    *out = calloc(1, sizeof **out);
    return *out != NULL;
}

void serve_jobs_free(serve_jobs *j) { free(j); }

void serve_jobs_submit(serve_jobs *j, void *data, size_t n, const char *name, void (*on_done)(void *), void *cls,
                       char *id, size_t n_id, serve_reply *out) {
    (void)j, (void)n, (void)name;
    free(data);
    if (n_id) id[0] = 0;
    out->status = 501;
    out->body = serve_error_json(501, "no_video", "this doppel was built without video support (FFmpeg)");
    if (on_done) on_done(cls);
}

void serve_jobs_get(serve_jobs *j, const char *id, serve_reply *out) {
    (void)j;
    out->status = 404;
    out->body = serve_error_json(404, "no_such_job", "no job '%.64s'", id);
}

#else
#include "doppel/video.h"

enum { J_FREE = 0, J_QUEUED, J_RUNNING, J_DONE, J_FAILED };
static const char *const STATE[] = {"free", "queued", "running", "done", "failed"};

typedef struct job {
    int state;
    char id[33];
    char name[256];
    char dir[4096], path[4200];
    int64_t frames_analysed, frames_total;
    double time_s, duration_s;
    cJSON *result;
    char error[600];
    time_t finished;
    void (*on_done)(void *);
    void *cls;
    serve_jobs *owner;
} job;

struct serve_jobs {
    serve_pool *pool;
    pthread_mutex_t mu, run_mu;
    pthread_cond_t idle;
    job *v;
    int n;
    int running_threads;
    int stopping;
};

int serve_jobs_supported(void) { return 1; }

int serve_jobs_new(serve_pool *pool, int max_kept, serve_jobs **out) {
    serve_jobs *j = calloc(1, sizeof *j);
    if (!j || !(j->v = calloc((size_t)max_kept, sizeof(job)))) {
        free(j);
        return 0;
    }
    j->pool = pool;
    j->n = max_kept;
    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_init(&j->run_mu, NULL);
    pthread_cond_init(&j->idle, NULL);
    *out = j;
    return 1;
}

void serve_jobs_free(serve_jobs *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    j->stopping = 1; /* running scans stop at their next frame */
    while (j->running_threads) pthread_cond_wait(&j->idle, &j->mu);
    pthread_mutex_unlock(&j->mu);
    for (int i = 0; i < j->n; i++) cJSON_Delete(j->v[i].result);
    free(j->v);
    pthread_mutex_destroy(&j->mu);
    pthread_mutex_destroy(&j->run_mu);
    pthread_cond_destroy(&j->idle);
    free(j);
}

/* The container from the first bytes; NULL when it is not one we accept. */
static const char *video_ext(const unsigned char *b, size_t n) {
    if (n >= 12 && (!memcmp(b + 4, "ftyp", 4) || !memcmp(b + 4, "moov", 4) || !memcmp(b + 4, "mdat", 4) ||
                    !memcmp(b + 4, "wide", 4) || !memcmp(b + 4, "free", 4)))
        return ".mp4";
    if (n >= 4 && b[0] == 0x1a && b[1] == 0x45 && b[2] == 0xdf && b[3] == 0xa3) return ".mkv";
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "AVI ", 4)) return ".avi";
    return NULL;
}

static int on_frame(const dp_video_frame *f, void *user) {
    job *jb = user;
    serve_jobs *j = jb->owner;
    pthread_mutex_lock(&j->mu);
    jb->frames_analysed = f->frames_analysed;
    jb->frames_total = f->frames_total;
    jb->time_s = f->time_s;
    jb->duration_s = f->duration_s;
    int stop = j->stopping;
    pthread_mutex_unlock(&j->mu);
    return stop;
}

static void remove_upload(job *jb) {
    if (jb->path[0]) unlink(jb->path);
    if (jb->dir[0]) rmdir(jb->dir);
    jb->path[0] = jb->dir[0] = 0;
}

static void *run_job(void *arg) {
    job *jb = arg;
    serve_jobs *j = jb->owner;
    pthread_mutex_lock(&j->run_mu); /* one scan at a time */
    pthread_mutex_lock(&j->mu);
    jb->state = J_RUNNING;
    int stopping = j->stopping;
    pthread_mutex_unlock(&j->mu);
    dp_ctx *ctx = NULL;
    dp_video_scanner *sc = NULL;
    dp_video_result *r = NULL;
    cJSON *res = NULL;
    char err[600] = "";
    if (stopping) snprintf(err, sizeof err, "the server is stopping");
    else if (dp_ctx_new(&(dp_ctx_opts){.threads = 2, .seed = 1}, &ctx) != DP_OK) snprintf(err, sizeof err, "cannot create a context");
    else if (dp_video_scanner_new(ctx, serve_pool_model_path(j->pool), NULL, &sc) != DP_OK)
        snprintf(err, sizeof err, "%s", dp_ctx_error(ctx));
    else {
        dp_video_opts o = {.max_seconds = 1800, .on_frame = on_frame, .user = jb};
        dp_video_scan(sc, jb->path, &o, &r);
        if (!r) snprintf(err, sizeof err, "%s", dp_ctx_error(ctx));
        else if (r->status != DP_OK && r->frames_analysed == 0)
            snprintf(err, sizeof err, "%s", r->error[0] ? r->error : "the video could not be read");
        else {
            int len = dp_video_result_json(r, DP_VIDEO_JSON_TIMELINE, NULL, 0);
            char *s = len > 0 ? malloc((size_t)len + 1) : NULL;
            if (s) {
                dp_video_result_json(r, DP_VIDEO_JSON_TIMELINE, s, (size_t)len + 1);
                res = cJSON_Parse(s);
                free(s);
            }
            if (!res) snprintf(err, sizeof err, "could not build the answer (out of memory?)");
            else {
                /* the display name, not the private temporary path */
                cJSON_ReplaceItemInObjectCaseSensitive(res, "file", cJSON_CreateString(jb->name));
                if (r->error[0]) cJSON_ReplaceItemInObjectCaseSensitive(res, "error", cJSON_CreateString("the video broke off before its end"));
            }
        }
    }
    dp_video_result_free(r);
    dp_video_scanner_free(sc);
    dp_ctx_free(ctx);
    pthread_mutex_unlock(&j->run_mu);
    pthread_mutex_lock(&j->mu);
    remove_upload(jb);
    jb->result = res;
    snprintf(jb->error, sizeof jb->error, "%s", err);
    jb->state = res ? J_DONE : J_FAILED;
    jb->finished = time(NULL);
    void (*done)(void *) = jb->on_done;
    void *cls = jb->cls;
    pthread_mutex_unlock(&j->mu);
    if (done) done(cls); /* the server's job slot */
    pthread_mutex_lock(&j->mu);
    if (--j->running_threads == 0) pthread_cond_broadcast(&j->idle);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* A free entry: unused, else the oldest finished one, or one finished more than an hour ago. Under mu. */
static job *free_entry(serve_jobs *j) {
    job *best = NULL;
    time_t now = time(NULL);
    for (int i = 0; i < j->n; i++) {
        job *jb = &j->v[i];
        if ((jb->state == J_DONE || jb->state == J_FAILED) && now - jb->finished > 3600) {
            cJSON_Delete(jb->result);
            memset(jb, 0, sizeof *jb);
        }
        if (jb->state == J_FREE) return jb;
        if ((jb->state == J_DONE || jb->state == J_FAILED) && (!best || jb->finished < best->finished)) best = jb;
    }
    if (best) {
        cJSON_Delete(best->result);
        memset(best, 0, sizeof *best);
    }
    return best;
}

void serve_jobs_submit(serve_jobs *j, void *data, size_t n, const char *name, void (*on_done)(void *), void *cls,
                       char *id, size_t n_id, serve_reply *out) {
    if (n_id) id[0] = 0;
    const char *ext = video_ext(data, n);
    if (!ext) {
        free(data);
        out->status = 415;
        out->body = serve_error_json(415, "not_a_video", "%s is not an MP4/MOV, WebM/MKV or AVI video", name);
        if (on_done) on_done(cls);
        return;
    }
    pthread_mutex_lock(&j->mu);
    job *jb = free_entry(j);
    if (jb) jb->state = J_QUEUED;
    pthread_mutex_unlock(&j->mu);
    if (!jb) {
        free(data);
        out->status = 503;
        out->body = serve_error_json(503, "too_many_jobs", "every job entry is in use; try again when a scan has finished");
        if (on_done) on_done(cls);
        return;
    }
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)(rand() ^ (int)time(NULL) >> (i % 8));
    for (int i = 0; i < 16; i++) snprintf(jb->id + 2 * i, 3, "%02x", rnd[i]);
    snprintf(jb->name, sizeof jb->name, "%s", name);
    jb->owner = j, jb->on_done = on_done, jb->cls = cls, jb->frames_total = -1, jb->duration_s = -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(jb->dir, sizeof jb->dir, "%s/doppel-serve-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
    int ok = mkdtemp(jb->dir) != NULL, fd = -1;
    if (ok) {
        snprintf(jb->path, sizeof jb->path, "%s/upload%s", jb->dir, ext);
        fd = open(jb->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        ok = fd >= 0;
        for (size_t off = 0; ok && off < n;) {
            ssize_t w = write(fd, (const char *)data + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) ok = 0;
            else off += (size_t)w;
        }
        if (fd >= 0 && close(fd) != 0) ok = 0;
    } else jb->dir[0] = 0;
    free(data);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (ok) {
        pthread_mutex_lock(&j->mu);
        j->running_threads++;
        pthread_mutex_unlock(&j->mu);
        if (pthread_create(&th, &at, run_job, jb) != 0) {
            pthread_mutex_lock(&j->mu);
            j->running_threads--;
            pthread_mutex_unlock(&j->mu);
            ok = 0;
        }
    }
    pthread_attr_destroy(&at);
    if (!ok) {
        pthread_mutex_lock(&j->mu);
        remove_upload(jb);
        memset(jb, 0, sizeof *jb);
        pthread_mutex_unlock(&j->mu);
        out->status = 503;
        out->body = serve_error_json(503, "cannot_start", "cannot store the upload or start the scan");
        if (on_done) on_done(cls);
        return;
    }
    snprintf(id, n_id, "%s", jb->id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "status", "queued");
    char url[80];
    snprintf(url, sizeof url, "/api/v1/jobs/%s", id);
    cJSON_AddStringToObject(o, "url", url);
    out->status = 202;
    out->body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
}

void serve_jobs_get(serve_jobs *j, const char *id, serve_reply *out) {
    pthread_mutex_lock(&j->mu);
    job *jb = NULL;
    for (int i = 0; i < j->n && !jb; i++)
        if (j->v[i].state != J_FREE && strlen(id) == 32 && !strcmp(j->v[i].id, id)) jb = &j->v[i];
    if (!jb) {
        pthread_mutex_unlock(&j->mu);
        out->status = 404;
        out->body = serve_error_json(404, "no_such_job", "no job '%.64s' (finished jobs are kept an hour)", id);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *p;
    cJSON_AddStringToObject(o, "id", jb->id);
    cJSON_AddStringToObject(o, "name", jb->name);
    cJSON_AddStringToObject(o, "status", STATE[jb->state]);
    p = cJSON_AddObjectToObject(o, "progress");
    cJSON_AddNumberToObject(p, "frames_analysed", (double)jb->frames_analysed);
    cJSON_AddNumberToObject(p, "frames_total", (double)jb->frames_total);
    cJSON_AddNumberToObject(p, "time_s", (double)(int64_t)(jb->time_s * 1000) / 1000);
    cJSON_AddNumberToObject(p, "duration_s", (double)(int64_t)(jb->duration_s * 1000) / 1000);
    double frac = jb->state >= J_DONE ? 1 : jb->duration_s > 0 ? jb->time_s / jb->duration_s : 0;
    cJSON_AddNumberToObject(p, "fraction", frac > 1 ? 1 : frac < 0 ? 0 : (double)(int)(frac * 1000) / 1000);
    if (jb->state == J_FAILED) cJSON_AddStringToObject(o, "error", jb->error);
    if (jb->result) cJSON_AddItemReferenceToObject(o, "result", jb->result);
    out->status = 200;
    out->body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o); /* the reference to the kept result is not freed */
    pthread_mutex_unlock(&j->mu);
}
#endif
