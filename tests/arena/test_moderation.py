"""Moderation of prompts and answers: the local blocklist, an OpenAI-compatible endpoint (a
stand-in speaking its wire format on loopback), the failure policy, and what a flag does to a
battle and its vote."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from django.test import Client, override_settings

from arena import moderation, services
from arena.errors import Refused, Unavailable
from arena.models import ArenaModel, Battle, Response, ResponseStatus, Turn, Vote
from arena.streams import redis_client
from leaderboard.data.export import ExportFilters, configured_categories, export_queryset
from tests.conftest import CAST_QUEUES, stop, subprocess_env, worker_start
from tests.conftest import answer_play as _answer

VISITOR = "visitor-1"
# The OpenAI moderation categories (https://platform.openai.com/docs/api-reference/moderations).
CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip


class ModerationServer:
    """A stand-in for an OpenAI-compatible moderation endpoint, on loopback.

    `policy(text)` gives the categories to flag (none: not flagged); `delay` holds each reply
    back; `status` and `body` replace the reply to test failures. Every request is kept.
    """

    def __init__(self) -> None:
        self.policy: Callable[[str], list[str]] = lambda text: (
            ["violence"] if "dynamite" in text.lower() else []
        )
        self.delay = 0.0
        self.status = 200
        self.body: bytes | None = None
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply_for(self, request: dict) -> dict:
        texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
        results = []
        for text in texts:
            flagged = set(self.policy(text))
            results.append(
                {
                    "flagged": bool(flagged),
                    "categories": {c: c in flagged for c in CATEGORIES},
                    "category_scores": {c: 0.9 if c in flagged else 0.001 for c in CATEGORIES},
                }
            )
        return {
            "id": "modr-1",
            "model": request.get("model", "omni-moderation"),
            "results": results,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append(request)
                stand_in.headers.append(dict(self.headers))
                if self.path != "/v1/moderations":
                    self.send_error(404)
                    return
                time.sleep(stand_in.delay)
                body = stand_in.body or json.dumps(stand_in.reply_for(request)).encode()
                try:
                    self.send_response(stand_in.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout tests)

        return Handler


@pytest.fixture(scope="module")
def endpoint() -> Iterator[ModerationServer]:
    server = ModerationServer()
    yield server
    server.close()


@pytest.fixture
def stand_in(endpoint: ModerationServer, settings: object) -> ModerationServer:
    """The endpoint, configured as the arena's checker, with its default behaviour."""
    endpoint.policy = lambda text: ["violence"] if "dynamite" in text.lower() else []
    endpoint.delay, endpoint.status, endpoint.body = 0.0, 200, None
    endpoint.requests.clear()
    endpoint.headers.clear()
    settings.ARENA_MODERATION_URL = endpoint.url  # type: ignore[attr-defined]
    settings.ARENA_MODERATION_TIMEOUT_MS = 500  # type: ignore[attr-defined]
    return endpoint


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    redis_client().flushdb()


def _new_battle(prompt: str = "Tell me about rivers.") -> Battle:
    return services.battle_create(visitor_id=VISITOR, prompt=prompt, rng=np.random.default_rng(0))


# --- The local checker -----------------------------------------------------------------------


def test_local_checker_matches_whole_words_and_expressions_case_insensitively() -> None:
    checker = moderation.LocalChecker.from_lines(
        ["# a comment", "", "re:\\bbuy\\s+now\\b", "  Forbidden  "], words=["spam"]
    )
    assert checker.check("This is SPAM.").flagged
    assert checker.check("a forbidden word").flagged
    assert checker.check("Buy   now!").flagged
    verdict = checker.check("spammer and forbiddenness and buy nowhere")
    assert not verdict.flagged  # whole words only
    assert checker.check("spam").categories == ("blocklist",)


def test_blocklist_from_settings_and_file_refuses_a_prompt(
    cast: dict, settings: object, tmp_path: Path
) -> None:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# words\nbadword\nre:free\\s+money\n")
    settings.ARENA_MODERATION_BLOCKLIST_FILE = str(blocklist)  # type: ignore[attr-defined]
    settings.ARENA_MODERATION_BLOCKLIST = ["otherword"]  # type: ignore[attr-defined]
    for prompt in ("Say badword twice", "FREE   money, please", "an otherword"):
        with pytest.raises(Refused, match="refused by the arena's content rules \\(blocklist\\)"):
            _new_battle(prompt)
    assert not Battle.objects.exists()
    assert _new_battle("A clean prompt about rivers.")


def test_no_checker_configured_lets_everything_through(cast: dict) -> None:
    assert moderation.checkers() == []
    assert _new_battle("dynamite badword")


# --- The endpoint checker --------------------------------------------------------------------


