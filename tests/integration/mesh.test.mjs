// Mesh federation (SPEC section 5): discovery through a seed, serving a
// model only a peer has (plain and streamed, through the official SDK),
// loop prevention, the mesh secret, money counted once, the cluster metrics
// view with a dead node, and client-forged hop headers.
// Every node is a real aiproxyd with its own fake upstream, ports and ledger
// (see mesh-harness.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import * as h from './harness.mjs';
import * as m from './mesh-harness.mjs';

after(() => h.killAll());

const noV1 = async (fake) => (await fake.requests()).filter((r) => r.path.startsWith('/v1'));

// The node's JSON log records with this event (and naming peer `id`, if given).
function logEvents(node, event, id) {
  const out = [];
  for (const l of node.logs().split('\n')) {
    let j;
    try { j = JSON.parse(l); } catch { continue; }
    if (j.event !== event) continue;
    if (id !== undefined && !new RegExp(`\\bpeer ${id}\\b`).test(j.msg || '') && j.peer !== id) continue;
    out.push(j);
  }
  return out;
}

test('discovery through one seed: every node learns every other', { timeout: 20000 }, async (t) => {
  const [a, b, c] = await m.startMesh(t, [
    { id: 'a', models: ['only-a'] },
    { id: 'b', models: ['only-b'], peers: ['a'] },
    { id: 'c', models: ['only-c'], cliPeers: ['a'] },
  ]);
  // heartbeat 200 ms: a few heartbeats are well within 4 s.
  await m.waitAllHealthy([a, b, c], 4000);

  const sb = await m.meshStatus(b);
  const bc = m.peerOf(sb, 'c');
  assert.equal(bc.addr, c.meshAddr, 'b learned c\'s mesh address through a');
  assert.equal(bc.configured, false, 'c is not in b\'s config');
  assert.deepEqual(bc.models, ['only-c'], 'b knows what c serves');
  assert.equal(m.peerOf(sb, 'a').configured, true);
  assert.equal(sb.node.id, 'b');
  assert.equal(sb.node.mesh_addr, b.meshAddr);
  assert.equal(sb.mesh.enabled, true);
  assert.equal(sb.mesh.heartbeat_interval_ms, 200);
  assert.equal(sb.mesh.peer_timeout_ms, 1000);
  assert.equal(sb.mesh.max_hops, 1);

  // c was given a only by address (--peers): it learned its id.
  const sc = await m.meshStatus(c);
  assert.equal(m.peerOf(sc, 'a').addr, a.meshAddr);
  assert.deepEqual(m.peerOf(sc, 'b').models, ['only-b']);
  assert.ok(!sc.peers.some((p) => p.id === 'c'), 'a node never lists itself');
  assert.equal(sc.peers.length, 2, JSON.stringify(sc.peers));

  const sa = await m.meshStatus(a);
  assert.equal(sa.peers.length, 2, JSON.stringify(sa.peers));
  for (const p of sa.peers) {
    assert.ok(p.heartbeats_ok >= 1, JSON.stringify(p));
    assert.ok(p.last_seen, JSON.stringify(p));
  }
  // b learned c through a: b's log has peer_joined for c.
  await m.waitFor(() => logEvents(b, 'peer_joined', 'c').length >= 1, 2000, 'peer_joined c in b\'s log');
  await m.waitFor(() => logEvents(a, 'peer_joined', 'b').length >= 1 && logEvents(a, 'peer_joined', 'c').length >= 1, 2000, 'peer_joined b and c in a\'s log');
  assert.equal(logEvents(a, 'peer_lost').length, 0, 'nobody was lost');

  // b routes a model only c serves, through c (a peer it was never given).
  const r = await m.chat(b, 'only-c', 'learned route');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].node, 'c');
  assert.deepEqual(r.json['x-aiproxy'].route, ['b', 'c']);
  assert.equal((await noV1(a.fake)).length, 0, 'a was not involved');
});

