"""Faults on the real stack: a worker killed mid-answer, Redis restarted mid-stream, a model
server that drops, fails or stalls. This module runs its own Redis, worker and web server (so
restarting them disturbs no other test) against a vLLM-frame replay server that answers slowly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest
from django.test import override_settings
from django.utils import timezone

from arena import services, streams
from arena.embedded_redis import free_port, redis_server_start
from arena.models import ArenaModel, Response, ResponseStatus, Vote
from tests.conftest import stop, subprocess_env, web_start, worker_start
from tests.visitor import Visitor, texts
from tests.workers.replay_server import Paced, Replay, ReplayServer, Reply

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUEUES = ["celery", "model.slow-a", "model.slow-b"]
# 120 tokens, 25 ms apart: each answer streams for about 3 s, long enough to break things in.
SLOW = Paced(tokens=120, interval=0.025)


class Stack:
    """Redis, a worker and a web server of this module's own; each can be killed or restarted."""

    def __init__(self) -> None:
        self.redis_port = free_port()
        self.redis = redis_server_start(self.redis_port, stdout=subprocess.DEVNULL)
        self.env = subprocess_env(
            REDIS_URL=self.redis_url,
            ARENA_SSE_KEEPALIVE_SECONDS="1",
            ARENA_UNHEALTHY_AFTER="100",
        )
        self.worker = worker_start(self.env, name="faults-worker", queues=QUEUES)
        self.web, self.url = web_start(self.env, name="faults-web")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def worker_kill(self) -> None:
        os.kill(self.worker.pid, signal.SIGKILL)
        self.worker.wait()

    def worker_restart(self) -> None:
        if self.worker.poll() is not None:
            self.worker = worker_start(self.env, name="faults-worker", queues=QUEUES)

    @contextlib.contextmanager
    def supervised(self) -> Iterator[list[int]]:
        """Play the process manager (systemd's Restart=always, run_arena): start the worker
        again whenever it exits. Yields the exit codes of the workers it replaced."""
        exits: list[int] = []
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.5):
                if self.worker.poll() is not None:
                    exits.append(self.worker.returncode)
                    self.worker = worker_start(self.env, name="faults-worker", queues=QUEUES)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield exits
        finally:
            done.set()
            thread.join()

    def redis_restart(self) -> None:
        stop(self.redis)
        self.redis = redis_server_start(self.redis_port, stdout=subprocess.DEVNULL)

    def close(self) -> None:
        for process in (self.web, self.worker, self.redis):
            stop(process)


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer(default=SLOW)
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(django_db_setup: None) -> Iterator[Stack]:
    stack = Stack()
    yield stack
    stack.close()


@pytest.fixture
def slow_models(db: None, replay: ReplayServer, stack: Stack) -> list[ArenaModel]:
    stack.worker_restart()
    options = {"base_url": replay.base_url, "served_model_name": "paced-model", "read_timeout": 2}
    return [
        ArenaModel.objects.create(
            name=name, display_name=name, backend="openai", options=options, max_concurrency=8
        )
        for name in ("slow-a", "slow-b")
    ]


@pytest.fixture
def module_redis(stack: Stack) -> Iterator[None]:
    """Point this test process's own Redis client (the reaper's) at the module's server."""
    with override_settings(REDIS_URL=stack.redis_url):
        streams.redis_client.cache_clear()
        yield
    streams.redis_client.cache_clear()


def _wait_until_streaming(battle_id: str, visitor: Visitor) -> str:
    """Read the stream until both sides have sent text; the last event id to resume from."""
    while True:
        events = visitor.stream(battle_id, stop_after=6)
        if {e.data.get("side") for e in events if e.event == "delta"} == {"a", "b"}:
            return [e for e in events if e.id][-1].id


