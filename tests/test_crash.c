/* Crash safety (issue 8): `doppel gan train` killed with SIGKILL at random
 * moments, many of them during checkpoint writes — the latest checkpoint must
 * always load and --resume must continue; and a save that hits a full disk
 * (ENOSPC, simulated by wrapping write() at link time) must fail with a clear
 * message and keep the previous checkpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "doppel/doppel.h"
#include "util/files.h"

static char dir[64];

static const char *in_dir(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* ------------------------------------------------------------ write() that can fail with ENOSPC
 * test_crash is linked with -Wl,--wrap=write (tests/CMakeLists.txt): every write()
 * doppel's checkpoint code makes comes here. */
ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
static long long enospc_after = -1; /* bytes still allowed; -1 = never fail */

ssize_t __wrap_write(int fd, const void *buf, size_t n) {
    if (enospc_after >= 0 && fd > 2) {
        if ((long long)n > enospc_after) {
            if (enospc_after == 0) {
                errno = ENOSPC;
                return -1;
            }
            n = (size_t)enospc_after; /* a short write, as a filling disk gives */
        }
        enospc_after -= (long long)n;
    }
    return __real_write(fd, buf, n);
}

static int tmp_files_left(const char *in) {
    DIR *d = opendir(in);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

static void full_disk(void **state) {
    (void)state;
    dp_ctx *ctx;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx), DP_OK);
    dp_paramset *ps;
    dp_tensor *w;
    assert_int_equal(dp_paramset_new(ctx, &ps), DP_OK);
    const dp_init init = {.kind = DP_INIT_NORMAL, .a = 0, .b = 1};
    assert_int_equal(dp_paramset_get_or_add(ps, "w", 2, (int64_t[]){64, 64}, DP_PARAM_TRAINABLE, &init, &w), DP_OK);
    assert_int_equal(dp_paramset_init(ps, 1), DP_OK);
    dp_optim *opt;
    assert_int_equal(dp_optim_new(ps, &(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 1e-3f}, &opt), DP_OK);
    const char *path = in_dir("full.safetensors");
    assert_int_equal(dp_checkpoint_save(path, ps, opt, "before", NULL), DP_OK);
    size_t n0, n1;
    unsigned char *before = dp_test_read_file(path, &n0);
    assert_non_null(before);
    dp_tensor_fill(w, 7.0f);
    /* The disk fills at several points: in the header, in the data, at the last byte. */
    const long long at[] = {0, 5, 100, 9000, (long long)n0 - 1};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        enospc_after = at[i];
        dp_status s = dp_checkpoint_save(path, ps, opt, "after", NULL);
        enospc_after = -1;
        assert_int_equal(s, DP_ERR_IO);
        const char *msg = dp_ctx_error(ctx);
        printf("ENOSPC after %lld bytes: %s\n", at[i], msg);
        assert_non_null(strstr(msg, path));
        assert_non_null(strstr(msg, strerror(ENOSPC)));
        assert_null(strchr(msg, '\n'));
        assert_int_equal(tmp_files_left(dir), 0);
        unsigned char *after = dp_test_read_file(path, &n1);
        assert_int_equal(n0, n1);
        assert_memory_equal(before, after, n0);
        free(after);
    }
    /* The previous checkpoint still loads, with the values it had. */
    assert_int_equal(dp_checkpoint_load(path, ps, opt), DP_OK);
    assert_true(dp_tensor_f32(w)[0] != 7.0f);
    free(before);
    dp_optim_free(opt);
    dp_paramset_free(ps);
    dp_ctx_free(ctx);
}

