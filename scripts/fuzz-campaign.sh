#!/bin/bash
# A long fuzzing campaign in the background (docs/security.md, "Fuzzing"): runs the libFuzzer targets
# of BUILD (made with -DDP_FUZZ=ON, as by make fuzz-build) in slices of SLICE seconds, JOBS at a time
# (default 2), always starting the target with the least CPU time so far, until DEADLINE (HH:MM today,
# or seconds since the epoch). Every slice appends one line to the ledger, with the CPU seconds of the
# fuzzer and its children as measured by /usr/bin/time (user + system, not wall time):
#   scripts/fuzz-campaign.sh BUILD DEADLINE [SLICE] [TARGET...]
#   scripts/fuzz-campaign.sh --report BUILD          (per-target totals from the ledger)
# Working corpora live in BUILD/campaign/work/<target>/ (seeded from fuzz/corpus/<target>/, not in git),
# crashes in BUILD/campaign/crashes/, logs in BUILD/campaign/logs/, the ledger in BUILD/campaign/ledger.tsv.
# PRIOR="image=51 cli=16 ..." adds CPU seconds from earlier runs when choosing the next target.
# FUZZ_GOAL=3600 (CPU seconds per target, PRIOR included): a target that has it is not started again, a
# slice is cut to what its target still lacks (plus 15 s), and the campaign ends when every target has it.
# The fuzzers run at nice 19 (FUZZ_NICE) under their own names (.../fuzz_<target>), so that
# `pkill -STOP -f '/fuzz_'` pauses them and `pkill -CONT -f '/fuzz_'` resumes them; this script's own
# name does not match. A paused slice simply burns less CPU: libFuzzer's time limits are wall time. So
# that a pause does not read as a hang, one input may take FUZZ_TIMEOUT s (default 300) of wall time, and
# every timeout is then replayed alone: one that needs less than 20 CPU-s goes to crashes/paused/.
# Stop it with SIGTERM to the script or `pkill -f fuzz-campaign.sh` (it ends the running slices and
# records them).
set -u
all_targets="image idx safetensors model cascade keras cli http video"

# --report: "failed" counts slices with a non-zero exit other than 72 (libFuzzer's code for a slice stopped by
# SIGTERM/SIGINT); keras slices in fork mode exit with their last job's code (see scripts/fuzz.sh).
if [ "${1:-}" = --report ]; then
    ledger="${2:?usage: $0 --report BUILD}/campaign/ledger.tsv"
    [ -f "$ledger" ] || { echo "no ledger at $ledger" >&2; exit 1; }
    awk -F'\t' '$1 !~ /^#/ && NF >= 9 {cpu[$2] += $4; wall[$2] += $3; ex[$2] += $5; n[$2]++;
                 if ($6 > cov[$2]) cov[$2] = $6; if ($7 != 0 && $7 != 72) bad[$2]++}
        END {for (t in n) printf "%-12s %6d %9d %9.0f %12d %6d %d\n", t, n[t], wall[t], cpu[t], ex[t], cov[t], bad[t] + 0}' \
        "$ledger" | sort | { printf "%-12s %6s %9s %9s %12s %6s %s\n" target slices "wall s" "CPU s" execs cov failed; cat; }
    exit 0
fi

build=${1:?usage: $0 BUILD DEADLINE [SLICE] [TARGET...]}
deadline=${2:?usage: $0 BUILD DEADLINE [SLICE] [TARGET...]}
slice=${3:-600}
shift 2
[ $# -gt 0 ] && shift
targets=${*:-$all_targets}
jobs=${FUZZ_JOBS:-2}
goal=${FUZZ_GOAL:-0}
nice_level=${FUZZ_NICE:-19}
case "$deadline" in
    # HH:MM already past today means tomorrow (a campaign started at 22:00 until 00:30).
    *:*)
        deadline=$(date -d "$deadline" +%s) || exit 2
        [ "$deadline" -le "$(date +%s)" ] && deadline=$((deadline + 86400))
        ;;
