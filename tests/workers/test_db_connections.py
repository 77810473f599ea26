"""A worker thread keeps its database connection from one task to the next, as a web thread
does between requests, and opens a new one only when the old one is too old or broken
(workers/connections.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection
from django.db.backends.signals import connection_created

from arena.models import ArenaModel
from workers import app
from workers.tasks import generate

pytestmark = pytest.mark.django_db(transaction=True)  # the tasks' thread has its own connection


def _task() -> None:
    """One task's life as a worker runs it: Celery's Django fix-up and the signals' receivers
    before and after, a query in between."""
    fixup = DjangoWorkerFixup(app)  # what `celery worker` installs, with the app's settings
    fixup.on_task_prerun(sender=generate)
    task_prerun.send(sender=generate, task_id="t", task=generate, args=(1,), kwargs={})
    ArenaModel.objects.count()
    fixup.on_task_postrun(sender=generate)
    task_postrun.send(sender=generate, task_id="t", task=generate, args=(1,), kwargs={})


def _connections_opened(tasks: Callable[[], None]) -> int:
    """How many database connections `tasks` opened, run in a thread of their own."""
    opened: list[object] = []

    def count(sender: object, connection: object, **kwargs: object) -> None:
        if threading.current_thread().name == "tasks":
            opened.append(connection)

    def run() -> None:
        try:
            tasks()
        finally:
            connection.close()

    connection_created.connect(count)
    try:
        thread = threading.Thread(target=run, name="tasks")
        thread.start()
        thread.join(timeout=30)
    finally:
        connection_created.disconnect(count)
    return len(opened)


def test_a_thread_reuses_its_connection_across_tasks() -> None:
    def three_tasks() -> None:
        for _ in range(3):
            _task()

    assert _connections_opened(three_tasks) == 1


def test_a_connection_older_than_its_max_age_is_replaced_before_the_next_task() -> None:
    def aged() -> None:
        _task()
        connection.close_at = time.monotonic() - 1  # DATABASE_CONN_MAX_AGE has passed
        _task()

    assert _connections_opened(aged) == 2


def test_a_broken_connection_is_replaced_before_the_next_task() -> None:
    def broken() -> None:
        _task()
        # An error left the connection unusable (a dropped server connection, say); this
        # thread's connection object only, which goes with the thread.
        connection.errors_occurred = True
        connection.is_usable = lambda: False
        _task()

    assert _connections_opened(broken) == 2


def test_an_eager_task_leaves_its_callers_connection_alone() -> None:
    def eager() -> None:
        ArenaModel.objects.count()
        connection.close_at = time.monotonic() - 1  # would be closed around a worker's task
        generate.push_request(is_eager=True)
        try:
            task_prerun.send(sender=generate, task_id="t", task=generate, args=(1,), kwargs={})
        finally:
            generate.pop_request()
        assert connection.connection is not None

    assert _connections_opened(eager) == 1
