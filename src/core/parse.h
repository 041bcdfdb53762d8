/* Numbers in text that doppel reads from files (model metadata, CSV files, caches) and from
 * command lines, parsed strictly. Not installed; the library and the CLI share it. */
#ifndef DOPPEL_PARSE_H
#define DOPPEL_PARSE_H

#include <stdint.h>

/* The whole of s is one number (strtoll in base 10 / strtod: leading blanks are allowed, nothing
 * may follow it) within [lo, hi]; a double or float must also be finite (and a float within float's
 * range). They return 1 with *out set, else 0 with *out untouched. No input is undefined behaviour,
 * unlike atoi, atof or sscanf("%d") given a number outside the type's range. s may be NULL (0). */
int dp_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int dp_parse_int(const char *s, int lo, int hi, int *out);
int dp_parse_f64(const char *s, double lo, double hi, double *out);
int dp_parse_f32(const char *s, float lo, float hi, float *out);

/* Exactly n numbers separated by the character sep (e.g. "3,64,64" with ','), each as above, and
 * nothing else. 1 with out[0..n-1] set, else 0 (out may then be partly written). */
int dp_parse_ints(const char *s, char sep, int n, int lo, int hi, int *out);
int dp_parse_f32s(const char *s, char sep, int n, float lo, float hi, float *out);

#endif
