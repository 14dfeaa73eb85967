// Integration-test harness for aiproxyd.
//
// HOW TO RUN
//   Build the gateway first (`make`, giving build/aiproxyd), install the test
//   clients once (`cd tests && npm ci`), then from the repo root:
//
//     node --test --test-concurrency=1 tests/integration/           # everything
//     node --test tests/integration/errors.test.mjs                 # one file
//     node --test --test-name-pattern='failover' tests/integration/ # by name
//
//   AIPROXYD=path/to/aiproxyd picks another binary (e.g. an ASan build:
//   AIPROXYD=build-asan/aiproxyd). AIPROXY_TEST_VERBOSE=1 copies every child's
//   stdout/stderr (gateway, fakes, proxy) to this process's stderr.
//
// WHAT IS HERE
//   freePort()                 a currently free loopback TCP port
//   startFake(opts)            spawns fake-upstream.mjs; {port, url, base,
//                              control(), reset(), requests(), stats(), stop()}
//   startProxy()               spawns connect-proxy.mjs; {port, url, log(), stop()}
//   startGateway(config, o)    writes config JSON into a temp dir, runs
//                              aiproxyd --config FILE there, waits for /ready;
//                              {url, port, proc, dir, logs(), stop(sig)->code}
//   baseConfig(o)              the standard one-provider config (p1 -> fake)
//   request(), streamRequest(), rawExchange(), parseSse(), parseHttpResponses()
//   makeTlsFixtures()          CA + certs made by the openssl CLI in a temp dir
//   killAll()                  kills every child this process started
//
// Every child started here is registered; killAll() (use it in after()) and a
// process 'exit' hook make sure nothing outlives the test run.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import httpsMod from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const AIPROXYD = process.env.AIPROXYD
  ? path.resolve(process.cwd(), process.env.AIPROXYD)
  : path.resolve(here, '../../build/aiproxyd');
const VERBOSE = !!process.env.AIPROXY_TEST_VERBOSE;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- child bookkeeping ----

const children = new Set();
const tempDirs = new Set();

function track(proc) {
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  return proc;
}

export async function killAll() {
  const waits = [];
  for (const p of children) {
    if (p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
      waits.push(new Promise((r) => p.once('exit', r)));
      try { p.kill('SIGKILL'); } catch { /* gone */ }
    }
  }
  let timer;
  await Promise.race([Promise.all(waits), new Promise((r) => { timer = setTimeout(r, 3000); })]);
  clearTimeout(timer);
  for (const d of tempDirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
  }
  tempDirs.clear();
}

process.on('exit', () => {
  for (const p of children) {
    try { p.kill('SIGKILL'); } catch { /* gone */ }
  }
});

export function tempDir(prefix = 'aiproxy-it-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

// ---- ports ----

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---- helper processes ----

function spawnWithPortLine(script, args, name) {
  return new Promise((resolve, reject) => {
    const proc = track(spawn(process.execPath, [path.join(here, script), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }));
    let out = '';
    let err = '';
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      proc.kill('SIGKILL');
      reject(new Error(`${name}: no {"port":N} line within 5 s\nstdout: ${out}\nstderr: ${err}`));
    }, 5000);
    proc.stdout.on('data', (d) => {
      out += d;
      if (VERBOSE) process.stderr.write(`[${name} out] ${d}`);
      const nl = out.indexOf('\n');
      if (!done && nl >= 0) {
        done = true;
        clearTimeout(timer);
        try {
          resolve({ proc, port: JSON.parse(out.slice(0, nl)).port, stderr: () => err });
        } catch (e) {
          reject(new Error(`${name}: bad first line ${out.slice(0, nl)}: ${e}`));
        }
      }
    });
    proc.stderr.on('data', (d) => {
      err += d;
      if (VERBOSE) process.stderr.write(`[${name} err] ${d}`);
    });
    proc.on('exit', (code, sig) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(new Error(`${name} exited early (${code ?? sig})\nstdout: ${out}\nstderr: ${err}`));
      }
    });
  });
}

async function stopChild(proc, signal = 'SIGTERM', timeoutMs = 3000) {
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode ?? proc.signalCode;
  const exited = new Promise((r) => proc.once('exit', (code, sig) => r(code ?? sig)));
  try { proc.kill(signal); } catch { /* gone */ }
  const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, timeoutMs);
  let t2;
  const code = await Promise.race([exited, new Promise((r) => { t2 = setTimeout(() => r('did-not-exit'), timeoutMs + 3000); })]);
  clearTimeout(t);
  clearTimeout(t2);
  return code;
}

