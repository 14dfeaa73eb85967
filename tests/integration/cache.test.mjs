// The response cache (SPEC section 7) with the memory backend, against the
// real binary and fake providers: exact hits and misses (headers,
// x-aiproxy.cache, cost 0 and the cost saved), what the key ignores and
// what it does not, the per-request controls (x-aiproxy-cache use / skip /
// refresh, Cache-Control no-cache / no-store, x-aiproxy-cache-ttl, bad
// values), mode opt_in vs always, stream <-> whole both ways, what is never
// stored (broken streams, errors, several choices at a temperature, answers
// over max_entry_size, bodies with duplicate keys), scopes (tenants, keys,
// one scope without auth), eviction under max_memory, /v1/embeddings,
// /v1/completions, /v1/messages and /aiproxy/predict, an Anthropic
// provider, failover and hedging, concurrent identical requests, the
// ledger's cache and saved_nanos columns, the official openai SDK, and the
// semantic step (an embeddings model served by fake-upstream.mjs
// --semantic-embeddings, whose vectors make texts with the same words
// close: paraphrases, unrelated prompts, exact repeats, the embeddings
// provider failing, hanging or down, refresh, scopes, max_temperature, a
// client leaving during the embedding).
//
// The shared-cache (backend redis) tests are in cache-redis.test.mjs.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import OpenAI from 'openai';
import * as h from './harness.mjs';

// "0.000021" -> 21000n nano-dollars, exactly (no floats).
function usdToNanos(text) {
  const [i, f = ''] = String(text).split('.');
  return BigInt(i) * 1000000000n + BigInt((f + '000000000').slice(0, 9));
}
// The x-aiproxy object's cost / saved figures as written (not as parsed floats).
const figure = (text, name) => {
  const m = new RegExp(`"x-aiproxy":\\{.*?"${name}":([0-9.eE+-]+)`).exec(text);
  assert.ok(m, `x-aiproxy.${name} in ${text.slice(0, 400)}`);
  return usdToNanos(m[1]);
};
const sql = (db, q) => execFileSync('sqlite3', [db, q], { encoding: 'utf8' }).trim();

const CHAT = '/v1/chat/completions';
const LONG = 'please say back this sentence which is long enough to be split into several pieces of content';

let fake;
before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
after(() => h.killAll());
beforeEach(() => fake.reset());

const posts = async (f = fake) => (await f.requests()).filter((e) => e.method === 'POST');
const ask = (gw, body, headers = {}, p = CHAT) => h.request(gw.url + p, { body, headers, timeoutMs: 10000 });
const models = [
  h.model('gpt-test', 'upstream-gpt'),
  { name: 'instruct-test', openai_model: 'upstream-instruct', capabilities: ['completions'], cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 },
  { name: 'embed-test', openai_model: 'upstream-embed', capabilities: ['embeddings'], cost_per_1k_tokens: 0.0001 },
];
// One gateway in front of `fake`: `cache` merged into the cache section, `extra` top-level sections.
function gateway(t, cache = {}, extra = {}) {
  return h.gatewayFor(t, h.baseConfig({
    providers: { p1: h.provider(fake, { models }) },
    extra: { cache: { enabled: true, mode: 'always', ...cache }, ...extra },
  }));
}
// The content of a stream's chunks (chat deltas or completion texts), and its last JSON chunk.
function reassemble(events) {
  assert.equal(events[events.length - 1], '[DONE]', `the stream ends with [DONE]: ${events.slice(-3)}`);
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  let text = '';
  for (const c of chunks) {
    for (const ch of c.choices || []) {
      if (ch.delta && typeof ch.delta.content === 'string') text += ch.delta.content;
      if (typeof ch.text === 'string') text += ch.text;
    }
  }
  return { text, chunks, last: chunks[chunks.length - 1] };
}
async function streamAsk(gw, body, headers = {}, p = CHAT) {
  const s = await h.streamRequest(gw.url + p, { body: { ...body, stream: true }, headers, timeoutMs: 10000 });
  const done = await s.done;
  return { status: s.status, headers: s.headers, events: done.events, text: done.text, error: done.error };
}

describe('exact hits', () => {
  test('miss then hit: headers, x-aiproxy.cache, cost 0, the cost saved, one upstream call', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = h.chatBody('cache me please');
    const miss = await ask(gw, body);
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers['x-aiproxy-cache'], 'miss');
    assert.deepEqual(miss.json['x-aiproxy'].cache, { status: 'miss' });
    const cost = figure(miss.text, 'cost');
    assert.ok(cost > 0n, 'the miss cost something');

    const hit = await ask(gw, body);
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    h.assertAiproxyHeaders(hit, 'p1');
    assert.notEqual(hit.headers['x-aiproxy-request-id'], miss.headers['x-aiproxy-request-id']);
    const xa = hit.json['x-aiproxy'];
    assert.equal(xa.cache.status, 'hit');
    assert.ok(Number.isInteger(xa.cache.age_s) && xa.cache.age_s >= 0 && xa.cache.age_s <= 2, `age_s ${xa.cache.age_s}`);
    assert.equal(xa.cache.similarity, undefined, 'no similarity on an exact hit');
    assert.equal(figure(hit.text, 'cost'), 0n, 'a hit costs nothing');
    assert.equal(figure(hit.text, 'saved'), cost, 'a hit saved what the miss cost');
    assert.equal(xa.provider, 'p1');
    assert.equal(xa.model, miss.json['x-aiproxy'].model, 'x-aiproxy.model: the upstream id, as on the miss');
    assert.equal(xa.model, 'upstream-gpt');
    assert.equal(xa.requested_model, 'gpt-test');
    assert.equal(xa.node, 'test-node');
    assert.equal(xa.request_id, hit.headers['x-aiproxy-request-id']);
    assert.deepEqual(xa.providers_tried, []);
    assert.equal(xa.failovers, 0);
    // The answer itself is the stored one.
    for (const k of ['id', 'object', 'created', 'model', 'choices', 'usage']) assert.deepEqual(hit.json[k], miss.json[k], k);
    assert.equal(hit.json.choices[0].message.content, 'echo: cache me please');
    assert.equal((await posts()).length, 1, 'the hit never reached the provider');
  });

  test('the key ignores JSON key order, whitespace, user and stream; a message or temperature changes it', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const raw = (s) => h.request(gw.url + CHAT, { body: s, headers: { 'content-type': 'application/json' }, timeoutMs: 10000 });
    const first = await raw('{"model":"gpt-test","temperature":0.5,"messages":[{"role":"user","content":"key order"}]}');
    assert.equal(first.headers['x-aiproxy-cache'], 'miss', first.text);
    const same = [
      '{"messages":[{"content":"key order","role":"user"}],"temperature":0.5,"model":"gpt-test"}',
      '{ "model" : "gpt-test" ,\n\t"temperature": 0.5,  "messages": [ { "role": "user", "content": "key order" } ] }\n',
      '{"model":"gpt-test","temperature":0.5,"user":"u-123","messages":[{"role":"user","content":"key order"}]}',
      '{"model":"gpt-test","temperature":0.5,"stream":false,"messages":[{"role":"user","content":"key order"}]}',
    ];
    for (const s of same) {
      const r = await raw(s);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-aiproxy-cache'], 'hit', `same key: ${s}`);
      assert.equal(r.json.choices[0].message.content, 'echo: key order');
    }
    // stream: true is the same answer, replayed as a stream.
    const st = await streamAsk(gw, { model: 'gpt-test', temperature: 0.5, user: 'other', messages: [{ role: 'user', content: 'key order' }] });
    assert.equal(st.headers['x-aiproxy-cache'], 'hit');
    assert.equal(reassemble(st.events).text, 'echo: key order');
    assert.equal((await posts()).length, 1);
    const other = [
      '{"model":"gpt-test","temperature":0.5,"messages":[{"role":"user","content":"key order!"}]}',
      '{"model":"gpt-test","temperature":0.7,"messages":[{"role":"user","content":"key order"}]}',
      '{"model":"gpt-test","messages":[{"role":"user","content":"key order"}]}',
      '{"model":"gpt-test","temperature":0.5,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"key order"}]}',
      '{"model":"gpt-test","temperature":0.5,"max_tokens":20,"messages":[{"role":"user","content":"key order"}]}',
    ];
    for (const s of other) {
      const r = await raw(s);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-aiproxy-cache'], 'miss', `another key: ${s}`);
    }
    assert.equal((await posts()).length, 1 + other.length);
    // A body with duplicate keys is not cached (which one a provider reads is not defined).
    for (const dup of ['{"model":"gpt-test","metadata":{"a":"1","a":"2"},"messages":[{"role":"user","content":"key order"}]}',
      '{"model":"gpt-test","messages":[{"role":"user","content":"key order","content":"other"}]}']) {
      for (let i = 0; i < 2; i++) {
        const r = await raw(dup);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers['x-aiproxy-cache'], undefined, `duplicate keys: not consulted: ${dup}`);
      }
    }
    assert.equal((await posts()).length, 5 + other.length);
  });
});

