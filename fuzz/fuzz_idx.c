/* IDX files (MNIST format, plain or gzipped) via dp_idx_read. */
#include "fuzz_common.h"

static dp_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ctx) ctx = fz_ctx();
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dp_idx idx;
    dp_status st = dp_idx_read(ctx, path, 0, &idx);
    fz_check_status(ctx, st);
    if (st == DP_OK) {
        size_t n = 1;
        for (int i = 0; i < idx.ndim; i++) n *= (size_t)idx.dims[i];
        if (n != idx.size) abort();
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < idx.size; i += 4096) sink ^= idx.data[i];
        (void)sink;
        dp_idx_free(ctx, &idx);
    }
    close(fd);
    return 0;
}
