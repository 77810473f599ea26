"""Ratings from pairwise battles: Bradley-Terry, online Elo, intervals, ranks and matrices.

Pure numpy/scipy over integer-indexed arrays; no I/O, no Django, no global state. Randomness comes
only from a passed ``np.random.Generator``.

Conventions, decided once here:

- ``theta`` holds natural-log strengths: P(i beats j) = sigmoid(theta_i - theta_j).
- A rating is ``1000 + 400 / ln(10) * theta``: 400 points are odds of 10 to 1.
- A tie and a both-bad vote each count as half a win for each side. Self-battles are dropped.
- Unpenalised (``l2 == 0``) strengths are centred at mean 0 within each connected group of models;
  ratings of different groups are not comparable (the rows say which group a model is in).
- A model whose unpenalised strength would be infinite (only wins or only losses, or more generally
  outside the largest strongly connected set of its group in the win graph) is not rated: it is
  left out of the fit and reported as not identifiable with the reason. The others' ratings are then
  the limit of the maximum-likelihood estimate. With ``l2 > 0`` every model with battles is rated
  and the same flag says which ratings are set by the penalty rather than the data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.special import expit, log_expit, ndtri

from leaderboard.pairs import (
    BOTH_BAD,
    MODEL_A,
    MODEL_B,
    OUTCOME_CODES,
    PAIR_SCORE,
    TIE,
    Battles,
    Float,
    Int,
    PairCounts,
    PairTotals,
    Structure,
    aggregate_counts,
    anchor_groups,
    battle_count_matrix,
    check_indices,
    comparison_structure,
    component_labels,
    pair_laplacian,
    pair_totals,
    win_fraction_matrix,
)

__all__ = [
    "BOTH_BAD",
    "MODEL_A",
    "MODEL_B",
    "OUTCOME_CODES",
    "TIE",
    "Battles",
    "ConvergenceError",
    "Intervals",
    "Leaderboard",
    "NotIdentifiableError",
    "PairCounts",
    "Row",
    "Structure",
    "StyleCoefficient",
    "aggregate_counts",
    "battle_count_matrix",
    "bootstrap_intervals",
    "comparison_structure",
    "compute_leaderboard",
    "elo_bootstrap",
    "fit_bradley_terry",
    "online_elo",
    "predicted_win_matrix",
    "ranks_from_intervals",
    "sandwich_covariance",
    "sandwich_intervals",
    "theta_to_rating",
    "win_fraction_matrix",
]

Progress = Callable[[int, int], None]

# Bootstrap rounds of an unpenalised fit add this ridge (times the round's battle weight) so that a
# resample in which a model only wins stays finite; its effect on other fits is below 1e-9.
BOOTSTRAP_RIDGE = 1e-9
CHORD_MAX_ITER = 40
_CHUNK_ROUNDS = 25


class ConvergenceError(RuntimeError):
    """A fit did not reach its gradient tolerance."""


class NotIdentifiableError(ValueError):
    """An unpenalised fit was asked for models whose strength would be infinite."""


def bt_objective(theta: Float, p: PairTotals, l2: float) -> float:
    """The penalised negative log-likelihood ``sum w * NLL + (l2 / 2) * sum(theta**2)``."""
    d = theta[p.i] - theta[p.j]
    nll = -(p.s @ log_expit(d) + (p.t - p.s) @ log_expit(-d))
    return float(nll + 0.5 * l2 * theta @ theta)


def _newton(
    p: PairTotals, theta: Float, *, l2: float, labels: Int | None, tol: float, max_iter: int
) -> tuple[Float, float]:
    """Damped Newton on the pair statistics; returns theta and the final scaled gradient norm."""
    n, total = p.n, max(float(p.t.sum()), 1e-300)
    theta = theta.copy()
    f = bt_objective(theta, p, l2)
    gnorm = math.inf
    for iteration in range(max_iter + 1):
        sig = expit(theta[p.i] - theta[p.j])
        r = p.t * sig - p.s
        g = np.bincount(p.i, r, n) - np.bincount(p.j, r, n) + l2 * theta
        gnorm = float(np.max(np.abs(g), initial=0.0)) / total
        if gnorm < tol or iteration == max_iter:
            break
        h = pair_laplacian(n, p.i, p.j, p.t * sig * (1 - sig), l2)
        step = np.linalg.solve(h if labels is None else anchor_groups(h, labels), -g)
        t, slope = 1.0, float(g @ step)
        while True:
            f_new = bt_objective(theta + t * step, p, l2)
            if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        theta += t * step
        f = f_new
    return theta, gnorm


def fit_bradley_terry(
    counts: PairCounts,
    *,
    l2: float = 0.0,
    tol: float = 1e-8,
    max_iter: int = 100,
    theta0: Float | None = None,
) -> Float:
    """Maximum-likelihood (or L2-penalised) Bradley-Terry strengths.

    Minimises ``sum_battles w * NLL + (l2 / 2) * sum(theta**2)`` by damped Newton on the pair
    totals. With ``l2 == 0`` strengths are centred at mean 0 within each connected group and a
    model without battles gets 0.

    Parameters
    ----------
    counts : PairCounts
        Aggregated battles (see :func:`aggregate_counts`).
    l2 : float, optional
        Penalty on the squared strengths.
    tol : float, optional
        Stop when max |gradient| divided by the total battle weight is below ``tol``.
    max_iter : int, optional
        Newton iterations allowed.
    theta0 : array of float, optional
        Starting strengths.

    Returns
    -------
    numpy.ndarray
        Natural-log strengths, one per model.

    Raises
    ------
    NotIdentifiableError
        ``l2 == 0`` and some model with battles has an infinite maximum-likelihood strength.
    ConvergenceError
        The gradient tolerance was not reached in ``max_iter`` iterations.
    """
    if l2 < 0:
        raise ValueError("l2 must be non-negative")
    labels = None
    if l2 == 0:
        st = comparison_structure(counts)
        bad = np.flatnonzero(~st.identifiable & (st.component >= 0))
        if bad.size:
            listed = ", ".join(f"{m} ({st.reason[m]})" for m in bad[:10])
            raise NotIdentifiableError(f"infinite strengths without a penalty for models {listed}")
        labels = component_labels(counts.n_models, counts.i, counts.j)
    p = pair_totals(counts)
    start = np.zeros(counts.n_models) if theta0 is None else np.asarray(theta0, dtype=np.float64)
    theta, gnorm = _newton(p, start, l2=l2, labels=labels, tol=tol, max_iter=max_iter)
    if not gnorm < tol:
        raise ConvergenceError(
            f"Bradley-Terry fit did not converge in {max_iter} iterations "
            f"(gradient norm {gnorm:.2e}, tolerance {tol:.0e})"
        )
    if labels is not None:
        theta -= (np.bincount(labels, theta) / np.bincount(labels))[labels]
    return theta


def z_score(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    return float(ndtri(0.5 + confidence / 2))


def sandwich_covariance(counts: PairCounts, theta: Float, *, l2: float = 0.0) -> Float:
    """Robust covariance ``H^-1 G H^-1`` of the strengths (per-battle score outer products in G).

    With ``l2 == 0``, ``H^-1`` is the inverse restricted to strengths centred in each group.
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
    g = pair_laplacian(n, p.i, p.j, v, 0.0)
    hinv = np.linalg.inv(anchor_groups(h, component_labels(n, p.i, p.j)) if l2 == 0 else h)
    cov: Float = hinv @ g @ hinv
    return cov


