/* Convolutions: conv2d, conv_transpose2d (and separable conv2d, a composite).
 *
 * Both ops share one geometry. The "image side" is the conv input (the
 * transposed conv output) and the "column side" the conv output (the
 * transposed conv input); a weight [O, C/groups, KH, KW] links them:
 *
 *   gather : cols[n, O, P]  (+)= W x im2col(img[n])       conv forward, tconv dx
 *   scatter: img[n]          += col2im(W^T x cols[n])     conv dx, tconv forward
 *   wgrad  : W              += cols x im2col(img)^T       conv dw, tconv dw
 *
 * (PyTorch's transposed-conv weight [Ci, Co/groups, KH, KW] is exactly this
 * [O, C/groups, ...] layout with O = Ci.)
 *
 * Each primitive picks one of these ways, best first:
 *  - depthwise (one channel per group): direct loops;
 *  - kernel = whole image (DCGAN's 1x1 <-> 4x4 layers): one GEMM over the batch;
 *  - stride 1 with full-width rows (Meso-4): no im2col at all; a zero-padded
 *    band of input rows is read in place through per-row offsets (see
 *    "stride 1 without im2col"), the scatter runs as the gather of the
 *    mirrored kernel, and the weight gradient as unpacked dot products;
 *  - otherwise im2col + GEMM: the N*P columns are cut into chunks (pieces of
 *    one image, or groups of whole images when images are small, so the GEMM
 *    gets a wide N), and K into slices, so that a chunk's im2col stays in L2.
 *    1x1/stride-1/no-pad convolutions skip im2col (it is the identity);
 *  - but the gather of a stride-2 geometry with small outputs and a long
 *    reduction (DCGAN's 4x4 stride-2 convs, its transposed convs' dx) runs
 *    the direct kernel of kernels/dconv.h on a zero-padded copy of each
 *    image when AVX-512 or AVX2 is in use: no im2col gathers, no packing of W per
 *    chunk (measured: the gathers were 15 % of such a layer); so does their
 *    weight gradient where measured faster (dwgrad_use).
 * Work is split over chunks (or images, for scatters, whose writes overlap)
 * with dp_parallel_for and single-threaded GEMMs; weight gradients go to one
 * block per thread, summed in a fixed order. All scratch is the graph's
 * workspace (sized in the shape rule): nothing is allocated while running. */
#include "core/internal.h"
#include "kernels/dconv.h"
#include "kernels/ew.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"
#include "kernels/wino.h"

/* ip[] layout, shared by both ops. */
enum { IP_SH, IP_SW, IP_PT, IP_PL, IP_DH, IP_DW, IP_GROUPS, IP_SAME, IP_OPH, IP_OPW, IP_PADH, IP_PADW };

typedef struct geom {
    int64_t N;
    int64_t C, H, W;    /* image side */
    int64_t O, OH, OW;  /* column side */
    int64_t KH, KW, sh, sw, pt, pl, dh, dw, groups;
    int64_t Cg, Og, KK, CKK, HW, P;
    int direct;    /* 1x1, stride 1, no padding: im2col is the identity */
    int depthwise; /* one image channel and one column channel per group */
} geom;

static void geom_fill(geom *G, const dp_node *n, const dp_tensor *img, const dp_tensor *cols, const dp_tensor *w) {
    G->N = img->shape[0];
    G->C = img->shape[1], G->H = img->shape[2], G->W = img->shape[3];
    G->O = cols->shape[1], G->OH = cols->shape[2], G->OW = cols->shape[3];
    G->KH = w->shape[2], G->KW = w->shape[3];
    G->sh = n->ip[IP_SH], G->sw = n->ip[IP_SW], G->pt = n->ip[IP_PT], G->pl = n->ip[IP_PL];
    G->dh = n->ip[IP_DH], G->dw = n->ip[IP_DW], G->groups = n->ip[IP_GROUPS];
    G->Cg = G->C / G->groups, G->Og = G->O / G->groups;
    G->KK = G->KH * G->KW, G->CKK = G->Cg * G->KK;
    G->HW = G->H * G->W, G->P = G->OH * G->OW;
    G->direct = G->KK == 1 && G->sh == 1 && G->sw == 1 && G->pt == 0 && G->pl == 0 && G->OH == G->H && G->OW == G->W;
    G->depthwise = G->Cg == 1 && G->Og == 1;
}

/* conv2d: image = x, columns = y. conv_transpose2d: image = y, columns = x. */
static void geom_of(geom *G, const dp_node *n) {
    if (n->op == DP_OP_CONV2D)
        geom_fill(G, n, &n->in[0]->val, &n->val, &n->in[1]->val);
    else
        geom_fill(G, n, &n->val, &n->in[0]->val, &n->in[1]->val);
}

/* ------------------------------------------------------------ chunks */
/* Either `pieces` pieces per image (items = N * pieces, one image each) or,
 * when pieces == 0, `ipi` whole images per item. */
typedef struct chunks {
    int64_t pieces, ipi, len, items;
    int64_t ks; /* im2col rows per slice: K is cut too, so a chunk's im2col stays in L2 */
} chunks;

/* T: the threads that will share the items. */
static void plan_chunks(const geom *G, int T, chunks *c) {
    /* About 512 KiB of im2col, but at least 512 columns: a GEMM re-packs W
     * for every chunk, which only pays off over enough columns (K slices keep
     * the im2col block at 512 KiB when K is large). */
    int64_t target = ((int64_t)128 << 10) / G->CKK;
    if (target < 512) target = 512;
    if (target > 8192) target = 8192;
    if (G->P >= target) {
        c->pieces = (G->P + target - 1) / target;
        c->len = (G->P + c->pieces - 1) / c->pieces;
        if (c->len % G->OW && c->len > G->OW) { /* whole output rows (the stride-2 col2im wants them) */
            c->len = (c->len + G->OW - 1) / G->OW * G->OW;
            c->pieces = (G->P + c->len - 1) / c->len;
        }
        c->ipi = 1;
        c->items = G->N * c->pieces;
    } else {
        c->pieces = 0;
        c->ipi = target / G->P < G->N ? target / G->P : G->N;
        /* A short reduction (a 1- or 3-channel first layer) makes the GEMM a
         * stream of C: one image per item writes it straight into the output
         * (and its weight gradient reads dY in place) instead of through a
         * gathered copy of several images. */
        if (G->CKK < 64 && G->P >= 128) c->ipi = 1;
        if (c->ipi < 1) c->ipi = 1;
        c->items = (G->N + c->ipi - 1) / c->ipi;
        /* Items a multiple of the threads, their image counts differing by at
         * most one (item_range): each thread's contiguous range of items then
         * holds the same number of images. 128 images 10 to an item were 13
         * items, 68 images for one thread and 60 for the other; 14 items of 9
         * or 10 give each 64. */
        if (T > 1 && c->items % T && c->items < G->N) {
            int64_t m = (c->items + T - 1) / T * T;
            c->items = m < G->N ? m : G->N;
        }
        c->ipi = (G->N + c->items - 1) / c->items; /* the largest item */
        c->len = c->ipi * G->P;
    }
    c->ks = ((int64_t)128 << 10) / c->len;
    if (c->ks < 16) c->ks = 16;
    if (c->ks > G->CKK) c->ks = G->CKK;
    if (c->ks < G->CKK && c->ks > G->KW) c->ks -= c->ks % G->KW; /* slices of whole kernel rows */
}

/* Images [n0,n1) and positions [q0,q0+cnt) of each that an item covers. */
static void item_range(const geom *G, const chunks *c, int64_t item, int64_t *n0, int64_t *n1, int64_t *q0, int64_t *cnt) {
    if (c->pieces) {
        *n0 = item / c->pieces;
        *n1 = *n0 + 1;
        *q0 = (item % c->pieces) * c->len;
        *cnt = G->P - *q0 < c->len ? G->P - *q0 : c->len;
    } else {
        *n0 = item * G->N / c->items;
        *n1 = (item + 1) * G->N / c->items;
        *q0 = 0;
        *cnt = G->P;
    }
}

#define ALIGN16(x) (((x) + 15) / 16 * 16)
/* Floats of per-thread scratch: an im2col block and a cols-side block. */
static int64_t scratch_floats(const geom *G, const chunks *c) { return ALIGN16(c->ks * c->len) + ALIGN16(G->Og * c->len); }

/* ------------------------------------------------------------ im2col / col2im */
/* Valid column range [lo,hi) of output columns for kernel column kw: those whose image column is inside [0,W). */
static inline void kw_range(const geom *G, int64_t kw, int64_t *kx, int64_t *lo, int64_t *hi) {
    int64_t x = kw * G->dw - G->pl;
    *kx = x;
    *lo = x >= 0 ? 0 : (-x + G->sw - 1) / G->sw;
    *hi = G->W - 1 - x < 0 ? 0 : (G->W - 1 - x) / G->sw + 1;
    if (*hi > G->OW) *hi = G->OW;
    if (*lo > *hi) *lo = *hi;
}

/* Short runs (small feature maps) inline; long ones through the vector helpers. */
static inline void zero_run(float *d, int64_t n) {
    if (n < 16)
        for (int64_t i = 0; i < n; i++) d[i] = 0.0f;
    else
        memset(d, 0, sizeof(float) * (size_t)n);
}
static inline void copy_run(float *d, const float *x, int64_t n, int64_t s) {
    if (n < 16)
        for (int64_t i = 0; i < n; i++) d[i] = x[i * s];
    else if (s == 1)
        memcpy(d, x, sizeof(float) * (size_t)n);
    else
        dp_vec_gather_s(d, x, n, s);
}
static inline void add_run(float *x, const float *d, int64_t n, int64_t s) {
    if (n < 16)
        for (int64_t i = 0; i < n; i++) x[i * s] += d[i];
    else if (s == 1)
        dp_vec_axpy(x, 1.0f, d, n);
    else
        dp_vec_scatter_add_s(x, d, n, s);
}

/* Stride 2 along rows with a 4-wide kernel and padding 1, the image twice as
 * wide as the output (DCGAN's 4x4 stride-2 layers): an image row's even
 * columns get taps 1 and 3, its odd ones taps 0 and 2, of neighbouring output
 * positions, so the four taps of an output row come from the image row as
 * its even and odd values, shifted (dp_vec_im2col_s2k4), and go back into it
 * as two shifted sums, interleaved (dp_vec_col2im_s2k4_rows), not tap by tap. */
static int s2k4_ok(const geom *G) { return G->sw == 2 && G->KW == 4 && G->pl == 1 && G->dw == 1 && G->W == 2 * G->OW; }

/* The four tap rows (kw = 0..3, rows c + k*ld) of kernel row kh of channel
 * xc, output positions [q0, q0+cnt), for s2k4_ok geometries. */
static void im2col_s2k4_rows(const geom *G, const float *xc, int64_t kh, int64_t q0, int64_t cnt, float *c, int64_t ld) {
    int64_t q = q0, end = q0 + cnt, oh = q0 / G->OW, ow = q0 % G->OW;
    while (q < end) {
        int64_t run = G->OW - ow < end - q ? G->OW - ow : end - q; /* this output row's part */
        int64_t ih = oh * G->sh - G->pt + kh * G->dh;
        if (ih < 0 || ih >= G->H)
            for (int k = 0; k < 4; k++) zero_run(c + k * ld, run);
        else
            dp_vec_im2col_s2k4(c, c + ld, c + 2 * ld, c + 3 * ld, xc + ih * G->W, G->W, ow, run);
        c += run;
        q += run;
        ow = 0;
        oh++;
    }
}

/* Rows r = (cl, kh, kw) in [r0, r1) of group grp's column matrix for image
 * n, positions [q0, q0+cnt): row r goes to col + (r-r0)*ld. Out-of-image taps
 * are zeros. */
