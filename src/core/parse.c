/* Strict number parsing (core/parse.h). */
#include "core/parse.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

/* One integer at the start of s: *end is where it stops (s itself when there is none). */
static int int_at(const char *s, int64_t lo, int64_t hi, int64_t *out, const char **end) {
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    *end = e;
    if (e == s || errno || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int f64_at(const char *s, double lo, double hi, double *out, const char **end) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    *end = e;
    /* ERANGE also comes with an underflow (1e-400 -> 0 or a subnormal): a value, not an error */
    if (e == s || !isfinite(v) || v < lo || v > hi || (errno == ERANGE && fabs(v) > DBL_MIN)) return 0;
    *out = v;
    return 1;
}

int dp_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    const char *e;
    int64_t v;
    if (!s || !int_at(s, lo, hi, &v, &e) || *e) return 0;
    *out = v;
    return 1;
}

int dp_parse_int(const char *s, int lo, int hi, int *out) {
    int64_t v;
    if (!dp_parse_i64(s, lo, hi, &v)) return 0;
    *out = (int)v;
    return 1;
}

int dp_parse_f64(const char *s, double lo, double hi, double *out) {
    const char *e;
    double v;
    if (!s || !f64_at(s, lo, hi, &v, &e) || *e) return 0;
    *out = v;
    return 1;
}

int dp_parse_f32(const char *s, float lo, float hi, float *out) {
    double v;
    if (!dp_parse_f64(s, fmax(lo, -FLT_MAX), fmin(hi, FLT_MAX), &v)) return 0;
    *out = (float)v;
    return 1;
}

int dp_parse_ints(const char *s, char sep, int n, int lo, int hi, int *out) {
    if (!s || n < 1) return 0;
    for (int i = 0; i < n; i++) {
        int64_t v;
        const char *e;
        if (!int_at(s, lo, hi, &v, &e) || *e != (i + 1 < n ? sep : 0)) return 0;
        out[i] = (int)v;
        s = e + 1;
    }
    return 1;
}

int dp_parse_f32s(const char *s, char sep, int n, float lo, float hi, float *out) {
    if (!s || n < 1) return 0;
    double l = fmax(lo, -FLT_MAX), h = fmin(hi, FLT_MAX);
    for (int i = 0; i < n; i++) {
        double v;
        const char *e;
        if (!f64_at(s, l, h, &v, &e) || *e != (i + 1 < n ? sep : 0)) return 0;
        out[i] = (float)v;
        s = e + 1;
    }
    return 1;
}
