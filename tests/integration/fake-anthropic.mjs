#!/usr/bin/env node
// A fake Anthropic Messages API for aiproxy's integration tests.
//
//   node fake-anthropic.mjs --port 0 [--api-key KEY] [--models a,b] [--name N]
//
// Prints one JSON line {"port":N} on stdout once listening.
//
// It speaks the Messages API of shared/APIS.md section 4 STRICTLY:
//   POST /v1/messages   requires x-api-key (== --api-key when set),
//                       anthropic-version (a date), content-type
//                       application/json, a JSON object body with model (one
//                       of --models), max_tokens (int >= 1), messages (non-
//                       empty; roles user/assistant only, alternating, the
//                       first a user turn; tool_use only in assistant turns,
//                       tool_result only in user turns, first in the turn,
//                       answering the tool_use ids of the turn before), and
//                       only the documented top-level fields (no
//                       stream_options, n, seed, ...). system: string or text
//                       blocks; temperature 0..1; stop_sequences string[];
//                       tools [{name, description?, input_schema: object}];
//                       tool_choice {type: auto|any|tool|none}; metadata
//                       {user_id}. Images: base64 (media_type image/jpeg|png|
//                       gif|webp, base64 data) or url sources. cache_control
//                       (on system, text, image, tool_result blocks and
//                       tools): {type: "ephemeral", ttl?: "5m"|"1h"}.
//   POST /v1/messages/count_tokens   the same checks and body, except that
//                       max_tokens and stream are refused (Extra inputs);
//                       answers {"input_tokens": 1000 + the characters of
//                       the JSON body} (deterministic, far from any estimate).
//                       Behaviours status/reset/hang/garbage apply.
// anthropic-version must be a version date (2023-06-01; SDKs send newer ones,
// which a gateway passes through); the anthropic-beta and anthropic-version
// each request carried are in its recorded headers.
// A violation gets Anthropic's error shape ({"type":"error","error":{type,
// message},"request_id"}) with 400 (401 for x-api-key, 404 for an unknown
// model) and is recorded in the entry's `violations`.
//
// Replies are deterministic:
//   text:      "echo: " + the text of the last user turn; when that turn holds
//              tool_result blocks: "tool said: " + their contents joined by
//              " | " (and the turn's text, if any, after " + ").
//   tool use:  when the request has tools and the last user text contains
//              "use tool": a text block "Let me look." then a tool_use block
//              {id: "toolu_fake_<seq>", name: tools[0].name (or the forced
//              tool_choice name), input: {"q": <last user text>}},
//              stop_reason tool_use.
//   stop:      stop_sequences: the text is cut before the first occurrence
//              of one (stop_reason stop_sequence, stop_sequence set);
//              max_tokens < number of pieces: cut (stop_reason max_tokens).
//   usage:     input_tokens = characters of all text (system, text blocks,
//              tool_result contents), output_tokens = number of pieces (one
//              per word); cache_creation_input_tokens/cache_read_input_tokens
//              0. Behaviour {"usage":{...}} overrides any of the four.
//   id:        msg_fake_<name>_<seq>
//
// Streams carry the whole event sequence: message_start, ping,
// content_block_start/delta.../stop per block (text_delta, input_json_delta in
// two pieces), message_delta (stop_reason, cumulative usage), message_stop.
//
// Control API as fake-upstream.mjs: POST /__control {queue, default},
// GET /__requests, POST /__reset, GET /__stats. Behaviours:
//   delayMs, status (+message, retryAfter; 529 = overloaded_error), hang,
//   reset, resetAfterChunks, garbage, errorIn200 (a 200 {"type":"error"}
//   body), streamFirstEventError (first event after the headers is an error
//   event), streamErrorAfterChunks:N (error event after N text deltas),
//   chunkDelayMs, chunks:M (M pieces "c0 ".."cM-1 "), usage, headers.

import { currentSeq, heldSockets, nextBehaviour, rst, serve, sleep } from './fake-common.mjs';

// Records a violation unless `o.cache_control` is absent or well formed.
function checkCacheControl(o, at, v) {
  if (!o || o.cache_control === undefined) return;
  const cc = o.cache_control;
  if (!cc || typeof cc !== 'object' || cc.type !== 'ephemeral' ||
      Object.keys(cc).some((k) => !['type', 'ttl'].includes(k)) ||
      (cc.ttl !== undefined && !['5m', '1h'].includes(cc.ttl))) v.push(`${at}.cache_control: {type: "ephemeral", ttl?}`);
}

