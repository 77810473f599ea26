"""Operations: liveness and readiness probes, worker health, Prometheus metrics, JSON logs.

The integration tests run their own worker and uvicorn process (JSON logs, a metrics token) on
models of their own (`ops-a`, `ops-b`), so that nothing else in the run consumes their queues or
writes to their logs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from arena import metrics
from arena.embedded_redis import free_port
from arena.heartbeat import worker_beat, worker_forget
from arena.logs import JsonFormatter
from arena.models import ArenaModel, Response, ResponseStatus
from arena.streams import redis_client
from tests.conftest import ROOT, stop, subprocess_env, web_start, worker_start
from tests.visitor import Visitor
from workers import app as celery_app

TOKEN = "test-metrics-token"
OPS_QUEUES = ["model.ops-a", "model.ops-b"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


# --- Probes ---------------------------------------------------------------------------------


def closed_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_healthz_answers_without_any_dependency() -> None:
    with override_settings(REDIS_URL=closed_redis_url()):
        reply = Client().get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


def operator() -> Client:
    """A client that carries the metrics token (set it with `override_settings`)."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


@override_settings(ARENA_METRICS_TOKEN=TOKEN)
def test_readyz_is_ok_when_the_database_and_redis_answer(db: None) -> None:
    reply = operator().get("/readyz")
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert "workers" not in body["checks"]


def test_readyz_is_503_and_names_redis_when_redis_is_unreachable(db: None) -> None:
    with override_settings(REDIS_URL=closed_redis_url(), ARENA_METRICS_TOKEN=TOKEN):
        reply = operator().get("/readyz")
    assert reply.status_code == 503
    body = reply.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["redis"]
    assert body["checks"]["database"]["ok"]
    assert "Connect" in body["checks"]["redis"]["error"]


@pytest.mark.parametrize("token", ["", TOKEN])
def test_readyz_tells_an_anonymous_caller_only_ok_or_not(db: None, token: str) -> None:
    """The details name worker hosts and model queues: only the token's holder reads them."""
    with override_settings(ARENA_METRICS_TOKEN=token):
        assert Client().get("/readyz?workers=1").json() in (
            {"status": "ok"},
            {"status": "unavailable"},
        )
        wrong = Client(HTTP_AUTHORIZATION="Bearer nope").get("/readyz")
        assert wrong.json() == {"status": "ok"}
        with override_settings(REDIS_URL=closed_redis_url()):
            reply = Client().get("/readyz")
    assert (reply.status_code, reply.json()) == (503, {"status": "unavailable"})


@pytest.mark.django_db(transaction=True)
@override_settings(ARENA_METRICS_TOKEN=TOKEN)
def test_readyz_with_workers_names_the_queue_that_no_live_worker_consumes() -> None:
    ArenaModel.objects.create(name="lonely", display_name="Lonely", backend="local")
    client = redis_client()
    host = f"probe-{uuid.uuid4().hex[:8]}@test"
    try:
        worker_beat(client, hostname=host, queues=["celery"], pid=1)
        reply = operator().get("/readyz?workers=1")
        assert reply.status_code == 503
        check = reply.json()["checks"]["workers"]
        assert host in check["alive"]
        assert "model.lonely" in check["error"]

        worker_beat(client, hostname=host, queues=["celery", "model.lonely"], pid=1)
        reply = operator().get("/readyz?workers=1")
        assert reply.status_code == 200, reply.content
        # A worker whose beats stopped longer ago than three intervals no longer counts.
        worker_beat(client, hostname=host, queues=["model.lonely"], pid=1, now=1.0)
        alive = operator().get("/readyz?workers=1").json()["checks"]["workers"]["alive"]
        assert host not in alive
    finally:
        worker_forget(client, hostname=host)


# --- Metrics in Redis -----------------------------------------------------------------------


def test_a_histogram_is_cumulative_across_recorders_and_keeps_sum_and_count() -> None:
    name = f"arena_test_seconds_{uuid.uuid4().hex[:8]}"
    histogram = metrics.RedisHistogram(name, "test", ["model"], buckets=(0.1, 1, 10))
    # Two "processes": two instances writing to the same Redis hash.
    other = metrics.RedisHistogram(name, "test", ["model"], buckets=(0.1, 1, 10))
    try:
        for seconds in (0.05, 0.5, 0.7):
            histogram.observe(seconds, model="m")
        other.observe(50, model="m")
        found = samples(
            _exposition(histogram.collect(metrics.metrics_redis().hgetall(histogram.key)))
        )
    finally:
        metrics.metrics_redis().delete(histogram.key)
    buckets = {le: value(found, f"{name}_bucket", model="m", le=le) for le in ("0.1", "1.0")}
    assert buckets == {"0.1": 1, "1.0": 3}
    assert value(found, f"{name}_bucket", model="m", le="+Inf") == 4
    assert value(found, f"{name}_count", model="m") == 4
    assert value(found, f"{name}_sum", model="m") == pytest.approx(51.25)


