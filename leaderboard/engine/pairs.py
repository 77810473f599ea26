"""Battles as integer arrays, their aggregation by pair, and the comparison graph.

Part of the ratings engine (see :mod:`leaderboard.engine.ratings` for the conventions); pure
numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.sparse import csgraph

Float = NDArray[np.float64]
Int = NDArray[np.int64]

MODEL_A, MODEL_B, TIE, BOTH_BAD = 0, 1, 2, 3
OUTCOME_CODES: Mapping[str, int] = MappingProxyType(
    {
        "model_a": MODEL_A,
        "model_b": MODEL_B,
        "tie": TIE,
        "both_bad": BOTH_BAD,
        "tie (bothbad)": BOTH_BAD,
    }
)
# Share of a battle won by the lower-indexed model for pair outcomes 0 (it won), 1 (lost), 2 (tie).
PAIR_SCORE = np.array([1.0, 0.0, 0.5])


@dataclass(frozen=True)
class Battles:
    """Battles as parallel arrays over integer model indices into ``names``.

    ``outcome`` holds codes ``MODEL_A``, ``MODEL_B``, ``TIE``, ``BOTH_BAD``. ``style_a``/``style_b``
    are raw per-side style counts (n_battles, len(style_names)). ``columns`` holds any per-battle
    columns that categories filter on (language, turns, prompt_tokens, is_code, anony, ...).
    """

    names: tuple[str, ...]
    model_a: NDArray[np.integer[Any]]
    model_b: NDArray[np.integer[Any]]
    outcome: NDArray[np.integer[Any]]
    weight: Float | None = None
    tstamp: Float | None = None
    style_a: Float | None = None
    style_b: Float | None = None
    style_names: tuple[str, ...] = ()
    columns: Mapping[str, NDArray[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.model_a)
        arrays = {"model_b": self.model_b, "outcome": self.outcome, "weight": self.weight}
        arrays.update({"tstamp": self.tstamp, "style_a": self.style_a, "style_b": self.style_b})
        arrays.update(self.columns)
        for name, arr in arrays.items():
            if arr is not None and len(arr) != n:
                raise ValueError(f"battle column {name!r} has {len(arr)} rows, expected {n}")
        check_indices(self.model_a, self.model_b, self.outcome, len(self.names))

    def __len__(self) -> int:
        return len(self.model_a)

    def select(self, mask: NDArray[np.bool_]) -> Battles:
        """Return the battles where ``mask`` is true (model names unchanged)."""

        def pick(arr: Any) -> Any:
            return None if arr is None else arr[mask]

        return Battles(
            self.names, self.model_a[mask], self.model_b[mask], self.outcome[mask],
            pick(self.weight), pick(self.tstamp), pick(self.style_a), pick(self.style_b),
            self.style_names, {k: v[mask] for k, v in self.columns.items()},
        )  # fmt: skip


def check_indices(a: NDArray[Any], b: NDArray[Any], o: NDArray[Any], n_models: int) -> None:
    for name, arr, hi in (("model_a", a, n_models), ("model_b", b, n_models), ("outcome", o, 4)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array, got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= hi):
            raise ValueError(f"{name} holds values outside 0..{hi - 1}")


@dataclass(frozen=True)
class PairCounts:
    """Battles aggregated by unordered pair ``i < j``, outcome and weight (one row a cell).

    ``outcome`` is 0 when ``i`` won, 1 when ``j`` won, 2 for a tie or both-bad. All battles of a
    cell share the weight ``unit_weight``; cells are sorted by pair.
    """

    n_models: int
    i: Int
    j: Int
    outcome: Int
    count: Int
    unit_weight: Float

    def battles_per_model(self) -> Int:
        """Number of battles each model took part in."""
        n = self.n_models
        per = np.bincount(self.i, self.count, n) + np.bincount(self.j, self.count, n)
        return per.astype(np.int64)

    def restrict(
        self, keep: NDArray[np.bool_], *, labels: Int | None = None
    ) -> tuple[PairCounts, Int]:
        """Cells among the models where ``keep`` is true, re-indexed; also the kept indices.

        With ``labels``, only cells between two models of the same label are kept.
        """
        index = np.flatnonzero(keep).astype(np.int64)
        new = np.full(self.n_models, -1, dtype=np.int64)
        new[index] = np.arange(index.size)
        m = keep[self.i] & keep[self.j]
        if labels is not None:
            m &= labels[self.i] == labels[self.j]
        c = PairCounts(
            index.size, new[self.i[m]], new[self.j[m]], self.outcome[m], self.count[m],
            self.unit_weight[m],
        )  # fmt: skip
        return c, index


def aggregate_counts(
    model_a: NDArray[np.integer[Any]],
    model_b: NDArray[np.integer[Any]],
    outcome: NDArray[np.integer[Any]],
    n_models: int,
    *,
    weight: Float | None = None,
) -> PairCounts:
    """Aggregate battles into counts by (unordered pair, outcome, weight).

    Parameters
    ----------
    model_a, model_b : array of int
        Model indices of the two sides, in ``0..n_models-1``.
    outcome : array of int
        ``MODEL_A``, ``MODEL_B``, ``TIE`` or ``BOTH_BAD``.
    n_models : int
        Number of models.
    weight : array of float, optional
        Non-negative per-battle weights; battles with different weights go to different cells, so
        that resampling cells is the same as resampling battles.

    Returns
    -------
    PairCounts
        The cells with at least one battle; self-battles are dropped.
    """
    a, b, o = np.asarray(model_a), np.asarray(model_b), np.asarray(outcome)
    if not a.shape == b.shape == o.shape or a.ndim != 1:
        raise ValueError("model_a, model_b and outcome must be 1-D arrays of one length")
    check_indices(a, b, o, n_models)
    n = n_models
    if weight is None and 4 * n * n <= max(4 * a.size, 1 << 22):
        # Small model count: one bincount over (a, b, outcome), then fold the two orientations.
        key = np.multiply(a, n, dtype=np.int32 if 4 * n * n < 2**31 else np.int64)
        np.add(key, b, out=key)
        np.multiply(key, 4, out=key)
        np.add(key, o, out=key)
        c = np.bincount(key, minlength=4 * n * n).reshape(n, n, 4)
        wins = c[:, :, MODEL_A] + c[:, :, MODEL_B].T
        ties = c[:, :, TIE] + c[:, :, BOTH_BAD]
        iu, ju = np.triu_indices(n, 1)
        cells = np.stack([wins[iu, ju], wins[ju, iu], (ties + ties.T)[iu, ju]], axis=1)
        pair, out = np.nonzero(cells)
        return PairCounts(
            n, iu[pair].astype(np.int64), ju[pair].astype(np.int64), out.astype(np.int64),
            cells[pair, out].astype(np.int64), np.ones(pair.size),
        )  # fmt: skip
    keep = a != b
    a, b, o = a[keep].astype(np.int64), b[keep].astype(np.int64), o[keep].astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    rel = np.where(o >= TIE, 2, np.where(a > b, 1 - o, o))
    key = (lo * n + hi) * 3 + rel
    if weight is None:
        values, n_values, widx = np.ones(1), 1, np.zeros_like(key)
    else:
        w = np.asarray(weight, dtype=np.float64)[keep]
        if not np.all(np.isfinite(w) & (w >= 0)):
            raise ValueError("weights must be finite and non-negative")
        values, widx = np.unique(w, return_inverse=True)
        n_values = values.size
    cell, count = np.unique(key * n_values + widx, return_counts=True)
    pair3, wi = np.divmod(cell, n_values)
    pair, out = np.divmod(pair3, 3)
    i, j = np.divmod(pair, n)
    return PairCounts(n, i, j, out, count.astype(np.int64), values[wi])


@dataclass(frozen=True)
class PairTotals:
    """Per-pair sufficient statistics: weight of ``i``'s wins (``s``) and of all battles (``t``)."""

    n: int
    i: Int
    j: Int
    starts: Int  # first cell of each pair
    s: Float
    t: Float


