"""Worker heartbeats in Redis, their keys, writers and readers: how an orchestrator (and
`/readyz?workers=1`, `worker_health`, `/metrics`) knows that a worker is alive and consuming, from
any host.

A consumer bootstep (workers/heartbeat.py) records `hostname -> last beat` in the sorted set
`arena:workers` (and the worker's queues and pid in the hash `arena:workers:info`) every
ARENA_WORKER_HEARTBEAT_SECONDS.
The beat runs on the consumer's own timer, which fires from the loop that receives tasks, so a
worker whose consumer is stuck stops beating even though its process lives on. A worker that
dies without a clean shutdown simply ages out: readers only count beats younger than three
intervals.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import cast

import redis
from django.conf import settings

WORKERS_KEY = "arena:workers"
INFO_KEY = "arena:workers:info"
# Readers count a worker as alive while its last beat is younger than this many intervals.
MISSED_BEATS = 3


@dataclass(frozen=True)
class WorkerBeat:
    hostname: str
    last_beat: float
    queues: tuple[str, ...]
    pid: int | None

    @property
    def age_s(self) -> float:
        return max(time.time() - self.last_beat, 0.0)


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts: the beat runs on the consumer's loop and must not stall it.
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0
    )


def heartbeat_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def max_age_s() -> float:
    return float(settings.ARENA_WORKER_HEARTBEAT_SECONDS * MISSED_BEATS)


def worker_beat(
    client: redis.Redis, *, hostname: str, queues: list[str], pid: int, now: float | None = None
) -> None:
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=True)
    pipe.zadd(WORKERS_KEY, {hostname: now})
    pipe.hset(INFO_KEY, hostname, json.dumps({"queues": sorted(queues), "pid": pid}))
    # Workers long gone (a week of silence) are forgotten, so the set does not grow forever.
    stale = cast(list[str], client.zrangebyscore(WORKERS_KEY, "-inf", now - 7 * 86400))
    if stale:
        pipe.zrem(WORKERS_KEY, *stale)
        pipe.hdel(INFO_KEY, *stale)
    pipe.execute()


def worker_forget(client: redis.Redis, *, hostname: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.zrem(WORKERS_KEY, hostname)
    pipe.hdel(INFO_KEY, hostname)
    pipe.execute()


def workers_alive(client: redis.Redis, *, max_age: float | None = None) -> list[WorkerBeat]:
    """The workers that beat within `max_age` seconds (default: three intervals)."""
    cutoff = time.time() - (max_age_s() if max_age is None else max_age)
    beats = cast(
        list[tuple[str, float]], client.zrangebyscore(WORKERS_KEY, cutoff, "+inf", withscores=True)
    )
    if not beats:
        return []
    infos = client.hmget(INFO_KEY, [hostname for hostname, _ in beats])
    alive = []
    for (hostname, last_beat), raw in zip(beats, infos, strict=True):
        info = json.loads(raw) if raw else {}
        alive.append(
            WorkerBeat(
                hostname=hostname,
                last_beat=float(last_beat),
                queues=tuple(info.get("queues", ())),
                pid=info.get("pid"),
            )
        )
    return alive


def capacity_key(model_name: str) -> str:
    """The sorted set of a model's busy slots (workers/capacity.py fills it, /metrics reads it)."""
    return f"arena:capacity:{model_name}"
