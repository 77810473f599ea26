"""The Backend protocol: chat messages plus sampling parameters in, text deltas out.

A backend has one job. It does not touch the database or Redis: the generation task
(`workers.tasks.generate`) owns those. Every backend yields zero or more `Delta`s and
then exactly one `Finish`; an error is raised as `BackendError` (with a message fit to
show an operator) and never yielded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from arena.messages import Finish, Message, SamplingParams

__all__ = [
    "FAULT_MODEL",
    "FAULT_OURS",
    "FAULT_VISITOR",
    "Backend",
    "BackendError",
    "Delta",
    "Finish",
    "Message",
    "SamplingParams",
]


@dataclass(frozen=True)
class Delta:
    text: str


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
