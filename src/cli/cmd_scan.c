/* doppel scan — deepfake detection on video (issue 6).
 *
 *   doppel scan VIDEO... [--json] [--csv timeline.csv] [--out annotated.mp4] [--every N | --fps F]
 *   doppel scan eval --list labels.csv [--json]
 *
 * The pipeline is the library's (include/doppel/video.h, src/video/); this
 * file parses, prints the progress bar / live lines, and the summaries.
 * docs/video.md describes it all. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/parse.h"
#include "doppel/doppel.h"
#include "doppel/detect.h"

#ifdef DP_HAVE_FFMPEG
#include "doppel/video.h"
#endif

#ifndef DP_SOURCE_DIR
#define DP_SOURCE_DIR "."
#endif

static const char usage_text[] =
    "usage: doppel scan VIDEO... [options]       files, '-' (stdin), /dev/video0, rtsp://..., http://...\n"
    "       doppel scan eval --list labels.csv [options]   (CSV lines: path,label with label 0/1 or real/fake)\n"
    "\n"
    "Finds the faces in every analysed frame, tracks them (one id per person), scores each face\n"
    "with the image detector and gives a verdict per track and per video, with the time ranges\n"
    "that look fake. Exit status: 0 every video real, 1 something fake or uncertain, 2 an error.\n"
    "\n"
    "  --json               one JSON object per video on stdout (live sources: one JSON line per frame too)\n"
    "  --timeline           with --json: a per-second p_fake timeline per track\n"
    "  --csv FILE           the per-face timeline: frame,time_s,track,x,y,w,h,logit,p_fake (one video)\n"
    "  --out FILE.mp4       the video with boxes, track ids and scores drawn (H.264, audio kept; one video)\n"
    "  --every N            analyse every Nth frame (default 1: all)\n"
    "  --fps F              analyse at most F frames per second of video\n"
    "  --live | --no-live   force live mode (drop frames to keep up) or file mode (default: by source)\n"
    "  --model M            detection model (default: models/" DP_DETECT_DEFAULT_MODEL "; a MesoNet checkpoint\n"
    "                       from 'doppel model import-keras', or MesoNet's Keras .h5 itself, works too)\n"
    "  --min-face PX        smallest face searched (default max(40, shorter side / 12))\n"
    "  --min-face-scored PX faces smaller than this are tracked, not scored (default 40)\n"
    "  --detect-every N     full face search every N analysed frames, tracked search between\n"
    "                       (default: about every 0.4 s of video, 1..10 frames)\n"
    "  --timeout S          no data for S seconds: the stream has stopped (default 10)\n"
    "  --max-seconds S      analyse at most S seconds of video (default 6 h for files, no limit live)\n"
    "  --max-size WxH       refuse larger video (default 3840x2160)\n"
    "  --threads N          threads for the classifier (default 2)\n"
    "  --decode-threads N   FFmpeg's decoder threads (default: 2 for 4:4:4, RGB or >8-bit files, else 1)\n"
    "  --input-option K=V   an FFmpeg demuxer/protocol option for opening the sources (repeatable), e.g.\n"
    "                       rtsp_transport=udp, or rtsp_flags=listen to receive an RTSP push; one that\n"
    "                       the source does not use is an error\n"
    "  --quiet              no progress bar\n";

#ifndef DP_HAVE_FFMPEG
int cmd_scan(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    fprintf(stderr, "doppel scan: this doppel was built without FFmpeg (install libavformat-dev libavcodec-dev "
                    "libswscale-dev libswresample-dev libavutil-dev and rebuild)\n");
    return 2;
}
#else

typedef struct scan_args {
    int json, timeline, quiet, threads;
    const char *csv, *out, *model, *list;
    const char *inopt[33]; /* --input-option values, NULL-terminated (vo.input_options) */
    int ninopt;
    dp_video_opts vo;
} scan_args;

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

