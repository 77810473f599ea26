"""The arena beyond the blind battle: side by side with chosen models, and direct chat.

Both are Battles with a `mode`, so the generation path is the blind battle's own: Response rows
on each model's queue, the same worker task, the same Redis Streams and SSE relay. The worker
reads a response's battle and side and nothing else, so it serves both modes untouched.

- A named battle (``BattleMode.NAMED``) has two sides the visitor chose; after creation it is
  played through the blind battle's endpoints (follow-up, regenerate, vote, stream). Its vote is
  stored with ``anony=False`` and never counts on the anonymous leaderboard.
- A chat (``BattleMode.CHAT``) has one side, A (``model_b`` repeats ``model_a``: the column is
  not null); the two-sided endpoints do not see it (`selectors.battle_get`). Each answer takes
  one label, up / down / flag (`AnswerFeedback`), exported as KTO records.

Rate limits, moderation and the context check are the blind battle's (`arena.services`); a new
named battle or chat spends the same per-visitor and per-address budget as a blind one.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from arena import selectors, services
from arena.errors import Conflict, InvalidInput, NotFound, Unavailable
from arena.messages import Message
from arena.models import (
    AnswerFeedback,
    ArenaModel,
    Battle,
    BattleMode,
    Feedback,
    Response,
    ResponseStatus,
    Side,
    Turn,
)

log = logging.getLogger(__name__)

RANDOM = "random"


def models_choosable() -> list[ArenaModel]:
    """The models a visitor may pick by name: enabled and healthy (a sampling weight of 0 keeps a
    model out of blind draws, not out of a chosen match)."""
    return list(ArenaModel.objects.filter(enabled=True, healthy=True).order_by("display_name"))


def _model_pick(name: object, *, field: str, choosable: dict[str, ArenaModel]) -> ArenaModel:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"Name a model in '{field}' (one of: {', '.join(choosable)}).")
    model = choosable.get(name)
    if model is None:
        raise InvalidInput(
            f"'{field}': no model named {name!r} can be chosen now "
            f"(choose one of: {', '.join(choosable) or 'none'})."
        )
    return model


def _limits(visitor_id: str, ip_hash: str) -> list[tuple[str, int, int]]:
    # The blind battle's keys: a visitor's new rounds share one budget whatever the mode.
    limits = [(f"battle:{visitor_id}", settings.ARENA_BATTLES_PER_MINUTE, 60)]
    if ip_hash:
        limits += [
            (f"battle-ip:{ip_hash}", settings.ARENA_BATTLES_PER_IP_MINUTE, 60),
            (f"battle-ip-day:{ip_hash}", settings.ARENA_BATTLES_PER_IP_DAY, 86400),
        ]
    return limits


def battle_named_create(
    *,
    visitor_id: str,
    prompt: object,
    model_a: object,
    model_b: object,
    ip_hash: str = "",
    rng: np.random.Generator | None = None,
) -> Battle:
    """A side-by-side battle between two models the visitor chose (or one and "random")."""
    prompt = services.prompt_clean(prompt)
    choosable = {m.name: m for m in models_choosable()}
    if model_a == RANDOM and model_b == RANDOM:
        raise InvalidInput("Choose at least one model; for two random ones, use the blind battle.")
    picked = {
        side: _model_pick(name, field=f"model_{side}", choosable=choosable)
        for side, name in (("a", model_a), ("b", model_b))
        if name != RANDOM
    }
    if len(picked) == 2 and picked["a"].id == picked["b"].id:
        raise InvalidInput("Choose two different models.")
    services.rate_limit(_limits(visitor_id, ip_hash), what="new battles")
    services.prompt_moderate(prompt, battle=None, visitor_id=visitor_id)
    for side in ("a", "b"):
        if side not in picked:
            others = [m for m in choosable.values() if m not in picked.values()]
            if not others:
                raise Unavailable("No other model can be chosen at random now.")
            picked[side] = others[int((rng or np.random.default_rng()).integers(len(others)))]
    message: list[Message] = [{"role": "user", "content": prompt}]
    services.context_check([(picked["a"], message), (picked["b"], message)])
    with transaction.atomic():
        battle = Battle.objects.create(
            mode=BattleMode.NAMED,
            model_a=picked["a"],
            model_b=picked["b"],
            visitor_id=visitor_id,
            ip_hash=ip_hash,
        )
        turn = Turn.objects.create(battle=battle, index=0, prompt=prompt)
        services.responses_create(battle, turn)
    log.info(
        "named battle %s created: %s vs %s",
        battle.id,
        battle.model_a.name,
        battle.model_b.name,
        extra={"event": "battle_created", "battle_id": battle.id, "mode": battle.mode},
    )
    return battle


# --- Direct chat ------------------------------------------------------------------------------


def chat_get(*, chat_id: str, visitor_id: str) -> Battle:
    """The chat, if it exists and belongs to this visitor (404 for another's: a chat is private)."""
    # No stored id holds a NUL, and PostgreSQL refuses one in a query (an error, not a miss).
    chat = (
        None
        if "\x00" in chat_id
        else Battle.objects.select_related("model_a")
        .filter(id=chat_id, mode=BattleMode.CHAT)
        .first()
    )
    if chat is None or chat.visitor_id != visitor_id:
        raise NotFound(f"No chat with id {chat_id!r} in this session.")
    return chat


def _answer_create(chat: Battle, turn: Turn) -> None:
    response = Response.objects.create(turn=turn, side=Side.A, model=chat.model_a)
    jobs = [(response.id, chat.model_a.queue)]
    transaction.on_commit(partial(services.generation_enqueue, jobs))


def chat_create(*, visitor_id: str, prompt: object, model: object, ip_hash: str = "") -> Battle:
    """A conversation with one chosen model: its first turn and one queued answer."""
    prompt = services.prompt_clean(prompt)
    chosen = _model_pick(model, field="model", choosable={m.name: m for m in models_choosable()})
    services.rate_limit(_limits(visitor_id, ip_hash), what="new chats")
    services.prompt_moderate(prompt, battle=None, visitor_id=visitor_id)
    services.context_check([(chosen, [{"role": "user", "content": prompt}])])
    with transaction.atomic():
        chat = Battle.objects.create(
            mode=BattleMode.CHAT,
            model_a=chosen,
            model_b=chosen,
            visitor_id=visitor_id,
            ip_hash=ip_hash,
        )
        turn = Turn.objects.create(battle=chat, index=0, prompt=prompt)
        _answer_create(chat, turn)
    log.info(
        "chat %s created with %s",
        chat.id,
        chosen.name,
        extra={"event": "chat_created", "battle_id": chat.id, "model": chosen.name},
    )
    return chat


def _chat_lock(chat: Battle, visitor_id: str) -> Battle:
    locked = Battle.objects.select_for_update().select_related("model_a").get(id=chat.id)
    if locked.visitor_id != visitor_id or locked.mode != BattleMode.CHAT:
        raise NotFound(f"No chat with id {chat.id!r} in this session.")
    return locked


def _last_answer(chat: Battle) -> tuple[Turn, Response]:
    turn = chat.turns.order_by("-index").first()
    assert turn is not None, "a chat always has a first turn"
    return turn, selectors.responses_current(turn)[Side.A]


def chat_continue(*, chat: Battle, visitor_id: str, prompt: object) -> Turn:
    """The next message of the conversation, once the last answer is complete."""
    prompt = services.prompt_clean(prompt)
    services.prompt_moderate(prompt, battle=chat, visitor_id=visitor_id)
    with transaction.atomic():
        chat = _chat_lock(chat, visitor_id)
        turn, answer = _last_answer(chat)
        if answer.status == ResponseStatus.FAILED:
            raise Conflict("The model failed to answer; start a new chat.")
        if answer.status != ResponseStatus.DONE:
            raise Conflict("Wait until the answer is complete before you send the next message.")
        if turn.index + 1 >= settings.ARENA_MAX_TURNS:
            raise InvalidInput(
                f"This chat reached its limit of {settings.ARENA_MAX_TURNS} turns: start a new one."
            )
        history = selectors.battle_conversation(chat, Side.A)
        services.context_check([(chat.model_a, [*history, {"role": "user", "content": prompt}])])
        new_turn = Turn.objects.create(battle=chat, index=turn.index + 1, prompt=prompt)
        _answer_create(chat, new_turn)
    return new_turn


def chat_feedback_record(
    *, chat: Battle, visitor_id: str, turn_index: int, label: object
) -> AnswerFeedback:
    """The visitor's label on one complete answer; a new label replaces the earlier one."""
    if not isinstance(label, str) or label not in Feedback.values:
        raise InvalidInput(f"Label the answer with one of: {', '.join(Feedback.values)}.")
    with transaction.atomic():
        chat = _chat_lock(chat, visitor_id)
        turn = chat.turns.filter(index=turn_index).first()
        if turn is None:
            raise NotFound(f"This chat has no turn {turn_index}.")
        answer = selectors.responses_current(turn)[Side.A]
        if answer.status != ResponseStatus.DONE:
            raise Conflict("Wait until the answer is complete before you rate it.")
        # The vote budget: labels are votes on single answers.
        services.rate_limit(
            [(f"vote:{visitor_id}", settings.ARENA_VOTES_PER_MINUTE, 60)], what="votes"
        )
        feedback, _ = AnswerFeedback.objects.update_or_create(
            response=answer, defaults={"label": label, "visitor_id": visitor_id}
        )
    return feedback


def chat_state(chat: Battle) -> dict[str, Any]:
    """The chat as its visitor sees it: the model, every turn's answer and its label."""
    labels = dict(
        AnswerFeedback.objects.filter(response__turn__battle=chat).values_list(
            "response_id", "label"
        )
    )
    turns = []
    for turn, responses in selectors.turns_with_responses(chat):
        answer = responses.get(Side.A)
        public = selectors._response_public(answer)
        if public is not None and answer is not None:
            public["feedback"] = labels.get(answer.id)
            if public["status"] == ResponseStatus.FAILED:
                public["error"] = "The model failed to answer; start a new chat."
        turns.append({"index": turn.index, "prompt": turn.prompt, "answer": public})
    return {
        "id": chat.id,
        "mode": chat.mode,
        "model": selectors.model_public(chat.model_a),
        "turns": turns,
        "stream_url": f"/chats/{chat.id}/stream",
    }
