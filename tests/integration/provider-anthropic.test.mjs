// The `anthropic` provider type through the OpenAI API: the gateway's
// translation OpenAI chat <-> Messages API, checked against fake-anthropic.mjs
// (which rejects anything the real API would reject and records every body).
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from './harness.mjs';

let a1;
let a2;
let gw;

const anthropicProvider = (fake, key, priority) => ({
  type: 'anthropic',
  endpoint: `${fake.url}/v1`,
  priority,
  timeout: '3s',
  max_tokens_default: 77,
  credentials: { api_key: key },
  models: [{ name: 'claude-test', anthropic_model: 'claude-fake-1', capabilities: ['text-generation', 'vision', 'function-calling'], cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }],
});

before(async () => {
  a1 = await h.startProviderFake('fake-anthropic.mjs', { name: 'a1', args: ['--api-key', 'ak-one'] });
  a2 = await h.startProviderFake('fake-anthropic.mjs', { name: 'a2', args: ['--api-key', 'ak-two'] });
  gw = await h.startGateway({
    node: { id: 'test-node' },
    server: { workers: 2 },
    // Each test injects failures on purpose: route by price, then priority
    // (equal prices), without cross-request health, which would rightly
    // route around the provider that keeps failing.
    routing: { strategy: 'cost_optimized', load_balancing: { health_aware: false } },
    providers: { a1: anthropicProvider(a1, 'ak-one', 1), a2: anthropicProvider(a2, 'ak-two', 2) },
    observability: { logging: { level: 'info', format: 'json' } },
  });
});
after(() => h.killAll());
beforeEach(async () => { await a1.reset(); await a2.reset(); });

const chat = (body, o = {}) => h.request(gw.url + '/v1/chat/completions', { body: { model: 'claude-test', ...body }, timeoutMs: 8000, ...o });
async function stream(body) {
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: { model: 'claude-test', stream: true, ...body }, timeoutMs: 8000 });
  const d = await s.done;
  return { status: s.status, headers: s.headers, text: d.text, events: d.events };
}
const user = (t) => ({ messages: [{ role: 'user', content: t }] });
async function onlyRequest(fake) {
  const rs = await fake.requests();
  assert.equal(rs.length, 1, `exactly one request to ${fake.name}: ${JSON.stringify(rs.map((r) => r.body))}`);
  assert.deepEqual(rs[0].violations, [], `${fake.name} saw a wire-format violation`);
  return rs[0];
}
const contentOf = (chunks) => chunks.map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');

test('non-streaming: system lifted, roles merged, max_tokens default, stop/temperature/user mapped; exact body', { timeout: 10000 }, async () => {
  const r = await chat({
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hello' },
      { role: 'user', content: [{ type: 'text', text: 'there' }] },
      { role: 'assistant', content: 'hi!' },
      { role: 'developer', content: 'Dev rule.' },
      { role: 'user', content: 'again' },
    ],
    stop: 'zzz',
    temperature: 1.5,
    top_p: 0.5,
    user: 'u-42',
  });
  assert.equal(r.status, 200, r.text);
  h.assertAiproxyHeaders(r, 'a1');
  const up = await onlyRequest(a1);
  assert.equal(up.path, '/v1/messages');
  assert.equal(up.method, 'POST');
  assert.equal(up.headers['x-api-key'], 'ak-one');
  assert.equal(up.headers['anthropic-version'], '2023-06-01');
  assert.equal(up.headers.authorization, undefined, 'no bearer token to Anthropic');
  assert.deepEqual(up.body, {
    model: 'claude-fake-1',
    max_tokens: 77,
    system: 'Be brief.\n\nDev rule.',
    messages: [
      { role: 'user', content: [{ type: 'text', text: 'hello' }, { type: 'text', text: 'there' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'hi!' }] },
      { role: 'user', content: [{ type: 'text', text: 'again' }] },
    ],
    stop_sequences: ['zzz'],
    temperature: 1,
    top_p: 0.5,
    metadata: { user_id: 'u-42' },
  });
  const j = r.json;
  assert.equal(j.object, 'chat.completion');
  assert.equal(j.id, 'msg_fake_a1_1');
  assert.deepEqual(j.choices, [{ index: 0, message: { role: 'assistant', content: 'echo: again' }, logprobs: null, finish_reason: 'stop' }]);
  // input = chars of 'Be brief.\n\nDev rule.' (20) + hello there hi! again (5+5+3+5) = 38; output = 2 pieces.
  assert.equal(j.usage.prompt_tokens, 38);
  assert.equal(j.usage.completion_tokens, 2);
  assert.equal(j.usage.total_tokens, 40);
  const xa = j['x-aiproxy'];
  assert.equal(xa.provider, 'a1');
  assert.deepEqual(xa.providers_tried, ['a1']);
  assert.equal(xa.failovers, 0);
  assert.equal(xa.usage_estimated, false);
  assert.ok(Math.abs(xa.cost - (38 * 0.003 + 2 * 0.015) / 1000) < 1e-9, `cost ${xa.cost}`);
});

