"""Issue 14: the context delta buffer (bench/run.sh context).

1. Tokens of a 20-turn agent session on a real tree: this repository's own
   src/ (every .c and .h). Turn 1 sends the tree as a snapshot; each later
   turn edits 1 to 3 files slightly (a few lines changed, seeded, so runs
   are comparable) and sends the delta; every turn makes one chat request
   with X-Inject-Context: true. "Whole-file context" is what a client
   resending the tree every turn sends: the tree's bytes / 4 tokens per
   turn (the gateway's estimate). "Deltas" is what the gateway injected:
   the sum of x-aiproxy.context.tokens_injected over the 20 requests
   (context.max_inject_tokens raised so that turn 1 carries the tree whole).
2. The cost of an injecting request against a plain one, wrk at 32
   connections, one connection per wrk thread, each thread its own project:
   every request is a pair, a delta that rewrites a 2 KB file (so about
   4 KB of diff is pending) then a chat request. "inject": the chat request
   has X-Inject-Context: true (the gateway builds the diff, rewrites the
   system message, marks it seen after the answer: a SQLite write);
   "plain": the chat request carries a 4 KB system prompt of its own and no
   header. Both pay the delta; the ratio of their pairs per second is the
   injection's cost. Interleaved rounds, medians.

The upstream is the main bench's fake (nginx, a fixed answer). Ports from
CONTEXT_PORT_BASE (default 19700). Writes bench/results/<ts>-context.md.
Env: BENCH_DURATION (s per run, default 10), BENCH_ROUNDS (default 3).
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import cache as C  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = int(os.environ.get("CONTEXT_PORT_BASE", "19700"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
AIPROXYD = os.environ.get("AIPROXYD", os.path.join(ROOT, "build", "aiproxyd"))


def post(port, path, body, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def wait_ready(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError("aiproxyd exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError("aiproxyd not ready")


def tree():
    files = {}
    for d, _, names in os.walk(os.path.join(ROOT, "src")):
        for n in sorted(names):
            if n.endswith((".c", ".h")):
                p = os.path.join(d, n)
                files[os.path.relpath(p, ROOT)] = open(p, encoding="utf-8").read()
    return files


def session(port):
    files = tree()
    total_bytes = sum(len(v.encode()) for v in files.values())
    lines = sum(v.count("\n") for v in files.values())
    rnd = random.Random(14)
    paths = sorted(files)
    post(port, "/v1/context/delta", {"project": "src", "reset": True,
                                     "files": [{"path": p, "content": c} for p, c in files.items()]})
    injected, per_turn = [], []
    for turn in range(20):
        if turn:
            changed = []
            for p in rnd.sample(paths, rnd.randint(1, 3)):
                ls = files[p].split("\n")
                for _ in range(rnd.randint(1, 4)):
                    i = rnd.randrange(len(ls))
                    ls[i] = ls[i] + f"  /* turn {turn} */"
                files[p] = "\n".join(ls)
                changed.append({"path": p, "content": files[p]})
            post(port, "/v1/context/delta", {"project": "src", "files": changed})
        r = post(port, "/v1/chat/completions",
                 {"model": "gpt-bench", "messages": [{"role": "user", "content": f"turn {turn}"}]},
                 {"X-Inject-Context": "true", "X-Context-Project": "src"})
        c = r["x-aiproxy"]["context"]
        injected.append(c["tokens_injected"])
        per_turn.append(c)
    whole = 20 * ((total_bytes + 3) // 4)
    return {"files": len(files), "bytes": total_bytes, "lines": lines,
            "whole_tokens": whole, "delta_tokens": sum(injected),
            "turn1": injected[0], "later_median": sorted(injected[1:])[len(injected[1:]) // 2],
            "later_max": max(injected[1:]), "saving": 1 - sum(injected) / whole,
            "steady_saving": 1 - (sorted(injected[1:])[9]) / ((total_bytes + 3) // 4)}


LUA = r"""
local id = 0
local n = 0
function setup(thread) id = id + 1; thread:set("id", id) end
function init(args) mode = args[1]; n = 0 end
local a = string.rep("alpha line of the bench file\n", 70)
local b = string.rep("beta line of the bench file!\n", 70)
local sys = string.rep("x", 4096)
function request()
  n = n + 1
  if n % 2 == 1 then
    local c = (n % 4 == 1) and a or b
    local body = '{"project":"p' .. id .. '","files":[{"path":"f.txt","content":"' .. c:gsub("\n", "\\n") .. '"}]}'
    return wrk.format("POST", "/v1/context/delta", {["Content-Type"] = "application/json"}, body)
  end
  if mode == "inject" then
    local body = '{"model":"gpt-bench","messages":[{"role":"user","content":"hi"}]}'
    return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json",
      ["X-Inject-Context"] = "true", ["X-Context-Project"] = "p" .. id}, body)
  end
  local body = '{"model":"gpt-bench","messages":[{"role":"system","content":"' .. sys .. '"},{"role":"user","content":"hi"}]}'
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"}, body)
end
"""


def wrk(port, mode, tmp):
    script = os.path.join(tmp, "ctx.lua")
    with open(script, "w") as f:
        f.write(LUA)
    out = subprocess.run(["wrk", "-t32", "-c32", f"-d{DURATION}s", "-s", script,
                          f"http://127.0.0.1:{port}", "--", mode],
                         capture_output=True, text=True, check=True).stdout
    rps = float(out.split("Requests/sec:")[1].split()[0])
    non2xx = 0
    if "Non-2xx" in out:
        non2xx = int(out.split("Non-2xx or 3xx responses:")[1].split()[0])
    return rps / 2, non2xx  # pairs per second


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    tmp = tempfile.mkdtemp(prefix="aiproxy-context-bench-")
    procs = []
    try:
        up, ups = BASE, BASE + 1
        os.makedirs(os.path.join(tmp, "up"), exist_ok=True)
        with open(os.path.join(tmp, "up", "nginx.conf"), "w") as f:
            # turn 1 carries the whole tree: the fake may not refuse it (1m by default)
            f.write(C.fake_conf(os.path.join(tmp, "up"), up, ups)
                    .replace("http {", "http {\n    client_max_body_size 0;", 1))
        procs.append(subprocess.Popen(["nginx", "-p", os.path.join(tmp, "up"), "-c",
                                       os.path.join(tmp, "up", "nginx.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        B.P.update(up=up, ups=ups)
        port = BASE + 5
        conf = json.loads(B.aiproxyd_conf(port, providers=("fake",), extra={
            "budget": {"cost_db": os.path.join(tmp, "cost.db")},
            "server": {"max_request_size": "64MB"},
            "context": {"max_inject_tokens": 10000000, "max_bytes": "256MB", "max_files": 100000,
                        "max_projects": 1000}}))
        cpath = os.path.join(tmp, "aiproxy.json")
        with open(cpath, "w") as f:
            json.dump(conf, f)
        gw = subprocess.Popen([AIPROXYD, "--config", cpath], cwd=tmp,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(gw)
        wait_ready(port, gw)
        s = session(port)
        rounds = []
        if mode != "tokens":
            for _ in range(ROUNDS):
                r = {}
                for m in ("plain", "inject"):
                    r[m] = wrk(port, m, tmp)
                rounds.append(r)
        ts = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        L = [f"# context delta buffer bench (issue 14): {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC",
             "", f"git {git}; nproc {os.cpu_count()}; aiproxyd {AIPROXYD}", "",
             "## A 20-turn session on src/", "",
             f"- tree: {s['files']} files, {s['lines']} lines, {s['bytes']} bytes "
             f"({(s['bytes'] + 3) // 4} tokens at bytes/4)",
             f"- whole-file context, 20 turns: {s['whole_tokens']} tokens",
             f"- deltas, 20 turns: {s['delta_tokens']} tokens (turn 1, the tree: {s['turn1']}; "
             f"later turns median {s['later_median']}, max {s['later_max']})",
             f"- saving over the session: {100 * s['saving']:.1f}% "
             f"({s['whole_tokens'] / max(1, s['delta_tokens']):.1f}x fewer tokens)",
             f"- saving per request once the tree was sent (median turn): {100 * s['steady_saving']:.2f}% "
             "(proxym's claim: 120K -> ~5K tokens, ~96%)", ""]
        if rounds:
            ratios = sorted(r["inject"][0] / r["plain"][0] for r in rounds)
            med = ratios[len(ratios) // 2]
            L += ["## An injecting request against a plain one (pairs of delta + chat per second, c=32)", "",
                  "| round | plain (4 KB system prompt) | inject (4 KB pending diff) | ratio | non-2xx |",
                  "|---:|---:|---:|---:|---:|"]
            for i, r in enumerate(rounds):
                L.append(f"| {i + 1} | {r['plain'][0]:.0f} | {r['inject'][0]:.0f} | "
                         f"{r['inject'][0] / r['plain'][0]:.3f} | {r['plain'][1]} / {r['inject'][1]} |")
            L += ["", f"median ratio **{med:.3f}** (target >= 0.9)", ""]
        text = "\n".join(L)
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        out = os.path.join(ROOT, "bench", "results", f"{ts}-context.md")
        with open(out, "w") as f:
            f.write(text + "\n")
        print(text)
        print(f"wrote {out}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
