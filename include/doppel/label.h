/* doppel — labelling what doppel generates: metadata and an invisible watermark.
 *
 * Every image doppel generates is marked twice:
 *  - metadata: PNG iTXt/tEXt chunks, or a JPEG XMP packet (APP1) and comment,
 *    saying the image is AI-generated (IPTC digital source type
 *    trainedAlgorithmicMedia), by which software and which model;
 *  - an invisible watermark in the pixels, with a 64-bit payload (a 16-bit
 *    doppel tag, the 32-bit model id and a CRC-16, convolutionally coded)
 *    that survives JPEG re-compression.
 * The generation commands write images only through dp_write_synthetic().
 *
 * The watermark (docs/watermark.md has the measurements and the limits):
 * spread-transform dither modulation in the 8x8 block DCT of the luminance.
 * Each of the 140 coded bits is carried by the projection of about 6 low
 * AC coefficients (zig-zag 1..14, spread over the blocks of a tile by a fixed
 * key) onto a pseudo-random +-1 pattern; the projection is quantised to the
 * lattice of that bit's value, and the change is spread over the
 * coefficients in proportion to each block's local standard deviation
 * (textured blocks take more of it than flat ones). A tile is 8..15 blocks
 * a side (a 64x64 image is one tile); larger images hold several tiles from
 * the top-left corner; the detector adds the soft decisions of all tiles,
 * tries a range of gains (a contrast change scales the projections) and runs
 * a Viterbi decoder. A hit needs the tag and the CRC to match (32 check bits)
 * and a score (the correlation of the soft decisions with the decoded
 * codeword, in [-1,1]) of at least DP_WATERMARK_MIN_SCORE.
 *
 * The mark survives JPEG re-compression (the 8x8 grid stays aligned),
 * brightness and contrast changes, noise, lossless storage; it does not
 * survive cropping that moves the 8x8 grid or changes the block count,
 * resizing, blurring, rotation or flips. The key is public (doppel is open
 * source): the mark labels honest output, it is no defence against someone
 * who wants to remove or forge it. */
#ifndef DOPPEL_LABEL_H
#define DOPPEL_LABEL_H

#include "data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The smallest image side dp_watermark_embed accepts (pixels). */
#define DP_WATERMARK_MIN_SIDE 48
/* dp_write_synthetic enlarges smaller images to at least this side. */
#define DP_WATERMARK_ENLARGE_SIDE 64
/* A detection needs the tag and CRC to match and a score at least this. */
#define DP_WATERMARK_MIN_SCORE 0.47f
/* IPTC digital source type written into the metadata. */
#define DP_IPTC_TRAINED_ALGORITHMIC_MEDIA "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

typedef struct dp_label_info {
    const char *software; /* NULL = "doppel <version>" */
    const char *model;    /* human-readable model name, e.g. "dcgan64 run celeba-s1 step 20000"; NULL = "unknown" */
    uint32_t model_id;    /* carried by the watermark */
} dp_label_info;

/* Embed the watermark into img (in place). img's values are rounded to
 * 8-bit levels (k/255) on the way, as writing the image would. Images whose
 * width or height is below DP_WATERMARK_MIN_SIDE fail with DP_ERR_ARG naming
 * that size. Grey (1 channel) and RGB images; RGB images are marked in the
 * luminance (the same change is added to R, G and B). */
dp_status dp_watermark_embed(dp_ctx *ctx, dp_image *img, uint32_t model_id);

typedef struct dp_watermark_result {
    int found;         /* 1 if the doppel tag was recovered */
    uint32_t model_id; /* valid when found */
    float score;       /* detection statistic in [-1,1] (higher = stronger evidence); found needs
                          >= DP_WATERMARK_MIN_SCORE */
} dp_watermark_result;
/* Any size of image: images without one full 8x8 block give found 0, score 0. */
dp_status dp_watermark_detect(dp_ctx *ctx, const dp_image *img, dp_watermark_result *out);

/* Watermark + metadata + crash-safe write (temp file + rename). The format
 * follows the extension: .png, or .jpg/.jpeg (quality 1..100, 0 = 92);
 * anything else is DP_ERR_ARG. img is not modified. info may be NULL
 * (model "unknown", id 0). An image with a side below DP_WATERMARK_MIN_SIDE
 * (a 28x28 Fashion-MNIST sample) is first enlarged, nearest neighbour, by the
 * smallest integer factor that makes both sides at least
 * DP_WATERMARK_ENLARGE_SIDE (28x28 is written as 84x84), so that it can
 * carry the mark. */
dp_status dp_write_synthetic(dp_ctx *ctx, const char *path, const dp_image *img, const dp_label_info *info,
                             int jpeg_quality);

/* ------------------------------------------------------------ reading labels back */
/* What an image file's metadata says about its origin (XMP in PNG iTXt,
 * JPEG APP1 or a WebP "XMP " chunk; PNG tEXt/iTXt/zTXt; JPEG comments).
 * Strings are UTF-8, "" when absent, truncated to fit. */
typedef struct dp_label_meta {
    int present;            /* any of the fields below was found */
    int ai_generated;       /* the IPTC source type is trainedAlgorithmicMedia or compositeWithTrainedAlgorithmicMedia */
    int has_model_id;       /* model_id came from a doppel label */
    uint32_t model_id;
    char source_type[160];  /* Iptc4xmpExt:DigitalSourceType */
    char software[128];     /* xmp:CreatorTool, else PNG "Software" */
    char model[256];        /* doppel:Model, else PNG "Source" */
    char description[512];  /* dc:description, else PNG "Description"/"Comment", else a JPEG comment */
} dp_label_meta;
/* From an encoded PNG/JPEG/WebP in memory. Metadata that cannot be parsed is
 * ignored (best effort); only an unknown format is an error (DP_ERR_FORMAT). */
dp_status dp_label_read_meta(dp_ctx *ctx, const void *buf, size_t n, const char *name, dp_label_meta *out);

typedef struct dp_label_check {
    dp_image_format format;
    int width, height;
    dp_watermark_result watermark;
    dp_label_meta meta;
} dp_label_check;
/* Read an image file and look for both labels. Unreadable or corrupt images
 * fail (DP_ERR_IO / DP_ERR_FORMAT / DP_ERR_NOMEM, message naming the file). */
dp_status dp_label_check_file(dp_ctx *ctx, const char *path, dp_label_check *out);

/* Encode img as a baseline JPEG (libjpeg, 4:2:0 chroma for RGB) at the given
 * quality (1..100) in memory and decode it again into out (same channels):
 * what re-compression does to an image, for measuring the watermark. */
dp_status dp_image_jpeg_roundtrip(dp_ctx *ctx, const dp_image *img, int quality, dp_image *out);

#ifdef __cplusplus
}
#endif
#endif
