"""Leases: what a worker holds (a model's capacity slot, a response it is answering) it holds
only while it is alive.

Each lease is a member of a Redis sorted set scored by when it lapses, `ARENA_WORKER_LEASE_SECONDS`
ahead. A thread in every worker process (the keeper) pushes its own leases forward every quarter
of that, so a worker killed with `kill -9`, or a host that vanished, stops renewing and its leases
lapse by themselves within one lease period: capacity slots free up for the live workers (the
acquire script drops lapsed holders), and the reaper (the same thread, in every live worker,
one at a time) hands each lapsed response on: an answer that had sent no token yet is queued
again for a live worker, one that had is failed with a clear message.

The owner of a lease is the worker's heartbeat hostname and its pid (see workers/heartbeat.py),
so a worker restarted under the same hostname does not inherit the dead one's leases.

Leases are taken when a worker receives a generation task (a task it reserved but had not started
when it died is covered too) and again when the task runs; a task for a response whose lease a
live worker holds does nothing, so a redelivered or re-enqueued duplicate is harmless.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import cast

import redis
from django.conf import settings
from redis.client import Pipeline

from arena.streams import registered_script

log = logging.getLogger(__name__)

RESPONSES_KEY = "arena:leases:responses"
OWNERS_KEY = "arena:leases:owners"
REAPER_LOCK_KEY = "arena:leases:reaper"

# Take the lease if it is free, lapsed or already ours. KEYS: zset, owners; ARGV: now, until,
# owner, member.
_TAKE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[4])
if score and tonumber(score) > tonumber(ARGV[1]) then
    if redis.call('HGET', KEYS[2], ARGV[4]) ~= ARGV[3] then return 0 end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
return 1
"""
# Drop the lease if it is ours. ARGV: owner, member.
_DROP = """
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
    redis.call('ZREM', KEYS[1], ARGV[2])
    redis.call('HDEL', KEYS[2], ARGV[2])
    return 1
end
return 0
"""
# Remove a lease (the reaper has handed its response on). ARGV: member.
_REMOVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

_identity: str | None = None


def lease_seconds() -> float:
    return float(settings.ARENA_WORKER_LEASE_SECONDS)


def worker_identity() -> str:
    """Who owns this process's leases: `<celery hostname>/<pid>` in a worker."""
    return _identity or f"{socket.gethostname()}/{os.getpid()}"


def identity_set(hostname: str) -> None:
    global _identity
    _identity = f"{hostname}/{os.getpid()}"


