// The Responses API (SPEC section 9) through the official clients: the
// `openai` SDK's responses.create (whole and streamed), previous_response_id,
// retrieve, delete and input_items; function calls both ways; store: false;
// scopes between keys; the Vercel AI SDK in its responses and chat modes.
// The provider is the strict fake OpenAI chat upstream: every answer is
// translated from chat completions.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';
import * as h from './harness.mjs';

let fake;
let gw;
let client;
let other; // a second key: its responses are its own

const KEY_A = 'resp-key-a';
const KEY_B = 'resp-key-b';

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({
    providers: { p1: h.provider(fake) },
    extra: {
      security: { auth: { enabled: true, api_keys: [{ key: KEY_A, name: 'a' }, { key: KEY_B, name: 'b' }] } },
    },
  }));
  client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: KEY_A, timeout: 8000, maxRetries: 0 });
  other = new OpenAI({ baseURL: gw.url + '/v1', apiKey: KEY_B, timeout: 8000, maxRetries: 0 });
});
after(() => h.killAll());
beforeEach(() => fake.reset());

async function upstreamBodies() {
  const reqs = await fake.requests();
  for (const r of reqs) assert.deepEqual(r.violations, [], JSON.stringify(r.violations));
  return reqs.map((r) => r.body);
}

test('responses.create: instructions and input become a chat request; the answer a Response', { timeout: 10000 }, async () => {
  const r = await client.responses.create({
    model: 'gpt-test', instructions: 'Be brief.', input: 'hello responses', max_output_tokens: 50, temperature: 0.5,
  });
  assert.match(r.id, /^resp_[0-9a-f]{20,}$/);
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.equal(r.output_text, 'echo: hello responses');
  assert.equal(r.output.length, 1);
  assert.equal(r.output[0].type, 'message');
  assert.equal(r.output[0].role, 'assistant');
  assert.equal(r.output[0].content[0].type, 'output_text');
  assert.equal(r.usage.input_tokens + r.usage.output_tokens, r.usage.total_tokens);
  assert.ok(r.usage.input_tokens > 0);
  assert.equal(r['x-aiproxy'].provider, 'p1');
  const [body] = await upstreamBodies();
  assert.equal(body.model, 'upstream-gpt');
  assert.deepEqual(body.messages, [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'hello responses' },
  ]);
  assert.equal(body.max_tokens, 50);
  assert.equal(body.temperature, 0.5);
  for (const k of ['input', 'instructions', 'store', 'max_output_tokens']) assert.equal(body[k], undefined, k);
});

test('a streamed response: typed events in order, sequence numbers, response.completed last', { timeout: 10000 }, async () => {
  const stream = await client.responses.create({ model: 'gpt-test', input: 'stream me please', stream: true });
  const events = [];
  for await (const e of stream) events.push(e);
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'response.created');
  assert.equal(types[1], 'response.in_progress');
  assert.equal(types.at(-1), 'response.completed');
  for (const t of ['response.output_item.added', 'response.content_part.added', 'response.output_text.delta',
    'response.output_text.done', 'response.content_part.done', 'response.output_item.done']) {
    assert.ok(types.includes(t), `missing ${t} in ${types}`);
  }
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  assert.equal(text, 'echo: stream me please');
  const done = events.at(-1).response;
  assert.equal(done.status, 'completed');
  assert.equal(done.output[0].content[0].text, text);
  assert.ok(done.usage.total_tokens > 0);
  assert.equal(done['x-aiproxy'].provider, 'p1');
  const [body] = await upstreamBodies();
  assert.equal(body.stream, true);
  assert.deepEqual(body.stream_options, { include_usage: true });
  // the streamed response was stored like a whole one
  const got = await client.responses.retrieve(done.id);
  assert.equal(got.output[0].content[0].text, text);
});

test('responses.stream helper: finalResponse', { timeout: 10000 }, async () => {
  const s = client.responses.stream({ model: 'gpt-test', input: 'helper stream' });
  let deltas = '';
  s.on('response.output_text.delta', (e) => { deltas += e.delta; });
  const final = await s.finalResponse();
  assert.equal(final.output_text, 'echo: helper stream');
  assert.equal(deltas, 'echo: helper stream');
});

