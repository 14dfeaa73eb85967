#!/usr/bin/env node
// A fake OpenAI-compatible provider for aiproxy's integration tests.
//
//   node fake-upstream.mjs --port 0 [--tls-cert F --tls-key K] [--api-key KEY]
//                          [--models a,b] [--name NAME] [--semantic-embeddings]
//
// Prints one JSON line {"port":N} on stdout once listening.
//
// It speaks OpenAI's wire format strictly (shared/APIS.md sections 1-2):
//   POST /v1/chat/completions  (non-streaming and SSE, `data: [DONE]`; the
//                               usage chunk with `choices: []` only when
//                               stream_options.include_usage is true)
//   POST /v1/completions, POST /v1/embeddings, GET /v1/models[/ID]
// and rejects what OpenAI rejects: a missing/wrong `Authorization: Bearer`
// (401 when --api-key is set), a content type other than application/json,
// a body that is not JSON, a missing model/messages/prompt/input (400), and a
// model not in --models (404 model_not_found). All errors are OpenAI-shaped.
//
// Replies are deterministic, derived from the request:
//   chat:        content = "echo: " + text of the last user message
//   completions: text    = "echo: " + prompt (first prompt if an array)
//   usage:       prompt_tokens     = total characters of the message contents
//                                    (chat) / of the prompt or input strings,
//                completion_tokens = number of content pieces sent (one piece
//                                    per word; `chunks: M` makes it M)
//   A behaviour may override usage with {"usage":{"prompt_tokens":P,
//   "completion_tokens":C}}; its other fields (prompt_tokens_details,
//   cache_read_input_tokens, ...) are added to the usage as they are.
//   A chat body with a `cache_control` (Anthropic's prompt caching) on a
//   message, a content part or a tool is refused with 400, as OpenAI does.
//   embeddings:  8 floats hashed from the whole string (any change gives an
//                unrelated vector), unless --semantic-embeddings (or the
//                behaviour {"semanticEmbeddings":true}): then 256 floats, a
//                bag of words (runs of letters and digits, lower-cased, each
//                hashed into one of 256 dimensions), normalised to length 1;
//                texts with the same words in any case or punctuation have
//                cosine similarity 1, texts sharing few words are far apart
//                (for the semantic cache's tests).
//
// Control (never forwarded by the gateway, which only proxies /v1/*):
//   POST /__control {"queue":[behaviour,...], "default": behaviour}
//       the queue is consumed one entry per POST /v1/* request, then "default"
//       applies (initially {}: a normal answer). GET requests (/v1/models,
//       which a gateway may use as a health probe) never consume behaviours.
//   POST /__reset      clears queue, default, the request log and stats,
//                      and destroys connections held open by hang behaviours
//   GET  /__requests   every /v1 request: {seq, conn, method, path, headers,
//                      body (parsed JSON or null), rawBody (when not JSON),
//                      violations[], behaviour, status, receivedAt,
//                      finishedAt, clientClosed, closedAt}
//   GET  /__stats      {name, connections, openConnections, requests}
//
// Behaviours (fields combine; delayMs applies first):
//   {"delayMs":N}               wait N ms before answering
//   {"status":S, "retryAfter":T, "message":M}
//                               OpenAI-shaped error with status S
//   {"hang":true}               never answer
//   {"hangAfterHeaders":true}   send 200 headers, never a body
//   {"reset":true}              destroy the socket (RST) before answering
//   {"resetAfterChunks":N}      stream N content chunks, then RST (a
//                               non-streaming request gets half a body, then RST)
//   {"garbage":true}            200, application/json, body not JSON
//   {"errorIn200":true}         200 with {"error":{...}} body
//   {"streamFirstEventError":true}  200 SSE whose first event is an error
//   {"chunkDelayMs":N, "chunks":M}  M content chunks, N ms apart
//   {"bigResponseBytes":N}      content of N bytes ('x'...), streamed in 1000-byte
//                               pieces when streaming
//   {"contentType":"text/html"} 200 with that content type (an HTML page for
//                               text/html, else the normal body)
//   {"headers":{...}}           extra response headers
//   {"usage":{...}}             usage override (see above)
//   {"toolCalls":[{"name":N,"arguments":A},...]}
//                               chat: the answer calls these functions (ids
//                               call_fake_0..), after the echo text only when
//                               "withText" is true; finish_reason tool_calls;
//                               streamed as OpenAI does (id and name first,
//                               then the arguments in two pieces)
//   {"finishReason":R}          chat: this finish_reason instead of stop

