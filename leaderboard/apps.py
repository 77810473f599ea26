from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_save


class LeaderboardConfig(AppConfig):
    name = "leaderboard"
    verbose_name = "Leaderboard"

    def ready(self) -> None:
        from arena.models import Vote
        from leaderboard.signals import vote_saved

        post_save.connect(vote_saved, sender=Vote, dispatch_uid="leaderboard.vote_saved")
