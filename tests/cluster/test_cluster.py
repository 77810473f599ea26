"""Many hosts on one machine: the arena across network namespaces, and faults between them.

tests/cluster/arena_cluster.py deploys the arena on eight hosts (network namespaces on one
private bridge): db (PostgreSQL, Redis), web1 and web2 (uvicorn), gpu1 and gpu2 (model servers
replaying vLLM's frames), work1 and work2 (Celery workers; beat on work2), and client, where
this test process's own sockets live. The tests share the cluster and run in file order;
docs/cluster-test.md says what each one asserts and how long it takes.

    make test-cluster        # as root; it sets ARENA_CLUSTER=1
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster.arena_cluster import (
    GENERATION_TIMEOUT_S,
    PROBE_S,
    UNHEALTHY_AFTER,
    ArenaCluster,
    postgres_bindir,
    visitor_on,
    wait_until,
)
from tests.visitor import Visitor, texts

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("ARENA_CLUSTER") != "1",
        reason="the multi-host test runs under `make test-cluster` (ARENA_CLUSTER=1)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's `ip`"),
    pytest.mark.skipif(
        postgres_bindir() is None, reason="needs PostgreSQL (apt-get install postgresql)"
    ),
    # A stream that never ends must not hold CI: each test fails (and the hosts go) by then.
    pytest.mark.timeout(150),
]

FINAL = ("done", "failed")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def arena() -> Iterator[ArenaCluster]:
    cluster = ArenaCluster()
    # A SIGTERM (a CI job's timeout) unwinds through the finally below as Ctrl-C does; after a
    # SIGKILL, `make test-cluster` runs `python -m tests.cluster.hosts clean` on its way out.
    previous = signal.signal(signal.SIGTERM, _interrupted)
    atexit.register(cluster.stop)
    started = time.monotonic()
    try:
        cluster.net.up()
        with cluster.net.entered("client"):
            cluster.start()
            print(f"cluster up in {time.monotonic() - started:.1f} s; logs in var/cluster/")
            yield cluster
    finally:
        cluster.stop()
        atexit.unregister(cluster.stop)
        signal.signal(signal.SIGTERM, previous)


def _create(visitor: Visitor, prompt: str) -> str:
    reply = visitor.post("/battles", {"prompt": prompt})
    assert reply.status_code == 201, reply.text
    battle_id: str = reply.json()["id"]
    return battle_id


def _until_both_stream(visitor: Visitor, battle_id: str) -> str:
    """Read the stream until both sides have sent text; the event id to resume from."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = visitor.stream(battle_id, stop_after=6)
        if {e.data.get("side") for e in events if e.event == "delta"} == {"a", "b"}:
            return [e for e in events if e.id][-1].id or ""
    raise AssertionError(f"battle {battle_id}: both sides did not start within 30 s")


def _ended(events: list[Any]) -> dict[str, str]:
    return {e.data["side"]: e.event for e in events if e.event in FINAL}


def _settled(arena: ArenaCluster, battle_id: str) -> dict[str, dict[str, Any]] | None:
    """The battle's answers once all are final. Each call also sends the reaper's task: beat
    sends it every 60 s, the test every poll, so that the generation timeout is the bound."""
    arena.send_task("workers.tasks.reap_stuck")
    now = arena.responses(battle_id)
    return now if all(r["status"] in FINAL for r in now.values()) else None


def _generated_by(arena: ArenaCluster, prompt: str) -> dict[str, str]:
    """model -> the address of the worker host that asked the model server for the answer."""
    return {
        r["model"]: r["client"]
        for gpu in ("gpu1", "gpu2")
        for r in arena.model_requests(gpu)
        if r["prompt"] == prompt
    }


def test_one_visitor_across_both_web_hosts(arena: ArenaCluster) -> None:
    """A battle started on one web host streams, and is voted on, through the other: one
    session (one SECRET_KEY, sessions in PostgreSQL), any host."""
    web1, web2 = arena.url("web1"), arena.url("web2")
    alice, bob = Visitor(web1), Visitor(web2)
    alice_on_web2, bob_on_web1 = visitor_on(alice, web2), visitor_on(bob, web1)
    # Two battles generating at once, four answers on the two workers.
    battles = {
        "alice": _create(alice, "Describe a quiet harbour at dawn."),
        "bob": _create(bob, "Write two lines about mountain rain."),
    }
    watched = {
        "alice": alice_on_web2.stream(battles["alice"]),
        "bob": bob_on_web1.stream(battles["bob"]),
    }
    for who, battle_id in battles.items():
        events = watched[who]
        assert events[-1].event == "end"
        assert _ended(events) == {"a": "done", "b": "done"}
        stored = arena.responses(battle_id)
        assert texts(events) == {side: r["text"] for side, r in stored.items()}
    everything = "\n".join(alice.received + bob.received)
    for name in ("atlas", "birch", "cedar", "Cluster Test"):
        assert name.lower() not in everything.lower(), f"{name} leaked before the vote"

    # A session's battle is its own on every host.
    assert bob_on_web1.get(f"/battles/{battles['alice']}").status_code == 403
    # The vote goes through the other host again; only the reply names the models.
    vote = alice_on_web2.post(f"/battles/{battles['alice']}/vote", {"choice": "a"})
    assert vote.status_code == 201, vote.text
    stored = arena.responses(battles["alice"])
    assert vote.json()["counted"] is True
    assert vote.json()["model_a"]["name"] == stored["a"]["model"]
    assert bob_on_web1.post(f"/battles/{battles['bob']}/vote", {"choice": "tie"}).status_code == 201
    rows = arena.sql(
        "SELECT battle_id, outcome FROM arena_vote WHERE battle_id = ANY(%s) ORDER BY battle_id",
        list(battles.values()),
    )
    assert sorted(rows) == sorted([(battles["alice"], "model_a"), (battles["bob"], "tie")])


