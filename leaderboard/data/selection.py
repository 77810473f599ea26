"""Which votes an export takes: the filters, their query, and what the export reports.

Apart from the export itself (leaderboard/data/export.py) so that the dataset card, which
describes the filters and the result, needs only this module.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db.models import BooleanField, Case, Q, QuerySet, Value, When

from arena.models import ArenaModel, Vote
from leaderboard.pipeline.battles import category_filter, valid_votes
from leaderboard.pipeline.categories import Category

# "exclude moderated": a vote on answers that moderation flagged (arena/moderation.py keeps the
# flags on the battle) carries an invalid_reason that starts with this
# (arena.moderation.VOTE_REASON_PREFIX); imported logs may say "moderated" the same way.
MODERATED_PREFIX = "moderat"


class ExportError(ValueError):
    """The export cannot run as asked; the message is one line naming the option at fault."""


@dataclass(frozen=True)
class ExportFilters:
    """Which votes to export. Empty lists mean "all"; every condition given must hold."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    models: Sequence[str] = ()
    categories: Sequence[str] = ()
    languages: Sequence[str] = ()
    min_turns: int | None = None
    max_turns: int | None = None
    include_invalid: bool = False
    exclude_moderated: bool = False
    # Votes made up by seed_votes (a demo) are left out unless asked for.
    include_simulated: bool = False

    def describe(self) -> list[str]:
        """The filters in words, for the dataset card."""
        lines = [
            "all votes, including those excluded from the leaderboard"
            if self.include_invalid
            else "valid votes only (those the leaderboard counts, and the side-by-side votes "
            "cast with the names shown, marked anony: false)"
        ]
        lines.append(
            "simulated votes (seed_votes) included, marked simulated: true"
            if self.include_simulated
            else "simulated votes (seed_votes) left out"
        )
        if self.exclude_moderated:
            lines.append(f"votes whose exclusion reason starts with '{MODERATED_PREFIX}' removed")
        if self.since or self.until:
            lines.append(f"voted from {self.since or 'the start'} until {self.until or 'now'}")
        if self.models:
            lines.append(f"battles involving {', '.join(self.models)}")
        if self.categories:
            lines.append(f"battles in the categories {', '.join(self.categories)}")
        if self.languages:
            lines.append(f"prompts in {', '.join(self.languages)}")
        if self.min_turns is not None or self.max_turns is not None:
            lines.append(f"turns between {self.min_turns or 1} and {self.max_turns or 'any'}")
        return lines


@dataclass
class ExportResult:
    output: Path
    fmt: str
    file_format: str
    rows: int = 0
    records: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    duplicates_dropped: int = 0
    capped_dropped: int = 0
    prompt_cap: int | None = None
    languages: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    workers: int = 1  # export processes that ran


def configured_categories() -> list[Category]:
    return [Category.from_dict(c) for c in settings.ARENA_CATEGORIES]


def export_queryset(filters: ExportFilters, categories: Sequence[Category]) -> QuerySet[Vote]:
    """The votes to export, in id order, with one boolean ``tag_<i>`` per configured category."""
    if filters.include_invalid:
        # The same derived column as valid_votes(), without its validity filter.
        english = When(language="en", then=Value(True))
        qs = Vote.objects.annotate(
            is_english=Case(english, default=Value(False), output_field=BooleanField())
        )
    else:
        qs = valid_votes(include_named=True)
    if not filters.include_simulated:
        qs = qs.filter(simulated=False)
    if filters.exclude_moderated:
        qs = qs.exclude(invalid_reason__istartswith=MODERATED_PREFIX)
    if filters.since:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__lt=filters.until)
    if filters.models:
        known = set(
            ArenaModel.objects.filter(name__in=filters.models).values_list("name", flat=True)
        )
        if missing := sorted(set(filters.models) - known):
            raise ExportError(f"--model: no model named {', '.join(missing)}")
        qs = qs.filter(Q(model_a__name__in=filters.models) | Q(model_b__name__in=filters.models))
    if filters.languages:
        qs = qs.filter(language__in=filters.languages)
    if filters.min_turns is not None:
        qs = qs.filter(turns__gte=filters.min_turns)
    if filters.max_turns is not None:
        qs = qs.filter(turns__lte=filters.max_turns)
    by_name = {c.name: c for c in categories}
    if filters.categories:
        if missing := sorted(set(filters.categories) - set(by_name)):
            raise ExportError(
                f"--category: unknown {', '.join(missing)} (known: {', '.join(by_name)})"
            )
        wanted = Q()
        for name in filters.categories:
            wanted |= category_filter(by_name[name]) or Q(pk__isnull=False)
        qs = qs.filter(wanted)
    tags = {}
    for i, category in enumerate(categories):
        condition = category_filter(category)
        # An empty condition (the "overall" category) is every vote; When() refuses an empty Q.
        tags[f"tag_{i}"] = (
            Case(
                When(condition, then=Value(True)), default=Value(False), output_field=BooleanField()
            )
            if condition
            else Value(True, output_field=BooleanField())
        )
    return qs.annotate(**tags).order_by("id")
