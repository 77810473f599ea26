"""What one answer costs the worker: CPU, SQL statements, Redis round trips, row to claim.

N battles' generations go through a real Celery worker (`--pool threads`, the `openai` backend)
against the paced stand-in for `vllm serve` that benchmarks/overhead.py uses
(tests/workers/replay_server.py: 64 tokens, one every 20 ms). Nothing else runs in the worker's
process, so its CPU time (user + system, from the kernel) over a round, divided by the round's
answers, is what one answer costs the worker. The worker process counts, per thread, the SQL
statements its database cursors execute and the commands it writes to Redis (one write is one
round trip: a pipeline is one), split into the tasks' threads and Celery's consumer (fetching
the messages, acking them, the lease taken on receipt).

Battles are made by `services.battle_create` in this process, as the web does (rows, then both
tasks on commit); row to claim is the database's record (Response.created_at to started_at).

    .venv/bin/python benchmarks/worker_cpu.py                     # 10 rounds of 10 battles
    .venv/bin/python benchmarks/worker_cpu.py --root /tmp/old     # the worker from another checkout

`--root` runs the worker (only the worker) from another checkout of the arena, e.g. the code
before a change (`git archive <ref> | tar -x -C /tmp/old`), so both figures come from one
benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("bench-a", "bench-b")
# The worker's threads that run tasks (Celery's threads pool); the rest is Celery's consumer
# (MainThread) and the arena's own background threads (leases, heartbeat).
_TASK_THREAD_PREFIX = "ThreadPoolExecutor"


# --- In the worker's process: count, then run Celery ---------------------------------------------


def _worker_child(counts_path: Path, celery_argv: list[str]) -> None:
    """Install the counters, answer snapshot requests through `counts_path`, run the worker."""
    sys.path[0] = os.getcwd()  # the measured checkout, not this script's folder
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def bump(kind: str) -> None:
        name = threading.current_thread().name
        where = "task" if name.startswith(_TASK_THREAD_PREFIX) else (
            "consumer" if name == "MainThread" else "background"
        )  # fmt: skip
        key = f"{kind}:{where}"
        with lock:
            counts[key] = counts.get(key, 0) + 1

    import redis.connection
    from django.db.backends import utils

    send = redis.connection.AbstractConnection.send_packed_command

    def counted_send(self: Any, command: Any, check_health: bool = True) -> Any:
        bump("redis")
        return send(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
    for method in ("execute", "executemany"):
        original = getattr(utils.CursorWrapper, method)

        def counted(self: Any, *args: Any, _original: Any = original) -> Any:
            bump("sql")
            return _original(self, *args)

        setattr(utils.CursorWrapper, method, counted)

    request = counts_path.with_suffix(".request")
    os.mkfifo(request)

    def answer() -> None:
        while True:
            # Blocks, costing nothing, until the benchmark asks (it writes one byte).
            with open(request, "rb") as fifo:
                fifo.read()
            with lock:
                # The process's CPU clock (all threads, ns resolution; the kernel's
                # per-process ticks are 10 ms, as much as an answer costs).
                snapshot = json.dumps({**counts, "cpu_s": time.process_time()})
            partial = counts_path.with_suffix(".partial")
            partial.write_text(snapshot)
            partial.replace(counts_path)

    threading.Thread(target=answer, name="bench-counts", daemon=True).start()
    from celery.__main__ import main

    sys.argv = ["celery", *celery_argv]
    main()


def counts_read(counts_path: Path) -> dict[str, float]:
    """The worker's counters now (asks its snapshot thread, waits for the answer)."""
    counts_path.unlink(missing_ok=True)
    request = counts_path.with_suffix(".request")
    deadline = time.monotonic() + 10
    while not request.is_fifo():  # the worker makes it as it starts
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not start its counters")
        time.sleep(0.05)
    with open(request, "wb") as fifo:
        fifo.write(b"?")
    while not counts_path.exists():  # written just after the request is read
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not report its counters")
        time.sleep(0.01)
    return dict(json.loads(counts_path.read_text()))


