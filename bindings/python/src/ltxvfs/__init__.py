"""ltxvfs: a Litestream replica in object storage as a live, read-only SQLite database.

The package ships the SQLite extension ``libltxvfs.so``. Loading it into any connection
registers the ``ltx`` VFS for the whole process; databases are then opened through it with a
URI: ``file:NAME?vfs=ltx&replica=URL``.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
import threading
from pathlib import Path
from typing import Any, Union
from urllib.parse import quote

__all__ = ["loadable_path", "load", "connect", "last_error", "SETTINGS"]
__version__ = "0.1.0"

#: The settings ``connect`` takes, as the extension's URI parameters name them.
SETTINGS = ("cache_size", "cache_dir", "cache_dir_size", "timeout", "poll", "hydrate", "txid", "time", "min_txid")

# The keywords ``connect`` hands to ``sqlite3.connect`` (``database`` and ``uri`` are its own).
_CONNECT_ARGS = ("detect_types", "isolation_level", "check_same_thread", "factory", "cached_statements", "autocommit")

_NO_EXTENSIONS = (
    "this Python's sqlite3 module cannot load extensions (it was built without "
    "--enable-loadable-sqlite-extensions). Use a Python that can (Debian's and Ubuntu's "
    "/usr/bin/python3, python.org and Homebrew builds; with pyenv, install with "
    "PYTHON_CONFIGURE_OPTS=--enable-loadable-sqlite-extensions), or apsw "
    "(pip install apsw) with ltxvfs.load(apsw.Connection(':memory:'))"
)

_loaded = False
_loading = threading.Lock()


def loadable_path() -> str:
    """The path of the extension library inside this package."""
    return str(Path(__file__).with_name("libltxvfs.so"))


def load(conn: Any) -> None:
    """Loads the extension into ``conn``, a ``sqlite3.Connection`` or an ``apsw.Connection``.

    The ``ltx`` VFS it registers stays for the life of the process, for every connection.
    Extension loading is switched on only for the call.

    Raises ``RuntimeError`` when the connection's module cannot load extensions.
    """
    enable = getattr(conn, "enable_load_extension", None)
    if enable is None or not hasattr(conn, "load_extension"):
        raise RuntimeError(_NO_EXTENSIONS)
    enable(True)
    try:
        conn.load_extension(loadable_path())
    finally:
        enable(False)


def _ensure_loaded() -> None:
    global _loaded
    with _loading:
        if not _loaded:
            conn = sqlite3.connect(":memory:")
            try:
                load(conn)
            finally:
                conn.close()
            _loaded = True


def _setting(value: Union[str, int, float, _dt.datetime]) -> str:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("time: give an aware datetime (with tzinfo), e.g. in UTC")
        return value.isoformat()
    return str(value)


def connect(replica_url: str, *, name: str = "replica.db", **options: Any) -> sqlite3.Connection:
    """Opens the replica at ``replica_url`` (``s3://bucket/app.db``, ``file:///dir``, ...)
    as a read-only ``sqlite3.Connection``.

    ``options`` are the extension's settings (``cache_size="64MiB"``, ``timeout="30s"``,
    ``poll="1s"``, ``hydrate=path``, ``txid="4b"``, ``time=datetime or "5 minutes ago"``);
    ``sqlite3.connect``'s own keywords go to it (``check_same_thread=False``, ...); any
    other is a ``TypeError`` naming the valid ones.
    ``name`` is only a label: nothing is read or written under it.
    """
    if not replica_url:
        raise ValueError("replica_url is empty")
    _ensure_loaded()
    params = [("vfs", "ltx"), ("mode", "ro"), ("replica", replica_url)]
    connect_args = {}
    for key, value in options.items():
        if key in SETTINGS:
            if value is not None:
                params.append((key, _setting(value)))
        elif key in _CONNECT_ARGS:
            connect_args[key] = value
        else:
            raise TypeError(
                f"ltxvfs.connect: unknown setting {key!r} (settings: {', '.join(SETTINGS)}; "
                f"sqlite3.connect arguments: {', '.join(_CONNECT_ARGS)})"
            )
    query = "&".join(f"{key}={quote(str(value), safe='')}" for key, value in params)
    try:
        return sqlite3.connect(f"file:{quote(name)}?{query}", uri=True, **connect_args)
    except sqlite3.OperationalError as e:
        # SQLite says only "unable to open database file"; the extension knows why.
        why = last_error()
        if why:
            raise sqlite3.OperationalError(f"{e}: {why}") from e
        raise


def last_error() -> Union[str, None]:
    """The sentence behind the extension's last error in this process (why an open
    failed), or None."""
    _ensure_loaded()
    conn = sqlite3.connect(":memory:")
    try:
        return conn.execute("SELECT ltx_last_error()").fetchone()[0]
    finally:
        conn.close()
