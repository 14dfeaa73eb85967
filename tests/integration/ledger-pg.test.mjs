// The PostgreSQL ledger (SPEC section 6, docs/cluster.md): three aiproxyd
// nodes (node ids n1, n2, n3) write one ledger in a real, throwaway
// PostgreSQL (pg-harness.mjs). Checked: every answered request is in it
// exactly once, under the node that answered it, with the cost the client
// saw; GET /v1/budget?by=node (and aiproxyctl budget --by node) groups the
// spend by node; a restarted node restores the whole cluster's spend;
// PostgreSQL stopped under load fails no client request, the records go to
// each node's spool and are drained when it is back; a node killed -9
// during the outage loses none of its spooled records (drained at its
// restart), and none is written twice; the password appears in no log,
// /aiproxy/status, /metrics, error body or --check summary. And the live
// part of tests/unit/ledger_pg_test.c (duplicates, bad UTF-8) on this server.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';
import { pgBinDir, startPostgres } from './pg-harness.mjs';

const NODES = ['n1', 'n2', 'n3'];
const usdToNanos = (text) => {
  const [i, f = ''] = String(text).split('.');
  return BigInt(i) * 1000000000n + BigInt((f + '000000000').slice(0, 9));
};
const metric = (text, name) => {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};
const CTL = path.join(path.dirname(h.AIPROXYD), 'aiproxyctl');

