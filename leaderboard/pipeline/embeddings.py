"""Prompt vectors: which method, the remote client, storage, and the per-snapshot prompt space.

Two methods (docs/topics.md). ``remote``: an OpenAI-compatible ``POST /v1/embeddings`` endpoint
the operator configures (``ARENA_EMBEDDINGS_URL``, ``ARENA_EMBEDDINGS_MODEL``, and the name of the
variable that holds its key, ``ARENA_EMBEDDINGS_API_KEY_ENV``); its vectors do not depend on the
corpus, so a worker stores each vote's vector once, after the vote. ``local`` (no endpoint): the
TF-IDF + SVD of :mod:`leaderboard.engine.topics`, fitted on the valid votes' prompts at each
snapshot; its vectors belong to that fit, so the snapshot stores the fit and the vectors it made
(:class:`leaderboard.models.PromptSpace`), and a vote's stored vector names the fit it came from.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from django.conf import settings
from django.db.models import QuerySet
from django.db.models.fields.json import KT

from arena.models import Vote
from leaderboard.engine.pairs import OUTCOME_CODES
from leaderboard.engine.topics import LocalEncoder
from leaderboard.models import LeaderboardSnapshot, PromptSpace, PromptVector

REMOTE_BATCH = 128


class EmbeddingsError(RuntimeError):
    """The embeddings endpoint failed or answered something that is not the wire format."""


def method() -> str:
    return "remote" if settings.ARENA_EMBEDDINGS_URL else "local"


def remote_version() -> str:
    return f"remote:{settings.ARENA_EMBEDDINGS_MODEL or 'default'}"


def _endpoint() -> str:
    base = settings.ARENA_EMBEDDINGS_URL.rstrip("/")
    if base.endswith("/embeddings"):
        return base
    return f"{base}/embeddings" if base.endswith("/v1") else f"{base}/v1/embeddings"


def remote_embed(texts: Sequence[str]) -> np.ndarray:
    """Unit vectors from the configured endpoint, in the order of ``texts``.

    Raises
    ------
    EmbeddingsError
        A transport error, a non-2xx status, or a body that is not an embeddings list.
    """
    headers = {"Content-Type": "application/json"}
    if settings.ARENA_EMBEDDINGS_API_KEY_ENV:
        headers["Authorization"] = f"Bearer {os.environ[settings.ARENA_EMBEDDINGS_API_KEY_ENV]}"
    body: dict[str, Any] = {"input": list(texts), "encoding_format": "float"}
    if settings.ARENA_EMBEDDINGS_MODEL:
        body["model"] = settings.ARENA_EMBEDDINGS_MODEL
    try:
        reply = httpx.post(
            _endpoint(), json=body, headers=headers,
            timeout=settings.ARENA_EMBEDDINGS_TIMEOUT_MS / 1000,
        )  # fmt: skip
        reply.raise_for_status()
        data = sorted(reply.json()["data"], key=lambda item: int(item["index"]))
        vectors = np.array([item["embedding"] for item in data], dtype=np.float64)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        raise EmbeddingsError(f"embeddings endpoint {_endpoint()}: {error}") from error
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise EmbeddingsError(f"embeddings endpoint returned {vectors.shape[0]} vectors "
                              f"for {len(texts)} inputs")  # fmt: skip
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norm, out=np.zeros_like(vectors), where=norm > 0)


def with_prompts(votes: QuerySet[Vote]) -> QuerySet[Vote]:
    """``votes`` annotated with ``first_prompt``: the first user message of side A's conversation
    (the second message where the first is a system prompt), read by the database."""
    return votes.annotate(
        role0=KT("conversation_a__0__role"),
        text0=KT("conversation_a__0__content"),
        text1=KT("conversation_a__1__content"),
    )


def first_prompt(role0: str | None, text0: str | None, text1: str | None) -> str:
    return (text1 if role0 == "system" else text0) or ""


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def unpack(blob: bytes | memoryview) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(bytes(blob)), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def prompt_vectors_store(
    vote_ids: Sequence[int], vectors: np.ndarray, *, method: str, version: str
) -> None:
    rows = [
        PromptVector(vote_id=v, method=method, version=version, vector=vector_bytes(x))
        for v, x in zip(vote_ids, vectors, strict=True)
    ]
    PromptVector.objects.bulk_create(
        rows, batch_size=1000, update_conflicts=True, unique_fields=["vote"],
        update_fields=["method", "version", "vector", "updated_at"],
    )  # fmt: skip


@dataclass(frozen=True)
class Space:
    """A loaded prompt space: the encoder (None for the remote method) and the battles."""

    snapshot_id: int
    method: str
    version: str
    params: dict[str, Any]
    encoder: LocalEncoder | None
    names: tuple[str, ...]
    vectors: np.ndarray
    model_a: np.ndarray
    model_b: np.ndarray
    outcome: np.ndarray
    topic: np.ndarray
    centroids: np.ndarray

    def encode(self, prompts: Sequence[str]) -> np.ndarray:
        if self.encoder is None:
            return remote_embed(prompts)
        return self.encoder.transform(prompts)


_spaces: dict[int, Space] = {}
_spaces_lock = threading.Lock()


def prompt_space_load(snapshot: LeaderboardSnapshot) -> Space | None:
    """The snapshot's prompt space, parsed once per process (snapshots never change)."""
    with _spaces_lock:
        if snapshot.id in _spaces:
            return _spaces[snapshot.id]
    row = PromptSpace.objects.filter(snapshot=snapshot).first()
    if row is None:
        return None
    b = unpack(row.battles)
    encoder = LocalEncoder.from_arrays(unpack(row.encoder)) if row.method == "local" else None
    space = Space(
        snapshot.id, row.method, row.version, row.params, encoder,
        tuple(str(n) for n in b["names"]), b["vectors"].astype(np.float64), b["model_a"],
        b["model_b"], b["outcome"], b["topic"], b["centroids"],
    )  # fmt: skip
    with _spaces_lock:
        while len(_spaces) >= 2:
            _spaces.pop(next(iter(_spaces)))
        _spaces[snapshot.id] = space
    return space


