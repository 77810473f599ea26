"""The ids of imported records that have no ``question_id``: a hash of the record, numbered.

Identical records (the same judge, models and time) get the same hash; they are numbered in file
order (``sha256:<32 hex>``, then ``...#2``, ``...#3``), so none is lost and a re-import of the
same file maps each to the same id. Numbering needs every hash seen so far: they are kept as
16-byte keys in one sorted numpy array (16 bytes a record: 32 MB for 2M records, where a
``Counter`` of the id strings took about 200 bytes a record), plus a dict for the few that repeat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

PREFIX = "sha256:"


class RecordIds:
    """Numbers record hashes across the batches of one import, in file order."""

    def __init__(self) -> None:
        self.seen = np.empty(0, dtype="S16")  # sorted, each hash once
        self.counts: dict[bytes, int] = {}  # only the hashes met more than once
        self.pending: set[bytes] = set()  # met once by :meth:`one`, not merged yet

    def one(self, text: str) -> str:
        """The id of the next record (the per-record path), given its canonical JSON text."""
        digest = hashlib.sha256(text.encode()).digest()[:16]
        external_id = PREFIX + digest.hex()
        if digest in self.counts:
            count = self.counts[digest] + 1
        elif digest in self.pending or self._seen(digest):
            count = 2
        else:
            self.pending.add(digest)
            if len(self.pending) >= 10_000:
                self._merge()
            return external_id
        self.counts[digest] = count
        return f"{external_id}#{count}"

    def _seen(self, digest: bytes) -> bool:
        return bool(_member(self.seen, np.array([digest], dtype="S16"))[0])

    def _merge(self) -> None:
        if self.pending:
            self.seen = _merged(self.seen, np.sort(np.array(list(self.pending), dtype="S16")))
            self.pending = set()

    def ids(self, texts: Iterable[str]) -> list[str]:
        """The ids of the next records, given each one's canonical JSON text."""
        sha256 = hashlib.sha256
        digests = [sha256(text.encode()).digest()[:16] for text in texts]
        return self.number(digests)

    def number(self, digests: list[bytes]) -> list[str]:
        """The ids of the next records, given the first 16 bytes of each one's SHA-256."""
        if not digests:
            return []
        self._merge()
        keys = np.array(digests, dtype="S16")
        ids = [PREFIX + d.hex() for d in digests]
        # Which hashes were met before (in an earlier batch, or earlier in this one).
        before = _member(self.seen, keys)
        unique, first, counts = np.unique(keys, return_index=True, return_counts=True)
        repeated = before.copy()
        if (counts > 1).any():
            again = np.ones(len(keys), dtype=bool)
            again[first] = False  # every occurrence but the first in this batch
            repeated |= again
            repeated[first[counts > 1]] = True  # the first too: it starts a count
        for i in np.flatnonzero(repeated).tolist():
            digest = digests[i]
            count = self.counts.get(digest, 1 if before[i] else 0) + 1
            self.counts[digest] = count
            if count > 1:
                ids[i] = f"{ids[i]}#{count}"
        # The batch's new hashes join the sorted array (a merge, not a sort).
        self.seen = _merged(self.seen, unique)
        return ids


class SeenIds:
    """The external ids stored so far by an import into a source that had no votes when it
    began: then "already imported?" needs no query (at 2M votes each batch's query cost the
    server 5 us a battle), only this set. Kept as 16-byte BLAKE2b keys in a sorted numpy array
    (a collision of two ids is as unlikely as one of the 128-bit record hashes themselves)."""

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype="S16")

    @staticmethod
    def _keys(ids: list[str]) -> np.ndarray:
        blake2b = hashlib.blake2b
        return np.array([blake2b(i.encode(), digest_size=16).digest() for i in ids], dtype="S16")

    def present(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` added before."""
        if not len(self.keys) or not ids:
            return set()
        found = _member(self.keys, self._keys(ids))
        return {ids[i] for i in np.flatnonzero(found).tolist()}

    def add(self, ids: list[str]) -> None:
        self.keys = _merged(self.keys, np.unique(self._keys(ids)))


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in ``sorted_keys`` (sorted), as a boolean mask."""
    where = np.searchsorted(sorted_keys, keys)
    found = np.zeros(len(keys), dtype=bool)
    inside = where < len(sorted_keys)
    found[inside] = sorted_keys[where[inside]] == keys[inside]
    return found


def _merged(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``sorted_keys`` with those of ``keys`` (sorted, each once) that it lacks, still sorted:
    a merge by insertion, not a sort."""
    new = keys[~_member(sorted_keys, keys)]
    return np.insert(sorted_keys, np.searchsorted(sorted_keys, new), new)
