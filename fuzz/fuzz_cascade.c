/* OpenCV cascade XML (dp_face_detector_load, libxml2); a cascade that loads
 * is run on a small image, so the evaluator meets whatever the file says. */
#include "fuzz_common.h"

static dp_ctx *ctx;
static dp_image img;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ctx) {
        ctx = fz_ctx();
        if (dp_image_alloc(ctx, 1, 40, 48, &img) != DP_OK) abort();
        for (int i = 0; i < 40 * 48; i++) img.data[i] = (float)((i * 37) % 101) / 100.0f;
    }
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dp_face_detector *d = NULL;
    dp_status st = dp_face_detector_load(ctx, path, &d);
    fz_check_status(ctx, st);
    if (st == DP_OK) {
        dp_face_box boxes[16];
        int n = 0;
        dp_face_opts o = {.pad = DP_FACE_PAD_NEVER};
        st = dp_face_detect(d, &img, &o, boxes, 16, &n);
        fz_check_status(ctx, st);
        o.pad = DP_FACE_PAD_ALWAYS;
        o.min_neighbors = -1;
        st = dp_face_detect(d, &img, &o, boxes, 16, &n);
        fz_check_status(ctx, st);
        dp_face_detector_free(d);
    }
    close(fd);
    return 0;
}
