"""The importer's columnar path: a battle log without texts, read and checked in columns
(:func:`leaderboard.data.formats.columnar.import_columns`), becomes rows column by column.

The rows are the ones the per-record path (:class:`leaderboard.data.importer._Rows`) writes for the
same file: the same external ids (a record's hash where it has no ``question_id``, numbered in
file order), judges, facts and times; only the random battle ids differ. What is per distinct
value (model ids, judge hashes, outcomes, languages) is computed once per value; what is per
record (a record's hash, the prompt key, the time) runs in a tight loop without a dict or a
check per record. A log with a bad record, texts or an unexpected column type takes the
per-record path, which skips or stops at the bad record as asked.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection
from django.utils import timezone

from arena.visitors import keyed_hash
from leaderboard.data.formats.arena import LANGUAGE_TAGS, OUTCOME_NAMES, BattleLogError
from leaderboard.data.formats.arrow_columns import arrow_encode, arrow_numpy
from leaderboard.data.formats.columnar import Checked, import_columns
from leaderboard.data.import_ids import RecordIds, SeenIds
from leaderboard.data.import_store import (
    _NAME_MAX,
    BULK_BATCH,
    BatchWriter,
    _Rows,
    imported_ids,
    source_has_votes,
)
from leaderboard.engine.pairs import OUTCOME_CODES


def columns_import(*, path: Path, store: _Rows, progress: Callable[[int], None] | None) -> bool:
    """Import ``path`` by columns into ``store``; False (nothing written) when the log needs the
    per-record path."""
    try:
        checked = import_columns(path)
    except BattleLogError:
        return False  # the per-record path names it, and skips it or stops there
    if checked is None:
        return False
    table = checked.table
    for side in ("model_a", "model_b"):
        if any(len(name) > _NAME_MAX for name in arrow_encode(table[side])[1]):
            return False
    writer = BatchWriter(store)
    try:
        _batches(table, checked, store, writer, progress)
    finally:
        writer.close()
    return True


def _batches(
    table: pa.Table,
    checked: Checked,
    store: _Rows,
    writer: BatchWriter,
    progress: Callable[[int], None] | None,
) -> None:
    numbered = RecordIds()
    clock = _clock()
    # A source without votes yet: what is already imported is what this import stored.
    seen = SeenIds() if not source_has_votes(store.source) else None
    for start in range(0, table.num_rows, BULK_BATCH):
        stop = min(start + BULK_BATCH, table.num_rows)
        part = table.slice(start, stop - start)
        ids = _external_ids(part, checked, start, stop, numbered)
        if seen is not None:
            present = seen.present(ids)
        else:
            present = imported_ids(store.source, ids) | writer.in_flight(ids)
        keep = []
        for i, external_id in enumerate(ids):
            if external_id in present:
                store.result.already_present += 1
                continue
            present.add(external_id)  # a repeat later in the same batch is present too
            keep.append(i)
        store.result.read = stop
        if keep:
            if len(keep) < len(ids):
                part, ids = part.take(keep), [ids[i] for i in keep]
            if seen is not None:
                seen.add(ids)
            writer.write(_rows(store, part, ids, f"{next(clock):010x}"), ids)
            store.result.without_text += len(keep)
        if progress:
            progress(store.result.read)


def _clock() -> Iterator[int]:
    """An increasing 40-bit number per batch (the time in units of 16.8 ms, or one more than the
    last), the prefix of the batch's battle ids: a batch's battles then go into the indexes of
    the battle id (the battle's key, the vote's unique battle_id; before migration 0008 also
    their ``varchar_pattern_ops`` twins on PostgreSQL) side by side instead of at random places,
    which took a fifth (SQLite) to a third (PostgreSQL) less CPU per battle. 10 + 22
    characters: the column's 32, and the random part alone is as long as a live battle's id."""
    last = 0
    while True:
        last = max(last + 1, time.time_ns() >> 24)
        yield last


def _external_ids(
    part: pa.Table, checked: Checked, start: int, stop: int, numbered: RecordIds
) -> list[str]:
    """The records' ``question_id``, or the hash of the raw record as the per-record path makes
    it (:func:`leaderboard.data.importer._checked`)."""
    ids: list[Any] = [None] * (stop - start)
    if "question_id" in part.column_names and not pa.types.is_null(part["question_id"].type):
        ids = pc.cast(part["question_id"], pa.string()).to_pylist()
    missing = [i for i, external_id in enumerate(ids) if not external_id]
    if not missing:
        return ids
    texts = _json_texts(part) if checked.parquet else None
    if texts is None:
        records = checked.records(start, stop)
        texts = [
            json.dumps(records[i], sort_keys=True, ensure_ascii=False, default=str)
            for i in range(len(ids))
        ]
    for i, external_id in zip(missing, numbered.ids(texts[i] for i in missing), strict=True):
        ids[i] = external_id
    return ids


def _json_texts(part: pa.Table) -> list[str] | None:
    """Each row of a Parquet table as ``json.dumps(row, sort_keys=True, ensure_ascii=False)``
    writes the dict ``to_pylist`` gives for it, assembled from each column's values as JSON (a
    text column: each distinct value once); None for a column of another type than text,
    boolean, integer or finite float."""
    names = sorted(part.column_names)
    values = []
    for name in names:
        col = part[name]
        t = col.type
        if pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
            values.append(_per_value(part, name, _dumps, "null"))
        elif (pa.types.is_boolean(t) or pa.types.is_integer(t)) and not col.null_count:
            python = col.to_pylist()
            if pa.types.is_boolean(t):
                values.append(["true" if v else "false" for v in python])
            else:
                values.append(list(map(int.__repr__, python)))
        elif pa.types.is_boolean(t) or pa.types.is_integer(t):
            values.append(list(map(_dumps, col.to_pylist())))
        elif pa.types.is_floating(t):
            floats = col.to_pylist()
            if col.null_count or not all(map(math.isfinite, floats)):
                return None  # NaN, infinities and nulls: rare, json.dumps' own spelling
            values.append(list(map(float.__repr__, floats)))
        elif pa.types.is_null(t):
            values.append(["null"] * part.num_rows)
        else:
            return None
    template = "{" + ", ".join(_dumps(name).replace("%", "%%") + ": %s" for name in names) + "}"
    return [template % row for row in zip(*values, strict=True)]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _per_value(part: pa.Table, name: str, convert: Callable[[Any], Any], missing: Any) -> list[Any]:
    """A text column, each distinct value converted once; ``missing`` where there is none."""
    if name not in part.column_names:
        return [missing] * part.num_rows
    codes, values = arrow_encode(part[name])
    lookup = np.empty(len(values) + 1, dtype=object)
    lookup[:] = [convert(v) for v in values] + [missing]
    out: list[Any] = lookup[codes].tolist()
    return out


def _numbers(part: pa.Table, name: str, fill: Any, dtype: Any) -> np.ndarray:
    if name not in part.column_names or pa.types.is_null(part[name].type):
        return np.full(part.num_rows, fill, dtype=dtype)
    col = part[name]
    if dtype is np.float64:
        col = pc.cast(col, pa.float64(), safe=False)
    return arrow_numpy(col, dtype, fill)


def _times(store: _Rows, tstamp: list[float]) -> list[Any]:
    """The records' times as :class:`_Rows` stores them (no time: now). On SQLite with the
    database in UTC, the text ``adapt_datetimefield_value`` makes, without its checks per value."""
    now, utc = timezone.now(), dt.UTC
    when = [dt.datetime.fromtimestamp(t, utc) if t == t else now for t in tstamp]
    if connection.vendor == "sqlite" and connection.timezone is dt.UTC:
        return [str(w.replace(tzinfo=None)) for w in when]
    return [store.stored_time(w) for w in when]


def _model_ids(store: _Rows, part: pa.Table) -> tuple[list[int], list[int]]:
    """Both sides' model ids; models new to the arena are created in the order the per-record
    path meets them (record by record, side a first)."""
    coded = [arrow_encode(part[side]) for side in ("model_a", "model_b")]
    firsts = []
    for side, (codes, values) in enumerate(coded):
        distinct, first = np.unique(codes, return_index=True)
        firsts += [(int(f), side, values[c]) for c, f in zip(distinct, first, strict=True)]
    for _, _, name in sorted(firsts):
        store._model(name)
    out = []
    for codes, values in coded:
        # A batch of a Parquet file keeps its row group's whole dictionary: names that occur
        # only in later batches are in ``values`` but not created yet (never looked up here).
        lookup = np.array([store.models.get(v, 0) for v in values] + [0], dtype=np.int64)
        out.append(lookup[codes].tolist())
    return out[0], out[1]


def _rows(store: _Rows, part: pa.Table, ids: list[str], prefix: str) -> list[list[tuple[Any, ...]]]:
    """The battles' and the votes' rows, in the order of :attr:`_Rows.tables`' fields."""
    n = part.num_rows
    model_a, model_b = _model_ids(store, part)
    source = store.source
    visitor = _per_value(
        part, "judge", lambda judge: keyed_hash("judge", f"{source}\0{judge}") if judge else "", ""
    )
    reason = _per_value(part, "exclusion_reason", lambda r: r, "")
    stored = _times(store, _numbers(part, "tstamp", np.nan, np.float64).tolist())
    turns = _numbers(part, "turn", 0, np.int64)
    turns[turns == 0] = 1  # `turn or 1`
    blake2b = hashlib.blake2b
    # The batch's prefix (_clock), then 128 random bits and more, URL-safe, as
    # arena.models.new_battle_id: 18 random bytes are 24 characters, of which 22 are kept
    # (132 bits), encoded in one call for the whole batch.
    encoded = base64.urlsafe_b64encode(os.urandom(18 * n)).decode()
    battle_ids = [prefix + encoded[i : i + 22] for i in range(0, 24 * n, 24)]
    columns: dict[str, list[Any]] = {
        "id": battle_ids, "battle_id": battle_ids,
        "model_a_id": model_a, "model_b_id": model_b,
        "outcome": _per_value(part, "winner", lambda w: OUTCOME_NAMES[OUTCOME_CODES[w]], None),
        "visitor_id": visitor,
        "is_valid": [not r for r in reason],
        "invalid_reason": [r[:200] for r in reason],
        "language": _per_value(part, "language", lambda v: LANGUAGE_TAGS.get(v, v), ""),
        "turns": turns.tolist(),
        "prompt_chars": _numbers(part, "prompt_chars", 0, np.int64).tolist(),
        "has_code": _numbers(part, "is_code", False, bool).tolist(),
        "anony": _numbers(part, "anony", False, bool).tolist(),
        "battle_started_at": stored, "created_at": stored,
        "external_id": ids,
        # records.prompt_hash of a battle without text: its question id.
        "prompt_key": [blake2b(f"\0id:{i}".encode(), digest_size=16).hexdigest() for i in ids],
    }  # fmt: skip
    constant = {
        "ip_hash": "", "moderation": "[]", "simulated": False, "source": source,
        "conversation_a": "[]", "conversation_b": "[]", "style_a": "{}", "style_b": "{}",
        "tokens_a": 0, "tokens_b": 0,
    }  # fmt: skip
    for name, value in constant.items():
        columns[name] = [value] * n  # a list: both tables read some
    return [
        list(
            zip(
                *[columns.get(f.attname) or [store.defaults[f.attname]] * n for f in fields],
                strict=True,
            )
        )
        for _, fields in store.tables
    ]
