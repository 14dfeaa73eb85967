// HTTPS on the gateway's own listeners (server.tls, observability.metrics.tls):
// the official `openai` SDK over TLS (chat and a stream), the protocol policy
// (TLS 1.1, weak ciphers, a client that does not trust us, ALPN), mutual TLS,
// and SIGHUP reloading the certificate without dropping a keep-alive
// connection or a stream in flight. Certificates are made by openssl per run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import OpenAI from 'openai';
import { Agent, fetch as undiciFetch } from 'undici';
import * as h from './harness.mjs';

let pki;
let fake;

/** The harness's CA and server cert, plus: a second server cert of the same
 * CA (for the reload), a client cert of the same CA, and an unrelated CA with
 * a client cert of its own. EC keys: fast to make. */
function makePki() {
  const base = h.makeTlsFixtures();
  const dir = base.dir;
  const f = (n) => path.join(dir, n);
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', f('other-ca.key'), '-out', f('other-ca.pem'), '-days', '2',
    '-subj', '/CN=unrelated CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const leaf = (name, cn, ca, usage, san) => {
    run(['req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`]);
    fs.writeFileSync(f(`${name}.ext`), `${san ? `subjectAltName=${san}\n` : ''}basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=${usage}\n`);
    run(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.pem`), '-CAkey', f(`${ca}.key`), '-CAcreateserial',
      '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`)]);
    return { cert: f(`${name}.pem`), key: f(`${name}.key`) };
  };
  return {
    dir,
    ca: base.ca,
    server: { cert: base.cert, key: base.key },
    server2: leaf('server2', 'localhost-renewed', 'ca', 'serverAuth', 'DNS:localhost,IP:127.0.0.1'),
    client: leaf('client', 'client-1', 'ca', 'clientAuth'),
    otherCa: f('other-ca.pem'),
    otherClient: leaf('other-client', 'client-x', 'other-ca', 'clientAuth'),
  };
}

before(async () => {
  pki = makePki();
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
});
after(() => h.killAll());

/** A TLS handshake only; resolves {ok, protocol, cipher, alpn, cert} or {error}. */
function handshake(port, o = {}) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fs.readFileSync(pki.ca), ...o });
    const timer = setTimeout(() => { s.destroy(); resolve({ error: 'timeout' }); }, 3000);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      const r = { ok: true, protocol: s.getProtocol(), cipher: s.getCipher().name, alpn: s.alpnProtocol, cert: s.getPeerCertificate() };
      // With TLS 1.3 a refused client certificate is reported after the
      // client's handshake is done: wait for a byte or the alert.
      s.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      let data = '';
      s.on('data', (d) => { data += d; });
      s.once('error', (e) => resolve({ error: e.code || e.message }));
      // (over h2 the server's first frame is its SETTINGS: type 4 at byte 3)
      const served = () => (s.alpnProtocol === 'h2' ? data.charCodeAt(3) === 4 : data.startsWith('HTTP/1.1 200'));
      s.once('close', () => resolve(served() ? r : { error: r.error || `closed: ${data.slice(0, 40)}` }));
    });
    s.once('error', (e) => { clearTimeout(timer); resolve({ error: e.code || e.message }); });
  });
}

async function metricValue(url, reqOpts, name) {
  const r = await h.request(url, reqOpts);
  assert.equal(r.status, 200, r.text);
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(r.text);
  return m ? Number(m[1]) : undefined;
}

function sdk(gw, dispatcher) {
  return new OpenAI({
    baseURL: gw.url + '/v1', apiKey: 'any-key', timeout: 8000, maxRetries: 0,
    fetch: undiciFetch, fetchOptions: { dispatcher },
  });
}

