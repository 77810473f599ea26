"""After a vote commits, enqueue its prompt's vector by task name (leaderboard/tasks.py).

Wiring only: arena must not import the leaderboard, and the vote service is arena's, so the
leaderboard listens for new votes instead. The task, not this receiver, does the work.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from arena.models import Vote

EMBED_PROMPT_TASK = "leaderboard.tasks.embed_prompt"


def _enqueue(vote_id: int) -> None:
    from arena.celery import app  # imported late so that models load first

    app.send_task(EMBED_PROMPT_TASK, args=[vote_id])


def vote_saved(sender: type[Vote], instance: Vote, created: bool, **kwargs: Any) -> None:
    # Simulated votes (seed_votes) get their vectors from the refresh that follows them.
    if not created or not settings.ARENA_TOPICS or kwargs.get("raw") or instance.simulated:
        return
    vote_id = instance.id

    def enqueue_embedding() -> None:
        # A named function, not a partial: Django's robust on_commit names the callback
        # (`__qualname__`) when it logs a failure, and a partial has none.
        _enqueue(vote_id)

    # robust: a broker outage must not fail a vote that is already stored; the next
    # `embed_prompts` run or snapshot covers it.
    transaction.on_commit(enqueue_embedding, robust=True)
