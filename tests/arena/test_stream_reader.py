"""The SSE reader of a battle (arena/api.py `_stream_events`) against the run's real Redis: what
one read of the streams returns goes out in one write, a reconnect after a side's last event
does not wait for that side again, and the data lines are ASCII whatever the answer holds.

The rows are unsaved: in these cases the reader decides from the streams alone, as it should."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator

import pytest
from django.test import override_settings

from arena import streams
from arena.api import _sse, _stream_events
from arena.models import Battle, Response, ResponseStatus, Turn
from arena.streams import Cursor, redis_client, stream_entry_encode, stream_key


@pytest.fixture
def battle() -> Iterator[Battle]:
    battle = Battle(id=secrets.token_hex(8))
    yield battle
    redis_client().delete(*(stream_key(battle.id, rid) for rid in (1, 2)))


def _responses(battle: Battle, status: str) -> dict[str, Response]:
    turn = Turn(battle=battle, index=0, prompt="Say something.")
    return {
        side: Response(id=rid, turn=turn, side=side, status=status, text="x", finish_reason="stop")
        for side, rid in (("a", 1), ("b", 2))
    }


def _write(battle: Battle, response_id: int, *entries: tuple[str, str]) -> list[str]:
    client = redis_client()
    key = stream_key(battle.id, response_id)
    return [
        str(client.execute_command("XADD", key, "*", *stream_entry_encode(kind, text)))  # type: ignore[no-untyped-call]
        for kind, text in entries
    ]


def _read(responses: dict[str, Response], cursors: dict[str, Cursor]) -> list[str]:
    """Every chunk the reader yields, each one write to the visitor's socket."""

    async def collect() -> list[str]:
        return [chunk async for chunk in _stream_events(responses, cursors)]

    return asyncio.run(asyncio.wait_for(collect(), timeout=30))


def _events(chunk: str) -> list[str]:
    return [line[7:] for line in chunk.splitlines() if line.startswith("event: ")]


def test_what_one_read_returns_goes_out_in_one_write(battle: Battle) -> None:
    responses = _responses(battle, ResponseStatus.STREAMING)
    _write(battle, 1, ("d", "one "), ("d", "two "), ("d", "three"), ("done", "stop"))
    _write(battle, 2, ("d", "uno "), ("d", "dos"), ("done", "length"))

    chunks = _read(responses, {side: Cursor(r.id) for side, r in responses.items()})

    assert chunks[0] == "retry: 1000\n\n"
    # One XREAD returns both streams' entries (sides in either order): one chunk holds them all.
    assert sorted(_events(chunks[1])) == ["delta"] * 5 + ["done"] * 2
    assert [_events(chunk) for chunk in chunks[2:]] == [["end"]]


def test_a_reconnect_after_a_sides_last_event_does_not_wait_for_that_side(
    battle: Battle,
) -> None:
    responses = _responses(battle, ResponseStatus.DONE)
    a_ids = _write(battle, 1, ("d", "all of a"), ("done", "stop"))
    b_ids = _write(battle, 2, ("d", "first of b "), ("d", "rest of b"), ("done", "stop"))
    # The visitor saw A's end and B's first delta, then the connection dropped.
    cursors = {"a": Cursor(1, a_ids[-1]), "b": Cursor(2, b_ids[0])}

    with override_settings(ARENA_SSE_KEEPALIVE_SECONDS=1):
        chunks = _read(responses, cursors)

    events = [json.loads(line[6:]) for c in chunks for line in c.splitlines() if "data: " in line]
    assert {e.get("side") for e in events} == {"b", None}, "A's end was sent a second time"
    assert [e for c in chunks for e in _events(c)] == ["delta", "done", "end"]
    assert not any("keep-alive" in c for c in chunks)


def test_a_reconnect_after_both_ends_ends_at_once(battle: Battle) -> None:
    responses = _responses(battle, ResponseStatus.DONE)
    a_ids = _write(battle, 1, ("d", "a"), ("fail", "A could not answer."))
    b_ids = _write(battle, 2, ("d", "b"), ("done", "stop"))

    with override_settings(ARENA_SSE_KEEPALIVE_SECONDS=1):
        chunks = _read(responses, {"a": Cursor(1, a_ids[-1]), "b": Cursor(2, b_ids[-1])})

    assert [e for c in chunks for e in _events(c)] == ["end"]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x1c", "\r", "\n"])
def test_data_lines_are_ascii_so_no_line_break_splits_them(battle: Battle, separator: str) -> None:
    text = f"first{separator}second é 😀"
    responses = _responses(battle, ResponseStatus.STREAMING)
    _write(battle, 1, (streams.DELTA, text), (streams.DONE, "stop"))
    _write(battle, 2, (streams.DONE, "stop"))

    chunks = _read(responses, {side: Cursor(r.id) for side, r in responses.items()})

    body = "".join(chunks)
    assert body.isascii()
    data = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert {"side": "a", "text": text} in data
    assert _sse("delta", {"text": text}).count("\n") == 3  # event, data, blank line