test('previous_response_id continues the stored conversation', { timeout: 10000 }, async () => {
  const r1 = await client.responses.create({ model: 'gpt-test', instructions: 'first rules', input: 'my name is Ada' });
  const r2 = await client.responses.create({ model: 'gpt-test', previous_response_id: r1.id, input: 'what is my name?' });
  const r3 = await client.responses.create({ model: 'gpt-test', previous_response_id: r2.id, input: [{ role: 'user', content: [{ type: 'input_text', text: 'third' }] }] });
  assert.equal(r3.output_text, 'echo: third');
  assert.equal(r3.previous_response_id, r2.id);
  const bodies = await upstreamBodies();
  // instructions are not carried over (as OpenAI's)
  assert.deepEqual(bodies[1].messages, [
    { role: 'user', content: 'my name is Ada' },
    { role: 'assistant', content: 'echo: my name is Ada' },
    { role: 'user', content: 'what is my name?' },
  ]);
  assert.equal(bodies[2].messages.length, 5);
  assert.equal(bodies[2].messages[3].content, 'echo: what is my name?');
  assert.deepEqual(bodies[2].messages[4].role, 'user');
});

test('retrieve, input_items and delete', { timeout: 10000 }, async () => {
  const r = await client.responses.create({ model: 'gpt-test', input: [{ role: 'user', content: 'one' }, { role: 'user', content: 'two' }] });
  const got = await client.responses.retrieve(r.id);
  assert.equal(got.id, r.id);
  assert.equal(got.output_text ?? got.output[0].content[0].text, 'echo: two');
  const items = [];
  for await (const it of client.responses.inputItems.list(r.id)) items.push(it);
  assert.equal(items.length, 2);
  assert.equal(items[0].content[0].text, 'two'); // newest first, as OpenAI's default
  await client.responses.delete(r.id);
  await assert.rejects(client.responses.retrieve(r.id), (e) => e.status === 404);
  await assert.rejects(client.responses.delete(r.id), (e) => e.status === 404);
});

test('store: false stores nothing', { timeout: 10000 }, async () => {
  const r = await client.responses.create({ model: 'gpt-test', input: 'forget me', store: false });
  assert.equal(r.output_text, 'echo: forget me');
  await assert.rejects(client.responses.retrieve(r.id), (e) => e.status === 404);
  await assert.rejects(client.responses.create({ model: 'gpt-test', previous_response_id: r.id, input: 'x' }),
    (e) => e.status === 400 && e.param === 'previous_response_id');
  assert.equal((await upstreamBodies()).length, 1);
});

test('another key can neither read nor continue a response', { timeout: 10000 }, async () => {
  const r = await client.responses.create({ model: 'gpt-test', input: 'private' });
  await assert.rejects(other.responses.retrieve(r.id), (e) => e.status === 404);
  await assert.rejects(other.responses.delete(r.id), (e) => e.status === 404);
  await assert.rejects(other.responses.create({ model: 'gpt-test', previous_response_id: r.id, input: 'x' }),
    (e) => e.status === 400);
  assert.equal((await client.responses.retrieve(r.id)).id, r.id);
  const noKey = await h.request(`${gw.url}/v1/responses/${r.id}`);
  assert.equal(noKey.status, 401);
});

test('function calls: tools out, function_call items back, outputs continue the conversation', { timeout: 10000 }, async () => {
  await fake.control({ queue: [{ toolCalls: [{ name: 'get_weather', arguments: '{"city":"Paris"}' }] }] });
  const tools = [{ type: 'function', name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, strict: true }];
  const r1 = await client.responses.create({ model: 'gpt-test', input: 'weather in Paris?', tools, tool_choice: 'auto' });
  assert.equal(r1.output.length, 1);
  const call = r1.output[0];
  assert.equal(call.type, 'function_call');
  assert.equal(call.name, 'get_weather');
  assert.equal(call.arguments, '{"city":"Paris"}');
  assert.equal(call.call_id, 'call_fake_0');
  const r2 = await client.responses.create({
    model: 'gpt-test', previous_response_id: r1.id, tools,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp":21}' }],
  });
  assert.equal(r2.status, 'completed');
  const bodies = await upstreamBodies();
  assert.deepEqual(bodies[0].tools, [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: tools[0].parameters, strict: true } }]);
  assert.equal(bodies[0].tool_choice, 'auto');
  const m = bodies[1].messages;
  assert.equal(m[1].role, 'assistant');
  assert.deepEqual(m[1].tool_calls, [{ id: 'call_fake_0', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);
  assert.deepEqual(m[2], { role: 'tool', tool_call_id: 'call_fake_0', content: '{"temp":21}' });
});

