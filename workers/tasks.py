"""Celery tasks: thin. Each takes ids, calls one job, and owns its retries and time limits."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.signals import task_received, worker_init
from django.conf import settings

from arena.models import ArenaModel
from arena.services import model_health_restore, responses_reap_stuck
from workers import app, leases
from workers.generation import generation_run
from workers.health import model_probe
from workers.warmup import local_models_warm_in_background

log = logging.getLogger(__name__)

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
    """Fail the generations that outlived the timeout (a server hung). Every worker's lease
    thread does this on its own (workers/leases.py); this task is for running it by hand."""
    return len(responses_reap_stuck())


@task_received.connect
def _lease_on_receipt(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    """A generation is leased as soon as this worker reserves it: if the worker dies before the
    task starts, the lease lapses and a live worker's reaper queues the answer again."""
    if request is None or request.name != generate.name or not request.args:
        return
    try:
        leases.response_lease_take(leases.streams_client(), response_id=int(request.args[0]))
    except (redis.RedisError, TypeError, ValueError) as exc:
        # The task takes its lease when it runs; this one only covers a death before that.
        log.warning("no lease on receipt of %s: %s", request.id, exc)


@worker_init.connect
def _leases_start(sender: Any, **kwargs: Any) -> None:
    leases.worker_leases_start(sender.hostname)


@worker_init.connect
def _warm_local_models(sender: Any, **kwargs: Any) -> None:
    # worker_init: before the pool runs any task, so torch is imported whole, in this thread,
    # before a task's thread could see it half-imported (see local_models_warm_in_background).
    local_models_warm_in_background(sender.app.amqp.queues.consume_from.keys())