function parseArgs(argv) {
  const out = { port: 0, apiKey: null, models: null, name: 'anthropic', host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--port': out.port = Number(next()); break;
      case '--host': out.host = next(); break;
      case '--api-key': out.apiKey = next(); break;
      case '--models': out.models = next().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--name': out.name = next(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!out.models) out.models = ['claude-fake-1', 'claude-fake-2'];
  return out;
}
const opts = parseArgs(process.argv.slice(2));

const SCRIPT = 'fake-anthropic';

function sendJson(res, status, obj, extra = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': body.length,
    'request-id': `req_fake_${opts.name}_${currentSeq()}`,
    ...extra,
  });
  res.end(body);
}

const ERROR_TYPES = {
  400: 'invalid_request_error', 401: 'authentication_error', 402: 'billing_error', 403: 'permission_error',
  404: 'not_found_error', 409: 'conflict_error', 413: 'request_too_large', 429: 'rate_limit_error',
  500: 'api_error', 529: 'overloaded_error',
};
function errorType(status) {
  return ERROR_TYPES[status] || (status >= 500 ? 'api_error' : 'invalid_request_error');
}
function anthropicError(type, message) {
  return { type: 'error', error: { type, message }, request_id: `req_fake_${opts.name}_${currentSeq()}` };
}

// ---- validation ----

const TOP_KEYS = new Set(['model', 'max_tokens', 'messages', 'system', 'stop_sequences', 'stream', 'temperature',
  'top_p', 'top_k', 'tools', 'tool_choice', 'metadata', 'thinking', 'service_tier', 'context_management']);
const MEDIA = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);
const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);

