/* Helpers shared by the data readers/writers in io/ (idx.c, image.c, dataset.c). Not installed. */
#ifndef DOPPEL_IO_DATA_INTERNAL_H
#define DOPPEL_IO_DATA_INTERNAL_H

#include <stdio.h>

#include "core/internal.h"

/* Read a whole file into a dp_malloc'd buffer; refuses files over max_bytes. */
dp_status dp_io_read_file(dp_ctx *ctx, const char *path, size_t max_bytes, uint8_t **buf, size_t *n);

/* Crash-safe writing: open a fresh PATH.tmp-XXXXXX next to path (fd returned,
 * tmp receives its name), write to it, then dp_io_commit() fsyncs and renames it
 * over path; dp_io_abort() removes it. Messages name path. */
dp_status dp_io_tmp_open(dp_ctx *ctx, const char *path, char *tmp, size_t tmp_size, int *fd);
dp_status dp_io_commit(dp_ctx *ctx, int fd, const char *tmp, const char *path);
void dp_io_abort(int fd, const char *tmp);

/* "file.png" from "dir/sub/file.png" (the pointer into path). */
const char *dp_io_basename(const char *path);

#endif
