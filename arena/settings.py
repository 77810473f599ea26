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


def envfloat(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """A number; "off" (or "") means 0, for settings where 0 turns a feature off."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _FALSE:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name}={value} must be between {minimum} and {maximum}")
    return value


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be {' or '.join(choices)}")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def envdatabase(name: str, default: str) -> dict[str, object]:
    raw = os.environ.get(name) or default
    try:
        # Connections are kept (and checked before reuse): the API's thread pool and the
        # workers would otherwise reconnect for every request and task.
        config: dict[str, object] = dict(
            dj_database_url.parse(
                raw,
                conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60, minimum=0),
                conn_health_checks=True,
            )
        )
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


def envfile(path: Path) -> None:
    """Read `KEY=VALUE` lines (`#` comments, optional `export` and quotes) from a `.env` file
    into the environment. A variable already in the environment wins over the file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise ImproperlyConfigured(f"{path}, line {number}: expected KEY=VALUE, not {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ.setdefault(key, value)


# `make demo` writes `.env` (ARENA_DEMO=1 and the data folder), so that every `python manage.py`
# command works against the demo as written. ARENA_ENV_FILE names another file; empty: none.
_env_file = os.environ.get("ARENA_ENV_FILE", str(BASE_DIR / ".env"))
if _env_file:
    envfile(Path(_env_file))

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
# The shared Redis keeps rendered leaderboard replies (leaderboard/pages/page_cache.py) for every
# web process; keys carry the snapshot, so nothing is ever invalidated by hand.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "arena-cache",
    }
}
# A web process checks for a new snapshot (or registry edit) at most once per this many seconds
# before it serves a cached leaderboard reply; 0 checks on every request (the tests).
ARENA_LEADERBOARD_FRESH_S = envfloat("ARENA_LEADERBOARD_FRESH_S", 1.0, minimum=0)

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
    # First: a cached leaderboard reply is served before sessions, CSRF and auth run.
    "leaderboard.pages.middleware.LeaderboardCacheMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "arena.middleware.SecurityHeadersMiddleware",
    "arena.middleware.ApiErrorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: one thread hop into the sync middleware per request, not one per middleware.
    "arena.middleware.SyncMiddlewareBoundary",
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
# Sent with every reply by arena.middleware.SecurityHeadersMiddleware. Scripts and styles come
# from our own static files only (no inline code): answers are untrusted model output, and a
# slip in their rendering must not become script execution. data: images are the favicon.
ARENA_CONTENT_SECURITY_POLICY = os.environ.get(
    "ARENA_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
)
# Production runs behind TLS; the demo (DEBUG or ARENA_DEMO) runs on plain http://localhost.
_SECURE = envbool("ARENA_SECURE", not DEBUG and not envbool("ARENA_DEMO", False))
SESSION_COOKIE_SECURE = _SECURE
CSRF_COOKIE_SECURE = _SECURE
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", _SECURE)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000 if _SECURE else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _SECURE
SECURE_HSTS_PRELOAD = _SECURE
# Proxies in front of the web processes whose X-Forwarded-For entries are trusted: the visitor's
# address (rate limits, ARENA_METRICS_NETWORKS) is the entry this many hops from the right
# (arena/visitors.py); 0: the connection's own address, and X-Forwarded-For is never read.
# ARENA_BEHIND_PROXY=1 is the same as 1 hop; ARENA_TRUSTED_PROXY_HOPS, when set, wins. Behind a
# proxy, X-Forwarded-Proto is trusted too.
ARENA_TRUSTED_PROXY_HOPS = envint(
    "ARENA_TRUSTED_PROXY_HOPS", 1 if envbool("ARENA_BEHIND_PROXY", False) else 0, minimum=0
)
if ARENA_TRUSTED_PROXY_HOPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- The arena -------------------------------------------------------------------------------
ARENA_MODELS_FILE = Path(os.environ.get("ARENA_MODELS_FILE") or BASE_DIR / "models.toml")
ARENA_MAX_PROMPT_CHARS = envint("ARENA_MAX_PROMPT_CHARS", 8000, minimum=1)
ARENA_MAX_TURNS = envint("ARENA_MAX_TURNS", 6, minimum=1)
# An image attached to a prompt (arena/images.py): its size as uploaded, and its pixels
# (width x height, checked from the header before any decoding: no decompression bomb).
ARENA_MAX_IMAGE_BYTES = envint("ARENA_MAX_IMAGE_BYTES", 5 * 1024 * 1024, minimum=1024)
ARENA_MAX_IMAGE_PIXELS = envint("ARENA_MAX_IMAGE_PIXELS", 16_000_000, minimum=1)
# A JSON body carries the image in base64 (4/3 of its size) next to the prompt.
DATA_UPLOAD_MAX_MEMORY_SIZE = ARENA_MAX_IMAGE_BYTES * 4 // 3 + 256 * 1024
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
# How often the workers' reaper (workers/leases.py) looks for those.
ARENA_REAPER_SECONDS = envint("ARENA_REAPER_SECONDS", 60, minimum=1)
# A model that fails this many generations in a row leaves the sampling pool until a health
# probe (every ARENA_HEALTH_PROBE_SECONDS) succeeds.
ARENA_UNHEALTHY_AFTER = envint("ARENA_UNHEALTHY_AFTER", 3, minimum=1)
ARENA_HEALTH_PROBE_SECONDS = envint("ARENA_HEALTH_PROBE_SECONDS", 30, minimum=1)
# Seconds between SSE keep-alive comments.
ARENA_SSE_KEEPALIVE_SECONDS = envint("ARENA_SSE_KEEPALIVE_SECONDS", 15, minimum=1)
# Redis connections one process may open (per pool). redis-py's default of 100 is less than a
# worker's threads or a web process's open streams: past it, commands fail at once.
ARENA_REDIS_MAX_CONNECTIONS = envint("ARENA_REDIS_MAX_CONNECTIONS", 2000, minimum=10)
# Threads per web process that run the JSON API's database work (0: Django's one
# thread-sensitive thread, as for a plain sync view; in-process tests use that).
ARENA_API_THREADS = envint("ARENA_API_THREADS", 8, minimum=0)
# Shown on every page when the registry holds the built-in demo models.
ARENA_DEMO = envbool("ARENA_DEMO", False)