def pair_totals(counts: PairCounts) -> PairTotals:
    key = counts.i * counts.n_models + counts.j
    starts = np.flatnonzero(np.diff(key, prepend=-1)).astype(np.int64)
    w = counts.count * counts.unit_weight
    if not starts.size:
        e = np.zeros(0)
        return PairTotals(counts.n_models, starts, starts, starts, e, e)
    s = np.add.reduceat(w * PAIR_SCORE[counts.outcome], starts)
    t = np.add.reduceat(w, starts)
    return PairTotals(counts.n_models, counts.i[starts], counts.j[starts], starts, s, t)


def component_labels(n_models: int, i: Int, j: Int) -> Int:
    """Connected groups of the comparison graph with edges ``i[k] -- j[k]`` (labels 0, 1, ...)."""
    adj = sparse.coo_matrix((np.ones(i.size), (i, j)), shape=(n_models, n_models))
    _, labels = csgraph.connected_components(adj, directed=False)
    return np.asarray(labels, dtype=np.int64)


def pair_laplacian(n: int, i: Int, j: Int, h: Float, diag_extra: float) -> Float:
    """Dense matrix sum_k h_k (e_i - e_j)(e_i - e_j)^T plus ``diag_extra`` on the diagonal."""
    m = np.zeros((n, n))
    m[i, j] = -h
    m[j, i] = -h
    m[np.diag_indices(n)] = np.bincount(i, h, n) + np.bincount(j, h, n) + diag_extra
    return m


