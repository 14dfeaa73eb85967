// Randomized failover: 2000 requests (50 at a time, a fifth of them
// streams) against three providers that fail at random (500, reset, short
// hang past the per-try timeout, garbage, a 200 with an error inside, slow
// but fine, fine). Every request must end within its bound with a 200, or
// a 502/504 whose message names every provider it tried; never a hang,
// never a crash; afterwards nothing is left in flight. Under the ASan build
// (scripts/run-tests.sh build-asan) any sanitizer report fails the run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

const N = 2000;
const CONCURRENCY = 50;
const PER_TRY_MS = 400;
// 3 attempts (max_retries 2) of at most PER_TRY_MS each, the backoff, and
// slack for a loaded machine (and ASan)
const BOUND_MS = 3 * PER_TRY_MS + 2500;

let fakes = [];
let seed = Number(process.env.ROUTING_RANDOM_SEED || Date.now() % 100000);
function rnd() {
  // xorshift32: the run is reproducible from the printed seed
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
}

function behaviour() {
  const x = rnd();
  if (x < 0.45) return {};
  if (x < 0.55) return { status: 500 };
  if (x < 0.63) return { reset: true };
  if (x < 0.68) return { delayMs: PER_TRY_MS + 300 }; // a short hang: the per-try timeout fires
  if (x < 0.75) return { garbage: true };
  if (x < 0.80) return { errorIn200: true };
  if (x < 0.85) return { status: 503, retryAfter: 1 };
  return { delayMs: Math.floor(rnd() * 60) };
}

before(async () => {
  fakes = await Promise.all([1, 2, 3].map((i) => h.startFake({ name: `r${i}` })));
});
after(() => h.killAll());

test(`${N} requests against randomly failing providers all end in time, answered or with every provider named`, { timeout: 60000 }, async (t) => {
  const startSeed = seed;
  t.diagnostic(`ROUTING_RANDOM_SEED=${startSeed}`);
  for (const f of fakes) await f.control({ queue: Array.from({ length: N }, behaviour), default: {} });
  const providers = {};
  fakes.forEach((f, i) => {
    providers[`r${i + 1}`] = { type: 'local', endpoint: f.base, priority: i + 1, timeout: `${PER_TRY_MS}ms`, models: [h.model('gpt-test', 'upstream-gpt')] };
  });
  const gw = await h.gatewayFor(t, h.baseConfig({
    providers,
    server: { workers: 2 },
    extra: { routing: { strategy: 'round_robin', failover: { max_retries: 2, retry_delay: '20ms' } } },
  }));

  const outcomes = { 200: 0, 502: 0, 504: 0 };
  let worst = 0;
  let next = 0;
  const one = async (i) => {
    const stream = i % 5 === 0;
    const t0 = Date.now();
    const body = h.chatBody(`random ${i}`, stream ? { stream: true } : {});
    const r = await h.request(gw.url + '/v1/chat/completions', { body, timeoutMs: BOUND_MS + 2000 });
    const ms = Date.now() - t0;
    worst = Math.max(worst, ms);
    assert.ok(ms < BOUND_MS, `request ${i} took ${ms} ms (bound ${BOUND_MS})`);
    assert.ok(r.status in outcomes, `request ${i}: unexpected ${r.status} ${r.text.slice(0, 300)}`);
    outcomes[r.status]++;
    if (r.status === 200) {
      if (stream) {
        // a stream that started may end with an error event, never silently
        assert.match(r.text, /data: \[DONE\]|"error"/, `request ${i}: stream without an end`);
      } else {
        const tried = r.json['x-aiproxy'].providers_tried;
        assert.ok(tried.length >= 1 && tried.length <= 3, `request ${i}: tried ${tried}`);
      }
      return;
    }
    const msg = r.json.error.message;
    const named = [...msg.matchAll(/(?:failed: |; )(r[123]): /g)].map((m) => m[1]);
    assert.ok(named.length >= 1 && named.length <= 3, `request ${i}: ${msg}`);
    for (const n of named) assert.ok(['r1', 'r2', 'r3'].includes(n), msg);
    if (r.status === 504) assert.match(msg, /timed out/);
  };
  const worker = async () => {
    while (next < N) await one(next++);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  t.diagnostic(`outcomes ${JSON.stringify(outcomes)}, slowest ${worst} ms`);
  assert.ok(outcomes[200] > N * 0.8, `most requests find a working provider: ${JSON.stringify(outcomes)}`);

  // alive, and every attempt accounted for: nothing left in flight
  const health = await h.request(gw.url + '/health');
  assert.equal(health.status, 200);
  await h.waitFor(async () => {
    const m = await h.request(gw.url + '/metrics', { headers: { authorization: 'Bearer x' } });
    const flying = [...m.text.matchAll(/^aiproxy_provider_in_flight\{[^}]*\} (\d+)/gm)].map((x) => Number(x[1]));
    return flying.length >= 3 && flying.every((v) => v === 0);
  }, 3000, 100, 'no attempt left in flight');
});
