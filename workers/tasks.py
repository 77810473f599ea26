"""Celery tasks: thin. Each takes ids, calls one job, and owns its retries and time limits."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init
from django.conf import settings

from arena.models import ArenaModel
from arena.services import model_health_restore, responses_reap_stuck
from workers import app
from workers.generation import generation_run
from workers.health import model_probe
from workers.warmup import local_models_warm_in_background

_TIMEOUT = settings.ARENA_GENERATION_TIMEOUT_SECONDS


@app.task(acks_late=True, soft_time_limit=_TIMEOUT, time_limit=_TIMEOUT + 30)
def generate(response_id: int) -> None:
    """Generate one side's answer. A redelivered task for a finished Response does nothing."""
    generation_run(response_id=response_id)


@app.task
def probe_unhealthy_models() -> list[str]:
    """Probe the models taken out of the pool; those that answer come back."""
    back = []
    for model in ArenaModel.objects.filter(enabled=True, healthy=False):
        if model_probe(model) is None:
            model_health_restore(model_id=model.id)
            back.append(model.name)
    return back


@app.task
def reap_stuck() -> int:
    """Fail the generations that outlived the timeout (a worker died, a server hung)."""
    return len(responses_reap_stuck())


@worker_init.connect
def _warm_local_models(sender: Any, **kwargs: Any) -> None:
    # worker_init: before the pool runs any task, so torch is imported whole, in this thread,
    # before a task's thread could see it half-imported (see local_models_warm_in_background).
    local_models_warm_in_background(sender.app.amqp.queues.consume_from.keys())
