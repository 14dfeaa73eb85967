// Routing against real fakes: each strategy chooses as documented
// (docs/routing.md), the per-request override, failover and what must not
// fail over, Retry-After, the request deadline, the circuit opening and
// closing, policies, tiers, max_concurrency shedding, active health checks
// and a provider's `endpoints:` list. Every test starts its own gateway, so
// live stats never leak from one test into the next.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let f1;
let f2;
let f3;

before(async () => {
  f1 = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  f2 = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
  f3 = await h.startFake({ name: 'p3', apiKey: 'sk-test-3' });
});
after(() => h.killAll());
beforeEach(async () => { await f1.reset(); await f2.reset(); await f3.reset(); });

const chat = (gw, o = {}) => h.request(gw.url + '/v1/chat/completions', {
  body: o.body || h.chatBody(o.text || 'route me'),
  headers: o.headers,
  timeoutMs: o.timeoutMs || 8000,
});

/** Three openai providers p1..p3 (priority 1..3) for gpt-test. */
function threeProviders(o = {}) {
  const providers = {};
  [f1, f2, f3].forEach((f, i) => {
    const name = `p${i + 1}`;
    providers[name] = h.provider(f, { priority: i + 1, apiKey: `sk-test-${i + 1}`, timeout: '2s', ...(o[name] || {}) });
  });
  return h.baseConfig({ providers, extra: { routing: o.routing || {} } });
}

const providerOf = (r) => r.json['x-aiproxy'].provider;

async function countProviders(gw, n, o = {}) {
  const counts = {};
  const one = async () => {
    const r = await chat(gw, o);
    assert.equal(r.status, 200, r.text);
    counts[providerOf(r)] = (counts[providerOf(r)] || 0) + 1;
  };
  const conc = o.concurrency || 1;
  for (let i = 0; i < n; i += conc) await Promise.all(Array.from({ length: Math.min(conc, n - i) }, one));
  return counts;
}

// ---- strategies ----

test('cost_optimized: the cheaper provider wins whatever the priority', { timeout: 10000 }, async (t) => {
  const cfg = threeProviders({
    routing: { strategy: 'cost_optimized' },
    p1: { models: [h.model('gpt-test', 'upstream-gpt', 0.01, 0.02)] },
    p2: { models: [h.model('gpt-test', 'upstream-gpt', 0.0005, 0.001)] },
    p3: { models: [h.model('gpt-test', 'upstream-gpt', 0.002, 0.004)] },
  });
  const gw = await h.gatewayFor(t, cfg);
  const r = await chat(gw);
  assert.equal(r.status, 200, r.text);
  const xa = r.json['x-aiproxy'];
  assert.equal(xa.provider, 'p2');
  assert.equal(xa.strategy, 'cost_optimized');
  assert.match(xa.reason, /^cost_optimized: est \$/);
  assert.equal((await f1.requests()).length, 0);
});

test('latency_optimized: after warm-up the faster provider is first', { timeout: 20000 }, async (t) => {
  await f1.control({ default: { delayMs: 150 } });
  const gw = await h.gatewayFor(t, threeProviders({ routing: { strategy: 'latency_optimized' }, p3: { enabled: false } }));
  // warm-up: both are explored until measured (3 samples each)
  for (let i = 0; i < 8; i++) assert.equal((await chat(gw)).status, 200);
  const after = [];
  for (let i = 0; i < 5; i++) {
    const r = await chat(gw);
    after.push(providerOf(r));
    assert.match(r.json['x-aiproxy'].reason, /latency_optimized: latency \d+ ms/);
  }
  assert.deepEqual(after, ['p2', 'p2', 'p2', 'p2', 'p2']);
});

test('round_robin spreads over three providers', { timeout: 15000 }, async (t) => {
  const gw = await h.gatewayFor(t, threeProviders({ routing: { strategy: 'round_robin' } }));
  const counts = await countProviders(gw, 30);
  for (const p of ['p1', 'p2', 'p3']) assert.ok((counts[p] || 0) >= 8, `${p} got ${counts[p]} of 30: ${JSON.stringify(counts)}`);
});

test('weighted: a 1:3 weight ratio roughly holds', { timeout: 20000 }, async (t) => {
  const gw = await h.gatewayFor(t, threeProviders({
    routing: { strategy: 'weighted' }, p1: { weight: 1 }, p2: { weight: 3 }, p3: { enabled: false },
  }));
  const counts = await countProviders(gw, 400, { concurrency: 20 });
  const share = (counts.p2 || 0) / 400;
  assert.ok(share > 0.62 && share < 0.88, `p2 share ${share} (expected ~0.75): ${JSON.stringify(counts)}`);
});

