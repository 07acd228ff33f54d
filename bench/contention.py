"""`make bench`, contention part (issue #26): several writer processes of one replica, each
moving money between 8 accounts, through bench.py's proxy (a fixed delay per request to moto).
With the writers' lease (the default) a second writer's BEGIN IMMEDIATE waits for its turn
(SQLITE_BUSY, retried by busy_timeout) before its work; without it (`lease_ttl=off`) writers
meet only at COMMIT (SQLITE_BUSY_SNAPSHOT, after the work).

    contention.py --root REPO [--delay-ms 20] [--writers 3] [--seconds 20] [--lone 200]
                  [--configs lease,no-lease] [--no-restart] [--lib PATH]
                  [--out bench/results-contention.json]

Runs with the moto venv's Python. Per configuration: one fresh replica (s3://bench/<config>-N),
then `--writers` /usr/bin/python3 processes (this file, `--worker`) for `--seconds`, each
repeating a transfer (BEGIN IMMEDIATE; read a balance; two UPDATEs; an INSERT; COMMIT) and
retrying a refused one up to 40 times; then one writer alone for `--lone` commits. Reports,
per writer, commits per second, retries, transfers given up, committed latency (first try to
acknowledged) p50 / p99 / max; the share of conflicts found before the work (a BEGIN that
waited, counted by `PRAGMA ltx_lease`'s `busy`, against COMMITs refused after it); the lone
writer's p50 and requests per commit. Half way through, the last writer is SIGKILLed and
started again (`--no-restart`: not): its restarted self's commits in its half are set against
the busiest writer's in the whole run (a restarted writer must not be starved). The totals are
checked at the end (the sum of the balances, one row per acknowledged transfer; the killed
writer's in-flight transfer may be there or not). Not a test: nothing here passes or fails.
"""

import argparse
import json
import math
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

SCHEMA = ("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER);"
          "CREATE TABLE transfers(writer TEXT, seq INTEGER, PRIMARY KEY (writer, seq));"
          + "".join(f"INSERT INTO accounts VALUES ({i}, 1000);" for i in range(8)))
RETRIES = 40


def pct(xs: list[float], p: float):
    xs = sorted(xs)
    return round(xs[max(0, math.ceil(len(xs) * p) - 1)], 1) if xs else None


def lease_busy(conn: sqlite3.Connection) -> int:
    got = json.loads(conn.execute("PRAGMA ltx_lease").fetchone()[0])
    return got.get("busy", 0)