describe('per-request controls', () => {
  test('x-aiproxy-cache: skip neither reads nor writes; refresh writes a new answer that later requests get', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = h.chatBody('controls');
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'miss');
    const skip = await ask(gw, body, { 'x-aiproxy-cache': 'skip' });
    assert.equal(skip.status, 200, skip.text);
    assert.equal(skip.headers['x-aiproxy-cache'], undefined, 'skip: the cache was not consulted');
    assert.equal(skip.json['x-aiproxy'].cache, undefined);
    assert.equal(figure(skip.text, 'cost') > 0n, true);
    assert.equal((await posts()).length, 2);
    // A skipped answer is not written: this one differs, and the stored one stays.
    await fake.control({ queue: [{ chunks: 2 }] });
    const skip2 = await ask(gw, body, { 'x-aiproxy-cache': ' SKIP ' });
    assert.equal(skip2.json.choices[0].message.content, 'c0 c1 ');
    const still = await ask(gw, body);
    assert.equal(still.headers['x-aiproxy-cache'], 'hit');
    assert.equal(still.json.choices[0].message.content, 'echo: controls');

    // refresh: not read (the provider is asked), written (later hits get the new answer).
    await fake.control({ queue: [{ chunks: 3 }] });
    const refresh = await ask(gw, body, { 'x-aiproxy-cache': 'refresh' });
    assert.equal(refresh.status, 200, refresh.text);
    assert.equal(refresh.headers['x-aiproxy-cache'], 'miss');
    assert.equal(refresh.json['x-aiproxy'].cache.status, 'miss');
    assert.equal(refresh.json.choices[0].message.content, 'c0 c1 c2 ');
    assert.equal((await posts()).length, 4);
    const after = await ask(gw, body);
    assert.equal(after.headers['x-aiproxy-cache'], 'hit');
    assert.equal(after.json.choices[0].message.content, 'c0 c1 c2 ', 'the refreshed answer');
    assert.equal(after.json.usage.completion_tokens, 3);
    const use = await ask(gw, body, { 'x-aiproxy-cache': 'use' });
    assert.equal(use.headers['x-aiproxy-cache'], 'hit');
    assert.equal((await posts()).length, 4);
  });

  test('Cache-Control: no-store is skip, no-cache is refresh', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = h.chatBody('cache-control');
    const ns = await ask(gw, body, { 'cache-control': 'no-store' });
    assert.equal(ns.status, 200, ns.text);
    assert.equal(ns.headers['x-aiproxy-cache'], undefined);
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'miss', 'no-store wrote nothing');
    const hit = await ask(gw, body, { 'cache-control': 'max-age=0, no-store' });
    assert.equal(hit.headers['x-aiproxy-cache'], undefined, 'no-store among other directives: not read either');
    assert.equal((await posts()).length, 3);

    await fake.control({ queue: [{ chunks: 2 }] });
    const nc = await ask(gw, body, { 'cache-control': 'no-cache' });
    assert.equal(nc.headers['x-aiproxy-cache'], 'miss', 'no-cache: not read');
    assert.equal(nc.json.choices[0].message.content, 'c0 c1 ');
    assert.equal((await posts()).length, 4);
    const after = await ask(gw, body);
    assert.equal(after.headers['x-aiproxy-cache'], 'hit');
    assert.equal(after.json.choices[0].message.content, 'c0 c1 ', 'no-cache wrote the new answer');
    // no-store wins over an x-aiproxy-cache: use
    const both = await ask(gw, body, { 'x-aiproxy-cache': 'use', 'cache-control': 'no-store' });
    assert.equal(both.headers['x-aiproxy-cache'], undefined);
    assert.equal((await posts()).length, 5);
  });

  test('x-aiproxy-cache-ttl: an entry of 1 s is gone after 1.2 s', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = h.chatBody('short life');
    const first = await ask(gw, body, { 'x-aiproxy-cache-ttl': '1' });
    assert.equal(first.headers['x-aiproxy-cache'], 'miss');
    const stored = Date.now();
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'hit');
    // A ttl header on a later request does not revive the expired entry.
    await h.sleep(Math.max(0, stored + 1200 - Date.now()));
    const later = await ask(gw, body, { 'x-aiproxy-cache-ttl': '3600' });
    assert.equal(later.headers['x-aiproxy-cache'], 'miss', 'expired after its 1 s');
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'hit', 'stored again, for the hour');
    assert.equal((await posts()).length, 2);
  });

  test('cache.ttl: age_s counts, and the entry expires at the configured ttl', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t, { ttl: '2s' });
    const body = h.chatBody('configured life');
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'miss');
    const stored = Date.now();
    await h.sleep(1100);
    const hit = await ask(gw, body);
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    assert.equal(hit.json['x-aiproxy'].cache.age_s, 1);
    await h.sleep(Math.max(0, stored + 2150 - Date.now()));
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'miss', 'expired after 2 s');
    assert.equal((await posts()).length, 2);
  });

  test('bad header values are 400 invalid_request_error naming the header; nothing reaches the provider', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const bad = [
      [{ 'x-aiproxy-cache': 'maybe' }, 'x-aiproxy-cache'],
      [{ 'x-aiproxy-cache': '' }, 'x-aiproxy-cache'],
      [{ 'x-aiproxy-cache-ttl': '0' }, 'x-aiproxy-cache-ttl'],
      [{ 'x-aiproxy-cache-ttl': '-5' }, 'x-aiproxy-cache-ttl'],
      [{ 'x-aiproxy-cache-ttl': 'abc' }, 'x-aiproxy-cache-ttl'],
      [{ 'x-aiproxy-cache-ttl': '1.5' }, 'x-aiproxy-cache-ttl'],
      [{ 'x-aiproxy-cache-ttl': '10s' }, 'x-aiproxy-cache-ttl'],
      [{ 'x-aiproxy-cache-ttl': '99999999999999999999' }, 'x-aiproxy-cache-ttl'],
      [{ 'x-aiproxy-cache-ttl': '' }, 'x-aiproxy-cache-ttl'],
    ];
    for (const [headers, param] of bad) {
      const r = await ask(gw, h.chatBody('bad headers'), headers);
      const e = h.assertOpenAIError(r, 400, undefined, param);
      assert.equal(e.type, 'invalid_request_error', JSON.stringify(headers));
      const st = await streamAsk(gw, h.chatBody('bad headers'), headers);
      assert.equal(st.status, 400, `stream too: ${JSON.stringify(headers)}`);
    }
    assert.equal((await posts()).length, 0);
    // Good values with spaces and in any case.
    const ok = await ask(gw, h.chatBody('good headers'), { 'x-aiproxy-cache': ' Use ', 'x-aiproxy-cache-ttl': ' 60 ' });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers['x-aiproxy-cache'], 'miss');
  });
});

