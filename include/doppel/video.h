/* doppel — deepfake detection on video (issue 6).
 *
 * A source (a file, "-" for stdin, a V4L2 camera such as /dev/video0, an
 * rtsp/http/udp URL: anything FFmpeg's libavformat opens) is decoded on its
 * own thread; faces are found (face.h) and tracked across frames (IoU, one
 * track id per person); every tracked face crop is scored in batches by the
 * image detector (detect.h, the crop policy stored in the model); the
 * per-frame fused logits are aggregated per track and per video into a
 * verdict (real / uncertain / fake) and the time ranges that look fake.
 * docs/video.md gives the pipeline, the aggregation rule and measured speed.
 *
 * Conventions: every call that can fail returns a dp_status with a message in
 * the scanner's context (dp_ctx_error); every *_free accepts NULL. A scanner
 * is one pipeline: scan one source at a time with it (use one scanner per
 * thread to scan several sources at once; they may share nothing).
 *
 * Built only when FFmpeg's libraries were found (DP_HAVE_FFMPEG); without
 * them dp_video_scanner_new returns DP_ERR_UNSUPPORTED.
 */
#ifndef DOPPEL_VIDEO_H
#define DOPPEL_VIDEO_H

#include <stdint.h>
#include <stdio.h>

#include "core.h"
#include "detect.h"
#include "face.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_video_scanner dp_video_scanner;

/* ------------------------------------------------------------ per frame
 * What the pipeline reports after each analysed frame (callback below). */
typedef struct dp_video_face {
    int track_id;      /* 1, 2, ... in order of first appearance */
    dp_face_box box;   /* in the frame's pixels */
    int scored;        /* 1: the crop was classified and counts towards the track (0: too small / blurry) */
    float logit;       /* fused logit of the detector (log-odds of fake); 0 when not scored */
    float p_fake;      /* sigmoid(logit) */
    float ood;         /* the detector's out-of-distribution distance */
} dp_video_face;

typedef struct dp_video_frame {
    int64_t index;        /* decoded frame number, from 0 */
    double time_s;        /* presentation time from the start of the stream */
    int n_faces;
    const dp_video_face *faces; /* valid during the callback only */
    /* progress */
    int64_t frames_decoded, frames_analysed, frames_dropped;
    int64_t frames_total; /* estimate for files (-1 unknown, e.g. live) */
    double duration_s;    /* the stream's duration (-1 unknown) */
    double elapsed_s;     /* wall time since the scan started */
    double fps;           /* analysed frames per wall second so far */
    double latency_s;     /* wall time from the frame's decoding to the end of its analysis */
    int live;
} dp_video_frame;

/* Called on the scanning thread after each analysed frame, in order.
 * Return nonzero to stop the scan (the result then holds what was analysed,
 * with stopped = 1). */
typedef int (*dp_video_frame_cb)(const dp_video_frame *frame, void *user);

/* ------------------------------------------------------------ options
 * A zero field means the default. */
typedef struct dp_video_opts {
    int every;            /* analyse every Nth decoded frame (default 1: every frame) */
    double fps;           /* or: at most this many analysed frames per second of video time (0: off) */
    int live;             /* 0 auto (live when the source is "-", /dev/..., or a network URL), 1 live, -1 file.
                             Live: frames are dropped rather than queued when the analysis falls behind. */
    int max_width, max_height;  /* larger video is refused before any frame is allocated (default 3840x2160) */
    double max_seconds;   /* stop after this much video time (default: 6 h for files, unlimited for live) */
    double timeout_s;     /* no data for this long: the source is reported stalled (default 10 s) */
    int min_face;         /* smallest face side searched, pixels (default max(40, shorter side / 12)) */
    int min_face_scored;  /* faces smaller than this are tracked but not scored (default 40) */
    int detect_every;     /* full-frame face search every N analysed frames, tracked search between (default 5) */
    int batch;            /* crops classified together (default 8) */
    int decode_threads;   /* FFmpeg decoder threads (0: live sources 1; files 2 when 4:4:4, RGB or over 8 bits, else 1) */
    const char *out_path; /* annotated copy of the video (H.264 yuv420p MP4, faststart, audio kept), or NULL */
    int64_t max_samples;  /* per-face timeline entries kept in the result (default 1,000,000) */
    dp_video_frame_cb on_frame;
    void *user;
    /* Polled (with user) between frames and every 50 ms while waiting for
     * data: nonzero stops the scan as the callback's return does (Ctrl-C, a
     * cancelled server job). May be NULL. */
    int (*should_stop)(void *user);
    /* FFmpeg demuxer and protocol options for opening the source, a NULL-terminated list of
     * "key=value" strings (e.g. "rtsp_transport=udp", "rtsp_flags=listen" to receive an RTSP
     * push); they override doppel's own (rtsp_transport=tcp, rw_timeout). An option that the
     * source's format and protocol do not use is an error (DP_ERR_ARG). May be NULL. */
    const char *const *input_options;
} dp_video_opts;

/* ------------------------------------------------------------ result */
typedef struct dp_video_sample { /* one scored face in one frame (the timeline) */
    int64_t frame;
    double time_s;
    int track_id;
    dp_face_box box;
    float logit, p_fake;
} dp_video_sample;

