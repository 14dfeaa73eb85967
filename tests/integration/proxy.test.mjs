// HTTPS_PROXY / NO_PROXY from the environment are honoured for upstream
// connections: an https upstream is reached through an HTTP CONNECT tunnel.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let tls;
let fake;
let proxy;

before(async () => {
  tls = h.makeTlsFixtures();
  fake = await h.startFake({ name: 'tlsfake', apiKey: 'sk-test-1', tlsCert: tls.cert, tlsKey: tls.key });
  proxy = await h.startProxy();
});
after(() => h.killAll());
beforeEach(async () => { await fake.reset(); await proxy.reset(); });

const cfg = () => h.baseConfig({
  endpoint: `https://localhost:${fake.port}/v1`,
  provider: { tls_ca_file: tls.ca, timeout: '3s' },
});

test('HTTPS_PROXY: the upstream is reached through a CONNECT tunnel', { timeout: 15000 }, async (t) => {
  const gw = await h.gatewayFor(t, cfg(), { env: { HTTPS_PROXY: proxy.url } });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('via proxy'), timeoutMs: 8000 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, 'echo: via proxy');
  const log = await proxy.log();
  const targets = log.map((e) => `${e.method} ${e.target}`);
  assert.ok(targets.includes(`CONNECT localhost:${fake.port}`), `proxy log: ${JSON.stringify(targets)}`);
  assert.ok(log.every((e) => e.method === 'CONNECT'), `only CONNECT may be sent to the proxy: ${JSON.stringify(targets)}`);
  assert.equal((await fake.requests()).length, 1);
});

test('lower-case https_proxy works too', { timeout: 15000 }, async (t) => {
  const gw = await h.gatewayFor(t, cfg(), { env: { https_proxy: proxy.url } });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('via proxy'), timeoutMs: 8000 });
  assert.equal(r.status, 200, r.text);
  const log = await proxy.log();
  assert.ok(log.some((e) => e.target === `localhost:${fake.port}`), JSON.stringify(log.map((e) => e.target)));
});

test('NO_PROXY=localhost bypasses the proxy', { timeout: 15000 }, async (t) => {
  const gw = await h.gatewayFor(t, cfg(), { env: { HTTPS_PROXY: proxy.url, NO_PROXY: 'localhost' } });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('direct'), timeoutMs: 8000 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(await proxy.log(), [], 'the proxy must not be used for a NO_PROXY host');
  assert.equal((await fake.requests()).length, 1);
});

test('a dead proxy is an upstream failure (502), not a hang', { timeout: 15000 }, async (t) => {
  const dead = await h.freePort();
  const gw = await h.gatewayFor(t, cfg(), { env: { HTTPS_PROXY: `http://127.0.0.1:${dead}` } });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('nowhere'), timeoutMs: 8000 });
  h.assertOpenAIError(r, 502, 'upstream_error');
  assert.equal((await fake.requests()).length, 0);
});
