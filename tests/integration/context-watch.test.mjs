// aiproxyctl context watch|stats|clear (SPEC section 8) against a fake of
// the gateway's context endpoints (fake-context.mjs), which records every
// delta body: the first snapshot (reset, .gitignore'd paths, .git, binary,
// too big and symlinked files left out, in a git work tree and outside
// one), a burst of edits debounced into one delta, a new subdirectory, a
// deletion and a rename, a .gitignore edit, an outage with 500s, the server
// going down and coming back with its memory lost (a new snapshot with
// reset), a project cleared under the watcher, SIGTERM (exit 0); a big
// tree in several bodies; a 413 halved down to the file to blame; usage
// errors; context stats and clear; and the same against a real aiproxyd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';
import { startFakeContext } from './fake-context.mjs';

const CTL = process.env.AIPROXYCTL
  ? path.resolve(process.cwd(), process.env.AIPROXYCTL)
  : path.join(path.dirname(h.AIPROXYD), 'aiproxyctl');
const KEY = 'ctx-key';
const haveCtl = fs.existsSync(CTL);

const watchers = new Set();
let fake;

// Asynchronous: the fake answers from this process, whose event loop a
// spawnSync would block.
function ctl(args, timeoutMs = 15000) {
  return new Promise((resolve) => {
    const p = spawn(CTL, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AIPROXY_API_KEY: '' } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code, sig) => { clearTimeout(timer); resolve({ code: code ?? sig, out, err }); });
  });
}

/** Starts `aiproxyctl context watch`; {proc, out(), err(), exited (promise of the code)}. */
function startWatcher(args) {
  const proc = spawn(CTL, ['--url', fake.url, '--key', KEY, 'context', 'watch', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AIPROXY_API_KEY: '' },
  });
  watchers.add(proc);
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; if (process.env.AIPROXY_TEST_VERBOSE) process.stderr.write(`[watch] ${d}`); });
  proc.stderr.on('data', (d) => { err += d; if (process.env.AIPROXY_TEST_VERBOSE) process.stderr.write(`[watch!] ${d}`); });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => { watchers.delete(proc); r(code ?? sig); }));
  return { proc, out: () => out, err: () => err, exited };
}

function write(dir, rel, content) {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  fs.writeFileSync(path.join(dir, rel), content);
}

const paths = (d) => d.body.files.map((f) => f.path).sort();
const okDeltas = () => fake.deltas().filter((d) => d.status === 200);

/** Waits for the n-th accepted delta (1-based) and returns it. */
async function nthDelta(n, timeoutMs = 5000) {
  return h.waitFor(() => okDeltas()[n - 1], timeoutMs, 20, `accepted delta #${n}`);
}

/** A tree with everything the watcher must leave out next to what it sends. */
function makeTree(dir) {
  write(dir, '.gitignore', '# build output and logs\n*.log\n/build/\nsecret.txt\n!keep.log\n');
  write(dir, 'README.md', '# demo\n\nA project.\n');
  write(dir, 'src/a.c', 'int a;\n');
  write(dir, 'src/b.c', 'int b;\nint c;\n');
  write(dir, 'notes.log', 'ignored by *.log\n');
  write(dir, 'keep.log', 'kept by !keep.log\n');
  write(dir, 'build/out.c', 'ignored: /build/\n');
  write(dir, 'secret.txt', 'ignored by name\n');
  write(dir, 'sub/.gitignore', '*.tmp\n');
  write(dir, 'sub/keep.txt', 'nested\n');
  write(dir, 'sub/x.tmp', 'ignored by sub/.gitignore\n');
  write(dir, 'sub/build/out.c', 'not ignored: /build/ is anchored to the root\n');
  write(dir, 'bin.dat', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 3]));
  write(dir, 'latin1.txt', Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a])); // "café" in Latin-1: not UTF-8
  write(dir, 'big.txt', 'x'.repeat(3000) + '\n'); // over --max-file-size 2000
  write(dir, 'empty.txt', '');
  fs.symlinkSync('src/a.c', path.join(dir, 'link.c'));
  fs.symlinkSync('src', path.join(dir, 'linkdir'));
}

