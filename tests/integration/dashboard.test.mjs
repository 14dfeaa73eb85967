// Dashboard in headless Chromium (Debian's `chromium`, driven by
// puppeteer-core): signs in with the admin key (?key= -> HttpOnly cookie,
// the key gone from the address), waits for the page to draw from
// /aiproxy/admin/stats, checks the figures shown against /metrics (total
// requests, spend), the charts and tables, and saves a screenshot under
// the test output (TEST_OUT). Skipped, saying why, when /usr/bin/chromium
// is absent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'dash-admin-key-789';
const haveChromium = fs.existsSync(CHROMIUM);
let fake, gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
});
after(async () => { if (gw) await gw.stop('SIGKILL'); await h.killAll(); });

function metric(text, name, labels = '') {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + (labels ? '{' : '')) && (!labels || line.includes(labels))) {
      if (!labels && !line.startsWith(name + ' ') && !line.startsWith(name + '{')) continue;
      sum += Number(line.split(' ').pop());
    }
  }
  return sum;
}

test('the dashboard page: login, figures matching /metrics, charts, screenshot', { timeout: 90000, skip: haveChromium ? false : `${CHROMIUM} is absent (apt-get install chromium); the browser test is skipped` }, async () => {
  const second = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
  const cfg = h.twoProviderConfig(fake, second, { extra: {
    security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }] } },
    budget: { daily_limit: 0.05 },
    node: { id: 'dash-node' },
  } });
  cfg.providers.p2.models.push(h.model('gpt-other', 'upstream-other', 0.01, 0.03));
  gw = await h.startGateway(cfg);
  const auth = { authorization: `Bearer ${ADMIN}` };
  // Traffic: plain, streams, another model, failures.
  for (let i = 0; i < 12; i++) {
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`hello dashboard ${i}`), headers: auth });
    assert.equal(r.status, 200, r.text);
  }
  for (let i = 0; i < 4; i++) {
    const s = await h.streamRequest(gw.url + '/v1/chat/completions', { body: h.chatBody(`stream ${i}`, { stream: true }), headers: auth });
    await s.done;
  }
  for (let i = 0; i < 5; i++) await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`other ${i}`, { model: 'gpt-other' }), headers: auth });
  await fake.control({ default: { status: 500 } });
  await second.control({ default: { status: 503 } });
  const failed = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('both fail'), headers: auth });
  assert.equal(failed.status, 502);
  await fake.control({ default: {} });
  await second.control({ default: {} });

  // Without the key: the sign-in page, no data.
  const anon = await h.request(gw.url + '/dashboard');
  assert.equal(anon.status, 401);
  assert.match(anon.text, /<form method="get" action="\/dashboard"/);
  assert.equal((await h.request(gw.url + '/aiproxy/admin/stats')).status, 401);
  assert.equal((await h.request(gw.url + '/dashboard?key=wrong')).status, 401);

  const { default: puppeteer } = await import('puppeteer-core');
  const userDir = h.tempDir('aiproxy-chromium-');
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${userDir}`],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1440, height: 900 });
    const external = [];
    page.on('request', (rq) => { if (!rq.url().startsWith(gw.url) && !rq.url().startsWith('data:')) external.push(rq.url()); });
    const consoleErrors = [];
    page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));

    await page.goto(`${gw.url}/dashboard`, { waitUntil: 'load' });
    assert.match(await page.content(), /Admin key/);
    await page.type('#key', ADMIN);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type=submit]')]);
    assert.equal(page.url(), `${gw.url}/dashboard`, 'the key leaves the address bar');
    const cookies = await page.cookies();
    const c = cookies.find((x) => x.name === 'aiproxy_key');
    assert.ok(c && c.httpOnly && c.sameSite === 'Strict', 'an HttpOnly SameSite=Strict cookie');
    assert.ok(!(await page.content()).includes(ADMIN), 'the key is never in the page');

    await page.waitForFunction(() => Number(document.body.dataset.loaded || 0) >= 1, { timeout: 15000 });
    const shown = await page.evaluate(() => ({
      requests: Number(document.getElementById('total-requests').dataset.value),
      cost: Number(document.getElementById('total-cost').dataset.value),
      spend: Number(document.getElementById('spend-text').dataset.value),
      spendText: document.getElementById('spend-text').textContent,
      node: document.getElementById('node').textContent,
      latency: document.getElementById('latency').textContent,
      ttft: document.getElementById('ttft').textContent,
      providers: [...document.querySelectorAll('#providers tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
      errors: [...document.querySelectorAll('#errors tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
      peers: document.getElementById('peers').textContent,
      canvases: [...document.querySelectorAll('canvas')].map((cv) => {
        const ctx = cv.getContext('2d');
        const d = ctx.getImageData(0, 0, cv.width, cv.height).data;
        let ink = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i]) ink++;
        return { id: cv.id, ink };
      }),
    }));
    const m = await h.request(gw.url + '/metrics', { headers: auth });
    const families = ['chat_completions', 'completions', 'embeddings', 'images', 'messages', 'predict', 'other'];
    let total = 0;
    for (const f of families) total += metric(m.text, 'aiproxy_requests_total', `endpoint="${f}"`);
    assert.equal(shown.requests, total, `dashboard total ${shown.requests} vs /metrics ${total}`);
    assert.ok(shown.requests >= 22, 'the 22 proxied requests at least (a browser also asks for /favicon.ico)');
    const cost = metric(m.text, 'aiproxy_cost_usd_total');
    assert.ok(cost > 0);
    assert.ok(Math.abs(shown.cost - cost) < 1e-9, `dashboard cost ${shown.cost} vs /metrics ${cost}`);
    const daySpend = metric(m.text, 'aiproxy_budget_spend_usd', 'window="day"');
    assert.ok(Math.abs(shown.spend - daySpend) < 1e-9, `spend today ${shown.spend} vs ${daySpend}`);
    assert.match(shown.spendText, /of \$0\.050000 \(\d+\.\d%\)/);
    assert.match(shown.node, /node dash-node/);
    assert.match(shown.latency, /\d+ ms \/ \d+ ms \/ \d+ ms/);
    assert.match(shown.ttft, /\d+ ms \/ \d+ ms/);
    assert.deepEqual(shown.providers.map((r) => r[0]), ['p1', 'p2']);
    assert.ok(shown.providers.every((r) => ['closed', 'open', 'half-open'].includes(r[3])));
    assert.equal(shown.errors[0][1], '502');
    assert.match(shown.errors[0][5], /every provider failed/);
    assert.match(shown.peers, /Mesh federation is off/);
    for (const cv of shown.canvases) assert.ok(cv.ink > 100, `chart ${cv.id} is drawn`);
    assert.deepEqual(external, [], 'nothing is loaded from elsewhere');
    assert.deepEqual(consoleErrors, []);

    // It refreshes itself: new traffic shows up without a reload.
    for (let i = 0; i < 3; i++) await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`more ${i}`), headers: auth });
    await page.waitForFunction(() => Number(document.getElementById('total-requests').dataset.value) >= 25, { timeout: 10000 });

    const outDir = process.env.TEST_OUT || path.join(h.REPO, 'tests/out');
    fs.mkdirSync(outDir, { recursive: true });
    const shot = path.join(outDir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(fs.statSync(shot).size > 10000, 'a screenshot was saved');
  } finally {
    await browser.close();
  }
});

test('the dashboard refuses a non-admin key and never echoes a key', { timeout: 20000 }, async (t) => {
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: {
    security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }, { key: 'plain-user', name: 'u' }] } },
  } }));
  const user = await h.request(g.url + '/dashboard?key=plain-user');
  assert.equal(user.status, 403);
  assert.ok(!user.text.includes('plain-user'));
  const ok = await h.request(g.url + '/dashboard?key=' + ADMIN);
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.location, '/dashboard');
  assert.ok(!ok.text.includes(ADMIN));
  const cookie = ok.headers['set-cookie'][0].split(';')[0];
  const page = await h.request(g.url + '/dashboard', { headers: { cookie } });
  assert.equal(page.status, 200);
  assert.match(page.headers['content-security-policy'], /default-src 'self'/);
  assert.ok(!page.text.includes(ADMIN));
  const stats = await h.request(g.url + '/aiproxy/admin/stats', { headers: { cookie } });
  assert.equal(stats.status, 200);
  assert.ok(Array.isArray(stats.json.per_minute) && stats.json.per_minute.length === 60);
  // The cookie is not accepted for writes (no CSRF through it).
  const reload = await h.request(g.url + '/aiproxy/admin/reload', { method: 'POST', body: {}, headers: { cookie } });
  assert.equal(reload.status, 401);
  assert.equal((await h.request(g.url + '/dashboard/app.js')).status, 200);
});

test('the dashboard data has the response cache: off by default; hit rate, hits, misses, entries, saved when on', { timeout: 20000 }, async (t) => {
  const keys = { security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }] } } };
  const auth = { authorization: `Bearer ${ADMIN}` };
  const off = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: keys }));
  const s0 = await h.request(off.url + '/aiproxy/admin/stats', { headers: auth });
  assert.equal(s0.status, 200);
  assert.equal(s0.json.cache.enabled, false);
  const on = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: { ...keys, cache: { enabled: true, mode: 'always' } } }));
  for (const want of ['miss', 'hit']) {
    const r = await h.request(on.url + '/v1/chat/completions', { body: h.chatBody('dashboard cache'), headers: auth });
    assert.equal(r.headers['x-aiproxy-cache'], want, r.text);
  }
  const s = (await h.request(on.url + '/aiproxy/admin/stats', { headers: auth })).json.cache;
  assert.equal(s.enabled, true);
  assert.equal(s.hits, 1);
  assert.equal(s.misses, 1);
  assert.equal(s.hit_rate, 0.5);
  assert.equal(s.entries, 1);
  assert.ok(s.bytes > 0 && s.saved_usd > 0);
  const status = (await h.request(on.url + '/aiproxy/status', { headers: auth })).json.cache;
  assert.deepEqual(status, s, 'the same figures as /aiproxy/status');
});

test('the dashboard page shows the cache (hit rate, hits / misses, entries, memory, saved) and the context tokens saved', { timeout: 60000, skip: haveChromium ? false : `${CHROMIUM} is absent (apt-get install chromium); the browser test is skipped` }, async (t) => {
  const auth = { authorization: `Bearer ${ADMIN}` };
  const g = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: {
    security: { auth: { enabled: true, api_keys: [{ key: ADMIN, name: 'ops', role: 'admin' }] } },
    cache: { enabled: true, mode: 'always' },
  } }));
  for (const want of ['miss', 'hit', 'hit']) {
    const r = await h.request(g.url + '/v1/chat/completions', { body: h.chatBody('dashboard cache page'), headers: auth });
    assert.equal(r.headers['x-aiproxy-cache'], want, r.text);
  }
  // the context buffer: a project sent whole once, then a one-line change
  // injected as a diff (the rest of the file is what it saved)
  const ctxHeaders = { ...auth, 'x-inject-context': 'true', 'x-context-project': 'dash', 'x-aiproxy-cache': 'skip' };
  const big = Array.from({ length: 200 }, (_, i) => `line ${i} of the dashboard file`).join('\n') + '\n';
  for (const content of [big, big.replace('line 100 ', 'LINE 100 ')]) {
    const d = await h.request(g.url + '/v1/context/delta', { body: { project: 'dash', files: [{ path: 'f.txt', content }] }, headers: auth });
    assert.equal(d.status, 200, d.text);
    const r = await h.request(g.url + '/v1/chat/completions', { body: h.chatBody('dashboard context'), headers: ctxHeaders });
    assert.equal(r.status, 200, r.text);
  }
  const ctxStats = (await h.request(g.url + '/aiproxy/admin/stats', { headers: auth })).json.context;
  assert.ok(ctxStats.tokens_saved > 1000, JSON.stringify(ctxStats));
  const { default: puppeteer } = await import('puppeteer-core');
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${h.tempDir('aiproxy-chromium-')}`],
  });
  try {
    const page = await browser.newPage();
    const consoleErrors = [];
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(`${g.url}/dashboard?key=${ADMIN}`, { waitUntil: 'load' });
    await page.waitForFunction(() => Number(document.body.dataset.loaded || 0) >= 1, { timeout: 15000 });
    const shown = await page.evaluate(() => {
      const txt = (id) => document.getElementById(id).textContent;
      return {
        tile: txt('cache-rate'), rate: txt('cache-hit-rate'), hits: txt('cache-hits'), misses: txt('cache-misses'),
        entries: txt('cache-entries'), bytes: txt('cache-bytes'), max: txt('cache-max'), mode: txt('cache-mode'),
        saved: Number(document.getElementById('cache-saved').dataset.value),
        offShown: getComputedStyle(document.getElementById('cache-off')).display !== 'none',
        bar: document.getElementById('cache-hit-bar').style.width,
      };
    });
    const ctxShown = await page.evaluate(() => document.getElementById('context-saved').dataset.value);
    assert.equal(Number(ctxShown), ctxStats.tokens_saved, 'the context tile shows the tokens saved');
    assert.equal(shown.tile, '66.7%');
    assert.equal(shown.rate, '66.7%');
    assert.equal(shown.hits, '2 / 0');
    assert.equal(shown.misses, '1');
    assert.equal(shown.entries, '1');
    assert.match(shown.bytes, /^\d+(\.\d)? (B|KiB)$/);
    assert.match(shown.max, /^of 64\.0 MiB \(0\.\d%\)$/);
    assert.match(shown.mode, /mode always, backend memory, ttl 3600 s/);
    assert.equal(shown.offShown, false);
    assert.match(shown.bar, /^66\.66/);
    const m = await h.request(g.url + '/metrics', { headers: auth });
    const saved = metric(m.text, 'aiproxy_cache_saved_usd_total');
    assert.ok(saved > 0 && Math.abs(shown.saved - saved) < 1e-9, `saved ${shown.saved} vs /metrics ${saved}`);
    assert.deepEqual(consoleErrors, []);
  } finally {
    await browser.close();
  }
});
