"""The arena deployed on the test hosts of tests/cluster/hosts.py: the multi-host test's stack.

    client  10.213.47.2   this test process (the visitors' browsers, the operator's shell)
    db      10.213.47.10  PostgreSQL 5432, Redis 6379
    web1    10.213.47.21  uvicorn 8000          web2  10.213.47.22  uvicorn 8000
    gpu1    10.213.47.31  model server 8000: atlas
    gpu2    10.213.47.32  model server 8000: birch, cedar
    work1   10.213.47.41  Celery worker         work2 10.213.47.42  Celery worker, beat

Each service listens on its own host's address only. Timeouts are shortened through the same
environment variables an operator would set (see `ArenaCluster.env`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from arena.embedded_redis import redis_server_binary
from tests.cluster.hosts import SUBNET, Cluster, HostError, Service
from tests.visitor import Visitor

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TOPOLOGY = {"client": 2, "db": 10, "web1": 21, "web2": 22, "gpu1": 31, "gpu2": 32,
            "work1": 41, "work2": 42}  # fmt: skip
WEB_PORT = MODEL_PORT = 8000
PG_PORT, REDIS_PORT = 5432, 6379
# model name -> (host, sampling weight). atlas is drawn into most battles (8 of 9 pairs), so
# cutting gpu1 off shows at once.
MODELS = {"atlas": ("gpu1", 4.0), "birch": ("gpu2", 1.0), "cedar": ("gpu2", 1.0)}
QUEUES = ["celery", *(f"model.{name}" for name in MODELS)]
# The generation timeout (the reaper's bound; twice it is the broker's visibility timeout).
GENERATION_TIMEOUT_S = 10
UNHEALTHY_AFTER = 2
PROBE_S = 2
# Seconds between the frames of an answer: 27 frames, about 3 s per answer.
FRAME_DELAY_S = 0.1


def postgres_bindir() -> Path | None:
    """The folder of initdb and postgres: on PATH, else Debian's newest version."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; that value, else AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError, psycopg.Error, redis.RedisError):
            value = check()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


