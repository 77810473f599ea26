"""Every shell example in the README runs, as written, against a running demo stack.

The stack is the one the integration tests use (uvicorn and a Celery worker on the test
database, the run's Redis), with the demo's models from `models.toml` under their own names
(built as tiny models here). Each fenced `sh` block runs in order under `bash -euo pipefail`,
in a scratch folder holding `manage.py`, with `base=` pointed at the live server: a failing
command, a Python traceback or a server error fails the test. Blocks that cannot run against a
running demo are listed in SKIPPED with the reason; each must still be found in the README.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from arena.models import ArenaModel
from arena.registry import registry_load
from tests.conftest import ROOT, stop, subprocess_env, worker_start

pytestmark = pytest.mark.django_db(transaction=True)

README = ROOT / "README.md"
BASE_LINE = re.compile(r"^base=http://127\.0\.0\.1:8000\b", re.MULTILINE)
# A block with a line that starts so is not run, for the reason given.
SKIPPED = {
    "make demo": "it starts the demo: the examples run against one already running",
    ".venv/bin/python -m pytest": "the tests: this test is part of the suite",
    "export SECRET_KEY=": "a production deployment: PostgreSQL, Redis and servers that never end",
}


def skipped(block: str) -> bool:
    return any(line.startswith(tuple(SKIPPED)) for line in block.splitlines())


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


@pytest.fixture
def demo_models(tiny_model_dir: Path, tmp_path: Path) -> Iterator[list[str]]:
    """The demo's registry (`models.toml`) as rows, each model a tiny local one (a tiny
    vision-language one for `vision = true`), and a worker for their queues."""
    from workers.tiny_vision import build_tiny_vision_model

    vision_dir = build_tiny_vision_model(tmp_path / "tiny-vlm", seed=3)
    names = []
    for entry in registry_load(ROOT / "models.toml"):
        path = vision_dir if entry.vision else tiny_model_dir
        options = {**entry.options, "path": str(path), "sampling": {"max_tokens": 24}}
        ArenaModel.objects.create(
            name=entry.name, display_name=entry.display_name, organization=entry.organization,
            license=entry.license, backend="local", options=options, enabled=entry.enabled,
            vision=entry.vision,
        )  # fmt: skip
        names.append(entry.name)
    queues = ["celery", *(f"model.{name}" for name in names)]
    worker = worker_start(subprocess_env(), name="readme-worker", queues=queues)
    yield names
    stop(worker)


def test_the_readme_lists_its_examples_and_what_it_skips() -> None:
    blocks = sh_blocks(README.read_text())
    for marker in SKIPPED:
        starts = [b for b in blocks if any(line.startswith(marker) for line in b.splitlines())]
        assert len(starts) == 1, f"no single README block has a line starting {marker!r}"
    assert len([b for b in blocks if not skipped(b)]) >= 3


def test_every_shell_example_in_the_readme_runs_against_the_demo(
    live_server_url: str, demo_models: list[str], tmp_path: Path
) -> None:
    text = README.read_text()
    for name in re.findall(r"/api/models/([\w.-]+)", text):
        assert name in demo_models, f"the README names model {name!r}, not one of the demo's"
    (tmp_path / "manage.py").symlink_to(ROOT / "manage.py")
    bin_dir = str(Path(sys.executable).parent)  # `python`, `python3`, `pip`: the project's
    env = subprocess_env(
        ARENA_DEMO="1", PYTHONPATH=str(ROOT), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    )
    ran = 0
    for block in sh_blocks(text):
        if skipped(block):
            continue
        if "$base" in block:
            assert BASE_LINE.search(block), f"a block uses $base without setting it:\n{block}"
        script = BASE_LINE.sub(f"base={live_server_url}", block)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        report = (
            f"\n--- block:\n{block}\n--- stdout:\n{done.stdout[-3000:]}"
            f"\n--- stderr:\n{done.stderr[-3000:]}"
        )
        assert done.returncode == 0, f"exit status {done.returncode}{report}"
        assert "Traceback" not in done.stdout + done.stderr, report
        assert "Server Error" not in done.stdout and "(500)" not in done.stdout, report
        ran += 1
    assert ran >= 3
