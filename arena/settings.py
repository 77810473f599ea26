"""Settings for Model Arena, read from the environment.

Every variable has a default that makes the demo work from a clean clone (SQLite, the embedded
Redis that `manage.py run_arena` starts). A bad value stops start-up with a message naming the
variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use one of: 1, 0, true, false)")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def envdatabase(name: str, default: str) -> dict[str, object]:
    raw = os.environ.get(name) or default
    try:
        config: dict[str, object] = dict(dj_database_url.parse(raw, conn_max_age=0))
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a database URL: {exc}") from None
    if config.get("ENGINE") == "django.db.backends.sqlite3":
        # WAL lets the web process read while a worker writes; IMMEDIATE avoids the
        # "database is locked" upgrade deadlock between two writers.
        config["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # The test database must be a file: workers and the web server under test are
        # separate processes and cannot see an in-memory database.
        config["TEST"] = {"NAME": str(Path(str(config["NAME"])).with_suffix(".test.sqlite3"))}
        Path(str(config["NAME"])).parent.mkdir(parents=True, exist_ok=True)
    return config


def envredis(name: str, default: str) -> str:
    raw = os.environ.get(name) or default
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"{name}={raw!r} must start with redis://, rediss:// or unix://")
    return raw


DATA_DIR = Path(os.environ.get("ARENA_DATA_DIR") or BASE_DIR / "data")
DEBUG = envbool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and not envbool("ARENA_DEMO", False):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: set it to a long random string (or set DEBUG=1 / ARENA_DEMO=1 "
            "for a local demo with a throwaway key)"
        )
    SECRET_KEY = "insecure-demo-key-do-not-use-in-production-0123456789abcdef"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

# The embedded Redis that `run_arena` starts listens here when REDIS_URL is unset.
EMBEDDED_REDIS_PORT = envint("ARENA_REDIS_PORT", 6399, minimum=1)
REDIS_URL = envredis("REDIS_URL", f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0")
REDIS_IS_EMBEDDED = "REDIS_URL" not in os.environ

DATABASES = {"default": envdatabase("DATABASE_URL", f"sqlite:///{DATA_DIR / 'arena.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "arena",
    "leaderboard",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "arena.urls"
ASGI_APPLICATION = "arena.asgi.application"
CSRF_FAILURE_VIEW = "arena.views.csrf_failure"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "arena.views.site_context",
            ]
        },
    }
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_TZ = True
USE_I18N = False

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"

SESSION_COOKIE_AGE = 60 * 60 * 24 * 30
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Production runs behind TLS; the demo (DEBUG or ARENA_DEMO) runs on plain http://localhost.
_SECURE = envbool("ARENA_SECURE", not DEBUG and not envbool("ARENA_DEMO", False))
SESSION_COOKIE_SECURE = _SECURE
CSRF_COOKIE_SECURE = _SECURE
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", _SECURE)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000 if _SECURE else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _SECURE
SECURE_HSTS_PRELOAD = _SECURE
if envbool("ARENA_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- The arena -------------------------------------------------------------------------------
ARENA_MODELS_FILE = Path(os.environ.get("ARENA_MODELS_FILE") or BASE_DIR / "models.toml")
ARENA_MAX_PROMPT_CHARS = envint("ARENA_MAX_PROMPT_CHARS", 8000, minimum=1)
ARENA_MAX_TURNS = envint("ARENA_MAX_TURNS", 6, minimum=1)
# Battles a visitor may start per minute; beyond it a 429 with Retry-After.
ARENA_BATTLES_PER_MINUTE = envint("ARENA_BATTLES_PER_MINUTE", 20, minimum=1)
# The same per IP address (a keyed hash of it), for many sessions behind one address.
ARENA_BATTLES_PER_IP_MINUTE = envint("ARENA_BATTLES_PER_IP_MINUTE", 60, minimum=1)
ARENA_BATTLES_PER_IP_DAY = envint("ARENA_BATTLES_PER_IP_DAY", 2000, minimum=1)
ARENA_VOTES_PER_MINUTE = envint("ARENA_VOTES_PER_MINUTE", 20, minimum=1)
# Token streams live in Redis only while they are useful: this long after the answer is stored.
ARENA_STREAM_TTL_SECONDS = envint("ARENA_STREAM_TTL_SECONDS", 600, minimum=1)
# A generation that has not finished after this long is failed by the reaper.
ARENA_GENERATION_TIMEOUT_SECONDS = envint("ARENA_GENERATION_TIMEOUT_SECONDS", 300, minimum=10)
# A model that fails this many generations in a row leaves the sampling pool until a health
# probe (every ARENA_HEALTH_PROBE_SECONDS) succeeds.
ARENA_UNHEALTHY_AFTER = envint("ARENA_UNHEALTHY_AFTER", 3, minimum=1)
ARENA_HEALTH_PROBE_SECONDS = envint("ARENA_HEALTH_PROBE_SECONDS", 30, minimum=1)
# Seconds between SSE keep-alive comments.
ARENA_SSE_KEEPALIVE_SECONDS = envint("ARENA_SSE_KEEPALIVE_SECONDS", 15, minimum=1)
# Shown on every page when the registry holds the built-in demo models.
ARENA_DEMO = envbool("ARENA_DEMO", False)

# Who fights whom: "weighted" (each model's sampling_weight) or "adaptive" (the pairs whose
# outcome would most narrow the intervals that matter; see docs/sampling.md).
ARENA_SAMPLING_POLICY = os.environ.get("ARENA_SAMPLING_POLICY", "weighted")
if ARENA_SAMPLING_POLICY not in ("weighted", "adaptive"):
    raise ImproperlyConfigured(
        f"ARENA_SAMPLING_POLICY={ARENA_SAMPLING_POLICY!r} must be weighted or adaptive"
    )

# --- The leaderboard ---------------------------------------------------------------------------
# Seconds between leaderboard refreshes (a refresh with no new votes computes nothing).
ARENA_LEADERBOARD_REFRESH_SECONDS = envint("ARENA_LEADERBOARD_REFRESH_SECONDS", 60, minimum=1)
ARENA_LEADERBOARD_ROUNDS = envint("ARENA_LEADERBOARD_ROUNDS", 1000, minimum=10)
ARENA_LEADERBOARD_CI = os.environ.get("ARENA_LEADERBOARD_CI", "bootstrap")
if ARENA_LEADERBOARD_CI not in ("bootstrap", "sandwich"):
    raise ImproperlyConfigured(
        f"ARENA_LEADERBOARD_CI={ARENA_LEADERBOARD_CI!r} must be bootstrap or sandwich"
    )
ARENA_LEADERBOARD_STYLE_CONTROL = envbool("ARENA_LEADERBOARD_STYLE_CONTROL", True)
# The categories are data: each is a subset of the valid votes (see leaderboard/categories.py).
# Columns: language (a tag such as "en"), is_english, turns, prompt_chars, is_code, tstamp.
ARENA_CATEGORIES: list[dict[str, object]] = [
    {"name": "overall"},
    {"name": "english", "equals": {"language": "en"}},
    {"name": "non_english", "equals": {"is_english": False}},
    {"name": "coding", "equals": {"is_code": True}},
    {"name": "multi_turn", "at_least": {"turns": 2}},
    {"name": "long_prompt", "at_least": {"prompt_chars": 1000}},
    {"name": "no_ties", "exclude_ties": True},
]
_categories_file = os.environ.get("ARENA_CATEGORIES_FILE")
if _categories_file:
    import tomllib

    try:
        ARENA_CATEGORIES = tomllib.loads(Path(_categories_file).read_text())["categories"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ImproperlyConfigured(
            f"ARENA_CATEGORIES_FILE={_categories_file!r}: expected a TOML file with "
            f"[[categories]] tables ({exc})"
        ) from None

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": ARENA_GENERATION_TIMEOUT_SECONDS * 2}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULE = {
    "reap-stuck-generations": {"task": "workers.tasks.reap_stuck", "schedule": 60.0},
    "probe-unhealthy-models": {
        "task": "workers.tasks.probe_unhealthy_models",
        "schedule": float(ARENA_HEALTH_PROBE_SECONDS),
    },
    "refresh-sampling-plan": {
        "task": "arena.tasks.refresh_sampling_plan",
        "schedule": float(ARENA_LEADERBOARD_REFRESH_SECONDS),
    },
    "refresh-leaderboard": {
        "task": "leaderboard.tasks.refresh_leaderboard",
        "schedule": float(ARENA_LEADERBOARD_REFRESH_SECONDS),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: one line per generation in a worker is noise.
    "loggers": {"django.request": {"level": "ERROR"}, "httpx": {"level": "WARNING"}},
}
