/* Command-line parsing of doppel classify, gan, detect, faces, watermark, model, scan, serve and bench: the
 * input is split at NUL bytes into argv; the first byte picks the command. Only the option parsers run
 * (fuzz/cli_*.c compile each command's file with its static parser reachable), nothing is trained or
 * read (faces lists the folders it is given). */
#include "fuzz_common.h" /* first: it asks for _GNU_SOURCE */

#include <fcntl.h>

int fz_cli_classify(int sub, int argc, char **argv);
int fz_cli_gan(int sub, int argc, char **argv);
int fz_cli_detect(int sub, int argc, char **argv);
int fz_cli_faces(int argc, char **argv);
int fz_cli_watermark(int sub, int argc, char **argv);
int fz_cli_model(int sub, int argc, char **argv);
int fz_cli_scan(int argc, char **argv);
int fz_cli_serve(int argc, char **argv);
int fz_cli_bench(int argc, char **argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    static int devnull = -2;
    if (devnull == -2) devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    char *argv[65];
    int argc = 0;
    for (size_t i = 0; i < size - 1 && argc < 64;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    /* usage messages (stderr) and --help (stdout) go to /dev/null during the call: keep the fuzzer's log
     * readable (a sanitizer report during the call is lost there, but the crashing input is saved). */
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    if (devnull >= 0) {
        dup2(devnull, 1);
        dup2(devnull, 2);
    }
    /* 0-1 classify train|eval, 2-5 gan train|sample|eval|report, 6-8 detect (run)|train|eval, 9 faces,
     * 10-11 watermark check|eval, 12-13 model import-keras|info, 14 scan, 15 serve, 16 model convert,
     * 17 bench (16 and 17 came later: the first byte of older inputs keeps its meaning) */
    int sel = data[0] % 18;
    if (sel < 2) fz_cli_classify(sel, argc, argv);
    else if (sel < 6) fz_cli_gan(sel - 2, argc, argv);
    else if (sel < 9) fz_cli_detect(sel - 6, argc, argv);
    else if (sel == 9) fz_cli_faces(argc, argv);
    else if (sel < 12) fz_cli_watermark(sel - 10, argc, argv);
    else if (sel < 14) fz_cli_model(sel - 12, argc, argv);
    else if (sel == 14) fz_cli_scan(argc, argv);
    else if (sel == 15) fz_cli_serve(argc, argv);
    else if (sel == 16) fz_cli_model(2, argc, argv);
    else fz_cli_bench(argc, argv);
    fflush(stdout);
    fflush(stderr);
    if (saved_out >= 0) {
        dup2(saved_out, 1);
        close(saved_out);
    }
    if (saved_err >= 0) {
        dup2(saved_err, 2);
        close(saved_err);
    }
    free(buf);
    return 0;
}