static void im2col_seg(const geom *G, const int32_t *tab, const float *img, int64_t n, int64_t grp, int64_t q0,
                       int64_t cnt, int64_t r0, int64_t r1, float *col, int64_t ld) {
    const float *x = img + (n * G->C + grp * G->Cg) * G->HW;
    if (tab && q0 == 0 && cnt == G->P) { /* whole small image: one table gather per row */
        for (int64_t r = r0; r < r1; r++) dp_vec_gather_idx(col + (r - r0) * ld, x + r / G->KK * G->HW, tab + r % G->KK * G->P, G->P);
        return;
    }
    if (s2k4_ok(G) && r0 % 4 == 0 && r1 % 4 == 0) { /* whole tap groups (wide rows: measured slower than the
                                                   * table's gathers for 7- and 8-wide rows) */
        for (int64_t r = r0; r < r1; r += 4)
            im2col_s2k4_rows(G, x + r / G->KK * G->HW, r / G->KW % G->KH, q0, cnt, col + (r - r0) * ld, ld);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        int64_t cl = r / G->KK, kh = r / G->KW % G->KH, kw = r % G->KW;
        float *d = col + (r - r0) * ld;
        const float *xc = x + cl * G->HW;
        int64_t kx, lo, hi;
        kw_range(G, kw, &kx, &lo, &hi);
        int64_t q = q0, end = q0 + cnt, oh = q0 / G->OW, ow = q0 % G->OW;
        while (q < end) {
            int64_t run = G->OW - ow < end - q ? G->OW - ow : end - q; /* this output row's part */
            int64_t ih = oh * G->sh - G->pt + kh * G->dh;
            int64_t a = ow > lo ? ow : lo, b = ow + run < hi ? ow + run : hi;
            if (ih < 0 || ih >= G->H || a >= b) {
                zero_run(d, run);
            } else {
                const float *xr = xc + ih * G->W;
                zero_run(d, a - ow);
                copy_run(d + (a - ow), xr + a * G->sw + kx, b - a, G->sw);
                zero_run(d + (b - ow), ow + run - b);
            }
            d += run;
            q += run;
            ow = 0;
            oh++;
        }
    }
}


/* The adjoint of im2col_seg: add each column entry back into the image. */
static void col2im_seg(const geom *G, const int32_t *tab, float *img, int64_t n, int64_t grp, int64_t q0, int64_t cnt,
                       int64_t r0, int64_t r1, const float *col, int64_t ld) {
    float *x = img + (n * G->C + grp * G->Cg) * G->HW;
    if (s2k4_ok(G) && r0 % 4 == 0 && r1 % 4 == 0 && q0 % G->OW == 0 && cnt % G->OW == 0) { /* whole rows, whole tap groups */
        for (int64_t r = r0; r < r1; r += 4) {
            int64_t cl = r / G->KK, kh = r / G->KW % G->KH;
            const float *d = col + (r - r0) * ld;
            dp_vec_col2im_s2k4_rows(x + cl * G->HW, G->W, G->H, q0 / G->OW * G->sh - G->pt + kh * G->dh, G->sh, d, ld, G->OW,
                                    cnt / G->OW);
        }
        return;
    }
    if (tab && q0 == 0 && cnt == G->P) {
        for (int64_t r = r0; r < r1; r++)
            dp_vec_scatter_add_idx(x + r / G->KK * G->HW, col + (r - r0) * ld, tab + r % G->KK * G->P, G->P);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        int64_t cl = r / G->KK, kh = r / G->KW % G->KH, kw = r % G->KW;
        const float *d = col + (r - r0) * ld;
        float *xc = x + cl * G->HW;
        int64_t kx, lo, hi;
        kw_range(G, kw, &kx, &lo, &hi);
        int64_t q = q0, end = q0 + cnt, oh = q0 / G->OW, ow = q0 % G->OW;
        while (q < end) {
            int64_t run = G->OW - ow < end - q ? G->OW - ow : end - q;
            int64_t ih = oh * G->sh - G->pt + kh * G->dh;
            int64_t a = ow > lo ? ow : lo, b = ow + run < hi ? ow + run : hi;
            if (ih >= 0 && ih < G->H && a < b) add_run(xc + ih * G->W + a * G->sw + kx, d + (a - ow), b - a, G->sw);
            d += run;
            q += run;
            ow = 0;
            oh++;
        }
    }
}

/* Small images (short output rows) cost im2col more in loop overhead than in
 * copying: for whole images, tab[kk*P + q] holds the image offset that kernel
 * tap kk reads for output position q (-1: padding), the same for every
 * channel and image, and each im2col row is one vector gather. */
static int use_table(const geom *G, const chunks *c) { return c->pieces == 0 && G->OW < 32 && G->KK * G->P <= (1 << 22); }

static void build_table(const geom *G, int32_t *tab) {
    for (int64_t kh = 0; kh < G->KH; kh++)
        for (int64_t kw = 0; kw < G->KW; kw++)
            for (int64_t oh = 0; oh < G->OH; oh++)
                for (int64_t ow = 0; ow < G->OW; ow++) {
                    int64_t ih = oh * G->sh - G->pt + kh * G->dh, iw = ow * G->sw - G->pl + kw * G->dw;
                    tab[(kh * G->KW + kw) * G->P + oh * G->OW + ow] =
                        ih >= 0 && ih < G->H && iw >= 0 && iw < G->W ? (int32_t)(ih * G->W + iw) : -1;
                }
}

/* ------------------------------------------------------------ depthwise (direct) */
/* y (+)= x * w on one channel plane (+ b); the cols plane is [OH,OW], the image plane [H,W]. */
static void dw_gather_plane(const geom *G, const float *x, const float *wk, float *y, float b, int acc) {
    for (int64_t oh = 0; oh < G->OH; oh++) {
        float *yr = y + oh * G->OW;
        if (!acc) dp_vec_fill(yr, b, G->OW);
        for (int64_t kh = 0; kh < G->KH; kh++) {
            int64_t ih = oh * G->sh - G->pt + kh * G->dh;
            if (ih < 0 || ih >= G->H) continue;
            const float *xr = x + ih * G->W;
            for (int64_t kw = 0; kw < G->KW; kw++) {
                int64_t kx, lo, hi;
                kw_range(G, kw, &kx, &lo, &hi);
                float wv = wk[kh * G->KW + kw];
                if (G->sw == 1)
                    dp_vec_axpy(yr + lo, wv, xr + lo + kx, hi - lo);
                else
                    for (int64_t j = lo; j < hi; j++) yr[j] += wv * xr[j * G->sw + kx];
            }
        }
    }
}

static void dw_scatter_plane(const geom *G, const float *cy, const float *wk, float *gx) {
    for (int64_t oh = 0; oh < G->OH; oh++) {
        const float *cr = cy + oh * G->OW;
        for (int64_t kh = 0; kh < G->KH; kh++) {
            int64_t ih = oh * G->sh - G->pt + kh * G->dh;
            if (ih < 0 || ih >= G->H) continue;
            float *xr = gx + ih * G->W;
            for (int64_t kw = 0; kw < G->KW; kw++) {
                int64_t kx, lo, hi;
                kw_range(G, kw, &kx, &lo, &hi);
                float wv = wk[kh * G->KW + kw];
                if (G->sw == 1)
                    dp_vec_axpy(xr + lo + kx, wv, cr + lo, hi - lo);
                else
                    for (int64_t j = lo; j < hi; j++) xr[j * G->sw + kx] += wv * cr[j];
            }
        }
    }
}

static void dw_wgrad_plane(const geom *G, const float *cy, const float *x, float *gwk) {
    for (int64_t kh = 0; kh < G->KH; kh++)
        for (int64_t kw = 0; kw < G->KW; kw++) {
            int64_t kx, lo, hi;
            kw_range(G, kw, &kx, &lo, &hi);
            float s = 0.0f;
            for (int64_t oh = 0; oh < G->OH; oh++) {
                int64_t ih = oh * G->sh - G->pt + kh * G->dh;
                if (ih < 0 || ih >= G->H) continue;
                const float *cr = cy + oh * G->OW, *xr = x + ih * G->W;
                float r = 0.0f;
                if (G->sw == 1)
                    r = dp_vec_dot(cr + lo, xr + lo + kx, hi - lo);
                else
                    for (int64_t j = lo; j < hi; j++) r += cr[j] * xr[j * G->sw + kx];
                s += r;
            }
            gwk[kh * G->KW + kw] += s;
        }
}

/* ------------------------------------------------------------ stride 1 without im2col */
/* For stride 1 the im2col matrix need not be written: a block of `rows`
 * output rows of one image reads image rows [oh0 - pt, oh0 - pt + BR) with
 * BR = rows + (KH-1)*dh and image columns [-pl, -pl + Wp) with
 * Wp = OW + (KW-1)*dw. Copied once into a zero-padded band (cheap: about the
 * size of the input), row (cl, kh, kw) of the im2col matrix is the band read
 * from offset cl*BR*Wp + kh*dh*Wp + kw*dw, and column j = r*Wp + ow is output
 * position (oh0 + r, ow); columns with ow >= OW are junk. The forward GEMM
 * (dp_sgemm_rows_st) reads the band through those row offsets, one output
 * row at a time, so its tiles write the output directly and never see junk;
 * the weight gradient zeroes the junk columns of its dY copy instead. */
typedef struct bandp {
    int64_t rows, nrb, BR, Wp, bsz; /* bsz: floats of one channel's band */
} bandp;

/* Worth it when whole 32-wide tiles fill most output rows (a 4-wide output
 * row would waste 7/8 of every tile; im2col chunks spanning images do not). */
static int implicit_ok(const geom *G) {
    int64_t tiles = (G->OW + 31) / 32;
    return G->sh == 1 && G->sw == 1 && !G->depthwise && !G->direct && G->OW * 10 >= tiles * 32 * 7;
}

/* The scatter as the gather of the flip does (image positions) x CKK work
 * instead of (column positions) x CKK: only when padding adds little (a
 * transposed conv from 1x1 to 4x4 would do 16 times the work). */
static int implicit_scatter_ok(const geom *G);

/* The most output rows a band may have: a few thousand GEMM columns, at most
 * 512 KiB of band. The scratch is sized for it. */
static int64_t band_rows_max(const geom *G, int64_t Wp) {
    int64_t rows = 4096 / Wp;
    if (rows < 1) rows = 1;
    if (rows > G->OH) rows = G->OH;
    while (rows > 1 && G->Cg * (rows + (G->KH - 1) * G->dh) * Wp > ((int64_t)1 << 17)) rows--;
    return rows;
}

static void band_set(const geom *G, int64_t rows, bandp *b) {
    b->rows = rows;
    b->nrb = (G->OH + rows - 1) / rows;
    b->BR = rows + (G->KH - 1) * G->dh;
    b->bsz = b->BR * b->Wp;
}

/* Bands of a multiple of k rows (0 when not even k rows fit). As few bands per
 * image as the size limit allows, of even height, and up to T more where that
 * makes the (image, band) items a multiple of the threads: one image of
 * Meso-4's third conv at 2 threads was a band of 60 rows and one of 4. */
static int plan_band_k(const geom *G, int T, int k, bandp *b) {
    b->Wp = G->OW + (G->KW - 1) * G->dw;
    int64_t R = band_rows_max(G, b->Wp);
    R -= R % k;
    if (R < k) return 0;
    int64_t nb0 = (G->OH + R - 1) / R, pick = 0;
    for (int64_t nb = nb0; nb <= nb0 + T; nb++) {
        int64_t rows = (G->OH + nb - 1) / nb;
        rows += (k - rows % k) % k;
        if (rows > R) continue;
        if (!pick) pick = rows; /* even heights at least */
        if ((G->N * ((G->OH + rows - 1) / rows)) % T == 0) {
            pick = rows;
            break;
        }
    }
    band_set(G, pick ? pick : R, b);
    return 1;
}

static void plan_band(const geom *G, int T, bandp *b) { plan_band_k(G, T, 1, b); }

static int64_t band_scratch(const geom *G, const bandp *b) {
    return ALIGN16(G->Cg * b->bsz) + ALIGN16(G->Og * b->rows * b->Wp) + ALIGN16(2 * G->CKK);
}

/* Enough for every plan_band_k of G. */
static int64_t band_scratch_max(const geom *G) {
    bandp b;
    b.Wp = G->OW + (G->KW - 1) * G->dw;
    band_set(G, band_rows_max(G, b.Wp), &b);
    return band_scratch(G, &b);
}