test('max_completion_tokens wins over max_tokens; truncation -> finish_reason length', { timeout: 10000 }, async () => {
  const r = await chat({ ...user('one two three four five'), max_tokens: 50, max_completion_tokens: 3 });
  assert.equal(r.status, 200, r.text);
  const up = await onlyRequest(a1);
  assert.equal(up.body.max_tokens, 3);
  assert.equal(r.json.choices[0].message.content, 'echo: one two ');
  assert.equal(r.json.choices[0].finish_reason, 'length');
  assert.equal(r.json.usage.completion_tokens, 3);
});

test('stop sequence hit -> stop_sequences sent, finish_reason stop', { timeout: 10000 }, async () => {
  const r = await chat({ ...user('alpha beta END gamma'), stop: ['END', 'XYZ'] });
  assert.equal(r.status, 200, r.text);
  const up = await onlyRequest(a1);
  assert.deepEqual(up.body.stop_sequences, ['END', 'XYZ']);
  assert.equal(r.json.choices[0].message.content, 'echo: alpha beta ');
  assert.equal(r.json.choices[0].finish_reason, 'stop');
});

test('streaming: OpenAI chunks in order, usage chunk with x-aiproxy, [DONE]', { timeout: 10000 }, async () => {
  const s = await stream(user('hello stream now'));
  assert.equal(s.status, 200, s.text);
  assert.match(s.headers['content-type'], /^text\/event-stream/);
  assert.equal(s.headers['x-aiproxy-provider'], 'a1');
  const up = await onlyRequest(a1);
  assert.deepEqual(up.body, { model: 'claude-fake-1', max_tokens: 77, messages: [{ role: 'user', content: [{ type: 'text', text: 'hello stream now' }] }], stream: true });
  assert.deepEqual(up.events, ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_delta',
    'content_block_delta', 'content_block_stop', 'ping', 'message_delta', 'message_stop']);
  const ev = s.events;
  assert.equal(ev[ev.length - 1], '[DONE]');
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === 'msg_fake_a1_1'), s.text);
  assert.deepEqual(chunks[0].choices, [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
  assert.deepEqual(chunks.slice(1, 5).map((c) => c.choices[0].delta.content), ['echo: ', 'hello ', 'stream ', 'now']);
  assert.equal(contentOf(chunks), 'echo: hello stream now');
  const fin = chunks[chunks.length - 2];
  assert.deepEqual(fin.choices, [{ index: 0, delta: {}, finish_reason: 'stop' }]);
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.prompt_tokens, 16);
  assert.equal(last.usage.completion_tokens, 4);
  assert.equal(last.usage.total_tokens, 20);
  assert.equal(last['x-aiproxy'].provider, 'a1');
  assert.deepEqual(last['x-aiproxy'].providers_tried, ['a1']);
  assert.equal(chunks.length, 7);
});

const lookupTool = { type: 'function', function: { name: 'lookup', description: 'search', parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] } } };

test('tools: definitions and tool_choice translated; tool_use -> tool_calls', { timeout: 10000 }, async () => {
  const r = await chat({ ...user('please use tool now'), tools: [lookupTool], tool_choice: 'required', parallel_tool_calls: false });
  assert.equal(r.status, 200, r.text);
  const up = await onlyRequest(a1);
  assert.deepEqual(up.body.tools, [{ name: 'lookup', description: 'search', input_schema: lookupTool.function.parameters }]);
  assert.deepEqual(up.body.tool_choice, { type: 'any', disable_parallel_tool_use: true });
  const c = r.json.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.content, 'Let me look.');
  assert.deepEqual(c.message.tool_calls, [{ id: 'toolu_fake_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"please use tool now"}' } }]);
});

test('tools: tool_choice {function} -> {type: tool, name}; none -> none', { timeout: 10000 }, async () => {
  const other = { type: 'function', function: { name: 'other', parameters: { type: 'object' } } };
  let r = await chat({ ...user('use tool'), tools: [lookupTool, other], tool_choice: { type: 'function', function: { name: 'other' } } });
  assert.equal(r.status, 200, r.text);
  let up = await onlyRequest(a1);
  assert.deepEqual(up.body.tool_choice, { type: 'tool', name: 'other' });
  assert.equal(r.json.choices[0].message.tool_calls[0].function.name, 'other');
  await a1.reset();
  r = await chat({ ...user('use tool'), tools: [lookupTool], tool_choice: 'none' });
  assert.equal(r.status, 200, r.text);
  up = await onlyRequest(a1);
  assert.deepEqual(up.body.tool_choice, { type: 'none' });
  assert.equal(r.json.choices[0].message.content, 'echo: use tool');
  assert.equal(r.json.choices[0].finish_reason, 'stop');
});

