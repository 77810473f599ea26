"""Compute every category's leaderboard from the valid votes and store it as a snapshot."""

from __future__ import annotations

import functools
import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from leaderboard import battles as battle_data
from leaderboard.categories import Category
from leaderboard.models import LeaderboardSnapshot
from leaderboard.pairs import aggregate_counts, battle_count_matrix, win_fraction_matrix
from leaderboard.ratings import Leaderboard, compute_leaderboard, predicted_win_matrix

_ENGINE_FILES = (
    "ratings.py",
    "pairs.py",
    "style.py",
    "categories.py",
    "battles.py",
    "snapshots.py",
)


@functools.cache
def code_version() -> str:
    """A hash of the ratings code: a snapshot records which computation made it."""
    digest = hashlib.sha256()
    for name in _ENGINE_FILES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


def categories() -> list[Category]:
    return [Category.from_dict(dict(c)) for c in settings.ARENA_CATEGORIES]


def _number(value: float) -> float | None:
    # JSON has no NaN: an unrated model's rating is null.
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _matrix(values: np.ndarray) -> list[list[float | None]]:
    return [[_number(v) for v in row] for row in values.tolist()]


def _rows(board: Leaderboard) -> list[dict[str, Any]]:
    return [
        {
            "model": row.model,
            "rating": _number(row.rating),
            "lower": _number(row.lower),
            "upper": _number(row.upper),
            "rank": row.rank,
            "battles": row.battles,
            "identifiable": row.identifiable,
            "note": row.note,
        }
        for row in board.rows
        if row.battles > 0
    ]


def _category_result(
    data: battle_data.Battles, styled: battle_data.Battles | None, params: dict[str, Any], seed: int
) -> dict[str, Any]:
    if len(data) == 0:
        return {"n_battles": 0, "rows": []}
    board = compute_leaderboard(
        data,
        method="bt",
        ci=params["ci"],
        rounds=params["rounds"],
        confidence=params["confidence"],
        rng=np.random.default_rng(seed),
    )
    result: dict[str, Any] = {"n_battles": board.n_battles, "rows": _rows(board)}
    if styled is not None and len(styled):
        style_board = compute_leaderboard(
            styled,
            method="bt",
            ci="sandwich",
            style_control=True,
            confidence=params["confidence"],
        )
        result["style_rows"] = _rows(style_board)
        result["style"] = [
            {"name": c.name, "value": _number(c.value), "lower": _number(c.lower),
             "upper": _number(c.upper)}
            for c in style_board.style
        ]  # fmt: skip
    rated = [i for i, row in enumerate(board.rows) if row.battles > 0]
    if rated:
        names = list(data.names)
        order = [names.index(board.rows[i].model) for i in rated]
        counts = aggregate_counts(data.model_a, data.model_b, data.outcome, len(names))
        result["matrices"] = {
            "models": [names[i] for i in order],
            "battles": _matrix(battle_count_matrix(counts)[np.ix_(order, order)]),
            "win_fraction": _matrix(win_fraction_matrix(counts)[np.ix_(order, order)]),
            "predicted": _matrix(predicted_win_matrix(board.theta)[np.ix_(order, order)]),
        }
    return result


def leaderboard_snapshot_create(*, force: bool = False) -> LeaderboardSnapshot | None:
    """Store a new snapshot of every category; None when the votes have not changed since the
    latest one (unless `force`)."""
    params = {
        "ci": settings.ARENA_LEADERBOARD_CI,
        "rounds": settings.ARENA_LEADERBOARD_ROUNDS,
        "confidence": 0.95,
        "l2": 0.0,
        "categories": [c.name for c in categories()],
        "style_control": settings.ARENA_LEADERBOARD_STYLE_CONTROL,
    }
    n_battles, battle_hash = battle_data.votes_fingerprint({**params, "code": code_version()})
    latest = LeaderboardSnapshot.objects.order_by("-created_at", "-id").first()
    if not force and latest is not None and latest.battle_hash == battle_hash:
        return None
    started = time.monotonic()
    seed = int(battle_hash[:8], 16)  # same votes, same intervals
    params["seed"] = seed
    names, index = battle_data.model_names()
    votes = battle_data.valid_votes()
    results: dict[str, Any] = {}
    for category in categories():
        subset = votes.filter(battle_data.category_filter(category))
        data = battle_data.battles_aggregated(subset, names, index)
        styled = None
        if params["style_control"]:
            styled = battle_data.battles_with_style(subset, names, index)
        results[category.name] = _category_result(data, styled, params, seed)
    return LeaderboardSnapshot.objects.create(
        method="bt",
        params=params,
        n_battles=n_battles,
        battle_hash=battle_hash,
        code_version=code_version(),
        duration_ms=int((time.monotonic() - started) * 1000),
        results=results,
    )
