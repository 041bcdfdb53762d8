/* The source: libavformat opens it (files, "-" = stdin, devices, network
 * URLs), a thread decodes it, converts the selected frames to RGB24 + grey
 * and queues them for the analysis. Every blocking read can be interrupted:
 * FFmpeg's interrupt callback (stop flag, no-data timeout) for its own I/O,
 * and stdin is read through our own AVIOContext that polls with a timeout.
 * Files: the queue blocks the decoder when full (nothing is lost). Live
 * sources: the oldest queued frame is dropped instead (latency stays low). */
#include <errno.h>
#include <fcntl.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <poll.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef DP_HAVE_AVDEVICE
#include <dlfcn.h>
#include <libavdevice/avdevice.h>
#include <libavutil/macros.h>
#include <pthread.h>
#endif

#include "video/video_internal.h"

#ifdef DP_HAVE_AVDEVICE
/* libavdevice (cameras) is opened on the first /dev/video source, not linked: it pulls in some 80 more
 * shared libraries (SDL2, X11, PulseAudio, ...), which cost every doppel process, whatever its command,
 * ~0.08 s of CPU and ~19 MB of resident memory at start (docs/bench.md). Its only call here registers
 * the devices with the libavformat already loaded. */
static int g_avdevice_ok;
static void avdevice_load_once(void) {
    void *h = dlopen("libavdevice.so." AV_STRINGIFY(LIBAVDEVICE_VERSION_MAJOR), RTLD_NOW | RTLD_LOCAL);
    void (*reg)(void) = NULL;
    if (h) *(void **)&reg = dlsym(h, "avdevice_register_all");
    if (reg) {
        reg();
        g_avdevice_ok = 1;
    }
}
static int avdevice_load(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, avdevice_load_once);
    return g_avdevice_ok;
}
#endif

enum { QCAP_FILE = 6, QCAP_LIVE = 2, AVIO_BUF = 1 << 16 };

struct dpv_source {
    char name[1024];
    dpv_source_opts o;
    dpv_source_info info;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    struct SwsContext *sws;
    AVIOContext *avio; /* stdin */
    int vs, as;
    int64_t start_pts;
    /* the queue */
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv_items, cv_space;
    dpv_item **ring;
    int qcap, head, count;
    dpv_item *pool[64];
    int npool;
    atomic_int stop;
    _Atomic int64_t last_io_us; /* last time data came in (monotonic, microseconds) */
    atomic_int stalled;
    int done, limit_hit;
    dp_status st;
    char err[512];
    int64_t decoded, dropped, selected;
    double next_sel_t, last_t;
    int gscale; /* the grey image is shrunk this many times */
    uint32_t *acc; /* one row of sums */
    uint8_t ylut[256], ident[256]; /* limited-range Y (16..235) → full-range grey; full range: itself */
};

void dpv_quiet_ffmpeg(void) {
    /* FFmpeg's own messages (encoder statistics, demuxer warnings) stay off
     * stderr: every failure comes back as a dp_status with its message.
     * DOPPEL_FFMPEG_LOG=1 keeps them (debugging). */
    const char *e = getenv("DOPPEL_FFMPEG_LOG");
    if (!(e && *e && strcmp(e, "0"))) av_log_set_level(AV_LOG_FATAL);
}

