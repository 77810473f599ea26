"""Who fights whom: the pair sampling policy.

`weighted`: an unordered pair {i, j} (i != j) is drawn with probability proportional to
w_i * w_j, then the left/right order is a fair coin. A model's share of battles therefore grows
with its weight, a weight of 0 takes a model out of the pool, and a model never meets itself.
Pure: no Django, no I/O; randomness only through the passed generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class NotEnoughModels(ValueError):
    """Fewer than two models with a positive weight: no battle can be drawn."""


def pair_probabilities(weights: Sequence[float]) -> np.ndarray:
    """The probability of each ordered pair (left i, right j) under the weighted policy.

    Returns an (n, n) matrix with a zero diagonal that sums to 1; each unordered pair's mass is
    split evenly between its two orders.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be a 1-d sequence of finite numbers >= 0")
    if np.count_nonzero(w) < 2:
        raise NotEnoughModels("at least two enabled models with a positive sampling weight")
    pair = np.outer(w, w)
    np.fill_diagonal(pair, 0.0)
    probabilities: np.ndarray = pair / pair.sum()
    return probabilities


def pair_sample(weights: Sequence[float], rng: np.random.Generator) -> tuple[int, int]:
    """Draw (left, right) indices into `weights` under the weighted policy."""
    probabilities = pair_probabilities(weights).ravel()
    flat = int(rng.choice(probabilities.size, p=probabilities))
    n = len(weights)
    return flat // n, flat % n
