// fake-openai-chat: the OpenAI-compatible chat endpoint shared by
// fake-ollama and fake-ocf (strict validation, deterministic answers,
// streams), built on fake-common.
import { heldSockets, isObj, nextBehaviour, pieces, rst, sendJson, sleep, sseWriter } from './fake-common.mjs';

// ---- OpenAI-compatible chat (shared by fake-ollama and fake-ocf) ----

export function errorBody(message, type, param = null, code = null) {
  return { error: { message, type, param, code } };
}
export function internalError(res, e) { sendJson(res, 500, errorBody(`fake internal error: ${e}`, 'api_error')); }
export function textOf(c) {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.filter((p) => p && p.type === 'text').map((p) => p.text).join('');
  return '';
}

// Validates an OpenAI chat body; returns [status, errorBody] or null.
export function validateChat(req, entry, knownModel, unknownModelError) {
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

export async function answerChat(req, res, entry, idPrefix) {
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

