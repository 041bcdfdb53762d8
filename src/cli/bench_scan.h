/* doppel bench's video workloads (scan480, scan720), in src/cli/bench_scan.c. */
#ifndef DOPPEL_CLI_BENCH_SCAN_H
#define DOPPEL_CLI_BENCH_SCAN_H

/* Runs the workload in this process and prints the worker's line; 0 on success. */
int bench_scan_worker(const char *name, int threads);

#endif
