"""The fast path of :func:`leaderboard.data.formats.reader.read_battle_log`: a log without texts,
read in columns.

A battle log without conversation texts or ``conv_metadata`` (a ``clean_battle`` log, or this
arena's export of votes imported without text) needs no per-record facts: every battle's facts are
its own columns. Such a log is read as columns (Parquet: only the columns the ratings and categories
use; JSON Lines: pyarrow's multi-threaded JSON reader; a JSON array: the same, on the array
rewritten as JSON Lines as it streams, formats/json_array.py), checked in bulk with
the same rules as :func:`~leaderboard.data.formats.arena.battle_record_check`, and turned into
:class:`~leaderboard.engine.pairs.Battles` without a Python object per battle.

The checks never accept a record the per-record check refuses; they may flag one it accepts (a JSON
Lines column of floats holding ``2`` and ``2.5`` cannot tell ``2`` from ``2.0``). The first flagged
record is then checked by :func:`battle_record_check`, whose message (record number and field) is
the one raised; if it passes, the log takes the per-record path. A log with texts or
``conv_metadata``, or that pyarrow cannot read, takes the per-record path too
(:func:`read_columns` returns None), which gives the same battles or the same error."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leaderboard.data.formats.arena import COLUMNS, LANGUAGE_TAGS, _fail, battle_record_check
from leaderboard.data.formats.arrow_columns import (
    arrow_encode,
    arrow_is_text,
    arrow_mask,
    arrow_numpy,
)
from leaderboard.engine.pairs import OUTCOME_CODES, Battles

# What the fast path reads; every other field of a record is ignored by the per-record check too.
TEXTS = ("conversation_a", "conversation_b", "conv_metadata")
STRINGS = ("judge", "language", "exclusion_reason")
FIELDS = ("model_a", "model_b", "winner", "question_id", *STRINGS, "anony", "tstamp", "turn",
          "prompt_chars", "is_code", *TEXTS)  # fmt: skip


_T = TypeVar("_T")


class _Slow(Exception):
    """The log needs the per-record path."""


def read_columns(path: Path, *, anony_only: bool, require_style: bool) -> Battles | None:
    """The battles of a text-free log read in columns, or None when it needs the per-record path.

    Raises
    ------
    leaderboard.data.formats.arena.BattleLogError
        A bad record: the same one line as the per-record reader.
    """

    def finish(table: pa.Table, raw: Raw, exact: bool) -> Battles:
        return _battles(table, raw, anony_only, require_style, exact=exact)

    return _read(path, finish, every_column=False)


@dataclass
class Checked:
    """A text-free log read in columns and checked (:func:`import_columns`): ``table`` holds its
    columns, ``records(start, stop)`` its raw records as
    :func:`~leaderboard.data.formats.arena.battle_records` gives them (for the ids made by hashing a
    record; asked for in file order)."""

    table: pa.Table
    records: Callable[[int, int], list[Any]]
    parquet: bool


def import_columns(path: Path) -> Checked | None:
    """The checked columns of a text-free log for the importer, or None when the log needs the
    per-record path (texts, metadata, another layout, or a column of an unexpected type).

    Raises
    ------
    leaderboard.data.formats.arena.BattleLogError
        A bad record: the same one line as the per-record check.
    """

    def finish(table: pa.Table, raw: Raw, exact: bool) -> Checked:
        _check(table, raw, exact=exact)
        from leaderboard.data.formats.arena import _is_parquet

        return Checked(table, _records_of(path, table), parquet=_is_parquet(path))

    return _read(path, finish, every_column=True)


def _records_of(path: Path, table: pa.Table) -> Callable[[int, int], list[Any]]:
    from leaderboard.data.formats.arena import _is_parquet

    if _is_parquet(path):
        # What battle_records gives: a batch's to_pylist, every column of the file.
        return lambda start, stop: table.slice(start, stop - start).to_pylist()
    with path.open("rb") as fh:
        array = fh.read(4096).lstrip().startswith(b"[")
    if array:
        from leaderboard.data.formats.json_array import JsonArray

        # Each record decoded alone where it lies in the file (found by the byte scanner).
        return JsonArray(path, table).records
    lines = _raw_lines(path)
    done = 0

    def records(start: int, stop: int) -> list[Any]:
        nonlocal done
        for _ in range(start - done):
            next(lines)
        done = stop
        return [next(lines) for _ in range(stop - start)]

    return records


def _raw_lines(path: Path) -> Iterator[Any]:
    """The records of a JSON Lines file or a JSON array as the per-record reader decodes them."""
    from leaderboard.data.formats.arena import battle_records

    return (record for _, record in battle_records(path))


Raw = Callable[[int], tuple[str, Any]]


def _read(
    path: Path, finish: Callable[[pa.Table, Raw, bool], _T], *, every_column: bool
) -> _T | None:
    from leaderboard.data.formats.arena import _is_parquet

    try:
        if _is_parquet(path):
            return _parquet(path, finish, every_column)
        if path.suffix == ".csv":
            return None
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip()
        if not head:
            return None
        if head.startswith(b"["):
            return _json_array(path, finish)
        return _json_lines(path, finish)
    except _Slow:
        return None


# --- Formats: each gives the columns (arrow) and a way to fetch one raw record for messages ----


def _parquet(path: Path, finish: Callable[[pa.Table, Raw, bool], _T], every_column: bool) -> _T:
    import pyarrow.parquet as pq

    try:
        # Text columns come as dictionaries (as Parquet stores them): one Python string per
        # distinct model name, not per row.
        names = pq.read_schema(path).names
        texts = [f for f in ("model_a", "model_b", "winner", "language") if f in names]
        parquet = pq.ParquetFile(path, read_dictionary=texts)
        schema = parquet.schema_arrow
        if "response_a" in schema.names:
            raise _Slow  # the pairwise layout
        # Columns whose type alone shows every value is accepted are not read (the importer
        # reads them all: a record's hash is its id when it has none).
        present = [f for f in FIELDS if f in schema.names and
                   not (f in TYPE_ONLY and _type_ok(f, schema.field(f).type))]  # fmt: skip
        table = parquet.read(columns=None if every_column else present)
    except (pa.ArrowException, OSError) as exc:
        raise _Slow from exc

    def raw(i: int) -> tuple[str, Any]:
        start = 0
        for group in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if i < start + rows:
                record = parquet.read_row_group(group).slice(i - start, 1).to_pylist()[0]
                return f"{path}: record {i + 1}", record
            start += rows
        raise IndexError(i)

    return finish(table, raw, True)


def _json_lines(path: Path, finish: Callable[[pa.Table, Raw, bool], _T]) -> _T:
    import pyarrow.json as pj

    try:
        table = pj.read_json(path)
    except (pa.ArrowException, OSError) as exc:
        raise _Slow from exc
    if "response_a" in table.column_names:
        raise _Slow
    # pyarrow skips blank lines as the per-record reader does; a line holding two objects is
    # two rows for pyarrow and an error for the other: then the counts differ.
    with path.open("rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    if lines != table.num_rows:
        raise _Slow

    def raw(i: int) -> tuple[str, Any]:
        import json

        seen = -1
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    seen += 1
                    if seen == i:
                        return f"{path}: line {number}", json.loads(line)
        raise IndexError(i)

    return finish(table, raw, False)


def _json_array(path: Path, finish: Callable[[pa.Table, Raw, bool], _T]) -> _T:
    # Streamed into columns (formats/json_array.py): memory bounded by the columns.
    from leaderboard.data.formats.json_array import read_json_array

    found = read_json_array(path)
    if found is None:
        raise _Slow  # values of mixed types, or not an array: the per-record reader names it
    table = found.table
    where = str(path)

    def raw(i: int) -> tuple[str, Any]:
        return f"{where}: record {i + 1}", found.record(i)

    if "response_a" in table.column_names:
        raise _Slow  # perhaps the pairwise layout
    try:
        return finish(table, raw, False)
    except _Slow:
        if any(name in table.column_names and _has_text(table[name]) for name in TEXTS):
            raise
        _locate((r for start in range(0, len(found), 10_000)
                 for r in found.records(start, min(start + 10_000, len(found)))), raw)  # fmt: skip
        raise


def _locate(records: Iterable[Any], raw: Callable[[int], tuple[str, Any]]) -> None:
    """Raise the per-record error of the first record a field check in Python refuses."""
    checks = [_PY_CHECKS[name] for name in FIELDS if name not in TEXTS]
    names = [name for name in FIELDS if name not in TEXTS]
    for i, record in enumerate(records):
        if type(record) is not dict or not all(
            ok(record.get(name)) for ok, name in zip(checks, names, strict=True)
        ):
            _raise(raw, i)
    raise _Slow


def _text_ok(v: Any) -> bool:
    return type(v) is str and bool(v)


_PY_CHECKS: Mapping[str, Callable[[Any], bool]] = {
    "model_a": _text_ok,
    "model_b": _text_ok,
    "winner": lambda v: type(v) is str and v in OUTCOME_CODES,
    "question_id": lambda v: v is None or type(v) is str or type(v) is int,
    **{name: (lambda v: v is None or type(v) is str) for name in STRINGS},
    "anony": lambda v: v is None or type(v) is bool,
    "is_code": lambda v: v is None or type(v) is bool,
    "tstamp": lambda v: v is None or type(v) is float or type(v) is int,
    "turn": lambda v: v is None or (type(v) is int and v >= 0),
    "prompt_chars": lambda v: v is None or (type(v) is int and v >= 0),
}


# --- Checks in bulk on arrow columns -------------------------------------------------------------


def _raise(raw: Callable[[int], tuple[str, Any]], i: int) -> None:
    """Raise the per-record check's message for record ``i``; if it passes, go the slow way."""
    where, record = raw(i)
    battle_record_check(where, record)  # raises BattleLogError for a truly bad record
    raise _Slow


