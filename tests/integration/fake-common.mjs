// fake-common: the plumbing every provider fake shares (the behaviour queue
// and control API of fake-upstream.mjs, the request log, socket
// bookkeeping, JSON/SSE helpers and the HTTP server). A fake supplies its
// own routes and error shape and calls serve(); each fake is its own
// process, so this module's state is that fake's.
import http from 'node:http';

let queue = [];
let defaultBehaviour = {};
let requests = [];
let seq = 0;
const stats = { connections: 0, openConnections: 0, requests: 0 };
export const heldSockets = new Set();
const allSockets = new Set();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const nextBehaviour = () => (queue.length > 0 ? queue.shift() : defaultBehaviour) || {};
export const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);

export const currentSeq = () => seq;

export function rst(socket) {
  if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) {
    try { socket.resetAndDestroy(); return; } catch { /* fall through */ }
  }
  socket.destroy();
}

export function sendJson(res, status, obj, extra = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, ...extra });
  res.end(body);
}

export function pieces(text) {
  const p = text.match(/\S+\s*/g);
  return p && p.length ? p : [text];
}

// Writes SSE `data:` events honouring backpressure; false once the peer is gone.
export function sseWriter(res) {
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

export function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

/* Starts the fake: `route(req, res, entry, path)` answers every non-control
 * request (after its body was read and logged in `entry`); `internalError`
 * answers a handler that threw; `onControl(c)` sees each POST /__control. */
export function serve({ script, opts, route, internalError, onControl }) {
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
      process.stderr.write(`${script}: handler error: ${e && e.stack}\n`);
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
}
