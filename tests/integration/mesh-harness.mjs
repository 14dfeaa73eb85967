// Multi-node helpers for the mesh federation tests (SPEC section 5).
// Shared by mesh.test.mjs and mesh-resilience.test.mjs: keep the exports
// stable.
//
//   startMesh(t, specs, o)   starts N real aiproxyd nodes (harness.startGateway),
//                            each with its own fake upstream, client port, mesh
//                            port, temp dir and SQLite ledger. Returns an array
//                            of node handles (also available by id as
//                            `nodes.byId.a`).
//   startNode(spec, ports, o)  one node; ports = {id: {port, meshPort}} of the
//                            whole mesh (used to resolve peers given by id)
//   restartNode(node, o)     stops (SIGKILL by default) and starts the node again
//                            with the same config, ports, fake and ledger
//   stopMesh(nodes)          SIGTERM every node, then assertNoSanitizerReports()
//                            (startMesh(t, ...) does this when t ends)
//   pauseNode(node), resumeNode(node)  SIGSTOP (waits until stopped) / SIGCONT
//   meshStatus(node)         GET /aiproxy/mesh/status (json)
//   waitHealthy(node, ids)   polls status until every id is a healthy peer
//   waitFor(fn, ms, what)    polls fn until truthy (returns its value)
//   meshRequest(node, path, o)  a request to the node's MESH listener with
//                            Authorization: Bearer <secret> (o.secret: null
//                            sends none, a string sends that one)
//   chat(node, model, text, o)  POST /v1/chat/completions on the client listener
//   sql(db, q), ledgerRows(node, where), waitLedger(node, n, where)
//                            read a node's ledger with the sqlite3 CLI
//   metricValue(text, name, labels)  one sample of a Prometheus text
//
// A node spec: {
//   id: 'a',                      node id (required)
//   models: ['only-a', ...],      client models its provider serves (each maps
//                                 to the fake's "upstream-gpt"); default
//                                 ['model-<id>']. [] = no local provider models
//                                 (the node still has its provider, serving
//                                 nothing, unless providers:{} is given).
//   providers: {...}              replaces the providers map (fake is passed to
//                                 a function form: providers(fake) -> map)
//   peers: ['b', {id:'c', priority:2}, {addr:'127.0.0.1:1'}]
//                                 node.mesh.peers in the config: ids of other
//                                 nodes of this mesh (addr resolved), or raw
//                                 entries
//   cliPeers: ['a']               ids (or 'host:port' strings) passed with
//                                 --peers on the command line
//   secret: 's'                   node.mesh.secret (default MESH_SECRET; null =
//                                 none)
//   mesh: {...}                   merged into node.mesh (heartbeat_interval,
//                                 peer_timeout, max_hops, ...)
//   extra: {...}                  merged into the top-level config (budget is
//                                 deep-merged over the default cost_db)
//   server: {...}                 merged into server
//   args: [...]                   extra aiproxyd arguments
//   env: {...}                    extra environment
//   fake: <startFake handle>      reuse this fake instead of starting one
//   clientKey: 'k'                a client API key (when security.auth is on):
//                                 sent by meshStatus() and chat()
// }
// startMesh options o: {heartbeat_interval ('200ms'), peer_timeout ('1s'),
//   readyTimeoutMs}
//
// A node handle: {id, url, port, meshPort, meshAddr, meshUrl, secret, clientKey, fake,
//   gw, dir, dbPath, config, spec, logs(), status(), stop(sig), kill(),
//   alive()}. `gw` is replaced on restartNode(); use node.url / node.logs().

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';

export const MESH_SECRET = 'mesh-secret-for-tests';
export const DEFAULT_HEARTBEAT = '200ms';
export const DEFAULT_PEER_TIMEOUT = '1s';

/** Polls fn() until it returns a truthy value (returned) or timeoutMs passes (throws). */
export async function waitFor(fn, timeoutMs = 5000, what = 'condition', intervalMs = 50) {
  return h.waitFor(fn, timeoutMs, intervalMs, what);
}

/** Allocates {port, meshPort} for each spec id. */
export async function allocatePorts(specs) {
  const ports = {};
  const used = new Set();
  const fresh = async () => {
    for (;;) {
      const p = await h.freePort();
      if (!used.has(p)) { used.add(p); return p; }
    }
  };
  for (const s of specs) ports[s.id] = { port: await fresh(), meshPort: await fresh() };
  return ports;
}

