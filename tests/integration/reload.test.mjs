// Live reload: POST /aiproxy/admin/reload and SIGHUP under continuous load
// (several clients, streams among them) with zero failed requests, an
// invalid config rejected with its errors while the old one keeps serving,
// and a changed listen address rebound (the old listener drained).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import * as h from './harness.mjs';

const ADMIN = 'reload-admin-key';
let fake;
before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
after(() => h.killAll());

const auth = { authorization: `Bearer ${ADMIN}` };

function config(port, aliasTarget) {
  const c = h.baseConfig({ fakePort: fake.port, port, extra: {
    security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }] } },
    routing: { aliases: { fast: aliasTarget } },
  } });
  return c;
}

function write(gw, cfg) {
  fs.writeFileSync(gw.configFile, typeof cfg === 'string' ? cfg : JSON.stringify(cfg, null, 2));
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve('connected'); });
    s.once('error', (e) => resolve(e.code));
  });
}

test('reload under load: 6 reloads (endpoint and SIGHUP, one invalid) and zero failed requests', { timeout: 60000 }, async (t) => {
  const port = await h.freePort();
  const gw = await h.gatewayFor(t, config(port, 'gpt-test'));
  let stop = false;
  const failures = [];
  let done = 0;
  async function client(i) {
    while (!stop) {
      try {
        if (i % 2 === 0) {
          const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`c${i}`, { model: 'fast' }), headers: auth, timeoutMs: 10000 });
          if (r.status !== 200) failures.push(`client ${i}: ${r.status} ${r.text}`);
        } else {
          const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody(`s${i}`, { model: 'fast', stream: true }), headers: auth, timeoutMs: 10000 });
          const d = await s.done;
          if (s.status !== 200 || d.error || d.events.at(-1) !== '[DONE]') failures.push(`stream ${i}: ${s.status} ${d.error}`);
        }
        done++;
      } catch (e) {
        failures.push(`client ${i}: ${e.message}`);
      }
    }
  }
  await fake.control({ default: { chunkDelayMs: 20, chunks: 5 } });
  const clients = Array.from({ length: 6 }, (_, i) => client(i));
  const outcomes = [];
  for (let round = 0; round < 6; round++) {
    await h.sleep(250);
    if (round === 3) {
      write(gw, '{"server": {"listen_addr": "127.0.0.1:' + port + '"}, "routing": {"strategy": "cheapest"}}');
      const r = await h.request(gw.url + '/aiproxy/admin/reload', { method: 'POST', body: {}, headers: auth, timeoutMs: 20000 });
      assert.equal(r.status, 422, r.text);
      assert.equal(r.json.error.code, 'config_invalid');
      assert.ok(r.json.errors.some((e) => /routing\.strategy: unknown value 'cheapest'/.test(e)), JSON.stringify(r.json.errors));
      outcomes.push('rejected');
      continue;
    }
    write(gw, config(port, 'gpt-test'));
    if (round % 2 === 0) {
      const r = await h.request(gw.url + '/aiproxy/admin/reload', { method: 'POST', body: {}, headers: auth, timeoutMs: 20000 });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.status, 'reloaded');
      outcomes.push(`ok ${r.json.generation}`);
    } else {
      gw.proc.kill('SIGHUP');
      outcomes.push('sighup');
    }
  }
  await h.sleep(500);
  stop = true;
  await Promise.all(clients);
  assert.deepEqual(failures, [], `failed requests during reloads:\n${failures.slice(0, 10).join('\n')}`);
  assert.ok(done > 30, `only ${done} requests completed`);
  assert.equal(outcomes.filter((o) => o === 'rejected').length, 1);
  assert.match(gw.logs(), /"event":"config_rejected"/);
  assert.ok((gw.logs().match(/"event":"config_loaded"/g) || []).length >= 5);
  const st = await h.request(gw.url + '/aiproxy/status', { headers: auth });
  assert.equal(st.json.node.reloads.failed, 1);
  assert.ok(st.json.node.config_generation >= 5);
});

test('a reload changes what is served; the admin key is required', { timeout: 30000 }, async (t) => {
  const port = await h.freePort();
  const gw = await h.gatewayFor(t, config(port, 'gpt-test'));
  const noKey = await h.request(gw.url + '/aiproxy/admin/reload', { method: 'POST', body: {} });
  assert.equal(noKey.status, 401);
  const cfg = config(port, 'gpt-test');
  cfg.providers.p1.models.push(h.model('gpt-new', 'upstream-new'));
  write(gw, cfg);
  const r = await h.request(gw.url + '/aiproxy/admin/reload', { method: 'POST', body: {}, headers: auth, timeoutMs: 20000 });
  assert.equal(r.status, 200, r.text);
  const m = await h.request(gw.url + '/v1/models/gpt-new', { headers: auth });
  assert.equal(m.status, 200, m.text);
});

