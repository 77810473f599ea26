"""Where imported battles are written: the per-record and bulk writers, and the already-imported
check. Apart from the importer so that its columnar path (leaderboard/data/import_columns.py)
shares them without the two importing each other.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone

from arena.models import ArenaModel, Battle, Vote, new_battle_id
from arena.visitors import keyed_hash
from leaderboard.data.formats.arena import (
    record_facts,
)
from leaderboard.data.formats.records import prompt_hash

BULK_BATCH = 10_000
_NAME_MAX = ArenaModel._meta.get_field("name").max_length or 100
_SOURCE_MAX = Vote._meta.get_field("source").max_length or 100


@dataclass
class ImportResult:
    path: Path
    source: str
    read: int = 0
    created: int = 0
    already_present: int = 0
    bad: int = 0
    without_text: int = 0
    errors: list[str] = field(default_factory=list)
    models_created: list[str] = field(default_factory=list)
    seconds: float = 0.0


def imported_ids(source: str, ids: list[str]) -> set[str]:
    """The ids among ``ids`` already imported under ``source``: one query for the whole batch
    (the ids as one array parameter, PostgreSQL, or one JSON text, SQLite), answered by the
    unique (source, external_id) index. Raw SQL: preparing 10,000 parameters a batch through
    the ORM's lookups cost more than the queries."""
    if not ids:
        return set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(present_sql("= ANY(%s)"), [source, list(ids)])
        elif connection.vendor == "sqlite":
            cursor.execute(present_sql("IN (SELECT value FROM json_each(%s))"),
                           [source, json.dumps(ids)])  # fmt: skip
        else:
            present: set[str] = set()
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                cursor.execute(present_sql(f"IN ({', '.join(['%s'] * len(chunk))})"),
                               [source, *chunk])  # fmt: skip
                present.update(row[0] for row in cursor.fetchall())
            return present
        return {row[0] for row in cursor.fetchall()}


def source_has_votes(source: str) -> bool:
    """Whether any vote was imported under ``source`` (by the unique index's condition)."""
    with connection.cursor() as cursor:
        cursor.execute(present_sql("IS NOT NULL") + " LIMIT 1", [source])
        return cursor.fetchone() is not None


def present_sql(among: str) -> str:
    """The query of :func:`imported_ids`, ``among`` the test on the ids. The
    ``external_id != ''`` term is the unique index's condition: without it SQLite cannot use that
    index and reads every vote of the source for each batch (an import slowed down as it went)."""
    quote = connection.ops.quote_name
    return (
        f"SELECT {quote('external_id')} FROM {quote(Vote._meta.db_table)} "
        f"WHERE {quote('source')} = %s AND {quote('external_id')} {among} "
        f"AND NOT ({quote('external_id')} = '')"
    )


