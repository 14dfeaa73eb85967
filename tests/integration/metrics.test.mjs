// Metrics: GET /metrics series by provider, model, key and status class
// (bounded: unknown models folded into "other"), failovers by reason,
// tokens, cost, TTFT, circuit state, budget, rate limits, ledger depth;
// observability.metrics.collect honoured; the prometheus_port listener.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

const ADMIN = 'admin-key-123';
const USER = 'user-key-456';
let a, b;

before(async () => {
  a = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  b = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
});
after(() => h.killAll());
beforeEach(async () => { await a.reset(); await b.reset(); });

const auth = (k) => ({ authorization: `Bearer ${k}` });

function security(extra = {}) {
  return {
    security: {
      auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }, { key: USER, name: 'alice', ...extra }] },
    },
  };
}

/** Parses the exposition into [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable metrics line: ${line}`);
    const labels = {};
    if (m[3]) for (const kv of m[3].matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

export function metricValue(ms, name, want = {}) {
  const hits = ms.filter((m) => m.name === name && Object.entries(want).every(([k, v]) => m.labels[k] === v));
  return hits.reduce((s, m) => s + m.value, 0);
}

async function scrape(url, key = ADMIN) {
  const r = await h.request(url + '/metrics', { headers: key ? auth(key) : {} });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'], /text\/plain; version=0\.0\.4/);
  return { text: r.text, ms: parseMetrics(r.text) };
}

test('series by provider, model, key and status; unknown models folded; failovers by reason; tokens, cost, TTFT', { timeout: 30000 }, async (t) => {
  const cfg = h.twoProviderConfig(a, b, { extra: { ...security(), budget: { daily_limit: 10, monthly_limit: 100 } } });
  const gw = await h.gatewayFor(t, cfg);
  for (let i = 0; i < 3; i++) {
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('hello metrics'), headers: auth(USER) });
    assert.equal(r.status, 200, r.text);
  }
  // A stream (TTFT).
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody('stream me', { stream: true }), headers: auth(USER) });
  await s.done;
  // A failover: p1 answers 500, p2 serves.
  await a.control({ queue: [{ status: 500 }] });
  const f = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('fail over'), headers: auth(USER) });
  assert.equal(f.status, 200, f.text);
  // 30 made-up models: each a 404, none becomes a label value.
  for (let i = 0; i < 30; i++) {
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x', { model: `made-up-${i}` }), headers: auth(USER) });
    assert.equal(r.status, 404);
  }
  const { text, ms } = await scrape(gw.url);
  assert.equal(metricValue(ms, 'aiproxy_requests_by_route_total', { provider: 'p1', model: 'gpt-test', key: 'alice', status_class: '2xx' }), 4);
  assert.equal(metricValue(ms, 'aiproxy_requests_by_route_total', { provider: 'p2', model: 'gpt-test', key: 'alice', status_class: '2xx' }), 1);
  assert.equal(metricValue(ms, 'aiproxy_requests_by_route_total', { model: 'other', key: 'alice', status_class: '4xx' }), 30);
  assert.ok(!text.includes('made-up'), 'a client-chosen model name must never become a label value');
  assert.equal(metricValue(ms, 'aiproxy_failovers_total', { reason: 'upstream_error' }), 1);
  assert.ok(metricValue(ms, 'aiproxy_tokens_total', { direction: 'input' }) > 0);
  assert.ok(metricValue(ms, 'aiproxy_tokens_total', { direction: 'output' }) > 0);
  assert.ok(metricValue(ms, 'aiproxy_provider_tokens_input_total', { provider: 'p1', model: 'gpt-test' }) > 0);
  const cost = metricValue(ms, 'aiproxy_cost_usd_total');
  assert.ok(cost > 0, 'cost counted');
  assert.ok(Math.abs(metricValue(ms, 'aiproxy_provider_cost_usd_total') - cost) < 1e-9, 'per provider/model cost adds up');
  assert.equal(metricValue(ms, 'aiproxy_request_cost_usd_count'), 5);
  assert.equal(metricValue(ms, 'aiproxy_time_to_first_token_seconds_count'), 1);
  assert.equal(metricValue(ms, 'aiproxy_provider_time_to_first_token_seconds_count', { provider: 'p1' }), 1);
  assert.equal(metricValue(ms, 'aiproxy_provider_attempts_total', { provider: 'p1' }), 5);
  assert.equal(metricValue(ms, 'aiproxy_provider_errors_total', { provider: 'p1' }), 1);
  assert.equal(metricValue(ms, 'aiproxy_provider_circuit_state', { provider: 'p1', state: 'closed' }), 1);
  assert.equal(metricValue(ms, 'aiproxy_provider_up', { provider: 'p2' }), 1);
  assert.equal(metricValue(ms, 'aiproxy_requests_in_flight'), 1, 'the scrape itself is the one in flight');
  assert.equal(metricValue(ms, 'aiproxy_open_streams'), 0);
  assert.ok(Math.abs(metricValue(ms, 'aiproxy_budget_spend_usd', { window: 'day' }) - cost) < 1e-9, 'budget spend matches cost');
  assert.equal(metricValue(ms, 'aiproxy_budget_limit_usd', { window: 'day' }), 10);
  assert.ok(Math.abs(metricValue(ms, 'aiproxy_budget_remaining_usd', { window: 'month' }) - (100 - cost)) < 1e-9);
  assert.ok(ms.some((m) => m.name === 'aiproxy_ledger_queue_depth'), 'ledger queue depth exported');
  assert.ok(metricValue(ms, 'aiproxy_request_duration_seconds_count', { endpoint: 'chat_completions' }) >= 35);
  // Histogram buckets are cumulative and end at +Inf = count.
  const buckets = ms.filter((m) => m.name === 'aiproxy_request_duration_seconds_bucket' && m.labels.endpoint === 'chat_completions');
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value);
  assert.equal(buckets[buckets.length - 1].labels.le, '+Inf');
  // Never a secret.
  for (const secret of [ADMIN, USER, 'sk-test-1', 'sk-test-2']) assert.ok(!text.includes(secret), `secret ${secret} in /metrics`);
});

test('rate-limit rejections and the circuit opening are counted', { timeout: 30000 }, async (t) => {
  const cfg = h.baseConfig({ fakePort: a.port, extra: { ...security({ requests_per_minute: 3 }), routing: { failover: { max_retries: 0 }, load_balancing: { health_aware: true, unhealthy_threshold: 0.5 } } } });
  const gw = await h.gatewayFor(t, cfg);
  let limited = 0;
  for (let i = 0; i < 5; i++) {
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('rl'), headers: auth(USER) });
    if (r.status === 429) limited++;
  }
  assert.equal(limited, 2);
  // p1 (the only provider) fails 6 times in a row: its circuit opens.
  await a.control({ default: { status: 503 } });
  for (let i = 0; i < 6; i++) {
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('cb'), headers: auth(ADMIN) });
    assert.ok(r.status >= 500, r.text);
  }
  await h.waitFor(async () => {
    const { ms } = await scrape(gw.url);
    return metricValue(ms, 'aiproxy_provider_circuit_state', { provider: 'p1', state: 'open' }) === 1;
  }, 3000, 100, 'the p1 circuit to show open');
  const { ms } = await scrape(gw.url);
  assert.equal(metricValue(ms, 'aiproxy_rate_limited_total', { limit: 'requests' }), 2);
  assert.equal(metricValue(ms, 'aiproxy_provider_up', { provider: 'p1' }), 0);
  await h.waitFor(() => /"event":"circuit_open".*p1/.test(gw.logs()), 3000, 50, 'a circuit_open event in the log');
  const after = (await scrape(gw.url)).ms;
  assert.ok(metricValue(after, 'aiproxy_provider_circuit_transitions_total', { provider: 'p1' }) >= 1);
});

test('observability.metrics.collect limits the exported families; enabled: false hides /metrics', { timeout: 20000 }, async (t) => {
  const cfg = h.baseConfig({ fakePort: a.port, extra: { observability: { metrics: { collect: ['request_count', 'provider_errors'] } } } });
  const gw = await h.gatewayFor(t, cfg);
  await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('c') });
  const { text } = await scrape(gw.url, null);
  assert.match(text, /^aiproxy_requests_total\{/m);
  assert.match(text, /^aiproxy_failovers_total\{/m);
  assert.doesNotMatch(text, /aiproxy_tokens_total/);
  assert.doesNotMatch(text, /aiproxy_request_duration_seconds/);
  assert.doesNotMatch(text, /aiproxy_budget_spend_usd/);

  const off = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port, extra: { observability: { metrics: { enabled: false } } } }));
  const r = await h.request(off.url + '/metrics');
  assert.equal(r.status, 404);
});

test('prometheus_port: its own listener serves /metrics and /health without a key, nothing else', { timeout: 20000 }, async (t) => {
  const mport = await h.freePort();
  const cfg = h.baseConfig({ fakePort: a.port, extra: { ...security(), observability: { metrics: { prometheus_port: mport } } } });
  const gw = await h.gatewayFor(t, cfg);
  await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('p'), headers: auth(USER) });
  const m = await h.request(`http://127.0.0.1:${mport}/metrics`);
  assert.equal(m.status, 200);
  assert.equal(metricValue(parseMetrics(m.text), 'aiproxy_requests_by_route_total', { provider: 'p1', key: 'alice' }), 1);
  assert.equal((await h.request(`http://127.0.0.1:${mport}/health`)).status, 200);
  assert.equal((await h.request(`http://127.0.0.1:${mport}/v1/models`)).status, 404);
  assert.equal((await h.request(`http://127.0.0.1:${mport}/v1/chat/completions`, { body: h.chatBody('no') })).status, 405);
  // The main listener still wants a key for /metrics.
  assert.equal((await h.request(gw.url + '/metrics')).status, 401);
});

test('scraping does not disturb requests: 20 scrapes during 100 concurrent requests', { timeout: 30000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port }));
  const reqs = Array.from({ length: 100 }, (_, i) => h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`q${i}`) }));
  const scrapes = Array.from({ length: 20 }, () => h.request(gw.url + '/metrics'));
  const rs = await Promise.all(reqs);
  for (const r of rs) assert.equal(r.status, 200, r.text);
  for (const s of await Promise.all(scrapes)) assert.equal(s.status, 200);
  const { ms } = await scrape(gw.url, null);
  assert.equal(metricValue(ms, 'aiproxy_requests_total', { endpoint: 'chat_completions', status_class: '2xx' }), 100);
});

test('the cache group: aiproxy_cache_* when the cache is enabled, none when it is not; collect honoured', { timeout: 20000 }, async (t) => {
  const off = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port }));
  await h.request(off.url + '/v1/chat/completions', { body: h.chatBody('no cache here') });
  assert.doesNotMatch((await scrape(off.url, null)).text, /aiproxy_cache_/, 'no cache family when cache.enabled is false');

  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port, extra: { cache: { enabled: true, mode: 'always', max_memory: '32MB' } } }));
  const ask = () => h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('cache metrics') });
  assert.equal((await ask()).headers['x-aiproxy-cache'], 'miss');
  const hit = await ask();
  assert.equal(hit.headers['x-aiproxy-cache'], 'hit', `${JSON.stringify(hit.headers)} ${hit.text}`);
  // An opt-out request neither reads nor counts.
  const skipped = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('cache metrics'), headers: { 'x-aiproxy-cache': 'skip' } });
  assert.equal(skipped.status, 200);
  const { text, ms } = await scrape(gw.url, null);
  assert.equal(metricValue(ms, 'aiproxy_cache_hits_total', { kind: 'exact' }), 1);
  assert.equal(metricValue(ms, 'aiproxy_cache_hits_total', { kind: 'semantic' }), 0);
  assert.equal(metricValue(ms, 'aiproxy_cache_misses_total'), 1);
  assert.equal(metricValue(ms, 'aiproxy_cache_stores_total'), 1);
  assert.equal(metricValue(ms, 'aiproxy_cache_entries'), 1);
  assert.ok(metricValue(ms, 'aiproxy_cache_bytes') > 0);
  assert.equal(metricValue(ms, 'aiproxy_cache_max_bytes'), 32 * 1024 * 1024);
  assert.equal(metricValue(ms, 'aiproxy_cache_evictions_total'), 0);
  assert.equal(metricValue(ms, 'aiproxy_cache_expired_total'), 0);
  assert.equal(metricValue(ms, 'aiproxy_cache_embedding_errors_total'), 0);
  assert.equal(metricValue(ms, 'aiproxy_cache_backend_errors_total'), 0);
  assert.equal(metricValue(ms, 'aiproxy_cache_semantic_entries'), 0);
  // The hit saved what the miss cost (the same answer, the same prices).
  const saved = metricValue(ms, 'aiproxy_cache_saved_usd_total');
  assert.ok(saved > 0, 'saved USD counted');
  assert.ok(Math.abs(saved - metricValue(ms, 'aiproxy_cost_usd_total') / 2) < 1e-9, `saved ${saved} = the one miss's cost`);
  assert.match(text, /^# TYPE aiproxy_cache_hits_total counter$/m);
  assert.match(text, /^# TYPE aiproxy_cache_entries gauge$/m);

  const only = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port, extra: { cache: { enabled: true, mode: 'always' }, observability: { metrics: { collect: ['request_count'] } } } }));
  assert.doesNotMatch((await scrape(only.url, null)).text, /aiproxy_cache_/, 'collect without "cache" exports none');
  const withCache = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port, extra: { cache: { enabled: true, mode: 'always' }, observability: { metrics: { collect: ['cache'] } } } }));
  const wc = (await scrape(withCache.url, null)).text;
  assert.match(wc, /^aiproxy_cache_misses_total 0$/m);
  assert.doesNotMatch(wc, /aiproxy_requests_total/);
});
