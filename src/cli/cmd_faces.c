/* STUB: doppel faces — replace this whole file. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_faces(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "doppel faces: not implemented yet\n");
    return 2;
}