import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';

// ---- arguments ----

function parseArgs(argv) {
  const out = { port: 0, tlsCert: null, tlsKey: null, apiKey: null, models: null, name: 'fake', host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case '--port': out.port = Number(next()); break;
      case '--host': out.host = next(); break;
      case '--tls-cert': out.tlsCert = next(); break;
      case '--tls-key': out.tlsKey = next(); break;
      case '--api-key': out.apiKey = next(); break;
      case '--models': out.models = next().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--name': out.name = next(); break;
      case '--semantic-embeddings': out.semanticEmbeddings = true; break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!out.models) out.models = ['upstream-gpt', 'upstream-embed', 'upstream-instruct'];
  return out;
}

const opts = parseArgs(process.argv.slice(2));

// ---- state ----

let queue = [];
let defaultBehaviour = {};
let requests = [];
let seq = 0;
const stats = { connections: 0, openConnections: 0, requests: 0 };
const heldSockets = new Set(); // sockets of hanging responses, destroyed on /__reset
const allSockets = new Set();

function nextBehaviour() {
  if (queue.length > 0) return queue.shift();
  return defaultBehaviour;
}

// ---- helpers ----

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function errorBody(message, type, param, code) {
  return { error: { message, type, param: param ?? null, code: code ?? null } };
}

function sendJson(res, status, obj, extraHeaders = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': body.length,
    'x-request-id': `req_fake_${opts.name}_${seq}`,
    'openai-version': '2020-10-01',
    ...extraHeaders,
  });
  res.end(body);
}

function errorForStatus(status, message) {
  switch (status) {
    case 400: return errorBody(message || 'Bad request (fake)', 'invalid_request_error', null, null);
    case 401: return errorBody(message || 'Incorrect API key provided (fake)', 'invalid_request_error', null, 'invalid_api_key');
    case 403: return errorBody(message || 'Forbidden (fake)', 'invalid_request_error', null, null);
    case 404: return errorBody(message || 'Not found (fake)', 'invalid_request_error', null, 'model_not_found');
    case 408: return errorBody(message || 'Request timed out (fake)', 'timeout', null, null);
    case 422: return errorBody(message || 'Unprocessable (fake)', 'invalid_request_error', null, null);
    case 429: return errorBody(message || 'Rate limit reached (fake)', 'requests', null, 'rate_limit_exceeded');
    default:
      return errorBody(message || `The server had an error while processing your request (fake ${status})`, 'server_error', null, null);
  }
}

function textOfContent(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.filter((p) => p && p.type === 'text' && typeof p.text === 'string').map((p) => p.text).join('');
  }
  return '';
}

function pieces(text) {
  const p = text.match(/\S+\s*/g);
  return p && p.length ? p : [text];
}

function contentPieces(baseText, b) {
  if (Number.isInteger(b.bigResponseBytes) && b.bigResponseBytes > 0) {
    const out = [];
    let left = b.bigResponseBytes;
    while (left > 0) {
      const n = Math.min(1000, left);
      out.push('x'.repeat(n));
      left -= n;
    }
    return out;
  }
  if (Number.isInteger(b.chunks) && b.chunks > 0) {
    return Array.from({ length: b.chunks }, (_, i) => `c${i} `);
  }
  return pieces(baseText);
}

function usageFor(promptTokens, completionTokens, b) {
  const p = b.usage && Number.isInteger(b.usage.prompt_tokens) ? b.usage.prompt_tokens : promptTokens;
  const c = b.usage && Number.isInteger(b.usage.completion_tokens) ? b.usage.completion_tokens : completionTokens;
  const { prompt_tokens: _p, completion_tokens: _c, total_tokens: _t, ...extra } = b.usage || {};
  return { prompt_tokens: p, completion_tokens: c, total_tokens: p + c, ...extra };
}

function rst(socket) {
  if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) {
    try { socket.resetAndDestroy(); return; } catch { /* fall through */ }
  }
  socket.destroy();
}

// ---- the OpenAI endpoints ----