function resolvePeerAddr(ref, ports) {
  if (typeof ref === 'string') {
    if (ports[ref]) return `127.0.0.1:${ports[ref].meshPort}`;
    return ref; // already host:port
  }
  return null;
}

/** Builds the config object of one node (not started). */
export function nodeConfig(spec, ports, o = {}, fake = null) {
  const me = ports[spec.id];
  const models = spec.models === undefined ? [`model-${spec.id}`] : spec.models;
  let providers;
  if (typeof spec.providers === 'function') providers = spec.providers(fake);
  else if (spec.providers) providers = spec.providers;
  else {
    providers = {
      [`p${spec.id}`]: h.provider(fake, {
        apiKey: `sk-${spec.id}`,
        models: models.map((m) => h.model(m, 'upstream-gpt')),
      }),
    };
  }
  const peers = (spec.peers || []).map((p) => {
    if (typeof p === 'string') {
      const addr = resolvePeerAddr(p, ports);
      return ports[p] ? { id: p, addr } : { addr };
    }
    const e = { ...p };
    if (e.id && !e.addr && ports[e.id]) e.addr = `127.0.0.1:${ports[e.id].meshPort}`;
    return e;
  });
  const secret = spec.secret === undefined ? MESH_SECRET : spec.secret;
  const mesh = {
    enabled: true,
    listen_addr: `127.0.0.1:${me.meshPort}`,
    peers,
    heartbeat_interval: o.heartbeat_interval || DEFAULT_HEARTBEAT,
    peer_timeout: o.peer_timeout || DEFAULT_PEER_TIMEOUT,
    ...(secret !== null ? { secret } : {}),
    ...(spec.mesh || {}),
  };
  const extra = { ...(spec.extra || {}) };
  const budget = { cost_db: `sqlite:///${spec.dbPath}`, ...(extra.budget || {}) };
  delete extra.budget;
  const cfg = h.baseConfig({
    port: me.port,
    providers,
    server: spec.server,
    extra: { budget, ...extra },
  });
  cfg.node = { id: spec.id, mesh };
  return cfg;
}

function cliArgs(spec, ports) {
  const args = [...(spec.args || [])];
  if (spec.cliPeers && spec.cliPeers.length) {
    args.push('--peers', spec.cliPeers.map((p) => resolvePeerAddr(p, ports)).join(','));
  }
  return args;
}

/**
 * Starts one node. `ports` maps ids to {port, meshPort} (must contain spec.id).
 * Returns a node handle.
 */
export async function startNode(spec, ports, o = {}) {
  const s = { ...spec };
  const dataDir = h.tempDir(`aiproxy-mesh-${s.id}-`);
  s.dbPath = s.dbPath || path.join(dataDir, 'costs.db');
  const fake = s.fake || await h.startFake({ name: `f${s.id}`, apiKey: `sk-${s.id}` });
  const cfg = nodeConfig(s, ports, o, fake);
  const args = cliArgs(s, ports);
  const gw = await h.startGateway(cfg, { args, env: s.env, readyTimeoutMs: o.readyTimeoutMs || 10000 });
  const me = ports[s.id];
  const node = {
    id: s.id,
    spec: s,
    port: me.port,
    meshPort: me.meshPort,
    meshAddr: `127.0.0.1:${me.meshPort}`,
    meshUrl: `http://127.0.0.1:${me.meshPort}`,
    url: gw.url,
    secret: cfg.node.mesh.secret ?? null,
    clientKey: s.clientKey || null,
    fake,
    gw,
    dir: gw.dir,
    dataDir,
    dbPath: s.dbPath,
    config: cfg,
    args,
    opts: o,
    logs: () => node.gw.logs(),
    status: () => meshStatus(node),
    stop: (sig = 'SIGTERM', ms = 5000) => node.gw.stop(sig, ms),
    kill: () => node.gw.stop('SIGKILL', 2000),
    alive: () => node.gw.proc.exitCode === null && node.gw.proc.signalCode === null,
  };
  return node;
}

/**
 * Starts every node of `specs` (in order; peers need not be up yet: the
 * heartbeats retry). Registers t.after() to kill them when `t` (a test
 * context; may be null) ends. Returns the array of handles, with .byId.
 */
