#!/usr/bin/env node
// A fake Ollama server for aiproxy's integration tests (the `local` provider).
//
//   node fake-ollama.mjs --port 0 [--models a,b] [--name N] [--no-openai-models]
//
// Prints one JSON line {"port":N} on stdout once listening. A fixed --port
// lets a test stop it and start it again on the same port ("the local server
// comes back").
//
// What it serves (shared/APIS.md section 6):
//   GET  /api/tags             Ollama's list: {"models":[{name, model,
//                              modified_at, size, digest, details{format,
//                              family, families, parameter_size,
//                              quantization_level}}]}
//   GET  /api/version          {"version":"0.6.0"}
//   GET  /v1/models            OpenAI list ({"object":"list","data":[{id,
//                              object:"model", created, owned_by:"library"}]});
//                              404 with --no-openai-models (an Ollama-style
//                              server whose OpenAI layer cannot list), so that
//                              discovery must fall back to /api/tags
//   GET  /v1/models/{id}       one model
//   POST /v1/chat/completions  OpenAI compat, streaming (SSE, [DONE]) and
//                              not; the API key is "required but ignored";
//                              checks content-type, JSON, model (must be
//                              pulled: 404 `model "x" not found, try pulling
//                              it first`), messages (400), stream_options
//                              only with stream (400). Fields Ollama ignores
//                              (tool_choice, logit_bias, user, n) are
//                              recorded in `ignored`.
// Replies: "echo: " + last user text; when the request has tools and that
// text contains "use tool": a tool call {id: "call_fake_<seq>", name: tools[0]
// (or the forced tool_choice function), arguments: {"q": text}} with
// finish_reason tool_calls (streamed as an id/name delta then two argument
// pieces); when the last messages are tool results: "tool said: " + their
// contents joined by " | ". Usage prompt_tokens = characters of
// all message contents, completion_tokens = pieces (one per word); the
// stream's usage chunk only with stream_options.include_usage.
//
// Control API as fake-upstream.mjs (POST /__control {queue, default},
// GET /__requests, POST /__reset, GET /__stats); GET requests never consume
// behaviours. Behaviours: delayMs, status (+message), hang, reset,
// resetAfterChunks, garbage, errorIn200, streamFirstEventError,
// chunkDelayMs, chunks:M, usage, headers.

import http from 'node:http';

const SCRIPT = 'fake-ollama';
function parseArgs(argv) {
  const out = { port: 0, models: null, name: 'ollama', host: '127.0.0.1', openaiModels: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--port': out.port = Number(next()); break;
      case '--host': out.host = next(); break;
      case '--models': out.models = next().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--name': out.name = next(); break;
      case '--no-openai-models': out.openaiModels = false; break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!out.models) out.models = ['llama3.2:latest', 'qwen2.5:0.5b', 'nomic-embed-text:latest'];
  return out;
}
const opts = parseArgs(process.argv.slice(2));

// ---- state and common plumbing (as in fake-upstream.mjs) ----

let queue = [];
let defaultBehaviour = {};
let requests = [];
let seq = 0;
const stats = { connections: 0, openConnections: 0, requests: 0 };
const heldSockets = new Set();
const allSockets = new Set();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nextBehaviour = () => (queue.length > 0 ? queue.shift() : defaultBehaviour) || {};
const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);

function rst(socket) {
  if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) {
    try { socket.resetAndDestroy(); return; } catch { /* fall through */ }
  }
  socket.destroy();
}

function sendJson(res, status, obj, extra = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, ...extra });
  res.end(body);
}

function pieces(text) {
  const p = text.match(/\S+\s*/g);
  return p && p.length ? p : [text];
}

// Writes SSE `data:` events honouring backpressure; false once the peer is gone.
function sseWriter(res) {
  return async (payload) => {
    if (res.destroyed) return false;
    const s = typeof payload === 'string' ? payload : JSON.stringify(payload);
    if (!res.write(`data: ${s}\n\n`)) {
      await new Promise((r) => {
        const done = () => { res.off('drain', done); res.off('close', done); r(); };
        res.on('drain', done); res.on('close', done);
      });
    }
    return !res.destroyed;
  };
}

