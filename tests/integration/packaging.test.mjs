// Packaging for operators (issue 6 item 7): packaging/systemd, packaging/docker,
// packaging/prometheus and docs/operations.md, each checked against the real
// binary where it can be:
//   - the systemd unit: parsed (hardening, reload, stop timeout vs drain),
//     its ExecStart arguments run by the built aiproxyd, `systemd-analyze
//     verify` and an offline `systemd-analyze security` exposure bound when
//     systemd-analyze exists; the sysusers file applied to a scratch root;
//   - the Dockerfile: multi-stage, non-root, no build tools at run time, one
//     runtime package per shared library `ldd` reports (mapped by dpkg -S);
//     the build stage replayed without Docker (the .dockerignore'd context
//     copied to a temp dir, `make` run there); the image's config checked;
//     the HEALTHCHECK command run against a live gateway;
//   - the Prometheus files: YAML parsed, every metric and label an alert uses
//     present in a live /metrics (both the keyed API listener and the
//     prometheus_port listener), the instant alerts evaluated against real
//     conditions (a provider down, 85% of the daily budget spent);
//     `promtool check` when promtool is installed;
//   - docs/operations.md names every file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import * as h from './harness.mjs';
import { startRedis } from './redis-harness.mjs';

const P = (...a) => path.join(h.REPO, ...a);
const UNIT = P('packaging/systemd/aiproxyd.service');
const SYSUSERS = P('packaging/systemd/aiproxy.sysusers');
const DOCKERFILE = P('packaging/docker/Dockerfile');
const DOCKER_CONFIG = P('packaging/docker/aiproxy.yaml');
const DOCKERIGNORE = P('.dockerignore');
const PROM = P('packaging/prometheus/prometheus.yml');
const ALERTS = P('packaging/prometheus/aiproxy-alerts.yml');
const OPS = P('docs/operations.md');
const LOGROTATE = P('packaging/logrotate/aiproxy');
const AIPROXYCTL = path.join(path.dirname(h.AIPROXYD), 'aiproxyctl');

const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
const run = (cmd, args, o = {}) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 120000, ...o });

after(() => h.killAll());

// ---------------------------------------------------------------- systemd --

/** Parses a unit file: {Section: {Key: [values...]}} (continuations joined). */
function parseUnit(text) {
  const out = {};
  let sec = null;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i].trim();
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + ' ' + lines[++i].trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) { sec = out[s[1]] = out[s[1]] || {}; continue; }
    const eq = line.indexOf('=');
    assert.ok(sec && eq > 0, `unit line outside a section or without '=': ${line}`);
    const k = line.slice(0, eq).trim();
    (sec[k] = sec[k] || []).push(line.slice(eq + 1).trim());
  }
  return out;
}

/** systemd time span ("45s", "1min 30s", "90") in seconds. */
function seconds(span) {
  const units = { ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600 };
  if (/^\d+$/.test(span)) return Number(span);
  let total = 0;
  for (const m of span.matchAll(/(\d+)\s*(ms|sec|s|min|m|h)\b/g)) total += Number(m[1]) * units[m[2]];
  return total;
}

