"""Who fights whom, `adaptive`: pairs chosen to shrink the uncertainty that matters.

The leaderboard snapshot task calls :func:`adaptive_pair_probabilities` once per snapshot with the
current strengths and their covariance; it returns an (n, n) matrix of ordered-pair probabilities
like :func:`arena.sampling.pair_probabilities`. :func:`pair_cdf` flattens it into a cumulative
table and :func:`pair_draw` draws one battle from that table by binary search: a few microseconds
for 200 models, so the request path does no linear algebra.

Objective
---------
Strengths are natural-log Bradley-Terry strengths (``leaderboard.ratings`` conventions), with a
Gaussian approximation ``N(theta, Sigma)`` of what is known about them. A battle between ``i``
and ``j`` adds ``I_ij * d d^T`` to the precision, ``d = e_i - e_j``, where ``I_ij`` is the
expected Fisher information of one outcome, ``E[p (1 - p)]`` with ``p = sigmoid(theta_i -
theta_j)`` averaged over the uncertainty of the difference. If the next ``horizon`` battles are
spread over unordered pairs with shares ``w``, the covariance becomes

    Sigma(w) = (Sigma^-1 + horizon * sum_ij w_ij I_ij d d^T)^-1

and the policy minimises

    J(w) = mean_k sd_k(w) + order_weight * sum_{k<l} q_kl sd_kl(w) / sum_{k<l} q_kl

- ``sd_k``: standard deviation of model k's centred strength, so the first term is the mean
  interval width (in strength units, up to the factor 2 z); a new model with a wide interval
  gains most from each battle, so it gets a large share until its interval tightens.
- ``sd_kl``: standard deviation of ``theta_k - theta_l``; ``q_kl = 2 Phi(-|theta_k - theta_l| /
  sd_kl)`` is near 1 for pairs whose order is still open (overlapping intervals) and near 0 for
  pairs already told apart, so the second term is the mean uncertainty of the open comparisons.

``J`` is minimised over the simplex of pair shares by a multiplicative algorithm for optimal
designs (each pair's share is scaled by the square root of its gradient relative to the mean);
the gradient for pair ``(i, j)`` is ``horizon * I_ij * d^T Sigma G Sigma d`` with ``G`` the
derivative of ``J`` with respect to ``Sigma``. Finally a fraction ``floor`` of the mass follows
the `weighted` policy, so every pair of enabled models keeps at least ``floor`` times its
`weighted` probability; a model with weight 0 is never drawn.

Why the ratings stay unbiased
-----------------------------
The probability of the observed battles factorises as ``prod_t P(pair_t | history_{t-1}) *
P(outcome_t | pair_t, theta)``. The pair probabilities come from earlier data only (the last
snapshot), never from ``theta`` itself or from the outcome of the battle being drawn, so as a
function of ``theta`` the likelihood is the plain Bradley-Terry likelihood of the observed
battles: the design is ignorable and the same maximum-likelihood fit applies whatever the pair
distribution (this is the likelihood principle; the score is a martingale, so the usual
consistency and normal intervals carry over while every pair keeps a positive share, which the
floor guarantees). What would break it:

- selecting on outcomes: dropping, redoing or re-weighting a battle because of its vote
  (e.g. re-asking when the vote was a tie), or choosing the pair after seeing the answers;
- pairing on something that also moves the outcome but is not in the model (the prompt's
  category, the visitor) when strengths really differ by it: then Bradley-Terry is misspecified
  and its fit is an average whose weights depend on the pair distribution. Fit such effects
  explicitly (categories, style control) rather than rely on the pair mix;
- a floor of zero, with which some pairs may stop being observed and errors need not shrink.

Pure: no Django, no I/O, no globals; randomness only through the passed generator.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, ndtr

from arena.sampling import pair_probabilities

Float = NDArray[np.float64]

DEFAULT_FLOOR = 0.1
DEFAULT_HORIZON = 1000.0
DEFAULT_ITERATIONS = 60
# Chosen by benchmarks/sampling.py: higher values order close models sooner but leave the
# extremes with few battles, wide intervals and under-covering sandwich intervals.
DEFAULT_ORDER_WEIGHT = 0.3
# Prior standard deviation of an unrated model's strength when the rated ones are too few to
# measure their spread (natural-log units; 1.0 is about 174 rating points).
FALLBACK_NEW_MODEL_SD = 1.0
# Relative size of the ridge that keeps the prior precision invertible; its effect on the shares
# is far below the floor.
_RIDGE = 1e-9


def adaptive_pair_probabilities(
    theta: ArrayLike,
    covariance: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    floor: float = DEFAULT_FLOOR,
    horizon: float = DEFAULT_HORIZON,
    order_weight: float = DEFAULT_ORDER_WEIGHT,
    new_model_sd: float | None = None,
    iterations: int = DEFAULT_ITERATIONS,
) -> Float:
    """The probability of each ordered pair (left i, right j) under the adaptive policy.

    Parameters
    ----------
    theta : array of float, shape (n,)
        Current natural-log strengths (e.g. ``Leaderboard.theta``). NaN marks a model that is not
        rated: new, absent from the snapshot or not identifiable. Only differences matter.
    covariance : array of float, shape (n, n)
        Covariance of ``theta`` (``leaderboard.ratings.sandwich_covariance`` or the covariance
        of bootstrap samples). Rows and columns of unrated models are ignored and may be NaN.
    weights : array of float, optional
        Operator weights as for the `weighted` policy (default all 1). A weight of 0 excludes the
        model; positive weights shape the floor share.
    floor : float, optional
        Fraction of battles drawn by the `weighted` policy, in ``(0, 1]``: every pair of enabled
        models keeps at least ``floor * pair_probabilities(weights)[i, j]``.
    horizon : float, optional
        Battles expected before the next snapshot; the design is optimised for that many.
    order_weight : float, optional
        Weight of the open-comparison term against the mean interval width term.
    new_model_sd : float, optional
        Prior standard deviation of an unrated model's strength around the mean rated strength
        (default: the spread of the rated strengths, or 1.0 with fewer than three rated).
    iterations : int, optional
        Iterations of the multiplicative design algorithm.

    Returns
    -------
    numpy.ndarray
        (n, n) matrix with a zero diagonal, zero rows and columns for excluded models, summing to
        1 and symmetric (left/right is a fair coin).

    Raises
    ------
    arena.sampling.NotEnoughModels
        Fewer than two models with a positive weight.
    ValueError
        Inputs of the wrong shape or out of range.
    """
    th = np.asarray(theta, dtype=np.float64)
    n = th.size
    cov = np.asarray(covariance, dtype=np.float64)
    if th.ndim != 1 or cov.shape != (n, n):
        raise ValueError(f"theta must be 1-d and covariance ({n}, {n}), got {cov.shape}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have {n} entries, got {w.shape}")
    if not 0 < floor <= 1:
        raise ValueError("floor must be in (0, 1]")
    if not horizon > 0 or iterations < 0 or order_weight < 0:
        raise ValueError("horizon must be positive, iterations and order_weight non-negative")
    base = pair_probabilities(w.tolist())  # validates the weights, raises NotEnoughModels
    if floor == 1:
        return base
    idx = np.flatnonzero(w > 0)
    mean, prior = _prior(th[idx], cov[np.ix_(idx, idx)], new_model_sd)
    design = _design(mean, prior, horizon, order_weight, iterations)
    out = floor * base
    out[np.ix_(idx, idx)] += (1 - floor) * design
    total: Float = out / out.sum()
    return total


def _prior(theta: Float, cov: Float, new_model_sd: float | None) -> tuple[Float, Float]:
    """Mean and covariance of all enabled models; unrated ones get an independent wide prior."""
    m = theta.size
    diag = np.diag(cov)
    rated = np.isfinite(theta) & np.isfinite(diag) & (diag >= 0)
    r = np.flatnonzero(rated)
    if np.any(~np.isfinite(cov[np.ix_(r, r)])):
        raise ValueError("covariance of rated models must be finite")
    centre = float(theta[r].mean()) if r.size else 0.0
    if new_model_sd is None:
        new_model_sd = float(theta[r].std()) if r.size >= 3 else FALLBACK_NEW_MODEL_SD
        new_model_sd = max(new_model_sd, 0.1)
    if not new_model_sd > 0:
        raise ValueError("new_model_sd must be positive")
    mean = np.where(rated, theta, centre) - centre
    prior = np.zeros((m, m))
    block = cov[np.ix_(r, r)]
    prior[np.ix_(r, r)] = (block + block.T) / 2
    prior[~rated, ~rated] = new_model_sd**2
    return mean, prior


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


def _design(mean: Float, prior: Float, horizon: float, order_weight: float, iters: int) -> Float:
    """Shares of unordered pairs minimising ``J`` (module docstring), as a symmetric matrix."""
    m = mean.size
    i, j = np.triu_indices(m, 1)
    # The common level of all strengths is irrelevant: give it a finite variance so the prior
    # precision exists (battles carry no information about it, and J ignores it).
    scale = max(float(np.mean(np.diag(prior))), 1e-12)
    s0 = prior + scale * (np.ones((m, m)) + _RIDGE * np.eye(m))
    p0 = np.linalg.inv(s0)
    var0 = _pair_var(prior, i, j)
    diff = np.abs(mean[i] - mean[j])
    # Expected information of one outcome, E[sigmoid'(x)] for x ~ N(diff, var0), by the probit
    # approximation.
    kappa = 1 / np.sqrt(1 + math.pi * var0 / 8)
    info = kappa * expit(kappa * diff) * expit(-kappa * diff)
    q = 2 * ndtr(-diff / np.sqrt(var0))
    share = np.full(i.size, 1 / i.size)
    for _ in range(iters):
        s = np.asarray(np.linalg.inv(p0 + horizon * _laplacian(m, i, j, share * info)), np.float64)
        row = s.mean(axis=1)
        sd = np.sqrt(np.maximum(np.diag(s) - 2 * row + row.mean(), 1e-300))
        a = 1 / (2 * m * sd)
        # g = C diag(a) C with the centring C = I - 1/m, written out.
        g = np.diag(a) - (a[:, None] + a[None, :]) / m + a.sum() / m**2
        if order_weight > 0 and q.sum() > 0:
            b = order_weight * q / (2 * np.sqrt(_pair_var(s, i, j)) * q.sum())
            g += _laplacian(m, i, j, b)
        sgs: Float = s @ g @ s
        gain = info * _pair_var(sgs, i, j)
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
