/* doppel bench: the command line, not the speed (a bench is not a test: nothing
 * here is timed or compared). One short run of the smallest workload, doppel
 * only, must print one valid JSON line with the documented keys; bad usage
 * exits 2; --list names every workload of the issue. Runs in ~2 s. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifdef DP_CLI_PATH
/* Runs `doppel ARGS`, stdout into out (NUL-terminated); returns the exit status. */
static int run(const char *args, char *out, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", DP_CLI_PATH, args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t len = fread(out, 1, n - 1, f);
    out[len] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void json_line(void **state) {
    (void)state;
    static char out[1 << 16];
    assert_int_equal(run("bench --no-peers --only sgemm1024 --reps 1 --json", out, sizeof out), 0);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_string_equal(nl + 1, ""); /* exactly one line */
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "workload")), "sgemm1024");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "unit")), "GFLOP/s");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "doppel");
    assert_true(cJSON_IsNumber(d) && d->valuedouble > 0);
    const char *nulls[] = {"pytorch", "ort", "ratio", "rss_mb_pytorch", "rss_mb_ort"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, nulls[i])));
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "gflops"), *r = cJSON_GetObjectItemCaseSensitive(j, "rss_mb_doppel");
    assert_true(cJSON_IsNumber(g) && g->valuedouble == d->valuedouble);
    assert_true(cJSON_IsNumber(r) && r->valuedouble > 1); /* the worker holds three 4 MiB matrices */
    /* the peak measured at the start (portable builds: 447), and the share of it */
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "peak_gflops"), *pc = cJSON_GetObjectItemCaseSensitive(j, "peak_pct");
    assert_true(cJSON_IsNumber(pk) && pk->valuedouble > 0);
    assert_true(cJSON_IsNumber(pc) && fabs(pc->valuedouble - 100.0 * g->valuedouble / pk->valuedouble) < 1e-3 * pc->valuedouble + 1e-3);
    assert_non_null(strstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "note")), "--no-peers"));
    /* every run's rate (the median of one run is that run), and the per-run ratios (no peer: null) */
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(j, "doppel_runs"), *rr = cJSON_GetObjectItemCaseSensitive(j, "ratio_runs");
    assert_true(cJSON_IsArray(runs) && cJSON_GetArraySize(runs) == 1);
    assert_true(cJSON_GetArrayItem(runs, 0)->valuedouble == d->valuedouble);
    assert_true(cJSON_IsArray(rr) && cJSON_GetArraySize(rr) == 1 && cJSON_IsNull(cJSON_GetArrayItem(rr, 0)));
    assert_true(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "pytorch_runs"), 0)));
    cJSON_Delete(j);
}

static void usage_and_list(void **state) {
    (void)state;
    static char out[1 << 16];
    assert_int_equal(run("bench --only no_such_workload", out, sizeof out), 2);
    assert_int_equal(run("bench --reps 0", out, sizeof out), 2);
    assert_int_equal(run("bench --bogus", out, sizeof out), 2);
    assert_int_equal(run("bench --worker no_such_workload", out, sizeof out), 2);
    assert_int_equal(run("bench --help", out, sizeof out), 0);
    assert_int_equal(run("bench --list", out, sizeof out), 0);
    const char *names[] = {"meso_inf1 ", "meso_inf32 ", "meso_train32 ", "dcgan64 ", "dcgan28 ", "sgemm1024 ",
                           "meso_conv1_fwd ", "meso_conv1_bwd ", "dcgan64_g_deconv2_fwd ", "dcgan64_d_conv5_bwd "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strstr(out, names[i])) fail_msg("--list lacks %s", names[i]);
    }
}
#else
static void json_line(void **state) {
    (void)state;
    skip();
}
static void usage_and_list(void **state) {
    (void)state;
    skip();
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_line),
        cmocka_unit_test(usage_and_list),
    };
    return cmocka_run_group_tests_name("doppel bench (command line)", tests, NULL, NULL);
}