test('systemd unit: foreground service, reload by SIGHUP, stop timeout above the drain, hardening', () => {
  const u = parseUnit(fs.readFileSync(UNIT, 'utf8'));
  const s = u.Service;
  assert.ok(s, 'no [Service] section');
  assert.ok(u.Unit && u.Install, '[Unit] and [Install] sections');
  const one = (k) => {
    assert.ok(s[k], `[Service] ${k}= missing`);
    return s[k][s[k].length - 1]; // the last assignment wins
  };
  assert.equal(one('Type'), 'simple');
  assert.equal(one('User'), 'aiproxy');
  assert.equal(one('WorkingDirectory'), '/var/lib/aiproxy');
  assert.equal(one('EnvironmentFile'), '-/etc/aiproxy/aiproxy.env');
  assert.equal(one('ExecStart'), '/usr/local/bin/aiproxyd --config /etc/aiproxy/aiproxy.yaml');
  assert.match(one('ExecReload'), /^\/bin\/kill -(HUP|SIGHUP|s HUP) \$MAINPID$/, 'ExecReload must send SIGHUP to the main process');
  assert.equal(one('Restart'), 'on-failure');
  assert.equal(one('LimitNOFILE'), '65536');
  assert.equal(one('StateDirectory'), 'aiproxy');
  assert.match(one('ReadWritePaths'), /(^|\s)\/var\/lib\/aiproxy(\s|$)/);
  // SIGTERM drains for server.drain_timeout (default 30s, see `aiproxyd --check`'s
  // defaults in src/config/parse.c); systemd must wait longer before SIGKILL.
  if (s.KillSignal) assert.equal(one('KillSignal'), 'SIGTERM');
  assert.ok(seconds(one('TimeoutStopSec')) > 30, `TimeoutStopSec=${one('TimeoutStopSec')} must exceed the 30s default drain_timeout`);

  const want = {
    NoNewPrivileges: 'yes', ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes',
    PrivateDevices: 'yes', ProtectKernelTunables: 'yes', ProtectKernelModules: 'yes',
    ProtectKernelLogs: 'yes', ProtectControlGroups: 'yes', RestrictNamespaces: 'yes',
    LockPersonality: 'yes', MemoryDenyWriteExecute: 'yes', RestrictRealtime: 'yes',
    SystemCallArchitectures: 'native',
  };
  for (const [k, v] of Object.entries(want)) assert.equal(one(k), v, `${k}=${v}`);
  assert.deepEqual(one('RestrictAddressFamilies').split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_UNIX']);
  assert.ok(s.SystemCallFilter.includes('@system-service'), 'SystemCallFilter=@system-service');
  assert.equal(one('CapabilityBoundingSet'), '', 'CapabilityBoundingSet= must be empty (no capabilities)');
  if (s.AmbientCapabilities) assert.equal(one('AmbientCapabilities'), '', 'no ambient capabilities by default');
  // The port <1024 recipe is documented in the unit.
  assert.match(fs.readFileSync(UNIT, 'utf8'), /AmbientCapabilities=CAP_NET_BIND_SERVICE/);
});

test('systemd unit: ExecStart/ExecStartPre arguments are ones the built aiproxyd accepts', () => {
  const u = parseUnit(fs.readFileSync(UNIT, 'utf8'));
  for (const k of ['ExecStartPre', 'ExecStart']) {
    for (const line of u.Service[k] || []) {
      const argv = line.replace(/^[-@:+!]+/, '').split(/\s+/);
      assert.equal(path.basename(argv[0]), 'aiproxyd', `${k} runs aiproxyd: ${line}`);
      // Same arguments, our config, plus --check: exit 0 only if every option is known.
      const args = argv.slice(1).map((a) => (a === '/etc/aiproxy/aiproxy.yaml' ? DOCKER_CONFIG : a));
      if (!args.includes('--check')) args.push('--check');
      const r = run(h.AIPROXYD, args);
      assert.equal(r.status, 0, `${k}: aiproxyd ${args.join(' ')}\n${r.stdout}${r.stderr}`);
    }
  }
});

test('systemd unit: systemd-analyze verify and an offline security review', { skip: !have('systemd-analyze') && 'systemd-analyze not installed' }, () => {
  const dir = h.tempDir('aiproxy-unit-');
  const copy = path.join(dir, 'aiproxyd.service');
  // The unit names /usr/local/bin/aiproxyd; verify checks that it is executable.
  fs.writeFileSync(copy, fs.readFileSync(UNIT, 'utf8').replaceAll('/usr/local/bin/aiproxyd', h.AIPROXYD));
  const v = run('systemd-analyze', ['verify', copy]);
  // systemd-analyze exits 0 on an unknown directive or a bad value and only
  // warns: any line naming our unit is a failure too.
  const ours = (v.stderr + v.stdout).split('\n').filter((l) => l.includes('aiproxyd.service'));
  assert.equal(v.status, 0, `systemd-analyze verify failed:\n${v.stdout}${v.stderr}`);
  assert.deepEqual(ours, [], `systemd-analyze verify complained about the unit:\n${ours.join('\n')}`);

  // Exposure 0 (locked down) .. 10 (unprotected); the unit scores about 1.6.
  // --threshold is in tenths: fail above 2.0.
  const sec = run('systemd-analyze', ['security', '--offline=true', '--threshold=20', '--no-pager', copy]);
  const level = /Overall exposure level for aiproxyd\.service: ([\d.]+)/.exec(sec.stdout + sec.stderr);
  assert.ok(level, `no exposure level in:\n${sec.stdout}${sec.stderr}`);
  assert.equal(sec.status, 0, `exposure ${level[1]} is above 2.0:\n${sec.stdout}`);
});

test('systemd sysusers: declares the aiproxy system user (applied to a scratch root when systemd-sysusers exists)', () => {
  const lines = fs.readFileSync(SYSUSERS, 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  assert.ok(lines.some((l) => /^u\s+aiproxy\s/.test(l)), `no "u aiproxy ..." line in ${SYSUSERS}`);
  if (!have('systemd-sysusers')) return;
  const root = h.tempDir('aiproxy-sysroot-');
  fs.mkdirSync(path.join(root, 'etc'));
  const r = run('systemd-sysusers', [`--root=${root}`, SYSUSERS]);
  assert.equal(r.status, 0, r.stderr);
  const passwd = fs.readFileSync(path.join(root, 'etc/passwd'), 'utf8');
  const row = passwd.split('\n').find((l) => l.startsWith('aiproxy:'));
  assert.ok(row, `aiproxy not created:\n${passwd}`);
  const [, , uid, , , home, shell] = row.split(':');
  assert.ok(Number(uid) > 0 && Number(uid) < 1000, `a system uid: ${uid}`);
  assert.equal(home, '/var/lib/aiproxy');
  assert.match(shell, /nologin$/);
});

// ---------------------------------------------------------------- Docker --

/** Dockerfile -> [{name, from, instrs: [{op, args}]}], continuations joined. */
function parseDockerfile(text) {
  const stages = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i];
    if (/^\s*#/.test(line) || !line.trim()) continue;
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      i++;
      if (/^\s*#/.test(lines[i])) continue; // comments inside a continuation are dropped
      line = line.replace(/\\\s*$/, ' ') + lines[i].trim();
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    assert.ok(m, `bad Dockerfile line: ${line}`);
    const op = m[1].toUpperCase();
    const args = m[2].trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args.replace(/--platform=\S+\s+/, ''));
      stages.push({ from: f[1], name: f[2] || String(stages.length), instrs: [] });
      continue;
    }
    assert.ok(stages.length, `${op} before the first FROM`);
    stages[stages.length - 1].instrs.push({ op, args });
  }
  return stages;
}

