"""Battle logs in: the reference log, the public layouts, round trips, and bad files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from arena.models import ArenaModel, Battle, Vote
from leaderboard.data.export import ExportError, ExportFilters, preferences_export
from leaderboard.data.formats.arena import BattleLogError
from leaderboard.data.importer import battles_import
from leaderboard.engine.pairs import BOTH_BAD, MODEL_A, MODEL_B, TIE
from leaderboard.models import LeaderboardSnapshot, VoterFlag
from leaderboard.pipeline import battles as battle_data
from tests.leaderboard.conftest import refdata_dir
from tests.leaderboard.test_export import models, read_split, votes  # noqa: F401 (fixtures)

REFERENCE = "clean_battle_20240220.json"


def empty_database() -> None:
    """What a fresh install holds: no votes, battles or models."""
    Vote.objects.all().delete()
    Battle.objects.all().delete()
    ArenaModel.objects.all().delete()


def conversation(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def lmsys_record(n: int, winner: str, **extra: Any) -> dict[str, Any]:
    """A record in the layout of lmsys/chatbot_arena_conversations."""
    return {
        "question_id": f"q{n:04d}",
        "model_a": "vicuna-13b",
        "model_b": "koala-13b",
        "winner": winner,
        "judge": f"arena_user_{n % 2}",
        "conversation_a": conversation(f"What is {n} plus {n}?", f"It is {2 * n}."),
        "conversation_b": conversation(f"What is {n} plus {n}?", f"# Answer\n**{2 * n}**"),
        "turn": 1,
        "anony": True,
        "language": "English",
        "tstamp": 1682351591.1322 + n,
        "openai_moderation": {"flagged": False},
        "toxic_chat_tag": {"roberta-large": {"flagged": False}},
        **extra,
    }


def test_reference_log_imports_once_with_disabled_models_and_feeds_the_leaderboard(
    db: None,
) -> None:
    path = refdata_dir() / REFERENCE
    result = battles_import(path=path)
    assert (result.read, result.created, result.bad, result.without_text) == (2061, 2061, 0, 2061)
    assert len(result.models_created) == 13
    imported = ArenaModel.objects.filter(name__in=result.models_created)
    assert imported.count() == 13
    assert not imported.filter(enabled=True).exists()
    assert not imported.filter(in_registry=True).exists()
    again = battles_import(path=path)
    assert (again.created, again.already_present, again.models_created) == (0, 2061, [])
    assert Vote.objects.count() == Battle.objects.count() == 2061
    stored = Vote.objects.all()
    assert set(stored.values_list("source", flat=True)) == {f"import:{REFERENCE}"}
    assert stored.filter(anony=True).count() == 1515
    raw = json.loads(path.read_text())
    judges = {r["judge"] for r in raw}
    assert not judges & set(Battle.objects.values_list("visitor_id", flat=True))
    assert Vote.objects.values("visitor_id").distinct().count() == len(judges)
    first = Vote.objects.order_by("created_at").first()
    assert first is not None and first.created_at.timestamp() == min(r["tstamp"] for r in raw)
    # The leaderboard's own selection sees every imported battle with the file's outcomes.
    names, index = battle_data.model_names()
    arrays = battle_data.battles_aggregated(battle_data.valid_votes(), names, index)
    codes = np.bincount(arrays.outcome, minlength=4)
    assert codes[[MODEL_A, MODEL_B, TIE, BOTH_BAD]].tolist() == [759, 744, 130, 428]


def test_battles_without_text_export_as_arena_and_are_counted_as_skipped_elsewhere(
    db: None, tmp_path: Path
) -> None:
    battles_import(path=refdata_dir() / REFERENCE, source="genai-arena")
    arena = preferences_export(output=tmp_path / "arena", fmt="arena")
    assert arena.records == 2061
    # Every battle needs text for a TRL record: nothing to write, and the error says why.
    with pytest.raises(ExportError) as refused:
        preferences_export(output=tmp_path / "reward", fmt="trl-reward")
    assert str(refused.value) == (
        "nothing to export: 2061 votes selected, all skipped "
        "(2061 imported without conversation text)"
    )


def comparable(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """Records without the judge (a per-export pseudonym), and the judge as a partition."""
    records = sorted(records, key=lambda r: r["question_id"])
    first_seen: dict[str, int] = {}
    partition = [first_seen.setdefault(r["judge"], len(first_seen)) for r in records]
    return [{k: v for k, v in r.items() if k != "judge"} for r in records], partition


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_arena_export_imported_into_an_empty_database_exports_the_same_records(
    votes: list[Vote],  # noqa: F811
    tmp_path: Path,
    file_format: str,
) -> None:
    filters = ExportFilters(include_invalid=True)
    first = tmp_path / "first"
    preferences_export(output=first, fmt="arena", file_format=file_format, filters=filters)
    before = read_split(first)
    empty_database()
    for path in sorted((first / "data").iterdir()):
        assert battles_import(path=path, strict=True).created == 12
    second = tmp_path / "second"
    preferences_export(output=second, fmt="arena", file_format=file_format, filters=filters)
    after = read_split(second)
    assert comparable(after) == comparable(before)
    assert {r["exclusion_reason"] for r in after} == {"", "identity leak", "moderation: flagged"}


def test_pairwise_export_imports_back_to_the_same_rows(
    votes: list[Vote],  # noqa: F811
    tmp_path: Path,
) -> None:
    preferences_export(output=tmp_path / "one", fmt="pairwise", file_format="parquet")
    before = read_split(tmp_path / "one")
    empty_database()
    battles_import(path=next((tmp_path / "one" / "data").iterdir()), strict=True)
    preferences_export(output=tmp_path / "two", fmt="pairwise", file_format="parquet")
    assert sorted(read_split(tmp_path / "two"), key=lambda r: r["id"]) == sorted(
        before, key=lambda r: r["id"]
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_chatbot_arena_conversations_layout_imports_with_text_and_facts(
    db: None, tmp_path: Path, suffix: str
) -> None:
    records = [
        lmsys_record(1, "model_a"),
        lmsys_record(2, "model_b", language="German"),
        lmsys_record(3, "tie (bothbad)"),
        lmsys_record(4, "tie"),
    ]
    path = tmp_path / f"conversations{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    result = battles_import(path=path, source="lmsys")
    assert (result.created, result.bad, result.without_text) == (4, 0, 0)
    by_id = {v.external_id: v for v in Vote.objects.filter(source="import:lmsys")}
    outcomes = [by_id[f"q000{i}"].outcome for i in range(1, 5)]
    assert outcomes == ["model_a", "model_b", "both_bad", "tie"]
    first = by_id["q0001"]
    assert first.language == "en" and by_id["q0002"].language == "de"
    assert first.conversation_b[1]["content"] == "# Answer\n**2**"
    assert first.style_b == {"headers": 1, "lists": 0, "bold": 1}
    assert (first.turns, first.prompt_chars, first.tokens_a) == (1, len("What is 1 plus 1?"), 3)
    reward = preferences_export(output=tmp_path / "out", fmt="trl-reward")
    assert reward.records == 2


def test_the_55k_csv_layout_imports_with_one_hot_winners(db: None, tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    columns = ["id", "model_a", "model_b", "prompt", "response_a", "response_b",
               "winner_model_a", "winner_model_b", "winner_tie"]  # fmt: skip
    rows = [
        [30192, "gpt-4", "gpt-3.5", json.dumps(["Hi", "Again"]), json.dumps(["A1", "A2"]),
         json.dumps(["B1", None]), 1, 0, 0],
        [53567, "gpt-3.5", "llama-2", json.dumps(["Sort, \"quoted\"\nlines"]),
         json.dumps(["x"]), json.dumps(["y"]), 0, 0, 1],
        [65089, "llama-2", "gpt-4", json.dumps(["Q"]), json.dumps(["a"]), json.dumps(["b"]),
         0, 1, 1],
    ]  # fmt: skip
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    result = battles_import(path=path)
    assert (result.created, result.bad) == (2, 1)
    assert "record 3" in result.errors[0] and "exactly one of" in result.errors[0]
    first = Vote.objects.get(external_id="30192")
    assert first.outcome == "model_a" and first.turns == 2
    assert [m["content"] for m in first.conversation_b] == ["Hi", "B1", "Again", ""]
    assert Vote.objects.get(external_id="53567").outcome == "tie"


def test_bad_records_are_skipped_and_counted_or_stop_the_import_with_strict(
    db: None, tmp_path: Path
) -> None:
    good = {"model_a": "m1", "model_b": "m2", "winner": "model_a", "tstamp": 1.0}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"model_a": "m1", "model_b": "m2", "tstamp": 2.0}),
        json.dumps({**good, "winner": "model_c"}),
        json.dumps({**good, "tstamp": "yesterday"}),
        json.dumps({**good, "conversation_a": [{"role": "user"}], "conversation_b": "text"}),
        json.dumps({**good, "tstamp": 3.0}),
    ]
    path = tmp_path / "battles.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = battles_import(path=path)
    assert (result.read, result.created, result.bad) == (7, 2, 5)
    assert [e.split(": ", 2)[1] for e in result.errors] == [f"line {n}" for n in (2, 3, 4, 5, 6)]
    assert "field 'winner' is missing" in result.errors[1]
    assert "field 'winner' has unknown value 'model_c'" in result.errors[2]
    assert "field 'tstamp' must be a number" in result.errors[3]
    out = io.StringIO()
    call_command("import_battles", str(path), "--source", "other", "--no-progress",
                 stdout=out, stderr=io.StringIO())  # fmt: skip
    assert "2 battles imported" in out.getvalue() and "5 bad" in out.getvalue()
    with pytest.raises(CommandError) as failure:
        call_command("import_battles", str(path), "--strict", "--source", "strict")
    assert str(failure.value).startswith(f"{path}: line 2: not valid JSON: Expecting property")
    assert Vote.objects.filter(source="import:strict").count() == 1  # line 1, before the stop


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot open file"),
        (b"", "the file is empty"),
        (b"PAR1 this is not parquet", "not a readable Parquet file"),
        (b"[1, 2", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "cannot read file as UTF-8 text"),
    ],
)
def test_unreadable_files_end_in_one_line_naming_the_file(
    db: None, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "log.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CommandError) as failure:
        call_command("import_battles", str(path), "--no-progress")
    assert str(failure.value).startswith(str(path)) and message in str(failure.value)
    assert "\n" not in str(failure.value)


def test_a_strict_import_keeps_the_records_before_the_bad_one(db: None, tmp_path: Path) -> None:
    records = [lmsys_record(n, "model_a") for n in range(3)] + [{"model_a": "x"}]
    path = tmp_path / "log.json"
    path.write_text(json.dumps(records))
    with pytest.raises(CommandError, match=r"record 4: field 'model_b' is missing"):
        call_command("import_battles", str(path), "--strict", "--no-progress")
    assert Vote.objects.count() == 3
    path.write_text(json.dumps([*records[:3], lmsys_record(9, "tie")]))
    result = battles_import(path=path)
    assert (result.created, result.already_present) == (1, 3)


def test_an_imported_log_shows_on_the_leaderboard_without_the_deprecated_toggle(
    db: None, client: Any
) -> None:
    from leaderboard.pipeline.snapshots import leaderboard_snapshot_create

    battles_import(path=refdata_dir() / REFERENCE)
    leaderboard_snapshot_create()
    rows = client.get("/api/leaderboard").json()["rows"]
    assert len(rows) == 13 and not any(row["deprecated"] for row in rows)
    page = client.get("/leaderboard")
    assert page.status_code == 200
    assert b"imagenhub_PlayGroundV2_generation" in page.content


def test_an_imported_public_log_gives_the_ratings_rank_gives_on_the_same_file(
    db: None, client: Any, settings: Any
) -> None:
    """The reference log through `import_battles` and `refresh_leaderboard` (the anomaly detector
    on) gives, on the API, the overall ratings `rank --input` gives on the same file."""
    from leaderboard.management.commands.rank import rank_file

    settings.ARENA_LEADERBOARD_CI = "sandwich"
    settings.ARENA_ANOMALY_DETECTION = True
    path = refdata_dir() / REFERENCE
    out = io.StringIO()
    call_command("import_battles", str(path), "--no-progress", stdout=out)
    # What the detector had decided before it tested sources apart: the log's one judge flagged
    # (an unreviewed flag, so the detector may take it back).
    judge = Vote.objects.values_list("visitor_id", flat=True).first()
    VoterFlag.objects.create(voter=judge, reasons=["burst"], excluded=True)
    call_command("refresh_leaderboard", stdout=out)
    assert "anomaly detector: 0 voters tested, 0 flagged (0 new, 1 cleared)" in out.getvalue()
    assert not VoterFlag.objects.exists()
    rows = client.get("/api/leaderboard").json()["rows"]
    board = rank_file(input=str(path), ci="sandwich", output="json", stdout=io.StringIO(),
                      stderr=io.StringIO())  # fmt: skip
    expected = {r["model"]: r for r in board.records()}
    assert len(rows) == len(expected) == 13
    for row in rows:
        for key in ("rating", "lower", "upper"):
            assert row[key] == pytest.approx(expected[row["model"]][key], abs=1e-6), (row, key)
    # The detector's decisions, per source, are on the transparency section: the log's one
    # judge (its server's loopback address) holds every vote, so it is not tested as a voter.
    summary = LeaderboardSnapshot.objects.latest("id").details["voters"]
    assert summary == [{"source": f"import:{REFERENCE}", "valid_votes": 2061, "voters_tested": 0,
                        "shared_judges": 1, "flagged": 0, "excluded_voters": 0,
                        "votes_excluded": 0}]  # fmt: skip
    page = client.get("/leaderboard").content.decode()
    assert f"<td>import:{REFERENCE}</td>" in page and "1 shared judge not tested" in page


def stored_votes(source: str) -> list[dict[str, Any]]:
    """The stored votes of an import, without the random battle ids."""
    fields = [f.attname for f in Vote._meta.concrete_fields if f.attname not in ("id", "battle_id")]
    rows = []
    for vote in Vote.objects.filter(source=source).select_related("battle").order_by("external_id"):
        row = {name: getattr(vote, name) for name in fields}
        row["source"] = row["source"].split(":", 1)[1] != ""  # the two imports' labels differ
        battle = vote.battle
        row["battle"] = (battle.model_a_id, battle.model_b_id, battle.visitor_id, battle.ip_hash,
                         battle.created_at, battle.moderation)  # fmt: skip
        rows.append(row)
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_the_bulk_writer_stores_what_model_instances_store_and_only_once(
    db: None, tmp_path: Path, fmt: str
) -> None:
    records = [
        lmsys_record(n, ["model_a", "model_b", "tie", "tie (bothbad)"][n % 4],
                     anony=bool(n % 3), exclusion_reason="spam" if n % 7 == 0 else None)
        for n in range(40)
    ]  # fmt: skip
    # Without text nor id (the id is the record's hash), and a judge-less one.
    records += [
        {"model_a": "new-model", "model_b": "koala-13b", "winner": "model_b",
         "tstamp": 1.7e9 + n, "judge": None if n % 2 else "j"}
        for n in range(30)
    ]  # fmt: skip
    records.append(dict(records[-1]))  # an identical record: numbered, not lost
    path = tmp_path / f"log.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        pq.write_table(pa.Table.from_struct_array(pa.array(records)), path)
    bulk = battles_import(path=path, source="bulk", bulk=True)
    orm = battles_import(path=path, source="orm", bulk=False)
    assert bulk.created == orm.created == 71
    assert bulk.without_text == orm.without_text == 31
    fast, slow = stored_votes("import:bulk"), stored_votes("import:orm")
    differ = {"visitor_id", "battle"}  # keyed by the source label
    for a, b in zip(fast, slow, strict=True):
        assert {k: v for k, v in a.items() if k not in differ} == {
            k: v for k, v in b.items() if k not in differ
        }
        assert bool(a["visitor_id"]) == bool(b["visitor_id"])
        assert a["battle"][:2] + a["battle"][3:] == b["battle"][:2] + b["battle"][3:]
    # Read back by the ORM as the ORM wrote them: types and time zones included.
    assert all(v["created_at"].tzinfo is not None for v in fast)
    again = battles_import(path=path, source="bulk", bulk=True)
    assert (again.created, again.already_present) == (0, 71)
    assert Vote.objects.filter(source="import:bulk").count() == 71
    assert Battle.objects.count() == 142


def text_free_records() -> list[dict[str, Any]]:
    """Every column an import reads, without texts: ids (text, integer, none), judges (some
    none), facts, exclusions, models new to the arena, identical records."""
    records: list[dict[str, Any]] = []
    for n in range(60):
        record: dict[str, Any] = {
            "model_a": f"new-{n % 5}", "model_b": "koala-13b" if n % 4 else f"new-{n % 7}",
            "winner": ["model_a", "model_b", "tie", "tie (bothbad)"][n % 4],
            "judge": None if n % 5 == 0 else f"judge-{n % 3}",
            "anony": bool(n % 3), "tstamp": 1.7e9 + n * 1.25, "language": "English",
            "turn": n % 3, "prompt_chars": 10 * n, "is_code": n % 2 == 0,
            "exclusion_reason": "spam" if n % 7 == 0 else None,
        }  # fmt: skip
        if n < 20:
            record["question_id"] = f"q{n}"
        records.append(record)
    records.append(dict(records[-1]))  # identical: numbered, not lost
    records.append(dict(records[-1]))
    return records


def write_log(records: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_struct_array(pa.array(records)), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(records))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet"])
def test_the_columnar_path_stores_what_the_per_record_path_stores(
    db: None, tmp_path: Path, fmt: str
) -> None:
    path = write_log(text_free_records(), tmp_path / f"log.{fmt}")
    slow = battles_import(path=path, source="slow", columns=False)
    created_slow = list(ArenaModel.objects.order_by("id").values_list("name", flat=True))
    fast = battles_import(path=path, source="fast")
    assert (fast.read, fast.created, fast.without_text) == (slow.read, slow.created, 62) == (
        62, 62, slow.without_text)  # fmt: skip
    assert list(ArenaModel.objects.order_by("id").values_list("name", flat=True)) == created_slow
    rows_fast, rows_slow = stored_votes("import:fast"), stored_votes("import:slow")
    assert len(rows_fast) == 62
    for a, b in zip(rows_fast, rows_slow, strict=True):
        # The judge's hash is keyed by the source label; the rest is equal, column by column.
        assert bool(a.pop("visitor_id")) == bool(b.pop("visitor_id"))
        assert a.pop("battle")[3:] == b.pop("battle")[3:]
        assert a == b
    # The same judge under the same label: the same hash as the per-record path's.
    again = battles_import(path=path, source="slow")
    assert (again.created, again.already_present) == (0, 62)
    assert Vote.objects.filter(source="import:slow").count() == 62


def test_the_columnar_path_creates_new_models_as_the_per_record_path_does(
    db: None, tmp_path: Path
) -> None:
    """In the order met, in the same result; and the judges' hashes equal under one label."""
    path = write_log(text_free_records(), tmp_path / "log.parquet")
    slow = battles_import(path=path, source="one", columns=False)
    slow_rows = stored_votes("import:one")
    Vote.objects.all().delete()
    Battle.objects.all().delete()
    ArenaModel.objects.filter(name__in=slow.models_created).delete()
    fast = battles_import(path=path, source="one")
    assert fast.models_created == slow.models_created
    assert set(slow.models_created) >= {f"new-{i}" for i in range(7)}
    fast_rows = stored_votes("import:one")
    for a, b in zip(fast_rows, slow_rows, strict=True):
        a.pop("battle"), b.pop("battle")
        a.pop("model_a_id"), b.pop("model_a_id")  # the models were created anew
        a.pop("model_b_id"), b.pop("model_b_id")
        assert a == b  # visitor ids (the judges' hashes) included


