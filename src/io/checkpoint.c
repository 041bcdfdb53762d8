/* Checkpoints as safetensors files (https://huggingface.co/docs/safetensors):
 *   u64 little-endian N | N bytes of JSON header (space-padded) | raw little-endian tensor data
 * The header maps each tensor name to {"dtype","shape","data_offsets":[begin,end]} (offsets
 * relative to the data section) and may hold "__metadata__": {string: string}.
 *
 * Saving is crash-safe (temp file, fsync, rename, fsync of the folder). Loading
 * validates the whole file and stages the data before anything in the model
 * changes, so a failed load leaves the model and the optimiser as they were. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/internal.h"

#define ST_MAX_HEADER 100000000ull /* the limit the reference safetensors reader applies */
#define ST_MAX_RANK 16
#define ST_OPTIM_PREFIX "optim."
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ST_BIG_ENDIAN 1
#else
#define ST_BIG_ENDIAN 0
#endif

/* ------------------------------------------------------------ small helpers */

static void swap32(void *p, size_t n_words) {
    unsigned char *b = p;
    for (size_t i = 0; i < n_words; i++, b += 4) {
        unsigned char t = b[0];
        b[0] = b[3];
        b[3] = t;
        t = b[1];
        b[1] = b[2];
        b[2] = t;
    }
}

static void swap16(void *p, size_t n_words) {
    unsigned char *b = p;
    for (size_t i = 0; i < n_words; i++, b += 2) {
        unsigned char t = b[0];
        b[0] = b[1];
        b[1] = t;
    }
}

/* ------------------------------------------------------------ float16 (IEEE 754 binary16) */

uint16_t dp_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* Inf stays Inf; NaN keeps its top 10 payload bits and stays a NaN (as numpy) */
        uint32_t r = 0x7c00u | ((ax & 0x7fffffu) >> 13);
        return (uint16_t)(sign | (ax > 0x7f800000u && r == 0x7c00u ? r + 1 : r));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* 65520 and above round to Inf */
    if (ax < 0x38800000u) {                                    /* below 2^-14: a subnormal half, or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;           /* below 2^-25: rounds to (signed) zero */
        uint32_t mant = (ax & 0x7fffffu) | 0x800000u, shift = 126u - (ax >> 23); /* value / 2^-24 = mant >> shift */
        uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++; /* to nearest, ties to even (may reach 0x400: the smallest normal) */
        return (uint16_t)(sign | r);
    }
    uint32_t r = (ax - 0x38000000u) >> 13, rem = ax & 0x1fffu; /* exponent rebiased from 127 to 15 */
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;    /* a carry into the exponent is the right result */
    return (uint16_t)(sign | r);
}

float dp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1f)
        x = sign | 0x7f800000u | (m << 13);
    else if (e)
        x = sign | ((e + 112u) << 23) | (m << 13);
    else if (!m)
        x = sign;
    else { /* subnormal: m * 2^-24, normalised */
        uint32_t k = 0;
        while (!(m & 0x400u)) {
            m <<= 1;
            k++;
        }
        x = sign | ((113u - k) << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static char *dup_str(dp_ctx *ctx, const char *a, const char *b) {
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    char *s = dp_malloc(ctx, la + lb + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    if (lb) memcpy(s + la, b, lb);
    s[la + lb] = 0;
    return s;
}

/* Reads exactly n bytes at off; returns 0, or the errno (0 replaced by -1 for a short file). */
static int pread_all(int fd, void *buf, size_t n, uint64_t off) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) return -1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------ reading a header */

typedef struct st_entry {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[ST_MAX_RANK];
    uint64_t begin, end; /* relative to the data section */
} st_entry;

typedef struct st_file {
    dp_ctx *ctx;
    const char *path;
    int fd;
    uint64_t data_start, data_size;
    char *header;
    cJSON *root;
    const cJSON *meta; /* NULL if the file has no __metadata__ */
    st_entry *e;       /* sorted by name */
    int n;
} st_file;

static void st_close(st_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    cJSON_Delete(f->root);
    f->root = NULL;
    dp_free(f->ctx, f->header);
    f->header = NULL;
    dp_free(f->ctx, f->e);
    f->e = NULL;
}

static const struct {
    const char *name;
    unsigned size;
} st_dtypes[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
                 {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};

static unsigned dtype_size(const char *s) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(s, st_dtypes[i].name)) return st_dtypes[i].size;
    return 0;
}

/* A JSON number that is a non-negative integer exactly representable as a double. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_EXACT && d == floor(d))) return 0;
    *out = (uint64_t)d;
    return 1;
}

static dp_status st_entry_parse(st_file *f, const cJSON *j, st_entry *e) {
    dp_ctx *ctx = f->ctx;
    const char *path = f->path, *name = j->string;
    e->name = name;
    if (!cJSON_IsObject(j)) return dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s' is not a JSON object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s' lacks a string 'dtype', an array 'shape' or an array 'data_offsets'",
                        path, name);
    e->dtype = dt->valuestring;
    unsigned es = dtype_size(e->dtype);
    if (!es) return dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s' has an unknown dtype '%s'", path, name, e->dtype);
    int rank = cJSON_GetArraySize(sh);
    if (rank > ST_MAX_RANK)
        return dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d are read)", path, name, rank, ST_MAX_RANK);
    e->ndim = rank;
    /* Bytes the shape needs; a product beyond the data size is clamped so it cannot overflow. */
    uint64_t bytes = es;
    int i = 0, zero = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s': shape entry %d is not a non-negative integer", path, name, i);
        e->shape[i] = (int64_t)v;
        zero |= v == 0;
        if (v && bytes > f->data_size / v)
            bytes = UINT64_MAX; /* more than the file holds; reported below */
        else if (v && bytes != UINT64_MAX)
            bytes *= v;
    }
    if (zero) bytes = 0;
    uint64_t b, en;
    if (cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) || !json_uint(off->child->next, &en))
        return dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s': data_offsets is not a pair of non-negative integers", path, name);
    if (b > en)
        return dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] end before they begin", path, name,
                        (unsigned long long)b, (unsigned long long)en);
    if (en > f->data_size)
        return dp_error(ctx, DP_ERR_FORMAT,
                        "%s: tensor '%s' ends at byte %llu of the data, which has only %llu bytes (truncated file?)", path,
                        name, (unsigned long long)en, (unsigned long long)f->data_size);
    if (bytes != en - b)
        return dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s' takes %llu bytes in the file, its dtype and shape need %llu", path,
                        name, (unsigned long long)(en - b), (unsigned long long)bytes);
    /* A tensor the file really holds, but larger than dp_limits.max_tensor_bytes (checked after the
     * file's own consistency, so a corrupt header is reported as such). */
    if (bytes > (uint64_t)ctx->limits.max_tensor_bytes)
        return dp_error(ctx, DP_ERR_NOMEM,
                        "%s: tensor '%s' takes %llu bytes, above the limit of %llu (dp_limits.max_tensor_bytes)", path,
                        name, (unsigned long long)bytes, (unsigned long long)ctx->limits.max_tensor_bytes);
    e->begin = b;
    e->end = en;
    return DP_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}
