"""A new visitor's first hour, on a phone (390x844, touch) and on a laptop (1366x900): the
pages fit the screen, the vote's outcome and the next step stay in view, an example prompt
waits to be edited, a rate limit counts down one number, and models without a score are not
read as the worst. Screenshots land in test-output/screenshots/first-hour-*.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from arena.models import ArenaModel, Battle, Vote
from leaderboard.pages import selectors
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create
from tests.browser.conftest import layout_problems, server_env
from tests.conftest import stop, web_start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=30_000)
Shot = Callable[..., Any]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
LAPTOP = {"viewport": {"width": 1366, "height": 900}}


def watched_page(browser: Any, **context: Any) -> Iterator[Page]:
    """A page in a fresh context that fails the test on a JavaScript error or on anything the
    Content-Security-Policy blocked (setting a pane's height from JavaScript must pass it)."""
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    ctx.close()
    assert problems == []


@pytest.fixture
def phone(browser: Any) -> Iterator[Page]:
    yield from watched_page(browser, **PHONE)


@pytest.fixture
def laptop(browser: Any) -> Iterator[Page]:
    yield from watched_page(browser, **LAPTOP)


# --- A leaderboard with ranked models, a newcomer that only won, and a provisional one ---------

# name, display name, strength; the first three get enough votes for a score.
RANKED = [
    ("lynx-7b", "Lynx 7B", 1.0),
    ("heron-13b", "Heron 13B", 0.4),
    ("wren-3b", "Wren 3B", -0.5),
]


def vote_add(a: ArenaModel, b: ArenaModel, outcome: str, k: int) -> None:
    now = timezone.now()
    battle = Battle.objects.create(model_a=a, model_b=b, visitor_id=f"v{k}")
    Vote.objects.create(
        battle=battle, model_a=a, model_b=b, outcome=outcome, visitor_id=f"v{k}",
        conversation_a=[], conversation_b=[], language="en", turns=1, prompt_chars=40,
        battle_started_at=now, created_at=now,
    )  # fmt: skip


@pytest.fixture
def mixed_leaderboard(settings: Any) -> dict[str, ArenaModel]:
    """Three models with 70 votes each; "Tiny Mistral Newcomer" won its 3 votes (not
    rateable), "Fresh 1B" has 9 votes with wins and losses (provisional)."""
    settings.ARENA_LEADERBOARD_ROUNDS = 20
    selectors.payload_cache_clear()
    options = {"base_url": "http://127.0.0.1:9/v1"}
    cast = [(n, d) for n, d, _ in RANKED] + [
        ("newcomer", "Tiny Mistral Newcomer"),
        ("fresh-1b", "Fresh 1B"),
    ]
    models = {}
    for name, display in cast:
        models[name] = ArenaModel.objects.create(
            name=name, display_name=display, organization="Seed Org", license="Apache-2.0",
            backend="openai", options=options, sampling_weight=0.0,  # listed, never drawn
        )  # fmt: skip
    strength = {name: s for name, _, s in RANKED}
    k = 0
    for _ in range(35):
        for i, (x, _, _) in enumerate(RANKED):
            for y, _, _ in RANKED[i + 1 :]:
                k += 1
                p_x = 1 / (1 + 10 ** (strength[y] - strength[x]))
                # A fixed share of upsets, so every ranked model has wins and losses.
                vote_add(models[x], models[y], "model_a" if (k * 0.618) % 1 < p_x else "model_b", k)
    for k2, loser in enumerate(["lynx-7b", "heron-13b", "wren-3b"]):
        vote_add(models["newcomer"], models[loser], "model_a", 10_000 + k2)
    for k3 in range(9):
        other = models[RANKED[k3 % 3][0]]
        vote_add(models["fresh-1b"], other, "model_a" if k3 % 2 else "model_b", 20_000 + k3)
    assert leaderboard_snapshot_create(force=True) is not None
    return models


def test_models_without_a_score_are_listed_apart_and_explained(
    laptop: Page, live_server_url: str, mixed_leaderboard: dict, screenshot: Shot
) -> None:
    laptop.goto(f"{live_server_url}/leaderboard")
    ranked = laptop.locator("#board tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.model)"
    )
    assert ranked == ["lynx-7b", "heron-13b", "wren-3b"]  # only models with a score, best first
    section = laptop.locator("#not-rated")
    expect(section.get_by_role("heading", name="Not yet rated")).to_be_visible()
    expect(section).to_contain_text("not by strength")
    rows = section.locator("tbody tr")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.model)") == ["fresh-1b", "newcomer"]
    expect(rows.nth(1)).to_contain_text("won every vote so far")
    expect(rows.nth(0)).to_contain_text("9 of the 30")
    # The section comes after the ranked table, so "last row" never means "worst".
    board = laptop.locator("#board").bounding_box()
    apart = section.bounding_box()
    assert board and apart and apart["y"] > board["y"] + board["height"]
    screenshot(laptop, "first-hour-not-yet-rated")


