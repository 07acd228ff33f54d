#!/usr/bin/env python3
"""A long run with a small cache stays within its memory budget: a 40 MB database written by
the real litestream, read through the VFS with cache_size=4MiB by full scans and random
lookups for 20 seconds; the process's peak RSS may exceed what it was before the extension
loaded by no more than the cache budget plus 30 MB.

    /usr/bin/python3 tests/rss_bound.py target/release/libltxvfs .tools/litestream-0.5.17/bin/litestream
"""

import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = 4 << 20
SLACK = 30 << 20


def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def settle(ltx_dir, quiet=1.5, limit=120):
    """Waits until litestream has written LTX files and then nothing new for `quiet` s."""
    last, since, start = None, time.time(), time.time()
    while time.time() - start < limit:
        files = sorted(p.name for p in ltx_dir.rglob("*.ltx"))
        if files != last:
            last, since = files, time.time()
        elif files and time.time() - since >= quiet:
            return
        time.sleep(0.2)
    sys.exit("rss_bound: litestream wrote nothing in time")


def main():
    lib, litestream = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = sqlite3.connect(tmp / "app.db")
        db.executescript(
            "PRAGMA journal_mode = wal;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000)"
            " INSERT INTO t SELECT i, printf('%0250d', i) FROM n;"
        )
        db.close()
        (tmp / "litestream.yml").write_text(
            f"dbs:\n  - path: {tmp / 'app.db'}\n    monitor-interval: 100ms\n"
            f"    replica:\n      type: file\n      path: {tmp / 'replica'}\n      sync-interval: 200ms\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        proc = subprocess.Popen([litestream, "replicate", "-config", str(tmp / "litestream.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            settle(tmp / "replica")
        finally:
            proc.kill()
            proc.wait()

        # Peak RSS from here on (clear_refs 5 resets VmHWM), not from writing the database.
        Path("/proc/self/clear_refs").write_text("5")
        before = status("VmRSS")
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension(lib)
        conn = sqlite3.connect(
            f"file:app.db?vfs=ltx&replica=file://{tmp / 'replica'}&cache_size={CACHE}&poll=0", uri=True)
        rng = random.Random(5)
        scans = lookups = 0
        end = time.time() + 20
        while time.time() < end:
            (total,) = conn.execute("SELECT sum(length(v)) FROM t").fetchone()
            assert total == 150000 * 250, total
            scans += 1
            for _ in range(200):
                i = rng.randint(1, 150000)
                (v,) = conn.execute("SELECT v FROM t WHERE id = ?", (i,)).fetchone()
                assert v == f"{i:0250d}"
                lookups += 1
        peak = status("VmHWM")
        cached = conn.execute("PRAGMA ltx_stats").fetchone()[0]
        grew = peak - before
        print(f"rss_bound: {scans} full scans and {lookups} lookups of a 40 MB replica with a "
              f"{CACHE >> 20} MiB cache: peak RSS {peak >> 20} MiB, {grew >> 20} MiB over the "
              f"{before >> 20} MiB before loading (bound {(CACHE + SLACK) >> 20} MiB); {cached}")
        assert grew <= CACHE + SLACK, f"peak RSS grew {grew >> 20} MiB"


if __name__ == "__main__":
    main()
