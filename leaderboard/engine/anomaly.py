"""Voter anomaly detection: sequential tests over each voter's votes, in the order they were cast.

Three tests per voter (``Vote.visitor_id``, a keyed pseudonym):

``disagreement``
    Under the null hypothesis the voter's decisive votes follow the consensus Bradley-Terry
    probabilities (fitted on every counted vote; without the voter's own votes when they hold at
    least ``loo_share`` of them). The test is a betting game (an e-process): the wealth is the
    average, over a grid of bet sizes ``epsilon`` and a set of directions, of products of
    likelihood ratios against alternatives in which the voter, with probability ``epsilon``,

    - picks the answer the consensus finds worse (``contrarian``),
    - picks model ``m`` whenever it appears (``for m``: a fan, or an attacker boosting ``m``),
    - picks ``m``'s opponent whenever ``m`` appears (``against m``).

    Each product is a non-negative martingale with mean 1 under the null, and so is their
    average; by Ville's inequality an honest voter's wealth ever reaches ``1 / alpha`` with
    probability at most ``alpha``, however long they vote and however often the test is run.
    Ties and both-bad votes are left out (they carry no direction).
``side``
    The same kind of e-process for the left/right choice over decisive votes: under the null the
    voter picks A or B with probability 1/2 (sides are drawn at random); it flags only once the
    voter has ``side_min_votes`` decisive votes. A fixed-sample binomial test would not do here:
    the detector runs at every leaderboard refresh, and a test that is peeked at again and again
    rejects an honest voter far more often than its nominal level; the e-process does not.
``burst``
    More than ``burst_votes`` votes within any ``burst_seconds`` window (no statistics: a rate).

Pure numpy/scipy, no Django import (:mod:`leaderboard.pipeline.flags` runs it over the votes). Model
strengths are natural-log Bradley-Terry strengths, as in :mod:`leaderboard.engine.ratings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, logsumexp

from leaderboard.engine.pairs import MODEL_A, MODEL_B, aggregate_counts
from leaderboard.engine.ratings import fit_bradley_terry

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]

# Bet sizes the wealth averages over: small bets catch a slight but long bias, large ones a
# blatant short one. Equal weights.
EPSILONS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9)
# The consensus fit's penalty (a weak prior on log-strengths): keeps a model that won or lost
# every battle at a finite strength, so that every probability stays strictly inside (0, 1).
CONSENSUS_L2 = 0.1

DISAGREEMENT, SIDE, BURST = "disagreement", "side", "burst"


@dataclass(frozen=True)
class Thresholds:
    """When a voter is flagged; see the module docstring for each test."""

    alpha: float = 0.01
    burst_votes: int = 30
    burst_seconds: float = 600.0
    side_min_votes: int = 20
    loo_share: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.burst_votes < 1 or self.burst_seconds <= 0:
            raise ValueError("burst_votes must be at least 1 and burst_seconds positive")
        if self.side_min_votes < 1:
            raise ValueError("side_min_votes must be at least 1")


@dataclass(frozen=True)
class VoterResult:
    """One voter's tests. ``*_after``: the number of the voter's votes (all outcomes, in time
    order) at which the test first flagged them, or None."""

    voter: int
    n_votes: int
    n_decisive: int
    disagreement_wealth: float
    disagreement_after: int | None
    side_a: int
    side_wealth: float
    side_after: int | None
    burst_max: int
    burst_after: int | None

    @property
    def reasons(self) -> tuple[str, ...]:
        found = (
            (DISAGREEMENT, self.disagreement_after),
            (SIDE, self.side_after),
            (BURST, self.burst_after),
        )
        return tuple(name for name, after in found if after is not None)

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    @property
    def flagged_after(self) -> int | None:
        afters = [a for a in (self.disagreement_after, self.side_after, self.burst_after) if a]
        return min(afters) if afters else None


# --- consensus ----------------------------------------------------------------------------------


def cell_counts(
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    n_models: int,
    counts: NDArray[np.integer[Any]] | None = None,
) -> Int:
    """Votes per (model_a, model_b, outcome) cell as one flat vector of ``4 * n_models**2``, so
    that one voter's votes can be subtracted from the consensus."""
    index = (np.asarray(model_a, np.int64) * n_models + np.asarray(model_b, np.int64)) * 4
    index += np.asarray(outcome, np.int64)
    weights = None if counts is None else np.asarray(counts, np.float64)
    return np.bincount(index, weights, minlength=4 * n_models**2).astype(np.int64)


