/* Command-line parsing of doppel classify, gan and detect: the input is split
 * at NUL bytes into argv; the first byte picks the command. Only the option
 * parsers run (fuzz/cli_*.c compile each command's file with its static
 * parse_opts reachable), nothing is trained or read. */
#include "fuzz_common.h" /* first: it asks for _GNU_SOURCE */

#include <fcntl.h>

int fz_cli_classify(int sub, int argc, char **argv);
int fz_cli_gan(int sub, int argc, char **argv);
int fz_cli_detect(int sub, int argc, char **argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    static int devnull = -2, saved = -1;
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
    /* usage messages go to stderr: keep the fuzzer's log readable (a crash report still
     * prints: sanitizers write to the saved descriptor after we restore it... or to
     * /dev/null during the call; the crashing input is saved either way). */
    fflush(stderr);
    saved = dup(2);
    if (devnull >= 0) dup2(devnull, 2);
    int sel = data[0] % 9;
    if (sel < 2) fz_cli_classify(sel, argc, argv);
    else if (sel < 6) fz_cli_gan(sel - 2, argc, argv);
    else fz_cli_detect(sel - 6, argc, argv);
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
    free(buf);
    return 0;
}
