// Shared state across nodes (SPEC section 6): three aiproxyd nodes on one
// real redis-server hold request limits, tokens per minute and budgets
// exactly; managed keys created on one node work on the others at once and
// a revocation reaches every node within a second; Redis stopped, slowed
// and restarted under on_store_down local (nothing fails, the outage's
// spend reaches the shared counters exactly once) and closed (503
// store_unavailable, then recovery); /ready, /aiproxy/status and metrics
// show the store's state; the Redis password never shows.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as h from './harness.mjs';
import { startRedis, stopAllRedis } from './redis-harness.mjs';

// Redis keeps what it holds across a restart (append-only file, fsync always).
const DURABLE = ['--appendonly', 'yes', '--appendfsync', 'always'];

const ADMIN = 'admin-key-1';
let prefixSeq = 0;

describe('shared state on Redis', () => {
  let fake, redis;
  before(async () => {
    fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
    redis = await startRedis();
  });
  after(async () => { await stopAllRedis(); await h.killAll(); });
  beforeEach(() => fake.reset());

  // Three nodes sharing one Redis (a fresh key prefix per test).
  async function cluster(t, { keys = [], budget = {}, cluster = {}, n = 3, redisUrl } = {}) {
    const prefix = `t${process.pid}x${++prefixSeq}:`;
    const dir = h.tempDir();
    const nodes = [];
    for (let i = 0; i < n; i++) {
      nodes.push(await h.gatewayFor(t, h.baseConfig({
        fakePort: fake.port, server: { workers: 2 },
        extra: {
          node: { id: `node-${i}` },
          budget: { cost_db: `sqlite:///${path.join(dir, `n${i}.db`)}`, ...budget },
          cluster: { redis: { url: redisUrl || redis.url, prefix, timeout: '200ms' }, ...cluster },
          security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'admin', role: 'admin' }, ...keys] } },
        },
      })));
    }
    return { nodes, prefix };
  }
  const chat = (gw, key, body = h.chatBody('x')) =>
    h.request(gw.url + '/v1/chat/completions', { body, headers: { authorization: `Bearer ${key}` }, timeoutMs: 15000 });

  test('a 30-per-hour key limit over 60 concurrent requests on 3 nodes admits exactly 30', { timeout: 30000 }, async (t) => {
    const { nodes } = await cluster(t, { keys: [{ key: 'k1', name: 'team', rate_limit: 30 }] });
    const before = (await redis.commandstats()).evalsha || 0;
    const t0 = Date.now();
    const rs = await Promise.all(Array.from({ length: 60 }, (_, i) => chat(nodes[i % 3], 'k1')));
    assert.equal(rs.filter((r) => r.status === 200).length, 30);
    const refused = rs.filter((r) => r.status !== 200);
    assert.equal(refused.length, 30);
    for (const r of refused) h.assertOpenAIError(r, 429, 'rate_limit_exceeded');
    assert.equal((await fake.requests()).length, 30);
    const remaining = rs.filter((r) => r.status === 200)
      .map((r) => Number(r.headers['x-ratelimit-remaining-requests'])).sort((a, b) => a - b);
    assert.deepEqual(remaining, Array.from({ length: 30 }, (_, i) => i), 'one count across the nodes');
    // at most one script call before each request and one after each admitted one
    // (calls gather several requests), besides each node's watcher polling every 100 ms
    const calls = (await redis.commandstats()).evalsha - before;
    const polls = 3 * (Math.ceil((Date.now() - t0) / 100) + 2);
    assert.ok(calls <= 60 + 30 + polls, `${calls} script calls for 60 requests`);
  });

  test('tokens per minute hold exactly across nodes', { timeout: 30000 }, async (t) => {
    // 1 prompt token + max_tokens 60 = 61 tokens each, and the fake reports exactly that:
    // a 610-token minute admits 10 of 30.
    await fake.control({ default: { delayMs: 20, usage: { prompt_tokens: 1, completion_tokens: 60 } } });
    const { nodes } = await cluster(t, { keys: [{ key: 'tk', name: 'tk', tokens_per_minute: 610 }] });
    const body = h.chatBody('hi', { max_tokens: 60 });
    const rs = await Promise.all(Array.from({ length: 30 }, (_, i) => chat(nodes[i % 3], 'tk', body)));
    assert.equal(rs.filter((r) => r.status === 200).length, 10);
    for (const r of rs.filter((x) => x.status !== 200)) h.assertOpenAIError(r, 429, 'rate_limit_exceeded');
  });

  test('a budget with room for 10 requests over 40 concurrent ones on 3 nodes is never overspent', { timeout: 30000 }, async (t) => {
    // each request: 1 prompt token + max_tokens 10 = 21000 nanos, estimated and real
    await fake.control({ default: { delayMs: 30, usage: { prompt_tokens: 1, completion_tokens: 10 } } });
    const { nodes } = await cluster(t, { budget: { daily_limit: 0.00021 } });
    const body = h.chatBody('hi', { max_tokens: 10 });
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => chat(nodes[i % 3], ADMIN, body)));
    const ok = rs.filter((r) => r.status === 200);
    assert.equal(ok.length, 10);
    for (const r of rs.filter((x) => x.status !== 200)) h.assertOpenAIError(r, 429, 'budget_exceeded');
    // every node sees the cluster's spend
    for (const gw of nodes) {
      await h.waitFor(async () => {
        const b = (await h.request(gw.url + '/v1/budget', { headers: { authorization: `Bearer ${ADMIN}` } })).json;
        return BigInt(b.today.spent_nanos) === 210000n;
      }, 3000, 50, 'the shared spend on every node');
    }
    // the next request is refused on any node
    h.assertOpenAIError(await chat(nodes[2], ADMIN, body), 429, 'budget_exceeded');
  });

  test('a key created on node A works on node C at once; revoked on C, refused on A within a second', { timeout: 30000 }, async (t) => {
    const { nodes, prefix } = await cluster(t);
    const [a, , c] = nodes;
    const created = await h.request(a.url + '/aiproxy/admin/keys', {
      body: { name: 'shared', rate_limit: 1000 }, headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(created.status, 201, created.text);
    const key = created.json.key;
    assert.match(key, /^sk-aip-/);
    assert.equal((await chat(c, key)).status, 200, 'at once on another node');
    assert.equal((await chat(a, key)).status, 200);
    // the store holds HMACs only, never the key
    const dump = await redis.cli('--scan');
    assert.ok(!dump.includes(key));
    const records = await redis.cli('HGETALL', `${prefix}keys`);
    assert.match(records, /"name":"shared"/);
    assert.ok(!records.includes(key));
    const revoked = await h.request(c.url + `/aiproxy/admin/keys/${created.json.id}`, {
      method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(revoked.status, 200, revoked.text);
    h.assertOpenAIError(await chat(c, key), 401, 'invalid_api_key');
    const t0 = Date.now();
    await h.waitFor(async () => (await chat(a, key)).status === 401, 1000, 20, 'revocation on node A');
    assert.ok(Date.now() - t0 < 1000);
    // the list on B shows it revoked within a second too
    let k;
    await h.waitFor(async () => {
      const list = await h.request(nodes[1].url + '/aiproxy/admin/keys', { headers: { authorization: `Bearer ${ADMIN}` } });
      k = list.json.data.find((x) => x.id === created.json.id);
      return k && k.revoked_at;
    }, 1000, 20, 'the revocation in the list on node B');
  });
});

describe('shared state when Redis goes away', () => {
  let fake;
  before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
  after(async () => { await stopAllRedis(); await h.killAll(); });
  beforeEach(() => fake.reset());

  async function node(t, redis, o = {}) {
    const dir = h.tempDir();
    return h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port, server: { workers: 2 },
      extra: {
        node: { id: o.id || 'node-x' },
        budget: { cost_db: `sqlite:///${path.join(dir, 'n.db')}`, daily_limit: 100 },
        cluster: { redis: { url: o.url || redis.url, prefix: o.prefix || 'down:', timeout: '100ms' },
                   on_store_down: o.mode || 'local' },
        security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'admin', role: 'admin' }] } },
      },
    }));
  }
  const chat = (gw) => h.request(gw.url + '/v1/chat/completions', {
    body: h.chatBody('hi', { max_tokens: 10 }), headers: { authorization: `Bearer ${ADMIN}` }, timeoutMs: 15000 });
  const shared = async (redis, prefix) => {
    const day = Math.floor(Date.now() / 86400000);
    return BigInt((await redis.cli('HGET', `${prefix}b:g:d:${day}`, 's')).trim() || '0');
  };
  const status = async (gw) => (await h.request(gw.url + '/aiproxy/status', { headers: { authorization: `Bearer ${ADMIN}` } })).json;

  test('local: Redis stopped and restarted under load, nothing fails, the outage spend is added once', { timeout: 60000 }, async (t) => {
    const redis = await startRedis({ args: DURABLE });
    t.after(() => redis.stop());
    await fake.control({ default: { usage: { prompt_tokens: 1, completion_tokens: 10 } } });
    const [a, b] = [await node(t, redis, { id: 'a', prefix: 'loc:' }), await node(t, redis, { id: 'b', prefix: 'loc:' })];
    let ok = 0, failed = 0, stop = false;
    const load = (async () => {
      let i = 0;
      while (!stop) {
        const r = await chat(i++ % 2 ? a : b);
        if (r.status === 200) ok++; else failed++;
      }
    })();
    await h.sleep(300);
    await redis.stop();
    await h.waitFor(async () => (await status(a)).store.up === false, 5000, 50, 'store down on a');
    const ready = await h.request(a.url + '/ready');
    assert.equal(ready.status, 200, 'local: still ready');
    assert.match(ready.text, /"store":"down"/);
    const metrics = (await h.request(a.url + '/metrics', { headers: { authorization: `Bearer ${ADMIN}` } })).text;
    assert.match(metrics, /aiproxy_store_up 0/);
    await h.sleep(500);
    await redis.restart();
    await h.waitFor(async () => (await status(a)).store.up && (await status(b)).store.up, 10000, 50, 'store up again');
    await h.sleep(300);
    stop = true;
    await load;
    assert.equal(failed, 0, 'no request failed');
    assert.ok(ok > 10);
    // every request's cost is in the shared counter exactly once
    await h.waitFor(async () => (await status(a)).store.deferred === 0 && (await status(b)).store.deferred === 0,
      10000, 50, 'deferred work written');
    assert.equal(await shared(redis, 'loc:'), BigInt(ok) * 21000n);
    assert.ok((await status(a)).store.reconciliations >= 1);
  });

  test('closed: 503 store_unavailable while Redis is down, then recovery', { timeout: 30000 }, async (t) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    const gw = await node(t, redis, { mode: 'closed', prefix: 'closed:' });
    assert.equal((await chat(gw)).status, 200);
    await redis.stop();
    await h.waitFor(async () => (await chat(gw)).status === 503, 5000, 50, '503 while down');
    const r = await chat(gw);
    h.assertOpenAIError(r, 503, 'store_unavailable');
    await h.waitFor(async () => (await h.request(gw.url + '/ready')).status === 503, 3000, 50, '/ready 503');
    await redis.restart();
    await h.waitFor(async () => (await chat(gw)).status === 200, 10000, 100, 'serving again');
    await h.waitFor(async () => (await h.request(gw.url + '/ready')).status === 200, 3000, 50, '/ready 200');
  });

  test('a Redis slower than the timeout counts as down for that request, not a stall', { timeout: 30000 }, async (t) => {
    const redis = await startRedis({ args: ['--enable-debug-command', 'local'] });
    t.after(() => redis.stop());
    await fake.control({ default: { usage: { prompt_tokens: 1, completion_tokens: 10 } } });
    const gw = await node(t, redis, { prefix: 'slow:' });
    assert.equal((await chat(gw)).status, 200);
    const sleeping = redis.cli('DEBUG', 'SLEEP', '1.5');
    await h.sleep(250); /* (redis-cli started and Redis asleep) */
    const t0 = Date.now();
    const r = await chat(gw);
    const took = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.ok(took < 1200, `answered in ${took} ms while Redis slept`);
    await sleeping;
    await h.waitFor(async () => (await status(gw)).store.up && (await status(gw)).store.deferred === 0, 10000, 50, 'recovered');
    assert.equal(await shared(redis, 'slow:'), 2n * 21000n, 'the slow request counted once');
    assert.ok((await status(gw)).store.timeouts >= 1);
  });

  test('rediss:// (TLS, the server certificate verified) and an ACL user', { timeout: 30000 }, async (t) => {
    await fake.control({ default: { usage: { prompt_tokens: 1, completion_tokens: 10 } } });
    const tls = await startRedis({ tls: true, user: 'gateway', aclPassword: 'acl-pw-789' });
    t.after(() => tls.stop());
    assert.match(tls.url, /^rediss:\/\/gateway:acl-pw-789@/);
    const dir = h.tempDir();
    const gw = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port,
      extra: {
        budget: { cost_db: `sqlite:///${path.join(dir, 'n.db')}`, daily_limit: 100 },
        cluster: { redis: { url: tls.url, prefix: 'tls:', timeout: '500ms', ca_file: tls.caFile } },
        security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'admin', role: 'admin' }] } },
      },
    }));
    assert.equal((await chat(gw)).status, 200);
    assert.equal((await status(gw)).store.up, true);
    await h.waitFor(async () => await shared(tls, 'tls:') === 21000n, 3000, 50, 'spend written over TLS');
    assert.ok(!gw.logs().includes('acl-pw-789'));
    // without its CA (the system's does not know it): never up, still serving (local)
    const wrongCa = await node(t, tls, { prefix: 'tls:', url: tls.url });
    await h.waitFor(async () => (await status(wrongCa)).store.up === false, 5000, 50, 'unverified server refused');
    assert.equal((await chat(wrongCa)).status, 200, 'local: serving');
  });

  test('the Redis password never shows in status, metrics, logs or errors', { timeout: 30000 }, async (t) => {
    const redis = await startRedis({ password: 'redis-secret-pw-123' });
    t.after(() => redis.stop());
    const gw = await node(t, redis, { prefix: 'pw:' });
    assert.equal((await chat(gw)).status, 200);
    const st = await status(gw);
    assert.equal(st.store.up, true);
    assert.ok(!JSON.stringify(st).includes('redis-secret-pw-123'));
    assert.match(st.store.url, /\*\*\*/);
    const endpoints = await h.request(gw.url + '/v1/endpoints', { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.ok(!endpoints.text.includes('redis-secret-pw-123'));
    const metrics = await h.request(gw.url + '/metrics', { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.ok(!metrics.text.includes('redis-secret-pw-123'));
    // a wrong password: the store is down, the log says so without either password
    const bad = await node(t, redis, { prefix: 'pw:', url: redis.url.replace('redis-secret-pw-123', 'wrong-pw-456') });
    await h.waitFor(async () => (await status(bad)).store.up === false, 5000, 50, 'auth refused');
    assert.equal((await chat(bad)).status, 200, 'local: serving');
    const logs = bad.logs() + gw.logs();
    assert.ok(!logs.includes('redis-secret-pw-123') && !logs.includes('wrong-pw-456'));
    assert.match(bad.logs(), /store_auth_failed/);
  });
});
