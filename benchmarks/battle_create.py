"""CPU cost of one `POST /battles` inside one process: what bounds battle starts per web core.

Django's test client calls the ASGI-less request path in this process (no network, no uvicorn),
against a scratch SQLite database and an embedded Redis: the battle, its turn, two responses,
the rate-limit counters, two Celery messages (to Redis; no worker consumes them) and the JSON
reply. The figure is the process's CPU time per request (`time.process_time`, all threads),
which a loaded machine does not inflate the way it does wall time. Beside it, the same client's
CPU per request of two floors on the same middleware stack: `GET /healthz` and a `POST /battles`
refused for its empty prompt (session, CSRF, JSON body; no database write, no Redis).

    .venv/bin/python benchmarks/battle_create.py            # 200 requests after 20 warm-up
    .venv/bin/python benchmarks/battle_create.py --profile  # and the 25 costliest functions
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.embedded_redis import free_port, redis_server_start  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="arena-bench-create-"))
    port = free_port()
    redis = redis_server_start(port, stdout=subprocess.DEVNULL)
    try:
        os.environ.update(
            ARENA_DEMO="1",
            ARENA_DATA_DIR=str(work),
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
            DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
            ARENA_BATTLES_PER_MINUTE="1000000",
            ARENA_BATTLES_PER_IP_MINUTE="1000000",
            ARENA_BATTLES_PER_IP_DAY="1000000",
            ARENA_API_THREADS="0",  # the view runs in this thread, as the test client needs
            LOG_LEVEL="WARNING",
            ALLOWED_HOSTS="testserver",
            DJANGO_SETTINGS_MODULE="arena.settings",
        )
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client

        call_command("migrate", verbosity=0)
        models = work / "models.toml"
        models.write_text(
            "".join(
                f'[[models]]\nname = "{name}"\ndisplay_name = "{name}"\nbackend = "openai"\n'
                f'[models.options]\nbase_url = "http://127.0.0.1:9/v1"\n'
                f'served_model_name = "m"\n\n'
                for name in ("bench-a", "bench-b")
            )
        )
        call_command("sync_models", file=models, verbosity=0)
        client = Client()
        client.get("/")

        def timed(method: str, path: str, body: dict[str, str] | None, status: int) -> float:
            started = time.process_time()
            if method == "GET":
                reply = client.get(path)
            else:
                reply = client.post(path, body, "application/json")
            if reply.status_code != status:
                raise SystemExit(f"{method} {path} answered {reply.status_code}: {reply.content!r}")
            return time.process_time() - started

        def create() -> float:
            return timed("POST", "/battles", {"prompt": "Say something."}, 201)

        cases = {
            "POST /battles (a battle starts)": create,
            "GET /healthz (floor)": lambda: timed("GET", "/healthz", None, 200),
            "POST /battles, empty prompt (floor, 400)": lambda: timed(
                "POST", "/battles", {"prompt": ""}, 400
            ),
        }
        for case in cases.values():
            for _ in range(20):
                case()
        # Interleaved, so that a burst of load on the machine touches every case alike.
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.requests):
            for name, case in cases.items():
                samples[name].append(case())
        print(f"CPU time per request in one process, {args.requests} requests each:")
        for name, times in samples.items():
            mean = statistics.fmean(times) * 1000
            print(
                f"  {name:42} mean {mean:5.2f} ms, median {statistics.median(times) * 1000:5.2f} ms"
            )
        mean = statistics.fmean(samples["POST /battles (a battle starts)"]) * 1000
        print(f"at most {1000 / mean:.0f} battle starts/s per web core (goal: <= 4 ms each)")
        if args.profile:
            profile = cProfile.Profile(time.process_time)  # CPU, not waits
            profile.enable()
            for _ in range(50):
                create()
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    finally:
        redis.terminate()
        redis.wait(timeout=10)


if __name__ == "__main__":
    main()
