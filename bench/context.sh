#!/usr/bin/env bash
# Issue 14: the context delta buffer (bench/context.py does the work and documents it).
#   bench/context.sh          full: a 20-turn session's tokens on src/ (deltas against whole files),
#                             then an injecting request against a plain one (3 interleaved rounds,
#                             c=32) and the header with nothing pending
#   bench/context.sh quick    one short round (checks the bench itself)
#   bench/context.sh tokens   only the 20-turn session
#   bench/context.sh cost     only the injecting request against a plain one
# Env: BENCH_DURATION, BENCH_ROUNDS, BENCH_SLICES, CONTEXT_PORT_BASE (default 19700; free ports
#      are taken from there up), AIPROXYD (binary), BENCH_NO_BUILD=1, BENCH_KEEP_TMP=1.
# Every process the bench starts is recorded (PID) in a file; the trap below
# stops those still running, by PID, however the driver ends.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
if [ -z "${AIPROXYD:-}" ] && [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  if ! make -C "$root" -j2 BUILD=build >/dev/null 2>"${TMPDIR:-/tmp}/aiproxy-context-bench-make.log"; then
    [ -x "$root/build/aiproxyd" ] || { cat "${TMPDIR:-/tmp}/aiproxy-context-bench-make.log" >&2; exit 2; }
    echo "warning: make failed (see ${TMPDIR:-/tmp}/aiproxy-context-bench-make.log); using the existing build/aiproxyd" >&2
  fi
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export PATH="$PATH:/usr/sbin"
for t in nginx wrk node python3; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }
done

pidfile="$(mktemp "${TMPDIR:-/tmp}/aiproxy-context-bench-pids.XXXXXX")"
export CONTEXT_PIDFILE="$pidfile"
driver=""
# ours PID START: whether PID is still the process the driver started (same
# start time, field 22 of /proc/PID/stat), not a later one that reused the PID
ours() {
  local st rest
  st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  rest="${st##*) }"
  set -- "$2" $rest
  [ "${21:-}" = "$1" ]
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$driver" 2>/dev/null || break; sleep 0.2; done
  fi
  # whatever the driver did not stop (it was killed, or failed to): by PID
  local pid start left
  while read -r pid start; do
    [ "$pid" != tmpdir ] && ours "$pid" "$start" && kill -TERM "$pid" 2>/dev/null || true
  done <"$pidfile"
  for _ in $(seq 1 50); do
    left=0
    while read -r pid start; do
      [ "$pid" != tmpdir ] && ours "$pid" "$start" && left=1 || true
    done <"$pidfile"
    [ "$left" = 1 ] || break
    sleep 0.2
  done
  while read -r pid start; do
    if [ "$pid" = tmpdir ]; then
      # the driver's temp dir (it removes it itself unless it was killed)
      case "$start" in "${TMPDIR:-/tmp}"/aiproxy-context-bench-*)
        [ "${BENCH_KEEP_TMP:-}" = 1 ] || rm -rf -- "$start" ;;
      esac
    elif ours "$pid" "$start"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$pidfile"
  rm -f "$pidfile"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

python3 "$here/context.py" "${1:-full}" &
driver=$!
wait "$driver"