def _type_ok(name: str, t: pa.DataType) -> bool:
    """Whether every value of an arrow column of this type passes the per-record type check."""
    if pa.types.is_null(t):
        return name not in ("model_a", "model_b", "winner")
    if name in ("model_a", "model_b", "winner", *STRINGS):
        return arrow_is_text(t)
    if name == "question_id":
        return arrow_is_text(t) or bool(pa.types.is_integer(t))
    if name in ("anony", "is_code"):
        return bool(pa.types.is_boolean(t))
    if name == "tstamp":
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t))
    if name in ("turn", "prompt_chars"):
        return bool(pa.types.is_integer(t))
    return True


def _column_bad(name: str, col: pa.ChunkedArray, exact: bool) -> np.ndarray | None:
    """Rows the per-record check may refuse for this column (None: none). ``exact``: the arrow
    type is the Python type the per-record check sees (Parquet); JSON Lines infers types, so a
    column of an unexpected type there sends the log the slow way."""
    if not _type_ok(name, col.type):
        if not exact:
            raise _Slow
        if name in ("model_a", "model_b", "winner"):
            return np.ones(len(col), dtype=bool)
        # Every value of a column of the wrong type is refused; missing values are fine.
        return arrow_mask(pc.is_valid(col), missing=False)
    if name in ("turn", "prompt_chars"):
        return arrow_numpy(col, np.int64, 0) < 0
    return None


