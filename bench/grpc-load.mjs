#!/usr/bin/env node
// grpc-load: a node load client for bench/grpc.sh (ghz is not in Debian).
//   node bench/grpc-load.mjs MODE PORT CONCURRENCY SECONDS
// MODE grpc: aiproxy.v1.Gateway/Chat with @grpc/grpc-js (the repository's
// proto); MODE rest: POST /v1/chat/completions over h2c with node:http2.
// Both send the same chat request, CONCURRENCY calls in flight on one
// HTTP/2 connection, for SECONDS after a 1 s warm-up. Prints one JSON line
// {mode, requests, errors, rps}.
import http2 from 'node:http2';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../tests/package.json'));
const [mode, port, conc = '32', secs = '10'] = process.argv.slice(2);
const body = { model: 'gpt-bench', messages: [{ role: 'user', content: 'Say hello' }] };
const json = JSON.stringify(body);

let oneCall;
let close;
if (mode === 'grpc') {
  const grpc = require('@grpc/grpc-js');
  const loader = require('@grpc/proto-loader');
  const def = loader.loadSync('aiproxy/v1/gateway.proto', { includeDirs: [path.join(here, '../proto')], keepCase: true, longs: Number, defaults: true });
  const { Gateway } = grpc.loadPackageDefinition(def).aiproxy.v1;
  const c = new Gateway(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  oneCall = () => new Promise((res) => c.Chat(body, (e, r) => res(!e && r.content.length > 0)));
  close = () => c.close();
} else {
  const s = http2.connect(`http://127.0.0.1:${port}`);
  s.on('error', () => {});
  oneCall = () => new Promise((res) => {
    const st = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
    let status = 0;
    const parts = [];
    st.on('response', (h) => { status = h[':status']; });
    st.on('data', (d) => parts.push(d));
    st.on('end', () => res(status === 200 && Buffer.concat(parts).length > 0));
    st.on('error', () => res(false));
    st.end(json);
  });
  close = () => s.close();
}

let counting = false;
let requests = 0;
let errors = 0;
let stop = false;
async function loop() {
  while (!stop) {
    const ok = await oneCall();
    if (!counting) continue;
    if (ok) requests++;
    else errors++;
  }
}
const loops = Array.from({ length: Number(conc) }, loop);
await new Promise((r) => setTimeout(r, 1000));
counting = true;
const t0 = process.hrtime.bigint();
await new Promise((r) => setTimeout(r, Number(secs) * 1000));
counting = false;
const dt = Number(process.hrtime.bigint() - t0) / 1e9;
stop = true;
await Promise.all(loops);
close();
console.log(JSON.stringify({ mode, requests, errors, rps: Math.round(requests / dt) }));