# Who fights whom: "weighted" (each model's sampling_weight) or "adaptive" (battles to the models
# known least, planned from battle counts only; see docs/sampling.md).
ARENA_SAMPLING_POLICY = envchoice("ARENA_SAMPLING_POLICY", "weighted", ("weighted", "adaptive"))

# --- Moderation (arena/moderation.py) ------------------------------------------------------------
# Prompts and answers go through the local checker (literal words from
# ARENA_MODERATION_BLOCKLIST, comma-separated, and lines of ARENA_MODERATION_BLOCKLIST_FILE: a
# word per line, `re:` before a regular expression, `#` comments), and through an
# OpenAI-compatible moderation endpoint when ARENA_MODERATION_URL is set
# (POST {url}/v1/moderations; the API key is read from the variable that
# ARENA_MODERATION_API_KEY_ENV names). A flagged prompt is refused; a flagged answer makes the
# vote invalid. Where the endpoint fails (timeout, error reply), "open" lets the text through and
# "closed" refuses the prompt (503) and treats the answer as flagged.
ARENA_MODERATION_BLOCKLIST = envlist("ARENA_MODERATION_BLOCKLIST", [])
ARENA_MODERATION_BLOCKLIST_FILE = os.environ.get("ARENA_MODERATION_BLOCKLIST_FILE", "")
if ARENA_MODERATION_BLOCKLIST_FILE and not Path(ARENA_MODERATION_BLOCKLIST_FILE).is_file():
    raise ImproperlyConfigured(
        f"ARENA_MODERATION_BLOCKLIST_FILE={ARENA_MODERATION_BLOCKLIST_FILE!r} is not a file"
    )
ARENA_MODERATION_URL = os.environ.get("ARENA_MODERATION_URL", "").rstrip("/")
if ARENA_MODERATION_URL and not ARENA_MODERATION_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"ARENA_MODERATION_URL={ARENA_MODERATION_URL!r} must start with http:// or https://"
    )