describe('modes', () => {
  test('opt_in: nothing is read or written without a header; x-aiproxy-cache: use reads and writes', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t, { mode: 'opt_in' });
    const body = h.chatBody('opt in');
    for (let i = 0; i < 2; i++) {
      const r = await ask(gw, body);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-aiproxy-cache'], undefined, 'not consulted');
      assert.equal(r.json['x-aiproxy'].cache, undefined);
    }
    assert.equal((await posts()).length, 2, 'nothing cached without a header');
    const miss = await ask(gw, body, { 'x-aiproxy-cache': 'use' });
    assert.equal(miss.headers['x-aiproxy-cache'], 'miss', 'the plain answers were not written');
    const hit = await ask(gw, body, { 'x-aiproxy-cache': 'use' });
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    const plain = await ask(gw, body);
    assert.equal(plain.headers['x-aiproxy-cache'], undefined, 'a request that does not ask is not served from the cache');
    assert.equal((await posts()).length, 4);
    // Cache-Control alone does not opt in (HTTP tools send no-cache by habit)
    const other = h.chatBody('opt in, no-cache');
    for (let i = 0; i < 2; i++) {
      const r = await ask(gw, other, { 'cache-control': 'no-cache' });
      assert.equal(r.headers['x-aiproxy-cache'], undefined, 'no-cache does not opt in');
    }
    const asked = await ask(gw, other, { 'x-aiproxy-cache': 'use' });
    assert.equal(asked.headers['x-aiproxy-cache'], 'miss', 'no-cache wrote nothing under opt_in');
    assert.equal((await posts()).length, 7);
  });

  test('cache.enabled false: bad cache headers are ignored, nothing is cached', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t, { enabled: false });
    const body = h.chatBody('disabled');
    for (let i = 0; i < 2; i++) {
      const r = await ask(gw, body, { 'x-aiproxy-cache': i ? 'use' : 'bogus' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-aiproxy-cache'], undefined);
    }
    assert.equal((await posts()).length, 2);
  });
});

describe('streams and what is never stored', () => {
  test('a whole answer replayed as a stream: chunks, a final usage + x-aiproxy chunk, [DONE]', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = h.chatBody(LONG);
    const whole = await ask(gw, body);
    assert.equal(whole.headers['x-aiproxy-cache'], 'miss');
    const st = await streamAsk(gw, body);
    assert.equal(st.status, 200);
    assert.equal(st.error, null);
    assert.match(st.headers['content-type'], /^text\/event-stream/);
    assert.equal(st.headers['x-aiproxy-cache'], 'hit');
    assert.equal(st.headers['x-aiproxy-provider'], 'p1');
    const { text, chunks, last } = reassemble(st.events);
    assert.equal(text, whole.json.choices[0].message.content, 'the content reassembled is the original');
    const content = chunks.filter((c) => c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content);
    assert.ok(content.length >= 2, `split into pieces: ${content.length}`);
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.model, whole.json.model);
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const fin = chunks.find((c) => c.choices && c.choices[0] && c.choices[0].finish_reason);
    assert.equal(fin.choices[0].finish_reason, 'stop');
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, whole.json.usage);
    assert.equal(last['x-aiproxy'].cache.status, 'hit');
    assert.equal(figure(JSON.stringify(last), 'cost'), 0n);
    assert.equal(figure(JSON.stringify(last), 'saved'), figure(whole.text, 'cost'));
    assert.equal((await posts()).length, 1);
  });

  test('a streamed answer is stored once complete and served whole, and streamed again', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = h.chatBody(LONG + ' streamed');
    const first = await streamAsk(gw, body);
    assert.equal(first.headers['x-aiproxy-cache'], 'miss');
    const orig = reassemble(first.events);
    assert.equal(orig.text, `echo: ${LONG} streamed`);
    assert.equal(orig.last['x-aiproxy'].cache.status, 'miss');
    const whole = await ask(gw, body);
    assert.equal(whole.status, 200, whole.text);
    assert.equal(whole.headers['x-aiproxy-cache'], 'hit');
    assert.equal(whole.json.object, 'chat.completion');
    assert.equal(whole.json.choices.length, 1);
    assert.equal(whole.json.choices[0].message.role, 'assistant');
    assert.equal(whole.json.choices[0].message.content, orig.text);
    assert.equal(whole.json.choices[0].finish_reason, 'stop');
    assert.deepEqual(whole.json.usage, orig.last.usage);
    assert.equal(figure(whole.text, 'saved'), figure(JSON.stringify(orig.last), 'cost'));
    const again = await streamAsk(gw, body);
    assert.equal(again.headers['x-aiproxy-cache'], 'hit');
    assert.equal(reassemble(again.events).text, orig.text);
    assert.equal((await posts()).length, 1);
  });

  test('a stream broken mid-way is not stored', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = h.chatBody('one two three four five six');
    await fake.control({ queue: [{ resetAfterChunks: 2 }] });
    const broken = await streamAsk(gw, body);
    assert.equal(broken.status, 200);
    assert.equal(broken.headers['x-aiproxy-cache'], 'miss');
    assert.ok(broken.events.some((e) => e.includes('"error"')), `an error event: ${broken.events}`);
    assert.ok(!broken.events.includes('[DONE]'));
    const next = await ask(gw, body);
    assert.equal(next.status, 200, next.text);
    assert.equal(next.headers['x-aiproxy-cache'], 'miss', 'the broken stream was not stored');
    assert.equal(next.json.choices[0].message.content, 'echo: one two three four five six');
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await posts()).length, 2);
  });

  for (const [name, behaviour, status] of [
    ['HTTP 500', { status: 500 }, 502],
    ['a 200 with an error body', { errorIn200: true }, 502],
    ['a body cut off mid-way', { resetAfterChunks: 1 }, 502],
  ]) {
    test(`an error is not stored: ${name}`, { timeout: 15000 }, async (t) => {
      const gw = await gateway(t);
      const body = h.chatBody(`error ${name}`);
      await fake.control({ default: behaviour });
      const e1 = await ask(gw, body);
      assert.equal(e1.status, status, e1.text);
      assert.equal(e1.json.error.code, 'upstream_error');
      const e2 = await ask(gw, body);
      assert.equal(e2.status, status, `not served from the cache: ${e2.text}`);
      const n = (await posts()).length;
      await fake.control({ default: {} });
      const ok = await ask(gw, body);
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.headers['x-aiproxy-cache'], 'miss');
      assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'hit');
      assert.equal((await posts()).length, n + 1);
    });
  }

  test('several choices at a temperature are never cached; at temperature 0 they are', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    for (const extra of [{ n: 2, temperature: 1 }, { n: 2 }]) {
      for (let i = 0; i < 2; i++) {
        const r = await ask(gw, h.chatBody('two choices', extra), { 'x-aiproxy-cache': 'use' });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers['x-aiproxy-cache'], undefined, JSON.stringify(extra));
      }
    }
    assert.equal((await posts()).length, 4);
    const z = h.chatBody('two choices', { n: 2, temperature: 0 });
    assert.equal((await ask(gw, z)).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await ask(gw, z)).headers['x-aiproxy-cache'], 'hit');
    const one = h.chatBody('two choices', { n: 1, temperature: 1 });
    assert.equal((await ask(gw, one)).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await ask(gw, one)).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await posts()).length, 6);
  });
});

