// Self-test of redis-harness.mjs: a plain, a TLS, a legacy-password and an
// ACL-user redis-server start, answer PING through redis-cli, count their
// commands, pause, restart and stop. Skipped when redis-server is missing.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { startRedis, stopAllRedis, haveRedis, probeRedis } from './redis-harness.mjs';

const skip = haveRedis() ? false : 'redis-server / redis-cli not installed';

after(stopAllRedis);

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('plain: PING, INFO, commandstats, pause/resume, restart, stop', { skip }, async () => {
  const r = await startRedis();
  assert.equal(r.url, `redis://127.0.0.1:${r.port}/0`);
  assert.equal(r.tls, false);
  assert.equal((await r.cli('PING')).trim(), 'PONG');
  assert.equal((await r.cli('SET', 'k', 'hello world')).trim(), 'OK');
  assert.equal((await r.cli('GET', 'k')).trim(), 'hello world');
  const server = await r.info('server');
  assert.equal(server.tcp_port, r.port);
  assert.equal(server.process_id, r.pid);
  const persistence = await r.info('persistence');
  assert.equal(persistence.aof_enabled, 0);
  const stats = await r.commandstats();
  assert.ok(stats.set >= 1 && stats.get >= 1 && stats.ping >= 1, JSON.stringify(stats));

  // paused: connections are accepted by the kernel but nothing answers
  await r.pause();
  assert.equal(await probeRedis({ port: r.port, timeoutMs: 200 }), null);
  await r.resume();
  assert.equal(await probeRedis({ port: r.port }), '+PONG');

  // restart: empty by default, the data kept on request
  const pid1 = r.pid;
  await r.restart();
  assert.notEqual(r.pid, pid1);
  assert.ok(!alive(pid1));
  assert.equal((await r.cli('EXISTS', 'k')).trim(), '0');
  await r.cli('SET', 'k2', 'v2');
  await r.restart({ keepData: true });
  assert.equal((await r.cli('GET', 'k2')).trim(), 'v2');

  // stop while paused still ends it
  const pid2 = r.pid;
  await r.pause();
  await r.stop();
  assert.ok(!alive(pid2));
  await r.stop(); // idempotent
  assert.equal(await probeRedis({ port: r.port, timeoutMs: 200 }), null);
});

test('TLS: rediss:// with a throwaway CA; plain TCP refused', { skip }, async () => {
  const r = await startRedis({ tls: true, password: 'tls pw/1' });
  assert.equal(r.url, `rediss://:tls%20pw%2F1@127.0.0.1:${r.port}/0`);
  assert.ok(fs.existsSync(r.caFile));
  assert.equal((await r.cli('PING')).trim(), 'PONG');
  assert.equal(await probeRedis({ port: r.port, tls: true, caFile: r.caFile, password: 'tls pw/1' }),
    '+PONG');
  // the TLS port speaks no plain RESP
  assert.equal(await probeRedis({ port: r.port, timeoutMs: 300 }), null);
  await r.stop();
});

test('legacy password: AUTH pw', { skip }, async () => {
  const r = await startRedis({ password: 's3cret@x' });
  assert.equal(r.url, `redis://:s3cret%40x@127.0.0.1:${r.port}/0`);
  assert.equal((await r.cli('PING')).trim(), 'PONG');
  assert.match(await r.cliNoAuth('PING'), /NOAUTH/);
  assert.match(await probeRedis({ port: r.port }), /^-NOAUTH/);
  assert.match(await probeRedis({ port: r.port, password: 'wrong' }), /^-(WRONGPASS|ERR)/);
  await r.stop();
});

test('ACL user: default user off', { skip }, async () => {
  const r = await startRedis({ user: 'aiproxy', aclPassword: 'acl pw' });
  assert.equal(r.url, `redis://aiproxy:acl%20pw@127.0.0.1:${r.port}/0`);
  assert.equal((await r.cli('PING')).trim(), 'PONG');
  assert.equal((await r.cli('ACL', 'WHOAMI')).trim(), 'aiproxy');
  assert.match(await r.cliNoAuth('PING'), /NOAUTH/);
  assert.equal(await probeRedis({ port: r.port, user: 'aiproxy', password: 'acl pw' }), '+PONG');
  assert.match(await probeRedis({ port: r.port, user: 'default', password: 'x' }), /^-WRONGPASS/);
  // scripts run (the shared store's are Lua)
  assert.equal((await r.cli('EVAL', "return redis.call('PING')", '0')).trim(), 'PONG');
  assert.ok((await r.commandstats()).eval >= 1);
  await r.stop();
});
