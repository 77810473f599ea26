"""A visitor's browser session for the integration tests: cookies, CSRF, JSON calls, SSE."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from arena.models import ArenaModel


@dataclass
class Event:
    event: str
    data: dict
    id: str | None


class Visitor:
    """A visitor's browser session: cookies, CSRF token, JSON calls and SSE reads."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=30)
        self.received: list[str] = []  # everything seen, for the anonymity checks
        page = self.client.get("/")
        assert page.status_code == 200
        self.received.append(page.text)
        self.received.append(json.dumps(dict(page.headers)))

    def post(
        self, path: str, body: dict | None = None, *, content: bytes | None = None
    ) -> httpx.Response:
        headers = {"X-CSRFToken": self.client.cookies.get("csrftoken", "")}
        if content is not None:
            headers["Content-Type"] = "application/json"
            reply = self.client.post(path, content=content, headers=headers)
        else:
            reply = self.client.post(path, json=body or {}, headers=headers)
        self.received.append(reply.text)
        self.received.append(json.dumps(dict(reply.headers)))
        return reply

    def get(self, path: str) -> httpx.Response:
        reply = self.client.get(path)
        self.received.append(reply.text)
        return reply

    def stream(
        self, battle_id: str, *, last_event_id: str | None = None, stop_after: int | None = None
    ) -> list[Event]:
        events = asyncio.run(self._stream(battle_id, last_event_id, stop_after))
        self.received.extend(json.dumps(e.data) + (e.id or "") for e in events)
        return events

    async def _stream(
        self, battle_id: str, last_event_id: str | None, stop_after: int | None
    ) -> list[Event]:
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        events: list[Event] = []
        async with (
            httpx.AsyncClient(base_url=self.base_url, cookies=self.client.cookies) as client,
            client.stream(
                "GET", f"/battles/{battle_id}/stream", headers=headers, timeout=60
            ) as reply,
        ):
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            self.received.append(json.dumps(dict(reply.headers)))
            fields: dict[str, str] = {}
            async for line in reply.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if "event" in fields:
                    events.append(
                        Event(fields["event"], json.loads(fields["data"]), fields.get("id"))
                    )
                    if fields["event"] == "end":
                        break
                    if stop_after is not None and len(events) >= stop_after:
                        break
                fields = {}
        return events


def texts(events: list[Event]) -> dict[str, str]:
    texts = {"a": "", "b": ""}
    for event in events:
        if event.event == "delta":
            texts[event.data["side"]] += event.data["text"]
        elif event.event == "snapshot":
            texts[event.data["side"]] = event.data["text"]
    return texts


def assert_anonymous(visitor: Visitor, models: list[ArenaModel]) -> None:
    secrets = []
    for model in models:
        secrets += [model.name, model.display_name, model.organization, model.options["path"]]
    everything = "\n".join(visitor.received)
    for secret in secrets:
        assert secret not in everything, f"{secret!r} leaked before the vote"