describe('scopes', () => {
  const keys = [
    { key: 'k-acme-1', name: 'alice', tenant: 'acme' },
    { key: 'k-acme-2', name: 'bob', tenant: 'acme' },
    { key: 'k-beta', name: 'carol', tenant: 'beta' },
    { key: 'k-solo-1', name: 'dave' },
    { key: 'k-solo-2', name: 'erin' },
  ];
  test('auth on: a tenant\'s answers never reach another tenant; keys of one tenant share; keys without a tenant are their own scope', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t, {}, { security: { auth: { enabled: true, api_keys: keys } } });
    const body = h.chatBody('scoped question');
    const as = (key, hdr = 'authorization') => ask(gw, body, { [hdr]: hdr === 'authorization' ? `Bearer ${key}` : key });
    h.assertOpenAIError(await ask(gw, body), 401, 'invalid_api_key');
    assert.equal((await as('k-acme-1')).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await as('k-acme-1')).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await as('k-acme-2', 'x-api-key')).headers['x-aiproxy-cache'], 'hit', 'the same tenant shares');
    assert.equal((await posts()).length, 1);
    const b = await as('k-beta');
    assert.equal(b.status, 200, b.text);
    assert.equal(b.headers['x-aiproxy-cache'], 'miss', 'another tenant: its own miss');
    assert.equal((await posts()).length, 2, 'and its own upstream call');
    assert.equal((await as('k-beta')).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await as('k-solo-1')).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await as('k-solo-1')).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await as('k-solo-2')).headers['x-aiproxy-cache'], 'miss', 'a key without a tenant is a scope of its own');
    assert.equal((await as('k-acme-2')).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await posts()).length, 4);
  });

  test('auth off: one shared scope whatever the caller sends', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = h.chatBody('open gateway');
    assert.equal((await ask(gw, body, { authorization: 'Bearer someone' })).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await ask(gw, body, { authorization: 'Bearer someone-else' })).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await ask(gw, body, { 'x-api-key': 'third' })).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'hit');
    assert.equal((await posts()).length, 1);
  });
});

test('eviction: under max_memory 64KB, 20 KB answers push the least recently used out', { timeout: 20000 }, async (t) => {
  const gw = await gateway(t, { max_memory: '64KB' });
  await fake.control({ default: { bigResponseBytes: 20000 } });
  const body = (i) => h.chatBody(`big answer ${i}`);
  for (let i = 0; i < 5; i++) {
    const r = await ask(gw, body(i));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-cache'], 'miss');
    assert.equal(r.json.choices[0].message.content.length, 20000);
  }
  // The latest is kept ...
  const last = await ask(gw, body(4));
  assert.equal(last.headers['x-aiproxy-cache'], 'hit');
  assert.equal(last.json.choices[0].message.content.length, 20000);
  // ... the first ones went out (at most three 20 KB answers fit in 64 KB).
  for (const i of [0, 1]) assert.equal((await ask(gw, body(i))).headers['x-aiproxy-cache'], 'miss', `answer ${i} evicted`);
  assert.equal((await posts()).length, 7);
});