# --- A phone ---------------------------------------------------------------------------------


def test_on_a_phone_the_pages_fit_the_screen(
    phone: Page, live_server_url: str, mixed_leaderboard: dict, scripted_worker: object,
    markdown_cast: dict, screenshot: Shot,
) -> None:  # fmt: skip
    phone.goto(f"{live_server_url}/leaderboard")
    expect(phone.locator("#board")).to_be_visible()
    expect(phone.locator("#board td.model").first).to_have_text("Lynx 7B")  # not cut
    phone.locator("#board").scroll_into_view_if_needed()
    screenshot(phone, "first-hour-phone-leaderboard", full_page=False)
    assert layout_problems(phone) == []

    phone.goto(f"{live_server_url}/leaderboard/models/lynx-7b")
    expect(phone.locator("#h2h")).to_be_visible()
    phone.locator("#h2h").scroll_into_view_if_needed()
    screenshot(phone, "first-hour-phone-model-card", full_page=False)
    assert layout_problems(phone) == []

    # The first screen shows the header, the banner and the intro: nothing scrolls the page
    # down to the prompt, and no keyboard hints are offered on a touch screen.
    phone.goto(live_server_url)
    phone.wait_for_load_state("networkidle")
    assert phone.evaluate("() => scrollY") == 0
    expect(phone.locator("#prompt")).not_to_be_focused()
    expect(phone.locator("#prompt-help")).to_be_hidden()
    expect(phone.locator("[data-vote] kbd").first).to_be_hidden()
    screenshot(phone, "first-hour-phone-arena", full_page=False)
    assert layout_problems(phone) == []

    phone.locator("#prompt").fill("Check a palindrome")
    phone.locator("#send").tap()
    for side in "ab":
        expect(phone.locator(f"#pane-{side} [data-state]")).to_have_text(re.compile("^done"))
    expect(phone.locator("[data-vote-hint]")).not_to_contain_text("press")
    assert layout_problems(phone) == []
    phone.locator("[data-vote='a']").tap()
    expect(phone.locator("[data-outcome] [data-new-round]")).to_be_in_viewport()
    phone.wait_for_timeout(600)  # the names' slide-in
    screenshot(phone, "first-hour-phone-voted", full_page=False)
    assert layout_problems(phone) == []


# --- A laptop, after the vote ------------------------------------------------------------------


def visible_start(page: Page, side: str) -> dict[str, float]:
    """Where the first element that shows in a pane's conversation begins, against the box."""
    return page.evaluate(
        """(side) => {
            const box = document.querySelector(`#pane-${side} [data-conversation]`);
            const top = box.getBoundingClientRect().top;
            const first = Array.from(box.querySelectorAll(".message, .message > *"))
              .find((el) => el.getBoundingClientRect().bottom > top + 1);
            return { box: top, first: first.getBoundingClientRect().top };
        }""",
        side,
    )