function validateBlocks(role, content, i, prevToolIds, v) {
  if (typeof content === 'string') {
    if (prevToolIds.length) v.push(`messages.${i}: tool_use ids ${prevToolIds.join(',')} have no tool_result in the next user turn`);
    return [];
  }
  if (!Array.isArray(content) || content.length === 0) {
    v.push(`messages.${i}.content: must be a string or a non-empty array of blocks`);
    return [];
  }
  const toolIds = [];
  const answered = [];
  let seenNonResult = false;
  content.forEach((b, j) => {
    const at = `messages.${i}.content.${j}`;
    if (!isObj(b) || typeof b.type !== 'string') { v.push(`${at}: not a block`); return; }
    checkCacheControl(b, at, v);
    switch (b.type) {
      case 'text':
        if (typeof b.text !== 'string') v.push(`${at}.text: must be a string`);
        for (const k of Object.keys(b)) if (!['type', 'text', 'cache_control', 'citations'].includes(k)) v.push(`${at}.${k}: extra field`);
        seenNonResult = true;
        break;
      case 'image': {
        if (role !== 'user') v.push(`${at}: image blocks only in user turns`);
        const s = b.source;
        if (!isObj(s)) { v.push(`${at}.source: required`); break; }
        if (s.type === 'base64') {
          if (!MEDIA.has(s.media_type)) v.push(`${at}.source.media_type: ${s.media_type} not one of image/jpeg|png|gif|webp`);
          if (typeof s.data !== 'string' || !/^[A-Za-z0-9+/]+=*$/.test(s.data)) v.push(`${at}.source.data: not base64`);
          for (const k of Object.keys(s)) if (!['type', 'media_type', 'data'].includes(k)) v.push(`${at}.source.${k}: extra field`);
        } else if (s.type === 'url') {
          if (typeof s.url !== 'string' || !/^https?:\/\//.test(s.url)) v.push(`${at}.source.url: must be an http(s) URL`);
          for (const k of Object.keys(s)) if (!['type', 'url'].includes(k)) v.push(`${at}.source.${k}: extra field`);
        } else v.push(`${at}.source.type: ${s.type} unknown`);
        seenNonResult = true;
        break;
      }
      case 'tool_use':
        if (role !== 'assistant') v.push(`${at}: tool_use only in assistant turns`);
        if (typeof b.id !== 'string' || !b.id) v.push(`${at}.id: required`);
        if (typeof b.name !== 'string' || !b.name) v.push(`${at}.name: required`);
        if (!isObj(b.input)) v.push(`${at}.input: must be an object`);
        toolIds.push(b.id);
        break;
      case 'tool_result':
        if (role !== 'user') v.push(`${at}: tool_result only in user turns`);
        if (seenNonResult) v.push(`${at}: tool_result blocks must come first in the user turn`);
        if (typeof b.tool_use_id !== 'string') v.push(`${at}.tool_use_id: required`);
        else if (!prevToolIds.includes(b.tool_use_id)) v.push(`${at}.tool_use_id: ${b.tool_use_id} answers no tool_use of the previous turn`);
        if (b.content !== undefined && typeof b.content !== 'string' &&
            !(Array.isArray(b.content) && b.content.every((c) => isObj(c) && ['text', 'image'].includes(c.type)))) {
          v.push(`${at}.content: string or text/image blocks`);
        }
        if (b.is_error !== undefined && typeof b.is_error !== 'boolean') v.push(`${at}.is_error: bool`);
        answered.push(b.tool_use_id);
        break;
      case 'thinking':
      case 'redacted_thinking':
        if (role !== 'assistant') v.push(`${at}: thinking only in assistant turns`);
        break;
      default:
        v.push(`${at}.type: ${b.type} unknown`);
    }
  });
  if (role === 'user') {
    const missing = prevToolIds.filter((id) => !answered.includes(id));
    if (missing.length) v.push(`messages.${i}: tool_use ids ${missing.join(',')} have no tool_result in the next user turn`);
  }
  return toolIds;
}

// Returns [status, errorType, message] or null; fills entry.violations.
function validate(req, entry, countTokens = false) {
  const v = entry.violations;
  if (!req.headers['x-api-key'] || (opts.apiKey && req.headers['x-api-key'] !== opts.apiKey)) {
    v.push('x-api-key');
    return [401, 'authentication_error', 'invalid x-api-key'];
  }
  if (!/^20\d\d-\d\d-\d\d$/.test(req.headers['anthropic-version'] || '')) {
    v.push('anthropic-version');
    return [400, 'invalid_request_error', `anthropic-version: "${req.headers['anthropic-version'] ?? ''}" is not a valid version (a date such as 2023-06-01 expected)`];
  }
  if (req.headers.authorization) v.push('authorization header sent to Anthropic');
  if (!/^application\/json\b/i.test(req.headers['content-type'] || '')) {
    v.push('content-type');
    return [400, 'invalid_request_error', 'content-type must be application/json'];
  }
  const b = entry.body;
  if (!isObj(b)) { v.push('json'); return [400, 'invalid_request_error', 'body: not a JSON object']; }
  for (const k of Object.keys(b)) if (!TOP_KEYS.has(k)) v.push(`${k}: Extra inputs are not permitted`);
  if (typeof b.model !== 'string' || !b.model) v.push('model: Field required');
  if (countTokens) {
    if (b.max_tokens !== undefined) v.push('max_tokens: Extra inputs are not permitted');
    if (b.stream !== undefined) v.push('stream: Extra inputs are not permitted');
  } else if (!Number.isInteger(b.max_tokens) || b.max_tokens < 1) v.push('max_tokens: Field required (integer >= 1)');
  if (b.system !== undefined && typeof b.system !== 'string' &&
      !(Array.isArray(b.system) && b.system.every((s) => isObj(s) && s.type === 'text' && typeof s.text === 'string'))) {
    v.push('system: string or text blocks');
  }
  if (Array.isArray(b.system)) b.system.forEach((s, i) => {
    checkCacheControl(s, `system.${i}`, v);
    for (const k of Object.keys(s)) if (!['type', 'text', 'cache_control', 'citations'].includes(k)) v.push(`system.${i}.${k}: extra field`);
  });
  if (b.stream !== undefined && typeof b.stream !== 'boolean') v.push('stream: bool');
  if (b.temperature !== undefined && !(typeof b.temperature === 'number' && b.temperature >= 0 && b.temperature <= 1)) v.push('temperature: 0..1');
  if (b.top_p !== undefined && !(typeof b.top_p === 'number' && b.top_p >= 0 && b.top_p <= 1)) v.push('top_p: 0..1');
  if (b.stop_sequences !== undefined && !(Array.isArray(b.stop_sequences) && b.stop_sequences.every((s) => typeof s === 'string' && s.length))) v.push('stop_sequences: string[]');
  if (b.metadata !== undefined && !(isObj(b.metadata) && Object.keys(b.metadata).every((k) => k === 'user_id'))) v.push('metadata: only user_id');
  if (b.tools !== undefined) {
    if (!Array.isArray(b.tools)) v.push('tools: array');
    else b.tools.forEach((t, i) => {
      if (!isObj(t) || typeof t.name !== 'string' || !/^[a-zA-Z0-9_-]{1,64}$/.test(t.name)) v.push(`tools.${i}.name`);
      if (!isObj(t.input_schema) || t.input_schema.type !== 'object') v.push(`tools.${i}.input_schema: an object schema`);
      for (const k of Object.keys(t || {})) if (!['name', 'description', 'input_schema', 'cache_control', 'type'].includes(k)) v.push(`tools.${i}.${k}: extra field`);
      checkCacheControl(t, `tools.${i}`, v);
    });
  }
  if (b.tool_choice !== undefined) {
    const tc = b.tool_choice;
    if (!isObj(tc) || !['auto', 'any', 'tool', 'none'].includes(tc.type)) v.push('tool_choice.type');
    else if (tc.type === 'tool' && typeof tc.name !== 'string') v.push('tool_choice.name');
  }
  if (!Array.isArray(b.messages) || b.messages.length === 0) v.push('messages: Field required (non-empty)');
  else {
    let prevRole = null;
    let prevToolIds = [];
    b.messages.forEach((m, i) => {
      if (!isObj(m)) { v.push(`messages.${i}: object`); return; }
      for (const k of Object.keys(m)) if (!['role', 'content'].includes(k)) v.push(`messages.${i}.${k}: extra field`);
      if (m.role === 'system') v.push(`messages.${i}.role: system is not a valid role (use the top-level system)`);
      else if (m.role !== 'user' && m.role !== 'assistant') v.push(`messages.${i}.role: ${m.role} invalid`);
      if (i === 0 && m.role !== 'user') v.push('messages.0: the first message must use the user role');
      if (prevRole !== null && m.role === prevRole) v.push(`messages.${i}: roles must alternate between user and assistant`);
      const ids = validateBlocks(m.role, m.content, i, m.role === 'user' ? prevToolIds : [], v);
      prevToolIds = m.role === 'assistant' ? ids : [];
      prevRole = m.role;
    });
  }
  if (v.length) return [400, 'invalid_request_error', v.join('; ')];
  if (!opts.models.includes(b.model)) {
    v.push('unknown-model');
    return [404, 'not_found_error', `model: ${b.model}`];
  }
  return null;
}

// ---- the reply ----

const blocksOf = (c) => (typeof c === 'string' ? [{ type: 'text', text: c }] : Array.isArray(c) ? c : []);
function resultText(c) {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.filter((x) => x.type === 'text').map((x) => x.text).join('');
  return '';
}
function pieces(text) {
  const p = text.match(/\S+\s*/g);
  return p && p.length ? p : [text];
}

function plan(body, b) {
  const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
  const blocks = blocksOf(lastUser && lastUser.content);
  const userText = blocks.filter((x) => x.type === 'text').map((x) => x.text).join('');
  const results = blocks.filter((x) => x.type === 'tool_result');
  let inputChars = typeof body.system === 'string' ? body.system.length
    : Array.isArray(body.system) ? body.system.reduce((n, s) => n + s.text.length, 0) : 0;
  for (const m of body.messages) {
    for (const x of blocksOf(m.content)) {
      if (x.type === 'text') inputChars += x.text.length;
      if (x.type === 'tool_result') inputChars += resultText(x.content).length;
    }
  }
  let text;
  let tool = null;
  if (results.length) {
    text = `tool said: ${results.map((r) => (r.is_error ? 'ERR ' : '') + resultText(r.content)).join(' | ')}${userText ? ` + ${userText}` : ''}`;
  } else if (Array.isArray(body.tools) && body.tools.length && /use tool/.test(userText) &&
             !(body.tool_choice && body.tool_choice.type === 'none')) {
    const name = body.tool_choice && body.tool_choice.type === 'tool' ? body.tool_choice.name : body.tools[0].name;
    text = 'Let me look.';
    tool = { type: 'tool_use', id: `toolu_fake_${currentSeq()}`, name, input: { q: userText } };
  } else {
    text = `echo: ${userText}`;
  }
  let ps = Number.isInteger(b.chunks) && b.chunks > 0 ? Array.from({ length: b.chunks }, (_, i) => `c${i} `) : pieces(text);
  let stopReason = tool ? 'tool_use' : 'end_turn';
  let stopSequence = null;
  if (!tool && Array.isArray(body.stop_sequences)) {
    const full = ps.join('');
    let cut = -1;
    for (const s of body.stop_sequences) {
      const k = full.indexOf(s);
      if (k >= 0 && (cut < 0 || k < cut)) { cut = k; stopSequence = s; }
    }
    if (cut >= 0) { ps = pieces(full.slice(0, cut)).filter((x) => x.length); stopReason = 'stop_sequence'; }
  }
  if (!tool && ps.length > body.max_tokens) { ps = ps.slice(0, body.max_tokens); stopReason = 'max_tokens'; stopSequence = null; }
  const u = b.usage || {};
  const usage = {
    input_tokens: u.input_tokens ?? inputChars,
    cache_creation_input_tokens: u.cache_creation_input_tokens ?? 0,
    cache_read_input_tokens: u.cache_read_input_tokens ?? 0,
    output_tokens: u.output_tokens ?? (ps.length + (tool ? 5 : 0)),
  };
  return { pieces: ps, tool, stopReason, stopSequence, usage };
}

async function streamMessage(req, res, entry, b, p) {
  const socket = req.socket;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'request-id': `req_fake_${opts.name}_${entry.seq}`,
    ...(b.headers || {}),
  });
  const send = async (name, obj) => {
    if (res.destroyed) return false;
    entry.events.push(name);
    if (!res.write(`event: ${name}\ndata: ${JSON.stringify(obj)}\n\n`)) {
      await new Promise((r) => {
        const done = () => { res.off('drain', done); res.off('close', done); r(); };
        res.on('drain', done); res.on('close', done);
      });
    }
    return !res.destroyed;
  };
  const errEvent = () => send('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded (fake stream)' } });
  if (b.streamFirstEventError) { await errEvent(); res.end(); return; }
  const body = entry.body;
  const id = `msg_fake_${opts.name}_${entry.seq}`;
  if (!(await send('message_start', {
    type: 'message_start',
    message: {
      id, type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, stop_sequence: null,
      usage: { input_tokens: p.usage.input_tokens, cache_creation_input_tokens: p.usage.cache_creation_input_tokens, cache_read_input_tokens: p.usage.cache_read_input_tokens, output_tokens: 1 },
    },
  }))) return;
  if (!(await send('ping', { type: 'ping' }))) return;
  let idx = 0;
  if (p.pieces.length && p.pieces.join('') !== '') {
    if (!(await send('content_block_start', { type: 'content_block_start', index: idx, content_block: { type: 'text', text: '' } }))) return;
    let sent = 0;
    for (const piece of p.pieces) {
      if (b.chunkDelayMs) await sleep(b.chunkDelayMs);
      if (!(await send('content_block_delta', { type: 'content_block_delta', index: idx, delta: { type: 'text_delta', text: piece } }))) return;
      sent++;
      if (Number.isInteger(b.resetAfterChunks) && sent >= b.resetAfterChunks) { await sleep(50); rst(socket); return; }
      if (Number.isInteger(b.streamErrorAfterChunks) && sent >= b.streamErrorAfterChunks) { await errEvent(); res.end(); return; }
    }
    if (!(await send('content_block_stop', { type: 'content_block_stop', index: idx }))) return;
    idx++;
  }
  if (p.tool) {
    const t = p.tool;
    if (!(await send('content_block_start', { type: 'content_block_start', index: idx, content_block: { type: 'tool_use', id: t.id, name: t.name, input: {} } }))) return;
    const js = JSON.stringify(t.input);
    const half = Math.floor(js.length / 2);
    for (const part of [js.slice(0, half), js.slice(half)]) {
      if (!(await send('content_block_delta', { type: 'content_block_delta', index: idx, delta: { type: 'input_json_delta', partial_json: part } }))) return;
    }
    if (!(await send('content_block_stop', { type: 'content_block_stop', index: idx }))) return;
  }
  if (!(await send('ping', { type: 'ping' }))) return;
  if (!(await send('message_delta', {
    type: 'message_delta',
    delta: { stop_reason: p.stopReason, stop_sequence: p.stopSequence },
    usage: { output_tokens: p.usage.output_tokens },
  }))) return;
  if (!(await send('message_stop', { type: 'message_stop' }))) return;
  res.end();
}

