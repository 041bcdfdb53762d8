/* doppel serve: a C client over loopback against the real executable.
 *
 * Endpoints (page, health, models, detect raw and multipart — the same
 * verdict and boxes as `doppel detect --json` — scan), bad requests (wrong
 * content type, truncated multipart, a 2 GB declared body never sent, a
 * non-image, path tricks in URLs and file names, wrong methods, an empty
 * body) each answered with a 4xx JSON error while the server keeps serving,
 * the job limit (429), the token, the refusal of a non-local bind without a
 * token, the idle timeout, and a load test: 200 image requests at
 * concurrency 8, all answered, memory back to its base afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "doppel/doppel.h"
#include "util/files.h"
#ifdef DP_HAVE_FFMPEG
#include "doppel/video.h"
#endif

#define ASTRONAUT "/usr/lib/python3/dist-packages/skimage/data/astronaut.png"

/* ------------------------------------------------------------ the server process */
typedef struct server {
    pid_t pid;
    int port;
} server;

/* Starts `doppel serve --port 0 --quiet ARGS...` and reads the port from its first line. */
static int server_start(server *s, const char *const *args) {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    const char *argv[32] = {DP_CLI_PATH, "serve", "--port", "0", "--quiet"};
    int n = 5;
    for (int i = 0; args && args[i] && n < 30; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv(DP_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    char line[1024];
    size_t len = 0;
    s->pid = pid;
    s->port = 0;
    for (;;) {
        struct pollfd p = {fd[0], POLLIN, 0};
        if (poll(&p, 1, 60000) <= 0) break;
        ssize_t k = read(fd[0], line + len, sizeof line - 1 - len);
        if (k <= 0) break;
        len += (size_t)k;
        line[len] = 0;
        const char *m = strstr(line, "http://127.0.0.1:");
        if (m && strchr(m, '/' ) && strchr(m + 17, '/')) {
            s->port = atoi(m + 17);
            break;
        }
        if (len == sizeof line - 1) break;
    }
    close(fd[0]);
    return s->port > 0;
}

static int server_alive(const server *s) { return waitpid(s->pid, NULL, WNOHANG) == 0; }

static void server_stop(server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
    s->pid = 0;
}

static long rss_kb(pid_t pid) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    fclose(f);
    return v;
}

/* ------------------------------------------------------------ the client */
typedef struct resp {
    int status;
    char *head, *body; /* malloc'd, 0-terminated */
    size_t body_len;
    cJSON *json;       /* parsed body (NULL when not JSON) */
} resp;

static void resp_free(resp *r) {
    free(r->head);
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *b, size_t n) {
    for (size_t off = 0; off < n;) {
        ssize_t k = send(fd, (const char *)b + off, n - off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        off += (size_t)k;
    }
    return 1;
}

/* Reads until the server closes (requests say Connection: close); 120 s at most. */
static int read_resp(int fd, resp *r) {
    memset(r, 0, sizeof *r);
    size_t cap = 65536, len = 0;
    char *b = malloc(cap);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 120000) <= 0) break;
        if (len + 4096 > cap) b = realloc(b, cap *= 2);
        ssize_t k = recv(fd, b + len, cap - len - 1, 0);
        if (k <= 0) break;
        len += (size_t)k;
    }
    b[len] = 0;
    char *sep = strstr(b, "\r\n\r\n");
    if (!sep || sscanf(b, "HTTP/1.%*d %d", &r->status) != 1) {
        free(b);
        return 0;
    }
    *sep = 0;
    r->head = strdup(b);
    r->body_len = len - (size_t)(sep + 4 - b);
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, sep + 4, r->body_len);
    r->body[r->body_len] = 0;
    free(b);
    r->json = cJSON_Parse(r->body);
    return 1;
}

/* One request: head (method, path, extra header lines) + body. */
static int request(int port, const char *method, const char *path, const char *extra_headers, const void *body,
                   size_t n, resp *r) {
    int fd = connect_to(port);
    if (fd < 0) return 0;
    char head[2048];
    int k = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s", method, path,
                     port, extra_headers ? extra_headers : "");
    if (body || !strcmp(method, "POST")) k += snprintf(head + k, sizeof head - (size_t)k, "Content-Length: %zu\r\n", n);
    snprintf(head + k, sizeof head - (size_t)k, "\r\n");
    int ok = send_all(fd, head, strlen(head)) && (!n || send_all(fd, body, n)) && read_resp(fd, r);
    close(fd);
    return ok;
}

