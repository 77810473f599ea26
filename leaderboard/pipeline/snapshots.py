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
from django.db.models import Count, Max, Min, QuerySet

from arena.models import Vote
from leaderboard.engine.pairs import aggregate_counts, battle_count_matrix, win_fraction_matrix
from leaderboard.engine.ratings import (
    ConvergenceError,
    Leaderboard,
    compute_leaderboard,
    predicted_win_matrix,
)
from leaderboard.engine.style import StyleUnavailableError
from leaderboard.models import LeaderboardSnapshot, VoterFlag
from leaderboard.pipeline import battles as battle_data
from leaderboard.pipeline.categories import Category
from leaderboard.pipeline.embeddings import method as embeddings_method
from leaderboard.pipeline.flags import voter_summary
from leaderboard.pipeline.topic_snapshots import prompt_space_store, topic_snapshot

# Relative to leaderboard/.
_ENGINE_FILES = (
    "engine/ratings.py",
    "engine/bt.py",
    "engine/intervals.py",
    "engine/pairs.py",
    "engine/style.py",
    "pipeline/categories.py",
    "pipeline/battles.py",
    "pipeline/snapshots.py",
    "engine/dedup.py",
    "engine/topics.py",
    "pipeline/topic_snapshots.py",
)


@functools.cache
def code_version() -> str:
    """A hash of the ratings code: a snapshot records which computation made it."""
    digest = hashlib.sha256()
    for name in _ENGINE_FILES:
        digest.update((Path(__file__).parents[1] / name).read_bytes())
    return digest.hexdigest()[:16]


def categories() -> list[Category]:
    return [Category.from_dict(dict(c)) for c in settings.ARENA_CATEGORIES]


# Below this many battles in a category a model's score is shown as provisional, not a number.
MIN_BATTLES = 30

# A language becomes a category ("lang:<tag>") once it has this many valid votes.
LANGUAGE_MIN_VOTES = 30


def language_categories(votes: QuerySet[Vote]) -> list[Category]:
    """One category per language tag with at least `ARENA_LEADERBOARD_LANGUAGE_MIN_VOTES` (30)
    valid votes, most voted first."""
    minimum = getattr(settings, "ARENA_LEADERBOARD_LANGUAGE_MIN_VOTES", LANGUAGE_MIN_VOTES)
    rows = (
        votes.exclude(language="")
        .values_list("language")
        .annotate(n=Count("id"))
        .filter(n__gte=minimum)
        .order_by("-n", "language")
    )
    return [Category(f"lang:{tag}", equals={"language": tag}) for tag, _ in rows]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _model_details(
    votes: QuerySet[Vote], names: list[str], index: dict[int, int]
) -> dict[str, Any]:
    """Per model: battles, share of all valid battles, first and last battle dates."""
    stats: dict[str, dict[str, Any]] = {}
    for side in ("model_a_id", "model_b_id"):
        grouped = (
            votes.values_list(side)
            .annotate(n=Count("id"), first=Min("created_at"), last=Max("created_at"))
            .order_by()
        )
        for model_id, n, first, last in grouped:
            entry = stats.setdefault(names[index[model_id]], {"battles": 0, "first": first,
                                                              "last": last})  # fmt: skip
            entry["battles"] += n
            entry["first"] = min(entry["first"], first)
            entry["last"] = max(entry["last"], last)
    total = votes.count()
    return {
        name: {
            "battles": entry["battles"],
            # A battle has two sides, so the shares of all models sum to 2.
            "share": round(entry["battles"] / total, 6) if total else 0.0,
            "first_battle": _iso(entry["first"]),
            "last_battle": _iso(entry["last"]),
        }
        for name, entry in sorted(stats.items())
    }


def _head_to_head(data: battle_data.Battles) -> dict[str, Any]:
    """Every pair that met: [i, j, wins of i, wins of j, ties (both-bad included)], i < j."""
    counts = aggregate_counts(data.model_a, data.model_b, data.outcome, len(data.names))
    pairs: dict[tuple[int, int], list[int]] = {}
    for i, j, outcome, n in zip(
        counts.i.tolist(),
        counts.j.tolist(),
        counts.outcome.tolist(),
        counts.count.tolist(),
        strict=True,
    ):
        pairs.setdefault((i, j), [0, 0, 0])[min(int(outcome), 2)] += int(n)
    return {
        "models": list(data.names),
        "pairs": [[i, j, *record] for (i, j), record in sorted(pairs.items())],
    }


# How the transparency table names the votes left out by the integrity checks.
FLAGGED_VOTER_REASON = "voter flagged by the anomaly detector"


def downsampled_reason(percentile: float) -> str:
    return f"prompt repeated beyond the {percentile:g}th percentile (down-sampled)"