def _text_bad(name: str, coded: tuple[np.ndarray, list[Any]]) -> np.ndarray:
    """Rows of a required text column that the per-record check refuses."""
    codes, values = coded
    if name == "winner":
        refused = [v not in OUTCOME_CODES for v in values]
    else:
        refused = [not v for v in values]
    lookup = np.array([*refused, True], dtype=bool)  # code -1: missing
    flags: np.ndarray = lookup[codes]
    return flags


def _has_text(col: pa.ChunkedArray) -> bool:
    """Whether any record holds a conversation or metadata (nulls and empty lists do not)."""
    t = col.type
    if pa.types.is_null(t) or col.null_count == len(col):
        return False
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return bool(pc.any(pc.greater(pc.list_value_length(col), 0)).as_py())
    return True


REQUIRED = ("model_a", "model_b", "winner")
TYPE_ONLY = ("question_id", "judge", "exclusion_reason")


def _battles(
    table: pa.Table,
    raw: Callable[[int], tuple[str, Any]],
    anony_only: bool,
    require_style: bool,
    *,
    exact: bool,
) -> Battles:
    coded = _check(table, raw, exact=exact)
    return _build(table, coded, table.num_rows, anony_only, require_style, raw)


def _check(table: pa.Table, raw: Raw, *, exact: bool) -> dict[str, tuple[np.ndarray, list[Any]]]:
    """Raise the per-record error of the first bad record (or :class:`_Slow`); else the encoded
    required text columns."""
    for name in TEXTS:
        if name in table.column_names and _has_text(table[name]):
            raise _Slow
    n = table.num_rows
    bad = np.zeros(n, dtype=bool)
    coded: dict[str, tuple[np.ndarray, list[Any]]] = {}
    for name in FIELDS:
        if name in TEXTS:
            continue
        if name not in table.column_names:
            if name in REQUIRED:
                bad[:] = True
            continue
        flags = _column_bad(name, table[name], exact)
        if flags is None and name in REQUIRED:
            coded[name] = arrow_encode(table[name])
            flags = _text_bad(name, coded[name])
        if flags is not None:
            bad |= flags
    if bad.any():
        _raise(raw, int(np.argmax(bad)))
    return coded


