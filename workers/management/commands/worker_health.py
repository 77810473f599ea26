"""Is a Celery worker alive and consuming? For an orchestrator's health check (exit 0 or 1).

    python manage.py worker_health --hostname arena-worker@gpu1 --queue model.qwen-7b

Two checks, both needed: the worker's heartbeat in Redis is fresh (its consumer loop runs:
workers/heartbeat.py), and the worker answers a Celery control ping within --timeout. Without
--hostname every live worker counts; with --queue some live worker must consume each queue.
One line on stdout says what was found: `ok: ...` or `FAIL: ...`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandParser

from arena.heartbeat import heartbeat_redis, max_age_s, workers_alive
from workers import app


class Command(BaseCommand):
    help = "Exit 0 if the worker(s) beat recently and answer a ping, else print why and exit 1."
    # A probe runs every few seconds: it skips the system checks, which are start-up's job.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hostname", help="the worker's --hostname (default: any worker)")
        parser.add_argument(
            "--queue",
            action="append",
            default=[],
            help="a queue that a live worker must consume (repeatable), e.g. model.qwen-7b",
        )
        parser.add_argument("--timeout", type=float, default=2.0, help="ping timeout, seconds")
        parser.add_argument(
            "--no-ping", action="store_true", help="check the heartbeat only (no control ping)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        problem, summary = self._check(
            hostname=options["hostname"],
            queues=options["queue"],
            timeout=options["timeout"],
            ping=not options["no_ping"],
        )
        if problem:
            self.stdout.write(f"FAIL: {problem}")
            sys.exit(1)
        self.stdout.write(f"ok: {summary}")

    def _check(
        self, *, hostname: str | None, queues: list[str], timeout: float, ping: bool
    ) -> tuple[str | None, str]:
        try:
            alive = workers_alive(heartbeat_redis())
        except redis.RedisError as exc:
            return f"Redis is unreachable, so no worker can consume: {exc}", ""
        if hostname:
            alive = [w for w in alive if w.hostname == hostname]
        who = hostname or "any worker"
        if not alive:
            return f"no heartbeat from {who} in the last {max_age_s():.0f} s", ""
        consumed = {q for w in alive for q in w.queues}
        missing = [q for q in queues if q not in consumed]
        if missing:
            return f"no live worker ({who}) consumes {', '.join(missing)}", ""
        names = sorted(w.hostname for w in alive)
        summary = ", ".join(f"{w.hostname} (beat {w.age_s:.0f} s ago)" for w in alive)
        if not ping:
            return None, summary
        started = time.monotonic()
        replies = app.control.ping(destination=names, timeout=timeout)
        elapsed_ms = (time.monotonic() - started) * 1000
        answered = {name for reply in replies for name in reply}
        silent = [name for name in names if name not in answered]
        if silent:
            return f"{', '.join(silent)} did not answer a ping within {timeout:g} s", ""
        return None, f"{summary}; ping answered in {elapsed_ms:.0f} ms"
