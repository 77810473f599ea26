"""Reads of the leaderboard: the stored snapshot, joined with the registry for display.

Nothing here fits a rating. A page costs a fixed number of queries whatever the number of models
or votes: the latest snapshot's metadata, the registry, and, the first time a process sees a
snapshot, its stored results and the rating history (then kept in memory: snapshots never change).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from arena.errors import NotFound
from arena.models import ArenaModel
from arena.sampling.plan import policy_battle_shares
from leaderboard.models import LeaderboardSnapshot
from leaderboard.pages import plots
from leaderboard.pipeline.snapshots import LANGUAGE_MIN_VOTES, MIN_BATTLES

# How many past snapshots the rating-history plot reads, and how many models it draws.
HISTORY_SNAPSHOTS = 60
HISTORY_MODELS = 8
# Heatmaps show the top models only: beyond ~20 the cells stop being readable.
HEATMAP_MODELS = 16
RATINGS_PLOT_MODELS = 40
_REGISTRY_FIELDS = (
    "name", "display_name", "organization", "license", "description", "enabled", "in_registry",
    "healthy", "sampling_weight", "options",
)  # fmt: skip


@dataclass
class Payload:
    """A snapshot's large parts, parsed once per process (snapshots are immutable)."""

    results: dict[str, Any]  # configured categories first, then "lang:<tag>" ones
    details: dict[str, Any]
    history: list[tuple[dt.datetime, dict[str, float]]]  # oldest first, overall ratings
    topics: dict[str, Any] = field(default_factory=dict)  # the snapshot's topics (or {})
    memo: dict[Any, Any] = field(default_factory=dict)  # rendered plots, by their inputs


_cache: dict[tuple[int, dt.datetime], Payload] = {}
_cache_lock = threading.Lock()
_CACHE_SIZE = 4


def payload_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def snapshot_latest() -> LeaderboardSnapshot | None:
    """The latest snapshot's metadata (its large JSON fields are read by `snapshot_payload`)."""
    return (
        LeaderboardSnapshot.objects.defer(
            "results", "language_results", "details", "history", "topic_results", "topics"
        )
        .order_by("-created_at", "-id")
        .first()
    )


def snapshot_payload(snapshot: LeaderboardSnapshot) -> Payload:
    """The snapshot's results, details and rating history: two queries, once per process."""
    key = (snapshot.id, snapshot.created_at)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    results, languages, details, topic_results, topics = (
        LeaderboardSnapshot.objects.filter(id=snapshot.id)
        .values_list("results", "language_results", "details", "topic_results", "topics")
        .get()
    )
    past = (
        LeaderboardSnapshot.objects.filter(created_at__lte=snapshot.created_at)
        .order_by("-created_at", "-id")
        .values_list("created_at", "history")[:HISTORY_SNAPSHOTS]
    )
    history = [
        (created, {row[0]: row[1] for row in (compact or {}).get("overall", [])})
        for created, compact in reversed(list(past))
    ]
    # JSON objects come back in key order on SQLite but not from PostgreSQL's jsonb: the order
    # of the categories is the one the snapshot's parameters list, then the languages.
    order = [name for name in snapshot.params.get("categories", []) if name in results]
    ordered = {name: results[name] for name in order}
    ordered |= {name: value for name, value in results.items() if name not in ordered}
    ordered |= {name: (languages or {})[name] for name in sorted(languages or {})}
    topic_results = topic_results or {}
    ordered |= {t["name"]: topic_results[t["name"]] for t in (topics or {}).get("topics", [])
                if t["name"] in topic_results}  # fmt: skip
    payload = Payload(ordered, details or {}, history, topics or {})
    with _cache_lock:
        while len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = payload
    return payload


def registry() -> dict[str, ArenaModel]:
    """Every registry entry by name (a few hundred rows at most), for display and sampling."""
    return {m.name: m for m in ArenaModel.objects.only(*_REGISTRY_FIELDS)}


def registry_fingerprint(models: dict[str, ArenaModel]) -> int:
    """Changes whenever anything the leaderboard shows about a registry model changes."""
    return hash(
        tuple(tuple(repr(getattr(m, f)) for f in _REGISTRY_FIELDS) for m in models.values())
    )


# Rendered boards and plots kept per snapshot; a bound, since options multiply.
_MEMO_SIZE = 64


def memo_put(payload: Payload, key: Any, value: Any) -> None:
    if len(payload.memo) >= _MEMO_SIZE:
        payload.memo.pop(next(iter(payload.memo)))
    payload.memo[key] = value


