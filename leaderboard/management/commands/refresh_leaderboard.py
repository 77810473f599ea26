from __future__ import annotations

import argparse
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from leaderboard.pipeline.flags import voter_flags_update
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create


class Command(BaseCommand):
    help = "Compute every category's leaderboard from the valid votes and store a snapshot."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="compute even if no vote changed")
        parser.add_argument(
            "--detect-anomalies",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="run the voter anomaly detector first (default: ARENA_ANOMALY_DETECTION)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        detect = options["detect_anomalies"]
        if detect if detect is not None else settings.ARENA_ANOMALY_DETECTION:
            update = voter_flags_update()
            self.stdout.write(
                f"anomaly detector: {update.voters_tested} voters tested, {update.flagged} "
                f"flagged ({update.created} new, {update.cleared} cleared), "
                f"{update.excluded} excluded"
            )
            for source, (tested, flagged) in update.per_source.items():
                self.stdout.write(f"  {source}: {tested} voters tested, {flagged} flagged")
        snapshot = leaderboard_snapshot_create(force=options["force"])
        if snapshot is None:
            self.stdout.write("no vote changed since the latest snapshot; nothing to do")
            return
        self.stdout.write(
            f"snapshot {snapshot.id}: {snapshot.n_battles} valid votes, "
            f"{len(snapshot.results)} categories, {snapshot.duration_ms} ms"
        )
