// aiproxy dashboard: polls GET /aiproxy/admin/stats (same origin, the
// admin key travels as an HttpOnly cookie) every 2 s and draws the figures
// on <canvas> with the small chart helpers below. No libraries.
'use strict';

const REFRESH_MS = 2000;
const COLORS = ['#2f6fdf', '#e8892b', '#d64545', '#2e9e5b', '#8a55d8', '#1aa3a3', '#b5651d', '#666'];

const $ = (id) => document.getElementById(id);
const fmtInt = (n) => Number(n || 0).toLocaleString('en-US');
const fmtUsd = (n) => '$' + Number(n || 0).toFixed(n >= 100 ? 2 : 6);
const fmtMs = (n) => (n === null || n === undefined ? '–' : n >= 10000 ? (n / 1000).toFixed(1) + ' s' : Math.round(n) + ' ms');

const fmtBytes = (n) => {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  for (n = Number(n || 0); n >= 1024 && i < u.length - 1; i++) n /= 1024;
  return i ? n.toFixed(1) + ' ' + u[i] : Math.round(n) + ' B';
};
const fmtPct = (f) => (100 * (f || 0)).toFixed(1) + '%';

const axisMs = (v, max) => (max < 10 ? v.toFixed(1) : String(Math.round(v)));

// ---- canvas helpers ----

function setup(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const h = Number(canvas.getAttribute('height')) || 150;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); }
  canvas.height = Math.round(h * dpr);
  canvas.style.height = h + 'px';
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px system-ui, sans-serif';
  return { ctx, w, h };
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// series: [{name, color, values (numbers or null), bars?}]; labels: x labels (strings)
function lineChart(canvas, labels, series, o = {}) {
  const { ctx, w, h } = setup(canvas);
  const left = 44, right = 8, top = 8, bottom = 20;
  const pw = w - left - right, ph = h - top - bottom;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = niceMax(max);
  ctx.strokeStyle = '#e2e6ee';
  ctx.fillStyle = '#6b7385';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
    const v = (max * i) / 4;
    ctx.fillText(o.fmt ? o.fmt(v, max) : String(Math.round(v * 100) / 100), 2, y + 4);
  }
  const n = labels.length;
  const x = (i) => left + (n <= 1 ? 0 : (pw * i) / (n - 1));
  const y = (v) => top + ph - (ph * v) / max;
  const step = Math.max(1, Math.ceil(n / 6));
  for (let i = 0; i < n; i += step) ctx.fillText(labels[i], Math.min(x(i), w - 40), h - 5);
  for (const s of series) {
    if (s.bars) {
      const bw = Math.max(1, pw / Math.max(n, 1) - 1);
      ctx.fillStyle = s.color;
      s.values.forEach((v, i) => { if (v) ctx.fillRect(x(i) - bw / 2, y(v), bw, top + ph - y(v)); });
      continue;
    }
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      if (!pen) ctx.moveTo(x(i), y(v)); else ctx.lineTo(x(i), y(v));
      pen = true;
    });
    ctx.stroke();
    ctx.fillStyle = s.color; // dots, so that a lone minute shows too
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      ctx.beginPath(); ctx.arc(x(i), y(v), 2.5, 0, 2 * Math.PI); ctx.fill();
    });
  }
  // legend
  let lx = left + 4;
  for (const s of series) {
    ctx.fillStyle = s.color;
    ctx.fillRect(lx, top + 2, 10, 10);
    ctx.fillStyle = '#1d2330';
    ctx.fillText(s.name, lx + 14, top + 11);
    lx += ctx.measureText(s.name).width + 30;
  }
}

// items: [{name, value}] drawn as horizontal bars, largest first
function barChart(canvas, items, fmt) {
  const rows = items.slice().sort((a, b) => b.value - a.value).slice(0, 8);
  const rowH = 20;
  canvas.setAttribute('height', String(Math.max(60, rows.length * rowH + 10)));
  const { ctx, w } = setup(canvas);
  if (!rows.length) {
    ctx.fillStyle = '#6b7385';
    ctx.fillText('no spend yet today', 4, 20);
    return;
  }
  const labelW = 130, valueW = 90;
  const max = Math.max(...rows.map((r) => r.value), 1e-12);
  rows.forEach((r, i) => {
    const y = 5 + i * rowH;
    ctx.fillStyle = '#1d2330';
    ctx.fillText(r.name.length > 20 ? r.name.slice(0, 19) + '…' : r.name, 2, y + 13);
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillRect(labelW, y + 2, Math.max(2, ((w - labelW - valueW) * r.value) / max), rowH - 6);
    ctx.fillStyle = '#1d2330';
    ctx.fillText(fmt(r.value), w - valueW + 6, y + 13);
  });
}

// ---- rendering ----

