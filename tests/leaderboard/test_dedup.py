"""Prompt down-sampling: the pure keep mask, and its use before the leaderboard is fitted."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.test import override_settings
from django.utils import timezone

from arena.models import ArenaModel, Vote
from arena.prompts import prompt_hash
from leaderboard.engine.dedup import dedup_mask, prompt_cap
from leaderboard.pipeline import battles as battle_data
from leaderboard.pipeline.snapshots import downsampled_reason, leaderboard_snapshot_create
from tests.factories import vote_build, votes_store


def zipf_keys(seed: int, n: int = 5000) -> np.ndarray:
    """Prompt keys with a heavy tail: a few prompts recur hundreds of times."""
    return np.random.default_rng(seed).zipf(1.6, n)


@pytest.mark.parametrize("percentile", [50.0, 90.0, 99.0, 99.9, 100.0])
def test_cap_is_numpys_percentile_rounded_up(percentile: float) -> None:
    _, counts = np.unique(zipf_keys(1), return_counts=True)
    expected = max(1, int(np.ceil(np.percentile(counts, percentile))))
    assert prompt_cap(counts, percentile) == expected
    # The same from a histogram (what the database sends).
    values, multiplicity = np.unique(counts, return_counts=True)
    assert prompt_cap(values, percentile, multiplicity=multiplicity) == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_prompt_keeps_at_most_the_cap_and_small_ones_keep_all(seed: int) -> None:
    keys = zipf_keys(seed)
    keep = dedup_mask(keys, rng=np.random.default_rng(seed), percentile=99.0)
    distinct, counts = np.unique(keys, return_counts=True)
    cap = prompt_cap(counts, 99.0)
    kept = dict(zip(*np.unique(keys[keep], return_counts=True), strict=True))
    assert (counts > cap).any()  # the case is not vacuous
    for key, n in zip(distinct.tolist(), counts.tolist(), strict=True):
        assert kept[key] == min(n, cap)


def test_the_same_seed_keeps_the_same_votes_and_another_seed_others() -> None:
    keys = zipf_keys(3)
    first = dedup_mask(keys, rng=np.random.default_rng(7), percentile=99.0)
    again = dedup_mask(keys, rng=np.random.default_rng(7), percentile=99.0)
    other = dedup_mask(keys, rng=np.random.default_rng(8), percentile=99.0)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.sum() == other.sum()


def test_the_kept_votes_of_a_capped_prompt_are_drawn_at_random_not_the_first() -> None:
    keys = np.array([0] * 1000 + list(range(1, 1001)))
    keep = dedup_mask(keys, rng=np.random.default_rng(0), cap=100)
    positions = np.flatnonzero(keep[:1000])
    assert positions.size == 100
    # Uniform positions in 0..999 have a mean near 500; keeping the first 100 would give 49.5.
    assert 350 < positions.mean() < 650


@pytest.mark.parametrize("percentile", [None, 0.0])
def test_off_keeps_every_vote(percentile: float | None) -> None:
    keys = zipf_keys(4)
    assert dedup_mask(keys, rng=np.random.default_rng(0), percentile=percentile).all()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="percentile"):
        prompt_cap(np.array([1, 2]), 120.0)
    with pytest.raises(ValueError, match="cap"):
        dedup_mask(np.array([1, 1]), rng=np.random.default_rng(0), cap=0)


# --- in the database ----------------------------------------------------------------------------

PROMPTS_UNIQUE = 300
REPEATED = 200  # votes on one prompt, all won by model "b"


@pytest.fixture
def repeated_prompt_votes(db: None) -> dict[str, ArenaModel]:
    """300 votes on distinct prompts (a and b win equally) and 200 on one repeated greeting, all
    won by b: without down-sampling the greeting decides the board."""
    a, b = (ArenaModel.objects.create(name=n, display_name=n, backend="local") for n in "ab")
    now = timezone.now()
    made = []
    for k in range(PROMPTS_UNIQUE + REPEATED):
        repeated = k >= PROMPTS_UNIQUE
        prompt = "  Hello THERE " if repeated and k % 2 else "hello there" if repeated else f"q{k}"
        conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": "x"}]
        vote = vote_build(
            a,
            b,
            "model_b" if repeated or k % 2 else "model_a",
            visitor_id=f"v{k}",
            when=now - dt.timedelta(minutes=k),
            conversation_a=conversation,
            conversation_b=conversation,
            prompt_chars=len(prompt),
        )
        vote.prompt_key = prompt_hash(
            {
                "battle_id": vote.battle_id,
                "external_id": "",
                "conversation_a": conversation,
                "conversation_b": conversation,
            }
        )
        made.append(vote)
    votes_store(made)
    return {"a": a, "b": b}


def test_the_normalised_prompt_groups_differently_spelt_repeats(
    repeated_prompt_votes: dict[str, ArenaModel],
) -> None:
    keys = Vote.objects.values_list("prompt_key", flat=True).distinct().count()
    assert keys == PROMPTS_UNIQUE + 1


@override_settings(ARENA_DEDUP_PERCENTILE=99.0, ARENA_LEADERBOARD_CI="sandwich")
def test_snapshot_down_samples_the_repeated_prompt_and_says_how_many(
    repeated_prompt_votes: dict[str, ArenaModel],
) -> None:
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    # 301 prompts: the 99th percentile of their counts is 1 (all but one prompt occur once),
    # so the greeting keeps one vote.
    assert snapshot.results["overall"]["n_battles"] == PROMPTS_UNIQUE + 1
    assert snapshot.details["votes"]["downsampled"] == REPEATED - 1
    assert snapshot.details["votes"]["excluded"][downsampled_reason(99.0)] == REPEATED - 1
    assert snapshot.details["dedup"]["cap"] == 1
    # The table's number is what the snapshot stored (the counted votes per category agree).
    assert snapshot.results["no_ties"]["n_battles"] == PROMPTS_UNIQUE + 1


@override_settings(ARENA_DEDUP_PERCENTILE=0.0, ARENA_LEADERBOARD_CI="sandwich")
def test_snapshot_without_down_sampling_counts_every_vote(
    repeated_prompt_votes: dict[str, ArenaModel],
) -> None:
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    assert snapshot.results["overall"]["n_battles"] == PROMPTS_UNIQUE + REPEATED
    assert snapshot.details["votes"]["downsampled"] == 0


def test_down_sampling_in_sql_removes_the_same_votes_from_counts_and_style_rows(
    repeated_prompt_votes: dict[str, ArenaModel],
) -> None:
    names, index = battle_data.model_names()
    votes = battle_data.valid_votes()
    plan = battle_data.downsampling_plan(votes, percentile=99.0, seed=5)
    assert plan.cap == 1 and len(plan.dropped) == REPEATED - 1
    again = battle_data.downsampling_plan(votes, percentile=99.0, seed=5)
    assert again.dropped == plan.dropped
    counted = battle_data.battles_aggregated(votes, names, index, downsampling=plan)
    styled = battle_data.battles_with_style(votes, names, index, downsampling=plan)
    kept = Vote.objects.exclude(id__in=plan.dropped)
    b_wins = kept.filter(outcome="model_b").count()
    assert len(counted) == len(styled) == kept.count()
    assert int((counted.outcome == 1).sum()) == int((styled.outcome == 1).sum()) == b_wins