esac
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd) || exit 2
camp="$build/campaign"
ledger="$camp/ledger.tsv"
mkdir -p "$camp/work" "$camp/crashes" "$camp/logs"
[ -f "$ledger" ] || printf '# end\ttarget\twall_s\tcpu_s\texecs\tcov\trc\tcorpus\tlog\n' >"$ledger"
# A target not built yet is skipped until its binary appears (a build may still be running).
runnable=$targets

# CPU seconds so far for a target: PRIOR plus the ledger.
cpu_so_far() {
    local prior
    prior=$(printf '%s\n' ${PRIOR:-} | awk -F= -v t="$1" '$1 == t {s += $2} END {print s + 0}')
    awk -F'\t' -v t="$1" -v p="$prior" '$2 == t {s += $4} END {printf "%.0f\n", s + p}' "$ledger"
}

# True when the target's last slice of this campaign failed at once (under 5 s, an exit other than 0 or 72):
# its harness cannot start (e.g. a file it reads from the source tree is gone); it is then left out.
started_at=$(date -u +%FT%TZ)
broken() {
    awk -F'\t' -v t="$1" -v since="$started_at" '$2 == t && $1 >= since {w = $3; rc = $7}
        END {exit !(w != "" && w < 5 && rc != 0 && rc != 72)}' "$ledger"
}

# The target with the least CPU so far among those not running now.
running=""
pick() {
    local best="" best_cpu="" t c
    for t in $runnable; do
        case " $running " in *" $t "*) continue ;; esac
        [ -x "$build/fuzz/fuzz_$t" ] || continue
        c=$(cpu_so_far "$t")
        [ "$goal" -gt 0 ] && [ "$c" -ge "$goal" ] && continue
        if [ -z "$best" ] || [ "$c" -lt "$best_cpu" ]; then best=$t; best_cpu=$c; fi
    done
    echo "$best"
}

# Replays each new timeout input of target $1 alone (at most 10 minutes of wall time); one that takes
# less than 20 CPU-s was a pause, not a hang: it goes to crashes/paused/, the others are renamed -hang-.
triage_timeouts() {
    local f used
    for f in "$camp/crashes/$1-timeout-"*; do
        [ -f "$f" ] || continue
        ASAN_OPTIONS=detect_leaks=0 timeout 600 /usr/bin/time -o "$f.cpu" -f '%U %S' nice -n "$nice_level" \
            "$build/fuzz/fuzz_$1" -timeout=0 -runs=1 "$f" >"$f.replay" 2>&1
        used=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ {c = $1 + $2} END {printf "%d", c}' "$f.cpu" 2>/dev/null)
        if grep -q '^Executed .* in ' "$f.replay" && [ "${used:-99}" -lt 20 ]; then
            mkdir -p "$camp/crashes/paused"
            mv "$f" "$f.cpu" "$f.replay" "$camp/crashes/paused/"
        else
            mv "$f" "${f/-timeout-/-hang-}"
        fi
    done
}

# One slice of one target; appends its ledger line.
run_slice() {
    local t=$1 secs=$2 stamp log cpuf start rc cpu execs cov extra=""
    # This subshell carries the script's command line, so `pkill -f fuzz-campaign.sh` reaches it too: it
    # catches TERM (a caught signal is reset in the fuzzer it starts) and goes on to record the slice.
    trap : TERM INT
    stamp=$(date -u +%Y%m%dT%H%M%S)
    log="$camp/logs/$t-$stamp.log"
    cpuf="$camp/logs/$t-$stamp.cpu"
    mkdir -p "$camp/work/$t"
    # See scripts/fuzz.sh for why http has no per-input leak check and keras runs in fork mode.
    [ "$t" = http ] && extra="-detect_leaks=0"
    [ "$t" = keras ] && extra="-fork=1 -ignore_crashes=1"
    start=$(date +%s)
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        LSAN_OPTIONS=suppressions="$src/fuzz/lsan.supp" \
        /usr/bin/time -o "$cpuf" -f '%U %S' nice -n "$nice_level" "$build/fuzz/fuzz_$t" \
        -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-300}" -rss_limit_mb=2560 -max_len=262144 -print_final_stats=1 \
        -artifact_prefix="$camp/crashes/$t-" $extra "$camp/work/$t" "$src/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    triage_timeouts "$t"
    cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ {c = $1 + $2} END {printf "%.1f", c + 0}' "$cpuf" 2>/dev/null)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    # stopped early (no final stats): the last status line's count
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    (
        flock 9
        printf '%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\n' "$(date -u +%FT%TZ)" "$t" "$(($(date +%s) - start))" "${cpu:-0}" \
            "${execs:-0}" "${cov:-0}" "$rc" "$(find "$camp/work/$t" -type f | wc -l)" "$log" >>"$ledger"
    ) 9>>"$ledger.lock"
}

