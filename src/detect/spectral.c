/* The spectral detector's features (Durall et al., "Watch your up-convolution",
 * CVPR 2020): the azimuthal average of the log power spectrum of the grey
 * crop. The 2-D DFT is done separably with a cosine/sine table: at 64 px it
 * is 2·64 one-dimensional DFTs of length 64, about half a million
 * multiply-adds. */
#include <math.h>
#include <string.h>

#include "core/internal.h"
#include "doppel/detect.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

int dp_spectral_count(int side) { return side / 2; }

dp_status dp_spectral_features(dp_ctx *ctx, const dp_image *crop, float *feat, int n_feat) {
    if (!crop || !crop->data || !feat) return dp_error(ctx, DP_ERR_NULL, "dp_spectral_features: NULL argument");
    int N = crop->width;
    if (crop->height != N || N < 8 || N > 2 * DP_SPECTRAL_MAX || N % 2)
        return dp_error(ctx, DP_ERR_ARG, "dp_spectral_features: the crop must be square with an even side in 8..%d, got %dx%d",
                        2 * DP_SPECTRAL_MAX, crop->height, crop->width);
    if (n_feat != N / 2)
        return dp_error(ctx, DP_ERR_ARG, "dp_spectral_features: %d features asked, a %d px crop gives %d", n_feat, N, N / 2);
    size_t NN = (size_t)N * N;
    double *buf = dp_malloc(ctx, sizeof(double) * (NN * 5 + 2 * (size_t)N));
    if (!buf) return dp_error(ctx, DP_ERR_NOMEM, "dp_spectral_features: out of memory");
    double *g = buf, *re = g + NN, *im = re + NN, *cs = im + NN, *sn = cs + NN, *win = sn + NN;
    (void)win;
    /* grey, mean removed, Hann window */
    double mean = 0;
    const float *R = crop->data, *G = crop->channels == 3 ? R + NN : R, *B = crop->channels == 3 ? R + 2 * NN : R;
    for (size_t i = 0; i < NN; i++) {
        g[i] = 0.299 * R[i] + 0.587 * G[i] + 0.114 * B[i];
        mean += g[i];
    }
    mean /= (double)NN;
    double *hann = win;
    for (int i = 0; i < N; i++) hann[i] = 0.5 - 0.5 * cos(2.0 * M_PI * (i + 0.5) / N);
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) g[(size_t)y * N + x] = (g[(size_t)y * N + x] - mean) * hann[y] * hann[x];
    for (int k = 0; k < N; k++)
        for (int n = 0; n < N; n++) {
            double a = -2.0 * M_PI * (double)((k * n) % N) / N;
            cs[(size_t)k * N + n] = cos(a);
            sn[(size_t)k * N + n] = sin(a);
        }
    /* rows: T[y][k] = sum_x g[y][x] e^{-i2pi kx/N} (into re/im) */
    for (int y = 0; y < N; y++)
        for (int k = 0; k < N; k++) {
            double sr = 0, si = 0;
            const double *gr = g + (size_t)y * N, *c = cs + (size_t)k * N, *s = sn + (size_t)k * N;
            for (int x = 0; x < N; x++) {
                sr += gr[x] * c[x];
                si += gr[x] * s[x];
            }
            re[(size_t)y * N + k] = sr;
            im[(size_t)y * N + k] = si;
        }
    /* columns: F[l][k] = sum_y T[y][k] e^{-i2pi ly/N}; power into g */
    for (int l = 0; l < N; l++) {
        const double *c = cs + (size_t)l * N, *s = sn + (size_t)l * N;
        for (int k = 0; k < N; k++) {
            double fr = 0, fi = 0;
            for (int y = 0; y < N; y++) {
                double tr = re[(size_t)y * N + k], ti = im[(size_t)y * N + k];
                fr += tr * c[y] - ti * s[y];
                fi += tr * s[y] + ti * c[y];
            }
            g[(size_t)l * N + k] = log(fr * fr + fi * fi + 1e-8);
        }
    }
    /* azimuthal average over rings r = 1..N/2 (frequencies folded to -N/2..N/2) */
    double acc[DP_SPECTRAL_MAX + 1];
    int cnt[DP_SPECTRAL_MAX + 1];
    memset(acc, 0, sizeof acc);
    memset(cnt, 0, sizeof cnt);
    int half = N / 2;
    for (int l = 0; l < N; l++) {
        int fy = l <= half ? l : l - N;
        for (int k = 0; k < N; k++) {
            int fx = k <= half ? k : k - N;
            int r = (int)lround(sqrt((double)fx * fx + (double)fy * fy));
            if (r < 1 || r > half) continue;
            acc[r] += g[(size_t)l * N + k];
            cnt[r]++;
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
