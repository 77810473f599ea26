"""``manage.py recompute_facts``: the stored facts of existing votes, recomputed by today's
:mod:`arena.facts` (after the language detector or the markdown counts changed).

    python manage.py recompute_facts [--dry-run]

A live vote (``source = "arena"``) gets every fact that comes from its text again (language,
turns, prompt length, code, markdown counts); its token counts are the backends' and stay. An
imported vote keeps what its log said: only a language the log did not give (stored as ``""``
or ``"und"``) is guessed again. Votes without text are left as they are. Running it twice changes
nothing the second time. The leaderboard sees the new facts at its next forced refresh
(``refresh_leaderboard --force``): facts do not change which votes count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from arena import facts
from arena.models import Vote

BATCH = 500
_TEXT_FIELDS = ("language", "turns", "prompt_chars", "has_code", "style_a", "style_b")


@dataclass
class RecomputeResult:
    examined: int = 0
    changed: int = 0
    languages: dict[str, int] | None = None


def _new_facts(vote: Vote) -> dict[str, Any]:
    if vote.source == "arena":
        found = facts.battle_facts(vote.conversation_a, vote.conversation_b).as_fields()
        return {name: found[name] for name in _TEXT_FIELDS}
    if vote.language in ("", facts.UNDETERMINED):
        asked = facts.prompts(vote.conversation_a)
        return {"language": facts.language_guess("\n".join(asked))}
    return {}


def votes_facts_recompute(
    *, dry_run: bool = False, progress: Callable[[int], None] | None = None
) -> RecomputeResult:
    """Recompute the text-derived facts of every vote with text; see the module docstring."""
    result = RecomputeResult(languages={})
    votes = Vote.objects.order_by("id").only(
        "id", "source", "conversation_a", "conversation_b", *_TEXT_FIELDS
    )
    pending: list[Vote] = []

    def flush() -> None:
        if pending and not dry_run:
            with transaction.atomic():
                Vote.objects.bulk_update(pending, list(_TEXT_FIELDS))
        pending.clear()

    for vote in votes.iterator(chunk_size=BATCH):
        result.examined += 1
        if not (vote.conversation_a and vote.conversation_b):
            continue
        new = _new_facts(vote)
        if all(getattr(vote, name) == value for name, value in new.items()):
            continue
        if "language" in new and new["language"] != vote.language:
            assert result.languages is not None
            key = f"{vote.language or '(none)'} -> {new['language']}"
            result.languages[key] = result.languages.get(key, 0) + 1
        for name, value in new.items():
            setattr(vote, name, value)
        pending.append(vote)
        result.changed += 1
        if len(pending) >= BATCH:
            flush()
            if progress:
                progress(result.examined)
    flush()
    return result


class Command(BaseCommand):
    help = "Recompute the stored facts (language, code, markdown counts) of existing votes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        result = votes_facts_recompute(dry_run=options["dry_run"])
        verb = "would change" if options["dry_run"] else "changed"
        self.stdout.write(f"{result.examined} votes examined, {verb} {result.changed}")
        for change, n in sorted((result.languages or {}).items(), key=lambda kv: -kv[1]):
            self.stdout.write(f"  language {change}: {n}")
        if result.changed and not options["dry_run"]:
            self.stdout.write(
                "the leaderboard shows them after: python manage.py refresh_leaderboard --force"
            )