test('least_loaded: a provider busy with a slow request is passed over', { timeout: 10000 }, async (t) => {
  await f1.control({ queue: [{ delayMs: 800 }] });
  const gw = await h.gatewayFor(t, threeProviders({ routing: { strategy: 'least_loaded' }, p3: { enabled: false } }));
  const slow = chat(gw, { text: 'slow' });
  await h.sleep(150);
  const r = await chat(gw, { text: 'quick' });
  assert.equal(r.status, 200, r.text);
  assert.equal(providerOf(r), 'p2');
  assert.match(r.json['x-aiproxy'].reason, /least_loaded: 0 in flight/);
  const s = await slow;
  assert.equal(providerOf(s), 'p1');
});

test('x-aiproxy-strategy overrides the configured strategy; an unknown one is a 400', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, threeProviders({
    routing: { strategy: 'availability' },
    p2: { models: [h.model('gpt-test', 'upstream-gpt', 0.0001, 0.0001)] },
  }));
  assert.equal(providerOf(await chat(gw)), 'p1');
  const r = await chat(gw, { headers: { 'x-aiproxy-strategy': 'cost_optimized' } });
  assert.equal(providerOf(r), 'p2');
  assert.equal(r.json['x-aiproxy'].strategy, 'cost_optimized');
  const bad = await chat(gw, { headers: { 'x-aiproxy-strategy': 'fastest_please' } });
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json.error.param, 'x-aiproxy-strategy');
  assert.equal((await f1.requests()).length + (await f2.requests()).length, 2, 'the refused request reached nobody');
});

// ---- failover ----

test('failover: a 500 moves to the next provider; both in providers_tried, reason explains', { timeout: 10000 }, async (t) => {
  await f1.control({ queue: [{ status: 500 }] });
  const gw = await h.gatewayFor(t, threeProviders({ routing: { strategy: 'availability' } }));
  const r = await chat(gw);
  assert.equal(r.status, 200, r.text);
  const xa = r.json['x-aiproxy'];
  assert.deepEqual(xa.providers_tried, ['p1', 'p2']);
  assert.equal(xa.failovers, 1);
  assert.match(xa.attempts[0].outcome, /^HTTP 500/);
  assert.match(xa.reason, /^failover after p1: HTTP 500[^;]*; then p2: /);
});

test('a 400 is passed through without failover', { timeout: 10000 }, async (t) => {
  await f1.control({ queue: [{ status: 400, message: 'bad thing' }] });
  const gw = await h.gatewayFor(t, threeProviders());
  const r = await chat(gw);
  assert.equal(r.status, 400);
  assert.equal(r.json.error.message, 'bad thing');
  assert.equal((await f2.requests()).length, 0);
});

test('429 with Retry-After: a sole provider is retried after the wait when it fits the deadline', { timeout: 10000 }, async (t) => {
  await f1.control({ queue: [{ status: 429, retryAfter: 1 }] });
  const gw = await h.gatewayFor(t, threeProviders({ p2: { enabled: false }, p3: { enabled: false } }));
  const t0 = Date.now();
  const r = await chat(gw);
  const ms = Date.now() - t0;
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p1', 'p1']);
  assert.ok(ms >= 950, `answered after ${ms} ms: the Retry-After of 1 s was not waited`);
  assert.ok(ms < 3000, `answered after ${ms} ms`);
  const reqs = await f1.requests();
  assert.equal(reqs.length, 2);
  assert.ok(reqs[1].receivedAt - reqs[0].receivedAt >= 950, 'the retry came a second later');
});

test('429 with a Retry-After beyond the deadline is not waited for', { timeout: 10000 }, async (t) => {
  await f1.control({ queue: [{ status: 429, retryAfter: 30 }] });
  const gw = await h.gatewayFor(t, threeProviders({ p2: { enabled: false }, p3: { enabled: false } }));
  const t0 = Date.now();
  const r = await h.request(gw.url + '/aiproxy/predict', {
    body: { model: 'gpt-test', input: 'hi', routing: { timeout: 2000 } }, timeoutMs: 8000,
  });
  assert.ok(Date.now() - t0 < 1500, 'gave up at once');
  assert.ok(r.status === 429 || r.status === 502, `${r.status} ${r.text}`);
});

test('the request deadline (predict routing.timeout) bounds every attempt', { timeout: 15000 }, async (t) => {
  await f1.control({ default: { hang: true } });
  await f2.control({ default: { hang: true } });
  const gw = await h.gatewayFor(t, threeProviders({ p3: { enabled: false }, p1: { timeout: '5s' }, p2: { timeout: '5s' } }));
  const t0 = Date.now();
  const r = await h.request(gw.url + '/aiproxy/predict', {
    body: { model: 'gpt-test', input: 'hang', routing: { timeout: 1200 } }, timeoutMs: 8000,
  });
  const ms = Date.now() - t0;
  assert.equal(r.status, 504, r.text);
  assert.ok(ms >= 1100 && ms < 2000, `took ${ms} ms for a 1200 ms deadline`);
  await f1.control({ default: {} });
  await f2.control({ default: {} });
});

