"""The model server on the cluster test's GPU hosts: vLLM's captured frames, and who asked.

Every chat request gets vLLM 0.32's captured stream (`chat_stream_usage`, byte for byte through
tests/workers/replay_server.py), its frames `--delay` seconds apart, with one edit: the finish
reason is `stop`, because an answer cut off at the length limit makes a vote not count.
`GET /_cluster/requests` lists the chat requests so far: the client's address, the model asked
for, the last prompt and the state. The test reads it to learn which worker host is generating
which answer: the model server is the one place that sees it.

    python -m tests.cluster.model_server --host 10.213.47.31 --port 8000 --delay 0.1
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from typing import Any

from tests.workers import replay_server
from tests.workers.replay_server import Replay

STOP = ((b'"finish_reason":"length"', b'"finish_reason":"stop"'),)
REQUESTS_PATH = "/_cluster/requests"

_requests: list[dict[str, Any]] = []
_lock = threading.Lock()


class _Handler(replay_server._Handler):
    def do_GET(self) -> None:
        if self.path != REQUESTS_PATH:
            super().do_GET()
            return
        with _lock:
            body = json.dumps(_requests).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        # Read the body here to log it, then hand the replay handler a copy to read again.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            request = json.loads(body)
            prompt = [m["content"] for m in request["messages"] if m["role"] == "user"][-1]
            model = request["model"]
        except (ValueError, KeyError, IndexError, TypeError):
            prompt, model = None, None
        entry = {"client": self.client_address[0], "model": model, "prompt": prompt,
                 "state": "streaming", "started": time.time()}  # fmt: skip
        with _lock:
            _requests.append(entry)
        connection = self.rfile
        self.rfile = io.BytesIO(body)
        try:
            super().do_POST()
            entry["state"] = "sent"
        except OSError:
            entry["state"] = "dropped"  # the client went away mid-answer
            raise
        finally:
            self.rfile = connection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds between frames")
    args = parser.parse_args()
    server = replay_server._Server((args.host, args.port), _Handler)
    server.script = replay_server._Script(
        default=Replay("chat_stream_usage", delay=args.delay, edits=STOP)
    )
    print(f"serving vLLM frames on http://{args.host}:{args.port}/v1", flush=True)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
