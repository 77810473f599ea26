"""Many visitors at once playing whole battles against the real stack, and what the database
kept of their votes.

Each simulated visitor (its own session: cookies and CSRF token from `GET /`) plays `--battles`
battles in a row: `POST /battles`, reads the SSE stream to its `end` event, votes. Every
`--double-every`-th vote is sent twice at the same moment, as a double click would. Afterwards:

- server errors: every 5xx reply is counted (there must be none);
- votes: every acknowledged vote (201) is in the database exactly once with its outcome, and
  nothing else is; of each concurrent double submit exactly one is stored (201 + 409);
- speed: votes per second over the whole run, and p50 / p99 latency per request kind.

The stack is benchmarks/overhead.py's: embedded Redis, SQLite in a temporary folder (or
DATABASE_URL), one uvicorn process, one Celery worker (threads pool), and a paced stand-in for
the model servers, all on loopback. Bounded: `--visitors` x `--battles` battles, each visitor
limited to `--timeout` seconds and the whole run to `--max-seconds`. Rate limits are raised
for the run: every visitor comes from one address, and the limits would measure themselves.

    .venv/bin/python benchmarks/load.py                           # 100 visitors x 3 battles
    .venv/bin/python benchmarks/load.py --visitors 20 --battles 2 --tokens 8

The short form runs as a test (tests/arena/test_load.py) against the test stack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.overhead import _percentile, django_json, stack  # noqa: E402

CHOICES = {"a": "model_a", "b": "model_b", "tie": "tie", "both_bad": "both_bad"}
# Raised limits for a load run (see the module docstring), also used by the test.
OPEN_LIMITS = {
    "ARENA_BATTLES_PER_MINUTE": "1000000",
    "ARENA_BATTLES_PER_IP_MINUTE": "1000000",
    "ARENA_BATTLES_PER_IP_DAY": "1000000",
    "ARENA_VOTES_PER_MINUTE": "1000000",
}


@dataclass
class Tally:
    """What the visitors saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    # Battle id -> the outcome a 201 acknowledged.
    acked: dict[str, str] = field(default_factory=dict)
    # The two statuses of each concurrent double submit, sorted.
    doubles: list[tuple[int, int]] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    battles_started: int = 0
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def record(self, kind: str, status: int, started: float) -> None:
        self.statuses[status] += 1
        self.latency[kind].append(time.monotonic() - started)


async def _session(url: str, timeout: float) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=timeout)
    page = await client.get("/")
    page.raise_for_status()
    return client


async def _post(
    client: httpx.AsyncClient, tally: Tally, kind: str, path: str, body: dict[str, str]
) -> httpx.Response:
    started = time.monotonic()
    reply = await client.post(
        path, json=body, headers={"X-CSRFToken": client.cookies.get("csrftoken", "")}
    )
    tally.record(kind, reply.status_code, started)
    return reply


async def _stream_to_end(client: httpx.AsyncClient, tally: Tally, battle_id: str) -> str:
    """Read the battle's stream to its end; '' when both sides are done, else what went wrong."""
    started = time.monotonic()
    failed = ""
    async with client.stream("GET", f"/battles/{battle_id}/stream") as reply:
        if reply.status_code != 200:
            tally.record("stream", reply.status_code, started)
            return f"stream {reply.status_code}"
        event = ""
        async for line in reply.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event in ("failed", "interrupted"):
                    failed = f"stream event {event}"
                elif event == "end":
                    break
        if event != "end":
            failed = failed or "the stream ended without an end event"
    tally.record("stream", 200, started)
    return failed


async def _visitor(
    client: httpx.AsyncClient, tally: Tally, *, number: int, battles: int, double_every: int
) -> None:
    rng = random.Random(number)
    for index in range(battles):
        started = time.monotonic()
        created = await _post(client, tally, "create", "/battles", {"prompt": f"Say {index}."})
        if created.status_code != 201:
            tally.errors.append(f"POST /battles {created.status_code}: {created.text[:200]}")
            continue
        tally.battles_started += 1
        battle_id = created.json()["id"]
        problem = await _stream_to_end(client, tally, battle_id)
        if problem:
            tally.errors.append(f"battle {battle_id}: {problem}")
            continue
        choice = rng.choice(list(CHOICES))
        path, body = f"/battles/{battle_id}/vote", {"choice": choice}
        serial = number * battles + index
        if double_every and serial % double_every == 0:
            first, second = await asyncio.gather(
                _post(client, tally, "vote", path, body), _post(client, tally, "vote", path, body)
            )
            tally.doubles.append(tuple(sorted((first.status_code, second.status_code))))  # type: ignore[arg-type]
            replies = [first, second]
        else:
            replies = [await _post(client, tally, "vote", path, body)]
        for reply in replies:
            if reply.status_code == 201:
                tally.acked[battle_id] = CHOICES[choice]
            elif reply.status_code != 409:
                tally.errors.append(f"vote {reply.status_code}: {reply.text[:200]}")
        tally.latency["battle"].append(time.monotonic() - started)


