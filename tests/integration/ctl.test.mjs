// aiproxyctl against a running node: status, models, budget (bars), mesh,
// keys, reload (ok and rejected), config check; --json; --help for every
// command; clear errors for an unreachable node and a wrong key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';

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
