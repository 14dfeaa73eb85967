// aiproxyctl against a running node: status, models, budget (bars), mesh,
// keys, reload (ok and rejected), config check, cache stats|clear (and
// DELETE /aiproxy/admin/cache itself); --json; --help for every command;
// clear errors for an unreachable node and a wrong key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';
import { haveRedis, startRedis, stopAllRedis } from './redis-harness.mjs';

const CTL = path.join(path.dirname(h.AIPROXYD), 'aiproxyctl');
const ADMIN = 'ctl-admin-key';
let fake, gw;

function ctl(args, env = {}) {
  const r = spawnSync(CTL, args, { encoding: 'utf8', env: { ...process.env, AIPROXY_API_KEY: '', ...env }, timeout: 30000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({ fakePort: fake.port, extra: {
    node: { id: 'ctl-node', region: 'eu-test', type: 'gpu', mesh: { enabled: true, secret: 'ctl-mesh-secret', peer_timeout: '1s', peers: [{ id: 'edge-1', addr: '127.0.0.1:9' }] } },
    security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }, { key: 'user-key', name: 'bob' }] } },
    budget: { daily_limit: 1, monthly_limit: 10 },
  } }));
  await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('ctl'), headers: { authorization: `Bearer ${ADMIN}` } });
});
after(async () => { if (gw) await gw.stop('SIGKILL'); await h.killAll(); });

const base = () => ['--url', gw.url, '--key', ADMIN];

test('status: node, uptime, providers with health, circuit, latency, in-flight; --json', () => {
  const r = ctl([...base(), 'status']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /node\s+ctl-node \(aiproxyd \d+\.\d+\.\d+\)/);
  assert.match(r.out, /state\s+ready, up \d+d \d\dh \d\dm \d\ds/);
  assert.match(r.out, /PROVIDER\s+TYPE\s+AVAILABLE\s+HEALTH\s+CIRCUIT\s+LATENCY\s+TTFT\s+IN-FLIGHT/);
  assert.match(r.out, /^p1\s+openai\s+yes\s+healthy\s+closed\s+\d+ ms/m);
  const j = ctl([...base(), 'status', '--json']);
  assert.equal(j.code, 0);
  const doc = JSON.parse(j.out);
  assert.equal(doc.node.id, 'ctl-node');
  assert.equal(doc.providers[0].circuit, 'closed');
  assert.equal(typeof doc.providers[0].in_flight, 'number');
  assert.ok(!j.out.includes('sk-test-1'));
});

