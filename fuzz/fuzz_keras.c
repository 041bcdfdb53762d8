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
    /* libhdf5 wants a real path (it cannot resolve /proc/self/fd/N): a file in /dev/shm (memory), else TMPDIR. */
    static char path[256];
    if (!path[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(path, sizeof path, "%s/doppel-fuzz-keras-%ld.h5", dir, (long)getpid());
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    dp_keras_info info;
    dp_status st = dp_keras_load_mesonet(ps, path, (size && (data[size - 1] & 1)) ? "mesoinception4" : "meso4", &info);
    fz_check_status(ctx, st);
    unlink(path);
    return 0;
}