/** The package names of every `apt-get install` in a stage's RUN lines. */
function aptPackages(stage) {
  const pkgs = [];
  for (const { op, args } of stage.instrs) {
    if (op !== 'RUN') continue;
    for (const cmd of args.split(/&&|;|\|\|/)) {
      const m = /apt-get\s+(?:-\S+\s+)*install\s+(.*)$/.exec(cmd.trim());
      if (!m) continue;
      for (const w of m[1].split(/\s+/)) if (w && !w.startsWith('-')) pkgs.push(w.replace(/[=:].*$/, ''));
    }
  }
  return pkgs;
}

/** The Debian package owning each shared library `ldd bin` resolves. */
function neededPackages(bin) {
  const r = run('ldd', [bin]);
  assert.equal(r.status, 0, `ldd ${bin}: ${r.stderr}`);
  assert.doesNotMatch(r.stdout, /not found/, `unresolved libraries:\n${r.stdout}`);
  const out = new Map(); // soname -> package
  for (const m of r.stdout.matchAll(/^\s*(\S+)\s+=>\s+(\/\S+)/gm)) {
    const [, soname, file] = m;
    // usrmerge: ldd says /lib/..., dpkg knows /usr/lib/... (or the other way).
    const tries = [file, file.startsWith('/usr/') ? file.slice(4) : `/usr${file}`, fs.realpathSync(file)];
    let pkg = null;
    for (const t of tries) {
      const d = run('dpkg', ['-S', t]);
      if (d.status === 0) { pkg = d.stdout.split('\n')[0].split(':')[0].trim(); break; }
    }
    assert.ok(pkg, `no Debian package owns ${file} (${soname})`);
    out.set(soname, pkg);
  }
  return out;
}

/**
 * Packages every debian:12-slim image has already: libc6 and the libraries
 * apt and dpkg themselves load, and anything of Priority: required.
 */
const SLIM_BASE = new Set(['libc6', 'libgcc-s1', 'libstdc++6', 'zlib1g', 'libzstd1', 'liblzma5',
  'libbz2-1.0', 'libcrypt1', 'libselinux1', 'libpcre2-8-0', 'libacl1', 'libattr1', 'libmd0', 'libudev1']);
function inBaseImage(pkg) {
  if (SLIM_BASE.has(pkg)) return true;
  const r = run('dpkg-query', ['-W', '-f=${Priority}', pkg]);
  return r.status === 0 && r.stdout.trim() === 'required';
}

test('Dockerfile: multi-stage on debian:12-slim, build tools only in the build stage, non-root runtime', () => {
  const stages = parseDockerfile(fs.readFileSync(DOCKERFILE, 'utf8'));
  assert.ok(stages.length >= 2, `multi-stage: ${stages.length} FROM`);
  for (const s of stages) assert.equal(s.from, 'debian:12-slim', `stage ${s.name} FROM`);
  const [build] = stages;
  const rt = stages[stages.length - 1];

  // The build stage installs what scripts/setup.sh installs to build.
  const setup = fs.readFileSync(P('scripts/setup.sh'), 'utf8');
  const buildPkgs = /build_pkgs=\(([^)]*)\)/.exec(setup)[1].split(/\s+/).filter(Boolean);
  const bp = aptPackages(build);
  for (const p of buildPkgs) assert.ok(bp.includes(p), `build stage misses ${p} (scripts/setup.sh build_pkgs)`);
  assert.ok(build.instrs.some((i) => i.op === 'RUN' && /\bmake\b.*BUILD=build/.test(i.args)), 'build stage runs make BUILD=build');

  // Runtime: no compilers, headers, pkg-config, make, curl.
  const rp = aptPackages(rt);
  assert.ok(rp.length, 'runtime stage installs its libraries with apt-get install');
  for (const p of rp) {
    assert.ok(!/-dev$|^build-essential$|^gcc|^g\+\+|^clang|^make$|^pkg-config$|^curl$|^wget$/.test(p), `build or fetch tool in the runtime stage: ${p}`);
  }
  assert.ok(rp.includes('ca-certificates'), 'ca-certificates (providers are https)');
  assert.ok(rt.instrs.some((i) => i.op === 'RUN' && /rm -rf \/var\/lib\/apt\/lists/.test(i.args)), 'apt lists removed');
  const copies = rt.instrs.filter((i) => i.op === 'COPY' && new RegExp(`--from=${build.name}\\b`).test(i.args));
  assert.ok(copies.some((c) => /build\/aiproxyd\b/.test(c.args) && /build\/aiproxyctl\b/.test(c.args)), 'both binaries copied from the build stage');

  // Non-root: USER is set, is not root, and the user is created with uid 10001.
  const users = rt.instrs.filter((i) => i.op === 'USER');
  assert.ok(users.length, 'runtime stage has a USER');
  const user = users[users.length - 1].args.split(':')[0];
  assert.ok(!['root', '0'].includes(user), `USER ${user} is root`);
  const mk = rt.instrs.find((i) => i.op === 'RUN' && new RegExp(`useradd\\b.*\\b${user}\\b`).test(i.args));
  assert.ok(mk, `the runtime stage creates user ${user}`);
  assert.match(mk.args, /--uid 10001\b/, 'uid 10001');
  const workdir = rt.instrs.filter((i) => i.op === 'WORKDIR').pop();
  assert.equal(workdir && workdir.args, '/var/lib/aiproxy');
  assert.match(mk.args, new RegExp(`install -d -o ${user}\\b[^&]*/var/lib/aiproxy`), '/var/lib/aiproxy owned by the user');
  // USER comes after everything that needs root.
  const userAt = rt.instrs.lastIndexOf(users[users.length - 1]);
  assert.ok(!rt.instrs.slice(userAt).some((i) => i.op === 'RUN'), 'no RUN after USER');

  const op1 = (op) => { const i = rt.instrs.filter((x) => x.op === op).pop(); assert.ok(i, `${op} missing`); return i.args; };
  assert.match(op1('EXPOSE'), /\b8080\b/);
  assert.deepEqual(JSON.parse(op1('ENTRYPOINT')), ['aiproxyd']);
  assert.deepEqual(JSON.parse(op1('CMD')), ['--config', '/etc/aiproxy/aiproxy.yaml']);
  assert.ok(rt.instrs.some((i) => i.op === 'COPY' && /packaging\/docker\/aiproxy\.yaml\s+\/etc\/aiproxy\/aiproxy\.yaml$/.test(i.args)), 'the image ships /etc/aiproxy/aiproxy.yaml');
  assert.match(op1('HEALTHCHECK'), /CMD\s+\[/);
});