test('HTTPS client and metrics listeners: the openai SDK (chat, stream), policy, ALPN', { timeout: 20000 }, async (t) => {
  const metricsPort = await h.freePort();
  const gw = await h.gatewayFor(t, h.baseConfig({
    fakePort: fake.port,
    server: { tls: { cert_file: pki.server.cert, key_file: pki.server.key } },
    extra: { observability: { logging: { level: 'debug' }, metrics: { prometheus_port: metricsPort, tls: { cert_file: pki.server.cert, key_file: pki.server.key } } } },
  }), { tls: { ca: pki.ca } });
  assert.match(gw.url, /^https:/);
  const dispatcher = new Agent({ connect: { ca: fs.readFileSync(pki.ca) } });
  t.after(() => dispatcher.close());
  const client = sdk(gw, dispatcher);

  const r = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi over tls' }] });
  assert.equal(r.choices[0].message.content, 'echo: hi over tls');
  assert.equal(r['x-aiproxy'].provider, 'p1');

  const stream = await client.chat.completions.create({ model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'stream over tls' }] });
  let text = '';
  for await (const c of stream) if (c.choices[0] && c.choices[0].delta.content) text += c.choices[0].delta.content;
  assert.equal(text, 'echo: stream over tls');

  const port = gw.port;
  // TLS 1.3 by default; ALPN h2 first (SPEC section 10), http/1.1 when
  // that is all the client offers.
  const hs = await handshake(port, { ALPNProtocols: ['h2', 'http/1.1'] });
  assert.equal(hs.ok, true, JSON.stringify(hs));
  assert.equal(hs.protocol, 'TLSv1.3');
  assert.equal(hs.alpn, 'h2');
  const hs11 = await handshake(port, { ALPNProtocols: ['http/1.1'] });
  assert.equal(hs11.alpn, 'http/1.1', JSON.stringify(hs11));
  // TLS 1.2: ECDHE with an AEAD cipher.
  const hs12 = await handshake(port, { maxVersion: 'TLSv1.2' });
  assert.equal(hs12.protocol, 'TLSv1.2', JSON.stringify(hs12));
  assert.match(hs12.cipher, /^ECDHE-(RSA|ECDSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/);

  const metricsUrl = `https://127.0.0.1:${metricsPort}/metrics`;
  const failures0 = await metricValue(metricsUrl, { ca: pki.ca }, 'aiproxy_tls_handshake_failures_total');
  assert.equal(typeof failures0, 'number');

  // Refused: TLS 1.1, a CBC cipher without forward secrecy, an ALPN list
  // without our protocols, a client that trusts another CA (it alerts),
  // plain HTTP.
  const old = await handshake(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
  assert.ok(old.error, JSON.stringify(old));
  assert.match(old.error, /ALERT_PROTOCOL_VERSION/); // the server's refusal
  const weak = await handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' });
  assert.match(String(weak.error), /HANDSHAKE_FAILURE|NO_SHARED_CIPHER/, JSON.stringify(weak));
  const spdy = await handshake(port, { ALPNProtocols: ['spdy/3.1'] });
  assert.match(String(spdy.error), /NO_APPLICATION_PROTOCOL/, JSON.stringify(spdy));
  const wrongCa = await handshake(port, { ca: fs.readFileSync(pki.otherCa) });
  assert.match(String(wrongCa.error), /UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER/, JSON.stringify(wrongCa));
  await assert.rejects(h.request(`http://127.0.0.1:${port}/health`, { timeoutMs: 2000 }));

  // Each refusal was counted (the metrics listener itself speaks HTTPS).
  await h.waitFor(async () => (await metricValue(metricsUrl, { ca: pki.ca }, 'aiproxy_tls_handshake_failures_total')) >= failures0 + 5,
    3000, 50, 'handshake failures counted');
  // and logged at debug without anything secret
  await h.waitFor(() => /tls_handshake_failed/.test(gw.logs()), 2000, 25, 'debug log line');
  assert.doesNotMatch(gw.logs(), /PRIVATE KEY/);
  // Plain HTTP is refused on the TLS metrics port too.
  await assert.rejects(h.request(`http://127.0.0.1:${metricsPort}/metrics`, { timeoutMs: 2000 }));
});

