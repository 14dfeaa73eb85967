// The response cache shared by nodes (SPEC section 7, `cache.backend:
// redis`), against a real redis-server (redis-harness.mjs): two aiproxyd
// nodes, each in front of its own fake provider, on one Redis. An answer
// stored through node A is a hit on node B (B's provider is never asked),
// with cluster.redis.url and with only cache.redis.url; scopes hold across
// nodes; semantic entries made on A are found on B (B's watcher follows the
// vectors' stream) and on a node started later (which rebuilds its index
// from it); Redis stopped: requests are still served (misses, and hits
// from the node's own memory front), never errors, and the shared cache
// works again once Redis is back.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';
import { startRedis, stopAllRedis, haveRedis } from './redis-harness.mjs';

const CHAT = '/v1/chat/completions';
let prefixSeq = 0;

describe('the response cache on Redis', { skip: haveRedis() ? false : 'redis-server / redis-cli not installed' }, () => {
  let fa, fb, emb, redis;
  before(async () => {
    fa = await h.startFake({ name: 'pa', apiKey: 'sk-test-1' });
    fb = await h.startFake({ name: 'pb', apiKey: 'sk-test-1' });
    emb = await h.startProviderFake('fake-upstream.mjs', { name: 'emb', args: ['--semantic-embeddings'] });
    redis = await startRedis();
  });
  after(async () => { await stopAllRedis(); await h.killAll(); });
  beforeEach(async () => {
    for (const f of [fa, fb, emb]) await f.reset();
  });

  const posts = async (f) => (await f.requests()).filter((e) => e.method === 'POST').length;
  const ask = (gw, body, headers = {}) => h.request(gw.url + CHAT, { body, headers, timeoutMs: 10000 });
  // Redis' entries under `prefix` (not the vectors' stream or the clears counter).
  const entries = async (prefix) => (await redis.cli('--scan', '--pattern', `${prefix}c:*:*:*`)).split('\n').filter(Boolean);

  // A node in front of `fake`; `where`: 'cluster' (cluster.redis.url) or 'cache' (cache.redis.url only).
  function node(t, fake, { id, prefix, where = 'cluster', semantic, extra = {} }) {
    const cache = { enabled: true, mode: 'always', backend: 'redis' };
    const top = {};
    if (where === 'cluster') top.cluster = { redis: { url: redis.url, prefix, timeout: '200ms' } };
    else cache.redis = { url: redis.url };
    const providers = { p1: h.provider(fake) };
    if (semantic) {
      cache.semantic = { enabled: true, embedding_model: 'sem-embed', threshold: 0.9, ...semantic };
      providers.emb = h.provider(`${emb.url}/v1`, { models: [{ name: 'sem-embed', openai_model: 'upstream-embed', capabilities: ['embeddings'], cost_per_1k_tokens: 0.0001 }] });
    }
    return h.gatewayFor(t, h.baseConfig({ providers, extra: { node: { id }, cache, ...top, ...extra } }));
  }

  for (const where of ['cluster', 'cache']) {
    test(`an answer stored through node A is a hit on node B (${where}.redis.url)`, { timeout: 20000 }, async (t) => {
      let prefix = `t${process.pid}x${++prefixSeq}:`;
      if (where === 'cache') {
        prefix = 'aiproxy:'; // cluster.redis.prefix's default
        await redis.flushall();
      }
      const keys = [{ key: 'k-acme-1', name: 'alice', tenant: 'acme' }, { key: 'k-acme-2', name: 'bob', tenant: 'acme' }, { key: 'k-beta', name: 'carol', tenant: 'beta' }];
      const security = { auth: { enabled: true, api_keys: keys } };
      const a = await node(t, fa, { id: 'node-a', prefix, where, extra: { security } });
      const b = await node(t, fb, { id: 'node-b', prefix, where, extra: { security } });
      const as = (gw, key, body) => ask(gw, body, { authorization: `Bearer ${key}` });
      const body = h.chatBody('shared between the nodes');
      const miss = await as(a, 'k-acme-1', body);
      assert.equal(miss.status, 200, miss.text);
      assert.equal(miss.headers['x-aiproxy-cache'], 'miss');
      await h.waitFor(async () => (await entries(prefix)).length === 1, 3000, 25, 'the entry on Redis');
      const ttl = Number(await redis.cli('PTTL', (await entries(prefix))[0]));
      assert.ok(ttl > 3500000 && ttl <= 3600000, `the entry expires with the answer (1h): PTTL ${ttl}`);

      const hit = await as(b, 'k-acme-2', body);
      assert.equal(hit.status, 200, hit.text);
      assert.equal(hit.headers['x-aiproxy-cache'], 'hit', 'B finds what A stored');
      assert.equal(hit.headers['x-aiproxy-node'], 'node-b');
      assert.equal(hit.headers['x-aiproxy-provider'], 'p1');
      assert.equal(hit.json['x-aiproxy'].cache.status, 'hit');
      assert.equal(hit.json['x-aiproxy'].cost, 0);
      assert.equal(hit.json['x-aiproxy'].saved, miss.json['x-aiproxy'].cost);
      assert.deepEqual(hit.json.choices, miss.json.choices);
      assert.equal(hit.json.id, miss.json.id);
      // Streamed from B too.
      const s = await h.streamRequest(b.url + CHAT, { body: { ...body, stream: true }, headers: { authorization: 'Bearer k-acme-1' }, timeoutMs: 10000 });
      assert.equal(s.headers['x-aiproxy-cache'], 'hit');
      const done = await s.done;
      assert.equal(done.events[done.events.length - 1], '[DONE]');
      const text = done.events.slice(0, -1).map((e) => JSON.parse(e)).map((c) => (c.choices[0] && c.choices[0].delta.content) || '').join('');
      assert.equal(text, 'echo: shared between the nodes');
      assert.equal(await posts(fb), 0, 'the provider behind B received nothing');
      assert.equal(await posts(fa), 1);

      // Another tenant: its own answer, on either node.
      const beta = await as(b, 'k-beta', body);
      assert.equal(beta.headers['x-aiproxy-cache'], 'miss', 'no answer crosses tenants, across nodes either');
      assert.equal(await posts(fb), 1);
      await h.waitFor(async () => (await entries(prefix)).length === 2, 3000, 25, 'two entries on Redis');
      assert.equal((await as(a, 'k-beta', body)).headers['x-aiproxy-cache'], 'hit');
      assert.equal(await posts(fa), 1);
    });
  }

  test('semantic entries made on node A are found on node B and on a node started later', { timeout: 30000 }, async (t) => {
    const prefix = `t${process.pid}x${++prefixSeq}:`;
    const a = await node(t, fa, { id: 'node-a', prefix, semantic: {} });
    const b = await node(t, fb, { id: 'node-b', prefix, semantic: {} });
    const stored = await ask(a, h.chatBody('What is the capital of France?'));
    assert.equal(stored.headers['x-aiproxy-cache'], 'miss');
    await h.waitFor(async () => Number(await redis.cli('XLEN', `${prefix}c:sem`)) === 1, 3000, 25, 'the vector on the stream');

    // While B's watcher has not read the vector, B's paraphrase is a miss: B's
    // provider fails meanwhile, so B stores nothing of its own.
    await fb.control({ default: { status: 500 } });
    const findOn = async (gw, text) => h.waitFor(async () => {
      const r = await ask(gw, h.chatBody(text));
      if (r.headers['x-aiproxy-cache'] === 'semantic_hit') return r;
      assert.equal(r.status, 502, `a miss while waiting: ${r.status} ${r.text}`);
      return null;
    }, 3000, 100, `a semantic hit for "${text}"`);
    const r = await findOn(b, 'what is the capital of france');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-aiproxy-node'], 'node-b');
    assert.equal(r.json.choices[0].message.content, 'echo: What is the capital of France?', 'A\'s answer');
    assert.ok(r.json['x-aiproxy'].cache.similarity >= 0.9);
    assert.equal((await fb.requests()).filter((e) => e.status === 200).length, 0, 'B\'s provider answered nothing');

    // A node started now rebuilds its index from the stream.
    const fc = await h.startFake({ name: 'pc', apiKey: 'sk-test-1' });
    t.after(() => fc.stop());
    await fc.control({ default: { status: 500 } });
    const c = await node(t, fc, { id: 'node-c', prefix, semantic: {} });
    const rc = await findOn(c, 'WHAT is the capital of France');
    assert.equal(rc.json.choices[0].message.content, 'echo: What is the capital of France?');
    // An exact repeat on C: a hit from Redis, no embedding.
    const before = (await emb.requests()).length;
    const exact = await ask(c, h.chatBody('What is the capital of France?'));
    assert.equal(exact.headers['x-aiproxy-cache'], 'hit');
    assert.equal((await emb.requests()).length, before);
    assert.equal(await posts(fa), 1);
    // The watcher thread and its connection go away cleanly (an ASan build checks for leaks here).
    assert.equal(await c.stop('SIGTERM'), 0, c.logs().slice(-3000));
  });

  test('Redis stopped: requests are served (misses, hits from the node\'s memory), never errors; back, it is shared again', { timeout: 30000 }, async (t) => {
    const prefix = `t${process.pid}x${++prefixSeq}:`;
    const a = await node(t, fa, { id: 'node-a', prefix, semantic: {} });
    const b = await node(t, fb, { id: 'node-b', prefix, semantic: {} });
    const body = h.chatBody('before the outage');
    assert.equal((await ask(a, body)).headers['x-aiproxy-cache'], 'miss');
    await h.waitFor(async () => (await entries(prefix)).length === 1, 3000, 25, 'the entry on Redis');
    assert.equal((await ask(b, body)).headers['x-aiproxy-cache'], 'hit');
    await redis.stop();
    try {
      // B had the entry in its memory front: still a hit.
      const front = await ask(b, body);
      assert.equal(front.status, 200, front.text);
      assert.equal(front.headers['x-aiproxy-cache'], 'hit');
      for (const gw of [a, b]) {
        // A miss, stored in the node's memory and index; a paraphrase finds it there.
        for (const [text, want] of [['during the outage', 'miss'], ['During the outage!', 'semantic_hit']]) {
          const r = await ask(gw, h.chatBody(text));
          assert.equal(r.status, 200, r.text);
          assert.equal(r.headers['x-aiproxy-cache'], want, `${gw.url}: ${text}`);
        }
        const s = await h.streamRequest(gw.url + CHAT, { body: { ...h.chatBody('streamed in the outage'), stream: true }, timeoutMs: 10000 });
        assert.equal(s.status, 200);
        const done = await s.done;
        assert.equal(done.events[done.events.length - 1], '[DONE]');
      }
      // What a node stored meanwhile is in its own memory.
      assert.equal((await ask(a, h.chatBody('during the outage'))).headers['x-aiproxy-cache'], 'hit');
      assert.equal((await h.request(a.url + '/health')).status, 200);
    } finally {
      await redis.restart();
    }
    // Back: what A stores reaches B again. Each worker's connection comes
    // back on its own (after a backoff of up to 5 s): a fresh question each
    // turn, asked of A, then of B, until B finds A's answer.
    let i = 0;
    const hit = await h.waitFor(async () => {
      const body2 = h.chatBody(`after the outage ${i++}`);
      const ra = await ask(a, body2);
      assert.equal(ra.status, 200, ra.text);
      // (a miss, or a semantic hit should two numbers' words meet in one dimension)
      await h.sleep(50);
      const rb = await ask(b, body2);
      assert.equal(rb.status, 200, rb.text);
      return rb.headers['x-aiproxy-cache'] === 'hit' ? rb : null;
    }, 15000, 100, 'a hit on B for an answer A stored after Redis came back');
    assert.equal(hit.json['x-aiproxy'].cost, 0);
  });
});
