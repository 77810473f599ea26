"""The Backend protocol: chat messages plus sampling parameters in, text deltas out.

A backend has one job. It does not touch the database or Redis: the generation task
(`workers.tasks.generate`) owns those. Every backend yields zero or more `Delta`s and
then exactly one `Finish`; an error is raised as `BackendError` (with a message fit to
show an operator) and never yielded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, Protocol, TypedDict


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
class Delta:
    text: str


@dataclass(frozen=True)
class Finish:
    prompt_tokens: int
    completion_tokens: int
    # "stop" (natural end or stop string), "length" (max_tokens reached), or what the server said.
    finish_reason: str


# Whose fault a failed generation is. Only the model's count against its health: a visitor's
# conversation that a server refuses as too long, or a bug or a misconfiguration of ours, must
# not take a working model out of the sampling pool.
FAULT_MODEL = "model"
FAULT_VISITOR = "visitor"
FAULT_OURS = "ours"


class BackendError(Exception):
    """A generation failed; the message is stored on the Response and shown to operators.

    `fault` says whose it is (FAULT_MODEL by default: unreachable, 5xx, timed out, crashed).
    """

    def __init__(self, message: str, *, fault: str = FAULT_MODEL) -> None:
        super().__init__(message)
        self.fault = fault


class Backend(Protocol):
    def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> Iterator[Delta | Finish]: ...
