#!/usr/bin/env python3
"""aiproxy benchmark orchestrator (run through bench/run.sh).

Starts everything itself on loopback ports under a temp dir: a fake upstream
(nginx), a baseline proxy (nginx proxy_pass) and aiproxyd; drives them with
wrk and small node clients; prints a table and writes bench/results/<ts>.md
(+ .json with the raw runs).

Modes: full (default), quick, soak, many [N], many10k, profile, ledger, metrics, auth,
routing, issues (= metrics + auth + routing), cluster, tls.  See bench/README.md.
"""
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
AIPROXYD = os.environ.get("AIPROXYD", os.path.join(ROOT, "build", "aiproxyd"))
NGINX = os.environ.get("NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
WRK = shutil.which("wrk") or "wrk"
NODE = shutil.which("node") or "node"
CLK_TCK = os.sysconf("SC_CLK_TCK")

BASE = int(os.environ.get("BENCH_PORT_BASE", "19100"))
P = dict(up=BASE, ups=BASE + 1, ngx=BASE + 2, ngxs=BASE + 3, ngxt=BASE + 4,
         aip=BASE + 5, aipi=BASE + 6, trk=BASE + 7, aipt=BASE + 8, redis=BASE + 9)

# ---------------------------------------------------------------- fixtures
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    "system_fingerprint": "fp_bench"}, separators=(",", ":"))


