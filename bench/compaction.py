"""`make bench`, compaction part (issue #15): what the writer's compaction ladder buys a cold
reader's open, and what it costs the writer's commits, through bench.py's proxy (a fixed
delay per request to the store, counted by kind).

    compaction.py --root REPO [--delay-ms 20] [--rate 10] [--hour-s 120] [--probe-s 15]
                  [--latency-s 60] [--opens 5] [--lib PATH] [--out bench/results-compaction.json]

Runs with the moto venv's Python (moto, boto3). Starts moto on 127.0.0.1 and two proxies in
front of it, the writer's (which also logs each request) and the readers'. A writer is a fresh
/usr/bin/python3 process (this file, `--worker write`) making `--rate` commits a second, each
a ~200-byte row into t(id, k, body), indexed on k, and a counter update, `sync=commit`.
  1. An hour, time-scaled: the writer runs `--hour-s` (120 s) with Litestream's defaults
     divided by 3600/hour-s (30): compaction=1s,10s,2m, l0_retention=10s, snapshot_interval
     and retention 48m. Every `--probe-s` a cold reader in a fresh process (`--worker read`)
     opens it and runs SELECT count(*) FROM t: time, requests, ltx_stats "files" (the files
     the newest pages come from). The driver lists the store beside each probe and every
     second for the files a restore plan takes (the open reads each). Then the end state, as
     `litestream restore` 0.5.17 gives it, is written as a new replica in one transaction
     (the sqlite3 backup API into a `write=1` connection: TXID 1, one file: "a fresh
     snapshot"), and both are cold-opened `--opens` times, alternately, with no writer.
  2. Commit latency: the same writer for `--latency-s`, once with the scaled ladder and once
     with compaction=off: median, p99, requests per commit by kind, and the requests the
     writer's proxy had under way during the slowest commits.
Prints a table. Not a test: nothing here passes or fails.
"""

import argparse
import contextlib
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
import urllib.parse
import urllib.request
from pathlib import Path

SCHEMA = ("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, body TEXT); CREATE INDEX t_k ON t(k);"
          "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO counter VALUES (1, 0);")
LITESTREAM = ".tools/litestream-0.5.17/bin/litestream"
DEFAULTS_S = {"compaction": (30, 300, 3600), "l0_retention": 300, "snapshot_interval": 86400, "retention": 86400}


# --- workers: /usr/bin/python3, whose sqlite3 can load extensions ---------------------------

def stats(proxy: str) -> dict:
    with urllib.request.urlopen(proxy + "/__stats") as r:
        return json.load(r)


def delta(s0: dict, s1: dict) -> dict:
    return {k: s1[k] - s0.get(k, 0) for k in s1 if s1[k] != s0.get(k, 0)}


def worker(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("write", "read", "copy"))
    for opt in ("--lib", "--uri", "--proxy"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=10)
    ap.add_argument("--src", help="copy: the database to write as the replica")
    a = ap.parse_args(argv)
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(a.lib)
    r0, t0 = stats(a.proxy), time.perf_counter()
    conn = sqlite3.connect(a.uri, uri=True, isolation_level=None, timeout=10)
    one = lambda sql: conn.execute(sql).fetchone()[0]
    if a.mode == "read":
        one("SELECT count(*) FROM sqlite_master")  # the open: listing, plan, headers, schema
        t1, ra = time.perf_counter(), stats(a.proxy)
        rows = one("SELECT count(*) FROM t")
        t2, r1 = time.perf_counter(), stats(a.proxy)
        st = json.loads(one("PRAGMA ltx_stats"))
        print(json.dumps({"open_ms": (t2 - t0) * 1000, "schema_ms": (t1 - t0) * 1000, "count_ms": (t2 - t1) * 1000,
                          "rows": rows, "files": st["files"], "txid": int(st["txid"], 16),
                          "schema_requests": ra["total"] - r0["total"], "requests": delta(r0, r1)}))
    elif a.mode == "copy":
        sqlite3.connect(a.src).backup(conn)  # one step: every page in one transaction, one COMMIT
        print(json.dumps({"copy_ms": (time.perf_counter() - t0) * 1000, "txid": int(one("PRAGMA ltx_txid"), 16),
                          "rows": one("SELECT count(*) FROM t")}))
    else:
        conn.executescript("BEGIN;" + SCHEMA + "COMMIT;")
        rng, commits, errors = random.Random(1), [], []
        s0, t0 = stats(a.proxy), time.perf_counter()
        nxt, i = t0, 0
        while time.perf_counter() - t0 < a.seconds:
            time.sleep(max(0.0, nxt - time.perf_counter()))
            i += 1
            body = "".join(rng.choices("abcdefghij klmnopqrstuvwxyz", k=200))
            t, wall = time.perf_counter(), time.time()
            try:
                conn.execute("BEGIN")
                conn.execute("INSERT INTO t VALUES (?, ?, ?)", (i, rng.randrange(1 << 30), body))
                conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                conn.execute("COMMIT")
                commits.append((round(wall, 4), round((time.perf_counter() - t) * 1000, 2)))
            except sqlite3.Error as e:
                errors.append(f"commit {i}: {getattr(e, 'sqlite_errorname', type(e).__name__)}: {e}")
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            nxt = max(nxt + 1 / a.rate, time.perf_counter())  # no catching up after a slow commit
        wall_s, s1 = time.perf_counter() - t0, stats(a.proxy)
        print(json.dumps({"commits": commits, "errors": errors, "wall_s": wall_s, "requests": delta(s0, s1),
                          "compaction": json.loads(one("PRAGMA ltx_compaction"))}))
    conn.close()