def anchor_groups(hessian: Float, labels: Int) -> Float:
    """Hessian plus c * (1 within each group) on its leading strengths block.

    The result is invertible and its inverse keeps strengths centred within each group.
    """
    n = labels.size
    out = hessian.copy()
    c = max(float(np.mean(np.diag(hessian)[:n])), 1e-12) / max(n, 1)
    out[:n, :n] += c * (labels[:, None] == labels[None, :])
    return out


@dataclass(frozen=True)
class Structure:
    """Which models an unpenalised fit can rate, and in which group
    (:mod:`leaderboard.engine.ratings`).

    ``group`` numbers the rateable sets 0, 1, ... biggest first (-1: not rated); ``component``
    numbers the connected groups of the comparison graph the same way (-1: no battles).
    """

    component: Int
    identifiable: NDArray[np.bool_]
    reason: tuple[str, ...]  # "" when identifiable
    n_components: int
    group: Int
    n_groups: int


def _numbered_biggest_first(labels: Int, members: NDArray[np.bool_], weight: Int) -> Int:
    """Relabel the sets ``labels[members]`` 0, 1, ... by size, then weight, then first model."""
    n = labels.size
    sets = np.unique(labels[members])
    key = [
        (-int(np.sum(members & (labels == s))), -int(weight[members & (labels == s)].sum()), int(s))
        for s in sets
    ]
    order = [int(sets[k]) for k in sorted(range(sets.size), key=lambda k: key[k])]
    number = dict(zip(order, range(len(order)), strict=True))
    return np.array([number[int(labels[m])] if members[m] else -1 for m in range(n)], np.int64)


def comparison_structure(counts: PairCounts) -> Structure:
    """Rateable groups: the strongly connected sets of two or more models.

    In the directed graph with an edge i -> j when i beat or tied j at least once (a tie is an
    edge both ways), an unpenalised strength is finite exactly for the models of a strongly
    connected set of at least two models, relative to the other models of that set. Between two
    such sets every battle went one way, so their strengths are infinitely far apart: each set is
    its own group, rated and ranked on its own battles. A model outside every such set (only
    wins, only losses, or a lone model beating one set and losing to another) is not rated.
    """
    n = counts.n_models
    battles = counts.battles_per_model()
    has = battles > 0
    component = _numbered_biggest_first(component_labels(n, counts.i, counts.j), has, battles)
    won = counts.outcome != 1
    lost = counts.outcome != 0
    src = np.concatenate([counts.i[won], counts.j[lost]])
    dst = np.concatenate([counts.j[won], counts.i[lost]])
    digraph = sparse.coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    _, strong = csgraph.connected_components(digraph, directed=True, connection="strong")
    strong = np.asarray(strong, dtype=np.int64)
    size = np.bincount(strong, weights=has, minlength=n)
    identifiable = has & (size[strong] >= 2)
    group = _numbered_biggest_first(strong, identifiable, battles)
    n_wins = np.bincount(src, minlength=n)
    n_losses = np.bincount(dst, minlength=n)
    reasons = []
    for m in range(n):
        if not has[m]:
            reasons.append("no battles")
        elif identifiable[m]:
            reasons.append("")
        elif n_losses[m] == 0:
            reasons.append("only wins")
        elif n_wins[m] == 0:
            reasons.append("only losses")
        else:
            reasons.append("in no cycle of wins or ties with other models")
    n_components = int(component.max(initial=-1)) + 1
    return Structure(
        component, identifiable, tuple(reasons), n_components, group, int(group.max(initial=-1)) + 1
    )


def battle_count_matrix(counts: PairCounts) -> Int:
    """Symmetric matrix of the number of battles between each two models."""
    n = counts.n_models
    flat = np.bincount(counts.i * n + counts.j, counts.count, n * n).reshape(n, n)
    return (flat + flat.T).astype(np.int64)


def win_fraction_matrix(counts: PairCounts) -> Float:
    """Observed share of non-tied battles between row and column won by the row (NaN if none)."""
    n = counts.n_models
    won_by_i = counts.outcome == 0
    lost = counts.outcome == 1
    keys = np.r_[counts.i[won_by_i] * n + counts.j[won_by_i], counts.j[lost] * n + counts.i[lost]]
    wins = np.bincount(keys, np.r_[counts.count[won_by_i], counts.count[lost]], n * n)
    wins = wins.reshape(n, n)
    played = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(played > 0, wins / played, np.nan)