static int get(int port, const char *path, resp *r) { return request(port, "GET", path, NULL, NULL, 0, r); }

#define BOUNDARY "----doppelTestBoundary7MA4YWxkTrZu0gW"
/* A multipart body with one file part (closing boundary left out when truncated). */
static char *multipart(const char *filename, const void *data, size_t n, int truncated, size_t *out_n) {
    char head[512];
    int h = snprintf(head, sizeof head,
                     "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n",
                     filename);
    const char *tail = "\r\n--" BOUNDARY "--\r\n";
    size_t tn = truncated ? 0 : strlen(tail);
    char *b = malloc((size_t)h + n + tn);
    memcpy(b, head, (size_t)h);
    memcpy(b + h, data, n);
    memcpy(b + h + n, tail, tn);
    *out_n = (size_t)h + n + tn;
    return b;
}
#define MP_HEADER "Content-Type: multipart/form-data; boundary=" BOUNDARY "\r\n"

static int has_error_json(const resp *r, int status) {
    cJSON *e = r->json ? cJSON_GetObjectItem(r->json, "error") : NULL;
    cJSON *st = e ? cJSON_GetObjectItem(e, "status") : NULL;
    cJSON *msg = e ? cJSON_GetObjectItem(e, "message") : NULL;
    if (r->status != status || !st || st->valueint != status || !cJSON_IsString(msg) || !msg->valuestring[0]) {
        fprintf(stderr, "expected a %d JSON error, got %d: %.300s\n", status, r->status, r->body ? r->body : "(nothing)");
        return 0;
    }
    return strstr(r->head, "application/json") != NULL;
}

/* ------------------------------------------------------------ fixtures */
static server S;
static unsigned char *IMG;      /* a PNG with a face */
static size_t IMG_N;
static char IMG_PATH[512];

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int quick(void) { return getenv("DP_TEST_QUICK") && atoi(getenv("DP_TEST_QUICK")); }

static int setup(void **state) {
    (void)state;
#ifndef DP_HAVE_MHD
    return 0;
#else
    /* the face: skimage's astronaut (public domain) when present, else a grey gradient written here */
    if (access(ASTRONAUT, R_OK) == 0) snprintf(IMG_PATH, sizeof IMG_PATH, "%s", ASTRONAUT);
    else {
        dp_ctx *ctx;
        dp_image im = {0};
        dp_ctx_new(NULL, &ctx);
        dp_image_alloc(ctx, 3, 96, 128, &im);
        for (int i = 0; i < 3 * 96 * 128; i++) im.data[i] = (float)(i % 128) / 128.0f;
        snprintf(IMG_PATH, sizeof IMG_PATH, "serve_test_image.png");
        dp_image_save_png(ctx, IMG_PATH, &im);
        dp_image_free(ctx, &im);
        dp_ctx_free(ctx);
    }
    IMG = dp_test_read_file(IMG_PATH, &IMG_N);
    if (!IMG) return -1;
    const char *args[] = {"--max-upload", "4", NULL};
    if (server_start(&S, args)) return 0;
    /* without opencv-data's face cascade the server cannot start: skip (it printed why) */
    dp_ctx *ctx;
    dp_face_detector *fd = NULL;
    dp_ctx_new(NULL, &ctx);
    int have_cascade = dp_face_detector_default(ctx, &fd) == DP_OK;
    dp_face_detector_free(fd);
    dp_ctx_free(ctx);
    server_stop(&S);
    S.port = 0;
    if (!have_cascade) fprintf(stderr, "skipped: no face cascade (apt-get install opencv-data)\n");
    return have_cascade ? -1 : 0;
#endif
}

static int teardown(void **state) {
    (void)state;
    server_stop(&S);
    free(IMG);
    return 0;
}

#define NEED_MHD()                                                                                                     \
    do {                                                                                                               \
        if (!S.port) {                                                                                                 \
            fprintf(stderr, "skipped: doppel was built without libmicrohttpd, or the face cascade is missing\n");                                     \
            skip();                                                                                                    \
        }                                                                                                              \
    } while (0)

