#!/usr/bin/python3
"""One benchmark measurement in a fresh process (run by bench.py with the system python,
whose sqlite3 can load extensions). Prints one JSON object.

    measure.py SCENARIO --vfs ltx|litestream|local --lib PATH --url URL --db PATH --proxy URL
"""
import argparse
import json
import random
import resource
import sqlite3
import statistics
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("scenario")
ap.add_argument("--vfs", required=True)
ap.add_argument("--lib")
ap.add_argument("--url")
ap.add_argument("--db", required=True, help="the primary (local) database file")
ap.add_argument("--proxy", required=True)
ap.add_argument("--seed", type=int, default=1)
args = ap.parse_args()


def requests():
    with urllib.request.urlopen(args.proxy + "/__stats") as r:
        return json.load(r)["total"]


def load():
    t = time.perf_counter()
    if args.vfs != "local":
        c = sqlite3.connect(":memory:")
        c.enable_load_extension(True)
        c.load_extension(args.lib)
    return (time.perf_counter() - t) * 1000


def connect():
    if args.vfs == "ltx":
        return sqlite3.connect(f"file:app.db?vfs=ltx&replica={args.url}", uri=True, isolation_level=None)
    if args.vfs == "litestream":
        return sqlite3.connect("file:app.db?vfs=litestream", uri=True, isolation_level=None)
    return sqlite3.connect(f"file:{args.db}.copy?mode=ro", uri=True, isolation_level=None)


def timed(f):
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1000


out = {}
rng = random.Random(args.seed)
if args.scenario == "cold":
    r0 = requests()
    out["load_ms"] = load()
    t = time.perf_counter()
    conn = connect()
    conn.execute("SELECT * FROM items WHERE id = 1").fetchone()
    out["open_first_row_ms"] = (time.perf_counter() - t) * 1000
    out["open_first_row_requests"] = requests() - r0
elif args.scenario == "lookups":
    load()
    conn = connect()
    conn.execute("SELECT * FROM items WHERE id = 1").fetchone()
    n = conn.execute("SELECT max(id) FROM items").fetchone()[0]
    ids = [rng.randint(1, n) for _ in range(1000)]
    for phase in ("first", "again"):
        r0 = requests()
        times = [timed(lambda i=i: conn.execute("SELECT * FROM items WHERE id = ?", (i,)).fetchone()) for i in ids]
        out[f"lookup_{phase}_median_ms"] = statistics.median(times)
        out[f"lookup_{phase}_p99_ms"] = sorted(times)[989]
        out[f"lookup_{phase}_requests_each"] = (requests() - r0) / len(ids)
    r0 = requests()
    scans = [timed(lambda c=c, k=k: conn.execute(
        "SELECT count(*), sum(length(name)) FROM items WHERE cat = ? AND k BETWEEN ? AND ?",
        (c, k, k + 20000)).fetchone()) for c, k in [(rng.randint(0, 9), rng.randint(0, 900000)) for _ in range(20)]]
    out["range_scan_median_ms"] = statistics.median(scans)
    out["range_scan_requests_each"] = (requests() - r0) / 20
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
elif args.scenario == "count":
    load()
    conn = connect()
    for i in (1, 2, 3):
        r0 = requests()
        ms = timed(lambda: conn.execute("SELECT count(*) FROM items").fetchone())
        if i != 2:
            out[f"count_{i}_ms"] = ms
            out[f"count_{i}_requests"] = requests() - r0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
elif args.scenario.startswith("idle"):
    n = int(args.scenario[4:])
    load()
    conns = [connect() for _ in range(n)]
    for c in conns:
        c.execute("SELECT id FROM items WHERE id = 1").fetchone()
    time.sleep(2)
    r0 = requests()
    time.sleep(10)
    out[f"idle_{n}_requests_per_s"] = (requests() - r0) / 10
elif args.scenario == "lag":
    # Opened before the extension loads: once Litestream's VFS is loaded, every later open
    # of another database fails ("automatic extension loading failed").
    primary = sqlite3.connect(args.db, isolation_level=None, timeout=10)
    load()
    conn = connect()
    lags = []
    for i in range(5):
        nonce = rng.randint(1, 1 << 60)
        t0 = time.perf_counter()
        primary.execute("UPDATE meta SET v = ? WHERE id = 1", (nonce,))
        while conn.execute("SELECT v FROM meta WHERE id = 1").fetchone()[0] != nonce:
            if time.perf_counter() - t0 > 30:
                lags.append(float("inf"))
                break
            time.sleep(0.01)
        else:
            lags.append(time.perf_counter() - t0)
    out["lag_median_s"] = statistics.median(lags)
print(json.dumps(out))
