// Mesh federation under failure (SPEC section 5): real aiproxyd nodes that
// are SIGKILLed, restarted, SIGSTOPped (a partition), overloaded, chained by
// seeds, fenced by mutual TLS and reloaded with SIGHUP.
//
// Every node has its own client port, mesh port and SQLite ledger, a
// heartbeat period of 300 ms and a peer_timeout of 1 s, so "unhealthy within
// peer_timeout (+ one heartbeat period of slack)" is about 1.3 s.
//
//   node --test --test-concurrency=1 tests/integration/mesh-resilience.test.mjs
//   AIPROXYD=build-asan/aiproxyd node --test ... (same file, ASan build)
//
// The helpers are local to this file (startNode / restart / pause /
// meshStatus / peerOf / waitPeer): they only use harness.mjs. Nodes are
// stopped with SIGTERM when their test ends and every instance's output is
// checked for sanitizer reports (ASan/LSan/UBSan builds).
//
// Tests: (1) SIGKILL of a peer under 20 concurrent clients, then its restart
// (two subtests); (2) SIGSTOP partition (three subtests); (3) least_loaded spill-over to a
// peer; (4) five nodes chained by seeds; (5) mutual TLS with a foreign CA;
// (6) SIGHUP reloads: add a peer, move the mesh listener, change the secret
// (three subtests).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import * as h from './harness.mjs';

after(() => h.killAll());

const SECRET = 'mesh-resilience-secret';
const PEER_TIMEOUT_MS = 1000;
const HEARTBEAT_MS = 300;
// Unhealthy at the latest peer_timeout after the last successful heartbeat
// (which came before the fault) plus one 100 ms tick; one heartbeat period
// of slack on top, and some for a loaded test machine / an ASan build.
const LOST_WITHIN_MS = PEER_TIMEOUT_MS + HEARTBEAT_MS + 400;

// ---- helpers ----

/**
 * A node's config. o: {id, port, meshPort, db, providers, peers, routing,
 * mesh (merged into node.mesh), server}
 */
function nodeConfig(o) {
  return {
    node: {
      id: o.id,
      mesh: {
        enabled: true,
        listen_addr: `127.0.0.1:${o.meshPort}`,
        secret: SECRET,
        peers: o.peers || [],
        heartbeat_interval: `${HEARTBEAT_MS}ms`,
        peer_timeout: `${PEER_TIMEOUT_MS}ms`,
        max_hops: 1,
        ...(o.mesh || {}),
      },
    },
    server: { listen_addr: `127.0.0.1:${o.port}`, workers: 2, ...(o.server || {}) },
    providers: o.providers,
    ...(o.routing ? { routing: o.routing } : {}),
    budget: { cost_db: `sqlite:///${o.db}` },
    observability: { logging: { level: 'info', format: 'json' } },
  };
}

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Undefined|Leak)Sanitizer/;

/**
 * Starts one node (ports and ledger chosen here unless given). Returns
 * {id, port, meshPort, meshAddr, cfg, gw, url, proc, configFile, logs(),
 * restart(), kill(), pause(), resume()}; restart() starts the same config
 * again (same ports, same ledger). When test `t` ends the node is SIGCONTed
 * and stopped with SIGTERM (SIGKILL after 5 s), so that a sanitizer build
 * reports leaks, and the output of every instance it ran is checked for
 * sanitizer reports.
 */
