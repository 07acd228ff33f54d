"""Issue #22: a host that runs strangers' SQL (a SELECT box, Datasette) on its connections.

A fresh Python process loads the extension as the package does (a throwaway connection),
opens a local database and a replica, and runs every ltx_* SQL function with hostile
arguments on its connections. Judged by the effect on the host, as an attacker would look:
its later opens get their own file and the replica's latest state, no local file changed,
a loopback listener was never contacted, no other thread's error was readable."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPLICA = Path(os.environ.get("LTXVFS_TEST_REPLICA", Path(__file__).parents[3] / "sql-tests" / "replica"))
URL = f"file://{REPLICA.resolve()}"

HOST = textwrap.dedent(
    r"""
    import hashlib, json, os, socket, sqlite3, sys, threading
    import ltxvfs

    url, work = sys.argv[1], sys.argv[2]
    local_path = os.path.join(work, "local.db")
    victim = os.path.join(work, "victim.txt")
    with open(victim, "w") as f:
        f.write("the host's file")
    local = sqlite3.connect(local_path)
    local.execute("CREATE TABLE t(x)")
    local.execute("INSERT INTO t VALUES ('mine')")
    local.commit()

    # A loopback listener: a request to an endpoint the visitor chose would land here.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    contacted = []
    stop = threading.Event()
    def accept():
        while not stop.is_set():
            try:
                c, _ = listener.accept()
                contacted.append(c.recv(200).decode("latin-1"))
                c.close()
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()

    # Another thread (another visitor) fails to open something secret.
    secret = "/srv/someone-elses/replica"
    def other_visitor():
        try:
            ltxvfs.connect("file://" + secret)
        except sqlite3.OperationalError:
            pass
    t = threading.Thread(target=other_visitor)
    t.start()
    t.join()

    replica = ltxvfs.connect(url, check_same_thread=False, poll="0")
    # A local connection opened after the extension loaded: it has the status functions.
    local = sqlite3.connect(local_path)
    latest = replica.execute("SELECT ltx_txid()").fetchone()[0]
    endpoint = f"s3://b/app.db?endpoint=http://127.0.0.1:{port}"
    hostile = [
        "SELECT ltx_default_vfs(1)",
        "SELECT ltx_default_vfs('on')",
        f"SELECT ltx_register('{local_path}', '{url}')",
        f"SELECT ltx_register('app.db', '{url}', 'hydrate={victim}')",
        f"SELECT ltx_register('replica.db', '{url}', 'txid=1')",
        f"SELECT ltx_register('x.db', '{endpoint}')",
        f"SELECT ltx_register('x.db', 'gs://b/p?endpoint=http://127.0.0.1:{port}')",
        "SELECT ltx_set_time('2000-01-01T00:00:00Z')",
        "SELECT ltx_set_time('1 second ago', 'main')",
        "SELECT litestream_set_time('latest')",
        "SELECT ltx_set_time(x'00ff', 'main')",
        "SELECT ltx_register(NULL, NULL, NULL)",
        "SELECT ltx_last_error(1)",
    ]
    # (ATTACH and PRAGMA are statements, not functions: a host that runs strangers' SQL
    # allows SELECT only, as Datasette does; README "Security".)
    outcomes = {}
    for conn in (replica, local):
        for sql in hostile:
            try:
                conn.execute(sql).fetchall()
                outcomes[sql] = "ran"
            except sqlite3.Error as e:
                outcomes[sql] = str(e)
    errors = [c.execute("SELECT ltx_last_error()").fetchone()[0] for c in (replica, local)]

    # The host's later opens: its own file, the replica's latest state.
    again = sqlite3.connect(local_path)
    mine = again.execute("SELECT x FROM t").fetchone()[0]
    replica2 = ltxvfs.connect(url, poll="0")
    state = (replica2.execute("SELECT ltx_txid()").fetchone()[0], replica.execute("SELECT ltx_txid()").fetchone()[0])
    import time; time.sleep(0.5)
    stop.set()
    print(json.dumps({
        "outcomes": outcomes,
        "errors": errors,
        "thread_error": ltxvfs.last_error(),
        "secret": secret,
        "mine": mine,
        "latest": latest,
        "state": state,
        "victim": open(victim).read(),
        "contacted": contacted,
        "files": sorted(os.listdir(work)),
    }))
    """
)


def test_a_hosts_connections_cannot_be_steered_by_the_sql_they_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LTXVFS_TRUSTED_SQL"}
    out = subprocess.run(
        [sys.executable, "-c", HOST, URL, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    for sql, outcome in seen["outcomes"].items():
        assert outcome != "ran", f"{sql} ran on a connection the host did not trust"
    assert seen["mine"] == "mine", "the host's later open of its own file got another database"
    assert seen["state"] == [seen["latest"], seen["latest"]], "the replica is no longer at its latest state"
    assert seen["victim"] == "the host's file", "a local file was changed"
    assert seen["contacted"] == [], f"an endpoint the SQL chose was contacted: {seen['contacted']}"
    assert seen["files"] == ["local.db", "victim.txt"], seen["files"]
    for text in seen["errors"] + [seen["thread_error"]]:
        assert seen["secret"] not in (text or ""), f"another thread's error was readable: {text}"


def test_the_host_keeps_its_control_functions_through_the_api(tmp_path):
    # register and default_vfs are API calls, so a host never needs them in SQL.
    script = textwrap.dedent(
        r"""
        import sqlite3, sys, ltxvfs
        path = sys.argv[2] + "/mapped.db"
        full = ltxvfs.register(path, sys.argv[1], poll="0")
        assert ltxvfs.default_vfs(True) == "ltx"
        try:
            n = sqlite3.connect(path).execute("SELECT count(*) FROM orders").fetchone()[0]
        finally:
            assert ltxvfs.default_vfs(False) != "ltx"
        ltxvfs.register(path, None)
        trusted = ltxvfs.connect(sys.argv[1], poll="0", trusted_sql=True)
        back = trusted.execute("SELECT ltx_set_time('latest')").fetchone()[0]
        allowed = ltxvfs.connect(sys.argv[1], poll="0", sql_time_travel=True)
        also = allowed.execute("SELECT ltx_set_time('latest')").fetchone()[0]
        print(full == path, n, back == also)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, URL, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "1980", "True"], out.stdout
