// The context delta buffer (SPEC section 8) against the real binary and a
// fake provider that records what it receives: deltas in and out (changed
// paths, lines, files, bytes, pending, files refused as binary), the block
// injected into the system message (a -/+ diff for a change, a new file
// whole, a deletion; unchanged files not resent), the "seen after success
// only" rule (a failed request leaves the changes pending), a change made
// while a request is in flight, scopes (two tenants: nothing visible
// across), limits (files, bytes, projects: all or nothing, with messages),
// bad bodies (not JSON, files not an array, a path with '..', over
// max_request_size), persistence across a restart, /v1/messages and
// /aiproxy/predict, x-aiproxy.context and the injected tokens in the
// provider's usage, max_inject_tokens with its note, DELETE, a bad
// X-Context-Project, metrics and status, and context.enabled false.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as h from './harness.mjs';

const CHAT = '/v1/chat/completions';
let fake;
before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
after(() => h.killAll());
beforeEach(() => fake.reset());

const posts = async () => (await fake.requests()).filter((e) => e.method === 'POST');
const lastSystem = async () => {
  const ps = await posts();
  const m = ps[ps.length - 1].body.messages;
  return m[0].role === 'system' ? m[0].content : null;
};

function gateway(t, extra = {}, o = {}) {
  return h.gatewayFor(t, h.baseConfig({
    providers: { p1: h.provider(fake, { models: [h.model('gpt-test', 'upstream-gpt')] }) },
    extra,
  }), o);
}
const delta = (gw, body, headers = {}) =>
  h.request(gw.url + '/v1/context/delta', { body, headers, timeoutMs: 10000 });
const ask = (gw, text, headers = {}, extra = {}) =>
  h.request(gw.url + CHAT, {
    body: h.chatBody(text, extra),
    headers: { 'x-inject-context': 'true', 'x-context-project': 'app', ...headers },
    timeoutMs: 10000,
  });

test('a delta, then a change: the provider receives a new file whole, then only the -/+ diff; unchanged files are not resent', { timeout: 20000 }, async (t) => {
  const gw = await gateway(t);
  const d1 = await delta(gw, { project: 'app', files: [
    { path: 'src/a.c', content: 'int a;\nint b;\nint c;\n' },
    { path: 'README.md', content: '# app\n' },
  ] });
  assert.equal(d1.status, 200, d1.text);
  assert.deepEqual(d1.json.changed.sort(), ['README.md', 'src/a.c']);
  assert.equal(d1.json.files, 2);
  assert.equal(d1.json.pending, 2);
  assert.equal(d1.json.added, 4);

  const r1 = await ask(gw, 'first turn');
  assert.equal(r1.status, 200, r1.text);
  const s1 = await lastSystem();
  assert.match(s1, /^<context_delta project="app">/);
  assert.match(s1, /<file path="src\/a.c" status="new">\nint a;\nint b;\nint c;\n<\/file>/);
  assert.match(s1, /<file path="README.md" status="new">/);
  const c1 = r1.json['x-aiproxy'].context;
  assert.equal(c1.project, 'app');
  assert.equal(c1.files, 2);
  assert.ok(c1.tokens_injected > 0);

  // nothing pending after a success: the body goes as it is
  const r2 = await ask(gw, 'second turn');
  assert.equal(r2.status, 200, r2.text);
  assert.equal(await lastSystem(), null, 'nothing injected when nothing is pending');
  assert.equal(r2.json['x-aiproxy'].context.files, 0);

  const d2 = await delta(gw, { project: 'app', files: [
    { path: 'src/a.c', content: 'int a;\nint B;\nint c;\n' },
    { path: 'README.md', content: '# app\n' }, // unchanged
  ] });
  assert.deepEqual(d2.json.changed, ['src/a.c']);
  assert.equal(d2.json.added, 1);
  assert.equal(d2.json.removed, 1);
  assert.equal(d2.json.pending, 1);
  const r3 = await ask(gw, 'third turn', {}, { messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'third turn' }] });
  assert.equal(r3.status, 200, r3.text);
  const s3 = await lastSystem();
  assert.match(s3, /^be brief\n\n<context_delta project="app">/, 'appended to the existing system message');
  assert.match(s3, /--- a\/src\/a.c\n\+\+\+ b\/src\/a.c\n@@ [^\n]*\n int a;\n-int b;\n\+int B;\n int c;\n/);
  assert.doesNotMatch(s3, /README/, 'an unchanged file is not resent');
  const c3 = r3.json['x-aiproxy'].context;
  assert.equal(c3.files, 1);
  assert.equal(c3.diff_lines, 2);

  // a deletion
  await delta(gw, { project: 'app', files: [{ path: 'README.md', deleted: true }] });
  await ask(gw, 'fourth turn');
  assert.match(await lastSystem(), /<file path="README.md" status="deleted"\/>/);

  const st = await h.request(gw.url + '/v1/context/stats');
  assert.equal(st.status, 200, st.text);
  const p = st.json.projects.find((x) => x.project === 'app');
  assert.equal(p.files, 1);
  assert.equal(p.pending, 0);
  assert.ok(p.injections >= 3);
  assert.ok(p.tokens_injected > 0);
});