class _Store:
    """Writes batches of checked records, creating the models the arena does not know yet."""

    def __init__(self, source: str, result: ImportResult) -> None:
        self.source, self.result = source, result
        self.models: dict[str, int] = dict(ArenaModel.objects.values_list("name", "id"))

    def save(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        if not batch:
            return
        ids = [external_id for external_id, _ in batch]
        present = imported_ids(self.source, ids)
        battles, votes = [], []
        with transaction.atomic():
            for external_id, record in batch:
                if external_id in present:
                    self.result.already_present += 1
                    continue
                present.add(external_id)  # a repeat later in the same batch is present too
                battle, vote = self._build(external_id, record)
                battles.append(battle)
                votes.append(vote)
            Battle.objects.bulk_create(battles)
            Vote.objects.bulk_create(votes)
        self.result.created += len(votes)

    def _model(self, name: str) -> int:
        if name not in self.models:
            model, created = ArenaModel.objects.get_or_create(
                name=name,
                defaults={
                    "display_name": name,
                    "backend": "openai",
                    "description": f"Imported from {self.source}; no backend configured.",
                    "enabled": False,
                    "in_registry": False,
                    "sampling_weight": 0.0,
                    # Shown on the leaderboard (not as deprecated), never drawn into battles.
                    "options": {"imported": self.source},
                },
            )
            self.models[name] = model.id
            if created:
                self.result.models_created.append(name)
        return self.models[name]

    def _build(self, external_id: str, record: dict[str, Any]) -> tuple[Battle, Vote]:
        model_a, model_b = self._model(record["model_a"]), self._model(record["model_b"])
        when = (
            dt.datetime.fromtimestamp(record["tstamp"], dt.UTC)
            if record["tstamp"] is not None
            else timezone.now()
        )
        # The log's judge, namespaced by the source: the same label in two logs (or a live
        # visitor's) is not the same voter. No judge: no voter, and the detector tests none.
        judge = record["judge"]
        visitor = keyed_hash("judge", f"{self.source}\0{judge}") if judge else ""
        battle = Battle(model_a_id=model_a, model_b_id=model_b, visitor_id=visitor, created_at=when)
        reason = record["exclusion_reason"]
        vote = Vote(
            battle=battle,
            model_a_id=model_a,
            model_b_id=model_b,
            outcome=record["winner"],
            visitor_id=visitor,
            is_valid=not reason,
            invalid_reason=reason[:200],
            battle_started_at=when,
            created_at=when,
            source=self.source,
            external_id=external_id,
            anony=record["anony"],
            **self._facts(record),
        )
        vote.prompt_key = prompt_hash(
            {"battle_id": battle.id, "external_id": external_id,
             "conversation_a": vote.conversation_a, "conversation_b": vote.conversation_b}
        )  # fmt: skip
        return battle, vote

    def _facts(self, record: dict[str, Any]) -> dict[str, Any]:
        """The per-vote facts: the log's own values where it has them, else computed as for a
        live vote (:func:`leaderboard.data.formats.arena.record_facts`, which `rank` reads too)."""
        if record["conversation_a"] is None:
            self.result.without_text += 1
        found = record_facts(record)
        return {
            **found,
            "style_a": found["style_a"] or {},
            "style_b": found["style_b"] or {},
            "conversation_a": record["conversation_a"] or [],
            "conversation_b": record["conversation_b"] or [],
        }


class _Rows(_Store):
    """The rows :class:`_Store` writes, written by raw SQL: ``executemany`` of one INSERT per
    table, or COPY on PostgreSQL; a transaction per batch. Building a model instance per row
    took more time than all the rest of an import."""

    def __init__(self, source: str, result: ImportResult) -> None:
        super().__init__(source, result)
        if connection.vendor == "sqlite":
            # Index pages of the votes in memory (up to 256 MB, taken as used): each insert
            # touches nine indexes at random places; SQLite's default cache is 2 MB.
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA cache_size = -262144")
        self.analyzed = BULK_BATCH
        # Whether to try skipping PostgreSQL's per-row foreign-key triggers (_checked_once).
        self.replica = True
        self.stored_time: Callable[[dt.datetime], Any] = (
            (lambda when: when)
            if connection.vendor == "postgresql"
            else connection.ops.adapt_datetimefield_value
        )
        self.tables = [(model, [f for f in model._meta.concrete_fields
                                if not isinstance(f, models.AutoField)])
                       for model in (Battle, Vote)]  # fmt: skip
        # Columns an import has nothing to say about (a battle's mode, its share link, ...) get
        # their model default, so that a field added to Battle or Vote does not break the writer.
        self.defaults = {f.attname: column_default(f) for _, fields in self.tables for f in fields}

    def save(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        if not batch:
            return
        ids = [external_id for external_id, _ in batch]
        present = imported_ids(self.source, ids)
        rows: list[list[tuple[Any, ...]]] = [[], []]
        for external_id, record in batch:
            if external_id in present:
                self.result.already_present += 1
                continue
            present.add(external_id)  # a repeat later in the same batch is present too
            for table, values in zip(rows, self._values(external_id, record), strict=True):
                table.append(values)
        self.write(rows)

    def write(self, rows: list[list[tuple[Any, ...]]]) -> None:
        """One transaction: the battles' rows, then the votes'."""
        with transaction.atomic():
            if connection.vendor == "postgresql" and rows[1]:
                self._checked_once(rows)
            for (model, fields), table in zip(self.tables, rows, strict=True):
                _insert(model, fields, table)
        self.result.created += len(rows[1])
        if connection.vendor == "postgresql" and self.result.created >= self.analyzed * 2:
            # PostgreSQL's statistics lag a bulk load: until its autovacuum runs ANALYZE, the
            # planner misjudges the votes (it answered imported_ids by the `source` index, when
            # there was one, reading every vote of the source for each batch: a re-import of
            # 200k took 9.6 s, and the first import slowed down as it grew). Analysed as the
            # votes double.
            self.analyzed = self.result.created
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(Vote._meta.db_table)}")

    def _checked_once(self, rows: list[list[tuple[Any, ...]]]) -> None:
        """PostgreSQL checks each foreign key of each row by a trigger (five a battle). Checked
        here once for the batch instead: the models exist, every vote's battle is in the batch;
        then the batch's transaction runs with ``session_replication_role = replica``, which
        skips the triggers (unique indexes still hold). Setting it needs a superuser, or on
        PostgreSQL 15+ ``GRANT SET ON PARAMETER session_replication_role TO <role>``; without
        it (or if the check fails) the triggers check every row as usual."""
        if not self.replica:
            return
        battles, votes = rows
        battle_fields, vote_fields = self.tables[0][1], self.tables[1][1]
        column = {f.attname: k for k, f in enumerate(vote_fields)}
        battle_column = {f.attname: k for k, f in enumerate(battle_fields)}
        models_used = {row[column["model_a_id"]] for row in votes}
        models_used |= {row[column["model_b_id"]] for row in votes}
        models_used |= {row[battle_column[name]] for row in battles
                        for name in ("model_a_id", "model_b_id")}  # fmt: skip
        own = {row[battle_column["id"]] for row in battles}
        if not all(row[column["battle_id"]] in own for row in votes):
            return
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {connection.ops.quote_name(ArenaModel._meta.db_table)} "
                "WHERE id = ANY(%s)",
                [sorted(models_used)],
            )
            if cursor.fetchone()[0] != len(models_used):
                return
            try:
                with transaction.atomic():  # a savepoint: a refusal leaves the batch usable
                    cursor.execute("SET LOCAL session_replication_role = replica")
            except DatabaseError:
                self.replica = False  # not permitted: per-row checks from now on

    def _values(
        self, external_id: str, record: dict[str, Any]
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The battle's and the vote's column values, as :meth:`_Store._build` sets them."""
        model_a, model_b = self._model(record["model_a"]), self._model(record["model_b"])
        when = (
            dt.datetime.fromtimestamp(record["tstamp"], dt.UTC)
            if record["tstamp"] is not None
            else timezone.now()
        )
        judge = record["judge"]
        visitor = keyed_hash("judge", f"{self.source}\0{judge}") if judge else ""
        battle_id = new_battle_id()
        found = self._facts(record)
        reason = record["exclusion_reason"]
        key = prompt_hash(
            {"battle_id": battle_id, "external_id": external_id,
             "conversation_a": found["conversation_a"], "conversation_b": found["conversation_b"]}
        )  # fmt: skip
        # As Django prepares them for the driver: JSON as text, times as SQLite stores them.
        for name in ("conversation_a", "conversation_b", "style_a", "style_b"):
            found[name] = _json(found[name])
        stored = self.stored_time(when)
        battle = {
            "id": battle_id,
            "model_a_id": model_a,
            "model_b_id": model_b,
            "visitor_id": visitor,
            "ip_hash": "",
            "created_at": stored,
            "moderation": "[]",
            "simulated": False,
        }
        vote = {
            **found, "battle_id": battle_id, "model_a_id": model_a, "model_b_id": model_b,
            "outcome": record["winner"], "visitor_id": visitor, "is_valid": not reason,
            "invalid_reason": reason[:200], "battle_started_at": stored, "created_at": stored,
            "source": self.source, "external_id": external_id, "anony": record["anony"],
            "prompt_key": key, "simulated": False,
        }  # fmt: skip
        defaults = self.defaults
        return (
            tuple([battle.get(f.attname, defaults[f.attname]) for f in self.tables[0][1]]),
            tuple([vote.get(f.attname, defaults[f.attname]) for f in self.tables[1][1]]),
        )


_NO_DEFAULT = object()


def column_default(field: Any) -> Any:
    """A column's value as the raw-SQL writer stores it when an import does not set it: the
    model default (JSON as text), else NULL where allowed; a marker that fails loudly at
    insert otherwise (a new required column the importer must learn about)."""
    if field.has_default() and not callable(field.default):
        value = field.get_default()
        return _json(value) if isinstance(value, list | dict) else value
    if field.has_default() and field.default in (list, dict):
        return _json(field.default())
    return None if field.null else _NO_DEFAULT


def _json(value: Any) -> str:
    """A JSONField's value as Django stores it (``json.dumps``); the empty ones without a call."""
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value)


