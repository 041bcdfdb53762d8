/* fuzz_cli: doppel gan's option parser (see cli_classify.c). */
#include "cli/cmd_gan.c"

int fz_cli_gan(int sub, int argc, char **argv);
int fz_cli_gan(int sub, int argc, char **argv) {
    static const char *const cmds[4] = {"train", "sample", "eval", "report"};
    opts o = {.cmd = cmds[sub & 3], .data = "fashion-mnist", .loss = "ns", .steps = 2000, .seed = 1, .n = 64};
    return parse_opts(argc, argv, &o);
}
