/* IDX files (MNIST / Fashion-MNIST): magic 00 00 <dtype> <rank>, rank
 * big-endian uint32 dimensions, then the elements. Read through zlib's gz*
 * functions, which also read uncompressed files as they are. */
#include <errno.h>
#include <unistd.h>
#include <zlib.h>

#include "io/data_internal.h"

#define IDX_UBYTE 0x08

/* What the data of a file of this rank usually is, for messages. */
static const char *idx_what(int rank) { return rank == 1 ? "labels" : rank >= 3 ? "pixels" : "data"; }

/* Read up to n bytes; returns how many were read (short = end of file or error). */
static size_t gz_read_all(gzFile f, uint8_t *dst, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        if (want > ((size_t)1 << 30)) want = (size_t)1 << 30;
        int r = gzread(f, dst + got, (unsigned)want);
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

/* " (gzip: unexpected end of file)" when zlib saw a problem, else "". */
static const char *gz_why(gzFile f, char *buf, size_t n) {
    int errnum = Z_OK;
    const char *m = gzerror(f, &errnum);
    if (errnum == Z_OK || !m || !m[0]) return "";
    snprintf(buf, n, " (gzip: %s)", m);
    return buf;
}

void dp_idx_free(dp_ctx *ctx, dp_idx *idx) {
    if (!idx) return;
    if (idx->data && ctx) dp_free(ctx, idx->data);
    memset(idx, 0, sizeof *idx);
}

dp_status dp_idx_read(dp_ctx *ctx, const char *path, size_t max_bytes, dp_idx *out) {
    if (!ctx || !path || !out) return dp_error(ctx, DP_ERR_NULL, "dp_idx_read: NULL argument");
    memset(out, 0, sizeof *out);
    if (!max_bytes) max_bytes = (size_t)ctx->limits.max_tensor_bytes;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return dp_error(ctx, DP_ERR_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
    gzbuffer(f, 1 << 17);
    char why[160];
    dp_status st = DP_OK;
    uint8_t *data = NULL;

    uint8_t hdr[4 + 4 * DP_MAX_DIMS];
    size_t got = gz_read_all(f, hdr, 4);
    if (got < 4) {
        st = dp_error(ctx, DP_ERR_FORMAT, "%s: truncated: expected a 4-byte IDX magic, got %zu bytes%s", path, got,
                      gz_why(f, why, sizeof why));
        goto done;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        st = dp_error(ctx, DP_ERR_FORMAT,
                      "%s: not an IDX file: magic %02x %02x %02x %02x at offset 0, expected 00 00 08 <rank> "
                      "(MNIST-style idx1/idx3-ubyte file, optionally gzipped)",
                      path, hdr[0], hdr[1], hdr[2], hdr[3]);
        goto done;
    }
    if (hdr[2] != IDX_UBYTE) {
        st = dp_error(ctx, DP_ERR_UNSUPPORTED,
                      "%s: IDX element type 0x%02x at offset 2 is not supported (only 0x08, unsigned byte)", path,
                      hdr[2]);
        goto done;
    }
    int rank = hdr[3];
    if (rank < 1 || rank > DP_MAX_DIMS) {
        st = dp_error(ctx, DP_ERR_FORMAT, "%s: IDX rank %d at offset 3 is not supported (1..%d)", path, rank,
                      DP_MAX_DIMS);
        goto done;
    }
    got = gz_read_all(f, hdr + 4, 4 * (size_t)rank);
    if (got < 4 * (size_t)rank) {
        st = dp_error(ctx, DP_ERR_FORMAT, "%s: truncated: expected %d dimensions (%d bytes) after the magic, got %zu bytes%s",
                      path, rank, 4 * rank, got, gz_why(f, why, sizeof why));
        goto done;
    }
    uint64_t total = 1;
    for (int i = 0; i < rank; i++) {
        const uint8_t *p = hdr + 4 + 4 * i;
        uint64_t d = ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
        out->dims[i] = (int64_t)d;
        /* d < 2^32 and total <= max_bytes < 2^63 before the multiply, so test by division. */
        if (d && total > (uint64_t)max_bytes / d) total = (uint64_t)max_bytes + 1;
        else total *= d;
    }
    out->ndim = rank;
    if (total > (uint64_t)max_bytes) {
        char shape[96];
        st = dp_error(ctx, DP_ERR_NOMEM,
                      "%s: the header announces dimensions %s, more than the limit of %zu bytes "
                      "(corrupt header, or raise dp_limits.max_tensor_bytes)",
                      path, dp_shape_str(rank, out->dims, shape, sizeof shape), max_bytes);
        goto done;
    }
    /* Grow the buffer as data arrives rather than trusting the header: a
     * 100-byte file claiming a gigabyte costs a few KiB, not a gigabyte. */
    size_t cap = total < ((size_t)1 << 20) ? (size_t)total : ((size_t)1 << 20), have = 0;
    data = dp_malloc(ctx, cap ? cap : 1);
    if (!data) {
        st = dp_error(ctx, DP_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap);
        goto done;
    }
    while (have < total) {
        if (have == cap) {
            size_t ncap = cap * 2 < total ? cap * 2 : (size_t)total;
            uint8_t *nd = dp_malloc(ctx, ncap);
            if (!nd) {
                st = dp_error(ctx, DP_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, ncap);
                goto done;
            }
            memcpy(nd, data, have);
            dp_free(ctx, data);
            data = nd;
            cap = ncap;
        }
        size_t r = gz_read_all(f, data + have, cap - have);
        have += r;
        if (have < cap) break;
    }
    if (have < total) {
        st = dp_error(ctx, DP_ERR_FORMAT, "%s: truncated: expected %llu bytes of %s, got %zu%s", path,
                      (unsigned long long)total, idx_what(rank), have, gz_why(f, why, sizeof why));
        goto done;
    }
    uint8_t extra;
    if (gz_read_all(f, &extra, 1) == 1) {
        st = dp_error(ctx, DP_ERR_FORMAT, "%s: unexpected data after the %llu bytes of %s announced by the header", path,
                      (unsigned long long)total, idx_what(rank));
        goto done;
    }
    int errnum = Z_OK;
    gzerror(f, &errnum);
    if (errnum != Z_OK) {
        st = dp_error(ctx, DP_ERR_FORMAT, "%s: corrupt gzip stream after the data%s", path, gz_why(f, why, sizeof why));
        goto done;
    }
    out->data = data;
    out->size = (size_t)total;
    data = NULL;
done:
    gzclose(f);
    if (data) dp_free(ctx, data);
    if (st != DP_OK) memset(out, 0, sizeof *out);
    return st;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

dp_status dp_idx_write(dp_ctx *ctx, const char *path, int ndim, const int64_t *dims, const uint8_t *data) {
    if (!ctx || !path || !dims || !data) return dp_error(ctx, DP_ERR_NULL, "dp_idx_write: NULL argument");
    if (ndim < 1 || ndim > DP_MAX_DIMS) return dp_error(ctx, DP_ERR_ARG, "%s: IDX rank %d (1..%d)", path, ndim, DP_MAX_DIMS);
    uint8_t hdr[4 + 4 * DP_MAX_DIMS] = {0, 0, IDX_UBYTE, (uint8_t)ndim};
    size_t total = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0 || dims[i] > 0xffffffffLL)
            return dp_error(ctx, DP_ERR_ARG, "%s: IDX dimension %d is %lld (0..2^32-1)", path, i, (long long)dims[i]);
        uint32_t d = (uint32_t)dims[i];
        hdr[4 + 4 * i] = (uint8_t)(d >> 24);
        hdr[5 + 4 * i] = (uint8_t)(d >> 16);
        hdr[6 + 4 * i] = (uint8_t)(d >> 8);
        hdr[7 + 4 * i] = (uint8_t)d;
        total *= (size_t)d;
    }
    char tmp[4200];
    int fd;
    dp_status st = dp_io_tmp_open(ctx, path, tmp, sizeof tmp, &fd);
    if (st != DP_OK) return st;
    int gz = ends_with(path, ".gz");
    /* gzclose closes the descriptor it is given; keep ours for fsync. */
    int fd2 = dup(fd);
    gzFile f = fd2 >= 0 ? gzdopen(fd2, gz ? "wb6" : "wbT") : NULL;
    if (!f) {
        if (fd2 >= 0) close(fd2);
        dp_io_abort(fd, tmp);
        return dp_error(ctx, DP_ERR_IO, "%s: cannot start writing", path);
    }
    int ok = gzwrite(f, hdr, (unsigned)(4 + 4 * ndim)) == 4 + 4 * ndim;
    for (size_t off = 0; ok && off < total;) {
        size_t n = total - off > ((size_t)1 << 30) ? ((size_t)1 << 30) : total - off;
        ok = gzwrite(f, data + off, (unsigned)n) == (int)n;
        off += n;
    }
    if (gzclose(f) != Z_OK) ok = 0;
    if (!ok) {
        dp_io_abort(fd, tmp);
        return dp_error(ctx, DP_ERR_IO, "%s: write failed (disk full?)", path);
    }
    return dp_io_commit(ctx, fd, tmp, path);
}
