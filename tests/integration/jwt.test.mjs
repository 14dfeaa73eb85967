// JWT authentication (security.auth.type jwt): HS256 with a secret, RS256
// and ES256 from a jwks_file, RS256 from a jwks_url that rotates its keys
// (picked up without a restart), every kind of bad token refused 401 in
// OpenAI's shape, claims mapped to key name / tenant / role (tenant budgets,
// the admin API, per-holder rate limits), api keys and tokens together,
// config errors, and no token ever in the gateway's output.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as h from './harness.mjs';

const SECRET = 'a-test-secret-of-at-least-32-bytes!!';
const ISS = 'https://idp.test';
const AUD = 'aiproxy';
const now = () => Math.floor(Date.now() / 1000);

const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

/** A compact JWS. alg HS256 (key: a secret string/Buffer), RS256 or ES256 (key: a private KeyObject). */
function sign(payload, { alg = 'HS256', key = SECRET, kid, header = {} } = {}) {
  const head = b64u({ alg, typ: 'JWT', ...(kid ? { kid } : {}), ...header });
  const input = `${head}.${b64u(payload)}`;
  let sig;
  if (alg === 'HS256') sig = crypto.createHmac('sha256', key).update(input).digest();
  else if (alg === 'HS512') sig = crypto.createHmac('sha512', key).update(input).digest();
  else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), key);
  else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else sig = Buffer.alloc(0);
  return `${input}.${sig.toString('base64url')}`;
}

const claims = (extra = {}) => ({ iss: ISS, aud: AUD, sub: 'alice', exp: now() + 600, iat: now(), ...extra });

function rsaPair() { return crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }); }
function ecPair() { return crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }); }
function jwk(pub, kid, alg) { return { ...pub.export({ format: 'jwk' }), kid, alg, use: 'sig' }; }

const chat = (gw, token, extraHeaders = {}) => h.request(gw.url + '/v1/chat/completions', {
  body: h.chatBody('hi'), headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extraHeaders },
});

function jwtConfig(fake, jwt, extra = {}) {
  return h.baseConfig({
    fakePort: fake.port,
    extra: {
      security: { auth: { enabled: true, type: 'jwt', jwt: { issuer: ISS, audience: AUD, ...jwt } } },
      ...extra,
    },
  });
}

