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
import time
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
from workers.capacity import capacity_in_use

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


# A visitor's answer must end (answered, or failed with a clear message) this soon after its
# worker was killed: the dead worker's leases lapse (ARENA_WORKER_LEASE_SECONDS, 10 s), a live
# worker's reaper hands its answers on, and the queued ones are answered (each about 3 s here).
RECOVERY_BOUND_S = 30


def test_a_killed_worker_costs_seconds_not_minutes(
    stack: Stack, slow_models: list, module_redis: None
) -> None:
    # A worker with 2 threads that reserves 6 tasks: of the 6 answers, 2 stream and 4 wait in
    # the worker, reserved but not started (they come back from the broker only after its
    # visibility_timeout, 600 s).
    stack.worker_kill()
    stack.worker = worker_start(
        stack.env,
        name="faults-worker",
        queues=QUEUES,
        extra=("--concurrency", "2", "--prefetch-multiplier", "3"),
    )
    visitor = Visitor(stack.url)
    battles = [
        visitor.post("/battles", {"prompt": f"Story {k}, please."}).json()["id"] for k in range(3)
    ]
    responses = Response.objects.filter(turn__battle_id__in=battles)
    client = streams.redis_client()
    deadline = time.monotonic() + 60
    while True:  # until both streaming answers have sent text to their visitors
        streaming = list(responses.filter(status=ResponseStatus.STREAMING))
        if len(streaming) == 2 and all(
            client.xlen(streams.stream_key(r.turn.battle_id, r.id)) for r in streaming
        ):
            break
        assert time.monotonic() < deadline, "the answers did not start"
        time.sleep(0.1)
    assert responses.filter(status=ResponseStatus.QUEUED).count() == 4
    assert client.llen("model.slow-a") + client.llen("model.slow-b") == 0  # all reserved
    stack.worker_kill()
    killed = time.monotonic()
    stack.worker_restart()  # what run_arena or systemd does

    while responses.filter(status__in=[ResponseStatus.QUEUED, ResponseStatus.STREAMING]):
        assert time.monotonic() - killed < RECOVERY_BOUND_S, sorted(
            responses.values_list("id", "status")
        )
        time.sleep(0.2)
    recovered_s = time.monotonic() - killed
    # The two that had sent text fail clearly (a new try would not continue the same answer);
    # every other one is answered by the new worker.
    failed = responses.filter(status=ResponseStatus.FAILED)
    assert sorted(r.id for r in failed) == sorted(r.id for r in streaming)
    for response in failed:
        assert "stopped after" in response.error and response.text
    assert responses.filter(status=ResponseStatus.DONE).count() == 4
    # Their visitors are told: each stream ends.
    for battle_id in battles:
        assert visitor.stream(battle_id)[-1].event == "end"
    # And the dead worker's slots are free.
    for name in ("slow-a", "slow-b"):
        assert capacity_in_use(client, model_name=name) == 0
    print(f"every answer ended {recovered_s:.1f} s after the kill")


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
