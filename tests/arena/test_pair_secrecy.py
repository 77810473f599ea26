"""What a visitor can read outside the battle API says nothing of which models answer a battle.

The demo serves /metrics to every address (ARENA_METRICS_NETWORKS); while a battle ran, the
capacity gauge and the per-model counters used to move for exactly its two models. Here an
anonymous visitor plays battles while the worker's records happen (a capacity slot held per
side, the queue wait, the tokens and latency of each answer) and reads /metrics and /readyz
before, during and after each one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from arena import metrics, services
from arena.heartbeat import worker_beat, worker_forget
from arena.messages import Finish
from arena.models import ArenaModel, Response
from arena.streams import redis_client
from workers.capacity import capacity_acquire, capacity_release

# Committed rows: the gauges and the readiness checks read the registry on a thread of their own.
pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "secrecy-test-token"
EVERYONE = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
# The labels a series may carry for a visitor: none names a model.
MODEL_FREE_LABELS = {"outcome", "validity", "le"}


def _secrets(models: list[ArenaModel]) -> list[str]:
    return [s for m in models for s in (m.name, m.display_name, m.queue) if s]


@pytest.fixture
def cast(cast: dict[str, ArenaModel]) -> dict[str, ArenaModel]:
    """The cast under names no worker serves: the suite's session worker consumes the usual
    cast's queues and would claim the answers this test plays itself."""
    renamed = {}
    for name, model in cast.items():
        model.name = f"secret-{name.removeprefix('tiny-')}"
        model.save(update_fields=["name"])
        renamed[model.name] = model
    return renamed


@pytest.fixture(autouse=True)
def _worker_beating() -> Iterator[None]:
    """A live worker on no model's queue: /readyz?workers=1 has the queues to complain of."""
    client = redis_client()
    client.flushdb()
    worker_beat(client, hostname="secrecy@test", queues=["celery"], pid=1)
    yield
    worker_forget(client, hostname="secrecy@test")


def _battle_played(visitor: Client, prompt: str, look: list[str]) -> None:
    """One battle as the worker would run it, with the visitor reading at every step."""
    created = visitor.post("/battles", {"prompt": prompt}, content_type="application/json")
    assert created.status_code == 201, created.content
    battle_id = created.json()["id"]
    responses = list(Response.objects.filter(turn__battle_id=battle_id).select_related("model"))
    client = redis_client()
    for response in responses:
        holder = f"secrecy-{response.id}"
        assert capacity_acquire(
            client, model_name=response.model.name, limit=4, holder=holder, hold_s=60
        )
        claimed = services.response_claim(response_id=response.id)
        assert claimed is not None
    look += _read(visitor)  # both slots held, both answers claimed: the battle is running
    for response in responses:
        claimed = Response.objects.select_related("model").get(id=response.id)
        metrics.response_completed(
            model=claimed.model.name, latency_ms=40, ttft_ms=5, completion_tokens=7 + response.id
        )
        services.response_complete(
            response=claimed, text="fine", finish=Finish(1, 7, "stop"), ttft_ms=5, latency_ms=40
        )
        capacity_release(client, model_name=response.model.name, holder=f"secrecy-{response.id}")
    look += _read(visitor)  # answered, not yet voted


def _read(visitor: Client) -> list[str]:
    replies = [visitor.get(path) for path in ("/metrics", "/readyz", "/readyz?workers=1")]
    assert replies[0].status_code == 200, replies[0].content
    return [reply.content.decode() for reply in replies]


@override_settings(ARENA_METRICS_NETWORKS=EVERYONE)
@pytest.mark.parametrize("token", ["", TOKEN])
def test_metrics_and_readyz_name_no_model_to_a_visitor_while_battles_run(
    cast: dict[str, ArenaModel], token: str
) -> None:
    with override_settings(ARENA_METRICS_TOKEN=token):
        visitor = Client()
        seen = _read(visitor)
        for k in range(4):
            _battle_played(visitor, f"Question {k}?", seen)

    everything = "\n".join(seen)
    assert "arena_battles_started_total 4.0" in everything  # the visitor did read the metrics
    for secret in _secrets(list(cast.values())):
        assert secret not in everything, f"{secret!r} reached a visitor"
    for text in seen[::3]:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                assert set(sample.labels) <= MODEL_FREE_LABELS, sample


@override_settings(ARENA_METRICS_NETWORKS=EVERYONE, ARENA_METRICS_TOKEN=TOKEN)
def test_the_token_still_reads_every_series_per_model(cast: dict[str, ArenaModel]) -> None:
    visitor = Client()
    seen: list[str] = []
    _battle_played(visitor, "Question?", seen)
    operator = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    text = operator.get("/metrics").content.decode()
    for name in ("secret-a", "secret-b"):
        assert f'arena_generated_tokens_total{{model="{name}"}}' in text
        assert f'arena_model_slots_in_use{{model="{name}"}} 0.0' in text
    ready = operator.get("/readyz?workers=1").json()
    assert "model.secret-a" in ready["checks"]["workers"]["error"]


LEADERBOARD = ["/api/leaderboard", "/api/leaderboard.csv", "/leaderboard"] + [
    f"{prefix}/{name}" for prefix in ("/api/models", "/leaderboard/models")
    for name in ("secret-a", "secret-b", "broken")
]  # fmt: skip


@override_settings(ARENA_METRICS_NETWORKS=EVERYONE)
def test_the_leaderboard_does_not_move_while_a_battle_runs(cast: dict[str, ArenaModel]) -> None:
    """The leaderboard names models by design: it must not change before a battle's vote."""
    visitor = Client()

    def leaderboard() -> list[bytes]:
        replies = [visitor.get(path) for path in LEADERBOARD]
        assert all(reply.status_code in (200, 404) for reply in replies)
        return [reply.content for reply in replies]

    before = leaderboard()
    during: list[str] = []
    for k in range(2):
        _battle_played(visitor, f"Question {k}?", during)
        assert leaderboard() == before