def sandwich_intervals(
    counts: PairCounts, theta: Float, *, l2: float = 0.0, confidence: float = 0.95
) -> tuple[Float, Float]:
    """Normal intervals ``theta -/+ z * se`` from :func:`sandwich_covariance` (strength units)."""
    se = np.sqrt(np.clip(np.diag(sandwich_covariance(counts, theta, l2=l2)), 0, None))
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
    Unpenalised rounds are anchored to ``theta`` within each comparison group by the battle-weighted
    mean of their differences (``theta`` itself keeps its plain mean-0 centring), so that a model
    with few battles widens its own interval, not everyone's.
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
    onehot = (labels[:, None] == np.arange(labels.max(initial=0) + 1)).astype(np.float64)
    played = np.bincount(p.i, weights=p.t, minlength=n) + np.bincount(p.j, weights=p.t, minlength=n)
    played_per_group = np.maximum(played @ onehot, 1e-300)
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
            th[k], gnorm = _newton(
                pk, theta, l2=float(lam[k, 0]), labels=labels if l2 == 0 else None,
                tol=tol, max_iter=200,
            )  # fmt: skip
            if not gnorm < tol:
                raise ConvergenceError(f"bootstrap round did not converge (gradient {gnorm:.2e})")
        if l2 == 0:
            # Anchor each round to the full-data fit by a battle-weighted mean: a model with a
            # handful of battles swings wildly between rounds and, under a plain mean, would
            # drag every other model's interval with it.
            shift = np.einsum("rk,kc->rc", (th - theta) * played, onehot) / played_per_group
            th -= shift[:, labels]
        return th

    samples = run_rounds(rounds, rng, chunk, workers=workers, progress=progress)
    alpha = 1 - confidence
    lower, upper = np.quantile(samples, [alpha / 2, 1 - alpha / 2], axis=0)
    return Intervals(lower, upper, samples)


