"""Reads used by views, the worker and other apps."""

from __future__ import annotations

import functools
from typing import Any

from django.db import router
from django.db.models import QuerySet

from arena.errors import Forbidden, NotFound
from arena.images import image_data_url
from arena.messages import Message
from arena.models import (
    ArenaModel,
    Battle,
    BattleMode,
    PromptImage,
    Response,
    ResponseStatus,
    Side,
    Turn,
    Vote,
)


def battle_get(*, battle_id: str, visitor_id: str, with_models: bool = True) -> Battle:
    """The battle, if it exists and belongs to this visitor; `with_models=False` leaves its two
    models unread (the query's two joins cost more CPU to build than the rest of the request)."""
    # No stored id holds a NUL, and PostgreSQL refuses one in a query (an error, not a miss).
    if "\x00" in battle_id:
        raise NotFound(f"No battle with id {battle_id!r}.")
    query = Battle.objects.filter(id=battle_id)
    if with_models:
        query = query.select_related("model_a", "model_b")
    # A direct chat has one side: the two-sided endpoints must not see it (arena/modes.py).
    battle = query.exclude(mode=BattleMode.CHAT).first()
    if battle is None:
        raise NotFound(f"No battle with id {battle_id!r}.")
    if battle.visitor_id != visitor_id:
        raise Forbidden("This battle belongs to another session.")
    return battle


def model_pool(*, vision: bool = False) -> list[ArenaModel]:
    """The models that may be drawn into a new battle, in a stable order; with `vision`, only
    those that take images; without, not those marked `image_only`."""
    # Read on every battle start: the query is compiled once per database and variant
    # (compiling it was 0.25 of its 0.37 ms of CPU, see docs/benchmarks.md).
    sql, params = _model_pool_sql(router.db_for_read(ArenaModel), vision)
    return list(ArenaModel.objects.raw(sql, params))


def _model_pool_query(vision: bool) -> QuerySet[ArenaModel]:
    pool = ArenaModel.objects.filter(enabled=True, healthy=True, sampling_weight__gt=0)
    # has_key, not `image_only=True`: a JSON key lookup on rows without the key is NULL, and
    # exclude() would drop those rows too. The registry sets the key only when true.
    pool = pool.filter(vision=True) if vision else pool.exclude(options__has_key="image_only")
    return pool.order_by("id")


@functools.cache
def _model_pool_sql(alias: str, vision: bool) -> tuple[str, tuple[Any, ...]]:
    sql, params = _model_pool_query(vision).query.get_compiler(using=alias).as_sql()
    return sql, tuple(params)


def demo_models_enabled() -> bool:
    return ArenaModel.objects.filter(enabled=True, options__demo=True).exists()


def responses_current(turn: Turn) -> dict[str, Response]:
    """The answer of each side to a turn (the latest, not superseded by a regenerate)."""
    responses = turn.responses.filter(superseded=False).select_related("model", "turn")
    return {r.side: r for r in responses}


def turns_with_responses(battle: Battle) -> list[tuple[Turn, dict[str, Response]]]:
    turns = list(battle.turns.order_by("index"))
    responses = Response.objects.filter(turn__battle=battle, superseded=False).order_by("id")
    by_turn: dict[int, dict[str, Response]] = {t.id: {} for t in turns}
    for response in responses:
        by_turn[response.turn_id][response.side] = response
    return [(turn, by_turn[turn.id]) for turn in turns]


def battle_conversation(battle: Battle, side: str) -> list[Message]:
    """What one side's model said, turn by turn: user prompts and its own answers."""
    return turns_conversation(turns_with_responses(battle), side)


def turns_conversation(turns: list[tuple[Turn, dict[str, Response]]], side: str) -> list[Message]:
    """:func:`battle_conversation` from turns already loaded by :func:`turns_with_responses`."""
    messages: list[Message] = []
    for turn, responses in turns:
        messages.append({"role": "user", "content": turn.prompt})
        response = responses.get(side)
        if response is not None and response.status == ResponseStatus.DONE:
            messages.append({"role": "assistant", "content": response.text})
    return messages


def response_for_generation(*, response_id: int) -> Response | None:
    """The response a worker is to answer, with its model and its turn: one query (the turn
    carries the battle's id, the model its options and health), unordered (one row by key)."""
    return next(
        iter(Response.objects.filter(id=response_id).select_related("model", "turn").order_by()),
        None,
    )