/* ------------------------------------------------------------ tests */
static void test_page_and_info(void **state) {
    (void)state;
    NEED_MHD();
    resp r;
    assert_true(get(S.port, "/", &r));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "text/html"));
    assert_non_null(strstr(r.head, "Content-Security-Policy"));
    assert_non_null(strstr(r.body, "/app.js"));
    resp_free(&r);
    assert_true(get(S.port, "/app.js", &r));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "text/javascript"));
    resp_free(&r);
    assert_true(get(S.port, "/api/v1/health", &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(cJSON_GetObjectItem(r.json, "status")->valuestring, "ok");
    resp_free(&r);
    assert_true(get(S.port, "/api/v1/models", &r));
    assert_int_equal(r.status, 200);
    cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "models"), 0);
    assert_non_null(m);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(m, "card")));
    assert_non_null(cJSON_GetObjectItem(m, "thresholds"));
    resp_free(&r);
}

/* The same verdict, score and boxes as `doppel detect --json` on the same file. */
static void check_like_cli(const cJSON *j) {
    char cmd[1200], line[16384];
    snprintf(cmd, sizeof cmd, "'%s' detect --json '%s'", DP_CLI_PATH, IMG_PATH);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof line, p));
    pclose(p);
    cJSON *c = cJSON_Parse(line);
    assert_non_null(c);
    assert_string_equal(cJSON_GetObjectItem(c, "verdict")->valuestring, cJSON_GetObjectItem(j, "verdict")->valuestring);
    assert_true(fabs(cJSON_GetObjectItem(c, "p_fake")->valuedouble - cJSON_GetObjectItem(j, "p_fake")->valuedouble) < 1e-3);
    assert_int_equal(cJSON_GetObjectItem(c, "faces_found")->valueint, cJSON_GetObjectItem(j, "faces_found")->valueint);
    cJSON *cf = cJSON_GetObjectItem(c, "faces"), *sf = cJSON_GetObjectItem(j, "faces");
    assert_int_equal(cJSON_GetArraySize(cf), cJSON_GetArraySize(sf));
    for (int i = 0; i < cJSON_GetArraySize(cf); i++) {
        cJSON *a = cJSON_GetObjectItem(cJSON_GetArrayItem(cf, i), "box"), *b = cJSON_GetObjectItem(cJSON_GetArrayItem(sf, i), "box");
        for (int k = 0; k < 4; k++) assert_int_equal(cJSON_GetArrayItem(a, k)->valueint, cJSON_GetArrayItem(b, k)->valueint);
    }
    assert_non_null(cJSON_GetObjectItem(j, "watermark"));
    cJSON_Delete(c);
}

static void test_detect(void **state) {
    (void)state;
    NEED_MHD();
    resp r;
    /* raw body, heat map */
    assert_true(request(S.port, "POST", "/api/v1/detect?name=face.png", "Content-Type: image/png\r\n", IMG, IMG_N, &r));
    assert_int_equal(r.status, 200);
    assert_non_null(r.json);
    assert_string_equal(cJSON_GetObjectItem(r.json, "file")->valuestring, "face.png");
    check_like_cli(r.json);
    cJSON *f0 = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "faces"), 0);
    cJSON *h = cJSON_GetObjectItem(f0, "heatmap");
    assert_non_null(h);
    int side = cJSON_GetObjectItem(h, "side")->valueint;
    assert_true(side >= 8);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(h, "values")), side * side);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(h, "square")), 4);
    assert_non_null(cJSON_GetObjectItem(r.json, "label"));
    resp_free(&r);
    /* multipart, no heat map */
    size_t n;
    char *mp = multipart("portrait.png", IMG, IMG_N, 0, &n);
    assert_true(request(S.port, "POST", "/api/v1/detect?heatmap=0", MP_HEADER, mp, n, &r));
    free(mp);
    assert_int_equal(r.status, 200);
    assert_string_equal(cJSON_GetObjectItem(r.json, "file")->valuestring, "portrait.png");
    check_like_cli(r.json);
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "faces"), 0), "heatmap"));
    resp_free(&r);
}

