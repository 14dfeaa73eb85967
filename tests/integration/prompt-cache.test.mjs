// Prompt caching (SPEC section 9): usage's cached reads and cache writes
// priced with cost_per_1k_cached_input_tokens / cost_per_1k_cache_write_tokens
// (default: the input price), shown in x-aiproxy, counted in the ledger and
// the metrics; translated between OpenAI's and Anthropic's usage shapes,
// whole and streamed; Anthropic's cache_control passed on to Anthropic
// (from OpenAI-shaped requests and from /v1/messages) and stripped towards
// OpenAI-compatible upstreams, which refuse it.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import * as h from './harness.mjs';

// "0.00255" -> 2550000n nano-dollars, exactly (no floats).
function usdToNanos(text) {
  const [i, f = ''] = String(text).split('.');
  return BigInt(i) * 1000000000n + BigInt((f + '000000000').slice(0, 9));
}
const costNanos = (text) => usdToNanos(/"cost":([0-9.]+)/.exec(text)[1]);
const sql = (db, q) => execFileSync('sqlite3', [db, q], { encoding: 'utf8' }).trim();

let oa;
let an;
let gw;
let db;
let client;

before(async () => {
  oa = await h.startFake({ name: 'oa', apiKey: 'sk-test-1' });
  an = await h.startProviderFake('fake-anthropic.mjs', { name: 'an', args: ['--api-key', 'ak-1'] });
  db = path.join(h.tempDir('aiproxy-pcache-'), 'costs.db');
  gw = await h.startGateway({
    node: { id: 'test-node' },
    server: { workers: 2 },
    budget: { cost_db: `sqlite:///${db}` },
    providers: {
      oa: {
        type: 'openai', endpoint: oa.base, timeout: '3s', credentials: { api_key: 'sk-test-1' },
        models: [
          // gpt-4.1's shape: cached input at 25%, writes at the input price (absent)
          { name: 'gpt-cache', openai_model: 'upstream-gpt', cost_per_1k_input_tokens: 0.002,
            cost_per_1k_cached_input_tokens: 0.0005, cost_per_1k_output_tokens: 0.008 },
          // no prompt-cache prices: both are the input price
          { name: 'gpt-plain', openai_model: 'upstream-gpt', cost_per_1k_input_tokens: 0.001,
            cost_per_1k_output_tokens: 0.002 },
        ],
      },
      an: {
        type: 'anthropic', endpoint: `${an.url}/v1`, timeout: '3s', credentials: { api_key: 'ak-1' },
        models: [{ name: 'claude-cache', anthropic_model: 'claude-fake-1', capabilities: ['text-generation', 'function-calling'],
          cost_per_1k_input_tokens: 0.003, cost_per_1k_cached_input_tokens: 0.0003,
          cost_per_1k_cache_write_tokens: 0.00375, cost_per_1k_output_tokens: 0.015 }],
      },
    },
  });
  client = new Anthropic({ baseURL: gw.url, apiKey: 'any-key', maxRetries: 0, timeout: 8000 });
});
after(() => h.killAll());
beforeEach(async () => { await oa.reset(); await an.reset(); });

const posts = async (fake) => (await fake.requests()).filter((e) => e.method === 'POST');
async function onlyPost(fake) {
  const ps = await posts(fake);
  assert.equal(ps.length, 1, JSON.stringify(ps.map((p) => p.body)));
  assert.deepEqual(ps[0].violations, []);
  return ps[0];
}

// The ledger row of a request, once the writer has committed it.
async function ledgerRow(requestId) {
  let row = '';
  await h.waitFor(() => {
    row = sql(db, `SELECT tokens_in, cached_tokens, cache_write_tokens, cost_nanos FROM requests WHERE request_id = '${requestId}'`);
    return row !== '';
  }, 5000, 50, `ledger row ${requestId}`);
  return row.split('|').map(Number);
}

// 2000 prompt tokens of which 1500 read from the cache, 100 out.
const OPENAI_CACHED = { prompt_tokens: 2000, completion_tokens: 100, prompt_tokens_details: { cached_tokens: 1500, audio_tokens: 0 } };
// Anthropic: 100 plain + 1500 read + 400 written = 2000 prompt tokens, 50 out.
const ANTHROPIC_CACHED = { input_tokens: 100, cache_read_input_tokens: 1500, cache_creation_input_tokens: 400, output_tokens: 50 };
// 100 * 0.003 + 1500 * 0.0003 + 400 * 0.00375 + 50 * 0.015 per 1k
const ANTHROPIC_NANOS = 300000n + 450000n + 1500000n + 750000n;

