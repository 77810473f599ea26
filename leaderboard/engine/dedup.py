"""Down-sampling of prompts that recur far more often than others, before ratings are fitted.

A few prompts ("hi", a test question, a prompt pasted by a script) can make up a sizeable share
of the votes and tilt the leaderboard toward the models that answer them well. As in the public
arenas (LMSYS, 2024: prompts above the 99.9th percentile of prompt counts are down-sampled to
it), a prompt that occurs more often than ``percentile`` of the distinct prompts do keeps only
``cap`` of its votes, drawn at random with a passed generator so that the same votes and the same
seed always keep the same ones.

Pure numpy, no Django import: the database side (prompt counts grouped in SQL, the ids of the
votes of over-cap prompts) lives in :mod:`leaderboard.pipeline.battles`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

Int = NDArray[np.int64]
Bool = NDArray[np.bool_]


def dedup_enabled(percentile: float | None) -> bool:
    """Whether a configured percentile turns down-sampling on (None or 0 turn it off)."""
    return percentile is not None and percentile > 0


def _check_percentile(percentile: float) -> None:
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")


def prompt_cap(
    counts: NDArray[np.integer[Any]],
    percentile: float,
    *,
    multiplicity: NDArray[np.integer[Any]] | None = None,
) -> int:
    """The most votes a prompt keeps: the ``percentile`` of the per-prompt vote counts, rounded up.

    The percentile is numpy's default (linear interpolation between order statistics), computed
    from a histogram when ``multiplicity`` is given, so that the database can send the distinct
    counts and how many prompts have each instead of one number per prompt.

    Parameters
    ----------
    counts : array of int
        Votes per distinct prompt; with ``multiplicity``, the distinct values of that.
    percentile : float
        In (0, 100].
    multiplicity : array of int, optional
        How many prompts have each of ``counts``.

    Returns
    -------
    int
        At least 1 (a prompt always keeps one vote); 1 when there are no prompts.

    Raises
    ------
    ValueError
        ``percentile`` outside (0, 100], or mismatched or negative inputs.
    """
    _check_percentile(percentile)
    values = np.asarray(counts, dtype=np.int64)
    weights = np.ones_like(values) if multiplicity is None else np.asarray(multiplicity, np.int64)
    if values.shape != weights.shape or values.ndim != 1:
        raise ValueError("counts and multiplicity must be 1-D arrays of one length")
    if values.size and (values.min() < 0 or weights.min() < 0):
        raise ValueError("counts and multiplicity must be non-negative")
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    cumulative = np.cumsum(weights)
    total = int(cumulative[-1]) if cumulative.size else 0
    if total == 0:
        return 1
    # np.percentile's "linear" method: position (total - 1) * q between order statistics.
    position = (total - 1) * percentile / 100.0
    low = math.floor(position)
    frac = position - low

    def order_statistic(k: int) -> float:
        return float(values[np.searchsorted(cumulative, k, side="right")])

    value = order_statistic(low)
    if frac > 0:
        value += frac * (order_statistic(min(low + 1, total - 1)) - value)
    # The tolerance keeps 3.0000000000000004 (interpolation noise) at 3.
    return max(1, math.ceil(value - 1e-9))


def dedup_mask(
    keys: NDArray[Any],
    *,
    rng: np.random.Generator,
    percentile: float | None = None,
    cap: int | None = None,
) -> Bool:
    """Which votes to keep: every vote of a prompt with at most ``cap`` votes, and ``cap`` votes
    drawn at random (without replacement) from each prompt with more.

    Parameters
    ----------
    keys : array
        One prompt key per vote (any dtype ``np.unique`` sorts: hashes, strings, integers).
    rng : numpy.random.Generator
        Draws which votes of an over-cap prompt stay; the same keys in the same order and the
        same seed give the same mask.
    percentile : float, optional
        Computes ``cap`` from the keys with :func:`prompt_cap`; None or 0 keeps every vote.
    cap : int, optional
        The cap itself (e.g. computed from every vote when ``keys`` holds only the votes of the
        over-cap prompts); takes precedence over ``percentile``.

    Returns
    -------
    numpy.ndarray of bool
        True for the votes kept, in the order of ``keys``.

    Raises
    ------
    ValueError
        ``cap`` below 1, or ``percentile`` outside (0, 100].
    """
    keys = np.asarray(keys)
    n = keys.shape[0]
    if cap is None:
        if not dedup_enabled(percentile):
            return np.ones(n, dtype=bool)
        assert percentile is not None
        _check_percentile(percentile)
    if n == 0:
        return np.ones(0, dtype=bool)
    _, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    if cap is None:
        assert percentile is not None
        cap = prompt_cap(counts, percentile)
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    # A random priority per vote; within each prompt the `cap` lowest priorities stay.
    priority = np.asarray(rng.random(n), dtype=np.float64)
    order = np.lexsort((priority, group))
    sorted_group = group[order]
    starts = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    return rank < cap
