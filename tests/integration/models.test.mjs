// /v1/models and /v1/models/{id}: every servable model with its providers;
// a provider whose credential variable is unset is listed as unavailable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let fake;
let gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({
    providers: {
      p1: h.provider(fake, { priority: 1, models: [h.model('gpt-test', 'upstream-gpt'), h.model('embed-test', 'upstream-embed', 0.0001, 0)] }),
      nokey: {
        type: 'openai',
        endpoint: fake.base,
        priority: 2,
        credentials: { api_key: '${UNSET_VAR_XYZ}' },
        models: [h.model('gpt-test', 'upstream-gpt')],
      },
    },
  }), { env: { UNSET_VAR_XYZ: undefined } });
});
after(() => h.killAll());

function checkProviders(m) {
  assert.ok(Array.isArray(m.providers), `providers array missing: ${JSON.stringify(m)}`);
  for (const p of m.providers) {
    assert.equal(typeof p.name, 'string');
    assert.equal(typeof p.available, 'boolean', `available: ${JSON.stringify(p)}`);
    assert.equal(typeof p.cost_per_1k_tokens, 'number', `cost_per_1k_tokens: ${JSON.stringify(p)}`);
    assert.ok(p.avg_latency_ms === null || typeof p.avg_latency_ms === 'number', `avg_latency_ms: ${JSON.stringify(p)}`);
    assert.ok('avg_latency_ms' in p, `avg_latency_ms missing: ${JSON.stringify(p)}`);
  }
}

test('GET /v1/models lists gpt-test with its providers', { timeout: 5000 }, async () => {
  const r = await h.request(gw.url + '/v1/models');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  assert.equal(r.json.object, 'list');
  assert.ok(Array.isArray(r.json.data));
  const ids = r.json.data.map((m) => m.id);
  assert.ok(ids.includes('gpt-test'), `ids: ${ids}`);
  assert.ok(ids.includes('embed-test'), `ids: ${ids}`);
  assert.equal(new Set(ids).size, ids.length, `each model once: ${ids}`);
  for (const m of r.json.data) {
    assert.equal(m.object, 'model');
    checkProviders(m);
  }
  const m = r.json.data.find((x) => x.id === 'gpt-test');
  const names = m.providers.map((p) => p.name).sort();
  assert.deepEqual(names, ['nokey', 'p1']);
  const p1 = m.providers.find((p) => p.name === 'p1');
  assert.equal(p1.available, true);
  assert.ok(p1.cost_per_1k_tokens > 0, JSON.stringify(p1));
});

test('a provider whose credential variable is unset is available: false', { timeout: 5000 }, async () => {
  const r = await h.request(gw.url + '/v1/models/gpt-test');
  assert.equal(r.status, 200, r.text);
  const nk = r.json.providers.find((p) => p.name === 'nokey');
  assert.ok(nk, JSON.stringify(r.json));
  assert.equal(nk.available, false);
  assert.match(gw.logs(), /UNSET_VAR_XYZ/, 'the startup log must give the reason (the unset variable)');
});

test('GET /v1/models/gpt-test returns that model', { timeout: 5000 }, async () => {
  const r = await h.request(gw.url + '/v1/models/gpt-test');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.id, 'gpt-test');
  assert.equal(r.json.object, 'model');
  checkProviders(r.json);
});

test('GET /v1/models/nope -> 404 model_not_found', { timeout: 5000 }, async () => {
  h.assertOpenAIError(await h.request(gw.url + '/v1/models/nope'), 404, 'model_not_found');
});

test('requests for gpt-test skip the unavailable provider', { timeout: 5000 }, async () => {
  await fake.reset();
  for (let i = 0; i < 3; i++) {
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`n${i}`) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json['x-aiproxy'].provider, 'p1');
    assert.deepEqual(r.json['x-aiproxy'].providers_tried, ['p1']);
  }
  const reqs = await fake.requests();
  assert.ok(reqs.every((q) => q.headers.authorization === 'Bearer sk-test-1'), 'no request without a credential');
});

test('GET /v1/endpoints lists every provider and never shows credentials', { timeout: 5000 }, async () => {
  const r = await h.request(gw.url + '/v1/endpoints');
  assert.equal(r.status, 200, r.text);
  assert.ok(r.text.includes('p1') && r.text.includes('nokey'), r.text.slice(0, 500));
  assert.ok(!r.text.includes('sk-test-1'), 'a credential leaked into /v1/endpoints');
});
