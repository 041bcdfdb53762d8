/* Face tracks across frames (greedy IoU matching) and their aggregation:
 * the track score (a trimmed mean of per-frame logits) and the fake spans. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "video/video_internal.h"

#define IOU_MATCH 0.3
#define LOGIT_CLIP 8.0f

/* How well a new box fits a track's last box: the IoU, or 0.3 when the
 * centres are close (within 0.4 of the track's side) and the sizes within a
 * factor 1.6 — VJ's boxes jump in size between the full and the tracked
 * search. */
static double match(const dp_face_box *box, const dp_face_box *tr) {
    double v = dpv_iou(box, tr);
    if (v >= IOU_MATCH) return v;
    double cx = box->x + box->w * 0.5 - (tr->x + tr->w * 0.5), cy = box->y + box->h * 0.5 - (tr->y + tr->h * 0.5);
    double ratio = (double)box->w / (tr->w > 0 ? tr->w : 1);
    if (sqrt(cx * cx + cy * cy) <= 0.4 * tr->w && ratio >= 1 / 1.6 && ratio <= 1.6) return IOU_MATCH;
    return v;
}

double dpv_iou(const dp_face_box *a, const dp_face_box *b) {
    int x0 = a->x > b->x ? a->x : b->x, y0 = a->y > b->y ? a->y : b->y;
    int x1 = a->x + a->w < b->x + b->w ? a->x + a->w : b->x + b->w;
    int y1 = a->y + a->h < b->y + b->h ? a->y + a->h : b->y + b->h;
    if (x1 <= x0 || y1 <= y0) return 0;
    double in = (double)(x1 - x0) * (y1 - y0);
    double un = (double)a->w * a->h + (double)b->w * b->h - in;
    return un > 0 ? in / un : 0;
}

dp_status dpv_tracker_update(dpv_tracker *t, const dp_face_box *boxes, int n, int may_open, double time_s, int *ids) {
    for (int i = 0; i < t->n; i++) t->tr[i].seen_this_frame = 0;
    for (int i = 0; i < n; i++) ids[i] = -1;
    /* greedy: the best remaining (box, track) pair first */
    for (;;) {
        double best = IOU_MATCH;
        int bi = -1, bt = -1;
        for (int i = 0; i < n; i++) {
            if (ids[i] >= 0) continue;
            for (int k = 0; k < t->n; k++) {
                if (!t->tr[k].alive || t->tr[k].seen_this_frame) continue;
                double v = match(&boxes[i], &t->tr[k].box);
                if (v >= best) best = v, bi = i, bt = k;
            }
        }
        if (bi < 0) break;
        ids[bi] = bt;
        t->tr[bt].seen_this_frame = 1;
    }
    for (int i = 0; i < n; i++) {
        if (ids[i] >= 0 || !may_open) continue;
        if (t->n == t->cap) {
            int c = t->cap ? t->cap * 2 : 8;
            dpv_track *nt = realloc(t->tr, sizeof *nt * (size_t)c);
            if (!nt) return DP_ERR_NOMEM;
            t->tr = nt, t->cap = c;
        }
        dpv_track *tr = &t->tr[t->n];
        memset(tr, 0, sizeof *tr);
        tr->id = ++t->next_id;
        tr->alive = 1;
        tr->seen_this_frame = 1;
        tr->t_start = time_s;
        ids[i] = t->n++;
    }
    for (int k = 0; k < t->n; k++) {
        dpv_track *tr = &t->tr[k];
        if (!tr->alive) continue;
        if (!tr->seen_this_frame) {
            if (++tr->misses > t->max_misses) tr->alive = 0;
            continue;
        }
        tr->misses = 0;
        tr->t_end = time_s;
        tr->n_seen++;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0) {
            dpv_track *tr = &t->tr[ids[i]];
            tr->box = boxes[i];
            tr->side_sum += boxes[i].w;
        }
    return DP_OK;
}

dp_status dpv_track_add_score(dpv_track *tr, double t, float logit, float sharp, int ood) {
    if (tr->n == tr->cap) {
        int64_t c = tr->cap ? tr->cap * 2 : 64;
        float *nl = realloc(tr->logit, sizeof *nl * (size_t)c);
        if (!nl) return DP_ERR_NOMEM;
        tr->logit = nl;
        float *ns = realloc(tr->sharp, sizeof *ns * (size_t)c);
        if (!ns) return DP_ERR_NOMEM;
        tr->sharp = ns;
        double *ntt = realloc(tr->t, sizeof *ntt * (size_t)c);
        if (!ntt) return DP_ERR_NOMEM;
        tr->t = ntt;
        tr->cap = c;
    }
    tr->logit[tr->n] = logit;
    tr->sharp[tr->n] = sharp;
    tr->t[tr->n] = t;
    tr->n++;
    tr->n_scored++;
    tr->n_ood += ood != 0;
    return DP_OK;
}

