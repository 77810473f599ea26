"""The generation job step, called directly (the Celery task is a one-line wrapper around it)."""

from __future__ import annotations

import numpy as np
import pytest

from arena import services, streams
from arena.models import ArenaModel, Response, ResponseStatus
from workers.generation import generation_run, sampling_params


@pytest.fixture
def battle(cast: dict):
    streams.redis_client().flushdb()
    return services.battle_create(
        visitor_id="v", prompt="Say something.", rng=np.random.default_rng(3)
    )


def _entries(response: Response) -> list[dict[str, str]]:
    return [
        fields
        for _, fields in streams.redis_client().xrange(
            streams.stream_key(response.turn.battle_id, response.id)
        )
    ]


def test_generation_streams_batched_deltas_then_stores_the_answer(battle) -> None:
    response = Response.objects.filter(turn__battle=battle).first()
    assert generation_run(response_id=response.id) is True
    response.refresh_from_db()
    assert response.status == ResponseStatus.DONE
    entries = _entries(response)
    assert entries[-1] == {"k": "done", "t": response.finish_reason}
    deltas = [e["t"] for e in entries if e["k"] == "d"]
    assert "".join(deltas) == response.text
    assert response.completion_tokens >= len(deltas)  # batched: never more entries than tokens
    assert response.prompt_tokens > 0 and response.latency_ms >= (response.ttft_ms or 0)
    # The stream expires: the database has the answer now.
    assert (
        0
        < streams.redis_client().ttl(streams.stream_key(response.turn.battle_id, response.id))
        <= 600
    )


def test_a_redelivered_task_does_nothing(battle) -> None:
    response = Response.objects.filter(turn__battle=battle).first()
    generation_run(response_id=response.id)
    before = _entries(response)
    assert generation_run(response_id=response.id) is False
    assert _entries(response) == before


def test_a_backend_error_fails_the_response_and_tells_the_stream(battle, cast: dict) -> None:
    response = Response.objects.filter(turn__battle=battle).first()
    Response.objects.filter(id=response.id).update(model=cast["broken"])
    generation_run(response_id=response.id)
    response.refresh_from_db()
    assert response.status == ResponseStatus.FAILED
    assert "/nonexistent/model" in response.error
    label = "Model A" if response.side == "a" else "Model B"
    assert _entries(response)[-1] == {"k": "fail", "t": f"{label} failed; start a new round."}


def test_sampling_params_come_from_the_registry_options() -> None:
    params = sampling_params({"sampling": {"temperature": 0.2, "stop": ["###"], "max_tokens": 9}})
    assert (params.temperature, params.stop, params.max_tokens) == (0.2, ("###",), 9)
    assert sampling_params({}).max_tokens == 256


def test_warmup_loads_the_local_models_of_the_workers_queues(cast: dict) -> None:
    from workers.warmup import local_models_warm

    ArenaModel.objects.filter(name="broken").update(enabled=True)
    # tiny-b's queue is not consumed here; the broken model logs and is skipped.
    warmed = local_models_warm(["celery", "model.tiny-a", "model.broken"])
    assert warmed == ["tiny-a"]


@pytest.mark.django_db(transaction=True)  # the generation runs in another thread's connection
def test_generation_waits_for_a_free_slot_before_calling_the_model(tiny_model_dir) -> None:
    import threading
    import time

    from arena.models import Battle, Turn
    from workers.capacity import capacity_acquire, capacity_release

    # Rows made directly, so no task is enqueued that a running worker could pick up.
    model = ArenaModel.objects.create(
        name="unserved", display_name="U", backend="local", max_concurrency=2,
        options={"path": str(tiny_model_dir), "sampling": {"max_tokens": 8}},
    )  # fmt: skip
    battle = Battle.objects.create(model_a=model, model_b=model, visitor_id="v")
    turn = Turn.objects.create(battle=battle, index=0, prompt="hi")
    response = Response.objects.create(turn=turn, side="a", model=model)
    client = streams.redis_client()
    for k in range(2):
        assert capacity_acquire(client, model_name="unserved", limit=2, holder=f"x{k}", hold_s=60)
    worker = threading.Thread(target=generation_run, kwargs={"response_id": response.id})
    worker.start()
    time.sleep(0.3)
    response.refresh_from_db()
    assert response.status == ResponseStatus.QUEUED  # waiting, nothing sent to the model
    capacity_release(client, model_name="unserved", holder="x0")
    worker.join(timeout=30)
    response.refresh_from_db()
    assert response.status == ResponseStatus.DONE


def test_a_first_turn_costs_three_sql_statements(battle) -> None:
    """One read (the row with its model and turn), one conditional claim, one store: no read
    back after the claim, no images query for a turn without one, no transaction around the
    store when nothing is flagged, no health write for a model without failures."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = Response.objects.filter(turn__battle=battle).first()
    with CaptureQueriesContext(connection) as queries:
        assert generation_run(response_id=response.id) is True
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert statements == ["SELECT", "UPDATE", "UPDATE"], statements


def test_a_success_resets_the_failures_counted_before_it(battle) -> None:
    response = Response.objects.filter(turn__battle=battle).first()
    ArenaModel.objects.filter(id=response.model_id).update(consecutive_failures=2)
    assert generation_run(response_id=response.id) is True
    assert ArenaModel.objects.get(id=response.model_id).consecutive_failures == 0


def test_the_end_of_an_answer_is_one_round_trip(battle, monkeypatch) -> None:
    """The end marker, the answer's metrics and the releases of its capacity slot and lease go
    to Redis together, after the answer is stored."""
    import redis.connection

    from arena.heartbeat import capacity_key
    from workers import leases

    writes: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def recorded(self, command, check_health=True):  # type: ignore[no-untyped-def]
        packed = command if isinstance(command, bytes) else b"".join(command)
        writes.append(packed)
        return send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", recorded)
    response = Response.objects.filter(turn__battle=battle).select_related("model").first()
    assert generation_run(response_id=response.id) is True
    ending = [w for w in writes if b"\r\ndone\r\n" in w]
    assert len(ending) == 1
    last = ending[0]
    for part in (
        b"arena:metrics:arena_generation_seconds",
        b"arena:metrics:arena_time_to_first_token_seconds",
        b"arena:metrics:arena_generated_tokens",
        b"arena:metrics:arena_queue_wait_seconds",
        capacity_key(response.model.name).encode(),
        leases.RESPONSES_KEY.encode(),
    ):
        assert part in last, part
    client = streams.redis_client()
    assert client.zscore(leases.RESPONSES_KEY, str(response.id)) is None
    assert client.zcard(capacity_key(response.model.name)) == 0
