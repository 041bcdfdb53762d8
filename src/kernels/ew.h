/* Element-wise, normalisation, pooling and loss kernels for the non-GEMM ops.
 * One table of row kernels per instruction set (AVX-512, AVX2, portable),
 * generated from one body (ew_body.h) written with GCC/Clang vector
 * extensions, and chosen at run time like the GEMM (dp_kernel_level: cpuid,
 * or DP_KERNEL). The kernels are single-threaded: the ops split the work.
 *
 * Element-wise results (activations, exp/log/tanh through the same
 * polynomials, affine maps, pooling) are the same in every table: only the
 * lane count differs. Sums are accumulated in double, lane by lane, so their
 * rounding differs between tables (by far less than float precision).
 * Not installed. */
#ifndef DP_KERNELS_EW_H
#define DP_KERNELS_EW_H

#include <stdint.h>

/* Unary kinds: y = f(x) (p = slope of leaky_relu, factor of scale). */
enum { DP_EW_RELU, DP_EW_LEAKY_RELU, DP_EW_SCALE, DP_EW_TANH, DP_EW_SIGMOID };
/* Binary kinds: y = a op b. */
enum { DP_EW_ADD, DP_EW_SUB, DP_EW_MUL, DP_EW_DIV };
/* Pair losses (the summed per-element term; the op divides by n). */
enum { DP_EW_BCE_LOGITS, DP_EW_BCE, DP_EW_MSE, DP_EW_L1 };