def prompt_vector_compute(*, vote_id: int) -> PromptVector | None:
    """Store the vector of one vote's prompt: from the endpoint, or from the latest snapshot's
    local encoder; None when the local method has no fit yet (the next snapshot makes one)."""
    row = with_prompts(Vote.objects.filter(id=vote_id)).values_list("role0", "text0", "text1")
    found = row.first()
    if found is None:
        return None
    prompt = first_prompt(*found)
    if method() == "remote":
        vector, version = remote_embed([prompt])[0], remote_version()
    else:
        latest = LeaderboardSnapshot.objects.filter(prompt_space__method="local").first()
        space = prompt_space_load(latest) if latest is not None else None
        if space is None or space.encoder is None:
            return None
        vector, version = space.encoder.transform([prompt])[0], space.version
    prompt_vectors_store([vote_id], vector[None, :], method=method(), version=version)
    return PromptVector.objects.get(vote_id=vote_id)


def prompt_vectors_compute(*, votes: QuerySet[Vote], every: bool = False) -> tuple[int, str]:
    """Vectors for ``votes`` (only those without a vector of the current version unless
    ``every``); with the local method, a fresh fit on these votes' prompts. Returns how many
    were stored and the version."""
    rows = list(with_prompts(votes).order_by("id").values_list("id", "role0", "text0", "text1"))
    ids = [r[0] for r in rows]
    prompts = [first_prompt(*r[1:]) for r in rows]
    if method() == "local":
        if len(prompts) < 2:
            return 0, ""
        encoder, vectors = LocalEncoder.fit_transform(prompts)
        version = f"local:{encoder.version()}"
        prompt_vectors_store(ids, vectors, method="local", version=version)
        return len(ids), version
    version = remote_version()
    if not every:
        have = set(
            PromptVector.objects.filter(vote_id__in=ids, version=version).values_list(
                "vote_id", flat=True
            )
        )
        keep = [k for k, v in enumerate(ids) if v not in have]
        ids, prompts = [ids[k] for k in keep], [prompts[k] for k in keep]
    for start in range(0, len(ids), REMOTE_BATCH):
        chunk = slice(start, start + REMOTE_BATCH)
        vectors = remote_embed(prompts[chunk])
        prompt_vectors_store(ids[chunk], vectors, method="remote", version=version)
    return len(ids), version


def outcome_codes(outcomes: Sequence[str]) -> np.ndarray:
    return np.array([OUTCOME_CODES[o] for o in outcomes], dtype=np.int64)