async function startNode(t, o) {
  const port = o.port || await h.freePort();
  const meshPort = o.meshPort || await h.freePort();
  const db = o.db || path.join(h.tempDir('aiproxy-mesh-db-'), `${o.id}.db`);
  const cfg = nodeConfig({ ...o, port, meshPort, db });
  const instances = [];
  const node = { id: o.id, port, meshPort, meshAddr: `127.0.0.1:${meshPort}`, cfg };
  const launch = async () => {
    const gw = await h.startGateway(cfg, { readyTimeoutMs: 15000 });
    instances.push(gw);
    node.gw = gw;
    node.url = gw.url;
    node.proc = gw.proc;
    node.configFile = gw.configFile;
    return node;
  };
  const alive = () => node.proc && node.proc.exitCode === null && node.proc.signalCode === null;
  node.restart = launch;
  node.logs = () => node.gw.logs();
  node.kill = async () => {
    if (!alive()) return;
    const p = node.proc;
    const exited = new Promise((r) => p.once('exit', r));
    try { p.kill('SIGCONT'); } catch { /* gone */ }
    try { p.kill('SIGKILL'); } catch { /* gone */ }
    await Promise.race([exited, h.sleep(3000)]);
  };
  /** SIGSTOP, and wait until the kernel says it is stopped. */
  node.pause = async () => {
    node.proc.kill('SIGSTOP');
    await h.waitFor(() => {
      try { return /^[tT]$/.test(fs.readFileSync(`/proc/${node.proc.pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0]); } catch { return true; }
    }, 2000, 5, `${o.id} stopped`);
  };
  node.resume = () => { try { node.proc.kill('SIGCONT'); } catch { /* gone */ } };
  t.after(async () => {
    if (alive()) {
      node.resume();
      await node.gw.stop('SIGTERM', 5000);
    }
    const bad = instances.map((g) => g.logs()).find((l) => SANITIZER_RE.test(l));
    if (bad) {
      const i = bad.search(SANITIZER_RE);
      throw new Error(`sanitizer report in node ${o.id}:\n${bad.slice(Math.max(0, i - 200), i + 4000)}`);
    }
  }, { timeout: 12000 });
  await launch();
  return node;
}

async function meshStatus(node) {
  const r = await h.request(node.url + '/aiproxy/mesh/status', { timeoutMs: 3000 });
  assert.equal(r.status, 200, `mesh status of ${node.id}: ${r.text}`);
  return r.json;
}

/** The entry for `peer` (a node, or an id) in node's status, or undefined. */
async function peerOf(node, peer) {
  const st = await meshStatus(node);
  const id = typeof peer === 'string' ? peer : peer.id;
  const addr = typeof peer === 'string' ? null : peer.meshAddr;
  return st.peers.find((p) => p.id === id || (addr && p.addr === addr));
}

/** Polls until node's view of `peer` has status `status`; returns {peer, ms}. */
async function waitPeer(node, peer, status, timeoutMs, what) {
  const t0 = Date.now();
  let last;
  try {
    const p = await h.waitFor(async () => {
      last = await peerOf(node, peer);
      return last && last.status === status ? last : null;
    }, timeoutMs, 20, what || `${typeof peer === 'string' ? peer : peer.id} ${status} at ${node.id}`);
    return { peer: p, ms: Date.now() - t0 };
  } catch (e) {
    e.message += `\nlast peer entry: ${JSON.stringify(last)}\n--- ${node.id} log tail ---\n${logTail(node)}`;
    throw e;
  }
}

function logTail(node, n = 30) {
  try { return node.logs().split('\n').slice(-n).join('\n'); } catch { return '(no log)'; }
}

/** Log lines of `node` whose text contains `event`. */
function events(node, event) {
  return node.logs().split('\n').filter((l) => l.includes(event));
}

const chat = (model, text = 'hello mesh', extra = {}) => ({ model, messages: [{ role: 'user', content: text }], ...extra });

async function ask(node, model, text, timeoutMs = 8000) {
  return h.request(node.url + '/v1/chat/completions', { body: chat(model, text), timeoutMs });
}

/** The circuit state gauges of `provider` in node's Prometheus metrics. */
async function circuitOf(node, provider) {
  try {
    const r = await h.request(node.url + '/metrics', { timeoutMs: 3000 });
    const lines = r.text.split('\n').filter((l) => l.startsWith('aiproxy_provider_circuit_state{') && l.includes(`provider="${provider}"`) && / 1$/.test(l));
    return lines.map((l) => (/state="([^"]+)"/.exec(l) || [])[1]).join(',') || `(no circuit series for ${provider})`;
  } catch (e) {
    return `(metrics unavailable: ${e.message})`;
  }
}

const xa = (r) => (r.json && r.json['x-aiproxy']) || {};
const brief = (r) => `status ${r.status}, x-aiproxy ${JSON.stringify(xa(r))}, body ${String(r.text).slice(0, 300)}`;

/** Polls until a request to `node` for `model` is served by `servingId`; returns it. */
async function waitServedBy(node, model, servingId, timeoutMs = 5000) {
  let last;
  try {
    await h.waitFor(async () => {
      last = await ask(node, model, 'who serves');
      return last.status === 200 && xa(last).node === servingId;
    }, timeoutMs, 50, `${model} at ${node.id} served by ${servingId}`);
  } catch (e) {
    e.message += `\nlast answer: ${last ? brief(last) : 'none'}`;
    throw e;
  }
  return last;
}

// ---- test 1 + 2: kill -9 under load, then restart and rejoin ----
// One setup, two subtests reported separately: the kill, then the rejoin.

test('kill -9 of a peer, then its restart', { timeout: 45000 }, async (t) => {
  const fa = await h.startFake({ name: 'a-local' });
  const fb = await h.startFake({ name: 'b-local' });
  t.after(() => { fa.stop(); fb.stop(); });
  await fa.control({ default: { delayMs: 50 } });
  await fb.control({ default: { delayMs: 50 } });
  const b = await startNode(t, {
    id: 'b',
    providers: { pb: h.provider(fb, { models: [h.model('m', 'upstream-gpt', 0.0001, 0.0002)] }) },
  });
  // A: local p1 is ten times dearer than B's provider, so cost_optimized
  // ranks mesh:b first while B is healthy.
  const a = await startNode(t, {
    id: 'a',
    providers: { p1: h.provider(fa, { models: [h.model('m', 'upstream-gpt', 0.001, 0.002)] }) },
    peers: [{ addr: b.meshAddr, id: 'b' }],
    routing: { strategy: 'cost_optimized' },
  });
  let killedAt = 0;

  await t.test('SIGKILL under 20 concurrent clients: zero failed requests, b unhealthy within peer_timeout, peer_lost logged', async (st) => {
    await waitPeer(a, b, 'healthy', 5000);
    const first = await waitServedBy(a, 'm', 'b');
    assert.deepEqual(xa(first).providers_tried, ['mesh:b'], brief(first));
    assert.equal(xa(first).provider, 'pb', brief(first));
    assert.deepEqual(xa(first).route, ['a', 'b'], brief(first));

    // ~20 concurrent clients for ~3 s; B is SIGKILLed after ~1.2 s.
    const results = [];
    const failures = [];
    let stop = false;
    const client = async (i) => {
      let n = 0;
      while (!stop) {
        const text = `load ${i} ${n++}`;
        try {
          const r = await ask(a, 'm', text, 10000);
          results.push({ at: Date.now(), r });
          if (r.status !== 200) failures.push(brief(r));
          else if (r.json.choices[0].message.content !== `echo: ${text}`) failures.push(`wrong content: ${brief(r)}`);
        } catch (e) {
          failures.push(`client error: ${e.message}`);
        }
      }
    };
    const t0 = Date.now();
    const clients = Array.from({ length: 20 }, (_, i) => client(i));
    await h.sleep(1200);
    killedAt = Date.now();
    b.proc.kill('SIGKILL');
    const lost = waitPeer(a, b, 'unhealthy', LOST_WITHIN_MS + 2000); // timed from the kill
    await h.sleep(Math.max(0, 3000 - (Date.now() - t0)));
    stop = true;
    await Promise.all(clients);
    const { ms: lostMs, peer: lostPeer } = await lost;

    const viaB = results.filter(({ r }) => xa(r).node === 'b');
    const local = results.filter(({ r }) => xa(r).node === 'a');
    const failedOver = results.filter(({ r }) => JSON.stringify(xa(r).providers_tried) === JSON.stringify(['mesh:b', 'p1']));
    st.diagnostic(`${results.length} requests in ${Date.now() - t0} ms: ${viaB.length} via b, ${local.length} local, ${failedOver.length} failed over mesh:b -> p1; b unhealthy ${lostMs} ms after the kill`);
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} requests failed`);
    assert.ok(results.length >= 100, `only ${results.length} requests completed in ~3 s`);
    assert.ok(viaB.some(({ at }) => at < killedAt), 'before the kill, traffic went to b');
    assert.ok(local.some(({ at }) => at > killedAt), 'after the kill, traffic is served locally');
    assert.ok(failedOver.length > 0, 'requests in flight at b when it died failed over to p1');
    for (const { r } of failedOver) {
      assert.equal(xa(r).provider, 'p1', brief(r));
      assert.equal(xa(r).node, 'a', brief(r));
    }
    // Nothing served by b after its death (an answer may be on its way at
    // the kill instant: some slack).
    assert.ok(!viaB.some(({ at }) => at > killedAt + 500), 'no answer via b after its death');
    assert.ok(lostMs <= LOST_WITHIN_MS, `b marked unhealthy ${lostMs} ms after SIGKILL; expected within ${LOST_WITHIN_MS} ms`);
    assert.ok(lostPeer.last_error || lostPeer.heartbeats_failed > 0, `a records why b is lost: ${JSON.stringify(lostPeer)}`);
    await h.waitFor(() => events(a, 'peer_lost').length > 0, 2000, 20, 'peer_lost in a\'s log');
    assert.match(events(a, 'peer_lost')[0], /\bb\b/, 'peer_lost names b');

    // While b is down, a keeps answering locally.
    const down = await ask(a, 'm', 'while b is down');
    assert.equal(down.status, 200, brief(down));
    assert.deepEqual(xa(down).providers_tried, ['p1'], brief(down));
  });

  await t.test('restart with the same ports and config: b healthy again at a, peer_restarted logged, traffic back at b', async (st) => {
    // (b was SIGKILLed above; make sure of it even if that subtest failed early)
    await b.kill();
    const t1 = Date.now();
    await b.restart();
    const { ms: rejoinMs } = await waitPeer(a, b, 'healthy', 5000, 'restarted b healthy at a');
    const healthyAt = Date.now();
    st.diagnostic(`restarted b healthy at a ${healthyAt - t1} ms after its start (${rejoinMs} ms after /ready)`);
    const circuit = await circuitOf(a, 'mesh:b');
    await h.waitFor(() => events(a, 'peer_restarted').length > 0, 2000, 20, 'peer_restarted in a\'s log')
      .catch((e) => { e.message += `\n${events(a, 'peer_').join('\n')}`; throw e; });
    assert.match(events(a, 'peer_restarted')[0], /\bb\b/, 'peer_restarted names b');
    assert.ok(events(a, 'peer_joined').length >= 2, `peer_joined again:\n${events(a, 'peer_').join('\n')}`);

    // Traffic goes back to b. Measured, and bounded loosely first (the
    // gateway must get there at all) ...
    const again = await waitServedBy(a, 'm', 'b', 9000);
    const backMs = Date.now() - healthyAt;
    st.diagnostic(`traffic back at b ${backMs} ms after b was reported healthy at a, ${Date.now() - killedAt} ms after the kill`);
    assert.deepEqual(xa(again).providers_tried, ['mesh:b'], brief(again));
    assert.equal(xa(again).provider, 'pb', brief(again));
    assert.deepEqual(xa(again).route, ['a', 'b'], brief(again));
    // ... then strictly: a peer that a's own status reports healthy (and
    // whose new boot id a has seen) is its first choice again within a few
    // heartbeat periods, not only after the circuit breaker's cooldown
    // from the failures of b's previous incarnation.
    assert.ok(backMs <= 1500, `a routes around the healthy, restarted b for ${backMs} ms after reporting it healthy `
      + `(a's metrics then: ${circuit}; the mesh:b circuit opened by the kill stays open for its cooldown, `
      + 'a heartbeat success / new boot id does not reset it)');
  });
});

// ---- test 3: partition with SIGSTOP ----

test('SIGSTOP partition of a peer, then SIGCONT', { timeout: 40000 }, async (t) => {
  const fa = await h.startFake({ name: 'a-local' });
  const fb = await h.startFake({ name: 'b-local' });
  t.after(() => { fa.stop(); fb.stop(); });
  const b = await startNode(t, {
    id: 'b',
    providers: { pb: h.provider(fb, { models: [h.model('m', 'upstream-gpt', 0.0001, 0.0002)] }) },
  });
  const a = await startNode(t, {
    id: 'a',
    providers: { p1: h.provider(fa, { models: [h.model('m', 'upstream-gpt', 0.001, 0.002)] }) },
    peers: [{ addr: b.meshAddr }], // id learned from b's heartbeat answers
    routing: { strategy: 'cost_optimized' },
  });
  const { peer: seen } = await waitPeer(a, b, 'healthy', 5000);
  assert.equal(seen.id, 'b', 'the id is learned from the heartbeat');
  await waitServedBy(a, 'm', 'b');

  await b.pause();
  const stoppedAt = Date.now();
  // One request goes out at the freeze, while b is still a's first choice.
  const INFLIGHT_CLIENT_TIMEOUT_MS = 6000;
  const inflight = ask(a, 'm', 'sent at the freeze', INFLIGHT_CLIENT_TIMEOUT_MS)
    .then((r) => ({ r, ms: Date.now() - stoppedAt }), (e) => ({ error: e.message, ms: Date.now() - stoppedAt }));

  await t.test('SIGSTOP: b unhealthy at a within peer_timeout, peer_lost logged, new requests served locally, probes keep failing', async (st) => {
    const { ms: lostMs, peer } = await waitPeer(a, b, 'unhealthy', LOST_WITHIN_MS + 3000);
    st.diagnostic(`b unhealthy at a ${lostMs} ms after SIGSTOP (last_error: ${peer.last_error})`);
    assert.ok(lostMs <= LOST_WITHIN_MS, `unhealthy ${lostMs} ms after SIGSTOP; expected within ${LOST_WITHIN_MS} ms`);
    await h.waitFor(() => events(a, 'peer_lost').length > 0, 2000, 20, 'peer_lost in a\'s log');

    // New requests never wait for the frozen peer.
    for (let i = 0; i < 5; i++) {
      const r = await ask(a, 'm', `partitioned ${i}`, 5000);
      assert.equal(r.status, 200, brief(r));
      assert.equal(xa(r).node, 'a', brief(r));
      assert.deepEqual(xa(r).providers_tried, ['p1'], brief(r));
      assert.ok(r.ms < 1000, `served locally in ${r.ms} ms`);
    }
    // Stays unhealthy while stopped: it is still probed, and the probes
    // fail (a heartbeat times out after peer_timeout).
    const failedBefore = peer.heartbeats_failed;
    await h.waitFor(async () => (await peerOf(a, b)).heartbeats_failed > failedBefore, PEER_TIMEOUT_MS + 1500, 50,
      'a failed heartbeat to the stopped b counted');
    const probed = await peerOf(a, b);
    assert.equal(probed.status, 'unhealthy', JSON.stringify(probed));
    assert.ok(probed.last_error, `the failed probe is reported: ${JSON.stringify(probed)}`);
  });

  await t.test('a request forwarded to b at the freeze fails over to p1 once b is lost, instead of waiting for the peer call timeout', async (st) => {
    // (b stays stopped until this settles: resumed, b would answer it.)
    const { r, error, ms } = await inflight;
    st.diagnostic(`request sent at the freeze: ${error ? `client gave up after ${ms} ms (${error})` : `${r.status} after ${ms} ms, ${JSON.stringify(xa(r).attempts)}`}`);
    assert.ok(!error, `a request sent to the frozen b at the freeze was still unanswered after ${ms} ms, although a `
      + `marked b unhealthy about ${PEER_TIMEOUT_MS} ms after the freeze (the forwarded attempt waits for the peer call `
      + 'timeout, 120 s, before failing over)');
    assert.equal(r.status, 200, brief(r));
    assert.equal(xa(r).node, 'a', brief(r));
    assert.deepEqual(xa(r).providers_tried, ['mesh:b', 'p1'], brief(r));
  });

  await t.test('SIGCONT: b healthy again at a, traffic back at b', async (st) => {
    await inflight;
    const contAt = Date.now();
    b.resume();
    const { ms: healMs } = await waitPeer(a, b, 'healthy', 5000, 'b healthy again after SIGCONT');
    st.diagnostic(`b healthy again ${healMs} ms after SIGCONT (stopped ${contAt - stoppedAt} ms)`);
    const back = await waitServedBy(a, 'm', 'b', 3000);
    assert.deepEqual(xa(back).route, ['a', 'b'], brief(back));
  });
});

// ---- test 4: least_loaded spills to the peer ----

test('least_loaded: a local provider at max_concurrency spills requests to the peer, none fails', { timeout: 30000 }, async (t) => {
  const fa = await h.startFake({ name: 'a-local' });
  const fb = await h.startFake({ name: 'b-local' });
  t.after(() => { fa.stop(); fb.stop(); });
  await fa.control({ default: { delayMs: 300 } });
  await fb.control({ default: { delayMs: 300 } });
  const b = await startNode(t, {
    id: 'b',
    providers: { pb: h.provider(fb, { max_concurrency: 20, models: [h.model('m', 'upstream-gpt')] }) },
  });
  const a = await startNode(t, {
    id: 'a',
    providers: { p1: h.provider(fa, { max_concurrency: 1, models: [h.model('m', 'upstream-gpt')] }) },
    peers: [{ addr: b.meshAddr, id: 'b' }],
    routing: { strategy: 'least_loaded' },
  });
  await waitPeer(a, b, 'healthy', 5000);
  // Idle: the tie goes to the local provider.
  const idle = await ask(a, 'm', 'idle');
  assert.equal(idle.status, 200, brief(idle));
  assert.equal(xa(idle).provider, 'p1', `an idle local provider wins the tie: ${brief(idle)}`);

  const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => ask(a, 'm', `burst ${i}`, 10000)));
  for (const r of rs) assert.equal(r.status, 200, brief(r));
  const local = rs.filter((r) => xa(r).provider === 'p1' && xa(r).node === 'a');
  const remote = rs.filter((r) => xa(r).node === 'b');
  t.diagnostic(`6 concurrent: ${local.length} by p1, ${remote.length} via mesh:b; tried: ${rs.map((r) => JSON.stringify(xa(r).providers_tried)).join(' ')}`);
  assert.ok(local.length >= 1, 'some are served by a\'s own provider');
  assert.ok(remote.length >= 1, 'the rest go through mesh:b');
  assert.equal(local.length + remote.length, 6);
  for (const r of remote) {
    assert.ok(xa(r).providers_tried.includes('mesh:b'), brief(r));
    assert.equal(xa(r).provider, 'pb', brief(r));
    assert.deepEqual(xa(r).route, ['a', 'b'], brief(r));
  }
  const fastLocal = (await fa.stats()).requests;
  // p1 (max_concurrency 1, 300 ms each) cannot have served 6 in ~300 ms.
  assert.ok(fastLocal <= 1 + local.length, `p1 upstream requests ${fastLocal}`);
});

