#!/usr/bin/env bash
# valgrind.sh [BUILD_DIR] [INTEGRATION_FILE]: runs one integration file
# (default tests/integration/basics.test.mjs) with every aiproxyd it starts
# under valgrind memcheck (--leak-check=full, definite leaks count as
# errors), then reports each gateway's error summary and leaks. Exits 1 when
# any gateway had a memcheck error or a definite leak, or the tests failed.
#
# The harness stops gateways with SIGKILL, which would leave valgrind no
# chance to report: each gateway runs under a small wrapper that forwards
# SIGTERM, and whose death (SIGKILL) sends SIGTERM to valgrind (setpriv
# --pdeathsig), so aiproxyd drains and exits normally and valgrind writes
# its full report.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
file=${2:-tests/integration/basics.test.mjs}
out="tests/out/valgrind"
rm -rf "$out"
mkdir -p "$out"
bin="$PWD/$build/aiproxyd"
[ -x "$bin" ] || { echo "valgrind.sh: $bin not built" >&2; exit 2; }
wrapper="$out/aiproxyd-vg"
cat > "$wrapper" <<WRAP
#!/bin/sh
setpriv --pdeathsig TERM valgrind --leak-check=full --errors-for-leak-kinds=definite \\
    --show-leak-kinds=definite --error-exitcode=99 --num-callers=30 \\
    --log-file="$PWD/$out/vg.%p.log" "$bin" "\$@" &
pid=\$!
trap 'kill -TERM \$pid 2>/dev/null' TERM INT
wait \$pid
wait \$pid
WRAP
chmod +x "$wrapper"

echo "== valgrind: $file against $build/aiproxyd"
start=$(date +%s)
AIPROXYD="$PWD/$wrapper" TEST_OUT="$PWD/$out" timeout 600 \
    node --test --test-concurrency=1 --test-reporter=spec "$file" > "$out/integration.log" 2>&1
tests_rc=$?
grep -E '^ℹ (tests|pass|fail)' "$out/integration.log"
# Valgrind finishes its report after the test runner is gone: wait for every
# log to hold its final summary.
for _ in $(seq 1 240); do
    pending=0
    for l in "$out"/vg.*.log; do
        [ -f "$l" ] || continue
        grep -q 'ERROR SUMMARY' "$l" || pending=1
    done
    [ $pending = 0 ] && break
    sleep 0.5
done
status=0
[ $tests_rc = 0 ] || { echo "FAIL: the tests failed under valgrind (see $out/integration.log)"; status=1; }
n=0
for l in "$out"/vg.*.log; do
    [ -f "$l" ] || continue
    # The wrapper's own setpriv/sh processes leave no log; aiproxyd's do.
    n=$((n + 1))
    errs=$(grep -o 'ERROR SUMMARY: [0-9,]* errors' "$l" | grep -o '[0-9,]*' | head -1 | tr -d ,)
    def=$(grep -o 'definitely lost: [0-9,]* bytes' "$l" | grep -o '[0-9,]*' | head -1 | tr -d ,)
    if ! grep -q 'ERROR SUMMARY' "$l"; then
        echo "FAIL $(basename "$l"): no final summary (valgrind did not finish)"
        status=1
    elif [ "${errs:-0}" != 0 ]; then
        echo "FAIL $(basename "$l"): ${errs} errors, definitely lost ${def:-0} bytes"
        head -80 "$l"
        status=1
    else
        echo "ok   $(basename "$l"): 0 errors, definitely lost ${def:-0} bytes"
    fi
done
[ $n -gt 0 ] || { echo "FAIL: no gateway ran under valgrind"; status=1; }
echo "== valgrind: $n gateway runs in $(( $(date +%s) - start )) s"
exit $status
