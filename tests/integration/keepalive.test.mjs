// Keep-alive and pipelining over one raw TCP connection: responses come back
// complete and in request order.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import * as h from './harness.mjs';

let fake;
let gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({ fakePort: fake.port }));
});
after(() => h.killAll());
beforeEach(() => fake.reset());

const get = (p) => `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
const post = (p, obj) => {
  const b = JSON.stringify(obj);
  return `POST ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`;
};

test('two pipelined GETs on one connection are answered in order', { timeout: 8000 }, async () => {
  const x = await h.rawExchange(gw.port, get('/health') + get('/v1/models/nope'), { untilResponses: 2, timeoutMs: 5000 });
  assert.equal(x.responses.length, 2, `got: ${JSON.stringify(x.text.slice(0, 800))}`);
  assert.deepEqual(x.responses.map((r) => r.status), [200, 404]);
  assert.ok(x.responses.every((r) => r.complete));
  assert.ok(!x.closed, 'connection must stay open after keep-alive responses');
});

test('ten pipelined GETs on one connection are answered in order', { timeout: 8000 }, async () => {
  const paths = [];
  for (let i = 0; i < 10; i++) paths.push(i % 2 ? '/v1/models/nope' : '/health');
  const x = await h.rawExchange(gw.port, paths.map(get).join(''), { untilResponses: 10, timeoutMs: 5000 });
  assert.deepEqual(x.responses.map((r) => r.status), paths.map((p) => (p === '/health' ? 200 : 404)),
    `got: ${JSON.stringify(x.text.slice(0, 1500))}`);
  assert.ok(x.responses.every((r) => r.complete));
});

test('pipelined POSTs are answered in order with their own bodies', { timeout: 10000 }, async () => {
  const data = post('/v1/chat/completions', h.chatBody('first one'))
    + post('/v1/chat/completions', h.chatBody('second one'))
    + get('/health')
    + post('/v1/chat/completions', h.chatBody('third one'));
  const x = await h.rawExchange(gw.port, data, { untilResponses: 4, timeoutMs: 8000 });
  assert.deepEqual(x.responses.map((r) => r.status), [200, 200, 200, 200], JSON.stringify(x.text.slice(0, 1500)));
  assert.equal(x.responses[0].json.choices[0].message.content, 'echo: first one');
  assert.equal(x.responses[1].json.choices[0].message.content, 'echo: second one');
  assert.equal(x.responses[3].json.choices[0].message.content, 'echo: third one');
  assert.ok(x.responses[0].headers['x-aiproxy-request-id']);
});

test('sequential requests reuse one keep-alive connection', { timeout: 8000 }, async () => {
  const sock = net.connect(gw.port, '127.0.0.1');
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  let buf = Buffer.alloc(0);
  let closed = false;
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
  sock.on('close', () => { closed = true; });
  try {
    for (let i = 1; i <= 3; i++) {
      sock.write(post('/v1/chat/completions', h.chatBody(`turn ${i}`)));
      await h.waitFor(() => h.parseHttpResponses(buf).filter((r) => r.complete).length >= i || closed, 5000, 10, `response ${i}`);
      assert.ok(!closed, `connection closed after response ${i}`);
    }
    const rs = h.parseHttpResponses(buf);
    assert.deepEqual(rs.map((r) => r.json.choices[0].message.content), ['echo: turn 1', 'echo: turn 2', 'echo: turn 3']);
  } finally {
    sock.destroy();
  }
});

test('Connection: close is honoured', { timeout: 5000 }, async () => {
  const x = await h.rawExchange(gw.port, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { timeoutMs: 3000 });
  assert.equal(x.responses.length, 1);
  assert.equal(x.responses[0].status, 200);
  assert.ok(x.closed, 'server must close after Connection: close');
  assert.ok(x.ms < 2000);
});

test('HTTP/1.0 without keep-alive is answered and closed', { timeout: 5000 }, async () => {
  const x = await h.rawExchange(gw.port, 'GET /health HTTP/1.0\r\n\r\n', { timeoutMs: 3000 });
  assert.equal(x.responses.length, 1, JSON.stringify(x.text));
  assert.equal(x.responses[0].status, 200);
  assert.ok(x.closed);
});

test('Expect: 100-continue gets "100 Continue" before the body is sent', { timeout: 8000 }, async () => {
  const body = JSON.stringify(h.chatBody('expect'));
  const sock = net.connect(gw.port, '127.0.0.1');
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
  try {
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
    await h.waitFor(() => /^HTTP\/1\.1 100 /.test(buf.toString('latin1')), 1000, 10, '100 Continue');
    sock.write(body);
    await h.waitFor(() => h.parseHttpResponses(buf).some((r) => r.status === 200 && r.complete), 3000, 10, 'the final answer');
    const final = h.parseHttpResponses(buf).find((r) => r.status === 200);
    assert.equal(final.json.choices[0].message.content, 'echo: expect');
  } finally {
    sock.destroy();
  }
});

test('a chunked request body is accepted', { timeout: 8000 }, async () => {
  const body = JSON.stringify(h.chatBody('chunked body'));
  const parts = [body.slice(0, 7), body.slice(7, 30), body.slice(30)];
  const chunked = parts.map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`).join('') + '0\r\n\r\n';
  const x = await h.rawExchange(gw.port, `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`,
    { untilResponses: 1, timeoutMs: 5000 });
  assert.equal(x.responses[0] && x.responses[0].status, 200, x.text.slice(0, 500));
  assert.equal(x.responses[0].json.choices[0].message.content, 'echo: chunked body');
});
