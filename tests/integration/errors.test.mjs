// Errors: every SPEC section 3 row that one node can produce, always in
// OpenAI's shape {"error":{"message","type","param","code"}}, never HTML.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import * as h from './harness.mjs';

after(() => h.killAll());

describe('request errors', () => {
  let fake;
  let gw;
  before(async () => {
    fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
    gw = await h.startGateway(h.baseConfig({
      fakePort: fake.port,
      server: { max_request_size: '1KB', read_timeout: '5s', write_timeout: '5s' },
    }));
  });
  beforeEach(() => fake.reset());

  const post = (body, headers) => h.request(gw.url + '/v1/chat/completions', { method: 'POST', body, headers: { 'content-type': 'application/json', ...(headers || {}) } });

  test('400 invalid_json for a body that is not JSON', { timeout: 5000 }, async () => {
    const r = await post('{"model": "gpt-test", "messages": [ this is not json');
    h.assertOpenAIError(r, 400, 'invalid_json');
    assert.equal((await fake.requests()).length, 0, 'nothing may reach the upstream');
  });

  test('400 invalid_json for a JSON body that is not an object', { timeout: 5000 }, async () => {
    const r = await post('[1,2,3]');
    assert.equal(r.status, 400, r.text);
    h.assertOpenAIError(r, 400);
  });

  test('400 param "messages" when messages is missing', { timeout: 5000 }, async () => {
    const r = await post(JSON.stringify({ model: 'gpt-test' }));
    h.assertOpenAIError(r, 400, undefined, 'messages');
    assert.equal((await fake.requests()).length, 0);
  });

  test('400 param "messages" when messages is not an array', { timeout: 5000 }, async () => {
    const r = await post(JSON.stringify({ model: 'gpt-test', messages: 'hi' }));
    h.assertOpenAIError(r, 400, undefined, 'messages');
  });

  test('400 param "model" when model is missing', { timeout: 5000 }, async () => {
    const r = await post(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }));
    h.assertOpenAIError(r, 400, undefined, 'model');
    assert.equal((await fake.requests()).length, 0);
  });

  test('400 param "model" when model is not a string', { timeout: 5000 }, async () => {
    const r = await post(JSON.stringify({ model: 42, messages: [{ role: 'user', content: 'hi' }] }));
    h.assertOpenAIError(r, 400, undefined, 'model');
  });

  test('404 model_not_found for a model nobody serves', { timeout: 5000 }, async () => {
    const r = await post(JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }));
    h.assertOpenAIError(r, 404, 'model_not_found');
    assert.equal((await fake.requests()).length, 0);
  });

  test('413 request_too_large: the whole oversized body is drained and the 413 is readable', { timeout: 10000 }, async () => {
    // 256 KB, far past 1KB and past socket buffers: a server that stops
    // reading and closes would make the client see a reset instead.
    const big = JSON.stringify(h.chatBody('y'.repeat(256 * 1024)));
    const r = await post(big);
    h.assertOpenAIError(r, 413, 'request_too_large');
    assert.equal((await fake.requests()).length, 0);
  });

  test('413 also for a chunked body over the limit', { timeout: 10000 }, async () => {
    const r = await new Promise((resolve, reject) => {
      const u = new URL(gw.url + '/v1/chat/completions');
      const req = http.request({ method: 'POST', hostname: u.hostname, port: u.port, path: u.pathname, agent: false,
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        let t = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { t += d; });
        res.on('end', () => { let json; try { json = JSON.parse(t); } catch { /* not json */ } resolve({ status: res.statusCode, headers: res.headers, text: t, json }); });
      });
      req.on('error', reject);
      const body = JSON.stringify(h.chatBody('z'.repeat(64 * 1024)));
      for (let i = 0; i < body.length; i += 4096) req.write(body.slice(i, i + 4096));
      req.end();
    });
    h.assertOpenAIError(r, 413, 'request_too_large');
  });

  test('a body just under the limit is accepted', { timeout: 5000 }, async () => {
    const r = await post(JSON.stringify(h.chatBody('a'.repeat(600))));
    assert.equal(r.status, 200, r.text);
  });

  test('malformed HTTP request line gets a 400 JSON answer', { timeout: 5000 }, async () => {
    const x = await h.rawExchange(gw.port, 'THIS IS NOT HTTP\r\n\r\n', { timeoutMs: 3000 });
    assert.ok(x.responses.length >= 1, `no HTTP response, got: ${JSON.stringify(x.text)}`);
    const r = x.responses[0];
    h.assertOpenAIError({ status: r.status, headers: r.headers, json: r.json, body: r.body }, 400);
  });

  test('unknown path gets a 404 JSON answer', { timeout: 5000 }, async () => {
    for (const p of ['/v1/nope', '/nope', '/v1/chat/completions/extra']) {
      const r = await h.request(gw.url + p);
      h.assertOpenAIError(r, 404);
    }
  });

  test('wrong method gets a 405 JSON answer', { timeout: 5000 }, async () => {
    const a = await h.request(gw.url + '/v1/chat/completions', { method: 'GET' });
    h.assertOpenAIError(a, 405);
    const b = await h.request(gw.url + '/v1/models', { method: 'POST', body: {} });
    h.assertOpenAIError(b, 405);
    const c = await h.request(gw.url + '/health', { method: 'DELETE' });
    h.assertOpenAIError(c, 405);
  });
});

