/* Small file helpers shared by the tests (tests only). */
#ifndef DP_TEST_FILES_H
#define DP_TEST_FILES_H

#include <stddef.h>

/* The whole file, NUL-terminated (malloc'd; free it), its size in *n; NULL if it cannot be read. */
unsigned char *dp_test_read_file(const char *path, size_t *n);
/* Writes n bytes (0 makes an empty file); returns 0, or -1 on failure. */
int dp_test_write_file(const char *path, const void *data, size_t n);
/* Removes the files in dir (one level, no subfolders) and dir itself; returns rmdir's result. */
int dp_test_remove_dir(const char *dir);

#endif
