"""The worker's side of the heartbeats: a consumer bootstep that beats while the consumer consumes.

The keys, and the functions that write and read them, are the arena's (arena/heartbeat.py): the
web's `/readyz?workers=1` and `/metrics` read them without importing the workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import redis
from celery import bootsteps
from django.conf import settings

from arena.heartbeat import heartbeat_redis, worker_beat, worker_forget

log = logging.getLogger(__name__)


class WorkerHeartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: beats once the consumer consumes, stops with it."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, c: Any) -> None:
        self.hostname = c.hostname
        self.queues = list(c.app.amqp.queues.consume_from.keys())
        self._beat()
        self.tref = c.timer.call_repeatedly(
            settings.ARENA_WORKER_HEARTBEAT_SECONDS, self._beat, priority=10
        )

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)
        # Never started, or Redis is gone: then the entry ages out by itself.
        with contextlib.suppress(redis.RedisError, AttributeError):
            worker_forget(heartbeat_redis(), hostname=self.hostname)

    def _beat(self) -> None:
        try:
            worker_beat(
                heartbeat_redis(), hostname=self.hostname, queues=self.queues, pid=os.getpid()
            )
        except redis.RedisError as exc:
            # The consumer notices a lost broker on its own; a missed beat is the symptom.
            log.warning("worker heartbeat not written: %s", exc)