test('mutual TLS: no client certificate or one of another CA is refused; one the CA signed is served', { timeout: 15000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.baseConfig({
    fakePort: fake.port,
    server: { tls: { cert_file: pki.server.cert, key_file: pki.server.key, client_ca_file: pki.ca } },
  }), { tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key } });

  const none = await handshake(gw.port);
  assert.ok(none.error, `no client cert must be refused: ${JSON.stringify(none)}`);
  const other = await handshake(gw.port, { cert: fs.readFileSync(pki.otherClient.cert), key: fs.readFileSync(pki.otherClient.key) });
  assert.ok(other.error, `a client cert of another CA must be refused: ${JSON.stringify(other)}`);
  const ok = await handshake(gw.port, { cert: fs.readFileSync(pki.client.cert), key: fs.readFileSync(pki.client.key) });
  assert.equal(ok.ok, true, JSON.stringify(ok));

  // The SDK with its client certificate.
  const dispatcher = new Agent({ connect: { ca: fs.readFileSync(pki.ca), cert: fs.readFileSync(pki.client.cert), key: fs.readFileSync(pki.client.key) } });
  t.after(() => dispatcher.close());
  const r = await sdk(gw, dispatcher).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'mtls' }] });
  assert.equal(r.choices[0].message.content, 'echo: mtls');
  // Without one, the SDK's request fails.
  const bare = new Agent({ connect: { ca: fs.readFileSync(pki.ca) } });
  t.after(() => bare.close());
  await assert.rejects(sdk(gw, bare).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] }));
});

/** One request on `agent` (keep-alive); resolves {status, text, serial, reused}. */
function agentGet(port, agent, p = '/health') {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: p, agent, servername: 'localhost' }, (res) => {
      const serial = res.socket.getPeerCertificate().serialNumber;
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text, serial, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('SIGHUP reloads the certificate: new connections get the new one, a keep-alive connection and a stream in flight go on; a broken file keeps the old one', { timeout: 20000 }, async (t) => {
  // The gateway reads its own copies, replaced in place as a renewal does.
  const dir = h.tempDir('aiproxy-https-reload-');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  fs.copyFileSync(pki.server.cert, certFile);
  fs.copyFileSync(pki.server.key, keyFile);
  const gw = await h.gatewayFor(t, h.baseConfig({
    fakePort: fake.port, server: { tls: { cert_file: certFile, key_file: keyFile } },
  }), { tls: { ca: pki.ca } });
  const serialOf = async () => {
    const hs = await handshake(gw.port);
    assert.equal(hs.ok, true, JSON.stringify(hs));
    return hs.cert.serialNumber;
  };
  const serial1 = await serialOf();

  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: fs.readFileSync(pki.ca) });
  t.after(() => agent.destroy());
  const first = await agentGet(gw.port, agent);
  assert.equal(first.status, 200);
  assert.equal(first.serial, serial1);

  // A stream that spans the reload (8 chunks 150 ms apart).
  await fake.control({ default: { chunkDelayMs: 150, chunks: 8 } });
  t.after(() => fake.reset());
  const dispatcher = new Agent({ connect: { ca: fs.readFileSync(pki.ca) } });
  t.after(() => dispatcher.close());
  const stream = await sdk(gw, dispatcher).chat.completions.create({ model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'across the reload' }] });
  const streamDone = (async () => {
    let n = 0;
    let last;
    for await (const c of stream) { n++; last = c; }
    return { n, last };
  })();

  fs.copyFileSync(pki.server2.cert, certFile);
  fs.copyFileSync(pki.server2.key, keyFile);
  gw.proc.kill('SIGHUP');
  let serial2;
  await h.waitFor(async () => { serial2 = await serialOf(); return serial2 !== serial1; }, 5000, 50, 'the new certificate served');
  const hs2 = await handshake(gw.port);
  assert.equal(hs2.cert.subject.CN, 'localhost-renewed');

  // The keep-alive connection made before the reload is still there, on the old certificate.
  const again = await agentGet(gw.port, agent);
  assert.equal(again.status, 200);
  assert.equal(again.reused, true, 'the keep-alive connection was reused');
  assert.equal(again.serial, serial1);
  const { n, last } = await streamDone;
  assert.ok(n >= 8, `chunks: ${n}`);
  assert.equal(last['x-aiproxy'].provider, 'p1');
  assert.match(gw.logs(), /tls_reloaded.*localhost-renewed/);

  // A broken certificate file: the reload is refused, the last good one serves.
  fs.writeFileSync(certFile, '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n');
  gw.proc.kill('SIGHUP');
  await h.waitFor(() => /config_rejected[^\n]*server\.tls/.test(gw.logs()), 5000, 25, 'the reload refused');
  assert.equal(await serialOf(), serial2);
  const still = await agentGet(gw.port, agent);
  assert.equal(still.status, 200);
  assert.equal(still.serial, serial1);
});