class ArenaCluster:
    def __init__(self) -> None:
        self.net = Cluster(TOPOLOGY, log_dir=ROOT / "var" / "cluster")
        self.secret_key = secrets.token_urlsafe(48)
        self.services: dict[str, Service] = {}
        self.celery: Any = None

    # Addresses -------------------------------------------------------------------------------

    def address(self, host: str) -> str:
        return self.net[host].address

    def url(self, host: str) -> str:
        return f"http://{self.address(host)}:{WEB_PORT}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.address('db')}:{REDIS_PORT}/0"

    @property
    def database_url(self) -> str:
        return f"postgres://arena@{self.address('db')}:{PG_PORT}/arena"

    def env(self) -> dict[str, str]:
        """What every arena process on every host gets: one configuration, as in production."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "TMPDIR")
        return {
            **{k: os.environ[k] for k in keep if k in os.environ},
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "DJANGO_SETTINGS_MODULE": "arena.settings",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": self.secret_key,  # the same on both web hosts: one session, any host
            "ALLOWED_HOSTS": ",".join(self.address(h) for h in ("web1", "web2")),
            "ARENA_SECURE": "0",  # plain http inside the private network
            "ARENA_LOG_FORMAT": "plain",
            "ARENA_DATA_DIR": str(self.net.workdir / "data"),
            "ARENA_MODELS_FILE": str(self.net.workdir / "models.toml"),
            "ARENA_GENERATION_TIMEOUT_SECONDS": str(GENERATION_TIMEOUT_S),
            "ARENA_UNHEALTHY_AFTER": str(UNHEALTHY_AFTER),
            "ARENA_HEALTH_PROBE_SECONDS": str(PROBE_S),
            "ARENA_SSE_KEEPALIVE_SECONDS": "1",
            "ARENA_WORKER_HEARTBEAT_SECONDS": "2",
            # The test refreshes the leaderboard itself; beat's refresh stays out of the way.
            "ARENA_LEADERBOARD_REFRESH_SECONDS": "3600",
            "ARENA_LEADERBOARD_ROUNDS": "20",
            # Every visitor comes from the client host's one address.
            "ARENA_BATTLES_PER_MINUTE": "1000",
            "ARENA_BATTLES_PER_IP_MINUTE": "1000",
            "ARENA_VOTES_PER_MINUTE": "1000",
        }

    # Start and stop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Build the hosts and start every service; the caller has entered the client host."""
        (self.net.workdir / "data").mkdir()
        self._models_file_write()
        self._db_start()
        for gpu in ("gpu1", "gpu2"):
            self.services[gpu] = self.net[gpu].start(
                "model-server",
                [PYTHON, "-m", "tests.cluster.model_server", "--host", self.address(gpu),
                 "--port", str(MODEL_PORT), "--delay", str(FRAME_DELAY_S)],
                env=self.env(),
                cwd=ROOT,
            )  # fmt: skip
        self.manage("work2", "migrate", "--noinput", timeout=300)
        self.manage("work2", "sync_models")
        for web in ("web1", "web2"):
            self.services[web] = self.net[web].start(
                "uvicorn",
                [PYTHON, "-m", "uvicorn", "arena.asgi:application", "--host", self.address(web),
                 "--port", str(WEB_PORT), "--timeout-graceful-shutdown", "2"],
                env=self.env(),
                cwd=ROOT,
            )  # fmt: skip
        for work in ("work1", "work2"):
            self.worker_start(work)
        self.services["beat"] = self.net["work2"].start(
            "beat",
            [PYTHON, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
             "--schedule", str(self.net.workdir / "celerybeat-schedule")],
            env=self.env(),
            cwd=ROOT,
        )  # fmt: skip
        # Everything starts at once (2 cores); now wait for each.
        for gpu in ("gpu1", "gpu2"):
            url = f"http://{self.address(gpu)}:{MODEL_PORT}/v1/models"
            self.services[gpu].wait_for(
                partial(self._answers, url), timeout=60, what="model server not answering"
            )
        for web in ("web1", "web2"):
            self.services[web].wait_for(
                partial(self.web_ready, web), timeout=90, what="web not ready"
            )
        for work in ("work1", "work2"):
            self.worker_wait(work)
        self.services["beat"].wait_for(
            lambda: "beat: Starting" in self.services["beat"].log_text(since_start=True),
            timeout=90,
            what="beat did not start",
        )

    def stop(self) -> None:
        """Everything goes, hosts included, whatever state the test left it in."""
        if self.celery is not None:
            with contextlib.suppress(Exception):
                self.celery.close()
        self.net.down()

    def _models_file_write(self) -> None:
        entries = []
        for name, (host, weight) in MODELS.items():
            entries.append(
                f"""[[models]]
name = "{name}"
display_name = "{name.title()} 1B"
organization = "Cluster Test"
license = "MIT"
backend = "openai"
sampling_weight = {weight}
max_concurrency = 8
[models.options]
base_url = "http://{self.address(host)}:{MODEL_PORT}/v1"
served_model_name = "{name}"
# A host that is cut off fails a generation within seconds, and no retry hides it.
connect_timeout = 1.0
read_timeout = 2.0
retries = 0
[models.sampling]
max_tokens = 64
"""
            )
        (self.net.workdir / "models.toml").write_text("\n".join(entries))

    def _db_start(self) -> None:
        """PostgreSQL and Redis on db, listening on db's address only."""
        db, env = self.net["db"], self.env()
        bindir = postgres_bindir()
        assert bindir is not None, "PostgreSQL is not installed"
        pgdata = self.net.workdir / "pg"
        # initdb refuses root: the cluster belongs to the postgres user (as in .ci/run).
        self.net.workdir.chmod(0o711)
        pgdata.mkdir()
        shutil.chown(pgdata, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        db.run([*as_postgres, str(bindir / "initdb"), "-D", str(pgdata / "data"), "-U", "arena",
                "--auth=trust", "--no-sync"], env=env, cwd=pgdata)  # fmt: skip
        with open(pgdata / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        self.services["postgres"] = db.start(
            "postgres",
            [*as_postgres, str(bindir / "postgres"), "-D", str(pgdata / "data"),
             "-p", str(PG_PORT), "-c", f"listen_addresses={db.address}",
             "-c", "unix_socket_directories=", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            env=env,
            cwd=pgdata,
            stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown
        )  # fmt: skip
        self.redis_start()
        self.services["postgres"].wait_for(
            lambda: self._pg_connects(), timeout=60, what="PostgreSQL not accepting connections"
        )
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE arena")

    def redis_start(self) -> None:
        db = self.net["db"]
        self.services["redis"] = db.start(
            "redis",
            [str(redis_server_binary()), "--bind", db.address, "--port", str(REDIS_PORT),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice"],
            env=self.env(),
            cwd=ROOT,
        )  # fmt: skip
        client = redis.Redis(host=db.address, port=REDIS_PORT, socket_connect_timeout=1)
        self.services["redis"].wait_for(
            lambda: self._quietly(client.ping), timeout=20, what="Redis not answering"
        )
        client.close()

    def redis_restart(self) -> None:
        """Redis goes away and comes back empty (nothing is persisted, as in the design)."""
        self.services["redis"].stop()
        self.redis_start()

    def worker_start(self, host: str) -> Service:
        self.services[host] = self.net[host].start(
            "worker",
            [PYTHON, "-m", "celery", "-A", "workers", "worker", "--pool", "threads",
             "--concurrency", "4", "-Q", ",".join(QUEUES), "--loglevel", "INFO",
             "--hostname", f"{host}@{self.net.id}", "--without-heartbeat", "--without-gossip",
             "--without-mingle"],
            env=self.env(),
            cwd=ROOT,
        )  # fmt: skip
        return self.services[host]

    def worker_wait(self, host: str) -> None:
        worker = self.services[host]
        worker.wait_for(
            lambda: " ready." in worker.log_text(since_start=True), timeout=90, what="not ready"
        )

    # Probes ---------------------------------------------------------------------------------

    def web_ready(self, host: str) -> bool:
        """/readyz where the app has it (database and Redis reachable), else /healthz."""
        reply = httpx.get(f"{self.url(host)}/readyz", timeout=3)
        if reply.status_code == 404:
            reply = httpx.get(f"{self.url(host)}/healthz", timeout=3)
        return reply.status_code == 200

    @staticmethod
    def _answers(url: str) -> bool:
        return httpx.get(url, timeout=2).status_code == 200

    @staticmethod
    def _quietly(check: Callable[[], Any]) -> bool:
        try:
            return bool(check())
        except (redis.RedisError, OSError):
            return False

    def _dsn(self, dbname: str = "arena") -> str:
        return (
            f"host={self.address('db')} port={PG_PORT} user=arena dbname={dbname} connect_timeout=2"
        )

    def _pg_connects(self) -> bool:
        try:
            psycopg.connect(self._dsn("postgres")).close()
        except psycopg.OperationalError:
            return False
        return True

    # Operator's tools --------------------------------------------------------------------------

    def manage(self, host: str, *args: str, timeout: float = 120) -> str:
        """`python manage.py ...` on a host; its standard output."""
        done = self.net[host].run(
            [PYTHON, "manage.py", *args], env=self.env(), timeout=timeout, cwd=ROOT
        )
        return done.stdout

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self._dsn(), autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def send_task(self, name: str) -> None:
        """Send a Celery task as beat would (to the default queue, which both workers consume)."""
        if self.celery is None:
            from celery import Celery

            self.celery = Celery("cluster-test", broker=self.redis_url)
        self.celery.send_task(name, queue="celery", retry=True, retry_policy={"max_retries": 3})

    def model_requests(self, gpu: str) -> list[dict[str, Any]]:
        """The chat requests a model server received (client address, model, prompt, state)."""
        url = f"http://{self.address(gpu)}:{MODEL_PORT}/_cluster/requests"
        reply = httpx.get(url, timeout=5)
        reply.raise_for_status()
        requests: list[dict[str, Any]] = reply.json()
        return requests

    def responses(self, battle_id: str) -> dict[str, dict[str, Any]]:
        """The battle's current answers by side, as the database has them."""
        rows = self.sql(
            "SELECT r.side, m.name, r.status, r.text, r.error FROM arena_response r "
            "JOIN arena_turn t ON t.id = r.turn_id JOIN arena_arenamodel m ON m.id = r.model_id "
            "WHERE t.battle_id = %s AND NOT r.superseded ORDER BY t.index",
            battle_id,
        )
        keys = ("model", "status", "text", "error")
        return {side: dict(zip(keys, rest, strict=True)) for side, *rest in rows}

    def model_health(self, name: str) -> tuple[bool, int, str]:
        [(healthy, failures, error)] = self.sql(
            "SELECT healthy, consecutive_failures, health_error FROM arena_arenamodel "
            "WHERE name = %s",
            name,
        )
        return healthy, failures, error

    def votes(self) -> list[tuple[Any, ...]]:
        """Every stored vote, whole, in id order."""
        return self.sql("SELECT * FROM arena_vote ORDER BY id")

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {s.host.name} {s.name} ({s.log}) ---\n{s.log_text(last=2000)}"
            for s in self.services.values()
        )


def visitor_on(visitor: Visitor, base_url: str) -> Visitor:
    """The same browser, its requests sent to another web host (a load balancer's doing): the
    page loads there, and the cookies are the ones the visitor already holds."""
    other = Visitor(base_url)
    host = httpx.URL(base_url).host
    for cookie in list(visitor.client.cookies.jar):
        other.client.cookies.set(cookie.name, cookie.value or "", domain=host, path=cookie.path)
    other.received = visitor.received
    return other


__all__ = ["ArenaCluster", "HostError", "visitor_on", "wait_until"]
