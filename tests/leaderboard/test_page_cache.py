"""Leaderboard replies come from the shared Redis cache once built, keyed by snapshot and query."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.test import Client

from arena.models import ArenaModel
from leaderboard.pages import page_cache, selectors
from tests.leaderboard.test_views import synthetic_snapshot

URLS = ("/leaderboard", "/api/leaderboard", "/api/leaderboard.csv", "/leaderboard/models/model-003",
        "/api/models/model-003")  # fmt: skip


def test_a_second_request_reads_only_the_snapshot_stamp(
    db: None, client: Client, django_assert_num_queries: Callable[..., Any]
) -> None:
    synthetic_snapshot(12, 3_000)
    for url in URLS:
        first = client.get(url)
        assert first.status_code == 200
        selectors.payload_cache_clear()  # not even this process's memory of the snapshot helps
        page_cache.local_clear()  # so the reply comes from Redis, as another process gets it
        with django_assert_num_queries(1):
            second = client.get(url)
        with django_assert_num_queries(1):  # and now from this process's own copy
            assert client.get(url).content == first.content
        assert second.status_code == 200
        assert second.content == first.content
        assert second["Content-Type"] == first["Content-Type"]
    assert client.get("/api/leaderboard.csv")["Content-Disposition"].startswith("attachment")


def test_a_new_snapshot_changes_the_reply(db: None, client: Client) -> None:
    first = synthetic_snapshot(12, 3_000)
    before = client.get("/api/leaderboard").json()
    assert before["meta"]["snapshot_id"] == first.id
    first.pk = None
    first.n_battles = 4_000
    first.save()
    after = client.get("/api/leaderboard").json()
    assert after["meta"]["snapshot_id"] == first.id != before["meta"]["snapshot_id"]


def test_a_different_query_string_gets_its_own_entry_in_any_order(
    db: None, client: Client, django_assert_num_queries: Callable[..., Any]
) -> None:
    synthetic_snapshot(12, 3_000)
    plain = client.get("/api/leaderboard").json()
    coding = client.get("/api/leaderboard?category=coding&style_control=1").json()
    assert coding["meta"]["category"] == "coding" and plain["meta"]["category"] == "overall"
    assert coding != plain
    with django_assert_num_queries(1):  # the same query string in another order is a hit
        again = client.get("/api/leaderboard?style_control=1&category=coding").json()
    assert again == coding


def test_a_registry_edit_rebuilds_the_reply(db: None, client: Client) -> None:
    synthetic_snapshot(12, 3_000)
    assert "model-003" in client.get("/leaderboard").content.decode()
    ArenaModel.objects.filter(name="model-003").update(healthy=False, enabled=False)
    rows = {r["model"]: r for r in client.get("/api/leaderboard").json()["rows"]}
    assert client.get("/api/leaderboard").status_code == 200
    ArenaModel.objects.filter(name="model-005").update(display_name="Renamed Five")
    model = ArenaModel.objects.get(name="model-005")
    model.save()  # a save stamps updated_at
    assert "Renamed Five" in client.get("/leaderboard").content.decode()
    assert rows["model-003"]["enabled"] is False
