#!/usr/bin/env bash
# soak.sh [TOTAL] [CONNECTIONS]: runs aiproxyd (build/aiproxyd, or
# $AIPROXYD) for TOTAL requests (default 1,000,000) with wrk at CONNECTIONS
# keep-alive connections (default 32), a mix from mixed.lua: 40% plain chat,
# 30% streams, 20% failovers (first provider 500), 10% 502s (provider
# refuses connections). Upstreams are nginx `return` servers on loopback
# (ports SOAK_PORT_BASE.., default 19300). The gateway's VmRSS is sampled
# every second into soak-rss.csv (seconds, requests so far, rss_kb) in the
# output dir (SOAK_OUT, default a temp dir); the summary is printed at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
total=${1:-1000000}
conns=${2:-32}
base=${SOAK_PORT_BASE:-19300}
bin=${AIPROXYD:-$root/build/aiproxyd}
out=${SOAK_OUT:-$(mktemp -d /tmp/aiproxy-soak.XXXXXX)}
mkdir -p "$out"
export PATH="$PATH:/usr/sbin"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ok='{"id":"chatcmpl-soak","object":"chat.completion","created":1700000000,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'
chunk() { printf 'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n' "$1"; }
sse="$(for w in Hello there how can I help you today; do chunk "$w "; done)"
sse+='data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}'$'\n\n''data: [DONE]'$'\n\n'
fail='{"error":{"message":"soak upstream failure","type":"server_error","param":null,"code":null}}'
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/\\\\'/g")"; }
mkdir -p "$out/nginx/logs"
cat > "$out/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $out/nginx/nginx.pid;
error_log $out/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $out/nginx; proxy_temp_path $out/nginx; fastcgi_temp_path $out/nginx;
    uwsgi_temp_path $out/nginx; scgi_temp_path $out/nginx;
    server { listen 127.0.0.1:$base; location / { default_type application/json; return 200 $(q "$ok"); } }
    server { listen 127.0.0.1:$((base + 1)); location / { default_type text/event-stream; return 200 $(q "$sse"); } }
    server { listen 127.0.0.1:$((base + 2)); location / { default_type application/json; return 500 $(q "$fail"); } }
}
NGX
dead=$((base + 9)) # nothing listens there
gwport=$((base + 5))
cat > "$out/aiproxy.json" <<CFG
{
  "node": {"id": "soak"},
  "server": {"listen_addr": "127.0.0.1:$gwport", "workers": 2},
  "observability": {"logging": {"level": "error", "format": "json"}},
  "budget": {"cost_db": "sqlite:///$out/ledger.db"},
  "routing": {"strategy": "availability", "failover": {"max_retries": 0}},
  "providers": {
    "ok":     {"type": "openai", "endpoint": "http://127.0.0.1:$base/v1", "priority": 2, "credentials": {"api_key": "k"},
               "models": [{"name": "soak-ok", "cost_per_1k_tokens": 0.001}, {"name": "soak-failover", "cost_per_1k_tokens": 0.001}]},
    "stream": {"type": "openai", "endpoint": "http://127.0.0.1:$((base + 1))/v1", "credentials": {"api_key": "k"},
               "models": [{"name": "soak-stream", "cost_per_1k_tokens": 0.001}]},
    "broken": {"type": "openai", "endpoint": "http://127.0.0.1:$((base + 2))/v1", "priority": 1, "credentials": {"api_key": "k"},
               "models": [{"name": "soak-failover", "cost_per_1k_tokens": 0.001}]},
    "dead":   {"type": "openai", "endpoint": "http://127.0.0.1:$dead/v1", "credentials": {"api_key": "k"},
               "models": [{"name": "soak-dead", "cost_per_1k_tokens": 0.001}]}
  }
}
CFG
nginx -p "$out/nginx" -c "$out/nginx/nginx.conf"
"$bin" --config "$out/aiproxy.json" > "$out/aiproxyd.log" 2>&1 &
gw=$!
cleanup() {
    kill "$gw" 2>/dev/null || true
    wait "$gw" 2>/dev/null || true
    [ -f "$out/nginx/nginx.pid" ] && kill "$(cat "$out/nginx/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$gwport/ready" >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2}' "/proc/$gw/status"; }
echo "seconds,requests,rss_kb" > "$out/soak-rss.csv"
done_reqs=0
t0=$(date +%s)
summary="$out/wrk.jsonl"
: > "$summary"
sampler() {
    while kill -0 "$gw" 2>/dev/null; do
        echo "$(( $(date +%s) - t0 )),$(cat "$out/progress" 2>/dev/null || echo 0),$(rss)" >> "$out/soak-rss.csv"
        sleep 1
    done
}
echo 0 > "$out/progress"
sampler &
sp=$!
echo "soak: $total requests, $conns connections, gateway pid $gw, output in $out"
echo "soak: rss at start $(rss) KB"
while [ "$done_reqs" -lt "$total" ]; do
    line=$(wrk -t2 -c"$conns" -d5s -s "$here/mixed.lua" "http://127.0.0.1:$gwport" | grep '^{"requests"')
    echo "$line" >> "$summary"
    n=$(printf '%s' "$line" | sed 's/.*"requests":\([0-9]*\).*/\1/')
    done_reqs=$((done_reqs + n))
    echo "$done_reqs" > "$out/progress"
    echo "soak: $done_reqs requests, rss $(rss) KB ($line)"
done
kill "$sp" 2>/dev/null || true
elapsed=$(( $(date +%s) - t0 ))
python3 - "$out" "$elapsed" <<'PY'
import csv, json, sys
out, elapsed = sys.argv[1], int(sys.argv[2])
rows = [r for r in csv.DictReader(open(f"{out}/soak-rss.csv"))]
rss = [int(r["rss_kb"]) for r in rows if r["rss_kb"]]
runs = [json.loads(l) for l in open(f"{out}/wrk.jsonl") if l.strip()]
tot = {k: sum(r[k] for r in runs) for k in runs[0]}
n = len(rss)
warm = rss[n // 10:] if n >= 10 else rss
print(f"soak: {tot['requests']} requests in {elapsed} s ({tot['requests'] // max(elapsed, 1)}/s): "
      f"2xx {tot['s2xx']}, 502 {tot['s502']}, other {tot['other']}, socket errors {tot['errors']}")
print(f"soak: RSS KB start {rss[0]}, after warm-up (10%) {warm[0]}, min/max after warm-up {min(warm)}/{max(warm)}, end {rss[-1]}")
for frac in (0.1, 0.25, 0.5, 0.75, 1.0):
    r = rows[min(n - 1, int(n * frac) - 1 if frac < 1 else n - 1)]
    print(f"soak:   t={r['seconds']}s requests={r['requests']} rss={r['rss_kb']} KB")
PY
