from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena.registry import RegistryError, registry_load, registry_sync


class Command(BaseCommand):
    help = "Load the model registry (models.toml) into the database: create, update, disable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--file", type=Path, default=None, help="models file (default: ARENA_MODELS_FILE)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"] or settings.ARENA_MODELS_FILE
        try:
            result = registry_sync(registry_load(path))
        except RegistryError as exc:
            raise CommandError(str(exc)) from None
        for label, names in (
            ("created", result.created),
            ("updated", result.updated),
            ("disabled (gone from the file)", result.disabled),
        ):
            if names:
                self.stdout.write(f"{label}: {', '.join(names)}")
        if not (result.created or result.updated or result.disabled):
            self.stdout.write("models are up to date")
