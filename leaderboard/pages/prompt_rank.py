"""Reads for topics: the explorer's overview and the ranking conditioned on one prompt.

Both read the latest snapshot: its topics, and its prompt space (the fitted encoder and the
battles' vectors), so a query encodes one prompt and fits one weighted Bradley-Terry, never
refits the encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.conf import settings

from arena.errors import InvalidInput, NotFound
from leaderboard.engine.conditioned import conditioned_leaderboard, similarity_weights
from leaderboard.models import LeaderboardSnapshot
from leaderboard.pages import selectors
from leaderboard.pipeline import embeddings

NOT_ENOUGH = "not enough similar battles"


def _clean(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("Give a prompt: /api/rank?prompt=...")
    limit = settings.ARENA_RANK_MAX_PROMPT_CHARS
    if len(prompt) > limit:
        raise InvalidInput(f"The prompt has {len(prompt)} characters; at most {limit} are ranked.")
    if "\x00" in prompt:
        raise InvalidInput("The prompt holds a NUL character.")
    return prompt


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def prompt_rank(*, prompt: object) -> dict[str, Any]:
    """The models ranked for prompts like ``prompt`` (docs/topics.md).

    Raises
    ------
    InvalidInput
        No prompt, or one longer than ``ARENA_RANK_MAX_PROMPT_CHARS``.
    NotFound
        No snapshot yet, or one without a prompt space (too few prompts, topics off).
    """
    text = _clean(prompt)
    snapshot = LeaderboardSnapshot.objects.only("id", "created_at").first()
    if snapshot is None:
        raise NotFound("No leaderboard yet: no snapshot was computed.")
    space = embeddings.prompt_space_load(snapshot)
    if space is None:
        raise NotFound("The latest snapshot has no prompt vectors (topics off, or too few votes).")
    try:
        query = space.encode([text])[0]
    except embeddings.EmbeddingsError as error:
        raise NotFound(f"The prompt could not be embedded: {error}") from error
    weights = similarity_weights(space.vectors, query, bandwidth=settings.ARENA_RANK_BANDWIDTH)
    minimum = float(settings.ARENA_RANK_MIN_EFFECTIVE)
    result = conditioned_leaderboard(
        space.names, space.model_a, space.model_b, space.outcome, weights, min_effective=minimum
    )
    topic = None
    if np.any(query) and len(space.centroids):
        t = int(np.argmax(space.centroids @ query))
        topic = {"name": f"topic:{t}", "similarity": _rounded(float(space.centroids[t] @ query), 3)}
    reply: dict[str, Any] = {
        "snapshot_id": snapshot.id,
        "effective_battles": _rounded(result.effective, 1),
        "weighted_battles": result.n_weighted,
        "min_effective_battles": minimum,
        "bandwidth": settings.ARENA_RANK_BANDWIDTH,
        "method": space.method,
        "version": space.version,
        "nearest_topic": topic,
    }
    if result.board is None:
        return {"status": NOT_ENOUGH, **reply, "rows": []}
    rows = [r for r in result.board.records() if r["battles"] > 0]
    for row in rows:
        for key in ("rating", "lower", "upper"):
            row[key] = _rounded(row[key])
    return {"status": "ok", **reply, "rows": rows}


def topics_overview() -> dict[str, Any]:
    """The latest snapshot's topics, with each model's rank per topic beside its overall rank."""
    snapshot = selectors.snapshot_latest()
    if snapshot is None:
        return {"snapshot": None, "topics": [], "models": []}
    payload = selectors.snapshot_payload(snapshot)
    topics = payload.topics.get("topics", [])
    overall = {r["model"]: r for r in payload.results.get("overall", {}).get("rows", [])}
    ranked = [t for t in topics if t["name"] in payload.results]
    per_topic = {
        t["name"]: {r["model"]: r for r in payload.results[t["name"]].get("rows", [])}
        for t in ranked
    }
    models = []
    for name, row in sorted(
        overall.items(), key=lambda kv: (kv[1]["rank"] is None, kv[1]["rank"] or 0, kv[0])
    ):
        cells = [(per_topic[t["name"]].get(name) or {}).get("rank") for t in ranked]
        models.append({"model": name, "overall": row["rank"], "topics": cells})
    return {
        "snapshot": snapshot,
        "info": payload.topics,
        "topics": topics,
        "ranked": ranked,
        "models": models,
    }
