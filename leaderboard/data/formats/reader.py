"""Read a battle log file into battles: in columns when it has no texts, else record by record.

The one entry point over the three readers (formats/columnar.py, formats/arena.py,
formats/pairwise.py); it sits above them so that none of them imports another's caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leaderboard.data.formats.arena import (
    BattleLogError,
    _build,
    _is_parquet,
    _parquet_columns_check,
    battle_records,
)
from leaderboard.data.formats.columnar import read_columns
from leaderboard.data.formats.pairwise import is_pairwise, record_from_pairwise
from leaderboard.engine.pairs import Battles


def read_battle_log(
    path: str | Path,
    *,
    anony_only: bool = False,
    require_style: bool = False,
    columnar: bool = True,
) -> Battles:
    """Read a battle log file (JSON array, JSON Lines, Parquet, or the 55k CSV layout): the
    files ``import_battles`` reads, record by record with the importer's checks and facts.

    A log without texts is read in columns (:mod:`leaderboard.data.formats.columnar`): the same
    battles, or the same error, as record by record, which ``columnar=False`` forces.

    Raises
    ------
    BattleLogError
        The file is missing, unreadable or holds a bad record.
    """
    path = Path(path)
    if _is_parquet(path):
        _parquet_columns_check(path)
    if columnar:
        battles = read_columns(path, anony_only=anony_only, require_style=require_style)
        if battles is not None:
            return battles

    def records() -> Iterator[tuple[str, Any]]:
        for where, raw in battle_records(path):
            if not isinstance(raw, BattleLogError) and is_pairwise(raw):
                raw = record_from_pairwise(where, raw)
            yield where, raw

    return _build(records(), anony_only, require_style)
