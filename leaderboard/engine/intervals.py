"""Intervals on Bradley-Terry strengths: the anchor, the sandwich and the bootstrap.

Pure numpy/scipy (conventions: :mod:`leaderboard.engine.ratings`). Randomness comes only from a
passed ``np.random.Generator``.

The anchor. An unpenalised fit determines only differences of strengths within a group, so a
rating needs an anchor, and an interval is an interval for "strength minus anchor". Both the point
estimate and every interval here use the same anchor, the battle-weighted mean of the group
(:func:`centre_strengths`, weights from :func:`anchor_weights`): the weights are the full data's,
fixed, so the estimand ``theta_k - sum_m w_m theta_m`` is one well-defined number per model.
Why not the plain mean: a model with a handful of battles has a wild strength (a bootstrap
resample in which it only won puts it at +20), and under a plain mean that noise moves the anchor
of everyone; with its small weight it moves the anchor by a small amount, honestly counted.
Centring the point estimate on the plain mean while the bootstrap rounds were centred on the
battle-weighted mean left the difference of the two anchors out of every interval (bootstrap
coverage 92.8% on average, single models down to 91.4%, in 10-model arenas with one thin model:
``benchmarks/coverage.py``); now both are the same (94.9-95.2%).

Pairs whose battles all ended the same way (all ties, or all won by one side) show no variance:
resampling them always gives the same share, and their empirical score residuals are all equal,
so a pair of models that only tied would get the interval [0, 0]. Both interval methods count such
a pair as carrying at least the variance of one decisive battle at the fitted odds
(``w^2 * p * (1 - p)``): the sandwich adds it to the pair's meat, the bootstrap adds to each round
one pseudo-battle of the pair won with the fitted probability (mean zero, so no bias). Pairs with
two kinds of outcome are untouched, so plentiful data are unaffected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import expit, ndtri

from leaderboard.engine.bt import ConvergenceError, newton_fit
from leaderboard.engine.pairs import (
    PAIR_SCORE,
    Float,
    Int,
    PairCounts,
    PairTotals,
    anchor_groups,
    component_labels,
    pair_laplacian,
    pair_totals,
)

Progress = Callable[[int, int], None]

# Bootstrap rounds of an unpenalised fit add this ridge (times the round's battle weight) so that a
# resample in which a model only wins stays finite; its effect on other fits is below 1e-9.
BOOTSTRAP_RIDGE = 1e-9
CHORD_MAX_ITER = 40
_CHUNK_ROUNDS = 25


def z_score(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    return float(ndtri(0.5 + confidence / 2))


def anchor_weights(counts: PairCounts) -> Float:
    """Battle weight each model took part in: the weights of the anchor (module docstring)."""
    p = pair_totals(counts)
    n = counts.n_models
    w = np.bincount(p.i, p.t, n) + np.bincount(p.j, p.t, n)
    return np.asarray(w, dtype=np.float64)


def anchor_projection(labels: Int, weights: Float) -> Float:
    """Matrix ``P`` with ``P @ theta`` centred at weighted mean 0 within each group of ``labels``.

    A group without weight is centred at its plain mean.
    """
    n = labels.size
    same = (labels[:, None] == labels[None, :]).astype(np.float64)
    w = np.asarray(weights, dtype=np.float64)
    total = same @ w
    share = np.where(total[:, None] > 0, same * w[None, :] / np.maximum(total, 1e-300)[:, None], 0)
    plain = same / same.sum(axis=1, keepdims=True)
    proj: Float = np.eye(n) - np.where((total > 0)[:, None], share, plain)
    return proj


def centre_strengths(theta: Float, labels: Int, weights: Float) -> Float:
    """``theta`` shifted within each group of ``labels`` to weighted mean 0 (the anchor).

    The same as ``anchor_projection(labels, weights) @ theta``, without the matrix.
    """
    t = np.asarray(theta, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    total = np.bincount(labels, w)
    plain = np.bincount(labels, t) / np.bincount(labels)
    mean = np.where(total > 0, np.bincount(labels, w * t) / np.maximum(total, 1e-300), plain)
    out: Float = t - mean[labels]
    return out


def _one_sided_pairs(counts: PairCounts, p: PairTotals) -> tuple[Int, Float]:
    """Pairs whose battles all had one outcome, and the mean battle weight of each pair."""
    if not p.starts.size:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    same = np.minimum.reduceat(counts.outcome, p.starts) == np.maximum.reduceat(
        counts.outcome, p.starts
    )
    mean_weight = p.t / np.maximum(np.add.reduceat(counts.count, p.starts), 1)
    return np.flatnonzero(same).astype(np.int64), mean_weight


def sandwich_covariance(
    counts: PairCounts, theta: Float, *, l2: float = 0.0, anchor: Float | None = None
) -> Float:
    """Robust covariance ``H^-1 G H^-1`` of the strengths (per-battle score outer products in G).

    With ``l2 == 0``, ``H^-1`` is the inverse restricted to strengths centred in each group, and
    with ``anchor`` (weights, see :func:`anchor_weights`) the covariance is that of strengths
    centred at the weighted mean instead. A pair with one kind of outcome counts at least one
    decisive battle's variance (module docstring).
    """
    n = counts.n_models
    p = pair_totals(counts)
    sig = expit(theta[p.i] - theta[p.j])
    h = pair_laplacian(n, p.i, p.j, p.t * sig * (1 - sig), l2)
    pair_of_cell = np.repeat(np.arange(p.i.size), np.diff(np.append(p.starts, counts.i.size)))
    resid = PAIR_SCORE[counts.outcome] - sig[pair_of_cell]
    v = np.asarray(
        np.bincount(pair_of_cell, counts.count * counts.unit_weight**2 * resid**2, p.i.size),
        dtype=np.float64,
    )
    flat, mean_weight = _one_sided_pairs(counts, p)
    v[flat] += mean_weight[flat] ** 2 * sig[flat] * (1 - sig[flat])
    g = pair_laplacian(n, p.i, p.j, v, 0.0)
    labels = component_labels(n, p.i, p.j)
    hinv = np.linalg.inv(anchor_groups(h, labels) if l2 == 0 else h)
    cov: Float = hinv @ g @ hinv
    if l2 == 0 and anchor is not None:
        proj = anchor_projection(labels, anchor)
        cov = proj @ cov @ proj.T
    return cov


def sandwich_intervals(
    counts: PairCounts,
    theta: Float,
    *,
    l2: float = 0.0,
    confidence: float = 0.95,
    anchor: Float | None = None,
) -> tuple[Float, Float]:
    """Normal intervals ``theta -/+ z * se`` from :func:`sandwich_covariance` (strength units)."""
    cov = sandwich_covariance(counts, theta, l2=l2, anchor=anchor)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    z = z_score(confidence)
    return theta - z * se, theta + z * se


@dataclass(frozen=True)
class Intervals:
    """Bootstrap interval bounds (strength units) and the per-round strengths (rounds, models)."""

    lower: Float
    upper: Float
    samples: Float


def run_rounds(
    rounds: int,
    rng: np.random.Generator,
    chunk: Callable[[np.random.Generator, int], Float],
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Float:
    """Run ``chunk(child_rng, n_rounds)`` over fixed blocks of rounds on a thread pool.

    Each block has its own child generator, so results depend on ``rng`` only, not on ``workers``.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    sizes = [min(_CHUNK_ROUNDS, rounds - s) for s in range(0, rounds, _CHUNK_ROUNDS)]
    children = rng.spawn(len(sizes))
    workers = min(workers or os.cpu_count() or 1, len(sizes))
    out, done = [], 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for block in pool.map(chunk, children, sizes):
            out.append(block)
            done += block.shape[0]
            if progress is not None:
                progress(done, rounds)
    return np.concatenate(out)