/* Parses the options; positional arguments are moved to the front of argv, their count returned (-1 on error). */
static int parse(int argc, char **argv, scan_args *a) {
    memset(a, 0, sizeof *a);
    a->threads = 2;
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                                                         \
    do {                                                                                                               \
        if (!v) {                                                                                                      \
            fprintf(stderr, "doppel scan: %s needs a value\n", k);                                                    \
            return -1;                                                                                                 \
        }                                                                                                              \
        i++;                                                                                                           \
    } while (0)
#define BAD()                                                                                                          \
    do {                                                                                                               \
        fprintf(stderr, "doppel scan: bad value for %s: '%s'\n", k, v);                                               \
        return -1;                                                                                                     \
    } while (0)
        if (!strcmp(k, "--json")) a->json = 1;
        else if (!strcmp(k, "--timeline")) a->timeline = 1;
        else if (!strcmp(k, "--quiet")) a->quiet = 1;
        else if (!strcmp(k, "--live")) a->vo.live = 1;
        else if (!strcmp(k, "--no-live")) a->vo.live = -1;
        else if (!strcmp(k, "--csv")) {
            NEED();
            a->csv = v;
        }
        else if (!strcmp(k, "--out")) {
            NEED();
            a->out = v;
        }
        else if (!strcmp(k, "--model")) {
            NEED();
            a->model = v;
        }
        else if (!strcmp(k, "--list")) {
            NEED();
            a->list = v;
        }
        else if (!strcmp(k, "--every")) {
            NEED();
            if (!dp_parse_int(v, 1, 100000, &a->vo.every)) BAD();
        } else if (!strcmp(k, "--fps")) {
            NEED();
            if (!dp_parse_f64(v, 0.01, 1000, &a->vo.fps)) BAD();
        } else if (!strcmp(k, "--min-face")) {
            NEED();
            if (!dp_parse_int(v, 20, 4096, &a->vo.min_face)) BAD();
        } else if (!strcmp(k, "--min-face-scored")) {
            NEED();
            if (!dp_parse_int(v, 1, 4096, &a->vo.min_face_scored)) BAD();
        } else if (!strcmp(k, "--detect-every")) {
            NEED();
            if (!dp_parse_int(v, 1, 1000, &a->vo.detect_every)) BAD();
        } else if (!strcmp(k, "--timeout")) {
            NEED();
            if (!dp_parse_f64(v, 0.1, 3600, &a->vo.timeout_s)) BAD();
        } else if (!strcmp(k, "--max-seconds")) {
            NEED();
            if (!dp_parse_f64(v, 0.01, 1e7, &a->vo.max_seconds)) BAD();
        } else if (!strcmp(k, "--decode-threads")) {
            NEED();
            if (!dp_parse_int(v, 1, 16, &a->vo.decode_threads)) BAD();
        } else if (!strcmp(k, "--threads")) {
            NEED();
            if (!dp_parse_int(v, 1, 64, &a->threads)) BAD();
        } else if (!strcmp(k, "--input-option")) {
            NEED();
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || eq - v >= 128 || a->ninopt >= 32) BAD();
            a->inopt[a->ninopt++] = v;
            a->inopt[a->ninopt] = NULL;
            a->vo.input_options = a->inopt;
        } else if (!strcmp(k, "--max-size")) {
            NEED();
            /* strtol, not sscanf's %d: a number out of int's range would be undefined behaviour there */
            char *e;
            errno = 0;
            long w = strtol(v, &e, 10), h = 0;
            if (!errno && e != v && *e == 'x') {
                const char *hs = e + 1;
                h = strtol(hs, &e, 10);
                if (errno || e == hs || *e) h = 0;
            }
            if (w < 16 || h < 16 || w > 16384 || h > 16384) BAD();
            a->vo.max_width = (int)w, a->vo.max_height = (int)h;
        } else if (k[0] == '-' && k[1] == '-') {
            fprintf(stderr, "doppel scan: unknown option %s (see doppel scan --help)\n", k);
            return -1;
        } else argv[npos++] = argv[i];
#undef NEED
#undef BAD
    }
    if (a->vo.every > 1 && a->vo.fps > 0) {
        fprintf(stderr, "doppel scan: give --every or --fps, not both\n");
        return -1;
    }
    return npos;
}

/* ------------------------------------------------------------ per-frame callback */
typedef struct live_track {
    int id;
    double sum;
    int64_t n;
} live_track;

typedef struct cb_state {
    const scan_args *a;
    const char *source;
    cli_progress prog;
    int progress_on;
    double last_print;
    live_track tr[64];
    int ntr;
    float t_real, t_fake;
} cb_state;

