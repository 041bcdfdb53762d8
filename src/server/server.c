/* doppel serve — the HTTP side: GNU libmicrohttpd, one thread per
 * connection (an analysis blocks only its own connection), routing, limits,
 * the token, the embedded page. docs/server.md describes the API and the
 * security choices. */
#include <arpa/inet.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "doppel/doppel.h"
#include "server/server.h"

#ifndef DP_SOURCE_DIR
#define DP_SOURCE_DIR "."
#endif

typedef struct srv {
    serve_opts o;
    struct MHD_Daemon *d;
    serve_pool *pool;
    serve_jobs *jobs;
    pthread_mutex_t mu;
    int active;              /* job slots in use */
    int64_t requests, rejected_busy;
    time_t started;
    int loopback;
} srv;

enum route { R_OTHER = 0, R_DETECT, R_SCAN };

typedef struct req {
    srv *s;
    enum route route;
    int has_slot;
    int status;              /* answered with */
    double t0;
    struct MHD_PostProcessor *pp;
    char *buf;               /* the raw body, or the multipart file part */
    size_t len, cap;
    int parts;               /* file parts seen (multipart) */
    int form_error;          /* 400: more than one file, a bad name */
    char form_msg[320];
    int too_large;
    int declared;            /* the request has a Content-Length (checked against --max-upload) */
    int heatmap;
    int in_first;            /* inside the first call (headers only) */
    int drain;               /* a refusal at the first call waits for the (bounded) body: see send_error */
    int pending_status;      /* that refusal */
    char *pending_body;
    int64_t drained;
    char name[256];
    char method[8];
    char url[160];
} req;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* ------------------------------------------------------------ responses */
static void common_headers(struct MHD_Response *r) {
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "same-origin");
}

/* Queues a JSON body (malloc'd, taken over) with the given status. */
static enum MHD_Result send_json(struct MHD_Connection *c, req *q, int status, char *body) {
    if (!body) {
        body = strdup("{\"error\":{\"status\":500,\"code\":\"internal\",\"message\":\"out of memory\"}}");
        status = 500;
        if (!body) return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    common_headers(r);
    if (status == 429 || status == 503) MHD_add_response_header(r, "Retry-After", "2");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"doppel\"");
    if (q) q->status = status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, req *q, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(struct MHD_Connection *c, req *q, int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *body = serve_error_json(status, code, "%s", msg);
    if (q->in_first && q->drain && body) {
        /* Refused from the headers while a body is on its way: read and drop
         * it first, then answer, so that the client (a browser) reads the
         * answer instead of a reset connection. Only bodies of at most 4x
         * --max-upload are waited for; a 2 GB one is answered at once. */
        q->pending_status = status;
        q->pending_body = body;
        return MHD_YES;
    }
    return send_json(c, q, status, body);
}

static enum MHD_Result send_asset(struct MHD_Connection *c, req *q, const serve_asset *a, int head) {
    struct MHD_Response *r = MHD_create_response_from_buffer(head ? 0 : a->size, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", a->type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                            "media-src 'self' blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; "
                            "base-uri 'none'");
    common_headers(r);
    q->status = 200;
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ------------------------------------------------------------ checks */
static int is_loopback_host(const char *h) {
    /* Host header: name[:port] or [v6]:port */
    if (!h) return 0;
    char name[256];
    size_t n;
    if (h[0] == '[') {
        const char *e = strchr(h, ']');
        if (!e) return 0;
        n = (size_t)(e - h + 1);
    } else {
        const char *e = strchr(h, ':');
        n = e ? (size_t)(e - h) : strlen(h);
    }
    if (n == 0 || n >= sizeof name) return 0;
    memcpy(name, h, n);
    name[n] = 0;
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127; /* not "127.evil.example" */
    return !strcasecmp(name, "localhost") || !strcmp(name, "[::1]");
}

/* Constant-time comparison of the presented token. */
static int token_ok(const srv *s, struct MHD_Connection *c) {
    if (!s->o.token) return 1;
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Doppel-Token");
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!v && a && !strncasecmp(a, "Bearer ", 7)) v = a + 7;
    if (!v) return 0;
    size_t n = strlen(s->o.token), m = strlen(v);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)s->o.token[i] ^ (unsigned char)(i < m ? v[i] : 0);
    return diff == 0;
}

