/* Image decoding (PNG, JPEG, WebP via dp_image_decode) and the metadata reader
 * behind `doppel watermark check` (dp_label_read_meta). */
#include "fuzz_common.h"

static dp_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ctx) ctx = fz_ctx();
    dp_image img;
    dp_status st = dp_image_decode(ctx, data, size, "fuzz", 0, NULL, &img);
    fz_check_status(ctx, st);
    if (st == DP_OK) {
        if (img.channels < 1 || img.width < 1 || img.height < 1) abort();
        /* Grey decoding takes another path through each decoder. */
        dp_image grey;
        if (dp_image_decode(ctx, data, size, "fuzz", 1, NULL, &grey) == DP_OK) dp_image_free(ctx, &grey);
        dp_image_free(ctx, &img);
    }
    dp_label_meta m;
    st = dp_label_read_meta(ctx, data, size, "fuzz", &m);
    fz_check_status(ctx, st);
    if (st == DP_OK && (strnlen(m.description, sizeof m.description) == sizeof m.description ||
                        strnlen(m.model, sizeof m.model) == sizeof m.model))
        abort(); /* strings must be terminated */
    return 0;
}