ARENA_MODERATION_API_KEY_ENV = os.environ.get("ARENA_MODERATION_API_KEY_ENV", "")
if ARENA_MODERATION_API_KEY_ENV and not os.environ.get(ARENA_MODERATION_API_KEY_ENV):
    raise ImproperlyConfigured(
        f"ARENA_MODERATION_API_KEY_ENV names {ARENA_MODERATION_API_KEY_ENV}, which is not set"
    )
ARENA_MODERATION_MODEL = os.environ.get("ARENA_MODERATION_MODEL", "")
ARENA_MODERATION_TIMEOUT_MS = envint("ARENA_MODERATION_TIMEOUT_MS", 3000, minimum=1)
ARENA_MODERATION_FAIL = envchoice("ARENA_MODERATION_FAIL", "open", ("open", "closed"))
ARENA_MODERATION_ANSWERS = envbool("ARENA_MODERATION_ANSWERS", True)

# --- The leaderboard ---------------------------------------------------------------------------
# Seconds between leaderboard refreshes (a refresh with no new votes computes nothing).
ARENA_LEADERBOARD_REFRESH_SECONDS = envint("ARENA_LEADERBOARD_REFRESH_SECONDS", 60, minimum=1)
ARENA_LEADERBOARD_ROUNDS = envint("ARENA_LEADERBOARD_ROUNDS", 1000, minimum=10)
ARENA_LEADERBOARD_CI = envchoice("ARENA_LEADERBOARD_CI", "bootstrap", ("bootstrap", "sandwich"))
ARENA_LEADERBOARD_STYLE_CONTROL = envbool("ARENA_LEADERBOARD_STYLE_CONTROL", True)
# Topics and the ranking for one prompt (docs/topics.md). Prompt vectors come from an
# OpenAI-compatible embeddings endpoint when ARENA_EMBEDDINGS_URL is set (its model, and the name
# of the variable holding its API key), else from a TF-IDF + SVD fitted on the arena's prompts.
ARENA_TOPICS = envbool("ARENA_TOPICS", True)
ARENA_EMBEDDINGS_URL = os.environ.get("ARENA_EMBEDDINGS_URL", "")
ARENA_EMBEDDINGS_MODEL = os.environ.get("ARENA_EMBEDDINGS_MODEL", "")
ARENA_EMBEDDINGS_API_KEY_ENV = os.environ.get("ARENA_EMBEDDINGS_API_KEY_ENV", "")
ARENA_EMBEDDINGS_TIMEOUT_MS = envint("ARENA_EMBEDDINGS_TIMEOUT_MS", 10000, minimum=1)
ARENA_RANK_BANDWIDTH = envfloat("ARENA_RANK_BANDWIDTH", 0.07, minimum=1e-3, maximum=10)
ARENA_RANK_MIN_EFFECTIVE = envint("ARENA_RANK_MIN_EFFECTIVE", 200, minimum=1)
ARENA_RANK_MAX_PROMPT_CHARS = envint("ARENA_RANK_MAX_PROMPT_CHARS", 4000, minimum=1)
# Vote integrity (docs/integrity.md). A prompt that recurs more often than this percentile of
# the prompts keeps only that many votes, drawn with ARENA_DEDUP_SEED (0 or off: keep all).
ARENA_DEDUP_PERCENTILE = envfloat("ARENA_DEDUP_PERCENTILE", 99.9, minimum=0, maximum=100)
ARENA_DEDUP_SEED = envint("ARENA_DEDUP_SEED", 0, minimum=0)
# The voter anomaly detector runs before each leaderboard refresh; flagged voters' votes stop
# counting until staff re-include them in the admin. ALPHA bounds the chance that an honest
# voter is flagged by each sequential test; a burst is more than BURST_VOTES votes within
# BURST_SECONDS; the side test needs SIDE_MIN_VOTES decisive votes.
ARENA_ANOMALY_DETECTION = envbool("ARENA_ANOMALY_DETECTION", True)
ARENA_ANOMALY_ALPHA = envfloat("ARENA_ANOMALY_ALPHA", 0.01, minimum=1e-12, maximum=0.5)
ARENA_ANOMALY_BURST_VOTES = envint("ARENA_ANOMALY_BURST_VOTES", 30, minimum=1)
ARENA_ANOMALY_BURST_SECONDS = envint("ARENA_ANOMALY_BURST_SECONDS", 600, minimum=1)
ARENA_ANOMALY_SIDE_MIN_VOTES = envint("ARENA_ANOMALY_SIDE_MIN_VOTES", 20, minimum=1)
# The categories are data: each is a subset of the valid votes (see
# leaderboard/pipeline/categories.py).
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

