#!/usr/bin/env node
// A fake OCF (Open Compute Framework) head node for aiproxy's integration
// tests (the `ocf` provider).
//
//   node fake-ocf.mjs --port 0 [--name N]
//
// Prints one JSON line {"port":N} on stdout once listening.
//
// What it serves (shared/APIS.md section 8):
//   GET  /v1/health            {"status":"ok"}
//   GET  /v1/dnt/table         the CRDT node table: an object keyed by "/"+peer
//                              id. QmPeerA and QmPeerB are connected and serve
//                              llm with identity group model=Qwen/Qwen3-0.6B
//                              (QmPeerB also model=meta-llama/Llama-3.2-1B via
//                              a second llm service); QmPeerC is NOT connected
//                              and serves model=deepseek/Disconnected-7B; QmPeerD
//                              is connected but serves only a non-llm service
//                              (model=resnet50). POST /__control {"table": {...}}
//                              replaces the table ({"table": null} restores it).
//   GET  /v1/dnt/peers         the connected peers' ids
//   POST /v1/service/llm/v1/chat/completions
//                              OpenAI format (streaming and not): the
//                              dispatcher picks (round robin here, at random
//                              in OCF) a connected peer whose llm service has
//                              model=<body.model>; none -> 404
//                              {"error":"no provider found for model ..."}
//                              style OpenAI error. The entry records `peer`.
// Replies as fake-ollama.mjs: "echo: " + last user text, usage from
// characters / pieces.
//
// Control API as fake-upstream.mjs (POST /__control {queue, default, table},
// GET /__requests, POST /__reset, GET /__stats); GET requests never consume
// behaviours. Behaviours: delayMs, status, hang, reset, resetAfterChunks,
// garbage, errorIn200, streamFirstEventError, chunkDelayMs, chunks, usage,
// headers.

import { heldSockets, isObj, nextBehaviour, pieces, rst, sendJson, serve, sleep, sseWriter } from './fake-common.mjs';
import { answerChat, errorBody, internalError, textOf, validateChat } from './fake-openai-chat.mjs';

const SCRIPT = 'fake-ocf';
function parseArgs(argv) {
  const out = { port: 0, name: 'ocf', host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--port': out.port = Number(next()); break;
      case '--host': out.host = next(); break;
      case '--name': out.name = next(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  return out;
}
const opts = parseArgs(process.argv.slice(2));

// ---- the node table and the dispatcher ----

const noHw = { gpus: null, host_memory: 0, host_memory_bandwidth: 0, host_memory_used: 0 };
function peer(id, connected, services, extra = {}) {
  return {
    id, latency: 0, privileged: false, owner: '', current_offering: [], role: [], status: '', available_offering: [],
    last_seen: 1731000000, version: 'v0.0.6', public_address: '', connected, load: [],
    hardware: { gpus: [{ name: 'H100', total_memory: 81559, used_memory: 0 }], host_memory: 0, host_memory_bandwidth: 0, host_memory_used: 0 },
    service: services, ...extra,
  };
}
const svc = (name, groups, status = 'connected', port = '8080') => ({ name, status, host: 'localhost', port, hardware: noHw, identity_group: groups });
const DEFAULT_TABLE = {
  '/QmPeerA': peer('QmPeerA', true, [svc('llm', ['model=Qwen/Qwen3-0.6B'])]),
  '/QmPeerB': peer('QmPeerB', true, [svc('llm', ['model=Qwen/Qwen3-0.6B']), svc('llm', ['model=meta-llama/Llama-3.2-1B', 'gpu=h100'], 'connected', '8081')],
    { hostname: 'node-b', labels: { launched_by: 'test', framework: 'vllm' } }),
  '/QmPeerC': peer('QmPeerC', false, [svc('llm', ['model=deepseek/Disconnected-7B'])]),
  '/QmPeerD': peer('QmPeerD', true, [svc('vision', ['model=resnet50'])], { load: null, role: null }),
};
let table = DEFAULT_TABLE;
function onControl(c) {
  if (c.table !== undefined) table = c.table || DEFAULT_TABLE;
}

function peersFor(model) {
  const out = [];
  for (const [key, p] of Object.entries(table)) {
    if (!p || p.connected !== true) continue;
    for (const s of p.service || []) {
      if (s.name === 'llm' && (s.identity_group || []).includes(`model=${model}`)) { out.push(p.id || key.replace(/^\//, '')); break; }
    }
  }
  return out.sort();
}
let rr = 0;

async function route(req, res, entry, path) {
  if (req.method === 'GET') {
    if (path === '/v1/health') return sendJson(res, 200, { status: 'ok' });
    if (path === '/v1/dnt/table') return sendJson(res, 200, table);
    if (path === '/v1/dnt/peers') return sendJson(res, 200, Object.values(table).filter((p) => p.connected).map((p) => ({ id: p.id })));
    entry.violations.push(`path GET ${path}`);
    return sendJson(res, 404, { error: `not found: ${path}` });
  }
  if (req.method !== 'POST' || path !== '/v1/service/llm/v1/chat/completions') {
    entry.violations.push(`path ${req.method} ${path}`);
    return sendJson(res, 404, { error: `not found: ${req.method} ${path}` });
  }
  const bad = validateChat(req, entry, (m) => peersFor(m).length > 0,
    (m) => [404, errorBody(`no provider found for model ${m} (service llm)`, 'invalid_request_error', 'model', 'model_not_found')]);
  if (bad) return sendJson(res, bad[0], bad[1]);
  const ps = peersFor(entry.body.model);
  entry.peer = ps[rr++ % ps.length];
  return answerChat(req, res, entry, `ocf-${entry.peer}`);
}

serve({ script: SCRIPT, opts, route, internalError, onControl });
