"""`manage.py serve_model` and workers.backends.vllm_server: the command line built from a
registry entry, and the start / wait for /health / stop cycle.

vLLM itself is the external boundary here: the cycle runs against a stand-in `vllm` package
(written to a temporary folder) whose api_server module serves the replay server's /health.
The real thing runs in scripts/test_vllm.sh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from arena.embedded_redis import free_port
from arena.registry import registry_parse
from workers.backends import vllm_server
from workers.backends.vllm_server import ServeError, serve_command, serve_spec

ROOT = Path(__file__).resolve().parents[2]

MODELS = """
[[models]]
name = "qwen-7b"
display_name = "Qwen 7B"
backend = "openai"
[models.options]
base_url = "http://gpu1:8001/v1"
[models.vllm]
model = "Qwen/Qwen2.5-7B-Instruct"
port = 8001
gpu_memory_utilization = 0.45
max_model_len = 8192
dtype = "bfloat16"
extra_args = ["--enable-prefix-caching", "--max-num-seqs", "64"]

[[models]]
name = "small"
display_name = "Small"
backend = "openai"
[models.options]
base_url = "http://gpu1:8002/v1"
served_model_name = "small-served"
[models.vllm]
model = "org/small"

[[models]]
name = "hosted"
display_name = "Hosted elsewhere"
backend = "openai"
[models.options]
base_url = "https://api.example.com/v1"
"""


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(MODELS)
    return path


def options_of(name: str, tmp_path: Path) -> dict:
    entries = {e.name: e for e in registry_parse(MODELS, base_dir=tmp_path)}
    return entries[name].options


# The command line ----------------------------------------------------------------------------


def test_command_line_carries_every_field_of_the_vllm_table(tmp_path: Path) -> None:
    spec = serve_spec("qwen-7b", options_of("qwen-7b", tmp_path))
    argv = serve_command(spec, python="/opt/vllm/bin/python")
    assert argv == [
        "/opt/vllm/bin/python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "Qwen/Qwen2.5-7B-Instruct",
        "--served-model-name",
        "qwen-7b",
        "--host",
        "127.0.0.1",
        "--port",
        "8001",
        "--gpu-memory-utilization",
        "0.45",
        "--max-model-len",
        "8192",
        "--dtype",
        "bfloat16",
        # Last, so that they can override anything above.
        "--enable-prefix-caching",
        "--max-num-seqs",
        "64",
    ]
    assert spec.base_url == "http://127.0.0.1:8001/v1"


def test_host_and_port_arguments_win_and_a_bare_table_gets_defaults(tmp_path: Path) -> None:
    spec = serve_spec("small", options_of("small", tmp_path), host="10.0.0.5", port=9000)
    assert spec.args == (
        "--model",
        "org/small",
        "--served-model-name",
        "small-served",
        "--host",
        "10.0.0.5",
        "--port",
        "9000",
    )
    assert spec.base_url == "http://10.0.0.5:9000/v1"
    assert serve_spec("small", options_of("small", tmp_path)).port == vllm_server.DEFAULT_PORT


def test_a_server_on_every_interface_advertises_this_hosts_name(tmp_path: Path) -> None:
    import socket

    spec = serve_spec("qwen-7b", options_of("qwen-7b", tmp_path), host="0.0.0.0")
    assert spec.base_url == f"http://{socket.gethostname()}:8001/v1"
    assert spec.health_url == "http://127.0.0.1:8001/health"


def test_an_entry_without_a_vllm_table_cannot_be_served(tmp_path: Path) -> None:
    with pytest.raises(ServeError, match=r"'hosted' has no \[models.vllm\] table"):
        serve_spec("hosted", options_of("hosted", tmp_path))


def test_print_command_shows_the_line_without_starting_anything(
    models_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command(
        "serve_model", "small", "--file", str(models_file), "--python", "/x/py", "--print-command"
    )
    out = capsys.readouterr().out.strip()
    assert out == (
        "/x/py -m vllm.entrypoints.openai.api_server --model org/small "
        "--served-model-name small-served --host 127.0.0.1 --port 8000"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown model 'nope' in "),
        (["hosted"], "model 'hosted' has no [models.vllm] table in the models file"),
        (["small", "--python", "/nonexistent/python"], "cannot run /nonexistent/python"),
        # This test environment's own Python has no vllm.
        (["small", "--python", sys.executable], f"vllm is not importable by {sys.executable}"),
    ],
)
def test_serve_model_fails_with_one_line(models_file: Path, args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as error:
        call_command("serve_model", *args, "--file", str(models_file))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


# Start, wait for /health, stop ---------------------------------------------------------------

FAKE_API_SERVER = """
import argparse, json, os, signal, sys, time

