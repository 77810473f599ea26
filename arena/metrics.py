"""Prometheus metrics that hold across processes and hosts: recorded in Redis, read at scrape.

The arena runs several uvicorn processes and any number of Celery workers on many hosts, so a
counter kept in one process's memory would show one process's share. Every counter and histogram
here is a Redis hash instead (`arena:metrics:<name>`), incremented atomically (HINCRBYFLOAT,
in a MULTI: a histogram observation's bucket, sum and count together; an answer's metrics go
in one round trip, with its stream's end marker when the worker has one), and the web's
`/metrics` turns the hashes into the Prometheus text format at scrape time. Any web process
answers with the cluster-wide totals, so Prometheus scrapes one address (the load balancer).

Gauges are not stored: queue depths, capacity slots in use, model health and live workers are
read from Redis and the database when Prometheus asks.

Redis is not persistent in a reference deployment: after a Redis restart the counters start
again from zero, which Prometheus's rate() and increase() read as a counter reset.

Recording never raises: a metric is not worth failing a vote or a generation for.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence

import redis
from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.client import Pipeline

log = logging.getLogger(__name__)

KEY_PREFIX = "arena:metrics:"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Kombu's Redis transport keeps a queue's messages of priority p > 0 in the list
# `<queue>\x06\x16<p>`; the arena sends without a priority, but a depth must count them all.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts: a slow Redis must not hold up a vote that the database already has.
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        max_connections=settings.ARENA_REDIS_MAX_CONNECTIONS,
    )


def metrics_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def _field(labels: Sequence[str]) -> str:
    return json.dumps(list(labels), separators=(",", ":"))


class RedisCounter:
    """A counter whose value lives in Redis: `inc()` from any process adds to the one total."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.key = KEY_PREFIX + name

    def _labels(self, labels: dict[str, str]) -> list[str]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return [str(labels[n]) for n in self.labelnames]

    def inc(self, amount: float = 1.0, *, pipe: Pipeline | None = None, **labels: str) -> None:
        """Add `amount`; with `pipe`, the command joins the caller's pipeline (who executes it)."""
        field = _field(self._labels(labels))
        if pipe is not None:
            pipe.hincrbyfloat(self.key, field, amount)
            return
        try:
            metrics_redis().hincrbyfloat(self.key, field, amount)
        except redis.RedisError as exc:
            log.debug("metric %s not recorded: %s", self.name, exc)

    def collect(self, raw: dict[str, str]) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for field, value in sorted(raw.items()):
            family.add_metric(json.loads(field), float(value))
        return family


