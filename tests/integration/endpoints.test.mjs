// Legacy completions and embeddings through the fake.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let fake;
let gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({
    providers: {
      p1: h.provider(fake, {
        models: [
          h.model('gpt-test', 'upstream-gpt'),
          h.model('instruct-test', 'upstream-instruct', 0.0015, 0.002),
          { name: 'embed-test', openai_model: 'upstream-embed', capabilities: ['embeddings'], cost_per_1k_tokens: 0.0001 },
        ],
      }),
    },
  }));
});
after(() => h.killAll());
beforeEach(() => fake.reset());

test('POST /v1/completions through the fake', { timeout: 8000 }, async () => {
  const r = await h.request(gw.url + '/v1/completions', { body: { model: 'instruct-test', prompt: 'say hi', max_tokens: 7 } });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'p1');
  const { 'x-aiproxy': xa, ...rest } = r.json;
  const [up] = await fake.requests();
  assert.equal(up.path, '/v1/completions');
  assert.deepEqual(up.violations, []);
  assert.equal(up.body.model, 'upstream-instruct');
  assert.equal(up.body.prompt, 'say hi');
  assert.equal(up.body.max_tokens, 7);
  assert.deepEqual(rest, {
    id: `cmpl-fake-p1-${up.seq}`,
    object: 'text_completion',
    created: 1700000000 + up.seq,
    model: 'upstream-instruct',
    choices: [{ text: 'echo: say hi', index: 0, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 6, completion_tokens: 3, total_tokens: 9 },
  });
  assert.ok(xa, 'x-aiproxy on completions');
  assert.equal(xa.provider, 'p1');
  assert.equal(xa.model, 'upstream-instruct');
  assert.ok(Math.abs(xa.cost - (6 * 0.0015 / 1000 + 3 * 0.002 / 1000)) < 1e-12, `cost ${xa.cost}`);
});

test('POST /v1/completions with stream: true', { timeout: 8000 }, async () => {
  const s = await h.streamRequest(gw.url + '/v1/completions', { body: { model: 'instruct-test', prompt: 'stream me please', stream: true }, timeoutMs: 6000 });
  const done = await s.done;
  assert.equal(s.status, 200, done.text);
  assert.match(s.headers['content-type'] || '', /^text\/event-stream/);
  const ev = done.events;
  assert.equal(ev[ev.length - 1], '[DONE]');
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  const text = chunks.map((c) => (c.choices && c.choices[0] && c.choices[0].text) || '').join('');
  assert.equal(text, 'echo: stream me please');
  const last = chunks[chunks.length - 1];
  // Usage as the upstream reported it (when the gateway asked for it) or estimated.
  assert.ok(last.usage && Number.isInteger(last.usage.prompt_tokens) && Number.isInteger(last.usage.completion_tokens), JSON.stringify(last));
  const [up] = await fake.requests();
  if (up.body.stream_options && up.body.stream_options.include_usage) {
    assert.deepEqual(last.usage, { prompt_tokens: 16, completion_tokens: 4, total_tokens: 20 });
  }
  assert.equal(last['x-aiproxy'] && last['x-aiproxy'].provider, 'p1');
});

test('POST /v1/embeddings through the fake', { timeout: 8000 }, async () => {
  const r = await h.request(gw.url + '/v1/embeddings', { body: { model: 'embed-test', input: ['alpha', 'beta gamma'] } });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'p1');
  const [up] = await fake.requests();
  assert.equal(up.path, '/v1/embeddings');
  assert.deepEqual(up.violations, []);
  assert.equal(up.body.model, 'upstream-embed');
  assert.deepEqual(up.body.input, ['alpha', 'beta gamma']);
  assert.equal(r.json.object, 'list');
  assert.equal(r.json.data.length, 2);
  assert.deepEqual(r.json.data.map((d) => d.index), [0, 1]);
  for (const d of r.json.data) {
    assert.equal(d.object, 'embedding');
    assert.equal(d.embedding.length, 8);
    assert.ok(d.embedding.every((x) => typeof x === 'number'));
  }
  assert.deepEqual(r.json.usage, { prompt_tokens: 15, total_tokens: 15 });
  const xa = r.json['x-aiproxy'];
  assert.ok(xa, 'x-aiproxy on embeddings');
  assert.ok(Math.abs(xa.cost - 15 * 0.0001 / 1000) < 1e-12, `cost ${xa.cost}`);
});

test('embeddings: missing input -> 400 param "input"', { timeout: 5000 }, async () => {
  h.assertOpenAIError(await h.request(gw.url + '/v1/embeddings', { body: { model: 'embed-test' } }), 400, undefined, 'input');
  assert.equal((await fake.requests()).length, 0);
});

test('completions: unknown model -> 404 model_not_found', { timeout: 5000 }, async () => {
  h.assertOpenAIError(await h.request(gw.url + '/v1/completions', { body: { model: 'nope', prompt: 'x' } }), 404, 'model_not_found');
});