def test_worker_killed_mid_answer_is_failed_by_the_reaper(
    stack: Stack, slow_models: list, module_redis: None
) -> None:
    visitor = Visitor(stack.url)
    battle_id = visitor.post("/battles", {"prompt": "Tell me a long story."}).json()["id"]
    last_id = _wait_until_streaming(battle_id, visitor)
    stack.worker_kill()
    responses = Response.objects.filter(turn__battle_id=battle_id)
    assert {r.status for r in responses} == {ResponseStatus.STREAMING}

    # The reaper's bound: the generation timeout after the answer was queued.
    later = timezone.now() + dt.timedelta(seconds=301)
    assert sorted(services.responses_reap_stuck(now=later)) == sorted(r.id for r in responses)

    rest = visitor.stream(battle_id, last_event_id=last_id)
    assert sorted(e.data["side"] for e in rest if e.event == "failed") == ["a", "b"]
    assert rest[-1].event == "end"
    refused = visitor.post(f"/battles/{battle_id}/vote", {"choice": "a"})
    assert refused.status_code == 409 and "Start a new round" in refused.json()["error"]

    # A new round works once a worker is back.
    stack.worker_restart()
    again = visitor.post("/battles", {"prompt": "Again?"}).json()["id"]
    assert [e.event for e in visitor.stream(again)].count("done") == 2


def test_redis_restart_mid_stream_ends_clearly_and_keeps_votes(
    stack: Stack, slow_models: list
) -> None:
    visitor = Visitor(stack.url)
    finished = visitor.post("/battles", {"prompt": "First battle."}).json()["id"]
    visitor.stream(finished)
    assert visitor.post(f"/battles/{finished}/vote", {"choice": "tie"}).status_code == 201
    before = Vote.objects.filter(battle_id=finished).values().get()

    battle_id = visitor.post("/battles", {"prompt": "Second battle."}).json()["id"]
    last_id = _wait_until_streaming(battle_id, visitor)
    with stack.supervised() as exits:
        stack.redis_restart()

        # The reconnecting visitor gets an end for both sides: what the database says happened.
        rest = visitor.stream(battle_id, last_event_id=last_id)
        assert rest[-1].event == "end"
        ended = {e.data["side"]: e.event for e in rest if e.event in ("done", "failed")}
        stored = {r.side: r.status for r in Response.objects.filter(turn__battle_id=battle_id)}
        assert ended == {side: "done" if s == "done" else "failed" for side, s in stored.items()}
        assert set(stored.values()) <= {ResponseStatus.DONE, ResponseStatus.FAILED}

        assert Vote.objects.filter(battle_id=finished).values().get() == before

        # New battles are answered again. Celery 5.7 / kombu 5.7 workers that hold unacknowledged
        # tasks when Redis goes away sometimes fail ("'NoneType' object has no attribute
        # 'hostname'" while restoring them); workers/watchdog.py then makes sure the process
        # exits, and a process manager starts a new one (run_arena does, deploy/ says
        # Restart=always): `supervised` does that here.
        after = visitor.post("/battles", {"prompt": "After the restart."}).json()["id"]
        events = visitor.stream(after)
        assert [e.event for e in events if e.event in ("done", "failed")] == ["done", "done"]
    # A worker that failed exited with Celery's failure code, not by a hang and a kill.
    assert set(exits) <= {1}
    stack.worker_kill()  # the next test starts a fresh worker


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Replay("chat_stream_usage", cut_after=4), "closed the stream"),
        (Reply(500, b'{"error": {"message": "engine crashed"}}'), "engine crashed"),
        (Replay("chat_stream_usage", stall_after=3), "timeout"),
    ],
)
def test_model_server_faults_fail_the_answer_and_offer_a_new_round(
    stack: Stack, slow_models: list, replay: ReplayServer, fault: object, error: str
) -> None:
    visitor = Visitor(stack.url)
    replay.push(fault)  # the first request of the battle gets the fault, the other side is fine
    battle_id = visitor.post("/battles", {"prompt": "Hello"}).json()["id"]
    events = visitor.stream(battle_id)
    assert [e.event for e in events].count("failed") == 1
    failed = Response.objects.get(turn__battle_id=battle_id, status=ResponseStatus.FAILED)
    assert error in failed.error
    assert texts(events)[failed.side] == failed.text  # what streamed before the fault, no more
    assert visitor.post(f"/battles/{battle_id}/vote", {"choice": "a"}).status_code == 409
    assert visitor.post("/battles", {"prompt": "New round"}).status_code == 201
