// A fake of the gateway's context delta buffer endpoints (SPEC section 8),
// run inside the test process, for testing `aiproxyctl context` without a
// gateway:
//
//   POST   /v1/context/delta       applies {project, reset, files} and answers
//                                   {project, changed, added, removed, files,
//                                   bytes, pending, rejected}
//   GET    /v1/context/stats       {projects: [{project, files, bytes, ...}]}
//   DELETE /v1/context/{project}   {project, deleted: true} or a 404
//
// It records every request (deltas() gives the parsed delta bodies in
// order, with the status answered), can be told to fail (setMode(500),
// setMode(404)), to require a key, and can go down and come back on the same
// port with its memory lost (stop(), restart()).
//
//   const fake = await startFakeContext({ key: 'k' });
//   fake.url, fake.port, fake.deltas(), fake.requests(), fake.projects,
//   fake.setMode('ok' | 500 | 404), fake.setMaxBody(n), fake.clearProject(name),
//   await fake.stop(), await fake.restart(), await fake.close()

import http from 'node:http';

const PROJECT_RE = /^[A-Za-z0-9._-]{1,128}$/;

function badPath(p) {
  return typeof p !== 'string' || p.length === 0 || Buffer.byteLength(p) > 1024 || p.startsWith('/') ||
    p.includes('\\') || /[\x00-\x1f\x7f]/.test(p) ||
    p.split('/').some((s) => s === '' || s === '.' || s === '..');
}

function lines(s) {
  if (!s) return [];
  const l = s.split('\n');
  if (l[l.length - 1] === '') l.pop();
  return l;
}

// Lines added and removed between two versions, as multisets (enough for a fake).
function lineDelta(oldText, newText) {
  const count = new Map();
  for (const l of lines(oldText)) count.set(l, (count.get(l) || 0) + 1);
  let added = 0;
  for (const l of lines(newText)) {
    const c = count.get(l) || 0;
    if (c > 0) count.set(l, c - 1);
    else added++;
  }
  let removed = 0;
  for (const c of count.values()) removed += c;
  return { added, removed };
}

function sendJson(res, status, doc) {
  const body = JSON.stringify(doc);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function openAIError(res, status, message, param = null, code = null) {
  const type = status === 401 ? 'authentication_error' : status === 404 ? 'not_found_error' : 'invalid_request_error';
  sendJson(res, status, { error: { message, type, param, code } });
}

export async function startFakeContext(opts = {}) {
  const state = {
    mode: 'ok',
    projects: new Map(), // name -> Map(path -> content)
    log: [], // {method, path, status, body (parsed JSON or null), at}
    maxBody: opts.maxBody || 10 * 1024 * 1024,
  };
  const sockets = new Set();
  let server = null;
  let port = opts.port || 0;

  function handle(req, res, raw) {
    const entry = { method: req.method, path: req.url, status: 0, body: null, at: Date.now(), auth: req.headers.authorization || null };
    state.log.push(entry);
    const reply = (status, doc) => { entry.status = status; sendJson(res, status, doc); };
    const fail = (status, message, param = null) => { entry.status = status; openAIError(res, status, message, param); };
    if (req.method === 'POST') {
      try { entry.body = JSON.parse(raw); } catch { entry.body = null; }
    }
    if (opts.key && req.headers.authorization !== `Bearer ${opts.key}`) return fail(401, 'Invalid API key.');
    if (state.mode === 500) return fail(500, 'fake context server: told to fail');
    if (state.mode === 404) return fail(404, 'The context buffer is disabled on this gateway (context.enabled).');
    if (raw.length > state.maxBody) return fail(413, 'Request body too large.');

    if (req.method === 'POST' && req.url === '/v1/context/delta') {
      const d = entry.body;
      if (!d || typeof d !== 'object' || Array.isArray(d)) return fail(400, 'The body is not a JSON object.');
      const project = d.project ?? 'default';
      if (!PROJECT_RE.test(project)) return fail(400, 'bad project', 'project');
      if (!Array.isArray(d.files)) return fail(400, 'files must be an array', 'files');
      const seen = new Set();
      for (const [i, f] of d.files.entries()) {
        if (!f || badPath(f.path)) return fail(400, `bad path at files[${i}]`, `files[${i}].path`);
        if (seen.has(f.path)) return fail(400, `duplicate path ${f.path}`, `files[${i}].path`);
        seen.add(f.path);
        if (f.deleted !== true && typeof f.content !== 'string') return fail(400, 'content must be a string', `files[${i}].content`);
      }
      let files = state.projects.get(project);
      if (!files || d.reset === true) { files = new Map(); state.projects.set(project, files); }
      const changed = [];
      const rejected = [];
      let added = 0;
      let removed = 0;
      for (const f of d.files) {
        const old = files.get(f.path);
        if (f.deleted === true) {
          if (old !== undefined) {
            files.delete(f.path);
            changed.push(f.path);
            removed += lines(old).length;
          }
          continue;
        }
        if (f.content.includes('\u0000')) { rejected.push({ path: f.path, reason: 'binary content (a NUL byte)' }); continue; }
        if (old === f.content) continue;
        const ld = lineDelta(old ?? '', f.content);
        added += ld.added;
        removed += ld.removed;
        files.set(f.path, f.content);
        changed.push(f.path);
      }
      let bytes = 0;
      for (const c of files.values()) bytes += Buffer.byteLength(c);
      return reply(200, { project, changed, added, removed, files: files.size, bytes, pending: changed.length, rejected });
    }
    if (req.method === 'GET' && req.url === '/v1/context/stats') {
      const projects = [];
      for (const [project, files] of state.projects) {
        let bytes = 0;
        for (const c of files.values()) bytes += Buffer.byteLength(c);
        projects.push({ project, files: files.size, bytes, pending: 0, injections: 2, tokens_injected: 120, tokens_saved: 3400, updated_at: 1764846000 });
      }
      return reply(200, { projects });
    }
    const m = /^\/v1\/context\/([^/?]+)$/.exec(req.url);
    if (req.method === 'DELETE' && m) {
      const project = decodeURIComponent(m[1]);
      if (!state.projects.delete(project)) return fail(404, `No context project '${project}'.`, 'project');
      return reply(200, { project, deleted: true });
    }
    return fail(404, `no route ${req.method} ${req.url}`);
  }

  function listen() {
    return new Promise((resolve, reject) => {
      server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
      });
      server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = server.address().port;
        resolve();
      });
    });
  }

  async function stop() {
    if (!server) return;
    const s = server;
    server = null;
    for (const sock of sockets) sock.destroy();
    await new Promise((r) => s.close(() => r()));
  }

  await listen();
  return {
    get port() { return port; },
    get url() { return `http://127.0.0.1:${port}`; },
    get projects() { return state.projects; },
    requests: () => state.log.slice(),
    /** The delta bodies received, in order: {status, body: {project, reset, files}, at}. */
    deltas: () => state.log.filter((e) => e.method === 'POST' && e.path === '/v1/context/delta'),
    setMode(mode) { state.mode = mode; },
    /** Bodies over n bytes get a 413, as server.max_request_size does. */
    setMaxBody(n) { state.maxBody = n; },
    clearProject(name) { state.projects.delete(name); },
    /** Goes down: every connection is cut and the port closed. */
    stop,
    /** Comes back on the same port with its memory lost. */
    async restart() {
      await stop();
      state.projects = new Map();
      for (let i = 0; ; i++) {
        try { await listen(); return; } catch (e) {
          if (i > 50) throw e;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
    close: stop,
  };
}
