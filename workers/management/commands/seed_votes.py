from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena.models import ArenaModel
from workers.demo_corpus import demo_conversations
from workers.simulated_votes import (
    SeedRefused,
    seed_check,
    simulated_votes_clear,
    simulated_votes_create,
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = (
        "Fill a demo with simulated battles and votes (marked simulated everywhere), drawn "
        "from a Bradley-Terry truth that follows the demo models' training steps. Refuses "
        "to run unless ARENA_DEMO=1, and on a database that holds real votes unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--votes", type=positive_int, default=500, help="how many (500)")
        parser.add_argument("--seed", type=int, default=0, help="the same seed, the same votes")
        parser.add_argument("--days", type=float, default=7.0, help="spread over the last N days")
        parser.add_argument(
            "--clear", action="store_true", help="delete earlier simulated votes first"
        )
        parser.add_argument(
            "--force", action="store_true", help="even if the database holds real votes"
        )
        parser.add_argument(
            "--i-know-this-is-not-production",
            dest="not_production",
            action="store_true",
            help="run without ARENA_DEMO=1",
        )
        parser.add_argument(
            "--no-refresh", action="store_true", help="do not compute a leaderboard snapshot"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Imported here: it imports torch, which the checks above do not need.
        from workers.tiny_models import DEMO_MODELS

        try:
            seed_check(
                demo=bool(settings.ARENA_DEMO),
                not_production=options["not_production"],
                force=options["force"],
            )
        except SeedRefused as refusal:
            raise CommandError(str(refusal)) from None
        steps = {spec.name: spec.train_steps for spec in DEMO_MODELS}
        models = list(ArenaModel.objects.filter(name__in=steps, enabled=True, in_registry=True))
        if len(models) < 2:
            raise CommandError(
                "fewer than two demo models are in the database: run "
                "`python manage.py build_demo_models` first (it loads models.toml)"
            )
        if options["clear"]:
            self.stdout.write(f"deleted {simulated_votes_clear()} earlier simulated votes")
        result = simulated_votes_create(
            models=models,
            train_steps=steps,
            pairs=demo_conversations(),
            votes=options["votes"],
            seed=options["seed"],
            days=options["days"],
        )
        self.stdout.write(f"created {result.votes} simulated battles and votes")
        for name in sorted(result.battles, key=lambda n: -steps[n]):
            self.stdout.write(
                f"  {name} ({steps[name]} training steps): {result.wins.get(name, 0)} wins "
                f"in {result.battles[name]} battles"
            )
        if not options["no_refresh"]:
            call_command("refresh_leaderboard", "--force", stdout=self.stdout)
