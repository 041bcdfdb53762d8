/* fuzz_cli: doppel classify's option parser (the command's file is compiled here so that
 * its static parse_opts can be called without running the command). */
#include "cli/cmd_classify.c"

int fz_cli_classify(int sub, int argc, char **argv);
int fz_cli_classify(int sub, int argc, char **argv) {
    opts o = {.cmd = sub ? "eval" : "train", .data = "fashion-mnist", .arch = "cnn", .optim = "adam",
              .schedule = "cosine", .epochs = 3, .batch = 64};
    return parse_opts(argc, argv, &o);
}
