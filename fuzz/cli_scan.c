/* fuzz_cli: doppel scan's option parser (see cli_classify.c), when doppel is built with FFmpeg. */
#include "cli/cmd_scan.c"

int fz_cli_scan(int argc, char **argv);
int fz_cli_scan(int argc, char **argv) {
#ifdef DP_HAVE_FFMPEG
    scan_args a;
    return parse(argc, argv, &a);
#else
    return cmd_scan(argc, argv); /* says it was built without FFmpeg */
#endif
}