typedef struct dp_ew_kernels {
    const char *name; /* "portable", "avx2", "avx512" */
    /* y[i] = f(x[i]) */
    void (*unary_f)(int kind, float *y, const float *x, int64_t n, float p);
    /* gx[i] += gy[i] * f'(x[i]) (relu, leaky_relu, scale read x; tanh, sigmoid read y = f(x));
     * acc = 0: gx[i] = gy[i] * f'(x[i]) (the backward kernels below store the same way) */
    void (*unary_b)(int kind, float *gx, const float *gy, const float *x, const float *y, int64_t n, float p, int acc);
    /* y[i] = a[i*sa] op b[i*sb], sa, sb in {0, 1} (0: one value broadcast over the row) */
    void (*binary_f)(int kind, float *y, const float *a, int sa, const float *b, int sb, int64_t n);
    /* dst[i] += g[i] * d(a op b)/d(operand wrt) at i (wrt 0: a, 1: b); dst is that operand's
     * gradient, contiguous; the other operand steps by its stride */
    void (*binary_b)(int kind, int wrt, float *dst, const float *g, const float *a, int sa, const float *b, int sb,
                     int64_t n);
    /* the same terms summed in double: the gradient of an operand broadcast over the row */
    double (*binary_bsum)(int kind, int wrt, const float *g, const float *a, int sa, const float *b, int sb, int64_t n);
    /* sum of x[i] in double */
    double (*sum)(const float *x, int64_t n);
    /* y[i] += v */
    void (*adds)(float *y, float v, int64_t n);
    /* batch norm: *s1 += sum(x - shift), *s2 += sum((x - shift)^2), in double */
    void (*moments)(const float *x, int64_t n, double shift, double *s1, double *s2);
    /* y[i] = (x[i] - mu) * a + b (rounded as written: no fused multiply-add) */
    void (*affine)(float *y, const float *x, int64_t n, float mu, float a, float b);
    /* *sg += sum(gy), *sgx += sum(gy * (x - mu)), in double */
    void (*bn_bsums)(const float *x, const float *gy, int64_t n, float mu, double *sg, double *sgx);
    /* gx[i] += a * (gy[i] - mg - (x[i] - mu) * istd * mgx) */
    void (*bn_bapply)(float *gx, const float *x, const float *gy, int64_t n, float mu, float istd, float a, float mg,
                      float mgx, int acc);
    /* One output row of a k x k max-pool with stride k (k = 2 or 4), no padding:
     * y[j] = max over rows x + r*ldx (r < k), columns k*j .. k*j+k-1, for j < ow.
     * The first maximum in row-major window order wins; a NaN wins over numbers.
     * idx[j] = its position in the window (r*k + c), unless idx is NULL.
     * rba = {mu, a, b}: pool (relu(x) - mu) * a + b instead of x (ReLU then an
     * eval-mode batch norm, fused); NULL: plain x. */
    void (*maxpool_row)(int k, float *y, uint8_t *idx, const float *x, int64_t ldx, int64_t ow, const float *rba);
    /* Its gradient: gx[r*ldx + k*j + c] += gy[j] where idx[j] == r*k + c (acc = 0:
     * every gx[r*ldx + c'] with c' < k*ow is written, 0 where it was not the maximum). */
    void (*maxpool_row_b)(int k, float *gx, int64_t ldx, const uint8_t *idx, const float *gy, int64_t ow, int acc);
    /* sum over i of the loss term of (a[i], t[i]), in double */
    double (*loss_f)(int kind, const float *a, const float *t, int64_t n);
    /* ga[i] += s * dloss/da, gb[i] += s * dloss/dt (either may be NULL) */
    void (*loss_b)(int kind, float *ga, float *gb, const float *a, const float *t, int64_t n, float s);
    /* batch norm -> activation (kind DP_EW_RELU or DP_EW_LEAKY_RELU, finite slope p), fused;
     * y = (x - mu) * a + b recomputed from x as affine does (the same bits), g = gz * f'(y):
     * y[i] = that, z[i] = f(y[i]) */
    void (*bn_act_f)(int kind, float *y, float *z, const float *x, int64_t n, float mu, float a, float b, float p);
    /* bn_bsums with gy = g */
    void (*bn_act_bsums)(int kind, const float *x, const float *gz, int64_t n, float mu, float a, float b, float p,
                         double *sg, double *sgx);
    /* batch = 1: bn_bapply with gy = g (its a = this a); 0: gx[i] += g * a (running statistics) */
    void (*bn_act_bapply)(int kind, int batch, float *gx, const float *x, const float *gz, int64_t n, float mu, float a,
                          float b, float p, float istd, float mg, float mgx, int acc);
    /* Adam without weight decay or clipping, as optim.c's scalar loop (the same bits):
     * m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; p -= ss * (m / (sqrt(v)/bc2 + eps)) */
    void (*adam)(float *p, const float *g, float *m, float *v, int64_t n, float b1, float b2, float eps, float bc2, float ss);
    /* y[i] = relu(x[i]), then moments(y, n, shift, s1, s2): one pass, the same bits; nt = 1: y written
     * with streaming stores (for values much larger than the cache; see DP_STREAM_BYTES) */
    void (*relu_moments)(float *y, const float *x, int64_t n, double shift, double *s1, double *s2, int nt);
    /* unary_b(DP_EW_RELU, gx, gy, x, x, n, 0, acc = 0) with streaming stores */
    void (*relu_b_nt)(float *gx, const float *gy, const float *x, int64_t n);
} dp_ew_kernels;

/* A value or gradient of more bytes than this is written with streaming stores
 * where a kernel offers them and nothing reads it back soon (twice a 16 MB
 * share of L3: Meso-4's first block at batch 32, 67 MB a tensor). */
#define DP_STREAM_BYTES ((int64_t)32 << 20)
/* The threshold in use: DP_STREAM_BYTES; tests lower it to take the streaming
 * paths on small graphs. */
extern int64_t dp_stream_bytes;

/* The table of the kernel level in use (dp_kernel_level()). */
const dp_ew_kernels *dp_ew(void);
/* The table of one level (0 portable, 1 AVX2, 2 AVX-512), whether or not the
 * CPU can run it (NULL if it is not compiled in). For tests. */
const dp_ew_kernels *dp_ew_level(int level);

#endif
