/* STUB: doppel bench — replace this whole file. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "doppel bench: not implemented yet\n");
    return 2;
}
