/* fuzz_cli: doppel serve's option parser (see cli_classify.c), when doppel is built with libmicrohttpd.
 * The server itself is not linked in: serve_run must never be reached from the parser. */
#include "cli/cmd_serve.c"

int fz_cli_serve(int argc, char **argv);
int fz_cli_serve(int argc, char **argv) {
#ifdef DP_HAVE_MHD
    serve_opts o;
    return serve_parse(argc, argv, &o);
#else
    return cmd_serve(argc, argv);
#endif
}

#ifdef DP_HAVE_MHD
int serve_run(const serve_opts *o) {
    (void)o;
    abort();
}
#endif
