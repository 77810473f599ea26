"""Everything a visitor can receive before voting, across many battles, names no model."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
import pytest

from arena.models import ArenaModel
from tests.visitor import Visitor

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BATTLES = 8


def _secrets(models: list[ArenaModel]) -> list[str]:
    """What would identify a model: names, display names, organization, backend details."""
    found: list[str] = []
    for model in models:
        found += [model.name, model.display_name, model.organization, model.queue]
        found += [str(v) for k, v in model.options.items() if k in ("path", "base_url")]
    return [s for s in found if s]


def _crawl_static(client: httpx.Client, html: str, base: str) -> list[str]:
    """The static files (scripts, styles, icons) a page links to, fetched."""
    bodies = []
    for link in set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html)):
        reply = client.get(urljoin(base, link))
        assert reply.status_code == 200, link
        bodies.append(reply.text)
    return bodies


def test_nothing_a_visitor_receives_before_the_vote_names_a_model(
    live_server_url: str, worker: object, cast: dict
) -> None:
    visitor = Visitor(live_server_url)
    page = visitor.received[0]
    visitor.received += _crawl_static(visitor.client, page, live_server_url)
    stranger = Visitor(live_server_url)
    for k in range(BATTLES):
        created = visitor.post("/battles", {"prompt": f"Question number {k}?"})
        assert created.status_code == 201
        battle_id = created.json()["id"]
        visitor.stream(battle_id)
        if k % 2:
            visitor.post(f"/battles/{battle_id}/turns", {"prompt": "And then?"})
            visitor.stream(battle_id)
        if k % 3 == 0:
            visitor.post(f"/battles/{battle_id}/regenerate")
            visitor.stream(battle_id)
        visitor.get(f"/battles/{battle_id}")
        # Error replies about this battle: wrong choice, a stranger's attempts.
        visitor.post(f"/battles/{battle_id}/vote", {"choice": "maybe"})
        visitor.received.append(stranger.post(f"/battles/{battle_id}/vote", {"choice": "a"}).text)
        visitor.received.append(stranger.get(f"/battles/{battle_id}").text)
    for path in ("/battles/unknown", "/no/such/page", "/battles/unknown/stream"):
        visitor.get(path)
    visitor.received += [f"{c.name}={c.value}" for c in visitor.client.cookies.jar]

    everything = "\n".join(visitor.received)
    assert "Question number 7?" in everything  # the crawl did see the battles
    for secret in _secrets(list(cast.values())):
        assert secret not in everything, f"{secret!r} reached the visitor before the vote"