export async function startMesh(t, specs, o = {}) {
  const ports = o.ports || await allocatePorts(specs);
  const nodes = [];
  nodes.byId = {};
  nodes.ports = ports;
  if (t && typeof t.after === 'function') {
    t.after(() => stopMesh(nodes), { timeout: 15000 });
  }
  for (const spec of specs) {
    const n = await startNode(spec, ports, o);
    nodes.push(n);
    nodes.byId[n.id] = n;
  }
  return nodes;
}

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Undefined|Leak)Sanitizer/;

/** Throws if any node's output holds a sanitizer report (ASan/LSan/UBSan builds). */
export function assertNoSanitizerReports(nodes) {
  const bad = nodes.filter((n) => SANITIZER_RE.test(n.logs()));
  if (bad.length) {
    throw new Error(`sanitizer report in ${bad.map((n) => n.id).join(', ')}:\n${bad.map((n) => {
      const l = n.logs();
      const i = l.search(SANITIZER_RE);
      return `--- ${n.id} ---\n${l.slice(Math.max(0, i - 200), i + 4000)}`;
    }).join('\n')}`);
  }
}

/**
 * Stops every node gracefully (SIGTERM, SIGKILL after o.timeoutMs, 5 s), so
 * that sanitizer builds report leaks at exit, then throws if any node's
 * output holds a sanitizer report.
 */
export async function stopMesh(nodes, o = {}) {
  await Promise.all(nodes.map((n) => {
    try { if (n.alive()) process.kill(n.gw.proc.pid, 'SIGCONT'); } catch { /* gone */ }
    return n.stop('SIGTERM', o.timeoutMs || 5000).catch(() => {});
  }));
  assertNoSanitizerReports(nodes);
}

function procState(pid) {
  try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0]; } catch { return null; }
}

/**
 * SIGSTOPs the node (it keeps its sockets: connections are accepted by the
 * kernel, never answered) and waits until it is really stopped (the signal
 * is delivered asynchronously: without this wait it may still answer).
 */
export async function pauseNode(node) {
  process.kill(node.gw.proc.pid, 'SIGSTOP');
  if (procState(node.gw.proc.pid) === null) { await h.sleep(100); return; }
  await waitFor(() => { const st = procState(node.gw.proc.pid); return st === 'T' || st === 't'; }, 2000, `${node.id} stopped`, 5);
}

/** SIGCONTs a node paused by pauseNode(). */
export function resumeNode(node) {
  try { process.kill(node.gw.proc.pid, 'SIGCONT'); } catch { /* gone */ }
}

/** Stops `node` (SIGKILL unless o.signal) and starts it again on the same ports, fake and ledger. */
export async function restartNode(node, o = {}) {
  await node.gw.stop(o.signal || 'SIGKILL', 5000);
  const gw = await h.startGateway(o.config || node.config, {
    args: o.args || node.args, env: node.spec.env, readyTimeoutMs: o.readyTimeoutMs || 10000,
  });
  node.gw = gw;
  node.url = gw.url;
  node.dir = gw.dir;
  return node;
}

// ---- observing ----

/** GET /aiproxy/mesh/status on the node's client listener (throws unless 200). */
export async function meshStatus(node) {
  const headers = node.clientKey ? { authorization: `Bearer ${node.clientKey}` } : {};
  const r = await h.request(node.url + '/aiproxy/mesh/status', { headers, timeoutMs: 3000 });
  if (r.status !== 200) throw new Error(`${node.id} /aiproxy/mesh/status: ${r.status} ${r.text.slice(0, 300)}`);
  return r.json;
}

/** The peer entry for `id` in a status (or undefined). */
export function peerOf(status, id) {
  return (status.peers || []).find((p) => p.id === id);
}

/** Polls until every id in `peerIds` is listed healthy by `node`. Returns the status. */
export async function waitHealthy(node, peerIds, timeoutMs = 6000) {
  let last;
  try {
    return await waitFor(async () => {
      last = await meshStatus(node);
      return peerIds.every((id) => { const p = peerOf(last, id); return p && p.status === 'healthy'; }) && last;
    }, timeoutMs, `${node.id} to see ${peerIds.join(',')} healthy`);
  } catch (e) {
    const peers = last ? JSON.stringify(last.peers.map((p) => ({ id: p.id, addr: p.addr, status: p.status, last_error: p.last_error }))) : 'no status';
    throw new Error(`${e.message}\npeers: ${peers}\n--- ${node.id} log tail ---\n${node.logs().slice(-3000)}`);
  }
}

