/* doppel scan (include/doppel/video.h): the pipeline on small videos made
 * here with doppel's own encoder (dp_video_write_test), the annotated output,
 * the aggregation, and bad input — a truncated MP4, a file that is not a
 * video, an empty file, a stream on stdin or over HTTP that stops or breaks
 * off — which must give a clear error, keep what was analysed, and never
 * hang. The HTTP stream is served by the ffmpeg program when it is installed
 * (not a dependency of doppel: the test skips visibly without it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "doppel/doppel.h"

#ifdef DP_HAVE_FFMPEG
#include "doppel/video.h"
#include "video/video_internal.h"

#define ASTRONAUT "/usr/lib/python3/dist-packages/skimage/data/astronaut.png"

static char g_dir[128];
static dp_ctx *g_ctx;
static dp_video_scanner *g_sc;
static int g_have_face; /* the astronaut picture is there (python3-skimage) */

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", g_dir, name); }

/* A 320x240 frame: the astronaut's portrait (224x224) on grey, or a gradient without one. */
static void make_frame(dp_image *img) {
    assert_int_equal(dp_image_alloc(g_ctx, 3, 240, 320, img), DP_OK);
    size_t pl = 240 * 320;
    for (int y = 0; y < 240; y++)
        for (int x = 0; x < 320; x++)
            for (int c = 0; c < 3; c++) img->data[c * pl + y * 320 + x] = 0.3f + 0.4f * (float)x / 320 * (c == 1);
    dp_image a = {0}, s = {0};
    if (dp_image_load(g_ctx, ASTRONAUT, 3, NULL, &a) != DP_OK) return;
    assert_int_equal(dp_image_resize(g_ctx, &a, 224, 224, &s), DP_OK);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 224; y++)
            memcpy(img->data + c * pl + (size_t)(y + 8) * 320 + 48, s.data + (size_t)c * 224 * 224 + (size_t)y * 224,
                   224 * sizeof(float));
    dp_image_free(g_ctx, &a);
    dp_image_free(g_ctx, &s);
    g_have_face = 1;
}

static void write_video_dx(const char *name, int frames, int audio, int dx, char *path, size_t n) {
    path_in(path, n, name);
    dp_image img;
    make_frame(&img);
    dp_status st = dp_video_write_test(g_ctx, path, &img, frames, 10, dx, audio);
    if (st != DP_OK) fprintf(stderr, "dp_video_write_test: %s\n", dp_ctx_error(g_ctx));
    assert_int_equal(st, DP_OK);
    dp_image_free(g_ctx, &img);
}

static void write_video(const char *name, int frames, int audio, char *path, size_t n) {
    write_video_dx(name, frames, audio, 0, path, n);
}

static int64_t file_size(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 ? (int64_t)s.st_size : -1;
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/doppel-test-scan-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 2, .seed = 1}, &g_ctx) != DP_OK) return -1;
    if (dp_video_scanner_new(g_ctx, NULL, DP_SOURCE_DIR, &g_sc) != DP_OK) {
        fprintf(stderr, "scanner: %s\n", dp_ctx_error(g_ctx));
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    dp_video_scanner_free(g_sc);
    dp_ctx_free(g_ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) return -1;
    return 0;
}

static dp_video_result *scan(const char *src, const dp_video_opts *o, dp_status *st) {
    dp_video_result *r = NULL;
    *st = dp_video_scan(g_sc, src, o, &r);
    assert_non_null(r);
    assert_int_equal(*st, r->status);
    return r;
}

/* ------------------------------------------------------------ the pipeline */
static void test_basic(void **state) {
    (void)state;
    char v[300], csv[300];
    write_video("basic.mp4", 20, 1, v, sizeof v);
    path_in(csv, sizeof csv, "basic.csv");
    dp_status st;
    dp_video_result *r = scan(v, NULL, &st);
    assert_int_equal(st, DP_OK);
    assert_true(r->complete);
    assert_int_equal(r->width, 320);
    assert_int_equal(r->height, 240);
    assert_int_equal(r->frames_decoded, 20);
    assert_int_equal(r->frames_analysed, 20);
    assert_int_equal(r->frames_dropped, 0);
    assert_true(r->has_audio);
    if (g_have_face) {
        assert_true(r->n_tracks >= 1);
        assert_true(r->tracks[0].n_scored >= 15); /* one still face: found in (nearly) every frame */
        assert_true(r->tracks[0].confident);
        assert_true(r->faces_scored >= 15);
        assert_true(r->n_samples == r->faces_scored);
        assert_true(r->p_fake >= 0 && r->p_fake <= 1);
    } else
        fprintf(stderr, "note: %s absent (python3-skimage): no face in the test video\n", ASTRONAUT);
    /* JSON parses and says the same */
    int n = dp_video_result_json(r, DP_VIDEO_JSON_TIMELINE, NULL, 0);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(dp_video_result_json(r, DP_VIDEO_JSON_TIMELINE, buf, (size_t)n + 1), n);
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "verdict")->valuestring, dp_verdict_name(r->verdict));
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "frames"), "analysed")->valueint, 20);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tracks")), r->n_tracks);
    cJSON_Delete(j);
    free(buf);
    assert_int_equal(dp_video_timeline_csv(g_ctx, r, csv), DP_OK);
    FILE *f = fopen(csv, "r");
    assert_non_null(f);
    int lines = 0;
    char line[256];
    while (fgets(line, sizeof line, f)) lines++;
    fclose(f);
    assert_int_equal(lines, 1 + (int)r->n_samples);
    dp_video_result_free(r);
    dp_video_result_free(NULL);
}

static int g_calls;
static int stop_after_3(const dp_video_frame *f, void *user) {
    (void)user;
    assert_true(f->frames_analysed >= 1);
    assert_true(f->elapsed_s >= 0);
    return ++g_calls >= 3;
}

static int always(void *user) {
    (void)user;
    return 1;
}