test('streamed function call arguments', { timeout: 10000 }, async () => {
  await fake.control({ queue: [{ toolCalls: [{ name: 'lookup', arguments: '{"q":"aiproxy gateway"}' }] }] });
  const stream = await client.responses.create({
    model: 'gpt-test', input: 'look it up', stream: true,
    tools: [{ type: 'function', name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } }],
  });
  const events = [];
  for await (const e of stream) events.push(e);
  const deltas = events.filter((e) => e.type === 'response.function_call_arguments.delta').map((e) => e.delta).join('');
  assert.equal(deltas, '{"q":"aiproxy gateway"}');
  const done = events.find((e) => e.type === 'response.function_call_arguments.done');
  assert.equal(done.arguments, deltas);
  const final = events.at(-1);
  assert.equal(final.type, 'response.completed');
  assert.equal(final.response.output[0].type, 'function_call');
  assert.equal(final.response.output[0].name, 'lookup');
});

test('a truncated answer is incomplete', { timeout: 10000 }, async () => {
  await fake.control({ queue: [{ finishReason: 'length' }] });
  const r = await client.responses.create({ model: 'gpt-test', input: 'long', max_output_tokens: 16 });
  assert.equal(r.status, 'incomplete');
  assert.equal(r.incomplete_details.reason, 'max_output_tokens');
});

test('text.format json_schema becomes response_format', { timeout: 10000 }, async () => {
  const schema = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'], additionalProperties: false };
  await client.responses.create({ model: 'gpt-test', input: 'json', text: { format: { type: 'json_schema', name: 'thing', schema, strict: true } } });
  const [body] = await upstreamBodies();
  assert.deepEqual(body.response_format, { type: 'json_schema', json_schema: { name: 'thing', schema, strict: true } });
});

