// The ledger under kill -9. The guarantee tested (docs/budget.md): a
// record is committed once its batch transaction has committed; the writer
// commits as soon as records are queued, so every request answered more
// than a short bound (here 500 ms) before the kill is in the ledger; rows
// never name a request no client sent; the database opens cleanly
// (PRAGMA integrity_check = ok); a restart restores exactly the committed
// spend.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import * as h from './harness.mjs';

const COMMIT_BOUND_MS = 500;
const sql = (db, q) => execFileSync('sqlite3', [db, q], { encoding: 'utf8' }).trim();

describe('ledger crash safety', () => {
  let fake;
  before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
  after(() => h.killAll());

  test('kill -9 under concurrent load loses no committed record', { timeout: 30000 }, async (t) => {
    const db = path.join(h.tempDir(), 'costs.db');
    const cfg = h.baseConfig({ fakePort: fake.port, server: { workers: 4 }, extra: { budget: { cost_db: `sqlite:///${db}` } } });
    const gw = await h.startGateway(cfg);
    const received = new Map(); // request id -> time the full answer arrived
    let stop = false;
    let killAt = 0;
    const client = async (n) => {
      for (let i = 0; !stop; i++) {
        try {
          const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`load ${n} ${i}`), timeoutMs: 3000 });
          if (r.status === 200) received.set(r.headers['x-aiproxy-request-id'], Date.now());
        } catch { /* the kill cuts requests off */ }
      }
    };
    const clients = Array.from({ length: 16 }, (_, n) => client(n));
    await h.sleep(1500);
    killAt = Date.now();
    await gw.stop('SIGKILL');
    stop = true;
    await Promise.all(clients);
    assert.ok(received.size > 50, `only ${received.size} requests answered`);

    assert.equal(sql(db, 'PRAGMA integrity_check'), 'ok');
    const rows = new Set(sql(db, 'SELECT request_id FROM requests').split('\n').filter(Boolean));
    const unknown = [...rows].filter((id) => !received.has(id));
    // A row is written after its answer was queued; at most the requests in
    // flight at the kill (16 clients) can be in the ledger unanswered.
    assert.ok(unknown.length <= 16, `${unknown.length} rows for requests no client received`);
    const missing = [...received].filter(([id, at]) => at < killAt - COMMIT_BOUND_MS && !rows.has(id));
    assert.deepEqual(missing, [], 'answered requests missing from the ledger');
    assert.equal(sql(db, 'SELECT COUNT(*) FROM requests WHERE status <> 200 AND status <> 499'), '0');

    // Restart: the spend restored is exactly what the ledger holds.
    const sum = BigInt(sql(db, 'SELECT SUM(cost_nanos) FROM requests'));
    const gw2 = await h.gatewayFor(t, cfg);
    const b = (await h.request(gw2.url + '/v1/budget')).json;
    assert.equal(BigInt(b.month.spent_nanos), sum);
  });

  test('SIGTERM drains: every answered request is in the ledger', { timeout: 20000 }, async () => {
    const db = path.join(h.tempDir(), 'costs.db');
    const gw = await h.startGateway(h.baseConfig({ fakePort: fake.port, extra: { budget: { cost_db: `sqlite:///${db}` } } }));
    const rs = await Promise.all(Array.from({ length: 100 }, (_, i) =>
      h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`drain ${i}`) })));
    assert.ok(rs.every((r) => r.status === 200));
    assert.equal(await gw.stop('SIGTERM'), 0);
    assert.equal(sql(db, 'SELECT COUNT(*) FROM requests'), '100');
    assert.equal(sql(db, 'SELECT version FROM schema_version'), '7');
    const ids = new Set(rs.map((r) => r.headers['x-aiproxy-request-id']));
    for (const id of sql(db, 'SELECT request_id FROM requests').split('\n')) assert.ok(ids.has(id));
  });
});
