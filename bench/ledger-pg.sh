#!/usr/bin/env bash
# Issue 12: the cost ledger in PostgreSQL vs SQLite, same load (bench/ledger_pg.py
# does the work and documents it): wrk at 32 and 256 connections against two
# aiproxyd in front of the main bench's fake upstream, one with the SQLite
# ledger and one with budget.cost_db: postgres://... on a throwaway PostgreSQL
# server; the throughput ratio (target >= 0.95x), latency, CPU per request
# (aiproxyd's and the PostgreSQL server's), and a check that every request is a
# row in PostgreSQL. About a minute with the defaults.
#   bench/ledger-pg.sh
# Env: BENCH_ROUNDS (3), BENCH_DURATION (4 s per variant, connection count and
#      round), BENCH_SLICES (2), BENCH_PORT_BASE (19100), AIPROXYD (binary),
#      BENCH_NO_BUILD=1, BENCH_KEEP_TMP=1.
# Every process the driver starts is recorded (PID and start time); the trap
# below stops those still running, by PID, however the driver ends.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
if [ -z "${AIPROXYD:-}" ] && [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  if ! make -C "$root" -j2 BUILD=build >/dev/null 2>"${TMPDIR:-/tmp}/aiproxy-ledger-pg-make.log"; then
    [ -x "$root/build/aiproxyd" ] || { cat "${TMPDIR:-/tmp}/aiproxy-ledger-pg-make.log" >&2; exit 2; }
    echo "warning: make failed (see ${TMPDIR:-/tmp}/aiproxy-ledger-pg-make.log); using the existing build/aiproxyd" >&2
  fi
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export PATH="$PATH:/usr/sbin"
for t in nginx wrk python3; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }
done
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 ||
  { echo "missing PostgreSQL (scripts/setup.sh --test installs it)" >&2; exit 2; }

pidfile="$(mktemp "${TMPDIR:-/tmp}/aiproxy-ledger-pg-pids.XXXXXX")"
export LEDGER_PG_PIDFILE="$pidfile"
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
  local pid start
  while read -r pid start; do
    ours "$pid" "$start" && kill -TERM "$pid" 2>/dev/null || true
  done <"$pidfile"
  sleep 0.5
  while read -r pid start; do
    ours "$pid" "$start" && kill -KILL "$pid" 2>/dev/null || true
  done <"$pidfile"
  rm -f "$pidfile"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

python3 "$here/ledger_pg.py" &
driver=$!
wait "$driver"