# --- Battles from checked columns ---------------------------------------------------------------


def _build(
    table: pa.Table,
    coded: dict[str, tuple[np.ndarray, list[Any]]],
    n: int,
    anony_only: bool,
    require_style: bool,
    raw: Callable[[int], tuple[str, Any]],
) -> Battles:
    """Battles from checked columns, numbered as the per-record reader numbers them."""

    def column(name: str, fill: Any, dtype: Any) -> np.ndarray:
        if name not in table.column_names or pa.types.is_null(table[name].type):
            return np.full(n, fill, dtype=dtype)
        col = table[name]
        if dtype is np.float64:
            col = pc.cast(col, pa.float64(), safe=False)
        return arrow_numpy(col, dtype, fill)

    def codes(name: str) -> tuple[np.ndarray, list[Any]]:
        if name in coded:
            return coded[name]
        if name not in table.column_names:
            return np.full(n, -1, dtype=np.int64), []
        return arrow_encode(table[name])

    arrays = {
        "anony": column("anony", False, bool),
        "tstamp": column("tstamp", np.nan, np.float64),
        "turns": column("turn", 0, np.int64),
        "prompt_chars": column("prompt_chars", 0, np.int64),
        "is_code": column("is_code", False, bool),
    }
    texts = {name: codes(name) for name in ("model_a", "model_b", "winner", "language")}
    if anony_only:
        kept = np.flatnonzero(arrays["anony"])
        if require_style and len(kept):
            # The per-record reader stops at the first kept record: it has no conversation.
            raise _fail(raw(int(kept[0]))[0], "field 'conversation_a' is missing (style "
                        "control needs it)")  # fmt: skip
        arrays = {k: v[kept] for k, v in arrays.items()}
        texts = {k: (c[kept], values) for k, (c, values) in texts.items()}
    elif require_style and n:
        raise _fail(raw(0)[0], "field 'conversation_a' is missing (style control needs it)")
    (codes_a, values_a), (codes_b, values_b) = texts["model_a"], texts["model_b"]
    used = {values_a[i] for i in np.unique(codes_a)} | {values_b[i] for i in np.unique(codes_b)}
    names = sorted(used)
    position = {name: k for k, name in enumerate(names)}
    a = np.array([position.get(v, 0) for v in values_a], dtype=np.int64)[codes_a]
    b = np.array([position.get(v, 0) for v in values_b], dtype=np.int64)[codes_b]
    winner_codes, winners = texts["winner"]
    outcome = np.array([OUTCOME_CODES.get(v, 0) for v in winners] + [0], dtype=np.int8)
    outcome = outcome[winner_codes]
    language_codes, languages = texts["language"]
    tags = np.empty(len(languages) + 1, dtype=object)  # the last one: no language
    tags[:] = [LANGUAGE_TAGS.get(v, v) for v in languages] + [""]
    language = tags[language_codes]
    turns = arrays["turns"]
    turns[turns == 0] = 1  # `turn or 1`, as for one record
    tstamp = arrays["tstamp"]
    columns = {
        "language": language,
        "is_english": language == "en",
        "turns": turns,
        "prompt_chars": arrays["prompt_chars"],
        "is_code": arrays["is_code"],
        "anony": arrays["anony"],
    }
    assert tuple(columns) == COLUMNS
    return Battles(
        tuple(names), a, b, outcome,
        tstamp=None if np.isnan(tstamp).all() else tstamp,
        columns=columns,
    )  # fmt: skip