let replayBins = null; // set by the build-stage replay below

/** Docker's .dockerignore matching (Go filepath.Match plus **), with ! exceptions. */
function dockerignore(text) {
  const rules = [];
  for (let l of text.split('\n')) {
    l = l.trim();
    if (!l || l.startsWith('#')) continue;
    const neg = l.startsWith('!');
    if (neg) l = l.slice(1).trim();
    l = path.posix.normalize(l.replace(/^\/+/, ''));
    let re = '';
    for (let i = 0; i < l.length; i++) {
      const c = l[i];
      if (l.startsWith('**/', i)) { re += '(?:.*/)?'; i += 2; }
      else if (l.startsWith('**', i)) { re += '.*'; i += 1; }
      else if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    rules.push({ neg, re: new RegExp(`^${re}$`) });
  }
  return (file) => {
    const parts = file.split('/');
    let excluded = false;
    for (const r of rules) {
      // A pattern matching a parent directory excludes the file too.
      let hit = false;
      for (let n = 1; n <= parts.length && !hit; n++) hit = r.re.test(parts.slice(0, n).join('/'));
      if (hit) excluded = !r.neg;
    }
    return excluded;
  };
}

test('.dockerignore: leaves out build dirs and local state, keeps what the build stage needs; the build stage replayed without Docker', { timeout: 300000 }, () => {
  const ignored = dockerignore(fs.readFileSync(DOCKERIGNORE, 'utf8'));
  for (const p of ['build/aiproxyd', 'build-asan/aiproxyd', 'data/costs.db', 'tests/node_modules/yaml/package.json',
    'node_modules/x', 'tests/out/build/dashboard.png', '.git/HEAD', 'src/core/x.o']) {
    assert.ok(ignored(p), `${p} should be left out of the build context`);
  }
  // The context: every tracked file .dockerignore keeps (outside a git
  // checkout: every file under the repo).
  const ls = run('git', ['ls-files', '-z'], { cwd: h.REPO });
  const files = (ls.status === 0
    ? ls.stdout.split('\0').filter(Boolean)
    : fs.readdirSync(h.REPO, { recursive: true }).map(String).filter((f) => !ignored(f)))
    .filter((f) => fs.existsSync(P(f)) && fs.statSync(P(f)).isFile());
  const kept = files.filter((f) => !ignored(f));
  for (const need of ['Makefile', 'scripts/embed-assets.sh', 'packaging/docker/aiproxy.yaml', 'src/aiproxyd.c', 'assets/dashboard/app.js']) {
    assert.ok(kept.includes(need), `${need} is needed by the build stage but .dockerignore drops it`);
  }
  // Replay `COPY . .` + `RUN make ... BUILD=build && aiproxyd --check` in a temp dir.
  const ctx = h.tempDir('aiproxy-docker-ctx-');
  for (const f of kept) {
    fs.mkdirSync(path.dirname(path.join(ctx, f)), { recursive: true });
    fs.copyFileSync(P(f), path.join(ctx, f));
    fs.chmodSync(path.join(ctx, f), fs.statSync(P(f)).mode);
  }
  const mk = run('make', ['-s', `-j${Math.max(2, os.availableParallelism ? os.availableParallelism() : 2)}`, 'BUILD=build'], { cwd: ctx, timeout: 280000 });
  assert.equal(mk.status, 0, `make in the Docker build context failed:\n${mk.stdout}\n${mk.stderr}`);
  const bin = path.join(ctx, 'build/aiproxyd');
  replayBins = [bin, path.join(ctx, 'build/aiproxyctl')];
  const chk = run(bin, ['--config', path.join(ctx, 'packaging/docker/aiproxy.yaml'), '--check'], { env: { PATH: process.env.PATH } });
  assert.equal(chk.status, 0, chk.stdout + chk.stderr);
});

test('Dockerfile: the runtime stage installs the Debian package of every shared library aiproxyd and aiproxyctl load', (t) => {
  const stages = parseDockerfile(fs.readFileSync(DOCKERFILE, 'utf8'));
  const rp = new Set(aptPackages(stages[stages.length - 1]));
  // The binaries the image's build stage makes (the replay above); else the
  // ones under test, unless they are a sanitizer build (other libraries).
  let bins = replayBins;
  if (!bins) {
    bins = [h.AIPROXYD, AIPROXYCTL];
    if (/libasan/.test(run('ldd', [h.AIPROXYD]).stdout)) {
      const plain = [P('build/aiproxyd'), P('build/aiproxyctl')];
      if (!plain.every((f) => fs.existsSync(f))) return t.skip('only a sanitizer build is available');
      bins = plain;
    }
  }
  const missing = [];
  for (const bin of bins) {
    for (const [soname, pkg] of neededPackages(bin)) {
      if (inBaseImage(pkg)) continue; // libc6 and friends
      // A sanitizer build (AIPROXYD=build-asan/aiproxyd) loads libasan/libubsan:
      // the image ships the plain build.
      if (/^lib(a|ub|t|l|hwa)san\.so/.test(soname)) continue;
      if (!rp.has(pkg)) missing.push(`${path.basename(bin)}: ${soname} is in ${pkg}`);
    }
  }
  assert.deepEqual(missing, [], `runtime stage misses packages:\n${missing.join('\n')}`);
  // And nothing installed that no binary loads, except ca-certificates,
  // libevent-pthreads (linked with --as-needed, kept for a build that uses it)
  // and libpq5 (loaded when a PostgreSQL ledger is configured: budget/pq_dl.h).
  const used = new Set(bins.flatMap((b) => [...neededPackages(b).values()]));
  for (const p of rp) {
    if (['ca-certificates', 'libevent-pthreads-2.1-7', 'libpq5'].includes(p)) continue;
    assert.ok(used.has(p), `runtime package ${p} is loaded by neither binary`);
  }
});

test('Docker image config: valid, listens on 0.0.0.0:8080, ledger under the working directory; --listen overrides', () => {
  const r = run(h.AIPROXYD, ['--config', DOCKER_CONFIG, '--check'], { env: { PATH: process.env.PATH } });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^listen: 0\.0\.0\.0:8080 /m, 'inside a container the gateway must listen on 0.0.0.0');
  assert.match(r.stdout, /ledger data\/costs\.db/);
  // Provider keys come from the environment.
  const withKey = run(h.AIPROXYD, ['--config', DOCKER_CONFIG, '--check'], { env: { PATH: process.env.PATH, OPENAI_API_KEY: 'sk-x' } });
  assert.match(withKey.stdout, /openai \(openai\) \S+ priority 1: available/);
  const moved = run(h.AIPROXYD, ['--config', DOCKER_CONFIG, '--listen', '0.0.0.0:9999', '--check']);
  assert.match(moved.stdout, /^listen: 0\.0\.0\.0:9999 /m);
});

