// Opens N concurrent streaming chat requests through a proxy and holds them
// until they finish; while all are open, samples VmRSS of the given pids.
// Usage: node many-streams.mjs --port P [--n 1000] [--model M] [--pids 1,2,3]
// Prints one line: MANYJSON {...}
import net from 'node:net';
import fs from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, arr) =>
  (v.startsWith('--') ? a.concat([[v.slice(2), arr[i + 1]]]) : a), []));
const port = Number(args.port);
const N = Number(args.n || 1000);
const model = args.model || 'gpt-bench';
const pids = (args.pids || '').split(',').filter(Boolean).map(Number);
const body = JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'Say hello' }] });
const reqText = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

function pssKB(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const m = /\nPss:\s+(\d+)/.exec(s); return m ? Number(m[1]) : 0;
  } catch { return 0; }
}
function rssKB(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+)/.exec(s); return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

let firstByte = 0, done = 0, failed = 0, status200 = 0, closed = 0;
const samples = [];
const t0 = Date.now();
let allOpenAt = 0;

function one() {
  const s = net.connect(port, '127.0.0.1');
  let buf = '', gotFirst = false, finished = false, statusSeen = false;
  s.setEncoding('utf8');
  s.on('connect', () => s.write(reqText));
  s.on('data', d => {
    buf += d;
    if (!statusSeen && buf.includes('\r\n')) {
      statusSeen = true;
      if (/^HTTP\/1\.1 200/.test(buf)) status200++;
    }
    if (!gotFirst && buf.includes('data: ')) { gotFirst = true; firstByte++; }
    if (!finished && buf.includes('data: [DONE]')) { finished = true; done++; s.end(); }
    if (buf.length > 4096) buf = buf.slice(-64); // keep memory low; markers are short
  });
  s.on('error', () => {});
  s.on('close', () => { closed++; if (!finished) failed++; });
}

for (let i = 0; i < N; i++) one();

const timer = setInterval(() => {
  if (!allOpenAt && firstByte === N) allOpenAt = Date.now();
  if (firstByte === N && done === 0) {
    const per = pids.map(rssKB);
    const pss = pids.map(pssKB).reduce((a, b) => a + b, 0);
    samples.push({ t_ms: Date.now() - t0, rss_kb: per.reduce((a, b) => a + b, 0), pss_kb: pss, per });
  }
  if (closed >= N) {
    clearInterval(timer);
    const peak = samples.reduce((m, x) => Math.max(m, x.rss_kb), 0);
    const med = samples.length ? samples.map(x => x.rss_kb).sort((a, b) => a - b)[samples.length >> 1] : 0;
    console.log('MANYJSON ' + JSON.stringify({
      n: N, status200, first_byte: firstByte, done, failed, all_open_after_ms: allOpenAt ? allOpenAt - t0 : null,
      total_ms: Date.now() - t0, rss_samples: samples.length, rss_peak_kb: peak, rss_median_kb: med,
      pss_peak_kb: samples.reduce((m, x) => Math.max(m, x.pss_kb), 0),
      last_sample: samples[samples.length - 1] || null,
    }));
    process.exit(0);
  }
}, 1000);
