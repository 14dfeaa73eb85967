// Tracing: OTLP/HTTP JSON spans to a fake collector (a node http server
// recording POST /v1/traces): one server span per request and one client
// span per upstream attempt with GenAI attributes; an incoming traceparent
// continued, a malformed one replaced, and a traceparent sent upstream on
// every attempt; a dead collector costs only the dropped-spans counter.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import * as h from './harness.mjs';

let a, b;
before(async () => {
  a = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  b = await h.startFake({ name: 'p2', apiKey: 'sk-test-2' });
});
after(() => h.killAll());
beforeEach(async () => { await a.reset(); await b.reset(); });

function startCollector() {
  const posts = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      posts.push({ path: req.url, method: req.method, type: req.headers['content-type'], body: JSON.parse(body) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({
    port: srv.address().port,
    posts,
    spans: () => posts.flatMap((p) => p.body.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ ...s, resource: rs.resource }))))),
    close: () => new Promise((r) => srv.close(r)),
  })));
}

const attr = (span, key) => {
  const a = span.attributes.find((x) => x.key === key);
  if (!a) return undefined;
  const v = a.value;
  return v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue ?? v.boolValue);
};

function tracingConfig(col, extra = {}) {
  return { observability: { logging: { level: 'info' }, tracing: { enabled: true, endpoint: `http://127.0.0.1:${col.port}`, service_name: 'aiproxy-test', ...extra } } };
}

test('server span + one client span per attempt, GenAI attributes, parent/child ids, traceparent upstream', { timeout: 30000 }, async (t) => {
  const col = await startCollector();
  t.after(() => col.close());
  const gw = await h.gatewayFor(t, h.twoProviderConfig(a, b, { extra: tracingConfig(col) }));
  await a.control({ queue: [{ status: 500 }] });
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('trace me') });
  assert.equal(r.status, 200, r.text);
  await h.waitFor(() => col.spans().length >= 3, 5000, 50, 'three spans at the collector');
  const post = col.posts[0];
  assert.equal(post.path, '/v1/traces');
  assert.equal(post.method, 'POST');
  assert.match(post.type, /application\/json/);
  const spans = col.spans();
  const server = spans.find((s) => s.kind === 2);
  const clients = spans.filter((s) => s.kind === 3);
  assert.ok(server, 'a server span');
  assert.equal(clients.length, 2, 'one client span per attempt');
  assert.match(server.traceId, /^[0-9a-f]{32}$/);
  assert.match(server.spanId, /^[0-9a-f]{16}$/);
  assert.equal(server.parentSpanId, undefined, 'a new trace has a root server span');
  for (const c of clients) {
    assert.equal(c.traceId, server.traceId);
    assert.equal(c.parentSpanId, server.spanId);
    assert.equal(attr(c, 'gen_ai.system'), 'openai');
    assert.equal(attr(c, 'gen_ai.request.model'), 'upstream-gpt');
    assert.equal(attr(c, 'gen_ai.operation.name'), 'chat');
    assert.equal(attr(c, 'server.address'), '127.0.0.1');
  }
  const [first, second] = clients.sort((x, y) => attr(x, 'aiproxy.attempt') - attr(y, 'aiproxy.attempt'));
  assert.equal(attr(first, 'aiproxy.provider'), 'p1');
  assert.equal(attr(first, 'http.response.status_code'), 500);
  assert.equal(first.status.code, 2, 'the failed attempt is an error span');
  assert.equal(attr(second, 'aiproxy.provider'), 'p2');
  assert.equal(attr(second, 'http.response.status_code'), 200);
  assert.equal(attr(server, 'gen_ai.request.model'), 'gpt-test');
  assert.equal(attr(server, 'gen_ai.response.model'), 'upstream-gpt');
  assert.equal(attr(server, 'gen_ai.system'), 'openai');
  assert.equal(attr(server, 'gen_ai.usage.input_tokens'), r.json.usage.prompt_tokens);
  assert.equal(attr(server, 'gen_ai.usage.output_tokens'), r.json.usage.completion_tokens);
  assert.equal(attr(server, 'http.response.status_code'), 200);
  assert.equal(attr(server, 'http.request.method'), 'POST');
  assert.equal(attr(server, 'url.path'), '/v1/chat/completions');
  assert.equal(attr(server, 'aiproxy.request_id'), r.headers['x-aiproxy-request-id']);
  assert.equal(attr(server, 'aiproxy.failovers'), 1);
  assert.ok(BigInt(server.startTimeUnixNano) <= BigInt(first.startTimeUnixNano));
  assert.ok(BigInt(server.endTimeUnixNano) >= BigInt(second.endTimeUnixNano));
  const res = server.resource.attributes;
  assert.ok(res.some((x) => x.key === 'service.name' && x.value.stringValue === 'aiproxy-test'));
  // Each attempt carried its own span as traceparent upstream.
  const up1 = (await a.requests()).at(-1).headers.traceparent;
  const up2 = (await b.requests()).at(-1).headers.traceparent;
  assert.equal(up1, `00-${server.traceId}-${first.spanId}-01`);
  assert.equal(up2, `00-${server.traceId}-${second.spanId}-01`);
  // No secret in any span.
  assert.ok(!JSON.stringify(col.posts).includes('sk-test'));
});