/* A display name for an upload: a plain file name. Anything that looks like
 * a path (a slash or backslash, "." or "..", control characters) is
 * refused: the name is never used to open a file, but a client sending one
 * is confused or probing. */
static int name_ok(const char *n, char *why, size_t nw) {
    size_t len = strlen(n);
    if (len == 0 || len > 255) return snprintf(why, nw, "a file name must have 1 to 255 bytes"), 0;
    if (!strcmp(n, ".") || !strcmp(n, "..")) return snprintf(why, nw, "'%s' is not a file name", n), 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)n[i];
        if (ch == '/' || ch == '\\') return snprintf(why, nw, "the file name must not contain a path (found '%c')", ch), 0;
        if (ch < 0x20 || ch == 0x7f) return snprintf(why, nw, "the file name contains a control character"), 0;
    }
    return 1;
}

static int take_slot(srv *s) {
    pthread_mutex_lock(&s->mu);
    int ok = s->active < s->o.max_jobs;
    if (ok) s->active++;
    else s->rejected_busy++;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void drop_slot(void *cls) {
    srv *s = cls;
    pthread_mutex_lock(&s->mu);
    int idle = --s->active == 0;
    pthread_mutex_unlock(&s->mu);
    if (idle) malloc_trim(0); /* give freed upload and image buffers back to the system */
}

/* ------------------------------------------------------------ bodies */
static int append(req *q, const char *data, size_t n) {
    if ((int64_t)(q->len + n) > q->s->o.max_upload) {
        q->too_large = 1;
        return 0;
    }
    if (q->len + n > q->cap) {
        size_t c = q->cap ? q->cap : 65536;
        while (c < q->len + n) c *= 2;
        char *nb = realloc(q->buf, c);
        if (!nb) {
            q->too_large = 1;
            return 0;
        }
        q->buf = nb, q->cap = c;
    }
    memcpy(q->buf + q->len, data, n);
    q->len += n;
    return 1;
}

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                 const char *content_type, const char *transfer_encoding, const char *data,
                                 uint64_t off, size_t size) {
    (void)kind, (void)content_type, (void)transfer_encoding;
    req *q = cls;
    if (!filename && !(key && !strcmp(key, "file"))) {
        /* a plain field: heatmap=0 (a field named "file" without a file name is taken as the file) */
        if (key && !strcmp(key, "heatmap") && size && off == 0) q->heatmap = data[0] != '0';
        return MHD_YES;
    }
    if (!filename) filename = "upload";
    if (off == 0 && (q->parts == 0 || q->len > 0)) {
        if (++q->parts > 1) {
            q->form_error = 1;
            snprintf(q->form_msg, sizeof q->form_msg, "one file per request (send each image in its own request)");
            return MHD_NO;
        }
        char why[300];
        if (!name_ok(filename, why, sizeof why)) {
            q->form_error = 1;
            snprintf(q->form_msg, sizeof q->form_msg, "%s", why);
            return MHD_NO;
        }
        snprintf(q->name, sizeof q->name, "%s", filename);
    }
    return size == 0 || append(q, data, size) ? MHD_YES : MHD_NO;
}

/* ------------------------------------------------------------ API */
static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static enum MHD_Result health(struct MHD_Connection *c, req *q) {
    srv *s = q->s;
    pthread_mutex_lock(&s->mu);
    int active = s->active;
    long long n = (long long)s->requests, busy = (long long)s->rejected_busy;
    pthread_mutex_unlock(&s->mu);
    char *b = malloc(640);
    if (b)
        snprintf(b, 640,
                 "{\"status\":\"ok\",\"version\":\"%s\",\"uptime_s\":%lld,\"video\":%s,\"workers\":%d,\"threads\":%d,"
                 "\"max_jobs\":%d,\"active_jobs\":%d,\"max_upload_bytes\":%lld,\"requests\":%lld,\"rejected_busy\":%lld,"
                 "\"token_required\":%s,\"rss_kb\":%ld}",
                 DP_VERSION_STRING, (long long)(time(NULL) - s->started), serve_jobs_supported() ? "true" : "false",
                 s->o.workers, s->o.threads, s->o.max_jobs, active, (long long)s->o.max_upload, n, busy,
                 s->o.token ? "true" : "false", rss_kb());
    return send_json(c, q, 200, b);
}

