"""Style control: a contextual Bradley-Terry model with per-battle style features.

P(a beats b) = sigmoid(theta_a - theta_b + x . beta), where x holds the battle's style differences
(answer length, markdown headers, list items, bold), each normalised as (a - b) / (a + b + 1) and
then standardised over the battles. ``theta`` are then strengths with style held fixed and ``beta``
the log-odds effect of one standard deviation of each feature. Same conventions as
:mod:`leaderboard.engine.ratings`: ties and both-bad are half wins, ``l2`` penalises ``theta``
only, and unpenalised strengths are centred at mean 0 within each connected group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from leaderboard.engine.bt import ConvergenceError
from leaderboard.engine.intervals import (
    BOOTSTRAP_RIDGE,
    CHORD_MAX_ITER,
    Progress,
    percentile_bounds,
    run_rounds,
    z_score,
)
from leaderboard.engine.pairs import Battles, Float, Int, anchor_groups, component_labels

# Below these, style control reports "not available" (or leaves a feature out) instead of numbers.
# A coefficient's standard error is about 2 / sqrt(battles where the feature differs) log-odds per
# standard deviation, and strengths need tens of battles per model on top: with fewer battles the
# fit sits near separation (a 6-vote demo gave a "lists" coefficient of -13.4 with a tight interval
# and ratings of -5,500). The thresholds keep that error under about 0.35 and leave ordinary arenas
# (thousands of votes) untouched.
STYLE_MIN_BATTLES = 100
STYLE_MIN_DIFFERING = 30


class StyleUnavailableError(ValueError):
    """Style control cannot be fitted on these battles; the message says why."""


def style_features(style_a: Float, style_b: Float) -> Float:
    """Per-battle features ``(a - b) / (a + b + 1)``, standardised to mean 0 and unit variance."""
    a, b = np.asarray(style_a, dtype=np.float64), np.asarray(style_b, dtype=np.float64)
    d = (a - b) / (a + b + 1)
    sd = d.std(axis=0)
    sd[sd == 0] = 1.0
    out: Float = (d - d.mean(axis=0)) / sd
    return out


@dataclass(frozen=True)
class StyleFit:
    """Strengths with style held fixed and the style coefficients."""

    theta: Float
    beta: Float


@dataclass(frozen=True)
class _Data:
    n: int
    a: Int
    b: Int
    ab: Int
    y: Float
    x: Float
    labels: Int | None  # groups to centre (unpenalised fits)
    anchor: Float  # battle weight per model: the anchor's weights (leaderboard.engine.intervals)


def _data(
    model_a: NDArray[Any],
    model_b: NDArray[Any],
    outcome: NDArray[Any],
    n: int,
    x: Float,
    l2: float,
    weight: Float | None,
) -> tuple[_Data, Float]:
    a, b = np.asarray(model_a, dtype=np.int64), np.asarray(model_b, dtype=np.int64)
    keep = a != b
    a, b = a[keep], b[keep]
    w = np.ones(a.size) if weight is None else np.asarray(weight, dtype=np.float64)[keep]
    y = np.array([1.0, 0.0, 0.5, 0.5])[np.asarray(outcome)[keep]]
    labels = component_labels(n, a, b) if l2 == 0 else None
    anchor = np.asarray(np.bincount(a, w, n) + np.bincount(b, w, n), dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)[keep]
    return _Data(n, a, b, a * n + b, y, x, labels, anchor), w


def _split(d: _Data, params: Float) -> tuple[Float, Float]:
    return params[: d.n], params[d.n :]


def _prob(d: _Data, params: Float) -> tuple[Float, Float]:
    th, be = _split(d, params)
    z = th[d.a] - th[d.b] + d.x @ be
    return z, expit(z)


def _objective(d: _Data, w: Float, params: Float, lam: float) -> float:
    z, _ = _prob(d, params)
    th = params[: d.n]
    return float(w @ (np.logaddexp(0.0, z) - d.y * z) + 0.5 * lam * th @ th)


def _gradient(d: _Data, w: Float, params: Float, lam: float) -> Float:
    _, p = _prob(d, params)
    r = w * (p - d.y)
    g_theta = np.bincount(d.a, r, d.n) - np.bincount(d.b, r, d.n) + lam * params[: d.n]
    return np.concatenate([g_theta, d.x.T @ r])


def _outer(d: _Data, v: Float, lam: float) -> Float:
    """sum_b v_b u_b u_b^T with u_b = (e_a - e_b, x_b), plus ``lam`` on the strengths diagonal."""
    n, k = d.n, d.x.shape[1]
    m = np.bincount(d.ab, v, n * n).reshape(n, n)
    m = m + m.T
    out = np.zeros((n + k, n + k))
    out[:n, :n] = np.diag(m.sum(axis=1) + lam) - m
    vx = v[:, None] * d.x
    cross = np.zeros((n, k))  # no column at all when no style feature varies
    for c in range(k):
        cross[:, c] = np.bincount(d.a, vx[:, c], n) - np.bincount(d.b, vx[:, c], n)
    out[:n, n:] = cross
    out[n:, :n] = cross.T
    out[n:, n:] = d.x.T @ vx
    return out


def _inverse(d: _Data, h: Float) -> Float:
    return np.asarray(
        np.linalg.inv(h if d.labels is None else anchor_groups(h, d.labels)), dtype=np.float64
    )


def _centre(d: _Data, params: Float) -> Float:
    """Strengths centred at their battle-weighted mean within each group (the ratings' anchor)."""
    if d.labels is not None:
        th = params[..., : d.n]
        onehot = (d.labels[:, None] == np.arange(d.labels.max(initial=0) + 1)).astype(np.float64)
        w = np.where((d.anchor @ onehot)[d.labels] > 0, d.anchor, 1.0)
        mean = (th * w) @ onehot / (w @ onehot)
        params[..., : d.n] = th - mean[..., d.labels]
    return params


def _newton(
    d: _Data, w: Float, params: Float, lam: float, tol: float, max_iter: int
) -> tuple[Float, float]:
    total = max(float(w.sum()), 1e-300)
    params = params.copy()
    f = _objective(d, w, params, lam)
    gnorm = math.inf
    for iteration in range(max_iter + 1):
        g = _gradient(d, w, params, lam)
        gnorm = float(np.max(np.abs(g))) / total
        if gnorm < tol or iteration == max_iter:
            break
        _, p = _prob(d, params)
        h = _outer(d, w * p * (1 - p), lam)
        step = -_inverse(d, h) @ g
        t, slope = 1.0, float(g @ step)
        while True:
            f_new = _objective(d, w, params + t * step, lam)
            if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        params += t * step
        f = f_new
    return _centre(d, params), gnorm


def fit_style_control(
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    n_models: int,
    features: Float,
    *,
    weight: Float | None = None,
    l2: float = 0.0,
    tol: float = 1e-8,
    max_iter: int = 100,
) -> StyleFit:
    """Fit the contextual Bradley-Terry model by damped Newton over all battles.

    Parameters
    ----------
    model_a, model_b, outcome, n_models
        Battles as in :func:`leaderboard.engine.ratings.aggregate_counts`.
    features : array of float, shape (n_battles, n_features)
        Style features (see :func:`style_features`).
    weight : array of float, optional
        Per-battle weights.
    l2 : float
        Penalty ``(l2 / 2) * sum(theta**2)``.
    tol : float
        Stop when max |gradient| divided by the total battle weight is below ``tol``.
    max_iter : int
        Newton iterations allowed.

    Returns
    -------
    StyleFit

    Raises
    ------
    ConvergenceError
        The tolerance was not reached, e.g. because some model only wins and ``l2 == 0``.
    """
    d, w = _data(model_a, model_b, outcome, n_models, features, l2, weight)
    params, gnorm = _newton(d, w, np.zeros(n_models + d.x.shape[1]), l2, tol, max_iter)
    if not gnorm < tol:
        raise ConvergenceError(
            f"style-control fit did not converge in {max_iter} iterations (gradient {gnorm:.2e})"
        )
    return StyleFit(*_split(d, params))


def style_sandwich_covariance(
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    n_models: int,
    features: Float,
    fit: StyleFit,
    *,
    weight: Float | None = None,
    l2: float = 0.0,
) -> Float:
    """Covariance ``H^-1 G H^-1`` of (theta, beta) from per-battle score outer products."""
    d, w = _data(model_a, model_b, outcome, n_models, features, l2, weight)
    params = np.concatenate([fit.theta, fit.beta])
    _, p = _prob(d, params)
    hinv = _inverse(d, _outer(d, w * p * (1 - p), l2))
    cov: Float = hinv @ _outer(d, (w * (p - d.y)) ** 2, 0.0) @ hinv
    return cov


def style_bootstrap(
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    n_models: int,
    features: Float,
    fit: StyleFit,
    *,
    rng: np.random.Generator,
    rounds: int = 100,
    weight: Float | None = None,
    l2: float = 0.0,
    tol: float = 1e-8,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Float:
    """Refits on battles resampled with replacement; returns (rounds, n_models + n_features).

    A round weights each battle by how often it was drawn and refits from ``fit`` by Newton steps
    with the full-data Hessian (damped Newton for rounds that do not converge that way).
    """
    d, w = _data(model_a, model_b, outcome, n_models, features, l2, weight)
    start = np.concatenate([fit.theta, fit.beta])
    ridge = BOOTSTRAP_RIDGE if l2 == 0 else 0.0
    _, p = _prob(d, start)
    hinv = _inverse(d, _outer(d, w * p * (1 - p), l2 + ridge * float(w.sum())))
    size = d.a.size

    def chunk(gen: np.random.Generator, m: int) -> Float:
        out = np.empty((m, start.size))
        for r in range(m):
            wr = w * np.bincount(gen.integers(0, size, size), minlength=size)
            total, lam = float(wr.sum()), l2 + ridge * float(wr.sum())
            params = start.copy()
            for _ in range(CHORD_MAX_ITER):
                g = _gradient(d, wr, params, lam)
                if float(np.max(np.abs(g))) < tol * total:
                    break
                params -= hinv @ g
            else:
                params, gnorm = _newton(d, wr, start, lam, tol, 200)
                if not gnorm < tol:
                    raise ConvergenceError(f"style bootstrap round did not converge ({gnorm:.2e})")
            out[r] = _centre(d, params)
        return out

    return run_rounds(rounds, rng, chunk, workers=workers, progress=progress)


@dataclass(frozen=True)
class StyleResult:
    """Style-controlled strengths and coefficients with interval bounds."""

    theta: Float
    lower: Float
    upper: Float
    beta: Float
    beta_lower: Float
    beta_upper: Float
    beta_note: tuple[str, ...]  # "" for a fitted coefficient, else why it was left out


def style_leaderboard_fit(
    battles: Battles,
    index: Int,
    labels: Int,
    *,
    l2: float,
    ci: str,
    rounds: int,
    confidence: float,
    rng: np.random.Generator | None,
    tol: float,
    workers: int | None,
    progress: Progress | None,
) -> StyleResult:
    """Style control on the battles within the groups ``labels`` of the models ``index``.

    The models are re-indexed 0..len(index)-1; battles between two groups are left out.

    Raises
    ------
    StyleUnavailableError
        Fewer than ``STYLE_MIN_BATTLES`` battles, or no feature varies in enough of them.
    """
    if battles.style_a is None or battles.style_b is None:
        raise ValueError("style control needs per-battle style counts (conversation_a/b)")
    new = np.full(len(battles.names), -1, dtype=np.int64)
    new[index] = np.arange(index.size)
    a, b = new[np.asarray(battles.model_a)], new[np.asarray(battles.model_b)]
    keep = (a >= 0) & (b >= 0) & (a != b)
    keep[keep] &= labels[a[keep]] == labels[b[keep]]
    a, b, o = a[keep], b[keep], np.asarray(battles.outcome)[keep]
    if a.size < STYLE_MIN_BATTLES:
        raise StyleUnavailableError(
            f"style control not available: {a.size} battles among rated models "
            f"(it needs at least {STYLE_MIN_BATTLES})"
        )
    sa, sb = battles.style_a[keep], battles.style_b[keep]
    differing = np.sum(sa != sb, axis=0)
    # A feature that rarely differs between the sides (no answer in a category used a header)
    # has no measurable effect and pushes the fit towards separation: it is left out.
    varies = differing >= STYLE_MIN_DIFFERING
    notes = tuple(
        ""
        if ok
        else f"left out: differs between the two answers in {int(k)} battles "
        f"(needs {STYLE_MIN_DIFFERING})"
        for ok, k in zip(varies, differing, strict=True)
    )
    if not varies.any():
        raise StyleUnavailableError(
            "style control not available: no style feature differs between the two answers "
            f"in at least {STYLE_MIN_DIFFERING} battles"
        )
    x = style_features(sa, sb)[:, varies]
    w = None if battles.weight is None else battles.weight[keep]
    n = index.size
    fit = fit_style_control(a, b, o, n, x, weight=w, l2=l2, tol=tol)
    est = np.concatenate([fit.theta, fit.beta])
    lo, up = est, est
    if ci == "sandwich":
        cov = style_sandwich_covariance(a, b, o, n, x, fit, weight=w, l2=l2)
        half = z_score(confidence) * np.sqrt(np.clip(np.diag(cov), 0, None))
        lo, up = est - half, est + half
    elif ci == "bootstrap":
        assert rng is not None
        samples = style_bootstrap(
            a, b, o, n, x, fit, rng=rng, rounds=rounds, weight=w, l2=l2, tol=tol,
            workers=workers, progress=progress,
        )  # fmt: skip
        lo, up = percentile_bounds(samples, confidence)
    beta, beta_lo, beta_up = (np.full(varies.size, np.nan) for _ in range(3))
    beta[varies], beta_lo[varies], beta_up[varies] = fit.beta, lo[n:], up[n:]
    return StyleResult(fit.theta, lo[:n], up[:n], beta, beta_lo, beta_up, notes)