function validate(req, entry, kind) {
  // Returns [status, errorObject] or null.
  if (opts.apiKey) {
    const auth = req.headers['authorization'];
    if (auth !== `Bearer ${opts.apiKey}`) {
      entry.violations.push('authorization');
      return [401, errorBody(auth ? 'Incorrect API key provided (fake).' : "You didn't provide an API key (fake).",
        'invalid_request_error', null, 'invalid_api_key')];
    }
  }
  if (req.method !== 'POST') return null;
  const ct = req.headers['content-type'] || '';
  if (!/^application\/json\b/i.test(ct)) {
    entry.violations.push('content-type');
    return [400, errorBody(`Invalid content type '${ct}' (fake): expected application/json`, 'invalid_request_error', null, null)];
  }
  const body = entry.body;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    entry.violations.push('json');
    return [400, errorBody('We could not parse the JSON body of your request (fake).', 'invalid_request_error', null, null)];
  }
  if (typeof body.model !== 'string' || body.model === '') {
    entry.violations.push('model');
    return [400, errorBody('you must provide a model parameter', 'invalid_request_error', 'model', null)];
  }
  if (kind === 'chat' && (!Array.isArray(body.messages) || body.messages.length === 0)) {
    entry.violations.push('messages');
    return [400, errorBody("Missing required parameter: 'messages'.", 'invalid_request_error', 'messages', 'missing_required_parameter')];
  }
  if (kind === 'chat') {
    const marked = [];
    body.messages.forEach((m, i) => {
      if (m && m.cache_control !== undefined) marked.push(`messages[${i}].cache_control`);
      if (m && Array.isArray(m.content)) m.content.forEach((part, j) => {
        if (part && part.cache_control !== undefined) marked.push(`messages[${i}].content[${j}].cache_control`);
      });
    });
    if (Array.isArray(body.tools)) body.tools.forEach((t, i) => {
      if (t && (t.cache_control !== undefined || (t.function && t.function.cache_control !== undefined))) marked.push(`tools[${i}].cache_control`);
    });
    if (marked.length) {
      entry.violations.push('cache_control');
      return [400, errorBody(`Unrecognized request argument supplied: ${marked[0]} (fake)`, 'invalid_request_error', marked[0], null)];
    }
  }
  if (kind === 'completions' && body.prompt === undefined) {
    entry.violations.push('prompt');
    return [400, errorBody("Missing required parameter: 'prompt'.", 'invalid_request_error', 'prompt', 'missing_required_parameter')];
  }
  if (kind === 'embeddings' && (body.input === undefined || body.input === '')) {
    entry.violations.push('input');
    return [400, errorBody("Missing required parameter: 'input'.", 'invalid_request_error', 'input', 'missing_required_parameter')];
  }
  if (body.stream_options !== undefined && body.stream !== true) {
    entry.violations.push('stream_options');
    return [400, errorBody('The stream_options parameter is only allowed when stream is enabled.', 'invalid_request_error', 'stream_options', null)];
  }
  if (!opts.models.includes(body.model)) {
    entry.violations.push('unknown-model');
    return [404, errorBody(`The model \`${body.model}\` does not exist or you do not have access to it.`,
      'invalid_request_error', null, 'model_not_found')];
  }
  return null;
}

async function streamSse(req, res, entry, b, makeChunk, finalUsageChunk, contents, usage) {
  const socket = req.socket;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-request-id': `req_fake_${opts.name}_${entry.seq}`,
    ...(b.headers || {}),
  });
  // Honours backpressure: a peer that stops reading stalls the stream here
  // (as a real provider's would) instead of piling data up in this process.
  const send = async (obj) => {
    if (res.destroyed) return false;
    if (!res.write(`data: ${JSON.stringify(obj)}\n\n`)) {
      await new Promise((r) => {
        const done = () => { res.off('drain', done); res.off('close', done); r(); };
        res.on('drain', done);
        res.on('close', done);
      });
    }
    return !res.destroyed;
  };
  if (b.streamFirstEventError) {
    await send(errorBody('The server had an error while processing your request (fake stream).', 'server_error', null, null));
    res.end();
    return;
  }
  if (b.hangAfterHeaders) { res.flushHeaders(); heldSockets.add(socket); return; }
  const first = makeChunk({ first: true });
  if (first && !(await send(first))) return;
  let sent = 0;
  for (const piece of contents) {
    if (b.chunkDelayMs) await sleep(b.chunkDelayMs);
    if (res.destroyed) return;
    if (!(await send(makeChunk({ piece })))) return;
    sent++;
    if (Number.isInteger(b.resetAfterChunks) && sent >= b.resetAfterChunks) {
      // Let the chunks leave before the reset so the peer has them.
      await sleep(50);
      rst(socket);
      return;
    }
  }
  for (const extra of (makeChunk.extra ? makeChunk.extra() : [])) {
    if (!(await send(extra))) return;
  }
  if (!(await send(makeChunk({ finish: b.finishReason || (b.toolCalls ? 'tool_calls' : 'stop') })))) return;
  if (req.body && req.body.stream_options && req.body.stream_options.include_usage === true) {
    if (!(await send(finalUsageChunk(usage)))) return;
  }
  if (!res.destroyed) res.end('data: [DONE]\n\n');
}

