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
import threading
import urllib.parse
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("scenario")
ap.add_argument("--vfs", required=True)
ap.add_argument("--lib")
ap.add_argument("--url")
ap.add_argument("--db", required=True, help="the primary (local) database file")
ap.add_argument("--proxy", required=True)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--follow-s", type=float, default=60, help="scale: how long to follow")
ap.add_argument("--rows", type=int, default=0, help="scale: rows in items")
ap.add_argument("--tenants", type=int, default=0, help="tenants: how many (URL and db hold {i})")
args = ap.parse_args()


def requests():
    if not args.proxy:
        return 0
    with urllib.request.urlopen(args.proxy + "/__stats") as r:
        return json.load(r)["total"]


def proxy_counts():
    with urllib.request.urlopen(args.proxy + "/__stats") as r:
        return json.load(r)


def tenant_connect(i):
    if args.vfs == "local":  # the same databases as plain files: SQLite's own cost
        return sqlite3.connect(f"file:{args.db.format(i=i)}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
    url = urllib.parse.quote(args.url.format(i=i), safe=":/?=")
    param = "replica" if args.vfs == "ltx" else "replica_url"
    return sqlite3.connect(f"file:t{i}.db?vfs={'ltx' if args.vfs == 'ltx' else 'litestream'}&{param}={url}",
                           uri=True, isolation_level=None, check_same_thread=False)


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def lookups(conn, n, prefix):
    top = args.rows or conn.execute("SELECT max(id) FROM items").fetchone()[0]
    ids = [rng.randint(1, top) for _ in range(n)]
    r0 = requests()
    times = [timed(lambda i=i: conn.execute("SELECT * FROM items WHERE id = ?", (i,)).fetchone()) for i in ids]
    out[f"{prefix}_median_ms"] = statistics.median(times)
    out[f"{prefix}_p99_ms"] = sorted(times)[int(n * 0.99) - 1]
    out[f"{prefix}_requests_each"] = (requests() - r0) / n


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
elif args.scenario in ("lookups_cold", "lookups_5s"):
    # 300 random lookups right after a cold open (first row read), or 5 s after it.
    load()
    conn = connect()
    conn.execute("SELECT * FROM items WHERE id = 1").fetchone()
    if args.scenario == "lookups_5s":
        time.sleep(5)
    lookups(conn, 300, args.scenario)
elif args.scenario == "scale":
    load()
    rss0 = rss_mb()
    t = time.perf_counter()
    conn = connect()
    conn.execute("SELECT * FROM items WHERE id = 1").fetchone()
    out["open_first_row_ms"] = (time.perf_counter() - t) * 1000
    out["rss_open_adds_mb"] = rss_mb() - rss0
    out["rss_before_open_mb"] = rss0
    out["peak_rss_after_open_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.vfs == "ltx":
        st = json.loads(conn.execute("PRAGMA ltx_stats").fetchone()[0])
        out["page_map_bytes_per_page"] = st["page_map_bytes"] / max(st["pages"], 1)
    lookups(conn, 300, "lookup")
    # Following: the updater commits 2 transactions a second; one small row read every
    # 200 ms keeps the reader following without growing its cache.
    rss1, cpu1 = rss_mb(), cpu_s()
    st0 = json.loads(conn.execute("PRAGMA ltx_stats").fetchone()[0]) if args.vfs == "ltx" else {}
    seen = set()
    end = time.perf_counter() + args.follow_s
    while time.perf_counter() < end:
        conn.execute("SELECT v FROM meta WHERE id = 1").fetchone()
        if args.vfs == "ltx":
            seen.add(conn.execute("PRAGMA ltx_txid").fetchone()[0])
        time.sleep(0.2)
    out["follow_cpu_s"] = cpu_s() - cpu1
    out["follow_rss_growth_mb"] = rss_mb() - rss1
    if args.vfs == "ltx":
        out["follow_txids_seen"] = len(seen)
        st1 = json.loads(conn.execute("PRAGMA ltx_stats").fetchone()[0])
        # What following fetched: a full-image file (Litestream writes one after some
        # checkpoints) costs a whole index, where a commit costs a page or two.
        out["follow_mb_fetched"] = (st1["bytes_fetched"] - st0["bytes_fetched"]) / 1e6
        out["follow_advances"] = st1["follow_advances"] - st0["follow_advances"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
elif args.scenario == "tenants":
    n = args.tenants
    stale = list(range(1, min(n, 6)))
    # Opened before the extension loads (Litestream's VFS breaks later opens of others).
    primaries = {i: sqlite3.connect(args.db.format(i=i), isolation_level=None, timeout=10) for i in stale}
    load()
    rss0 = rss_mb()
    conns = {}

    def open_one(i):
        c = tenant_connect(i)
        c.execute("SELECT count(*) FROM items").fetchone()
        conns[i] = c

    half = n // 2
    t = time.perf_counter()
    for i in range(half):
        open_one(i)
    out["open_one_by_one_ms_each"] = (time.perf_counter() - t) * 1000 / max(half, 1)
    t = time.perf_counter()
    todo = list(range(half, n))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            open_one(i)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out["open_8_threads_ms_each"] = (time.perf_counter() - t) * 1000 / max(n - half, 1)
    out["rss_per_replica_kb"] = (rss_mb() - rss0) * 1024 / n
    if args.vfs == "ltx":
        cached = sum(json.loads(c.execute("PRAGMA ltx_stats").fetchone()[0])["cache_bytes"] for c in conns.values())
        out["cached_pages_kb_per_replica"] = cached / 1024 / n
    if args.vfs == "local":
        print(json.dumps(out))
        raise SystemExit(0)
    time.sleep(12)  # past ltxvfs's default idle (10 s)
    c0 = proxy_counts()
    time.sleep(10)
    c1 = proxy_counts()
    out["idle_requests_per_s"] = (c1["total"] - c0["total"]) / 10
    end = time.perf_counter() + 10
    while time.perf_counter() < end:
        conns[0].execute("SELECT name FROM items WHERE id = 7").fetchone()
        time.sleep(0.05)
    c2 = proxy_counts()
    out["one_read_requests_per_s"] = (c2["total"] - c1["total"]) / 10
    out["one_read_lists_per_s"] = (c2.get("LIST", 0) - c1.get("LIST", 0)) / 10
    # Staleness: a commit on idle tenants' primaries, uploaded (3 s), then a new read.
    waits = []
    for i in stale:
        nonce = rng.randint(1, 1 << 60)
        primaries[i].execute("UPDATE meta SET v = ? WHERE id = 1", (nonce,))
    time.sleep(3)
    for i in stale:
        nonce = primaries[i].execute("SELECT v FROM meta").fetchone()[0]
        t = time.perf_counter()
        while conns[i].execute("SELECT v FROM meta WHERE id = 1").fetchone()[0] != nonce:
            if time.perf_counter() - t > 30:
                break
            time.sleep(0.01)
        waits.append(time.perf_counter() - t)
    out["stale_read_wait_median_s"] = statistics.median(waits)
    out["stale_read_wait_max_s"] = max(waits)
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
