"""Who fights whom, `adaptive`: battles go to the models the arena knows least, by counts alone.

The beat task (``leaderboard.pipeline.sampling_plan``) calls :func:`adaptive_pair_probabilities`
with the number of valid battles between each two models in the pool; it returns an (n, n) matrix of
ordered-pair probabilities like :func:`arena.sampling.policy.pair_probabilities`. :func:`pair_cdf`
flattens it into a cumulative table and :func:`pair_draw` draws one battle from that table by binary
search: a few microseconds for 200 models, so the request path does no linear algebra.

Objective
---------
A model's strength starts with a prior worth ``prior_battles`` battles, and every battle adds
the same information, so after battle counts ``N`` the precision of the strengths (in units of
one battle's information) is

    P(N) = prior_battles * I + L(N),   L(N) = sum_{i<j} N_ij (e_i - e_j)(e_i - e_j)^T

If the next ``horizon`` battles are spread over unordered pairs with shares ``w``, the covariance
becomes ``Sigma(w) = (P(N) + horizon * L(w))^-1`` and the policy minimises the mean standard
deviation of the centred strengths, ``J(w) = mean_k sd_k(w)``. A model with few battles (a
newcomer) has a wide interval that shrinks most per battle, so it gets most battles until it has
caught up; in an arena whose models have about equal counts the optimum is close to uniform,
and a model that fell behind by chance is topped up. ``J`` is minimised over the simplex of pair
shares by a multiplicative algorithm for optimal designs (each pair's share is scaled by the
square root of its gradient relative to the mean). Finally a fraction ``floor`` of the mass
follows the `weighted` policy, so every pair of enabled models keeps at least ``floor`` times its
`weighted` probability; a model with weight 0 is never drawn.

Why counts and not ratings
--------------------------
An earlier version planned from the fitted strengths and their covariance (more battles for
close pairs, fewer for lopsided ones). Its likelihood is still the plain Bradley-Terry likelihood,
but the maximum-likelihood estimate was biased: a model whose estimate had drifted away from the
others looked "told apart" and got fewer battles, so its error was corrected more slowly than an
error towards the pack. In simulation (docs/sampling.md) the extreme models of a 12-model arena
came out 3.9-7.5 rating points further from the centre than under uniform sampling (t = 5-8).
With a plan that depends only on battle counts, the sequence of pairs is independent of every
outcome (the counts are functions of earlier pairs only), so given the pairs the outcomes are
ordinary Bradley-Terry draws and the fit has exactly the (small) bias it has for a fixed design
with those counts. What the counts-only plan gives up is the gain from avoiding lopsided pairs
(3-8% lower RMSE in that simulation). What would still break unbiasedness: dropping, redoing or
re-weighting a battle because of its vote, or pairing on something that moves outcomes but is not
in the model (prompt category, visitor) when strengths truly differ by it.

Pure: no Django, no I/O, no globals; randomness only through the passed generator.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from arena.sampling.policy import pair_probabilities

Float = NDArray[np.float64]

# Chosen by benchmarks/sampling.py: the floor protects nothing statistical (the plan ignores
# outcomes), it only guarantees every pair a share. At 0.05 a newcomer took 4% more votes than
# the best fixed boost (1000x), at 0.01 as many.
DEFAULT_FLOOR = 0.01
DEFAULT_HORIZON = 1000.0
DEFAULT_ITERATIONS = 60
# What is known about a model's strength before its first battle, in battles' worth of
# information: a newcomer's interval is wide, but finite, so the optimum is defined.
DEFAULT_PRIOR_BATTLES = 4.0


def adaptive_pair_probabilities(
    battles: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    floor: float = DEFAULT_FLOOR,
    horizon: float = DEFAULT_HORIZON,
    prior_battles: float = DEFAULT_PRIOR_BATTLES,
    iterations: int = DEFAULT_ITERATIONS,
) -> Float:
    """The probability of each ordered pair (left i, right j) under the adaptive policy.

    Parameters
    ----------
    battles : array of float, shape (n, n)
        Battles fought so far between each two models, in either order (``battles[i, j] +
        battles[j, i]`` is used; ``leaderboard.engine.pairs.battle_count_matrix`` halved, or the
        ordered counts). Only counts: the plan must not depend on outcomes (module docstring).
    weights : array of float, optional
        Operator weights as for the `weighted` policy (default all 1). A weight of 0 excludes the
        model; positive weights shape the floor share.
    floor : float, optional
        Fraction of battles drawn by the `weighted` policy, in ``(0, 1]``: every pair of enabled
        models keeps at least ``floor * pair_probabilities(weights)[i, j]``.
    horizon : float, optional
        Battles expected before the next plan; the design is optimised for that many.
    prior_battles : float, optional
        Information about a model before any battle, in battles (positive).
    iterations : int, optional
        Iterations of the multiplicative design algorithm.

    Returns
    -------
    numpy.ndarray
        (n, n) matrix with a zero diagonal, zero rows and columns for excluded models, summing to
        1 and symmetric (left/right is a fair coin).

    Raises
    ------
    arena.sampling.policy.NotEnoughModels
        Fewer than two models with a positive weight.
    ValueError
        Inputs of the wrong shape or out of range.
    """
    counts = np.asarray(battles, dtype=np.float64)
    n = counts.shape[0] if counts.ndim == 2 else -1
    if counts.shape != (n, n) or np.any(~np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"battles must be a square matrix of counts >= 0, got {counts.shape}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have {n} entries, got {w.shape}")
    if not 0 < floor <= 1:
        raise ValueError("floor must be in (0, 1]")
    if not horizon > 0 or not prior_battles > 0 or iterations < 0:
        raise ValueError("horizon and prior_battles must be positive, iterations non-negative")
    base = pair_probabilities(w.tolist())  # validates the weights, raises NotEnoughModels
    if floor == 1:
        return base
    idx = np.flatnonzero(w > 0)
    sub = counts[np.ix_(idx, idx)]
    design = _design(sub + sub.T, prior_battles, horizon, iterations)
    out = floor * base
    out[np.ix_(idx, idx)] += (1 - floor) * design
    total: Float = out / out.sum()
    return total


def _laplacian(m: int, i: NDArray[np.intp], j: NDArray[np.intp], h: Float) -> Float:
    lap = np.zeros((m, m))
    lap[i, j] = -h
    lap[j, i] = -h
    lap[np.diag_indices(m)] = np.bincount(i, h, m) + np.bincount(j, h, m)
    return lap


def _pair_var(s: Float, i: NDArray[np.intp], j: NDArray[np.intp]) -> Float:
    d = np.diag(s)
    out: Float = np.maximum(d[i] + d[j] - 2 * s[i, j], 1e-300)
    return out


def _design(counts: Float, prior_battles: float, horizon: float, iters: int) -> Float:
    """Shares of unordered pairs minimising ``J`` (module docstring), as a symmetric matrix."""
    m = counts.shape[0]
    i, j = np.triu_indices(m, 1)
    p0 = prior_battles * np.eye(m) + _laplacian(m, i, j, counts[i, j])
    share = np.full(i.size, 1 / i.size)
    for _ in range(iters):
        s = np.asarray(np.linalg.inv(p0 + horizon * _laplacian(m, i, j, share)), np.float64)
        row = s.mean(axis=1)
        sd = np.sqrt(np.maximum(np.diag(s) - 2 * row + row.mean(), 1e-300))
        a = 1 / (2 * m * sd)
        # dJ/dSigma = C diag(a) C with the centring C = I - 1/m, written out.
        g = np.diag(a) - (a[:, None] + a[None, :]) / m + a.sum() / m**2
        sgs: Float = s @ g @ s
        gain = _pair_var(sgs, i, j)
        share = share * np.sqrt(gain / (share @ gain))
        share /= share.sum()
    out = np.zeros((m, m))
    out[i, j] = share / 2
    out[j, i] = share / 2
    return out


def pair_cdf(probabilities: ArrayLike) -> Float:
    """The flattened cumulative table of an (n, n) pair probability matrix, for :func:`pair_draw`.

    Precompute it once per snapshot (or per change of the pool); it ends at exactly 1.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("probabilities must be a square matrix of finite numbers >= 0")
    if np.any(np.diag(p) > 0) or not p.sum() > 0:
        raise ValueError("probabilities need a zero diagonal and some positive mass")
    cdf: Float = np.cumsum(p.ravel())
    cdf /= cdf[-1]
    return cdf


def pair_draw(cumulative: Float, rng: np.random.Generator) -> tuple[int, int]:
    """Draw (left, right) model indices from a table made by :func:`pair_cdf`.

    One uniform number and one binary search: a few microseconds for 200 models. A cell of
    probability 0 is never drawn, since its cumulative value equals the one before it.
    """
    size = cumulative.size
    n = math.isqrt(size)
    while True:
        flat = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        if flat < size:  # rounding can put the number at the very end; draw again
            return flat // n, flat % n


def battle_shares(probabilities: ArrayLike) -> Float:
    """Expected fraction of battles each model takes part in (the shares sum to 2)."""
    p = np.asarray(probabilities, dtype=np.float64)
    shares: Float = p.sum(axis=0) + p.sum(axis=1)
    return shares
