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
    # Topic categories ("topic:<n>", same shape as `results`) and what each topic is:
    # {"method", "version", "k", "criterion", "topics": [{"name", "label", "terms", ...}]}.
    topic_results = models.JSONField(default=dict)
    topics = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self) -> str:
        return f"snapshot {self.id} ({self.n_battles} battles, {self.created_at:%Y-%m-%d %H:%M})"


class VoterFlag(models.Model):
    """A voter the anomaly detector flagged (leaderboard/engine/anomaly.py); while ``excluded``,
    none of
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


class PromptVector(models.Model):
    """The vector of a vote's first prompt (leaderboard/pipeline/embeddings.py): from the configured
    embeddings endpoint, or from the local encoder of the latest prompt space. ``version`` names
    the fit or the remote model: vectors of different versions are not comparable."""

    vote = models.OneToOneField(
        "arena.Vote", on_delete=models.CASCADE, primary_key=True, related_name="prompt_vector"
    )
    method = models.CharField(max_length=16)  # "local" or "remote"
    version = models.CharField(max_length=64, db_index=True)
    # float32, little-endian, unit length.
    vector = models.BinaryField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"prompt vector of vote {self.vote_id} ({self.method} {self.version})"


class PromptSpace(models.Model):
    """What a snapshot's topics and `/api/rank` need: the encoder's fitted state (local method)
    and, per battle of the fit, its prompt vector, models and outcome; arrays in .npz form."""

    snapshot = models.OneToOneField(
        LeaderboardSnapshot, on_delete=models.CASCADE, related_name="prompt_space"
    )
    method = models.CharField(max_length=16)
    version = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    encoder = models.BinaryField(blank=True)
    battles = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"prompt space of snapshot {self.snapshot_id} ({self.method} {self.version})"
