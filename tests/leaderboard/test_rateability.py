"""Which models can be rated: groups (strongly connected sets of two or more models), models
with only wins or only losses, ties-only pairs, and style control that needs data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leaderboard.engine import ratings as R
from leaderboard.engine.simulation import simulate
from tests.leaderboard.conftest import EXACT_ATOL, counts_of, fit

# --- models that cannot be rated ---------------------------------------------------------------


def test_models_with_only_wins_or_only_losses_are_reported_not_rated():
    rng = np.random.default_rng(12)
    base = simulate(rng, rng.normal(0, 1, 4), 400)
    # Model 4 beats everyone it meets; model 5 loses to everyone.
    a = np.r_[base.model_a, [4, 4, 1, 5, 0]]
    b = np.r_[base.model_b, [0, 2, 4, 3, 5]]
    o = np.r_[base.outcome, [0, 0, 1, 1, 0]]
    names = (*base.names, "winner", "loser")
    battles = R.Battles(names, a, b, o)
    with pytest.raises(R.NotIdentifiableError, match="only wins"):
        fit(battles)
    board = R.compute_leaderboard(battles, ci="sandwich")
    rows = {r.model: r for r in board.rows}
    assert rows["winner"].rank is None and rows["winner"].note == "only wins"
    assert rows["loser"].rank is None and rows["loser"].note == "only losses"
    assert not rows["winner"].identifiable and math.isnan(rows["winner"].rating)
    assert [r.model for r in board.rows[-2:]] == ["loser", "winner"]
    assert all(math.isfinite(r.rating) for r in board.rows[:-2])
    assert {r["model"] for r in board.records() if r["rated"]} == set(base.names)
    # The others are rated as if the unrated models' battles were not there (same anchor).
    others = counts_of(base.select(np.ones(len(base), dtype=bool)))
    anchored = R.centre_strengths(
        R.fit_bradley_terry(others), np.zeros(4, dtype=np.int64), R.anchor_weights(others)
    )
    assert [rows[m].rating for m in base.names] == pytest.approx(
        list(R.theta_to_rating(anchored)), abs=EXACT_ATOL
    )
    # With a penalty every model is rated, and still flagged.
    penalised = {r.model: r for r in R.compute_leaderboard(battles, ci="none", l2=0.1).rows}
    assert penalised["winner"].rank == 1 and not penalised["winner"].identifiable


def test_disconnected_groups_are_centred_separately_and_reported():
    rng = np.random.default_rng(13)
    one = simulate(rng, rng.normal(0, 1, 4), 500, tie_rate=0.2)
    battles = R.Battles(
        tuple(f"m{i}" for i in range(8)),
        np.r_[one.model_a, one.model_a + 4],
        np.r_[one.model_b, one.model_b + 4],
        np.r_[one.outcome, one.outcome],
    )
    theta = fit(battles)
    assert theta[:4] == pytest.approx(theta[4:], abs=EXACT_ATOL)
    assert theta[:4].sum() == pytest.approx(0.0, abs=EXACT_ATOL)
    structure = R.comparison_structure(counts_of(battles))
    assert structure.n_components == 2 and structure.identifiable.all()


def test_ranks_count_only_models_of_the_same_group() -> None:
    """Two groups that never met each have their own rank 1."""
    from leaderboard.engine.simulation import simulate

    rng = np.random.default_rng(4)
    first = simulate(rng, np.array([0.0, 1.0, 2.0]), 3000)
    second = simulate(rng, np.array([0.0, 1.0, 2.0]), 3000)
    joined = R.Battles(
        tuple(f"m{k}" for k in range(6)),
        np.r_[first.model_a, second.model_a + 3],
        np.r_[first.model_b, second.model_b + 3],
        np.r_[first.outcome, second.outcome],
    )
    board = R.compute_leaderboard(joined, ci="sandwich")
    ranks = {row.model: row.rank for row in board.rows}
    assert board.n_components == 2
    assert (ranks["m2"], ranks["m5"]) == (1, 1)
    assert (ranks["m0"], ranks["m3"]) == (3, 3)


@pytest.mark.parametrize("style_control", [False, True])
def test_no_rateable_model_gives_an_empty_board_not_a_crash(style_control: bool) -> None:
    """Two first votes of a new arena: A beat B, C beat D; nobody is rateable yet."""
    battles = R.Battles(
        ("a", "b", "c", "d"),
        np.array([0, 2]),
        np.array([1, 3]),
        np.array([0, 0]),
        style_a=np.ones((2, 4)),
        style_b=np.ones((2, 4)),
        style_names=("tokens", "headers", "lists", "bold"),
    )
    board = R.compute_leaderboard(
        battles, rng=np.random.default_rng(0), rounds=20, style_control=style_control
    )
    assert [row.rank for row in board.rows] == [None] * 4


# --- groups: only strongly connected sets of two or more models are rated ----------------------


def _battles(names: str, triples: list[tuple[int, int, int]]) -> R.Battles:
    a, b, o = (np.array(col, dtype=np.int64) for col in zip(*triples, strict=True))
    return R.Battles(tuple(names), a, b, o)


def test_a_lone_winner_is_not_rated_and_the_cycle_is_group_one() -> None:
    """a, b, c beat each other in a cycle; X beat Y once: X and Y are no group of their own."""
    battles = _battles("abcXY", [(0, 1, 0), (1, 2, 0), (2, 0, 0)] * 3 + [(3, 4, 0)])
    for ci in ("sandwich", "bootstrap", "none"):
        board = R.compute_leaderboard(battles, ci=ci, rng=np.random.default_rng(0), rounds=50)
        rows = {r.model: r for r in board.rows}
        assert [r.model for r in board.rows][:3] == ["a", "b", "c"]
        assert {m: (rows[m].group, rows[m].rank) for m in "abc"} == {m: (1, 1) for m in "abc"}
        assert (rows["X"].group, rows["X"].rank, rows["X"].note) == (None, None, "only wins")
        assert (rows["Y"].group, rows["Y"].rank, rows["Y"].note) == (None, None, "only losses")
        assert math.isnan(rows["Y"].rating) and board.n_groups == 1


def test_two_cycles_joined_by_one_sided_battles_are_two_groups() -> None:
    """{a, b, c} and {d, e} each form a cycle; a beat d twice: two groups, each ranked alone."""
    cycle = [(0, 1, 0), (1, 2, 0), (2, 0, 0), (0, 1, 1)] * 3
    pair = [(3, 4, 0), (3, 4, 1), (3, 4, 2)] * 2
    battles = _battles("abcde", [*cycle, *pair, (0, 3, 0), (0, 3, 0)])
    board = R.compute_leaderboard(battles, ci="sandwich")
    groups = {r.model: r.group for r in board.rows}
    assert groups == {"a": 1, "b": 1, "c": 1, "d": 2, "e": 2}
    assert [r.model for r in board.rows][-2:] in (["d", "e"], ["e", "d"])
    assert all(math.isfinite(r.rating) and r.lower < r.rating < r.upper for r in board.rows)
    assert {r.rank for r in board.rows if r.group == 2} == {1}
    # Each group is fitted on its own battles (the one-sided a-d battles say nothing inside).
    alone = R.compute_leaderboard(_battles("de", [(0, 1, 0), (0, 1, 1), (0, 1, 2)] * 2), ci="none")
    assert [r.rating for r in board.rows if r.group == 2] == pytest.approx(
        [r.rating for r in alone.rows], abs=EXACT_ATOL
    )
    with pytest.raises(R.NotIdentifiableError, match="one way"):
        fit(battles)


@pytest.mark.parametrize("n_ties", [1, 5])
def test_a_pair_that_only_tied_gets_an_honest_interval(n_ties: int) -> None:
    """Ties only: the estimate is equal strengths, and the interval is not [1000, 1000].

    With ties as half wins every battle's residual is 0, so the plain sandwich and every
    bootstrap resample say "no uncertainty". One decisive battle's variance at the fitted odds
    (p = 1/2) gives each strength a standard error of 1 / n_ties (difference: 2 / n_ties).
    """
    battles = _battles("XY", [(0, 1, 2)] * n_ties)
    sandwich = R.compute_leaderboard(battles, ci="sandwich")
    z = R.z_score(0.95)
    for row in sandwich.rows:
        assert row.rating == pytest.approx(1000.0) and row.group == 1 and row.rank == 1
        half = (row.upper - row.lower) / 2
        assert half == pytest.approx(400 / math.log(10) * z / n_ties)
    # The bootstrap adds to each round one pseudo-battle won with p = 1/2: a round's share is
    # (n/2 + 1) / (n + 1) or its complement, a log-odds difference of +-ln((n + 2) / n), i.e.
    # +-0.34 for 5 ties (+-29 points per model) and +-1.10 for 1 tie (+-95 points).
    boot = R.compute_leaderboard(battles, rng=np.random.default_rng(0), rounds=400)
    for row in boot.rows:
        assert row.lower < 1000.0 - 25 and row.upper > 1000.0 + 25


# --- style control needs data ------------------------------------------------------------------


def test_style_control_on_a_handful_of_votes_is_not_available_with_the_reason() -> None:
    """Six votes once gave lists -13.4 (-14.5 to -12.3) and ratings of -5,500: now no numbers."""
    from leaderboard.engine.style import StyleUnavailableError

    rng = np.random.default_rng(22)
    battles = _battles("abc", [(0, 1, 0), (1, 2, 0), (2, 0, 0), (1, 0, 0), (0, 2, 1), (2, 1, 2)])
    styled = R.Battles(
        battles.names, battles.model_a, battles.model_b, battles.outcome,
        style_a=rng.poisson([300.0, 2, 4, 3], (6, 4)).astype(float),
        style_b=rng.poisson([300.0, 2, 4, 3], (6, 4)).astype(float),
        style_names=("answer_tokens", "headers", "lists", "bold"),
    )  # fmt: skip
    for ci in ("sandwich", "bootstrap"):
        with pytest.raises(StyleUnavailableError, match="6 battles among rated models"):
            R.compute_leaderboard(
                styled, ci=ci, style_control=True, rng=np.random.default_rng(0), rounds=20
            )


def test_a_style_feature_that_rarely_differs_is_left_out_with_the_reason() -> None:
    rng = np.random.default_rng(23)
    battles = simulate(rng, np.linspace(-1, 1, 6), 3000, style=np.array([0.5, 0, 0, 0]))
    # Both answers have the same number of list items except in 12 battles.
    battles.style_b[:, 2] = battles.style_a[:, 2]
    battles.style_b[:12, 2] += 1
    board = R.compute_leaderboard(battles, style_control=True, ci="sandwich")
    lists = board.style[2]
    assert lists.note == "left out: differs between the two answers in 12 battles (needs 30)"
    assert math.isnan(lists.value) and math.isnan(lists.lower)
    length = board.style[0]
    assert length.note == "" and length.lower < 0.5 < length.upper
