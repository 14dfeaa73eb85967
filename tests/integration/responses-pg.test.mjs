// Stored responses in the PostgreSQL ledger database (SPEC sections 6 and
// 9): two aiproxyd nodes share one throwaway PostgreSQL (pg-harness.mjs); a
// response created on one node is read, continued and deleted on the other.
// With PostgreSQL stopped, requests are still answered (the response is not
// stored) and reading one is a 503; when it is back, both work again.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import OpenAI from 'openai';
import * as h from './harness.mjs';
import { pgBinDir, startPostgres } from './pg-harness.mjs';

describe('responses in PostgreSQL', { skip: pgBinDir() ? false : 'PostgreSQL binaries not found (scripts/setup.sh --test installs them)' }, () => {
  let pg;
  let fake;
  const nodes = {};
  const clients = {};

  before(async () => {
    pg = await startPostgres();
    fake = await h.startFake({ name: 'p1', apiKey: 'sk-test-1' });
    const spoolDir = h.tempDir('aiproxy-spool-');
    for (const id of ['n1', 'n2']) {
      const cfg = h.baseConfig({
        fakePort: fake.port,
        extra: { budget: { cost_db: pg.url, spool_db: `sqlite:///${path.join(spoolDir, `${id}.db`)}` } },
      });
      cfg.node = { id };
      nodes[id] = await h.startGateway(cfg);
      clients[id] = new OpenAI({ baseURL: nodes[id].url + '/v1', apiKey: 'x', timeout: 8000, maxRetries: 0 });
    }
  });

  after(async () => {
    await h.killAll();
    if (pg) await pg.destroy();
  });

  test('created on one node, read and continued on the other', { timeout: 15000 }, async () => {
    const r1 = await clients.n1.responses.create({ model: 'gpt-test', input: 'node one speaks' });
    const got = await clients.n2.responses.retrieve(r1.id);
    assert.equal(got.id, r1.id);
    assert.equal(got.output[0].content[0].text, 'echo: node one speaks');
    await fake.reset();
    const r2 = await clients.n2.responses.create({ model: 'gpt-test', previous_response_id: r1.id, input: 'node two answers' });
    assert.equal(r2.output_text, 'echo: node two answers');
    const [up] = await fake.requests();
    assert.deepEqual(up.body.messages.map((m) => m.content), ['node one speaks', 'echo: node one speaks', 'node two answers']);
    assert.equal(pg.sql(`SELECT count(*) FROM responses WHERE id IN ('${r1.id}', '${r2.id}')`).trim(), '2');
    await clients.n1.responses.delete(r2.id);
    await assert.rejects(clients.n2.responses.retrieve(r2.id), (e) => e.status === 404);
  });

  test('PostgreSQL down: answers go on, reads are 503; back: both work', { timeout: 40000 }, async () => {
    await pg.stop();
    const r = await clients.n1.responses.create({ model: 'gpt-test', input: 'while down' });
    assert.equal(r.output_text, 'echo: while down');
    await assert.rejects(clients.n2.responses.retrieve(r.id), (e) => e.status === 503);
    const chat = await h.request(`${nodes.n1.url}/v1/chat/completions`, { method: 'POST', body: h.chatBody('still serving') });
    assert.equal(chat.status, 200);
    await pg.start();
    // (a node waits a moment before trying a database that was down again)
    await h.waitFor(async () => {
      const again = await clients.n1.responses.create({ model: 'gpt-test', input: 'back again' });
      try { return (await clients.n2.responses.retrieve(again.id)).id === again.id; } catch { return false; }
    }, 15000, 300, 'a response stored after PostgreSQL came back');
  });
});