// ---- health: circuit ----

test('circuit: opens after failures (the provider becomes a last resort) and closes after a good probe', { timeout: 20000 }, async (t) => {
  await f1.control({ default: { status: 500 } });
  // equal prices, so cost_optimized orders by priority: only the circuit demotes p1
  const gw = await h.gatewayFor(t, threeProviders({ routing: { strategy: 'cost_optimized' }, p3: { enabled: false } }));
  // 5 failures of p1 (each request fails over to p2)
  for (let i = 0; i < 5; i++) {
    const r = await chat(gw);
    assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p1', 'p2'], JSON.stringify(r.json['x-aiproxy']));
  }
  // open: p2 first, p1 untouched
  let r = await chat(gw);
  assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p2']);
  assert.equal((await f1.requests()).length, 5);
  // open but p2 fails too: p1 is still tried, last
  await f2.control({ queue: [{ status: 503 }] });
  r = await chat(gw);
  assert.equal(r.status, 502);
  assert.match(r.json.error.message, /failed: p2: HTTP 503[^;]*; p1: HTTP 500/);
  // p1 recovers; after the cool-down (5 s) one probe closes the circuit
  await f1.control({ default: {} });
  await h.sleep(5200);
  r = await chat(gw);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p1']);
  assert.match(r.json['x-aiproxy'].reason, /circuit half-open probe/);
  r = await chat(gw);
  assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p1'], 'closed again: p1 first');
  assert.doesNotMatch(r.json['x-aiproxy'].reason, /probe/);
});

// ---- policies and tiers ----

test('a policy rule of the standard changes the order', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, threeProviders({
    routing: {
      strategy: 'availability',
      policies: [{ name: 'prefer_p3', rules: [{ if: "request.model matches 'gpt-*'", then: 'prefer provider.p3 > provider.p2' }] }],
    },
  }));
  const r = await chat(gw);
  assert.equal(providerOf(r), 'p3');
  assert.match(r.json['x-aiproxy'].reason, /prefer_p3/);
  await f3.control({ queue: [{ status: 500 }] });
  const r2 = await chat(gw);
  assert.deepEqual(r2.json['x-aiproxy'].providers_tried, ['p3', 'p2']);
});

function tierConfig(extra = {}) {
  const cheap = h.model('gpt-cheap', 'upstream-gpt', 0.0001, 0.0001);
  const dear = h.model('gpt-test', 'upstream-gpt', 0.01, 0.03);
  return h.baseConfig({
    providers: { p1: h.provider(f1, { models: [cheap, dear] }) },
    extra: { routing: { tiers: { cheap: 'gpt-cheap', premium: 'gpt-test' }, ...extra } },
  });
}

test('tier alias and x-task-tier pick the model; the tier shows in x-aiproxy', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, tierConfig());
  let r = await chat(gw, { body: { model: 'cheap', messages: [{ role: 'user', content: 'hi' }] } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].tier, 'cheap');
  assert.match(r.json['x-aiproxy'].reason, /tier=cheap/);
  r = await chat(gw, { headers: { 'x-task-tier': 'complex' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].tier, 'premium');
  assert.match(r.json['x-aiproxy'].reason, /task=complex \(x-task-tier/);
  r = await chat(gw, { headers: { 'x-task-tier': 'gigantic' } });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'x-task-tier');
});

test('auto_tier: without a model the analyser picks the tier', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, tierConfig({ auto_tier: true }));
  const r = await chat(gw, { body: { messages: [{ role: 'user', content: 'what is 2+2?' }] } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].tier, 'cheap');
  assert.match(r.json['x-aiproxy'].reason, /auto: /);
});

// ---- capacity ----

test('max_concurrency: when every provider is at its cap the request is shed with 503 + Retry-After', { timeout: 10000 }, async (t) => {
  await f1.control({ default: { delayMs: 800 } });
  await f2.control({ default: { delayMs: 800 } });
  const gw = await h.gatewayFor(t, threeProviders({ p1: { max_concurrency: 1 }, p2: { max_concurrency: 1 }, p3: { enabled: false } }));
  const a = chat(gw, { text: 'a' });
  const b = chat(gw, { text: 'b' });
  await h.sleep(250);
  const c = await chat(gw, { text: 'c' });
  assert.equal(c.status, 503, c.text);
  assert.equal(c.headers['retry-after'], '1');
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(ra.status, 200);
  assert.equal(rb.status, 200);
  assert.deepEqual([providerOf(ra), providerOf(rb)].sort(), ['p1', 'p2']);
  await f1.control({ default: {} });
  await f2.control({ default: {} });
});

