"""`manage.py run_arena`, the demo's process supervisor, as a visitor and an operator meet it:
one banner and the logs in files, services restarted when they die (the embedded Redis too),
and SIGTERM to its top process stopping everything within 10 s."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from arena.models import ArenaModel, Response, ResponseStatus, Vote
from tests.demo_stack import DemoStack
from tests.visitor import Visitor
from tests.workers.replay_server import Paced, ReplayServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(cast: dict, tmp_path: Path) -> Iterator[DemoStack]:
    stack = DemoStack(tmp_path / "data")
    yield stack
    stack.stop()


def _battle_answered(url: str, deadline: float) -> str:
    """Start battles until one is answered by both models (or the deadline); its id."""
    last = ""
    while time.monotonic() < deadline:
        visitor = Visitor(url)
        reply = visitor.post("/battles", {"prompt": "Hello there"})
        if reply.status_code == 201:
            battle_id = reply.json()["id"]
            events = visitor.stream(battle_id)
            if [e.event for e in events].count("done") == 2:
                return str(battle_id)
            last = f"{battle_id}: {[e.event for e in events]}"
        else:
            last = f"{reply.status_code} {reply.text[:200]}"
        time.sleep(0.5)
    raise AssertionError(f"no battle answered in time; last: {last}")


def test_terminal_shows_one_banner_and_the_services_log_to_files(demo: DemoStack) -> None:
    terminal = demo.output
    logs = demo.data_dir / "logs"
    assert f"is running at {demo.url}/" in terminal
    assert str(demo.data_dir) in terminal
    assert f"{logs}/" in terminal
    assert f"kill {demo.process.pid}" in terminal
    # Celery's banners and beat's periodic lines go to the logs, not the terminal.
    assert "celery@" not in terminal and "[config]" not in terminal
    assert "Scheduler: Sending" not in terminal
    assert len(terminal.splitlines()) < 15, terminal
    for name in ("redis", "worker", "beat", "web"):
        assert (logs / f"{name}.log").stat().st_size > 0, name
    assert "ready." in (logs / "worker.log").read_text()
    assert "Uvicorn running" in (logs / "web.log").read_text()


def test_a_killed_worker_is_started_again_with_one_line_on_the_terminal(
    demo: DemoStack,
) -> None:
    old = demo.kill("worker")
    demo.wait_restarted("worker", old)
    assert demo.restarts_noticed("worker") == 1
    assert "worker exited with code -9; starting it again" in demo.output
    _battle_answered(demo.url, time.monotonic() + 60)


def test_a_killed_redis_is_started_again_and_the_demo_recovers(demo: DemoStack) -> None:
    voted = _battle_answered(demo.url, time.monotonic() + 60)
    visitor = Visitor(demo.url)
    first = visitor.post("/battles", {"prompt": "Vote on me"}).json()["id"]
    assert [e.event for e in visitor.stream(first)].count("done") == 2
    assert visitor.post(f"/battles/{first}/vote", {"choice": "tie"}).status_code == 201
    before = list(Vote.objects.order_by("id").values())

    old = demo.kill("redis")
    demo.wait_restarted("redis", old, timeout=15)
    assert demo.process.poll() is None, demo.output
    assert demo.restarts_noticed("redis") == 1
    # Web and worker reconnect (or the worker is restarted): new battles are answered again.
    _battle_answered(demo.url, time.monotonic() + 30)
    assert list(Vote.objects.order_by("id").values()) == before
    assert voted != first


@pytest.fixture
def slow_models(db: None) -> Iterator[None]:
    """Two models behind a stand-in server that takes a minute to answer."""
    server = ReplayServer(default=Paced(tokens=3000, interval=0.02))
    options = {"base_url": server.base_url, "served_model_name": "paced-model"}
    for name in ("slow-a", "slow-b"):
        ArenaModel.objects.create(name=name, display_name=name, backend="openai", options=options)
    yield
    server.close()


def test_sigterm_to_the_top_process_stops_everything_within_10_s(
    slow_models: None, tmp_path: Path
) -> None:
    demo = DemoStack(tmp_path / "data", web_workers=2)
    try:
        # Answers being written and streamed: the worker and the web server have work to finish.
        visitors = [Visitor(demo.url) for _ in range(3)]
        battles = [v.post("/battles", {"prompt": "A long story"}).json()["id"] for v in visitors]
        for visitor, battle_id in zip(visitors, battles, strict=True):
            visitor.stream(battle_id, stop_after=4)
        assert Response.objects.filter(status=ResponseStatus.STREAMING).count() == 6
        family = [psutil.Process(demo.process.pid), *demo.descendants()]
        assert len(family) >= 6  # run_arena, redis, worker, beat, uvicorn and its 2 workers

        started = time.monotonic()
        os.kill(demo.process.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=10)
        took = time.monotonic() - started
        assert alive == [], f"still running after {took:.1f} s: {alive}\n{demo.output[-2000:]}"
        assert "Model Arena stopped." in demo.output
    finally:
        demo.stop()
