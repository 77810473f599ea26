"""Read FastChat/LMSYS battle logs into :class:`leaderboard.engine.ratings.Battles`.

Accepted files: a JSON array of battle objects, the same objects as JSON Lines, Parquet with the
same columns, or the pairwise layout (the 55k CSV). Each battle has ``model_a``, ``model_b`` and
``winner`` (``model_a``, ``model_b``, ``tie``, ``both_bad`` or ``tie (bothbad)``), and optionally
``tstamp``, ``anony``, ``language``, ``turn``, ``is_code``, ``prompt_chars``,
``conversation_a``/``conversation_b`` (lists of ``{"role", "content"}``) and lmarena's
``conv_metadata`` token and markdown counts. Every record goes through the importer's checks and
facts (:func:`battle_record_check`, :func:`record_facts`, :mod:`arena.facts`), so `rank` on a
file and the leaderboard after `import_battles` of it see the same battles, categories and style
features. Problems raise :class:`BattleLogError` with one line naming the record (numbered from
1) and the field. No Django import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from arena import facts
from leaderboard.engine.pairs import OUTCOME_CODES, Battles

_WINNERS = ", ".join(OUTCOME_CODES)
# The per-battle columns categories filter on: the same names as the database's
# (leaderboard.pipeline.battles.COLUMN_FIELDS), so one category selects the same battles from
# either.
COLUMNS = ("language", "is_english", "turns", "prompt_chars", "is_code", "anony")


class BattleLogError(ValueError):
    """A battle log that cannot be read; the message is one line naming the record and field."""


def _fail(where: str, message: str) -> BattleLogError:
    return BattleLogError(f"{where}: {message}")


def _check_conversation(where: str, field: str, conv: Any) -> None:
    if not isinstance(conv, list):
        raise _fail(where, f"field {field!r} must be a list of messages")
    for message in conv:
        if not isinstance(message, Mapping) or not isinstance(message.get("content", ""), str):
            raise _fail(where, f"field {field!r} holds a message without text 'content'")


def _metadata_style(where: str, meta: Any, side: str) -> list[float]:
    def total(key: str) -> float:
        value = meta.get(key, 0)
        value = sum(value.values()) if isinstance(value, Mapping) else value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(
                where, f"field 'conv_metadata.{key}' must be a number or a mapping of numbers"
            )
        return float(value)

    keys = ("sum_assistant_{}_tokens", "header_count_{}", "list_count_{}", "bold_count_{}")
    return [total(k.format(side)) for k in keys]


def _text(where: str, record: Mapping[str, Any], field: str) -> str:
    if field not in record:
        raise _fail(where, f"field {field!r} is missing")
    value = record[field]
    if not isinstance(value, str) or not value:
        raise _fail(where, f"field {field!r} must be a non-empty string, got {value!r:.40}")
    return value


def battles_from_records(
    records: Iterable[Any],
    *,
    anony_only: bool = False,
    require_style: bool = False,
    source: str = "input",
    numbering: str = "record",
) -> Battles:
    """Build battle arrays from battle objects (already decoded JSON).

    Parameters
    ----------
    records : iterable of mapping
        The battle objects, in file order.
    anony_only : bool
        Keep only records with ``anony`` true (a record without the field is not anonymous).
    require_style : bool
        Every kept record must carry conversations or ``conv_metadata`` (for style control).
    source, numbering : str
        Used in error messages: ``"<source>: <numbering> <n>: ..."``.

    Raises
    ------
    BattleLogError
        A record is not an object, lacks a required field or holds a bad value.
    """
    numbered = ((f"{source}: {numbering} {n}", r) for n, r in enumerate(records, start=1))
    return _build(numbered, anony_only, require_style)


def _build(numbered: Iterable[tuple[str, Any]], anony_only: bool, require_style: bool) -> Battles:
    """Each record checked and given its facts as the importer does (:func:`battle_record_check`
    and :func:`record_facts`), so a file ranks as its import would."""
    index: dict[str, int] = {}
    a_idx, b_idx, outs, stamps = [], [], [], []
    style_a: list[tuple[float, ...]] = []
    style_b: list[tuple[float, ...]] = []
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for where, raw in numbered:
        if isinstance(raw, BattleLogError):
            raise raw
        record = battle_record_check(where, raw)
        if anony_only and not record["anony"]:
            continue
        found = record_facts(record)
        if found["style_a"] is None:
            if require_style:
                raise _fail(where, "field 'conversation_a' is missing (style control needs it)")
            style_a.append((np.nan,) * len(facts.STYLE_NAMES))
            style_b.append((np.nan,) * len(facts.STYLE_NAMES))
        else:
            style_a.append(facts.style_row(found["tokens_a"], found["style_a"]))
            style_b.append(facts.style_row(found["tokens_b"], found["style_b"]))
        for name in (record["model_a"], record["model_b"]):
            index.setdefault(name, len(index))
        a_idx.append(index[record["model_a"]])
        b_idx.append(index[record["model_b"]])
        outs.append(OUTCOME_CODES[record["winner"]])
        stamps.append(np.nan if record["tstamp"] is None else record["tstamp"])
        for name, value in (
            ("language", found["language"]), ("is_english", found["language"] == "en"),
            ("turns", found["turns"]), ("prompt_chars", found["prompt_chars"]),
            ("is_code", found["has_code"]), ("anony", record["anony"]),
        ):  # fmt: skip
            columns[name].append(value)
    return _assemble(index, a_idx, b_idx, outs, stamps, style_a, style_b, columns)


def _assemble(
    index: Mapping[str, int],
    a_idx: list[int],
    b_idx: list[int],
    outs: list[int],
    stamps: list[float],
    style_a: list[tuple[float, ...]],
    style_b: list[tuple[float, ...]],
    columns: dict[str, list[Any]],
) -> Battles:
    # Models are numbered in sorted name order, whatever order the file names them in.
    names = sorted(index)
    remap = np.empty(max(len(index), 1), dtype=np.int64)
    remap[[index[m] for m in names]] = np.arange(len(names))
    a = remap[np.array(a_idx, dtype=np.int64)] if a_idx else np.zeros(0, dtype=np.int64)
    b = remap[np.array(b_idx, dtype=np.int64)] if b_idx else np.zeros(0, dtype=np.int64)
    tstamp = np.array(stamps, dtype=np.float64)
    width = len(facts.STYLE_NAMES)
    sa = np.array(style_a, dtype=np.float64).reshape(-1, width)
    sb = np.array(style_b, dtype=np.float64).reshape(-1, width)
    has_style = bool(len(sa)) and not np.isnan(sa).any()
    kinds = {"language": object, "is_english": bool, "turns": np.int64, "prompt_chars": np.int64,
             "is_code": bool, "anony": bool}  # fmt: skip
    return Battles(
        tuple(names), a, b, np.array(outs, dtype=np.int8),
        tstamp=None if np.isnan(tstamp).all() else tstamp,
        style_a=sa if has_style else None,
        style_b=sb if has_style else None,
        style_names=facts.STYLE_NAMES if has_style else (),
        columns={k: np.array(v, dtype=kinds[k]) for k, v in columns.items()},
    )  # fmt: skip


def _parquet_columns_check(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise _fail(str(path), f"not a readable Parquet file ({exc})".splitlines()[0]) from exc
    for field in ("model_a", "model_b", "winner"):
        if field not in names:
            raise _fail(str(path), f"column {field!r} is missing")


def _is_parquet(path: Path) -> bool:
    """Whether the file is Parquet (by its magic bytes or its name); unreadable files raise."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise _fail(str(path), f"cannot open file ({exc.strerror or exc})") from exc
    return magic == b"PAR1" or path.suffix == ".parquet"


