/* The body of the element-wise kernels (kernels/ew.h), written once with
 * GCC/Clang vector extensions and included by ew.c once per instruction set,
 * with:
 *   VW        float lanes (16 AVX-512, 8 AVX2, 4 portable)
 *   SFX       suffix of every name (_512, _256, _c)
 *   KT        the function attribute (target) or nothing
 *   IDX_*     lane index lists for __builtin_shufflevector (halves, even/odd,
 *             zip) and IDX_IOTA (0 .. VW-1)
 * Tails (the last n % VW elements) go through the same vector code on a
 * zero-padded vector (masked loads and stores, ldp / stp), so a result never
 * depends on where it sits in a row. */

#define VF CAT(vf, SFX)
#define VI CAT(vi, SFX)
#define VD CAT(vd, SFX)
#define VL CAT(vl, SFX)
#define VB CAT(vb, SFX)
#define FN(name) CAT(name, SFX)
#define INL KT static inline __attribute__((always_inline))

typedef float VF __attribute__((vector_size(VW * 4)));
typedef int32_t VI __attribute__((vector_size(VW * 4)));
typedef double VD __attribute__((vector_size(VW * 4))); /* VW/2 lanes */
typedef int64_t VL __attribute__((vector_size(VW * 4)));
typedef uint8_t VB __attribute__((vector_size(VW)));

/* ------------------------------------------------------------ basics */
INL VF FN(ld)(const float *p) {
    VF v;
    memcpy(&v, p, sizeof v);
    return v;
}
INL void FN(st)(float *p, VF v) { memcpy(p, &v, sizeof v); }
INL VF FN(splat)(float s) { return (VF){0} + s; }
/* the first r (0 < r < VW) elements, the other lanes = fill; and the matching
 * partial store. Masked loads and stores where the instruction set has them: a
 * stack copy (memcpy, then a whole-vector load) stalls store forwarding on every
 * short row's tail (batch-norm planes of 7x7 and 14x14). */