async function getJson(url) {
  const r = await request(url, { timeoutMs: 5000 });
  return r.json;
}
async function postJson(url, obj) {
  const r = await request(url, { method: 'POST', body: obj, timeoutMs: 5000 });
  if (r.status !== 200) throw new Error(`${url}: ${r.status} ${r.text}`);
  return r.json;
}

/**
 * Starts fake-upstream.mjs.
 * opts: {apiKey, models: [..], name, tlsCert, tlsKey}
 * Returns {port, url ('http(s)://127.0.0.1:PORT'), base (url + '/v1'), proc,
 *   control({queue, default}), reset(), requests(), stats(), stop()}.
 * Control calls always go over plain HTTP(S) to 127.0.0.1 from this process.
 */
export async function startFake(opts = {}) {
  const name = opts.name || 'fake';
  const args = ['--port', '0', '--name', name];
  if (opts.apiKey) args.push('--api-key', opts.apiKey);
  if (opts.models) args.push('--models', opts.models.join(','));
  if (opts.tlsCert) args.push('--tls-cert', opts.tlsCert, '--tls-key', opts.tlsKey);
  const { proc, port, stderr } = await spawnWithPortLine('fake-upstream.mjs', args, `fake:${name}`);
  const tls = !!opts.tlsCert;
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const call = async (method, p, body) => {
    const r = await request(url + p, { method, body, timeoutMs: 5000, insecure: tls });
    if (r.status !== 200) throw new Error(`fake ${name} ${p}: ${r.status} ${r.text}`);
    return r.json;
  };
  return {
    name,
    port,
    url,
    base: `${url}/v1`,
    proc,
    stderr,
    control: (c) => call('POST', '/__control', c),
    reset: () => call('POST', '/__reset', {}),
    requests: () => call('GET', '/__requests'),
    stats: () => call('GET', '/__stats'),
    stop: () => stopChild(proc),
  };
}

/** Starts connect-proxy.mjs. Returns {port, url, proc, log(), reset(), stop()}. */
export async function startProxy() {
  const { proc, port, stderr } = await spawnWithPortLine('connect-proxy.mjs', ['--port', '0'], 'proxy');
  const url = `http://127.0.0.1:${port}`;
  return {
    port,
    url,
    proc,
    stderr,
    log: () => getJson(url + '/__log'),
    reset: () => postJson(url + '/__reset', {}),
    stop: () => stopChild(proc),
  };
}

// ---- the gateway ----

/**
 * The standard config: one openai-type provider p1 in front of the fake,
 * serving client model "gpt-test" as upstream "upstream-gpt".
 * o: {port, fakePort|endpoint, apiKey, server:{...}, provider:{...} (merged
 *     into p1), providers:{...} (replaces the map), extra:{...} (top-level)}
 */
export function baseConfig(o) {
  const endpoint = o.endpoint || `http://127.0.0.1:${o.fakePort}/v1`;
  const p1 = {
    type: 'openai',
    endpoint,
    priority: 1,
    timeout: '3s',
    credentials: { api_key: o.apiKey || 'sk-test-1' },
    models: [
      {
        name: 'gpt-test',
        openai_model: 'upstream-gpt',
        cost_per_1k_input_tokens: 0.001,
        cost_per_1k_output_tokens: 0.002,
      },
    ],
    ...(o.provider || {}),
  };
  return {
    node: { id: 'test-node' },
    server: { listen_addr: `127.0.0.1:${o.port}`, workers: 2, ...(o.server || {}) },
    providers: o.providers || { p1 },
    observability: { logging: { level: 'info', format: 'json' } },
    ...(o.extra || {}),
  };
}

/** A model entry as used in configs. */
export function model(name, upstream, inCost = 0.001, outCost = 0.002) {
  return { name, openai_model: upstream, cost_per_1k_input_tokens: inCost, cost_per_1k_output_tokens: outCost };
}