def test_endpoint_flags_with_its_categories_and_sends_key_and_model(
    stand_in: ModerationServer, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_MODERATION_KEY", "sk-test-123")
    settings.ARENA_MODERATION_API_KEY_ENV = "TEST_MODERATION_KEY"  # type: ignore[attr-defined]
    settings.ARENA_MODERATION_MODEL = "omni-moderation-latest"  # type: ignore[attr-defined]
    verdict = moderation.moderation_check("how to use dynamite on people", what="prompt")
    assert verdict == moderation.Verdict(flagged=True, checker="endpoint", categories=("violence",))
    assert not moderation.moderation_check("how rivers form", what="prompt").flagged
    assert stand_in.requests[0] == {
        "input": "how to use dynamite on people",
        "model": "omni-moderation-latest",
    }
    assert stand_in.headers[0]["Authorization"] == "Bearer sk-test-123"


def test_endpoint_base_url_may_end_in_v1(stand_in: ModerationServer) -> None:
    checker = moderation.EndpointChecker(base_url=stand_in.url + "/v1/")
    assert checker.check("dynamite").flagged


@pytest.mark.parametrize(
    "failure",
    [
        {"delay": 1.5},  # past the 500 ms timeout
        {"status": 500},
        {"status": 401},
        {"body": b"<html>not json</html>"},
        {"body": b'{"results": []}'},
        {"body": b'{"results": [{"flagged": "yes"}]}'},
    ],
    ids=["timeout", "500", "401", "not-json", "no-results", "flagged-not-bool"],
)
def test_endpoint_failure_fails_open_by_default_and_closed_when_asked(
    stand_in: ModerationServer, settings: object, failure: dict
) -> None:
    for name, value in failure.items():
        setattr(stand_in, name, value)
    started = time.monotonic()
    assert moderation.moderation_check("dynamite", what="prompt") == moderation.CLEAN
    assert time.monotonic() - started < 1.4  # the timeout held

    settings.ARENA_MODERATION_FAIL = "closed"  # type: ignore[attr-defined]
    verdict = moderation.moderation_check("rivers", what="prompt")
    assert verdict.flagged
    assert verdict.categories == (moderation.UNAVAILABLE,)
    assert verdict.error


def test_unreachable_endpoint_fails_open(settings: object) -> None:
    from arena.embedded_redis import free_port

    settings.ARENA_MODERATION_URL = f"http://127.0.0.1:{free_port()}"  # type: ignore[attr-defined]
    assert not moderation.moderation_check("dynamite", what="prompt").flagged


def test_local_checker_runs_first_and_spares_the_endpoint(
    stand_in: ModerationServer, settings: object
) -> None:
    settings.ARENA_MODERATION_BLOCKLIST = ["badword"]  # type: ignore[attr-defined]
    assert moderation.moderation_check("badword", what="prompt").checker == "local"
    assert stand_in.requests == []
    assert moderation.moderation_check("dynamite", what="prompt").checker == "endpoint"


# --- What a flag does --------------------------------------------------------------------------


def test_flagged_prompt_is_refused_with_422_and_a_message_through_the_api(
    cast: dict, stand_in: ModerationServer
) -> None:
    client = Client()
    reply = client.post(
        "/battles", {"prompt": "Tell me about dynamite."}, content_type="application/json"
    )
    assert reply.status_code == 422
    assert reply["Content-Type"] == "application/json"
    assert reply.json()["error"] == (
        "This prompt was refused by the arena's content rules (violence). "
        "Rephrase it and try again."
    )
    assert not Battle.objects.exists()
    ok = client.post(
        "/battles", {"prompt": "Tell me about rivers."}, content_type="application/json"
    )
    assert ok.status_code == 201, ok.content


def test_flagged_follow_up_is_refused_and_kept_on_the_battle(
    cast: dict, stand_in: ModerationServer
) -> None:
    battle = _new_battle()
    for response in Response.objects.filter(turn__battle=battle):
        _answer(response, "Rivers flow.")
    with pytest.raises(Refused, match="violence"):
        services.battle_continue(battle=battle, visitor_id=VISITOR, prompt="Now about dynamite.")
    assert Turn.objects.filter(battle=battle).count() == 1  # no turn was added
    battle.refresh_from_db()
    [flag] = battle.moderation
    assert flag["kind"] == "prompt"
    assert flag["checker"] == "endpoint"
    assert flag["categories"] == ["violence"]
    assert flag["excerpt"] == "Now about dynamite."
    # Refused follow-ups do not spoil the battle: its judged answers were clean.
    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")
    assert vote.is_valid, vote.invalid_reason


def test_prompt_is_refused_with_503_when_moderation_fails_closed(
    cast: dict, stand_in: ModerationServer, settings: object
) -> None:
    settings.ARENA_MODERATION_FAIL = "closed"  # type: ignore[attr-defined]
    stand_in.status = 502
    with pytest.raises(Unavailable, match="cannot be checked right now"):
        _new_battle()
    reply = Client().post("/battles", {"prompt": "Hi"}, content_type="application/json")
    assert reply.status_code == 503
    assert "cannot be checked" in reply.json()["error"]
    assert not Battle.objects.exists()


def test_flagged_answer_marks_the_battle_and_the_vote_does_not_count(
    cast: dict, stand_in: ModerationServer
) -> None:
    battle = _new_battle()
    answers = {"a": "Rivers flow to the sea.", "b": "Use dynamite to fish."}
    for response in Response.objects.filter(turn__battle=battle):
        _answer(response, answers[response.side])
    battle.refresh_from_db()
    flagged_b = Response.objects.get(turn__battle=battle, side="b")
    [flag] = battle.moderation
    assert flag["kind"] == "answer"
    assert (flag["side"], flag["turn"], flag["response_id"]) == ("b", 0, flagged_b.id)
    assert flag["categories"] == ["violence"]
    assert flagged_b.status == ResponseStatus.DONE  # the answer is stored all the same

    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="b")
    assert not vote.is_valid
    assert vote.invalid_reason == "moderation flagged an answer (violence)"

    # The export's "exclude moderated" knows this reason.
    categories = configured_categories()
    everything = ExportFilters(include_invalid=True)
    assert list(export_queryset(everything, categories).values_list("id", flat=True)) == [vote.id]
    unmoderated = ExportFilters(include_invalid=True, exclude_moderated=True)
    assert not export_queryset(unmoderated, categories).exists()


