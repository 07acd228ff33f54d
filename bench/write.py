"""`make bench`, write part (issue #14): commit latency and throughput of a writer whose
database lives in object storage, through bench.py's proxy (a fixed delay per request to the
store, counted by kind). Round trips are the currency here too.

    write.py --root REPO [--delay-ms 20] [--commits 500] [--burst 100] [--pause-s 1.5]
             [--min-s 0] [--configs ...] [--lib PATH] [--out bench/results-write.json]

Runs with the moto venv's Python (moto, boto3). Starts moto on 127.0.0.1; then, per
configuration, one fresh /usr/bin/python3 process (this file, `--worker`) opens an empty
replica (s3://bench/<config>) writable and makes `--commits` transactions, one writer, in
bursts of `--burst` with `--pause-s` idle between them (not timed: Litestream's VFS uploads
only while no transaction is open); each inserts a ~200-byte row into items(id, k, body),
indexed on k, and adds one to a counter row. Configurations:
  ltx-commit  ltxvfs `sync=commit`: COMMIT returns once its LTX file is conditionally created
  ltx-1s      ltxvfs `sync=1s&buffer=PATH`: COMMIT returns once fsync'd in the buffer file
  ls-default  Litestream's VFS 0.5.17 (PyPI litestream-vfs), LITESTREAM_WRITE_ENABLED=true
  ls-1s       the same with LITESTREAM_SYNC_INTERVAL=1s and LITESTREAM_BUFFER_PATH
An error (Litestream's VFS answers SQLITE_CORRUPT after a background upload) is recorded and
the connection reopened. The worker then SIGKILLs itself (a crash just after its last
acknowledged commit); the real `litestream restore` 0.5.17 gives the rows stored; a second
process opens and closes the database (ltxvfs ships what a crash left in its buffer) and
restore counts again. Prints a table, one column a configuration. Not a test: nothing here
passes or fails.
"""

import argparse
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

SCHEMA = ("CREATE TABLE items(id INTEGER PRIMARY KEY, k INTEGER, body TEXT);"
          "CREATE INDEX items_k ON items(k);"
          "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER);"
          "INSERT INTO counter VALUES (1, 0);")
LS_VFS = ".tools/litestream-vfs/lib/python3.11/site-packages/litestream_vfs/litestream-vfs"
LITESTREAM = ".tools/litestream-0.5.17/bin/litestream"


# --- the worker: /usr/bin/python3, whose sqlite3 can load extensions -----------------------

def stats(proxy: str) -> dict:
    with urllib.request.urlopen(proxy + "/__stats") as r:
        return json.load(r)


