"""Record ids of an import (leaderboard/data/import_ids.py) against the plain definition they
replace: a Counter of `sha256:<32 hex>` strings, numbered `#2`, `#3` in file order."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from leaderboard.data.import_ids import RecordIds, SeenIds


def _reference(texts: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for text in texts:
        external_id = "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]
        seen[external_id] += 1
        out.append(external_id if seen[external_id] == 1 else f"{external_id}#{seen[external_id]}")
    return out


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    # Few distinct records, so that repeats fall within a batch, across batches and both.
    return [f'{{"judge": "j{int(k)}"}}' for k in rng.integers(0, n // 3, size=n)]


def test_batches_number_repeats_as_the_counter_did() -> None:
    rng = np.random.default_rng(7)
    texts = _texts(rng, 3000)
    numbered = RecordIds()
    got: list[str] = []
    for start in range(0, len(texts), 257):
        got += numbered.ids(texts[start : start + 257])
    assert got == _reference(texts)


def test_one_record_at_a_time_and_batches_mixed_agree_with_the_counter() -> None:
    rng = np.random.default_rng(11)
    texts = _texts(rng, 30_000)  # past the 10,000 pending hashes that `one` merges at
    numbered = RecordIds()
    got: list[str] = []
    start = 0
    while start < len(texts):
        if start % 2:
            got += numbered.ids(texts[start : start + 500])
            start += 500
        else:
            got += [numbered.one(text) for text in texts[start : start + 12_001]]
            start += 12_001
    assert got == _reference(texts)


def test_hashes_ending_in_zero_bytes_stay_apart() -> None:
    """numpy's S16 drops trailing NUL bytes: keys that differ only there must not collide."""
    numbered = RecordIds()
    digests = [b"\x01" * 15 + b"\x00", b"\x01" * 14 + b"\x00\x00", b"\x01" * 15 + b"\x02"]
    ids = numbered.number(digests)
    assert not any("#" in i for i in ids)
    assert numbered.number(digests[:1]) == [f"sha256:{digests[0].hex()}#2"]


def test_seen_ids_answer_what_was_added() -> None:
    seen = SeenIds()
    assert seen.present(["a", "b"]) == set()
    seen.add(["b", "c", "c"])
    seen.add(["a"])
    assert seen.present(["a", "b", "c", "d", "zz"]) == {"a", "b", "c"}
    assert list(seen.keys) == sorted(seen.keys)