// ---- OpenAI-compatible chat (shared by fake-ollama and fake-ocf) ----

function errorBody(message, type, param = null, code = null) {
  return { error: { message, type, param, code } };
}
function internalError(res, e) { sendJson(res, 500, errorBody(`fake internal error: ${e}`, 'api_error')); }
function textOf(c) {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.filter((p) => p && p.type === 'text').map((p) => p.text).join('');
  return '';
}

// Validates an OpenAI chat body; returns [status, errorBody] or null.
function validateChat(req, entry, knownModel, unknownModelError) {
  const v = entry.violations;
  if (!/^application\/json\b/i.test(req.headers['content-type'] || '')) {
    v.push('content-type');
    return [400, errorBody('content-type must be application/json', 'invalid_request_error')];
  }
  const b = entry.body;
  if (!isObj(b)) { v.push('json'); return [400, errorBody('invalid JSON body', 'invalid_request_error')]; }
  if (typeof b.model !== 'string' || !b.model) { v.push('model'); return [400, errorBody('model is required', 'invalid_request_error')]; }
  if (!Array.isArray(b.messages) || !b.messages.length) { v.push('messages'); return [400, errorBody("'messages' is required", 'invalid_request_error')]; }
  for (const [i, m] of b.messages.entries()) {
    if (!isObj(m) || !['system', 'developer', 'user', 'assistant', 'tool'].includes(m.role)) {
      v.push(`messages.${i}.role`);
      return [400, errorBody(`invalid message role: ${m && m.role}`, 'invalid_request_error')];
    }
  }
  if (b.stream_options !== undefined && b.stream !== true) {
    v.push('stream_options');
    return [400, errorBody('stream_options is only allowed when stream is enabled', 'invalid_request_error')];
  }
  if (!knownModel(b.model)) {
    v.push('unknown-model');
    return unknownModelError(b.model);
  }
  return null;
}

