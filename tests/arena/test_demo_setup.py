"""The demo's first run: `.env` (written by `make demo`) read by the settings, and models.toml's
demo paths following ARENA_DATA_DIR wherever it points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from arena.registry import registry_load, registry_parse
from arena.settings import envfile

ROOT = Path(__file__).resolve().parents[2]


def test_envfile_fills_the_environment_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# written by make demo\n\nARENA_X_ONE=1\nexport ARENA_X_TWO='two words'\n"
        'ARENA_X_THREE="from the file"\n'
    )
    monkeypatch.delenv("ARENA_X_ONE", raising=False)
    monkeypatch.delenv("ARENA_X_TWO", raising=False)
    monkeypatch.setenv("ARENA_X_THREE", "from the environment")
    envfile(dotenv)
    assert os.environ["ARENA_X_ONE"] == "1"
    assert os.environ["ARENA_X_TWO"] == "two words"
    assert os.environ["ARENA_X_THREE"] == "from the environment"
    monkeypatch.delenv("ARENA_X_ONE")
    monkeypatch.delenv("ARENA_X_TWO")
    envfile(tmp_path / "missing.env")  # no file: nothing to do


def test_envfile_names_the_line_it_cannot_read(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ARENA_DEMO=1\nthis is not a setting\n")
    with pytest.raises(ImproperlyConfigured, match=r"\.env, line 2: expected KEY=VALUE"):
        envfile(dotenv)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ARENA_DEMO", "DEBUG", "SECRET_KEY", "ARENA_DATA_DIR", "ARENA_ENV_FILE")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manage_py_commands_work_against_the_demo_as_written(tmp_path: Path) -> None:
    """No ARENA_DEMO in the shell: the `.env` that make demo writes is enough."""
    data = tmp_path / "demo-data"
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"ARENA_DEMO=1\nARENA_DATA_DIR={data}\n")
    printed = "from django.conf import settings; print(settings.DATA_DIR)"
    result = _manage("shell", "-c", printed, ARENA_ENV_FILE=str(dotenv))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(data)
    # The environment wins over the file.
    other = tmp_path / "other"
    result = _manage("shell", "-c", printed, ARENA_ENV_FILE=str(dotenv), ARENA_DATA_DIR=str(other))
    assert result.stdout.strip().splitlines()[-1] == str(other)
    # Without the file, production rules: a secret key is required.
    missing = _manage("check", ARENA_ENV_FILE=str(tmp_path / "none.env"))
    assert "SECRET_KEY is not set" in missing.stderr


def test_make_demo_writes_the_env_file_and_never_over_one_of_the_readers(
    tmp_path: Path,
) -> None:
    def demo_env(*args: str) -> str:
        made = subprocess.run(
            ["make", "-s", "-f", str(ROOT / "Makefile"), "demo-env", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=30,
            env={k: v for k, v in os.environ.items() if k != "ARENA_DATA_DIR"},
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        return (tmp_path / ".env").read_text()

    written = demo_env("ARENA_DATA_DIR=/some/folder")
    assert written.splitlines()[1:] == ["ARENA_DEMO=1", "ARENA_DATA_DIR=/some/folder"]
    assert demo_env().splitlines()[2] == f"ARENA_DATA_DIR={tmp_path / 'data'}"
    (tmp_path / ".env").write_text("SECRET_KEY=mine\n")
    assert demo_env("ARENA_DATA_DIR=/some/folder") == "SECRET_KEY=mine\n"
    # Not committed by mistake; and make's SIGTERM reaches run_arena itself.
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, timeout=30)
    assert ignored.returncode == 0
    assert "exec $(PY) manage.py run_arena" in (ROOT / "Makefile").read_text()


def test_demo_model_paths_follow_the_data_folder(tmp_path: Path) -> None:
    """ARENA_DATA_DIR=/some/folder make demo: the models are built there and models.toml finds
    them there (it pointed at data/models/ before, and every answer failed)."""
    from workers.tiny_models import build_demo_models
    from workers.tiny_vision import build_demo_vision_models

    data = tmp_path / "elsewhere"
    built = {m.name: m.path for m in build_demo_models(data) + build_demo_vision_models(data)}
    with override_settings(DATA_DIR=data):
        entries = registry_load(ROOT / "models.toml")
    local = {e.name: Path(e.options["path"]) for e in entries if e.backend == "local"}
    assert local == {name: path.resolve() for name, path in built.items()}
    assert all((path / "config.json").is_file() for path in local.values())


def test_placeholder_and_relative_paths(tmp_path: Path) -> None:
    text = """
[[models]]
name = "a"
display_name = "A"
backend = "local"
[models.options]
path = "${ARENA_DATA_DIR}/models/a"

[[models]]
name = "b"
display_name = "B"
backend = "local"
[models.options]
path = "weights/b"

[[models]]
name = "c"
display_name = "C"
backend = "openai"
[models.options]
base_url = "http://gpu1:8001/v1"
[models.vllm]
model = "${ARENA_DATA_DIR}/models/c"
"""
    with override_settings(DATA_DIR=tmp_path / "data"):
        a, b, c = registry_parse(text, base_dir=tmp_path / "conf")
    assert a.options["path"] == str(tmp_path / "data" / "models" / "a")
    assert b.options["path"] == str(tmp_path / "conf" / "weights" / "b")
    assert c.options["vllm"]["model"] == str(tmp_path / "data" / "models" / "c")