test('bad requests: OpenAI-shaped 400s, nothing upstream', { timeout: 10000 }, async () => {
  const post = (body) => h.request(`${gw.url}/v1/responses`, { method: 'POST', headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' }, body });
  h.assertOpenAIError(await post('{not json'), 400, 'invalid_json');
  h.assertOpenAIError(await post(JSON.stringify({ model: 'gpt-test', input: 5 })), 400, 'invalid_request_error');
  const tool = await post(JSON.stringify({ model: 'gpt-test', input: 'x', tools: [{ type: 'web_search' }] }));
  h.assertOpenAIError(tool, 400, 'invalid_request_error');
  assert.match(tool.json.error.param, /tools/);
  h.assertOpenAIError(await post(JSON.stringify({ model: 'gpt-test', input: [{ type: 'mystery' }] })), 400, 'invalid_request_error');
  h.assertOpenAIError(await post(JSON.stringify({ model: 'nope', input: 'x' })), 404, 'model_not_found');
  const r = await post(JSON.stringify({ model: 'gpt-test', input: 'x', previous_response_id: 'resp_doesnotexist' }));
  h.assertOpenAIError(r, 400, 'invalid_request_error', 'previous_response_id');
  assert.equal((await fake.requests()).length, 0);
});

test('the ledger records Responses requests like chat', { timeout: 10000 }, async () => {
  const r = await client.responses.create({ model: 'gpt-test', input: 'count me' });
  const db = path.join(gw.dir, 'data', 'costs.db');
  await h.waitFor(() => {
    const n = execFileSync('sqlite3', ['-cmd', '.timeout 2000', db, "SELECT count(*) FROM responses WHERE id = '" + r.id + "'"], { encoding: 'utf8' }).trim();
    return n === '1';
  }, 3000, 50, 'the stored response');
  // one ledger row, under the caller's key, with the usage and cost the client saw
  const rid = r['x-aiproxy'].request_id;
  let row = '';
  await h.waitFor(() => {
    row = execFileSync('sqlite3', ['-cmd', '.timeout 2000', db, `SELECT key_id, model, provider, tokens_in, tokens_out, status FROM requests WHERE request_id = '${rid}'`], { encoding: 'utf8' }).trim();
    return row !== '';
  }, 3000, 50, 'the ledger row');
  assert.equal(row, `a|gpt-test|p1|${r.usage.input_tokens}|${r.usage.output_tokens}|200`);
});

test('Vercel AI SDK: responses mode and chat mode', { timeout: 15000 }, async () => {
  const provider = createOpenAI({ baseURL: gw.url + '/v1', apiKey: KEY_A });
  const g = await generateText({ model: provider.responses('gpt-test'), prompt: 'vercel responses' });
  assert.equal(g.text, 'echo: vercel responses');
  assert.ok(g.usage.inputTokens > 0);
  const s = streamText({ model: provider.responses('gpt-test'), prompt: 'vercel stream' });
  let text = '';
  for await (const part of s.textStream) text += part;
  assert.equal(text, 'echo: vercel stream');
  const c = await generateText({ model: provider.chat('gpt-test'), prompt: 'vercel chat' });
  assert.equal(c.text, 'echo: vercel chat');
  const cs = streamText({ model: provider.chat('gpt-test'), prompt: 'vercel chat stream' });
  let ct = '';
  for await (const part of cs.textStream) ct += part;
  assert.equal(ct, 'echo: vercel chat stream');
});

test('Vercel AI SDK: a tool loop over the Responses API (item_reference to the stored turn)', { timeout: 15000 }, async () => {
  const { tool, jsonSchema, stepCountIs } = await import('ai');
  await fake.control({ queue: [{ toolCalls: [{ name: 'add', arguments: '{"a":2,"b":3}' }], withText: true }] });
  const provider = createOpenAI({ baseURL: gw.url + '/v1', apiKey: KEY_A });
  const calls = [];
  const r = await generateText({
    model: provider.responses('gpt-test'),
    prompt: 'add two and three',
    tools: {
      add: tool({
        description: 'Adds',
        inputSchema: jsonSchema({ type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] }),
        execute: async ({ a, b }) => { calls.push([a, b]); return { sum: a + b }; },
      }),
    },
    stopWhen: stepCountIs(3),
  });
  assert.deepEqual(calls, [[2, 3]]);
  assert.equal(r.steps.length, 2);
  const bodies = await upstreamBodies();
  assert.equal(bodies.length, 2);
  const m = bodies[1].messages;
  // the second step resends (or refers to) the first step's text and call, then the tool's output
  const assistant = m.find((x) => x.role === 'assistant' && x.tool_calls);
  assert.ok(assistant, JSON.stringify(m));
  assert.equal(assistant.tool_calls[0].function.name, 'add');
  const toolMsg = m.find((x) => x.role === 'tool');
  assert.deepEqual(JSON.parse(toolMsg.content), { sum: 5 });
  assert.ok(m.some((x) => x.role === 'assistant' && typeof x.content === 'string' && x.content.startsWith('echo: ')), JSON.stringify(m));
});

test('Codex-shaped turns: whole history each time, store false, every event typed and numbered', { timeout: 10000 }, async () => {
  await fake.control({ queue: [{ toolCalls: [{ name: 'shell', arguments: '{"command":["ls"]}' }] }] });
  const tools = [{ type: 'function', name: 'shell', description: 'Runs a command', strict: false, parameters: { type: 'object', properties: { command: { type: 'array', items: { type: 'string' } } }, required: ['command'] } }];
  const base = {
    model: 'gpt-test', instructions: 'You are a coding agent.', tools, tool_choice: 'auto', parallel_tool_calls: false,
    store: false, stream: true, include: ['reasoning.encrypted_content'], prompt_cache_key: 'session-1',
    reasoning: { effort: 'medium', summary: 'auto' },
  };
  const turn1 = [
    { type: 'message', role: 'developer', content: [{ type: 'input_text', text: '<permissions>workspace-write</permissions>' }] },
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'list the files' }] },
  ];
  const run = async (input) => {
    const s = await h.streamRequest(`${gw.url}/v1/responses`, { headers: { authorization: `Bearer ${KEY_A}` }, body: { ...base, input } });
    assert.equal(s.status, 200);
    const r = await s.done;
    assert.ok(!r.text.includes('[DONE]'));
    const events = r.events.map((e) => JSON.parse(e));
    events.forEach((e, i) => { assert.equal(typeof e.type, 'string'); assert.equal(e.sequence_number, i); });
    assert.equal(events.at(-1).type, 'response.completed');
    return events.at(-1).response;
  };
  const first = await run(turn1);
  const call = first.output.find((o) => o.type === 'function_call');
  assert.equal(call.name, 'shell');
  const second = await run([
    ...turn1,
    { type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: 'gAAAA-opaque' },
    { type: 'function_call', name: call.name, arguments: call.arguments, call_id: call.call_id },
    { type: 'function_call_output', call_id: call.call_id, output: 'README.md\nsrc' },
  ]);
  assert.equal(second.status, 'completed');
  const bodies = await upstreamBodies();
  assert.equal(bodies[0].reasoning_effort, 'medium');
  const m = bodies[1].messages;
  assert.deepEqual(m.map((x) => x.role), ['system', 'system', 'user', 'assistant', 'tool']);
  assert.equal(m[4].content, 'README.md\nsrc');
  for (const b of bodies) for (const k of ['include', 'prompt_cache_key', 'store', 'reasoning']) assert.equal(b[k], undefined, k);
  await assert.rejects(client.responses.retrieve(first.id), (e) => e.status === 404);
});
