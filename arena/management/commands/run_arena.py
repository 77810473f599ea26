"""Run the whole arena on one machine: embedded Redis, a Celery worker, beat and the web server.

A process manager in miniature: each service writes its log to `$ARENA_DATA_DIR/logs/<name>.log`,
the terminal shows one banner (address, data folder, logs, how to stop) and a line whenever a
service exits and is started again. Every service is restarted when it exits, the embedded
Redis too (on the same port, empty: it holds nothing that cannot be lost), at most
RESTARTS_PER_MINUTE times a minute each. Ctrl-C or SIGTERM to this process stops every child
within STOP_SECONDS; children also die with this process if it is killed outright
(PR_SET_PDEATHSIG), so no process is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from arena.embedded_redis import port_in_use, redis_server_start
from arena.models import ArenaModel
from arena.webserver import uvicorn_command

_PR_SET_PDEATHSIG = 1
# A service that exits is started again, at most this often in a minute; then the demo stops.
RESTARTS_PER_MINUTE = 5
# SIGTERM to the top process: everything is gone within this (web, worker, beat get most of it
# to finish cleanly, then SIGKILL; Redis last).
STOP_SECONDS = 8.0
READY_SECONDS = 90


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGTERM when we die.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Service:
    """One supervised child: how to start it, the running process, its log."""

    name: str
    start: Callable[[IO[bytes]], subprocess.Popen[bytes]]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def launch(self) -> None:
        with open(self.log, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            out.flush()
            self.process = self.start(out)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


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
        connection.close()  # the children have their own; this process needs none from here
        self.logs = settings.DATA_DIR / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.services: list[Service] = []
        self.stopping = False

        def stop(signum: int, frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"
        names = ["redis"] if settings.REDIS_IS_EMBEDDED else []
        self.stdout.write(
            f"Starting Model Arena ({', '.join([*names, 'worker', 'beat', 'web'])}); "
            f"logs in {self.logs}/"
        )
        try:
            if settings.REDIS_IS_EMBEDDED:
                self._add("redis", self._redis_start)
            self._add_services(queues, host, port, options)
            self._wait_ready(url)
            if not self.stopping:
                self._banner(url)
            while not self.stopping:
                for service in self.services:
                    assert service.process is not None
                    if service.process.poll() is not None and not self.stopping:
                        self._restart(service)
                # Often: while Redis is down, every request that needs it fails.
                time.sleep(0.05)
        finally:
            self._stop_all()

    def _add_services(self, queues: list[str], host: str, port: int, options: Any) -> None:
        env = {**os.environ, "REDIS_URL": settings.REDIS_URL, "PYTHONUNBUFFERED": "1"}
        python = sys.executable
        web_logs = []
        if settings.ARENA_LOG_FORMAT == "json":
            # uvicorn's own lines (start-up, errors) as JSON too, like Django's and Celery's.
            web_logs = ["--log-config", str(settings.BASE_DIR / "deploy" / "uvicorn-logging.json")]
        commands = {
            "worker": [python, "-m", "celery", "-A", "workers", "worker", "--pool", "threads",
                       "--concurrency", str(options["concurrency"]), "-Q", ",".join(queues),
                       "--hostname", f"arena-worker@{os.uname().nodename}", "--loglevel", "INFO"],
            "beat": [python, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
                     "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")],
            "web": uvicorn_command(host=host, port=port, workers=options["web_workers"],
                                   extra=("--timeout-graceful-shutdown", "3", *web_logs)),
        }  # fmt: skip
        for name, command in commands.items():

            def start(out: IO[bytes], command: list[str] = command) -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    command,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                    start_new_session=True,
                )

            self._add(name, start)

    def _redis_start(self, out: IO[bytes]) -> subprocess.Popen[bytes]:
        # The same port every time: the web server and the workers reconnect to it.
        try:
            return redis_server_start(
                settings.EMBEDDED_REDIS_PORT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError(f"embedded Redis: {exc}") from None

    def _add(self, name: str, start: Callable[[IO[bytes]], subprocess.Popen[bytes]]) -> None:
        service = Service(name=name, start=start, log=self.logs / f"{name}.log")
        service.launch()
        self.services.append(service)

    def _restart(self, service: Service) -> None:
        """Start a service again after it exited, as a process manager would (a Celery worker
        can exit when Redis restarts under it, see docs/deployment.md); one line says so."""
        assert service.process is not None
        code = service.process.returncode
        now = time.monotonic()
        service.restarts = [t for t in service.restarts if now - t < 60]
        if len(service.restarts) >= RESTARTS_PER_MINUTE:
            raise CommandError(
                f"{service.name} exited with code {code}, {RESTARTS_PER_MINUTE + 1} times within "
                f"a minute: stopping. The end of {service.log}:\n{service.log_tail()}"
            )
        service.restarts.append(now)
        self.stderr.write(
            f"{time.strftime('%H:%M:%S')} {service.name} exited with code {code}; "
            f"starting it again (log: {service.log})"
        )
        service.launch()

    def _wait_ready(self, url: str) -> None:
        # Ready when a visitor's battle can be answered: the web server, Redis and the database
        # answer, and a worker consumes every enabled model's queue.
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline and not self.stopping:
            for service in self.services:
                assert service.process is not None
                if service.process.poll() is not None:
                    raise CommandError(
                        f"{service.name} exited at start with code {service.process.returncode}."
                        f" The end of {service.log}:\n{service.log_tail()}"
                    )
            try:
                if httpx.get(url + "readyz?workers=1", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        if not self.stopping:
            raise CommandError(
                f"the arena was not ready within {READY_SECONDS} s (see {self.logs}/, and "
                f"{url}readyz?workers=1 for what is missing)"
            )

    def _banner(self, url: str) -> None:
        logs = ", ".join(s.log.name for s in self.services)
        self.stdout.write(
            "\n"
            + self.style.SUCCESS(f"  Model Arena is running at {url}")
            + "\n\n"
            + f"  data   {settings.DATA_DIR}\n"
            + f"  logs   {self.logs}/ ({logs})\n"
            + f"  stop   Ctrl-C, or kill {os.getpid()}\n"
        )

    def _stop_all(self) -> None:
        # Web, worker and beat together (their shutdowns overlap), then Redis which they need.
        others = [s for s in self.services if s.name != "redis"]
        redis = [s for s in self.services if s.name == "redis"]
        self._terminate(others, STOP_SECONDS - 2)
        self._terminate(redis, 2)
        if self.services:
            self.stdout.write("Model Arena stopped.")

    @staticmethod
    def _terminate(services: list[Service], seconds: float) -> None:
        running = [s.process for s in services if s.process and s.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + seconds
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for process in running:
            # The whole group: uvicorn's worker processes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