def is_deprecated(model: ArenaModel | None) -> bool:
    """Disabled, or gone from models.toml (or gone from the database altogether). Models that
    came with an imported battle log are not: they never fought here, but their record counts."""
    if model is not None and model.options.get("imported"):
        return False
    return model is None or not model.enabled or not model.in_registry


def category_result(payload: Payload, category: str) -> dict[str, Any]:
    if category not in payload.results:
        valid = ", ".join(payload.results)
        if category.startswith("lang:") and len(category) > 5:
            # A language that may simply not have its votes yet: say when it will appear.
            minimum = getattr(settings, "ARENA_LEADERBOARD_LANGUAGE_MIN_VOTES", LANGUAGE_MIN_VOTES)
            raise NotFound(
                f"No category {category!r} yet: a language gets its own category once it has "
                f"{minimum} valid votes; valid categories: {valid}."
            )
        raise NotFound(f"Unknown category {category!r}; valid categories: {valid}.")
    result: dict[str, Any] = payload.results[category]
    return result


def _status(row: dict[str, Any]) -> str:
    if row["rating"] is None or row["rank"] is None:
        return "unrated"
    return "provisional" if row["battles"] < MIN_BATTLES else "rated"


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


_STATUS_ORDER = {"rated": 0, "provisional": 1, "unrated": 2}


def table_rows(
    payload: Payload, models: dict[str, ArenaModel], *, category: str, style_control: bool
) -> list[dict[str, Any]]:
    """The rows of one category: rated models best first, then provisional, then unrated."""
    result = category_result(payload, category)
    plain = result["rows"]
    styled = {row["model"]: row for row in result.get("style_rows", [])}
    rows = result["style_rows"] if style_control and styled else plain
    plain_by_model = {row["model"]: row for row in plain}
    table = []
    for row in rows:
        model = models.get(row["model"])
        rating, lower, upper = row["rating"], row["lower"], row["upper"]
        status = _status(row)
        styled_row = styled.get(row["model"], {})
        table.append(
            {
                "model": row["model"],
                "display_name": model.display_name if model else row["model"],
                "organization": model.organization if model else "",
                "license": model.license if model else "",
                "enabled": bool(model and model.enabled),
                "deprecated": is_deprecated(model),
                "rank": row["rank"],
                "rank_plain": plain_by_model.get(row["model"], {}).get("rank"),
                "rank_style_control": styled_row.get("rank"),
                "rating": rating,
                "lower": lower,
                "upper": upper,
                "ci_plus": _delta(upper, rating),
                "ci_minus": _delta(rating, lower),
                "battles": row["battles"],
                "status": status,
                "provisional": status != "rated",
                "group": _group(row),
                "note": row["note"],
            }
        )
    # Groups biggest first (ranks and ratings compare only within one), rated before provisional
    # within a group, models in no group last; stable, so the rating order stays.
    table.sort(key=lambda r: (r["group"] is None, r["group"] or 0, _STATUS_ORDER[r["status"]]))
    return table


def _group(row: dict[str, Any]) -> int | None:
    """The rateable group of a stored row (snapshots before groups had one group: 1)."""
    if "group" in row:
        group: int | None = row["group"]
        return group
    return 1 if row["rank"] is not None else None


def leaderboard_table(
    snapshot: LeaderboardSnapshot, *, category: str, style_control: bool
) -> list[dict[str, Any]]:
    """The rows of one category, with each model's registry facts and both ranks."""
    return table_rows(
        snapshot_payload(snapshot), registry(), category=category, style_control=style_control
    )


def leaderboard_meta(
    snapshot: LeaderboardSnapshot, payload: Payload, *, category: str, style_control: bool
) -> dict[str, Any]:
    """The snapshot metadata the API and the page header show (stable field names)."""
    return {
        "snapshot_id": snapshot.id,
        "created_at": snapshot.created_at.isoformat(),
        "method": snapshot.method,
        "params": snapshot.params,
        "code_version": snapshot.code_version,
        "category": category,
        "style_control": style_control,
        "valid_votes": payload.results[category]["n_battles"],
        "groups": len({_group(row) for row in payload.results[category]["rows"]} - {None}),
        "style_control_note": payload.results[category].get("style_error", ""),
        "total_valid_votes": snapshot.n_battles,
        # Valid votes made up by `seed_votes` (a demo), among total_valid_votes.
        "simulated_votes": payload.details.get("votes", {}).get("simulated", 0),
        "min_battles": MIN_BATTLES,
        "categories": list(payload.results),
    }


# --- plots ----------------------------------------------------------------------------------


def _plot_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "rated"]