const EPHEMERAL = { type: 'ephemeral' };
const cachedChat = (model, extra = {}) => ({
  model,
  messages: [
    { role: 'system', content: [{ type: 'text', text: 'You are a long and stable system prompt.', cache_control: EPHEMERAL }] },
    { role: 'user', content: [{ type: 'text', text: 'a long document', cache_control: EPHEMERAL }, { type: 'text', text: 'question one' }] },
    { role: 'assistant', content: 'an answer' },
    { role: 'user', content: 'question two', cache_control: EPHEMERAL },
  ],
  tools: [{ type: 'function', function: { name: 'lookup', description: 'search', parameters: { type: 'object', properties: { q: { type: 'string' } } } }, cache_control: EPHEMERAL }],
  ...extra,
});

test('OpenAI cached_tokens priced at the cached price: x-aiproxy, usage and the ledger', { timeout: 10000 }, async () => {
  await oa.control({ queue: [{ usage: OPENAI_CACHED }] });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('hi', { model: 'gpt-cache' }) });
  assert.equal(r.status, 200, r.text);
  // 500 * 0.002 + 1500 * 0.0005 + 100 * 0.008 per 1k
  const want = 1000000n + 750000n + 800000n;
  assert.equal(costNanos(r.text), want);
  const x = r.json['x-aiproxy'];
  assert.equal(x.cached_tokens, 1500);
  assert.equal(x.cache_write_tokens, undefined);
  assert.deepEqual(r.json.usage.prompt_tokens_details, { cached_tokens: 1500, audio_tokens: 0 });
  assert.deepEqual(await ledgerRow(x.request_id), [2000, 1500, 0, Number(want)]);
});

test('without prompt-cache prices, cached reads and writes cost the input price', { timeout: 10000 }, async () => {
  await oa.control({ queue: [{ usage: { prompt_tokens: 2000, completion_tokens: 100, prompt_tokens_details: { cached_tokens: 1500, cache_write_tokens: 300 } } }] });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('hi', { model: 'gpt-plain' }) });
  assert.equal(r.status, 200, r.text);
  assert.equal(costNanos(r.text), 2000000n + 200000n);
  assert.equal(r.json['x-aiproxy'].cached_tokens, 1500);
  assert.equal(r.json['x-aiproxy'].cache_write_tokens, 300);
  assert.deepEqual(await ledgerRow(r.json['x-aiproxy'].request_id), [2000, 1500, 300, 2200000]);
});

test('a plain answer gets no prompt-cache fields in x-aiproxy', { timeout: 10000 }, async () => {
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('hello there', { model: 'gpt-cache' }) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].cached_tokens, undefined);
  assert.equal(r.json['x-aiproxy'].cache_write_tokens, undefined);
});

test('Anthropic-named counts at the top of an OpenAI-compatible usage are read', { timeout: 10000 }, async () => {
  await oa.control({ queue: [{ usage: { prompt_tokens: 2000, completion_tokens: 100, cache_read_input_tokens: 1500, cache_creation_input_tokens: 0 } }] });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('hi', { model: 'gpt-cache' }) });
  assert.equal(r.status, 200, r.text);
  assert.equal(costNanos(r.text), 2550000n);
  assert.equal(r.json['x-aiproxy'].cached_tokens, 1500);
});

test('an OpenAI-shaped request with cache_control reaches Anthropic as cache_control blocks; usage and cost translated', { timeout: 10000 }, async () => {
  await an.control({ queue: [{ usage: ANTHROPIC_CACHED }] });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: cachedChat('claude-cache') });
  assert.equal(r.status, 200, r.text);
  const up = (await onlyPost(an)).body;
  assert.deepEqual(up.system, [{ type: 'text', text: 'You are a long and stable system prompt.', cache_control: EPHEMERAL }]);
  assert.deepEqual(up.messages[0].content, [{ type: 'text', text: 'a long document', cache_control: EPHEMERAL }, { type: 'text', text: 'question one' }]);
  assert.deepEqual(up.messages[2].content, [{ type: 'text', text: 'question two', cache_control: EPHEMERAL }]);
  assert.deepEqual(up.tools[0].cache_control, EPHEMERAL);
  assert.deepEqual(r.json.usage, {
    prompt_tokens: 2000, completion_tokens: 50, total_tokens: 2050,
    prompt_tokens_details: { cached_tokens: 1500, cache_write_tokens: 400 },
  });
  assert.equal(costNanos(r.text), ANTHROPIC_NANOS);
  assert.equal(r.json['x-aiproxy'].cached_tokens, 1500);
  assert.equal(r.json['x-aiproxy'].cache_write_tokens, 400);
  assert.deepEqual(await ledgerRow(r.json['x-aiproxy'].request_id), [2000, 1500, 400, Number(ANTHROPIC_NANOS)]);
});

