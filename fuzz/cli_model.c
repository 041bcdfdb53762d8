/* fuzz_cli: doppel model import-keras's and info's option parsers (see cli_classify.c). */
#include "cli/cmd_model.c"

int fz_cli_model(int sub, int argc, char **argv);
int fz_cli_model(int sub, int argc, char **argv) {
    const char *in, *arch, *out;
    int json;
    return sub == 0 ? import_parse(argc, argv, &in, &arch, &out) : info_parse(argc, argv, &in, &json);
}