typedef struct dp_video_track {
    int id;
    double t_start, t_end;  /* seconds: first and last frame the face was seen */
    int64_t n_seen;         /* analysed frames with this face */
    int64_t n_scored;       /* of which scored (big and sharp enough) */
    float mean_side;        /* mean face side, pixels */
    float logit;            /* the track's score: trimmed mean of the sharp scored frames' logits (docs/video.md) */
    float p_fake;           /* sigmoid(logit) */
    float fake_share;       /* share of the scored frames with p_fake >= the model's t_fake */
    int confident;          /* enough evidence: >= DP_VIDEO_MIN_TRACK_FRAMES scored frames, and at least a tenth
                               of the longest track's */
    dp_verdict verdict;     /* real (p_fake < the model's t_real), fake (the video rule above), else uncertain;
                               uncertain too when not confident or when most frames are out of the model's
                               distribution */
    int64_t n_used;         /* scored frames in the trimmed mean (sharp enough, not trimmed) */
    float ood_share;        /* share of the scored frames the detector calls out of distribution */
} dp_video_track;

typedef struct dp_video_range { /* a span that looks fake */
    double t_start, t_end;
    int track_id;
    float p_fake;           /* mean over the span */
} dp_video_range;

#define DP_VIDEO_MIN_TRACK_FRAMES 8
/* The video rule (docs/video.md, "Aggregation"): a confident track is fake when its score
 * (trimmed mean logit) is at least logit(t_video), t_video = min(the model's t_fake,
 * DP_VIDEO_T_FAKE), and at least DP_VIDEO_MIN_FAKE_SHARE of its scored frames, and
 * DP_VIDEO_MIN_FAKE_FRAMES of them, are each at or above the model's t_fake (the image
 * threshold); real when the score is under logit(t_real); else uncertain. The fake ranges
 * are the 1-s windows whose mean is at least logit(t_video). */
#define DP_VIDEO_T_FAKE 0.95f
#define DP_VIDEO_MIN_FAKE_SHARE 0.02f
#define DP_VIDEO_MIN_FAKE_FRAMES 3

typedef struct dp_video_result {
    char source[1024];
    int width, height;
    double stream_fps;      /* frames per second of the stream (0 unknown) */
    double duration_s;      /* of the stream (-1 unknown) */
    int live;
    int has_audio;
    int64_t frames_decoded, frames_analysed, frames_dropped, faces_scored;
    double seconds_analysed; /* video time covered (last analysed frame's time) */
    double wall_s;
    double latency_max_s, latency_mean_s; /* decode → verdict per analysed frame */
    dp_verdict verdict;     /* fake if a confident track is fake; uncertain if none is confident or one is
                               uncertain; else real */
    float p_fake;           /* the highest confident track's p_fake (the highest track's when none is confident) */
    int n_tracks;
    dp_video_track *tracks;
    int n_ranges;
    dp_video_range *ranges;
    int64_t n_samples;
    dp_video_sample *samples;
    /* how the scan ended */
    int complete;           /* the whole source was read */
    int stopped;            /* the callback asked to stop, or a limit (max_seconds) was reached */
    dp_status status;       /* DP_OK, or why reading stopped early (the frames before it still count) */
    char error[512];        /* the message when status != DP_OK */
} dp_video_result;

/* ------------------------------------------------------------ the scanner
 * model_path: a detection model (NULL: dp_detector_find_default with
 * source_dir, which may be NULL). fd: the face cascade (NULL: the default,
 * dp_face_detector_default). The scanner keeps its own copies. */
dp_status dp_video_scanner_new(dp_ctx *ctx, const char *model_path, const char *source_dir, dp_video_scanner **out);
void dp_video_scanner_free(dp_video_scanner *s);

/* Whether a source name is a live source in the auto rule ("-", /dev/...,
 * rtsp:, rtmp:, http(s):, udp:, tcp:, srt:). */
int dp_video_source_is_live(const char *source);

/* Scan one source. *out is set whenever the arguments are valid (even when
 * the source cannot be opened or breaks mid-way: it then holds what was
 * analysed before, with status and error filled in); the return value is
 * the status of the scan (out->status). Free with dp_video_result_free. */
dp_status dp_video_scan(dp_video_scanner *s, const char *source, const dp_video_opts *opts, dp_video_result **out);
void dp_video_result_free(dp_video_result *r);

/* ------------------------------------------------------------ output
 * JSON of a result (one object, no newline), like snprintf: returns the
 * length it needs. flags: DP_VIDEO_JSON_TIMELINE adds a per-second timeline
 * per track. */
#define DP_VIDEO_JSON_TIMELINE 1
int dp_video_result_json(const dp_video_result *r, int flags, char *buf, size_t n);
/* One analysed frame as a JSON line (live output), like snprintf. */
int dp_video_frame_json(const char *source, const dp_video_frame *f, char *buf, size_t n);
/* The timeline as CSV (frame,time_s,track,x,y,w,h,logit,p_fake), written to
 * a temporary file next to it, then renamed. */
dp_status dp_video_timeline_csv(dp_ctx *ctx, const dp_video_result *r, const char *path);

/* ------------------------------------------------------------ test videos
 * Writes a small H.264 (yuv420p) MP4 of n_frames frames at fps, each frame
 * the RGB image img (planar [3,H,W] floats in [0,1], even sides) moved by
 * dx pixels per frame (wrapping, dx may be 0), with a 440 Hz tone when
 * audio is 1 (AAC) or 2 (16-bit PCM: .mkv only). The container follows the
 * name: .ts MPEG-TS (streamable), .mkv Matroska, else MP4 (faststart). For
 * tests and benchmarks (no external tool needed). */
dp_status dp_video_write_test(dp_ctx *ctx, const char *path, const dp_image *img, int n_frames, int fps, int dx,
                              int audio);

#ifdef __cplusplus
}
#endif
#endif
