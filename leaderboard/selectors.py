"""Reads of the leaderboard: the latest snapshot, joined with the registry for display."""

from __future__ import annotations

from typing import Any

from arena.errors import NotFound
from arena.models import ArenaModel
from leaderboard.models import LeaderboardSnapshot


def snapshot_latest() -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.order_by("-created_at", "-id").first()


def leaderboard_table(
    snapshot: LeaderboardSnapshot, *, category: str, style_control: bool
) -> list[dict[str, Any]]:
    """The rows of one category, best first, with each model's registry facts and both ranks."""
    if category not in snapshot.results:
        valid = ", ".join(snapshot.results)
        raise NotFound(f"Unknown category {category!r}; valid categories: {valid}.")
    result = snapshot.results[category]
    plain = result["rows"]
    styled = {row["model"]: row for row in result.get("style_rows", [])}
    rows = result["style_rows"] if style_control and styled else plain
    plain_by_model = {row["model"]: row for row in plain}
    models = {m.name: m for m in ArenaModel.objects.filter(name__in=[r["model"] for r in rows])}
    table = []
    for row in rows:
        model = models.get(row["model"])
        rating, lower, upper = row["rating"], row["lower"], row["upper"]
        table.append(
            {
                "model": row["model"],
                "display_name": model.display_name if model else row["model"],
                "organization": model.organization if model else "",
                "license": model.license if model else "",
                "enabled": bool(model and model.enabled),
                "rank": row["rank"],
                "rank_plain": plain_by_model.get(row["model"], {}).get("rank"),
                "rank_style_control": styled.get(row["model"], {}).get("rank"),
                "rating": rating,
                "lower": lower,
                "upper": upper,
                "ci_plus": None if rating is None or upper is None else round(upper - rating, 1),
                "ci_minus": None if rating is None or lower is None else round(rating - lower, 1),
                "battles": row["battles"],
                "note": row["note"],
            }
        )
    return table
