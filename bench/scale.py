"""`make bench`, scale part: ltxvfs against Litestream's VFS on large replicas (issue #12).

    scale.py --root REPO [--sizes-gb 1,10] [--out FILE]

For each size: builds a database of that size (items(id INTEGER PRIMARY KEY, k, cat, name),
~250-byte rows, 4 KiB pages) with SQLite itself, has the real `litestream replicate` 0.5.17
write it to a file:// replica, then, in a fresh /usr/bin/python3 process per reader
(bench/measure.py `scale`): open time, RSS the open adds and peak RSS, 300 random primary-key
lookups, and 60 s of following while an updater commits 2 transactions a second (CPU seconds
and RSS growth of the reader, which reads one small row every 200 ms to keep following). Prints a
table. Not a test: nothing here passes or fails.
"""

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import print_comparison, run_measure, stop_all

ROW_BYTES = 270  # a row with its share of the b-tree, measured on this schema


def build(path: Path, gb: float) -> int:
    rows = int(gb * (1 << 30) / ROW_BYTES)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size = 4096")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, k INTEGER, cat INTEGER, name TEXT)")
    db.execute("CREATE TABLE meta(id INTEGER PRIMARY KEY, v INTEGER)")
    db.execute("INSERT INTO meta VALUES (1, 0)")
    step = 1_000_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        db.execute("BEGIN")
        db.execute(
            "WITH RECURSIVE s(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
            "INSERT INTO items SELECT i, abs(random()) % 1000000, i % 10, hex(randomblob(115)) FROM s",
            (start + 1, start + n))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return rows


def updater(path: Path, rows: int, stop: threading.Event) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    rng = random.Random(3)
    while not stop.is_set():
        db.execute("UPDATE items SET k = ? WHERE id = ?", (rng.randrange(1_000_000), rng.randint(1, rows)))
        stop.wait(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--sizes-gb", default="1")
    ap.add_argument("--follow-s", type=float, default=60)
    ap.add_argument("--readers", default="ltxvfs,litestream")
    ap.add_argument("--lib", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    root = args.root.resolve()
    tools = root / ".tools"
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    libs = {
        "ltxvfs": ["--vfs", "ltx", "--lib", str(args.lib or root / "target/release/libltxvfs")],
        "litestream": ["--vfs", "litestream", "--lib",
                       str(tools / "litestream-vfs/lib/python3.11/site-packages/litestream_vfs/litestream-vfs")],
    }
    results: dict[str, dict[str, dict]] = {}
    for gb in [float(x) for x in args.sizes_gb.split(",")]:
        with tempfile.TemporaryDirectory(prefix="ltxvfs-scale-", dir=os.environ.get("BENCH_TMP")) as tmp:
            tmp = Path(tmp)
            db, replica = tmp / "app.db", tmp / "replica"
            t = time.perf_counter()
            rows = build(db, gb)
            size = db.stat().st_size
            print(f"{gb:g} GB: {rows} rows, {size / 1e9:.2f} GB built in {time.perf_counter() - t:.0f} s",
                  file=sys.stderr)
            (tmp / "ls.yml").write_text(f"dbs:\n  - path: {db}\n    replica:\n      type: file\n      path: {replica}\n")
            ls = subprocess.Popen([str(tools / "litestream-0.5.17/bin/litestream"), "replicate", "-config",
                                   str(tmp / "ls.yml")], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            stop = threading.Event()
            try:
                t = time.perf_counter()
                while not list(replica.glob("ltx/0/*.ltx")):
                    time.sleep(0.5)
                # The first file is the whole database: wait until it is renamed into place.
                time.sleep(2)
                print(f"  replicated in {time.perf_counter() - t:.0f} s", file=sys.stderr)
                threading.Thread(target=updater, args=(db, rows, stop), daemon=True).start()
                label = f"{gb:g}GB"
                results[label] = {"rows": rows, "db_bytes": size}
                for name in args.readers.split(","):
                    print(f"  scale {name} ...", file=sys.stderr)
                    cmd = ["/usr/bin/python3", str(root / "bench/measure.py"), "scale", *libs[name],
                           "--url", f"file://{replica}", "--db", str(db), "--proxy", "",
                           "--follow-s", str(args.follow_s), "--rows", str(rows)]
                    results[label][name] = run_measure(
                        cmd, dict(env, LITESTREAM_REPLICA_URL=f"file://{replica}"), 1800)
            finally:
                stop.set()
                stop_all([ls], 20)

    for label, r in results.items():
        print(f"\n{label}: {r['rows']} rows, {r['db_bytes'] / 1e9:.2f} GB")
        print_comparison({n: v for n, v in r.items() if isinstance(v, dict)}, ["ltxvfs", "litestream"],
                         ("ltxvfs", "litestream"))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