static void test_every_fps_stop(void **state) {
    (void)state;
    char v[300];
    write_video("every.mp4", 20, 0, v, sizeof v);
    dp_status st;
    dp_video_result *r = scan(v, &(dp_video_opts){.every = 2}, &st);
    assert_int_equal(st, DP_OK);
    assert_int_equal(r->frames_decoded, 20);
    assert_int_equal(r->frames_analysed, 10);
    dp_video_result_free(r);
    r = scan(v, &(dp_video_opts){.fps = 2.5}, &st); /* 2 s of video at 10 fps: 5 frames */
    assert_int_equal(st, DP_OK);
    assert_int_equal(r->frames_analysed, 5);
    dp_video_result_free(r);
    g_calls = 0;
    r = scan(v, &(dp_video_opts){.on_frame = stop_after_3}, &st);
    assert_int_equal(st, DP_OK);
    assert_true(r->stopped);
    assert_false(r->complete);
    assert_int_equal(r->frames_analysed, 3);
    dp_video_result_free(r);
    r = scan(v, &(dp_video_opts){.should_stop = always}, &st); /* cancelled before the first frame */
    assert_int_equal(st, DP_OK);
    assert_true(r->stopped);
    assert_int_equal(r->frames_analysed, 0);
    dp_video_result_free(r);
    /* limits: checked from the header, before any frame */
    r = scan(v, &(dp_video_opts){.max_width = 160, .max_height = 120}, &st);
    assert_int_equal(st, DP_ERR_ARG);
    assert_non_null(strstr(r->error, "larger than the limit"));
    assert_int_equal(r->frames_analysed, 0);
    dp_video_result_free(r);
    r = scan(v, &(dp_video_opts){.max_seconds = 0.95}, &st); /* frames at 0.0 .. 0.9 s */
    assert_int_equal(st, DP_OK);
    assert_true(r->stopped);
    assert_int_equal(r->frames_analysed, 10);
    dp_video_result_free(r);
}

/* The context's dp_limits (core.h): a header over them is refused before any frame, a stream
 * without one in its header is stopped at the limit with an error, the frames before it reported. */
static dp_video_result *scan_limited(const char *src, const dp_limits *l, dp_status *st) {
    dp_ctx *ctx;
    dp_video_scanner *sc;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx), DP_OK);
    assert_int_equal(dp_ctx_set_limits(ctx, l), DP_OK);
    assert_int_equal(dp_video_scanner_new(ctx, NULL, DP_SOURCE_DIR, &sc), DP_OK);
    dp_video_result *r = NULL;
    *st = dp_video_scan(sc, src, NULL, &r);
    assert_non_null(r);
    assert_int_equal(*st, r->status);
    if (*st != DP_OK) assert_string_equal(dp_ctx_error(ctx), r->error);
    dp_video_scanner_free(sc);
    dp_ctx_free(ctx);
    return r;
}

static void test_ctx_limits(void **state) {
    (void)state;
    char v[300], ts[300];
    write_video("lim.mp4", 20, 0, v, sizeof v); /* 320x240, 10 fps, 2 s; the MP4 header lists 20 frames */
    write_video("lim.ts", 20, 0, ts, sizeof ts); /* MPEG-TS: no frame count in its header */
    dp_status st;
    dp_video_result *r = scan_limited(v, &(dp_limits){.max_video_side = 200}, &st);
    assert_int_equal(st, DP_ERR_ARG);
    assert_non_null(strstr(r->error, "dp_limits.max_video_side"));
    assert_int_equal(r->frames_decoded, 0);
    dp_video_result_free(r);
    r = scan_limited(v, &(dp_limits){.max_video_frames = 5}, &st);
    assert_int_equal(st, DP_ERR_ARG);
    assert_non_null(strstr(r->error, "dp_limits.max_video_frames"));
    assert_int_equal(r->frames_decoded, 0);
    dp_video_result_free(r);
    r = scan_limited(ts, &(dp_limits){.max_video_frames = 5}, &st);
    assert_int_equal(st, DP_ERR_ARG);
    assert_non_null(strstr(r->error, "stopped after 5 frames"));
    assert_int_equal(r->frames_decoded, 5);
    assert_int_equal(r->frames_analysed, 5); /* what came before the limit is reported */
    assert_false(r->complete);
    dp_video_result_free(r);
    r = scan_limited(v, &(dp_limits){.max_video_seconds = 1}, &st);
    assert_int_equal(st, DP_ERR_ARG);
    assert_non_null(strstr(r->error, "dp_limits.max_video_seconds"));
    assert_int_equal(r->frames_decoded, 0);
    dp_video_result_free(r);
    r = scan_limited(v, &(dp_limits){.max_video_seconds = 2, .max_video_frames = 20, .max_video_side = 320}, &st);
    assert_int_equal(st, DP_OK); /* at the limits: accepted */
    assert_int_equal(r->frames_analysed, 20);
    dp_video_result_free(r);
}

