"""Facts about a conversation that categories and style control need. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Sequence

from workers.backends.base import Message

_HEADER_RE = re.compile(r"^#{1,6}\s", re.MULTILINE)
_LIST_RE = re.compile(r"^\s*(?:[-*+]|\d+\.)\s", re.MULTILINE)
_BOLD_RE = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_FENCE_RE = re.compile(r"^```", re.MULTILINE)
_WORD_RE = re.compile(r"[a-zA-Z']+")

# Script ranges checked before the word lists: a prompt written in one of them is that language.
_SCRIPTS: list[tuple[str, re.Pattern[str]]] = [
    ("zh", re.compile(r"[\u4e00-\u9fff]")),
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
]
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        [
            "the",
            "and",
            "is",
            "are",
            "of",
            "to",
            "in",
            "what",
            "how",
            "you",
            "that",
            "this",
            "it",
            "for",
            "with",
            "can",
        ]
    ),
    "de": frozenset(
        [
            "der",
            "die",
            "das",
            "und",
            "ist",
            "nicht",
            "ich",
            "sie",
            "wie",
            "was",
            "mit",
            "für",
            "ein",
            "eine",
        ]
    ),
    "fr": frozenset(
        [
            "le",
            "la",
            "les",
            "et",
            "est",
            "une",
            "des",
            "que",
            "qui",
            "pas",
            "pour",
            "dans",
            "avec",
            "vous",
        ]
    ),
    "es": frozenset(
        [
            "el",
            "la",
            "los",
            "las",
            "y",
            "es",
            "que",
            "de",
            "una",
            "por",
            "para",
            "con",
            "como",
            "qué",
        ]
    ),
}


def style_counts(text: str) -> dict[str, int]:
    """Markdown elements of one answer: headers, list items, bold spans."""
    return {
        "headers": len(_HEADER_RE.findall(text)),
        "lists": len(_LIST_RE.findall(text)),
        "bold": len(_BOLD_RE.findall(text)),
    }


def conversation_style(conversation: Sequence[Message]) -> dict[str, int]:
    """Style counts summed over the assistant messages of a conversation."""
    total = {"headers": 0, "lists": 0, "bold": 0}
    for message in conversation:
        if message["role"] == "assistant":
            for key, value in style_counts(message["content"]).items():
                total[key] += value
    return total


def has_code(texts: Sequence[str]) -> bool:
    return any(_FENCE_RE.search(text) for text in texts)


def language_guess(text: str) -> str:
    """A coarse language tag for categories: by script, then by common words; "und" if unsure."""
    for tag, pattern in _SCRIPTS:
        if len(pattern.findall(text)) >= 2:
            return tag
    words = [w.lower() for w in _WORD_RE.findall(text)]
    if not words:
        return "und"
    scores = {tag: sum(w in stop for w in words) for tag, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda tag: scores[tag])
    return best if scores[best] > 0 else "und"
