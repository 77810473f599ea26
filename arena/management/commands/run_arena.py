"""Run the whole arena on one machine: embedded Redis, a Celery worker, beat and the web server.

Ctrl-C (or SIGTERM) stops every child and waits for it; children also die with this process if it
is killed outright (PR_SET_PDEATHSIG), so no process is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from arena.embedded_redis import port_in_use, redis_server_start
from arena.models import ArenaModel

_PR_SET_PDEATHSIG = 1
# A worker or beat that exits is started again, at most this often in a minute.
RESTARTS_PER_MINUTE = 5


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGTERM when we die.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(BaseCommand):
    help = "Start Redis (embedded unless REDIS_URL is set), a Celery worker, beat and uvicorn."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=8, help="worker threads")
        parser.add_argument(
            "--web-workers",
            type=int,
            default=2,
            help="uvicorn processes: sync views run one at a time per process",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            raise CommandError(
                f"the database has {len(pending)} unapplied migrations: "
                "run `python manage.py migrate` first (make demo does it for you)"
            )
        if port_in_use(port, host if host != "0.0.0.0" else "127.0.0.1"):
            raise CommandError(f"port {port} is in use: stop what runs there or pass --port")
        queues = ["celery", *(m.queue for m in ArenaModel.objects.filter(enabled=True))]
        env = {**os.environ, "REDIS_URL": settings.REDIS_URL, "PYTHONUNBUFFERED": "1"}
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.restarts: dict[str, list[float]] = {}
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            if settings.REDIS_IS_EMBEDDED:
                self._start_redis()
            python = sys.executable
            settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
            self._spawn(
                "worker",
                [python, "-m", "celery", "-A", "workers", "worker", "--pool", "threads",
                 "--concurrency", str(options["concurrency"]), "-Q", ",".join(queues),
                 "--hostname", f"arena-worker@{os.uname().nodename}", "--loglevel", "INFO"],
                env,
            )  # fmt: skip
            self._spawn(
                "beat",
                [python, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
                 "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")],
                env,
            )  # fmt: skip
            web_logs = []
            if settings.ARENA_LOG_FORMAT == "json":
                # uvicorn's own lines (start-up, errors) as JSON too, like Django's and Celery's.
                web_logs = [
                    "--log-config",
                    str(settings.BASE_DIR / "deploy" / "uvicorn-logging.json"),
                ]
            self._spawn(
                "web",
                [python, "-m", "uvicorn", "arena.asgi:application", "--host", host,
                 "--port", str(port), "--timeout-graceful-shutdown", "3",
                 "--workers", str(options["web_workers"]), *web_logs],
                env,
            )  # fmt: skip
            url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"
            self._wait_ready(url, lambda: stopping)
            if not stopping:
                self.stdout.write(self.style.SUCCESS(f"\n  Model Arena is running at {url}\n"))
                self.stdout.write("  Press Ctrl-C to stop everything.\n\n")
            while not stopping:
                for index, (name, child) in enumerate(self.children):
                    if child.poll() is not None:
                        self.children[index] = (name, self._respawn(name, child.returncode))
                time.sleep(0.3)
        finally:
            self._stop_all()

    def _start_redis(self) -> None:
        port = settings.EMBEDDED_REDIS_PORT
        try:
            process = redis_server_start(port, preexec_fn=_die_with_parent, start_new_session=True)
        except OSError as exc:
            raise CommandError(f"embedded Redis: {exc}") from None
        self.children.append(("redis", process))
        self.stdout.write(f"redis: embedded redis-server on 127.0.0.1:{port}")

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.commands[name] = (command, env)
        self.children.append((name, self._popen(name)))

    def _popen(self, name: str) -> subprocess.Popen[bytes]:
        command, env = self.commands[name]
        process = subprocess.Popen(
            command, env=env, preexec_fn=_die_with_parent, start_new_session=True
        )
        self.stdout.write(f"{name}: started (pid {process.pid})")
        return process

    def _respawn(self, name: str, code: int | None) -> subprocess.Popen[bytes]:
        """Start a worker or beat again after it exited, as a process manager would: a Celery
        worker can exit when Redis restarts under it (see docs/deployment.md). The web server
        and Redis are not restarted, nor a process that keeps dying (RESTARTS_PER_MINUTE)."""
        now = time.monotonic()
        recent = [t for t in self.restarts.get(name, []) if now - t < 60]
        if name not in ("worker", "beat") or len(recent) >= RESTARTS_PER_MINUTE:
            raise CommandError(f"{name} exited with code {code}")
        self.restarts[name] = [*recent, now]
        self.stderr.write(f"{name}: exited with code {code}; starting it again")
        return self._popen(name)

    def _wait_ready(self, url: str, stopping: Any) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopping():
            for name, child in self.children:
                if child.poll() is not None:
                    raise CommandError(f"{name} exited at start with code {child.returncode}")
            try:
                if httpx.get(url + "healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        if not stopping():
            raise CommandError("the web server did not come up within 60 s")

    def _stop_all(self) -> None:
        # Web first (no new battles), then workers, then Redis which they all need.
        for name, child in reversed(self.children):
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            self.stdout.write(f"{name}: stopped")