test('Dockerfile HEALTHCHECK: its command passes against a ready gateway (auth on, no key), fails when nothing listens', { timeout: 30000 }, async (t) => {
  const stages = parseDockerfile(fs.readFileSync(DOCKERFILE, 'utf8'));
  const hc = stages[stages.length - 1].instrs.find((i) => i.op === 'HEALTHCHECK');
  const cmd = JSON.parse(/CMD\s+(\[.*\])\s*$/.exec(hc.args)[1]);
  assert.ok(!/curl|wget/.test(cmd.join(' ')), 'no curl/wget in the image');
  const fake = await h.startFake({ name: 'hc', apiKey: 'sk-test-1' });
  const gw = await h.gatewayFor(t, h.baseConfig({
    fakePort: fake.port,
    extra: { security: { auth: { enabled: true, api_keys: [{ key: 'k-admin', name: 'ops', role: 'admin' }] } } },
  }));
  const probe = (port) => run(cmd[0], cmd.slice(1), { env: { PATH: process.env.PATH, AIPROXY_HEALTH_PORT: String(port) }, timeout: 10000 });
  const ok = probe(gw.port);
  assert.equal(ok.status, 0, `healthcheck against a ready node: ${ok.stderr}`);
  const dead = probe(await h.freePort());
  assert.notEqual(dead.status, 0, 'healthcheck must fail when nothing listens');
  // The aiproxyctl alternative the Dockerfile mentions: exit 0 with a key, 1 without.
  const ctlOk = run(AIPROXYCTL, ['--url', gw.url, '--key', 'k-admin', 'status']);
  assert.equal(ctlOk.status, 0, ctlOk.stdout + ctlOk.stderr);
  const ctlNoKey = run(AIPROXYCTL, ['--url', gw.url, 'status'], { env: { PATH: process.env.PATH } });
  assert.equal(ctlNoKey.status, 1);
});

// ------------------------------------------------------------ Prometheus --

const PROMQL_WORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left',
  'group_right', 'bool', 'offset', 'inf', 'nan', 'le']);