# --- Operations: health, metrics, logs (docs/deployment.md) ------------------------------------
# Seconds between a worker's heartbeats in Redis; readers count a worker dead after 3 missed.
ARENA_WORKER_HEARTBEAT_SECONDS = envint("ARENA_WORKER_HEARTBEAT_SECONDS", 10, minimum=1)
# A worker's capacity slots and answers are leases it renews every quarter of this; those of a
# worker that died lapse within it and go to the live workers (workers/leases.py).
ARENA_WORKER_LEASE_SECONDS = envint("ARENA_WORKER_LEASE_SECONDS", 10, minimum=2)
# /metrics answers a request that carries `Authorization: Bearer <ARENA_METRICS_TOKEN>`, and one
# whose client address (as uvicorn sees it) is in ARENA_METRICS_NETWORKS (comma-separated CIDRs;
# loopback by default, everyone in the demo; empty: the token only).
ARENA_METRICS_TOKEN = os.environ.get("ARENA_METRICS_TOKEN", "")
_demo_or_debug = DEBUG or envbool("ARENA_DEMO", False)
try:
    import ipaddress

    ARENA_METRICS_NETWORKS = [
        ipaddress.ip_network(net, strict=False)
        for net in envlist(
            "ARENA_METRICS_NETWORKS",
            ["0.0.0.0/0", "::/0"] if _demo_or_debug else ["127.0.0.0/8", "::1/128"],
        )
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"ARENA_METRICS_NETWORKS: {exc}") from None
# Probes and scrapers inside the private network speak plain HTTP to the web processes: no
# redirect to https for them (everything else still gets SECURE_SSL_REDIRECT).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# One JSON object per log line (production) or plain text (the default under DEBUG or the demo).
ARENA_LOG_FORMAT = os.environ.get("ARENA_LOG_FORMAT") or ("plain" if _demo_or_debug else "json")
if ARENA_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"ARENA_LOG_FORMAT={ARENA_LOG_FORMAT!r} must be json or plain")

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": ARENA_GENERATION_TIMEOUT_SECONDS * 2,
    # After Redis restarts, a worker whose connections are never PINGed can sit on a dead
    # socket and stop consuming (celery/kombu issues 9054, 10325): PING every 10 s, TCP
    # keep-alives, and a bounded connect.
    "health_check_interval": 10,
    "socket_keepalive": True,
    "socket_connect_timeout": 5,
}
# Celery's Django fix-up would close every database connection around every task; with a count
# it never reaches it leaves them to workers/connections.py, which keeps each thread's connection
# for DATABASE_CONN_MAX_AGE, as the web does (a fresh connection per answer cost CPU each time).
CELERY_DB_REUSE_MAX = 2**62
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker outlives any Redis outage
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULE = {
    # No reaper here: each worker reaps in a thread of its own (workers/leases.py), where
    # generations waiting in the pool cannot hold it up.
    "probe-unhealthy-models": {
        "task": "workers.tasks.probe_unhealthy_models",
        "schedule": float(ARENA_HEALTH_PROBE_SECONDS),
    },
    # The snapshot, and with it the adaptive sampling plan (leaderboard/tasks.py).
    "refresh-leaderboard": {
        "task": "leaderboard.tasks.refresh_leaderboard",
        "schedule": float(ARENA_LEADERBOARD_REFRESH_SECONDS),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "arena.logs.JsonFormatter"},
    },
    # Web processes and Celery workers alike (arena/celery.py keeps Celery from replacing it).
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": ARENA_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: one line per generation in a worker is noise.
    "loggers": {"django.request": {"level": "ERROR"}, "httpx": {"level": "WARNING"}},
}