// ---- test 5: five nodes chained by seeds ----

test('five nodes, each seeded with the previous one only: all see four healthy peers; E\'s model is answered from A', { timeout: 40000 }, async (t) => {
  const f = await h.startFake({ name: 'shared' });
  t.after(() => f.stop());
  const ids = ['a', 'b', 'c', 'd', 'e'];
  const nodes = [];
  for (const id of ids) {
    const prev = nodes[nodes.length - 1];
    const models = [h.model('m', 'upstream-gpt')];
    if (id === 'e') models.push(h.model('only-e', 'upstream-gpt'));
    nodes.push(await startNode(t, {
      id,
      providers: { [`p-${id}`]: h.provider(f, { models }) },
      peers: prev ? [{ addr: prev.meshAddr }] : [],
    }));
  }
  const t0 = Date.now();
  const expected = (n) => ids.filter((x) => x !== n.id).join(',');
  let last = {};
  try {
    await h.waitFor(async () => {
      for (const n of nodes) {
        const st = await meshStatus(n);
        const healthy = st.peers.filter((p) => p.status === 'healthy').map((p) => p.id).sort().join(',');
        last[n.id] = st.peers.map((p) => `${p.id}@${p.addr}:${p.status}`);
        if (healthy !== expected(n)) return false;
      }
      return true;
    }, 15000, 100, 'every node sees the four others healthy');
  } catch (e) {
    e.message += `\n${JSON.stringify(last, null, 1)}`;
    throw e;
  }
  t.diagnostic(`full mesh of 5 converged ${Date.now() - t0} ms after the last node was ready`);
  for (const n of nodes) {
    const st = await meshStatus(n);
    assert.equal(st.node.id, n.id);
    assert.equal(st.peers.length, 4, `${n.id} knows exactly four peers (not itself, no duplicates): ${JSON.stringify(st.peers.map((p) => p.id))}`);
  }
  const [a] = nodes;
  const ea = (await meshStatus(a)).peers.find((p) => p.id === 'e');
  assert.ok(ea.models.includes('only-e'), `a sees e's model: ${JSON.stringify(ea)}`);
  const r = await ask(a, 'only-e', 'from the far end');
  assert.equal(r.status, 200, brief(r));
  assert.equal(r.json.choices[0].message.content, 'echo: from the far end');
  assert.equal(xa(r).node, 'e', brief(r));
  assert.equal(xa(r).provider, 'p-e', brief(r));
  assert.deepEqual(xa(r).route, ['a', 'e'], brief(r));
  assert.deepEqual(xa(r).providers_tried, ['mesh:e'], brief(r));
  // The middle node reaches e directly too (learned through gossip).
  const rc = await ask(nodes[2], 'only-e', 'from the middle');
  assert.equal(rc.status, 200, brief(rc));
  assert.equal(xa(rc).node, 'e', brief(rc));
});

