// A throwaway redis-server for the shared-store tests (SPEC section 6).
//
//   startRedis(o)       starts `redis-server` (REDIS_SERVER overrides the
//                       binary, REDIS_CLI the client) on a free loopback port
//                       in a fresh temp dir, with no persistence, and waits
//                       until it answers a PING. Options:
//     tls: true           TLS only (`--port 0 --tls-port N`), with a throwaway
//                         CA and a server certificate for 127.0.0.1 (IP SAN)
//                         made by the openssl CLI in the temp dir; clients are
//                         not asked for certificates. Throws a clear error when
//                         the redis-server binary has no TLS.
//     password: 'pw'      the default user's password (`--requirepass`: the
//                         legacy AUTH pw); the URL is redis://:pw@...
//     user: 'app', aclPassword: 'pw2'
//                         an ACL user allowed everything (`--user app on >pw2
//                         ~* &* +@all`); the default user is switched off
//                         (unless `password` is given too: then it keeps that
//                         password); the URL is redis://app:pw2@...
//                         (aclPassword defaults to password)
//     port: N             this port instead of a free one
//     args: [...]         more redis-server arguments
//   Returns a handle:
//     port, host ('127.0.0.1'), url (redis://[user:pass@]127.0.0.1:port/0, or
//     rediss://... with tls; user and password percent-encoded), tls, caFile
//     (tls only), password, user, aclPassword, dir, pid (of the current
//     process, which changes on restart), proc, logs() (its stdout+stderr),
//     stop()        SIGTERM (after a SIGCONT when paused), SIGKILL after 3 s;
//                   resolves once it has exited. Idempotent.
//     pause()       SIGSTOP; resolves once the process is stopped (it keeps
//                   its connections but answers nothing)
//     resume()      SIGCONT
//     restart(o)    stop() (when not stopped already), then start again on
//                   the same port, in the same dir, with the same options.
//                   Empty by default (there is no persistence: a dump.rdb
//                   left in the dir is removed), except for what the server
//                   was asked to persist itself (args: ['--appendonly',
//                   'yes'] keeps its AOF, which is loaded again);
//                   restart({keepData: true}) SAVEs first (the server must be
//                   running) and the new server loads that dump.
//     cli(...args)  runs redis-cli against it (authenticated, TLS when it is
//                   TLS; --no-auth-warning) and resolves to its stdout (an
//                   error reply is printed there too, e.g. "ERR ...", and does
//                   not reject); rejects when redis-cli exits non-zero or takes
//                   over 5 s
//     cliNoAuth(...args)  the same without credentials
//     info(section) INFO section parsed into {field: value} (numbers as numbers)
//     commandstats() INFO commandstats as {command: calls}, e.g.
//                   {evalsha: 12, 'script|load': 5}
//     flushall()    FLUSHALL
//   stopAllRedis()      stops every server started here (for after() hooks).
//   haveRedis()         true when redis-server and redis-cli can be run.
//   probeRedis(o)       one PING on a fresh connection ({port, tls, caFile,
//                       user, password, timeoutMs}): resolves to the first
//                       reply line after any AUTH ('+PONG', '-NOAUTH ...'), or
//                       null when nothing came back in time.
//
// Every redis-server started here is SIGKILLed, and its temp dir removed,
// when this process exits, whatever the tests did (on SIGINT, SIGTERM and
// SIGHUP too: then the signal is raised again).

import { spawn, spawnSync, execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

export const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server';
export const REDIS_CLI = process.env.REDIS_CLI || 'redis-cli';
const HOST = '127.0.0.1';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- bookkeeping: nothing outlives this process ----

const live = new Set(); // child processes
const dirs = new Set(); // temp dirs
const handles = new Set();

function killAllNow() {
  for (const p of live) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const d of dirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
  }
}
process.on('exit', killAllNow);
// Killed by a signal, 'exit' does not run: clean up, then die of it as before.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killAllNow();
    process.kill(process.pid, sig);
  });
}

export function haveRedis() {
  const ok = (bin) => {
    const r = spawnSync(bin, ['--version'], { stdio: 'ignore' });
    return !r.error && r.status === 0;
  };
  return ok(REDIS_SERVER) && ok(REDIS_CLI);
}

