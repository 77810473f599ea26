"""One way to make battles and votes in a test, instead of a hand-written one per file.

`vote_build` makes the battle (saved: a vote needs its row) and an unsaved Vote on it, with the
fields every vote needs filled in; `votes_store` saves many at once. Anything else a test cares
about (language, tokens, style, validity, conversations, times) is passed as a Vote field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from django.utils import timezone

from arena.models import ArenaModel, Battle, Vote


def battle_make(
    model_a: ArenaModel, model_b: ArenaModel, *, visitor_id: str = "v", **fields: Any
) -> Battle:
    """A stored battle between the two models (no turns: the votes carry the conversations)."""
    return Battle.objects.create(model_a=model_a, model_b=model_b, visitor_id=visitor_id, **fields)


def vote_build(
    model_a: ArenaModel,
    model_b: ArenaModel,
    outcome: str,
    *,
    visitor_id: str = "v",
    when: dt.datetime | None = None,
    battle: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Vote:
    """An unsaved vote on a new battle of `visitor_id` (`battle`: more fields of that battle).

    `when` is when the battle started (default: now); one turn, no text, 10 prompt characters
    unless `fields` say otherwise.
    """
    started = when or timezone.now()
    defaults: dict[str, Any] = {
        "conversation_a": [],
        "conversation_b": [],
        "turns": 1,
        "prompt_chars": 10,
        "battle_started_at": started,
    }
    return Vote(
        battle=battle_make(model_a, model_b, visitor_id=visitor_id, **(battle or {})),
        model_a=model_a,
        model_b=model_b,
        outcome=outcome,
        visitor_id=visitor_id,
        **{**defaults, **fields},
    )


def votes_store(votes: Iterable[Vote]) -> list[Vote]:
    return Vote.objects.bulk_create(list(votes))