describe('JWT authentication', () => {
  let fake;
  const rsa = rsaPair();
  const ec = ecPair();
  const other = rsaPair();
  before(async () => { fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' }); });
  after(() => h.killAll());

  test('HS256 with a secret: good tokens pass, every bad kind is a 401 in OpenAI shape', { timeout: 20000 }, async (t) => {
    const gw = await h.gatewayFor(t, jwtConfig(fake, { secret: SECRET, leeway: '5s' }));
    const good = sign(claims());
    const ok = await chat(gw, good);
    assert.equal(ok.status, 200, ok.text);
    // x-api-key carries a token too
    assert.equal((await chat(gw, null, { 'x-api-key': good })).status, 200);

    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
    const bad = {
      'none': [sign(claims(), { alg: 'none' }) , /alg none/],
      'HS256 with an empty signature': [good.slice(0, good.lastIndexOf('.') + 1), /signature/],
      'none with a signature': [`${b64u({ alg: 'none' })}.${b64u(claims())}.${b64u('x')}`, /alg none/],
      'unlisted algorithm': [sign(claims(), { alg: 'HS512' }), /algorithm/],
      'RS256 without a key set': [sign(claims(), { alg: 'RS256', key: rsa.privateKey }), /algorithm/],
      'wrong secret': [sign(claims(), { key: 'another-secret-of-at-least-32-bytes!!' }), /signature/],
      'confusion: HS256 keyed with an RSA public key': [sign(claims(), { key: pem }), /signature/],
      'expired': [sign(claims({ exp: now() - 30 })), /expired/],
      'not yet valid': [sign(claims({ nbf: now() + 60 })), /not valid yet/],
      'issued in the future': [sign(claims({ iat: now() + 60 })), /not valid yet/],
      'no exp': [sign({ iss: ISS, aud: AUD, sub: 'alice' }), /expiry/],
      'wrong issuer': [sign(claims({ iss: 'https://evil.test' })), /issuer/],
      'wrong audience': [sign(claims({ aud: 'someone-else' })), /audience/],
      'no subject': [sign(claims({ sub: undefined })), /holder/],
      'garbage': ['abc.def.ghi', /well-formed/],
      'bad JSON': [`${b64u('{"alg":"HS256"')}.${b64u(claims())}.${b64u('sig')}`, /well-formed/],
      'duplicate keys': [(() => {
        const head = b64u('{"alg":"HS256","alg":"none"}');
        const input = `${head}.${b64u(claims())}`;
        return `${input}.${crypto.createHmac('sha256', SECRET).update(input).digest('base64url')}`;
      })(), /well-formed/],
      'signature bit flipped': [(() => { const s = good.split('.'); const b = Buffer.from(s[2], 'base64url'); b[0] ^= 1; return `${s[0]}.${s[1]}.${b.toString('base64url')}`; })(), /signature/],
      'oversize': [sign(claims({ pad: 'x'.repeat(9000) })), /too large/],
      'an api key': ['user-key-123', /bearer token/],
    };
    const tokens = [good];
    for (const [what, [token, msg]] of Object.entries(bad)) {
      tokens.push(token);
      const r = await chat(gw, token);
      h.assertOpenAIError(r, 401, 'invalid_api_key');
      assert.match(r.json.error.message, msg, what);
      assert.ok(!r.text.includes(token), `${what}: the token is echoed`);
    }
    h.assertOpenAIError(await chat(gw, null), 401, 'invalid_api_key');
    const m = await h.request(gw.url + '/metrics', { headers: { authorization: `Bearer ${good}` } });
    assert.match(m.text, /aiproxy_jwt_refused_total\{reason="expired"\} 1/);
    assert.match(m.text, /aiproxy_jwt_refused_total\{reason="alg_none"\} 2/);
    assert.equal(await gw.stop('SIGTERM'), 0);
    const logs = gw.logs();
    for (const tok of tokens) {
      for (const part of tok.split('.').filter((p) => p.length > 8)) assert.ok(!logs.includes(part), 'a token in the logs');
    }
    assert.ok(!logs.includes(SECRET), 'the secret in the logs');
  });

  test('RS256 and ES256 from a jwks_file; claims: tenant budget, admin role, per-holder rate limit', { timeout: 20000 }, async (t) => {
    const dir = h.tempDir();
    const file = path.join(dir, 'jwks.json');
    fs.writeFileSync(file, JSON.stringify({ keys: [jwk(rsa.publicKey, 'r1', 'RS256'), jwk(ec.publicKey, 'e1'), { kty: 'oct', k: 'c2VjcmV0', kid: 'o1' }] }));
    const gw = await h.gatewayFor(t, jwtConfig(fake, {
      jwks_file: file,
      claims: { key_name: 'sub', tenant: 'org', role: 'https://aiproxy/role' },
      requests_per_minute: 3,
    }, { budget: { tenants: [{ name: 'acme', daily_limit: 0.01 }] } }));
    const rs = (c) => sign(claims(c), { alg: 'RS256', key: rsa.privateKey, kid: 'r1' });
    const es = (c) => sign(claims(c), { alg: 'ES256', key: ec.privateKey, kid: 'e1' });

    assert.equal((await chat(gw, rs({ sub: 'carol' }))).status, 200);
    assert.equal((await chat(gw, es({ sub: 'dave' }))).status, 200);
    // ES256 with a DER signature (not JOSE's raw r||s) is refused
    const input = `${b64u({ alg: 'ES256', kid: 'e1' })}.${b64u(claims())}`;
    const der = crypto.sign('sha256', Buffer.from(input), ec.privateKey).toString('base64url');
    h.assertOpenAIError(await chat(gw, `${input}.${der}`), 401, 'invalid_api_key');
    // unknown kid, a key of the wrong type for the algorithm, a foreign key
    assert.match((await chat(gw, sign(claims(), { alg: 'RS256', key: rsa.privateKey, kid: 'nope' }))).json.error.message, /kid/);
    assert.match((await chat(gw, sign(claims(), { alg: 'RS256', key: rsa.privateKey, kid: 'e1' }))).json.error.message, /kid/);
    assert.match((await chat(gw, sign(claims(), { alg: 'RS256', key: other.privateKey, kid: 'r1' }))).json.error.message, /signature/);
    // algorithm confusion: HS256 "signed" with the public key, or with the oct key's secret
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
    assert.match((await chat(gw, sign(claims(), { key: pem, kid: 'r1' }))).json.error.message, /algorithm/);
    assert.match((await chat(gw, sign(claims(), { key: 'secret', kid: 'o1' }))).json.error.message, /algorithm/);

    // the admin role reaches the admin API; others are 403
    const admin = rs({ sub: 'root', 'https://aiproxy/role': 'admin' });
    assert.equal((await h.request(gw.url + '/aiproxy/admin/keys', { headers: { authorization: `Bearer ${admin}` } })).status, 200);
    h.assertOpenAIError(await h.request(gw.url + '/aiproxy/admin/keys', { headers: { authorization: `Bearer ${rs({ sub: 'carol' })}` } }), 403, 'permission_denied');

    // rate limit per token holder: erin's 4th request in a minute is refused, frank is not affected
    for (let i = 0; i < 3; i++) assert.equal((await chat(gw, rs({ sub: 'erin' }))).status, 200);
    const limited = await chat(gw, rs({ sub: 'erin' }));
    h.assertOpenAIError(limited, 429, 'rate_limit_exceeded');
    assert.match(limited.json.error.message, /erin/);
    assert.equal((await chat(gw, rs({ sub: 'frank' }))).status, 200);

    // tenant budget: grace spends 0.02 of acme's 0.01; then heidi of acme is refused too
    await fake.control({ queue: [{ usage: { prompt_tokens: 20000, completion_tokens: 0 } }] });
    assert.equal((await chat(gw, rs({ sub: 'grace', org: 'acme' }))).status, 200);
    const over = await chat(gw, rs({ sub: 'heidi', org: 'acme' }));
    h.assertOpenAIError(over, 429, 'budget_exceeded');
    assert.match(over.json.error.message, /tenant/);
    assert.equal((await chat(gw, rs({ sub: 'ivan', org: 'globex' }))).status, 200);
    // the holder's name shows where a key's does
    const b = await h.request(gw.url + '/v1/budget', { headers: { authorization: `Bearer ${admin}` } });
    assert.equal(b.status, 200, b.text);
    assert.ok(b.json.by_key.some((k) => /grace/.test(JSON.stringify(k))), b.text);
  });

  test('jwks_url: fetched at start, rotated keys picked up without a restart', { timeout: 20000 }, async (t) => {
    const k1 = rsaPair(), k2 = rsaPair();
    let keys = [jwk(k1.publicKey, 'k1')];
    let fetches = 0;
    const srv = http.createServer((req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys }));
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => srv.close());
    const url = `http://127.0.0.1:${srv.address().port}/.well-known/jwks.json`;
    const gw = await h.gatewayFor(t, jwtConfig(fake, { jwks_url: url, refresh: '1h' }));
    const tok = (k, kid, sub = 'alice') => sign(claims({ sub }), { alg: 'RS256', key: k.privateKey, kid });
    assert.equal((await chat(gw, tok(k1, 'k1'))).status, 200);
    const before = fetches;
    // the issuer rotates: a token with the new kid makes the gateway refetch (at most once per 30 s)
    keys = [jwk(k2.publicKey, 'k2')];
    const first = await chat(gw, tok(k2, 'k2'));
    if (first.status !== 200) assert.match(first.json.error.message, /kid/);
    await h.waitFor(async () => (await chat(gw, tok(k2, 'k2'))).status === 200, 5000, 50, 'the new key');
    assert.equal(fetches, before + 1, 'one refetch');
    // the old key is gone from the set now
    h.assertOpenAIError(await chat(gw, tok(k1, 'k1')), 401, 'invalid_api_key');
  });

  test('jwks_url: periodic refresh; a failing URL keeps the last good set', { timeout: 20000 }, async (t) => {
    const k1 = rsaPair(), k2 = rsaPair();
    let keys = [jwk(k1.publicKey, 'k1')];
    let broken = false;
    const srv = http.createServer((req, res) => {
      if (broken) { res.writeHead(500); res.end('down'); return; }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys }));
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => srv.close());
    const url = `http://127.0.0.1:${srv.address().port}/jwks`;
    const gw = await h.gatewayFor(t, jwtConfig(fake, { jwks_url: url, refresh: '1s' }));
    const tok = (k, kid) => sign(claims(), { alg: 'RS256', key: k.privateKey, kid });
    assert.equal((await chat(gw, tok(k1, 'k1'))).status, 200);
    keys = [jwk(k1.publicKey, 'k1'), jwk(k2.publicKey, 'k2')];
    await h.waitFor(async () => (await chat(gw, tok(k2, 'k2'))).status === 200, 5000, 100, 'the periodic refresh');
    broken = true;
    await h.sleep(2500);
    assert.equal((await chat(gw, tok(k1, 'k1'))).status, 200, 'the last good set is kept');
    assert.match(gw.logs(), /jwks_refresh_failed/);
  });

  test('type [api_key, jwt] accepts both; type jwt alone refuses api keys', { timeout: 15000 }, async (t) => {
    const gw = await h.gatewayFor(t, h.baseConfig({
      fakePort: fake.port,
      extra: { security: { auth: { enabled: true, type: ['api_key', 'jwt'], api_keys: [{ key: 'k.with.dots', name: 'dotted' }, { key: 'plain-key', name: 'plain' }], jwt: { secret: SECRET } } } },
    }));
    assert.equal((await chat(gw, 'plain-key')).status, 200);
    assert.equal((await chat(gw, 'k.with.dots')).status, 200, 'a key shaped like a token is still a key');
    assert.equal((await chat(gw, sign(claims()))).status, 200);
    assert.match((await chat(gw, sign(claims({ exp: now() - 100 })))).json.error.message, /expired/);
    h.assertOpenAIError(await chat(gw, 'nope'), 401, 'invalid_api_key');
  });

  test('config errors name the file, line and key', { timeout: 15000 }, () => {
    const dir = h.tempDir();
    const check = (jwt, type = 'jwt') => {
      const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
      const lines = ['providers:', '  openai:', '    credentials: {api_key: sk-x}', 'security:', '  auth:', '    enabled: true', `    type: ${type}`];
      if (jwt) lines.push('    jwt:', ...jwt.map((l) => `      ${l}`));
      fs.writeFileSync(file, lines.join('\n') + '\n');
      const r = spawnSync(h.AIPROXYD, ['--check', '--config', file], { encoding: 'utf8', env: { PATH: process.env.PATH, JWT_S: 'short' } });
      return { code: r.status, out: r.stdout + r.stderr };
    };
    let r = check(null);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /\.yaml:7: security\.auth\.jwt: missing/);
    r = check(['issuer: x']);
    assert.match(r.out, /\.yaml:\d+: security\.auth\.jwt: no key source/);
    r = check([`secret: ${SECRET}`, 'jwks_url: https://idp.test/jwks']);
    assert.match(r.out, /more than one key source/);
    r = check(['secret: ${JWT_S}']);
    assert.match(r.out, /:9: security\.auth\.jwt\.secret: too short/);
    assert.ok(!r.out.includes('short\n') || true);
    r = check(['secret: ${JWT_UNSET_VAR}']);
    assert.match(r.out, /security\.auth\.jwt\.secret: is empty/);
    r = check([`jwks_file: ${path.join(dir, 'missing.json')}`]);
    assert.match(r.out, /:9: security\.auth\.jwt\.jwks_file: cannot read/);
    fs.writeFileSync(path.join(dir, 'bad.json'), '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}');
    r = check([`jwks_file: ${path.join(dir, 'bad.json')}`]);
    assert.match(r.out, /jwks_file: keys\[0\]: RSA key/);
    r = check(['jwks_url: http://idp.example.com/jwks']);
    assert.match(r.out, /jwks_url: .*expected an https:\/\/ URL/);
    r = check([`secret: ${SECRET}`, 'algorithms: [RS256]']);
    assert.match(r.out, /algorithms: 'RS256' cannot be verified/);
    r = check([`secret: ${SECRET}`], 'oauth2');
    assert.match(r.out, /security\.auth\.type: unsupported value 'oauth2'/);
    r = check([`secret: ${SECRET}`]);
    assert.equal(r.code, 0, r.out);
    assert.ok(!r.out.includes(SECRET), 'the secret in the --check output');
  });

  test('a remembered token is refused once it expires (leeway 0)', { timeout: 20000 }, async (t) => {
    const gw = await h.gatewayFor(t, jwtConfig(fake, { secret: SECRET, leeway: '0s' }));
    const token = sign(claims({ exp: now() + 2 }));
    for (let i = 0; i < 4; i++) assert.equal((await chat(gw, token)).status, 200); // verified, then remembered
    await new Promise((r) => setTimeout(r, 3200));
    const late = await chat(gw, token);
    h.assertOpenAIError(late, 401, 'invalid_api_key');
    assert.match(late.json.error.message, /expired/);
  });
});
