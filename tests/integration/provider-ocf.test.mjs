// The `ocf` provider type: models discovered from the head node's
// /v1/dnt/table (connected peers, llm services, model=NAME identity groups),
// requests sent in OpenAI format to /v1/service/llm/v1/chat/completions.
// Against fake-ocf.mjs.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from './harness.mjs';

let ocf;
let gw;

before(async () => {
  ocf = await h.startProviderFake('fake-ocf.mjs', { name: 'ocf' });
  gw = await h.startGateway({
    node: { id: 'test-node' },
    server: { workers: 2 },
    providers: {
      ocfnet: { type: 'ocf', endpoint: ocf.url, discover_models: true, timeout: '3s' },
      // Configured model names, endpoint given with a trailing /v1, no discovery.
      ocfcfg: {
        type: 'ocf', endpoint: `${ocf.url}/v1`, timeout: '3s', priority: 200,
        models: [{ name: 'qwen3', ocf_model: 'Qwen/Qwen3-0.6B', cost_per_1k_tokens: 0.5 }],
      },
    },
    observability: { logging: { level: 'info', format: 'json' } },
  });
});
after(() => h.killAll());
beforeEach(() => ocf.control({ queue: [], default: {}, table: null }));

const models = async () => {
  const r = await h.request(gw.url + '/v1/models', { timeoutMs: 3000 });
  assert.equal(r.status, 200, r.text);
  return r.json.data;
};
const posts = async () => (await ocf.requests()).filter((e) => e.method === 'POST');

test('models of connected peers\' llm services appear in GET /v1/models; others do not', { timeout: 10000 }, async () => {
  const data = await models();
  const ocfModels = data.filter((m) => m.providers.some((p) => p.name === 'ocfnet')).map((m) => m.id).sort();
  assert.deepEqual(ocfModels, ['Qwen/Qwen3-0.6B', 'meta-llama/Llama-3.2-1B']);
  const q = data.find((m) => m.id === 'Qwen/Qwen3-0.6B').providers.find((p) => p.name === 'ocfnet');
  assert.equal(q.type, 'ocf');
  assert.equal(q.available, true);
  assert.ok(!data.some((m) => m.id === 'deepseek/Disconnected-7B'), 'a disconnected peer\'s model is not listed');
  assert.ok(!data.some((m) => m.id === 'resnet50'), 'a non-llm service is not listed');
  assert.ok(data.some((m) => m.id === 'qwen3'), 'the configured name is listed too');
  const probes = (await ocf.requests()).filter((e) => e.method === 'GET').map((e) => e.path);
  assert.ok(probes.includes('/v1/dnt/table'), `discovery read /v1/dnt/table: ${probes}`);
});

test('chat goes to /v1/service/llm/v1/chat/completions in OpenAI format', { timeout: 10000 }, async () => {
  await ocf.reset();
  const r = await h.request(gw.url + '/v1/chat/completions', {
    body: { model: 'Qwen/Qwen3-0.6B', messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'hello ocf' }], max_tokens: 20 },
    timeoutMs: 5000,
  });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'ocfnet');
  assert.equal(r.json.choices[0].message.content, 'echo: hello ocf');
  assert.deepEqual(r.json.usage, { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 });
  const ps = await posts();
  assert.equal(ps.length, 1);
  assert.equal(ps[0].path, '/v1/service/llm/v1/chat/completions');
  assert.deepEqual(ps[0].violations, []);
  assert.deepEqual(ps[0].body, { model: 'Qwen/Qwen3-0.6B', messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'hello ocf' }], max_tokens: 20 });
  assert.ok(['QmPeerA', 'QmPeerB'].includes(ps[0].peer));
});

