/* Keras HDF5 weight files (dp_keras_load_mesonet, libhdf5). libhdf5 itself is
 * not hardened against malformed files (docs/security.md): crashes inside it
 * are reported upstream, not fixed here. */
#include "fuzz_common.h"

#include "doppel/import.h"

static dp_ctx *ctx;
static dp_paramset *ps;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ctx) {
        setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
        ctx = fz_ctx();
        if (dp_paramset_new(ctx, &ps) != DP_OK) abort();
    }
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dp_keras_info info;
    dp_status st = dp_keras_load_mesonet(ps, path, (size && (data[size - 1] & 1)) ? "mesoinception4" : "meso4", &info);
    fz_check_status(ctx, st);
    close(fd);
    return 0;
}
