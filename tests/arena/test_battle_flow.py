"""A battle from prompt to revealed vote on the real stack: uvicorn, a Celery worker, Redis,
tiny local models. The stream is read by an async HTTP client, as a browser's EventSource would."""

from __future__ import annotations

import httpx
import pytest

from arena.models import ArenaModel, Response, ResponseStatus, Vote
from tests.visitor import Visitor, assert_anonymous, texts

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def visitor(live_server_url: str, worker: object, cast: dict) -> Visitor:
    return Visitor(live_server_url)


def test_full_battle_from_prompt_to_revealed_vote(visitor: Visitor, cast: dict) -> None:
    created = visitor.post("/battles", {"prompt": "Write a haiku about rivers."})
    assert created.status_code == 201, created.text
    battle_id = created.json()["id"]

    events = visitor.stream(battle_id)
    kinds = [e.event for e in events]
    assert kinds[-1] == "end"
    assert sorted(e.data["side"] for e in events if e.event == "done") == ["a", "b"]
    assert {e.data["side"] for e in events if e.event == "delta"} == {"a", "b"}
    assert all(e.id for e in events if e.event in ("delta", "done"))

    state = visitor.get(f"/battles/{battle_id}").json()
    streamed = texts(events)
    for side in "ab":
        assert state["turns"][0][side]["status"] == "done"
        assert state["turns"][0][side]["text"] == streamed[side]
        assert streamed[side], "an empty answer streamed"
    stored = {r.side: r for r in Response.objects.filter(turn__battle_id=battle_id)}
    for side in "ab":
        assert stored[side].completion_tokens and stored[side].completion_tokens > 0
        assert stored[side].ttft_ms is not None and stored[side].latency_ms >= stored[side].ttft_ms
        assert stored[side].finish_reason in ("stop", "length")

    assert_anonymous(visitor, [cast["tiny-a"], cast["tiny-b"]])

    voted = visitor.post(f"/battles/{battle_id}/vote", {"choice": "a"})
    assert voted.status_code == 201, voted.text
    reveal = voted.json()
    assert {reveal["model_a"]["display_name"], reveal["model_b"]["display_name"]} == {
        "Tiny Alpha",
        "Tiny Beta",
    }
    cut_off = any(r.finish_reason == "length" for r in stored.values())
    assert reveal["counted"] is not cut_off  # tiny models often run into max_tokens
    if cut_off:
        assert reveal["reason"] == "an answer was cut off at the length limit"
    assert Vote.objects.get(battle_id=battle_id).outcome == "model_a"

    again = visitor.post(f"/battles/{battle_id}/vote", {"choice": "b"})
    assert again.status_code == 409
    assert "vote is in" in again.json()["error"]


def test_follow_up_and_regenerate_then_vote(visitor: Visitor) -> None:
    battle_id = visitor.post("/battles", {"prompt": "Name a colour."}).json()["id"]
    visitor.stream(battle_id)
    assert visitor.post(f"/battles/{battle_id}/turns", {"prompt": "Another?"}).status_code == 201
    second = visitor.stream(battle_id)
    assert sorted(e.data["side"] for e in second if e.event == "done") == ["a", "b"]
    assert visitor.post(f"/battles/{battle_id}/regenerate").status_code == 201
    third = visitor.stream(battle_id)
    assert sorted(e.data["side"] for e in third if e.event == "done") == ["a", "b"]

    state = visitor.get(f"/battles/{battle_id}").json()
    assert [t["prompt"] for t in state["turns"]] == ["Name a colour.", "Another?"]
    assert state["turns"][1]["a"]["text"] == texts(third)["a"]
    assert visitor.post(f"/battles/{battle_id}/vote", {"choice": "both_bad"}).status_code == 201
    vote = Vote.objects.get(battle_id=battle_id)
    assert vote.turns == 2
    assert vote.conversation_a[3]["content"] == texts(third)["a"]


def test_reconnect_with_last_event_id_resumes_exactly(visitor: Visitor) -> None:
    battle_id = visitor.post("/battles", {"prompt": "Count to ten."}).json()["id"]
    first = visitor.stream(battle_id, stop_after=2)
    resume_from = [e for e in first if e.id][-1].id
    rest = visitor.stream(battle_id, last_event_id=resume_from)
    assert rest[-1].event == "end"
    combined = texts(first + rest)
    state = visitor.get(f"/battles/{battle_id}").json()
    assert combined == {side: state["turns"][0][side]["text"] for side in "ab"}


