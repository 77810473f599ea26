"""Integrity report: votes needed to swap neighbours (checked by refitting), identities needed
under the detector, and the ``integrity_report`` command on the database and on a simulation."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from arena.models import ArenaModel, Battle, Vote
from leaderboard.engine.anomaly import Thresholds, cell_counts, detect_voters
from leaderboard.engine.pairs import MODEL_A, Battles
from leaderboard.engine.ratings import compute_leaderboard
from leaderboard.pipeline.integrity import (
    adjacent_pairs,
    attack_cost,
    leaderboard_strengths,
    simulate_arena,
    swap_votes,
)
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create

STRENGTHS = np.linspace(1.0, -1.0, 5)


@pytest.fixture
def honest() -> Any:
    return simulate_arena(np.random.default_rng(3), STRENGTHS, honest_voters=300, mean_votes=8)


def refit_ratings(sim: Any, upper: int, lower: int, k: int) -> np.ndarray:
    """Ratings from compute_leaderboard (the page's fit) with k fake "lower beats upper" votes."""
    a = np.r_[sim.model_a, np.full(k, lower)]
    b = np.r_[sim.model_b, np.full(k, upper)]
    o = np.r_[sim.outcome, np.full(k, MODEL_A)]
    names = tuple(f"m{i}" for i in range(STRENGTHS.size))
    board = compute_leaderboard(Battles(names, a, b, o), ci="none")
    by_name = {row.model: row.rating for row in board.rows}
    return np.array([by_name[name] for name in names])


def test_the_swap_count_is_the_fewest_fake_votes_that_swap_the_pair(honest: Any) -> None:
    n = STRENGTHS.size
    cells = cell_counts(honest.model_a, honest.model_b, honest.outcome, n)
    theta = leaderboard_strengths(cells, n)
    pairs = adjacent_pairs(theta, np.ones(n, bool))
    assert len(pairs) == n - 1
    for upper, lower in pairs:
        k = swap_votes(cells, n, upper, lower)
        assert k > 0
        swapped, not_yet = (
            refit_ratings(honest, upper, lower, k),
            refit_ratings(honest, upper, lower, k - 1),
        )
        assert swapped[lower] > swapped[upper]
        assert not_yet[lower] <= not_yet[upper]


def test_each_identity_stays_just_under_the_detector(honest: Any) -> None:
    """An identity casting `votes_per_identity` targeted votes is not flagged; one more vote and
    it is (the consensus leaves the tested voter out, as the attacker model assumes)."""
    n = STRENGTHS.size
    thresholds = Thresholds(alpha=0.01, loo_share=0.0)
    cells = cell_counts(honest.model_a, honest.model_b, honest.outcome, n)
    upper, lower = 0, 1
    attack = attack_cost(cells, n, upper, lower, thresholds)
    assert attack.identities is not None and attack.votes_per_identity is not None
    # The first identity can cast the fewest: the consensus drifts towards the attack, so
    # later identities are flagged later.
    assert 2 <= attack.identities <= -(-attack.votes // attack.votes_per_identity)

    def flagged(c: int) -> bool:
        flip = np.arange(c) % 2 == 0  # sides alternate: the side test sees a fair coin
        a = np.r_[honest.model_a, np.where(flip, lower, upper)]
        b = np.r_[honest.model_b, np.where(flip, upper, lower)]
        o = np.r_[honest.outcome, np.where(flip, 0, 1)]
        voter = np.r_[honest.voter, np.full(c, 10**6)]
        t = np.r_[honest.tstamp, np.arange(c) * 3600.0]
        results = detect_voters(
            voter, a, b, o, t, consensus=cell_counts(a, b, o, n), n_models=n, thresholds=thresholds
        )
        return next(r for r in results if r.voter == 10**6).flagged

    assert not flagged(attack.votes_per_identity)
    assert flagged(attack.votes_per_identity + 1)


def test_integrity_report_runs_on_a_simulated_arena() -> None:
    out = io.StringIO()
    call_command(
        "integrity_report",
        "--simulate",
        "--models",
        "4",
        "--voters",
        "300",
        "--adversaries",
        "3",
        "--adversary-votes",
        "30",
        "--json",
        stdout=out,
    )
    report = json.loads(out.getvalue())
    assert report["source"]["kind"] == "simulation"
    pairs = report["pairs"]
    assert [p["upper"] for p in pairs] == ["model-00", "model-01", "model-02"]
    assert all(p["votes_to_swap"] > 0 and p["identities_to_swap"] >= 1 for p in pairs)
    kinds = report["injection"]["kinds"]
    assert set(kinds) == {"honest", "targeted", "fan", "side", "burst"}
    assert kinds["honest"]["voters"] == 300
    assert 0 <= report["injection"]["false_positive_rate"] <= 1
    text = io.StringIO()
    call_command("integrity_report", "--simulate", "--models", "3", "--voters", "200", stdout=text)
    assert "Fake votes needed to swap adjacent models" in text.getvalue()
    assert "False-positive rate" in text.getvalue()


# --- on the database ------------------------------------------------------------------------------

DB_STRENGTHS = {"m0": 1.2, "m1": 0.6, "m2": 0.0}


@pytest.fixture
def stored(db: None, settings: Any) -> dict[str, ArenaModel]:
    settings.ARENA_LEADERBOARD_CI = "sandwich"
    settings.ARENA_LEADERBOARD_STYLE_CONTROL = False
    rng = np.random.default_rng(1)
    models = {
        n: ArenaModel.objects.create(name=n, display_name=n, backend="local") for n in DB_STRENGTHS
    }
    names, strength = list(DB_STRENGTHS), np.array(list(DB_STRENGTHS.values()))
    now = timezone.now()
    made = []
    for k in range(300):
        i, j = rng.choice(3, size=2, replace=False)
        win = rng.random() < 1 / (1 + np.exp(strength[j] - strength[i]))
        made.append(
            fake_vote(
                models[names[i]],
                models[names[j]],
                "model_a" if win else "model_b",
                f"v{k % 60}",
                now - dt.timedelta(minutes=k),
            )
        )
    Vote.objects.bulk_create(made)
    return models


def fake_vote(a: ArenaModel, b: ArenaModel, outcome: str, voter: str, when: dt.datetime) -> Vote:
    battle = Battle.objects.create(model_a=a, model_b=b, visitor_id=voter)
    return Vote(
        battle=battle,
        model_a=a,
        model_b=b,
        outcome=outcome,
        visitor_id=voter,
        conversation_a=[],
        conversation_b=[],
        turns=1,
        prompt_chars=1,
        battle_started_at=when,
        created_at=when,
    )


def snapshot_ratings() -> dict[str, float]:
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    return {row["model"]: row["rating"] for row in snapshot.results["overall"]["rows"]}


def test_the_reported_swap_count_swaps_the_stored_leaderboard(
    stored: dict[str, ArenaModel],
) -> None:
    out = io.StringIO()
    call_command("integrity_report", "--voters", "100", "--adversaries", "1", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["source"] == {"kind": "database", "models": 3, "votes": 300}
    top = report["pairs"][0]
    upper, lower, k = stored[top["upper"]], stored[top["lower"]], top["votes_to_swap"]
    now = timezone.now()
    Vote.objects.bulk_create(
        [fake_vote(lower, upper, "model_a", f"fake-{i}", now) for i in range(k - 1)]
    )
    before = snapshot_ratings()
    assert before[lower.name] < before[upper.name]
    Vote.objects.bulk_create([fake_vote(lower, upper, "model_a", "fake-last", now)])
    after = snapshot_ratings()
    assert after[lower.name] > after[upper.name]


def test_integrity_report_without_votes_says_so(db: None) -> None:
    with pytest.raises(CommandError, match="no votes"):
        call_command("integrity_report", stdout=io.StringIO())