def connect(args) -> sqlite3.Connection:
    conn = sqlite3.connect(args.uri, uri=True, isolation_level=None, timeout=10)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def worker(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--commits", type=int, default=500)
    ap.add_argument("--min-s", type=float, default=0)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--pause-s", type=float, default=0)
    ap.add_argument("--reopen", action="store_true", help="open, count rows, close")
    args = ap.parse_args(argv)
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(args.lib)
    if args.reopen:
        try:
            conn = connect(args)
            rows = conn.execute("SELECT count(*) FROM items").fetchone()[0]
            conn.close()
            print(json.dumps({"rows": rows}))
        except sqlite3.Error as e:
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return
    conn = connect(args)
    conn.executescript("BEGIN;" + SCHEMA + "COMMIT;")
    rng = random.Random(1)
    acked, times, errors, starts = [], [], [], []
    s0, t0 = stats(args.proxy), time.perf_counter()
    i, paused = 0, 0.0
    while (i < args.commits or time.perf_counter() - t0 - paused < args.min_s) and len(errors) < 50:
        if i and i % args.burst == 0 and args.pause_s:  # idle: Litestream's VFS syncs only then
            time.sleep(args.pause_s)
            paused += args.pause_s
        i += 1
        body = "".join(rng.choices("abcdefghij klmnopqrstuvwxyz", k=200))
        t, wall_t = time.perf_counter(), time.time()
        try:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO items VALUES (?, ?, ?)", (i, rng.randrange(1 << 30), body))
            conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            errors.append(f"commit {i}: {getattr(e, 'sqlite_errorname', type(e).__name__)}: {e}")
            for close in (lambda: conn.execute("ROLLBACK"), conn.close):
                try:
                    close()
                except sqlite3.Error:
                    pass
            try:
                conn = connect(args)
            except sqlite3.Error as e2:
                errors.append(f"reopen after commit {i}: {type(e2).__name__}: {e2}")
                time.sleep(0.1)
            continue
        times.append((time.perf_counter() - t) * 1000)
        acked.append(i)
        starts.append(wall_t)
    wall = time.perf_counter() - t0 - paused
    s1 = stats(args.proxy)
    req = {k: s1.get(k, 0) - s0.get(k, 0) for k in s1 if s1.get(k, 0) != s0.get(k, 0)}
    ts = sorted(times)
    print(json.dumps({
        "attempts": i, "acked": acked, "errors": errors, "wall_s": wall,
        "median_ms": statistics.median(ts) if ts else None,
        "p99_ms": ts[max(0, math.ceil(len(ts) * 0.99) - 1)] if ts else None,
        "requests": req,
        "slowest": sorted(([i, round(ms, 1), round(s, 3)] for i, ms, s in zip(acked, times, starts)),
                          key=lambda x: -x[1])[:5],
    }), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # a crash right after the last acknowledged commit


# --- the driver: the moto venv's Python ----------------------------------------------------

def restored(env: dict, root: Path, tmp: Path, name: str, moto: str, tag: str) -> dict:
    """The replica `name` as `litestream restore` gives it: its rows' ids and the counter."""
    cfg, db, out = tmp / f"{name}.yml", tmp / f"{name}.db", tmp / f"{name}-{tag}.db"
    cfg.write_text(f"dbs:\n  - path: {db}\n    replica:\n      type: s3\n      bucket: bench\n"
                   f"      path: {name}\n      endpoint: {moto}\n      region: us-east-1\n"
                   f"      force-path-style: true\n")
    out.unlink(missing_ok=True)
    r = subprocess.run([str(root / LITESTREAM), "restore", "-config", str(cfg), "-o", str(out), str(db)],
                       env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip()[-300:]}
    c = sqlite3.connect(out)
    try:
        ids = {row[0] for row in c.execute("SELECT id FROM items")}
        n = c.execute("SELECT n FROM counter").fetchone()[0]
        check = c.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.Error as e:
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        c.close()
    return {"ids": ids, "counter": n, "integrity": check}


def configurations(root: Path, tmp: Path, proxy: str, lib: Path) -> dict[str, tuple[str, str, dict]]:
    """name -> (library, URI, extra environment): the replica of each is s3://bench/<name>."""
    def ltx(name: str, extra: str) -> str:
        url = f"s3://bench/{name}%3Fendpoint={proxy}%26region=us-east-1%26forcePathStyle=true"
        return f"file:{name}.db?vfs=ltx&write=1{extra}&replica={url}"

    def ls(name: str, extra: dict) -> dict:
        return {"LITESTREAM_REPLICA_URL": f"s3://bench/{name}?endpoint={proxy}&region=us-east-1&forcePathStyle=true",
                "LITESTREAM_WRITE_ENABLED": "true", "LITESTREAM_LOG_FILE": str(tmp / f"{name}.log"), **extra}

    ls_lib = str(root / LS_VFS)
    return {
        "ltx-commit": (str(lib), ltx("ltx-commit", ""), {}),
        "ltx-1s": (str(lib), ltx("ltx-1s", f"&sync=1s&buffer={tmp}/ltx-1s.buffer"), {}),
        "ls-default": (ls_lib, "file:ls-default.db?vfs=litestream", ls("ls-default", {})),
        "ls-1s": (ls_lib, "file:ls-1s.db?vfs=litestream",
                  ls("ls-1s", {"LITESTREAM_SYNC_INTERVAL": "1s",
                               "LITESTREAM_BUFFER_PATH": str(tmp / "ls-1s.buffer")})),
    }


def run_config(name: str, lib: str, uri: str, extra: dict, ctx: dict) -> dict:
    args, root, tmp = ctx["args"], ctx["root"], ctx["tmp"]
    env = dict(ctx["env"], **extra)
    cmd = ["/usr/bin/python3", str(Path(__file__).resolve()), "--worker", "--lib", lib, "--uri", uri,
           "--proxy", ctx["proxy"]]
    from bench import run_measure
    print(f"{name:10} {args.commits} commits ...", file=sys.stderr)
    try:
        got = run_measure(cmd + ["--commits", str(args.commits), "--min-s", str(args.min_s), "--burst",
                                 str(args.burst), "--pause-s", str(args.pause_s)], env, 300)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 300 s"}
    if "acked" not in got:
        return {"error": str(got.get("error"))[-300:]}
    acked, req = set(got["acked"]), got["requests"]
    n = len(acked)
    res = {
        "commits": n, "errors": len(got["errors"]),
        "median_ms": got["median_ms"], "p99_ms": got["p99_ms"],
        "commits_per_s": n / got["wall_s"],
        "requests_per_commit": req.get("total", 0) / n if n else None,
        **{f"requests_per_commit_{k}": v / n for k, v in req.items() if k != "total" and n},
    }
    for tag in ("crash", "reopen"):
        if tag == "reopen":
            again = run_measure(cmd + ["--reopen"], env, 120)
            if "error" in again:
                res["reopen_error"] = again["error"][-200:]
        r = restored(ctx["env"], root, tmp, name, ctx["moto"], tag)
        if "error" in r:
            res[f"restored_{tag}_error"] = r["error"]
            continue
        res[f"restored_after_{tag}"] = len(r["ids"])
        res[f"acked_missing_after_{tag}"] = len(acked - r["ids"])
        res[f"counter_after_{tag}"] = r["counter"]
        if r["integrity"] != "ok":
            res[f"integrity_after_{tag}"] = r["integrity"]
    res["first_errors"], res["slowest"] = got["errors"][:3], got["slowest"]
    log = tmp / f"{name}.log"  # Litestream's VFS logs its background syncs' failures here
    if log.exists():
        bad = [line for line in log.read_text(errors="replace").splitlines() if "level=ERROR" in line]
        res["vfs_log_errors"] = len(bad)
        res["first_errors"] += [f"log: {line[:300]}" for line in bad[:3]]
    return res


def main() -> None:
    from bench import Proxy, free_port, print_comparison, stop_all, wait_port
    import boto3

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--commits", type=int, default=500)
    ap.add_argument("--burst", type=int, default=100, help="commits between pauses")
    ap.add_argument("--pause-s", type=float, default=1.5, help="idle time after each burst (not timed)")
    ap.add_argument("--min-s", type=float, default=0, help="keep committing at least this long (pauses aside)")
    ap.add_argument("--configs", default="ltx-commit,ltx-1s,ls-default,ls-1s")
    ap.add_argument("--lib", type=Path, help="the ltxvfs library to measure (default: target/release)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    root = args.root.resolve()
    env = {k: v for k, v in os.environ.items()
           if k != "AWS_CA_BUNDLE" and not k.startswith(("LITESTREAM_", "LTXVFS_"))}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    procs: list[subprocess.Popen] = []
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ltxvfs-bench-write-") as tmp:
        tmp = Path(tmp)
        try:
            moto_port, proxy_port = free_port(), free_port()
            procs.append(subprocess.Popen([str(root / ".tools/moto/bin/moto_server"), "-H", "127.0.0.1",
                                           "-p", str(moto_port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(moto_port)
            proxy = Proxy(proxy_port, moto_port, args.delay_ms / 1000)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            moto = f"http://127.0.0.1:{moto_port}"
            boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="bench",
                         aws_secret_access_key="bench-secret").create_bucket(Bucket="bench")
            proxy_url = f"http://127.0.0.1:{proxy_port}"
            ctx = {"args": args, "root": root, "tmp": tmp, "env": env, "proxy": proxy_url,
                   "moto": moto}
            configs = configurations(root, tmp, proxy_url, args.lib or root / "target/release/libltxvfs")
            for name in args.configs.split(","):
                results[name] = run_config(name, *configs[name], ctx)
        finally:
            stop_all(procs, 10)

    print(f"\nwrite mode: ltxvfs vs Litestream VFS 0.5.17, {args.delay_ms:g} ms per request, "
          f"{args.commits} commits each in bursts of {args.burst}, {args.pause_s:g} s apart, then SIGKILL")
    table = {n: {k: v for k, v in r.items() if k not in ("first_errors", "slowest")} for n, r in results.items()}
    print_comparison(table, list(results), ("ltx-1s", "ls-1s"))
    for name, r in results.items():
        for e in r.get("first_errors", []):
            print(f"{name}: {e}")
    for name, r in results.items():
        if "commits" in r:
            print(f"{name}: acknowledged {r['commits']}, restored after crash "
                  f"{r.get('restored_after_crash', '?')}, after reopen {r.get('restored_after_reopen', '?')}")
    if args.out:
        lib = str(args.lib or "target/release/libltxvfs")
        args.out.write_text(json.dumps({"delay_ms": args.delay_ms, "commits": args.commits, "lib": lib,
                                        "burst": args.burst, "pause_s": args.pause_s,
                                        "min_s": args.min_s, "results": results}, indent=2) + "\n")
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main()