int dpv_create_tmp(const char *path, char *tmp, size_t n) {
    static atomic_int counter;
    for (int tries = 0; tries < 100; tries++) {
        snprintf(tmp, n, "%s.tmp-%ld-%d", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

double dpv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
static int64_t now_us(void) { return (int64_t)(dpv_now() * 1e6); }

const char *dpv_averr(int e, char *buf, size_t n) {
    if (av_strerror(e, buf, n) < 0) snprintf(buf, n, "FFmpeg error %d", e);
    return buf;
}

int dp_video_source_is_live(const char *s) {
    if (!s) return 0;
    if (!strcmp(s, "-") || !strncmp(s, "/dev/", 5) || !strncmp(s, "pipe:", 5)) return 1;
    static const char *const schemes[] = {"rtsp:", "rtsps:", "rtmp:", "rtmps:", "http:", "https:", "udp:",
                                          "tcp:", "srt:", "rtp:", "mms:", "mmsh:"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (!strncmp(s, schemes[i], strlen(schemes[i]))) return 1;
    return 0;
}

static int interrupt_cb(void *opaque) {
    dpv_source *s = opaque;
    if (atomic_load(&s->stop)) return 1;
    if (s->o.timeout_s > 0 && now_us() - atomic_load(&s->last_io_us) > (int64_t)(s->o.timeout_s * 1e6)) {
        atomic_store(&s->stalled, 1);
        return 1;
    }
    return 0;
}

/* stdin, polled: never blocks longer than 100 ms without checking stop/timeout. */
static int stdin_read(void *opaque, uint8_t *buf, int size) {
    dpv_source *s = opaque;
    for (;;) {
        if (atomic_load(&s->stop)) return AVERROR_EXIT;
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = poll(&p, 1, 100);
        if (r > 0) {
            ssize_t k = read(0, buf, (size_t)size);
            if (k > 0) {
                atomic_store(&s->last_io_us, now_us());
                return (int)k;
            }
            if (k == 0) return AVERROR_EOF;
            if (errno == EINTR || errno == EAGAIN) continue;
            return AVERROR(errno);
        }
        if (r < 0 && errno != EINTR) return AVERROR(errno);
        if (s->o.timeout_s > 0 && now_us() - atomic_load(&s->last_io_us) > (int64_t)(s->o.timeout_s * 1e6)) {
            atomic_store(&s->stalled, 1);
            return AVERROR(ETIMEDOUT);
        }
    }
}

dp_status dpv_fail(char *err, size_t n, dp_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return st;
}

static void item_free(dpv_item *it) {
    free(it->rgb);
    free(it->gray);
    av_frame_free(&it->frame);
    av_packet_free(&it->pkt);
    free(it);
}

static void source_free(dpv_source *s) {
    if (!s) return;
    sws_freeContext(s->sws);
    avcodec_free_context(&s->dec);
    if (s->fmt) avformat_close_input(&s->fmt);
    if (s->avio) {
        av_freep(&s->avio->buffer);
        avio_context_free(&s->avio);
    }
    for (int i = 0; i < s->npool; i++) item_free(s->pool[i]);
    if (s->ring)
        for (int i = 0; i < s->count; i++) item_free(s->ring[(s->head + i) % s->qcap]);
    free(s->ring);
    free(s->acc);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_items);
    pthread_cond_destroy(&s->cv_space);
    free(s);
}

/* Streams whose decoding is the pipeline's longest stage, given two frame threads when the caller does not say:
 * no chroma subsampling (4:4:4) or more than 8 bits. H.264 4:4:4 at 640x480 takes ~2 ms of the ~5.5 ms of CPU a
 * frame costs; 4:2:0 gains little from the second thread and costs its overhead (docs/video.md, session 4). */
static int heavy_to_decode(const AVCodecParameters *par) {
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get((enum AVPixelFormat)par->format);
    return d && ((d->flags & AV_PIX_FMT_FLAG_RGB) || (d->log2_chroma_w == 0 && d->log2_chroma_h == 0 && d->nb_components >= 3) ||
                 d->comp[0].depth > 8);
}

dp_status dpv_source_open(const char *source, const dpv_source_opts *o, dpv_source **out, char *err, size_t n) {
    *out = NULL;
    dpv_source *s = calloc(1, sizeof *s);
    if (!s) return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    snprintf(s->name, sizeof s->name, "%s", source);
    s->o = *o;
    s->vs = s->as = -1;
    s->gscale = 1;
    for (int v = 0; v < 256; v++) {
        int g = (int)lrint((v - 16) * 255.0 / 219.0);
        s->ylut[v] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
        s->ident[v] = (uint8_t)v;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv_items, &ca);
    pthread_cond_init(&s->cv_space, &ca);
    pthread_condattr_destroy(&ca);
    s->qcap = o->live ? QCAP_LIVE : QCAP_FILE;
    s->ring = calloc((size_t)s->qcap, sizeof *s->ring);
    s->fmt = avformat_alloc_context();
    if (!s->ring || !s->fmt) {
        source_free(s);
        return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    }
    s->fmt->interrupt_callback.callback = interrupt_cb;
    s->fmt->interrupt_callback.opaque = s;
    atomic_store(&s->last_io_us, now_us());
    const char *url = source;
    const AVInputFormat *ifmt = NULL;
    AVDictionary *dict = NULL;
    if (!strcmp(source, "-")) {
        uint8_t *buf = av_malloc(AVIO_BUF);
        if (!buf || !(s->avio = avio_alloc_context(buf, AVIO_BUF, 0, s, stdin_read, NULL, NULL))) {
            av_free(buf);
            source_free(s);
            return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
        }
        s->avio->seekable = 0;
        s->fmt->pb = s->avio;
        s->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
        url = "";
    } else if (!strncmp(source, "/dev/video", 10)) {
#ifdef DP_HAVE_AVDEVICE
        if (avdevice_load()) ifmt = av_find_input_format("video4linux2");
#endif
        if (!ifmt) {
            source_free(s);
            return dpv_fail(err, n, DP_ERR_UNSUPPORTED,
                        "%s: reading cameras needs libavdevice (this doppel was built without libavdevice-dev, or "
                        "libavdevice.so could not be loaded)",
                        source);
        }
    } else if (dp_video_source_is_live(source)) {
        /* network sources: FFmpeg's own timeouts too (microseconds) */
        char us[32];
        snprintf(us, sizeof us, "%lld", (long long)(o->timeout_s * 1e6));
        av_dict_set(&dict, "rw_timeout", us, 0);
        if (!strncmp(source, "rtsp", 4)) av_dict_set(&dict, "rtsp_transport", "tcp", 0);
    }
    if (o->live) { /* start quickly (the frames read while probing are kept, not skipped) */
        s->fmt->probesize = 1 << 20;
        s->fmt->max_analyze_duration = 500000;
    }
    for (const char *const *p = o->input_options; p && *p; p++) { /* the caller's, over doppel's defaults */
        const char *eq = strchr(*p, '=');
        char key[128];
        if (!eq || eq == *p || (size_t)(eq - *p) >= sizeof key) {
            av_dict_free(&dict);
            source_free(s);
            return dpv_fail(err, n, DP_ERR_ARG, "%s: bad FFmpeg input option '%s' (want key=value)", source, *p);
        }
        memcpy(key, *p, (size_t)(eq - *p));
        key[eq - *p] = 0;
        av_dict_set(&dict, key, eq + 1, 0);
    }
    char eb[256];
    struct stat sb;
    if (!s->avio && !ifmt && stat(source, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0) {
        av_dict_free(&dict);
        source_free(s);
        return dpv_fail(err, n, DP_ERR_FORMAT, "%s: the file is empty (0 bytes)", source);
    }
    int r = avformat_open_input(&s->fmt, url, ifmt, &dict);
    /* what FFmpeg did not take is left in dict: a caller's option there is a mistake (a typo, or an
     * option of another format or protocol) that would otherwise pass silently */
    for (const char *const *p = o->input_options; r >= 0 && p && *p; p++) {
        char key[128];
        size_t kl = (size_t)(strchr(*p, '=') - *p);
        memcpy(key, *p, kl);
        key[kl] = 0;
        if (av_dict_get(dict, key, NULL, 0)) {
            av_dict_free(&dict);
            source_free(s);
            return dpv_fail(err, n, DP_ERR_ARG, "%s: FFmpeg did not use the input option '%s' (not an option of this "
                            "source's format or protocol)", source, key);
        }
    }
    av_dict_free(&dict);
    if (r < 0) {
        dp_status st = atomic_load(&s->stalled) ? DP_ERR_IO : DP_ERR_FORMAT;
        if (r == AVERROR_INVALIDDATA)
            dpv_fail(err, n, st, "%s: not a video that FFmpeg can read (%s)", source, dpv_averr(r, eb, sizeof eb));
        else
            dpv_fail(err, n, st, "%s: cannot open: %s%s", source, atomic_load(&s->stalled) ? "no data (timeout): " : "",
                 dpv_averr(r, eb, sizeof eb));
        source_free(s);
        return st;
    }
    atomic_store(&s->last_io_us, now_us());
    if ((r = avformat_find_stream_info(s->fmt, NULL)) < 0) {
        dpv_fail(err, n, DP_ERR_FORMAT, "%s: cannot read the stream headers: %s", source, dpv_averr(r, eb, sizeof eb));
        source_free(s);
        return DP_ERR_FORMAT;
    }
    const AVCodec *codec = NULL;
    s->vs = av_find_best_stream(s->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (s->vs < 0 || !codec) {
        dpv_fail(err, n, DP_ERR_FORMAT, "%s: %s", source,
             s->vs == AVERROR_DECODER_NOT_FOUND ? "no decoder for its video stream" : "not a video (no video stream)");
        source_free(s);
        return DP_ERR_FORMAT;
    }
    AVStream *st = s->fmt->streams[s->vs];
    const AVCodecParameters *par = st->codecpar;
    int W = par->width, H = par->height;
    if (W <= 0 || H <= 0) {
        dpv_fail(err, n, DP_ERR_FORMAT, "%s: the video stream has no frame size", source);
        source_free(s);
        return DP_ERR_FORMAT;
    }
    if (W > o->max_width || H > o->max_height) {
        dpv_fail(err, n, DP_ERR_ARG, "%s: %dx%d is larger than the limit %dx%d", source, W, H, o->max_width, o->max_height);
        source_free(s);
        return DP_ERR_ARG;
    }
    if (o->lim_side > 0 && (W > o->lim_side || H > o->lim_side)) {
        dpv_fail(err, n, DP_ERR_ARG, "%s: %dx%d is larger than the limit of %lld px a side (dp_limits.max_video_side)",
                 source, W, H, (long long)o->lim_side);
        source_free(s);
        return DP_ERR_ARG;
    }
    if (W < 16 || H < 16) {
        dpv_fail(err, n, DP_ERR_FORMAT, "%s: %dx%d is too small to hold a face", source, W, H);
        source_free(s);
        return DP_ERR_FORMAT;
    }
    if (!(s->dec = avcodec_alloc_context3(codec)) || avcodec_parameters_to_context(s->dec, par) < 0) {
        source_free(s);
        return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    }
    s->dec->thread_count = o->decode_threads > 0 ? o->decode_threads : heavy_to_decode(par) ? 2 : 1;
    if (o->live) s->dec->flags |= AV_CODEC_FLAG_LOW_DELAY;
    if ((r = avcodec_open2(s->dec, codec, NULL)) < 0) {
        dpv_fail(err, n, DP_ERR_FORMAT, "%s: cannot open the %s decoder: %s", source, codec->name,
             dpv_averr(r, eb, sizeof eb));
        source_free(s);
        return DP_ERR_FORMAT;
    }
    int a = av_find_best_stream(s->fmt, AVMEDIA_TYPE_AUDIO, -1, s->vs, NULL, 0);
    s->info.has_audio = a >= 0;
    if (o->writing) { /* the audio packets go to the annotated copy */
        if (a >= 0) {
            s->as = a;
            s->info.audio = s->fmt->streams[a]->codecpar;
            s->info.audio_time_base = s->fmt->streams[a]->time_base;
        }
    }
    if (!(s->acc = malloc(sizeof(uint32_t) * (size_t)W))) {
        source_free(s);
        return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    }
    s->info.width = W;
    s->info.height = H;
    s->info.gray_w = W;
    s->info.gray_h = H;
    s->info.gray_scale = 1;
    s->info.live = o->live;
    s->info.time_base = st->time_base;
    AVRational fr = av_guess_frame_rate(s->fmt, st, NULL);
    s->info.fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    s->info.duration_s = -1;
    if (st->duration > 0) s->info.duration_s = st->duration * av_q2d(st->time_base);
    else if (s->fmt->duration > 0) s->info.duration_s = s->fmt->duration / (double)AV_TIME_BASE;
    s->info.frames_total = -1;
    if (!o->live) {
        if (st->nb_frames > 0) s->info.frames_total = st->nb_frames;
        else if (s->info.duration_s > 0 && s->info.fps > 0)
            s->info.frames_total = (int64_t)llround(s->info.duration_s * s->info.fps);
    }
    /* the context's limits, from the header where it says (a duration guessed from the bitrate does not count) */
    if (o->lim_frames > 0 && st->nb_frames > o->lim_frames) {
        dpv_fail(err, n, DP_ERR_ARG, "%s: %lld frames, more than the limit of %lld (dp_limits.max_video_frames)", source,
                 (long long)st->nb_frames, (long long)o->lim_frames);
        source_free(s);
        return DP_ERR_ARG;
    }
    if (o->lim_seconds > 0 && s->info.duration_s > o->lim_seconds &&
        s->fmt->duration_estimation_method != AVFMT_DURATION_FROM_BITRATE) {
        dpv_fail(err, n, DP_ERR_ARG, "%s: %.1f s long, more than the limit of %.0f s (dp_limits.max_video_seconds)",
                 source, s->info.duration_s, o->lim_seconds);
        source_free(s);
        return DP_ERR_ARG;
    }
    s->start_pts = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
    for (unsigned i = 0; i < s->fmt->nb_streams; i++)
        if ((int)i != s->vs && (int)i != s->as) s->fmt->streams[i]->discard = AVDISCARD_ALL;
    *out = s;
    return DP_OK;
}

const dpv_source_info *dpv_source_get_info(const dpv_source *s) { return &s->info; }

void dpv_source_set_gray_scale(dpv_source *s, int d) {
    if (s->started || d < 1 || d > 8) return;
    s->gscale = d;
    s->info.gray_scale = d;
    s->info.gray_w = s->info.width / d;
    s->info.gray_h = s->info.height / d;
}

/* ------------------------------------------------------------ the queue */
static dpv_item *item_get(dpv_source *s) { /* under mu */
    if (s->npool > 0) return s->pool[--s->npool];
    return calloc(1, sizeof(dpv_item));
}

static void item_put(dpv_source *s, dpv_item *it) { /* under mu */
    if (it->pkt) av_packet_unref(it->pkt);
    if (it->frame) av_frame_unref(it->frame);
    if (s->npool < (int)(sizeof s->pool / sizeof s->pool[0])) {
        s->pool[s->npool++] = it;
        return;
    }
    item_free(it);
}

void dpv_source_release(dpv_source *s, dpv_item *it) {
    if (!it) return;
    pthread_mutex_lock(&s->mu);
    item_put(s, it);
    pthread_mutex_unlock(&s->mu);
}

/* Queue an item; 0 when stopping. Live: drops the oldest queued video frame when full. */
static int push(dpv_source *s, dpv_item *it) {
    pthread_mutex_lock(&s->mu);
    while (s->count == s->qcap && !atomic_load(&s->stop)) {
        if (s->o.live) {
            int k = -1;
            for (int i = 0; i < s->count && k < 0; i++)
                if (s->ring[(s->head + i) % s->qcap]->kind == 0) k = i;
            if (k < 0) k = 0;
            dpv_item *old = s->ring[(s->head + k) % s->qcap];
            if (old->kind == 0) s->dropped++;
            for (int i = k; i > 0; i--) s->ring[(s->head + i) % s->qcap] = s->ring[(s->head + i - 1) % s->qcap];
            s->head = (s->head + 1) % s->qcap;
            s->count--;
            item_put(s, old);
            break;
        }
        pthread_cond_wait(&s->cv_space, &s->mu);
    }
    if (atomic_load(&s->stop)) {
        item_put(s, it);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    s->ring[(s->head + s->count) % s->qcap] = it;
    s->count++;
    pthread_cond_signal(&s->cv_items);
    pthread_mutex_unlock(&s->mu);
    return 1;
}

int dpv_source_next(dpv_source *s, dpv_item **out, double timeout) {
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    double t = dl.tv_sec + dl.tv_nsec * 1e-9 + timeout;
    dl.tv_sec = (time_t)t;
    dl.tv_nsec = (long)((t - (double)dl.tv_sec) * 1e9);
    while (s->count == 0 && !s->done)
        if (pthread_cond_timedwait(&s->cv_items, &s->mu, &dl) == ETIMEDOUT) break;
    int r;
    if (s->count > 0) {
        *out = s->ring[s->head];
        s->head = (s->head + 1) % s->qcap;
        s->count--;
        pthread_cond_signal(&s->cv_space);
        r = 1;
    } else r = s->done ? 0 : -1;
    pthread_mutex_unlock(&s->mu);
    return r;
}

int dpv_source_pending(dpv_source *s) {
    pthread_mutex_lock(&s->mu);
    int c = s->count;
    pthread_mutex_unlock(&s->mu);
    return c;
}

int64_t dpv_source_decoded(dpv_source *s) {
    pthread_mutex_lock(&s->mu);
    int64_t c = s->decoded;
    pthread_mutex_unlock(&s->mu);
    return c;
}
int64_t dpv_source_dropped(dpv_source *s) {
    pthread_mutex_lock(&s->mu);
    int64_t c = s->dropped;
    pthread_mutex_unlock(&s->mu);
    return c;
}

dp_status dpv_source_status(dpv_source *s, char *err, size_t n, int *limit_hit) {
    pthread_mutex_lock(&s->mu);
    dp_status st = s->st;
    snprintf(err, n, "%s", s->err);
    if (limit_hit) *limit_hit = s->limit_hit;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ------------------------------------------------------------ the decoding thread */
static void finish(dpv_source *s, dp_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish(dpv_source *s, dp_status st, const char *fmt, ...) {
    pthread_mutex_lock(&s->mu);
    if (!s->done) {
        s->st = st;
        if (fmt) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(s->err, sizeof s->err, fmt, ap);
            va_end(ap);
        }
        s->done = 1;
    }
    pthread_cond_broadcast(&s->cv_items);
    pthread_mutex_unlock(&s->mu);
}

/* Whether frame index/time t is analysed (every N, or at most fps per second of video). */
static int selected(dpv_source *s, int64_t index, double t) {
    if (s->o.fps > 0) {
        if (t + 1e-9 < s->next_sel_t) return 0;
        s->next_sel_t = (s->selected == 0 ? t : s->next_sel_t) + 1.0 / s->o.fps;
        if (s->next_sel_t < t) s->next_sel_t = t + 1.0 / s->o.fps;
        s->selected++;
        return 1;
    }
    return index % (s->o.every > 0 ? s->o.every : 1) == 0;
}

/* 8-bit planar Y, U, V (4:2:0, 4:2:2, 4:4:4, 4:4:0, 4:1:1): 1 limited range, 2 full range (the yuvj
 * formats; as libswscale, the format decides, not the frame's colour_range); 0 another format.
 * *csx, *csy: log2 of the chroma subsampling. */
static int planar_yuv8(enum AVPixelFormat fmt, int *csx, int *csy) {
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(fmt);
    if (!d || d->nb_components != 3 || !(d->flags & AV_PIX_FMT_FLAG_PLANAR) ||
        (d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BE | AV_PIX_FMT_FLAG_HWACCEL |
                     AV_PIX_FMT_FLAG_BITSTREAM)))
        return 0;
    for (int c = 0; c < 3; c++)
        if (d->comp[c].plane != c || d->comp[c].depth != 8 || d->comp[c].step != 1 || d->comp[c].shift ||
            d->comp[c].offset)
            return 0;
    *csx = d->log2_chroma_w, *csy = d->log2_chroma_h;
    return fmt == AV_PIX_FMT_YUVJ420P || fmt == AV_PIX_FMT_YUVJ422P || fmt == AV_PIX_FMT_YUVJ444P ||
                   fmt == AV_PIX_FMT_YUVJ440P || fmt == AV_PIX_FMT_YUVJ411P
               ? 2
               : 1;
}

/* One decoded frame → an item. 0: stop; 1: go on. */
static int emit_frame(dpv_source *s, AVFrame *f) {
    int W = s->info.width, H = s->info.height;
    if (f->width != W || f->height != H) {
        finish(s, DP_ERR_FORMAT, "%s: the frame size changed from %dx%d to %dx%d mid-stream (not supported)", s->name,
               W, H, f->width, f->height);
        return 0;
    }
    int64_t pts = f->best_effort_timestamp;
    double t = pts != AV_NOPTS_VALUE ? (pts - s->start_pts) * av_q2d(s->info.time_base)
                                     : (s->info.fps > 0 ? s->decoded / s->info.fps : 0);
    if (t < 0) t = 0;
    int64_t index = s->decoded;
    if (s->o.lim_frames > 0 && s->decoded >= s->o.lim_frames) {
        finish(s, DP_ERR_ARG, "%s: stopped after %lld frames, the limit (dp_limits.max_video_frames)", s->name,
               (long long)s->o.lim_frames);
        return 0;
    }
    s->last_t = t;
    pthread_mutex_lock(&s->mu);
    s->decoded++;
    pthread_mutex_unlock(&s->mu);
    if (s->o.max_seconds > 0 && t > s->o.max_seconds) {
        pthread_mutex_lock(&s->mu);
        s->limit_hit = 1;
        pthread_mutex_unlock(&s->mu);
        finish(s, DP_OK, NULL);
        return 0;
    }
    if (s->o.lim_seconds > 0 && t > s->o.lim_seconds) {
        finish(s, DP_ERR_ARG, "%s: stopped at %.0f s of video, the limit (dp_limits.max_video_seconds)", s->name,
               s->o.lim_seconds);
        return 0;
    }
    int an = selected(s, index, t);
    if (!an && !s->o.writing) return 1; /* not analysed and not written (--out): nothing to pass on */
    pthread_mutex_lock(&s->mu);
    dpv_item *it = item_get(s);
    pthread_mutex_unlock(&s->mu);
    if (!it) {
        finish(s, DP_ERR_NOMEM, "out of memory");
        return 0;
    }
    int csx = 0, csy = 0;
    const int yk = planar_yuv8((enum AVPixelFormat)f->format, &csx, &csy);
    const int need_rgb = s->o.writing || !yk;
    const int d = s->gscale, gw = W / d, gh = H / d;
    if ((need_rgb && !it->rgb && !(it->rgb = malloc((size_t)W * H * 3 + DPV_RGB_PAD))) ||
        (an && !it->gray && !(it->gray = malloc((size_t)gw * gh))) ||
        (yk && !it->frame && !(it->frame = av_frame_alloc())) || (yk && av_frame_ref(it->frame, f) < 0)) {
        dpv_source_release(s, it);
        finish(s, DP_ERR_NOMEM, "out of memory (frame buffers)");
        return 0;
    }
    it->yuv = yk;
    it->csx = csx, it->csy = csy;
    it->kind = 0;
    it->analyse = an;
    it->index = index;
    it->t = t;
    it->pts = pts;
    it->t_wall = dpv_now();
    if (need_rgb) {
        s->sws = sws_getCachedContext(s->sws, W, H, (enum AVPixelFormat)f->format, W, H, AV_PIX_FMT_RGB24,
                                      SWS_BILINEAR, NULL, NULL, NULL);
        if (!s->sws) {
            dpv_source_release(s, it);
            finish(s, DP_ERR_UNSUPPORTED, "%s: cannot convert pixel format %s", s->name,
                   av_get_pix_fmt_name((enum AVPixelFormat)f->format));
            return 0;
        }
        uint8_t *dst[4] = {it->rgb, NULL, NULL, NULL};
        int ls[4] = {3 * W, 0, 0, 0};
        sws_scale(s->sws, (const uint8_t *const *)f->data, f->linesize, 0, H, dst, ls);
    }
    if (an) { /* grey as OpenCV's BGR2GRAY (what the cascades were trained on), shrunk d times (d x d means) */
        const int dd = d * d;
        uint32_t *acc = s->acc;
        for (int gy = 0; gy < gh; gy++) {
            memset(acc, 0, sizeof(uint32_t) * (size_t)gw);
            uint8_t *g = it->gray + (size_t)gy * gw;
            if (yk) { /* BT.601 luma is that weighted sum: the Y plane, range-expanded (limited: 16..235) */
                const uint8_t *lut = yk == 1 ? s->ylut : s->ident;
                const uint8_t *r0 = f->data[0] + (size_t)gy * d * f->linesize[0];
                if (d == 1) {
                    for (int gx = 0; gx < gw; gx++) g[gx] = lut[r0[gx]];
                    continue;
                }
                if (d == 2) {
                    const uint8_t *r1 = r0 + f->linesize[0];
                    for (int gx = 0; gx < gw; gx++)
                        g[gx] = lut[(r0[2 * gx] + r0[2 * gx + 1] + r1[2 * gx] + r1[2 * gx + 1] + 2) >> 2];
                    continue;
                }
                for (int dy = 0; dy < d; dy++) {
                    const uint8_t *p = f->data[0] + (size_t)(gy * d + dy) * f->linesize[0];
                    for (int gx = 0; gx < gw; gx++)
                        for (int dx = 0; dx < d; dx++) acc[gx] += *p++;
                }
                for (int gx = 0; gx < gw; gx++) g[gx] = lut[(acc[gx] + (uint32_t)dd / 2) / (uint32_t)dd];
                continue;
            }
            for (int dy = 0; dy < d; dy++) {
                const uint8_t *p = it->rgb + (size_t)(gy * d + dy) * W * 3;
                for (int gx = 0; gx < gw; gx++)
                    for (int dx = 0; dx < d; dx++, p += 3)
                        acc[gx] += (9798u * p[0] + 19235u * p[1] + 3735u * p[2] + (1u << 14)) >> 15;
            }
            for (int gx = 0; gx < gw; gx++) g[gx] = (uint8_t)((acc[gx] + (uint32_t)dd / 2) / (uint32_t)dd);
        }
    }
    return push(s, it);
}

static int drain(dpv_source *s, AVFrame *f) {
    for (;;) {
        int r = avcodec_receive_frame(s->dec, f);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 1;
        if (r < 0) return 1; /* a broken frame: skip it */
        int go = emit_frame(s, f);
        av_frame_unref(f);
        if (!go) return 0;
    }
}

static void *thread_main(void *arg) {
    dpv_source *s = arg;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *f = av_frame_alloc();
    char eb[256];
    if (!pkt || !f) {
        finish(s, DP_ERR_NOMEM, "out of memory");
        goto done;
    }
    int bad_packets = 0, again = 0;
    for (;;) {
        if (atomic_load(&s->stop)) {
            finish(s, DP_OK, NULL);
            break;
        }
        /* the no-data clock restarts at each read (stdin: when data comes), not while a device says "again" */
        if (!again && strcmp(s->name, "-")) atomic_store(&s->last_io_us, now_us());
        int r = av_read_frame(s->fmt, pkt);
        again = r == AVERROR(EAGAIN);
        if (again) { /* a non-blocking device without a frame yet */
            if (s->o.timeout_s > 0 && now_us() - atomic_load(&s->last_io_us) > (int64_t)(s->o.timeout_s * 1e6)) {
                atomic_store(&s->stalled, 1);
                r = AVERROR(ETIMEDOUT);
            } else {
                nanosleep(&(struct timespec){0, 5000000}, NULL);
                continue;
            }
        }
        if (r < 0) {
            /* flush the decoder: frames it still holds */
            if (avcodec_send_packet(s->dec, NULL) >= 0 && !drain(s, f)) break;
            if (atomic_load(&s->stop)) finish(s, DP_OK, NULL);
            else if (atomic_load(&s->stalled) || r == AVERROR(ETIMEDOUT)) /* ours, or the protocol's rw_timeout */
                finish(s, DP_ERR_IO, "%s: no data for %.3g s: the stream stopped", s->name, s->o.timeout_s);
            else if (r == AVERROR_EOF) {
                /* a cut file often just ends: compare with what its header promised */
                const AVStream *vst = s->fmt->streams[s->vs];
                double dur = s->info.duration_s, fps = s->info.fps > 0 ? s->info.fps : 25;
                if (!s->o.live && vst->nb_frames > 0 && s->decoded + 1 < vst->nb_frames * 0.98)
                    finish(s, DP_ERR_FORMAT, "%s: the file ends early: %lld of the %lld frames its header lists were "
                           "decoded (truncated?)", s->name, (long long)s->decoded, (long long)vst->nb_frames);
                else if (!s->o.live && vst->nb_frames <= 0 && dur > 0 && s->decoded > 0 &&
                         s->last_t + 2.0 / fps + 1.0 < dur)
                    finish(s, DP_ERR_FORMAT, "%s: the file ends early: at %.2f s of its %.2f s (truncated?)", s->name,
                           s->last_t, dur);
                else finish(s, DP_OK, NULL);
            }
            else if (s->o.live)
                finish(s, DP_ERR_IO, "%s: the stream broke off: %s", s->name, dpv_averr(r, eb, sizeof eb));
            else
                finish(s, DP_ERR_FORMAT, "%s: reading stopped: %s (the file is truncated or corrupt)", s->name,
                       dpv_averr(r, eb, sizeof eb));
            break;
        }
        if (pkt->stream_index == s->vs) {
            r = avcodec_send_packet(s->dec, pkt);
            av_packet_unref(pkt);
            if (r < 0 && r != AVERROR(EAGAIN)) {
                if (++bad_packets > 100) {
                    finish(s, DP_ERR_FORMAT, "%s: the video cannot be decoded: %s", s->name,
                           dpv_averr(r, eb, sizeof eb));
                    break;
                }
                continue;
            }
            if (!drain(s, f)) break;
        } else if (pkt->stream_index == s->as) {
            pthread_mutex_lock(&s->mu);
            dpv_item *it = item_get(s);
            pthread_mutex_unlock(&s->mu);
            if (it && !it->pkt) it->pkt = av_packet_alloc();
            if (!it || !it->pkt) {
                av_packet_unref(pkt);
                finish(s, DP_ERR_NOMEM, "out of memory");
                break;
            }
            it->kind = 1;
            it->analyse = 0;
            av_packet_move_ref(it->pkt, pkt);
            if (!push(s, it)) break;
        } else av_packet_unref(pkt);
    }
done:
    av_packet_free(&pkt);
    av_frame_free(&f);
    finish(s, DP_OK, NULL);
    return NULL;
}

dp_status dpv_source_start(dpv_source *s, char *err, size_t n) {
    if (pthread_create(&s->th, NULL, thread_main, s) != 0)
        return dpv_fail(err, n, DP_ERR_STATE, "cannot start the decoding thread");
    s->started = 1;
    return DP_OK;
}

void dpv_source_close(dpv_source *s) {
    if (!s) return;
    if (s->started) {
        atomic_store(&s->stop, 1);
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv_space);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
    }
    source_free(s);
}
