"""The battle services, called directly (the worker's part is played by the response services)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.test import override_settings
from django.utils import timezone

from arena import services
from arena.errors import Conflict, InvalidInput, RateLimited, Unavailable
from arena.messages import Finish
from arena.models import ArenaModel, Battle, Outcome, Response, ResponseStatus, Turn, Vote
from arena.streams import redis_client
from tests.conftest import answer_play as _answer

VISITOR = "visitor-1"
OTHER = "visitor-2"


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    redis_client().flushdb()


def _answer_all(battle: Battle) -> None:
    for response in Response.objects.filter(
        turn__battle=battle, superseded=False, status=ResponseStatus.QUEUED
    ):
        _answer(response, f"**answer** {response.side}\n- item")


def _new_battle(prompt: str = "Tell me about rivers.") -> Battle:
    return services.battle_create(visitor_id=VISITOR, prompt=prompt, rng=np.random.default_rng(0))


def test_battle_create_draws_two_different_models_and_queues_both_sides(cast: dict) -> None:
    battle = _new_battle()
    assert battle.model_a != battle.model_b
    assert {battle.model_a.name, battle.model_b.name} == {"tiny-a", "tiny-b"}  # broken is disabled
    responses = Response.objects.filter(turn__battle=battle)
    assert sorted(r.side for r in responses) == ["a", "b"]
    assert all(r.status == ResponseStatus.QUEUED for r in responses)
    assert len(battle.id) >= 20  # 128 random bits, url-safe


@pytest.mark.parametrize("prompt", [None, "", "   ", 42])
def test_missing_prompt_is_invalid(cast: dict, prompt: object) -> None:
    with pytest.raises(InvalidInput, match="Type a prompt"):
        services.battle_create(visitor_id=VISITOR, prompt=prompt)


@override_settings(ARENA_MAX_PROMPT_CHARS=10)
def test_oversized_prompt_is_invalid_and_says_the_limit(cast: dict) -> None:
    with pytest.raises(InvalidInput, match="too long: 11 characters, at most 10"):
        services.battle_create(visitor_id=VISITOR, prompt="x" * 11)
    assert not Battle.objects.exists()


def test_fewer_than_two_enabled_models_is_unavailable(cast: dict) -> None:
    ArenaModel.objects.filter(name="tiny-b").update(enabled=False)
    with pytest.raises(Unavailable, match="at least two enabled models"):
        _new_battle()


@override_settings(ARENA_BATTLES_PER_MINUTE=2)
def test_battle_rate_limit_gives_retry_after(cast: dict) -> None:
    _new_battle()
    _new_battle()
    with pytest.raises(RateLimited) as error:
        _new_battle()
    assert 1 <= error.value.retry_after <= 60
    # Another visitor has a budget of their own.
    services.battle_create(visitor_id=OTHER, prompt="hi")


def test_vote_before_answers_are_done_is_refused(cast: dict) -> None:
    battle = _new_battle()
    with pytest.raises(Conflict, match="Wait until both answers are complete"):
        services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")


def test_vote_records_outcome_conversations_and_facts(cast: dict) -> None:
    battle = _new_battle("What is the capital of France?")
    _answer_all(battle)
    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="tie")
    assert vote.outcome == Outcome.TIE
    assert (vote.model_a, vote.model_b) == (battle.model_a, battle.model_b)
    assert vote.conversation_a == [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "**answer** a\n- item"},
    ]
    assert vote.turns == 1 and vote.language == "en" and vote.has_code is False
    assert vote.style_a == {"headers": 0, "lists": 1, "bold": 1}
    assert vote.tokens_b == 4
    assert vote.is_valid


def test_vote_twice_is_a_conflict(cast: dict) -> None:
    battle = _new_battle()
    _answer_all(battle)
    services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")
    with pytest.raises(Conflict, match="the vote is in"):
        services.vote_record(battle=battle, visitor_id=VISITOR, choice="b")
    assert Vote.objects.get(battle=battle).outcome == Outcome.MODEL_A


@pytest.mark.parametrize("choice", ["A", "left", "", None, 1])
def test_bad_choice_is_invalid(cast: dict, choice: object) -> None:
    battle = _new_battle()
    _answer_all(battle)
    with pytest.raises(InvalidInput, match="Vote with one of: a, b, tie, both_bad"):
        services.vote_record(battle=battle, visitor_id=VISITOR, choice=choice)


def test_vote_from_another_session_is_refused(cast: dict) -> None:
    battle = _new_battle()
    _answer_all(battle)
    with pytest.raises(Conflict, match="another session"):
        services.vote_record(battle=battle, visitor_id=OTHER, choice="a")


def test_failed_battle_cannot_be_voted_on(cast: dict) -> None:
    battle = _new_battle()
    a, b = Response.objects.filter(turn__battle=battle).order_by("side")
    _answer(a)
    assert services.response_fail(response_id=b.id, error="server said no")
    with pytest.raises(Conflict, match="Model B failed"):
        services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")


def test_continue_adds_a_turn_and_each_side_keeps_its_own_history(cast: dict) -> None:
    battle = _new_battle("first")
    with pytest.raises(Conflict, match="Wait until both answers"):
        services.battle_continue(battle=battle, visitor_id=VISITOR, prompt="second")
    _answer_all(battle)
    turn = services.battle_continue(battle=battle, visitor_id=VISITOR, prompt="second")
    assert turn.index == 1
    _answer_all(battle)
    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="b")
    assert [m["content"] for m in vote.conversation_b] == [
        "first",
        "**answer** b\n- item",
        "second",
        "**answer** b\n- item",
    ]
    assert vote.turns == 2


@override_settings(ARENA_MAX_TURNS=2)
def test_turn_limit_is_enforced_with_a_message(cast: dict) -> None:
    battle = _new_battle()
    _answer_all(battle)
    services.battle_continue(battle=battle, visitor_id=VISITOR, prompt="two")
    _answer_all(battle)
    with pytest.raises(InvalidInput, match="limit of 2 turns"):
        services.battle_continue(battle=battle, visitor_id=VISITOR, prompt="three")


def test_regenerate_supersedes_the_last_answers(cast: dict) -> None:
    battle = _new_battle()
    with pytest.raises(Conflict, match="Wait until both answers"):
        services.battle_regenerate(battle=battle, visitor_id=VISITOR)
    _answer_all(battle)
    services.battle_regenerate(battle=battle, visitor_id=VISITOR)
    responses = Response.objects.filter(turn__battle=battle)
    assert responses.filter(superseded=True).count() == 2
    fresh = responses.filter(superseded=False)
    assert sorted(r.status for r in fresh) == ["queued", "queued"]
    assert Turn.objects.filter(battle=battle).count() == 1


def test_claim_happens_exactly_once(cast: dict) -> None:
    battle = _new_battle()
    response = Response.objects.filter(turn__battle=battle).first()
    assert services.response_claim(response_id=response.id) is not None
    assert services.response_claim(response_id=response.id) is None


def test_reaper_fails_generations_that_outlived_the_timeout(cast: dict) -> None:
    battle = _new_battle()
    later = timezone.now() + dt.timedelta(hours=1)
    reaped = services.responses_reap_stuck(now=later)
    assert len(reaped) == 2
    statuses = set(Response.objects.filter(turn__battle=battle).values_list("status", flat=True))
    assert statuses == {ResponseStatus.FAILED}
    assert services.responses_reap_stuck(now=later) == []


def test_a_vote_on_a_leaking_answer_is_kept_but_does_not_count(cast: dict) -> None:
    battle = _new_battle("Say hello.")
    a, b = Response.objects.filter(turn__battle=battle).order_by("side")
    _answer(a, "Hello!")
    _answer(b, f"Hello, I am {battle.model_b.display_name}.")
    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="b")
    assert (vote.is_valid, vote.invalid_reason) == (False, "a model revealed its identity")


def test_a_vote_on_a_prompt_asking_for_identity_does_not_count(cast: dict) -> None:
    battle = _new_battle("Who made you?")
    _answer_all(battle)
    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")
    assert (vote.is_valid, vote.invalid_reason) == (
        False,
        "the prompt asks the models who they are",
    )


def test_a_vote_on_a_cut_off_answer_does_not_count(cast: dict) -> None:
    battle = _new_battle()
    a, b = Response.objects.filter(turn__battle=battle).order_by("side")
    _answer(a)
    claimed = services.response_claim(response_id=b.id)
    services.response_complete(
        response=claimed,
        text="and then",
        finish=Finish(prompt_tokens=5, completion_tokens=24, finish_reason="length"),
        ttft_ms=3,
        latency_ms=10,
    )
    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")
    assert (vote.is_valid, vote.invalid_reason) == (
        False,
        "an answer was cut off at the length limit",
    )


@override_settings(ARENA_BATTLES_PER_IP_MINUTE=2)
def test_many_sessions_behind_one_address_share_its_limit(cast: dict) -> None:
    for visitor in ("v1", "v2"):
        services.battle_create(visitor_id=visitor, prompt="hi", ip_hash="same-ip")
    with pytest.raises(RateLimited, match="new battles"):
        services.battle_create(visitor_id="v3", prompt="hi", ip_hash="same-ip")


@override_settings(ARENA_VOTES_PER_MINUTE=1)
def test_votes_are_rate_limited_per_visitor(cast: dict) -> None:
    first, second = _new_battle(), _new_battle()
    _answer_all(first)
    _answer_all(second)
    services.vote_record(battle=first, visitor_id=VISITOR, choice="a")
    with pytest.raises(RateLimited, match="Too many votes"):
        services.vote_record(battle=second, visitor_id=VISITOR, choice="a")


# 7,900 characters: under ARENA_MAX_PROMPT_CHARS, about 4,000 tokens for the tiny models, whose
# context is 2,048 (the finding: three such prompts took every demo model out of the pool).
LONG_PROMPT = ("Explain the water cycle in detail. " * 300)[:7900]


def test_a_prompt_too_long_for_a_model_is_refused_with_the_limit(cast: dict) -> None:
    with pytest.raises(InvalidInput) as refused:
        _new_battle(LONG_PROMPT)
    message = str(refused.value)
    assert "too long for one of the models" in message
    # The tiny models' context (2,048) less the room for their answer (max_tokens 24).
    assert "the limit is 2024" in message and "Start a new round" in message
    assert not Battle.objects.exists()


def test_a_follow_up_that_outgrows_the_context_is_refused(cast: dict) -> None:
    battle = _new_battle()
    _answer_all(battle)
    half = LONG_PROMPT[:3000]  # fits alone (about 1,500 tokens), not on top of the first turn
    services.battle_continue(battle=battle, visitor_id=VISITOR, prompt="A short follow-up.")
    _answer_all(battle)
    services.battle_continue(battle=battle, visitor_id=VISITOR, prompt=half)
    _answer_all(battle)
    with pytest.raises(InvalidInput, match="too long for one of the models"):
        services.battle_continue(battle=battle, visitor_id=VISITOR, prompt=half)
    assert battle.turns.count() == 3


def test_a_declared_context_bounds_an_http_model_by_an_estimate(cast: dict) -> None:
    from arena import context

    model = ArenaModel(
        name="remote",
        backend="openai",
        options={
            "base_url": "http://x/v1",
            "context_tokens": 1000,
            "sampling": {"max_tokens": 200},
        },
    )
    short = [{"role": "user", "content": "Hello there."}]
    assert context.context_overflow(model, short) is None
    # Bytes / 3 tokens, on the high side: 3,000 ASCII characters are about 1,000 tokens.
    tokens, limit = context.context_overflow(model, [{"role": "user", "content": "a" * 3000}])
    assert (tokens, limit) == (1000 + 16, 800)
    unknown = ArenaModel(name="remote2", backend="openai", options={"base_url": "http://x/v1"})
    assert context.context_overflow(unknown, [{"role": "user", "content": "a" * 99999}]) is None


def test_the_registry_declares_a_context_and_refuses_a_bad_one(tmp_path) -> None:
    from arena.registry import RegistryError, registry_parse

    entry = """
    [[models]]
    name = "remote"
    display_name = "Remote"
    backend = "openai"
    context_tokens = 8192
    [models.options]
    base_url = "http://gpu1:8001/v1"
    """
    (parsed,) = registry_parse(entry, base_dir=tmp_path)
    assert parsed.options["context_tokens"] == 8192
    with pytest.raises(RegistryError, match="'context_tokens': must be >= 1"):
        registry_parse(entry.replace("8192", "0"), base_dir=tmp_path)


def test_a_vote_reads_the_battles_turns_and_answers_once(cast: dict) -> None:
    """vote_record read the turns and their answers three times (once to check them, once per
    side's conversation); once is enough, and the stored conversations are the same."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    battle = _new_battle()
    _answer_all(battle)
    with CaptureQueriesContext(connection) as queries:
        vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")
    turn_reads = [q["sql"] for q in queries if 'FROM "arena_turn"' in q["sql"]]
    assert len(turn_reads) == 1, turn_reads
    assert [m["role"] for m in vote.conversation_a] == ["user", "assistant"]
    assert vote.conversation_a[1]["content"].endswith("a\n- item")
    assert vote.conversation_b[1]["content"].endswith("b\n- item")