def test_stream_of_a_finished_battle_replays_from_the_database(visitor: Visitor) -> None:
    from arena.streams import redis_client, stream_key

    battle_id = visitor.post("/battles", {"prompt": "Hello"}).json()["id"]
    live = visitor.stream(battle_id)
    for response in Response.objects.filter(turn__battle_id=battle_id):
        redis_client().delete(stream_key(battle_id, response.id))  # as if the stream had expired
    replay = visitor.stream(battle_id)
    answered = [side for side in "ab" if texts(live)[side]]  # an empty answer has no snapshot
    assert [e.event for e in replay].count("snapshot") == len(answered)
    assert texts(replay) == texts(live)


def test_a_model_failure_is_shown_and_blocks_the_vote(visitor: Visitor, cast: dict) -> None:
    ArenaModel.objects.filter(name="broken").update(enabled=True)
    ArenaModel.objects.filter(name="tiny-b").update(enabled=False)
    battle_id = visitor.post("/battles", {"prompt": "Hi"}).json()["id"]
    events = visitor.stream(battle_id)
    failed = [e for e in events if e.event == "failed"]
    assert len(failed) == 1
    broken_side = Response.objects.get(turn__battle_id=battle_id, model__name="broken").side
    label = "Model A" if broken_side == "a" else "Model B"
    assert failed[0].data == {"side": broken_side, "error": f"{label} failed; start a new round."}
    response = Response.objects.get(turn__battle_id=battle_id, model__name="broken")
    assert response.status == ResponseStatus.FAILED
    assert "/nonexistent/model" in response.error  # the operator's detail is kept...
    assert_anonymous(visitor, list(cast.values()))  # ...and never shown to the visitor
    refused = visitor.post(f"/battles/{battle_id}/vote", {"choice": "a"})
    assert refused.status_code == 409
    assert f"{label} failed" in refused.json()["error"]


def test_bad_input_gets_clear_4xx_replies(live_server_url: str, cast: dict) -> None:
    # Models on queues no worker serves: their answers stay queued for this test.
    ArenaModel.objects.filter(name__in=["tiny-a", "tiny-b"]).update(enabled=False)
    for name in ("idle-x", "idle-y"):
        ArenaModel.objects.create(
            name=name, display_name=name, backend="local", options={"path": "/unused"}
        )
    visitor = Visitor(live_server_url)

    def error(reply: httpx.Response, status: int) -> str:
        assert reply.status_code == status, reply.text
        assert reply.headers["content-type"] == "application/json"
        return reply.json()["error"]

    assert "Type a prompt" in error(visitor.post("/battles", {}), 400)
    assert "too long" in error(visitor.post("/battles", {"prompt": "x" * 9000}), 400)
    not_json = visitor.post("/battles", content=b"{nope")
    assert "not valid JSON" in error(not_json, 400)
    assert "No battle" in error(visitor.post("/battles/nope/vote", {"choice": "a"}), 404)
    assert "No battle" in error(visitor.get("/battles/nope"), 404)
    assert "No battle" in error(visitor.get("/battles/nope/stream"), 404)
    assert "Use POST" in error(visitor.get("/battles"), 405)

    battle_id = visitor.post("/battles", {"prompt": "Hi"}).json()["id"]
    assert "Wait until both answers" in error(
        visitor.post(f"/battles/{battle_id}/vote", {"choice": "a"}), 409
    )
    assert "Vote with one of" in error(
        visitor.post(f"/battles/{battle_id}/vote", {"choice": "left"}), 400
    )
    stranger = Visitor(live_server_url)
    assert "another session" in error(
        stranger.post(f"/battles/{battle_id}/vote", {"choice": "a"}), 403
    )
    assert "another session" in error(stranger.get(f"/battles/{battle_id}/stream"), 403)
    no_csrf = httpx.post(f"{live_server_url}/battles", json={"prompt": "hi"})
    assert "CSRF" in error(no_csrf, 403)
    assert httpx.get(f"{live_server_url}/no/such/page").status_code == 404