async function answerChat(req, res, entry, idPrefix) {
  const b = nextBehaviour();
  entry.behaviour = b;
  if (b.delayMs) await sleep(b.delayMs);
  if (res.destroyed) return;
  if (b.reset) { rst(req.socket); return; }
  if (b.hang) { heldSockets.add(req.socket); return; }
  if (Number.isInteger(b.status) && b.status !== 200) {
    return sendJson(res, b.status, errorBody(b.message || `fake error ${b.status}`, b.status >= 500 ? 'api_error' : 'invalid_request_error'), b.headers || {});
  }
  if (b.garbage) {
    const s = 'this is <not> json {{{';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': s.length });
    return res.end(s);
  }
  if (b.errorIn200) return sendJson(res, 200, errorBody(b.message || 'fake errorIn200', 'api_error'));
  const body = entry.body;
  const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
  const userText = lastUser ? textOf(lastUser.content) : '';
  const lastMsg = body.messages[body.messages.length - 1];
  let text = `echo: ${userText}`;
  let toolCall = null;
  if (lastMsg.role === 'tool') {
    const results = [];
    for (let i = body.messages.length - 1; i >= 0 && body.messages[i].role === 'tool'; i--) results.unshift(textOf(body.messages[i].content));
    text = `tool said: ${results.join(' | ')}`;
  } else if (Array.isArray(body.tools) && body.tools.length && /use tool/.test(userText) && body.tool_choice !== 'none') {
    const forced = isObj(body.tool_choice) && body.tool_choice.function ? body.tool_choice.function.name : null;
    toolCall = { id: `call_fake_${entry.seq}`, type: 'function', function: { name: forced || body.tools[0].function.name, arguments: JSON.stringify({ q: userText }) } };
    text = '';
  }
  const ps = Number.isInteger(b.chunks) && b.chunks > 0 ? Array.from({ length: b.chunks }, (_, i) => `c${i} `) : text ? pieces(text) : [];
  const u = b.usage || {};
  const pt = u.prompt_tokens ?? body.messages.reduce((n, m) => n + textOf(m.content).length, 0);
  const ct = u.completion_tokens ?? (ps.length + (toolCall ? 5 : 0));
  const usage = { prompt_tokens: pt, completion_tokens: ct, total_tokens: pt + ct };
  const id = `chatcmpl-${idPrefix}-${entry.seq}`;
  const created = 1700000000 + entry.seq;
  if (body.stream === true) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...(b.headers || {}) });
    const send = sseWriter(res);
    if (b.streamFirstEventError) { await send(errorBody('fake stream error', 'api_error')); res.end(); return; }
    const base = { id, object: 'chat.completion.chunk', created, model: body.model, system_fingerprint: 'fp_ollama' };
    if (!(await send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }))) return;
    let sent = 0;
    for (const p of ps) {
      if (b.chunkDelayMs) await sleep(b.chunkDelayMs);
      if (!(await send({ ...base, choices: [{ index: 0, delta: { content: p }, finish_reason: null }] }))) return;
      sent++;
      if (Number.isInteger(b.resetAfterChunks) && sent >= b.resetAfterChunks) { await sleep(50); rst(req.socket); return; }
    }
    if (toolCall) {
      const a = toolCall.function.arguments;
      const half = Math.floor(a.length / 2);
      if (!(await send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: toolCall.id, type: 'function', function: { name: toolCall.function.name, arguments: '' } }] }, finish_reason: null }] }))) return;
      for (const part of [a.slice(0, half), a.slice(half)]) {
        if (!(await send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: part } }] }, finish_reason: null }] }))) return;
      }
    }
    if (!(await send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: toolCall ? 'tool_calls' : 'stop' }] }))) return;
    if (body.stream_options && body.stream_options.include_usage === true && !(await send({ ...base, choices: [], usage }))) return;
    if (!res.destroyed) res.end('data: [DONE]\n\n');
    return;
  }
  if (b.chunkDelayMs) await sleep(b.chunkDelayMs * ps.length);
  return sendJson(res, 200, {
    id, object: 'chat.completion', created, model: body.model, system_fingerprint: 'fp_ollama',
    choices: [{ index: 0, message: toolCall ? { role: 'assistant', content: null, tool_calls: [toolCall] } : { role: 'assistant', content: ps.join('') }, finish_reason: toolCall ? 'tool_calls' : 'stop' }],
    usage,
  }, b.headers || {});
}

// ---- Ollama's endpoints ----

const modelInfo = (name, i) => ({
  name,
  model: name,
  modified_at: `2024-0${1 + (i % 9)}-07T09:32:18.757212583-08:00`,
  size: 3825819519 + i,
  digest: `fe938a131f40e6f6d40083c9f0f430a515233eb2edaa6d72eb85c50d64f2300${i}`,
  details: { parent_model: '', format: 'gguf', family: 'llama', families: null, parameter_size: '7B', quantization_level: 'Q4_0' },
});

