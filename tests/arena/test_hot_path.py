"""The battle start's hot path: the reply is built from what was written, both answers' tasks
reach their models' queues in Redis, and the reply matches what a later read of the battle says."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from arena.models import ArenaModel, Response
from arena.streams import redis_client

NAMES = ("hot-path-a", "hot-path-b")  # queues no test worker consumes


@pytest.fixture
def pair(db: None) -> list[ArenaModel]:
    redis_client().flushdb()  # the rate limits and the queues start empty
    return [
        ArenaModel.objects.create(
            name=name,
            display_name=name,
            backend="openai",
            options={"base_url": "http://127.0.0.1:9/v1", "served_model_name": "m"},
        )
        for name in NAMES
    ]


def _visitor() -> Client:
    client = Client()
    client.get("/")
    return client


def test_the_reply_is_what_a_read_of_the_new_battle_says_and_nothing_is_read_back(
    pair: list[ArenaModel], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    visitor = _visitor()
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        created = visitor.post("/battles", {"prompt": "  Name a river.  "}, "application/json")
    assert created.status_code == 201, created.content
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    # The session and the model pool are read; the battle just written is not read back.
    assert not [sql for sql in reads if "arena_vote" in sql or "arena_turn" in sql], reads
    assert created.json() == visitor.get(f"/battles/{created.json()['id']}").json()
    assert created.json()["turns"][0]["prompt"] == "Name a river."


def test_both_answers_tasks_reach_their_models_queues(
    pair: list[ArenaModel], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    visitor = _visitor()
    with django_capture_on_commit_callbacks(execute=True):
        battle_id = visitor.post("/battles", {"prompt": "Hi"}, "application/json").json()["id"]
    expected = {r.model.queue: r.id for r in Response.objects.filter(turn__battle_id=battle_id)}
    assert len(expected) == 2
    for queue, response_id in expected.items():
        messages = redis_client().lrange(queue, 0, -1)
        assert len(messages) == 1, queue
        message = json.loads(messages[0])
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        assert message["headers"]["task"] == "workers.tasks.generate"
        assert args == [response_id]
