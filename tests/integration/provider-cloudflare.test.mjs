// The `cloudflare` provider type (Workers AI native run endpoint) through the
// OpenAI API, against fake-cloudflare.mjs (strict about paths, bearer token,
// account, body fields; records every request).
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from './harness.mjs';

let cf1;
let cf2;
let gw;
const PNG_B64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

const cfProvider = (fake, account, token, priority, models) => ({
  type: 'cloudflare',
  endpoint: `${fake.url}/client/v4`,
  priority,
  timeout: '3s',
  credentials: { account_id: account, api_token: token },
  models,
});

before(async () => {
  cf1 = await h.startProviderFake('fake-cloudflare.mjs', { name: 'cf1', args: ['--account-id', 'acc-one', '--api-token', 'tok-one'] });
  cf2 = await h.startProviderFake('fake-cloudflare.mjs', { name: 'cf2', args: ['--account-id', 'acc-two', '--api-token', 'tok-two'] });
  gw = await h.startGateway({
    node: { id: 'test-node' },
    server: { workers: 2 },
    // Each test injects failures on purpose: route by price, then priority
    // (equal prices), without cross-request health, which would rightly
    // route around the provider that keeps failing.
    routing: { strategy: 'cost_optimized', load_balancing: { health_aware: false } },
    providers: {
      cf1: cfProvider(cf1, 'acc-one', 'tok-one', 1, [
        { name: 'llama', cloudflare_model: '@cf/meta/llama-3.1-8b-instruct', cost_per_1k_tokens: 0.1 },
        { name: 'llama-solo', cloudflare_model: '@cf/meta/llama-3.2-1b-instruct', cost_per_1k_tokens: 0.1 },
        { name: 'bge-small', cloudflare_model: '@cf/baai/bge-small-en-v1.5', capabilities: ['embeddings'], cost_per_1k_tokens: 0.01 },
        { name: 'bge-base', cloudflare_model: '@cf/baai/bge-base-en-v1.5', capabilities: ['embeddings'], cost_per_1k_tokens: 0.01 },
        { name: 'sdxl', cloudflare_model: '@cf/stabilityai/stable-diffusion-xl-base-1.0', capabilities: ['text-to-image'], cost_per_generation: 0.001 },
        { name: 'flux', cloudflare_model: '@cf/black-forest-labs/flux-1-schnell', capabilities: ['text-to-image'], cost_per_generation: 0.002 },
      ]),
      cf2: cfProvider(cf2, 'acc-two', 'tok-two', 2, [
        { name: 'llama', cloudflare_model: '@cf/meta/llama-3.1-8b-instruct', cost_per_1k_tokens: 0.1 },
      ]),
    },
    observability: { logging: { level: 'info', format: 'json' } },
  });
});
after(() => h.killAll());
beforeEach(async () => { await cf1.reset(); await cf2.reset(); });

const post = (p, body) => h.request(gw.url + p, { body, timeoutMs: 8000 });
const chat = (body) => post('/v1/chat/completions', { model: 'llama', ...body });
const user = (t) => ({ messages: [{ role: 'user', content: t }] });
async function stream(body) {
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: { model: 'llama', stream: true, ...body }, timeoutMs: 8000 });
  const d = await s.done;
  return { status: s.status, headers: s.headers, text: d.text, events: d.events };
}
async function onlyRequest(fake) {
  const rs = await fake.requests();
  assert.equal(rs.length, 1, `exactly one request to ${fake.name}: ${JSON.stringify(rs.map((r) => [r.path, r.body]))}`);
  assert.deepEqual(rs[0].violations, [], `${fake.name} saw a wire-format violation`);
  return rs[0];
}
const contentOf = (chunks) => chunks.map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');

test('chat non-streaming: run path, bearer token, messages body, envelope unwrapped, usage taken', { timeout: 10000 }, async () => {
  const r = await chat({
    messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'hello ' }, { type: 'text', text: 'cf' }] }],
    max_tokens: 100,
    temperature: 0.2,
    seed: 7,
  });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'cf1');
  const up = await onlyRequest(cf1);
  assert.equal(up.method, 'POST');
  assert.equal(up.path, '/client/v4/accounts/acc-one/ai/run/@cf/meta/llama-3.1-8b-instruct');
  assert.equal(up.headers.authorization, 'Bearer tok-one');
  assert.deepEqual(up.body, {
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello cf' }],
    max_tokens: 100,
    temperature: 0.2,
    seed: 7,
  });
  const j = r.json;
  assert.equal(j.object, 'chat.completion');
  assert.equal(j.choices.length, 1);
  assert.equal(j.choices[0].message.role, 'assistant');
  assert.equal(j.choices[0].message.content, 'echo: hello cf');
  assert.equal(j.choices[0].finish_reason, 'stop');
  assert.deepEqual(j.usage, { prompt_tokens: 17, completion_tokens: 3, total_tokens: 20 });
  const xa = j['x-aiproxy'];
  assert.equal(xa.provider, 'cf1');
  assert.equal(xa.usage_estimated, false);
  assert.ok(Math.abs(xa.cost - 20 * 0.1 / 1000) < 1e-9, `cost ${xa.cost}`);
});

