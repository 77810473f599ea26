"""A real browser: Debian's chromium driven by Playwright (never a downloaded browser).

`page` is a fresh browser page; `screenshot(page, name)` saves test-output/screenshots/<name>.png,
where people look at them (the README shows some). `scripted_model` is an OpenAI-compatible
server that streams fixed markdown answers slowly; `scripted_worker` a worker for its queues;
`markdown_cast` makes its two models the arena's only ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from arena.models import ArenaModel
from tests.conftest import stop, subprocess_env, worker_start

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = os.environ.get("ARENA_CHROMIUM", "/usr/bin/chromium")
# Flags that keep chromium quiet on a closed network and runnable as root in CI.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser(live_server_url: str, worker: object) -> Iterator[object]:
    """Chromium, for one test module.

    While Playwright's sync API is alive, its event loop counts as running in this thread, and
    Django refuses database calls from such a thread. Test code and Playwright take turns in
    one thread, so the calls are safe: DJANGO_ALLOW_ASYNC_UNSAFE is set while the browser is
    up, and only then (module scope: later modules get the check back). The shared web server
    and worker start first, so they do not inherit the variable; servers a test starts itself
    pass `DJANGO_ALLOW_ASYNC_UNSAFE=""` (see `server_env`).
    """
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def server_env(**extra: str) -> dict[str, str]:
    """`subprocess_env` for a server started while the browser is up: without the test
    process's DJANGO_ALLOW_ASYNC_UNSAFE, so the server keeps Django's async safety check."""
    return subprocess_env(**{"DJANGO_ALLOW_ASYNC_UNSAFE": "", **extra})


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    # Chromium reports what the Content-Security-Policy blocked on the console; every browser
    # test thereby checks that the pages keep working under the policy.
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.csp_violations = blocked
    yield page
    context.close()
    assert blocked == [], f"the Content-Security-Policy blocked something: {blocked}"


@pytest.fixture
def screenshot() -> Callable[[object, str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: object, name: str, *, full_page: bool = True) -> Path:
        # A full-page capture of an emulated phone drops its touch media features (the
        # picture then shows what `(hover: none)` hides): phones are shot one screen at a time.
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)  # type: ignore[attr-defined]
        return path

    return take


# --- A model that writes markdown, slowly ---------------------------------------------------------

# What the scripted models answer: every construct the answer panes render, plus raw HTML and a
# script link that must arrive as plain text (model output is untrusted).
ANSWERS = {
    "md-a": """## Palindromes in Python

A palindrome reads the same **forwards and backwards**. Three steps:

1. Keep only letters and digits.
2. Lower-case what is left.
3. Compare the string with its reverse.

```python
def is_palindrome(text: str) -> bool:
    kept = [c.lower() for c in text if c.isalnum()]
    return kept == kept[::-1]  # O(n) time and memory
```

| input | result |
| --- | --- |
| `"Racecar"` | `True` |
| `"A man, a plan"` | `False` |

Raw HTML stays text: <img src=x onerror="window.pwned=1"><script>window.pwned=1</script>
and [this link](javascript:window.pwned=1) does nothing.
""",
    "md-b": """### Short answer

Reverse the string and compare, *after* normalising it:

```js
const isPalindrome = (s) => {
  const t = s.toLowerCase().replace(/[^a-z0-9]/g, "");
  return t === [...t].reverse().join("");
};
```

- Works for `"Racecar"` and `"No lemon, no melon"`.
- Mind Unicode: `normalize("NFC")` first if accents matter.

