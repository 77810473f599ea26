"""The modes beside the blind battle: side by side with chosen models, direct chat, and the
shared page of a finished battle. Services and the JSON API through Django's test client (the
worker's part is played by the response services); the anonymous leaderboard and the exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from arena import modes, selectors, services, sharing
from arena.errors import Conflict, InvalidInput, NotFound, RateLimited, Refused
from arena.models import (
    AnswerFeedback,
    ArenaModel,
    Battle,
    BattleMode,
    Response,
    ResponseStatus,
    Vote,
)
from arena.streams import redis_client
from leaderboard.data.chat_export import chat_feedback_records
from leaderboard.data.export import preferences_export
from leaderboard.pipeline import battles as battle_data
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create
from tests.conftest import Visitors, answer_play

VISITOR = "visitor-1"
OTHER = "visitor-2"
LONG_PROMPT = ("Explain the water cycle in detail. " * 300)[:7900]


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    redis_client().flushdb()


def _answer_all(battle: Battle, text: str = "an answer") -> None:
    for response in Response.objects.filter(
        turn__battle=battle, superseded=False, status=ResponseStatus.QUEUED
    ):
        answer_play(response, f"{text} {response.side}")


def _json(client: Client, path: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(path, json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def visitor(cast: dict) -> Client:
    client = Client()
    assert client.get("/").status_code == 200
    return client


# --- Side by side with chosen models ----------------------------------------------------------


def test_named_battle_shows_the_names_from_the_start_and_its_vote_is_not_anonymous(
    visitor: Client,
) -> None:
    created = _json(
        visitor, "/side-by-side/battles", {"prompt": "Name a river.", "model_a": "tiny-a",
                                           "model_b": "random"}
    )  # fmt: skip
    assert created.status_code == 201, created.content
    state = created.json()
    # "random" draws among the other choosable models: the cast's only other enabled one.
    assert (state["model_a"]["name"], state["model_b"]["name"]) == ("tiny-a", "tiny-b")
    assert state["mode"] == "named"
    battle = Battle.objects.get(id=state["id"])
    assert battle.mode == BattleMode.NAMED and not battle.anony
    _answer_all(battle)
    # The blind battle's endpoints play it: the names stay, the vote is stored anony=False.
    assert visitor.get(f"/battles/{battle.id}").json()["model_b"]["display_name"] == "Tiny Beta"
    voted = _json(visitor, f"/battles/{battle.id}/vote", {"choice": "a"})
    assert voted.status_code == 201, voted.content
    assert voted.json()["counted"] is False
    assert "kept apart from the anonymous leaderboard" in voted.json()["reason"]
    vote = Vote.objects.get(battle=battle)
    assert vote.anony is False and vote.is_valid and vote.source == "arena"
    assert _json(visitor, f"/battles/{battle.id}/vote", {"choice": "b"}).status_code == 409


def test_a_blind_battle_keeps_its_anonymous_state_and_vote(visitor: Client) -> None:
    state = _json(visitor, "/battles", {"prompt": "Name a river."}).json()
    assert "model_a" not in state and "mode" not in state
    _answer_all(Battle.objects.get(id=state["id"]))
    reveal = _json(visitor, f"/battles/{state['id']}/vote", {"choice": "tie"}).json()
    assert reveal["counted"] is True and reveal["reason"] == ""
    assert Vote.objects.get(battle_id=state["id"]).anony is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model_a": "tiny-a", "model_b": "tiny-a"}, "two different models"),
        ({"model_a": "random", "model_b": "random"}, "Choose at least one model"),
        ({"model_a": "tiny-a", "model_b": "nope"}, "no model named 'nope'"),
        ({"model_a": "broken", "model_b": "tiny-b"}, "no model named 'broken'"),  # disabled
        ({"model_a": ["tiny-a"], "model_b": "tiny-b"}, "Name a model in 'model_a'"),
        ({"model_b": "tiny-b"}, "Name a model in 'model_a'"),
    ],
)
def test_a_bad_choice_of_models_is_a_400_with_the_reason(
    visitor: Client, body: dict, message: str
) -> None:
    reply = _json(visitor, "/side-by-side/battles", {"prompt": "Hi.", **body})
    assert reply.status_code == 400
    assert message in reply.json()["error"]
    assert not Battle.objects.exists()


def test_named_battles_and_chats_share_the_blind_battles_rate_limit(
    cast: dict, settings: Any
) -> None:
    settings.ARENA_BATTLES_PER_MINUTE = 2
    services.battle_create(visitor_id=VISITOR, prompt="One.", rng=np.random.default_rng(0))
    modes.battle_named_create(visitor_id=VISITOR, prompt="Two.", model_a="tiny-a", model_b="tiny-b")
    with pytest.raises(RateLimited):
        modes.battle_named_create(
            visitor_id=VISITOR, prompt="Three.", model_a="tiny-a", model_b="tiny-b"
        )
    with pytest.raises(RateLimited):
        modes.chat_create(visitor_id=VISITOR, prompt="Three.", model="tiny-a")
    assert Battle.objects.count() == 2


def test_named_battles_and_chats_pass_moderation_and_the_context_check(
    cast: dict, settings: Any
) -> None:
    settings.ARENA_MODERATION_BLOCKLIST = ["badword"]
    with pytest.raises(Refused):
        modes.battle_named_create(
            visitor_id=VISITOR, prompt="say badword", model_a="tiny-a", model_b="tiny-b"
        )
    with pytest.raises(Refused):
        modes.chat_create(visitor_id=VISITOR, prompt="say badword", model="tiny-a")
    with pytest.raises(InvalidInput, match="too long"):
        modes.battle_named_create(
            visitor_id=VISITOR, prompt=LONG_PROMPT, model_a="tiny-a", model_b="tiny-b"
        )
    with pytest.raises(InvalidInput, match="too long"):
        modes.chat_create(visitor_id=VISITOR, prompt=LONG_PROMPT, model="tiny-a")
    assert not Battle.objects.exists()


def test_only_the_named_battles_session_votes(cast: dict) -> None:
    battle = modes.battle_named_create(
        visitor_id=VISITOR, prompt="Hi.", model_a="tiny-a", model_b="tiny-b"
    )
    _answer_all(battle)
    with pytest.raises(Conflict, match="another session"):
        services.vote_record(battle=battle, visitor_id=OTHER, choice="a")
    assert not Vote.objects.exists()


# --- Direct chat ------------------------------------------------------------------------------


def test_a_chat_is_one_model_answering_turn_after_turn_with_a_label_on_each_answer(
    visitor: Client,
) -> None:
    created = _json(visitor, "/chats", {"prompt": "Name a river.", "model": "tiny-b"})
    assert created.status_code == 201, created.content
    state = created.json()
    assert state["model"]["name"] == "tiny-b" and state["turns"][0]["answer"]["status"] == "queued"
    chat = Battle.objects.get(id=state["id"])
    (answer,) = Response.objects.filter(turn__battle=chat)
    assert (answer.side, answer.model.name) == ("a", "tiny-b")  # on tiny-b's queue

    busy = _json(visitor, f"/chats/{chat.id}/turns", {"prompt": "Another?"})
    assert busy.status_code == 409 and "Wait until the answer is complete" in busy.json()["error"]
    early = _json(visitor, f"/chats/{chat.id}/turns/0/feedback", {"label": "up"})
    assert early.status_code == 409
    _answer_all(chat, "the Rhine")
    assert _json(visitor, f"/chats/{chat.id}/turns/0/feedback", {"label": "up"}).status_code == 201
    # A second label replaces the first: one label per answer.
    assert (
        _json(visitor, f"/chats/{chat.id}/turns/0/feedback", {"label": "flag"}).status_code == 201
    )
    assert list(AnswerFeedback.objects.values_list("label", flat=True)) == ["flag"]
    bad = _json(visitor, f"/chats/{chat.id}/turns/0/feedback", {"label": "meh"})
    assert bad.status_code == 400 and "up, down, flag" in bad.json()["error"]
    assert _json(visitor, f"/chats/{chat.id}/turns/5/feedback", {"label": "up"}).status_code == 404

    assert _json(visitor, f"/chats/{chat.id}/turns", {"prompt": "Another?"}).status_code == 201
    second = Response.objects.get(turn__battle=chat, turn__index=1)
    # The worker's own read of what to send: the chat so far, this model's answers only.
    assert [m["content"] for m in selectors.generation_messages(second)] == [
        "Name a river.", "the Rhine a", "Another?"
    ]  # fmt: skip
    state = visitor.get(f"/chats/{chat.id}").json()
    assert [t["answer"]["feedback"] for t in state["turns"]] == ["flag", None]


def test_a_chat_is_private_and_invisible_to_the_battle_endpoints(visitor: Client) -> None:
    chat_id = _json(visitor, "/chats", {"prompt": "Hi.", "model": "tiny-a"}).json()["id"]
    stranger = Client()
    stranger.get("/")
    assert stranger.get(f"/chats/{chat_id}").status_code == 404
    assert _json(stranger, f"/chats/{chat_id}/turns", {"prompt": "x"}).status_code == 404
    assert stranger.get(f"/chats/{chat_id}/stream").status_code == 404
    _answer_all(Battle.objects.get(id=chat_id))
    # The two-sided endpoints would look for a side B: for them a chat does not exist.
    for path in ("vote", "turns", "regenerate", "share"):
        reply = _json(visitor, f"/battles/{chat_id}/{path}", {"choice": "a", "prompt": "x"})
        assert reply.status_code == 404, (path, reply.content)
    assert visitor.get(f"/battles/{chat_id}").status_code == 404
    assert visitor.get(f"/battles/{chat_id}/stream").status_code == 404
    assert not Vote.objects.exists()


def test_chat_feedback_is_rate_limited_like_votes(cast: dict, settings: Any) -> None:
    settings.ARENA_VOTES_PER_MINUTE = 1
    chat = modes.chat_create(visitor_id=VISITOR, prompt="Hi.", model="tiny-a")
    _answer_all(chat)
    modes.chat_feedback_record(chat=chat, visitor_id=VISITOR, turn_index=0, label="up")
    with pytest.raises(RateLimited):
        modes.chat_feedback_record(chat=chat, visitor_id=VISITOR, turn_index=0, label="down")
    with pytest.raises(NotFound):
        modes.chat_feedback_record(chat=chat, visitor_id=OTHER, turn_index=0, label="down")


# --- The shared page of a finished battle -----------------------------------------------------


def test_a_battle_is_shared_only_after_its_vote_at_an_unguessable_address(
    visitor: Client,
) -> None:
    battle_id = _json(visitor, "/battles", {"prompt": "Name a river."}).json()["id"]
    battle = Battle.objects.get(id=battle_id)
    _answer_all(battle, "the Danube")
    early = _json(visitor, f"/battles/{battle_id}/share")
    assert early.status_code == 409 and "Vote first" in early.json()["error"]
    battle.refresh_from_db()
    assert battle.share_id is None
    # Before the vote nothing answers, by any address a visitor could try.
    assert visitor.get(f"/shared/{battle_id}").status_code == 404
    assert visitor.get("/shared/None").status_code == 404
    # Even a link set on the battle answers 404 until the vote is in.
    Battle.objects.filter(id=battle_id).update(share_id="x" * 32)
    assert visitor.get("/shared/" + "x" * 32).status_code == 404
    Battle.objects.filter(id=battle_id).update(share_id=None)

    stranger = Client()
    stranger.get("/")
    _json(visitor, f"/battles/{battle_id}/vote", {"choice": "b"})
    assert _json(stranger, f"/battles/{battle_id}/share").status_code == 403
    shared = _json(visitor, f"/battles/{battle_id}/share")
    assert shared.status_code == 200, shared.content
    url = shared.json()["share_url"]
    share_id = url.rsplit("/", 1)[1]
    assert len(share_id) == 32 and share_id != battle_id  # 24 random bytes: 192 bits
    assert _json(visitor, f"/battles/{battle_id}/share").json()["share_url"] == url

    page = stranger.get(f"/shared/{share_id}")
    assert page.status_code == 200 and page["Referrer-Policy"] == "no-referrer"
    html = page.content.decode()
    assert "Tiny Alpha" in html and "Tiny Beta" in html and "Name a river." in html
    assert "the Danube a" in html and "the Danube b" in html
    data = stranger.get(f"/shared/{share_id}?format=json").json()
    assert data["outcome"] == "model_b" and data["anony"] is True
    assert {data["model_a"]["name"], data["model_b"]["name"]} == {"tiny-a", "tiny-b"}


def test_staff_revoke_a_share_link_and_it_stays_dead(visitor: Client, visitors: Visitors) -> None:
    battle = modes.battle_named_create(
        visitor_id=VISITOR, prompt="Hi.", model_a="tiny-a", model_b="tiny-b"
    )
    _answer_all(battle)
    services.vote_record(battle=battle, visitor_id=VISITOR, choice="tie")
    share_id = sharing.battle_share(battle=battle, visitor_id=VISITOR)
    assert Client().get(f"/shared/{share_id}").status_code == 200

    admin = Client()
    admin.force_login(visitors.staff)
    reply = admin.post(
        reverse("admin:arena_battle_changelist"),
        {"action": "revoke_share_links", "_selected_action": [battle.id]},
        follow=True,
    )
    assert reply.status_code == 200
    assert Client().get(f"/shared/{share_id}").status_code == 404
    assert Client().get(f"/shared/{share_id}?format=json").status_code == 404
    with pytest.raises(Conflict, match="withdrawn"):
        sharing.battle_share(battle=battle, visitor_id=VISITOR)


# --- The anonymous leaderboard and the exports ------------------------------------------------


def _overall(snapshot: Any) -> list[tuple[str, float, int]]:
    rows = snapshot.results["overall"]["rows"]
    return [(r["model"], round(r["rating"], 9), r["battles"]) for r in rows]


def test_named_votes_and_chat_labels_leave_the_anonymous_leaderboard_unchanged(
    cast: dict, settings: Any
) -> None:
    settings.ARENA_LEADERBOARD_CI = "sandwich"
    settings.ARENA_BATTLES_PER_MINUTE = settings.ARENA_VOTES_PER_MINUTE = 10_000
    rng = np.random.default_rng(5)
    for k in range(30):
        battle = services.battle_create(visitor_id=f"v{k}", prompt=f"Question {k}?", rng=rng)
        _answer_all(battle)
        services.vote_record(battle=battle, visitor_id=f"v{k}", choice="ab"[k % 3 == 0])
    before = leaderboard_snapshot_create(force=True)
    assert before is not None and before.n_battles == 30

    # Lopsided named votes, all for tiny-b: counted, they would move the board a lot.
    for k in range(40):
        named = modes.battle_named_create(
            visitor_id=f"n{k}", prompt=f"Named {k}?", model_a="tiny-a", model_b="tiny-b"
        )
        _answer_all(named)
        services.vote_record(battle=named, visitor_id=f"n{k}", choice="b")
        chat = modes.chat_create(visitor_id=f"c{k}", prompt=f"Chat {k}?", model="tiny-a")
        _answer_all(chat)
        modes.chat_feedback_record(chat=chat, visitor_id=f"c{k}", turn_index=0, label="down")
    assert Vote.objects.filter(anony=False, is_valid=True).count() == 40
    after = leaderboard_snapshot_create(force=True)
    assert after is not None and after.n_battles == 30
    assert _overall(after) == _overall(before)
    assert battle_data.valid_votes().count() == 30


def test_named_votes_export_with_anony_false_and_chat_labels_as_kto_records(
    cast: dict, tmp_path: Path
) -> None:
    blind = services.battle_create(
        visitor_id=VISITOR, prompt="Blind?", rng=np.random.default_rng(0)
    )
    _answer_all(blind)
    services.vote_record(battle=blind, visitor_id=VISITOR, choice="a")
    named = modes.battle_named_create(
        visitor_id=VISITOR, prompt="Named?", model_a="tiny-a", model_b="tiny-b"
    )
    _answer_all(named)
    services.vote_record(battle=named, visitor_id=VISITOR, choice="b")
    preferences_export(output=tmp_path / "arena", fmt="arena")
    (shard,) = (tmp_path / "arena" / "data").glob("*.jsonl")
    records = [json.loads(line) for line in shard.read_text().splitlines()]
    by_prompt = {r["conversation_a"][0]["content"]: r for r in records}
    assert by_prompt["Blind?"]["anony"] is True
    assert by_prompt["Named?"]["anony"] is False and by_prompt["Named?"]["winner"] == "model_b"

    chat = modes.chat_create(visitor_id=VISITOR, prompt="Hi.", model="tiny-a")
    _answer_all(chat, "hello")
    modes.chat_continue(chat=chat, visitor_id=VISITOR, prompt="More.")
    _answer_all(chat, "more")
    modes.chat_feedback_record(chat=chat, visitor_id=VISITOR, turn_index=1, label="down")
    modes.chat_feedback_record(chat=chat, visitor_id=VISITOR, turn_index=0, label="up")
    kto = list(chat_feedback_records(judge_salt="s"))
    assert [(r["turn"], r["label"], r["feedback"], r["anony"]) for r in kto] == [
        (1, False, "down", False), (0, True, "up", False)
    ]  # fmt: skip
    assert kto[0]["prompt"] == [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "hello a"},
        {"role": "user", "content": "More."},
    ]
    assert kto[0]["completion"] == [{"role": "assistant", "content": "more a"}]
    assert kto[0]["model"] == "tiny-a" and kto[0]["judge"] and kto[0]["judge"] != VISITOR


def test_an_answer_moderation_flagged_leaves_the_chat_export(cast: dict) -> None:
    chat = modes.chat_create(visitor_id=VISITOR, prompt="Hi.", model="tiny-a")
    _answer_all(chat)
    modes.chat_feedback_record(chat=chat, visitor_id=VISITOR, turn_index=0, label="flag")
    response = Response.objects.get(turn__battle=chat)
    services.battle_moderation_flag(
        battle_id=chat.id, flag={"kind": "answer", "response_id": response.id}
    )
    assert list(chat_feedback_records()) == []
    (kept,) = chat_feedback_records(include_moderated=True)
    assert kept["moderated"] is True and kept["label"] is False


def test_the_pages_of_each_mode_are_in_the_navigation(visitor: Client, cast: dict) -> None:
    for path in ("/", "/side-by-side", "/chat", "/leaderboard"):
        html = visitor.get(path).content.decode()
        assert 'href="/side-by-side"' in html and 'href="/chat"' in html, path
    models = visitor.get("/side-by-side/models").json()["models"]
    assert [m["name"] for m in models] == ["tiny-a", "tiny-b"]  # enabled ones, by display name
    assert ArenaModel.objects.filter(enabled=False).exists()