// ---- active health checks ----

test('active health checks mark a stopped provider down without traffic, and up again', { timeout: 20000 }, async (t) => {
  const fk = await h.startProviderFake('fake-upstream.mjs', { name: 'hc', args: ['--api-key', 'sk-hc'] });
  const cfg = h.baseConfig({
    providers: {
      hc: h.provider(`${fk.url}/v1`, { priority: 1, apiKey: 'sk-hc' }),
      p2: h.provider(f2, { priority: 2, apiKey: 'sk-test-2' }),
    },
    extra: { routing: { strategy: 'availability', load_balancing: { health_check_interval: '200ms', health_check_failures: 2, health_check_timeout: '500ms' } } },
  });
  const gw = await h.gatewayFor(t, cfg);
  const endpointsHealth = async () => {
    const r = await h.request(gw.url + '/v1/endpoints', { headers: { authorization: 'Bearer x' } });
    return r.json.data.find((p) => p.name === 'hc').health;
  };
  // checks arrive with the provider's key, on GET /v1/models
  await h.waitFor(async () => (await fk.requests()).some((q) => q.method === 'GET' && q.path === '/v1/models'), 3000, 50, 'a health check');
  const probe = (await fk.requests()).find((q) => q.method === 'GET');
  assert.equal(probe.headers.authorization, 'Bearer sk-hc');
  await fk.stop();
  await h.waitFor(async () => /"provider_down"/.test(gw.logs()), 5000, 50, 'provider_down logged');
  assert.equal(await endpointsHealth(), 'down');
  const m = await h.request(gw.url + '/v1/models/gpt-test');
  const hcm = m.json.providers.find((p) => p.name === 'hc');
  assert.equal(hcm.available, false);
  assert.match(hcm.reason, /failing health checks/);
  // routing: hc is a last resort now, without a single failed user request
  const r = await chat(gw);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p2']);
  const back = await h.restartProviderFake(fk);
  t.after(() => back.stop());
  await h.waitFor(async () => /"provider_up"/.test(gw.logs()), 5000, 50, 'provider_up logged');
  assert.notEqual(await endpointsHealth(), 'down');
  const r2 = await chat(gw);
  assert.deepEqual(r2.json['x-aiproxy'].providers_tried, ['hc']);
});

// ---- endpoints ----

test('endpoints: one provider with three base URLs spreads requests over them, and skips a failing one', { timeout: 20000 }, async (t) => {
  const reps = await Promise.all([1, 2, 3].map((i) => h.startFake({ name: `replica${i}` })));
  const cfg = h.baseConfig({
    providers: { vllm: { type: 'local', endpoints: reps.map((f) => f.base), timeout: '2s', models: [h.model('gpt-test', 'upstream-gpt')] } },
    extra: { routing: { load_balancing: { strategy: 'round_robin' } } },
  });
  const gw = await h.gatewayFor(t, cfg);
  const posts = async () => Promise.all(reps.map(async (f) => (await f.requests()).filter((q) => q.method === 'POST').length));
  for (let i = 0; i < 30; i++) {
    const r = await chat(gw);
    assert.equal(r.status, 200, r.text);
    assert.equal(providerOf(r), 'vllm');
    assert.match(r.json['x-aiproxy'].reason, /endpoint [123]\/3 \(round_robin\)/);
  }
  const spread = await posts();
  for (const c of spread) assert.ok(c >= 8, `spread over the replicas: ${spread}`);
  // replica 2 fails: its requests fail over to another replica; once its
  // circuit opens it is only a last resort
  await Promise.all(reps.map((f) => f.reset()));
  await reps[1].control({ default: { status: 500 } });
  for (let i = 0; i < 30; i++) {
    const r = await chat(gw);
    assert.equal(r.status, 200, r.text);
  }
  // the replica's window (20 outcomes) still holds its 10 successes: the
  // circuit opens once failures are more than half of it
  const [a, b, c] = await posts();
  assert.ok(b >= 5 && b <= 12, `the failing replica got ${b} attempts`);
  assert.equal(a + c, 30);
  for (let i = 0; i < 10; i++) assert.equal((await chat(gw)).status, 200);
  const b1 = (await posts())[1];
  for (let i = 0; i < 10; i++) assert.equal((await chat(gw)).status, 200);
  assert.equal((await posts())[1], b1, 'open circuit: the failing replica is no longer tried');
});
