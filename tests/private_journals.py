#!/usr/bin/python3
"""Write mode's local files are private to the user who writes (issue 22).

    /usr/bin/python3 tests/private_journals.py LIB

As root: root writes a file:// replica with write=1, then the unprivileged user `nobody`
(setpriv, no groups) writes to the same replica in its own process, with the same temp
directory, and must commit unhindered; while its transaction is open, its journal directory
is 0700 and its journal 0600, both its own. A symlink planted at the old shared journal
directory (`$TMPDIR/ltxvfs-journals`) must have no effect: nothing appears where it points.
A directory another user planted at the writer's own place is refused with a sentence
(SQLITE_CANTOPEN, `ltx_last_error()`), nothing written where it points, and the write goes
through once it is gone. `litestream`-free: the oracle is a fresh reader of the replica.

Skips (exit 0, with the reason printed) when not root or without setpriv.
"""
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile

NOBODY = 65534


def connect(lib, replica):
    loader = sqlite3.connect(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(lib)
    db = sqlite3.connect(
        f"file:app.db?vfs=ltx&write=1&replica=file://{replica}", uri=True,
        isolation_level=None,
    )
    return loader, db


def mode_of(path):
    st = os.lstat(path)
    return {"mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
            "link": stat.S_ISLNK(st.st_mode)}


def writer(lib, replica, value):
    """One write transaction; prints what it saw as JSON."""
    _loader, db = connect(lib, replica)
    out = {"uid": os.geteuid()}
    try:
        db.execute("BEGIN")
        db.execute("CREATE TABLE IF NOT EXISTS t(who INTEGER, x TEXT)")
        db.execute("INSERT INTO t VALUES (?, ?)", (os.geteuid(), value))
        # The transaction is open: its journal exists now.
        jdir = os.path.join(tempfile.gettempdir(), f"ltxvfs-{os.geteuid()}", "journals")
        out["dir"] = mode_of(jdir)
        out["files"] = {n: mode_of(os.path.join(jdir, n)) for n in os.listdir(jdir)}
        db.execute("COMMIT")
        out["committed"] = True
    except sqlite3.Error as e:
        out["error"] = str(e)
        out["last_error"] = db.execute("SELECT ltx_last_error()").fetchone()[0]
    print(json.dumps(out), flush=True)


def run(lib, replica, value, tmp, as_nobody):
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = tmp
    cmd = [sys.executable, __file__, "--writer", lib, replica, value]
    if as_nobody:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    if p.returncode != 0:
        raise SystemExit(f"writer {value} exited {p.returncode}: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    if sys.argv[1:2] == ["--writer"]:
        writer(*sys.argv[2:5])
        return 0
    if os.geteuid() != 0:
        print("private_journals: skipped (needs root to run a writer as a second user)")
        return 0
    if shutil.which("setpriv") is None:
        print("private_journals: skipped (no setpriv)")
        return 0
    src = os.path.abspath(sys.argv[1])
    src = src if src.endswith(".so") else src + ".so"
    work = tempfile.mkdtemp(prefix="ltxvfs-private-journals-")
    failures = []

    def check(ok, what):
        print(f"{'ok' if ok else 'FAILED'}: {what}", flush=True)
        if not ok:
            failures.append(what)

    try:
        os.chmod(work, 0o755)
        lib = os.path.join(work, "libltxvfs.so")
        shutil.copy(src, lib)
        os.chmod(lib, 0o755)
        tmp = os.path.join(work, "tmp")  # a /tmp of the test's own: sticky, world-writable
        os.mkdir(tmp)
        os.chmod(tmp, 0o1777)
        replica = os.path.join(work, "replica")
        os.mkdir(replica)
        victim = os.path.join(work, "victim")
        os.mkdir(victim)
        # The old shared place, planted by someone else: must be left alone.
        os.symlink(victim, os.path.join(tmp, "ltxvfs-journals"))

        first = run(lib, replica, "root", tmp, as_nobody=False)
        check(first.get("committed") is True, f"root commits: {first}")
        check(first.get("dir", {}).get("mode") == "0o700", "root's journal directory is 0700")
        check(all(f["mode"] == "0o600" and not f["link"] for f in first.get("files", {}).values())
              and any(n.endswith("-journal") for n in first.get("files", {})),
              "root's journal is 0600 while the transaction is open")

        # The replica is the second user's to write to (as a shared replica dir would be).
        for d, _, files in os.walk(replica):
            os.chown(d, NOBODY, NOBODY)
            for f in files:
                os.chown(os.path.join(d, f), NOBODY, NOBODY)

        # Someone (here root) took the second user's place first, as a symlink: refused with
        # a sentence, nothing created where it points.
        planted = os.path.join(tmp, f"ltxvfs-{NOBODY}")
        os.symlink(victim, planted)
        refused = run(lib, replica, "refused", tmp, as_nobody=True)
        check("error" in refused and "is a symlink" in (refused.get("last_error") or ""),
              f"a planted directory is refused with a sentence: {refused}")
        os.remove(planted)

        second = run(lib, replica, "nobody", tmp, as_nobody=True)
        check(second.get("uid") == NOBODY and second.get("committed") is True,
              f"nobody commits after root: {second}")
        check(second.get("dir", {}).get("mode") == "0o700"
              and second.get("dir", {}).get("uid") == NOBODY,
              "nobody's journal directory is 0700 and its own")
        files = second.get("files", {})
        check(any(n.endswith("-journal") for n in files)
              and all(f["mode"] == "0o600" and f["uid"] == NOBODY for f in files.values()),
              f"nobody's journal is 0600 and its own while the transaction is open: {files}")
        check(os.listdir(victim) == [], "nothing was created through the planted symlinks")

        _loader, db = connect(lib, replica)
        rows = db.execute("SELECT who, x FROM t ORDER BY rowid").fetchall()
        check(rows == [(0, "root"), (NOBODY, "nobody")], f"the replica holds both writes: {rows}")
        db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    passed = not failures
    print(f"private_journals: {int(passed)} passed, {int(not passed)} failed")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
