"""The short form of benchmarks/load.py: 20 visitors at once, two battles each, on the real
stack (uvicorn, a Celery worker, Redis, the test database, tiny local models). No 5xx, every
acknowledged vote stored exactly once, one vote of each concurrent double submit."""

from __future__ import annotations

import asyncio

import pytest

from arena.models import Vote
from benchmarks.load import OPEN_LIMITS, load_run, votes_verify
from tests.conftest import stop, subprocess_env, web_start

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_twenty_visitors_play_two_battles_each_and_every_vote_is_kept(
    worker: object, cast: dict
) -> None:
    # A web process of its own: the limits are raised for it (every visitor is one address).
    web, url = web_start(subprocess_env(**OPEN_LIMITS), name="test-web-load")
    try:
        tally = asyncio.run(
            load_run(url, visitors=20, battles=2, double_every=3, timeout=50, max_seconds=55)
        )
    finally:
        stop(web)
    assert tally.errors == []
    assert tally.server_errors == 0
    assert tally.battles_started == 40
    assert len(tally.acked) == 40
    assert len(tally.doubles) == 14  # every third of the 40 votes: 0, 3, ..., 39
    stored: dict[str, list[str]] = {}
    for battle_id, outcome in Vote.objects.values_list("battle_id", "outcome"):
        stored.setdefault(battle_id, []).append(outcome)
    assert votes_verify(tally, stored) == []
    assert Vote.objects.count() == 40


def test_votes_verify_finds_lost_duplicated_and_unacknowledged_votes() -> None:
    """The check itself can fail: each kind of damage is reported."""
    from benchmarks.load import Tally

    tally = Tally(acked={"b1": "model_a", "b2": "tie", "b3": "model_b"}, doubles=[(201, 201)])
    stored = {"b1": ["model_a"], "b2": ["tie", "tie"], "b4": ["model_b"]}
    problems = votes_verify(tally, stored)
    assert "battle b2: acknowledged tie, stored ['tie', 'tie']" in problems
    assert "battle b3: acknowledged model_b, stored []" in problems
    assert "battle b4: a vote stored that no visitor was told about" in problems
    assert "a double submit got (201, 201), not one 201 and one 409" in problems
    assert len(problems) == 4
