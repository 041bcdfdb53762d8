/* Shared by the libFuzzer targets in fuzz/ (built with -DDP_FUZZ=ON, see docs/security.md).
 * Readers that take a path get the input through an in-memory file (memfd) named
 * /proc/self/fd/N, so fuzzing never touches the disk. */
#ifndef DP_FUZZ_COMMON_H
#define DP_FUZZ_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "doppel/doppel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An in-memory file holding data; its path goes to path. Returns the fd (close it after) or -1. */
static inline int fz_memfile(const uint8_t *data, size_t n, char *path, size_t cap) {
    int fd = memfd_create("doppel-fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* A context with one thread; aborts if it cannot be made (that is not the input's fault). */
static inline dp_ctx *fz_ctx(void) {
    dp_ctx *ctx = NULL;
    dp_ctx_opts o = {.threads = 1, .seed = 1};
    if (dp_ctx_new(&o, &ctx) != DP_OK) abort();
    /* Keep single inputs cheap: the defaults are for real files, not for a fuzzer's 1 MiB inputs. */
    dp_limits l = {.max_image_side = 4096, .max_image_pixels = (int64_t)1 << 22, .max_tensor_bytes = (int64_t)64 << 20};
    if (dp_ctx_set_limits(ctx, &l) != DP_OK) abort();
    return ctx;
}

/* Every failure must come with a message: a status without one is a bug. */
static inline void fz_check_status(dp_ctx *ctx, dp_status st) {
    if (st != DP_OK && (!dp_ctx_error(ctx) || !dp_ctx_error(ctx)[0])) {
        fprintf(stderr, "fuzz: status %s without a message\n", dp_status_name(st));
        abort();
    }
}

#endif
