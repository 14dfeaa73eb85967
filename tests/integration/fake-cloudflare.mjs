#!/usr/bin/env node
// A fake Cloudflare Workers AI REST API for aiproxy's integration tests.
//
//   node fake-cloudflare.mjs --port 0 [--account-id ACC] [--api-token TOK]
//                            [--name N]
//
// Prints one JSON line {"port":N} on stdout once listening.
//
// It speaks the native run endpoint of shared/APIS.md section 5 STRICTLY:
//   POST /client/v4/accounts/{account_id}/ai/run/{model...}
//     Authorization: Bearer {api token} required (10000 "Authentication
//     error", 401, otherwise); the account must be --account-id (403);
//     content-type application/json; the model (slashes included, never
//     percent-encoded) must be one of the fake's models (5007 "No such model",
//     400). Body checks (5004 "Invalid data", 400): no `model` field (the model
//     is in the path), only the documented fields of the model's kind:
//       text      exactly one of prompt (string) / messages ([{role: system|
//                 user|assistant|tool, content: STRING, tool_call_id?, name?,
//                 tool_calls?}]), stream, max_tokens, temperature (0..5),
//                 top_p, top_k, seed, repetition_penalty, frequency_penalty,
//                 presence_penalty, tools, functions, raw, lora,
//                 response_format
//       embedding {text: string | string[] (non-empty)}, pooling mean|cls
//       image     {prompt (string, required), negative_prompt, width, height
//                 (256..2048), num_steps (<= 20), guidance, seed, strength}
//   Every answer is wrapped in {result, success, errors, messages}, except
//   streams (text/event-stream of `data: {"response":"..","p":".."}` then a
//   usage event `data: {"response":"","usage":{..}}`, then `data: [DONE]`) and
//   the image model (raw PNG bytes, Content-Type image/png).
//
// Models:
//   @cf/meta/llama-3.1-8b-instruct, @cf/meta/llama-3.2-1b-instruct  (text)
//   @cf/baai/bge-base-en-v1.5 (768 dims), @cf/baai/bge-small-en-v1.5 (384)
//   @cf/stabilityai/stable-diffusion-xl-base-1.0 (raw PNG),
//   @cf/black-forest-labs/flux-1-schnell ({"result":{"image": base64 PNG}})
//
// Deterministic content: text "echo: " + the last user message (or the
// prompt); usage prompt_tokens = characters of all message contents (or of
// the prompt), completion_tokens = pieces (one per word); tool call
// ({"name": tools[0] name, "arguments": {"q": text}}) when tools are given and
// the text contains "use tool". Embedding vector k of text s:
// data[k][i] = round(((hash(s) + i) % 1000) / 1000 - 0.5, 6).
//
// Control API as fake-upstream.mjs (POST /__control {queue, default},
// GET /__requests, POST /__reset, GET /__stats). Behaviours: delayMs,
// status (+message, code: a v4 error envelope with that HTTP status), hang,
// reset, resetAfterChunks, garbage, errorIn200 (200 with success:false, code
// 3040 "Capacity temporarily exceeded"), errorObject (200 {"error":{code,
// message}}), streamFirstEventError (first stream event is {"error": ...}),
// chunkDelayMs, chunks:M, noUsage (no usage in the result or the stream),
// usage {prompt_tokens, completion_tokens}, imageJson (answer the image as
// {"result":{"image"}} even for SDXL), headers.

import { heldSockets, isObj, nextBehaviour, pieces, rst, sendJson, serve, sleep, sseWriter } from './fake-common.mjs';