// ---- test 6: mutual TLS ----

/** Two unrelated CAs; leaf certs (SAN IP:127.0.0.1, serverAuth+clientAuth). */
function makeMeshPki() {
  const dir = h.tempDir('aiproxy-mesh-pki-');
  const f = (n) => path.join(dir, n);
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ca = (name) => run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`),
    '-days', '2', '-subj', `/CN=aiproxy mesh ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const leaf = (name, caName) => {
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`]);
    fs.writeFileSync(f(`${name}.ext`), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n'
      + 'keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n');
    run(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${caName}.pem`), '-CAkey', f(`${caName}.key`), '-CAcreateserial',
      '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`)]);
    return { cert_file: f(`${name}.pem`), key_file: f(`${name}.key`), ca_file: f(`${caName}.pem`) };
  };
  ca('ca1');
  ca('ca2');
  return { a: leaf('node-a', 'ca1'), b: leaf('node-b', 'ca1'), c: leaf('node-c', 'ca2') };
}

/** An HTTPS request to a mesh listener; resolves {status} or {error}. */
function tlsProbe(port, o) {
  return new Promise((resolve) => {
    const req = https.request({
      host: '127.0.0.1', port, method: 'GET', path: '/aiproxy/mesh/heartbeat', agent: false,
      ca: o.ca ? fs.readFileSync(o.ca) : undefined,
      cert: o.cert ? fs.readFileSync(o.cert) : undefined,
      key: o.key ? fs.readFileSync(o.key) : undefined,
      rejectUnauthorized: o.ca !== undefined,
      servername: '',
      headers: { authorization: `Bearer ${SECRET}` },
    }, (res) => { res.resume(); res.on('end', () => resolve({ status: res.statusCode })); res.on('error', (e) => resolve({ error: e.code || e.message })); });
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ error: e.code || e.message }));
    req.end();
  });
}

