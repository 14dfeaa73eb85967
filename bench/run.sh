#!/usr/bin/env bash
# aiproxy benchmark: one command, everything on loopback, nothing installed.
#   bench/run.sh            full run (interleaved rounds, syscalls, TTFB, profile, 1,000 streams)
#   bench/run.sh quick      one short round of everything (a smoke test of the bench itself)
#   bench/run.sh soak       RSS of aiproxyd across 1,000,000 requests (wrk c=32)
#   bench/run.sh many [N]   only the concurrent slow streams phase, N streams (default 1,000)
#   bench/run.sh many10k    the same with 10,000 streams (= many 10000; issue 16), a few minutes
#   bench/run.sh profile    perf profile of aiproxyd under wrk c=32
#   bench/run.sh ledger     aiproxyd with and without cost tracking (SQLite ledger) next to nginx, c=32
#   bench/run.sh metrics    issue 6: c=32 with and without a GET /metrics scrape every 100 ms
#   bench/run.sh auth       issue 5: auth + rate limits + budget + ledger on vs off, c=32 and c=256
#   bench/run.sh routing    issue 4: 1 provider vs 3 providers with cost_optimized + policies, c=32
#   bench/run.sh issues     the three above in one report
#   bench/run.sh auth_parts issue 5 decomposed: each of auth, rate limits, budget limits, ledger alone
#   bench/run.sh cluster    issue 12: limits and budgets in Redis vs local memory, c=32 and c=256
#   bench/run.sh tls        HTTPS on the client listener vs nginx terminating TLS (same cert, TLS 1.3),
#                           keep-alive c=32 and c=256, and a handshake per request (Connection: close)
#   bench/run.sh mesh [M]   issue 11: a request through a peer vs two chained nginx, heartbeat CPU
#                           (bench/mesh.sh M: full, quick, chain or heartbeat; its own ports from 19400)
#   bench/run.sh cache [M]  issue 13: exact cache hits vs nginx proxy_cache, RSS at 10k/100k entries
#                           (bench/cache.sh M: full, quick, hits, memory or semantic; ports from 19600)
#   bench/run.sh context [M] issue 14: a 20-turn session's tokens on src/ with deltas vs whole
#                           files, and an injecting request vs a plain one (bench/context.sh M: full, quick,
#                           tokens or cost; ports from 19700)
#   bench/run.sh clients [quick] issue 17: /v1/responses and JWT-authenticated chat vs plain chat
#                           with an API key, c=32 (bench/clients.py; ports from 19950)
#   bench/run.sh h2         issue 15: h2load over h2c against aiproxyd and nginx `listen ... http2`,
#                           32 and 256 streams (bench/h2.sh; ports from 19800)
#   bench/run.sh grpc       issue 15: gRPC Chat (grpc-js) vs REST chat (node:http2) on the same gateway,
#                           h2c, 32 calls in flight (bench/grpc.sh; ports from 19900)
# Env: BENCH_DURATION (s per wrk run, default 10), BENCH_ROUNDS (default 3),
#      BENCH_SLICES (A/B modes: 2 s slices alternating between variants, default 5),
#      BENCH_PORT_BASE (default 19100), AIPROXYD (binary), BENCH_KEEP_TMP=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
if [ "${1:-}" = mesh ]; then shift; exec "$here/mesh.sh" "$@"; fi
if [ "${1:-}" = cache ]; then shift; exec "$here/cache.sh" "$@"; fi
if [ "${1:-}" = context ]; then shift; exec "$here/context.sh" "$@"; fi
if [ "${1:-}" = clients ]; then
  shift
  [ -n "${AIPROXYD:-}" ] || make -C "$root" -j2 BUILD=build >/dev/null
  exec python3 "$here/clients.py" "$@"
fi
if [ "${1:-}" = h2 ]; then shift; exec "$here/h2.sh" "$@"; fi
if [ "${1:-}" = grpc ]; then shift; exec "$here/grpc.sh" "$@"; fi
if [ -z "${AIPROXYD:-}" ] && [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  if ! make -C "$root" -j2 BUILD=build >/dev/null 2>"${TMPDIR:-/tmp}/aiproxy-bench-make.log"; then
    [ -x "$root/build/aiproxyd" ] || { cat "${TMPDIR:-/tmp}/aiproxy-bench-make.log" >&2; exit 2; }
    echo "warning: make failed (see ${TMPDIR:-/tmp}/aiproxy-bench-make.log); using the existing build/aiproxyd" >&2
  fi
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for t in nginx wrk node python3; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "missing $t" >&2; exit 2; }
done
export PATH="$PATH:/usr/sbin"
exec python3 "$here/bench.py" "${1:-full}" "${@:2}"
