"""`make bench`, fork part (issue 25): what `ltx_fork` costs on a large replica in S3 (moto)
behind bench.py's proxy (a fixed delay per request, counted by kind).

    fork.py --root REPO [--size-mb 1024] [--commits 20] [--delay-ms 20] [--lib PATH]
            [--out bench/results-fork.json]

Runs with the moto venv's Python (moto, boto3). Starts moto on 127.0.0.1 and the proxy in
front of it. A fresh /usr/bin/python3 process (this file, `--worker make`) writes the
source: a database of `--size-mb` of 4 KiB pages (one table of random 3000-byte blobs),
copied with the sqlite3 backup API into a `write=1` connection (TXID 1, one file), then
`--commits` small commits (one file each), compaction off. Then, each in a fresh process
(`--worker fork`):
  1. within the bucket, at the newest TXID and at TXID 10 (file boundaries): store-side
     copies;
  2. S3 to a `file://` directory at the newest TXID: every byte through the process, in
     parts.
Each reports wall time, requests by kind, bytes the process read and wrote (/proc/self/io:
through the client), and its peak RSS above what it had before the fork. Prints a table.
Not a test: nothing here passes or fails.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path


def stats(proxy: str) -> dict:
    with urllib.request.urlopen(proxy + "/__stats") as r:
        return json.load(r)


def io_bytes() -> dict:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {"read": int(fields["rchar"]), "written": int(fields["wchar"])}


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def worker(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("make", "fork"))
    for opt in ("--lib", "--proxy", "--source"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--target")
    ap.add_argument("--at")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--scratch")
    a = ap.parse_args(argv)
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(a.lib)
    if a.mode == "make":
        local = Path(a.scratch) / "source.db"
        db = sqlite3.connect(local, isolation_level=None)
        db.execute("PRAGMA page_size = 4096")
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        db.execute("BEGIN")
        db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                   "INSERT INTO t(v) SELECT randomblob(3000) FROM n", (a.size_mb * 1024 * 1024 // 4096,))
        db.execute("COMMIT")
        uri = f"file:src.db?vfs=ltx&write=1&compaction=off&replica={urllib.parse.quote(a.source, safe='')}"
        w = sqlite3.connect(uri, uri=True, isolation_level=None)
        db.backup(w)
        for i in range(a.commits):
            w.execute("UPDATE t SET v = randomblob(3000) WHERE id = ?", (i * 997 + 1,))
        print(json.dumps({"txid": w.execute("PRAGMA ltx_txid").fetchone()[0],
                          "bytes": local.stat().st_size}))
        return
    before_rss, io0, s0, t0 = rss_kib("VmRSS:"), io_bytes(), stats(a.proxy), time.perf_counter()
    txid = c.execute("SELECT ltx_fork(?, ?, ?)", (a.source, a.target, a.at)).fetchone()[0]
    wall, io1, s1 = time.perf_counter() - t0, io_bytes(), stats(a.proxy)
    # VmHWM, not ru_maxrss: Linux carries the parent's peak across exec into the latter.
    peak = rss_kib("VmHWM:")
    print(json.dumps({
        "txid": txid, "wall_ms": round(wall * 1000, 1),
        "requests": {k: s1[k] - s0.get(k, 0) for k in s1 if s1[k] != s0.get(k, 0)},
        "through_client_bytes": {k: io1[k] - io0[k] for k in io1},
        "rss_before_kib": before_rss, "peak_rss_kib": peak, "peak_above_before_kib": peak - before_rss,
    }))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--lib")
    ap.add_argument("--out", default="bench/results-fork.json")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root / "bench"))
    import boto3
    from bench import Proxy, free_port, stop_all, wait_port

    lib = args.lib or str(root / "target/release/libltxvfs")
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1")
    moto_port, proxy_port = free_port(), free_port()
    procs = [subprocess.Popen([str(root / ".tools/moto/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_port(moto_port)
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench-secret").create_bucket(Bucket="bench")
        proxy = Proxy(proxy_port, moto_port, args.delay_ms / 1000)
        import threading
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        purl = f"http://127.0.0.1:{proxy_port}"
        s3 = lambda path: f"s3://bench/{path}?endpoint={purl}&region=us-east-1&forcePathStyle=true"
        me = ["/usr/bin/python3", __file__, "--worker"]

        def run(mode: str, *extra: str, timeout: float = 1800) -> dict:
            out = subprocess.run(me + [mode, "--lib", lib, "--proxy", purl, *extra], env=env,
                                 capture_output=True, text=True, timeout=timeout)
            lines = out.stdout.strip().splitlines()
            return json.loads(lines[-1]) if lines else {"error": out.stderr[-600:]}

        res: dict = {"size_mb": args.size_mb, "commits": args.commits, "delay_ms": args.delay_ms}
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res["source"] = run("make", "--source", s3("src.db"), "--size-mb", str(args.size_mb),
                                "--commits", str(args.commits), "--scratch", tmp)
            res["source"]["make_s"] = round(time.perf_counter() - t0, 1)
            res["boundary_latest"] = run("fork", "--source", s3("src.db"), "--target", s3("fork-latest.db"))
            res["boundary_txid_10"] = run("fork", "--source", s3("src.db"), "--target", s3("fork-10.db"),
                                          "--at", "a")
            res["s3_to_file"] = run("fork", "--source", s3("src.db"), "--target", f"file://{tmp}/fork-dir")
        Path(args.out).write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))
    finally:
        stop_all(procs, 5)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