def ranks_from_intervals(lower: Float, upper: Float) -> Int:
    """Rank = 1 + number of models whose lower bound exceeds this model's upper bound."""
    lo = np.sort(np.asarray(lower, dtype=np.float64))
    beaten_by = lo.size - np.searchsorted(lo, upper, side="right")
    return (1 + beaten_by).astype(np.int64)


def theta_to_rating(
    theta: Float, *, scale: float = 400.0, base: float = 10.0, initial: float = 1000.0
) -> Float:
    """Ratings from natural-log strengths: ``initial + scale / ln(base) * theta``."""
    return initial + scale / math.log(base) * np.asarray(theta, dtype=np.float64)


def online_elo(
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    n_models: int,
    *,
    tstamp: Float | None = None,
    k: float = 4.0,
    base: float = 10.0,
    scale: float = 400.0,
    initial: float = 1000.0,
) -> Float:
    """Sequential Elo over the battles, in timestamp order when ``tstamp`` is given.

    Each battle moves model_a by ``k * (s_a - e_a)`` and model_b by ``k * (1 - s_a - e_b)`` with
    ``e_a = 1 / (1 + base ** ((r_b - r_a) / scale))``; ties and both-bad score 0.5. The arithmetic
    is the one FastChat uses, so its published online ratings are reproduced to the last bit.
    """
    a, b, o = np.asarray(model_a), np.asarray(model_b), np.asarray(outcome)
    check_indices(a, b, o, n_models)
    if tstamp is not None:
        order = np.argsort(np.asarray(tstamp), kind="stable")
        a, b, o = a[order], b[order], o[order]
    ratings = [float(initial)] * n_models
    score = (1.0, 0.0, 0.5, 0.5)
    for x, y, out in zip(a.tolist(), b.tolist(), o.tolist(), strict=True):
        if x == y:
            continue
        ra, rb = ratings[x], ratings[y]
        ea = 1 / (1 + base ** ((rb - ra) / scale))
        eb = 1 / (1 + base ** ((ra - rb) / scale))
        sa = score[out]
        ratings[x] = ra + k * (sa - ea)
        ratings[y] = rb + k * (1 - sa - eb)
    return np.array(ratings)


