// Failover between two providers serving the same model (p1 priority 1,
// p2 priority 2, same price), and what must NOT fail over.
// Each test gets a fresh gateway so health state from one cannot leak into
// the next.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let f1;
let f2;

before(async () => {
  f1 = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  f2 = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
});
after(() => h.killAll());
beforeEach(async () => { await f1.reset(); await f2.reset(); });

const twoProviderConfig = h.twoProviderConfig;

async function expectFailoverToP2(gw, body = h.chatBody('fail me over')) {
  const r = await h.request(gw.url + '/v1/chat/completions', { body, timeoutMs: 6000 });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'p2');
  assert.equal(r.json.choices[0].message.content, 'echo: fail me over');
  assert.equal(r.json.id, 'chatcmpl-fake-p2-1', 'answer must be p2\'s');
  const xa = r.json['x-aiproxy'];
  assert.equal(xa.provider, 'p2');
  assert.equal(xa.failovers, 1);
  assert.deepEqual(xa.providers_tried, ['p1', 'p2']);
  const r1 = await f1.requests();
  const r2 = await f2.requests();
  assert.equal(r1.length, 1, 'p1 tried exactly once');
  assert.equal(r2.length, 1, 'p2 tried exactly once');
  assert.equal(r2[0].headers.authorization, 'Bearer sk-test-2', 'p2 gets p2\'s credential');
  assert.equal(r2[0].body.model, 'upstream-gpt');
  assert.deepEqual(r2[0].violations, []);
  return r;
}

test('healthy p1 answers; p2 untouched', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('hi') });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].provider, 'p1');
  assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p1']);
  assert.equal((await f2.requests()).length, 0);
});

test('p1 500 -> answer from p2', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
  await f1.control({ queue: [{ status: 500 }] });
  await expectFailoverToP2(gw);
});

test('p1 429 with retry-after -> answer from p2', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
  await f1.control({ queue: [{ status: 429, retryAfter: 30 }] });
  await expectFailoverToP2(gw);
});

test('p1 400 is passed through without failover', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
  await f1.control({ queue: [{ status: 400, message: 'fake says your request is bad' }] });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('bad') });
  h.assertOpenAIError(r, 400);
  assert.equal(r.json.error.message, 'fake says your request is bad', 'upstream error passed through');
  assert.equal((await f1.requests()).length, 1);
  assert.equal((await f2.requests()).length, 0, 'no failover on a client-fault 4xx');
});

test('p1 hangs -> p2 answers after about p1\'s per-try timeout', { timeout: 20000 }, async (t) => {
  const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
  await f1.control({ queue: [{ hang: true }] });
  const t0 = Date.now();
  await expectFailoverToP2(gw);
  const ms = Date.now() - t0;
  assert.ok(ms >= 900 && ms < 3000, `failover took ${ms} ms, expected about 1000`);
  // The gateway must give up on the hung connection, not leak it.
  await h.waitFor(async () => (await f1.requests())[0].clientClosed, 2000, 50, 'p1 connection closed by the gateway');
});

test('p1 resets the connection -> p2', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
  await f1.control({ queue: [{ reset: true }] });
  await expectFailoverToP2(gw);
});

test('p1 refuses connections (nothing listening) -> p2', { timeout: 10000 }, async (t) => {
  const dead = await h.freePort();
  const cfg = twoProviderConfig(`http://127.0.0.1:${dead}/v1`, f2);
  const gw = await h.gatewayFor(t, cfg);
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('fail me over'), timeoutMs: 8000 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].provider, 'p2');
  assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p1', 'p2']);
  assert.equal(r.json['x-aiproxy'].failovers, 1);
});

test('streaming request: p1 500 before any byte -> stream from p2', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
  await f1.control({ queue: [{ status: 500 }] });
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody('fail me over', { stream: true }), timeoutMs: 8000 });
  const done = await s.done;
  assert.equal(s.status, 200, done.text);
  assert.equal(s.headers['x-aiproxy-provider'], 'p2');
  const ev = done.events;
  assert.equal(ev[ev.length - 1], '[DONE]');
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => !c.error), done.text);
  const content = chunks.map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
  assert.equal(content, 'echo: fail me over');
  const xa = chunks[chunks.length - 1]['x-aiproxy'];
  assert.ok(xa, done.text);
  assert.equal(xa.provider, 'p2');
  assert.equal(xa.failovers, 1);
  assert.deepEqual(xa.providers_tried, ['p1', 'p2']);
});

for (const status of [408, 409, 502, 503]) {
  test(`p1 ${status} -> answer from p2`, { timeout: 10000 }, async (t) => {
    const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
    await f1.control({ queue: [{ status }] });
    await expectFailoverToP2(gw);
  });
}

for (const status of [413, 422]) {
  test(`p1 ${status} is passed through without failover`, { timeout: 10000 }, async (t) => {
    const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
    await f1.control({ queue: [{ status, message: `fake ${status}` }] });
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('client fault') });
    h.assertOpenAIError(r, status);
    assert.equal(r.json.error.message, `fake ${status}`);
    assert.equal((await f2.requests()).length, 0, 'no failover on a client-fault 4xx');
  });
}

test('every provider of the model failing -> 502 naming both, each tried once', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, twoProviderConfig(f1, f2));
  await f1.control({ default: { status: 500 } });
  await f2.control({ default: { reset: true } });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('doomed'), timeoutMs: 8000 });
  const e = h.assertOpenAIError(r, 502, 'upstream_error');
  assert.match(e.message, /\bp1\b/);
  assert.match(e.message, /\bp2\b/);
});