/* The annotated copy: H.264 yuv420p, MP4 with the index in front, the audio kept. */
static void test_out(void **state) {
    (void)state;
    char v[300], out[300];
    write_video("in.mp4", 12, 1, v, sizeof v);
    path_in(out, sizeof out, "annotated.mp4");
    dp_status st;
    dp_video_result *r = scan(v, &(dp_video_opts){.out_path = out, .every = 3}, &st);
    assert_int_equal(st, DP_OK);
    assert_int_equal(r->frames_analysed, 4);
    dp_video_result_free(r);
    assert_true(file_size(out) > 0);
    AVFormatContext *fc = NULL;
    assert_int_equal(avformat_open_input(&fc, out, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(fc, NULL) >= 0);
    int vs = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    int as = av_find_best_stream(fc, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    assert_true(vs >= 0);
    assert_true(as >= 0);
    assert_int_equal(fc->streams[vs]->codecpar->codec_id, AV_CODEC_ID_H264);
    assert_int_equal(fc->streams[vs]->codecpar->format, AV_PIX_FMT_YUV420P);
    int frames = 0;
    AVPacket *pkt = av_packet_alloc();
    while (av_read_frame(fc, pkt) >= 0) {
        frames += pkt->stream_index == vs;
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    assert_int_equal(frames, 12); /* every frame written, analysed or not */
    avformat_close_input(&fc);
    /* faststart: 'moov' before 'mdat' */
    FILE *f = fopen(out, "rb");
    assert_non_null(f);
    unsigned char b[8];
    long off = 0, moov = -1, mdat = -1;
    while (fseek(f, off, SEEK_SET) == 0 && fread(b, 1, 8, f) == 8) {
        uint32_t sz = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (!memcmp(b + 4, "moov", 4)) moov = off;
        if (!memcmp(b + 4, "mdat", 4)) mdat = off;
        if (sz < 8) break;
        off += sz;
    }
    fclose(f);
    assert_true(moov >= 0 && mdat >= 0 && moov < mdat);
    /* audio MP4 cannot hold (PCM in Matroska): re-encoded to AAC */
    char pcm[300], out2[300];
    path_in(pcm, sizeof pcm, "pcm.mkv");
    path_in(out2, sizeof out2, "annotated2.mp4");
    dp_image img;
    make_frame(&img);
    assert_int_equal(dp_video_write_test(g_ctx, pcm, &img, 10, 10, 2, 2), DP_OK);
    dp_image_free(g_ctx, &img);
    r = scan(pcm, &(dp_video_opts){.out_path = out2}, &st);
    assert_int_equal(st, DP_OK);
    assert_true(r->has_audio);
    dp_video_result_free(r);
    fc = NULL;
    assert_int_equal(avformat_open_input(&fc, out2, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(fc, NULL) >= 0);
    as = av_find_best_stream(fc, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    assert_true(as >= 0);
    assert_int_equal(fc->streams[as]->codecpar->codec_id, AV_CODEC_ID_AAC);
    assert_true(fc->streams[as]->duration * av_q2d(fc->streams[as]->time_base) > 0.8); /* about 1 s of tone */
    avformat_close_input(&fc);
    /* no temporary file left next to it */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c tmp- > /dev/null", g_dir);
    assert_int_not_equal(system(cmd), 0);
}

/* ------------------------------------------------------------ bad input */
static void test_truncated(void **state) {
    (void)state;
    char v[300];
    write_video_dx("trunc.mp4", 30, 0, 6, v, sizeof v); /* moving: every frame costs bytes */
    int64_t sz = file_size(v);
    assert_int_equal(truncate(v, sz * 6 / 10), 0);
    dp_status st;
    char out[300];
    path_in(out, sizeof out, "trunc_out.mp4");
    dp_video_result *r = scan(v, &(dp_video_opts){.out_path = out}, &st);
    assert_int_not_equal(st, DP_OK);
    assert_false(r->complete);
    assert_true(strlen(r->error) > 0);
    assert_non_null(strstr(r->error, v));
    fprintf(stderr, "truncated: %s (%lld frames analysed)\n", r->error, (long long)r->frames_analysed);
    assert_true(r->frames_analysed > 0 && r->frames_analysed < 30); /* what came before is kept */
    dp_video_result_free(r);
    assert_true(file_size(out) > 0); /* the analysed part is written, as a whole file */
    /* cut before the index (the first 40 bytes): nothing to analyse, a clear error */
    assert_int_equal(truncate(v, 40), 0);
    r = scan(v, NULL, &st);
    assert_int_equal(st, DP_ERR_FORMAT);
    assert_int_equal(r->frames_analysed, 0);
    fprintf(stderr, "cut at 40 bytes: %s\n", r->error);
    assert_non_null(strstr(r->error, v));
    dp_video_result_free(r);
}

static void test_not_video(void **state) {
    (void)state;
    char p[300], e[300], out[300];
    path_in(p, sizeof p, "notes.mp4");
    path_in(e, sizeof e, "empty.mp4");
    path_in(out, sizeof out, "never.mp4");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (int i = 0; i < 200; i++) fprintf(f, "this is not a video, line %d\n", i);
    fclose(f);
    f = fopen(e, "w");
    assert_non_null(f);
    fclose(f);
    const char *bad[] = {p, e, "/nonexistent/video.mp4", DP_SOURCE_DIR "/models/" DP_DETECT_DEFAULT_MODEL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dp_status st;
        dp_video_result *r = scan(bad[i], &(dp_video_opts){.out_path = out}, &st);
        assert_int_not_equal(st, DP_OK);
        assert_int_equal(r->frames_analysed, 0);
        assert_int_equal(r->verdict, DP_VERDICT_UNCERTAIN);
        assert_non_null(strstr(r->error, bad[i]));
        fprintf(stderr, "%s\n", r->error);
        assert_string_equal(dp_ctx_error(g_ctx), r->error);
        dp_video_result_free(r);
        assert_int_equal(file_size(out), -1); /* no output file at all */
    }
    /* an XML file: not a video either */
    dp_status st;
    dp_video_result *r = scan(DP_SOURCE_DIR "/tests/data/face_tiny.xml", NULL, &st);
    assert_int_not_equal(st, DP_OK);
    dp_video_result_free(r);
}

/* Runs `doppel scan --json --timeout 1 -` with a pipe on stdin: writes the
 * first part of a streamable video (MPEG-TS), then either closes the pipe or
 * keeps it open without writing. Returns the exit status; out gets stdout. */
static int run_stdin(const char *video, double part, int close_it, char *out, size_t n, double *took) {
    int in[2], res[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(res), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(res[1], 1);
        close(in[0]), close(in[1]), close(res[0]), close(res[1]);
        execl(DP_CLI_PATH, DP_CLI_PATH, "scan", "--json", "--quiet", "--timeout", "1", "-", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(res[1]);
    signal(SIGPIPE, SIG_IGN);
    FILE *f = fopen(video, "rb");
    assert_non_null(f);
    int64_t sz = file_size(video), want = (int64_t)(sz * part), sent = 0;
    char buf[4096];
    while (sent < want) {
        size_t k = fread(buf, 1, (size_t)(want - sent < (int64_t)sizeof buf ? want - sent : (int64_t)sizeof buf), f);
        if (k == 0 || write(in[1], buf, k) != (ssize_t)k) break;
        sent += (int64_t)k;
    }
    fclose(f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (close_it) close(in[1]);
    size_t got = 0;
    int status = -1;
    for (;;) { /* read its output; never wait more than 60 s (a hang fails the test) */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double el = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (el > 60) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("doppel scan - did not end within 60 s");
        }
        fcntl(res[0], F_SETFL, O_NONBLOCK);
        ssize_t k = read(res[0], out + got, n - 1 - got);
        if (k > 0) got += (size_t)k;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            while ((k = read(res[0], out + got, n - 1 - got)) > 0) got += (size_t)k;
            *took = el;
            break;
        }
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    out[got] = 0;
    if (!close_it) close(in[1]);
    close(res[0]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_stdin_stops(void **state) {
    (void)state;
    char v[300];
    write_video_dx("stream.ts", 40, 0, 6, v, sizeof v);
    static char out[1 << 20];
    double took;
    /* the writer stops sending but keeps the pipe open: no data for 1 s → error, partial result */
    int rc = run_stdin(v, 0.5, 0, out, sizeof out, &took);
    fprintf(stderr, "stalled stream: exit %d after %.1f s\n", rc, took);
    assert_int_equal(rc, 2);
    const char *last = strrchr(out, '\n');
    assert_non_null(last);
    const char *p = out, *obj = NULL;
    while ((p = strstr(p, "{\"file\":\"-\",\"verdict\""))) obj = p++;
    assert_non_null(obj);
    cJSON *j = cJSON_Parse(obj);
    assert_non_null(j);
    assert_non_null(strstr(cJSON_GetObjectItem(j, "error")->valuestring, "stopped"));
    int analysed = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "frames"), "analysed")->valueint;
    fprintf(stderr, "  %s; %d frames analysed\n", cJSON_GetObjectItem(j, "error")->valuestring, analysed);
    assert_true(analysed > 0);
    cJSON_Delete(j);
    /* the pipe is closed mid-stream: the end of the stream, what came is reported */
    rc = run_stdin(v, 0.5, 1, out, sizeof out, &took);
    fprintf(stderr, "closed stream: exit %d after %.1f s\n", rc, took);
    assert_true(rc == 0 || rc == 1 || rc == 2);
    p = out, obj = NULL;
    while ((p = strstr(p, "{\"file\":\"-\",\"verdict\""))) obj = p++;
    assert_non_null(obj);
    j = cJSON_Parse(obj);
    assert_non_null(j);
    analysed = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "frames"), "analysed")->valueint;
    assert_true(analysed > 0 && analysed < 40);
    cJSON_Delete(j);
}

/* ------------------------------------------------------------ a live network stream
 * `ffmpeg -re -i clip -c copy -f mpegts -listen 1 http://127.0.0.1:PORT` serves the clip at its
 * real pace; doppel scans the URL (a live source: JSON lines per frame, frames dropped rather
 * than queued). Then the server is frozen (SIGSTOP: no more data) or killed (the connection
 * closes) after a few frames: a clear error or the end of the stream, the frames before it
 * reported, no hang. */
static int have_program(const char *name) {
    const char *path = getenv("PATH");
    char dir[1024], full[1100];
    while (path && *path) {
        size_t k = strcspn(path, ":");
        snprintf(dir, sizeof dir, "%.*s", (int)(k < sizeof dir - 1 ? k : sizeof dir - 1), path);
        snprintf(full, sizeof full, "%s/%s", dir, name);
        if (k > 0 && access(full, X_OK) == 0) return 1;
        path += k + (path[k] == ':');
    }
    return 0;
}

static int free_port_of(int type) { /* SOCK_STREAM (TCP) or SOCK_DGRAM (UDP) */
    int fd = socket(AF_INET, type, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Whether something listens on 127.0.0.1:port (/proc/net/tcp, state 0A), without connecting:
 * the server accepts one client only. */
static int listening(int port) {
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f) return 0;
    char line[512], want[32];
    snprintf(want, sizeof want, "0100007F:%04X", port);
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char local[64], remote[64], st[8];
        if (sscanf(line, " %*d: %63s %63s %7s", local, remote, st) == 3) found = !strcmp(local, want) && !strcmp(st, "0A");
    }
    fclose(f);
    return found;
}

static pid_t serve_http(const char *video, int port) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0), dup2(nul, 1), dup2(nul, 2);
        execlp("ffmpeg", "ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", video, "-c", "copy", "-f", "mpegts",
               "-listen", "1", url, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300 && !listening(port); i++) nanosleep(&(struct timespec){0, 50000000}, NULL);
    if (!listening(port)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("ffmpeg did not listen on port %d within 15 s", port);
    }
    return pid;
}

static void stop_server(pid_t pid) {
    kill(pid, SIGKILL);
    kill(pid, SIGCONT);
    waitpid(pid, NULL, 0);
}

/* Runs `doppel scan --json` on a live source: counts its per-frame lines (each with its latency), keeps the last
 * line (the summary) in last; returns pclose's status. */
static int run_live_cli(const char *cmd, char *last, size_t n, int *frame_lines) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    static char line[1 << 16];
    *frame_lines = 0;
    last[0] = 0;
    while (fgets(line, sizeof line, p)) {
        if (strstr(line, "\"frame\":")) {
            ++*frame_lines;
            assert_non_null(strstr(line, "\"latency_ms\":"));
        } else
            snprintf(last, n, "%s", line);
    }
    return pclose(p);
}

static pid_t g_server;
static int g_signal, g_signal_at, g_signalled;
static int signal_server(const dp_video_frame *f, void *user) {
    (void)user;
    if (!g_signalled && f->frames_analysed >= g_signal_at) g_signalled = kill(g_server, g_signal) == 0;
    return 0;
}

static void test_network(void **state) {
    (void)state;
    if (!have_program("ffmpeg")) {
        fprintf(stderr, "note: the ffmpeg program is absent: the network-stream test is skipped\n");
        skip();
    }
    alarm(120); /* a hang ends the test as a failure */
    char v[300], vl[300], url[64], cmd[512];
    write_video_dx("net.mp4", 30, 0, 2, v, sizeof v);       /* 3 s at 10 fps */
    write_video_dx("netlong.mp4", 100, 0, 2, vl, sizeof vl); /* 10 s: most of it still unsent when stopped */
    /* the whole stream through the CLI: one JSON line per analysed frame, then the summary */
    int port = free_port_of(SOCK_STREAM);
    pid_t srv = serve_http(v, port);
    snprintf(cmd, sizeof cmd, "'%s' scan --json --live --timeout 5 http://127.0.0.1:%d", DP_CLI_PATH, port);
    static char last[1 << 16];
    int frame_lines, rc = run_live_cli(cmd, last, sizeof last, &frame_lines);
    stop_server(srv);
    cJSON *j = cJSON_Parse(last);
    assert_non_null(j);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "video"), "live")));
    int analysed = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "frames"), "analysed")->valueint;
    assert_int_equal(frame_lines, analysed);
    assert_true(analysed >= 10); /* 30 sent; a live scan may drop some when the machine is busy */
    assert_non_null(cJSON_GetObjectItem(j, "latency_ms"));
    if (g_have_face) assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tracks")) >= 1);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) != 2); /* no error: the stream ended */
    cJSON_Delete(j);
    /* the server freezes after 5 analysed frames: no data for 1 s → "the stream stopped", frames kept */
    port = free_port_of(SOCK_STREAM);
    g_server = serve_http(vl, port);
    g_signal = SIGSTOP, g_signal_at = 5, g_signalled = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    dp_status st;
    dp_video_result *r = scan(url, &(dp_video_opts){.timeout_s = 1, .on_frame = signal_server}, &st);
    stop_server(g_server);
    fprintf(stderr, "http, server frozen after 5 frames: %s (%lld frames analysed)\n", r->error,
            (long long)r->frames_analysed);
    assert_true(r->live);
    if (r->frames_decoded < 100) { /* (on a very busy machine all may have come before the signal did) */
        assert_int_equal(st, DP_ERR_IO);
        assert_non_null(strstr(r->error, "the stream stopped"));
        assert_false(r->complete);
    }
    assert_true(r->frames_analysed >= 5);
    dp_video_result_free(r);
    /* the server is killed after 5 frames: the connection closes, what came is reported */
    port = free_port_of(SOCK_STREAM);
    g_server = serve_http(vl, port);
    g_signal = SIGKILL, g_signal_at = 5, g_signalled = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    r = scan(url, &(dp_video_opts){.timeout_s = 1, .on_frame = signal_server}, &st);
    stop_server(g_server);
    fprintf(stderr, "http, server killed after 5 frames: %s (%lld frames analysed)\n",
            st == DP_OK ? "the end of the stream" : r->error, (long long)r->frames_analysed);
    assert_true(g_signalled);
    assert_true(r->frames_analysed >= 5);
    assert_true(r->frames_decoded < 100); /* it ended with the connection, not with the clip */
    assert_true(r->complete || st != DP_OK);
    dp_video_result_free(r);
    alarm(0);
}