const TREE_SENT = ['.gitignore', 'README.md', 'empty.txt', 'keep.log', 'src/a.c', 'src/b.c', 'sub/.gitignore', 'sub/build/out.c', 'sub/keep.txt'];

before(async () => {
  fake = await startFakeContext({ key: KEY });
});

after(async () => {
  for (const p of watchers) p.kill('SIGKILL');
  if (fake) await fake.close();
  await h.killAll();
});

test('watch in a git work tree: snapshot, debounce, new dirs, deletes, renames, .gitignore edits, outages, lost state, SIGTERM', { skip: !haveCtl && `no ${CTL}`, timeout: 90000 }, async () => {
  const dir = h.tempDir('ctx-watch-');
  execFileSync('git', ['init', '-q', dir]);
  makeTree(dir);
  const w = startWatcher([dir, '--project', 'demo', '--debounce', '300', '--max-file-size', '2000', '--check-interval', '300']);

  // 1. The snapshot: reset, exactly the text files git would keep.
  const snap = await nthDelta(1);
  assert.equal(snap.body.project, 'demo');
  assert.equal(snap.body.reset, true);
  assert.deepEqual(paths(snap), TREE_SENT, w.err());
  assert.equal(snap.body.files.find((f) => f.path === 'src/b.c').content, 'int b;\nint c;\n');
  assert.equal(snap.body.files.find((f) => f.path === 'empty.txt').content, '');
  assert.equal(snap.auth, `Bearer ${KEY}`);
  await h.waitFor(() => /snapshot: 9 paths \(\+\d+ -0 lines\) -> project demo: 9 files/.test(w.out()), 3000, 20, 'the snapshot line');
  assert.match(w.out(), /^watching .*ctx-watch-.* as project demo on http:\/\/127\.0\.0\.1:\d+ \(\d+ directories; ignore rules from the git repository at /m);
  assert.match(w.out(), /left out .*bin\.dat \(binary\)/);

  // 2. A burst of 20 writes within 100 ms is one delta with the last content.
  let n = okDeltas().length;
  for (let i = 0; i < 20; i++) {
    fs.writeFileSync(path.join(dir, 'src/a.c'), `int a = ${i};\n`);
    await h.sleep(4);
  }
  fs.writeFileSync(path.join(dir, 'bin.dat'), Buffer.from([1, 0, 2])); // still binary: nothing to send
  fs.writeFileSync(path.join(dir, 'notes.log'), 'still ignored\n');
  const burst = await nthDelta(n + 1);
  assert.equal(burst.body.reset, false);
  assert.deepEqual(burst.body.files, [{ path: 'src/a.c', content: 'int a = 19;\n' }]);
  await h.sleep(800);
  assert.equal(okDeltas().length, n + 1, 'one delta for the burst, nothing for ignored or binary files');
  await h.waitFor(() => /delta: 1 path \(\+1 -1 lines\) -> project demo: 9 files/.test(w.out()), 3000, 20, 'the delta line');

  // 3. A new subdirectory (two levels at once) is watched and its files sent;
  //    an ignored directory that appears is not.
  n = okDeltas().length;
  fs.mkdirSync(path.join(dir, 'pkg/inner'), { recursive: true });
  write(dir, 'pkg/inner/n.txt', 'new file\n');
  write(dir, 'pkg/skip.log', 'ignored\n');
  write(dir, 'build/gen/x.c', 'ignored dir\n');
  const created = await nthDelta(n + 1);
  assert.deepEqual(paths(created), ['pkg/inner/n.txt']);
  // ... and a change inside it later is seen (the watch was added).
  await h.sleep(400);
  n = okDeltas().length;
  write(dir, 'pkg/inner/n.txt', 'new file, edited\n');
  const edited = await nthDelta(n + 1);
  assert.deepEqual(edited.body.files, [{ path: 'pkg/inner/n.txt', content: 'new file, edited\n' }]);

  // 4. A deletion and a rename (sent as a deletion and a new file).
  n = okDeltas().length;
  fs.unlinkSync(path.join(dir, 'README.md'));
  fs.renameSync(path.join(dir, 'sub/keep.txt'), path.join(dir, 'sub/kept.txt'));
  const moved = await nthDelta(n + 1);
  assert.deepEqual(moved.body.files.sort((a, b) => a.path.localeCompare(b.path)), [
    { path: 'README.md', deleted: true },
    { path: 'sub/keep.txt', deleted: true },
    { path: 'sub/kept.txt', content: 'nested\n' },
  ]);
  // A directory moved inside the tree: its files move with it.
  n = okDeltas().length;
  fs.renameSync(path.join(dir, 'pkg'), path.join(dir, 'pkg2'));
  const dirMoved = await nthDelta(n + 1);
  assert.deepEqual(dirMoved.body.files.sort((a, b) => a.path.localeCompare(b.path)), [
    { path: 'pkg/inner/n.txt', deleted: true },
    { path: 'pkg2/inner/n.txt', content: 'new file, edited\n' },
  ]);
  await h.sleep(400);
  n = okDeltas().length;
  write(dir, 'pkg2/inner/n.txt', 'after the move\n');
  assert.deepEqual((await nthDelta(n + 1)).body.files, [{ path: 'pkg2/inner/n.txt', content: 'after the move\n' }]);

  // 5. Editing .gitignore: a newly ignored file is deleted from the buffer, a
  //    no longer ignored one is sent.
  n = okDeltas().length;
  write(dir, '.gitignore', '# build output and logs\n*.log\n/build/\nsrc/b.c\n!keep.log\n');
  const reignored = await nthDelta(n + 1);
  assert.deepEqual(reignored.body.files.sort((a, b) => a.path.localeCompare(b.path)), [
    { path: '.gitignore', content: '# build output and logs\n*.log\n/build/\nsrc/b.c\n!keep.log\n' },
    { path: 'secret.txt', content: 'ignored by name\n' },
    { path: 'src/b.c', deleted: true },
  ]);

  // 6. The server fails (500): the change is kept and retried with backoff
  //    until it is taken.
  n = fake.deltas().length;
  fake.setMode(500);
  write(dir, 'src/a.c', 'int a = 500;\n');
  await h.waitFor(() => fake.deltas().length >= n + 3, 5000, 20, 'three attempts during the outage');
  const times = fake.deltas().slice(n).map((d) => d.at);
  assert.ok(times[2] - times[1] >= times[1] - times[0] - 50, `backoff grows: ${times.map((t) => t - times[0])}`);
  assert.match(w.err(), /\/v1\/context\/delta: HTTP 500: fake context server: told to fail; retrying, changes are kept/);
  fake.setMode('ok');
  const retried = await h.waitFor(() => fake.deltas().slice(n).find((d) => d.status === 200), 8000, 20, 'the retry taken');
  assert.deepEqual(retried.body.files, [{ path: 'src/a.c', content: 'int a = 500;\n' }]);
  await h.waitFor(() => /answers again/.test(w.err()), 3000, 20, 'the recovery line');

  // 7. The server goes down; a change made meanwhile is kept; the server comes
  //    back on the same port with its memory lost: the watcher notices and
  //    sends a snapshot with reset.
  const expectNow = ['.gitignore', 'empty.txt', 'keep.log', 'pkg2/inner/n.txt', 'secret.txt', 'src/a.c', 'sub/.gitignore', 'sub/build/out.c', 'sub/kept.txt'];
  await fake.stop();
  write(dir, 'sub/kept.txt', 'changed while the server was down\n');
  await h.waitFor(() => /cannot reach http:\/\/127\.0\.0\.1:\d+ \(is aiproxyd running there\?\); retrying/.test(w.err()), 5000, 20, 'the outage line');
  await h.sleep(1000);
  n = okDeltas().length;
  await fake.restart();
  const resnap = await h.waitFor(() => okDeltas().slice(n).find((d) => d.body.reset === true), 10000, 20, 'a snapshot after the restart');
  assert.deepEqual(paths(resnap), expectNow);
  assert.equal(resnap.body.files.find((f) => f.path === 'sub/kept.txt').content, 'changed while the server was down\n');
  assert.equal(fake.projects.get('demo').size, expectNow.length);

  // 8. The project cleared under an idle watcher (aiproxyctl context clear):
  //    the periodic check sees it and sends a snapshot.
  await h.sleep(500);
  n = okDeltas().length;
  const cleared = await ctl(['--url', fake.url, '--key', KEY, 'context', 'clear', 'demo']);
  assert.equal(cleared.code, 0, cleared.err);
  assert.equal(cleared.out, 'cleared context project demo\n');
  const again = await h.waitFor(() => okDeltas().slice(n).find((d) => d.body.reset === true), 5000, 20, 'a snapshot after the clear');
  assert.deepEqual(paths(again), expectNow);
  assert.match(w.err(), /the gateway no longer has project demo/);

  // 9. SIGTERM: exit 0, promptly.
  const t0 = Date.now();
  w.proc.kill('SIGTERM');
  assert.equal(await w.exited, 0, w.err());
  assert.ok(Date.now() - t0 < 2000);
  assert.ok(!/AddressSanitizer|runtime error/.test(w.err()), w.err());
});

test('watch outside a git work tree: the .gitignore files in DIR still apply; SIGINT exits 0', { skip: !haveCtl && `no ${CTL}`, timeout: 30000 }, async () => {
  const dir = h.tempDir('ctx-plain-');
  assert.throws(() => execFileSync('git', ['-C', dir, 'rev-parse', '--git-dir'], { stdio: 'ignore' }));
  makeTree(dir);
  write(dir, 'deep/a/b/c.md', 'deep\n');
  write(dir, 'deep/.gitignore', '**/b/\n');
  write(dir, 'deep/a/d.md', 'kept\n');
  const n = okDeltas().length;
  const w = startWatcher([dir, '--project', 'plain', '--max-file-size', '2000', '--json']);
  const snap = await nthDelta(n + 1);
  assert.equal(snap.body.project, 'plain');
  assert.equal(snap.body.reset, true);
  assert.deepEqual(paths(snap), [...TREE_SENT, 'deep/.gitignore', 'deep/a/d.md'].sort(), w.err());
  // --json: one answer per line.
  const line = await h.waitFor(() => w.out().split('\n').find((l) => l.startsWith('{')), 3000, 20, 'a JSON line');
  const doc = JSON.parse(line);
  assert.equal(doc.project, 'plain');
  assert.equal(doc.files, 11);
  w.proc.kill('SIGINT');
  assert.equal(await w.exited, 0, w.err());
});

test('watch sends a big tree in several bodies under 4 MB, the first with reset', { skip: !haveCtl && `no ${CTL}`, timeout: 30000 }, async () => {
  const dir = h.tempDir('ctx-big-');
  const line = 'abcdefghij'.repeat(10) + '\n';
  for (let i = 0; i < 30; i++) write(dir, `f${String(i).padStart(2, '0')}.txt`, line.repeat(3000)); // ~300 KB each, ~9 MB
  const n = okDeltas().length;
  const w = startWatcher([dir, '--project', 'big']);
  await h.waitFor(() => fake.projects.get('big')?.size === 30, 10000, 20, 'all 30 files');
  const sent = okDeltas().slice(n).filter((d) => d.body.project === 'big');
  assert.ok(sent.length >= 3, `${sent.length} bodies`);
  assert.deepEqual(sent.map((d) => d.body.reset), [true, ...sent.slice(1).map(() => false)]);
  for (const d of sent) assert.ok(JSON.stringify(d.body).length < 4.2 * 1024 * 1024);
  assert.equal(sent.reduce((a, d) => a + d.body.files.length, 0), 30);
  w.proc.kill('SIGTERM');
  assert.equal(await w.exited, 0);
});

test('watch: a body refused with 413 is halved until the file to blame is alone, which is left out until it changes', { skip: !haveCtl && `no ${CTL}`, timeout: 30000 }, async () => {
  const dir = h.tempDir('ctx-413-');
  write(dir, 'a.txt', 'small\n');
  write(dir, 'b.txt', 'y'.repeat(150000) + '\n');
  write(dir, 'c.txt', 'small too\n');
  fake.setMaxBody(100000);
  try {
    const n = fake.deltas().length;
    const w = startWatcher([dir, '--project', 'limits', '--debounce', '100']);
    await h.waitFor(() => fake.projects.get('limits')?.size === 2, 5000, 20, 'a.txt and c.txt taken');
    const mine = fake.deltas().slice(n);
    assert.equal(mine[0].status, 413);
    assert.equal(mine[0].body.reset, true);
    const taken = mine.filter((d) => d.status === 200);
    assert.equal(taken[0].body.reset, true, 'the reset goes with the first body taken');
    assert.deepEqual(taken.flatMap((d) => d.body.files.map((f) => f.path)).sort(), ['a.txt', 'c.txt']);
    await h.waitFor(() => /the gateway refused b\.txt \(HTTP 413: Request body too large\.\); it is left out until it changes/.test(w.err()), 3000, 20, 'the refusal');
    // Unchanged, it is not sent again; once it fits, it is.
    const before = fake.deltas().length;
    write(dir, 'a.txt', 'small, edited\n');
    await nthDelta(okDeltas().length + 1);
    assert.ok(fake.deltas().slice(before).every((d) => !d.body.files.some((f) => f.path === 'b.txt')));
    write(dir, 'b.txt', 'fits now\n');
    await h.waitFor(() => fake.projects.get('limits')?.get('b.txt') === 'fits now\n', 5000, 20, 'b.txt taken');
    w.proc.kill('SIGTERM');
    assert.equal(await w.exited, 0);
  } finally {
    fake.setMaxBody(10 * 1024 * 1024);
  }
});

test('watch: bad usage (exit 2), a missing directory (exit 1), a refused key (exit 1)', { skip: !haveCtl && `no ${CTL}` }, async () => {
  const dir = h.tempDir('ctx-usage-');
  let r = await ctl(['--url', fake.url, 'context', 'watch']);
  assert.equal(r.code, 2);
  assert.match(r.err, /watch: needs a DIR/);
  r = await ctl(['--url', fake.url, 'context', 'watch', dir, '--project', 'no spaces']);
  assert.equal(r.code, 2);
  assert.match(r.err, /--project no spaces: expected 1 to 128 letters/);
  r = await ctl(['--url', fake.url, 'context', 'watch', dir, '--debounce', 'soon']);
  assert.equal(r.code, 2);
  r = await ctl(['--url', fake.url, 'context', 'watch', dir, '--frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown option --frobnicate/);
  r = await ctl(['--url', fake.url, 'context', 'watch', path.join(dir, 'nope')]);
  assert.equal(r.code, 1);
  assert.match(r.err, /nope: No such file or directory/);
  r = await ctl(['--url', fake.url, '--key', 'wrong', 'context', 'watch', dir]);
  assert.equal(r.code, 1);
  assert.match(r.err, /the node refused the API key \(HTTP 401\)/);
  r = await ctl(['context', 'watch', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.out, /Usage: aiproxyctl context watch DIR/);
});

test('context stats (table and --json) and clear (200, 404, bad name)', { skip: !haveCtl && `no ${CTL}` }, async () => {
  fake.projects.set('statsdemo', new Map([['a.txt', 'hello\n'], ['b.txt', 'x']]));
  const base = ['--url', fake.url, '--key', KEY];
  const s = await ctl([...base, 'context', 'stats']);
  assert.equal(s.code, 0, s.err);
  assert.match(s.out, /^PROJECT\s+FILES\s+BYTES\s+PENDING\s+INJECTIONS\s+TOKENS INJECTED\s+TOKENS SAVED\s+UPDATED/);
  assert.match(s.out, /^statsdemo\s+2\s+7\s+0\s+2\s+120\s+3400\s+2025-12-04 11:00:00 UTC$/m);
  const j = await ctl([...base, '--json', 'context', 'stats']);
  assert.equal(j.code, 0, j.err);
  assert.ok(JSON.parse(j.out).projects.some((p) => p.project === 'statsdemo' && p.files === 2));
  const c = await ctl([...base, 'context', 'clear', 'statsdemo']);
  assert.equal(c.code, 0, c.err);
  assert.ok(!fake.projects.has('statsdemo'));
  const again = await ctl([...base, 'context', 'clear', 'statsdemo']);
  assert.equal(again.code, 1);
  assert.match(again.err, /No context project 'statsdemo'/);
  const bad = await ctl([...base, 'context', 'clear', '../x']);
  assert.equal(bad.code, 2);
  const nokey = await ctl(['--url', fake.url, 'context', 'stats']);
  assert.equal(nokey.code, 1);
  assert.match(nokey.err, /refused the API key \(HTTP 401\) \(no key was given\)/);
  const down = await ctl(['--url', 'http://127.0.0.1:9', 'context', 'stats']);
  assert.equal(down.code, 1);
  assert.match(down.err, /cannot reach http:\/\/127\.0\.0\.1:9/);
});

test('against aiproxyd: snapshot, a delta, context stats, context clear and the watcher restoring the project', { skip: (!haveCtl || !h.haveGateway()) && 'no aiproxyd or aiproxyctl', timeout: 60000 }, async () => {
  const upstream = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
  const gw = await h.startGateway(h.baseConfig({ fakePort: upstream.port, extra: {
    security: { auth: { enabled: true, api_keys: [{ key: KEY, name: 'ctx-user' }] } },
  } }));
  try {
    const dir = h.tempDir('ctx-real-');
    write(dir, '.gitignore', '*.log\n');
    write(dir, 'a.txt', 'one\ntwo\n');
    write(dir, 'x.log', 'ignored\n');
    const proc = spawn(CTL, ['--url', gw.url, '--key', KEY, 'context', 'watch', dir, '--project', 'real', '--check-interval', '300'], { stdio: ['ignore', 'pipe', 'pipe'] });
    watchers.add(proc);
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.stderr.on('data', (d) => { err += d; });
    const exited = new Promise((r) => proc.on('exit', (code) => r(code)));
    const base = ['--url', gw.url, '--key', KEY];
    const project = async () => {
      const r = await ctl([...base, '--json', 'context', 'stats']);
      return r.code === 0 ? JSON.parse(r.out).projects.find((p) => p.project === 'real') : undefined;
    };
    await h.waitFor(() => /snapshot: 2 paths \(\+3 -0 lines\) -> project real: 2 files/.test(out), 5000, 20, `the snapshot (stderr: ${err})`);
    assert.equal((await project()).files, 2);
    write(dir, 'a.txt', 'one\n2\nthree\n');
    await h.waitFor(() => /delta: 1 path \(\+2 -1 lines\) -> project real: 2 files/.test(out), 5000, 20, 'the delta');
    const table = await ctl([...base, 'context', 'stats']);
    assert.match(table.out, /^real\s+2\s+\d+\s+\d+\s+0\s+0\s+0\s+\d{4}-\d\d-\d\d /m, table.out);
    const cleared = await ctl([...base, 'context', 'clear', 'real']);
    assert.equal(cleared.code, 0, cleared.err);
    await h.waitFor(() => (out.match(/snapshot: 2 paths/g) || []).length === 2, 5000, 20, 'a new snapshot after the clear');
    assert.equal((await project()).files, 2);
    const missing = await ctl([...base, 'context', 'clear', 'nosuch']);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /nosuch/);
    proc.kill('SIGTERM');
    assert.equal(await exited, 0, err);
  } finally {
    await gw.stop('SIGKILL');
    await upstream.stop();
  }
});