test('a changed listen address is rebound; the old listener drains its stream and closes', { timeout: 30000 }, async (t) => {
  const port = await h.freePort();
  const gw = await h.gatewayFor(t, config(port, 'gpt-test'));
  await fake.control({ queue: [{ chunkDelayMs: 100, chunks: 15 }] });
  const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody('long', { stream: true }), headers: auth });
  assert.equal(s.status, 200);
  const port2 = await h.freePort();
  write(gw, config(port2, 'gpt-test'));
  const r = await h.request(gw.url + '/aiproxy/admin/reload', { method: 'POST', body: {}, headers: auth, timeoutMs: 20000 });
  assert.equal(r.status, 200, r.text);
  const url2 = `http://127.0.0.1:${port2}`;
  assert.equal((await h.request(url2 + '/ready')).status, 200);
  const c = await h.request(url2 + '/v1/chat/completions', { body: h.chatBody('new port'), headers: auth });
  assert.equal(c.status, 200, c.text);
  await h.waitFor(async () => (await tryConnect(port)) === 'ECONNREFUSED', 3000, 20, 'the old listener to close');
  const d = await s.done;
  assert.equal(d.error, null);
  assert.equal(d.events.at(-1), '[DONE]', 'the stream on the old listener completed');
  assert.match(gw.logs(), /"event":"listener_moved"/);
  // A port already taken: the reload is rejected, the node keeps serving.
  const blocker = net.createServer();
  await new Promise((res) => blocker.listen(0, '127.0.0.1', res));
  t.after(() => blocker.close());
  write(gw, config(blocker.address().port, 'gpt-test'));
  const bad = await h.request(url2 + '/aiproxy/admin/reload', { method: 'POST', body: {}, headers: auth, timeoutMs: 20000 });
  assert.equal(bad.status, 422, bad.text);
  assert.match(bad.json.errors[0], /cannot listen/);
  assert.equal((await h.request(url2 + '/v1/chat/completions', { body: h.chatBody('still'), headers: auth })).status, 200);
});

// One keep-alive connection: requests are written one at a time and each
// answer read before the next (the gateway remembers the key a connection
// presented; that memory must never outlive a refusal or a reload).
function keepAliveClient(port) {
  const sock = net.connect(port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  let waiting = null;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    const rs = h.parseHttpResponses(buf);
    if (waiting && rs.length && rs[0].complete) {
      const w = waiting;
      waiting = null;
      buf = Buffer.alloc(0);
      w(rs[0]);
    }
  });
  const ready = new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  return {
    async send(key, body) {
      await ready;
      const text = JSON.stringify(body);
      const p = new Promise((resolve) => { waiting = resolve; });
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
                 `Authorization: Bearer ${key}\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      return p;
    },
    close() { sock.destroy(); },
  };
}

test('one connection: its key is checked on every request, after a wrong key and across a reload', { timeout: 30000 }, async (t) => {
  const port = await h.freePort();
  const user = 'sk-conn-user-key-0001';
  const withUser = (keys) => {
    const c = config(port, 'gpt-test');
    c.security.auth.api_keys.push(...keys);
    return c;
  };
  const gw = await h.gatewayFor(t, withUser([{ key: user, name: 'user' }]));
  const c = keepAliveClient(port);
  t.after(() => c.close());
  const body = h.chatBody('same connection');
  assert.equal((await c.send(user, body)).status, 200);
  assert.equal((await c.send(user + 'x', body)).status, 401, 'a longer key on the same connection');
  assert.equal((await c.send(user.slice(0, -1) + '2', body)).status, 401, 'same length, one byte off');
  assert.equal((await c.send(user, body)).status, 200);
  // The key is renamed (a new config object): still accepted.
  write(gw, withUser([{ key: user, name: 'renamed' }]));
  let r = await h.request(gw.url + '/aiproxy/admin/reload', { method: 'POST', body: {}, headers: auth, timeoutMs: 20000 });
  assert.equal(r.status, 200, r.text);
  r = await c.send(user, body);
  assert.equal(r.status, 200);
  // The key is removed: refused on the connection that used it a moment ago.
  write(gw, withUser([]));
  r = await h.request(gw.url + '/aiproxy/admin/reload', { method: 'POST', body: {}, headers: auth, timeoutMs: 20000 });
  assert.equal(r.status, 200, r.text);
  r = await c.send(user, body);
  assert.equal(r.status, 401, 'a key removed by a reload is refused on a connection that presented it');
});
