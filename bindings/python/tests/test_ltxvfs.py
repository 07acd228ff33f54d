"""The installed ltxvfs wheel, in the interpreter that runs pytest, against the replica the
real litestream wrote for the golden SQL tests (sql-tests/replica: TXID 1 is
sql-tests/setup/schema.sql, TXID 2 adds changes.sql). `make python-test` runs it in a fresh
venv of the system python3, whose sqlite3 can load extensions."""

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import ltxvfs

REPLICA = Path(os.environ.get("LTXVFS_TEST_REPLICA", Path(__file__).parents[3] / "sql-tests" / "replica"))
URL = f"file://{REPLICA.resolve()}"


@pytest.fixture
def db():
    conn = ltxvfs.connect(URL, poll=0)
    yield conn
    conn.close()


def test_the_wheel_ships_the_library():
    path = Path(ltxvfs.loadable_path())
    assert path.is_file() and path.name == "libltxvfs.so"
    # The installed package, not the source tree.
    assert "site-packages" in str(path), path


def test_queries(db):
    assert db.execute("SELECT count(*) FROM orders").fetchone() == (1980,)
    assert db.execute("SELECT count(*) FROM customers WHERE city = 'Porto'").fetchone() == (8,)
    top = db.execute(
        "SELECT c.name, sum(o.qty) AS n FROM orders o JOIN customers c ON c.id = o.customer_id "
        "GROUP BY c.id ORDER BY n DESC, c.id LIMIT 1"
    ).fetchone()
    assert top[0].startswith("customer ") and top[1] > 0
    (size,) = db.execute("SELECT length(body) FROM documents WHERE name = 'manual'").fetchone()
    assert size == 120000


def test_pragmas(db):
    assert db.execute("PRAGMA ltx_txid").fetchone() == ("0000000000000002",)
    (written,) = db.execute("PRAGMA ltx_time").fetchone()
    assert dt.datetime.fromisoformat(written.replace("Z", "+00:00")).year >= 2026
    db.execute("SELECT count(*) FROM orders").fetchone()
    stats = json.loads(db.execute("PRAGMA ltx_stats").fetchone()[0])
    assert stats["pages_read"] > 0 and stats["files"] >= 1


def test_time_travel(db):
    past = ltxvfs.connect(URL, poll=0, txid="1")
    assert past.execute("SELECT count(*) FROM orders").fetchone() == (2000,)
    assert past.execute("PRAGMA ltx_txid").fetchone() == ("0000000000000001",)
    past.close()
    # On an open connection, and back.
    db.execute("PRAGMA ltx_txid = '1'")
    assert db.execute("SELECT count(*) FROM products").fetchone() == (40,)
    db.execute("PRAGMA ltx_time = latest")
    assert db.execute("SELECT count(*) FROM products").fetchone() == (41,)
    # A time before anything was replicated reaches nothing.
    with pytest.raises(sqlite3.OperationalError, match="ltxvfs|before"):
        ltxvfs.connect(URL, poll=0, time=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))


def test_read_only(db):
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("INSERT INTO products VALUES ('SKU-X', 'x', 1)")


def test_errors_say_why():
    with pytest.raises(sqlite3.OperationalError, match="nonexistent/replica is not a directory"):
        ltxvfs.connect("file:///nonexistent/replica")
    with pytest.raises(sqlite3.OperationalError, match="cache_size"):
        ltxvfs.connect(URL, cache_size="lots")
    assert "is not a directory" in ltxvfs.last_error() or "cache_size" in ltxvfs.last_error()
    with pytest.raises(ValueError):
        ltxvfs.connect("")


def test_connect_passes_driver_arguments():
    conn = ltxvfs.connect(URL, poll=0, check_same_thread=False)
    out = []
    t = threading.Thread(target=lambda: out.append(conn.execute("SELECT count(*) FROM customers").fetchone()))
    t.start()
    t.join()
    assert out == [(400,)]
    conn.close()


def test_an_unknown_keyword_names_the_valid_settings():
    # A typo must not reach sqlite3.connect as a bare TypeError (issue #16), nor be dropped.
    with pytest.raises(TypeError) as e:
        ltxvfs.connect(URL, cache_sz="1MiB")
    message = str(e.value)
    assert "'cache_sz'" in message
    assert all(name in message for name in ltxvfs.SETTINGS), message
    assert "check_same_thread" in message


def test_load_then_uri():
    ltxvfs.load(sqlite3.connect(":memory:"))
    conn = sqlite3.connect(f"file:app.db?vfs=ltx&replica={URL}&poll=0", uri=True)
    assert conn.execute("SELECT count(*) FROM products").fetchone() == (41,)
    conn.close()


def test_a_module_without_extension_loading_is_a_runtime_error():
    class NoExtensions:  # what sqlite3.Connection looks like when built without them
        pass

    with pytest.raises(RuntimeError, match="apsw"):
        ltxvfs.load(NoExtensions())


