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
4. One uvicorn process serves the app; `--clients` concurrent httpx clients request /leaderboard,
   then /api/leaderboard, then a static file, `--requests` requests each, after a warm-up.

The report (p50, p95, req/s and the ratio to the static file) is printed as Markdown.
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
from pathlib import Path

import httpx

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
                                      moderation)
            WITH RECURSIVE seq(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM seq WHERE k < {votes}),
                 pick(k, a, d) AS (SELECT k, abs(random()) % {N_MODELS},
                                          1 + abs(random()) % {N_MODELS - 1} FROM seq)
            SELECT printf('b%09d', k), {first} + a, {first} + (a + d) % {N_MODELS},
                   printf('v%d', k % 5000), '', datetime('now', printf('-%d seconds', k * 3)),
                   '[]'
            FROM pick
            """
        )
        cursor.execute(
            """
            INSERT INTO arena_vote (battle_id, model_a_id, model_b_id, outcome, visitor_id,
                conversation_a, conversation_b, is_valid, invalid_reason, language, turns,
                prompt_chars, has_code, tokens_a, tokens_b, style_a, style_b,
                battle_started_at, created_at, source, external_id, anony, prompt_key)
            SELECT id, model_a_id, model_b_id,
                   CASE abs(random()) % 10 WHEN 0 THEN 'tie' WHEN 1 THEN 'both_bad'
                        WHEN 2 THEN 'model_b' WHEN 3 THEN 'model_b' WHEN 4 THEN 'model_b'
                        ELSE 'model_a' END,
                   visitor_id, '[]', '[]', abs(random()) % 50 != 0,
                   '', CASE abs(random()) % 10 WHEN 0 THEN 'de' WHEN 1 THEN 'zh' ELSE 'en' END,
                   1 + abs(random()) % 3, 10 + abs(random()) % 3000, abs(random()) % 5 = 0,
                   abs(random()) % 900, abs(random()) % 900, '{}', '{}',
                   created_at, created_at, 'arena', '', 1, ''
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


async def load(url: str, clients: int, requests: int) -> tuple[list[float], float, int]:
    """`requests` GETs of `url` by `clients` concurrent clients: latencies, wall time, errors."""
    latencies: list[float] = []
    errors = 0
    remaining = requests
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                reply = await client.get(url)
                latencies.append(time.perf_counter() - start)
                errors += reply.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, time.perf_counter() - started, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=10_000_000)
    parser.add_argument("--battles", type=int, default=2_000_000, help="generated, for the fit")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_only:
        seed(args.votes, args.battles)
        return

    from arena.embedded_redis import free_port

    workdir = Path(tempfile.mkdtemp(prefix="arena-bench-lb-"))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
           "ARENA_DATA_DIR": str(workdir), "ARENA_DEMO": "1", "LOG_LEVEL": "WARNING",
           "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:1/0")}  # fmt: skip
    print(f"# database in {workdir}")
    started = time.monotonic()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env,
                   check=True)  # fmt: skip
    subprocess.run([sys.executable, __file__, "--seed-only", "--votes", str(args.votes),
                    "--battles", str(args.battles)], cwd=ROOT, env=env, check=True)  # fmt: skip
    print(f"  seeding took {time.monotonic() - started:.0f} s in all")

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "arena.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    same_size = ROOT / "static" / "arena" / f".bench-page-{port}.html"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.3)
        first = time.perf_counter()
        page = httpx.get(f"{base}/leaderboard", timeout=120)
        assert page.status_code == 200, page.status_code
        cold = time.perf_counter() - first
        print(f"  first /leaderboard (reads and parses the snapshot): {cold * 1000:.0f} ms, "
              f"{len(page.content) / 1000:.0f} kB")  # fmt: skip
        # A peer of the page's own size: its bytes as a static file, served by the same process
        # (a small stylesheet measures the HTTP round trip, not the bytes a page carries).
        same_size.write_bytes(page.content)
        targets = [
            ("/leaderboard", f"{base}/leaderboard"),
            ("/leaderboard?category=coding&style_control=1",
             f"{base}/leaderboard?category=coding&style_control=1"),
            ("/api/leaderboard", f"{base}/api/leaderboard"),
            ("/static/arena/arena.css (static, 11 kB)", f"{base}/static/arena/arena.css"),
            (f"the page's bytes as a static file ({len(page.content) / 1000:.0f} kB)",
             f"{base}/static/arena/{same_size.name}"),
        ]  # fmt: skip
        rows = []
        for label, url in targets:
            asyncio.run(load(url, args.clients, min(200, args.requests)))  # warm-up
            latencies, wall, errors = asyncio.run(load(url, args.clients, args.requests))
            rows.append((label, percentile(latencies, 0.5), percentile(latencies, 0.95),
                         len(latencies) / wall, errors))  # fmt: skip
    finally:
        same_size.unlink(missing_ok=True)
        server.terminate()
        server.wait(timeout=15)

    static = rows[-1]
    print(f"\n{args.clients} concurrent clients, {args.requests} requests per target, one uvicorn "
          f"process; {platform.python_version()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("Static: the page's bytes as a static file (goal: pages and API >= 90% of its req/s).")
    print("| target | p50 ms | p95 ms | req/s | errors | p50 / static p50 | req/s vs static |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, p50, p95, rps, errors in rows:
        print(f"| {label} | {p50 * 1000:.1f} | {p95 * 1000:.1f} | {rps:.0f} | {errors} | "
              f"{p50 / static[1]:.1f}x | {rps / static[3]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