def test_a_worker_host_killed_mid_answer(arena: ArenaCluster) -> None:
    """work1 is SIGKILLed while it generates: its answers, which had sent text, are failed once
    its lease lapses (a redelivered task for a claimed answer does nothing), work2's answer
    of the same battle finishes, the visitor is told, and work2 carries the next battle alone."""
    visitor = Visitor(arena.url("web1"))
    watcher = visitor_on(visitor, arena.url("web2"))
    work1, work2 = arena.address("work1"), arena.address("work2")
    # Which worker takes which answer is the broker's choice: start battles until work1 has one.
    for attempt in range(6):
        prompt = f"Tell me about rivers, take {attempt}."
        battle_id = _create(visitor, prompt)
        last_id = _until_both_stream(watcher, battle_id)
        generated_by = _generated_by(arena, prompt)
        if work1 in generated_by.values():
            break
        watcher.stream(battle_id, last_event_id=last_id)
    else:
        pytest.fail("work1 generated no answer in 6 battles")
    arena.services["work1"].kill()
    killed_at = time.monotonic()
    on_work1 = {
        side for side, r in arena.responses(battle_id).items() if generated_by[r["model"]] == work1
    }

    final = wait_until(
        lambda: _settled(arena, battle_id),
        timeout=GENERATION_TIMEOUT_S + 20,
        every=2,
        what="the answers of work1 ended",
    )
    print(f"work1's answers settled {time.monotonic() - killed_at:.1f} s after the kill")
    for side, response in final.items():
        if side in on_work1:
            # Failed by work2's lease reaper ("stopped after N characters") or, were the
            # lease check late, by the generation timeout ("reaped").
            assert response["status"] == "failed", response
            assert "stopped after" in response["error"] or "reaped" in response["error"], response
        else:
            assert response["status"] == "done", response

    # The visitor, still on web2, resumes where it was and is told.
    rest = watcher.stream(battle_id, last_event_id=last_id)
    assert rest[-1].event == "end"
    assert _ended(rest) == {side: "failed" if side in on_work1 else "done" for side in "ab"}
    refused = visitor.post(f"/battles/{battle_id}/vote", {"choice": "a"})
    assert refused.status_code == 409 and "Start a new round" in refused.json()["error"]

    # work2 alone serves the next battle.
    prompt = "And now the sea, please."
    events = watcher.stream(_create(visitor, prompt))
    assert _ended(events) == {"a": "done", "b": "done"}
    assert set(_generated_by(arena, prompt).values()) == {work2}

    arena.worker_start("work1")
    arena.worker_wait("work1")


def test_a_model_host_cut_off_leaves_the_pool_and_returns(arena: ArenaCluster) -> None:
    """gpu1's cable is pulled: battles with atlas fail on its side until ARENA_UNHEALTHY_AFTER
    failures take it out of the pool; new battles are drawn without it and finish; once the
    cable is back, beat's probe returns it to the pool and it answers again."""
    visitor = Visitor(arena.url("web2"))
    watcher = visitor_on(visitor, arena.url("web1"))
    gpu1 = arena.address("gpu1")
    assert arena.model_health("atlas")[0]
    arena.net.link_set("gpu1", up=False)
    try:
        for attempt in range(10):
            if not arena.model_health("atlas")[0]:
                break
            battle_id = _create(visitor, f"Name a colour, take {attempt}.")
            events = watcher.stream(battle_id)
            assert events[-1].event == "end"
            stored = arena.responses(battle_id)
            expected = {s: "failed" if r["model"] == "atlas" else "done" for s, r in stored.items()}
            assert _ended(events) == expected
            for response in stored.values():
                if response["model"] == "atlas":
                    assert gpu1 in response["error"], response["error"]
        healthy, failures, error = arena.model_health("atlas")
        assert not healthy and failures >= UNHEALTHY_AFTER and gpu1 in error, (healthy, error)
        left_at = time.monotonic()
        # Out of the pool: the next battles are drawn among the others, and finish.
        for attempt in range(3):
            battle_id = _create(visitor, f"Name a tree, take {attempt}.")
            assert _ended(watcher.stream(battle_id)) == {"a": "done", "b": "done"}
            assert {r["model"] for r in arena.responses(battle_id).values()} == {"birch", "cedar"}
        # Beat's probes cannot reach it while the cable is out.
        time.sleep(max(0.0, 2 * PROBE_S - (time.monotonic() - left_at)))
        assert not arena.model_health("atlas")[0]
    finally:
        arena.net.link_set("gpu1", up=True)
    plugged_at = time.monotonic()
    wait_until(
        lambda: arena.model_health("atlas")[0],
        timeout=PROBE_S + 20,
        what="beat's probe returned atlas to the pool",
    )
    print(f"atlas back in the pool {time.monotonic() - plugged_at:.1f} s after the cable")
    for attempt in range(8):
        battle_id = _create(visitor, f"Name a river, take {attempt}.")
        events = watcher.stream(battle_id)
        assert _ended(events) == {"a": "done", "b": "done"}
        if "atlas" in {r["model"] for r in arena.responses(battle_id).values()}:
            break
    else:
        pytest.fail("atlas was not drawn in 8 battles after it came back")


