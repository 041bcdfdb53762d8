/* fuzz_cli: doppel bench's option parser and --only's workload selection (see cli_classify.c); no
 * workload is run and no peer is looked for. */
#include "cli/cmd_bench.c"

int fz_cli_bench(int argc, char **argv);
int fz_cli_bench(int argc, char **argv) {
    opts o;
    int sel[MAX_WORKLOADS];
    return bench_parse(argc, argv, &o, sel);
}
