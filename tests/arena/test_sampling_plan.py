"""The adaptive policy wired into the arena: precomputed plans, draws in battle_create."""

from __future__ import annotations

import numpy as np
import pytest
from django.db.models import Q
from django.test import override_settings
from scipy import stats

from arena import selectors, services
from arena.models import ArenaModel, Battle, SamplingPlan, Vote
from arena.sampling.plan import plan_pair_draw
from arena.sampling.policy import pair_probabilities
from arena.streams import redis_client
from leaderboard.pipeline.sampling_plan import sampling_plan_create, sampling_plan_refresh
from tests.factories import vote_build, votes_store

ALPHA = 1e-4  # chi-square level: a correct sampler fails one run in ten thousand


@pytest.fixture
def arena_with_votes(db: None) -> list[ArenaModel]:
    """Four settled models with 600 votes between them, and a newcomer with none."""
    rng = np.random.default_rng(5)
    models = [
        ArenaModel.objects.create(name=f"m{k}", display_name=f"M{k}", backend="local")
        for k in range(5)
    ]
    strength = np.array([0.0, 0.3, 0.6, 0.9])
    votes = []
    for _ in range(600):
        i, j = rng.choice(4, size=2, replace=False)
        won = rng.random() < 1 / (1 + np.exp(strength[j] - strength[i]))
        votes.append(vote_build(models[i], models[j], "model_a" if won else "model_b"))
    votes_store(votes)
    return models


def test_the_plan_gives_the_newcomer_more_than_its_weighted_share(arena_with_votes) -> None:
    plan = sampling_plan_refresh()
    assert plan is not None and plan.pool == [f"m{k}" for k in range(5)]
    p = np.array(plan.probabilities)
    assert p.sum() == pytest.approx(1.0) and np.allclose(np.diag(p), 0)
    weighted_share = 2 / 5  # every model's share of battles under equal weights
    assert plan.shares[4] > 1.5 * weighted_share
    assert sampling_plan_refresh() is None  # nothing changed: no new plan


def test_the_plan_ignores_outcomes(arena_with_votes) -> None:
    """Finding 7 of issue 14: a plan that reacts to outcomes biases the ratings it feeds, so the
    same battles with the results of one model reversed (the weakest becomes the strongest) must
    give the same plan."""
    pool = selectors.model_pool()
    before = np.array(sampling_plan_create(pool=pool).probabilities)
    m0 = Q(model_a__name="m0") | Q(model_b__name="m0")
    Vote.objects.filter(m0, outcome="model_a").update(outcome="tmp")
    Vote.objects.filter(m0, outcome="model_b").update(outcome="model_a")
    Vote.objects.filter(m0, outcome="tmp").update(outcome="model_b")
    after = np.array(sampling_plan_create(pool=pool).probabilities)
    assert np.allclose(after, before, rtol=1e-12, atol=1e-15)
    assert after[4].sum() > 1.5 * after[0].sum(), "the newcomer still gets the most battles"


@override_settings(ARENA_SAMPLING_POLICY="adaptive")
def test_draws_follow_the_plan(arena_with_votes) -> None:
    plan = sampling_plan_refresh()
    pool = selectors.model_pool()
    rng = np.random.default_rng(11)
    n = len(pool)
    counts = np.zeros((n, n))
    for _ in range(20_000):
        left, right = plan_pair_draw(pool, rng)
        counts[left, right] += 1
    expected = np.array(plan.probabilities) * counts.sum()
    off = ~np.eye(n, dtype=bool)
    assert stats.chisquare(counts[off], expected[off]).pvalue > ALPHA


