// The `local` provider type (Ollama, llama.cpp, vLLM...): model discovery from
// /v1/models (and Ollama's /api/tags when that is what answers), chat to a
// discovered model, and reachability: a stopped server is marked down within
// seconds and comes back by itself. Against fake-ollama.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from './harness.mjs';

let ol;     // serves /v1/models and /api/tags
let tags;   // serves /api/tags only (its OpenAI layer cannot list)
let gw;

before(async () => {
  ol = await h.startProviderFake('fake-ollama.mjs', { name: 'ol', args: ['--models', 'llama3.2:latest,qwen2.5:0.5b'] });
  tags = await h.startProviderFake('fake-ollama.mjs', { name: 'tags', args: ['--models', 'phi3:mini,gemma2:2b', '--no-openai-models'] });
  gw = await h.startGateway({
    node: { id: 'test-node' },
    server: { workers: 2 },
    providers: {
      ollama: { type: 'local', endpoint: `${ol.url}/v1`, discover_models: true, timeout: '3s' },
      tagsonly: { type: 'local', endpoint: `${tags.url}/v1`, discover_models: true, timeout: '3s' },
    },
    observability: { logging: { level: 'info', format: 'json' } },
  });
});
after(() => h.killAll());

const models = async () => {
  const r = await h.request(gw.url + '/v1/models', { timeoutMs: 3000 });
  assert.equal(r.status, 200, r.text);
  return r.json.data;
};
const providerOf = (data, id, name) => {
  const m = data.find((x) => x.id === id);
  return m && m.providers.find((p) => p.name === name);
};
const chatPosts = async (fake) => (await fake.requests()).filter((e) => e.method === 'POST');

test('discover_models: the server\'s /v1/models are listed in GET /v1/models', { timeout: 10000 }, async () => {
  const data = await models();
  for (const id of ['llama3.2:latest', 'qwen2.5:0.5b']) {
    const p = providerOf(data, id, 'ollama');
    assert.ok(p, `${id} listed with provider ollama: ${JSON.stringify(data)}`);
    assert.equal(p.type, 'local');
    assert.equal(p.available, true);
  }
  const probes = (await ol.requests()).filter((e) => e.method === 'GET');
  assert.ok(probes.some((e) => e.path === '/v1/models'), 'discovery asked GET /v1/models');
});

test('discover_models: falls back to Ollama\'s /api/tags when /v1/models does not list', { timeout: 10000 }, async () => {
  const data = await models();
  for (const id of ['phi3:mini', 'gemma2:2b']) {
    const p = providerOf(data, id, 'tagsonly');
    assert.ok(p, `${id} listed with provider tagsonly: ${JSON.stringify(data.map((m) => m.id))}`);
    assert.equal(p.available, true);
  }
  const paths = (await tags.requests()).filter((e) => e.method === 'GET').map((e) => e.path);
  assert.ok(paths.includes('/api/tags'), `asked /api/tags: ${paths}`);
  assert.ok(!data.some((m) => m.id === 'llama3.2:latest' && m.providers.some((p) => p.name === 'tagsonly')), 'no cross-listing');
});

test('chat to a discovered model: OpenAI passthrough, non-streaming and streaming', { timeout: 10000 }, async () => {
  await ol.reset();
  const r = await h.request(gw.url + '/v1/chat/completions', { body: { model: 'qwen2.5:0.5b', messages: [{ role: 'user', content: 'hello local' }], temperature: 0.3 }, timeoutMs: 5000 });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'ollama');
  assert.equal(r.json.choices[0].message.content, 'echo: hello local');
  assert.deepEqual(r.json.usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
  assert.equal(r.json['x-aiproxy'].cost, 0);
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: { model: 'qwen2.5:0.5b', stream: true, messages: [{ role: 'user', content: 'stream local' }] }, timeoutMs: 5000 });
  const d = await s.done;
  assert.equal(s.status, 200, d.text);
  assert.equal(d.events[d.events.length - 1], '[DONE]');
  const chunks = d.events.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(chunks.map((c) => (c.choices[0] && c.choices[0].delta.content) || '').join(''), 'echo: stream local');
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.usage, { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 });
  assert.equal(last['x-aiproxy'].provider, 'ollama');
  const posts = await chatPosts(ol);
  assert.equal(posts.length, 2);
  assert.deepEqual(posts.map((e) => [e.path, e.violations]), [['/v1/chat/completions', []], ['/v1/chat/completions', []]]);
  assert.deepEqual(posts[0].body, { model: 'qwen2.5:0.5b', messages: [{ role: 'user', content: 'hello local' }], temperature: 0.3 });
  assert.deepEqual(posts[1].body, { model: 'qwen2.5:0.5b', stream: true, messages: [{ role: 'user', content: 'stream local' }], stream_options: { include_usage: true } });
});

