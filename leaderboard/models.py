"""Stored leaderboards: pages read the latest snapshot, never compute ratings in a request."""

from __future__ import annotations

from django.db import models


class LeaderboardSnapshot(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    method = models.CharField(max_length=16)
    # Everything the computation depended on: interval method, rounds, l2, confidence, seed.
    params = models.JSONField()
    n_battles = models.PositiveIntegerField()
    # A fingerprint of the valid votes, the parameters and the code: equal hash, equal results.
    battle_hash = models.CharField(max_length=64, db_index=True)
    code_version = models.CharField(max_length=64)
    duration_ms = models.PositiveIntegerField(default=0)
    # {category: {"n_battles", "rows": [...], "style_rows": [...], "style": [...], ...}}
    results = models.JSONField()
    # Per-language categories ("lang:en", ...), found in the votes at snapshot time; same shape
    # as `results`. Kept apart because the configured categories are `results`' keys.
    language_results = models.JSONField(default=dict)
    # Transparency and model cards: {"votes": {"valid", "excluded": {reason: n}}, "models":
    # {name: {"battles", "share", "first_battle", "last_battle"}}, "head_to_head": {...}}.
    details = models.JSONField(default=dict)
    # Compact rows for the rating-history plot: {"overall": [[model, rating, lower, upper]]}, so
    # a page reads many past snapshots without their large `results`.
    history = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self) -> str:
        return f"snapshot {self.id} ({self.n_battles} battles, {self.created_at:%Y-%m-%d %H:%M})"
