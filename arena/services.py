"""Writes of the battle domain: battles, turns, responses and votes.

Plain keyword-only functions named <entity>_<action>; the views and the worker call them.
Every check that protects the data lives here, not in a view.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from typing import Any

import numpy as np
import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as BrokerError

from arena import anonymity, context, facts, images, metrics, moderation, selectors, streams
from arena.celery import app as celery_app
from arena.errors import Conflict, InvalidInput, Refused, Unavailable
from arena.messages import Finish, Message
from arena.models import (
    CHOICES,
    ArenaModel,
    Battle,
    Response,
    ResponseStatus,
    Side,
    Turn,
    Vote,
)
from arena.prompts import prompt_hash
from arena.ratelimit import Limit, ratelimit_spend
from arena.sampling.plan import plan_pair_draw
from arena.sampling.policy import NotEnoughModels

log = logging.getLogger(__name__)


def prompt_clean(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("Type a prompt first: it is missing or empty.")
    prompt = prompt.strip()
    if len(prompt) > settings.ARENA_MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"The prompt is too long: {len(prompt)} characters, "
            f"at most {settings.ARENA_MAX_PROMPT_CHARS}."
        )
    return prompt


def battle_create(
    *,
    visitor_id: str,
    prompt: object,
    ip_hash: str = "",
    rng: np.random.Generator | None = None,
    image: bytes | None = None,
) -> Battle:
    """Draw a pair, create the battle, its first turn and two queued answers; enqueue both.

    With `image` (the uploaded bytes), only models that take images are drawn (arena/images.py).
    """
    prompt = prompt_clean(prompt)
    limits = [(f"battle:{visitor_id}", settings.ARENA_BATTLES_PER_MINUTE, 60)]
    if ip_hash:
        limits += [
            (f"battle-ip:{ip_hash}", settings.ARENA_BATTLES_PER_IP_MINUTE, 60),
            (f"battle-ip-day:{ip_hash}", settings.ARENA_BATTLES_PER_IP_DAY, 86400),
        ]
    _rate_limit(limits, what="new battles")
    # After the rate limit, so that refused prompts count too: nobody probes the checker fast.
    _prompt_moderate(prompt, battle=None, visitor_id=visitor_id)
    picture = images.image_normalise(image) if image is not None else None
    pool = selectors.model_pool(vision=picture is not None)
    try:
        left, right = plan_pair_draw(pool, rng or np.random.default_rng())
    except NotEnoughModels:
        if picture is not None:
            raise InvalidInput(images.NO_VISION_MODELS) from None
        raise Unavailable(
            "The arena needs at least two enabled models; an operator must enable them."
        ) from None
    _context_check([(pool[side], [{"role": "user", "content": prompt}]) for side in (left, right)])
    with transaction.atomic():
        battle = Battle.objects.create(
            model_a=pool[left], model_b=pool[right], visitor_id=visitor_id, ip_hash=ip_hash
        )
        turn = Turn.objects.create(
            battle=battle,
            index=0,
            prompt=prompt,
            image=images.image_store(picture) if picture is not None else None,
        )
        _responses_create(battle, turn)
    metrics.battle_started()
    log.info(
        "battle %s created: %s vs %s",
        battle.id,
        battle.model_a.name,
        battle.model_b.name,
        extra={
            "event": "battle_created",
            "battle_id": battle.id,
            "model_a": battle.model_a.name,
            "model_b": battle.model_b.name,
            "prompt_chars": len(prompt),
        },
    )
    return battle


def _rate_limit(limits: list[tuple[str, int, int]], *, what: str) -> None:
    """One hit against every (key, limit, window in seconds), in one Redis round trip; 429 past
    any of them, and then the hit counts against none (a refused request spends nothing)."""
    try:
        ratelimit_spend(streams.redis_client(), [Limit(*limit) for limit in limits], what=what)
    except redis.RedisError as exc:
        log.warning("rate limit check failed: %r", exc)
        raise Unavailable("The arena's Redis server is unavailable; try again shortly.") from exc


def _battle_lock(battle: Battle, visitor_id: str) -> Battle:
    """Re-read the battle under a row lock so concurrent requests on it run one at a time."""
    locked = (
        Battle.objects.select_for_update().select_related("model_a", "model_b").get(id=battle.id)
    )
    if locked.visitor_id != visitor_id:
        # selectors.battle_get checked this already; a second check costs nothing.
        raise Conflict("This battle belongs to another session.")
    if Vote.objects.filter(battle=locked).exists():
        raise Conflict("This battle is over: the vote is in. Start a new round.")
    return locked


def _last_turn(battle: Battle) -> tuple[Turn, dict[str, Response]]:
    turn = battle.turns.order_by("-index").first()
    assert turn is not None, "a battle always has a first turn"
    return turn, selectors.responses_current(turn)


def battle_continue(*, battle: Battle, visitor_id: str, prompt: object) -> Turn:
    """A follow-up: a new turn where both models continue their own conversation."""
    prompt = prompt_clean(prompt)
    # Before the transaction: the check may wait on an HTTP endpoint, and no lock should.
    _prompt_moderate(prompt, battle=battle, visitor_id=visitor_id)
    with transaction.atomic():
        battle = _battle_lock(battle, visitor_id)
        turn, responses = _last_turn(battle)
        _require_all(responses, ResponseStatus.DONE, action="send a follow-up")
        if turn.index + 1 >= settings.ARENA_MAX_TURNS:
            raise InvalidInput(
                f"This battle reached its limit of {settings.ARENA_MAX_TURNS} turns: "
                "vote, then start a new round."
            )
        _context_check(
            [
                (
                    battle.model_for(side),
                    [
                        *selectors.battle_conversation(battle, side),
                        {"role": "user", "content": prompt},
                    ],
                )
                for side in (Side.A, Side.B)
            ]
        )
        new_turn = Turn.objects.create(battle=battle, index=turn.index + 1, prompt=prompt)
        _responses_create(battle, new_turn)
    return new_turn


def _context_check(sides: list[tuple[ArenaModel, list[Message]]]) -> None:
    """Refuse a conversation that one side's model cannot take with room for its answer: sent
    anyway, it would fail (and before, count against the model's health)."""
    for model, messages in sides:
        system_prompt = model.options.get("system_prompt")
        if system_prompt:
            messages = [{"role": "system", "content": str(system_prompt)}, *messages]
        overflow = context.context_overflow(model, messages)
        if overflow is not None:
            tokens, limit = overflow
            # "one of the models": which one would tell the visitor who is fighting.
            raise InvalidInput(
                f"Your conversation is too long for one of the models (about {tokens} tokens; "
                f"the limit is {limit}). Start a new round with a shorter prompt."
            )


def _prompt_moderate(prompt: str, *, battle: Battle | None, visitor_id: str) -> None:
    """Refuse a prompt that moderation flags; a follow-up's flag is kept on its battle."""
    verdict = moderation.moderation_check(prompt, what="prompt")
    if not verdict.flagged:
        return
    if battle is not None:
        battle_moderation_flag(
            battle_id=battle.id,
            flag=verdict.as_flag(
                kind="prompt", at=timezone.now().isoformat(), excerpt=prompt[:200]
            ),
        )
    else:
        # No battle exists to keep it on; the log has who and why, not the prompt.
        log.warning(
            "moderation refused a new battle's prompt (visitor %s, %s: %s)",
            visitor_id,
            verdict.checker,
            ", ".join(verdict.categories),
        )
    if verdict.error:
        raise Unavailable("Prompts cannot be checked right now; try again shortly.")
    detail = f" ({', '.join(verdict.categories)})" if verdict.categories else ""
    raise Refused(
        f"This prompt was refused by the arena's content rules{detail}. Rephrase it and try again."
    )


def battle_moderation_flag(*, battle_id: str, flag: dict[str, Any]) -> None:
    """Add one moderation flag to the battle's record."""
    with transaction.atomic():
        # Under a row lock: both sides' workers may flag the same battle at the same moment.
        battle = Battle.objects.select_for_update().only("id", "moderation").get(id=battle_id)
        battle.moderation = [*battle.moderation, flag]
        battle.save(update_fields=["moderation"])


def battle_regenerate(*, battle: Battle, visitor_id: str) -> Turn:
    """Both answers of the last turn are redone; the old ones stay, superseded."""
    with transaction.atomic():
        battle = _battle_lock(battle, visitor_id)
        turn, responses = _last_turn(battle)
        if not all(r.is_final for r in responses.values()):
            raise Conflict("Wait until both answers are complete before regenerating.")
        Response.objects.filter(id__in=[r.id for r in responses.values()]).update(superseded=True)
        _responses_create(battle, turn)
    return turn


def _require_all(responses: dict[str, Response], status: str, *, action: str) -> None:
    for side in (Side.A, Side.B):
        response = responses[side]
        if response.status == ResponseStatus.FAILED:
            raise Conflict(f"{Side(side).label} failed, so you cannot {action}. Start a new round.")
        if response.status != status:
            raise Conflict(f"Wait until both answers are complete before you {action}.")


def _responses_create(battle: Battle, turn: Turn) -> None:
    # One INSERT for both sides (PostgreSQL and SQLite return the new ids).
    responses = Response.objects.bulk_create(
        Response(turn=turn, side=side, model=battle.model_for(side)) for side in (Side.A, Side.B)
    )
    jobs = [(response.id, response.model.queue) for response in responses]
    transaction.on_commit(partial(_generation_enqueue, jobs))


def response_enqueue(*, response_id: int) -> None:
    """Send a queued response's generation task again (its first worker died)."""
    model_name = Response.objects.values_list("model__name", flat=True).get(id=response_id)
    _generation_enqueue([(response_id, ArenaModel(name=model_name).queue)])


def _generation_enqueue(jobs: list[tuple[int, str]]) -> None:
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


def vote_record(*, battle: Battle, visitor_id: str, choice: object) -> Vote:
    """Store the visitor's verdict with everything the leaderboard and datasets need."""
    # A string first: `[] in CHOICES` would raise (a list is unhashable) and answer 500.
    if not isinstance(choice, str) or choice not in CHOICES:
        raise InvalidInput(f"Vote with one of: {', '.join(CHOICES)} (got {choice!r}).")
    with transaction.atomic():
        battle = _battle_lock(battle, visitor_id)
        turns = selectors.turns_with_responses(battle)
        for _, responses in turns:
            _require_all(responses, ResponseStatus.DONE, action="vote")
        # Only now: a vote refused as too early (or on a finished battle) spends no budget.
        _rate_limit([(f"vote:{visitor_id}", settings.ARENA_VOTES_PER_MINUTE, 60)], what="votes")
        # From the turns read above: the battle's rows are read once per vote.
        conversation_a = selectors.turns_conversation(turns, Side.A)
        conversation_b = selectors.turns_conversation(turns, Side.B)
        prompts = [turn.prompt for turn, _ in turns]
        answers = [m["content"] for m in conversation_a + conversation_b if m["role"] != "user"]
        invalid_reason = vote_invalid_reason(
            battle=battle, prompts=prompts, answers=answers, responses=turns
        )
        try:
            vote = Vote.objects.create(
                battle=battle,
                model_a=battle.model_a,
                model_b=battle.model_b,
                outcome=CHOICES[str(choice)],
                visitor_id=visitor_id,
                conversation_a=conversation_a,
                conversation_b=conversation_b,
                **facts.battle_facts(
                    conversation_a,
                    conversation_b,
                    tokens_a=sum(r[Side.A].completion_tokens or 0 for _, r in turns),
                    tokens_b=sum(r[Side.B].completion_tokens or 0 for _, r in turns),
                ).as_fields(),
                battle_started_at=battle.created_at,
                prompt_key=prompt_hash(
                    {
                        "battle_id": battle.id,
                        "external_id": "",
                        "conversation_a": conversation_a,
                        "conversation_b": conversation_b,
                    }
                ),
                is_valid=invalid_reason is None,
                invalid_reason=invalid_reason or "",
                # False for a side-by-side battle with chosen models (arena/modes.py).
                anony=battle.anony,
            )
        except IntegrityError:
            raise Conflict("This battle already has a vote.") from None
    metrics.vote_recorded(outcome=vote.outcome, valid=vote.is_valid)
    log.info(
        "vote on battle %s: %s (%s)",
        battle.id,
        vote.outcome,
        "counts" if vote.is_valid else f"does not count: {vote.invalid_reason}",
        extra={
            "event": "vote_recorded",
            "battle_id": battle.id,
            "vote_id": vote.id,
            "outcome": vote.outcome,
            "valid": vote.is_valid,
            "invalid_reason": vote.invalid_reason,
        },
    )
    return vote


def vote_invalid_reason(
    *,
    battle: Battle,
    prompts: list[str],
    answers: list[str],
    responses: list[tuple[Turn, dict[str, Response]]],
) -> str | None:
    """Why this vote must not count (it is stored all the same), or None."""
    terms = [
        term
        for model in (battle.model_a, battle.model_b)
        for term in anonymity.identity_terms(
            name=model.name,
            display_name=model.display_name,
            organization=model.organization,
            extra=model.options.get("identity_terms", []),
        )
    ]
    # First: a vote on answers that moderation flagged must not enter a dataset, whatever else
    # is wrong with it, and the export's "exclude moderated" looks for this reason.
    judged = {r.id for _, pair in responses for r in pair.values()}
    flags = [
        flag
        for flag in battle.moderation
        if flag.get("kind") == "answer" and flag.get("response_id") in judged
    ]
    if flags:
        return moderation.vote_reason(flags)
    leak = anonymity.leak_reason(prompts=prompts, answers=answers, terms=terms)
    if leak:
        return leak
    if any(r.finish_reason == "length" for _, pair in responses for r in pair.values()):
        return "an answer was cut off at the length limit"
    return None


# --- The worker's side: the life of one Response ---------------------------------------------


def response_claim(*, response_id: int) -> Response | None:
    """Move a queued response to streaming; None when another worker (or a past try) has it."""
    claimed = Response.objects.filter(id=response_id, status=ResponseStatus.QUEUED).update(
        status=ResponseStatus.STREAMING, started_at=timezone.now()
    )
    if claimed != 1:
        # Nothing updated: another worker claimed it first, or it already ended.
        return None
    response = Response.objects.select_related("model", "turn__battle").get(id=response_id)
    assert response.started_at is not None
    queued_ms = int((response.started_at - response.created_at).total_seconds() * 1000)
    metrics.response_claimed(model=response.model.name, waited_s=queued_ms / 1000)
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
    with transaction.atomic():
        stored = (
            # started_at fences this claim: an answer handed to another worker meanwhile (its
            # lease lapsed) is not overwritten by the first worker's late result.
            Response.objects.filter(
                id=response.id, status=ResponseStatus.STREAMING, started_at=response.started_at
            ).update(
                status=ResponseStatus.DONE,
                text=text,
                finish_reason=finish.finish_reason,
                prompt_tokens=finish.prompt_tokens,
                completion_tokens=finish.completion_tokens,
                ttft_ms=ttft_ms,
                latency_ms=latency_ms,
                finished_at=timezone.now(),
            )
            == 1
        )
        if stored and verdict.flagged:
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
    deltas = [fields for _, fields in entries if fields and fields.get("k") == streams.DELTA]
    seen = "".join(str(fields.get("t", "")) for fields in deltas)
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


# --- Model health: out of the pool after repeated failures, back once a probe succeeds -------


def model_health_record(*, model_id: int, ok: bool, error: str = "") -> None:
    """Count a generation's outcome; the ARENA_UNHEALTHY_AFTER-th failure in a row takes the
    model out of the sampling pool."""
    models = ArenaModel.objects.filter(id=model_id)
    if ok:
        # Filtered so that the common case (no failures) writes nothing.
        models.filter(consecutive_failures__gt=0).update(consecutive_failures=0)
        return
    models.update(consecutive_failures=F("consecutive_failures") + 1, health_error=error[:2000])
    went_down = models.filter(
        healthy=True, consecutive_failures__gte=settings.ARENA_UNHEALTHY_AFTER
    ).update(healthy=False, health_changed_at=timezone.now())
    if went_down:
        name = models.values_list("name", flat=True).get()
        log.warning(
            "model %s left the sampling pool: %s",
            name,
            error[:300],
            extra={"event": "model_unhealthy", "model": name, "error": error[:300]},
        )


def model_health_restore(*, model_id: int) -> None:
    """A probe succeeded: the model returns to the sampling pool."""
    restored = ArenaModel.objects.filter(id=model_id, healthy=False).update(
        healthy=True, consecutive_failures=0, health_error="", health_changed_at=timezone.now()
    )
    if restored:
        name = ArenaModel.objects.values_list("name", flat=True).get(id=model_id)
        log.info("model %s is healthy again", name, extra={"event": "model_healthy", "model": name})
