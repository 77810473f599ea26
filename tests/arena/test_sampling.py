from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from arena.sampling.policy import NotEnoughModels, pair_probabilities, pair_sample

# Chi-square test level for "the draws follow the stated distribution": a correct sampler fails
# it one run in ten thousand.
ALPHA = 1e-4


def test_pair_probabilities_follow_the_product_of_weights() -> None:
    p = pair_probabilities([1.0, 2.0, 3.0])
    assert np.allclose(np.diag(p), 0.0)
    assert p.sum() == pytest.approx(1.0)
    assert np.allclose(p, p.T)  # left/right is a fair coin
    # Unordered pair {1, 2} has weight 2*3 = 6 out of 1*2 + 1*3 + 2*3 = 11.
    assert p[1, 2] + p[2, 1] == pytest.approx(6 / 11)


def test_draws_match_the_distribution() -> None:
    weights = [1.0, 2.0, 0.5, 4.0]
    rng = np.random.default_rng(12345)
    n = len(weights)
    counts = np.zeros((n, n))
    draws = 40_000
    for _ in range(draws):
        left, right = pair_sample(weights, rng)
        counts[left, right] += 1
    expected = pair_probabilities(weights) * draws
    off_diagonal = ~np.eye(n, dtype=bool)
    assert counts[~off_diagonal].sum() == 0, "a model met itself"
    result = stats.chisquare(counts[off_diagonal], expected[off_diagonal])
    assert result.pvalue > ALPHA


def test_left_and_right_are_balanced_for_each_model() -> None:
    rng = np.random.default_rng(7)
    lefts = np.zeros(3)
    for _ in range(9000):
        left, _ = pair_sample([1.0, 1.0, 1.0], rng)
        lefts[left] += 1
    result = stats.chisquare(lefts)
    assert result.pvalue > ALPHA


def test_zero_weight_models_are_never_drawn() -> None:
    rng = np.random.default_rng(1)
    drawn = {i for _ in range(2000) for i in pair_sample([1.0, 0.0, 1.0, 1.0], rng)}
    assert drawn == {0, 2, 3}


def test_fewer_than_two_weighted_models_is_a_clear_error() -> None:
    with pytest.raises(NotEnoughModels, match="at least two"):
        pair_probabilities([1.0, 0.0])
    with pytest.raises(ValueError, match=">= 0"):
        pair_probabilities([1.0, -1.0, 2.0])