/** An openai-type provider entry pointing at a fake. */
export function provider(fake, { priority = 1, timeout = '3s', apiKey = 'sk-test-1', models, ...rest } = {}) {
  return {
    type: 'openai',
    endpoint: fake.base || fake,
    priority,
    timeout,
    credentials: { api_key: apiKey },
    models: models || [model('gpt-test', 'upstream-gpt')],
    ...rest,
  };
}

/**
 * Two providers for "gpt-test" at the same price: p1 (priority 1, key
 * sk-test-1) and p2 (priority 2, key sk-test-2), routing "availability".
 * a, b: fakes or endpoint URLs. o: {timeout, p1:{...}, p2:{...}, server, extra}
 */
export function twoProviderConfig(a, b, o = {}) {
  return baseConfig({
    server: o.server,
    providers: {
      p1: provider(a, { priority: 1, timeout: o.timeout || '1s', ...(o.p1 || {}) }),
      p2: provider(b, { priority: 2, timeout: o.timeout || '1s', apiKey: 'sk-test-2', ...(o.p2 || {}) }),
    },
    extra: { routing: { strategy: 'availability' }, ...(o.extra || {}) },
  });
}

function gatewayEnv(extra = {}) {
  const env = { ...process.env };
  for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']) {
    delete env[k];
  }
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined || v === null) delete env[k];
    else env[k] = String(v);
  }
  return env;
}

/**
 * Writes `config` (an object; a `server.listen_addr` port of 0 or absent is
 * replaced by a free port) as JSON into a fresh temp dir and starts aiproxyd
 * there with --config. Waits for GET /ready == 200 (o.readyTimeoutMs, 10 s).
 * With server.tls in the config, `url` is https and /ready is asked with
 * o.tls ({ca, cert, key}: PEM file paths; without ca, unverified).
 * o: {env, args, readyTimeoutMs, tls}
 */
