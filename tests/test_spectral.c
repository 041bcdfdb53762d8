/* dp_spectral_features (src/detect/spectral.c) against the textbook
 * computation it replaced: the full N x N DFT with a cos/sin table per call,
 * power of every frequency, azimuthal average. The fast path computes half
 * the spectrum (real input) with vector loops; the features must agree within
 * 1e-9 on grey and colour crops of every shape the detectors use, and on odd
 * multiples of 2 (N/2 odd). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "doppel/detect.h"
#include "doppel/doppel.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* The reference: what spectral.c computed before (session 3), in the same order. */
static void reference(const dp_image *crop, double *feat) {
    int N = crop->width, half = N / 2;
    size_t NN = (size_t)N * N;
    double *g = malloc(sizeof(double) * NN * 5), *re = g + NN, *im = re + NN, *cs = im + NN, *sn = cs + NN;
    assert_non_null(g);
    double mean = 0;
    const float *R = crop->data, *G = crop->channels == 3 ? R + NN : R, *B = crop->channels == 3 ? R + 2 * NN : R;
    for (size_t i = 0; i < NN; i++) {
        g[i] = 0.299 * R[i] + 0.587 * G[i] + 0.114 * B[i];
        mean += g[i];
    }
    mean /= (double)NN;
    double hann[256];
    for (int i = 0; i < N; i++) hann[i] = 0.5 - 0.5 * cos(2.0 * M_PI * (i + 0.5) / N);
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) g[(size_t)y * N + x] = (g[(size_t)y * N + x] - mean) * hann[y] * hann[x];
    for (int k = 0; k < N; k++)
        for (int n = 0; n < N; n++) {
            double a = -2.0 * M_PI * (double)((k * n) % N) / N;
            cs[(size_t)k * N + n] = cos(a);
            sn[(size_t)k * N + n] = sin(a);
        }
    for (int y = 0; y < N; y++)
        for (int k = 0; k < N; k++) {
            double sr = 0, si = 0;
            for (int x = 0; x < N; x++) {
                sr += g[(size_t)y * N + x] * cs[(size_t)k * N + x];
                si += g[(size_t)y * N + x] * sn[(size_t)k * N + x];
            }
            re[(size_t)y * N + k] = sr;
            im[(size_t)y * N + k] = si;
        }
    for (int l = 0; l < N; l++)
        for (int k = 0; k < N; k++) {
            double fr = 0, fi = 0;
            for (int y = 0; y < N; y++) {
                double tr = re[(size_t)y * N + k], ti = im[(size_t)y * N + k];
                fr += tr * cs[(size_t)l * N + y] - ti * sn[(size_t)l * N + y];
                fi += tr * sn[(size_t)l * N + y] + ti * cs[(size_t)l * N + y];
            }
            g[(size_t)l * N + k] = log(fr * fr + fi * fi + 1e-8);
        }
    double acc[129] = {0};
    int cnt[129] = {0};
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
    for (int r = 1; r <= half; r++) feat[r - 1] = acc[r] - m;
    free(g);
}

static void against_reference(void **state) {
    (void)state;
    dp_ctx *ctx;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx), DP_OK);
    static const int sides[] = {8, 10, 14, 32, 48, 64, 96, 130, 256};
    dp_rng rng;
    dp_rng_stream(&rng, 7, 0);
    for (size_t si = 0; si < sizeof sides / sizeof sides[0]; si++)
        for (int ch = 1; ch <= 3; ch += 2) {
            int N = sides[si];
            dp_image im;
            assert_int_equal(dp_image_alloc(ctx, ch, N, N, &im), DP_OK);
            /* a face-like blob, a stripe pattern and noise: every ring gets power */
            for (int c = 0; c < ch; c++)
                for (int y = 0; y < N; y++)
                    for (int x = 0; x < N; x++) {
                        double dx = (x - N * 0.45) / N, dy = (y - N * 0.55) / N;
                        im.data[((size_t)c * N + y) * N + x] =
                            (float)(0.4 * exp(-8 * (dx * dx + dy * dy)) + 0.1 * cos(0.9 * x + 0.3 * y + c) +
                                    0.2 * dp_rng_uniform(&rng));
                    }
            float f[128];
            double ref[128];
            assert_int_equal(dp_spectral_features(ctx, &im, f, N / 2), DP_OK);
            reference(&im, ref);
            double worst = 0;
            for (int i = 0; i < N / 2; i++) {
                double d = fabs((double)f[i] - ref[i]);
                if (d > worst) worst = d;
                /* both are float features of the same double values: within float rounding of the reference */
                assert_true(d <= 1e-9 + 1e-6 * fabs(ref[i]));
            }
            print_message("side %3d, %d channel(s): largest difference from the reference %.3g\n", N, ch, worst);
            dp_image_free(ctx, &im);
        }
    dp_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(against_reference)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
