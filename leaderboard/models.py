"""Stored leaderboards: pages read the latest snapshot, never compute ratings in a request."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


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


class VoterFlag(models.Model):
    """A voter the anomaly detector flagged (leaderboard/anomaly.py); while ``excluded``, none of
    their votes count for the leaderboard (they stay in the database, valid as they were).

    The detector creates and updates flags at each refresh; once staff reviewed a flag (the
    admin's "re-include" or "exclude"), the detector keeps refreshing its statistics but never
    overrides ``excluded`` again.
    """

    # Vote.visitor_id: the keyed pseudonym of the voter's session, never a raw identifier.
    voter = models.CharField(max_length=64, unique=True)
    # Which tests flagged the voter: "disagreement", "side", "burst".
    reasons = models.JSONField(default=list)
    # What the tests saw: votes, decisive votes, wealth of each e-process, burst size, the vote
    # after which each test flagged, and the level alpha.
    statistics = models.JSONField(default=dict)
    n_votes = models.PositiveIntegerField(default=0)
    excluded = models.BooleanField(default=True, db_index=True)
    flagged_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-flagged_at", "-id"]

    def __str__(self) -> str:
        state = "excluded" if self.excluded else "counted"
        return f"voter {self.voter[:12]} ({', '.join(self.reasons) or 'no reason'}; {state})"