test('seen after success only: a failed request leaves the changes pending; a change made meanwhile stays pending', { timeout: 20000 }, async (t) => {
  const gw = await gateway(t, { routing: { failover: { max_retries: 0 } } });
  await delta(gw, { project: 'app', files: [{ path: 'x.txt', content: 'one\n' }] });
  await fake.control({ default: { status: 500 } });
  const bad = await ask(gw, 'fails');
  assert.equal(bad.status >= 500, true, bad.text);
  await fake.control({ default: {} });
  const ok = await ask(gw, 'works');
  assert.equal(ok.status, 200, ok.text);
  assert.match(await lastSystem(), /<file path="x.txt" status="new">\none\n<\/file>/, 'still pending after the failure');

  // a change lands while a request is out: the model saw the old content
  await delta(gw, { project: 'app', files: [{ path: 'x.txt', content: 'two\n' }] });
  await fake.control({ queue: [{ delayMs: 600 }] });
  const slow = ask(gw, 'slow');
  await h.sleep(150);
  await delta(gw, { project: 'app', files: [{ path: 'x.txt', content: 'three\n' }] });
  assert.equal((await slow).status, 200);
  const next = await ask(gw, 'next');
  assert.equal(next.status, 200, next.text);
  const s = await lastSystem();
  assert.match(s, /-two\n\+three\n/, 'only the newer change is pending');
});

test('scopes: one tenant\'s project is invisible to another (stats, injection, delete)', { timeout: 20000 }, async (t) => {
  const keys = [{ key: 'k-a', name: 'a', tenant: 'ta' }, { key: 'k-b', name: 'b', tenant: 'tb' }];
  const gw = await gateway(t, { security: { auth: { enabled: true, api_keys: keys } } });
  const A = { authorization: 'Bearer k-a' }, B = { authorization: 'Bearer k-b' };
  assert.equal((await delta(gw, { project: 'app', files: [{ path: 'secret.txt', content: 'tenant a only\n' }] }, A)).status, 200);
  const sb = await h.request(gw.url + '/v1/context/stats', { headers: B });
  assert.deepEqual(sb.json.projects, []);
  const rb = await ask(gw, 'b asks', B);
  assert.equal(rb.status, 200, rb.text);
  assert.equal(await lastSystem(), null, 'B gets nothing of A');
  const del = await h.request(gw.url + '/v1/context/app', { method: 'DELETE', headers: B });
  assert.equal(del.status, 404);
  const ra = await ask(gw, 'a asks', A);
  assert.match(await lastSystem(), /tenant a only/);
  assert.equal(ra.status, 200);
  const none = await delta(gw, { project: 'app', files: [] });
  assert.equal(none.status, 401, 'a key is needed');
});