#if VW == 16
INL __mmask16 FN(mk)(int64_t r) { return (__mmask16)((1u << r) - 1u); }
INL VF FN(ldp)(const float *p, int64_t r, float fill) {
    return (VF)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), FN(mk)(r), p);
}
INL void FN(stp)(float *p, VF v, int64_t r) { _mm512_mask_storeu_ps(p, FN(mk)(r), (__m512)v); }
#elif VW == 8
INL __m256i FN(mk)(int64_t r) { return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
INL VF FN(ldp)(const float *p, int64_t r, float fill) {
    __m256i m = FN(mk)(r);
    return (VF)_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
INL void FN(stp)(float *p, VF v, int64_t r) { _mm256_maskstore_ps(p, FN(mk)(r), (__m256)v); }
#else
INL VF FN(ldp)(const float *p, int64_t r, float fill) {
    VF v = FN(splat)(fill);
    for (int64_t k = 0; k < r; k++) v[k] = p[k];
    return v;
}
INL void FN(stp)(float *p, VF v, int64_t r) {
    for (int64_t k = 0; k < r; k++) p[k] = v[k];
}
#endif
INL VF FN(sel)(VI m, VF a, VF b) { return (VF)(((VI)a & m) | ((VI)b & ~m)); }
INL VI FN(seli)(VI m, VI a, VI b) { return (a & m) | (b & ~m); }
INL VD FN(seld)(VL m, VD a, VD b) { return (VD)(((VL)a & m) | ((VL)b & ~m)); }
INL VF FN(vabs)(VF x) { return (VF)((VI)x & 0x7fffffff); }
INL VD FN(dlo)(VF v) { return __builtin_convertvector(__builtin_shufflevector(v, v, IDX_LO), VD); }
INL VD FN(dhi)(VF v) { return __builtin_convertvector(__builtin_shufflevector(v, v, IDX_HI), VD); }
/* lanes summed in a fixed order */
INL double FN(hsum)(VD v) {
    double s = 0.0;
    for (int k = 0; k < VW / 2; k++) s += v[k];
    return s;
}
/* lane masks of the first r lanes, for double halves */
INL VL FN(mlo)(int64_t r) {
    const VD io = __builtin_convertvector(__builtin_shufflevector((VI){IDX_IOTA}, (VI){IDX_IOTA}, IDX_LO), VD);
    return io < (double)r;
}
INL VL FN(mhi)(int64_t r) {
    const VD io = __builtin_convertvector(__builtin_shufflevector((VI){IDX_IOTA}, (VI){IDX_IOTA}, IDX_HI), VD);
    return io < (double)r;
}

/* ------------------------------------------------------------ math (Cephes single precision, ~1 ulp) */
/* exp: x = n ln2 + r, |r| <= ln2/2; 2^n applied in two steps so that results
 * down to the denormals are right; overflow gives inf, NaN stays NaN. */
INL VF FN(vexp)(VF x) {
    x = FN(sel)(x > 89.0f, FN(splat)(89.0f), x);
    x = FN(sel)(x < -104.0f, FN(splat)(-104.0f), x);
    VF t = x * 1.44269504088896341f;
    VF nf = (t + 12582912.0f) - 12582912.0f; /* round to nearest */
    VF r = x - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    VF p = FN(splat)(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * (r * r) + r + 1.0f;
    VI ni = __builtin_convertvector(FN(sel)(nf == nf, nf, FN(splat)(0.0f)), VI);
    VI n1 = ni / 2, n2 = ni - n1; /* each in [-75, 64] */
    return p * (VF)((n1 + 127) << 23) * (VF)((n2 + 127) << 23);
}

/* natural log; log(0) = -inf, log(x < 0) = NaN, denormals exact. */
INL VF FN(vlog)(VF x) {
    VI den = (x < 1.17549435e-38f) & (x > 0.0f);
    VF xs = FN(sel)(den, x * 8388608.0f, x);
    VI bits = (VI)xs & 0x7fffffff;
    VI e = ((bits >> 23) & 0xff) - 126 - (den & 23);
    VF m = (VF)((bits & 0x007fffff) | 0x3f000000); /* [0.5, 1) */
    VI small = m < 0.707106781186547524f;
    e = e + small; /* -1 where small */
    m = FN(sel)(small, m + m, m) - 1.0f;
    VF z = m * m;
    VF y = FN(splat)(7.0376836292E-2f);
    y = y * m - 1.1514610310E-1f;
    y = y * m + 1.1676998740E-1f;
    y = y * m - 1.2420140846E-1f;
    y = y * m + 1.4249322787E-1f;
    y = y * m - 1.6668057665E-1f;
    y = y * m + 2.0000714765E-1f;
    y = y * m - 2.4999993993E-1f;
    y = y * m + 3.3333331174E-1f;
    y = y * m * z;
    VF ef = __builtin_convertvector(e, VF);
    y = y + ef * -2.12194440e-4f;
    y = y - 0.5f * z;
    VF r = m + y;
    r = r + ef * 0.693359375f;
    r = FN(sel)(x == __builtin_inff(), FN(splat)(__builtin_inff()), r);
    r = FN(sel)(x == 0.0f, FN(splat)(-__builtin_inff()), r);
    return FN(sel)(~(x >= 0.0f), FN(splat)(__builtin_nanf("")), r);
}

INL VF FN(vtanh)(VF x) {
    VF ax = FN(vabs)(x);
    VF e = FN(vexp)(ax + ax);
    VF big = 1.0f - 2.0f / (e + 1.0f);
    big = (VF)((VI)big | ((VI)x & (int32_t)0x80000000));
    VF s = x * x;
    VF p = FN(splat)(-5.70498872745E-3f);
    p = p * s + 2.06390887954E-2f;
    p = p * s - 5.37397155531E-2f;
    p = p * s + 1.33314422036E-1f;
    p = p * s - 3.33332819422E-1f;
    VF small = p * s * x + x;
    small = FN(sel)(x == 0.0f, x, small); /* keeps -0 */
    return FN(sel)(ax > 0.625f, big, small);
}

/* 1/(1+exp(-x)) for x >= 0, exp(x)/(1+exp(x)) below (never overflows). */
INL VF FN(vsigmoid)(VF x) {
    VF e = FN(vexp)(-FN(vabs)(x));
    return FN(sel)(x >= 0.0f, FN(splat)(1.0f), e) / (e + 1.0f);
}

/* log1p(exp(-|x|)) */
INL VF FN(vsoftplus_neg)(VF x) {
    VF e = FN(vexp)(-FN(vabs)(x));
    VF u = e + 1.0f;
    VF d = u - 1.0f;
    VF l = FN(vlog)(u) * e / FN(sel)(d == 0.0f, FN(splat)(1.0f), d);
    return FN(sel)(d == 0.0f, e, l);
}

/* max(log(v), -100) as fmaxf: NaN gives -100 */
INL VF FN(vlogc)(VF v) {
    VF l = FN(vlog)(v);
    return FN(sel)(l > -100.0f, l, FN(splat)(-100.0f));
}
INL VF FN(clamp01)(VF v) {
    v = FN(sel)(v < 0.0f, FN(splat)(0.0f), v);
    return FN(sel)(v > 1.0f, FN(splat)(1.0f), v);
}

/* ------------------------------------------------------------ unary */
INL VF FN(un_f)(int kind, VF v, float p) {
    switch (kind) {
    case DP_EW_RELU: return FN(sel)(v > 0.0f, v, FN(splat)(0.0f));
    case DP_EW_LEAKY_RELU: return FN(sel)(v > 0.0f, v, v * p);
    case DP_EW_SCALE: return v * p;
    case DP_EW_TANH: return FN(vtanh)(v);
    default: return FN(vsigmoid)(v);
    }
}
INL void FN(unary_f_t)(int kind, float *y, const float *x, int64_t n, float p) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) FN(st)(y + i, FN(un_f)(kind, FN(ld)(x + i), p));
    if (i < n) FN(stp)(y + i, FN(un_f)(kind, FN(ldp)(x + i, n - i, 0.0f), p), n - i);
}
KT static void FN(unary_f)(int kind, float *y, const float *x, int64_t n, float p) {
    switch (kind) {
    case DP_EW_RELU: FN(unary_f_t)(DP_EW_RELU, y, x, n, p); break;
    case DP_EW_LEAKY_RELU: FN(unary_f_t)(DP_EW_LEAKY_RELU, y, x, n, p); break;
    case DP_EW_SCALE: FN(unary_f_t)(DP_EW_SCALE, y, x, n, p); break;
    case DP_EW_TANH: FN(unary_f_t)(DP_EW_TANH, y, x, n, p); break;
    default: FN(unary_f_t)(DP_EW_SIGMOID, y, x, n, p); break;
    }
}

/* gy * f' (relu: gy where x > 0, 0 elsewhere) */
INL VF FN(un_term)(int kind, VF gy, VF x, VF y, float p) {
    switch (kind) {
    case DP_EW_RELU: return FN(sel)(x > 0.0f, gy, FN(splat)(0.0f));
    case DP_EW_LEAKY_RELU: return gy * FN(sel)(x > 0.0f, FN(splat)(1.0f), FN(splat)(p));
    case DP_EW_SCALE: return gy * p;
    case DP_EW_TANH: return gy * (1.0f - y * y);
    default: return gy * (y * (1.0f - y));
    }
}
INL void FN(unary_b_t)(int kind, int acc, float *gx, const float *gy, const float *x, const float *y, int64_t n, float p) {
    const int use_x = kind == DP_EW_RELU || kind == DP_EW_LEAKY_RELU, use_y = kind == DP_EW_TANH || kind == DP_EW_SIGMOID;
    const VF z = FN(splat)(0.0f);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF t = FN(un_term)(kind, FN(ld)(gy + i), use_x ? FN(ld)(x + i) : z, use_y ? FN(ld)(y + i) : z, p);
        FN(st)(gx + i, acc ? FN(ld)(gx + i) + t : t);
    }
    if (i < n) {
        int64_t r = n - i;
        VF t = FN(un_term)(kind, FN(ldp)(gy + i, r, 0.0f), use_x ? FN(ldp)(x + i, r, 0.0f) : z, use_y ? FN(ldp)(y + i, r, 0.0f) : z, p);
        FN(stp)(gx + i, acc ? FN(ldp)(gx + i, r, 0.0f) + t : t, r);
    }
}
#define EW_UB(K) acc ? FN(unary_b_t)(K, 1, gx, gy, x, y, n, p) : FN(unary_b_t)(K, 0, gx, gy, x, y, n, p)
KT static void FN(unary_b)(int kind, float *gx, const float *gy, const float *x, const float *y, int64_t n, float p, int acc) {
    switch (kind) {
    case DP_EW_RELU: EW_UB(DP_EW_RELU); break;
    case DP_EW_LEAKY_RELU: EW_UB(DP_EW_LEAKY_RELU); break;
    case DP_EW_SCALE: EW_UB(DP_EW_SCALE); break;
    case DP_EW_TANH: EW_UB(DP_EW_TANH); break;
    default: EW_UB(DP_EW_SIGMOID); break;
    }
}
#undef EW_UB

