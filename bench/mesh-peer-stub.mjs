// Stand-in mesh peers for the heartbeat-cost bench (bench/mesh.py): one node
// process listening on N loopback ports, each port a "peer" with its own
// node id that answers POST /aiproxy/mesh/heartbeat with a valid heartbeat
// message. The message is a real node's answer (captured by mesh.py from a
// running aiproxyd) with the node's id, boot id, address and peer list
// replaced, so it has the shape src/mesh/wire.c parses.
// Usage: node mesh-peer-stub.mjs --template FILE --ports P1,P2,... [--secret S]
//          [--peers full|empty] [--self-id ID --self-addr HOST:PORT] [--id-prefix stub]
//   --peers full   each answer lists every stub and the node under test as
//                  known peers (what a node of a 51-node full mesh sends);
//   --peers empty  no known peers.
// GET /stub/stats on any port: {"heartbeats":N,"unauthorized":N,"bad":N,"mode":...,"answer_bytes":N}
// GET /stub/mode?peers=full|empty switches the peer list of every answer.
// Prints "STUBREADY <n>" once every port listens.
import fs from 'node:fs';
import http from 'node:http';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, arr) =>
  (v.startsWith('--') ? a.concat([[v.slice(2), arr[i + 1]]]) : a), []));
const template = JSON.parse(fs.readFileSync(args.template, 'utf8'));
const ports = String(args.ports).split(',').filter(Boolean).map(Number);
const secret = args.secret ?? 'bench';
const prefix = args['id-prefix'] || 'stub';
const selfId = args['self-id'] || '';
const selfAddr = args['self-addr'] || '';
let mode = args.peers || 'full';

const started = Date.now();
const ids = ports.map((p, i) => `${prefix}-${String(i + 1).padStart(2, '0')}`);
const known = ports.map((p, i) => ({ id: ids[i], addr: `127.0.0.1:${p}`, healthy: true }));
if (selfId && selfAddr) known.push({ id: selfId, addr: selfAddr, healthy: true });

function body(i) {
  const m = structuredClone(template);
  m.node = { ...m.node, id: ids[i], name: ids[i], boot_id: `boot-${ids[i]}-${started}`,
             addr: `127.0.0.1:${ports[i]}`, uptime_s: Math.floor((Date.now() - started) / 1000) };
  m.peers = mode === 'full' ? known.filter(k => k.id !== ids[i]) : [];
  return JSON.stringify(m);
}
// answers are rebuilt when the mode changes, not per heartbeat: the stubs
// must cost as little as possible next to the node being measured
let bodies = ports.map((_, i) => body(i));

const stats = { heartbeats: 0, unauthorized: 0, bad: 0 };
let ready = 0;
ports.forEach((port, i) => {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'GET' && url.pathname === '/stub/stats') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ ...stats, mode, stubs: ports.length, answer_bytes: Buffer.byteLength(bodies[0]) }));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/stub/mode') {
      mode = url.searchParams.get('peers') === 'empty' ? 'empty' : 'full';
      bodies = ports.map((_, j) => body(j));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ mode }));
      return;
    }
    const chunks = [];
    req.on('data', c => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || url.pathname !== '/aiproxy/mesh/heartbeat') {
        stats.bad++;
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end('{"error":{"message":"not found"}}');
        return;
      }
      if (secret && req.headers.authorization !== `Bearer ${secret}`) {
        stats.unauthorized++;
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end('{"error":{"message":"bad mesh secret"}}');
        return;
      }
      try {
        const hb = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (hb.v !== 1 || !hb.node || !hb.node.id) throw new Error('not a heartbeat');
      } catch {
        stats.bad++;
      }
      stats.heartbeats++;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(bodies[i]);
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(port, '127.0.0.1', () => {
    if (++ready === ports.length) console.log(`STUBREADY ${ready}`);
  });
});
process.on('SIGTERM', () => process.exit(0));