/** Every node sees every other node healthy. */
export async function waitAllHealthy(nodes, timeoutMs = 6000) {
  await Promise.all(nodes.map((n) => waitHealthy(n, nodes.filter((m) => m !== n).map((m) => m.id), timeoutMs)));
}

/** Polls until `node` lists `id` with the given status ('unhealthy', ...). */
export async function waitPeerStatus(node, id, status, timeoutMs = 6000) {
  return waitFor(async () => {
    const s = await meshStatus(node);
    const p = peerOf(s, id);
    return p && p.status === status && p;
  }, timeoutMs, `${node.id} to see ${id} ${status}`);
}

// ---- requests ----

/**
 * A request to the node's mesh listener. o: {method, body, headers, secret
 * (default node.secret; null = no Authorization), timeoutMs}.
 */
export function meshRequest(node, p, o = {}) {
  const secret = o.secret === undefined ? node.secret : o.secret;
  const headers = { ...(o.headers || {}) };
  if (secret !== null && secret !== undefined) headers.authorization = `Bearer ${secret}`;
  return h.request(node.meshUrl + p, { method: o.method, body: o.body, headers, timeoutMs: o.timeoutMs || 5000 });
}

/** A minimal valid heartbeat body for node id `id` (addr '' so it is not dialed back). */
export function heartbeatBody(id = 'probe', nodeExtra = {}) {
  return { v: 1, node: { id, boot_id: `boot-${id}`, addr: '', ...nodeExtra } };
}

/** POST /v1/chat/completions on the node's client listener. o: {headers, stream, timeoutMs, extra}. */
export function chat(node, model, text = 'hello mesh', o = {}) {
  return h.request(node.url + '/v1/chat/completions', {
    body: { model, messages: [{ role: 'user', content: text }], ...(o.extra || {}) },
    headers: { ...(node.clientKey ? { authorization: `Bearer ${node.clientKey}` } : {}), ...(o.headers || {}) },
    timeoutMs: o.timeoutMs || 8000,
  });
}

// ---- ledgers ----

/** Runs one query with the sqlite3 CLI; returns its trimmed output. */
export function sql(db, q) {
  return execFileSync('sqlite3', ['-cmd', '.timeout 2000', db, q], { encoding: 'utf8' }).trim();
}

const LEDGER_COLS = ['request_id', 'key_id', 'tenant', 'model', 'provider', 'origin_node', 'route',
  'tokens_in', 'tokens_out', 'cost_nanos', 'estimated', 'status', 'via_peer'];

/**
 * A node's ledger rows as objects (numbers for numeric columns; cost_nanos
 * as a BigInt). `where` is an optional SQL condition.
 */
export function ledgerRows(nodeOrDb, where = '') {
  const db = typeof nodeOrDb === 'string' ? nodeOrDb : nodeOrDb.dbPath;
  const q = `SELECT json_group_array(json_object(${LEDGER_COLS.map((c) => `'${c}', ${c === 'cost_nanos' ? 'CAST(cost_nanos AS TEXT)' : c}`).join(', ')})) FROM (SELECT * FROM requests${where ? ` WHERE ${where}` : ''} ORDER BY rowid)`;
  const rows = JSON.parse(sql(db, q) || '[]');
  for (const r of rows) r.cost_nanos = BigInt(r.cost_nanos ?? 0);
  return rows;
}

/** Polls until the node's ledger holds at least n rows (matching `where`); returns them. */
export async function waitLedger(nodeOrDb, n, where = '', timeoutMs = 3000) {
  let rows = [];
  await waitFor(() => {
    try { rows = ledgerRows(nodeOrDb, where); } catch { return false; }
    return rows.length >= n;
  }, timeoutMs, `${n} ledger rows${where ? ` where ${where}` : ''} (have ${rows.length})`);
  return rows;
}

// ---- metrics ----

function parseLabels(s) {
  const out = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(s))) out[m[1]] = m[2];
  return out;
}

/** Every sample of `name` in a Prometheus text: [{labels, value}]. */
export function metricSamples(text, name) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    out.push({ labels: parseLabels(m[3] || ''), value: Number(m[4]) });
  }
  return out;
}

/** The value of the first sample of `name` whose labels include `labels` (undefined if none). */
export function metricValue(text, name, labels = {}) {
  const s = metricSamples(text, name).find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s ? s.value : undefined;
}
