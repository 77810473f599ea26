"""What a benchmark's processes cost: CPU time from the kernel's accounting, resident memory
sampled while a block runs. Shared by the benchmarks (benchmarks/overhead.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
