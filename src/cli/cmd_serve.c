/* doppel serve — local web page and HTTP API (issue 7). Placeholder until src/server/ lands. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
#ifdef DP_HAVE_MHD
    fprintf(stderr, "doppel serve: not implemented yet\n");
#else
    fprintf(stderr, "doppel serve: this doppel was built without libmicrohttpd (install libmicrohttpd-dev and rebuild)\n");
#endif
    return 2;
}
