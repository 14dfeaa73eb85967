#!/usr/bin/env python3
"""Issue 17: today's clients, side by side with plain chat (bench/run.sh clients).

One aiproxyd (the main bench's config: 2 workers, ledger and budget on) in
front of the main bench's fake upstream (nginx answering a fixed chat
completion), with `security.auth.type: [api_key, jwt]`: an API key, an
HS256 secret, and (a second aiproxyd) an RS256 key in a JWKS file. wrk at
32 connections, the variants' time cut into alternating slices, rounds
interleaved; medians:

  chat, API key            POST /v1/chat/completions (the reference)
  responses, API key       POST /v1/responses, store: false (the translation)
  responses stored         POST /v1/responses (stored in the ledger's SQLite file)
  chat, JWT HS256          the same chat request with a signed token
  chat, JWT RS256          the same with an RS256 token checked against a JWKS file

Targets (issue 17): /v1/responses and JWT-authenticated chat >= 0.9x plain
chat with an API key. Writes bench/results/<timestamp>-clients.md and .json.
Modes: full (default), quick (1 round of 2 s slices). Env: BENCH_DURATION
(s per variant per round, default 10), BENCH_ROUNDS (default 5),
BENCH_SLICES (default 5), CLIENTS_PORT_BASE (default 19950), AIPROXYD.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import mesh as M  # noqa: E402

API_KEY = "sk-bench-client-key-0123456789"
HS_SECRET = "bench-hs256-secret-0123456789abcdef0123456789"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token_hs256(claims):
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64u(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(HS_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64u(sig)}"


def rsa_material(tmp):
    """An RSA key (openssl), its JWKS file, and a signer of RS256 tokens."""
    key = os.path.join(tmp, "rsa.pem")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    mod = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], check=True,
                         capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    n = bytes.fromhex(mod)
    jwks = {"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig", "n": b64u(n), "e": "AQAB"}]}
    path = os.path.join(tmp, "jwks.json")
    with open(path, "w") as f:
        json.dump(jwks, f)

    def sign(claims):
        head = b64u(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench"}, separators=(",", ":")).encode())
        body = b64u(json.dumps(claims, separators=(",", ":")).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=f"{head}.{body}".encode(),
                             check=True, capture_output=True).stdout
        return f"{head}.{body}.{b64u(sig)}"
    return path, sign


LUA = """
local path = os.getenv("CB_PATH")
local body = io.open(os.getenv("CB_BODY")):read("*a")
local auth = os.getenv("CB_AUTH")
wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. auth
local bad = 0
function response(status, headers, b)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  io.write(string.format('CBJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status))
end
"""


def wrk(port, lua, path, body_file, auth, conns, seconds):
    env = dict(os.environ, CB_PATH=path, CB_BODY=body_file, CB_AUTH=auth)
    r = subprocess.run([B.WRK, "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", lua,
                        f"http://127.0.0.1:{port}{path}"], env=env, capture_output=True, text=True)
    m = re.search(r"CBJSON (\{.*\})", r.stdout)
    if not m:
        raise RuntimeError("wrk failed: " + r.stdout + r.stderr)
    d = json.loads(m.group(1))
    m2 = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    d["non2xx"] = int(m2.group(1)) if m2 else 0
    return d


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    quick = mode == "quick"
    duration = int(os.environ.get("BENCH_DURATION", "2" if quick else "10"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "1" if quick else "5"))
    slices = max(1, int(os.environ.get("BENCH_SLICES", "1" if quick else "5")))
    tmp = tempfile.mkdtemp(prefix="aiproxy-clients-bench-")
    pr = M.Procs(tmp)
    res = {"mode": mode, "rounds": rounds, "duration_s": duration, "slices": slices, "problems": []}
    try:
        base = int(os.environ.get("CLIENTS_PORT_BASE", "19950"))
        P = dict(zip(["up", "ups", "aip", "aip_rs"], M.alloc_ports(4, base)))
        saved = dict(B.P)
        B.P.update(up=P["up"], ups=P["ups"])
        pr.nginx("upstream", B.upstream_conf(os.path.join(tmp, "upstream")), [P["up"], P["ups"]])
        jwks, rs_sign = rsa_material(tmp)
        common = {"enabled": True, "api_keys": [{"key": API_KEY, "name": "bench"}]}
        hs_auth = dict(common, type=["api_key", "jwt"],
                       jwt={"secret": HS_SECRET, "issuer": "bench-idp", "audience": "aiproxy"})
        rs_auth = dict(common, type=["api_key", "jwt"],
                       jwt={"jwks_file": jwks, "issuer": "bench-idp", "audience": "aiproxy"})
        for name, port, auth in (("aiproxyd", P["aip"], hs_auth), ("aiproxyd_rs", P["aip_rs"], rs_auth)):
            d = os.path.join(tmp, name)
            os.makedirs(d, exist_ok=True)
            conf = B.aiproxyd_conf(port, providers=("fake",), extra={
                "budget": {"cost_db": os.path.join(d, "cost.db")}, "security": {"auth": auth}})
            pr.aiproxyd(name, conf, port)
        B.P.clear()
        B.P.update(saved)
        now = int(time.time())
        claims = {"sub": "bench-user", "iss": "bench-idp", "aud": "aiproxy", "iat": now, "exp": now + 86400}
        hs_token, rs_token = token_hs256(claims), rs_sign(claims)
        lua = os.path.join(tmp, "clients.lua")
        with open(lua, "w") as f:
            f.write(LUA)
        bodies = {}
        for name, obj in (("chat", {"model": "gpt-bench", "messages": [{"role": "user", "content": "Say hello"}]}),
                          ("responses", {"model": "gpt-bench", "input": "Say hello", "store": False}),
                          ("responses_stored", {"model": "gpt-bench", "input": "Say hello"})):
            bodies[name] = os.path.join(tmp, name + ".json")
            with open(bodies[name], "w") as f:
                json.dump(obj, f)
        variants = {
            "chat, API key": (P["aip"], "/v1/chat/completions", "chat", API_KEY),
            "responses, API key": (P["aip"], "/v1/responses", "responses", API_KEY),
            "responses stored": (P["aip"], "/v1/responses", "responses_stored", API_KEY),
            "chat, JWT HS256": (P["aip"], "/v1/chat/completions", "chat", hs_token),
            "chat, JWT RS256": (P["aip_rs"], "/v1/chat/completions", "chat", rs_token),
        }
        # each must answer 200 before it is measured
        for name, (port, path, body, auth) in variants.items():
            st, _, d = M.http_json(port, path, "POST", open(bodies[body]).read(),
                                   {"Content-Type": "application/json", "Authorization": "Bearer " + auth})
            if st != 200:
                res["problems"].append(f"{name}: status {st}")
            B.log(f"check {name}: {st}")
        for name, (port, path, body, auth) in variants.items():
            wrk(port, lua, path, bodies[body], auth, 32, 1)  # warm-up
        names = list(variants)
        per = {n: [] for n in names}
        slice_s = max(1, round(duration / slices))
        for rnd in range(rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            acc = {n: [] for n in order}
            for _ in range(slices):
                for n in order:
                    port, path, body, auth = variants[n]
                    acc[n].append(wrk(port, lua, path, bodies[body], auth, 32, slice_s))
            for n in order:
                req = sum(r["requests"] for r in acc[n])
                us = sum(r["duration_us"] for r in acc[n])
                per[n].append({"rps": req / (us / 1e6), "p50_us": B.med([r["p50_us"] for r in acc[n]]),
                               "errors": sum(r["errors"] + r["non2xx"] for r in acc[n])})
            B.log(f"round {rnd + 1}: " + ", ".join(f"{n} {per[n][-1]['rps']:.0f}" for n in names))
        ref = B.med([r["rps"] for r in per["chat, API key"]])
        summary = {}
        for n in names:
            rps = B.med([r["rps"] for r in per[n]])
            ratios = [r["rps"] / c["rps"] for r, c in zip(per[n], per["chat, API key"])]
            summary[n] = {"rps": rps, "ratio": B.med(ratios), "p50_us": B.med([r["p50_us"] for r in per[n]]),
                          "errors": sum(r["errors"] for r in per[n])}
        res["summary"] = summary
        res["reference_rps"] = ref
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        out = os.path.join(B.BENCH, "results", f"{stamp}-clients")
        lines = [f"# today's clients bench (issue 17): {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}", "",
                 f"git {B.git_rev()}; nproc {os.cpu_count()}; c=32; {rounds} rounds of {slices} slices, "
                 f"{duration} s per variant per round; medians", "",
                 "| variant | req/s | ratio to chat with an API key | p50 µs | errors |", "|---|---:|---:|---:|---:|"]
        for n in names:
            s = summary[n]
            lines.append(f"| {n} | {s['rps']:.0f} | {s['ratio']:.3f} | {s['p50_us']:.0f} | {s['errors']} |")
        if res["problems"]:
            lines += ["", "Problems: " + "; ".join(res["problems"])]
        with open(out + ".md", "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(out + ".json", "w") as f:
            json.dump(res, f, indent=1)
        print("\n".join(lines))
    finally:
        pr.stop_all()


if __name__ == "__main__":
    main()
