// The Anthropic-compatible inbound endpoint POST /v1/messages, driven by the
// official @anthropic-ai/sdk client, for a model served by an OpenAI-type
// provider (fake-ollama.mjs's OpenAI layer, which answers tool calls) and
// one served by an anthropic provider (fake-anthropic.mjs).
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import * as h from './harness.mjs';

let ol;
let an;
let gw;
let authGw;
let client;

const providers = () => ({
  oai: {
    type: 'openai', endpoint: `${ol.url}/v1`, timeout: '3s', credentials: { api_key: 'sk-oai' },
    models: [{ name: 'gpt-test', openai_model: 'llama3.2:latest', capabilities: ['text-generation', 'function-calling', 'vision'], cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }],
  },
  anth: {
    type: 'anthropic', endpoint: `${an.url}/v1`, timeout: '3s', credentials: { api_key: 'ak-in' },
    models: [{ name: 'claude-test', anthropic_model: 'claude-fake-1', capabilities: ['text-generation', 'function-calling', 'vision'], cost_per_1k_tokens: 0.001 }],
  },
});

before(async () => {
  ol = await h.startProviderFake('fake-ollama.mjs', { name: 'ol', args: ['--models', 'llama3.2:latest'] });
  an = await h.startProviderFake('fake-anthropic.mjs', { name: 'an', args: ['--api-key', 'ak-in'] });
  gw = await h.startGateway({ node: { id: 'test-node' }, server: { workers: 2 }, providers: providers() });
  authGw = await h.startGateway({
    node: { id: 'test-node' }, server: { workers: 1 }, providers: providers(),
    security: { auth: { enabled: true, api_keys: [{ key: 'client-key-1', name: 'c1' }] } },
  });
  client = new Anthropic({ baseURL: gw.url, apiKey: 'any-key', maxRetries: 0, timeout: 8000 });
});
after(() => h.killAll());
beforeEach(async () => { await ol.reset(); await an.reset(); });

const upstreamPosts = async (fake) => (await fake.requests()).filter((e) => e.method === 'POST');
async function onlyPost(fake) {
  const ps = await upstreamPosts(fake);
  assert.equal(ps.length, 1, JSON.stringify(ps.map((p) => p.body)));
  assert.deepEqual(ps[0].violations, []);
  return ps[0];
}
const tools = [{ name: 'lookup', description: 'search', input_schema: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] } }];

test('messages.create -> an OpenAI-type provider; Messages-shaped answer', { timeout: 10000 }, async () => {
  const m = await client.messages.create({
    model: 'gpt-test', max_tokens: 100, system: 'Be brief.', temperature: 0.5, stop_sequences: ['END'],
    metadata: { user_id: 'u-7' },
    messages: [{ role: 'user', content: 'hello inbound' }],
  });
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.match(m.id, /^msg_/);
  assert.deepEqual(m.content, [{ type: 'text', text: 'echo: hello inbound' }]);
  assert.equal(m.stop_reason, 'end_turn');
  assert.equal(m.stop_sequence, null);
  // prompt = 'Be brief.' (9) + 'hello inbound' (13) characters; 3 pieces.
  assert.equal(m.usage.input_tokens, 22);
  assert.equal(m.usage.output_tokens, 3);
  assert.equal(m['x-aiproxy'].provider, 'oai');
  const up = await onlyPost(ol);
  assert.equal(up.path, '/v1/chat/completions');
  assert.equal(up.headers.authorization, 'Bearer sk-oai');
  assert.deepEqual(up.body, {
    model: 'llama3.2:latest', max_tokens: 100, temperature: 0.5, stop: ['END'], user: 'u-7',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello inbound' }],
  });
});

const EXPECTED_EVENTS = ['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_delta',
  'content_block_stop', 'message_delta', 'message_stop'];

test('messages.stream with for await: the Messages event sequence and the final text', { timeout: 10000 }, async () => {
  const stream = client.messages.stream({ model: 'gpt-test', max_tokens: 50, messages: [{ role: 'user', content: 'hello stream' }] });
  const types = [];
  let text = '';
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
  }
  assert.deepEqual(types.filter((t) => t !== 'ping'), EXPECTED_EVENTS);
  assert.equal(text, 'echo: hello stream');
  const fin = await stream.finalMessage();
  assert.deepEqual(fin.content, [{ type: 'text', text: 'echo: hello stream' }]);
  assert.equal(fin.stop_reason, 'end_turn');
  assert.equal(fin.usage.output_tokens, 3);
  assert.equal(fin.usage.input_tokens, 12);
  const up = await onlyPost(ol);
  assert.deepEqual(up.body, { model: 'llama3.2:latest', max_tokens: 50, messages: [{ role: 'user', content: 'hello stream' }], stream: true, stream_options: { include_usage: true } });
});