def elo_bootstrap(
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    n_models: int,
    *,
    rng: np.random.Generator,
    rounds: int = 1000,
    progress: Progress | None = None,
    k: float = 4.0,
    base: float = 10.0,
    scale: float = 400.0,
    initial: float = 1000.0,
) -> Float:
    """Online Elo over battles resampled with replacement, in the resampled (random) order."""
    a, b, o = np.asarray(model_a), np.asarray(model_b), np.asarray(outcome)

    def chunk(gen: np.random.Generator, m: int) -> Float:
        out = []
        for _ in range(m):
            idx = gen.integers(0, a.size, a.size)
            out.append(
                online_elo(
                    a[idx], b[idx], o[idx], n_models, k=k, base=base, scale=scale, initial=initial
                )
            )
        return np.array(out)

    return run_rounds(rounds, rng, chunk, workers=1, progress=progress)


def predicted_win_matrix(theta: Float) -> Float:
    """Model-predicted probability that the row beats the column (NaN on the diagonal)."""
    t = np.asarray(theta, dtype=np.float64)
    p: Float = expit(t[:, None] - t[None, :])
    np.fill_diagonal(p, np.nan)
    return p


@dataclass(frozen=True)
class Row:
    """One model on a leaderboard. Unrated models have NaN ratings and no rank."""

    model: str
    rating: float
    lower: float
    upper: float
    rank: int | None
    battles: int
    identifiable: bool = True
    component: int = 0
    note: str = ""


@dataclass(frozen=True)
class StyleCoefficient:
    """A style-control coefficient (log-odds per standard deviation of the feature)."""

    name: str
    value: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Leaderboard:
    """Rows best first (unrated models last) and how they were computed."""

    rows: tuple[Row, ...]
    method: str
    ci: str
    confidence: float
    l2: float
    rounds: int
    n_battles: int
    n_components: int
    theta: Float  # strengths per model index (NaN when unrated); Elo: ratings
    style: tuple[StyleCoefficient, ...] = ()

    def records(self) -> list[dict[str, Any]]:
        """Rated rows as plain dicts with keys model, rating, lower, upper, rank, battles."""
        keys = ("model", "rating", "lower", "upper", "rank", "battles")
        return [{k: getattr(r, k) for k in keys} for r in self.rows if r.rank is not None]


