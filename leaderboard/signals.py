"""After a vote commits, enqueue its prompt's vector by task name (leaderboard/tasks.py).

Wiring only: arena must not import the leaderboard, and the vote service is arena's, so the
leaderboard listens for new votes instead. The task, not this receiver, does the work.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction

from arena.models import Vote

EMBED_PROMPT_TASK = "leaderboard.tasks.embed_prompt"


def _enqueue(vote_id: int) -> None:
    from arena.celery import app  # imported late so that models load first

    app.send_task(EMBED_PROMPT_TASK, args=[vote_id])


def vote_saved(sender: type[Vote], instance: Vote, created: bool, **kwargs: Any) -> None:
    if not created or not settings.ARENA_TOPICS or kwargs.get("raw"):
        return
    # robust: a broker outage must not fail a vote that is already stored; the next
    # `embed_prompts` run or snapshot covers it.
    transaction.on_commit(partial(_enqueue, instance.id), robust=True)
