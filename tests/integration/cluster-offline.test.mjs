// Offline mode (issue 12, SPEC section 6): a node whose shared store
// (Redis) and shared ledger (PostgreSQL) are both down, and whose cloud
// provider fails, keeps serving its local model (free), keeps its books
// locally (ledger spool, node-local counters) and settles once both are
// back: every answered request reaches the PostgreSQL ledger exactly once,
// and the spend counted meanwhile reaches Redis exactly once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as h from './harness.mjs';
import { startRedis, stopAllRedis } from './redis-harness.mjs';
import { startPostgres } from './pg-harness.mjs';

const ADMIN = 'admin-offline-1';
after(async () => { await stopAllRedis(); await h.killAll(); });

test('Redis and PostgreSQL down, the cloud failing: the local model serves, the books settle later', { timeout: 90000 }, async (t) => {
  const redis = await startRedis({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const cloud = await h.startFake({ name: 'cloud', apiKey: 'sk-cloud' });
  const local = await h.startFake({ name: 'local' });
  await cloud.control({ default: { usage: { prompt_tokens: 1, completion_tokens: 10 } } });
  await local.control({ default: { usage: { prompt_tokens: 1, completion_tokens: 10 } } });
  const dir = h.tempDir();
  const gw = await h.gatewayFor(t, h.baseConfig({
    server: { workers: 2 },
    providers: {
      cloud: h.provider(cloud, { priority: 1, apiKey: 'sk-cloud', timeout: '2s' }),
      local: { type: 'local', endpoint: local.base, priority: 2, timeout: '2s',
               models: [h.model('gpt-test', 'upstream-gpt', 0, 0)] },
    },
    extra: {
      node: { id: 'edge-1' },
      routing: { strategy: 'availability', failover: { enabled: true, max_retries: 2, retry_delay: '10ms' } },
      budget: { daily_limit: 10, cost_db: pg.url, spool_db: `sqlite:///${path.join(dir, 'spool.db')}` },
      cluster: { redis: { url: redis.url, prefix: 'off:', timeout: '100ms' }, on_store_down: 'local' },
      security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'admin', role: 'admin' }] } },
    },
  }));
  const auth = { authorization: `Bearer ${ADMIN}` };
  const chat = () => h.request(gw.url + '/v1/chat/completions', {
    body: h.chatBody('hi', { max_tokens: 10 }), headers: auth, timeoutMs: 15000 });
  const status = async () => (await h.request(gw.url + '/aiproxy/status', { headers: auth })).json;
  const day = Math.floor(Date.now() / 86400000);
  const sharedSpend = async () => BigInt((await redis.cli('HGET', `off:b:g:d:${day}`, 's')).trim() || '0');
  const ids = [];

  // all up: the cloud serves (paid; the local model is made to fail meanwhile, so
  // that the cloud is the one that answers whatever the strategy's order)
  await local.control({ default: { status: 500 } });
  for (let i = 0; i < 3; i++) {
    const r = await chat();
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-provider'], 'cloud');
    ids.push(r.headers['x-request-id']);
  }
  await h.waitFor(async () => await sharedSpend() === 3n * 21000n, 3000, 50, 'cloud spend in Redis');

  // everything shared goes away, and the cloud fails
  await redis.stop();
  await pg.stop();
  await cloud.control({ default: { status: 500 } });
  await local.control({ default: { usage: { prompt_tokens: 1, completion_tokens: 10 } } });
  await h.waitFor(async () => (await status()).store.up === false, 5000, 50, 'store down');
  for (let i = 0; i < 10; i++) {
    const r = await chat();
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-provider'], 'local', 'the local model serves');
    assert.match(r.text, /"cost":0[,}]/, 'free');
    ids.push(r.headers['x-request-id']);
  }
  // the books are kept locally meanwhile: the node's budget view and its spool
  const b = (await h.request(gw.url + '/v1/budget', { headers: auth })).json;
  assert.equal(BigInt(b.today.spent_nanos), 3n * 21000n, 'the last shared spend, plus nothing (free)');
  const metrics = (await h.request(gw.url + '/metrics', { headers: auth })).text;
  assert.match(metrics, /aiproxy_store_up 0/);
  await h.waitFor(async () => (await status()).ledger.up === false, 10000, 100, 'the ledger says PostgreSQL is down');
  const st = await status();
  assert.equal(st.ledger.type, 'postgres');
  assert.match(st.ledger.url, /:\*\*\*@/, 'the PostgreSQL password masked');
  assert.ok(!JSON.stringify(st).includes(pg.password));
  await h.waitFor(async () => /aiproxy_ledger_spool_depth [1-9]/.test(
    (await h.request(gw.url + '/metrics', { headers: auth })).text), 5000, 100, 'records spooled');

  // back: the books settle
  await cloud.control({ default: { usage: { prompt_tokens: 1, completion_tokens: 10 } } });
  await redis.restart();
  await pg.start();
  await h.waitFor(async () => (await status()).store.up === true, 15000, 100, 'store up again');
  await h.waitFor(async () => {
    const rows = await pg.sql('SELECT count(*) FROM requests');
    return Number(rows.trim()) === ids.length;
  }, 20000, 200, 'every answered request in the PostgreSQL ledger');
  const dup = await pg.sql('SELECT count(*) - count(DISTINCT request_id) FROM requests');
  assert.equal(Number(dup.trim()), 0, 'none twice');
  const listed = (await pg.sql('SELECT request_id FROM requests')).trim().split('\n').sort();
  assert.deepEqual(listed, [...ids].sort());
  const cost = await pg.sql("SELECT coalesce(sum(cost_nanos), 0) FROM requests WHERE node_id = 'edge-1'");
  assert.equal(BigInt(cost.trim()), 3n * 21000n, 'the local requests cost nothing');
  assert.equal(await sharedSpend(), 3n * 21000n, 'Redis kept the cloud spend; the outage added nothing twice');
  // and serving goes on through the cloud again
  await local.control({ default: { status: 500 } });
  const r = await chat();
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-aiproxy-provider'], 'cloud');
  await h.waitFor(async () => await sharedSpend() === 4n * 21000n, 3000, 50, 'shared spend after recovery');
});
