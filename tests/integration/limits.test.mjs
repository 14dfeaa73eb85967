// Resource limits: running out of file descriptors is survived (new
// connections get a 503 in OpenAI's shape at once, and service resumes when
// descriptors free up); providers.X.max_concurrency caps the transfers in
// flight to one provider.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import * as h from './harness.mjs';

let f1;
let f2;

before(async () => {
  f1 = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  f2 = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
});
after(() => h.killAll());
beforeEach(async () => { await f1.reset(); await f2.reset(); });

const fdCount = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;

function openIdle(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('close', () => resolve(s));
  });
}

// Lowers the gateway's descriptor limit to what it has open + 12, then
// fills it with idle connections (kept in `idle`), probing /health now and
// then, until a probe is shed with 503; every earlier probe must be a 200.
// Returns that 503 exchange.
async function exhaustDescriptors(gw, idle) {
  const limit = fdCount(gw.proc.pid) + 12;
  execFileSync('prlimit', ['--pid', String(gw.proc.pid), `--nofile=${limit}:${limit}`]);
  for (let i = 0; i < 200; i++) {
    for (let k = 0; k < 4; k++) idle.push(await openIdle(gw.port));
    const x = await h.rawExchange(gw.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 3000, untilResponses: 1 });
    if (x.responses[0] && x.responses[0].status === 503) return x;
    assert.ok(x.responses[0] && x.responses[0].status === 200, `probe ${i}: neither 200 nor 503 but ${JSON.stringify(x.text.slice(0, 300))} after ${x.ms} ms`);
  }
  assert.fail(`never ran out of descriptors with ${idle.length} idle connections and a limit of ${limit}`);
}

test('EMFILE: with descriptors exhausted new clients get a prompt 503, and service resumes once they free up', { timeout: 30000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: f1.port }));
  // Warm up: the upstream connections are open before the limit is set.
  for (let i = 0; i < 4; i++) assert.equal((await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('warm') })).status, 200);
  const idle = [];
  t.after(() => { for (const s of idle) s.destroy(); });
  const shed = await exhaustDescriptors(gw, idle);
  assert.ok(shed.ms < 1500, `the 503 took ${shed.ms} ms`);
  const r = shed.responses[0];
  assert.equal(r.json && r.json.error && r.json.error.code, 'service_unavailable', shed.text);
  assert.ok(r.json.error.message && 'type' in r.json.error && 'param' in r.json.error, shed.text);
  assert.equal(r.json.error.message, 'The gateway is out of file descriptors; retry shortly.', 'the whole message');
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  assert.equal(r.headers['retry-after'], '1');

  // Still shedding, not hanging, on repeated tries.
  for (let i = 0; i < 5; i++) {
    const x = await h.rawExchange(gw.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 3000, untilResponses: 1 });
    assert.ok(x.responses[0], `try ${i}: no answer within ${x.ms} ms`);
    assert.ok([200, 503].includes(x.responses[0].status), x.text.slice(0, 200));
  }

  // Descriptors free up: service resumes.
  for (const s of idle.splice(0)) s.destroy();
  const ok = await h.waitFor(async () => {
    const x = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('after emfile'), timeoutMs: 3000 });
    return x.status === 200 ? x : null;
  }, 5000, 100, 'a 200 after the descriptors were freed');
  assert.equal(ok.json.choices[0].message.content, 'echo: after emfile');
  assert.match(gw.logs(), /accept_shed|accept_paused/);
});

// A keep-alive client connection: request(text) sends one request and
// resolves with its parsed response (harness.parseHttpResponses).
function keepAlive(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let want = null;
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const rs = h.parseHttpResponses(buf);
      if (want && rs[0] && rs[0].complete) {
        const w = want;
        want = null;
        buf = Buffer.alloc(0);
        w(rs[0]);
      }
    });
    sock.on('error', () => {});
    sock.once('error', reject);
    sock.once('connect', () => resolve({
      sock,
      request: (text) => new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error('no answer within 5 s')), 5000);
        want = (r) => { clearTimeout(timer); res(r); };
        sock.write(text);
      }),
    }));
  });
}

const chatRaw = (content) => {
  const body = JSON.stringify(h.chatBody(content));
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
};

