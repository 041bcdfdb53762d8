/* doppel — labelling what doppel generates: metadata and an invisible watermark.
 *
 * Every image doppel generates is marked twice:
 *  - metadata: PNG iTXt/tEXt chunks, or a JPEG XMP packet, saying the image is
 *    AI-generated (IPTC digital source type trainedAlgorithmicMedia), by which
 *    software and which model;
 *  - an invisible watermark in the pixels, with a payload (a doppel tag and a
 *    32-bit model id) that survives JPEG re-compression.
 * The generation commands write images only through dp_write_synthetic(). */
#ifndef DOPPEL_LABEL_H
#define DOPPEL_LABEL_H

#include "data.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_label_info {
    const char *software; /* NULL = "doppel <version>" */
    const char *model;    /* human-readable model name, e.g. "dcgan64 run celeba-s1 step 20000" */
    uint32_t model_id;    /* carried by the watermark */
} dp_label_info;

/* Embed the watermark into img (in place). Images smaller than the minimum
 * size the watermark needs fail with DP_ERR_ARG naming that size. */
dp_status dp_watermark_embed(dp_ctx *ctx, dp_image *img, uint32_t model_id);

typedef struct dp_watermark_result {
    int found;         /* 1 if the doppel tag was recovered */
    uint32_t model_id; /* valid when found */
    float score;       /* detection statistic (higher = stronger evidence) */
} dp_watermark_result;
dp_status dp_watermark_detect(dp_ctx *ctx, const dp_image *img, dp_watermark_result *out);

/* Watermark + metadata + crash-safe write (temp file + rename). The format
 * follows the extension: .png, or .jpg/.jpeg (quality 1..100, 0 = 92). */
dp_status dp_write_synthetic(dp_ctx *ctx, const char *path, const dp_image *img, const dp_label_info *info,
                             int jpeg_quality);

#ifdef __cplusplus
}
#endif
#endif
