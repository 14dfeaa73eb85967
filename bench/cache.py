#!/usr/bin/env python3
"""Issue 13: the response cache (run through bench/cache.sh, or bench/run.sh cache).

1. Exact hits: one cached answer served again and again. aiproxyd (the main
   bench's config + `cache: {enabled: true, mode: always, ttl: 1h,
   max_memory: 64MB}`; also the same with `budget.track_costs: false`, since
   every hit is still a ledger row) against nginx `proxy_cache` in front of
   the same fake upstream (2 workers, POST cached, key "$request_uri|
   $request_body"). Both warmed with one request; the second must say hit;
   the fake upstream's request counter (stub_status) must not move during
   the measured runs. wrk with bench/post.lua's body at 1 (latency), 32 and
   256 connections, interleaved rounds (each target's time in a round cut
   into alternating slices), medians; CPU per request from /proc (nginx:
   master + workers + cache manager/loader; aiproxyd: all threads). At 1
   connection the fake upstream itself ("direct", a second instance of it)
   is measured too: the cheapest answer an HTTP server on this machine gives.
   So is, at every connection count, the same aiproxyd with the cache off,
   proxying every request (to "direct"): what a hit saves the gateway.
2. Memory at 10,000 and 100,000 entries: fresh instances filled with N
   distinct requests (the message text numbered; the fake's ~330-byte
   answer) by a keep-alive asyncio client, 64 connections: aiproxyd with
   max_memory 512MB (nothing evicted), the same aiproxyd with the cache off
   (a control: what N requests grow without the cache), and nginx
   proxy_cache (RSS and PSS of all its processes, cache files on disk).
3. The semantic index's search time: bench/semantic.sh, when present, is run
   and its output included.

Everything on free loopback ports from CACHE_PORT_BASE (default 19600) up,
under a temp dir; stopped by PID at the end. Writes
bench/results/<timestamp>-cache.md and .json.

Modes: full (default), quick (1 round of 3 s runs, fills of 2,000 and 10,000:
checks the bench itself), hits (part 1), memory (part 2), semantic (part 3).
Env: BENCH_DURATION (s per target per round, default 10), BENCH_ROUNDS
(default 5), BENCH_SLICES (default 5), CACHE_FILL (default "10000,100000"),
CACHE_FILL_CONNS (default 64), CACHE_PORT_BASE, AIPROXYD, BENCH_KEEP_TMP=1,
CACHE_PIDFILE (set by cache.sh).
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (the main bench: upstream config, wrk, /proc helpers)
import mesh as M  # noqa: E402  (free ports, PID-recording process table, http_json)

CLK_TCK = B.CLK_TCK
CACHE = {"enabled": True, "mode": "always", "ttl": "1h", "max_memory": "64MB"}
FILL_MAX_MEMORY = "512MB"


def log(*a):
    B.log(*a)


class Procs(M.Procs):
    """mesh.py's process table (every PID recorded as it starts), recording to
    CACHE_PIDFILE, which cache.sh's trap reads should this script die."""

    def __init__(self, tmp):
        B.Procs.__init__(self, tmp)
        self.pidfile = os.environ.get("CACHE_PIDFILE")
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write(f"tmpdir {tmp}\n")


# ---------------------------------------------------------------- configs
def fake_conf(prefix, port, sport, log_requests=False):
    """The main bench's fake upstream on the given ports; log_requests: an
    access log of every request's method and URI (the hits must not reach
    it; the gateway's health checks, GETs, do)."""
    saved = dict(B.P)
    B.P.update(up=port, ups=sport)
    try:
        text = B.upstream_conf(prefix)
    finally:
        B.P.clear()
        B.P.update(saved)
    if log_requests:
        text = text.replace("    access_log off;\n",
                            f"    log_format req '$request_method $uri';\n    access_log {prefix}/access.log req;\n")
        assert "access_log off" not in text
    return text


