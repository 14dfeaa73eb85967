#!/usr/bin/env python3
"""Issue 14: the context delta buffer (run through bench/context.sh, or
bench/run.sh context).

1. Tokens of a 20-turn agent session on a real tree: this repository's own
   src/ (every .c and .h). Turn 1 sends the tree as a snapshot; each later
   turn edits 1 to 3 files slightly (1 to 4 lines changed, seeded, so runs
   are comparable) and sends the delta; every turn makes one chat request
   with X-Inject-Context: true. "Whole-file context" is what a client
   resending the tree every turn sends: the tree's bytes / 4 tokens per
   turn (the gateway's estimate). "Deltas" is what the gateway injected:
   the sum of x-aiproxy.context.tokens_injected over the 20 requests
   (context.max_inject_tokens raised so that turn 1 carries the tree whole).

2. The cost of an injecting request against a plain one, wrk at 32
   connections, one connection per wrk thread, each thread its own project.
   A block is pending only after a change, and after a successful answer it
   is seen: so that every injecting request has a 4 KB diff pending, each
   connection sends pairs, a delta (rewriting its 2 KB file, so the diff
   is about 4 KB) then a chat request. The variants:
     plain   the pair with a chat request carrying, in its own system
             message, a prompt as long as the block "inject" gets (and no
             header): what a client sending the text itself costs;
     inject  the pair with X-Inject-Context: true: the gateway diffs (or
             takes the delta's diff), splices the block into the body,
             and marks it seen after the answer (a SQLite write).
   Both pay the delta. The ratio of their pairs per second is the
   injection's cost on the whole exchange; the gateway's CPU per pair
   (from /proc) says what it adds in microseconds. Also measured, chat
   only: a request with X-Inject-Context: true and nothing pending against
   the same request without the header (what the header costs when nothing
   changed). Each variant's time in a round is cut into slices that
   alternate with the other variant's (this machine's speed drifts over
   seconds); per-round ratios, then their median.

The upstream is the main bench's fake (nginx, a fixed answer); the gateway
is the main bench's aiproxyd config (workers 2, log warn, ledger on) with
its own cost_db, where the context buffer is kept. Before measuring, one
exchange of each variant is checked (the block injected, its size; nothing
injected when nothing is pending).

Modes: full (default), quick (1 round of 4 s: checks the bench itself),
tokens (part 1 only), cost (part 2 only).
Env: BENCH_DURATION (s per variant per round, default 10), BENCH_ROUNDS
(default 3), BENCH_SLICES (default 5), CONTEXT_PORT_BASE (default 19700; free
ports from there up), AIPROXYD, BENCH_KEEP_TMP=1, CONTEXT_PIDFILE (set by
context.sh). Writes bench/results/<ts>-context.md and .json.
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (aiproxyd config, /proc helpers, machine(), git_rev())
import cache as C  # noqa: E402  (the fake upstream's config)
import mesh as M  # noqa: E402  (free ports, the process table)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = B.CLK_TCK


def log(*a):
    B.log(*a)


class Procs(M.Procs):
    """mesh.py's process table (every PID recorded as it starts), recording to
    CONTEXT_PIDFILE, which context.sh's trap reads should this script die."""

    def __init__(self, tmp):
        B.Procs.__init__(self, tmp)
        self.pidfile = os.environ.get("CONTEXT_PIDFILE")
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write(f"tmpdir {tmp}\n")


