/* doppel serve — video scan jobs (POST /api/v1/scan, GET /api/v1/jobs/ID).
 * Without video support in this build the scan endpoint answers 501. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

struct serve_jobs {
    serve_pool *pool;
};

int serve_jobs_supported(void) { return 0; }

int serve_jobs_new(serve_pool *pool, int max_kept, serve_jobs **out) {
    (void)max_kept;
    *out = calloc(1, sizeof **out);
    if (!*out) return 0;
    (*out)->pool = pool;
    return 1;
}

void serve_jobs_free(serve_jobs *j) { free(j); }

void serve_jobs_submit(serve_jobs *j, void *data, size_t n, const char *name, void (*on_done)(void *), void *cls,
                       char *id, size_t n_id, serve_reply *out) {
    (void)j, (void)n, (void)name;
    free(data);
    if (n_id) id[0] = 0;
    out->status = 501;
    out->body = serve_error_json(501, "no_video", "this doppel was built without video support (FFmpeg)");
    if (on_done) on_done(cls);
}

void serve_jobs_get(serve_jobs *j, const char *id, serve_reply *out) {
    (void)j;
    out->status = 404;
    out->body = serve_error_json(404, "no_such_job", "no job '%.64s'", id);
}