def nginx_cache_conf(prefix, listen, up_port, zone_mb=64):
    """nginx proxy_cache in front of the fake upstream: the main bench's nginx
    baseline (2 workers, keep-alive pool of 64, HTTP/1.1, access log off) plus
    a cache of POST answers keyed on the URI and the body (the body must be in
    memory for $request_body: client_body_buffer_size well above it)."""
    return f"""# cache bench: nginx proxy_cache of POST answers
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    client_max_body_size 1m;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=llm:{zone_mb}m max_size=4g inactive=2h use_temp_path=off;
    upstream up {{ server 127.0.0.1:{up_port}; keepalive 64; keepalive_requests 10000000; }}
    server {{
        listen 127.0.0.1:{listen} reuseport backlog=4096;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
            proxy_cache llm;
            proxy_cache_methods POST;
            proxy_cache_key "$request_uri|$request_body";
            proxy_cache_valid 200 1h;
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""


def gw_conf(tmp, name, port, cache=None, track_costs=None):
    """bench.py's aiproxyd config (workers 2, log warn, ledger and budget at
    their defaults unless track_costs) + cache; its own cost_db."""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    extra = {"budget": {"cost_db": os.path.join(d, "cost.db")}}
    if cache is not None:
        extra["cache"] = cache
    return B.aiproxyd_conf(port, providers=("fake",), track_costs=track_costs, extra=extra)


# ---------------------------------------------------------------- a keep-alive client
def chat_body(text):
    return json.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": text}]},
                      separators=(",", ":")).encode()


async def _fill(port, first, n, conns, cache_header):
    """n POSTs with bodies numbered first..first+n-1 on `conns` keep-alive
    connections; counts statuses and the cache header's values."""
    it = iter(range(first, first + n))
    stats = {"status": {}, "cache": {}, "bytes": 0}

    async def one_conn():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in it:
                body = chat_body(f"Say hello {i:07d}")
                w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                        + b"\r\n\r\n" + body)
                head = await r.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = lines[0].split(" ", 2)[1]
                hdr = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        hdr[k.strip().lower()] = v.strip()
                if "content-length" not in hdr:
                    raise RuntimeError(f"fill: answer without Content-Length: {head[:300]!r}")
                data = await r.readexactly(int(hdr["content-length"]))
                stats["bytes"] += len(data)
                stats["status"][status] = stats["status"].get(status, 0) + 1
                c = hdr.get(cache_header, "-")
                stats["cache"][c] = stats["cache"].get(c, 0) + 1
        finally:
            w.close()
    await asyncio.gather(*[one_conn() for _ in range(conns)])
    return stats


def fill(port, first, n, conns, cache_header):
    t0 = time.monotonic()
    s = asyncio.run(_fill(port, first, n, conns, cache_header))
    s["seconds"] = time.monotonic() - t0
    s["rps"] = n / s["seconds"]
    return s


def post_once(port):
    """One POST of post.lua's body (keep-alive not needed): status, headers."""
    st, h, d = M.http_json(port, "/v1/chat/completions", "POST", chat_body("Say hello"),
                           {"Content-Type": "application/json"})
    return st, {k.lower(): v for k, v in h.items()}, d