/* ------------------------------------------------------------ UDP (MPEG-TS), the sender stops
 * doppel listens on udp://127.0.0.1:PORT; `ffmpeg -re -i clip -c copy -f mpegts udp://127.0.0.1:PORT` sends
 * the clip at its pace once the port is bound (/proc/net/udp). UDP has no end of stream: when the sender
 * stops (killed after 5 analysed frames, or done with the whole clip), no data for --timeout seconds ends
 * the scan with "the stream stopped" (DP_ERR_IO, exit 2), the frames before it reported — never a hang. */
static pid_t g_sender;
static int kill_sender_after_5(const dp_video_frame *f, void *user) {
    (void)user;
    if (!g_signalled && f->frames_analysed >= 5) g_signalled = kill(g_sender, SIGKILL) == 0;
    return 0;
}

/* A shell that waits until something has bound the port (UDP) or listens on it (TCP), then becomes
 * `ffmpeg -nostdin -loglevel error ARGS` (exit 3: nothing there within 15 s). */
static pid_t ffmpeg_when_bound(int tcp, int port, const char *args) {
    char script[1400];
    snprintf(script, sizeof script,
             "i=0; while ! awk '%s {print $2}' /proc/net/%s | grep -qi ':%04X$'; do i=$((i+1)); "
             "[ $i -gt 300 ] && exit 3; sleep 0.05; done; exec ffmpeg -nostdin -loglevel error %s",
             tcp ? "$4 == \"0A\"" : "", tcp ? "tcp" : "udp", port, args);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0), dup2(nul, 1), dup2(nul, 2);
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static pid_t send_udp_when_bound(const char *video, int port) {
    char args[700];
    snprintf(args, sizeof args, "-re -i '%s' -c copy -f mpegts 'udp://127.0.0.1:%d?pkt_size=1316'", video, port);
    return ffmpeg_when_bound(0, port, args);
}

