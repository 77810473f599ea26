"""Responses (one side's answer): enqueue the generation by task name, claim, complete, fail,
recover an orphan, reap the stuck ones.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as BrokerError
from redis.client import Pipeline

from arena import metrics, moderation, selectors, streams
from arena.celery import app as celery_app
from arena.messages import Finish
from arena.models import (
    ArenaModel,
    Battle,
    Response,
    ResponseStatus,
    Side,
    Turn,
)
from arena.services.guards import battle_moderation_flag

log = logging.getLogger(__name__)


def responses_create(battle: Battle, turn: Turn) -> None:
    # One INSERT for both sides (PostgreSQL and SQLite return the new ids).
    responses = Response.objects.bulk_create(
        Response(turn=turn, side=side, model=battle.model_for(side)) for side in (Side.A, Side.B)
    )
    jobs = [(response.id, response.model.queue) for response in responses]
    transaction.on_commit(partial(generation_enqueue, jobs))


def response_enqueue(*, response_id: int) -> None:
    """Send a queued response's generation task again (its first worker died)."""
    model_name = Response.objects.values_list("model__name", flat=True).get(id=response_id)
    generation_enqueue([(response_id, ArenaModel(name=model_name).queue)])


def generation_enqueue(jobs: list[tuple[int, str]]) -> None:
    """Send one generation task per (response id, queue). Each model has its own queue, so a
    battle is two messages; kombu's producer batch writes both in one Redis pipeline, one round
    trip on one connection (two `send_task` calls made a Redis client and a round trip each)."""
    try:
        with celery_app.producer_or_acquire() as producer, producer.batch():
            for response_id, queue in jobs:
                celery_app.send_task(
                    "workers.tasks.generate", args=[response_id], queue=queue, producer=producer
                )
    except (BrokerError, BatchPublishError, redis.RedisError) as exc:
        # The batch is all or nothing as far as we can tell: fail every answer it carried, the
        # visitor sees the round fail instead of waiting on an answer nobody will write.
        for response_id, _ in jobs:
            log.error("enqueue failed for response %s: %s", response_id, exc)
            response_fail(
                response_id=response_id,
                error=f"could not enqueue the generation: {exc}",
                cause="enqueue",
            )


def response_claim(
    *,
    response_id: int | None = None,
    response: Response | None = None,
    pipe: Pipeline | None = None,
) -> Response | None:
    """Move a queued response to streaming; None when another worker (or a past try) has it.

    `response`: the row already read with its model and turn (selectors.response_for_generation),
    claimed with one conditional UPDATE and not read back. `pipe`: where the queue-wait metric
    goes (the worker's pipeline for the answer's last round trip); without it, one round trip.
    """
    if response is None:
        if response_id is None:
            raise TypeError("response_claim needs response_id or response")
        response = selectors.response_for_generation(response_id=response_id)
        if response is None:
            return None
    started_at = timezone.now()
    claimed = Response.objects.filter(id=response.id, status=ResponseStatus.QUEUED).update(
        status=ResponseStatus.STREAMING, started_at=started_at
    )
    if claimed != 1:
        # Nothing updated: another worker claimed it first, or it already ended.
        return None
    # What the UPDATE wrote (started_at fences this claim in every later write).
    response.status, response.started_at = ResponseStatus.STREAMING, started_at
    queued_ms = int((started_at - response.created_at).total_seconds() * 1000)
    metrics.response_claimed(model=response.model.name, waited_s=queued_ms / 1000, pipe=pipe)
    log.info(
        "response %s claimed after %s ms in the queue",
        response.id,
        queued_ms,
        extra={
            "event": "response_claimed",
            "battle_id": response.turn.battle_id,
            "response_id": response.id,
            "model": response.model.name,
            "queued_ms": queued_ms,
        },
    )
    return response


def response_complete(
    *, response: Response, text: str, finish: Finish, ttft_ms: int | None, latency_ms: int
) -> bool:
    """Store the answer; False if the response had been failed meanwhile (by the reaper).

    The answer is moderated first: a flag lands on the battle in the same transaction that
    marks the answer done, so no vote can be cast between the two.
    """
    verdict = (
        moderation.moderation_check(text, what="answer")
        if settings.ARENA_MODERATION_ANSWERS and text
        else moderation.CLEAN
    )
    # started_at fences this claim: an answer handed to another worker meanwhile (its lease
    # lapsed) is not overwritten by the first worker's late result.
    done = Response.objects.filter(
        id=response.id, status=ResponseStatus.STREAMING, started_at=response.started_at
    )
    fields = {
        "status": ResponseStatus.DONE,
        "text": text,
        "finish_reason": finish.finish_reason,
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "ttft_ms": ttft_ms,
        "latency_ms": latency_ms,
        "finished_at": timezone.now(),
    }
    if not verdict.flagged:
        # One statement: nothing else to write with it, so no transaction around it.
        return done.update(**fields) == 1
    with transaction.atomic():
        stored = done.update(**fields) == 1
        if stored:
            battle_moderation_flag(
                battle_id=response.turn.battle_id,
                flag=verdict.as_flag(
                    kind="answer",
                    turn=response.turn.index,
                    side=response.side,
                    response_id=response.id,
                    at=timezone.now().isoformat(),
                ),
            )
    return stored


