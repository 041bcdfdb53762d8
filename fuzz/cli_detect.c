/* fuzz_cli: doppel detect's option parser, with positional files (see cli_classify.c). */
#include "cli/cmd_detect.c"

int fz_cli_detect(int sub, int argc, char **argv);
int fz_cli_detect(int sub, int argc, char **argv) {
    static const char *const cmds[3] = {NULL, "train", "eval"};
    opts o = {.cmd = cmds[sub % 3]};
    flist files = {0};
    int rc = parse_opts(argc, argv, &o, o.cmd ? NULL : &files);
    fl_free(&files);
    return rc;
}