async function handleChat(req, res, entry, b) {
  const body = entry.body;
  const lastUser = [...body.messages].reverse().find((m) => m && m.role === 'user');
  const replyText = `echo: ${lastUser ? textOfContent(lastUser.content) : ''}`;
  const promptChars = body.messages.reduce((n, m) => n + textOfContent(m && m.content).length, 0);
  const calls = Array.isArray(b.toolCalls) ? b.toolCalls : null;
  const contents = calls && !b.withText ? [] : contentPieces(replyText, b);
  const usage = usageFor(promptChars, contents.length, b);
  const id = `chatcmpl-fake-${opts.name}-${entry.seq}`;
  const created = 1700000000 + entry.seq;
  const model = body.model;

  if (body.stream === true) {
    const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_fake' };
    const makeChunk = ({ first, piece, finish }) => {
      if (first) return { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], usage: null };
      if (finish) return { ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finish }], usage: null };
      return { ...base, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }], usage: null };
    };
    if (calls) {
      makeChunk.extra = () => calls.flatMap((c, index) => {
        const half = Math.floor(c.arguments.length / 2);
        const tc = (fn, head) => ({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, ...(head ? { id: `call_fake_${index}`, type: 'function' } : {}), function: fn }] }, logprobs: null, finish_reason: null }], usage: null });
        return [tc({ name: c.name, arguments: '' }, true), tc({ arguments: c.arguments.slice(0, half) }), tc({ arguments: c.arguments.slice(half) })];
      });
    }
    const usageChunk = (u) => ({ ...base, choices: [], usage: u });
    return streamSse(req, res, entry, b, makeChunk, usageChunk, contents, usage);
  }
  if (b.chunkDelayMs && b.chunks) await sleep(b.chunkDelayMs * b.chunks);
  const obj = {
    id, object: 'chat.completion', created, model, system_fingerprint: 'fp_fake',
    choices: [{
      index: 0,
      message: {
        role: 'assistant', content: calls && !b.withText ? null : contents.join(''), refusal: null,
        ...(calls ? { tool_calls: calls.map((c, i) => ({ id: `call_fake_${i}`, type: 'function', function: { name: c.name, arguments: c.arguments } })) } : {}),
      },
      logprobs: null,
      finish_reason: b.finishReason || (calls ? 'tool_calls' : 'stop'),
    }],
    usage,
  };
  return finishJson(req, res, entry, b, obj);
}

async function handleCompletions(req, res, entry, b) {
  const body = entry.body;
  const prompts = Array.isArray(body.prompt) ? body.prompt : [body.prompt];
  const first = typeof prompts[0] === 'string' ? prompts[0] : JSON.stringify(prompts[0]);
  const promptChars = prompts.reduce((n, p) => n + (typeof p === 'string' ? p.length : JSON.stringify(p).length), 0);
  const contents = contentPieces(`echo: ${first}`, b);
  const usage = usageFor(promptChars, contents.length, b);
  const id = `cmpl-fake-${opts.name}-${entry.seq}`;
  const created = 1700000000 + entry.seq;
  const model = body.model;
  if (body.stream === true) {
    const base = { id, object: 'text_completion', created, model };
    const makeChunk = ({ first: f, piece, finish }) => {
      if (f) return null;
      if (finish) return { ...base, choices: [{ text: '', index: 0, logprobs: null, finish_reason: finish }], usage: null };
      return { ...base, choices: [{ text: piece, index: 0, logprobs: null, finish_reason: null }], usage: null };
    };
    const usageChunk = (u) => ({ ...base, choices: [], usage: u });
    return streamSse(req, res, entry, b, makeChunk, usageChunk, contents, usage);
  }
  const obj = {
    id, object: 'text_completion', created, model,
    choices: [{ text: contents.join(''), index: 0, logprobs: null, finish_reason: 'stop' }],
    usage,
  };
  return finishJson(req, res, entry, b, obj);
}