test('chat without usage from Cloudflare: usage estimated, x-aiproxy.usage_estimated true', { timeout: 10000 }, async () => {
  await cf1.control({ queue: [{ noUsage: true }] });
  const r = await chat(user('estimate me please'));
  assert.equal(r.status, 200, r.text);
  await onlyRequest(cf1);
  assert.equal(r.json.choices[0].message.content, 'echo: estimate me please');
  const xa = r.json['x-aiproxy'];
  assert.equal(xa.usage_estimated, true);
  assert.ok(xa.cost > 0, `an estimated usage is still priced: ${xa.cost}`);
});

test('chat streaming: {"response"} events -> OpenAI chunks, usage event -> usage chunk, [DONE]', { timeout: 10000 }, async () => {
  const s = await stream(user('hello stream now'));
  assert.equal(s.status, 200, s.text);
  assert.match(s.headers['content-type'], /^text\/event-stream/);
  const up = await onlyRequest(cf1);
  assert.deepEqual(up.body, { messages: [{ role: 'user', content: 'hello stream now' }], stream: true });
  assert.equal(s.events[s.events.length - 1], '[DONE]');
  const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id), s.text);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(contentOf(chunks), 'echo: hello stream now');
  const fins = chunks.filter((c) => c.choices[0] && c.choices[0].finish_reason);
  assert.equal(fins.length, 1);
  assert.equal(fins[0].choices[0].finish_reason, 'stop');
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, { prompt_tokens: 16, completion_tokens: 4, total_tokens: 20 });
  assert.equal(last['x-aiproxy'].provider, 'cf1');
  assert.equal(last['x-aiproxy'].usage_estimated, false);
});

test('chat streaming without usage: estimated and marked', { timeout: 10000 }, async () => {
  await cf1.control({ queue: [{ noUsage: true }] });
  const s = await stream(user('no usage stream'));
  assert.equal(s.status, 200, s.text);
  assert.equal(s.events[s.events.length - 1], '[DONE]');
  const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(contentOf(chunks), 'echo: no usage stream');
  const xa = chunks[chunks.length - 1]['x-aiproxy'];
  assert.ok(xa, s.text);
  assert.equal(xa.usage_estimated, true);
});

test('success:false -> failover to cf2 (its own account and token)', { timeout: 10000 }, async () => {
  await cf1.control({ queue: [{ errorIn200: true }] });
  const r = await chat(user('fail me over'));
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'cf2');
  assert.equal(r.json.choices[0].message.content, 'echo: fail me over');
  assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['cf1', 'cf2']);
  assert.equal(r.json['x-aiproxy'].failovers, 1);
  const up2 = await onlyRequest(cf2);
  assert.equal(up2.path, '/client/v4/accounts/acc-two/ai/run/@cf/meta/llama-3.1-8b-instruct');
  assert.equal(up2.headers.authorization, 'Bearer tok-two');
});

for (const [name, b] of [['HTTP 429 envelope', { status: 429 }], ['HTTP 500 envelope', { status: 500 }], ['an {"error"} body', { errorObject: true }], ['garbage', { garbage: true }]]) {
  test(`${name} -> failover to cf2`, { timeout: 10000 }, async () => {
    await cf1.control({ queue: [b] });
    const r = await chat(user('fail me over'));
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['cf1', 'cf2']);
    await onlyRequest(cf2);
  });
}

test('success:false with no other provider -> retried (max_retries), then 502 carrying Cloudflare\'s code and message', { timeout: 10000 }, async () => {
  // The only provider keeps failing: it is retried max_retries (default 2)
  // times with backoff, then the client gets the failure.
  const fail = { errorIn200: true, message: 'Capacity temporarily exceeded' };
  await cf1.control({ queue: [fail, fail, fail] });
  const r = await post('/v1/chat/completions', { model: 'llama-solo', ...user('doomed') });
  const e = h.assertOpenAIError(r, 502, 'upstream_error');
  assert.match(e.message, /cf1/);
  assert.match(e.message, /3040/);
  assert.match(e.message, /Capacity temporarily exceeded/);
  assert.doesNotMatch(e.message, /\.\./, `no doubled full stop: ${e.message}`);
  const reqs = (await cf1.requests()).filter((q) => q.method === 'POST');
  assert.equal(reqs.length, 3, 'one attempt and two retries');
  assert.equal((await cf2.requests()).length, 0);
});

test('stream whose first event is an error -> failover to cf2', { timeout: 10000 }, async () => {
  await cf1.control({ queue: [{ streamFirstEventError: true }] });
  const s = await stream(user('fail me over'));
  assert.equal(s.status, 200, s.text);
  const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(contentOf(chunks), 'echo: fail me over', s.text);
  assert.deepEqual(chunks[chunks.length - 1]['x-aiproxy'].providers_tried, ['cf1', 'cf2']);
});