# ---------------------------------------------------------------- the bench
class CacheBench:
    def __init__(self, mode):
        self.mode = mode
        self.quick = mode == "quick"
        self.duration = int(os.environ.get("BENCH_DURATION", "3" if self.quick else "10"))
        self.rounds = int(os.environ.get("BENCH_ROUNDS", "1" if self.quick else "5"))
        self.slices = max(1, int(os.environ.get("BENCH_SLICES", "1" if self.quick else "5")))
        self.fills = [int(x) for x in os.environ.get("CACHE_FILL", "2000,10000" if self.quick else
                                                      "10000,100000").split(",")]
        self.fill_conns = int(os.environ.get("CACHE_FILL_CONNS", "64"))
        self.tmp = tempfile.mkdtemp(prefix="aiproxy-cache-bench-")
        # nginx's workers (user nobody when started as root) must reach their cache directory
        os.chmod(self.tmp, 0o711)
        self.binary_mtime = os.path.getmtime(B.AIPROXYD)
        self.pr = Procs(self.tmp)
        self.res = {"mode": mode, "duration_s": self.duration, "rounds": self.rounds, "slices": self.slices,
                    "fills": self.fills, "problems": [], "runs": []}
        base = int(os.environ.get("CACHE_PORT_BASE", "19600"))
        names = ["up", "ups", "direct", "directs", "ngx", "aip", "aip_noledger", "aip_nocache", "f_up", "f_ups", "f_ngx", "f_aip",
                 "f_ctl"]
        self.P = dict(zip(names, M.alloc_ports(len(names), base)))

    def problem(self, msg):
        log("PROBLEM: " + msg)
        self.res["problems"].append(msg)

    def alive(self, name):
        p = self.pr.procs.get(name)
        if p is not None and p.poll() is not None:
            self.problem(f"{name} exited with status {p.returncode} (see {self.tmp}/{name}.out)")
            return False
        return True

    def upstream_requests(self, name):
        """Chat requests (POSTs) the fake upstream `name` has received so far,
        and its other requests (the gateways' health checks)."""
        try:
            with open(os.path.join(self.tmp, name, "access.log")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return 0, 0
        posts = sum(1 for x in lines if x.startswith("POST "))
        return posts, len(lines) - posts

    def gw_cache(self, port):
        try:
            _, _, st = M.http_json(port, "/aiproxy/status")
            return st.get("cache")
        except (OSError, ValueError):
            return None

    def start_upstream(self, name, port, sport):
        self.pr.nginx(name, fake_conf(os.path.join(self.tmp, name), port, sport, log_requests=True), [port, sport])
        B.P["up"], B.P["ups"] = port, sport  # aiproxyd_conf's providers point there

    # ------------------------------------------------------------ part 1
    def start_hits(self):
        P, tmp = self.P, self.tmp
        self.start_upstream("upstream", P["up"], P["ups"])
        self.pr.nginx("direct", fake_conf(os.path.join(tmp, "direct"), P["direct"], P["directs"]), [P["direct"]])
        self.pr.nginx("nginx", nginx_cache_conf(os.path.join(tmp, "nginx"), P["ngx"], P["up"]), [P["ngx"]])
        self.pr.aiproxyd("aiproxyd", gw_conf(tmp, "aiproxyd", P["aip"], CACHE), P["aip"])
        self.pr.aiproxyd("aiproxyd_noledger", gw_conf(tmp, "aiproxyd_noledger", P["aip_noledger"], CACHE,
                                                      track_costs=False), P["aip_noledger"])
        # for comparison: the same aiproxyd without a cache, every request proxied (to the "direct"
        # instance of the fake upstream, so that the cached targets' upstream stays silent)
        B.P["up"] = P["direct"]
        self.pr.aiproxyd("aiproxyd_nocache", gw_conf(tmp, "aiproxyd_nocache", P["aip_nocache"], {"enabled": False}),
                         P["aip_nocache"])
        B.P["up"] = P["up"]
        for name in ("aiproxyd", "aiproxyd_noledger", "aiproxyd_nocache"):
            with open(os.path.join(tmp, name, "aiproxy.json")) as f:
                self.res[f"config_{name}"] = json.loads(f.read())
        with open(os.path.join(tmp, "nginx", "nginx.conf")) as f:
            self.res["config_nginx"] = f.read()
        # warm each cache with one request; the second must be a hit
        warm = {}
        for name, port, hname, miss, hit in (("nginx", P["ngx"], "x-cache-status", "MISS", "HIT"),
                                             ("aiproxyd", P["aip"], "x-aiproxy-cache", "miss", "hit"),
                                             ("aiproxyd_noledger", P["aip_noledger"], "x-aiproxy-cache", "miss",
                                              "hit")):
            u0 = self.upstream_requests("upstream")[0]
            s1, h1, _ = post_once(port)
            s2, h2, d2 = post_once(port)
            time.sleep(0.3)  # the upstream logs a request after it answered it
            u1 = self.upstream_requests("upstream")[0]
            warm[name] = {"first": [s1, h1.get(hname)], "second": [s2, h2.get(hname)], "upstream_requests": u1 - u0,
                          "second_body_bytes": len(json.dumps(d2, separators=(",", ":")))}
            if s1 != 200 or s2 != 200 or h1.get(hname) != miss or h2.get(hname) != hit or u1 - u0 != 1:
                self.problem(f"warm-up {name}: first {s1} {hname}={h1.get(hname)}, second {s2} "
                             f"{hname}={h2.get(hname)}, upstream saw {u1 - u0} requests (want {miss}, {hit}, 1)")
            log(f"warm {name}: first {h1.get(hname)}, second {h2.get(hname)}, upstream saw {u1 - u0}")
        self.res["warm"] = warm

    def targets(self):
        P = self.P
        return {"direct (fake upstream)": (P["direct"], "direct", True),
                "nginx proxy_cache": (P["ngx"], "nginx", True),
                "aiproxyd cache": (P["aip"], "aiproxyd", False),
                "aiproxyd cache, ledger off": (P["aip_noledger"], "aiproxyd_noledger", False),
                "aiproxyd, no cache (proxied)": (P["aip_nocache"], "aiproxyd_nocache", False)}

    def hit_rounds(self):
        P = self.P
        tg = self.targets()
        gws = ["aiproxyd cache", "aiproxyd cache, ledger off"]
        more = ["aiproxyd, no cache (proxied)"]
        plan = {1: ["direct (fake upstream)", "nginx proxy_cache"] + gws + more,
                32: ["nginx proxy_cache"] + gws + more,
                256: ["nginx proxy_cache"] + gws + more}
        for name in plan[1]:
            B.wrk(tg[name][0], 32, 2)  # warm-up: pools, page cache
        u0, h0 = self.upstream_requests("upstream")
        gw0 = {n: self.gw_cache(tg[n][0]) for n in gws}
        slice_s = max(1, round(self.duration / self.slices))
        for rnd in range(self.rounds):
            for c, names in plan.items():
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                acc = {n: [] for n in order}
                ticks = {n: 0 for n in order}
                for _ in range(self.slices):
                    for n in order:
                        port, pname, ngx = tg[n]
                        pids = B.family(self.pr.procs[pname].pid, ngx)
                        t0 = B.cpu_ticks(pids)
                        acc[n].append(B.wrk(port, c, slice_s))
                        ticks[n] += B.cpu_ticks(pids) - t0
                for n in order:
                    d = B.merge_runs(acc[n])
                    d["bytes"] = sum(r["bytes"] for r in acc[n])
                    d.update(target=n, conns=c, round=rnd + 1, slices=self.slices,
                             p50_slices=[r["p50_us"] for r in acc[n]],
                             cpu_us_per_req=ticks[n] / CLK_TCK * 1e6 / max(1, d["requests"]))
                    self.res["runs"].append(d)
                    log(f"round {rnd + 1} c={c:<3} {n:<27} {d['rps']:>8.0f} req/s  p50 {d['p50_us']:>6} us  "
                        f"p99 {d['p99_us']:>6} us  cpu {d['cpu_us_per_req']:.1f} us/req  errors {d['errors']} "
                        f"(non-2xx {d['non2xx']})")
                    if d["errors"]:
                        self.problem(f"{n} c={c} round {rnd + 1}: {d['errors']} errors (non-2xx {d['non2xx']}, "
                                     f"connect {d['err_connect']}, read {d['err_read']}, write {d['err_write']}, "
                                     f"timeout {d['err_timeout']})")
                for pname in ("nginx", "aiproxyd", "aiproxyd_noledger", "aiproxyd_nocache", "upstream", "direct"):
                    self.alive(pname)
        time.sleep(0.3)
        u1, h1 = self.upstream_requests("upstream")
        self.res["upstream_requests_during_runs"] = u1 - u0
        self.res["upstream_other_requests_during_runs"] = h1 - h0
        if u1 != u0:
            self.problem(f"the fake upstream received {u1 - u0} requests during the measured runs (want 0)")
        chk = {}
        for n in gws:
            g1 = self.gw_cache(tg[n][0])
            sent = sum(r["requests"] for r in self.res["runs"] if r["target"] == n)
            if gw0[n] and g1:
                chk[n] = {"wrk_answers": sent, "hits": g1["hits"] - gw0[n]["hits"],
                          "misses": g1["misses"] - gw0[n]["misses"], "entries": g1["entries"]}
                # wrk counts the answers it read; requests in flight when a run ended were served too
                slack = sum(r["conns"] * r["slices"] for r in self.res["runs"] if r["target"] == n)
                if chk[n]["misses"] or not sent <= chk[n]["hits"] <= sent + slack:
                    self.problem(f"{n}: wrk counted {sent} answers; the gateway counted {chk[n]['hits']} hits "
                                 f"and {chk[n]['misses']} misses")
        self.res["gateway_hit_counts"] = chk
        log(f"upstream requests during the runs: {u1 - u0}; gateway counts: {json.dumps(chk)}")

    def summarize_hits(self):
        runs = self.res["runs"]
        by = {}
        for r in runs:
            by.setdefault((r["target"], r["conns"]), {})[r["round"]] = r
        tab = {}
        for (t, c), rr in by.items():
            rs = [rr[k] for k in sorted(rr)]
            tab[f"{t}@{c}"] = {"target": t, "conns": c, "rps": B.med([r["rps"] for r in rs]),
                               "p50": B.med([r["p50_us"] for r in rs]), "p99": B.med([r["p99_us"] for r in rs]),
                               "cpu": B.med([r["cpu_us_per_req"] for r in rs]),
                               "rps_rounds": [round(r["rps"]) for r in rs], "p50_rounds": [r["p50_us"] for r in rs],
                               "p99_rounds": [r["p99_us"] for r in rs],
                               "bytes_per_answer": sum(r["bytes"] for r in rs) / max(1, sum(r["requests"] for r in rs)),
                               "errors": sum(r["errors"] for r in rs), "non2xx": sum(r["non2xx"] for r in rs),
                               "requests": sum(r["requests"] for r in rs)}
        rounds = sorted({r["round"] for r in runs})
        g = lambda t, c, k: by[(t, c)][k]  # noqa: E731
        ratio = {}
        for gw in ("aiproxyd cache", "aiproxyd cache, ledger off"):
            for c in (32, 256):
                rr = [g(gw, c, k)["rps"] / g("nginx proxy_cache", c, k)["rps"] for k in rounds]
                cr = [g(gw, c, k)["cpu_us_per_req"] / g("nginx proxy_cache", c, k)["cpu_us_per_req"] for k in rounds]
                ratio[f"{gw}@{c}"] = {"rounds": [round(x, 3) for x in rr], "median": B.med(rr),
                                      "cpu_rounds": [round(x, 3) for x in cr], "cpu_median": B.med(cr)}
            p50 = [g(gw, 1, k)["p50_us"] - g("nginx proxy_cache", 1, k)["p50_us"] for k in rounds]
            p99 = [g(gw, 1, k)["p99_us"] - g("nginx proxy_cache", 1, k)["p99_us"] for k in rounds]
            ratio[f"{gw}@1"] = {"p50_diff_rounds": p50, "p50_diff": B.med(p50),
                                "p99_diff_rounds": p99, "p99_diff": B.med(p99)}
        # what a hit saves the gateway: hits against the same gateway proxying every request
        for c in (32, 256):
            rr = [g("aiproxyd cache", c, k)["rps"] / g("aiproxyd, no cache (proxied)", c, k)["rps"] for k in rounds]
            cr = [g("aiproxyd cache", c, k)["cpu_us_per_req"] / g("aiproxyd, no cache (proxied)", c, k)["cpu_us_per_req"]
                  for k in rounds]
            ratio[f"hit/proxied@{c}"] = {"rounds": [round(x, 3) for x in rr], "median": B.med(rr),
                                         "cpu_rounds": [round(x, 3) for x in cr], "cpu_median": B.med(cr)}
        p50 = [g("aiproxyd cache", 1, k)["p50_us"] - g("aiproxyd, no cache (proxied)", 1, k)["p50_us"] for k in rounds]
        ratio["hit/proxied@1"] = {"p50_diff_rounds": p50, "p50_diff": B.med(p50)}
        self.res["hits"] = {"tab": tab, "ratio": ratio}

    # ------------------------------------------------------------ part 2
    def memory(self):
        P, tmp = self.P, self.tmp
        self.start_upstream("f_upstream", P["f_up"], P["f_ups"])
        self.pr.aiproxyd("f_aiproxyd", gw_conf(tmp, "f_aiproxyd", P["f_aip"],
                                               dict(CACHE, max_memory=FILL_MAX_MEMORY)), P["f_aip"])
        self.pr.aiproxyd("f_control", gw_conf(tmp, "f_control", P["f_ctl"], {"enabled": False}), P["f_ctl"])
        self.pr.nginx("f_nginx", nginx_cache_conf(os.path.join(tmp, "f_nginx"), P["f_ngx"], P["f_up"],
                                                  zone_mb=64), [P["f_ngx"]])
        cache_dir = os.path.join(tmp, "f_nginx", "cache")
        who = [("aiproxyd cache", "f_aiproxyd", P["f_aip"], "x-aiproxy-cache", False),
               ("aiproxyd, cache off (control)", "f_control", P["f_ctl"], "x-aiproxy-cache", False),
               ("nginx proxy_cache", "f_nginx", P["f_ngx"], "x-cache-status", True)]
        out = {}
        # one at a time, so that each fill has the machine to itself
        for label, pname, port, hname, ngx in who:
            pid = self.pr.procs[pname].pid
            # RSS_0: after 2,000 requests of one body (pools, threads, the ledger's
            # first pages: what serving costs before the cache holds anything)
            fill_one = B.wrk(port, 32, 1)
            time.sleep(1)
            samples = [self.mem_sample(label, pname, port, pid, ngx, 0, cache_dir)]
            samples[0]["warm_requests"] = fill_one["requests"]
            done = 0
            for n in self.fills:
                u0 = self.upstream_requests("f_upstream")[0]
                st = fill(port, done, n - done, self.fill_conns, hname)
                time.sleep(0.3)
                u1 = self.upstream_requests("f_upstream")[0]
                done = n
                time.sleep(2)  # the ledger's batch, nginx's cache files
                s = self.mem_sample(label, pname, port, pid, ngx, n, cache_dir)
                s.update(fill_seconds=round(st["seconds"], 2), fill_rps=round(st["rps"]),
                         fill_status=st["status"], fill_cache=st["cache"], upstream_requests=u1 - u0)
                samples.append(s)
                log(f"memory {label}: {n} requests ({st['rps']:.0f}/s, {json.dumps(st['cache'])}), "
                    f"upstream saw {u1 - u0}: RSS {s['rss_kb'] / 1024:.1f} MB"
                    + (f", PSS {s['pss_kb'] / 1024:.1f} MB, cache dir {s['disk_kb'] / 1024:.1f} MB "
                       f"({s['files']} files)" if ngx else "")
                    + (f", status entries {s['status']['entries']} bytes {s['status']['bytes']} "
                       f"evictions {s['status']['evictions']}" if s.get("status") else ""))
                if set(st["status"]) != {"200"}:
                    self.problem(f"fill {label}: statuses {st['status']}")
                want_miss = "MISS" if ngx else "miss"
                if pname != "f_control" and st["cache"].get(want_miss) != n - samples[-2]["n"]:
                    self.problem(f"fill {label}: {hname} values {st['cache']} (want {n - samples[-2]['n']} "
                                 f"{want_miss})")
                if u1 - u0 != n - samples[-2]["n"]:
                    self.problem(f"fill {label}: the upstream saw {u1 - u0} requests for {n - samples[-2]['n']} "
                                 f"distinct ones")
                if s.get("status") and (s["status"]["entries"] != n + 1 or s["status"]["evictions"]):
                    self.problem(f"fill {label}: status says {s['status']['entries']} entries, "
                                 f"{s['status']['evictions']} evictions after {n} + 1 distinct requests")
            self.alive(pname)
            out[label] = samples
            self.pr.stop(pname)
        self.res["memory"] = out

    def mem_sample(self, label, pname, port, pid, ngx, n, cache_dir):
        s = {"n": n}
        if ngx:
            pids = B.family(pid, True)
            s["procs"] = len(pids)
            s["rss_kb"] = sum(B.status_kb(p, "VmRSS") for p in pids)
            s["rss_anon_kb"] = sum(B.status_kb(p, "RssAnon") for p in pids)
            s["rss_shmem_kb"] = sum(B.status_kb(p, "RssShmem") for p in pids)
            s["pss_kb"] = sum(B.pss_kb(p) for p in pids)
            s["rss_by_proc_kb"] = [B.status_kb(p, "VmRSS") for p in pids]
            files, apparent = 0, 0
            for d, _, fs in os.walk(cache_dir):
                for f in fs:
                    files += 1
                    apparent += os.path.getsize(os.path.join(d, f))
            s["files"], s["apparent_bytes"] = files, apparent
            du = subprocess.run(["du", "-sk", cache_dir], capture_output=True, text=True).stdout.split()
            s["disk_kb"] = int(du[0]) if du else 0
        else:
            s["rss_kb"] = B.status_kb(pid, "VmRSS")
            s["rss_anon_kb"] = B.status_kb(pid, "RssAnon")
            s["pss_kb"] = B.pss_kb(pid)
            c = self.gw_cache(port)
            if c and c.get("enabled"):
                s["status"] = {k: c.get(k) for k in ("entries", "bytes", "max_bytes", "evictions", "stores",
                                                     "misses", "hits")}
        return s

    # ------------------------------------------------------------ part 3
    def semantic(self):
        sh = os.path.join(B.BENCH, "semantic.sh")
        if not os.path.exists(sh):
            self.res["semantic"] = {"present": False}
            log("semantic: bench/semantic.sh is not there; skipped")
            return
        log("semantic: running bench/semantic.sh")
        t0 = time.monotonic()
        env = dict(os.environ)
        r = subprocess.run(["bash", sh], capture_output=True, text=True, env=env, timeout=3600)
        self.res["semantic"] = {"present": True, "rc": r.returncode, "seconds": round(time.monotonic() - t0, 1),
                                "stdout": r.stdout, "stderr": r.stderr[-4000:]}
        if r.returncode:
            self.problem(f"bench/semantic.sh exited with {r.returncode}: {r.stderr[-500:]}")

    # ------------------------------------------------------------ report
    def report(self):
        m = self.res
        L = [f"# aiproxy response cache benchmark (issue 13) — {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n",
             f"Command: `bench/cache.sh {self.mode}` ({m['rounds']} round(s), {m['duration_s']} s per target per "
             f"round in {m['slices']} alternating slice(s); fills of {', '.join(map(str, m['fills']))} entries)\n",
             "Machine: " + B.machine() + f"; load average before: {m.get('loadavg_before')}, after: "
             f"{m.get('loadavg_after')}. wrk, the fake upstream and the proxies share the cores.\n",
             f"aiproxyd: {B.AIPROXYD} ({m.get('git')} when the run started; binary modified "
             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.binary_mtime))} UTC, copied at the start)\n"]
        tg = []
        if "hits" in m:
            s = m["hits"]
            t = s["tab"]
            L.append("## Exact hits (wrk, POST 73-byte chat body, always the same; medians of rounds)\n")
            L.append("Both caches warmed with one request (the second answered "
                     + ", ".join(f"{k}: {v['second'][1]}" for k, v in m.get("warm", {}).items())
                     + f"). The fake upstream received {m.get('upstream_requests_during_runs')} chat requests "
                     f"during the measured runs (and {m.get('upstream_other_requests_during_runs')} GETs: the "
                     "gateways' health checks, every 30 s). aiproxyd's hit answer carries its `x-aiproxy` metadata, so it is "
                     "longer than nginx's (bytes per answer, headers included, below).\n")
            L.append("| target | conns | req/s | req/s per round | p50 µs | p50 per round | p99 µs | CPU µs/req | "
                     "bytes/answer | errors (non-2xx) |")
            L.append("|---|---:|---:|---|---:|---|---:|---:|---:|---:|")
            for c in (1, 32, 256):
                for n in self.targets():
                    x = t.get(f"{n}@{c}")
                    if not x:
                        continue
                    L.append(f"| {n} | {c} | {x['rps']:.0f} | {' '.join(map(str, x['rps_rounds']))} | "
                             f"{x['p50']:.0f} | {' '.join(map(str, x['p50_rounds']))} | {x['p99']:.0f} | "
                             f"{x['cpu']:.1f} | {x['bytes_per_answer']:.0f} | {x['errors']} ({x['non2xx']}) |")
            L.append("")
            L.append("| aiproxyd / nginx proxy_cache | req/s ratio per round | median | CPU µs/req ratio (median) |")
            L.append("|---|---|---:|---:|")
            for gw in ("aiproxyd cache", "aiproxyd cache, ledger off"):
                for c in (32, 256):
                    v = s["ratio"][f"{gw}@{c}"]
                    L.append(f"| {gw}, c={c} | {' '.join(map(str, v['rounds']))} | **{v['median']:.3f}** | "
                             f"{v['cpu_median']:.2f} |")
            for c in (32, 256):
                v = s["ratio"][f"hit/proxied@{c}"]
                L.append(f"| (aiproxyd cache ÷ aiproxyd proxying every request, c={c}) | "
                         f"{' '.join(map(str, v['rounds']))} | {v['median']:.3f} | {v['cpu_median']:.2f} |")
            L.append("")
            L.append("| at 1 connection | p50 − nginx's p50, per round (µs) | median | p99 − nginx's p99 (median) |")
            L.append("|---|---|---:|---:|")
            for gw in ("aiproxyd cache", "aiproxyd cache, ledger off"):
                v = s["ratio"][f"{gw}@1"]
                L.append(f"| {gw} | {' '.join(f'{x:+.0f}' for x in v['p50_diff_rounds'])} | "
                         f"**{v['p50_diff']:+.0f}** | {v['p99_diff']:+.0f} |")
            v = s["ratio"]["hit/proxied@1"]
            L.append(f"| (aiproxyd cache − aiproxyd proxying every request) | "
                     f"{' '.join(f'{x:+.0f}' for x in v['p50_diff_rounds'])} | {v['p50_diff']:+.0f} | |")
            L.append("")
            if m.get("gateway_hit_counts"):
                L.append("Gateway's own counts over the measured runs (`/aiproxy/status`): "
                         + "; ".join(f"{k}: {v['hits']} hits, {v['misses']} misses for {v['wrk_answers']} answers "
                                     f"read by wrk, {v['entries']} entry" for k, v in m["gateway_hit_counts"].items())
                         + ".\n")
            for c in (32, 256):
                r = s["ratio"][f"aiproxyd cache@{c}"]["median"]
                tg.append((f"exact-hit throughput at {c} conns ≥ 1.0× nginx proxy_cache", f"{r:.3f}×", r >= 1.0))
            a, n = t["aiproxyd cache@1"], t["nginx proxy_cache@1"]
            tg.append(("hit latency at 1 conn ≤ nginx's (p50)", f"{a['p50']:.0f} vs {n['p50']:.0f} µs "
                       f"(per-round difference {s['ratio']['aiproxyd cache@1']['p50_diff']:+.0f})",
                       s["ratio"]["aiproxyd cache@1"]["p50_diff"] <= 0))
        if "memory" in m:
            mem = m["memory"]
            L.append(f"## Memory at N entries (fresh instances; N distinct requests on {self.fill_conns} keep-alive "
                     f"connections; aiproxyd max_memory {FILL_MAX_MEMORY})\n")
            L.append("RSS_0: after 1 s of wrk c=32 with one body (one entry). Bytes per entry = (RSS_N − RSS_0) / N. "
                     "The control is the same aiproxyd with the cache off, sent the same requests. nginx: the sum "
                     "over its processes (master, 2 workers, cache manager, cache loader while it lives); RSS "
                     "counts the keys_zone's shared pages once per process that touched them, PSS once. Its "
                     "answers live in files (page cache), outside any RSS.\n")
            L.append("| process | N | RSS MB | (RSS_N − RSS_0) / N, bytes | PSS MB | fill req/s | upstream requests "
                     "| cache's own count (entries, bytes) | cache files on disk |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
            for label, samples in mem.items():
                r0 = samples[0]
                for x in samples:
                    per = f"{(x['rss_kb'] - r0['rss_kb']) * 1024 / x['n']:.0f}" if x["n"] else "–"
                    own = (f"{x['status']['entries']}, {x['status']['bytes'] / 1e6:.1f} MB "
                           f"({x['status']['bytes'] / max(1, x['status']['entries']):.0f} B/entry), "
                           f"{x['status']['evictions']} evicted" if x.get("status") else "–")
                    disk = (f"{x['files']} files, {x['apparent_bytes'] / 1e6:.1f} MB apparent, "
                            f"{x['disk_kb'] / 1024:.1f} MB allocated" if "files" in x else "–")
                    L.append(f"| {label} | {x['n']} | {x['rss_kb'] / 1024:.1f} | {per} | {x['pss_kb'] / 1024:.1f} | "
                             f"{x.get('fill_rps', '–')} | {x.get('upstream_requests', '–')} | {own} | {disk} |")
            L.append("")
            if "aiproxyd cache" in mem and "aiproxyd, cache off (control)" in mem:
                a, c = mem["aiproxyd cache"], mem["aiproxyd, cache off (control)"]
                parts = []
                for xa, xc in zip(a[1:], c[1:]):
                    net = ((xa["rss_kb"] - a[0]["rss_kb"]) - (xc["rss_kb"] - c[0]["rss_kb"])) * 1024 / xa["n"]
                    parts.append(f"{net:.0f} B at {xa['n']}")
                    m.setdefault("memory_net_bytes_per_entry", {})[str(xa["n"])] = net
                L.append("aiproxyd's growth per entry net of the control's (what N requests grow without the "
                         "cache): " + ", ".join(parts) + ".\n")
                for xa in a[1:]:
                    tg.append((f"RSS at {xa['n']} entries (no target; reported)",
                               f"{xa['rss_kb'] / 1024:.1f} MB, "
                               f"{(xa['rss_kb'] - a[0]['rss_kb']) * 1024 / xa['n']:.0f} B/entry", None))
        if "semantic" in m:
            L.append("## Semantic index search time (bench/semantic.sh)\n")
            if not m["semantic"]["present"]:
                L.append("bench/semantic.sh is not there: skipped.\n")
            else:
                L.append(f"Exit status {m['semantic']['rc']}, {m['semantic']['seconds']} s.\n")
                L.append("```\n" + m["semantic"]["stdout"].rstrip() + "\n```\n")
        if tg:
            L.append("## Targets\n")
            L.append("| target | measured | met |")
            L.append("|---|---|---|")
            for a, b, ok in tg:
                L.append(f"| {a} | {b} | {'–' if ok is None else 'yes' if ok else '**no**'} |")
            L.append("")
        if m["problems"]:
            L.append("## Problems seen\n")
            L += [f"- {x}" for x in m["problems"]]
            L.append("")
        return "\n".join(L)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    if mode not in ("full", "quick", "hits", "memory", "semantic"):
        print(__doc__)
        sys.exit(2)
    b = CacheBench(mode)
    b.res["git"] = B.git_rev()
    b.res["loadavg_before"] = open("/proc/loadavg").read().split()[:3]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit("hung up"))
    log(f"temp dir {b.tmp}; ports {min(b.P.values())}-{max(b.P.values())}")
    failed = None
    try:
        try:
            if mode in ("full", "quick", "hits"):
                b.start_hits()
                b.hit_rounds()
                b.summarize_hits()
                b.pr.stop_all()
            if mode in ("full", "quick", "memory"):
                b.memory()
                b.pr.stop_all()
            if mode in ("full", "quick", "semantic"):
                b.semantic()
        except Exception as e:  # noqa: BLE001 - reported with what was measured so far
            failed = e
            b.problem(f"bench aborted: {type(e).__name__}: {e}")
        finally:
            b.pr.stop_all()
        b.res["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
        text = b.report()
        print(text)
        os.makedirs(os.path.join(B.BENCH, "results"), exist_ok=True)
        path = os.path.join(B.BENCH, "results", f"{time.strftime('%Y%m%d-%H%M%S')}-cache.md")
        with open(path, "w") as f:
            f.write(text + "\n")
        with open(path[:-3] + ".json", "w") as f:
            json.dump(b.res, f, indent=1, default=str)
        log(f"wrote {path}")
    finally:
        if os.environ.get("BENCH_KEEP_TMP") != "1":
            shutil.rmtree(b.tmp, ignore_errors=True)
        else:
            log(f"kept {b.tmp}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
