/* Drawing on RGB dp_images (library-internal; used by the explained
 * pictures of detect.h and by the CLI's plots). Pixels outside the image
 * are skipped. */
#ifndef DOPPEL_DETECT_DRAW_H
#define DOPPEL_DETECT_DRAW_H

#include "doppel/data.h"

/* Blends colour (r,g,b) over pixel (x,y) with opacity a. */
void dp_draw_put(dp_image *im, int x, int y, float r, float g, float b, float a);
void dp_draw_line(dp_image *im, double x0, double y0, double x1, double y1, float r, float g, float b, int thick);
void dp_draw_rect(dp_image *im, int x, int y, int w, int h, float r, float g, float b, int thick);

#endif
