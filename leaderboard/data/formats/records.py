"""Export records: what every format shares, and the ``arena`` format (the FastChat/LMSYS schema).

A format turns one *vote row* into zero or more output records. A vote row is a plain mapping read
from the database (no Django import here): ``battle_id``, ``external_id``, ``model_a``, ``model_b``
(names), ``outcome``, ``visitor_id``, ``conversation_a``/``conversation_b`` (lists of
``{"role", "content"}``, empty when the battle was imported without text), ``is_valid``,
``invalid_reason``, ``language``, ``turns``, ``prompt_chars``, ``has_code``, ``tokens_a``/``b``,
``style_a``/``b`` (``{"headers", "lists", "bold"}``), ``anony``, ``tstamp`` (seconds, UTC) and
``tags`` (the names of the categories the vote belongs to).

A conversion returns the records, or a string naming why the row was skipped (the dataset card
counts the reasons). Each format has a fixed pyarrow schema: every field always has one type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

# The prompt identity is the arena's (Vote.prompt_key); the formats use it from here.
from arena.prompts import (  # noqa: F401
    has_text,
    normalise,
    prompt_hash,
    prompt_key,
    question_id,
    user_prompts,
)

Row = Mapping[str, Any]
Records = list[dict[str, Any]]

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)

# Skip reasons, as the dataset card names them.
SKIP_NO_TEXT = "imported without conversation text"
SKIP_TIE = "tie (no preferred answer)"
SKIP_BOTH_BAD = "both bad (no preferred answer)"
SKIP_MULTI_TURN = "the two sides do not share the whole prompt (multi-turn)"


@dataclass(frozen=True)
class Options:
    """What a conversion may need besides the row: the voter pseudonym and the optional margin."""

    judge: Callable[[str], str] = lambda visitor_id: ""
    margin: float | None = None
    include_invalid: bool = False
    # Simulated votes (seed_votes) are exported only when asked for, then marked per record.
    include_simulated: bool = False


@dataclass(frozen=True)
class RecordFormat:
    """One export format: its schema, its conversion and what the dataset card says about it."""

    name: str
    summary: str
    needs_text: bool
    schema: Callable[[Options], pa.Schema]
    convert: Callable[[Row, Options], Records | str]
    columns: Mapping[str, str]
    task_categories: Sequence[str] = ()
    tags: Sequence[str] = field(default_factory=tuple)


def stable_fraction(key: str, *, seed: int) -> float:
    """A number in [0, 1) that depends only on ``key`` and ``seed``, not on the other rows."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") / 2**64


def messages(conversation: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The conversation as stored: votes hold only ``{"role", "content"}`` messages (written so
    by ``vote_record`` and the importer), which is what chat templates expect; not copied, as
    copying every message is a sizeable share of a large export's time."""
    return conversation  # type: ignore[return-value]


def winner_loser(row: Row) -> tuple[str, str] | str:
    """("a", "b") or ("b", "a") for a decisive vote, else the skip reason."""
    outcome = row["outcome"]
    if outcome == "model_a":
        return "a", "b"
    if outcome == "model_b":
        return "b", "a"
    return SKIP_TIE if outcome == "tie" else SKIP_BOTH_BAD


# --- The arena format --------------------------------------------------------------------------

_METADATA = pa.struct(
    [
        (key.format(side), pa.int64())
        for side in "ab"
        for key in ("sum_assistant_{}_tokens", "header_count_{}", "list_count_{}", "bold_count_{}")
    ]
)


def _arena_schema(options: Options) -> pa.Schema:
    fields = [
        ("question_id", pa.string()),
        ("model_a", pa.string()),
        ("model_b", pa.string()),
        ("winner", pa.string()),
        ("judge", pa.string()),
        ("conversation_a", MESSAGES),
        ("conversation_b", MESSAGES),
        ("turn", pa.int64()),
        ("anony", pa.bool_()),
        ("language", pa.string()),
        ("tstamp", pa.float64()),
        ("is_code", pa.bool_()),
        ("prompt_chars", pa.int64()),
        ("conv_metadata", _METADATA),
        ("category_tags", pa.list_(pa.string())),
    ]
    if options.include_invalid:
        fields.append(("exclusion_reason", pa.string()))
    if options.include_simulated:
        fields.append(("simulated", pa.bool_()))
    return pa.schema(fields)


def _arena_convert(row: Row, options: Options) -> Records:
    style_a, style_b = row["style_a"] or {}, row["style_b"] or {}
    meta = {}
    for side, tokens, style in (("a", row["tokens_a"], style_a), ("b", row["tokens_b"], style_b)):
        meta[f"sum_assistant_{side}_tokens"] = int(tokens)
        meta[f"header_count_{side}"] = int(style.get("headers", 0))
        meta[f"list_count_{side}"] = int(style.get("lists", 0))
        meta[f"bold_count_{side}"] = int(style.get("bold", 0))
    record = {
        "question_id": question_id(row),
        "model_a": row["model_a"],
        "model_b": row["model_b"],
        "winner": row["outcome"],
        "judge": options.judge(row["visitor_id"]),
        "conversation_a": messages(row["conversation_a"]),
        "conversation_b": messages(row["conversation_b"]),
        "turn": int(row["turns"]),
        "anony": bool(row["anony"]),
        "language": row["language"],
        "tstamp": float(row["tstamp"]),
        "is_code": bool(row["has_code"]),
        "prompt_chars": int(row["prompt_chars"]),
        "conv_metadata": meta,
        "category_tags": list(row["tags"]),
    }
    if options.include_invalid:
        record["exclusion_reason"] = "" if row["is_valid"] else (row["invalid_reason"] or "invalid")
    if options.include_simulated:
        record["simulated"] = bool(row["simulated"])
    return [record]


ARENA = RecordFormat(
    name="arena",
    summary="one record per battle in the LMSYS/FastChat battle-log schema",
    needs_text=False,
    schema=_arena_schema,
    convert=_arena_convert,
    columns={
        "question_id": "the battle's id (the original id for imported battles)",
        "model_a": "the model shown on the left",
        "model_b": "the model shown on the right",
        "winner": "the vote: model_a, model_b, tie or both_bad",
        "judge": "pseudonymous voter: a salted hash, stable within this export only",
        "conversation_a": "left side's conversation, a list of {role, content} (empty when the "
        "battle was imported without text)",
        "conversation_b": "right side's conversation, as conversation_a",
        "turn": "number of user turns",
        "anony": "true when the names were hidden until the vote",
        "language": "language tag of the prompt (en, de, ...; und when unsure)",
        "tstamp": "time of the vote, seconds since 1970-01-01 UTC",
        "is_code": "whether the prompt or the answers hold a code block",
        "prompt_chars": "characters in the user turns",
        "conv_metadata": "answer lengths (tokens) and markdown counts (headers, list items, bold "
        "spans) per side, as in lmarena's releases",
        "category_tags": "names of the leaderboard categories the battle belongs to",
        "exclusion_reason": "why the vote is excluded from the leaderboard, empty when it counts "
        "(only with --include-invalid)",
        "simulated": "true for a vote made up by seed_votes to fill a demo, not cast by a person "
        "(only with --include-simulated)",
    },
    task_categories=("text-classification",),
    tags=("chatbot-arena", "human-feedback", "pairwise-comparison"),
)