static int on_frame(const dp_video_frame *f, void *user) {
    cb_state *c = user;
    if (f->live) {
        for (int i = 0; i < f->n_faces; i++) {
            const dp_video_face *x = &f->faces[i];
            if (!x->scored) continue;
            int k = 0;
            while (k < c->ntr && c->tr[k].id != x->track_id) k++;
            if (k == c->ntr) {
                if (c->ntr == 64) continue;
                c->tr[c->ntr++] = (live_track){x->track_id, 0, 0};
            }
            c->tr[k].sum += x->logit;
            c->tr[k].n++;
        }
        if (c->a->json) {
            char buf[4096];
            int n = dp_video_frame_json(c->source, f, buf, sizeof buf);
            if (n > 0 && (size_t)n < sizeof buf) printf("%s\n", buf);
            fflush(stdout);
        } else if (!c->a->quiet && f->elapsed_s - c->last_print >= 1.0) { /* a running verdict per track, each second */
            c->last_print = f->elapsed_s;
            fprintf(stderr, "[%.1f s] %.0f fps, %lld dropped, latency %.0f ms:", f->time_s, f->fps,
                    (long long)f->frames_dropped, f->latency_s * 1e3);
            if (c->ntr == 0) fprintf(stderr, " no face yet");
            for (int k = 0; k < c->ntr; k++) {
                double p = 1.0 / (1.0 + exp(-c->tr[k].sum / (double)c->tr[k].n));
                const char *v = c->tr[k].n < DP_VIDEO_MIN_TRACK_FRAMES ? "uncertain"
                                : p < c->t_real                       ? "real"
                                : p >= c->t_fake                      ? "fake"
                                                                      : "uncertain";
                fprintf(stderr, "  #%d %s (%.2f, %lld frames)", c->tr[k].id, v, p, (long long)c->tr[k].n);
            }
            fputc('\n', stderr);
        }
    } else if (c->progress_on) {
        int64_t total = f->frames_total > 0 ? f->frames_total : 1;
        if (!c->prog.enabled) {
            char label[96];
            const char *b = strrchr(c->source, '/');
            snprintf(label, sizeof label, "%.60s", b ? b + 1 : c->source);
            cli_progress_start(&c->prog, label, total, "frames", 1);
        }
        int64_t step = f->frames_decoded < total ? f->frames_decoded : total - 1;
        cli_progress_update(&c->prog, step, f->frames_analysed, "%d face%s", f->n_faces, f->n_faces == 1 ? "" : "s");
    }
    return g_interrupted != 0;
}

static int interrupted(void *user) {
    (void)user;
    return g_interrupted != 0;
}

static void print_text(const dp_video_result *r) {
    printf("%s: %s (p_fake %.3f)", r->source, dp_verdict_name(r->verdict), (double)r->p_fake);
    printf("  %lld frames analysed of %lld decoded", (long long)r->frames_analysed, (long long)r->frames_decoded);
    if (r->frames_dropped) printf(", %lld dropped", (long long)r->frames_dropped);
    printf(", %.1f s of video in %.1f s (%.1f frames/s)\n", r->seconds_analysed, r->wall_s,
           r->wall_s > 0 ? r->frames_analysed / r->wall_s : 0.0);
    for (int i = 0; i < r->n_tracks; i++) {
        const dp_video_track *t = &r->tracks[i];
        printf("  track %d: %.1f-%.1f s, %lld frames (%lld scored), face %.0f px: p_fake %.3f (mean logit %+.2f), "
               "%s%s\n",
               t->id, t->t_start, t->t_end, (long long)t->n_seen, (long long)t->n_scored, (double)t->mean_side,
               (double)t->p_fake, (double)t->logit, dp_verdict_name(t->verdict),
               t->confident ? "" : " (too few frames)");
    }
    if (r->n_tracks == 0) printf("  no face found: uncertain\n");
    for (int i = 0; i < r->n_ranges; i++)
        printf("  looks fake: %.1f-%.1f s (track %d, p_fake %.2f)\n", r->ranges[i].t_start, r->ranges[i].t_end,
               r->ranges[i].track_id, (double)r->ranges[i].p_fake);
    if (r->status != DP_OK) printf("  stopped early: %s\n", r->error);
}

static int print_json(const dp_video_result *r, int flags) {
    int n = dp_video_result_json(r, flags, NULL, 0);
    char *buf = malloc((size_t)n + 1);
    if (!buf) return 0;
    dp_video_result_json(r, flags, buf, (size_t)n + 1);
    printf("%s\n", buf);
    free(buf);
    return 1;
}

static int setup(const scan_args *a, dp_ctx **ctx, dp_video_scanner **sc) {
    if (dp_ctx_new(&(dp_ctx_opts){.threads = a->threads, .seed = 1}, ctx) != DP_OK) {
        fprintf(stderr, "doppel scan: out of memory\n");
        return 0;
    }
    if (dp_video_scanner_new(*ctx, a->model, DP_SOURCE_DIR, sc) != DP_OK) {
        fprintf(stderr, "doppel scan: %s\n", dp_ctx_error(*ctx));
        dp_ctx_free(*ctx);
        return 0;
    }
    return 1;
}

