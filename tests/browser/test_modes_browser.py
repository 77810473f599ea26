"""The modes beside the blind battle, played end to end in chromium at desktop and phone size
against the real stack (uvicorn, a Celery worker, Redis, tiny local models): side by side with
chosen models then its shared page, and a direct chat with a label on each answer. Screenshots
land in test-output/screenshots/modes-*.png."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from arena.models import AnswerFeedback, Battle, BattleMode, Vote
from tests.browser.conftest import layout_problems

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=30_000)
# The worker's first answer loads torch and the tiny model: half a minute on a busy machine.
FIRST_ANSWER_MS = 180_000
Shot = Callable[..., Any]
SIZES = {
    "desktop": {"viewport": {"width": 1366, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture(params=list(SIZES))
def sized(request: pytest.FixtureRequest, browser: Any) -> Iterator[tuple[str, Page]]:
    """A page at one size that fails the test on a JavaScript error or a CSP block."""
    context = browser.new_context(**SIZES[request.param])
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield request.param, page
    context.close()
    assert problems == []


@pytest.fixture
def base_url(live_server_url: str, worker: object, cast: dict) -> str:
    return live_server_url


def test_side_by_side_with_chosen_models_then_its_shared_page(
    sized: tuple[str, Page], base_url: str, screenshot: Shot
) -> None:
    size, page = sized
    page.goto(base_url + "/")
    page.get_by_role("link", name="Side by side").click()
    expect(page).to_have_url(base_url + "/side-by-side")
    page.select_option("#model-a", "tiny-b")
    page.select_option("#model-b", "random")
    page.fill("#prompt", "Name a river.")
    page.click("#send")
    # The names head the panes from the start, before any answer is complete.
    expect(page.locator("#pane-a h2")).to_have_text("Tiny Beta")
    expect(page.locator("#pane-b h2")).to_have_text("Tiny Alpha")
    for side in "ab":
        expect(page.locator(f"#pane-{side} [data-state]")).to_have_text(
            re.compile("^done"), timeout=FIRST_ANSWER_MS
        )
    assert layout_problems(page) == []
    page.click("[data-vote='a']")
    expect(page.locator("[data-outcome-text]")).to_contain_text("does not count")
    page.click("[data-share]")
    link = page.locator("[data-share-url]")
    expect(link).to_be_visible()
    assert layout_problems(page) == []
    screenshot(page, f"modes-side-by-side-{size}")

    battle = Battle.objects.get(mode=BattleMode.NAMED)
    vote = Vote.objects.get(battle=battle)
    assert (vote.anony, vote.outcome, vote.model_a.name) == (False, "model_a", "tiny-b")
    url = link.get_attribute("href")
    assert url and url.endswith(f"/shared/{battle.share_id}")

    page.goto(url)
    expect(page.locator("h1")).to_have_text("Tiny Beta vs Tiny Alpha")
    expect(page.locator("[data-outcome]")).to_have_text("Tiny Beta won")
    expect(page.locator(".message.user")).to_have_text("Name a river.")
    assert layout_problems(page) == []
    screenshot(page, f"modes-shared-{size}")


def test_direct_chat_with_a_label_on_each_answer(
    sized: tuple[str, Page], base_url: str, screenshot: Shot
) -> None:
    size, page = sized
    page.goto(base_url + "/")
    page.get_by_role("link", name="Chat").click()
    expect(page).to_have_url(base_url + "/chat")
    page.select_option("#chat-model", "tiny-a")
    page.fill("#prompt", "Name a river.")
    page.click("#send")
    first = page.locator(".feedback").nth(0)
    expect(first).to_be_visible(timeout=FIRST_ANSWER_MS)
    first.get_by_role("button", name="Good").click()
    expect(first.get_by_role("button", name="Good")).to_have_attribute("aria-pressed", "true")
    page.fill("#prompt", "And another one?")
    page.click("#send")
    second = page.locator(".feedback").nth(1)
    expect(second).to_be_visible()
    second.get_by_role("button", name="Flag").click()
    expect(second.get_by_role("button", name="Flag")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".message.user")).to_have_count(2)
    assert layout_problems(page) == []
    screenshot(page, f"modes-chat-{size}")

    chat = Battle.objects.get(mode=BattleMode.CHAT)
    labels = AnswerFeedback.objects.filter(response__turn__battle=chat).order_by(
        "response__turn__index"
    )
    assert [(f.response.turn.index, f.label) for f in labels] == [(0, "up"), (1, "flag")]
    assert not Vote.objects.exists()