/**
 * The selectors of a PromQL expression: [{name, matchers: [{label, op, value}]}].
 * Identifiers followed by "(" are functions/aggregations; "by (...)" label
 * lists, range selectors and string literals are skipped.
 */
function selectors(expr) {
  const out = [];
  let e = expr.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  e = e.replace(/\[[^\]]*\]/g, ' ');
  const re = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\})?\s*(\()?|"(?:[^"\\]|\\.)*"|\{[^}]*\}/g;
  for (const m of e.matchAll(re)) {
    if (!m[1] || m[4] || PROMQL_WORDS.has(m[1].toLowerCase())) continue;
    if (/^\d/.test(m[1])) continue;
    const matchers = [];
    if (m[3]) {
      for (const mm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
        matchers.push({ label: mm[1], op: mm[2], value: mm[3] });
      }
    }
    out.push({ name: m[1], matchers });
  }
  return out;
}

function parseExposition(text) {
  const series = [];
  const families = new Map();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)/.exec(line);
    if (t) { families.set(t[1], t[2]); continue; }
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable metrics line: ${line}`);
    const labels = {};
    if (m[3]) for (const kv of m[3].matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    series.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return { series, families };
}

const matches = (s, ms) => ms.every(({ label, op, value }) => {
  const v = s.labels[label] ?? '';
  if (op === '=') return v === value;
  if (op === '!=') return v !== value;
  const re = new RegExp(`^(?:${value})$`);
  return op === '=~' ? re.test(v) : !re.test(v);
});

/**
 * Evaluates the alert expressions that are instant comparisons of one selector,
 * or of a ratio of two, with a number: "sel OP n" and "sel / sel OP n". Returns
 * null for anything else (rates, aggregations: those need Prometheus).
 * The result: the label sets (as JSON strings) for which the alert fires.
 */
function evalInstant(expr, series) {
  const sel = String.raw`([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?`;
  const m = new RegExp(String.raw`^\s*${sel}\s*(?:/\s*${sel}\s*)?(==|!=|>=|<=|>|<)\s*([\d.]+)\s*$`).exec(expr);
  if (!m) return null;
  const pick = (name, body) => {
    const ms = selectors(`${name}{${body || ''}}`)[0].matchers;
    return series.filter((s) => s.name === name && matches(s, ms));
  };
  const cmp = { '==': (a, b) => a === b, '!=': (a, b) => a !== b, '>=': (a, b) => a >= b, '<=': (a, b) => a <= b, '>': (a, b) => a > b, '<': (a, b) => a < b }[m[5]];
  const n = Number(m[6]);
  const key = (s) => JSON.stringify(Object.fromEntries(Object.entries(s.labels).sort()));
  const left = pick(m[1], m[2]);
  if (!m[3]) return left.filter((s) => cmp(s.value, n)).map(key);
  const right = new Map(pick(m[3], m[4]).map((s) => [key(s), s.value]));
  return left.filter((s) => right.has(key(s)) && cmp(s.value / right.get(key(s)), n)).map(key);
}

function loadRules() {
  const doc = YAML.parse(fs.readFileSync(ALERTS, 'utf8'));
  assert.ok(doc && Array.isArray(doc.groups) && doc.groups.length, 'alert rules: groups[]');
  const rules = doc.groups.flatMap((g) => {
    assert.ok(g.name && Array.isArray(g.rules), 'each group has a name and rules');
    return g.rules;
  });
  for (const r of rules) {
    assert.ok(r.alert && typeof r.expr === 'string', `rule needs alert and expr: ${JSON.stringify(r)}`);
    assert.ok(r.labels && r.labels.severity, `${r.alert}: labels.severity`);
    assert.ok(r.annotations && r.annotations.summary, `${r.alert}: annotations.summary`);
    if (r.for !== undefined) assert.match(r.for, /^\d+[smhd]$/, `${r.alert}: for`);
  }
  return rules;
}

test('Prometheus files: YAML parses; the scrape config loads the rules and scrapes /metrics with a bearer key; the required alerts exist', () => {
  const cfg = YAML.parse(fs.readFileSync(PROM, 'utf8'));
  assert.ok(cfg.rule_files.includes('aiproxy-alerts.yml'), 'rule_files names aiproxy-alerts.yml');
  const job = cfg.scrape_configs.find((j) => j.job_name === 'aiproxy');
  assert.ok(job, 'a job named aiproxy (the alerts match up{job="aiproxy"})');
  assert.equal(job.metrics_path, '/metrics');
  assert.equal(job.authorization.type, 'Bearer');
  assert.ok(job.authorization.credentials_file || job.authorization.credentials, 'bearer credentials');
  assert.ok(job.static_configs[0].targets.length, 'targets');
  // The prometheus_port variant is documented beside it.
  assert.match(fs.readFileSync(PROM, 'utf8'), /prometheus_port/);

  const rules = loadRules();
  const uses = (re) => rules.filter((r) => re.test(r.expr));
  assert.ok(uses(/aiproxy_provider_up\b/).length, 'a provider-down alert on aiproxy_provider_up');
  assert.ok(uses(/aiproxy_provider_circuit_state\{[^}]*state="open"/).length, 'a circuit-open alert');
  assert.ok(uses(/aiproxy_budget_spend_usd\{window="day"\}\s*\/\s*aiproxy_budget_limit_usd\{window="day"\}\s*>=\s*0\.8\b/).length, 'budget at 80% of the daily limit');
  assert.ok(uses(/status_class="5xx"/).filter((r) => /\[5m\]/.test(r.expr) && /0\.05/.test(r.expr)).length, '5xx ratio over 5m above 5%');
  assert.ok(uses(/aiproxy_ledger_queue_depth/).length, 'ledger queue alert');
});

test('Prometheus alerts: every metric and label used exists in a live /metrics; the instant alerts fire on a real provider outage and 85% of the daily budget', { timeout: 60000 }, async (t) => {
  const fake = await h.startFake({ name: 'prom', apiKey: 'sk-test-1' });
  // Each answer: 1000 tokens in, 1000 out = $0.001 + $0.002 = $0.003.
  await fake.control({ default: { usage: { prompt_tokens: 1000, completion_tokens: 1000 } } });
  const promPort = await h.freePort();
  const KEY = 'prom-scrape-key';
  // A shared store too, so that its metrics exist (they are exported only with one).
  const redis = await startRedis();
  t.after(() => redis.stop());
  const cfg = h.baseConfig({
    fakePort: fake.port,
    providers: {
      p1: h.provider(fake),
      // Credentials from an unset variable: loaded but unavailable, i.e. down.
      p2: { ...h.provider(fake, { priority: 2 }), credentials: { api_key: '${AIPROXY_TEST_UNSET_KEY}' } },
    },
    extra: {
      // $0.003 spent of $0.00353 = 85% of the day; the month is at 0.3%.
      budget: { daily_limit: 0.003 / 0.85, monthly_limit: 1 },
      cluster: { redis: { url: redis.url, prefix: `prom${process.pid}:` } },
      security: { auth: { enabled: true, api_keys: [{ key: KEY, name: 'prometheus' }] } },
      observability: { logging: { level: 'info', format: 'json' }, metrics: { enabled: true, prometheus_port: promPort } },
    },
  });
  const gw = await h.gatewayFor(t, cfg, { env: { AIPROXY_TEST_UNSET_KEY: null } });
  const r = await h.request(gw.url + '/v1/chat/completions', {
    body: h.chatBody('hello', { max_tokens: 1000 }), headers: { authorization: `Bearer ${KEY}` },
  });
  assert.equal(r.status, 200, r.text);
  await h.waitFor(async () => {
    const m = await h.request(gw.url + '/metrics', { headers: { authorization: `Bearer ${KEY}` } });
    return /aiproxy_ledger_committed_total [1-9]/.test(m.text);
  }, 5000, 50, 'the ledger to commit the request');

  // Option (a): the API listener wants the key; option (b): prometheus_port does not.
  const noKey = await h.request(gw.url + '/metrics');
  assert.equal(noKey.status, 401, 'GET /metrics without a key when auth is on');
  const a = await h.request(gw.url + '/metrics', { headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(a.status, 200, a.text);
  const b = await h.request(`http://127.0.0.1:${promPort}/metrics`);
  assert.equal(b.status, 200, `prometheus_port listener: ${b.text}`);
  const ea = parseExposition(a.text);
  const eb = parseExposition(b.text);
  assert.deepEqual([...eb.families.keys()].sort(), [...ea.families.keys()].sort(), 'both listeners export the same families');

  const exported = (name) => ea.families.has(name) || ea.series.some((s) => s.name === name);
  const rules = loadRules();
  const problems = [];
  for (const rule of rules) {
    for (const { name, matchers } of selectors(rule.expr)) {
      if (name === 'up') continue; // Prometheus' own per-target series
      if (!name.startsWith('aiproxy_')) { problems.push(`${rule.alert}: ${name} is not an aiproxy metric`); continue; }
      const base = name.replace(/_(bucket|sum|count)$/, '');
      if (!exported(name) && !(base !== name && ea.families.get(base) === 'histogram')) {
        problems.push(`${rule.alert}: ${name} is not exported`);
        continue;
      }
      if (matchers.length && !ea.series.some((s) => s.name === name && matches(s, matchers))) {
        problems.push(`${rule.alert}: no series ${name}{${matchers.map((x) => `${x.label}${x.op}"${x.value}"`).join(',')}}`);
      }
    }
  }
  assert.deepEqual(problems, [], `alert rules reference what aiproxyd does not export:\n${problems.join('\n')}`);

  const fired = (alert) => {
    const rule = rules.find((x) => x.alert === alert);
    assert.ok(rule, `rule ${alert}`);
    const res = evalInstant(rule.expr, ea.series);
    assert.ok(res, `${alert}: expected an instant expression, got ${rule.expr}`);
    return res.map((s) => JSON.parse(s));
  };
  const down = fired('AiproxyProviderDown');
  assert.deepEqual(down.map((l) => l.provider), ['p2'], 'provider down fires for p2 (unavailable) and not for p1');
  assert.deepEqual(fired('AiproxyProviderCircuitOpen'), [], 'no circuit open');
  assert.deepEqual(fired('AiproxyBudgetDaily80').map((l) => l.window), ['day'], 'daily budget past 80%');
  assert.deepEqual(fired('AiproxyBudgetMonthly80'), [], 'monthly budget well below 80%');
});

