/* fuzz_cli: doppel model import-keras's, info's and convert's option parsers (see cli_classify.c). */
#include "cli/cmd_model.c"

int fz_cli_model(int sub, int argc, char **argv);
int fz_cli_model(int sub, int argc, char **argv) {
    const char *in, *arch, *out;
    int json, f16;
    return sub == 0   ? import_parse(argc, argv, &in, &arch, &out)
           : sub == 1 ? info_parse(argc, argv, &in, &json)
                      : convert_parse(argc, argv, &in, &out, &f16);
}
