"""The worker watchdog ends a process whose Celery shutdown wedged after an unrecoverable error."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import ROOT

# A stand-in WorkController (only the attribute the watchdog reads), in a process of its own:
# the watchdog's job is to end the process.
SCRIPT = """
import sys, time
from types import SimpleNamespace
from workers import watchdog
watchdog.EXIT_AFTER_SECONDS, watchdog.CHECK_SECONDS = 0.5, 0.1
worker = SimpleNamespace(exitcode=None)
watchdog.watch(worker)
time.sleep(0.5)
worker.exitcode = int(sys.argv[1])  # what Celery's stop() sets first
time.sleep(5)  # a wedged shutdown
sys.exit(0)
"""


def run(exitcode: int) -> tuple[int, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(exitcode)], cwd=ROOT, capture_output=True, timeout=30
    )
    return done.returncode, time.monotonic() - started


def test_a_worker_stopping_after_a_failure_exits_with_its_code_instead_of_hanging() -> None:
    code, seconds = run(1)
    assert code == 1 and seconds < 4


def test_a_clean_warm_shutdown_is_left_to_finish() -> None:
    code, seconds = run(0)
    assert code == 0 and seconds >= 5
