#!/usr/bin/python3
"""A process that used ltxvfs, then fork()s: the child must read the replica too.

    /usr/bin/python3 tests/fork_after_use.py LIB REPLICA_URL

The parent opens the replica (starting ltxvfs's IO runtime and its store) and keeps the
connection open; the child then reads pages the parent never read, through the inherited
replica, so it needs a runtime and a store client of its own (DESIGN.md decision 6). A hang
is a failure (alarm), as is a crash or a wrong count.
"""
import os
import signal
import sqlite3
import sys

lib, url = sys.argv[1], sys.argv[2]
loader = sqlite3.connect(":memory:")
loader.enable_load_extension(True)
loader.load_extension(lib)


def connect():
    return sqlite3.connect(f"file:app.db?vfs=ltx&replica={url}", uri=True)


parent = connect()
expected = parent.execute("SELECT count(*) FROM customers").fetchone()[0]

pid = os.fork()
if pid == 0:
    signal.alarm(20)
    try:
        child = connect()
        n = child.execute("SELECT count(*) FROM customers").fetchone()[0]
        orders = child.execute("SELECT count(*), sum(qty) FROM orders").fetchone()
        ok = n == expected and orders[0] > 0
        print(f"child: customers={n} orders={orders}", flush=True)
        os._exit(0 if ok else 1)
    except BaseException as e:  # noqa: BLE001 - any failure fails the test
        print(f"child failed: {e!r}", flush=True)
        os._exit(2)

_, status = os.waitpid(pid, 0)
# The parent still works after the fork as well.
again = parent.execute("SELECT count(*) FROM orders").fetchone()[0]
code = os.waitstatus_to_exitcode(status)
passed = code == 0 and again > 0
print(f"fork_after_use: {int(passed)} passed, {int(not passed)} failed")
sys.exit(0 if passed else 1)