test('mutual TLS: same-CA nodes forward over TLS; a node from another CA never becomes healthy; plain HTTP is refused', { timeout: 40000 }, async (t) => {
  const pki = makeMeshPki();
  const fa = await h.startFake({ name: 'a-local' });
  const fb = await h.startFake({ name: 'b-local' });
  const fc = await h.startFake({ name: 'c-local' });
  t.after(() => { fa.stop(); fb.stop(); fc.stop(); });
  const aPort = await h.freePort();
  const aMesh = await h.freePort();
  const b = await startNode(t, {
    id: 'b',
    providers: { pb: h.provider(fb, { models: [h.model('m', 'upstream-gpt', 0.0001, 0.0002)] }) },
    mesh: { tls: pki.b },
  });
  const c = await startNode(t, {
    id: 'c',
    providers: { pc: h.provider(fc, { models: [h.model('m', 'upstream-gpt', 0.00001, 0.00002)] }) },
    peers: [{ addr: `127.0.0.1:${aMesh}` }],
    mesh: { tls: pki.c },
  });
  const a = await startNode(t, {
    id: 'a',
    port: aPort,
    meshPort: aMesh,
    providers: { p1: h.provider(fa, { models: [h.model('m', 'upstream-gpt', 0.001, 0.002)] }) },
    peers: [{ addr: b.meshAddr, id: 'b' }, { addr: c.meshAddr, id: 'c' }],
    routing: { strategy: 'cost_optimized' },
    mesh: { tls: pki.a },
  });
  await waitPeer(a, b, 'healthy', 5000, 'b healthy at a over mutual TLS');
  await waitPeer(b, 'a', 'healthy', 5000, 'a healthy at b over mutual TLS');
  // c (the cheapest, were it trusted) is tried for peer_timeout and stays out.
  const { peer: cAtA } = await waitPeer(a, c, 'unhealthy', LOST_WITHIN_MS + 3000, 'c (wrong CA) unhealthy at a');
  assert.ok(cAtA.last_error && cAtA.last_error.length > 0, `a's status says why c fails: ${JSON.stringify(cAtA)}`);
  assert.equal(cAtA.heartbeats_ok, 0, JSON.stringify(cAtA));
  assert.ok(cAtA.heartbeats_failed >= 1, JSON.stringify(cAtA));
  t.diagnostic(`c at a: ${cAtA.last_error}`);

  const r = await waitServedBy(a, 'm', 'b');
  assert.equal(xa(r).provider, 'pb', brief(r));
  assert.deepEqual(xa(r).route, ['a', 'b'], brief(r));
  assert.deepEqual(xa(r).providers_tried, ['mesh:b'], `c is never a candidate: ${brief(r)}`);
  const bReq = await fb.requests();
  assert.ok(bReq.length >= 1, 'b\'s provider got the forwarded request');
  assert.equal((await fc.stats()).requests, 0, 'nothing reached c\'s provider');

  // Over a while c never turns healthy at a, and a<->b keeps working.
  const until = Date.now() + 1500;
  while (Date.now() < until) {
    const cp = await peerOf(a, c);
    assert.notEqual(cp.status, 'healthy', `c must never be healthy at a: ${JSON.stringify(cp)}`);
    const bp = await peerOf(a, b);
    assert.equal(bp.status, 'healthy', JSON.stringify(bp));
    await h.sleep(100);
  }
  const r2 = await ask(a, 'm', 'still over tls');
  assert.equal(r2.status, 200, brief(r2));
  assert.equal(xa(r2).node, 'b', brief(r2));
  // a is not healthy at c either (c cannot verify a's certificate).
  const aAtC = (await meshStatus(c)).peers.filter((p) => p.status === 'healthy');
  assert.deepEqual(aAtC, [], 'c has no healthy peer');

  // Plain HTTP to a's TLS mesh listener: never a 200.
  let plain;
  try {
    plain = await h.request(`http://127.0.0.1:${aMesh}/aiproxy/mesh/status`, { timeoutMs: 3000 });
  } catch (e) {
    plain = { error: e.code || e.message };
  }
  assert.ok(plain.error || plain.status !== 200, `plain HTTP to the TLS mesh listener must fail: ${JSON.stringify(plain.error || plain.status)}`);
  // TLS without a client certificate, and with one from the other CA: refused.
  const noCert = await tlsProbe(aMesh, { ca: pki.a.ca_file });
  assert.ok(noCert.error || noCert.status !== 200, `TLS without a client certificate must fail: ${JSON.stringify(noCert)}`);
  const wrongCa = await tlsProbe(aMesh, { ca: pki.a.ca_file, cert: pki.c.cert_file, key: pki.c.key_file });
  assert.ok(wrongCa.error || wrongCa.status !== 200, `a client certificate from another CA must fail: ${JSON.stringify(wrongCa)}`);
  t.diagnostic(`plain: ${JSON.stringify(plain.error || plain.status)}, no cert: ${JSON.stringify(noCert)}, wrong CA: ${JSON.stringify(wrongCa)}`);
  // a<->b unaffected by all that.
  assert.equal((await peerOf(a, b)).status, 'healthy');
});

