/* doppel video internals (src/video/): the decoding thread and its queue,
 * the tracker, the crop scorer, the annotated-output writer. Not installed. */
#ifndef DOPPEL_VIDEO_INTERNAL_H
#define DOPPEL_VIDEO_INTERNAL_H

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <pthread.h>
#include <stdint.h>

#include "doppel/video.h"

double dpv_now(void); /* monotonic seconds */
void dpv_quiet_ffmpeg(void); /* FFmpeg's log off unless DOPPEL_FFMPEG_LOG=1 */

/* Spare bytes after every packed-RGB buffer that libswscale reads or writes: its SIMD code works a
 * vector at a time past the last pixel (valgrind: a 16-byte read ending 4 bytes after an unpadded
 * W*H*3 buffer in sws_scale, docs/security.md). */
#define DPV_RGB_PAD 64

/* ------------------------------------------------------------ source (source.c)
 * One decoded frame, converted to packed RGB24 and 8-bit grey. Audio packets
 * travel through the same queue (for --out) so that they stay in order. */
typedef struct dpv_item {
    int kind;            /* 0 video frame, 1 audio packet */
    int analyse;         /* video: selected by every/fps (else only written to --out) */
    int64_t index;       /* decoded frame number */
    double t;            /* seconds from the stream's start */
    int64_t pts;         /* in the video stream's time base (AV_NOPTS_VALUE unknown) */
    double t_wall;       /* when it was decoded (latency) */
    /* The picture: a reference to the decoded 8-bit 4:2:0 frame when yuv is 1
     * (limited range) or 2 (full range, the yuvj formats) of an 8-bit planar
     * YUV frame, chroma shrunk 2^csx x 2^csy times — crops are converted from
     * it, no RGB copy of the whole frame is made — else (other pixel formats)
     * rgb. rgb (packed RGB24, width*height*3) is filled too when the frame is
     * written (--out); NULL otherwise. gray: gray_w*gray_h, the frame shrunk
     * gray_scale times, for face finding (analysed frames only). */
    AVFrame *frame;
    int yuv, csx, csy;
    uint8_t *rgb, *gray;
    AVPacket *pkt;       /* audio */
} dpv_item;

typedef struct dpv_source dpv_source;

typedef struct dpv_source_info {
    int width, height;
    int gray_w, gray_h, gray_scale; /* the grey image for face finding */
    double fps, duration_s;
    int64_t frames_total;  /* estimate, -1 unknown */
    int live, has_audio;
    AVRational time_base;  /* of the video stream */
    const AVCodecParameters *audio; /* NULL: no audio stream (or audio not wanted) */
    AVRational audio_time_base;
} dpv_source_info;

typedef struct dpv_source_opts {
    int live, every, decode_threads;
    int writing; /* --out: every frame and the audio packets are queued too */
    double fps, max_seconds, timeout_s;
    int max_width, max_height;
    /* the context's dp_limits (0: none): a header over them is refused, a stream is stopped with an error */
    int64_t lim_side, lim_frames;
    double lim_seconds;
    const char *const *input_options; /* dp_video_opts' */
} dpv_source_opts;

/* Opens the source and reads its header (the checks and the limits happen
 * here, before any frame is allocated). On failure: a message in err. */
dp_status dpv_source_open(const char *source, const dpv_source_opts *o, dpv_source **out, char *err, size_t n);
const dpv_source_info *dpv_source_get_info(const dpv_source *s);
/* The grey image of each analysed frame shrunk d times (1..8; d x d
 * means), for face finding; before dpv_source_start. */
void dpv_source_set_gray_scale(dpv_source *s, int d);
/* Starts the decoding thread. */
dp_status dpv_source_start(dpv_source *s, char *err, size_t n);
/* The next item in order, waiting at most timeout seconds. Returns 1 with an
 * item, 0 at the end of the stream (then dpv_source_status says why), -1 on
 * a timeout (nothing yet). */
int dpv_source_next(dpv_source *s, dpv_item **it, double timeout);
/* Gives the item's buffers back to the decoder. */
void dpv_source_release(dpv_source *s, dpv_item *it);
/* Items waiting in the queue (0: the analysis is keeping up). */
int dpv_source_pending(dpv_source *s);
/* How reading ended: DP_OK at a clean end of stream; else the message. */
dp_status dpv_source_status(dpv_source *s, char *err, size_t n, int *limit_hit);
int64_t dpv_source_decoded(dpv_source *s);
int64_t dpv_source_dropped(dpv_source *s);
/* Asks the thread to stop (interrupts blocking reads), joins it, frees. */
void dpv_source_close(dpv_source *s);

