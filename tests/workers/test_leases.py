"""Leases on answers and capacity slots: a dead worker's lapse and go to the live ones."""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.test import override_settings

from arena import services, streams
from arena.models import Response, ResponseStatus
from workers import leases
from workers.capacity import capacity_in_use, capacity_slot
from workers.generation import generation_run


@pytest.fixture
def battle(cast: dict):
    streams.redis_client().flushdb()
    return services.battle_create(
        visitor_id="v", prompt="Say something.", rng=np.random.default_rng(3)
    )


def _lease_as(owner: str, response_id: int, *, lapses_in: float) -> None:
    """Another worker's lease, as its keeper would have written it."""
    client = streams.redis_client()
    client.zadd(leases.RESPONSES_KEY, {str(response_id): time.time() + lapses_in})
    client.hset(leases.OWNERS_KEY, str(response_id), owner)


def test_a_task_for_an_answer_a_live_worker_holds_does_nothing(battle) -> None:
    response = Response.objects.filter(turn__battle=battle).first()
    _lease_as("other@host/1", response.id, lapses_in=60)
    assert generation_run(response_id=response.id) is False
    response.refresh_from_db()
    assert response.status == ResponseStatus.QUEUED


def test_an_answer_of_a_dead_worker_that_sent_nothing_is_queued_again_and_answered(battle) -> None:
    response = Response.objects.filter(turn__battle=battle).first()
    # The dead worker had claimed it (streaming) and sent no token yet.
    services.response_claim(response_id=response.id)
    _lease_as("dead@host/1", response.id, lapses_in=-1)
    client = streams.redis_client()
    queue = f"model.{response.model.name}"
    before = client.llen(queue)
    assert leases.leases_reap(client) == [(response.id, "requeued")]
    response.refresh_from_db()
    assert (response.status, response.started_at) == (ResponseStatus.QUEUED, None)
    assert client.llen(queue) == before + 1  # a task for a live worker
    assert generation_run(response_id=response.id) is True
    response.refresh_from_db()
    assert response.status == ResponseStatus.DONE


def test_an_answer_of_a_dead_worker_that_had_begun_fails_clearly(battle) -> None:
    response = Response.objects.filter(turn__battle=battle).first()
    services.response_claim(response_id=response.id)
    writer = streams.StreamWriter(streams.redis_client(), battle.id, response.id)
    writer.delta("Once upon")
    writer.flush()
    _lease_as("dead@host/1", response.id, lapses_in=-1)
    assert leases.leases_reap(streams.redis_client()) == [(response.id, "failed")]
    response.refresh_from_db()
    assert response.status == ResponseStatus.FAILED
    assert "dead@host/1" in response.error and "stopped after 9 characters" in response.error
    assert response.text == "Once upon"
    last = streams.redis_client().xrange(streams.stream_key(battle.id, response.id))[-1][1]
    assert last["k"] == streams.FAIL and "start a new round" in last["t"]


def test_a_live_lease_is_not_reaped(battle) -> None:
    response = Response.objects.filter(turn__battle=battle).first()
    _lease_as("alive@host/1", response.id, lapses_in=60)
    assert leases.leases_reap(streams.redis_client()) == []


@override_settings(ARENA_WORKER_LEASE_SECONDS=2)
def test_the_keeper_renews_a_held_slot_past_its_lease(cast: dict) -> None:
    client = streams.redis_client()
    client.flushdb()
    with capacity_slot(client, model_name="m", limit=1, holder="h", hold_s=2, wait_s=1):
        time.sleep(3)  # longer than the lease: only the renewals keep it
        assert capacity_in_use(client, model_name="m") == 1
    assert capacity_in_use(client, model_name="m") == 0
