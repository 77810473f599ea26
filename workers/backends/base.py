"""The Backend protocol: chat messages plus sampling parameters in, text deltas out.

A backend has one job. It does not touch the database or Redis: the generation task
(`workers.tasks.generate`) owns those. Every backend yields zero or more `Delta`s and
then exactly one `Finish`; an error is raised as `BackendError` (with a message fit to
show an operator) and never yielded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


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


class BackendError(Exception):
    """A generation failed; the message is stored on the Response and shown to operators."""


class Backend(Protocol):
    def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> Iterator[Delta | Finish]: ...