// The context delta buffer (SPEC section 8): the prompt tokens its
// injections saved against sending the projects' files whole.
function renderContext(c) {
  const on = !!(c && c.enabled);
  $('context-saved').textContent = on ? fmtInt(c.tokens_saved) : 'off';
  $('context-saved').dataset.value = on ? String(c.tokens_saved) : '';
  $('context-saved').title = on ? `${fmtInt(c.injections)} injections, ${fmtInt(c.projects)} projects` : '';
}

// The response cache (GET /aiproxy/admin/stats .cache, the same object as
// /aiproxy/status): on or off, and its figures since the node started.
function renderCache(c) {
  const on = !!(c && c.enabled);
  $('cache-off').style.display = on ? 'none' : '';
  $('cache-on').style.display = on ? '' : 'none';
  $('cache-rate').textContent = on ? fmtPct(c.hit_rate) : 'off';
  $('cache-rate').dataset.value = on ? String(c.hit_rate) : '';
  if (!on) { $('cache-mode').textContent = ''; return; }
  const sem = c.semantic && c.semantic.enabled ? `, semantic ≥ ${c.semantic.threshold}` : '';
  $('cache-mode').textContent = `(mode ${c.mode}, backend ${c.backend}, ttl ${c.ttl_s} s${sem})`;
  $('cache-hit-rate').textContent = fmtPct(c.hit_rate);
  $('cache-hit-rate').dataset.value = String(c.hit_rate);
  $('cache-hit-bar').style.width = Math.min(100, 100 * (c.hit_rate || 0)) + '%';
  $('cache-hits').textContent = `${fmtInt(c.hits)} / ${fmtInt(c.semantic_hits)}`;
  $('cache-hits').dataset.value = String(c.hits + c.semantic_hits);
  $('cache-misses').textContent = fmtInt(c.misses);
  $('cache-misses').dataset.value = String(c.misses);
  $('cache-entries').textContent = fmtInt(c.entries) + (c.backend === 'redis' ? ' (front)' : '');
  $('cache-entries').dataset.value = String(c.entries);
  const used = c.max_bytes ? Math.min(100, (100 * c.bytes) / c.max_bytes) : 0;
  $('cache-bytes').textContent = fmtBytes(c.bytes);
  $('cache-bytes').dataset.value = String(c.bytes);
  $('cache-bytes-bar').style.width = used + '%';
  $('cache-max').textContent = `of ${fmtBytes(c.max_bytes)} (${used.toFixed(1)}%)`;
  $('cache-saved').textContent = fmtUsd(c.saved_usd);
  $('cache-saved').dataset.value = String(c.saved_usd);
}

function pill(text) {
  const s = document.createElement('span');
  s.className = 'pill ' + text;
  s.textContent = text;
  return s;
}

function fillTable(id, rows) {
  const body = $(id).querySelector('tbody');
  body.textContent = '';
  for (const cells of rows) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      if (c instanceof Node) td.appendChild(c);
      else td.textContent = c === null || c === undefined ? '–' : String(c);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  return body;
}

function hhmm(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 5);
}