test('a system prompt without cache_control stays a string for Anthropic', { timeout: 10000 }, async () => {
  const r = await h.request(gw.url + '/v1/chat/completions', {
    body: { model: 'claude-cache', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }] },
  });
  assert.equal(r.status, 200, r.text);
  const up = (await onlyPost(an)).body;
  assert.equal(up.system, 'Be brief.');
  assert.equal(JSON.stringify(up).includes('cache_control'), false);
});

test('cache_control is stripped towards an OpenAI-compatible upstream', { timeout: 10000 }, async () => {
  const r = await h.request(gw.url + '/v1/chat/completions', { body: cachedChat('gpt-cache') });
  assert.equal(r.status, 200, r.text);
  const up = (await onlyPost(oa)).body;
  assert.equal(JSON.stringify(up).includes('cache_control'), false);
  assert.equal(up.model, 'upstream-gpt');
  assert.deepEqual(up.messages[1].content, [{ type: 'text', text: 'a long document' }, { type: 'text', text: 'question one' }]);
  assert.deepEqual(up.tools[0], { type: 'function', function: { name: 'lookup', description: 'search', parameters: { type: 'object', properties: { q: { type: 'string' } } } } });
  // a stream still asks for usage after the rewrite
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: cachedChat('gpt-cache', { stream: true }) });
  assert.equal(s.status, 200);
  await s.done;
  const ups = await posts(oa);
  assert.deepEqual(ups[1].violations, []);
  assert.deepEqual(ups[1].body.stream_options, { include_usage: true });
});

test('streams: the final usage chunk carries the cached counts and the x-aiproxy cost', { timeout: 10000 }, async () => {
  await oa.control({ queue: [{ usage: OPENAI_CACHED }] });
  let s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody('hi', { model: 'gpt-cache', stream: true }) });
  let { events } = await s.done;
  assert.equal(events.at(-1), '[DONE]');
  let last = JSON.parse(events.at(-2));
  assert.equal(last.usage.prompt_tokens_details.cached_tokens, 1500);
  assert.equal(usdToNanos(String(last['x-aiproxy'].cost)), 2550000n);
  assert.equal(last['x-aiproxy'].cached_tokens, 1500);

  await an.control({ queue: [{ usage: ANTHROPIC_CACHED }] });
  s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: cachedChat('claude-cache', { stream: true, stream_options: { include_usage: true } }) });
  ({ events } = await s.done);
  last = JSON.parse(events.at(-2));
  assert.deepEqual(last.usage.prompt_tokens_details, { cached_tokens: 1500, cache_write_tokens: 400 });
  assert.equal(last.usage.prompt_tokens, 2000);
  assert.equal(/"cost":([0-9.]+)/.exec(events.at(-2)) && costNanos(events.at(-2)), ANTHROPIC_NANOS);
  assert.equal(last['x-aiproxy'].cache_write_tokens, 400);
  assert.deepEqual(await ledgerRow(last['x-aiproxy'].request_id), [2000, 1500, 400, Number(ANTHROPIC_NANOS)]);
});

test('/v1/messages from an OpenAI provider: Anthropic usage fields, whole and streamed (@anthropic-ai/sdk)', { timeout: 10000 }, async () => {
  const usage = { prompt_tokens: 2000, completion_tokens: 100, prompt_tokens_details: { cached_tokens: 1500, cache_write_tokens: 300 } };
  await oa.control({ queue: [{ usage }, { usage }] });
  const m = await client.messages.create({ model: 'gpt-cache', max_tokens: 100, messages: [{ role: 'user', content: 'hello' }] });
  assert.equal(m.usage.input_tokens, 200);
  assert.equal(m.usage.cache_read_input_tokens, 1500);
  assert.equal(m.usage.cache_creation_input_tokens, 300);
  assert.equal(m.usage.output_tokens, 100);
  const final = await client.messages.stream({ model: 'gpt-cache', max_tokens: 100, messages: [{ role: 'user', content: 'hello' }] }).finalMessage();
  assert.equal(final.usage.input_tokens, 200);
  assert.equal(final.usage.cache_read_input_tokens, 1500);
  assert.equal(final.usage.cache_creation_input_tokens, 300);
  for (const p of await posts(oa)) assert.deepEqual(p.violations, []);
});

