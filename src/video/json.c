/* The one JSON serialiser of scan results (CLI and server), the live JSON
 * lines, the timeline CSV. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "video/video_internal.h"

static double r4(double v) { return isfinite(v) ? round(v * 1e4) / 1e4 : 0; }
static double r3(double v) { return isfinite(v) ? round(v * 1e3) / 1e3 : 0; }
static double r1(double v) { return isfinite(v) ? round(v * 10) / 10 : 0; }

/* Prints o into buf like snprintf (the length it needs; "" when it cannot) and frees it. */
static int emit(cJSON *o, char *buf, size_t n) {
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (n) buf[0] = 0;
    if (!t) return 0;
    size_t len = strlen(t);
    if (n) snprintf(buf, n, "%s", t);
    free(t);
    return (int)len;
}

static cJSON *obj(cJSON *parent, const char *name) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(parent, name, o);
    return o;
}

int dp_video_result_json(const dp_video_result *r, int flags, char *buf, size_t n) {
    if (n) buf[0] = 0;
    if (!r) return 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", r->source);
    cJSON_AddStringToObject(o, "verdict", dp_verdict_name(r->verdict));
    cJSON_AddNumberToObject(o, "p_fake", r4(r->p_fake));
    cJSON_AddBoolToObject(o, "complete", r->complete);
    if (r->stopped) cJSON_AddBoolToObject(o, "stopped", 1);
    if (r->status != DP_OK) cJSON_AddStringToObject(o, "error", r->error);
    cJSON *v = obj(o, "video");
    cJSON_AddNumberToObject(v, "width", r->width);
    cJSON_AddNumberToObject(v, "height", r->height);
    cJSON_AddNumberToObject(v, "fps", r3(r->stream_fps));
    cJSON_AddNumberToObject(v, "duration_s", r3(r->duration_s));
    cJSON_AddBoolToObject(v, "live", r->live);
    cJSON_AddBoolToObject(v, "audio", r->has_audio);
    cJSON *f = obj(o, "frames");
    cJSON_AddNumberToObject(f, "decoded", (double)r->frames_decoded);
    cJSON_AddNumberToObject(f, "analysed", (double)r->frames_analysed);
    cJSON_AddNumberToObject(f, "dropped", (double)r->frames_dropped);
    cJSON_AddNumberToObject(f, "faces_scored", (double)r->faces_scored);
    cJSON_AddNumberToObject(o, "seconds_analysed", r3(r->seconds_analysed));
    cJSON_AddNumberToObject(o, "wall_s", r3(r->wall_s));
    cJSON_AddNumberToObject(o, "fps", r1(r->wall_s > 0 ? r->frames_analysed / r->wall_s : 0));
    cJSON *l = obj(o, "latency_ms");
    cJSON_AddNumberToObject(l, "mean", r1(r->latency_mean_s * 1e3));
    cJSON_AddNumberToObject(l, "max", r1(r->latency_max_s * 1e3));
    cJSON *tracks = cJSON_AddArrayToObject(o, "tracks");
    for (int i = 0; i < r->n_tracks; i++) {
        const dp_video_track *t = &r->tracks[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddItemToArray(tracks, x);
        cJSON_AddNumberToObject(x, "id", t->id);
        cJSON_AddNumberToObject(x, "start_s", r3(t->t_start));
        cJSON_AddNumberToObject(x, "end_s", r3(t->t_end));
        cJSON_AddNumberToObject(x, "frames", (double)t->n_seen);
        cJSON_AddNumberToObject(x, "scored", (double)t->n_scored);
        cJSON_AddNumberToObject(x, "face_px", round(t->mean_side));
        cJSON_AddNumberToObject(x, "logit", r4(t->logit));
        cJSON_AddNumberToObject(x, "p_fake", r4(t->p_fake));
        cJSON_AddNumberToObject(x, "used", (double)t->n_used);
        cJSON_AddNumberToObject(x, "fake_share", r4(t->fake_share));
        cJSON_AddNumberToObject(x, "ood_share", r4(t->ood_share));
        cJSON_AddBoolToObject(x, "confident", t->confident);
        cJSON_AddStringToObject(x, "verdict", dp_verdict_name(t->verdict));
        if (!(flags & DP_VIDEO_JSON_TIMELINE)) continue;
        /* [second, p_fake of the mean logit in that second] */
        cJSON *tl = cJSON_AddArrayToObject(x, "timeline");
        for (int64_t j = 0; j < r->n_samples;) {
            if (r->samples[j].track_id != t->id) {
                j++;
                continue;
            }
            double sec = floor(r->samples[j].time_s), sum = 0;
            int cnt = 0;
            int64_t k = j;
            for (; k < r->n_samples && floor(r->samples[k].time_s) == sec; k++)
                if (r->samples[k].track_id == t->id) sum += r->samples[k].logit, cnt++;
            cJSON *pt = cJSON_CreateArray();
            cJSON_AddItemToArray(pt, cJSON_CreateNumber(sec));
            cJSON_AddItemToArray(pt, cJSON_CreateNumber(r4(1.0 / (1.0 + exp(-sum / cnt)))));
            cJSON_AddItemToArray(tl, pt);
            j = k;
        }
    }
    cJSON *rg = cJSON_AddArrayToObject(o, "fake_ranges");
    for (int i = 0; i < r->n_ranges; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddItemToArray(rg, x);
        cJSON_AddNumberToObject(x, "start_s", r3(r->ranges[i].t_start));
        cJSON_AddNumberToObject(x, "end_s", r3(r->ranges[i].t_end));
        cJSON_AddNumberToObject(x, "track", r->ranges[i].track_id);
        cJSON_AddNumberToObject(x, "p_fake", r4(r->ranges[i].p_fake));
    }
    return emit(o, buf, n);
}

int dp_video_frame_json(const char *source, const dp_video_frame *fr, char *buf, size_t n) {
    if (n) buf[0] = 0;
    if (!fr) return 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", source ? source : "");
    cJSON_AddNumberToObject(o, "frame", (double)fr->index);
    cJSON_AddNumberToObject(o, "time_s", r3(fr->time_s));
    cJSON *faces = cJSON_AddArrayToObject(o, "faces");
    for (int i = 0; i < fr->n_faces; i++) {
        const dp_video_face *x = &fr->faces[i];
        cJSON *f = cJSON_CreateObject();
        cJSON_AddItemToArray(faces, f);
        cJSON_AddNumberToObject(f, "track", x->track_id);
        const int box[4] = {x->box.x, x->box.y, x->box.w, x->box.h};
        cJSON_AddItemToObject(f, "box", cJSON_CreateIntArray(box, 4));
        if (x->scored) cJSON_AddNumberToObject(f, "p_fake", r4(x->p_fake));
    }
    cJSON_AddNumberToObject(o, "analysed", (double)fr->frames_analysed);
    cJSON_AddNumberToObject(o, "dropped", (double)fr->frames_dropped);
    cJSON_AddNumberToObject(o, "fps", r1(fr->fps));
    cJSON_AddNumberToObject(o, "latency_ms", r1(fr->latency_s * 1e3));
    return emit(o, buf, n);
}

dp_status dp_video_timeline_csv(dp_ctx *ctx, const dp_video_result *r, const char *path) {
    if (!r || !path) return dp_error(ctx, DP_ERR_NULL, "dp_video_timeline_csv: NULL argument");
    size_t len = strlen(path);
    char *tmp = malloc(len + 40);
    if (!tmp) return dp_error(ctx, DP_ERR_NOMEM, "out of memory");
    int fd = dpv_create_tmp(path, tmp, len + 40);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        dp_status st = dp_error(ctx, DP_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        return st;
    }
    fprintf(f, "frame,time_s,track,x,y,w,h,logit,p_fake\n");
    for (int64_t i = 0; i < r->n_samples; i++) {
        const dp_video_sample *s = &r->samples[i];
        fprintf(f, "%lld,%.3f,%d,%d,%d,%d,%d,%.4f,%.4f\n", (long long)s->frame, s->time_s, s->track_id, s->box.x,
                s->box.y, s->box.w, s->box.h, (double)s->logit, (double)s->p_fake);
    }
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        dp_status st = dp_error(ctx, DP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return DP_OK;
}