static int cmp_name(const void *a, const void *b) { return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name); }

/* Opens path and validates its whole header against the file. */
static dp_status st_open(dp_ctx *ctx, const char *path, st_file *f) {
    memset(f, 0, sizeof *f);
    f->ctx = ctx;
    f->path = path;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) return dp_error(ctx, DP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    dp_status s = DP_OK;
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        s = dp_error(ctx, DP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        s = dp_error(ctx, DP_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    unsigned char lenb[8];
    int rc;
    if (size < 8 || (rc = pread_all(f->fd, lenb, 8, 0)) == -1) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: %llu bytes is too short for a safetensors file", path, (unsigned long long)size);
        goto fail;
    }
    if (rc) {
        s = dp_error(ctx, DP_ERR_IO, "%s: read error: %s", path, strerror(rc));
        goto fail;
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | lenb[i];
    if (hl < 2 || hl > ST_MAX_HEADER) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: header length %llu is not plausible (2..%llu); not a safetensors file?", path,
                     (unsigned long long)hl, ST_MAX_HEADER);
        goto fail;
    }
    if (hl > size - 8) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: truncated: the header needs %llu bytes, the file has %llu after the length",
                     path, (unsigned long long)hl, (unsigned long long)(size - 8));
        goto fail;
    }
    f->data_start = 8 + hl;
    f->data_size = size - f->data_start;
    f->header = dp_malloc(ctx, (size_t)hl + 1);
    if (!f->header) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)hl);
        goto fail;
    }
    if ((rc = pread_all(f->fd, f->header, (size_t)hl, 8)) != 0) {
        s = rc == -1 ? dp_error(ctx, DP_ERR_FORMAT, "%s: truncated header", path)
                     : dp_error(ctx, DP_ERR_IO, "%s: read error: %s", path, strerror(rc));
        goto fail;
    }
    f->header[hl] = 0;
    if (memchr(f->header, 0, (size_t)hl)) {
        s = dp_error(ctx, DP_ERR_FORMAT, "%s: the header contains a NUL byte", path);
        goto fail;
    }
    const char *end = NULL;
    f->root = cJSON_ParseWithLengthOpts(f->header, (size_t)hl, &end, 0);
    if (!f->root || !cJSON_IsObject(f->root)) {
        size_t at = end && end >= f->header ? (size_t)(end - f->header) : 0;
        s = f->root ? dp_error(ctx, DP_ERR_FORMAT, "%s: the header is not a JSON object", path)
                    : dp_error(ctx, DP_ERR_FORMAT, "%s: the header is not valid JSON (error near byte %zu of %llu)", path, at,
                               (unsigned long long)hl);
        goto fail;
    }
    /* Writers pad the header with spaces to align the data; anything else is corruption. */
    for (const char *p = end; p && p < f->header + hl; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: unexpected bytes after the JSON header (at byte %zu)", path,
                         (size_t)(p - f->header));
            goto fail;
        }

    int n = 0;
    for (const cJSON *j = f->root->child; j; j = j->next) n++;
    f->e = dp_calloc(ctx, sizeof(st_entry) * (size_t)(n ? n : 1));
    if (!f->e) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (const cJSON *j = f->root->child; j; j = j->next) {
        if (!strcmp(j->string, "__metadata__")) {
            if (f->meta || !cJSON_IsObject(j)) {
                s = dp_error(ctx, DP_ERR_FORMAT, "%s: __metadata__ is repeated or not an object", path);
                goto fail;
            }
            for (const cJSON *m = j->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    s = dp_error(ctx, DP_ERR_FORMAT, "%s: metadata value '%s' is not a string", path, m->string);
                    goto fail;
                }
            f->meta = j;
            continue;
        }
        if ((s = st_entry_parse(f, j, &f->e[f->n])) != DP_OK) goto fail;
        f->n++;
    }
    /* Tensors may not share bytes (zero-length ones take none). */
    qsort(f->e, (size_t)f->n, sizeof *f->e, cmp_begin);
    uint64_t prev_end = 0;
    const char *prev = NULL;
    for (int i = 0; i < f->n; i++) {
        if (f->e[i].begin == f->e[i].end) continue;
        if (prev && f->e[i].begin < prev_end) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the file", path, prev, f->e[i].name);
            goto fail;
        }
        prev_end = f->e[i].end;
        prev = f->e[i].name;
    }
    qsort(f->e, (size_t)f->n, sizeof *f->e, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->e[i - 1].name, f->e[i].name)) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", path, f->e[i].name);
            goto fail;
        }
    return DP_OK;