/* Image n, group grp, for output rows from oh0: bsz floats per channel. */
static void band_fill(const geom *G, const bandp *b, const float *img, int64_t n, int64_t grp, int64_t oh0, float *dst) {
    const float *x = img + (n * G->C + grp * G->Cg) * G->HW;
    /* band columns [a, e) hold image columns [a - pl, e - pl) */
    int64_t a = G->pl < 0 ? 0 : G->pl > b->Wp ? b->Wp : G->pl;
    int64_t e = G->pl + G->W < a ? a : G->pl + G->W > b->Wp ? b->Wp : G->pl + G->W;
    for (int64_t cl = 0; cl < G->Cg; cl++)
        for (int64_t r = 0; r < b->BR; r++) {
            float *d = dst + cl * b->bsz + r * b->Wp;
            int64_t ih = oh0 + r - G->pt;
            if (ih < 0 || ih >= G->H || a >= e) {
                memset(d, 0, sizeof(float) * (size_t)b->Wp);
                continue;
            }
            if (a > 0) memset(d, 0, sizeof(float) * (size_t)a);
            memcpy(d + a, x + cl * G->HW + ih * G->W + (a - G->pl), sizeof(float) * (size_t)(e - a));
            if (e < b->Wp) memset(d + e, 0, sizeof(float) * (size_t)(b->Wp - e));
        }
}

static void band_offsets(const geom *G, const bandp *b, int64_t *offs) {
    for (int64_t cl = 0; cl < G->Cg; cl++)
        for (int64_t kh = 0; kh < G->KH; kh++)
            for (int64_t kw = 0; kw < G->KW; kw++)
                offs[(cl * G->KH + kh) * G->KW + kw] = cl * b->bsz + kh * G->dh * b->Wp + kw * G->dw;
}

/* The scatter of a stride-1 geometry is the gather of its flip: the roles of
 * image and columns swap, the kernel is mirrored and the padding becomes
 * (K-1)*d - pad. w_flip[c, ol, kh, kw] = w[o, cl, KH-1-kh, KW-1-kw] per group. */
static void flip_geom(const geom *G, geom *F) {
    *F = *G;
    F->C = G->O, F->H = G->OH, F->W = G->OW;
    F->O = G->C, F->OH = G->H, F->OW = G->W;
    F->pt = (G->KH - 1) * G->dh - G->pt;
    F->pl = (G->KW - 1) * G->dw - G->pl;
    F->Cg = G->Og, F->Og = G->Cg;
    F->CKK = F->Cg * F->KK, F->HW = F->H * F->W, F->P = F->OH * F->OW;
    F->direct = F->KK == 1 && F->pt == 0 && F->pl == 0 && F->OH == F->H && F->OW == F->W;
}

static void flip_weights(const geom *G, const float *w, float *wf) {
    for (int64_t grp = 0; grp < G->groups; grp++)
        for (int64_t ol = 0; ol < G->Og; ol++)
            for (int64_t cl = 0; cl < G->Cg; cl++)
                for (int64_t kh = 0; kh < G->KH; kh++)
                    for (int64_t kw = 0; kw < G->KW; kw++)
                        wf[(((grp * G->Cg + cl) * G->Og + ol) * G->KH + (G->KH - 1 - kh)) * G->KW + (G->KW - 1 - kw)] =
                            w[(((grp * G->Og + ol) * G->Cg + cl) * G->KH + kh) * G->KW + kw];
}

static int implicit_scatter_ok(const geom *G) {
    if (!implicit_ok(G) || G->HW * 4 > G->P * 5) return 0;
    geom F;
    flip_geom(G, &F);
    return implicit_ok(&F);
}

/* ------------------------------------------------------------ direct stride-2 gather */
/* The geometry the direct kernel takes (dconv.h): 32-channel blocks, stride 2,
 * no dilation, outputs 7 to 16 wide (wider rows suit the GEMM's 32-wide
 * tiles; 4-wide ones made 4-position tiles: DCGAN-64's D.8 ran at 0.69x) and
 * a reduction of 256 to 1024, or to 2048 with 64-channel tiles (measured
 * against im2col + GEMM, 1 thread: DCGAN-28 G.3's dx, K = 2048, 7 wide,
 * 1.05 with 64-channel tiles, ~1.0 with 32; DCGAN-64 D.5 and G.6's dx,
 * K = 2048, 8 wide, 32-channel tiles: 0.92-0.97). That is the AVX-512 rule;
 * AVX2 has its own. The workspace is sized for either (dconv_geom); which
 * runs depends on the CPU (dconv_use), which may change between compiling
 * and running a graph. */
static int dconv_geom512(const geom *G) {
    return G->groups == 1 && !G->depthwise && G->sh == 2 && G->sw == 2 && G->dh == 1 && G->dw == 1 && G->O % 32 == 0 &&
           G->OW >= 7 && G->OW <= 16 && G->CKK >= 256 && G->CKK <= (dp_dconv_block(G->O, G->OW) == 64 ? 2048 : 1024) &&
           G->pt >= 0 && G->pl >= 0;
}
/* The AVX2 kernel (16-channel blocks, tiles of 6 consecutive positions that
 * may wrap rows): outputs 7 to 16 wide, a reduction of 256 to 4096. Measured
 * against im2col + GEMM on a Zen 3, 1 thread: DCGAN-64 D.5 (8 wide, K = 2048)
 * 1.22, G.6's dx 1.12; 4 wide (D.8, K = 4096) only 1.03, so not taken;
 * K = 16 or 48 (D.0) 0.44-0.85: the store and set-up dominate. */
static int dconv_geom256(const geom *G) {
    return G->groups == 1 && !G->depthwise && G->sh == 2 && G->sw == 2 && G->dh == 1 && G->dw == 1 && G->O % 16 == 0 &&
           G->OW >= 7 && G->OW <= 16 && G->CKK >= 256 && G->CKK <= 4096 && G->pt >= 0 && G->pl >= 0;
}
/* Sizes the workspace: either CPU's rule. */
static int dconv_geom(const geom *G) { return dconv_geom512(G) || dconv_geom256(G); }
static int dconv_use(const geom *G) {
    int l = dp_kernel_level();
    return l == 2 ? dconv_geom512(G) : l == 1 && dconv_geom256(G);
}
/* Its weight gradient (dp_dconv_s2_wgrad_image): with AVX-512 64-channel
 * tiles only. Tried wider (any 4-16-wide output, K up to 4096; 1 thread
 * against b160b56): DCGAN-64 D.5 0.96, D.8 0.81, G.3 0.58, G.6 1.04 — with
 * few positions per image (16 at 4x4) loading and storing the tile's 28
 * accumulators per image costs more than the im2col it saves. */
static int dwgrad512(const geom *G) { return dconv_geom512(G) && G->O % 64 == 0; }
/* AVX2: K up to 1024 (DCGAN-28 and -64's D.2: 1.12); 8 wide with K = 2048
 * (DCGAN-64 D.5) was 0.98, 4 wide (D.8, G.3) 0.77. */
static int dwgrad256(const geom *G) { return dconv_geom256(G) && G->CKK <= 1024; }
static int dwgrad_geom(const geom *G) { return dwgrad512(G) || dwgrad256(G); }
static int dwgrad_use(const geom *G) {
    int l = dp_kernel_level();
    return l == 2 ? dwgrad512(G) : l == 1 && dwgrad256(G);
}
/* Winograd F(2x2, 2x2) (kernels/wino.h) for 4x4 stride-2 padding-1 layers
 * with even output sides. Measured on the AVX2 Zen 3 (docs/bench.md "session
 * 11", `doppel bench --worker dcgan64_d_convN_fwd`, with and without,
 * alternated): DCGAN-64's D.5 (128 -> 256, 16 -> 8, batch 64) 1.06-1.18x
 * faster (7 pairs), but D.2 (64 -> 128: 0.86-0.93x) and D.8 (256 -> 512 at
 * 4x4, 256 tiles a batch: 0.76-0.89x) slower (3 pairs each): the fill costs
 * the same per element of V while the GEMM does 2*O flops with it, and the
 * weight transform (9 O x 4C blocks, every call) needs many tiles to pay.
 * With the fill vectorised over runs of 8 tiles of a tile row (outputs at
 * least 16 wide), D.2 turned: 1.09-1.75x in 7 of 8 pairs (0.86 in one), and
 * 0.888 of the direct time in bench/winograd_proto.c's interleaved rounds.
 * So: O >= 256, or O >= 128 with outputs >= 16 wide, and a batch of at least
 * dp_wino_min_tiles 2x2 output tiles (DCGAN-64's D.2 and D.5 forwards, the
 * input gradients of G.6 and G.9), with AVX2 only then (AVX-512: below).
 * Session 12 made the weight transforms a row panel at a time, all 9
 * products from each panel of taps, in 8-lane loops (they were 15 % of a
 * 1-thread D.8 forward, ~5 % now): D.8's forward (256 tiles a batch) turned,
 * 1.25-1.38x (3 pairs), and with the minimum at 256 tiles and the adjoint on
 * 4-wide outputs too (D.8's backward 0.95-1.31x, G.3's forward 0.88-1.57x,
 * G.3's backward 1.13-1.32x) the DCGAN-64 D step ran 1.051 (q25 0.998) and the
 * G step 1.045 (q25 1.030) in-process; but D.8's and G.3's transformed weights
 * (20 MB a graph) raised dcgan64's peak RSS from 507 to 552 MB, against
 * PyTorch's 555-581, so they were left out. Session 13 gave the graphs of a
 * context one workspace (core/ctx.c): the transformed weights cost 20 MB
 * once, dcgan64's worker peaks at 530 MB, and the 4x4-output layers are on
 * Winograd (in-process, 30 rounds: D step 1.053, q25 0.978; G step 1.061,
 * q25 0.989). The fills then read the images with their rows split into
 * column classes (kernels/wino.c): plain loads for runs of 2, 4 or 8 tiles,
 * the 4-wide outputs vectorised too; the dcgan64 worker 1.03-1.08x (4 pairs
 * of processes), G.3's forward 1.13-1.16x; then V for all 9 products of a
 * K slice in one pass (dp_sgemm_packed_ab_st): D step 1.094, G step 1.062
 * in-process (20 rounds), the same bits.
 * Session 14 ran on a Zen 4 with AVX-512 (2 vCPUs), where these layers had
 * gone to the AVX-512 direct kernels: Winograd with the 14 x 32 GEMM (the
 * fills and transforms stay 8-lane AVX2) in-process (bench/ab_inproc.c, 12
 * rounds each) forward 1.121 / 1.093 (D / G step), adjoint 1.099 / 1.093,
 * weight gradient 1.045 / 1.030, all three 1.226 / 1.251 (16 rounds); the
 * dcgan64 worker 1.10-1.12 -> 1.50-1.56 it/s. So any vector kernel takes it.
 * Images go out in groups of about 64 tiles. */
int64_t dp_wino_min_tiles = DP_WINO_MIN_TILES;

static int wino_shape(const geom *G) {
    return G->groups == 1 && !G->depthwise && G->KH == 4 && G->KW == 4 && G->sh == 2 && G->sw == 2 && G->pt == 1 &&
           G->pl == 1 && G->dh == 1 && G->dw == 1 && G->H == 2 * G->OH && G->W == 2 * G->OW &&
           G->N * ((G->OH + 1) / 2) * ((G->OW + 1) / 2) >= dp_wino_min_tiles;
}
/* Odd output sides (DCGAN-28's 7x7 layers) end in tiles half outside
 * (kernels/wino.c): 16 tiles an image for 12.25 tiles' outputs, so 0.73 of
 * the direct FLOPs before transforms. On the Zen 4 (session 14, in-process,
 * bench/ab_inproc.c) the DCGAN-28 G step with its G.3 (C 128, O 256 as a
 * conv) on Winograd in all three passes: 1.113 (2 threads, 20 rounds), 1.107
 * (1 thread); the D step with D.2 (C 64, O 128) too: 0.987 (10 rounds; the
 * adjoint alone 0.976). So odd sides take it with O >= 256 only. */