/* ------------------------------------------------------------ binary */
INL VF FN(bin)(int kind, VF a, VF b) {
    switch (kind) {
    case DP_EW_ADD: return a + b;
    case DP_EW_SUB: return a - b;
    case DP_EW_MUL: return a * b;
    default: return a / b;
    }
}
/* operand rows: stride 1 (a vector per step) or 0 (one value) */
INL VF FN(opnd)(const float *p, int s, int64_t i) { return s ? FN(ld)(p + i) : FN(splat)(p[0]); }
INL VF FN(opndp)(const float *p, int s, int64_t i, int64_t r, float fill) {
    return s ? FN(ldp)(p + i, r, fill) : FN(splat)(p[0]);
}
INL void FN(binary_f_t)(int kind, float *y, const float *a, int sa, const float *b, int sb, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) FN(st)(y + i, FN(bin)(kind, FN(opnd)(a, sa, i), FN(opnd)(b, sb, i)));
    if (i < n)
        FN(stp)(y + i, FN(bin)(kind, FN(opndp)(a, sa, i, n - i, 1.0f), FN(opndp)(b, sb, i, n - i, 1.0f)), n - i);
}
#define EW_BIN_CASES(F_, ...)                                                             \
    switch (kind * 4 + (sa ? 2 : 0) + (sb ? 1 : 0)) {                                     \
    case 0: F_(DP_EW_ADD, __VA_ARGS__, 0, 0); break;                                       \
    case 1: F_(DP_EW_ADD, __VA_ARGS__, 0, 1); break;                                       \
    case 2: F_(DP_EW_ADD, __VA_ARGS__, 1, 0); break;                                       \
    case 3: F_(DP_EW_ADD, __VA_ARGS__, 1, 1); break;                                       \
    case 4: F_(DP_EW_SUB, __VA_ARGS__, 0, 0); break;                                       \
    case 5: F_(DP_EW_SUB, __VA_ARGS__, 0, 1); break;                                       \
    case 6: F_(DP_EW_SUB, __VA_ARGS__, 1, 0); break;                                       \
    case 7: F_(DP_EW_SUB, __VA_ARGS__, 1, 1); break;                                       \
    case 8: F_(DP_EW_MUL, __VA_ARGS__, 0, 0); break;                                       \
    case 9: F_(DP_EW_MUL, __VA_ARGS__, 0, 1); break;                                       \
    case 10: F_(DP_EW_MUL, __VA_ARGS__, 1, 0); break;                                      \
    case 11: F_(DP_EW_MUL, __VA_ARGS__, 1, 1); break;                                      \
    case 12: F_(DP_EW_DIV, __VA_ARGS__, 0, 0); break;                                      \
    case 13: F_(DP_EW_DIV, __VA_ARGS__, 0, 1); break;                                      \
    case 14: F_(DP_EW_DIV, __VA_ARGS__, 1, 0); break;                                      \
    default: F_(DP_EW_DIV, __VA_ARGS__, 1, 1); break;                                      \
    }
#define EW_BF(K, y, a, b, n, SA, SB) FN(binary_f_t)(K, y, a, SA, b, SB, n)
KT static void FN(binary_f)(int kind, float *y, const float *a, int sa, const float *b, int sb, int64_t n) {
    EW_BIN_CASES(EW_BF, y, a, b, n)
}

/* the term added to the gradient of operand wrt (the original expressions,
 * e.g. gb - g * a / (b * b) for div) */
INL VF FN(bin_term)(int kind, int wrt, VF g, VF a, VF b) {
    switch (kind) {
    case DP_EW_ADD: return g;
    case DP_EW_SUB: return wrt ? -g : g;
    case DP_EW_MUL: return wrt ? g * a : g * b;
    default: return wrt ? -(g * a / (b * b)) : g / b;
    }
}
INL void FN(binary_b_t)(int kind, int wrt, float *dst, const float *g, const float *a, int sa, const float *b, int sb,
                        int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF t = FN(bin_term)(kind, wrt, FN(ld)(g + i), FN(opnd)(a, sa, i), FN(opnd)(b, sb, i));
        FN(st)(dst + i, FN(ld)(dst + i) + t); /* d + (-q) rounds as d - q */
    }
    if (i < n) {
        int64_t r = n - i;
        VF t = FN(bin_term)(kind, wrt, FN(ldp)(g + i, r, 0.0f), FN(opndp)(a, sa, i, r, 1.0f), FN(opndp)(b, sb, i, r, 1.0f));
        FN(stp)(dst + i, FN(ldp)(dst + i, r, 0.0f) + t, r);
    }
}
#define EW_BB(K, wrt, dst, g, a, b, n, SA, SB) FN(binary_b_t)(K, wrt, dst, g, a, SA, b, SB, n)
KT static void FN(binary_b)(int kind, int wrt, float *dst, const float *g, const float *a, int sa, const float *b, int sb,
                            int64_t n) {
    if (wrt) {
        EW_BIN_CASES(EW_BB, 1, dst, g, a, b, n)
    } else {
        EW_BIN_CASES(EW_BB, 0, dst, g, a, b, n)
    }
}
INL double FN(binary_bsum_t)(int kind, int wrt, const float *g, const float *a, int sa, const float *b, int sb,
                             int64_t n) {
    VD s0 = {0}, s1 = {0};
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF t = FN(bin_term)(kind, wrt, FN(ld)(g + i), FN(opnd)(a, sa, i), FN(opnd)(b, sb, i));
        s0 += FN(dlo)(t);
        s1 += FN(dhi)(t);
    }
    if (i < n) { /* padding: g = 0, operands 1, so each padded term is 0 */
        int64_t r = n - i;
        VF t = FN(bin_term)(kind, wrt, FN(ldp)(g + i, r, 0.0f), FN(opndp)(a, sa, i, r, 1.0f), FN(opndp)(b, sb, i, r, 1.0f));
        s0 += FN(dlo)(t);
        s1 += FN(dhi)(t);
    }
    return FN(hsum)(s0 + s1);
}
#define EW_BS(K, wrt, out, g, a, b, n, SA, SB) out = FN(binary_bsum_t)(K, wrt, g, a, SA, b, SB, n)
KT static double FN(binary_bsum)(int kind, int wrt, const float *g, const float *a, int sa, const float *b, int sb,
                                 int64_t n) {
    double s;
    if (wrt) {
        EW_BIN_CASES(EW_BS, 1, s, g, a, b, n)
    } else {
        EW_BIN_CASES(EW_BS, 0, s, g, a, b, n)
    }
    return s;
}

