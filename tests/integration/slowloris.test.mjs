// Slowloris: server.read_timeout bounds receiving a whole request counted
// from its first byte; a trickling client cannot hold a connection past it,
// and other clients are served meanwhile.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

let fake;
let gw;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  gw = await h.startGateway(h.baseConfig({
    fakePort: fake.port,
    server: { read_timeout: '1s', write_timeout: '5s' },
  }));
});
after(() => h.killAll());

function checkCutOff(x, what) {
  assert.ok(x.closed, `${what}: connection still open after ${x.ms} ms`);
  assert.ok(x.ms < 2000, `${what}: closed only after ${x.ms} ms (read_timeout is 1s)`);
  assert.ok(x.ms >= 800, `${what}: closed after ${x.ms} ms, before the 1s read_timeout`);
  if (x.responses.length > 0) {
    assert.equal(x.responses[0].status, 408, `${what}: an answer, if any, must be 408: ${x.text.slice(0, 300)}`);
    assert.match(x.responses[0].headers['content-type'] || '', /^application\/json/);
  }
}

test('header bytes trickled every 200 ms: 408 or closed by ~1 s, and a normal client is served meanwhile', { timeout: 10000 }, async () => {
  const head = 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n';
  const steps = [...head].map((c) => [200, c]);
  steps[0][0] = 0;
  const slow = h.rawExchange(gw.port, steps, { timeoutMs: 4000 });
  await h.sleep(300);
  const t0 = Date.now();
  const normal = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('not blocked') });
  assert.equal(normal.status, 200, normal.text);
  assert.ok(Date.now() - t0 < 700, `normal client took ${Date.now() - t0} ms during the slowloris`);
  checkCutOff(await slow, 'trickled head');
});

test('body bytes trickled every 200 ms: 408 or closed by ~1 s', { timeout: 10000 }, async () => {
  const body = JSON.stringify(h.chatBody('slow body'));
  const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  const steps = [[0, head], ...[...body].map((c) => [200, c])];
  checkCutOff(await h.rawExchange(gw.port, steps, { timeoutMs: 4000 }), 'trickled body');
});

test('a request that completes within read_timeout is served even if sent in pieces', { timeout: 10000 }, async () => {
  const body = JSON.stringify(h.chatBody('pieces'));
  const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  const steps = [[0, head.slice(0, 10)], [150, head.slice(10)], [150, body.slice(0, 10)], [150, body.slice(10)]];
  const x = await h.rawExchange(gw.port, steps, { timeoutMs: 4000 });
  assert.equal(x.responses.length, 1, x.text);
  assert.equal(x.responses[0].status, 200, x.text);
  assert.equal(x.responses[0].json.choices[0].message.content, 'echo: pieces');
});
