/* doppel — face finding with Viola–Jones cascades (OpenCV's cascade XML).
 *
 * A cascade is read from OpenCV's XML format (the files of Debian's
 * opencv-data package: /usr/share/opencv4/haarcascades/ and
 * lbpcascades/). Both feature types of the current format are evaluated:
 * Haar (upright and 45°-tilted rectangles, stumps or trees) and LBP.
 *
 * Detection follows OpenCV 4's CascadeClassifier::detectMultiScale step by
 * step, so the two find the same faces: the image is scaled down by
 * factor^k (bit-exact bilinear, to 8 bits), each scaled image gets its
 * integral images, a window of the cascade's size slides over it (step 2
 * while the factor is below 2, then 1; a window rejected by the first stage
 * skips one more step), Haar features are divided by the window's standard
 * deviation (measured on the window less a 1-pixel border; windows whose
 * deviation is 10 grey levels or less are rejected), and the hits are
 * grouped as groupRectangles does (eps 0.2; a group needs more than
 * min_neighbors hits; smaller groups inside bigger ones are dropped).
 * docs/faces.md gives the measured agreement, accuracy and speed.
 *
 * A detector is read-only once loaded: several threads may call
 * dp_face_detect on one detector at the same time (each call allocates its
 * own buffers, sized by the image; nothing is allocated per window). Errors
 * are recorded in the detector's context, so a failing call from one thread
 * may overwrite the message of a failing call from another.
 */
#ifndef DOPPEL_FACE_H
#define DOPPEL_FACE_H

#include "core.h"
#include "data.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_face_detector dp_face_detector;

/* Where dp_face_detector_default looks for haarcascade_frontalface_alt2.xml
 * (Debian: apt-get install opencv-data), in this order after the
 * DP_FACE_CASCADE environment variable (a file path). */
#define DP_FACE_CASCADE_DIRS "/usr/share/opencv4/haarcascades:/usr/share/opencv/haarcascades:/usr/local/share/opencv4/haarcascades"
#define DP_FACE_CASCADE_DEFAULT "haarcascade_frontalface_alt2.xml"

/* Read a cascade from an OpenCV XML file. Everything is checked: a missing
 * or malformed element, an index out of range, a rectangle outside the
 * window or an absurd count is DP_ERR_FORMAT with a message naming the file
 * and the element; the obsolete pre-2.4 format ("opencv-haar-classifier")
 * and HOG cascades are DP_ERR_UNSUPPORTED. Files over 256 MiB are refused. */
dp_status dp_face_detector_load(dp_ctx *ctx, const char *path, dp_face_detector **out);
/* The frontal face cascade of opencv-data (see DP_FACE_CASCADE_DIRS);
 * DP_ERR_NOT_FOUND with a message saying how to install it when absent. */
dp_status dp_face_detector_default(dp_ctx *ctx, dp_face_detector **out);
void dp_face_detector_free(dp_face_detector *det);

/* What the cascade is: window size, stage count, "HAAR" or "LBP". Any
 * pointer may be NULL. */
void dp_face_detector_info(const dp_face_detector *det, int *win_width, int *win_height, int *n_stages,
                           const char **feature_type);

/* Whether to add a border around the image before looking for faces (the
 * cascades were trained on windows showing the whole head and some
 * background, so a face that fills its picture — a tight crop — is missed
 * without one). Boxes are always given in the coordinates of the image
 * passed in, clipped to it. */
typedef enum dp_face_pad_mode {
    /* when the image's shorter side is at most DP_FACE_PAD_AUTO_SIDE pixels
     * (most likely a crop around one face): a border, and if nothing is found,
     * once more with a border twice as wide filled with the mean grey.
     * Larger images: no border, then once more with one if nothing was found
     * or a face fills the frame (its side is half the shorter side or more),
     * keeping that answer if it finds a face. */
    DP_FACE_PAD_AUTO = 0,
    DP_FACE_PAD_NEVER,
    DP_FACE_PAD_ALWAYS,
} dp_face_pad_mode;
#define DP_FACE_PAD_AUTO_SIDE 400

typedef enum dp_face_pad_fill {
    DP_FACE_FILL_REPLICATE = 0, /* repeat the edge pixels outward */
    DP_FACE_FILL_MEAN,          /* the image's mean grey level */
} dp_face_pad_fill;

/* A zero field means the default. */
typedef struct dp_face_opts {
    double scale_factor; /* > 1: step between scales (default 1.1) */
    int min_neighbors;   /* a face needs more than this many overlapping hits (default 3);
                            -1: no grouping, every raw window is returned with neighbors 1 */
    int min_size;        /* smallest face side in pixels (default: the cascade's window) */
    int max_size;        /* largest face side in pixels (default: no limit) */
    dp_face_pad_mode pad;
    float pad_fraction;  /* the border on each side, as a fraction of that side (default 0.25) */
    dp_face_pad_fill pad_fill;
    /* Optional second opinion: a face is kept only if this cascade, run on
     * the face's surroundings at nearby scales, also finds a face there
     * (more than verify_min_neighbors hits, default 0 = one hit is enough)
     * whose centre lies inside the box. NULL: no second check. */
    const dp_face_detector *verify;
    int verify_min_neighbors;
} dp_face_opts;

typedef struct dp_face_box {
    int x, y, w, h;  /* pixels, top-left origin, in the input image */
    int neighbors;   /* raw hits grouped into this face: the confidence */
} dp_face_box;

/* Find faces. img: grey (1 channel) or RGB (3), values in [0,1] (RGB is
 * turned to grey as OpenCV's BGR2GRAY does on 8-bit values). Writes at most
 * max boxes to out (may be NULL when max is 0) and the number found to *n
 * (which may exceed max): most neighbours first, then larger, then top to
 * bottom, left to right. opts may be NULL (defaults). */
dp_status dp_face_detect(const dp_face_detector *det, const dp_image *img, const dp_face_opts *opts, dp_face_box *out,
                         int max, int *n);
/* The same on 8-bit grey pixels (row i starts at pixels + i*stride). */
dp_status dp_face_detect_gray8(const dp_face_detector *det, const uint8_t *pixels, int width, int height, int stride,
                               const dp_face_opts *opts, dp_face_box *out, int max, int *n);

/* OpenCV's groupRectangles on boxes[0..n) (x,y,w,h used; neighbors ignored):
 * clusters of boxes similar within eps ((min width + min height)/2 * eps on
 * each edge) are averaged; clusters of min_neighbors or fewer boxes and
 * clusters inside a larger, stronger one are dropped. The result (with
 * neighbors = cluster size) replaces boxes[0..*n_out); *n_out <= n.
 * Exposed for tests and for callers that merge hits themselves. */
dp_status dp_face_group(dp_ctx *ctx, dp_face_box *boxes, int n, int min_neighbors, double eps, int *n_out);

#ifdef __cplusplus
}
#endif
#endif
