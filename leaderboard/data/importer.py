"""Battle logs in: FastChat/LMSYS battle records become Battles and Votes marked with their source.

Imported votes have ``source = "import:<label>"`` and ``external_id`` = the record's
``question_id`` (or a stable hash of the record when it has none), which makes a re-import of the
same file a no-op. Models the arena does not know are created disabled and outside the registry,
so they are rated but never sampled. The judge becomes a keyed hash of the source and the judge,
like a local visitor id; the raw value is never stored. The facts come from
:func:`leaderboard.data.formats.arena.record_facts`, which `rank` uses on files too. Records are
read one at a time and stored in batches, so a large log streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from leaderboard.data.formats.arena import (
    BattleLogError,
    battle_record_check,
    battle_records,
)
from leaderboard.data.formats.pairwise import is_pairwise, record_from_pairwise
from leaderboard.data.import_ids import RecordIds
from leaderboard.data.import_store import (
    _NAME_MAX,
    _SOURCE_MAX,
    BULK_BATCH,
    ImportResult,
    _Rows,
    _Store,
)

BATCH = 500
MAX_ERRORS_KEPT = 20


def battles_import(
    *,
    path: str | Path,
    source: str | None = None,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
    bulk: bool = True,
    columns: bool = True,
) -> ImportResult:
    """Import a battle log (JSON, JSON Lines, Parquet, or the 55k CSV layout).

    Parameters
    ----------
    source : str, optional
        The label in ``source = "import:<label>"``; the file name by default. Importing the same
        records under the same label again changes nothing.
    strict : bool
        Stop at the first bad record instead of skipping and counting it (the records before
        it are stored).
    progress : callable, optional
        Called with the number of records read so far, every batch.
    bulk : bool
        Write rows by raw SQL, many records a transaction (COPY on PostgreSQL); False writes
        model instances with ``bulk_create``, 500 a transaction: the same rows, slower.
    columns : bool
        With ``bulk``, a log without texts is read, checked and turned into rows by columns
        (:mod:`leaderboard.data.import_columns`); False reads it record by record: the same rows.

    Raises
    ------
    BattleLogError
        The file cannot be read, or (with ``strict``) a record is bad: one line naming the file,
        the line or record, and the field.
    """
    started = time.monotonic()
    path = Path(path)
    label = f"import:{source or path.name}"[:_SOURCE_MAX]
    result = ImportResult(path=path, source=label)
    store = _Rows(label, result) if bulk else _Store(label, result)
    if columns and isinstance(store, _Rows) and _columns_import(path, store, progress):
        result.seconds = time.monotonic() - started
        return result
    size = BULK_BATCH if bulk else BATCH
    pending: list[tuple[str, dict[str, Any]]] = []
    try:
        for external_id, record in _checked(path, strict, result):
            pending.append((external_id, record))
            if len(pending) >= size:
                store.save(pending)
                pending = []
                if progress:
                    progress(result.read)
    finally:
        # Also on a strict stop: the records before the bad one are kept, so a re-run after
        # fixing the file imports only what is left.
        store.save(pending)
    if progress:
        progress(result.read)
    result.seconds = time.monotonic() - started
    return result


def _columns_import(path: Path, store: _Rows, progress: Callable[[int], None] | None) -> bool:
    from leaderboard.data.import_columns import columns_import

    return columns_import(path=path, store=store, progress=progress)


def _checked(
    path: Path, strict: bool, result: ImportResult
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(external id, validated record) for each good record; bad ones are counted or raised."""
    numbered = RecordIds()
    for where, raw in battle_records(path):
        result.read += 1
        try:
            if isinstance(raw, BattleLogError):
                raise raw
            if is_pairwise(raw):
                raw = record_from_pairwise(where, raw)
            record = battle_record_check(where, raw)
            for side in ("model_a", "model_b"):
                if len(record[side]) > _NAME_MAX:
                    raise BattleLogError(f"{where}: field {side!r} is longer than {_NAME_MAX}")
        except BattleLogError as exc:
            if strict:
                raise
            result.bad += 1
            if len(result.errors) < MAX_ERRORS_KEPT:
                result.errors.append(str(exc))
            continue
        external_id = record["question_id"]
        if not external_id:
            # No id in the log: the record's content is its identity. Identical records (the
            # same judge, models and time) are numbered in file order, so none is lost and a
            # re-import of the same file maps each to the same id.
            external_id = numbered.one(json.dumps(raw, sort_keys=True, ensure_ascii=False,
                                                  default=str))  # fmt: skip
        yield external_id, record
