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

__all__ = ["loadable_path", "load", "connect", "register", "default_vfs", "fork", "last_error", "SETTINGS"]
__version__ = "0.1.0"

#: The settings ``connect`` takes, as the extension's URI parameters name them.
SETTINGS = (
    "cache_size",
    "cache_dir",
    "cache_dir_size",
    "timeout",
    "poll",
    "hydrate",
    "txid",
    "time",
    "min_txid",
    "sql_time_travel",
)

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
    Extension loading is switched on only for the call. Loading is the host's trust: ``conn``
    gets the SQL functions that change state (``ltx_register``, ``ltx_default_vfs``,
    ``ltx_set_time``); connections opened later get only the status functions, unless
    ``LTXVFS_TRUSTED_SQL=1`` is set (README "Security").

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


def _setting(value: Union[str, int, float, bool, _dt.datetime]) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("time: give an aware datetime (with tzinfo), e.g. in UTC")
        return value.isoformat()
    return str(value)


def _control() -> sqlite3.Connection:
    """A private connection the extension is loaded on, which therefore has the functions
    that change state; nothing else runs SQL on it."""
    _ensure_loaded()
    return _trusted(sqlite3.connect(":memory:"))


def _trusted(conn: sqlite3.Connection) -> sqlite3.Connection:
    """``conn`` with the extension loaded on it (so trusted with the control functions), or
    closed if that fails."""
    try:
        load(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def register(name: str, replica_url: Union[str, None], **settings: Any) -> str:
    """Maps the file name ``name`` to the replica at ``replica_url`` with ``settings`` (as
    ``connect`` takes them), for drivers that open plain file names; ``None`` removes the
    mapping. Returns the full path the name maps. The same as ``ltx_register`` in SQL, which
    only trusted connections have.

    Raises ``sqlite3.OperationalError`` with the reason for a bad URL or setting.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"ltxvfs.register: unknown setting {', '.join(unknown)} (settings: {', '.join(SETTINGS)})")
    query = "&".join(
        f"{key}={quote(_setting(value), safe='')}" for key, value in settings.items() if value is not None
    )
    conn = _control()
    try:
        return conn.execute("SELECT ltx_register(?, ?, ?)", (name, replica_url, query)).fetchone()[0]
    finally:
        conn.close()


def default_vfs(on: bool) -> str:
    """Makes ``ltx`` the process's default VFS (``True``) or gives the place back
    (``False``); returns the default VFS's name after. The same as ``ltx_default_vfs`` in
    SQL, which only trusted connections have."""
    conn = _control()
    try:
        return conn.execute("SELECT ltx_default_vfs(?)", (1 if on else 0,)).fetchone()[0]
    finally:
        conn.close()


def connect(
    replica_url: str, *, name: str = "replica.db", trusted_sql: bool = False, **options: Any
) -> sqlite3.Connection:
    """Opens the replica at ``replica_url`` (``s3://bucket/app.db``, ``file:///dir``, ...)
    as a read-only ``sqlite3.Connection``.

    ``trusted_sql=True`` trusts the SQL run on this connection with the functions that change
    state (``ltx_set_time``, ``ltx_register``, ...): leave it off where strangers' SQL runs.
    ``sql_time_travel=True`` lets any SQL move this database in time with ``ltx_set_time``.

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
        conn = sqlite3.connect(f"file:{quote(name)}?{query}", uri=True, **connect_args)
    except sqlite3.OperationalError as e:
        # SQLite says only "unable to open database file"; the extension knows why.
        why = last_error()
        if why:
            raise sqlite3.OperationalError(f"{e}: {why}") from e
        raise
    return _trusted(conn) if trusted_sql else conn


def fork(
    source: str,
    target: str,
    txid: Union[str, int, None] = None,
    time: Union[str, _dt.datetime, None] = None,
) -> str:
    """Makes at ``target`` (a replica URL holding no LTX files) a replica whose state is
    ``source``'s at ``txid`` (an int, or hexadecimal text as ``PRAGMA ltx_txid`` prints it),
    at ``time`` (an aware datetime, RFC 3339 text or ``"5 minutes ago"``), or the newest
    state when neither is given. Returns the TXID of the fork's state as 16 hex digits; a
    writer (``write=1``) on ``target`` then commits the next TXID. The files are copied by
    the store where source and target share a bucket, container or filesystem.

    Raises ``sqlite3.OperationalError`` with the extension's sentence when it cannot fork.
    """
    if txid is not None and time is not None:
        raise ValueError("ltxvfs.fork: give txid or time, not both")
    at = None
    if txid is not None:
        at = format(txid, "x") if isinstance(txid, int) else str(txid)
    elif time is not None:
        at = _setting(time)
    # A connection the extension is loaded on: control functions are trusted there.
    conn = _control()
    try:
        return conn.execute("SELECT ltx_fork(?, ?, ?)", (source, target, at)).fetchone()[0]
    finally:
        conn.close()


def last_error() -> Union[str, None]:
    """The sentence behind the last failed open of a database through the extension on this
    thread, or None. (A connection's own errors: ``SELECT ltx_last_error()`` on it.)"""
    _ensure_loaded()
    conn = sqlite3.connect(":memory:")
    try:
        return conn.execute("SELECT ltx_last_error()").fetchone()[0]
    finally:
        conn.close()
