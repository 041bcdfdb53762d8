/* Video demuxing and decoding behind doppel scan (dp_video_scan, FFmpeg): the input is a
 * file in /dev/shm (FFmpeg probes the container from the bytes), scanned with small limits
 * (at most 320x320, 2 s of video, every frame searched for faces, the small seed detector).
 * FFmpeg's own demuxers are fuzzed by OSS-Fuzz; this target fuzzes doppel's use of them. */
#include "fuzz_common.h" /* first: it asks for _GNU_SOURCE */

#include "doppel/video.h"

static dp_ctx *ctx;
static dp_video_scanner *scanner;
static char path[256];

static int on_frame(const dp_video_frame *f, void *user) {
    (void)user;
    return f->frames_analysed >= 24; /* enough: stop */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ctx) {
        ctx = fz_ctx();
        char model[1024];
        snprintf(model, sizeof model, "%s/fuzz/corpus/model/small-detector.safetensors", DP_SOURCE_DIR);
        if (dp_video_scanner_new(ctx, model, DP_SOURCE_DIR, &scanner) != DP_OK) {
            fprintf(stderr, "fuzz_video: %s\n", dp_ctx_error(ctx));
            abort();
        }
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(path, sizeof path, "%s/doppel-fuzz-video-%ld.bin", dir, (long)getpid());
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    dp_video_opts o = {.live = -1, .max_width = 320, .max_height = 320, .max_seconds = 2, .timeout_s = 5,
                       .max_samples = 1000, .on_frame = on_frame};
    dp_video_result *r = NULL;
    dp_status st = dp_video_scan(scanner, path, &o, &r);
    fz_check_status(ctx, st);
    if (st == DP_OK && r && (r->n_tracks < 0 || r->n_samples < 0 || r->n_samples > 1000)) abort();
    dp_video_result_free(r);
    unlink(path);
    return 0;
}