test('messages.create({stream: true}): consistent indexes, cumulative usage in message_delta', { timeout: 10000 }, async () => {
  const s = await client.messages.create({ model: 'gpt-test', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'one two' }] });
  const evs = [];
  for await (const ev of s) evs.push(ev);
  assert.deepEqual(evs.map((e) => e.type).filter((t) => t !== 'ping'), ['message_start', 'content_block_start', 'content_block_delta',
    'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  const start = evs.find((e) => e.type === 'message_start').message;
  assert.equal(start.role, 'assistant');
  assert.deepEqual(start.content, []);
  assert.equal(start.stop_reason, null);
  for (const e of evs.filter((x) => x.type.startsWith('content_block'))) assert.equal(e.index, 0);
  assert.deepEqual(evs.find((e) => e.type === 'content_block_start').content_block, { type: 'text', text: '' });
  const md = evs.find((e) => e.type === 'message_delta');
  assert.equal(md.delta.stop_reason, 'end_turn');
  assert.equal(md.usage.output_tokens, 3);
  assert.equal(md.usage.input_tokens, 7);
});

test('tool use round trip: tool_use out, tool_result back (OpenAI-type provider)', { timeout: 10000 }, async () => {
  const m1 = await client.messages.create({
    model: 'gpt-test', max_tokens: 100, tools, tool_choice: { type: 'any' },
    messages: [{ role: 'user', content: 'please use tool now' }],
  });
  assert.equal(m1.stop_reason, 'tool_use');
  const tu = m1.content.find((b) => b.type === 'tool_use');
  assert.deepEqual(tu, { type: 'tool_use', id: 'call_fake_1', name: 'lookup', input: { q: 'please use tool now' } });
  let up = await onlyPost(ol);
  assert.deepEqual(up.body.tools, [{ type: 'function', function: { name: 'lookup', description: 'search', parameters: tools[0].input_schema } }]);
  assert.equal(up.body.tool_choice, 'required');

  await ol.reset();
  const m2 = await client.messages.create({
    model: 'gpt-test', max_tokens: 100, tools,
    messages: [
      { role: 'user', content: 'please use tool now' },
      { role: 'assistant', content: m1.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: tu.id, content: 'a tabby cat' }] },
    ],
  });
  assert.deepEqual(m2.content, [{ type: 'text', text: 'tool said: a tabby cat' }]);
  assert.equal(m2.stop_reason, 'end_turn');
  up = await onlyPost(ol);
  const msgs = up.body.messages;
  assert.equal(msgs.length, 3, JSON.stringify(msgs));
  assert.equal(msgs[1].role, 'assistant');
  assert.deepEqual(msgs[1].tool_calls, [{ id: 'call_fake_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"please use tool now"}' } }]);
  assert.deepEqual({ role: msgs[2].role, tool_call_id: msgs[2].tool_call_id, content: msgs[2].content }, { role: 'tool', tool_call_id: 'call_fake_1', content: 'a tabby cat' });
});

test('tool use streamed: input_json_delta pieces assemble into the input', { timeout: 10000 }, async () => {
  const stream = client.messages.stream({ model: 'gpt-test', max_tokens: 100, tools, messages: [{ role: 'user', content: 'use tool please' }] });
  const types = [];
  for await (const ev of stream) types.push(ev.type === 'content_block_delta' ? `delta:${ev.delta.type}` : ev.type);
  const fin = await stream.finalMessage();
  assert.equal(fin.stop_reason, 'tool_use');
  const tu = fin.content.find((b) => b.type === 'tool_use');
  assert.ok(tu, JSON.stringify(fin.content));
  assert.equal(tu.name, 'lookup');
  assert.deepEqual(tu.input, { q: 'use tool please' });
  assert.ok(types.includes('delta:input_json_delta'), types.join(','));
});

test('an image block (base64) becomes an image_url data URL upstream', { timeout: 10000 }, async () => {
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
  const m = await client.messages.create({
    model: 'gpt-test', max_tokens: 20,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } }] }],
  });
  assert.equal(m.content[0].text, 'echo: what is this');
  const up = await onlyPost(ol);
  assert.deepEqual(up.body.messages[0].content, [
    { type: 'text', text: 'what is this' },
    { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
  ]);
});

test('Anthropic in, anthropic provider behind: both translations, same answer', { timeout: 10000 }, async () => {
  const m = await client.messages.create({ model: 'claude-test', max_tokens: 30, system: 'sys', messages: [{ role: 'user', content: 'round trip' }] });
  assert.deepEqual(m.content, [{ type: 'text', text: 'echo: round trip' }]);
  assert.equal(m.stop_reason, 'end_turn');
  assert.equal(m.usage.input_tokens, 13);
  assert.equal(m.usage.output_tokens, 3);
  const up = await onlyPost(an);
  assert.deepEqual(up.body, { model: 'claude-fake-1', max_tokens: 30, system: 'sys', messages: [{ role: 'user', content: [{ type: 'text', text: 'round trip' }] }] });
});

