"""What an import costs the database: only the indexes a query uses, each query still answered by
an index, one already-imported check a batch, compact record hashes, and on PostgreSQL the
foreign-key triggers skipped where permitted (and checked as usual where not)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from arena.models import Battle, Vote
from leaderboard.data.import_ids import RecordIds
from leaderboard.data.import_store import ImportResult, _Rows, imported_ids
from leaderboard.data.importer import battles_import
from tests.leaderboard.test_import import text_free_records, write_log


def indexes(table: str) -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return {name: info for name, info in found.items() if info["index"] or info["unique"]}


def test_only_the_indexes_a_query_uses_are_kept(db: None) -> None:
    votes, battles = indexes("arena_vote"), indexes("arena_battle")
    for name in ("vote_created_at", "vote_visitor_id", "vote_prompt_key", "vote_invalid",
                 "vote_simulated", "vote_unique_external_id"):  # fmt: skip
        assert name in votes
    for name in ("battle_created_at", "battle_simulated", "battle_unique_share_id"):
        assert name in battles
    alone = {tuple(info["columns"]) for info in votes.values()} | {
        tuple(info["columns"]) for info in battles.values()
    }
    # Columns no query looks rows up by: every insert paid for their indexes.
    for column in ("source", "model_a_id", "model_b_id", "mode", "is_valid"):
        assert (column,) not in alone
    # No LIKE twins (PostgreSQL's varchar_pattern_ops copies): no query uses LIKE on them.
    assert not [name for name in [*votes, *battles] if name.endswith("_like")]


def plan(sql: str, params: list[Any]) -> str:
    """The query plan as text; on PostgreSQL with sequential scans priced out, so that a tiny
    test table still shows whether an index can answer."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return str(cursor.fetchall())


def queryset_plan(queryset: Any) -> str:
    """The plan of a query as the code asks it: without the model's default ordering."""
    sql, params = queryset.order_by().query.sql_with_params()
    return plan(sql, list(params))


def test_the_queries_still_use_an_index(db: None) -> None:
    from leaderboard.data.import_store import present_sql

    among = "= ANY(%s)" if connection.vendor == "postgresql" else (
        "IN (SELECT value FROM json_each(%s))")  # fmt: skip
    ids: Any = ["a", "b"] if connection.vendor == "postgresql" else json.dumps(["a", "b"])
    assert "vote_unique_external_id" in plan(present_sql(among), ["import:x", ids])
    shared = Battle.objects.filter(share_id="abc", share_revoked=False)
    assert "battle_unique_share_id" in queryset_plan(shared)
    # The excluded votes by reason, as leaderboard/pipeline/snapshots.py counts them.
    invalid = (
        Vote.objects.filter(is_valid=False).values_list("invalid_reason").annotate(n=Count("id"))
    )
    assert "vote_invalid" in queryset_plan(invalid)
    assert "vote_simulated" in queryset_plan(Vote.objects.filter(simulated=True))
    assert "battle_simulated" in queryset_plan(Battle.objects.filter(simulated=True))
    assert "vote_visitor_id" in queryset_plan(Vote.objects.filter(visitor_id__in=["v1", "v2"]))
    assert "vote_prompt_key" in queryset_plan(Vote.objects.filter(prompt_key__in=["k1", "k2"]))


def test_the_already_imported_check_is_one_query_a_batch(db: None, tmp_path: Path) -> None:
    """Before: one query per 900 ids (eleven a batch of 10,000)."""
    assert imported_ids("import:x", ["a"]) == set()
    battles_import(path=write_log(text_free_records(), tmp_path / "log.jsonl"), source="x")
    asked = ["q1", "q2", "q99", *(f"none{i}" for i in range(2000))]
    with CaptureQueriesContext(connection) as queries:
        assert imported_ids("import:x", asked) == {"q1", "q2"}
    assert len(queries.captured_queries) == 1
    assert imported_ids("import:y", ["q1"]) == set()


def counter_ids(texts: list[str]) -> list[str]:
    """The ids as the importer numbered them before (a Counter of id strings)."""
    seen: Counter[str] = Counter()
    out = []
    for text in texts:
        external_id = "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]
        seen[external_id] += 1
        out.append(external_id if seen[external_id] == 1 else f"{external_id}#{seen[external_id]}")
    return out