def _insert(model: type[models.Model], fields: list[Any], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(fields))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


class BatchWriter:
    """Writes a :class:`_Rows` store's batches; on PostgreSQL, outside a caller's transaction,
    on a second connection in a thread, so that the server stores one batch while this process
    makes the next (one batch in flight). Its ids count as already imported for the next
    batch (not committed yet, so the already-imported query cannot see them). Inside a caller's
    transaction (tests, a caller's atomic block), and on SQLite (one writer), in line."""

    def __init__(self, store: _Rows) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self.store = store
        threaded = connection.vendor == "postgresql" and not connection.in_atomic_block
        self.pool = ThreadPoolExecutor(max_workers=1) if threaded else None
        self.pending: Future[None] | None = None
        self.flying: set[str] = set()

    def in_flight(self, ids: list[str]) -> set[str]:
        return self.flying.intersection(ids) if self.flying else set()

    def write(self, rows: list[list[tuple[Any, ...]]], ids: list[str]) -> None:
        if self.pool is None:
            self.store.write(rows)
            return
        self.wait()
        self.flying = set(ids)
        self.pending = self.pool.submit(self.store.write, rows)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # the writer's error, raised here
        self.flying = set()

    def close(self) -> None:
        """Wait for the last batch; the thread's connection is closed."""
        if self.pool is None:
            return
        try:
            self.wait()
        finally:
            self.pool.submit(_close_connection).result()
            self.pool.shutdown()


def _close_connection() -> None:
    connection.close()  # the calling thread's own (``connection`` is per thread)
