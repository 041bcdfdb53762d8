#!/bin/sh
# Runs every libFuzzer target of BUILD (made with -DDP_FUZZ=ON) for SECONDS each, one after
# the other, starting from the committed seeds in fuzz/corpus/<target>/. New inputs go to
# BUILD/fuzz-work/<target>/ (not into git); a crash, leak, timeout or out-of-memory leaves
# its input in BUILD/fuzz-crashes/ and makes the script exit 1 after all targets ran.
#   scripts/fuzz.sh BUILD SECONDS [TARGET...]      (make fuzz FUZZ_SECONDS=N does this)
# FUZZ_JOBS=N runs N processes per target (default 1); FUZZ_NICE sets the nice level (19).
set -u
build=${1:?usage: scripts/fuzz.sh BUILD SECONDS [TARGET...]}
secs=${2:?usage: scripts/fuzz.sh BUILD SECONDS [TARGET...]}
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
targets=${*:-"image idx safetensors model cascade keras cli http video"}
nice_level=${FUZZ_NICE:-19}
mkdir -p "$build/fuzz-work" "$build/fuzz-crashes" "$build/fuzz-logs"
failed=""
for t in $targets; do
    bin="$build/fuzz/fuzz_$t"
    if [ ! -x "$bin" ] && { [ "$t" = http ] || [ "$t" = video ]; } && [ $# -eq 0 ]; then
        echo "fuzz $t: skipped (built without libmicrohttpd / FFmpeg)"
        continue
    fi
    if [ ! -x "$bin" ]; then
        echo "fuzz: $bin is missing (build with -DDP_FUZZ=ON)" >&2
        failed="$failed $t"
        continue
    fi
    mkdir -p "$build/fuzz-work/$t"
    log="$build/fuzz-logs/$t.log"
    start=$(date +%s)
    # -rss_limit_mb: ASan's shadow included; -timeout: a single input taking longer is a hang.
    # http: the server's threads may still hold an earlier request's buffers when an input ends, which
    # the per-input leak check takes for leaks (a false positive seen 2026-11-27): leaks are checked at exit.
    extra=""
    [ "$t" = http ] && extra="-detect_leaks=0"
    # keras: libhdf5 itself crashes on some corrupt files (fuzz/upstream/README.md); it runs in fork mode
    # and goes on after a crash, so CI is not stopped by a library bug doppel cannot fix. Its crashes are
    # still written to fuzz-crashes/ and counted in the log ("oom/timeout/crash"): look at them.
    # In fork mode libFuzzer exits with the last job's code, so a libhdf5 crash in the last job makes rc
    # non-zero: each saved input is then replayed and classified by scripts/fuzz-upstream.sh, and only a
    # fault in doppel (or one it cannot classify) fails the run.
    [ "$t" = keras ] && extra="-fork=1 -ignore_crashes=1"
    stamp="$build/fuzz-logs/$t.start"
    : >"$stamp"
    timer=""
    [ -x /usr/bin/time ] && timer="/usr/bin/time -o $build/fuzz-logs/$t.cpu -f %U+%S"
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        LSAN_OPTIONS=suppressions="$src/fuzz/lsan.supp" \
        $timer nice -n "$nice_level" "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 -max_len=262144 \
        -print_final_stats=1 -artifact_prefix="$build/fuzz-crashes/$t-" $extra \
        "$build/fuzz-work/$t" "$src/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    note=""
    if [ "$t" = keras ]; then
        # crash-, oom-, leak-, timeout- inputs (slow-unit- ones are not failures)
        new_inputs=$(find "$build/fuzz-crashes" -maxdepth 1 -type f -name "$t-*" ! -name "$t-slow-unit-*" -newer "$stamp")
        if [ -n "$new_inputs" ] || [ $rc -ne 0 ]; then
            # shellcheck disable=SC2086 # artifact names are libFuzzer's (hex digests), no spaces
            if grep -q '^INFO: exiting: ' "$log" &&
                "$src/scripts/fuzz-upstream.sh" "$bin" $new_inputs >"$build/fuzz-logs/$t.triage" 2>&1; then
                rc=0
                [ -n "$new_inputs" ] && note=" ($(echo "$new_inputs" | wc -l) libhdf5 faults, upstream: $build/fuzz-logs/$t.triage)"
            else
                rc=1
                note=" (not upstream: $build/fuzz-logs/$t.triage)"
            fi
        fi
    fi
    cpu="?"
    [ -s "$build/fuzz-logs/$t.cpu" ] && cpu=$(tail -1 "$build/fuzz-logs/$t.cpu" | awk -F+ 'NF == 2 {printf "%.0f", $1 + $2}')
    end=$(date +%s)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    printf 'fuzz %-12s %5ds wall %8s s CPU %10s execs  cov %5s  %s\n' "$t" "$((end - start))" "$cpu" "$execs" "$cov" \
        "$([ $rc -eq 0 ] && echo "ok$note" || echo "FAILED (rc $rc, see $log)$note")"
    [ $rc -eq 0 ] || failed="$failed $t"
done
if [ -n "$failed" ]; then
    echo "fuzz: failures in:$failed (inputs in $build/fuzz-crashes/)" >&2
    exit 1
fi
exit 0