fail:
    st_close(f);
    return s;
}

static const st_entry *st_find(const st_file *f, const char *name) {
    st_entry key;
    key.name = name;
    return f->n ? bsearch(&key, f->e, (size_t)f->n, sizeof *f->e, cmp_name) : NULL;
}

static const char *st_meta(const st_file *f, const char *key) {
    const cJSON *v = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ------------------------------------------------------------ save */

typedef struct ck_item {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data; /* numel contiguous floats */
    int64_t numel;
} ck_item;

static void item_of(ck_item *it, const char *name, const dp_tensor *t) {
    it->name = name;
    it->ndim = t->ndim;
    it->shape = t->shape;
    it->data = t->data;
    it->numel = dp_numel(t);
}

/* The shortest decimal that reads back as the same float ("0.1", not 0.100000001). */
static cJSON *float_json(float x) {
    char buf[40];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return cJSON_CreateRaw(buf);
}

/* The optimiser options as one JSON object (a string in __metadata__). */
static char *optim_json(const dp_optim_opts *o) {
    static const char *const kinds[] = {"sgd", "adam", "adamw"};
    static const char *const sched[] = {"constant", "step", "cosine"};
    cJSON *j = cJSON_CreateObject(), *s = cJSON_CreateObject();
    char *out = NULL;
    if (!j || !s) goto done;
    int ok = cJSON_AddStringToObject(j, "kind", (unsigned)o->kind < 3 ? kinds[o->kind] : "?") != NULL;
    ok &= cJSON_AddItemToObject(j, "lr", float_json(o->lr));
    ok &= cJSON_AddItemToObject(j, "momentum", float_json(o->momentum));
    ok &= cJSON_AddBoolToObject(j, "nesterov", o->nesterov != 0) != NULL;
    ok &= cJSON_AddItemToObject(j, "weight_decay", float_json(o->weight_decay));
    ok &= cJSON_AddItemToObject(j, "beta1", float_json(o->beta1));
    ok &= cJSON_AddItemToObject(j, "beta2", float_json(o->beta2));
    ok &= cJSON_AddItemToObject(j, "eps", float_json(o->eps));
    ok &= cJSON_AddItemToObject(j, "clip_norm", float_json(o->clip_norm));
    ok &= cJSON_AddItemToObject(j, "clip_value", float_json(o->clip_value));
    const dp_lr_schedule *sc = &o->schedule;
    ok &= cJSON_AddStringToObject(s, "kind", (unsigned)sc->kind < 3 ? sched[sc->kind] : "?") != NULL;
    ok &= cJSON_AddNumberToObject(s, "warmup_steps", sc->warmup_steps) != NULL;
    ok &= cJSON_AddNumberToObject(s, "step_size", sc->step_size) != NULL;
    ok &= cJSON_AddItemToObject(s, "gamma", float_json(sc->gamma));
    ok &= cJSON_AddNumberToObject(s, "total_steps", sc->total_steps) != NULL;
    ok &= cJSON_AddItemToObject(s, "min_lr", float_json(sc->min_lr));
    if (cJSON_AddItemToObject(j, "schedule", s))
        s = NULL; /* now owned by j */
    else
        ok = 0;
    if (ok) out = cJSON_PrintUnformatted(j);
done:
    cJSON_Delete(s);
    cJSON_Delete(j);
    return out;
}

static const char *const reserved_keys[] = {"format", "doppel.version", "doppel.arch", "doppel.step", "doppel.optim"};

static int is_reserved(const char *k) {
    for (size_t i = 0; i < sizeof reserved_keys / sizeof reserved_keys[0]; i++)
        if (!strcmp(k, reserved_keys[i])) return 1;
    return 0;
}

/* Adds the items' entries to root (offsets in order, F32 or F16 storage) and prints it (cJSON-allocated). */
static dp_status header_text(dp_ctx *ctx, const char *path, cJSON *root, const ck_item *it, int n, int f16, char **out) {
    int ok = 1;
    uint64_t off = 0, es = f16 ? 2 : 4;
    for (int i = 0; ok && i < n; i++) {
        uint64_t bytes = (uint64_t)it[i].numel * es;
        double shape[ST_MAX_RANK], offs[2] = {(double)off, (double)(off + bytes)};
        for (int d = 0; d < it[i].ndim; d++) shape[d] = (double)it[i].shape[d];
        cJSON *e = cJSON_CreateObject();
        ok &= e != NULL;
        if (!ok) break;
        ok &= cJSON_AddStringToObject(e, "dtype", f16 ? "F16" : "F32") != NULL;
        ok &= cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, it[i].ndim));
        ok &= cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2));
        if (!cJSON_AddItemToObject(root, it[i].name, e)) {
            cJSON_Delete(e);
            ok = 0;
        }
        off += bytes;
    }
    *out = ok ? cJSON_PrintUnformatted(root) : NULL;
    if (!*out) return dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory building the header", path);
    return DP_OK;
}

