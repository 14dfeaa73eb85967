// Managed API keys: the admin API (admin role only), aiproxyctl keys
// create|list|revoke, shown once, stored hashed, revoked at once, model
// allow-lists, key budgets, expiry, persistence across restarts, and no key
// ever in a log line, an error or a listing.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';

const CTL = path.join(path.dirname(h.AIPROXYD), 'aiproxyctl');
const ADMIN = 'admin-secret-123';

function ctl(url, key, args) {
  return new Promise((resolve) => {
    execFile(CTL, ['--url', url, '--key', key, ...args], { timeout: 10000 }, (err, stdout, stderr) => {
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

describe('managed keys', () => {
  let fake;
  before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
  after(() => h.killAll());

  const config = (db, extra = {}) => h.baseConfig({
    fakePort: fake.port,
    provider: { models: [h.model('gpt-test', 'upstream-gpt'), h.model('gpt-other', 'upstream-gpt')] },
    extra: {
      security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }, { key: 'user-k', name: 'user' }] } },
      budget: { cost_db: `sqlite:///${db}` },
      ...extra,
    },
  });
  const auth = (k) => ({ authorization: `Bearer ${k}` });
  const chat = (gw, k, model = 'gpt-test') => h.request(gw.url + '/v1/chat/completions', {
    body: { model, messages: [{ role: 'user', content: 'hi' }] }, headers: auth(k),
  });

  test('admin API lifecycle: create (shown once), use, list without secrets, revoke at once', { timeout: 20000 }, async (t) => {
    const db = path.join(h.tempDir(), 'costs.db');
    const gw = await h.gatewayFor(t, config(db));
    // Non-admins and anonymous callers are refused.
    h.assertOpenAIError(await h.request(gw.url + '/aiproxy/admin/keys', { headers: auth('user-k') }), 403, 'permission_denied');
    h.assertOpenAIError(await h.request(gw.url + '/aiproxy/admin/keys'), 401, 'invalid_api_key');
    h.assertOpenAIError(await h.request(gw.url + '/aiproxy/admin/keys', { method: 'POST', body: { tenant: 'x' }, headers: auth(ADMIN) }), 400, undefined, 'name');
    h.assertOpenAIError(await h.request(gw.url + '/aiproxy/admin/keys', { method: 'POST', body: '{nope', headers: { ...auth(ADMIN), 'content-type': 'application/json' } }), 400, 'invalid_json');

    const c = await h.request(gw.url + '/aiproxy/admin/keys', {
      method: 'POST', headers: auth(ADMIN),
      body: { name: 'team-a', tenant: 'acme', models: ['gpt-test'], budget: { daily_limit: 5 }, rate_limit: 100 },
    });
    assert.equal(c.status, 201, c.text);
    const { id, key } = c.json;
    assert.match(key, /^sk-aip-[0-9a-f]{48}$/);
    assert.match(id, /^key_[0-9a-f]{16}$/);
    assert.equal(c.json.daily_limit, '5');

    assert.equal((await chat(gw, key)).status, 200);
    h.assertOpenAIError(await chat(gw, key, 'gpt-other'), 403, 'permission_denied', 'model');
    // x-api-key works too.
    assert.equal((await h.request(gw.url + '/v1/models', { headers: { 'x-api-key': key } })).status, 200);

    const list = await h.request(gw.url + '/aiproxy/admin/keys', { headers: auth(ADMIN) });
    assert.equal(list.status, 200);
    const row = list.json.data.find((k) => k.id === id);
    assert.equal(row.name, 'team-a');
    assert.equal(row.tenant, 'acme');
    assert.equal(row.revoked, false);
    assert.ok(list.json.data.find((k) => k.id === 'ops' && k.source === 'config' && k.role === 'admin'));
    assert.ok(!list.text.includes(key) && !list.text.includes(ADMIN), 'no secret in the listing');

    const del = await h.request(gw.url + `/aiproxy/admin/keys/${id}`, { method: 'DELETE', headers: auth(ADMIN) });
    assert.equal(del.status, 200, del.text);
    const refused = await chat(gw, key);
    h.assertOpenAIError(refused, 401, 'invalid_api_key');
    assert.match(refused.json.error.message, /revoked/);
    h.assertOpenAIError(await h.request(gw.url + `/aiproxy/admin/keys/${id}`, { method: 'DELETE', headers: auth(ADMIN) }), 404, 'not_found');
    h.assertOpenAIError(await h.request(gw.url + '/aiproxy/admin/keys/user', { method: 'DELETE', headers: auth(ADMIN) }), 400);

    // Expired keys are refused.
    const e = await h.request(gw.url + '/aiproxy/admin/keys', { method: 'POST', headers: auth(ADMIN), body: { name: 'old', expires_at: Math.floor(Date.now() / 1000) - 5 } });
    assert.equal(e.status, 201);
    assert.match((await chat(gw, e.json.key)).json.error.message, /expired/);

    // The plain key is nowhere on disk, in the logs, or in errors.
    await gw.stop('SIGTERM');
    for (const f of fs.readdirSync(path.dirname(db))) {
      const bytes = fs.readFileSync(path.join(path.dirname(db), f));
      assert.ok(!bytes.includes(key) && !bytes.includes(e.json.key), `a plain key in ${f}`);
    }
    const logs = gw.logs();
    for (const secret of [key, ADMIN, 'user-k', e.json.key]) assert.ok(!logs.includes(secret), 'a key in the logs');
    assert.match(logs, new RegExp(id)); // key ids are logged instead
  });

  test('aiproxyctl keys create|list|revoke; keys survive a restart; key budgets', { timeout: 25000 }, async (t) => {
    const db = path.join(h.tempDir(), 'costs.db');
    let gw = await h.startGateway(config(db));
    const made = await ctl(gw.url, ADMIN, ['--json', 'keys', 'create', 'cli-key', '--tenant', 'acme', '--daily-limit', '0.01', '--rate-limit', '50']);
    assert.equal(made.code, 0, made.stderr);
    const { id, key } = JSON.parse(made.stdout);
    const human = await ctl(gw.url, ADMIN, ['keys', 'create', 'other']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /key: sk-aip-[0-9a-f]{48}\nStore it now/);
    const refusedCtl = await ctl(gw.url, 'user-k', ['keys', 'list']);
    assert.equal(refusedCtl.code, 1);
    assert.match(refusedCtl.stderr, /HTTP 403/);

    await fake.control({ queue: [{ usage: { prompt_tokens: 20000, completion_tokens: 0 } }] });
    assert.equal((await chat(gw, key)).status, 200); // spends 0.02 of its 0.01
    const over = await chat(gw, key);
    h.assertOpenAIError(over, 429, 'budget_exceeded');
    assert.match(over.json.error.message, /this key/);
    assert.equal((await chat(gw, 'user-k')).status, 200, 'other keys are not affected');

    assert.equal(await gw.stop('SIGTERM'), 0);
    gw = await h.gatewayFor(t, config(db));
    const again = await chat(gw, key);
    h.assertOpenAIError(again, 429, 'budget_exceeded'); // the key and its spend survived
    const list = await ctl(gw.url, ADMIN, ['keys', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`${id}\\s+cli-key\\s+managed\\s+user\\s+acme\\s+active`));
    assert.ok(!list.stdout.includes(key));
    const rev = await ctl(gw.url, ADMIN, ['keys', 'revoke', id]);
    assert.equal(rev.code, 0, rev.stderr);
    h.assertOpenAIError(await chat(gw, key), 401, 'invalid_api_key');
    assert.match((await ctl(gw.url, ADMIN, ['keys', 'list'])).stdout, new RegExp(`${id}.*revoked`));
    assert.equal((await ctl(gw.url, ADMIN, ['keys', 'revoke', id])).code, 1);
    assert.ok(!gw.logs().includes(key));
  });
});
