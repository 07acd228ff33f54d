"""sqlite-utils plugin (entry point ``sqlite_utils``): registers the ``ltx`` VFS when
sqlite-utils loads its plugins, so that its CLI opens replica URIs as it opens files::

    sqlite-utils query 'file:app.db?vfs=ltx&replica=s3://bucket/app.db' 'select count(*) from orders'

The VFS must exist before the open, and sqlite-utils loads extensions (``--load-extension``)
only after it: its CLI imports plugins first, which is when this module loads the extension
(on a throwaway ``:memory:`` connection, so nothing of the host's changes). sqlite-utils opens
paths without ``uri=True``, so the URI works where SQLite reads file names as URIs by default
(``SQLITE_USE_URI``, as Debian and Ubuntu build it); elsewhere, and from Python, pass a
connection: ``sqlite_utils.Database(ltxvfs.connect("s3://bucket/app.db"))``.
"""

from __future__ import annotations

import sqlite3
import warnings

from sqlite_utils import hookimpl

import ltxvfs

try:
    ltxvfs._ensure_loaded()
    _why_not = None
except (RuntimeError, sqlite3.Error) as e:
    # Never break sqlite-utils for local files: say why replica URIs will not open.
    _why_not = str(e)
    warnings.warn(f"ltxvfs: replica URIs will not open in sqlite-utils: {e}", stacklevel=1)


@hookimpl
def prepare_connection(conn: sqlite3.Connection) -> None:
    # The first connection of sqlite-utils' Python API is opened before its plugins load,
    # so before the extension's automatic registration: give it the ltx_* functions too
    # (loading again only adds them; the VFS stays registered once).
    if _why_not is None:
        ltxvfs.load(conn)
