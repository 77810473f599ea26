from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from leaderboard.snapshots import leaderboard_snapshot_create


class Command(BaseCommand):
    help = "Compute every category's leaderboard from the valid votes and store a snapshot."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="compute even if no vote changed")

    def handle(self, *args: Any, **options: Any) -> None:
        snapshot = leaderboard_snapshot_create(force=options["force"])
        if snapshot is None:
            self.stdout.write("no vote changed since the latest snapshot; nothing to do")
            return
        self.stdout.write(
            f"snapshot {snapshot.id}: {snapshot.n_battles} valid votes, "
            f"{len(snapshot.results)} categories, {snapshot.duration_ms} ms"
        )