# --- the driver: the moto venv's Python ----------------------------------------------------

def scaled_ladder(scale: float) -> str:
    """Litestream's defaults divided by `scale`, as URI parameters."""
    units = (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
    f = lambda s: next(f"{round(s * 1000 / scale) // n}{u}" for u, n in units if round(s * 1000 / scale) % n == 0)
    return f"compaction={','.join(f(s) for s in DEFAULTS_S['compaction'])}&" + "&".join(
        f"{k}={f(v)}" for k, v in DEFAULTS_S.items() if k != "compaction")


def med(xs: list) -> float | None:
    return statistics.median(xs) if xs else None


def listing(s3, name: str) -> dict:
    """The replica's files per level, and how many a restore plan takes (Litestream's rule:
    the newest snapshot, then each time the file of levels 0-8 that continues the chain and
    reaches furthest)."""
    files = [(int(o["Key"].split("/")[-2], 16), *(int(x, 16) for x in o["Key"].split("/")[-1][:-4].split("-")))
             for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=f"{name}/")
             for o in page.get("Contents", [])]
    snaps = [f for f in files if f[0] == 9]
    at, plan = (max(f[2] for f in snaps), 1) if snaps else (0, 0)
    while nxt := [f for f in files if f[0] < 9 and f[1] <= at + 1 and f[2] > at]:
        at, plan = max(nxt, key=lambda f: (f[2], -f[1], f[0]))[2], plan + 1
    levels = {str(lv): sum(1 for f in files if f[0] == lv) for lv in sorted({f[0] for f in files})}
    return {"plan": plan, "levels": levels}