def response_fail(
    *,
    response_id: int,
    error: str,
    text: str = "",
    cause: str = "error",
    claimed_at: dt.datetime | None = None,
) -> bool:
    """Mark a response failed and tell its stream's readers; False if it had already ended.

    `cause` is a short class of the failure for the metrics and logs (timeout, capacity,
    backend_error, stream_lost, reaped, enqueue, worker_lost, ...); `error` is the full message.
    `claimed_at` (the worker's claim, Response.started_at) fails only that claim's run.
    """
    pending = Response.objects.filter(
        id=response_id, status__in=[ResponseStatus.QUEUED, ResponseStatus.STREAMING]
    )
    if claimed_at is not None:
        pending = pending.filter(started_at=claimed_at)
    failed = pending.update(
        status=ResponseStatus.FAILED, error=error[:2000], text=text, finished_at=timezone.now()
    )
    if failed:
        side, battle_id, model_name = Response.objects.values_list(
            "side", "turn__battle_id", "model__name"
        ).get(id=response_id)
        metrics.response_failed(model=model_name, cause=cause)
        log.warning(
            "response %s failed (%s): %s",
            response_id,
            cause,
            error[:300],
            extra={
                "event": "response_failed",
                "battle_id": battle_id,
                "response_id": response_id,
                "model": model_name,
                "cause": cause,
                "error": error[:300],
            },
        )
        try:
            writer = streams.StreamWriter(streams.redis_client(), battle_id, response_id)
            writer.close(streams.FAIL, selectors.visitor_failure_message(side))
        except redis.RedisError as exc:
            # The database says failed; a reader that reconnects learns it from there.
            log.warning("could not write the failure of response %s: %s", response_id, exc)
    return failed == 1


def response_orphan_recover(*, response_id: int, worker: str = "", enqueue: bool = True) -> str:
    """The worker answering this response stopped (its lease lapsed): hand the answer on.

    If the visitor has seen no token of it, it is queued again (and enqueued, unless the caller
    runs it itself): a live worker answers it. If they have, a new attempt would show a different
    answer after the first one's beginning, so it fails with a clear message. Returns "requeued",
    "failed" or "ended" (it had ended anyway).
    """
    row = (
        Response.objects.filter(
            id=response_id, status__in=[ResponseStatus.QUEUED, ResponseStatus.STREAMING]
        )
        .values_list("turn__battle_id", flat=True)
        .first()
    )
    if row is None:
        return "ended"
    battle_id = row
    key = streams.stream_key(battle_id, response_id)
    entries = streams.redis_client().xrange(key)
    if not entries:
        requeued = Response.objects.filter(
            id=response_id, status__in=[ResponseStatus.QUEUED, ResponseStatus.STREAMING]
        ).update(status=ResponseStatus.QUEUED, started_at=None)
        if not requeued:
            return "ended"
        log.warning(
            "response %s queued again: its worker %s stopped before the first token",
            response_id,
            worker or "?",
            extra={"event": "response_requeued", "response_id": response_id, "worker": worker},
        )
        if enqueue:
            response_enqueue(response_id=response_id)
        return "requeued"
    decoded = [streams.stream_entry_decode(fields) for _, fields in entries if fields]
    seen = "".join(entry.text for entry in decoded if entry.kind == streams.DELTA)
    failed = response_fail(
        response_id=response_id,
        error=(
            f"the worker generating this answer ({worker or 'unknown'}) stopped after "
            f"{len(seen)} characters; a new attempt would not continue the same answer"
        ),
        text=seen,
        cause="worker_lost",
    )
    return "failed" if failed else "ended"


def responses_reap_stuck(*, now: dt.datetime | None = None) -> list[int]:
    """Fail the responses that have been queued or streaming for too long."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.ARENA_GENERATION_TIMEOUT_SECONDS)
    stuck = list(
        Response.objects.filter(
            status__in=[ResponseStatus.QUEUED, ResponseStatus.STREAMING], created_at__lt=cutoff
        ).values_list("id", flat=True)
    )
    timeout = settings.ARENA_GENERATION_TIMEOUT_SECONDS
    return [
        rid
        for rid in stuck
        if response_fail(
            response_id=rid, error=f"no answer within {timeout} s (reaped)", cause="reaped"
        )
    ]