/* ------------------------------------------------------------ tracker (track.c) */
typedef struct dpv_track {
    int id;
    dp_face_box box;
    int misses;          /* analysed frames in a row without this face */
    int alive;
    int seen_this_frame;
    double t_start, t_end;
    int64_t n_seen, n_scored;
    double side_sum;
    /* scored logits (for the aggregate and the fake ranges) */
    float *logit, *sharp;
    double *t;
    int64_t n, cap, n_ood;
} dpv_track;

typedef struct dpv_tracker {
    dpv_track *tr;
    int n, cap, next_id;
    int max_misses;
} dpv_tracker;

double dpv_iou(const dp_face_box *a, const dp_face_box *b);
/* Matches this frame's boxes to live tracks (greedy by IoU >= 0.3);
 * unmatched boxes open new tracks when may_open; tracks not seen for more
 * than max_misses analysed frames end. ids[i] gets the track index of box i. */
dp_status dpv_tracker_update(dpv_tracker *t, const dp_face_box *boxes, int n, int may_open, double time_s, int *ids);
/* One scored frame: its time, fused logit, the crop's sharpness (variance
 * of the Laplacian of its grey) and whether the detector found it out of
 * its training distribution. */
dp_status dpv_track_add_score(dpv_track *tr, double t, float logit, float sharp, int ood);
void dpv_tracker_free(dpv_tracker *t);

/* The track's score: the frames whose sharpness is at least half the
 * track's median (blurred frames out), their logits clipped to +-8, the
 * lowest and highest 10 % dropped, the mean of the rest. *used (may be
 * NULL) gets the number of frames averaged. */
float dpv_track_logit(const dpv_track *tr, int64_t *used);
/* The video rule (video.h, docs/video.md): a track's verdict from its score (trimmed mean
 * logit), n_fake of its n scored frames at or above t_fake, whether it is confident and its
 * out-of-distribution share; t_real, t_fake: the model's image thresholds. */
dp_verdict dpv_track_verdict(float logit, int64_t n_fake, int64_t n, int confident, float ood_share, float t_real,
                             float t_fake);
/* Fake spans of a track: centred 1-second windows whose mean logit is at or
 * above logit(t_fake), merged across gaps of up to 0.5 s, kept when at least
 * 0.5 s long. Appends to *ranges. */
dp_status dpv_track_ranges(const dpv_track *tr, float t_fake, dp_video_range **ranges, int *n, int *cap);

/* ------------------------------------------------------------ annotated output (annotate.c) */
typedef struct dpv_writer dpv_writer;
dp_status dpv_writer_open(const char *path, int width, int height, AVRational time_base, double fps,
                          const AVCodecParameters *audio, AVRational audio_tb, dpv_writer **out, char *err, size_t n);
/* Draws the faces on rgb (in place) and encodes the frame. */
dp_status dpv_writer_frame(dpv_writer *w, uint8_t *rgb, int64_t pts, const dp_video_face *faces, int n_faces,
                           float t_real, float t_fake, char *err, size_t n);
dp_status dpv_writer_audio(dpv_writer *w, AVPacket *pkt, char *err, size_t n);
/* Flushes, writes the trailer (faststart) and renames the file into place
 * when keep; else removes the temporary file. Frees w. */
dp_status dpv_writer_close(dpv_writer *w, int keep, char *err, size_t n);
/* Boxes and labels on a packed RGB24 image. */
void dpv_draw_faces(uint8_t *rgb, int width, int height, const dp_video_face *faces, int n_faces, float t_real,
                    float t_fake);

/* Creates PATH.tmp-PID-N (mode 0666 less the umask) for writing; the fd or -1 (errno). */
int dpv_create_tmp(const char *path, char *tmp, size_t n);
/* Writes the message into err (n bytes) and returns st. */
dp_status dpv_fail(char *err, size_t n, dp_status st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* FFmpeg's error text. */
const char *dpv_averr(int e, char *buf, size_t n);

#endif