/* Builds the JSON header text (cJSON-allocated) for the items, offsets in order. */
static dp_status build_header(dp_ctx *ctx, const char *path, const ck_item *it, int n, dp_optim *optim, const char *arch,
                              const char *const *extra, int f16, char **out) {
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = root ? cJSON_AddObjectToObject(root, "__metadata__") : NULL; /* first, as Hugging Face's writer does */
    char *ojson = NULL;
    int ok = meta != NULL;
    if (ok) {
        char step[32];
        snprintf(step, sizeof step, "%lld", (long long)(optim ? dp_optim_steps(optim) : 0));
        ok &= cJSON_AddStringToObject(meta, "format", "doppel") != NULL;
        ok &= cJSON_AddStringToObject(meta, "doppel.version", DP_VERSION_STRING) != NULL;
        if (arch) ok &= cJSON_AddStringToObject(meta, "doppel.arch", arch) != NULL;
        ok &= cJSON_AddStringToObject(meta, "doppel.step", step) != NULL;
        if (optim) {
            ojson = optim_json(dp_optim_options(optim));
            ok &= ojson && cJSON_AddStringToObject(meta, "doppel.optim", ojson) != NULL;
        }
    }
    for (int i = 0; ok && extra && extra[i]; i += 2) ok &= cJSON_AddStringToObject(meta, extra[i], extra[i + 1]) != NULL;
    dp_status s = ok ? header_text(ctx, path, root, it, n, f16, out)
                     : dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory building the header", path);
    cJSON_Delete(root);
    cJSON_free(ojson);
    return s;
}

/* F16 storage cannot hold a finite value of magnitude 65520 or more (it would round to Inf): refuse the
 * file rather than change the model. NaN and Inf are stored as they are (loading refuses them, as for F32). */
static dp_status check_f16_range(dp_ctx *ctx, const char *path, const ck_item *it, int n) {
    for (int i = 0; i < n; i++)
        for (int64_t k = 0; k < it[i].numel; k++) {
            float v = it[i].data[k];
            if (isfinite(v) && (dp_f32_to_f16(v) & 0x7c00u) == 0x7c00u)
                return dp_error(ctx, DP_ERR_NUMERIC,
                                "%s: tensor '%s' holds %.9g at element %lld, beyond float16's range (largest 65504); "
                                "store it as F32",
                                path, it[i].name, (double)v, (long long)k);
        }
    return DP_OK;
}

/* Writes the file body to fd (F32, or F16 rounded to nearest even); returns 0 or an errno. */
static int write_body(int fd, const char *header, const ck_item *it, int n, int f16) {
    size_t hl = strlen(header);
    size_t pad = (8 - hl % 8) % 8; /* the data starts 8-byte aligned, like safetensors' own writer */
    uint64_t len = hl + pad;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(len >> (8 * i));
    int rc;
    if ((rc = write_all(fd, lenb, 8)) || (rc = write_all(fd, header, hl)) || (rc = write_all(fd, "        ", pad))) return rc;
    for (int i = 0; i < n; i++) {
        const float *src = it[i].data;
        size_t m_all = (size_t)it[i].numel;
        if (!f16 && !ST_BIG_ENDIAN) {
            if ((rc = write_all(fd, src, m_all * 4))) return rc;
            continue;
        }
        /* F16, or big-endian hosts: convert / swap through a small buffer. */
        union {
            float f[1024];
            uint16_t h[1024];
        } tmp;
        for (size_t k = 0; k < m_all; k += 1024) {
            size_t m = m_all - k < 1024 ? m_all - k : 1024;
            if (f16) {
                for (size_t j = 0; j < m; j++) tmp.h[j] = dp_f32_to_f16(src[k + j]);
                if (ST_BIG_ENDIAN) swap16(tmp.h, m);
                rc = write_all(fd, tmp.h, m * 2);
            } else {
                memcpy(tmp.f, src + k, m * 4);
                swap32(tmp.f, m);
                rc = write_all(fd, tmp.f, m * 4);
            }
            if (rc) return rc;
        }
    }
    return 0;
}

