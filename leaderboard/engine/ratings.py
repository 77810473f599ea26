"""Ratings from pairwise battles: Bradley-Terry, online Elo, intervals, ranks and matrices.

Pure numpy/scipy over integer-indexed arrays; no I/O, no Django, no global state. Randomness comes
only from a passed ``np.random.Generator``. The fit lives in :mod:`leaderboard.engine.bt`,
intervals and the anchor in :mod:`leaderboard.engine.intervals`, the comparison graph in
:mod:`leaderboard.engine.pairs`.

Conventions, decided once here:

- ``theta`` holds natural-log strengths: P(i beats j) = sigmoid(theta_i - theta_j).
- A rating is ``1000 + 400 / ln(10) * theta``: 400 points are odds of 10 to 1.
- A tie and a both-bad vote each count as half a win for each side. Self-battles are dropped.
- Groups: without a penalty (``l2 == 0``) a set of models is rateable only when it is a strongly
  connected set of at least two models in the "beat or tied" graph (a tie counts both ways), see
  :func:`leaderboard.engine.pairs.comparison_structure`. Each such set is a group, numbered 1, 2,
  ... biggest first, fitted on its own battles and ranked within itself; ratings of different groups
  are not comparable. A model in no group (only wins, only losses, a lone winner over one model) is
  not rated and its row says why: its maximum-likelihood strength is infinite. With ``l2 > 0`` every
  model with battles is rated, a group is a connected set of the comparison graph, and the
  ``identifiable`` flag says which ratings are set by the penalty rather than the data.
- The anchor (``l2 == 0``): within a group, strengths are centred at their battle-weighted mean
  (weights: each model's battles in the full data), for the point estimate and for every interval
  alike; see :mod:`leaderboard.engine.intervals` for why. A rating of 1000 is the group's
  battle-weighted average model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from leaderboard.engine.bt import (
    ConvergenceError,
    NotIdentifiableError,
    bt_objective,
    fit_bradley_terry,
)
from leaderboard.engine.intervals import (
    Intervals,
    Progress,
    anchor_weights,
    bootstrap_intervals,
    centre_strengths,
    multinomial_rows,
    percentile_bounds,
    ranks_from_intervals,
    run_rounds,
    sandwich_covariance,
    sandwich_intervals,
    z_score,
)
from leaderboard.engine.pairs import (
    BOTH_BAD,
    MODEL_A,
    MODEL_B,
    OUTCOME_CODES,
    TIE,
    Battles,
    Float,
    Int,
    PairCounts,
    Structure,
    aggregate_counts,
    battle_count_matrix,
    check_indices,
    comparison_structure,
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
    "Progress",
    "Row",
    "Structure",
    "StyleCoefficient",
    "aggregate_counts",
    "anchor_weights",
    "battle_count_matrix",
    "bootstrap_intervals",
    "bt_objective",
    "centre_strengths",
    "comparison_structure",
    "compute_leaderboard",
    "elo_bootstrap",
    "fit_bradley_terry",
    "multinomial_rows",
    "online_elo",
    "pair_totals",
    "percentile_bounds",
    "predicted_win_matrix",
    "ranks_from_intervals",
    "run_rounds",
    "sandwich_covariance",
    "sandwich_intervals",
    "theta_to_rating",
    "win_fraction_matrix",
    "z_score",
]


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
    """One model on a leaderboard. Unrated models have NaN ratings, no rank and no group.

    ``group`` numbers the rateable groups 1, 2, ... biggest first; ``rank`` counts within it.
    """

    model: str
    rating: float
    lower: float
    upper: float
    rank: int | None
    battles: int
    identifiable: bool = True
    group: int | None = 1
    note: str = ""


@dataclass(frozen=True)
class StyleCoefficient:
    """A style-control coefficient (log-odds per standard deviation of the feature).

    A feature left out of the fit has NaN value and bounds and a ``note`` saying why.
    """

    name: str
    value: float
    lower: float
    upper: float
    note: str = ""


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Leaderboard:
    """Rows by group (biggest first), best first within a group, unrated models last."""

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
    n_groups: int = 1

    def records(self) -> list[dict[str, Any]]:
        """Every row as a plain dict: model, group, rank, rating, lower, upper, battles, rated,
        note (``None`` for an unrated model's group, rank and numbers; ``note`` says why)."""
        return [
            {
                "model": r.model,
                "group": r.group,
                "rank": r.rank,
                "rating": _number(r.rating),
                "lower": _number(r.lower),
                "upper": _number(r.upper),
                "battles": r.battles,
                "rated": r.rank is not None,
                "note": r.note,
            }
            for r in self.rows
        ]


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

    Raises
    ------
    leaderboard.engine.style.StyleUnavailableError
        Style control was asked for and the battles are too few for it (the message says why).
    """
    if method not in ("bt", "elo") or ci not in ("bootstrap", "sandwich", "none"):
        raise ValueError(f"unknown method {method!r} or interval method {ci!r}")
    if ci == "bootstrap" and rng is None:
        raise ValueError("a bootstrap needs rng, a numpy Generator")
    if method == "elo" and (ci == "sandwich" or style_control or l2 != 0):
        raise ValueError("Elo has no sandwich intervals, style control or l2 penalty; use bt")
    n = len(battles.names)
    counts = aggregate_counts(
        battles.model_a, battles.model_b, battles.outcome, n, weight=battles.weight
    )
    played = counts.battles_per_model()
    st = comparison_structure(counts)
    theta, lower, upper = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    style_rows: tuple[StyleCoefficient, ...] = ()
    if method == "elo" or l2 > 0:
        # Every model with battles gets a finite number: a group is a connected set.
        rated, group = played > 0, st.component
    else:
        rated, group = st.identifiable, st.group
    if method == "elo":
        args = (battles.model_a, battles.model_b, battles.outcome, n)
        theta = online_elo(*args, tstamp=battles.tstamp)
        lower, upper = theta.copy(), theta.copy()
        if ci == "bootstrap":
            assert rng is not None
            samples = elo_bootstrap(*args, rng=rng, rounds=rounds, progress=progress)
            lower, upper = percentile_bounds(samples, confidence)
        ratings = theta
    else:
        # Battles between two groups all went one way and say nothing within either: left out.
        sub, index = counts.restrict(rated, labels=group)
        th, lo, up, style_rows = _fit_bt(
            battles, sub, index, group[index], l2=l2, ci=ci, rounds=rounds,
            style_control=style_control, confidence=confidence, rng=rng, tol=tol,
            workers=workers, progress=progress,
        )  # fmt: skip
        theta[index], lower[index], upper[index] = th, lo, up
        ratings, lower, upper = (
            theta_to_rating(theta),
            theta_to_rating(lower),
            theta_to_rating(upper),
        )
    ranks = np.zeros(n, dtype=np.int64)
    # Models of different groups cannot outrank each other: ranks count within a group.
    for g in np.unique(group[rated]):
        members = rated & (group == g)
        ranks[members] = ranks_from_intervals(lower[members], upper[members])
    order = sorted(
        np.flatnonzero(played > 0),
        key=lambda m: (
            (0, int(group[m]), -ratings[m]) if rated[m] else (1, 0, 0.0),
            battles.names[m],
        ),
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
            int(group[m]) + 1 if rated[m] else None,
            "" if method == "elo" else st.reason[m],
        )
        for m in order
    )
    return Leaderboard(
        rows, method, ci, confidence, l2, rounds if ci == "bootstrap" else 0,
        int(counts.count.sum()), st.n_components, theta, style_rows,
        len(np.unique(group[rated])),
    )  # fmt: skip


def _fit_bt(
    battles: Battles,
    sub: PairCounts,
    index: Int,
    labels: Int,
    *,
    l2: float,
    ci: str,
    rounds: int,
    style_control: bool,
    confidence: float,
    rng: np.random.Generator | None,
    tol: float,
    workers: int | None,
    progress: Progress | None,
) -> tuple[Float, Float, Float, tuple[StyleCoefficient, ...]]:
    """Strengths and bounds of the rated models ``index`` (groups ``labels``), anchored."""
    if index.size == 0 or not sub.count.any():
        # Nothing is rateable yet (a new arena's first votes, or every model only won or lost).
        e = np.zeros(0)
        return e, e, e, ()
    if style_control:
        # style builds on this module's helpers, so it is imported here to avoid a cycle.
        from leaderboard.engine.style import style_leaderboard_fit

        fit = style_leaderboard_fit(
            battles, index, labels, l2=l2, ci=ci, rounds=rounds, confidence=confidence, rng=rng,
            tol=tol, workers=workers, progress=progress,
        )  # fmt: skip
        style_rows = tuple(
            StyleCoefficient(*x)
            for x in zip(
                battles.style_names,
                fit.beta,
                fit.beta_lower,
                fit.beta_upper,
                fit.beta_note,
                strict=True,
            )
        )
        return fit.theta, fit.lower, fit.upper, style_rows
    th = fit_bradley_terry(sub, l2=l2, tol=tol)
    weights = anchor_weights(sub) if l2 == 0 else None
    if weights is not None:
        th = centre_strengths(th, labels, weights)
    lo, up = th, th
    if ci == "sandwich":
        lo, up = sandwich_intervals(sub, th, l2=l2, confidence=confidence, anchor=weights)
    elif ci == "bootstrap":
        assert rng is not None
        iv = bootstrap_intervals(
            sub, th, rng=rng, rounds=rounds, l2=l2, confidence=confidence, tol=tol,
            workers=workers, progress=progress,
        )  # fmt: skip
        lo, up = iv.lower, iv.upper
    return th, lo, up, ()
