"""Sliding-window rate limits kept in Redis (shared by every web process), all of a request's
limits checked and spent in one round trip.

Each limit is a sorted set of the hits of the last `window_s` seconds, scored by Redis's own
clock in milliseconds (a sliding window log): at most `limit` hits fall in ANY window of that
length, so there is no double burst at the edge of a fixed window. A Lua script checks every
limit of the request at once and records the hit in all of them only if all of them pass: a
refused request spends nothing, and two concurrent requests cannot both take the last slot.

Memory: a set holds at most `limit` members of about 60 bytes (the day limit of an address
that uses all of it: 2000 members, about 120 KB); idle sets expire after their window.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from arena.errors import RateLimited
from arena.streams import registered_script

KEY_PREFIX = "arena:rl:"

# KEYS: one sorted set per limit. ARGV: the hit's unique member, then limit and window (ms)
# for each key. Returns {0, 0} after recording the hit everywhere, or {i, ms}: limit i (from 1)
# refuses, and ms is how long until it would let one hit in (the longest wait of all refusers).
_SPEND = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local refused, wait = 0, 0
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local window = tonumber(ARGV[2 * i + 1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local count = redis.call('ZCARD', key)
    if count >= limit then
        -- Room for one more once the (count - limit + 1) oldest hits have left the window.
        local edge = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
        local ms = tonumber(edge[2]) + window - now
        if ms > wait or refused == 0 then
            refused, wait = i, ms
        end
    end
end
if refused > 0 then
    return {refused, wait}
end
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, ARGV[1])
    redis.call('PEXPIRE', key, tonumber(ARGV[2 * i + 1]))
end
return {0, 0}
"""


@dataclass(frozen=True)
class Limit:
    """At most `limit` hits on `key` in any `window_s` seconds."""

    key: str
    limit: int
    window_s: int


def ratelimit_spend(client: redis.Redis, limits: Sequence[Limit], *, what: str) -> None:
    """Record one hit on every limit, in one round trip, if every one of them has room;
    otherwise record nothing and raise RateLimited for the limit that frees up last."""
    if not limits:
        return
    args: list[str | int] = [secrets.token_hex(8)]
    for limit in limits:
        args += [limit.limit, limit.window_s * 1000]
    refused, wait_ms = registered_script(client, _SPEND)(
        keys=[KEY_PREFIX + lim.key for lim in limits], args=args
    )
    if not refused:
        return
    limit = limits[int(refused) - 1]
    retry_after = max(1, math.ceil(int(wait_ms) / 1000))
    raise RateLimited(
        f"Too many {what}: at most {limit.limit} per {limit.window_s} s. "
        f"Try again in {retry_after} s.",
        retry_after=retry_after,
    )
