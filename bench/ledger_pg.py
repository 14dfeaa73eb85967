#!/usr/bin/env python3
"""Issue 12: the cost ledger in PostgreSQL vs SQLite (run through bench/ledger-pg.sh).

Starts the main bench's fake upstream (nginx, bench.py), a throwaway PostgreSQL
server (initdb into the temp dir, a free loopback port, its default durability
settings: fsync and synchronous_commit on; run as `nobody` when root) and two
aiproxyd, the main bench's config with cost tracking on: `sqlite` (the default
SQLite ledger) and `postgres` (budget.cost_db: postgres://...). Then bench.py's
interleaved A/B rounds at 32 and 256 connections (req/s, latency, aiproxyd CPU
per request), the PostgreSQL server's CPU per request of the `postgres` runs,
and a check that every request the `postgres` node counted is a row in
PostgreSQL (none spooled, none dropped). Writes
bench/results/<timestamp>-ledger_pg.{md,json}.

Env: BENCH_ROUNDS (default 3), BENCH_DURATION (s per variant, connection count
and round; default 4), BENCH_SLICES (default 2), BENCH_PORT_BASE, AIPROXYD,
BENCH_KEEP_TMP=1, LEDGER_PG_PIDFILE (each started process's "PID START" line,
for the wrapper's clean-up).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (the main bench: upstream, wrk, A/B rounds, /proc helpers)

NOBODY = 65534
PIDFILE = os.environ.get("LEDGER_PG_PIDFILE")


def record_pid(pid):
    """Writes "PID START" (start time from /proc) for the wrapper's trap."""
    if not PIDFILE:
        return
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = f.read().rsplit(") ", 1)[1].split()[19]
        with open(PIDFILE, "a") as f:
            f.write(f"{pid} {start}\n")
    except OSError:
        pass


class Procs(B.Procs):
    def start(self, name, argv, cwd=None, stdout=None, ports=()):
        p = super().start(name, argv, cwd=cwd, stdout=stdout, ports=())
        record_pid(p.pid)
        for port in ports:
            B.wait_port(port, p)
        return p


def pg_bin():
    base = "/usr/lib/postgresql"
    for v in sorted((v for v in os.listdir(base) if v.isdigit()), key=int, reverse=True):
        d = os.path.join(base, v, "bin")
        if os.path.exists(os.path.join(d, "postgres")):
            return d
    sys.exit("PostgreSQL binaries not found (scripts/setup.sh --test installs them)")


def as_pg_user(argv):
    if os.getuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"] + argv


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Postgres:
    def __init__(self, tmp):
        self.bin = pg_bin()
        self.dir = os.path.join(tmp, "pg")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        os.makedirs(self.sock)
        os.chmod(tmp, 0o755)
        if os.getuid() == 0:
            for root, dirs, files in os.walk(self.dir):
                for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(n, NOBODY, NOBODY)
        self.port = free_port()
        self.password = "bench-" + os.urandom(6).hex()
        self.url = f"postgres://aiproxy:{self.password}@127.0.0.1:{self.port}/aiproxy"
        env = dict(os.environ, LC_ALL="C")
        subprocess.run(as_pg_user([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                                   "--locale=C", "--no-sync"]),
                       check=True, capture_output=True, env=env, cwd="/")
        self.log = open(os.path.join(tmp, "postgres.out"), "w")
        self.proc = subprocess.Popen(
            as_pg_user([os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port), "-k", self.sock,
                        "-c", "listen_addresses=127.0.0.1"]),
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd="/", start_new_session=True)
        record_pid(self.proc.pid)
        for _ in range(300):
            if subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", self.sock, "-p", str(self.port)],
                              cwd="/").returncode == 0:
                break
            if self.proc.poll() is not None:
                sys.exit(f"postgres exited at start (see {tmp}/postgres.out)")
            time.sleep(0.05)
        self.sql(f"CREATE ROLE aiproxy LOGIN PASSWORD '{self.password}'", "postgres")
        self.sql("CREATE DATABASE aiproxy OWNER aiproxy", "postgres")

    def sql(self, q, db="aiproxy"):
        r = subprocess.run(as_pg_user([os.path.join(self.bin, "psql"), "-h", self.sock, "-p", str(self.port),
                                       "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", q]),
                           check=True, capture_output=True, text=True, cwd="/")
        return r.stdout.strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("aiproxy_ledger_"):
            k, v = line.rsplit(" ", 1)
            out[k] = int(float(v))
    return out


