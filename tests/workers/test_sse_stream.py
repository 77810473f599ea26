"""The openai backend's Server-Sent Events reader: events are cut on the bytes, so a chunk of
the body may end anywhere (inside a line, inside a multi-byte character) and the events read
the same."""

from __future__ import annotations

import orjson
import pytest

from tests.workers.replay_server import capture_load
from workers.backends.openai import _chunk_parse, sse_data

# Three events, one of them with a character of 2, 3 and 4 bytes, a comment (a proxy's
# keep-alive), a two-line data field, and [DONE].
BODY = (
    'data: {"choices":[{"index":0,"delta":{"content":"Ré"}}]}\n\n'
    ": keep-alive\n\n"
    'data: {"choices":[{"index":0,"delta":{"content":"€ 🦙"}}]}\n\n'
    "event: note\ndata: first\ndata: second\n\n"
    "data: [DONE]\n\n"
).encode()
EVENTS = [
    b'{"choices":[{"index":0,"delta":{"content":"R\xc3\xa9"}}]}',
    '{"choices":[{"index":0,"delta":{"content":"€ 🦙"}}]}'.encode(),
    b"first\nsecond",
    b"[DONE]",
]


def test_a_body_in_one_chunk_reads_as_its_events() -> None:
    assert list(sse_data([BODY])) == EVENTS


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_a_chunk_may_end_at_any_byte(crlf: bool) -> None:
    body = BODY.replace(b"\n", b"\r\n") if crlf else BODY
    for cut in range(1, len(body)):
        assert list(sse_data([body[:cut], body[cut:]])) == EVENTS, cut


def test_a_byte_at_a_time_reads_the_same() -> None:
    assert list(sse_data(BODY[k : k + 1] for k in range(len(BODY)))) == EVENTS


def test_a_split_character_is_whole_in_the_text() -> None:
    cut = BODY.index("🦙".encode()) + 2  # inside the 4-byte character
    payloads = list(sse_data([BODY[:cut], BODY[cut:]]))
    assert _chunk_parse(payloads[1], "http://x")["choices"][0]["delta"]["content"] == "€ 🦙"


def test_the_last_event_without_a_blank_line_is_read() -> None:
    assert list(sse_data([b'data: {"a":1}\n\ndata: [DONE]'])) == [b'{"a":1}', b"[DONE]"]


def test_vllms_captured_stream_read_in_pieces_gives_its_frames() -> None:
    capture = capture_load("chat_stream_usage")
    body = capture.body
    expected = [orjson.loads(frame) for frame in sse_data([body]) if frame != b"[DONE]"]
    assert expected == capture.data()
    for size in (1, 7, 64):
        pieces = [body[k : k + size] for k in range(0, len(body), size)]
        frames = [orjson.loads(f) for f in sse_data(pieces) if f != b"[DONE]"]
        assert frames == expected, size
