"""The demo as `make demo` runs it, for the tests: `manage.py run_arena` in a subprocess with its
own embedded Redis (on a free port), worker, beat and uvicorn, against the test database and a
data folder of the test's own. The test kills its services by pid, as an operator would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from arena.embedded_redis import free_port
from arena.management.commands.run_arena import _die_with_parent
from tests.conftest import ROOT, subprocess_env

# How each service shows in its command line.
_SERVICE_MARKS = {
    "redis": "redis-server",
    "worker": " worker ",
    "beat": " beat ",
    "web": "uvicorn",
}


class DemoStack:
    """`run_arena` started and ready; its terminal output is `self.output`."""

    def __init__(
        self, data_dir: Path, *, concurrency: int = 8, web_workers: int = 1, **env: str
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.redis_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.damaged = False  # a test that broke it says so: the next one starts a fresh one
        self.env = subprocess_env(
            ARENA_DATA_DIR=str(data_dir), ARENA_REDIS_PORT=str(self.redis_port), **env
        )
        self.env.pop("REDIS_URL", None)  # the demo's own embedded Redis
        self.terminal = data_dir / "terminal.txt"
        data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.terminal, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "run_arena", "--port", str(self.port),
                 "--concurrency", str(concurrency), "--web-workers", str(web_workers)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while "is running at" not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"run_arena did not start:\n{self.output[-3000:]}")
            time.sleep(0.2)

    @property
    def output(self) -> str:
        return self.terminal.read_text(errors="replace")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def descendants(self) -> list[psutil.Process]:
        try:
            return list(psutil.Process(self.process.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            return []

    def pid(self, service: str) -> int:
        """The pid of a service's top process (a direct child of run_arena)."""
        mark = _SERVICE_MARKS[service]
        for child in psutil.Process(self.process.pid).children():
            try:
                with_spaces = " " + " ".join(child.cmdline()) + " "
            except psutil.Error:  # a zombie not yet reaped: the service that just died
                continue
            if mark in with_spaces:
                return int(child.pid)
        raise LookupError(f"no {service} process under run_arena:\n{self.output[-2000:]}")

    def kill(self, service: str) -> int:
        """kill -9 a service; its pid."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, service: str, old_pid: int, timeout: float = 30) -> int:
        """Wait until run_arena has started the service again; the new pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = self.pid(service)
            except LookupError:
                pid = old_pid
            if pid != old_pid:
                return pid
            if self.process.poll() is not None:
                raise RuntimeError(f"run_arena exited:\n{self.output[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{service} was not restarted:\n{self.output[-3000:]}")

    def restarts_noticed(self, service: str) -> int:
        return len(re.findall(rf"{service} exited with code .*; starting it again", self.output))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
