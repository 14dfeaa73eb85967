// The standard's native POST /aiproxy/predict (aiproxy-standard-v1 section
// 5.2): `input` or `messages`, `routing` options, and the `metadata` object.
// p1/p2 are fake-upstream.mjs (OpenAI), cf is fake-cloudflare.mjs, an is
// fake-anthropic.mjs.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let f1;
let f2;
let cf;
let an;
let gw;

before(async () => {
  f1 = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  f2 = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
  cf = await h.startProviderFake('fake-cloudflare.mjs', { name: 'cf', args: ['--account-id', 'acc', '--api-token', 'tok'] });
  an = await h.startProviderFake('fake-anthropic.mjs', { name: 'an', args: ['--api-key', 'ak'] });
  const cfg = h.twoProviderConfig(f1, f2);
  cfg.providers.cf = {
    type: 'cloudflare', endpoint: `${cf.url}/client/v4`, timeout: '3s', credentials: { account_id: 'acc', api_token: 'tok' },
    models: [{ name: 'cf-llama', cloudflare_model: '@cf/meta/llama-3.1-8b-instruct', cost_per_1k_tokens: 1 }],
  };
  cfg.providers.an = {
    type: 'anthropic', endpoint: `${an.url}/v1`, timeout: '3s', credentials: { api_key: 'ak' }, max_tokens_default: 64,
    models: [{ name: 'claude-test', anthropic_model: 'claude-fake-1', cost_per_1k_input_tokens: 3, cost_per_1k_output_tokens: 15 }],
  };
  gw = await h.startGateway(cfg);
});
after(() => h.killAll());
beforeEach(async () => { for (const f of [f1, f2, cf, an]) await f.reset(); });

const predict = (body, o = {}) => h.request(gw.url + '/aiproxy/predict', { body, timeoutMs: 8000, ...o });
const near = (a, b) => Math.abs(a - b) < 1e-12;

function checkMetadataShape(md) {
  assert.deepEqual(Object.keys(md).sort(), ['cost', 'latency_ms', 'node_id', 'provider', 'routing', 'tokens']);
  assert.ok(Number.isInteger(md.latency_ms) && md.latency_ms >= 0, `latency_ms ${md.latency_ms}`);
  for (const k of ['input', 'output', 'total']) assert.ok(Number.isInteger(md.tokens[k]), `tokens.${k}`);
  assert.equal(md.tokens.total, md.tokens.input + md.tokens.output);
  assert.equal(typeof md.cost.amount, 'number');
  assert.equal(md.cost.currency, 'USD');
  for (const k of ['strategy_used', 'providers_tried', 'failovers', 'reason']) assert.ok(k in md.routing, `routing.${k} present`);
  assert.ok(Array.isArray(md.routing.providers_tried));
  assert.ok(Number.isInteger(md.routing.failovers));
}

test('input string: output, finish_reason and the metadata object', { timeout: 10000 }, async () => {
  const r = await predict({ model: 'gpt-test', input: 'hello predict' });
  assert.equal(r.status, 200, r.text);
  const j = r.json;
  assert.match(j.request_id, /^req_/);
  assert.equal(j.request_id, r.headers['x-aiproxy-request-id']);
  assert.equal(j.output, 'echo: hello predict');
  assert.equal(j.finish_reason, 'stop');
  const md = j.metadata;
  checkMetadataShape(md);
  assert.equal(md.provider, 'p1');
  assert.equal(md.node_id, 'test-node');
  assert.deepEqual({ ...md.tokens, estimated: undefined }, { input: 13, output: 3, total: 16, estimated: undefined });
  assert.equal(md.tokens.estimated, false);
  assert.ok(near(md.cost.amount, (13 * 0.001 + 3 * 0.002) / 1000), `cost ${md.cost.amount}`);
  assert.deepEqual(md.routing.providers_tried, ['p1']);
  assert.equal(md.routing.failovers, 0);
  const [up] = await f1.requests();
  assert.deepEqual(up.violations, []);
  assert.deepEqual(up.body, { model: 'upstream-gpt', messages: [{ role: 'user', content: 'hello predict' }] });
  assert.equal((await f2.requests()).length, 0);
});

test('the answer\'s model is the requested model name (standard 5.2)', { timeout: 10000 }, async () => {
  const r = await predict({ model: 'gpt-test', input: 'which model' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.model, 'gpt-test', `standard 5.2 echoes the requested model; got ${r.json.model}`);
});

test('messages and generation options are passed to the provider', { timeout: 10000 }, async () => {
  const r = await predict({
    model: 'gpt-test',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'two words' }],
    max_tokens: 12, temperature: 0.4, top_p: 0.9, stop: ['END'], seed: 3, user: 'u-1',
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.output, 'echo: two words');
  assert.deepEqual(r.json.metadata.tokens.input, 18);
  const [up] = await f1.requests();
  assert.deepEqual(up.violations, []);
  assert.deepEqual(up.body, {
    model: 'upstream-gpt',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'two words' }],
    max_tokens: 12, temperature: 0.4, top_p: 0.9, stop: ['END'], seed: 3, user: 'u-1',
  });
});

