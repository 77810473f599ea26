"""The warm-up of local models at a worker's start, next to the tasks that run meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

# A fresh process, as a worker is: the warm-up starts, and as soon as torch appears in
# sys.modules a leaderboard refresh's voter check runs for the first time (its e-process calls
# scipy.special.logsumexp, which asks whether its argument is a torch tensor by looking torch up
# in sys.modules, once per process: the answer is cached).
RACE = textwrap.dedent(
    """
    import json, sys, threading, time
    import django
    django.setup()
    import numpy as np
    from leaderboard.engine.anomaly import side_wealth
    from workers.warmup import local_models_warm_in_background

    def warming():
        return any(t.name == "warmup" for t in threading.enumerate())

    local_models_warm_in_background(["model.tiny-a"])
    while "torch" not in sys.modules and warming():
        time.sleep(0.001)
    runs, errors = 0, []
    while warming() or runs == 0:
        try:
            side_wealth(np.array([True, False, True, True]))
        except Exception as exc:
            errors.append(repr(exc))
        runs += 1
    print(json.dumps({"runs": runs, "errors": errors[:3], "failed": len(errors)}))
    """
)


def test_a_refresh_during_the_warm_up_does_not_see_a_half_imported_torch(cast: dict) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RACE],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failed"] == 0, result["errors"]
    assert result["runs"] > 0
