from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Build the tiny demo chat models (random weights, tokenizers trained here; nothing is "
        "downloaded) under ARENA_DATA_DIR/models, then load models.toml with sync_models."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # Imported here: torch and transformers are needed by this command only.
        from workers.tiny_models import build_demo_models
        from workers.tiny_vision import build_demo_vision_models

        started = time.monotonic()
        built = build_demo_models(settings.DATA_DIR) + build_demo_vision_models(settings.DATA_DIR)
        for model in built:
            self.stdout.write(f"{model.name}: {model.params:,} parameters in {model.path}")
        self.stdout.write(f"built {len(built)} demo models in {time.monotonic() - started:.1f} s")
        call_command("sync_models", stdout=self.stdout)
