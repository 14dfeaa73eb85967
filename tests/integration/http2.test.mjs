// HTTP/2 on the client listener (SPEC section 10): h2c with prior knowledge
// (detected from the preface, HTTP/1.1 still served on the same port) and h2
// by ALPN over TLS (tested on the mesh listener, the one with TLS on this
// branch). Every endpoint over HTTP/2, SSE streams multiplexed on one
// connection, per-stream flow control (a paused stream does not hold up the
// others), the HTTP/1.1 limits (413, 431), REFUSED_STREAM past
// SETTINGS_MAX_CONCURRENT_STREAMS, RST_STREAM cancelling the upstream call,
// GOAWAY on drain, and a documented subset of h2spec's cases sent as raw
// frames (Debian has no h2spec): the error code must be the RFC's, and the
// gateway must keep serving.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import * as h from './harness.mjs';

const MAX_BODY = 64 * 1024;
let fake;
let gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({
    fakePort: fake.port,
    server: { max_request_size: '64KB', max_header_size: '4KB', write_timeout: '10s', read_timeout: '10s' },
  }));
});
after(() => h.killAll());
beforeEach(() => fake.reset());

// ---- a node:http2 client ----

function connect(url = gw.url, o = {}) {
  const s = http2.connect(url, o);
  s.on('error', () => {});
  return s;
}

/** One request on session `s`; resolves {status, headers, text, json}. */
function h2req(s, p, { method = 'GET', body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const hdrs = { ':method': method, ':path': p, ...headers };
    let data;
    if (body !== undefined) {
      data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      if (!hdrs['content-type']) hdrs['content-type'] = 'application/json';
    }
    const st = s.request(hdrs, { endStream: data === undefined });
    let status;
    let rh;
    const parts = [];
    st.on('response', (x) => { status = x[':status']; rh = x; });
    st.on('data', (c) => parts.push(c));
    st.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      let json;
      try { json = JSON.parse(text); } catch { /* not JSON */ }
      resolve({ status, headers: rh, text, json, stream: st });
    });
    st.on('error', reject);
    if (data !== undefined) st.end(data);
  });
}

const chat = (s, text, extra) => h2req(s, '/v1/chat/completions', { method: 'POST', body: h.chatBody(text, extra) });

// ---- raw frames (for the h2spec cases and REFUSED_STREAM) ----

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const T = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 };
const E = { NO_ERROR: 0, PROTOCOL_ERROR: 1, FLOW_CONTROL_ERROR: 3, STREAM_CLOSED: 5, FRAME_SIZE_ERROR: 6, REFUSED_STREAM: 7, COMPRESSION_ERROR: 9 };

function frame(type, flags, stream, payload = Buffer.alloc(0)) {
  const hd = Buffer.alloc(9);
  hd.writeUIntBE(payload.length, 0, 3);
  hd[3] = type;
  hd[4] = flags;
  hd.writeUInt32BE(stream, 5);
  return Buffer.concat([hd, payload]);
}

function hpackInt(n, prefixBits, first = 0) {
  const max = (1 << prefixBits) - 1;
  if (n < max) return Buffer.from([first | n]);
  const out = [first | max];
  n -= max;
  while (n >= 128) { out.push((n % 128) + 128); n = Math.floor(n / 128); }
  out.push(n);
  return Buffer.from(out);
}

/** HPACK block of literal fields without indexing (no Huffman). */
function hpack(fields) {
  const parts = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    parts.push(Buffer.from([0]), hpackInt(n.length, 7), n, hpackInt(v.length, 7), v);
  }
  return Buffer.concat(parts);
}

const getHealth = (extra = []) => [[':method', 'GET'], [':scheme', 'http'], [':path', '/health'], [':authority', 'x'], ...extra];

function parseFrames(buf) {
  const frames = [];
  let off = 0;
  while (off + 9 <= buf.length) {
    const len = buf.readUIntBE(off, 3);
    if (off + 9 + len > buf.length) break;
    const f = { type: buf[off + 3], flags: buf[off + 4], stream: buf.readUInt32BE(off + 5) & 0x7fffffff, payload: buf.subarray(off + 9, off + 9 + len) };
    if (f.type === T.GOAWAY) f.error = f.payload.readUInt32BE(4);
    if (f.type === T.RST_STREAM) f.error = f.payload.readUInt32BE(0);
    frames.push(f);
    off += 9 + len;
  }
  return frames;
}

