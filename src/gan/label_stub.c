/* STUB until the watermark lands: replace (file owned by the watermark work). */
#include "core/internal.h"
#include "doppel/label.h"

dp_status dp_watermark_embed(dp_ctx *ctx, dp_image *img, uint32_t model_id) {
    (void)img;
    (void)model_id;
    return dp_error(ctx, DP_ERR_UNSUPPORTED, "watermark: not implemented yet");
}
dp_status dp_watermark_detect(dp_ctx *ctx, const dp_image *img, dp_watermark_result *out) {
    (void)img;
    (void)out;
    return dp_error(ctx, DP_ERR_UNSUPPORTED, "watermark: not implemented yet");
}
dp_status dp_write_synthetic(dp_ctx *ctx, const char *path, const dp_image *img, const dp_label_info *info, int q) {
    (void)info;
    (void)q;
    return dp_image_save_png(ctx, path, img); /* unlabelled until the watermark lands */
}
