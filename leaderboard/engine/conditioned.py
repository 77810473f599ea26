"""A ranking conditioned on one prompt: Bradley-Terry with battles weighted by prompt similarity.

Pure numpy (conventions: :mod:`leaderboard.engine.ratings`). Each battle gets the weight
``exp(-(1 - cos) / bandwidth)`` of the cosine similarity between its prompt's vector and the
query's, normalised to a largest weight of 1; weights below ``FLOOR`` are dropped (they would
change no number by more than that share). The fit and its intervals are the engine's own:
:func:`leaderboard.engine.ratings.compute_leaderboard` aggregates weighted battles, fits the
weighted likelihood, and its sandwich intervals use the weighted Hessian as bread and the sum of
``w**2`` times the score outer products as meat, which is the robust covariance of a weighted
M-estimator. Scaling every weight by a constant changes neither the fit nor the sandwich.

What the fit estimates: the strengths that best explain the kernel-weighted mixture of battles.
When the kernel puts nearly all weight on prompts of one topic, that is the topic's own order;
weight that leaks onto other topics biases it towards theirs (docs/topics.md measures how much).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from leaderboard.engine.pairs import Battles, Float
from leaderboard.engine.ratings import Leaderboard, compute_leaderboard

BANDWIDTH = 0.07
FLOOR = 1e-4
MIN_EFFECTIVE = 200.0


def similarity_weights(vectors: Float, query: Float, *, bandwidth: float = BANDWIDTH) -> Float:
    """Kernel weights ``exp(-(1 - cos) / bandwidth)`` scaled to a maximum of 1, floored at FLOOR.

    Parameters
    ----------
    vectors : array (n, d)
        Unit vectors of the battles' prompts.
    query : array (d,)
        Unit vector of the query prompt.
    bandwidth : float
        Larger: more distant prompts count more.

    Returns
    -------
    numpy.ndarray
        Weights in [0, 1]; all zero when the query has no direction (a zero vector).
    """
    if bandwidth <= 0:
        raise ValueError("bandwidth must be positive")
    q = np.asarray(query, dtype=np.float64)
    if not np.any(q) or len(vectors) == 0:
        return np.zeros(len(vectors))
    cos = np.asarray(vectors, dtype=np.float64) @ q
    w = np.exp((cos - cos.max()) / bandwidth)
    w[w < FLOOR] = 0.0
    out: Float = w
    return out


def effective_size(weights: Float) -> float:
    """Kish's effective number of battles, ``(sum w)**2 / sum w**2`` (0 without weight)."""
    w = np.asarray(weights, dtype=np.float64)
    sq = float(w @ w)
    return float(w.sum() ** 2 / sq) if sq > 0 else 0.0


@dataclass(frozen=True)
class Conditioned:
    """The conditioned leaderboard (None below ``min_effective``) and its effective size."""

    board: Leaderboard | None
    effective: float
    n_weighted: int


def conditioned_leaderboard(
    names: tuple[str, ...],
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    weights: Float,
    *,
    min_effective: float = MIN_EFFECTIVE,
    confidence: float = 0.95,
) -> Conditioned:
    """Weighted Bradley-Terry with sandwich intervals on the battles with positive weight.

    Returns
    -------
    Conditioned
        ``board`` is None when the effective size is below ``min_effective``.
    """
    w = np.asarray(weights, dtype=np.float64)
    keep = w > 0
    n_eff = effective_size(w)
    if n_eff < min_effective:
        return Conditioned(None, n_eff, int(keep.sum()))
    # Normalised to a mean weight of 1 among the kept battles: numbers of the order of battles.
    wk = w[keep] / w[keep].mean()
    battles = Battles(names, model_a[keep], model_b[keep], outcome[keep], weight=wk)
    board = compute_leaderboard(battles, method="bt", ci="sandwich", confidence=confidence)
    return Conditioned(board, n_eff, int(keep.sum()))