/**
 * Connects, writes `data` (a Buffer, or a function of nothing returning
 * Buffers to write one after another), collects the server's frames until it
 * closes, `until(frames)` holds, or waitMs passes. Skips the preface check:
 * what is written is the caller's. Resolves {frames, closed, raw}.
 */
function rawH2(port, chunks, { until = () => false, waitMs = 3000 } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const got = [];
    let closed = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const raw = Buffer.concat(got);
      resolve({ frames: parseFrames(raw), closed, raw });
    };
    const timer = setTimeout(finish, waitMs);
    sock.on('data', (d) => { got.push(d); if (until(parseFrames(Buffer.concat(got)))) finish(); });
    sock.on('close', () => { closed = true; finish(); });
    sock.on('error', () => {});
    sock.on('connect', async () => {
      for (const c of chunks) {
        if (typeof c === 'number') await h.sleep(c);
        else sock.write(c);
      }
    });
  });
}

const hello = () => Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0)]);
const goawayWith = (r) => r.frames.find((f) => f.type === T.GOAWAY);
const rstOn = (r, id) => r.frames.find((f) => f.type === T.RST_STREAM && f.stream === id);

async function stillServing() {
  const s = connect();
  try {
    const r = await h2req(s, '/health');
    assert.equal(r.status, 200);
  } finally { s.close(); }
}

// ---- endpoints ----

test('h2c chat: OpenAI body, x-aiproxy headers, no connection-specific headers', async () => {
  const s = connect();
  try {
    const r = await chat(s, 'hello over h2');
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].message.content, 'echo: hello over h2');
    assert.equal(r.json['x-aiproxy'].provider, 'p1');
    assert.equal(r.headers['x-aiproxy-node'], 'test-node');
    assert.match(r.headers['x-aiproxy-request-id'], /^req_/);
    assert.equal(r.headers['x-aiproxy-provider'], 'p1');
    assert.equal(Number(r.headers['content-length']), Buffer.byteLength(r.text));
    for (const k of ['connection', 'keep-alive', 'transfer-encoding']) assert.equal(r.headers[k], undefined, k);
    const up = (await fake.requests())[0];
    assert.equal(up.body.messages[0].content, 'hello over h2');
  } finally { s.close(); }
});

test('h2c models, health, errors in OpenAI shape', async () => {
  const s = connect();
  try {
    const m = await h2req(s, '/v1/models');
    assert.equal(m.status, 200);
    assert.ok(m.json.data.some((x) => x.id === 'gpt-test'));
    const bad = await h2req(s, '/v1/chat/completions', { method: 'POST', body: '{"model":' });
    h.assertOpenAIError(bad, 400);
    const nf = await chat(s, 'x', { model: 'no-such-model' });
    h.assertOpenAIError(nf, 404, 'model_not_found');
    const missing = await h2req(s, '/v1/nothing-here');
    assert.equal(missing.status, 404);
    assert.ok(missing.json.error);
  } finally { s.close(); }
});

test('HTTP/1.1 keeps working on the same port', async () => {
  const r = await h.request(gw.url + '/v1/chat/completions', { method: 'POST', body: h.chatBody('one one') });
  assert.equal(r.status, 200);
  assert.equal(r.json.choices[0].message.content, 'echo: one one');
  const raw = await h.rawExchange(gw.port, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(raw.text, /^HTTP\/1\.1 200/);
});

test('curl --http2-prior-knowledge chat', async () => {
  const out = await new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--http2-prior-knowledge', '-o', '-', '-w', '\n%{http_version} %{http_code}',
      '-H', 'content-type: application/json', '-d', JSON.stringify(h.chatBody('from curl')),
      `${gw.url}/v1/chat/completions`], { timeout: 10000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
  const [body, tail] = out.split('\n');
  assert.equal(tail, '2 200');
  assert.equal(JSON.parse(body).choices[0].message.content, 'echo: from curl');
});

// ---- streams ----

test('many SSE streams multiplexed on one connection', { timeout: 20000 }, async () => {
  await fake.control({ default: { chunks: 5, chunkDelayMs: 20 } });
  const s = connect();
  try {
    const rs = await Promise.all(Array.from({ length: 24 }, (_, i) => chat(s, `stream ${i}`, { stream: true })));
    for (const r of rs) {
      assert.equal(r.status, 200);
      assert.match(r.headers['content-type'], /text\/event-stream/);
      const ev = h.parseSse(r.text);
      assert.equal(ev[ev.length - 1], '[DONE]');
      const content = ev.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e))
        .map((j) => (j.choices && j.choices[0] && j.choices[0].delta.content) || '').join('');
      assert.equal(content, 'c0 c1 c2 c3 c4 ');
    }
    const ups = await fake.requests();
    assert.equal(ups.length, 24);
  } finally { s.close(); }
});

