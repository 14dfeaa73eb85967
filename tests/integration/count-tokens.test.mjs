// POST /v1/messages/count_tokens and Claude Code's gateway contract, driven
// by the official @anthropic-ai/sdk: counts forwarded to Anthropic providers
// (fake-anthropic.mjs, strict: no max_tokens, headers checked) with
// failover among them, the gateway's estimate (marked) for other providers
// or when every Anthropic provider fails, Anthropic-shaped 400/401/403/404,
// anthropic-version/anthropic-beta passed through unchanged, and
// thinking/context_management accepted everywhere but sent only to
// Anthropic providers. Also calibrates the estimator against Anthropic's
// published tokenizer: the estimate is never below its count, and the
// over-count ratios are printed.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { countTokens } from '@anthropic-ai/tokenizer';
import * as h from './harness.mjs';

let an1;
let an2;
let oai;
let gw;
let authGw;
let client;

const providers = () => ({
  anth1: {
    type: 'anthropic', endpoint: `${an1.url}/v1`, priority: 1, timeout: '3s', credentials: { api_key: 'ak-1' },
    models: [{ name: 'claude-test', anthropic_model: 'claude-fake-1', capabilities: ['text-generation', 'function-calling', 'vision'], cost_per_1k_tokens: 0.001 }],
  },
  anth2: {
    type: 'anthropic', endpoint: `${an2.url}/v1`, priority: 2, timeout: '3s', credentials: { api_key: 'ak-2' },
    models: [{ name: 'claude-test', anthropic_model: 'claude-fake-2', capabilities: ['text-generation', 'function-calling', 'vision'], cost_per_1k_tokens: 0.001 }],
  },
  oai: {
    type: 'openai', endpoint: `${oai.url}/v1`, priority: 1, timeout: '3s', credentials: { api_key: 'sk-oai' },
    models: [{ name: 'gpt-test', openai_model: 'upstream-gpt', capabilities: ['text-generation', 'function-calling', 'vision'], cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }],
  },
});

before(async () => {
  an1 = await h.startProviderFake('fake-anthropic.mjs', { name: 'an1', args: ['--api-key', 'ak-1'] });
  an2 = await h.startProviderFake('fake-anthropic.mjs', { name: 'an2', args: ['--api-key', 'ak-2'] });
  oai = await h.startFake({ name: 'oai', apiKey: 'sk-oai', models: ['upstream-gpt'] });
  const base = { node: { id: 'test-node' }, server: { workers: 1 }, providers: providers(), routing: { strategy: 'availability' } };
  gw = await h.startGateway(base);
  authGw = await h.startGateway({
    ...base,
    budget: { track_costs: true },
    security: { auth: { enabled: true, api_keys: [
      { key: 'ck-all', name: 'all' },
      { key: 'ck-gpt', name: 'gpt-only', models: ['gpt-test'] },
      { key: 'ck-rpm', name: 'rpm', requests_per_minute: 2 },
    ] } },
  });
  client = new Anthropic({ baseURL: gw.url, apiKey: 'any-key', maxRetries: 0, timeout: 8000 });
});
after(() => h.killAll());
beforeEach(async () => { await an1.reset(); await an2.reset(); await oai.reset(); });

const posts = async (fake) => (await fake.requests()).filter((e) => e.method === 'POST');
const tools = [{ name: 'lookup', description: 'search the web', input_schema: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] } }];
const convo = [
  { role: 'user', content: 'What is the weather in Paris? use tool' },
  { role: 'assistant', content: [{ type: 'text', text: 'Let me look.' }, { type: 'tool_use', id: 'toolu_1', name: 'lookup', input: { q: 'paris weather' } }] },
  { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'Sunny, 21 degrees' }] },
];
const count = (body, headers = {}, url = gw.url) => h.request(`${url}/v1/messages/count_tokens`, { method: 'POST', body, headers });

function assertAnthropicError(r, status, type) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.json.type, 'error', r.text);
  assert.equal(r.json.error.type, type, r.text);
  assert.equal(typeof r.json.error.message, 'string');
}