static void test_udp(void **state) {
    (void)state;
    if (!have_program("ffmpeg")) {
        fprintf(stderr, "note: the ffmpeg program is absent: the UDP test is skipped\n");
        skip();
    }
    alarm(120); /* a hang ends the test as a failure */
    char v[300], vl[300], cmd[512];
    write_video_dx("udp.mp4", 30, 0, 2, v, sizeof v);        /* 3 s at 10 fps */
    write_video_dx("udplong.mp4", 100, 0, 2, vl, sizeof vl); /* 10 s: most of it unsent when the sender dies */
    /* the whole clip through the CLI: JSON lines, then the summary with the error; exit 2 */
    int port = free_port_of(SOCK_DGRAM);
    pid_t snd = send_udp_when_bound(v, port);
    snprintf(cmd, sizeof cmd, "'%s' scan --json --timeout 2 udp://127.0.0.1:%d", DP_CLI_PATH, port);
    static char last[1 << 16];
    int frame_lines, rc = run_live_cli(cmd, last, sizeof last, &frame_lines);
    int sst;
    waitpid(snd, &sst, 0);
    assert_true(WIFEXITED(sst) && WEXITSTATUS(sst) == 0); /* the sender found the port and sent it all */
    cJSON *j = cJSON_Parse(last);
    assert_non_null(j);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "video"), "live")));
    assert_non_null(strstr(cJSON_GetObjectItem(j, "error")->valuestring, "the stream stopped"));
    int analysed = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "frames"), "analysed")->valueint;
    fprintf(stderr, "udp, whole clip: %d frames analysed, then: %s\n", analysed,
            cJSON_GetObjectItem(j, "error")->valuestring);
    assert_int_equal(frame_lines, analysed);
    assert_true(analysed >= 10); /* 30 sent; a live scan may drop some when the machine is busy */
    if (g_have_face) assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tracks")) >= 1);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    cJSON_Delete(j);
    /* the sender is killed after 5 analysed frames: "the stream stopped" after 1 s, the frames before it kept */
    port = free_port_of(SOCK_DGRAM);
    g_sender = send_udp_when_bound(vl, port);
    g_signalled = 0;
    char url[64];
    snprintf(url, sizeof url, "udp://127.0.0.1:%d", port);
    dp_status st;
    double t0 = dpv_now();
    dp_video_result *r = scan(url, &(dp_video_opts){.timeout_s = 1, .on_frame = kill_sender_after_5}, &st);
    double took = dpv_now() - t0;
    kill(g_sender, SIGKILL);
    waitpid(g_sender, NULL, 0);
    fprintf(stderr, "udp, sender killed after 5 frames: %s (%lld of %lld decoded frames analysed, %.1f s)\n", r->error,
            (long long)r->frames_analysed, (long long)r->frames_decoded, took);
    assert_true(g_signalled);
    assert_true(r->live);
    assert_int_equal(st, DP_ERR_IO);
    assert_non_null(strstr(r->error, "the stream stopped"));
    assert_false(r->complete);
    assert_true(r->frames_analysed >= 5);
    assert_true(r->frames_decoded < 100); /* it ended with the sender, not with the clip */
    dp_video_result_free(r);
    alarm(0);
}

