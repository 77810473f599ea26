"""Leaderboard replies built once per snapshot and query, kept in the shared cache.

A snapshot never changes once stored, so a page or an API reply depends only on the snapshot,
the request's path, the options its view reads from the query string, and the registry's display
facts (names, licences, health). One SQL query reads the latest snapshot's id and a stamp of the
registry; the key holds both, so a new snapshot or a registry edit is a new key and nothing needs
deleting (entries expire). The HTTP side (serving hits before sessions and CSRF run, gzip, ETag,
the security headers) is `leaderboard.pages.middleware`; this module is the store.

A view opts in with `@cached(variant)`: `variant` turns the request into the options the view
reads (normalised, so `?style_control=yes` and `=1` share an entry and a parameter no view reads
adds no entry: the key space stays the categories times the flags).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.http import HttpRequest, HttpResponse

from arena.models import ArenaModel
from leaderboard.models import LeaderboardSnapshot

log = logging.getLogger(__name__)

# Keys change with every snapshot; the timeout only bounds how long dead entries take room.
TIMEOUT_S = 6 * 3600
KEY_PREFIX = "leaderboard:v2:"
View = Callable[..., HttpResponse]
Variant = Callable[[HttpRequest], tuple[Hashable, ...]]
# The headers of a built reply that belong to its content; the security headers are the
# middleware's, applied to every reply as the middleware chain would.
CONTENT_HEADERS = ("Content-Type", "Content-Disposition", "Content-Language")
# The hottest replies also stay in this process (a page can be a megabyte: a Redis GET and its
# unpickling cost more than the rest of the request). Same keys, so never stale; bounded.
_LOCAL_SIZE = 32
_GZIP_LEVEL = 6


@dataclass(frozen=True)
class Entry:
    """A built reply: its body plain and gzipped, its content headers, its ETag (of the body)."""

    body: bytes
    gzipped: bytes
    headers: tuple[tuple[str, str], ...]
    etag: str

    @classmethod
    def build(cls, body: bytes, headers: tuple[tuple[str, str], ...]) -> Entry:
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        return cls(body, gzip.compress(body, _GZIP_LEVEL, mtime=0), headers, digest)

    def dumps(self) -> bytes:
        # Redis keeps only the gzipped body: a third of the bytes to move and to store.
        return pickle.dumps((self.gzipped, self.headers, self.etag), pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, raw: bytes) -> Entry:
        gzipped, headers, etag = pickle.loads(raw)  # our own bytes, written by dumps
        return cls(gzip.decompress(gzipped), gzipped, headers, etag)


_local: OrderedDict[str, Entry] = OrderedDict()
_local_lock = threading.Lock()
_views: dict[Callable[..., Any], Variant] = {}
# (monotonic time of the check, stamp): the latest snapshot as this process last saw it.
_stamp: tuple[float, str | None] | None = None


def cached(variant: Variant) -> Callable[[View], View]:
    """Mark a view whose 200 replies depend only on the snapshot, the path and `variant`."""

    def mark(view: View) -> View:
        _views[view] = variant
        return view

    return mark


def view_variant(view: Callable[..., Any]) -> Variant | None:
    return _views.get(view)


def local_clear() -> None:
    """Forget this process's copies and its last stamp (tests: as another process sees it)."""
    global _stamp
    with _local_lock:
        _local.clear()
        _stamp = None


def snapshot_stamp() -> str | None:
    """The latest snapshot (id and creation time: test databases reuse ids) and the registry's
    stamp, in one query; None when no snapshot exists. `updated_at` misses `.update()` calls, so
    the health time and the count of sampled entries are in the stamp too."""
    snapshots = LeaderboardSnapshot._meta.db_table
    registry = ArenaModel._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT id FROM {snapshots} ORDER BY created_at DESC, id DESC LIMIT 1),"
            f" (SELECT created_at FROM {snapshots} ORDER BY created_at DESC, id DESC LIMIT 1),"
            " COUNT(*), SUM(CASE WHEN enabled AND in_registry AND healthy THEN 1 ELSE 0 END),"
            f" MAX(updated_at), MAX(health_changed_at) FROM {registry}"
        )
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    return "|".join(str(value) for value in row)


def stamp_known() -> tuple[bool, str | None]:
    """(True, stamp) when this process checked within ARENA_LEADERBOARD_FRESH_S seconds, else
    (False, None): the caller runs `stamp_refresh` (a query; off the event loop under ASGI)."""
    seen = _stamp
    if seen is not None and time.monotonic() - seen[0] < settings.ARENA_LEADERBOARD_FRESH_S:
        return True, seen[1]
    return False, None


def stamp_refresh() -> str | None:
    global _stamp
    stamp = snapshot_stamp()
    _stamp = (time.monotonic(), stamp)
    return stamp


def page_key(request: HttpRequest, stamp: str, variant: tuple[Hashable, ...]) -> str:
    raw = f"{stamp}\n{request.path}\n{variant!r}"
    return KEY_PREFIX + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def local_get(key: str) -> Entry | None:
    with _local_lock:
        entry = _local.get(key)
        if entry is not None:
            _local.move_to_end(key)
        return entry


def _local_put(key: str, entry: Entry) -> None:
    with _local_lock:
        _local[key] = entry
        _local.move_to_end(key)
        while len(_local) > _LOCAL_SIZE:
            _local.popitem(last=False)


def shared_get(key: str) -> Entry | None:
    """The entry from the shared cache (kept in this process too); None on a miss or when the
    cache is down (the page still works without it)."""
    try:
        raw = caches["default"].get(key)
    except redis.RedisError as exc:
        log.warning("leaderboard cache unavailable: %r", exc)
        return None
    if not isinstance(raw, bytes):
        return None
    entry = Entry.loads(raw)
    _local_put(key, entry)
    return entry


def entry_store(key: str, entry: Entry) -> None:
    _local_put(key, entry)
    try:
        caches["default"].set(key, entry.dumps(), TIMEOUT_S)
    except redis.RedisError as exc:
        log.warning("leaderboard cache unavailable: %r", exc)
