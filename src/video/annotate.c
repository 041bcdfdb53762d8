/* The annotated output (scan --out): boxes, track ids and scores drawn on
 * the RGB frames, H.264 (yuv420p) in MP4 with the index at the front
 * (faststart: browsers start playing before the whole file is there), the
 * audio copied when MP4 can hold its codec, else re-encoded to AAC. Written
 * to PATH.tmp-PID-N and renamed at the end, so no half-written file is ever
 * left at PATH. The same writer makes the test videos (dp_video_write_test). */
#include <errno.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "video/video_internal.h"

struct dpv_writer {
    char path[1024], tmp[1100];
    AVFormatContext *oc;
    AVCodecContext *venc;
    AVStream *vst, *ast;
    struct SwsContext *sws;
    AVFrame *vf;
    AVPacket *pkt;
    int W, H;   /* encoded: even */
    int sW, sH; /* the frames given: W, H or one more */
    AVRational in_tb;
    int64_t last_pts, n_frames, frame_dur;
    /* audio: copied (acopy) or encoded to AAC from float samples */
    int acopy;
    AVRational a_in_tb;
    AVCodecContext *adec, *aenc;
    SwrContext *swr;
    AVAudioFifo *fifo;
    AVFrame *af, *adf;
    int64_t a_next; /* next AAC frame's pts, in samples */
    int64_t a_first_pts; /* first input audio pts (re-encoding keeps the offset) */
    int header_done;
};

static void writer_free(dpv_writer *w) {
    if (!w) return;
    sws_freeContext(w->sws);
    avcodec_free_context(&w->venc);
    avcodec_free_context(&w->adec);
    avcodec_free_context(&w->aenc);
    swr_free(&w->swr);
    if (w->fifo) av_audio_fifo_free(w->fifo);
    av_frame_free(&w->vf);
    av_frame_free(&w->af);
    av_frame_free(&w->adf);
    av_packet_free(&w->pkt);
    if (w->oc) {
        if (w->oc->pb) avio_closep(&w->oc->pb);
        avformat_free_context(w->oc);
    }
    free(w);
}

/* Sends frame (NULL: flush) to enc and writes what comes out to stream st. */
static dp_status encode_write(dpv_writer *w, AVCodecContext *enc, AVStream *st, AVFrame *frame, char *err, size_t n) {
    char eb[256];
    int r = avcodec_send_frame(enc, frame);
    if (r < 0 && r != AVERROR_EOF) return dpv_fail(err, n, DP_ERR_IO, "%s: encoding failed: %s", w->path, dpv_averr(r, eb, sizeof eb));
    for (;;) {
        r = avcodec_receive_packet(enc, w->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return DP_OK;
        if (r < 0) return dpv_fail(err, n, DP_ERR_IO, "%s: encoding failed: %s", w->path, dpv_averr(r, eb, sizeof eb));
        if (enc == w->venc && w->pkt->duration <= 0) w->pkt->duration = w->frame_dur; /* MP4 needs the last one's */
        av_packet_rescale_ts(w->pkt, enc->time_base, st->time_base);
        w->pkt->stream_index = st->index;
        r = av_interleaved_write_frame(w->oc, w->pkt);
        if (r < 0) return dpv_fail(err, n, DP_ERR_IO, "%s: cannot write: %s", w->path, dpv_averr(r, eb, sizeof eb));
    }
}

/* An audio encoder at rate/channels (mono or stereo): AAC (float planar; the annotated copy) or
 * 16-bit PCM (test videos). */
static dp_status open_audio_enc(dpv_writer *w, enum AVCodecID id, int rate, int channels, char *err, size_t n) {
    const AVCodec *c = avcodec_find_encoder(id);
    if (!c) return dpv_fail(err, n, DP_ERR_UNSUPPORTED, "no %s encoder in this FFmpeg", avcodec_get_name(id));
    static const int rates[] = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000};
    int ok = 0;
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) ok |= rates[i] == rate;
    if (!ok) rate = 48000;
    if (!(w->aenc = avcodec_alloc_context3(c))) return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    w->aenc->sample_fmt = id == AV_CODEC_ID_AAC ? AV_SAMPLE_FMT_FLTP : AV_SAMPLE_FMT_S16;
    w->aenc->sample_rate = rate;
    av_channel_layout_default(&w->aenc->ch_layout, channels >= 2 ? 2 : 1);
    w->aenc->bit_rate = 128000;
    w->aenc->time_base = (AVRational){1, rate};
    if (w->oc->oformat->flags & AVFMT_GLOBALHEADER) w->aenc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    char eb[256];
    int r = avcodec_open2(w->aenc, c, NULL);
    if (r < 0) return dpv_fail(err, n, DP_ERR_UNSUPPORTED, "cannot open the %s encoder: %s", c->name, dpv_averr(r, eb, sizeof eb));
    if (!(w->ast = avformat_new_stream(w->oc, NULL))) return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    avcodec_parameters_from_context(w->ast->codecpar, w->aenc);
    w->ast->time_base = w->aenc->time_base;
    if (!(w->fifo = av_audio_fifo_alloc(w->aenc->sample_fmt, w->aenc->ch_layout.nb_channels, 4096)) ||
        !(w->af = av_frame_alloc()))
        return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    return DP_OK;
}