def multinomial_rows(gen: np.random.Generator, n: int, prob: Float, cdf: Float, size: int) -> Int:
    """``size`` exact Multinomial(n, prob) draws; ``cdf`` is ``cumsum(prob)``.

    Independent Poisson(lam * prob) counts with sum s are Multinomial(s, prob) given s, so adding
    Multinomial(n - s, prob) (drawn here as n - s categorical draws) gives Multinomial(n, prob)
    whatever s is; rows with s > n are redrawn. With lam two standard deviations below n almost
    all of the work is Poisson draws, which numpy runs without holding the GIL, unlike its
    ``multinomial``, so bootstrap threads run in parallel.
    """
    k = prob.size
    lam = max(n - 2.0 * math.sqrt(n), 0.0) * prob
    draws = gen.poisson(lam, size=(size, k))
    over = draws.sum(axis=1) > n
    while over.any():
        draws[over] = gen.poisson(lam, size=(int(over.sum()), k))
        over = draws.sum(axis=1) > n
    rest = n - draws.sum(axis=1)
    u = gen.random(int(rest.sum())) * cdf[-1]
    cells = np.minimum(np.searchsorted(cdf, u, side="right"), k - 1)
    rows = np.repeat(np.arange(size), rest)
    draws += np.bincount(rows * k + cells, minlength=size * k).reshape(size, k)
    return draws