static int wino_sides(const geom *G) { return (G->OH % 2 == 0 && G->OW % 2 == 0) || G->O >= 256; }
static int wino_geom(const geom *G) {
    return wino_shape(G) && wino_sides(G) && G->C >= 64 && (G->O >= 256 || (G->O >= 128 && G->OW >= 16));
}
static int wino_use(const geom *G) { return dp_kernel_level() >= 1 && wino_geom(G); }
/* The adjoint (dp_wino_t_images; run_scatter: the conv's input gradient, the
 * transposed conv's forward), measured the same way (session 12, 3 pairs
 * each, after the weight transforms were specialised): G.6's forward
 * (C 128, O 256, 8x8 -> 16x16) 1.18-1.27x, D.5's backward (the input
 * gradient of C 128, O 256, 8x8 outputs, with the unchanged weight gradient)
 * 1.02-1.28x, D.2's backward 1.01-1.06x, G.9's forward (C 64, O 128, 16x16)
 * 0.95-1.03x; in-process (bench/ab_inproc.c, 30 rounds) the DCGAN-64 D step
 * 1.036 (q25 0.998), the G step 1.022 (q25 0.999). 4x4 outputs (D.8's
 * backward, G.3's forward: 2 tiles a row, the scalar fill) measured 0.94-1.14x
 * then; with the weight transforms vectorised they are taken (above). */
static int wino_t_geom(const geom *G) {
    return wino_shape(G) && wino_sides(G) && G->C >= 64 && G->O >= 128 && G->OW >= 4;
}
static int wino_t_use(const geom *G) { return dp_kernel_level() >= 1 && wino_t_geom(G); }
/* The weight gradient (dp_wino_w_pairs): the threads take disjoint blocks of
 * M (36 C O floats, in the transformed-weight slot), each over all the
 * images. Measured the same way against the im2col + GEMM weight gradient
 * (session 12, 3 pairs): D.5's backward 1.11-1.18x, G.6's 0.96-1.07x; a first
 * form (per-thread M over image ranges) against AVX2's direct weight gradient
 * (C = 64: D.2, G.9) 0.91-1.04x, so C >= 128 and O >= 256. In-process (30
 * rounds) the DCGAN-64 D step 1.010 (q25 0.942, q75 1.114), the G step 1.018
 * (q25 1.004, q75 1.035); peak RSS of the dcgan64 worker 518 MB (506 before;
 * 543 with per-thread M). */
static int wino_w_geom(const geom *G) { return wino_shape(G) && G->C >= 128 && G->O >= 256 && G->OW >= 7; }
static int wino_w_use(const geom *G) { return dp_kernel_level() >= 1 && wino_w_geom(G); }
static int64_t wino_imgs(const geom *G) {
    int64_t tiles = (G->OH + 1) / 2 * ((G->OW + 1) / 2), g = (64 + tiles - 1) / tiles;
    return g < G->N ? g : G->N;
}
/* The transformed weights, packed for any kernel (packed rows <= O + 31). */
static int64_t wino_u_floats_max(const geom *G) {
    int64_t f = 9 * (G->O + 32) * 4 * G->C, t = 36 * (G->C + 32) * G->O; /* forward, adjoint */
    return ALIGN16(f > t ? f : t);
}
static int64_t wino_scratch(const geom *G) {
    int64_t s = dp_wino_scratch_floats(wino_imgs(G), G->C, G->H, G->W, G->O);
    /* the transforms' panels and their rows' taps */
    const int64_t rowsf = 9 * 4 * G->C > 36 * G->O ? 9 * 4 * G->C : 36 * G->O, taps = G->C > G->O ? G->C : G->O;
    int64_t t = DP_GEMM_MR_MAX * (rowsf + 16 * taps);
    int64_t a = dp_wino_t_scratch_floats(wino_imgs(G), G->C, G->H, G->W, G->O);
    s = s > a ? s : a;
    return s > t ? s : t;
}
static int wino_any_geom(const geom *G) { return wino_geom(G) || wino_t_geom(G) || wino_w_geom(G); }

/* The zero-padded image: every tap of every output position inside it. */
static void dconv_dims(const geom *G, int64_t *Hp, int64_t *Wp) {
    *Hp = 2 * (G->OH - 1) + G->KH;
    *Wp = 2 * (G->OW - 1) + G->KW;
}
static int64_t dconv_pad_floats(const geom *G) {
    int64_t Hp, Wp;
    dconv_dims(G, &Hp, &Wp);
    return ALIGN16(G->C * Hp * Wp);
}
/* Stride 1 with 8 or 16 (up to 32) output channels, pooled in eval mode
 * (dp_dconv_s1_pool_band: Meso-4's first three blocks; the fourth pools 4x4).
 * AVX2 only: the 6 x 16 GEMM splits 8 channels into two 4-row tiles, re-reads
 * the band for each and writes the band's output before pooling it. Meso-4
 * inference on a Zen 3, one process alternating both paths: batch 1 1.19x
 * (1 thread), batch 32 1.19x (2 threads), outputs bit-identical; 1.15-1.21x
 * more with two positions per vector (dp_dconv_s1_pack_w's layout). AVX-512
 * keeps its 14 x 32 GEMM path (this kernel was not measured there). */
static int s1pool_geom(const geom *G) {
    return G->groups == 1 && !G->depthwise && G->sh == 1 && G->sw == 1 && G->dh == 1 && G->dw == 1 && G->O % 8 == 0 &&
           G->O <= 32 && G->OW % 2 == 0;
}
static int s1pool_use(const geom *G, int k) { return k == 2 && dp_kernel_level() == 1 && s1pool_geom(G); }
/* The same kernel without the pool (dp_dconv_s1_band) for the forward of such
 * a convolution elsewhere (training; Meso-4's 4x4-pooled fourth block runs the
 * GEMM), and for the input gradient of one whose flipped geometry is such
 * (the stride-1 scatter gathers with it, adding into the gradient): even
 * output sides, bands of even height. A Meso-4 training step (forward +
 * backward, batch 32, 2 threads, one process alternating both): forward
 * 1.03-1.09x, the input gradients 1.02-1.06x more, the loss bit-identical.
 * The sums match the GEMM's bits where K <= KC (one slice); beyond (Meso-4's
 * fourth conv, K = 400) they differ in rounding (~3e-8 on Meso-4's output). */
static int s1plain_use(const geom *G) {
    return dp_kernel_level() == 1 && s1pool_geom(G) && implicit_ok(G) && G->OH % 2 == 0;
}
/* s1 packed weights for G or for the flipped geometry its stride-1 input
 * gradient gathers with (the same O * CKK). */
static int s1_any_geom(const geom *G) {
    if (s1pool_geom(G)) return 1;
    if (!implicit_scatter_ok(G)) return 0;
    geom F;
    flip_geom(G, &F);
    return s1pool_geom(&F);
}
static int64_t dconv_wp_floats(const geom *G) {
    int64_t f = dconv_geom(G) ? ALIGN16(G->O * G->CKK) : s1_any_geom(G) ? ALIGN16(2 * G->O * G->CKK) : 0;
    return wino_any_geom(G) && wino_u_floats_max(G) > f ? wino_u_floats_max(G) : f; /* the same slot: packed each call */
}

/* ------------------------------------------------------------ the three primitives */
/* Per-thread scratch, the same for every primitive of a node: the larger of
 * the im2col chunk and the stride-1 bands (of the geometry and of its flip). */
static int64_t thread_scratch(const geom *G, int T) {
    chunks ch;
    plan_chunks(G, T, &ch);
    int64_t s = scratch_floats(G, &ch);
    if (implicit_ok(G)) {
        int64_t t = band_scratch_max(G);
        if (t > s) s = t;
    }
    if (implicit_scatter_ok(G)) {
        geom F;
        flip_geom(G, &F);
        int64_t f = band_scratch_max(&F);
        if (f > s) s = f;
    }
    if (dconv_geom(G) && dconv_pad_floats(G) > s) s = dconv_pad_floats(G);
    if (wino_any_geom(G) && wino_scratch(G) > s) s = wino_scratch(G);
    if (wino_w_geom(G) && dp_wino_w_scratch_floats(G->C, G->H, G->W, G->O) > s)
        s = dp_wino_w_scratch_floats(G->C, G->H, G->W, G->O);
    if (dwgrad_geom(G) && dconv_pad_floats(G) + ALIGN16(G->P * G->O) > s) s = dconv_pad_floats(G) + ALIGN16(G->P * G->O);
    return s;
}

/* Workspace: T scratch blocks, then T-1 gradient blocks (dW and the
 * cols-side bias), then the flipped weights (only for a stride-1 scatter),
 * the direct kernel's packed weights, the im2col index table. */
typedef struct conv_rt {
    dp_graph *g;
    int T;
    int64_t S, wn, pw; /* pw: floats of one gradient block */
    float *ws;
    float *wpk;   /* after the flipped weights: the direct kernel's packed weights */
    int32_t *tab; /* after those */
} conv_rt;

/* Threads that take part in a weight gradient: each beyond the first needs a
 * gradient block, kept under 64 MiB in all (big layers on many cores). */
static int wgrad_parts(int T, int64_t pw) {
    int p = T;
    while (p > 1 && (int64_t)(p - 1) * pw > ((int64_t)16 << 20)) p--;
    return p;
}

static void rt_init(conv_rt *rt, dp_graph *g, const geom *G) {
    rt->g = g;
    rt->T = g->ctx->threads;
    rt->S = thread_scratch(G, rt->T);
    rt->wn = G->O * G->CKK;
    rt->pw = ALIGN16(rt->wn + G->O);
    rt->ws = g->ws;
    rt->wpk = rt->ws + rt->T * rt->S + (wgrad_parts(rt->T, rt->pw) - 1) * rt->pw + (implicit_scatter_ok(G) ? ALIGN16(rt->wn) : 0);
    rt->tab = (int32_t *)(rt->wpk + dconv_wp_floats(G));
}

typedef struct cjob {
    const geom *G;
    chunks ch;
    bandp bd;
    int implicit;
    const float *w, *bias; /* bias: gather only (cols side) */
    const float *img;      /* gather/wgrad input */
    const float *cols;     /* scatter/wgrad input */
    float *out;            /* gather: cols side; scatter: image side; wgrad: dW */
    int acc;               /* gather: add to out instead of overwriting */
    float *ws;
    const float *s1wp;     /* gather: dp_dconv_s1_band's packed weights (NULL: the GEMM) */
    int64_t scratch;       /* floats per thread */
    float *partials;       /* wgrad: one gradient block per thread > 0 */
    int64_t pw;            /* its size */
    float *db;             /* wgrad: the cols-side bias gradient, summed on the way (NULL: not asked) */
    const int32_t *tab;    /* im2col index table (small images) or NULL */
    dp_ctx *mt;            /* non-NULL: run serially with multithreaded GEMMs */
    int used[256];         /* wgrad: which partial blocks were written */
} cjob;