test('image parts are refused for Cloudflare: 400-class error, nothing sent', { timeout: 10000 }, async () => {
  const r = await post('/v1/chat/completions', { model: 'llama-solo', messages: [{ role: 'user', content: [{ type: 'text', text: 'what?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_B64}` } }] }] });
  assert.equal((await cf1.requests()).length, 0);
  assert.ok(r.status >= 400 && r.status < 500, `expected a 4xx: ${r.status} ${r.text}`);
  assert.ok(r.json && r.json.error, r.text);
});

test('embeddings: {text: [...]} -> OpenAI list (384 dims), string input too', { timeout: 10000 }, async () => {
  let r = await post('/v1/embeddings', { model: 'bge-small', input: ['first text', 'second'] });
  assert.equal(r.status, 200, r.text);
  let up = await onlyRequest(cf1);
  assert.equal(up.path, '/client/v4/accounts/acc-one/ai/run/@cf/baai/bge-small-en-v1.5');
  assert.deepEqual(up.body, { text: ['first text', 'second'] });
  assert.equal(r.json.object, 'list');
  assert.equal(r.json.data.length, 2);
  assert.deepEqual(r.json.data.map((d) => [d.object, d.index, d.embedding.length]), [['embedding', 0, 384], ['embedding', 1, 384]]);
  assert.notDeepEqual(r.json.data[0].embedding, r.json.data[1].embedding);
  // Workers AI reports no usage for embeddings: the gateway estimates it.
  assert.equal(r.json['x-aiproxy'].provider, 'cf1');
  assert.equal(r.json['x-aiproxy'].usage_estimated, true);
  assert.ok(r.json['x-aiproxy'].cost > 0);
  await cf1.reset();
  r = await post('/v1/embeddings', { model: 'bge-base', input: 'just one' });
  assert.equal(r.status, 200, r.text);
  up = await onlyRequest(cf1);
  assert.deepEqual(up.body, { text: 'just one' });
  assert.equal(r.json.data.length, 1);
  assert.equal(r.json.data[0].embedding.length, 768);
});

test('embeddings: the official openai SDK gets float vectors', { timeout: 10000 }, async () => {
  const client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'any', timeout: 8000, maxRetries: 0 });
  const r = await client.embeddings.create({ model: 'bge-small', input: ['sdk text'], encoding_format: 'float' });
  assert.equal(r.data.length, 1);
  assert.equal(r.data[0].embedding.length, 384);
  assert.ok(r.data[0].embedding.every((x) => typeof x === 'number'));
  const up = await onlyRequest(cf1);
  assert.deepEqual(up.body, { text: ['sdk text'] });
});

test('official openai SDK: chat create and stream via Cloudflare', { timeout: 10000 }, async () => {
  const client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'any', timeout: 8000, maxRetries: 0 });
  const r = await client.chat.completions.create({ model: 'llama-solo', messages: [{ role: 'user', content: 'hi sdk' }] });
  assert.equal(r.choices[0].message.content, 'echo: hi sdk');
  const st = await client.chat.completions.create({ model: 'llama-solo', stream: true, messages: [{ role: 'user', content: 'sdk stream' }] });
  let text = '';
  for await (const c of st) if (c.choices[0]) text += c.choices[0].delta.content || '';
  assert.equal(text, 'echo: sdk stream');
  const rs = await cf1.requests();
  assert.deepEqual(rs.map((x) => [x.path, x.violations]), [
    ['/client/v4/accounts/acc-one/ai/run/@cf/meta/llama-3.2-1b-instruct', []],
    ['/client/v4/accounts/acc-one/ai/run/@cf/meta/llama-3.2-1b-instruct', []],
  ]);
});


test('images: binary PNG (SDXL) -> b64_json, priced by cost_per_generation', { timeout: 10000 }, async () => {
  const r = await post('/v1/images/generations', { model: 'sdxl', prompt: 'a cat in a hat', size: '512x768', n: 1 });
  assert.equal(r.status, 200, r.text);
  const up = await onlyRequest(cf1);
  assert.equal(up.path, '/client/v4/accounts/acc-one/ai/run/@cf/stabilityai/stable-diffusion-xl-base-1.0');
  assert.deepEqual(up.body, { prompt: 'a cat in a hat', width: 512, height: 768 });
  assert.ok(Number.isInteger(r.json.created));
  assert.deepEqual(r.json.data, [{ b64_json: PNG_B64 }]);
  assert.ok(Math.abs(r.json['x-aiproxy'].cost - 0.001) < 1e-9);
});

test('images: JSON {"result":{"image"}} (flux) -> b64_json; official SDK', { timeout: 10000 }, async () => {
  const client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'any', timeout: 8000, maxRetries: 0 });
  const r = await client.images.generate({ model: 'flux', prompt: 'a dog' });
  assert.equal(r.data[0].b64_json, PNG_B64);
  const up = await onlyRequest(cf1);
  assert.equal(up.body.prompt, 'a dog');
});

test('images: n > 1 refused with a 400-class error', { timeout: 10000 }, async () => {
  const r = await post('/v1/images/generations', { model: 'sdxl', prompt: 'two cats', n: 2 });
  assert.equal((await cf1.requests()).length, 0);
  assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${r.text}`);
  assert.match(r.json.error.message, /n must be 1|one image/);
});
