"""The rest of the site in a real browser: the leaderboard and a model card with their plots,
and the error page. Screenshots land in test-output/screenshots/."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from arena.models import ArenaModel, Battle, Vote
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=30_000)
Shot = Callable[[Page, str], Any]
# name, display name, strength
MODELS = [
    ("lynx-7b", "Lynx 7B", 1.0),
    ("heron-13b", "Heron 13B", 0.4),
    ("wren-3b", "Wren 3B", -0.5),
]


def models_create() -> list[ArenaModel]:
    options = {"base_url": "http://127.0.0.1:9/v1"}
    models = [
        ArenaModel.objects.create(
            name=name,
            display_name=display,
            organization="Seed Org",
            backend="openai",
            options=options,
        )
        for name, display, _ in MODELS
    ]
    return models


def votes_seed(models: list[ArenaModel], votes: range) -> None:
    """Valid votes among `models`, the stronger model winning more often."""
    strength = {name: s for name, _, s in MODELS}
    rng, now = random.Random(votes.start), timezone.now()
    for k in votes:
        a, b = rng.sample(models, 2)
        p_a = 1 / (1 + 10 ** (strength[b.name] - strength[a.name]))
        outcome = "model_a" if rng.random() < p_a else "model_b"
        battle = Battle.objects.create(model_a=a, model_b=b, visitor_id=f"v{k}")
        Vote.objects.create(
            battle=battle, model_a=a, model_b=b, outcome=outcome, visitor_id=f"v{k}",
            conversation_a=[], conversation_b=[], language="en", turns=1, prompt_chars=40,
            battle_started_at=now, created_at=now,
        )  # fmt: skip


def test_the_leaderboard_and_a_model_card_render_with_their_plots(
    page: Page, live_server_url: str, settings: Any, screenshot: Shot
) -> None:
    settings.ARENA_LEADERBOARD_ROUNDS = 20
    models = models_create()
    votes_seed(models, range(60))
    assert leaderboard_snapshot_create(force=True) is not None
    votes_seed(models, range(60, 100))  # a second snapshot: the ratings have a history
    assert leaderboard_snapshot_create(force=True) is not None

    page.goto(f"{live_server_url}/leaderboard")
    expect(page.get_by_role("heading", name="Leaderboard", exact=True)).to_be_visible()
    for _, display, _ in MODELS:
        expect(page.locator("table").first).to_contain_text(display)
    expect(page.locator("#plot-ratings svg")).to_be_visible()
    expect(page.get_by_role("link", name="Leaderboard")).to_have_attribute("aria-current", "page")
    screenshot(page, "12-leaderboard")

    page.goto(f"{live_server_url}/leaderboard/models/lynx-7b")
    expect(page.locator("h1")).to_contain_text("Lynx 7B")
    expect(page.locator("main svg").first).to_be_visible()
    screenshot(page, "13-model-card")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_missing_page_says_so_and_leads_back(
    page: Page, live_server_url: str, screenshot: Shot
) -> None:
    reply = page.goto(f"{live_server_url}/no/such/page")
    assert reply is not None and reply.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    page.get_by_role("link", name="Back to the arena").click()
    expect(page.locator("#prompt")).to_be_visible()
    page.goto(f"{live_server_url}/no/such/page")
    screenshot(page, "14-not-found")
