/* fuzz_cli: doppel watermark check's and eval's option parsers (see cli_classify.c); eval's PATHs are
 * counted, not searched. */
#include "cli/cmd_watermark.c"

int fz_cli_watermark(int sub, int argc, char **argv);
int fz_cli_watermark(int sub, int argc, char **argv) {
    if (sub == 0) {
        int json;
        return check_parse(argc, argv, &json);
    }
    wopts o = {.size = 64, .qual = {95, 90, 80, 70, 60, 50}, .nq = 6};
    return eval_parse(argc, argv, &o, NULL);
}
