"""Each model's `max_concurrency`, held across every worker and host with a Redis semaphore.

The semaphore is a sorted set of holders scored by when their claim lapses. A slot is a lease
(workers/leases.py): the holding worker's keeper pushes it forward while the worker lives, so a
worker that dies holding a slot frees it by itself within ARENA_WORKER_LEASE_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.client import Pipeline

from arena.heartbeat import capacity_key
from arena.streams import registered_script
from workers.leases import keeper

# Drop lapsed holders, then take a slot if one is free. Atomic: one script, one round trip.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
    return 1
end
return 0
"""


class AtCapacity(Exception):
    """No slot freed up within the wait."""


def capacity_acquire(
    client: redis.Redis, *, model_name: str, limit: int, holder: str, hold_s: float
) -> bool:
    now = time.time()
    script = registered_script(client, _ACQUIRE)
    return bool(script(keys=[capacity_key(model_name)], args=[now, limit, now + hold_s, holder]))


def capacity_release(client: redis.Redis | Pipeline, *, model_name: str, holder: str) -> None:
    client.zrem(capacity_key(model_name), holder)


class Slot:
    """A capacity slot held by `capacity_slot`: released when the block ends, or earlier into a
    pipeline (the answer's last round trip carries it)."""

    def __init__(self, client: redis.Redis, model_name: str, holder: str) -> None:
        self.client = client
        self.model_name = model_name
        self.holder = holder
        self.released = False

    def release(self, pipe: Pipeline | None = None) -> None:
        if self.released:
            return
        self.released = True
        keeper().release(capacity_key(self.model_name), self.holder)
        capacity_release(
            self.client if pipe is None else pipe, model_name=self.model_name, holder=self.holder
        )


def capacity_in_use(client: redis.Redis, *, model_name: str) -> int:
    return int(client.zcount(capacity_key(model_name), time.time(), "+inf"))


@contextmanager
def capacity_slot(
    client: redis.Redis,
    *,
    model_name: str,
    limit: int,
    holder: str,
    hold_s: float,
    wait_s: float,
    poll_s: float = 0.05,
) -> Iterator[Slot]:
    """Hold one of the model's `limit` slots; wait up to `wait_s` for one (else AtCapacity).

    `hold_s` is the lease: this process's lease keeper renews it until the slot is released.
    """
    deadline = time.monotonic() + wait_s
    while not capacity_acquire(
        client, model_name=model_name, limit=limit, holder=holder, hold_s=hold_s
    ):
        if time.monotonic() >= deadline:
            raise AtCapacity(f"{model_name} stayed at its limit of {limit} for {wait_s:.0f} s")
        time.sleep(poll_s)
    keeper().hold(capacity_key(model_name), holder)
    slot = Slot(client, model_name, holder)
    try:
        yield slot
    finally:
        slot.release()