def compute_leaderboard(
    battles: Battles,
    *,
    method: str = "bt",
    ci: str = "bootstrap",
    rounds: int = 1000,
    l2: float = 0.0,
    style_control: bool = False,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
    tol: float = 1e-8,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Leaderboard:
    """Turn battles into a leaderboard: ratings, intervals, ranks.

    Parameters
    ----------
    battles : Battles
        The battles; models without any battle (after dropping self-battles) are left out.
    method : {"bt", "elo"}
        Bradley-Terry maximum likelihood or online Elo (timestamp order when known).
    ci : {"bootstrap", "sandwich", "none"}
        Interval method; sandwich is for Bradley-Terry only. With style control the bootstrap
        resamples battles, otherwise aggregated counts (Elo: battles, in resampled order).
    rounds : int
        Bootstrap rounds.
    l2 : float
        Penalty ``(l2 / 2) * sum(theta**2)`` (Bradley-Terry).
    style_control : bool
        Fit a contextual Bradley-Terry on ``battles.style_a/style_b`` and report its ratings with
        style held fixed and its coefficients.
    confidence : float
        Interval coverage.
    rng : numpy.random.Generator, optional
        Required for the bootstrap.
    tol : float
        Gradient tolerance of every fit.
    workers : int, optional
        Threads for bootstrap rounds (results do not depend on it).
    progress : callable, optional
        Called with (rounds done, rounds) during a bootstrap.

    Returns
    -------
    Leaderboard
    """
    if method not in ("bt", "elo") or ci not in ("bootstrap", "sandwich", "none"):
        raise ValueError(f"unknown method {method!r} or interval method {ci!r}")
    if ci == "bootstrap" and rng is None:
        raise ValueError("a bootstrap needs rng, a numpy Generator")
    if method == "elo" and (ci == "sandwich" or style_control or l2 != 0):
        raise ValueError("Elo has no sandwich intervals, style control or l2 penalty; use bt")
    z = z_score(confidence)
    n = len(battles.names)
    counts = aggregate_counts(
        battles.model_a, battles.model_b, battles.outcome, n, weight=battles.weight
    )
    played = counts.battles_per_model()
    st = comparison_structure(counts)
    theta, lower, upper = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    style_rows: tuple[StyleCoefficient, ...] = ()
    if method == "elo":
        rated = played > 0
        args = (battles.model_a, battles.model_b, battles.outcome, n)
        theta = online_elo(*args, tstamp=battles.tstamp)
        lower, upper = theta.copy(), theta.copy()
        if ci == "bootstrap":
            assert rng is not None
            samples = elo_bootstrap(*args, rng=rng, rounds=rounds, progress=progress)
            lower, upper = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2], 0)
        ratings = theta
    else:
        rated = st.identifiable if l2 == 0 else played > 0
        sub, index = counts.restrict(rated)
        if not sub.count.any():
            # No battle among rateable models yet (a new arena's first votes): nothing to fit.
            rated = np.zeros(n, dtype=bool)
            sub, index = counts.restrict(rated)
        if index.size == 0:
            # Nothing is rateable yet (e.g. every model so far only won or only lost).
            th = lo = up = np.zeros(0)
        elif style_control:
            # style builds on this module's helpers, so it is imported here to avoid a cycle.
            from leaderboard.style import style_leaderboard_fit

            fit = style_leaderboard_fit(
                battles, index, l2=l2, ci=ci, rounds=rounds, confidence=confidence, rng=rng,
                tol=tol, workers=workers, progress=progress,
            )  # fmt: skip
            th, lo, up = fit.theta, fit.lower, fit.upper
            style_rows = tuple(
                StyleCoefficient(*x)
                for x in zip(
                    battles.style_names, fit.beta, fit.beta_lower, fit.beta_upper, strict=True
                )
            )
        else:
            th = fit_bradley_terry(sub, l2=l2, tol=tol)
            lo, up = th, th
            if ci == "sandwich":
                se = np.sqrt(np.clip(np.diag(sandwich_covariance(sub, th, l2=l2)), 0, None))
                lo, up = th - z * se, th + z * se
            elif ci == "bootstrap":
                assert rng is not None
                iv = bootstrap_intervals(
                    sub, th, rng=rng, rounds=rounds, l2=l2, confidence=confidence, tol=tol,
                    workers=workers, progress=progress,
                )  # fmt: skip
                lo, up = iv.lower, iv.upper
        theta[index], lower[index], upper[index] = th, lo, up
        ratings, lower, upper = (
            theta_to_rating(theta),
            theta_to_rating(lower),
            theta_to_rating(upper),
        )
    ranks = np.zeros(n, dtype=np.int64)
    # Models of groups that never met cannot outrank each other: ranks count within a group.
    for group in np.unique(st.component[rated]):
        members = rated & (st.component == group)
        ranks[members] = ranks_from_intervals(lower[members], upper[members])
    order = sorted(
        np.flatnonzero(played > 0),
        key=lambda m: (not rated[m], -ratings[m] if rated[m] else 0.0, battles.names[m]),
    )
    rows = tuple(
        Row(
            battles.names[m],
            float(ratings[m]),
            float(lower[m]),
            float(upper[m]),
            int(ranks[m]) if rated[m] else None,
            int(played[m]),
            bool(st.identifiable[m]) or method == "elo",
            int(st.component[m]),
            "" if method == "elo" else st.reason[m],
        )
        for m in order
    )
    return Leaderboard(
        rows, method, ci, confidence, l2, rounds if ci == "bootstrap" else 0,
        int(counts.count.sum()), st.n_components, theta, style_rows,
    )  # fmt: skip