function embeddingOf(s) {
  // 8 deterministic floats from the string.
  const v = [];
  for (let k = 0; k < 8; k++) {
    let h = 7 + k;
    for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i) * (k + 1)) % 1000003;
    v.push(Math.round(((h % 2000) / 1000 - 1) * 1e6) / 1e6);
  }
  return v;
}

const SEMANTIC_DIMS = 256;

// A bag of lower-cased words, each hashed (FNV-1a) into one of 256
// dimensions, normalised (see the header).
function semanticEmbeddingOf(s) {
  const v = new Array(SEMANTIC_DIMS).fill(0);
  for (const word of s.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []) {
    let h = 0x811c9dc5;
    for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 0x01000193) >>> 0;
    v[h % SEMANTIC_DIMS] += 1;
  }
  const norm = Math.sqrt(v.reduce((n, x) => n + x * x, 0));
  if (norm === 0) {
    v[0] = 1;
    return v;
  }
  return v.map((x) => x / norm);
}

async function handleEmbeddings(req, res, entry, b) {
  const body = entry.body;
  const inputs = Array.isArray(body.input) && (body.input.length === 0 || typeof body.input[0] !== 'number') ? body.input : [body.input];
  const strs = inputs.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
  const promptTokens = strs.reduce((n, s) => n + s.length, 0);
  const u = usageFor(promptTokens, 0, b);
  const obj = {
    object: 'list',
    model: body.model,
    data: strs.map((s, i) => ({
      object: 'embedding', index: i,
      embedding: opts.semanticEmbeddings || b.semanticEmbeddings ? semanticEmbeddingOf(s) : embeddingOf(s),
    })),
    usage: { prompt_tokens: u.prompt_tokens, total_tokens: u.prompt_tokens },
  };
  return finishJson(req, res, entry, b, obj);
}

function finishJson(req, res, entry, b, obj) {
  if (b.hangAfterHeaders) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    heldSockets.add(req.socket);
    return;
  }
  if (Number.isInteger(b.resetAfterChunks)) {
    const s = JSON.stringify(obj);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    res.write(s.slice(0, Math.floor(s.length / 2)));
    setTimeout(() => rst(req.socket), 50);
    return;
  }
  return sendJson(res, 200, obj, b.headers || {});
}

function modelObj(id) {
  return { id, object: 'model', created: 1700000000, owned_by: opts.name };
}

async function handleV1(req, res, entry) {
  const path = entry.path.split('?')[0];
  let kind = null;
  if (path === '/v1/chat/completions') kind = 'chat';
  else if (path === '/v1/completions') kind = 'completions';
  else if (path === '/v1/embeddings') kind = 'embeddings';
  else if (path === '/v1/models' || path.startsWith('/v1/models/')) kind = 'models';

  if (kind === null) {
    return sendJson(res, 404, errorBody(`Invalid URL (${req.method} ${path})`, 'invalid_request_error', null, null));
  }
  if (kind === 'models') {
    if (req.method !== 'GET') {
      return sendJson(res, 405, errorBody(`Invalid method for URL (${req.method} ${path})`, 'invalid_request_error', null, null));
    }
    const bad = validate(req, entry, kind);
    if (bad) return sendJson(res, bad[0], bad[1]);
    if (path === '/v1/models') return sendJson(res, 200, { object: 'list', data: opts.models.map(modelObj) });
    const id = decodeURIComponent(path.slice('/v1/models/'.length));
    if (!opts.models.includes(id)) {
      return sendJson(res, 404, errorBody(`The model '${id}' does not exist`, 'invalid_request_error', 'model', 'model_not_found'));
    }
    return sendJson(res, 200, modelObj(id));
  }
  if (req.method !== 'POST') {
    return sendJson(res, 405, errorBody(`Invalid method for URL (${req.method} ${path})`, 'invalid_request_error', null, null));
  }
  const bad = validate(req, entry, kind);
  if (bad) return sendJson(res, bad[0], bad[1]);

  const b = nextBehaviour() || {};
  entry.behaviour = b;
  if (b.delayMs) await sleep(b.delayMs);
  if (res.destroyed) return;
  if (b.reset) { rst(req.socket); return; }
  if (b.hang) { heldSockets.add(req.socket); return; }
  if (Number.isInteger(b.status) && b.status !== 200) {
    const extra = { ...(b.headers || {}) };
    if (b.retryAfter !== undefined) extra['retry-after'] = String(b.retryAfter);
    return sendJson(res, b.status, errorForStatus(b.status, b.message), extra);
  }
  if (b.garbage) {
    const s = 'this is <not> json {{{';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': s.length });
    return res.end(s);
  }
  if (b.errorIn200) {
    return sendJson(res, 200, errorBody(b.message || 'The server had an error while processing your request (fake errorIn200).', 'server_error', null, null));
  }
  if (b.contentType) {
    if (/html/i.test(b.contentType)) {
      const s = '<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>\n';
      res.writeHead(200, { 'content-type': b.contentType, 'content-length': s.length });
      return res.end(s);
    }
    b.headers = { ...(b.headers || {}), 'content-type': b.contentType };
  }
  if (kind === 'chat') return handleChat(req, res, entry, b);
  if (kind === 'completions') return handleCompletions(req, res, entry, b);
  return handleEmbeddings(req, res, entry, b);
}

