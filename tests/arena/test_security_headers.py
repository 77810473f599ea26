"""Security headers on every reply, and pages that need nothing inline, so the
Content-Security-Policy can forbid inline scripts and styles (the browser tests check that the
pages work under it: tests/browser/conftest.py fails a test on any violation)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client

from leaderboard.pipeline.snapshots import leaderboard_snapshot_create
from tests.browser.test_site_browser import models_create, votes_seed


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (p.split() for p in policy.split(";") if p.strip())
    return {name: values for name, *values in parts}


class _InlineFinder(HTMLParser):
    """Collects inline scripts, event-handler attributes, style attributes and style elements."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            if name == "style":
                self.found.append(f"<{tag} style={value!r}>")
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}={value!r}>")


@pytest.fixture
def seeded(db: None, settings: Any) -> None:
    """A leaderboard with a snapshot, so that its tables and bars render."""
    settings.ARENA_LEADERBOARD_ROUNDS = 20
    votes_seed(models_create(), range(40))
    assert leaderboard_snapshot_create(force=True) is not None


PAGES = ["/", "/leaderboard", "/leaderboard/models/lynx-7b", "/no/such/page"]


@pytest.mark.parametrize("path", [*PAGES, "/battles/nope", "/api/leaderboard", "/healthz"])
def test_every_reply_carries_the_security_headers(seeded: None, path: str) -> None:
    reply = Client().get(path)
    policy = _directives(reply["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in reply["Content-Security-Policy"]
    assert "'unsafe-eval'" not in reply["Content-Security-Policy"]
    assert reply["X-Content-Type-Options"] == "nosniff"
    assert reply["Referrer-Policy"] == "same-origin"
    assert reply["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", PAGES)
def test_pages_have_no_inline_scripts_handlers_or_styles(seeded: None, path: str) -> None:
    reply = Client().get(path)
    assert reply.status_code in (200, 404)
    finder = _InlineFinder()
    finder.feed(reply.content.decode())
    assert finder.found == []


def test_the_model_card_draws_its_bars_as_svg(seeded: None) -> None:
    page = Client().get("/leaderboard/models/lynx-7b").content.decode()
    assert '<svg class="wtl"' in page
    assert '<rect class="w" width="' in page
    board = Client().get("/leaderboard").content.decode()
    assert '<svg class="share-bars"' in board


def test_the_policy_can_be_replaced_by_the_operator(db: None, settings: Any) -> None:
    settings.ARENA_CONTENT_SECURITY_POLICY = "default-src 'none'"
    assert Client().get("/healthz")["Content-Security-Policy"] == "default-src 'none'"
    settings.ARENA_CONTENT_SECURITY_POLICY = ""
    assert "Content-Security-Policy" not in Client().get("/healthz")
