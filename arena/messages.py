"""Chat messages and sampling parameters: what the arena hands a model, and what it gets back.

The arena builds these (arena/context.py) and stores the outcome; the workers' backends
(workers/backends/base.py) turn them into text. They live here, in the bottom layer, so that both
sides speak one type without the arena importing the workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str
    # A user message's attached images as data: URLs (data:image/png;base64,...), in the order
    # shown; only backends of models whose registry entry says `vision = true` get any.
    images: NotRequired[list[str]]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Backend-specific extras (vLLM's top_k, min_p, ...), passed through untouched.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finish:
    prompt_tokens: int
    completion_tokens: int
    # "stop" (natural end or stop string), "length" (max_tokens reached), or what the server said.
    finish_reason: str