export async function startGateway(config, o = {}) {
  if (!fs.existsSync(AIPROXYD)) {
    throw new Error(`aiproxyd not found at ${AIPROXYD} (build it with make, or set AIPROXYD)`);
  }
  const cfg = structuredClone(config);
  cfg.server = cfg.server || {};
  let port;
  const m = /:(\d+)$/.exec(cfg.server.listen_addr || '');
  if (m && Number(m[1]) !== 0) port = Number(m[1]);
  else {
    port = await freePort();
    cfg.server.listen_addr = `127.0.0.1:${port}`;
  }
  const dir = tempDir('aiproxy-gw-');
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2));

  const proc = track(spawn(AIPROXYD, ['--config', file, ...(o.args || [])], {
    cwd: dir,
    env: gatewayEnv(o.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  let out = '';
  proc.stdout.on('data', (d) => { out += d; if (VERBOSE) process.stderr.write(`[gw out] ${d}`); });
  proc.stderr.on('data', (d) => { out += d; if (VERBOSE) process.stderr.write(`[gw err] ${d}`); });
  let exitInfo = null;
  let markExited;
  const exited = new Promise((r) => { markExited = r; });
  proc.once('exit', (code, sig) => { exitInfo = exitInfo || { code, sig }; markExited(code ?? sig); });
  // A failed spawn emits 'error' and never 'exit'.
  proc.on('error', (e) => {
    out += `\nspawn error: ${e}\n`;
    if (proc.exitCode === null && proc.pid === undefined) { exitInfo = exitInfo || { code: null, sig: `spawn error ${e.code}` }; markExited(exitInfo.sig); }
  });

  const https = !!(cfg.server.tls && cfg.server.tls.cert_file);
  const url = `${https ? 'https' : 'http'}://127.0.0.1:${port}`;
  const readyOpts = https ? { ...(o.tls || {}), insecure: !(o.tls && o.tls.ca) } : {};
  const deadline = Date.now() + (o.readyTimeoutMs || 10000);
  let lastErr = '';
  for (;;) {
    if (exitInfo) {
      throw new Error(`aiproxyd exited before /ready (code ${exitInfo.code}, signal ${exitInfo.sig})\n--- config ---\n${JSON.stringify(cfg)}\n--- output ---\n${out}`);
    }
    try {
      const r = await request(url + '/ready', { timeoutMs: 1000, ...readyOpts });
      if (r.status === 200) break;
      lastErr = `status ${r.status}: ${r.text}`;
    } catch (e) {
      lastErr = String(e.message || e);
    }
    if (Date.now() > deadline) {
      try { proc.kill('SIGKILL'); } catch { /* gone */ }
      throw new Error(`aiproxyd not ready within ${(o.readyTimeoutMs || 10000)} ms (last: ${lastErr})\n--- output ---\n${out}`);
    }
    await sleep(50);
  }

  return {
    url,
    port,
    proc,
    dir,
    configFile: file,
    config: cfg,
    logs: () => out,
    exited,
    async stop(signal = 'SIGTERM', timeoutMs = 10000) {
      if (exitInfo) return exitInfo.code ?? exitInfo.sig;
      try { proc.kill(signal); } catch { /* gone */ }
      const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, timeoutMs);
      // Never wait forever, even for a process that will not die.
      let t2;
      const code = await Promise.race([exited, new Promise((r) => { t2 = setTimeout(() => r('did-not-exit'), timeoutMs + 3000); })]);
      clearTimeout(t);
      clearTimeout(t2);
      return code;
    },
  };
}

/** startGateway() whose process is SIGKILLed when test `t` ends. */
export async function gatewayFor(t, config, o) {
  const gw = await startGateway(config, o);
  t.after(() => gw.stop('SIGKILL', 2000), { timeout: 8000 });
  return gw;
}

// ---- HTTP clients ----

/** {ca, cert, key} file paths -> the PEM contents node's tls options take. */
export function pemOptions(o = {}) {
  const out = {};
  for (const k of ['ca', 'cert', 'key']) if (o[k]) out[k] = fs.readFileSync(o[k]);
  return out;
}

/**
 * One HTTP request on a fresh connection.
 * o: {method, headers, body (object -> JSON, string/Buffer as is), timeoutMs,
 *     insecure, and for https: ca, cert, key (PEM file paths)}
 * Resolves {status, headers, text, json (or undefined), ms}.
 */
export function request(url, o = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const isTls = u.protocol === 'https:';
    const mod = isTls ? httpsMod : http;
    let body = o.body;
    const headers = { ...(o.headers || {}) };
    if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
      body = JSON.stringify(body);
      if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    }
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
    const started = Date.now();
    const req = mod.request({
      method: o.method || (body !== undefined ? 'POST' : 'GET'),
      hostname: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      headers,
      agent: false,
      rejectUnauthorized: isTls ? !o.insecure : undefined,
      ...(isTls ? pemOptions(o) : {}),
    }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json, ms: Date.now() - started });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`request ${o.method || 'GET'} ${url} timed out after ${o.timeoutMs || 15000} ms`));
    }, o.timeoutMs || 15000);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    if (body !== undefined) req.write(body);
    req.end();
  });
}
/**
 * A streaming request: resolves once the response head arrives with
 * {status, headers, res, events (array filling as data arrives), text(),
 *  done (promise of {text, events, error}), abort()}.
 * events are the `data:` payloads (strings) in order.
 */
export function streamRequest(url, o = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const body = JSON.stringify(o.body);
    const req = http.request({
      method: 'POST',
      hostname: u.hostname,
      port: u.port,
      path: u.pathname,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(o.headers || {}) },
      agent: false,
    }, (res) => {
      let raw = '';
      const events = [];
      let buf = '';
      let resolveDone;
      const done = new Promise((r) => { resolveDone = r; });
      res.setEncoding('utf8');
      res.on('data', (d) => {
        raw += d;
        buf += d;
        let i;
        while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(buf.slice(i).match(/^\r?\n\r?\n/)[0].length + i);
          const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
          if (data.length) events.push(data.join('\n'));
        }
      });
      res.on('end', () => resolveDone({ text: raw, events, error: null, rest: buf }));
      res.on('error', (e) => resolveDone({ text: raw, events, error: e, rest: buf }));
      res.on('close', () => resolveDone({ text: raw, events, error: res.complete ? null : new Error('response closed before its end'), rest: buf }));
      resolve({
        status: res.statusCode,
        headers: res.headers,
        res,
        events,
        text: () => raw,
        done,
        abort: () => { req.destroy(); res.destroy(); },
      });
    });
    req.on('error', reject);
    if (o.timeoutMs) {
      const t = setTimeout(() => req.destroy(new Error(`stream timed out after ${o.timeoutMs} ms`)), o.timeoutMs);
      req.on('close', () => clearTimeout(t));
    }
    req.write(body);
    req.end();
  });
}

