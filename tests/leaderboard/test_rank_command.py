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
        ["model", "rating", "lower", "upper", "rank", "battles"]
    ] * 13
    assert [r["rating"] for r in rows] == sorted((r["rating"] for r in rows), reverse=True)
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
    assert lines[0].split()[:6] == ["rank", "model", "rating", "lower", "upper", "battles"]
    assert len(lines) == 1 + 13
    assert "imagenhub_PlayGroundV2_generation" in lines[1]


def test_unrated_models_are_named_on_stderr_and_left_out_of_json(tmp_path):
    battles = [
        BATTLE,
        dict(BATTLE, winner="model_b"),
        {"model_a": "gamma", "model_b": "alpha", "winner": "model_a"},
    ]
    path = tmp_path / "battles.json"
    path.write_text(json.dumps(battles))
    out, err = rank("--input", str(path), "--ci", "none", "--output", "json")
    assert [r["model"] for r in json.loads(out)] == ["alpha", "beta"]
    assert "not rated: gamma (only wins, 1 battles)" in err


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