def main() -> None:
    import boto3
    from bench import Proxy, ProxyHandler, free_port, run_measure, stop_all, wait_port

    class LoggedHandler(ProxyHandler):
        """bench.py's handler, also logging (start, end, method, key or LIST prefix) per request."""
        def _forward(self) -> None:
            t = time.time()
            super()._forward()
            path, _, query = self.path.partition("?")
            if path != "/__stats":
                q = urllib.parse.parse_qs(query)
                self.server.log.append((t, time.time(), "LIST" if "list-type" in q else self.command,
                                        q["prefix"][0] if "list-type" in q else path.split("/", 2)[-1]))
        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--rate", type=float, default=10, help="commits a second")
    ap.add_argument("--hour-s", type=float, default=120, help="the scaled hour: Litestream's ladder / (3600 / this)")
    ap.add_argument("--probe-s", type=float, default=15, help="a cold reader this often while the writer runs")
    ap.add_argument("--opens", type=int, default=5, help="cold opens of each replica after the writer stops")
    ap.add_argument("--latency-s", type=float, default=60)
    ap.add_argument("--lib", type=Path, help="the ltxvfs library to measure (default: target/release)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    root = args.root.resolve()
    lib = str(args.lib or root / "target/release/libltxvfs")
    scale = 3600 / args.hour_s
    ladder = scaled_ladder(scale)
    env = {k: v for k, v in os.environ.items()
           if k != "AWS_CA_BUNDLE" and not k.startswith(("LITESTREAM_", "LTXVFS_"))}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    me = ["/usr/bin/python3", str(Path(__file__).resolve()), "--worker"]
    procs: list[subprocess.Popen] = []
    res: dict = {"delay_ms": args.delay_ms, "rate": args.rate, "hour_s": args.hour_s, "scale": scale,
                 "ladder": ladder, "lib": lib}
    with tempfile.TemporaryDirectory(prefix="ltxvfs-bench-compaction-") as tmp:
        tmp = Path(tmp)
        try:
            moto_port, wport, rport = free_port(), free_port(), free_port()
            procs.append(subprocess.Popen([str(root / ".tools/moto/bin/moto_server"), "-H", "127.0.0.1", "-p",
                                           str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(moto_port)
            wproxy, rproxy = (Proxy(p, moto_port, args.delay_ms / 1000) for p in (wport, rport))
            wproxy.RequestHandlerClass, wproxy.log = LoggedHandler, []
            for p in (wproxy, rproxy):
                threading.Thread(target=p.serve_forever, daemon=True).start()
            moto = f"http://127.0.0.1:{moto_port}"
            s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="bench",
                              aws_secret_access_key="bench-secret")
            s3.create_bucket(Bucket="bench")
            wurl, rurl = f"http://127.0.0.1:{wport}", f"http://127.0.0.1:{rport}"

            def uri(name: str, proxy: str, extra: str = "") -> str:
                url = f"s3://bench/{name}%3Fendpoint={proxy}%26region=us-east-1%26forcePathStyle=true"
                return f"file:app.db?vfs=ltx{extra}&replica={url}"

            def read(name: str) -> dict:
                return run_measure(me + ["read", "--lib", lib, "--uri", uri(name, rurl), "--proxy", rurl], env, 120)

            def write(name: str, seconds: float, extra: str) -> subprocess.Popen:
                print(f"writer {name}: {seconds:g} s at {args.rate:g} commits/s, {extra}", file=sys.stderr)
                return subprocess.Popen(me + ["write", "--lib", lib, "--uri", uri(name, wurl, "&write=1&" + extra),
                                              "--proxy", wurl, "--seconds", str(seconds), "--rate", str(args.rate)],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

            def finish(p: subprocess.Popen) -> dict:  # the JSON line a writer printed last
                out, err = p.communicate(timeout=300)
                return json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err[-400:]}

            # 1. The scaled hour: cold readers every probe_s, the store's listing every second.
            w, t0, probes, samples = write("hour", args.hour_s, ladder), time.time(), [], []
            top_ms = round(DEFAULTS_S["compaction"][-1] * 1000 / scale)
            res["top_level_first_turn_s"] = round((top_ms - time.time() * 1000 % top_ms) / 1000, 1)
            while w.poll() is None:
                time.sleep(max(0.0, t0 + len(samples) + 1 - time.time()))
                samples.append([round(time.time() - t0, 1), listing(s3, "hour")["plan"]])
                if w.poll() is None and time.time() - t0 >= args.probe_s * (len(probes) + 1):
                    got = {"at_s": round(time.time() - t0, 1), **listing(s3, "hour"), **read("hour")}
                    print(f"  probe {got}", file=sys.stderr)
                    probes.append(got)
            res["hour_writer"], log = summary(finish(w), wproxy.log), list(wproxy.log)
            for smp in samples:  # the writer's deletes (POSTs) and level-1 files made in the second before
                win = [(m, k) for a, _, m, k in log if t0 + smp[0] - 1 < a <= t0 + smp[0]]
                smp += [sum(m == "POST" for m, _ in win), sum(m == "PUT" and "/0001/" in k for m, k in win)]
            res |= {"probes": probes, "samples": samples}
            ok = [p for p in probes if "files" in p]
            for key, xs in (("plan_files", [p["plan"] for p in ok]), ("plan_files_1s", [s[1] for s in samples]),
                            ("stats_files", [p["files"] for p in ok]),
                            ("open_ms_while_writing", [p["open_ms"] for p in ok])):
                res[f"{key}_median"], res[f"{key}_max"] = med(xs), max(xs)
            # The end state, restored, then written as one snapshot.
            (tmp / "ls.yml").write_text(
                f"dbs:\n  - path: {tmp}/hour.db\n    replica:\n      type: s3\n      bucket: bench\n      path: hour\n"
                f"      endpoint: {moto}\n      region: us-east-1\n      force-path-style: true\n")
            r = subprocess.run([str(root / LITESTREAM), "restore", "-config", str(tmp / "ls.yml"), "-o",
                                str(tmp / "restored.db"), str(tmp / "hour.db")], env=env, capture_output=True,
                               text=True, timeout=120)
            if r.returncode != 0:
                sys.exit(f"litestream restore: {r.stderr[-400:]}")
            res["fresh_copy"] = run_measure(me + ["copy", "--lib", lib, "--proxy", wurl, "--src",
                                                  str(tmp / "restored.db"), "--uri",
                                                  uri("fresh", wurl, "&write=1&compaction=off")], env, 120)
            runs = [(name, read(name)) for _ in range(args.opens) for name in ("hour", "fresh")]
            res["opens_after"] = opens = {n: [g for m, g in runs if m == n] for n in ("hour", "fresh")}
            for name, got in opens.items():
                good = [g for g in got if "open_ms" in g]
                res[name] = {"plan_files": listing(s3, name)["plan"], "stats_files": good[-1]["files"],
                             **{f"{k}_median": med([g[k] for g in good]) for k in ("open_ms", "schema_ms", "count_ms")},
                             **{f"{k}_median": med([g["requests"].get(k, 0) for g in good]) for k in ("total", "GET")}}
            res["open_ratio_after"] = res["hour"]["open_ms_median"] / res["fresh"]["open_ms_median"]
            res["open_ratio_while_writing"] = res["open_ms_while_writing_median"] / res["fresh"]["open_ms_median"]

            # 2. Commit latency with and without the ladder.
            for name, extra in (("on", ladder), ("off", "compaction=off")):
                wproxy.log.clear()
                res[name] = summary(finish(write(name, args.latency_s, extra)), wproxy.log)
                res[name]["store_end"] = listing(s3, name)
            if res["on"].get("p99_ms") and res["off"].get("p99_ms"):
                res["p99_ratio"] = res["on"]["p99_ms"] / res["off"]["p99_ms"]
        finally:
            stop_all(procs, 10)
    report(res, args)


def summary(got: dict, log: list) -> dict:
    """Commit figures of a writer's output, and the requests under way during its 3 slowest."""
    if "commits" not in got:
        return {"error": str(got.get("error"))[-400:]}
    ms, req = sorted(c[1] for c in got["commits"]), got["requests"]
    n, slow = len(ms), []
    for start, took in sorted(got["commits"], key=lambda c: -c[1])[:3]:
        slow.append({"at": start, "ms": took, "requests": [
            [round((a - start) * 1000), round((b - a) * 1000), m, k]
            for a, b, m, k in list(log) if a < start + took / 1000 and b > start]})
    return {"commits": n, "errors": len(got["errors"]), "first_errors": got["errors"][:3],
            "commits_per_s": n / got["wall_s"], "median_ms": med(ms),
            "p99_ms": ms[max(0, math.ceil(n * 0.99) - 1)] if ms else None, "max_ms": max(ms, default=None),
            "requests_per_commit": req.get("total", 0) / n if n else None,
            **{f"requests_per_commit_{k}": v / n for k, v in req.items() if k != "total" and n},
            "compaction": got["compaction"], "slowest": slow}


def report(res: dict, args) -> None:
    from bench import print_comparison
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\ncompaction (issue #15): {args.rate:g} commits/s, sync=commit, {args.delay_ms:g} ms per request; "
          f"an hour scaled by 1/{res['scale']:g} ({args.hour_s:g} s): {res['ladder']}; the top level's "
          f"interval first turned {res['top_level_first_turn_s']:g} s in")
    print("\nwhile writing, cold reader (fresh process): plan = files a restore plan takes (the listing), "
          "files = ltx_stats' (files holding the newest pages)")
    for p in res["probes"]:
        print(f"  {p['at_s']:>6} s  txid {p.get('txid', '?'):>5}  plan {p['plan']:>3}  files {p.get('files', '?'):>3}  "
              f"open+count {p.get('open_ms', 0):5.0f} ms  {p.get('requests', {}).get('total', '?'):>3} req  "
              f"store {p['levels']}  {p.get('error', '')}")
    print("every second: the plan's files (listing); the writer's deletes (POSTs) and level-1 files made in it")
    for i in range(0, len(res["samples"]), 30):
        for label, j in (("plan", 1), ("deletes", 2), ("level-1 files", 3)):
            row = "".join(f"{s[j]:>4}" for s in res["samples"][i:i + 30])
            print(f"  {label:>13} from {res['samples'][i][0]:5.0f} s:{row}")
    print(f"\ncold opens after the writer stopped, median of {args.opens}")
    print_comparison({n: res[n] for n in ("hour", "fresh")}, ["hour", "fresh"], ("hour", "fresh"))
    for k in [k for k in res if k.endswith(("_median", "_max")) or k.startswith("open_ratio")]:
        print(f"{k:34} {res[k]:12.2f}")
    print("\ncommit latency, compaction on (scaled ladder) vs off (and the scaled hour's writer, probed):")
    names = ["on", "off", "hour_writer"]
    print_comparison({n: {k: v for k, v in res[n].items() if not isinstance(v, (dict, list))} for n in names},
                     names, ("on", "off"))
    for n, s in [(n, s) for n in ("on", "off") for s in res[n].get("slowest", [])[:2]]:
        print(f"{n}: a {s['ms']:.0f} ms commit; requests under way (start, took ms; method, key): {s['requests'][:12]}")
    if args.out:
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main()