test('an incoming traceparent is continued; a malformed one starts a new trace', { timeout: 30000 }, async (t) => {
  const col = await startCollector();
  t.after(() => col.close());
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port, extra: tracingConfig(col) }));
  const tid = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('continue'), headers: { traceparent: `00-${tid}-${parent}-01` } });
  assert.equal(r.status, 200);
  await h.waitFor(() => col.spans().length >= 2, 5000, 50, 'spans');
  const server = col.spans().find((s) => s.kind === 2);
  assert.equal(server.traceId, tid);
  assert.equal(server.parentSpanId, parent);
  const up = (await a.requests()).at(-1).headers.traceparent;
  assert.match(up, new RegExp(`^00-${tid}-[0-9a-f]{16}-01$`));

  const bad = ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', // uppercase
    `00-${'0'.repeat(32)}-${parent}-01`, // zero trace id
    `00-${tid}-${'0'.repeat(16)}-01`, // zero span id
    `ff-${tid}-${parent}-01`, // version ff
    `00-${tid}-${parent}-01-extra`, // version 00 with trailing data
    'garbage'];
  for (const tp of bad) {
    col.posts.length = 0;
    const rr = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('bad'), headers: { traceparent: tp } });
    assert.equal(rr.status, 200);
    await h.waitFor(() => col.spans().some((s) => s.kind === 2), 5000, 50, 'a server span');
    const s = col.spans().find((x) => x.kind === 2);
    assert.notEqual(s.traceId, tid, `${tp} must not be continued`);
    assert.equal(s.parentSpanId, undefined, `${tp}: a new root`);
  }
  // An unsampled parent (flags 00) is respected: no spans, no traceparent upstream.
  col.posts.length = 0;
  await a.reset();
  await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('unsampled'), headers: { traceparent: `00-${tid}-${parent}-00` } });
  await h.sleep(1200);
  assert.equal(col.spans().length, 0);
  assert.equal((await a.requests()).at(-1).headers.traceparent, undefined);
});

test('a dead collector: requests unaffected, spans counted as dropped', { timeout: 30000 }, async (t) => {
  const dead = await h.freePort(); // nothing listens there
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port, extra: tracingConfig({ port: dead }) }));
  const t0 = Date.now();
  const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`d${i}`) })));
  for (const r of rs) assert.equal(r.status, 200);
  assert.ok(Date.now() - t0 < 3000, 'requests are not slowed by the exporter');
  await h.waitFor(async () => {
    const m = await h.request(gw.url + '/metrics');
    const v = /^aiproxy_trace_spans_dropped_total (\d+)/m.exec(m.text);
    return v && Number(v[1]) >= 80;
  }, 8000, 200, 'dropped spans to be counted');
  const m = await h.request(gw.url + '/metrics');
  assert.match(m.text, /^aiproxy_trace_spans_exported_total 0$/m);
});

test('sample_ratio 0 traces nothing new; tracing off sends no traceparent', { timeout: 20000 }, async (t) => {
  const col = await startCollector();
  t.after(() => col.close());
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port, extra: tracingConfig(col, { sample_ratio: 0 }) }));
  await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('none') });
  const off = await h.gatewayFor(t, h.baseConfig({ fakePort: a.port }));
  await h.request(off.url + '/v1/chat/completions', { body: h.chatBody('off') });
  await h.sleep(1000);
  assert.equal(col.spans().length, 0);
  for (const rq of await a.requests()) assert.equal(rq.headers.traceparent, undefined);
});
