// Rate limits: exact under 100 concurrent clients, OpenAI's headers
// (x-ratelimit-limit/remaining/reset-requests, Retry-After), per client IP
// with X-Forwarded-For believed only from trusted proxies, requests and
// tokens per minute.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

const GO_DURATION = /^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$|^0s$/;

describe('rate limits', () => {
  let fake;
  before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
  after(() => h.killAll());

  const chat = (gw, headers = {}, body = h.chatBody('rl')) =>
    h.request(gw.url + '/v1/chat/completions', { body, headers, timeoutMs: 15000 });

  test('a key limit is exact under 100 concurrent clients, with OpenAI\'s headers', { timeout: 20000 }, async (t) => {
    const gw = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port, server: { workers: 4 },
      extra: { security: { auth: { enabled: true, api_keys: [{ key: 'k1', name: 'team', rate_limit: 30 }] } } },
    }));
    await fake.reset();
    const rs = await Promise.all(Array.from({ length: 100 }, () => chat(gw, { authorization: 'Bearer k1' })));
    const ok = rs.filter((r) => r.status === 200);
    assert.equal(ok.length, 30);
    assert.equal(rs.filter((r) => r.status === 429).length, 70);
    assert.equal((await fake.requests()).length, 30);
    const remaining = ok.map((r) => Number(r.headers['x-ratelimit-remaining-requests'])).sort((a, b) => a - b);
    assert.deepEqual(remaining, Array.from({ length: 30 }, (_, i) => i), 'each success saw a distinct remaining count');
    for (const r of ok) {
      assert.equal(r.headers['x-ratelimit-limit-requests'], '30');
      assert.match(r.headers['x-ratelimit-reset-requests'], GO_DURATION);
    }
    const refused = rs.find((r) => r.status === 429);
    h.assertOpenAIError(refused, 429, 'rate_limit_exceeded');
    assert.equal(refused.headers['x-ratelimit-remaining-requests'], '0');
    assert.equal(refused.headers['retry-after'], '120'); // one request per 3600/30 s
    assert.match(refused.headers['x-ratelimit-reset-requests'], /^(59m\d+(\.\d+)?s|1h0m0s)$/);
  });

  test('per client IP: X-Forwarded-For only from trusted proxies', { timeout: 20000 }, async (t) => {
    const rl = { enabled: true, default_limit: 3, by_ip: true, by_api_key: false };
    const trusted = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port, extra: { security: { rate_limiting: { ...rl, trusted_proxies: ['127.0.0.0/8'] } } },
    }));
    for (let i = 0; i < 3; i++) assert.equal((await chat(trusted, { 'x-forwarded-for': '198.51.100.7' })).status, 200);
    const r = await chat(trusted, { 'x-forwarded-for': '198.51.100.7' });
    h.assertOpenAIError(r, 429, 'rate_limit_exceeded');
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.equal((await chat(trusted, { 'x-forwarded-for': '198.51.100.8' })).status, 200, 'another client is not affected');
    // A client cannot escape by prepending addresses: the right-most untrusted hop counts.
    h.assertOpenAIError(await chat(trusted, { 'x-forwarded-for': '1.2.3.4, 198.51.100.7' }), 429, 'rate_limit_exceeded');

    const untrusted = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: { security: { rate_limiting: rl } } }));
    for (let i = 0; i < 3; i++) assert.equal((await chat(untrusted, { 'x-forwarded-for': `203.0.113.${i}` })).status, 200);
    h.assertOpenAIError(await chat(untrusted, { 'x-forwarded-for': '203.0.113.99' }), 429, 'rate_limit_exceeded');
  });

  test('requests and tokens per minute', { timeout: 20000 }, async (t) => {
    const gw = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port,
      extra: { security: { auth: { enabled: true, api_keys: [
        { key: 'rpm', name: 'rpm', requests_per_minute: 2 },
        { key: 'tpm', name: 'tpm', tokens_per_minute: 100 },
      ] } } },
    }));
    assert.equal((await chat(gw, { authorization: 'Bearer rpm' })).status, 200);
    assert.equal((await chat(gw, { authorization: 'Bearer rpm' })).status, 200);
    const r = await chat(gw, { authorization: 'Bearer rpm' });
    h.assertOpenAIError(r, 429, 'rate_limit_exceeded');
    assert.equal(r.headers['x-ratelimit-limit-requests'], '2');
    assert.ok(Number(r.headers['retry-after']) <= 30);
    // max_tokens 60 + 1 prompt token fits in 100 once.
    const body = h.chatBody('hi', { max_tokens: 60 });
    await fake.control({ default: { usage: { prompt_tokens: 1, completion_tokens: 60 } } });
    assert.equal((await chat(gw, { authorization: 'Bearer tpm' }, body)).status, 200);
    h.assertOpenAIError(await chat(gw, { authorization: 'Bearer tpm' }, body), 429, 'rate_limit_exceeded');
    await fake.control({ default: {} });
  });
});