async function route(req, res, entry, path) {
  if (req.method === 'GET') {
    if (path === '/api/tags') return sendJson(res, 200, { models: opts.models.map(modelInfo) });
    if (path === '/api/version') return sendJson(res, 200, { version: '0.6.0' });
    if (path === '/' ) { res.writeHead(200, { 'content-type': 'text/plain' }); return res.end('Ollama is running'); }
    if (path === '/v1/models' && opts.openaiModels) {
      return sendJson(res, 200, { object: 'list', data: opts.models.map((id) => ({ id, object: 'model', created: 1717000000, owned_by: 'library' })) });
    }
    if (path.startsWith('/v1/models/') && opts.openaiModels) {
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      if (opts.models.includes(id)) return sendJson(res, 200, { id, object: 'model', created: 1717000000, owned_by: 'library' });
      return sendJson(res, 404, errorBody(`model "${id}" not found`, 'invalid_request_error'));
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    return res.end('404 page not found');
  }
  if (path !== '/v1/chat/completions' || req.method !== 'POST') {
    entry.violations.push(`path ${req.method} ${path}`);
    res.writeHead(404, { 'content-type': 'text/plain' });
    return res.end('404 page not found');
  }
  const bad = validateChat(req, entry, (m) => opts.models.includes(m),
    (m) => [404, errorBody(`model "${m}" not found, try pulling it first`, 'api_error')]);
  if (bad) return sendJson(res, bad[0], bad[1]);
  entry.ignored = ['tool_choice', 'logit_bias', 'user', 'n'].filter((k) => k in entry.body);
  return answerChat(req, res, entry, 'ollama');
}

// ---- the server (common to the provider fakes) ----

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

async function onRequest(req, res) {
  const url = req.url || '/';
  if (url.startsWith('/__')) return control(req, res, url);
  stats.requests++;
  const entry = {
    seq: ++seq, conn: req.socket.__connId, method: req.method, path: url, headers: req.headers,
    body: null, violations: [], behaviour: null, status: null,
    receivedAt: Date.now(), finishedAt: null, clientClosed: false, closedAt: null,
  };
  requests.push(entry);
  res.on('finish', () => { entry.finishedAt = Date.now(); });
  res.on('close', () => { if (!res.writableFinished) { entry.clientClosed = true; entry.closedAt = Date.now(); } });
  const origWriteHead = res.writeHead;
  res.writeHead = function (status, ...rest) { entry.status = status; return origWriteHead.call(this, status, ...rest); };
  let raw;
  try { raw = await readBody(req); } catch { return; }
  if (raw.length) {
    try { entry.body = JSON.parse(raw.toString('utf8')); } catch { entry.rawBody = raw.toString('utf8').slice(0, 4096); }
  }
  try {
    await route(req, res, entry, url.split('?')[0]);
  } catch (e) {
    process.stderr.write(`${SCRIPT}: handler error: ${e && e.stack}\n`);
    if (!res.headersSent) internalError(res, e);
    else res.destroy();
  }
}

async function control(req, res, url) {
  const raw = await readBody(req).catch(() => Buffer.alloc(0));
  const reply = (obj) => {
    const s = JSON.stringify(obj);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    res.end(s);
  };
  const path = url.split('?')[0];
  if (path === '/__control' && req.method === 'POST') {
    let c;
    try { c = JSON.parse(raw.toString('utf8') || '{}'); } catch { res.writeHead(400); return res.end('bad control json'); }
    if (Array.isArray(c.queue)) queue = c.queue.slice();
    if (c.default !== undefined) defaultBehaviour = c.default || {};
    if (typeof onControl === 'function') onControl(c);
    return reply({ ok: true, queue: queue.length });
  }
  if (path === '/__reset' && req.method === 'POST') {
    queue = []; defaultBehaviour = {}; requests = []; seq = 0; stats.requests = 0;
    for (const s of heldSockets) s.destroy();
    heldSockets.clear();
    return reply({ ok: true });
  }
  if (path === '/__requests' && req.method === 'GET') return reply(requests);
  if (path === '/__stats' && req.method === 'GET') return reply({ name: opts.name, ...stats });
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('unknown control endpoint');
}

let connCounter = 0;
const server = http.createServer(onRequest);
server.on('connection', (socket) => {
  socket.__connId = ++connCounter;
  stats.connections++; stats.openConnections++;
  allSockets.add(socket);
  socket.on('close', () => { stats.openConnections--; allSockets.delete(socket); heldSockets.delete(socket); });
});
server.keepAliveTimeout = 30000;
server.requestTimeout = 0;
server.listen(opts.port, opts.host, () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, name: opts.name }) + '\n');
});
const shutdown = () => {
  for (const s of allSockets) s.destroy();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
