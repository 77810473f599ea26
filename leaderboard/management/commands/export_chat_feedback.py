from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from leaderboard.data.chat_export import chat_feedback_export


class Command(BaseCommand):
    help = "Write the direct-chat answer labels (up / down / flag) as KTO records, JSON Lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output", help="the .jsonl file to write")
        parser.add_argument(
            "--include-moderated", action="store_true", help="keep answers moderation flagged"
        )
        parser.add_argument("--judge-salt", help="salt of the visitor pseudonyms (default: random)")

    def handle(self, *args: Any, **options: Any) -> None:
        written = chat_feedback_export(
            output=options["output"],
            include_moderated=options["include_moderated"],
            judge_salt=options["judge_salt"],
        )
        self.stdout.write(f"{written} labelled answers written to {options['output']}")