def test_a_strict_stop_then_fixed_log_gives_the_clean_import(db: None, tmp_path: Path) -> None:
    records = text_free_records()
    bad = [dict(r) for r in records]
    bad[30]["winner"] = "nobody"
    with pytest.raises(BattleLogError, match="record 31"):
        battles_import(path=write_log(bad, tmp_path / "bad.parquet"), source="log", strict=True)
    assert Vote.objects.filter(source="import:log").count() == 30
    fixed = battles_import(path=write_log(records, tmp_path / "log.parquet"), source="log")
    assert (fixed.created, fixed.already_present) == (32, 30)
    clean = battles_import(path=tmp_path / "log.parquet", source="clean")
    assert clean.created == 62
    resumed, whole = stored_votes("import:log"), stored_votes("import:clean")
    for a, b in zip(resumed, whole, strict=True):
        a.pop("battle"), b.pop("battle")
        assert bool(a.pop("visitor_id")) == bool(b.pop("visitor_id"))
        assert a == b


def test_the_progress_bar_is_off_when_stderr_is_not_a_terminal(
    db: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_log(text_free_records(), tmp_path / "log.parquet")
    out = io.StringIO()
    call_command("import_battles", str(path), stdout=out)
    assert "62 battles imported" in out.getvalue()
    assert capsys.readouterr().err == ""  # no bar: pytest's captured stderr is no terminal


def test_the_columnar_path_gives_a_batch_ids_with_one_prefix_and_a_random_part(
    db: None, tmp_path: Path
) -> None:
    """The prefix keeps a batch's battles side by side in the id indexes; the random part is as
    long as a live battle's id, and the whole fits the column."""
    battles_import(path=write_log(text_free_records(), tmp_path / "log.parquet"), source="x")
    ids = list(Battle.objects.values_list("id", flat=True))
    assert len(ids) == 62 and len(set(ids)) == 62
    assert {len(i) for i in ids} == {32} and len({i[:10] for i in ids}) == 1
    assert len({i[10:] for i in ids}) == 62
    int(ids[0][:10], 16)
