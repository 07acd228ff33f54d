"""Datasette plugin (entry point ``datasette``): serves Litestream replicas, read-only and
live, as Datasette databases.

Configured the Datasette way, under ``plugins`` in ``metadata.json`` (Datasette 0.65, ``-m``)
or ``datasette.yaml`` (1.0, ``-c``; or ``-s plugins.ltxvfs.databases.app URL``)::

    {"plugins": {"ltxvfs": {"databases": {
        "app": "s3://bucket/app.db",
        "old": {"replica": "s3://bucket/app.db", "txid": "4b", "cache_size": "16MiB"}
    }}}}

Each database is opened through the ``ltx`` VFS by URI (``ltxvfs.connect``), never by
making ``ltx`` the default VFS, so Datasette's own in-memory databases are untouched. The
status functions (``ltx_txid()``, ``ltx_lag()``, ...) answer in its SQL editor.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Dict, Tuple

from datasette import hookimpl
from datasette.database import Database

import ltxvfs

# Loaded when Datasette loads its plugins, before it opens any database. This matters for
# the no-URI route (LTXVFS_DEFAULT_VFS=1 with LTXVFS_REPLICA_URL): SQLite keys a shared-cache
# in-memory database (Datasette's internal one) by VFS as well as name, so the default must
# change before the first of its connections opens, not between two of them.
try:
    ltxvfs._ensure_loaded()
except (RuntimeError, sqlite3.Error) as e:
    # Local databases still work; each replica's connect() raises the same sentence.
    import warnings

    warnings.warn(f"ltxvfs: replicas will not open in Datasette: {e}", stacklevel=1)


def replicas(config: Any) -> Dict[str, Tuple[str, Dict[str, str]]]:
    """The plugin config's databases as ``{name: (replica URL, settings)}``.

    Raises ``ValueError`` naming what is wrong: a missing URL, an unknown setting.
    """
    databases = (config or {}).get("databases") or {}
    if not isinstance(databases, dict):
        raise ValueError("ltxvfs: plugins.ltxvfs.databases must map names to replica URLs")
    out = {}
    for name, spec in databases.items():
        if isinstance(spec, str):
            url, settings = spec, {}
        elif isinstance(spec, dict):
            settings = {k: str(v) for k, v in spec.items() if k != "replica"}
            url = spec.get("replica")
        else:
            url, settings = None, {}
        if not url:
            raise ValueError(
                f"ltxvfs: database {name!r} needs a replica URL: \"{name}\": \"s3://bucket/app.db\" "
                f"or {{\"replica\": \"s3://...\", \"cache_size\": \"16MiB\"}}"
            )
        unknown = sorted(set(settings) - set(ltxvfs.SETTINGS))
        if unknown:
            raise ValueError(
                f"ltxvfs: database {name!r}: unknown setting {', '.join(unknown)}; "
                f"valid: replica, {', '.join(ltxvfs.SETTINGS)}"
            )
        out[name] = (url, settings)
    return out


class ReplicaDatabase(Database):
    """A Datasette database read through the ``ltx`` VFS.

    Mutable in Datasette's sense (it changes under Datasette: table counts are not cached,
    no content hash), but every connection is read-only: a write fails with SQLITE_READONLY.
    """

    def __init__(self, ds: Any, name: str, url: str, settings: Dict[str, str]):
        super().__init__(ds, path=None, is_mutable=True)
        self.replica_url = url
        self.settings = settings
        self.label = name
        # What /-/databases.json shows as its path: the replica, not a local file.
        self.path = url

    def suggest_name(self) -> str:
        return self.label

    def connect(self, write: bool = False) -> sqlite3.Connection:
        # Datasette asks for a write connection only to write; the replica is read-only
        # either way, so both get one and a write fails with SQLITE_READONLY.
        conn = ltxvfs.connect(
            self.replica_url, name=f"{self.label}.db", check_same_thread=False, **self.settings
        )
        # Datasette 1.0 tracks connections here, 0.65 there; both close them in close().
        tracked = getattr(self, "_all_connections", None)
        if tracked is None:
            tracked = getattr(self, "_all_file_connections", [])
        tracked.append(conn)
        return conn

    @property
    def size(self) -> int:
        # The database's size as its pages say (Datasette skips row counts of large ones);
        # measured once, on a connection of its own.
        if self.cached_size is None:
            conn = self.connect()
            try:
                (self.cached_size,) = conn.execute(
                    "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"
                ).fetchone()
            finally:
                conn.close()
        return self.cached_size

    @property
    def mtime_ns(self) -> None:
        return None


@hookimpl
def startup(datasette: Any) -> None:
    for name, (url, settings) in replicas(datasette.plugin_config("ltxvfs")).items():
        if name in datasette.databases:
            raise ValueError(f"ltxvfs: a database named {name!r} is already served")
        datasette.add_database(ReplicaDatabase(datasette, name, url, settings), name=name)
