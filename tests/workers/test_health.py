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
