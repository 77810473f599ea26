"""The pairwise layout of the 55k Kaggle release (one row per battle, one-hot winner columns).

``prompt``, ``response_a`` and ``response_b`` are JSON-encoded lists of strings, one per turn, as in
that release. A both-bad vote is a tie there (``winner_tie`` = 1). The same layout is read back by
the importer (:func:`record_from_pairwise`), from CSV as well as from JSON Lines or Parquet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from leaderboard.data.formats.arena import BattleLogError
from leaderboard.data.formats.records import (
    SKIP_NO_TEXT,
    Options,
    RecordFormat,
    Records,
    Row,
    has_text,
    question_id,
    user_prompts,
)

_ONE_HOT = ("winner_model_a", "winner_model_b", "winner_tie")
_WINNER = {"model_a": (1, 0, 0), "model_b": (0, 1, 0), "tie": (0, 0, 1), "both_bad": (0, 0, 1)}


def _schema(options: Options) -> pa.Schema:
    text = [(name, pa.string()) for name in ("id", "model_a", "model_b", "prompt")]
    answers = [("response_a", pa.string()), ("response_b", pa.string())]
    return pa.schema(text + answers + [(name, pa.int64()) for name in _ONE_HOT])


def _answers(conversation: list[Mapping[str, str]]) -> str:
    return json.dumps([m["content"] for m in conversation if m["role"] == "assistant"])


def _convert(row: Row, options: Options) -> Records | str:
    if not has_text(row):
        return SKIP_NO_TEXT
    record: dict[str, Any] = {
        "id": question_id(row),
        "model_a": row["model_a"],
        "model_b": row["model_b"],
        "prompt": json.dumps(user_prompts(row["conversation_a"])),
        "response_a": _answers(row["conversation_a"]),
        "response_b": _answers(row["conversation_b"]),
    }
    record.update(zip(_ONE_HOT, _WINNER[row["outcome"]], strict=True))
    return [record]


PAIRWISE = RecordFormat(
    name="pairwise",
    summary="one row per battle with the prompt, both answers and one-hot winner columns "
    "(the layout of the 55k Kaggle release)",
    needs_text=True,
    schema=_schema,
    convert=_convert,
    columns={
        "id": "the battle's id",
        "model_a": "the model shown on the left",
        "model_b": "the model shown on the right",
        "prompt": "JSON list of the user prompts, one per turn",
        "response_a": "JSON list of the left model's answers, one per turn",
        "response_b": "JSON list of the right model's answers, one per turn",
        "winner_model_a": "1 when the left answer won",
        "winner_model_b": "1 when the right answer won",
        "winner_tie": "1 for a tie or a both-bad vote",
    },
    task_categories=("text-classification",),
    tags=("chatbot-arena", "human-feedback", "pairwise-comparison"),
)


def is_pairwise(record: Any) -> bool:
    """Whether a raw record is in this layout (and not in the battle-log schema)."""
    return isinstance(record, Mapping) and "response_a" in record and "conversation_a" not in record


def record_from_pairwise(where: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """A row of this layout (CSV strings or typed values) as a battle-log record.

    Raises
    ------
    BattleLogError
        A field is missing or is not what the layout says.
    """

    def turns(field: str) -> list[str]:
        value = record.get(field)
        try:
            items = json.loads(value) if isinstance(value, str) else None
        except json.JSONDecodeError:
            items = None
        if not isinstance(items, list) or not all(i is None or isinstance(i, str) for i in items):
            raise BattleLogError(f"{where}: field {field!r} must be a JSON list of strings")
        return [i or "" for i in items]

    def flag(field: str) -> int:
        value = record.get(field)
        if str(value) not in ("0", "1"):
            raise BattleLogError(f"{where}: field {field!r} must be 0 or 1, got {value!r:.40}")
        return int(str(value))

    prompts, flags = turns("prompt"), tuple(flag(name) for name in _ONE_HOT)
    if sum(flags) != 1:
        raise BattleLogError(f"{where}: exactly one of {', '.join(_ONE_HOT)} must be 1")
    winner = ("model_a", "model_b", "tie")[flags.index(1)]
    out: dict[str, Any] = {k: record.get(k) for k in ("model_a", "model_b")}
    out.update(winner=winner, question_id=str(record.get("id") or ""), turn=len(prompts))
    for side in "ab":
        answers = turns(f"response_{side}")
        if len(answers) != len(prompts):
            raise BattleLogError(
                f"{where}: field 'response_{side}' has {len(answers)} answers for "
                f"{len(prompts)} prompts"
            )
        out[f"conversation_{side}"] = [
            message
            for prompt, answer in zip(prompts, answers, strict=True)
            for message in ({"role": "user", "content": prompt},
                            {"role": "assistant", "content": answer})
        ]  # fmt: skip
    return out
