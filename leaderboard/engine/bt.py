"""Bradley-Terry maximum likelihood by damped Newton (conventions:
:mod:`leaderboard.engine.ratings`).

Pure numpy/scipy over integer-indexed arrays; no I/O, no Django, no global state.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit, log_expit

from leaderboard.engine.pairs import (
    Float,
    Int,
    PairCounts,
    PairTotals,
    anchor_groups,
    comparison_structure,
    component_labels,
    pair_laplacian,
    pair_totals,
)


class ConvergenceError(RuntimeError):
    """A fit did not reach its gradient tolerance."""


class NotIdentifiableError(ValueError):
    """An unpenalised fit was asked for models whose strength would be infinite."""


def bt_objective(theta: Float, p: PairTotals, l2: float) -> float:
    """The penalised negative log-likelihood ``sum w * NLL + (l2 / 2) * sum(theta**2)``."""
    d = theta[p.i] - theta[p.j]
    nll = -(p.s @ log_expit(d) + (p.t - p.s) @ log_expit(-d))
    return float(nll + 0.5 * l2 * theta @ theta)


def newton_fit(
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
    model without battles gets 0 (:func:`leaderboard.engine.intervals.centre_strengths` re-anchors
    them).

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
        if np.any(st.group[counts.i] != st.group[counts.j]):
            raise NotIdentifiableError(
                "infinite strengths without a penalty: battles between two rateable groups "
                "all went one way (fit each group on its own battles)"
            )
        labels = component_labels(counts.n_models, counts.i, counts.j)
    p = pair_totals(counts)
    start = np.zeros(counts.n_models) if theta0 is None else np.asarray(theta0, dtype=np.float64)
    theta, gnorm = newton_fit(p, start, l2=l2, labels=labels, tol=tol, max_iter=max_iter)
    if not gnorm < tol:
        raise ConvergenceError(
            f"Bradley-Terry fit did not converge in {max_iter} iterations "
            f"(gradient norm {gnorm:.2e}, tolerance {tol:.0e})"
        )
    if labels is not None:
        theta -= (np.bincount(labels, theta) / np.bincount(labels))[labels]
    return theta