/* ------------------------------------------------------------ RTSP (doppel receives a push)
 * doppel scan rtsp://127.0.0.1:PORT/live --input-option rtsp_flags=listen listens as an RTSP server;
 * `ffmpeg -re -i clip -c copy -f rtsp` pushes the clip to it (RTP over TCP) once the port is listening,
 * then ends the session (TEARDOWN): the scan ends complete. An input option FFmpeg does not use is an
 * error naming it (DP_ERR_ARG, exit 2), a malformed one is refused by the CLI. */
static pid_t push_rtsp_when_listening(const char *video, int port) {
    char args[700];
    snprintf(args, sizeof args, "-re -i '%s' -c copy -rtsp_transport tcp -f rtsp 'rtsp://127.0.0.1:%d/live'", video, port);
    return ffmpeg_when_bound(1, port, args);
}

/* The last JSON line of a live scan of a 30-frame clip that ended with the stream: complete, one line per
 * analysed frame, most frames analysed (a live scan may drop some when the machine is busy), the face
 * tracked, exit 0 or 1. */
static void assert_live_complete(const char *what, const char *last, int frame_lines, int rc) {
    cJSON *j = cJSON_Parse(last);
    assert_non_null(j);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "video"), "live")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "complete")));
    int analysed = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "frames"), "analysed")->valueint;
    fprintf(stderr, "%s: %d frames analysed\n", what, analysed);
    assert_int_equal(frame_lines, analysed);
    assert_true(analysed >= 10);
    if (g_have_face) assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tracks")) >= 1);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) != 2);
    cJSON_Delete(j);
}

/* Pulling from an RTSP server, as from an IP camera: tools/rtsp_serve.py (GStreamer's RTSP server, Debian's
 * gir1.2-gst-rtsp-server-1.0) serves the clip's frames as Motion-JPEG over RTP; doppel connects, reads to the
 * end of the stream, and reports a complete live scan. Skipped where that server is not installed. */
