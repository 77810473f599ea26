"""TRL preference records: ``trl-dpo`` (explicit prompt) and ``trl-reward`` (implicit prompt).

Both are *conversational* in TRL's sense: every column is a list of ``{"role", "content"}``
messages, so a trainer applies the model's own chat template. Ties and both-bad votes name no
preferred answer and are skipped. ``margin`` (optional) is one constant for every pair: a vote
says which answer won, not by how much, so there is nothing finer to put there.
"""

from __future__ import annotations

import pyarrow as pa

from leaderboard.data.formats.records import (
    MESSAGES,
    SKIP_MULTI_TURN,
    SKIP_NO_TEXT,
    Options,
    RecordFormat,
    Records,
    Row,
    has_text,
    messages,
    winner_loser,
)

_TAGS = ("trl", "dpo", "preference", "human-feedback", "chatbot-arena")
_MARGIN = "constant added with --margin; TRL's reward loss subtracts it from the reward gap"


def _schema(columns: list[str]) -> pa.Schema:
    def schema(options: Options) -> pa.Schema:
        fields = [(name, MESSAGES) for name in columns]
        if options.margin is not None:
            fields.append(("margin", pa.float64()))
        return pa.schema(fields)

    return schema


def _with_margin(record: dict[str, object], options: Options) -> Records:
    if options.margin is not None:
        record["margin"] = float(options.margin)
    return [record]


def _ranked(row: Row) -> tuple[list[dict[str, str]], list[dict[str, str]]] | str:
    """The winner's and the loser's conversations, or why the row is skipped."""
    if not has_text(row):
        return SKIP_NO_TEXT
    sides = winner_loser(row)
    if isinstance(sides, str):
        return sides
    conv = {"a": messages(row["conversation_a"]), "b": messages(row["conversation_b"])}
    return conv[sides[0]], conv[sides[1]]


def _dpo_convert(row: Row, options: Options) -> Records | str:
    ranked = _ranked(row)
    if isinstance(ranked, str):
        return ranked
    win, lose = ranked
    # Only when everything before the last answer is the same on both sides is there one prompt.
    if win[:-1] != lose[:-1] or win[-1]["role"] != "assistant" or lose[-1]["role"] != "assistant":
        return SKIP_MULTI_TURN
    return _with_margin({"prompt": win[:-1], "chosen": win[-1:], "rejected": lose[-1:]}, options)


def _reward_convert(row: Row, options: Options) -> Records | str:
    ranked = _ranked(row)
    if isinstance(ranked, str):
        return ranked
    return _with_margin({"chosen": ranked[0], "rejected": ranked[1]}, options)


DPO = RecordFormat(
    name="trl-dpo",
    summary="TRL preference records with an explicit prompt (DPO and other offline preference "
    "trainers); single-turn battles only",
    needs_text=True,
    schema=_schema(["prompt", "chosen", "rejected"]),
    convert=_dpo_convert,
    columns={
        "prompt": "the shared prompt: the messages before the two answers",
        "chosen": "the preferred answer, one assistant message",
        "rejected": "the other answer, one assistant message",
        "margin": _MARGIN,
    },
    task_categories=("text-generation",),
    tags=_TAGS,
)

REWARD = RecordFormat(
    name="trl-reward",
    summary="TRL preference records with an implicit prompt (reward-model training); every "
    "battle with a winner, multi-turn included",
    needs_text=True,
    schema=_schema(["chosen", "rejected"]),
    convert=_reward_convert,
    columns={
        "chosen": "the preferred side's whole conversation, a list of {role, content}",
        "rejected": "the other side's whole conversation",
        "margin": _MARGIN,
    },
    task_categories=("text-classification",),
    tags=(*_TAGS[:1], "reward-modeling", *_TAGS[2:]),
)
