"""The demo corpus: question/answer pairs shipped in `conversations.txt` (see README.md).

Plain text parsing only (no torch), so that `seed_votes` can read the pairs cheaply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent
CONVERSATIONS_FILE = CORPUS_DIR / "conversations.txt"
# Every HELD_OUT_EVERY-th pair is kept out of training (and out of the tokenizer), so that a
# test can measure how well a model predicts text it never saw.
HELD_OUT_EVERY = 10


Pair = tuple[str, str]


def conversations_parse(text: str) -> tuple[Pair, ...]:
    """The question/answer pairs of a corpus file: `Q: ...`, then `A: ...` (the answer may run
    over several lines), pairs separated by a blank line.

    Raises
    ------
    ValueError
        On a block that is not one question followed by an answer.
    """
    pairs = []
    for number, block in enumerate(text.strip().split("\n\n"), start=1):
        lines = block.strip("\n").split("\n")
        if len(lines) < 2 or not lines[0].startswith("Q: ") or not lines[1].startswith("A: "):
            raise ValueError(f"pair {number} is not 'Q: ...' then 'A: ...': {block[:60]!r}")
        answer = "\n".join([lines[1][3:], *lines[2:]]).strip()
        pairs.append((lines[0][3:].strip(), answer))
    return tuple(pairs)


def demo_conversations() -> tuple[Pair, ...]:
    """Every pair of the shipped corpus, in file order."""
    return conversations_parse(CONVERSATIONS_FILE.read_text(encoding="utf-8"))


def conversations_split(pairs: Sequence[Pair]) -> tuple[tuple[Pair, ...], tuple[Pair, ...]]:
    """(training pairs, held-out pairs): every `HELD_OUT_EVERY`-th pair is held out."""
    train = tuple(p for i, p in enumerate(pairs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1)
    held = tuple(p for i, p in enumerate(pairs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1)
    return train, held


def pair_texts(pairs: Sequence[Pair]) -> tuple[str, ...]:
    """The plain texts of the pairs (what the tokenizer is trained on)."""
    return tuple(text for pair in pairs for text in pair)


def pairs_digest(pairs: Sequence[Pair]) -> str:
    digest = hashlib.sha256()
    for question, answer in pairs:
        digest.update(question.encode() + b"\0" + answer.encode() + b"\0")
    return digest.hexdigest()