test('a model only a peer serves: plain and streamed through the openai SDK', { timeout: 20000 }, async (t) => {
  const [a, b] = await m.startMesh(t, [
    { id: 'a', models: ['only-a'] },
    { id: 'b', models: ['only-b'], peers: ['a'] },
  ]);
  await m.waitAllHealthy([a, b]);
  const client = new OpenAI({ baseURL: a.url + '/v1', apiKey: 'any-key', timeout: 8000, maxRetries: 0 });

  const { data, response } = await client.chat.completions.create({
    model: 'only-b', messages: [{ role: 'user', content: 'hi from the sdk' }],
  }).withResponse();
  assert.equal(data.choices[0].message.content, 'echo: hi from the sdk');
  assert.deepEqual(data.usage, { prompt_tokens: 15, completion_tokens: 5, total_tokens: 20 });
  const xa = data['x-aiproxy'];
  assert.equal(xa.provider, 'pb', JSON.stringify(xa));
  assert.equal(xa.node, 'b');
  assert.deepEqual(xa.route, ['a', 'b']);
  assert.deepEqual(xa.providers_tried, ['mesh:b']);
  assert.equal(response.headers.get('x-aiproxy-provider'), 'mesh:b');
  assert.equal(response.headers.get('x-aiproxy-node'), 'a');
  // b's provider was called exactly once, with b's credential; a's never.
  const ups = await noV1(b.fake);
  assert.equal(ups.length, 1);
  assert.equal(ups[0].headers.authorization, 'Bearer sk-b');
  assert.equal(ups[0].body.model, 'upstream-gpt');
  assert.deepEqual(ups[0].violations, []);
  assert.equal((await noV1(a.fake)).length, 0);

  // Streamed through the SDK.
  const stream = await client.chat.completions.create({
    model: 'only-b', stream: true, messages: [{ role: 'user', content: 'stream me through b' }],
  });
  let text = '';
  let last = null;
  let n = 0;
  for await (const chunk of stream) {
    n++;
    last = chunk;
    if (chunk.choices[0] && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
  }
  assert.equal(text, 'echo: stream me through b');
  assert.ok(n >= 3, `${n} chunks`);
  assert.deepEqual(last.usage, { prompt_tokens: 19, completion_tokens: 5, total_tokens: 24 });
  assert.equal(last['x-aiproxy'].node, 'b', JSON.stringify(last['x-aiproxy']));
  assert.equal(last['x-aiproxy'].provider, 'pb');
  assert.deepEqual(last['x-aiproxy'].route, ['a', 'b']);
  assert.deepEqual(last['x-aiproxy'].providers_tried, ['mesh:b']);

  // The raw stream: usage chunk, then exactly one [DONE], at the end.
  const s = await h.streamRequest(a.url + '/v1/chat/completions', {
    body: { model: 'only-b', stream: true, messages: [{ role: 'user', content: 'raw stream' }] }, timeoutMs: 8000,
  });
  assert.equal(s.status, 200);
  assert.equal(s.headers['x-aiproxy-provider'], 'mesh:b');
  const d = await s.done;
  assert.equal(d.error, null);
  assert.equal(d.events[d.events.length - 1], '[DONE]', d.text.slice(-500));
  assert.equal(d.events.filter((e) => e === '[DONE]').length, 1);
  const fin = JSON.parse(d.events[d.events.length - 2]);
  assert.deepEqual(fin.usage, { prompt_tokens: 10, completion_tokens: 3, total_tokens: 13 });
  assert.equal(fin['x-aiproxy'].node, 'b');

  // Metrics on both sides count the forwarded requests.
  const ma = (await h.request(a.url + '/metrics')).text;
  const mb = (await h.request(b.url + '/metrics')).text;
  assert.equal(m.metricValue(ma, 'aiproxy_mesh_requests_forwarded_total', { peer: 'b' }), 3, 'a forwarded 3 to b');
  assert.equal(m.metricValue(mb, 'aiproxy_mesh_requests_received_total', { peer: 'a' }), 3, 'b received 3 from a');
  assert.equal(m.metricValue(ma, 'aiproxy_mesh_peer_up', { peer: 'b' }), 1);
  assert.ok(m.metricValue(ma, 'aiproxy_mesh_heartbeats_total', { peer: 'b', outcome: 'ok' }) >= 1);
  const sb = await m.meshStatus(b);
  assert.equal(m.peerOf(sb, 'a').requests_received, 3);

  // The local model is still served locally by a.
  const r = await m.chat(a, 'only-a', 'local');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].provider, 'pa');
  assert.equal(r.json['x-aiproxy'].node, 'a');
  assert.equal(r.headers['x-aiproxy-provider'], 'pa');
});

