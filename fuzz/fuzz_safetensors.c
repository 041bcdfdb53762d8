/* Checkpoints (safetensors): dp_checkpoint_meta and dp_checkpoint_load into a
 * small model with an Adam optimiser (the seeds are its own checkpoints). */
#include "fuzz_common.h"

static dp_ctx *ctx;
static dp_paramset *ps;
static dp_optim *opt;

static void setup(void) {
    ctx = fz_ctx();
    if (dp_paramset_new(ctx, &ps) != DP_OK) abort();
    dp_tensor *t;
    if (dp_paramset_get_or_add(ps, "fc.weight", 2, (int64_t[]){4, 3}, DP_PARAM_TRAINABLE, NULL, &t) != DP_OK ||
        dp_paramset_get_or_add(ps, "fc.bias", 1, (int64_t[]){4}, DP_PARAM_TRAINABLE, NULL, &t) != DP_OK ||
        dp_paramset_get_or_add(ps, "bn.running_var", 1, (int64_t[]){2}, DP_PARAM_BUFFER, NULL, &t) != DP_OK)
        abort();
    if (dp_optim_new(ps, &(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 1e-3f}, &opt) != DP_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ctx) setup();
    char path[64], buf[256];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dp_status st = dp_checkpoint_meta(ctx, path, "doppel.arch", buf, sizeof buf);
    fz_check_status(ctx, st);
    if (st == DP_OK && strnlen(buf, sizeof buf) == sizeof buf) abort();
    st = dp_checkpoint_load(path, ps, NULL);
    fz_check_status(ctx, st);
    st = dp_checkpoint_load(path, ps, opt);
    fz_check_status(ctx, st);
    close(fd);
    return 0;
}
