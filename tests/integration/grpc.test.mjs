// The gRPC service (SPEC section 10) with @grpc/grpc-js and
// @grpc/proto-loader loading the repository's own proto files: every
// method of aiproxy.v1.Gateway and grpc.health.v1.Health, streaming (deltas,
// then a last message with usage and meta), auth from the authorization
// metadata, deadlines (grpc-timeout becomes the request's deadline and the
// upstream call is cancelled), cancellation, errors mapped to status codes
// with the REST message, and bad input sent as raw HTTP/2 frames (compressed,
// oversized, malformed, unknown method). The ledger counts gRPC calls as it
// counts REST ones; the openai SDK on HTTP/1.1 is unaffected.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import OpenAI from 'openai';
import * as h from './harness.mjs';

const PROTO_DIR = path.join(h.REPO, 'proto');
const MAX_BODY = 64 * 1024;
const KEY = 'grpc-user-key';
const ADMIN = 'grpc-admin-key';

const def = protoLoader.loadSync(['aiproxy/v1/gateway.proto', 'grpc/health/v1/health.proto'], {
  includeDirs: [PROTO_DIR], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
});
const pkg = grpc.loadPackageDefinition(def);
const Gateway = pkg.aiproxy.v1.Gateway;
const Health = pkg.grpc.health.v1.Health;

let fake;
let gw;
let target;

before(async () => {
  fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  const cfg = h.baseConfig({
    fakePort: fake.port,
    server: { max_request_size: '64KB' },
    extra: {
      security: { auth: { enabled: true, api_keys: [
        { key: ADMIN, name: 'ops', role: 'admin' },
        { key: KEY, name: 'grpc-user' },
      ] } },
      budget: { daily_limit: 100 },
    },
  });
  cfg.providers.p1.models.push({ name: 'embed-test', openai_model: 'upstream-embed', capabilities: ['embeddings'], cost_per_1k_tokens: 0.0001 });
  cfg.providers.p1.timeout = '10s';
  gw = await h.startGateway(cfg);
  target = `127.0.0.1:${gw.port}`;
});
after(() => h.killAll());
beforeEach(() => fake.reset());

const clients = [];
function client(Ctor = Gateway, opts = {}) {
  const c = new Ctor(target, grpc.credentials.createInsecure(), opts);
  clients.push(c);
  return c;
}
after(() => { for (const c of clients) c.close(); });

function md(key = KEY) {
  const m = new grpc.Metadata();
  if (key) m.set('authorization', `Bearer ${key}`);
  return m;
}