test('EMFILE on the upstream side: a request that cannot open a connection to its provider gets a 503, and the provider is not blamed', { timeout: 30000 }, async (t) => {
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: f1.port }));
  // Opened before the limit, and no request has gone upstream yet: no
  // pooled connection to the provider exists.
  const keep = await keepAlive(gw.port);
  t.after(() => keep.sock.destroy());
  assert.equal((await keep.request('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')).status, 200);
  const idle = [];
  t.after(() => { for (const s of idle) s.destroy(); });
  await exhaustDescriptors(gw, idle);

  // Every descriptor is taken: the provider cannot be reached from here.
  for (let i = 0; i < 3; i++) {
    const r = await keep.request(chatRaw(`no descriptor ${i}`));
    assert.equal(r.status, 503, r.body.toString());
    assert.equal(r.json.error.code, 'service_unavailable');
    assert.match(r.json.error.message, /p1: this gateway is out of descriptors or ports for a new connection/);
    assert.equal(r.headers['retry-after'], '1');
  }
  assert.equal((await f1.requests()).length, 0, 'nothing reached the provider');
  // ... which is not counted against it.
  const st = await keep.request('GET /aiproxy/status HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(st.status, 200);
  const p1 = st.json.providers.find ? st.json.providers.find((p) => p.name === 'p1') : st.json.providers.p1;
  assert.ok(p1, JSON.stringify(st.json.providers).slice(0, 300));
  assert.equal(p1.failures, 0, JSON.stringify(p1));
  assert.equal(p1.health, 'healthy', JSON.stringify(p1));

  // Descriptors free up: the provider is used at once (no circuit to wait out).
  for (const s of idle.splice(0)) s.destroy();
  const ok = await h.waitFor(async () => {
    const x = await keep.request(chatRaw('after upstream emfile'));
    return x.status === 200 ? x : null;
  }, 3000, 50, 'a 200 after the descriptors were freed');
  assert.equal(ok.json.choices[0].message.content, 'echo: after upstream emfile');
});

test('max_concurrency: a provider never has more transfers in flight than its cap; the rest go elsewhere', {
  timeout: 20000,
}, async (t) => {
  const gw = await h.gatewayFor(t, h.twoProviderConfig(f1, f2, {
    timeout: '5s',
    p1: { max_concurrency: 2 },
  }));
  await f1.control({ default: { delayMs: 800 } });
  const rs = await Promise.all(Array.from({ length: 8 }, (_, i) =>
    h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`cc ${i}`), timeoutMs: 10000 })));
  const byProvider = {};
  for (const r of rs) {
    assert.ok(r.status === 200 || r.status === 503, `status ${r.status}: ${r.text.slice(0, 300)}`);
    if (r.status === 200) byProvider[r.json['x-aiproxy'].provider] = (byProvider[r.json['x-aiproxy'].provider] || 0) + 1;
  }
  // Overlap at p1: requests whose [receivedAt, finishedAt] intervals intersect.
  const up = await f1.requests();
  let maxOverlap = 0;
  for (const a of up) {
    const n = up.filter((b) => b.receivedAt < (a.finishedAt || Infinity) && a.receivedAt < (b.finishedAt || Infinity)).length;
    maxOverlap = Math.max(maxOverlap, n);
  }
  assert.ok(maxOverlap <= 2, `p1 had ${maxOverlap} requests in flight at once (cap 2); served: ${JSON.stringify(byProvider)}`);
  assert.ok((byProvider.p2 || 0) >= 1, `the overflow must go to p2: ${JSON.stringify(byProvider)}`);
});

test('server.max_upstream_transfers caps attempts in flight across providers: the rest get 503 with Retry-After', {
  timeout: 20000,
}, async (t) => {
  const cfg = h.twoProviderConfig(f1, f2, { timeout: '5s' });
  cfg.server = { ...(cfg.server || {}), max_upstream_transfers: 2 };
  const gw = await h.gatewayFor(t, cfg);
  await f1.control({ default: { delayMs: 700 } });
  await f2.control({ default: { delayMs: 700 } });
  const rs = await Promise.all(Array.from({ length: 6 }, (_, i) =>
    h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`cap ${i}`), timeoutMs: 10000 })));
  const ok = rs.filter((r) => r.status === 200).length;
  const shed = rs.filter((r) => r.status === 503);
  assert.equal(ok + shed.length, 6, rs.map((r) => r.status).join(','));
  assert.equal(ok, 2, `two transfers fit under the cap: ${rs.map((r) => r.status).join(',')}`);
  for (const r of shed) {
    assert.equal(r.json.error.code, 'service_unavailable');
    assert.equal(r.headers['retry-after'], '1');
  }
  await f1.control({ default: {} });
  await f2.control({ default: {} });
  // The slots come back: the next request is served.
  const after = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('after'), timeoutMs: 10000 });
  assert.equal(after.status, 200, after.text);
});
