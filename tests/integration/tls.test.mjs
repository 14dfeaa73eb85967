// TLS to upstreams: verification on by default, tls_ca_file for a private CA,
// host name checked, tls_insecure_skip_verify as the explicit escape hatch.
// The CA and certificates are made by openssl into a temp dir per run.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';

let tls;
let good; // cert for localhost + 127.0.0.1
let wrong; // cert for wrong.example only
let gw;
let longCaDir; // a directory whose path is longer than 700 bytes

before(async () => {
  tls = h.makeTlsFixtures();
  // Two CA files whose paths share their first 700+ bytes: the right CA and
  // a certificate that is no CA. Connections verified with one must never
  // be reused for the other.
  longCaDir = path.join(h.tempDir('aiproxy-longca-'), ...Array(8).fill('d'.repeat(90)));
  fs.mkdirSync(longCaDir, { recursive: true });
  fs.copyFileSync(tls.ca, path.join(longCaDir, 'a-right.pem'));
  fs.copyFileSync(tls.wrongCert, path.join(longCaDir, 'b-notca.pem'));
  good = await h.startFake({ name: 'good', apiKey: 'sk-test-1', tlsCert: tls.cert, tlsKey: tls.key });
  wrong = await h.startFake({ name: 'wrong', apiKey: 'sk-test-1', tlsCert: tls.wrongCert, tlsKey: tls.wrongKey });
  const p = (endpoint, modelName, extra) => ({
    type: 'openai', endpoint, priority: 1, timeout: '2s',
    credentials: { api_key: 'sk-test-1' },
    models: [h.model(modelName, 'upstream-gpt')],
    ...extra,
  });
  gw = await h.startGateway(h.baseConfig({
    providers: {
      ca_host: p(`https://localhost:${good.port}/v1`, 'tls-ok', { tls_ca_file: tls.ca }),
      ca_ip: p(`https://127.0.0.1:${good.port}/v1`, 'tls-ip', { tls_ca_file: tls.ca }),
      no_ca: p(`https://localhost:${good.port}/v1`, 'tls-noca'),
      bad_name: p(`https://localhost:${wrong.port}/v1`, 'tls-wrongname', { tls_ca_file: tls.ca }),
      insecure: p(`https://localhost:${wrong.port}/v1`, 'tls-insecure', { tls_insecure_skip_verify: true }),
      long_right: p(`https://localhost:${good.port}/v1`, 'tls-long-right', { tls_ca_file: path.join(longCaDir, 'a-right.pem') }),
      long_notca: p(`https://localhost:${good.port}/v1`, 'tls-long-notca', { tls_ca_file: path.join(longCaDir, 'b-notca.pem') }),
    },
  }));
});
after(() => h.killAll());
beforeEach(async () => { await good.reset(); await wrong.reset(); });

const chat = (model) => h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('over tls', { model }), timeoutMs: 8000 });

test('https upstream verified with tls_ca_file (by host name) works', { timeout: 10000 }, async () => {
  const r = await chat('tls-ok');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, 'echo: over tls');
  assert.equal(r.json['x-aiproxy'].provider, 'ca_host');
  const [up] = await good.requests();
  assert.equal(up.headers.authorization, 'Bearer sk-test-1');
  assert.equal(up.body.model, 'upstream-gpt');
});

test('https upstream verified with tls_ca_file (by IP SAN) works', { timeout: 10000 }, async () => {
  const r = await chat('tls-ip');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].provider, 'ca_ip');
});

test('https upstream signed by an unknown CA -> 502, nothing sent', { timeout: 10000 }, async () => {
  const r = await chat('tls-noca');
  h.assertOpenAIError(r, 502, 'upstream_error');
  assert.match(r.json.error.message, /no_ca/);
  assert.equal((await good.requests()).length, 0, 'no request may be sent over an unverified connection');
});

test('https upstream whose certificate names another host -> 502, nothing sent', { timeout: 10000 }, async () => {
  const r = await chat('tls-wrongname');
  h.assertOpenAIError(r, 502, 'upstream_error');
  assert.match(r.json.error.message, /bad_name/);
  assert.equal((await wrong.requests()).length, 0, 'no request may be sent to a host with the wrong name');
});

test('tls_insecure_skip_verify accepts that same certificate', { timeout: 10000 }, async () => {
  const r = await chat('tls-insecure');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].provider, 'insecure');
});

test('CA files with long paths alike are told apart: a verified connection is not reused for the other', { timeout: 20000 }, async () => {
  assert.ok(longCaDir.length > 700);
  // Several requests, so that every worker holds a verified connection.
  for (let i = 0; i < 8; i++) {
    const ok = await chat('tls-long-right');
    assert.equal(ok.status, 200, ok.text);
  }
  for (let i = 0; i < 8; i++) {
    const r = await chat('tls-long-notca');
    h.assertOpenAIError(r, 502, 'upstream_error');
    assert.match(r.json.error.message, /long_notca/);
  }
  assert.equal((await good.requests()).length, 8, 'only the verified requests reached the upstream');
});