test('max_entry_size: a larger answer is served but not stored', { timeout: 15000 }, async (t) => {
  const gw = await gateway(t, { max_entry_size: '4KB' });
  await fake.control({ queue: [{ bigResponseBytes: 5000 }, { bigResponseBytes: 5000 }] });
  const body = h.chatBody('too big to keep');
  for (let i = 0; i < 2; i++) {
    const r = await ask(gw, body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-cache'], 'miss');
    assert.equal(r.json.choices[0].message.content.length, 5000);
  }
  // Streamed: the chunks add up past the limit, so the rebuilt answer is dropped.
  await fake.control({ queue: [{ bigResponseBytes: 5000 }, { bigResponseBytes: 5000 }] });
  const big = h.chatBody('too big to keep, streamed');
  for (let i = 0; i < 2; i++) {
    const st = await streamAsk(gw, big);
    assert.equal(st.headers['x-aiproxy-cache'], 'miss');
    assert.equal(reassemble(st.events).text.length, 5000);
  }
  const small = h.chatBody('small enough');
  assert.equal((await ask(gw, small)).headers['x-aiproxy-cache'], 'miss');
  assert.equal((await ask(gw, small)).headers['x-aiproxy-cache'], 'hit');
  assert.equal((await posts()).length, 5);
});

describe('other endpoints', () => {
  test('/v1/embeddings', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = { model: 'embed-test', input: ['embed me', 'and me'] };
    const miss = await ask(gw, body, {}, '/v1/embeddings');
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers['x-aiproxy-cache'], 'miss');
    const hit = await ask(gw, { input: ['embed me', 'and me'], model: 'embed-test', user: 'x' }, {}, '/v1/embeddings');
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    assert.equal(hit.json['x-aiproxy'].cache.status, 'hit');
    assert.deepEqual(hit.json.data, miss.json.data);
    assert.deepEqual(hit.json.usage, miss.json.usage);
    assert.equal(figure(hit.text, 'saved'), figure(miss.text, 'cost'));
    assert.equal((await ask(gw, { model: 'embed-test', input: ['embed me'] }, {}, '/v1/embeddings')).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await posts()).length, 2);
  });

  test('/v1/completions, whole and streamed', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = { model: 'instruct-test', prompt: LONG, max_tokens: 50 };
    const miss = await ask(gw, body, {}, '/v1/completions');
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers['x-aiproxy-cache'], 'miss');
    const hit = await ask(gw, body, {}, '/v1/completions');
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    assert.equal(hit.json.object, 'text_completion');
    assert.equal(hit.json.choices[0].text, `echo: ${LONG}`);
    const st = await streamAsk(gw, body, {}, '/v1/completions');
    assert.equal(st.headers['x-aiproxy-cache'], 'hit');
    const { text, chunks, last } = reassemble(st.events);
    assert.equal(text, `echo: ${LONG}`);
    for (const c of chunks) assert.equal(c.object, 'text_completion');
    assert.deepEqual(last.usage, miss.json.usage);
    assert.equal((await posts()).filter((p) => p.path === '/v1/completions').length, 1);
  });

  test('/v1/messages: Anthropic shape in and out, whole and streamed', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const hdr = { 'anthropic-version': '2023-06-01' };
    const body = { model: 'gpt-test', max_tokens: 100, system: 'Be brief.', messages: [{ role: 'user', content: LONG }] };
    const miss = await ask(gw, body, hdr, '/v1/messages');
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers['x-aiproxy-cache'], 'miss');
    assert.equal(miss.json.type, 'message');
    const hit = await ask(gw, body, hdr, '/v1/messages');
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    assert.equal(hit.json.type, 'message');
    assert.equal(hit.json.role, 'assistant');
    assert.match(hit.json.id, /^msg_/);
    assert.deepEqual(hit.json.content, [{ type: 'text', text: `echo: ${LONG}` }]);
    assert.deepEqual(hit.json.content, miss.json.content);
    assert.equal(hit.json.stop_reason, 'end_turn');
    assert.deepEqual(hit.json.usage, miss.json.usage);
    assert.equal(hit.json['x-aiproxy'].cache.status, 'hit');
    // A streamed request: Anthropic's events, from the cache.
    const st = await streamAsk(gw, body, hdr, '/v1/messages');
    assert.equal(st.status, 200);
    assert.equal(st.headers['x-aiproxy-cache'], 'hit');
    const evs = st.events.map((e) => JSON.parse(e));
    const types = evs.map((e) => e.type);
    assert.equal(types[0], 'message_start');
    assert.equal(types[types.length - 1], 'message_stop');
    assert.ok(types.includes('content_block_start') && types.includes('content_block_stop') && types.includes('message_delta'), types.join());
    const text = evs.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join('');
    assert.equal(text, `echo: ${LONG}`);
    // The chat endpoint with the same conversation is another endpoint.
    const chat = await ask(gw, { model: 'gpt-test', max_tokens: 100, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: LONG }] });
    assert.equal(chat.headers['x-aiproxy-cache'], 'miss');
    assert.equal((await posts()).length, 2);
    // A streamed Messages miss is stored too, and served whole in Anthropic's shape.
    const body2 = { model: 'gpt-test', max_tokens: 100, messages: [{ role: 'user', content: 'streamed through messages' }] };
    const sm = await streamAsk(gw, body2, hdr, '/v1/messages');
    assert.equal(sm.headers['x-aiproxy-cache'], 'miss');
    assert.equal(JSON.parse(sm.events[sm.events.length - 1]).type, 'message_stop');
    const wh = await ask(gw, body2, hdr, '/v1/messages');
    assert.equal(wh.headers['x-aiproxy-cache'], 'hit');
    assert.equal(wh.json.type, 'message');
    assert.deepEqual(wh.json.content, [{ type: 'text', text: 'echo: streamed through messages' }]);
    assert.equal((await posts()).length, 3);
  });

  test('/aiproxy/predict', { timeout: 15000 }, async (t) => {
    const gw = await gateway(t);
    const body = { model: 'gpt-test', input: 'predict me' };
    const miss = await ask(gw, body, {}, '/aiproxy/predict');
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers['x-aiproxy-cache'], 'miss');
    assert.equal(miss.json.output, 'echo: predict me');
    const hit = await ask(gw, body, {}, '/aiproxy/predict');
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    assert.equal(hit.json.output, 'echo: predict me');
    assert.equal(hit.json.finish_reason, 'stop');
    assert.equal(hit.json.request_id, hit.headers['x-aiproxy-request-id']);
    assert.equal(hit.json.metadata.cost.amount, 0);
    assert.deepEqual(hit.json.metadata.tokens.input, miss.json.metadata.tokens.input);
    assert.equal((await posts()).length, 1);
  });
});

