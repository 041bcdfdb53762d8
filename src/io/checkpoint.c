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
    const dp_tensor *t;
} ck_item;

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

/* Builds the JSON header text (cJSON-allocated) for the items, offsets in order. */
static dp_status build_header(dp_ctx *ctx, const char *path, const ck_item *it, int n, dp_optim *optim, const char *arch,
                              const char *const *extra, char **out) {
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
    uint64_t off = 0;
    for (int i = 0; ok && i < n; i++) {
        const dp_tensor *t = it[i].t;
        uint64_t bytes = (uint64_t)dp_numel(t) * sizeof(float);
        double shape[DP_MAX_DIMS], offs[2] = {(double)off, (double)(off + bytes)};
        for (int d = 0; d < t->ndim; d++) shape[d] = (double)t->shape[d];
        cJSON *e = cJSON_CreateObject();
        ok &= e != NULL;
        if (!ok) break;
        ok &= cJSON_AddStringToObject(e, "dtype", "F32") != NULL;
        ok &= cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, t->ndim));
        ok &= cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2));
        if (!cJSON_AddItemToObject(root, it[i].name, e)) {
            cJSON_Delete(e);
            ok = 0;
        }
        off += bytes;
    }
    if (ok) *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    cJSON_free(ojson);
    if (!*out) return dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory building the header", path);
    return DP_OK;
}

/* Writes the file body to fd; returns 0 or an errno. */
static int write_body(int fd, const char *header, const ck_item *it, int n) {
    size_t hl = strlen(header);
    size_t pad = (8 - hl % 8) % 8; /* the data starts 8-byte aligned, like safetensors' own writer */
    uint64_t len = hl + pad;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(len >> (8 * i));
    int rc;
    if ((rc = write_all(fd, lenb, 8)) || (rc = write_all(fd, header, hl)) || (rc = write_all(fd, "        ", pad))) return rc;
    for (int i = 0; i < n; i++) {
        const dp_tensor *t = it[i].t;
        size_t bytes = (size_t)dp_numel(t) * sizeof(float);
        if (!ST_BIG_ENDIAN) {
            if ((rc = write_all(fd, t->data, bytes))) return rc;
            continue;
        }
        /* Big-endian hosts: swap through a small buffer. */
        float tmp[1024];
        const float *src = t->data;
        for (size_t k = 0; k < bytes / 4; k += 1024) {
            size_t m = bytes / 4 - k < 1024 ? bytes / 4 - k : 1024;
            memcpy(tmp, src + k, m * 4);
            swap32(tmp, m);
            if ((rc = write_all(fd, tmp, m * 4))) return rc;
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

dp_status dp_checkpoint_save(const char *path, dp_paramset *ps, dp_optim *optim, const char *arch,
                             const char *const *extra) {
    if (!ps) return DP_ERR_NULL;
    dp_ctx *ctx = dp_paramset_ctx(ps);
    if (!path || !*path) return dp_error(ctx, DP_ERR_NULL, "dp_checkpoint_save: path is NULL or empty");
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
    dp_status s = DP_OK;
    char *header = NULL, *tmp = NULL;
    int fd = -1;
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
        it[i].name = t->name;
        it[i].t = t;
    }
    for (int i = 0; i < n_st; i++) {
        const char *sn;
        dp_tensor *t = dp_optim_state_at(optim, i, &sn);
        onames[i] = dup_str(ctx, ST_OPTIM_PREFIX, sn);
        if (!onames[i]) {
            s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        it[n_ps + i].name = onames[i];
        it[n_ps + i].t = t;
    }
    if ((s = build_header(ctx, path, it, n, optim, arch, extra, &header)) != DP_OK) goto done;

    char suffix[32];
    remove_stale_tmp(ctx, path);
    snprintf(suffix, sizeof suffix, ".tmp-%ld", (long)getpid());
    tmp = dup_str(ctx, path, suffix);
    if (!tmp) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s = dp_error(ctx, DP_ERR_IO, "%s: cannot create the temporary file %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    int rc = write_body(fd, header, it, n);
    if (rc) {
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
        unlink(tmp); /* a failed save leaves no temporary file and PATH as it was */
        dp_free(ctx, tmp);
    }
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

/* Finds name in the file and checks it against t; the message names both shapes. */
static dp_status match(st_file *f, const char *name, const char *what, const dp_tensor *t, const st_entry **out) {
    dp_ctx *ctx = f->ctx;
    const st_entry *e = st_find(f, name);
    if (!e) return dp_error(ctx, DP_ERR_NOT_FOUND, "%s: %s '%s' is missing from the file", f->path, what, name);
    if (strcmp(e->dtype, "F32"))
        return dp_error(ctx, DP_ERR_DTYPE, "%s: %s '%s' is %s in the file, the model expects F32", f->path, what, name, e->dtype);
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
        total += (size_t)(it[i].e->end - it[i].e->begin);
    }
    stage = dp_malloc(ctx, total ? total : 1);
    if (!stage) {
        s = dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory staging %zu bytes", path, total);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const st_entry *e = it[i].e;
        size_t bytes = (size_t)(e->end - e->begin);
        int rc = pread_all(f.fd, stage + it[i].at, bytes, f.data_start + e->begin);
        if (rc) {
            s = rc == -1 ? dp_error(ctx, DP_ERR_FORMAT, "%s: truncated while reading tensor '%s'", path, e->name)
                         : dp_error(ctx, DP_ERR_IO, "%s: read error in tensor '%s': %s", path, e->name, strerror(rc));
            goto done;
        }
        if (ST_BIG_ENDIAN) swap32(stage + it[i].at, bytes / 4);
        /* A NaN or Inf weight would only show up later as NaN scores: refuse it here. */
        const float *v = (const float *)(const void *)(stage + it[i].at);
        for (size_t k = 0; k < bytes / 4; k++)
            if (!isfinite(v[k])) {
                s = dp_error(ctx, DP_ERR_NUMERIC, "%s: tensor '%s' holds a non-finite value (%s) at element %zu", path,
                             e->name, isnan(v[k]) ? "NaN" : "Inf", k);
                goto done;
            }
    }
    /* 3. Commit. */
    for (int i = 0; i < n; i++) memcpy(it[i].t->data, stage + it[i].at, (size_t)(it[i].e->end - it[i].e->begin));
    if (optim) dp_optim_set_steps(optim, step);
done:
    dp_free(ctx, sname);
    dp_free(ctx, stage);
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