def test_redis_restart_mid_stream_loses_no_vote(arena: ArenaCluster) -> None:
    """Redis on db restarts, empty, while a battle streams: the visitor's stream ends with what
    the database says happened, every stored vote is unchanged, a vote cast after the restart
    is stored, and new battles run again."""
    visitor = Visitor(arena.url("web1"))
    watcher = visitor_on(visitor, arena.url("web2"))
    finished = _create(visitor, "A short note about lighthouses.")
    assert _ended(watcher.stream(finished)) == {"a": "done", "b": "done"}
    before = arena.votes()
    assert len(before) >= 2

    battle_id = _create(visitor, "A long tale about the tides.")
    last_id = _until_both_stream(watcher, battle_id)
    arena.redis_restart()
    restarted_at = time.monotonic()

    rest = watcher.stream(battle_id, last_event_id=last_id)
    assert rest[-1].event == "end"
    stored = arena.responses(battle_id)
    assert all(r["status"] in FINAL for r in stored.values()), stored
    assert _ended(rest) == {side: r["status"] for side, r in stored.items()}
    assert arena.votes() == before

    # The web hosts reconnect: a vote after the restart (rate limits live in Redis) is stored.
    vote = watcher.post(f"/battles/{finished}/vote", {"choice": "b"})
    assert vote.status_code == 201, vote.text
    after = arena.votes()
    assert after[: len(before)] == before and len(after) == len(before) + 1

    # New battles run again. Celery 5.7 / kombu 5.7 workers sometimes exit (code 1,
    # "Unrecoverable error: AttributeError: 'NoneType' object has no attribute 'hostname'") when
    # the broker goes away while they hold unacknowledged tasks; a supervisor (systemd's
    # Restart=always, a container's restart policy) starts them again, and so does this test,
    # with a warning in the report.
    def supervise() -> None:
        for host in ("work1", "work2"):
            if not arena.services[host].alive:
                code = arena.services[host].process.returncode
                warnings.warn(
                    f"{host}'s Celery worker exited (code {code}) after the Redis restart; "
                    "restarted as its supervisor would",
                    stacklevel=1,
                )
                arena.worker_start(host)
                arena.worker_wait(host)

    def recovered() -> bool:
        battle_id = _create(visitor, "Is the arena back?")
        deadline = time.monotonic() + GENERATION_TIMEOUT_S + 15
        while (final := _settled(arena, battle_id)) is None:
            if time.monotonic() > deadline:
                return False  # taken by a worker that died since: the next battle, then
            supervise()
            time.sleep(1)
        assert _ended(watcher.stream(battle_id)) == {s: r["status"] for s, r in final.items()}
        return all(r["status"] == "done" for r in final.values())

    wait_until(recovered, timeout=90, every=1, what="a battle finished after the Redis restart")
    print(f"a battle finished {time.monotonic() - restarted_at:.1f} s after the Redis restart")


def test_leaderboard_and_export_hold_every_vote(arena: ArenaCluster) -> None:
    """The operator's commands, run on a worker host against the shared database: the snapshot
    and the exported dataset count every vote cast through either web host."""
    [(valid, total)] = arena.sql(
        "SELECT count(*) FILTER (WHERE is_valid), count(*) FROM arena_vote"
    )
    assert total >= 3 and valid == total
    out = arena.manage("work2", "refresh_leaderboard", "--force")
    assert f"{valid} valid votes" in out, out
    metas = [httpx.get(f"{arena.url(w)}/api/leaderboard", timeout=10) for w in ("web1", "web2")]
    assert [m.status_code for m in metas] == [200, 200]
    assert metas[0].json()["meta"] == metas[1].json()["meta"]
    assert metas[0].json()["meta"]["total_valid_votes"] == valid

    folder = arena.net.workdir / "export"
    arena.manage("work1", "export_preferences", "--output", str(folder), "--no-progress")
    records = sum(len(path.read_text().splitlines()) for path in (folder / "data").rglob("*.jsonl"))
    assert records == valid
