/* The FMA peak of this machine, as doppel bench's %peak column would want it:
 * T threads, each 24 independent FMA chains (enough to cover the latency of
 * two FMA units): AVX-512 (32 flops per FMA) where the CPU has it, else AVX2
 * (16 flops). Not part of the build:
 *   cc -O2 -pthread -o /tmp/fma_peak bench/fma_peak.c && /tmp/fma_peak 2
 * Measured 2026-11-28 (docs/bench.md, session 7): 169-173 GFLOP/s on 1 thread,
 * 322-341 on 2, on the shared 2-vCPU Xeon VM; session 8, on a 2-vCPU AMD EPYC
 * (Zen 3, AVX2 only): see docs/bench.md. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static volatile float sink;

__attribute__((target("avx2,fma"))) static void *run_avx2(void *arg) {
    long iters = *(const long *)arg;
    __m256 a[24], b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
    for (int i = 0; i < 24; i++) a[i] = _mm256_set1_ps((float)i * 0.001f);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 24; i++) s = _mm256_add_ps(s, a[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    sink = v[0] + v[7];
    return NULL;
}

__attribute__((target("avx512f,fma"))) static void *run(void *arg) {
    long iters = *(const long *)arg;
    __m512 a[24], b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(0.0001f);
    for (int i = 0; i < 24; i++) a[i] = _mm512_set1_ps((float)i * 0.001f);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    float s = 0.0f;
    for (int i = 0; i < 24; i++) s += _mm512_reduce_add_ps(a[i]);
    sink = s;
    return NULL;
}

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 1;
    if (T < 1 || T > 64) T = 1;
    long iters = 50000000;
    pthread_t th[64];
    const int wide = __builtin_cpu_supports("avx512f");
    double t0 = now();
    for (int i = 0; i < T; i++) pthread_create(&th[i], NULL, wide ? run : run_avx2, &iters);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    double dt = now() - t0;
    printf("%d threads, %s: %.1f GFLOP/s\n", T, wide ? "AVX-512" : "AVX2", (double)T * (double)iters * 24.0 * (wide ? 32.0 : 16.0) / dt / 1e9);
    return 0;
}