/* ------------------------------------------------------------ sums */
KT static double FN(sum)(const float *x, int64_t n) {
    VD s0 = {0}, s1 = {0};
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF v = FN(ld)(x + i);
        s0 += FN(dlo)(v);
        s1 += FN(dhi)(v);
    }
    if (i < n) {
        VF v = FN(ldp)(x + i, n - i, 0.0f);
        s0 += FN(dlo)(v);
        s1 += FN(dhi)(v);
    }
    return FN(hsum)(s0 + s1);
}
KT static void FN(adds)(float *y, float v, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) FN(st)(y + i, FN(ld)(y + i) + v);
    if (i < n) FN(stp)(y + i, FN(ldp)(y + i, n - i, 0.0f) + v, n - i);
}

/* ------------------------------------------------------------ batch norm */
/* moments' accumulators: a = {sum d (lo, hi lanes)}, q = {sum d^2}, d = v - shift; r < VW: only
 * the first r lanes of a tail vector count */
typedef struct FN(mom) {
    VD a0, a1, q0, q1;
} FN(mom);
INL void FN(mom_add)(FN(mom) *m, VF v, double shift, int64_t r) {
    VD d0 = FN(dlo)(v) - shift, d1 = FN(dhi)(v) - shift;
    if (r < VW) d0 = FN(seld)(FN(mlo)(r), d0, (VD){0}), d1 = FN(seld)(FN(mhi)(r), d1, (VD){0});
    m->a0 += d0;
    m->a1 += d1;
    m->q0 += d0 * d0;
    m->q1 += d1 * d1;
}
INL void FN(mom_end)(const FN(mom) *m, double *s1, double *s2) {
    *s1 += FN(hsum)(m->a0 + m->a1);
    *s2 += FN(hsum)(m->q0 + m->q1);
}
KT static void FN(moments)(const float *x, int64_t n, double shift, double *s1, double *s2) {
    FN(mom) m = {{0}, {0}, {0}, {0}};
    int64_t i = 0;
    for (; i + VW <= n; i += VW) FN(mom_add)(&m, FN(ld)(x + i), shift, VW);
    if (i < n) FN(mom_add)(&m, FN(ldp)(x + i, n - i, 0.0f), shift, n - i);
    FN(mom_end)(&m, s1, s2);
}
/* Streaming (non-temporal) stores for outputs too large to stay in cache: a
 * normal store first reads the line it writes (read for ownership), so a
 * stream written and not read back for a while costs twice its size in
 * memory traffic. Whole aligned vectors only; the caller's rows must start on
 * a vector boundary (else plain stores), and stream_end orders them before
 * the stores of other threads that follow. */
INL int FN(nt_ok)(const float *p) { return ((uintptr_t)p % (VW * 4)) == 0; }
INL void FN(st_nt)(float *p, VF v) {
#if VW == 16
    _mm512_stream_ps(p, (__m512)v);
#elif VW == 8
    _mm256_stream_ps(p, (__m256)v);
#else
    FN(st)(p, v);
#endif
}
INL void FN(stream_end)(void) {
#if VW == 16 || VW == 8
    _mm_sfence();
#endif
}
/* y = relu(x) and moments(y, n, shift, s1, s2) in one pass, the same sums in the
 * same order (the relu then the norm's statistics, multi-output pass); nt:
 * y with streaming stores */