def strengths_from_cells(cells: Int, n_models: int, *, l2: float = CONSENSUS_L2) -> Float:
    """Bradley-Terry strengths fitted on a :func:`cell_counts` vector (ties count half a win).

    Raises
    ------
    ValueError
        A negative cell (more votes subtracted than there were).
    NotIdentifiableError, ConvergenceError
        From :func:`leaderboard.engine.ratings.fit_bradley_terry`.
    """
    if cells.size and cells.min() < 0:
        raise ValueError("negative vote counts")
    nonzero = np.flatnonzero(cells)
    a, rest = np.divmod(nonzero, 4 * n_models)
    b, o = np.divmod(rest, 4)
    counts = aggregate_counts(a, b, o, n_models, weight=cells[nonzero].astype(np.float64))
    return fit_bradley_terry(counts, l2=l2)


# --- the e-processes ------------------------------------------------------------------------------


def _mixture(log_ratios: Float, log_weight: float, idle_weight: float) -> Float:
    """Running wealth of an average of bets: ``log_ratios`` is (votes, bets) per-vote log
    likelihood ratios, each bet weighing ``exp(log_weight)``; bets whose wealth never moves add
    ``idle_weight``."""
    running = np.cumsum(log_ratios, axis=0) + log_weight
    return np.asarray(np.exp(logsumexp(running, axis=1)) + idle_weight, dtype=np.float64)


def disagreement_wealth(
    winner: NDArray[np.integer[Any]],
    loser: NDArray[np.integer[Any]],
    p_winner: Float,
    n_models: int,
    *,
    epsilons: tuple[float, ...] = EPSILONS,
) -> Float:
    """Running wealth of the disagreement test after each of one voter's decisive votes.

    Parameters
    ----------
    winner, loser : array of int
        The model the voter picked and the other one, in the order the votes were cast.
    p_winner : array of float
        The consensus probability that ``winner`` beats ``loser``, in (0, 1).
    n_models : int
        Number of models: each has a ``for`` and an ``against`` direction.
    epsilons : tuple of float
        Bet sizes in (0, 1).

    Returns
    -------
    numpy.ndarray of float
        Wealth after vote 1, 2, ...; starts from 1 and is a martingale under the null.
    """
    w, lo = np.asarray(winner, np.int64), np.asarray(loser, np.int64)
    p = np.clip(np.asarray(p_winner, np.float64), 1e-9, 1 - 1e-9)
    if not w.shape == lo.shape == p.shape:
        raise ValueError("winner, loser and p_winner must have one length")
    if w.size == 0:
        return np.ones(0)
    seen = np.unique(np.concatenate([w, lo]))
    # Gains g with likelihood ratio 1 + epsilon * g, one column per direction:
    # contrarian (1 - 2p) / p; for m: (1 - p) / p when m won, -1 when m lost; against m: mirrored.
    upside = (1 - p) / p
    gains = [(1 - 2 * p) / p]
    for m in seen.tolist():
        won, lost = w == m, lo == m
        gains.append(np.where(won, upside, 0.0) - lost)
        gains.append(np.where(lost, upside, 0.0) - won)
    g = np.stack(gains, axis=1)
    eps = np.asarray(epsilons, np.float64)
    log_ratios = np.log1p(g[:, :, None] * eps[None, None, :]).reshape(len(w), -1)
    directions = 1 + 2 * n_models
    weight = 1.0 / (directions * len(eps))
    idle = (directions - g.shape[1]) / directions
    return _mixture(log_ratios, float(np.log(weight)), idle)


def side_wealth(chose_a: Bool, *, epsilons: tuple[float, ...] = EPSILONS) -> Float:
    """Running wealth of the side test after each decisive vote (``chose_a``: picked A)."""
    x = np.where(np.asarray(chose_a, bool), 1.0, -1.0)
    if x.size == 0:
        return np.ones(0)
    eps = np.asarray(epsilons, np.float64)
    g = np.stack([x, -x], axis=1)  # biased towards A, towards B
    log_ratios = np.log1p(g[:, :, None] * eps[None, None, :]).reshape(len(x), -1)
    return _mixture(log_ratios, float(np.log(1.0 / (2 * len(eps)))), 0.0)


def first_crossing(wealth: Float, threshold: float, *, start: int = 1) -> int | None:
    """The first (1-based) position, at least ``start``, where ``wealth >= threshold``."""
    hits = np.flatnonzero(wealth[start - 1 :] >= threshold) if start >= 1 else np.array([])
    return int(hits[0]) + start if hits.size else None


def burst(tstamp: Float, *, votes: int, seconds: float) -> tuple[int, int | None]:
    """The most votes within any ``seconds`` window, and the first (1-based) vote that made more
    than ``votes`` in its window (None if none did). ``tstamp`` sorted, in seconds."""
    t = np.asarray(tstamp, np.float64)
    if t.size == 0:
        return 0, None
    # Votes in (t_k - seconds, t_k], the window that ends at each vote.
    in_window = np.arange(1, t.size + 1) - np.searchsorted(t, t - seconds, side="right")
    over = np.flatnonzero(in_window > votes)
    return int(in_window.max()), (int(over[0]) + 1 if over.size else None)


