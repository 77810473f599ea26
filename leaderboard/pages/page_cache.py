"""Leaderboard replies built once per snapshot and query string, kept in the shared cache.

A snapshot never changes once stored, so a page or an API reply depends only on the snapshot,
the request's path and query string, and the registry's display facts (names, licences, health).
One SQL query reads the latest snapshot's id and a stamp of the registry; the key holds both,
so a new snapshot or a registry edit is a new key and nothing needs deleting (entries expire).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis
from django.core.cache import caches
from django.db import connection
from django.http import HttpRequest, HttpResponse

from arena.models import ArenaModel
from leaderboard.models import LeaderboardSnapshot

log = logging.getLogger(__name__)

# Keys change with every snapshot; the timeout only bounds how long dead entries take room.
TIMEOUT_S = 6 * 3600
View = Callable[..., HttpResponse]
Entry = tuple[bytes, list[tuple[str, str]]]
# The hottest replies also stay in this process (a page can be a megabyte: a Redis GET and its
# unpickling cost more than the rest of the request). Same keys, so never stale; bounded.
_LOCAL_SIZE = 16
_local: OrderedDict[str, Entry] = OrderedDict()
_local_lock = threading.Lock()


def local_clear() -> None:
    with _local_lock:
        _local.clear()


def _local_get(key: str) -> Entry | None:
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


def page_key(request: HttpRequest, stamp: str) -> str:
    query = sorted(request.GET.lists())
    raw = f"{stamp}\n{request.path}\n{query!r}"
    return "leaderboard:" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def snapshot_cached(view: View) -> View:
    """Serve a 200 reply of `view` from the cache when the snapshot, registry, path and query
    match; anything else (no snapshot, a 404, the cache down) goes through the view."""

    @functools.wraps(view)
    def cached(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        stamp = snapshot_stamp()
        if stamp is None:
            return view(request, *args, **kwargs)
        cache = caches["default"]
        key = page_key(request, stamp)
        hit = _local_get(key)
        if hit is None:
            try:
                hit = cache.get(key)
            except redis.RedisError as exc:  # the page still works without its cache
                log.warning("leaderboard cache unavailable: %r", exc)
                return view(request, *args, **kwargs)
            if hit is not None:
                _local_put(key, hit)
        if hit is not None:
            content, headers = hit
            reply = HttpResponse(content)
            for name, value in headers:
                reply[name] = value
            return reply
        reply = view(request, *args, **kwargs)
        if reply.status_code == 200 and not reply.cookies and not reply.streaming:
            kept = [
                (n, v) for n, v in reply.items() if n in ("Content-Type", "Content-Disposition")
            ]
            _local_put(key, (reply.content, kept))
            try:
                cache.set(key, (reply.content, kept), TIMEOUT_S)
            except redis.RedisError as exc:
                log.warning("leaderboard cache unavailable: %r", exc)
        return reply

    return cached
