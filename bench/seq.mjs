// Sequential keep-alive client on one connection: sends N chat requests one
// after the other and measures, for each, the time from the request being
// written to the first body byte (TTFB) and to the end of the response.
// Usage: node seq.mjs --port P [--n 500] [--model M] [--stream 1] [--warmup 20]
// Prints: SEQJSON {...} (times in microseconds)
import net from 'node:net';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, arr) =>
  (v.startsWith('--') ? a.concat([[v.slice(2), arr[i + 1]]]) : a), []));
const port = Number(args.port);
const N = Number(args.n || 500);
const warm = Number(args.warmup || 20);
const model = args.model || 'gpt-bench';
const stream = args.stream === '1';
const b = { model, messages: [{ role: 'user', content: 'Say hello' }] };
if (stream) b.stream = true;
const body = JSON.stringify(b);
const req = Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);

const sock = net.connect(port, '127.0.0.1');
sock.setNoDelay(true);
let buf = Buffer.alloc(0), t0 = 0n, tFirst = 0n, hdrEnd = -1, clen = -1, chunked = false, status = 0;
let i = 0;
const ttfb = [], total = [], statuses = {};
let doneMarker = 0;

function send() { buf = Buffer.alloc(0); hdrEnd = -1; tFirst = 0n; t0 = process.hrtime.bigint(); sock.write(req); }

sock.on('connect', send);
sock.on('data', d => {
  const now = process.hrtime.bigint();
  buf = buf.length ? Buffer.concat([buf, d]) : d;
  if (hdrEnd < 0) {
    const k = buf.indexOf('\r\n\r\n');
    if (k < 0) return;
    hdrEnd = k + 4;
    const head = buf.subarray(0, k).toString('latin1');
    status = Number(head.slice(9, 12));
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    clen = m ? Number(m[1]) : -1;
    chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
  }
  if (!tFirst && buf.length > hdrEnd) tFirst = now;
  let complete = false;
  if (clen >= 0) complete = buf.length >= hdrEnd + clen;
  else if (chunked) complete = buf.length >= 5 && buf.subarray(buf.length - 5).toString('latin1') === '0\r\n\r\n';
  if (!complete) return;
  if (stream && buf.includes('data: [DONE]')) doneMarker++;
  statuses[status] = (statuses[status] || 0) + 1;
  if (i >= warm) { ttfb.push(Number(tFirst - t0) / 1000); total.push(Number(now - t0) / 1000); }
  i++;
  if (i < N + warm) send();
  else finish();
});
sock.on('error', e => { console.log('SEQJSON ' + JSON.stringify({ error: String(e), completed: i })); process.exit(1); });

function pct(a, p) { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] : null; }
function finish() {
  sock.end();
  console.log('SEQJSON ' + JSON.stringify({
    n: ttfb.length, statuses, done_marker: doneMarker,
    ttfb_p50: pct(ttfb, 50), ttfb_p99: pct(ttfb, 99), total_p50: pct(total, 50), total_p99: pct(total, 99),
    ttfb,
  }));
  process.exit(0);
}