static void test_bad_requests(void **state) {
    (void)state;
    NEED_MHD();
    resp r;
    size_t n;
    /* wrong content type */
    assert_true(request(S.port, "POST", "/api/v1/detect", "Content-Type: application/json\r\n", "{}", 2, &r));
    assert_true(has_error_json(&r, 415));
    resp_free(&r);
    assert_true(request(S.port, "POST", "/api/v1/detect", NULL, IMG, 64, &r)); /* no Content-Type at all */
    assert_true(has_error_json(&r, 415));
    resp_free(&r);
    /* truncated multipart: the closing boundary never comes */
    char *mp = multipart("a.png", IMG, IMG_N / 2, 1, &n);
    assert_true(request(S.port, "POST", "/api/v1/detect", MP_HEADER, mp, n, &r));
    free(mp);
    assert_true(has_error_json(&r, 400));
    resp_free(&r);
    /* multipart without a file part */
    const char *nofile = "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"heatmap\"\r\n\r\n0\r\n--" BOUNDARY "--\r\n";
    assert_true(request(S.port, "POST", "/api/v1/detect", MP_HEADER, nofile, strlen(nofile), &r));
    assert_true(has_error_json(&r, 400));
    resp_free(&r);
    /* a 2 GB body declared, a few bytes sent: refused from the Content-Length before reading */
    {
        int fd = connect_to(S.port);
        assert_true(fd >= 0);
        char head[512];
        snprintf(head, sizeof head,
                 "POST /api/v1/detect HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: image/png\r\n"
                 "Content-Length: 2147483648\r\nConnection: close\r\n\r\n",
                 S.port);
        assert_true(send_all(fd, head, strlen(head)));
        send_all(fd, IMG, 1024);
        assert_true(read_resp(fd, &r));
        close(fd);
        assert_true(has_error_json(&r, 413));
        resp_free(&r);
    }
    /* over --max-upload (4 MB) by a little, sent in full */
    {
        size_t big = (4u << 20) + 10;
        char *b = calloc(1, big);
        assert_true(request(S.port, "POST", "/api/v1/detect", "Content-Type: image/png\r\n", b, big, &r));
        free(b);
        assert_true(has_error_json(&r, 413));
        resp_free(&r);
    }
    /* not an image (raw and multipart), a corrupt image, an empty body */
    const char *text = "this is not an image, just some text that pretends to be one";
    assert_true(request(S.port, "POST", "/api/v1/detect", "Content-Type: image/png\r\n", text, strlen(text), &r));
    assert_true(has_error_json(&r, 415));
    resp_free(&r);
    mp = multipart("notes.txt", text, strlen(text), 0, &n);
    assert_true(request(S.port, "POST", "/api/v1/detect", MP_HEADER, mp, n, &r));
    free(mp);
    assert_true(has_error_json(&r, 415));
    resp_free(&r);
    assert_true(request(S.port, "POST", "/api/v1/detect", "Content-Type: image/png\r\n", IMG, IMG_N / 3, &r));
    assert_true(has_error_json(&r, 422));
    resp_free(&r);
    assert_true(request(S.port, "POST", "/api/v1/detect", "Content-Type: image/png\r\n", NULL, 0, &r));
    assert_true(has_error_json(&r, 400));
    resp_free(&r);
    /* path tricks in file names */
    static const char *const names[] = {"../../etc/passwd", "..\\\\..\\\\windows\\\\win.ini", "/etc/passwd", "..",
                                        "a/../../b.png", NULL};
    for (int i = 0; names[i]; i++) {
        mp = multipart(names[i], IMG, IMG_N, 0, &n);
        assert_true(request(S.port, "POST", "/api/v1/detect", MP_HEADER, mp, n, &r));
        free(mp);
        assert_true(has_error_json(&r, 400));
        resp_free(&r);
    }
    assert_true(request(S.port, "POST", "/api/v1/detect?name=..%2F..%2Fetc%2Fpasswd", "Content-Type: image/png\r\n", IMG,
                        IMG_N, &r));
    assert_true(has_error_json(&r, 400));
    resp_free(&r);
    /* path tricks in URLs: nothing but the embedded page is ever served */
    static const char *const paths[] = {"/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                                        "/web/../CMakeLists.txt", "//etc/passwd", "/index.html/../../README.md",
                                        "/api/v1/../../../etc/passwd", "/api/v1/jobs/../../../etc/passwd", NULL};
    for (int i = 0; paths[i]; i++) {
        assert_true(get(S.port, paths[i], &r));
        assert_true(r.status >= 400 && r.status < 500);
        assert_true(has_error_json(&r, r.status));
        assert_null(strstr(r.body, "root:"));
        resp_free(&r);
    }
    /* wrong methods, unknown endpoints, another Host (DNS rebinding) */
    assert_true(get(S.port, "/api/v1/detect", &r));
    assert_true(has_error_json(&r, 405));
    resp_free(&r);
    assert_true(request(S.port, "DELETE", "/api/v1/health", NULL, NULL, 0, &r));
    assert_true(has_error_json(&r, 405));
    resp_free(&r);
    assert_true(get(S.port, "/api/v2/detect", &r));
    assert_true(has_error_json(&r, 404));
    resp_free(&r);
    static const char *const hosts[] = {"attacker.example", "127.attacker.example", "localhost.attacker.example:80", NULL};
    for (int i = 0; hosts[i]; i++) {
        int fd = connect_to(S.port);
        char h[256];
        snprintf(h, sizeof h, "GET /api/v1/health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", hosts[i]);
        assert_true(send_all(fd, h, strlen(h)) && read_resp(fd, &r));
        close(fd);
        assert_true(has_error_json(&r, 403));
        resp_free(&r);
    }
    /* a request line that is not HTTP at all */
    {
        int fd = connect_to(S.port);
        const char *junk = "\x16\x03\x01 garbage garbage\r\n\r\n";
        send_all(fd, junk, strlen(junk));
        read_resp(fd, &r);
        close(fd);
        resp_free(&r);
    }
    /* ... and it keeps serving */
    assert_true(server_alive(&S));
    assert_true(request(S.port, "POST", "/api/v1/detect?heatmap=0", "Content-Type: image/png\r\n", IMG, IMG_N, &r));
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* ------------------------------------------------------------ load */
typedef struct loader {
    int port, n, ok, failed;
    int codes[8];
} loader;

static unsigned char *SMALL; /* the face at 256 px: the load test's image */
static size_t SMALL_N;

static void *load_thread(void *arg) {
    loader *l = arg;
    for (int i = 0; i < l->n; i++) {
        resp r;
        if (request(l->port, "POST", "/api/v1/detect?heatmap=0", "Content-Type: image/png\r\n", SMALL, SMALL_N, &r) &&
            r.status == 200 && r.json && cJSON_GetObjectItem(r.json, "verdict"))
            l->ok++;
        else {
            if (l->failed < 8) l->codes[l->failed] = r.status;
            l->failed++;
        }
        resp_free(&r);
    }
    return NULL;
}

static void test_load(void **state) {
    (void)state;
    NEED_MHD();
    enum { CONC = 8 };
    int total = quick() ? 24 : 200;
    resp r;
    {
        dp_ctx *ctx;
        dp_image im = {0}, sm = {0};
        char dir[64] = "/tmp/doppel-test-serve-XXXXXX", p[128];
        assert_non_null(mkdtemp(dir));
        snprintf(p, sizeof p, "%s/small.png", dir);
        dp_ctx_new(NULL, &ctx);
        assert_int_equal(dp_image_decode(ctx, IMG, IMG_N, "face", 3, NULL, &im), DP_OK);
        assert_int_equal(dp_image_resize(ctx, &im, im.height * 256 / im.width, 256, &sm), DP_OK);
        assert_int_equal(dp_image_save_png(ctx, p, &sm), DP_OK);
        SMALL = dp_test_read_file(p, &SMALL_N);
        unlink(p);
        rmdir(dir);
        dp_image_free(ctx, &im);
        dp_image_free(ctx, &sm);
        dp_ctx_free(ctx);
        assert_non_null(SMALL);
    }
    for (int i = 0; i < 4; i++) { /* warm up: every worker has run */
        assert_true(request(S.port, "POST", "/api/v1/detect?heatmap=0", "Content-Type: image/png\r\n", SMALL, SMALL_N, &r));
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    long base = rss_kb(S.pid);
    pthread_t th[CONC];
    loader l[CONC];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < CONC; i++) {
        l[i] = (loader){.port = S.port, .n = total / CONC};
        pthread_create(&th[i], NULL, load_thread, &l[i]);
    }
    int ok = 0, failed = 0;
    long peak = base;
    for (int i = 0; i < CONC; i++) {
        pthread_join(th[i], NULL);
        ok += l[i].ok, failed += l[i].failed;
        for (int k = 0; k < l[i].failed && k < 8; k++) fprintf(stderr, "load: a request got %d\n", l[i].codes[k]);
        long now = rss_kb(S.pid);
        peak = now > peak ? now : peak;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    /* idle again: the server gives memory back when its last request ends */
    assert_true(get(S.port, "/api/v1/health", &r));
    resp_free(&r);
    long after = rss_kb(S.pid);
    free(SMALL);
    printf("load: %d requests (%zu-byte PNG, 256 px wide) at concurrency %d: %d answered 200, %d failed, %.1f s (%.1f req/s); "
           "server RSS base %ld KB, after %ld KB (%+ld KB), highest seen %ld KB\n",
           total, SMALL_N, CONC, ok, failed, wall, total / wall, base, after, after - base, peak);
    assert_int_equal(ok, total);
    assert_int_equal(failed, 0);
#if defined(__SANITIZE_ADDRESS__)
    printf("load: memory not compared under AddressSanitizer (its quarantine keeps freed memory)\n");
#else
    /* back to base: within 10 % + 8 MB (allocator granularity, cached thread stacks) */
    assert_true(after <= base + base / 10 + 8192);
#endif
    assert_true(server_alive(&S));
}

/* --max-jobs 1: an upload in progress holds the only slot; another request gets 429, then both finish. */
static void test_busy(void **state) {
    (void)state;
    NEED_MHD();
    server s2;
    const char *args[] = {"--max-jobs", "1", NULL};
    assert_true(server_start(&s2, args));
    int fd = connect_to(s2.port);
    char head[512];
    snprintf(head, sizeof head,
             "POST /api/v1/detect?heatmap=0 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: image/png\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
             s2.port, IMG_N);
    assert_true(send_all(fd, head, strlen(head)) && send_all(fd, IMG, IMG_N / 2));
    resp r;
    int active = 0;
    for (int i = 0; i < 600 && !active; i++) { /* until the server has taken the first upload's slot */
        assert_true(get(s2.port, "/api/v1/health", &r));
        active = cJSON_GetObjectItem(r.json, "active_jobs")->valueint;
        resp_free(&r);
        if (!active) sleep_ms(20);
    }
    assert_int_equal(active, 1);
    assert_true(request(s2.port, "POST", "/api/v1/detect", "Content-Type: image/png\r\n", IMG, IMG_N, &r));
    assert_true(has_error_json(&r, 429));
    assert_non_null(strstr(r.head, "Retry-After"));
    resp_free(&r);
    assert_true(send_all(fd, IMG + IMG_N / 2, IMG_N - IMG_N / 2) && read_resp(fd, &r));
    close(fd);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(request(s2.port, "POST", "/api/v1/detect?heatmap=0", "Content-Type: image/png\r\n", IMG, IMG_N, &r));
    assert_int_equal(r.status, 200);
    resp_free(&r);
    server_stop(&s2);
}

static void test_token_and_bind(void **state) {
    (void)state;
    NEED_MHD();
    server s2;
    const char *args[] = {"--token", "s3cret-token", NULL};
    assert_true(server_start(&s2, args));
    resp r;
    assert_true(get(s2.port, "/api/v1/models", &r));
    assert_true(has_error_json(&r, 401));
    resp_free(&r);
    assert_true(request(s2.port, "GET", "/api/v1/models", "Authorization: Bearer wrong-token\r\n", NULL, 0, &r));
    assert_true(has_error_json(&r, 401));
    resp_free(&r);
    assert_true(request(s2.port, "POST", "/api/v1/detect", "Content-Type: image/png\r\n", IMG, IMG_N, &r));
    assert_true(has_error_json(&r, 401));
    resp_free(&r);
    assert_true(request(s2.port, "GET", "/api/v1/models", "Authorization: Bearer s3cret-token\r\n", NULL, 0, &r));
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(request(s2.port, "GET", "/api/v1/models", "X-Doppel-Token: s3cret-token\r\n", NULL, 0, &r));
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(get(s2.port, "/api/v1/health", &r)); /* health and the page need no token */
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(get(s2.port, "/", &r));
    assert_int_equal(r.status, 200);
    resp_free(&r);
    server_stop(&s2);
    /* a bind beyond this machine without a token is refused before listening */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' serve --bind 0.0.0.0 --port 0 2>&1", DP_CLI_PATH);
    FILE *p = popen(cmd, "r");
    char out[1024] = "";
    size_t k = fread(out, 1, sizeof out - 1, p);
    out[k] = 0;
    int st = pclose(p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    assert_non_null(strstr(out, "--token"));
}

/* --timeout 1: a client that sends half a request is dropped. */
static void test_timeout(void **state) {
    (void)state;
    NEED_MHD();
    server s2;
    const char *args[] = {"--timeout", "1", NULL};
    assert_true(server_start(&s2, args));
    int fd = connect_to(s2.port);
    const char *half = "POST /api/v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    assert_true(send_all(fd, half, strlen(half)));
    char b[256];
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 30000), 1); /* closed by the server well before 30 s */
    (void)recv(fd, b, sizeof b, 0); /* closed (0) or an error response */
    close(fd);
    resp r;
    assert_true(get(s2.port, "/api/v1/health", &r));
    assert_int_equal(r.status, 200);
    resp_free(&r);
    server_stop(&s2);
}

static void test_scan(void **state) {
    (void)state;
    NEED_MHD();
    resp r;
    assert_true(get(S.port, "/api/v1/health", &r));
    int video = cJSON_IsTrue(cJSON_GetObjectItem(r.json, "video"));
    resp_free(&r);
    assert_true(get(S.port, "/api/v1/jobs/0123456789abcdef0123456789abcdef", &r));
    assert_true(has_error_json(&r, 404));
    resp_free(&r);
    if (!video) {
        assert_true(request(S.port, "POST", "/api/v1/scan", "Content-Type: video/mp4\r\n", "x", 1, &r));
        assert_true(has_error_json(&r, 501));
        resp_free(&r);
        return;
    }
#ifdef DP_HAVE_FFMPEG
    /* not a video container: refused before anything is written */
    assert_true(request(S.port, "POST", "/api/v1/scan", "Content-Type: video/mp4\r\n", IMG, IMG_N, &r));
    assert_true(has_error_json(&r, 415));
    resp_free(&r);
    const char *m3u = "#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n";
    assert_true(request(S.port, "POST", "/api/v1/scan", "Content-Type: application/octet-stream\r\n", m3u, strlen(m3u), &r));
    assert_true(has_error_json(&r, 415));
    resp_free(&r);
    /* a short video of the face */
    dp_ctx *ctx;
    dp_ctx_new(NULL, &ctx);
    dp_image im = {0}, sm = {0};
    assert_int_equal(dp_image_load(ctx, IMG_PATH, 3, NULL, &im), DP_OK);
    assert_int_equal(dp_image_resize(ctx, &im, 256, 256, &sm), DP_OK);
    char dir[64] = "/tmp/doppel-test-serve-XXXXXX", vp[128];
    assert_non_null(mkdtemp(dir));
    snprintf(vp, sizeof vp, "%s/clip.mp4", dir);
    dp_status st = dp_video_write_test(ctx, vp, &sm, quick() ? 6 : 12, 6, 0, 0);
    if (st != DP_OK) fprintf(stderr, "dp_video_write_test: %s\n", dp_ctx_error(ctx));
    size_t n = 0;
    unsigned char *v = st == DP_OK ? dp_test_read_file(vp, &n) : NULL;
    unlink(vp);
    rmdir(dir);
    dp_image_free(ctx, &im);
    dp_image_free(ctx, &sm);
    dp_ctx_free(ctx);
    if (!v) {
        fprintf(stderr, "skipped: cannot write a test video\n");
        skip();
    }
    size_t mn;
    char *mp = multipart("clip.mp4", v, n, 0, &mn);
    free(v);
    assert_true(request(S.port, "POST", "/api/v1/scan", MP_HEADER, mp, mn, &r));
    free(mp);
    assert_int_equal(r.status, 202);
    char id[64], path[128];
    snprintf(id, sizeof id, "%s", cJSON_GetObjectItem(r.json, "id")->valuestring);
    resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/jobs/%s", id);
    const char *status = "";
    for (int i = 0; i < 3000; i++) {
        assert_true(get(S.port, path, &r));
        assert_int_equal(r.status, 200);
        status = cJSON_GetObjectItem(r.json, "status")->valuestring;
        if (!strcmp(status, "done") || !strcmp(status, "failed")) break;
        resp_free(&r);
        sleep_ms(100);
    }
    assert_string_equal(status, "done");
    cJSON *res = cJSON_GetObjectItem(r.json, "result");
    assert_string_equal(cJSON_GetObjectItem(res, "file")->valuestring, "clip.mp4");
    assert_non_null(cJSON_GetObjectItem(res, "verdict"));
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(res, "tracks")));
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(res, "fake_ranges")));
    resp_free(&r);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_and_info), cmocka_unit_test(test_detect),  cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_load),          cmocka_unit_test(test_busy),    cmocka_unit_test(test_token_and_bind),
        cmocka_unit_test(test_timeout),       cmocka_unit_test(test_scan),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
