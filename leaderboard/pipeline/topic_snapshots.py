"""Topics at snapshot time: vectors for the valid votes, topics, their categories, the space.

The local encoder is refitted here on every valid vote's first prompt (docs/topics.md says why
and what it costs); with the remote method the stored vectors of the current version are used and
votes without one are left out until a worker embeds them. Topic categories ("topic:<n>") are
the votes nearest each topic's centroid; a topic with fewer valid votes than a language needs
(``ARENA_LEADERBOARD_LANGUAGE_MIN_VOTES``) is described but gets no leaderboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import QuerySet

from arena.models import Vote
from leaderboard.engine.pairs import Battles
from leaderboard.engine.topics import LocalEncoder, cluster_topics, topic_terms
from leaderboard.models import LeaderboardSnapshot, PromptSpace, PromptVector
from leaderboard.pipeline import embeddings

EXAMPLES = 3
EXAMPLE_CHARS = 200
CRITERION = (
    "k-means on unit prompt vectors; k in 2..12 with the largest mean silhouette "
    "(cosine distance) on a sample of up to 2000 prompts"
)


@dataclass
class TopicSnapshot:
    results: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] | None = None


def _label(terms: list[str], number: int) -> str:
    return ", ".join(terms[:3]) if terms else f"topic {number}"


def topic_snapshot(
    votes: QuerySet[Vote],
    names: list[str],
    index: dict[int, int],
    *,
    dropped: frozenset[int],
    seed: int,
    compute: Callable[[Battles], dict[str, Any]],
) -> TopicSnapshot:
    """Topics of the valid ``votes`` (less the ``dropped`` ones) and one result per topic with
    enough votes, made by ``compute`` (the snapshot's own category computation). Prompts the
    encoder cannot fit on (no word at all, e.g. only punctuation) give no topics and a note,
    never a failed snapshot."""
    if not settings.ARENA_TOPICS:
        return TopicSnapshot()
    try:
        return _topic_snapshot(votes, names, index, dropped=dropped, seed=seed, compute=compute)
    except ValueError as error:
        return TopicSnapshot(info={"method": embeddings.method(),
                                   "note": f"no topics: {error}"})  # fmt: skip


def _topic_snapshot(
    votes: QuerySet[Vote],
    names: list[str],
    index: dict[int, int],
    *,
    dropped: frozenset[int],
    seed: int,
    compute: Callable[[Battles], dict[str, Any]],
) -> TopicSnapshot:
    rows = list(
        embeddings.with_prompts(votes)
        .order_by("id")
        .values_list("id", "model_a_id", "model_b_id", "outcome", "role0", "text0", "text1")
    )
    rows = [r for r in rows if r[0] not in dropped]
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    prompts = [embeddings.first_prompt(*r[4:]) for r in rows]
    method = embeddings.method()
    encoder: LocalEncoder | None = None
    if method == "local":
        if len(set(prompts)) < 3:
            return TopicSnapshot(info={"method": method, "note": "fewer than 3 distinct prompts"})
        encoder, vectors = LocalEncoder.fit_transform(prompts, seed=seed % 2**31)
        version = f"local:{encoder.version()}"
    else:
        version = embeddings.remote_version()
        stored = dict(
            PromptVector.objects.filter(vote_id__in=votes.values("id"), version=version)
            .values_list("vote_id", "vector")
        )  # fmt: skip
        have = np.array([int(v) in stored for v in ids], dtype=bool)
        rows = [r for r, h in zip(rows, have, strict=True) if h]
        ids, prompts = ids[have], [p for p, h in zip(prompts, have, strict=True) if h]
        if len(rows) < 3:
            return TopicSnapshot(info={"method": method, "version": version,
                                       "note": "fewer than 3 votes with a vector"})  # fmt: skip
        vectors = np.stack([np.frombuffer(bytes(stored[int(v)]), dtype="<f4") for v in ids])
        vectors = vectors.astype(np.float64)
    a = np.array([index[r[1]] for r in rows], dtype=np.int64)
    b = np.array([index[r[2]] for r in rows], dtype=np.int64)
    o = embeddings.outcome_codes([r[3] for r in rows])
    topics = cluster_topics(vectors, rng=np.random.default_rng(seed))
    # Terms always come from a word TF-IDF: with the remote method, one fitted here for naming.
    namer = encoder if encoder is not None else LocalEncoder.fit(prompts, seed=seed % 2**31)
    flagged = set(votes.exclude(battle__moderation=[]).values_list("id", flat=True))
    # Names, like examples, come only from prompts whose battle moderation did not flag.
    shown = np.array([int(v) not in flagged for v in ids], dtype=bool)
    shown_prompts = [p for p, keep in zip(prompts, shown, strict=True) if keep]
    terms = topic_terms(
        namer.word.transform(shown_prompts), topics.labels[shown], topics.k, namer.word_terms()
    )
    minimum = getattr(settings, "ARENA_LEADERBOARD_LANGUAGE_MIN_VOTES", 30)
    described, results = [], {}
    similarity = vectors @ topics.centroids.T
    for t in range(topics.k):
        members = np.flatnonzero(topics.labels == t)
        # Examples: the prompts nearest the centroid, never from a battle moderation flagged.
        order = members[np.argsort(-similarity[members, t], kind="stable")]
        examples: list[str] = []
        for m in order:
            text = prompts[m].strip()
            if int(ids[m]) in flagged or not text or text in examples:
                continue
            examples.append(text[:EXAMPLE_CHARS])
            if len(examples) == EXAMPLES:
                break
        name = f"topic:{t}"
        described.append({
            "name": name, "label": _label(terms[t], t), "terms": terms[t],
            "votes": int(members.size), "share": round(members.size / len(rows), 4),
            "examples": examples, "category": members.size >= minimum,
        })  # fmt: skip
        if members.size >= minimum:
            mask = topics.labels == t
            results[name] = compute(Battles(tuple(names), a[mask], b[mask], o[mask]))
    info = {
        "method": method, "version": version, "k": topics.k, "criterion": CRITERION,
        "silhouette": {str(k): v for k, v in topics.scores.items()}, "n_prompts": len(rows),
        "min_votes": minimum, "topics": described, "dimensions": int(vectors.shape[1]),
        "bandwidth": settings.ARENA_RANK_BANDWIDTH,
    }  # fmt: skip
    space = {
        "method": method, "version": version,
        "encoder": embeddings.pack(encoder.to_arrays()) if encoder is not None else b"",
        "battles": embeddings.pack({
            "names": np.asarray(names, dtype=str), "vectors": vectors.astype(np.float32),
            "model_a": a, "model_b": b, "outcome": o, "topic": topics.labels,
            "centroids": topics.centroids,
        }),
    }  # fmt: skip
    return TopicSnapshot(results, info, space)


def prompt_space_store(snapshot: LeaderboardSnapshot, topic: TopicSnapshot) -> None:
    if topic.space is None:
        return
    s = topic.space
    PromptSpace.objects.create(
        snapshot=snapshot, method=s["method"], version=s["version"],
        params={"k": topic.info.get("k")}, encoder=s["encoder"], battles=s["battles"],
    )  # fmt: skip