def leaderboard_plots(
    payload: Payload, rows: list[dict[str, Any]], *, category: str, style_control: bool
) -> dict[str, str]:
    """The SVG plots of one category, for the rows the table shows (rendered once, then kept)."""
    key = ("plots", category, style_control, tuple(r["model"] for r in rows))
    if key in payload.memo:
        return payload.memo[key]  # type: ignore[no-any-return]
    rated = _plot_rows(rows)
    names = {r["model"]: r["display_name"] for r in rows}
    svgs = {
        "ratings": plots.ratings_svg(
            [
                plots.RatingPoint(r["display_name"], r["rating"], r["lower"], r["upper"])
                for r in rated[:RATINGS_PLOT_MODELS]
            ]
        )
    }
    matrices = category_result(payload, category).get("matrices")
    top = [r["model"] for r in rated[:HEATMAP_MODELS]]
    if matrices and len(top) >= 2:
        where = {name: k for k, name in enumerate(matrices["models"])}
        order = [where[m] for m in top if m in where]
        labels = [names[matrices["models"][k]] for k in order]
        for kind, title in (
            ("win_fraction", "Observed share of decisive battles won, row against column"),
            ("battles", "Number of battles between each pair"),
            ("predicted", "Predicted probability that the row beats the column"),
        ):
            values = [[matrices[kind][i][j] for j in order] for i in order]
            svgs[kind] = plots.heatmap_svg(
                labels, values, kind="count" if kind == "battles" else "probability", title=title
            )
    leaders = [r["model"] for r in rated[:HISTORY_MODELS]]
    series = [
        plots.Series(
            names[m], [(when, ratings[m]) for when, ratings in payload.history if m in ratings]
        )
        for m in leaders
    ]
    svgs["history"] = plots.history_svg(series)
    memo_put(payload, key, svgs)
    return svgs


# --- sampling and the model card ------------------------------------------------------------


def sampling_rows(payload: Payload, models: dict[str, ArenaModel]) -> list[dict[str, Any]]:
    """Every model's sampling weight, the share of battles the active policy gives it today (the
    adaptive plan's when that policy draws), and the share of the valid battles it actually
    fought (in % of battles; two models per battle)."""
    stats = payload.details.get("models", {})
    pool = [m for m in models.values() if m.enabled and m.healthy and m.sampling_weight > 0]
    expected: dict[str, float] = {}
    if len(pool) >= 2:
        shares = policy_battle_shares(pool)
        expected = {m.name: s for m, s in zip(pool, shares, strict=True)}
    names = sorted(set(models) | set(stats))
    rows = []
    for name in names:
        model = models.get(name)
        rows.append(
            {
                "model": name,
                "display_name": model.display_name if model else name,
                "sampling_weight": model.sampling_weight if model else 0.0,
                "in_pool": name in expected,
                "deprecated": is_deprecated(model),
                "expected_share": expected.get(name, 0.0),
                "share": stats.get(name, {}).get("share", 0.0),
                "battles": stats.get(name, {}).get("battles", 0),
            }
        )
    rows.sort(key=lambda r: (-r["battles"], r["model"]))
    return rows


def _win_probability(rating: float | None, other: float | None) -> float | None:
    if rating is None or other is None:
        return None
    return 1.0 / (1.0 + 10 ** ((other - rating) / 400.0))


