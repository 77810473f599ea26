"""Fixtures of the `openai` backend's tests: a replay server of captured vLLM responses, and the
backend's connection pools dropped after each test (each test's server has its own port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.workers.replay_server import ReplayServer
from workers.backends.openai import http_clients_close


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer()
    yield server
    server.close()


@pytest.fixture
def fresh_http_clients() -> Iterator[None]:
    yield
    http_clients_close()
