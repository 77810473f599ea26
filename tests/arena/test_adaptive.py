from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from arena.adaptive import (
    adaptive_pair_probabilities,
    battle_shares,
    pair_cdf,
    pair_draw,
)
from arena.sampling import NotEnoughModels, pair_probabilities
from leaderboard.ratings import (
    aggregate_counts,
    comparison_structure,
    fit_bradley_terry,
    sandwich_covariance,
)

# Chi-square test level for "the draws follow the stated distribution": a correct sampler fails
# it one run in ten thousand.
ALPHA = 1e-4
# Sums and symmetric halves computed in floating point.
ATOL = 1e-12
# Relabelling reorders the sums of the design algorithm; results agree to rounding.
RTOL_RELABEL = 1e-7
# Mean over replicates of (estimate - truth) / standard error: its own standard error is
# 1 / sqrt(replicates), so 4 of those is a bound a correct fit crosses about once in 15,000 runs.
Z_BIAS = 4.0
# Request-path budget for one draw, far above what it takes (a few microseconds).
DRAW_SECONDS = 1e-3

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]


def snapshot(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Strengths and a plausible centred covariance for ``n`` rated models."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 0.8, n)
    theta -= theta.mean()
    a = rng.normal(size=(n, n)) * 0.05
    cov = a @ a.T / n + np.diag(rng.uniform(0.001, 0.01, n))
    centre = np.eye(n) - 1 / n
    return theta, centre @ cov @ centre


def test_matrix_invariants_hold() -> None:
    theta, cov = snapshot(12, 0)
    theta[3] = np.nan  # a new model
    weights = np.r_[np.ones(10), 0.0, 2.0]
    floor = 0.2
    p = adaptive_pair_probabilities(theta, cov, weights=weights, floor=floor)
    assert p.shape == (12, 12)
    assert p.sum() == pytest.approx(1.0, abs=ATOL)
    assert np.all(np.diag(p) == 0)
    assert np.allclose(p, p.T, atol=ATOL)  # left/right is a fair coin
    assert np.all(p[10] == 0) and np.all(p[:, 10] == 0), "a weight of 0 excludes the model"
    base = pair_probabilities(weights.tolist())
    assert np.all(p >= floor * base - ATOL), "every enabled pair keeps its floor"
    assert np.all(p[base > 0] > 0)


def test_floor_of_one_is_the_weighted_policy() -> None:
    theta, cov = snapshot(5, 1)
    p = adaptive_pair_probabilities(theta, cov, weights=[1, 2, 1, 1, 3], floor=1.0)
    assert np.allclose(p, pair_probabilities([1, 2, 1, 1, 3]))


def test_new_model_gets_a_large_share() -> None:
    theta, cov = snapshot(20, 2)
    theta[7] = np.nan
    shares = battle_shares(adaptive_pair_probabilities(theta, cov))
    assert shares.sum() == pytest.approx(2.0)
    assert shares[7] > 0.5, "the new model should be in most battles until it is rated"
    assert shares[7] > 3 * np.delete(shares, 7).max()


def test_wider_interval_gets_more_battles() -> None:
    n = 10
    theta = np.linspace(-1, 1, n)
    theta[[4, 5]] = 0.0  # two models at the same strength ...
    cov = np.diag(np.full(n, 0.002))
    cov[5, 5] = 0.05  # ... one known much less well
    shares = battle_shares(adaptive_pair_probabilities(theta, cov))
    assert shares[5] > 1.2 * shares[4]


def test_relabelling_models_permutes_the_matrix() -> None:
    theta, cov = snapshot(9, 3)
    theta[2] = np.nan
    weights = np.array([1, 1, 2, 1, 0, 1, 1, 3, 1.0])
    perm = np.random.default_rng(4).permutation(9)
    p = adaptive_pair_probabilities(theta, cov, weights=weights)
    q = adaptive_pair_probabilities(theta[perm], cov[np.ix_(perm, perm)], weights=weights[perm])
    assert np.allclose(q, p[np.ix_(perm, perm)], rtol=RTOL_RELABEL, atol=ATOL)


def test_shifting_all_strengths_changes_nothing() -> None:
    theta, cov = snapshot(8, 5)
    p = adaptive_pair_probabilities(theta, cov)
    q = adaptive_pair_probabilities(theta + 3.0, cov)
    assert np.allclose(p, q, rtol=RTOL_RELABEL, atol=ATOL)


def test_nothing_rated_yet_is_close_to_uniform() -> None:
    n = 6
    p = adaptive_pair_probabilities(np.full(n, np.nan), np.full((n, n), np.nan))
    assert np.allclose(p, pair_probabilities([1.0] * n), atol=ATOL)


def test_bad_inputs_are_clear_errors() -> None:
    theta, cov = snapshot(4, 6)
    with pytest.raises(NotEnoughModels):
        adaptive_pair_probabilities(theta, cov, weights=[1, 0, 0, 0])
    with pytest.raises(ValueError, match="floor"):
        adaptive_pair_probabilities(theta, cov, floor=0.0)
    with pytest.raises(ValueError, match="covariance"):
        adaptive_pair_probabilities(theta, cov[:3, :3])
    with pytest.raises(ValueError, match="diagonal"):
        pair_cdf(np.eye(3))


def test_draws_match_the_distribution() -> None:
    theta, cov = snapshot(6, 7)
    theta[0] = np.nan
    p = adaptive_pair_probabilities(theta, cov, weights=[1, 1, 1, 0, 1, 1], floor=0.3)
    cdf = pair_cdf(p)
    rng = np.random.default_rng(12345)
    counts = np.zeros_like(p)
    draws = 40_000
    for _ in range(draws):
        left, right = pair_draw(cdf, rng)
        counts[left, right] += 1
    assert counts[p == 0].sum() == 0, "a pair of probability 0 was drawn"
    result = stats.chisquare(counts[p > 0], p[p > 0] * draws)
    assert result.pvalue > ALPHA


def test_draw_is_fast_for_200_models() -> None:
    theta, cov = snapshot(200, 8)
    cdf = pair_cdf(adaptive_pair_probabilities(theta, cov, iterations=5))
    rng = np.random.default_rng(9)
    draws = 2000
    start = time.perf_counter()
    for _ in range(draws):
        pair_draw(cdf, rng)
    assert (time.perf_counter() - start) / draws < DRAW_SECONDS


def fit(a: np.ndarray, b: np.ndarray, o: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Strengths (NaN when not rated) and sandwich covariance, as the snapshot task computes."""
    counts = aggregate_counts(a, b, o, n)
    sub, index = counts.restrict(comparison_structure(counts).identifiable)
    theta, cov = np.full(n, np.nan), np.full((n, n), np.nan)
    theta[index] = th = fit_bradley_terry(sub)
    cov[np.ix_(index, index)] = sandwich_covariance(sub, th)
    return theta, cov


def simulate(
    truth: np.ndarray,
    policy: Policy,
    votes: int,
    step: int,
    rng: np.random.Generator,
    keep: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Battles in blocks of ``step`` from ``policy(theta, cov)`` refitted after each block."""
    n = truth.size
    a, b, o = (np.zeros(0, dtype=np.int64) for _ in range(3))
    theta, cov = np.full(n, np.nan), np.full((n, n), np.nan)
    for _ in range(votes // step):
        p = policy(theta, cov).ravel()
        left, right = np.divmod(rng.choice(n * n, size=step, p=p / p.sum()), n)
        outcome = (rng.random(step) >= expit(truth[left] - truth[right])).astype(np.int64)
        if keep is not None:
            m = keep(left, right, outcome)
            left, right, outcome = left[m], right[m], outcome[m]
        a, b, o = np.r_[a, left], np.r_[b, right], np.r_[o, outcome]
        theta, cov = fit(a, b, o, n)
    return theta, cov


def adaptive(step: int) -> Policy:
    def policy(theta: np.ndarray, cov: np.ndarray) -> np.ndarray:
        return adaptive_pair_probabilities(theta, cov, horizon=float(step))

    return policy


def uniform(theta: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return pair_probabilities([1.0] * theta.size)


def bias_z(keep: Callable[..., np.ndarray] | None, replicates: int, seed: int) -> np.ndarray:
    """Mean over replicates of each model's (estimate - truth) / standard error."""
    truth = np.array([-1.2, -0.5, 0.0, 0.1, 0.4, 1.2])
    rng = np.random.default_rng(seed)
    z = []
    for _ in range(replicates):
        theta, cov = simulate(truth, adaptive(500), 3000, 500, rng, keep)
        z.append((theta - truth) / np.sqrt(np.diag(cov)))
    return np.asarray(np.mean(z, axis=0))


def test_ratings_stay_unbiased_under_adaptive_sampling() -> None:
    replicates = 30
    z = bias_z(None, replicates, seed=10)
    assert np.all(np.abs(z) < Z_BIAS / math.sqrt(replicates)), z


def test_selecting_on_outcomes_is_caught_by_the_same_check() -> None:
    """The check has power: dropping half the upsets (an outcome-dependent rule) biases the fit."""
    replicates = 30
    truth = np.array([-1.2, -0.5, 0.0, 0.1, 0.4, 1.2])
    coin = np.random.default_rng(11)

    def keep(left: np.ndarray, right: np.ndarray, outcome: np.ndarray) -> np.ndarray:
        upset = np.where(outcome == 0, truth[left] < truth[right], truth[right] < truth[left])
        return ~upset | (coin.random(left.size) < 0.5)

    z = bias_z(keep, replicates, seed=10)
    assert np.max(np.abs(z)) > Z_BIAS / math.sqrt(replicates), z


def test_adaptive_narrows_intervals_faster_than_uniform() -> None:
    # A wide arena (ratings 600 to 1400): uniform spends many battles on foregone conclusions.
    truth = np.linspace(-400, 400, 16) * math.log(10) / 400
    widths = {}
    for name, policy in (("uniform", uniform), ("adaptive", adaptive(500))):
        rng = np.random.default_rng(12)
        runs = [simulate(truth, policy, 5000, 500, rng)[1] for _ in range(4)]
        widths[name] = np.mean([np.sqrt(np.diag(cov)).mean() for cov in runs])
    # 5% narrower at equal votes is about 10% fewer votes for equal width.
    assert widths["adaptive"] < 0.95 * widths["uniform"], widths
