"""What the long-running processes load at start. The generation worker (Celery's Django fixup runs
the system checks, which import every view) and the web process (arena/asgi.py builds the URLconf)
must not load scikit-learn and the pandas it brings (~0.5 s and ~100 MB each): only building or
applying a topic model needs them (leaderboard/engine/topics.py imports them there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

_HEAVY = ("sklearn", "pandas")

_WORKER = """
import django, json, sys
django.setup()
from arena.celery import app
app.loader.import_default_modules()  # as a worker starts: task modules, then the checks
import workers.tasks, leaderboard.tasks
from django.core.checks import run_checks
run_checks()  # what the fixup runs; explicit, should it stop running them
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""

_WEB = """
import json, sys
import arena.asgi
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


@pytest.mark.parametrize("code", [_WORKER, _WEB], ids=["worker", "web"])
def test_a_process_at_start_loads_neither_scikit_learn_nor_pandas(code: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "arena.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code.format(heavy=set(_HEAVY))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"loaded at start: {loaded[:5]}"