test('/v1/messages with cache_control blocks to an Anthropic provider: blocks arrive, usage comes back (@anthropic-ai/sdk)', { timeout: 10000 }, async () => {
  await an.control({ queue: [{ usage: ANTHROPIC_CACHED }] });
  const m = await client.messages.create({
    model: 'claude-cache', max_tokens: 100,
    system: [{ type: 'text', text: 'Stable instructions.', cache_control: EPHEMERAL }],
    tools: [{ name: 'lookup', description: 'search', input_schema: { type: 'object', properties: { q: { type: 'string' } } }, cache_control: EPHEMERAL }],
    messages: [{ role: 'user', content: [{ type: 'text', text: 'a long document', cache_control: EPHEMERAL }, { type: 'text', text: 'question' }] }],
  });
  const up = (await onlyPost(an)).body;
  assert.deepEqual(up.system, [{ type: 'text', text: 'Stable instructions.', cache_control: EPHEMERAL }]);
  assert.deepEqual(up.messages[0].content, [{ type: 'text', text: 'a long document', cache_control: EPHEMERAL }, { type: 'text', text: 'question' }]);
  assert.deepEqual(up.tools[0].cache_control, EPHEMERAL);
  assert.equal(m.usage.input_tokens, 100);
  assert.equal(m.usage.cache_read_input_tokens, 1500);
  assert.equal(m.usage.cache_creation_input_tokens, 400);
  assert.equal(m.usage.output_tokens, 50);
  assert.equal(usdToNanos(String(m['x-aiproxy'].cost)), ANTHROPIC_NANOS);

  // the same through an OpenAI provider: stripped, answered
  await oa.reset();
  const o = await client.messages.create({
    model: 'gpt-cache', max_tokens: 100,
    system: [{ type: 'text', text: 'Stable instructions.', cache_control: EPHEMERAL }],
    messages: [{ role: 'user', content: [{ type: 'text', text: 'a long document', cache_control: EPHEMERAL }] }],
  });
  assert.equal(o.type, 'message');
  const oup = (await onlyPost(oa)).body;
  assert.equal(JSON.stringify(oup).includes('cache_control'), false);
});

test('metrics: aiproxy_provider_tokens_cached_total by kind', { timeout: 10000 }, async () => {
  await an.control({ queue: [{ usage: ANTHROPIC_CACHED }] });
  const before = await h.request(gw.url + '/metrics');
  const value = (text, kind) => {
    const m = new RegExp(`^aiproxy_provider_tokens_cached_total\\{provider="an",model="claude-cache",kind="${kind}"\\} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };
  const r = await h.request(gw.url + '/v1/chat/completions', { body: cachedChat('claude-cache') });
  assert.equal(r.status, 200, r.text);
  const ms = await h.request(gw.url + '/metrics');
  assert.equal(ms.status, 200);
  assert.match(ms.text, /# TYPE aiproxy_provider_tokens_cached_total counter/);
  assert.equal(value(ms.text, 'read') - value(before.text, 'read'), 1500);
  assert.equal(value(ms.text, 'write') - value(before.text, 'write'), 400);
});

test('/v1/models shows the prompt-cache prices, the input price when absent', { timeout: 10000 }, async () => {
  const r = await h.request(gw.url + '/v1/models/gpt-plain');
  assert.equal(r.status, 200, r.text);
  const p = r.json.providers.find((x) => x.name === 'oa');
  assert.equal(p.cost_per_1k_cached_input_tokens, p.cost_per_1k_input_tokens);
  const c = (await h.request(gw.url + '/v1/models/claude-cache')).json.providers[0];
  assert.equal(c.cost_per_1k_cached_input_tokens, 0.0003);
  assert.equal(c.cost_per_1k_cache_write_tokens, 0.00375);
});