def _exposition(family: object) -> str:
    from prometheus_client import generate_latest

    class One:
        def collect(self) -> list[object]:
            return [family]

    return generate_latest(One()).decode()  # type: ignore[arg-type]


def test_queue_depth_gauge_counts_the_generations_waiting_in_a_models_queue(db: None) -> None:
    ArenaModel.objects.create(name="ops-idle", display_name="Idle", backend="local")
    client = redis_client()
    try:
        # Nobody consumes model.ops-idle: the tasks wait in its Redis list.
        for response_id in (1, 2):
            celery_app.send_task(
                "workers.tasks.generate", args=[response_id], queue="model.ops-idle"
            )
        found = samples(metrics.metrics_exposition().decode())
        assert value(found, "arena_queue_depth", model="ops-idle") == 2
        assert value(found, "arena_queue_workers", model="ops-idle") == 0
        assert value(found, "arena_model_healthy", model="ops-idle") == 1
    finally:
        client.delete("model.ops-idle")
    found = samples(metrics.metrics_exposition().decode())
    assert value(found, "arena_queue_depth", model="ops-idle") == 0


def test_metrics_are_open_to_the_allowed_networks_only(db: None) -> None:
    loopback = [ipaddress.ip_network("127.0.0.0/8")]
    elsewhere = [ipaddress.ip_network("10.0.0.0/8")]
    with override_settings(ARENA_METRICS_TOKEN="", ARENA_METRICS_NETWORKS=loopback):
        reply = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
        assert reply.status_code == 200
        assert reply["Content-Type"].startswith("text/plain; version=")
        assert b"arena_battles_started_total" in reply.content
    with override_settings(ARENA_METRICS_TOKEN="", ARENA_METRICS_NETWORKS=elsewhere):
        assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403


# --- Logs -----------------------------------------------------------------------------------


def test_json_log_lines_carry_the_extra_fields_and_the_exception() -> None:
    record = logging.LogRecord(
        "arena.services", logging.WARNING, __file__, 1, "response %s failed", (7,), None
    )
    record.__dict__.update({"event": "response_failed", "response_id": 7, "battle_id": "b1"})
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "response 7 failed"
    assert (line["level"], line["logger"], line["event"]) == (
        "WARNING",
        "arena.services",
        "response_failed",
    )
    assert (line["response_id"], line["battle_id"]) == (7, "b1")
    assert "ValueError: boom" in line["exc"]


# --- The real stack: a worker and uvicorn with JSON logs and a metrics token ----------------


@pytest.fixture(scope="module")
def ops_stack(django_db_setup: None, tiny_model_dir: Path) -> Iterator[dict[str, str]]:
    env = subprocess_env(
        ARENA_LOG_FORMAT="json", ARENA_METRICS_TOKEN=TOKEN, ARENA_METRICS_NETWORKS=""
    )
    for name in ("ops-worker", "ops-web"):
        (ROOT / "var" / f"{name}.log").unlink(missing_ok=True)
    worker = worker_start(env, name="ops-worker", queues=OPS_QUEUES)
    try:
        web, url = web_start(env, name="ops-web")
    except BaseException:
        stop(worker)
        raise
    hostname = f"ops-worker-{os.getpid()}@localhost"
    yield {"url": url, "worker": hostname}
    stop(web)
    stop(worker)


@pytest.fixture
def ops_models(tiny_model_dir: Path) -> dict[str, ArenaModel]:
    sampling = {"max_tokens": 16, "temperature": 1.0, "seed": 3}
    return {
        name: ArenaModel.objects.create(
            name=name,
            display_name=name.upper(),
            backend="local",
            organization="Ops Org",
            options={"path": str(tiny_model_dir), "sampling": sampling},
        )
        for name in ("ops-a", "ops-b")
    }


