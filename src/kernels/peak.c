/* The FMA peak (peak.h): what the hardware can do at all, so that a
 * workload's share of it is measured on the machine the bench runs on, not
 * taken from another one. */
#include "kernels/peak.h"

#include <pthread.h>
#include <time.h>

#include "kernels/gemm.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DP_PORTABLE)
#include <immintrin.h>
#define DP_PEAK_X86 1

/* 24 chains cover two FMA units' latency; the result is kept (sink) so the
 * loop is not removed. */
__attribute__((target("avx512f,fma"))) static float chains512(long iters) {
    __m512 a[24], b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(0.0001f);
    for (int i = 0; i < 24; i++) a[i] = _mm512_set1_ps((float)i * 0.001f);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float chains256(long iters) {
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
    return v[0] + v[7];
}

typedef struct burst {
    int wide;
    long iters;
    float sink;
} burst;

static void *run_burst(void *arg) {
    burst *b = arg;
    b->sink = b->wide ? chains512(b->iters) : chains256(b->iters);
    return NULL;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
#endif

double dp_fma_peak_gflops(int threads, const char **what) {
    if (what) *what = "none";
#ifdef DP_PEAK_X86
    int level = dp_kernel_level();
    if (level < 1 || threads < 1) return 0.0;
    if (threads > 256) threads = 256;
    int wide = level == 2;
    if (what) *what = wide ? "AVX-512" : "AVX2";
    const long iters = wide ? 1000000 : 2000000; /* ~20 ms at a few GHz */
    const double flops = (double)iters * 24.0 * (wide ? 32.0 : 16.0);
    pthread_t th[256];
    burst b[256];
    double best = 0.0, one = 0.0, start = now_s();
    /* Bursts for ~2 s after a first one that wakes the cores, alternately
     * on all threads and on this one alone: the peak is the larger of the
     * best all-thread burst and threads x the best one-thread burst. On a
     * shared VM a vCPU may be descheduled for 100 ms and more (seen: seven
     * all-thread bursts in a row at a half or a third of the rate, and a
     * workload then above 100 % of such a "peak"). */
    for (int rep = 0; rep < 128 && now_s() - start < 2.0; rep++) {
        int n = rep % 2 ? 1 : threads, started = 0;
        double t0 = now_s();
        for (int i = 0; i < n; i++) {
            b[i].wide = wide, b[i].iters = iters;
            if (i == 0 || pthread_create(&th[i], NULL, run_burst, &b[i]) == 0) started = i + 1;
            else break;
        }
        run_burst(&b[0]); /* this thread is the first */
        for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
        double dt = now_s() - t0, g = (double)started * flops / dt * 1e-9;
        if (rep < 2 || started != n) continue;
        if (n == 1 && g > one) one = g;
        if (n == threads && g > best) best = g;
    }
    if (one * threads > best) best = one * threads;
    return best;
#else
    (void)threads;
    return 0.0;
#endif
}
