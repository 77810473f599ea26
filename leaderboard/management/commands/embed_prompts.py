from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena.models import Vote
from leaderboard.pipeline.embeddings import EmbeddingsError, prompt_vectors_compute


class Command(BaseCommand):
    help = (
        "Compute the prompt vector of every valid vote (docs/topics.md): with an embeddings "
        "endpoint, those without a vector of the current model (--all: every one); with the "
        "local method, a fresh TF-IDF + SVD fit on all valid prompts, stored for each."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="recompute vectors that exist")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            n, version = prompt_vectors_compute(
                votes=Vote.objects.filter(is_valid=True), every=options["all"]
            )
        except EmbeddingsError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"{n} prompt vectors stored ({version or 'nothing to fit on'})")
