"""Celery tasks of the leaderboard: thin wrappers around the flag, snapshot, sampling plan and
vector services."""

from __future__ import annotations

from django.conf import settings

from arena.celery import app
from arena.models import SamplingPolicy
from leaderboard.pipeline.embeddings import EmbeddingsError, prompt_vector_compute
from leaderboard.pipeline.flags import voter_flags_update
from leaderboard.pipeline.sampling_plan import sampling_plan_refresh
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create
from leaderboard.signals import EMBED_PROMPT_TASK


@app.task(ignore_result=True)
def refresh_leaderboard() -> int | None:
    """Flag anomalous voters (ARENA_ANOMALY_DETECTION), then store a new snapshot if the votes
    that count changed, and a new adaptive sampling plan if the pool or the votes changed (the
    adaptive policy only); returns the snapshot's id (None: nothing changed)."""
    if settings.ARENA_ANOMALY_DETECTION:
        # Before the fit: a voter flagged now is already left out of this snapshot.
        voter_flags_update()
    snapshot = leaderboard_snapshot_create()
    if settings.ARENA_SAMPLING_POLICY == SamplingPolicy.ADAPTIVE:
        sampling_plan_refresh()
    return snapshot.id if snapshot else None


@app.task(
    name=EMBED_PROMPT_TASK,
    ignore_result=True,
    autoretry_for=(EmbeddingsError,),
    retry_backoff=True,
    max_retries=5,
)
def embed_prompt(vote_id: int) -> bool:
    """Store the vector of one vote's prompt (leaderboard/pipeline/embeddings.py); False when there
    is
    nothing to compute it with yet (local method before the first snapshot)."""
    return prompt_vector_compute(vote_id=vote_id) is not None
