// CORS: preflights answered for allowed origins only; allowed origins get
// Access-Control-Allow-Origin on normal responses; others get nothing.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

describe('cors', () => {
  let fake, gw;
  before(async () => {
    fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
    gw = await h.startGateway(h.baseConfig({
      fakePort: fake.port,
      extra: { security: {
        auth: { enabled: true, api_keys: [{ key: 'k1', name: 'web' }] },
        cors: { allowed_origins: ['http://localhost:3000', 'https://app.example'] },
      } },
    }));
  });
  after(() => h.killAll());

  const preflight = (origin, reqHeaders = 'authorization, content-type') => h.request(gw.url + '/v1/chat/completions', {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': reqHeaders },
  });

  test('an allowed origin\'s preflight gets 204 with Access-Control-Allow-*, no key needed', async () => {
    const r = await preflight('http://localhost:3000');
    assert.equal(r.status, 204);
    assert.equal(r.headers['access-control-allow-origin'], 'http://localhost:3000');
    assert.match(r.headers['access-control-allow-methods'], /POST/);
    assert.equal(r.headers['access-control-allow-headers'], 'authorization, content-type');
    assert.ok(Number(r.headers['access-control-max-age']) > 0);
    assert.match(r.headers.vary, /Origin/);
  });

  test('another origin\'s preflight gets no CORS headers', async () => {
    const r = await preflight('https://evil.example');
    assert.notEqual(r.status, 204);
    for (const k of Object.keys(r.headers)) assert.ok(!k.startsWith('access-control-'), k);
    // A header list that could break the response head is not echoed.
    const odd = await preflight('https://app.example', 'x-a; evil="1"');
    assert.equal(odd.status, 204);
    assert.doesNotMatch(odd.headers['access-control-allow-headers'], /evil/);
  });

  test('normal responses carry Access-Control-Allow-Origin for allowed origins only', async () => {
    const ok = await h.request(gw.url + '/v1/chat/completions', {
      body: h.chatBody('c'), headers: { origin: 'https://app.example', authorization: 'Bearer k1' },
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example');
    assert.match(ok.headers['access-control-expose-headers'], /x-aiproxy-request-id/);
    const err = await h.request(gw.url + '/v1/models', { headers: { origin: 'https://app.example' } });
    assert.equal(err.status, 401);
    assert.equal(err.headers['access-control-allow-origin'], 'https://app.example', 'errors are readable too');
    const other = await h.request(gw.url + '/v1/chat/completions', {
      body: h.chatBody('c'), headers: { origin: 'https://evil.example', authorization: 'Bearer k1' },
    });
    assert.equal(other.status, 200);
    assert.equal(other.headers['access-control-allow-origin'], undefined);
  });
});