const SCRIPT = 'fake-cloudflare';
function parseArgs(argv) {
  const out = { port: 0, accountId: 'acc-test', apiToken: 'cf-token-test', name: 'cloudflare', host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--port': out.port = Number(next()); break;
      case '--host': out.host = next(); break;
      case '--account-id': out.accountId = next(); break;
      case '--api-token': out.apiToken = next(); break;
      case '--name': out.name = next(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  return out;
}
const opts = parseArgs(process.argv.slice(2));

// ---- Cloudflare specifics ----

const MODELS = {
  '@cf/meta/llama-3.1-8b-instruct': { kind: 'text' },
  '@cf/meta/llama-3.2-1b-instruct': { kind: 'text' },
  '@cf/baai/bge-base-en-v1.5': { kind: 'embedding', dim: 768 },
  '@cf/baai/bge-small-en-v1.5': { kind: 'embedding', dim: 384 },
  '@cf/stabilityai/stable-diffusion-xl-base-1.0': { kind: 'image', binary: true },
  '@cf/black-forest-labs/flux-1-schnell': { kind: 'image', binary: false },
};
// A valid 1x1 PNG.
const PNG_B64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

const envelope = (result) => ({ result, success: true, errors: [], messages: [] });
const failure = (code, message) => ({ result: null, success: false, errors: [{ code, message }], messages: [] });
function internalError(res, e) { sendJson(res, 500, failure(3000, `fake internal error: ${e}`)); }

const TEXT_KEYS = new Set(['prompt', 'messages', 'stream', 'max_tokens', 'temperature', 'top_p', 'top_k', 'seed',
  'repetition_penalty', 'frequency_penalty', 'presence_penalty', 'tools', 'functions', 'raw', 'lora', 'response_format']);
const IMAGE_KEYS = new Set(['prompt', 'negative_prompt', 'width', 'height', 'num_steps', 'guidance', 'seed', 'strength']);

function validateBody(m, b, v) {
  if (!isObj(b)) { v.push('body: not a JSON object'); return; }
  if ('model' in b) v.push('model: not an input of /ai/run (the model is in the path)');
  if (m.kind === 'text') {
    for (const k of Object.keys(b)) if (!TEXT_KEYS.has(k) && k !== 'model') v.push(`${k}: unknown input`);
    const hasP = b.prompt !== undefined;
    const hasM = b.messages !== undefined;
    if (hasP === hasM) v.push('exactly one of prompt / messages is required');
    if (hasP && typeof b.prompt !== 'string') v.push('prompt: string');
    if (hasM) {
      if (!Array.isArray(b.messages) || !b.messages.length) v.push('messages: non-empty array');
      else b.messages.forEach((x, i) => {
        if (!isObj(x)) { v.push(`messages.${i}: object`); return; }
        if (!['system', 'user', 'assistant', 'tool'].includes(x.role)) v.push(`messages.${i}.role: ${x.role}`);
        if (typeof x.content !== 'string') v.push(`messages.${i}.content: must be a string`);
        for (const k of Object.keys(x)) if (!['role', 'content', 'tool_call_id', 'name', 'tool_calls'].includes(k)) v.push(`messages.${i}.${k}: unknown`);
      });
    }
    if (b.stream !== undefined && typeof b.stream !== 'boolean') v.push('stream: bool');
    if (b.max_tokens !== undefined && !(Number.isInteger(b.max_tokens) && b.max_tokens >= 1)) v.push('max_tokens: integer >= 1');
    if (b.temperature !== undefined && !(typeof b.temperature === 'number' && b.temperature >= 0 && b.temperature <= 5)) v.push('temperature: 0..5');
  } else if (m.kind === 'embedding') {
    for (const k of Object.keys(b)) if (!['text', 'pooling'].includes(k) && k !== 'model') v.push(`${k}: unknown input`);
    const t = b.text;
    if (!(typeof t === 'string' && t) && !(Array.isArray(t) && t.length && t.every((s) => typeof s === 'string' && s))) v.push('text: string or non-empty string[]');
    if (b.pooling !== undefined && !['mean', 'cls'].includes(b.pooling)) v.push('pooling: mean|cls');
  } else {
    for (const k of Object.keys(b)) if (!IMAGE_KEYS.has(k) && k !== 'model') v.push(`${k}: unknown input`);
    if (typeof b.prompt !== 'string' || !b.prompt) v.push('prompt: required string');
    for (const k of ['width', 'height']) {
      if (b[k] !== undefined && !(Number.isInteger(b[k]) && b[k] >= 256 && b[k] <= 2048)) v.push(`${k}: integer 256..2048`);
    }
    if (b.num_steps !== undefined && !(Number.isInteger(b.num_steps) && b.num_steps <= 20)) v.push('num_steps: <= 20');
  }
}

function hashStr(s) {
  let h = 17;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) % 1000003;
  return h;
}
const embeddingOf = (s, dim) => Array.from({ length: dim }, (_, i) => Math.round((((hashStr(s) + i) % 1000) / 1000 - 0.5) * 1e6) / 1e6);

function textPlan(body, b) {
  let text;
  let promptChars;
  if (typeof body.prompt === 'string') {
    text = body.prompt;
    promptChars = body.prompt.length;
  } else {
    const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
    text = lastUser ? lastUser.content : '';
    promptChars = body.messages.reduce((n, m) => n + m.content.length, 0);
  }
  let tool = null;
  if (Array.isArray(body.tools) && body.tools.length && /use tool/.test(text)) {
    const t0 = body.tools[0];
    tool = { name: (t0.function && t0.function.name) || t0.name, arguments: { q: text } };
  }
  let ps = Number.isInteger(b.chunks) && b.chunks > 0 ? Array.from({ length: b.chunks }, (_, i) => `c${i} `) : pieces(`echo: ${text}`);
  if (Number.isInteger(body.max_tokens) && ps.length > body.max_tokens) ps = ps.slice(0, body.max_tokens);
  const u = b.usage || {};
  const p = u.prompt_tokens ?? promptChars;
  const c = u.completion_tokens ?? ps.length;
  return { pieces: ps, tool, usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c } };
}

