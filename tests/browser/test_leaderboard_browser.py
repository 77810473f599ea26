"""The leaderboard in a real browser: switch category and style control, sort, open a model card.

Screenshots land in test-output/screenshots/leaderboard-*.png for people to look at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from arena.models import ArenaModel, Battle, Vote
from leaderboard.models import LeaderboardSnapshot
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# name, display name, organization, license, strength, sampling weight, enabled
CAST = [
    ("atlas-70b", "Atlas 70B Instruct", "Northwind AI", "Apache-2.0", 1.3, 1.0, True),
    ("kestrel-8x7b", "Kestrel 8x7B", "Kestrel Labs", "MIT", 1.0, 1.0, True),
    ("orca-mini-13b", "Orca Mini 13B", "Open Fjord", "CC-BY-NC-4.0", 0.7, 1.0, True),
    ("sable-34b", "Sable 34B Chat", "Sable Research", "Apache-2.0", 0.9, 1.5, True),
    ("tern-7b", "Tern 7B", "Coastal ML", "Llama 3 Community", 0.2, 1.0, True),
    ("puffin-3b", "Puffin 3B", "Coastal ML", "Apache-2.0", -0.3, 0.5, True),
    ("gull-1b", "Gull 1B", "Coastal ML", "MIT", -0.8, 0.5, True),
    ("legacy-13b", "Legacy 13B (2023)", "Northwind AI", "Proprietary", 0.4, 0.0, False),
]
LANGUAGES = ["en"] * 6 + ["de", "de", "fr", "zh"]


def seed_votes(rng: np.random.Generator, count: int, start: dt.datetime) -> None:
    models = list(ArenaModel.objects.order_by("id"))
    strength = {name: s for name, *_, s, _w, _e in CAST}
    battles, votes = [], []
    for k in range(count):
        i, j = rng.choice(len(models), size=2, replace=False)
        a, b = models[i], models[j]
        p = 1 / (1 + np.exp(strength[b.name] - strength[a.name]))
        u = rng.random()
        outcome = (
            "tie" if u < 0.12 else "both_bad" if u < 0.16 else
            "model_a" if u < 0.16 + 0.84 * p else "model_b"
        )  # fmt: skip
        when = start + dt.timedelta(minutes=k)
        battle = Battle(model_a=a, model_b=b, visitor_id="v", created_at=when)
        battles.append(battle)
        style_a, style_b = ({key: int(rng.integers(0, 5)) for key in ("headers", "lists", "bold")}
                            for _ in range(2))  # fmt: skip
        votes.append(
            Vote(
                battle=battle, model_a=a, model_b=b, outcome=outcome, visitor_id=f"v{k % 97}",
                conversation_a=[], conversation_b=[], language=LANGUAGES[k % len(LANGUAGES)],
                turns=1 + (k % 5 == 0), prompt_chars=int(rng.integers(20, 2500)),
                has_code=k % 4 == 0, tokens_a=int(rng.integers(20, 800)),
                tokens_b=int(rng.integers(20, 800)), style_a=style_a, style_b=style_b,
                battle_started_at=when, created_at=when,
                is_valid=k % 50 != 0, invalid_reason="" if k % 50 else "identity leak",
            )
        )  # fmt: skip
    Battle.objects.bulk_create(battles)
    Vote.objects.bulk_create(votes)


@pytest.fixture
def leaderboard(settings: Any) -> None:
    """A small arena with a week of history: four snapshots, one a day apart."""
    settings.ARENA_LEADERBOARD_ROUNDS = 50
    for name, display, org, license_, _strength, weight, enabled in CAST:
        ArenaModel.objects.create(
            name=name, display_name=display, organization=org, license=license_,
            backend="openai", sampling_weight=weight, enabled=enabled,
        )  # fmt: skip
    rng = np.random.default_rng(11)
    now = timezone.now()
    for day in range(4):
        start = now - dt.timedelta(days=4 - day)
        seed_votes(rng, 700, start)
        snapshot = leaderboard_snapshot_create()
        assert snapshot is not None
        LeaderboardSnapshot.objects.filter(id=snapshot.id).update(
            created_at=start + dt.timedelta(hours=12)
        )


def first_models(page: Any, count: int = 3) -> list[str]:
    cells = page.locator("#board tbody tr").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-model'))"
    )
    return list(cells[:count])


def test_switch_category_and_style_control_then_open_a_model(
    leaderboard: None, live_server_url: str, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    page.goto(f"{live_server_url}/leaderboard")
    assert page.locator("h1").inner_text() == "Leaderboard"
    assert first_models(page, 1) == ["atlas-70b"]
    assert page.locator('tr[data-model="legacy-13b"]').count() == 0  # disabled: hidden
    assert page.locator("#plot-ratings svg").count() == 1
    assert page.locator("#plot-history polyline").count() >= 5
    screenshot(page, "leaderboard-overall")

    page.select_option("#category", "lang:de")
    page.wait_for_url("**category=lang%3Ade**")
    assert page.locator("#category").input_value() == "lang:de"
    assert page.locator("#board tbody tr").count() == 7
    screenshot(page, "leaderboard-lang-de")

    page.select_option("#category", "overall")
    page.wait_for_url("**category=overall**")
    page.check("#style-control")
    page.wait_for_url("**style_control=1**")
    assert page.locator("#style-control").is_checked()
    assert "plain rank" in page.locator("#board thead").inner_text().lower()
    screenshot(page, "leaderboard-style-control")

    # Sort by votes (most first), then by model name (A-Z): rows reorder in the page.
    page.locator("#board thead th", has_text="Votes").locator("button").click()
    votes = page.locator("#board tbody td:nth-child(6)").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.value))"
    )
    assert votes == sorted(votes, reverse=True)
    page.locator("#board thead th", has_text="Model").locator("button").click()
    names = page.locator("#board tbody td.model").evaluate_all(
        "cells => cells.map(c => c.dataset.value.toLowerCase())"
    )
    assert names == sorted(names)

    page.check("#show-deprecated")
    page.wait_for_url("**show_deprecated=1**")
    assert page.locator('tr[data-model="legacy-13b"]').count() == 1

    page.get_by_role("tab", name="Battle counts").click()
    assert page.locator("#panel-battles").is_visible()
    assert not page.locator("#panel-win").is_visible()
    page.locator("#plot-matrices").screenshot(
        path=str(Path(screenshot(page, "leaderboard-show-deprecated")).with_name(
            "leaderboard-battle-counts.png"))
    )  # fmt: skip

    page.get_by_role("link", name="Kestrel 8x7B").first.click()
    page.wait_for_url("**/leaderboard/models/kestrel-8x7b")
    assert page.locator("#h2h tbody tr").count() == 7
    assert page.locator('#categories tr[data-category="overall"]').inner_text().count("of") == 1
    screenshot(page, "leaderboard-model-card")
    assert page.js_errors == []
