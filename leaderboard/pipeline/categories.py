"""Categories: subsets of battles described as data (filters over per-battle columns).

A category is a :class:`Category` value, typically loaded from configuration with
:meth:`Category.from_dict`; the code only knows how to apply one, not which ones exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from leaderboard.engine.ratings import TIE, Battles, Leaderboard, compute_leaderboard


@dataclass(frozen=True)
class Category:
    """A subset of battles described as data: every condition given must hold.

    ``equals`` maps a per-battle column to a value (or a list of accepted values); ``at_least`` and
    ``at_most`` bound numeric columns; ``exclude_ties`` drops ties and both-bad votes; ``since`` and
    ``until`` bound ``tstamp`` (``since <= tstamp < until``).
    """

    name: str
    equals: Mapping[str, Any] = field(default_factory=dict)
    at_least: Mapping[str, float] = field(default_factory=dict)
    at_most: Mapping[str, float] = field(default_factory=dict)
    exclude_ties: bool = False
    since: float | None = None
    until: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Category:
        """Build from a plain mapping (JSON/TOML); unknown keys are an error."""
        known = {"name", "equals", "at_least", "at_most", "exclude_ties", "since", "until"}
        unknown = set(data) - known
        if unknown or "name" not in data:
            raise ValueError(f"category needs 'name' and only {sorted(known)}; got {sorted(data)}")
        return cls(**data)


DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category("overall"),
    Category("english", equals=MappingProxyType({"language": "en"})),
    Category("non_english", equals=MappingProxyType({"is_english": False})),
    Category("multi_turn", at_least=MappingProxyType({"turns": 2})),
    Category("long_prompt", at_least=MappingProxyType({"prompt_chars": 1000})),
    Category("coding", equals=MappingProxyType({"is_code": True})),
    Category("no_ties", exclude_ties=True),
)


def category_mask(battles: Battles, category: Category) -> NDArray[np.bool_]:
    """Boolean mask of the battles in ``category``.

    Raises
    ------
    ValueError
        The category needs a column the battles lack.
    """

    def column(name: str) -> NDArray[Any]:
        if name == "tstamp" and battles.tstamp is not None:
            return battles.tstamp
        if name not in battles.columns:
            raise ValueError(f"category {category.name!r} needs the battle column {name!r}")
        return np.asarray(battles.columns[name])

    mask = np.ones(len(battles), dtype=bool)
    for name, value in category.equals.items():
        multi = isinstance(value, list | tuple | set | frozenset)
        mask &= np.isin(column(name), list(value)) if multi else column(name) == value
    for name, low in category.at_least.items():
        mask &= column(name) >= low
    for name, high in category.at_most.items():
        mask &= column(name) <= high
    if category.exclude_ties:
        mask &= np.asarray(battles.outcome) < TIE
    if category.since is not None:
        mask &= column("tstamp") >= category.since
    if category.until is not None:
        mask &= column("tstamp") < category.until
    return mask


def compute_category_leaderboards(
    battles: Battles, categories: Sequence[Category], **options: Any
) -> dict[str, Leaderboard]:
    """:func:`compute_leaderboard` for each category (options passed through)."""
    return {
        c.name: compute_leaderboard(battles.select(category_mask(battles, c)), **options)
        for c in categories
    }
