#!/bin/sh
# Replays crash/oom inputs of one fuzz target alone and says, for each, whether the fault lies in a
# library doppel uses (the first stack frame that is neither the sanitizer/libFuzzer runtime nor the
# fuzz harness is in a shared library named by UPSTREAM_LIBS, default libhdf5) or in doppel.
#   scripts/fuzz-upstream.sh FUZZ_BINARY INPUT...
# Prints one line per input ("upstream libhdf5_serial.so.103: H5O__msg_iterate_real" or "doppel: ...")
# and exits 1 if any input is not an upstream fault (or cannot be classified), 0 otherwise.
# scripts/fuzz.sh uses it for fuzz_keras, whose libhdf5 crashes on corrupt files (fuzz/upstream/README.md)
# must not stop CI while a crash in doppel's own Keras importer still does.
set -u
bin=${1:?usage: scripts/fuzz-upstream.sh FUZZ_BINARY INPUT...}
shift
libs=${UPSTREAM_LIBS:-libhdf5}
bad=0
for f in "$@"; do
    [ -f "$f" ] || continue
    # -runs=1 with a file runs it once; the malloc limit makes a huge allocation report with its stack.
    out=$(ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        timeout 120 "$bin" -rss_limit_mb=2560 -malloc_limit_mb=1024 -timeout=60 "$f" 2>&1)
    # The first frame that is not in the fuzz binary's runtime (those frames carry "(<binary>+0x...)"
    # and no source line) nor in the C library (memcpy & co., called through the sanitizer's interceptors):
    # either a shared library "(/lib/...so...+0x...)" or a doppel source "file.c:line".
    frame=$(printf '%s\n' "$out" | awk -v bin="$(basename "$bin")" '
        /^ *#[0-9]+ 0x/ {
            if (index($0, "/" bin "+0x")) next
            if ($0 ~ /libc\.so|sysdeps\/|string\/\.\.\/|nptl\/|stdlib\//) next
            print; exit
        }')
    what=$(printf '%s\n' "$out" | grep -m1 -o 'ERROR: [A-Za-z]*: [a-z-]*\( ([a-z]*([0-9]*))\)\?')
    case "$frame" in
        "")
            echo "unclassified: $f (${what:-no sanitizer report on replay})"
            bad=1
            ;;
        *)
            lib=$(printf '%s\n' "$frame" | grep -o '[^/( ]*\.so[^+ ]*' | head -1)
            fn=$(printf '%s\n' "$frame" | awk '{for (i = 1; i <= NF; i++) if ($i == "in") {print $(i + 1); exit}}')
            hit=0
            for l in $libs; do
                case "$lib" in "$l"*) hit=1 ;; esac
            done
            if [ $hit -eq 1 ]; then
                echo "upstream $lib: ${fn:-?} ($what): $f"
            else
                echo "doppel: ${fn:-?} in ${lib:-doppel} ($what): $f"
                bad=1
            fi
            ;;
    esac
done
exit $bad