test('limits are all or nothing, with the limit named; bad bodies are 400; binary content is refused per file', { timeout: 20000 }, async (t) => {
  const gw = await gateway(t, { context: { max_files: 3, max_bytes: '2KB', max_projects: 2 }, server: { max_request_size: '8KB' } });
  const many = await delta(gw, { project: 'p1', files: [1, 2, 3, 4].map((i) => ({ path: `f${i}`, content: 'x\n' })) });
  assert.equal(many.status, 413, many.text);
  assert.match(many.json.error.message, /max_files|files/);
  assert.deepEqual((await h.request(gw.url + '/v1/context/stats')).json.projects, [], 'nothing applied');
  const big = await delta(gw, { project: 'p1', files: [{ path: 'big', content: 'y'.repeat(3000) }] });
  assert.equal(big.status, 413, big.text);
  assert.match(big.json.error.message, /max_bytes|bytes/);
  assert.equal((await delta(gw, { project: 'p1', files: [] })).status, 200);
  assert.equal((await delta(gw, { project: 'p2', files: [] })).status, 200);
  const third = await delta(gw, { project: 'p3', files: [] });
  assert.equal(third.status, 400, third.text);
  assert.match(third.json.error.message, /max_projects|projects/);

  const notJson = await h.request(gw.url + '/v1/context/delta', { body: '{nope', headers: { 'content-type': 'application/json' } });
  assert.equal(notJson.status, 400);
  assert.equal(notJson.json.error.code, 'invalid_json');
  const notArray = await delta(gw, { project: 'p1', files: 'a.c' });
  assert.equal(notArray.status, 400);
  assert.equal(notArray.json.error.param, 'files');
  const dotdot = await delta(gw, { project: 'p1', files: [{ path: '../etc/passwd', content: 'x' }] });
  assert.equal(dotdot.status, 400);
  assert.equal(dotdot.json.error.param, 'files[0].path');
  const huge = await delta(gw, { project: 'p1', files: [{ path: 'h', content: 'z'.repeat(9000) }] });
  assert.equal(huge.status, 413, 'over server.max_request_size');
  const bin = await delta(gw, { project: 'p1', files: [{ path: 'ok.txt', content: 'fine\n' }, { path: 'img.bin', content: 'a\u0000b' }] });
  assert.equal(bin.status, 200, bin.text);
  assert.deepEqual(bin.json.changed, ['ok.txt']);
  assert.equal(bin.json.rejected.length, 1);
  assert.equal(bin.json.rejected[0].path, 'img.bin');
  assert.match(bin.json.rejected[0].reason, /binary/);
  const badProject = await ask(gw, 'x', { 'x-context-project': 'no/slash' });
  assert.equal(badProject.status, 400);
  assert.equal(badProject.json.error.param, 'x-context-project');
});

test('persistence: a restart keeps files, what was seen and the counters', { timeout: 30000 }, async (t) => {
  const db = path.join(h.tempDir(), 'costs.db');
  const extra = { budget: { cost_db: `sqlite:///${db}` } };
  let gw = await gateway(t, extra);
  await delta(gw, { project: 'app', files: [{ path: 'a.txt', content: 'one\n' }, { path: 'b.txt', content: 'bee\n' }] });
  assert.equal((await ask(gw, 'turn 1')).status, 200);
  await delta(gw, { project: 'app', files: [{ path: 'a.txt', content: 'two\n' }] });
  const before = (await h.request(gw.url + '/v1/context/stats')).json.projects;
  await gw.stop('SIGTERM', 5000);
  gw = await gateway(t, extra);
  const after = (await h.request(gw.url + '/v1/context/stats')).json.projects;
  assert.deepEqual(after.map(({ updated_at, ...p }) => p), before.map(({ updated_at, ...p }) => p));
  assert.equal((await ask(gw, 'turn 2')).status, 200);
  const s = await lastSystem();
  assert.match(s, /-one\n\+two\n/, 'the change pending before the restart is injected as a diff');
  assert.doesNotMatch(s, /b\.txt/, 'what was seen before the restart stays seen');
});

