"""What a benchmark's processes cost: CPU time from the kernel's accounting, resident memory
sampled while a block runs; and their end. Shared by the benchmarks (benchmarks/overhead.py,
benchmarks/worker_cpu.py)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """User + system CPU time so far of the processes and all their children (uvicorn's
    workers, Celery's pool), from the kernel's accounting (psutil)."""
    import psutil

    total = 0.0
    for pid in pids:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def rss_peak(pid: int) -> Iterator[dict[str, float]]:
    """The process's resident set: at the start and its peak (sampled every 50 ms) until the
    block ends."""
    figures = {"start_mb": rss_mb(pid), "peak_mb": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            figures["peak_mb"] = max(figures["peak_mb"], rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield figures
    finally:
        stop.set()
        sampler.join()


def postgres_postmaster(database_url: str) -> int | None:
    """The pid of the PostgreSQL server behind ``database_url`` when it runs on this machine
    (read from its data directory's ``postmaster.pid``), else None."""
    import psycopg

    try:
        with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        return int((Path(row[0]) / "postmaster.pid").read_text().split()[0]) if row else None
    except (psycopg.Error, OSError, ValueError, IndexError):
        return None


def postgres_cpu_seconds(postmaster: int) -> float:
    """User + system CPU time so far of a PostgreSQL server: its postmaster with the children
    it has reaped (``cutime``/``cstime``: a backend that has exited is counted there) and the
    live children (backends, autovacuum, checkpointer)."""
    import os

    def stat(pid: int) -> list[str]:
        # After the command name (which may hold spaces): state, ppid, ... utime is field 14.
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()

    total = sum(int(v) for v in stat(postmaster)[11:15])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == postmaster:
            continue
        try:
            fields = stat(int(entry.name))
        except OSError:
            continue  # gone meanwhile (then counted in the postmaster's cutime)
        if int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def processes_stop(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """Stop each process that still runs (SIGTERM, then SIGKILL after 15 s), in the order given."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