test('loop-shaped topology: no loop, unknown model fails fast, hop limit holds', { timeout: 20000 }, async (t) => {
  const [a, b] = await m.startMesh(t, [
    { id: 'a', models: ['only-a'], peers: ['b'] },
    { id: 'b', models: ['only-b'], peers: ['a'] },
  ]);
  await m.waitAllHealthy([a, b]);

  for (const n of [a, b]) {
    const r = await m.chat(n, 'nobody-serves-this', 'where', { timeoutMs: 5000 });
    h.assertOpenAIError(r, 404, 'model_not_found');
    assert.ok(r.ms < 1000, `404 took ${r.ms} ms`);
  }
  // Streaming too.
  const rs = await h.request(a.url + '/v1/chat/completions', {
    body: { model: 'nobody-serves-this', stream: true, messages: [{ role: 'user', content: 'x' }] }, timeoutMs: 5000,
  });
  h.assertOpenAIError(rs, 404, 'model_not_found');
  assert.ok(rs.ms < 1000, `404 took ${rs.ms} ms`);
  assert.equal((await noV1(a.fake)).length, 0, 'a\'s fake got nothing');
  assert.equal((await noV1(b.fake)).length, 0, 'b\'s fake got nothing');

  // A request arriving at b's mesh listener came from a peer: with max_hops
  // 1 it is served locally or refused, never sent on to a (whatever its
  // headers say).
  for (const headers of [{ 'x-aiproxy-hops': '1', 'x-aiproxy-via': 'a' }, { 'x-aiproxy-hops': '1' }, { 'x-aiproxy-hops': '1', 'x-aiproxy-via': 'zz' }, {}]) {
    const r = await m.meshRequest(b, '/v1/chat/completions', {
      body: { model: 'only-a', messages: [{ role: 'user', content: 'bounce' }] }, headers,
    });
    assert.ok(r.status === 404 || r.status === 502, `${JSON.stringify(headers)}: expected 404/502, got ${r.status} ${r.text}`);
    assert.ok(r.json && r.json.error, r.text);
  }
  // Nonsense hop counts are refused, not forwarded.
  for (const hops of ['0', '-1', 'x', '99999999999999999999']) {
    const r = await m.meshRequest(b, '/v1/chat/completions', {
      body: { model: 'only-a', messages: [{ role: 'user', content: 'bounce' }] }, headers: { 'x-aiproxy-hops': hops },
    });
    assert.ok(r.status >= 400 && r.status < 600, `hops ${hops}: ${r.status} ${r.text}`);
  }
  assert.equal((await noV1(a.fake)).length, 0, 'a\'s provider must not be reached from b\'s mesh listener');
  assert.equal((await noV1(b.fake)).length, 0);
  const sa = await m.meshStatus(a);
  assert.equal(m.peerOf(sa, 'b').requests_received, 0, 'b forwarded nothing to a');

  // The normal path still works both ways.
  const ra = await m.chat(a, 'only-b', 'ab');
  assert.equal(ra.status, 200, ra.text);
  assert.deepEqual(ra.json['x-aiproxy'].route, ['a', 'b']);
  const rb = await m.chat(b, 'only-a', 'ba');
  assert.equal(rb.status, 200, rb.text);
  assert.deepEqual(rb.json['x-aiproxy'].route, ['b', 'a']);
  assert.equal((await noV1(a.fake)).length, 1);
  assert.equal((await noV1(b.fake)).length, 1);

  // max_hops 2: hops alone no longer stop it; `via` does.
  const [x, y] = await m.startMesh(t, [
    { id: 'x', models: ['only-x'], peers: ['y'], mesh: { max_hops: 2 } },
    { id: 'y', models: ['only-y'], peers: ['x'], mesh: { max_hops: 2 } },
  ]);
  await m.waitAllHealthy([x, y]);
  const nx = await m.chat(x, 'nobody-serves-this', 'where', { timeoutMs: 5000 });
  h.assertOpenAIError(nx, 404, 'model_not_found');
  assert.ok(nx.ms < 1000, `404 took ${nx.ms} ms`);
  const back = await m.meshRequest(y, '/v1/chat/completions', {
    body: { model: 'only-x', messages: [{ role: 'user', content: 'back to x' }] }, headers: { 'x-aiproxy-hops': '1', 'x-aiproxy-via': 'x' },
  });
  assert.ok(back.status === 404 || back.status === 502, `via x: expected 404/502, got ${back.status} ${back.text}`);
  assert.equal((await noV1(x.fake)).length, 0, 'never forwarded to a node already in via');
  assert.equal((await noV1(y.fake)).length, 0);
  // The same request from a third node (z, not in via) may go on to x: one more hop is allowed.
  const on = await m.meshRequest(y, '/v1/chat/completions', {
    body: { model: 'only-x', messages: [{ role: 'user', content: 'on to x' }] }, headers: { 'x-aiproxy-hops': '1', 'x-aiproxy-via': 'z' },
  });
  assert.equal(on.status, 200, on.text);
  assert.equal(on.json['x-aiproxy'].node, 'x');
  assert.equal((await noV1(x.fake)).length, 1);
});

