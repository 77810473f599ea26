"""The Celery app: `celery -A workers worker`.

Each model has its own queue (`model.<name>`, see ArenaModel.queue) so that a worker can be
pointed at the models it should serve and each model's capacity is respected.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")

app = Celery("workers")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers", "arena", "leaderboard"])