declare -A pid_of=()
# The pids below $1 (children first, then theirs).
descendants() {
    local c
    for c in $(pgrep -P "$1"); do
        echo "$c"
        descendants "$c"
    done
}
stop() {
    local t p
    # slice subshell -> /usr/bin/time -> the fuzzer (nice execs it) -> in fork mode, sh -> its workers:
    # end only the fuzzers (comm fuzz_<target>), so that the slice subshell (comm: this script's name) and
    # /usr/bin/time live on and the slice still records its CPU time in the ledger.
    for t in "${!pid_of[@]}"; do
        for p in $(descendants "${pid_of[$t]}"); do
            case "$(ps -o comm= -p "$p" 2>/dev/null)" in fuzz_*) kill -TERM "$p" 2>/dev/null ;; esac
        done
    done
    wait
    echo "campaign: stopped at $(date +%T)"
    "$0" --report "$build"
    exit 0
}
trap stop TERM INT

echo "campaign: pid $$, targets:$runnable, slices of ${slice}s, $jobs at a time, until $(date -d "@$deadline" +%T)$([ "$goal" -gt 0 ] && echo ", or every target at $goal CPU-s")"
while :; do
    # Reap finished slices.
    for t in "${!pid_of[@]}"; do
        if ! kill -0 "${pid_of[$t]}" 2>/dev/null; then
            wait "${pid_of[$t]}" 2>/dev/null
            unset "pid_of[$t]"
        fi
    done
    running="${!pid_of[*]}"
    for t in $runnable; do
        case " $running " in *" $t "*) continue ;; esac
        if broken "$t"; then
            echo "campaign: $(date +%T) fuzz_$t failed at once (its last log in $camp/logs/): left out"
            runnable=$(printf '%s\n' $runnable | grep -vx "$t" | tr '\n' ' ')
        fi
    done
    now=$(date +%s)
    left=$((deadline - now))
    if [ ${#pid_of[@]} -lt "$jobs" ] && [ "$left" -ge 60 ]; then
        t=$(pick)
        if [ -n "$t" ]; then
            secs=$slice
            [ "$left" -lt "$secs" ] && secs=$left
            if [ "$goal" -gt 0 ]; then
                need=$((goal - $(cpu_so_far "$t") + 15))
                [ "$need" -lt 30 ] && need=30
                [ "$need" -lt "$secs" ] && secs=$need
            fi
            run_slice "$t" "$secs" &
            pid_of[$t]=$!
            echo "campaign: $(date +%T) fuzz_$t for ${secs}s (CPU so far $(cpu_so_far "$t") s)"
            continue
        fi
    fi
    [ ${#pid_of[@]} -eq 0 ] && [ "$left" -lt 60 ] && break
    if [ ${#pid_of[@]} -eq 0 ] && [ "$goal" -gt 0 ] && [ -z "$(pick)" ]; then
        echo "campaign: every target has its ${goal} CPU-s"
        break
    fi
    sleep 5
done
echo "campaign: done at $(date +%T)"
"$0" --report "$build"