describe('other providers, failover, concurrency, clients that leave', () => {
  test('an Anthropic provider\'s answer is stored in OpenAI\'s shape: whole and streamed hits', { timeout: 15000 }, async (t) => {
    const an = await h.startProviderFake('fake-anthropic.mjs', { name: 'an', args: ['--api-key', 'ak'] });
    t.after(() => an.stop());
    const gw = await h.gatewayFor(t, h.baseConfig({
      providers: {
        an: {
          type: 'anthropic', endpoint: `${an.url}/v1`, timeout: '3s', credentials: { api_key: 'ak' }, max_tokens_default: 64,
          models: [{ name: 'claude-test', anthropic_model: 'claude-fake-1', cost_per_1k_input_tokens: 3, cost_per_1k_output_tokens: 15 }],
        },
      },
      extra: { cache: { enabled: true, mode: 'always' } },
    }));
    const body = { model: 'claude-test', messages: [{ role: 'user', content: LONG }] };
    const miss = await ask(gw, body);
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers['x-aiproxy-cache'], 'miss');
    assert.equal(miss.json.object, 'chat.completion');
    const hit = await ask(gw, body);
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    assert.equal(hit.json.object, 'chat.completion');
    assert.equal(hit.json.choices[0].message.content, miss.json.choices[0].message.content);
    assert.equal(hit.json['x-aiproxy'].provider, 'an');
    assert.equal(hit.json['x-aiproxy'].model, 'claude-fake-1');
    const st = await streamAsk(gw, body);
    assert.equal(st.headers['x-aiproxy-cache'], 'hit');
    assert.equal(reassemble(st.events).text, miss.json.choices[0].message.content);
    // Streamed from Anthropic (its events translated), stored, served whole.
    const body2 = { model: 'claude-test', messages: [{ role: 'user', content: 'anthropic stream' }] };
    const s1 = await streamAsk(gw, body2);
    assert.equal(s1.headers['x-aiproxy-cache'], 'miss');
    const w = await ask(gw, body2);
    assert.equal(w.headers['x-aiproxy-cache'], 'hit');
    assert.equal(w.json.choices[0].message.content, reassemble(s1.events).text);
    assert.equal((await an.requests()).filter((e) => e.method === 'POST').length, 2);
  });

  test('after a failover the answer of the provider that made it is stored, and named on hits', { timeout: 15000 }, async (t) => {
    const f2 = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
    t.after(() => f2.stop());
    const cfg = h.twoProviderConfig(fake, f2);
    cfg.cache = { enabled: true, mode: 'always' };
    const gw = await h.gatewayFor(t, cfg);
    await fake.control({ queue: [{ status: 503 }] });
    const body = h.chatBody('fail over then cache');
    const miss = await ask(gw, body);
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers['x-aiproxy-provider'], 'p2');
    assert.equal(miss.headers['x-aiproxy-cache'], 'miss');
    const hit = await ask(gw, body);
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    assert.equal(hit.headers['x-aiproxy-provider'], 'p2');
    assert.equal(hit.json['x-aiproxy'].provider, 'p2');
    assert.equal(figure(hit.text, 'saved'), figure(miss.text, 'cost'));
    assert.equal((await posts(f2)).length, 1);
  });

  test('a hedged miss: the winner\'s answer and cost are stored, not the loser\'s metered prompt', { timeout: 15000 }, async (t) => {
    const f2 = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
    t.after(() => f2.stop());
    const cfg = h.twoProviderConfig(fake, f2, { timeout: '5s' });
    cfg.routing = { strategy: 'cost_optimized', load_balancing: { health_aware: false } };
    cfg.cache = { enabled: true, mode: 'always' };
    const gw = await h.gatewayFor(t, cfg);
    await fake.control({ queue: [{ delayMs: 3000 }] });
    const body = h.chatBody('hedge and cache');
    const miss = await ask(gw, body, { 'x-aiproxy-hedge': '150' });
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.json['x-aiproxy'].hedged, true);
    assert.equal(miss.json['x-aiproxy'].provider, 'p2');
    const hit = await ask(gw, body, { 'x-aiproxy-hedge': '150' });
    assert.equal(hit.headers['x-aiproxy-cache'], 'hit');
    assert.equal(hit.json['x-aiproxy'].provider, 'p2');
    assert.equal(hit.json.choices[0].message.content, 'echo: hedge and cache');
    // p2's answer: prompt 15 characters = 15 tokens at 0.001/1k, 4 pieces at 0.002/1k.
    assert.equal(figure(hit.text, 'saved'), 15n * 1000n + 4n * 2000n);
    assert.ok(figure(miss.text, 'cost') > figure(hit.text, 'saved'), 'the miss paid the loser\'s prompt too');
  });

  test('concurrent identical requests, whole and streamed: every answer whole and the same', { timeout: 20000 }, async (t) => {
    const gw = await gateway(t);
    await fake.control({ default: { delayMs: 20 } });
    const body = h.chatBody(LONG + ' concurrently');
    const want = `echo: ${LONG} concurrently`;
    const rs = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      if (i % 2) {
        const st = await streamAsk(gw, body);
        assert.equal(st.status, 200);
        return [st.headers['x-aiproxy-cache'], reassemble(st.events).text];
      }
      const r = await ask(gw, body);
      assert.equal(r.status, 200, r.text);
      return [r.headers['x-aiproxy-cache'], r.json.choices[0].message.content];
    }));
    for (const [status, text] of rs) {
      assert.ok(['hit', 'miss'].includes(status), status);
      assert.equal(text, want);
    }
    assert.equal(rs.filter(([st]) => st === 'miss').length, (await posts()).length, 'every miss, and only they, asked the provider');
    assert.equal((await ask(gw, body)).headers['x-aiproxy-cache'], 'hit');
  });
});

test('the ledger: a hit is recorded with cost 0, cache hit and the miss\'s cost as saved_nanos', { timeout: 15000 }, async (t) => {
  const db = path.join(h.tempDir(), 'costs.db');
  const gw = await gateway(t, {}, { budget: { cost_db: `sqlite:///${db}` } });
  const body = h.chatBody('ledger me');
  const miss = await ask(gw, body);
  const hit = await ask(gw, body);
  const skip = await ask(gw, body, { 'x-aiproxy-cache': 'skip' });
  const ids = [miss, hit, skip].map((r) => r.headers['x-aiproxy-request-id']);
  const rows = await h.waitFor(() => {
    let out;
    try { out = sql(db, `SELECT request_id, cost_nanos, saved_nanos, cache, provider, status FROM requests WHERE request_id IN ('${ids.join("','")}')`); } catch { return null; }
    const rs = out.split('\n').filter(Boolean).map((l) => l.split('|'));
    return rs.length === 3 ? Object.fromEntries(rs.map((r) => [r[0], r])) : null;
  }, 5000, 50, 'three ledger rows');
  const [m, hh, s] = ids.map((id) => rows[id]);
  assert.equal(m[3], 'miss');
  assert.ok(Number(m[1]) > 0);
  assert.equal(BigInt(m[1]), figure(miss.text, 'cost'));
  assert.equal(m[2], '0');
  assert.equal(hh[3], 'hit');
  assert.equal(hh[1], '0', 'a hit costs nothing');
  assert.equal(hh[2], m[1], 'saved what the miss cost');
  assert.equal(hh[5], '200');
  assert.equal(s[3], '', 'not consulted');
  assert.equal(s[2], '0');
  // The budget counts the miss and the skipped request, not the hit.
  const b = await h.request(gw.url + '/v1/budget');
  assert.equal(BigInt(b.json.today.spent_nanos), BigInt(m[1]) + BigInt(s[1]));
  assert.equal(b.json.today.reserved_nanos, 0, 'the hit\'s reservation was released');
});

