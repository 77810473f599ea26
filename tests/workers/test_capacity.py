"""max_concurrency across workers: a Redis semaphore that the excess waits on."""

from __future__ import annotations

import threading
import time

import pytest

from arena.streams import redis_client
from workers.capacity import (
    AtCapacity,
    capacity_acquire,
    capacity_in_use,
    capacity_slot,
)


@pytest.fixture
def client():
    client = redis_client()
    client.flushdb()
    return client


def test_no_more_than_the_limit_hold_slots_at_once(client) -> None:
    limit, inside, peak = 3, [0], [0]
    lock = threading.Lock()

    def generation(k: int) -> None:
        with capacity_slot(
            client, model_name="m", limit=limit, holder=f"h{k}", hold_s=60, wait_s=30, poll_s=0.01
        ):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=generation, args=(k,)) for k in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == limit
    assert capacity_in_use(client, model_name="m") == 0


def test_the_excess_gives_up_after_its_wait(client) -> None:
    assert capacity_acquire(client, model_name="m", limit=1, holder="a", hold_s=60)
    with (
        pytest.raises(AtCapacity, match="stayed at its limit of 1"),
        capacity_slot(client, model_name="m", limit=1, holder="b", hold_s=60, wait_s=0.1),
    ):
        pass


def test_a_dead_holders_slot_lapses(client) -> None:
    assert capacity_acquire(client, model_name="m", limit=1, holder="dead", hold_s=0.05)
    assert not capacity_acquire(client, model_name="m", limit=1, holder="b", hold_s=60)
    time.sleep(0.1)
    assert capacity_acquire(client, model_name="m", limit=1, holder="b", hold_s=60)


def test_acquiring_twice_with_the_same_holder_takes_one_slot(client) -> None:
    assert capacity_acquire(client, model_name="m", limit=2, holder="a", hold_s=60)
    assert capacity_acquire(client, model_name="m", limit=2, holder="a", hold_s=60)
    assert capacity_in_use(client, model_name="m") == 1
