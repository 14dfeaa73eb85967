// Hedged requests (issue 4 item 7): when the first candidate has not
// answered after the hedge delay, the request also goes to the next one;
// the first to answer wins and the other is cancelled at once.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let f1, f2, gw;
const chat = (body, headers = {}) =>
  h.request(gw.url + '/v1/chat/completions', { body: { model: 'gpt-test', messages: [{ role: 'user', content: 'hedge me' }], ...body }, headers });
const posts = async (f) => (await f.requests()).filter((r) => r.method === 'POST');

before(async () => {
  f1 = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  f2 = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
  const cfg = h.twoProviderConfig(f1, f2, { timeout: '5s' });
  // Priority order whatever the recent health (equal prices).
  cfg.routing = { strategy: 'cost_optimized', load_balancing: { health_aware: false } };
  gw = await h.startGateway(cfg);
});
after(() => h.killAll());
beforeEach(async () => { await f1.reset(); await f2.reset(); });

test('a slow first candidate is hedged: the second answers, the first is cancelled', { timeout: 10000 }, async () => {
  await f1.control({ queue: [{ delayMs: 3000 }] });
  const t0 = Date.now();
  const r = await chat({}, { 'x-aiproxy-hedge': '200' });
  const took = Date.now() - t0;
  assert.equal(r.status, 200, r.text);
  const xa = r.json['x-aiproxy'];
  assert.equal(xa.provider, 'p2');
  assert.equal(xa.hedged, true);
  assert.deepEqual(xa.providers_tried, ['p1', 'p2']);
  assert.match(xa.attempts[0].outcome, /lost the hedge: p2 answered first/);
  assert.ok(took < 2500, `answered after ${took} ms, not after the slow provider`);
  // The loser's connection is closed at once, so it stops generating.
  const deadline = Date.now() + 2000;
  let closed = false;
  while (!closed && Date.now() < deadline) {
    closed = (await posts(f1))[0]?.clientClosed === true;
    if (!closed) await new Promise((res) => setTimeout(res, 50));
  }
  assert.ok(closed, 'p1 saw its request cancelled');
  // The slower leg's estimated prompt cost is metered on top of the winner's.
  const up = (await posts(f2))[0];
  assert.ok(up, 'p2 got the request');
});

test('a first candidate that answers within the delay is not hedged', { timeout: 10000 }, async () => {
  const r = await chat({}, { 'x-aiproxy-hedge': '1500' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].provider, 'p1');
  assert.equal(r.json['x-aiproxy'].hedged, undefined);
  assert.equal((await posts(f2)).length, 0);
});

test('hedging is off unless asked for', { timeout: 10000 }, async () => {
  await f1.control({ queue: [{ delayMs: 700 }] });
  const r = await chat({});
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].provider, 'p1');
  assert.equal((await posts(f2)).length, 0);
});

test('the hedge leg failing leaves the first one to finish', { timeout: 10000 }, async () => {
  await f1.control({ queue: [{ delayMs: 600 }] });
  await f2.control({ queue: [{ status: 500 }] });
  const r = await chat({}, { 'x-aiproxy-hedge': '100' });
  assert.equal(r.status, 200, r.text);
  const xa = r.json['x-aiproxy'];
  assert.equal(xa.provider, 'p1');
  assert.deepEqual(xa.providers_tried, ['p2', 'p1']);
  assert.match(xa.attempts[0].outcome, /HTTP 500 \(hedge leg\)/);
});

test('the first leg failing while the hedge runs hands the request to the hedge', { timeout: 10000 }, async () => {
  await f1.control({ queue: [{ delayMs: 400, status: 503 }] });
  await f2.control({ queue: [{ delayMs: 600 }] });
  const r = await chat({}, { 'x-aiproxy-hedge': '100' });
  assert.equal(r.status, 200, r.text);
  const xa = r.json['x-aiproxy'];
  assert.equal(xa.provider, 'p2');
  assert.deepEqual(xa.providers_tried, ['p1', 'p2']);
  assert.equal((await posts(f1)).length, 1, 'p1 is not retried while the hedge runs');
});

test('streams are hedged too: the first event comes from the faster leg', { timeout: 10000 }, async () => {
  await f1.control({ queue: [{ delayMs: 3000 }] });
  const r = await h.request(gw.url + '/v1/chat/completions', {
    body: { model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'stream hedge' }] },
    headers: { 'x-aiproxy-hedge': '150' },
  });
  assert.equal(r.status, 200, r.text);
  const events = r.text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  assert.equal(events[events.length - 1], '[DONE]');
  const last = JSON.parse(events[events.length - 2]);
  assert.equal(last['x-aiproxy'].provider, 'p2');
  assert.deepEqual(last['x-aiproxy'].providers_tried, ['p1', 'p2']);
});

test('an invalid x-aiproxy-hedge value is ignored (no hedge)', { timeout: 10000 }, async () => {
  const r = await chat({}, { 'x-aiproxy-hedge': 'sometimes' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].hedged, undefined);
});

test('routing.hedge in the config hedges the listed models without a header', { timeout: 15000 }, async () => {
  const cfg = h.twoProviderConfig(f1, f2, { timeout: '5s' });
  cfg.routing = { strategy: 'cost_optimized', load_balancing: { health_aware: false },
                  hedge: { enabled: true, delay: '150ms', models: ['gpt-test'] } };
  const gw2 = await h.startGateway(cfg);
  await f1.control({ queue: [{ delayMs: 3000 }] });
  const r = await h.request(gw2.url + '/v1/chat/completions', { body: { model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].provider, 'p2');
  assert.equal(r.json['x-aiproxy'].hedged, true);
  // ...and a request can still opt out.
  await f1.control({ queue: [{ delayMs: 500 }] });
  const r2 = await h.request(gw2.url + '/v1/chat/completions', { body: { model: 'gpt-test', messages: [{ role: 'user', content: 'y' }] }, headers: { 'x-aiproxy-hedge': 'off' } });
  assert.equal(r2.status, 200, r2.text);
  assert.equal(r2.json['x-aiproxy'].provider, 'p1');
});
