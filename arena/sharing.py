"""A read-only page of a finished battle: the conversation, the names and the outcome.

The visitor who voted asks for a link; the page lives at an unguessable address (192 random
bits) and only once the vote is in (a battle without a vote has no link, and its page is a
404). Staff revoke a link in the admin (`share_revoked`); a revoked battle gets no new link.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction

from arena import selectors
from arena.errors import Conflict, NotFound
from arena.models import Battle, Side, Vote


def new_share_id() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits


def battle_share(*, battle: Battle, visitor_id: str) -> str:
    """The battle's share id, made on the first request; only its voter, only after the vote."""
    with transaction.atomic():
        locked = Battle.objects.select_for_update().get(id=battle.id)
        if locked.visitor_id != visitor_id:
            raise Conflict("This battle belongs to another session.")
        if not Vote.objects.filter(battle=locked).exists():
            raise Conflict("Vote first: a battle can be shared once its vote is in.")
        if locked.share_revoked:
            raise Conflict("Sharing this battle was withdrawn by the arena's staff.")
        if not locked.share_id:
            locked.share_id = new_share_id()
            locked.save(update_fields=["share_id"])
        return locked.share_id


def shared_battle_get(*, share_id: str) -> Battle:
    """The shared battle; NotFound unless it has this link, a vote, and no revocation."""
    if "\x00" in share_id:  # PostgreSQL refuses a NUL in a query; no link holds one
        raise NotFound("There is no shared battle at this address.")
    battle = (
        Battle.objects.select_related("model_a", "model_b", "vote")
        .filter(share_id=share_id, share_revoked=False, vote__isnull=False)
        .first()
    )
    if battle is None:
        raise NotFound("There is no shared battle at this address.")
    return battle


def shared_battle_state(battle: Battle) -> dict[str, Any]:
    """What the shared page shows: the prompts, both answers, both names and the outcome."""
    vote = battle.vote
    return {
        "mode": battle.mode,
        "anony": battle.anony,
        "created_at": battle.created_at.isoformat(),
        "outcome": vote.outcome,
        "model_a": selectors.model_public(vote.model_a),
        "model_b": selectors.model_public(vote.model_b),
        "turns": [
            {
                "index": turn.index,
                "prompt": turn.prompt,
                "a": responses[Side.A].text if Side.A in responses else "",
                "b": responses[Side.B].text if Side.B in responses else "",
            }
            for turn, responses in selectors.turns_with_responses(battle)
        ],
    }