describe('authentication', () => {
  let fake;
  let gw;
  before(async () => {
    fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
    gw = await h.startGateway(h.baseConfig({
      fakePort: fake.port,
      extra: { security: { auth: { enabled: true, api_keys: [{ key: 'k1', name: 't' }] } } },
    }));
  });
  beforeEach(() => fake.reset());
  const chat = (headers) => h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('auth me'), headers });

  test('401 invalid_api_key without a key', { timeout: 5000 }, async () => {
    h.assertOpenAIError(await chat({}), 401, 'invalid_api_key');
    assert.equal((await fake.requests()).length, 0);
  });

  test('401 invalid_api_key with an unknown key (Bearer and x-api-key)', { timeout: 5000 }, async () => {
    h.assertOpenAIError(await chat({ authorization: 'Bearer k2' }), 401, 'invalid_api_key');
    h.assertOpenAIError(await chat({ 'x-api-key': 'k1x' }), 401, 'invalid_api_key');
    h.assertOpenAIError(await chat({ authorization: 'Bearer k' }), 401, 'invalid_api_key');
    assert.equal((await fake.requests()).length, 0);
  });

  test('Bearer key accepted; the provider gets its own credential, not the client key', { timeout: 5000 }, async () => {
    const r = await chat({ authorization: 'Bearer k1' });
    assert.equal(r.status, 200, r.text);
    const [up] = await fake.requests();
    assert.equal(up.headers.authorization, 'Bearer sk-test-1');
    assert.equal(up.headers['x-api-key'], undefined, 'client x-api-key must not be forwarded');
  });

  test('x-api-key accepted', { timeout: 5000 }, async () => {
    const r = await chat({ 'x-api-key': 'k1' });
    assert.equal(r.status, 200, r.text);
    const [up] = await fake.requests();
    assert.equal(up.headers['x-api-key'], undefined, 'client x-api-key must not be forwarded');
  });

  test('/health and /ready need no key; /v1/models does', { timeout: 5000 }, async () => {
    assert.equal((await h.request(gw.url + '/health')).status, 200);
    assert.equal((await h.request(gw.url + '/ready')).status, 200);
    h.assertOpenAIError(await h.request(gw.url + '/v1/models'), 401, 'invalid_api_key');
    assert.equal((await h.request(gw.url + '/v1/models', { headers: { authorization: 'Bearer k1' } })).status, 200);
  });

  test('the key never appears in the logs', { timeout: 5000 }, async () => {
    await chat({ authorization: 'Bearer k1' });
    await chat({ authorization: 'Bearer secret-wrong-key-123' });
    await h.sleep(100);
    assert.ok(!gw.logs().includes('secret-wrong-key-123'), 'a client key was logged');
    assert.ok(!gw.logs().includes('sk-test-1'), 'a provider credential was logged');
  });
});

