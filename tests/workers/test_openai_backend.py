"""The `openai` backend against a real HTTP server replaying vLLM 0.32.0's captured responses
(whole battles through it: test_openai_battles.py).

No mock transport: the backend opens real sockets to `tests.workers.replay_server`, which sends
the captured bytes frame by frame (see that module and shared/fixtures/vllm-0.32.0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from arena.embedded_redis import free_port
from tests.workers.replay_server import (
    Hangup,
    Paced,
    Replay,
    ReplayServer,
    Reply,
    capture_load,
    paced_text,
)
from workers.backends import backend_for
from workers.backends.base import BackendError, Delta, Finish, Message, SamplingParams
from workers.backends.openai import STREAM_CLOSED, OpenAIBackend

CHAT: list[Message] = [{"role": "user", "content": "Say something."}]
MULTITURN: list[Message] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another one."},
]
# Retries in tests wait milliseconds, not the production half second.
FAST = {"retry_backoff": 0.01}


pytestmark = pytest.mark.usefixtures("fresh_http_clients")


def backend(server: ReplayServer, **options: Any) -> OpenAIBackend:
    return OpenAIBackend(
        {"base_url": server.base_url, "served_model_name": "tiny-llama", **FAST, **options}
    )


def collect(
    stream: Iterator[Delta | Finish],
) -> tuple[list[str], Finish | None, BackendError | None]:
    """Every delta until the end or the error, the Finish if one came, the error if one came."""
    deltas: list[str] = []
    finish: Finish | None = None
    try:
        for item in stream:
            if isinstance(item, Finish):
                assert finish is None, "two Finish records"
                finish = item
            else:
                assert finish is None, "a delta after the Finish"
                deltas.append(item.text)
    except BackendError as exc:
        return deltas, finish, exc
    return deltas, finish, None


def run(
    b: OpenAIBackend, messages: Sequence[Message] = CHAT, **params: Any
) -> tuple[list[str], Finish]:
    deltas, finish, error = collect(b.stream(messages, SamplingParams(**params)))
    assert error is None, error
    assert finish is not None
    return deltas, finish


def fail(b: OpenAIBackend, messages: Sequence[Message] = CHAT, **params: Any) -> BackendError:
    with pytest.raises(BackendError) as info:
        list(b.stream(messages, SamplingParams(**params)))
    return info.value


# The answer ----------------------------------------------------------------------------------


def test_deltas_join_to_the_captured_answer_and_usage_gives_the_token_counts(
    replay: ReplayServer,
) -> None:
    replay.push(Replay("chat_stream_usage", delay=0.005))
    deltas, finish = run(backend(replay), max_tokens=24, seed=1)
    capture = capture_load("chat_stream_usage")
    assert "".join(deltas) == capture.content()
    # Control characters and U+FFFD from split byte sequences come through untouched.
    assert "\x0e" in "".join(deltas) and "\ufffd" in "".join(deltas)
    assert all(deltas), "empty deltas are dropped, not relayed"
    assert finish == Finish(prompt_tokens=20, completion_tokens=24, finish_reason="length")


def test_deltas_arrive_while_the_server_is_still_streaming(replay: ReplayServer) -> None:
    replay.push(Replay("chat_stream_usage", delay=0.05))
    started = time.monotonic()
    stream = backend(replay).stream(CHAT, SamplingParams())
    first = next(stream)
    first_at = time.monotonic() - started
    list(stream)
    total = time.monotonic() - started
    assert isinstance(first, Delta)
    # 27 frames 50 ms apart: the first delta comes long before the last frame is sent.
    assert first_at < 0.5 and total > 1.0


def test_a_stop_ending_is_reported_as_stop(replay: ReplayServer) -> None:
    # No capture ends on a stop string; this is the multi-turn capture with vLLM's own
    # stop ending ("stop", stop_reason the matched string) written into its last frame.
    ending = (
        b'"finish_reason":"length","stop_reason":null',
        b'"finish_reason":"stop","stop_reason":"."',
    )
    replay.push(Replay("chat_stream_multiturn_stop", edits=(ending,)))
    deltas, finish = run(backend(replay), MULTITURN, max_tokens=12, temperature=0, stop=(".",))
    assert finish.finish_reason == "stop"
    assert "".join(deltas) == capture_load("chat_stream_multiturn_stop").content()


def test_multiturn_conversation_is_sent_whole_and_its_answer_read(replay: ReplayServer) -> None:
    replay.push(Replay("chat_stream_multiturn_stop"))
    deltas, finish = run(backend(replay), MULTITURN, max_tokens=12, temperature=0)
    assert replay.requests[0].json()["messages"] == MULTITURN
    assert "".join(deltas) == "\ufffd" * 8 + "nnnn"
    # This capture has no usage chunk (the request did not ask for it): the token count comes
    # from the chunks, one per token, and the prompt's size is unknown.
    assert finish == Finish(prompt_tokens=0, completion_tokens=12, finish_reason="length")


def test_paced_mode_speaks_the_same_frame_format(replay: ReplayServer) -> None:
    replay.push(Paced(tokens=5, interval=0.001))
    deltas, finish = run(backend(replay))
    assert "".join(deltas) == paced_text(5)
    assert finish == Finish(prompt_tokens=8, completion_tokens=5, finish_reason="length")


# The request ---------------------------------------------------------------------------------


def test_request_carries_stream_usage_model_messages_and_every_sampling_parameter(
    replay: ReplayServer,
) -> None:
    params = SamplingParams(
        temperature=0.3,
        top_p=0.9,
        max_tokens=24,
        stop=("###", "\n\n"),
        seed=11,
        extra={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1},
    )
    collect(backend(replay, served_model_name="served-x").stream(MULTITURN, params))
    [request] = replay.requests
    assert request.path == "/v1/chat/completions"
    assert request.json() == {
        "model": "served-x",
        "messages": MULTITURN,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 24,
        "stop": ["###", "\n\n"],
        "seed": 11,
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
    }


def test_no_stop_and_no_seed_are_left_out_of_the_request(replay: ReplayServer) -> None:
    run(backend(replay))
    body = replay.requests[0].json()
    assert "stop" not in body and "seed" not in body


def test_extras_may_not_override_the_protocol(replay: ReplayServer) -> None:
    error = fail(backend(replay), extra={"stream": False})
    assert "sampling.extra may not set 'stream'" in str(error)
    assert replay.requests == []


def test_without_served_model_name_the_model_the_server_serves_is_used(
    replay: ReplayServer,
) -> None:
    b = OpenAIBackend({"base_url": replay.base_url})
    run(b)
    run(b)
    assert [r.json()["model"] for r in replay.requests] == ["tiny-llama", "tiny-llama"]


def test_api_key_is_read_from_the_named_environment_variable(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARENA_TEST_GPU_KEY", "sk-secret-1")
    run(backend(replay, api_key_env="ARENA_TEST_GPU_KEY"))
    assert replay.requests[0].headers["authorization"] == "Bearer sk-secret-1"


def test_no_api_key_env_sends_no_authorization(replay: ReplayServer) -> None:
    run(backend(replay))
    assert "authorization" not in replay.requests[0].headers


def test_a_missing_api_key_variable_is_an_error_naming_it(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARENA_TEST_GPU_KEY", raising=False)
    with pytest.raises(BackendError, match=r"ARENA_TEST_GPU_KEY .*is not set"):
        backend(replay, api_key_env="ARENA_TEST_GPU_KEY")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs options.base_url"),
        ({"base_url": "gpu1:8001"}, "needs options.base_url"),
        ({"base_url": "http://x/v1", "read_timeout": 0}, "options.read_timeout must be a positive"),
        ({"base_url": "http://x/v1", "retries": -1}, "options.retries must be an integer >= 0"),
    ],
)
def test_bad_options_are_errors_that_say_which(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BackendError, match=message):
        OpenAIBackend(options)


def test_backend_for_openai_builds_this_backend(replay: ReplayServer) -> None:
    assert isinstance(backend_for("openai", {"base_url": replay.base_url}), OpenAIBackend)


# Errors from the server ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("error_bad_messages", 400),
        ("error_max_tokens_too_large", 400),
        ("error_unknown_model", 404),
    ],
)
def test_an_error_response_is_reported_with_the_servers_message(
    replay: ReplayServer, fixture: str, status: int
) -> None:
    replay.push(Replay(fixture))
    error = fail(backend(replay))
    message = capture_load(fixture).json()["error"]["message"]
    assert str(error) == f"HTTP {status} from {replay.base_url}: {message}"
    assert len(replay.requests) == 1, "a client error is not retried"


def test_a_500_is_an_error_and_is_not_retried(replay: ReplayServer) -> None:
    replay.push(Reply(500, b"Internal Server Error", content_type="text/plain"))
    error = fail(backend(replay))
    assert str(error) == f"HTTP 500 from {replay.base_url}: Internal Server Error"
    assert len(replay.requests) == 1


def test_an_error_frame_inside_the_stream_is_an_error_with_its_message(
    replay: ReplayServer,
) -> None:
    body = (
        b'data: {"error":{"message":"EngineCore died","type":"InternalServerError","code":500}}\n\n'
    )
    replay.push(Reply(200, body, content_type="text/event-stream"))
    error = fail(backend(replay))
    assert "EngineCore died" in str(error)


# Retries, only before the first token -------------------------------------------------------


def test_503_twice_then_the_stream_succeeds_after_retries(replay: ReplayServer) -> None:
    busy = Reply(503, b'{"error":{"message":"busy"}}')
    replay.push(busy, busy, Replay("chat_stream_usage"))
    deltas, finish = run(backend(replay))
    assert len(replay.requests) == 3
    assert "".join(deltas) == capture_load("chat_stream_usage").content()
    assert finish.completion_tokens == 24


def test_502_and_504_are_retried_too_until_the_retries_run_out(replay: ReplayServer) -> None:
    replay.push(
        Reply(502, b"<html>Bad Gateway</html>", content_type="text/html"),
        Reply(504, b"upstream timed out", content_type="text/plain"),
        Reply(504, b"upstream timed out", content_type="text/plain"),
    )
    error = fail(backend(replay, retries=2))
    assert str(error) == f"HTTP 504 from {replay.base_url}: upstream timed out (3 attempts)"
    assert len(replay.requests) == 3


def test_a_connection_closed_before_any_response_is_retried(replay: ReplayServer) -> None:
    replay.push(Hangup(), Replay("chat_stream_usage"))
    deltas, _ = run(backend(replay))
    assert len(replay.requests) == 2
    assert "".join(deltas) == capture_load("chat_stream_usage").content()


def test_connection_refused_is_retried_a_bounded_number_of_times() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    b = OpenAIBackend(
        {"base_url": base_url, "served_model_name": "m", "retries": 3, "retry_backoff": 0.05}
    )
    started = time.monotonic()
    error = fail(b)
    elapsed = time.monotonic() - started
    assert str(error).startswith(f"cannot connect to {base_url}: ")
    assert str(error).endswith("(4 attempts)")
    # Waits of 0.05, 0.1 and 0.2 s between the four attempts, then it gives up.
    assert 0.35 <= elapsed < 5


def test_no_retry_after_the_first_token_and_the_partial_text_is_not_repeated(
    replay: ReplayServer,
) -> None:
    replay.push(Replay("chat_stream_usage", cut_after=12))
    deltas, finish, error = collect(backend(replay).stream(CHAT, SamplingParams()))
    capture = capture_load("chat_stream_usage")
    sent = capture.frames()[:12]
    expected = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in capture.data()[: len(sent)]
        if c["choices"]
    )
    assert str(error) == STREAM_CLOSED
    assert finish is None
    assert "".join(deltas) == expected and expected
    assert len(replay.requests) == 1


def test_a_stream_cut_after_the_finish_reason_but_before_the_usage_is_incomplete(
    replay: ReplayServer,
) -> None:
    frames = capture_load("chat_stream_usage").frames()
    # Everything up to the frame with finish_reason "length"; the usage and [DONE] never come.
    replay.push(Replay("chat_stream_usage", cut_after=len(frames) - 2))
    _, finish, error = collect(backend(replay).stream(CHAT, SamplingParams()))
    assert finish is None and str(error) == STREAM_CLOSED


def test_a_stream_that_ends_cleanly_without_a_finish_reason_is_an_error(
    replay: ReplayServer,
) -> None:
    frames = capture_load("chat_stream_usage").frames()[:5]
    replay.push(Reply(200, b"".join(frames), content_type="text/event-stream"))
    deltas, finish, error = collect(backend(replay).stream(CHAT, SamplingParams()))
    assert deltas and finish is None and str(error) == STREAM_CLOSED


def test_a_server_that_stalls_past_read_timeout_fails_within_about_that_time(
    replay: ReplayServer,
) -> None:
    replay.push(Replay("chat_stream_usage", stall_after=6))
    started = time.monotonic()
    deltas, finish, error = collect(
        backend(replay, read_timeout=0.5).stream(CHAT, SamplingParams())
    )
    elapsed = time.monotonic() - started
    assert str(error) == f"no data from {replay.base_url} for 0.5 s (read_timeout)"
    assert deltas and finish is None
    assert 0.5 <= elapsed < 2.0
    assert len(replay.requests) == 1


# Many at once --------------------------------------------------------------------------------


def test_many_threads_stream_at_once_through_the_shared_client(replay: ReplayServer) -> None:
    replay.push(*[Paced(tokens=20, interval=0.01)] * 40)
    b = backend(replay)
    texts: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            deltas, _ = run(b)
            with lock:
                texts.append("".join(deltas))
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(40)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert texts == [paced_text(20)] * 40
    # 40 streams of 0.2 s each ran side by side, not one after another (8 s).
    assert time.monotonic() - started < 4
