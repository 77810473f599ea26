"""Rate limits: a sliding window (no double burst at a window's edge), every limit of a request
checked in one round trip, and a refused request spends nothing: not one refused by another
limit, not one refused by its own, not a vote refused because the answers are not in yet."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from django.test import Client

from arena import services
from arena.errors import RateLimited
from arena.models import Response
from arena.streams import redis_client
from tests.conftest import answer_play


def _key(name: str) -> str:
    return f"test-{name}-{uuid.uuid4().hex[:8]}"


def _admitted(limits: list[tuple[str, int, int]]) -> bool:
    try:
        services.rate_limit(limits, what="tries")
    except RateLimited:
        return False
    return True


def test_no_window_of_the_limits_length_admits_more_than_the_limit() -> None:
    """Hits as fast as they come for 2.5 windows: a fixed window let `limit` through at the end
    of one window and `limit` more right after its edge (39 battles in 2.9 s at 20 a minute)."""
    limit, window_s = 5, 1
    limits = [(_key("burst"), limit, window_s)]
    admitted: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < 2.5 * window_s:
        if _admitted(limits):
            admitted.append(time.monotonic())
        time.sleep(0.002)
    # Our clock and Redis's differ by a round trip at most: a 10% margin on the window.
    span = 0.9 * window_s
    most = max(sum(1 for t in admitted if start <= t < start + span) for start in admitted)
    assert most <= limit, f"{most} hits admitted within {span} s; the limit is {limit}"
    assert len(admitted) >= 2 * limit  # the window does slide on: later hits are admitted


def test_a_request_refused_by_one_limit_spends_none_of_the_others() -> None:
    roomy, tight = _key("roomy"), _key("tight")
    both = [(roomy, 3, 60), (tight, 2, 60)]
    assert [_admitted(both) for _ in range(10)] == [True, True] + [False] * 8
    # The roomy limit counted the two admitted requests only: one more fits.
    assert [_admitted([(roomy, 3, 60)]) for _ in range(3)] == [True, False, False]


def test_refused_requests_do_not_push_the_window_on() -> None:
    limits = [(_key("own"), 2, 1)]
    assert [_admitted(limits) for _ in range(2)] == [True, True]
    for _ in range(30):  # hammering while refused
        assert not _admitted(limits)
    time.sleep(1.1)
    assert [_admitted(limits) for _ in range(3)] == [True, True, False]


def test_the_429_says_when_to_come_back() -> None:
    limits = [(_key("day"), 1, 86400), (_key("minute"), 1, 60)]
    services.rate_limit(limits, what="new battles")
    with pytest.raises(RateLimited) as refused:
        services.rate_limit(limits, what="new battles")
    # The limit that frees up last is the one to name: the day's.
    assert "at most 1 per 86400 s" in refused.value.message
    assert 86000 < refused.value.retry_after <= 86400


def test_all_the_limits_of_a_battle_take_one_redis_round_trip(cast: dict, settings: Any) -> None:
    redis_client().flushdb()
    client = redis_client()
    # The first call on a Redis server also loads the script (SCRIPT LOAD); count the rest.
    services.rate_limit([(_key("warm"), 9, 60)], what="tries")
    sent: list[tuple[object, ...]] = []
    original = client.execute_command

    def counting(*args: object, **options: object) -> object:
        sent.append(args)
        return original(*args, **options)

    client.execute_command = counting  # type: ignore[method-assign]
    try:
        services.rate_limit(
            [(_key("a"), 9, 60), (_key("b"), 9, 60), (_key("c"), 9, 86400)], what="tries"
        )
    finally:
        del client.execute_command
    assert [args[0] for args in sent] == ["EVALSHA"], sent


@pytest.fixture
def votes_of_two(settings: Any) -> None:
    redis_client().flushdb()
    settings.ARENA_VOTES_PER_MINUTE = 2


def test_votes_refused_as_too_early_spend_no_vote_budget(cast: dict, votes_of_two: None) -> None:
    visitor = Client()
    battles = [
        visitor.post("/battles", {"prompt": f"Q{k}"}, content_type="application/json").json()["id"]
        for k in range(2)
    ]
    for _ in range(5):  # impatient clicks while the answers are still coming
        early = visitor.post(
            f"/battles/{battles[0]}/vote", {"choice": "a"}, content_type="application/json"
        )
        assert early.status_code == 409, early.content
    for response in Response.objects.filter(turn__battle_id__in=battles):
        answer_play(response)
    for battle_id in battles:
        vote = visitor.post(
            f"/battles/{battle_id}/vote", {"choice": "tie"}, content_type="application/json"
        )
        assert vote.status_code == 201, vote.content


def test_the_vote_limit_still_holds(cast: dict, votes_of_two: None) -> None:
    visitor = Client()
    statuses = []
    for k in range(3):
        battle_id = visitor.post(
            "/battles", {"prompt": f"Q{k}"}, content_type="application/json"
        ).json()["id"]
        for response in Response.objects.filter(turn__battle_id=battle_id):
            answer_play(response)
        vote = visitor.post(
            f"/battles/{battle_id}/vote", {"choice": "a"}, content_type="application/json"
        )
        statuses.append(vote.status_code)
    assert statuses == [201, 201, 429]
