/* doppel scan — the video pipeline (stub: the API of include/doppel/video.h; the pipeline follows). */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "doppel/video.h"

struct dp_video_scanner {
    dp_ctx *ctx;
};

dp_status dp_video_scanner_new(dp_ctx *ctx, const char *model_path, const char *source_dir, dp_video_scanner **out) {
    (void)model_path;
    (void)source_dir;
    if (!ctx || !out) return dp_error(ctx, DP_ERR_NULL, "dp_video_scanner_new: NULL argument");
    *out = NULL;
    return dp_error(ctx, DP_ERR_UNSUPPORTED, "dp_video_scanner_new: not implemented yet");
}
void dp_video_scanner_free(dp_video_scanner *s) { free(s); }
int dp_video_source_is_live(const char *source) { (void)source; return 0; }
dp_status dp_video_scan(dp_video_scanner *s, const char *source, const dp_video_opts *opts, dp_video_result **out) {
    (void)s, (void)source, (void)opts;
    if (out) *out = NULL;
    return DP_ERR_UNSUPPORTED;
}
void dp_video_result_free(dp_video_result *r) {
    if (!r) return;
    free(r->tracks);
    free(r->ranges);
    free(r->samples);
    free(r);
}
int dp_video_result_json(const dp_video_result *r, int flags, char *buf, size_t n) {
    (void)r, (void)flags;
    if (n) buf[0] = 0;
    return 0;
}
int dp_video_frame_json(const char *source, const dp_video_frame *f, char *buf, size_t n) {
    (void)source, (void)f;
    if (n) buf[0] = 0;
    return 0;
}
dp_status dp_video_timeline_csv(dp_ctx *ctx, const dp_video_result *r, const char *path) {
    (void)r, (void)path;
    return dp_error(ctx, DP_ERR_UNSUPPORTED, "not implemented yet");
}
dp_status dp_video_write_test(dp_ctx *ctx, const char *path, const dp_image *img, int n_frames, int fps, int dx,
                              int audio) {
    (void)path, (void)img, (void)n_frames, (void)fps, (void)dx, (void)audio;
    return dp_error(ctx, DP_ERR_UNSUPPORTED, "not implemented yet");
}