# --- The stack -----------------------------------------------------------------------------------


@contextlib.contextmanager
def stack(args: argparse.Namespace, work: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """Redis, the paced server and the worker; yields the env and the worker's counts file."""
    from arena.embedded_redis import free_port, redis_server_start
    from benchmarks.procstats import processes_stop

    processes: list[subprocess.Popen[bytes]] = []
    try:
        redis_port, server_port = free_port(), free_port()
        processes.append(redis_server_start(redis_port, stdout=subprocess.DEVNULL))
        env = {
            **os.environ,
            "ARENA_DEMO": "1",
            "ARENA_ENV_FILE": "",
            "ARENA_DATA_DIR": str(work),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{work / 'bench.db'}",
            "ARENA_BATTLES_PER_MINUTE": "1000000",
            "LOG_LEVEL": "WARNING",
        }
        logs = open(work / "server.log", "wb")  # noqa: SIM115 - closed with the process
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tests.workers.replay_server", "--port", str(server_port),
             "--paced-tokens", str(args.tokens), "--paced-interval", str(args.interval)],
            cwd=ROOT, env=env, stdout=logs, stderr=subprocess.STDOUT,
        ))  # fmt: skip
        models = work / "models.toml"
        models.write_text("".join(
            f'[[models]]\nname = "{name}"\ndisplay_name = "{name}"\nbackend = "openai"\n'
            f"max_concurrency = 1000\n[models.options]\n"
            f'base_url = "http://127.0.0.1:{server_port}/v1"\n'
            f'served_model_name = "paced-model"\n[models.sampling]\nmax_tokens = 256\n\n'
            for name in MODELS
        ))  # fmt: skip
        root = args.root.resolve()
        for command in (["migrate", "--noinput"], ["sync_models", "--file", str(models)]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=root, env=env,
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        counts = work / "counts.json"
        queues = ",".join(["celery", *(f"model.{name}" for name in MODELS)])
        worker_log = open(work / "worker.log", "wb")  # noqa: SIM115 - closed with the process
        processes.append(subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker-child", str(counts),
             "-A", "workers", "worker", "--pool", "threads", "--concurrency",
             str(args.worker_threads), "-Q", queues, "--loglevel", "WARNING",
             "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=root, env=env, stdout=worker_log, stderr=subprocess.STDOUT,
        ))  # fmt: skip
        yield env, counts
    finally:
        processes_stop(reversed(processes))


# --- Rounds --------------------------------------------------------------------------------------


def round_run(battles: int, timeout: float) -> tuple[list[int], float]:
    """Start `battles` battles at once (as POST /battles does); wait until every answer ended.
    Returns the response ids and the seconds it took."""
    import numpy as np

    from arena import services
    from arena.models import Response, ResponseStatus

    started = time.monotonic()
    made = [
        services.battle_create(visitor_id=f"bench-{k}", prompt="Say something.",
                               rng=np.random.default_rng(k))
        for k in range(battles)
    ]  # fmt: skip
    ids = list(Response.objects.filter(turn__battle__in=made).values_list("id", flat=True))
    ended = [ResponseStatus.DONE, ResponseStatus.FAILED]
    while Response.objects.filter(id__in=ids, status__in=ended).count() < len(ids):
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"answers not finished after {timeout:.0f} s")
        time.sleep(0.02)
    return ids, time.monotonic() - started


def rows_summary(ids: list[int]) -> dict[str, Any]:
    from arena.models import Response, ResponseStatus

    rows = list(Response.objects.filter(id__in=ids))
    waits = [(r.started_at - r.created_at).total_seconds() * 1000 for r in rows if r.started_at]
    return {
        "failed": sum(r.status != ResponseStatus.DONE for r in rows),
        "row_to_claim_ms": waits,
    }


