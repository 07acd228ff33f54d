"""`make bench`: ltxvfs against Litestream's own VFS (PyPI litestream-vfs) and a local file,
on the same replica, through a proxy that adds a fixed delay to every request to the store
and counts them. Round trips are the currency.

    bench.py --root REPO [--delay-ms 20] [--rows 100000] [--out bench/results.json]

Runs with the moto venv's Python (moto, boto3). Starts moto on 127.0.0.1; builds the
database (items(id INTEGER PRIMARY KEY, k, cat, name) with ~250-byte rows, indexes on k and
(cat, k), 4 KiB pages); has the real `litestream replicate` 0.5.17 write it to a bucket while
an updater commits 20 random-row updates a second; then runs each measurement in a fresh
/usr/bin/python3 process (bench/measure.py) for each reader, and prints a table of figures
and ratios. Not a test: nothing here passes or fails.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


class Proxy(http.server.ThreadingHTTPServer):
    """Forwards every request to the store after `delay` seconds and counts it."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        # A reader that hangs up mid-answer (a process ending) is not news.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def __init__(self, port: int, upstream: int, delay: float):
        self.upstream, self.delay = upstream, delay
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        super().__init__(("127.0.0.1", port), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _stats(self) -> None:
        p: Proxy = self.server  # type: ignore[assignment]
        with p.lock:
            body = json.dumps({"total": sum(p.counts.values()), **p.counts}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        if self.path == "/__stats":
            return self._stats()
        p: Proxy = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        kind = self.command
        if self.command == "GET" and ("list-type=2" in self.path or self.path.rstrip("/").count("/") <= 1):
            kind = "LIST"
        with p.lock:
            p.counts[kind] = p.counts.get(kind, 0) + 1
        time.sleep(p.delay)
        up = http.client.HTTPConnection("127.0.0.1", p.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
        up.request(self.command, self.path, body=body, headers=headers)
        resp = up.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        # A HEAD answer has no body and the length of the object it describes.
        length = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        up.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward


def run_measure(cmd: list[str], env: dict, timeout: float) -> dict:
    """Runs bench/measure.py (`cmd`) and returns the JSON object it printed last, or its
    error output under `error`."""
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return json.loads(line) if line else {"error": out.stderr[-400:]}


def stop_all(procs: list[subprocess.Popen], wait_s: float) -> None:
    """SIGTERM to each server started, then SIGKILL to any still running after `wait_s`."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            p.kill()


def print_comparison(results: dict[str, dict], names: list[str], ratio: tuple[str, str]) -> None:
    """A table of every measure in `results` (reader name -> {measure: value}), one column a
    reader, then the ratio of the two named in `ratio`."""
    cols = [n for n in names if n in results]
    label = ratio[0][:3] + "/" + ratio[1][:2]
    print(f"{'measure':34} " + " ".join(f"{n:>12}" for n in cols) + f" {label:>8}")
    fmt = lambda v: "" if v is None else (f"{v:12.3f}" if isinstance(v, (int, float)) else str(v)[:40])
    for k in sorted({k for n in cols for k in results[n]}):
        vals = [results[n].get(k) for n in cols]
        a, b = results.get(ratio[0], {}).get(k), results.get(ratio[1], {}).get(k)
        r = f"{a / b:8.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else ""
        print(f"{k:34} " + " ".join(f"{fmt(v):>12}" for v in vals) + f" {r:>8}")


def build_database(path: Path, rows: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size = 4096")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, k INTEGER, cat INTEGER, name TEXT)")
    db.execute("CREATE TABLE meta(id INTEGER PRIMARY KEY, v INTEGER)")
    db.execute("INSERT INTO meta VALUES (1, 0)")
    rng = random.Random(7)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO items(k, cat, name) VALUES (?, ?, ?)",
        ((rng.randrange(1_000_000), rng.randrange(10), "".join(rng.choices("abcdefghij klmnop", k=230)))
         for _ in range(rows)),
    )
    db.execute("CREATE INDEX items_k ON items(k)")
    db.execute("CREATE INDEX items_cat_k ON items(cat, k)")
    db.execute("COMMIT")
    db.close()


def updater(path: Path, stop: threading.Event, rows: int) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    rng = random.Random(11)
    while not stop.is_set():
        db.execute("BEGIN")
        for _ in range(20):
            db.execute("UPDATE items SET k = ? WHERE id = ?", (rng.randrange(1_000_000), rng.randint(1, rows)))
        db.execute("COMMIT")
        stop.wait(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--scenarios", default="cold,lookups,lookups_cold,lookups_5s,count,idle1,idle8,lag",
                    help="which measurements, comma-separated (a quicker A/B run: cold,count)")
    ap.add_argument("--readers", default="ltxvfs,litestream,local",
                    help="which readers, comma-separated")
    ap.add_argument("--lib", type=Path, help="the ltxvfs library to measure (default: target/release)")
    args = ap.parse_args()
    root = args.root.resolve()
    tools = root / ".tools"
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="ltxvfs-bench-") as tmp:
        tmp = Path(tmp)
        try:
            moto_port, proxy_port = free_port(), free_port()
            procs.append(subprocess.Popen([str(tools / "moto/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(moto_port)
            proxy = Proxy(proxy_port, moto_port, args.delay_ms / 1000)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            moto = f"http://127.0.0.1:{moto_port}"
            boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                         aws_access_key_id="bench", aws_secret_access_key="bench-secret").create_bucket(Bucket="bench")

            db = tmp / "app.db"
            print(f"building {args.rows} rows ...", file=sys.stderr)
            build_database(db, args.rows)
            (tmp / "ls.yml").write_text(
                f"dbs:\n  - path: {db}\n    replica:\n      type: s3\n      bucket: bench\n      path: app.db\n"
                f"      endpoint: {moto}\n      region: us-east-1\n      force-path-style: true\n")
            procs.append(subprocess.Popen([str(tools / "litestream-0.5.17/bin/litestream"), "replicate", "-config",
                                           str(tmp / "ls.yml")], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench-secret")
            for _ in range(600):
                if s3.list_objects_v2(Bucket="bench", Prefix="app.db/0000/").get("KeyCount", 0):
                    break
                time.sleep(0.1)
            threading.Thread(target=updater, args=(db, stop, args.rows), daemon=True).start()
            time.sleep(3)
            # The local ceiling reads a copy of the primary (read-only, no VFS).
            src = sqlite3.connect(db)
            dst = sqlite3.connect(f"{db}.copy")
            src.backup(dst)
            src.close()
            dst.close()

            proxy_url = f"http://127.0.0.1:{proxy_port}"
            readers = {
                "ltxvfs": ["--vfs", "ltx", "--lib", str(args.lib or root / "target/release/libltxvfs"),
                           "--url", f"s3://bench/app.db?endpoint={proxy_url}%26region=us-east-1%26forcePathStyle=true"],
                "litestream": ["--vfs", "litestream", "--lib",
                               str(tools / "litestream-vfs/lib/python3.11/site-packages/litestream_vfs/litestream-vfs")],
                "local": ["--vfs", "local"],
            }
            reader_env = dict(env, LITESTREAM_REPLICA_URL=f"s3://bench/app.db?endpoint={proxy_url}&region=us-east-1&forcePathStyle=true")
            readers = {n: o for n, o in readers.items() if n in args.readers.split(",")}
            results: dict[str, dict] = {name: {} for name in ("ltxvfs", "litestream", "local")}
            for scenario in args.scenarios.split(","):
                for name, opts in readers.items():
                    if name == "local" and scenario in ("idle1", "idle8", "lag", "cold", "lookups_cold", "lookups_5s"):
                        continue
                    print(f"{scenario:8} {name} ...", file=sys.stderr)
                    cmd = ["/usr/bin/python3", str(root / "bench/measure.py"), scenario, *opts,
                           "--db", str(db), "--proxy", proxy_url]
                    try:
                        got = run_measure(cmd, reader_env, 600)
                        results[name].update({f"{scenario}_error": got["error"]} if "error" in got else got)
                    except subprocess.TimeoutExpired:
                        results[name][f"{scenario}_error"] = "timed out after 600 s"
        finally:
            stop.set()
            stop_all(procs, 10)

    print(f"\nltxvfs vs Litestream VFS 0.5.17, {args.rows} rows, {args.delay_ms:g} ms per request")
    print_comparison(results, ["ltxvfs", "litestream", "local"], ("ltxvfs", "litestream"))
    report = {"delay_ms": args.delay_ms, "rows": args.rows, "results": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
