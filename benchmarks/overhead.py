"""What the arena adds on top of the model server: time to first token and total time.

A paced stand-in for `vllm serve` (tests/workers/replay_server.py: N tokens at a fixed interval,
vLLM's frame format) answers every request. At each concurrency level, V visitors at once:

- direct: each visitor opens two streams straight to the server (sides A and B), as a client of
  the model server would; first token = the first content delta of either side, total = both
  sides finished.
- arena: each visitor posts a battle to uvicorn and reads its SSE stream; the two generations go
  through Redis (the queue), a Celery worker (`--pool threads`) running the `openai` backend
  against the same server, and Redis Streams back to the web process. First token = the first
  `delta` event, total = the `end` event, both timed from the POST.

Everything runs on this machine, on loopback only: embedded Redis, SQLite (or DATABASE_URL),
one uvicorn process, one worker. Load is bounded: each level runs once, with a time limit.

    .venv/bin/python benchmarks/overhead.py                      # levels 1, 50, 200
    .venv/bin/python benchmarks/overhead.py --levels 1,10 --tokens 32
    .venv/bin/python benchmarks/overhead.py --levels 200 --pin    # the arena alone on CPU 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.embedded_redis import free_port, redis_server_start  # noqa: E402
from arena.webserver import uvicorn_command  # noqa: E402
from benchmarks.procstats import cpu_seconds, processes_stop, rss_peak  # noqa: E402

MODELS = ("bench-a", "bench-b")
PIDS: dict[str, int] = {}  # the stack's processes by name (server, worker, web)


ARENA_PROCESSES = ("web", "worker", "redis")


@dataclass
class Sample:
    ttft: float | None  # seconds to the first token; None when the stream failed
    total: float | None
    error: str = ""
    # Arena only, seconds from the POST's start: its reply, the stream's first line.
    posted: float | None = None
    opened: float | None = None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _summary(samples: list[Sample]) -> dict[str, float | int]:
    ok = [s for s in samples if s.ttft is not None and s.total is not None]
    ttft = [s.ttft for s in ok if s.ttft is not None]
    total = [s.total for s in ok if s.total is not None]
    if not ok:
        return {"ok": 0, "failed": len(samples)}
    return {
        "ok": len(ok),
        "failed": len(samples) - len(ok),
        "ttft_p50": statistics.median(ttft),
        "ttft_p95": _percentile(ttft, 0.95),
        "total_p50": statistics.median(total),
        "total_p95": _percentile(total, 0.95),
        "total_max": max(total),
    }


def _throughput(s: dict[str, float | int], rounds: int) -> float:
    """Battles finished per second: all of a level's battles start at once, so the level takes
    as long as its slowest battle (for repeated single-visitor rounds: the median battle)."""
    if not s.get("ok"):
        return 0.0
    if rounds > 1:
        return 1 / float(s["total_p50"])
    return float(s["ok"]) / float(s["total_max"])


# Direct ---------------------------------------------------------------------------------------


async def _direct_side(client: httpx.AsyncClient, base_url: str, started: float) -> float:
    """Seconds (from `started`) to this side's first content delta; reads to the end."""
    body = {
        "model": "paced-model",
        "messages": [{"role": "user", "content": "Say something."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 256,
    }
    first: float | None = None
    async with client.stream("POST", f"{base_url}/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if first is None and line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    first = time.monotonic() - started
    if first is None:
        raise RuntimeError("no content")
    return first


async def _direct_visitor(client: httpx.AsyncClient, base_url: str) -> Sample:
    started = time.monotonic()
    try:
        firsts = await asyncio.gather(*(_direct_side(client, base_url, started) for _ in MODELS))
    except (httpx.HTTPError, RuntimeError) as exc:
        return Sample(None, None, f"{type(exc).__name__}: {exc}")
    return Sample(min(firsts), time.monotonic() - started)


async def direct_level(base_url: str, visitors: int, timeout: float) -> list[Sample]:
    limits = httpx.Limits(max_connections=4 * visitors + 10)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        visits = (_deadline(_direct_visitor(client, base_url), timeout) for _ in range(visitors))
        return list(await asyncio.gather(*visits))


# Through the arena ----------------------------------------------------------------------------


async def _arena_session(url: str, timeout: float) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=timeout)
    page = await client.get("/")
    page.raise_for_status()
    return client


async def _arena_visitor(client: httpx.AsyncClient, gate: asyncio.Event) -> Sample:
    await gate.wait()  # every visitor starts at once
    started = time.monotonic()
    try:
        created = await client.post(
            "/battles",
            json={"prompt": "Say something."},
            headers={"X-CSRFToken": client.cookies.get("csrftoken", "")},
        )
        if created.status_code != 201:
            return Sample(None, None, f"POST /battles {created.status_code}: {created.text[:200]}")
        battle_id = created.json()["id"]
        posted = time.monotonic() - started
        opened: float | None = None
        first: float | None = None
        event = ""
        failed = ""
        seen: list[str] = []
        async with client.stream("GET", f"/battles/{battle_id}/stream") as reply:
            async for line in reply.aiter_lines():
                if opened is None:
                    opened = time.monotonic() - started
                if line.startswith("event: "):
                    event = line[7:]
                    seen.append(event)
                    if event == "delta" and first is None:
                        first = time.monotonic() - started
                    elif event == "failed":
                        failed = "a side failed"
                    elif event == "end":
                        break
        if failed or first is None:
            events = sorted(set(seen)) if seen else [f"HTTP {reply.status_code}"]
            return Sample(None, None, failed or f"no delta; events: {', '.join(events)}")
        return Sample(first, time.monotonic() - started, posted=posted, opened=opened)
    except httpx.HTTPError as exc:
        return Sample(None, None, f"{type(exc).__name__}: {exc}")


async def _deadline(visitor: Coroutine[Any, Any, Sample], timeout: float) -> Sample:
    # SSE keep-alives reset httpx's read timeout: a stream that never ends needs its own limit.
    try:
        return await asyncio.wait_for(visitor, timeout)
    except TimeoutError:
        return Sample(None, None, f"not finished after {timeout:.0f} s")


async def arena_level(url: str, visitors: int, timeout: float) -> list[Sample]:
    # Sessions first (GET / sets the cookies), outside the timed part.
    clients = await asyncio.gather(*(_arena_session(url, timeout) for _ in range(visitors)))
    gate = asyncio.Event()
    try:
        tasks = [asyncio.create_task(_deadline(_arena_visitor(c, gate), timeout)) for c in clients]
        await asyncio.sleep(0.1)
        gate.set()
        return list(await asyncio.gather(*tasks))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


# The stack ------------------------------------------------------------------------------------


# Where the arena's time goes: the database's record of each generation.
_BREAKDOWN = """
import json, statistics, sys
from datetime import datetime
from arena.models import Response
since = datetime.fromisoformat(sys.argv[-1])
rows = list(Response.objects.filter(created_at__gte=since, started_at__isnull=False))
def med(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values)) if values else None
print(json.dumps({
    "generations": len(rows),
    "queued_ms": med([(r.started_at - r.created_at).total_seconds() * 1000 for r in rows]),
    "backend_ttft_ms": med([r.ttft_ms for r in rows]),
    "generation_ms": med([r.latency_ms for r in rows]),
}))
"""


def django_json(env: dict[str, str], snippet: str, *args: str) -> Any:
    """Run `snippet` with Django set up against the stack's database (`env`); the JSON that
    its last line of output holds. The benchmark process itself stays free of Django."""
    done = subprocess.run(
        [sys.executable, "-c", "import django, os, sys; os.environ.setdefault("
         "'DJANGO_SETTINGS_MODULE', 'arena.settings'); django.setup(); exec(sys.argv[1])",
         snippet, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_breakdown(env: dict[str, str], since: str) -> dict[str, object]:
    """Medians over the level's generations: POST to claim, claim to first token, whole run."""
    return dict(django_json(env, _BREAKDOWN, since))


@contextmanager
def stack(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """Start the paced server, Redis, the worker and uvicorn; yield both URLs and the env."""
    processes: list[subprocess.Popen[bytes]] = []
    logs = Path(getattr(args, "logs", None) or work / "logs")
    logs.mkdir(parents=True, exist_ok=True)

    pin = getattr(args, "pin", False)

    def start(name: str, argv: list[str], env: dict[str, str]) -> None:
        if pin:  # the stand-in on CPU 0 with the load generator, the arena on CPU 1
            argv = ["taskset", "-c", "0" if name == "server" else "1", *argv]
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        processes.append(
            subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        )
        PIDS[name] = processes[-1].pid

    try:
        redis_port, server_port, web_port = free_port(), free_port(), free_port()
        processes.append(redis_server_start(redis_port, stdout=subprocess.DEVNULL))
        PIDS["redis"] = processes[-1].pid
        if pin:
            subprocess.run(["taskset", "-a", "-p", "-c", "1", str(PIDS["redis"])], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            os.sched_setaffinity(0, {0})  # this process generates the load
        env = {
            **os.environ,
            "ARENA_DEMO": "1",
            "ARENA_DATA_DIR": str(work),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            # Every visitor here is one IP; the limits would measure themselves, not the arena.
            "ARENA_BATTLES_PER_MINUTE": "1000000",
            "ARENA_BATTLES_PER_IP_MINUTE": "1000000",
            "ARENA_BATTLES_PER_IP_DAY": "1000000",
            "LOG_LEVEL": "WARNING",
        }
        env.setdefault("DATABASE_URL", f"sqlite:///{work / 'bench.sqlite3'}")
        start(
            "server",
            [sys.executable, "-m", "tests.workers.replay_server", "--port", str(server_port),
             "--paced-tokens", str(args.tokens), "--paced-interval", str(args.interval)],
            env,
        )  # fmt: skip
        server_url = f"http://127.0.0.1:{server_port}/v1"
        models = work / "models.toml"
        models.write_text(
            "".join(
                f'[[models]]\nname = "{name}"\ndisplay_name = "{name}"\nbackend = "openai"\n'
                f"max_concurrency = 1000\n[models.options]\n"
                f'base_url = "{server_url}"\nserved_model_name = "paced-model"\n'
                f"[models.sampling]\nmax_tokens = 256\n\n"
                for name in MODELS
            )
        )
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        subprocess.run([*manage, "sync_models", "--file", str(models)], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        queues = ",".join(["celery", *(f"model.{name}" for name in MODELS)])
        start(
            "worker",
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "threads",
             "--concurrency", str(args.worker_threads), "-Q", queues, "--loglevel", "WARNING",
             "--without-heartbeat", "--without-gossip", "--without-mingle"],
            env,
        )  # fmt: skip
        start(
            "web",
            uvicorn_command(host="127.0.0.1", port=web_port,
                            workers=getattr(args, "web_processes", 1),
                            extra=("--log-level", "warning", "--backlog", "2048")),
            env,
        )  # fmt: skip
        arena_url = f"http://127.0.0.1:{web_port}"
        _wait_for(f"http://127.0.0.1:{server_port}/health")
        _wait_for(f"{arena_url}/healthz")
        time.sleep(3)  # the worker connects to the broker after it starts
        yield server_url, arena_url, env
    finally:
        processes_stop(reversed(processes))


def _wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")
        time.sleep(0.2)


def _row(label: str, visitors: int, s: dict[str, float | int], rate: float) -> str:
    if not s.get("ok"):
        return f"| {visitors} | {label} | 0 | {s.get('failed', 0)} | - | - | - | - | - |"
    return (
        f"| {visitors} | {label} | {s['ok']} | {s['failed']} | {s['ttft_p50'] * 1000:.0f} | "
        f"{s['ttft_p95'] * 1000:.0f} | {s['total_p50'] * 1000:.0f} | "
        f"{s['total_p95'] * 1000:.0f} | {rate:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,50,200", help="concurrent visitors per level")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per answer")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between tokens")
    parser.add_argument("--worker-threads", type=int, default=0, help="default: 2 x top level")
    parser.add_argument("--timeout", type=float, default=120, help="per visitor, seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--logs", type=Path, default=None, help="keep the services' logs here")
    parser.add_argument("--web-processes", type=int, default=2, help="uvicorn processes (2)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the stand-in and the load generator on CPU 0, the arena on CPU 1 (taskset)",
    )
    parser.add_argument(
        "--single-rounds", type=int, default=10, help="rounds of the 1-visitor level (10)"
    )
    args = parser.parse_args()
    # `timeout` and Ctrl-C alike: leave through the finally blocks that stop the children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    levels = [int(v) for v in args.levels.split(",")]
    args.worker_threads = args.worker_threads or 2 * max(levels)
    ideal = args.tokens * args.interval
    print(
        f"paced server: {args.tokens} tokens every {args.interval * 1000:.0f} ms "
        f"(an answer takes {ideal:.2f} s at best); worker: threads pool x {args.worker_threads}; "
        f"{os.cpu_count()} CPUs"
    )
    results: list[dict[str, object]] = []
    header = (
        "| visitors | path | ok | failed | first token p50 (ms) | p95 | total p50 (ms) | p95 "
        "| battles/s |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [header]
    versus: list[str] = []
    breakdowns: list[str] = []
    cpu: list[str] = []
    memory: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="arena-bench-") as tmp,
        stack(args, Path(tmp)) as (server_url, arena_url, env),
    ):
        asyncio.run(direct_level(server_url, 2, args.timeout))  # warm up both paths
        asyncio.run(arena_level(arena_url, 2, args.timeout))
        for visitors in levels:
            # One visitor is one sample: that level runs several rounds, one after the other.
            rounds = args.single_rounds if visitors == 1 else 1
            direct, arena = [], []
            since = datetime.now(UTC).isoformat()
            arena_cpu = dict.fromkeys(ARENA_PROCESSES, 0.0)
            with rss_peak(PIDS["worker"]) as worker_rss:
                for _ in range(rounds):
                    direct += asyncio.run(direct_level(server_url, visitors, args.timeout))
                    before = {name: cpu_seconds((PIDS[name],)) for name in ARENA_PROCESSES}
                    arena += asyncio.run(arena_level(arena_url, visitors, args.timeout))
                    for name in ARENA_PROCESSES:
                        arena_cpu[name] += cpu_seconds((PIDS[name],)) - before[name]
            finished = sum(s.total is not None for s in arena)
            if finished:
                each = " | ".join(f"{arena_cpu[n] * 1000 / finished:.1f}" for n in ARENA_PROCESSES)
                whole = sum(arena_cpu.values()) * 1000 / finished
                cpu.append(f"| {visitors} | {finished} | {whole:.1f} | {each} |")
            breakdown = worker_breakdown(env, since)
            breakdown["worker_rss_mb"] = round(worker_rss["peak_mb"])
            memory.append(
                f"| {visitors} | {2 * visitors} | {worker_rss['start_mb']:.0f} | "
                f"{worker_rss['peak_mb']:.0f} |"
            )
            posted = [s.posted * 1000 for s in arena if s.posted is not None]
            opened = [s.opened * 1000 for s in arena if s.opened is not None]
            breakdowns.append(
                f"| {visitors} | {breakdown['generations']} | "
                f"{statistics.median(posted) if posted else float('nan'):.0f} | "
                f"{statistics.median(opened) if opened else float('nan'):.0f} | "
                f"{breakdown['queued_ms']} | "
                f"{breakdown['backend_ttft_ms']} | {breakdown['generation_ms']} |"
            )
            rates = {}
            summaries = {}
            for label, samples in (("direct", direct), ("arena", arena)):
                summary = summaries[label] = _summary(samples)
                rate = rates[label] = _throughput(summary, rounds)
                errors = sorted({s.error for s in samples if s.error})[:3]
                extra = {"worker": breakdown} if label == "arena" else {}
                results.append(
                    {"visitors": visitors, "path": label, "rounds": rounds, **summary,
                     "battles_per_s": rate, "errors": errors, **extra}
                )  # fmt: skip
                lines.append(_row(label, visitors, summary, rate))
                print(lines[-1], flush=True)
                for error in errors:
                    print(f"    error: {error}", flush=True)
            if summaries["direct"].get("ok") and summaries["arena"].get("ok"):
                extra_ms = (summaries["arena"]["ttft_p50"] - summaries["direct"]["ttft_p50"]) * 1000
                versus.append(
                    f"| {visitors} | {rounds} | {extra_ms:.0f} | "
                    f"{100 * rates['arena'] / rates['direct']:.0f}% |"
                )
    print()
    print("\n".join(lines))
    print()
    print("The arena against direct (goals: first token <= 15 ms later, throughput >= 95%):")
    print("| visitors | rounds | first token p50, extra ms | throughput, % of direct |")
    print("| ---: | ---: | ---: | ---: |")
    print("\n".join(versus))
    print()
    print("Inside the arena (medians, ms; the client's clock from the POST's start, then the")
    print("database's record of each answer: its row written to the worker's claim, and on):")
    print("| visitors | generations | POST replied | stream's first line | row to claim "
          "| claim to first token | claim to done |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(breakdowns))
    print()
    print(f"The arena's CPU per battle ({args.tokens} tokens a side; web, worker and Redis")
    print("processes' user + system time while the arena's rounds ran; goal: <= 10 ms):")
    print("| visitors | battles | CPU ms per battle | web | worker | Redis |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(cpu))
    print()
    print("The worker's resident memory (MB; goal: under 300 MB holding 200 streams' worth):")
    print("| visitors | concurrent generations | at the start | peak |")
    print("| ---: | ---: | ---: | ---: |")
    print("\n".join(memory))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
