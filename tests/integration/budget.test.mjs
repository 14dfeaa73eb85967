// Budgets: spend counted exactly from the provider's usage, reservations
// under concurrency, restart keeps spend, alerts (disable_paid_providers,
// block, webhook once per crossing), 429 budget_exceeded not retried by the
// official openai SDK, and GET /v1/budget scoping.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import OpenAI from 'openai';
import * as h from './harness.mjs';

// "0.000021" -> 21000n nano-dollars, exactly (no floats).
export function usdToNanos(text) {
  const [i, f = ''] = String(text).split('.');
  return BigInt(i) * 1000000000n + BigInt((f + '000000000').slice(0, 9));
}
const costText = (r) => /"cost":([0-9.]+)/.exec(r.text)[1];

describe('budget', () => {
  let fake;
  before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
  after(() => h.killAll());
  beforeEach(() => fake.reset());

  test('GET /v1/budget equals the sum of the x-aiproxy.cost values clients saw', { timeout: 15000 }, async (t) => {
    const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: { budget: { daily_limit: 100 } } }));
    let sum = 0n;
    for (const text of ['a', 'hello there', 'x'.repeat(999), 'one two three four']) {
      const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(text) });
      assert.equal(r.status, 200, r.text);
      sum += usdToNanos(costText(r));
    }
    assert.ok(sum > 0n);
    const b = await h.request(gw.url + '/v1/budget');
    assert.equal(b.status, 200, b.text);
    assert.equal(BigInt(b.json.today.spent_nanos), sum);
    assert.equal(BigInt(b.json.month.spent_nanos), sum);
    assert.equal(b.json.today.reserved_nanos, 0);
    assert.equal(b.json.today.limit_nanos, 100000000000);
    assert.equal(BigInt(b.json.by_provider.find((p) => p.name === 'p1').today_nanos), sum);
    assert.equal(BigInt(b.json.by_model.find((p) => p.name === 'gpt-test').month_nanos), sum);
  });

  test('200 concurrent requests leave spend within one request of the limit, never over', { timeout: 20000 }, async (t) => {
    // Each request: 1 prompt token (<= 4 chars) + max_tokens 10 at 0.001/0.002 per 1k
    // = 21000 nanos estimated; the fake reports exactly that usage.
    const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: { budget: { daily_limit: 0.0002205 } } }));
    await fake.control({ default: { delayMs: 30, usage: { prompt_tokens: 1, completion_tokens: 10 } } });
    const rs = await Promise.all(Array.from({ length: 200 }, () =>
      h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('hi', { max_tokens: 10 }), timeoutMs: 15000 })));
    const ok = rs.filter((r) => r.status === 200);
    const refused = rs.filter((r) => r.status === 429);
    assert.equal(ok.length + refused.length, 200);
    for (const r of refused) {
      assert.equal(r.json.error.code, 'budget_exceeded');
      assert.equal(r.headers['x-should-retry'], 'false');
    }
    const b = (await h.request(gw.url + '/v1/budget')).json;
    const spent = BigInt(b.today.spent_nanos);
    assert.equal(spent, BigInt(ok.length) * 21000n);
    assert.ok(spent <= 220500n, `spent ${spent} over the limit`);
    assert.ok(220500n - spent < 21000n, `spent ${spent} is more than one request under the limit`);
    assert.equal((await fake.requests()).length, ok.length, 'refused requests never reach the upstream');
  });

  test('restart keeps the day\'s spend (ledger restore)', { timeout: 20000 }, async (t) => {
    const dir = h.tempDir();
    const db = path.join(dir, 'costs.db');
    const cfg = h.baseConfig({ fakePort: fake.port, extra: { budget: { daily_limit: 0.03, cost_db: `sqlite:///${db}` } } });
    await fake.control({ queue: [{ usage: { prompt_tokens: 20000, completion_tokens: 0 } }] });
    let gw = await h.startGateway(cfg);
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('spend') });
    assert.equal(r.status, 200);
    assert.equal(await gw.stop('SIGTERM'), 0);
    gw = await h.gatewayFor(t, cfg);
    const b = (await h.request(gw.url + '/v1/budget')).json;
    assert.equal(b.today.spent_nanos, 20000000);
    assert.equal(b.by_provider[0].today_nanos, 20000000);
    // 0.02 of 0.03 spent: an estimate of 4096 * 0.002/1k = 0.0082 still fits, twice it does not.
    await fake.control({ queue: [{ usage: { prompt_tokens: 5000, completion_tokens: 0 } }] });
    assert.equal((await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x') })).status, 200);
    const third = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x') });
    h.assertOpenAIError(third, 429, 'budget_exceeded');
  });

  test('disable_paid_providers: a free provider keeps serving; block refuses', { timeout: 20000 }, async (t) => {
    const free = await h.startFake({ name: 'free', apiKey: 'sk-test-2' });
    t.after(() => free.stop());
    const providers = {
      p1: h.provider(fake, { priority: 1 }),
      p2: h.provider(free, { priority: 2, apiKey: 'sk-test-2', models: [h.model('gpt-test', 'upstream-gpt', 0, 0)] }),
    };
    const gw = await h.gatewayFor(t, h.baseConfig({
      providers,
      extra: { routing: { strategy: 'availability' }, budget: { daily_limit: 0.03, alerts: [{ threshold: 50, action: 'disable_paid_providers' }] } },
    }));
    await fake.control({ queue: [{ usage: { prompt_tokens: 20000, completion_tokens: 0 } }] });
    const first = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('a') });
    assert.equal(first.headers['x-aiproxy-provider'], 'p1');
    for (let i = 0; i < 3; i++) {
      const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('b') });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-aiproxy-provider'], 'p2');
    }
    assert.equal((await fake.requests()).length, 1);

    const gw2 = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port, extra: { budget: { daily_limit: 0.03, alerts: [{ threshold: 50, action: 'block' }] } },
    }));
    await fake.control({ queue: [{ usage: { prompt_tokens: 20000, completion_tokens: 0 } }] });
    assert.equal((await h.request(gw2.url + '/v1/chat/completions', { body: h.chatBody('a') })).status, 200);
    const blocked = await h.request(gw2.url + '/v1/chat/completions', { body: h.chatBody('a') });
    h.assertOpenAIError(blocked, 429, 'budget_exceeded');
    assert.equal(blocked.headers['x-should-retry'], 'false');
  });

  test('an alert webhook is called once per threshold crossing', { timeout: 20000 }, async (t) => {
    const calls = [];
    const hook = http.createServer((req, res) => {
      let b = '';
      req.on('data', (d) => { b += d; });
      req.on('end', () => { calls.push(JSON.parse(b)); res.end('ok'); });
    });
    await new Promise((r) => hook.listen(0, '127.0.0.1', r));
    t.after(() => hook.close());
    const url = `http://127.0.0.1:${hook.address().port}/alert`;
    const gw = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port,
      extra: { budget: { daily_limit: 1, alerts: [{ threshold: 10, action: 'log', webhook: url }, { threshold: 90, action: 'log', webhook: url }] } },
    }));
    // 0.06 per request (30000 prompt tokens at 0.002... input 0.001/1k -> 0.03); two cross 10 %... use 60000 tokens.
    await fake.control({ default: { usage: { prompt_tokens: 60000, completion_tokens: 0 } } });
    for (let i = 0; i < 5; i++) {
      assert.equal((await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('w') })).status, 200);
    }
    await h.waitFor(() => calls.length >= 1, 3000, 25, 'the webhook');
    await h.sleep(300);
    assert.equal(calls.length, 1, JSON.stringify(calls));
    assert.equal(calls[0].event, 'budget_alert');
    assert.equal(calls[0].threshold, 10);
    assert.equal(calls[0].window, 'daily');
  });

  test('the official openai SDK does not retry budget_exceeded', { timeout: 20000 }, async (t) => {
    const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: { budget: { daily_limit: 0.01 } } }));
    await fake.control({ queue: [{ usage: { prompt_tokens: 20000, completion_tokens: 0 } }] });
    let calls = 0;
    const client = new OpenAI({
      baseURL: gw.url + '/v1', apiKey: 'unused', maxRetries: 3,
      fetch: (u, init) => { calls++; return fetch(u, init); },
    });
    await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'spend' }] });
    assert.equal(calls, 1);
    await assert.rejects(client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'more' }] }),
      (e) => e.status === 429 && e.code === 'budget_exceeded');
    assert.equal(calls, 2, 'the SDK must not retry a budget refusal');
    assert.equal((await fake.requests()).length, 1);
  });

  test('a key sees only its own spend; an admin sees every key and tenant', { timeout: 15000 }, async (t) => {
    const gw = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port,
      extra: {
        security: { auth: { enabled: true, api_keys: [
          { key: 'admin-k', name: 'ops', role: 'admin' },
          { key: 'k-a', name: 'alice', tenant: 'acme', budget: { daily_limit: 5 } },
          { key: 'k-b', name: 'bob', tenant: 'acme' },
        ] } },
        budget: { daily_limit: 100, tenants: [{ name: 'acme', daily_limit: 50 }] },
      },
    }));
    const chat = (key) => h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x'), headers: { authorization: `Bearer ${key}` } });
    const ca = usdToNanos(costText(await chat('k-a')));
    const cb = usdToNanos(costText(await chat('k-b')));
    const mr = await h.request(gw.url + '/v1/budget', { headers: { authorization: 'Bearer k-a' } });
    assert.equal(mr.status, 200, mr.text);
    const mine = mr.json;
    assert.equal(mine.scope, 'key');
    assert.equal(BigInt(mine.today.spent_nanos), ca);
    assert.equal(mine.today.limit_nanos, 5000000000);
    assert.equal(mine.by_key.length, 1);
    assert.equal(mine.by_provider, undefined);
    const all = (await h.request(gw.url + '/v1/budget', { headers: { authorization: 'Bearer admin-k' } })).json;
    assert.equal(all.scope, 'global');
    assert.equal(BigInt(all.today.spent_nanos), ca + cb);
    assert.equal(all.by_key.length, 2);
    const acme = all.by_tenant.find((x) => x.name === 'acme');
    assert.equal(BigInt(acme.today_nanos), ca + cb);
    assert.equal(acme.daily_limit_nanos, 50000000000);
    assert.ok(!JSON.stringify(all).includes('k-a') && !JSON.stringify(all).includes('admin-k'));
  });
});