test('SDK countTokens -> an Anthropic provider: its count, forwarded strictly', { timeout: 10000 }, async () => {
  const res = await client.messages.countTokens({
    model: 'claude-test', system: 'Be brief.', tools, messages: convo,
    thinking: { type: 'enabled', budget_tokens: 2048 },
  }, { headers: { 'anthropic-beta': 'token-counting-2024-11-01,context-management-2025-06-27', 'anthropic-version': '2023-01-01' } });
  const ps = await posts(an1);
  assert.equal(ps.length, 1);
  const up = ps[0];
  assert.deepEqual(up.violations, []);
  assert.equal(up.path, '/v1/messages/count_tokens');
  assert.equal(up.headers['x-api-key'], 'ak-1');
  assert.equal(up.headers.authorization, undefined);
  assert.equal(up.headers['anthropic-version'], '2023-01-01');
  assert.equal(up.headers['anthropic-beta'], 'token-counting-2024-11-01,context-management-2025-06-27');
  assert.equal(up.body.model, 'claude-fake-1');
  assert.equal(up.body.max_tokens, undefined);
  assert.deepEqual(up.body.messages, convo);
  assert.deepEqual(up.body.tools, tools);
  assert.deepEqual(up.body.thinking, { type: 'enabled', budget_tokens: 2048 });
  assert.equal(res.input_tokens, 1000 + JSON.stringify(up.body).length);
  assert.equal(res['x-aiproxy'], undefined); // the provider's count: not marked
  assert.equal((await posts(an2)).length, 0);
});

test('the default anthropic-version when the client sends none; a client version passes unchanged', { timeout: 10000 }, async () => {
  const body = { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] };
  let r = await count(body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-aiproxy-provider'], 'anth1');
  assert.equal(r.headers['x-aiproxy-estimated'], undefined);
  let up = (await posts(an1))[0];
  assert.equal(up.headers['anthropic-version'], '2023-06-01');
  assert.equal(up.headers['anthropic-beta'], undefined);
  await an1.reset();
  r = await count(body, { 'anthropic-version': '2023-01-01' });
  assert.equal(r.status, 200, r.text);
  up = (await posts(an1))[0];
  assert.equal(up.headers['anthropic-version'], '2023-01-01');
});

