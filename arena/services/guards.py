"""The checks every write of the battle domain makes first: prompt, rate limits, moderation,
the model's context, the battle's owner and state.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from arena import context, moderation, streams
from arena.errors import Conflict, InvalidInput, Refused, Unavailable
from arena.messages import Message
from arena.models import (
    ArenaModel,
    Battle,
    Response,
    ResponseStatus,
    Side,
    Vote,
)
from arena.ratelimit import Limit, ratelimit_spend

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


def rate_limit(limits: list[tuple[str, int, int]], *, what: str) -> None:
    """One hit against every (key, limit, window in seconds), in one Redis round trip; 429 past
    any of them, and then the hit counts against none (a refused request spends nothing)."""
    try:
        ratelimit_spend(streams.redis_client(), [Limit(*limit) for limit in limits], what=what)
    except redis.RedisError as exc:
        log.warning("rate limit check failed: %r", exc)
        raise Unavailable("The arena's Redis server is unavailable; try again shortly.") from exc


def battle_lock(battle: Battle, visitor_id: str) -> Battle:
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


def context_check(sides: list[tuple[ArenaModel, list[Message]]]) -> None:
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


def prompt_moderate(prompt: str, *, battle: Battle | None, visitor_id: str) -> None:
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


def responses_require(responses: dict[str, Response], status: str, *, action: str) -> None:
    for side in (Side.A, Side.B):
        response = responses[side]
        if response.status == ResponseStatus.FAILED:
            raise Conflict(f"{Side(side).label} failed, so you cannot {action}. Start a new round.")
        if response.status != status:
            raise Conflict(f"Wait until both answers are complete before you {action}.")