/** Splits an SSE text into its data payloads (strings). */
export function parseSse(text) {
  return text.split(/\r?\n\r?\n/).map((block) => block.split(/\r?\n/)
    .filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n'))
    .filter((d) => d.length > 0);
}

/**
 * Raw TCP exchange: connects, writes `data` (string/Buffer or array of
 * [delayMs, chunk] pairs), collects bytes until the peer closes, or until
 * `untilResponses` HTTP responses were parsed, or timeoutMs.
 * Resolves {buf (Buffer), text, closed (peer closed), responses, ms}.
 */
export function rawExchange(port, data, o = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    const parts = [];
    let closed = false;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      const buf = Buffer.concat(parts);
      sock.destroy();
      resolve({ buf, text: buf.toString('latin1'), closed, responses: parseHttpResponses(buf, o.headRequests), ms: Date.now() - started });
    };
    const timer = setTimeout(finish, o.timeoutMs || 5000);
    sock.on('data', (d) => {
      parts.push(d);
      if (o.untilResponses) {
        const rs = parseHttpResponses(Buffer.concat(parts), o.headRequests);
        if (rs.filter((r) => r.complete).length >= o.untilResponses) finish();
      }
    });
    sock.on('end', () => { closed = true; finish(); });
    sock.on('close', () => { closed = true; finish(); });
    sock.on('error', (e) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') { closed = true; finish(); return; }
      if (!finished) { finished = true; clearTimeout(timer); reject(e); }
    });
    sock.on('connect', async () => {
      if (Array.isArray(data)) {
        for (const [delay, chunk] of data) {
          if (delay) await sleep(delay);
          if (finished || sock.destroyed) return;
          sock.write(chunk);
        }
      } else {
        sock.write(data);
      }
    });
  });
}

/**
 * Parses consecutive HTTP/1.x responses out of a buffer (content-length and
 * chunked bodies; a body without either runs to the end). Returns
 * [{status, headers, body (string), complete}].
 */
export function parseHttpResponses(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (headEnd < 0) break;
    const head = buf.slice(off, headEnd).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
    if (!m) break;
    const headers = {};
    for (const line of head.slice(1)) {
      const c = line.indexOf(':');
      if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
    }
    let p = headEnd + 4;
    const status = Number(m[1]);
    let body = Buffer.alloc(0);
    let complete = false;
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      complete = true;
    } else if (headers['transfer-encoding'] && /chunked/i.test(headers['transfer-encoding'])) {
      const chunks = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) break;
        const size = parseInt(buf.slice(p, le).toString('latin1'), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const te = buf.indexOf('\r\n\r\n', le, 'latin1');
          // trailers-less: "0\r\n\r\n"
          if (buf.slice(le, le + 4).toString('latin1') === '\r\n\r\n') { p = le + 4; complete = true; } else if (te >= 0) { p = te + 4; complete = true; }
          break;
        }
        if (le + 2 + size + 2 > buf.length) break;
        chunks.push(buf.slice(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      body = Buffer.concat(chunks);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (p + n <= buf.length) { body = buf.slice(p, p + n); p += n; complete = true; } else { body = buf.slice(p); p = buf.length; }
    } else {
      body = buf.slice(p);
      p = buf.length;
    }
    let json;
    try { json = JSON.parse(body.toString('utf8')); } catch { json = undefined; }
    out.push({ status, headers, body: body.toString('utf8'), json, complete });
    if (!complete) break;
    off = p;
  }
  return out;
}

