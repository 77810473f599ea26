"""A vote's prompt identity: the normalised first prompt and its hash (``Vote.prompt_key``).

One definition for the live vote (arena/services/votes.py), the importer and the export's splits
and duplicate caps, which must agree on what "the same prompt" is. No Django import here.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """A prompt as compared for splits and duplicates: NFKC, case-folded, whitespace collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def question_id(row: Row) -> str:
    """The imported record's id when there is one, else the battle id (random, not personal)."""
    return str(row["external_id"] or row["battle_id"])


def has_text(row: Row) -> bool:
    return bool(row["conversation_a"]) and bool(row["conversation_b"])


def user_prompts(conversation: Sequence[Mapping[str, str]]) -> list[str]:
    return [m["content"] for m in conversation if m["role"] == "user"]


def prompt_key(row: Row) -> str:
    """The normalised first prompt; for a battle without text, its question id (never shared)."""
    prompts = user_prompts(row["conversation_a"]) if has_text(row) else []
    return normalise(prompts[0]) if prompts else f"\0id:{question_id(row)}"


def prompt_hash(row: Row) -> str:
    """:func:`prompt_key` as 32 hex digits: what ``Vote.prompt_key`` stores, so that the database
    can group the votes by prompt (a prompt can be long; its hash is an index's size)."""
    return hashlib.blake2b(prompt_key(row).encode(), digest_size=16).hexdigest()
