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

import { heldSockets, isObj, nextBehaviour, pieces, rst, sendJson, serve, sleep, sseWriter } from './fake-common.mjs';
import { answerChat, errorBody, internalError, textOf, validateChat } from './fake-openai-chat.mjs';

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

serve({ script: SCRIPT, opts, route, internalError });