test('mesh secret: the mesh listener refuses anyone without it', { timeout: 25000 }, async (t) => {
  const [a, b] = await m.startMesh(t, [
    { id: 'a', models: ['only-a'] },
    { id: 'b', models: ['only-b'], peers: ['a'] },
  ]);
  await m.waitAllHealthy([a, b]);
  const chatBody = { model: 'only-a', messages: [{ role: 'user', content: 'via mesh listener' }] };

  // Right secret: heartbeat and inference are served.
  const hb = await m.meshRequest(a, '/aiproxy/mesh/heartbeat', { method: 'POST', body: m.heartbeatBody('probe') });
  assert.equal(hb.status, 200, hb.text);
  assert.ok(hb.json && hb.json.node && hb.json.node.id === 'a', `the answer carries a's own state: ${hb.text.slice(0, 300)}`);
  const ok = await m.meshRequest(a, '/v1/chat/completions', { body: chatBody });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.choices[0].message.content, 'echo: via mesh listener');
  assert.equal((await noV1(a.fake)).length, 1);
  for (const p of ['/health', '/ready', '/v1/models', '/metrics', '/aiproxy/mesh/status']) {
    const r = await m.meshRequest(a, p);
    assert.equal(r.status, 200, `${p} with the secret: ${r.status} ${r.text.slice(0, 200)}`);
  }
  // Only the mesh surface is there.
  for (const p of ['/aiproxy/status', '/v1/budget', '/aiproxy/admin/keys']) {
    const r = await m.meshRequest(a, p);
    assert.notEqual(r.status, 200, `${p} must not be served on the mesh listener: ${r.text.slice(0, 200)}`);
  }
  await a.fake.reset();

  // Wrong or missing secret: 401 invalid_api_key and nothing else happens.
  for (const secret of [null, 'wrong-secret', `${m.MESH_SECRET}x`, '']) {
    const what = `secret ${JSON.stringify(secret)}`;
    const r1 = await m.meshRequest(a, '/aiproxy/mesh/heartbeat', { method: 'POST', body: m.heartbeatBody('intruder'), secret });
    h.assertOpenAIError(r1, 401, 'invalid_api_key');
    const r2 = await m.meshRequest(a, '/v1/chat/completions', { body: chatBody, secret });
    h.assertOpenAIError(r2, 401, 'invalid_api_key');
    const r3 = await m.meshRequest(a, '/v1/chat/completions', {
      body: { ...chatBody, stream: true }, secret, headers: { 'x-aiproxy-hops': '1', 'x-aiproxy-via': 'b' },
    });
    h.assertOpenAIError(r3, 401, 'invalid_api_key');
    for (const p of ['/aiproxy/mesh/status', '/metrics', '/v1/models']) {
      const r = await m.meshRequest(a, p, { secret });
      assert.equal(r.status, 401, `${p} with ${what}: ${r.status} ${r.text.slice(0, 200)}`);
    }
  }
  // A client key is no mesh secret either.
  h.assertOpenAIError(await m.meshRequest(a, '/v1/chat/completions', { body: chatBody, secret: 'sk-a' }), 401, 'invalid_api_key');
  assert.equal((await noV1(a.fake)).length, 0, 'nothing reached a\'s provider');
  const sa = await m.meshStatus(a);
  assert.ok(!sa.peers.some((p) => p.id === 'intruder'), 'a refused heartbeat must not add a peer');

  // Two nodes with different secrets never trust each other.
  const [x, y] = await m.startMesh(t, [
    { id: 'x', models: ['only-x'], secret: 'secret-one', peers: ['y'] },
    { id: 'y', models: ['only-y'], secret: 'secret-two', peers: ['x'] },
  ]);
  let sawHealthy = false;
  const failing = async (n, other) => {
    const s = await m.meshStatus(n);
    const p = m.peerOf(s, other);
    if (p && p.status === 'healthy') sawHealthy = true;
    // (the first ones may fail to connect while the other node starts)
    return p && p.heartbeats_failed >= 3 && /401/.test(String(p.last_error)) && p;
  };
  const px = await m.waitFor(() => failing(x, 'y'), 5000, 'x: 3 failed heartbeats to y, the last refused with 401');
  const py = await m.waitFor(() => failing(y, 'x'), 5000, 'y: 3 failed heartbeats to x, the last refused with 401');
  assert.equal(sawHealthy, false, 'a peer with another secret was seen healthy');
  for (const p of [px, py]) {
    assert.notEqual(p.status, 'healthy', JSON.stringify(p));
    assert.equal(p.heartbeats_ok, 0, JSON.stringify(p));
    assert.match(String(p.last_error), /401/, JSON.stringify(p));
  }
  const r = await m.chat(x, 'only-y', 'not through a stranger');
  h.assertOpenAIError(r, 404, 'model_not_found');
  assert.equal((await noV1(y.fake)).length, 0);

  // auth enabled and no node.mesh.secret: a config error naming the key.
  const dir = h.tempDir('aiproxy-mesh-cfg-');
  const cfgFile = path.join(dir, 'config.json');
  const cfg = h.baseConfig({
    port: await h.freePort(),
    fakePort: a.fake.port,
    extra: {
      security: { auth: { enabled: true, api_keys: [{ key: 'k1', name: 'one' }] } },
      budget: { cost_db: `sqlite:///${path.join(dir, 'costs.db')}` },
    },
  });
  cfg.node = { id: 'n', mesh: { enabled: true, listen_addr: `127.0.0.1:${await h.freePort()}` } };
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  const run = spawnSync(h.AIPROXYD, ['--config', cfgFile], { cwd: dir, encoding: 'utf8', timeout: 10000 });
  assert.equal(run.status, 2, `exit ${run.status} ${run.signal}\nstderr: ${run.stderr}\nstdout: ${run.stdout}`);
  assert.match(run.stderr, /node\.mesh\.secret/);
});

