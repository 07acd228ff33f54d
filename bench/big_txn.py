"""`make bench`, large transactions (issue #23): the peak RSS of one large write transaction.

    big_txn.py --root REPO [--mib 300] [--delay-ms 20] [--out FILE]

Starts moto on 127.0.0.1 behind the counting delay proxy (bench.py); then, for each mode, in a
fresh /usr/bin/python3 process (this file with --child): opens a new writable replica on S3,
creates a table, and commits one transaction of `--mib` MiB of incompressible rows (64 KiB
randomblobs). Measured: the process's RSS before the transaction, its peak during it (VmHWM,
reset by /proc/self/clear_refs just before), the COMMIT's wall time and requests, and a
SHA-256 of every row as the writer reads them back before its COMMIT. Then `litestream restore` (0.5.17) of the
replica, and the same SHA-256 over the restored file: restored equal or not.

Modes: `whole` (compaction_buffer=4GiB: the transaction is held in memory and its file is
made whole, as before issue #23) and `streamed` (the default compaction_buffer, 16 MiB: pages
past it spill to disk and the file is uploaded in parts). Not a test: nothing here passes or
fails.
"""

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROW = 64 << 10
MODES = {"whole": "&compaction_buffer=4GiB", "streamed": ""}


def rows_digest(conn) -> str:
    h = hashlib.sha256()
    for (v,) in conn.execute("SELECT v FROM big ORDER BY id"):
        h.update(v)
    return h.hexdigest()


def child(args) -> None:
    def requests() -> dict:
        with urllib.request.urlopen(args.proxy + "/__stats") as r:
            return json.load(r)

    def status(field: str) -> int:
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        return 0

    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(args.lib)
    conn = sqlite3.connect(f"file:app.db?vfs=ltx&write=1&replica={args.url}{MODES[args.mode]}",
                           uri=True, isolation_level=None)
    conn.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)")
    rows = (args.mib << 20) // ROW
    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS:")
    began = time.time()
    conn.execute("BEGIN")
    conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                 " INSERT INTO big(v) SELECT randomblob(?) FROM n", (rows, ROW))
    written = time.time()
    # Read back inside the transaction (from memory, or from the spill file): what COMMIT stores.
    digest = rows_digest(conn)
    read = time.time()
    req0 = requests()
    conn.execute("COMMIT")
    committed = time.time()
    req1 = requests()
    peak = status("VmHWM:")
    out = {
        "mode": args.mode,
        "mib": args.mib,
        "rss_before_mib": round(before / 2**20, 1),
        "peak_mib": round(peak / 2**20, 1),
        "peak_over_before_mib": round((peak - before) / 2**20, 1),
        "write_s": round(written - began, 2),
        "read_in_txn_s": round(read - written, 2),
        "commit_s": round(committed - read, 2),
        "commit_requests": {k: req1.get(k, 0) - req0.get(k, 0) for k in req1 if req1.get(k, 0) != req0.get(k, 0)},
    }
    out["sha256"] = digest
    print(json.dumps(out))


def restored_digest(root: Path, url_yaml: str, tmp: Path, env: dict) -> str:
    config = tmp / "restore.yml"
    config.write_text(f"dbs:\n  - path: {tmp / 'primary.db'}\n    replica:\n      {url_yaml}\n")
    out = tmp / "restored.db"
    out.unlink(missing_ok=True)
    subprocess.run([str(root / ".tools/litestream-0.5.17/bin/litestream"), "restore", "-config", str(config),
                    "-o", str(out), str(tmp / "primary.db")], env=env, check=True, capture_output=True)
    return rows_digest(sqlite3.connect(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path)
    ap.add_argument("--mib", type=int, default=300)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--lib", type=str)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--mode")
    ap.add_argument("--modes", default=",".join(MODES), help="of: " + ", ".join(MODES))
    ap.add_argument("--url")
    ap.add_argument("--proxy")
    args = ap.parse_args()
    if args.child:
        return child(args)
    sys.path.insert(0, str(Path(__file__).parent))
    import boto3
    from bench import Proxy, free_port, stop_all, wait_port

    root = args.root.resolve()
    lib = args.lib or str(root / "target/release/libltxvfs.so")
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    procs: list[subprocess.Popen] = []
    results = []
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
        s3.create_bucket(Bucket="big")
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        for mode in args.modes.split(","):
            url = f"s3://big/{mode}.db%3Fendpoint={proxy_url}%26region=us-east-1%26forcePathStyle=true"
            yaml = (f"type: s3\n      bucket: big\n      path: {mode}.db\n      endpoint: http://127.0.0.1:{moto_port}"
                    "\n      region: us-east-1\n      force-path-style: true")
            cmd = ["/usr/bin/python3", __file__, "--child", "--mode", mode, "--mib", str(args.mib), "--lib", lib,
                   "--url", url, "--proxy", proxy_url]
            with tempfile.TemporaryDirectory(prefix="ltxvfs-big-txn-") as tmp:
                run = subprocess.run(cmd, env={**env, "XDG_STATE_HOME": tmp}, capture_output=True, text=True,
                                     timeout=1200)
                lines = run.stdout.strip().splitlines()
                result = json.loads(lines[-1]) if lines else {"mode": mode, "error": run.stderr[-600:]}
                if "sha256" in result:
                    result["restored_equal"] = restored_digest(root, yaml, Path(tmp), env) == result["sha256"]
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        stop_all(procs, 5)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