KT static void FN(relu_moments)(float *y, const float *x, int64_t n, double shift, double *s1, double *s2, int nt) {
    FN(mom) m = {{0}, {0}, {0}, {0}};
    const VF z = FN(splat)(0.0f);
    nt = nt && FN(nt_ok)(y);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF u = FN(ld)(x + i), v = FN(sel)(u > 0.0f, u, z);
        if (nt) FN(st_nt)(y + i, v);
        else FN(st)(y + i, v);
        FN(mom_add)(&m, v, shift, VW);
    }
    if (i < n) {
        VF u = FN(ldp)(x + i, n - i, 0.0f), v = FN(sel)(u > 0.0f, u, z);
        FN(stp)(y + i, v, n - i);
        FN(mom_add)(&m, v, shift, n - i);
    }
    if (nt) FN(stream_end)();
    FN(mom_end)(&m, s1, s2);
}
/* gx = gy where x > 0, else 0 (unary_b's relu, storing) with streaming stores */
KT static void FN(relu_b_nt)(float *gx, const float *gy, const float *x, int64_t n) {
    if (!FN(nt_ok)(gx)) {
        FN(unary_b_t)(DP_EW_RELU, 0, gx, gy, x, x, n, 0.0f);
        return;
    }
    const VF z = FN(splat)(0.0f);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) FN(st_nt)(gx + i, FN(un_term)(DP_EW_RELU, FN(ld)(gy + i), FN(ld)(x + i), z, 0.0f));
    if (i < n) {
        int64_t r = n - i;
        FN(stp)(gx + i, FN(un_term)(DP_EW_RELU, FN(ldp)(gy + i, r, 0.0f), FN(ldp)(x + i, r, 0.0f), z, 0.0f), r);
    }
    FN(stream_end)();
}
KT static void FN(affine)(float *y, const float *x, int64_t n, float mu, float a, float b) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) FN(st)(y + i, (FN(ld)(x + i) - mu) * a + b);
    if (i < n) FN(stp)(y + i, (FN(ldp)(x + i, n - i, 0.0f) - mu) * a + b, n - i);
}
KT static void FN(bn_bsums)(const float *x, const float *gy, int64_t n, float mu, double *sg, double *sgx) {
    VD g0 = {0}, g1 = {0}, p0 = {0}, p1 = {0};
    const double m = mu;
    int64_t i = 0;
    for (; i + VW <= n; i += VW) { /* padded lanes: gy = 0 */
        VF v = FN(ld)(x + i), g = FN(ld)(gy + i);
        VD gl = FN(dlo)(g), gh = FN(dhi)(g);
        g0 += gl;
        g1 += gh;
        p0 += gl * (FN(dlo)(v) - m);
        p1 += gh * (FN(dhi)(v) - m);
    }
    if (i < n) {
        VF v = FN(ldp)(x + i, n - i, 0.0f), g = FN(ldp)(gy + i, n - i, 0.0f);
        VD gl = FN(dlo)(g), gh = FN(dhi)(g);
        g0 += gl;
        g1 += gh;
        p0 += gl * (FN(dlo)(v) - m);
        p1 += gh * (FN(dhi)(v) - m);
    }
    *sg += FN(hsum)(g0 + g1);
    *sgx += FN(hsum)(p0 + p1);
}
INL VF FN(bn_b1)(VF x, VF gy, float mu, float istd, float a, float mg, float mgx) {
    return a * (gy - mg - (x - mu) * istd * mgx);
}
INL void FN(bn_bapply_t)(int acc, float *gx, const float *x, const float *gy, int64_t n, float mu, float istd, float a, float mg,
                         float mgx) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF t = FN(bn_b1)(FN(ld)(x + i), FN(ld)(gy + i), mu, istd, a, mg, mgx);
        FN(st)(gx + i, acc ? FN(ld)(gx + i) + t : t);
    }
    if (i < n) {
        int64_t r = n - i;
        VF t = FN(bn_b1)(FN(ldp)(x + i, r, 0.0f), FN(ldp)(gy + i, r, 0.0f), mu, istd, a, mg, mgx);
        FN(stp)(gx + i, acc ? FN(ldp)(gx + i, r, 0.0f) + t : t, r);
    }
}
KT static void FN(bn_bapply)(float *gx, const float *x, const float *gy, int64_t n, float mu, float istd, float a, float mg,
                             float mgx, int acc) {
    if (acc) FN(bn_bapply_t)(1, gx, x, gy, n, mu, istd, a, mg, mgx);
    else FN(bn_bapply_t)(0, gx, x, gy, n, mu, istd, a, mg, mgx);
}

/* ------------------------------------------------------------ Adam */
INL VF FN(vsqrt)(VF x) {
#if VW == 16
    return (VF)_mm512_sqrt_ps((__m512)x);
#elif VW == 8
    return (VF)_mm256_sqrt_ps((__m256)x);
#else
    for (int k = 0; k < VW; k++) x[k] = __builtin_sqrtf(x[k]);
    return x;
#endif
}
/* The scalar update's expressions lane by lane (IEEE sqrt and division: the same bits). */
INL void FN(adam_v)(float *p, const float *g, float *m, float *v, int64_t i, int64_t r, float b1, float b2, float eps,
                    float bc2, float ss) {
    const int full = r == VW;
    VF gg = full ? FN(ld)(g + i) : FN(ldp)(g + i, r, 0.0f);
    VF mm = b1 * (full ? FN(ld)(m + i) : FN(ldp)(m + i, r, 0.0f)) + (1.0f - b1) * gg;
    VF vv = b2 * (full ? FN(ld)(v + i) : FN(ldp)(v + i, r, 0.0f)) + (1.0f - b2) * gg * gg;
    VF den = FN(vsqrt)(vv) / bc2 + eps;
    VF pp = (full ? FN(ld)(p + i) : FN(ldp)(p + i, r, 0.0f)) - ss * (mm / den);
    if (full) {
        FN(st)(m + i, mm), FN(st)(v + i, vv), FN(st)(p + i, pp);
    } else {
        FN(stp)(m + i, mm, r), FN(stp)(v + i, vv, r), FN(stp)(p + i, pp, r);
    }
}
KT static void FN(adam)(float *p, const float *g, float *m, float *v, int64_t n, float b1, float b2, float eps, float bc2,
                        float ss) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) FN(adam_v)(p, g, m, v, i, VW, b1, b2, eps, bc2, ss);
    if (i < n) FN(adam_v)(p, g, m, v, i, n - i, b1, b2, eps, bc2, ss);
}

/* ------------------------------------------------------------ batch norm -> activation, fused */
/* The activation (relu or leaky_relu) of the norm's output y = (x - mu) * a + b,
 * recomputed from x with the affine kernel's expression (same bits), and the
 * gradient the activation passes to the norm, g = gz * f'(y) (un_term's bits). */