def worker(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--commits", type=int, default=0)
    ap.add_argument("--setup", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--proxy")
    args = ap.parse_args(argv)
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(args.lib)
    conn = sqlite3.connect(args.uri, uri=True, isolation_level=None, timeout=10)
    if args.setup:
        conn.executescript("BEGIN;" + SCHEMA + "COMMIT;")
        return
    if args.check:
        total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
        rows = conn.execute("SELECT writer, count(*) FROM transfers GROUP BY writer").fetchall()
        print(json.dumps({"sum": total, "rows": dict(rows)}))
        return
    rng = random.Random(args.name)

    def stats():
        if not args.proxy:
            return {}
        with urllib.request.urlopen(args.proxy + "/__stats") as r:
            return json.load(r)

    lat, retries, gave_up, waited_begins, after_work = [], 0, 0, 0, 0
    s0, t0 = stats(), time.perf_counter()
    seq = 0
    while (time.perf_counter() - t0 < args.seconds) or seq < args.commits:
        seq += 1
        a, b = rng.sample(range(8), 2)
        amount = rng.randrange(1, 50)
        start = time.perf_counter()
        for attempt in range(RETRIES + 1):
            busy0 = lease_busy(conn)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                waited_begins += 1
                retries += 1
                continue
            if lease_busy(conn) > busy0:
                waited_begins += 1
            try:
                conn.execute("SELECT balance FROM accounts WHERE id = ?", (a,)).fetchone()
                conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
                conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
                conn.execute("INSERT INTO transfers VALUES (?, ?)", (args.name, seq))
                conn.execute("COMMIT")
                lat.append((time.perf_counter() - start) * 1000)
                print(f"ack {seq}", flush=True)
                break
            except sqlite3.OperationalError:
                after_work += 1
                retries += 1
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
        else:
            gave_up += 1
    wall = time.perf_counter() - t0
    s1 = stats()
    req = s1.get("total", 0) - s0.get("total", 0)
    print(json.dumps({
        "commits": len(lat), "commits_per_s": round(len(lat) / wall, 2), "retries": retries,
        "gave_up": gave_up, "waited_begins": waited_begins, "refused_after_work": after_work,
        "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": pct(lat, 1.0),
        "requests_per_commit": round(req / len(lat), 3) if lat and args.proxy else None,
        "lease": json.loads(conn.execute("PRAGMA ltx_lease").fetchone()[0]),
    }), flush=True)


def main() -> None:
    from bench import Proxy, free_port, stop_all, wait_port
    import boto3

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--lone", type=int, default=200)
    ap.add_argument("--configs", default="lease,no-lease")
    ap.add_argument("--no-restart", action="store_true")
    ap.add_argument("--lib", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    root = args.root.resolve()
    lib = str(args.lib or root / "target/release/libltxvfs")
    env = {k: v for k, v in os.environ.items()
           if k != "AWS_CA_BUNDLE" and not k.startswith(("LITESTREAM_", "LTXVFS_"))}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    me = ["/usr/bin/python3", str(Path(__file__).resolve()), "--worker", "--lib", lib]
    procs: list[subprocess.Popen] = []
    results: dict[str, dict] = {}
    try:
        moto_port, proxy_port = free_port(), free_port()
        procs.append(subprocess.Popen([str(root / ".tools/moto/bin/moto_server"), "-H", "127.0.0.1",
                                       "-p", str(moto_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(moto_port)
        proxy = Proxy(proxy_port, moto_port, args.delay_ms / 1000)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench-secret").create_bucket(Bucket="bench")
        proxy_url = f"http://127.0.0.1:{proxy_port}"

        def uri(name: str, extra: str) -> str:
            url = f"s3://bench/{name}%3Fendpoint={proxy_url}%26region=us-east-1%26forcePathStyle=true"
            return f"file:{name}.db?vfs=ltx&write=1&poll=200ms{extra}&replica={url}"

        def run(cmd: list[str], timeout: float) -> dict:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
            return json.loads(line) if line else {"error": out.stderr[-400:]}

        for config in args.configs.split(","):
            extra = "&lease_ttl=off" if config == "no-lease" else ""
            res: dict = {}
            u = uri(f"{config}-many", extra)
            subprocess.run(me + ["--uri", u, "--name", "setup", "--setup"], env=env, check=True)
            print(f"{config}: {args.writers} writers for {args.seconds:g} s ...", file=sys.stderr)
            def start(name: str, seconds: float) -> subprocess.Popen:
                return subprocess.Popen(me + ["--uri", u, "--name", name, "--seconds", str(seconds)],
                                        env=env, stdout=subprocess.PIPE, text=True)

            def last_json(out: str) -> dict:
                lines = [line for line in out.strip().splitlines() if line.startswith("{")]
                return json.loads(lines[-1]) if lines else {"error": "no output"}

            ws = [start(f"w{i}", args.seconds) for i in range(args.writers)]
            killed_acks = None
            if not args.no_restart and args.writers > 1:
                time.sleep(args.seconds / 2)
                victim = ws.pop()
                victim.kill()
                out, _ = victim.communicate(timeout=60)
                killed_acks = sum(1 for line in out.splitlines() if line.startswith("ack "))
                ws.append(start("restarted", args.seconds / 2))
            per = []
            for w in ws:
                out, _ = w.communicate(timeout=args.seconds * 3 + 120)
                per.append(last_json(out))
            res["writers"] = per
            if killed_acks is not None:
                res["killed_acks"] = killed_acks
                res["restarted_commits"] = per[-1].get("commits")
                res["busiest_commits"] = max(p.get("commits", 0) for p in per[:-1])
            rates = [p.get("commits_per_s", 0) for p in per]
            waited = sum(p.get("waited_begins", 0) for p in per)
            refused = sum(p.get("refused_after_work", 0) for p in per)
            res["slowest_rate_share"] = round(min(rates) / max(rates), 3) if max(rates) else None
            res["gave_up"] = sum(p.get("gave_up", 0) for p in per)
            res["p99_ms_max"] = max((p.get("p99_ms") or 0) for p in per)
            res["max_ms"] = max((p.get("max_ms") or 0) for p in per)
            res["conflicts_before_work_share"] = round(waited / (waited + refused), 3) if waited + refused else None
            res["check"] = run(me + ["--uri", u, "--name", "check", "--check"], 60)
            names = [f"w{i}" for i in range(len(per))]
            if killed_acks is not None:
                names[-1] = "restarted"
            acked = dict(zip(names, (p.get("commits") for p in per)))
            rows = dict(res["check"].get("rows") or {})
            victim_rows = rows.pop(f"w{args.writers - 1}", 0) if killed_acks is not None else 0
            res["check_ok"] = (res["check"].get("sum") == 8000 and rows == acked
                               and (killed_acks is None or victim_rows - killed_acks in (0, 1)))
            u = uri(f"{config}-lone", extra)
            subprocess.run(me + ["--uri", u, "--name", "setup", "--setup"], env=env, check=True)
            print(f"{config}: one writer, {args.lone} commits ...", file=sys.stderr)
            res["lone"] = run(me + ["--uri", u, "--name", "lone", "--commits", str(args.lone),
                                    "--proxy", proxy_url], 300)
            results[config] = res
    finally:
        stop_all(procs, 10)

    print(f"\ncontention: {args.writers} writer processes for {args.seconds:g} s, "
          f"{args.delay_ms:g} ms per request (moto)")
    for config, r in results.items():
        print(f"\n[{config}] slowest/fastest rate {r['slowest_rate_share']}, gave up {r['gave_up']}, "
              f"p99 {r['p99_ms_max']} ms, max {r['max_ms']} ms, conflicts before the work "
              f"{r['conflicts_before_work_share']}, totals check {'ok' if r['check_ok'] else r['check']}")
        if "killed_acks" in r:
            print(f"  last writer SIGKILLed half way after {r['killed_acks']} commits; restarted, it made "
                  f"{r['restarted_commits']} in its {args.seconds / 2:g} s vs the busiest's {r['busiest_commits']} "
                  f"in {args.seconds:g} s")
        for i, p in enumerate(r["writers"]):
            print(f"  w{i}: {p.get('commits')} commits, {p.get('commits_per_s')}/s, retries {p.get('retries')}, "
                  f"waited BEGINs {p.get('waited_begins')}, refused after work {p.get('refused_after_work')}, "
                  f"p50/p99/max {p.get('p50_ms')}/{p.get('p99_ms')}/{p.get('max_ms')} ms")
        lone = r["lone"]
        print(f"  lone writer: p50 {lone.get('p50_ms')} ms, p99 {lone.get('p99_ms')} ms, "
              f"{lone.get('requests_per_commit')} requests per commit")
    if args.out:
        args.out.write_text(json.dumps({"delay_ms": args.delay_ms, "writers": args.writers,
                                        "seconds": args.seconds, "lib": lib, "results": results},
                                       indent=2) + "\n")
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main()
