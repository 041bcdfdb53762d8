/* doppel serve — the local web page and HTTP API (docs/server.md).
 *
 * Internal to the doppel executable (compiled only when libmicrohttpd is
 * found). server.c runs the HTTP side (GNU libmicrohttpd, one thread per
 * connection), analyze.c the image analysis on a pool of detector
 * instances, jobs.c the video scan jobs, assets.c the embedded page. */
#ifndef DOPPEL_SERVER_H
#define DOPPEL_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "doppel/detect.h"

typedef struct serve_opts {
    const char *bind;        /* address to listen on (default 127.0.0.1) */
    int port;                /* 0: any free port (printed) */
    int64_t max_upload;      /* bytes */
    int max_jobs;            /* analyses at once (uploads in progress + running + waiting); over it: 429 */
    int workers;             /* detector instances (analyses that run at the same time) */
    int threads;             /* compute threads per detector instance */
    int timeout_s;           /* idle connection timeout */
    const char *token;       /* API token, NULL = none */
    const char *model;       /* model file, NULL = the default */
    int insecure;            /* allow a non-loopback bind without a token */
    int quiet;               /* no request log on stderr */
} serve_opts;

/* Runs until SIGINT/SIGTERM. Returns the process exit status. */
int serve_run(const serve_opts *o);

/* ------------------------------------------------------------ analysis (analyze.c) */
typedef struct serve_pool serve_pool;

/* Loads `workers` detector instances (each with its own context of
 * `threads` threads) and face detectors. On failure writes a message to err. */
int serve_pool_new(const char *model, const char *source_dir, int workers, int threads, serve_pool **out, char *err,
                   size_t n_err);
void serve_pool_free(serve_pool *p);
const char *serve_pool_model_path(const serve_pool *p);
/* GET /api/v1/models: a JSON document (malloc'd). */
char *serve_pool_models_json(serve_pool *p);

/* The answer to one image: HTTP status and a malloc'd JSON body. */
typedef struct serve_reply {
    int status;
    char *body;
} serve_reply;

typedef struct serve_detect_opts {
    int heatmap; /* occlusion heat map per face */
} serve_detect_opts;

/* Decode, find faces, score, heat maps, watermark and metadata. name is a
 * display name only (never used as a path). Blocks until a detector
 * instance is free. */
void serve_detect(serve_pool *p, const void *buf, size_t n, const char *name, const serve_detect_opts *o,
                  serve_reply *out);

/* A JSON error body {"error":{"status":…,"code":…,"message":…}} (malloc'd). */
char *serve_error_json(int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------ video jobs (jobs.c) */
typedef struct serve_jobs serve_jobs;
int serve_jobs_supported(void); /* 1 when built with video support */
int serve_jobs_new(serve_pool *pool, int max_kept, serve_jobs **out);
void serve_jobs_free(serve_jobs *j);
/* Takes ownership of data (malloc'd); on_done(cls) is called from the job's
 * thread once the job has finished (the server releases its slot there).
 * Writes the new job's id (hex) to id. */
void serve_jobs_submit(serve_jobs *j, void *data, size_t n, const char *name, void (*on_done)(void *), void *cls,
                       char *id, size_t n_id, serve_reply *out);
void serve_jobs_get(serve_jobs *j, const char *id, serve_reply *out);

/* ------------------------------------------------------------ embedded page (generated) */
typedef struct serve_asset {
    const char *path; /* "/index.html" */
    const char *type; /* MIME type */
    const unsigned char *data;
    size_t size;
} serve_asset;
extern const serve_asset serve_assets[];
extern const size_t serve_n_assets;

#endif