def sse_body():
    words = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?", " Bye"]
    out = []
    for w in words:
        out.append("data: " + json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-bench",
            "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}, separators=(",", ":")))
    out.append("data: " + json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-bench",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, separators=(",", ":")))
    out.append("data: " + json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-bench",
        "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19}},
        separators=(",", ":")))
    out.append("data: [DONE]")
    return "\n\n".join(out) + "\n\n"


def nginx_quote(s):
    assert "'" not in s
    return "'" + s.replace("\\", "\\\\") + "'"


def upstream_conf(prefix):
    return f"""# fake upstream: fixed OpenAI replies; `return` does not read the body
# (nginx discards it), which keeps the upstream as cheap as possible.
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_buffer_size 16k;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{P['up']} reuseport backlog=4096;
        location / {{ default_type application/json; return 200 {nginx_quote(COMPLETION)}; }}
    }}
    server {{
        listen 127.0.0.1:{P['ups']} reuseport backlog=4096;
        location / {{ default_type text/event-stream; add_header Cache-Control no-cache;
                     return 200 {nginx_quote(sse_body())}; }}
    }}
}}
"""


def proxy_conf(prefix, servers=("ngx", "ngxs", "ngxt"), worker_connections=8192, rlimit_nofile=16384):
    loc = "proxy_http_version 1.1; proxy_set_header Connection \"\";"
    blocks = {
        "ngx": f"server {{ listen 127.0.0.1:{P['ngx']} reuseport backlog=4096; location / {{ proxy_pass http://up; {loc} }} }}",
        "ngxs": f"server {{ listen 127.0.0.1:{P['ngxs']} reuseport backlog=4096; location / {{ proxy_pass http://ups; {loc} proxy_buffering off; }} }}",
        "ngxt": f"server {{ listen 127.0.0.1:{P['ngxt']} reuseport backlog=4096; location / {{ proxy_pass http://trk; {loc} proxy_buffering off; proxy_read_timeout 120s; }} }}",
    }
    return f"""# baseline proxy: nginx proxy_pass with a keep-alive upstream pool
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile {rlimit_nofile};
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream up  {{ server 127.0.0.1:{P['up']};  keepalive 64; keepalive_requests 10000000; }}
    upstream ups {{ server 127.0.0.1:{P['ups']}; keepalive 64; keepalive_requests 10000000; }}
    upstream trk {{ server 127.0.0.1:{P['trk']}; keepalive 64; keepalive_requests 10000000; }}
    {chr(10).join('    ' + blocks[s] for s in servers)}
}}
"""


BENCH_KEY = "sk-bench-client-0123456789abcdef"

# issue 5: auth + rate limits + budget + ledger on, every limit far above what a run sends
SECURE = {
    "security": {
        "auth": {"enabled": True, "type": "api_key",
                 "api_keys": [{"key": BENCH_KEY, "name": "bench", "rate_limit": 1000000000,
                               "requests_per_minute": 1000000000, "tokens_per_minute": 1000000000}]},
        "rate_limiting": {"enabled": True, "default_limit": 1000000000, "requests_per_minute": 1000000000,
                          "tokens_per_minute": 1000000000, "by_ip": True, "by_api_key": True}},
    "budget": {"enabled": True, "daily_limit": 1000000, "monthly_limit": 10000000, "track_costs": True},
}
# ... and the same gateway with all of that off
INSECURE = {
    "security": {"auth": {"enabled": False}, "rate_limiting": {"enabled": False}},
    "budget": {"enabled": False, "track_costs": False},
}
# issue 4: gpt-bench served by 3 providers (all in front of the same fake upstream),
# cost_optimized with the policies of the standard's section 4.1 example
ROUTED = {
    "routing": {
        "strategy": "cost_optimized",
        "policies": [
            {"name": "minimize_cost", "type": "cost_optimized",
             "rules": [{"if": "request.tokens < 1000", "then": "provider.priority ASC"},
                       {"if": "request.tokens >= 1000", "then": "provider.cost_per_1k_tokens ASC"}]},
            {"name": "minimize_latency", "type": "latency_optimized",
             "rules": [{"if": "provider.type == 'local'", "then": "priority = 1"},
                       {"if": "provider.type == 'cloudflare'", "then": "priority = 2"},
                       {"else": "priority = 3"}]},
            {"name": "route_by_model", "type": "model_specific",
             "rules": [{"if": "request.model matches 'llama-*'", "then": "prefer provider.local > provider.cloudflare"},
                       {"if": "request.model == 'gpt-4*'", "then": "require provider.openai"}]},
        ],
        "failover": {"enabled": True, "max_retries": 3, "fallback_chain": ["fake", "fake2", "fake3"]},
    },
}


def aiproxyd_conf(port, level="warn", providers=("fake", "fakes"), track_costs=None, extra=None):
    prov = {
        "fake": {"type": "openai", "endpoint": f"http://127.0.0.1:{P['up']}/v1",
                 "credentials": {"api_key": "sk-bench"},
                 "models": [{"name": "gpt-bench", "cost_per_1k_input_tokens": 0.001, "cost_per_1k_output_tokens": 0.002}]},
        "fakes": {"type": "openai", "endpoint": f"http://127.0.0.1:{P['ups']}/v1",
                  "credentials": {"api_key": "sk-bench"},
                  "models": [{"name": "gpt-bench-stream", "cost_per_1k_input_tokens": 0.001, "cost_per_1k_output_tokens": 0.002}]},
        "trickle": {"type": "openai", "endpoint": f"http://127.0.0.1:{P['trk']}/v1",
                    "credentials": {"api_key": "sk-bench"},
                    "models": [{"name": "gpt-bench", "cost_per_1k_input_tokens": 0.001, "cost_per_1k_output_tokens": 0.002}]},
    }
    # two more providers of gpt-bench (routing mode): dearer, lower priority
    for i, price in ((2, 0.002), (3, 0.003)):
        prov[f"fake{i}"] = {"type": "openai", "endpoint": f"http://127.0.0.1:{P['up']}/v1", "priority": i,
                            "credentials": {"api_key": "sk-bench"},
                            "models": [{"name": "gpt-bench", "cost_per_1k_input_tokens": price,
                                        "cost_per_1k_output_tokens": 2 * price}]}
    if "fake2" in providers:
        prov["fake"] = dict(prov["fake"], priority=1)
    conf = {"node": {"id": "bench"},
            "server": {"listen_addr": f"127.0.0.1:{port}", "workers": 2},
            "providers": {k: prov[k] for k in providers},
            "observability": {"logging": {"level": level}}}
    if track_costs is not None:
        conf["budget"] = {"track_costs": track_costs}
    for k, v in (extra or {}).items():
        conf[k] = dict(conf.get(k, {}), **v)
    return json.dumps(conf, indent=1)


# ---------------------------------------------------------------- processes
def log(*a):
    print(*a, file=sys.stderr, flush=True)


def wait_port(port, proc=None, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening after {timeout}s")


def port_free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = {}
        # a private copy: others may rebuild build/ while the bench runs, and
        # perf needs the binary it sampled to still exist
        os.makedirs(os.path.join(tmp, "bin"))
        self.binary = os.path.join(tmp, "bin", "aiproxyd")
        shutil.copy2(AIPROXYD, self.binary)

    def start(self, name, argv, cwd=None, stdout=None, ports=()):
        out = open(os.path.join(self.tmp, name + ".out"), "w") if stdout is None else stdout
        argv = [str(a) for a in argv]
        p = subprocess.Popen(argv, cwd=cwd or self.tmp, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs[name] = p
        for port in ports:
            wait_port(port, p)
        return p

    def nginx(self, name, conf_text, ports):
        prefix = os.path.join(self.tmp, name)
        for d in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(conf_text)
        p = self.start(name, [NGINX, "-p", prefix + "/", "-c", conf, "-e", os.path.join(prefix, "error.log")],
                       ports=ports)
        # wait until the workers exist
        for _ in range(100):
            if len(children(p.pid)) > 0:
                break
            time.sleep(0.05)
        return p

    def aiproxyd(self, name, conf_text, port, stdout=None):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "aiproxy.json")
        with open(conf, "w") as f:
            f.write(conf_text)
        return self.start(name, [self.binary, "--config", conf], cwd=d, stdout=stdout, ports=[port])

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def stop_all(self):
        for n in list(self.procs):
            self.stop(n)


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
            if ppid == pid:
                out.append(int(d))
        except (OSError, ValueError):
            pass
    return out


def family(pid, nginx):
    return [pid] + children(pid) if nginx else [pid]


def cpu_ticks(pids):
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            t += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except OSError:
            pass
    return t


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------- clients
def wrk(port, conns, duration, model="gpt-bench", max_req=0, auth="", scheme="http", close=False):
    threads = 1 if conns == 1 else 2
    env = dict(os.environ, BENCH_MODEL=model, BENCH_THREADS=str(threads), BENCH_MAX_REQ=str(max_req),
               BENCH_AUTH=auth, BENCH_CLOSE="1" if close else "0")
    cmd = [WRK, f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "-s",
           os.path.join(BENCH, "post.lua"), f"{scheme}://127.0.0.1:{port}/v1/chat/completions"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    m = re.search(r"BENCHJSON (\{.*\})", r.stdout)
    if not m:
        raise RuntimeError("wrk failed: " + r.stdout + r.stderr)
    d = json.loads(m.group(1))
    m2 = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    d["non2xx"] = int(m2.group(1)) if m2 else 0
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    d["errors"] = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_timeout"] + d["non2xx"]
    return d


def merge_runs(runs):
    """One result from wrk runs of the same variant: counts summed, rate over
    the summed time, latency percentiles as the median of the runs'."""
    if len(runs) == 1:
        return runs[0]
    d = dict(runs[0])
    for k in ("requests", "duration_us", "non2xx", "errors", "err_connect", "err_read", "err_write",
              "err_timeout"):
        d[k] = sum(r.get(k, 0) for r in runs)
    for k in ("p50_us", "p99_us"):
        d[k] = med([r[k] for r in runs])
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    return d


def merge_scrapes(results):
    """One scraper summary from several (issue 6 runs cut into slices)."""
    results = [r for r in results if r]
    if not results:
        return None
    return {"n": sum(r["n"] for r in results), "ok": sum(r["ok"] for r in results),
            "bad": [b for r in results for b in r["bad"]][:5], "bytes": results[-1]["bytes"],
            "p50_ms": med([r["p50_ms"] for r in results]), "max_ms": max(r["max_ms"] for r in results)}


def node_json(script, args, tag, timeout=600):
    r = subprocess.run([NODE, os.path.join(BENCH, script)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout)
    m = re.search(tag + r" (\{.*\})", r.stdout)
    if not m:
        raise RuntimeError(f"{script} failed: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    return json.loads(m.group(1))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else None


class Scraper:
    """GET /metrics every `every` s on one keep-alive connection (as Prometheus does), in a thread."""

    def __init__(self, port, auth="", every=0.1):
        import http.client
        import threading
        self.port, self.auth, self.every = port, auth, every
        self.lat, self.n, self.ok, self.bytes, self.bad = [], 0, 0, 0, {}
        self.stopping = threading.Event()
        self.hc = http.client
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        conn = None
        nxt = time.monotonic()
        hdr = {"Authorization": "Bearer " + self.auth} if self.auth else {}
        while not self.stopping.is_set():
            t = time.monotonic()
            try:
                if conn is None:
                    conn = self.hc.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/metrics", headers=hdr)
                r = conn.getresponse()
                body = r.read()
                self.n += 1
                if r.status == 200:
                    self.ok += 1
                    self.bytes = len(body)
                else:
                    self.bad[str(r.status)] = self.bad.get(str(r.status), 0) + 1
            except Exception as e:  # noqa: BLE001 - counted, reported
                self.n += 1
                self.bad[type(e).__name__] = self.bad.get(type(e).__name__, 0) + 1
                conn = None
            self.lat.append(time.monotonic() - t)
            nxt += self.every
            self.stopping.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self.stopping.set()
        self.th.join(timeout=10)
        return {"n": self.n, "ok": self.ok, "bytes": self.bytes, "bad": self.bad,
                "p50_ms": (pct(self.lat, 50) or 0) * 1e3, "max_ms": max(self.lat or [0]) * 1e3}


# ---------------------------------------------------------------- phases
class Bench:
    def __init__(self, mode):
        self.mode = mode
        self.cmd = mode
        self.quick = mode == "quick"
        self.duration = int(os.environ.get("BENCH_DURATION", "3" if self.quick else "10"))
        ab = mode in ("metrics", "auth", "routing", "issues", "auth_parts", "cluster", "tls")
        self.rounds = int(os.environ.get("BENCH_ROUNDS", "1" if self.quick else "5" if ab else "3"))
        self.default_slices = "5" if ab else "1"  # A/B runs alternate in 2 s slices (see ab)
        self.tmp = tempfile.mkdtemp(prefix="aiproxy-bench-")
        self.pr = Procs(self.tmp)
        self.res = {"mode": mode, "duration_s": self.duration, "rounds": self.rounds, "runs": [],
                    "problems": []}
        self.pids = {}

    def problem(self, msg):
        log("PROBLEM: " + msg)
        self.res["problems"].append(msg)

    def check_alive(self, name):
        p = self.pr.procs.get(name)
        if p is not None and p.poll() is not None:
            self.problem(f"{name} exited with status {p.returncode} (see {self.tmp}/{name}.out)")
            return False
        return True

    def start_main(self, info=True):
        self.pr.nginx("upstream", upstream_conf(os.path.join(self.tmp, "upstream")), [P["up"], P["ups"]])
        self.pr.nginx("nginxproxy", proxy_conf(os.path.join(self.tmp, "nginxproxy"), ("ngx", "ngxs")),
                      [P["ngx"], P["ngxs"]])
        self.pr.aiproxyd("aiproxyd", aiproxyd_conf(P["aip"]), P["aip"])
        if info:
            self.pr.aiproxyd("aiproxyd_info", aiproxyd_conf(P["aipi"], "info"), P["aipi"],
                             stdout=open(os.devnull, "w"))

    def ledger(self):
        """aiproxyd with and without cost tracking (the SQLite ledger), next to nginx, c=32."""
        self.pr.nginx("upstream", upstream_conf(os.path.join(self.tmp, "upstream")), [P["up"], P["ups"]])
        self.pr.nginx("nginxproxy", proxy_conf(os.path.join(self.tmp, "nginxproxy"), ("ngx", "ngxs")),
                      [P["ngx"], P["ngxs"]])
        self.pr.aiproxyd("aiproxyd", aiproxyd_conf(P["aip"]), P["aip"])
        self.pr.aiproxyd("aiproxyd_nocost", aiproxyd_conf(P["aipi"], track_costs=False), P["aipi"])
        T = [("nginx", P["ngx"], "nginxproxy", True), ("aiproxyd", P["aip"], "aiproxyd", False),
             ("aiproxyd_nocost", P["aipi"], "aiproxyd_nocost", False)]
        for _, port, _, _ in T:
            wrk(port, 32, 2)
        out = {}
        for rnd in range(self.rounds):
            for name, port, pname, ngx in T[rnd % 3:] + T[:rnd % 3]:
                pids = family(self.pr.procs[pname].pid, ngx)
                t0 = cpu_ticks(pids)
                d = wrk(port, 32, self.duration)
                cpu = (cpu_ticks(pids) - t0) / CLK_TCK * 1e6 / max(1, d["requests"])
                out.setdefault(name, []).append((d["rps"], cpu, d["errors"]))
                log(f"ledger round {rnd+1} {name:<16} {d['rps']:>8.0f} req/s  cpu {cpu:.1f} us/req  errors {d['errors']}")
        self.res["ledger"] = {k: {"rps": med([x[0] for x in v]), "cpu_us_per_req": med([x[1] for x in v]),
                                  "errors": sum(x[2] for x in v)} for k, v in out.items()}

    # ------------------------------------------------ issues 4, 5, 6: A/B ratios
    def ab(self, key, variants, concs=(32,)):
        """Interleaved rounds over variants [(name, port, pname, auth, scrape)]: wrk at each of
        concs, the variants' order rotated every round; req/s, p50/p99 and CPU per request.
        A variant may carry a 6th item, {"scheme": "https", "close": True, "nginx": True}: wrk's
        URL scheme, Connection: close on every request, and CPU counted over nginx's workers."""
        vopt = {v[0]: (v[5] if len(v) > 5 else {}) for v in variants}
        variants = [v[:5] for v in variants]

        def run(name, port, c, secs, auth):
            o = vopt[name]
            return wrk(port, c, secs, auth=auth, scheme=o.get("scheme", "http"), close=o.get("close", False))
        for v in variants:
            run(v[0], v[1], 32, 2, v[3])
        out = {}
        n = len(variants)
        # Each variant's run in a round is cut into `slices` short wrk runs that
        # alternate with the other variants' (A B A B ...): this machine's speed
        # drifts over seconds, and alternating every couple of seconds puts both
        # variants under the same drift (BENCH_SLICES=1: one run each, as before).
        slices = max(1, int(os.environ.get("BENCH_SLICES", self.default_slices)))
        slice_s = max(1, round(self.duration / slices))
        for rnd in range(self.rounds):
            for c in concs:
                order = variants[rnd % n:] + variants[:rnd % n]
                acc = {v[0]: [] for v in order}
                ticks = {v[0]: 0 for v in order}
                scrapers = {v[0]: [] for v in order}
                for _ in range(slices):
                    for name, port, pname, auth, scrape in order:
                        pids = family(self.pr.procs[pname].pid, vopt[name].get("nginx", False))
                        sc = Scraper(port, auth) if scrape else None
                        t0 = cpu_ticks(pids)
                        acc[name].append(run(name, port, c, slice_s, auth))
                        ticks[name] += cpu_ticks(pids) - t0
                        if sc:
                            scrapers[name].append(sc.stop())
                for name, port, pname, auth, scrape in order:
                    d = merge_runs(acc[name])
                    cpu = ticks[name] / CLK_TCK * 1e6 / max(1, d["requests"])
                    sres = merge_scrapes(scrapers[name]) if scrape else None
                    d.update(target=name, conns=c, round=rnd + 1, cpu_us_per_req=cpu, mode=key, slices=slices)
                    if sres:
                        d["scrapes"] = sres
                    self.res["runs_ab"] = self.res.get("runs_ab", []) + [d]
                    out.setdefault((name, c), []).append(d)
                    log(f"{key} round {rnd+1} c={c:<3} {name:<18} {d['rps']:>8.0f} req/s  p50 {d['p50_us']:>6} us  "
                        f"cpu {cpu:.1f} us/req  errors {d['errors']} (non-2xx {d['non2xx']})" +
                        (f"  scrapes {sres['n']} ok {sres['ok']} p50 {sres['p50_ms']:.2f} ms "
                         f"{sres['bytes']} B" if sres else ""))
                    if d["errors"]:
                        self.problem(f"{key}: {name} c={c} round {rnd+1}: {d['errors']} errors "
                                     f"(non-2xx {d['non2xx']}, connect {d['err_connect']}, read {d['err_read']}, "
                                     f"timeout {d['err_timeout']})")
                    if sres and sres["ok"] != sres["n"]:
                        self.problem(f"{key}: {sres['n'] - sres['ok']} of {sres['n']} scrapes failed: {sres['bad']}")
                    self.check_alive(pname)
        base = variants[0][0]
        summ = {}
        for c in concs:
            for name, *_ in variants:
                rs = out[(name, c)]
                x = {"rps": med([r["rps"] for r in rs]), "p50_us": med([r["p50_us"] for r in rs]),
                     "p99_us": med([r["p99_us"] for r in rs]), "cpu_us_per_req": med([r["cpu_us_per_req"] for r in rs]),
                     "errors": sum(r["errors"] for r in rs), "non2xx": sum(r["non2xx"] for r in rs),
                     "rps_rounds": [round(r["rps"]) for r in rs]}
                # per-round ratio to the base variant (same round, adjacent in time): less noisy than
                # the ratio of medians on a shared machine
                if name != base:
                    b = out[(base, c)]
                    x["ratio_rounds"] = [round(r["rps"] / q["rps"], 3) for r, q in zip(rs, b)]
                    x["ratio_median_of_rounds"] = med(x["ratio_rounds"])
                    x["ratio_of_medians"] = x["rps"] / med([q["rps"] for q in b])
                    x["cpu_ratio_rounds"] = [round(r["cpu_us_per_req"] / q["cpu_us_per_req"], 3) for r, q in zip(rs, b)]
                    x["cpu_ratio_median_of_rounds"] = med(x["cpu_ratio_rounds"])
                if any("scrapes" in r for r in rs):
                    x["scrapes"] = sum(r["scrapes"]["n"] for r in rs)
                    x["scrape_p50_ms"] = med([r["scrapes"]["p50_ms"] for r in rs])
                    x["scrape_bytes"] = rs[-1]["scrapes"]["bytes"]
                summ[f"{name}@{c}"] = x
        self.res.setdefault("ab", {})[key] = {"base": base, "concs": list(concs), "variants": [v[0] for v in variants],
                                              "summary": summ}

    def cluster_mode(self):
        """issue 12: limits and budgets in Redis vs in node-local memory (both with auth, rate
        limits, tokens per minute, a budget and the ledger), c=32 and 256; Redis calls per request."""
        self.start_upstream()
        self.pr.start("redis", ["redis-server", "--port", P["redis"], "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", self.tmp], ports=(P["redis"],))
        shared = dict(SECURE, cluster={"redis": {"url": f"redis://127.0.0.1:{P['redis']}/0"}})
        self.pr.aiproxyd("aiproxyd_local", aiproxyd_conf(P["aip"], extra=SECURE), P["aip"])
        self.pr.aiproxyd("aiproxyd_redis", aiproxyd_conf(P["aipi"], extra=shared), P["aipi"])

        def evalsha_stats():
            out = subprocess.run(["redis-cli", "-p", str(P["redis"]), "INFO", "commandstats"],
                                 capture_output=True, text=True).stdout
            m = re.search(r"cmdstat_evalsha:calls=(\d+),usec=(\d+)", out)
            return (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        before, usec_before = evalsha_stats()
        redis_pids = [self.pr.procs["redis"].pid]
        redis_t0 = cpu_ticks(redis_pids)
        self.ab("cluster", [("local memory", P["aip"], "aiproxyd_local", BENCH_KEY, False),
                            ("redis", P["aipi"], "aiproxyd_redis", BENCH_KEY, False)], concs=(32, 256))
        calls, usec = evalsha_stats()
        calls -= before
        usec -= usec_before
        redis_ticks = cpu_ticks(redis_pids) - redis_t0
        served = sum(r["requests"] for r in self.res.get("runs_ab", []) if r["target"] == "redis")
        # (the watcher's own poll is one call per 100 ms: counted, and small next to the load)
        self.res["ab"]["cluster"]["redis_calls"] = {"evalsha": calls, "requests": served,
                                                    "per_request": calls / max(1, served),
                                                    "redis_cpu_us_per_request": redis_ticks / CLK_TCK * 1e6 / max(1, served),
                                                    "script_us_per_request": usec / max(1, served)}

    def tls_mode(self):
        """HTTPS on the client listener: aiproxyd terminating TLS vs nginx terminating TLS in front
        of the same upstream (same ECDSA P-256 certificate, TLS 1.3, same TLS 1.2 cipher list, 2
        workers each); keep-alive at c=32 and 256, then a new connection and handshake per request."""
        self.start_upstream()
        d = os.path.join(self.tmp, "pki")
        os.makedirs(d)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", os.path.join(d, "key.pem"), "-out", os.path.join(d, "cert.pem"),
                        "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        ciphers = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                   "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
        ngx_port, aip_port = BASE + 20, BASE + 21
        prefix = os.path.join(self.tmp, "nginxtls")
        conf = proxy_conf(prefix, ("ngx",)).replace(
            f"listen 127.0.0.1:{P['ngx']} reuseport backlog=4096;",
            f"listen 127.0.0.1:{ngx_port} ssl reuseport backlog=4096; ssl_certificate {cert}; "
            f"ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers {ciphers}; "
            "ssl_prefer_server_ciphers on;")
        self.pr.nginx("nginxtls", conf, [ngx_port])
        self.pr.aiproxyd("aiproxyd_tls", aiproxyd_conf(aip_port, extra={"server": {"tls": {
            "cert_file": cert, "key_file": key}}}), aip_port)
        https = {"scheme": "https"}
        self.ab("tls", [("nginx https", ngx_port, "nginxtls", "", False, dict(https, nginx=True)),
                        ("aiproxyd https", aip_port, "aiproxyd_tls", "", False, https)], concs=(32, 256))
        close = {"scheme": "https", "close": True}
        self.ab("tls_handshake", [("nginx https, conn close", ngx_port, "nginxtls", "", False,
                                   dict(close, nginx=True)),
                                  ("aiproxyd https, conn close", aip_port, "aiproxyd_tls", "", False, close)])

    def start_upstream(self):
        self.pr.nginx("upstream", upstream_conf(os.path.join(self.tmp, "upstream")), [P["up"], P["ups"]])

    def metrics_mode(self):
        """issue 6: wrk c=32 with and without GET /metrics every 100 ms (same instance)."""
        self.start_upstream()
        self.pr.aiproxyd("aiproxyd", aiproxyd_conf(P["aip"]), P["aip"])
        self.ab("metrics", [("no scraper", P["aip"], "aiproxyd", "", False),
                            ("scrape /metrics 100ms", P["aip"], "aiproxyd", "", True)])
        # the cost of one scrape, measured without load (throughput noise on a shared machine is far
        # above 3%): CPU of the process across 1,000 back-to-back scrapes on one connection
        import http.client
        pid = self.pr.procs["aiproxyd"].pid
        conn = http.client.HTTPConnection("127.0.0.1", P["aip"], timeout=5)
        t0, w0 = cpu_ticks([pid]), time.monotonic()
        n, size = 1000, 0
        for _ in range(n):
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            size = len(r.read())
        cpu_us = (cpu_ticks([pid]) - t0) / CLK_TCK * 1e6 / n
        wall_ms = (time.monotonic() - w0) * 1e3 / n
        conn.close()
        summ = self.res["ab"]["metrics"]["summary"]
        base = summ["no scraper@32"]
        # a 100 ms scraper adds 10 scrapes a second to a process that spends rps * cpu_us_per_req a second
        share = 10 * cpu_us / (base["rps"] * base["cpu_us_per_req"])
        self.res["ab"]["metrics"]["scrape_cost"] = {"n": n, "cpu_us_per_scrape": cpu_us, "wall_ms_per_scrape": wall_ms,
                                                    "bytes": size, "share_of_load_cpu": share}
        log(f"metrics: one scrape costs {cpu_us:.0f} us CPU ({wall_ms:.2f} ms wall, {size} B): 10/s = "
            f"{share * 100:.2f}% of the CPU aiproxyd spends at c=32")

    def auth_parts_mode(self):
        """issue 5 decomposed: all off, then each of auth, rate limits, budget limits, ledger alone, then all on."""
        self.start_upstream()
        sec, bud = SECURE["security"], SECURE["budget"]
        V = [("all off", INSECURE),
             ("auth only", {"security": {"auth": sec["auth"], "rate_limiting": {"enabled": False}},
                            "budget": {"enabled": False, "track_costs": False}}),
             ("rate limits only", {"security": {"auth": {"enabled": False}, "rate_limiting": sec["rate_limiting"]},
                                   "budget": {"enabled": False, "track_costs": False}}),
             ("budget limits only", {"security": INSECURE["security"], "budget": dict(bud, track_costs=False)}),
             ("ledger only", {"security": INSECURE["security"], "budget": {"enabled": False, "track_costs": True}}),
             ("all on", SECURE)]
        variants = []
        for i, (name, extra) in enumerate(V):
            port = BASE + 10 + i
            pname = f"aiproxyd_{i}"
            self.pr.aiproxyd(pname, aiproxyd_conf(port, extra=extra), port)
            variants.append((name, port, pname, BENCH_KEY, False))
        self.ab("auth_parts", variants)

    def auth_mode(self):
        """issue 5: auth + rate limits + budget limit + ledger on vs all off, c=32 and 256."""
        self.start_upstream()
        self.pr.aiproxyd("aiproxyd_off", aiproxyd_conf(P["aip"], extra=INSECURE), P["aip"])
        self.pr.aiproxyd("aiproxyd_on", aiproxyd_conf(P["aipi"], extra=SECURE), P["aipi"])
        # the key is needed and enough
        r = wrk(P["aipi"], 1, 1)
        if r["non2xx"] == 0:
            self.problem("auth: a request without a key was not refused")
        self.ab("auth", [("all off", P["aip"], "aiproxyd_off", BENCH_KEY, False),
                         ("auth+rl+budget+ledger", P["aipi"], "aiproxyd_on", BENCH_KEY, False)], concs=(32, 256))

    def routing_mode(self):
        """issue 4: one provider vs three with cost_optimized and the 4.1 policies."""
        self.start_upstream()
        self.pr.aiproxyd("aiproxyd", aiproxyd_conf(P["aip"]), P["aip"])
        self.pr.aiproxyd("aiproxyd_routed", aiproxyd_conf(P["aipi"], providers=("fake", "fake2", "fake3", "fakes"),
                                                           extra=ROUTED), P["aipi"])
        self.ab("routing", [("1 provider", P["aip"], "aiproxyd", "", False),
                            ("3 providers + policies", P["aipi"], "aiproxyd_routed", "", False)])

    def targets(self):
        t = {"direct": (P["up"], None, False),
             "nginx": (P["ngx"], "nginxproxy", True),
             "aiproxyd": (P["aip"], "aiproxyd", False)}
        return t

    def sanity(self):
        for name, port in (("direct", P["up"]), ("nginx", P["ngx"]), ("aiproxyd", P["aip"])):
            r = node_json("seq.mjs", ["--port", port, "--n", 3, "--warmup", 0], "SEQJSON")
            if list(r["statuses"].keys()) != ["200"]:
                self.problem(f"sanity: {name} answered {r['statuses']}")
        r = node_json("seq.mjs", ["--port", P["aip"], "--n", 3, "--warmup", 0, "--stream", 1,
                                  "--model", "gpt-bench-stream"], "SEQJSON")
        if r["statuses"] != {"200": 3} or r["done_marker"] != 3:
            self.problem(f"sanity: aiproxyd stream answered {r['statuses']} with {r['done_marker']} [DONE]")

    def load_rounds(self):
        concs = [1, 32, 256]
        tg = self.targets()
        order = ["direct", "nginx", "aiproxyd"]
        # warm-up: every target, 2 s at 32 connections
        for name in order + ["aiproxyd_info"]:
            port = P["aipi"] if name == "aiproxyd_info" else tg[name][0]
            wrk(port, 32, 2)
        for rnd in range(self.rounds):
            rot = order[rnd % 3:] + order[:rnd % 3]
            for c in concs:
                names = rot + (["aiproxyd_info"] if c != 1 else [])
                for name in names:
                    if name == "aiproxyd_info":
                        port, pname, ngx = P["aipi"], "aiproxyd_info", False
                    else:
                        port, pname, ngx = tg[name]
                    pids = family(self.pr.procs[pname].pid, ngx) if pname else []
                    t0 = cpu_ticks(pids)
                    d = wrk(port, c, self.duration)
                    t1 = cpu_ticks(pids)
                    d.update(target=name, conns=c, round=rnd + 1)
                    if pids:
                        d["cpu_s"] = (t1 - t0) / CLK_TCK
                        d["cpu_us_per_req"] = d["cpu_s"] * 1e6 / max(1, d["requests"])
                    self.res["runs"].append(d)
                    log(f"round {rnd+1} c={c:<3} {name:<14} {d['rps']:>9.0f} req/s  p50 {d['p50_us']:>6} us  "
                        f"p99 {d['p99_us']:>6} us  errors {d['errors']}" +
                        (f"  cpu {d['cpu_us_per_req']:.1f} us/req" if pids else ""))
                    if d["errors"]:
                        self.problem(f"{name} c={c} round {rnd+1}: {d['errors']} errors "
                                     f"(connect {d['err_connect']}, read {d['err_read']}, write {d['err_write']}, "
                                     f"timeout {d['err_timeout']}, non-2xx {d['non2xx']})")
                    if pname:
                        self.check_alive(pname)
        # peak RSS under load
        a = self.pr.procs["aiproxyd"].pid
        ng = self.pr.procs["nginxproxy"].pid
        workers = children(ng)
        self.res["rss"] = {
            "aiproxyd_hwm_kb": status_kb(a, "VmHWM"), "aiproxyd_rss_kb": status_kb(a, "VmRSS"),
            "nginx_workers_hwm_kb": sum(status_kb(w, "VmHWM") for w in workers),
            "nginx_master_hwm_kb": status_kb(ng, "VmHWM"),
            "nginx_workers": len(workers),
            "aiproxyd_info_hwm_kb": status_kb(self.pr.procs["aiproxyd_info"].pid, "VmHWM"),
        }

    def syscalls(self, n=2000):
        out = {}
        for name, port, pname, ngx in (("nginx", P["ngx"], "nginxproxy", True),
                                       ("aiproxyd", P["aip"], "aiproxyd", False)):
            pids = family(self.pr.procs[pname].pid, ngx)
            f = os.path.join(self.tmp, f"strace-{name}.txt")
            argv = ["strace", "-c", "-f", "-o", f]
            for p in pids:
                argv += ["-p", str(p)]
            st = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            r = node_json("seq.mjs", ["--port", port, "--n", n, "--warmup", 0], "SEQJSON")
            time.sleep(0.2)
            st.send_signal(signal.SIGINT)
            st.wait(timeout=30)
            text = open(f).read()
            total = calls = None
            per = {}
            for line in text.splitlines():
                cols = line.split()
                if len(cols) >= 5 and cols[-1] == "total":
                    calls = int(cols[3])
                elif len(cols) >= 5 and re.match(r"^[\d.]+$", cols[0]) and cols[-1] != "total":
                    per[cols[-1]] = int(cols[3])
            out[name] = {"requests": r["n"], "statuses": r["statuses"], "calls": calls,
                         "per_req": calls / r["n"] if calls else None,
                         "top": {k: round(v / r["n"], 2) for k, v in sorted(per.items(), key=lambda x: -x[1])[:8]}}
            shutil.copy(f, os.path.join(self.tmp, f"strace-{name}-kept.txt"))
            log(f"syscalls {name}: {out[name]['per_req']:.2f}/req  {out[name]['top']}")
        self.res["syscalls"] = out

    def ttfb(self, per_round=200):
        samples = {"direct": [], "nginx": [], "aiproxyd": []}
        statuses = {}
        for rnd in range(self.rounds):
            for name, port, model in (("direct", P["ups"], "gpt-bench"), ("nginx", P["ngxs"], "gpt-bench"),
                                      ("aiproxyd", P["aip"], "gpt-bench-stream")):
                r = node_json("seq.mjs", ["--port", port, "--n", per_round, "--warmup", 20, "--stream", 1,
                                          "--model", model], "SEQJSON")
                samples[name] += r["ttfb"]
                statuses.setdefault(name, {})
                for k, v in r["statuses"].items():
                    statuses[name][k] = statuses[name].get(k, 0) + v
                if r["done_marker"] != r["n"] + 20:
                    self.problem(f"ttfb {name}: only {r['done_marker']} of {r['n'] + 20} streams ended with [DONE]")
        self.res["ttfb"] = {k: {"n": len(v), "p50_us": pct(v, 50), "p99_us": pct(v, 99), "statuses": statuses[k]}
                            for k, v in samples.items()}
        log("ttfb " + json.dumps(self.res["ttfb"]))

    def profile(self, seconds=8):
        pid = self.pr.procs["aiproxyd"].pid
        data = os.path.join(self.tmp, "perf.data")
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", data,
                                 "-p", str(pid), "--", "sleep", str(seconds)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        d = wrk(P["aip"], 32, seconds)
        perf.wait(timeout=60)
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym",
                              "-g", "none", "--percent-limit", "0.7"], capture_output=True, text=True)
        dso = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso",
                              "-g", "none", "--percent-limit", "0.5"], capture_output=True, text=True)
        # inclusive time (self + callees); meaningful with a frame-pointer build
        # (make BUILD=build-prof CC="cc -fno-omit-frame-pointer"; AIPROXYD=.../build-prof/aiproxyd)
        chl = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children", "--sort", "sym",
                              "-g", "none", "--percent-limit", "2"], capture_output=True, text=True)
        keep = lambda t: "\n".join(l for l in t.splitlines() if l.strip() and not l.startswith("#"))
        self.res["profile"] = {"rps": d["rps"], "by_symbol": keep(rep.stdout), "by_dso": keep(dso.stdout),
                               "children": keep(chl.stdout)}
        if os.environ.get("BENCH_KEEP_TMP") == "1":
            log(f"perf data kept in {data}")
        log("profile by dso:\n" + keep(dso.stdout))
        log("profile top:\n" + "\n".join(keep(rep.stdout).splitlines()[:30]))

    def many(self, n=1000):
        """n concurrent slow streams through nginx, then through aiproxyd (fresh
        processes each), memory sampled every second while all are open."""
        # descriptors: children inherit the raised limit (run.sh raised it too)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        big = n > 2000
        # a stream: chunk every 500 ms for 20 s (30 s when the opening takes seconds)
        stream_ms = int(os.environ.get("BENCH_STREAM_MS", "30000" if big else "20000"))
        # nginx: each stream is a client and an upstream connection in the same
        # worker; reuseport spreads the clients over the 2 workers, so a worker
        # holds about n connections (+25% for an uneven spread)
        wc = max(8192, n + n // 4 + 512)
        nofile = min(hard, max(16384, wc + 1024))
        # aiproxyd: one process, 2n descriptors; server.max_upstream_transfers
        # (default 10000, the attempts in flight) with room above n
        aip_server = {"max_upstream_transfers": 2 * n} if 2 * n > 10000 else {}
        ramp = 250 if big else 0  # connections per 50 ms (5,000/s) instead of all at once
        timeout = 180 if not big else 120 + stream_ms // 1000 + n // 500
        out = {"n": n, "stream_ms": stream_ms, "interval_ms": 500, "nofile_limit": hard,
               "nginx_worker_connections": wc, "nginx_worker_rlimit_nofile": nofile,
               "aiproxyd_server": aip_server, "ramp_per_50ms": ramp}
        if hard < 2 * n + 32:
            self.problem(f"many-streams: the descriptor limit is {hard} (hard, cannot be raised here); aiproxyd, one "
                         f"process, needs 2 × {n} sockets + about 30 of its own to hold {n} streams, so it can hold "
                         f"about {(hard - 30) // 2}; an nginx worker needs about {n} (its half of the clients and "
                         f"their upstream connections)")
        self.pr.start("trickle", [NODE, os.path.join(BENCH, "trickle-upstream.mjs"), P["trk"], 500, stream_ms],
                      ports=[P["trk"]])
        client = ["--n", n] + (["--ramp", ramp] if ramp else [])
        # nginx proxy, fresh instance
        ng = self.pr.nginx("nginxtrickle", proxy_conf(os.path.join(self.tmp, "nginxtrickle"), ("ngxt",),
                                                      worker_connections=wc, rlimit_nofile=nofile), [P["ngxt"]])
        pids = family(ng.pid, True)
        idle = sum(status_kb(p, "VmRSS") for p in pids)
        idle_pss = sum(pss_kb(p) for p in pids)
        r = node_json("many-streams.mjs", ["--port", P["ngxt"], "--pids", ",".join(map(str, pids))] + client,
                      "MANYJSON", timeout=timeout)
        r["idle_rss_kb"] = idle
        r["idle_pss_kb"] = idle_pss
        r["hwm_kb"] = sum(status_kb(p, "VmHWM") for p in pids)
        r["log"] = self.log_lines(os.path.join(self.tmp, "nginxtrickle", "error.log"))
        out["nginx"] = r
        log("many nginx: " + json.dumps(r))
        self.pr.stop("nginxtrickle")
        if big:
            time.sleep(2)  # let the trickle upstream close the last of nginx's connections
        # aiproxyd, fresh instance
        a = self.pr.aiproxyd("aiproxydtrickle", aiproxyd_conf(P["aipt"], providers=("trickle",),
                                                              extra={"server": aip_server}), P["aipt"])
        idle = status_kb(a.pid, "VmRSS")
        idle_pss = pss_kb(a.pid)
        r = node_json("many-streams.mjs", ["--port", P["aipt"], "--pids", str(a.pid)] + client,
                      "MANYJSON", timeout=timeout)
        r["idle_rss_kb"] = idle
        r["idle_pss_kb"] = idle_pss
        r["hwm_kb"] = status_kb(a.pid, "VmHWM")
        out["aiproxyd"] = r
        self.check_alive("aiproxydtrickle")
        self.pr.stop("aiproxydtrickle")
        r["log"] = self.log_lines(os.path.join(self.tmp, "aiproxydtrickle.out"))
        log("many aiproxyd: " + json.dumps(r))
        self.pr.stop("trickle")
        for k in ("nginx", "aiproxyd"):
            v = out[k]
            if v["done"] != n:
                self.problem(f"many-streams via {k}: {v['done']} of {n} streams completed with [DONE] "
                             f"(status 200: {v['status200']}, statuses {v.get('statuses')}, socket errors "
                             f"{v.get('errors')}, closed before the first chunk {v.get('closed_before_first_chunk')}, "
                             f"after it {v.get('closed_after_first_chunk')}, failed {v['failed']}; the answers "
                             f"and the log: under the streams' table)")
        self.res["many"] = out

    @staticmethod
    def log_lines(path, keep=6):
        """Timestamped lines (aiproxyd's events, nginx's error.log; not aiproxyd's
        start-up banner) of a process's log: their count and the most frequent
        kinds (numbers blanked), each with its count and a first example."""
        try:
            with open(path, errors="replace") as f:
                lines = [l.rstrip() for l in f if re.match(r'\d{4}[-/]\d\d[-/]\d\d|\{"ts":', l)]
        except OSError:
            return {"lines": 0, "first": []}
        kinds = {}
        for l in lines:
            k = re.sub(r'^\{"ts":"[^"]*",|^\S+ \S+ ', "", l)  # without the time stamp
            k = re.sub(r"\d+", "#", k)[:120]
            if k not in kinds:
                kinds[k] = [0, l[:300]]
            kinds[k][0] += 1
        top = sorted(kinds.values(), key=lambda x: -x[0])[:keep]
        return {"lines": len(lines), "first": [f"{c}×: {ex}" for c, ex in top]}

    def soak(self, total=1_000_000):
        self.pr.nginx("upstream", upstream_conf(os.path.join(self.tmp, "upstream")), [P["up"], P["ups"]])
        a = self.pr.aiproxyd("aiproxyd", aiproxyd_conf(P["aip"]), P["aip"])
        env = dict(os.environ, BENCH_MODEL="gpt-bench", BENCH_THREADS="2", BENCH_MAX_REQ=str(total))
        cmd = [WRK, "-t2", "-c32", "-d600s", "--timeout", "5s", "-s", os.path.join(BENCH, "post.lua"),
               f"http://127.0.0.1:{P['aip']}/v1/chat/completions"]
        series = [(0.0, status_kb(a.pid, "VmRSS"))]
        t0 = time.time()
        w = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        import threading

        def reader():
            for line in w.stdout:
                lines.append(line)
                if sum(1 for x in lines if x.startswith("BENCHLIMIT")) >= 2 and w.poll() is None:
                    w.send_signal(signal.SIGINT)
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        while w.poll() is None:
            time.sleep(0.25)
            if time.time() - t0 >= 5 * len(series):
                series.append((round(time.time() - t0, 1), status_kb(a.pid, "VmRSS")))
                log(f"soak t={series[-1][0]}s rss={series[-1][1]} kB")
        th.join(timeout=5)
        outp = "".join(lines)
        m = re.search(r"BENCHJSON (\{.*\})", outp)
        d = json.loads(m.group(1)) if m else {}
        m2 = re.search(r"Non-2xx or 3xx responses: (\d+)", outp)
        d["non2xx"] = int(m2.group(1)) if m2 else 0
        series.append((round(time.time() - t0, 1), status_kb(a.pid, "VmRSS")))
        self.check_alive("aiproxyd")
        load = series[1:]
        self.res["soak"] = {"wrk": d, "series_kb": series, "first_kb": load[0][1], "peak_kb": max(x[1] for x in load),
                            "last_kb": load[-1][1], "hwm_kb": status_kb(a.pid, "VmHWM"),
                            "rps": d.get("requests", 0) / max(1e-9, d.get("duration_us", 1) / 1e6)}
        errs = d.get("err_connect", 0) + d.get("err_read", 0) + d.get("err_write", 0) + d.get("err_timeout", 0) + d["non2xx"]
        if errs:
            self.problem(f"soak: {errs} errors (non-2xx {d['non2xx']})")
        log("soak: " + json.dumps({k: v for k, v in self.res["soak"].items() if k != "series_kb"}))

    # ------------------------------------------------------------ report
    def summarize(self):
        runs = self.res["runs"]
        S = {}
        for r in runs:
            S.setdefault((r["target"], r["conns"]), []).append(r)
        tab = {}
        for (t, c), rs in S.items():
            tab[(t, c)] = {"rps": med([r["rps"] for r in rs]), "p50": med([r["p50_us"] for r in rs]),
                           "p99": med([r["p99_us"] for r in rs]), "cpu": med([r.get("cpu_us_per_req") for r in rs]),
                           "errors": sum(r["errors"] for r in rs), "n": len(rs)}
        self.tab = tab
        return tab

    def report(self):
        m = self.res
        L = []
        L.append(f"# aiproxy benchmark — {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        L.append(f"Command: `bench/run.sh {self.cmd}`  (mode {self.mode}, {m['rounds']} round(s), "
                 f"{m['duration_s']} s per wrk run)\n")
        L.append("Machine: " + machine() + "\n")
        L.append(f"aiproxyd: {AIPROXYD} ({GIT_AT_START or git_rev()} when the run started; "
                 f"binary modified {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(os.path.getmtime(AIPROXYD)))} UTC)\n")
        tg = []
        if m["runs"]:
            tab = self.summarize()
            L.append("## Throughput and latency (medians of rounds; wrk, POST 73-byte chat body)\n")
            L.append("| target | conns | req/s | p50 µs | p99 µs | CPU µs/req | errors |")
            L.append("|---|---:|---:|---:|---:|---:|---:|")
            for c in (1, 32, 256):
                for t in ("direct", "nginx", "aiproxyd", "aiproxyd_info"):
                    x = tab.get((t, c))
                    if not x:
                        continue
                    label = {"direct": "direct to upstream", "nginx": "nginx proxy_pass",
                             "aiproxyd": "aiproxyd (log warn)",
                             "aiproxyd_info": "aiproxyd (log info → /dev/null)"}[t]
                    cpu = f"{x['cpu']:.1f}" if x["cpu"] is not None else "–"
                    L.append(f"| {label} | {c} | {x['rps']:.0f} | {x['p50']:.0f} | {x['p99']:.0f} | {cpu} | {x['errors']} |")
            L.append("")
            for c in (32, 256):
                r = tab[("aiproxyd", c)]["rps"] / tab[("nginx", c)]["rps"]
                tg.append((f"throughput at {c} conns ≥ 0.8× nginx", f"{r:.2f}×", r >= 0.8))
            d50 = tab[("direct", 1)]["p50"]
            an = tab[("nginx", 1)]["p50"] - d50
            aa = tab[("aiproxyd", 1)]["p50"] - d50
            tg.append(("added median latency at 1 conn ≤ nginx's + 15 µs",
                       f"aiproxyd +{aa:.0f} µs vs nginx +{an:.0f} µs (Δ {aa - an:+.0f} µs)", aa <= an + 15))
            for c in (32, 256):
                ca, cn = tab[("aiproxyd", c)]["cpu"], tab[("nginx", c)]["cpu"]
                tg.append((f"CPU per request ≤ 1.3× nginx (c={c})",
                           f"{ca:.1f} vs {cn:.1f} µs/req = {ca / cn:.2f}×", ca / cn <= 1.3))
        if "rss" in m:
            r = m["rss"]
            L.append("## Memory under load (after all load rounds)\n")
            L.append(f"- aiproxyd VmHWM {r['aiproxyd_hwm_kb'] / 1024:.1f} MB (VmRSS now {r['aiproxyd_rss_kb'] / 1024:.1f} MB); "
                     f"aiproxyd with info logging VmHWM {r['aiproxyd_info_hwm_kb'] / 1024:.1f} MB")
            L.append(f"- nginx proxy: sum of VmHWM of its {r['nginx_workers']} workers {r['nginx_workers_hwm_kb'] / 1024:.1f} MB "
                     f"(+ master {r['nginx_master_hwm_kb'] / 1024:.1f} MB; shared pages are counted once per process)\n")
            tg.append(("peak RSS under load < 16 MB", f"{r['aiproxyd_hwm_kb'] / 1024:.1f} MB", r["aiproxyd_hwm_kb"] < 16 * 1024))
        if "syscalls" in m:
            s = m["syscalls"]
            L.append("## System calls per proxied request (strace -c -f, sequential keep-alive client)\n")
            L.append("| proxy | requests | syscalls/req | top calls per request |")
            L.append("|---|---:|---:|---|")
            for k in ("nginx", "aiproxyd"):
                L.append(f"| {k} | {s[k]['requests']} | {s[k]['per_req']:.2f} | "
                         + ", ".join(f"{a} {b}" for a, b in s[k]["top"].items()) + " |")
            L.append("")
            tg.append(("syscalls per request ≤ nginx's + 1",
                       f"{s['aiproxyd']['per_req']:.2f} vs {s['nginx']['per_req']:.2f}",
                       s["aiproxyd"]["per_req"] <= s["nginx"]["per_req"] + 1))
        if "ttfb" in m:
            t = m["ttfb"]
            L.append("## Stream time to first body byte (sequential keep-alive, node client)\n")
            L.append("| target | samples | p50 µs | p99 µs |")
            L.append("|---|---:|---:|---:|")
            for k in ("direct", "nginx", "aiproxyd"):
                L.append(f"| {k} | {t[k]['n']} | {t[k]['p50_us']:.0f} | {t[k]['p99_us']:.0f} |")
            L.append("")
            tg.append(("stream TTFB within 30 µs of nginx's (p50)",
                       f"{t['aiproxyd']['p50_us']:.0f} vs {t['nginx']['p50_us']:.0f} µs "
                       f"(Δ {t['aiproxyd']['p50_us'] - t['nginx']['p50_us']:+.0f} µs)",
                       t["aiproxyd"]["p50_us"] <= t["nginx"]["p50_us"] + 30))
        if "many" in m:
            v = m["many"]
            n = v.get("n") or v["aiproxyd"]["n"]
            secs = v.get("stream_ms", 20000) / 1000
            L.append(f"## {n:,} concurrent slow streams (chunk every 500 ms for {secs:g} s)\n")
            L.append(f"| proxy | idle RSS MB | RSS, all {n:,} open (peak) MB | growth MB | idle PSS MB | PSS, all open (peak) MB | streams with [DONE] | failed |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for k in ("nginx", "aiproxyd"):
                x = v[k]
                star = "" if x.get("samples_all_open", True) else " *"
                L.append(f"| {k} | {x['idle_rss_kb'] / 1024:.1f} | {x['rss_peak_kb'] / 1024:.1f}{star} | "
                         f"{(x['rss_peak_kb'] - x['idle_rss_kb']) / 1024:.1f} | {x['idle_pss_kb'] / 1024:.1f} | "
                         f"{x['pss_peak_kb'] / 1024:.1f}{star} | {x['done']}/{x['n']} | {x['failed']} |")
                if star:
                    L.append(f"\n\\* {k}: some stream had neither its first chunk nor an answer before the first "
                             f"ended; peak over the samples taken with all started, {x.get('open_at_peak')} streams open.")
            L.append("\n(nginx: master + 2 workers summed. RSS counts pages shared between nginx's processes once per "
                     "process; PSS splits them, so PSS is the fairer total for nginx. Samples every second while all "
                     "streams are open.)\n")
            if "nginx_worker_connections" in v:
                per = lambda x: (x["rss_peak_kb"] - x["idle_rss_kb"]) / max(1, x.get("open_at_peak") or x["first_byte"])
                srv = ", ".join(f"`server.{a}: {b}`" for a, b in v["aiproxyd_server"].items()) or "defaults"
                L.append(f"Limits: descriptors {v['nofile_limit']} per process (hard limit, raised to it); nginx "
                         f"`worker_connections {v['nginx_worker_connections']}`, `worker_rlimit_nofile "
                         f"{v['nginx_worker_rlimit_nofile']}`; aiproxyd {srv}. "
                         + (f"Opened {v['ramp_per_50ms']} every 50 ms. " if v.get("ramp_per_50ms") else "")
                         + "Growth per stream (peak − idle RSS, over the streams open at the peak): "
                         + ", ".join(f"{k} {per(v[k]):.1f} KB" for k in ("nginx", "aiproxyd")) + ". "
                         + "All open after: " + ", ".join(
                             f"{k} {v[k]['all_open_after_ms'] / 1000:.1f} s" if v[k].get("all_open_after_ms") else f"{k} –"
                             for k in ("nginx", "aiproxyd"))
                         + "; streams open at the peak: " + ", ".join(f"{k} {v[k].get('open_at_peak')}" for k in ("nginx", "aiproxyd"))
                         + "; most descriptors open: " + ", ".join(f"{k} {v[k].get('fds_peak', 0)}" for k in ("nginx", "aiproxyd"))
                         + ".\n")
                for k in ("nginx", "aiproxyd"):
                    x = v[k]
                    if x["failed"] or x.get("statuses", {}).keys() - {"200"} or x.get("errors"):
                        L.append(f"- {k}: statuses {x.get('statuses')}, socket errors {x.get('errors')}, closed before "
                                 f"the first chunk {x.get('closed_before_first_chunk')}, after it "
                                 f"{x.get('closed_after_first_chunk')}; log {x['log']['lines']} lines"
                                 + "".join(f"\n  - a {c} answer: `{e!r}`" for c, e in (x.get("examples") or {}).items())
                                 + "".join(f"\n  - `{l}`" for l in x["log"]["first"]))
                L.append("")
            tg.append((f"{n:,} streams held in less memory than nginx",
                       f"RSS {v['aiproxyd']['rss_peak_kb'] / 1024:.1f} vs {v['nginx']['rss_peak_kb'] / 1024:.1f} MB, "
                       f"PSS {v['aiproxyd']['pss_peak_kb'] / 1024:.1f} vs {v['nginx']['pss_peak_kb'] / 1024:.1f} MB, "
                       f"[DONE] {v['aiproxyd']['done']}/{n} vs {v['nginx']['done']}/{n}",
                       v["aiproxyd"]["rss_peak_kb"] < v["nginx"]["rss_peak_kb"] and v["aiproxyd"]["done"] == n))
        if "soak" in m:
            s = m["soak"]
            L.append("## RSS across 1,000,000 requests (aiproxyd, wrk c=32)\n")
            L.append(f"- requests {s['wrk'].get('requests')}, {s['rps']:.0f} req/s, non-2xx {s['wrk'].get('non2xx')}")
            L.append(f"- VmRSS first sample under load {s['first_kb'] / 1024:.1f} MB, peak {s['peak_kb'] / 1024:.1f} MB, "
                     f"last {s['last_kb'] / 1024:.1f} MB; VmHWM {s['hwm_kb'] / 1024:.1f} MB")
            L.append("- series (s, kB): " + " ".join(f"{a}:{b}" for a, b in s["series_kb"]) + "\n")
            tg.append(("RSS flat across 1,000,000 requests",
                       f"first {s['first_kb'] / 1024:.1f}, peak {s['peak_kb'] / 1024:.1f}, last {s['last_kb'] / 1024:.1f} MB",
                       s["last_kb"] - s["first_kb"] < 1024 and s["hwm_kb"] < 16 * 1024))
        if tg:
            L.append("## Targets\n")
            L.append("| target | measured | met |")
            L.append("|---|---|---|")
            for a, b, ok in tg:
                L.append(f"| {a} | {b} | {'yes' if ok else '**no**'} |")
            L.append("")
        if "profile" in m:
            p = m["profile"]
            L.append(f"## Profile of aiproxyd under load (perf record -e cpu-clock -g, wrk c=32, {p['rps']:.0f} req/s)\n")
            L.append("By object:\n```\n" + p["by_dso"] + "\n```\nTop symbols (self):\n```\n" +
                     "\n".join(p["by_symbol"].splitlines()[:40]) + "\n```\n")
            if p.get("children"):
                L.append("With children (inclusive; `perf report --children --sort sym`, ≥ 2%):\n```\n" +
                         "\n".join(p["children"].splitlines()[:60]) + "\n```\n")
        if "ledger" in m:
            L.append("## Cost of the ledger (wrk c=32; aiproxyd with budget.track_costs true vs false)\n")
            L.append("| target | req/s | CPU µs/req |")
            L.append("|---|---:|---:|")
            for k, v in m["ledger"].items():
                L.append(f"| {k} | {v['rps']:.0f} | {v['cpu_us_per_req']:.1f} |")
            L.append("")
        for key, a in m.get("ab", {}).items():
            title = {"auth_parts": "Issue 5 decomposed: each feature alone vs all off (c=32)",
                     "metrics": "Scraping /metrics every 100 ms (issue 6: < 3% change)",
                     "auth": "Auth, rate limits, budget and ledger on vs off (issue 5: within 10%)",
                     "routing": "Routing: 1 provider vs 3 with cost_optimized + policies (issue 4: no measurable cost)",
                     "cluster": "Limits and budgets in Redis vs in local memory (issue 12: >= 0.9x, <= 1 Redis call before the request)"}.get(key, key)
            L.append(f"## {title}\n")
            L.append("| variant | conns | req/s (median) | req/s per round | ratio per round | ratio (median of rounds) | p50 µs | p99 µs | CPU µs/req | CPU ratio (median of rounds) | errors |")
            L.append("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
            for c in a["concs"]:
                for name in a["variants"]:
                    x = a["summary"][f"{name}@{c}"]
                    rr = " ".join(f"{v:.3f}" for v in x.get("ratio_rounds", [])) or "–"
                    rm = f"{x['ratio_median_of_rounds']:.3f}" if "ratio_median_of_rounds" in x else "–"
                    cr = f"{x['cpu_ratio_median_of_rounds']:.3f}" if "cpu_ratio_median_of_rounds" in x else "–"
                    L.append(f"| {name} | {c} | {x['rps']:.0f} | {' '.join(map(str, x['rps_rounds']))} | {rr} | {rm} | "
                             f"{x['p50_us']:.0f} | {x['p99_us']:.0f} | {x['cpu_us_per_req']:.1f} | {cr} | {x['errors']} |")
                    if "scrapes" in x:
                        L.append(f"| (scrapes: {x['scrapes']}, p50 {x['scrape_p50_ms']:.2f} ms, {x['scrape_bytes']} bytes each) | | | | | | | | | | |")
            L.append("")
            if "redis_calls" in a:
                rc = a["redis_calls"]
                L.append(f"Redis script calls (EVALSHA) during the Redis runs: {rc['evalsha']} for {rc['requests']} "
                         f"requests = **{rc['per_request']:.3f} per request** (one reserve before, one settle "
                         f"after, several requests to a call; the store watcher's 10 polls a second "
                         f"included). redis-server CPU: {rc['redis_cpu_us_per_request']:.1f} µs per request, "
                         f"of which running the scripts: {rc.get('script_us_per_request', 0):.1f} µs.\n")
            if "scrape_cost" in a:
                sc = a["scrape_cost"]
                L.append(f"One scrape without load ({sc['n']} back to back): {sc['cpu_us_per_scrape']:.0f} µs of aiproxyd CPU, "
                         f"{sc['wall_ms_per_scrape']:.2f} ms, {sc['bytes']} bytes. Ten a second = "
                         f"**{sc['share_of_load_cpu'] * 100:.2f}%** of the CPU aiproxyd spends serving c=32 "
                         f"(median req/s × CPU µs/req of the unscraped runs).\n")
        if m["problems"]:
            L.append("## Problems seen\n")
            for x in m["problems"]:
                L.append(f"- {x}")
            L.append("")
        return "\n".join(L)


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ng = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    wv = subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.splitlines()[0].split(" Copyright")[0].strip()
    nv = subprocess.run([NODE, "-v"], capture_output=True, text=True).stdout.strip()
    return (f"nproc {os.cpu_count()}, {cpu}, kernel {os.uname().release}, {ng}, {wv}, node {nv}")


def git_rev():
    """HEAD and whether src/ differed from it, taken when the run starts (others commit meanwhile)."""
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    d = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Makefile"],
                       capture_output=True, text=True)
    return "git " + r.stdout.strip() + (" + uncommitted changes in src/" if d.stdout.strip() else "")


GIT_AT_START = None


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    streams = None
    if mode in ("many", "many10k"):
        arg = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("BENCH_STREAMS", "10000" if mode == "many10k" else "1000")
        if not arg.isdigit() or int(arg) < 1:
            sys.exit(f"many: the number of streams must be a positive integer, not {arg!r}")
        streams = int(arg)
    if mode not in ("full", "quick", "soak", "many", "many10k", "profile", "ledger", "metrics", "auth", "routing", "issues",
                    "auth_parts", "cluster", "tls"):
        print(__doc__)
        sys.exit(2)
    for port in P.values():
        if not port_free(port):
            sys.exit(f"port {port} is busy; set BENCH_PORT_BASE")
    global GIT_AT_START
    GIT_AT_START = git_rev()
    b = Bench(mode)
    if mode == "many" and streams != 1000:
        b.cmd = f"many {streams}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit("hung up"))
    log(f"temp dir {b.tmp}; ports {P}")
    try:
        if mode in ("full", "quick"):
            b.start_main()
            b.sanity()
            b.load_rounds()
            b.syscalls(500 if b.quick else 2000)
            b.ttfb(100 if b.quick else 200)
            b.profile(4 if b.quick else 8)
            b.pr.stop_all()
            b.many(200 if b.quick else 1000)
        elif mode == "profile":
            b.start_main(info=False)
            b.profile(10)
        elif mode == "ledger":
            b.ledger()
        elif mode in ("metrics", "auth", "routing", "issues", "auth_parts", "cluster", "tls"):
            for m in (("metrics", "auth", "routing") if mode == "issues" else (mode,)):
                getattr(b, m + "_mode")()
                b.pr.stop_all()
        elif mode in ("many", "many10k"):
            b.many(streams)
        elif mode == "soak":
            b.soak(int(os.environ.get("BENCH_SOAK_REQUESTS", "1000000")))
    finally:
        b.pr.stop_all()
    text = b.report()
    print(text)
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(BENCH, "results", f"{stamp}-{b.cmd.replace(' ', '')}.md")
    with open(path, "w") as f:
        f.write(text + "\n")
    with open(path[:-3] + ".json", "w") as f:
        json.dump(b.res, f, indent=1, default=str)
    log(f"wrote {path}")
    if os.environ.get("BENCH_KEEP_TMP") != "1":
        shutil.rmtree(b.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
