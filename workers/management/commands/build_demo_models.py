from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Build the tiny demo chat models under ARENA_DATA_DIR/models (tokenizers and a few "
        "seconds of training on the corpus in workers/demo_corpus; nothing is downloaded; a "
        "model already built with the same recipe is kept) and two tiny vision-language "
        "models (random weights), then load models.toml with "
        "sync_models."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # Imported here: torch and transformers are needed by this command only.
        from transformers.utils import logging as transformers_logging

        from workers.tiny_models import build_demo_models

        # A new user's terminal shows this command's own lines, not transformers' shard bars
        # and backend notices.
        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
        from workers.tiny_vision import build_demo_vision_models

        started = time.monotonic()
        built = build_demo_models(settings.DATA_DIR) + build_demo_vision_models(settings.DATA_DIR)
        for model in built:
            how = (
                "cached (same recipe)"
                if model.cached
                else f"trained in {model.train_seconds:.1f} s"
                if model.train_seconds is not None
                else "built"
            )
            quality = (
                f", held-out {model.held_out_bpc:.2f} bits/char"
                if model.held_out_bpc is not None
                else ""
            )
            self.stdout.write(
                f"{model.name}: {model.params:,} parameters, {how}{quality}, in {model.path}"
            )
        self.stdout.write(f"built {len(built)} demo models in {time.monotonic() - started:.1f} s")
        call_command("sync_models", stdout=self.stdout)
