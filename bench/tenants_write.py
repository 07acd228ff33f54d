"""`make bench`, writable tenants part: many writable replicas in one process (issue #23).

    tenants_write.py --root REPO [--n 200] [--delay-ms 20] [--idle-s 20] [--load-s 30]
                     [--settle-s 30] [--no-litestream] [--out FILE]

Starts moto on 127.0.0.1 behind the counting delay proxy (bench.py), then, in a fresh
/usr/bin/python3 process (this file with --child), opens N writable replicas (`write=1`) and
commits a table and a row in each; waits past `idle` and a level-1 interval; measures the
process's requests a second while every tenant is idle, its threads and RSS per tenant; then
offers 10 commits a second to random tenants for `--load-s` seconds: commits acknowledged,
p50/p99 latency, requests per commit. The ladder is shortened (compaction=5s,20s) so that its
deadlines fall inside the run; idle is measured once the ladder has
settled (35 s, past `snapshot_interval`, then a quiet 10 s; at most 300 s after the opens). After the load and `--settle-s` more
seconds of the ladder, a fresh process counts the files in the restore plans of the tenants
written (and 50 others). Then the same N databases, as local WAL files, are replicated by one
`litestream replicate` 0.5.17 through the same proxy: its idle requests/s, threads, RSS per
database, and requests per commit at the same 10 commits/s. Not a test: nothing here passes
or fails.
"""

import argparse
import json
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

LADDER = "&compaction=5s,20s&snapshot_interval=30s&l0_retention=5s&retention=1m&idle=2s" + os.environ.get("BENCH_EXTRA", "")


def child(args) -> None:
    def requests() -> int:
        with urllib.request.urlopen(args.proxy + "/__stats") as r:
            return json.load(r)["total"]

    def status(field: str) -> int:
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])
        return 0

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(args.lib)
    rss0 = status("VmRSS:")
    conns = []
    for i in range(args.n):
        url = urllib.parse.quote(args.url.replace("{i}", str(i)), safe=":/")
        conn = sqlite3.connect(f"file:app.db?vfs=ltx&write=1&replica={url}{LADDER}", uri=True,
                               isolation_level=None, check_same_thread=False)
        conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t(v) VALUES ('first')")
        conns.append(conn)
    out = {"n": args.n}
    # The ladder takes the first commits (levels 1 and 2, a snapshot after
    # `snapshot_interval`, retention after them): wait past the snapshot's deadline, then for a
    # quiet 10 s, at most 300 s.
    t0 = time.monotonic()
    time.sleep(35)
    while time.monotonic() - t0 < 300:
        r0 = requests()
        time.sleep(10)
        if requests() == r0:
            break
    out["settled_s"] = round(time.monotonic() - t0)
    r0, t0 = requests(), time.monotonic()
    time.sleep(args.idle_s)
    out["idle_requests_per_s"] = round((requests() - r0) / (time.monotonic() - t0), 2)
    out["threads"] = threads()
    out["rss_per_tenant_kib"] = round((status("VmRSS:") - rss0) / args.n, 1)
    # 10 commits a second to random tenants, each from its own thread so that a slow one does
    # not hold back the offered rate.
    rng = random.Random(7)
    latencies, failed = [], []
    lock = threading.Lock()

    def commit(conn, k):
        t = time.perf_counter()
        try:
            conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {k}",))
            ms = (time.perf_counter() - t) * 1000
            with lock:
                latencies.append(ms)
        except sqlite3.Error as e:
            with lock:
                failed.append(str(e))

    def summed(pragma: str, key: str) -> int:
        total = 0
        for conn in conns:
            row = conn.execute(f"PRAGMA {pragma}").fetchone()
            total += json.loads(row[0]).get(key, 0) if row and row[0] else 0
        return total

    waits0, taken0 = summed("ltx_stats", "fresh_waits"), summed("ltx_lease", "taken")
    r0 = requests()
    workers, start, k = [], time.monotonic(), 0
    busy = [threading.Lock() for _ in conns]

    written = set()

    def one(i, k):
        with busy[i]:
            commit(conns[i], k)
            written.add(i)

    while time.monotonic() - start < args.load_s:
        i = rng.randrange(args.n)
        w = threading.Thread(target=one, args=(i, k))
        w.start()
        workers.append(w)
        k += 1
        time.sleep(max(0.0, start + k / 10 - time.monotonic()))
    for w in workers:
        w.join()
    latencies.sort()
    out["commits_offered"] = k
    out["commits_acknowledged"] = len(latencies)
    out["commit_p50_ms"] = round(statistics.median(latencies), 1) if latencies else None
    out["commit_p99_ms"] = round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1) if latencies else None
    out["requests_per_commit"] = round((requests() - r0) / max(1, k), 2)
    out["threads_under_load"] = threads()
    # Commits that waited for a poll, and leases taken (back): what a commit's round trips were.
    out["commits_that_waited_for_a_poll"] = summed("ltx_stats", "fresh_waits") - waits0
    out["leases_taken"] = summed("ltx_lease", "taken") - taken0
    if failed:
        out["errors"] = failed[:3]
    # The ladder takes the load's files; then the plans are counted from a fresh process.
    time.sleep(args.settle_s)
    out["tenants_written_under_load"] = sorted({int(x) for x in written})
    print(json.dumps(out))


def plans(args) -> None:
    """Files in each tenant's restore plan, as a fresh reader (another process) plans it."""
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(args.lib)
    files = []
    for i in args.tenants.split(","):
        url = urllib.parse.quote(args.url.replace("{i}", i), safe=":/")
        conn = sqlite3.connect(f"file:app.db?vfs=ltx&mode=ro&poll=0&replica={url}", uri=True)
        files.append(json.loads(conn.execute("PRAGMA ltx_stats").fetchone()[0])["files"])
        conn.close()
    print(json.dumps(files))