function render(s) {
  const node = s.node || {};
  $('node').textContent = `node ${node.id || '?'} · up ${Math.floor((node.uptime_seconds || 0) / 60)} min`;
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  const t = s.totals;
  $('total-requests').textContent = fmtInt(t.requests);
  $('total-requests').dataset.value = String(t.requests);
  $('total-errors').textContent = fmtInt(t.errors);
  $('inflight').textContent = `${t.in_flight} / ${t.open_streams}`;
  $('total-cost').textContent = fmtUsd(t.cost_usd);
  $('total-cost').dataset.value = String(t.cost_usd);
  renderCache(s.cache);
  renderContext(s.context);
  const ps = s.per_second;
  const last10 = ps.slice(-11, -1); // complete seconds only
  const rps = last10.reduce((a, p) => a + p[1], 0) / Math.max(1, last10.length);
  $('rps').textContent = rps.toFixed(1);
  const lh = s.last_hour;
  $('latency').textContent = `${fmtMs(lh.p50_ms)} / ${fmtMs(lh.p95_ms)} / ${fmtMs(lh.p99_ms)}`;
  $('ttft').textContent = `${fmtMs(lh.ttft_p50_ms)} / ${fmtMs(lh.ttft_p95_ms)}`;

  lineChart($('chart-rps'), ps.map((p) => new Date(p[0] * 1000).toTimeString().slice(3, 8)), [
    { name: 'requests', color: COLORS[0], values: ps.map((p) => p[1]), bars: true },
    { name: 'errors', color: COLORS[2], values: ps.map((p) => p[2]), bars: true },
  ]);
  const pm = s.per_minute;
  const labels = pm.map((m) => hhmm(m.t));
  lineChart($('chart-latency'), labels, [
    { name: 'p50', color: COLORS[3], values: pm.map((m) => m.p50_ms) },
    { name: 'p95', color: COLORS[1], values: pm.map((m) => m.p95_ms) },
    { name: 'p99', color: COLORS[2], values: pm.map((m) => m.p99_ms) },
  ], { fmt: axisMs });
  lineChart($('chart-ttft'), labels, [
    { name: 'p50', color: COLORS[0], values: pm.map((m) => m.ttft_p50_ms) },
    { name: 'p95', color: COLORS[4], values: pm.map((m) => m.ttft_p95_ms) },
  ], { fmt: axisMs });

  const b = s.budget;
  const spent = b.today_spent || 0;
  if (b.daily_limit) {
    const pct = (100 * spent) / b.daily_limit;
    $('spend-text').textContent = `${fmtUsd(spent)} of ${fmtUsd(b.daily_limit)} (${pct.toFixed(1)}%)`;
    const bar = $('spend-bar');
    bar.style.width = Math.min(100, pct) + '%';
    bar.className = pct >= 100 ? 'over' : pct >= 80 ? 'warn' : '';
  } else {
    $('spend-text').textContent = `${fmtUsd(spent)} (no daily limit)`;
    $('spend-bar').style.width = '0';
  }
  $('spend-text').dataset.value = String(spent);
  $('spend-month').textContent = `this month ${fmtUsd(b.month_spent)}` + (b.monthly_limit ? ` of ${fmtUsd(b.monthly_limit)}` : '');
  barChart($('chart-cost-provider'), s.cost_by_provider.map((c) => ({ name: c.name, value: c.today })), fmtUsd);
  barChart($('chart-cost-model'), s.cost_by_model.map((c) => ({ name: c.name, value: c.today })), fmtUsd);

  fillTable('providers', s.providers.map((p) => [
    p.name, p.type, pill(p.health), pill(p.circuit), fmtMs(p.avg_latency_ms), fmtMs(p.avg_ttft_ms),
    p.in_flight, fmtInt(p.attempts), fmtInt(p.failures), p.models,
  ]));
  const eb = fillTable('errors', s.recent_errors.slice(0, 15).map((e) => [
    new Date(e.ts_ms).toLocaleTimeString(), e.status, e.path, e.model || '–', e.provider || '–', e.message, e.request_id,
  ]));
  eb.querySelectorAll('td:nth-child(6)').forEach((td) => { td.className = 'msg'; });
  if (!s.recent_errors.length) fillTable('errors', [['none', '', '', '', '', '', '']]);
  const peers = $('peers');
  peers.textContent = '';
  if (!s.mesh_peers.length) {
    peers.textContent = s.mesh_enabled ? 'Mesh on: no peer known yet.'
      : 'Mesh federation is off on this node (node.mesh.enabled).';
    peers.className = 'muted';
  } else {
    peers.className = '';
    const t = document.createElement('table');
    t.id = 'mesh-peers';
    t.innerHTML = '<thead><tr><th>Peer</th><th>Address</th><th>Status</th><th>Latency</th>'
      + '<th>Load</th><th>Models</th><th>Spend today</th><th>Last seen</th></tr></thead>';
    const tb = document.createElement('tbody');
    for (const p of s.mesh_peers) {
      const tr = document.createElement('tr');
      const cells = [p.id, p.addr, null, fmtMs(p.latency_ms),
        p.load == null ? '–' : `${Math.round(p.load * 100)}%`, p.models_available,
        p.spend_today == null ? '–' : `$${p.spend_today.toFixed(4)}`,
        p.last_seen ? new Date(p.last_seen).toLocaleTimeString() : 'never'];
      for (const c of cells) {
        const td = document.createElement('td');
        if (c === null) td.appendChild(pill(p.status));
        else td.textContent = String(c);
        tr.appendChild(td);
      }
      if (p.last_error) tr.title = p.last_error;
      tb.appendChild(tr);
    }
    t.appendChild(tb);
    peers.appendChild(t);
  }
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

let banner = null;
function showError(msg) {
  if (!banner) {
    banner = document.createElement('div');
    banner.className = 'error-banner';
    document.body.insertBefore(banner, document.body.firstChild.nextSibling);
  }
  banner.textContent = msg;
  banner.hidden = !msg;
}

async function refresh() {
  try {
    const r = await fetch('/aiproxy/admin/stats', { credentials: 'same-origin', cache: 'no-store' });
    if (r.status === 401 || r.status === 403) {
      showError('The admin key was refused; open /dashboard again to sign in.');
      return;
    }
    if (!r.ok) throw new Error('HTTP ' + r.status);
    render(await r.json());
    showError('');
  } catch (e) {
    showError('Cannot reach the node: ' + e.message + ' (retrying)');
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