test('money is counted once: serving node pays, origin charges the key', { timeout: 25000 }, async (t) => {
  const [a, b] = await m.startMesh(t, [
    {
      id: 'a',
      models: ['only-a'],
      clientKey: 'admin-k',
      extra: {
        security: { auth: { enabled: true, api_keys: [
          { key: 'admin-k', name: 'ops', role: 'admin' },
          { key: 'k-alice', name: 'alice', tenant: 'acme' },
        ] } },
      },
    },
    { id: 'b', models: ['only-b'], peers: ['a'] },
  ]);
  await m.waitAllHealthy([a, b]);
  const alice = { authorization: 'Bearer k-alice' };
  // Distinct prompt lengths, so rows can be matched by tokens_in.
  const viaB = ['one', 'three word prompt', 'a somewhat longer prompt for the peer'];
  const local = ['local one', 'local prompt number two'];
  const answers = [];
  for (const text of viaB) {
    const r = await m.chat(a, 'only-b', text, { headers: alice });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-provider'], 'mesh:b');
    answers.push(r);
  }
  for (const text of local) {
    const r = await m.chat(a, 'only-a', text, { headers: alice });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-provider'], 'pa');
  }
  // One request entering at b directly (no key needed there).
  const direct = await m.chat(b, 'only-b', 'direct to b');
  assert.equal(direct.status, 200, direct.text);

  const rowsA = await m.waitLedger(a, viaB.length + local.length);
  const rowsB = await m.waitLedger(b, viaB.length + 1);
  assert.equal(rowsA.length, viaB.length + local.length, JSON.stringify(rowsA, (k, v) => (typeof v === 'bigint' ? String(v) : v)));
  assert.equal(rowsB.length, viaB.length + 1);

  for (const [i, text] of viaB.entries()) {
    const tokensIn = text.length;
    const br = rowsB.find((r) => r.tokens_in === tokensIn);
    const ar = rowsA.find((r) => r.tokens_in === tokensIn && r.model === 'only-b');
    assert.ok(br && ar, `rows for "${text}"`);
    assert.equal(br.via_peer, 0);
    assert.equal(br.provider, 'pb');
    assert.equal(br.origin_node, 'a');
    assert.equal(br.route, 'a,b');
    assert.equal(br.status, 200);
    assert.ok(br.cost_nanos > 0n);
    assert.equal(ar.via_peer, 1);
    assert.equal(ar.provider, 'mesh:b');
    assert.equal(ar.origin_node, 'a');
    assert.equal(ar.route, 'a,b');
    assert.equal(ar.cost_nanos, br.cost_nanos, 'the origin records what the serving node paid');
    assert.equal(ar.tokens_out, br.tokens_out);
    assert.equal(ar.request_id, answers[i].headers['x-aiproxy-request-id']);
    // x-aiproxy.cost is what b paid.
    assert.equal(BigInt(Math.round(answers[i].json['x-aiproxy'].cost * 1e9)), br.cost_nanos);
  }
  const bDirect = rowsB.find((r) => r.tokens_in === 'direct to b'.length);
  assert.equal(bDirect.via_peer, 0);
  assert.equal(bDirect.origin_node, 'b');
  for (const r of rowsA.filter((x) => x.model === 'only-a')) {
    assert.equal(r.via_peer, 0);
    assert.equal(r.provider, 'pa');
  }

  const sum = (rows) => rows.reduce((s, r) => s + r.cost_nanos, 0n);
  const ownA = sum(rowsA.filter((r) => r.via_peer === 0));
  const ownB = sum(rowsB.filter((r) => r.via_peer === 0));
  const peerServedA = sum(rowsA.filter((r) => r.via_peer === 1));
  assert.ok(ownA > 0n && ownB > 0n && peerServedA > 0n);

  // a's global spend: only what a paid its own provider.
  const g = await h.request(a.url + '/v1/budget', { headers: { authorization: 'Bearer admin-k' } });
  assert.equal(g.status, 200, g.text);
  assert.equal(BigInt(g.json.today.spent_nanos), ownA, 'a\'s global spend must exclude peer-served cost');
  assert.equal(BigInt(g.json.month.spent_nanos), ownA);
  // The key and tenant are charged at the node they entered: everything.
  const mine = await h.request(a.url + '/v1/budget', { headers: alice });
  assert.equal(mine.status, 200, mine.text);
  assert.equal(BigInt(mine.json.today.spent_nanos), ownA + peerServedA, 'the key pays for peer-served requests too');
  const acme = (g.json.by_tenant || []).find((x) => x.name === 'acme');
  assert.ok(acme, JSON.stringify(g.json.by_tenant));
  assert.equal(BigInt(acme.today_nanos), ownA + peerServedA);
  // b's global spend: what b paid (forwarded + direct).
  const gb = await h.request(b.url + '/v1/budget');
  assert.equal(BigInt(gb.json.today.spent_nanos), ownB);

  // Cluster view from either node: each provider call counted once.
  for (const n of [a, b]) {
    const headers = n === a ? { authorization: 'Bearer admin-k' } : {};
    const cl = await m.waitFor(async () => {
      const r = await h.request(n.url + '/v1/budget?scope=cluster', { headers });
      if (r.status !== 200) throw new Error(`${r.status} ${r.text}`);
      return BigInt(r.json.total.today_nanos) === ownA + ownB && r.json;
    }, 3000, `cluster total on ${n.id} == ${ownA + ownB}`);
    assert.equal(cl.scope, 'cluster');
    assert.equal(BigInt(cl.total.month_nanos), ownA + ownB);
    assert.equal(cl.nodes.length, 2, JSON.stringify(cl.nodes));
    const na = cl.nodes.find((x) => x.node === 'a');
    const nb = cl.nodes.find((x) => x.node === 'b');
    assert.equal(BigInt(na.today_nanos), ownA);
    assert.equal(BigInt(nb.today_nanos), ownB);
    assert.equal((n === a ? na : nb).source, 'self');
    assert.equal((n === a ? nb : na).source, 'heartbeat');
  }
});

