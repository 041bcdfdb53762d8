/* The FMA peak of this machine, as doppel bench's %peak column would want it:
 * T threads, each 24 independent AVX-512 FMA chains (enough to cover the
 * latency of two FMA units), 32 flops per FMA. Not part of the build:
 *   cc -O2 -pthread -o /tmp/fma_peak bench/fma_peak.c && /tmp/fma_peak 2
 * Measured 2026-11-28 (docs/bench.md, session 7): 169-173 GFLOP/s on 1 thread,
 * 322-341 on 2, on the shared 2-vCPU Xeon VM. */
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
    double t0 = now();
    for (int i = 0; i < T; i++) pthread_create(&th[i], NULL, run, &iters);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    double dt = now() - t0;
    printf("%d threads: %.1f GFLOP/s\n", T, (double)T * (double)iters * 24.0 * 32.0 / dt / 1e9);
    return 0;
}
