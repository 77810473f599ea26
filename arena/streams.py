"""Token streams in Redis: the keys, the entry format with its writer and its reader, and the
SSE reader's cursors.

One Redis Stream per Response, `arena:stream:<battle id>:<response id>`. Entries carry a kind `k`:
`d` (a delta, text in `t`), `done` (the answer is stored in the database; `t` is the finish
reason) or `fail` (`t` is the message for the visitor). The stream expires a while after its
last entry: the database holds the full answer from then on.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.commands.core import Script
from redis.retry import Retry

DELTA = "d"
DONE = "done"
FAIL = "fail"
# A worker flushes what it has gathered at least this often, or once it holds this much text.
# 100 ms: a reader sees text arrive ten times a second (the first delta goes at once), and a
# 64-token answer is about 14 XADDs instead of 27 (docs/benchmarks-workers.md, the worker's CPU).
FLUSH_SECONDS = 0.1
FLUSH_CHARS = 64


@dataclass(frozen=True)
class StreamEntry:
    kind: str  # DELTA, DONE or FAIL
    text: str  # the delta, the finish reason, or the message for the visitor


def stream_entry_encode(kind: str, text: str) -> tuple[str, str, str, str]:
    """An entry's fields as XADD takes them, name then value (one-letter names: an entry is
    written per ~100 ms of every answer)."""
    return ("k", kind, "t", text)


def stream_entry_decode(fields: Mapping[Any, Any]) -> StreamEntry:
    """An entry as `stream_entry_encode` wrote it; a missing field reads as empty."""
    return StreamEntry(kind=str(fields.get("k", "")), text=str(fields.get("t", "")))


def stream_key(battle_id: str, response_id: int) -> str:
    # The battle's random id keeps keys unique even where a database reuses row ids.
    return f"arena:stream:{battle_id}:{response_id}"


@functools.cache
def redis_client() -> redis.Redis:
    """The process's Redis client (thread-safe connection pool)."""
    return redis.Redis.from_url(
        settings.REDIS_URL,
        decode_responses=True,
        max_connections=settings.ARENA_REDIS_MAX_CONNECTIONS,
        # A Redis restart (run_arena's, a failover) is an outage of a second or less: ride it
        # out (about 2 s of retries) rather than answer 503 meanwhile.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=6),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@functools.lru_cache(maxsize=16)
def registered_script(client: redis.Redis, text: str) -> Script:
    """`text` registered once per client (a Script hashes its text when it is made; it runs by
    EVALSHA, loading itself once if Redis does not know it). The rate limits, the leases and
    the capacity slots run theirs through it."""
    return client.register_script(text)


def _xadd(client: redis.Redis | Pipeline, key: str, kind: str, text: str) -> None:
    # The raw command, without xadd()'s argument handling: a dozen of these per answer.
    client.execute_command(  # type: ignore[no-untyped-call]
        "XADD", key, "*", *stream_entry_encode(kind, text)
    )


class StreamWriter:
    """Batches deltas into few XADDs: every FLUSH_SECONDS or FLUSH_CHARS, whichever is first.

    The first delta goes out at once: the time to the first token is what a visitor feels.
    """

    def __init__(self, client: redis.Redis, battle_id: str, response_id: int) -> None:
        self.client = client
        self.key = stream_key(battle_id, response_id)
        self._pending: list[str] = []
        self._pending_chars = 0
        self._last_flush = -FLUSH_SECONDS  # so the first delta is flushed at once

    def delta(self, text: str) -> None:
        if not text:
            return
        self._pending.append(text)
        self._pending_chars += len(text)
        now = time.monotonic()
        if self._pending_chars >= FLUSH_CHARS or now - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._pending_write(self.client)
        self._last_flush = time.monotonic()

    def _pending_write(self, into: redis.Redis | Pipeline) -> None:
        """The gathered deltas as one entry, sent at once or queued into a pipeline."""
        if self._pending:
            _xadd(into, self.key, DELTA, "".join(self._pending))
            self._pending.clear()
            self._pending_chars = 0

    def close(self, kind: str, text: str, *, pipe: Pipeline | None = None) -> None:
        """Write what is pending and the final entry, and let the stream expire (the database
        has the answer now): one round trip, or none with `pipe` (the caller's pipeline, which
        it executes with its own commands)."""
        own = pipe is None
        pipe = self.client.pipeline() if pipe is None else pipe
        self._pending_write(pipe)
        _xadd(pipe, self.key, kind, text)
        pipe.expire(self.key, settings.ARENA_STREAM_TTL_SECONDS)
        if own:
            pipe.execute()


_CURSOR_RE = re.compile(r"^(\d+):(\d+-\d+)$")


@dataclass
class Cursor:
    """Where a reader of one side stands: the response and the last stream entry it received."""

    response_id: int
    entry_id: str = "0-0"


def cursors_format(cursors: dict[str, Cursor]) -> str:
    """The SSE `id:` of an event: both sides' positions, so a reconnect resumes both exactly."""
    return ";".join(f"{side}={c.response_id}:{c.entry_id}" for side, c in sorted(cursors.items()))


def cursors_parse(value: str | None, current: dict[str, int]) -> dict[str, Cursor]:
    """Cursors from a Last-Event-ID; a side whose response changed (or a bad id) starts over."""
    cursors = {side: Cursor(rid) for side, rid in current.items()}
    for part in (value or "").split(";"):
        side, _, position = part.partition("=")
        match = _CURSOR_RE.match(position)
        if side in cursors and match and int(match.group(1)) == current[side]:
            cursors[side].entry_id = match.group(2)
    return cursors
