// The mesh inside the rest of the request flow: /aiproxy/predict and
// /v1/messages served through a peer (providers_tried and failovers name the
// peer), a hedge whose second leg is a peer, the dashboard's data with
// live peers, and a stream through a peer (passed on as it arrives, held
// back by a client that stops reading). Real aiproxyd nodes (tests/integration/mesh-harness.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';
import * as m from './mesh-harness.mjs';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const CTL = path.join(path.dirname(h.AIPROXYD), 'aiproxyctl');

after(() => h.killAll());

test('predict and messages through a peer; predict failover from a failing local provider to the peer', { timeout: 30000 }, async (t) => {
  // a serves "shared" (and fails it on demand); b serves "shared" and "only-b"
  const [a, b] = await m.startMesh(t, [
    { id: 'a', models: ['shared'], peers: ['b'] },
    { id: 'b', models: ['shared', 'only-b'] },
  ]);
  await m.waitHealthy(a, ['b']);

  let r = await h.request(a.url + '/aiproxy/predict', { body: { model: 'only-b', input: 'predict via b' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.output, 'echo: predict via b');
  assert.deepEqual(r.json.metadata.routing.providers_tried, ['mesh:b'], r.text);
  assert.equal(r.json.metadata.routing.failovers, 0);

  // Anthropic's Messages API in, served by b, Anthropic's shape out
  r = await h.request(a.url + '/v1/messages', {
    body: { model: 'only-b', max_tokens: 50, messages: [{ role: 'user', content: 'messages via b' }] },
    headers: { 'anthropic-version': '2023-06-01' },
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.type, 'message');
  assert.match(JSON.stringify(r.json.content), /echo: messages via b/);
  assert.equal(r.headers['x-aiproxy-provider'], 'mesh:b');

  // a's own provider fails: predict fails over to the peer, and says so
  await a.fake.control({ queue: [{ status: 500 }] });
  r = await h.request(a.url + '/aiproxy/predict', { body: { model: 'shared', input: 'fail over' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.output, 'echo: fail over');
  assert.deepEqual(r.json.metadata.routing.providers_tried, ['pa', 'mesh:b'], r.text);
  assert.equal(r.json.metadata.routing.failovers, 1);
});

test('a hedge whose second leg is a peer: the peer answers first, the slow local leg is cancelled', { timeout: 30000 }, async (t) => {
  const [a, b] = await m.startMesh(t, [
    { id: 'a', models: ['shared'], peers: ['b'] },
    { id: 'b', models: ['shared'] },
  ]);
  await m.waitHealthy(a, ['b']);
  await a.fake.control({ default: { delayMs: 1500 } });
  const r = await m.chat(a, 'shared', 'hedge me', { headers: { 'x-aiproxy-hedge': '150' } });
  assert.equal(r.status, 200, r.text);
  const xa = r.json['x-aiproxy'];
  assert.equal(xa.hedged, true, JSON.stringify(xa));
  assert.equal(xa.node, 'b');
  assert.deepEqual(xa.route, ['a', 'b']);
  assert.match(xa.attempts[0].outcome, /lost the hedge: mesh:b answered first/);
  await a.fake.control({ default: {} });
});

test('the dashboard data lists live peers with status, load, models and spend', { timeout: 30000 }, async (t) => {
  const ADMIN = 'mesh-flow-admin';
  const auth = { authorization: `Bearer ${ADMIN}` };
  const [a] = await m.startMesh(t, [
    { id: 'a', models: ['shared'], peers: ['b'], clientKey: ADMIN,
      extra: { security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }] } } } },
    { id: 'b', models: ['only-b'] },
  ]);
  await m.waitHealthy(a, ['b']);
  const r = await m.chat(a, 'only-b');
  assert.equal(r.status, 200, r.text);
  const s = await h.request(a.url + '/aiproxy/admin/stats', { headers: auth });
  assert.equal(s.status, 200, s.text);
  assert.equal(s.json.mesh_enabled, true);
  const p = s.json.mesh_peers.find((x) => x.id === 'b');
  assert.ok(p, s.text);
  assert.equal(p.status, 'healthy');
  assert.deepEqual(p.models, ['only-b']);
  assert.equal(typeof p.load, 'number');
  assert.equal(typeof p.latency_ms, 'number');
  // b's spend reaches a by heartbeat
  await m.waitFor(async () => {
    const st = await h.request(a.url + '/aiproxy/admin/stats', { headers: auth });
    const q = st.json.mesh_peers.find((x) => x.id === 'b');
    return q && q.spend_today_nanos > 0;
  }, 5000, "b's spend in a's view");
  // aiproxyctl mesh prints the same: b healthy, its model, its spend
  const c = spawnSync(CTL, ['--url', a.url, '--key', ADMIN, 'mesh'], { encoding: 'utf8', timeout: 20000 });
  assert.equal(c.status, 0, c.stderr);
  assert.match(c.stdout, /^node a /m);
  assert.match(c.stdout, /mesh: on, listening on 127\.0\.0\.1:\d+, max_hops 1/);
  assert.match(c.stdout, /^b\s+127\.0\.0\.1:\d+\s+healthy\s+\d+ ms\s+\d+%\s+1\s+\$0\.0\d+\s+only-b$/m);
  assert.ok(!c.stdout.includes(m.MESH_SECRET), 'the mesh secret is never printed');
});

const rssKb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

test('a stream through a peer: passed on as the provider sends it, and held back along the chain by a client that stops reading', { timeout: 60000 }, async (t) => {
  const [a, b] = await m.startMesh(t, [
    { id: 'a', models: [], peers: ['b'] },
    { id: 'b', models: ['only-b'] },
  ]);
  await m.waitHealthy(a, ['b']);

  // As it arrives: five chunks 400 ms apart reach the client 400 ms apart,
  // not all at once at the end.
  await b.fake.control({ queue: [{ chunkDelayMs: 400, chunks: 5 }] });
  const s = await h.streamRequest(a.url + '/v1/chat/completions', {
    body: { model: 'only-b', stream: true, messages: [{ role: 'user', content: 'slowly' }] }, timeoutMs: 15000,
  });
  assert.equal(s.status, 200);
  assert.equal(s.headers['x-aiproxy-provider'], 'mesh:b');
  const seen = {};
  s.res.on('data', (d) => {
    for (const k of ['c0 ', 'c4 ']) if (!seen[k] && d.toString().includes(k)) seen[k] = Date.now();
  });
  const d = await s.done;
  assert.equal(d.error, null);
  assert.equal(d.events[d.events.length - 1], '[DONE]');
  const text = d.events.slice(0, -1).map((e) => JSON.parse(e)).map((c) => (c.choices[0] && c.choices[0].delta.content) || '').join('');
  assert.equal(text, 'c0 c1 c2 c3 c4 ');
  assert.ok(seen['c0 '] && seen['c4 '], JSON.stringify(seen));
  assert.ok(seen['c4 '] - seen['c0 '] >= 1000, `the first and the last chunk arrived ${seen['c4 '] - seen['c0 ']} ms apart (sent 1600 ms apart)`);

  // Backpressure: a 200 MB stream to a client that reads 64 KB and stops.
  // Socket buffers along client <- a <- b <- provider hold some tens of MB;
  // the provider (which writes only what its reader takes) cannot finish,
  // and neither node holds the rest in memory.
  const rssBefore = { a: rssKb(a.gw.proc.pid), b: rssKb(b.gw.proc.pid) };
  await b.fake.control({ queue: [{ bigResponseBytes: 200_000_000 }] });
  const body = JSON.stringify({ model: 'only-b', stream: true, messages: [{ role: 'user', content: 'big' }] });
  const sock = net.connect(a.port, '127.0.0.1');
  t.after(() => sock.destroy());
  let got = 0;
  sock.on('data', (chunk) => {
    got += chunk.length;
    if (got > 65536 && !sock.resumedAgain) sock.pause();
  });
  sock.on('error', () => {});
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  await h.waitFor(() => got > 65536, 5000, 10, 'the stream to start');
  await h.sleep(2500);
  const [up] = (await b.fake.requests()).filter((r) => r.body && r.body.stream && JSON.stringify(r.body.messages).includes('"big"'));
  assert.ok(up, 'the provider got the request');
  assert.ok(!up.finishedAt, 'the provider could not finish 200 MB while the client was not reading');
  const grown = { a: rssKb(a.gw.proc.pid) - rssBefore.a, b: rssKb(b.gw.proc.pid) - rssBefore.b };
  assert.ok(grown.a < 64 * 1024 && grown.b < 64 * 1024, `RSS grew by ${JSON.stringify(grown)} KB while the client was paused`);

  // Reading again, the stream flows again through both nodes.
  const mark = got;
  sock.resumedAgain = true;
  sock.resume();
  await h.waitFor(() => got - mark > 80_000_000, 30000, 20, 'the stream to flow again (80 MB more)');
  assert.equal(m.metricValue((await h.request(a.url + '/metrics')).text, 'aiproxy_mesh_requests_forwarded_total', { peer: 'b' }), 2);
});