INL VF FN(bna_y)(VF x, float mu, float a, float b) { return (x - mu) * a + b; }
INL VF FN(bna_g)(int kind, VF x, VF gz, float mu, float a, float b, float p) {
    VF y = FN(bna_y)(x, mu, a, b);
    return FN(un_term)(kind, gz, y, y, p);
}
INL void FN(bn_act_f_t)(int kind, float *y, float *z, const float *x, int64_t n, float mu, float a, float b, float p) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF v = FN(bna_y)(FN(ld)(x + i), mu, a, b);
        FN(st)(y + i, v);
        FN(st)(z + i, FN(un_f)(kind, v, p));
    }
    if (i < n) {
        VF v = FN(bna_y)(FN(ldp)(x + i, n - i, 0.0f), mu, a, b);
        FN(stp)(y + i, v, n - i);
        FN(stp)(z + i, FN(un_f)(kind, v, p), n - i);
    }
}
KT static void FN(bn_act_f)(int kind, float *y, float *z, const float *x, int64_t n, float mu, float a, float b, float p) {
    if (kind == DP_EW_RELU) FN(bn_act_f_t)(DP_EW_RELU, y, z, x, n, mu, a, b, p);
    else FN(bn_act_f_t)(DP_EW_LEAKY_RELU, y, z, x, n, mu, a, b, p);
}
INL void FN(bn_act_bsums_t)(int kind, const float *x, const float *gz, int64_t n, float mu, float a, float b, float p,
                            double *sg, double *sgx) {
    VD g0 = {0}, g1 = {0}, p0 = {0}, p1 = {0};
    const double m = mu;
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF v = FN(ld)(x + i), g = FN(bna_g)(kind, v, FN(ld)(gz + i), mu, a, b, p);
        VD gl = FN(dlo)(g), gh = FN(dhi)(g);
        g0 += gl;
        g1 += gh;
        p0 += gl * (FN(dlo)(v) - m);
        p1 += gh * (FN(dhi)(v) - m);
    }
    if (i < n) { /* padded lanes: gz = 0, so g = 0 (the slope is finite) */
        VF v = FN(ldp)(x + i, n - i, 0.0f), g = FN(bna_g)(kind, v, FN(ldp)(gz + i, n - i, 0.0f), mu, a, b, p);
        VD gl = FN(dlo)(g), gh = FN(dhi)(g);
        g0 += gl;
        g1 += gh;
        p0 += gl * (FN(dlo)(v) - m);
        p1 += gh * (FN(dhi)(v) - m);
    }
    *sg += FN(hsum)(g0 + g1);
    *sgx += FN(hsum)(p0 + p1);
}
KT static void FN(bn_act_bsums)(int kind, const float *x, const float *gz, int64_t n, float mu, float a, float b, float p,
                                double *sg, double *sgx) {
    if (kind == DP_EW_RELU) FN(bn_act_bsums_t)(DP_EW_RELU, x, gz, n, mu, a, b, p, sg, sgx);
    else FN(bn_act_bsums_t)(DP_EW_LEAKY_RELU, x, gz, n, mu, a, b, p, sg, sgx);
}
/* batch = 1: bn_bapply's term of g; 0 (running statistics): g * a, as unary_b's scale */
INL VF FN(bna_b1)(int kind, int batch, VF x, VF gz, float mu, float a, float b, float p, float istd, float mg, float mgx) {
    VF g = FN(bna_g)(kind, x, gz, mu, a, b, p);
    return batch ? FN(bn_b1)(x, g, mu, istd, a, mg, mgx) : g * a;
}
INL void FN(bn_act_bapply_t)(int kind, int batch, int acc, float *gx, const float *x, const float *gz, int64_t n, float mu,
                             float a, float b, float p, float istd, float mg, float mgx) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF t = FN(bna_b1)(kind, batch, FN(ld)(x + i), FN(ld)(gz + i), mu, a, b, p, istd, mg, mgx);
        FN(st)(gx + i, acc ? FN(ld)(gx + i) + t : t);
    }
    if (i < n) {
        int64_t r = n - i;
        VF t = FN(bna_b1)(kind, batch, FN(ldp)(x + i, r, 0.0f), FN(ldp)(gz + i, r, 0.0f), mu, a, b, p, istd, mg, mgx);
        FN(stp)(gx + i, acc ? FN(ldp)(gx + i, r, 0.0f) + t : t, r);
    }
}
#define EW_BNA(K, B, A) FN(bn_act_bapply_t)(K, B, A, gx, x, gz, n, mu, a, b, p, istd, mg, mgx)
#define EW_BNA2(K)                   \
    if (batch) {                     \
        if (acc) EW_BNA(K, 1, 1);    \
        else EW_BNA(K, 1, 0);        \
    } else {                         \
        if (acc) EW_BNA(K, 0, 1);    \
        else EW_BNA(K, 0, 0);        \
    }
KT static void FN(bn_act_bapply)(int kind, int batch, float *gx, const float *x, const float *gz, int64_t n, float mu, float a,
                                 float b, float p, float istd, float mg, float mgx, int acc) {
    if (kind == DP_EW_RELU) {
        EW_BNA2(DP_EW_RELU)
    } else {
        EW_BNA2(DP_EW_LEAKY_RELU)
    }
}
#undef EW_BNA2
#undef EW_BNA

/* ------------------------------------------------------------ max pool, k x k, stride k */
/* The next window value, optionally through relu then the affine map. */
INL VF FN(mp_val)(VF v, int rba, float mu, float a, float b) {
    if (!rba) return v;
    return (FN(sel)(v > 0.0f, v, FN(splat)(0.0f)) - mu) * a + b;
}
/* Column c (< k) of VW windows that start at p (k*VW floats). */
INL VF FN(mp_col)(int k, const float *p, int c) {
    if (k == 2) {
        VF a0 = FN(ld)(p), a1 = FN(ld)(p + VW);
        return c == 0 ? __builtin_shufflevector(a0, a1, IDX_EVEN) : __builtin_shufflevector(a0, a1, IDX_ODD);
    }
    VF a0 = FN(ld)(p), a1 = FN(ld)(p + VW), a2 = FN(ld)(p + 2 * VW), a3 = FN(ld)(p + 3 * VW);
    VF h0 = (c & 1) ? __builtin_shufflevector(a0, a1, IDX_ODD) : __builtin_shufflevector(a0, a1, IDX_EVEN);
    VF h1 = (c & 1) ? __builtin_shufflevector(a2, a3, IDX_ODD) : __builtin_shufflevector(a2, a3, IDX_EVEN);
    return (c & 2) ? __builtin_shufflevector(h0, h1, IDX_ODD) : __builtin_shufflevector(h0, h1, IDX_EVEN);
}
/* VW outputs; rows[r] = the k*VW inputs of window row r. With want = 0 the
 * argmax is not tracked: a NaN still wins (any NaN gives the same value). */
