"""`make bench`, bookmark part (issue #24): the latency a reader adds by waiting for a
writer's bookmark, counted from the moment the writer's COMMIT returned, through bench.py's
proxy (a fixed delay per request to the store, counted by kind).

    bookmark.py --root REPO [--delay-ms 20] [--n 100] [--lib PATH] [--out FILE]

Runs with the moto venv's Python (moto, boto3). Starts moto on 127.0.0.1 and one proxy
each for the writer and the reader. The writer is a /usr/bin/python3 process (this file,
`--worker write`) with ltxvfs `write=1` (no litestream); the reader another
(`--worker read`) with `poll=10s`, so that only the bookmark brings it up to date. For each
of `--n` rounds, at a random moment (50 to 300 ms after the last), the writer commits one
row and prints its `ltx_txid()`; the driver hands it to the reader, which times
`SELECT ltx_wait_txid(?)` and checks that its next read sees the row. Prints the median and
p99 of the wait, in ms and in round trips (the wait divided by the median time of one small
LIST through the same proxy), and the requests a wait made. Not a test: nothing here passes or fails.
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
import urllib.request
from pathlib import Path


def stats(proxy: str) -> dict:
    with urllib.request.urlopen(proxy + "/__stats") as r:
        return json.load(r)


def worker(argv: list[str]) -> None:
    role, lib, uri, proxy = argv
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(lib)
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    if role == "write":
        conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)")
        print(conn.execute("SELECT ltx_txid()").fetchone()[0], flush=True)
        for line in sys.stdin:
            conn.execute("INSERT INTO t(body) VALUES (?)", (line.strip(),))
            print(conn.execute("SELECT ltx_txid()").fetchone()[0], flush=True)
        return
    conn.execute("SELECT count(*) FROM t").fetchone()
    print("ready", flush=True)
    for line in sys.stdin:
        bookmark, body = line.split()
        before = stats(proxy)
        began = time.perf_counter()
        conn.execute("SELECT ltx_wait_txid(?)", (bookmark,)).fetchone()
        waited = time.perf_counter() - began
        seen = conn.execute("SELECT count(*) FROM t WHERE body = ?", (body,)).fetchone()[0]
        after = stats(proxy)
        requests = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        print(json.dumps({"ms": waited * 1000, "seen": seen, "requests": requests}), flush=True)


def main() -> None:
    from bench import Proxy, free_port, stop_all, wait_port
    import boto3

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--lib", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    root = args.root.resolve()
    lib = str(args.lib or root / "target/release/libltxvfs")
    env = {k: v for k, v in os.environ.items()
           if k != "AWS_CA_BUNDLE" and not k.startswith(("LITESTREAM_", "LTXVFS_"))}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    procs: list[subprocess.Popen] = []
    waits, requests, missed = [], [], 0
    with tempfile.TemporaryDirectory(prefix="ltxvfs-bench-bookmark-"):
        try:
            moto_port = free_port()
            procs.append(subprocess.Popen([str(root / ".tools/moto/bin/moto_server"), "-H", "127.0.0.1",
                                           "-p", str(moto_port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(moto_port)
            boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                         aws_access_key_id="bench", aws_secret_access_key="bench-secret").create_bucket(Bucket="bench")
            proxies = {}
            for role in ("write", "read"):
                port = free_port()
                proxy = Proxy(port, moto_port, args.delay_ms / 1000)
                threading.Thread(target=proxy.serve_forever, daemon=True).start()
                proxies[role] = f"http://127.0.0.1:{port}"

            def uri(role: str, extra: str) -> str:
                url = f"s3://bench/bm%3Fendpoint={proxies[role]}%26region=us-east-1%26forcePathStyle=true"
                return f"file:bm-{role}.db?vfs=ltx{extra}&replica={url}"

            def start(role: str, extra: str) -> subprocess.Popen:
                p = subprocess.Popen(["/usr/bin/python3", __file__, "--worker", role, lib, uri(role, extra),
                                      proxies[role]], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
                procs.append(p)
                return p

            # One round trip of this harness (the delay, the proxy's and moto's own time): a
            # small listing through the reader's proxy, before the reader starts.
            trips = []
            for _ in range(20):
                began = time.perf_counter()
                urllib.request.urlopen(f"{proxies['read']}/bench?list-type=2&prefix=none/").read()
                trips.append((time.perf_counter() - began) * 1000)
            trip = statistics.median(trips)

            writer = start("write", "&write=1")
            writer.stdout.readline()
            reader = start("read", "&poll=10s&mode=ro")
            assert reader.stdout.readline().strip() == "ready"
            for i in range(args.n):
                time.sleep(random.uniform(0.05, 0.3))
                writer.stdin.write(f"row-{i}\n")
                writer.stdin.flush()
                bookmark = writer.stdout.readline().strip()
                reader.stdin.write(f"{bookmark} row-{i}\n")
                reader.stdin.flush()
                r = json.loads(reader.stdout.readline())
                waits.append(r["ms"])
                requests.append(r["requests"])
                missed += r["seen"] != 1
            for p in (writer, reader):
                p.stdin.close()
        finally:
            stop_all(procs, 10)

    waits.sort()
    median = statistics.median(waits)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    total = {}
    for r in requests:
        for k, v in r.items():
            total[k] = total.get(k, 0) + v
    per_wait = {k: round(v / len(requests), 2) for k, v in total.items()}
    print(f"\nbookmark wait after the writer's COMMIT returned, {args.delay_ms:g} ms per request, "
          f"{args.n} rounds (reader poll=10s)")
    print(f"  one round trip (a small LIST through the proxy): median {trip:.1f} ms")
    print(f"  wait median {median:.1f} ms = {median / trip:.2f} round trips")
    print(f"  wait p99    {p99:.1f} ms = {p99 / trip:.2f} round trips")
    print(f"  requests per wait: {per_wait}; rounds whose next read missed the row: {missed}")
    if args.out:
        args.out.write_text(json.dumps({"delay_ms": args.delay_ms, "n": args.n, "round_trip_ms": trip, "median_ms": median,
                                        "p99_ms": p99, "requests_per_wait": per_wait, "missed": missed,
                                        "waits_ms": waits}, indent=2) + "\n")
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main()