test('unknown model -> NotFoundError with Anthropic\'s error shape', { timeout: 10000 }, async () => {
  await assert.rejects(
    client.messages.create({ model: 'no-such-model', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }),
    (e) => {
      assert.ok(e instanceof Anthropic.NotFoundError, `${e.constructor.name}: ${e.message}`);
      assert.equal(e.status, 404);
      assert.equal(e.error.type, 'error');
      assert.equal(e.error.error.type, 'not_found_error');
      assert.match(e.error.error.message, /no-such-model/);
      return true;
    },
  );
  assert.equal((await upstreamPosts(ol)).length, 0);
});

for (const [name, body, re] of [
  ['missing max_tokens', { model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] }, /max_tokens/],
  ['temperature above 1', { model: 'gpt-test', max_tokens: 10, temperature: 1.5, messages: [{ role: 'user', content: 'x' }] }, /temperature/],
  ['a system role inside messages', { model: 'gpt-test', max_tokens: 10, messages: [{ role: 'system', content: 'x' }] }, /role|system/],
]) {
  test(`bad request (${name}) -> BadRequestError invalid_request_error`, { timeout: 10000 }, async () => {
    await assert.rejects(client.messages.create(body), (e) => {
      assert.ok(e instanceof Anthropic.BadRequestError, `${e.constructor.name}: ${e.message}`);
      assert.equal(e.status, 400);
      assert.equal(e.error.type, 'error');
      assert.equal(e.error.error.type, 'invalid_request_error');
      assert.match(e.error.error.message, re);
      return true;
    });
    assert.equal((await upstreamPosts(ol)).length, 0, 'nothing sent upstream');
  });
}

test('every provider failing -> an Anthropic-shaped 5xx error (api_error) the SDK raises', { timeout: 10000 }, async () => {
  // The only provider fails every attempt (the gateway retries it max_retries times).
  await ol.control({ queue: [{ status: 500 }, { status: 500 }, { status: 500 }] });
  await assert.rejects(client.messages.create({ model: 'gpt-test', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }), (e) => {
    assert.ok(e instanceof Anthropic.InternalServerError, `${e.constructor.name}: ${e.message}`);
    assert.ok(e.status >= 500, String(e.status));
    assert.equal(e.error.type, 'error');
    assert.ok(['api_error', 'overloaded_error'].includes(e.error.error.type), JSON.stringify(e.error));
    return true;
  });
});

test('a stream broken upstream ends with an Anthropic error event; the SDK raises', { timeout: 10000 }, async () => {
  await ol.control({ queue: [{ resetAfterChunks: 1 }] });
  const stream = client.messages.stream({ model: 'gpt-test', max_tokens: 50, messages: [{ role: 'user', content: 'one two three' }] });
  const types = [];
  await assert.rejects(async () => { for await (const ev of stream) types.push(ev.type); }, (e) => {
    assert.ok(e instanceof Anthropic.APIError, `${e.constructor.name}: ${e.message}`);
    assert.match(String(e.message), /api_error|error/i);
    return true;
  });
  assert.equal(types[0], 'message_start');
  assert.ok(!types.includes('message_stop'), types.join(','));
});

test('auth: x-api-key and bearer both accepted on /v1/messages; a wrong key -> AuthenticationError', { timeout: 10000 }, async () => {
  const viaXKey = new Anthropic({ baseURL: authGw.url, apiKey: 'client-key-1', maxRetries: 0, timeout: 8000 });
  const m = await viaXKey.messages.create({ model: 'gpt-test', max_tokens: 10, messages: [{ role: 'user', content: 'authed' }] });
  assert.equal(m.content[0].text, 'echo: authed');
  const viaBearer = new Anthropic({ baseURL: authGw.url, authToken: 'client-key-1', apiKey: null, maxRetries: 0, timeout: 8000 });
  const m2 = await viaBearer.messages.create({ model: 'gpt-test', max_tokens: 10, messages: [{ role: 'user', content: 'bearer' }] });
  assert.equal(m2.content[0].text, 'echo: bearer');
  const wrong = new Anthropic({ baseURL: authGw.url, apiKey: 'wrong-key', maxRetries: 0, timeout: 8000 });
  await assert.rejects(wrong.messages.create({ model: 'gpt-test', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }), (e) => {
    assert.ok(e instanceof Anthropic.AuthenticationError, `${e.constructor.name}: ${e.message}`);
    assert.equal(e.error.error.type, 'authentication_error');
    return true;
  });
});