def _excluded_votes(downsampling: battle_data.Downsampling | None = None) -> dict[str, int]:
    rows = (
        Vote.objects.filter(is_valid=False)
        .values_list("invalid_reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    excluded: dict[str, int] = {}
    for reason, n in rows:
        key = reason or "unspecified"
        excluded[key] = excluded.get(key, 0) + n
    if flagged := battle_data.excluded_voter_votes():
        excluded[FLAGGED_VOTER_REASON] = flagged
    if downsampling is not None and downsampling.dropped:
        excluded[downsampled_reason(downsampling.percentile)] = len(downsampling.dropped)
    return dict(sorted(excluded.items(), key=lambda item: (-item[1], item[0])))


def _history(result: dict[str, Any]) -> list[list[Any]]:
    return [
        [row["model"], row["rating"], row["lower"], row["upper"]]
        for row in result.get("rows", [])
        if row["rating"] is not None
    ]


def _number(value: float) -> float | None:
    # JSON has no NaN: an unrated model's rating is null.
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _precise(value: float) -> float | None:
    # Ratings, intervals and style coefficients are stored as computed, so that the API gives
    # the numbers `rank` gives on the same battles (to 1e-6), not numbers rounded to 4 decimals.
    return None if value is None or not math.isfinite(value) else float(value)


def _matrix(values: np.ndarray) -> list[list[float | None]]:
    return [[_number(v) for v in row] for row in values.tolist()]


def _rows(board: Leaderboard) -> list[dict[str, Any]]:
    return [
        {
            "model": row.model,
            "rating": _precise(row.rating),
            "lower": _precise(row.lower),
            "upper": _precise(row.upper),
            "rank": row.rank,
            "battles": row.battles,
            "identifiable": row.identifiable,
            "group": row.group,
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
    style_board = None
    if styled is not None and len(styled):
        try:
            style_board = compute_leaderboard(
                styled,
                method="bt",
                ci="sandwich",
                style_control=True,
                confidence=params["confidence"],
            )
        except StyleUnavailableError as error:
            # Too few votes for style control: no numbers, the reason instead.
            result["style_error"] = str(error)
        except (np.linalg.LinAlgError, ConvergenceError) as error:
            # E.g. too few battles in this category for the style model (a feature that never
            # varies is left out by the fit itself): the category keeps its plain ratings and
            # says why style control is off.
            result["style_error"] = f"style control could not be fitted: {error}"
    if style_board is not None:
        result["style_rows"] = _rows(style_board)
        result["style"] = [
            {"name": c.name, "value": _precise(c.value), "lower": _precise(c.lower),
             "upper": _precise(c.upper), "note": c.note}
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


def category_result(
    data: battle_data.Battles, *, style_control: bool, params: dict[str, Any], seed: int
) -> dict[str, Any]:
    """One category's stored result from battle arrays (style counts needed for style control);
    for snapshots built from generated or imported arrays rather than from stored votes."""
    return _category_result(data, data if style_control else None, params, seed)


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
        "dedup_percentile": settings.ARENA_DEDUP_PERCENTILE,
        "dedup_seed": settings.ARENA_DEDUP_SEED,
        "topics": settings.ARENA_TOPICS,
        "embeddings": embeddings_method(),
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
    downsampling = battle_data.downsampling_plan(
        votes, percentile=params["dedup_percentile"], seed=params["dedup_seed"]
    )
    everything = battle_data.battles_aggregated(votes, names, index, downsampling=downsampling)

    def compute(category: Category) -> dict[str, Any]:
        condition = battle_data.category_filter(category)
        subset = votes.filter(condition)
        # A category without conditions is every valid vote, already aggregated.
        data = (
            battle_data.battles_aggregated(subset, names, index, downsampling=downsampling)
            if condition
            else everything
        )
        styled = None
        if params["style_control"]:
            styled = battle_data.battles_with_style(subset, names, index, downsampling=downsampling)
        return _category_result(data, styled, params, seed)

    results = {category.name: compute(category) for category in categories()}
    language_results = {c.name: compute(c) for c in language_categories(votes)}
    # Topic categories: style control is left out of them (their votes are read per row).
    topic = topic_snapshot(
        votes, names, index, dropped=downsampling.dropped, seed=seed,
        compute=lambda data: _category_result(data, None, params, seed),
    )  # fmt: skip
    overall = results.get("overall") or next(iter(results.values()), {})
    details = {
        "votes": {
            "valid": n_battles,
            "excluded": _excluded_votes(downsampling),
            "downsampled": len(downsampling.dropped),
            "excluded_voters": VoterFlag.objects.filter(excluded=True).count(),
        },
        # The anomaly detector's decisions, source by source (a live arena's voters and each
        # imported log's judges are tested separately).
        "voters": voter_summary(),
        "dedup": downsampling.summary(),
        "models": _model_details(votes, names, index),
        "head_to_head": _head_to_head(everything),
        "min_battles": MIN_BATTLES,
    }
    # Votes made up by `seed_votes` for a demo: the pages and the API say how many. Only
    # recorded when there are any, so a real arena's snapshot stays as it was.
    if simulated := votes.filter(simulated=True).count():
        details["votes"]["simulated"] = simulated
    snapshot = LeaderboardSnapshot.objects.create(
        method="bt",
        params=params,
        n_battles=n_battles,
        battle_hash=battle_hash,
        code_version=code_version(),
        duration_ms=int((time.monotonic() - started) * 1000),
        results=results,
        language_results=language_results,
        details=details,
        history={"overall": _history(overall)},
        topic_results=topic.results,
        topics=topic.info,
    )
    prompt_space_store(snapshot, topic)
    return snapshot