describe('upstream failures', () => {
  let f1;
  let f2;
  let gw;
  before(async () => {
    f1 = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
    f2 = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
    gw = await h.startGateway(h.baseConfig({
      port: 0,
      providers: {
        p1: h.provider(f1, { priority: 1, timeout: '1s', models: [h.model('gpt-test', 'upstream-gpt'), h.model('gpt-dual', 'upstream-gpt')] }),
        p2: h.provider(f2, { priority: 2, timeout: '1s', apiKey: 'sk-test-2', models: [h.model('gpt-dual', 'upstream-gpt')] }),
      },
      extra: { routing: { strategy: 'availability' } },
    }));
  });
  beforeEach(async () => { await f1.reset(); await f2.reset(); });

  test('502 upstream_error when every candidate fails; the message names each provider', { timeout: 10000 }, async () => {
    await f1.control({ default: { status: 500 } });
    await f2.control({ default: { status: 503 } });
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x', { model: 'gpt-dual' }) });
    const e = h.assertOpenAIError(r, 502, 'upstream_error');
    assert.match(e.message, /\bp1\b/, `message must name p1: ${e.message}`);
    assert.match(e.message, /\bp2\b/, `message must name p2: ${e.message}`);
    assert.ok((await f1.requests()).length >= 1);
    assert.ok((await f2.requests()).length >= 1);
  });

  test('504 timeout when the only candidate hangs past its timeout', { timeout: 10000 }, async () => {
    await f1.control({ default: { hang: true } });
    const t0 = Date.now();
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x'), timeoutMs: 8000 });
    const ms = Date.now() - t0;
    h.assertOpenAIError(r, 504, 'timeout');
    assert.ok(ms >= 900, `answered after ${ms} ms, before the 1s provider timeout`);
    assert.ok(ms < 4000, `answered after ${ms} ms, long after the 1s provider timeout`);
  });
});

describe('limits', () => {
  let fake;
  before(async () => {
    fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  });
  beforeEach(() => fake.reset());

  test('429 rate_limit_exceeded for a key over its rate_limit, with Retry-After', { timeout: 10000 }, async (t) => {
    const gw = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port,
      extra: { security: { auth: { enabled: true, api_keys: [{ key: 'k1', name: 'limited', rate_limit: 2 }, { key: 'k2', name: 'other' }] } } },
    }));
    const chat = (key) => h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('rl'), headers: { authorization: `Bearer ${key}` } });
    assert.equal((await chat('k1')).status, 200);
    assert.equal((await chat('k1')).status, 200);
    const r = await chat('k1');
    h.assertOpenAIError(r, 429, 'rate_limit_exceeded');
    const ra = r.headers['retry-after'];
    assert.ok(ra !== undefined, 'Retry-After header missing');
    assert.match(ra, /^\d+$/, `Retry-After must be integer seconds: ${ra}`);
    assert.ok(Number(ra) > 0 && Number(ra) <= 3600, `Retry-After ${ra}`);
    assert.equal((await fake.requests()).length, 2, 'the limited request must not reach the upstream');
    // Another key is not affected.
    assert.equal((await chat('k2')).status, 200);
  });

  test('429 budget_exceeded once the daily limit is spent, with x-should-retry: false', { timeout: 10000 }, async (t) => {
    const gw = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port,
      extra: { budget: { daily_limit: 0.01, monthly_limit: 100 } },
    }));
    // 20000 prompt tokens at 0.001/1k = 0.02 USD: over the 0.01 daily limit.
    await fake.control({ queue: [{ usage: { prompt_tokens: 20000, completion_tokens: 0 } }] });
    const first = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('spend') });
    assert.equal(first.status, 200, first.text);
    assert.ok(Math.abs(first.json['x-aiproxy'].cost - 0.02) < 1e-12, `cost ${first.json['x-aiproxy'].cost}`);
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('more') });
    h.assertOpenAIError(r, 429, 'budget_exceeded');
    assert.equal(r.headers['x-should-retry'], 'false');
    assert.equal((await fake.requests()).length, 1, 'the refused request must not reach the upstream');
  });
});