def test_record_hashes_are_numbered_as_before_in_batches_and_one_by_one() -> None:
    # "8" hashes to a digest ending in a zero byte, which numpy's byte strings must keep apart.
    texts = ["8", *(str(i % 700) for i in range(3000)), "8", "8"]
    numbered = RecordIds()
    batches = [numbered.ids(texts[i : i + 999]) for i in range(0, len(texts), 999)]
    assert [x for batch in batches for x in batch] == counter_ids(texts)
    one = RecordIds()
    assert [one.one(text) for text in texts * 5] == counter_ids(texts * 5)
    assert len(numbered.seen) == 700  # one 16-byte key per distinct record


def test_identical_records_over_many_batches_import_once_each(
    db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("leaderboard.data.import_columns.BULK_BATCH", 7)
    records = [{k: v for k, v in r.items() if k != "question_id"} for r in text_free_records()]
    path = write_log(records * 3, tmp_path / "log.parquet")
    first = battles_import(path=path, source="x")
    again = battles_import(path=path, source="x")
    assert (first.created, again.created, again.already_present) == (186, 0, 186)
    ids = list(Vote.objects.filter(source="import:x").values_list("external_id", flat=True))
    assert len(set(ids)) == 186 and sum("#" in i for i in ids) > 124


def test_a_new_source_finds_repeated_ids_without_asking_the_database(
    db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("leaderboard.data.import_columns.BULK_BATCH", 4)
    rows = [{**r, "question_id": f"a{i % 6}"} for i, r in enumerate(text_free_records()[:20])]
    path = write_log(rows, tmp_path / "log.parquet")
    with CaptureQueriesContext(connection) as queries:
        first = battles_import(path=path, source="x")
    assert (first.created, first.already_present) == (6, 14)
    asked = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT "external_id')
    ]
    assert len(asked) == 1  # whether the source has votes; then none a batch
    again = battles_import(path=path, source="x")
    assert (again.created, again.already_present) == (0, 20)


def columns_store(path: Path, label: str) -> _Rows:
    from leaderboard.data.import_columns import columns_import

    store = _Rows(label, ImportResult(path=path, source=label))
    assert columns_import(path=path, store=store, progress=None)
    return store


postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's foreign-key triggers"
)


@postgres_only
def test_a_superuser_import_skips_the_per_row_foreign_key_triggers(
    db: None, tmp_path: Path
) -> None:
    path = write_log(text_free_records(), tmp_path / "log.parquet")
    store = columns_store(path, "import:x")
    assert store.replica and store.result.created == 62
    with connection.cursor() as cursor:
        # SET LOCAL ends with the batch's transaction (here a savepoint in the test's).
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] in ("origin", "replica")
    assert Vote.objects.filter(source="import:x", battle__isnull=False).count() == 62


@postgres_only
def test_without_the_right_to_skip_triggers_the_import_checks_every_row(
    db: None, tmp_path: Path
) -> None:
    path = write_log(text_free_records(), tmp_path / "log.parquet")
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE arena_import_test NOSUPERUSER")
        cursor.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO arena_import_test")
        cursor.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO arena_import_test")
        cursor.execute("SET LOCAL ROLE arena_import_test")  # until the test's rollback
    store = columns_store(path, "import:x")
    assert not store.replica and store.result.created == 62
    assert Vote.objects.filter(source="import:x").count() == 62


@postgres_only
def test_outside_a_transaction_a_batch_is_stored_while_the_next_is_made(
    transactional_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second connection's batch is not committed when the next batch asks what is already
    imported: a record repeated in the next batch must still be found (else: a unique error)."""
    monkeypatch.setattr("leaderboard.data.import_columns.BULK_BATCH", 5)
    rows = [{**r, "question_id": f"a{i}"} for i, r in enumerate(text_free_records()[:10])]
    # The source has a vote: "already imported?" is asked of the database, batch by batch.
    battles_import(path=write_log(rows[9:], tmp_path / "first.parquet"), source="x")
    path = write_log(rows[:5] + rows[:5] + rows[5:], tmp_path / "log.parquet")
    first = battles_import(path=path, source="x")
    assert (first.created, first.already_present) == (9, 6)
    again = battles_import(path=path, source="x")
    assert (again.created, again.already_present) == (0, 15)
    assert Vote.objects.filter(source="import:x").count() == 10
