/* Detection model files: the metadata (doppel.task, doppel.crop — the crop
 * policy —, thresholds, ood) and weights read by dp_detector_load, and the
 * crop policy parser on the raw input. */
#include "fuzz_common.h"

#include "doppel/detect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Detectors allocate their tensors in the context's arena: one context per input. */
    dp_ctx *ctx = fz_ctx();
    char s[512];
    size_t k = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, k);
    s[k] = 0;
    dp_crop_policy p;
    dp_status st = dp_crop_policy_parse(ctx, s, &p);
    fz_check_status(ctx, st);
    if (st == DP_OK && (p.work < 8 || p.size < 8 || p.size > 1024)) abort();
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd >= 0) {
        dp_detector *d = NULL;
        st = dp_detector_load(ctx, path, 1, &d);
        fz_check_status(ctx, st);
        dp_detector_free(d);
        close(fd);
    }
    dp_ctx_free(ctx);
    return 0;
}
