-- wrk script for the soak: a mix of requests, chosen per request in a
-- fixed rotation of 10: 4 plain chat completions, 3 streams, 2 whose first
-- provider answers 500 (failed over to the second), 1 whose only provider
-- refuses connections (a 502). Counts statuses per thread; done() prints
-- one JSON line: {"requests":N,"s2xx":N,"s502":N,"other":N,"errors":N}.
local bodies = {
  '{"model":"soak-ok","messages":[{"role":"user","content":"Say hello"}]}',
  '{"model":"soak-stream","stream":true,"messages":[{"role":"user","content":"Say hello"}]}',
  '{"model":"soak-failover","messages":[{"role":"user","content":"Say hello"}]}',
  '{"model":"soak-dead","messages":[{"role":"user","content":"Say hello"}]}',
}
local rotation = {1, 2, 1, 3, 1, 2, 4, 1, 2, 3}
local threads = {}
local i = 0
s2xx, s502, other = 0, 0, 0 -- globals: done() reads them with thread:get

function setup(thread) table.insert(threads, thread) end

function request()
  i = i + 1
  local b = bodies[rotation[(i % #rotation) + 1]]
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"}, b)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 502 then s502 = s502 + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + (t:get("s2xx") or 0); b = b + (t:get("s502") or 0); c = c + (t:get("other") or 0)
  end
  local e = summary.errors
  io.write(string.format('{"requests":%d,"s2xx":%d,"s502":%d,"other":%d,"errors":%d}\n',
    summary.requests, a, b, c, e.connect + e.read + e.write + e.timeout))
end
