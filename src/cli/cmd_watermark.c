/* STUB: doppel watermark — replace this whole file. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_watermark(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "doppel watermark: not implemented yet\n");
    return 2;
}