test('Prometheus: promtool check rules and config', { skip: !have('promtool') && 'promtool not installed (Debian package prometheus)' }, () => {
  const rr = run('promtool', ['check', 'rules', ALERTS]);
  assert.equal(rr.status, 0, rr.stdout + rr.stderr);
  const dir = h.tempDir('aiproxy-prom-');
  fs.copyFileSync(ALERTS, path.join(dir, 'aiproxy-alerts.yml'));
  fs.writeFileSync(path.join(dir, 'aiproxy.key'), 'k\n');
  fs.writeFileSync(path.join(dir, 'prometheus.yml'),
    fs.readFileSync(PROM, 'utf8').replace('/etc/prometheus/aiproxy.key', path.join(dir, 'aiproxy.key')));
  const rc = run('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')]);
  assert.equal(rc.status, 0, rc.stdout + rc.stderr);
});

// ------------------------------------------------------- logs, backups --

test('logrotate rule: renames and signals SIGUSR1 (no copytruncate), as the aiproxy user', () => {
  const text = fs.readFileSync(LOGROTATE, 'utf8');
  const body = text.split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
  assert.match(body, /^\/var\/log\/aiproxy\/\*\.log\s*\{/m, 'rotates /var/log/aiproxy/*.log (the unit\'s LogsDirectory)');
  assert.doesNotMatch(body, /copytruncate/, 'aiproxyd reopens on SIGUSR1: rename, do not copy and truncate');
  assert.match(body, /postrotate[\s\S]*(SIGUSR1|-USR1)[\s\S]*endscript/, 'postrotate sends SIGUSR1');
  assert.match(body, /^\s*su aiproxy aiproxy$/m, 'the directory is owned by aiproxy: logrotate needs su');
  const unit = parseUnit(fs.readFileSync(UNIT, 'utf8'));
  assert.deepEqual(unit.Service.LogsDirectory, ['aiproxy']);
  if (have('logrotate')) {
    const dir = h.tempDir('aiproxy-logrotate-');
    const r = run('logrotate', ['--debug', '--state', path.join(dir, 'state'), LOGROTATE]);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /error/i, r.stderr);
  }
});