def post(port, path, body, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


# ---------------------------------------------------------------- part 1
def tree():
    files = {}
    for d, _, names in os.walk(os.path.join(ROOT, "src")):
        for n in sorted(names):
            if n.endswith((".c", ".h")):
                p = os.path.join(d, n)
                with open(p, encoding="utf-8") as f:
                    files[os.path.relpath(p, ROOT)] = f.read()
    return files


def session(port):
    files = tree()
    total_bytes = sum(len(v.encode()) for v in files.values())
    lines = sum(v.count("\n") for v in files.values())
    rnd = random.Random(14)
    paths = sorted(files)
    post(port, "/v1/context/delta", {"project": "src", "reset": True,
                                     "files": [{"path": p, "content": c} for p, c in files.items()]})
    injected, turns = [], []
    for turn in range(20):
        edited = 0
        if turn:
            changed = []
            for p in rnd.sample(paths, rnd.randint(1, 3)):
                ls = files[p].split("\n")
                for _ in range(rnd.randint(1, 4)):
                    i = rnd.randrange(len(ls))
                    ls[i] = ls[i] + f"  /* turn {turn} */"
                    edited += 1
                files[p] = "\n".join(ls)
                changed.append({"path": p, "content": files[p]})
            post(port, "/v1/context/delta", {"project": "src", "files": changed})
        r = post(port, "/v1/chat/completions",
                 {"model": "gpt-bench", "messages": [{"role": "user", "content": f"turn {turn}"}]},
                 {"X-Inject-Context": "true", "X-Context-Project": "src"})
        c = r["x-aiproxy"]["context"]
        injected.append(c["tokens_injected"])
        turns.append(dict(c, turn=turn + 1, lines_edited=edited))
    per_turn = (total_bytes + 3) // 4
    whole = 20 * per_turn
    later = sorted(injected[1:])
    return {"files": len(files), "bytes": total_bytes, "lines": lines, "tokens_per_turn_whole": per_turn,
            "whole_tokens": whole, "delta_tokens": sum(injected), "turn1": injected[0],
            "later_median": later[len(later) // 2], "later_max": later[-1], "later_min": later[0],
            "saving": 1 - sum(injected) / whole, "steady_saving": 1 - later[len(later) // 2] / per_turn,
            "turns": turns}


# ---------------------------------------------------------------- part 2
LUA = r"""
-- one connection per thread (-t = -c): the thread numbered `id` (a global
-- of its own state, set by setup in the main one) owns project <mode><id>
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
local n = 0
function init(args)
  mode = args[1]
  sys = string.rep("x", tonumber(args[2]))
  n = 0
end
local a = string.rep("alpha line of the bench file\n", 70)
local b = string.rep("beta line of the bench file!\n", 70)
local json = {["Content-Type"] = "application/json"}
function request()
  n = n + 1
  if mode == "idle_plain" or mode == "idle_inject" then
    local body = '{"model":"gpt-bench","messages":[{"role":"user","content":"hi"}]}'
    if mode == "idle_plain" then return wrk.format("POST", "/v1/chat/completions", json, body) end
    return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json",
      ["X-Inject-Context"] = "true", ["X-Context-Project"] = "idle" .. id}, body)
  end
  if n % 2 == 1 then
    -- the delta: the file rewritten, alternately a and b (~4 KB of diff pending)
    local c = (n % 4 == 1) and a or b
    local body = '{"project":"' .. mode .. id .. '","files":[{"path":"f.txt","content":"' ..
      c:gsub("\n", "\\n") .. '"}]}'
    return wrk.format("POST", "/v1/context/delta", json, body)
  end
  if mode == "inject" then
    local body = '{"model":"gpt-bench","messages":[{"role":"user","content":"hi"}]}'
    return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json",
      ["X-Inject-Context"] = "true", ["X-Context-Project"] = mode .. id}, body)
  end
  local body = '{"model":"gpt-bench","messages":[{"role":"system","content":"' .. sys ..
    '"},{"role":"user","content":"hi"}]}'
  return wrk.format("POST", "/v1/chat/completions", json, body)
end
"""


def wrk(port, mode, seconds, script, sys_len):
    r = subprocess.run(["wrk", "-t32", "-c32", f"-d{seconds}s", "--timeout", "5s", "-s", script,
                        f"http://127.0.0.1:{port}", "--", mode, str(sys_len)],
                       capture_output=True, text=True)
    out = r.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if not m:
        raise RuntimeError("wrk failed: " + out + r.stderr)
    scale = {"s": 1.0, "ms": 1e-3, "m": 60.0}[m.group(3)]
    non2xx = int(re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1)) if "Non-2xx" in out else 0
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(x) for x in errs.groups()) if errs else 0
    return {"requests": int(m.group(1)), "seconds": float(m.group(2)) * scale, "non2xx": non2xx,
            "socket_errors": socket_errors}


def med(xs):
    return B.med(xs)


class ContextBench:
    def __init__(self, mode):
        self.mode = mode
        self.quick = mode == "quick"
        self.duration = int(os.environ.get("BENCH_DURATION", "4" if self.quick else "10"))
        self.rounds = int(os.environ.get("BENCH_ROUNDS", "1" if self.quick else "3"))
        self.slices = max(1, int(os.environ.get("BENCH_SLICES", "2" if self.quick else "5")))
        self.tmp = tempfile.mkdtemp(prefix="aiproxy-context-bench-")
        self.pr = Procs(self.tmp)
        base = int(os.environ.get("CONTEXT_PORT_BASE", "19700"))
        self.P = dict(zip(["up", "ups", "gw"], M.alloc_ports(3, base)))
        self.res = {"mode": mode, "duration_s": self.duration, "rounds": self.rounds, "slices": self.slices,
                    "problems": [], "machine": B.machine(), "git": B.git_rev(),
                    "binary": os.environ.get("AIPROXYD", B.AIPROXYD)}
        self.script = os.path.join(self.tmp, "context.lua")
        with open(self.script, "w") as f:
            f.write(LUA)

    def problem(self, msg):
        log("PROBLEM: " + msg)
        self.res["problems"].append(msg)

    def start(self):
        P = self.P
        up = os.path.join(self.tmp, "upstream")
        # turn 1 carries the whole tree: the fake may not refuse it (1m by default)
        self.pr.nginx("upstream", C.fake_conf(up, P["up"], P["ups"])
                      .replace("http {", "http {\n    client_max_body_size 0;", 1), [P["up"], P["ups"]])
        B.P["up"], B.P["ups"] = P["up"], P["ups"]
        conf = json.loads(B.aiproxyd_conf(P["gw"], providers=("fake",), extra={
            "budget": {"cost_db": os.path.join(self.tmp, "gw", "cost.db")},
            "server": {"max_request_size": "64MB"},
            "context": {"max_inject_tokens": 10000000, "max_bytes": "256MB", "max_files": 100000,
                        "max_projects": 1000}}))
        self.res["config"] = conf
        self.pr.aiproxyd("gw", json.dumps(conf, indent=1), P["gw"])

    def gw_ticks(self):
        return B.cpu_ticks([self.pr.procs["gw"].pid])

    # -------------------------------------------------------- checks
    def check(self):
        """One exchange of each variant by hand: what the provider is sent."""
        port = self.P["gw"]
        a = "alpha line of the bench file\n" * 70
        b = "beta line of the bench file!\n" * 70
        hdr = {"X-Inject-Context": "true", "X-Context-Project": "check"}
        chat = {"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]}
        post(port, "/v1/context/delta", {"project": "check", "files": [{"path": "f.txt", "content": a}]})
        post(port, "/v1/chat/completions", chat, hdr)  # the file, new, whole
        d = post(port, "/v1/context/delta", {"project": "check", "files": [{"path": "f.txt", "content": b}]})
        c = post(port, "/v1/chat/completions", chat, hdr)["x-aiproxy"]["context"]
        idle = post(port, "/v1/chat/completions", chat, hdr)["x-aiproxy"]["context"]
        self.res["check"] = {"delta": {k: d[k] for k in ("changed", "added", "removed", "pending")},
                             "inject": c, "nothing_pending": idle}
        if c.get("files") != 1 or c.get("diff_lines") != 140 or idle.get("files") != 0:
            self.problem(f"check: inject {c}, then {idle} (want 1 file, 140 diff lines, then nothing)")
        # plain's system prompt: as long as the block (tokens are bytes / 4, rounded up)
        self.sys_len = 4 * c["tokens_injected"]
        self.res["plain_system_prompt_bytes"] = self.sys_len
        log(f"check: delta {self.res['check']['delta']}; injected {c}; nothing pending: {idle}")

    # -------------------------------------------------------- rounds
    def ab(self, key, variants, pairs):
        """Interleaved rounds over two variants (base first): per-round ratio of
        the rates, gateway CPU per unit (a pair, or a request)."""
        slice_s = max(1, round(self.duration / self.slices))
        port = self.P["gw"]
        for v in variants:
            wrk(port, v, 1, self.script, self.sys_len)  # warm: the projects exist, the pool is open
        rounds = []
        for rnd in range(self.rounds):
            order = variants if rnd % 2 == 0 else variants[::-1]
            acc = {v: {"requests": 0, "seconds": 0.0, "non2xx": 0, "socket_errors": 0, "ticks": 0,
                       "injections": 0} for v in variants}
            for _ in range(self.slices):
                for v in order:
                    i0 = self.injections()
                    t0 = self.gw_ticks()
                    d = wrk(port, v, slice_s, self.script, self.sys_len)
                    acc[v]["ticks"] += self.gw_ticks() - t0
                    acc[v]["injections"] += self.injections() - i0
                    for k in ("requests", "seconds", "non2xx", "socket_errors"):
                        acc[v][k] += d[k]
            r = {}
            for v in variants:
                x = acc[v]
                units = x["requests"] / (2 if pairs else 1)
                r[v] = {"rate": units / x["seconds"], "cpu_us": x["ticks"] / CLK_TCK * 1e6 / max(1, units),
                        "non2xx": x["non2xx"], "socket_errors": x["socket_errors"],
                        # blocks injected per chat request (wrk's count includes the few
                        # requests still out when a slice ends)
                        "injected_share": x["injections"] / max(1, units)}
                if x["non2xx"] or x["socket_errors"]:
                    self.problem(f"{key} round {rnd + 1} {v}: {x['non2xx']} non-2xx, "
                                 f"{x['socket_errors']} socket errors")
            base, other = variants
            want = 1.0 if other == "inject" else 0.0
            if abs(r[other]["injected_share"] - want) > 0.02 or r[base]["injected_share"] > 0.0:
                self.problem(f"{key} round {rnd + 1}: blocks injected per request: {base} "
                             f"{r[base]['injected_share']:.3f}, {other} {r[other]['injected_share']:.3f} "
                             f"(want 0 and {want:.0f})")
            r["ratio"] = r[other]["rate"] / r[base]["rate"]
            r["cpu_added_us"] = r[other]["cpu_us"] - r[base]["cpu_us"]
            log(f"{key} round {rnd + 1}: " + ", ".join(
                f"{v} {r[v]['rate']:.0f}/s cpu {r[v]['cpu_us']:.0f} us" for v in variants) +
                f"; ratio {r['ratio']:.3f}")
            rounds.append(r)
        self.res[key] = {"variants": variants, "pairs": pairs, "slice_s": slice_s, "rounds": rounds,
                         "ratio_median": med([r["ratio"] for r in rounds]),
                         "cpu_added_us_median": med([r["cpu_added_us"] for r in rounds]),
                         "rate_median": {v: med([r[v]["rate"] for r in rounds]) for v in variants},
                         "cpu_us_median": {v: med([r[v]["cpu_us"] for r in rounds]) for v in variants}}

    def injections(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.P['gw']}/aiproxy/status", timeout=5) as r:
            return json.loads(r.read())["context"]["injections"]

    def stats(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.P['gw']}/aiproxy/status", timeout=5) as r:
                self.res["status_context"] = json.loads(r.read()).get("context")
        except OSError as e:
            self.problem(f"status: {e}")

    # -------------------------------------------------------- report
    def report(self):
        r = self.res
        L = [f"# context delta buffer bench (issue 14): {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC",
             "", f"{r['git']}; {r['machine']}; binary {r['binary']}",
             f"load average before {r.get('loadavg_before')}, after {r.get('loadavg_after')}", ""]
        s = r.get("session")
        if s:
            L += ["## A 20-turn session on src/", "",
                  f"- tree: {s['files']} files, {s['lines']:,} lines, {s['bytes']:,} bytes "
                  f"({s['tokens_per_turn_whole']:,} tokens at bytes/4)",
                  "", "| | tokens over 20 turns | per later turn |", "|---|---:|---:|",
                  f"| whole-file context (the tree every turn) | {s['whole_tokens']:,} | {s['tokens_per_turn_whole']:,} |",
                  f"| deltas (what the gateway injected) | {s['delta_tokens']:,} | median {s['later_median']:,} "
                  f"(min {s['later_min']:,}, max {s['later_max']:,}) |",
                  f"| **saving** | **{100 * s['saving']:.1f}%** ({s['whole_tokens'] / max(1, s['delta_tokens']):.1f}x fewer) "
                  f"| **{100 * s['steady_saving']:.2f}%** |", "",
                  f"Turn 1 (the tree, new): {s['turn1']:,} tokens. proxym's claim: 120K -> about 5K tokens per "
                  "request (about 96%).", "",
                  "| turn | lines edited | files injected | diff lines | tokens injected | tokens saved |",
                  "|---:|---:|---:|---:|---:|---:|"]
            for t in s["turns"]:
                L.append(f"| {t['turn']} | {t['lines_edited']} | {t['files']} | {t['diff_lines']} | "
                         f"{t['tokens_injected']:,} | {t['tokens_saved']:,} |")
            L.append("")
        if "check" in r:
            L += ["## Checked before measuring", "",
                  f"- delta answer: {json.dumps(r['check']['delta'])}",
                  f"- the injecting request: {json.dumps(r['check']['inject'])}",
                  f"- then with nothing pending: {json.dumps(r['check']['nothing_pending'])}",
                  f"- plain's own system prompt: {r['plain_system_prompt_bytes']} bytes", ""]
        for key, title, unit in (("pairs", "An injecting request against a plain one (pairs of delta + chat, c=32)",
                                  "pairs/s"),
                                 ("idle", "The header with nothing pending (chat requests only, c=32)", "req/s")):
            x = r.get(key)
            if not x:
                continue
            a, b = x["variants"]
            L += [f"## {title}", "",
                  f"{self.rounds} rounds, each variant {self.duration} s per round in {x['slice_s']} s slices "
                  "alternating with the other's; gateway CPU per " + ("pair" if x["pairs"] else "request") +
                  " from /proc.", "",
                  f"| round | {a} {unit} | {b} {unit} | ratio | {a} CPU us | {b} CPU us | added us |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
            for i, q in enumerate(x["rounds"]):
                L.append(f"| {i + 1} | {q[a]['rate']:,.0f} | {q[b]['rate']:,.0f} | {q['ratio']:.3f} | "
                         f"{q[a]['cpu_us']:.0f} | {q[b]['cpu_us']:.0f} | {q['cpu_added_us']:+.0f} |")
            share = med([q[b]["injected_share"] for q in x["rounds"]])
            L += [f"| **median** | {x['rate_median'][a]:,.0f} | {x['rate_median'][b]:,.0f} | "
                  f"**{x['ratio_median']:.3f}** | {x['cpu_us_median'][a]:.0f} | {x['cpu_us_median'][b]:.0f} | "
                  f"{x['cpu_added_us_median']:+.0f} |", ""]
            L += [f"Blocks injected per {b} request: {share:.3f} (from the gateway's count).", ""]
            if key == "pairs":
                L += [f"Target >= 0.9: **{'met' if x['ratio_median'] >= 0.9 else 'not met'}**.", ""]
        if r.get("status_context"):
            L += [f"Gateway's context totals at the end: {json.dumps(r['status_context'])}", ""]
        if r["problems"]:
            L += ["## Problems", ""] + [f"- {p}" for p in r["problems"]] + [""]
        return "\n".join(L)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    if mode not in ("full", "quick", "tokens", "cost"):
        print(__doc__)
        sys.exit(2)
    b = ContextBench(mode)
    b.res["loadavg_before"] = open("/proc/loadavg").read().split()[:3]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit("hung up"))
    log(f"temp dir {b.tmp}; ports {min(b.P.values())}-{max(b.P.values())}")
    failed = None
    try:
        try:
            b.start()
            if mode in ("full", "quick", "tokens"):
                b.res["session"] = session(b.P["gw"])
                s = b.res["session"]
                log(f"session: {s['whole_tokens']} tokens whole vs {s['delta_tokens']} injected "
                    f"({100 * s['saving']:.1f}% saved; per later turn {100 * s['steady_saving']:.2f}%)")
            if mode in ("full", "quick", "cost"):
                b.check()
                b.ab("pairs", ["plain", "inject"], pairs=True)
                b.ab("idle", ["idle_plain", "idle_inject"], pairs=False)
                b.stats()
        except Exception as e:  # noqa: BLE001 - reported with what was measured so far
            failed = e
            b.problem(f"bench aborted: {type(e).__name__}: {e}")
        finally:
            b.pr.stop_all()
        b.res["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
        text = b.report()
        print(text)
        os.makedirs(os.path.join(B.BENCH, "results"), exist_ok=True)
        path = os.path.join(B.BENCH, "results", f"{time.strftime('%Y%m%d-%H%M%S')}-context.md")
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