test('tools: assistant tool_calls + tool results -> tool_use / tool_result round trip', { timeout: 10000 }, async () => {
  const r = await chat({
    tools: [lookupTool],
    messages: [
      { role: 'user', content: 'please use tool now' },
      { role: 'assistant', content: 'Let me look.', tool_calls: [
        { id: 'toolu_A', type: 'function', function: { name: 'lookup', arguments: '{"q":"cat"}' } },
        { id: 'toolu_B', type: 'function', function: { name: 'lookup', arguments: '' } },
      ] },
      { role: 'tool', tool_call_id: 'toolu_A', content: 'a tabby cat' },
      { role: 'tool', tool_call_id: 'toolu_B', content: [{ type: 'text', text: 'nothing' }] },
      { role: 'user', content: 'and now?' },
    ],
  });
  assert.equal(r.status, 200, r.text);
  const up = await onlyRequest(a1);
  assert.deepEqual(up.body.messages, [
    { role: 'user', content: [{ type: 'text', text: 'please use tool now' }] },
    { role: 'assistant', content: [
      { type: 'text', text: 'Let me look.' },
      { type: 'tool_use', id: 'toolu_A', name: 'lookup', input: { q: 'cat' } },
      { type: 'tool_use', id: 'toolu_B', name: 'lookup', input: {} },
    ] },
    { role: 'user', content: [
      { type: 'tool_result', tool_use_id: 'toolu_A', content: 'a tabby cat' },
      { type: 'tool_result', tool_use_id: 'toolu_B', content: 'nothing' },
      { type: 'text', text: 'and now?' },
    ] },
  ]);
  assert.equal(r.json.choices[0].message.content, 'tool said: a tabby cat | nothing + and now?');
  assert.equal(r.json.choices[0].finish_reason, 'stop');
});

test('tools streaming: tool_use block -> tool_calls deltas (index 0, id, name, argument pieces)', { timeout: 10000 }, async () => {
  const s = await stream({ ...user('please use tool now'), tools: [lookupTool] });
  assert.equal(s.status, 200, s.text);
  await onlyRequest(a1);
  assert.equal(s.events[s.events.length - 1], '[DONE]');
  const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(contentOf(chunks), 'Let me look.');
  const tc = chunks.filter((c) => c.choices[0] && c.choices[0].delta.tool_calls).map((c) => c.choices[0].delta.tool_calls);
  assert.equal(tc.length, 3, s.text);
  assert.deepEqual(tc[0], [{ index: 0, id: 'toolu_fake_1', type: 'function', function: { name: 'lookup', arguments: '' } }]);
  assert.equal(tc.slice(1).map((x) => { assert.equal(x[0].index, 0); return x[0].function.arguments; }).join(''), '{"q":"please use tool now"}');
  const fin = chunks.find((c) => c.choices[0] && c.choices[0].finish_reason);
  assert.equal(fin.choices[0].finish_reason, 'tool_calls');
});

test('images: data URL -> base64 source, http URL -> url source', { timeout: 10000 }, async () => {
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
  const r = await chat({
    messages: [{ role: 'user', content: [
      { type: 'text', text: 'What is this?' },
      { type: 'image_url', image_url: { url: `data:image/png;base64,${png}`, detail: 'low' } },
      { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
    ] }],
  });
  assert.equal(r.status, 200, r.text);
  const up = await onlyRequest(a1);
  assert.deepEqual(up.body.messages, [{ role: 'user', content: [
    { type: 'text', text: 'What is this?' },
    { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } },
    { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
  ] }]);
  assert.equal(r.json.choices[0].message.content, 'echo: What is this?');
});

test('usage with cache tokens: prompt = input + cache read + cache creation; cached_tokens = cache read', { timeout: 10000 }, async () => {
  await a1.control({ queue: [{ usage: { input_tokens: 10, cache_read_input_tokens: 30, cache_creation_input_tokens: 5, output_tokens: 7 } }] });
  const r = await chat(user('cached'));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.usage.prompt_tokens, 45);
  assert.equal(r.json.usage.completion_tokens, 7);
  assert.equal(r.json.usage.total_tokens, 52);
  assert.equal(r.json.usage.prompt_tokens_details.cached_tokens, 30);
});

