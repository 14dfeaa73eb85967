// A throwaway PostgreSQL server for the tests of the PostgreSQL ledger
// (SPEC section 6; ledger-pg.test.mjs, bench/ledger-pg.sh).
//
//   pgBinDir()            the directory of initdb/postgres/psql, or null
//   startPostgres(o)      initdb into a fresh temp dir, then postgres on a
//                         free loopback port (fsync off), a user with a
//                         password and a database owned by it. Resolves
//                         {url, port, pid, dir, user, password, db,
//                          sql(q) -> rows text (psql -At, as the superuser),
//                          stop() (fast shutdown, waits), kill(signal),
//                          start() (again on the same dir and port), logs()}
//   o: {user ('aiproxy'), db ('aiproxy'), password (random)}
//
// PostgreSQL refuses to run as root: when this process is root, initdb,
// postgres and psql run as the unprivileged user `nobody` through setpriv
// (which execs, so the PID is the server's own), and the temp dir is handed
// to that user. Stopped by PID; children are killed when the process exits.

import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, sleep } from './harness.mjs';

const NOBODY = 65534;
const running = new Set();
const dirs = new Set(); // removed by destroy(), else when this process exits

process.on('exit', () => {
  for (const p of running) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const d of dirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
  }
});

/** The PostgreSQL binaries' directory (the newest /usr/lib/postgresql/N/bin, or pg_config's). */
export function pgBinDir() {
  const base = '/usr/lib/postgresql';
  try {
    const versions = fs.readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const d = path.join(base, v, 'bin');
      if (fs.existsSync(path.join(d, 'postgres')) && fs.existsSync(path.join(d, 'initdb'))) return d;
    }
  } catch { /* not there */ }
  try {
    const d = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
    if (fs.existsSync(path.join(d, 'postgres'))) return d;
  } catch { /* no pg_config */ }
  return null;
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

// argv run as the unprivileged user when we are root.
function asPgUser(argv) {
  return asRoot
    ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...argv]
    : argv;
}

function run(argv, o = {}) {
  const [cmd, ...args] = asPgUser(argv);
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', ...(o.env || {}) }, cwd: o.cwd || '/' });
}

function chownTree(dir) {
  if (!asRoot) return;
  const walk = (p) => {
    fs.chownSync(p, NOBODY, NOBODY);
    if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
  };
  walk(dir);
}

/** Starts a throwaway server; see the header. Throws when the binaries are missing. */
export async function startPostgres(o = {}) {
  const bin = pgBinDir();
  if (!bin) throw new Error('PostgreSQL binaries not found (install the postgresql package: scripts/setup.sh --test)');
  const user = o.user || 'aiproxy';
  const db = o.db || 'aiproxy';
  const password = o.password || `pw-${crypto.randomBytes(9).toString('hex')}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aiproxy-pg-'));
  dirs.add(dir);
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, 'data');
  const sock = path.join(dir, 'sock');
  fs.mkdirSync(sock);
  chownTree(dir);
  run([path.join(bin, 'initdb'), '-D', data, '-U', 'postgres', '--auth-local=trust',
    '--auth-host=scram-sha-256', '--no-sync', '-E', 'UTF8', '--locale=C']);
  const port = await freePort();
  let proc = null;
  let log = '';

  const psql = (q, dbname = 'postgres') => run([path.join(bin, 'psql'), '-h', sock, '-p', String(port), '-U', 'postgres',
    '-d', dbname, '-v', 'ON_ERROR_STOP=1', '-At', '-c', q]).trim();

  async function start() {
    const [cmd, ...args] = asPgUser([path.join(bin, 'postgres'), '-D', data, '-p', String(port), '-k', sock,
      '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'full_page_writes=off',
      '-c', 'synchronous_commit=off', '-c', 'max_connections=50']);
    proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/', env: { ...process.env, LC_ALL: 'C' } });
    running.add(proc);
    proc.on('exit', () => running.delete(proc));
    proc.stdout.on('data', (d) => { log += d; });
    proc.stderr.on('data', (d) => { log += d; });
    const deadline = Date.now() + 15000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`postgres exited at start:\n${log}`);
      try {
        run([path.join(bin, 'pg_isready'), '-q', '-h', sock, '-p', String(port)]);
        break;
      } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`postgres not ready within 15 s:\n${log}`);
      await sleep(50);
    }
  }

  async function waitExit(p, ms) {
    if (p.exitCode !== null || p.signalCode !== null) return;
    await Promise.race([new Promise((r) => p.once('exit', r)), sleep(ms)]);
  }

  const handle = {
    port,
    dir,
    user,
    password,
    db,
    url: `postgres://${user}:${password}@127.0.0.1:${port}/${db}`,
    get pid() { return proc ? proc.pid : undefined; },
    logs: () => log,
    sql: (q) => psql(q, db),
    start,
    /** Fast shutdown (SIGINT: clients disconnected, transactions aborted); waits for the exit. */
    async stop() {
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const p = proc;
      process.kill(p.pid, 'SIGINT');
      await waitExit(p, 10000);
      if (p.exitCode === null && p.signalCode === null) {
        process.kill(p.pid, 'SIGKILL');
        await waitExit(p, 3000);
      }
    },
    kill(signal = 'SIGKILL') {
      if (proc && proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, signal);
    },
    /** Stops the server and removes its directory. */
    async destroy() {
      await handle.stop();
      try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* ignore */ }
      dirs.delete(dir);
    },
  };
  await start();
  psql(`CREATE ROLE ${user} LOGIN PASSWORD '${password}'`);
  psql(`CREATE DATABASE ${db} OWNER ${user}`);
  return handle;
}
