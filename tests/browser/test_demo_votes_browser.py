"""The demo as a new visitor plays it: ten battles between the demo's own models, and the votes
count.

The models are the ones `python manage.py build_demo_models` builds (trained for a few seconds
on the shipped corpus) and `models.toml` lists, loaded by the command's own `sync_models` with
the data folder pointed at `var/demo-models/` (ignored by git; a model already built there with
the same recipe is kept, so a run pays the training once). A real Celery worker serves their
queues; chromium types each prompt, waits for both answers, votes and reads the outcome.

A vote on an answer cut off at `max_tokens` does not count. Random-weight models ran to the
limit in about half their answers, so most of their battles would void the vote: this test
would fail on them.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from arena.models import ArenaModel, Vote
from tests.browser.conftest import server_env
from tests.conftest import ROOT, stop, web_start, worker_start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Kept between runs: `build_demo_models` retrains only when the recipe changed.
DEMO_DATA_DIR = ROOT / "var" / "demo-models"
# Questions of the kinds the corpus holds (some word for word, some not), and the vote on each.
BATTLES = [
    ("What is the capital of France?", "a"),
    ("Hi, how are you?", "b"),
    ("Why does the Moon change shape?", "tie"),
    ("Tell me a story about a fox and a crow.", "a"),
    ("What is the largest planet?", "b"),
    ("Suggest a name for a cat.", "a"),
    ("How do plants make food?", "tie"),
    ("Write a haiku about rivers.", "b"),
    ("What is half of 50?", "a"),
    ("What is an atom?", "b"),
]
COUNTS = "Your vote counts toward the leaderboard."
DOES_NOT_COUNT = "does not count"


@pytest.fixture
def demo_models(settings: Any) -> list[str]:
    """The demo's text models, built (or found built) and synced from models.toml into the test
    database by the real command; the names of those a text battle may draw."""
    settings.DATA_DIR = DEMO_DATA_DIR  # what ARENA_DATA_DIR sets: `${ARENA_DATA_DIR}` in the file
    out = io.StringIO()
    call_command("build_demo_models", stdout=out)
    assert "built 5 demo models" in out.getvalue(), out.getvalue()
    text_models = ArenaModel.objects.filter(enabled=True).exclude(options__has_key="image_only")
    names = sorted(text_models.values_list("name", flat=True))
    assert names == ["tiny-llama-a", "tiny-llama-b", "tiny-mistral-a"]
    for model in text_models:
        assert Path(model.options["path"]).is_relative_to(DEMO_DATA_DIR), model.options
    return names


@pytest.fixture
def demo_url(demo_models: list[str]) -> Iterator[str]:
    """A worker for every model of models.toml (the vision ones are never drawn here) and a web
    server whose rate limit lets ten battles through in well under a minute."""
    names = ArenaModel.objects.values_list("name", flat=True)
    queues = ["celery", *(f"model.{name}" for name in names)]
    worker = worker_start(server_env(), name="demo-votes-worker", queues=queues)
    web, url = web_start(server_env(ARENA_BATTLES_PER_MINUTE="60"), name="demo-votes-web")
    yield url
    stop(web)
    stop(worker)


def test_ten_battles_on_the_demo_models_and_at_least_nine_votes_count(
    page: Page, demo_url: str
) -> None:
    started = time.monotonic()
    page.goto(demo_url)
    # The banner tells a new visitor what these models are: trained briefly, not random noise.
    expect(page.locator(".demo-banner")).to_contain_text("trained for a few seconds")
    outcome = page.locator("[data-outcome]")
    seen: list[tuple[str, str, str]] = []
    for number, (prompt, side) in enumerate(BATTLES, start=1):
        page.locator("#prompt").fill(prompt)
        page.locator("#prompt").press("Enter")
        for pane in "ab":
            expect(page.locator(f"#pane-{pane} [data-state]")).to_have_text(
                re.compile("^done"), timeout=60_000
            )
        states = "; ".join(page.locator(f"#pane-{p} [data-state]").inner_text() for p in "ab")
        page.locator(f"[data-vote='{side}']").click()
        expect(outcome).to_be_visible()
        text = outcome.locator("[data-outcome-text]")
        expect(text).to_contain_text(re.compile(f"{re.escape(COUNTS)}|{DOES_NOT_COUNT}"))
        seen.append((prompt, states, text.inner_text()))
        assert Vote.objects.count() == number
        outcome.locator("[data-new-round]").click()
        expect(page.locator("#arena")).to_have_attribute("data-phase", "idle")
        expect(page.locator("#prompt")).to_have_value("")
    elapsed = time.monotonic() - started

    report = "\n".join(f"{p!r}: {s} -> {t}" for p, s, t in seen)
    counted_on_page = sum(COUNTS in t for _, _, t in seen)
    valid = Vote.objects.filter(is_valid=True).count()
    print(f"\n{counted_on_page} of 10 votes count, {elapsed:.0f} s\n{report}")
    assert counted_on_page == valid, report  # the page tells the truth about each vote
    assert Vote.objects.count() == 10
    assert valid >= 9, report
    # Every vote was on two of the demo's text models.
    drawn = set(Vote.objects.values_list("model_a__name", flat=True))
    drawn |= set(Vote.objects.values_list("model_b__name", flat=True))
    assert drawn <= {"tiny-llama-a", "tiny-llama-b", "tiny-mistral-a"}, drawn