for (const [name, behaviour] of [
  ['529 overloaded', { status: 529 }],
  ['429 with retry-after', { status: 429, retryAfter: 20 }],
  ['500 api_error', { status: 500 }],
  ['a 200 {"type":"error"} body', { errorIn200: true }],
  ['a body that is not JSON', { garbage: true }],
]) {
  test(`${name} from a1 -> failover to a2`, { timeout: 10000 }, async () => {
    await a1.control({ queue: [behaviour] });
    const r = await chat(user('fail me over'));
    assert.equal(r.status, 200, r.text);
    h.assertAiproxyHeaders(r, 'a2');
    assert.equal(r.json.id, 'msg_fake_a2_1');
    assert.equal(r.json.choices[0].message.content, 'echo: fail me over');
    assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['a1', 'a2']);
    assert.equal(r.json['x-aiproxy'].failovers, 1);
    assert.equal((await a1.requests()).length, 1);
    const up2 = await onlyRequest(a2);
    assert.equal(up2.headers['x-api-key'], 'ak-two', 'a2 gets its own key');
  });
}

test('400 from Anthropic is passed through OpenAI-shaped, no failover', { timeout: 10000 }, async () => {
  await a1.control({ queue: [{ status: 400, message: 'messages: fake says your request is bad' }] });
  const r = await chat(user('bad'));
  const e = h.assertOpenAIError(r, 400);
  assert.equal(e.message, 'messages: fake says your request is bad');
  assert.equal(e.type, 'invalid_request_error');
  assert.equal((await a1.requests()).length, 1);
  assert.equal((await a2.requests()).length, 0, 'no failover on a client-fault 400');
});

test('stream: first event is an error -> nothing sent yet, so failover to a2', { timeout: 10000 }, async () => {
  await a1.control({ queue: [{ streamFirstEventError: true }] });
  const s = await stream(user('fail me over'));
  assert.equal(s.status, 200, s.text);
  const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(contentOf(chunks), 'echo: fail me over');
  const xa = chunks[chunks.length - 1]['x-aiproxy'];
  assert.equal(xa.provider, 'a2');
  assert.deepEqual(xa.providers_tried, ['a1', 'a2']);
});

test('stream: error event mid-stream -> an OpenAI error event carrying Anthropic\'s message, no [DONE]', { timeout: 10000 }, async () => {
  await a1.control({ queue: [{ streamErrorAfterChunks: 1 }] });
  const s = await stream(user('one two three four'));
  assert.equal(s.status, 200, s.text);
  assert.notEqual(s.events[s.events.length - 1], '[DONE]', s.text);
  const chunks = s.events.map((e) => JSON.parse(e));
  assert.equal(contentOf(chunks.slice(0, -1)), 'echo: ');
  const err = chunks[chunks.length - 1].error;
  assert.ok(err, s.text);
  assert.equal(typeof err.message, 'string');
  assert.match(err.message, /a1/);
  assert.match(err.message, /Overloaded \(fake stream\)/, 'the provider\'s error message reaches the client');
  assert.equal((await a2.requests()).length, 0, 'no failover once content was sent');
});

test('n > 1 cannot be expressed for Anthropic -> a 400-class error naming the reason, nothing sent', { timeout: 10000 }, async () => {
  const r = await chat({ ...user('two please'), n: 2 });
  assert.equal((await a1.requests()).length, 0);
  assert.equal((await a2.requests()).length, 0);
  assert.match(r.json.error.message, /n > 1/);
  assert.ok(r.status >= 400 && r.status < 500, `docs/providers.md: "the client gets a 400-class error naming the reason"; got ${r.status} ${r.text}`);
});

test('official openai SDK: create and stream against the anthropic provider', { timeout: 10000 }, async () => {
  const client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'any', timeout: 8000, maxRetries: 0 });
  const r = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'hi sdk' }] });
  assert.equal(r.choices[0].message.content, 'echo: hi sdk');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.deepEqual({ p: r.usage.prompt_tokens, c: r.usage.completion_tokens, t: r.usage.total_tokens }, { p: 9, c: 3, t: 12 });
  const st = await client.chat.completions.create({ model: 'claude-test', stream: true, messages: [{ role: 'user', content: 'stream via sdk' }] });
  let text = '';
  let finish = null;
  let usage = null;
  for await (const c of st) {
    if (c.choices[0]) { text += c.choices[0].delta.content || ''; finish = c.choices[0].finish_reason || finish; }
    if (c.usage) usage = c.usage;
  }
  assert.equal(text, 'echo: stream via sdk');
  assert.equal(finish, 'stop');
  assert.equal(usage.total_tokens, 14 + 4);
  const rs = await a1.requests();
  assert.equal(rs.length, 2);
  assert.deepEqual(rs.map((x) => x.violations), [[], []]);
  assert.equal(rs[0].body.system, 'sys');
});