/* Encodes whole AAC frames from the FIFO (all that is left when flush). */
static dp_status aac_drain(dpv_writer *w, int flush, char *err, size_t n) {
    int fs = w->aenc->frame_size > 0 ? w->aenc->frame_size : 1024;
    while (av_audio_fifo_size(w->fifo) >= fs || (flush && av_audio_fifo_size(w->fifo) > 0)) {
        int k = av_audio_fifo_size(w->fifo) < fs ? av_audio_fifo_size(w->fifo) : fs;
        av_frame_unref(w->af);
        w->af->nb_samples = k;
        w->af->format = w->aenc->sample_fmt;
        w->af->sample_rate = w->aenc->sample_rate;
        av_channel_layout_copy(&w->af->ch_layout, &w->aenc->ch_layout);
        if (av_frame_get_buffer(w->af, 0) < 0) return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
        av_audio_fifo_read(w->fifo, (void **)w->af->data, k);
        w->af->pts = w->a_next;
        w->a_next += k;
        dp_status st = encode_write(w, w->aenc, w->ast, w->af, err, n);
        if (st != DP_OK) return st;
    }
    return flush ? encode_write(w, w->aenc, w->ast, NULL, err, n) : DP_OK;
}

static dp_status open_common(dpv_writer *w, const char *path, int width, int height, AVRational tb, double fps,
                             const char *format, char *err, size_t n) {
    char eb[256];
    snprintf(w->path, sizeof w->path, "%s", path);
    int fd = dpv_create_tmp(path, w->tmp, sizeof w->tmp);
    if (fd < 0) return dpv_fail(err, n, DP_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    close(fd);
    w->sW = width;
    w->sH = height;
    w->W = width & ~1;
    w->H = height & ~1;
    w->in_tb = tb;
    w->last_pts = AV_NOPTS_VALUE;
    if (fps <= 0) fps = 25;
    w->frame_dur = (int64_t)llround(1.0 / (fps * av_q2d(tb)));
    if (w->frame_dur < 1) w->frame_dur = 1;
    int r = avformat_alloc_output_context2(&w->oc, NULL, format, format ? NULL : path);
    if (r < 0 || !w->oc) return dpv_fail(err, n, DP_ERR_ARG, "%s: no container for this name: %s", path, dpv_averr(r, eb, sizeof eb));
    const AVCodec *c = avcodec_find_encoder_by_name("libx264");
    if (!c) c = avcodec_find_encoder(AV_CODEC_ID_H264);
    if (!c) return dpv_fail(err, n, DP_ERR_UNSUPPORTED, "no H.264 encoder in this FFmpeg (Debian's libavcodec has libx264)");
    if (!(w->venc = avcodec_alloc_context3(c)) || !(w->vst = avformat_new_stream(w->oc, NULL)) ||
        !(w->vf = av_frame_alloc()) || !(w->pkt = av_packet_alloc()))
        return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    w->venc->width = w->W;
    w->venc->height = w->H;
    w->venc->pix_fmt = AV_PIX_FMT_YUV420P;
    w->venc->time_base = tb;
    w->venc->framerate = av_d2q(fps, 100000);
    w->venc->gop_size = (int)(fps * 2 + 0.5);
    if (w->oc->oformat->flags & AVFMT_GLOBALHEADER) w->venc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    AVDictionary *o = NULL;
    if (!strcmp(c->name, "libx264")) {
        av_dict_set(&o, "preset", "veryfast", 0);
        av_dict_set(&o, "crf", "23", 0);
        av_dict_set(&o, "profile", "high", 0);
    }
    r = avcodec_open2(w->venc, c, &o);
    av_dict_free(&o);
    if (r < 0) return dpv_fail(err, n, DP_ERR_UNSUPPORTED, "cannot open the %s encoder: %s", c->name, dpv_averr(r, eb, sizeof eb));
    avcodec_parameters_from_context(w->vst->codecpar, w->venc);
    w->vst->time_base = tb;
    w->vf->format = AV_PIX_FMT_YUV420P;
    w->vf->width = w->W;
    w->vf->height = w->H;
    if (av_frame_get_buffer(w->vf, 0) < 0) return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    w->sws = sws_getContext(w->W, w->H, AV_PIX_FMT_RGB24, w->W, w->H, AV_PIX_FMT_YUV420P, SWS_BILINEAR, NULL, NULL, NULL);
    if (!w->sws) return dpv_fail(err, n, DP_ERR_UNSUPPORTED, "cannot convert RGB to yuv420p");
    return DP_OK;
}

static dp_status write_header(dpv_writer *w, char *err, size_t n) {
    char eb[256];
    av_freep(&w->oc->url); /* faststart reopens the file by this name */
    if (!(w->oc->url = av_strdup(w->tmp))) return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    int r = avio_open(&w->oc->pb, w->tmp, AVIO_FLAG_WRITE);
    if (r < 0) return dpv_fail(err, n, DP_ERR_IO, "%s: cannot open for writing: %s", w->tmp, dpv_averr(r, eb, sizeof eb));
    AVDictionary *o = NULL;
    if (!strcmp(w->oc->oformat->name, "mp4") || !strcmp(w->oc->oformat->name, "mov"))
        av_dict_set(&o, "movflags", "+faststart", 0);
    r = avformat_write_header(w->oc, &o);
    av_dict_free(&o);
    if (r < 0) return dpv_fail(err, n, DP_ERR_IO, "%s: cannot write the header: %s", w->path, dpv_averr(r, eb, sizeof eb));
    w->header_done = 1;
    return DP_OK;
}

dp_status dpv_writer_open(const char *path, int width, int height, AVRational tb, double fps,
                          const AVCodecParameters *audio, AVRational audio_tb, dpv_writer **out, char *err, size_t n) {
    *out = NULL;
    dpv_writer *w = calloc(1, sizeof *w);
    if (!w) return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    dp_status st = open_common(w, path, width, height, tb, fps, "mp4", err, n);
    if (st == DP_OK && audio) {
        w->a_in_tb = audio_tb;
        w->a_first_pts = AV_NOPTS_VALUE;
        if (avformat_query_codec(w->oc->oformat, audio->codec_id, FF_COMPLIANCE_NORMAL) == 1) {
            w->acopy = 1;
            if (!(w->ast = avformat_new_stream(w->oc, NULL)) || avcodec_parameters_copy(w->ast->codecpar, audio) < 0)
                st = dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
            else {
                w->ast->codecpar->codec_tag = 0;
                w->ast->time_base = audio_tb;
            }
        } else { /* decode → float planar → AAC */
            const AVCodec *dc = avcodec_find_decoder(audio->codec_id);
            char eb[256];
            int r;
            if (!dc || !(w->adec = avcodec_alloc_context3(dc)) || avcodec_parameters_to_context(w->adec, audio) < 0 ||
                (r = avcodec_open2(w->adec, dc, NULL)) < 0) {
                avcodec_free_context(&w->adec); /* no decoder: the copy keeps no audio */
            } else if ((st = open_audio_enc(w, AV_CODEC_ID_AAC, w->adec->sample_rate, w->adec->ch_layout.nb_channels, err,
                                            n)) == DP_OK) {
                (void)eb;
                if (swr_alloc_set_opts2(&w->swr, &w->aenc->ch_layout, AV_SAMPLE_FMT_FLTP, w->aenc->sample_rate,
                                        &w->adec->ch_layout, w->adec->sample_fmt, w->adec->sample_rate, 0, NULL) < 0 ||
                    swr_init(w->swr) < 0 || !(w->adf = av_frame_alloc()))
                    st = dpv_fail(err, n, DP_ERR_UNSUPPORTED, "%s: cannot convert the audio", path);
            }
        }
    }
    if (st == DP_OK) st = write_header(w, err, n);
    if (st != DP_OK) {
        unlink(w->tmp);
        writer_free(w);
        return st;
    }
    *out = w;
    return DP_OK;
}

static dp_status put_rgb(dpv_writer *w, const uint8_t *rgb, int stride, int64_t pts, char *err, size_t n) {
    if (av_frame_make_writable(w->vf) < 0) return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
    const uint8_t *src[4] = {rgb, NULL, NULL, NULL};
    int ls[4] = {stride, 0, 0, 0};
    sws_scale(w->sws, src, ls, 0, w->H, w->vf->data, w->vf->linesize);
    if (pts == AV_NOPTS_VALUE) pts = w->last_pts == AV_NOPTS_VALUE ? 0 : w->last_pts + w->frame_dur;
    if (w->last_pts != AV_NOPTS_VALUE && pts <= w->last_pts) pts = w->last_pts + 1;
    w->last_pts = pts;
    w->vf->pts = pts;
    w->n_frames++;
    return encode_write(w, w->venc, w->vst, w->vf, err, n);
}

dp_status dpv_writer_frame(dpv_writer *w, uint8_t *rgb, int64_t pts, const dp_video_face *faces, int n_faces,
                           float t_real, float t_fake, char *err, size_t n) {
    dpv_draw_faces(rgb, w->sW, w->sH, faces, n_faces, t_real, t_fake);
    return put_rgb(w, rgb, 3 * w->sW, pts, err, n); /* an odd last row/column is left out */
}

dp_status dpv_writer_audio(dpv_writer *w, AVPacket *pkt, char *err, size_t n) {
    char eb[256];
    if (!w->ast) return DP_OK;
    if (w->acopy) {
        av_packet_rescale_ts(pkt, w->a_in_tb, w->ast->time_base);
        pkt->stream_index = w->ast->index;
        pkt->pos = -1;
        int r = av_interleaved_write_frame(w->oc, pkt);
        if (r < 0) return dpv_fail(err, n, DP_ERR_IO, "%s: cannot write: %s", w->path, dpv_averr(r, eb, sizeof eb));
        return DP_OK;
    }
    if (!w->adec) return DP_OK;
    if (w->a_first_pts == AV_NOPTS_VALUE && pkt->pts != AV_NOPTS_VALUE) {
        w->a_first_pts = pkt->pts;
        w->a_next = av_rescale_q(pkt->pts, w->a_in_tb, w->aenc->time_base);
    }
    if (avcodec_send_packet(w->adec, pkt) < 0) return DP_OK; /* a broken audio packet: skip it */
    while (avcodec_receive_frame(w->adec, w->adf) >= 0) {
        int cap = swr_get_out_samples(w->swr, w->adf->nb_samples);
        uint8_t **planes = NULL;
        if (cap <= 0 || av_samples_alloc_array_and_samples(&planes, NULL, w->aenc->ch_layout.nb_channels, cap,
                                                           AV_SAMPLE_FMT_FLTP, 0) < 0) {
            av_frame_unref(w->adf);
            return dpv_fail(err, n, DP_ERR_NOMEM, "out of memory");
        }
        int k = swr_convert(w->swr, planes, cap, (const uint8_t **)w->adf->extended_data, w->adf->nb_samples);
        if (k > 0) av_audio_fifo_write(w->fifo, (void **)planes, k);
        av_freep(&planes[0]);
        av_freep(&planes);
        av_frame_unref(w->adf);
        dp_status st = aac_drain(w, 0, err, n);
        if (st != DP_OK) return st;
    }
    return DP_OK;
}

dp_status dpv_writer_close(dpv_writer *w, int keep, char *err, size_t n) {
    if (!w) return DP_OK;
    dp_status st = DP_OK;
    char eb[256];
    if (keep && w->n_frames > 0) {
        st = encode_write(w, w->venc, w->vst, NULL, err, n);
        if (st == DP_OK && w->aenc) st = aac_drain(w, 1, err, n);
        if (st == DP_OK) {
            int r = av_write_trailer(w->oc);
            if (r < 0) st = dpv_fail(err, n, DP_ERR_IO, "%s: cannot finish the file: %s", w->path, dpv_averr(r, eb, sizeof eb));
        }
        if (w->oc->pb) avio_closep(&w->oc->pb);
        if (st == DP_OK && rename(w->tmp, w->path) != 0)
            st = dpv_fail(err, n, DP_ERR_IO, "%s: cannot rename %s into place: %s", w->path, w->tmp, strerror(errno));
    } else if (keep)
        st = dpv_fail(err, n, DP_ERR_STATE, "%s: not written: no frame was decoded", w->path);
    if (w->oc && w->oc->pb) avio_closep(&w->oc->pb);
    if (!keep || st != DP_OK || w->n_frames == 0) unlink(w->tmp);
    writer_free(w);
    return st;
}

/* ------------------------------------------------------------ drawing */
/* 5x7 glyphs, one byte per row, bit 4 = leftmost column. */
static const uint8_t *glyph(char c) {
    static const uint8_t digits[10][7] = {
        {14, 17, 19, 21, 25, 17, 14}, {4, 12, 4, 4, 4, 4, 14},   {14, 17, 1, 2, 4, 8, 31},
        {31, 2, 4, 2, 1, 17, 14},     {2, 6, 10, 18, 31, 2, 2},  {31, 16, 30, 1, 1, 17, 14},
        {6, 8, 16, 30, 17, 17, 14},   {31, 1, 2, 4, 8, 8, 8},    {14, 17, 17, 14, 17, 17, 14},
        {14, 17, 17, 15, 1, 2, 12}};
    static const uint8_t hash[7] = {10, 10, 31, 10, 31, 10, 10}, dot[7] = {0, 0, 0, 0, 0, 12, 12},
                         dash[7] = {0, 0, 0, 31, 0, 0, 0}, q[7] = {14, 17, 1, 2, 4, 0, 4}, sp[7] = {0};
    if (c >= '0' && c <= '9') return digits[c - '0'];
    if (c == '#') return hash;
    if (c == '.') return dot;
    if (c == '-') return dash;
    if (c == '?') return q;
    return sp;
}

static void fill(uint8_t *rgb, int W, int H, int x0, int y0, int x1, int y1, const uint8_t col[3]) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > W) x1 = W;
    if (y1 > H) y1 = H;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) memcpy(rgb + ((size_t)y * W + x) * 3, col, 3);
}