// ---- test 7: reload ----

async function reload(node, mutate) {
  const cfg = JSON.parse(fs.readFileSync(node.configFile, 'utf8'));
  mutate(cfg);
  fs.writeFileSync(node.configFile, JSON.stringify(cfg, null, 2));
  const before = events(node, 'config_loaded').length + events(node, 'config_rejected').length;
  node.proc.kill('SIGHUP');
  await h.waitFor(() => events(node, 'config_loaded').length + events(node, 'config_rejected').length > before,
    5000, 20, `${node.id} reloaded`);
  assert.equal(events(node, 'config_rejected').length, 0, `reload rejected:\n${events(node, 'config_rejected').join('\n')}`);
}

async function startLongStream(node, model, text) {
  const s = await h.streamRequest(node.url + '/v1/chat/completions', { body: chat(model, text, { stream: true }), timeoutMs: 15000 });
  assert.equal(s.status, 200, s.text());
  return s;
}

function checkStream(done, what) {
  assert.equal(done.error, null, `${what}: ${done.error}\n${done.text.slice(-500)}`);
  const ev = done.events;
  assert.equal(ev[ev.length - 1], '[DONE]', `${what} ends with [DONE]: ${done.text.slice(-500)}`);
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => !c.error), `${what}: ${done.text.slice(-500)}`);
  return chunks;
}