# --- Record by record: the importer and the reader above -----------------------------------------
# One validated dict at a time, so a large log streams and the importer can skip a bad record
# instead of stopping the whole read; `read_battle_log` stops at it.

OUTCOME_NAMES = ("model_a", "model_b", "tie", "both_bad")
# LMSYS releases name languages ("English"); the arena stores tags ("en").
LANGUAGE_TAGS: Mapping[str, str] = {
    "English": "en", "German": "de", "French": "fr", "Spanish": "es", "Chinese": "zh",
    "Japanese": "ja", "Korean": "ko", "Russian": "ru", "Arabic": "ar", "Hindi": "hi",
    "Portuguese": "pt", "Italian": "it", "Dutch": "nl", "Polish": "pl", "Turkish": "tr",
    "Vietnamese": "vi", "unknown": "und",
}  # fmt: skip
_METADATA_KEYS = tuple(
    key.format(side)
    for side in "ab"
    for key in ("sum_assistant_{}_tokens", "header_count_{}", "list_count_{}", "bold_count_{}")
)


def battle_record_check(where: str, record: Any) -> dict[str, Any]:
    """One battle object, validated and normalised (``None`` stands for "not in the record").

    Returns a dict with ``question_id``, ``judge``, ``language``, ``exclusion_reason`` (strings,
    ``""`` when absent), ``model_a``, ``model_b``, ``winner`` (one of :data:`OUTCOME_NAMES`),
    ``anony`` (bool), ``tstamp`` (float or None), ``turn``, ``prompt_chars`` (int or None),
    ``is_code`` (bool or None), ``conversation_a``/``conversation_b`` (lists of messages, or None
    when the log has no text) and ``conv_metadata`` (the numeric counts, or None).

    Raises
    ------
    BattleLogError
        One line: ``where``, the field and what is wrong with it.
    """
    if not isinstance(record, Mapping):
        raise _fail(where, f"expected a battle object, got {type(record).__name__}")
    model_a, model_b = _text(where, record, "model_a"), _text(where, record, "model_b")
    winner = record.get("winner")
    if winner is None:
        raise _fail(where, "field 'winner' is missing")
    code = OUTCOME_CODES.get(winner) if isinstance(winner, str) else None
    if code is None:
        raise _fail(where, f"field 'winner' has unknown value {winner!r:.40} "
                    f"(expected one of {_WINNERS})")  # fmt: skip
    out: dict[str, Any] = {"model_a": model_a, "model_b": model_b, "winner": OUTCOME_NAMES[code]}
    for field in ("question_id", "judge", "language", "exclusion_reason"):
        value = record.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and field == "question_id":
            value = str(value)
        if value is not None and not isinstance(value, str):
            raise _fail(where, f"field {field!r} must be a string, got {value!r:.40}")
        out[field] = value or ""
    out["language"] = LANGUAGE_TAGS.get(out["language"], out["language"])
    out["anony"] = _optional(where, record, "anony", bool, "true or false")
    out["anony"] = bool(out["anony"])
    tstamp = _optional(where, record, "tstamp", int | float, "a number")
    out["tstamp"] = None if tstamp is None else float(tstamp)
    for field in ("turn", "prompt_chars"):
        out[field] = _optional(where, record, field, int, "an integer")
        if out[field] is not None and out[field] < 0:
            raise _fail(where, f"field {field!r} must be >= 0, got {out[field]}")
    out["is_code"] = _optional(where, record, "is_code", bool, "true or false")
    conversations = [record.get("conversation_a"), record.get("conversation_b")]
    if all(c is None or c == [] for c in conversations):
        out["conversation_a"] = out["conversation_b"] = None
    else:
        for field, conv in zip(("conversation_a", "conversation_b"), conversations, strict=True):
            _check_conversation(where, field, conv)
            if any(m.get("role") not in ("user", "assistant", "system") for m in conv):
                raise _fail(where, f"field {field!r} holds a message whose 'role' is not "
                            "user, assistant or system")  # fmt: skip
            out[field] = [{"role": m["role"], "content": m.get("content") or ""} for m in conv]
    meta = record.get("conv_metadata")
    if meta is not None and not isinstance(meta, Mapping):
        raise _fail(where, f"field 'conv_metadata' must be an object, got {meta!r:.40}")
    out["conv_metadata"] = None
    if meta is not None:
        sa, sb = _metadata_style(where, meta, "a"), _metadata_style(where, meta, "b")
        out["conv_metadata"] = dict(zip(_METADATA_KEYS, map(int, sa + sb), strict=True))
    return out