def scrape(url: str) -> Samples:
    reply = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert reply.status_code == 200, reply.text
    return samples(reply.text)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_battle_shows_in_the_metrics_and_in_json_logs_without_the_prompt(
    ops_stack: dict[str, str], ops_models: dict[str, ArenaModel]
) -> None:
    url = ops_stack["url"]
    before = scrape(url)
    secret = f"zebra-{uuid.uuid4().hex}"
    visitor = Visitor(url)
    created = visitor.post("/battles", {"prompt": f"Tell me about {secret} rivers."})
    assert created.status_code == 201, created.text
    battle_id = created.json()["id"]
    assert visitor.stream(battle_id)[-1].event == "end"
    voted = visitor.post(f"/battles/{battle_id}/vote", {"choice": "a"})
    assert voted.status_code == 201, voted.text
    validity = "valid" if voted.json()["counted"] else "invalid"

    after = scrape(url)
    delta = {key: after[key] - before.get(key, 0.0) for key in after}
    assert value(delta, "arena_battles_started_total") == 1
    assert value(delta, "arena_votes_total", outcome="model_a", validity=validity) == 1
    for model in ("ops-a", "ops-b"):
        assert value(delta, "arena_generation_seconds_count", model=model) == 1
        assert value(delta, "arena_generation_seconds_bucket", model=model, le="+Inf") == 1
        assert value(delta, "arena_generation_seconds_sum", model=model) > 0
        assert value(delta, "arena_time_to_first_token_seconds_count", model=model) == 1
        assert value(delta, "arena_queue_wait_seconds_count", model=model) == 1
        assert value(delta, "arena_generated_tokens_total", model=model) > 0
        assert value(after, "arena_queue_workers", model=model) == 1
        assert value(after, "arena_model_max_concurrency", model=model) == 4
    assert value(after, "arena_workers_alive") >= 1

    responses = {r.model.name: r.id for r in Response.objects.select_related("model")}
    assert all(r.status == ResponseStatus.DONE for r in Response.objects.all())
    web_events = _json_events(ROOT / "var" / "ops-web.log", secret)
    worker_events = _json_events(ROOT / "var" / "ops-worker.log", secret)
    created_event = next(e for e in web_events if e.get("event") == "battle_created")
    assert created_event["battle_id"] == battle_id
    assert {created_event["model_a"], created_event["model_b"]} == {"ops-a", "ops-b"}
    vote_event = next(e for e in web_events if e.get("event") == "vote_recorded")
    assert (vote_event["battle_id"], vote_event["outcome"]) == (battle_id, "model_a")
    for model, response_id in responses.items():
        done = [
            e
            for e in worker_events
            if e.get("event") == "response_completed" and e.get("response_id") == response_id
        ]
        assert len(done) == 1, worker_events
        assert done[0]["battle_id"] == battle_id and done[0]["model"] == model
        assert done[0]["completion_tokens"] > 0 and done[0]["latency_ms"] >= done[0]["ttft_ms"]
        assert any(
            e.get("event") == "response_claimed" and e.get("response_id") == response_id
            for e in worker_events
        )
    # Celery's own records go through the same formatter.
    assert any(e["logger"].startswith("celery.") for e in worker_events)


def _json_events(path: Path, secret: str) -> list[dict]:
    text = path.read_text()
    assert secret not in text, f"the prompt reached {path.name}"
    # uvicorn's own start-up lines and Celery's banner are plain text; every record of ours
    # is one JSON object per line.
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.integration
def test_metrics_need_the_bearer_token(ops_stack: dict[str, str]) -> None:
    url = ops_stack["url"]
    anonymous = httpx.get(f"{url}/metrics", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200  # probes stay open


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_worker_health_passes_for_a_live_worker_and_fails_for_an_absent_one(
    ops_stack: dict[str, str], ops_models: dict[str, ArenaModel], capsys: pytest.CaptureFixture
) -> None:
    call_command("worker_health", hostname=ops_stack["worker"], queue=["model.ops-a"])
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {ops_stack['worker']}") and "ping answered" in out

    with pytest.raises(SystemExit) as exit_:
        call_command("worker_health", hostname="nobody@nowhere")
    assert exit_.value.code == 1
    assert capsys.readouterr().out.startswith("FAIL: no heartbeat from nobody@nowhere")

    with pytest.raises(SystemExit):
        call_command("worker_health", queue=["model.nobody-serves-this"], no_ping=True)
    assert "consumes model.nobody-serves-this" in capsys.readouterr().out

    ready = httpx.get(
        f"{ops_stack['url']}/readyz?workers=1",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert ready.status_code == 200, ready.text
    assert ops_stack["worker"] in ready.json()["checks"]["workers"]["alive"]


@pytest.mark.integration
def test_the_command_line_exits_1_with_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "worker_health", "--hostname", "ghost@nowhere"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["FAIL: no heartbeat from ghost@nowhere in the last 30 s"]