def main():
    for port in (B.P["up"], B.P["ups"], B.P["aip"], B.P["aipi"]):
        if not B.port_free(port):
            sys.exit(f"port {port} is busy; set BENCH_PORT_BASE")
    B.GIT_AT_START = B.git_rev()
    b = B.Bench("ledger_pg")
    b.rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    b.duration = int(os.environ.get("BENCH_DURATION", "4"))
    b.default_slices = os.environ.get("BENCH_SLICES", "2")
    b.res.update(rounds=b.rounds, duration_s=b.duration)
    b.pr.__class__ = Procs  # the same table, recording each PID for the wrapper
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit("hung up"))
    B.log(f"temp dir {b.tmp}")
    pg = None
    extra_lines = []
    try:
        pg = Postgres(b.tmp)
        b.start_upstream()
        sqlite_conf = B.aiproxyd_conf(B.P["aip"], track_costs=True)
        pg_conf = B.aiproxyd_conf(B.P["aipi"], extra={"budget": {"track_costs": True, "cost_db": pg.url}})
        b.pr.aiproxyd("sqlite", sqlite_conf, B.P["aip"])
        b.pr.aiproxyd("postgres", pg_conf, B.P["aipi"])
        pg_pids = B.family(pg.proc.pid, True)
        t0 = B.cpu_ticks(pg_pids)
        b.ab("ledger_pg", [("sqlite", B.P["aip"], "sqlite", "", False),
                           ("postgres", B.P["aipi"], "postgres", "", False)], concs=(32, 256))
        pg_ticks = B.cpu_ticks(B.family(pg.proc.pid, True)) - t0
        # Everything the postgres node counted is committed, and is in PostgreSQL.
        time.sleep(0.5)
        m = metrics(B.P["aipi"])
        rows = int(pg.sql("SELECT COUNT(*) FROM requests"))
        distinct = int(pg.sql("SELECT COUNT(DISTINCT request_id) FROM requests"))
        pg_requests = sum(r["requests"] for r in b.res["runs_ab"] if r["target"] == "postgres")
        check = {"rows": rows, "distinct_request_ids": distinct, "metrics": m,
                 "pg_server_cpu_us_per_req": pg_ticks / B.CLK_TCK * 1e6 / max(1, pg_requests),
                 "pg_server_cpu_s": pg_ticks / B.CLK_TCK}
        b.res["ledger_pg_check"] = check
        ok = (rows == distinct == m.get("aiproxy_ledger_committed_total") == m.get("aiproxy_ledger_db_committed_total")
              and m.get("aiproxy_ledger_spooled_total") == 0 and m.get("aiproxy_ledger_dropped_total") == 0
              and m.get("aiproxy_ledger_db_up") == 1)
        if not ok:
            b.problem(f"ledger check: {check}")
        extra_lines += [
            "## The PostgreSQL side\n",
            f"PostgreSQL server (postmaster and its backends) CPU during the `postgres` runs: "
            f"{check['pg_server_cpu_s']:.1f} s = **{check['pg_server_cpu_us_per_req']:.1f} µs per request** "
            f"(on the same 2 cores as wrk, nginx and aiproxyd).\n",
            f"Rows in PostgreSQL after the runs: {rows} ({distinct} distinct request ids); the `postgres` "
            f"node's counters: committed {m.get('aiproxy_ledger_committed_total')}, written to PostgreSQL "
            f"{m.get('aiproxy_ledger_db_committed_total')}, spooled {m.get('aiproxy_ledger_spooled_total')}, "
            f"dropped {m.get('aiproxy_ledger_dropped_total')}, db_up {m.get('aiproxy_ledger_db_up')}: "
            f"**{'every counted request is a row' if ok else 'MISMATCH'}**.\n",
        ]
    finally:
        b.pr.stop_all()
        if pg:
            pg.stop()
    text = b.report().replace(f"Command: `bench/run.sh {b.mode}`", "Command: `bench/ledger-pg.sh`")
    text += "\n" + "\n".join(extra_lines)
    print(text)
    os.makedirs(os.path.join(B.BENCH, "results"), exist_ok=True)
    path = os.path.join(B.BENCH, "results", time.strftime("%Y%m%d-%H%M%S") + "-ledger_pg.md")
    with open(path, "w") as f:
        f.write(text + "\n")
    with open(path[:-3] + ".json", "w") as f:
        json.dump(b.res, f, indent=1, default=str)
    B.log(f"wrote {path}")
    if os.environ.get("BENCH_KEEP_TMP") != "1":
        shutil.rmtree(b.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
