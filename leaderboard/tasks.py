"""Celery tasks of the leaderboard: thin wrappers around the flag and snapshot services."""

from __future__ import annotations

from django.conf import settings

from leaderboard.flags import voter_flags_update
from leaderboard.snapshots import leaderboard_snapshot_create
from workers import app


@app.task(ignore_result=True)
def refresh_leaderboard() -> int | None:
    """Flag anomalous voters (ARENA_ANOMALY_DETECTION), then store a new snapshot if the votes
    that count changed; returns its id (None: nothing changed)."""
    if settings.ARENA_ANOMALY_DETECTION:
        # Before the fit: a voter flagged now is already left out of this snapshot.
        voter_flags_update()
    snapshot = leaderboard_snapshot_create()
    return snapshot.id if snapshot else None