test('the official openai SDK gets hits, whole and streamed, with only its base URL changed', { timeout: 15000 }, async (t) => {
  const gw = await gateway(t);
  const client = new OpenAI({ baseURL: gw.url + '/v1', apiKey: 'any-key', timeout: 8000, maxRetries: 0 });
  const params = { model: 'gpt-test', messages: [{ role: 'user', content: LONG }] };
  const a = await client.chat.completions.create(params).withResponse();
  assert.equal(a.response.headers.get('x-aiproxy-cache'), 'miss');
  const b = await client.chat.completions.create(params).withResponse();
  assert.equal(b.response.headers.get('x-aiproxy-cache'), 'hit');
  assert.equal(b.data.choices[0].message.content, a.data.choices[0].message.content);
  assert.deepEqual(b.data.usage, a.data.usage);
  assert.equal(b.data['x-aiproxy'].cache.status, 'hit');
  const s = await client.chat.completions.create({ ...params, stream: true }).withResponse();
  assert.equal(s.response.headers.get('x-aiproxy-cache'), 'hit');
  let text = '';
  let last;
  for await (const chunk of s.data) {
    last = chunk;
    if (chunk.choices[0] && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
  }
  assert.equal(text, a.data.choices[0].message.content);
  assert.deepEqual(last.usage, a.data.usage);
  assert.equal(last['x-aiproxy'].cache.status, 'hit');
  // A streamed miss, stored, then a streamed hit through the SDK.
  const p2 = { model: 'gpt-test', messages: [{ role: 'user', content: 'sdk stream first' }], stream: true, stream_options: { include_usage: true } };
  for (const want of ['miss', 'hit']) {
    const r = await client.chat.completions.create(p2).withResponse();
    assert.equal(r.response.headers.get('x-aiproxy-cache'), want);
    let tx = '';
    for await (const chunk of r.data) if (chunk.choices[0] && chunk.choices[0].delta.content) tx += chunk.choices[0].delta.content;
    assert.equal(tx, 'echo: sdk stream first');
  }
  assert.equal((await posts()).length, 2);
});

describe('semantic', () => {
  let emb;
  before(async () => {
    emb = await h.startProviderFake('fake-upstream.mjs', { name: 'emb', args: ['--semantic-embeddings'] });
  });
  beforeEach(() => emb.reset());
  const embCalls = async () => (await emb.requests()).filter((e) => e.method === 'POST' && e.path === '/v1/embeddings').length;
  function semGateway(t, semantic = {}, o = {}) {
    const providers = {
      p1: h.provider(fake, { models }),
      emb: h.provider(`${emb.url}/v1`, { apiKey: 'sk-emb', models: [{ name: 'sem-embed', openai_model: 'upstream-embed', capabilities: ['embeddings'], cost_per_1k_tokens: 0.0001 }] }),
      ...(o.providers || {}),
    };
    return h.gatewayFor(t, h.baseConfig({
      providers,
      extra: { cache: { enabled: true, mode: 'always', semantic: { enabled: true, embedding_model: 'sem-embed', threshold: 0.9, ...semantic } }, ...(o.extra || {}) },
    }));
  }

  test('a paraphrase is a semantic_hit; an unrelated prompt a miss; an exact repeat a hit without an embedding', { timeout: 15000 }, async (t) => {
    const db = path.join(h.tempDir(), 'costs.db');
    const gw = await semGateway(t, {}, { extra: { budget: { cost_db: `sqlite:///${db}` } } });
    const first = await ask(gw, h.chatBody('What is the capital of France?'));
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-aiproxy-cache'], 'miss');
    assert.equal(await embCalls(), 1, 'the miss embedded its text (to store the vector)');
    const [call] = (await emb.requests());
    assert.equal(call.body.model, 'upstream-embed');
    assert.match(call.body.input, /What is the capital of France\?/);

    const para = await ask(gw, h.chatBody('what is the capital of france'));
    assert.equal(para.status, 200, para.text);
    assert.equal(para.headers['x-aiproxy-cache'], 'semantic_hit');
    const c = para.json['x-aiproxy'].cache;
    assert.equal(c.status, 'semantic_hit');
    assert.ok(c.similarity >= 0.9 && c.similarity <= 1.0001, `similarity ${c.similarity}`);
    assert.ok(Number.isInteger(c.age_s));
    assert.equal(para.json.choices[0].message.content, 'echo: What is the capital of France?', 'the stored answer');
    // The miss cost its chat answer and its embedding; a hit saves the answer's
    // cost and pays its own embedding ($0.0001 per 1k tokens; the fake counts
    // a token per character).
    const embedCost = (input) => BigInt(input.length) * 100n;
    assert.equal(figure(para.text, 'saved'), figure(first.text, 'cost') - embedCost(call.body.input));
    const paraCall = (await emb.requests())[1];
    assert.match(paraCall.body.input, /what is the capital of france/);
    assert.equal(figure(para.text, 'cost'), embedCost(paraCall.body.input), 'a semantic hit costs only its embedding');
    // The ledger: the semantic hit's row has its embedding's cost and what it saved.
    const id = para.headers['x-aiproxy-request-id'];
    const row = await h.waitFor(() => {
      try { return sql(db, `SELECT cost_nanos, saved_nanos, cache FROM requests WHERE request_id = '${id}'`); } catch { return null; }
    }, 5000, 50, 'the semantic hit\'s ledger row');
    assert.equal(row, `${embedCost(paraCall.body.input)}|${figure(para.text, 'saved')}|semantic_hit`);
    assert.equal(await embCalls(), 2);
    assert.equal((await posts()).length, 1, 'the chat provider was asked once');

    const unrelated = await ask(gw, h.chatBody('Tell me a joke about penguins'));
    assert.equal(unrelated.headers['x-aiproxy-cache'], 'miss');
    assert.equal(unrelated.json.choices[0].message.content, 'echo: Tell me a joke about penguins');
    assert.equal((await posts()).length, 2);
    assert.equal(await embCalls(), 3);

    const exact = await ask(gw, h.chatBody('What is the capital of France?'));
    assert.equal(exact.headers['x-aiproxy-cache'], 'hit', 'an exact repeat is an exact hit');
    assert.equal(exact.json['x-aiproxy'].cache.similarity, undefined);
    assert.equal(figure(exact.text, 'cost'), 0n);
    assert.equal(await embCalls(), 3, 'and needs no embedding');

    // Another parameter is another partition: never compared by meaning.
    const other = await ask(gw, h.chatBody('what is the capital of france', { max_tokens: 30 }));
    assert.equal(other.headers['x-aiproxy-cache'], 'miss');
    // Streamed: the semantic hit is replayed as a stream.
    const st = await streamAsk(gw, h.chatBody('WHAT is the capital of France'));
    assert.equal(st.headers['x-aiproxy-cache'], 'semantic_hit');
    const r = reassemble(st.events);
    assert.equal(r.text, 'echo: What is the capital of France?');
    assert.equal(r.last['x-aiproxy'].cache.status, 'semantic_hit');
    assert.ok(r.last['x-aiproxy'].cache.similarity >= 0.9);
    // The store and the index go away cleanly (an ASan build checks for leaks here).
    assert.equal(await gw.stop('SIGTERM'), 0, gw.logs().slice(-3000));
  });

  test('the embeddings provider failing or down: a miss, never an error', { timeout: 20000 }, async (t) => {
    const gw = await semGateway(t, { timeout: '300ms' });
    assert.equal((await ask(gw, h.chatBody('Which river flows through Paris?'))).headers['x-aiproxy-cache'], 'miss');
    await emb.control({ default: { status: 500 } });
    const r = await ask(gw, h.chatBody('which river flows through paris'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-cache'], 'miss', 'no embedding: a miss');
    assert.equal(r.json.choices[0].message.content, 'echo: which river flows through paris');
    assert.ok(await embCalls() >= 2);
    // An exact repeat is still a hit (no embedding needed).
    assert.equal((await ask(gw, h.chatBody('Which river flows through Paris?'))).headers['x-aiproxy-cache'], 'hit');
    await emb.control({ default: { hang: true } });
    const slow = await ask(gw, h.chatBody('WHICH river flows through Paris'));
    assert.equal(slow.status, 200, slow.text);
    assert.equal(slow.headers['x-aiproxy-cache'], 'miss', 'a hanging embedding call times out into a miss');
    await emb.reset();

    // An embeddings provider that is down (nothing listens on its port).
    const port = await h.freePort();
    const gw2 = await h.gatewayFor(t, h.baseConfig({
      providers: {
        p1: h.provider(fake, { models }),
        gone: h.provider(`http://127.0.0.1:${port}/v1`, { models: [{ name: 'sem-embed', openai_model: 'upstream-embed', capabilities: ['embeddings'], cost_per_1k_tokens: 0.0001 }] }),
      },
      extra: { cache: { enabled: true, mode: 'always', semantic: { enabled: true, embedding_model: 'sem-embed', threshold: 0.9 } } },
    }));
    for (const [text, want] of [['Name a red fruit', 'miss'], ['name a red fruit', 'miss'], ['Name a red fruit', 'hit']]) {
      const x = await ask(gw2, h.chatBody(text));
      assert.equal(x.status, 200, x.text);
      assert.equal(x.headers['x-aiproxy-cache'], want, text);
    }
  });

  test('a client that leaves while its text is being embedded: the gateway carries on', { timeout: 15000 }, async (t) => {
    const gw = await semGateway(t, { timeout: '5s' });
    await emb.control({ default: { hang: true } });
    await assert.rejects(h.request(gw.url + CHAT, { body: h.chatBody('I will not wait for this'), timeoutMs: 300 }), /timed out/);
    const s = await h.streamRequest(gw.url + CHAT, { body: { ...h.chatBody('nor for this'), stream: true }, timeoutMs: 300 }).catch((e) => e);
    assert.ok(s instanceof Error, 'the stream was cut off before its head');
    await h.waitFor(async () => (await embCalls()) === 2, 3000, 25, 'both embedding calls made');
    await emb.reset();
    // The embedding calls were cancelled with their requests.
    const r = await ask(gw, h.chatBody('I will not wait for this'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-cache'], 'miss');
    assert.equal((await posts()).length, 1, 'the requests that left never reached the provider');
    assert.equal((await ask(gw, h.chatBody('I will not wait for this'))).headers['x-aiproxy-cache'], 'hit');
  });

  test('above max_temperature the semantic step is skipped (no embedding call); exact hits still work', { timeout: 15000 }, async (t) => {
    const gw = await semGateway(t, { max_temperature: 0.5 });
    const hot = (text) => h.chatBody(text, { temperature: 0.9 });
    assert.equal((await ask(gw, hot('Describe the color of the sky'))).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await ask(gw, hot('describe the color of the sky'))).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await ask(gw, hot('Describe the color of the sky'))).headers['x-aiproxy-cache'], 'hit');
    assert.equal(await embCalls(), 0, 'no embedding above max_temperature');
    const cool = (text) => h.chatBody(text, { temperature: 0.2 });
    assert.equal((await ask(gw, cool('Describe the color of grass'))).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await ask(gw, cool('describe the colour of grass'))).headers['x-aiproxy-cache'], 'miss', 'another word: far enough');
    assert.equal((await ask(gw, cool('DESCRIBE the color of grass!'))).headers['x-aiproxy-cache'], 'semantic_hit');
    assert.equal(await embCalls(), 3);
  });

  test('refresh embeds too: the answer it stores is found by meaning later', { timeout: 15000 }, async (t) => {
    const gw = await semGateway(t);
    assert.equal((await ask(gw, h.chatBody('Where is the Eiffel Tower?'))).headers['x-aiproxy-cache'], 'miss');
    await fake.control({ queue: [{ chunks: 2 }] });
    const r = await ask(gw, h.chatBody('where is the eiffel tower'), { 'x-aiproxy-cache': 'refresh' });
    assert.equal(r.headers['x-aiproxy-cache'], 'miss', 'refresh does not read, by meaning either');
    assert.equal(r.json.choices[0].message.content, 'c0 c1 ');
    assert.equal(await embCalls(), 2);
    const exact = await ask(gw, h.chatBody('where is the eiffel tower'));
    assert.equal(exact.headers['x-aiproxy-cache'], 'hit');
    assert.equal(exact.json.choices[0].message.content, 'c0 c1 ');
    const para = await ask(gw, h.chatBody('Where is the Eiffel tower'));
    assert.equal(para.headers['x-aiproxy-cache'], 'semantic_hit');
    assert.ok(['c0 c1 ', 'echo: Where is the Eiffel Tower?'].includes(para.json.choices[0].message.content));
    assert.equal((await posts()).length, 2);
  });

  test('semantic scopes: a tenant\'s paraphrase never finds another tenant\'s answer', { timeout: 15000 }, async (t) => {
    const keys = [{ key: 'k-a', name: 'a', tenant: 'ta' }, { key: 'k-b', name: 'b', tenant: 'tb' }];
    const gw = await h.gatewayFor(t, h.baseConfig({
      providers: {
        p1: h.provider(fake, { models }),
        emb: h.provider(`${emb.url}/v1`, { models: [{ name: 'sem-embed', openai_model: 'upstream-embed', capabilities: ['embeddings'], cost_per_1k_tokens: 0.0001 }] }),
      },
      extra: {
        cache: { enabled: true, mode: 'always', semantic: { enabled: true, embedding_model: 'sem-embed', threshold: 0.9 } },
        security: { auth: { enabled: true, api_keys: keys } },
      },
    }));
    const as = (key, text) => ask(gw, h.chatBody(text), { authorization: `Bearer ${key}` });
    assert.equal((await as('k-a', 'How tall is Mount Everest?')).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await as('k-b', 'how tall is mount everest')).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await as('k-b', 'How tall is Mount Everest?')).headers['x-aiproxy-cache'], 'semantic_hit', 'its own answer, by meaning');
    const own = await as('k-b', 'How tall is Mount Everest?');
    assert.equal(own.json.choices[0].message.content, 'echo: how tall is mount everest', 'tb\'s own answer, never ta\'s');
    assert.equal((await posts()).length, 2);
  });
});
