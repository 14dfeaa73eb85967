// Trickle upstream: answers every POST .../chat/completions with an SSE stream,
// one chunk every INTERVAL ms for DURATION ms, then a usage chunk and [DONE];
// a GET (the gateway's health check of /v1/models) with a one-model list.
// Usage: node trickle-upstream.mjs PORT [interval_ms=500] [duration_ms=20000]
import http from 'node:http';

const port = Number(process.argv[2] || 19107);
const interval = Number(process.argv[3] || 500);
const duration = Number(process.argv[4] || 20000);
const n = Math.max(1, Math.round(duration / interval));

const chunk = (content, finish) => 'data: ' + JSON.stringify({
  id: 'chatcmpl-trickle', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-bench',
  choices: [{ index: 0, delta: content == null ? {} : { content }, finish_reason: finish }],
}) + '\n\n';
const usage = 'data: ' + JSON.stringify({
  id: 'chatcmpl-trickle', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-bench',
  choices: [], usage: { prompt_tokens: 9, completion_tokens: n, total_tokens: 9 + n },
}) + '\n\n';

let open = 0, served = 0;
const server = http.createServer((req, res) => {
  req.resume();
  if (req.method === 'GET') { // aiproxyd's health check (GET /v1/models): answer at once
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-bench', object: 'model', owned_by: 'bench' }] }));
    return;
  }
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    open++;
    let i = 0;
    const t = setInterval(() => {
      i++;
      if (i < n) { res.write(chunk('tok' + i + ' ', null)); return; }
      clearInterval(t);
      res.write(chunk(null, 'stop'));
      res.write(usage);
      res.end('data: [DONE]\n\n');
      open--; served++;
    }, interval);
    res.write(chunk('tok0 ', null));
    res.on('close', () => { if (i < n) { clearInterval(t); open--; } });
  });
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 130000;
server.requestTimeout = 0;
server.maxConnections = 100000;
// a deep accept queue: the 10,000-stream run opens thousands of upstream connections a second
server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => console.log(`trickle upstream on ${port}: ${n} chunks every ${interval} ms`));
process.on('SIGTERM', () => { console.log(`trickle: served ${served}, open ${open}`); process.exit(0); });
