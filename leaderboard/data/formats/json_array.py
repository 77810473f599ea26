"""A JSON array of records read as columns, streamed: the array is rewritten on the fly into JSON
Lines (one element a line) for pyarrow's multi-threaded JSON reader, so that memory is bounded
by the columns, not by a Python object per record (decoding 1M records whole took 858 MB).

The rewrite finds the array's own commas with a byte scanner over blocks of the file (numpy:
quotes that are not escaped, then brackets and commas outside strings, with the nesting depth
carried from block to block): each comma between two top-level elements becomes a newline, the
outer brackets and every other raw newline become spaces (a raw newline cannot be inside a JSON
string). The offsets of the elements are kept (8 bytes a record), so that one record can be
decoded alone (by :mod:`json`, as the per-record reader decodes it) to name a bad record, or to
hash it. A file the scanner cannot take apart (not an array of elements, unbalanced, text after
the array) gives None: the per-record reader then raises its one-line error.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

BLOCK = 1 << 24  # bytes of the file scanned at a time

_QUOTE, _BACKSLASH, _COMMA = 34, 92, 44
_OPEN = (91, 123)  # [ {
_CLOSE = (93, 125)  # ] }
_DELTA = np.zeros(256, dtype=np.int64)
_DELTA[list(_OPEN)] = 1
_DELTA[list(_CLOSE)] = -1


class NotAnArray(Exception):
    """The file is not a JSON array the scanner can take apart."""


class JsonArray:
    """The columns of a JSON array and where each element lies in the file (found when first
    asked for: only to decode a record alone)."""

    def __init__(self, path: Path, table: pa.Table, bounds: Bounds | None = None) -> None:
        self.path, self.table, self._bounds = path, table, bounds

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def bounds(self) -> Bounds:
        if self._bounds is None:
            scanner = _Scanner()
            with self.path.open("rb") as fh:
                while data := fh.read(BLOCK):
                    scanner.rewrite(data)
            scanner.finish()
            self._bounds = scanner.bounds(self.path)
        return self._bounds

    def records(self, start: int, stop: int) -> list[Any]:
        """Elements ``start`` to ``stop`` decoded as the per-record reader decodes them."""
        if start >= stop:
            return []
        starts, ends = self.bounds()
        first, last = int(starts[start]), int(ends[stop - 1])
        with self.path.open("rb") as fh:
            fh.seek(first)
            data = fh.read(last - first)
        return [
            json.loads(data[int(a) - first : int(b) - first])
            for a, b in zip(starts[start:stop], ends[start:stop], strict=True)
        ]

    def record(self, i: int) -> Any:
        return self.records(i, i + 1)[0]


Bounds = tuple[np.ndarray, np.ndarray]  # element i: bytes starts[i] .. ends[i] of the file
# What writers put between two records: orjson and compact json.dumps, json.dumps' default,
# one record a line. Any other layout (indented, ...) takes the byte scanner.
SEPARATORS = (b"},{", b"}, {", b"},\n{", b"}, \n{", b"},\r\n{")


def read_json_array(path: Path) -> JsonArray | None:
    """The columns of a JSON array of objects (pyarrow's JSON reader, its type inference as for
    JSON Lines), or None when it is not one pyarrow can read (then the per-record reader names
    the bad record or the syntax error)."""
    for way in (_separated, _scanned):
        try:
            found = way(path)
        except (pa.ArrowException, NotAnArray, OSError, ValueError):
            found = None
        if found is not None:
            return found
    return None


def _parse(blocks: Iterator[bytes]) -> pa.Table | None:
    """The JSON Lines ``blocks`` (whole lines each) parsed by pyarrow, one block while the next
    is made (at most two blocks held); None when there is none."""
    import pyarrow.json as pj

    options = pj.ReadOptions(block_size=1 << 22)
    tables = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque[Future[pa.Table]] = deque()
        for block in blocks:
            if block.strip():
                pending.append(pool.submit(pj.read_json, pa.BufferReader(block),
                                           read_options=options))  # fmt: skip
            while len(pending) > 1:
                tables.append(pending.popleft().result())
        tables += [future.result() for future in pending]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive").combine_chunks()


def _separated(path: Path) -> JsonArray | None:
    """The fast way: records written one after another with the same separator, which becomes a
    newline (``bytes.replace``). Sound without a scan: a separator replaced inside a record
    (in a string, or between nested objects) leaves a line that is not one whole object, which
    pyarrow refuses; and the count of rows must be the count of separators plus one."""
    with path.open("rb") as fh:
        head = fh.read(BLOCK)
    found = [(head.find(sep), sep) for sep in SEPARATORS if head.find(sep) >= 0]
    start = head.lstrip()
    if not found or not start.startswith(b"["):
        return None
    sep = min(found)[1]
    count = 0

    def blocks() -> Iterator[bytes]:
        nonlocal count
        carry = b""
        with path.open("rb") as fh:
            first = True
            while data := fh.read(BLOCK):
                if first:
                    data = data.lstrip()[1:]  # the '['
                    first = False
                data = carry + data
                # A separator may straddle two blocks: the block goes up to the last one.
                cut = data.rfind(sep)
                if cut < 0:
                    carry = data
                    continue
                cut += len(sep) - 1  # the next record's '{' starts what goes on
                body, carry = data[: cut + 1], data[cut:]
                count += body.count(sep)
                yield body.replace(sep, b"}\n{")[:-1]
        tail = carry.rstrip()
        if not tail.endswith(b"]"):
            raise NotAnArray
        yield tail[:-1] + b"\n"

    table = _parse(blocks())
    if table is None or table.num_rows != count + 1:
        return None
    return JsonArray(path, table)


def _scanned(path: Path) -> JsonArray | None:
    """Any layout: the byte scanner finds the top-level commas."""
    scanner = _Scanner()

    def blocks() -> Iterator[bytes]:
        carry = b""
        with path.open("rb") as fh:
            while data := fh.read(BLOCK):
                lines = carry + scanner.rewrite(data)
                cut = lines.rfind(b"\n") + 1  # whole elements only; the rest goes on
                carry = lines[cut:]
                yield lines[:cut]
        scanner.finish()
        if carry.strip():
            raise NotAnArray

    table = _parse(blocks())
    starts, ends = scanner.bounds(path)
    if table is None:
        return None if len(starts) else JsonArray(path, pa.table({}), (starts, ends))
    if len(starts) != table.num_rows:
        return None  # an empty element, which pyarrow skipped and JSON refuses
    return JsonArray(path, table, (starts, ends))


class _Scanner:
    """Rewrites the array block by block: top-level commas to newlines, the rest to spaces."""

    def __init__(self) -> None:
        self.offset = 0  # of the next block in the file
        self.in_string = False
        self.escaped = False  # the last block ended inside a string on an odd run of backslashes
        self.depth = 0
        self.first = -1  # the file offset of the outer '['
        self.closed_at = -1  # the file offset of the outer ']'
        self.separators: list[np.ndarray] = []  # file offsets of the top-level commas

    def finish(self) -> None:
        if self.first < 0 or self.closed_at < 0 or self.depth != 0 or self.in_string:
            raise NotAnArray  # not an array, or cut short

    def bounds(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        commas = np.concatenate(self.separators) if self.separators else np.empty(0, np.int64)
        if len(commas) == 0:
            with path.open("rb") as fh:
                fh.seek(self.first + 1)
                if not fh.read(self.closed_at - self.first - 1).strip():
                    return np.empty(0, np.int64), np.empty(0, np.int64)  # []
        starts = np.concatenate([[self.first + 1], commas + 1]).astype(np.int64)
        ends = np.concatenate([commas, [self.closed_at]]).astype(np.int64)
        return starts, ends

    def rewrite(self, data: bytes) -> bytes:
        buf = np.frombuffer(data, dtype=np.uint8)
        base = self.offset
        self.offset += len(data)
        if self.closed_at >= 0:
            if data.strip():
                raise NotAnArray  # text after the array
            return b""
        quote = buf == _QUOTE
        if self.escaped or _BACKSLASH in buf:
            quote[np.flatnonzero(quote)[self._escaped(buf, np.flatnonzero(quote))]] = False
        # The parity of the quotes up to each byte (a byte's running sum keeps its low bit).
        parity = np.cumsum(quote, dtype=np.uint8)
        folded = buf | 32  # '[' -> '{', ']' -> '}'
        marks = np.flatnonzero((folded == 123) | (folded == 125) | (buf == _COMMA))
        marks = marks[(parity[marks] & 1) == int(self.in_string)]  # outside strings
        if len(buf):
            self.in_string = bool((int(parity[-1]) + int(self.in_string)) % 2)
        kinds = buf[marks]
        delta = _DELTA[kinds]
        depth_after = self.depth + np.cumsum(delta)
        depth_before = depth_after - delta
        if len(marks):
            self.depth = int(depth_after[-1])
        if (depth_after < 0).any():
            raise NotAnArray
        out = buf.copy()
        out[np.flatnonzero((buf == 10) | (buf == 13))] = 32
        for k in np.flatnonzero(depth_before == 0).tolist():
            position = int(marks[k])
            if kinds[k] != 91 or self.first >= 0 or data[:position].strip():
                raise NotAnArray  # not an array, or a second top-level value
            self.first = base + position
            out[position] = 32
        if self.first < 0 and data.strip():
            raise NotAnArray
        closing = np.flatnonzero((depth_before == 1) & (kinds == 93))
        if len(closing):
            position = int(marks[closing[0]])
            self.closed_at = base + position
            out[position] = 10
            if data[position + 1 :].strip():
                raise NotAnArray
        commas = marks[(depth_before == 1) & (kinds == _COMMA)]
        out[commas] = 10
        self.separators.append(commas.astype(np.int64) + base)
        return out.tobytes()

    def _escaped(self, buf: np.ndarray, quotes: np.ndarray) -> np.ndarray:
        """Which quotes follow an odd run of backslashes (carried over from the last block)."""
        escaped = np.zeros(len(quotes), dtype=bool)
        slashes = np.flatnonzero(buf == _BACKSLASH)
        carried = self.escaped
        if len(slashes):
            run_start = np.ones(len(slashes), dtype=bool)
            run_start[1:] = slashes[1:] != slashes[:-1] + 1
            starts = np.maximum.accumulate(np.where(run_start, slashes, 0))
            after = quotes > 0
            k = np.searchsorted(slashes, quotes - 1)
            hit = after & (k < len(slashes))
            hit[hit] = slashes[k[hit]] == quotes[hit] - 1
            runs = quotes[hit] - starts[k[hit]]
            # A run that starts the block continues the last block's (one more when it was odd).
            runs = runs + (carried & (starts[k[hit]] == 0))
            escaped[hit] = runs % 2 == 1
            tail = len(buf) - slashes[-1] == 1
            self.escaped = bool(tail) and bool(
                (len(buf) - starts[-1] + (carried and starts[-1] == 0)) % 2
            )
        else:
            self.escaped = False
        if carried and len(quotes) and quotes[0] == 0:
            escaped[0] = True
        return escaped
