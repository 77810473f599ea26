"""`vllm serve` for a registry entry with a `[models.vllm]` table: the command, start, wait, stop.

The arena never runs vLLM inside a worker: a separate OpenAI-compatible server per model batches
every user's requests together, and the `openai` backend talks to it over HTTP. This module is
what `python manage.py serve_model NAME` uses on the GPU host.

The server is started as `python -m vllm.entrypoints.openai.api_server` rather than through the
`vllm` console script, which fails on some builds (the CPU one among them) while the module runs.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx

# Loopback unless told otherwise: vLLM has no authentication unless `--api-key` is among the
# extra_args, so listening on every interface is a choice the operator makes (`--host 0.0.0.0`).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Loading weights and compiling/capturing graphs can take minutes for a large model.
DEFAULT_START_TIMEOUT = 900.0
_HEALTH_POLL = 1.0
_PR_SET_PDEATHSIG = 1


class ServeError(Exception):
    """The server cannot be started or did not become healthy; one line for an operator."""


@dataclass(frozen=True)
class ServeSpec:
    """Everything needed to run one vLLM server for one registry entry."""

    name: str
    model: str
    host: str
    port: int
    args: tuple[str, ...]

    @property
    def base_url(self) -> str:
        """The `base_url` the `openai` backend uses for this server (options.base_url)."""
        host = socket.gethostname() if _any_interface(self.host) else self.host
        return f"http://{_url_host(host)}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        # Checked from this machine: a server bound to every interface answers on the loopback.
        host = "127.0.0.1" if _any_interface(self.host) else self.host
        return f"http://{_url_host(host)}:{self.port}/health"


def serve_spec(
    name: str,
    options: Mapping[str, Any],
    *,
    host: str | None = None,
    port: int | None = None,
) -> ServeSpec:
    """The vLLM server for registry entry `name` (its options as the registry stores them).

    Raises
    ------
    ServeError
        The entry has no `[models.vllm]` table.
    """
    vllm = options.get("vllm")
    if not isinstance(vllm, Mapping) or not vllm.get("model"):
        raise ServeError(f"model {name!r} has no [models.vllm] table in the models file")
    served_name = str(options.get("served_model_name") or name)
    chosen_port = int(port if port is not None else vllm.get("port") or DEFAULT_PORT)
    chosen_host = host or DEFAULT_HOST
    args: list[str] = [
        "--model",
        str(vllm["model"]),
        "--served-model-name",
        served_name,
        "--host",
        chosen_host,
        "--port",
        str(chosen_port),
    ]
    if vllm.get("gpu_memory_utilization") is not None:
        args += ["--gpu-memory-utilization", f"{float(vllm['gpu_memory_utilization']):g}"]
    if vllm.get("max_model_len") is not None:
        args += ["--max-model-len", str(int(vllm["max_model_len"]))]
    if vllm.get("dtype"):
        args += ["--dtype", str(vllm["dtype"])]
    # Last, so that an operator's extra argument can override any of the above.
    args += [str(a) for a in vllm.get("extra_args") or ()]
    return ServeSpec(
        name=name, model=str(vllm["model"]), host=chosen_host, port=chosen_port, args=tuple(args)
    )


def serve_command(spec: ServeSpec, *, python: str | None = None) -> list[str]:
    """The argv that runs the server with `python` (default: this interpreter)."""
    return [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", *spec.args]


def vllm_check(python: str | None = None) -> str:
    """vLLM's version as seen by `python`; ServeError when it cannot import vllm."""
    interpreter = python or sys.executable
    try:
        done = subprocess.run(
            [interpreter, "-c", "import vllm, sys; sys.stdout.write(vllm.__version__)"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServeError(f"cannot run {interpreter}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServeError(f"vllm is not importable by {interpreter}: {last}")
    return done.stdout.strip()


def server_start(
    spec: ServeSpec,
    *,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | int | None = None,
) -> subprocess.Popen[bytes]:
    """Start the server in its own process group (so that stopping it stops its children).

    The server also gets SIGTERM if this process dies without stopping it (Linux), so a killed
    `serve_model` does not leave a GPU's memory held by an orphan.
    """
    return subprocess.Popen(
        serve_command(spec, python=python),
        env=dict(env) if env is not None else None,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. A shell's background job starts with SIGINT
    # ignored, and the child would inherit that; give vLLM the default dispositions back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def server_wait(
    process: subprocess.Popen[bytes] | None,
    health_url: str,
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> float:
    """Poll `health_url` until it answers 200; the seconds it took.

    Raises
    ------
    ServeError
        The process exited first, or `timeout` passed.
    """
    started = time.monotonic()
    while True:
        try:
            if httpx.get(health_url, timeout=2.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass  # not listening yet
        if process is not None and process.poll() is not None:
            raise ServeError(f"vllm exited with status {process.returncode} before it was healthy")
        if time.monotonic() - started > timeout:
            raise ServeError(f"{health_url} was not healthy after {timeout:.0f} s")
        time.sleep(_HEALTH_POLL)


def server_stop(process: subprocess.Popen[bytes], *, grace: float = 30.0) -> int:
    """Stop the server and its workers: SIGTERM (vLLM shuts down cleanly), then SIGKILL."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    return process.wait()


def command_display(argv: Sequence[str]) -> str:
    """The command as one line an operator can copy into a shell."""
    return shlex.join(argv)


def _any_interface(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