test('cluster metrics: a dead node shows node_up 0 and does not stall the view', { timeout: 25000 }, async (t) => {
  const [a, b, c] = await m.startMesh(t, [
    { id: 'a', models: ['only-a'] },
    { id: 'b', models: ['only-b'], peers: ['a'] },
    { id: 'c', models: ['only-c'], peers: ['a'] },
  ]);
  await m.waitAllHealthy([a, b, c]);
  // Some traffic so every node has request samples.
  for (const mod of ['only-a', 'only-b', 'only-c']) assert.equal((await m.chat(a, mod, 'metrics')).status, 200);

  const all = await h.request(a.url + '/aiproxy/mesh/metrics', { timeoutMs: 5000 });
  assert.equal(all.status, 200, all.text.slice(0, 300));
  for (const id of ['a', 'b', 'c']) {
    assert.equal(m.metricValue(all.text, 'aiproxy_mesh_node_up', { node: id }), 1, `node_up ${id}`);
    assert.ok(all.text.split('\n').some((l) => !l.startsWith('#') && !l.startsWith('aiproxy_mesh_node_up') && l.includes(`node="${id}"`)),
      `samples labelled node="${id}"`);
  }
  const unlabelled = all.text.split('\n').filter((l) => l && !l.startsWith('#') && !/node="/.test(l));
  assert.deepEqual(unlabelled, [], 'every sample carries a node label');

  await c.kill();
  const t0 = Date.now();
  const r = await h.request(a.url + '/aiproxy/mesh/metrics', { timeoutMs: 5000 });
  const ms = Date.now() - t0;
  assert.equal(r.status, 200);
  assert.ok(ms < 3000, `cluster metrics took ${ms} ms with a dead node`);
  assert.equal(m.metricValue(r.text, 'aiproxy_mesh_node_up', { node: 'c' }), 0, 'dead c');
  assert.equal(m.metricValue(r.text, 'aiproxy_mesh_node_up', { node: 'a' }), 1);
  assert.equal(m.metricValue(r.text, 'aiproxy_mesh_node_up', { node: 'b' }), 1);
  for (const id of ['a', 'b']) {
    assert.ok(r.text.split('\n').some((l) => !l.startsWith('#') && !l.startsWith('aiproxy_mesh_node_up') && l.includes(`node="${id}"`)),
      `samples labelled node="${id}" with c dead`);
  }
  // Same from b.
  const rb = await h.request(b.url + '/aiproxy/mesh/metrics', { timeoutMs: 5000 });
  assert.ok(rb.ms < 3000, `${rb.ms} ms`);
  assert.equal(m.metricValue(rb.text, 'aiproxy_mesh_node_up', { node: 'c' }), 0);
  assert.equal(m.metricValue(rb.text, 'aiproxy_mesh_node_up', { node: 'a' }), 1);

  // A node that accepts connections but never answers (stopped) must not
  // stall the view either.
  await m.pauseNode(b);
  try {
    const r2 = await h.request(a.url + '/aiproxy/mesh/metrics', { timeoutMs: 8000 });
    assert.equal(r2.status, 200);
    assert.ok(r2.ms < 3000, `cluster metrics took ${r2.ms} ms with a hung node`);
    assert.equal(m.metricValue(r2.text, 'aiproxy_mesh_node_up', { node: 'b' }), 0, 'hung b');
    assert.equal(m.metricValue(r2.text, 'aiproxy_mesh_node_up', { node: 'a' }), 1);
  } finally {
    m.resumeNode(b);
  }
  // a eventually notices c is gone (peer_timeout 1 s) and logs it.
  await m.waitPeerStatus(a, 'c', 'unhealthy', 4000);
  await m.waitFor(() => logEvents(a, 'peer_lost', 'c').length >= 1, 2000, 'peer_lost c in a\'s log');
  const ma = (await h.request(a.url + '/metrics')).text;
  assert.equal(m.metricValue(ma, 'aiproxy_mesh_peer_up', { peer: 'c' }), 0);
  assert.ok(m.metricValue(ma, 'aiproxy_mesh_heartbeats_total', { peer: 'c', outcome: 'failed' }) >= 1);
  // And a model only c served is no longer routable.
  h.assertOpenAIError(await m.chat(a, 'only-c', 'gone', { timeoutMs: 5000 }), 404, 'model_not_found');
});

test('client-forged x-aiproxy-hops / x-aiproxy-via are ignored on the client listener', { timeout: 20000 }, async (t) => {
  const [a, b] = await m.startMesh(t, [
    { id: 'a', models: ['only-a'] },
    { id: 'b', models: ['only-b'], peers: ['a'] },
  ]);
  await m.waitAllHealthy([a, b]);
  for (const headers of [{ 'x-aiproxy-hops': '5' }, { 'x-aiproxy-hops': '5', 'x-aiproxy-via': 'b,a' }, { 'x-aiproxy-via': 'b' }]) {
    const r = await m.chat(a, 'only-b', 'forged', { headers });
    assert.equal(r.status, 200, `${JSON.stringify(headers)}: ${r.text}`);
    assert.equal(r.headers['x-aiproxy-provider'], 'mesh:b');
    assert.equal(r.json['x-aiproxy'].node, 'b');
    assert.deepEqual(r.json['x-aiproxy'].route, ['a', 'b']);
    assert.equal(r.json.choices[0].message.content, 'echo: forged');
  }
  // Streamed too.
  const s = await h.streamRequest(a.url + '/v1/chat/completions', {
    body: { model: 'only-b', stream: true, messages: [{ role: 'user', content: 'forged stream' }] },
    headers: { 'x-aiproxy-hops': '5', 'x-aiproxy-via': 'b' },
    timeoutMs: 8000,
  });
  assert.equal(s.status, 200);
  const d = await s.done;
  assert.equal(d.events[d.events.length - 1], '[DONE]');
  assert.equal((await noV1(b.fake)).length, 4);
  assert.equal((await noV1(a.fake)).length, 0);
});