> Tip: two indices walking towards the middle avoid the copy.
""",
}
# A long answer: far taller than its pane, as a chatty model's would be.
ANSWERS["md-long"] = "## A long story\n\n" + "\n\n".join(
    f"Paragraph {k}: the river ran past the old mill, under the stone bridge and on to the sea, "
    "carrying leaves, light and the sound of the town with it."
    for k in range(1, 41)
)


class ScriptedModel:
    """An OpenAI-compatible chat server whose models (`md-a`, `md-b`) stream a fixed markdown
    answer a few characters at a time, `interval` seconds apart: a stand-in at the external
    boundary, slow enough for a browser to watch the answers arrive."""

    def __init__(self, *, interval: float = 0.03) -> None:
        self.interval = interval
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"data": [{"id": name} for name in ANSWERS]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = ANSWERS.get(request.get("model"), ANSWERS["md-a"])
                pieces = re.findall(r"\S{1,6}\s*|\s+", answer)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i, piece in enumerate(pieces):
                        time.sleep(scripted.interval)
                        last = i == len(pieces) - 1
                        self._frame({"content": piece}, "stop" if last else None)
                    usage = {"prompt_tokens": 9, "completion_tokens": len(pieces)}
                    self._chunk(b"data: " + json.dumps({"choices": [], "usage": usage}).encode())
                    self._chunk(b"data: [DONE]")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _frame(self, delta: dict[str, str], finish: str | None) -> None:
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                self._chunk(b"data: " + json.dumps({"choices": [choice]}).encode())

            def _chunk(self, data: bytes) -> None:
                data += b"\n\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        return Handler


@pytest.fixture(scope="session")
def scripted_model() -> Iterator[ScriptedModel]:
    server = ScriptedModel()
    yield server
    server.close()


@pytest.fixture(scope="session")
def scripted_worker(django_db_setup: None) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker for the scripted models' queues."""
    queues = ["model.md-a", "model.md-b", "model.md-long"]
    process = worker_start(server_env(), name="browser-worker", queues=queues)
    yield process
    stop(process)


@pytest.fixture
def markdown_cast(cast: dict, scripted_model: ScriptedModel) -> dict:
    """The arena's only enabled models are the two scripted ones (the tiny models are off)."""
    ArenaModel.objects.filter(name__in=["tiny-a", "tiny-b"]).update(enabled=False)
    scripted_model.interval = 0.03
    models = {}
    for name, display in (("md-a", "Markdown Alpha"), ("md-b", "Markdown Beta")):
        options = {"base_url": scripted_model.base_url, "served_model_name": name}
        models[name] = ArenaModel.objects.create(
            name=name, display_name=display, organization="Scripted Labs", license="MIT",
            backend="openai", options=options,
        )  # fmt: skip
    return models


@pytest.fixture
def long_cast(markdown_cast: dict, scripted_model: ScriptedModel) -> dict:
    """The scripted pair, with md-b replaced by md-long, whose answer is far taller than a pane."""
    ArenaModel.objects.filter(name="md-b").update(enabled=False)
    scripted_model.interval = 0.002
    options = {"base_url": scripted_model.base_url, "served_model_name": "md-long"}
    long = ArenaModel.objects.create(
        name="md-long", display_name="Markdown Long", organization="Scripted Labs",
        license="MIT", backend="openai", options=options,
    )  # fmt: skip
    return {"md-a": markdown_cast["md-a"], "md-long": long}


# --- What a person sees: nothing wider than the screen, no text one character per line -------

# For every visible element: does it reach past the viewport, or scroll sideways inside its own
# box (a clipped table)? Code blocks and tables inside a model's answer may scroll: their lines
# cannot be reflowed. For every text node of 3+ characters: how many lines does it take? A text
# on 3+ lines with at most 2 characters a line is squeezed into a column too narrow for it.
LAYOUT_PROBLEMS_JS = (Path(__file__).parent / "layout_problems.js").read_text()


def layout_problems(page: object) -> list[str]:
    """What a person would see as broken on this page at its viewport (empty when none)."""
    return page.evaluate(LAYOUT_PROBLEMS_JS)  # type: ignore[attr-defined,no-any-return]


# --- A network that can drop ----------------------------------------------------------------------


class FlakyNetwork:
    """A TCP relay in front of a web server: `down()` cuts every open connection and refuses
    new ones (as a dropped Wi-Fi would), `up()` lets them through again. Chromium's offline
    emulation leaves an open event stream alone, so a real cut is needed to test a reconnect."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.is_up = True
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def down(self) -> None:
        with self.lock:
            self.is_up = False
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.open.clear()

    def up(self) -> None:
        self.is_up = True

    def close(self) -> None:
        self.down()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.is_up:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def flaky_network(live_server_url: str) -> Iterator[FlakyNetwork]:
    network = FlakyNetwork(live_server_url)
    yield network
    network.close()
