/* The spectral detector's features (Durall et al., "Watch your up-convolution",
 * CVPR 2020): the azimuthal average of the log power spectrum of the grey
 * crop. The 2-D DFT is done separably with a cosine/sine table (N values,
 * looked up by k·n mod N). The crop is real, so its spectrum is conjugate-
 * symmetric, F(-l,-k) = conj F(l,k): only the columns k = 0..N/2 are computed
 * and the others are counted through their mirror (same ring, same power).
 * At 48 px that is 48 row DFTs and 25 column DFTs of length 48, the inner
 * loops running along contiguous rows two doubles at a time; every sum keeps
 * the order of the plain textbook loops (tests/test_spectral.c holds that
 * reference: equal within 1e-9). */
#include <math.h>
#include <string.h>

#include "core/internal.h"
#include "doppel/detect.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

typedef double v2d __attribute__((vector_size(16)));

int dp_spectral_count(int side) { return side / 2; }

dp_status dp_spectral_features(dp_ctx *ctx, const dp_image *crop, float *feat, int n_feat) {
    if (!crop || !crop->data || !feat) return dp_error(ctx, DP_ERR_NULL, "dp_spectral_features: NULL argument");
    int N = crop->width;
    if (crop->height != N || N < 8 || N > 2 * DP_SPECTRAL_MAX || N % 2)
        return dp_error(ctx, DP_ERR_ARG, "dp_spectral_features: the crop must be square with an even side in 8..%d, got %dx%d",
                        2 * DP_SPECTRAL_MAX, crop->height, crop->width);
    if (n_feat != N / 2)
        return dp_error(ctx, DP_ERR_ARG, "dp_spectral_features: %d features asked, a %d px crop gives %d", n_feat, N, N / 2);
    const int half = N / 2, K = half + 1, KP = (K + 1) & ~1; /* columns kept, padded to whole v2d */
    const size_t NN = (size_t)N * N, NK = (size_t)N * KP;
    /* g: N*N; re, im (row DFTs), fr, fi (the column DFTs' accumulators): N*KP each; cs, sn: N*N; c1, s1, hann: N */
    double *buf = dp_malloc(ctx, sizeof(double) * (NN * 3 + NK * 2 + (size_t)KP * 2 + 3 * (size_t)N));
    if (!buf) return dp_error(ctx, DP_ERR_NOMEM, "dp_spectral_features: out of memory");
    double *g = buf, *cs = g + NN, *sn = cs + NN, *re = sn + NN, *im = re + NK, *fr = im + NK, *fi = fr + KP,
           *c1 = fi + KP, *s1 = c1 + N, *hann = s1 + N;
    /* grey, mean removed, Hann window */
    double mean = 0;
    const float *R = crop->data, *G = crop->channels == 3 ? R + NN : R, *B = crop->channels == 3 ? R + 2 * NN : R;
    for (size_t i = 0; i < NN; i++) {
        g[i] = 0.299 * R[i] + 0.587 * G[i] + 0.114 * B[i];
        mean += g[i];
    }
    mean /= (double)NN;
    for (int i = 0; i < N; i++) hann[i] = 0.5 - 0.5 * cos(2.0 * M_PI * (i + 0.5) / N);
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) g[(size_t)y * N + x] = (g[(size_t)y * N + x] - mean) * hann[y] * hann[x];
    /* e^{-i2pi m/N}, m = 0..N-1; the table entry (k, n) is m = k·n mod N (symmetric in k and n) */
    for (int m = 0; m < N; m++) {
        double a = -2.0 * M_PI * (double)m / N;
        c1[m] = cos(a);
        s1[m] = sin(a);
    }
    for (int k = 0; k < N; k++)
        for (int n = 0; n < N; n++) {
            int m = (k * n) % N;
            cs[(size_t)k * N + n] = c1[m];
            sn[(size_t)k * N + n] = s1[m];
        }
    /* rows: T[y][k] = sum_x g[y][x] e^{-i2pi kx/N}, k = 0..KP-1 (vectors along k; sums over x in order) */
    for (int y = 0; y < N; y++) {
        v2d *tr = (v2d *)(re + (size_t)y * KP), *ti = (v2d *)(im + (size_t)y * KP);
        for (int j = 0; j < KP / 2; j++) tr[j] = ti[j] = (v2d){0, 0};
        const double *gr = g + (size_t)y * N;
        for (int x = 0; x < N; x++) {
            const v2d gx = {gr[x], gr[x]};
            const double *c = cs + (size_t)x * N, *s = sn + (size_t)x * N;
            for (int j = 0; j < KP / 2; j++) {
                v2d cv, sv;
                memcpy(&cv, c + 2 * j, sizeof cv);
                memcpy(&sv, s + 2 * j, sizeof sv);
                tr[j] += gx * cv;
                ti[j] += gx * sv;
            }
        }
    }
    /* columns: F[l][k] = sum_y T[y][k] e^{-i2pi ly/N}; the log power of each (l, k) goes to its ring, twice for
     * 0 < k < N/2 (the mirror (-l, -k) is a column not computed, with the same power and radius) */
    double acc[DP_SPECTRAL_MAX + 1];
    int cnt[DP_SPECTRAL_MAX + 1];
    memset(acc, 0, sizeof acc);
    memset(cnt, 0, sizeof cnt);
    for (int l = 0; l < N; l++) {
        v2d *vr = (v2d *)fr, *vi = (v2d *)fi;
        for (int j = 0; j < KP / 2; j++) vr[j] = vi[j] = (v2d){0, 0};
        const double *c = cs + (size_t)l * N, *s = sn + (size_t)l * N;
        for (int y = 0; y < N; y++) {
            const v2d cy = {c[y], c[y]}, sy = {s[y], s[y]};
            const v2d *tr = (const v2d *)(re + (size_t)y * KP), *ti = (const v2d *)(im + (size_t)y * KP);
            for (int j = 0; j < KP / 2; j++) {
                vr[j] += tr[j] * cy - ti[j] * sy;
                vi[j] += tr[j] * sy + ti[j] * cy;
            }
        }
        int fy = l <= half ? l : l - N;
        for (int k = 0; k < K; k++) {
            int r = (int)lround(sqrt((double)k * k + (double)fy * fy));
            if (r < 1 || r > half) continue;
            double p = log(fr[k] * fr[k] + fi[k] * fi[k] + 1e-8);
            int w = k == 0 || k == half ? 1 : 2;
            acc[r] += w * p;
            cnt[r] += w;
        }
    }
    double m = 0;
    for (int r = 1; r <= half; r++) {
        acc[r] = cnt[r] ? acc[r] / cnt[r] : 0;
        m += acc[r];
    }
    m /= half;
    for (int r = 1; r <= half; r++) feat[r - 1] = (float)(acc[r] - m);
    dp_free(ctx, buf);
    return DP_OK;
}
