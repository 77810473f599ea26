"""CPU cost of one `POST /battles` in the web process: what bounds battle starts per web core.

By default the requests go over loopback to a real uvicorn process (one worker, started as
run_arena starts it: arena/webserver.py), against a scratch SQLite database and an embedded
Redis: the battle, its turn, two responses, the rate-limit counters, two Celery messages (to
Redis; no worker consumes them) and the JSON reply. The figure is the server process's CPU time
(user + system, from /proc) over a block of requests, divided by their number: everything the
web process spends on a request, the event loop, the HTTP parser and the thread hop included,
which a loaded machine does not inflate the way it does wall time. Beside it, two floors on the
same middleware stack: `GET /healthz` and a `POST /battles` refused for its empty prompt
(session, CSRF, JSON body; no database write, no Redis).

With `--no-uvicorn`, Django's test client calls the request path inside this process instead
(no network, no server; `time.process_time` per request), and `--profile` prints its costliest
functions.

    .venv/bin/python benchmarks/battle_create.py              # 200 requests each, after 20
    .venv/bin/python benchmarks/battle_create.py --no-uvicorn --profile
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
from arena.webserver import uvicorn_command  # noqa: E402

CREATE = "POST /battles (a battle starts)"
HEALTHZ = "GET /healthz (floor)"
REFUSED = "POST /battles, empty prompt (floor, 400)"
PAGE = "GET / (the arena page; a visitor's first)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    parser.add_argument(
        "--no-uvicorn", action="store_true", help="in this process, through Django's test client"
    )
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
            LOG_LEVEL="WARNING",
            ALLOWED_HOSTS="testserver,127.0.0.1",
            DJANGO_SETTINGS_MODULE="arena.settings",
        )
        import django

        django.setup()
        from django.conf import settings
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
        if not args.no_uvicorn:
            over_uvicorn(args.requests, port=free_port())
            return
        # The view runs in this thread, as the test client needs.
        settings.ARENA_API_THREADS = 0
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
            CREATE: create,
            HEALTHZ: lambda: timed("GET", "/healthz", None, 200),
            REFUSED: lambda: timed("POST", "/battles", {"prompt": ""}, 400),
        }
        for case in cases.values():
            for _ in range(20):
                case()
        # Interleaved, so that a burst of load on the machine touches every case alike.
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.requests):
            for name, case in cases.items():
                samples[name].append(case())
        print(f"CPU time per request in one process (test client), {args.requests} requests each:")
        for name, times in samples.items():
            mean = statistics.fmean(times) * 1000
            print(
                f"  {name:42} mean {mean:5.2f} ms, median {statistics.median(times) * 1000:5.2f} ms"
            )
        mean = statistics.fmean(samples[CREATE]) * 1000
        print(f"at most {1000 / mean:.0f} battle starts/s per web core (goal: <= 4 ms each)")
        if args.profile:
            profile = cProfile.Profile(time.process_time)  # CPU, not waits
            profile.enable()
            for _ in range(50):
                create()
            profile.disable()
            stats = pstats.Stats(profile).sort_stats("cumulative")
            stats.print_stats(25)
            stats.print_callees("battle_create|generation_enqueue|send_task|model_pool|publish")
    finally:
        redis.terminate()
        redis.wait(timeout=10)


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of the process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def over_uvicorn(requests: int, *, port: int, blocks: int = 5) -> None:
    """Time the cases against a real uvicorn process: its CPU over blocks of requests, the
    cases taking turns block by block so that a burst of load touches each alike."""
    import httpx

    command = uvicorn_command(host="127.0.0.1", port=port, workers=1,
                              extra=("--log-level", "warning", "--no-access-log"))  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("uvicorn did not start")
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as client:
            client.get("/").raise_for_status()
            token = {"X-CSRFToken": client.cookies.get("csrftoken", "")}

            def call(method: str, path: str, body: dict[str, str] | None, status: int) -> None:
                reply = client.request(method, path, json=body, headers=token if body else None)
                if reply.status_code != status:
                    raise SystemExit(f"{method} {path} answered {reply.status_code}: {reply.text}")

            cases = {
                CREATE: lambda: call("POST", "/battles", {"prompt": "Say something."}, 201),
                HEALTHZ: lambda: call("GET", "/healthz", None, 200),
                REFUSED: lambda: call("POST", "/battles", {"prompt": ""}, 400),
                PAGE: lambda: call("GET", "/", None, 200),
            }
            for case in cases.values():
                for _ in range(20):
                    case()
            cpu = dict.fromkeys(cases, 0.0)
            size = max(1, requests // blocks)
            for _ in range(blocks):
                for name, case in cases.items():
                    before = _process_cpu(server.pid)
                    for _ in range(size):
                        case()
                    cpu[name] += _process_cpu(server.pid) - before
        print(f"CPU time of the uvicorn process per request, {size * blocks} requests each:")
        for name, seconds in cpu.items():
            print(f"  {name:42} {seconds * 1000 / (size * blocks):5.2f} ms")
        mean = cpu[CREATE] * 1000 / (size * blocks)
        print(f"at most {1000 / mean:.0f} battle starts/s per web core (goal: <= 4 ms each)")
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
