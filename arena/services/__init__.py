"""Writes of the battle domain, by entity: battles, votes, responses, model health, and the
guards they share.

Plain keyword-only functions named <entity>_<action>; the views and the worker call them.
Every check that protects the data lives here, not in a view. `from arena import services` and
`services.battle_create(...)` keep working: the entities' functions are named here.
"""

from __future__ import annotations

from arena.services.battles import (
    battle_continue,
    battle_create,
    battle_regenerate,
)
from arena.services.guards import (
    battle_lock,
    battle_moderation_flag,
    context_check,
    prompt_clean,
    prompt_moderate,
    rate_limit,
    responses_require,
)
from arena.services.health import (
    model_health_record,
    model_health_restore,
)
from arena.services.responses import (
    generation_enqueue,
    response_claim,
    response_complete,
    response_enqueue,
    response_fail,
    response_orphan_recover,
    responses_create,
    responses_reap_stuck,
)
from arena.services.votes import (
    vote_invalid_reason,
    vote_record,
)

__all__ = [
    "battle_continue",
    "battle_create",
    "battle_lock",
    "battle_moderation_flag",
    "battle_regenerate",
    "context_check",
    "generation_enqueue",
    "model_health_record",
    "model_health_restore",
    "prompt_clean",
    "prompt_moderate",
    "rate_limit",
    "response_claim",
    "response_complete",
    "response_enqueue",
    "response_fail",
    "response_orphan_recover",
    "responses_create",
    "responses_reap_stuck",
    "responses_require",
    "vote_invalid_reason",
    "vote_record",
]
