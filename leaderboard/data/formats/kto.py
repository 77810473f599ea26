"""KTO records: unpaired answers labelled desirable or not (TRL's unpaired preference type).

Each side of a battle becomes one record with its own prompt (the messages before its last
answer), so multi-turn battles are kept. The winner's answer is labelled true and the loser's
false; both answers are false after a both-bad vote; a tie says nothing about either and is skipped.
"""

from __future__ import annotations

import pyarrow as pa

from leaderboard.data.formats.records import (
    MESSAGES,
    SKIP_NO_TEXT,
    SKIP_TIE,
    Options,
    RecordFormat,
    Records,
    Row,
    has_text,
    messages,
)

_LABELS = {"model_a": (True, False), "model_b": (False, True), "both_bad": (False, False)}


def _schema(options: Options) -> pa.Schema:
    return pa.schema([("prompt", MESSAGES), ("completion", MESSAGES), ("label", pa.bool_())])


def _convert(row: Row, options: Options) -> Records | str:
    if not has_text(row):
        return SKIP_NO_TEXT
    if row["outcome"] not in _LABELS:
        return SKIP_TIE
    records = []
    for conversation, label in zip(
        (row["conversation_a"], row["conversation_b"]), _LABELS[row["outcome"]], strict=True
    ):
        conv = messages(conversation)
        if conv[-1]["role"] == "assistant":
            records.append({"prompt": conv[:-1], "completion": conv[-1:], "label": label})
    return records


KTO = RecordFormat(
    name="kto",
    summary="unpaired records for KTO: each answer with its prompt and a desirable or "
    "undesirable label",
    needs_text=True,
    schema=_schema,
    convert=_convert,
    columns={
        "prompt": "the messages before the answer",
        "completion": "the answer, one assistant message",
        "label": "true for the winner's answer; false for the loser's, and for both after a "
        "both-bad vote",
    },
    task_categories=("text-generation",),
    tags=("trl", "kto", "human-feedback", "chatbot-arena"),
)
