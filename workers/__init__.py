"""The workers: `celery -A workers worker` (and `celery -A workers beat`).

The Celery app itself is the arena's (arena/celery.py); this package adds what only a worker
process needs: the heartbeat step and the shutdown watchdog.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init

from arena.celery import app
from workers import connections  # noqa: F401 - connects the receivers that keep connections
from workers.heartbeat import WorkerHeartbeat

__all__ = ["app"]

# Each worker tells Redis it is alive and consuming (see workers/heartbeat.py).
app.steps["consumer"].add(WorkerHeartbeat)


@worker_init.connect
def _watchdog_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker whose shutdown wedges after an unrecoverable error exits (workers/watchdog.py)."""
    from workers.watchdog import watch

    watch(sender)