test('failover is visible in metadata.routing', { timeout: 10000 }, async () => {
  await f1.control({ queue: [{ status: 503 }] });
  const r = await predict({ model: 'gpt-test', input: 'fail over' });
  assert.equal(r.status, 200, r.text);
  const md = r.json.metadata;
  checkMetadataShape(md);
  assert.equal(md.provider, 'p2');
  assert.deepEqual(md.routing.providers_tried, ['p1', 'p2']);
  assert.equal(md.routing.failovers, 1);
  assert.equal(r.json.output, 'echo: fail over');
});

test('metadata.routing.reason explains a failover', { timeout: 10000 }, async () => {
  await f1.control({ queue: [{ status: 503 }] });
  // cost_optimized: equal prices, so priority order (p1 first) whatever the
  // providers' recent health, which the configured availability strategy weighs.
  const r = await predict({ model: 'gpt-test', input: 'fail over', routing: { strategy: 'cost_optimized' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.metadata.routing.providers_tried, ['p1', 'p2']);
  assert.equal(typeof r.json.metadata.routing.reason, 'string', JSON.stringify(r.json.metadata.routing));
  assert.match(r.json.metadata.routing.reason, /p1: HTTP 503/);
  assert.match(r.json.metadata.routing.reason, /then p2/);
});

test('routing {strategy, max_cost, timeout} is accepted', { timeout: 10000 }, async () => {
  const r = await predict({ model: 'gpt-test', input: 'routed', routing: { strategy: 'cost_optimized', max_cost: 0.01, timeout: 30000 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.output, 'echo: routed');
});

test('an unknown routing.strategy -> 400 naming routing.strategy', { timeout: 10000 }, async () => {
  const r = await predict({ model: 'gpt-test', input: 'x', routing: { strategy: 'cheapest-please' } });
  h.assertOpenAIError(r, 400, undefined, 'routing.strategy');
  assert.equal((await f1.requests()).length, 0);
});

test('metadata.routing.strategy_used reports the strategy (configured: availability)', { timeout: 10000 }, async () => {
  const r = await predict({ model: 'gpt-test', input: 'x' });
  assert.equal(r.json.metadata.routing.strategy_used, 'availability');
});

test('routing.strategy from the request is used and reported', { timeout: 10000 }, async () => {
  const r = await predict({ model: 'gpt-test', input: 'x', routing: { strategy: 'round_robin' } });
  assert.equal(r.json.metadata.routing.strategy_used, 'round_robin');
});

test('routing.max_cost below what any provider would cost -> refused, nothing sent', { timeout: 10000 }, async () => {
  const r = await predict({ model: 'claude-test', input: 'x'.repeat(2000), max_tokens: 1000, routing: { max_cost: 0.0000001 } });
  assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${r.text.slice(-300)}`);
  assert.equal((await an.requests()).length, 0);
});

test('through a Cloudflare provider that reports no usage: tokens.estimated true', { timeout: 10000 }, async () => {
  await cf.control({ queue: [{ noUsage: true }] });
  const r = await predict({ model: 'cf-llama', input: 'estimate this' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.output, 'echo: estimate this');
  const md = r.json.metadata;
  checkMetadataShape(md);
  assert.equal(md.provider, 'cf');
  assert.equal(md.tokens.estimated, true);
  assert.ok(md.tokens.total > 0);
  assert.ok(near(md.cost.amount, md.tokens.total * 1 / 1000), `cost ${md.cost.amount} for ${md.tokens.total} tokens`);
  const [up] = await cf.requests();
  assert.deepEqual(up.violations, []);
  assert.deepEqual(up.body, { messages: [{ role: 'user', content: 'estimate this' }] });
});

test('through an Anthropic provider: max_tokens default filled, tokens from Anthropic usage', { timeout: 10000 }, async () => {
  const r = await predict({ model: 'claude-test', input: 'hello claude' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.output, 'echo: hello claude');
  assert.equal(r.json.finish_reason, 'stop');
  const md = r.json.metadata;
  assert.equal(md.provider, 'an');
  assert.deepEqual([md.tokens.input, md.tokens.output, md.tokens.total], [12, 3, 15]);
  assert.ok(near(md.cost.amount, (12 * 3 + 3 * 15) / 1000), `cost ${md.cost.amount}`);
  const [up] = await an.requests();
  assert.deepEqual(up.violations, []);
  assert.deepEqual(up.body, { model: 'claude-fake-1', max_tokens: 64, messages: [{ role: 'user', content: [{ type: 'text', text: 'hello claude' }] }] });
});

test('bad requests: no input, stream:true, unknown model', { timeout: 10000 }, async () => {
  let r = await predict({ model: 'gpt-test' });
  h.assertOpenAIError(r, 400, undefined, 'input');
  r = await predict({ model: 'gpt-test', input: 'x', stream: true });
  h.assertOpenAIError(r, 400, undefined, 'stream');
  r = await predict({ model: 'no-such-model', input: 'x' });
  h.assertOpenAIError(r, 404);
  assert.equal((await f1.requests()).length + (await f2.requests()).length, 0);
});

test('every provider failing -> 502 OpenAI-shaped error naming them', { timeout: 10000 }, async () => {
  await f1.control({ default: { status: 500 } });
  await f2.control({ default: { status: 500 } });
  const r = await predict({ model: 'gpt-test', input: 'doomed' });
  const e = h.assertOpenAIError(r, 502, 'upstream_error');
  assert.match(e.message, /p1/);
  assert.match(e.message, /p2/);
});
