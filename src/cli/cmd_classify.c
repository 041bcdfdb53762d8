/* STUB: doppel classify train|eval — replaced by the Fashion-MNIST work. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_classify(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "doppel classify: not implemented yet\n");
    return 1;
}
