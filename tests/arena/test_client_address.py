"""The client address behind the rate limits: X-Forwarded-For only from trusted proxy hops.

uvicorn (unless started with --no-proxy-headers) takes a loopback peer's address from
X-Forwarded-For, so from 127.0.0.1 a spoofed header used to give every battle a fresh address
for the per-address limits. The integration tests run a real uvicorn with its default flags.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from django.test import RequestFactory, override_settings

from arena.streams import redis_client
from arena.visitors import UNTRUSTED_FORWARDED, client_address
from tests.conftest import ROOT, stop, subprocess_env, web_start
from tests.visitor import Visitor


def _address(peer: str, forwarded: str | None = None) -> str:
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    return client_address(RequestFactory().get("/", REMOTE_ADDR=peer, **headers))


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, None, "198.51.100.9"),
        (0, "203.0.113.5", UNTRUSTED_FORWARDED),  # never the client's own claim
        (1, None, "198.51.100.9"),  # a probe that reached us without the proxy
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # a forged entry on the left is ignored
        (1, "6.6.6.6,203.0.113.5:4711", "203.0.113.5"),
        (1, "[2001:db8::7]:443", "2001:db8::7"),
        (1, "2001:DB8:0::7", "2001:db8::7"),
        (2, "6.6.6.6, 203.0.113.5, 10.0.0.2", "203.0.113.5"),  # CDN, then our own proxy
        (2, "203.0.113.5", "198.51.100.9"),  # fewer entries than trusted hops
        (1, "unknown", "unknown"),
    ],
)
def test_the_address_is_the_entry_that_many_hops_from_the_right(
    hops: int, forwarded: str | None, expected: str
) -> None:
    with override_settings(ARENA_TRUSTED_PROXY_HOPS=hops):
        assert _address("198.51.100.9", forwarded) == expected


@pytest.mark.parametrize(
    ("variables", "hops", "ssl_header"),
    [
        ({}, 0, None),
        ({"ARENA_BEHIND_PROXY": "1"}, 1, "HTTP_X_FORWARDED_PROTO"),
        ({"ARENA_TRUSTED_PROXY_HOPS": "2"}, 2, "HTTP_X_FORWARDED_PROTO"),
        ({"ARENA_BEHIND_PROXY": "1", "ARENA_TRUSTED_PROXY_HOPS": "0"}, 0, None),
    ],
)
def test_behind_proxy_is_one_trusted_hop(variables: dict, hops: int, ssl_header: str) -> None:
    code = (
        "from django.conf import settings; "
        "print(settings.ARENA_TRUSTED_PROXY_HOPS, "
        "(getattr(settings, 'SECURE_PROXY_SSL_HEADER', None) or [None])[0])"
    )
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("ARENA_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**env, "ARENA_DEMO": "1", **variables},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.splitlines()[-1].split() == [str(hops), str(ssl_header)], result.stderr


# --- Over a real uvicorn, as the demo and the units run it ----------------------------------

PER_ADDRESS = 3


@pytest.fixture
def webs(cast: dict) -> Iterator[dict[int, str]]:
    """Two web processes: one trusting no proxy (the demo), one trusting one hop."""
    redis_client().flushdb()
    limits = {"ARENA_BATTLES_PER_MINUTE": "1000", "ARENA_BATTLES_PER_IP_MINUTE": str(PER_ADDRESS)}
    started = {}
    try:
        for hops in (0, 1):
            env = subprocess_env(**limits, ARENA_TRUSTED_PROXY_HOPS=str(hops))
            started[hops] = web_start(env, name=f"client-address-web-{hops}")
        yield {hops: url for hops, (_, url) in started.items()}
    finally:
        for process, _ in started.values():
            stop(process)


def _created(url: str, forwarded: list[str]) -> int:
    """Battles started by fresh sessions (no cookie to count them by), one per header."""
    created = 0
    for value in forwarded:
        visitor = Visitor(url)
        visitor.client.headers["X-Forwarded-For"] = value
        reply = visitor.post("/battles", {"prompt": "Hello?"})
        assert reply.status_code in (201, 429), reply.text
        created += reply.status_code == 201
    return created


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_spoofed_forwarded_for_gets_no_fresh_address(webs: dict[int, str]) -> None:
    spoofed = [f"203.0.113.{k}" for k in range(10)]
    assert _created(webs[0], spoofed) == PER_ADDRESS
    redis_client().flushdb()
    # Behind one proxy: the entry it appended counts, whatever the client wrote before it.
    assert _created(webs[1], [f"{s}, 198.51.100.7" for s in spoofed]) == PER_ADDRESS
    assert _created(webs[1], [f"6.6.6.6, {s}" for s in spoofed]) == len(spoofed)
