// Slow clients and disconnects: a client that reads slowly still gets every
// byte; a client that goes away mid-stream makes the gateway close the
// upstream connection.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import * as h from './harness.mjs';

let fake;
let gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({
    fakePort: fake.port,
    server: { write_timeout: '10s', read_timeout: '10s' },
  }));
});
after(() => h.killAll());
beforeEach(() => fake.reset());

// Reads a response slowly: nothing for pauseMs, then 32 KB every tickMs.
function slowRead(url, body, { pauseMs = 1500, tickMs = 20 } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const data = JSON.stringify(body);
    const req = http.request({
      method: 'POST', hostname: u.hostname, port: u.port, path: u.pathname, agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
    }, (res) => {
      res.pause();
      const parts = [];
      let ended = false;
      res.on('end', () => { ended = true; });
      res.on('close', () => {
        const text = Buffer.concat(parts).toString('utf8');
        resolve({ status: res.statusCode, headers: res.headers, text, complete: res.complete });
      });
      res.on('error', () => {});
      const tick = () => {
        let chunk;
        let n = 0;
        while (n < 32 * 1024 && (chunk = res.read()) !== null) { parts.push(chunk); n += chunk.length; }
        if (!ended) setTimeout(tick, tickMs);
      };
      setTimeout(() => { res.on('readable', () => {}); tick(); }, pauseMs);
    });
    req.on('error', reject);
    req.write(data);
    req.end();
  });
}

test('a slow reader of a 2 MB stream gets every byte', { timeout: 30000 }, async () => {
  await fake.control({ queue: [{ bigResponseBytes: 2_000_000 }] });
  const r = await slowRead(gw.url + '/v1/chat/completions', h.chatBody('big', { stream: true }));
  assert.equal(r.status, 200);
  assert.ok(r.complete, 'response must be complete');
  const ev = h.parseSse(r.text);
  assert.equal(ev[ev.length - 1], '[DONE]');
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  const content = chunks.map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
  assert.equal(content.length, 2_000_000, 'every content byte must arrive');
  assert.ok(/^x+$/.test(content));
  assert.ok(chunks[chunks.length - 1]['x-aiproxy'], 'final x-aiproxy chunk');
});

test('a slow reader of a 3 MB non-streaming answer gets every byte', { timeout: 30000 }, async () => {
  await fake.control({ queue: [{ bigResponseBytes: 3_000_000 }] });
  const r = await slowRead(gw.url + '/v1/chat/completions', h.chatBody('big'));
  assert.equal(r.status, 200);
  assert.ok(r.complete);
  const j = JSON.parse(r.text);
  assert.equal(j.choices[0].message.content.length, 3_000_000);
  assert.equal(j['x-aiproxy'].provider, 'p1');
});

test('client disconnecting mid-stream -> the upstream connection is closed within ~2 s', { timeout: 15000 }, async () => {
  await fake.control({ queue: [{ chunkDelayMs: 100, chunks: 100 }] });
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody('bye', { stream: true }) });
  assert.equal(s.status, 200);
  await h.waitFor(() => s.events.filter((e) => e.includes('"c')).length >= 3, 3000, 10, 'three content chunks');
  s.abort();
  const t0 = Date.now();
  const up = await h.waitFor(async () => {
    const [r] = await fake.requests();
    return r && r.clientClosed ? r : null;
  }, 2500, 50, 'the fake to see its connection closed');
  assert.ok(up.closedAt - t0 < 2500, `closed ${up.closedAt - t0} ms after the client left`);
  // The gateway is still fine afterwards.
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('still here') });
  assert.equal(r.status, 200, r.text);
});

test('client disconnecting while the upstream has not answered yet -> upstream request cancelled', { timeout: 15000 }, async () => {
  await fake.control({ queue: [{ delayMs: 5000 }] });
  const u = new URL(gw.url + '/v1/chat/completions');
  const data = JSON.stringify(h.chatBody('cancel me'));
  const req = http.request({ method: 'POST', hostname: u.hostname, port: u.port, path: u.pathname, agent: false,
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } });
  req.on('error', () => {});
  req.end(data);
  await h.waitFor(async () => (await fake.requests()).length === 1, 2000, 20, 'request at the fake');
  req.destroy();
  const t0 = Date.now();
  await h.waitFor(async () => (await fake.requests())[0].clientClosed, 2500, 50, 'the fake to see its connection closed');
  assert.ok(Date.now() - t0 < 2500);
});

test('a client that stops reading is cut off after write_timeout, and the upstream is closed', { timeout: 20000 }, async (t) => {
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, server: { write_timeout: '1s', read_timeout: '5s' } }));
  // A 200 MB stream: far more than any socket buffers hold. The fake honours
  // backpressure, so it only produces what the gateway takes.
  await fake.control({ queue: [{ bigResponseBytes: 200_000_000 }] });
  const data = JSON.stringify(h.chatBody('never read', { stream: true }));
  // A raw socket so that pausing really stops reading from the kernel.
  const sock = net.connect(g.port, '127.0.0.1');
  t.after(() => sock.destroy());
  let got = 0;
  let closed = false;
  let text = '';
  sock.on('data', (d) => {
    got += d.length;
    if (text.length < 100000) text += d.toString('latin1');
    if (got > 1000 && !closed && !sock.isPaused() && !sock.resumedAgain) sock.pause();
  });
  sock.on('close', () => { closed = true; });
  sock.on('error', () => {});
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\n\r\n${data}`);
  await h.waitFor(() => got > 1000, 3000, 10, 'the stream to start');
  assert.match(text, /^HTTP\/1\.1 200 /);
  const t0 = Date.now();
  // The gateway gives up on the stalled client after ~1 s and drops the upstream.
  const up = await h.waitFor(async () => { const [r] = await fake.requests(); return r && r.clientClosed ? r : null; }, 6000, 50,
    'the gateway to drop the upstream of a client that stopped reading');
  assert.ok(up.closedAt - t0 < 6000, `upstream closed ${up.closedAt - t0} ms after the client stalled`);
  // And the client connection itself is closed: reading again reaches EOF.
  sock.resumedAgain = true;
  sock.resume();
  await h.waitFor(() => closed, 10000, 20, 'the stalled client connection to be closed');
  const r = await h.request(g.url + '/health');
  assert.equal(r.status, 200);
});