test('ledger backup as documented: sqlite3 .backup of a running node\'s WAL ledger is complete and intact', { skip: !have('sqlite3') && 'sqlite3 CLI not installed', timeout: 30000 }, async (t) => {
  const fake = await h.startFake({ name: 'bk', apiKey: 'sk-test-1' });
  const gw = await h.gatewayFor(t, h.baseConfig({ fakePort: fake.port }));
  for (let i = 0; i < 5; i++) {
    const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody(`backup ${i}`) });
    assert.equal(r.status, 200, r.text);
  }
  const db = path.join(gw.dir, 'data/costs.db');
  await h.waitFor(() => {
    const c = run('sqlite3', [db, 'SELECT count(*) FROM requests']);
    return c.status === 0 && Number(c.stdout.trim()) === 5;
  }, 5000, 50, 'five ledger rows');
  assert.equal(run('sqlite3', [db, 'PRAGMA journal_mode']).stdout.trim(), 'wal', 'the ledger is in WAL mode');
  const out = path.join(h.tempDir('aiproxy-backup-'), 'costs-backup.db');
  const b = run('sqlite3', [db, `.backup '${out}'`]);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(run('sqlite3', [out, 'PRAGMA integrity_check']).stdout.trim(), 'ok');
  assert.equal(run('sqlite3', [out, 'SELECT count(*) FROM requests']).stdout.trim(), '5');
  // The node keeps serving and writing after the backup.
  const r = await h.request(gw.url + '/v1/chat/completions', { body: h.chatBody('after backup') });
  assert.equal(r.status, 200, r.text);
});

test('docs/operations.md: covers install, secrets, ports, reload, drain, logs, backups, monitoring, capacity, troubleshooting; names every packaging file', () => {
  const doc = fs.readFileSync(OPS, 'utf8');
  for (const f of ['packaging/systemd/aiproxyd.service', 'packaging/systemd/aiproxy.sysusers', 'packaging/docker/Dockerfile',
    'packaging/docker/aiproxy.yaml', '.dockerignore', 'packaging/prometheus/prometheus.yml', 'packaging/prometheus/aiproxy-alerts.yml',
    'packaging/logrotate/aiproxy']) {
    assert.ok(doc.includes(f), `docs/operations.md does not mention ${f}`);
    assert.ok(fs.existsSync(P(f)), `${f} is missing`);
  }
  for (const must of ['EnvironmentFile', '${', 'prometheus_port', 'SIGHUP', 'aiproxyctl reload', '/aiproxy/admin/reload',
    'drain_timeout', 'SIGUSR1', 'postrotate', '.backup', 'cost_db', 'LimitNOFILE', 'max_concurrency', 'workers',
    '/dashboard', '/ready', 'aiproxyctl status', 'CAP_NET_BIND_SERVICE', '0.0.0.0:8080']) {
    assert.ok(doc.includes(must), `docs/operations.md should mention ${must}`);
  }
  // Every alert in the rules file is explained.
  for (const r of loadRules()) assert.ok(doc.includes(r.alert), `docs/operations.md does not explain alert ${r.alert}`);
});
