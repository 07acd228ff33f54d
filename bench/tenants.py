"""`make bench`, tenants part: many small replicas in one reader process (issue #13).

    tenants.py --root REPO [--n 50] [--delay-ms 20] [--out FILE]

Makes N small databases, has one real `litestream replicate` 0.5.17 write them all to an S3
bucket (moto on 127.0.0.1), and in a fresh /usr/bin/python3 process per reader
(bench/measure.py `tenants`) opens all N through the delay proxy: time to open them all, RSS
per replica, requests a second while all are idle, requests a second while one is read in a
loop, and staleness (a row committed on an idle tenant's primary and uploaded: how long a new
read takes to see it). ltxvfs against Litestream's VFS (URI `replica_url`), same run. Not a
test: nothing here passes or fails.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3

from bench import Proxy, free_port, print_comparison, run_measure, stop_all, wait_port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--n", default="50", help="tenant counts, comma-separated (e.g. 50,1000)")
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--readers", default="ltxvfs,litestream,local",
                    help="local: the same databases as plain files (SQLite's own memory per connection)")
    ap.add_argument("--lib", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    root = args.root.resolve()
    tools = root / ".tools"
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    results: dict[str, dict] = {}
    for n in [int(x) for x in args.n.split(",")]:
        procs: list[subprocess.Popen] = []
        with tempfile.TemporaryDirectory(prefix="ltxvfs-tenants-") as tmp:
            tmp = Path(tmp)
            try:
                moto_port, proxy_port = free_port(), free_port()
                procs.append(subprocess.Popen(
                    [str(tools / "moto/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_port(moto_port)
                proxy = Proxy(proxy_port, moto_port, args.delay_ms / 1000)
                threading.Thread(target=proxy.serve_forever, daemon=True).start()
                moto = f"http://127.0.0.1:{moto_port}"
                s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                                  aws_access_key_id="bench", aws_secret_access_key="bench-secret")
                s3.create_bucket(Bucket="tenants")
                dbs = tmp / "dbs"
                dbs.mkdir()
                config = ["dbs:"]
                for i in range(n):
                    path = dbs / f"t{i}.db"
                    db = sqlite3.connect(path, isolation_level=None)
                    db.execute("PRAGMA journal_mode = WAL")
                    db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT)")
                    db.execute("CREATE TABLE meta(id INTEGER PRIMARY KEY, v INTEGER)")
                    db.execute("INSERT INTO meta VALUES (1, 0)")
                    db.executemany("INSERT INTO items(name) VALUES (?)", ((f"tenant {i} row {j}" * 4,) for j in range(300)))
                    db.close()
                    config.append(
                        f"  - path: {path}\n    replica:\n      type: s3\n      bucket: tenants\n      path: t{i}.db\n"
                        f"      endpoint: {moto}\n      region: us-east-1\n      force-path-style: true")
                (tmp / "ls.yml").write_text("\n".join(config) + "\n")
                procs.append(subprocess.Popen([str(tools / "litestream-0.5.17/bin/litestream"), "replicate",
                                               "-config", str(tmp / "ls.yml")], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                t = time.perf_counter()
                while True:
                    keys = set()
                    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="tenants"):
                        keys |= {o["Key"].split("/")[0] for o in page.get("Contents", [])}
                    if len(keys) >= n or time.perf_counter() - t > 600:
                        break
                    time.sleep(1)
                print(f"{n} tenants replicated in {time.perf_counter() - t:.0f} s", file=sys.stderr)
                proxy_url = f"http://127.0.0.1:{proxy_port}"
                url = f"s3://tenants/t{{i}}.db?endpoint={proxy_url}&region=us-east-1&forcePathStyle=true"
                readers = {
                    "ltxvfs": ["--vfs", "ltx", "--lib", str(args.lib or root / "target/release/libltxvfs")],
                    "litestream": ["--vfs", "litestream", "--lib",
                                   str(tools / "litestream-vfs/lib/python3.11/site-packages/litestream_vfs/litestream-vfs")],
                    "local": ["--vfs", "local"],
                }
                results[str(n)] = {}
                for name in args.readers.split(","):
                    print(f"  tenants {name} ...", file=sys.stderr)
                    cmd = ["/usr/bin/python3", str(root / "bench/measure.py"), "tenants", *readers[name],
                           "--url", url, "--db", str(dbs / "t{i}.db"), "--proxy", proxy_url, "--tenants", str(n)]
                    results[str(n)][name] = run_measure(cmd, env, 1800)
            finally:
                stop_all(procs, 20)

    for n, r in results.items():
        print(f"\n{n} tenants, {args.delay_ms:g} ms per request")
        print_comparison(r, ["ltxvfs", "litestream", "local"], ("ltxvfs", "litestream"))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