def litestream_replicate(args, root: Path, env: dict, proxy_url: str, s3, tmp: Path) -> dict:
    """The same N databases replicated by one `litestream replicate` through the same proxy:
    its idle requests/s, threads and RSS per database, and requests per commit under the same
    10 commits/s."""

    def requests() -> int:
        with urllib.request.urlopen(proxy_url + "/__stats") as r:
            return json.load(r)["total"]

    s3.create_bucket(Bucket="replicate")
    dbs = tmp / "dbs"
    dbs.mkdir()
    config = ["dbs:"]
    paths = []
    for i in range(args.n):
        path = dbs / f"t{i}.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO t(v) VALUES ('first')")
        db.close()
        paths.append(path)
        config.append(
            f"  - path: {path}\n    replica:\n      type: s3\n      bucket: replicate\n      path: t{i}.db\n"
            f"      endpoint: {proxy_url}\n      region: us-east-1\n      force-path-style: true")
    (tmp / "ls.yml").write_text("\n".join(config) + "\n")
    ls = subprocess.Popen([str(root / ".tools/litestream-0.5.17/bin/litestream"), "replicate", "-config",
                           str(tmp / "ls.yml")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {"n": args.n}
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 600:
            keys = set()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="replicate"):
                keys |= {o["Key"].split("/")[0] for o in page.get("Contents", [])}
            if len(keys) >= args.n:
                break
            time.sleep(2)
        out["replicated_s"] = round(time.monotonic() - t0)
        time.sleep(10)
        r0, t0 = requests(), time.monotonic()
        time.sleep(args.idle_s)
        out["idle_requests_per_s"] = round((requests() - r0) / (time.monotonic() - t0), 2)
        out["threads"] = len(os.listdir(f"/proc/{ls.pid}/task"))
        rss = next(int(l.split()[1]) for l in open(f"/proc/{ls.pid}/status") if l.startswith("VmRSS:"))
        out["rss_per_db_kib"] = round(rss / args.n, 1)
        rng = random.Random(7)
        r0, start, k = requests(), time.monotonic(), 0
        while time.monotonic() - start < args.load_s:
            db = sqlite3.connect(paths[rng.randrange(args.n)], isolation_level=None)
            db.execute("INSERT INTO t(v) VALUES (?)", (f"row {k}",))
            db.close()
            k += 1
            time.sleep(max(0.0, start + k / 10 - time.monotonic()))
        out["commits"] = k
        out["requests_per_commit_incl_idle"] = round((requests() - r0) / max(1, k), 2)
    finally:
        stop_all_one(ls)
    return out


def stop_all_one(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--idle-s", type=float, default=20)
    ap.add_argument("--load-s", type=float, default=30)
    ap.add_argument("--lib", type=str)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--settle-s", type=float, default=30)
    ap.add_argument("--no-litestream", action="store_true")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--plans", action="store_true")
    ap.add_argument("--tenants")
    ap.add_argument("--url")
    ap.add_argument("--proxy")
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.plans:
        return plans(args)
    sys.path.insert(0, str(Path(__file__).parent))
    import boto3
    from bench import Proxy, free_port, stop_all, wait_port

    root = args.root.resolve()
    lib = args.lib or str(root / "target/release/libltxvfs.so")
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    procs: list[subprocess.Popen] = []
    try:
        moto_port, proxy_port = free_port(), free_port()
        procs.append(subprocess.Popen(
            [str(root / ".tools/moto/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(moto_port)
        proxy = Proxy(proxy_port, moto_port, args.delay_ms / 1000)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench-secret")
        s3.create_bucket(Bucket="tenants")
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        url = f"s3://tenants/t{{i}}.db?endpoint={proxy_url}&region=us-east-1&forcePathStyle=true"
        cmd = ["/usr/bin/python3", __file__, "--child", "--n", str(args.n), "--lib", lib, "--url", url,
               "--proxy", proxy_url, "--idle-s", str(args.idle_s), "--load-s", str(args.load_s),
               "--settle-s", str(args.settle_s)]
        with tempfile.TemporaryDirectory(prefix="ltxvfs-tenants-write-") as tmp:
            run = subprocess.run(cmd, env={**env, "XDG_STATE_HOME": tmp}, capture_output=True, text=True,
                                 timeout=1800)
            lines = run.stdout.strip().splitlines()
            result = {"ltxvfs": json.loads(lines[-1]) if lines else {"error": run.stderr[-600:]}}
            written = result["ltxvfs"].pop("tenants_written_under_load", [])
            sample = sorted(set(written[:100]) | set(random.Random(3).sample(range(args.n), min(50, args.n))))
            if sample:
                run = subprocess.run(["/usr/bin/python3", __file__, "--plans", "--lib", lib, "--url", url,
                                      "--tenants", ",".join(map(str, sample))],
                                     env={**env, "XDG_STATE_HOME": tmp}, capture_output=True, text=True, timeout=900)
                files = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else []
                if files:
                    result["ltxvfs"]["plan_files_max"] = max(files)
                    result["ltxvfs"]["plan_files_mean"] = round(statistics.mean(files), 1)
                    result["ltxvfs"]["plan_tenants_counted"] = len(files)
                else:
                    result["ltxvfs"]["plan_error"] = run.stderr[-600:]
            if not args.no_litestream:
                result["litestream_replicate"] = litestream_replicate(args, root, env, proxy_url, s3, Path(tmp))
    finally:
        stop_all(procs, 5)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
