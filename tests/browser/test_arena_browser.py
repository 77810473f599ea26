"""The arena in a real browser (Debian's chromium) against the real stack: uvicorn, Celery
workers, Redis, tiny local models and a scripted model that streams markdown slowly.

Each step leaves a screenshot in test-output/screenshots/ (the README shows some of them).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from arena.models import ArenaModel, Response, Vote
from tests.browser.conftest import FlakyNetwork, ScriptedModel, server_env
from tests.conftest import stop, web_start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=30_000)
Shot = Callable[[Page, str], Any]


def state(page: Page, side: str) -> Locator:
    return page.locator(f"#pane-{side} [data-state]")


def answers_complete(page: Page) -> None:
    for side in "ab":
        expect(state(page, side)).to_have_text(re.compile("^done"))
    expect(page.locator("[data-vote='a']")).to_be_enabled()


def answer_sources(page: Page) -> list[str]:
    """The markdown each pane holds for its current answer (what arrived over the stream)."""
    return page.evaluate(
        """() => ["a", "b"].map((side) => {
            const all = document.querySelectorAll(`#pane-${side} .message.assistant`);
            return window.ArenaMarkdown.text(all[all.length - 1]);
        })"""
    )


def stored_answers(battle_id: str) -> list[str]:
    responses = Response.objects.filter(turn__battle_id=battle_id, superseded=False)
    last = max(r.turn.index for r in responses)
    by_side = {r.side: r.text for r in responses if r.turn.index == last}
    return [by_side["a"], by_side["b"]]


def battle_id_of(page: Page) -> str:
    return page.evaluate("() => sessionStorage.getItem('arena.battle')")


@pytest.fixture
def arena_url(live_server_url: str, worker: object, cast: dict) -> str:
    return live_server_url


def test_full_battle_played_with_the_keyboard(page: Page, arena_url: str, screenshot: Shot) -> None:
    page.goto(arena_url)
    expect(page.locator("#prompt")).to_be_focused()  # type right away
    for button in page.locator("[data-vote]").all():
        expect(button).to_be_disabled()
    screenshot(page, "01-arena-start")

    page.keyboard.type("Write a haiku about rivers.")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("Make it calm.")
    expect(page.locator("#prompt")).to_have_value("Write a haiku about rivers.\nMake it calm.")
    page.keyboard.press("Enter")
    expect(page.locator("#pane-a .message.user")).to_have_text(
        "Write a haiku about rivers.\nMake it calm."
    )
    answers_complete(page)
    first = answer_sources(page)
    assert all(first), "an answer arrived empty"
    battle_id = battle_id_of(page)
    assert first == stored_answers(battle_id)
    # Nothing names a model before the vote, and no timing hints at one.
    body = page.locator("body").inner_text()
    for secret in ("Tiny Alpha", "Tiny Beta", "Test Org", "tiny-a", "first token"):
        assert secret not in body
    screenshot(page, "03-arena-answers-complete")

    # A follow-up goes to both models; they continue their own conversations.
    page.locator("#prompt").focus()
    page.keyboard.type("Now one about the sea.")
    page.keyboard.press("Enter")
    expect(page.locator("#pane-b .message.user")).to_have_count(2)
    answers_complete(page)
    assert answer_sources(page) == stored_answers(battle_id)

    # Regenerate redoes both last answers.
    page.locator("#regenerate").focus()
    page.keyboard.press("Enter")
    answers_complete(page)
    assert answer_sources(page) == stored_answers(battle_id)
    expect(page.locator("#pane-a .message.assistant")).to_have_count(2)

    # Both answers in: focus is on the vote, and "1" votes for A.
    expect(page.locator("[data-vote='a']")).to_be_focused()
    page.keyboard.press("1")
    reveal = page.locator("[data-reveal]")
    expect(reveal.locator(".model-name")).to_have_count(2)
    names = set(reveal.locator(".model-name").all_inner_texts())
    assert names == {"Tiny Alpha", "Tiny Beta"}
    expect(page.locator("#pane-a")).to_have_class(re.compile("winner"))
    expect(page.locator("#pane-a .badge")).to_have_text("your pick")
    expect(page.locator("#pane-a .model-timing")).to_contain_text("first token after")
    vote = Vote.objects.get(battle_id=battle_id)
    assert (vote.outcome, vote.turns) == ("model_a", 2)
    # Counted, or not with the reason (the tiny models' answers may hit the length limit).
    expected = "Your vote counts" if vote.is_valid else f"does not count: {vote.invalid_reason}"
    expect(page.locator("[data-outcome-text]")).to_contain_text(expected)
    new_round = page.locator("[data-outcome] [data-new-round]")
    expect(new_round).to_be_focused()
    page.wait_for_timeout(600)  # the names' slide-in
    screenshot(page, "05-arena-reveal")

    # A second vote is impossible from the page: the vote buttons are gone.
    page.keyboard.press("2")
    assert Vote.objects.filter(battle_id=battle_id).count() == 1

    page.keyboard.press("Enter")  # on "New round"
    expect(page.locator("#pane-a .placeholder")).to_be_visible()
    expect(page.locator("[data-reveal]").first).to_be_hidden()
    expect(page.locator("#prompt")).to_be_focused()
    expect(page.locator("[data-example]").first).to_be_visible()
    screenshot(page, "06-arena-new-round")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_answers_stream_as_safe_markdown_with_highlighted_code(
    page: Page, live_server_url: str, scripted_worker: object, markdown_cast: dict,
    screenshot: Shot,
) -> None:  # fmt: skip
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(live_server_url)
    page.locator("[data-example]").nth(1).click()  # an example prompt, ready to edit
    page.keyboard.press("Enter")

    # Mid-stream: text has arrived on both sides, both are still generating, no vote yet.
    for side in "ab":
        expect(page.locator(f"#pane-{side} .message.assistant.streaming")).to_be_visible()
        expect(state(page, side)).to_have_text("generating…")
    expect(page.locator(".markdown h2")).to_have_text("Palindromes in Python")
    expect(page.locator("[data-vote='a']")).to_be_disabled()
    expect(page.locator(".markdown pre")).to_have_count(2)  # code on both sides, for the picture
    screenshot(page, "02-arena-mid-stream")
    grew = [len(s) for s in answer_sources(page)]

    answers_complete(page)
    assert all(len(s) > n for s, n in zip(answer_sources(page), grew, strict=True))
    assert answer_sources(page) == stored_answers(battle_id_of(page))
    # md-a writes the heading "Palindromes in Python"; which side it sits on is drawn at random.
    pane_a = page.locator(".markdown", has=page.locator("h2", has_text="Palindromes"))
    pane_b = page.locator(".markdown", has=page.locator("h3", has_text="Short answer"))
    expect(pane_a.locator("ol > li")).to_have_count(3)
    expect(pane_a.locator("table tbody tr")).to_have_count(2)
    expect(pane_b.locator("blockquote")).to_contain_text("two indices")
    # Code is highlighted (the grammars load on first use) and can be copied.
    expect(pane_a.locator("pre code .hljs-keyword").first).to_have_text("def")
    expect(pane_b.locator("pre code .hljs-keyword").first).to_have_text("const")
    expect(pane_a.locator(".code .lang")).to_have_text("python")
    copy = pane_a.locator("button.copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.startswith("def is_palindrome(text: str) -> bool:")
    # Raw HTML and script links from a model are text, never markup.
    expect(pane_a).to_contain_text('<img src=x onerror="window.pwned=1">')
    assert pane_a.locator("img, script").count() == 0
    assert pane_a.locator("a[href^='javascript']").count() == 0
    assert page.evaluate("() => window.pwned") is None
    screenshot(page, "04-arena-markdown-complete")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_rate_limited_visitor_sees_the_message(
    page: Page, worker: object, cast: dict, screenshot: Shot
) -> None:
    web, url = web_start(server_env(ARENA_BATTLES_PER_MINUTE="1"), name="browser-web-limit")
    try:
        page.goto(url)
        page.locator("#prompt").fill("First battle")
        page.locator("#prompt").press("Enter")
        answers_complete(page)
        page.keyboard.press("3")  # a tie
        expect(page.locator("[data-outcome]")).to_be_visible()
        page.keyboard.press("Enter")  # New round
        page.locator("#prompt").fill("Second battle, too soon")
        page.locator("#prompt").press("Enter")
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Too many")
        expect(alert).to_contain_text("Try again in")
        expect(page.locator("#send")).to_be_disabled()
        expect(page.locator("#send")).to_have_text(re.compile(r"Send \(\d+ s\)"))
        expect(page.locator("#prompt")).to_have_value("Second battle, too soon")  # kept
        screenshot(page, "07-rate-limited")
    finally:
        stop(web)


def test_a_model_failure_shows_its_notice_and_offers_a_new_round(
    page: Page, arena_url: str, screenshot: Shot
) -> None:
    ArenaModel.objects.filter(name="broken").update(enabled=True)
    ArenaModel.objects.filter(name="tiny-b").update(enabled=False)
    page.goto(arena_url)
    page.locator("#prompt").fill("Hi")
    page.locator("#prompt").press("Enter")
    failed = page.locator(".pane-error")
    expect(failed).to_have_count(1)
    expect(failed).to_have_text(re.compile(r"^Model [AB] failed; start a new round\.$"))
    failed_side = "a" if page.locator("#pane-a .pane-error").count() else "b"
    expect(state(page, failed_side)).to_have_text("failed")
    expect(page.locator("[data-outcome-text]")).to_contain_text("cannot be voted on")
    expect(page.locator("[data-vote-bar]")).to_be_hidden()
    expect(page.locator("[data-outcome] [data-new-round]")).to_be_focused()
    assert "Broken Gamma" not in page.locator("body").inner_text()
    screenshot(page, "08-model-failed")
    # Typing a new prompt starts a new round by itself.
    ArenaModel.objects.filter(name="tiny-b").update(enabled=True)
    ArenaModel.objects.filter(name="broken").update(enabled=False)
    page.locator("#prompt").fill("Again")
    page.locator("#prompt").press("Enter")
    answers_complete(page)
    expect(page.locator(".pane-error")).to_have_count(0)


def test_a_lost_connection_reconnects_and_resumes_without_duplicates(
    page: Page, flaky_network: FlakyNetwork, scripted_worker: object, markdown_cast: dict,
    scripted_model: ScriptedModel, screenshot: Shot,
) -> None:  # fmt: skip
    scripted_model.interval = 0.06  # about 8 s per answer
    page.goto(flaky_network.url)
    page.locator("#prompt").fill("Check a palindrome")
    page.locator("#prompt").press("Enter")
    expect(page.locator(".markdown h2")).to_be_visible()
    flaky_network.down()
    expect(page.locator("#notice")).to_contain_text("Reconnecting")
    expect(page.locator(".state.generating").first).to_have_text("reconnecting…")
    screenshot(page, "09-reconnecting")
    time.sleep(1.5)  # the answers go on without us
    flaky_network.up()
    expect(page.locator("#notice")).not_to_contain_text("Reconnecting")
    answers_complete(page)
    # Resumed from the last event: exactly the stored text, nothing twice.
    assert answer_sources(page) == stored_answers(battle_id_of(page))
    screenshot(page, "10-reconnected")


def test_a_reload_mid_battle_picks_the_battle_up_again(
    page: Page, live_server_url: str, scripted_worker: object, markdown_cast: dict
) -> None:
    page.goto(live_server_url)
    page.locator("#prompt").fill("Check a palindrome")
    page.locator("#prompt").press("Enter")
    expect(page.locator(".markdown h3")).to_be_visible()
    page.reload()
    expect(page.locator("#pane-a .message.user")).to_have_text("Check a palindrome")
    answers_complete(page)
    assert answer_sources(page) == stored_answers(battle_id_of(page))


def test_narrow_screens_stack_the_panes_and_the_page_is_light(
    browser: Any, live_server_url: str, cast: dict, screenshot: Shot
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    sizes: dict[str, int] = {}
    page.on("requestfinished", lambda r: sizes.__setitem__(r.url, r.sizes()["responseBodySize"]))
    page.goto(live_server_url)
    page.wait_for_load_state("networkidle")
    a, b = page.locator("#pane-a").bounding_box(), page.locator("#pane-b").bounding_box()
    assert a and b and b["y"] >= a["y"] + a["height"]
    assert not page.evaluate("() => document.documentElement.scrollWidth > innerWidth")
    screenshot(page, "11-arena-narrow")
    assert all(url.startswith(live_server_url) for url in sizes), "a request left the site"
    total = sum(sizes.values())
    assert total < 200_000, f"the arena page weighs {total} bytes: {sizes}"
    context.close()