from tests.workers.replay_server import ReplayServer

parser = argparse.ArgumentParser()
parser.add_argument("--model")
parser.add_argument("--served-model-name")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
args, rest = parser.parse_known_args()
with open(os.environ["FAKE_VLLM_RECORD"], "w") as f:
    json.dump({"argv": sys.argv[1:], "pid": os.getpid()}, f)
time.sleep(float(os.environ.get("FAKE_VLLM_BOOT", "0.5")))  # loading weights
if os.environ.get("FAKE_VLLM_CRASH"):
    sys.exit(3)
server = ReplayServer(host=args.host, port=args.port)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *a: (server.close(), sys.exit(0)))
while True:
    time.sleep(1)
"""


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    """A folder that makes `import vllm` find a stand-in serving /health like vLLM."""
    package = tmp_path / "fake" / "vllm"
    (package / "entrypoints" / "openai").mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.0.0-fake"\n')
    (package / "entrypoints" / "__init__.py").write_text("")
    (package / "entrypoints" / "openai" / "__init__.py").write_text("")
    (package / "entrypoints" / "openai" / "api_server.py").write_text(
        textwrap.dedent(FAKE_API_SERVER)
    )
    return tmp_path / "fake"


def _serve(
    models_file: Path, fake: Path, port: int, *, ignore_sigint: bool = False, **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve_model", "small", "--file", str(models_file),
         "--port", str(port), "--timeout", "30"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{ROOT}", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As a shell script's background job starts: with SIGINT ignored.
        preexec_fn=_ignore_sigint if ignore_sigint else None,
    )  # fmt: skip


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited too; only its parent's wait() is missing.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["foreground", "background-job"])
def test_serve_model_starts_waits_for_health_prints_base_url_and_ctrl_c_stops_it(
    models_file: Path, fake_vllm: Path, tmp_path: Path, ignore_sigint: bool
) -> None:
    port = free_port()
    record = tmp_path / "record.json"
    process = _serve(
        models_file, fake_vllm, port, ignore_sigint=ignore_sigint, FAKE_VLLM_RECORD=str(record)
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "base_url:" in line:
                break
        assert lines[0].startswith("starting vLLM 0.0.0-fake for small: ")
        assert lines[-1].strip().endswith(f"base_url: http://127.0.0.1:{port}/v1")
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        started = json.loads(record.read_text())
        assert started["argv"] == [
            "--model", "org/small", "--served-model-name", "small-served",
            "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "stopping small" in process.stdout.read()
        deadline = time.monotonic() + 10
        while _alive(started["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(started["pid"]), "the vLLM process outlived serve_model"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_model_reports_a_server_that_dies_before_it_is_healthy(
    models_file: Path, fake_vllm: Path, tmp_path: Path
) -> None:
    process = _serve(
        models_file,
        fake_vllm,
        free_port(),
        FAKE_VLLM_RECORD=str(tmp_path / "record.json"),
        FAKE_VLLM_CRASH="1",
    )
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "CommandError: vllm exited with status 3 before it was healthy" in out


def test_server_wait_gives_up_after_its_timeout() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    started = time.monotonic()
    with pytest.raises(ServeError, match="was not healthy after 1 s"):
        vllm_server.server_wait(None, url, timeout=1.0)
    assert time.monotonic() - started < 5
