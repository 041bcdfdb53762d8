/* STUB: doppel model — replace this whole file. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_model(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "doppel model: not implemented yet\n");
    return 2;
}
