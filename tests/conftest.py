"""The cast and the real parts shared by the tests.

- `cast`: the models of a small arena (two tiny local models and one that always fails).
- `visitors`: the people: the battle's owner, another visitor, a staff member.
- tests/factories.py: battles and votes made the one way.
- `worker`: a real Celery worker process consuming the cast's queues.
- `live_server_url`: a real uvicorn process serving the ASGI app.
Both processes use the test database and the run's Redis (see tests/testenv.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from arena.embedded_redis import free_port
from arena.models import ArenaModel, Response
from benchmarks.procstats import processes_stop

ROOT = Path(__file__).resolve().parent.parent
CAST_QUEUES = ["celery", "model.tiny-a", "model.tiny-b", "model.broken"]


def database_url(settings_dict: dict[str, object]) -> str:
    """A DATABASE_URL for the database this test process is using (the test database)."""
    engine, name = str(settings_dict["ENGINE"]), settings_dict["NAME"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{name}"
    user, password = settings_dict.get("USER") or "", settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host, port = settings_dict.get("HOST") or "localhost", settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{name}"


@pytest.fixture(autouse=True, scope="session")
def api_on_test_thread() -> None:
    """In-process requests (Django's test client) must see the test's uncommitted rows: the
    JSON API runs on the test's own thread and connection here, not on the web thread pool.
    The uvicorn processes that the integration tests start use the pool, as in production."""
    from django.conf import settings

    settings.ARENA_API_THREADS = 0


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Llama chat model folder (about 460k parameters), built in well under 1 s."""
    # Imported here so that collecting the other tests does not import torch.
    from workers.tiny_models import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny", seed=7)


@pytest.fixture
def cast(db: None, tiny_model_dir: Path) -> dict[str, ArenaModel]:
    """Two working tiny models in the sampling pool and a broken one kept out of it."""
    common = {"backend": "local", "organization": "Test Org", "license": "MIT"}
    # Seeded: the same prompt gets the same answer, so no test depends on the luck of a draw
    # (a random tiny model sometimes ends its answer at the first token).
    sampling = {"max_tokens": 24, "temperature": 1.0, "seed": 3}
    return {
        "tiny-a": ArenaModel.objects.create(
            name="tiny-a",
            display_name="Tiny Alpha",
            options={"path": str(tiny_model_dir), "sampling": sampling},
            **common,
        ),
        "tiny-b": ArenaModel.objects.create(
            name="tiny-b",
            display_name="Tiny Beta",
            options={"path": str(tiny_model_dir), "sampling": {**sampling, "seed": 7}},
            **common,
        ),
        "broken": ArenaModel.objects.create(
            name="broken",
            display_name="Broken Gamma",
            options={"path": "/nonexistent/model"},
            enabled=False,
            **common,
        ),
    }


@dataclass(frozen=True)
class Visitors:
    """The people of a test beside the models: the battle's owner (the visitor who started it),
    another visitor, and a staff member (a Django user who may see the staff pages)."""

    owner: str
    other: str
    staff: Any


@pytest.fixture
def visitors(db: None) -> Visitors:
    from django.contrib.auth.models import User

    staff = User.objects.create_user("staff", password="pw", is_staff=True, is_superuser=True)
    return Visitors(owner="visitor-1", other="visitor-2", staff=staff)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a server under test: this run's Redis and the test database."""
    return {**os.environ, "DATABASE_URL": database_url(connection.settings_dict), **extra}


def stop(process: subprocess.Popen[bytes]) -> None:
    processes_stop([process])


def worker_start(
    env: dict[str, str], *, name: str, queues: list[str], extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """A real Celery worker (threads pool), started and ready; its log is var/<name>.log
    (appended to: a test that restarts its worker keeps what the first one said). `extra`:
    more worker options (a later one wins over the defaults here)."""
    log = ROOT / "var" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "threads",
             "--concurrency", "4", "-Q", ",".join(queues), "--loglevel", "INFO",
             "--hostname", f"{name}-{os.getpid()}@localhost", "--without-heartbeat",
             "--without-gossip", "--without-mingle", *extra],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while b"ready." not in log.read_bytes()[start:]:
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process


def web_start(env: dict[str, str], *, name: str) -> tuple[subprocess.Popen[bytes], str]:
    """The ASGI app under a real uvicorn process, answering; returns it and its base URL."""
    port = free_port()
    log = ROOT / "var" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "arena.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--timeout-graceful-shutdown", "2"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"uvicorn did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def worker(django_db_setup: None, tiny_model_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker on the cast's queues, against the test database."""
    process = worker_start(subprocess_env(), name="test-worker", queues=CAST_QUEUES)
    yield process
    stop(process)


@pytest.fixture(scope="session")
def live_server_url(django_db_setup: None) -> Iterator[str]:
    """The ASGI app under a real uvicorn process."""
    process, url = web_start(subprocess_env(), name="test-web")
    yield url
    stop(process)


def answer_play(response: Response, text: str = "an answer") -> None:
    """Play the worker without one: claim and complete one response through the services."""
    from arena import services
    from arena.messages import Finish

    claimed = services.response_claim(response_id=response.id)
    assert claimed is not None
    services.response_complete(
        response=claimed,
        text=text,
        finish=Finish(prompt_tokens=5, completion_tokens=len(text.split()), finish_reason="stop"),
        ttft_ms=3,
        latency_ms=10,
    )
