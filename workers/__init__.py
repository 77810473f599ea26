"""The Celery app: `celery -A workers worker`.

Each model has its own queue (`model.<name>`, see ArenaModel.queue) so that a worker can be
pointed at the models it should serve and each model's capacity is respected.
"""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init

from workers.heartbeat import WorkerHeartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")

app = Celery("workers")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers", "arena", "leaderboard"])


@setup_logging.connect
def _django_logging(**kwargs: Any) -> None:
    """Workers log through settings.LOGGING, as the web does (JSON lines in production): with a
    receiver on this signal Celery leaves the logging setup alone instead of installing its own
    handlers and format."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


# Each worker tells Redis it is alive and consuming (see workers/heartbeat.py).
app.steps["consumer"].add(WorkerHeartbeat)


@worker_init.connect
def _watchdog_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker whose shutdown wedges after an unrecoverable error exits (workers/watchdog.py)."""
    from workers.watchdog import watch

    watch(sender)