def test_a_regenerated_clean_answer_replaces_the_flagged_one(
    cast: dict, stand_in: ModerationServer
) -> None:
    battle = _new_battle()
    for response in Response.objects.filter(turn__battle=battle):
        _answer(response, "dynamite" if response.side == "a" else "calm water")
    services.battle_regenerate(battle=battle, visitor_id=VISITOR)
    for response in Response.objects.filter(turn__battle=battle, status=ResponseStatus.QUEUED):
        _answer(response, "calm water")
    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")
    assert vote.is_valid, vote.invalid_reason  # the flag was on a superseded answer


@override_settings(ARENA_MODERATION_ANSWERS=False)
def test_answer_moderation_can_be_turned_off(cast: dict, stand_in: ModerationServer) -> None:
    battle = _new_battle()
    for response in Response.objects.filter(turn__battle=battle):
        _answer(response, "dynamite")
    battle.refresh_from_db()
    assert battle.moderation == []
    assert len(stand_in.requests) == 1  # the prompt only


def test_answers_fail_closed_count_as_flagged(
    cast: dict, stand_in: ModerationServer, settings: object
) -> None:
    battle = _new_battle()
    settings.ARENA_MODERATION_FAIL = "closed"  # type: ignore[attr-defined]
    stand_in.status = 500
    for response in Response.objects.filter(turn__battle=battle):
        _answer(response, "calm water")
    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="tie")
    assert vote.invalid_reason == f"moderation flagged an answer ({moderation.UNAVAILABLE})"


# --- On the real stack: a Celery worker moderates the answers it generates ----------------------

MODERATED_QUEUES = ["model.mod-a", "model.mod-b"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_worker_moderates_answers_through_the_endpoint(
    cast: dict, tiny_model_dir: Path, endpoint: ModerationServer, settings: object
) -> None:
    """A real worker, configured with the endpoint, generates both answers with tiny models;
    the stand-in flags every answer (never the prompt), so the vote is stored but invalid."""
    prompt = "Write a line about rivers."
    endpoint.policy = lambda text: [] if text == prompt else ["harassment"]
    endpoint.delay, endpoint.status, endpoint.body = 0.0, 200, None
    endpoint.requests.clear()
    settings.ARENA_MODERATION_URL = endpoint.url  # type: ignore[attr-defined]
    # Models on queues of their own: the session's worker (without moderation) must not take them.
    ArenaModel.objects.filter(name__in=["tiny-a", "tiny-b"]).update(enabled=False)
    for name in ("mod-a", "mod-b"):
        ArenaModel.objects.create(
            name=name, display_name=name, backend="local",
            options={"path": str(tiny_model_dir), "sampling": {"max_tokens": 12, "seed": 3}},
        )  # fmt: skip
    assert not set(MODERATED_QUEUES) & set(CAST_QUEUES)
    worker = worker_start(
        subprocess_env(ARENA_MODERATION_URL=endpoint.url),
        name="moderation-worker",
        queues=MODERATED_QUEUES,
    )
    try:
        battle = _new_battle(prompt)
        deadline = time.monotonic() + 60
        responses = Response.objects.filter(turn__battle=battle)
        while not all(r.is_final for r in responses.all()):
            assert time.monotonic() < deadline, "the worker did not finish both answers"
            time.sleep(0.2)
    finally:
        stop(worker)
    answers = {r.side: r for r in responses.all()}
    assert all(r.status == ResponseStatus.DONE for r in answers.values()), answers
    battle.refresh_from_db()
    flagged = sorted(f["side"] for f in battle.moderation if f["kind"] == "answer")
    expected = sorted(side for side, r in answers.items() if r.text)
    assert flagged == expected and expected, "both non-empty answers are flagged"
    checked = [r["input"] for r in endpoint.requests]
    assert checked[0] == prompt
    assert sorted(checked[1:]) == sorted(r.text for r in answers.values() if r.text)

    vote = services.vote_record(battle=battle, visitor_id=VISITOR, choice="a")
    assert not vote.is_valid
    assert vote.invalid_reason == "moderation flagged an answer (harassment)"
    assert Vote.objects.get(battle=battle).invalid_reason.startswith("moderat")
