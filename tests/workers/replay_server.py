"""A stand-in for `vllm serve`: a real HTTP server that replays vLLM's captured responses.

The `.http` files in shared/fixtures/vllm-0.32.0 are raw responses from vLLM 0.32.0 (status
line, headers, body). The server sends them back byte for byte on a real socket, a stream's
frames one write at a time (re-chunked, as the original was `transfer-encoding: chunked`), so
the client under test really reads a stream. A test scripts what the next requests get
(`ReplayServer.push`) and reads what the client sent (`ReplayServer.requests`).

Run alone (the benchmark does) it serves the paced mode: N tokens at a fixed interval in vLLM's
frame format.

    python -m tests.workers.replay_server --port 8011 --paced-tokens 64 --paced-interval 0.02
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]


def _fixtures_dir() -> Path:
    # A copy inside the repository wins; else the shared folder beside the checkout (CI has it).
    if os.environ.get("ARENA_VLLM_FIXTURES"):
        return Path(os.environ["ARENA_VLLM_FIXTURES"])
    inside = _ROOT / "tests" / "fixtures" / "vllm-0.32.0"
    return inside if inside.is_dir() else _ROOT.parent / "shared" / "fixtures" / "vllm-0.32.0"


FIXTURES = _fixtures_dir()
PACED_MODEL = "paced-model"


@dataclass(frozen=True)
class Capture:
    """One captured response: status line and headers as sent, the body as frames."""

    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    @property
    def chunked(self) -> bool:
        return any(
            k.lower() == "transfer-encoding" and v.lower() == "chunked" for k, v in self.headers
        )

    def frames(self) -> list[bytes]:
        """The body's SSE events, each with its blank-line terminator (the bytes as sent)."""
        parts = self.body.split(b"\n\n")
        frames = [part + b"\n\n" for part in parts[:-1]]
        if parts[-1]:
            frames.append(parts[-1])
        return frames

    def data(self) -> list[Any]:
        """The parsed JSON of each `data:` frame ([DONE] left out)."""
        payloads = [f.decode().removeprefix("data: ").strip() for f in self.frames()]
        return [json.loads(p) for p in payloads if p and p != "[DONE]"]

    def json(self) -> Any:
        """The parsed body of a plain (not streamed) response."""
        return json.loads(self.body)

    def content(self) -> str:
        """The answer's text: every content delta of the stream, joined."""
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in self.data() if c.get("choices")
        )

    def head(self) -> bytes:
        # The length is recomputed: models.http's body was edited after capture (see the
        # fixtures' README), and so may be a body that a test edits.
        headers = [
            (k, str(len(self.body)) if k.lower() == "content-length" else v)
            for k, v in self.headers
        ]
        lines = [self.status_line, *(f"{k}: {v}".encode() for k, v in headers)]
        return b"\r\n".join(lines) + b"\r\n\r\n"


def capture_load(name: str) -> Capture:
    """Parse shared/fixtures/vllm-0.32.0/<name>.http."""
    raw = (FIXTURES / f"{name}.http").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    headers = []
    for line in header_lines:
        key, _, value = line.decode("latin-1").partition(":")
        headers.append((key.strip(), value.strip()))
    return Capture(status_line=status_line, headers=headers, body=body)


# What the next chat request gets. Each is a small dataclass the handler interprets.


@dataclass(frozen=True)
class Replay:
    """A captured response, frames `delay` seconds apart; `cut_after`: frames sent before the
    connection is dropped mid-stream; `stall_after`: frames sent before going silent; `edits`:
    (old, new) byte replacements in the body, for an ending no capture shows."""

    name: str
    delay: float = 0.0
    edits: tuple[tuple[bytes, bytes], ...] = ()
    cut_after: int | None = None
    stall_after: int | None = None


@dataclass(frozen=True)
class Reply:
    """A plain response with a body (an error page, a 503 from a proxy, ...)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Paced:
    """`tokens` content deltas `interval` seconds apart, in vLLM 0.32's frame format."""

    tokens: int = 32
    interval: float = 0.02
    model: str = PACED_MODEL


@dataclass(frozen=True)
class Hangup:
    """The connection is closed without any response (a server that died, a stale keep-alive)."""


