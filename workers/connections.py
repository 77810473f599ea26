"""Database connections in a worker: kept across tasks, as the web keeps them across requests.

Celery's Django fix-up closes every database connection before and after every task unless
`CELERY_DB_REUSE_MAX` is set, and then it counts tasks across all the pool's threads rather than
connections' ages. A generation opened a fresh connection (SQLite: a file open and its pragmas;
PostgreSQL: a TCP and auth handshake) for each answer. The settings give the fix-up a count it
never reaches, and these receivers do what Django does around a request instead: in the task's
own thread (connections are per thread), close the connections that are older than
`DATABASE_CONN_MAX_AGE` or broken by an error, and keep the others for the thread's next task.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections


@task_prerun.connect
def _connections_check_before(sender: Any = None, **kwargs: Any) -> None:
    _connections_check(sender)


@task_postrun.connect
def _connections_check_after(sender: Any = None, **kwargs: Any) -> None:
    _connections_check(sender)


def _connections_check(task: Any) -> None:
    # An eager task (`apply()`) runs inside its caller, whose connection (and transaction) it
    # shares: leave it alone, as Celery's fix-up does.
    if not getattr(getattr(task, "request", None), "is_eager", False):
        close_old_connections()