test('models, budget with bars, mesh, keys list', () => {
  const m = ctl([...base(), 'models']);
  assert.equal(m.code, 0, m.err);
  assert.match(m.out, /gpt-test\s+p1\s+yes/);
  const b = ctl([...base(), 'budget']);
  assert.equal(b.code, 0, b.err);
  assert.match(b.out, /today .*limit \$1\.00/);
  assert.match(b.out, /\[[#+.]{40}\]\s+\d+\.\d% used/);
  const mesh = ctl([...base(), 'mesh']);
  assert.equal(mesh.code, 0, mesh.err);
  assert.match(mesh.out, /node ctl-node \(type gpu, region eu-test\)/);
  // Nothing listens on port 9: the peer is never reached.
  assert.match(mesh.out, /edge-1\s+127\.0\.0\.1:9\s+(connecting|unhealthy)/);
  assert.match(mesh.out, /mesh: on, .*secret/);
  assert.ok(!mesh.out.includes('ctl-mesh-secret'), 'the mesh secret is never shown');
  const mj = JSON.parse(ctl([...base(), '--json', 'mesh']).out);
  assert.equal(mj.node.id, 'ctl-node');
  assert.ok(['connecting', 'unhealthy'].includes(mj.peers[0].status), mj.peers[0].status);
  assert.equal(mj.providers.p1.models, 1);
  const k = ctl([...base(), 'keys', 'list']);
  assert.equal(k.code, 0, k.err);
  assert.match(k.out, /ops\s+ops\s+config\s+admin/);
  assert.ok(!k.out.includes(ADMIN) && !k.out.includes('user-key'), 'no key in the listing');
});

test('reload: ok, then a rejected file with its errors (exit 2); a user key is refused (exit 1)', () => {
  const ok = ctl([...base(), 'reload']);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /^reloaded .*config\.json \(config generation \d+\)/);
  const good = fs.readFileSync(gw.configFile, 'utf8');
  fs.writeFileSync(gw.configFile, '{"routing": {"strategy": "cheapest"}}');
  try {
    const bad = ctl([...base(), 'reload']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /rejected the new config/);
    assert.match(bad.err, /routing\.strategy: unknown value 'cheapest'/);
    const j = ctl([...base(), 'reload', '--json']);
    assert.equal(j.code, 2);
    assert.equal(JSON.parse(j.out).error.code, 'config_invalid');
  } finally {
    fs.writeFileSync(gw.configFile, good);
  }
  const user = ctl(['--url', gw.url, '--key', 'user-key', 'reload']);
  assert.equal(user.code, 1);
  assert.match(user.err, /needs an admin key \(HTTP 403\)/);
});

test('clear errors: unreachable node, wrong key, no key; bad usage exits 2', async () => {
  const port = await h.freePort();
  const down = ctl(['--url', `http://127.0.0.1:${port}`, 'status']);
  assert.equal(down.code, 1);
  assert.match(down.err, /cannot reach http:\/\/127\.0\.0\.1:\d+ \(is aiproxyd running there\?\)/);
  const wrong = ctl(['--url', gw.url, '--key', 'nope', 'status']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /refused the API key \(HTTP 401\)/);
  const none = ctl(['--url', gw.url, 'status']);
  assert.equal(none.code, 1);
  assert.match(none.err, /no key was given/);
  const env = ctl(['--url', gw.url, 'status'], { AIPROXY_API_KEY: ADMIN });
  assert.equal(env.code, 0, 'AIPROXY_API_KEY is the default key');
  assert.equal(ctl(['frobnicate']).code, 2);
  assert.equal(ctl(['status', 'extra']).code, 2);
  assert.equal(ctl([]).code, 2);
});

test('--help for every command, and config check', () => {
  const top = ctl(['--help']);
  assert.equal(top.code, 0);
  for (const c of ['status', 'models', 'budget', 'mesh', 'keys', 'reload', 'config']) {
    assert.match(top.out, new RegExp(`^  ${c}`, 'm'), `${c} in the overview`);
    const r = ctl([c, '--help']);
    assert.equal(r.code, 0, `${c} --help`);
    assert.match(r.out, new RegExp(`^Usage: aiproxyctl ${c}`), `${c} --help`);
    assert.equal(ctl(['help', c]).out, r.out);
  }
  const dir = h.tempDir();
  const good = path.join(dir, 'good.json');
  fs.writeFileSync(good, JSON.stringify(h.baseConfig({ fakePort: fake.port, port: 8080 })));
  assert.equal(ctl(['config', 'check', good]).code, 0);
  const bad = path.join(dir, 'bad.yaml');
  fs.writeFileSync(bad, 'routing:\n  strategy: cheapest\n');
  const r = ctl(['config', 'check', bad]);
  assert.equal(r.code, 2);
  assert.match(r.err, /bad\.yaml:2: routing\.strategy: unknown value 'cheapest'/);
});

// ---- the response cache: status, cache stats, cache clear ----

test('status: a "cache" section, enabled false by default; cache stats says disabled; cache --help', () => {
  const doc = JSON.parse(ctl([...base(), 'status', '--json']).out);
  assert.equal(doc.cache.enabled, false);
  assert.equal(doc.cache.mode, 'opt_in');
  assert.equal(doc.cache.backend, 'memory');
  assert.equal(doc.cache.hits, 0);
  assert.equal(doc.cache.hit_rate, 0);
  const s = ctl([...base(), 'cache', 'stats']);
  assert.equal(s.code, 0, s.err);
  assert.match(s.out, /^cache\s+disabled on this node/);
  // Clearing a node without a cache is not an error (a deploy script clears every node).
  const c = ctl([...base(), 'cache', 'clear']);
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /the cache is disabled on this node/);
  assert.match(c.out, /cleared 0 entries from this node's memory \(model any, scope any\)/);
  const top = ctl(['--help']);
  assert.match(top.out, /^  cache stats/m);
  assert.match(top.out, /^  cache clear/m);
  const help = ctl(['cache', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /^Usage: aiproxyctl cache stats/);
  assert.equal(ctl(['help', 'cache']).out, help.out);
  assert.equal(ctl([...base(), 'cache']).code, 2);
  assert.equal(ctl([...base(), 'cache', 'frob']).code, 2);
  assert.equal(ctl([...base(), 'cache', 'clear', '--tenant', 'a', '--key-id', 'b']).code, 2);
  assert.equal(ctl([...base(), 'cache', 'clear', '--model']).code, 2);
  assert.equal(ctl([...base(), 'cache', 'clear', '--bogus', 'x']).code, 2);
});

test('cache stats and cache clear against a node with cache {enabled, mode: always}', { timeout: 30000 }, async (t) => {
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: {
    cache: { enabled: true, mode: 'always' },
    security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }, { key: 'acme-key', name: 'carol', tenant: 'acme' }, { key: 'user-key', name: 'bob' }] } },
  } }));
  const gb = ['--url', g.url, '--key', ADMIN];
  const ask = (key = ADMIN) => h.request(g.url + '/v1/chat/completions', { body: h.chatBody('cache me, ctl'), headers: { authorization: `Bearer ${key}` } });
  const upstreamBefore = (await fake.requests()).length;
  const first = await ask();
  assert.equal(first.status, 200, first.text);
  assert.equal(first.headers['x-aiproxy-cache'], 'miss');
  const second = await ask();
  assert.equal(second.status, 200, second.text);
  assert.equal(second.headers['x-aiproxy-cache'], 'hit', `second answer: ${JSON.stringify(second.headers)} ${second.text}`);
  assert.equal((await fake.requests()).length - upstreamBefore, 1, 'the hit did not reach the provider');

  const st = ctl([...gb, 'cache', 'stats']);
  assert.equal(st.code, 0, st.err);
  assert.match(st.out, /^cache\s+enabled \(mode always, backend memory, ttl 3600 s\)/m);
  assert.match(st.out, /^semantic\s+disabled/m);
  assert.match(st.out, /^hits\s+1 exact, 0 semantic/m);
  assert.match(st.out, /^misses\s+1$/m);
  assert.match(st.out, /^hit rate\s+50\.0%/m);
  assert.match(st.out, /^stores\s+1 /m);
  assert.match(st.out, /^entries\s+1$/m);
  assert.match(st.out, /^memory\s+\d+(\.\d)? (B|KiB) of 64\.0 MiB/m);
  assert.match(st.out, /^saved\s+\$0\.0000\d\d/m);
  const js = JSON.parse(ctl([...gb, '--json', 'cache', 'stats']).out);
  assert.equal(js.enabled, true);
  assert.equal(js.hits, 1);
  assert.equal(js.misses, 1);
  assert.equal(js.hit_rate, 0.5);
  assert.equal(js.entries, 1);
  assert.ok(js.bytes > 0 && js.max_bytes === 64 * 1024 * 1024);
  assert.ok(js.saved_usd > 0, 'the hit saved what the miss cost');
  // status shows a cache line and the full section.
  const status = ctl([...gb, 'status']);
  assert.match(status.out, /^cache\s+50\.0% hit rate, 1 in memory/m);
  const sdoc = JSON.parse(ctl([...gb, 'status', '--json']).out);
  for (const k of ['enabled', 'mode', 'backend', 'ttl_s', 'semantic', 'entries', 'bytes', 'max_bytes', 'hits', 'semantic_hits', 'misses',
    'hit_rate', 'stores', 'evictions', 'expired', 'saved_usd', 'embed_errors', 'backend_errors'])
    assert.ok(k in sdoc.cache, `status cache.${k}`);
  assert.deepEqual(Object.keys(sdoc.cache.semantic).sort(), ['embedding_model', 'enabled', 'entries', 'threshold']);

  // The tenant's own answer: a scope of its own (no answer crosses scopes).
  const acme = await ask('acme-key');
  assert.equal(acme.headers['x-aiproxy-cache'], 'miss');
  // Filters that match nothing clear nothing.
  const other = ctl([...gb, 'cache', 'clear', '--model', 'gpt-other']);
  assert.equal(other.code, 0, other.err);
  assert.match(other.out, /^cleared 0 entries from this node's memory \(model gpt-other, scope any\)/);
  assert.match(ctl([...gb, 'cache', 'clear', '--tenant', 'nobody']).out, /^cleared 0 entries .*scope t:nobody/);
  // One tenant's answers.
  const t1 = ctl([...gb, 'cache', 'clear', '--tenant', 'acme', '--model', 'gpt-test']);
  assert.equal(t1.code, 0, t1.err);
  assert.match(t1.out, /^cleared 1 entry from this node's memory \(model gpt-test, scope t:acme\)/);
  assert.equal(JSON.parse(ctl([...gb, '--json', 'cache', 'stats']).out).entries, 1, 'the admin key\'s entry stays');
  // A user key may not clear.
  const user = ctl(['--url', g.url, '--key', 'user-key', 'cache', 'clear']);
  assert.equal(user.code, 1);
  assert.match(user.err, /needs an admin key \(HTTP 403\)/);
  // A key without a tenant: its key id (a config key's name).
  const k = ctl([...gb, '--json', 'cache', 'clear', '--key-id', 'ops']);
  assert.equal(k.code, 0, k.err);
  assert.deepEqual(JSON.parse(k.out), { cleared: { memory: 1, redis: null }, model: null, scope: 'k:ops', enabled: true });
  const after = JSON.parse(ctl([...gb, '--json', 'cache', 'stats']).out);
  assert.equal(after.entries, 0);
  assert.equal(after.bytes, 0);
  const again = await ask();
  assert.equal(again.status, 200, again.text);
  assert.equal(again.headers['x-aiproxy-cache'], 'miss', 'cleared: the next identical request is a miss');
  const all = ctl([...gb, 'cache', 'clear']);
  assert.equal(all.code, 0, all.err);
  assert.match(all.out, /^cleared 1 entry from this node's memory \(model any, scope any\)/);
  await h.waitFor(() => /"event":"cache_cleared".*cache cleared by ops \(model any, scope any\): 1 in memory/.test(g.logs()), 3000, 25, 'a cache_cleared event in the log');
});

test('DELETE /aiproxy/admin/cache: admin key needed; bad filters are 400, never "clear everything"', { timeout: 20000 }, async (t) => {
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: {
    cache: { enabled: true, mode: 'always' },
    security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }, { key: 'user-key', name: 'bob' }] } },
  } }));
  const del = (q, key) => h.request(g.url + '/aiproxy/admin/cache' + q, { method: 'DELETE', headers: key ? { authorization: `Bearer ${key}` } : {} });
  h.assertOpenAIError(await del('', null), 401, 'invalid_api_key');
  h.assertOpenAIError(await del('', 'user-key'), 403, 'permission_denied');
  h.assertOpenAIError(await del('', 'wrong-key'), 401, 'invalid_api_key');
  const ok = await del('?model=gpt-test&tenant=a%20b', ADMIN);
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json, { cleared: { memory: 0, redis: null }, model: 'gpt-test', scope: 't:a b', enabled: true });
  assert.equal(ok.headers['cache-control'], 'no-store');
  assert.equal((await del('?scope=*', ADMIN)).json.scope, '*');
  for (const [q, param] of [['?modle=gpt-test', null], ['?tenant=a&key=b', 'tenant'], ['?model=', 'model'], ['?model=a%00b', 'model'],
    ['?model=a&model=b', 'model'], ['?scope=acme', 'scope'], ['?key', 'key'], [`?model=${'m'.repeat(600)}`, 'model']]) {
    const r = await del(q, ADMIN);
    h.assertOpenAIError(r, 400, 'invalid_request_error', param);
  }
  const get = await h.request(g.url + '/aiproxy/admin/cache', { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(get.status, 405);
});