test('a paused stream does not block another on the same connection', { timeout: 30000 }, async () => {
  await fake.control({ queue: [{ bigResponseBytes: 3_000_000 }] });
  const s = connect();
  try {
    const big = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
    big.end(JSON.stringify(h.chatBody('big', { stream: true })));
    const parts = [];
    big.on('data', (c) => parts.push(c));
    big.pause();
    const bigDone = new Promise((resolve, reject) => { big.on('end', resolve); big.on('error', reject); });
    await h.waitFor(async () => (await fake.requests()).length === 1, 5000, 25, 'the big request upstream');
    await h.sleep(300); // let the big stream fill its window and the gateway's buffer
    const small = await chat(s, 'small while big waits');
    assert.equal(small.status, 200);
    assert.equal(small.json.choices[0].message.content, 'echo: small while big waits');
    big.resume();
    await bigDone;
    const ev = h.parseSse(Buffer.concat(parts).toString('utf8'));
    assert.equal(ev[ev.length - 1], '[DONE]');
    const content = ev.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e))
      .map((j) => (j.choices && j.choices[0] && j.choices[0].delta.content) || '').join('');
    assert.equal(content.length, 3_000_000);
  } finally { s.close(); }
});

test('RST_STREAM from the client cancels the upstream call', { timeout: 20000 }, async () => {
  await fake.control({ queue: [{ chunks: 50, chunkDelayMs: 100 }] });
  const s = connect();
  try {
    const st = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
    st.on('error', () => {});
    st.end(JSON.stringify(h.chatBody('cancel me', { stream: true })));
    await new Promise((resolve) => st.once('data', resolve));
    st.close(http2.constants.NGHTTP2_CANCEL);
    await h.waitFor(async () => {
      const rq = await fake.requests();
      return rq.length === 1 && rq[0].clientClosed;
    }, 5000, 50, 'the upstream request closed');
    // The connection itself goes on.
    const r = await chat(s, 'after cancel');
    assert.equal(r.status, 200);
  } finally { s.close(); }
});

test('a stream whose window stays closed past write_timeout is cancelled alone', { timeout: 30000 }, async (t) => {
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, server: { write_timeout: '1s' } }));
  // Larger than what the loopback's socket buffers absorb, so that the
  // upstream is still sending when the stream is cancelled.
  await fake.control({ queue: [{ bigResponseBytes: 20_000_000 }] });
  const s = connect(g.url);
  try {
    const big = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
    big.end(JSON.stringify(h.chatBody('never read', { stream: true })));
    big.pause();
    const closed = new Promise((resolve) => { big.on('close', () => resolve(big.rstCode)); big.on('error', () => {}); });
    assert.equal(await closed, http2.constants.NGHTTP2_CANCEL);
    await h.waitFor(async () => (await fake.requests())[0]?.clientClosed, 5000, 50, 'the upstream request closed');
    const r = await chat(s, 'the connection lives on');
    assert.equal(r.status, 200);
  } finally { s.close(); }
});

// ---- limits ----

test('body over max_request_size: 413 request_too_large (with and without content-length)', async () => {
  const s = connect();
  try {
    const big = JSON.stringify(h.chatBody('x'.repeat(MAX_BODY + 100)));
    const r1 = await h2req(s, '/v1/chat/completions', { method: 'POST', body: big });
    h.assertOpenAIError(r1, 413, 'request_too_large');
    const r2 = await h2req(s, '/v1/chat/completions', { method: 'POST', body: big, headers: { 'content-length': String(Buffer.byteLength(big)) } });
    h.assertOpenAIError(r2, 413, 'request_too_large');
    assert.equal((await fake.requests()).length, 0);
    const ok = await chat(s, 'small after big');
    assert.equal(ok.status, 200);
  } finally { s.close(); }
});

