"""Direct-chat feedback out of the arena, as KTO records: one answer, one label.

Each label a visitor gave an answer of a direct chat (arena/modes.py) becomes one record: the
conversation before the answer (``prompt``), the answer (``completion``) and ``label``, true for
"up" and false for "down" and "flag", the shape of :mod:`leaderboard.data.formats.kto`, plus the raw
``feedback``, the model, ``anony: false`` (the visitor chose the model by name) and a keyed
pseudonym of the visitor. Answers that moderation flagged are left out unless asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from arena.models import AnswerFeedback, BattleMode, Feedback, Side
from arena.selectors import battle_conversation
from leaderboard.data.export import judge_hasher


def chat_feedback_records(
    *, include_moderated: bool = False, judge_salt: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every label on a chat answer, oldest first, as a KTO record with its provenance."""
    judge = judge_hasher(judge_salt)
    labels = (
        AnswerFeedback.objects.filter(response__turn__battle__mode=BattleMode.CHAT)
        .select_related("response__turn__battle", "response__model")
        .order_by("id")
    )
    histories: dict[str, list[Any]] = {}  # each chat's messages (arena's Message dicts)
    for feedback in labels.iterator(chunk_size=500):
        response = feedback.response
        turn = response.turn
        chat = turn.battle
        flagged = any(
            flag.get("kind") == "answer" and flag.get("response_id") == response.id
            for flag in chat.moderation
        )
        if flagged and not include_moderated:
            continue
        if chat.id not in histories:
            histories[chat.id] = battle_conversation(chat, Side.A)
        before = histories[chat.id][: 2 * turn.index]
        yield {
            "prompt": [*before, {"role": "user", "content": turn.prompt}],
            "completion": [{"role": "assistant", "content": response.text}],
            "label": feedback.label == Feedback.UP,
            "feedback": feedback.label,
            "model": response.model.name,
            "anony": False,
            "moderated": flagged,
            "chat_id": chat.id,
            "turn": turn.index,
            "judge": judge(feedback.visitor_id),
            "tstamp": feedback.updated_at.timestamp(),
        }


def chat_feedback_export(
    *, output: str | Path, include_moderated: bool = False, judge_salt: str | None = None
) -> int:
    """Write the records as JSON Lines to ``output``; the number written."""
    written = 0
    with open(output, "wb") as out:
        for record in chat_feedback_records(
            include_moderated=include_moderated, judge_salt=judge_salt
        ):
            out.write(orjson.dumps(record) + b"\n")
            written += 1
    return written