def run_alone(code):
    """Runs `code` in a fresh interpreter: the tests above loaded the extension into
    Python's sqlite3 library, and a process can use only one SQLite library with it."""
    env = dict(os.environ, LTXVFS_TEST_URL=URL)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_apsw():
    pytest.importorskip("apsw")
    result = run_alone(
        "import apsw, os, ltxvfs\n"
        "ltxvfs.load(apsw.Connection(':memory:'))\n"
        "c = apsw.Connection('file:app.db?vfs=ltx&poll=0&replica=' + os.environ['LTXVFS_TEST_URL'],\n"
        "                    flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)\n"
        "print(c.execute('SELECT count(*) FROM orders').fetchall()[0][0])\n"
        "print(c.execute('PRAGMA ltx_txid').fetchall()[0][0])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1980", "0000000000000002"]


def test_two_sqlite_libraries_in_one_process_is_a_clear_error():
    pytest.importorskip("apsw")
    result = run_alone(
        "import apsw, sqlite3, ltxvfs\n"
        "ltxvfs.load(sqlite3.connect(':memory:'))\n"
        "try:\n"
        "    ltxvfs.load(apsw.Connection(':memory:'))\n"
        "except apsw.Error as e:\n"
        "    print(e)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "another SQLite library" in result.stdout


def test_default_vfs_for_plain_names(tmp_path):
    # For drivers that cannot pass URIs: map a plain name, make ltx the default, open it.
    result = run_alone(
        "import os, sqlite3, ltxvfs\n"
        f"os.chdir({str(tmp_path)!r})\n"
        "c = sqlite3.connect(':memory:')\n"
        "ltxvfs.load(c)\n"
        "c.execute(\"SELECT ltx_register('app.db', ?, 'poll=0')\", (os.environ['LTXVFS_TEST_URL'],))\n"
        "c.execute('SELECT ltx_default_vfs(1)')\n"
        "print(sqlite3.connect('app.db').execute('SELECT count(*) FROM orders').fetchone()[0])\n"
        "try:\n"
        "    sqlite3.connect('other.db').execute('SELECT 1')\n"
        "except sqlite3.OperationalError as e:\n"
        "    print('unmapped:', e)\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1980"
    assert lines[1].startswith("unmapped: unable to open")
    assert not (tmp_path / "other.db").exists()


def test_environment_makes_ltx_the_default_vfs(tmp_path):
    # As with Litestream's VFS: LTXVFS_DEFAULT_VFS=1 at load, the replica URL from the
    # environment, any plain name opens it.
    env = dict(os.environ, LTXVFS_DEFAULT_VFS="1", LTXVFS_REPLICA_URL=URL, LTXVFS_POLL="0")
    code = (
        "import sqlite3, ltxvfs\n"
        "ltxvfs.load(sqlite3.connect(':memory:'))\n"
        "db = sqlite3.connect('whatever.db')\n"
        "print(db.execute('SELECT count(*) FROM orders').fetchone()[0])\n"
        "print(db.execute('PRAGMA ltx_txid').fetchone()[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1980", "0000000000000002"]
    assert not (tmp_path / "whatever.db").exists()


def test_shared_cache_memory_databases_opened_after_the_switch_stay_shared():
    # SQLite keys a shared-cache in-memory database by VFS and name, and never asks the VFS
    # to open it: connections opened after ltx_default_vfs(1) share one, as before it. (One
    # opened before the switch and one after would be two: switch first, README.)
    result = run_alone(
        "import sqlite3, ltxvfs\n"
        "c = sqlite3.connect(':memory:')\n"
        "ltxvfs.load(c)\n"
        "c.execute('SELECT ltx_default_vfs(1)')\n"
        "uri = 'file:shared?mode=memory&cache=shared'\n"
        "a = sqlite3.connect(uri, uri=True)\n"
        "a.execute('CREATE TABLE t(x)'); a.execute(\"INSERT INTO t VALUES ('seen')\"); a.commit()\n"
        "b = sqlite3.connect(uri, uri=True)\n"
        "print(b.execute('SELECT x FROM t').fetchone()[0])\n"
        "t = sqlite3.connect('')\n"  # a temporary database: the default VFS's, not a replica
        "t.execute('CREATE TABLE t(x)'); print(t.execute('SELECT count(*) FROM t').fetchone()[0])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["seen", "0"]


def test_fork(tmp_path):
    # Both states of the source, as new replicas; a fork at TXID 1 is a hard link of the
    # source's file, so the source is read, never written.
    past = f"file://{tmp_path / 'past'}"
    assert ltxvfs.fork(URL, past, txid=1) == "0000000000000001"
    latest = f"file://{tmp_path / 'latest'}"
    assert ltxvfs.fork(URL, latest) == "0000000000000002"
    with ltxvfs.connect(past, poll=0) as db:
        assert db.execute("SELECT count(*) FROM orders").fetchone() == (2000,)
    with ltxvfs.connect(latest, poll=0) as db:
        assert db.execute("SELECT count(*) FROM orders").fetchone() == (1980,)
        assert db.execute("PRAGMA ltx_txid").fetchone() == ("0000000000000002",)
    # A time: the newest state written by now.
    now = dt.datetime.now(dt.timezone.utc)
    assert ltxvfs.fork(URL, f"file://{tmp_path / 'now'}", time=now) == "0000000000000002"
    with pytest.raises(sqlite3.OperationalError, match="no LTX files"):
        ltxvfs.fork(URL, past)
    with pytest.raises(ValueError):
        ltxvfs.fork(URL, f"file://{tmp_path / 'x'}", txid=1, time=now)
