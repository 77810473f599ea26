"""Votes: the visitor's verdict, stored with everything the leaderboard and the datasets need."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction

from arena import anonymity, facts, metrics, moderation, selectors
from arena.errors import Conflict, InvalidInput
from arena.models import (
    CHOICES,
    Battle,
    Response,
    ResponseStatus,
    Side,
    Turn,
    Vote,
)
from arena.prompts import prompt_hash
from arena.services.guards import battle_lock, rate_limit, responses_require

log = logging.getLogger(__name__)


def vote_record(*, battle: Battle, visitor_id: str, choice: object) -> Vote:
    """Store the visitor's verdict with everything the leaderboard and datasets need."""
    # A string first: `[] in CHOICES` would raise (a list is unhashable) and answer 500.
    if not isinstance(choice, str) or choice not in CHOICES:
        raise InvalidInput(f"Vote with one of: {', '.join(CHOICES)} (got {choice!r}).")
    with transaction.atomic():
        battle = battle_lock(battle, visitor_id)
        turns = selectors.turns_with_responses(battle)
        for _, responses in turns:
            responses_require(responses, ResponseStatus.DONE, action="vote")
        # Only now: a vote refused as too early (or on a finished battle) spends no budget.
        rate_limit([(f"vote:{visitor_id}", settings.ARENA_VOTES_PER_MINUTE, 60)], what="votes")
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