# --- all voters -----------------------------------------------------------------------------------


def detect_voters(
    voter: NDArray[np.integer[Any]],
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    tstamp: Float,
    *,
    consensus: Int,
    n_models: int,
    thresholds: Thresholds,
    in_consensus: Bool | None = None,
) -> list[VoterResult]:
    """Run the three tests over every voter's votes.

    Parameters
    ----------
    voter : array of int
        The voter of each vote (any integer labels).
    model_a, model_b, outcome : array of int
        The votes, as in :class:`leaderboard.engine.pairs.Battles`.
    tstamp : array of float
        When each vote was cast, in seconds; orders each voter's votes.
    consensus : array of int
        The :func:`cell_counts` of the votes the consensus is fitted on.
    n_models : int
        Number of models.
    thresholds : Thresholds
        The level and the limits.
    in_consensus : array of bool, optional
        Which of these votes are part of ``consensus`` (default: all), so that a voter holding
        at least ``thresholds.loo_share`` of the consensus is tested against the others only.

    Returns
    -------
    list of VoterResult
        One per voter, in increasing voter label.
    """
    voter = np.asarray(voter, np.int64)
    a, b = np.asarray(model_a, np.int64), np.asarray(model_b, np.int64)
    o, t = np.asarray(outcome, np.int64), np.asarray(tstamp, np.float64)
    counted = np.ones(voter.size, bool) if in_consensus is None else np.asarray(in_consensus)
    if not voter.shape == a.shape == b.shape == o.shape == t.shape == counted.shape:
        raise ValueError("the vote arrays must have one length")
    theta = strengths_from_cells(consensus, n_models)
    total = max(int(consensus.sum()), 1)
    order = np.lexsort((t, voter))
    voter, a, b, o, t, counted = (x[order] for x in (voter, a, b, o, t, counted))
    labels, starts = np.unique(voter, return_index=True)
    bounds = np.r_[starts, voter.size]
    level = 1.0 / thresholds.alpha
    results = []
    for label, lo, hi in zip(labels.tolist(), bounds[:-1], bounds[1:], strict=True):
        va, vb, vo, vt = a[lo:hi], b[lo:hi], o[lo:hi], t[lo:hi]
        own = counted[lo:hi]
        strengths = theta
        if own.sum() >= thresholds.loo_share * total:
            mine = cell_counts(va[own], vb[own], vo[own], n_models)
            strengths = strengths_from_cells(consensus - mine, n_models)
        decisive = np.flatnonzero((vo == MODEL_A) | (vo == MODEL_B))
        chose_a = vo[decisive] == MODEL_A
        winner = np.where(chose_a, va[decisive], vb[decisive])
        loser = np.where(chose_a, vb[decisive], va[decisive])
        p = expit(strengths[winner] - strengths[loser])
        dis = disagreement_wealth(winner, loser, p, n_models)
        side = side_wealth(chose_a)
        dis_at = first_crossing(dis, level)
        side_at = first_crossing(side, level, start=thresholds.side_min_votes)
        burst_max, burst_at = burst(
            vt, votes=thresholds.burst_votes, seconds=thresholds.burst_seconds
        )
        results.append(
            VoterResult(
                voter=int(label),
                n_votes=int(hi - lo),
                n_decisive=int(decisive.size),
                disagreement_wealth=float(dis.max(initial=1.0)),
                # Positions among decisive votes -> positions among all the voter's votes.
                disagreement_after=None if dis_at is None else int(decisive[dis_at - 1]) + 1,
                side_a=int(chose_a.sum()),
                side_wealth=float(side.max(initial=1.0)),
                side_after=None if side_at is None else int(decisive[side_at - 1]) + 1,
                burst_max=burst_max,
                burst_after=burst_at,
            )
        )
    return results


def votes_to_flag(
    p_winner: float, n_models: int, threshold: float, *, limit: int = 100_000
) -> int | None:
    """How many decisive votes for one model over another, each with consensus probability
    ``p_winner``, make the disagreement test flag the voter (None: not within ``limit``)."""
    n = 16
    while n <= limit:
        w = np.zeros(n, np.int64)
        lo = np.ones(n, np.int64)
        wealth = disagreement_wealth(w, lo, np.full(n, p_winner), max(n_models, 2))
        hit = first_crossing(wealth, threshold)
        if hit is not None:
            return hit
        n *= 4
    return None
