"""Valid votes -> battle arrays for the ratings engine, aggregated in SQL where it can be.

Plain Bradley-Terry needs only how often each (a, b, outcome) happened: the database groups the
votes and returns at most 4 * n_models**2 rows, which `np.repeat` turns back into per-battle
arrays. Style control needs per-battle features, so it reads one row per vote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connections
from django.db.models import BooleanField, Case, Count, Max, Q, QuerySet, Sum, Value, When

from arena import facts
from arena.models import ArenaModel, Vote
from leaderboard.engine.dedup import dedup_enabled, dedup_mask, prompt_cap
from leaderboard.engine.pairs import OUTCOME_CODES, Battles
from leaderboard.models import VoterFlag
from leaderboard.pipeline.categories import Category

STYLE_NAMES = facts.STYLE_NAMES

# Category columns -> the Vote field (or annotation) they filter on.
COLUMN_FIELDS: Mapping[str, str] = {
    "language": "language",
    "is_english": "is_english",
    "turns": "turns",
    "prompt_chars": "prompt_chars",
    "is_code": "has_code",
    "tstamp": "created_at",
}


def excluded_voters() -> QuerySet[VoterFlag]:
    """The voters whose votes do not count (flagged, and not re-included by staff), as a
    subquery of their pseudonyms."""
    return VoterFlag.objects.filter(excluded=True).values("voter")


def valid_votes(*, include_named: bool = False) -> QuerySet[Vote]:
    """The votes that count, with the derived columns categories filter on: valid, blind (a
    named vote cast here, `anony=False`, never counts; an imported log's votes keep the
    import's choice) and not cast by an excluded voter. `include_named`: with the named votes
    cast here too (the exports, which label them ``anony: false``)."""
    votes = Vote.objects.filter(is_valid=True)
    if not include_named:
        votes = votes.exclude(anony=False, source="arena")
    return votes.exclude(visitor_id__in=excluded_voters()).annotate(
        is_english=Case(
            When(language="en", then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    )


def excluded_voter_votes() -> int:
    """Valid votes that do not count because their voter is excluded."""
    return Vote.objects.filter(is_valid=True, visitor_id__in=excluded_voters()).count()


@dataclass(frozen=True)
class Downsampling:
    """Which votes the prompt cap drops (see leaderboard/engine/dedup.py): ``dropped`` vote ids,
    among
    the votes of the ``capped`` prompt keys, each of which keeps ``cap`` votes."""

    percentile: float
    cap: int | None = None
    capped: tuple[str, ...] = ()
    dropped: frozenset[int] = frozenset()

    def summary(self) -> dict[str, Any]:
        return {
            "percentile": self.percentile,
            "cap": self.cap,
            "prompts_capped": len(self.capped),
            "votes_dropped": len(self.dropped),
        }


def _prompt_count_histogram(votes: QuerySet[Vote]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct votes-per-prompt values, how many prompts have each), grouped by the database:
    a handful of rows, whatever the number of prompts."""
    per_prompt = votes.values("prompt_key").annotate(n=Count("id")).order_by().values("n")
    inner, params = per_prompt.query.sql_with_params()
    with connections[votes.db].cursor() as cursor:
        cursor.execute(f"SELECT n, COUNT(*) FROM ({inner}) per_prompt GROUP BY n", params)
        rows = cursor.fetchall()
    return (
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
    )


def downsampling_plan(votes: QuerySet[Vote], *, percentile: float, seed: int) -> Downsampling:
    """The votes that the prompt cap drops from ``votes`` (none when ``percentile`` is 0).

    Votes without a prompt key (made before keys existed and not migrated) are never dropped
    and do not count towards the percentile.
    """
    if not dedup_enabled(percentile):
        return Downsampling(percentile=0.0)
    keyed = votes.exclude(prompt_key="")
    values, multiplicity = _prompt_count_histogram(keyed)
    cap = prompt_cap(values, percentile, multiplicity=multiplicity)
    over = (keyed.values("prompt_key").annotate(n=Count("id")).order_by().filter(n__gt=cap)).values(
        "prompt_key"
    )
    rows = list(keyed.filter(prompt_key__in=over).order_by("id").values_list("id", "prompt_key"))
    if not rows:
        return Downsampling(percentile=percentile, cap=cap)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    keys = np.array([r[1] for r in rows])
    keep = dedup_mask(keys, rng=np.random.default_rng(seed), cap=cap)
    return Downsampling(
        percentile=percentile,
        cap=cap,
        capped=tuple(sorted(set(keys.tolist()))),
        dropped=frozenset(ids[~keep].tolist()),
    )


def _dropped_cells(
    queryset: QuerySet[Vote], downsampling: Downsampling
) -> Counter[tuple[int, int, str]]:
    """The (model_a, model_b, outcome) cells of the dropped votes within ``queryset``."""
    cells: Counter[tuple[int, int, str]] = Counter()
    keys = list(downsampling.capped)
    # In slices: a database limits the number of parameters in one query.
    for start in range(0, len(keys), 500):
        rows = queryset.filter(prompt_key__in=keys[start : start + 500]).values_list(
            "id", "model_a_id", "model_b_id", "outcome"
        )
        for vote_id, a, b, outcome in rows.order_by():
            if vote_id in downsampling.dropped:
                cells[(a, b, outcome)] += 1
    return cells


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
    queryset: QuerySet[Vote],
    names: list[str],
    index: dict[int, int],
    *,
    downsampling: Downsampling | None = None,
) -> Battles:
    """Per-battle arrays rebuilt from per-(a, b, outcome) counts computed by the database, less
    the votes that ``downsampling`` drops."""
    cells = list(
        queryset.values_list("model_a_id", "model_b_id", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    if downsampling is not None and downsampling.dropped:
        dropped = _dropped_cells(queryset, downsampling)
        cells = [(a, b, o, n - dropped[(a, b, o)]) for a, b, o, n in cells]
    counts = np.array([n for *_, n in cells], dtype=np.int64)
    a = np.array([index[row[0]] for row in cells], dtype=np.int64)
    b = np.array([index[row[1]] for row in cells], dtype=np.int64)
    o = np.array([OUTCOME_CODES[row[2]] for row in cells], dtype=np.int64)
    return Battles(tuple(names), np.repeat(a, counts), np.repeat(b, counts), np.repeat(o, counts))


def battles_with_style(
    queryset: QuerySet[Vote],
    names: list[str],
    index: dict[int, int],
    *,
    downsampling: Downsampling | None = None,
) -> Battles:
    """One row per vote, with the style counts of both sides (tokens, headers, lists, bold),
    less the votes that ``downsampling`` drops."""
    rows = queryset.order_by("id").values_list(
        "id", "model_a_id", "model_b_id", "outcome", "tokens_a", "tokens_b", "style_a", "style_b"
    )
    dropped = downsampling.dropped if downsampling is not None else frozenset()
    n = queryset.count()
    a, b, o = (np.empty(n, dtype=np.int64) for _ in range(3))
    style_a, style_b = np.zeros((n, len(STYLE_NAMES))), np.zeros((n, len(STYLE_NAMES)))
    k = 0
    for vote_id, ma, mb, outcome, ta, tb, sa, sb in rows.iterator(chunk_size=5000):
        if vote_id in dropped:
            continue
        a[k], b[k], o[k] = index[ma], index[mb], OUTCOME_CODES[outcome]
        style_a[k] = facts.style_row(ta, sa)
        style_b[k] = facts.style_row(tb, sb)
        k += 1
    return Battles(
        tuple(names), a[:k], b[:k], o[:k], style_a=style_a[:k], style_b=style_b[:k],
        style_names=STYLE_NAMES,
    )  # fmt: skip


def votes_fingerprint(extra: Mapping[str, Any]) -> tuple[int, str]:
    """How many valid votes there are, and a hash that changes when any of them changes."""
    agg = valid_votes().aggregate(n=Count("id"), top=Max("id"), total=Sum("id"))
    key = f"{agg['n']}:{agg['top']}:{agg['total']}:{sorted(extra.items())}"
    return int(agg["n"]), hashlib.sha256(key.encode()).hexdigest()
