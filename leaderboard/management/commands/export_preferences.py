"""``manage.py export_preferences``: the votes as a preference dataset folder.

    python manage.py export_preferences --output DIR
        [--format arena|trl-dpo|trl-reward|kto|pairwise]
        [--file-format jsonl|parquet] [--since DATE] [--until DATE] [--model NAME ...]
        [--category NAME ...] [--language TAG ...] [--min-turns N] [--max-turns N]
        [--include-invalid] [--exclude-moderated] [--dedup] [--dedup-percentile P]
        [--test-fraction F] [--seed S] [--judge-salt SALT] [--margin X] [--license ID]
        [--shard-size N] [--overwrite] [--no-progress] [--workers N]

The folder loads with ``datasets.load_dataset(DIR)``; see docs/data-formats.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leaderboard.data.export import (
    FILE_FORMATS,
    FORMATS,
    ExportError,
    ExportFilters,
    preferences_export,
)
from leaderboard.management.commands.rank import non_negative_float, positive_int


def moment(text: str) -> dt.datetime:
    """argparse type: an ISO date or date-time, UTC unless it says otherwise."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date such as 2024-05-01, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Export the votes as a preference dataset (arena, TRL, KTO or pairwise records)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", required=True, help="folder to write (data/ + README.md)")
        parser.add_argument("--format", default="arena", choices=list(FORMATS))
        parser.add_argument("--file-format", default="jsonl", choices=FILE_FORMATS)
        parser.add_argument("--since", type=moment, help="votes cast at or after this time")
        parser.add_argument("--until", type=moment, help="votes cast before this time")
        parser.add_argument("--model", action="append", default=[], help="battles involving it")
        parser.add_argument("--category", action="append", default=[], help="leaderboard category")
        parser.add_argument("--language", action="append", default=[], help="language tag (en)")
        parser.add_argument("--min-turns", type=positive_int)
        parser.add_argument("--max-turns", type=positive_int)
        parser.add_argument("--include-invalid", action="store_true", help="also excluded votes")
        parser.add_argument("--exclude-moderated", action="store_true")
        parser.add_argument(
            "--include-simulated", action="store_true", help="also seed_votes' simulated votes"
        )
        parser.add_argument("--dedup", action="store_true", help="drop repeats, cap common prompts")
        parser.add_argument("--dedup-percentile", type=non_negative_float, default=99.9)
        parser.add_argument("--test-fraction", type=non_negative_float, default=0.0)
        parser.add_argument("--seed", type=int, default=0, help="keys the train/test split")
        parser.add_argument("--judge-salt", help="makes the judge column stable across exports")
        parser.add_argument("--margin", type=float, help="add a constant margin column (TRL)")
        parser.add_argument("--license", default="other", help="license id for the card")
        parser.add_argument("--shard-size", type=positive_int, default=250_000)
        parser.add_argument("--overwrite", action="store_true", help="replace an earlier export")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=min(4, os.cpu_count() or 1),
            help="processes converting the votes (default: the CPUs, at most 4)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        from tqdm import tqdm

        filters = ExportFilters(
            since=opts["since"],
            until=opts["until"],
            models=opts["model"],
            categories=opts["category"],
            languages=opts["language"],
            min_turns=opts["min_turns"],
            max_turns=opts["max_turns"],
            include_invalid=opts["include_invalid"],
            exclude_moderated=opts["exclude_moderated"],
            include_simulated=opts["include_simulated"],
        )
        bar = tqdm(unit=" votes", file=sys.stderr, disable=opts["no_progress"], smoothing=0.1)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            result = preferences_export(
                output=opts["output"],
                fmt=opts["format"],
                file_format=opts["file_format"],
                filters=filters,
                dedup=opts["dedup"],
                dedup_percentile=opts["dedup_percentile"],
                test_fraction=opts["test_fraction"],
                seed=opts["seed"],
                judge_salt=opts["judge_salt"],
                margin=opts["margin"],
                license=opts["license"],
                shard_size=opts["shard_size"],
                overwrite=opts["overwrite"],
                progress=progress,
                workers=opts["workers"],
            )
        except ExportError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        splits = ", ".join(f"{split} {n}" for split, n in result.splits.items())
        skipped = sum(result.skipped.values())
        self.stdout.write(
            f"{result.records} records ({splits}) from {result.rows} votes in "
            f"{result.seconds:.1f} s; {skipped} skipped; card: {result.output / 'README.md'}"
        )
