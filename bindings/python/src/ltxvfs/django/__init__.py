"""Django on ltxvfs: a primary and read replicas over one replica URL, and read-your-writes
across processes.

Settings::

    DATABASES = {
        "default": {"ENGINE": "ltxvfs.django", "NAME": "s3://bucket/app.db",
                    "OPTIONS": {"write": True, "poll": "1s"}},
        "replica": {"ENGINE": "ltxvfs.django", "NAME": "s3://bucket/app.db",
                    "OPTIONS": {"poll": "1s"}},
    }
    DATABASE_ROUTERS = ["ltxvfs.django.ReplicaRouter"]
    MIDDLEWARE = [..., "django.contrib.sessions.middleware.SessionMiddleware",
                  "ltxvfs.django.ReadYourWritesMiddleware", ...]

- ``ReplicaRouter`` sends reads to the read-only ltxvfs aliases, writes and migrations to
  the writable one (``OPTIONS["write"]``).
- ``ReadYourWritesMiddleware``: after a request that wrote, the bookmark (the writer's
  ``ltx_txid()``) goes in the session (a cookie without sessions); the next requests' replica
  reads first wait for it (``ltx_wait_txid``), in whatever process serves them. A replica
  that cannot reach it within the wait serves from the writable alias instead, and logs it.
- A commit that lost the race for its TXID to another writer is ``django.db.OperationalError``
  saying to retry: see :func:`is_lost_race`.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any, Dict, List, Optional

from .base import RETRY, is_lost_race

__all__ = ["ReplicaRouter", "ReadYourWritesMiddleware", "is_lost_race", "RETRY"]

log = logging.getLogger("ltxvfs.django")

#: Where the bookmark is kept: this session key, or this cookie without sessions.
SESSION_KEY = "_ltxvfs_bookmark"
COOKIE = "ltxvfs_bookmark"

# Apps whose reads go to the writable alias: a session must read what it wrote itself.
_WRITER_APPS = {"sessions"}


def _is_ltxvfs(settings: Dict[str, Any]) -> bool:
    return settings.get("ENGINE") == "ltxvfs.django"


def _writes(settings: Dict[str, Any]) -> bool:
    return str(settings.get("OPTIONS", {}).get("write", "")).lower() in ("true", "1", "on", "yes")


def _aliases() -> "tuple[Optional[str], List[str]]":
    from django.db import connections

    writer, readers = None, []
    for alias in connections:
        settings = connections.settings[alias]
        if not _is_ltxvfs(settings):
            continue
        if _writes(settings):
            writer = writer or alias
        else:
            readers.append(alias)
    return writer, readers


class _Request:
    """What the middleware knows of the request being served (one per request, in a
    context variable, so threads and async tasks do not mix)."""

    def __init__(self, bookmark: Optional[str]):
        self.bookmark = bookmark
        # Replica aliases that have reached the bookmark, and those that could not.
        self.reached: Dict[str, str] = {}
        self.behind: set = set()
        self.wrote = False


_current: contextvars.ContextVar[Optional[_Request]] = contextvars.ContextVar(
    "ltxvfs_request", default=None
)


def _wait_seconds() -> Optional[float]:
    from django.conf import settings

    return getattr(settings, "LTXVFS_BOOKMARK_WAIT", None)


class ReplicaRouter:
    """Reads to the read-only ltxvfs aliases (round robin), writes and migrations to the
    writable one. Inside a request with a bookmark, a replica alias first waits for it; one
    that cannot reach it gives its reads to the writable alias."""

    _next = 0

    def _pick_reader(self) -> Optional[str]:
        writer, readers = _aliases()
        if not readers:
            return writer
        request = _current.get()
        if request is not None and request.bookmark:
            usable = [a for a in readers if a not in request.behind]
            for alias in usable:
                if alias in request.reached or self._wait(alias, request):
                    return alias
            return writer
        ReplicaRouter._next = (ReplicaRouter._next + 1) % len(readers)
        return readers[ReplicaRouter._next]

    @staticmethod
    def _wait(alias: str, request: _Request) -> bool:
        from django.db import DatabaseError, connections

        wait = _wait_seconds()
        sql, params = "SELECT ltx_wait_txid(%s)", [request.bookmark]
        if wait is not None:
            sql, params = "SELECT ltx_wait_txid(%s, %s)", [request.bookmark, float(wait)]
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute(sql, params)
                request.reached[alias] = cursor.fetchone()[0]
            return True
        except DatabaseError as e:
            request.behind.add(alias)
            log.warning("ltxvfs: replica alias %r serves from the writable alias: %s", alias, e)
            return False

    def db_for_read(self, model, **hints):
        if model._meta.app_label in _WRITER_APPS:
            return _aliases()[0]
        return self._pick_reader()

    def db_for_write(self, model, **hints):
        writer = _aliases()[0]
        request = _current.get()
        if request is not None and writer is not None:
            request.wrote = True
        return writer

    def allow_relation(self, obj1, obj2, **hints):
        # Every ltxvfs alias of a router is the same database.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        from django.db import connections

        if not _is_ltxvfs(connections.settings[db]):
            return None
        return _writes(connections.settings[db])


class ReadYourWritesMiddleware:
    """After a request that wrote, keeps the writer's bookmark (in the session, else a
    cookie); the next requests' replica reads wait for it, in any process. Dropped once
    this process's replica has passed it and it is older than ``LTXVFS_BOOKMARK_TTL``
    seconds (default 60: longer than any replica's ``poll``, after which every reader sees
    the write anyway)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        stored = self._load(request)
        state = _Request(stored[0] if stored else None)
        token = _current.set(state)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        bookmark = self._bookmark_after(state)
        if bookmark is not None:
            self._store(request, response, (bookmark, time.time()))
        elif stored and state.reached and time.time() - stored[1] > self._ttl():
            self._store(request, response, None)
        return response

    @staticmethod
    def _ttl() -> float:
        from django.conf import settings

        return float(getattr(settings, "LTXVFS_BOOKMARK_TTL", 60))

    @staticmethod
    def _bookmark_after(state: _Request) -> Optional[str]:
        """The writer's TXID, when this request wrote."""
        if not state.wrote:
            return None
        from django.db import DatabaseError, connections

        writer = _aliases()[0]
        if writer is None or connections[writer].connection is None:
            return None
        try:
            with connections[writer].cursor() as cursor:
                cursor.execute("SELECT ltx_txid()")
                return cursor.fetchone()[0]
        except DatabaseError as e:
            log.warning("ltxvfs: no bookmark after a write: %s", e)
            return None

    @staticmethod
    def _load(request) -> Optional["tuple[str, float]"]:
        session = getattr(request, "session", None)
        raw = session.get(SESSION_KEY) if session is not None else request.COOKIES.get(COOKIE)
        if not raw:
            return None
        try:
            txid, at = str(raw).split(":", 1)
            int(txid, 16)
            return txid, float(at)
        except ValueError:
            return None

    @staticmethod
    def _store(request, response, value) -> None:
        session = getattr(request, "session", None)
        text = None if value is None else f"{value[0]}:{value[1]:.3f}"
        if session is not None:
            if text is None:
                session.pop(SESSION_KEY, None)
            else:
                session[SESSION_KEY] = text
        elif text is None:
            response.delete_cookie(COOKIE)
        else:
            response.set_cookie(COOKIE, text, httponly=True, samesite="Lax")