static const serve_asset *find_asset(const char *url) {
    if (!strcmp(url, "/")) url = "/index.html";
    for (size_t i = 0; i < serve_n_assets; i++)
        if (!strcmp(serve_assets[i].path, url)) return &serve_assets[i];
    return NULL;
}

static const char *content_type(struct MHD_Connection *c) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
}

static int type_is(const char *ct, const char *t) {
    size_t n = strlen(t);
    return ct && !strncasecmp(ct, t, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* First call of a POST to /detect or /scan: everything that can be refused
 * before a byte of the body is read. */
static enum MHD_Result start_upload(struct MHD_Connection *c, req *q) {
    srv *s = q->s;
    if (q->route == R_SCAN && !serve_jobs_supported())
        return send_error(c, q, 501, "no_video",
                          "this doppel was built without video support (FFmpeg's libraries); images: POST /api/v1/detect");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        q->declared = 1;
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (end == cl || v > (unsigned long long)INT64_MAX || (long long)v > s->o.max_upload)
            return send_error(c, q, 413, "too_large", "the body is %s bytes; this server takes at most %lld (--max-upload)",
                              cl, (long long)s->o.max_upload);
    }
    const char *ct = content_type(c);
    int image_type = type_is(ct, "image/png") || type_is(ct, "image/jpeg") || type_is(ct, "image/webp");
    int video_type = ct && !strncasecmp(ct, "video/", 6);
    int raw = type_is(ct, "application/octet-stream") || (q->route == R_DETECT ? image_type : video_type);
    if (type_is(ct, "multipart/form-data")) {
        q->pp = MHD_create_post_processor(c, 16384, post_iter, q);
        if (!q->pp) return send_error(c, q, 400, "bad_multipart", "multipart/form-data without a usable boundary");
    } else if (!raw)
        return send_error(c, q, 415, "unsupported_content_type",
                          "Content-Type '%.80s' is not accepted here: send multipart/form-data (field 'file'), "
                          "%s or application/octet-stream",
                          ct ? ct : "(none)", q->route == R_DETECT ? "image/png, image/jpeg, image/webp" : "video/*");
    else {
        const char *nm = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name");
        if (nm) {
            char why[300];
            if (!name_ok(nm, why, sizeof why)) return send_error(c, q, 400, "bad_file_name", "%s", why);
            snprintf(q->name, sizeof q->name, "%s", nm);
        }
    }
    if (!take_slot(s))
        return send_error(c, q, 429, "busy", "%d analyses are running or uploading (--max-jobs); try again shortly",
                          s->o.max_jobs);
    q->has_slot = 1;
    return MHD_YES;
}

static enum MHD_Result finish_upload(struct MHD_Connection *c, req *q) {
    if (q->pp) {
        enum MHD_Result ok = MHD_destroy_post_processor(q->pp);
        q->pp = NULL;
        if (q->form_error) return send_error(c, q, 400, "bad_form", "%s", q->form_msg);
        if (q->too_large)
            return send_error(c, q, 413, "too_large", "the file is larger than %lld bytes (--max-upload)",
                              (long long)q->s->o.max_upload);
        if (ok != MHD_YES)
            return send_error(c, q, 400, "truncated_multipart", "the multipart body is truncated or malformed (no closing boundary)");
        if (q->parts == 0) return send_error(c, q, 400, "no_file", "the form has no file part (send the image as field 'file')");
    }
    if (q->too_large)
        return send_error(c, q, 413, "too_large", "the body is larger than %lld bytes (--max-upload)", (long long)q->s->o.max_upload);
    if (q->len == 0) return send_error(c, q, 400, "empty", "the body is empty: send an image");
    serve_reply r = {0};
    if (q->route == R_DETECT) {
        serve_detect_opts o = {.heatmap = q->heatmap};
        serve_detect(q->s->pool, q->buf, q->len, q->name, &o, &r);
    } else {
        char id[64];
        q->has_slot = 0; /* the job keeps the slot until it ends */
        serve_jobs_submit(q->s->jobs, q->buf, q->len, q->name, drop_slot, q->s, id, sizeof id, &r);
        q->buf = NULL, q->len = q->cap = 0;
    }
    free(q->buf);
    q->buf = NULL;
    return send_json(c, q, r.status, r.body);
}

/* The first call: the headers are in, the body (if any) is not. */
static enum MHD_Result first_call(struct MHD_Connection *c, srv *s, req *q, const char *url, const char *method) {
    pthread_mutex_lock(&s->mu);
    s->requests++;
    pthread_mutex_unlock(&s->mu);
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (s->loopback && !is_loopback_host(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST)))
        return send_error(c, q, 403, "host_not_allowed",
                          "this server answers only to localhost / 127.0.0.1 / [::1] (Host header)");
    if (strncmp(url, "/api/", 5) != 0) {
        if (!get) return send_error(c, q, 405, "method_not_allowed", "%.16s is not allowed on the page", method);
        const serve_asset *a = find_asset(url);
        if (!a) return send_error(c, q, 404, "not_found", "no such page");
        return send_asset(c, q, a, method[0] == 'H');
    }
    const char *hm = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "heatmap");
    if (hm && hm[0] == '0') q->heatmap = 0;
    int is_health = !strcmp(url, "/api/v1/health");
    if (!is_health && !token_ok(s, c))
        return send_error(c, q, 401, "token_required",
                          "this server needs its API token (Authorization: Bearer T or X-Doppel-Token)");
    if (is_health || !strcmp(url, "/api/v1/models") || !strncmp(url, "/api/v1/jobs/", 13)) {
        if (!get) return send_error(c, q, 405, "method_not_allowed", "use GET");
        if (is_health) return health(c, q);
        if (url[8] == 'm') return send_json(c, q, 200, serve_pool_models_json(s->pool));
        serve_reply r = {0};
        serve_jobs_get(s->jobs, url + 13, &r);
        return send_json(c, q, r.status, r.body);
    }
    q->route = !strcmp(url, "/api/v1/detect") ? R_DETECT : !strcmp(url, "/api/v1/scan") ? R_SCAN : R_OTHER;
    if (q->route == R_OTHER) return send_error(c, q, 404, "not_found", "no such endpoint (see docs/openapi.yaml)");
    if (!post) return send_error(c, q, 405, "method_not_allowed", "use POST");
    return start_upload(c, q);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)version;
    srv *s = cls;
    req *q = *con_cls;
    if (!q) {
        if (!(q = calloc(1, sizeof *q))) return MHD_NO;
        *con_cls = q;
        q->s = s;
        q->t0 = now_ms();
        q->heatmap = 1;
        snprintf(q->name, sizeof q->name, "upload");
        snprintf(q->method, sizeof q->method, "%s", method);
        snprintf(q->url, sizeof q->url, "%s", url);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        long long declared = cl ? strtoll(cl, NULL, 10) : 0;
        q->drain = (declared > 0 && declared <= 4 * s->o.max_upload) || (te && (strstr(te, "chunked") || strstr(te, "Chunked")));
        q->in_first = 1;
        enum MHD_Result r = first_call(c, s, q, url, method);
        q->in_first = 0;
        return r;
    }
    if (q->pending_body) { /* refused at the first call: drop the body, then answer */
        if (*upload_data_size) {
            q->drained += (int64_t)*upload_data_size;
            *upload_data_size = 0;
            return q->drained > 4 * s->o.max_upload ? MHD_NO : MHD_YES;
        }
        char *b = q->pending_body;
        q->pending_body = NULL;
        return send_json(c, q, q->pending_status, b);
    }
    if (q->route == R_OTHER || q->status) { /* answered at the first call; the body is ignored */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->too_large || q->form_error) {
            /* The answer (400/413) waits for the end of the body, which the
             * Content-Length check bounded; a chunked body of unknown
             * length is cut off instead (the connection is closed). */
            return q->declared ? MHD_YES : MHD_NO;
        }
        if (q->pp) MHD_post_process(q->pp, upload_data, n);
        else append(q, upload_data, n);
        return (q->too_large || q->form_error) && !q->declared ? MHD_NO : MHD_YES;
    }
    return finish_upload(c, q);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    srv *s = cls;
    req *q = *con_cls;
    if (!q) return;
    if (q->pp) MHD_destroy_post_processor(q->pp);
    free(q->buf);
    free(q->pending_body);
    if (!s->o.quiet)
        fprintf(stderr, "doppel serve: %s %s -> %d (%.0f ms)%s\n", q->method, q->url, q->status, now_ms() - q->t0,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " [connection closed]");
    if (q->has_slot) drop_slot(s);
    free(q);
    *con_cls = NULL;
}

