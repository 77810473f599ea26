"""Valid votes -> battle arrays for the ratings engine, aggregated in SQL where it can be.

Plain Bradley-Terry needs only how often each (a, b, outcome) happened: the database groups the
votes and returns at most 4 * n_models**2 rows, which `np.repeat` turns back into per-battle
arrays. Style control needs per-battle features, so it reads one row per vote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from django.db.models import BooleanField, Case, Count, Max, Q, QuerySet, Sum, Value, When

from arena.models import ArenaModel, Vote
from leaderboard.categories import Category
from leaderboard.pairs import OUTCOME_CODES, Battles

STYLE_NAMES = ("tokens", "headers", "lists", "bold")

# Category columns -> the Vote field (or annotation) they filter on.
COLUMN_FIELDS: Mapping[str, str] = {
    "language": "language",
    "is_english": "is_english",
    "turns": "turns",
    "prompt_chars": "prompt_chars",
    "is_code": "has_code",
    "tstamp": "created_at",
}


def valid_votes() -> QuerySet[Vote]:
    """The votes that count, with the derived columns categories filter on."""
    return Vote.objects.filter(is_valid=True).annotate(
        is_english=Case(
            When(language="en", then=Value(True)), default=Value(False), output_field=BooleanField()
        )
    )


def category_filter(category: Category) -> Q:
    """The category as a database filter (the same conditions `category_mask` applies)."""

    def field(column: str) -> str:
        if column not in COLUMN_FIELDS:
            raise ValueError(f"category {category.name!r}: unknown battle column {column!r}")
        return COLUMN_FIELDS[column]

    q = Q()
    for column, value in category.equals.items():
        if isinstance(value, list | tuple | set | frozenset):
            q &= Q(**{f"{field(column)}__in": list(value)})
        else:
            q &= Q(**{field(column): value})
    for column, low in category.at_least.items():
        q &= Q(**{f"{field(column)}__gte": low})
    for column, high in category.at_most.items():
        q &= Q(**{f"{field(column)}__lte": high})
    if category.exclude_ties:
        q &= Q(outcome__in=["model_a", "model_b"])
    if category.since is not None:
        q &= Q(created_at__gte=dt.datetime.fromtimestamp(category.since, dt.UTC))
    if category.until is not None:
        q &= Q(created_at__lt=dt.datetime.fromtimestamp(category.until, dt.UTC))
    return q


def model_names() -> tuple[list[str], dict[int, int]]:
    """Every model that ever fought (by id), and its index in the arrays."""
    rows = list(ArenaModel.objects.order_by("id").values_list("id", "name"))
    return [name for _, name in rows], {pk: index for index, (pk, _) in enumerate(rows)}


def battles_aggregated(
    queryset: QuerySet[Vote], names: list[str], index: dict[int, int]
) -> Battles:
    """Per-battle arrays rebuilt from per-(a, b, outcome) counts computed by the database."""
    cells = list(
        queryset.values_list("model_a_id", "model_b_id", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = np.array([n for *_, n in cells], dtype=np.int64)
    a = np.array([index[row[0]] for row in cells], dtype=np.int64)
    b = np.array([index[row[1]] for row in cells], dtype=np.int64)
    o = np.array([OUTCOME_CODES[row[2]] for row in cells], dtype=np.int64)
    return Battles(tuple(names), np.repeat(a, counts), np.repeat(b, counts), np.repeat(o, counts))


def battles_with_style(
    queryset: QuerySet[Vote], names: list[str], index: dict[int, int]
) -> Battles:
    """One row per vote, with the style counts of both sides (tokens, headers, lists, bold)."""
    rows = queryset.order_by("id").values_list(
        "model_a_id", "model_b_id", "outcome", "tokens_a", "tokens_b", "style_a", "style_b"
    )
    n = queryset.count()
    a, b, o = (np.empty(n, dtype=np.int64) for _ in range(3))
    style_a, style_b = np.zeros((n, len(STYLE_NAMES))), np.zeros((n, len(STYLE_NAMES)))
    for k, (ma, mb, outcome, ta, tb, sa, sb) in enumerate(rows.iterator(chunk_size=5000)):
        a[k], b[k], o[k] = index[ma], index[mb], OUTCOME_CODES[outcome]
        style_a[k] = (ta, *(sa.get(key, 0) for key in STYLE_NAMES[1:]))
        style_b[k] = (tb, *(sb.get(key, 0) for key in STYLE_NAMES[1:]))
    return Battles(tuple(names), a, b, o, style_a=style_a, style_b=style_b, style_names=STYLE_NAMES)


def votes_fingerprint(extra: Mapping[str, Any]) -> tuple[int, str]:
    """How many valid votes there are, and a hash that changes when any of them changes."""
    agg = Vote.objects.filter(is_valid=True).aggregate(
        n=Count("id"), top=Max("id"), total=Sum("id")
    )
    key = f"{agg['n']}:{agg['top']}:{agg['total']}:{sorted(extra.items())}"
    return int(agg["n"]), hashlib.sha256(key.encode()).hexdigest()