INL void FN(mp_block)(int k, int rba, int want, const float *const *rows, float mu, float a, float b, VF *best, VI *arg) {
    VF m = FN(mp_val)(FN(mp_col)(k, rows[0], 0), rba, mu, a, b);
    VI at = {0};
    for (int r = 0; r < k; r++)
        for (int c = (r == 0); c < k; c++) {
            VF v = FN(mp_val)(FN(mp_col)(k, rows[r], c), rba, mu, a, b);
            if (want) {
                VI u = (v > m) | ((v != v) & (m == m)); /* first maximum; the first NaN wins */
                m = FN(sel)(u, v, m);
                at = FN(seli)(u, (VI){0} + (r * k + c), at);
            } else {
                m = FN(sel)((v > m) | (v != v), v, m);
            }
        }
    *best = m;
    *arg = at;
}
INL void FN(mp_row_t)(int k, int rba, int want, float *y, uint8_t *idx, const float *x, int64_t ldx, int64_t ow,
                      const float *aff) {
    const float mu = rba ? aff[0] : 0.0f, a = rba ? aff[1] : 0.0f, b = rba ? aff[2] : 0.0f;
    int64_t j = 0;
    for (; j + VW <= ow; j += VW) {
        const float *rows[4];
        for (int r = 0; r < k; r++) rows[r] = x + r * ldx + k * j;
        VF m;
        VI at;
        FN(mp_block)(k, rba, want, rows, mu, a, b, &m, &at);
        FN(st)(y + j, m);
        if (want) {
            VB a8 = __builtin_convertvector(at, VB);
            memcpy(idx + j, &a8, VW);
        }
    }
    if (j < ow) { /* the last windows from zero-padded copies of their rows */
        int64_t r_ = ow - j;
        float buf[4][4 * VW];
        const float *rows[4];
        for (int r = 0; r < k; r++) {
            memset(buf[r], 0, sizeof buf[r]);
            memcpy(buf[r], x + r * ldx + k * j, (size_t)(k * r_) * sizeof(float));
            rows[r] = buf[r];
        }
        VF m;
        VI at;
        FN(mp_block)(k, rba, want, rows, mu, a, b, &m, &at);
        FN(stp)(y + j, m, r_);
        if (want) {
            VB a8 = __builtin_convertvector(at, VB);
            memcpy(idx + j, &a8, (size_t)r_);
        }
    }
}
#define EW_MP(K, R) idx ? FN(mp_row_t)(K, R, 1, y, idx, x, ldx, ow, rba) : FN(mp_row_t)(K, R, 0, y, idx, x, ldx, ow, rba)
KT static void FN(maxpool_row)(int k, float *y, uint8_t *idx, const float *x, int64_t ldx, int64_t ow, const float *rba) {
    if (k == 2) {
        if (rba) EW_MP(2, 1);
        else EW_MP(2, 0);
    } else {
        if (rba) EW_MP(4, 1);
        else EW_MP(4, 0);
    }
}
#undef EW_MP

/* Backward: for window row r, the k*VW input gradients of VW windows. */
INL void FN(mpb_row)(int k, int r, VI at, VF g, VF *out) {
    const VF z = FN(splat)(0.0f);
    if (k == 2) {
        VF c0 = FN(sel)(at == r * 2, g, z), c1 = FN(sel)(at == r * 2 + 1, g, z);
        out[0] = __builtin_shufflevector(c0, c1, IDX_ZIPLO);
        out[1] = __builtin_shufflevector(c0, c1, IDX_ZIPHI);
        return;
    }
    VF c0 = FN(sel)(at == r * 4, g, z), c1 = FN(sel)(at == r * 4 + 1, g, z);
    VF c2 = FN(sel)(at == r * 4 + 2, g, z), c3 = FN(sel)(at == r * 4 + 3, g, z);
    /* inverse of mp_col: even/odd halves first, then the columns */
    VF e0 = __builtin_shufflevector(c0, c2, IDX_ZIPLO), e1 = __builtin_shufflevector(c0, c2, IDX_ZIPHI);
    VF o0 = __builtin_shufflevector(c1, c3, IDX_ZIPLO), o1 = __builtin_shufflevector(c1, c3, IDX_ZIPHI);
    out[0] = __builtin_shufflevector(e0, o0, IDX_ZIPLO);
    out[1] = __builtin_shufflevector(e0, o0, IDX_ZIPHI);
    out[2] = __builtin_shufflevector(e1, o1, IDX_ZIPLO);
    out[3] = __builtin_shufflevector(e1, o1, IDX_ZIPHI);
}
INL void FN(mpb_t)(int k, int acc, float *gx, int64_t ldx, const uint8_t *idx, const float *gy, int64_t ow) {
    int64_t j = 0;
    for (; j + VW <= ow; j += VW) {
        VB a8;
        memcpy(&a8, idx + j, VW);
        VI at = __builtin_convertvector(a8, VI);
        VF g = FN(ld)(gy + j);
        for (int r = 0; r < k; r++) {
            VF out[4];
            FN(mpb_row)(k, r, at, g, out);
            float *p = gx + r * ldx + k * j;
            for (int q = 0; q < k; q++) FN(st)(p + q * VW, acc ? FN(ld)(p + q * VW) + out[q] : out[q]);
        }
    }
    if (j < ow) {
        int64_t r_ = ow - j;
        VB a8 = {0};
        memcpy(&a8, idx + j, (size_t)r_);
        VI at = __builtin_convertvector(a8, VI);
        VF g = FN(ldp)(gy + j, r_, 0.0f);
        for (int r = 0; r < k; r++) {
            VF out[4];
            float buf[4 * VW];
            FN(mpb_row)(k, r, at, g, out);
            for (int q = 0; q < k; q++) FN(st)(buf + q * VW, out[q]);
            float *p = gx + r * ldx + k * j;
            for (int64_t e = 0; e < k * r_; e++) p[e] = acc ? p[e] + buf[e] : buf[e];
        }
    }
}
KT static void FN(maxpool_row_b)(int k, float *gx, int64_t ldx, const uint8_t *idx, const float *gy, int64_t ow, int acc) {
    if (k == 2) {
        if (acc) FN(mpb_t)(2, 1, gx, ldx, idx, gy, ow);
        else FN(mpb_t)(2, 0, gx, ldx, idx, gy, ow);
    } else {
        if (acc) FN(mpb_t)(4, 1, gx, ldx, idx, gy, ow);
        else FN(mpb_t)(4, 0, gx, ldx, idx, gy, ow);
    }
}

