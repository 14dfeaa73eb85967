#!/usr/bin/env bash
# HTTP/2 (issue 15 item 1): h2load against aiproxyd over h2c and against
# nginx `listen ... http2` proxy_pass, both in front of the same fake upstream
# (nginx, `return 200` with a fixed completion), POSTing the same chat body.
#   bench/h2.sh            32 streams (h2load -c 4 -m 8) and 256 streams (-c 8 -m 32)
# Each setting runs aiproxyd and nginx alternately, BENCH_ROUNDS times (default
# 1), BENCH_DURATION seconds each (default 10) after a 2 s warm-up; the report
# (req/s, the ratio aiproxyd/nginx) goes to bench/results/DATE-h2.md and stdout.
# Env: BENCH_DURATION, BENCH_ROUNDS, H2_PORT_BASE (default 19800), AIPROXYD,
#      BENCH_NO_BUILD=1, BENCH_KEEP_TMP=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export PATH="$PATH:/usr/sbin"
for t in nginx h2load python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/setup.sh --test installs it)" >&2; exit 2; }
done
if [ -z "${AIPROXYD:-}" ] && [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  make -C "$root" -j2 BUILD=build >/dev/null
fi
aiproxyd="${AIPROXYD:-$root/build/aiproxyd}"
dur="${BENCH_DURATION:-10}"
rounds="${BENCH_ROUNDS:-1}"
base="${H2_PORT_BASE:-19800}"
up=$base ngx=$((base + 1)) aip=$((base + 2))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp="$(mktemp -d "${TMPDIR:-/tmp}/aiproxy-h2-bench.XXXXXX")"
pids=()
cleanup() {
  # Only what this script started, by PID.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "${BENCH_KEEP_TMP:-}" = 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

completion='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18},"system_fingerprint":"fp_bench"}'
common="daemon off; worker_rlimit_nofile 16384; events { worker_connections 8192; }"
temps="client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/fcgi; uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;"
mkdir -p "$tmp/up" "$tmp/ngx"
cat >"$tmp/up/nginx.conf" <<EOF
# fake upstream: a fixed completion
worker_processes 1; pid $tmp/up/nginx.pid; error_log $tmp/up/error.log warn; $common
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s; $temps
  server { listen 127.0.0.1:$up reuseport backlog=4096;
           location / { default_type application/json; return 200 '$completion'; } } }
EOF
cat >"$tmp/ngx/nginx.conf" <<EOF
# baseline: nginx proxy_pass over h2c (listen ... http2), keep-alive upstream pool
worker_processes 2; pid $tmp/ngx/nginx.pid; error_log $tmp/ngx/error.log warn; $common
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s; $temps
  http2_max_concurrent_streams 128;
  upstream up { server 127.0.0.1:$up; keepalive 64; keepalive_requests 10000000; }
  server { listen 127.0.0.1:$ngx http2 reuseport backlog=4096;
           location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
cat >"$tmp/aiproxy.json" <<EOF
{"node": {"id": "bench"},
 "server": {"listen_addr": "127.0.0.1:$aip", "workers": 2},
 "providers": {"fake": {"type": "openai", "endpoint": "http://127.0.0.1:$up/v1",
   "credentials": {"api_key": "sk-bench"},
   "models": [{"name": "gpt-bench", "cost_per_1k_input_tokens": 0.001, "cost_per_1k_output_tokens": 0.002}]}},
 "observability": {"logging": {"level": "warn"}}}
EOF
printf '%s' '{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello"}]}' >"$tmp/body.json"

nginx -p "$tmp/up" -c "$tmp/up/nginx.conf" 2>"$tmp/up/stderr" & pids+=($!)
nginx -p "$tmp/ngx" -c "$tmp/ngx/nginx.conf" 2>"$tmp/ngx/stderr" & pids+=($!)
(cd "$tmp" && exec "$aiproxyd" --config "$tmp/aiproxy.json") >"$tmp/aiproxyd.log" 2>&1 & pids+=($!)
for port in $up $ngx $aip; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
# Both must answer the chat request over h2c with prior knowledge.
for port in $ngx $aip; do
  code=$(curl -s -o /dev/null -w '%{http_version} %{http_code}' --http2-prior-knowledge \
         -H 'content-type: application/json' --data-binary @"$tmp/body.json" \
         "http://127.0.0.1:$port/v1/chat/completions")
  [ "$code" = "2 200" ] || { echo "port $port: $code (expected HTTP/2 200)" >&2; exit 1; }
done

# run NAME PORT C M: one h2load run; prints "req/s succeeded total"
run() {
  local out
  out=$(h2load -t 1 -c "$3" -m "$4" -D "$dur" --warm-up-time=2 -d "$tmp/body.json" \
        -H 'content-type: application/json' "http://127.0.0.1:$2/v1/chat/completions" 2>&1)
  echo "$out" >>"$tmp/h2load-$1-$3x$4.log"
  local rps ok total
  rps=$(echo "$out" | sed -n 's/.*finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p')
  total=$(echo "$out" | sed -n 's/^requests: \([0-9]*\) total.*/\1/p')
  ok=$(echo "$out" | sed -n 's/.* \([0-9]*\) succeeded.*/\1/p')
  echo "${rps:-0} ${ok:-0} ${total:-0}"
}

date_s=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$here/results"
report="$here/results/$date_s-h2.md"
{
  echo "# HTTP/2 (h2c): aiproxyd vs nginx proxy_pass, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "h2load -t 1, ${dur} s per run after a 2 s warm-up, $rounds round(s); POST /v1/chat/completions"
  echo "(75-byte body); git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'); nproc $(nproc)."
  echo
  echo "| streams | h2load | aiproxyd req/s | nginx req/s | ratio | non-2xx or failed (aiproxyd / nginx) |"
  echo "|---:|---|---:|---:|---:|---|"
} >"$report"
for cm in "4 8" "8 32"; do
  set -- $cm
  a_sum=0 n_sum=0 a_bad=0 n_bad=0
  for _ in $(seq 1 "$rounds"); do
    read -r a_rps a_ok a_tot < <(run aiproxyd "$aip" "$1" "$2")
    read -r n_rps n_ok n_tot < <(run nginx "$ngx" "$1" "$2")
    a_sum=$(python3 -c "print($a_sum + $a_rps)")
    n_sum=$(python3 -c "print($n_sum + $n_rps)")
    a_bad=$((a_bad + a_tot - a_ok)) n_bad=$((n_bad + n_tot - n_ok))
  done
  python3 - "$1" "$2" "$a_sum" "$n_sum" "$rounds" "$a_bad" "$n_bad" >>"$report" <<'EOF'
import sys
c, m, a, n, r, ab, nb = sys.argv[1:]
a, n = float(a) / int(r), float(n) / int(r)
print(f"| {int(c) * int(m)} | -c {c} -m {m} | {a:,.0f} | {n:,.0f} | {a / n if n else 0:.2f}x | {ab} / {nb} |")
EOF
done
cat "$report"