test('load is spread by the node over the peers serving the model', { timeout: 10000 }, async () => {
  await ocf.reset();
  for (let i = 0; i < 4; i++) {
    const r = await h.request(gw.url + '/v1/chat/completions', { body: { model: 'Qwen/Qwen3-0.6B', messages: [{ role: 'user', content: `n${i}` }] }, timeoutMs: 5000 });
    assert.equal(r.status, 200, r.text);
  }
  const peers = new Set((await posts()).map((e) => e.peer));
  assert.deepEqual([...peers].sort(), ['QmPeerA', 'QmPeerB']);
});

test('streaming through OCF: chunks, usage chunk, [DONE]', { timeout: 10000 }, async () => {
  await ocf.reset();
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: { model: 'meta-llama/Llama-3.2-1B', stream: true, messages: [{ role: 'user', content: 'stream ocf' }] }, timeoutMs: 5000 });
  const d = await s.done;
  assert.equal(s.status, 200, d.text);
  assert.equal(d.events[d.events.length - 1], '[DONE]');
  const chunks = d.events.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(chunks.map((c) => (c.choices[0] && c.choices[0].delta.content) || '').join(''), 'echo: stream ocf');
  assert.deepEqual(chunks[chunks.length - 1].usage, { prompt_tokens: 10, completion_tokens: 3, total_tokens: 13 });
  const ps = await posts();
  assert.equal(ps.length, 1);
  assert.equal(ps[0].peer, 'QmPeerB');
  assert.deepEqual(ps[0].body.stream_options, { include_usage: true });
});

test('a configured name (ocf_model) and an endpoint with a trailing /v1', { timeout: 10000 }, async () => {
  await ocf.reset();
  const r = await h.request(gw.url + '/v1/chat/completions', { body: { model: 'qwen3', messages: [{ role: 'user', content: 'by alias' }] }, timeoutMs: 5000 });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'ocfcfg');
  const ps = await posts();
  assert.equal(ps.length, 1);
  assert.equal(ps[0].path, '/v1/service/llm/v1/chat/completions');
  assert.equal(ps[0].body.model, 'Qwen/Qwen3-0.6B');
  assert.ok(Math.abs(r.json['x-aiproxy'].cost - (8 + 3) * 0.5 / 1000) < 1e-9, JSON.stringify(r.json['x-aiproxy']));
});

test('official openai SDK against an OCF model', { timeout: 10000 }, async () => {
  const client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'any', timeout: 5000, maxRetries: 0 });
  const r = await client.chat.completions.create({ model: 'Qwen/Qwen3-0.6B', messages: [{ role: 'user', content: 'sdk ocf' }] });
  assert.equal(r.choices[0].message.content, 'echo: sdk ocf');
});

test('GET /v1/endpoints lists the OCF providers with endpoint and models', { timeout: 10000 }, async () => {
  const r = await h.request(gw.url + '/v1/endpoints', { timeoutMs: 3000 });
  assert.equal(r.status, 200, r.text);
  assert.ok(r.text.includes(ocf.url), `endpoint shown: ${r.text.slice(0, 500)}`);
  assert.ok(r.text.includes('Qwen/Qwen3-0.6B'), r.text.slice(0, 800));
});

test('a peer joining with a new model is discovered by the periodic refresh', { timeout: 20000 }, async () => {
  const table = await h.request(`${ocf.url}/v1/dnt/table`);
  const t = table.json;
  t['/QmPeerE'] = { ...t['/QmPeerA'], id: 'QmPeerE', service: [{ ...t['/QmPeerA'].service[0], identity_group: ['model=mistral/Mistral-7B'] }] };
  await ocf.control({ table: t });
  await h.waitFor(async () => (await models()).some((m) => m.id === 'mistral/Mistral-7B'), 12000, 250, 'mistral/Mistral-7B listed');
  await ocf.reset();
  const r = await h.request(gw.url + '/v1/chat/completions', { body: { model: 'mistral/Mistral-7B', messages: [{ role: 'user', content: 'new peer' }] }, timeoutMs: 5000 });
  assert.equal(r.status, 200, r.text);
  assert.equal((await posts())[0].peer, 'QmPeerE');
});
