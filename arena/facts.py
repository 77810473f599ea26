"""The facts of a battle that categories and style control need: one module for every door.

The live vote (:func:`arena.services.vote_record`), the battle-log reader behind ``rank``, the
importer and the export all take a battle's language, turns, prompt length, code, answer lengths
and markdown counts from here, with one set of names (:data:`STYLE_NAMES`), so that the same
battles give the same categories and the same style-controlled ratings whichever door they came
in by. Pure functions over ``{"role", "content"}`` messages; the language detector is loaded on
first use.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lingua import LanguageDetector

Message = Mapping[str, Any]

# The style features, in the order style control uses them: the answer's length, then its
# markdown counts (stored per side as ``{"headers", "lists", "bold"}``).
MARKDOWN_NAMES = ("headers", "lists", "bold")
STYLE_NAMES = ("answer_tokens", *MARKDOWN_NAMES)

# Markdown as lmarena counts it (FastChat's count_markdown_elements): code blocks removed first,
# so a "# comment" in code is not a header.
_CODE_BLOCK_RE = re.compile(r"```[^`]*```")
_HEADER_RE = re.compile(r"^#{1,6}\s", re.MULTILINE)
_LIST_RE = re.compile(r"^\s*(?:\d+\.|[-*+])\s", re.MULTILINE)
_BOLD_RE = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_FENCE_RE = re.compile(r"^```", re.MULTILINE)

UNDETERMINED = "und"
# The languages the detector chooses among (ISO 639-1): those LMSYS releases name most, which the
# importer maps from names to tags too. Fewer candidates load faster and confuse less.
LANGUAGES = (
    "en", "de", "fr", "es", "pt", "it", "nl", "pl", "tr", "vi", "ru", "zh", "ja", "ko", "ar", "hi",
)  # fmt: skip
# Below this distance between the two likeliest languages the text is "und": a single word
# ("hola", "Danke", "ok") fits several languages about equally well.
MIN_RELATIVE_DISTANCE = 0.15

_detector: LanguageDetector | None = None
_detector_lock = threading.Lock()


def markdown_counts(text: str) -> dict[str, int]:
    """Markdown elements of one answer outside code blocks: headers, list items, bold spans."""
    prose = _CODE_BLOCK_RE.sub("", text)
    return {
        "headers": len(_HEADER_RE.findall(prose)),
        "lists": len(_LIST_RE.findall(prose)),
        "bold": len(_BOLD_RE.findall(prose)),
    }


def answers(conversation: Sequence[Message]) -> list[str]:
    return [m["content"] or "" for m in conversation if m["role"] == "assistant"]


def prompts(conversation: Sequence[Message]) -> list[str]:
    return [m["content"] or "" for m in conversation if m["role"] == "user"]


def conversation_style(conversation: Sequence[Message]) -> dict[str, int]:
    """Markdown counts summed over the assistant messages of a conversation."""
    total = dict.fromkeys(MARKDOWN_NAMES, 0)
    for text in answers(conversation):
        for key, value in markdown_counts(text).items():
            total[key] += value
    return total


def answer_words(conversation: Sequence[Message]) -> int:
    """Words in the assistant messages: the answer length when no token count is known."""
    return sum(len(text.split()) for text in answers(conversation))


def has_code(texts: Sequence[str]) -> bool:
    return any(_FENCE_RE.search(text) for text in texts)


def language_detector() -> LanguageDetector:
    """The detector over :data:`LANGUAGES`, built on first use (its models load lazily, on the
    first texts that need them: a few seconds once per process, see docs/benchmarks.md)."""
    global _detector
    with _detector_lock:
        if _detector is None:
            from lingua import IsoCode639_1, LanguageDetectorBuilder

            codes = [getattr(IsoCode639_1, tag.upper()) for tag in LANGUAGES]
            _detector = (
                LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
                .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
                .build()
            )
        return _detector


def language_guess(text: str) -> str:
    """The ISO 639-1 tag of the text's language among :data:`LANGUAGES`, or ``"und"`` when the
    text is empty or too short to tell."""
    if not text.strip():
        return UNDETERMINED
    language = language_detector().detect_language_of(text)
    if language is None:
        return UNDETERMINED
    return str(language.iso_code_639_1.name).lower()


@dataclass(frozen=True)
class BattleFacts:
    """What a vote stores besides the outcome (the :class:`arena.models.Vote` fields)."""

    language: str
    turns: int
    prompt_chars: int
    has_code: bool
    tokens_a: int
    tokens_b: int
    style_a: dict[str, int] = field(default_factory=dict)
    style_b: dict[str, int] = field(default_factory=dict)

    def as_fields(self) -> dict[str, Any]:
        return {
            "language": self.language, "turns": self.turns, "prompt_chars": self.prompt_chars,
            "has_code": self.has_code, "tokens_a": self.tokens_a, "tokens_b": self.tokens_b,
            "style_a": self.style_a, "style_b": self.style_b,
        }  # fmt: skip


def battle_facts(
    conversation_a: Sequence[Message],
    conversation_b: Sequence[Message],
    *,
    tokens_a: int | None = None,
    tokens_b: int | None = None,
) -> BattleFacts:
    """The facts of a battle from its two conversations (the user turns are shared).

    ``tokens_a``/``tokens_b`` are the answers' lengths in tokens when known (the live arena's
    backends report them); without them the words of the answers stand in (style control
    compares the two sides of a battle, so the unit matters little as long as both doors agree).
    """
    asked = prompts(conversation_a)
    return BattleFacts(
        language=language_guess("\n".join(asked)),
        turns=len(asked),
        prompt_chars=sum(len(p) for p in asked),
        has_code=has_code(asked + answers(conversation_a) + answers(conversation_b)),
        tokens_a=answer_words(conversation_a) if tokens_a is None else int(tokens_a),
        tokens_b=answer_words(conversation_b) if tokens_b is None else int(tokens_b),
        style_a=conversation_style(conversation_a),
        style_b=conversation_style(conversation_b),
    )


def style_row(tokens: float, style: Mapping[str, Any]) -> tuple[float, ...]:
    """One side's style features in :data:`STYLE_NAMES` order."""
    return (float(tokens), *(float(style.get(key, 0)) for key in MARKDOWN_NAMES))
