/* HTTP request handling of doppel serve: the server (src/server/, libmicrohttpd, the
 * default detection model) runs in this process on a loopback port; each input is sent
 * as raw bytes on a new connection (request line, headers, body: GET/POST, multipart
 * uploads, ...), the answer is read until the server closes or 10 s pass. The server works on
 * its own threads, possibly after the client has gone, so scripts/fuzz.sh turns off libFuzzer's
 * per-input leak check for this target; at exit the server is stopped as on SIGTERM (waiting for
 * the requests in progress) before LeakSanitizer checks. A crash, sanitizer report or hang
 * anywhere in the server is a finding. */
#include "fuzz_common.h" /* first: it asks for _GNU_SOURCE */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "server/server.h"

static int port;
static pthread_t server;

/* At exit (the end of -max_total_time, -runs, or SIGINT/SIGTERM to the fuzzer): stop the server as
 * doppel serve stops on SIGTERM (MHD_stop_daemon waits for the requests in progress, then the pool is
 * freed) and wait for it, so that LeakSanitizer's check at exit sees only what was really lost, not the
 * buffers of a heat map still being computed for a client that has gone (reported as leaks before). */
static void stop_server(void) {
    if (!port) return;
    pthread_kill(server, SIGTERM);
    pthread_join(server, NULL);
    port = 0;
}

static void *serve_thread(void *arg) {
    serve_opts *o = arg;
    int rc = serve_run(o);
    fprintf(stderr, "fuzz_http: serve_run returned %d\n", rc);
    return NULL;
}

static int connect_once(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    /* long enough for an answer (a heat map takes seconds under ASan), so that little server work
     * outlives its input */
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static void start(void) {
    static serve_opts o;
    o.bind = "127.0.0.1";
    o.port = port = 20000 + (int)(getpid() % 20000);
    o.max_upload = (int64_t)8 << 20;
    o.max_jobs = 4;
    o.workers = 1;
    o.threads = 1;
    o.timeout_s = 2;
    o.quiet = 1;
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&server, NULL, serve_thread, &o) != 0) abort();
    for (int i = 0; i < 600; i++) { /* the model loads first: up to a minute */
        int fd = connect_once();
        if (fd >= 0) {
            close(fd);
            atexit(stop_server);
            return;
        }
        usleep(100000);
    }
    fprintf(stderr, "fuzz_http: the server did not start on port %d\n", port);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!port) start();
    int fd = connect_once();
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    char buf[8192];
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
    close(fd);
    return 0;
}
