/* Small file helpers for io/: whole-file reads with a size cap, and
 * temp-file + fsync + rename writes so a crash never leaves half a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/data_internal.h"

const char *dp_io_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

dp_status dp_io_read_file(dp_ctx *ctx, const char *path, size_t max_bytes, uint8_t **buf, size_t *n) {
    *buf = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dp_error(ctx, DP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dp_error(ctx, DP_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        fclose(f);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: file is %lld bytes, above the limit of %zu bytes", path,
                        (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *p = dp_malloc(ctx, size ? size : 1);
    if (!p) {
        fclose(f);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it", path, size);
    }
    size_t got = fread(p, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != size) {
        dp_free(ctx, p);
        return dp_error(ctx, DP_ERR_IO, "%s: read %zu of %zu bytes", path, got, size);
    }
    *buf = p;
    *n = size;
    return DP_OK;
}

dp_status dp_io_tmp_open(dp_ctx *ctx, const char *path, char *tmp, size_t tmp_size, int *fd) {
    *fd = -1;
    int k = snprintf(tmp, tmp_size, "%s.tmp-XXXXXX", path);
    if (k < 0 || (size_t)k >= tmp_size) return dp_error(ctx, DP_ERR_ARG, "%s: path too long", path);
    *fd = mkstemp(tmp);
    if (*fd < 0)
        return dp_error(ctx, DP_ERR_IO, "%s: cannot create a temporary file next to it: %s (is the folder writable?)",
                        path, strerror(errno));
    /* mkstemp makes 0600 files; give the result the usual umask-based mode. */
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(*fd, 0666 & ~um);
    return DP_OK;
}

dp_status dp_io_commit(dp_ctx *ctx, int fd, const char *tmp, const char *path) {
    if (fsync(fd) != 0) {
        int e = errno;
        dp_io_abort(fd, tmp);
        return dp_error(ctx, DP_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return dp_error(ctx, DP_ERR_IO, "%s: close failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dp_error(ctx, DP_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(e));
    }
    /* Make the rename itself durable. */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path) < sizeof dir) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = 0;
    } else {
        strcpy(dir, ".");
    }
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return DP_OK;
}

void dp_io_abort(int fd, const char *tmp) {
    if (fd >= 0) close(fd);
    if (tmp && tmp[0]) unlink(tmp);
}
