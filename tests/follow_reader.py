#!/usr/bin/python3
"""A reader process for the follow tests: reads a live replica through the loadable
extension until told to stop, checking in every read transaction that the ledger's total is
constant and the transaction counter never goes backwards.

    /usr/bin/python3 tests/follow_reader.py LIB REPLICA_URL TOTAL STOP_FILE

Prints "reads=N max_counter=M" and exits 1 on any violation, 2 on an error.
"""
import os
import sqlite3
import sys
import time

lib, url, total, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
loader = sqlite3.connect(":memory:")
loader.enable_load_extension(True)
loader.load_extension(lib)
conn = sqlite3.connect(f"file:app.db?vfs=ltx&replica={url}", uri=True, isolation_level=None)
reads, last = 0, -1
while not os.path.exists(stop):
    try:
        conn.execute("BEGIN")
        balance = conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
        n1 = conn.execute("SELECT n FROM counter").fetchone()[0]
        conn.execute("SELECT count(*) FROM filler").fetchone()
        n2 = conn.execute("SELECT n FROM counter").fetchone()[0]
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        print(f"error after {reads} reads: {e}", flush=True)
        sys.exit(2)
    if balance != total or n1 != n2 or n1 < last:
        print(f"VIOLATION: total={balance} counter {n1} then {n2}, before {last}", flush=True)
        sys.exit(1)
    last, reads = n1, reads + 1
    time.sleep(0.005)
print(f"reads={reads} max_counter={last}", flush=True)