def bootstrap_intervals(
    counts: PairCounts,
    theta: Float,
    *,
    rng: np.random.Generator,
    rounds: int = 1000,
    l2: float = 0.0,
    confidence: float = 0.95,
    tol: float = 1e-8,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Intervals:
    """Percentile bootstrap by multinomial resampling of the aggregated cell counts.

    Each round refits from ``theta`` (the full-data fit) by Newton steps with the full-data Hessian,
    falling back to damped Newton for rounds that do not converge that way. Unpenalised rounds carry
    a ridge of 1e-9 times their battle weight so that resamples with one-sided results stay finite.
    Unpenalised rounds are anchored within each group so that their battle-weighted mean
    (:func:`anchor_weights`) equals that of ``theta``: pass ``theta`` centred by
    :func:`centre_strengths` (as :func:`leaderboard.engine.ratings.compute_leaderboard` does) and
    point estimate and rounds share one anchor. Pairs with one kind of outcome get one pseudo-battle
    per round (module docstring).
    """
    z_score(confidence)
    n, total = counts.n_models, int(counts.count.sum())
    p = pair_totals(counts)
    labels = component_labels(n, p.i, p.j)
    prob = counts.count / max(total, 1)
    wy = counts.unit_weight * PAIR_SCORE[counts.outcome]
    sig = expit(theta[p.i] - theta[p.j])
    ridge = BOOTSTRAP_RIDGE if l2 == 0 else 0.0
    lam_full = l2 + ridge * float(p.t.sum())
    h = pair_laplacian(n, p.i, p.j, p.t * sig * (1 - sig), lam_full)
    hinv = np.linalg.inv(anchor_groups(h, labels) if l2 == 0 else h)
    # Re-anchoring a round: shift each group by the weighted mean of its change from theta.
    onehot = (labels[:, None] == np.arange(labels.max(initial=0) + 1)).astype(np.float64)
    weights = anchor_weights(counts)
    group_weight = np.maximum(weights @ onehot, 1e-300)
    flat, mean_weight = _one_sided_pairs(counts, p)
    rows = np.arange(p.i.size)
    inc = sparse.csr_matrix(
        (np.r_[np.ones(rows.size), -np.ones(rows.size)], (np.r_[rows, rows], np.r_[p.i, p.j])),
        shape=(rows.size, n),
    )

    cdf = np.cumsum(prob)

    def chunk(gen: np.random.Generator, m: int) -> Float:
        c = multinomial_rows(gen, total, prob, cdf, m)
        s = np.add.reduceat(c * wy, p.starts, axis=1)
        t = np.add.reduceat(c * counts.unit_weight, p.starts, axis=1)
        if flat.size:
            won = gen.random((m, flat.size)) < sig[flat]
            s[:, flat] += mean_weight[flat] * won
            t[:, flat] += mean_weight[flat]
        tot = np.maximum(t.sum(axis=1), 1e-300)
        lam = (l2 + ridge * tot)[:, None]
        th = np.tile(theta, (m, 1))
        todo = np.arange(m)
        for _ in range(CHORD_MAX_ITER):
            x = th[todo]
            r = t[todo] * expit(x[:, p.i] - x[:, p.j]) - s[todo]
            g = np.asarray(r @ inc) + lam[todo] * x
            late = np.max(np.abs(g), axis=1) / tot[todo] >= tol
            if not late.any():
                todo = todo[:0]
                break
            # einsum, not BLAS: threaded BLAS on a small matrix stalls on a busy 2-core machine.
            th[todo[late]] = x[late] - np.einsum("rk,kj->rj", g[late], hinv)
            todo = todo[late]
        for k in todo:
            pk = PairTotals(n, p.i, p.j, p.starts, s[k], t[k])
            th[k], gnorm = newton_fit(
                pk, theta, l2=float(lam[k, 0]), labels=labels if l2 == 0 else None,
                tol=tol, max_iter=200,
            )  # fmt: skip
            if not gnorm < tol:
                raise ConvergenceError(f"bootstrap round did not converge (gradient {gnorm:.2e})")
        if l2 == 0:
            shift = np.einsum("rk,kc->rc", (th - theta) * weights, onehot) / group_weight
            th -= shift[:, labels]
        return th

    samples = run_rounds(rounds, rng, chunk, workers=workers, progress=progress)
    lower, upper = percentile_bounds(samples, confidence)
    return Intervals(lower, upper, samples)


def percentile_bounds(samples: Float, confidence: float) -> tuple[Float, Float]:
    """Percentile-interval bounds per column of ``samples`` (rounds, ...).

    The bounds are the ``(B + 1) * alpha / 2``-th and ``(B + 1) * (1 - alpha / 2)``-th order
    statistics of the B rounds (interpolated; numpy's "weibull" quantiles), the usual Monte-Carlo
    choice (Davison & Hinkley 1997, section 5.2): a further draw from the same distribution falls
    between them with probability ``confidence`` whatever B is, whereas numpy's default positions
    shrink the interval with few rounds (about 94% instead of 95% at 200 rounds).
    """
    alpha = 1 - confidence
    lower, upper = np.quantile(samples, [alpha / 2, 1 - alpha / 2], axis=0, method="weibull")
    return lower, upper


def ranks_from_intervals(lower: Float, upper: Float) -> Int:
    """Rank = 1 + number of models whose lower bound exceeds this model's upper bound."""
    lo = np.sort(np.asarray(lower, dtype=np.float64))
    beaten_by = lo.size - np.searchsorted(lo, upper, side="right")
    return (1 + beaten_by).astype(np.int64)
