// Drain on SIGTERM: stop accepting, finish in-flight streams, exit 0.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import * as h from './harness.mjs';

let fake;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
});
after(() => h.killAll());
beforeEach(() => fake.reset());

function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve('connected'); });
    s.once('error', (e) => resolve(e.code));
  });
}

test('SIGTERM: the in-flight stream completes, new connections are refused, exit 0', { timeout: 20000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port }));
  await fake.control({ queue: [{ chunkDelayMs: 100, chunks: 20 }] });
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody('drain', { stream: true }), timeoutMs: 15000 });
  assert.equal(s.status, 200);
  await h.waitFor(() => s.events.some((e) => e.includes('"c1 "')), 3000, 10, 'the stream to be under way');
  const sigAt = Date.now();
  gw.proc.kill('SIGTERM');

  // New connections are refused while the stream is still running.
  const refusedAt = await h.waitFor(async () => ((await tryConnect(gw.port)) === 'ECONNREFUSED' ? Date.now() : null),
    1500, 20, 'the listener to close after SIGTERM');
  const done = await s.done;
  const doneAt = Date.now();
  assert.ok(refusedAt < doneAt, 'the listener must close before the in-flight stream ends');

  assert.equal(done.error, null, `stream cut during drain: ${done.error}`);
  const ev = done.events;
  assert.equal(ev[ev.length - 1], '[DONE]', 'stream must complete');
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  const content = chunks.map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
  assert.equal(content, Array.from({ length: 20 }, (_, i) => `c${i} `).join(''), 'every chunk must arrive');
  assert.ok(chunks[chunks.length - 1]['x-aiproxy'], 'the final x-aiproxy chunk too');

  let tm;
  const code = await Promise.race([gw.exited, new Promise((r) => { tm = setTimeout(() => r('still running 5 s after the stream ended'), 5000); })]);
  clearTimeout(tm);
  assert.equal(code, 0, `exit code after drain: ${code}\n${gw.logs().slice(-2000)}`);
  assert.ok(doneAt - sigAt > 1000, 'the stream outlived the signal by the expected ~1.8 s');
});

test('SIGTERM with nothing in flight exits 0 promptly', { timeout: 10000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port }));
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x') });
  assert.equal(r.status, 200, r.text);
  const t0 = Date.now();
  const code = await gw.stop('SIGTERM', 5000);
  assert.equal(code, 0, gw.logs().slice(-2000));
  assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms to exit`);
});
