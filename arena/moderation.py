"""Moderation of prompts and answers: pluggable checkers behind one function, `moderation_check`.

- `LocalChecker` runs offline: literal words (matched as whole words, case-insensitively) and
  regular expressions from the settings and a blocklist file.
- `EndpointChecker` asks an OpenAI-compatible moderation endpoint (`POST {base}/v1/moderations`,
  reply `results[0].flagged` and `categories`), when ARENA_MODERATION_URL is set.

The services decide what a verdict means: a flagged prompt is refused (arena.errors.Refused), a
flagged answer is recorded on its battle and makes the vote invalid with a reason that starts
with "moderat" (the export's "exclude moderated" filter keys on that prefix).

Where the endpoint fails (timeout, error reply, a reply it cannot read) the failure policy
decides, ARENA_MODERATION_FAIL: "open" lets the text through and logs the failure, "closed"
returns a verdict with `error` set and `flagged` True, which refuses a prompt with a 503 and
counts an answer as flagged. The local checker cannot fail: it never reaches the network.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from django.conf import settings

log = logging.getLogger(__name__)

# Every reason a vote is excluded for by moderation starts with this (leaderboard/data/export.py
# removes such votes when asked to "exclude moderated").
VOTE_REASON_PREFIX = "moderation"
# The category of a verdict that the failure policy made, not a checker.
UNAVAILABLE = "moderation-unavailable"


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    checker: str = ""
    categories: tuple[str, ...] = ()
    # Set when the checker could not answer; `flagged` then says what the failure policy chose.
    error: str = ""

    def as_flag(self, **where: Any) -> dict[str, Any]:
        """The record stored in Battle.moderation."""
        flag: dict[str, Any] = {
            **where,
            "checker": self.checker,
            "categories": list(self.categories),
        }
        if self.error:
            flag["error"] = self.error
        return flag


CLEAN = Verdict(flagged=False)


class ModerationUnavailable(Exception):
    """The checker could not give a verdict (the failure policy decides what happens)."""


class Checker(Protocol):
    @property
    def name(self) -> str: ...

    def check(self, text: str) -> Verdict: ...


@dataclass(frozen=True)
class LocalChecker:
    """Offline: whole words and regular expressions, case-insensitive."""

    words: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    name: str = "local"
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = [
            re.compile(r"(?<!\w)" + re.escape(word) + r"(?!\w)", re.IGNORECASE)
            for word in self.words
        ]
        compiled += [re.compile(pattern, re.IGNORECASE) for pattern in self.patterns]
        object.__setattr__(self, "_compiled", tuple(compiled))

    @classmethod
    def from_lines(cls, lines: Sequence[str], *, words: Sequence[str] = ()) -> LocalChecker:
        """A blocklist file: one word per line, `re:` before a regular expression, `#` comments."""
        all_words, patterns = list(words), []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("re:"):
                patterns.append(line[3:].strip())
            else:
                all_words.append(line)
        return cls(words=tuple(all_words), patterns=tuple(patterns))

    def check(self, text: str) -> Verdict:
        if any(pattern.search(text) for pattern in self._compiled):
            return Verdict(flagged=True, checker=self.name, categories=("blocklist",))
        return CLEAN


@dataclass(frozen=True)
class EndpointChecker:
    """An OpenAI-compatible moderation endpoint."""

    base_url: str
    api_key: str = ""
    model: str = ""
    timeout_s: float = 3.0
    name: str = "endpoint"

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        # Accept both "https://api.example.com" and "https://api.example.com/v1".
        return (base if base.endswith("/v1") else base + "/v1") + "/moderations"

    def check(self, text: str) -> Verdict:
        body: dict[str, Any] = {"input": text}
        if self.model:
            body["model"] = self.model
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            reply = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise ModerationUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if reply.status_code != 200:
            raise ModerationUnavailable(f"the endpoint answered {reply.status_code}")
        try:
            result = reply.json()["results"][0]
            flagged = result["flagged"]
            categories = result.get("categories") or {}
            if not isinstance(flagged, bool) or not isinstance(categories, dict):
                raise TypeError("flagged must be a boolean and categories an object")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModerationUnavailable(f"unreadable reply: {exc}") from exc
        if not flagged:
            return CLEAN
        names = tuple(sorted(str(name) for name, on in categories.items() if on is True))
        return Verdict(flagged=True, checker=self.name, categories=names)


def checkers() -> list[Checker]:
    """The checkers the settings configure, in the order they run (local first: it is free)."""
    return list(
        _checkers(
            tuple(settings.ARENA_MODERATION_BLOCKLIST),
            settings.ARENA_MODERATION_BLOCKLIST_FILE,
            settings.ARENA_MODERATION_URL,
            settings.ARENA_MODERATION_API_KEY_ENV,
            settings.ARENA_MODERATION_MODEL,
            settings.ARENA_MODERATION_TIMEOUT_MS,
        )
    )


# Keyed on the settings so that a changed setting (tests, a reload) builds new checkers; the
# blocklist file is read once per configuration, not once per prompt.
@functools.lru_cache(maxsize=8)
def _checkers(
    words: tuple[str, ...],
    blocklist_file: str,
    url: str,
    api_key_env: str,
    model: str,
    timeout_ms: int,
) -> tuple[Checker, ...]:
    found: list[Checker] = []
    lines = Path(blocklist_file).read_text().splitlines() if blocklist_file else []
    if words or lines:
        found.append(LocalChecker.from_lines(lines, words=words))
    if url:
        api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        found.append(
            EndpointChecker(base_url=url, api_key=api_key, model=model, timeout_s=timeout_ms / 1000)
        )
    return tuple(found)


def moderation_check(text: str, *, what: str) -> Verdict:
    """The first flag any configured checker raises on `text`, or CLEAN.

    `what` ("prompt", "answer") only goes into the log line of a failure.
    """
    for checker in checkers():
        try:
            verdict = checker.check(text)
        except ModerationUnavailable as exc:
            closed = settings.ARENA_MODERATION_FAIL == "closed"
            log.warning(
                "moderation of a %s failed (%s, failing %s): %s",
                what,
                checker.name,
                "closed" if closed else "open",
                exc,
            )
            if closed:
                return Verdict(
                    flagged=True, checker=checker.name, categories=(UNAVAILABLE,), error=str(exc)
                )
            continue
        if verdict.flagged:
            return verdict
    return CLEAN


def vote_reason(flags: Sequence[dict[str, Any]]) -> str:
    """The invalid_reason of a vote on answers that moderation flagged."""
    categories = sorted({c for flag in flags for c in flag.get("categories", [])})
    detail = f" ({', '.join(categories)})" if categories else ""
    return f"{VOTE_REASON_PREFIX} flagged an answer{detail}"[:200]