test('chat to a model listed only by /api/tags', { timeout: 10000 }, async () => {
  await tags.reset();
  const r = await h.request(gw.url + '/v1/chat/completions', { body: { model: 'gemma2:2b', messages: [{ role: 'user', content: 'via tags' }] }, timeoutMs: 5000 });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'tagsonly');
  assert.equal(r.json.choices[0].message.content, 'echo: via tags');
  const posts = await chatPosts(tags);
  assert.equal(posts.length, 1);
  assert.deepEqual(posts[0].violations, []);
  assert.equal(posts[0].body.model, 'gemma2:2b');
});

test('official openai SDK against a discovered local model', { timeout: 10000 }, async () => {
  const client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'any', timeout: 5000, maxRetries: 0 });
  const r = await client.chat.completions.create({ model: 'llama3.2:latest', messages: [{ role: 'user', content: 'sdk local' }] });
  assert.equal(r.choices[0].message.content, 'echo: sdk local');
  const list = await client.models.list();
  const ids = [];
  for await (const m of list) ids.push(m.id);
  for (const id of ['llama3.2:latest', 'qwen2.5:0.5b', 'phi3:mini', 'gemma2:2b']) assert.ok(ids.includes(id), `${id} in ${ids}`);
});

test('a stopped local server is marked unavailable within seconds, and comes back by itself', { timeout: 40000 }, async () => {
  const port = ol.port;
  await ol.stop();
  const t0 = Date.now();
  const down = await h.waitFor(async () => {
    const p = providerOf(await models(), 'llama3.2:latest', 'ollama');
    return p && p.available === false ? p : null;
  }, 15000, 250, 'ollama marked unavailable in /v1/models');
  const downMs = Date.now() - t0;
  assert.equal(typeof down.reason, 'string', JSON.stringify(down));
  assert.ok(down.reason.length > 0);
  // The other discovered model is kept (shown unavailable), not dropped.
  const q = providerOf(await models(), 'qwen2.5:0.5b', 'ollama');
  assert.ok(q && q.available === false, `qwen2.5 kept as unavailable: ${JSON.stringify(q)}`);
  // A request for it now fails fast with an OpenAI-shaped error, not a hang.
  const r = await h.request(gw.url + '/v1/chat/completions', { body: { model: 'llama3.2:latest', messages: [{ role: 'user', content: 'anyone?' }] }, timeoutMs: 5000 });
  assert.ok(r.status >= 500 && r.status < 600, `${r.status} ${r.text}`);
  assert.ok(r.json && r.json.error, r.text);

  ol = await h.restartProviderFake(ol);
  assert.equal(ol.port, port);
  const t1 = Date.now();
  await h.waitFor(async () => {
    const p = providerOf(await models(), 'llama3.2:latest', 'ollama');
    return p && p.available === true;
  }, 15000, 250, 'ollama available again in /v1/models');
  const upMs = Date.now() - t1;
  const r2 = await h.request(gw.url + '/v1/chat/completions', { body: { model: 'llama3.2:latest', messages: [{ role: 'user', content: 'back again' }] }, timeoutMs: 5000 });
  assert.equal(r2.status, 200, r2.text);
  assert.equal(r2.json.choices[0].message.content, 'echo: back again');
  assert.ok(downMs < 15000 && upMs < 15000, `down after ${downMs} ms, up after ${upMs} ms`);
});