@override_settings(ARENA_SAMPLING_POLICY="adaptive")
def test_a_disabled_model_is_cut_out_and_an_unknown_one_falls_back(arena_with_votes) -> None:
    sampling_plan_refresh()
    ArenaModel.objects.filter(name="m4").update(enabled=False)
    pool = selectors.model_pool()
    rng = np.random.default_rng(2)
    drawn = {pool[i].name for _ in range(500) for i in plan_pair_draw(pool, rng)}
    assert drawn == {"m0", "m1", "m2", "m3"}

    ArenaModel.objects.create(name="late", display_name="Late", backend="local")
    pool = selectors.model_pool()
    assert "late" not in SamplingPlan.objects.first().pool
    drawn = {pool[i].name for _ in range(2000) for i in plan_pair_draw(pool, rng)}
    assert "late" in drawn  # weighted until the next plan


def test_weighted_policy_ignores_plans(arena_with_votes) -> None:
    sampling_plan_refresh()
    pool = selectors.model_pool()
    rng = np.random.default_rng(3)
    n = len(pool)
    counts = np.zeros((n, n))
    for _ in range(20_000):
        left, right = plan_pair_draw(pool, rng)
        counts[left, right] += 1
    expected = pair_probabilities([1.0] * n) * counts.sum()
    off = ~np.eye(n, dtype=bool)
    assert stats.chisquare(counts[off], expected[off]).pvalue > ALPHA


@override_settings(ARENA_SAMPLING_POLICY="adaptive")
def test_battle_create_draws_with_the_plan(arena_with_votes) -> None:
    redis_client().flushdb()
    sampling_plan_refresh()
    with override_settings(ARENA_BATTLES_PER_MINUTE=1000):
        battles = [
            services.battle_create(visitor_id="v", prompt="hi", rng=np.random.default_rng(k))
            for k in range(60)
        ]
    newcomer = sum("m4" in (b.model_a.name, b.model_b.name) for b in battles)
    assert newcomer > 60 * 2 / 5  # more than its weighted share


def test_a_plan_is_made_when_two_rateable_groups_met_one_way(arena_with_votes) -> None:
    """The newcomer tied a second newcomer both ways and lost twice to m0: two rateable groups
    joined by one-sided battles; each is fitted on its own battles, no infinite strengths."""
    models = arena_with_votes
    extra = ArenaModel.objects.create(name="m5", display_name="M5", backend="local")
    pairs = [
        (models[4], extra, "tie"),
        (extra, models[4], "tie"),
        (models[0], models[4], "model_a"),
    ]
    for a, b, outcome in pairs + pairs[2:]:
        battle = Battle.objects.create(model_a=a, model_b=b, visitor_id="v")
        Vote.objects.create(
            battle=battle, model_a=a, model_b=b, outcome=outcome, visitor_id="v",
            conversation_a=[], conversation_b=[], turns=1, prompt_chars=10,
            battle_started_at=battle.created_at,
        )  # fmt: skip
    plan = sampling_plan_refresh()
    assert plan is not None and np.isfinite(plan.probabilities).all()


@override_settings(ARENA_SAMPLING_POLICY="adaptive")
def test_the_transparency_table_shows_the_shares_the_plan_draws_by(arena_with_votes) -> None:
    """The leaderboard's sampling table said "expected" from the weights even when the adaptive
    plan was drawing, which gives the newcomer far more battles: it shows the plan's shares."""
    from leaderboard.pages.selectors import Payload, sampling_rows

    plan = sampling_plan_refresh()
    assert plan is not None
    models = {m.name: m for m in ArenaModel.objects.all()}
    rows = {r["model"]: r for r in sampling_rows(Payload({}, {}, []), models)}
    for name, share in zip(plan.pool, plan.shares, strict=True):
        assert rows[name]["expected_share"] == pytest.approx(share, rel=1e-9)
    assert rows["m4"]["expected_share"] > 1.5 * 2 / 5  # not the weighted share
    with override_settings(ARENA_SAMPLING_POLICY="weighted"):
        rows = {r["model"]: r for r in sampling_rows(Payload({}, {}, []), models)}
        assert rows["m4"]["expected_share"] == pytest.approx(2 / 5)
