"""Models that keep failing leave the sampling pool and come back when a probe succeeds."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import override_settings

from arena import selectors, services
from arena.errors import Unavailable
from arena.models import ArenaModel, Response
from arena.streams import redis_client
from workers.generation import generation_run
from workers.health import model_probe
from workers.tasks import probe_unhealthy_models


def _battle():
    return services.battle_create(visitor_id="v", prompt="hi", rng=np.random.default_rng(0))


@override_settings(ARENA_UNHEALTHY_AFTER=2)
def test_repeated_failures_take_a_model_out_and_a_probe_brings_it_back(
    cast: dict, tiny_model_dir
) -> None:
    redis_client().flushdb()
    broken = cast["broken"]
    ArenaModel.objects.filter(id=broken.id).update(enabled=True)
    ArenaModel.objects.filter(name="tiny-b").update(enabled=False)
    for _ in range(2):
        battle = _battle()
        for response in Response.objects.filter(turn__battle=battle):
            generation_run(response_id=response.id)
    broken.refresh_from_db()
    assert (broken.healthy, broken.consecutive_failures) == (False, 2)
    assert "/nonexistent/model" in broken.health_error
    assert broken not in selectors.model_pool()
    with pytest.raises(Unavailable):
        _battle()  # only tiny-a is left

    assert probe_unhealthy_models() == []  # still broken
    ArenaModel.objects.filter(id=broken.id).update(options={"path": str(tiny_model_dir)})
    assert probe_unhealthy_models() == ["broken"]
    broken.refresh_from_db()
    assert (broken.healthy, broken.consecutive_failures, broken.health_error) == (True, 0, "")


def test_a_success_resets_the_failure_count(cast: dict) -> None:
    model = cast["tiny-a"]
    services.model_health_record(model_id=model.id, ok=False, error="flaky")
    services.model_health_record(model_id=model.id, ok=True)
    model.refresh_from_db()
    assert (model.healthy, model.consecutive_failures) == (True, 0)


def test_probe_of_an_http_model_reports_what_is_wrong(db: None) -> None:
    model = ArenaModel(
        name="remote", backend="openai", options={"base_url": "http://127.0.0.1:9/v1"}
    )
    problem = model_probe(model, timeout_s=1)
    assert problem is not None and "http://127.0.0.1:9/v1/models" in problem


def test_over_long_prompts_never_take_a_model_out_of_the_pool(cast: dict) -> None:
    """The finding: prompts over the models' context failed their generations and each failure
    counted against the model, so three of them emptied the pool. Now the service refuses them
    (4xx), and a conversation that reaches a model anyway fails as the visitor's, not the
    model's: no sequence of requests within the rate limits takes a model out."""
    from arena.errors import InvalidInput
    from arena.models import Battle, Side, Turn

    redis_client().flushdb()
    long_prompt = ("Explain the water cycle in detail. " * 300)[:7900]
    refused = 0
    for _ in range(15):  # under ARENA_BATTLES_PER_MINUTE (20)
        try:
            battle = services.battle_create(
                visitor_id="v", prompt=long_prompt, rng=np.random.default_rng(0)
            )
        except InvalidInput:
            refused += 1
            continue
        for response in Response.objects.filter(turn__battle=battle):
            generation_run(response_id=response.id)
    assert refused == 15
    # Past the check (a conversation that got there some other way): the model refuses it.
    a, b = cast["tiny-a"], cast["tiny-b"]
    for _ in range(5):
        battle = Battle.objects.create(model_a=a, model_b=b, visitor_id="v")
        turn = Turn.objects.create(battle=battle, index=0, prompt=long_prompt)
        for side in (Side.A, Side.B):
            response = Response.objects.create(turn=turn, side=side, model=battle.model_for(side))
            generation_run(response_id=response.id)
            response.refresh_from_db()
            assert response.status == "failed" and "context" in response.error
    for model in (a, b):
        model.refresh_from_db()
        assert (model.healthy, model.consecutive_failures) == (True, 0)
    assert {m.name for m in selectors.model_pool()} == {"tiny-a", "tiny-b"}
    _battle()  # the arena still draws a pair


@pytest.mark.parametrize(
    ("status", "body", "counts"),
    [
        # vLLM 0.32's words for a request over the model's context: the visitor's.
        (
            400,
            b'{"object": "error", "message": "This model\'s maximum context length is 2048 '
            b"tokens. However, you requested 4100 tokens (4076 in the messages, 24 in the "
            b'completion). Please reduce the length of the messages or completion.", '
            b'"type": "BadRequestError", "param": null, "code": 400}',
            False,
        ),
        (422, b'{"error": {"message": "temperature: Input should be a number"}}', False),
        (500, b'{"error": {"message": "engine crashed"}}', True),
    ],
)
def test_only_the_models_own_http_failures_count_toward_its_health(
    cast: dict, status: int, body: bytes, counts: bool
) -> None:
    from tests.workers.replay_server import ReplayServer, Reply

    server = ReplayServer()
    try:
        remote = ArenaModel.objects.create(
            name="remote",
            display_name="Remote",
            backend="openai",
            options={"base_url": server.base_url, "served_model_name": "m", "retries": 0},
        )
        redis_client().flushdb()
        battle = _battle()
        response = Response.objects.filter(turn__battle=battle).first()
        Response.objects.filter(id=response.id).update(model=remote)
        server.push(Reply(status, body))
        generation_run(response_id=response.id)
    finally:
        server.close()
    response.refresh_from_db()
    remote.refresh_from_db()
    assert response.status == "failed" and f"HTTP {status}" in response.error
    assert remote.consecutive_failures == (1 if counts else 0)