async def load_run(
    url: str,
    *,
    visitors: int,
    battles: int,
    double_every: int = 5,
    timeout: float = 120,
    max_seconds: float = 600,
) -> Tally:
    """`visitors` sessions at once, each playing `battles` battles; what they saw."""
    tally = Tally()
    # Sessions first (GET / sets the cookies), outside the timed part.
    clients = await asyncio.gather(*(_session(url, timeout) for _ in range(visitors)))

    async def bounded(number: int, client: httpx.AsyncClient) -> None:
        # SSE keep-alives reset httpx's read timeout: a visitor needs a limit of its own.
        try:
            await asyncio.wait_for(
                _visitor(client, tally, number=number, battles=battles, double_every=double_every),
                timeout,
            )
        except TimeoutError:
            tally.errors.append(f"visitor {number} not finished after {timeout:.0f} s")
        except httpx.HTTPError as exc:
            tally.errors.append(f"visitor {number}: {type(exc).__name__}: {exc}")

    started = time.monotonic()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(bounded(n, c) for n, c in enumerate(clients))), max_seconds
        )
    except TimeoutError:
        tally.errors.append(f"the run did not finish in {max_seconds:.0f} s")
    finally:
        tally.seconds = time.monotonic() - started
        await asyncio.gather(*(c.aclose() for c in clients))
    return tally


def votes_verify(tally: Tally, stored: dict[str, list[str]]) -> list[str]:
    """What is wrong with the stored votes (battle id -> outcomes stored), given what the
    visitors were told; an empty list when every acknowledged vote is there exactly once."""
    problems = []
    for battle_id, outcome in tally.acked.items():
        found = stored.get(battle_id, [])
        if found != [outcome]:
            problems.append(f"battle {battle_id}: acknowledged {outcome}, stored {found}")
    for battle_id in stored.keys() - tally.acked.keys():
        problems.append(f"battle {battle_id}: a vote stored that no visitor was told about")
    for pair in tally.doubles:
        if pair != (201, 409):
            problems.append(f"a double submit got {pair}, not one 201 and one 409")
    return problems


# The votes in the stack's database: battle id -> every stored outcome.
_STORED_VOTES = """
import json
from arena.models import Vote
stored = {}
for battle_id, outcome in Vote.objects.values_list("battle_id", "outcome"):
    stored.setdefault(battle_id, []).append(outcome)
print(json.dumps(stored))
"""


def report(tally: Tally, problems: list[str]) -> str:
    def ms(kind: str, q: float) -> str:
        values = tally.latency.get(kind) or []
        return f"{_percentile(values, q) * 1000:.0f}" if values else "-"

    lines = [
        f"battles started: {tally.battles_started}, votes acknowledged: {len(tally.acked)}, "
        f"double submits: {len(tally.doubles)}, in {tally.seconds:.1f} s",
        f"votes/s: {len(tally.acked) / tally.seconds if tally.seconds else 0:.1f}",
        f"5xx replies: {tally.server_errors}; statuses: {dict(sorted(tally.statuses.items()))}",
        "",
        "| request | count | p50 (ms) | p99 (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind in ("create", "stream", "vote", "battle"):
        count = len(tally.latency.get(kind) or [])
        lines.append(f"| {kind} | {count} | {ms(kind, 0.5)} | {ms(kind, 0.99)} |")
    lines += ["", f"vote check: {'ok' if not problems else f'{len(problems)} problems'}"]
    lines += [f"  {p}" for p in problems[:10]]
    lines += [f"  error: {e}" for e in sorted(set(tally.errors))[:10]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=100, help="concurrent visitors")
    parser.add_argument("--battles", type=int, default=3, help="battles per visitor")
    parser.add_argument("--double-every", type=int, default=5, help="every n-th vote sent twice")
    parser.add_argument("--tokens", type=int, default=16, help="tokens per answer")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between tokens")
    parser.add_argument("--worker-threads", type=int, default=0, help="default: 2 x visitors")
    parser.add_argument("--timeout", type=float, default=180, help="per visitor, seconds")
    parser.add_argument("--max-seconds", type=float, default=600, help="the whole run")
    args = parser.parse_args()
    if args.visitors * args.battles > 20_000:
        parser.error("at most 20000 battles per run")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.worker_threads = args.worker_threads or min(2 * args.visitors, 400)
    os.environ.update(OPEN_LIMITS)  # the stack's processes inherit them
    print(
        f"{args.visitors} visitors x {args.battles} battles; paced model: {args.tokens} tokens "
        f"every {args.interval * 1000:.0f} ms; worker: threads x {args.worker_threads}; "
        f"{os.cpu_count()} CPUs; database: {os.environ.get('DATABASE_URL', 'SQLite')}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="arena-load-") as tmp,
        stack(args, Path(tmp)) as (_, arena_url, env),
    ):
        asyncio.run(load_run(arena_url, visitors=2, battles=1, double_every=0))  # warm up
        before = django_json(env, _STORED_VOTES)
        tally = asyncio.run(
            load_run(
                arena_url,
                visitors=args.visitors,
                battles=args.battles,
                double_every=args.double_every,
                timeout=args.timeout,
                max_seconds=args.max_seconds,
            )
        )
        stored = django_json(env, _STORED_VOTES)
    fresh = {k: v for k, v in stored.items() if k not in before}
    problems = votes_verify(tally, fresh)
    print(report(tally, problems))
    if tally.server_errors or problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
