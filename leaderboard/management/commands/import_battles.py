"""``manage.py import_battles FILE``: a FastChat/LMSYS battle log into the arena's database.

    python manage.py import_battles FILE [--source LABEL] [--strict] [--refresh] [--quiet]

Accepted: ``clean_battle_*.json`` (with or without conversation text), the
``chatbot_arena_conversations`` layout as JSON Lines or Parquet, this arena's own ``arena`` and
``pairwise`` exports, and the 55k CSV layout. Re-importing a file changes nothing. A bad record is
skipped and counted (the first ones are named); ``--strict`` stops at the first with one line.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leaderboard.data.formats.arena import BattleLogError
from leaderboard.data.importer import battles_import


class Command(BaseCommand):
    help = "Import a FastChat/LMSYS battle log: battles and votes that feed the leaderboard."
    # No system checks: they load the URLconf, and with it every view. That took 0.7 s while
    # the leaderboard pages imported scikit-learn, and still takes 0.2 s (scipy through the
    # vote flags): 4% of an import of 200k battles into PostgreSQL. The web's start runs them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="battle log: .json, .jsonl, .parquet or .csv")
        parser.add_argument("--source", help="label of the import (default: the file name)")
        parser.add_argument("--strict", action="store_true", help="stop at the first bad record")
        parser.add_argument("--refresh", action="store_true", help="recompute the leaderboard")
        parser.add_argument("--quiet", "--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **opts: Any) -> None:
        from tqdm import tqdm

        # A progress bar on stderr, only for a person watching a terminal.
        quiet = opts["quiet"] or not sys.stderr.isatty()
        bar = tqdm(unit=" records", file=sys.stderr, disable=quiet, unit_scale=True)
        try:
            result = battles_import(
                path=opts["file"],
                source=opts["source"],
                strict=opts["strict"],
                progress=lambda done: bar.update(done - bar.n),
            )
        except BattleLogError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        for error in result.errors:
            self.stderr.write(f"skipped: {error}")
        if result.bad > len(result.errors):
            self.stderr.write(f"... and {result.bad - len(result.errors)} more bad records")
        models = ", ".join(result.models_created) or "none"
        self.stdout.write(
            f"{result.source}: {result.read} records read, {result.created} battles imported, "
            f"{result.already_present} already present, {result.bad} bad, "
            f"{result.without_text} without conversation text; new models (disabled): {models}"
        )
        if opts["refresh"]:
            from leaderboard.pipeline.snapshots import leaderboard_snapshot_create

            snapshot = leaderboard_snapshot_create()
            if snapshot is not None:
                self.stdout.write(f"leaderboard refreshed: {snapshot.n_battles} valid votes")
        else:
            self.stdout.write(
                "the leaderboard includes them at its next refresh "
                "(now: python manage.py refresh_leaderboard)"
            )