export async function stopAllRedis() {
  await Promise.all([...handles].map((h) => h.stop()));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---- TLS material ----

function makeCerts(dir) {
  const f = (n) => path.join(dir, n);
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2',
    '-subj', '/CN=aiproxy redis test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run(['req', ...ec, '-keyout', f('redis.key'), '-out', f('redis.csr'), '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(f('redis.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' +
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  run(['x509', '-req', '-in', f('redis.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('redis.crt'), '-days', '2', '-extfile', f('redis.ext')]);
  fs.chmodSync(f('redis.key'), 0o600);
  return { caFile: f('ca.crt'), certFile: f('redis.crt'), keyFile: f('redis.key') };
}

// ---- talking to it ----

function resp(...args) {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('');
}

export function probeRedis({ port, tls: useTls = false, caFile, user, password, timeoutMs = 500 }) {
  return new Promise((resolve) => {
    let buf = '';
    let done = false;
    let timer = null;
    let sock = null;
    const finish = (v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (sock) sock.destroy();
      resolve(v);
    };
    const onConnect = () => {
      let out = '';
      if (password) out += user ? resp('AUTH', user, password) : resp('AUTH', password);
      sock.write(out + resp('PING'));
    };
    timer = setTimeout(() => finish(null), timeoutMs);
    try {
      sock = useTls
        ? tls.connect({ host: HOST, port, ca: fs.readFileSync(caFile) }, onConnect)
        : net.connect({ host: HOST, port }, onConnect);
    } catch {
      finish(null);
      return;
    }
    sock.setEncoding('utf8');
    sock.on('data', (d) => {
      buf += d;
      const lines = buf.split('\r\n').slice(0, -1); // whole lines
      if (!password && lines.length >= 1) finish(lines[0]);
      else if (password && lines.length >= 1 && lines[0] !== '+OK') finish(lines[0]); // AUTH refused
      else if (password && lines.length >= 2) finish(lines[1]);
    });
    sock.on('error', () => finish(null));
    sock.on('close', () => finish(null));
  });
}

function parseInfo(text) {
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    if (!line || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    if (i < 0) continue;
    const k = line.slice(0, i), v = line.slice(i + 1);
    out[k] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
  }
  return out;
}

function procState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null; // gone
  }
}

// ---- the server ----

export async function startRedis(o = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aiproxy-redis-'));
  dirs.add(dir);
  const user = o.user || null;
  const aclPassword = user ? (o.aclPassword ?? o.password ?? null) : null;
  if (user && !aclPassword) throw new Error('startRedis: an ACL user needs aclPassword (or password)');
  const password = o.password ?? null;
  const certs = o.tls ? makeCerts(dir) : null;
  let port = o.port || await freePort();

  const argsFor = (p) => {
    const a = ['--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no',
      '--logfile', '', '--protected-mode', 'no'];
    if (certs) {
      a.push('--port', '0', '--tls-port', String(p), '--tls-cert-file', certs.certFile,
        '--tls-key-file', certs.keyFile, '--tls-ca-cert-file', certs.caFile, '--tls-auth-clients', 'no');
    } else {
      a.push('--port', String(p));
    }
    if (password) a.push('--requirepass', password);
    if (user) {
      a.push('--user', user, 'on', `>${aclPassword}`, '~*', '&*', '+@all');
      if (!password) a.push('--user', 'default', 'off');
    }
    return a.concat((o.args || []).map(String));
  };

  // the client's credentials: the ACL user when there is one
  const authUser = user;
  const authPassword = user ? aclPassword : password;
  const enc = encodeURIComponent;
  const cred = authUser ? `${enc(authUser)}:${enc(authPassword)}@` : authPassword ? `:${enc(authPassword)}@` : '';
  const urlFor = (p) => `${certs ? 'rediss' : 'redis'}://${cred}${HOST}:${p}/0`;

  let proc = null;
  let log = '';
  let paused = false;
  let stopping = null;

  const launch = async () => {
    log = '';
    const p = spawn(REDIS_SERVER, argsFor(port), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    live.add(p);
    p.stdout.on('data', (d) => { log += d; });
    p.stderr.on('data', (d) => { log += d; });
    const exited = new Promise((r) => p.once('exit', r));
    p.once('exit', () => live.delete(p));
    p.once('error', (e) => { log += `\nspawn: ${e.message}\n`; });
    const deadline = Date.now() + 10000;
    for (;;) {
      if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) {
        await Promise.race([exited, sleep(200)]);
        if (certs && /TLS|tls/.test(log) && /not supported|not compiled|Bad directive|wrong number/i.test(log)) {
          throw new Error(`${REDIS_SERVER} has no TLS support (built without BUILD_TLS=yes): ` +
            log.trim().split('\n').slice(-3).join(' | '));
        }
        throw new Error(`redis-server exited at start (code ${p.exitCode}, signal ${p.signalCode}):\n${log}`);
      }
      const r = await probeRedis({ port, tls: !!certs, caFile: certs && certs.caFile,
        user: authUser, password: authPassword, timeoutMs: 300 });
      if (r === '+PONG') return;
      if (Date.now() > deadline) {
        try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
        throw new Error(`redis-server on port ${port} did not answer PING within 10 s (last: ${r}):\n${log}`);
      }
      await sleep(r === null ? 20 : 50);
    }
  };

  const stop = async () => {
    if (stopping) return stopping;
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    stopping = (async () => {
      const exited = new Promise((r) => p.once('exit', r));
      try { process.kill(p.pid, 'SIGTERM'); } catch { /* gone */ }
      if (paused) {
        try { process.kill(p.pid, 'SIGCONT'); } catch { /* gone */ }
        paused = false;
      }
      let timer;
      const killed = await Promise.race([exited.then(() => false),
        new Promise((r) => { timer = setTimeout(() => r(true), 3000); })]);
      clearTimeout(timer);
      if (killed) {
        try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
        await exited;
      }
    })();
    try { await stopping; } finally { stopping = null; }
  };

  const cliArgs = (auth) => {
    const a = ['-h', HOST, '-p', String(port), '--no-auth-warning'];
    if (certs) a.push('--tls', '--cacert', certs.caFile);
    if (auth && authUser) a.push('--user', authUser, '--pass', authPassword);
    else if (auth && authPassword) a.push('-a', authPassword);
    return a;
  };
  const runCli = (auth, args2) => new Promise((resolve, reject) => {
    execFile(REDIS_CLI, [...cliArgs(auth), ...args2.map(String)], { timeout: 5000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          err.message += `\nredis-cli ${args2.join(' ')}: ${stderr}${stdout}`;
          reject(err);
        } else {
          resolve(stdout);
        }
      });
  });

  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (e) {
      // a free port taken in the meantime: another one (unless asked for this one)
      if (o.port || attempt >= 3 || !/Address already in use/i.test(log)) throw e;
      port = await freePort();
    }
  }

  const handle = {
    host: HOST,
    get port() { return port; },
    get url() { return urlFor(port); },
    tls: !!certs,
    caFile: certs ? certs.caFile : undefined,
    password,
    user,
    aclPassword,
    dir,
    get pid() { return proc.pid; },
    get proc() { return proc; },
    logs: () => log,
    stop,
    async pause() {
      process.kill(proc.pid, 'SIGSTOP');
      paused = true;
      for (let i = 0; i < 200 && procState(proc.pid) !== 'T'; i++) await sleep(5);
    },
    async resume() {
      process.kill(proc.pid, 'SIGCONT');
      paused = false;
      for (let i = 0; i < 200 && procState(proc.pid) === 'T'; i++) await sleep(5);
    },
    async restart({ keepData = false } = {}) {
      if (keepData) await runCli(true, ['SAVE']);
      else fs.rmSync(path.join(dir, 'dump.rdb'), { force: true });
      await stop();
      await launch();
    },
    cli: (...a) => runCli(true, a),
    cliNoAuth: (...a) => runCli(false, a),
    async info(section = 'default') {
      return parseInfo(await runCli(true, ['INFO', section]));
    },
    async commandstats() {
      const out = {};
      for (const [k, v] of Object.entries(parseInfo(await runCli(true, ['INFO', 'commandstats'])))) {
        if (!k.startsWith('cmdstat_')) continue;
        const m = /(?:^|,)calls=(\d+)/.exec(String(v));
        if (m) out[k.slice('cmdstat_'.length)] = Number(m[1]);
      }
      return out;
    },
    flushall: () => runCli(true, ['FLUSHALL']),
  };
  handles.add(handle);
  return handle;
}