/* Scans one source; returns its result (NULL only on bad arguments / out of memory). */
static dp_video_result *scan_one(dp_video_scanner *sc, const scan_args *a, const char *src, const char *out,
                                 int progress) {
    cb_state cb;
    memset(&cb, 0, sizeof cb);
    cb.a = a;
    cb.source = src;
    cb.progress_on = progress && !a->quiet;
    cb.last_print = -10;
    cb.t_real = DP_DETECT_T_REAL;
    cb.t_fake = DP_DETECT_T_FAKE;
    dp_video_opts vo = a->vo;
    vo.out_path = out;
    vo.on_frame = on_frame;
    vo.should_stop = interrupted;
    vo.user = &cb;
    dp_video_result *r = NULL;
    dp_video_scan(sc, src, &vo, &r);
    if (cb.prog.enabled && r && (r->stopped || r->status != DP_OK)) /* ended early: the bar ends where it stopped */
        cb.prog.total = r->frames_decoded > 0 ? r->frames_decoded : 1;
    if (cb.prog.enabled && r) cli_progress_finish(&cb.prog, r->frames_analysed, "%d track%s", r->n_tracks,
                                                  r->n_tracks == 1 ? "" : "s");
    return r;
}

/* ------------------------------------------------------------ eval */
typedef struct ev_item {
    char *path;
    int label;
} ev_item;

static int read_list(const char *path, ev_item **items, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "doppel scan eval: %s: %s\n", path, strerror(errno));
        return 0;
    }
    char line[4200];
    int cap = 0, lineno = 0;
    *items = NULL;
    *n = 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) sl[1] = 0;
    else dir[0] = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        char *comma = strrchr(line, ',');
        if (!comma) {
            fprintf(stderr, "doppel scan eval: %s:%d: expected path,label\n", path, lineno);
            fclose(f);
            return 0;
        }
        *comma = 0;
        const char *lab = comma + 1;
        while (*lab == ' ') lab++;
        int label;
        if (!strcmp(lab, "1") || !strcasecmp(lab, "fake")) label = 1;
        else if (!strcmp(lab, "0") || !strcasecmp(lab, "real")) label = 0;
        else if (lineno == 1) continue; /* a header */
        else {
            fprintf(stderr, "doppel scan eval: %s:%d: label '%s' is not 0/1/real/fake\n", path, lineno, lab);
            fclose(f);
            return 0;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            ev_item *ni = realloc(*items, sizeof *ni * (size_t)cap);
            if (!ni) break;
            *items = ni;
        }
        char full[8400];
        if (line[0] == '/' || strstr(line, "://")) snprintf(full, sizeof full, "%s", line);
        else snprintf(full, sizeof full, "%s%s", dir, line); /* relative to the list */
        (*items)[*n].path = strdup(full);
        (*items)[*n].label = label;
        if ((*items)[*n].path) (*n)++;
    }
    fclose(f);
    return 1;
}

