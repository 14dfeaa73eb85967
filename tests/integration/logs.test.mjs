// Logs: structured event logs in json and text format to a file, the
// events of operations (config loaded/rejected, circuit open/closed,
// budget alert), and SIGUSR1 reopening the file after rotation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';

let fake;
before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
after(() => h.killAll());

const read = (f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');

test('json log to a file; SIGUSR1 after a rename sends new lines to a new file', { timeout: 30000 }, async (t) => {
  const dir = h.tempDir();
  const file = path.join(dir, 'aiproxy.log');
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port, extra: { observability: { logging: { level: 'info', format: 'json', output: file } } } }));
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('before rotation') });
  assert.equal(r.status, 200);
  await h.waitFor(() => read(file).includes(r.headers['x-aiproxy-request-id']), 3000, 20, 'the access line');
  const lines = read(file).trim().split('\n');
  for (const l of lines) JSON.parse(l); // every line is JSON
  assert.ok(lines.some((l) => JSON.parse(l).event === 'started'));

  fs.renameSync(file, file + '.1');
  const r2 = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('still old file') });
  await h.waitFor(() => read(file + '.1').includes(r2.headers['x-aiproxy-request-id']), 3000, 20, 'lines go to the renamed file until USR1');
  gw.proc.kill('SIGUSR1');
  await h.waitFor(() => fs.existsSync(file), 3000, 20, 'a new log file after SIGUSR1');
  const r3 = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('new file') });
  await h.waitFor(() => read(file).includes(r3.headers['x-aiproxy-request-id']), 3000, 20, 'the new access line in the new file');
  assert.ok(!read(file + '.1').includes(r3.headers['x-aiproxy-request-id']));
  assert.match(read(file), /"event":"log_reopened"/);
  assert.ok(!read(file).includes('sk-test-1') && !read(file + '.1').includes('sk-test-1'), 'no secret in the log');
});

test('text format, and the operational events: config loaded/rejected, circuit open/closed, budget alert', { timeout: 40000 }, async (t) => {
  const dir = h.tempDir();
  const file = path.join(dir, 'text.log');
  const cfg = h.baseConfig({ fakePort: fake.port, extra: {
    observability: { logging: { level: 'info', format: 'text', output: file } },
    routing: { failover: { max_retries: 0 }, load_balancing: { health_aware: true, unhealthy_threshold: 0.5 } },
    budget: { daily_limit: 0.01, alerts: [{ threshold: 1, action: 'log' }] },
  } });
  const gw = await h.gatewayFor(t, cfg);
  // budget alert: three requests at the fake's usage push spend past 1% of $0.01
  for (let i = 0; i < 3; i++) await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('spend some money on this request please') });
  await h.waitFor(() => /warn budget_alert: /.test(read(file)), 3000, 20, 'a budget_alert line');
  // circuit: 6 failures, then the cool-down passes and a probe succeeds
  await fake.control({ default: { status: 503 } });
  for (let i = 0; i < 6; i++) await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x') });
  await h.waitFor(() => /warn circuit_open: provider p1/.test(read(file)), 3000, 20, 'circuit_open');
  await fake.control({ default: {} });
  await h.sleep(5300); // the cool-down
  await h.waitFor(async () => {
    await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('probe') });
    return /info circuit_closed: provider p1/.test(read(file));
  }, 8000, 300, 'circuit_closed after a successful probe');
  // config rejected, then loaded
  fs.writeFileSync(gw.configFile, '{"routing": {"strategy": "cheapest"}}');
  gw.proc.kill('SIGHUP');
  await h.waitFor(() => /error config_rejected: /.test(read(file)), 5000, 20, 'config_rejected');
  fs.writeFileSync(gw.configFile, JSON.stringify(gw.config));
  gw.proc.kill('SIGHUP');
  await h.waitFor(() => /info config_loaded: /.test(read(file)), 5000, 20, 'config_loaded');
  // text lines: "TIMESTAMP LEVEL EVENT: message"; access lines stay JSON
  const events = read(file).split('\n').filter((l) => l && !l.startsWith('{'));
  for (const l of events) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) [a-z_]+: /, l);
});
