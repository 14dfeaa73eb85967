// Streaming: SSE passthrough, the final usage + x-aiproxy chunk, and the
// gateway asking the upstream for usage even when the client did not.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let fake;
let gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({ fakePort: fake.port }));
});
after(() => h.killAll());
beforeEach(() => fake.reset());

function checkStream(s, done, expectContent) {
  assert.equal(s.status, 200, done.text);
  assert.match(s.headers['content-type'] || '', /^text\/event-stream/);
  h.assertAiproxyHeaders(s, 'p1');
  assert.equal(done.error, null, `stream ended abnormally: ${done.error}`);
  const ev = done.events;
  assert.ok(ev.length >= 3, `too few events: ${done.text}`);
  assert.equal(ev[ev.length - 1], '[DONE]', 'the stream must end with data: [DONE]');
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  for (const c of chunks) {
    assert.ok(!c.error, `unexpected error event: ${JSON.stringify(c)}`);
    assert.equal(c.object, 'chat.completion.chunk');
    assert.ok(Array.isArray(c.choices));
  }
  const content = chunks.map((c) => (c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
  assert.equal(content, expectContent);
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.usage, { prompt_tokens: 17, completion_tokens: 4, total_tokens: 21 }, `final chunk: ${JSON.stringify(last)}`);
  const xa = last['x-aiproxy'];
  assert.ok(xa, `final chunk before [DONE] must carry x-aiproxy: ${JSON.stringify(last)}`);
  assert.equal(xa.provider, 'p1');
  assert.equal(xa.node, 'test-node');
  assert.equal(xa.model, 'upstream-gpt');
  assert.deepEqual(xa.providers_tried, ['p1']);
  assert.equal(xa.failovers, 0);
  assert.equal(typeof xa.latency_ms, 'number');
  assert.ok(Math.abs(xa.cost - (17 * 0.001 / 1000 + 4 * 0.002 / 1000)) < 1e-12, `cost ${xa.cost}`);
  // Only the final chunk may carry x-aiproxy.
  for (const c of chunks.slice(0, -1)) assert.equal(c['x-aiproxy'], undefined, 'x-aiproxy only in the final chunk');
  return chunks;
}

test('stream with include_usage: chunks, final usage + x-aiproxy, [DONE]', { timeout: 10000 }, async () => {
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', {
    body: h.chatBody('hello there world', { stream: true, stream_options: { include_usage: true } }),
    timeoutMs: 8000,
  });
  const done = await s.done;
  checkStream(s, done, 'echo: hello there world');
  const [up] = await fake.requests();
  assert.deepEqual(up.violations, []);
  assert.equal(up.body.stream, true);
  assert.equal(up.body.model, 'upstream-gpt');
  assert.equal(up.body.stream_options && up.body.stream_options.include_usage, true);
});

test('stream without include_usage: gateway still asks upstream for usage and sends the final chunk', { timeout: 10000 }, async () => {
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', {
    body: h.chatBody('hello there world', { stream: true }),
    timeoutMs: 8000,
  });
  const done = await s.done;
  checkStream(s, done, 'echo: hello there world');
  const [up] = await fake.requests();
  assert.deepEqual(up.violations, []);
  assert.ok(up.body.stream_options, `upstream body lacks stream_options: ${JSON.stringify(up.body)}`);
  assert.equal(up.body.stream_options.include_usage, true, 'gateway must set stream_options.include_usage for the upstream');
});

test('a trickled stream is forwarded chunk by chunk, not buffered to the end', { timeout: 10000 }, async () => {
  await fake.control({ queue: [{ chunkDelayMs: 150, chunks: 10 }] });
  const t0 = Date.now();
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', {
    body: h.chatBody('x', { stream: true }),
    timeoutMs: 8000,
  });
  // The first content chunk must arrive long before the upstream finishes (~1.5 s).
  await h.waitFor(() => s.events.some((e) => e.includes('"c0 "')), 1000, 10, 'first content chunk');
  const firstAt = Date.now() - t0;
  const done = await s.done;
  const total = Date.now() - t0;
  assert.ok(firstAt < total - 700, `first chunk at ${firstAt} ms, stream end at ${total} ms: not forwarded incrementally`);
  const chunks = done.events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
  const content = chunks.map((c) => (c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
  assert.equal(content, Array.from({ length: 10 }, (_, i) => `c${i} `).join(''));
  assert.equal(done.events[done.events.length - 1], '[DONE]');
});
