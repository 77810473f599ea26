"""Reading FastChat/LMSYS battle logs: JSON, JSON Lines, Parquet, style counts, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arena.facts import answer_words, markdown_counts
from leaderboard.data.formats.arena import BattleLogError
from leaderboard.data.formats.reader import read_battle_log
from leaderboard.engine.ratings import BOTH_BAD, MODEL_A, MODEL_B, TIE
from tests.leaderboard.conftest import refdata_dir

BATTLE = {"model_a": "alpha", "model_b": "beta", "winner": "model_a", "tstamp": 1.0, "anony": True}


def write_json(tmp_path, records, name="battles.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_reads_the_reference_log_with_all_outcomes():
    battles = read_battle_log(refdata_dir() / "clean_battle_20240220.json")
    assert len(battles) == 2061 and len(battles.names) == 13
    assert list(battles.names) == sorted(battles.names)
    codes = np.bincount(battles.outcome, minlength=4)
    # 759 model_a, 744 model_b, 130 tie, 428 "tie (bothbad)" in the file.
    assert codes[[MODEL_A, MODEL_B, TIE, BOTH_BAD]].tolist() == [759, 744, 130, 428]
    assert battles.columns["anony"].sum() == 1515
    assert (
        len(read_battle_log(refdata_dir() / "clean_battle_20240220.json", anony_only=True)) == 1515
    )


def test_json_lines_and_parquet_give_the_same_arrays_as_json(tmp_path):
    records = json.loads((refdata_dir() / "clean_battle_20240220.json").read_text())
    jsonl = tmp_path / "battles.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    parquet = tmp_path / "battles.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    reference = read_battle_log(refdata_dir() / "clean_battle_20240220.json")
    for path in (jsonl, parquet):
        other = read_battle_log(path)
        assert other.names == reference.names
        for field in ("model_a", "model_b", "outcome", "tstamp"):
            assert np.array_equal(getattr(other, field), getattr(reference, field)), field


def test_style_counts_come_from_assistant_messages_outside_code_blocks(tmp_path):
    answer = (
        "# Title\n\nSome **bold** text.\n\n- one\n- two\n1. three\n```python\n# not a header\n```"
    )
    assert markdown_counts(answer) == {"headers": 1, "lists": 3, "bold": 1}
    assert answer_words([{"role": "assistant", "content": answer}]) == 17
    conv_a = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": answer}]
    conv_b = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "plain"}]
    record = dict(BATTLE, conversation_a=conv_a, conversation_b=conv_b, language="English")
    battles = read_battle_log(write_json(tmp_path, [record]), require_style=True)
    assert battles.style_a.tolist() == [[17, 1, 3, 1]]
    assert battles.style_b.tolist() == [[1, 0, 0, 0]]
    assert battles.columns["turns"].tolist() == [1]
    assert battles.columns["prompt_chars"].tolist() == [8]
    # The log's language name becomes the tag a live vote stores.
    assert battles.columns["language"].tolist() == ["en"]
    assert battles.columns["is_english"].tolist() == [True]


def test_lmarena_conv_metadata_gives_style_counts(tmp_path):
    meta = {
        "sum_assistant_a_tokens": 120, "header_count_a": {"h1": 1, "h2": 2},
        "list_count_a": {"ordered": 3, "unordered": 1}, "bold_count_a": {"**": 2, "__": 0},
        "sum_assistant_b_tokens": 80, "header_count_b": {"h1": 0}, "list_count_b": {"ordered": 0},
        "bold_count_b": {"**": 1},
    }  # fmt: skip
    battles = read_battle_log(write_json(tmp_path, [dict(BATTLE, conv_metadata=meta)]))
    assert battles.style_a.tolist() == [[120, 3, 4, 2]]
    assert battles.style_b.tolist() == [[80, 0, 0, 1]]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"model_a": "alpha", "model_b": "beta"}, "record 2: field 'winner' is missing"),
        (dict(BATTLE, winner="model_c"), "record 2: field 'winner' has unknown value 'model_c'"),
        (dict(BATTLE, model_a=3), "record 2: field 'model_a' must be a non-empty string"),
        ({"model_b": "beta", "winner": "tie"}, "record 2: field 'model_a' is missing"),
        (dict(BATTLE, tstamp="yesterday"), "record 2: field 'tstamp' must be a number"),
        (dict(BATTLE, anony="yes"), "record 2: field 'anony' must be true or false"),
        (["alpha", "beta"], "record 2: expected a battle object, got list"),
        (
            dict(BATTLE, conversation_a="hi", conversation_b=[]),
            "field 'conversation_a' must be a list",
        ),
    ],
)
def test_bad_records_give_one_line_naming_record_and_field(tmp_path, record, message):
    path = write_json(tmp_path, [BATTLE, record])
    with pytest.raises(BattleLogError) as info:
        read_battle_log(path)
    assert message in str(info.value)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_json_lines_errors_name_the_line(tmp_path):
    path = tmp_path / "battles.jsonl"
    path.write_text(json.dumps(BATTLE) + "\n\n" + '{"model_a": "alpha",\n')
    with pytest.raises(BattleLogError, match=r"line 3: not valid JSON"):
        read_battle_log(path)
    path.write_text(json.dumps(BATTLE) + "\n\n" + json.dumps(dict(BATTLE, winner="?")) + "\n")
    with pytest.raises(BattleLogError, match=r"line 3: field 'winner'"):
        read_battle_log(path)


def test_unreadable_files_give_one_line(tmp_path):
    with pytest.raises(BattleLogError, match="cannot open file"):
        read_battle_log(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"model_a": "alpha",')
    with pytest.raises(BattleLogError, match="not valid JSON"):
        read_battle_log(bad)
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(BattleLogError, match="empty"):
        read_battle_log(empty)
    parquet = tmp_path / "battles.parquet"
    pq.write_table(pa.table({"model_a": ["alpha"], "model_b": ["beta"]}), parquet)
    with pytest.raises(BattleLogError, match="column 'winner' is missing"):
        read_battle_log(parquet)


def test_style_control_needs_conversations_in_every_record(tmp_path):
    path = write_json(tmp_path, [BATTLE])
    assert read_battle_log(path).style_a is None
    with pytest.raises(BattleLogError, match="record 1: field 'conversation_a' is missing"):
        read_battle_log(path, require_style=True)