describe('PostgreSQL ledger', { skip: pgBinDir() ? false : 'PostgreSQL binaries not found (scripts/setup.sh --test installs them)' }, () => {
  let pg;
  let fake;
  const nodes = {}; // id -> gateway handle
  const configs = {}; // id -> config (fixed port and spool)
  const oldLogs = []; // the output of node processes that were replaced
  const answered = new Map(); // request id -> {node, cost (nanos)}
  let failures = [];

  before(async () => {
    pg = await startPostgres();
    fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
    const spoolDir = h.tempDir('aiproxy-spool-');
    for (const id of NODES) {
      const cfg = h.baseConfig({
        fakePort: fake.port,
        extra: { budget: { cost_db: pg.url, spool_db: `sqlite:///${path.join(spoolDir, `${id}.db`)}` } },
      });
      cfg.node = { id };
      cfg.server.listen_addr = `127.0.0.1:${await h.freePort()}`;
      configs[id] = cfg;
    }
    // Together: the schema migration runs once, under the advisory lock.
    await Promise.all(NODES.map(async (id) => { nodes[id] = await h.startGateway(configs[id]); }));
  });

  after(async () => {
    await h.killAll();
    if (pg) await pg.destroy();
  });

  // Clients sending chat requests to `ids` until stop(); each answer's
  // request id, node and cost recorded, every non-200 kept.
  function load(ids, perNode = 3) {
    let stopped = false;
    const run = async (id, k) => {
      for (let i = 0; !stopped; i++) {
        let r;
        try {
          r = await h.request(nodes[id].url + '/v1/chat/completions', { body: h.chatBody(`${id} ${k} ${i}`), timeoutMs: 5000 });
        } catch (e) {
          failures.push(`${id}: ${e.message}`);
          continue;
        }
        if (r.status !== 200) { failures.push(`${id}: ${r.status} ${r.text}`); continue; }
        assert.equal(r.headers['x-aiproxy-node'], id);
        answered.set(r.headers['x-aiproxy-request-id'], { node: id, cost: usdToNanos(/"cost":([0-9.]+)/.exec(r.text)[1]) });
      }
    };
    const runs = ids.flatMap((id) => Array.from({ length: perNode }, (_, k) => run(id, k)));
    return { stop: async () => { stopped = true; await Promise.all(runs); } };
  }

  const rows = () => pg.sql('SELECT request_id, node_id, cost_nanos FROM requests')
    .split('\n').filter(Boolean).map((l) => { const [id, node, cost] = l.split('|'); return { id, node, cost: BigInt(cost) }; });

  async function waitLedgerHoldsAnswered() {
    await h.waitFor(() => Number(pg.sql('SELECT COUNT(*) FROM requests')) >= answered.size, 15000, 50,
      `PostgreSQL to hold the ${answered.size} answered requests`);
    const rs = rows();
    assert.equal(rs.length, answered.size, 'one row per answered request');
    assert.equal(new Set(rs.map((r) => r.id)).size, rs.length, 'no request twice');
    for (const r of rs) {
      const a = answered.get(r.id);
      assert.ok(a, `row ${r.id} names no answered request`);
      assert.equal(r.node, a.node, `${r.id}: node_id`);
      assert.equal(r.cost, a.cost, `${r.id}: cost`);
    }
  }

  const spentBy = (node) => [...answered.values()].filter((a) => node === undefined || a.node === node)
    .reduce((s, a) => s + a.cost, 0n);

  async function checkByNode(gw) {
    const b = await h.request(gw.url + '/v1/budget?by=node');
    assert.equal(b.status, 200, b.text);
    assert.equal(b.json.by, 'node');
    assert.equal(b.json.source, 'postgres');
    assert.deepEqual(b.json.by_node.map((n) => n.node), NODES);
    for (const n of b.json.by_node) {
      assert.equal(BigInt(n.month_nanos), spentBy(n.node), `${n.node}: month`);
      assert.equal(BigInt(n.today_nanos), spentBy(n.node), `${n.node}: today`);
      assert.equal(n.requests_month, [...answered.values()].filter((a) => a.node === n.node).length);
    }
    assert.equal(BigInt(b.json.month.spent_nanos), spentBy());
    return b;
  }

  test('three nodes write one ledger: every answered request once, under its node; spend by node', { timeout: 30000 }, async () => {
    assert.equal(pg.sql('SELECT version FROM schema_version'), '3', 'migrated once');
    const l = load(NODES);
    await h.sleep(1500);
    await l.stop();
    assert.deepEqual(failures, []);
    assert.ok(answered.size > 30, `only ${answered.size} answers`);
    for (const id of NODES) assert.ok([...answered.values()].some((a) => a.node === id), `${id} answered nothing`);
    await waitLedgerHoldsAnswered();
    await checkByNode(nodes.n1);

    // The CLI's view of the same.
    const out = execFileSync(CTL, ['--url', nodes.n2.url, 'budget', '--by', 'node'], { encoding: 'utf8' });
    for (const id of NODES) assert.match(out, new RegExp(`^${id} `, 'm'));
    assert.match(out, /ledger: postgres/);
    const bad = spawnSync(CTL, ['--url', nodes.n2.url, 'budget', '--by', 'planet'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    const r = await h.request(nodes.n1.url + '/v1/budget?by=planet');
    h.assertOpenAIError(r, 400, 'invalid_request_error', 'by');
  });

  test('a restarted node restores the whole cluster\'s spend from PostgreSQL', { timeout: 20000 }, async () => {
    oldLogs.push(nodes.n2.logs());
    assert.equal(await nodes.n2.stop('SIGTERM'), 0);
    nodes.n2 = await h.startGateway(configs.n2);
    const b = (await h.request(nodes.n2.url + '/v1/budget')).json;
    assert.equal(BigInt(b.month.spent_nanos), spentBy(), 'every node\'s spend');
    assert.equal(BigInt(b.by_provider.find((p) => p.name === 'p1').month_nanos), spentBy());
  });

  test('PostgreSQL down under load: no request fails, records spooled and drained; kill -9 during the outage loses nothing', { timeout: 45000 }, async () => {
    failures = [];
    const before3 = answered.size;
    const l12 = load(['n1', 'n2']);
    let l3 = load(['n3']);
    await h.sleep(400);
    await pg.stop();
    await h.sleep(1200);
    // Spooled, and said so.
    for (const id of NODES) {
      await h.waitFor(async () => {
        const m = (await h.request(nodes[id].url + '/metrics')).text;
        return metric(m, 'aiproxy_ledger_db_up') === 0 && metric(m, 'aiproxy_ledger_spool_depth') > 0 &&
          metric(m, 'aiproxy_ledger_spooled_total') > 0;
      }, 5000, 50, `${id}: spooling`);
    }
    const down = await h.request(nodes.n1.url + '/v1/budget?by=node');
    h.assertOpenAIError(down, 503, 'service_unavailable');
    assert.ok(!down.text.includes(pg.password));

    // n3: quiet, its last records committed to its spool, then kill -9.
    await l3.stop();
    await h.sleep(300);
    const m3 = (await h.request(nodes.n3.url + '/metrics')).text;
    assert.equal(metric(m3, 'aiproxy_ledger_queue_depth'), 0);
    assert.ok(metric(m3, 'aiproxy_ledger_spool_depth') > 0);
    oldLogs.push(nodes.n3.logs());
    await nodes.n3.stop('SIGKILL');
    await h.sleep(500);
    await l12.stop();
    assert.deepEqual(failures, [], 'no client request failed because of the outage');
    assert.ok(answered.size > before3 + 20);

    await pg.start();
    nodes.n3 = await h.startGateway(configs.n3); // drains its spool at start
    for (const id of NODES) {
      await h.waitFor(async () => {
        const m = (await h.request(nodes[id].url + '/metrics')).text;
        return metric(m, 'aiproxy_ledger_db_up') === 1 && metric(m, 'aiproxy_ledger_spool_depth') === 0;
      }, 15000, 100, `${id}: PostgreSQL back and the spool drained`);
    }
    await waitLedgerHoldsAnswered();
    await checkByNode(nodes.n2);
    for (const id of ['n1', 'n2']) {
      const logs = nodes[id].logs();
      assert.match(logs, /"event":"ledger_db_down"/, `${id}: ledger_db_down logged`);
      assert.equal(logs.match(/"event":"ledger_db_down"/g).length, 1, `${id}: once per outage`);
      assert.match(logs, /"event":"ledger_db_up","msg":"[^"]*; [1-9]\d* spooled records drained/, `${id}: ledger_db_up with the rows drained`);
    }
    assert.match(nodes.n3.logs(), /"event":"ledger_db_up","msg":"[^"]*; [1-9]\d* spooled records drained/);
  });

  test('the password is never shown', { timeout: 15000 }, async () => {
    const seen = [...oldLogs, ...NODES.map((id) => nodes[id].logs())];
    seen.push((await h.request(nodes.n1.url + '/aiproxy/status')).text);
    seen.push((await h.request(nodes.n1.url + '/metrics')).text);
    seen.push((await h.request(nodes.n1.url + '/v1/budget?by=node')).text);
    const check = spawnSync(h.AIPROXYD, ['--check', '--config', nodes.n1.configFile], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, new RegExp(`ledger postgres://aiproxy:\\*\\*\\*@127\\.0\\.0\\.1:${pg.port}/aiproxy \\(spool `));
    seen.push(check.stdout + check.stderr);
    // A URL libpq cannot read: refused at start, without the URL.
    const dir = h.tempDir();
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ ...configs.n1, budget: { cost_db: `${pg.url}?no_such_option=1`, spool_db: `sqlite:///${dir}/s.db` } }));
    const r = spawnSync(h.AIPROXYD, ['--config', bad], { encoding: 'utf8', timeout: 10000 });
    assert.notEqual(r.status, 0);
    assert.match(r.stdout + r.stderr, /budget\.cost_db/);
    seen.push(r.stdout + r.stderr);
    for (const s of seen) assert.ok(!s.includes(pg.password), 'the password was shown');
  });

  // The unit tests' live part (a batch meeting request ids the server holds
  // already, bad UTF-8) against this server, in a database of its own.
  const unitBin = path.join(path.dirname(h.AIPROXYD), 'tests', 'ledger_pg_test');
  test('ledger_pg_test against this server', { timeout: 30000, skip: fs.existsSync(unitBin) ? false : `${unitBin} not built (make unit)` }, () => {
    pg.sql('CREATE DATABASE unit OWNER aiproxy');
    const r = spawnSync(unitBin, [], {
      encoding: 'utf8', timeout: 25000,
      env: { ...process.env, AIPROXY_TEST_PG_URL: pg.url.replace(/\/aiproxy$/, '/unit') },
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\[ +OK \] test_live_duplicates_utf8_sums/);
  });

  test('every node drains and exits 0 (under a sanitizer: no report)', { timeout: 20000 }, async () => {
    const codes = await Promise.all(NODES.map((id) => nodes[id].stop('SIGTERM')));
    assert.deepEqual(codes, [0, 0, 0]);
    for (const out of [...oldLogs, ...NODES.map((id) => nodes[id].logs())])
      assert.doesNotMatch(out, /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/);
  });
});