/* ------------------------------------------------------------ run */
static int parse_bind(const char *b, int port, struct sockaddr_storage *ss, socklen_t *len, int *loopback) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (!strcmp(b, "localhost")) b = "127.0.0.1";
    if (inet_pton(AF_INET, b, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
        return 1;
    }
    if (inet_pton(AF_INET6, b, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        return 1;
    }
    return 0;
}

int serve_run(const serve_opts *o) {
    srv s;
    memset(&s, 0, sizeof s);
    s.o = *o;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!parse_bind(o->bind, o->port, &ss, &sl, &s.loopback)) {
        fprintf(stderr, "doppel serve: --bind %s is not an IPv4 or IPv6 address\n", o->bind);
        return 2;
    }
    if (!s.loopback && !o->token && !o->insecure) {
        fprintf(stderr,
                "doppel serve: --bind %s reaches beyond this machine: give --token T (clients send it as "
                "'Authorization: Bearer T'), or --insecure to serve without one\n",
                o->bind);
        return 2;
    }
    char err[1024];
    if (!serve_pool_new(o->model, DP_SOURCE_DIR, o->workers, o->threads, &s.pool, err, sizeof err)) {
        fprintf(stderr, "doppel serve: %s\n", err);
        return 1;
    }
    if (!serve_jobs_new(s.pool, 64, &s.jobs)) {
        serve_pool_free(s.pool);
        fprintf(stderr, "doppel serve: out of memory\n");
        return 1;
    }
    pthread_mutex_init(&s.mu, NULL);
    s.started = time(NULL);
    /* Fixed mmap threshold: large buffers (uploads, decoded images) are
     * mapped and unmapped, not kept in the heap, so memory goes back down;
     * two malloc arenas instead of one per connection thread (measured after
     * the 200-request load test: +5 MB over the base instead of +7..11 MB). */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_ARENA_MAX, 2);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* MHD's threads inherit the mask; the main thread waits below */
    signal(SIGPIPE, SIG_IGN);
    s.d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                               (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                           (uint16_t)o->port, NULL, NULL, handler, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                           (unsigned)(o->max_jobs * 2 + 32), MHD_OPTION_NOTIFY_COMPLETED, completed, &s,
                           MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1 << 20), MHD_OPTION_END);
    int rc = 0;
    if (!s.d) {
        fprintf(stderr, "doppel serve: cannot listen on %s port %d (in use? not an address of this machine?)\n", o->bind,
                o->port);
        rc = 1;
    } else {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s.d, MHD_DAEMON_INFO_BIND_PORT);
        int port = di ? di->port : o->port;
        int v6 = ss.ss_family == AF_INET6;
        printf("doppel serve: listening on http://%s%s%s:%d/ (model %s; %d worker%s; uploads up to %lld MB; %d jobs at once%s)\n",
               v6 ? "[" : "", o->bind, v6 ? "]" : "", port, serve_pool_model_path(s.pool), o->workers,
               o->workers == 1 ? "" : "s", (long long)(o->max_upload >> 20), o->max_jobs,
               o->token ? "; API token required" : "");
        fflush(stdout);
        int sig = 0;
        sigwait(&set, &sig);
        fprintf(stderr, "doppel serve: stopping (signal %d)\n", sig);
        MHD_stop_daemon(s.d);
    }
    serve_jobs_free(s.jobs);
    serve_pool_free(s.pool);
    pthread_mutex_destroy(&s.mu);
    return rc;
}
