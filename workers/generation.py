"""One generation, start to end: claim the Response, stream the backend's deltas into Redis,
store the answer. Called by the `generate` task; tests call it directly."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from redis.client import Pipeline

from arena import metrics, selectors, services, streams
from arena.models import Response, ResponseStatus
from workers import leases
from workers.backends import backend_for
from workers.backends.base import (
    FAULT_MODEL,
    FAULT_OURS,
    Backend,
    BackendError,
    Finish,
    SamplingParams,
)
from workers.capacity import AtCapacity, Slot, capacity_slot

log = logging.getLogger(__name__)

# The metrics' `cause` of a failure, by whose fault it was (only the model's count toward health).
_FAULT_CAUSES = {FAULT_MODEL: "backend_error", FAULT_OURS: "our_error"}
# Responses this process is running: a duplicate delivery to the same worker does nothing.
_running: set[int] = set()
_running_lock = threading.Lock()


class LeaseLost(Exception):
    """This worker stalled past its lease and another worker's reaper handed the answer on."""


def sampling_params(options: dict[str, Any]) -> SamplingParams:
    """The model's sampling defaults from its registry options."""
    sampling = dict(options.get("sampling") or {})
    if "stop" in sampling:
        sampling["stop"] = tuple(sampling["stop"])
    return SamplingParams(**sampling)


def generation_run(*, response_id: int, backend: Backend | None = None) -> bool:
    """Run one generation; False when there was nothing to do (claimed elsewhere or ended).

    The response's lease is taken first (a live worker that holds it is answering it: a
    redelivered or re-enqueued duplicate does nothing), then the model's capacity slot: while
    every slot is busy the answer stays queued here, and nothing is sent to the model's server.
    """
    with _running_lock:
        if response_id in _running:
            return False
        _running.add(response_id)
    client = streams.redis_client()
    try:
        if not leases.response_lease_take(client, response_id=response_id):
            return False
        lease = leases.ResponseLease(client, response_id)
        # The answer's last round trip: its end marker, metrics and releases, queued as they come.
        last = client.pipeline(transaction=True)
        try:
            return _run_leased(response_id, backend, lease, last)
        finally:
            # Whatever the last round trip did not carry (the answer ended another way).
            with contextlib.suppress(redis.RedisError):
                if last.command_stack:
                    lease.release(last)
                    last.execute()
                else:
                    lease.release()
    finally:
        with _running_lock:
            _running.discard(response_id)


def _run_leased(
    response_id: int, backend: Backend | None, lease: leases.ResponseLease, last: Pipeline
) -> bool:
    # One read: the row with its model and turn, claimed below with one conditional UPDATE.
    response = selectors.response_for_generation(response_id=response_id)
    if response is None:
        return False
    # Streaming, yet its lease was free: the worker that ran it died before any reaper noticed.
    # Hand it on here (queued again if no token was sent, else failed).
    if response.status == ResponseStatus.STREAMING:
        if services.response_orphan_recover(response_id=response_id, enqueue=False) != "requeued":
            return False
        response.status, response.started_at = ResponseStatus.QUEUED, None
    if response.status != ResponseStatus.QUEUED:
        return False
    model = response.model
    timeout = settings.ARENA_GENERATION_TIMEOUT_SECONDS
    try:
        with capacity_slot(
            streams.redis_client(),
            model_name=model.name,
            limit=model.max_concurrency,
            holder=str(response_id),
            hold_s=leases.lease_seconds(),
            wait_s=timeout,
        ) as slot:
            if services.response_claim(response=response, pipe=last) is None:
                return False
            return _generate(response, backend, last, slot, lease)
    except AtCapacity as exc:
        return services.response_fail(response_id=response_id, error=str(exc), cause="capacity")