test('headers over max_header_size: 431 in OpenAI shape', async () => {
  const s = connect();
  try {
    const r = await h2req(s, '/health', { headers: { 'x-big': 'v'.repeat(5000) } });
    assert.equal(r.status, 431);
    assert.ok(r.json.error);
  } finally { s.close(); }
});

test('streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused (REFUSED_STREAM)', { timeout: 15000 }, async () => {
  // 129 requests whose bodies never come: 128 stay open, the next is refused.
  const heads = [];
  for (let i = 0; i < 129; i++) {
    const block = hpack([[':method', 'POST'], [':scheme', 'http'], [':path', '/v1/chat/completions'], [':authority', 'x'], ['content-type', 'application/json']]);
    heads.push(frame(T.HEADERS, 0x4, 2 * i + 1, block));
  }
  const r = await rawH2(gw.port, [hello(), Buffer.concat(heads)], { until: (fs_) => fs_.some((f) => f.type === T.RST_STREAM) });
  const rst = r.frames.filter((f) => f.type === T.RST_STREAM);
  assert.equal(rst.length, 1, JSON.stringify(r.frames.map((f) => [f.type, f.stream, f.error])));
  assert.equal(rst[0].stream, 257);
  assert.equal(rst[0].error, E.REFUSED_STREAM);
  await stillServing();
});

test('timeouts: a partial preface, an idle connection (GOAWAY), a body that never comes (408)', { timeout: 30000 }, async (t) => {
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, server: { read_timeout: '1s', idle_timeout: '1s' } }));
  const partial = await h.rawExchange(g.port, 'PRI * HTTP/2.0\r\n', { timeoutMs: 8000 });
  assert.ok(partial.closed, 'closed at read_timeout');
  const idle = await rawH2(g.port, [hello()], { waitMs: 8000 });
  assert.equal(goawayWith(idle)?.error, E.NO_ERROR);
  assert.ok(idle.closed, 'closed after the GOAWAY');
  const block = hpack([[':method', 'POST'], [':scheme', 'http'], [':path', '/v1/chat/completions'], [':authority', 'x'], ['content-type', 'application/json']]);
  const slow = await rawH2(g.port, [hello(), frame(T.HEADERS, 4, 1, block)], { waitMs: 8000, until: (f) => !!rstOn({ frames: f }, 1) });
  const head = slow.frames.find((f) => f.type === T.HEADERS && f.stream === 1);
  assert.ok(head, 'a response on stream 1');
  const data = Buffer.concat(slow.frames.filter((f) => f.type === T.DATA && f.stream === 1).map((f) => f.payload)).toString();
  assert.equal(JSON.parse(data).error.code, 'request_timeout'); // 408
  assert.equal(rstOn(slow, 1)?.error, E.NO_ERROR);
});

// ---- TLS + ALPN (the mesh listener has TLS on this branch) ----