test('cache clear with backend redis: the shared entries too; Redis down is a 503 after the local part', { timeout: 30000, skip: haveRedis() ? false : 'redis-server / redis-cli not installed' }, async (t) => {
  const redis = await startRedis();
  t.after(() => stopAllRedis());
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: {
    cache: { enabled: true, mode: 'always', backend: 'redis', redis: { url: redis.url } },
    security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }, { key: 'acme-key', name: 'carol', tenant: 'acme' }] } },
  } }));
  const gb = ['--url', g.url, '--key', ADMIN];
  const ask = (key) => h.request(g.url + '/v1/chat/completions', { body: h.chatBody('cache me on redis'), headers: { authorization: `Bearer ${key}` } });
  for (const key of [ADMIN, 'acme-key']) {
    assert.equal((await ask(key)).headers['x-aiproxy-cache'], 'miss');
    assert.equal((await ask(key)).headers['x-aiproxy-cache'], 'hit');
  }
  const entries = async () => (await redis.cli('--scan', '--pattern', 'aiproxy:c:*:*:*')).split('\n').filter(Boolean).length;
  await h.waitFor(async () => (await entries()) === 2, 3000, 25, 'two shared entries on Redis');
  const st = ctl([...gb, 'cache', 'stats']);
  assert.match(st.out, /^cache\s+enabled \(mode always, backend redis/m);
  assert.match(st.out, /^entries\s+2 \(this node's in-memory front/m);
  const one = ctl([...gb, 'cache', 'clear', '--tenant', 'acme']);
  assert.equal(one.code, 0, one.err);
  assert.match(one.out, /^cleared 1 entry from this node's memory and 1 from Redis \(model any, scope t:acme\)/);
  assert.equal(await entries(), 1);
  const all = JSON.parse(ctl([...gb, '--json', 'cache', 'clear']).out);
  assert.equal(all.cleared.redis, 1);
  assert.equal(await entries(), 0);
  assert.equal((await ask(ADMIN)).headers['x-aiproxy-cache'], 'miss');
  await redis.stop();
  const down = await h.request(g.url + '/aiproxy/admin/cache', { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  h.assertOpenAIError(down, 503, 'store_unavailable');
  assert.match(down.json.error.message, /This node's cache was cleared \(\d+ in memory\), but the shared cache on Redis does not answer/);
  const c = ctl([...gb, 'cache', 'clear']);
  assert.equal(c.code, 1);
  assert.match(c.err, /HTTP 503: This node's cache was cleared/);
});
