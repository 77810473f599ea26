"""What `/readyz` checks: can this web process reach its database and Redis, and (on request)
are workers consuming every enabled model's queue.

Each check has a short timeout and returns a small dict: `{"ok": True, "ms": 3}` or
`{"ok": False, "error": "..."}`. The checks are async so that a hung dependency holds neither
the event loop nor Django's one thread for sync code.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from django.db.utils import load_backend

# Each dependency must answer within this many seconds, well inside a load balancer's probe.
CHECK_TIMEOUT_S = 2.0


async def readiness_checks(*, workers: bool = False) -> dict[str, dict[str, Any]]:
    """Run the checks concurrently; every value says `ok` and, when not, why."""
    names = ["database", "redis"] + (["workers"] if workers else [])
    coros = [_timed(_database()), _timed(_redis())]
    if workers:
        coros.append(_timed(sync_to_async(_workers, thread_sensitive=False)()))
    results = await asyncio.gather(*coros)
    return dict(zip(names, results, strict=True))


async def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        detail = await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {CHECK_TIMEOUT_S:.0f} s"}
    except Exception as exc:  # The probe reports any failure; it must not become a 500.
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    result: dict[str, Any] = {"ok": True, "ms": round((time.monotonic() - started) * 1000)}
    if isinstance(detail, dict):
        result.update(detail)
        result["ok"] = not detail.get("error")
    return result


async def _database() -> None:
    await sync_to_async(_database_ping, thread_sensitive=False)()


def _database_ping() -> None:
    # A connection of its own, closed at once: the check neither reuses nor disturbs the
    # connections that requests hold, and a broken one of theirs does not hide an outage.
    config = dict(connections.settings["default"])
    if "postgresql" in config["ENGINE"]:
        config["OPTIONS"] = {**config.get("OPTIONS", {}), "connect_timeout": int(CHECK_TIMEOUT_S)}
    own = load_backend(config["ENGINE"]).DatabaseWrapper(config, "default")
    try:
        with own.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        own.close()


async def _redis() -> None:
    client = aioredis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


def _workers() -> dict[str, Any]:
    """Live workers, and the enabled models whose queue none of them consumes."""
    from arena.heartbeat import heartbeat_redis, workers_alive
    from arena.models import ArenaModel

    alive = workers_alive(heartbeat_redis())
    consumed = {queue for worker in alive for queue in worker.queues}
    try:
        queues = [m.queue for m in ArenaModel.objects.filter(enabled=True).only("name")]
    finally:
        # This runs on a pool thread that no request's end will clean up after.
        connection.close()
    unserved = sorted(queue for queue in queues if queue not in consumed)
    detail: dict[str, Any] = {"alive": sorted(w.hostname for w in alive)}
    if not alive:
        detail["error"] = "no worker has sent a heartbeat recently"
    elif unserved:
        detail["error"] = f"no live worker consumes {', '.join(unserved)}"
    return detail