class LeaseKeeper:
    """The process's leases and the thread that renews them (and, in workers, reaps others')."""

    def __init__(self) -> None:
        self.held: set[tuple[str, str]] = set()
        self.lost: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()
        self.reap: Callable[[], None] | None = None

    def hold(self, key: str, member: str) -> None:
        with self.lock:
            self.held.add((key, member))
            self.lost.discard((key, member))
        self._ensure_thread()

    def release(self, key: str, member: str) -> None:
        with self.lock:
            self.held.discard((key, member))
            self.lost.discard((key, member))

    def is_lost(self, key: str, member: str) -> bool:
        """True when a lease of ours lapsed and another worker's reaper took it over."""
        # Asked after every token: no lock while nothing is lost (reading a set is atomic).
        return bool(self.lost) and (key, member) in self.lost

    def renew(self, client: redis.Redis) -> None:
        with self.lock:
            held = sorted(self.held)
        if not held:
            return
        until = time.time() + lease_seconds()
        pipe = client.pipeline(transaction=False)
        for key, member in held:
            # XX: never brings back a lease that lapsed and was reaped meanwhile.
            pipe.zadd(key, {member: until}, xx=True, ch=True)
        changed = pipe.execute()
        with self.lock:
            for lease, renewed in zip(held, changed, strict=True):
                if not renewed and lease in self.held:
                    self.lost.add(lease)

    def _ensure_thread(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="arena-leases", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        from arena import streams

        while True:
            time.sleep(lease_seconds() / 4)
            try:
                self.renew(streams.redis_client())
            except redis.RedisError as exc:
                # The leases lapse if this goes on: then the live workers take the answers over.
                log.warning("could not renew leases: %s", exc)
            if self.reap is not None:
                try:
                    self.reap()
                except Exception:  # The thread must live on: it is every lease's keeper.
                    log.exception("the lease reaper failed")


_keeper: LeaseKeeper | None = None
_keeper_lock = threading.Lock()


def keeper() -> LeaseKeeper:
    """The process's keeper (a forked child gets its own: threads do not survive a fork)."""
    global _keeper
    with _keeper_lock:
        if _keeper is None or _keeper.pid != os.getpid():
            _keeper = LeaseKeeper()
        return _keeper


def response_lease_take(client: redis.Redis, *, response_id: int) -> bool:
    """Take (or keep) the lease on a response; False when a live worker holds it."""
    now = time.time()
    member = str(response_id)
    taken = registered_script(client, _TAKE)(
        keys=[RESPONSES_KEY, OWNERS_KEY],
        args=[now, now + lease_seconds(), worker_identity(), member],
    )
    if taken:
        keeper().hold(RESPONSES_KEY, member)
    return bool(taken)


def response_lease_drop(client: redis.Redis | Pipeline, *, response_id: int) -> None:
    """Give the lease up; with a pipeline, the drop goes out with the pipeline's other
    commands (the answer's last round trip)."""
    member = str(response_id)
    keeper().release(RESPONSES_KEY, member)
    keys_args = (RESPONSES_KEY, OWNERS_KEY, worker_identity(), member)
    if isinstance(client, Pipeline):
        # EVAL, not EVALSHA: a pipeline that holds a Script asks SCRIPT EXISTS first, one more
        # round trip; Redis caches the body it is sent.
        client.eval(_DROP, 2, *keys_args)
    else:
        registered_script(client, _DROP)(keys=keys_args[:2], args=keys_args[2:])


class ResponseLease:
    """The lease on a response this process answers: released once, by itself or into the
    answer's last pipeline."""

    def __init__(self, client: redis.Redis, response_id: int) -> None:
        self.client = client
        self.response_id = response_id
        self.dropped = False

    def release(self, pipe: Pipeline | None = None) -> None:
        if not self.dropped:
            self.dropped = True
            response_lease_drop(self.client if pipe is None else pipe, response_id=self.response_id)


def response_lease_lost(response_id: int) -> bool:
    """Whether this process's lease on the response lapsed and was handed on (asked after every
    token: without a lock, and without a look at Redis)."""
    lease_keeper = _keeper
    if lease_keeper is None or not lease_keeper.lost:
        return False
    return keeper().is_lost(RESPONSES_KEY, str(response_id))


def response_lease_owner(client: redis.Redis, *, response_id: int) -> str | None:
    """The live owner of a response's lease, or None."""
    score = client.zscore(RESPONSES_KEY, str(response_id))
    if score is None or float(score) <= time.time():
        return None
    return cast(str | None, client.hget(OWNERS_KEY, str(response_id)))


def leases_reap(client: redis.Redis) -> list[tuple[int, str]]:
    """Hand on every response whose lease lapsed (its worker stopped); returns (id, outcome).

    Outcomes: "requeued" (no token had been sent: a live worker answers it), "failed" (the
    visitor had seen part of it), "ended" (it had ended anyway). The order matters: the database
    first (so a stalled owner that finds its lease gone sees the hand-off there and stops), then
    the lease, then the new task (which must find the lease free).
    """
    from arena import services

    lapsed = cast(
        list[tuple[str, float]],
        client.zrangebyscore(RESPONSES_KEY, "-inf", time.time(), withscores=True),
    )
    handled = []
    for member, _ in lapsed:
        owner = cast(str | None, client.hget(OWNERS_KEY, member)) or "?"
        response_id = int(member)
        outcome = services.response_orphan_recover(
            response_id=response_id, worker=owner, enqueue=False
        )
        registered_script(client, _REMOVE)(keys=[RESPONSES_KEY, OWNERS_KEY], args=[member])
        if outcome == "requeued":
            services.response_enqueue(response_id=response_id)
        handled.append((response_id, outcome))
    return handled


def reaper_turn(client: redis.Redis) -> bool:
    """One reaper at a time across the workers: True when this process may reap now."""
    hold_ms = int(lease_seconds() / 4 * 1000)
    return bool(client.set(REAPER_LOCK_KEY, worker_identity(), nx=True, px=hold_ms))


class WorkerReaper:
    """What a worker's keeper thread does besides renewing: hand on the responses of dead
    workers (every lease/4 seconds) and fail those past the generation timeout (every
    ARENA_REAPER_SECONDS). It runs in its own thread, not in the pool, so generations that
    wait for capacity cannot hold it up."""

    def __init__(self) -> None:
        self.last_timeout_reap = 0.0

    def __call__(self) -> None:
        from django.db import close_old_connections

        from arena import services, streams

        client = streams.redis_client()
        if not reaper_turn(client):
            return
        try:
            for response_id, outcome in leases_reap(client):
                log.info(
                    "response %s of a stopped worker: %s",
                    response_id,
                    outcome,
                    extra={"event": "lease_reaped", "response_id": response_id, "outcome": outcome},
                )
            if time.monotonic() - self.last_timeout_reap >= settings.ARENA_REAPER_SECONDS:
                self.last_timeout_reap = time.monotonic()
                services.responses_reap_stuck()
        finally:
            close_old_connections()


def worker_leases_start(hostname: str) -> None:
    """In a worker process: own leases under its name, and reap those of dead workers."""
    identity_set(hostname)
    lease_keeper = keeper()
    lease_keeper.reap = WorkerReaper()
    lease_keeper._ensure_thread()


def streams_client() -> redis.Redis:
    from arena import streams

    return streams.redis_client()
