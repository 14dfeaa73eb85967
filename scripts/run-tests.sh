#!/usr/bin/env bash
# run-tests.sh BUILD_DIR: runs the unit tests and the integration tests
# against BUILD_DIR/aiproxyd. Under a sanitizer build every report is
# written to tests/out/<build>/sanitizer.* and any report fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out="tests/out/$build"
rm -rf "$out"
mkdir -p "$out"
# symbolize=0: a report is written in microseconds (the tests SIGKILL their
# gateways when they end, which could cut a slow symbolization short); the
# addresses are symbolized below, after the run.
export ASAN_OPTIONS="log_path=$PWD/$out/sanitizer:detect_leaks=1:abort_on_error=0:halt_on_error=1:symbolize=0"
# Under a sanitizer, RSS measures ASan's quarantine and shadow memory, not the
# gateway: tests skip their memory-bound assertions (the plain run keeps them).
case "$build" in *asan*|*san*) export AIPROXY_SANITIZED=1 ;; *) export AIPROXY_SANITIZED=0 ;; esac
export UBSAN_OPTIONS="log_path=$PWD/$out/sanitizer:print_stacktrace=1:halt_on_error=1"
failed=0

echo "== unit tests ($build)"
for t in "$build"/tests/*_test; do
    [ -x "$t" ] || continue
    if ! timeout 120 "$t" > "$out/$(basename "$t").log" 2>&1; then
        echo "FAIL $(basename "$t") (see $out/$(basename "$t").log)"
        tail -20 "$out/$(basename "$t").log"
        failed=1
    else
        echo "ok   $(basename "$t") ($(grep -c '^\[       OK \]' "$out/$(basename "$t").log") tests)"
    fi
done

echo "== integration tests ($build)"
if ! AIPROXYD="$PWD/$build/aiproxyd" TEST_OUT="$PWD/$out" timeout 900 \
        node --test --test-concurrency=1 --test-reporter=spec tests/integration/ > "$out/integration.log" 2>&1; then
    failed=1
    grep -E '^\s*(✖|not ok)' "$out/integration.log" | head -40
fi
grep -E '^ℹ (tests|pass|fail|duration_ms)' "$out/integration.log"

if ls "$out"/sanitizer.* >/dev/null 2>&1; then
    echo "== sanitizer reports ($build)"
    sym=$(command -v asan_symbolize || command -v asan_symbolize-14 || true)
    for f in "$out"/sanitizer.*; do
        if [ -n "$sym" ]; then "$sym" < "$f" > "$f.sym" 2>/dev/null || cp "$f" "$f.sym"; else cp "$f" "$f.sym"; fi
        head -60 "$f.sym"
    done
    failed=1
fi
exit $failed