void dpv_tracker_free(dpv_tracker *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) {
        free(t->tr[i].logit);
        free(t->tr[i].sharp);
        free(t->tr[i].t);
    }
    free(t->tr);
    memset(t, 0, sizeof *t);
}

static float clipl(float v) { return fmaxf(-LOGIT_CLIP, fminf(LOGIT_CLIP, v)); }

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

float dpv_track_logit(const dpv_track *tr, int64_t *used) {
    if (used) *used = 0;
    if (tr->n == 0) return 0;
    float *v = malloc(sizeof *v * (size_t)tr->n);
    double s = 0;
    if (!v) { /* plain clipped mean */
        for (int64_t i = 0; i < tr->n; i++) s += clipl(tr->logit[i]);
        if (used) *used = tr->n;
        return (float)(s / (double)tr->n);
    }
    /* blurred frames (motion, focus) out: sharpness below half the track's median */
    float floor_sharp = 0;
    if (tr->sharp) {
        memcpy(v, tr->sharp, sizeof *v * (size_t)tr->n);
        qsort(v, (size_t)tr->n, sizeof *v, cmp_f);
        floor_sharp = 0.5f * v[tr->n / 2];
    }
    int64_t k = 0;
    for (int64_t i = 0; i < tr->n; i++)
        if (!tr->sharp || tr->sharp[i] >= floor_sharp) v[k++] = clipl(tr->logit[i]);
    qsort(v, (size_t)k, sizeof *v, cmp_f);
    int64_t cut = k / 10, m = 0;
    for (int64_t i = cut; i < k - cut; i++, m++) s += v[i];
    free(v);
    if (used) *used = m;
    return m ? (float)(s / (double)m) : 0;
}

static dp_status add_range(const dpv_track *tr, double r0, double r1, double psum, int64_t pn, dp_video_range **ranges,
                           int *n, int *cap) {
    if (r1 - r0 < 0.5) return DP_OK;
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 8;
        dp_video_range *nr = realloc(*ranges, sizeof *nr * (size_t)c);
        if (!nr) return DP_ERR_NOMEM;
        *ranges = nr, *cap = c;
    }
    dp_video_range *r = &(*ranges)[(*n)++];
    r->t_start = r0;
    r->t_end = r1;
    r->track_id = tr->id;
    r->p_fake = pn ? (float)(psum / (double)pn) : 0;
    return DP_OK;
}

dp_status dpv_track_ranges(const dpv_track *tr, float t_fake, dp_video_range **ranges, int *n, int *cap) {
    if (tr->n == 0) return DP_OK;
    double thr = log(t_fake / (1.0 - t_fake));
    int64_t lo = 0, hi = 0;
    double sum = 0, r0 = 0, r1 = 0, psum = 0;
    int64_t pn = 0;
    int in = 0;
    for (int64_t i = 0; i < tr->n; i++) {
        double ti = tr->t[i];
        /* the centred 1-second window around sample i (samples are in time order) */
        while (hi < tr->n && tr->t[hi] <= ti + 0.5) sum += clipl(tr->logit[hi++]);
        while (lo < hi && tr->t[lo] < ti - 0.5) sum -= clipl(tr->logit[lo++]);
        double m = sum / (double)(hi - lo);
        if (m < thr) continue;
        if (in && ti - r1 > 0.5) {
            dp_status st = add_range(tr, r0, r1, psum, pn, ranges, n, cap);
            if (st != DP_OK) return st;
            in = 0;
        }
        if (!in) in = 1, r0 = ti, psum = 0, pn = 0;
        r1 = ti;
        psum += 1.0 / (1.0 + exp(-m));
        pn++;
    }
    return in ? add_range(tr, r0, r1, psum, pn, ranges, n, cap) : DP_OK;
}

dp_verdict dpv_track_verdict(float logit, int64_t n_fake, int64_t n, int confident, float ood_share, float t_real,
                             float t_fake) {
    if (!confident || ood_share > 0.5f || n <= 0) return DP_VERDICT_UNCERTAIN;
    const float t_video = t_fake < DP_VIDEO_T_FAKE ? t_fake : DP_VIDEO_T_FAKE;
    if (logit < dp_logit(t_real)) return DP_VERDICT_REAL;
    /* the mean leans clearly fake, and a sustained share of frames would each be called fake as a photo */
    if (logit >= dp_logit(t_video) && n_fake >= DP_VIDEO_MIN_FAKE_FRAMES &&
        (float)n_fake >= DP_VIDEO_MIN_FAKE_SHARE * (float)n)
        return DP_VERDICT_FAKE;
    return DP_VERDICT_UNCERTAIN;
}
