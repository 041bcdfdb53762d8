/* doppel serve — the local web page and HTTP API (docs/server.md).
 *
 *   doppel serve [--port 8080] [--bind 127.0.0.1] [--max-upload MB] [--max-jobs N] [--token T] [--model M]
 *
 * This file parses the options; src/server/ does the work (built only when
 * libmicrohttpd is found). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#ifdef DP_HAVE_MHD
#include "server/server.h"
#endif

static const char *const usage_text =
    "usage: doppel serve [--port 8080] [--bind 127.0.0.1] [--max-upload MB] [--max-jobs N] [--token T] [--model M]\n"
    "\n"
    "Serves a local web page (drop in photos or a video, see each face's verdict, probability and heat map)\n"
    "and a JSON API (POST /api/v1/detect, POST /api/v1/scan, GET /api/v1/jobs/ID, GET /api/v1/health,\n"
    "GET /api/v1/models; docs/server.md, docs/openapi.yaml). Everything stays on this machine: uploads are\n"
    "kept in memory and dropped after the answer, the page's files are inside the binary.\n"
    "\n"
    "  --port N          TCP port (default 8080; 0: any free port, printed)\n"
    "  --bind ADDR       address to listen on (default 127.0.0.1: this machine only). Any other address\n"
    "                    needs --token (or --insecure)\n"
    "  --max-upload MB   largest accepted upload (default 32)\n"
    "  --max-jobs N      analyses at once, uploads in progress included (default 8); more get 429\n"
    "  --workers N       detector instances that run at the same time (default 2)\n"
    "  --threads N       compute threads per detector instance (default 1)\n"
    "  --timeout S       idle connection timeout in seconds (default 30)\n"
    "  --token T         API token: clients send 'Authorization: Bearer T' (the page asks for it)\n"
    "  --insecure        allow a non-local --bind without a token\n"
    "  --model M         detection model (default: as doppel detect)\n"
    "  --quiet           no request log on stderr\n"
    "Stops on Ctrl-C (SIGINT) or SIGTERM.\n";

#ifdef DP_HAVE_MHD
static int parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* The options after --help was looked for: -1 to go on (o filled), else the exit status (2). Also called
 * by fuzz/fuzz_cli.c. */
static int serve_parse(int argc, char **argv, serve_opts *o_) {
    serve_opts o = {.bind = "127.0.0.1", .port = 8080, .max_upload = 32LL << 20, .max_jobs = 8, .workers = 2,
                    .threads = 1, .timeout_s = 30};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--insecure")) {
            o.insecure = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "doppel serve: unexpected argument '%s' (see 'doppel serve --help')\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "doppel serve: %s needs a value (see 'doppel serve --help')\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long n = 0;
#define INT_OPT(name, lo, hi)                                                                                          \
    if (!strcmp(a, name)) {                                                                                            \
        if (!parse_int(v, lo, hi, &n)) {                                                                               \
            fprintf(stderr, "doppel serve: %s must be an integer in [%ld, %ld], got '%s'\n", name, (long)(lo),         \
                    (long)(hi), v);                                                                                    \
            return 2;                                                                                                  \
        }                                                                                                              \
    }
        INT_OPT("--port", 0, 65535)
        INT_OPT("--max-upload", 1, 4096)
        INT_OPT("--max-jobs", 1, 1024)
        INT_OPT("--workers", 1, 64)
        INT_OPT("--threads", 1, 256)
        INT_OPT("--timeout", 1, 3600)
#undef INT_OPT
        if (!strcmp(a, "--port")) o.port = (int)n;
        else if (!strcmp(a, "--max-upload")) o.max_upload = (int64_t)n << 20;
        else if (!strcmp(a, "--max-jobs")) o.max_jobs = (int)n;
        else if (!strcmp(a, "--workers")) o.workers = (int)n;
        else if (!strcmp(a, "--threads")) o.threads = (int)n;
        else if (!strcmp(a, "--timeout")) o.timeout_s = (int)n;
        else if (!strcmp(a, "--bind")) o.bind = v;
        else if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--token")) {
            if (!*v) {
                fprintf(stderr, "doppel serve: --token must not be empty\n");
                return 2;
            }
            o.token = v;
        } else {
            fprintf(stderr, "doppel serve: unknown option '%s' (see 'doppel serve --help')\n", a);
            return 2;
        }
    }
    *o_ = o;
    return -1;
}
#endif

int cmd_serve(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
#ifndef DP_HAVE_MHD
    fprintf(stderr, "doppel serve: this doppel was built without libmicrohttpd (install libmicrohttpd-dev and rebuild)\n");
    return 2;
#else
    serve_opts o;
    int rc = serve_parse(argc, argv, &o);
    return rc >= 0 ? rc : serve_run(&o);
#endif
}