function clientLeaf(fx) {
  const f = (n) => path.join(fx.dir, n);
  const run = (args) => execFileSync('openssl', args, { cwd: fx.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('both.key'), '-out', f('both.csr'), '-subj', '/CN=node-b']);
  fs.writeFileSync(f('both.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n'
    + 'keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n');
  run(['x509', '-req', '-in', f('both.csr'), '-CA', fx.ca, '-CAkey', path.join(fx.dir, 'ca.key'), '-CAcreateserial',
    '-out', f('both.pem'), '-days', '2', '-extfile', f('both.ext')]);
  return { cert: f('both.pem'), key: f('both.key') };
}

test('h2 by ALPN over TLS (mesh listener), http/1.1 by ALPN on the same port', { timeout: 30000 }, async (t) => {
  const fx = h.makeTlsFixtures();
  const leaf = clientLeaf(fx);
  const meshPort = await h.freePort();
  const secret = 'mesh-secret-for-h2-test-0123456789';
  const cfg = h.baseConfig({ fakePort: fake.port });
  cfg.node.mesh = {
    enabled: true, listen_addr: `127.0.0.1:${meshPort}`, secret, peers: [],
    tls: { cert_file: leaf.cert, key_file: leaf.key, ca_file: fx.ca },
  };
  await h.gatewayFor(t, cfg);
  const tlsOpts = { ca: fs.readFileSync(fx.ca), cert: fs.readFileSync(leaf.cert), key: fs.readFileSync(leaf.key), servername: 'localhost' };
  const s = connect(`https://127.0.0.1:${meshPort}`, tlsOpts);
  try {
    await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
    assert.equal(s.alpnProtocol, 'h2');
    const r = await h2req(s, '/aiproxy/mesh/status', { headers: { authorization: `Bearer ${secret}` } });
    assert.equal(r.status, 200, r.text);
    const c = await h2req(s, '/v1/chat/completions', { method: 'POST', body: h.chatBody('over tls'), headers: { authorization: `Bearer ${secret}` } });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.choices[0].message.content, 'echo: over tls');
  } finally { s.close(); }
  const h1 = await new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: meshPort, path: '/aiproxy/mesh/status', agent: false, ALPNProtocols: ['http/1.1'], ...tlsOpts, headers: { authorization: `Bearer ${secret}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, alpn: res.socket.alpnProtocol }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(h1.status, 200);
  assert.equal(h1.alpn, 'http/1.1');
});

// ---- drain ----

test('drain: GOAWAY, the stream in flight completes, then the process exits', { timeout: 30000 }, async (t) => {
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, server: { drain_timeout: '10s' } }));
  await fake.control({ queue: [{ chunks: 10, chunkDelayMs: 100 }] });
  const s = connect(g.url);
  let goaway = false;
  s.on('goaway', () => { goaway = true; });
  const p = chat(s, 'drain me', { stream: true });
  await h.waitFor(async () => (await fake.requests()).length === 1, 5000, 25, 'the request upstream');
  const exit = g.stop('SIGTERM', 15000);
  const r = await p;
  assert.equal(r.status, 200);
  const ev = h.parseSse(r.text);
  assert.equal(ev[ev.length - 1], '[DONE]');
  await exit;
  assert.ok(goaway, 'GOAWAY before the close');
});

// ---- h2spec subset (RFC 9113 section numbers as in h2spec) ----

test('h2spec 3.5: a preface not followed by SETTINGS: GOAWAY PROTOCOL_ERROR', async () => {
  const r = await rawH2(gw.port, [Buffer.concat([PREFACE, frame(T.PING, 0, 0, Buffer.alloc(8))])]);
  assert.equal(goawayWith(r)?.error, E.PROTOCOL_ERROR);
  assert.ok(r.closed);
});

test('a broken preface is not HTTP/2: answered as HTTP/1.1 400', async () => {
  const raw = await h.rawExchange(gw.port, 'PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n');
  assert.match(raw.text, /^HTTP\/1\.1 400/);
  await stillServing();
});

test('h2spec 6.5.3: SETTINGS is acknowledged', async () => {
  const r = await rawH2(gw.port, [hello()], { until: (f) => f.some((x) => x.type === T.SETTINGS && x.flags & 1) });
  const settings = r.frames.find((f) => f.type === T.SETTINGS && !(f.flags & 1));
  assert.ok(settings, 'server SETTINGS');
  const ids = {};
  for (let o = 0; o + 6 <= settings.payload.length; o += 6) ids[settings.payload.readUInt16BE(o)] = settings.payload.readUInt32BE(o + 2);
  assert.equal(ids[3], 128); // MAX_CONCURRENT_STREAMS
  assert.equal(ids[4], 1024 * 1024); // INITIAL_WINDOW_SIZE
  assert.ok(r.frames.some((f) => f.type === T.SETTINGS && f.flags & 1), 'SETTINGS ACK');
});

test('h2spec 6.5: SETTINGS ACK with a payload: FRAME_SIZE_ERROR', async () => {
  const r = await rawH2(gw.port, [hello(), frame(T.SETTINGS, 1, 0, Buffer.alloc(6))]);
  assert.equal(goawayWith(r)?.error, E.FRAME_SIZE_ERROR);
});

test('h2spec 6.1/6.2: DATA and HEADERS on stream 0: PROTOCOL_ERROR', async () => {
  const d = await rawH2(gw.port, [hello(), frame(T.DATA, 1, 0, Buffer.from('x'))]);
  assert.equal(goawayWith(d)?.error, E.PROTOCOL_ERROR);
  const hd = await rawH2(gw.port, [hello(), frame(T.HEADERS, 5, 0, hpack(getHealth()))]);
  assert.equal(goawayWith(hd)?.error, E.PROTOCOL_ERROR);
});

test('h2spec 6.9: WINDOW_UPDATE of 0 on the connection: PROTOCOL_ERROR', async () => {
  const r = await rawH2(gw.port, [hello(), frame(T.WINDOW_UPDATE, 0, 0, Buffer.alloc(4))]);
  assert.equal(goawayWith(r)?.error, E.PROTOCOL_ERROR);
});

// nghttp2 keeps no state for a stream closed both ways, and ignores frames
// on it (RFC 9113 5.1 lets an endpoint that discarded a stream's state do
// so); on a half-closed (remote) stream, DATA is STREAM_CLOSED.
test('h2spec 5.1: DATA on an idle stream: PROTOCOL_ERROR; after END_STREAM: STREAM_CLOSED', async () => {
  const idle = await rawH2(gw.port, [hello(), frame(T.DATA, 1, 1, Buffer.from('x'))]);
  assert.equal(goawayWith(idle)?.error, E.PROTOCOL_ERROR);
  const half = await rawH2(gw.port, [Buffer.concat([hello(), frame(T.HEADERS, 5, 1, hpack(getHealth())), frame(T.DATA, 1, 1, Buffer.from('x'))])],
    { until: (f) => f.some((x) => x.type === T.GOAWAY || (x.type === T.RST_STREAM && x.stream === 1)) });
  const err = goawayWith(half)?.error ?? rstOn(half, 1)?.error;
  assert.equal(err, E.STREAM_CLOSED, JSON.stringify(half.frames.map((f) => [f.type, f.stream, f.error])));
  const closed = await rawH2(gw.port, [hello(), frame(T.HEADERS, 5, 1, hpack(getHealth())), 300,
    frame(T.DATA, 1, 1, Buffer.from('x')), frame(T.HEADERS, 5, 3, hpack(getHealth()))],
  { until: (f) => f.some((x) => x.type === T.HEADERS && x.stream === 3) });
  assert.ok(closed.frames.some((f) => f.type === T.HEADERS && f.stream === 3), 'the connection goes on');
  await stillServing();
});

test('h2spec 4.2: a frame over SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR', async () => {
  const r = await rawH2(gw.port, [hello(), frame(T.HEADERS, 4, 1, Buffer.concat([hpack(getHealth()), hpack([['x-pad', 'p'.repeat(17000)]])]))]);
  assert.equal(goawayWith(r)?.error, E.FRAME_SIZE_ERROR);
});

test('h2spec 8.1.2: invalid pseudo-headers and header names: RST_STREAM PROTOCOL_ERROR', async () => {
  const cases = [
    [[':method', 'GET'], [':scheme', 'http'], [':path', '/health'], [':foo', 'bar']], // unknown pseudo-header
    [[':method', 'GET'], [':scheme', 'http']], // no :path
    [[':method', 'GET'], [':scheme', 'http'], ['x-a', 'b'], [':path', '/health']], // pseudo after regular
    [...getHealth(), ['X-Upper', 'v']], // uppercase name
    [...getHealth(), ['connection', 'keep-alive']], // connection-specific
    [...getHealth(), [':path', '/health']], // duplicated pseudo-header
  ];
  for (const fields of cases) {
    const r = await rawH2(gw.port, [hello(), frame(T.HEADERS, 5, 1, hpack(fields))],
      { until: (f) => f.some((x) => x.type === T.RST_STREAM || x.type === T.GOAWAY) });
    const err = rstOn(r, 1)?.error ?? goawayWith(r)?.error;
    assert.equal(err, E.PROTOCOL_ERROR, JSON.stringify(fields));
  }
  await stillServing();
});

test('h2spec 4.3: a broken header block: COMPRESSION_ERROR', async () => {
  const r = await rawH2(gw.port, [hello(), frame(T.HEADERS, 5, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))]);
  assert.equal(goawayWith(r)?.error, E.COMPRESSION_ERROR);
  await stillServing();
});