test('a large stream to a client that stops reading for a while arrives whole over TLS', { timeout: 15000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.baseConfig({
    fakePort: fake.port, server: { tls: { cert_file: pki.server.cert, key_file: pki.server.key } },
  }), { tls: { ca: pki.ca } });
  await fake.control({ default: { bigResponseBytes: 3 * 1024 * 1024 } });
  t.after(() => fake.reset());
  const body = JSON.stringify(h.chatBody('big', { stream: true }));
  const text = await new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: gw.port, method: 'POST', path: '/v1/chat/completions', agent: false,
      ca: fs.readFileSync(pki.ca), servername: 'localhost',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      // Stop reading: the gateway's socket fills and its TLS writes are refused mid-record.
      res.pause();
      setTimeout(() => {
        let out = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { out += d; });
        res.on('end', () => resolve(out));
        res.on('error', reject);
        res.resume();
      }, 700);
    });
    req.on('error', reject);
    req.end(body);
  });
  const events = h.parseSse(text);
  let content = '';
  for (const e of events) {
    if (e === '[DONE]') continue;
    const j = JSON.parse(e);
    if (j.choices && j.choices[0] && j.choices[0].delta.content) content += j.choices[0].delta.content;
  }
  assert.equal(content.length, 3 * 1024 * 1024);
  assert.match(content, /^x+$/);
  assert.equal(events.at(-1), '[DONE]');
});

test('config: server.tls needs cert_file and key_file together, and readable files', { timeout: 10000 }, async () => {
  const dir = h.tempDir('aiproxy-https-cfg-');
  const check = (cfg) => {
    const file = path.join(dir, 'c.json');
    fs.writeFileSync(file, JSON.stringify(cfg));
    try {
      execFileSync(h.AIPROXYD, ['--config', file, '--check'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      return { code: 0, out: '' };
    } catch (e) {
      return { code: e.status, out: String(e.stderr) + String(e.stdout) };
    }
  };
  const base = (tlsSection) => h.baseConfig({ fakePort: fake.port, port: 18080, server: { tls: tlsSection } });
  let r = check(base({ cert_file: pki.server.cert }));
  assert.equal(r.code, 2);
  assert.match(r.out, /c\.json:\d+: server\.tls\.key_file: missing/);
  r = check(base({ cert_file: pki.server.cert, key_file: path.join(dir, 'absent.key') }));
  assert.equal(r.code, 2);
  assert.match(r.out, /c\.json:\d+: server\.tls\.key_file: cannot read '.*absent\.key'/);
  r = check(base({ client_ca_file: pki.ca }));
  assert.equal(r.code, 2);
  assert.match(r.out, /server\.tls\.client_ca_file: needs cert_file and key_file/);
  r = check(h.baseConfig({ fakePort: fake.port, port: 18080, extra: { observability: { metrics: { prometheus_port: 9999, tls: { key_file: pki.server.key } } } } }));
  assert.equal(r.code, 2);
  assert.match(r.out, /observability\.metrics\.tls\.cert_file: missing/);
  r = check(base({ cert_file: pki.server.cert, key_file: pki.server.key, client_ca_file: pki.ca }));
  assert.equal(r.code, 0, r.out);
});

test('h2 over TLS on the client listener (ALPN): chat and a stream on one connection', { timeout: 15000 }, async (t) => {
  const http2 = await import('node:http2');
  const gw = await h.gatewayFor(t, h.baseConfig({
    fakePort: fake.port,
    server: { tls: { cert_file: pki.server.cert, key_file: pki.server.key } },
  }), { tls: { ca: pki.ca } });
  const session = http2.connect(gw.url, { ca: fs.readFileSync(pki.ca), servername: 'localhost' });
  t.after(() => session.close());
  const call = (body) => new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
    let data = '';
    let headers;
    req.on('response', (hd) => { headers = hd; });
    req.setEncoding('utf8');
    req.on('data', (d) => { data += d; });
    req.on('end', () => resolve({ headers, data }));
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
  const [whole, streamed] = await Promise.all([
    call({ model: 'gpt-test', messages: [{ role: 'user', content: 'h2 tls' }] }),
    call({ model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'h2 tls stream' }] }),
  ]);
  assert.equal(session.alpnProtocol, 'h2');
  assert.equal(whole.headers[':status'], 200);
  assert.equal(JSON.parse(whole.data).choices[0].message.content, 'echo: h2 tls');
  assert.equal(streamed.headers[':status'], 200);
  assert.match(streamed.data, /data: \[DONE\]/);
});
