"""Sharded dataset files: ``data/<split>-NNNNN-of-NNNNN.{jsonl,parquet}``, written as records come.

A shard is written as a ``.partial`` file and renamed once the number of shards is known
(filters and skips happen on the way). Several writers (one per export process, each with its
``part`` number) can fill the same folder: :func:`shards_finalise` names all their shards in
part order, so the records keep the order of the votes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

# Parquet rows are buffered this many at a time and written as one row group each.
ROW_GROUP = 2000


class ShardWriter:
    """Records into ``.partial`` shard files of at most ``shard_size`` records per split.

    Parquet rows are buffered ``ROW_GROUP`` at a time (as JSON lines) and written as one row
    group each: memory stays flat. :meth:`close` finishes the files; :func:`shards_finalise`
    names them.
    """

    def __init__(
        self, folder: Path, schema: pa.Schema, file_format: str, shard_size: int, *, part: int = 0
    ) -> None:
        self.folder, self.schema, self.file_format = folder, schema, file_format
        self.shard_size, self.part = shard_size, part
        self.counts: dict[str, int] = {}
        self._shards: dict[str, list[Path]] = {}
        self._in_shard: dict[str, int] = {}
        self._jsonl: dict[str, Any] = {}
        self._parquet: dict[str, pq.ParquetWriter] = {}
        self._buffer: dict[str, list[bytes]] = {}

    def write(self, split: str, record: dict[str, Any]) -> None:
        if split not in self._shards or self._in_shard[split] >= self.shard_size:
            self._open(split)
        self._in_shard[split] += 1
        self.counts[split] = self.counts.get(split, 0) + 1
        line = orjson.dumps(record) + b"\n"
        if self.file_format == "jsonl":
            self._jsonl[split].write(line)
        else:
            self._buffer[split].append(line)
            if len(self._buffer[split]) >= ROW_GROUP:
                self._flush(split)

    def _open(self, split: str) -> None:
        self._close_shard(split)
        shards = self._shards.setdefault(split, [])
        path = self.folder / f"{split}-{self.part:03d}-{len(shards):05d}.partial"
        shards.append(path)
        self._in_shard[split] = 0
        if self.file_format == "jsonl":
            self._jsonl[split] = path.open("wb")
        else:
            self._parquet[split] = pq.ParquetWriter(path, self.schema)
            self._buffer[split] = []

    def _flush(self, split: str) -> None:
        if self._buffer.get(split):
            # JSON lines through Arrow's C++ JSON reader, checked against the schema: about
            # three times faster than building the nested columns from Python objects.
            data = b"".join(self._buffer[split])
            table = pa_json.read_json(
                io.BytesIO(data),
                read_options=pa_json.ReadOptions(
                    block_size=max(len(data), 1 << 20), use_threads=False
                ),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=self.schema, unexpected_field_behavior="error"
                ),
            )
            self._parquet[split].write_table(table.select(self.schema.names).cast(self.schema))
            self._buffer[split] = []
            del table, data
            # Arrow's allocator keeps freed blocks for reuse; handing them back keeps the
            # resident set flat (two export processes must stay under 300 MB together).
            pa.default_memory_pool().release_unused()

    def _close_shard(self, split: str) -> None:
        if split in self._jsonl:
            self._jsonl.pop(split).close()
        if split in self._parquet:
            self._flush(split)
            self._parquet.pop(split).close()

    def close(self) -> dict[str, list[Path]]:
        """Finish every shard; the ``.partial`` files of each split, in order."""
        for split in list(self._shards):
            self._close_shard(split)
        return {split: list(shards) for split, shards in self._shards.items()}


def shards_finalise(parts: list[dict[str, list[Path]]], file_format: str) -> list[Path]:
    """Give the writers' shards their final names, split by split, in part order (the order of
    the votes): ``<split>-NNNNN-of-NNNNN.<ext>``. None when nothing was written."""
    by_split: dict[str, list[Path]] = {}
    for shards in parts:
        for split, paths in shards.items():
            by_split.setdefault(split, []).extend(paths)
    final = []
    for split, paths in by_split.items():
        for index, path in enumerate(paths):
            name = f"{split}-{index:05d}-of-{len(paths):05d}.{file_format}"
            final.append(path.rename(path.with_name(name)))
    return final
