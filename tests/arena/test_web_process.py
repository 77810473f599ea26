"""The web process as the arena starts it (arena/webserver.py: run_arena, the benchmarks):
several uvicorn workers, each with uvloop and httptools loaded and TCP_NODELAY on every accepted
connection, and the URLconf built when the process starts, not on its first request.

With `--workers` and asyncio's own loop, no connection got TCP_NODELAY (the listening socket
reaches the workers without its protocol number), and every small SSE write waited for the
client's delayed ACK: ~40 ms before a stream's first line."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arena.embedded_redis import free_port
from arena.webserver import uvicorn_command
from tests.conftest import ROOT, stop

_SYS_PIDFD_OPEN, _SYS_PIDFD_GETFD = 434, 438  # x86_64 and aarch64 alike
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="module")
def web() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """uvicorn started the arena's way, with two worker processes; no database needed."""
    port = free_port()
    log = ROOT / "var" / "test-web-process.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            uvicorn_command(host="127.0.0.1", port=port, workers=2),
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while len(_children(process.pid)) < 2 or not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"uvicorn did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield process, port
    stop(process)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _children(pid: int) -> list[int]:
    """uvicorn's worker processes (multiprocessing's spawned children; not its resource
    tracker)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [
            int(child)
            for child in text.split()
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        ]
    except OSError:
        return []


def _server_side(children: list[int], client: socket.socket) -> socket.socket:
    """The worker's end of `client`'s connection, duplicated into this process (pidfd_getfd)."""
    for pid in children:
        pidfd = _libc.syscall(_SYS_PIDFD_OPEN, pid, 0)
        if pidfd < 0:
            pytest.skip(f"pidfd_open is not available here (errno {ctypes.get_errno()})")
        try:
            for name in os.listdir(f"/proc/{pid}/fd"):
                fd = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(name), 0)
                if fd < 0:
                    if ctypes.get_errno() in (1, 38):  # EPERM, ENOSYS
                        pytest.skip("pidfd_getfd is not allowed here")
                    continue
                try:
                    candidate = socket.socket(fileno=fd)
                except OSError:
                    os.close(fd)
                    continue
                try:
                    if candidate.getpeername() == client.getsockname():
                        return candidate
                except OSError:
                    pass
                candidate.close()
        finally:
            os.close(pidfd)
    raise AssertionError("no worker holds the connection")


def test_every_accepted_connection_has_tcp_nodelay(
    web: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = web
    children = _children(process.pid)
    for _ in range(4):  # the kernel hands connections to either worker
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
            server = _server_side(children, client)
            with server:
                assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_each_worker_runs_uvloop_and_httptools(web: tuple[subprocess.Popen[bytes], int]) -> None:
    process, _ = web
    for pid in _children(process.pid):
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "/uvloop/" in maps, f"worker {pid} did not load uvloop"
        assert "/httptools/" in maps, f"worker {pid} did not load httptools"


def test_the_urlconf_is_built_when_the_process_starts() -> None:
    probe = (
        "import sys; import arena.asgi; from django.urls import get_resolver; "
        "print('arena.urls' in sys.modules, get_resolver()._populated)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "True"]