test('failover to the next Anthropic provider, then the estimate when all fail', { timeout: 15000 }, async () => {
  const body = { model: 'claude-test', messages: [{ role: 'user', content: 'hello failover' }] };
  await an1.control({ queue: [{ status: 529 }] });
  let r = await count(body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-aiproxy-provider'], 'anth2');
  const up2 = (await posts(an2))[0];
  assert.equal(up2.body.model, 'claude-fake-2');
  assert.equal(up2.headers['x-api-key'], 'ak-2');
  assert.equal(r.json.input_tokens, 1000 + JSON.stringify(up2.body).length);

  await an1.control({ queue: [{ status: 503 }] });
  await an2.control({ queue: [{ status: 500 }] });
  r = await count(body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-aiproxy-estimated'], 'true');
  assert.equal(r.json['x-aiproxy'].estimated, true);
  assert.match(r.json['x-aiproxy'].reason, /every Anthropic provider failed/);
  assert.ok(r.json.input_tokens >= countTokens('hello failover'));
});

test("a provider's 400 is passed through as it is", { timeout: 10000 }, async () => {
  await an1.control({ queue: [{ status: 400, message: 'prompt is too long' }] });
  const r = await count({ model: 'claude-test', messages: [{ role: 'user', content: 'x' }] });
  assertAnthropicError(r, 400, 'invalid_request_error');
  assert.equal(r.json.error.message, 'prompt is too long');
  assert.equal((await posts(an2)).length, 0);
});

test('SDK countTokens -> a non-Anthropic provider: the estimate, marked; nothing sent upstream', { timeout: 10000 }, async () => {
  const raw = await client.messages.countTokens({ model: 'gpt-test', system: 'Be brief.', tools, messages: convo }).asResponse();
  assert.equal(raw.status, 200);
  assert.equal(raw.headers.get('x-aiproxy-estimated'), 'true');
  const res = await raw.json();
  assert.equal(res['x-aiproxy'].estimated, true);
  assert.match(res['x-aiproxy'].reason, /oai \(type openai\) has no count_tokens/);
  const texts = ['Be brief.', JSON.stringify(tools), ...convo.map((m) => JSON.stringify(m.content))].join('\n');
  assert.ok(res.input_tokens >= countTokens(texts), `${res.input_tokens} < ${countTokens(texts)}`);
  assert.equal((await posts(oai)).length, 0);
});

test('bad bodies: the same Anthropic-shaped 400s as /v1/messages; unknown model 404', { timeout: 10000 }, async () => {
  assertAnthropicError(await count('{not json'), 400, 'invalid_request_error');
  assertAnthropicError(await count([1, 2]), 400, 'invalid_request_error');
  let r = await count({ messages: [{ role: 'user', content: 'hi' }] });
  assertAnthropicError(r, 400, 'invalid_request_error');
  assert.match(r.json.error.message, /model/);
  r = await count({ model: 'claude-test', messages: [] });
  assertAnthropicError(r, 400, 'invalid_request_error');
  assert.match(r.json.error.message, /messages/);
  r = await count({ model: 'claude-test', messages: [{ role: 'system', content: 'x' }] });
  assertAnthropicError(r, 400, 'invalid_request_error');
  assert.match(r.json.error.message, /role/);
  const same = await h.request(`${gw.url}/v1/messages`, { method: 'POST', body: { model: 'claude-test', max_tokens: 5, messages: [{ role: 'system', content: 'x' }] } });
  assert.equal(same.json.error.message, r.json.error.message);
  r = await count({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] });
  assertAnthropicError(r, 404, 'not_found_error');
  assert.equal((await posts(an1)).length, 0);
  // max_tokens and stream from a client are accepted and not forwarded
  r = await count({ model: 'claude-test', max_tokens: 10, stream: false, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual((await posts(an1))[0].violations, []);
});

test('auth, the key model allow-list and request rate limits; nothing in the ledger', { timeout: 10000 }, async () => {
  const body = { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] };
  assertAnthropicError(await count(body, {}, authGw.url), 401, 'authentication_error');
  assertAnthropicError(await count(body, { 'x-api-key': 'wrong' }, authGw.url), 401, 'authentication_error');
  let r = await count(body, { 'x-api-key': 'ck-all' }, authGw.url);
  assert.equal(r.status, 200, r.text);
  assert.equal((await posts(an1))[0].headers['x-api-key'], 'ak-1'); // never the client's key
  r = await count(body, { authorization: 'Bearer ck-gpt' }, authGw.url);
  assertAnthropicError(r, 403, 'permission_error');
  r = await count({ ...body, model: 'gpt-test' }, { authorization: 'Bearer ck-gpt' }, authGw.url);
  assert.equal(r.status, 200, r.text);
  for (let i = 0; i < 2; i++) assert.equal((await count(body, { 'x-api-key': 'ck-rpm' }, authGw.url)).status, 200);
  assertAnthropicError(await count(body, { 'x-api-key': 'ck-rpm' }, authGw.url), 429, 'rate_limit_error');
  const spend = await h.request(`${authGw.url}/v1/budget`, { headers: { 'x-api-key': 'ck-all' } });
  assert.equal(spend.status, 200, spend.text);
  assert.doesNotMatch(spend.text, /[1-9]\d*\.\d*[1-9]/, 'count_tokens cost nothing');
});

test('/v1/messages -> Anthropic: anthropic-version/beta unchanged, thinking and context_management passed', { timeout: 10000 }, async () => {
  const cm = { edits: [{ type: 'clear_tool_uses_20250919' }] };
  const m = await client.messages.create({
    model: 'claude-test', max_tokens: 4000, messages: [{ role: 'user', content: 'hello claude code' }],
    thinking: { type: 'enabled', budget_tokens: 1024 }, context_management: cm, service_tier: 'auto', metadata: { user_id: 'u-1' },
  }, { headers: { 'anthropic-beta': 'context-management-2025-06-27,interleaved-thinking-2025-05-14', 'anthropic-version': '2023-01-01' } });
  assert.deepEqual(m.content, [{ type: 'text', text: 'echo: hello claude code' }]);
  const up = (await posts(an1))[0];
  assert.deepEqual(up.violations, []);
  assert.equal(up.headers['anthropic-beta'], 'context-management-2025-06-27,interleaved-thinking-2025-05-14');
  assert.equal(up.headers['anthropic-version'], '2023-01-01');
  assert.deepEqual(up.body.thinking, { type: 'enabled', budget_tokens: 1024 });
  assert.deepEqual(up.body.context_management, cm);
  assert.equal(up.body.service_tier, 'auto');
  assert.deepEqual(up.body.metadata, { user_id: 'u-1' });
});

test('/v1/messages tool loop with thinking on: thinking left out (no thinking blocks in the history)', { timeout: 10000 }, async () => {
  const m = await client.messages.create({
    model: 'claude-test', max_tokens: 4000, tools, messages: convo, thinking: { type: 'enabled', budget_tokens: 1024 },
  });
  assert.equal(m.type, 'message');
  const up = (await posts(an1))[0];
  assert.deepEqual(up.violations, []);
  assert.equal(up.body.thinking, undefined);
});

test('/v1/messages -> OpenAI provider: thinking/context_management/service_tier accepted, not sent', { timeout: 10000 }, async () => {
  const m = await client.messages.create({
    model: 'gpt-test', max_tokens: 100, messages: [{ role: 'user', content: 'hello openai' }],
    thinking: { type: 'enabled', budget_tokens: 1024 }, context_management: { edits: [] }, service_tier: 'auto', metadata: { user_id: 'u-2' },
  }, { headers: { 'anthropic-beta': 'context-management-2025-06-27' } });
  assert.deepEqual(m.content, [{ type: 'text', text: 'echo: hello openai' }]);
  const up = (await posts(oai))[0];
  assert.deepEqual(up.violations || [], []);
  for (const k of ['thinking', 'context_management', 'service_tier', 'metadata', 'top_k']) assert.equal(up.body[k], undefined, k);
  assert.equal(up.body.user, 'u-2');
  assert.equal(up.headers['anthropic-beta'], undefined);
  assert.equal(up.headers['anthropic-version'], undefined);
});

// ---- the estimator against the published tokenizer ----

function corpus() {
  const repo = h.REPO;
  const read = (dir, ext, max) => fs.readdirSync(path.join(repo, dir)).filter((f) => f.endsWith(ext)).sort().slice(0, max)
    .map((f) => fs.readFileSync(path.join(repo, dir, f), 'utf8'));
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  const bytes = Buffer.alloc(4000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (rnd() & 255) || 1; // no NUL: JSON bodies refuse it
  const b64 = Buffer.alloc(3000);
  for (let i = 0; i < b64.length; i++) b64[i] = rnd() & 255;
  return {
    'English prose': fs.readFileSync(path.join(repo, 'README.md'), 'utf8').replace(/[`#*|[\]()_-]/g, ' '),
    'source code (src/api/*.c)': read('src/api', '.c', 6).join('\n'),
    'markdown (docs/*.md)': read('docs', '.md', 4).join('\n'),
    JSON: fs.readFileSync(path.join(repo, 'tests/package-lock.json'), 'utf8').slice(0, 60000),
    CJK: '人工智能是计算机科学的一个分支，它企图了解智能的实质。日本語のテキストも含まれています。한국어 문장도 있습니다. 龘靐齉齾爩鱻麤'.repeat(15),
    emoji: '😀🎉👍🏽👨‍👩‍👧‍👦🚀🔥✨❤️🇫🇷 '.repeat(30),
    numbers: Array.from({ length: 400 }, (_, i) => String((i * 7919) % 100003) + (i % 3 ? '.5' : '')).join(', '),
    whitespace: `a\n\n    b\t\t  c\n${' '.repeat(200)}\n${'\n'.repeat(50)}x     y\t\t\tz`,
    'random bytes as UTF-8': bytes.toString('utf8'),
    base64: b64.toString('base64'),
    'Greek, Armenian, Thai, Hindi': 'Η ελληνική γλώσσα ψυχή Հայերենը լեզու ภาษาไทยเป็นภาษา हिन्दी भाषा '.repeat(20),
  };
}

test('estimator calibration: never below the published tokenizer; over-count ratios', { timeout: 15000 }, async () => {
  const rows = [];
  for (const [name, text] of Object.entries(corpus())) {
    const r = await count({ model: 'gpt-test', messages: [{ role: 'user', content: text }] });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json['x-aiproxy'].estimated, true);
    const real = countTokens(text);
    const ratio = r.json.input_tokens / real;
    rows.push(`${name.padEnd(30)} tokenizer ${String(real).padStart(6)}  estimate ${String(r.json.input_tokens).padStart(6)}  x${ratio.toFixed(2)}`);
    assert.ok(r.json.input_tokens >= real, `${name}: estimate ${r.json.input_tokens} < tokenizer ${real}`);
    if (name === 'English prose') assert.ok(ratio < 2, `English prose over-counted x${ratio.toFixed(2)}`);
  }
  console.log(`# count_tokens estimate vs @anthropic-ai/tokenizer\n# ${rows.join('\n# ')}`);
});
