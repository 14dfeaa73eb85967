// Basics: liveness/readiness, a non-streaming chat through one provider, the
// x-aiproxy body object and headers, model mapping, credentials, exact cost.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let fake;
let gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({
    fakePort: fake.port,
    extra: { routing: { aliases: { cheap: 'gpt-test' } } },
  }));
});
after(() => h.killAll());
beforeEach(() => fake.reset());

test('GET /health answers 200 without a key', { timeout: 5000 }, async () => {
  const r = await h.request(gw.url + '/health');
  assert.equal(r.status, 200, r.text);
});

test('GET /ready answers 200 without a key', { timeout: 5000 }, async () => {
  const r = await h.request(gw.url + '/ready');
  assert.equal(r.status, 200, r.text);
});

test('chat completion: upstream body plus x-aiproxy, headers, model mapping, credentials', { timeout: 10000 }, async () => {
  const r = await h.request(gw.url + '/v1/chat/completions', {
    body: h.chatBody('hello there world', { temperature: 0.25, max_tokens: 50, user: 'u-42' }),
    // The client's own Authorization must not reach the provider.
    headers: { authorization: 'Bearer client-side-key' },
  });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  h.assertAiproxyHeaders(r, 'p1');

  const reqs = await fake.requests();
  assert.equal(reqs.length, 1, 'the fake must have received exactly one request');
  const up = reqs[0];
  assert.equal(up.method, 'POST');
  assert.equal(up.path, '/v1/chat/completions');
  assert.deepEqual(up.violations, [], `upstream request violated the OpenAI contract: ${JSON.stringify(up)}`);
  assert.equal(up.headers.authorization, 'Bearer sk-test-1');
  assert.equal(up.body.model, 'upstream-gpt', 'client model name must be mapped to openai_model');
  assert.deepEqual(up.body.messages, [{ role: 'user', content: 'hello there world' }]);
  assert.equal(up.body.temperature, 0.25, 'temperature passed through');
  assert.equal(up.body.max_tokens, 50, 'max_tokens passed through');
  assert.equal(up.body.user, 'u-42', 'user passed through');

  const { 'x-aiproxy': xa, ...rest } = r.json;
  // Body is the upstream's: exactly what the fake sent.
  assert.deepEqual(rest, {
    id: `chatcmpl-fake-p1-${up.seq}`,
    object: 'chat.completion',
    created: 1700000000 + up.seq,
    model: 'upstream-gpt',
    system_fingerprint: 'fp_fake',
    choices: [{ index: 0, message: { role: 'assistant', content: 'echo: hello there world', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 17, completion_tokens: 4, total_tokens: 21 },
  });
  assert.ok(xa && typeof xa === 'object', 'x-aiproxy object missing');
  assert.equal(xa.provider, 'p1');
  assert.equal(xa.node, 'test-node');
  assert.equal(xa.model, 'upstream-gpt');
  assert.deepEqual(xa.providers_tried, ['p1']);
  assert.equal(xa.failovers, 0);
  assert.equal(typeof xa.latency_ms, 'number');
  assert.ok(xa.latency_ms >= 0 && xa.latency_ms < 5000, `latency_ms ${xa.latency_ms}`);
  assert.equal(typeof xa.cost, 'number');
  // 17 * 0.001/1000 + 4 * 0.002/1000
  assert.ok(Math.abs(xa.cost - (17 * 0.001 / 1000 + 4 * 0.002 / 1000)) < 1e-12, `cost ${xa.cost}`);
});

test('cost is exact from the upstream usage', { timeout: 10000 }, async () => {
  await fake.control({ queue: [{ usage: { prompt_tokens: 1234, completion_tokens: 567 } }] });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('price me') });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.usage, { prompt_tokens: 1234, completion_tokens: 567, total_tokens: 1801 });
  const expected = 1234 * 0.001 / 1000 + 567 * 0.002 / 1000; // 0.002368
  assert.ok(Math.abs(r.json['x-aiproxy'].cost - expected) < 1e-12, `cost ${r.json['x-aiproxy'].cost} != ${expected}`);
});

test('every response gets its own x-aiproxy-request-id', { timeout: 10000 }, async () => {
  const a = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('one') });
  const b = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('two') });
  assert.equal(a.status, 200, a.text);
  assert.equal(b.status, 200, b.text);
  assert.ok(a.headers['x-aiproxy-request-id']);
  assert.notEqual(a.headers['x-aiproxy-request-id'], b.headers['x-aiproxy-request-id']);
  assert.equal(a.json.choices[0].message.content, 'echo: one');
  assert.equal(b.json.choices[0].message.content, 'echo: two');
});

test('multi-part user content and a system message pass through unchanged', { timeout: 10000 }, async () => {
  const messages = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: [{ type: 'text', text: 'part one ' }, { type: 'text', text: 'part two' }] },
  ];
  const r = await h.request(gw.url + '/v1/chat/completions', { body: { model: 'gpt-test', messages } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, 'echo: part one part two');
  const [up] = await fake.requests();
  assert.deepEqual(up.body.messages, messages);
});

test('a routing alias resolves to its model', { timeout: 10000 }, async () => {
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('via alias', { model: 'cheap' }) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, 'echo: via alias');
  assert.equal(r.json['x-aiproxy'].model, 'upstream-gpt');
  const [up] = await fake.requests();
  assert.equal(up.body.model, 'upstream-gpt');
});

test('30 concurrent requests (mixed streaming) each get their own answer', { timeout: 15000 }, async () => {
  const jobs = [];
  for (let i = 0; i < 30; i++) {
    const text = `concurrent number ${i}`;
    if (i % 3 === 0) {
      jobs.push((async () => {
        const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody(text, { stream: true }), timeoutMs: 10000 });
        const d = await s.done;
        const content = d.events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e))
          .map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
        return [text, s.status, content];
      })());
    } else {
      jobs.push(h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(text), timeoutMs: 10000 })
        .then((r) => [text, r.status, r.json && r.json.choices[0].message.content]));
    }
  }
  for (const [text, status, content] of await Promise.all(jobs)) {
    assert.equal(status, 200);
    assert.equal(content, `echo: ${text}`);
  }
  assert.equal((await fake.requests()).length, 30);
});

test('GET /metrics is Prometheus text', { timeout: 5000 }, async () => {
  await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('count me') });
  const r = await h.request(gw.url + '/metrics');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'] || '', /^text\/plain/);
  assert.match(r.text, /^# (HELP|TYPE) /m);
});
