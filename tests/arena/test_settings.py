from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from arena.settings import envbool, envdatabase, envint, envlist, envredis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return monkeypatch


def test_envbool_reads_common_spellings(env: pytest.MonkeyPatch) -> None:
    for raw, expected in [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False)]:
        env.setenv("X_FLAG", raw)
        assert envbool("X_FLAG", not expected) is expected
    env.delenv("X_FLAG")
    assert envbool("X_FLAG", True) is True


def test_envbool_rejects_garbage_naming_the_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        envbool("X_FLAG", False)


def test_envint_checks_type_and_minimum(env: pytest.MonkeyPatch) -> None:
    env.setenv("X_NUM", "12")
    assert envint("X_NUM", 3) == 12
    env.setenv("X_NUM", "twelve")
    with pytest.raises(ImproperlyConfigured, match="X_NUM='twelve' is not an integer"):
        envint("X_NUM", 3)
    env.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured, match="X_NUM=0 must be at least 1"):
        envint("X_NUM", 3, minimum=1)


def test_envlist_splits_and_strips(env: pytest.MonkeyPatch) -> None:
    env.setenv("X_LIST", " a.example, b.example ,,")
    assert envlist("X_LIST", []) == ["a.example", "b.example"]


def test_envdatabase_parses_postgres_and_sqlite(env: pytest.MonkeyPatch) -> None:
    env.setenv("X_DB", "postgres://arena:pw@db.internal:5433/arena")
    config = envdatabase("X_DB", "sqlite:///unused")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.internal", 5433, "arena")
    env.delenv("X_DB")
    sqlite = envdatabase("X_DB", "sqlite:////tmp/x/arena.sqlite3")
    assert sqlite["NAME"] == "/tmp/x/arena.sqlite3"
    assert sqlite["TEST"] == {"NAME": "/tmp/x/arena.test.sqlite3"}


def test_envdatabase_rejects_an_unknown_scheme(env: pytest.MonkeyPatch) -> None:
    env.setenv("X_DB", "mongodb://nope")
    with pytest.raises(ImproperlyConfigured, match="X_DB='mongodb://nope' is not a database URL"):
        envdatabase("X_DB", "sqlite:///unused")


def test_envredis_requires_a_redis_scheme(env: pytest.MonkeyPatch) -> None:
    env.setenv("X_REDIS", "localhost:6379")
    with pytest.raises(ImproperlyConfigured, match="X_REDIS='localhost:6379' must start with"):
        envredis("X_REDIS", "redis://localhost")


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("ARENA_DEMO", "DEBUG", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_value_stops_startup_with_one_line_naming_the_variable() -> None:
    result = _manage("check", ARENA_DEMO="1", ARENA_MAX_TURNS="lots")
    assert result.returncode != 0
    assert result.stderr.strip() == "error: ARENA_MAX_TURNS='lots' is not an integer"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"ARENA_MODERATION_FAIL": "maybe"},
            "ARENA_MODERATION_FAIL='maybe' must be open or closed",
        ),
        ({"ARENA_MODERATION_URL": "ftp://x"}, "must start with http:// or https://"),
        ({"ARENA_MODERATION_API_KEY_ENV": "ARENA_NO_SUCH_KEY"}, "which is not set"),
        ({"ARENA_MODERATION_BLOCKLIST_FILE": "/no/such/file"}, "is not a file"),
    ],
)
def test_bad_moderation_settings_stop_startup(variables: dict[str, str], message: str) -> None:
    result = _manage("check", ARENA_DEMO="1", **variables)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_without_secret_key_refuses_to_start() -> None:
    result = _manage("check")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_settings_pass_check_deploy() -> None:
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY="x" * 30 + "-production-secret-key-for-the-test-0123456789",
        ALLOWED_HOSTS="arena.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
