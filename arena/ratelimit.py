"""Fixed-window rate limits counted in Redis (shared by every web process)."""

from __future__ import annotations

import time

import redis

from arena.errors import RateLimited


def ratelimit_hit(client: redis.Redis, *, key: str, limit: int, window_s: int, what: str) -> None:
    """Count one hit for `key`; raise RateLimited once more than `limit` fall in this window."""
    window = int(time.time()) // window_s
    full_key = f"arena:rl:{key}:{window}"
    pipe = client.pipeline()
    pipe.incr(full_key)
    pipe.expire(full_key, window_s + 1)
    count, _ = pipe.execute()
    if count > limit:
        retry_after = window_s - int(time.time()) % window_s
        raise RateLimited(
            f"Too many {what}: at most {limit} per {window_s} s. Try again in {retry_after} s.",
            retry_after=max(1, retry_after),
        )
