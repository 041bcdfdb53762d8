/* Dumps what tools/gan_gp_vs_torch.py compares: a WGAN-GP trainer's D (a
 * checkpoint), a batch x̂, and the trainer's penalty gradient with respect to
 * D's parameters for several finite-difference steps (docs/gan.md, "WGAN-GP").
 *
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc tools/gan_gp_dump.c build/libdoppel.a \
 *      $(pkg-config --libs libpng libjpeg libwebp libcjson hdf5 zlib libxml-2.0) -lm -lpthread -o gan_gp_dump
 *   ./gan_gp_dump OUTDIR [dcgan28|dcgan64] [steps]
 *   /usr/bin/python3 tools/gan_gp_vs_torch.py OUTDIR
 *
 * Writes OUTDIR/d.safetensors, OUTDIR/xhat.f32 ([8,C,H,W] float32) and
 * OUTDIR/grads.f32 (one row of D's trainable parameters, in paramset order, per
 * step in OUTDIR/deltas.txt). */
#include <stdio.h>
#include <stdlib.h>

#include "gan/gan_internal.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUTDIR [dcgan28|dcgan64] [steps]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    dp_gan_arch arch = DP_GAN_DCGAN28;
    if (argc > 2 && !dp_gan_arch_parse(argv[2], &arch)) return 2;
    int steps = argc > 3 ? atoi(argv[3]) : 20, B = 8, C, H, W;
    dp_gan_arch_shape(arch, &C, &H, &W);
    int per = C * H * W;
    dp_ctx *ctx;
    if (dp_ctx_new(&(dp_ctx_opts){.threads = 2, .seed = 1}, &ctx)) return 1;
    dp_dataset ds = {0};
    ds.n = 64, ds.channels = C, ds.height = H, ds.width = W, ds.ctx = ctx;
    ds.pixels = malloc((size_t)64 * per);
    dp_rng r;
    dp_rng_seed(&r, 5);
    for (int i = 0; i < 64 * per; i++) ds.pixels[i] = (uint8_t)dp_rng_below(&r, 256);
    dp_gan *gan;
    dp_gan_opts o = {.arch = arch, .loss = DP_GAN_WGAN_GP, .batch = B, .seed = 3};
    char path[4096];
    if (dp_gan_new(ctx, &o, &gan) || dp_gan_set_data(gan, &ds)) goto fail;
    for (int k = 0; k < steps; k++)
        if (dp_gan_step(gan, NULL)) goto fail;
    snprintf(path, sizeof path, "%s/d.safetensors", dir);
    if (dp_gan_save(gan, path, NULL)) goto fail;
    /* x̂: images mixed with noise, weights 0..7/8 */
    float *xh = gan_test_xhat(gan);
    for (int i = 0; i < B * per; i++) {
        float e = (float)(i / per) / (float)B;
        xh[i] = e * (ds.pixels[i] / 127.5f - 1.0f) + (1.0f - e) * 0.8f * (2.0f * dp_rng_uniform(&r) - 1.0f);
    }
    snprintf(path, sizeof path, "%s/xhat.f32", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(xh, 4, (size_t)B * per, f) != (size_t)B * per) return 1;
    fclose(f);
    static const float deltas[] = {1e-4f, 3e-4f, 1e-3f, 3e-3f, 1e-2f, 3e-2f, 1e-1f};
    snprintf(path, sizeof path, "%s/deltas.txt", dir);
    FILE *fd = fopen(path, "w");
    snprintf(path, sizeof path, "%s/grads.f32", dir);
    f = fopen(path, "wb");
    if (!f || !fd) return 1;
    dp_paramset *psd = dp_gan_discriminator(gan);
    for (size_t d = 0; d < sizeof deltas / sizeof deltas[0]; d++) {
        float gp, nrm;
        gan_test_set_gp_delta(gan, deltas[d]);
        if (dp_paramset_zero_grad(psd) || gan_test_penalty(gan, 1, &gp, &nrm)) goto fail;
        if (d == 0) printf("%s after %d steps: P %.6f, mean |grad_x D| %.4f\n", dp_gan_arch_name(arch), steps, gp, nrm);
        fprintf(fd, "%g\n", (double)deltas[d]);
        for (int i = 0; i < dp_paramset_count(psd); i++) {
            if (dp_paramset_is_buffer(psd, i)) continue;
            dp_tensor *t = dp_paramset_at(psd, i);
            fwrite(dp_tensor_f32(dp_param_grad(t)), 4, (size_t)dp_tensor_numel(t), f);
        }
    }
    fclose(f);
    fclose(fd);
    dp_gan_free(gan);
    free(ds.pixels);
    dp_ctx_free(ctx);
    return 0;
fail:
    fprintf(stderr, "%s\n", dp_ctx_error(ctx));
    return 1;
}