/** A unary call as a promise: resolves the response, rejects the ServiceError. */
function unary(c, method, req, { key = KEY, deadlineMs } = {}) {
  return new Promise((resolve, reject) => {
    const opts = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
    c[method](req, md(key), opts, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** A server stream collected: resolves {messages, status} or rejects. */
function collect(call) {
  return new Promise((resolve, reject) => {
    const messages = [];
    call.on('data', (m) => messages.push(m));
    call.on('error', reject);
    call.on('status', (status) => { if (status.code === grpc.status.OK) resolve({ messages, status }); });
  });
}

const chatReq = (text = 'hello grpc world', extra = {}) => ({
  model: 'gpt-test', messages: [{ role: 'user', content: text }], ...extra,
});

// ---- a raw HTTP/2 call (for what grpc-js will not send) ----

function frame(msg, compressed = 0, announced) {
  const b = Buffer.alloc(5 + msg.length);
  b[0] = compressed;
  b.writeUInt32BE(announced ?? msg.length, 1);
  msg.copy(b, 5);
  return b;
}

function rawCall(p, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://${target}`);
    s.on('error', reject);
    const st = s.request({
      ':method': 'POST', ':path': p, 'content-type': 'application/grpc', te: 'trailers',
      authorization: `Bearer ${KEY}`, ...headers,
    });
    let head = {};
    let trailers = {};
    const parts = [];
    st.on('response', (x) => { head = x; });
    st.on('trailers', (x) => { trailers = x; });
    st.on('data', (c) => parts.push(c));
    st.on('error', (e) => { s.close(); reject(e); });
    st.on('close', () => {
      s.close();
      // Trailers-Only: grpc-status arrives in the response HEADERS.
      const all = { ...head, ...trailers };
      resolve({ status: head[':status'], grpcStatus: Number(all['grpc-status']), message: all['grpc-message'], data: Buffer.concat(parts) });
    });
    st.end(body);
  });
}

// ---- every method ----

test('Chat: content, usage, meta and the whole OpenAI answer', async () => {
  const res = await unary(client(), 'Chat', chatReq('hello grpc world', { temperature: 0.5, max_tokens: 20, stop: ['zz'], extra_json: '{"user":"u-1","seed":7}' }));
  assert.equal(res.content, 'echo: hello grpc world');
  assert.equal(res.model, 'upstream-gpt');
  assert.equal(res.finish_reason, 'stop');
  assert.ok(res.usage.prompt_tokens > 0 && res.usage.total_tokens > 0);
  assert.equal(res.meta.provider, 'p1');
  assert.equal(res.meta.node, 'test-node');
  assert.deepEqual(res.meta.providers_tried, ['p1']);
  assert.ok(res.meta.cost_usd > 0);
  assert.match(res.meta.request_id, /.+/);
  const whole = JSON.parse(res.response_json);
  assert.equal(whole['x-aiproxy'].provider, 'p1');
  const [up] = await fake.requests();
  assert.equal(up.body.temperature, 0.5);
  assert.equal(up.body.max_tokens, 20);
  assert.deepEqual(up.body.stop, ['zz']);
  assert.equal(up.body.user, 'u-1');
  assert.equal(up.body.seed, 7);
  assert.notEqual(up.body.stream, true);
});

test('ChatStream: deltas as they arrive, then usage and meta', async () => {
  const { messages } = await collect(client().ChatStream(chatReq('one two three four'), md()));
  const deltas = messages.filter((m) => m.delta).map((m) => m.delta).join('');
  assert.equal(deltas, 'echo: one two three four');
  assert.ok(messages.filter((m) => m.delta).length > 1, 'more than one delta');
  const last = messages[messages.length - 1];
  assert.ok(last.usage && last.usage.total_tokens > 0, JSON.stringify(last));
  assert.equal(last.meta.provider, 'p1');
  assert.ok(messages.some((m) => m.finish_reason === 'stop'));
  const [up] = await fake.requests();
  assert.equal(up.body.stream, true);
});

test('Embed, Predict and ListModels', async () => {
  const c = client();
  const e = await unary(c, 'Embed', { model: 'embed-test', input: ['alpha', 'beta'] });
  assert.equal(e.data.length, 2);
  assert.equal(e.data[0].values.length, 8);
  assert.equal(e.meta.provider, 'p1');
  const p = await unary(c, 'Predict', { model: 'gpt-test', input: 'predict me', strategy: 'cost_optimized', timeout_ms: 5000 });
  assert.equal(p.output, 'echo: predict me');
  assert.equal(p.model, 'gpt-test');
  assert.equal(p.meta.provider, 'p1');
  assert.equal(p.request_id, p.meta.request_id);
  const bad = await unary(c, 'Predict', { model: 'gpt-test', input: 'x', strategy: 'nope' }).catch((x) => x);
  assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
  const l = await unary(c, 'ListModels', {});
  const ids = l.models.map((m) => m.id);
  assert.ok(ids.includes('gpt-test') && ids.includes('embed-test'), ids.join(','));
  const m = l.models.find((x) => x.id === 'gpt-test');
  assert.deepEqual(m.providers, ['p1']);
  assert.equal(m.available, true);
});

test('health: Check and Watch without a key', async () => {
  const hc = client(Health);
  const r = await new Promise((res, rej) => hc.Check({ service: '' }, (e, x) => (e ? rej(e) : res(x))));
  assert.equal(r.status, 'SERVING');
  const r2 = await new Promise((res, rej) => hc.Check({ service: 'aiproxy.v1.Gateway' }, (e, x) => (e ? rej(e) : res(x))));
  assert.equal(r2.status, 'SERVING');
  const unk = await new Promise((res) => hc.Check({ service: 'other' }, (e) => res(e)));
  assert.equal(unk.code, grpc.status.NOT_FOUND);
  const call = hc.Watch({ service: '' });
  const first = await new Promise((res, rej) => { call.once('data', res); call.once('error', rej); });
  assert.equal(first.status, 'SERVING');
  const ended = new Promise((res) => call.on('error', res));
  call.cancel();
  assert.equal((await ended).code, grpc.status.CANCELLED);
});

// ---- auth and errors ----

test('auth: a missing or wrong key is UNAUTHENTICATED with the REST message', async () => {
  const c = client();
  const none = await unary(c, 'Chat', chatReq(), { key: null }).catch((x) => x);
  assert.equal(none.code, grpc.status.UNAUTHENTICATED);
  const wrong = await unary(c, 'Chat', chatReq(), { key: 'nope' }).catch((x) => x);
  assert.equal(wrong.code, grpc.status.UNAUTHENTICATED);
  const rest = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x'), headers: { authorization: 'Bearer nope' } });
  assert.equal(rest.status, 401);
  assert.equal(wrong.details, rest.json.error.message);
  const lm = await unary(c, 'ListModels', {}, { key: null }).catch((x) => x);
  assert.equal(lm.code, grpc.status.UNAUTHENTICATED);
  assert.equal((await fake.requests()).length, 0);
});

test('errors: unknown model NOT_FOUND, bad extra_json INVALID_ARGUMENT, upstream down UNAVAILABLE', async () => {
  const c = client();
  const nf = await unary(c, 'Chat', chatReq('x', { model: 'no-such-model' })).catch((x) => x);
  assert.equal(nf.code, grpc.status.NOT_FOUND);
  const rest = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('x', { model: 'no-such-model' }), headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(nf.details, rest.json.error.message);
  const ej = await unary(c, 'Chat', chatReq('x', { extra_json: '[1,2]' })).catch((x) => x);
  assert.equal(ej.code, grpc.status.INVALID_ARGUMENT);
  assert.match(ej.details, /extra_json/);
  const nomsg = await unary(c, 'Chat', { model: 'gpt-test' }).catch((x) => x);
  assert.equal(nomsg.code, grpc.status.INVALID_ARGUMENT);
  await fake.control({ default: { status: 500 } });
  const down = await unary(c, 'Chat', chatReq('x')).catch((x) => x);
  assert.equal(down.code, grpc.status.UNAVAILABLE);
  assert.match(down.details, /p1/);
  await fake.control({ default: { status: 400, message: 'bad thing upstream' } });
  const pass = await unary(c, 'Chat', chatReq('x')).catch((x) => x);
  assert.equal(pass.code, grpc.status.INVALID_ARGUMENT);
  assert.match(pass.details, /bad thing upstream/);
});

test('unknown method and service: UNIMPLEMENTED', async () => {
  const c = client();
  const err = await new Promise((res) => c.makeUnaryRequest('/aiproxy.v1.Gateway/Nope', (x) => x, (x) => x, Buffer.alloc(0), md(), (e) => res(e)));
  assert.equal(err.code, grpc.status.UNIMPLEMENTED);
  const err2 = await new Promise((res) => c.makeUnaryRequest('/other.Service/Call', (x) => x, (x) => x, Buffer.alloc(0), md(), (e) => res(e)));
  assert.equal(err2.code, grpc.status.UNIMPLEMENTED);
});

// ---- deadlines and cancellation ----

test('deadline: grpc-timeout bounds the request; DEADLINE_EXCEEDED and the upstream call cancelled', async () => {
  await fake.control({ default: { delayMs: 3000 } });
  // grpc-js: its own timer and the gateway's agree
  const err = await unary(client(), 'Chat', chatReq('slow'), { deadlineMs: 400 }).catch((x) => x);
  assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
  await h.waitFor(async () => (await fake.requests()).every((r) => r.clientClosed), 5000, 25, 'upstream cancelled');
  await fake.reset();
  await fake.control({ default: { delayMs: 3000 } });
  // raw: only the gateway's deadline (this client never cancels)
  const raw = await rawCall('/aiproxy.v1.Gateway/Chat', frame(Buffer.from(encodeChat('slow'))), { 'grpc-timeout': '300m' });
  assert.equal(raw.grpcStatus, grpc.status.DEADLINE_EXCEEDED, JSON.stringify(raw));
  await h.waitFor(async () => (await fake.requests()).every((r) => r.clientClosed), 5000, 25, 'upstream cancelled');
  const bad = await rawCall('/aiproxy.v1.Gateway/Chat', frame(Buffer.from(encodeChat('x'))), { 'grpc-timeout': '123456789S' });
  assert.equal(bad.grpcStatus, grpc.status.INVALID_ARGUMENT);
});

test('cancellation mid-stream cancels the upstream call', async () => {
  await fake.control({ default: { chunkDelayMs: 200, chunks: 30 } });
  const call = client().ChatStream(chatReq('cancel me please'), md());
  await new Promise((res) => call.once('data', res));
  const ended = new Promise((res) => call.on('error', res));
  call.cancel();
  assert.equal((await ended).code, grpc.status.CANCELLED);
  await h.waitFor(async () => {
    const r = await fake.requests();
    return r.length === 1 && r[0].clientClosed;
  }, 5000, 25, 'upstream stream cancelled');
});

test('a stream that breaks upstream ends with UNAVAILABLE and the REST message', async () => {
  await fake.control({ default: { resetAfterChunks: 2 } });
  const call = client().ChatStream(chatReq('one two three four five six'), md());
  const got = [];
  call.on('data', (m) => got.push(m));
  const err = await new Promise((res) => call.on('error', res));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.match(err.details, /failed mid-stream/);
  assert.ok(got.length >= 1, 'the deltas before the break arrived');
});

// ---- bad input: nothing reaches the upstream ----

/** A ChatRequest encoded by hand (model = 1, messages = 2 {role 1, content 2}). */
function encodeChat(text) {
  const str = (field, s) => { const b = Buffer.from(s); return Buffer.concat([Buffer.from([(field << 3) | 2, b.length]), b]); };
  const msg = Buffer.concat([str(1, 'user'), str(2, text)]);
  return Buffer.concat([str(1, 'gpt-test'), Buffer.from([(2 << 3) | 2, msg.length]), msg]);
}

test('bad input: compressed, oversized, malformed, not protobuf; nothing upstream', async () => {
  const chat = Buffer.from(encodeChat('hi'));
  const ok = await rawCall('/aiproxy.v1.Gateway/Chat', frame(chat));
  assert.equal(ok.grpcStatus, 0);
  await fake.reset();
  const comp = await rawCall('/aiproxy.v1.Gateway/Chat', frame(chat, 1), { 'grpc-encoding': 'gzip' });
  assert.equal(comp.grpcStatus, grpc.status.UNIMPLEMENTED);
  assert.match(decodeURIComponent(comp.message), /compression not supported/);
  const comp2 = await rawCall('/aiproxy.v1.Gateway/Chat', frame(chat, 1));
  assert.equal(comp2.grpcStatus, grpc.status.UNIMPLEMENTED);
  const announced = await rawCall('/aiproxy.v1.Gateway/Chat', frame(chat, 0, 10 * 1024 * 1024));
  assert.equal(announced.grpcStatus, grpc.status.RESOURCE_EXHAUSTED);
  const big = await rawCall('/aiproxy.v1.Gateway/Chat', frame(Buffer.from(encodeChat('x')), 0).subarray(0, 3));
  assert.equal(big.grpcStatus, grpc.status.INTERNAL);
  const two = await rawCall('/aiproxy.v1.Gateway/Chat', Buffer.concat([frame(chat), frame(chat)]));
  assert.equal(two.grpcStatus, grpc.status.INTERNAL);
  const junk = await rawCall('/aiproxy.v1.Gateway/Chat', frame(Buffer.from([0xff, 0xff, 0xff, 0xff])));
  assert.equal(junk.grpcStatus, grpc.status.INVALID_ARGUMENT);
  const badFlag = await rawCall('/aiproxy.v1.Gateway/Chat', Buffer.concat([Buffer.from([7]), frame(chat).subarray(1)]));
  assert.equal(badFlag.grpcStatus, grpc.status.INTERNAL);
  // grpc-js with a message over server.max_request_size (the transport refuses the body)
  const huge = await unary(client(), 'Chat', chatReq('y'.repeat(MAX_BODY + 1000))).catch((x) => x);
  assert.equal(huge.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal((await fake.requests()).length, 0);
  // the gateway goes on serving
  assert.equal((await unary(client(), 'Chat', chatReq('still here'))).content, 'echo: still here');
});

test('gRPC over HTTP/1.1 is refused with 415', async () => {
  const r = await h.request(gw.url + '/aiproxy.v1.Gateway/Chat', { body: frame(Buffer.from(encodeChat('x'))), headers: { 'content-type': 'application/grpc', authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 415);
  assert.equal(r.json.error.code, 'unsupported_media_type');
});

// ---- one flow: the ledger, and REST unaffected ----

test('the ledger records gRPC calls like REST ones (budget endpoint)', async () => {
  const before = (await h.request(gw.url + '/v1/budget', { headers: { authorization: `Bearer ${KEY}` } })).json;
  const res = await unary(client(), 'Chat', chatReq('count me'));
  const cost = BigInt(Math.round(res.meta.cost_usd * 1e9));
  await h.waitFor(async () => {
    const now = (await h.request(gw.url + '/v1/budget', { headers: { authorization: `Bearer ${KEY}` } })).json;
    return BigInt(now.today.spent_nanos) - BigInt(before.today.spent_nanos) === cost;
  }, 5000, 50, 'spend recorded');
  const all = (await h.request(gw.url + '/v1/budget', { headers: { authorization: `Bearer ${ADMIN}` } })).json;
  assert.ok(all.by_key.some((k) => k.name === 'grpc-user'), JSON.stringify(all.by_key));
});

test('the openai SDK on HTTP/1.1 is unaffected', { timeout: 20000 }, async () => {
  const oa = new OpenAI({ apiKey: KEY, baseURL: gw.url + '/v1', timeout: 8000, maxRetries: 0 });
  const r = await oa.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'rest still works' }] });
  assert.equal(r.choices[0].message.content, 'echo: rest still works');
  assert.equal(r['x-aiproxy'].provider, 'p1');
  const stream = await oa.chat.completions.create({ model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'a b' }] });
  let text = '';
  for await (const ch of stream) text += ch.choices[0]?.delta?.content || '';
  assert.equal(text, 'echo: a b');
});