def head_to_head(
    payload: Payload, models: dict[str, ArenaModel], name: str
) -> list[dict[str, Any]]:
    """The model's record against every opponent it met (all valid votes), most battles first."""
    h2h = payload.details.get("head_to_head", {})
    names: list[str] = h2h.get("models", [])
    ratings = {r["model"]: r["rating"] for r in payload.results.get("overall", {}).get("rows", [])}
    records = []
    for i, j, wins_i, wins_j, ties in h2h.get("pairs", []):
        if name not in (names[i], names[j]):
            continue
        mine = names[i] == name
        opponent = names[j] if mine else names[i]
        wins, losses = (wins_i, wins_j) if mine else (wins_j, wins_i)
        total = wins + losses + ties
        model = models.get(opponent)
        records.append(
            {
                "opponent": opponent,
                "display_name": model.display_name if model else opponent,
                "battles": total,
                "wins": wins,
                "ties": ties,
                "losses": losses,
                # Ties count half, as in the fit.
                "observed": round((wins + ties / 2) / total, 4) if total else None,
                "predicted": _rounded(_win_probability(ratings.get(name), ratings.get(opponent))),
            }
        )
    records.sort(key=lambda r: (-r["battles"], r["opponent"]))
    return records


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def model_card(snapshot: LeaderboardSnapshot | None, name: str) -> dict[str, Any]:
    """One model: registry facts, rating per category, head-to-head record, battle shares."""
    models = registry()
    model = models.get(name)
    payload = snapshot_payload(snapshot) if snapshot is not None else None
    stats = payload.details.get("models", {}).get(name) if payload else None
    if model is None and stats is None:
        raise NotFound(f"Unknown model {name!r}.")
    card: dict[str, Any] = {
        "model": name,
        "display_name": model.display_name if model else name,
        "organization": model.organization if model else "",
        "license": model.license if model else "",
        "description": model.description if model else "",
        "enabled": bool(model and model.enabled),
        "deprecated": is_deprecated(model),
        "sampling_weight": model.sampling_weight if model else 0.0,
        "battles": (stats or {}).get("battles", 0),
        "share": (stats or {}).get("share", 0.0),
        "expected_share": 0.0,
        "first_battle": _when((stats or {}).get("first_battle")),
        "last_battle": _when((stats or {}).get("last_battle")),
        "categories": [],
        "head_to_head": [],
    }
    if payload is None:
        return card
    expected = {r["model"]: r["expected_share"] for r in sampling_rows(payload, models)}
    card["expected_share"] = expected.get(name, 0.0)
    for category, result in payload.results.items():
        row = next((r for r in result["rows"] if r["model"] == name), None)
        styled = next((r for r in result.get("style_rows", []) if r["model"] == name), None)
        entry: dict[str, Any] = {"category": category, "battles": 0, "status": "no votes"}
        if row is not None:
            entry.update(
                battles=row["battles"],
                status=_status(row),
                rating=row["rating"],
                lower=row["lower"],
                upper=row["upper"],
                ci_plus=_delta(row["upper"], row["rating"]),
                ci_minus=_delta(row["rating"], row["lower"]),
                rank=row["rank"],
                group=_group(row),
                rank_style_control=styled["rank"] if styled else None,
                rating_style_control=styled["rating"] if styled else None,
                # Ranks count within a group: "2 of 5" counts the models of its group.
                n_models=sum(_group(r) == _group(row) for r in result["rows"])
                if _group(row) is not None
                else len(result["rows"]),
                note=row["note"],
            )
        card["categories"].append(entry)
    card["head_to_head"] = head_to_head(payload, models, name)
    return card


def model_history_svg(payload: Payload, name: str, display_name: str) -> str:
    points = [(when, ratings[name]) for when, ratings in payload.history if name in ratings]
    return plots.history_svg([plots.Series(display_name, points)], title="Rating over time")


def category_descriptions(payload: Payload) -> list[dict[str, str]]:
    """Each category and the battles it keeps, in words (from the configured data)."""
    configured = {str(c["name"]): c for c in settings.ARENA_CATEGORIES}
    described = []
    for name in payload.results:
        if name.startswith("lang:"):
            text = f"votes whose first prompt was detected as language {name[5:]!r}"
        elif name.startswith("topic:"):
            terms = topic_labels(payload).get(name, "")
            text = f"votes whose first prompt is nearest the topic of: {terms}"
        else:
            spec: dict[str, Any] = dict(configured.get(name, {}))
            parts = [f"{k} = {v}" for k, v in spec.get("equals", {}).items()]
            parts += [f"{k} ≥ {v}" for k, v in spec.get("at_least", {}).items()]
            parts += [f"{k} ≤ {v}" for k, v in spec.get("at_most", {}).items()]
            if spec.get("exclude_ties"):
                parts.append("ties and both-bad votes left out")
            text = ", ".join(parts) or "every valid vote"
        described.append({"name": name, "filter": text})
    return described


_LABELS = {"overall": "Overall", "non_english": "Non-English", "no_ties": "No ties"}


def topic_labels(payload: Payload) -> dict[str, str]:
    """ "topic:<n>" -> its label (most characteristic terms), from the snapshot's topics."""
    return {t["name"]: t["label"] for t in payload.topics.get("topics", [])}


def category_label(name: str, payload: Payload | None = None) -> str:
    """A category's name for people: "lang:de" -> "Language: de", "multi_turn" -> "Multi turn",
    "topic:2" -> "Topic 2: <terms>" (terms when the payload is given)."""
    if name.startswith("topic:"):
        terms = topic_labels(payload).get(name, "") if payload is not None else ""
        return f"Topic {name[6:]}" + (f": {terms}" if terms else "")
    if name.startswith("lang:"):
        return f"Language: {name[5:]}"
    return _LABELS.get(name, name.replace("_", " ").capitalize())