def generation_messages(response: Response) -> list[Message]:
    """The chat a model is asked to continue: its system prompt, the earlier turns with its
    own answers, and the prompt of this response's turn."""
    turn = response.turn
    messages: list[Message] = []
    system_prompt = response.model.options.get("system_prompt")
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    if turn.index:  # a first turn has no history: two queries fewer before its first token
        history = battle_conversation(turn.battle, response.side)
        # Everything before this turn: the prompt pairs come first, so cut after 2 * index.
        messages.extend(history[: 2 * turn.index])
    messages.append({"role": "user", "content": turn.prompt})
    if turn.index == 0 and turn.image_id is None:
        return messages  # a first turn without an image: nothing more to read
    user_messages = [m for m in messages if m["role"] == "user"]
    for message, image in zip(user_messages, _turn_images(turn), strict=True):
        if image is not None:
            message["images"] = [image_data_url(image)]
    return messages


def _turn_images(turn: Turn) -> list[PromptImage | None]:
    """The image of each turn up to `turn`, in order (None for a turn without one)."""
    turns = turn.battle.turns.filter(index__lte=turn.index).select_related("image")
    return [t.image for t in turns.order_by("index")]


def _response_public(response: Response | None) -> dict[str, Any] | None:
    if response is None:
        return None
    public: dict[str, Any] = {"status": response.status, "text": response.text}
    if response.status == ResponseStatus.FAILED:
        public["error"] = visitor_failure_message(response.side)
    if response.status == ResponseStatus.DONE:
        public["finish_reason"] = response.finish_reason
    return public


def visitor_failure_message(side: str) -> str:
    # The operator's error (in Response.error) may name a host or a model: never show it here.
    return f"{Side(side).label} failed; start a new round."


def model_public(model: ArenaModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "display_name": model.display_name,
        "organization": model.organization,
        "license": model.license,
    }


def battle_state(battle: Battle) -> dict[str, Any]:
    """The battle as its visitor may see it: no model identity until the vote is recorded."""
    vote = Vote.objects.filter(battle=battle).first()
    return _state(battle, turns_with_responses(battle), vote)


def battle_state_started(battle: Battle, *, prompt: str) -> dict[str, Any]:
    """`battle_state` of a battle `services.battle_create` just made, without reading it back:
    one turn with `prompt` and two answers as created (the models' defaults), no vote."""
    fresh = {side: Response(side=side) for side in (Side.A, Side.B)}
    return _state(battle, [(Turn(index=0, prompt=prompt), fresh)], None)


def _state(
    battle: Battle, known: list[tuple[Turn, dict[str, Response]]], vote: Vote | None
) -> dict[str, Any]:
    turns = []
    for turn, responses in known:
        turns.append(
            {
                "index": turn.index,
                "prompt": turn.prompt,
                # The battle's URL, not the image's hash: nothing in it tells who is fighting.
                "image_url": f"/battles/{battle.id}/turns/{turn.index}/image"
                if turn.image_id is not None
                else None,
                "a": _response_public(responses.get(Side.A)),
                "b": _response_public(responses.get(Side.B)),
            }
        )
    state: dict[str, Any] = {
        "id": battle.id,
        "turns": turns,
        "voted": vote is not None,
        "stream_url": f"/battles/{battle.id}/stream",
    }
    if vote is not None:
        state["vote"] = vote_public(vote)
    if not battle.anony:
        # Side by side with chosen models: the visitor picked the names, they show from the start.
        state["mode"] = battle.mode
        state["model_a"] = model_public(battle.model_a)
        state["model_b"] = model_public(battle.model_b)
    return state


def vote_public(vote: Vote) -> dict[str, Any]:
    """The reveal: the outcome, whether it counts, both models and, now, their timings."""
    timing: dict[str, dict[str, int | None]] = {}
    turn = vote.battle.turns.order_by("-index").first()
    if turn is not None:
        for side, response in responses_current(turn).items():
            timing[side] = {
                "ttft_ms": response.ttft_ms,
                "latency_ms": response.latency_ms,
                "completion_tokens": response.completion_tokens,
            }
    # A named vote is stored valid, but the anonymous leaderboard never counts it.
    named = "names were shown: side-by-side votes are kept apart from the anonymous leaderboard"
    return {
        "outcome": vote.outcome,
        "counted": vote.is_valid and vote.anony,
        "reason": vote.invalid_reason or ("" if vote.anony else named),
        "model_a": model_public(vote.model_a),
        "model_b": model_public(vote.model_b),
        "timing": timing,
    }