static void gemm(dp_ctx *mt, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (mt)
        dp_sgemm(mt, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    else
        dp_sgemm_st(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

/* cols[n, grp*Og.., q0..q0+cnt) of images [n0,n1) side by side in tmp [Og, ncols]. */
static void gather_cols(const geom *G, const float *cols, int64_t n0, int64_t n1, int64_t grp, int64_t q0, int64_t cnt,
                        float *tmp, int64_t ncols) {
    for (int64_t n = n0; n < n1; n++)
        for (int64_t o = 0; o < G->Og; o++)
            memcpy(tmp + o * ncols + (n - n0) * cnt, cols + (n * G->O + grp * G->Og + o) * G->P + q0,
                   sizeof(float) * (size_t)cnt);
}

/* The same matrix (row o, column (n - n0) * cnt + q) written straight into the
 * GEMM's packed B panels (dp_bpanel_fn): no gathered copy. */
typedef struct segcols {
    const float *src;  /* cols + (n0 * O + grp * Og) * P + q0 */
    int64_t P, img, cnt; /* row stride, image stride (O * P), columns per image */
} segcols;

static void segcols_fill(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const segcols *s = arg;
    for (int p = 0; p < kc; p++) {
        const float *row = s->src + (p0 + p) * s->P;
        float *d = dst + (int64_t)p * nr;
        int64_t i = j0 / s->cnt, q = j0 % s->cnt;
        for (int j = 0; j < n; i++, q = 0) {
            int len = (int)(s->cnt - q < n - j ? s->cnt - q : n - j);
            memcpy(d + j, row + i * s->img + q, sizeof(float) * (size_t)len);
            j += len;
        }
        for (int j = n; j < nr; j++) d[j] = 0.0f;
    }
}

/* out row (=|+=) src + b */
static void store_row(float *dst, const float *src, int64_t n, float b, int acc) { dp_vec_store_bias(dst, src, n, b, acc); }

/* Whole small images through the index table, im2col written straight into
 * the GEMM's packed B panels: idx[t*ncols + q] is the offset of tap t of
 * chunk column q from the chunk's first image (-1: padding). */
typedef struct tpanel {
    const float *x; /* the chunk's first image, this group's first channel */
    int64_t HW, KK, ncols;
    const int32_t *idx;
} tpanel;

static void tpanel_fill(void *arg, int64_t p0, int kc, int64_t j0, int n, int nr, float *dst) {
    const tpanel *t = arg;
    dp_vec_gather_panel(dst, nr, kc, t->x, t->HW, p0, t->KK, t->idx + j0, t->ncols, n);
}

/* Worth it for whole images (a table) with a long reduction (measured: a
 * 1-channel 4x4 conv, K = 16, is faster with the im2col block), when the
 * index block fits the im2col scratch and its offsets fit int32; a
 * multithreaded GEMM (few chunks) keeps the im2col block. */
static int tpanel_ok(const cjob *J) {
    const geom *G = J->G;
    return J->tab && !J->mt && !G->direct && G->CKK >= 64 && G->KK <= J->ch.ks &&
           J->ch.ipi * G->C * G->HW < ((int64_t)1 << 31);
}

static void tpanel_index(const geom *G, const int32_t *tab, int64_t nimg, int32_t *idx, int64_t ncols) {
    for (int64_t t = 0; t < G->KK; t++)
        for (int64_t i = 0; i < nimg; i++) {
            const int32_t *tt = tab + t * G->P;
            int32_t *d = idx + t * ncols + i * G->P, base = (int32_t)(i * G->C * G->HW);
            for (int64_t q = 0; q < G->P; q++) d[q] = tt[q] >= 0 ? tt[q] + base : -1;
        }
}

static void gather_item(cjob *J, int64_t item, float *ws) {
    const geom *G = J->G;
    int64_t n0, n1, q0, cnt;
    item_range(G, &J->ch, item, &n0, &n1, &q0, &cnt);
    int64_t ncols = (n1 - n0) * cnt;
    int single = n1 - n0 == 1, panels = tpanel_ok(J) && q0 == 0 && cnt == G->P;
    float *col = ws, *tmp = ws + ALIGN16(J->ch.ks * J->ch.len);
    if (panels) tpanel_index(G, J->tab, n1 - n0, (int32_t *)col, ncols);
    for (int64_t grp = 0; grp < G->groups; grp++) {
        const float *A = J->w + grp * G->Og * G->CKK;
        float *C = single ? J->out + (n0 * G->O + grp * G->Og) * G->P + q0 : tmp;
        int64_t ldc = single ? G->P : ncols;
        if (panels) {
            tpanel tp = {J->img + (n0 * G->C + grp * G->Cg) * G->HW, G->HW, G->KK, ncols, (const int32_t *)col};
            dp_sgemm_bpanel_st(G->Og, ncols, G->CKK, A, G->CKK, tpanel_fill, &tp, single && J->acc ? 1.0f : 0.0f, C, ldc);
        } else if (G->direct && single) {
            gemm(J->mt, 0, 0, G->Og, cnt, G->CKK, A, G->CKK, J->img + (n0 * G->C + grp * G->Cg) * G->HW + q0, G->HW,
                 J->acc ? 1.0f : 0.0f, C, ldc);
        } else {
            for (int64_t k0 = 0; k0 < G->CKK; k0 += J->ch.ks) { /* K slices: C accumulates */
                int64_t k1 = k0 + J->ch.ks < G->CKK ? k0 + J->ch.ks : G->CKK;
                for (int64_t n = n0; n < n1; n++) im2col_seg(G, J->tab, J->img, n, grp, q0, cnt, k0, k1, col + (n - n0) * cnt, ncols);
                float beta = k0 > 0 || (single && J->acc) ? 1.0f : 0.0f;
                gemm(J->mt, 0, 0, G->Og, ncols, k1 - k0, A + k0, G->CKK, col, ncols, beta, C, ldc);
            }
        }
        if (single) {
            if (J->bias)
                for (int64_t o = 0; o < G->Og; o++) dp_vec_store_bias(C + o * G->P, C + o * G->P, cnt, J->bias[grp * G->Og + o], 0);
        } else {
            for (int64_t n = n0; n < n1; n++)
                for (int64_t o = 0; o < G->Og; o++)
                    store_row(J->out + (n * G->O + grp * G->Og + o) * G->P + q0, tmp + o * ncols + (n - n0) * cnt, cnt,
                              J->bias ? J->bias[grp * G->Og + o] : 0.0f, J->acc);
        }
    }
}

/* Stride 1: one block of output rows of one image, straight from the band
 * into the output (bias added by the GEMM). */
static void igather_item(cjob *J, int64_t item, float *ws) {
    const geom *G = J->G;
    const bandp *b = &J->bd;
    int64_t n = item / b->nrb, oh0 = (item % b->nrb) * b->rows;
    int64_t rows = G->OH - oh0 < b->rows ? G->OH - oh0 : b->rows;
    float *band = ws;
    int64_t *offs = (int64_t *)(ws + ALIGN16(G->Cg * b->bsz) + ALIGN16(G->Og * b->rows * b->Wp));
    band_offsets(G, b, offs);
    for (int64_t grp = 0; grp < G->groups; grp++) {
        band_fill(G, b, J->img, n, grp, oh0, band);
        float *y = J->out + ((n * G->O + grp * G->Og) * G->OH + oh0) * G->OW;
        if (J->s1wp) { /* groups == 1 */
            dp_dconv_s1_band(band, G->Cg, b->bsz, b->Wp, J->s1wp, G->KH, G->KW, rows, G->OW, G->O, J->bias, y, G->P, G->OW, J->acc);
            continue;
        }
        dp_sgemm_rows_st(rows, G->Og, G->OW, G->CKK, J->w + grp * G->Og * G->CKK, G->CKK, band, b->Wp, offs,
                         J->acc ? 1.0f : 0.0f, J->bias ? J->bias + grp * G->Og : NULL, y, G->P, G->OW);
    }
}

/* One block of rows [i0, i0+m) of W^T x cols (in col, rows from 0) into images [n0, n1). */
typedef struct sc_block {
    const geom *G;
    const int32_t *tab;
    float *out;
    int64_t n0, n1, grp, q0, cnt, ncols;
    const float *col;
} sc_block;

static void scatter_block(void *arg, int64_t i0, int64_t m) {
    const sc_block *b = arg;
    for (int64_t n = b->n0; n < b->n1; n++)
        col2im_seg(b->G, b->tab, b->out, n, b->grp, b->q0, b->cnt, i0, i0 + m, b->col + (n - b->n0) * b->cnt, b->ncols);
}

static void scatter_item(cjob *J, int64_t item, float *ws) {
    const geom *G = J->G;
    int64_t n0, n1, q0, cnt;
    item_range(G, &J->ch, item, &n0, &n1, &q0, &cnt);
    int64_t ncols = (n1 - n0) * cnt;
    int single = n1 - n0 == 1;
    float *col = ws, *tmp = ws + ALIGN16(J->ch.ks * J->ch.len);
    const int rowblocks = !J->mt && J->ch.ks * J->ch.len >= (G->CKK < DP_GEMM_ROWBLOCK ? G->CKK : DP_GEMM_ROWBLOCK) * ncols;
    for (int64_t grp = 0; grp < G->groups; grp++) {
        const float *A = J->w + grp * G->Og * G->CKK, *B = tmp;
        int64_t ldb = ncols;
        if (single) {
            B = J->cols + (n0 * G->O + grp * G->Og) * G->P + q0;
            ldb = G->P;
        } else if (!rowblocks) {
            gather_cols(G, J->cols, n0, n1, grp, q0, cnt, tmp, ncols);
        }
        if (G->direct && single) { /* col2im is the identity: accumulate in place */
            gemm(J->mt, 1, 0, G->Cg, cnt, G->Og, A, G->CKK, B, ldb, 1.0f,
                 J->out + (n0 * G->C + grp * G->Cg) * G->HW + q0, G->HW);
        } else if (rowblocks) {
            /* B packed once (several images: straight from their rows), each finished block of
             * rows of W^T x cols into the image while in cache */
            sc_block sb = {G, J->tab, J->out, n0, n1, grp, q0, cnt, ncols, col};
            if (single) {
                dp_sgemm_rowblocks_st(1, G->CKK, ncols, G->Og, A, G->CKK, B, ldb, col, ncols, scatter_block, &sb);
            } else {
                segcols sc = {J->cols + (n0 * G->O + grp * G->Og) * G->P + q0, G->P, G->O * G->P, cnt};
                dp_sgemm_rowblocks_fill_st(1, G->CKK, ncols, G->Og, A, G->CKK, segcols_fill, &sc, col, ncols, scatter_block, &sb);
            }
        } else {
            for (int64_t k0 = 0; k0 < G->CKK; k0 += J->ch.ks) { /* rows of W^T x cols, a slice at a time */
                int64_t k1 = k0 + J->ch.ks < G->CKK ? k0 + J->ch.ks : G->CKK;
                gemm(J->mt, 1, 0, k1 - k0, ncols, G->Og, A + k0, G->CKK, B, ldb, 0.0f, col, ncols);
                for (int64_t n = n0; n < n1; n++)
                    col2im_seg(G, J->tab, J->out, n, grp, q0, cnt, k0, k1, col + (n - n0) * cnt, ncols);
            }
        }
    }
}

static void wgrad_item(cjob *J, int64_t item, float *ws, float *dw) {
    const geom *G = J->G;
    int64_t n0, n1, q0, cnt;
    item_range(G, &J->ch, item, &n0, &n1, &q0, &cnt);
    int64_t ncols = (n1 - n0) * cnt;
    int single = n1 - n0 == 1;
    float *col = ws, *tmp = ws + ALIGN16(J->ch.ks * J->ch.len);
    for (int64_t grp = 0; grp < G->groups; grp++) {
        const float *A = tmp;
        int64_t lda = ncols;
        if (single) {
            A = J->cols + (n0 * G->O + grp * G->Og) * G->P + q0;
            lda = G->P;
        } else {
            gather_cols(G, J->cols, n0, n1, grp, q0, cnt, tmp, ncols);
        }
        float *dwg = dw + grp * G->Og * G->CKK;
        if (G->direct && single) {
            gemm(J->mt, 0, 1, G->Og, G->CKK, ncols, A, lda, J->img + (n0 * G->C + grp * G->Cg) * G->HW + q0, G->HW, 1.0f,
                 dwg, G->CKK);
        } else {
            for (int64_t k0 = 0; k0 < G->CKK; k0 += J->ch.ks) { /* columns of dW, a slice at a time */
                int64_t k1 = k0 + J->ch.ks < G->CKK ? k0 + J->ch.ks : G->CKK;
                for (int64_t n = n0; n < n1; n++) im2col_seg(G, J->tab, J->img, n, grp, q0, cnt, k0, k1, col + (n - n0) * cnt, ncols);
                gemm(J->mt, 0, 1, G->Og, k1 - k0, ncols, A, lda, col, ncols, 1.0f, dwg + k0, G->CKK);
            }
        }
    }
}

/* Stride 1: dW += dY(rows, junk columns zeroed) x band^T, as dot products
 * (both run along the positions). */
static void iwgrad_item(cjob *J, int64_t item, float *ws, float *dw, float *db) {
    const geom *G = J->G;
    const bandp *b = &J->bd;
    int64_t n = item / b->nrb, oh0 = (item % b->nrb) * b->rows;
    int64_t rows = G->OH - oh0 < b->rows ? G->OH - oh0 : b->rows, ncols = (rows - 1) * b->Wp + G->OW;
    float *band = ws, *gy = ws + ALIGN16(G->Cg * b->bsz);
    int64_t *offs = (int64_t *)(gy + ALIGN16(G->Og * b->rows * b->Wp));
    band_offsets(G, b, offs);
    for (int64_t grp = 0; grp < G->groups; grp++) {
        band_fill(G, b, J->img, n, grp, oh0, band);
        for (int64_t ol = 0; ol < G->Og; ol++) {
            const float *src = J->cols + ((n * G->O + grp * G->Og + ol) * G->OH + oh0) * G->OW;
            float *d = gy + ol * ncols;
            if (db) db[grp * G->Og + ol] += dp_vec_sum(src, rows * G->OW); /* the bias gradient, while dY is in cache */
            for (int64_t r = 0; r < rows; r++) {
                memcpy(d + r * b->Wp, src + r * G->OW, sizeof(float) * (size_t)G->OW);
                if (r + 1 < rows) memset(d + r * b->Wp + G->OW, 0, sizeof(float) * (size_t)(b->Wp - G->OW));
            }
        }
        dp_sgemm_nt_dot_st(G->Og, G->CKK, ncols, gy, ncols, band, 0, offs, dw + grp * G->Og * G->CKK, G->CKK);
    }
}

static void gather_part(void *arg, int64_t b, int64_t e, int tid) {
    cjob *J = arg;
    for (int64_t i = b; i < e; i++) {
        if (J->implicit)
            igather_item(J, i, J->ws + tid * J->scratch);
        else
            gather_item(J, i, J->ws + tid * J->scratch);
    }
}
/* Parts own whole images (their scatters must not overlap). */
static void scatter_part(void *arg, int64_t b, int64_t e, int tid) {
    cjob *J = arg;
    int64_t per = J->ch.pieces ? J->ch.pieces : 1; /* items per unit */
    for (int64_t i = b * per; i < e * per; i++) scatter_item(J, i, J->ws + tid * J->scratch);
}
/* Part 0 adds into dW (and db) itself, the others into their own zeroed block. */
static void wgrad_part(void *arg, int64_t b, int64_t e, int tid) {
    cjob *J = arg;
    int64_t wn = J->G->O * J->G->CKK;
    float *dw = J->out, *db = J->db;
    if (tid > 0) {
        dw = J->partials + (tid - 1) * J->pw;
        db = J->db ? dw + wn : NULL;
        memset(dw, 0, sizeof(float) * (size_t)J->pw);
        J->used[tid] = 1;
    }
    for (int64_t i = b; i < e; i++) {
        if (J->implicit)
            iwgrad_item(J, i, J->ws + tid * J->scratch, dw, db);
        else
            wgrad_item(J, i, J->ws + tid * J->scratch, dw);
    }
}

/* depthwise: planes (n, c) for gather/scatter, channels for wgrad */
static void dw_gather_part(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    cjob *J = arg;
    const geom *G = J->G;
    for (int64_t i = b; i < e; i++) {
        int64_t c = i % G->C;
        dw_gather_plane(G, J->img + i * G->HW, J->w + c * G->KK, J->out + i * G->P, J->bias ? J->bias[c] : 0.0f, J->acc);
    }
}
static void dw_scatter_part(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    cjob *J = arg;
    const geom *G = J->G;
    for (int64_t i = b; i < e; i++) dw_scatter_plane(G, J->cols + i * G->P, J->w + (i % G->C) * G->KK, J->out + i * G->HW);
}
static void dw_wgrad_part(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    cjob *J = arg;
    const geom *G = J->G;
    for (int64_t c = b; c < e; c++)
        for (int64_t n = 0; n < G->N; n++)
            dw_wgrad_plane(G, J->cols + (n * G->O + c) * G->P, J->img + (n * G->C + c) * G->HW, J->out + c * G->KK);
}

/* One column-side position that sees the whole image exactly (a 4x4 kernel
 * on a 4x4 image without padding, or its transpose from 1x1): per group the
 * convolution is a plain matrix product over the batch, with no im2col. */
static int dense_ok(const geom *G) {
    return G->OH == 1 && G->OW == 1 && G->KH == G->H && G->KW == G->W && G->pt == 0 && G->pl == 0 &&
           (G->dh == 1 || G->KH == 1) && (G->dw == 1 || G->KW == 1);
}

static void job_init(cjob *J, const conv_rt *rt, const geom *G) {
    memset(J, 0, sizeof *J);
    J->G = G;
    plan_chunks(G, rt->T, &J->ch);
    if (!G->depthwise && !implicit_ok(G) && use_table(G, &J->ch)) {
        build_table(G, rt->tab);
        J->tab = rt->tab;
    }
    J->implicit = implicit_ok(G);
    if (J->implicit) plan_band(G, rt->T, &J->bd);
    J->ws = rt->ws;
    J->scratch = rt->S;
}

static const float *bias_of(const dp_node *n);
/* ------------------------------------------------------------ conv -> relu -> bn -> max-pool (eval) */
/* The band plan of a pooled conv: whole pool windows in every band. */
static int pool_band(const geom *G, int T, int k, bandp *b) { return plan_band_k(G, T, k, b); }

int dp_conv_pool_ok(const dp_graph *g, const dp_node *conv, int k) {
    if (conv->op != DP_OP_CONV2D || k < 1) return 0;
    geom G;
    geom_of(&G, conv);
    bandp b;
    return implicit_ok(&G) && G.groups == 1 && G.OH % k == 0 && G.OW % k == 0 && pool_band(&G, g->ctx->threads, k, &b);
}

typedef struct pjob {
    cjob J;
    int k;
    const float *wp; /* dp_dconv_s1_pool_band's packed weights, or NULL: GEMM + maxpool_row */
    const float *rba;
    float *y; /* [N, O, OH/k, OW/k] */
} pjob;

/* One band of output rows of one image into scratch (the GEMM of
 * igather_item), then relu, the norm's map and the pool into y. */
static void pool_part(void *arg, int64_t b0, int64_t e0, int tid) {
    const pjob *P = arg;
    const cjob *J = &P->J;
    const geom *G = J->G;
    const bandp *b = &J->bd;
    const dp_ew_kernels *ek = dp_ew();
    float *ws = J->ws + tid * J->scratch, *band = ws, *tmp = ws + ALIGN16(G->Cg * b->bsz);
    int64_t *offs = (int64_t *)(ws + ALIGN16(G->Cg * b->bsz) + ALIGN16(G->Og * b->rows * b->Wp));
    int64_t PH = G->OH / P->k, PW = G->OW / P->k;
    band_offsets(G, b, offs);
    for (int64_t item = b0; item < e0; item++) {
        int64_t n = item / b->nrb, oh0 = (item % b->nrb) * b->rows;
        int64_t rows = G->OH - oh0 < b->rows ? G->OH - oh0 : b->rows; /* a multiple of k */
        band_fill(G, b, J->img, n, 0, oh0, band);
        if (P->wp) {
            dp_dconv_s1_pool_band(band, G->Cg, b->bsz, b->Wp, P->wp, G->KH, G->KW, rows, G->OW, G->O, J->bias, P->rba,
                                  P->y + (n * G->O * PH + oh0 / 2) * PW, PH * PW, PW);
            continue;
        }
        dp_sgemm_rows_st(rows, G->O, G->OW, G->CKK, J->w, G->CKK, band, b->Wp, offs, 0.0f, J->bias, tmp, rows * G->OW, G->OW);
        for (int64_t o = 0; o < G->O; o++)
            for (int64_t r = 0; r < rows; r += P->k)
                ek->maxpool_row(P->k, P->y + ((n * G->O + o) * PH + (oh0 + r) / P->k) * PW, NULL,
                                tmp + (o * rows + r) * G->OW, G->OW, PW, P->rba + 3 * o);
    }
}

void dp_conv_pool_fwd(dp_graph *g, const dp_node *conv, int k, const float *rba, float *y) {
    geom G;
    conv_rt rt;
    geom_of(&G, conv);
    rt_init(&rt, g, &G);
    pjob P;
    job_init(&P.J, &rt, &G);
    P.J.w = conv->in[1]->val.data, P.J.img = conv->in[0]->val.data, P.J.bias = bias_of(conv);
    P.k = k, P.rba = rba, P.y = y, P.wp = NULL;
    if (s1pool_use(&G, k)) {
        dp_dconv_s1_pack_w(P.J.w, G.O, G.CKK, rt.wpk);
        P.wp = rt.wpk;
    }
    pool_band(&G, rt.T, k, &P.J.bd); /* rows a multiple of k, within band_scratch_max */
    dp_parallel_for(g->ctx, G.N * P.J.bd.nrb, pool_part, &P);
}

/* The direct kernel: items are (image, B-channel block) pairs; a thread pads
 * each image once for the blocks of it that it owns. */
typedef struct dcjob {
    const geom *G;
    const float *wp, *img, *bias;
    float *out, *ws;
    int64_t scratch, Hp, Wp, nob;
    int acc, B;
} dcjob;

static void dconv_part(void *arg, int64_t b, int64_t e, int tid) {
    const dcjob *J = arg;
    const geom *G = J->G;
    float *xp = J->ws + tid * J->scratch;
    int64_t padded = -1;
    for (int64_t i = b; i < e; i++) {
        int64_t n = i / J->nob, ob = i % J->nob;
        if (n != padded) /* the zero borders stay from the first image this thread padded */
            dp_dconv_pad(J->img + n * G->C * G->HW, G->C, G->H, G->W, G->pt, G->pl, J->Hp, J->Wp, padded >= 0, xp), padded = n;
        dp_dconv_s2_image(xp, G->C, J->Hp, J->Wp, J->wp, G->KH, G->KW, G->OH, G->OW, J->B, ob, ob + 1, J->bias, J->acc,
                          J->out + n * G->O * G->P);
    }
}

static void run_dconv(const conv_rt *rt, const geom *G, const float *w, const float *img, const float *bias, float *out,
                      int acc) {
    int B = dp_dconv_run_block(G->O, G->OW);
    dcjob J = {G, rt->wpk, img, bias, out, rt->ws, rt->S, 0, 0, G->O / B, acc, B};
    dconv_dims(G, &J.Hp, &J.Wp);
    dp_dconv_pack_w(w, G->O, G->CKK, B, rt->wpk);
    dp_parallel_for(rt->g->ctx, G->N * J.nob, dconv_part, &J);
}

/* adj: the adjoint, out (image side) += conv^T(in (cols side)) */
typedef struct wjob {
    const geom *G;
    const float *w, *in, *bias;
    float *out, *upk, *ws;
    int64_t S, g;
    int acc, adj;
} wjob;
static void wino_pack_part(void *arg, int64_t b, int64_t e, int tid) {
    const wjob *J = arg;
    (J->adj ? dp_wino_t_pack_w : dp_wino_pack_w)(J->w, J->G->O, J->G->C, b, e, J->ws + tid * J->S, J->upk);
}
static void wino_part(void *arg, int64_t b, int64_t e, int tid) {
    const wjob *J = arg;
    const geom *G = J->G;
    for (int64_t it = b; it < e; it++) {
        int64_t n0 = it * J->g, n1 = n0 + J->g < G->N ? n0 + J->g : G->N;
        if (J->adj)
            dp_wino_t_images(J->upk, J->in + n0 * G->O * G->P, n1 - n0, G->C, G->H, G->W, G->O,
                             J->out + n0 * G->C * G->HW, J->ws + tid * J->S);
        else
            dp_wino_images(J->upk, J->in + n0 * G->C * G->HW, n1 - n0, G->C, G->H, G->W, G->O, J->bias, J->acc,
                           J->out + n0 * G->O * G->P, J->ws + tid * J->S);
    }
}
/* adj: img (out) += conv^T(cols (in)); else out (+)= conv(img (in)) (+ bias) */
static void run_wino(const conv_rt *rt, const geom *G, int adj, const float *w, const float *in, const float *bias,
                     float *out, int acc) {
    wjob J = {G, w, in, bias, out, rt->wpk, rt->ws, rt->S, wino_imgs(G), acc, adj};
    dp_parallel_for(rt->g->ctx, adj ? dp_wino_t_pack_panels(G->C) : dp_wino_pack_panels(G->O), wino_pack_part, &J);
    dp_parallel_for(rt->g->ctx, (G->N + J.g - 1) / J.g, wino_part, &J);
}

/* dw += the weight gradient by Winograd: the parts fill disjoint blocks of M
 * (products x phases; each block's sums in a fixed image order: the same bits
 * for any thread count), then A^T M A by output rows. */
typedef struct wwjob {
    const geom *G;
    const float *gy, *x;
    float *M, *ws, *dw;
    int64_t S;
} wwjob;
static void wino_w_part(void *arg, int64_t b, int64_t e, int tid) {
    const wwjob *J = arg;
    const geom *G = J->G;
    dp_wino_w_pairs(J->gy, J->x, G->N, G->C, G->H, G->W, G->O, b, e, J->M, J->ws + tid * J->S);
}
static void wino_w_out_part(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const wwjob *J = arg;
    dp_wino_w_out(J->M, J->G->O, J->G->C, b, e, J->dw);
}
static void run_wino_w(const conv_rt *rt, const geom *G, const float *cols, const float *img, float *dw) {
    wwjob J = {G, cols, img, rt->wpk, rt->ws, dw, rt->S};
    dp_parallel_for(rt->g->ctx, 36, wino_w_part, &J);
    dp_parallel_for(rt->g->ctx, G->O, wino_w_out_part, &J);
}

/* cols (+)= W x im2col(img) (+ bias). */
static void run_gather(const conv_rt *rt, const geom *G, const float *w, const float *img, const float *bias, float *out,
                       int acc) {
    dp_ctx *ctx = rt->g->ctx;
    if (dense_ok(G)) { /* cols[n, o] (+)= sum_k w[o, k] img[n, k] */
        for (int64_t grp = 0; grp < G->groups; grp++)
            dp_sgemm(ctx, 0, 1, G->N, G->Og, G->CKK, 1.0f, img + grp * G->CKK, G->C * G->HW, w + grp * G->Og * G->CKK,
                     G->CKK, acc ? 1.0f : 0.0f, out + grp * G->Og, G->O);
        if (bias)
            for (int64_t n = 0; n < G->N; n++) dp_vec_axpy(out + n * G->O, 1.0f, bias, G->O);
        return;
    }
    if (wino_use(G)) {
        run_wino(rt, G, 0, w, img, bias, out, acc);
        return;
    }
    if (dconv_use(G)) {
        run_dconv(rt, G, w, img, bias, out, acc);
        return;
    }
    cjob J;
    job_init(&J, rt, G);
    J.w = w, J.img = img, J.bias = bias, J.out = out, J.acc = acc;
    if (G->depthwise) {
        dp_parallel_for(ctx, G->N * G->C, dw_gather_part, &J);
    } else if (J.implicit) {
        if (s1plain_use(G) && plan_band_k(G, rt->T, 2, &J.bd)) { /* even heights: the tiles take row pairs */
            dp_dconv_s1_pack_w(w, G->O, G->CKK, rt->wpk);
            J.s1wp = rt->wpk;
        }
        dp_parallel_for(ctx, G->N * J.bd.nrb, gather_part, &J);
    } else if (J.ch.items < rt->T) {
        J.mt = ctx;
        for (int64_t i = 0; i < J.ch.items; i++) gather_item(&J, i, J.ws);
    } else {
        dp_parallel_for(ctx, J.ch.items, gather_part, &J);
    }
}

/* img += col2im(W^T x cols). */
static void run_scatter(const conv_rt *rt, const geom *G, const float *w, const float *cols, float *img) {
    if (implicit_scatter_ok(G)) { /* stride 1: the gather of the flipped geometry, into img */
        geom F;
        flip_geom(G, &F);
        float *wf = rt->ws + rt->T * rt->S + (wgrad_parts(rt->T, rt->pw) - 1) * rt->pw;
        flip_weights(G, w, wf);
        run_gather(rt, &F, wf, cols, NULL, img, 1);
        return;
    }
    if (wino_t_use(G)) {
        run_wino(rt, G, 1, w, cols, NULL, img, 1);
        return;
    }
    dp_ctx *ctx = rt->g->ctx;
    if (dense_ok(G)) { /* img[n, k] += sum_o cols[n, o] w[o, k] */
        for (int64_t grp = 0; grp < G->groups; grp++)
            dp_sgemm(ctx, 0, 0, G->N, G->CKK, G->Og, 1.0f, cols + grp * G->Og, G->O, w + grp * G->Og * G->CKK, G->CKK, 1.0f,
                     img + grp * G->CKK, G->C * G->HW);
        return;
    }
    cjob J;
    job_init(&J, rt, G);
    J.w = w, J.cols = cols, J.out = img;
    int64_t units = J.ch.pieces ? G->N : J.ch.items;
    if (G->depthwise) {
        dp_parallel_for(ctx, G->N * G->C, dw_scatter_part, &J);
    } else if (units < rt->T) {
        J.mt = ctx;
        for (int64_t i = 0; i < J.ch.items; i++) scatter_item(&J, i, J.ws);
    } else {
        dp_parallel_for(ctx, units, scatter_part, &J);
    }
}

/* The direct weight gradient: each part takes whole images into its own
 * packed block (part 0 the packed-weight slot, the others the gradient
 * blocks), zeroed first; the blocks are then added into dW in part order. */
typedef struct dwjob {
    const geom *G;
    const float *cols, *img;
    float *ws, *blk0, *partials;
    int64_t scratch, pw, Hp, Wp;
    int used[256];
} dwjob;

static void dwgrad_part(void *arg, int64_t b, int64_t e, int tid) {
    dwjob *J = arg;
    const geom *G = J->G;
    float *xp = J->ws + tid * J->scratch, *gyT = xp + dconv_pad_floats(G);
    float *blk = tid == 0 ? J->blk0 : J->partials + (tid - 1) * J->pw;
    memset(blk, 0, sizeof(float) * (size_t)(G->O * G->CKK));
    J->used[tid] = 1;
    for (int64_t n = b; n < e; n++) {
        dp_dconv_pad(J->img + n * G->C * G->HW, G->C, G->H, G->W, G->pt, G->pl, J->Hp, J->Wp, n > b, xp);
        const float *gy = J->cols + n * G->O * G->P;
        for (int64_t o = 0; o < G->O; o++)
            for (int64_t p = 0; p < G->P; p++) gyT[p * G->O + o] = gy[o * G->P + p];
        dp_dconv_s2_wgrad_image(xp, G->C, J->Hp, J->Wp, G->KH, G->KW, G->OH, G->OW, gyT, G->O, blk);
    }
}

static void run_dwgrad(const conv_rt *rt, const geom *G, const float *cols, const float *img, float *dw) {
    dwjob J;
    memset(&J, 0, sizeof J);
    J.G = G, J.cols = cols, J.img = img, J.ws = rt->ws, J.scratch = rt->S, J.pw = rt->pw;
    J.blk0 = rt->wpk;
    J.partials = rt->ws + rt->T * rt->S;
    dconv_dims(G, &J.Hp, &J.Wp);
    int parts = wgrad_parts(rt->T, rt->pw), B = dp_dconv_wgrad_block();
    dp_parallel_for_n(rt->g->ctx, G->N, parts, dwgrad_part, &J);
    for (int t = 0; t < parts && t < 256; t++) /* fixed order: deterministic */
        if (J.used[t]) {
            const float *blk = t == 0 ? J.blk0 : J.partials + (t - 1) * J.pw;
            for (int64_t ob = 0; ob < G->O / B; ob++)
                for (int64_t j = 0; j < B; j++)
                    for (int64_t k = 0; k < G->CKK; k++) dw[(ob * B + j) * G->CKK + k] += blk[(ob * G->CKK + k) * B + j];
        }
}

/* dW += cols x im2col(img)^T. Returns 1 if it also added the cols-side bias
 * gradient into db (db may be NULL: not asked). */
static int run_wgrad(const conv_rt *rt, const geom *G, const float *cols, const float *img, float *dw, float *db) {
    dp_ctx *ctx = rt->g->ctx;
    if (dense_ok(G)) { /* dw[o, k] += sum_n cols[n, o] img[n, k] */
        for (int64_t grp = 0; grp < G->groups; grp++)
            dp_sgemm(ctx, 1, 0, G->Og, G->CKK, G->N, 1.0f, cols + grp * G->Og, G->O, img + grp * G->CKK, G->C * G->HW, 1.0f,
                     dw + grp * G->Og * G->CKK, G->CKK);
        return 0;
    }
    if (wino_w_use(G)) {
        run_wino_w(rt, G, cols, img, dw);
        return 0;
    }
    if (dwgrad_use(G)) {
        run_dwgrad(rt, G, cols, img, dw);
        return 0;
    }
    cjob J;
    job_init(&J, rt, G);
    J.cols = cols, J.img = img, J.out = dw;
    if (G->depthwise) {
        dp_parallel_for(ctx, G->C, dw_wgrad_part, &J);
        return 0;
    }
    int64_t items = J.implicit ? G->N * J.bd.nrb : J.ch.items;
    if (!J.implicit && items < rt->T) {
        J.mt = ctx;
        for (int64_t i = 0; i < items; i++) wgrad_item(&J, i, J.ws, dw);
        return 0;
    }
    J.partials = J.ws + rt->T * J.scratch;
    J.pw = rt->pw;
    J.db = J.implicit ? db : NULL;
    dp_parallel_for_n(ctx, items, wgrad_parts(rt->T, rt->pw), wgrad_part, &J);
    for (int t = 1; t < rt->T && t < 256; t++) /* fixed order: deterministic */
        if (J.used[t]) {
            const float *p = J.partials + (t - 1) * rt->pw;
            dp_vec_axpy(dw, 1.0f, p, rt->wn);
            if (J.db) dp_vec_axpy(J.db, 1.0f, p + rt->wn, G->O);
        }
    return J.db != NULL;
}

/* gb[c] += sum over n and s of gy[n, c, s]. */
typedef struct csum_job {
    const float *gy;
    float *gb;
    int64_t N, Ch, S;
} csum_job;

static void csum_part(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const csum_job *J = arg;
    for (int64_t c = b; c < e; c++) {
        double s = 0.0; /* per image in float, over images in double */
        for (int64_t n = 0; n < J->N; n++) s += dp_vec_sum(J->gy + (n * J->Ch + c) * J->S, J->S);
        J->gb[c] += (float)s;
    }
}

static void channel_sum(dp_graph *g, const float *gy, int64_t N, int64_t Ch, int64_t S, float *gb) {
    csum_job J = {gy, gb, N, Ch, S};
    dp_parallel_for(g->ctx, Ch, csum_part, &J);
}

/* ------------------------------------------------------------ shape rules */
static size_t conv_ws_bytes(dp_graph *g, const geom *G) {
    if (G->depthwise || dense_ok(G)) return 0;
    int64_t T = g->ctx->threads;
    /* T scratch blocks, T-1 weight-gradient blocks, the flipped weights (stride-1 scatters) */
    int64_t pw = ALIGN16(G->O * G->CKK + G->O);
    chunks ch;
    plan_chunks(G, (int)T, &ch);
    int64_t floats = T * thread_scratch(G, (int)T) + (wgrad_parts((int)T, pw) - 1) * pw +
                     (implicit_scatter_ok(G) ? ALIGN16(G->O * G->CKK) : 0) + dconv_wp_floats(G) +
                     (use_table(G, &ch) ? ALIGN16(G->KK * G->P) : 0);
    return (size_t)floats * sizeof(float);
}

/* Checks shared by both ops; fills the normalised attributes. */
static dp_status conv_common(dp_graph *g, dp_node *n) {
    const dp_tensor *x = &n->in[0]->val, *w = &n->in[1]->val;
    char s1[64], s2[64];
    if (x->ndim != 4) return dp_node_error(g, n, DP_ERR_SHAPE, "x must be [N,C,H,W], got %s", DP_SHAPE_STR(x, s1));
    if (w->ndim != 4) return dp_node_error(g, n, DP_ERR_SHAPE, "w must be 4-D, got %s", DP_SHAPE_STR(w, s2));
    int *ip = n->ip;
    if (ip[IP_SH] < 1 || ip[IP_SW] < 1 || ip[IP_DH] < 1 || ip[IP_DW] < 1 || ip[IP_GROUPS] < 1)
        return dp_node_error(g, n, DP_ERR_ARG, "stride %dx%d, dilation %dx%d and groups %d must be positive", ip[IP_SH],
                             ip[IP_SW], ip[IP_DH], ip[IP_DW], ip[IP_GROUPS]);
    if (ip[IP_PADH] < 0 || ip[IP_PADW] < 0 || ip[IP_OPH] < 0 || ip[IP_OPW] < 0)
        return dp_node_error(g, n, DP_ERR_ARG, "padding %dx%d and output padding %dx%d must not be negative", ip[IP_PADH],
                             ip[IP_PADW], ip[IP_OPH], ip[IP_OPW]);
    return DP_OK;
}

static dp_status check_bias(dp_graph *g, dp_node *n, int64_t co) {
    if (n->n_in < 3) return DP_OK;
    const dp_tensor *b = &n->in[2]->val;
    char s[64];
    if (b->ndim != 1 || b->shape[0] != co)
        return dp_node_error(g, n, DP_ERR_SHAPE, "bias must be [%lld], got %s", (long long)co, DP_SHAPE_STR(b, s));
    return DP_OK;
}

/* TF 'same': out = ceil(in/stride); the total padding, odd or not, puts the extra on the bottom/right. */
static int64_t same_pad_front(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d) {
    int64_t total = (out - 1) * s + (k - 1) * d + 1 - in;
    return total > 0 ? total / 2 : 0;
}

static dp_status conv2d_shape(dp_graph *g, dp_node *n) {
    dp_status st = conv_common(g, n);
    if (st) return st;
    const dp_tensor *x = &n->in[0]->val, *w = &n->in[1]->val;
    int *ip = n->ip;
    int64_t N = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Co = w->shape[0], KH = w->shape[2], KW = w->shape[3], G = ip[IP_GROUPS];
    char s1[64], s2[64];
    if (Ci % G || Co % G || w->shape[1] * G != Ci)
        return dp_node_error(g, n, DP_ERR_SHAPE, "x %s and w %s do not fit groups = %lld (w must be [Co, Ci/groups, KH, KW])",
                             DP_SHAPE_STR(x, s1), DP_SHAPE_STR(w, s2), (long long)G);
    if (ip[IP_OPH] || ip[IP_OPW]) return dp_node_error(g, n, DP_ERR_ARG, "output padding is for conv_transpose2d only");
    int64_t OH, OW;
    if (ip[IP_SAME]) {
        OH = (H + ip[IP_SH] - 1) / ip[IP_SH];
        OW = (W + ip[IP_SW] - 1) / ip[IP_SW];
        ip[IP_PT] = (int)same_pad_front(H, OH, KH, ip[IP_SH], ip[IP_DH]);
        ip[IP_PL] = (int)same_pad_front(W, OW, KW, ip[IP_SW], ip[IP_DW]);
    } else {
        ip[IP_PT] = ip[IP_PADH];
        ip[IP_PL] = ip[IP_PADW];
        int64_t eh = H + 2 * (int64_t)ip[IP_PADH] - (int64_t)ip[IP_DH] * (KH - 1) - 1;
        int64_t ew = W + 2 * (int64_t)ip[IP_PADW] - (int64_t)ip[IP_DW] * (KW - 1) - 1;
        if (eh < 0 || ew < 0)
            return dp_node_error(g, n, DP_ERR_SHAPE, "the dilated kernel %lldx%lld is larger than the padded input %s",
                                 (long long)((KH - 1) * ip[IP_DH] + 1), (long long)((KW - 1) * ip[IP_DW] + 1),
                                 DP_SHAPE_STR(x, s1));
        OH = eh / ip[IP_SH] + 1;
        OW = ew / ip[IP_SW] + 1;
    }
    if ((st = check_bias(g, n, Co))) return st;
    dp_tensor_set_contiguous(&n->val, DP_F32, 4, (int64_t[]){N, Co, OH, OW});
    geom Gm;
    geom_of(&Gm, n);
    n->ws_bytes = conv_ws_bytes(g, &Gm);
    return DP_OK;
}

static dp_status conv_transpose2d_shape(dp_graph *g, dp_node *n) {
    dp_status st = conv_common(g, n);
    if (st) return st;
    const dp_tensor *x = &n->in[0]->val, *w = &n->in[1]->val;
    int *ip = n->ip;
    int64_t N = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t KH = w->shape[2], KW = w->shape[3], G = ip[IP_GROUPS], Co = w->shape[1] * G;
    char s1[64], s2[64];
    if (Ci % G || w->shape[0] != Ci)
        return dp_node_error(g, n, DP_ERR_SHAPE, "x %s and w %s do not fit groups = %lld (w must be [Ci, Co/groups, KH, KW])",
                             DP_SHAPE_STR(x, s1), DP_SHAPE_STR(w, s2), (long long)G);
    int64_t OH, OW;
    if (ip[IP_SAME]) {
        if (ip[IP_OPH] || ip[IP_OPW]) return dp_node_error(g, n, DP_ERR_ARG, "output padding cannot be used with 'same'");
        OH = H * ip[IP_SH]; /* the conv that maps OH back to H with 'same' */
        OW = W * ip[IP_SW];
        ip[IP_PT] = (int)same_pad_front(OH, H, KH, ip[IP_SH], ip[IP_DH]);
        ip[IP_PL] = (int)same_pad_front(OW, W, KW, ip[IP_SW], ip[IP_DW]);
    } else {
        /* PyTorch: output padding must be smaller than the stride or the dilation. */
        if (ip[IP_OPH] >= (ip[IP_SH] > ip[IP_DH] ? ip[IP_SH] : ip[IP_DH]) ||
            ip[IP_OPW] >= (ip[IP_SW] > ip[IP_DW] ? ip[IP_SW] : ip[IP_DW]))
            return dp_node_error(g, n, DP_ERR_ARG, "output padding %dx%d must be smaller than the stride or the dilation",
                                 ip[IP_OPH], ip[IP_OPW]);
        ip[IP_PT] = ip[IP_PADH];
        ip[IP_PL] = ip[IP_PADW];
        OH = (H - 1) * ip[IP_SH] - 2 * (int64_t)ip[IP_PADH] + (int64_t)ip[IP_DH] * (KH - 1) + ip[IP_OPH] + 1;
        OW = (W - 1) * ip[IP_SW] - 2 * (int64_t)ip[IP_PADW] + (int64_t)ip[IP_DW] * (KW - 1) + ip[IP_OPW] + 1;
        if (OH < 1 || OW < 1)
            return dp_node_error(g, n, DP_ERR_SHAPE, "the output would be %lldx%lld for x %s", (long long)OH, (long long)OW,
                                 DP_SHAPE_STR(x, s1));
    }
    if ((st = check_bias(g, n, Co))) return st;
    dp_tensor_set_contiguous(&n->val, DP_F32, 4, (int64_t[]){N, Co, OH, OW});
    geom Gm;
    geom_of(&Gm, n);
    n->ws_bytes = conv_ws_bytes(g, &Gm);
    return DP_OK;
}

/* ------------------------------------------------------------ forward / backward */
static const float *bias_of(const dp_node *n) { return n->n_in == 3 ? n->in[2]->val.data : NULL; }

static void conv2d_fwd(dp_graph *g, dp_node *n) {
    geom G;
    conv_rt rt;
    geom_of(&G, n);
    rt_init(&rt, g, &G);
    run_gather(&rt, &G, n->in[1]->val.data, n->in[0]->val.data, bias_of(n), n->val.data, 0);
}

static void conv2d_bwd(dp_graph *g, dp_node *n) {
    geom G;
    conv_rt rt;
    geom_of(&G, n);
    rt_init(&rt, g, &G);
    dp_node *X = n->in[0], *W = n->in[1];
    const float *gy = n->grad.data;
    float *db = n->n_in == 3 && dp_wants_grad(n->in[2]) ? n->in[2]->grad.data : NULL;
    if (dp_wants_grad(X)) run_scatter(&rt, &G, W->val.data, gy, X->grad.data);
    if (dp_wants_grad(W) && run_wgrad(&rt, &G, gy, X->val.data, W->grad.data, db)) db = NULL; /* summed there */
    if (db) channel_sum(g, gy, G.N, G.O, G.P, db);
}

static void conv_transpose2d_fwd(dp_graph *g, dp_node *n) {
    geom G;
    conv_rt rt;
    geom_of(&G, n);
    rt_init(&rt, g, &G);
    float *y = n->val.data;
    const float *b = bias_of(n);
    for (int64_t i = 0; i < G.N * G.C; i++) dp_vec_fill(y + i * G.HW, b ? b[i % G.C] : 0.0f, G.HW); /* the scatter adds */
    run_scatter(&rt, &G, n->in[1]->val.data, n->in[0]->val.data, y);
}

static void conv_transpose2d_bwd(dp_graph *g, dp_node *n) {
    geom G;
    conv_rt rt;
    geom_of(&G, n);
    rt_init(&rt, g, &G);
    dp_node *X = n->in[0], *W = n->in[1];
    const float *gy = n->grad.data;
    if (dp_wants_grad(X)) run_gather(&rt, &G, W->val.data, gy, NULL, X->grad.data, 1);
    if (dp_wants_grad(W)) run_wgrad(&rt, &G, X->val.data, gy, W->grad.data, NULL);
    if (n->n_in == 3 && dp_wants_grad(n->in[2])) channel_sum(g, gy, G.N, G.C, G.HW, n->in[2]->grad.data);
}

const dp_op_def dp_op_conv2d = {"conv2d", conv2d_shape, conv2d_fwd, conv2d_bwd, 0};
const dp_op_def dp_op_conv_transpose2d = {"conv_transpose2d", conv_transpose2d_shape, conv_transpose2d_fwd,
                                          conv_transpose2d_bwd, 0};

/* ------------------------------------------------------------ builders */
static dp_node *conv_build(dp_graph *g, int op, dp_node *x, dp_node *w, dp_node *b, const dp_conv_opts *o) {
    dp_node *in[3] = {x, w, b};
    dp_node *n = dp_node_begin(g, op, b ? 3 : 2, in);
    if (!n) return NULL;
    dp_conv_opts d = {0};
    if (!o) o = &d;
    n->ip[IP_SH] = o->stride_h ? o->stride_h : 1;
    n->ip[IP_SW] = o->stride_w ? o->stride_w : 1;
    n->ip[IP_DH] = o->dilation_h ? o->dilation_h : 1;
    n->ip[IP_DW] = o->dilation_w ? o->dilation_w : 1;
    n->ip[IP_GROUPS] = o->groups ? o->groups : 1;
    n->ip[IP_SAME] = o->same ? 1 : 0;
    n->ip[IP_PADH] = o->pad_h;
    n->ip[IP_PADW] = o->pad_w;
    n->ip[IP_OPH] = o->output_pad_h;
    n->ip[IP_OPW] = o->output_pad_w;
    return dp_node_finish(g, n);
}

dp_node *dp_conv2d(dp_graph *g, dp_node *x, dp_node *w, dp_node *b, const dp_conv_opts *opts) {
    return conv_build(g, DP_OP_CONV2D, x, w, b, opts);
}

dp_node *dp_conv_transpose2d(dp_graph *g, dp_node *x, dp_node *w, dp_node *b, const dp_conv_opts *opts) {
    return conv_build(g, DP_OP_CONV_TRANSPOSE2D, x, w, b, opts);
}

dp_node *dp_separable_conv2d(dp_graph *g, dp_node *x, dp_node *w_dw, dp_node *w_pw, dp_node *b,
                             const dp_conv_opts *opts) {
    dp_conv_opts d = {0};
    if (opts) d = *opts;
    d.groups = (x && x->val.ndim == 4) ? (int)x->val.shape[1] : 1; /* depthwise: one group per channel */
    dp_node *dw = conv_build(g, DP_OP_CONV2D, x, w_dw, NULL, &d);
    return conv_build(g, DP_OP_CONV2D, dw, w_pw, b, NULL);
}
