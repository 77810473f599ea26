"""Celery tasks of the leaderboard: thin wrappers around the snapshot service."""

from __future__ import annotations

from leaderboard.snapshots import leaderboard_snapshot_create
from workers import app


@app.task(ignore_result=True)
def refresh_leaderboard() -> int | None:
    """Store a new snapshot if the votes changed; returns its id (None: nothing changed)."""
    snapshot = leaderboard_snapshot_create()
    return snapshot.id if snapshot else None
