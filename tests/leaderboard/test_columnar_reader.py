"""The columnar reader (logs without texts) gives what the record-by-record reader gives.

Every log is read both ways (``columnar=False`` forces the per-record path) from JSON, JSON Lines
and Parquet: the same arrays, or the same one-line error naming the record and the field.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leaderboard.data.formats.arena import BattleLogError
from leaderboard.data.formats.columnar import read_columns
from leaderboard.data.formats.reader import read_battle_log

FORMATS = ("json", "jsonl", "parquet")


def write(tmp_path, records, fmt, name="log"):
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(records))
    elif fmt == "jsonl":
        # A blank line in the middle: numbering is by line, as the per-record reader numbers.
        lines = [json.dumps(r) for r in records]
        path.write_text("\n".join([*lines[:2], "", *lines[2:]]) + "\n")
    else:
        pq.write_table(pa.Table.from_struct_array(pa.array(records)), path)
    return path


def varied(n=300, seed=1):
    """Ties, both-bad in both spellings, anony false and missing, optional fields present,
    missing and null, language names and tags, ids as numbers and strings."""
    rng = np.random.default_rng(seed)
    winners = ["model_a", "model_b", "tie", "both_bad", "tie (bothbad)"]
    languages = ["English", "German", "en", "unknown", "", None, "Klingon"]
    out = []
    for i in range(n):
        a, b = rng.choice(8, size=2, replace=False)
        record = {"model_a": f"m{a}", "model_b": f"m{b}", "winner": winners[i % 5]}
        if i % 3:
            record["tstamp"] = 1.7e9 + i
        if i % 4:
            record["anony"] = bool(i % 5)
        if i % 2:
            record["language"] = languages[i % len(languages)]
        if i % 6:
            record["turn"] = int(i % 4)
        if i % 7:
            record["prompt_chars"] = int(i * 3)
        if i % 5:
            record["is_code"] = i % 3 == 0
        record["question_id"] = f"q{i}"
        record["judge"] = f"j{i % 9}" if i % 8 else None
        if i % 11 == 0:
            record["conversation_a"] = record["conversation_b"] = []
        out.append(record)
    # A model seen only in non-anonymous battles disappears with --anony-only.
    out.append({"model_a": "zz-open", "model_b": "m1", "winner": "tie", "anony": False,
                "tstamp": 5.0, "question_id": "q-open", "judge": None})  # fmt: skip
    return out


def same(left, right):
    assert left.names == right.names
    for field in ("model_a", "model_b", "outcome"):
        assert np.array_equal(getattr(left, field), getattr(right, field)), field
        assert getattr(left, field).dtype == getattr(right, field).dtype, field
    if right.tstamp is None:
        assert left.tstamp is None
    else:
        assert np.array_equal(left.tstamp, right.tstamp, equal_nan=True)
    assert left.style_a is None and right.style_a is None
    assert left.style_names == right.style_names
    assert set(left.columns) == set(right.columns)
    for name, values in right.columns.items():
        assert left.columns[name].dtype == values.dtype, name
        assert left.columns[name].tolist() == values.tolist(), name


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("anony_only", [False, True])
def test_columns_equal_records_on_a_varied_log(tmp_path, fmt, anony_only):
    path = write(tmp_path, varied(), fmt)
    # The columnar path is taken (not a silent fall-back to the per-record one).
    assert read_columns(path, anony_only=anony_only, require_style=False) is not None
    fast = read_battle_log(path, anony_only=anony_only)
    slow = read_battle_log(path, anony_only=anony_only, columnar=False)
    same(fast, slow)
    assert ("zz-open" in fast.names) is not anony_only
    assert len(fast) == (sum(bool(r.get("anony")) for r in varied()) if anony_only else 301)


@pytest.mark.parametrize("fmt", FORMATS)
def test_minimal_log_and_empty_log(tmp_path, fmt):
    records = [{"model_a": "x", "model_b": "y", "winner": "model_b"}] * 3
    path = write(tmp_path, records, fmt)
    assert read_columns(path, anony_only=False, require_style=False) is not None
    same(read_battle_log(path), read_battle_log(path, columnar=False))
    if fmt == "json":
        empty = tmp_path / "empty.json"
        empty.write_text("[]")
        same(read_battle_log(empty), read_battle_log(empty, columnar=False))


def error(path, **kw):
    with pytest.raises(BattleLogError) as caught:
        read_battle_log(path, **kw)
    return str(caught.value)


BAD_VALUES = [
    ("winner", "model_c", "field 'winner' has unknown value"),
    ("winner", None, "field 'winner' is missing"),
    ("model_a", "", "field 'model_a' must be a non-empty string"),
    ("model_b", None, "field 'model_b' must be a non-empty string"),
    ("turn", -1, "field 'turn' must be >= 0"),
    ("prompt_chars", -5, "field 'prompt_chars' must be >= 0"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES)
def test_a_bad_value_names_the_record_and_field_as_record_by_record(
    tmp_path, fmt, field, value, message
):
    records = varied(60)
    records[41] = dict(records[41], **{field: value})
    path = write(tmp_path, records, fmt)
    fast, slow = error(path), error(path, columnar=False)
    assert fast == slow
    where = "line 43" if fmt == "jsonl" else "record 42"  # the blank line comes before it
    assert f"{path}: {where}: {message}" in fast


# Values of the wrong type: in JSON mixed with good ones, in Parquet a whole column of them.
WRONG_TYPES = [
    ("turn", True, "field 'turn' must be an integer"),
    ("turn", 2.5, "field 'turn' must be an integer"),
    ("tstamp", "noon", "field 'tstamp' must be a number"),
    ("anony", "yes", "field 'anony' must be true or false"),
    ("is_code", 1, "field 'is_code' must be true or false"),
    ("language", 7, "field 'language' must be a string"),
    ("question_id", [1], "field 'question_id' must be a string"),
    ("model_a", 3, "field 'model_a' must be a non-empty string"),
    ("winner", 1, "field 'winner' has unknown value"),
]


@pytest.mark.parametrize("fmt", ("json", "jsonl"))
@pytest.mark.parametrize(("field", "value", "message"), WRONG_TYPES)
def test_a_value_of_the_wrong_type_in_json(tmp_path, fmt, field, value, message):
    records = varied(60)
    records[30] = dict(records[30], **{field: value})
    path = write(tmp_path, records, fmt)
    fast, slow = error(path), error(path, columnar=False)
    assert fast == slow
    assert f"{'line 32' if fmt == 'jsonl' else 'record 31'}: {message}" in fast


@pytest.mark.parametrize(("field", "value", "message"), WRONG_TYPES)
def test_a_column_of_the_wrong_type_in_parquet(tmp_path, field, value, message):
    records = [dict(r, **{field: value}) for r in varied(20)]
    path = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    fast, slow = error(path), error(path, columnar=False)
    assert fast == slow
    assert f"record 1: {message}" in fast


@pytest.mark.parametrize("fmt", FORMATS)
def test_style_control_without_texts_fails_at_the_first_kept_record(tmp_path, fmt):
    records = varied(40)
    path = write(tmp_path, records, fmt)
    for anony_only in (False, True):
        fast = error(path, require_style=True, anony_only=anony_only)
        assert fast == error(path, require_style=True, anony_only=anony_only, columnar=False)
        assert "style control needs it" in fast


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bad_record_far_into_a_large_log(tmp_path, fmt):
    n = 120_000
    records = [{"model_a": f"m{i % 7}", "model_b": "other", "winner": "tie", "tstamp": 1.0 * i}
               for i in range(n)]  # fmt: skip
    records[n - 17]["winner"] = "draw"
    path = write(tmp_path, records, fmt)
    where = f"line {n - 15}" if fmt == "jsonl" else f"record {n - 16}"
    assert error(path) == (
        f"{path}: {where}: field 'winner' has unknown value 'draw' "
        "(expected one of model_a, model_b, tie, both_bad, tie (bothbad))"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_logs_with_texts_or_metadata_take_the_per_record_path(tmp_path, fmt):
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "**yo**"}]
    records = varied(10)
    records[4] = dict(records[4], conversation_a=conv, conversation_b=conv)
    path = write(tmp_path, records, fmt)
    assert read_columns(path, anony_only=False, require_style=False) is None
    meta = {
        "sum_assistant_a_tokens": 3,
        "header_count_a": 1,
        "list_count_a": 0,
        "bold_count_a": 0,
        "sum_assistant_b_tokens": 5,
        "header_count_b": 0,
        "list_count_b": 2,
        "bold_count_b": 1,
    }
    path = write(tmp_path, [dict(r, conv_metadata=meta) for r in varied(10)], fmt, "meta")
    assert read_columns(path, anony_only=False, require_style=False) is None
    assert read_battle_log(path).style_a.tolist()[0] == [3, 1, 0, 0]