static void test_rtsp_pull(void **state) {
    (void)state;
    if (!have_program("ffmpeg") ||
        system("/usr/bin/python3 -c 'import gi; gi.require_version(\"GstRtspServer\", \"1.0\"); "
               "from gi.repository import GstRtspServer' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "note: no RTSP server (ffmpeg, /usr/bin/python3 with gir1.2-gst-rtsp-server-1.0 and "
                        "gstreamer1.0-plugins-good): the RTSP pull test is skipped\n");
        skip();
    }
    alarm(120); /* a hang ends the test as a failure */
    char v[300], dir[300], cmd[1024];
    write_video_dx("pull.mp4", 30, 0, 2, v, sizeof v); /* 3 s at 10 fps */
    path_in(dir, sizeof dir, "pull-frames");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -loglevel error -i '%s' '%s/f_%%03d.png'", v, dir);
    assert_int_equal(system(cmd), 0);
    int port = free_port_of(SOCK_STREAM), fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t srv = fork();
    assert_true(srv >= 0);
    if (srv == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0), dup2(fd[1], 1), dup2(nul, 2);
        close(fd[0]);
        char port_s[16], pattern[400], script[400];
        snprintf(port_s, sizeof port_s, "%d", port);
        snprintf(pattern, sizeof pattern, "%s/f_%%03d.png", dir);
        snprintf(script, sizeof script, "%s/tools/rtsp_serve.py", DP_SOURCE_DIR);
        execl("/usr/bin/python3", "python3", script, port_s, pattern, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char ready[128] = "";
    FILE *out = fdopen(fd[0], "r");
    assert_non_null(out);
    assert_non_null(fgets(ready, sizeof ready, out)); /* "serving rtsp://..." once it listens */
    assert_non_null(strstr(ready, "serving"));
    snprintf(cmd, sizeof cmd, "'%s' scan --json --timeout 5 rtsp://127.0.0.1:%d/cam", DP_CLI_PATH, port);
    static char last[1 << 16];
    int frame_lines, rc = run_live_cli(cmd, last, sizeof last, &frame_lines);
    kill(srv, SIGTERM);
    waitpid(srv, NULL, 0);
    fclose(out);
    assert_live_complete("rtsp pull from a server", last, frame_lines, rc); /* the server's end of stream ends it */
}

static void test_rtsp(void **state) {
    (void)state;
    if (!have_program("ffmpeg")) {
        fprintf(stderr, "note: the ffmpeg program is absent: the RTSP test is skipped\n");
        skip();
    }
    alarm(120); /* a hang ends the test as a failure */
    char v[300], cmd[768];
    write_video_dx("rtsp.mp4", 30, 0, 2, v, sizeof v); /* 3 s at 10 fps */
    int port = free_port_of(SOCK_STREAM);
    pid_t snd = push_rtsp_when_listening(v, port);
    snprintf(cmd, sizeof cmd,
             "'%s' scan --json --timeout 5 --input-option rtsp_flags=listen --input-option timeout=30 "
             "rtsp://127.0.0.1:%d/live",
             DP_CLI_PATH, port);
    static char last[1 << 16];
    int frame_lines, rc = run_live_cli(cmd, last, sizeof last, &frame_lines);
    int sst;
    waitpid(snd, &sst, 0);
    assert_true(WIFEXITED(sst) && WEXITSTATUS(sst) == 0); /* the sender found the port and pushed it all */
    assert_live_complete("rtsp push, whole clip", last, frame_lines, rc);
    /* an option nobody uses: an error naming it, no frame read */
    dp_status st;
    const char *const bogus[] = {"probesize=1000000", "no_such_option=1", NULL}; /* the first is taken */
    dp_video_result *r = scan(v, &(dp_video_opts){.input_options = bogus}, &st);
    assert_int_equal(st, DP_ERR_ARG);
    assert_non_null(strstr(r->error, "no_such_option"));
    assert_int_equal(r->frames_analysed, 0);
    dp_video_result_free(r);
    const char *const malformed[] = {"=1", NULL};
    r = scan(v, &(dp_video_opts){.input_options = malformed}, &st);
    assert_int_equal(st, DP_ERR_ARG);
    dp_video_result_free(r);
    snprintf(cmd, sizeof cmd, "'%s' scan --quiet --input-option novalue '%s' 2>/dev/null", DP_CLI_PATH, v);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    alarm(0);
}

/* ------------------------------------------------------------ pixel formats other than 8-bit planar YUV
 * 10-bit YUV (FFV1, yuv420p10le in Matroska), packed RGB (rawvideo rgb24 in NUT), and what cameras send
 * (NV12, packed YUYV 4:2:2, MJPEG, whose full-range yuvj422p takes doppel's own YUV path), made with the ffmpeg
 * program from doppel's own yuv420p clip: libswscale converts these frames to RGB24 (the fallback), the
 * grey and the crops come from that copy. The same face must be found in every frame and scored about as
 * in the 8-bit original (the conversions differ by rounding only). */
static void test_pixel_formats(void **state) {
    (void)state;
    if (!have_program("ffmpeg")) {
        fprintf(stderr, "note: the ffmpeg program is absent: the pixel-format test is skipped\n");
        skip();
    }
    char v[300], cmd[1200];
    write_video("pix.mp4", 20, 0, v, sizeof v);
    dp_status st;
    dp_video_result *r0 = scan(v, NULL, &st);
    assert_int_equal(st, DP_OK);
    static const struct {
        const char *name, *args, *pix;
        int yuv; /* 0: libswscale's RGB24 copy; 2: doppel's own full-range planar YUV path */
    } conv[] = {
        {"pix10.mkv", "-c:v ffv1 -pix_fmt yuv420p10le", "yuv420p10le", 0},
        {"pixrgb.nut", "-c:v rawvideo -pix_fmt rgb24 -f nut", "rgb24", 0},
        /* what cameras send: semi-planar NV12, packed YUYV 4:2:2, and MJPEG (decoded as full-range yuvj422p) */
        {"pixnv12.nut", "-c:v rawvideo -pix_fmt nv12 -f nut", "nv12", 0},
        {"pixyuyv.nut", "-c:v rawvideo -pix_fmt yuyv422 -f nut", "yuyv422", 0},
        {"pixmjpeg.avi", "-c:v mjpeg -pix_fmt yuvj422p -q:v 2 -f avi", "mjpeg yuvj422p", 2},
    };
    for (size_t c = 0; c < sizeof conv / sizeof conv[0]; c++) {
        char out[300];
        path_in(out, sizeof out, conv[c].name);
        snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -loglevel error -y -i '%s' %s '%s'", v, conv[c].args, out);
        assert_int_equal(system(cmd), 0);
        /* the decoded frames really take the fallback: an RGB24 copy, no YUV reference */
        dpv_source_opts so = {.every = 1, .timeout_s = 10, .max_width = 4096, .max_height = 4096};
        dpv_source *src;
        char err[512];
        assert_int_equal(dpv_source_open(out, &so, &src, err, sizeof err), DP_OK);
        assert_int_equal(dpv_source_start(src, err, sizeof err), DP_OK);
        dpv_item *it = NULL;
        int k;
        while ((k = dpv_source_next(src, &it, 5.0)) == 1 && it->kind != 0) dpv_source_release(src, it);
        assert_int_equal(k, 1);
        assert_int_equal(it->yuv, conv[c].yuv);
        if (!conv[c].yuv) {
            assert_true(!it->frame || !it->frame->buf[0]); /* no reference to the decoded frame kept... */
            assert_non_null(it->rgb); /* ...the RGB24 copy instead */
        }
        dpv_source_release(src, it);
        dpv_source_close(src);
        dp_video_result *r = scan(out, NULL, &st);
        assert_int_equal(st, DP_OK);
        assert_true(r->complete);
        assert_int_equal(r->frames_analysed, 20);
        assert_int_equal(r->width, 320);
        if (g_have_face) {
            assert_int_equal(r->n_tracks, r0->n_tracks);
            assert_int_equal(r->faces_scored, r0->faces_scored);
            double worst = 0, box = 0;
            for (int64_t i = 0; i < r->n_samples && i < r0->n_samples; i++) {
                double d = fabs(r->samples[i].logit - r0->samples[i].logit);
                double b = abs(r->samples[i].box.x - r0->samples[i].box.x) + abs(r->samples[i].box.w - r0->samples[i].box.w);
                if (d > worst) worst = d;
                if (b > box) box = b;
            }
            fprintf(stderr, "%s (%s): %lld faces scored, track logit %.4f vs %.4f (8-bit yuv420p), largest frame "
                    "difference %.4f, box %.0f px\n", conv[c].name, conv[c].pix, (long long)r->faces_scored,
                    r->tracks[0].logit, r0->tracks[0].logit, worst, box);
            /* (measured: track logits 0.13 and 0.34 apart, frames up to 2.4 — a still face whose box moves by
             * 2-4 px between conversions; the chroma is upsampled differently by ffmpeg's conversion) */
            assert_true(fabs(r->tracks[0].logit - r0->tracks[0].logit) < 1.0);
            assert_true(box <= 8);
        }
        dp_video_result_free(r);
    }
    dp_video_result_free(r0);
}

/* ------------------------------------------------------------ aggregation */
static void test_aggregation(void **state) {
    (void)state;
    dpv_track tr;
    memset(&tr, 0, sizeof tr);
    tr.id = 7;
    /* 10 s at 10 fps: real (-3) except 4.0-6.0 s fake (+3); two outliers */
    for (int i = 0; i < 100; i++) {
        double t = i / 10.0;
        float l = t >= 4.0 && t < 6.0 ? 3.0f : -3.0f;
        if (i == 10) l = 50.0f;  /* clipped to 8, then trimmed */
        if (i == 90) l = -50.0f;
        assert_int_equal(dpv_track_add_score(&tr, t, l, i == 50 ? 0.01f : 1.0f, 0), DP_OK); /* one blurred */
    }
    int64_t used;
    float m = dpv_track_logit(&tr, &used);
    /* the blurred frame (a +3 at 5.0 s) out; +3 x19, +8 x1 (clipped), -3 x78, -8 x1 = 99; trimmed 9 each side:
     * the lowest (-8, eight -3) and highest (8, eight +3) gone: 70 x -3, 11 x +3 */
    assert_int_equal(used, 81);
    assert_float_equal(m, (70 * -3.0f + 11 * 3.0f) / 81, 1e-4);
    dp_video_range *rg = NULL;
    int n = 0, cap = 0;
    assert_int_equal(dpv_track_ranges(&tr, 0.7f, &rg, &n, &cap), DP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rg[0].track_id, 7);
    assert_true(fabs(rg[0].t_start - 4.0) <= 0.31 && fabs(rg[0].t_end - 5.9) <= 0.31);
    assert_true(rg[0].p_fake > 0.7f);
    free(rg);
    free(tr.logit);
    free(tr.sharp);
    free(tr.t);
    /* the video rule: t_real 0.3, t_fake 0.9995 (the shipped model's) → t_video 0.95 (logit 2.94) */
    const float tr3 = 0.3f, tf = 0.9995f;
    assert_int_equal(dpv_track_verdict(4.6f, 51, 751, 1, 0, tr3, tf), DP_VERDICT_FAKE);      /* mean 0.99, 6.8 % */
    assert_int_equal(dpv_track_verdict(4.6f, 10, 751, 1, 0, tr3, tf), DP_VERDICT_UNCERTAIN); /* 1.3 % of frames */
    assert_int_equal(dpv_track_verdict(4.5f, 0, 50, 1, 0, tr3, tf), DP_VERDICT_UNCERTAIN);   /* none as a photo */
    assert_int_equal(dpv_track_verdict(2.9f, 40, 50, 1, 0, tr3, tf), DP_VERDICT_UNCERTAIN);  /* mean under 0.95 */
    assert_int_equal(dpv_track_verdict(7.9f, 2, 50, 1, 0, tr3, tf), DP_VERDICT_UNCERTAIN);   /* under 3 frames */
    assert_int_equal(dpv_track_verdict(-8.0f, 0, 751, 1, 0, tr3, tf), DP_VERDICT_REAL);
    assert_int_equal(dpv_track_verdict(-8.0f, 0, 751, 0, 0, tr3, tf), DP_VERDICT_UNCERTAIN); /* not confident */
    assert_int_equal(dpv_track_verdict(8.0f, 50, 50, 1, 0.6f, tr3, tf), DP_VERDICT_UNCERTAIN); /* mostly OOD */
    /* a model whose t_fake is under 0.95 (MesoNet: 0.7): t_video = t_fake */
    assert_int_equal(dpv_track_verdict(2.9f, 700, 751, 1, 0, tr3, 0.7f), DP_VERDICT_FAKE);
    assert_int_equal(dpv_track_verdict(0.5f, 300, 751, 1, 0, tr3, 0.7f), DP_VERDICT_UNCERTAIN);
    /* tracker: a face that moves a little keeps its id; a far one gets a new id */
    dpv_tracker t = {0};
    t.max_misses = 2;
    int ids[2];
    dp_face_box a = {100, 100, 80, 80, 10}, b = {108, 104, 84, 84, 10}, c = {300, 50, 60, 60, 10};
    assert_int_equal(dpv_tracker_update(&t, &a, 1, 1, 0.0, ids), DP_OK);
    assert_int_equal(t.tr[ids[0]].id, 1);
    dp_face_box two[2] = {c, b};
    assert_int_equal(dpv_tracker_update(&t, two, 2, 1, 0.1, ids), DP_OK);
    assert_int_equal(t.tr[ids[1]].id, 1);
    assert_int_equal(t.tr[ids[0]].id, 2);
    assert_int_equal(dpv_tracker_update(&t, NULL, 0, 1, 0.2, ids), DP_OK);
    assert_int_equal(dpv_tracker_update(&t, NULL, 0, 1, 0.3, ids), DP_OK);
    assert_int_equal(dpv_tracker_update(&t, NULL, 0, 1, 0.4, ids), DP_OK); /* third miss: ended */
    assert_false(t.tr[0].alive);
    dpv_tracker_free(&t);
    assert_true(dp_video_source_is_live("-"));
    assert_true(dp_video_source_is_live("rtsp://cam/1"));
    assert_true(dp_video_source_is_live("/dev/video0"));
    assert_false(dp_video_source_is_live("clip.mp4"));
}

static void test_cli(void **state) {
    (void)state;
    char v[300], cmd[2400], out[300], csv[300];
    write_video("cli.mp4", 10, 1, v, sizeof v);
    path_in(out, sizeof out, "cli_out.mp4");
    path_in(csv, sizeof csv, "cli.csv");
    snprintf(cmd, sizeof cmd, "%s scan --json --quiet --decode-threads 2 --out '%s' --csv '%s' '%s' > '%s/cli.json'",
             DP_CLI_PATH, out, csv, v, g_dir);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && (WEXITSTATUS(rc) == 0 || WEXITSTATUS(rc) == 1));
    assert_true(file_size(out) > 0);
    assert_true(file_size(csv) > 0);
    /* eval over a list (relative paths, header line) */
    char list[300];
    path_in(list, sizeof list, "labels.csv");
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    fprintf(f, "path,label\ncli.mp4,0\ncli_out.mp4,1\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s scan eval --quiet --json --list '%s' > '%s/eval.json'", DP_CLI_PATH, list, g_dir);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    char p[300];
    path_in(p, sizeof p, "eval.json");
    f = fopen(p, "r");
    assert_non_null(f);
    static char line[1 << 16], last[1 << 16];
    while (fgets(line, sizeof line, f)) memcpy(last, line, sizeof line);
    fclose(f);
    cJSON *j = cJSON_Parse(last);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "videos")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(j, "scored")->valueint, 2);
    assert_non_null(cJSON_GetObjectItem(j, "auc"));
    assert_non_null(cJSON_GetObjectItem(j, "fpr_real"));
    cJSON_Delete(j);
    /* usage errors */
    snprintf(cmd, sizeof cmd, "%s scan --every 0 x.mp4 2>/dev/null", DP_CLI_PATH);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    snprintf(cmd, sizeof cmd, "%s scan --quiet /nonexistent.mp4 > /dev/null 2>&1", DP_CLI_PATH);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregation), cmocka_unit_test(test_basic),     cmocka_unit_test(test_every_fps_stop),
        cmocka_unit_test(test_out),         cmocka_unit_test(test_truncated), cmocka_unit_test(test_not_video),
        cmocka_unit_test(test_stdin_stops), cmocka_unit_test(test_cli),       cmocka_unit_test(test_ctx_limits),
        cmocka_unit_test(test_network),     cmocka_unit_test(test_udp),       cmocka_unit_test(test_rtsp),       cmocka_unit_test(test_rtsp_pull),       cmocka_unit_test(test_pixel_formats),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
#else
int main(void) {
    printf("test_scan: skipped: built without FFmpeg\n");
    return 77;
}
#endif