class RedisHistogram:
    """A histogram in Redis: each observation adds 1 to its bucket, its value to the sum and 1 to
    the count in one transaction. Buckets are stored by their upper bound and made cumulative
    at scrape, so a later change of the bounds keeps the old counts (in the next bound up)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.buckets = (*sorted(float(b) for b in buckets), math.inf)
        self.key = KEY_PREFIX + name

    def observe(self, value: float, *, pipe: Pipeline | None = None, **labels: str) -> None:
        """Count one observation; with `pipe`, its commands join the caller's pipeline (a
        transaction, for the three to land together), who executes it."""
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        base = _field([str(labels[n]) for n in self.labelnames])
        bound = next(b for b in self.buckets if value <= b)
        with _recording(self.name, pipe) as into:
            into.hincrby(self.key, f"{base}|{_bound_text(bound)}", 1)
            into.hincrbyfloat(self.key, f"{base}|sum", value)
            into.hincrby(self.key, f"{base}|count", 1)

    def collect(self, raw: dict[str, str]) -> Metric:
        series: dict[str, dict[str, float]] = {}
        for field, stored_value in raw.items():
            base, _, part = field.rpartition("|")
            series.setdefault(base, {})[part] = float(stored_value)
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for base, parts in sorted(series.items()):
            per_bucket = dict.fromkeys(self.buckets, 0.0)
            for part, count in parts.items():
                if part in ("sum", "count"):
                    continue
                stored = float(part)
                per_bucket[next(b for b in self.buckets if stored <= b)] += count
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for bound in self.buckets:
                running += per_bucket[bound]
                cumulative.append((_bound_text(bound), running))
            family.add_metric(json.loads(base), cumulative, sum_value=parts.get("sum", 0.0))
        return family


def _bound_text(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


@contextlib.contextmanager
def _recording(what: str, pipe: Pipeline | None) -> Iterator[Pipeline]:
    """The pipeline to add commands to: the caller's, or one of ours that is executed at the
    end of the block (one round trip; a failure is logged, never raised)."""
    if pipe is not None:
        yield pipe
        return
    own = metrics_redis().pipeline(transaction=True)
    yield own
    try:
        own.execute()
    except redis.RedisError as exc:
        log.debug("metric %s not recorded: %s", what, exc)


# --- What the arena records (one line at each place it happens) --------------------------------

BATTLES_STARTED = RedisCounter("arena_battles_started", "Battles created (both answers queued).")
VOTES = RedisCounter(
    "arena_votes", "Votes stored, by outcome and by whether they count.", ["outcome", "validity"]
)
GENERATED_TOKENS = RedisCounter(
    "arena_generated_tokens", "Completion tokens of stored answers.", ["model"]
)
RESPONSE_FAILURES = RedisCounter(
    "arena_response_failures",
    "Answers that ended failed, by model and cause (timeout, capacity, backend_error, "
    "stream_lost, reaped, enqueue, ...).",
    ["model", "cause"],
)
GENERATION_SECONDS = RedisHistogram(
    "arena_generation_seconds",
    "Claim to stored answer, per model (successful generations).",
    ["model"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
TTFT_SECONDS = RedisHistogram(
    "arena_time_to_first_token_seconds",
    "Claim to the first token from the model's backend, per model.",
    ["model"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_WAIT_SECONDS = RedisHistogram(
    "arena_queue_wait_seconds",
    "Answer created to claimed by a worker, per model: grows when a model lacks capacity.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

_STORED: tuple[RedisCounter | RedisHistogram, ...] = (
    BATTLES_STARTED,
    VOTES,
    GENERATED_TOKENS,
    RESPONSE_FAILURES,
    GENERATION_SECONDS,
    TTFT_SECONDS,
    QUEUE_WAIT_SECONDS,
)


def battle_started() -> None:
    BATTLES_STARTED.inc()


def vote_recorded(*, outcome: str, valid: bool) -> None:
    VOTES.inc(outcome=outcome, validity="valid" if valid else "invalid")


def response_claimed(*, model: str, waited_s: float, pipe: Pipeline | None = None) -> None:
    QUEUE_WAIT_SECONDS.observe(max(waited_s, 0.0), pipe=pipe, model=model)


def response_completed(
    *,
    model: str,
    latency_ms: int,
    ttft_ms: int | None,
    completion_tokens: int,
    pipe: Pipeline | None = None,
) -> None:
    """An answer's metrics in one round trip (or in the caller's `pipe`)."""
    with _recording("response_completed", pipe) as into:
        GENERATION_SECONDS.observe(latency_ms / 1000, pipe=into, model=model)
        if ttft_ms is not None:
            TTFT_SECONDS.observe(ttft_ms / 1000, pipe=into, model=model)
        GENERATED_TOKENS.inc(completion_tokens, pipe=into, model=model)


def response_failed(*, model: str, cause: str) -> None:
    RESPONSE_FAILURES.inc(model=model, cause=cause)


# --- Exposition ----------------------------------------------------------------------------------


class ArenaCollector:
    """Reads the stored counters and histograms, and the gauges, at each scrape.

    Without `per_model`, only the series that name no model: a series per model moves with the
    battles in flight (slots in use, tokens, queue waits), so whoever reads it while a battle
    runs learns which two models answer it.
    """

    def __init__(self, *, per_model: bool = True) -> None:
        self.per_model = per_model

    def collect(self) -> Iterator[Metric]:
        client = metrics_redis()
        stored = [m for m in _STORED if self.per_model or "model" not in m.labelnames]
        pipe = client.pipeline(transaction=False)
        for metric in stored:
            pipe.hgetall(metric.key)
        for metric, raw in zip(stored, pipe.execute(), strict=True):
            yield metric.collect(raw)
        if self.per_model:
            yield from _gauges(client)
        else:
            yield _workers_alive(client)


def _gauges(client: redis.Redis) -> Iterable[Metric]:
    # Imported here: this module is imported by the services, and these import the models.
    from arena.heartbeat import capacity_key, workers_alive
    from arena.models import ArenaModel

    models = list(ArenaModel.objects.values_list("name", "enabled", "healthy", "max_concurrency"))
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for name, *_ in models:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(f"model.{name}{suffix}")
        pipe.zcount(capacity_key(name), now, "+inf")
    replies = iter(pipe.execute())
    live = workers_alive(client)
    consumers: dict[str, int] = {}
    for worker in live:
        for queue in worker.queues:
            consumers[queue] = consumers.get(queue, 0) + 1

    depth = GaugeMetricFamily(
        "arena_queue_depth",
        "Generations waiting in the model's Celery queue (model.<name>), read at scrape.",
        labels=["model"],
    )
    slots = GaugeMetricFamily(
        "arena_model_slots_in_use", "Capacity slots held (of max_concurrency).", labels=["model"]
    )
    limit = GaugeMetricFamily(
        "arena_model_max_concurrency", "The model's max_concurrency.", labels=["model"]
    )
    healthy = GaugeMetricFamily(
        "arena_model_healthy",
        "1 unless repeated failures took the model out of the pool.",
        labels=["model"],
    )
    workers = GaugeMetricFamily(
        "arena_queue_workers", "Live workers consuming the model's queue.", labels=["model"]
    )
    for name, enabled, is_healthy, max_concurrency in models:
        waiting = sum(int(next(replies)) for _ in _PRIORITY_SUFFIXES)
        in_use = int(next(replies))
        # Disabled models (gone from models.toml) stay in the registry forever: show them only
        # while something of theirs is still queued or running.
        if not enabled and not waiting and not in_use:
            continue
        depth.add_metric([name], waiting)
        slots.add_metric([name], in_use)
        limit.add_metric([name], max_concurrency)
        healthy.add_metric([name], 1 if is_healthy else 0)
        workers.add_metric([name], consumers.get(f"model.{name}", 0))
    return [depth, slots, limit, healthy, workers, _workers_alive(client, live)]


def _workers_alive(client: redis.Redis, live: Sequence[object] | None = None) -> Metric:
    from arena.heartbeat import workers_alive

    alive = GaugeMetricFamily("arena_workers_alive", "Workers with a fresh heartbeat.")
    alive.add_metric([], len(workers_alive(client) if live is None else live))
    return alive


def metrics_exposition(*, per_model: bool = True) -> bytes:
    """The Prometheus text format of everything above, or of the series that name no model
    (raises redis.RedisError if Redis is unreachable: then the scrape fails, and Prometheus's
    `up` says so)."""
    # The collector alone, not a registry: this process's own metrics (its memory, its GC)
    # would describe whichever web process the scrape happened to reach.
    return generate_latest(ArenaCollector(per_model=per_model))