/* ------------------------------------------------------------ losses */
/* Per-element loss terms in double, from the two halves of a float vector. */
INL void FN(loss_terms)(int kind, VF x, VF t, VD *lo, VD *hi) {
    VD xl = FN(dlo)(x), xh = FN(dhi)(x), tl = FN(dlo)(t), th = FN(dhi)(t);
    switch (kind) {
    case DP_EW_BCE_LOGITS: {
        VF sp = FN(vsoftplus_neg)(x), mx = FN(sel)(x > 0.0f, x, FN(splat)(0.0f));
        *lo = FN(dlo)(mx) - xl * tl + FN(dlo)(sp);
        *hi = FN(dhi)(mx) - xh * th + FN(dhi)(sp);
        return;
    }
    case DP_EW_BCE: {
        VF p = FN(clamp01)(x);
        VF l1 = FN(vlogc)(p), l0 = FN(vlogc)(1.0f - p);
        *lo = -(tl * FN(dlo)(l1) + (1.0 - tl) * FN(dlo)(l0));
        *hi = -(th * FN(dhi)(l1) + (1.0 - th) * FN(dhi)(l0));
        return;
    }
    case DP_EW_MSE:
        *lo = (xl - tl) * (xl - tl);
        *hi = (xh - th) * (xh - th);
        return;
    default: {
        VD dl = xl - tl, dh = xh - th;
        *lo = (VD)((VL)dl & INT64_MAX);
        *hi = (VD)((VL)dh & INT64_MAX);
        return;
    }
    }
}
INL double FN(loss_f_t)(int kind, const float *a, const float *t, int64_t n) {
    VD s0 = {0}, s1 = {0};
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VD lo, hi;
        FN(loss_terms)(kind, FN(ld)(a + i), FN(ld)(t + i), &lo, &hi);
        s0 += lo;
        s1 += hi;
    }
    if (i < n) {
        int64_t r = n - i;
        VD lo, hi;
        FN(loss_terms)(kind, FN(ldp)(a + i, r, 0.5f), FN(ldp)(t + i, r, 0.5f), &lo, &hi);
        s0 += FN(seld)(FN(mlo)(r), lo, (VD){0});
        s1 += FN(seld)(FN(mhi)(r), hi, (VD){0});
    }
    return FN(hsum)(s0 + s1);
}
KT static double FN(loss_f)(int kind, const float *a, const float *t, int64_t n) {
    switch (kind) {
    case DP_EW_BCE_LOGITS: return FN(loss_f_t)(DP_EW_BCE_LOGITS, a, t, n);
    case DP_EW_BCE: return FN(loss_f_t)(DP_EW_BCE, a, t, n);
    case DP_EW_MSE: return FN(loss_f_t)(DP_EW_MSE, a, t, n);
    default: return FN(loss_f_t)(DP_EW_L1, a, t, n);
    }
}
INL void FN(loss_d)(int kind, VF x, VF t, VF *da, VF *db) {
    switch (kind) {
    case DP_EW_BCE_LOGITS:
        *da = FN(vsigmoid)(x) - t;
        *db = -x;
        return;
    case DP_EW_BCE: {
        VF p = FN(clamp01)(x), q = p * (1.0f - p);
        *da = (p - t) / FN(sel)(q > 1e-12f, q, FN(splat)(1e-12f)); /* fmaxf: NaN gives the guard */
        *db = FN(vlogc)(1.0f - p) - FN(vlogc)(p);
        return;
    }
    case DP_EW_MSE:
        *da = 2.0f * (x - t);
        *db = -*da;
        return;
    default: {
        const VF z = FN(splat)(0.0f);
        *da = FN(sel)(x > t, FN(splat)(1.0f), FN(sel)(x < t, FN(splat)(-1.0f), z));
        *db = -*da;
        return;
    }
    }
}
INL void FN(loss_b_t)(int kind, float *ga, float *gb, const float *a, const float *t, int64_t n, float s) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        VF da, db;
        FN(loss_d)(kind, FN(ld)(a + i), FN(ld)(t + i), &da, &db);
        if (ga) FN(st)(ga + i, FN(ld)(ga + i) + s * da);
        if (gb) FN(st)(gb + i, FN(ld)(gb + i) + s * db);
    }
    if (i < n) {
        int64_t r = n - i;
        VF da, db;
        FN(loss_d)(kind, FN(ldp)(a + i, r, 0.5f), FN(ldp)(t + i, r, 0.5f), &da, &db);
        if (ga) FN(stp)(ga + i, FN(ldp)(ga + i, r, 0.0f) + s * da, r);
        if (gb) FN(stp)(gb + i, FN(ldp)(gb + i, r, 0.0f) + s * db, r);
    }
}
KT static void FN(loss_b)(int kind, float *ga, float *gb, const float *a, const float *t, int64_t n, float s) {
    switch (kind) {
    case DP_EW_BCE_LOGITS: FN(loss_b_t)(DP_EW_BCE_LOGITS, ga, gb, a, t, n, s); break;
    case DP_EW_BCE: FN(loss_b_t)(DP_EW_BCE, ga, gb, a, t, n, s); break;
    case DP_EW_MSE: FN(loss_b_t)(DP_EW_MSE, ga, gb, a, t, n, s); break;
    default: FN(loss_b_t)(DP_EW_L1, ga, gb, a, t, n, s); break;
    }
}

static const dp_ew_kernels FN(ew_table) = {
    EW_NAME,       FN(unary_f),     FN(unary_b),  FN(binary_f),  FN(binary_b), FN(binary_bsum),
    FN(sum),       FN(adds),        FN(moments),  FN(affine),    FN(bn_bsums), FN(bn_bapply),
    FN(maxpool_row), FN(maxpool_row_b), FN(loss_f), FN(loss_b),
    FN(bn_act_f),  FN(bn_act_bsums), FN(bn_act_bapply), FN(adam), FN(relu_moments), FN(relu_b_nt),
};

#undef EW_BF
#undef EW_BB
#undef EW_BS
#undef EW_BIN_CASES
#undef VF
#undef VI
#undef VD
#undef VL
#undef VB
#undef FN
#undef INL
