"""The ``ltxvfs.django`` database backend: Django's SQLite backend on a replica URL.

``NAME`` is the replica URL (``s3://bucket/app.db``, ``file:///dir``, ...) and ``OPTIONS``
the extension's URI settings (``{"write": True}`` for the writable alias, ``poll``,
``cache_size``, ``timeout`` ...); Django's own SQLite options (``init_command``,
``transaction_mode``) keep their meaning. A commit that lost the race for its TXID to
another writer reaches the view as ``django.db.OperationalError`` whose message says to
retry the transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Dict
from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.sqlite3 import base as sqlite_base

import ltxvfs

# Options that stay with sqlite3.connect / Django's SQLite backend; every other is a URI
# setting of the extension.
_DJANGO_OPTIONS = (
    "init_command",
    "transaction_mode",
    "detect_types",
    "isolation_level",
    "cached_statements",
    "check_same_thread",
    "factory",
)

#: What a lost race says after SQLite's own words.
RETRY = (
    "another writer committed this TXID first; nothing of this transaction was stored: "
    "retry the transaction (see ltxvfs.django's retry pattern)"
)

_BUSY = 5  # SQLITE_BUSY; its extended codes share the low byte.


def _uri_value(value: Any) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    return str(value)


def replica_uri(url: str, options: Dict[str, Any], label: str) -> str:
    """The ``file:`` URI that opens ``url`` through the ``ltx`` VFS with ``options``."""
    params = [("vfs", "ltx"), ("replica", url)]
    params += [(k, _uri_value(v)) for k, v in options.items() if v is not None]
    if not any(k == "write" and _uri_value(v) in ("1", "true") for k, v in options.items()):
        params.append(("mode", "ro"))
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params)
    return f"file:{quote(label)}?{query}"


def is_lost_race(e: BaseException) -> bool:
    """Whether ``e`` (a ``sqlite3`` or Django ``OperationalError``) is a commit refused
    because another writer took its TXID: retrying the transaction is the answer."""
    cause = e if isinstance(e, sqlite3.Error) else e.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _BUSY) or RETRY in str(e)


def _reworded(e: sqlite3.OperationalError) -> sqlite3.OperationalError:
    if is_lost_race(e) and RETRY not in str(e):
        again = sqlite3.OperationalError(f"{e}: {RETRY}")
        again.sqlite_errorcode = getattr(e, "sqlite_errorcode", None)  # type: ignore[attr-defined]
        return again
    return e


class CursorWrapper(sqlite_base.SQLiteCursorWrapper):
    """Django's SQLite cursor; a statement that commits (autocommit) and loses its race
    says to retry."""

    def execute(self, query, params=None):
        try:
            return super().execute(query, params)
        except sqlite3.OperationalError as e:
            raise _reworded(e) from e

    def executemany(self, query, param_list):
        try:
            return super().executemany(query, param_list)
        except sqlite3.OperationalError as e:
            raise _reworded(e) from e


class DatabaseWrapper(sqlite_base.DatabaseWrapper):
    display_name = "SQLite (ltxvfs)"

    def get_connection_params(self):
        settings = self.settings_dict
        if not settings["NAME"]:
            raise ImproperlyConfigured(
                "settings.DATABASES is improperly configured: NAME is the replica URL "
                "(s3://bucket/app.db, file:///dir, ...)"
            )
        options = dict(settings["OPTIONS"])
        django_options = {k: options.pop(k) for k in _DJANGO_OPTIONS if k in options}
        ltxvfs._ensure_loaded()
        uri = replica_uri(str(settings["NAME"]), options, f"{self.alias}.db")
        saved = self.settings_dict
        self.settings_dict = {**saved, "NAME": uri, "OPTIONS": django_options}
        try:
            return super().get_connection_params()
        finally:
            self.settings_dict = saved

    def get_new_connection(self, conn_params):
        try:
            return super().get_new_connection(conn_params)
        except sqlite3.OperationalError as e:
            why = ltxvfs.last_error()
            if why:
                raise sqlite3.OperationalError(f"{e}: {why}") from e
            raise

    @property
    def writable(self) -> bool:
        return _uri_value(self.settings_dict["OPTIONS"].get("write", False)) in ("1", "true")

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=CursorWrapper)

    def _commit(self):
        if self.connection is not None:
            with self.wrap_database_errors:
                try:
                    return self.connection.commit()
                except sqlite3.OperationalError as e:
                    raise _reworded(e) from e
