// The official `openai` npm client against the gateway: what real users run.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from './harness.mjs';

let fake;
let gw;
let client;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({
    providers: {
      p1: h.provider(fake, {
        models: [
          h.model('gpt-test', 'upstream-gpt'),
          { name: 'embed-test', openai_model: 'upstream-embed', capabilities: ['embeddings'], cost_per_1k_tokens: 0.0001 },
        ],
      }),
    },
  }));
  client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'any-key', timeout: 8000, maxRetries: 0 });
});
after(() => h.killAll());
beforeEach(() => fake.reset());

test('chat.completions.create', { timeout: 10000 }, async () => {
  const r = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi sdk' }] });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.content, 'echo: hi sdk');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.deepEqual(r.usage, { prompt_tokens: 6, completion_tokens: 3, total_tokens: 9 });
  assert.equal(r['x-aiproxy'].provider, 'p1');
  const [up] = await fake.requests();
  assert.deepEqual(up.violations, []);
  assert.equal(up.body.model, 'upstream-gpt');
});

test('chat.completions.create withResponse exposes the x-aiproxy headers', { timeout: 10000 }, async () => {
  const { data, response } = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hdr' }] }).withResponse();
  assert.equal(data.choices[0].message.content, 'echo: hdr');
  assert.equal(response.headers.get('x-aiproxy-provider'), 'p1');
  assert.equal(response.headers.get('x-aiproxy-node'), 'test-node');
  assert.ok(response.headers.get('x-aiproxy-request-id'));
});

test('streaming with for await', { timeout: 10000 }, async () => {
  const stream = await client.chat.completions.create({
    model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'stream this now' }],
  });
  let text = '';
  let last = null;
  let n = 0;
  for await (const chunk of stream) {
    n++;
    last = chunk;
    if (chunk.choices[0] && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
  }
  assert.equal(text, 'echo: stream this now');
  assert.ok(n >= 3);
  assert.deepEqual(last.usage, { prompt_tokens: 15, completion_tokens: 4, total_tokens: 19 });
  assert.equal(last['x-aiproxy'].provider, 'p1');
});

test('embeddings.create', { timeout: 10000 }, async () => {
  const r = await client.embeddings.create({ model: 'embed-test', input: 'embed me', encoding_format: 'float' });
  assert.equal(r.data.length, 1);
  assert.equal(r.data[0].embedding.length, 8);
  assert.deepEqual(r.usage, { prompt_tokens: 8, total_tokens: 8 });
  const [up] = await fake.requests();
  assert.equal(up.body.model, 'upstream-embed');
});

test('models.list and models.retrieve', { timeout: 10000 }, async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('gpt-test'), `ids: ${ids}`);
  assert.ok(ids.includes('embed-test'), `ids: ${ids}`);
  const m = await client.models.retrieve('gpt-test');
  assert.equal(m.id, 'gpt-test');
});

test('models.retrieve("nope") rejects with NotFoundError', { timeout: 10000 }, async () => {
  await assert.rejects(client.models.retrieve('nope'), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `got ${e && e.constructor && e.constructor.name}: ${e}`);
    assert.equal(e.status, 404);
    assert.equal(e.code, 'model_not_found');
    return true;
  });
});

test('chat with an unknown model rejects with NotFoundError', { timeout: 10000 }, async () => {
  await assert.rejects(client.chat.completions.create({ model: 'no-such', messages: [{ role: 'user', content: 'x' }] }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `got ${e && e.constructor && e.constructor.name}: ${e}`);
    assert.equal(e.code, 'model_not_found');
    return true;
  });
});

test('a missing messages field rejects with BadRequestError naming the param', { timeout: 10000 }, async () => {
  await assert.rejects(client.chat.completions.create({ model: 'gpt-test' }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `got ${e && e.constructor && e.constructor.name}: ${e}`);
    assert.equal(e.param, 'messages');
    return true;
  });
});

test('a stream broken mid-way surfaces as an APIError in for await', { timeout: 10000 }, async () => {
  await fake.control({ queue: [{ chunks: 10, resetAfterChunks: 2 }] });
  const stream = await client.chat.completions.create({ model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'x' }] });
  let text = '';
  await assert.rejects((async () => {
    for await (const chunk of stream) {
      if (chunk.choices[0] && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
    }
  })(), (e) => {
    assert.ok(e instanceof OpenAI.APIError, `got ${e && e.constructor && e.constructor.name}: ${e}`);
    return true;
  });
  assert.equal(text, 'c0 c1 ');
});

test('default SDK retries: a 502 is retried, and the gateway answers it as JSON each time', { timeout: 15000 }, async () => {
  // Upstream always fails; the only provider => 502 upstream_error. The SDK
  // (maxRetries 1 here) retries once; both answers must be well-formed.
  await fake.control({ default: { status: 500 } });
  const c = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'k', timeout: 8000, maxRetries: 1 });
  await assert.rejects(c.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] }), (e) => {
    assert.ok(e instanceof OpenAI.InternalServerError, `got ${e && e.constructor && e.constructor.name}: ${e}`);
    assert.equal(e.status, 502);
    assert.equal(e.code, 'upstream_error');
    return true;
  });
  const reqs = await fake.requests();
  assert.ok(reqs.length >= 2, `the SDK retry must have reached the upstream again (${reqs.length})`);
});