/* fsync of the folder holding path, so the rename itself is durable. */
static int sync_dir(dp_ctx *ctx, const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? dp_malloc(ctx, (size_t)(slash - path) + 2) : NULL;
    if (slash && !dir) return ENOMEM;
    if (dir) {
        size_t k = slash == path ? 1 : (size_t)(slash - path); /* "/file" lives in "/" */
        memcpy(dir, path, k);
        dir[k] = 0;
    }
    int fd = open(dir ? dir : ".", O_RDONLY | O_CLOEXEC);
    dp_free(ctx, dir);
    if (fd < 0) return errno;
    int rc = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    /* Some file systems cannot sync a folder; that is not a failure of the save. */
    return (rc == EINVAL || rc == ENOTSUP) ? 0 : rc;
}

/* Removes PATH.tmp-<pid> files that saves killed half-way left behind (their
 * process is gone), so a training run killed again and again does not fill the
 * disk. Files of live processes (or of pids that cannot be checked) are kept. */
static void remove_stale_tmp(dp_ctx *ctx, const char *path) {
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    size_t dl = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 0, bl = strlen(base);
    char *dname = dl ? dp_malloc(ctx, dl + 1) : NULL;
    if (dl && !dname) return;
    if (dname) {
        memcpy(dname, path, dl);
        dname[dl] = 0;
    }
    DIR *d = opendir(dname ? dname : ".");
    dp_free(ctx, dname);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, base, bl) || strncmp(e->d_name + bl, ".tmp-", 5)) continue;
        const char *num = e->d_name + bl + 5;
        char *end;
        long pid = strtol(num, &end, 10);
        if (end == num || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* Writes header + items to path crash-safely: PATH.tmp-<pid>, fsync, rename, fsync of the folder.
 * A failed write leaves no temporary file and PATH as it was. */
static dp_status write_file(dp_ctx *ctx, const char *path, const char *header, const ck_item *it, int n, int f16) {
    char suffix[32];
    remove_stale_tmp(ctx, path);
    snprintf(suffix, sizeof suffix, ".tmp-%ld", (long)getpid());
    char *tmp = dup_str(ctx, path, suffix);
    if (!tmp) return dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
    dp_status s = DP_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), rc;
    if (fd < 0) {
        s = dp_error(ctx, DP_ERR_IO, "%s: cannot create the temporary file %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    if ((rc = write_body(fd, header, it, n, f16))) {
        s = dp_error(ctx, DP_ERR_IO, "%s: cannot write %s: %s", path, tmp, strerror(rc));
        goto done;
    }
    if (fsync(fd) != 0) {
        s = dp_error(ctx, DP_ERR_IO, "%s: cannot sync %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    rc = close(fd);
    fd = -1;
    if (rc != 0) {
        s = dp_error(ctx, DP_ERR_IO, "%s: cannot close %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = dp_error(ctx, DP_ERR_IO, "%s: cannot replace the file: %s", path, strerror(errno));
        goto done;
    }
    dp_free(ctx, tmp); /* renamed: nothing left to clean up */
    tmp = NULL;
    if ((rc = sync_dir(ctx, path)) != 0)
        s = dp_error(ctx, DP_ERR_IO, "%s: written, but its folder could not be synced: %s", path, strerror(rc));
done:
    if (fd >= 0) close(fd);
    if (tmp) {
        unlink(tmp);
        dp_free(ctx, tmp);
    }
    return s;
}

static dp_status storage_flag(dp_ctx *ctx, const char *path, dp_dtype storage, int *f16) {
    if (storage != DP_F32 && storage != DP_F16)
        return dp_error(ctx, DP_ERR_ARG, "%s: tensors can be stored as F32 or F16, not %s", path, dp_dtype_name(storage));
    *f16 = storage == DP_F16;
    return DP_OK;
}

dp_status dp_checkpoint_save(const char *path, dp_paramset *ps, dp_optim *optim, const char *arch,
                             const char *const *extra) {
    return dp_checkpoint_save_as(path, ps, optim, arch, extra, DP_F32);
}

dp_status dp_checkpoint_save_as(const char *path, dp_paramset *ps, dp_optim *optim, const char *arch,
                                const char *const *extra, dp_dtype storage) {
    if (!ps) return DP_ERR_NULL;
    dp_ctx *ctx = dp_paramset_ctx(ps);
    if (!path || !*path) return dp_error(ctx, DP_ERR_NULL, "dp_checkpoint_save: path is NULL or empty");
    int f16 = 0;
    dp_status s = storage_flag(ctx, path, storage, &f16);
    if (s) return s;
    if (optim && dp_optim_paramset(optim) != ps)
        return dp_error(ctx, DP_ERR_ARG, "%s: the optimiser was made for another paramset", path);
    for (int i = 0; extra && extra[i]; i += 2) {
        if (!extra[i + 1]) return dp_error(ctx, DP_ERR_ARG, "%s: metadata key '%s' has no value", path, extra[i]);
        if (is_reserved(extra[i]))
            return dp_error(ctx, DP_ERR_ARG, "%s: metadata key '%s' is written by doppel itself", path, extra[i]);
        for (int k = 0; k < i; k += 2)
            if (!strcmp(extra[k], extra[i])) return dp_error(ctx, DP_ERR_ARG, "%s: metadata key '%s' is given twice", path, extra[i]);
    }

    int n_ps = dp_paramset_count(ps), n_st = optim ? dp_optim_state_count(optim) : 0, n = n_ps + n_st;
    char *header = NULL;
    ck_item *it = dp_calloc(ctx, sizeof(ck_item) * (size_t)(n ? n : 1));
    char **onames = dp_calloc(ctx, sizeof(char *) * (size_t)(n_st ? n_st : 1));
    if (!it || !onames) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n_ps; i++) {
        dp_tensor *t = dp_paramset_at(ps, i);
        if (t->dtype != DP_F32 || !dp_tensor_is_contiguous(t)) {
            s = dp_error(ctx, DP_ERR_DTYPE, "%s: tensor '%s' is not a contiguous F32 tensor", path, t->name);
            goto done;
        }
        if (!strncmp(t->name, ST_OPTIM_PREFIX, strlen(ST_OPTIM_PREFIX)) && optim) {
            s = dp_error(ctx, DP_ERR_ARG, "%s: parameter '%s' would clash with the optimiser state names", path, t->name);
            goto done;
        }
        item_of(&it[i], t->name, t);
    }
    for (int i = 0; i < n_st; i++) {
        const char *sn;
        dp_tensor *t = dp_optim_state_at(optim, i, &sn);
        onames[i] = dup_str(ctx, ST_OPTIM_PREFIX, sn);
        if (!onames[i]) {
            s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        item_of(&it[n_ps + i], onames[i], t);
    }
    if (f16 && (s = check_f16_range(ctx, path, it, n)) != DP_OK) goto done;
    if ((s = build_header(ctx, path, it, n, optim, arch, extra, f16, &header)) != DP_OK) goto done;
    s = write_file(ctx, path, header, it, n, f16);
done:
    cJSON_free(header);
    for (int i = 0; onames && i < n_st; i++) dp_free(ctx, onames[i]);
    dp_free(ctx, onames);
    dp_free(ctx, it);
    return s;
}

/* ------------------------------------------------------------ load */

typedef struct ld_item {
    dp_tensor *t;
    const st_entry *e;
    size_t at; /* offset in the staging buffer */
} ld_item;

static int is_f16(const st_entry *e) { return !strcmp(e->dtype, "F16"); }

/* Reads entry e (F32 or F16) into buf, its size in the file, in host byte order, and checks that every
 * value is finite: a NaN or Inf weight would only show up later as NaN scores. */
static dp_status read_entry(st_file *f, const st_entry *e, unsigned char *buf) {
    size_t bytes = (size_t)(e->end - e->begin);
    int h = is_f16(e);
    int rc = pread_all(f->fd, buf, bytes, f->data_start + e->begin);
    if (rc)
        return rc == -1 ? dp_error(f->ctx, DP_ERR_FORMAT, "%s: truncated while reading tensor '%s'", f->path, e->name)
                        : dp_error(f->ctx, DP_ERR_IO, "%s: read error in tensor '%s': %s", f->path, e->name, strerror(rc));
    if (ST_BIG_ENDIAN) {
        if (h)
            swap16(buf, bytes / 2);
        else
            swap32(buf, bytes / 4);
    }
    for (size_t k = 0, n = bytes / (h ? 2 : 4); k < n; k++) {
        float v;
        if (h) {
            uint16_t u;
            memcpy(&u, buf + 2 * k, 2);
            v = dp_f16_to_f32(u);
        } else {
            memcpy(&v, buf + 4 * k, 4);
        }
        if (!isfinite(v))
            return dp_error(f->ctx, DP_ERR_NUMERIC, "%s: tensor '%s' holds a non-finite value (%s) at element %zu", f->path,
                            e->name, isnan(v) ? "NaN" : "Inf", k);
    }
    return DP_OK;
}

/* The staged bytes of entry e as floats (F16 widened exactly). */
static void decode_entry(const st_entry *e, const unsigned char *buf, float *dst) {
    size_t bytes = (size_t)(e->end - e->begin);
    if (!is_f16(e)) {
        memcpy(dst, buf, bytes);
        return;
    }
    for (size_t k = 0; k < bytes / 2; k++) {
        uint16_t u;
        memcpy(&u, buf + 2 * k, 2);
        dst[k] = dp_f16_to_f32(u);
    }
}

/* Finds name in the file and checks it against t; the message names both shapes. */
static dp_status match(st_file *f, const char *name, const char *what, const dp_tensor *t, const st_entry **out) {
    dp_ctx *ctx = f->ctx;
    const st_entry *e = st_find(f, name);
    if (!e) return dp_error(ctx, DP_ERR_NOT_FOUND, "%s: %s '%s' is missing from the file", f->path, what, name);
    if (strcmp(e->dtype, "F32") && strcmp(e->dtype, "F16"))
        return dp_error(ctx, DP_ERR_DTYPE, "%s: %s '%s' is %s in the file, the model expects F32 (or F16, read as F32)", f->path,
                        what, name, e->dtype);
    int same = e->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
    if (!same) {
        char a[256], b[64];
        return dp_error(ctx, DP_ERR_SHAPE, "%s: %s '%s' has shape %s in the file, the model expects %s", f->path, what, name,
                        dp_shape_str(e->ndim, e->shape, a, sizeof a), DP_SHAPE_STR(t, b));
    }
    *out = e;
    return DP_OK;
}

dp_status dp_checkpoint_load(const char *path, dp_paramset *ps, dp_optim *optim) {
    if (!ps) return DP_ERR_NULL;
    dp_ctx *ctx = dp_paramset_ctx(ps);
    if (!path || !*path) return dp_error(ctx, DP_ERR_NULL, "dp_checkpoint_load: path is NULL or empty");
    if (optim && dp_optim_paramset(optim) != ps)
        return dp_error(ctx, DP_ERR_ARG, "%s: the optimiser was made for another paramset", path);
    st_file f;
    dp_status s = st_open(ctx, path, &f);
    if (s) return s;

    int n_ps = dp_paramset_count(ps), n_st = optim ? dp_optim_state_count(optim) : 0, n = n_ps + n_st;
    ld_item *it = dp_calloc(ctx, sizeof(ld_item) * (size_t)(n ? n : 1));
    unsigned char *stage = NULL;
    char *sname = NULL;
    if (!it) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    /* 1. Everything the model needs is there, with the right dtype and shape. */
    size_t total = 0;
    for (int i = 0; i < n_ps; i++) {
        dp_tensor *t = dp_paramset_at(ps, i);
        if (t->dtype != DP_F32 || !dp_tensor_is_contiguous(t)) {
            s = dp_error(ctx, DP_ERR_DTYPE, "%s: tensor '%s' of the model is not a contiguous F32 tensor", path, t->name);
            goto done;
        }
        if ((s = match(&f, t->name, "tensor", t, &it[i].e)) != DP_OK) goto done;
        it[i].t = t;
    }
    for (int i = 0; i < n_st; i++) {
        const char *nm;
        dp_tensor *t = dp_optim_state_at(optim, i, &nm);
        dp_free(ctx, sname);
        if (!(sname = dup_str(ctx, ST_OPTIM_PREFIX, nm))) {
            s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        if ((s = match(&f, sname, "optimiser state", t, &it[n_ps + i].e)) != DP_OK) goto done;
        it[n_ps + i].t = t;
    }
    int64_t step = 0;
    if (optim) {
        const char *v = st_meta(&f, "doppel.step");
        char *endp = NULL;
        errno = 0;
        long long ll = v ? strtoll(v, &endp, 10) : -1;
        if (!v || !*v || *endp || errno || ll < 0) {
            s = dp_error(ctx, DP_ERR_FORMAT, "%s: metadata 'doppel.step' is %s%s%s; cannot restore the optimiser", path,
                         v ? "'" : "missing", v ? v : "", v ? "', not a step count" : "");
            goto done;
        }
        step = ll;
    }
    /* 2. Stage all the data, so an I/O error half-way changes nothing. */
    for (int i = 0; i < n; i++) {
        it[i].at = total;
        total += ((size_t)(it[i].e->end - it[i].e->begin) + 7) & ~(size_t)7;
    }
    stage = dp_malloc(ctx, total ? total : 1);
    if (!stage) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory staging %zu bytes", path, total);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if ((s = read_entry(&f, it[i].e, stage + it[i].at)) != DP_OK) goto done;
    /* 3. Commit. */
    for (int i = 0; i < n; i++) decode_entry(it[i].e, stage + it[i].at, it[i].t->data);
    if (optim) dp_optim_set_steps(optim, step);
done:
    dp_free(ctx, sname);
    dp_free(ctx, stage);
    dp_free(ctx, it);
    st_close(&f);
    return s;
}

/* ------------------------------------------------------------ convert */

static void convert_stats(const float *v, int64_t n, dp_convert_info *ci) {
    for (int64_t k = 0; k < n; k++) {
        double x = v[k], y = dp_f16_to_f32(dp_f32_to_f16(v[k])), err = fabs(y - x);
        if (err > ci->max_abs_err) ci->max_abs_err = err;
        if (fabs(x) >= 0x1p-14 && err / fabs(x) > ci->max_rel_err) ci->max_rel_err = err / fabs(x);
        if (x != 0 && y == 0) ci->flushed++;
        else if (y != 0 && fabs(y) < 0x1p-14) ci->subnormal++;
    }
}

dp_status dp_checkpoint_convert(dp_ctx *ctx, const char *in, const char *out, dp_dtype storage, dp_convert_info *info) {
    if (!ctx) return DP_ERR_NULL;
    if (info) memset(info, 0, sizeof *info);
    if (!in || !*in || !out || !*out) return dp_error(ctx, DP_ERR_NULL, "dp_checkpoint_convert: in and out are required");
    int f16 = 0;
    dp_status s = storage_flag(ctx, out, storage, &f16);
    if (s) return s;
    st_file f;
    if ((s = st_open(ctx, in, &f)) != DP_OK) return s;
    ck_item *it = dp_calloc(ctx, sizeof(ck_item) * (size_t)(f.n ? f.n : 1));
    float *vals = NULL;
    unsigned char *buf = NULL;
    char *header = NULL;
    cJSON *root = NULL;
    uint64_t total = 0, maxb = 0;
    if (!it) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", in);
        goto done;
    }
    for (int i = 0; i < f.n; i++) {
        const st_entry *e = &f.e[i];
        if (strcmp(e->dtype, "F32") && strcmp(e->dtype, "F16")) {
            s = dp_error(ctx, DP_ERR_DTYPE, "%s: tensor '%s' is %s; only F32 and F16 tensors can be converted", in, e->name,
                         e->dtype);
            goto done;
        }
        uint64_t numel = (e->end - e->begin) / (is_f16(e) ? 2 : 4);
        if (numel * 4 > (uint64_t)ctx->limits.max_tensor_bytes) {
            s = dp_error(ctx, DP_ERR_NOMEM, "%s: tensor '%s' takes %llu bytes as F32, above the limit of %llu (dp_limits.max_tensor_bytes)",
                         in, e->name, (unsigned long long)(numel * 4), (unsigned long long)ctx->limits.max_tensor_bytes);
            goto done;
        }
        if (e->end - e->begin > maxb) maxb = e->end - e->begin;
        it[i].name = e->name;
        it[i].ndim = e->ndim;
        it[i].shape = e->shape;
        it[i].numel = (int64_t)numel;
        total += numel;
    }
    vals = dp_malloc(ctx, (size_t)(total ? total : 1) * sizeof(float));
    buf = dp_malloc(ctx, (size_t)(maxb ? maxb : 1));
    if (!vals || !buf) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory for %llu values", in, (unsigned long long)total);
        goto done;
    }
    uint64_t at = 0;
    for (int i = 0; i < f.n; i++) {
        if ((s = read_entry(&f, &f.e[i], buf)) != DP_OK) goto done;
        decode_entry(&f.e[i], buf, vals + at);
        it[i].data = vals + at;
        at += (uint64_t)it[i].numel;
        if (info) {
            info->tensors++;
            info->values += it[i].numel;
            if (f16) convert_stats(it[i].data, it[i].numel, info);
        }
    }
    if (f16 && (s = check_f16_range(ctx, out, it, f.n)) != DP_OK) goto done;
    root = cJSON_CreateObject();
    cJSON *meta = root && f.meta ? cJSON_Duplicate(f.meta, 1) : NULL;
    if (meta && !cJSON_AddItemToObject(root, "__metadata__", meta)) {
        cJSON_Delete(meta);
        meta = NULL;
    }
    if (!root || (f.meta && !meta)) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory building the header", out);
        goto done;
    }
    if ((s = header_text(ctx, out, root, it, f.n, f16, &header)) != DP_OK) goto done;
    s = write_file(ctx, out, header, it, f.n, f16);
done:
    cJSON_free(header);
    cJSON_Delete(root);
    dp_free(ctx, buf);
    dp_free(ctx, vals);
    dp_free(ctx, it);
    st_close(&f);
    return s;
}

/* ------------------------------------------------------------ metadata */

dp_status dp_checkpoint_meta(dp_ctx *ctx, const char *path, const char *key, char *buf, size_t buf_size) {
    if (!ctx) return DP_ERR_NULL;
    if (!path || !key || !buf) return dp_error(ctx, DP_ERR_NULL, "dp_checkpoint_meta: path, key and buf are required");
    if (buf_size == 0) return dp_error(ctx, DP_ERR_ARG, "dp_checkpoint_meta: buf_size is 0");
    buf[0] = 0;
    st_file f;
    dp_status s = st_open(ctx, path, &f);
    if (s) return s;
    const char *v = st_meta(&f, key);
    if (!v) {
        s = dp_error(ctx, DP_ERR_NOT_FOUND, "%s: no metadata key '%s'", path, key);
    } else {
        size_t len = strlen(v);
        if (len >= buf_size)
            s = dp_error(ctx, DP_ERR_ARG, "%s: metadata '%s' needs %zu bytes, the buffer has %zu", path, key, len + 1, buf_size);
        else
            memcpy(buf, v, len + 1);
    }
    st_close(&f);
    return s;
}