/** Polls fn() until it returns a truthy value (returned) or timeoutMs passes (throws). */
export async function waitFor(fn, timeoutMs = 3000, intervalMs = 25, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last && last.message ? last.message : JSON.stringify(last)})`);
    await sleep(intervalMs);
  }
}

// ---- assertions ----

/** Asserts an OpenAI-shaped error: {"error":{"message","type","param","code"}}. */
export function assertOpenAIError(r, status, code, param) {
  const ctx = `status ${r.status}, body ${String(r.text ?? r.body).slice(0, 500)}`;
  assert.equal(r.status, status, `expected HTTP ${status}: ${ctx}`);
  const ct = (r.headers && r.headers['content-type']) || '';
  assert.match(ct, /^application\/json/i, `error content-type must be JSON: ${ct}; ${ctx}`);
  const j = r.json;
  assert.ok(j && typeof j === 'object' && j.error && typeof j.error === 'object', `body must be {"error":{...}}: ${ctx}`);
  for (const k of ['message', 'type', 'param', 'code']) {
    assert.ok(Object.prototype.hasOwnProperty.call(j.error, k), `error.${k} must be present: ${ctx}`);
  }
  assert.equal(typeof j.error.message, 'string', `error.message must be a string: ${ctx}`);
  assert.ok(j.error.message.length > 0, `error.message must not be empty: ${ctx}`);
  assert.equal(typeof j.error.type, 'string', `error.type must be a string: ${ctx}`);
  if (code !== undefined) assert.equal(j.error.code, code, `error.code: ${ctx}`);
  if (param !== undefined) assert.equal(j.error.param, param, `error.param: ${ctx}`);
  return j.error;
}

/** Asserts the x-aiproxy response headers of a proxied response. */
export function assertAiproxyHeaders(r, providerName, node = 'test-node') {
  assert.ok(r.headers['x-aiproxy-request-id'], 'x-aiproxy-request-id header missing');
  assert.equal(r.headers['x-aiproxy-provider'], providerName, 'x-aiproxy-provider header');
  assert.equal(r.headers['x-aiproxy-node'], node, 'x-aiproxy-node header');
}

export function chatBody(text = 'hello there world', extra = {}) {
  return { model: 'gpt-test', messages: [{ role: 'user', content: text }], ...extra };
}

// ---- TLS fixtures (openssl CLI) ----

/**
 * Makes, in a fresh temp dir (removed by killAll):
 *   ca.pem / ca.key            a throw-away CA
 *   server.pem / server.key    signed by it, SAN DNS:localhost, IP:127.0.0.1
 *   wrong.pem / wrong.key      signed by it, SAN DNS:wrong.example only
 * Returns {dir, ca, cert, key, wrongCert, wrongKey}.
 */
export function makeTlsFixtures() {
  const dir = tempDir('aiproxy-tls-');
  const f = (n) => path.join(dir, n);
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'),
    '-days', '2', '-subj', '/CN=aiproxy test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const leaf = (name, cn, san) => {
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`]);
    fs.writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`);
    run(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`)]);
  };
  leaf('server', 'localhost', 'DNS:localhost,IP:127.0.0.1');
  leaf('wrong', 'wrong.example', 'DNS:wrong.example');
  return { dir, ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), wrongCert: f('wrong.pem'), wrongKey: f('wrong.key') };
}

export const haveGateway = () => fs.existsSync(AIPROXYD);

// ---- provider fakes (fake-anthropic/-cloudflare/-ollama/-ocf.mjs) ----

/**
 * Starts one of the provider fakes (`script`, e.g. 'fake-anthropic.mjs') with
 * `--port P` (o.port, default 0 = any) `--name N` and o.args (extra CLI
 * arguments). Returns the same object as startFake() ({port, url, control(),
 * reset(), requests(), stats(), stop()}) plus `script` and `args`, so that
 * restartProviderFake() can start it again on the same port.
 */
export async function startProviderFake(script, o = {}) {
  const name = o.name || script.replace(/^fake-|\.mjs$/g, '');
  const args = ['--port', String(o.port || 0), '--name', name, ...(o.args || [])];
  const { proc, port, stderr } = await spawnWithPortLine(script, args, `${script}:${name}`);
  const url = `http://127.0.0.1:${port}`;
  const call = async (method, p, body) => {
    const r = await request(url + p, { method, body, timeoutMs: 5000 });
    if (r.status !== 200) throw new Error(`${script} ${name} ${p}: ${r.status} ${r.text}`);
    return r.json;
  };
  return {
    name, port, url, proc, stderr, script, opts: o,
    control: (c) => call('POST', '/__control', c),
    reset: () => call('POST', '/__reset', {}),
    requests: () => call('GET', '/__requests'),
    stats: () => call('GET', '/__stats'),
    stop: () => stopChild(proc),
  };
}

/** Starts `fake` (from startProviderFake) again on its port; retries while the port is busy. */
export async function restartProviderFake(fake, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await startProviderFake(fake.script, { ...fake.opts, name: fake.name, port: fake.port });
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}
