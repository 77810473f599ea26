"""The Celery app, where Django projects usually place it.

The arena enqueues by task name (`app.send_task("workers.tasks.generate", ...)`), so this module
imports no task code; workers (`celery -A workers worker`, workers/__init__.py) and beat load the
tasks by autodiscovery. Each model has its own queue (`model.<name>`, see ArenaModel.queue) so
that a worker can be pointed at the models it should serve and each model's capacity is respected.
"""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")

app = Celery("workers")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The tasks are the workers' and the leaderboard's; the arena has none (it enqueues by name).
app.autodiscover_tasks(["workers", "leaderboard"])


@setup_logging.connect
def _django_logging(**kwargs: Any) -> None:
    """Workers log through settings.LOGGING, as the web does (JSON lines in production): with a
    receiver on this signal Celery leaves the logging setup alone instead of installing its own
    handlers and format."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