static void text(uint8_t *rgb, int W, int H, int x, int y, int s, const char *t, const uint8_t col[3]) {
    for (; *t; t++, x += 6 * s) {
        const uint8_t *g = glyph(*t);
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 5; c++)
                if (g[r] & (16 >> c)) fill(rgb, W, H, x + c * s, y + r * s, x + (c + 1) * s, y + (r + 1) * s, col);
    }
}

void dpv_draw_faces(uint8_t *rgb, int W, int H, const dp_video_face *faces, int n_faces, float t_real, float t_fake) {
    static const uint8_t green[3] = {0, 210, 0}, yellow[3] = {240, 200, 0}, red[3] = {235, 20, 20},
                         grey[3] = {170, 170, 170}, black[3] = {0, 0, 0}, white[3] = {255, 255, 255};
    int th = W >= 960 ? 3 : 2, s = H >= 600 ? 3 : 2;
    for (int i = 0; i < n_faces; i++) {
        const dp_video_face *f = &faces[i];
        const uint8_t *col = !f->scored ? grey : f->p_fake >= t_fake ? red : f->p_fake < t_real ? green : yellow;
        int x0 = f->box.x, y0 = f->box.y, x1 = f->box.x + f->box.w, y1 = f->box.y + f->box.h;
        fill(rgb, W, H, x0, y0, x1, y0 + th, col);
        fill(rgb, W, H, x0, y1 - th, x1, y1, col);
        fill(rgb, W, H, x0, y0, x0 + th, y1, col);
        fill(rgb, W, H, x1 - th, y0, x1, y1, col);
        char label[32];
        if (f->scored) snprintf(label, sizeof label, "#%d %.2f", f->track_id, (double)f->p_fake);
        else snprintf(label, sizeof label, "#%d ?", f->track_id);
        int tw = (int)strlen(label) * 6 * s + 2 * s, tht = 9 * s;
        int ty = y0 - tht >= 0 ? y0 - tht : y1;
        fill(rgb, W, H, x0, ty, x0 + tw, ty + tht, black);
        text(rgb, W, H, x0 + s, ty + s, s, label, f->scored ? col : white);
    }
}

