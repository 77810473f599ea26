"""The web server's command line: uvicorn with the options the arena depends on, as run_arena,
the benchmarks and the tests start it (deploy/ spells the same options out). No Django here:
a benchmark process imports it without setting Django up."""

from __future__ import annotations

import sys

# uvicorn's loop and HTTP parser, named so that a missing one fails at start, not silently: with
# --workers and the default asyncio loop, no accepted connection gets TCP_NODELAY (the listening
# socket reaches the workers without its protocol number, and asyncio sets the option only on
# sockets whose protocol is TCP), so Nagle's algorithm held every small SSE write for the
# client's delayed ACK (~40 ms). uvloop sets it on every TCP connection.
UVICORN_OPTIONS = ("--loop", "uvloop", "--http", "httptools")


def uvicorn_command(
    *, host: str, port: int, workers: int, extra: tuple[str, ...] = ()
) -> list[str]:
    """The web server's command line, as run_arena (and the benchmarks, and deploy/) run it."""
    return [sys.executable, "-m", "uvicorn", "arena.asgi:application", "--host", host,
            "--port", str(port), "--workers", str(workers), *UVICORN_OPTIONS, *extra]  # fmt: skip
