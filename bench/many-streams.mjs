// Opens N concurrent streaming chat requests through a proxy and holds them
// until they finish; while all are open, samples VmRSS/PSS (and open
// descriptors) of the given pids.
// Usage: node many-streams.mjs --port P [--n 1000] [--model M] [--pids 1,2,3]
//        [--ramp K]   open K connections every 50 ms instead of all at once
// Prints one line: MANYJSON {...}
import net from 'node:net';
import fs from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, arr) =>
  (v.startsWith('--') ? a.concat([[v.slice(2), arr[i + 1]]]) : a), []));
const port = Number(args.port);
const N = Number(args.n || 1000);
const ramp = Number(args.ramp || 0);
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
function fds(pid) {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return 0; }
}

let started = 0, firstByte = 0, done = 0, failed = 0, status200 = 0, closed = 0;
let settled = 0; // streams that got their first chunk, or an answer other than 200, or ended without either
const statuses = {}, errors = {}, examples = {}; // examples: one answer per non-200 status
let closedBeforeFirst = 0, closedAfterFirst = 0;
const samples = [];
const t0 = Date.now();
let allOpenAt = 0;

function one() {
  started++;
  const s = net.connect(port, '127.0.0.1');
  let buf = '', gotFirst = false, finished = false, statusSeen = false, code = null, isSettled = false;
  const settle = () => { if (!isSettled) { isSettled = true; settled++; } };
  s.setEncoding('utf8');
  s.on('connect', () => s.write(reqText));
  s.on('data', d => {
    buf += d;
    if (!statusSeen && buf.includes('\r\n')) {
      statusSeen = true;
      const m = /^HTTP\/1\.1 (\d+)/.exec(buf);
      code = m ? m[1] : 'garbled';
      statuses[code] = (statuses[code] || 0) + 1;
      if (code === '200') status200++;
      else settle();
    }
    if (code && code !== '200') {
      // a refusal: close once its body is in (a keep-alive 502 would otherwise
      // stay open until the proxy's idle timeout)
      const h = buf.indexOf('\r\n\r\n'), m = /\r\ncontent-length:\s*(\d+)/i.exec(buf);
      if (h >= 0 && (!m || Buffer.byteLength(buf.slice(h + 4)) >= Number(m[1]))) s.end();
      return;
    }
    if (!gotFirst && buf.includes('data: ')) { gotFirst = true; firstByte++; settle(); }
    if (!finished && buf.includes('data: [DONE]')) { finished = true; done++; s.end(); }
    if (buf.length > 4096) buf = buf.slice(-64); // keep memory low; markers are short
  });
  s.on('error', e => { const k = e.code || e.message; errors[k] = (errors[k] || 0) + 1; });
  s.on('close', () => {
    closed++;
    if (code && code !== '200' && !(code in examples)) examples[code] = buf.slice(0, 400);
    if (!finished) {
      failed++;
      if (gotFirst) closedAfterFirst++; else closedBeforeFirst++;
      settle();
    }
  });
}

if (ramp > 0) {
  const opener = setInterval(() => {
    for (let k = 0; k < ramp && started < N; k++) one();
    if (started >= N) clearInterval(opener);
  }, 50);
} else {
  for (let i = 0; i < N; i++) one();
}

const timer = setInterval(() => {
  if (!allOpenAt && settled === N) allOpenAt = Date.now();
  // sample while no stream has ended; `all`: every stream has its first chunk
  // or its refusal (if that never happens, the peak is over the other samples)
  if (started === N && done === 0) {
    const per = pids.map(rssKB);
    const pss = pids.map(pssKB).reduce((a, b) => a + b, 0);
    const fd = pids.map(fds).reduce((a, b) => a + b, 0);
    samples.push({ t_ms: Date.now() - t0, all: settled === N, rss_kb: per.reduce((a, b) => a + b, 0), pss_kb: pss, fds: fd,
      open: firstByte - closedAfterFirst, per });
  }
  if (closed >= N) {
    clearInterval(timer);
    const allOpen = samples.filter(x => x.all);
    const use = allOpen.length ? allOpen : samples;
    const peak = use.reduce((m, x) => Math.max(m, x.rss_kb), 0);
    const med = use.length ? use.map(x => x.rss_kb).sort((a, b) => a - b)[use.length >> 1] : 0;
    console.log('MANYJSON ' + JSON.stringify({
      n: N, status200, first_byte: firstByte, done, failed, statuses, errors, examples,
      closed_before_first_chunk: closedBeforeFirst, closed_after_first_chunk: closedAfterFirst,
      all_open_after_ms: allOpenAt ? allOpenAt - t0 : null,
      total_ms: Date.now() - t0, rss_samples: use.length, samples_all_open: allOpen.length > 0,
      rss_peak_kb: peak, rss_median_kb: med,
      pss_peak_kb: use.reduce((m, x) => Math.max(m, x.pss_kb), 0),
      fds_peak: use.reduce((m, x) => Math.max(m, x.fds), 0),
      open_at_peak: (use.find(x => x.rss_kb === peak) || {}).open ?? null,
      last_sample: use[use.length - 1] || null,
    }));
    process.exit(0);
  }
}, 1000);