def test_after_the_vote_the_outcome_and_new_round_are_in_view_without_a_jump(
    laptop: Page, live_server_url: str, scripted_worker: object, long_cast: dict,
    screenshot: Shot,
) -> None:  # fmt: skip
    laptop.goto(live_server_url)
    laptop.locator("#prompt").fill("Tell me a long story about a river")
    laptop.locator("#prompt").press("Enter")
    for side in "ab":
        expect(laptop.locator(f"#pane-{side} [data-state]")).to_have_text(re.compile("^done"))
    expect(laptop.locator("[data-vote='a']")).to_be_focused()
    overflowing = laptop.evaluate(
        """() => Array.from(document.querySelectorAll("[data-conversation]"))
                .filter((c) => c.scrollHeight > c.clientHeight).length"""
    )
    assert overflowing >= 1  # a long answer, scrolled inside its pane
    expect(laptop.locator("[data-vote='a']")).to_be_in_viewport()  # the eye is on the vote
    before = {s: laptop.locator(f"#pane-{s}").bounding_box() for s in "ab"}
    scroll = laptop.evaluate("() => scrollY")

    laptop.keyboard.press("1")
    outcome = laptop.locator("[data-outcome]")
    expect(outcome).to_be_visible()
    laptop.wait_for_timeout(800)  # the names' slide-in and any smooth scroll
    screenshot(laptop, "first-hour-laptop-voted")
    viewport = laptop.viewport_size
    assert viewport is not None
    for part in (outcome.locator("[data-outcome-text]"), outcome.locator("[data-new-round]")):
        box = part.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], box
    # No jump: the page did not scroll and the panes kept their place and height.
    assert laptop.evaluate("() => scrollY") == scroll
    for side in "ab":
        after = laptop.locator(f"#pane-{side}").bounding_box()
        assert after and before[side]
        assert abs(after["y"] - before[side]["y"]) <= 1
        assert abs(after["height"] - before[side]["height"]) <= 1 or side_is_short(laptop, side)
        # The first visible line starts whole, under the names, not half hidden.
        start = visible_start(laptop, side)
        assert start["first"] >= start["box"] - 1, (side, start)
    expect(laptop.locator("[data-reveal] .model-name")).to_have_count(2)


def side_is_short(page: Page, side: str) -> bool:
    """A pane whose whole answer fits grows by the names: the grid row keeps the taller pane's
    height, so only the short side's own box may change."""
    return bool(
        page.evaluate(
            """(side) => { const c = document.querySelector(`#pane-${side} [data-conversation]`);
                          return c.scrollHeight <= c.clientHeight; }""",
            side,
        )
    )


# --- Example prompts and the rate limit ------------------------------------------------------


@pytest.fixture
def arena_url(live_server_url: str, worker: object, cast: dict) -> str:
    return live_server_url


def test_an_example_goes_into_the_prompt_box_to_be_edited(page: Page, arena_url: str) -> None:
    page.goto(arena_url)
    chip = page.locator("[data-example]").first
    chip.click()
    prompt = page.locator("#prompt")
    expect(prompt).to_have_value(chip.inner_text())
    expect(prompt).to_be_focused()
    page.wait_for_timeout(500)
    assert page.locator("#arena").get_attribute("data-phase") == "idle"  # nothing sent
    assert page.locator(".message.user").count() == 0
    page.keyboard.type(" Use a short example.")
    page.keyboard.press("Enter")
    expect(page.locator("#pane-a .message.user")).to_have_text(
        "Explain recursion to a ten-year-old. Use a short example."
    )


def countdown(page: Page) -> tuple[int | None, int | None]:
    """The seconds the notice and the Send button show (None where a number is missing)."""
    alert = re.search(r"Try again in (\d+) s", page.locator("#error").inner_text())
    button = re.search(r"Send \((\d+) s\)", page.locator("#send").inner_text())
    return (int(alert[1]) if alert else None, int(button[1]) if button else None)


def test_the_rate_limit_notice_and_the_button_count_down_together(
    page: Page, worker: object, cast: dict, screenshot: Shot
) -> None:
    web, url = web_start(server_env(ARENA_BATTLES_PER_MINUTE="1"), name="browser-web-countdown")
    try:
        page.goto(url)
        # One battle a minute: the second is refused, unless the minute turned in between
        # (then the third is). A refusal near the end of a minute leaves too little to watch.
        for attempt in range(4):
            page.locator("#prompt").fill(f"Battle {attempt}")
            page.locator("#prompt").press("Enter")
            expect(page.locator("#arena")).not_to_have_attribute("data-phase", "sending")
            if not page.locator("#error").inner_text():
                page.locator("#new-round").click()  # started: leave it for a new one
                continue
            if (countdown(page)[1] or 0) >= 4:
                break
            expect(page.locator("#send")).to_have_text("Send", timeout=10_000)
        else:
            pytest.fail("no rate-limit refusal with time left to watch")
        samples = []
        for _ in range(3):
            samples.append(countdown(page))
            time.sleep(1.1)
        screenshot(page, "first-hour-countdown")
        assert all(a == b and a is not None for a, b in samples), samples
        assert samples[0][0] > samples[-1][0]  # it counts down
    finally:
        stop(web)