static int cmd_eval(int argc, char **argv) {
    scan_args a;
    int npos = parse(argc, argv, &a);
    if (npos < 0) return 2;
    if (!a.list || npos > 0) {
        fprintf(stderr, "usage: doppel scan eval --list labels.csv [--json] [--every N | --fps F] [--model M]\n");
        return 2;
    }
    ev_item *items;
    int n;
    if (!read_list(a.list, &items, &n)) return 2;
    if (n == 0) {
        fprintf(stderr, "doppel scan eval: %s lists no video\n", a.list);
        free(items);
        return 2;
    }
    dp_ctx *ctx;
    dp_video_scanner *sc;
    if (!setup(&a, &ctx, &sc)) {
        for (int i = 0; i < n; i++) free(items[i].path);
        free(items);
        return 2;
    }
    float *score = calloc((size_t)n, sizeof *score);
    int *label = calloc((size_t)n, sizeof *label);
    int m = 0, errors = 0, n_real = 0, fp = 0, correct = 0, unc = 0;
    cli_progress prog;
    cli_progress_start(&prog, "scan eval", n, "videos", !a.quiet);
    a.vo.live = -1;
    for (int i = 0; i < n && score && label; i++) {
        dp_video_result *r = scan_one(sc, &a, items[i].path, NULL, 0);
        if (!r || r->frames_analysed == 0) {
            fprintf(stderr, "doppel scan eval: %s: %s\n", items[i].path, r ? r->error : "out of memory");
            errors++;
        } else {
            if (r->status != DP_OK) fprintf(stderr, "doppel scan eval: %s: (partial) %s\n", items[i].path, r->error);
            score[m] = r->p_fake;
            label[m] = items[i].label;
            correct += (r->p_fake >= 0.5f) == (items[i].label == 1);
            unc += r->verdict == DP_VERDICT_UNCERTAIN;
            if (items[i].label == 0) n_real++, fp += r->verdict == DP_VERDICT_FAKE;
            if (a.json) {
                printf("{\"eval_item\":true,\"label\":%d,\"result\":", items[i].label);
                fflush(stdout);
                int len = dp_video_result_json(r, 0, NULL, 0);
                char *buf = malloc((size_t)len + 1);
                if (buf) {
                    dp_video_result_json(r, 0, buf, (size_t)len + 1);
                    printf("%s}\n", buf);
                    free(buf);
                }
            } else
                printf("%s,%d,%.4f,%s\n", items[i].path, items[i].label, (double)r->p_fake, dp_verdict_name(r->verdict));
            m++;
        }
        dp_video_result_free(r);
        cli_progress_update(&prog, i + 1, i + 1, NULL);
        if (g_interrupted) break;
    }
    cli_progress_finish(&prog, m, NULL);
    double auc = m > 0 ? dp_metric_auc(score, label, m) : NAN;
    double acc = m > 0 ? (double)correct / m : NAN, fpr = n_real > 0 ? (double)fp / n_real : NAN;
    if (a.json)
        printf("{\"videos\":%d,\"scored\":%d,\"errors\":%d,\"auc\":%s%.4f,\"accuracy\":%.4f,\"fpr_real\":%.4f,"
               "\"uncertain\":%.4f}\n",
               n, m, errors, isnan(auc) ? "null,\"auc_note\":" : "", isnan(auc) ? 0.0 : auc, isnan(acc) ? 0 : acc,
               isnan(fpr) ? 0 : fpr, m ? (double)unc / m : 0.0);
    else
        printf("videos %d, scored %d, errors %d: AUC %.4f, accuracy (p_fake >= 0.5) %.4f, FPR on real (verdict fake) "
               "%.4f, uncertain %.4f\n",
               n, m, errors, auc, acc, fpr, m ? (double)unc / m : 0.0);
    for (int i = 0; i < n; i++) free(items[i].path);
    free(items);
    free(score);
    free(label);
    dp_video_scanner_free(sc);
    dp_ctx_free(ctx);
    return errors ? 2 : 0;
}

int cmd_scan(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
    scan_args a;
    int npos = parse(argc - 1, argv + 1, &a);
    if (npos < 0) return 2;
    char **srcs = argv + 1;
    if (npos == 0) {
        fprintf(stderr, "doppel scan: no video given (see doppel scan --help)\n");
        return 2;
    }
    if ((a.out || a.csv) && npos > 1) {
        fprintf(stderr, "doppel scan: --out and --csv take one video\n");
        return 2;
    }
    dp_ctx *ctx;
    dp_video_scanner *sc;
    if (!setup(&a, &ctx, &sc)) return 2;
    int rc = 0;
    for (int i = 0; i < npos && !g_interrupted; i++) {
        dp_video_result *r = scan_one(sc, &a, srcs[i], a.out, 1);
        if (!r) {
            fprintf(stderr, "doppel scan: %s: %s\n", srcs[i], dp_ctx_error(ctx));
            rc = 2;
            continue;
        }
        if (r->status != DP_OK) {
            fprintf(stderr, "doppel scan: %s\n", r->error);
            if (r->frames_analysed > 0)
                fprintf(stderr, "doppel scan: %s: reporting the %lld frames analysed before that\n", srcs[i],
                        (long long)r->frames_analysed);
            rc = 2;
        }
        if (a.json) print_json(r, a.timeline ? DP_VIDEO_JSON_TIMELINE : 0);
        else print_text(r);
        fflush(stdout);
        if (a.csv && r->frames_analysed > 0 && dp_video_timeline_csv(ctx, r, a.csv) != DP_OK) {
            fprintf(stderr, "doppel scan: %s\n", dp_ctx_error(ctx));
            rc = 2;
        }
        if (rc == 0 && r->verdict != DP_VERDICT_REAL) rc = 1;
        dp_video_result_free(r);
    }
    dp_video_scanner_free(sc);
    dp_ctx_free(ctx);
    return rc;
}
#endif