async function streamText(req, res, entry, b, plan) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...(b.headers || {}) });
  const send = sseWriter(res);
  if (b.streamFirstEventError) {
    await send({ error: { code: 3040, message: 'Capacity temporarily exceeded (fake stream)' } });
    res.end();
    return;
  }
  let sent = 0;
  for (const piece of plan.pieces) {
    if (b.chunkDelayMs) await sleep(b.chunkDelayMs);
    if (!(await send({ response: piece, p: 'abcdefgh'.slice(0, 1 + (sent % 8)) }))) return;
    sent++;
    if (Number.isInteger(b.resetAfterChunks) && sent >= b.resetAfterChunks) { await sleep(50); rst(req.socket); return; }
  }
  if (plan.tool && !(await send({ response: '', tool_calls: [plan.tool] }))) return;
  if (!b.noUsage && !(await send({ response: '', usage: plan.usage }))) return;
  if (!res.destroyed) res.end('data: [DONE]\n\n');
}

async function route(req, res, entry, path) {
  const m = /^\/client\/v4\/accounts\/([^/]+)\/ai\/run\/(.+)$/.exec(path);
  if (!m) {
    entry.violations.push(`path ${path}`);
    return sendJson(res, 404, failure(7000, `No route for that URI (${req.method} ${path})`));
  }
  if (req.method !== 'POST') {
    entry.violations.push(`method ${req.method}`);
    return sendJson(res, 405, failure(7001, 'Method not allowed for this route'));
  }
  const v = entry.violations;
  if (req.headers.authorization !== `Bearer ${opts.apiToken}`) {
    v.push('authorization');
    return sendJson(res, 401, failure(10000, 'Authentication error'));
  }
  if (m[1] !== opts.accountId) {
    v.push(`account ${m[1]}`);
    return sendJson(res, 403, failure(10000, 'Authentication error (account)'));
  }
  entry.account = m[1];
  entry.model = m[2];
  if (/%/.test(m[2])) v.push('model path is percent-encoded');
  const model = MODELS[m[2]];
  if (!model) {
    v.push('unknown-model');
    return sendJson(res, 400, failure(5007, `No such model ${m[2]} or task`));
  }
  if (!/^application\/json\b/i.test(req.headers['content-type'] || '')) v.push('content-type');
  validateBody(model, entry.body, v);
  if (v.length) return sendJson(res, 400, failure(5004, `Invalid data: ${v.join('; ')}`));

  const b = nextBehaviour();
  entry.behaviour = b;
  if (b.delayMs) await sleep(b.delayMs);
  if (res.destroyed) return;
  if (b.reset) { rst(req.socket); return; }
  if (b.hang) { heldSockets.add(req.socket); return; }
  if (Number.isInteger(b.status) && b.status !== 200) {
    const extra = { ...(b.headers || {}) };
    if (b.retryAfter !== undefined) extra['retry-after'] = String(b.retryAfter);
    const code = b.code ?? (b.status === 429 ? 3040 : b.status === 408 ? 3007 : b.status >= 500 ? 3043 : 5004);
    return sendJson(res, b.status, failure(code, b.message || `fake error ${b.status}`), extra);
  }
  if (b.garbage) {
    const s = 'this is <not> json {{{';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': s.length });
    return res.end(s);
  }
  if (b.errorIn200) return sendJson(res, 200, failure(3040, b.message || 'Capacity temporarily exceeded, please try again.'));
  if (b.errorObject) return sendJson(res, 200, { error: { code: 3040, message: b.message || 'Capacity temporarily exceeded (error object)' } });

  const body = entry.body;
  if (model.kind === 'embedding') {
    const texts = Array.isArray(body.text) ? body.text : [body.text];
    return sendJson(res, 200, envelope({ shape: [texts.length, model.dim], data: texts.map((t) => embeddingOf(t, model.dim)), pooling: body.pooling || 'mean' }));
  }
  if (model.kind === 'image') {
    if (model.binary && !b.imageJson) {
      const png = Buffer.from(PNG_B64, 'base64');
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length });
      return res.end(png);
    }
    return sendJson(res, 200, envelope({ image: PNG_B64 }));
  }
  const plan = textPlan(body, b);
  if (body.stream === true) return streamText(req, res, entry, b, plan);
  if (b.chunkDelayMs) await sleep(b.chunkDelayMs * plan.pieces.length);
  const result = { response: plan.pieces.join('') };
  if (plan.tool) result.tool_calls = [plan.tool];
  if (!b.noUsage) result.usage = plan.usage;
  if (Number.isInteger(b.resetAfterChunks)) {
    const s = JSON.stringify(envelope(result));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    res.write(s.slice(0, Math.floor(s.length / 2)));
    setTimeout(() => rst(req.socket), 50);
    return;
  }
  return sendJson(res, 200, envelope(result), b.headers || {});
}

serve({ script: SCRIPT, opts, route, internalError });