def record_facts(record: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of one checked record (:func:`battle_record_check`) as a vote stores them: the
    log's own values where it has them (language, turn, prompt_chars, is_code, conv_metadata),
    else computed by :mod:`arena.facts` from the conversations, as for a live vote.

    Returns the :class:`arena.models.Vote` fact fields (``language``, ``turns``,
    ``prompt_chars``, ``has_code``, ``tokens_a``/``b``, ``style_a``/``b``); without text or
    metadata, ``style_a``/``style_b`` are None and the token counts 0.
    """
    conv_a, conv_b, meta = (
        record["conversation_a"],
        record["conversation_b"],
        record["conv_metadata"],
    )
    if conv_a is None:
        out: dict[str, Any] = {
            "language": record["language"],
            "turns": record["turn"] or 1,
            "prompt_chars": record["prompt_chars"] or 0,
            "has_code": bool(record["is_code"]),
            "tokens_a": 0, "tokens_b": 0, "style_a": None, "style_b": None,
        }  # fmt: skip
    else:
        computed = facts.battle_facts(conv_a, conv_b).as_fields()
        out = {
            **computed,
            "language": record["language"] or computed["language"],
            "turns": record["turn"] or computed["turns"],
            "prompt_chars": (
                computed["prompt_chars"]
                if record["prompt_chars"] is None
                else record["prompt_chars"]
            ),
            "has_code": computed["has_code"] if record["is_code"] is None else record["is_code"],
        }
    if meta is not None:
        # The release's own counts: its token counts come from a tokenizer, not from words.
        for side in "ab":
            out[f"tokens_{side}"] = meta[f"sum_assistant_{side}_tokens"]
            out[f"style_{side}"] = {
                "headers": meta[f"header_count_{side}"],
                "lists": meta[f"list_count_{side}"],
                "bold": meta[f"bold_count_{side}"],
            }
    return out


def _optional(where: str, record: Mapping[str, Any], field: str, kind: Any, what: str) -> Any:
    value = record.get(field)
    if value is None:
        return None
    # bool is an int in Python: an integer field must not accept true/false, nor the reverse.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise _fail(where, f"field {field!r} must be {what}, got {value!r:.40}")
    return value


def battle_records(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``(where, raw record)`` for each record of a battle log, streamed where the format allows.

    JSON Lines and Parquet are read incrementally (line by line, batch by batch); a JSON array is
    decoded whole; CSV rows (the 55k pairwise layout) come back as dicts of strings. ``where``
    names the file and the line (JSON Lines) or the record number (the others), counted from 1.
    A JSON Lines line that is not valid JSON comes back as a :class:`BattleLogError` in place of
    the record, so that a caller may count it and go on.

    Raises
    ------
    BattleLogError
        The file is missing or unreadable as a whole.
    """
    path = Path(path)
    if _is_parquet(path):
        yield from _parquet_records(path)
    elif path.suffix == ".csv":
        yield from _csv_records(path)
    else:
        yield from _json_records(path)


def _parquet_records(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=2048)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise _fail(str(path), f"not a readable Parquet file ({exc})".splitlines()[0]) from exc
    number = 0
    for batch in batches:
        for record in batch.to_pylist():
            number += 1
            yield f"{path}: record {number}", record


def _csv_records(path: Path) -> Iterator[tuple[str, Any]]:
    import csv
    import sys

    # Answers in the 55k layout exceed the csv module's default 128 KiB field limit.
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            for number, row in enumerate(csv.DictReader(fh), start=1):
                yield f"{path}: record {number}", row
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _fail(str(path), f"not a readable CSV file ({exc})") from exc


def _json_records(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        with path.open(encoding="utf-8") as fh:
            head = fh.read(4096).lstrip()
            if not head:
                raise _fail(str(path), "the file is empty")
            fh.seek(0)
            if head.startswith("["):
                try:
                    records = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise _fail(str(path), f"not valid JSON: {exc}") from exc
                except RecursionError as exc:  # a clear line, not a traceback
                    raise _fail(str(path), "not valid JSON: nested too deeply") from exc
                for number, record in enumerate(records, start=1):
                    yield f"{path}: record {number}", record
                return
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    where = f"{path}: line {number}"
                    try:
                        record: Any = json.loads(line)
                    except json.JSONDecodeError as exc:
                        # Yielded, not raised: the reader may skip this line and go on.
                        record = _fail(where, f"not valid JSON: {exc}")
                    except RecursionError:
                        record = _fail(where, "not valid JSON: nested too deeply")
                    yield where, record
    except UnicodeDecodeError as exc:
        raise _fail(str(path), f"cannot read file as UTF-8 text ({exc})") from exc
