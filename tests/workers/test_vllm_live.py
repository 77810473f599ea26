"""The `openai` backend and a whole battle against a real `vllm serve`.

Skipped unless ARENA_VLLM_BASE_URL names a running server (and ARENA_VLLM_MODEL its served
name); `scripts/test_vllm.sh` starts one with a tiny model and runs this file.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pytest

from arena import services, streams
from arena.models import ArenaModel, Response, ResponseStatus
from workers.backends.base import BackendError, Delta, Finish, Message, SamplingParams
from workers.backends.openai import OpenAIBackend
from workers.generation import generation_run

BASE_URL = os.environ.get("ARENA_VLLM_BASE_URL", "")
MODEL = os.environ.get("ARENA_VLLM_MODEL", "")

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        not BASE_URL, reason="set ARENA_VLLM_BASE_URL to a vLLM server (scripts/test_vllm.sh does)"
    ),
]

CHAT: list[Message] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
]


def backend(**options: Any) -> OpenAIBackend:
    served = {"served_model_name": MODEL} if MODEL else {}
    return OpenAIBackend({"base_url": BASE_URL, "read_timeout": 60, **served, **options})


def run(b: OpenAIBackend, **params: Any) -> tuple[str, Finish]:
    items = list(b.stream(CHAT, SamplingParams(**params)))
    assert isinstance(items[-1], Finish)
    assert all(isinstance(i, Delta) for i in items[:-1])
    return "".join(i.text for i in items[:-1] if isinstance(i, Delta)), items[-1]


def test_a_real_server_streams_deltas_and_reports_usage() -> None:
    text, finish = run(backend(), max_tokens=16, temperature=0.7, seed=1)
    assert 0 < finish.completion_tokens <= 16
    assert finish.prompt_tokens > 0
    assert finish.finish_reason in ("stop", "length")
    assert finish.finish_reason == "stop" or finish.completion_tokens == 16
    assert isinstance(text, str)


def test_a_seeded_answer_is_the_same_twice() -> None:
    assert run(backend(), max_tokens=12, seed=5)[0] == run(backend(), max_tokens=12, seed=5)[0]


def test_vllm_extras_are_accepted() -> None:
    _, finish = run(backend(), max_tokens=8, extra={"top_k": 20, "min_p": 0.05})
    assert finish.completion_tokens <= 8


def test_the_servers_own_error_message_is_reported() -> None:
    with pytest.raises(BackendError, match=r"HTTP 400 .*max_tokens"):
        run(backend(), max_tokens=100_000)


def test_the_served_name_is_found_without_served_model_name() -> None:
    b = OpenAIBackend({"base_url": BASE_URL, "read_timeout": 60})
    _, finish = run(b, max_tokens=4)
    assert finish.completion_tokens <= 4


def test_concurrent_streams_all_finish() -> None:
    results: list[Finish] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(seed: int) -> None:
        try:
            _, finish = run(backend(), max_tokens=16, seed=seed)
            with lock:
                results.append(finish)
        except BaseException as exc:  # collected; a thread cannot fail the test itself
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(results) == 6


def test_a_battle_is_answered_by_vllm_end_to_end(db: None) -> None:
    served = {"served_model_name": MODEL} if MODEL else {}
    for name, seed in (("vllm-a", 1), ("vllm-b", 2)):
        ArenaModel.objects.create(
            name=name,
            display_name=name,
            backend="openai",
            options={
                "base_url": BASE_URL,
                **served,
                "sampling": {"max_tokens": 24, "temperature": 0.8, "seed": seed},
            },
        )
    streams.redis_client().flushdb()
    battle = services.battle_create(visitor_id="v", prompt="Hello?", rng=np.random.default_rng(0))
    responses = list(Response.objects.filter(turn__battle=battle))
    for response in responses:
        assert generation_run(response_id=response.id) is True
    for response in responses:
        response.refresh_from_db()
        assert response.status == ResponseStatus.DONE, response.error
        assert 0 < response.completion_tokens <= 24 and response.prompt_tokens > 0
        entries = streams.redis_client().xrange(streams.stream_key(battle.id, response.id))
        deltas = [fields["t"] for _, fields in entries if fields["k"] == "d"]
        assert "".join(deltas) == response.text
    # A follow-up turn: both models continue their own conversation.
    turn = services.battle_continue(battle=battle, visitor_id="v", prompt="And then?")
    for response in Response.objects.filter(turn=turn):
        assert generation_run(response_id=response.id) is True
        response.refresh_from_db()
        assert response.status == ResponseStatus.DONE, response.error
