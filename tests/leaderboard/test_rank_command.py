"""The ``rank`` management command: its exact surface, its output and its one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from leaderboard.management.commands.rank import Command
from tests.leaderboard.conftest import REPO, refdata_dir

BATTLE = {"model_a": "alpha", "model_b": "beta", "winner": "model_a"}


def rank(*args: str) -> tuple[str, str]:
    """Run the command in-process (no settings or database needed) and return stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command(Command(), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_json_output_is_one_array_best_first_with_the_documented_keys():
    log = str(refdata_dir() / "clean_battle_20240220.json")
    out, err = rank("--input", log, "--anony-only", "--ci", "sandwich", "--output", "json")
    rows = json.loads(out)
    assert [list(r) for r in rows] == [
        ["model", "group", "rank", "rating", "lower", "upper", "battles", "rated", "note"]
    ] * 13
    # Two groups (image generation, image editing) never met: biggest first, best first in each.
    assert [r["group"] for r in rows] == sorted(r["group"] for r in rows)
    for group in (1, 2):
        ratings = [r["rating"] for r in rows if r["group"] == group]
        assert ratings == sorted(ratings, reverse=True)
    assert all(r["lower"] < r["rating"] < r["upper"] for r in rows)
    assert rows[0]["rank"] == 1 and sum(r["battles"] for r in rows) == 2 * 1515
    assert "read 1515 battles" in err


def test_bootstrap_is_reproducible_from_the_seed():
    log = str(refdata_dir() / "clean_battle_20240220.json")
    args = ("--input", log, "--rounds", "50", "--output", "json")
    first, _ = rank(*args, "--seed", "3")
    assert rank(*args, "--seed", "3")[0] == first
    assert rank(*args, "--seed", "4")[0] != first


def test_table_output_and_elo_method():
    log = str(refdata_dir() / "clean_battle_20240220.json")
    out, _ = rank("--input", log, "--method", "elo", "--ci", "none", "--output", "table")
    lines = out.splitlines()
    assert lines[0].split() == ["group", "rank", "model", "rating", "lower", "upper", "battles"]
    assert len(lines) == 1 + 13 + 1  # and the note that ranks compare only within a group
    assert lines[1].split()[:2] == ["1", "1"]
    top = {line.split()[2] for line in lines[1:14] if line.split()[1] == "1"}
    assert top == {"imagenhub_PlayGroundV2_generation", "imagenhub_Prompt2prompt_edition"}


def test_unrated_models_are_named_on_stderr_and_listed_as_not_rated_in_json(tmp_path):
    battles = [
        BATTLE,
        dict(BATTLE, winner="model_b"),
        {"model_a": "gamma", "model_b": "alpha", "winner": "model_a"},
    ]
    path = tmp_path / "battles.json"
    path.write_text(json.dumps(battles))
    out, err = rank("--input", str(path), "--ci", "none", "--output", "json")
    rows = json.loads(out)
    assert [(r["model"], r["group"], r["rated"]) for r in rows] == [
        ("alpha", 1, True), ("beta", 1, True), ("gamma", None, False)
    ]  # fmt: skip
    assert rows[2]["note"] == "only wins" and rows[2]["rating"] is None
    assert "not rated: gamma (only wins, 1 battles)" in err


def test_a_lone_winner_is_not_rated_above_a_real_group(tmp_path):
    """a, b, c beat each other in a cycle; X beat Y once: X and Y form no rateable group."""
    cycle = [("a", "b"), ("b", "c"), ("c", "a")] * 3
    battles = [{"model_a": a, "model_b": b, "winner": "model_a"} for a, b in cycle]
    battles.append({"model_a": "X", "model_b": "Y", "winner": "model_a"})
    path = tmp_path / "battles.json"
    path.write_text(json.dumps(battles))
    out, _ = rank("--input", str(path), "--ci", "sandwich", "--output", "json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert {m: (r["group"], r["rank"]) for m, r in rows.items() if r["rated"]} == {
        "a": (1, 1), "b": (1, 1), "c": (1, 1)
    }  # fmt: skip
    assert (rows["X"]["rated"], rows["X"]["note"]) == (False, "only wins")
    assert (rows["Y"]["rated"], rows["Y"]["rating"], rows["Y"]["note"]) == (
        False, None, "only losses"
    )  # fmt: skip
    table, _ = rank("--input", str(path), "--ci", "sandwich")
    assert [line.split()[:3] for line in table.splitlines()[1:4]] == [["1", "1", m] for m in "abc"]
    assert "not rated: only losses" in table.splitlines()[-1]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "cannot open file"),
        ("[{", (), "not valid JSON"),
        (
            json.dumps([BATTLE, {"model_a": "a", "model_b": "b"}]),
            (),
            "record 2: field 'winner' is missing",
        ),
        (
            json.dumps([dict(BATTLE, winner="draw")]),
            (),
            "record 1: field 'winner' has unknown value 'draw'",
        ),
        (json.dumps([BATTLE]), ("--rounds", "0"), "expected a positive integer"),
        (json.dumps([BATTLE]), ("--rounds", "many"), "expected a positive integer"),
        (json.dumps([BATTLE]), ("--method", "elo", "--ci", "sandwich"), "Elo has no sandwich"),
        (json.dumps([]), (), "no battles to rank"),
        (json.dumps([BATTLE]), ("--style-control",), "'conversation_a' is missing"),
    ],
)
def test_bad_input_ends_in_a_one_line_command_error(tmp_path, content, args, message):
    path = tmp_path / "battles.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError) as info:
        rank("--input", str(path), *args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_manage_py_rank_prints_json_and_fails_without_a_traceback(tmp_path):
    env = dict(
        os.environ,
        SECRET_KEY="rank-command-test-" + "x" * 40,
        DJANGO_SETTINGS_MODULE="arena.settings",
    )
    log = str(refdata_dir() / "clean_battle_20240220.json")
    command = [
        sys.executable,
        "manage.py",
        "rank",
        "--input",
        log,
        "--ci",
        "none",
        "--output",
        "json",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 13
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"model_a": "a", "model_b": "b", "winner": "?"}]))
    command[4] = str(bad)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("CommandError: ")