test('SIGHUP reload: add a peer, move the mesh listener, change the secret; in-flight streams finish', { timeout: 45000 }, async (t) => {
  const fa = await h.startFake({ name: 'a-local' });
  const fb = await h.startFake({ name: 'b-local' });
  t.after(() => { fa.stop(); fb.stop(); });
  const slow = { chunkDelayMs: 100, chunks: 20 }; // ~2 s per stream
  const expectText = Array.from({ length: 20 }, (_, i) => `c${i} `).join('');
  const streamed = (cs) => cs.map((c) => c.choices?.[0]?.delta?.content || '').join('');
  const b = await startNode(t, {
    id: 'b',
    providers: { pb: h.provider(fb, { models: [h.model('m', 'upstream-gpt', 0.0001, 0.0002)] }) },
  });
  // a also serves 'only-a', which b can only answer through a.
  const a = await startNode(t, {
    id: 'a',
    providers: { p1: h.provider(fa, { models: [h.model('m', 'upstream-gpt', 0.001, 0.002), h.model('only-a', 'upstream-gpt')] }) },
    routing: { strategy: 'cost_optimized' },
  });
  assert.deepEqual((await meshStatus(a)).peers, [], 'a starts with no peers');

  await t.test('a reload adds b as a peer: healthy at a (and a learned by b); a local stream across it finishes', async (st) => {
    await fa.control({ queue: [slow] });
    const s1 = await startLongStream(a, 'm', 'across the first reload');
    assert.equal(s1.headers['x-aiproxy-provider'], 'p1', 'the first stream is served locally');
    await h.sleep(300);
    await reload(a, (cfg) => { cfg.node.mesh.peers = [{ addr: b.meshAddr, id: 'b' }]; });
    assert.ok(s1.events.length < 20, `the stream is still in flight after the reload (${s1.events.length} events)`);
    const { ms: joinMs } = await waitPeer(a, b, 'healthy', 4000, 'b healthy at a after the reload added it');
    st.diagnostic(`b healthy at a ${joinMs} ms after the reload`);
    assert.ok(events(a, 'peer_joined').length >= 1, 'peer_joined logged');
    await waitServedBy(a, 'm', 'b');
    await waitPeer(b, a, 'healthy', 4000, 'a (learned from its heartbeats) healthy at b');
    await waitServedBy(b, 'only-a', 'a');
    const c1 = checkStream(await s1.done, 'stream across the first reload');
    assert.equal(streamed(c1), expectText, 'the whole first stream arrived');
    assert.equal(c1[c1.length - 1]['x-aiproxy']?.node, 'a', 'the first stream was served locally');
  });

  const oldMesh = a.meshPort;
  const newMesh = await h.freePort();
  await t.test('a reload moves a\'s mesh listener: a stream forwarded by b to the old listener finishes; the new one serves; b follows a', async (st) => {
    await fa.control({ queue: [slow] });
    const s = await startLongStream(b, 'only-a', 'across the move');
    assert.equal(s.headers['x-aiproxy-provider'], 'mesh:a', 'b forwards only-a to a');
    await h.sleep(300);
    await reload(a, (cfg) => { cfg.node.mesh.listen_addr = `127.0.0.1:${newMesh}`; });
    assert.ok(s.events.length < 20, `the stream is still in flight after the reload (${s.events.length} events)`);
    const c = checkStream(await s.done, 'stream through a\'s old mesh listener across the move');
    assert.equal(streamed(c), expectText, 'the whole forwarded stream arrived');
    assert.equal(c[c.length - 1]['x-aiproxy']?.node, 'a', 'served by a');
    // The new listener answers (mesh status with the secret); the old one is closed.
    const onNew = await h.request(`http://127.0.0.1:${newMesh}/aiproxy/mesh/status`, { headers: { authorization: `Bearer ${SECRET}` }, timeoutMs: 3000 });
    assert.equal(onNew.status, 200, `new mesh listener: ${onNew.text}`);
    assert.equal(onNew.json.node.id, 'a');
    await h.waitFor(async () => {
      try { await h.request(`http://127.0.0.1:${oldMesh}/aiproxy/mesh/status`, { headers: { authorization: `Bearer ${SECRET}` }, timeoutMs: 1000 }); return false; } catch (e) { return e.code === 'ECONNREFUSED'; }
    }, 4000, 50, 'the old mesh listener refuses connections once drained');
    // a still sees b (a dials b; nothing changed there).
    assert.equal((await peerOf(a, b)).status, 'healthy');
    // b learned a from its heartbeats; they now carry the new address. b
    // must follow it (a healthy at b, at the new address) and forward again.
    let lastAtB;
    try {
      await h.waitFor(async () => {
        lastAtB = (await meshStatus(b)).peers.filter((p) => p.id === 'a');
        return lastAtB.length === 1 && lastAtB[0].addr === `127.0.0.1:${newMesh}` && lastAtB[0].status === 'healthy';
      }, PEER_TIMEOUT_MS + 3000, 50, 'a healthy at b at its new mesh address');
    } catch (e) {
      e.message += `\nb's entries for a: ${JSON.stringify(lastAtB)}\nb's peer log:\n${events(b, 'peer_').join('\n')}`;
      throw e;
    }
    const r = await waitServedBy(b, 'only-a', 'a', 3000);
    assert.deepEqual(xa(r).route, ['b', 'a'], brief(r));
  });

  await t.test('a reload changes a\'s secret only: b unhealthy at a (401) within peer_timeout; a stream through b across it finishes', async (st) => {
    await fb.control({ queue: [slow] });
    const s2 = await startLongStream(a, 'm', 'across the secret change');
    // (the headers carry the origin's view: its node and its candidate)
    assert.equal(s2.headers['x-aiproxy-provider'], 'mesh:b', 'the stream goes through b');
    await h.sleep(300);
    await reload(a, (cfg) => { cfg.node.mesh.secret = 'a-different-secret'; });
    assert.ok(s2.events.length < 20, `the stream is still in flight after the reload (${s2.events.length} events)`);
    const { ms: lostMs, peer } = await waitPeer(a, b, 'unhealthy', LOST_WITHIN_MS + 3000, 'b unhealthy at a after the secret changed');
    st.diagnostic(`b unhealthy at a ${lostMs} ms after the secret changed: ${peer.last_error}`);
    assert.match(peer.last_error || '', /401/, `heartbeats are refused with 401: ${JSON.stringify(peer)}`);
    assert.ok(lostMs <= LOST_WITHIN_MS, `unhealthy ${lostMs} ms after the reload; expected within ${LOST_WITHIN_MS} ms`);
    const c2 = checkStream(await s2.done, 'stream through b across the secret change');
    assert.equal(streamed(c2), expectText, 'the whole stream arrived');
    assert.equal(c2[c2.length - 1]['x-aiproxy']?.node, 'b', 'the stream was served by b');
    // Requests now stay local.
    const r = await ask(a, 'm', 'after the split');
    assert.equal(r.status, 200, brief(r));
    assert.deepEqual(xa(r).providers_tried, ['p1'], brief(r));
  });
});
