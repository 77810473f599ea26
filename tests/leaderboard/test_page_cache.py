"""Leaderboard replies come from the shared Redis cache once built, keyed by snapshot and query,
answered first in the middleware chain (leaderboard/pages/middleware.py)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

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


# Headers that differ between any two replies whatever their origin.
_PER_REPLY = {"Date"}


def _headers(reply: Any) -> dict[str, str]:
    return {n: v for n, v in reply.items() if n not in _PER_REPLY}


def test_a_hit_is_answered_before_sessions_csrf_and_auth_run(db: None, client: Client) -> None:
    synthetic_snapshot(12, 3_000)
    for url in URLS:
        miss = client.get(url)
        hit = client.get(url)
        assert miss.status_code == hit.status_code == 200
        assert hit.content == miss.content
        assert not hasattr(hit.wsgi_request, "session") and not hasattr(hit.wsgi_request, "user")
        assert not hit.cookies and "Cookie" not in hit.get("Vary", "")


def test_a_hit_carries_the_same_headers_as_the_first_build_csp_included(
    db: None, client: Client, settings: Any
) -> None:
    settings.SECURE_HSTS_SECONDS = 3600
    synthetic_snapshot(12, 3_000)
    for url in URLS:
        miss, hit = client.get(url, secure=True), client.get(url, secure=True)
        assert _headers(hit) == _headers(miss)
        for name in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
                     "Referrer-Policy", "Content-Type", "ETag", "Content-Length",
                     "Strict-Transport-Security"):  # fmt: skip
            assert hit[name], name
        assert "Accept-Encoding" in hit["Vary"]
        # And the same as a reply the cache never saw (no snapshot stamp: not cached at all).
    # What the chain would redirect is not answered from the cache (http to https here).
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/api/leaderboard").status_code == 301
    plain = client.get("/leaderboard/topics", secure=True)
    for name in ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"):
        assert plain[name] == hit[name]


def test_a_matching_etag_gets_a_304_without_a_body(db: None, client: Client) -> None:
    synthetic_snapshot(12, 3_000)
    first = client.get("/api/leaderboard")
    again = client.get("/api/leaderboard", headers={"If-None-Match": first["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == first["ETag"] and again["Content-Security-Policy"]
    other = client.get("/api/leaderboard", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content


def test_gzip_is_served_when_accepted_and_is_the_same_body(db: None, client: Client) -> None:
    synthetic_snapshot(12, 3_000)
    for url in URLS:
        plain = client.get(url)
        zipped = client.get(url, headers={"Accept-Encoding": "br, gzip;q=0.8"})
        refused = client.get(url, headers={"Accept-Encoding": "gzip;q=0, identity"})
        assert "Content-Encoding" not in plain and "Content-Encoding" not in refused
        assert zipped["Content-Encoding"] == "gzip"
        assert gzip.decompress(zipped.content) == plain.content == refused.content
        assert int(zipped["Content-Length"]) == len(zipped.content) < len(plain.content)
        assert zipped["ETag"] != plain["ETag"]
        assert client.get(url, headers={"If-None-Match": zipped["ETag"]}).status_code == 304


def test_within_the_freshness_window_a_hit_costs_no_query_and_then_sees_the_new_snapshot(
    db: None, client: Client, settings: Any, django_assert_num_queries: Callable[..., Any]
) -> None:
    first = synthetic_snapshot(12, 3_000)
    settings.ARENA_LEADERBOARD_FRESH_S = 3600
    before = client.get("/api/leaderboard").json()
    with django_assert_num_queries(0):
        assert client.get("/api/leaderboard").json() == before
    first.pk = None
    first.n_battles = 4_000
    first.save()
    with django_assert_num_queries(0):  # the window is this process's promise: not yet seen
        assert client.get("/api/leaderboard").json() == before
    settings.ARENA_LEADERBOARD_FRESH_S = 0
    after = client.get("/api/leaderboard").json()
    assert after["meta"]["snapshot_id"] == first.id != before["meta"]["snapshot_id"]


def test_options_no_view_reads_share_the_entry_and_spellings_of_a_flag_too(
    db: None, client: Client, django_assert_num_queries: Callable[..., Any]
) -> None:
    synthetic_snapshot(12, 3_000)
    plain = client.get("/api/leaderboard")
    coding = client.get("/api/leaderboard?category=coding&style_control=1")
    assert coding.content != plain.content
    with django_assert_num_queries(1):  # the stamp only
        assert client.get("/api/leaderboard?utm_source=x").content == plain.content
    with django_assert_num_queries(1):
        again = client.get("/api/leaderboard?style_control=yes&category=coding&page=2")
        assert again.content == coding.content
    shown = client.get("/leaderboard?show_deprecated=1")
    assert shown.status_code == 200 and shown.content != client.get("/leaderboard").content


@pytest.mark.urls("tests.leaderboard.cache_urls")
def test_replies_that_read_the_session_or_a_csrf_token_are_never_cached(
    db: None, client: Client, visitors: Any
) -> None:
    from tests.leaderboard import cache_urls

    synthetic_snapshot(4, 300)
    cache_urls.calls.clear()
    staff = Client()
    staff.force_login(visitors.staff)
    assert staff.get("/probe/who").content == b"user=staff"
    assert client.get("/probe/who").content == b"user=anonymous"
    assert staff.get("/probe/who").content == b"user=staff"
    tokens = {Client().get("/probe/token").content for _ in range(2)}
    assert len(tokens) == 2  # each visitor got a token of their own
    assert cache_urls.calls == ["who"] * 3 + ["token"] * 2


@pytest.mark.urls("tests.leaderboard.cache_urls")
def test_errors_and_posts_are_never_cached(db: None, client: Client) -> None:
    from tests.leaderboard import cache_urls

    synthetic_snapshot(4, 300)
    cache_urls.calls.clear()
    assert client.get("/probe/flaky").status_code == 500
    fine = client.get("/probe/flaky")  # the error was not kept
    assert fine.status_code == 200 and fine.content == b"fine 2"
    assert client.post("/probe/flaky").content == b"posted 3"  # not the cached GET
    assert client.get("/probe/flaky").content == b"fine 2"  # nor did the POST replace it
    assert cache_urls.calls == ["GET", "GET", "POST"]


def test_the_async_chain_serves_hits_too(db: None) -> None:
    synthetic_snapshot(12, 3_000)
    client = AsyncClient()
    miss = async_to_sync(client.get)("/leaderboard", headers={"Accept-Encoding": "gzip"})
    hit = async_to_sync(client.get)("/leaderboard", headers={"Accept-Encoding": "gzip"})
    assert miss.status_code == hit.status_code == 200
    assert hit.content == miss.content and hit["Content-Encoding"] == "gzip"
    assert not hasattr(hit.asgi_request, "session")
    assert _headers(hit) == _headers(miss)


@pytest.mark.urls("tests.leaderboard.cache_urls")
def test_concurrent_misses_in_one_process_build_the_reply_once(db: None) -> None:
    from tests.leaderboard import cache_urls

    synthetic_snapshot(4, 300)
    cache_urls.calls.clear()
    client = AsyncClient()

    async def together() -> list[Any]:
        return await asyncio.gather(*(client.get("/probe/slow") for _ in range(8)))

    replies = async_to_sync(together)()
    assert [r.content for r in replies] == [b"built"] * 8
    assert cache_urls.calls == ["slow"]