def _generate(
    response: Response,
    backend: Backend | None,
    last: Pipeline,
    slot: Slot,
    lease: leases.ResponseLease,
) -> bool:
    started = time.monotonic()
    writer = streams.StreamWriter(streams.redis_client(), response.turn.battle_id, response.id)
    parts: list[str] = []
    ttft_ms: int | None = None
    model = response.model
    try:
        backend = backend or backend_for(model.backend, model.options)
        finish: Finish | None = None
        for event in backend.stream(
            selectors.generation_messages(response), sampling_params(model.options)
        ):
            if isinstance(event, Finish):
                finish = event
                break
            if leases.response_lease_lost(response.id):
                _lease_recheck(response)
            if ttft_ms is None:
                ttft_ms = int((time.monotonic() - started) * 1000)
            parts.append(event.text)
            writer.delta(event.text)
        if finish is None:
            raise BackendError("the backend ended without a finish record")
    except LeaseLost:
        # The answer is another worker's now (queued again) or failed: write nothing more.
        log.warning("response %s: lease lost while generating; abandoned", response.id)
        return False
    except SoftTimeLimitExceeded:
        return _fail(response, "generation timed out", parts, writer, cause="timeout")
    except redis.RedisError as exc:
        # Our side failed, not the model's: no mark against its health.
        return _fail(
            response,
            f"token stream lost: {exc}",
            parts,
            None,
            model_failed=False,
            cause="stream_lost",
        )
    except BackendError as exc:
        # Only the model's own failures count toward its health (see BackendError.fault): a
        # conversation too long for it is the visitor's, a bad option ours.
        return _fail(
            response,
            str(exc) or type(exc).__name__,
            parts,
            writer,
            model_failed=exc.fault == FAULT_MODEL,
            cause=_FAULT_CAUSES.get(exc.fault, "refused_request"),
        )
    except OSError as exc:  # The network or the disk under the model.
        cause = _snake(type(exc).__name__)
        return _fail(response, str(exc) or type(exc).__name__, parts, writer, cause=cause)
    except Exception as exc:  # Ours (a bug): it must not leave the visitor waiting either.
        log.exception(
            "generation of response %s crashed",
            response.id,
            extra={"event": "generation_crashed", "response_id": response.id},
        )
        return _fail(
            response,
            f"{type(exc).__name__}: {exc}",
            parts,
            writer,
            model_failed=False,
            cause="crash",
        )
    latency_ms = int((time.monotonic() - started) * 1000)
    text = "".join(parts)
    # The database first: a reader that sees `done` may vote at once.
    stored = services.response_complete(
        response=response, text=text, finish=finish, ttft_ms=ttft_ms, latency_ms=latency_ms
    )
    if stored:
        writer.close(streams.DONE, finish.finish_reason, pipe=last)
        metrics.response_completed(
            model=model.name,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            completion_tokens=finish.completion_tokens,
            pipe=last,
        )
    # One round trip for the end marker, the metrics and both releases.
    slot.release(last)
    lease.release(last)
    try:
        last.execute()
    except redis.RedisError as exc:
        # Stored: a reader that reconnects learns from the database; the lease and the slot
        # lapse by themselves (the keeper no longer renews them).
        log.warning("response %s: the end of its stream was not written: %s", response.id, exc)
    if model.consecutive_failures:
        # Only a model with failures counted (when this answer began) has anything to reset.
        services.model_health_record(model_id=model.id, ok=True)
    log.info(
        "response %s done: %s tokens, ttft %s ms, %s ms",
        response.id,
        finish.completion_tokens,
        ttft_ms,
        latency_ms,
        extra={
            "event": "response_completed" if stored else "response_discarded",
            "battle_id": response.turn.battle_id,
            "response_id": response.id,
            "model": model.name,
            "latency_ms": latency_ms,
            "ttft_ms": ttft_ms,
            "prompt_tokens": finish.prompt_tokens,
            "completion_tokens": finish.completion_tokens,
            "finish_reason": finish.finish_reason,
        },
    )
    return stored


def _lease_recheck(response: Response) -> None:
    """Our lease was not found when renewed. If a reaper handed the answer on (the database says
    so: it is no longer our claim), stop; if not (Redis lost its data, say), take it again."""
    ours = Response.objects.filter(
        id=response.id, status=ResponseStatus.STREAMING, started_at=response.started_at
    ).exists()
    if not ours or not leases.response_lease_take(streams.redis_client(), response_id=response.id):
        raise LeaseLost


def _snake(name: str) -> str:
    """ConnectionRefusedError -> connection_refused_error: a metric label from a class name."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _fail(
    response: Response,
    error: str,
    parts: list[str],
    writer: streams.StreamWriter | None,
    *,
    model_failed: bool = True,
    cause: str,
) -> bool:
    # response_fail logs the failure and counts it (every path to `failed` goes through it).
    if writer is not None:
        # What was generated before the fault reaches the readers too, as it does the database.
        with contextlib.suppress(redis.RedisError):
            writer.flush()
    failed = services.response_fail(
        response_id=response.id,
        error=error,
        text="".join(parts),
        cause=cause,
        claimed_at=response.started_at,
    )
    if not failed:
        return False  # it had ended (reaped) or been handed to another worker meanwhile
    if model_failed:
        services.model_health_record(model_id=response.model_id, ok=False, error=error)
    return True