def measure(
    counts_path: Path, battles: int, rounds: int, settle: float, timeout: float
) -> dict[str, Any]:
    per_answer_cpu: list[float] = []
    waits: list[float] = []
    failed = answers = 0
    totals: dict[str, float] = {}
    for _ in range(rounds):
        counted = counts_read(counts_path)
        ids, _ = round_run(battles, timeout)
        time.sleep(settle)  # the answers' last Redis calls come after the database's `done`
        after = counts_read(counts_path)
        cpu = after.pop("cpu_s") - counted.pop("cpu_s")
        for key, value in after.items():
            totals[key] = totals.get(key, 0) + value - counted.get(key, 0)
        summary = rows_summary(ids)
        failed += summary["failed"]
        waits += summary["row_to_claim_ms"]
        answers += len(ids)
        per_answer_cpu.append(cpu * 1000 / len(ids))
    return {
        "battles": battles,
        "rounds": rounds,
        "answers": answers,
        "failed": failed,
        "cpu_ms_per_answer_median": statistics.median(per_answer_cpu),
        "cpu_ms_per_answer_min": min(per_answer_cpu),
        "row_to_claim_ms_median": statistics.median(waits) if waits else None,
        "per_answer": {key: value / answers for key, value in sorted(totals.items())},
    }


def _line(label: str, r: dict[str, Any]) -> str:
    each = r["per_answer"]
    return (
        f"| {label} | {r['answers']} | {r['failed']} | {r['cpu_ms_per_answer_median']:.1f} | "
        f"{r['cpu_ms_per_answer_min']:.1f} | {each.get('sql:task', 0):.1f} | "
        f"{each.get('redis:task', 0):.1f} | {each.get('redis:consumer', 0):.1f} | "
        f"{each.get('redis:background', 0) + each.get('sql:background', 0):.1f} | "
        f"{r['row_to_claim_ms_median']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battles", type=int, default=10, help="battles at once per round (10)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of them (10)")
    parser.add_argument("--single-rounds", type=int, default=10, help="rounds of 1 battle (10)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per answer (64)")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between tokens")
    parser.add_argument("--worker-threads", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120, help="per round, seconds")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout the worker runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    load = os.getloadavg()[0]
    print(
        f"worker: threads pool x {args.worker_threads} from {args.root}; paced server: "
        f"{args.tokens} tokens every {args.interval * 1000:.0f} ms; {os.cpu_count()} CPUs, "
        f"load {load:.2f}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="arena-worker-cpu-") as tmp,
        stack(args, Path(tmp)) as (env, counts_path),
    ):
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")
        import django

        django.setup()
        from arena import streams

        deadline = time.monotonic() + 60
        while not streams.redis_client().keys("arena:workers*"):  # the worker's first beat
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {tmp}/worker.log")
            time.sleep(0.2)
        round_run(2, args.timeout)  # warm up: connections, imports, the served model's name
        idle_before = counts_read(counts_path)["cpu_s"]
        time.sleep(2)
        idle_ms_per_s = (counts_read(counts_path)["cpu_s"] - idle_before) * 1000 / 2
        results = {
            "single": measure(counts_path, 1, args.single_rounds, 0.3, args.timeout),
            "concurrent": measure(counts_path, args.battles, args.rounds, 0.3, args.timeout),
        }
    print()
    print(f"Per answer ({args.tokens} tokens; CPU is the worker process's user + system time):")
    print(
        "| battles at once | answers | failed | worker CPU ms, median of rounds | min "
        "| SQL statements | Redis round trips, task | Celery consumer | background "
        "| row to claim ms, median |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(_line("1", results["single"]))
    print(_line(str(args.battles), results["concurrent"]))
    print()
    print(
        f"Idle worker: {idle_ms_per_s:.2f} ms of CPU per second (lease renewals, the broker's "
        "polls), included above. Goal for the arena's whole CPU per battle (web + worker + "
        "Redis, two answers): <= 10 ms."
    )
    if args.json:
        args.json.write_text(json.dumps({"idle_ms_per_s": idle_ms_per_s, **results}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker-child":
        _worker_child(Path(sys.argv[2]), sys.argv[3:])
    else:
        main()
