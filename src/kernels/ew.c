/* The element-wise kernel tables (kernels/ew.h): ew_body.h compiled once per
 * instruction set. Floating-point contraction is off here (as GCC's default
 * in ISO C mode), so every table rounds the same expressions the same way. */
#include "kernels/ew.h"

#include <string.h>

#include "kernels/gemm.h"

int64_t dp_stream_bytes = DP_STREAM_BYTES;

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

/* ------------------------------------------------------------ portable: 4 lanes (SSE2, NEON, or scalar code) */
#define VW 4
#define SFX _c
#define KT
#define EW_NAME "portable"
#define IDX_IOTA 0, 1, 2, 3
#define IDX_LO 0, 1
#define IDX_HI 2, 3
#define IDX_EVEN 0, 2, 4, 6
#define IDX_ODD 1, 3, 5, 7
#define IDX_ZIPLO 0, 4, 1, 5
#define IDX_ZIPHI 2, 6, 3, 7
#include "kernels/ew_body.h"
#undef VW
#undef SFX
#undef KT
#undef EW_NAME
#undef IDX_IOTA
#undef IDX_LO
#undef IDX_HI
#undef IDX_EVEN
#undef IDX_ODD
#undef IDX_ZIPLO
#undef IDX_ZIPHI

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DP_PORTABLE)
#include <immintrin.h>
#define DP_EW_X86 1
/* ------------------------------------------------------------ AVX2 + FMA: 8 lanes */
#define VW 8
#define SFX _256
#define KT __attribute__((target("avx2,fma")))
#define EW_NAME "avx2"
#define IDX_IOTA 0, 1, 2, 3, 4, 5, 6, 7
#define IDX_LO 0, 1, 2, 3
#define IDX_HI 4, 5, 6, 7
#define IDX_EVEN 0, 2, 4, 6, 8, 10, 12, 14
#define IDX_ODD 1, 3, 5, 7, 9, 11, 13, 15
#define IDX_ZIPLO 0, 8, 1, 9, 2, 10, 3, 11
#define IDX_ZIPHI 4, 12, 5, 13, 6, 14, 7, 15
#include "kernels/ew_body.h"
#undef VW
#undef SFX
#undef KT
#undef EW_NAME
#undef IDX_IOTA
#undef IDX_LO
#undef IDX_HI
#undef IDX_EVEN
#undef IDX_ODD
#undef IDX_ZIPLO
#undef IDX_ZIPHI

/* ------------------------------------------------------------ AVX-512F: 16 lanes */
#define VW 16
#define SFX _512
#define KT __attribute__((target("avx512f,fma")))
#define EW_NAME "avx512"
#define IDX_IOTA 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
#define IDX_LO 0, 1, 2, 3, 4, 5, 6, 7
#define IDX_HI 8, 9, 10, 11, 12, 13, 14, 15
#define IDX_EVEN 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define IDX_ODD 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#define IDX_ZIPLO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define IDX_ZIPHI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#include "kernels/ew_body.h"
#endif

const dp_ew_kernels *dp_ew_level(int level) {
#ifdef DP_EW_X86
    if (level == 2) return &ew_table_512;
    if (level == 1) return &ew_table_256;
#endif
    return level == 0 ? &ew_table_c : NULL;
}

const dp_ew_kernels *dp_ew(void) {
    const dp_ew_kernels *k = dp_ew_level(dp_kernel_level());
    return k ? k : &ew_table_c;
}