Action = Replay | Reply | Paced | Hangup


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Script:
    default: Action = field(default_factory=lambda: Replay("chat_stream_usage"))
    queue: deque[Action] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def next_action(self, recorded: Recorded) -> Action:
        with self.lock:
            self.requests.append(recorded)
            return self.queue.popleft() if self.queue else self.default


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The benchmark opens hundreds of streams at once; the default backlog of 5 refuses some.
    request_queue_size = 1024
    script: _Script

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a read timeout, a cancelled stream) is a case the
        # tests provoke, not a server bug worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests assert on what matters

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send_capture(capture_load("health"))
        elif self.path == "/v1/models":
            self._send_capture(capture_load("models"))
        else:
            self._send_reply(Reply(404, b'{"detail":"Not Found"}'))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(
            method="POST",
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        if self.path != "/v1/chat/completions":
            self._send_reply(Reply(404, b'{"detail":"Not Found"}'))
            return
        action = self.server.script.next_action(recorded)
        if isinstance(action, Hangup):
            self._drop()
        elif isinstance(action, Reply):
            self._send_reply(action)
        elif isinstance(action, Paced):
            self._send_paced(action)
        else:
            self._send_replay(action)

    # Writers -----------------------------------------------------------------------------

    def _send_reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for key, value in reply.headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()

    def _send_capture(self, capture: Capture) -> None:
        self.wfile.write(capture.head() + capture.body)
        self.wfile.flush()

    def _send_replay(self, action: Replay) -> None:
        capture = capture_load(action.name)
        for old, new in action.edits:
            capture = replace(capture, body=capture.body.replace(old, new))
        if not capture.chunked:
            self._send_capture(capture)
            return
        self.wfile.write(capture.head())
        self.wfile.flush()
        for index, frame in enumerate(capture.frames()):
            if action.cut_after is not None and index >= action.cut_after:
                self._drop()
                return
            if action.stall_after is not None and index >= action.stall_after:
                self.server.script.stopping.wait(600)
                self._drop()
                return
            if action.delay and index:
                time.sleep(action.delay)
            self._chunk(frame)
        self._chunk(b"")

    def _send_paced(self, action: Paced) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for frame in paced_frames(action):
            if frame is None:
                time.sleep(action.interval)
                continue
            self._chunk(frame)
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _drop(self) -> None:
        # Without the chunked body's terminator: the client sees the connection die mid-answer.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def paced_frames(action: Paced) -> list[bytes | None]:
    """The frames of a paced answer; None marks a pause of one interval (before each token)."""
    rid = f"chatcmpl-paced{time.monotonic_ns():x}"
    created = int(time.time())

    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": action.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    frames: list[bytes | None] = [frame([choice({"role": "assistant", "content": ""})])]
    for i in range(action.tokens):
        frames.append(None)
        last = i == action.tokens - 1
        frames.append(frame([choice({"content": f"t{i} "}, "length" if last else None)]))
    usage = {"prompt_tokens": 8, "total_tokens": 8 + action.tokens}
    frames.append(frame([], usage={**usage, "completion_tokens": action.tokens}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def paced_text(tokens: int) -> str:
    return "".join(f"t{i} " for i in range(tokens))


class ReplayServer:
    """The server on 127.0.0.1 (a free port), served from a thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, default: Action | None = None):
        self._server = _Server((host, port), _Handler)
        self._server.script = _Script()
        if default is not None:
            self._server.script.default = default
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[Recorded]:
        with self._server.script.lock:
            return [r for r in self._server.script.requests if r.method == "POST"]

    def push(self, *actions: Action) -> None:
        """What the next chat requests get, in order; then the default again."""
        with self._server.script.lock:
            self._server.script.queue.extend(actions)

    def close(self) -> None:
        self._server.script.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--paced-tokens", type=int, default=64)
    parser.add_argument("--paced-interval", type=float, default=0.02)
    args = parser.parse_args()
    server = ReplayServer(
        host=args.host,
        port=args.port,
        default=Paced(tokens=args.paced_tokens, interval=args.paced_interval),
    )
    print(f"replaying on {server.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
