"""A worker that failed for good must exit, so that its process manager starts a fresh one.

When Redis restarts under a worker that holds unacknowledged tasks, Celery 5.7 / kombu 5.7 can
fail with "Unrecoverable error: AttributeError("'NoneType' object has no attribute
'hostname'")" (kombu restores those tasks to a Redis connection that is gone). Celery then
begins a warm shutdown, and that shutdown can wedge on the dead broker socket: the process
neither consumes nor exits, so `Restart=always` never fires and the model's queue is served by
nobody. This watchdog ends such a process: once the worker is stopping with a failure exit code
(Celery sets it before it shuts down), it gets `EXIT_AFTER_SECONDS` to finish on its own, then
the process exits with that code. A warm shutdown asked for by SIGTERM (exit code 0) is left to
take its time: generations in flight finish first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

EXIT_AFTER_SECONDS = 15.0
CHECK_SECONDS = 1.0


def failed_stop_seconds(worker: Any, since: float | None, now: float) -> float | None:
    """When the worker began stopping after a failure (`since` from the last check), or None
    while it runs or stops cleanly. Celery sets the exit code as the first thing its stop()
    does, before the shutdown that may wedge (the blueprint's state changes only later)."""
    if worker.exitcode in (None, 0):
        return None
    return since if since is not None else now


def watch(worker: Any) -> threading.Thread:
    """Start the watchdog thread for this WorkController (a daemon: it never holds the exit)."""

    def run() -> None:
        since: float | None = None
        while True:
            time.sleep(CHECK_SECONDS)
            now = time.monotonic()
            since = failed_stop_seconds(worker, since, now)
            if since is not None and now - since >= EXIT_AFTER_SECONDS:
                log.critical(
                    "worker still not stopped %.0f s after an unrecoverable error: exiting",
                    now - since,
                )
                logging.shutdown()
                os._exit(int(worker.exitcode or 1))

    thread = threading.Thread(target=run, name="arena-watchdog", daemon=True)
    thread.start()
    log.info("watchdog: a worker stopping after a failure exits within %.0f s", EXIT_AFTER_SECONDS)
    return thread