async function handleMessages(req, res, entry) {
  const bad = validate(req, entry);
  if (bad) return sendJson(res, bad[0], anthropicError(bad[1], bad[2]));
  const b = nextBehaviour();
  entry.behaviour = b;
  if (b.delayMs) await sleep(b.delayMs);
  if (res.destroyed) return;
  if (b.reset) { rst(req.socket); return; }
  if (b.hang) { heldSockets.add(req.socket); return; }
  if (Number.isInteger(b.status) && b.status !== 200) {
    const extra = { ...(b.headers || {}) };
    if (b.retryAfter !== undefined) extra['retry-after'] = String(b.retryAfter);
    const msg = b.message || (b.status === 529 ? 'Overloaded' : `fake error ${b.status}`);
    return sendJson(res, b.status, anthropicError(errorType(b.status), msg), extra);
  }
  if (b.garbage) {
    const s = 'this is <not> json {{{';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': s.length });
    return res.end(s);
  }
  if (b.errorIn200) return sendJson(res, 200, anthropicError('overloaded_error', b.message || 'Overloaded (fake errorIn200)'));
  const p = plan(entry.body, b);
  if (entry.body.stream === true) return streamMessage(req, res, entry, b, p);
  const content = [];
  const text = p.pieces.join('');
  if (text !== '') content.push({ type: 'text', text });
  if (p.tool) content.push(p.tool);
  const msg = {
    id: `msg_fake_${opts.name}_${entry.seq}`, type: 'message', role: 'assistant', model: entry.body.model,
    content, stop_reason: p.stopReason, stop_sequence: p.stopSequence, usage: p.usage,
  };
  if (Number.isInteger(b.resetAfterChunks)) {
    const s = JSON.stringify(msg);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    res.write(s.slice(0, Math.floor(s.length / 2)));
    setTimeout(() => rst(req.socket), 50);
    return;
  }
  if (b.chunkDelayMs) await sleep(b.chunkDelayMs * p.pieces.length);
  return sendJson(res, 200, msg, b.headers || {});
}

