#!/usr/bin/env python3
"""Issue 11: the mesh's cost (run through bench/mesh.sh, or bench/run.sh mesh).

1. A request served through one peer: client → aiproxyd A → aiproxyd B → fake
   upstream, against client → nginx 1 → nginx 2 → the same fake upstream, in
   interleaved rounds at 1, 32 and 256 connections. A has no provider at all,
   so every request for gpt-bench goes to B over the mesh. Also measured, for
   the per-hop figures: direct to the upstream, one nginx hop, one aiproxyd
   hop alone (the main bench's aiproxyd config, mesh off), and B's own port
   (one hop, mesh on).
2. Heartbeat cost: (a) 5 aiproxyd nodes meshed on loopback (each given the
   previous one as peer; they learn the rest), idle; (b) one aiproxyd node
   with 50 configured peers that are stand-ins (mesh-peer-stub.mjs answering
   with a real node's heartbeat message). CPU of each process over the window
   from /proc, as % of one core, next to an idle aiproxyd with the mesh off.

Everything on free loopback ports from MESH_PORT_BASE (default 19400) up,
under a temp dir; stopped by PID at the end. Writes
bench/results/<timestamp>-mesh.md and .json.

Modes: full (default), quick (1 round of 3 s runs, 5 s idle windows: checks
the bench itself), chain (part 1 only), heartbeat (part 2 only).
Env: BENCH_DURATION (s per target per round, default 10), BENCH_ROUNDS
(default 3), BENCH_SLICES (default 5: each target's time in a round is cut
into slices of BENCH_DURATION/BENCH_SLICES s that alternate between targets),
MESH_IDLE_S (idle window, default 30), MESH_STUBS (default 50),
MESH_PORT_BASE, AIPROXYD, BENCH_KEEP_TMP=1, MESH_PIDFILE (set by mesh.sh).
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (the main bench: upstream config, wrk, /proc helpers)

CLK_TCK = B.CLK_TCK
SECRET = "bench"
MODEL = "gpt-bench"


def log(*a):
    B.log(*a)


# ---------------------------------------------------------------- ports
def alloc_ports(n, base):
    """n free loopback ports from base up (below the ephemeral range, so that
    no outgoing connection of wrk or a proxy takes one in between)."""
    out, p = [], base
    while len(out) < n:
        if p >= 32768:
            raise RuntimeError(f"not enough free ports from {base}")
        if B.port_free(p):
            out.append(p)
        p += 1
    return out


# ---------------------------------------------------------------- processes
class Procs(B.Procs):
    """bench.py's process table, plus every PID written to MESH_PIDFILE as it
    starts (mesh.sh's trap stops them by PID should this script die)."""

    def __init__(self, tmp):
        super().__init__(tmp)
        self.pidfile = os.environ.get("MESH_PIDFILE")
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write(f"tmpdir {tmp}\n")

    def start(self, name, argv, cwd=None, stdout=None, ports=()):
        out = open(os.path.join(self.tmp, name + ".out"), "w") if stdout is None else stdout
        argv = [str(a) for a in argv]
        p = subprocess.Popen(argv, cwd=cwd or self.tmp, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs[name] = p
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write(f"{p.pid} {start_time(p.pid)}\n")
        for port in ports:
            B.wait_port(port, p)
        return p

    def stop_all(self):
        # all at once (SIGTERM to each PID), then wait: a dozen aiproxyd drain in parallel
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for n in list(self.procs):
            self.stop(n)


def start_time(pid):
    """Field 22 of /proc/PID/stat (start time in ticks since boot): with the
    PID, names the process unambiguously for mesh.sh's trap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return "0"


def http_json(port, path, method="GET", body=None, headers=None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=body.encode() if isinstance(body, str) else body,
                                 headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, dict(r.headers), json.loads(r.read())


def task_ns(pid):
    """CPU time of every thread of pid in ns (/proc/PID/task/*/schedstat): a
    finer clock than the 10 ms ticks of /proc/PID/stat, for idle processes."""
    t = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    t += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    return t


def nthreads(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


# ---------------------------------------------------------------- configs
def provider(up_port, name="fake"):
    return {name: {"type": "openai", "endpoint": f"http://127.0.0.1:{up_port}/v1",
                   "credentials": {"api_key": "sk-bench"},
                   "models": [{"name": MODEL, "cost_per_1k_input_tokens": 0.001,
                               "cost_per_1k_output_tokens": 0.002}]}}


def node_conf(tmp, node_id, http_port, up_port=None, mesh=None):
    """The main bench's aiproxyd config (workers 2, log warn, ledger, budget and
    metrics at their defaults), its own cost_db, and node.mesh when given.
    up_port None: no providers at all."""
    d = os.path.join(tmp, node_id)
    os.makedirs(d, exist_ok=True)
    conf = {"node": {"id": node_id},
            "server": {"listen_addr": f"127.0.0.1:{http_port}", "workers": 2},
            "budget": {"cost_db": os.path.join(d, "cost.db")},
            "observability": {"logging": {"level": "warn"}}}
    if up_port is not None:
        conf["providers"] = provider(up_port)
    if mesh is not None:
        conf["node"]["mesh"] = mesh
    return json.dumps(conf, indent=1)


def chain_nginx_conf(prefix, listen, to_port):
    """nginx proxy_pass as the main bench's baseline (2 workers, keep-alive pool
    of 64, HTTP/1.1, access log off), in front of to_port."""
    return f"""# mesh bench: one nginx hop (nginx 1 -> nginx 2 -> upstream when chained)
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
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream next {{ server 127.0.0.1:{to_port}; keepalive 64; keepalive_requests 10000000; }}
    server {{ listen 127.0.0.1:{listen} reuseport backlog=4096;
             location / {{ proxy_pass http://next; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}
"""


# ---------------------------------------------------------------- the bench
class Mesh:
    def __init__(self, mode):
        import tempfile
        self.mode = mode
        self.quick = mode == "quick"
        self.duration = int(os.environ.get("BENCH_DURATION", "3" if self.quick else "10"))
        self.rounds = int(os.environ.get("BENCH_ROUNDS", "1" if self.quick else "3"))
        self.slices = max(1, int(os.environ.get("BENCH_SLICES", "1" if self.quick else "5")))
        self.idle_s = float(os.environ.get("MESH_IDLE_S", "5" if self.quick else "30"))
        self.n_stubs = int(os.environ.get("MESH_STUBS", "50"))
        self.tmp = tempfile.mkdtemp(prefix="aiproxy-mesh-bench-")
        self.binary_mtime = os.path.getmtime(B.AIPROXYD)
        self.pr = Procs(self.tmp)
        self.res = {"mode": mode, "duration_s": self.duration, "rounds": self.rounds, "slices": self.slices,
                    "idle_s": self.idle_s, "problems": [], "runs": []}
        base = int(os.environ.get("MESH_PORT_BASE", "19400"))
        names = ["up", "ups", "ngx1", "ngx2", "a", "a_mesh", "b", "b_mesh", "solo"]
        names += [f"n{i}{s}" for i in range(1, 6) for s in ("", "_mesh")] + ["idle", "hub", "hub_mesh"]
        names += [f"stub{i}" for i in range(self.n_stubs)]
        self.P = dict(zip(names, alloc_ports(len(names), base)))
        # the main bench's fake upstream, on our ports
        B.P["up"], B.P["ups"] = self.P["up"], self.P["ups"]

    def problem(self, msg):
        log("PROBLEM: " + msg)
        self.res["problems"].append(msg)

    def alive(self, name):
        p = self.pr.procs.get(name)
        if p is not None and p.poll() is not None:
            self.problem(f"{name} exited with status {p.returncode} (see {self.tmp}/{name}.out)")
            return False
        return True

    def start_node(self, name, conf, http_port, mesh_port=None):
        p = self.pr.aiproxyd(name, conf, http_port)
        if mesh_port:
            B.wait_port(mesh_port, p)
        return p

    def wait_peers(self, port, want, timeout=30, label=""):
        """Until GET /aiproxy/mesh/status on port shows every id in `want` (a set)
        healthy, or `want` is an int and that many peers are healthy."""
        end = time.time() + timeout
        st = None
        while time.time() < end:
            try:
                _, _, st = http_json(port, "/aiproxy/mesh/status")
                healthy = {p["id"] for p in st["peers"] if p["status"] == "healthy"}
                if (isinstance(want, int) and len(healthy) >= want) or (not isinstance(want, int) and want <= healthy):
                    return st
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{label}: peers not healthy after {timeout}s: "
                           + json.dumps([(p['id'], p['status'], p.get('last_error')) for p in (st or {}).get('peers', [])])[:2000])

    # ------------------------------------------------------------ part 1
    def start_chain(self):
        P, tmp = self.P, self.tmp
        self.pr.nginx("upstream", B.upstream_conf(os.path.join(tmp, "upstream")), [P["up"], P["ups"]])
        self.pr.nginx("nginx2", chain_nginx_conf(os.path.join(tmp, "nginx2"), P["ngx2"], P["up"]), [P["ngx2"]])
        self.pr.nginx("nginx1", chain_nginx_conf(os.path.join(tmp, "nginx1"), P["ngx1"], P["ngx2"]), [P["ngx1"]])
        self.start_node("b", node_conf(tmp, "b", P["b"], P["up"], mesh={
            "enabled": True, "listen_addr": f"127.0.0.1:{P['b_mesh']}", "secret": SECRET}), P["b"], P["b_mesh"])
        self.start_node("a", node_conf(tmp, "a", P["a"], None, mesh={
            "enabled": True, "listen_addr": f"127.0.0.1:{P['a_mesh']}", "secret": SECRET,
            "peers": [{"addr": f"127.0.0.1:{P['b_mesh']}"}], "heartbeat_interval": "1s", "peer_timeout": "3s"}),
            P["a"], P["a_mesh"])
        self.start_node("solo", node_conf(tmp, "solo", P["solo"], P["up"]), P["solo"])
        st = self.wait_peers(P["a"], {"b"}, label="a")
        pb = [p for p in st["peers"] if p["id"] == "b"][0]
        if MODEL not in pb["models"]:
            self.problem(f"a: peer b is healthy but does not list {MODEL}: {pb['models']}")
        self.res["a_status_before"] = st
        with open(os.path.join(tmp, "a", "aiproxy.json")) as f:
            self.res["config_a"] = json.loads(f.read())
        with open(os.path.join(tmp, "b", "aiproxy.json")) as f:
            self.res["config_b"] = json.loads(f.read())
        # every target answers 200, and A's answer came from B
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}]})
        for name in ("up", "ngx1", "ngx2", "a", "b", "solo"):
            s, h, d = http_json(P[name], "/v1/chat/completions", "POST", body, {"Content-Type": "application/json"})
            if s != 200:
                self.problem(f"sanity: {name} answered {s}")
        s, h, d = http_json(P["a"], "/v1/chat/completions", "POST", body, {"Content-Type": "application/json"})
        meta = d.get("x-aiproxy", {})
        self.res["a_answer_meta"] = meta
        if h.get("x-aiproxy-provider") != "mesh:b" or meta.get("node") != "b" or meta.get("route") != ["a", "b"]:
            self.problem(f"sanity: A's answer did not come through B: provider {h.get('x-aiproxy-provider')}, "
                         f"x-aiproxy {json.dumps(meta)[:300]}")
        log(f"chain ready: A -> B healthy; A answers via {h.get('x-aiproxy-provider')} route {meta.get('route')}")

    def targets(self):
        P = self.P
        fam = lambda n, ngx: (n, ngx)  # noqa: E731
        return {
            "direct": (P["up"], []),
            "nginx 1 hop": (P["ngx2"], [fam("nginx2", True)]),
            "nginx chain": (P["ngx1"], [fam("nginx1", True), fam("nginx2", True)]),
            "aiproxyd 1 hop": (P["solo"], [fam("solo", False)]),
            "aiproxyd B alone": (P["b"], [fam("b", False)]),
            "aiproxyd chain": (P["a"], [fam("a", False), fam("b", False)]),
        }

    def chain_rounds(self):
        tg = self.targets()
        plan = {1: ["direct", "nginx 1 hop", "nginx chain", "aiproxyd 1 hop", "aiproxyd B alone", "aiproxyd chain"],
                32: ["nginx chain", "aiproxyd chain", "nginx 1 hop", "aiproxyd 1 hop"],
                256: ["nginx chain", "aiproxyd chain", "nginx 1 hop", "aiproxyd 1 hop"]}
        for name in plan[1]:
            B.wrk(tg[name][0], 32, 2)  # warm-up: pools and caches
        fwd0 = self.mesh_metrics(self.P["a"]).get('aiproxy_mesh_requests_forwarded_total{peer="b"}', 0)
        rcv0 = self.mesh_metrics(self.P["b"]).get('aiproxy_mesh_requests_received_total{peer="a"}', 0)
        slice_s = max(1, round(self.duration / self.slices))
        for rnd in range(self.rounds):
            for c, names in plan.items():
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                acc = {n: [] for n in order}
                ticks = {n: 0 for n in order}
                by_proc = {n: {pn: 0 for pn, _ in tg[n][1]} for n in order}
                for _ in range(self.slices):
                    for n in order:
                        port, fams = tg[n]
                        pids = {pn: B.family(self.pr.procs[pn].pid, ngx) for pn, ngx in fams}
                        t0 = {pn: B.cpu_ticks(x) for pn, x in pids.items()}
                        acc[n].append(B.wrk(port, c, slice_s))
                        for pn, x in pids.items():
                            dt = B.cpu_ticks(x) - t0[pn]
                            by_proc[n][pn] += dt
                            ticks[n] += dt
                for n in order:
                    d = B.merge_runs(acc[n])
                    d.update(target=n, conns=c, round=rnd + 1, slices=self.slices,
                             p50_slices=[r["p50_us"] for r in acc[n]],
                             cpu_us_per_req=(ticks[n] / CLK_TCK * 1e6 / max(1, d["requests"])) if tg[n][1] else None,
                             cpu_us_per_req_by_proc={pn: v / CLK_TCK * 1e6 / max(1, d["requests"])
                                                     for pn, v in by_proc[n].items()})
                    self.res["runs"].append(d)
                    cpu = f"  cpu {d['cpu_us_per_req']:.1f} us/req" if d["cpu_us_per_req"] is not None else ""
                    log(f"round {rnd + 1} c={c:<3} {n:<17} {d['rps']:>8.0f} req/s  p50 {d['p50_us']:>6} us  "
                        f"p99 {d['p99_us']:>6} us  errors {d['errors']} (non-2xx {d['non2xx']}){cpu}")
                    if d["errors"]:
                        self.problem(f"{n} c={c} round {rnd + 1}: {d['errors']} errors (non-2xx {d['non2xx']}, "
                                     f"connect {d['err_connect']}, read {d['err_read']}, write {d['err_write']}, "
                                     f"timeout {d['err_timeout']})")
                        self.diagnose(f"{n} c={c} round {rnd + 1}")
                for pn in ("a", "b", "solo"):
                    self.alive(pn)
        # every request sent to A went to B: A's forwarded counter, B's received
        sent_a = sum(r["requests"] for r in self.res["runs"] if r["target"] == "aiproxyd chain")
        _, _, st = http_json(self.P["a"], "/aiproxy/mesh/status")
        self.res["a_status_after"] = st
        pb = [p for p in st["peers"] if p["id"] == "b"]
        self.res["a_metrics_mesh"] = self.mesh_metrics(self.P["a"])
        self.res["b_metrics_mesh"] = self.mesh_metrics(self.P["b"])
        self.res["chain_requests_sent"] = sent_a
        self.res["chain_forwarded"] = self.res["a_metrics_mesh"].get('aiproxy_mesh_requests_forwarded_total{peer="b"}', 0) - fwd0
        self.res["chain_received"] = self.res["b_metrics_mesh"].get('aiproxy_mesh_requests_received_total{peer="a"}', 0) - rcv0
        # wrk counts the answers it got; a run's last requests in flight (up to c per run) are forwarded too
        slack = sum(r["conns"] * r["slices"] for r in self.res["runs"] if r["target"] == "aiproxyd chain")
        if not (sent_a <= self.res["chain_forwarded"] <= sent_a + slack) or self.res["chain_received"] != self.res["chain_forwarded"]:
            self.problem(f"chain: {sent_a} answers counted by wrk, A forwarded {self.res['chain_forwarded']:.0f} to b, "
                         f"B received {self.res['chain_received']:.0f} from a")
        hb = pb[0] if pb else {}
        self.res["a_peer_b"] = {k: hb.get(k) for k in ("status", "heartbeats_ok", "heartbeats_failed", "latency_ms",
                                                       "last_error")}
        if hb.get("heartbeats_failed"):
            self.problem(f"a: {hb['heartbeats_failed']} heartbeats to b failed during the load "
                         f"(last error: {hb.get('last_error')})")
        if hb.get("status") != "healthy":
            self.problem(f"a: peer b is {hb.get('status')} after the load")

    def diagnose(self, when):
        """After errors: who listens on our ports (another process sharing one
        through SO_REUSEPORT would take part of the connections) and the tails
        of the logs, into the .json (res["diagnostics"]) and the report."""
        ours = set()
        for p in self.pr.procs.values():
            ours.add(p.pid)
            ours.update(B.children(p.pid))
        ports = set(self.P.values())
        foreign = []
        try:
            out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        for line in out.splitlines():
            cols = line.split()
            if len(cols) < 4 or ":" not in cols[3]:
                continue
            try:
                port = int(cols[3].rsplit(":", 1)[1])
            except ValueError:
                continue
            pids = {int(x) for x in __import__("re").findall(r"pid=(\d+)", line)}
            if port in ports and pids - ours:
                foreign.append(line.strip())
        logs = {}
        for root, _, files in os.walk(self.tmp):
            for f in files:
                if f.endswith(".out") or f == "error.log":
                    path = os.path.join(root, f)
                    try:
                        with open(path, errors="replace") as fh:
                            tail = fh.read()[-3000:]
                    except OSError:
                        continue
                    if tail.strip():
                        logs[os.path.relpath(path, self.tmp)] = tail
        self.res.setdefault("diagnostics", []).append({"when": when, "foreign_listeners": foreign, "log_tails": logs})
        if foreign:
            self.problem(f"{when}: another process listens on our ports: {foreign}")
        for k, v in logs.items():
            last = [x for x in v.splitlines() if x.strip()][-1:]
            log(f"diagnose {when}: {k}: {last}")

    def mesh_metrics(self, port):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError as e:
            return {"error": str(e)}
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                if line.startswith("aiproxy_mesh_") and " " in line}

    def summarize_chain(self):
        runs = self.res["runs"]
        by = {}
        for r in runs:
            by.setdefault((r["target"], r["conns"]), {})[r["round"]] = r
        tab = {}
        for (t, c), rr in by.items():
            rs = list(rr.values())
            tab[f"{t}@{c}"] = {"target": t, "conns": c, "rps": B.med([r["rps"] for r in rs]),
                               "p50": B.med([r["p50_us"] for r in rs]), "p99": B.med([r["p99_us"] for r in rs]),
                               "cpu": B.med([r["cpu_us_per_req"] for r in rs]),
                               "cpu_by_proc": {pn: B.med([r["cpu_us_per_req_by_proc"][pn] for r in rs])
                                               for pn in rs[0]["cpu_us_per_req_by_proc"]},
                               "rps_rounds": [round(rr[k]["rps"]) for k in sorted(rr)],
                               "p50_rounds": [rr[k]["p50_us"] for k in sorted(rr)],
                               "errors": sum(r["errors"] for r in rs), "non2xx": sum(r["non2xx"] for r in rs),
                               "requests": sum(r["requests"] for r in rs)}
        rounds = sorted({r["round"] for r in runs})
        g = lambda t, c, k: by[(t, c)][k]  # noqa: E731
        s = {"tab": tab, "ratio": {}, "hop": {}}
        for c in (32, 256):
            for kind in ("chain", "1 hop"):
                rr = [g(f"aiproxyd {kind}", c, k)["rps"] / g(f"nginx {kind}", c, k)["rps"] for k in rounds]
                cr = [g(f"aiproxyd {kind}", c, k)["cpu_us_per_req"] / g(f"nginx {kind}", c, k)["cpu_us_per_req"]
                      for k in rounds]
                s["ratio"][f"{kind}@{c}"] = {"rounds": [round(x, 3) for x in rr], "median": B.med(rr),
                                             "cpu_rounds": [round(x, 3) for x in cr], "cpu_median": B.med(cr)}
        # added latency per hop at 1 connection, per round (targets of a round are minutes apart at most)
        for who in ("aiproxyd", "nginx"):
            chain = [(g(f"{who} chain", 1, k)["p50_us"] - g("direct", 1, k)["p50_us"]) / 2 for k in rounds]
            one = [g(f"{who} 1 hop", 1, k)["p50_us"] - g("direct", 1, k)["p50_us"] for k in rounds]
            s["hop"][who] = {"chain_per_hop_rounds": chain, "one_hop_rounds": one,
                             "chain_per_hop": B.med(chain), "one_hop": B.med(one)}
        bal = [g("aiproxyd B alone", 1, k)["p50_us"] - g("direct", 1, k)["p50_us"] for k in rounds]
        s["hop"]["aiproxyd B alone"] = {"one_hop_rounds": bal, "one_hop": B.med(bal)}
        self.res["chain"] = s
        return s

    # ------------------------------------------------------------ part 2
    def idle_window(self, names, seconds, status_ports=None):
        """CPU of each named process over `seconds` of idleness: /proc/PID/stat
        ticks (utime+stime) and the threads' schedstat ns; heartbeats sent
        (sum of heartbeats_ok over its peers) from the status before and after."""
        pids = {n: self.pr.procs[n].pid for n in names}

        def hb():
            out = {}
            for n, port in (status_ports or {}).items():
                try:
                    _, _, st = http_json(port, "/aiproxy/mesh/status")
                    out[n] = (sum(p["heartbeats_ok"] for p in st["peers"]),
                              sum(p["heartbeats_failed"] for p in st["peers"]),
                              sum(1 for p in st["peers"] if p["status"] == "healthy"), len(st["peers"]))
                except OSError:
                    out[n] = None
            return out
        h0 = hb()
        t0 = {n: B.cpu_ticks([p]) for n, p in pids.items()}
        ns0 = {n: task_ns(p) for n, p in pids.items()}
        w0 = time.monotonic()
        time.sleep(seconds)
        t1 = {n: B.cpu_ticks([p]) for n, p in pids.items()}
        ns1 = {n: task_ns(p) for n, p in pids.items()}
        wall = time.monotonic() - w0
        h1 = hb()
        out = {}
        for n in names:
            x = {"ticks": t1[n] - t0[n], "wall_s": round(wall, 2),
                 "pct_ticks": (t1[n] - t0[n]) / CLK_TCK / wall * 100,
                 "pct_ns": (ns1[n] - ns0[n]) / 1e9 / wall * 100,
                 "threads": nthreads(pids[n]), "rss_kb": B.status_kb(pids[n], "VmRSS")}
            if h0.get(n) and h1.get(n):
                x["heartbeats_ok"] = h1[n][0] - h0[n][0]
                x["heartbeats_failed"] = h1[n][1] - h0[n][1]
                x["peers_healthy"] = h1[n][2]
                x["peers"] = h1[n][3]
                if x["heartbeats_ok"]:
                    x["cpu_us_per_heartbeat"] = (ns1[n] - ns0[n]) / 1e3 / x["heartbeats_ok"]
                if x["heartbeats_failed"]:
                    self.problem(f"{n}: {x['heartbeats_failed']} heartbeats failed in the idle window")
            out[n] = x
            log(f"idle {n:<6} {x['pct_ticks']:.3f}% of a core (ticks {x['ticks']}), {x['pct_ns']:.3f}% (schedstat)"
                + (f", {x['heartbeats_ok']} heartbeats sent to {x['peers_healthy']}/{x['peers']} healthy peers"
                   if "heartbeats_ok" in x else ""))
        return out

    def heartbeat_five(self):
        P, tmp = self.P, self.tmp
        if "upstream" not in self.pr.procs:
            self.pr.nginx("upstream", B.upstream_conf(os.path.join(tmp, "upstream")), [P["up"], P["ups"]])
        # a control: the same aiproxyd, mesh off, idle in the same windows
        self.start_node("idle", node_conf(tmp, "idle", P["idle"], P["up"]), P["idle"])
        for i in range(1, 6):
            mesh = {"enabled": True, "listen_addr": f"127.0.0.1:{P[f'n{i}_mesh']}", "secret": SECRET,
                    "heartbeat_interval": "1s", "peer_timeout": "3s"}
            if i > 1:
                mesh["peers"] = [{"addr": f"127.0.0.1:{P[f'n{i - 1}_mesh']}"}]
            self.start_node(f"n{i}", node_conf(tmp, f"n{i}", P[f"n{i}"], P["up"], mesh), P[f"n{i}"], P[f"n{i}_mesh"])
        t0 = time.time()
        for i in range(1, 6):
            self.wait_peers(P[f"n{i}"], 4, timeout=60, label=f"n{i}")
        log(f"5 nodes: every node sees 4 healthy peers after {time.time() - t0:.1f}s")
        time.sleep(3)  # past the joins' log lines and view rebuilds
        names = ["n1", "n2", "n3", "n4", "n5", "idle"]
        w = self.idle_window(names, self.idle_s, {f"n{i}": P[f"n{i}"] for i in range(1, 6)})
        self.res["hb5"] = w
        # the heartbeat message a real node answers with: the stand-ins' template.
        # The sender has no mesh address, so n1 does not learn it as a peer.
        s, _, tpl = http_json(P["n1_mesh"], "/aiproxy/mesh/heartbeat", "POST",
                              json.dumps({"v": 1, "node": {"id": "capture"}}),
                              {"Authorization": "Bearer " + SECRET, "Content-Type": "application/json"})
        if s != 200 or tpl.get("v") != 1:
            raise RuntimeError(f"heartbeat capture failed: {s} {tpl}")
        self.res["heartbeat_template"] = tpl
        self.res["heartbeat_bytes"] = len(json.dumps(tpl, separators=(",", ":")))
        for i in range(1, 6):
            self.alive(f"n{i}")
            self.pr.stop(f"n{i}")
        return tpl

    def heartbeat_fifty(self, tpl):
        P, tmp = self.P, self.tmp
        n = self.n_stubs
        tfile = os.path.join(tmp, "heartbeat-template.json")
        with open(tfile, "w") as f:
            json.dump(tpl, f)
        ports = [P[f"stub{i}"] for i in range(n)]
        out = open(os.path.join(tmp, "stubs.out"), "w")
        self.pr.start("stubs", [B.NODE, os.path.join(B.BENCH, "mesh-peer-stub.mjs"), "--template", tfile,
                                "--ports", ",".join(map(str, ports)), "--secret", SECRET, "--peers", "full",
                                "--self-id", "hub", "--self-addr", f"127.0.0.1:{P['hub_mesh']}"],
                      stdout=out, ports=[ports[0], ports[-1]])
        mesh = {"enabled": True, "listen_addr": f"127.0.0.1:{P['hub_mesh']}", "secret": SECRET,
                "heartbeat_interval": "1s", "peer_timeout": "3s",
                "peers": [{"addr": f"127.0.0.1:{p}"} for p in ports]}
        self.start_node("hub", node_conf(tmp, "hub", P["hub"], P["up"], mesh), P["hub"], P["hub_mesh"])
        t0 = time.time()
        st = self.wait_peers(P["hub"], n, timeout=60, label="hub")
        ids = sorted(p["id"] for p in st["peers"])
        log(f"hub: {n} stand-in peers healthy after {time.time() - t0:.1f}s ({ids[0]} .. {ids[-1]})")
        if len(set(ids)) != n:
            self.problem(f"hub: expected {n} distinct peer ids, got {len(set(ids))}")
        time.sleep(3)
        res = {}
        for mode in ("full", "empty"):
            _, _, m = http_json(ports[0], f"/stub/mode?peers={mode}")
            time.sleep(2)
            _, _, s0 = http_json(ports[0], "/stub/stats")
            w = self.idle_window(["hub", "idle"], self.idle_s, {"hub": P["hub"]})
            _, _, s1 = http_json(ports[0], "/stub/stats")
            w["stubs"] = {"heartbeats_received": s1["heartbeats"] - s0["heartbeats"],
                          "unauthorized": s1["unauthorized"] - s0["unauthorized"], "bad": s1["bad"] - s0["bad"],
                          "mode": m["mode"], "answer_bytes": s1.get("answer_bytes")}
            if w["stubs"]["unauthorized"] or w["stubs"]["bad"]:
                self.problem(f"stubs: {w['stubs']}")
            res[mode] = w
            if self.quick:
                break
        self.res["hb50"] = res
        self.alive("hub")

    # ------------------------------------------------------------ report
    def report(self):
        m = self.res
        L = [f"# aiproxy mesh benchmark (issue 11) — {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n",
             f"Command: `bench/mesh.sh {self.mode}` ("
             + "; ".join(([f"{m['rounds']} round(s), {m['duration_s']} s per target per round in {m['slices']} "
                           f"alternating slice(s)"] if self.mode != "heartbeat" else [])
                         + ([f"idle windows {m['idle_s']:.0f} s"] if self.mode != "chain" else [])) + ")\n",
             "Machine: " + B.machine() + f"; load average before: {m.get('loadavg_before')}\n",
             f"aiproxyd: {B.AIPROXYD} ({m.get('git')} when the run started; binary modified "
             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.binary_mtime))} UTC, copied at the start)\n"]
        tg = []
        if "chain" in m:
            s = m["chain"]
            t = s["tab"]
            L.append("## A request through one peer (wrk, POST 73-byte chat body; medians of rounds)\n")
            L.append("client → aiproxyd A → aiproxyd B → fake upstream (A has no provider; peer b found by "
                     "heartbeat) against client → nginx 1 → nginx 2 → the same upstream. 2 workers per proxy.\n")
            L.append("| target | conns | req/s | req/s per round | p50 µs | p50 per round | p99 µs | CPU µs/req (all its proxies) | errors (non-2xx) |")
            L.append("|---|---:|---:|---|---:|---|---:|---:|---:|")
            for c in (1, 32, 256):
                for n in ("direct", "nginx 1 hop", "nginx chain", "aiproxyd 1 hop", "aiproxyd B alone", "aiproxyd chain"):
                    x = t.get(f"{n}@{c}")
                    if not x:
                        continue
                    cpu = f"{x['cpu']:.1f}" if x["cpu"] is not None else "–"
                    if len(x["cpu_by_proc"]) > 1:
                        cpu += " (" + " + ".join(f"{pn} {v:.1f}" for pn, v in x["cpu_by_proc"].items()) + ")"
                    L.append(f"| {n} | {c} | {x['rps']:.0f} | {' '.join(map(str, x['rps_rounds']))} | {x['p50']:.0f} | "
                             f"{' '.join(map(str, x['p50_rounds']))} | {x['p99']:.0f} | {cpu} | {x['errors']} ({x['non2xx']}) |")
            L.append("")
            L.append("| ratio aiproxyd / nginx | per round | median | CPU per request ratio (median) |")
            L.append("|---|---|---:|---:|")
            for k, v in s["ratio"].items():
                L.append(f"| {k.replace('@', ', c=')} | {' '.join(map(str, v['rounds']))} | **{v['median']:.3f}** | "
                         f"{v['cpu_median']:.2f} |")
            L.append("")
            h = s["hop"]
            L.append("Added p50 latency per hop at 1 connection (per round: p50 − direct p50, chains ÷ 2):\n")
            L.append("| | per hop in the chain, µs | one hop alone, µs |")
            L.append("|---|---|---|")
            for who in ("aiproxyd", "nginx"):
                L.append(f"| {who} | {B.med(h[who]['chain_per_hop_rounds']):.1f} "
                         f"({' '.join(f'{x:.1f}' for x in h[who]['chain_per_hop_rounds'])}) | "
                         f"{h[who]['one_hop']:.1f} ({' '.join(f'{x:.0f}' for x in h[who]['one_hop_rounds'])}) |")
            L.append(f"| aiproxyd B alone (mesh on) | | {h['aiproxyd B alone']['one_hop']:.1f} |")
            L.append("")
            for c in (32, 256):
                r = s["ratio"][f"chain@{c}"]["median"]
                tg.append((f"chain throughput at {c} conns ≥ 0.8× the nginx chain", f"{r:.3f}×", r >= 0.8))
            a = h["aiproxyd"]
            tg.append(("per-hop latency in the chain ≤ one aiproxyd hop alone (p50, 1 conn)",
                       f"{a['chain_per_hop']:.1f} vs {a['one_hop']:.1f} µs", a["chain_per_hop"] <= a["one_hop"]))
            L.append(f"Every request went through B: wrk counted {m.get('chain_requests_sent')} answers from A in the "
                     f"measured runs; A's `aiproxy_mesh_requests_forwarded_total{{peer=\"b\"}}` grew by "
                     f"{m.get('chain_forwarded', 0):.0f} and B's `aiproxy_mesh_requests_received_total{{peer=\"a\"}}` by "
                     f"{m.get('chain_received', 0):.0f} (the difference: requests in flight when a wrk run ended). "
                     f"A's peer b after the load: {json.dumps(m.get('a_peer_b'))}\n")
        if "hb5" in m:
            L.append(f"## Heartbeats: 5 nodes meshed, idle ({m['idle_s']:.0f} s; heartbeat_interval 1s, peer_timeout 3s)\n")
            L.append("| process | CPU % of one core (stat ticks) | CPU % (schedstat) | heartbeats sent | healthy peers | node CPU µs ÷ heartbeats sent (it answers as many) | threads | RSS MB |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for n, x in m["hb5"].items():
                lab = n if n != "idle" else "idle (mesh off, control)"
                per = f"{x['cpu_us_per_heartbeat']:.0f}" if "cpu_us_per_heartbeat" in x else "–"
                L.append(f"| {lab} | {x['pct_ticks']:.3f} ({x['ticks']} ticks) | {x['pct_ns']:.3f} | "
                         f"{x.get('heartbeats_ok', '–')} | {x.get('peers_healthy', '–')} | {per} | "
                         f"{x['threads']} | {x['rss_kb'] / 1024:.1f} |")
            L.append("")
            worst = max(x["pct_ticks"] for n, x in m["hb5"].items() if n != "idle")
            tg.append(("5 meshed nodes, idle: each < 1% of one core", f"max {worst:.3f}%", worst < 1))
            L.append(f"Heartbeat message of a node with one provider and one model: {m.get('heartbeat_bytes')} bytes.\n")
        if "hb50" in m:
            L.append(f"## Heartbeats: one node, {self.n_stubs} stand-in peers ({m['idle_s']:.0f} s)\n")
            L.append("| stand-ins' peer lists | answer bytes | hub CPU % (stat ticks) | hub CPU % (schedstat) | heartbeats sent | healthy peers | CPU µs per heartbeat | control (mesh off) % | received by the stand-ins |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for mode, w in m["hb50"].items():
                x, c = w["hub"], w["idle"]
                L.append(f"| {mode} | {w['stubs'].get('answer_bytes')} | {x['pct_ticks']:.3f} ({x['ticks']} ticks) | {x['pct_ns']:.3f} | "
                         f"{x.get('heartbeats_ok')} | {x.get('peers_healthy')} | {x.get('cpu_us_per_heartbeat', 0):.0f} | "
                         f"{c['pct_ns']:.3f} | {w['stubs']['heartbeats_received']} |")
            L.append("")
            worst = max(w["hub"]["pct_ticks"] for w in m["hb50"].values())
            tg.append((f"one node with {self.n_stubs} peers: < 1% of one core", f"max {worst:.3f}%", worst < 1))
        if tg:
            L.append("## Targets\n")
            L.append("| target | measured | met |")
            L.append("|---|---|---|")
            for a, b, ok in tg:
                L.append(f"| {a} | {b} | {'yes' if ok else '**no**'} |")
            L.append("")
        if m["problems"]:
            L.append("## Problems seen\n")
            L += [f"- {x}" for x in m["problems"]]
            L.append("")
            seen = set()
            for dg in m.get("diagnostics", []):
                for k, v in dg["log_tails"].items():
                    lines = [x for x in v.splitlines()
                             if __import__("re").search(r"(?i)error|warn|fail|refus|timed out|crit|alert|emerg", x)][-3:]
                    key = (k, tuple(lines))
                    if key in seen or not lines:
                        continue
                    seen.add(key)
                    L.append(f"Log `{k}` after {dg['when']} (last lines):\n```\n" + "\n".join(lines) + "\n```\n")
        return "\n".join(L)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    if mode not in ("full", "quick", "chain", "heartbeat"):
        print(__doc__)
        sys.exit(2)
    b = Mesh(mode)
    b.res["git"] = B.git_rev()
    b.res["loadavg_before"] = open("/proc/loadavg").read().split()[:3]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit("hung up"))
    log(f"temp dir {b.tmp}; ports {min(b.P.values())}-{max(b.P.values())}")
    failed = None
    try:
        try:
            if mode in ("full", "quick", "chain"):
                b.start_chain()
                b.chain_rounds()
                b.summarize_chain()
                b.pr.stop_all()
            if mode in ("full", "quick", "heartbeat"):
                tpl = b.heartbeat_five()
                b.heartbeat_fifty(tpl)
        except Exception as e:  # noqa: BLE001 - reported with what was measured so far
            failed = e
            b.problem(f"bench aborted: {type(e).__name__}: {e}")
        finally:
            b.pr.stop_all()
        text = b.report()
        print(text)
        os.makedirs(os.path.join(B.BENCH, "results"), exist_ok=True)
        path = os.path.join(B.BENCH, "results", f"{time.strftime('%Y%m%d-%H%M%S')}-mesh.md")
        with open(path, "w") as f:
            f.write(text + "\n")
        with open(path[:-3] + ".json", "w") as f:
            json.dump(b.res, f, indent=1, default=str)
        log(f"wrote {path}")
    finally:
        if os.environ.get("BENCH_KEEP_TMP") != "1":
            import shutil
            shutil.rmtree(b.tmp, ignore_errors=True)
        else:
            log(f"kept {b.tmp}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
