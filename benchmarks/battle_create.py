"""CPU cost of one `POST /battles` inside one process: what bounds battle starts per web core.

Django's test client calls the ASGI-less request path in this process (no network, no uvicorn),
against a scratch SQLite database and an embedded Redis: the battle, its turn, two responses,
the rate-limit counters, two Celery messages (to Redis; no worker consumes them) and the JSON
reply. The figure is wall time per request with nothing else running, so it is CPU time.

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

        def create() -> float:
            started = time.perf_counter()
            reply = client.post("/battles", {"prompt": "Say something."}, "application/json")
            if reply.status_code != 201:
                raise SystemExit(f"POST /battles answered {reply.status_code}: {reply.content!r}")
            return time.perf_counter() - started

        for _ in range(20):
            create()
        times = [create() for _ in range(args.requests)]
        median = statistics.median(times) * 1000
        print(
            f"POST /battles in-process: median {median:.1f} ms, "
            f"p90 {sorted(times)[int(0.9 * len(times))] * 1000:.1f} ms over {len(times)} "
            f"requests: at most {1000 / median:.0f} battle starts/s per core"
        )
        if args.profile:
            profile = cProfile.Profile()
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
