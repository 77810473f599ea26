"""Battles: create one (the pair drawn by the sampling policy), continue it, regenerate its last
turn, flag it for moderation.
"""

from __future__ import annotations

import logging

import numpy as np
from django.conf import settings
from django.db import transaction

from arena import images, metrics, selectors
from arena.errors import Conflict, InvalidInput, Unavailable
from arena.models import (
    Battle,
    Response,
    ResponseStatus,
    Side,
    Turn,
)
from arena.sampling.plan import plan_pair_draw
from arena.sampling.policy import NotEnoughModels
from arena.services.guards import (
    battle_lock,
    context_check,
    prompt_clean,
    prompt_moderate,
    rate_limit,
    responses_require,
)
from arena.services.responses import responses_create

log = logging.getLogger(__name__)


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
    rate_limit(limits, what="new battles")
    # After the rate limit, so that refused prompts count too: nobody probes the checker fast.
    prompt_moderate(prompt, battle=None, visitor_id=visitor_id)
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
    context_check([(pool[side], [{"role": "user", "content": prompt}]) for side in (left, right)])
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
        responses_create(battle, turn)
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


def _last_turn(battle: Battle) -> tuple[Turn, dict[str, Response]]:
    turn = battle.turns.order_by("-index").first()
    assert turn is not None, "a battle always has a first turn"
    return turn, selectors.responses_current(turn)


def battle_continue(*, battle: Battle, visitor_id: str, prompt: object) -> Turn:
    """A follow-up: a new turn where both models continue their own conversation."""
    prompt = prompt_clean(prompt)
    # Before the transaction: the check may wait on an HTTP endpoint, and no lock should.
    prompt_moderate(prompt, battle=battle, visitor_id=visitor_id)
    with transaction.atomic():
        battle = battle_lock(battle, visitor_id)
        turn, responses = _last_turn(battle)
        responses_require(responses, ResponseStatus.DONE, action="send a follow-up")
        if turn.index + 1 >= settings.ARENA_MAX_TURNS:
            raise InvalidInput(
                f"This battle reached its limit of {settings.ARENA_MAX_TURNS} turns: "
                "vote, then start a new round."
            )
        context_check(
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
        responses_create(battle, new_turn)
    return new_turn


def battle_regenerate(*, battle: Battle, visitor_id: str) -> Turn:
    """Both answers of the last turn are redone; the old ones stay, superseded."""
    with transaction.atomic():
        battle = battle_lock(battle, visitor_id)
        turn, responses = _last_turn(battle)
        if not all(r.is_final for r in responses.values()):
            raise Conflict("Wait until both answers are complete before regenerating.")
        Response.objects.filter(id__in=[r.id for r in responses.values()]).update(superseded=True)
        responses_create(battle, turn)
    return turn
