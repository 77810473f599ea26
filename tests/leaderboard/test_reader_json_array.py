"""A JSON array read streamed into columns (leaderboard/data/formats/json_array.py): the same
battles as the same records in JSON Lines, whatever the layout; a bad record named by number and
field; odd files end in one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leaderboard.data.formats import json_array
from leaderboard.data.formats.arena import BattleLogError
from leaderboard.data.formats.json_array import read_json_array
from leaderboard.data.formats.reader import read_battle_log


def records(n: int = 40) -> list[dict[str, Any]]:
    """Text-free records whose strings hold what a scanner could mistake for structure."""
    out = []
    for i in range(n):
        out.append({
            "model_a": f"m{i % 3}", "model_b": f"m{(i + 1) % 3}",
            "winner": ("model_a", "model_b", "tie", "tie (bothbad)")[i % 4],
            "judge": f'j{i % 5} said "}}, {{" \\ [{i}]' if i % 2 else None,
            "tstamp": 1.7e9 + i, "anony": i % 3 != 0, "language": "English",
            "question_id": f"q{i}",
        })  # fmt: skip
    return out


LAYOUTS = {
    "compact": lambda r: json.dumps(r, separators=(",", ":")),
    "default": json.dumps,
    "one a line": lambda r: "[" + ",\n".join(json.dumps(x) for x in r) + "]\n",
    "indented": lambda r: json.dumps(r, indent=2),
    "odd spacing": lambda r: " \n[ " + " ,\t\n ".join(json.dumps(x) for x in r) + " ]\n\n",
}


def same_battles(a: Any, b: Any) -> None:
    assert a.names == b.names
    for name in ("model_a", "model_b", "outcome", "tstamp"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name, column in a.columns.items():
        np.testing.assert_array_equal(column, b.columns[name])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("block", [json_array.BLOCK, 64])
def test_an_array_reads_as_the_same_records_in_json_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, block: int
) -> None:
    # Small blocks: records, strings and separators straddle the scanner's blocks.
    monkeypatch.setattr(json_array, "BLOCK", block)
    rows = records()
    array = tmp_path / "log.json"
    array.write_text(LAYOUTS[layout](rows))
    lines = tmp_path / "log.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = read_json_array(array)
    assert found is not None and found.table.num_rows == len(rows)
    # One record decoded alone, by where the scanner found it: as json decodes it.
    assert found.records(0, len(rows)) == rows
    same_battles(read_battle_log(array), read_battle_log(lines))
    same_battles(read_battle_log(array), read_battle_log(array, columnar=False))


@pytest.mark.parametrize(
    ("bad", "field"),
    [({"winner": "nobody"}, "winner"), ({"model_a": 5}, "model_a"), ({"turn": -1}, "turn")],
)
def test_a_bad_record_is_named_by_number_and_field(
    tmp_path: Path, bad: dict[str, Any], field: str
) -> None:
    rows = records()
    rows[26] = {**rows[26], **bad}
    path = tmp_path / "log.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(BattleLogError) as caught:
        read_battle_log(path)
    message = str(caught.value)
    assert "record 27" in message and repr(field) in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('[{"a":' * 50_000 + "1" + "}" * 50_000 + "]", "nested too deeply"),
        ('[{"model_a": "a", "model_b": "b", "winner": "tie"}, {"model_a"', "not valid JSON"),
        ('[{"model_a": "a", "model_b": "b", "winner": "tie"}] {}', "not valid JSON"),
        ('[{"model_a": "a", "model_b": "b", "winner": "tie"},]', "not valid JSON"),
        ("[1, 2]", "record 1: expected a battle object"),
    ],
    ids=["deep arrays", "deep objects", "cut short", "text after", "trailing comma", "numbers"],
)
def test_odd_arrays_end_in_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "odd.json"
    path.write_text(text)
    assert read_json_array(path) is None  # the per-record reader names what is wrong
    with pytest.raises(BattleLogError) as caught:
        read_battle_log(path)
    assert expected in str(caught.value) and str(path) in str(caught.value)


def test_a_huge_record_takes_the_per_record_path(tmp_path: Path) -> None:
    rows = records(3)
    rows[1]["judge"] = "x" * (9 << 20)  # larger than pyarrow's block
    path = tmp_path / "log.json"
    path.write_text(json.dumps(rows))
    lines = tmp_path / "log.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    same_battles(read_battle_log(path), read_battle_log(lines, columnar=False))


def test_an_empty_array_has_no_battles(tmp_path: Path) -> None:
    for text in ("[]", " [ \n ] "):
        path = tmp_path / "empty.json"
        path.write_text(text)
        assert len(read_battle_log(path)) == 0