async function handleCountTokens(req, res, entry) {
  const bad = validate(req, entry, true);
  if (bad) return sendJson(res, bad[0], anthropicError(bad[1], bad[2]));
  const b = nextBehaviour();
  entry.behaviour = b;
  if (b.delayMs) await sleep(b.delayMs);
  if (res.destroyed) return;
  if (b.reset) { rst(req.socket); return; }
  if (b.hang) { heldSockets.add(req.socket); return; }
  if (Number.isInteger(b.status) && b.status !== 200) {
    return sendJson(res, b.status, anthropicError(errorType(b.status), b.message || `fake error ${b.status}`));
  }
  if (b.garbage) {
    const s = 'this is <not> json {{{';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': s.length });
    return res.end(s);
  }
  return sendJson(res, 200, { input_tokens: 1000 + JSON.stringify(entry.body).length });
}

// ---- the server ----

async function route(req, res, entry, path) {
  entry.events = [];
  if (path === '/v1/messages/count_tokens' && req.method === 'POST') return handleCountTokens(req, res, entry);
  if (path !== '/v1/messages') {
    entry.violations.push(`path ${path}`);
    return sendJson(res, 404, anthropicError('not_found_error', `Not found: ${req.method} ${path}`));
  }
  if (req.method !== 'POST') {
    entry.violations.push(`method ${req.method}`);
    return sendJson(res, 405, anthropicError('invalid_request_error', `Method ${req.method} not allowed`));
  }
  return handleMessages(req, res, entry);
}

const internalError = (res, e) => sendJson(res, 500, anthropicError('api_error', `fake internal error: ${e}`));

serve({ script: SCRIPT, opts, route, internalError });