/* ------------------------------------------------------------ kill -9 during training */
static pid_t spawn_train(const char *run, const char *data, int resume, long long steps) {
    char st[32];
    snprintf(st, sizeof st, "%lld", steps);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) {
            dup2(nul, 1);
            if (!getenv("DP_CRASH_VERBOSE")) dup2(nul, 2);
        }
        const char *argv[] = {DP_CLI_PATH, "gan", "train", "--data", data, "--arch", "dcgan28", "--out", run,
                              "--batch", "4", "--steps", st, "--ckpt-every", "1", "--sample-every", "0",
                              "--threads", "1", "--quiet", resume ? "--resume" : NULL, NULL};
        execv(DP_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void kill9_resume(void **state) {
    (void)state;
    if (access(DP_CLI_PATH, X_OK) != 0) {
        printf("skipped: the doppel CLI is not at %s\n", DP_CLI_PATH);
        skip();
    }
    dp_ctx *ctx;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx), DP_OK);
    /* 8 tiny grey images are the whole data set. */
    char data[600], run[600], ckpt[600];
    snprintf(data, sizeof data, "%s", in_dir("data"));
    snprintf(run, sizeof run, "%s", in_dir("run"));
    snprintf(ckpt, sizeof ckpt, "%s", in_dir("run/ckpt.safetensors"));
    assert_int_equal(mkdir(data, 0755), 0);
    for (int i = 0; i < 8; i++) {
        dp_image img;
        assert_int_equal(dp_image_alloc(ctx, 1, 28, 28, &img), DP_OK);
        for (int k = 0; k < 28 * 28; k++) img.data[k] = (float)((k * (i + 3)) % 29) / 28.0f;
        char name[64];
        snprintf(name, sizeof name, "data/img%d.png", i);
        assert_int_equal(dp_image_save_png(ctx, in_dir(name), &img), DP_OK);
        dp_image_free(ctx, &img);
    }
    int trials = 50, with_ckpt = 0, during_write = 0;
    int64_t last_step = -1;
    unsigned seed = (unsigned)time(NULL);
    if (getenv("DP_CRASH_SEED")) seed = (unsigned)atoi(getenv("DP_CRASH_SEED"));
    printf("kill -9 trials: %d, seed %u (DP_CRASH_SEED=%u repeats them)\n", trials, seed, seed);
    srand(seed);
    /* Delays grow with how long a start takes here (sanitizers, load, a portable
     * build's slower kernels): the first trials find the first checkpoint, the
     * rest land anywhere in training. The window grows by half after each trial
     * killed before the first checkpoint (it grew by 200 ms: under a load of 18
     * the portable build needed more than the 50th trial's 10 s window). */
    long max_ms = 400;
    for (int t = 0; t < trials; t++) {
        struct stat sb;
        int have = stat(ckpt, &sb) == 0;
        pid_t pid = spawn_train(run, data, have, 1000000);
        long ms = 20 + rand() % max_ms;
        sleep_ms(ms);
        int wst;
        pid_t done = waitpid(pid, &wst, WNOHANG);
        if (done == 0) {
            kill(pid, SIGKILL);
            assert_int_equal(waitpid(pid, &wst, 0), pid);
        }
        if (!(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL))
            fail_msg("trial %d: doppel gan train %sended by itself (status 0x%x) before the kill: a checkpoint "
                     "did not load or --resume failed (DP_CRASH_VERBOSE=1 shows its messages)",
                     t, have ? "--resume " : "", wst);
        int left = tmp_files_left(run);
        during_write += left > 0;
        if (stat(ckpt, &sb) != 0) {
            if (last_step >= 0) fail_msg("trial %d: the checkpoint disappeared", t);
            max_ms += max_ms / 2; /* killed before the first checkpoint: give the next start longer */
            continue;
        }
        /* The first checkpoint came within ms: later windows are 1.5 times that, not what
         * the growth overshot to (the trials stay about as long as a start). */
        if (!have && ms + ms / 2 < max_ms) max_ms = ms + ms / 2 > 400 ? ms + ms / 2 : 400;
        with_ckpt++;
        /* The latest checkpoint loads in full (G's weights through the sampler; the whole
         * header is validated against the file) and its step never goes back. */
        int64_t step = -1;
        dp_gan_opts go;
        if (dp_gan_read_opts(ctx, ckpt, &go, &step) != DP_OK) fail_msg("trial %d: %s", t, dp_ctx_error(ctx));
        dp_gan_sampler *s = NULL;
        if (dp_gan_sampler_load(ctx, ckpt, 4, &s) != DP_OK) fail_msg("trial %d: %s", t, dp_ctx_error(ctx));
        dp_gan_sampler_free(s);
        if (step < last_step) fail_msg("trial %d: the checkpoint went back from step %lld to %lld", t,
                                       (long long)last_step, (long long)step);
        last_step = step;
    }
    printf("%d/%d trials left a checkpoint (last at step %lld); %d were killed while a checkpoint was being "
           "written (a temporary file was left)\n",
           with_ckpt, trials, (long long)last_step, during_write);
    assert_true(with_ckpt > 0);
    /* Stale temporary files of killed runs are removed by the next save. */
    /* --resume continues: two more steps, and the run ends by itself. */
    pid_t pid = spawn_train(run, data, 1, last_step + 2);
    int wst;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) fail_msg("the final --resume run failed (status 0x%x)", wst);
    int64_t step = -1;
    assert_int_equal(dp_gan_read_opts(ctx, ckpt, NULL, &step), DP_OK);
    assert_int_equal(step, last_step + 2);
    assert_int_equal(tmp_files_left(run), 0);
    dp_ctx_free(ctx);
}

static int rm_rf(const char *p) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    return system(cmd);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/doppel-crash-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_disk),
        cmocka_unit_test(kill9_resume),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rm_rf(dir);
    return rc;
}