// ---- the server ----

function readBody(req, limit = 64 * 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let n = 0;
    req.on('data', (d) => {
      n += d.length;
      if (n > limit) { reject(new Error('body too large')); req.destroy(); return; }
      parts.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

async function onRequest(req, res) {
  const url = req.url || '/';
  if (url.startsWith('/__')) return control(req, res, url);

  stats.requests++;
  const entry = {
    seq: ++seq,
    conn: req.socket.__connId,
    method: req.method,
    path: url,
    httpVersion: req.httpVersion,
    headers: req.headers,
    body: null,
    violations: [],
    behaviour: null,
    status: null,
    receivedAt: Date.now(),
    finishedAt: null,
    clientClosed: false,
    closedAt: null,
  };
  requests.push(entry);
  res.on('finish', () => { entry.finishedAt = Date.now(); });
  res.on('close', () => {
    if (!res.writableFinished) {
      entry.clientClosed = true;
      entry.closedAt = Date.now();
    }
  });
  const origWriteHead = res.writeHead;
  res.writeHead = function (status, ...rest) {
    entry.status = status;
    return origWriteHead.call(this, status, ...rest);
  };

  let raw;
  try {
    raw = await readBody(req);
  } catch {
    return;
  }
  if (raw.length > 0) {
    try {
      entry.body = JSON.parse(raw.toString('utf8'));
    } catch {
      entry.rawBody = raw.toString('utf8').slice(0, 4096);
    }
  }
  req.body = entry.body;
  try {
    await handleV1(req, res, entry);
  } catch (e) {
    process.stderr.write(`fake-upstream ${opts.name}: handler error: ${e && e.stack}\n`);
    if (!res.headersSent) sendJson(res, 500, errorBody(`fake internal error: ${e}`, 'server_error', null, null));
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
    try { c = JSON.parse(raw.toString('utf8') || '{}'); } catch {
      res.writeHead(400); return res.end('bad control json');
    }
    if (Array.isArray(c.queue)) queue = c.queue.slice();
    if (c.default !== undefined) defaultBehaviour = c.default || {};
    return reply({ ok: true, queue: queue.length });
  }
  if (path === '/__reset' && req.method === 'POST') {
    queue = [];
    defaultBehaviour = {};
    requests = [];
    seq = 0;
    stats.requests = 0;
    stats.connections = stats.openConnections;
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
const onConnection = (socket) => {
  socket.__connId = ++connCounter;
  stats.connections++;
  stats.openConnections++;
  allSockets.add(socket);
  socket.on('close', () => {
    stats.openConnections--;
    allSockets.delete(socket);
    heldSockets.delete(socket);
  });
};

let server;
if (opts.tlsCert || opts.tlsKey) {
  server = https.createServer({ cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) }, onRequest);
  server.on('secureConnection', onConnection);
  server.on('tlsClientError', () => {});
} else {
  server = http.createServer(onRequest);
  server.on('connection', onConnection);
}
server.keepAliveTimeout = 30000;
server.headersTimeout = 60000;
server.requestTimeout = 0;
server.on('clientError', (err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
});

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
