"""Loaded first (`-p tests.testenv` in pyproject): the environment every test process shares.

It must run before pytest-django imports the settings, which is why it is a plugin and not a
conftest. Unless REDIS_URL is given (CI may pass an external server), it starts the embedded
redis-server on a free port for the whole run; the web server and worker that the integration
tests start inherit the same environment, so every process talks to the same Redis.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile

# The suite never reads a developer's `.env` (the one `make demo` writes).
os.environ.setdefault("ARENA_ENV_FILE", "")
os.environ.setdefault("ARENA_DEMO", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Cached leaderboard replies see a new snapshot at once (no per-process grace period).
os.environ.setdefault("ARENA_LEADERBOARD_FRESH_S", "0")
os.environ.setdefault("ARENA_DATA_DIR", tempfile.mkdtemp(prefix="arena-test-"))

_redis: subprocess.Popen[bytes] | None = None

if not os.environ.get("REDIS_URL"):
    from arena.embedded_redis import free_port, redis_server_start

    _port = free_port()
    _redis = redis_server_start(_port, stdout=subprocess.DEVNULL)
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{_port}/0"


def _redis_stop() -> None:
    if _redis is not None and _redis.poll() is None:
        _redis.terminate()
        _redis.wait(timeout=10)


# atexit too: pytest skips pytest_unconfigure when a conftest fails to import.
atexit.register(_redis_stop)


def pytest_unconfigure(config: object) -> None:
    _redis_stop()
