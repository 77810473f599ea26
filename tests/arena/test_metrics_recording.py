"""Recording an answer's metrics costs one Redis round trip (arena/metrics.py), or none of its
own when the worker hands its pipeline over (the answer's last round trip)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis.connection

from arena import metrics


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """What this process writes to Redis, one item per write (a pipeline is one)."""
    sent: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def recorded(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sent.append(command if isinstance(command, bytes) else b"".join(command))
        return send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", recorded)
    yield sent


def _stored(model: str) -> dict[str, dict[str, str]]:
    client = metrics.metrics_redis()
    return {
        metric.name: {f: v for f, v in client.hgetall(metric.key).items() if model in f}
        for metric in (metrics.GENERATION_SECONDS, metrics.TTFT_SECONDS, metrics.GENERATED_TOKENS)
    }


def test_an_answers_metrics_are_one_round_trip(writes: list[bytes]) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    metrics.metrics_redis().ping()  # connected before counting
    writes.clear()
    metrics.response_completed(model=model, latency_ms=1500, ttft_ms=40, completion_tokens=64)
    assert len(writes) == 1
    stored = _stored(model)
    assert stored["arena_generation_seconds"][f'["{model}"]|count'] == "1"
    assert stored["arena_time_to_first_token_seconds"][f'["{model}"]|0.05'] == "1"
    assert float(stored["arena_generated_tokens"][f'["{model}"]']) == 64


def test_metrics_join_the_callers_pipeline_and_go_with_it(writes: list[bytes]) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    pipe = metrics.metrics_redis().pipeline(transaction=True)
    metrics.response_claimed(model=model, waited_s=0.02, pipe=pipe)
    metrics.response_completed(
        model=model, latency_ms=900, ttft_ms=None, completion_tokens=3, pipe=pipe
    )
    assert writes == []  # nothing sent until the caller executes
    pipe.execute()
    assert len(writes) == 1
    waits = metrics.metrics_redis().hgetall(metrics.QUEUE_WAIT_SECONDS.key)
    assert waits[f'["{model}"]|count'] == "1"
    assert not _stored(model)["arena_time_to_first_token_seconds"]  # no first token: no sample
