/* doppel bench: the scan480 / scan720 workloads (video detection, issue 6).
 *
 * One timed run of dp_video_scan over a whole video, every frame analysed and
 * every face found classified, in file mode (nothing dropped). The inputs:
 *   scan480: ../shared/data/video/ffpp_real_519.mp4 (640x480, 751 frames of a
 *            news anchor) when present, else the synthetic clip below at 640x480;
 *   scan720: a synthetic 1280x720 clip: the astronaut portrait of
 *            python3-skimage (a real face, 360x360 px) on a textured
 *            background, moving 4 px a frame, 25 fps, 10 s, H.264 made by
 *            doppel's own encoder (dp_video_write_test) into /tmp once.
 * The line printed is the bench worker's: NAME th=T RATE frames/s (MS ms/frame, ...). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/bench_scan.h"
#include "doppel/doppel.h"

#ifndef DP_SOURCE_DIR
#define DP_SOURCE_DIR "."
#endif

#ifndef DP_HAVE_FFMPEG
int bench_scan_worker(const char *name, int threads) {
    (void)threads;
    fprintf(stderr, "doppel bench --worker %s: built without FFmpeg\n", name);
    return 1;
}
#else
#include "doppel/video.h"

#define ASTRONAUT "/usr/lib/python3/dist-packages/skimage/data/astronaut.png"
#define FFPP_REAL DP_SOURCE_DIR "/../shared/data/video/ffpp_real_519.mp4"

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

static double load1(void) { /* the 1-minute load average (other work on the machine) */
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static int exists(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && s.st_size > 0;
}

/* The synthetic clip: a textured background with the portrait at about the
 * middle (face about 0.3 of the height), written once to path. */
static dp_status make_clip(dp_ctx *ctx, int W, int H, const char *path) {
    dp_image img = {0}, face = {0}, fs = {0};
    dp_status st = dp_image_alloc(ctx, 3, H, W, &img);
    if (st != DP_OK) return st;
    size_t pl = (size_t)W * H;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) /* smooth gradients and a fine texture: the encoder has work to do */
                img.data[c * pl + (size_t)y * W + x] =
                    0.25f + 0.3f * (float)((x * (c + 1) + y * (3 - c)) % 97) / 97.0f + 0.08f * (float)((x * y) % 7) / 7;
    int side = H / 2;
    if ((st = dp_image_load(ctx, ASTRONAUT, 3, NULL, &face)) == DP_OK &&
        (st = dp_image_resize(ctx, &face, side, side, &fs)) == DP_OK) {
        int x0 = (W - side) / 2, y0 = H / 6;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < side; y++)
                memcpy(img.data + c * pl + (size_t)(y0 + y) * W + x0, fs.data + (size_t)c * side * side + (size_t)y * side,
                       sizeof(float) * (size_t)side);
    } else
        fprintf(stderr, "bench scan: %s not found (python3-skimage): the clip has no face\n", ASTRONAUT);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.part-%ld.mp4", path, (long)getpid());
    if (st == DP_OK || st == DP_ERR_IO || st == DP_ERR_NOT_FOUND) st = dp_video_write_test(ctx, tmp, &img, 250, 25, 4, 0);
    if (st == DP_OK && rename(tmp, path) != 0) {
        fprintf(stderr, "bench scan: cannot rename %s\n", tmp);
        st = DP_ERR_IO;
    }
    if (st != DP_OK) unlink(tmp);
    dp_image_free(ctx, &img);
    dp_image_free(ctx, &face);
    dp_image_free(ctx, &fs);
    return st;
}

int bench_scan_worker(const char *name, int threads) {
    int big = !strcmp(name, "scan720");
    dp_ctx *ctx;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = threads, .seed = 1}, &ctx) != DP_OK) return 1;
    char path[512];
    const char *what;
    if (!big && exists(FFPP_REAL)) {
        snprintf(path, sizeof path, "%s", FFPP_REAL);
        what = "ffpp_real_519.mp4";
    } else {
        snprintf(path, sizeof path, "/tmp/doppel-bench-%s-v1-%ld.mp4", big ? "720" : "480", (long)getuid());
        what = big ? "synthetic 1280x720" : "synthetic 640x480";
        if (!exists(path) && make_clip(ctx, big ? 1280 : 640, big ? 720 : 480, path) != DP_OK) {
            fprintf(stderr, "doppel bench --worker %s: %s\n", name, dp_ctx_error(ctx));
            dp_ctx_free(ctx);
            return 1;
        }
    }
    dp_video_scanner *sc;
    if (dp_video_scanner_new(ctx, NULL, DP_SOURCE_DIR, &sc) != DP_OK) {
        fprintf(stderr, "doppel bench --worker %s: %s\n", name, dp_ctx_error(ctx));
        dp_ctx_free(ctx);
        return 1;
    }
    dp_video_result *r = NULL;
    double cpu0 = cpu_seconds();
    dp_status st = dp_video_scan(sc, path, &(dp_video_opts){.live = -1}, &r);
    double cpu = cpu_seconds() - cpu0;
    int rc = 0;
    if (st != DP_OK || !r || r->frames_analysed == 0) {
        fprintf(stderr, "doppel bench --worker %s: %s\n", name, r ? r->error : dp_ctx_error(ctx));
        rc = 1;
    } else {
        double ms = r->wall_s * 1e3 / (double)r->frames_analysed;
        /* CPU time per frame (all threads): what the machine's load does not change much */
        printf("%s th=%d %.6g frames/s (%.4f ms/frame, %lld frames of %dx%d, %lld faces scored, %s; CPU %.2f ms per "
               "frame, load %.1f)\n",
               name, threads, 1e3 / ms, ms, (long long)r->frames_analysed, r->width, r->height,
               (long long)r->faces_scored, what, cpu * 1e3 / (double)r->frames_analysed, load1());
        fflush(stdout);
    }
    dp_video_result_free(r);
    dp_video_scanner_free(sc);
    dp_ctx_free(ctx);
    return rc;
}
#endif
