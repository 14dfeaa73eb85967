// Hidden failures: a 200 that is really an error must fail over; a stream
// that breaks after bytes reached the client must end with an error event
// and must not fail over.
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

async function nonStreamFailsOver(t, behaviour) {
  const gw = await h.gatewayFor(t, h.twoProviderConfig(f1, f2));
  await f1.control({ queue: [behaviour] });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('hidden'), timeoutMs: 8000 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices && r.json.choices[0].message.content, 'echo: hidden', r.text);
  const xa = r.json['x-aiproxy'];
  assert.equal(xa.provider, 'p2');
  assert.equal(xa.failovers, 1);
  assert.deepEqual(xa.providers_tried, ['p1', 'p2']);
  assert.equal((await f1.requests()).length, 1);
  assert.equal((await f2.requests()).length, 1);
}

test('200 with an {"error":...} body -> failover to p2', { timeout: 10000 }, (t) => nonStreamFailsOver(t, { errorIn200: true }));

test('200 with a body that is not JSON -> failover to p2', { timeout: 10000 }, (t) => nonStreamFailsOver(t, { garbage: true }));

test('200 text/html page -> failover to p2', { timeout: 10000 }, (t) => nonStreamFailsOver(t, { contentType: 'text/html' }));

test('non-streaming body cut off by a reset -> failover to p2', { timeout: 10000 }, (t) => nonStreamFailsOver(t, { resetAfterChunks: 1 }));

async function streamOf(gw) {
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', {
    body: h.chatBody('hidden stream', { stream: true }),
    timeoutMs: 8000,
  });
  const done = await s.done;
  return { s, done };
}

test('stream whose first event is an error -> failover to p2', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.twoProviderConfig(f1, f2));
  await f1.control({ queue: [{ streamFirstEventError: true }] });
  const { s, done } = await streamOf(gw);
  assert.equal(s.status, 200, done.text);
  assert.equal(s.headers['x-aiproxy-provider'], 'p2');
  const ev = done.events;
  assert.equal(ev[ev.length - 1], '[DONE]', done.text);
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => !c.error), `the client must not see p1's error: ${done.text}`);
  const content = chunks.map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
  assert.equal(content, 'echo: hidden stream');
  const xa = chunks[chunks.length - 1]['x-aiproxy'];
  assert.equal(xa && xa.provider, 'p2', done.text);
  assert.deepEqual(xa.providers_tried, ['p1', 'p2']);
  assert.equal(xa.failovers, 1);
});

test('stream that sends headers then nothing past the timeout -> failover to p2', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.twoProviderConfig(f1, f2));
  await f1.control({ queue: [{ hangAfterHeaders: true }] });
  const t0 = Date.now();
  const { s, done } = await streamOf(gw);
  const ms = Date.now() - t0;
  assert.equal(s.status, 200, done.text);
  assert.equal(s.headers['x-aiproxy-provider'], 'p2', done.text);
  assert.equal(done.events[done.events.length - 1], '[DONE]');
  assert.ok(ms >= 900 && ms < 3000, `took ${ms} ms, expected about p1's 1s first-byte timeout`);
});

test('stream reset after chunks reached the client -> error event, stream ends, no failover', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.twoProviderConfig(f1, f2));
  // 3 content chunks ("echo: ", "hidden ", "stream"... here c0..c2), then RST.
  await f1.control({ queue: [{ chunks: 10, chunkDelayMs: 20, resetAfterChunks: 3 }] });
  const t0 = Date.now();
  const { s, done } = await streamOf(gw);
  assert.ok(Date.now() - t0 < 5000, 'the stream must end promptly after the upstream reset');
  assert.equal(s.status, 200, done.text);
  assert.equal(s.headers['x-aiproxy-provider'], 'p1');
  const ev = done.events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
  const content = ev.map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
  assert.equal(content, 'c0 c1 c2 ', `the chunks sent before the reset must reach the client: ${done.text}`);
  const errIdx = ev.findIndex((c) => c.error);
  assert.ok(errIdx >= 0, `an error event (data: {"error":...}) must be sent: ${done.text}`);
  const err = ev[errIdx].error;
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 0);
  assert.ok('type' in err && 'code' in err && 'param' in err, `error event must have OpenAI's error shape: ${JSON.stringify(err)}`);
  assert.equal(errIdx, ev.length - 1, `nothing but [DONE] may follow the error event: ${done.text}`);
  assert.equal((await f2.requests()).length, 0, 'no failover once bytes reached the client');
});
