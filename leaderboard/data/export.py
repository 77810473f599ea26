"""Preference datasets out of the votes: filters, dedup, splits, sharded files and a dataset card.

:func:`preferences_export` streams the votes from the database (``values()`` rows through
``iterator(chunk_size=...)``), converts each with a format from :mod:`leaderboard.data.formats` and
writes JSON Lines or Parquet shards as it goes, so memory does not grow with the number of votes.
Only ``--dedup`` keeps per-vote state: 8-byte hashes in numpy arrays, from a first pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import queue
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from django.db import connections
from django.db.models import OuterRef, QuerySet, Subquery

from arena.models import ArenaModel, PromptImage, Turn, Vote
from leaderboard.data import datacard
from leaderboard.data.formats.kto import KTO
from leaderboard.data.formats.pairwise import PAIRWISE
from leaderboard.data.formats.records import (
    ARENA,
    Options,
    RecordFormat,
    normalise,
    prompt_key,
    stable_fraction,
)
from leaderboard.data.formats.trl import DPO, REWARD
from leaderboard.data.formats.vision import VISION_ARENA, image_path
from leaderboard.data.selection import (
    ExportError,
    ExportFilters,
    ExportResult,
    configured_categories,
    export_queryset,
)
from leaderboard.data.shards import ShardWriter, shards_finalise

FORMATS: dict[str, RecordFormat] = {
    f.name: f for f in (ARENA, DPO, REWARD, KTO, PAIRWISE, VISION_ARENA)
}
FILE_FORMATS = ("jsonl", "parquet")
CHUNK_SIZE = 2000
# Below this many votes per process, a second process costs more than it saves.
PART_MIN_VOTES = 20_000
_VALUES = (
    "id", "battle_id", "external_id", "model_a_id", "model_b_id", "outcome", "visitor_id",
    "conversation_a", "conversation_b", "is_valid", "invalid_reason", "language", "turns",
    "prompt_chars", "has_code", "tokens_a", "tokens_b", "style_a", "style_b", "anony",
    "created_at", "simulated",
)  # fmt: skip

_IMAGE_VALUES = ("image_sha256", "image_mime")
_JSON_FIELDS = ("conversation_a", "conversation_b", "style_a", "style_b")

Progress = Callable[[int, int], None]


def judge_hasher(salt: str | None) -> Callable[[str], str]:
    """The voter pseudonym: a keyed BLAKE2b (a MAC) of the stored visitor id, stable for one
    salt; a fresh random salt for each export unless one is given."""
    key = hashlib.blake2b((salt or secrets.token_hex(32)).encode(), digest_size=32).digest()

    def judge(visitor_id: str) -> str:
        if not visitor_id:
            return ""
        return hashlib.blake2b(visitor_id.encode(), key=key, digest_size=8).hexdigest()

    return judge


def preferences_export(
    *,
    output: str | Path,
    fmt: str,
    file_format: str = "jsonl",
    filters: ExportFilters | None = None,
    dedup: bool = False,
    dedup_percentile: float = 99.9,
    test_fraction: float = 0.0,
    seed: int = 0,
    judge_salt: str | None = None,
    margin: float | None = None,
    license: str = "other",
    shard_size: int = 250_000,
    overwrite: bool = False,
    progress: Progress | None = None,
    workers: int = 1,
) -> ExportResult:
    """Write a dataset folder: ``data/<split>-NNNNN-of-NNNNN.<ext>`` and ``README.md`` (the card).

    With ``workers`` > 1 (and enough votes), that many forked processes each export one
    contiguous range of vote ids to shards of their own; the shards are named in id order, so
    the output is the same records in the same order as with one process.

    Raises
    ------
    ExportError
        An unknown format or option value, an unknown model or category, a folder that
        already holds a dataset (unless ``overwrite``), or no record to write.
    """
    started = time.monotonic()
    filters = filters or ExportFilters()
    if fmt not in FORMATS:
        raise ExportError(f"--format: unknown {fmt!r} (one of {', '.join(FORMATS)})")
    if file_format not in FILE_FORMATS:
        raise ExportError(f"--file-format: unknown {file_format!r} (one of jsonl, parquet)")
    if not 0.0 <= test_fraction < 1.0:
        raise ExportError(f"--test-fraction: must be in [0, 1), got {test_fraction}")
    if not 0.0 < dedup_percentile <= 100.0:
        raise ExportError(f"--dedup-percentile: must be in (0, 100], got {dedup_percentile}")
    out = Path(output)
    categories = configured_categories()
    queryset = export_queryset(filters, categories)
    if fmt == VISION_ARENA.name:
        queryset = images_annotate(queryset)
    _prepare_folder(out, overwrite)
    result = ExportResult(output=out, fmt=fmt, file_format=file_format)
    total = queryset.count()
    dropped = _dedup_plan(queryset, dedup_percentile, result) if dedup else frozenset()
    options = Options(
        judge=judge_hasher(judge_salt),
        margin=margin,
        include_invalid=filters.include_invalid,
        include_simulated=filters.include_simulated,
    )
    job = _Job(
        record_format=FORMATS[fmt],
        options=options,
        schema=FORMATS[fmt].schema(options),
        names=dict(ArenaModel.objects.values_list("id", "name")),
        tag_names=[c.name for c in categories],
        dropped=dropped,
        test_fraction=test_fraction,
        seed=seed,
        folder=out / "data",
        file_format=file_format,
        shard_size=shard_size,
        values=_VALUES + _IMAGE_VALUES if fmt == VISION_ARENA.name else _VALUES,
    )
    workers = result.workers = max(1, min(workers, total // PART_MIN_VOTES))
    if workers == 1:
        parts = [_part_export(queryset, job, 0, _advance_reporter(progress, total))]
    else:
        parts = _parts_export_parallel(queryset, job, workers, total, progress)
    for part in parts:
        result.rows += part.rows
        result.skipped.update(part.skipped)
        result.languages.update(part.languages)
        for split, n in part.counts.items():
            result.splits[split] = result.splits.get(split, 0) + n
    if progress:
        progress(result.rows, total)
    files = shards_finalise([part.shards for part in parts], file_format)
    if not files:
        # `datasets` refuses a split without data, so an empty folder would not load.
        shutil.rmtree(out / "data")
        skipped = ", ".join(f"{n} {reason}" for reason, n in result.skipped.items())
        raise ExportError(
            f"nothing to export: {result.rows} votes selected"
            + (f", all skipped ({skipped})" if skipped else "")
        )
    result.files = [str(p.relative_to(out)) for p in files]
    if fmt == VISION_ARENA.name:
        images_write(queryset, out)
    result.splits = {split: result.splits[split] for split in sorted(result.splits)[::-1]}
    result.records = sum(result.splits.values())
    result.seconds = time.monotonic() - started
    (out / "README.md").write_text(
        datacard.card_render(
            result=result,
            record_format=job.record_format,
            schema=job.schema,
            filters=filters.describe(),
            options={
                "dedup": dedup,
                "dedup_percentile": dedup_percentile,
                "test_fraction": test_fraction,
                "seed": seed,
                "margin": margin,
                "stable_judge": judge_salt is not None,
            },
            license=license,
        ),
        encoding="utf-8",
    )
    return result


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--output: {out} is a file, not a folder")
    data = out / "data"
    if data.exists() and any(data.iterdir()):
        if not overwrite:
            raise ExportError(f"--output: {data} already holds files (use --overwrite)")
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)


def images_annotate(queryset: QuerySet[Vote]) -> QuerySet[Vote]:
    """The votes with their battle's first-turn image (the vision-arena format's only extra)."""
    first = Turn.objects.filter(battle_id=OuterRef("battle_id"), index=0)
    return queryset.annotate(
        image_sha256=Subquery(first.values("image__sha256")[:1]),
        image_mime=Subquery(first.values("image__mime")[:1]),
    )


def images_write(queryset: QuerySet[Vote], out: Path) -> None:
    """Each image of the exported battles once, as images/<sha256>.<ext> (FastChat's vision logs
    also keep images as hash-named files beside the log)."""
    folder = out / "images"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    wanted = queryset.filter(image_sha256__isnull=False).values("image_sha256")
    for image in PromptImage.objects.filter(sha256__in=wanted).iterator():
        (out / image_path(image.sha256, image.mime)).write_bytes(bytes(image.data))


def _rows(
    queryset: QuerySet[Vote],
    tag_names: list[str],
    names: dict[int, str],
    advance: Callable[[int], None],
    values: tuple[str, ...] = (),
) -> Iterator[dict[str, Any]]:
    """Vote rows as the formats expect them (see :mod:`leaderboard.data.formats.records`).

    The rows come from a plain database cursor on the queryset's own SQL: Django's per-value
    converters cost more than the rest of the export together, and the few conversions needed
    (JSON text, SQLite's 0/1 and text times) are done here, for SQLite and PostgreSQL alike.
    ``advance(n)`` is called after each chunk of ``n`` rows.
    """
    tag_fields = [f"tag_{i}" for i in range(len(tag_names))]
    fields = values or _VALUES
    rows = queryset.values_list(*fields, *tag_fields)
    n_values = len(fields)
    sql, params = rows.query.get_compiler(using=rows.db).as_sql()
    with connections[rows.db].chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CHUNK_SIZE):
            for raw in chunk:
                # The tag columns follow the named ones and are read by position.
                row = dict(zip(fields, raw, strict=False))
                for key in _JSON_FIELDS:
                    if isinstance(row[key], str | bytes):
                        row[key] = orjson.loads(row[key])
                row["model_a"] = names[row["model_a_id"]]
                row["model_b"] = names[row["model_b_id"]]
                row["tstamp"] = _timestamp(row["created_at"])
                row["tags"] = [n for n, v in zip(tag_names, raw[n_values:], strict=True) if v]
                yield row
            advance(len(chunk))


@dataclass(frozen=True)
class _Job:
    """Everything one export process needs besides its votes."""

    record_format: RecordFormat
    options: Options
    schema: pa.Schema
    names: dict[int, str]
    tag_names: list[str]
    dropped: frozenset[int]
    test_fraction: float
    seed: int
    folder: Path
    file_format: str
    shard_size: int
    # The vote fields each row carries: _VALUES, plus the image's for the vision-arena format.
    values: tuple[str, ...] = ()


@dataclass
class _Part:
    """What one export process wrote."""

    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    counts: dict[str, int] = field(default_factory=dict)
    shards: dict[str, list[Path]] = field(default_factory=dict)


def _part_export(
    queryset: QuerySet[Vote], job: _Job, part: int, advance: Callable[[int], None]
) -> _Part:
    """Convert and write the votes of ``queryset`` (one process's share) to its own shards."""
    writer = ShardWriter(job.folder, job.schema, job.file_format, job.shard_size, part=part)
    result = _Part()
    try:
        for row in _rows(queryset, job.tag_names, job.names, advance, job.values):
            result.rows += 1
            if row["id"] in job.dropped:
                continue
            converted = job.record_format.convert(row, job.options)
            if isinstance(converted, str):
                result.skipped[converted] += 1
                continue
            split = "train"
            if (
                job.test_fraction
                and stable_fraction(prompt_key(row), seed=job.seed) < job.test_fraction
            ):
                split = "test"
            for record in converted:
                writer.write(split, record)
            result.languages[row["language"]] += 1
    finally:
        result.shards = writer.close()
    result.counts = dict(writer.counts)
    return result


def _advance_reporter(progress: Progress | None, total: int) -> Callable[[int], None]:
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    return advance


def _id_ranges(queryset: QuerySet[Vote], total: int, parts: int) -> list[tuple[int, int | None]]:
    """``parts`` contiguous [low, high) ranges of vote ids holding about as many votes each."""
    ids = queryset.order_by("id").values_list("id", flat=True)
    starts = [ids[total * k // parts] for k in range(parts)]
    return [(start, starts[k + 1] if k + 1 < parts else None) for k, start in enumerate(starts)]


def _parts_export_parallel(
    queryset: QuerySet[Vote], job: _Job, workers: int, total: int, progress: Progress | None
) -> list[_Part]:
    """One forked process per id range; the parent only reports progress and collects."""
    ranges = _id_ranges(queryset, total, workers)
    context = multiprocessing.get_context("fork")
    done = [context.Value("q", 0) for _ in ranges]
    results: multiprocessing.Queue[tuple[int, _Part | str]] = context.Queue()
    # A forked child must not share the parent's database connection: it opens its own.
    connections.close_all()
    processes = []
    for part, (low, high) in enumerate(ranges):
        share = queryset.filter(id__gte=low)
        if high is not None:
            share = share.filter(id__lt=high)
        process = context.Process(
            target=_part_process, args=(share, job, part, done[part], results), daemon=True
        )
        process.start()
        processes.append(process)
    outcomes: dict[int, _Part | str] = {}
    try:
        while len(outcomes) < len(processes):
            try:
                part, outcome = results.get(timeout=0.2)
                outcomes[part] = outcome
            except queue.Empty:
                for part, process in enumerate(processes):
                    if part not in outcomes and process.exitcode not in (None, 0):
                        outcomes[part] = f"export process {part} died (exit {process.exitcode})"
            if progress:
                progress(sum(int(v.value) for v in done), total)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    failures = [outcome for outcome in outcomes.values() if isinstance(outcome, str)]
    if failures:
        raise RuntimeError("; ".join(failures))
    return [outcome for _, outcome in sorted(outcomes.items()) if isinstance(outcome, _Part)]


def _part_process(
    queryset: QuerySet[Vote],
    job: _Job,
    part: int,
    done: Any,
    results: multiprocessing.Queue[tuple[int, _Part | str]],
) -> None:
    def advance(n: int) -> None:
        with done.get_lock():
            done.value += n

    try:
        results.put((part, _part_export(queryset, job, part, advance)))
    except Exception as exc:  # reported by the parent, which raises
        results.put((part, f"export process {part}: {type(exc).__name__}: {exc}"))
    finally:
        connections.close_all()


def _timestamp(value: dt.datetime | str) -> float:
    # SQLite gives naive UTC (text, or a datetime from its converter); PostgreSQL aware times.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def _dedup_plan(
    queryset: QuerySet[Vote], percentile: float, result: ExportResult
) -> frozenset[int]:
    """Ids of the votes that ``--dedup`` drops (a first pass over the votes, hashes only).

    An exact duplicate is a vote whose normalised prompts and both answers repeat an earlier
    vote's: it adds no information. Then a prompt that recurs more often than ``percentile`` of
    the prompts do (greetings, test prompts) keeps only that many votes, the earliest.
    """
    ids, prompts, wholes = [], [], []
    rows = queryset.values_list(
        "id", "battle_id", "external_id", "conversation_a", "conversation_b"
    )
    for vote_id, battle_id, external_id, conv_a, conv_b in rows.iterator(chunk_size=CHUNK_SIZE):
        row = {"battle_id": battle_id, "external_id": external_id}
        key = prompt_key({**row, "conversation_a": conv_a, "conversation_b": conv_b})
        whole = "\0".join(
            [key]
            + [normalise(m["content"]) for m in conv_a if m["role"] == "user"]
            + [m["content"] for m in conv_a + conv_b if m["role"] == "assistant"]
        )
        ids.append(vote_id)
        prompts.append(_hash64(key))
        wholes.append(_hash64(whole))
    if not ids:
        return frozenset()
    id_array, prompt_array = np.array(ids, dtype=np.int64), np.array(prompts, dtype=np.uint64)
    _, first = np.unique(np.array(wholes, dtype=np.uint64), return_index=True)
    keep = np.zeros(len(ids), dtype=bool)
    keep[first] = True
    result.duplicates_dropped = int((~keep).sum())
    # Rank of each vote among the kept votes with the same prompt, in id order.
    kept_prompts = prompt_array[keep]
    _, counts = np.unique(kept_prompts, return_counts=True)
    cap = max(1, int(np.ceil(np.percentile(counts, percentile))))
    order = np.argsort(kept_prompts, kind="stable")
    sorted_keys = kept_prompts[order]
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    first_of_group = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - first_of_group
    over = rank >= cap
    result.capped_dropped, result.prompt_cap = int(over.sum()), cap
    drop = np.concatenate([id_array[~keep], id_array[keep][over]])
    return frozenset(drop.tolist())


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
