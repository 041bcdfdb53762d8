/* STUB: doppel gan — replace this whole file. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_gan(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "doppel gan: not implemented yet\n");
    return 2;
}