test('/v1/messages and /aiproxy/predict get the block; the injected tokens are in the prompt the provider bills', { timeout: 20000 }, async (t) => {
  const gw = await gateway(t);
  const plain = await h.request(gw.url + CHAT, { body: h.chatBody('measure me') });
  await delta(gw, { project: 'app', files: [{ path: 'notes.md', content: 'remember the milk\n'.repeat(20) }] });
  const inj = await ask(gw, 'measure me');
  assert.equal(inj.status, 200, inj.text);
  assert.ok(inj.json.usage.prompt_tokens > plain.json.usage.prompt_tokens + 300, 'the block is part of the prompt');
  assert.ok(Number(inj.json['x-aiproxy'].cost) > Number(plain.json['x-aiproxy'].cost), 'and of its cost');

  await delta(gw, { project: 'app', files: [{ path: 'notes.md', content: 'remember the eggs\n' }] });
  const m = await h.request(gw.url + '/v1/messages', {
    body: { model: 'gpt-test', max_tokens: 50, system: 'you are terse', messages: [{ role: 'user', content: 'hi' }] },
    headers: { 'x-inject-context': 'true', 'x-context-project': 'app', 'anthropic-version': '2023-06-01' },
  });
  assert.equal(m.status, 200, m.text);
  assert.equal(m.json.type, 'message', 'an Anthropic-shaped answer');
  const sys = await lastSystem();
  assert.match(sys, /^you are terse\n\n<context_delta project="app">/);
  assert.match(sys, /\+remember the eggs/);

  await delta(gw, { project: 'app', files: [{ path: 'notes.md', content: 'remember the bread\n' }] });
  const p = await h.request(gw.url + '/aiproxy/predict', {
    body: { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] },
    headers: { 'x-inject-context': 'true', 'x-context-project': 'app' },
  });
  assert.equal(p.status, 200, p.text);
  assert.match(await lastSystem(), /\+remember the bread/);
});

test('max_inject_tokens: what does not fit is left out, named in a note, and stays pending', { timeout: 20000 }, async (t) => {
  const gw = await gateway(t, { context: { max_inject_tokens: 150 } });
  await delta(gw, { project: 'app', files: [
    { path: 'a.txt', content: 'small\n' },
    { path: 'b.txt', content: 'b'.repeat(2000) + '\n' },
  ] });
  const r = await ask(gw, 'capped');
  assert.equal(r.status, 200, r.text);
  const s = await lastSystem();
  assert.match(s, /a\.txt/);
  assert.match(s, /left out[^\n]*b\.txt/);
  assert.ok(s.length <= 150 * 4 + 64, `the block is within the cap (${s.length} bytes)`);
  assert.equal(r.json['x-aiproxy'].context.left_out, 1);
  const st = (await h.request(gw.url + '/v1/context/stats')).json.projects[0];
  assert.equal(st.pending, 1, 'the file left out stays pending');
});

test('DELETE, metrics and status; context.enabled false: endpoints 404 and the header is ignored', { timeout: 20000 }, async (t) => {
  const gw = await gateway(t);
  await delta(gw, { project: 'app', files: [{ path: 'a.txt', content: 'x\n' }] });
  await ask(gw, 'count me');
  const metrics = (await h.request(gw.url + '/metrics')).text;
  assert.match(metrics, /aiproxy_context_injections_total [1-9]/);
  assert.match(metrics, /aiproxy_context_projects 1/);
  const status = (await h.request(gw.url + '/aiproxy/status')).json;
  assert.equal(status.context.enabled, true);
  assert.equal(status.context.projects, 1);
  const del = await h.request(gw.url + '/v1/context/app', { method: 'DELETE' });
  assert.equal(del.status, 200, del.text);
  assert.deepEqual((await h.request(gw.url + '/v1/context/stats')).json.projects, []);
  assert.equal((await h.request(gw.url + '/v1/context/app', { method: 'DELETE' })).status, 404);

  const off = await gateway(t, { context: { enabled: false } });
  assert.equal((await delta(off, { project: 'app', files: [] })).status, 404);
  const r = await ask(off, 'ignored header');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json['x-aiproxy'].context, undefined);
});