/* ------------------------------------------------------------ test videos */
dp_status dp_video_write_test(dp_ctx *ctx, const char *path, const dp_image *img, int n_frames, int fps, int dx,
                              int audio) {
    if (!path || !img || !img->data) return dp_error(ctx, DP_ERR_NULL, "dp_video_write_test: NULL argument");
    if (img->channels != 3 || img->width < 16 || img->height < 16 || img->width % 2 || img->height % 2 ||
        img->width > 8192 || img->height > 8192 || n_frames < 1 || n_frames > 100000 || fps < 1 || fps > 240)
        return dp_error(ctx, DP_ERR_ARG, "dp_video_write_test: bad image (%dx%dx%d, even sides) or counts",
                        img->channels, img->height, img->width);
    dpv_quiet_ffmpeg();
    int W = img->width, H = img->height;
    uint8_t *base = malloc((size_t)W * H * 3), *rgb = malloc((size_t)W * H * 3 + DPV_RGB_PAD);
    dpv_writer *w = calloc(1, sizeof *w);
    char err[512] = "";
    dp_status st = DP_OK;
    if (!base || !rgb || !w) {
        st = dp_error(ctx, DP_ERR_NOMEM, "dp_video_write_test: out of memory");
        goto out;
    }
    size_t plane = (size_t)W * H;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = img->data[c * plane + i];
            base[i * 3 + c] = (uint8_t)(v <= 0 ? 0 : v >= 1 ? 255 : v * 255.0f + 0.5f);
        }
    const char *ext = strrchr(path, '.');
    const char *format = ext && !strcmp(ext, ".ts") ? "mpegts" : ext && !strcmp(ext, ".mkv") ? "matroska" : "mp4";
    st = open_common(w, path, W, H, (AVRational){1, fps}, fps, format, err, sizeof err);
    if (st == DP_OK && audio) st = open_audio_enc(w, audio == 2 ? AV_CODEC_ID_PCM_S16LE : AV_CODEC_ID_AAC, 44100, 1, err, sizeof err);
    if (st == DP_OK) st = write_header(w, err, sizeof err);
    double phase = 0;
    for (int i = 0; i < n_frames && st == DP_OK; i++) {
        int sh = ((dx * i) % W + W) % W;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                memcpy(rgb + ((size_t)y * W + x) * 3, base + ((size_t)y * W + (x + W - sh) % W) * 3, 3);
        st = put_rgb(w, rgb, 3 * W, i, err, sizeof err);
        if (st == DP_OK && w->aenc) { /* this frame's share of a 440 Hz tone */
            int rate = w->aenc->sample_rate, k = (int)((int64_t)rate * (i + 1) / fps - (int64_t)rate * i / fps);
            float *buf = malloc(sizeof(float) * (size_t)k);
            if (!buf) {
                st = dp_error(ctx, DP_ERR_NOMEM, "out of memory");
                break;
            }
            int16_t *b16 = (int16_t *)buf; /* the same buffer as 16-bit samples for PCM */
            for (int j = 0; j < k; j++, phase += 2 * 3.14159265358979323846 * 440.0 / rate) {
                float v = 0.3f * (float)sin(phase);
                if (audio == 2) b16[j] = (int16_t)(v * 32767);
                else buf[j] = v;
            }
            void *planes[1] = {buf};
            av_audio_fifo_write(w->fifo, planes, k);
            free(buf);
            st = aac_drain(w, 0, err, sizeof err);
        }
    }
    if (st == DP_OK) {
        st = dpv_writer_close(w, 1, err, sizeof err);
        w = NULL;
    }
    if (st != DP_OK && err[0]) st = dp_error(ctx, st, "%s", err);
out:
    if (w) {
        if (w->tmp[0]) unlink(w->tmp);
        writer_free(w);
    }
    free(base);
    free(rgb);
    return st;
}
