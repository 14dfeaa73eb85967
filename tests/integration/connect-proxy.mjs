#!/usr/bin/env node
// A minimal HTTP CONNECT proxy for aiproxy's integration tests.
//
//   node connect-proxy.mjs --port 0
//
// Prints one JSON line {"port":N} on stdout once listening. Every CONNECT is
// tunnelled (TCP splice) to its target and recorded; each target is also
// printed to stderr as "CONNECT host:port".
//
//   GET /__log    -> [{target, at, ok, headers}]   (the proxy's own log)
//   POST /__reset -> clears the log
// Any other plain request (a proxy GET of an absolute URL) is refused with
// 405, so a gateway that sends https traffic in clear through the proxy fails.

import http from 'node:http';
import net from 'node:net';

let port = 0;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--port') port = Number(argv[++i]);
  else throw new Error(`unknown argument ${argv[i]}`);
}

let log = [];
const sockets = new Set();

const server = http.createServer((req, res) => {
  if (req.url === '/__log' && req.method === 'GET') {
    const s = JSON.stringify(log);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    return res.end(s);
  }
  if (req.url === '/__reset' && req.method === 'POST') {
    log = [];
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end('{"ok":true}');
  }
  log.push({ target: req.url, method: req.method, at: Date.now(), ok: false, headers: req.headers });
  res.writeHead(405, { 'content-type': 'text/plain' });
  res.end('this test proxy only supports CONNECT\n');
});

server.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});

server.on('connect', (req, clientSocket, head) => {
  const target = req.url; // host:port
  const entry = { target, method: 'CONNECT', at: Date.now(), ok: false, headers: req.headers };
  log.push(entry);
  process.stderr.write(`CONNECT ${target}\n`);
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
  if (!m) {
    clientSocket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const upstream = net.connect(Number(m[2]), m[1], () => {
    entry.ok = true;
    clientSocket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head && head.length) upstream.write(head);
    upstream.pipe(clientSocket);
    clientSocket.pipe(upstream);
  });
  sockets.add(upstream);
  upstream.on('close', () => sockets.delete(upstream));
  upstream.on('error', () => {
    if (!entry.ok) clientSocket.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
    else clientSocket.destroy();
  });
  clientSocket.on('error', () => upstream.destroy());
  clientSocket.on('close', () => upstream.destroy());
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

const shutdown = () => {
  for (const s of sockets) s.destroy();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
