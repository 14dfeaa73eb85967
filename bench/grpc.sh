#!/usr/bin/env bash
# gRPC (issue 15 items 2-3): aiproxy.v1.Gateway/Chat against the REST path
# POST /v1/chat/completions on the same gateway, same fake upstream (nginx,
# `return 200` with a fixed completion), same transport (h2c, one HTTP/2
# connection), same node load client (bench/grpc-load.mjs: @grpc/grpc-js for
# gRPC, node:http2 for REST; ghz is not in Debian).
#   bench/grpc.sh          32 calls in flight, gRPC and REST alternately
# BENCH_ROUNDS rounds (default 3) of BENCH_DURATION seconds (default 10) each
# per mode; the report (req/s, gRPC/REST ratio) goes to
# bench/results/DATE-grpc.md and stdout.
# Env: BENCH_DURATION, BENCH_ROUNDS, BENCH_CONCURRENCY (default 32),
#      GRPC_PORT_BASE (default 19900), AIPROXYD, BENCH_NO_BUILD=1, BENCH_KEEP_TMP=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export PATH="$PATH:/usr/sbin"
for t in nginx node curl; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/setup.sh --test installs it)" >&2; exit 2; }
done
[ -d "$root/tests/node_modules/@grpc/grpc-js" ] || { echo "missing tests/node_modules (scripts/setup.sh --test)" >&2; exit 2; }
if [ -z "${AIPROXYD:-}" ] && [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  make -C "$root" -j2 BUILD=build >/dev/null
fi
aiproxyd="${AIPROXYD:-$root/build/aiproxyd}"
dur="${BENCH_DURATION:-10}"
rounds="${BENCH_ROUNDS:-3}"
conc="${BENCH_CONCURRENCY:-32}"
base="${GRPC_PORT_BASE:-19900}"
up=$base aip=$((base + 1))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp="$(mktemp -d "${TMPDIR:-/tmp}/aiproxy-grpc-bench.XXXXXX")"
pids=()
cleanup() {
  # Only what this script started, by PID.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "${BENCH_KEEP_TMP:-}" = 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

completion='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18},"system_fingerprint":"fp_bench"}'
mkdir -p "$tmp/up"
cat >"$tmp/up/nginx.conf" <<EOC
# fake upstream: a fixed completion
worker_processes 1; pid $tmp/up/nginx.pid; error_log $tmp/up/error.log warn;
daemon off; events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/fcgi;
  uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;
  server { listen 127.0.0.1:$up reuseport backlog=4096;
           location / { default_type application/json; return 200 '$completion'; } } }
EOC
cat >"$tmp/aiproxy.json" <<EOC
{"node": {"id": "bench"},
 "server": {"listen_addr": "127.0.0.1:$aip", "workers": 2},
 "providers": {"fake": {"type": "openai", "endpoint": "http://127.0.0.1:$up/v1",
   "credentials": {"api_key": "sk-bench"},
   "models": [{"name": "gpt-bench", "cost_per_1k_input_tokens": 0.001, "cost_per_1k_output_tokens": 0.002}]}},
 "observability": {"logging": {"level": "warn"}}}
EOC
nginx -p "$tmp/up" -c "$tmp/up/nginx.conf" 2>"$tmp/up/stderr" & pids+=($!)
(cd "$tmp" && exec "$aiproxyd" --config "$tmp/aiproxy.json") >"$tmp/aiproxyd.log" 2>&1 & pids+=($!)
aip_pid=$!
# aiproxyd's CPU time (user + system, clock ticks), to tell its cost per call
# from the node client's (which is the bottleneck of both modes).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$aip_pid/stat"; }
hz=$(getconf CLK_TCK)
for port in $up $aip; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

results="$tmp/results.jsonl"
for r in $(seq 1 "$rounds"); do
  for mode in grpc rest; do
    t0=$(cpu_ticks)
    line=$(node "$here/grpc-load.mjs" "$mode" "$aip" "$conc" "$dur")
    t1=$(cpu_ticks)
    # the warm-up second's calls are not counted: the CPU figure is an upper bound
    line="${line%\}},\"cpu_s\":$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN{print (b-a)/hz}')}"
    echo "round $r: $line"
    echo "$line" >>"$results"
  done
done

stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$here/results"
report="$here/results/$stamp-grpc.md"
node -e '
const fs = require("fs");
const rows = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const med = (m) => { const v = rows.filter((r) => r.mode === m).map((r) => r.rps).sort((a, b) => a - b); return v[Math.floor(v.length / 2)]; };
const errs = (m) => rows.filter((r) => r.mode === m).reduce((s, r) => s + r.errors, 0);
const g = med("grpc"), r = med("rest");
console.log(`# gRPC vs REST, ${process.argv[2]} calls in flight on one h2c connection, ${process.argv[3]} x ${process.argv[4]} s per mode\n`);
console.log("| path | req/s (median) | rounds | errors |\n|---|---|---|---|");
console.log(`| gRPC aiproxy.v1.Gateway/Chat (grpc-js) | ${g} | ${rows.filter((x) => x.mode === "grpc").map((x) => x.rps).join(", ")} | ${errs("grpc")} |`);
console.log(`| REST POST /v1/chat/completions (node:http2) | ${r} | ${rows.filter((x) => x.mode === "rest").map((x) => x.rps).join(", ")} | ${errs("rest")} |`);
console.log(`\ngRPC/REST: ${(g / r).toFixed(2)}x`);
const us = (m) => { const x = rows.filter((y) => y.mode === m); const c = x.reduce((s, y) => s + y.cpu_s, 0); const n = x.reduce((s, y) => s + y.requests, 0); return Math.round(c * 1e6 / n); };
console.log(`\naiproxyd CPU per call (user+system over the run, warm-up included: an upper bound): gRPC ${us("grpc")} us, REST ${us("rest")} us`);
' "$results" "$conc" "$rounds" "$dur" | tee "$report"
echo "report: $report"
