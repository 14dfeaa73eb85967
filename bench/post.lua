-- wrk script: POST a small OpenAI chat request; print a JSON summary line.
-- env BENCH_MODEL   model name (default gpt-bench)
-- env BENCH_MAX_REQ stop after about this many requests in total (soak mode)
-- env BENCH_AUTH    when set, sent as "Authorization: Bearer $BENCH_AUTH"
-- env BENCH_CLOSE   when 1, "Connection: close": a new connection (and TLS
--                   handshake) per request
local model = os.getenv("BENCH_MODEL") or "gpt-bench"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH") or ""
if auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end
if os.getenv("BENCH_CLOSE") == "1" then wrk.headers["Connection"] = "close" end
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello"}]}'

local threads = {}
local max_total = tonumber(os.getenv("BENCH_MAX_REQ") or "0")
local nthreads_env = tonumber(os.getenv("BENCH_THREADS") or "1")

function setup(thread)
  table.insert(threads, thread)
end

local count = 0
local limit = 0
local bad = 0

function init(args)
  if max_total > 0 then limit = math.ceil(max_total / nthreads_env) end
end

function response(status, headers, body)
  count = count + 1
  if status < 200 or status > 299 then bad = bad + 1 end
  if limit > 0 and count == limit then
    -- wrk keeps running until -d ends even after thread:stop(); tell the
    -- driver, which sends SIGINT (wrk then prints its summary)
    io.write("BENCHLIMIT\n"); io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local nbad = 0
  for _, t in ipairs(threads) do nbad = nbad + (t:get("bad") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"non2xx_lua":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, nbad))
end
